//! Conformance: raw bytes against relevo and scripted raw backends, one test per rule,
//! each naming the RFC section it protects. After every malicious input, a clean
//! request on a fresh connection proves nothing leaked into the next exchange.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A proxy for `app.test` in front of one recording backend.
async fn setup(tweak: impl FnOnce(&mut relevo::Config)) -> (Proxy, Backend) {
    let b = backend("b1").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], tweak);
    (p, b)
}

/// Sends `req` on a fresh connection and expects `status` then a close; then checks
/// that a clean request still works and that the backend saw nothing of the attack.
async fn rejects(p: &Proxy, b: &Backend, req: &[u8], status: u16) {
    let before = b.heads();
    let text = raw(p.addr, req).await;
    assert_eq!(
        status_of(&text),
        status,
        "{:?} -> {text}",
        String::from_utf8_lossy(req)
    );
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "exactly one response: {text}"
    );
    assert_eq!(
        b.heads(),
        before,
        "{:?} reached the backend",
        String::from_utf8_lossy(req)
    );
    clean_request_works(p).await;
}

async fn clean_request_works(p: &Proxy) {
    let text = raw(
        p.addr,
        b"GET /clean HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        status_of(&text),
        200,
        "clean request after the attack: {text}"
    );
}

// ---------------------------------------------------------------- request framing --

// RFC 9112 §6.1, §6.3 (3): Content-Length with Transfer-Encoding. relevo (through
// hyper) processes the chunked framing, drops Content-Length before forwarding and
// closes the connection after the response: the bytes after the chunked body are
// never parsed as a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_never_smuggles() {
    let (p, b) = setup(|_| {}).await;
    let text = raw(
        p.addr,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n",
    )
    .await;
    assert_eq!(
        status_of(&text),
        200,
        "framed by chunked and served: {text}"
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "the response announces the close: {text}"
    );
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "the connection closed after one response: {text}"
    );
    // The backend got exactly the POST, its empty chunked body whole, and no length.
    assert_eq!(b.heads(), 1, "one request reached the backend");
    let seen = b.last();
    assert_eq!((seen.method.as_str(), seen.uri.as_str()), ("POST", "/"));
    assert!(seen.complete && seen.body.is_empty(), "{seen:?}");
    assert!(
        !seen.headers.contains_key("content-length"),
        "Content-Length was forwarded: {:?}",
        seen.headers
    );
    clean_request_works(&p).await;
    assert!(
        b.seen.lock().unwrap().iter().all(|s| s.uri != "/smuggled"),
        "the bytes after the chunked body were parsed as a request"
    );
}

// RFC 9112 §6.3 (5), RFC 9110 §8.6: invalid or conflicting Content-Length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_content_length_is_400() {
    let (p, b) = setup(|_| {}).await;
    for cl in [
        "abc",
        "-1",
        "1 1",
        "+5",
        "5, 6",
        "0x5",
        "99999999999999999999999",
    ] {
        let req = format!("POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: {cl}\r\n\r\nhello");
        rejects(&p, &b, req.as_bytes(), 400).await;
    }
    rejects(&p, &b, b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400).await;
}

// RFC 9112 §6.3 (4)/§6.1: chunked must be the final coding of a request; anything else
// is a 400, including disguised forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_not_ending_in_chunked_is_400() {
    let (p, b) = setup(|_| {}).await;
    for te in [
        "gzip",
        "chunked, gzip",
        "\"chunked\"",
        "identity",
        "chunkedx",
        "xchunked",
        "chunked;q=1",
    ] {
        let req = format!(
            "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n"
        );
        rejects(&p, &b, req.as_bytes(), 400).await;
    }
}

// RFC 9112 §6.1, §7: `chunked` once and only once; codings relevo does not implement
// get 501 rather than reaching the backend unannounced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_codings_other_than_one_chunked_are_refused() {
    let (p, b) = setup(|_| {}).await;
    rejects(&p, &b, b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400).await;
    rejects(&p, &b, b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400).await;
    rejects(
        &p,
        &b,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    )
    .await;
    // Empty list elements are allowed (RFC 9110 §5.6.1).
    let text = raw(p.addr, b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: ,chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n").await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert_eq!(b.last().body, b"hi");
}

// RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_with_transfer_encoding_is_400() {
    let (p, b) = setup(|_| {}).await;
    rejects(
        &p,
        &b,
        b"POST / HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    )
    .await;
}

