//! A real browser through relevo over HTTPS (issue 11): headless Chromium loads a page
//! by name from relevo's TLS listener, over HTTP/2 (ALPN `h2`), from an HTTP/1.1
//! backend; relevo's access log says which protocol carried it.
//!
//! Without Chromium the test says so and passes, unless `RELEVO_REQUIRE_CHROMIUM=1`
//! (set by `.ci/run`) makes it required.

mod common;

use common::chromium::{chromium, dump_dom};
use common::tls::{self, Pki};
use common::{backend, host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_loads_a_page_over_h2_through_relevo() {
    let Some(chromium) = chromium() else {
        return;
    };
    let b = backend("served-by-b1").await;
    let pki = Pki::new();
    let log = pki.dir.path().join("access.log");
    let section = tls::tls_section(&[pki.issue("app", &["app.test"])]);
    let proxy = tls::start(vec![host("app.test", &[b.addr])], section, |c| {
        c.access_log = relevo::config::AccessLogTarget::File(log.clone());
    });
    // The browser resolves app.test to relevo's TLS port and trusts the test CA's
    // certificate (flags for a throwaway profile: a real user would install the CA).
    let extra = [
        format!("--host-resolver-rules=MAP * 127.0.0.1:{}", proxy.tls.port()),
        "--ignore-certificate-errors".to_string(),
    ];
    let url = "https://app.test/from-chromium";
    let dom = tokio::task::block_in_place(|| dump_dom(&chromium, url, 1000, &extra));
    assert!(dom.contains("served-by-b1"), "{dom}");
    assert_eq!(b.last().headers["host"], "app.test");
    common::wait_until("the access log line of the browser's request", || {
        std::fs::read_to_string(&log).is_ok_and(|l| {
            l.lines().any(|l| {
                l.contains("target=https://app.test/from-chromium")
                    && l.contains("proto=h2 tls=1.3")
            })
        })
    })
    .await;
}
