//! A backend response's end-to-end fields kept as the client's head will carry them:
//! the field lines are screened once, while the head is parsed (hop-by-hop and
//! framing fields left out, RFC 9110 §7.6.1), and written out as one block of
//! `name: value` lines, `Via` included. Building a `HeaderMap` for them, and taking
//! the hop-by-hop fields out of it again, was a fifth of relevo's instructions per
//! request; a map is made only where one is needed (HTTP/2 clients, which hyper
//! writes to).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

use super::fields::line;
use super::rewrite::via;

/// The end-to-end field lines of a response head, with what the client's head needs
/// to know of the fields left out.
#[derive(Debug, Clone, Default)]
pub struct PassedFields {
    /// `name: value\r\n` lines as the client's head carries them: the backend's
    /// names and values, each line ending in CRLF whatever the backend ended it with.
    block: Vec<u8>,
    /// The `Content-Length` the backend declared, when no `Transfer-Encoding` overrides
    /// it (RFC 9112 §6.3): the client's framing, and what HEAD and 304 answers describe.
    content_length: Option<u64>,
    /// Whether a `Date` line is among them (relevo adds one otherwise, RFC 9110 §6.6.1).
    has_date: bool,
}

impl PassedFields {
    /// Room for lines adding up to about `len` bytes.
    pub fn with_capacity(len: usize) -> PassedFields {
        PassedFields {
            block: Vec::with_capacity(len + VIA_LINE),
            ..PassedFields::default()
        }
    }

    /// Adds a line the parser has checked (a token name, a value without CR or LF).
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        line(&mut self.block, name, value);
    }

    /// Ends the block with relevo's `Via` entry for a backend that spoke `received`
    /// (RFC 9110 §7.6.3), after the backend's own `Via` line if it sent one, and
    /// records what the framing needs.
    pub fn finish(
        &mut self,
        received: Version,
        backend_via: Option<&[u8]>,
        content_length: Option<u64>,
        has_date: bool,
    ) {
        self.block.extend_from_slice(b"via: ");
        if let Some(earlier) = backend_via {
            self.block.extend_from_slice(earlier);
            self.block.extend_from_slice(b", ");
        }
        self.block.extend_from_slice(via(received).as_bytes());
        self.block.extend_from_slice(b"\r\n");
        self.content_length = content_length;
        self.has_date = has_date;
    }

    /// The lines, as written.
    pub fn block(&self) -> &[u8] {
        &self.block
    }

    /// The declared `Content-Length`, if it is the body's length.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Whether the backend sent `Date`.
    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// Moves the fields into `headers` (with `Content-Length`), for a client hyper
    /// writes to. The parser has checked every name and value, so none is lost.
    pub fn into_headers(self, headers: &mut HeaderMap) {
        for line in self.block.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // A name is a token (no colon): the first colon ends it.
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = HeaderName::from_bytes(&line[..colon]);
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii_start());
            if let (Ok(name), Ok(value)) = (name, value) {
                headers.append(name, value);
            }
        }
        if let Some(n) = self.content_length {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
}

/// The bytes `Via` takes at most: `via: 1.1 relevo\r\n`.
const VIA_LINE: usize = 18;
