//! A response head written for the client (RFC 9112 §4-§6): the status line, the
//! fields, and the framing chosen for the body — by hyper's server rules, so clients
//! see what they saw when hyper wrote it: `Content-Length` when the length is known,
//! chunked to HTTP/1.1 clients otherwise, a close-delimited body to HTTP/1.0 ones, no
//! body where the method or status has none (RFC 9110 §6.4.1).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};
use http::{Method, Response, StatusCode, Version};
use hyper::body::Body;

use super::head::has_token;
use crate::http::fields::line;
use crate::http::passed::PassedFields;

/// A response body that may carry its head's end-to-end fields beside the field map
/// (as the backend wrote them): the head written for the client copies them.
pub trait Relayed {
    /// Takes the fields kept beside the map, if any (they are freed once the head is
    /// written, not kept for the body's life).
    fn take_passed(&mut self) -> Option<PassedFields> {
        None
    }
}

/// A body held in memory has every field in its map.
impl<D> Relayed for http_body_util::Full<D> {}

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body may follow (HEAD, 1xx, 204, 304, a CONNECT's 2xx).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked; `trailers`: the client takes trailer fields.
    Chunked {
        /// Whether trailer fields are written (the request said `TE: trailers`).
        trailers: bool,
    },
    /// Until the connection closes (an HTTP/1.0 client, length unknown).
    Close,
}

/// What the request said that shapes its response's head.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The request method (HEAD and CONNECT answers have no body).
    pub method: &'a Method,
    /// The client's version: 1.0 clients get no chunked coding.
    pub version: Version,
    /// Whether the client accepts trailer fields (`TE: trailers`).
    pub accepts_trailers: bool,
    /// Whether the connection may stay open after this exchange.
    pub keep_alive: bool,
}

/// The head written and what it decided.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// How the body is framed.
    pub framing: Framing,
    /// Whether the connection stays open afterwards.
    pub keep_alive: bool,
}

