//! A client's request head, parsed with `httparse` (the parser hyper uses) out of the
//! connection's read buffer, and the framing it implies (RFC 9112 §2-§6). The rules
//! are hyper's server rules, so relevo's verdict on a head is the one hyper gave
//! (`tests/differential.rs` holds them side by side), plus two of relevo's own: a
//! foreign major version is 505 and a higher minor version is read as HTTP/1.1.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

use super::request_body::Inbound;

/// How the request's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head and what it says about the connection.
#[derive(Debug)]
pub struct Head {
    /// Method, target, version and fields, as the request the service gets (its body
    /// still `Empty`). Boxed where it is made: the head passes through several
    /// layers before the service has it, and each would copy 250 bytes.
    pub request: Box<Request<Inbound>>,
    /// How the body that follows is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a 100 before sending its body.
    pub expect_continue: bool,
    /// The client offered `TE: trailers` (RFC 9110 §10.1.4): trailers may be sent.
    pub accepts_trailers: bool,
}

/// Why a head was refused; each maps to the status relevo answers before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head is larger than `limits.max_header_bytes`, or has more fields than
    /// `limits.max_headers` (431, RFC 6585 §5).
    #[error("request head too large")]
    TooLarge,
    /// A target longer than hyper's limit (414).
    #[error("request target too long")]
    UriTooLong,
    /// An HTTP major version other than 1 (505, RFC 9110 §15.6.6).
    #[error("HTTP version not supported")]
    Version,
    /// Anything else malformed (400).
    #[error("malformed request head: {0}")]
    Bad(&'static str),
}

impl HeadError {
    /// The status the client is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::UriTooLong => StatusCode::URI_TOO_LONG,
            HeadError::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            HeadError::Bad(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The longest target hyper takes (`MAX_URI_LEN`); `limits.max_uri_bytes` is
/// checked later, with the rest of relevo's own rules.
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;
/// Field slots on the stack; a larger `max_headers` takes a heap vector per parse.
const STACK_HEADERS: usize = 128;

/// What a parse is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest head, in bytes.
    pub max_bytes: usize,
    /// Most fields.
    pub max_headers: usize,
}

/// Parses the head at the start of `buf`, taking its bytes out of `buf` when it is
/// complete. `Ok(None)`: more bytes are needed (and `buf` is still within the limit).
pub fn parse(buf: &mut BytesMut, limits: Limits) -> Result<Option<Head>, HeadError> {
    screen_version(buf)?;
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap.resize_with(limits.max_headers, MaybeUninit::uninit);
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    let parsed =
        httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_bytes => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Token) if req.method.is_none() => {
            return Err(HeadError::Bad("invalid method"))
        }
        Err(httparse::Error::Token) => return Err(HeadError::Bad("invalid request target")),
        Err(httparse::Error::Version) => return Err(HeadError::Bad("invalid version")),
        Err(httparse::Error::HeaderName) => return Err(HeadError::Bad("invalid field name")),
        Err(httparse::Error::HeaderValue) => return Err(HeadError::Bad("invalid field value")),
        Err(_) => return Err(HeadError::Bad("invalid request line")),
    };
    if len > limits.max_bytes {
        return Err(HeadError::TooLarge);
    }
    // httparse has checked every piece, so these are all present.
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Bad("incomplete request line"));
    };
    if path.len() > MAX_URI_LEN {
        return Err(HeadError::UriTooLong);
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| HeadError::Bad("method"))?;
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - base;
    let path_at = (offset(path.as_bytes()), path.len());
    // What framing and persistence depend on is read from httparse's slices as the
    // offsets are taken, not looked up in the field map afterwards.
    let mut noted = Noted::default();
    let mut fields: Vec<((usize, usize), (usize, usize))> = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        noted.note(h.name.as_bytes(), h.value);
        fields.push((
            (offset(h.name.as_bytes()), h.name.len()),
            (offset(h.value), h.value.len()),
        ));
    }
    // The head's bytes, shared by the target and the field values (no copies).
    let bytes = buf.split_to(len).freeze();
    let slice = |(at, n): (usize, usize)| bytes.slice(at..at + n);
    let uri = Uri::from_maybe_shared(slice(path_at)).map_err(|_| HeadError::Bad("target"))?;
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    // Room for the fields the rewrite adds (X-Forwarded-For, Via), so the map does
    // not grow on the way to the backend.
    let meaning = noted.meaning(version)?;
    let mut headers = HeaderMap::with_capacity(fields.len() + 3);
    for (name, value) in fields {
        let name = HeaderName::from_bytes(&bytes[name.0..name.0 + name.1])
            .map_err(|_| HeadError::Bad("invalid field name"))?;
        // A Content-Length beside Transfer-Encoding is dropped (see `meaning`).
        if meaning.drop_length && name == header::CONTENT_LENGTH {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(slice(value))
            .map_err(|_| HeadError::Bad("invalid field value"))?;
        headers.append(name, value);
    }
    let mut request = Box::new(Request::new(Inbound::Empty));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some(Head {
        request,
        framing: meaning.framing,
        keep_alive: meaning.keep_alive,
        expect_continue: meaning.expect_continue,
        accepts_trailers: meaning.accepts_trailers,
    }))
}

