//! The checks a request head passes on its way in, each with the status the RFCs give
//! it: 414 for a long target, 501/400 for transfer codings, 417 for an unknown
//! expectation, 413 for a declared body over the entry's limit, and Max-Forwards.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response};

use super::error::ProxyError;
use super::fields::{list_elements, Present};
use super::rewrite::via;

/// The checks that come before routing: target length (414), transfer codings
/// (400/501) and expectations (417).
/// `present`: which of the fields looked at the request has.
pub fn before_routing<B>(
    req: &Request<B>,
    max_uri_bytes: usize,
    present: Present,
) -> Result<(), ProxyError> {
    target_form(req)?;
    let uri = req.uri();
    let uri_len = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if uri_len > max_uri_bytes {
        return Err(ProxyError::UriTooLong(max_uri_bytes));
    }
    if present.has(Present::TRANSFER_ENCODING) {
        transfer_codings(req.headers())?;
    }
    // RFC 9110 §10.1.1: 100-continue is the only expectation there is.
    let expect = present
        .has(Present::EXPECT)
        .then(|| req.headers().get(header::EXPECT))
        .flatten();
    if expect.is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"100-continue")) {
        return Err(ProxyError::ExpectationFailed);
    }
    Ok(())
}

/// RFC 9112 §3.2: origin-form (`/path`) or absolute-form for every method, the
/// asterisk (`*`) only with OPTIONS, authority-form (`host:port`) only with CONNECT.
fn target_form<B>(req: &Request<B>) -> Result<(), ProxyError> {
    let uri = req.uri();
    let method = req.method();
    let bad = |why: &str| Err(ProxyError::BadTarget(format!("`{uri}` {why}")));
    match (uri.scheme(), uri.authority()) {
        (Some(_), _) if method == Method::CONNECT => {
            bad("is not host:port, which CONNECT needs (RFC 9112 §3.2.3)")
        }
        (Some(_), _) => Ok(()),
        (None, Some(_)) if method == Method::CONNECT => Ok(()),
        (None, Some(_)) => bad("is authority-form, which only CONNECT may use (RFC 9112 §3.2.3)"),
        (None, None) if uri.path() == "*" && uri.query().is_none() => {
            if method == Method::OPTIONS {
                Ok(())
            } else {
                bad("is asterisk-form, which only OPTIONS may use (RFC 9112 §3.2.4)")
            }
        }
        (None, None) if method == Method::CONNECT => {
            bad("is not host:port, which CONNECT needs (RFC 9112 §3.2.3)")
        }
        (None, None) if uri.path().starts_with('/') => Ok(()),
        (None, None) => bad("must begin with / (RFC 9112 §3.2.1)"),
    }
}

/// `Content-Length` of a request, when it has one. hyper has already rejected
/// invalid or conflicting values (RFC 9112 §6.3).
pub fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// 413 as soon as the declared length is over the entry's limit (RFC 9110 §15.5.14);
/// a streamed body is cut at the limit by `ClientBody`.
pub fn body_within(limit: Option<u64>, declared: Option<u64>) -> Result<(), ProxyError> {
    match (limit, declared) {
        (Some(limit), Some(len)) if len > limit => Err(ProxyError::BodyTooLarge(limit)),
        _ => Ok(()),
    }
}

/// Max-Forwards (RFC 9110 §7.6.2): a TRACE or OPTIONS that may not be forwarded any
/// further is answered here; a larger value is decremented on the way through.
pub fn max_forwards<B>(req: &mut Request<B>) -> Option<Response<Bytes>> {
    if !matches!(*req.method(), Method::TRACE | Method::OPTIONS) {
        return None;
    }
    let left: u64 = req
        .headers()
        .get(header::MAX_FORWARDS)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if left > 0 {
        req.headers_mut()
            .insert(header::MAX_FORWARDS, HeaderValue::from(left - 1));
        return None;
    }
    let mut resp = if req.method() == Method::TRACE {
        // The message as received (RFC 9110 §9.3.8), minus credentials.
        let mut echo = format!("TRACE {} {:?}\r\n", req.uri(), req.version());
        for (name, value) in req.headers() {
            if ![
                header::COOKIE,
                header::AUTHORIZATION,
                header::PROXY_AUTHORIZATION,
            ]
            .contains(name)
            {
                echo.push_str(&format!(
                    "{name}: {}\r\n",
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
        }
        echo.push_str("\r\n");
        let mut r = Response::new(Bytes::from(echo));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("message/http"),
        );
        r
    } else {
        let mut r = Response::new(Bytes::new());
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"),
        );
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        r
    };
    resp.headers_mut()
        .insert(header::VIA, HeaderValue::from_static(via(req.version())));
    Some(resp)
}

/// A request's transfer codings must be exactly `chunked` (hyper has checked that it
/// comes last): `chunked` twice is invalid (RFC 9112 §7: 400), and other codings
/// would reach the backend still applied but no longer announced (RFC 9112 §6.1: 501).
fn transfer_codings(headers: &HeaderMap) -> Result<(), ProxyError> {
    if headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .any(|v| v.to_str().is_err())
    {
        return Err(ProxyError::UnsupportedCoding("(not visible ASCII)".into()));
    }
    let mut chunked = 0;
    for coding in list_elements(headers, header::TRANSFER_ENCODING) {
        if coding.eq_ignore_ascii_case("chunked") {
            chunked += 1;
        } else {
            return Err(ProxyError::UnsupportedCoding(coding.to_string()));
        }
    }
    if chunked > 1 {
        return Err(ProxyError::ClientBody(
            "chunked applied more than once".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(method: &str, target: &str) -> Result<(), ProxyError> {
        let req = Request::builder()
            .method(method)
            .uri(target)
            .body(())
            .unwrap();
        target_form(&req)
    }

    #[test]
    fn target_forms_fit_their_methods() {
        // RFC 9112 §3.2.1-§3.2.4.
        for (method, target) in [
            ("GET", "/a?b"),
            ("GET", "http://a.test/x"),
            ("OPTIONS", "*"),
            ("OPTIONS", "/x"),
            ("CONNECT", "a.test:443"),
        ] {
            assert!(form(method, target).is_ok(), "{method} {target}");
        }
        for (method, target) in [
            ("GET", "*"),
            ("POST", "*"),
            ("GET", "a.test:80"),
            ("OPTIONS", "a.test:80"),
            ("CONNECT", "/x"),
            ("CONNECT", "http://a.test/"),
        ] {
            assert!(
                matches!(form(method, target), Err(ProxyError::BadTarget(_))),
                "{method} {target}"
            );
        }
    }
}
