//! Differential test of relevo's HTTP/1.1 connection layer against hyper's server,
//! whose verdicts relevo kept until it owned this layer: the same request heads go to
//! both, each serving a trivial "200 ok" service on a real socket, and the first
//! status each answers (or none) must agree, except where relevo is stricter or more
//! precise on purpose; each such difference is listed with its reason (and RFC).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use relevo::downstream::connection::{self, Drain, Settings};
use relevo::downstream::listener::Listener;
use relevo::downstream::request_body::Inbound;
use relevo::stats::ServerStats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 20;

/// hyper's server with the limits relevo's layer is given.
async fn hyper_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"ok",
                    ))))
                });
                let _ = http1::Builder::new()
                    .max_buf_size(MAX_HEAD)
                    .max_headers(MAX_HEADERS)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// relevo's connection layer with the same service.
async fn relevo_layer() -> (SocketAddr, watch::Sender<Option<Drain>>) {
    let listener = Listener::bind(
        "127.0.0.1:0".parse().unwrap(),
        1000,
        Arc::new(ServerStats::default()),
        false,
    )
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop) = watch::channel(None);
    let settings = Settings {
        header_timeout: Duration::from_secs(5),
        send_timeout: Duration::from_secs(5),
        max_header_bytes: MAX_HEAD,
        max_headers: MAX_HEADERS,
    };
    tokio::spawn(async move {
        loop {
            let accepted = listener.accept().await;
            let service = |_req: Box<Request<Inbound>>, _interim| async {
                Box::new(Response::new(Full::new(Bytes::from_static(b"ok"))))
            };
            tokio::spawn(connection::serve(accepted, settings, service, stop.clone()));
        }
    });
    (addr, stop_tx)
}

/// The first status `addr` answers `head` with; 0 when it closes without an answer
/// or says nothing within a short wait (a head it deems incomplete).
async fn verdict(addr: SocketAddr, head: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !got.windows(2).any(|w| w == b"\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(400), read).await;
    let line = String::from_utf8_lossy(&got);
    line.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Heads both layers must judge alike: (what it is, the bytes).
fn same_verdict() -> Vec<(&'static str, Vec<u8>)> {
    let mut corpus: Vec<(&'static str, Vec<u8>)> = vec![
        ("origin-form GET", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("absolute-form", b"GET http://a/p?q HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("HTTP/1.0 without Host", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        ("leading CRLF (RFC 9112 §2.2)", b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("bare LF line ends", b"GET / HTTP/1.1\nHost: a\n\n".to_vec()),
        ("tab in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n".to_vec()),
        ("obs-text in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\r\n\r\n".to_vec()),
        ("empty value", b"GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n".to_vec()),
        ("POST with length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi".to_vec()),
        ("POST chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n".to_vec()),
        ("gzip, chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".to_vec()),
        ("equal lengths twice", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi".to_vec()),
        ("CL and TE (read as chunked)", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec()),
        ("extension method", b"PURGE / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        // RFC 9112 §5.1: no whitespace between name and colon.
        ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n".to_vec()),
        // RFC 9112 §5.2: obs-fold is refused in requests.
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n".to_vec()),
        ("NUL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n".to_vec()),
        ("bare CR in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n".to_vec()),
        ("empty field name", b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n".to_vec()),
        ("bad char in a name", b"GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n".to_vec()),
        ("bad char in the method", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("no version", b"GET /\r\nHost: a\r\n\r\n".to_vec()),
        ("lower-case version", b"GET / http/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("two spaces in the line", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("space in the target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("control byte in the target", b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        // RFC 9110 §8.6: Content-Length = 1*DIGIT.
        ("signed length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +2\r\n\r\nhi".to_vec()),
        ("length list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2, 2\r\n\r\nhi".to_vec()),
        ("conflicting lengths", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi".to_vec()),
        ("huge length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec()),
        // RFC 9112 §6.1, §6.3: chunked must come last; 1.0 has no transfer codings.
        ("chunked not last", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".to_vec()),
        ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec()),
        ("unknown coding only", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec()),
    ];
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("X-{i}: v\r\n"))
        .collect();
    corpus.push((
        "one field too many (431)",
        format!("GET / HTTP/1.1\r\n{many}\r\n").into_bytes(),
    ));
    let at_limit: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    corpus.push((
        "fields at the limit",
        format!("GET / HTTP/1.1\r\n{at_limit}\r\n").into_bytes(),
    ));
    let big = "v".repeat(MAX_HEAD);
    corpus.push((
        "head over the size limit (431)",
        format!("GET / HTTP/1.1\r\nHost: a\r\nX: {big}\r\n\r\n").into_bytes(),
    ));
    corpus
}

/// Heads where relevo answers differently on purpose, with what each says.
fn intended_differences() -> Vec<(&'static str, Vec<u8>, u16, u16)> {
    vec![
        // RFC 9110 §15.6.6: a major version relevo does not speak is 505, not the 400
        // of a parse error (httparse knows only 1.0 and 1.1).
        (
            "HTTP/2.0 request line",
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n".to_vec(),
            505,
            400,
        ),
        (
            "HTTP/3.0 request line",
            b"GET / HTTP/3.0\r\nHost: a\r\n\r\n".to_vec(),
            505,
            400,
        ),
        // RFC 9110 §2.5, RFC 9112 §2.3: a higher minor version is processed as 1.1.
        (
            "HTTP/1.2 request line",
            b"GET / HTTP/1.2\r\nHost: a\r\n\r\n".to_vec(),
            200,
            400,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_verdicts_as_hyper() {
    let hyper = hyper_server().await;
    let (relevo, _stop) = relevo_layer().await;
    let mut disagreements = Vec::new();
    let corpus = same_verdict();
    for (what, head) in &corpus {
        let (ours, theirs) = (verdict(relevo, head).await, verdict(hyper, head).await);
        if ours != theirs {
            disagreements.push(format!("{what}: relevo {ours}, hyper {theirs}"));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    // The corpus has both kinds: a test of verdicts that only ever saw 200s (or only
    // 400s) would show nothing.
    let mut statuses = Vec::new();
    for (_, head) in &corpus {
        statuses.push(verdict(relevo, head).await);
    }
    for status in [200, 400, 431] {
        assert!(
            statuses.contains(&status),
            "no {status} in the corpus: {statuses:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intended_differences_hold() {
    let hyper = hyper_server().await;
    let (relevo, _stop) = relevo_layer().await;
    for (what, head, ours, theirs) in intended_differences() {
        assert_eq!(verdict(relevo, &head).await, ours, "relevo on {what}");
        assert_eq!(verdict(hyper, &head).await, theirs, "hyper on {what}");
    }
}
