//! The chunked decoder on arbitrary bytes, fed in pieces whose size the first byte
//! picks: it never panics, never yields more body bytes than it was given, and ends
//! (a step that asks for more only when all input is used up).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use relevo::downstream::chunked::{Decoder, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut decoder = Decoder::new(8 * 1024);
    // Sized up front: the pieces are appended without reallocating (sanitizer
    // allocations are slow, and the decoder, not the buffer, is under test).
    let mut buf = BytesMut::with_capacity(input.len());
    let (mut fed, mut body) = (0, 0);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Step::Data(d)) => {
                assert!(!d.is_empty());
                body += d.len();
                assert!(body <= fed);
            }
            Ok(Step::Trailers(_)) | Ok(Step::End) | Err(_) => return,
            Ok(Step::More) if fed == input.len() => return,
            Ok(Step::More) => {
                let n = step.min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
        }
    }
});
