//! Test harness: relevo on an ephemeral port, real backends, raw and real clients.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use relevo::config::{Config, HostEntryConfig};
use relevo::Server;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

pub mod chromium;
pub mod process;
pub mod tls;

/// Upper bound for anything a test waits on.
pub const WAIT: Duration = Duration::from_secs(10);

/// A host-table entry with default options.
pub fn host(name: &str, backends: &[SocketAddr]) -> HostEntryConfig {
    HostEntryConfig::new(name, backends)
}

/// relevo running in this process on an ephemeral port; stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    pub state: Arc<arc_swap::ArcSwap<relevo::proxy::State>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Proxy {
    /// The live counters and health of the backend at `addr`.
    pub fn backend(&self, addr: SocketAddr) -> Arc<relevo::upstream::Backend> {
        self.state.load().backends[&addr].clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            // Err only means the server task already ended: nothing left to stop.
            let _ = s.send(());
        }
    }
}

/// Starts relevo with `hosts`, after `tweak` adjusts the configuration.
pub fn start_proxy(hosts: Vec<HostEntryConfig>, tweak: impl FnOnce(&mut Config)) -> Proxy {
    let mut config = Config::with_hosts("127.0.0.1:0".parse().unwrap(), hosts);
    config.timeouts.shutdown = Duration::from_millis(100);
    tweak(&mut config);
    let server = Server::bind(config).expect("bind");
    let addr = server.local_addr().unwrap();
    let state = server.state();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(server.run(async {
        // A dropped sender (Err) is as much a stop request as a sent ().
        let _ = rx.await;
    }));
    Proxy {
        addr,
        state,
        stop: Some(tx),
    }
}

/// What a backend saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// The body bytes that arrived (all of them when `complete`).
    pub body: Vec<u8>,
    /// Whether the body arrived whole; false when the exchange broke off mid-body.
    pub complete: bool,
}

/// A real HTTP/1.1 backend (hyper) that records what it receives.
///
/// Paths change its answer: `/slow` waits 3 s, `/chunked` streams a chunked body,
/// `/hop` adds hop-by-hop fields, `/big?N` streams N bytes, anything else answers with
/// the backend's name.
#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    pub connections: Arc<AtomicUsize>,
    /// Request heads received, counted as soon as a head arrives (before any delay,
    /// hold or body): `seen` only gets a request once its body has ended.
    pub heads: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Status `/healthz` answers (200 until changed).
    pub health: Arc<AtomicU16>,
    /// Delay before every answer, in milliseconds.
    pub delay_ms: Arc<AtomicU64>,
    /// While true, requests (other than `/healthz`) wait before being answered, until
    /// the test sets it back to false: in-flight state that lasts exactly as long as
    /// the test needs it, whatever the machine's speed.
    pub hold: Arc<watch::Sender<bool>>,
}

impl Backend {
    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("backend saw no request")
    }
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    pub fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }
}

