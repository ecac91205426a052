//! The TLS listener (issue 11): handshakes in both versions, SNI choosing among
//! certificates, 421 for a host the connection's certificate does not cover, reloads,
//! `relevo check` on certificates, and bad input that must end quickly and alone.

mod common;

use std::time::{Duration, Instant};

use common::tls::{self, Pki};
use common::{backend, host, WAIT};
use relevo::config::tls::TlsVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Two certificates: `app.test` first (the default), then `*.wild.test`.
fn two_certs(pki: &Pki) -> relevo::config::tls::Tls {
    tls::tls_section(&[
        pki.issue("app", &["app.test"]),
        pki.issue("wild", &["*.wild.test"]),
    ])
}

#[tokio::test]
async fn tls_1_2_and_1_3_handshakes_serve_requests() {
    let b = backend("b1").await;
    let pki = Pki::new();
    let proxy = tls::start(vec![host("app.test", &[b.addr])], two_certs(&pki), |c| {
        c.admin = Some(relevo::config::Admin {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
        });
    });
    for (version, want) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let config = tls::client(&pki.ca_der(), &[version], &[b"http/1.1"]);
        let stream = tls::connect(proxy.tls, "app.test", config).await.unwrap();
        assert_eq!(stream.get_ref().1.protocol_version(), Some(want));
        let mut send = tls::h1(stream).await;
        let got = tls::h1_get(&mut send, "app.test", "/x").await;
        assert_eq!(got.resp.status(), 200);
        assert_eq!(got.body, "b1");
    }
    // Each request is counted with its TLS version.
    let counted = |tls: &str| {
        let p = relevo::stats::Protocol {
            h2: false,
            tls: Some(if tls == "1.2" { "1.2" } else { "1.3" }),
        };
        proxy.stats.requests_by_protocol[p.index()].load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!((counted("1.2"), counted("1.3")), (1, 1));
    // The metric and the status document say the same, labels bounded.
    let admin = proxy.admin.unwrap();
    let metrics = common::get(admin, "admin", "/metrics", "").await.body;
    for version in ["1.2", "1.3"] {
        let series = format!(
            "relevo_requests_by_protocol_total{{protocol=\"http/1.1\",tls=\"{version}\"}} 1"
        );
        assert!(metrics.contains(&series), "{series} not in\n{metrics}");
    }
    let status = common::get(admin, "admin", "/status.json", "").await.body;
    assert!(
        status.contains("\"protocol\": \"http/1.1\",\n      \"tls\": \"1.3\""),
        "{status}"
    );
}

#[tokio::test]
async fn min_version_1_3_refuses_tls_1_2() {
    let b = backend("b1").await;
    let pki = Pki::new();
    let mut section = two_certs(&pki);
    section.min_version = TlsVersion::V1_3;
    let proxy = tls::start(vec![host("app.test", &[b.addr])], section, |_| {});
    let old = tls::client(&pki.ca_der(), &[&rustls::version::TLS12], &[]);
    assert!(tls::connect(proxy.tls, "app.test", old).await.is_err());
    let new = tls::client(&pki.ca_der(), &[&rustls::version::TLS13], &[]);
    assert!(tls::connect(proxy.tls, "app.test", new).await.is_ok());
}

#[tokio::test]
async fn sni_picks_the_certificate_by_its_names() {
    let b = backend("b1").await;
    let pki = Pki::new();
    let proxy = tls::start(vec![host("app.test", &[b.addr])], two_certs(&pki), |_| {});
    // The client verifies the certificate for the name it sends: a handshake that
    // succeeds got a certificate carrying that name (the wildcard one for a.wild.test).
    for name in ["app.test", "a.wild.test", "B.Wild.Test"] {
        let config = tls::default_client(&pki);
        assert!(
            tls::connect(proxy.tls, name, config).await.is_ok(),
            "{name}"
        );
    }
    // No certificate covers `other.test`: the first one answers, which a client
    // verifying other.test refuses, and one verifying app.test accepts.
    assert!(
        tls::connect(proxy.tls, "other.test", tls::default_client(&pki))
            .await
            .is_err()
    );
    // Without SNI at all: the first certificate.
    let mut no_sni = (*tls::default_client(&pki)).clone();
    no_sni.enable_sni = false;
    assert!(tls::connect(proxy.tls, "app.test", no_sni.into())
        .await
        .is_ok());
}