// RFC 9112 §5.1: no whitespace between field name and colon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitespace_before_colon_is_400() {
    let (p, b) = setup(|_| {}).await;
    rejects(&p, &b, b"GET / HTTP/1.1\r\nHost : app.test\r\n\r\n", 400).await;
    rejects(
        &p,
        &b,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        400,
    )
    .await;
}

// RFC 9112 §5.2: obs-fold in a request is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_fold_is_400() {
    let (p, b) = setup(|_| {}).await;
    rejects(
        &p,
        &b,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Folded: a\r\n b\r\n\r\n",
        400,
    )
    .await;
    rejects(
        &p,
        &b,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Folded: a\r\n\tb\r\n\r\n",
        400,
    )
    .await;
}

// RFC 9112 §2.2 (bare CR), RFC 9110 §5.5 (NUL and other controls in field values).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_bytes_in_fields_are_400() {
    let (p, b) = setup(|_| {}).await;
    rejects(
        &p,
        &b,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\rb\r\n\r\n",
        400,
    )
    .await;
    rejects(
        &p,
        &b,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\x00b\r\n\r\n",
        400,
    )
    .await;
    rejects(
        &p,
        &b,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\x07b\r\n\r\n",
        400,
    )
    .await;
    rejects(
        &p,
        &b,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\x7fb\r\n\r\n",
        400,
    )
    .await;
}

// RFC 9110 §5.1: field names are tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_field_names_are_400() {
    let (p, b) = setup(|_| {}).await;
    for name in ["Bad Name", "X(y)", "X\"y\"", "", "X/y", "X@y"] {
        let req = format!("GET / HTTP/1.1\r\nHost: app.test\r\n{name}: v\r\n\r\n");
        rejects(&p, &b, req.as_bytes(), 400).await;
    }
}

// RFC 9112 §3: request-line grammar; RFC 9110 §15.6.6: other major versions get 505.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_line_grammar() {
    let (p, b) = setup(|_| {}).await;
    for req in [
        &b"GET  / HTTP/1.1\r\nHost: app.test\r\n\r\n"[..],
        b"GET / HTTP/1.1 extra\r\nHost: app.test\r\n\r\n",
        b"G\x00T / HTTP/1.1\r\nHost: app.test\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\nHost: app.test\r\n\r\n",
        b"GET / http/1.1\r\nHost: app.test\r\n\r\n",
        b"GET / HTTP/1.x\r\nHost: app.test\r\n\r\n",
    ] {
        rejects(&p, &b, req, 400).await;
    }
    rejects(&p, &b, b"GET / HTTP/2.0\r\nHost: app.test\r\n\r\n", 505).await;
    // RFC 9112 §2.3: a higher minor version is served as HTTP/1.1.
    let text = raw(
        p.addr,
        b"GET / HTTP/1.2\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&text), 200, "{text}");
}

// RFC 9112 §7.1: chunk sizes are hex digits; an invalid chunk aborts the exchange with
// 400 and a close, and nothing after it is parsed as a request. (hyper skips chunk
// extensions without validating their bytes; relevo re-frames every body, so such
// bytes never reach a backend.) relevo streams chunked bodies: the backend may already
// have the head (and the chunks before the bad one) when the bad chunk is read; then
// its exchange is aborted, so it never gets a complete request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunks_are_400_and_close() {
    let (p, b) = setup(|_| {}).await;
    for chunk in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
    ] {
        let (heads, seen) = (b.heads(), b.requests());
        let req = format!(
            "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n"
        );
        let text = raw(p.addr, req.as_bytes()).await;
        assert_eq!(status_of(&text), 400, "{chunk:?} -> {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{chunk:?}: the 400 announces the close: {text}"
        );
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{chunk:?}: {text}");
        clean_request_works(&p).await;
        // Let the backend finish every exchange it got a head for, then look at them:
        // the clean GET, and at most the POST, broken off before its body ended.
        wait_until("the backend is done with what it received", || {
            b.requests() - seen == b.heads() - heads
        })
        .await;
        let got = b.seen.lock().unwrap()[seen..].to_vec();
        let mut posts = 0;
        for s in &got {
            match (s.method.as_str(), s.uri.as_str()) {
                ("GET", "/clean") => assert!(s.complete),
                ("POST", "/") => {
                    posts += 1;
                    assert!(
                        !s.complete,
                        "{chunk:?}: the backend got a complete request: {s:?}"
                    );
                }
                _ => panic!("{chunk:?}: the backend got {s:?}"),
            }
        }
        assert!(posts <= 1, "{chunk:?}: the POST was sent {posts} times");
        assert_eq!(got.len() - posts, 1, "{chunk:?}: {got:?}");
    }
}

