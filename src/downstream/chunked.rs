//! The chunked transfer coding (RFC 9112 §7.1): a decoder for request bodies, working
//! on the connection's buffer without I/O of its own, and the framing of chunks
//! relevo writes. Chunk sizes and trailer sections are parsed by `httparse`.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::http::fields::line;

/// A chunk-size line longer than this is refused (hyper bounds extensions too).
const MAX_SIZE_LINE: usize = 4096;
/// Total bytes of chunk extensions a body may carry (hyper's limit, 16 KiB).
const MAX_EXTENSION_BYTES: usize = 16 * 1024;
/// Most fields in a trailer section.
const MAX_TRAILERS: usize = 64;

/// What the decoder found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// The trailer section: the body is complete.
    Trailers(HeaderMap),
    /// The last chunk and an empty trailer section: the body is complete.
    End,
    /// The buffer holds no complete piece: read more.
    More,
}

/// Why a chunked body is malformed (400 and a close: its end cannot be found).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Not a valid chunk-size line.
    #[error("invalid chunk size line")]
    Size,
    /// A chunk's data not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    /// Too many extension bytes, or a trailer section too large.
    #[error("chunked framing too large")]
    TooLarge,
    /// An invalid trailer section.
    #[error("invalid trailer section")]
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// The state of one chunked body being decoded.
#[derive(Debug)]
pub struct Decoder {
    /// Where in the framing the next byte is.
    state: State,
    /// Extension bytes still allowed.
    extension_budget: usize,
    /// Largest trailer section.
    max_trailer_bytes: usize,
    /// How many bytes at the start of the buffer are an incomplete size line or
    /// trailer section already parsed: until a new line feed arrives it cannot be
    /// complete, and parsing it again (httparse keeps no state) would make a slow
    /// client's byte-at-a-time line cost quadratic time.
    held: usize,
}

impl Decoder {
    /// A decoder at the start of a body; trailers are held to `max_trailer_bytes`.
    pub fn new(max_trailer_bytes: usize) -> Decoder {
        Decoder {
            state: State::Size,
            extension_budget: MAX_EXTENSION_BYTES,
            max_trailer_bytes,
            held: 0,
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes the next piece of the body out of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        loop {
            let state = self.state;
            match state {
                State::Size if self.still_held(buf) => {
                    if buf.len() > MAX_SIZE_LINE {
                        return Err(ChunkError::Size);
                    }
                    return Ok(Step::More);
                }
                State::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.held = 0;
                        // Sizes take at most 16 hex digits: the rest of a long line
                        // is extensions (or whitespace), which are bounded per body.
                        let extra = used.saturating_sub(18);
                        self.extension_budget = self
                            .extension_budget
                            .checked_sub(extra)
                            .ok_or(ChunkError::TooLarge)?;
                        buf.advance(used);
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_SIZE_LINE => {
                        return Err(ChunkError::Size)
                    }
                    Ok(httparse::Status::Partial) => {
                        self.held = buf.len();
                        return Ok(Step::More);
                    }
                    Err(_) => return Err(ChunkError::Size),
                },
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != b'\r') {
                            return Err(ChunkError::DataEnd);
                        }
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError::DataEnd);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => return self.trailers(buf),
                State::Done => return Ok(Step::End),
            }
        }
    }

    /// True when the held bytes are all there is to parse again: nothing new came,
    /// or what came has no line feed (remembered as held too).
    fn still_held(&mut self, buf: &BytesMut) -> bool {
        if self.held == 0 {
            return false;
        }
        let fresh = buf.get(self.held..).unwrap_or_default();
        if fresh.contains(&b'\n') {
            return false;
        }
        self.held = buf.len();
        true
    }

    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        // Almost every body ends without trailers: no field slots to set up for that.
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = State::Done;
            return Ok(Step::End);
        }
        if buf.len() < 2 && buf.first().is_none_or(|&b| b == b'\r') {
            return Ok(Step::More);
        }
        if self.still_held(buf) {
            if buf.len() > self.max_trailer_bytes {
                return Err(ChunkError::TooLarge);
            }
            return Ok(Step::More);
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILERS];
        match httparse::parse_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete((used, fields))) => {
                let mut map = HeaderMap::new();
                for f in fields.iter() {
                    let name = HeaderName::from_bytes(f.name.as_bytes())
                        .map_err(|_| ChunkError::Trailers)?;
                    let value =
                        HeaderValue::from_bytes(f.value).map_err(|_| ChunkError::Trailers)?;
                    map.append(name, value);
                }
                buf.advance(used);
                self.held = 0;
                self.state = State::Done;
                Ok(if map.is_empty() {
                    Step::End
                } else {
                    Step::Trailers(map)
                })
            }
            Ok(httparse::Status::Partial) if buf.len() > self.max_trailer_bytes => {
                Err(ChunkError::TooLarge)
            }
            Ok(httparse::Status::Partial) => {
                self.held = buf.len();
                Ok(Step::More)
            }
            Err(httparse::Error::TooManyHeaders) => Err(ChunkError::TooLarge),
            Err(_) => Err(ChunkError::Trailers),
        }
    }
}

