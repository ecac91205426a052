//! Ordinary failures, with relevo's default configuration (nothing but a host table):
//! a backend killed and restarted under load, a slow backend, a flaky one, keep-alive
//! races, every response framing, and backends that cap their connections. Each test
//! names the promise or the RFC section it protects.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;

/// Waits for `cond`, failing the test after `WAIT`.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A backend that can be killed (listener and every connection gone at once) and
/// started again on the same address, and that counts its open connections.
struct Killable {
    addr: SocketAddr,
    /// Requests answered since the last start.
    answered: Arc<AtomicUsize>,
    /// Connections open now, and the most open at once.
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    /// The accept loop and its connections.
    tasks: Mutex<JoinSet<()>>,
    /// Delay before each answer.
    delay: Duration,
}

impl Killable {
    async fn start(delay: Duration) -> Arc<Killable> {
        let k = Arc::new(Killable {
            addr: "127.0.0.1:0".parse().unwrap(),
            answered: Arc::default(),
            open: Arc::default(),
            peak: Arc::default(),
            tasks: Mutex::new(JoinSet::new()),
            delay,
        });
        let listener = bind(k.addr);
        let addr = listener.local_addr().unwrap();
        let k = Arc::new(Killable {
            addr,
            answered: k.answered.clone(),
            open: k.open.clone(),
            peak: k.peak.clone(),
            tasks: Mutex::new(JoinSet::new()),
            delay,
        });
        k.serve(listener);
        k
    }

    fn serve(self: &Arc<Self>, listener: TcpListener) {
        let (answered, open, peak, delay) = (
            self.answered.clone(),
            self.open.clone(),
            self.peak.clone(),
            self.delay,
        );
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let held = conns.clone();
        self.tasks.lock().unwrap().spawn(async move {
            // Connections live in a set owned by this task: aborting it ends them all.
            let _held = held;
            while let Ok((stream, _)) = listener.accept().await {
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let answered = answered.clone();
                let open = open.clone();
                let service = service_fn(move |_req: Request<Incoming>| {
                    let answered = answered.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        answered.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                conns.lock().unwrap().spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }

    /// Everything closes at once, as when the process is killed.
    fn kill(&self) {
        self.tasks.lock().unwrap().abort_all();
    }

    fn restart(self: &Arc<Self>) {
        self.answered.store(0, Ordering::SeqCst);
        self.serve(bind(self.addr));
    }
}

/// A listener on `addr` that may take a port back while old connections sit in
/// TIME_WAIT (the restarted backend of a test).
fn bind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(1024).unwrap()
}

/// `workers` clients sending GETs, each pausing `pace` between requests, until
/// `stop`; returns (requests, failures, slowest).
async fn load(
    proxy: SocketAddr,
    workers: usize,
    pace: Duration,
    stop: Arc<AtomicBool>,
    slow_after: Duration,
) -> (usize, Vec<String>, usize) {
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let stop = stop.clone();
        set.spawn(async move {
            let client = reqwest::Client::new();
            let (mut sent, mut failed, mut slow) = (0, Vec::new(), 0);
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                let r = client
                    .get(format!("http://{proxy}/"))
                    .header("host", "app.test")
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        if r.bytes().await.is_err() {
                            failed.push("body cut".to_string());
                        }
                    }
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(format!("{e}")),
                }
                if t.elapsed() > slow_after {
                    slow += 1;
                }
                sent += 1;
                tokio::time::sleep(pace).await;
            }
            (sent, failed, slow)
        });
    }
    let (mut sent, mut failed, mut slow) = (0, Vec::new(), 0);
    while let Some(r) = set.join_next().await {
        let (s, f, w) = r.unwrap();
        sent += s;
        failed.extend(f);
        slow += w;
    }
    (sent, failed, slow)
}