// ------------------------------------------------------------ backend responses --

/// A raw backend that answers every request on a connection with `reply`. Counts the
/// connections it accepted and those that ended (relevo closed or reset them).
async fn scripted(reply: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let (c, e) = (conns.clone(), ended.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let e = e.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                'conn: loop {
                    let mut line = String::new();
                    // Read one request head (these tests send no bodies), answer it.
                    loop {
                        line.clear();
                        // A reset (Err) ends the connection as much as a close does.
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            break 'conn;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if r.get_mut().write_all(reply).await.is_err() {
                        break;
                    }
                }
                e.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, conns, ended)
}

async fn via_scripted(reply: &'static [u8], req: &[u8]) -> (String, Proxy) {
    let (addr, _, _) = scripted(reply).await;
    let p = start_proxy(vec![host("app.test", &[addr])], |c| c.retries.tries = 1);
    let text = raw(p.addr, req).await;
    (text, p)
}

/// As `via_scripted`, with a backend that closes its connection after the reply
/// (a close-delimited body ends there).
async fn via_scripted_close(reply: &'static [u8], req: &[u8]) -> (String, (), Proxy) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                let mut line = String::new();
                while r.read_line(&mut line).await.unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let s = r.get_mut();
                // The proxy may be gone when a test fails early; nothing to report then.
                let _ = s.write_all(reply).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let p = start_proxy(vec![host("app.test", &[addr])], |c| c.retries.tries = 1);
    let text = raw(p.addr, req).await;
    (text, (), p)
}

// RFC 9112 §6.3: a response with invalid framing is not relayed: 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badly_framed_backend_response_is_502() {
    let req = b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    for reply in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nok",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ] {
        let (text, _p) = via_scripted(reply, req).await;
        assert_eq!(
            status_of(&text),
            502,
            "{:?} -> {text}",
            String::from_utf8_lossy(reply)
        );
    }
}

// RFC 9112 §6.3 (3): a response with both Transfer-Encoding and Content-Length is
// framed by the chunked coding, and the Content-Length is not passed on. RFC 9112
// §6.1: Transfer-Encoding is hop-by-hop, so a coding relevo did not apply (gzip) is
// never announced to the client; the bytes go on as they came, under relevo's own
// framing — including a body with a non-chunked final coding, read until the close
// (RFC 9112 §6.3 (4)).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_transfer_encoding_overrides_content_length() {
    let (text, _p) = via_scripted(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let lower = text.to_ascii_lowercase();
    assert!(!lower.contains("content-length: 3"), "{text}");
    assert!(text.contains("hello"), "{text}");
    let (text, _p) = via_scripted(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let lower = text.to_ascii_lowercase();
    assert!(!lower.contains("gzip"), "{text}");
    assert!(lower.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), "{text}");
}

// RFC 9112 §2.2: a backend's bare-LF lines reach the client as CRLF lines; field
// names keep the backend's spelling (RFC 9110 §5.1: case-insensitive); RFC 9112 §9.3:
// an HTTP/1.0 backend's `Connection: keep-alive` is this hop's, never relayed; RFC
// 9110 §7.6.3: `Via` names the version the backend spoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_backend_head_is_relayed_with_crlf_lines() {
    let (text, _p) = via_scripted(
        b"HTTP/1.0 200 OK\nContent-Type: text/plain\nX-Mixed-Case: Value\nCONTENT-LENGTH: 2\nConnection: Keep-Alive\n\nok",
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    assert_eq!(body, "ok", "{text}");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        !head.replace("\r\n", "").contains('\n'),
        "a bare LF: {text:?}"
    );
    assert!(head.contains("\r\nX-Mixed-Case: Value\r\n"), "{text}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\ncontent-type: text/plain"), "{text}");
    assert_eq!(lower.matches("content-length:").count(), 1, "{text}");
    assert!(lower.contains("\r\nvia: 1.0 relevo"), "{text}");
    assert!(!lower.contains("keep-alive"), "{text}");
}

