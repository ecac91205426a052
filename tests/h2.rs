//! HTTP/2 on the TLS listener (issue 11): every stream goes to an HTTP/1.1 backend
//! through the same routing and pool, `:authority` as `Host`, no connection-specific
//! fields either way (RFC 9113 §8.2.2), trailers and large bodies streamed both ways,
//! and the flood limits (rapid reset, CVE-2023-44487) ending an abusive connection
//! without touching the others.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::tls::{self, Pki};
use common::{backend, host, WAIT};
use http::{HeaderMap, Request, Response, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

fn one_cert(pki: &Pki) -> relevo::config::tls::Tls {
    tls::tls_section(&[pki.issue("app", &["app.test"])])
}

/// relevo serving `app.test` over TLS from one backend, after `tweak`.
async fn app(tweak: impl FnOnce(&mut relevo::Config)) -> (common::Backend, Pki, tls::TlsProxy) {
    let b = backend("b1").await;
    let pki = Pki::new();
    let proxy = tls::start(vec![host("app.test", &[b.addr])], one_cert(&pki), tweak);
    (b, pki, proxy)
}

#[tokio::test]
async fn h2_requests_reach_http11_backends_without_connection_fields() {
    let (b, pki, proxy) = app(|_| {}).await;
    let stream = tls::connect(proxy.tls, "app.test", tls::default_client(&pki))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut send = tls::h2(stream).await;
    // The backend's hop-by-hop fields (Connection, Keep-Alive and what Connection
    // names) never reach an HTTP/2 client: RFC 9113 §8.2.2 makes them malformed.
    let got = tls::h2_get(&mut send, "https://app.test/hop?q=1").await;
    assert_eq!(got.resp.status(), 200);
    assert_eq!(got.resp.version(), Version::HTTP_2);
    for name in [
        "connection",
        "keep-alive",
        "x-private",
        "transfer-encoding",
        "upgrade",
    ] {
        assert!(!got.resp.headers().contains_key(name), "{name} was relayed");
    }
    assert_eq!(got.resp.headers()["x-public"], "ok");
    // The backend got HTTP/1.1, origin-form, with `:authority` as Host.
    let seen = b.last();
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.uri, "/hop?q=1");
    assert_eq!(seen.headers["host"], "app.test");
    assert_eq!(seen.headers["via"], "2 relevo");
    // The same for the fixed hop-by-hop fields of a head relayed as it came (the
    // fields kept beside the map are moved into it for hyper): the rest arrives.
    let got = tls::h2_get(&mut send, "https://app.test/hop-fixed").await;
    for name in [
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
        "proxy-authorization",
    ] {
        assert!(!got.resp.headers().contains_key(name), "{name} was relayed");
    }
    assert_eq!(got.resp.headers()["x-public"], "ok");
    assert_eq!(got.resp.headers()["via"], "1.1 relevo");
    assert_eq!(got.resp.headers()["content-length"], "2");
    assert_eq!(got.resp.headers().get_all("date").iter().count(), 1);
    assert_eq!(got.body, "b1");
    // Several streams at once on the one connection.
    let gets = (0..20).map(|i| {
        let mut send = send.clone();
        async move { tls::h2_get(&mut send, &format!("https://app.test/n{i}")).await }
    });
    for got in futures_join(gets).await {
        assert_eq!(got.body, "b1");
    }
}

/// Runs the futures together and returns their outputs in order.
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// A backend for bodies: `/count` answers how many request body bytes came (never
/// keeping them), `/trailers` sends a chunked body with a trailer field to a client
/// that said `TE: trailers`.
async fn body_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let path = req.uri().path().to_string();
                let mut body = req.into_body();
                let mut n: u64 = 0;
                while let Some(Ok(frame)) = body.frame().await {
                    n += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                let frames: Vec<Result<Frame<Bytes>, Infallible>> = if path == "/trailers" {
                    let mut trailers = HeaderMap::new();
                    trailers.insert("x-checksum", "42".parse().unwrap());
                    vec![
                        Ok(Frame::data(Bytes::from("with trailers"))),
                        Ok(Frame::trailers(trailers)),
                    ]
                } else {
                    vec![Ok(Frame::data(Bytes::from(n.to_string())))]
                };
                let mut resp = Response::new(StreamBody::new(tokio_stream::iter(frames)));
                if path == "/trailers" {
                    // hyper sends only the trailer fields the head announces.
                    resp.headers_mut()
                        .insert("trailer", "x-checksum".parse().unwrap());
                }
                Ok::<_, Infallible>(resp)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test]
async fn trailers_are_relayed_to_an_h2_client() {
    // RFC 9110 §6.5: trailer fields go on when the client said it takes them.
    let pki = Pki::new();
    let proxy = tls::start(
        vec![host("app.test", &[body_backend().await])],
        one_cert(&pki),
        |_| {},
    );
    let mut send = tls::h2_to(proxy.tls, &pki, "app.test").await;
    let req = Request::get("https://app.test/trailers")
        .header("te", "trailers")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(
        collected.trailers().map(|t| t["x-checksum"].clone()),
        Some("42".parse().unwrap())
    );
    assert_eq!(collected.to_bytes(), "with trailers");
}

