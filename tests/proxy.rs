//! End-to-end behaviour of the proxy core: relevo on an ephemeral port between real
//! backends (hyper servers or raw sockets) and real clients (reqwest or raw bytes).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

// RFC 9112 §3.2: origin-form target plus Host (reverse-proxy style).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_proxy_style_uses_host_header() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    let resp = client()
        .get(format!("http://{}/a/b%20c?x=1&y=%2F", p.addr))
        .header("host", "App.Test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "b1");
    let seen = b.last();
    assert_eq!(
        seen.uri, "/a/b%20c?x=1&y=%2F",
        "path and query forwarded byte-exact"
    );
    assert_eq!(seen.headers["host"], "App.Test");
}

// RFC 9112 §3.2.2: absolute-form target; the target's authority wins over Host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_proxy_style_uses_absolute_target() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    let proxied = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{}", p.addr)).unwrap())
        .build()
        .unwrap();
    let resp = proxied.get("http://app.test/p?q=1").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = b.last();
    assert_eq!(seen.uri, "/p?q=1", "backend gets origin-form");
    assert_eq!(seen.headers["host"], "app.test");

    let text = raw(
        p.addr,
        b"GET http://app.test:8080/x HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        status_of(&text),
        200,
        "port ignored for matching; Host ignored: {text}"
    );
    assert_eq!(b.last().headers["host"], "app.test:8080");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_port_in_table_wins() {
    let (a, b) = (backend("plain").await, backend("port").await);
    let mut with_port = host("app.test", &[b.addr]);
    with_port.port = Some(8080);
    let p = start_proxy(vec![host("app.test", &[a.addr]), with_port], |_| {});
    let t = raw(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: app.test:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(t.ends_with("port"), "{t}");
    let t = raw(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: app.test:9090\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(t.ends_with("plain"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_gets_403_page_naming_it() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    let mut c = connect(p.addr).await;
    send(&mut c, b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n").await;
    let r = read_reply(&mut c).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("other.test"), "{}", r.body);
    assert_eq!(
        r.header("content-length").unwrap(),
        r.body.len().to_string()
    );
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    // The connection is still usable: a 403 without body leaves nothing in doubt.
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(read_reply(&mut c).await.status, 200);
    assert_eq!(b.requests(), 1);
}

// RFC 9112 §3.2: missing, repeated or invalid Host → 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_errors_are_400_and_close() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    for req in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: app.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: user@app.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: app.test/x\r\n\r\n",
        b"GET https://app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n",
        b"GET ftp://app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n",
    ] {
        let text = raw(p.addr, req).await;
        assert_eq!(
            status_of(&text),
            400,
            "{:?} -> {text}",
            String::from_utf8_lossy(req)
        );
        assert!(
            text.to_ascii_lowercase().contains("content-length:"),
            "{text}"
        );
    }
    assert_eq!(b.requests(), 0, "nothing reached the backend");
}

// RFC 9112 §3: malformed request lines and fields → 400; other major versions → 505.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_and_versions() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    for (req, want) in [
        (&b"GARBAGE\r\n\r\n"[..], 400),
        (b"GET /\r\nHost: app.test\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost app.test\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: app.test\r\nBad Name: x\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/2.0\r\nHost: app.test\r\n\r\n", 505),
        (b"GET / HTTP/3.0\r\nHost: app.test\r\n\r\n", 505),
    ] {
        let text = raw(p.addr, req).await;
        assert_eq!(
            status_of(&text),
            want,
            "{:?} -> {text}",
            String::from_utf8_lossy(req)
        );
    }
    assert_eq!(b.requests(), 0);
}