// A backend killed under steady load and started again: idempotent requests never see
// an error (they go to the others meanwhile), and the restarted backend takes traffic
// again within 2 s (a background probe readmits it; it does not wait out an ejection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_backend_costs_no_request() {
    let b = [
        Killable::start(Duration::ZERO).await,
        Killable::start(Duration::ZERO).await,
        Killable::start(Duration::ZERO).await,
    ];
    let addrs: Vec<SocketAddr> = b.iter().map(|k| k.addr).collect();
    let p = start_proxy(vec![host("app.test", &addrs)], |_| {});
    let stop = Arc::new(AtomicBool::new(false));
    // 8 clients pausing 25 ms: a few hundred requests per second.
    let load = tokio::spawn(load(
        p.addr,
        8,
        Duration::from_millis(25),
        stop.clone(),
        WAIT,
    ));
    wait_for("traffic on every backend", || {
        b.iter().all(|k| k.answered.load(Ordering::SeqCst) > 20)
    })
    .await;
    b[0].kill();
    // Long enough for relevo to notice (failed connects eject it).
    wait_for("the dead backend ejected", || {
        p.backend(b[0].addr).health.ejected()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    b[0].restart();
    let restarted = Instant::now();
    wait_for("the restarted backend answering", || {
        b[0].answered.load(Ordering::SeqCst) > 0
    })
    .await;
    let back_after = restarted.elapsed();
    // Its share comes back: a fair part of the next requests.
    let others: usize = b[1..]
        .iter()
        .map(|k| k.answered.load(Ordering::SeqCst))
        .sum();
    wait_for("the restarted backend's share", || {
        b[0].answered.load(Ordering::SeqCst) >= 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (sent, failed, _) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );
    assert!(
        back_after < Duration::from_secs(2),
        "the restarted backend waited {back_after:?} for traffic"
    );
    // Enough traffic that the kill and the restart met requests in flight.
    assert!(sent > 100 && others > 0, "{sent} requests");
}

// The default balancer steers away from a slow backend: with one of three taking
// 3 s per response, fewer than 1 % of requests wait behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_holds_few_requests() {
    let slow = Killable::start(Duration::from_secs(3)).await;
    let fast = [
        Killable::start(Duration::ZERO).await,
        Killable::start(Duration::ZERO).await,
    ];
    let p = start_proxy(
        vec![host("app.test", &[slow.addr, fast[0].addr, fast[1].addr])],
        |_| {},
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load(
        p.addr,
        10,
        Duration::from_millis(5),
        stop.clone(),
        Duration::from_secs(1),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let (sent, failed, waited) = load.await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(sent >= 500, "only {sent} requests");
    assert!(
        (waited as f64) < sent as f64 * 0.01,
        "{waited} of {sent} requests waited behind the slow backend"
    );
}

/// A raw backend: answers each request head on a kept-alive connection with what
/// `reply` says for its request line; `None` closes the connection without a word.
async fn scripted(
    reply: fn(&str, usize) -> Option<&'static [u8]>,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, s) = (conns.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let seen = s.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(stream);
                let mut on_this_conn = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let request_line = line.trim_end().to_string();
                    let mut length = 0;
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    if tokio::io::AsyncReadExt::read_exact(&mut r, &mut body)
                        .await
                        .is_err()
                    {
                        return;
                    }
                    seen.lock().unwrap().push(request_line.clone());
                    on_this_conn += 1;
                    match reply(&request_line, on_this_conn) {
                        Some(bytes) => {
                            if r.get_mut().write_all(bytes).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    }
                }
            });
        }
    });
    (addr, conns, seen)
}

// A host with one backend that sends malformed responses: those get 502, and once
// the backend answers well again its responses reach the client — passive ejection
// never turns valid requests into 503s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_only_backend_still_serves_its_good_answers() {
    let (addr, _, _) = scripted(|line, _| {
        Some(if line.starts_with("GET /bad") {
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        })
    })
    .await;
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    for _ in 0..5 {
        assert_eq!(get(p.addr, "app.test", "/bad", "").await.status, 502);
    }
    assert!(
        p.backend(addr).health.ejected(),
        "three bad answers eject it"
    );
    for i in 0..5 {
        let r = get(p.addr, "app.test", "/good", "").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "request {i}");
    }
}

// RFC 9112 §9.3.1: a backend closing a kept-alive connection as relevo sends on it.
// An idempotent request goes again on a fresh connection to the same (only) backend;
// a POST is never sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pooled_connection_is_retried_only_when_idempotent() {
    // The first request of a connection is answered; the second is read, then the
    // connection closes without an answer: the idle-close race, made certain.
    let (addr, conns, seen) = scripted(|_, nth| {
        (nth == 1).then_some(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..])
    })
    .await;
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    assert_eq!(get(p.addr, "app.test", "/warm", "").await.status, 200);
    let r = get(p.addr, "app.test", "/again", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{}", r.head);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [
            "GET /warm HTTP/1.1",
            "GET /again HTTP/1.1",
            "GET /again HTTP/1.1"
        ],
        "the GET went again on a fresh connection"
    );
    assert_eq!(conns.load(Ordering::SeqCst), 2);
    assert!(!p.backend(addr).health.ejected());
    // Now the pooled connection is the fresh one, which will close on its next request.
    let mut c = connect(p.addr).await;
    send(
        &mut c,
        b"POST /once HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    assert_eq!(read_reply(&mut c).await.status, 502);
    let posts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "a POST was sent twice");
}