// RFC 9110 §7.6.3: relevo's `Via` entry follows the backend's, in one list; a second
// backend line stays a line of its own, in its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_via_follows_the_backends() {
    let req = b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    let (text, _p) = via_scripted(
        b"HTTP/1.1 200 OK\r\nVia: 1.1 varnish\r\nContent-Length: 2\r\n\r\nok",
        req,
    )
    .await;
    let lower = text.to_ascii_lowercase();
    assert_eq!(lower.matches("\r\nvia:").count(), 1, "{text}");
    assert!(
        lower.contains("\r\nvia: 1.1 varnish, 1.1 relevo\r\n"),
        "{text}"
    );
    let (text, _p) = via_scripted(
        b"HTTP/1.1 200 OK\r\nVia: 1.0 a\r\nVia: 1.1 b\r\nContent-Length: 2\r\n\r\nok",
        req,
    )
    .await;
    let lower = text.to_ascii_lowercase();
    let vias: Vec<&str> = lower
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("via: "))
        .collect();
    assert_eq!(vias.join(", "), "1.0 a, 1.1 b, 1.1 relevo", "{text}");
}

// RFC 9112 §6.3 (4), §6.1: a response whose final coding is not chunked is read until
// the backend closes; the client gets those bytes exactly, framed by relevo, with no
// Transfer-Encoding it cannot undo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_with_unknown_final_coding_is_relayed_byte_exact() {
    // Bytes that look like chunked framing must not be taken for it.
    let body: &[u8] = b"\x08\x00raw-bytes\r\n0\r\n\r\n";
    let mut reply =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n".to_vec();
    reply.extend_from_slice(body);
    let reply: &'static [u8] = Box::leak(reply.into_boxed_slice());
    let (text, _, _p) = via_scripted_close(
        reply,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, framed) = text.split_once("\r\n\r\n").expect("a response head");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{text}");
    assert!(!head.contains("gzip"), "{text}");
    assert!(head.contains("transfer-encoding: chunked"), "{text}");
    assert_eq!(dechunk(framed.as_bytes()), body, "{text}");
}

/// The payload of a chunked body (sizes in hex, no extensions, no trailers).
fn dechunk(mut framed: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = framed
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&framed[..line_end]).unwrap(), 16)
            .expect("hex chunk size");
        framed = &framed[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&framed[..size]);
        framed = &framed[size + 2..];
    }
}

// RFC 9112 §6.3, §9.3: bytes after a complete response are not relayed, and that
// connection is not used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_bytes_after_a_response_are_dropped_with_the_connection() {
    let (addr, conns, ended) = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged").await;
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    for i in 0..3 {
        let mut c = connect(p.addr).await;
        send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
        let r = read_reply(&mut c).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        // relevo drops the connection that sent stray bytes (while the client's stays).
        wait_until(
            "relevo closes the backend connection with stray bytes",
            || ended.load(Ordering::SeqCst) == i + 1,
        )
        .await;
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        3,
        "a connection with stray bytes was reused"
    );
}

// RFC 9110 §9.3.2, §15.3.5, §15.4.5: no body reaches the client after HEAD, 204, 304.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_body_after_head_204_304() {
    for (reply, req) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
            &b"HEAD / HTTP/1.1\r\nHost: app.test\r\n\r\n"[..],
        ),
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
            b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n",
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello",
            b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n",
        ),
    ] {
        let (addr, _, _) = scripted(reply).await;
        let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
        let mut c = connect(p.addr).await;
        send(&mut c, req).await;
        let head = read_head(&mut c).await;
        // The next bytes on the connection must be the next response, not "hello".
        send(&mut c, b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
        let mut next = [0u8; 9];
        tokio::time::timeout(WAIT, c.read_exact(&mut next))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&next, b"HTTP/1.1 ", "body bytes leaked after {head}");
    }
}

// -------------------------------------------------------------- limits, timeouts --

// RFC 9112 §3 / RFC 9110 §15.5.15: a target over the limit is 414.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_uri_is_414() {
    let (p, b) = setup(|c| c.limits.max_uri_bytes = 100).await;
    let req = format!(
        "GET /{} HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "a".repeat(200)
    );
    rejects(&p, &b, req.as_bytes(), 414).await;
}