/// Writes an interim (1xx) response head relayed from a backend (RFC 9110 §15.2):
/// status line and fields, no framing of its own.
pub fn write_interim(head: &http::response::Parts, dst: &mut Vec<u8>) {
    status_line(head.status, dst);
    for (name, value) in &head.headers {
        line(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    dst.extend_from_slice(b"\r\n");
}

/// Writes `resp`'s head into `dst` for a request that asked `asked`; `passed` are the
/// backend's fields kept beside the field map, written first, as they came.
pub fn write_head<B: Body>(
    resp: &Response<B>,
    passed: Option<&PassedFields>,
    asked: Asked<'_>,
    dst: &mut Vec<u8>,
) -> Written {
    let status = resp.status();
    let headers = resp.headers();
    let connect_ok = asked.method == Method::CONNECT && status.is_success();
    // A relayed head's map is usually empty (its fields are in `passed`): no lookups.
    let says_close = !headers.is_empty()
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"close"));
    let mut keep_alive = asked.keep_alive && !says_close;
    let may_have_length = !(status.is_informational()
        || connect_ok
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED);
    let no_body = !may_have_length || asked.method == Method::HEAD;
    let declared = passed.and_then(PassedFields::content_length).or_else(|| {
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    });
    let framing = if no_body {
        Framing::None
    } else if let Some(n) = declared.or(resp.body().size_hint().exact()) {
        Framing::Length(n)
    } else if asked.version == Version::HTTP_11 {
        Framing::Chunked {
            trailers: asked.accepts_trailers,
        }
    } else {
        keep_alive = false;
        Framing::Close
    };

    status_line(status, dst);
    let mut wrote_date = false;
    if let Some(passed) = passed {
        dst.extend_from_slice(passed.block());
        wrote_date = passed.has_date();
    }
    for (name, value) in headers {
        match *name {
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONNECTION => continue,
            header::TRAILER if !matches!(framing, Framing::Chunked { trailers: true }) => continue,
            header::DATE => wrote_date = true,
            _ => {}
        }
        line(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        Framing::Length(n) => {
            let mut digits = itoa::Buffer::new();
            line(dst, b"content-length", digits.format(n).as_bytes());
        }
        Framing::None if may_have_length => {
            // HEAD and 304 describe the body they would have had (RFC 9110 §8.6).
            if let Some(n) = passed.and_then(PassedFields::content_length) {
                let mut digits = itoa::Buffer::new();
                line(dst, b"content-length", digits.format(n).as_bytes());
            } else if let Some(v) = headers.get(header::CONTENT_LENGTH) {
                line(dst, b"content-length", v.as_bytes());
            }
        }
        Framing::Chunked { .. } => line(dst, b"transfer-encoding", b"chunked"),
        Framing::None | Framing::Close => {}
    }
    connection_field(headers, asked.version, keep_alive, says_close, dst);
    if !wrote_date {
        DATE.with(|d| line(dst, b"date", d.borrow_mut().now()));
    }
    dst.extend_from_slice(b"\r\n");
    Written {
        framing,
        keep_alive,
    }
}

/// A status line; relevo speaks HTTP/1.1 to every client (RFC 9110 §2.5: a server
/// sends its own version, whatever the client's).
fn status_line(status: StatusCode, dst: &mut Vec<u8>) {
    if status == StatusCode::OK {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    dst.extend_from_slice(b"HTTP/1.1 ");
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    dst.extend_from_slice(b"\r\n");
}

/// `Connection`: what the response had (`upgrade`, `close`), and `close` or
/// `keep-alive` as the connection's fate needs saying (RFC 9112 §9.3, §9.6).
/// `says_close`: a value already has `close`.
fn connection_field(
    headers: &HeaderMap,
    version: Version,
    keep_alive: bool,
    says_close: bool,
    dst: &mut Vec<u8>,
) {
    if headers.is_empty() {
        return own_connection_field(version, keep_alive, dst);
    }
    let mut values = headers.get_all(header::CONNECTION).iter().peekable();
    if values.peek().is_none() {
        return own_connection_field(version, keep_alive, dst);
    }
    dst.extend_from_slice(b"connection: ");
    let mut first = true;
    for v in values {
        if !first {
            dst.extend_from_slice(b", ");
        }
        dst.extend_from_slice(v.as_bytes());
        first = false;
    }
    if !keep_alive && !says_close {
        dst.extend_from_slice(b", close");
    } else if keep_alive && version == Version::HTTP_10 {
        dst.extend_from_slice(b", keep-alive");
    }
    dst.extend_from_slice(b"\r\n");
}

/// `Connection` when the response has none of its own.
fn own_connection_field(version: Version, keep_alive: bool, dst: &mut Vec<u8>) {
    if !keep_alive {
        line(dst, b"connection", b"close");
    } else if version == Version::HTTP_10 {
        line(dst, b"connection", b"keep-alive");
    }
}

thread_local! {
    /// The `Date` value, formatted once a second per thread.
    static DATE: RefCell<CachedDate> = const { RefCell::new(CachedDate { second: 0, text: [0; 29] }) };
}

/// An IMF-fixdate (RFC 9110 §5.6.7) and the second it is for.
struct CachedDate {
    /// Unix second `text` shows.
    second: u64,
    /// `Sun, 06 Nov 1994 08:49:37 GMT`: always 29 bytes.
    text: [u8; 29],
}

impl CachedDate {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == self.text.len() {
                self.text.copy_from_slice(formatted.as_bytes());
                self.second = second;
            }
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Empty, Full};

    fn head<B: Body>(resp: &Response<B>, method: &Method, version: Version) -> (String, Written) {
        let mut dst = Vec::new();
        let asked = Asked {
            method,
            version,
            accepts_trailers: false,
            keep_alive: true,
        };
        let w = write_head(resp, None, asked, &mut dst);
        (String::from_utf8(dst).unwrap(), w)
    }

    #[test]
    fn length_known_unknown_and_none() {
        let full = Response::new(Full::new(bytes::Bytes::from_static(b"hello")));
        let (text, w) = head(&full, &Method::GET, Version::HTTP_11);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 5\r\n") && text.contains("date: "));
        assert_eq!(w.framing, Framing::Length(5));
        let stream = Response::new(http_body_util::StreamBody::new(tokio_stream_empty()));
        assert_eq!(
            head(&stream, &Method::GET, Version::HTTP_11).1.framing,
            Framing::Chunked { trailers: false }
        );
        let (text, w) = head(&stream, &Method::GET, Version::HTTP_10);
        assert_eq!((w.framing, w.keep_alive), (Framing::Close, false));
        assert!(text.contains("connection: close\r\n"), "{text}");
        let mut no = Response::new(Empty::<bytes::Bytes>::new());
        *no.status_mut() = StatusCode::NO_CONTENT;
        let (text, w) = head(&no, &Method::GET, Version::HTTP_11);
        assert_eq!(w.framing, Framing::None);
        assert!(!text.contains("content-length"), "{text}");
        let (text, _) = head(&full, &Method::GET, Version::HTTP_10);
        assert!(text.contains("connection: keep-alive\r\n"), "{text}");
    }

    fn tokio_stream_empty(
    ) -> tokio_stream::Empty<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>
    {
        tokio_stream::empty()
    }
}
