//! Encoder and decoder together: a body cut into chunks (sizes from the input),
//! framed the way relevo writes chunked responses and decoded again in pieces,
//! comes back byte for byte.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use relevo::downstream::chunked::{last_chunk, size_line, Decoder, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).max(1);
    let mut framed = Vec::new();
    for piece in body.chunks(cut) {
        size_line(piece.len(), &mut framed);
        framed.extend_from_slice(piece);
        framed.extend_from_slice(b"\r\n");
    }
    last_chunk(None, &mut framed);
    let mut decoder = Decoder::new(8 * 1024);
    let mut buf = BytesMut::with_capacity(framed.len());
    let mut out = Vec::new();
    let mut fed = 0;
    let feed = (cut % 7) + 1;
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
});