// Slowloris: a head that never completes is cut off after `client_header`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_is_cut_off() {
    let (p, _b) = setup(|c| c.timeouts.client_header = Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("not closed");
    let text = String::from_utf8_lossy(&buf);
    read.unwrap_or_else(|e| panic!("read failed ({e}) after {text:?}"));
    assert_eq!(text, "", "the half-sent head gets no answer, only a close");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    clean_request_works(&p).await;
}

// A timeout too long to add to the clock means "never" (as tokio's `sleep` takes it),
// not a failed connection: the keep-alive wait and the body's idle timer are moved
// forward at every request and every body frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enormous_timeouts_mean_never() {
    let huge = Duration::from_secs(u64::MAX / 2);
    let (p, b) = setup(|c| {
        c.timeouts.client_header = huge;
        c.timeouts.client_body = huge;
    })
    .await;
    let mut c = connect(p.addr).await;
    for _ in 0..3 {
        send(
            &mut c,
            b"POST /echo-length HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc",
        )
        .await;
        let r = read_reply(&mut c).await;
        assert_eq!((r.status, r.body.as_str()), (200, "3"));
    }
    assert_eq!(b.last().body, b"abc");
}

// RFC 9112 §9.5: idle keep-alive connections are closed after the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_is_closed() {
    let (p, _b) = setup(|c| c.timeouts.client_header = Duration::from_millis(300)).await;
    let mut c = connect(p.addr).await;
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(read_reply(&mut c).await.status, 200);
    let start = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, c.read_to_end(&mut rest))
        .await
        .expect("idle connection kept open")
        .unwrap();
    assert!(rest.is_empty());
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_connection_closes_after_the_last() {
    let (p, _b) = setup(|c| c.limits.max_requests_per_connection = Some(2)).await;
    let mut c = connect(p.addr).await;
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert!(read_reply(&mut c).await.header("connection").is_none());
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    let r = read_reply(&mut c).await;
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
}

