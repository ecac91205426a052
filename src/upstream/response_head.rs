//! A backend's response head, parsed with `httparse` by the rules hyper's client
//! applies (RFC 9112 §4-§6): the status line and fields, how the body is delimited,
//! and whether the connection may carry another request.

use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::response::Parts;
use http::{Method, Response, StatusCode, Version};

use crate::downstream::head::{self, MessageFraming};
use crate::http::passed::PassedFields;
use crate::http::BackendFault;

/// Most fields in a response head (hyper's client default).
const MAX_HEADERS: usize = 100;

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: HEAD, 1xx, 204, 304 (items 1-2).
    Empty,
    /// `Content-Length` bytes (item 6).
    Length(u64),
    /// Chunked (item 4).
    Chunked,
    /// Until the backend closes (items 4 and 8): the connection ends with it.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status, version and fields, for the response relayed to the client; the
    /// fields are empty when `passed` holds them.
    pub parts: Parts,
    /// The end-to-end fields as the backend wrote them, already screened for the
    /// client (the usual head); `None` when `parts` has them all, to be rewritten.
    pub passed: Option<PassedFields>,
    /// Where the body ends.
    pub body: BodyKind,
    /// Whether the backend lets the connection carry another request.
    pub keep_alive: bool,
    /// How many bytes the head took.
    pub len: usize,
}

/// Parses the head at the start of `buf`, taking its bytes out when complete.
/// `Ok(None)`: more bytes are needed. `method` is the request's: a response to
/// HEAD has no body whatever its fields say.
pub fn parse(
    buf: &mut BytesMut,
    max: usize,
    method: &Method,
) -> Result<Option<ResponseHead>, BackendFault> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max => {
            return Err(BackendFault::HeadTooLarge(max))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(BackendFault::BadHead("too many fields"))
        }
        Err(httparse::Error::Version) => return Err(BackendFault::BadHead("version")),
        Err(httparse::Error::Status) => return Err(BackendFault::BadHead("status")),
        Err(httparse::Error::HeaderName) => return Err(BackendFault::BadHead("field name")),
        Err(httparse::Error::HeaderValue) => return Err(BackendFault::BadHead("field value")),
        Err(_) => return Err(BackendFault::BadHead("status line")),
    };
    if len > max {
        return Err(BackendFault::HeadTooLarge(max));
    }
    let (Some(minor), Some(code)) = (resp.version, resp.code) else {
        return Err(BackendFault::BadHead("status line"));
    };
    let status = StatusCode::from_u16(code).map_err(|_| BackendFault::BadHead("status"))?;
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    // One walk over httparse's slices reads what framing and persistence depend on
    // and keeps the lines the client gets, as they will be written.
    let mut framing = FramingFields::default();
    let mut passed = PassedFields::with_capacity(len);
    let mut via = None;
    for h in resp.headers.iter() {
        let role = Role::of(h.name.as_bytes());
        framing.note(role, h.value);
        match role {
            Role::EndToEnd | Role::Date => passed.push(h.name.as_bytes(), h.value),
            // Folded with relevo's entry into one line.
            Role::Via => via = Some(h.value),
            _ => {}
        }
    }
    let body = body_kind(&framing.message, status, version, method)?;
    let keep_alive = framing.message.persists(version) && body != BodyKind::Close;
    let mut head = Response::new(());
    *head.status_mut() = status;
    *head.version_mut() = version;
    let passes = !status.is_informational()
        && !framing.special
        && !framing.names_fields
        && !matches!(framing.message.length, Some(Err(_)));
    let passed = if passes {
        // The usual head: its end-to-end lines go to the client as they came.
        let content_length = match framing.message.length {
            Some(Ok(n)) if !framing.message.transfer_encoding => Some(n),
            _ => None,
        };
        passed.finish(version, via, content_length, framing.date);
        Some(passed)
    } else {
        // Interim and switching heads, and the rare fields that need more than a copy
        // (`Via` lines to fold, `Trailer`, fields `Connection` names): a field map, which
        // `rewrite::response` rewrites.
        let mut headers = HeaderMap::with_capacity(resp.headers.len() + 1);
        for h in resp.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| BackendFault::BadHead("field name"))?;
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|_| BackendFault::BadHead("field value"))?;
            headers.append(name, value);
        }
        *head.headers_mut() = headers;
        None
    };
    buf.advance(len);
    let (parts, ()) = head.into_parts();
    Ok(Some(ResponseHead {
        parts,
        passed,
        body,
        keep_alive,
        len,
    }))
}

/// What a response field is to relevo, told by its name once per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `Transfer-Encoding`: framing, and hop-by-hop (RFC 9112 §6.1).
    TransferEncoding,
    /// `Content-Length`: framing; the client's head gets relevo's own.
    ContentLength,
    /// `Connection`: persistence, and the fields it names are hop-by-hop too.
    Connection,
    /// `TE`, `Upgrade`, `Keep-Alive`, `Proxy-Connection`, `Proxy-Authorization`: this
    /// hop's only (RFC 9110 §7.6.1), never passed on.
    HopByHop,
    /// `Date`: passed, and relevo adds none.
    Date,
    /// `Via`: folded with relevo's entry (a second line takes the field map's way).
    Via,
    /// `Trailer` (sent only to clients that take trailers): a head with one takes the
    /// field map's way.
    Special,
    /// Everything else: passed as it came.
    EndToEnd,
}

