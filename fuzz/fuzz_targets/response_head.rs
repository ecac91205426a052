//! Backend response heads: `upstream::response_head::parse` never panics, never
//! reads past the head it accepts, decides the same way twice, and keeps RFC 9112
//! §6.3's framing rules (no body after HEAD, 1xx, 204, 304; never chunked from 1.0; a
//! close-delimited body never lets the connection be reused).
#![no_main]

use bytes::BytesMut;
use http::{Method, StatusCode, Version};
use libfuzzer_sys::fuzz_target;
use relevo::upstream::response_head::{parse, BodyKind};

const MAX: usize = 16 * 1024;
/// What never goes to the client as the backend wrote it (RFC 9110 §7.6.1, RFC 9112 §6).
const HOP_OR_FRAMING: [&str; 9] = [
    "connection",
    "transfer-encoding",
    "content-length",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "trailer",
];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the request method: HEAD changes the framing.
    let (method, data) = match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => (Method::HEAD, rest),
        Some((_, rest)) => (Method::GET, rest),
        None => return,
    };
    let mut first = BytesMut::from(data);
    let mut again = BytesMut::from(data);
    let a = parse(&mut first, MAX, &method);
    let b = parse(&mut again, MAX, &method);
    match (&a, &b) {
        (Ok(Some(h)), Ok(Some(g))) => {
            assert_eq!((h.body, h.keep_alive, h.len), (g.body, g.keep_alive, g.len));
            assert_eq!(first.len(), data.len() - h.len, "took more than the head");
            let status = h.parts.status;
            if method == Method::HEAD
                || status.is_informational()
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED
            {
                assert_eq!(h.body, BodyKind::Empty);
            }
            if h.parts.version == Version::HTTP_10 {
                assert_ne!(h.body, BodyKind::Chunked);
            }
            if h.body == BodyKind::Close {
                assert!(!h.keep_alive);
            }
            if let BodyKind::Length(n) = h.body {
                assert!(n > 0);
            }
            // A head relayed as it came holds no hop-by-hop or framing field, and
            // then its field map is empty (nothing is said twice).
            if let Some(passed) = &h.passed {
                assert!(h.parts.headers.is_empty());
                let block = passed.block();
                assert!(block.is_empty() || block.ends_with(b"\r\n"));
                for line in block.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    assert!(line.ends_with(b"\r"), "a line without its CR");
                    let name = line.split(|&b| b == b':').next().unwrap_or_default();
                    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                    assert!(
                        !HOP_OR_FRAMING.contains(&name.as_str()),
                        "{name} passed on"
                    );
                }
            }
        }
        (Ok(None), Ok(None)) => {
            assert!(data.len() < MAX);
            assert_eq!(first.len(), data.len(), "a partial head was consumed");
        }
        (Err(_), Err(_)) => {}
        _ => panic!("two parses of the same bytes disagree"),
    }
});