/// What the fields say about framing and the connection, by hyper's rules.
struct Meaning {
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    accepts_trailers: bool,
    /// The head has both Transfer-Encoding and Content-Length: the latter is dropped.
    drop_length: bool,
}

/// The fields that frame an HTTP/1 message and decide whether its connection persists
/// (RFC 9112 §6, §9.3), as their lines are read: a client's request head and a
/// backend's response head note them the same way (each with its own
/// `Content-Length` syntax).
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageFraming {
    /// Whether any `Transfer-Encoding` line came.
    pub transfer_encoding: bool,
    /// Whether the last element of the last `Transfer-Encoding` line is `chunked`.
    pub chunked_last: bool,
    /// `None`: no `Content-Length`; else the value all lines agree on, or the first
    /// fault (reported only when Transfer-Encoding does not decide first).
    pub length: Option<Result<u64, &'static str>>,
    /// A `Connection` line says `close`.
    pub close: bool,
    /// A `Connection` line says `keep-alive`.
    pub keep_alive: bool,
}

impl MessageFraming {
    /// A `Transfer-Encoding` line.
    pub fn transfer_encoding(&mut self, value: &[u8]) {
        self.transfer_encoding = true;
        self.chunked_last = last_element(value).eq_ignore_ascii_case(b"chunked");
    }

    /// A `Content-Length` line, parsed by the side's rule (`None`: invalid).
    pub fn content_length(&mut self, parsed: Option<u64>) {
        self.length = match (self.length, parsed) {
            (Some(Err(e)), _) => Some(Err(e)),
            (_, None) => Some(Err("content-length")),
            (Some(Ok(prev)), Some(n)) if prev != n => Some(Err("conflicting content-length")),
            (_, Some(n)) => Some(Ok(n)),
        };
    }

    /// A `Connection` line; true when it names anything but `close` and
    /// `keep-alive` (a field, which is then hop-by-hop too).
    pub fn connection(&mut self, value: &[u8]) -> bool {
        // The usual values, whole: no split and trim.
        if value.eq_ignore_ascii_case(b"keep-alive") {
            self.keep_alive = true;
            return false;
        }
        if value.eq_ignore_ascii_case(b"close") {
            self.close = true;
            return false;
        }
        let mut names = false;
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if !token.is_empty() {
                names = true;
            }
        }
        names
    }

    /// `close` wins; a 1.1 connection persists otherwise, a 1.0 one only with
    /// `keep-alive` (RFC 9112 §9.3).
    pub fn persists(&self, version: Version) -> bool {
        !self.close && (version == Version::HTTP_11 || self.keep_alive)
    }
}

/// The fields framing and persistence depend on, as their lines were read.
#[derive(Default)]
struct Noted {
    /// Framing and persistence.
    framing: MessageFraming,
    /// `None`: no `Expect`; else whether the first line is `100-continue`.
    expect_continue: Option<bool>,
    /// A `TE` line offers `trailers`.
    trailers: bool,
}

impl Noted {
    /// Takes one field line into account.
    fn note(&mut self, name: &[u8], value: &[u8]) {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        match name.len() {
            10 if is(b"connection") => {
                self.framing.connection(value);
            }
            17 if is(b"transfer-encoding") => self.framing.transfer_encoding(value),
            14 if is(b"content-length") => self.framing.content_length(content_length(value)),
            // The first line is the one that counts, as `HeaderMap::get` has it.
            6 if is(b"expect") && self.expect_continue.is_none() => {
                self.expect_continue = Some(value.eq_ignore_ascii_case(b"100-continue"));
            }
            2 if is(b"te") => self.trailers |= has_token(value, b"trailers"),
            _ => {}
        }
    }

