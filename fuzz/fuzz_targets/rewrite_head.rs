#![no_main]
//! Head rewriting never panics and never lets a hop-by-hop field through; the
//! presence mask only spares lookups (the rewrite is the same with every field
//! assumed present).
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
        authority: http::HeaderValue::from_static("app.test"),
    };
    let upgrade = relevo::http::rewrite::upgrade_protocol(&req);
    let present = relevo::http::fields::Present::of(req.headers());
    let forwarded_for = relevo::http::rewrite::forwarded_for("127.0.0.1".parse().unwrap());
    let mut out = req;
    let mut same = http::Request::new(());
    *same.headers_mut() = out.headers().clone();
    let appended = relevo::http::rewrite::request(&mut out, &target, forwarded_for.clone(), upgrade.clone(), present);
    appended.into_headers(out.headers_mut());
    let all = relevo::http::fields::Present::ALL;
    let appended = relevo::http::rewrite::request(&mut same, &target, forwarded_for, upgrade.clone(), all);
    appended.into_headers(same.headers_mut());
    assert_eq!(out.headers(), same.headers(), "the presence mask changed the rewrite");
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
