#![no_main]
//! Head rewriting never panics and never lets a hop-by-hop field through.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut req = http::Request::new(());
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        req.headers_mut().append(name, value);
    }
    let named: Vec<String> = req
        .headers()
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .collect();
    let target = relevo::http::host::Target {
        host: "app.test".into(),
        port: None,
        authority: http::uri::Authority::from_static("app.test"),
    };
    let upgrade = relevo::http::rewrite::upgrade_protocol(&req);
    let out = relevo::http::rewrite::request(req, &target, "127.0.0.1:1".parse().unwrap(), upgrade.clone());
    let h = out.headers();
    for gone in ["keep-alive", "proxy-connection", "proxy-authorization", "transfer-encoding", "expect"] {
        assert!(!h.contains_key(gone), "{gone} survived");
    }
    if upgrade.is_none() {
        assert!(!h.contains_key("connection") && !h.contains_key("upgrade"));
        for name in named {
            if name != "host" && name != "x-forwarded-for" && name != "via" && name != "te" {
                assert!(!h.contains_key(name.as_str()), "{name} named by Connection survived");
            }
        }
    }
    assert_eq!(h.get_all(http::header::HOST).iter().count(), 1);
    let resp = relevo::http::rewrite::response(http::Response::new(()));
    assert!(resp.headers().contains_key(http::header::VIA));
});
