//! The chunked decoder on arbitrary bytes, fed in pieces whose size the first byte
//! picks: it never panics, never yields more body bytes than it was given, and ends
//! (a step that asks for more only when all input is used up).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use relevo::downstream::chunked::{Decoder, Step};

/// An incomplete piece (size line, trailer section) longer than this is fed in pieces
/// as long as what is already buffered, so its length doubles with each feed.
///
/// The decoder parses an incomplete size line or trailer section again from its
/// start whenever more arrives (httparse keeps no state between calls), so feeding
/// a 4 KiB line a byte at a time costs 4096²/2 = 8 M bytes of parsing: 0.18 s a run
/// under coverage instrumentation, which is what held the target to a few thousand
/// runs a second. Below this length every split is still tried (all of a size line,
/// all of a CRLF, the first fields of a trailer section); above it the parse work is
/// bounded by twice the piece's length.
const SPLIT_EVERYWHERE: usize = 64;

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
                // What the decoder left in `buf` is the incomplete piece it waits on.
                let piece = if buf.len() < SPLIT_EVERYWHERE {
                    step
                } else {
                    step.max(buf.len())
                };
                let n = piece.min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
        }
    }
});