pub async fn backend(name: &str) -> Backend {
    backend_on(name, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A backend listening on `addr` (any loopback address: `127.0.0.2:PORT` shares a port
/// with `127.0.0.1:PORT`, as the addresses of one DNS name do); Err if it is taken.
pub async fn backend_on(name: &str, addr: SocketAddr) -> std::io::Result<Backend> {
    let listener = TcpListener::bind(addr).await?;
    let b = Backend {
        addr: listener.local_addr().unwrap(),
        name: name.to_string(),
        connections: Arc::new(AtomicUsize::new(0)),
        heads: Arc::new(AtomicUsize::new(0)),
        seen: Arc::new(Mutex::new(Vec::new())),
        health: Arc::new(AtomicU16::new(200)),
        delay_ms: Arc::new(AtomicU64::new(0)),
        hold: Arc::new(watch::channel(false).0),
    };
    let shared = b.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let b = shared.clone();
            let service = service_fn(move |req| answer(b.clone(), req));
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Ok(b)
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(s: impl Into<Bytes>) -> TestBody {
    http_body_util::Full::new(s.into()).boxed()
}

async fn answer(b: Backend, req: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
    let (parts, mut body) = req.into_parts();
    if parts.uri.path() == "/healthz" {
        let mut resp = Response::new(full("health"));
        *resp.status_mut() = StatusCode::from_u16(b.health.load(Ordering::SeqCst)).unwrap();
        return Ok(resp);
    }
    b.heads.fetch_add(1, Ordering::SeqCst);
    let delay = b.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut held = b.hold.subscribe();
    // Err: the sender is gone with the Backend, so nothing can hold any more.
    let _ = held.wait_for(|held| !held).await;
    // Read frame by frame so that a body that broke off keeps what did arrive, and is
    // recorded as incomplete rather than as an empty body.
    let mut bytes = Vec::new();
    let mut complete = true;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    let body = bytes;
    let body_len = body.len();
    b.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        version: parts.version,
        headers: parts.headers.clone(),
        body,
        complete,
    });
    let path = parts.uri.path();
    let mut resp = Response::new(full(b.name.clone()));
    match path {
        "/slow" => tokio::time::sleep(Duration::from_secs(3)).await,
        "/chunked" => {
            let chunks = ["alpha-", "beta-", "gamma"].map(|c| Ok(Frame::data(Bytes::from(c))));
            resp = Response::new(StreamBody::new(tokio_stream::iter(chunks)).boxed());
        }
        "/hop" => {
            let h = resp.headers_mut();
            h.insert("connection", "x-private".parse().unwrap());
            h.insert("x-private", "secret".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("x-public", "ok".parse().unwrap());
        }
        // Hop-by-hop fields no `Connection` line names: the head relevo relays as
        // it came, screened while it is parsed.
        "/hop-fixed" => {
            let h = resp.headers_mut();
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("proxy-connection", "keep-alive".parse().unwrap());
            h.insert("upgrade", "h2c".parse().unwrap());
            h.insert("te", "trailers".parse().unwrap());
            h.insert("proxy-authorization", "Basic eDp5".parse().unwrap());
            h.insert("x-public", "ok".parse().unwrap());
        }
        "/echo-length" => resp = Response::new(full(body_len.to_string())),
        "/big" => {
            let n: u64 = parts.uri.query().and_then(|q| q.parse().ok()).unwrap_or(0);
            resp = Response::new(big_body(n));
        }
        "/status" => {
            let code: u16 = parts
                .uri
                .query()
                .and_then(|q| q.parse().ok())
                .unwrap_or(200);
            *resp.status_mut() = StatusCode::from_u16(code).unwrap();
        }
        _ => {}
    }
    Ok(resp)
}

/// A body of `n` bytes made on the fly, 64 KiB at a time, with no length announced.
fn big_body(n: u64) -> TestBody {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = tokio_stream::iter((0..n.div_ceil(chunk.len() as u64)).map(move |i| {
        let left = n - i * chunk.len() as u64;
        Ok(Frame::data(
            chunk.slice(..(left.min(chunk.len() as u64) as usize)),
        ))
    }));
    StreamBody::new(stream).boxed()
}

/// A backend address nothing listens on.
///
/// The port stays bound (never listening) for the rest of the test process, so no
/// other test can take it over and bring the "dead" backend to life: connects to it
/// are refused.
pub async fn dead_addr() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    std::mem::forget(socket);
    addr
}

/// Writes `bytes`, then reads until the proxy closes the connection, which it must do
/// cleanly: a read error (a reset) fails the test, whatever arrived before it.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("proxy did not close the connection");
    let text = String::from_utf8_lossy(&out).into_owned();
    if let Err(e) = read {
        panic!(
            "reading the proxy's answer to {:?} failed ({e}) after {text:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    text
}

/// Polls `cond` every few milliseconds until it holds; fails the test if it still does
/// not hold at `deadline`. For conditions that the code under test makes true
/// asynchronously (a close noticed, an ejection expired, a request received), instead
/// of a sleep that guesses how long that takes.
pub async fn wait_until_by(deadline: Instant, what: &str, mut cond: impl FnMut() -> bool) {
    while !cond() {
        assert!(Instant::now() < deadline, "not reached in time: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `wait_until_by` with the usual bound, `WAIT` from now.
pub async fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_by(Instant::now() + WAIT, what, cond).await
}

/// One response read off a stream: status, lower-cased head, body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }
}

/// Reads exactly one response framed by Content-Length or chunked encoding.
pub async fn read_reply(r: &mut BufReader<TcpStream>) -> Reply {
    tokio::time::timeout(WAIT, read_reply_inner(r))
        .await
        .expect("no reply in time")
}

/// Reads a response head: the status line and the fields, up to the empty line.
pub async fn read_head(r: &mut BufReader<TcpStream>) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).await.unwrap() > 0,
            "connection closed mid-head: {head}"
        );
        if line == "\r\n" {
            return head;
        }
        head.push_str(&line);
    }
}

async fn read_reply_inner(r: &mut BufReader<TcpStream>) -> Reply {
    let head = read_head(r).await;
    let status = head[9..12].parse().unwrap();
    let reply = Reply {
        status,
        head: head.clone(),
        body: String::new(),
    };
    let mut body = Vec::new();
    if let Some(len) = reply.header("content-length") {
        body.resize(len.parse().unwrap(), 0);
        r.read_exact(&mut body).await.unwrap();
    } else if reply.header("transfer-encoding").is_some() {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await.unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Reply {
        body: String::from_utf8_lossy(&body).into_owned(),
        ..reply
    }
}

/// A connection to the proxy for several exchanges.
pub async fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(addr).await.unwrap())
}

/// One GET on a fresh connection; `extra` holds more header lines, each ending in CRLF.
pub async fn get(addr: SocketAddr, host: &str, path: &str, extra: &str) -> Reply {
    let mut c = connect(addr).await;
    send(
        &mut c,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").as_bytes(),
    )
    .await;
    read_reply(&mut c).await
}

pub async fn send(r: &mut BufReader<TcpStream>, bytes: &[u8]) {
    r.get_mut().write_all(bytes).await.unwrap();
}

/// Parses the first response in `text` (as read by `raw`).
pub fn status_of(text: &str) -> u16 {
    text.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {text:?}"))
}