impl Role {
    /// The role of the field called `name` (any case).
    fn of(name: &[u8]) -> Role {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        match name.len() {
            2 if is(b"te") => Role::HopByHop,
            3 if is(b"via") => Role::Via,
            4 if is(b"date") => Role::Date,
            7 if is(b"upgrade") => Role::HopByHop,
            7 if is(b"trailer") => Role::Special,
            10 if is(b"connection") => Role::Connection,
            10 if is(b"keep-alive") => Role::HopByHop,
            14 if is(b"content-length") => Role::ContentLength,
            16 if is(b"proxy-connection") => Role::HopByHop,
            17 if is(b"transfer-encoding") => Role::TransferEncoding,
            19 if is(b"proxy-authorization") => Role::HopByHop,
            _ => Role::EndToEnd,
        }
    }
}

/// What the fields say about framing, persistence and how the head can be relayed,
/// as they were read.
#[derive(Debug, Default)]
struct FramingFields {
    /// Framing and persistence, as the request side notes them too.
    message: MessageFraming,
    /// A `Connection` line names a field (anything but `close` and `keep-alive`),
    /// which is then hop-by-hop too.
    names_fields: bool,
    /// A `Date` line came.
    date: bool,
    /// A `Trailer` line, or a second `Via` line, came.
    special: bool,
    /// A `Via` line came.
    via: bool,
}

impl FramingFields {
    /// Takes one field line into account.
    fn note(&mut self, role: Role, value: &[u8]) {
        match role {
            Role::TransferEncoding => self.message.transfer_encoding(value),
            Role::ContentLength => self.message.content_length(content_length(value)),
            Role::Connection => self.names_fields |= self.message.connection(value),
            Role::Date => self.date = true,
            Role::Via => {
                self.special |= self.via;
                self.via = true;
            }
            Role::Special => self.special = true,
            Role::HopByHop | Role::EndToEnd => {}
        }
    }
}

/// RFC 9112 §6.3, in its order.
fn body_kind(
    fields: &MessageFraming,
    status: StatusCode,
    version: Version,
    method: &Method,
) -> Result<BodyKind, BackendFault> {
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(BodyKind::Empty);
    }
    if fields.transfer_encoding {
        // §6.1: a 1.0 message cannot carry Transfer-Encoding (hyper refuses it too).
        if version == Version::HTTP_10 {
            return Err(BackendFault::BadHead(
                "transfer-encoding in an HTTP/1.0 response",
            ));
        }
        // Another final coding: the body runs to the close (§6.3 item 4).
        return Ok(if fields.chunked_last {
            BodyKind::Chunked
        } else {
            BodyKind::Close
        });
    }
    Ok(
        match fields.length.transpose().map_err(BackendFault::BadHead)? {
            Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
            None => BodyKind::Close,
        },
    )
}

/// RFC 9110 §8.6: each element `1*DIGIT` (the request side's rule); a list of equal
/// values is one value, as hyper's client takes it.
fn content_length(v: &[u8]) -> Option<u64> {
    let mut value = None;
    for part in v.split(|&b| b == b',') {
        let n = head::content_length(part.trim_ascii())?;
        if value.is_some_and(|prev| prev != n) {
            return None;
        }
        value = Some(n);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str, method: Method) -> Result<Option<ResponseHead>, BackendFault> {
        let mut buf = BytesMut::from(raw);
        parse(&mut buf, 8192, &method)
    }

    fn kind(raw: &str) -> BodyKind {
        parsed(raw, Method::GET).unwrap().unwrap().body
    }

    #[test]
    fn rfc_9112_section_6_3_decides_the_body() {
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            BodyKind::Length(5)
        );
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n"),
            BodyKind::Length(5)
        );
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n"),
            BodyKind::Chunked
        );
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"),
            BodyKind::Close
        );
        assert_eq!(kind("HTTP/1.1 200 OK\r\n\r\n"), BodyKind::Close);
        assert_eq!(
            kind("HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
            BodyKind::Empty
        );
        assert_eq!(kind("HTTP/1.1 304 Not Modified\r\n\r\n"), BodyKind::Empty);
        let head = parsed("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", Method::HEAD);
        assert_eq!(head.unwrap().unwrap().body, BodyKind::Empty);
    }

    #[test]
    fn bad_heads_are_the_backends_fault() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
            "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/2.0 200 OK\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad field: x\r\n\r\n",
        ] {
            assert!(parsed(raw, Method::GET).is_err(), "{raw:?}");
        }
        assert!(parsed("HTTP/1.1 200 OK\r\n", Method::GET)
            .unwrap()
            .is_none());
    }

    #[test]
    fn keep_alive_follows_rfc_9112_section_9_3() {
        let keep = |raw: &str| parsed(raw, Method::GET).unwrap().unwrap().keep_alive;
        assert!(keep("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!keep(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!keep("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(keep(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!keep("HTTP/1.1 200 OK\r\n\r\n"));
    }
}
