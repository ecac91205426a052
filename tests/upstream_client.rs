//! relevo's own HTTP/1.1 client (`src/upstream/`): what it does with what a backend
//! sends that the other suites do not script. Raw backends written in the test, raw
//! bytes from the client; each test names the RFC section it protects.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A backend that hands every accepted connection to `serve`; counts connections.
async fn backend_with<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(BufReader<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(BufReader::new(s)));
        }
    });
    (addr, conns)
}

/// Reads one request head; false when the connection closed first.
async fn read_request_head(r: &mut BufReader<TcpStream>) -> bool {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        if line == "\r\n" {
            return true;
        }
    }
}

// RFC 9110 §15.5.14 and RFC 9112 §9.5: a backend may refuse a request body before
// reading it (413 and a close). relevo relays that answer as soon as it comes, not
// after the upload or a timeout, and does not reuse the connection; the client's
// connection closes after it, since the rest of its body was never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_to_an_upload_is_relayed_at_once() {
    let (addr, _) = backend_with(|mut r| async move {
        if read_request_head(&mut r).await {
            let s = r.get_mut();
            let _ = s
                .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!")
                .await;
            // Keeps the connection open without reading: only the answer can end the
            // exchange.
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    })
    .await;
    let p = start_proxy(vec![host("app.test", &[addr])], |c| {
        c.timeouts.response = Duration::from_secs(60);
        c.timeouts.client_body = Duration::from_secs(60);
    });
    let mut c = connect(p.addr).await;
    let started = Instant::now();
    send(
        &mut c,
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000000\r\n\r\n",
    )
    .await;
    // Part of the body; the client then waits, as a client reading the answer would.
    c.get_mut().write_all(&[b'x'; 64 * 1024]).await.unwrap();
    let r = read_reply(&mut c).await;
    assert_eq!((r.status, r.body.as_str()), (413, "big!"));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the answer waited for {:?}",
        started.elapsed()
    );
    assert_eq!(
        r.header("connection").as_deref(),
        Some("close"),
        "{}",
        r.head
    );
}

// RFC 9110 §15.2: a proxy forwards interim responses (here 103 Early Hints, RFC
// 8297) to HTTP/1.1 clients, never to HTTP/1.0 ones; the `100 Continue` relevo asked
// for itself (it answers the client's `Expect`) is not forwarded. The final response
// after them is relayed whole, and the backend connection, whose framing stayed
// intact, is reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_reach_http11_clients_before_the_answer() {
    let (addr, conns) = backend_with(|mut r| async move {
        while read_request_head(&mut r).await {
            let reply: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if r.get_mut().write_all(reply).await.is_err() {
                return;
            }
        }
    })
    .await;
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    let mut c = connect(p.addr).await;
    for _ in 0..2 {
        send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
        let hints = read_head(&mut c).await;
        assert!(hints.starts_with("HTTP/1.1 103 "), "{hints}");
        assert!(hints.contains("link: </s.css>; rel=preload"), "{hints}");
        assert!(!hints.to_ascii_lowercase().contains("x-hop"), "{hints}");
        let r = read_reply(&mut c).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{}", r.head);
    }
    let text = raw(p.addr, b"GET / HTTP/1.0\r\nHost: app.test\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

// RFC 8297 §2: early hints are useful only if they come before the final response
// is ready: here the backend sends the final response only after the client has
// received the 103.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_reach_the_client_while_the_answer_is_prepared() {
    let hinted = Arc::new(tokio::sync::Notify::new());
    let go = hinted.clone();
    let (addr, _) = backend_with(move |mut r| {
        let go = go.clone();
        async move {
            if !read_request_head(&mut r).await {
                return;
            }
            let s = r.get_mut();
            let _ = s
                .write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n")
                .await;
            go.notified().await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
                .await;
        }
    })
    .await;
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    let mut c = connect(p.addr).await;
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    let hints = tokio::time::timeout(WAIT, read_head(&mut c)).await.unwrap();
    assert!(hints.starts_with("HTTP/1.1 103 "), "{hints}");
    hinted.notify_one();
    let r = read_reply(&mut c).await;
    assert_eq!((r.status, r.body.as_str()), (200, "final"), "{}", r.head);
}

// RFC 9110 §15.2.2: after a 101 the connection belongs to the new protocol; bytes
// the backend sent in the same packet as the 101's head are its first bytes and
// reach the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_sent_with_a_101_reach_the_client() {
    let (addr, _) = backend_with(|mut r| async move {
        if !read_request_head(&mut r).await {
            return;
        }
        let s = r.get_mut();
        let _ = s
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello from the backend")
            .await;
        let mut buf = [0u8; 64];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 || r.get_mut().write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    })
    .await;
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    let mut c = connect(p.addr).await;
    send(
        &mut c,
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    let head = read_head(&mut c).await;
    assert_eq!(status_of(&head), 101, "{head}");
    let mut first = vec![0u8; "hello from the backend".len()];
    tokio::time::timeout(WAIT, c.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, b"hello from the backend");
    c.get_mut().write_all(b"echo").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(WAIT, c.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"echo");
}

// A response head larger than `limits.upstream_read_buffer` is refused (502), like
// a request head over the limit is (RFC 9112 §2.3 lets either side bound it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_head_over_the_limit_is_502() {
    let (addr, _) = backend_with(|mut r| async move {
        if read_request_head(&mut r).await {
            let mut head = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
            head.extend(std::iter::repeat_n(b'a', 20_000));
            head.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
            let _ = r.get_mut().write_all(&head).await;
        }
    })
    .await;
    let p = start_proxy(vec![host("app.test", &[addr])], |c| {
        c.limits.upstream_read_buffer = 8192;
        c.retries.tries = 1;
    });
    let text = raw(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&text), 502, "{text}");
}