// A slow upload (body stalls) gets 408 and a close after `client_body`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_body_is_408() {
    for big in [false, true] {
        // Small bodies are read ahead for replay; big ones stream: both are guarded.
        let (p, _b) = setup(|c| c.timeouts.client_body = Duration::from_millis(300)).await;
        let len = if big { 1_000_000 } else { 10 };
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(
            format!("POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: {len}\r\n\r\nab")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
            .await
            .expect("not answered");
        let text = String::from_utf8_lossy(&out);
        read.unwrap_or_else(|e| panic!("big={big}: read failed ({e}) after {text:?}"));
        assert_eq!(status_of(&text), 408, "big={big}: {text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "big={big}: {text}");
    }
}

// A client that stops reading its response is disconnected after `client_send`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_stops_reading_is_disconnected() {
    let (p, b) = setup(|c| c.timeouts.client_send = Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let size = 512u64 << 20;
    s.write_all(format!("GET /big?{size} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // The client reads nothing until relevo has given up on the exchange: the
    // backend is answering, then the request is no longer in flight.
    wait_until("the backend gets the request", || b.requests() == 1).await;
    let stats = &p.backend(b.addr).stats;
    wait_until("relevo cuts the stalled client off", || {
        stats.in_flight.load(Ordering::SeqCst) == 0
    })
    .await;
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => total += n as u64,
                Err(e) => break Err(e),
            }
        }
    };
    tokio::time::timeout(WAIT, read_all)
        .await
        .expect("connection still open")
        .unwrap_or_else(|e| panic!("read failed after {total} bytes: {e}"));
    assert!(
        total < size,
        "the whole body arrived: the stalled client was not cut off"
    );
    clean_request_works(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_a_quick_503() {
    let (p, _b) = setup(|c| c.limits.max_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = connect(p.addr).await;
        send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
        assert_eq!(read_reply(&mut c).await.status, 200);
        held.push(c);
    }
    let text = raw(p.addr, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(status_of(&text), 503);
    drop(held);
    // The slots come back once the held connections are gone.
    let deadline = Instant::now() + WAIT;
    loop {
        let text = raw(
            p.addr,
            b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        if status_of(&text) == 200 {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// A client that goes away cancels its backend request promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_backend_request() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let closed_after = Arc::new(Mutex::new(None));
    let record = closed_after.clone();
    let (got_tx, got_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        assert!(s.read(&mut buf).await.unwrap() > 0, "no request");
        // Err: the test is gone already.
        let _ = got_tx.send(());
        let start = Instant::now();
        // Never answer; wait for relevo to give up on the connection.
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        *record.lock().unwrap() = Some(start.elapsed());
    });
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    // The client leaves once its request is at the backend.
    tokio::time::timeout(WAIT, got_rx)
        .await
        .expect("the request did not reach the backend")
        .expect("the backend failed to read the request");
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(after) = *closed_after.lock().unwrap() {
            assert!(
                after < Duration::from_secs(2),
                "backend connection lingered {after:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backend request was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- protocol features --

/// A raw backend that accepts an upgrade with 101 (or refuses with 200 when
/// `accept` is false) and then echoes bytes.
async fn websocket_backend(accept: bool) -> (SocketAddr, Arc<Mutex<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let head = Arc::new(Mutex::new(String::new()));
    let seen = head.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                loop {
                    let mut text = String::new();
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        text.push_str(&line);
                    }
                    *seen.lock().unwrap() = text;
                    if !accept {
                        r.get_mut()
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nno ws\r\n")
                            .await
                            .unwrap();
                        continue;
                    }
                    r.get_mut()
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                        .await
                        .unwrap();
                    let mut buf = [0u8; 1024];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if r.get_mut().write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, head)
}

const WS_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

// RFC 9110 §7.8, §15.2.2: Upgrade is forwarded, 101 relayed, then a byte tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled() {
    let (addr, head) = websocket_backend(true).await;
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    let mut c = connect(p.addr).await;
    send(&mut c, WS_REQUEST).await;
    let resp_head = read_head(&mut c).await.to_ascii_lowercase();
    assert!(resp_head.starts_with("http/1.1 101"), "{resp_head}");
    assert!(
        resp_head.contains("upgrade: websocket") && resp_head.contains("connection: upgrade"),
        "{resp_head}"
    );
    let seen = head.lock().unwrap().to_ascii_lowercase();
    assert!(
        seen.contains("upgrade: websocket") && seen.contains("connection: upgrade"),
        "{seen}"
    );
    assert!(seen.contains("sec-websocket-key"), "{seen}");
    for msg in [&b"ping"[..], b"\x81\x05hello", b"pong"] {
        c.get_mut().write_all(msg).await.unwrap();
        let mut echo = vec![0u8; msg.len()];
        tokio::time::timeout(WAIT, c.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echo, msg);
    }
}

// RFC 9110 §7.8: a backend that does not switch leaves the connection in HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upgrade_stays_http() {
    let (addr, _) = websocket_backend(false).await;
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    let mut c = connect(p.addr).await;
    send(&mut c, WS_REQUEST).await;
    assert_eq!(read_reply(&mut c).await.status, 200);
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(read_reply(&mut c).await.status, 200);
}

// RFC 9113 §3.1: h2c upgrades are not forwarded (relevo speaks HTTP/1.1 upstream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_is_stripped() {
    let (p, b) = setup(|_| {}).await;
    let mut c = connect(p.addr).await;
    send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n").await;
    assert_eq!(read_reply(&mut c).await.status, 200);
    let seen = b.last();
    assert!(
        !seen.headers.contains_key("upgrade") && !seen.headers.contains_key("http2-settings"),
        "{:?}",
        seen.headers
    );
}

// RFC 9110 §10.1.1: Expect: 100-continue gets an interim 100, then the body flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue() {
    for len in [5usize, 200_000] {
        let (p, b) = setup(|_| {}).await;
        let mut c = connect(p.addr).await;
        send(&mut c, format!("POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n").as_bytes()).await;
        let mut line = String::new();
        tokio::time::timeout(WAIT, c.read_line(&mut line))
            .await
            .expect("no 100 Continue")
            .unwrap();
        assert!(line.starts_with("HTTP/1.1 100"), "{line}");
        let mut blank = String::new();
        c.read_line(&mut blank).await.unwrap();
        send(&mut c, &vec![b'x'; len]).await;
        assert_eq!(read_reply(&mut c).await.status, 200);
        assert_eq!(b.last().body.len(), len);
        assert!(!b.last().headers.contains_key("expect"));
    }
}

// RFC 9110 §6.5, §10.1.4: trailers reach a client that said `TE: trailers`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_are_forwarded() {
    let (addr, _, _) = scripted(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n").await;
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    let text = raw(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.contains("hello"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("x-checksum: abc123"),
        "{text}"
    );
}

// Streaming responses (server-sent events) are relayed chunk by chunk, not buffered:
// the backend holds its second event until the client has the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_response_is_flushed_per_chunk() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (first_read, release) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        assert!(s.read(&mut buf).await.unwrap() > 0, "no request");
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n").await.unwrap();
        // "data: first\n\n" is 13 (0xd) bytes, "data: second\n\n" 14 (0xe).
        s.write_all(b"d\r\ndata: first\n\n\r\n").await.unwrap();
        if release.await.is_ok() {
            s.write_all(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
                .await
                .unwrap();
        }
        // Keep the connection open until relevo is done with it.
        while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    async fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, buf: &mut [u8], what: &str) {
        while !String::from_utf8_lossy(got).contains(what) {
            let n = tokio::time::timeout(WAIT, s.read(buf))
                .await
                .unwrap_or_else(|_| {
                    panic!("{what:?} held back; got {:?}", String::from_utf8_lossy(got))
                })
                .unwrap();
            assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(got));
            got.extend_from_slice(&buf[..n]);
        }
    }
    read_until(&mut s, &mut got, &mut buf, "data: first").await;
    first_read.send(()).unwrap();
    read_until(&mut s, &mut got, &mut buf, "data: second\n\n\r\n0\r\n\r\n").await;
}

// CONNECT (RFC 9110 §9.3.6): off by default (403); allowed targets get a tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnels_only_to_allowed_targets() {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                // Ends with the tunnel; the test checks the echo it reads.
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let (p, _b) = setup(|_| {}).await;
    let req = format!("CONNECT {echo_addr} HTTP/1.1\r\nHost: {echo_addr}\r\n\r\n");
    let text = raw(p.addr, req.as_bytes()).await;
    assert_eq!(status_of(&text), 403, "CONNECT is off by default: {text}");

    let (p, _b) = setup(|c| {
        c.connect_allow = vec![relevo::config::ConnectRule {
            host: "127.0.0.1".into(),
            port: echo_addr.port(),
        }]
    })
    .await;
    let other = format!(
        "CONNECT 127.0.0.1:{} HTTP/1.1\r\nHost: x\r\n\r\n",
        echo_addr.port().wrapping_add(1)
    );
    assert_eq!(
        status_of(&raw(p.addr, other.as_bytes()).await),
        403,
        "other ports stay closed"
    );
    let mut c = connect(p.addr).await;
    send(&mut c, req.as_bytes()).await;
    let head = read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    c.get_mut().write_all(b"through the tunnel").await.unwrap();
    let mut echo = [0u8; 18];
    tokio::time::timeout(WAIT, c.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"through the tunnel");
}

// RFC 9110 §10.1.1: an expectation other than 100-continue gets 417.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_expectation_is_417() {
    let (p, b) = setup(|_| {}).await;
    rejects(
        &p,
        &b,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\nhi",
        417,
    )
    .await;
}

