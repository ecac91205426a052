//! Field-value syntax shared by the checks and the rewriting (RFC 9110 §5.6).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// One field line as written on the wire, `name: value` and CRLF (RFC 9112 §5): every
/// head relevo writes, both ways, and a chunked body's trailer section.
pub fn line(dst: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

/// `X-Forwarded-For`, which the `http` crate has no constant for.
pub const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Which of the fields the checks and the rewrite look up a request has, found in one
/// pass over its names: most requests have none of them, and looking up a field that
/// is not there still costs a hash and a probe (seven of them per request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Present(u8);

impl Present {
    /// `Transfer-Encoding`.
    pub const TRANSFER_ENCODING: Present = Present(1);
    /// `Content-Length`.
    pub const CONTENT_LENGTH: Present = Present(1 << 1);
    /// `Expect`.
    pub const EXPECT: Present = Present(1 << 2);
    /// `Connection`.
    pub const CONNECTION: Present = Present(1 << 3);
    /// `TE`.
    pub const TE: Present = Present(1 << 4);
    /// `Via`.
    pub const VIA: Present = Present(1 << 5);
    /// `X-Forwarded-For`.
    pub const FORWARDED_FOR: Present = Present(1 << 6);
    /// Every one of them, as a caller that did not look says: each is looked up.
    pub const ALL: Present = Present((1 << 7) - 1);

    /// The fields of `headers` that are among these.
    pub fn of(headers: &HeaderMap) -> Present {
        let mut present = 0;
        for name in headers.keys() {
            present |= match *name {
                header::TRANSFER_ENCODING => Present::TRANSFER_ENCODING.0,
                header::CONTENT_LENGTH => Present::CONTENT_LENGTH.0,
                header::EXPECT => Present::EXPECT.0,
                header::CONNECTION => Present::CONNECTION.0,
                header::TE => Present::TE.0,
                header::VIA => Present::VIA.0,
                _ if *name == FORWARDED_FOR => Present::FORWARDED_FOR.0,
                _ => 0,
            };
        }
        Present(present)
    }

    /// Whether the field `one` stands for is there.
    pub fn has(self, one: Present) -> bool {
        self.0 & one.0 != 0
    }
}

/// The non-empty elements of a list-valued field over all its lines (RFC 9110 §5.6.1),
/// trimmed; lines that are not visible ASCII are skipped.
pub fn list_elements(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

/// Appends `value` to a list-valued field, folding earlier lines into one. The usual
/// case, no earlier line, is one lookup and no copy.
pub fn append(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    use http::header::Entry;
    match headers.entry(name) {
        Entry::Vacant(slot) => {
            slot.insert(value);
        }
        Entry::Occupied(mut lines) => {
            let mut joined = Vec::new();
            for v in lines.iter() {
                joined.extend_from_slice(v.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(value.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                lines.insert(v);
            }
        }
    }
}

/// Whether a comma-separated field value names `token` (parameters ignored).
pub fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|s| {
        s.split(',').any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(token)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_fields_are_found_in_one_pass() {
        let mut h = HeaderMap::new();
        assert_eq!(Present::of(&h), Present::default());
        h.append("content-length", HeaderValue::from_static("5"));
        h.append("x-other", HeaderValue::from_static("1"));
        h.append("te", HeaderValue::from_static("trailers"));
        let p = Present::of(&h);
        assert!(p.has(Present::CONTENT_LENGTH) && p.has(Present::TE));
        assert!(!p.has(Present::EXPECT) && !p.has(Present::CONNECTION));
        assert!(!p.has(Present::TRANSFER_ENCODING));
        for one in [Present::TE, Present::EXPECT, Present::CONNECTION] {
            assert!(Present::ALL.has(one));
        }
    }

    #[test]
    fn appends_to_list_fields() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        append(
            &mut h,
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_static("127.0.0.1"),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 127.0.0.1");
    }
}
