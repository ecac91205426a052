//! The request head as relevo writes it to a backend (RFC 9112 §3), and how the body
//! that follows is delimited (§6): the head has already been rewritten for the hop
//! (`http::rewrite::request`), so what is left is the framing.

use http::header::{self, HeaderMap};

use crate::http::fields::line;
use crate::http::rewrite::Appended;
use http::Request;

/// How the request body is delimited on the backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body follows the head.
    None,
    /// Exactly this many bytes follow (`Content-Length`).
    Length(u64),
    /// The body is sent chunked: its length is not known in advance.
    Chunked,
}

/// The framing of a request whose body is `end` (nothing to send) or of `exact`
/// length, or neither. A `Content-Length` the client sent is kept: the client's
/// connection layer has checked that the body matches it.
pub fn framing(headers: &HeaderMap, end: bool, exact: Option<u64>) -> Framing {
    if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        return Framing::Length(n);
    }
    if end {
        return Framing::None;
    }
    match exact {
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    }
}

/// Writes the head of `parts` into `dst`: request line, fields, the framing field
/// relevo adds when the client's did not say, and the empty line.
pub fn encode<B>(req: &Request<B>, appended: &Appended, framing: Framing, dst: &mut Vec<u8>) {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    dst.reserve(target.len() + 64 + req.headers().len() * 32);
    dst.extend_from_slice(req.method().as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        line(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    appended.write(dst);
    let declared = req.headers().contains_key(header::CONTENT_LENGTH);
    match framing {
        Framing::Length(n) if !declared => {
            line(
                dst,
                b"content-length",
                itoa::Buffer::new().format(n).as_bytes(),
            );
        }
        Framing::Chunked => dst.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    dst.extend_from_slice(b"\r\n");
}

/// Whether a trailer field may be forwarded: framing, routing and connection fields
/// never belong in a trailer section (RFC 9110 §6.5.1).
pub fn forwardable_trailer(name: &header::HeaderName) -> bool {
    ![
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::HOST,
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::AUTHORIZATION,
        header::SET_COOKIE,
    ]
    .contains(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(req: Request<()>, framing: Framing) -> String {
        let mut dst = Vec::new();
        encode(&req, &Appended::default(), framing, &mut dst);
        String::from_utf8(dst).unwrap()
    }

    #[test]
    fn writes_origin_form_fields_and_framing() {
        let req = Request::post("/up?x=1")
            .header("host", "app.test")
            .body(())
            .unwrap();
        assert_eq!(
            head(req, Framing::Chunked),
            "POST /up?x=1 HTTP/1.1\r\nhost: app.test\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let req = Request::put("/").body(()).unwrap();
        assert_eq!(
            head(req, Framing::Length(5)),
            "PUT / HTTP/1.1\r\ncontent-length: 5\r\n\r\n"
        );
    }

    #[test]
    fn a_declared_length_wins_and_is_not_repeated() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "7".parse().unwrap());
        assert_eq!(framing(&h, false, None), Framing::Length(7));
        assert_eq!(framing(&HeaderMap::new(), true, Some(0)), Framing::None);
        assert_eq!(framing(&HeaderMap::new(), false, None), Framing::Chunked);
        let req = Request::post("/")
            .header("content-length", "7")
            .body(())
            .unwrap();
        assert_eq!(
            head(req, Framing::Length(7)),
            "POST / HTTP/1.1\r\ncontent-length: 7\r\n\r\n"
        );
    }
}