/// relevo as a child process (so that its memory is its own) with a TLS listener
/// for `hosts` (`"name" = ["addr"]` lines) and one certificate for `names`.
async fn child_relevo(
    pki: &Pki,
    names: &[&str],
    hosts: &str,
) -> (common::process::Relevo, SocketAddr) {
    pki.issue("app", names);
    let text = format!(
        "listen = \"127.0.0.1:0\"\naccess_log = false\n[tls]\nlisten = \"127.0.0.1:0\"\ncerts = [{{ cert = \"app.pem\", key = \"app.key\" }}]\n[hosts]\n{hosts}"
    );
    let path = tls::write_config(pki.dir.path(), &text);
    let relevo = common::process::Relevo::spawn([
        "run",
        "--threads",
        "2",
        "--config",
        path.to_str().unwrap(),
    ])
    .await;
    let line = relevo.wait_log("TLS (HTTP/2, HTTP/1.1) on ").await;
    let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
    (relevo, addr)
}

#[tokio::test]
async fn large_bodies_stream_both_ways_over_h2_in_bounded_memory() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let b = backend("b1").await;
    let pki = Pki::new();
    let hosts = format!(
        "\"app.test\" = [\"{}\"]\n\"up.test\" = [\"{}\"]\n",
        b.addr,
        body_backend().await
    );
    let (relevo, tls_addr) = child_relevo(&pki, &["app.test", "up.test"], &hosts).await;
    let mut send = tls::h2_to(tls_addr, &pki, "app.test").await;
    assert_eq!(tls::h2_get(&mut send, "https://app.test/").await.body, "b1");
    let before = relevo.peak_rss_kib();
    // Download: 64 MiB the backend makes on the fly, read frame by frame.
    let req = Request::get(format!("https://app.test/big?{SIZE}"))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let mut body = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .unwrap()
        .unwrap()
        .into_body();
    let mut got = 0u64;
    while let Some(frame) = tokio::time::timeout(WAIT, body.frame()).await.unwrap() {
        got += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(got, SIZE);
    // Upload: 64 MiB sent in 64 KiB pieces as HTTP/2 flow control lets them go.
    let stream = tls::connect(tls_addr, "up.test", tls::default_client(&pki))
        .await
        .unwrap();
    let (mut up, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let pieces = tokio_stream::iter(
        (0..SIZE / chunk.len() as u64)
            .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))),
    );
    let req = Request::post("https://up.test/count")
        .body(StreamBody::new(pieces))
        .unwrap();
    let resp = tokio::time::timeout(WAIT * 3, up.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let answer = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(answer, SIZE.to_string());
    // Had relevo buffered either body, its peak memory would have grown by 64 MiB;
    // windows and send buffers bound it to a few MiB.
    let grown_mib = relevo.peak_rss_kib().saturating_sub(before) / 1024;
    println!("relevo's peak RSS grew by {grown_mib} MiB");
    assert!(
        grown_mib < 32,
        "relevo's peak memory grew by {grown_mib} MiB moving 2 x 64 MiB"
    );
}

#[tokio::test]
async fn a_rapid_reset_burst_ends_that_connection_only() {
    // CVE-2023-44487: streams opened and reset at once cost the server work but no
    // stream slot; past `h2_max_pending_accept_reset_streams` the connection ends.
    let (b, pki, proxy) = app(|_| {}).await;
    let stream = tls::connect(proxy.tls, "app.test", tls::default_client(&pki))
        .await
        .unwrap();
    let (mut client, conn) = h2::client::handshake(stream).await.unwrap();
    let conn = tokio::spawn(conn);
    // One whole exchange first: the client then knows relevo's SETTINGS (100 streams
    // at once), so every burst stream is within the limit and accepted by hyper.
    let (resp, _) = client
        .send_request(Request::get("https://app.test/").body(()).unwrap(), true)
        .unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    let mut reset = 0;
    for _ in 0..2000 {
        let ready = match tokio::time::timeout(WAIT, client.clone().ready()).await {
            Ok(Ok(ready)) => ready,
            _ => break,
        };
        client = ready;
        let req = Request::get("https://app.test/slow").body(()).unwrap();
        match client.send_request(req, false) {
            Ok((_, mut s)) => {
                s.send_reset(h2::Reason::CANCEL);
                reset += 1;
            }
            Err(_) => break,
        }
    }
    // The client queues all of them at once; relevo ends the connection (GOAWAY,
    // then the close) after a few hundred, well before all could reach the backend.
    let ended = tokio::time::timeout(WAIT, conn).await;
    assert!(
        ended.is_ok(),
        "the connection was still open after {reset} resets"
    );
    assert!(
        b.heads() < 1000,
        "{} of {reset} reset requests reached the backend",
        b.heads()
    );
    // Which limit ends it depends on how the burst is read: h2's pending-accept count
    // (GOAWAY ENHANCE_YOUR_CALM, what happens here on an idle machine) or relevo's
    // `h2_max_client_resets` (GOAWAY NO_ERROR) when hyper accepts each stream first.
    println!("the burst's connection ended with {ended:?}");
    // Another client is served as usual.
    let mut send = tls::h2_to(proxy.tls, &pki, "app.test").await;
    assert_eq!(tls::h2_get(&mut send, "https://app.test/").await.body, "b1");
}