// RFC 6585 §5: a header section over the limit → 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_head_is_431() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |c| {
        c.limits.max_header_bytes = 8192
    });
    let big = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(status_of(&raw(p.addr, big.as_bytes()).await), 431);
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let req = format!("GET / HTTP/1.1\r\nHost: app.test\r\n{many}\r\n");
    assert_eq!(status_of(&raw(p.addr, req.as_bytes()).await), 431);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_is_502_and_slow_backend_is_504() {
    let dead = dead_addr().await;
    let slow = backend("slow").await;
    let p = start_proxy(
        vec![host("dead.test", &[dead]), host("slow.test", &[slow.addr])],
        |c| c.timeouts.response = Duration::from_millis(300),
    );
    let r = client()
        .get(format!("http://{}/", p.addr))
        .header("host", "dead.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(
        r.text().await.unwrap().contains(&dead.to_string()),
        "page names the backend"
    );
    let r = client()
        .get(format!("http://{}/slow", p.addr))
        .header("host", "slow.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
}

// RFC 9112 §9.3 persistence and §9.3.2 pipelining: responses come back in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_and_pipelining() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    let mut c = connect(p.addr).await;
    for i in 0..3 {
        send(
            &mut c,
            format!("GET /ka{i} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(read_reply(&mut c).await.status, 200);
    }
    send(
        &mut c,
        b"GET /p1 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /status?404 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /p3 HTTP/1.1\r\nHost: app.test\r\n\r\n",
    )
    .await;
    let statuses = [
        read_reply(&mut c).await.status,
        read_reply(&mut c).await.status,
        read_reply(&mut c).await.status,
    ];
    assert_eq!(statuses, [200, 404, 200]);
    let uris: Vec<String> = b
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.uri.clone())
        .collect();
    assert_eq!(uris[3..], ["/p1", "/status?404", "/p3"]);
}

// RFC 9112 §9.3: an HTTP/1.0 request without keep-alive gets its response and a close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_client_gets_close_delimited_exchange() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    let text = raw(p.addr, b"GET /chunked HTTP/1.0\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(status_of(&text), 200);
    assert!(
        !text.to_ascii_lowercase().contains("transfer-encoding"),
        "no chunked to 1.0: {text}"
    );
    assert!(text.ends_with("alpha-beta-gamma"), "{text}");
    assert_eq!(
        b.last().version,
        http::Version::HTTP_11,
        "upstream hop is HTTP/1.1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_across_clients() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    for _ in 0..20 {
        let text = raw(
            p.addr,
            b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status_of(&text), 200);
    }
    assert_eq!(b.requests(), 20);
    assert_eq!(
        b.connections(),
        1,
        "20 client connections shared one upstream connection"
    );
}

/// A backend that answers one request per connection, then closes without saying so.
/// Counts the connections it accepted and those it has closed.
async fn closing_backend() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (a, c) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // A failed read or write shows up as a wrong status at the client.
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                // Close after a moment, as a backend with a short keep-alive timeout does.
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(s);
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, accepted, closed)
}

// A pooled connection the backend closed is noticed and never used for a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connection_closed_by_backend_is_not_used() {
    let (addr, conns, closed) = closing_backend().await;
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    for i in 0..5 {
        let text = raw(p.addr, b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi").await;
        assert_eq!(status_of(&text), 200, "request {i}: {text}");
        // The next request comes once the backend has closed the pooled connection.
        wait_until("the backend closes its connection", || {
            closed.load(Ordering::SeqCst) == i + 1
        })
        .await;
    }
    assert_eq!(conns.load(Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let p = start_proxy(vec![host("app.test", &[b1.addr, b2.addr])], |_| {});
    let c = client();
    for _ in 0..30 {
        let r = c
            .get(format!("http://{}/", p.addr))
            .header("host", "app.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!((b1.requests(), b2.requests()), (15, 15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_balance_reaches_every_backend() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let mut h = host("app.test", &[b1.addr, b2.addr]);
    h.balance = relevo::config::Balance::Random;
    let p = start_proxy(vec![h], |_| {});
    let c = client();
    for _ in 0..60 {
        c.get(format!("http://{}/", p.addr))
            .header("host", "app.test")
            .send()
            .await
            .unwrap();
    }
    // P(one backend gets < 10 of 60) is about 1e-7.
    assert!(
        b1.requests() >= 10 && b2.requests() >= 10,
        "{} / {}",
        b1.requests(),
        b2.requests()
    );
}

// RFC 9112 §7.1: chunked bodies both ways are re-framed, never passed through blindly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_both_ways() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    let mut c = connect(p.addr).await;
    send(
        &mut c,
        b"POST /up HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(read_reply(&mut c).await.status, 200);
    assert_eq!(b.last().body, b"hello world");
    send(&mut c, b"GET /chunked HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    let r = read_reply(&mut c).await;
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.body, "alpha-beta-gamma");
}

// RFC 9110 §7.6.1: hop-by-hop fields removed on both hops; TE: trailers survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_fields_are_stripped_both_ways() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    let mut c = connect(p.addr).await;
    send(
        &mut c,
        b"GET /hop HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: timeout=9\r\n\
Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\nTE: gzip, trailers\r\nUpgrade: websocket\r\nX-Keep: 1\r\n\r\n",
    )
    .await;
    let r = read_reply(&mut c).await;
    let seen = b.last();
    for gone in [
        "connection",
        "x-drop",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the backend"
        );
    }
    assert_eq!(seen.headers["te"], "trailers");
    assert_eq!(seen.headers["x-keep"], "1");
    assert!(
        r.header("x-private").is_none() && r.header("keep-alive").is_none(),
        "{}",
        r.head
    );
    assert_eq!(r.header("x-public").as_deref(), Some("ok"));
}

// RFC 9110 §7.6.1: the fixed hop-by-hop fields of a response are dropped even when no
// `Connection` line names them (the head relayed as it came, screened while parsed);
// every other field, the backend's `Date` among them, reaches the client once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_hop_by_hop_response_fields_are_stripped() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    let mut c = connect(p.addr).await;
    for method in ["GET", "HEAD"] {
        send(
            &mut c,
            format!("{method} /hop-fixed HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes(),
        )
        .await;
        let r = if method == "HEAD" {
            let head = read_head(&mut c).await;
            Reply {
                status: head[9..12].parse().unwrap(),
                head,
                body: String::new(),
            }
        } else {
            read_reply(&mut c).await
        };
        let head = r.head.to_ascii_lowercase();
        for gone in [
            "keep-alive:",
            "proxy-connection:",
            "upgrade:",
            "te:",
            "proxy-authorization:",
            "connection:",
            "transfer-encoding:",
        ] {
            assert!(
                !head.contains(&format!("\n{gone}")),
                "{method}: {gone} relayed: {head}"
            );
        }
        assert_eq!(r.header("x-public").as_deref(), Some("ok"), "{method}");
        assert_eq!(r.header("via").as_deref(), Some("1.1 relevo"), "{method}");
        // RFC 9110 §8.6: a HEAD answer describes the body a GET would have had.
        assert_eq!(r.header("content-length").as_deref(), Some("2"), "{method}");
        assert_eq!(head.matches("\ncontent-length:").count(), 1, "{head}");
        assert_eq!(head.matches("\ndate:").count(), 1, "{head}");
    }
}

// RFC 9110 §7.6.3 Via on both hops; X-Forwarded-For appended to what the client sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_and_x_forwarded_for() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    let mut c = connect(p.addr).await;
    send(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 10.1.1.1\r\nVia: 1.0 edge\r\n\r\n",
    )
    .await;
    let r = read_reply(&mut c).await;
    let seen = b.last();
    assert_eq!(seen.headers["x-forwarded-for"], "10.1.1.1, 127.0.0.1");
    assert_eq!(seen.headers["via"], "1.0 edge, 1.1 relevo");
    assert_eq!(r.header("via").as_deref(), Some("1.1 relevo"));
}

// RFC 9112 §6.3: a close-delimited backend response is relayed whole (re-framed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delimited_backend_response() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            // A failed read or write shows up as a wrong body at the client.
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
                .await;
        }
    });
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    let mut c = connect(p.addr).await;
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    let r = read_reply(&mut c).await;
    assert_eq!(r.body, "until the end");
    assert_eq!(r.header("via").as_deref(), Some("1.0 relevo"));
}