// Upstream connections go back to the pool after every complete response, whatever
// its framing (RFC 9112 §6.3): Content-Length, chunked (with trailers, with chunk
// extensions, the last chunk only), empty, HEAD, 204 and 304. One connection serves
// the whole sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_framing_keeps_the_connection() {
    fn reply(line: &str, _: usize) -> Option<&'static [u8]> {
        let path = line.split(' ').nth(1).unwrap_or("/");
        Some(match path {
            "/length" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "/trailers" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 5\r\n\r\n",
            "/extensions" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0;last\r\n\r\n",
            "/last-chunk" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "/empty" => b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            "/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            "/204" => b"HTTP/1.1 204 No Content\r\n\r\n",
            "/304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        })
    }
    let (addr, conns, seen) = scripted(reply).await;
    let p = start_proxy(vec![host("app.test", &[addr])], |_| {});
    let cases = [
        ("GET", "/length", 200, "hello"),
        ("GET", "/chunked", 200, "hello"),
        ("GET", "/trailers", 200, "hello"),
        ("GET", "/extensions", 200, "hello"),
        ("GET", "/last-chunk", 200, ""),
        ("GET", "/empty", 200, ""),
        ("HEAD", "/head", 200, ""),
        ("GET", "/204", 204, ""),
        ("GET", "/304", 304, ""),
    ];
    for round in 0..2 {
        for (method, path, status, body) in cases {
            // A fresh client connection each time: only the upstream one is shared.
            let mut c = connect(p.addr).await;
            send(
                &mut c,
                format!("{method} {path} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes(),
            )
            .await;
            let r = if method == "HEAD" || status != 200 {
                Reply {
                    status: common::status_of(&read_head(&mut c).await),
                    head: String::new(),
                    body: String::new(),
                }
            } else {
                read_reply(&mut c).await
            };
            assert_eq!(
                (r.status, r.body.as_str()),
                (status, body),
                "{method} {path}"
            );
            // The response was read whole, so its connection is back in the pool.
            assert_eq!(
                conns.load(Ordering::SeqCst),
                1,
                "round {round}: a new upstream connection for {method} {path}"
            );
        }
    }
    assert_eq!(seen.lock().unwrap().len(), 2 * cases.len());
}

// A backend's connection limit (HAProxy's `maxconn`, nginx's `max_conns`): requests
// beyond it wait in the backend's queue, and the backend never sees more connections
// than its limit while the queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_conns_queues_requests_and_caps_connections() {
    let b = Killable::start(Duration::from_millis(50)).await;
    let mut h = host("app.test", &[b.addr]);
    h.backends[0].max_conns = Some(4);
    let p = start_proxy(vec![h], |_| {});
    let mut set = JoinSet::new();
    for _ in 0..40 {
        let addr = p.addr;
        set.spawn(async move { get(addr, "app.test", "/", "").await.status });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert!(
        b.peak.load(Ordering::SeqCst) <= 4,
        "the backend saw {} connections at once",
        b.peak.load(Ordering::SeqCst)
    );
    assert!(p.backend(b.addr).stats.queued.load(Ordering::SeqCst) > 0);
    assert_eq!(b.answered.load(Ordering::SeqCst), 40);
}

// 5,000 concurrent keep-alive clients against two backends: no error page for these
// idempotent requests, no ejection, and neither backend sees more connections than
// relevo's default per-backend limit (1024), however many clients there are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_clients_against_two_backends() {
    // Clients, relevo's two sides and the backends all live in this process.
    let _ = relevo::cli::fd_limit::raise();
    let b = [
        Killable::start(Duration::from_millis(2)).await,
        Killable::start(Duration::from_millis(2)).await,
    ];
    let p = start_proxy(vec![host("app.test", &[b[0].addr, b[1].addr])], |_| {});
    let mut set = JoinSet::new();
    let started = Instant::now();
    for _ in 0..5000 {
        let addr = p.addr;
        set.spawn(async move {
            let mut c = connect(addr).await;
            let mut statuses = Vec::new();
            for _ in 0..3 {
                send(&mut c, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
                statuses.push(read_reply(&mut c).await.status);
            }
            statuses
        });
    }
    let mut bad = 0;
    while let Some(statuses) = set.join_next().await {
        bad += statuses.unwrap().iter().filter(|&&s| s != 200).count();
    }
    assert_eq!(bad, 0, "{bad} of 15000 requests got an error page");
    for k in &b {
        assert_eq!(p.backend(k.addr).health.ejections.load(Ordering::SeqCst), 0);
        let peak = k.peak.load(Ordering::SeqCst);
        assert!(peak <= 1024, "a backend saw {peak} connections at once");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

// RFC 9112 §3.2: the asterisk only with OPTIONS (§3.2.4), authority-form only with
// CONNECT (§3.2.3), origin-form begins with `/` (§3.2.1); RFC 3986 §3.2.3: a port is
// digits. Anything else is 400 and reaches no backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_targets_fit_their_methods() {
    let b = backend("b").await;
    let p = start_proxy(vec![host("app.test", &[b.addr])], |_| {});
    for req in [
        &b"GET * HTTP/1.1\r\nHost: app.test\r\n\r\n"[..],
        b"POST * HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n",
        b"GET app.test:80 HTTP/1.1\r\nHost: app.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: app.test:8o\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: app.test:99999\r\n\r\n",
        b"GET http://app.test:x/ HTTP/1.1\r\nHost: app.test\r\n\r\n",
    ] {
        let text = raw(p.addr, req).await;
        assert_eq!(
            status_of(&text),
            400,
            "{:?} -> {text}",
            String::from_utf8_lossy(req)
        );
    }
    assert_eq!(b.requests(), 0, "a malformed target reached the backend");
    // OPTIONS * is a request to the server itself and goes through.
    let text = raw(
        p.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert_eq!(
        (b.last().method.as_str(), b.last().uri.as_str()),
        ("OPTIONS", "*")
    );
}