#[tokio::test]
async fn a_host_the_connections_certificate_does_not_cover_gets_421() {
    // RFC 9110 §15.5.20: a request on a connection whose certificate does not cover
    // its host is answered 421 Misdirected Request, over HTTP/1.1 and HTTP/2.
    let b = backend("b1").await;
    let pki = Pki::new();
    let hosts = vec![host("app.test", &[b.addr]), host("a.wild.test", &[b.addr])];
    let proxy = tls::start(hosts, two_certs(&pki), |_| {});
    let h1 = tls::client(&pki.ca_der(), rustls::DEFAULT_VERSIONS, &[b"http/1.1"]);
    let mut send = tls::h1(tls::connect(proxy.tls, "app.test", h1).await.unwrap()).await;
    assert_eq!(
        tls::h1_get(&mut send, "app.test", "/").await.resp.status(),
        200
    );
    assert_eq!(
        tls::h1_get(&mut send, "a.wild.test", "/")
            .await
            .resp
            .status(),
        421
    );
    let mut send = tls::h2_to(proxy.tls, &pki, "a.wild.test").await;
    assert_eq!(
        tls::h2_get(&mut send, "https://a.wild.test/")
            .await
            .resp
            .status(),
        200
    );
    assert_eq!(
        tls::h2_get(&mut send, "https://app.test/")
            .await
            .resp
            .status(),
        421
    );
    assert_eq!(
        b.requests(),
        2,
        "a misdirected request never reaches a backend"
    );
}

#[tokio::test]
async fn certificates_reload_with_the_configuration() {
    let b = backend("b1").await;
    let pki = Pki::new();
    pki.issue("app", &["app.test"]);
    let text = format!(
        "listen = \"127.0.0.1:0\"\n[tls]\nlisten = \"127.0.0.1:0\"\ncerts = [{{ cert = \"app.pem\", key = \"app.key\" }}]\n[hosts]\n\"app.test\" = [\"{}\"]\n\"new.test\" = [\"{}\"]\n",
        b.addr, b.addr
    );
    let path = tls::write_config(pki.dir.path(), &text);
    let proxy = tls::start_config(relevo::Config::load(&path).unwrap());
    assert!(
        tls::connect(proxy.tls, "new.test", tls::default_client(&pki))
            .await
            .is_err()
    );
    // The same files, now naming new.test too; a reload (what SIGHUP runs) picks it up.
    pki.issue("app", &["app.test", "new.test"]);
    relevo::server::reload(&proxy.state, relevo::Config::load(&path).unwrap());
    let stream = tls::connect(proxy.tls, "new.test", tls::default_client(&pki))
        .await
        .unwrap();
    let mut send = tls::h2(stream).await;
    assert_eq!(tls::h2_get(&mut send, "https://new.test/").await.body, "b1");
}

/// Reads until the proxy closes the connection (or fails it); how long that took.
async fn closed_within(mut s: TcpStream, bound: Duration) -> Duration {
    let start = Instant::now();
    let mut sink = vec![0u8; 4096];
    let read = tokio::time::timeout(bound, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the connection was still open after {bound:?}"
    );
    start.elapsed()
}

