//! Head rewriting between the hops (RFC 9110 §7.6): hop-by-hop fields go, `Host`,
//! `X-Forwarded-For` and `Via` are set. Bodies are passed through untouched.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};

use super::fields::{append, has_token, line, list_elements, Present, FORWARDED_FOR};
use super::host::Target;

/// How many fixed hop-by-hop fields there are.
const HOP_BY_HOP_COUNT: usize = 6;
/// Fields that describe one hop only (RFC 9110 §7.6.1, RFC 9112 §6.1, and the
/// non-standard ones proxies have always removed). `TE: trailers` is handled apart.
static HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// The protocols an HTTP/1.1 client asks to upgrade to (RFC 9110 §7.8), without `h2c`
/// (relevo does not speak HTTP/2 to backends, and cleartext h2 upgrades are deprecated
/// by RFC 9113 §3.1); `None` when there is nothing to upgrade to.
pub fn upgrade_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11
        || !req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"))
    {
        return None;
    }
    let wanted: Vec<&str> = list_elements(req.headers(), header::UPGRADE)
        .filter(|p| !p.eq_ignore_ascii_case("h2c"))
        .collect();
    if wanted.is_empty() {
        return None;
    }
    HeaderValue::from_str(&wanted.join(", ")).ok()
}

/// The fields relevo adds to a request that the client did not send itself: the
/// backend connection writes them after the request's own fields instead of their
/// going into its field map (an insert into a `HeaderMap` costs several times the
/// write). A client's own `X-Forwarded-For` or `Via` gets relevo's entry folded in, in
/// the map, and is then not here.
#[derive(Debug, Clone, Default)]
pub struct Appended {
    /// `X-Forwarded-For`: the client's address.
    pub forwarded_for: Option<HeaderValue>,
    /// `Via`: relevo's entry (RFC 9110 §7.6.3).
    pub via: Option<&'static str>,
}

impl Appended {
    /// Writes the fields as head lines into `dst`.
    pub fn write(&self, dst: &mut Vec<u8>) {
        if let Some(v) = &self.forwarded_for {
            line(dst, b"x-forwarded-for", v.as_bytes());
        }
        if let Some(v) = self.via {
            line(dst, b"via", v.as_bytes());
        }
    }

    /// Puts the fields into `headers`, for a writer that writes the map alone.
    pub fn into_headers(self, headers: &mut HeaderMap) {
        if let Some(v) = self.forwarded_for {
            append(headers, FORWARDED_FOR, v);
        }
        if let Some(v) = self.via {
            append(headers, header::VIA, HeaderValue::from_static(v));
        }
    }
}

/// Rewrites a client request for the backend: origin-form target, the client's host
/// in `Host`, hop-by-hop fields removed (but an `upgrade` is asked for again),
/// `X-Forwarded-For` and `Via` appended (into the map when the client sent them,
/// else returned as `Appended`, written after the map's fields).
/// `present` says which of the fields looked up the request has (`Present::of`).
pub fn request<B>(
    req: &mut Request<B>,
    target: &Target,
    forwarded_for: HeaderValue,
    upgrade: Option<HeaderValue>,
    present: Present,
) -> Appended {
    let received = req.version();
    // In place: the request is boxed, and taking it apart would move it twice.
    *req.version_mut() = Version::HTTP_11;
    // An origin-form target (what a reverse proxy gets) is sent as it came.
    let uri = req.uri_mut();
    if uri.scheme().is_some() || uri.authority().is_some() {
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *uri = Uri::from(path);
    }
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    // TE is hop-by-hop too, but `trailers` says the client can take trailers, which
    // the backend needs to know to send them (RFC 9110 §10.1.4).
    if present.has(Present::TE) {
        let wants_trailers = headers
            .get_all(header::TE)
            .iter()
            .any(|v| has_token(v, "trailers"));
        headers.remove(header::TE);
        if wants_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    // relevo answers `Expect: 100-continue` itself when it starts reading the body.
    if present.has(Present::EXPECT) {
        headers.remove(header::EXPECT);
    }
    if headers.get(header::HOST) != Some(&target.authority) {
        headers.insert(header::HOST, target.authority.clone());
    }
    let mut appended = Appended::default();
    if present.has(Present::FORWARDED_FOR) {
        append(headers, FORWARDED_FOR, forwarded_for);
    } else {
        appended.forwarded_for = Some(forwarded_for);
    }
    if present.has(Present::VIA) {
        append(
            headers,
            header::VIA,
            HeaderValue::from_static(via(received)),
        );
    } else {
        appended.via = Some(via(received));
    }
    if let Some(protocols) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocols);
    }
    appended
}

/// Rewrites a backend response for the client: hop-by-hop fields removed, `Via` added.
/// `Content-Length` stays: it is the length of what the backend sends, and for HEAD
/// and 304 it describes a body that is not there.
pub fn response<B>(resp: Response<B>) -> Response<B> {
    let (mut parts, body) = resp.into_parts();
    let received = parts.version;
    let switched_to = (parts.status == http::StatusCode::SWITCHING_PROTOCOLS)
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, which must not be
    // forwarded with a body framed otherwise. Transfer-Encoding is hop-by-hop (RFC 9112
    // §6.1): the upstream client has undone chunked, or read a body with another final
    // coding until the close; either way the bytes go on as they came, under relevo's own framing,
    // and no coding relevo did not apply is announced.
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::TE);
    append(
        &mut parts.headers,
        header::VIA,
        HeaderValue::from_static(via(received)),
    );
    if let Some(protocol) = switched_to {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
    }
    // The client hop speaks relevo's version, whatever the backend spoke: the client
    // connection frames the body (chunked to 1.1, close-delimited to 1.0) from this.
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, body)
}

/// `Via` entry: the protocol received on that hop and this proxy's pseudonym (RFC 9110 §7.6.3).
pub(super) fn via(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "1.0 relevo",
        Version::HTTP_2 => "2 relevo",
        _ => "1.1 relevo",
    }
}

/// Removes `Connection`, every field it names, and the fixed hop-by-hop fields.
/// Most heads have none of them: one pass over the names finds out, and only
/// then are fields looked up and removed. Nothing is allocated unless `Connection`
/// names a field besides the fixed ones (`keep-alive`, the usual one, is one of them).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = [false; HOP_BY_HOP_COUNT];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    // RFC 9110 §7.6.1; `close` names no field.
    let named: Vec<HeaderName> = list_elements(headers, header::CONNECTION)
        .filter(|e| {
            !e.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|h| e.eq_ignore_ascii_case(h.as_str()))
        })
        .filter_map(|e| HeaderName::from_bytes(e.as_bytes()).ok())
        .collect();
    for name in &named {
        headers.remove(name);
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
}

/// The client's address as an `X-Forwarded-For` value, made once per client
/// connection (formatting and copying it for every request was an allocation each).
pub fn forwarded_for(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("-"));
    };
    let mut out = [0u8; 15];
    let mut n = 0;
    for (i, octet) in v4.octets().iter().enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        let mut digits = itoa::Buffer::new();
        let d = digits.format(*octet).as_bytes();
        out[n..n + d.len()].copy_from_slice(d);
        n += d.len();
    }
    HeaderValue::from_bytes(&out[..n]).unwrap_or(HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_connection_named_and_fixed_fields() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, X-Secret , keep-alive"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