    /// RFC 9112 §6.1-§6.3 and §9.3, by hyper's server rules.
    fn meaning(&self, version: Version) -> Result<Meaning, HeadError> {
        let is_11 = version == Version::HTTP_11;
        let fields = &self.framing;
        let mut keep_alive = fields.persists(version);
        let mut framing = Framing::Empty;
        let mut drop_length = false;
        if fields.transfer_encoding {
            // RFC 9112 §6.1: a 1.0 message cannot be chunked; any other final coding
            // leaves a request without a length (400, §6.3 item 4).
            if !is_11 {
                return Err(HeadError::Bad("transfer-encoding in an HTTP/1.0 request"));
            }
            if !fields.chunked_last {
                return Err(HeadError::Bad("transfer-encoding does not end in chunked"));
            }
            framing = Framing::Chunked;
            // §6.1: a message with both may be an attempt to smuggle; it is read as
            // chunked, its Content-Length dropped (never forwarded), and the
            // connection closes after it.
            if fields.length.is_some() {
                drop_length = true;
                keep_alive = false;
            }
        } else if let Some(length) = fields.length {
            let n = length.map_err(HeadError::Bad)?;
            if n > 0 {
                framing = Framing::Length(n);
            }
        }
        Ok(Meaning {
            framing,
            keep_alive,
            expect_continue: self.expect_continue.unwrap_or(false),
            accepts_trailers: self.trailers,
            drop_length,
        })
    }
}

/// RFC 9110 §8.6: `1*DIGIT`, nothing else (hyper's `content_length_parse`).
pub fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Whether a comma-separated list field holds `token` (case-insensitive).
pub fn has_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|&b| b == b',')
        .any(|e| e.trim_ascii().eq_ignore_ascii_case(token))
}

/// The last element of a comma-separated list field, trimmed.
pub fn last_element(v: &[u8]) -> &[u8] {
    v.rsplit(|&b| b == b',').next().unwrap_or(v).trim_ascii()
}

/// Looks at the request line as soon as it is complete: a foreign major version is
/// refused (505), a higher minor version is rewritten to 1 in place (RFC 9110 §2.5,
/// RFC 9112 §2.3: processed as HTTP/1.1) before httparse, which knows only 1.0 and
/// 1.1, sees it. Leading empty lines are skipped as httparse does (RFC 9112 §2.2).
fn screen_version(buf: &mut BytesMut) -> Result<(), HeadError> {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let Some(end) = buf[start..].iter().position(|&b| b == b'\n') else {
        return Ok(());
    };
    let end = start + end;
    let line_end = if end > start && buf[end - 1] == b'\r' {
        end - 1
    } else {
        end
    };
    let line = &mut buf[start..line_end];
    let Some(space) = line.iter().rposition(|&b| b == b' ') else {
        return Ok(());
    };
    match &mut line[space + 1..] {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major != b'1' {
                return Err(HeadError::Version);
            }
            if *minor > b'1' {
                *minor = b'1';
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A head's bytes as one shared buffer: what the differential test and the fuzz
/// target feed to `parse`.
pub fn parse_bytes(bytes: &[u8], limits: Limits) -> Result<Option<Head>, HeadError> {
    let mut buf = BytesMut::from(bytes);
    parse(&mut buf, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 8192,
        max_headers: 16,
    };

    fn verdict(head: &[u8]) -> Result<Option<Framing>, HeadError> {
        parse_bytes(head, LIMITS).map(|h| h.map(|h| h.framing))
    }

    #[test]
    fn framing_follows_rfc_9112_section_6() {
        assert_eq!(
            verdict(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Some(Framing::Empty))
        );
        assert_eq!(
            verdict(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(Some(Framing::Length(5)))
        );
        assert_eq!(
            verdict(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Ok(Some(Framing::Chunked))
        );
        assert!(verdict(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n").is_err());
        assert!(verdict(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(
            verdict(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").is_err()
        );
        assert!(verdict(b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n").is_err());
        assert_eq!(verdict(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    }

    #[test]
    fn versions() {
        assert_eq!(verdict(b"GET / HTTP/2.0\r\n\r\n"), Err(HeadError::Version));
        let h = parse_bytes(b"GET / HTTP/1.2\r\n\r\n", LIMITS)
            .unwrap()
            .unwrap();
        assert_eq!(h.request.version(), Version::HTTP_11);
        let h = parse_bytes(b"\r\nGET / HTTP/1.0\r\n\r\n", LIMITS)
            .unwrap()
            .unwrap();
        assert_eq!(h.request.version(), Version::HTTP_10);
        assert!(!h.keep_alive);
    }

    #[test]
    fn limits() {
        let many: String = (0..20).map(|i| format!("x{i}: y\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(verdict(head.as_bytes()), Err(HeadError::TooLarge));
        let long = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(9000));
        assert_eq!(verdict(long.as_bytes()), Err(HeadError::TooLarge));
    }
}