#[tokio::test]
async fn bad_input_on_the_tls_port_ends_quickly_and_alone() {
    let b = backend("b1").await;
    let pki = Pki::new();
    let proxy = tls::start(vec![host("app.test", &[b.addr])], two_certs(&pki), |c| {
        c.timeouts.client_header = Duration::from_millis(500);
    });
    // A handshake that never starts, and one that stops halfway (a ClientHello record
    // announcing 512 bytes, 5 of which come): both bounded by timeouts.client_header.
    let stalled = TcpStream::connect(proxy.tls).await.unwrap();
    let mut truncated = TcpStream::connect(proxy.tls).await.unwrap();
    truncated
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
        .await
        .unwrap();
    // Meanwhile other clients are served.
    let mut send = tls::h2_to(proxy.tls, &pki, "app.test").await;
    assert_eq!(tls::h2_get(&mut send, "https://app.test/").await.body, "b1");
    for s in [stalled, truncated] {
        let took = closed_within(s, WAIT).await;
        assert!(took < Duration::from_secs(3), "closed after {took:?}");
    }
    // Garbage in a handshake record: rustls answers with an alert and closes at once.
    let mut garbage = TcpStream::connect(proxy.tls).await.unwrap();
    // A ClientHello of 4 bytes that are no ClientHello.
    let record = [
        0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef,
    ];
    garbage.write_all(&record).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, garbage.read_to_end(&mut answer)).await;
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "a TLS alert record: {answer:?}"
    );
    // Plain HTTP to the TLS port: a plain 400 saying so, then the close.
    let text = common::raw(proxy.tls, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(common::status_of(&text), 400, "{text}");
    assert!(text.contains("HTTPS"), "{text}");
    // Still serving, the same connection included.
    assert_eq!(tls::h2_get(&mut send, "https://app.test/").await.body, "b1");
}

#[tokio::test]
async fn plain_http_for_a_tls_host_is_redirected_when_asked() {
    // RFC 9110 §15.4.9: 308 keeps the method and the body on the https request.
    let b = backend("b1").await;
    let pki = Pki::new();
    let mut section = two_certs(&pki);
    section.redirect_http = true;
    let hosts = vec![host("app.test", &[b.addr]), host("plain.test", &[b.addr])];
    let proxy = tls::start(hosts, section, |_| {});
    let reply = common::get(proxy.addr, "app.test", "/a?b=1", "").await;
    assert_eq!(reply.status, 308);
    assert_eq!(
        reply.header("location"),
        Some(format!("https://app.test:{}/a?b=1", proxy.tls.port()))
    );
    assert_eq!(
        common::get(proxy.addr, "plain.test", "/", "").await.status,
        200
    );
}

/// `relevo check` on `text`, written beside the certificates: exit code and stderr.
fn check(pki: &Pki, text: &str) -> (i32, String) {
    let path = tls::write_config(pki.dir.path(), text);
    let out = std::process::Command::new(common::process::BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn check_reports_certificate_problems_at_their_place() {
    let pki = Pki::new();
    pki.issue("app", &["app.test"]);
    pki.issue("other", &["other.test"]);
    pki.issue_with("old", &["old.test"], |p| {
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    });
    let with = |certs: &str| {
        format!("[tls]\ncerts = [\n  {certs}\n]\n[hosts]\n\"app.test\" = [\"127.0.0.1:1\"]\n\"nocert.test\" = [\"127.0.0.1:1\"]\n")
    };
    let (code, err) = check(&pki, &with(r#"{ cert = "app.pem", key = "app.key" }"#));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("relevo.toml:7:1: warning: no tls certificate covers host `nocert.test`"),
        "{err}"
    );
    for (entry, at, says) in [
        (
            r#"{ cert = "missing.pem", key = "app.key" }"#,
            ":3:12:",
            "cannot read certificate",
        ),
        (
            r#"{ cert = "app.pem", key = "other.key" }"#,
            ":3:12:",
            "does not match",
        ),
        (
            r#"{ cert = "app.pem", key = "nokey.key" }"#,
            ":3:29:",
            "cannot read key",
        ),
        (
            r#"{ cert = "old.pem", key = "old.key" }"#,
            ":3:12:",
            "expired",
        ),
    ] {
        let (code, err) = check(&pki, &with(entry));
        assert_eq!(code, 2, "{entry}: {err}");
        assert!(err.contains(at) && err.contains(says), "{entry}: {err}");
    }
}
