//! Encoder and decoder together: a body cut into chunks (sizes from the input),
//! framed the way relevo writes chunked responses and decoded again in pieces
//! (sizes from the input too), comes back byte for byte, with no trailers.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use relevo::downstream::chunked::{last_chunk, size_line, Decoder, Step};

fuzz_target!(|data: &[u8]| {
    // The chunk size and the read size are picked apart: tied together (the read
    // size was `cut % 7 + 1`), one-byte chunks were only ever read two bytes at a
    // time and no read took in more than one chunk, while every run paid for a
    // decode call every few bytes.
    let [cut, feed, body @ ..] = data else {
        return;
    };
    let cut = usize::from(*cut).max(1);
    let feed = usize::from(*feed).max(1);
    // Sized up front, as the decoder's buffer is: a size line is at most 16 hex
    // digits and a CRLF, each chunk ends in a CRLF, and the last chunk is 5 bytes.
    let mut framed = Vec::with_capacity(body.len() + body.len().div_ceil(cut) * 20 + 5);
    for piece in body.chunks(cut) {
        size_line(piece.len(), &mut framed);
        framed.extend_from_slice(piece);
        framed.extend_from_slice(b"\r\n");
    }
    last_chunk(None, &mut framed);
    let mut decoder = Decoder::new(8 * 1024);
    let mut buf = BytesMut::with_capacity(framed.len());
    let mut out = Vec::with_capacity(body.len());
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Step::Data(d)) => out.extend_from_slice(&d),
            Ok(Step::End) => break,
            Ok(Step::Trailers(_)) => panic!("no trailers were written"),
            Err(e) => panic!("relevo's own framing refused: {e}"),
            Ok(Step::More) => {
                assert!(fed < framed.len(), "framing ended early");
                let n = feed.min(framed.len() - fed);
                buf.extend_from_slice(&framed[fed..fed + n]);
                fed += n;
            }
        }
    }
    assert_eq!(out, body);
    assert_eq!(fed, framed.len());
    assert!(decoder.is_done());
});
