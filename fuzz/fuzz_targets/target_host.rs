#![no_main]
//! Host extraction from the request target and Host fields never panics, and what it
//! accepts is a lower-case host without brackets.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (Some(uri), host) = (parts.next(), parts.next()) else { return };
    let Ok(uri) = http::Uri::try_from(uri) else { return };
    let mut req = http::Request::new(());
    *req.uri_mut() = uri;
    if let Some(h) = host.and_then(|h| http::HeaderValue::from_bytes(h).ok()) {
        req.headers_mut().insert(http::header::HOST, h);
    }
    if let Ok(t) = relevo::http::host::target(&req) {
        assert!(!t.host.is_empty());
        assert_eq!(t.host, t.host.to_ascii_lowercase());
        assert!(!t.host.contains('[') && !t.host.contains('@'));
        // The authority forwarded as Host is the text the host was taken from.
        assert!(t.authority_str().to_ascii_lowercase().contains(t.host.as_str()));
    }
});
