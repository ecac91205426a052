//! A backend response's end-to-end fields kept as the backend wrote them: the field
//! lines are screened once, while the head is parsed (hop-by-hop fields and the
//! framing fields left out, RFC 9110 §7.6.1), and copied into the client's head as
//! they came. Building a `HeaderMap` for them, and taking the hop-by-hop fields out of
//! it again, was a fifth of relevo's instructions per request; a `HeaderMap` is made
//! only where one is needed (HTTP/2 clients, which hyper writes to).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

use super::rewrite::via;

/// The end-to-end field lines of a response head, with what the client's head needs
/// to know of the fields left out.
#[derive(Debug, Clone)]
pub struct PassedFields {
    /// The head's bytes, shared with nothing else: the lines point into it.
    bytes: Bytes,
    /// Where each passed line's name and value are in `bytes`, in the backend's order.
    lines: Vec<Line>,
    /// The version the backend spoke: the `Via` entry relevo adds names it.
    received: Version,
    /// The `Content-Length` the backend declared, when no `Transfer-Encoding` overrides
    /// it (RFC 9112 §6.3): the client's framing, and what HEAD and 304 answers describe.
    content_length: Option<u64>,
    /// Whether a `Date` line is among them (relevo adds one otherwise, RFC 9110 §6.6.1).
    has_date: bool,
}

/// One field line: offsets of its name and its value in the head.
#[derive(Debug, Clone, Copy, Default)]
pub struct Line {
    /// Where the name starts.
    pub name: u32,
    /// Where the name ends.
    pub name_end: u32,
    /// Where the value starts.
    pub value: u32,
    /// Where the value ends.
    pub value_end: u32,
}

impl PassedFields {
    /// The lines of `bytes` at `lines`, which the parser has screened.
    pub fn new(
        bytes: Bytes,
        lines: Vec<Line>,
        received: Version,
        content_length: Option<u64>,
        has_date: bool,
    ) -> PassedFields {
        PassedFields {
            bytes,
            lines,
            received,
            content_length,
            has_date,
        }
    }

    /// Each line's name and value, as the backend wrote them.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines.iter().map(|l| {
            (
                self.bytes
                    .get(l.name as usize..l.name_end as usize)
                    .unwrap_or_default(),
                self.bytes
                    .get(l.value as usize..l.value_end as usize)
                    .unwrap_or_default(),
            )
        })
    }

    /// The declared `Content-Length`, if it is the body's length.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Whether the backend sent `Date`.
    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// The `Via` entry relevo adds for this hop (RFC 9110 §7.6.3).
    pub fn via(&self) -> &'static str {
        via(self.received)
    }

    /// Moves the fields into `headers` (with `Content-Length` and `Via`), for a client
    /// hyper writes to. The parser has checked every name and value, so none is lost.
    pub fn into_headers(self, headers: &mut HeaderMap) {
        for l in &self.lines {
            let name = self
                .bytes
                .get(l.name as usize..l.name_end as usize)
                .and_then(|n| HeaderName::from_bytes(n).ok());
            let value = HeaderValue::from_maybe_shared(
                self.bytes.slice(l.value as usize..l.value_end as usize),
            );
            if let (Some(name), Ok(value)) = (name, value) {
                headers.append(name, value);
            }
        }
        if let Some(n) = self.content_length {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        super::fields::append(headers, header::VIA, HeaderValue::from_static(self.via()));
    }
}