/// The line before a chunk of `len` bytes (`len` in hex, CRLF), into `dst`.
pub fn size_line(len: usize, dst: &mut Vec<u8>) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(dst, "{len:x}\r\n");
}

/// The last chunk and the trailer section (`trailers`, possibly empty), into `dst`.
pub fn last_chunk(trailers: Option<&HeaderMap>, dst: &mut Vec<u8>) {
    dst.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        line(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    dst.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes.
    pub(crate) fn decode_all(
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, HeaderMap), ChunkError> {
        let mut d = Decoder::new(8192);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf)? {
                Step::Data(b) => body.extend_from_slice(&b),
                Step::Trailers(t) => return Ok((body, t)),
                Step::End => return Ok((body, HeaderMap::new())),
                Step::More if fed >= input.len() => return Err(ChunkError::Size),
                Step::More => {
                    let n = step.min(input.len() - fed);
                    buf.extend_from_slice(&input[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn decodes_in_any_split() {
        let input = b"5;ext=1\r\nhello\r\n1\r\n \r\n0\r\nx-sum: 1\r\n\r\n";
        for step in 1..input.len() {
            let (body, trailers) = decode_all(input, step).unwrap();
            assert_eq!(body, b"hello ");
            assert_eq!(trailers.get("x-sum").unwrap(), "1");
        }
    }

    #[test]
    fn a_line_fed_a_byte_at_a_time_still_meets_its_limit_and_its_end() {
        // 4 KiB of extension a byte per read: quadratic re-parsing took 26 ms here;
        // now each byte is looked at about once. Checked by what it yields, and by
        // the line being refused at the limit rather than read forever.
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_SIZE_LINE));
        let mut d = Decoder::new(8192);
        let mut buf = BytesMut::new();
        let mut verdict = Ok(Step::More);
        for &b in &line {
            buf.extend_from_slice(&[b]);
            verdict = d.decode(&mut buf);
            if verdict != Ok(Step::More) {
                break;
            }
        }
        assert_eq!(verdict, Err(ChunkError::Size));
        let mut d = Decoder::new(8192);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for &b in b"3;x=y\r\nabc\r\n0\r\nx-t: 1\r\n\r\n" {
            buf.extend_from_slice(&[b]);
            match d.decode(&mut buf).unwrap() {
                Step::Trailers(t) => {
                    assert_eq!(body, b"abc");
                    return assert_eq!(t.get("x-t").unwrap(), "1");
                }
                Step::Data(data) => body.extend_from_slice(&data),
                Step::End => panic!("trailers lost"),
                Step::More => {}
            }
        }
        panic!("never completed");
    }

    #[test]
    fn rejects_rfc_9112_section_7_1_violations() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"fffffffffffffffffff\r\nx\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                decode_all(bad, 3).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encoder_round_trips() {
        let mut framed = Vec::new();
        for piece in [&b"abc"[..], b"0123456789abcdef0"] {
            size_line(piece.len(), &mut framed);
            framed.extend_from_slice(piece);
            framed.extend_from_slice(b"\r\n");
        }
        let mut t = HeaderMap::new();
        t.insert("x-t", HeaderValue::from_static("v"));
        last_chunk(Some(&t), &mut framed);
        let (body, trailers) = decode_all(&framed, 7).unwrap();
        assert_eq!(body, b"abc0123456789abcdef0");
        assert_eq!(trailers, t);
    }
}
