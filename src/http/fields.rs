//! Field-value syntax shared by the checks and the rewriting (RFC 9110 §5.6).

use http::header::{HeaderMap, HeaderName, HeaderValue};

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