// RFC 9110 §7.6.2: OPTIONS/TRACE with Max-Forwards: 0 are answered by relevo; larger
// values are decremented on the way to the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_forwards() {
    let (p, b) = setup(|_| {}).await;
    let mut c = connect(p.addr).await;
    send(
        &mut c,
        b"OPTIONS * HTTP/1.1\r\nHost: app.test\r\nMax-Forwards: 0\r\n\r\n",
    )
    .await;
    let r = read_reply(&mut c).await;
    assert_eq!(r.status, 200);
    assert!(r.header("allow").unwrap().contains("GET"));
    send(&mut c, b"TRACE /t HTTP/1.1\r\nHost: app.test\r\nMax-Forwards: 0\r\nCookie: secret\r\nX-Mark: 1\r\n\r\n").await;
    let r = read_reply(&mut c).await;
    assert_eq!(r.header("content-type").as_deref(), Some("message/http"));
    assert!(
        r.body.starts_with("TRACE /t HTTP/1.1")
            && r.body.contains("x-mark: 1")
            && !r.body.contains("secret"),
        "{}",
        r.body
    );
    assert_eq!(b.requests(), 0);
    send(
        &mut c,
        b"OPTIONS /o HTTP/1.1\r\nHost: app.test\r\nMax-Forwards: 5\r\n\r\n",
    )
    .await;
    assert_eq!(read_reply(&mut c).await.status, 200);
    assert_eq!(b.last().headers["max-forwards"], "4");
}
