//! Request heads: `downstream::head::parse` never panics, and what it accepts is
//! consistent (a length-framed body has a length > 0, a 1.0 request is never chunked,
//! and parsing the same bytes again gives the same verdict).
#![no_main]

use libfuzzer_sys::fuzz_target;
use relevo::downstream::head::{parse_bytes, Framing, Limits};

const LIMITS: Limits = Limits {
    max_bytes: 16 * 1024,
    max_headers: 64,
};

fuzz_target!(|data: &[u8]| {
    let first = parse_bytes(data, LIMITS);
    let again = parse_bytes(data, LIMITS);
    match (&first, &again) {
        (Ok(Some(a)), Ok(Some(b))) => {
            assert_eq!(a.framing, b.framing);
            assert_eq!(a.request.uri(), b.request.uri());
            if let Framing::Length(n) = a.framing {
                assert!(n > 0);
            }
            if a.request.version() == http::Version::HTTP_10 {
                assert_ne!(a.framing, Framing::Chunked);
            }
        }
        (Ok(None), Ok(None)) => assert!(data.len() < LIMITS.max_bytes),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("two parses of the same bytes disagree"),
    }
});