#[tokio::test]
async fn requests_cancelled_after_they_reach_a_backend_are_bounded_too() {
    // The slow variant of CVE-2023-44487: each stream is accepted, its request sent to
    // the backend, and only then reset. h2 does not count these; relevo does
    // (`h2_max_client_resets`), and ends the connection past the limit.
    let (b, pki, proxy) = app(|c| c.limits.h2_max_client_resets = 5).await;
    let stream = tls::connect(proxy.tls, "app.test", tls::default_client(&pki))
        .await
        .unwrap();
    let (mut client, conn) = h2::client::handshake(stream).await.unwrap();
    let conn = tokio::spawn(conn);
    b.hold.send_replace(true);
    for i in 1..=10 {
        let Ok(Ok(ready)) = tokio::time::timeout(WAIT, client.clone().ready()).await else {
            break;
        };
        client = ready;
        let req = Request::get(format!("https://app.test/held{i}"))
            .body(())
            .unwrap();
        let Ok((_, mut s)) = client.send_request(req, true) else {
            break;
        };
        common::wait_until("the backend has the request", || b.heads() >= i).await;
        s.send_reset(h2::Reason::CANCEL);
        if conn.is_finished() {
            break;
        }
    }
    let ended = tokio::time::timeout(WAIT, conn).await;
    assert!(
        ended.is_ok(),
        "the connection was still open after 10 cancelled requests"
    );
    assert!(b.heads() <= 7, "{} requests reached the backend", b.heads());
    b.hold.send_replace(false);
}

#[tokio::test]
async fn curl_speaks_h2_through_relevo() {
    let out = std::process::Command::new("curl").arg("-V").output();
    let features = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !features.contains("HTTP2") {
        println!("SKIPPED curl_speaks_h2_through_relevo: curl is missing or lacks HTTP/2");
        return;
    }
    let b = backend("b1").await;
    let pki = Pki::new();
    let log = pki.dir.path().join("access.log");
    let proxy = tls::start(vec![host("app.test", &[b.addr])], one_cert(&pki), |c| {
        c.access_log = relevo::config::AccessLogTarget::File(log.clone());
    });
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--http2",
                "--max-time",
                "5",
                "-w",
                " %{http_version}",
            ])
            .arg("--cacert")
            .arg(pki.ca_file())
            .arg("--resolve")
            .arg(format!("app.test:{}:127.0.0.1", proxy.tls.port()))
            .arg(format!("https://app.test:{}/from-curl", proxy.tls.port()))
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        "b1 2",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        b.last().headers["host"],
        format!("app.test:{}", proxy.tls.port())
    );
    // The access log says which protocol and TLS version carried the request.
    common::wait_until("the access log line", || {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("target=https://app.test") && l.contains("proto=h2 tls=1.3"))
    })
    .await;
}

#[tokio::test]
async fn without_authority_the_host_field_names_the_host() {
    // RFC 9113 §8.3.1: a request may carry Host instead of `:authority`.
    let (b, pki, proxy) = app(|_| {}).await;
    let stream = tls::connect(proxy.tls, "app.test", tls::default_client(&pki))
        .await
        .unwrap();
    let (client, conn) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = Request::get("/no-authority")
        .header("host", "app.test")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(b.last().uri, "/no-authority");
    assert_eq!(b.last().headers["host"], "app.test");
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed_but_a_slow_response_is_not() {
    // As an idle HTTP/1 keep-alive connection, an HTTP/2 connection with no request
    // under way for `timeouts.client_header` ends (GOAWAY, RFC 9113 §6.8): idle
    // clients must not hold every `max_connections` slot. A response that takes
    // longer than that is under way, and is not cut.
    let (b, pki, proxy) = app(|c| c.timeouts.client_header = Duration::from_millis(300)).await;
    b.delay_ms.store(900, std::sync::atomic::Ordering::SeqCst);
    let stream = tls::connect(proxy.tls, "app.test", tls::default_client(&pki))
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get("https://app.test/waited")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "b1");
    let start = std::time::Instant::now();
    let ended = tokio::time::timeout(WAIT, conn).await;
    assert!(
        ended.is_ok(),
        "the idle connection was still open after {WAIT:?}"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "closed too early"
    );
}