// RFC 9110 §15.5.14: a declared body over the host's limit is refused before it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_limit_is_413() {
    let b = backend("b1").await;
    let mut h = host("app.test", &[b.addr]);
    h.max_body_bytes = Some(10);
    let p = start_proxy(vec![h], |_| {});
    let text = raw(
        p.addr,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 11\r\n\r\nhello world",
    )
    .await;
    assert_eq!(status_of(&text), 413);
    let text = raw(
        p.addr,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&text), 413, "{text}");
    let text = raw(p.addr, b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhelloworld").await;
    assert_eq!(status_of(&text), 200);
}

// An early answer while a body is unread closes the connection: the body is never
// parsed as a next request (no smuggling through a refused request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_request_body_is_never_parsed_as_a_request() {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";
    let req = format!(
        "POST / HTTP/1.1\r\nHost: other.test\r\nContent-Length: {}\r\n\r\n{}",
        smuggled.len(),
        String::from_utf8_lossy(smuggled)
    );
    let text = raw(p.addr, req.as_bytes()).await;
    assert_eq!(status_of(&text), 403);
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "one response only: {text}"
    );
    assert_eq!(b.requests(), 0, "the body reached the backend as a request");
    // And a clean request on a fresh connection works.
    let text = raw(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&text), 200);
}

// RFC 9110 §9.3.2: HEAD responses carry the GET's Content-Length and no body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_response_has_length_but_no_body() {
    let b = backend("backend-one").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    let mut c = connect(p.addr).await;
    send(&mut c, b"HEAD / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    let head = read_head(&mut c).await;
    assert!(
        head.to_ascii_lowercase().contains("content-length: 11"),
        "{head}"
    );
    // The next response must follow immediately: no body bytes in between.
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    let r = read_reply(&mut c).await;
    assert_eq!((r.status, r.body.as_str()), (200, "backend-one"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let p = start_proxy(vec![host("app.test", &[b1.addr, b2.addr])], |_| {});
    let mut tasks = Vec::new();
    for i in 0..100 {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = connect(addr).await;
            for j in 0..5 {
                send(
                    &mut c,
                    format!("GET /{i}/{j} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes(),
                )
                .await;
                assert_eq!(read_reply(&mut c).await.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(b1.requests() + b2.requests(), 500);
}
