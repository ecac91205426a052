//! The service a client connection's requests go to, one per connection whatever it
//! runs over: the live state loaded per request, the per-connection request limit,
//! the per-protocol count, and what the connection's protocol asks of a request
//! before `proxy::handle` (421 over TLS, 308 to https, HTTP/2's connection fields).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::{service_fn, Service};
use tokio::sync::watch;

use crate::downstream::connection::Drain;
use crate::downstream::h2::Streams;
use crate::downstream::interim::Interim;
use crate::downstream::request_body::Inbound;
use crate::downstream::response::Relayed;
use crate::downstream::tls::Negotiated;
use crate::http::{host, page, rewrite};
use crate::proxy::{self, ProxyBody, Reply, State};
use crate::stats::{Protocol, ServerStats};

/// One client connection, as its requests' service needs it.
pub(super) struct Conn {
    /// The live state, loaded anew for every request (a reload applies at once).
    pub(super) state: Arc<ArcSwap<State>>,
    /// Where requests are counted by protocol.
    pub(super) stats: Arc<ServerStats>,
    /// The client's address.
    pub(super) peer: SocketAddr,
    /// Seen changed once a stop is sent: every answer after it closes its connection.
    pub(super) stop: watch::Receiver<Option<Drain>>,
    /// The TLS handshake's outcome; `None` on the plain listener.
    pub(super) tls: Option<Negotiated>,
    /// What HTTP/2 watches of its streams (cancellations, activity); `None` for HTTP/1.
    pub(super) streams: Option<Arc<Streams>>,
    /// The TLS listener's port as bound (the configured one may be 0), for redirects.
    pub(super) https_port: Option<u16>,
}

/// Answers `conn`'s requests, whichever layer read them.
pub(super) struct Answerer {
    /// The connection.
    conn: Conn,
    /// Requests served on it so far, for `max_requests_per_connection`.
    served: AtomicU64,
    /// HTTP/1.1 or HTTP/2, in clear or over TLS, for the count and the log.
    protocol: Protocol,
    /// The client's address as `X-Forwarded-For` appends it, made once.
    forwarded_for: HeaderValue,
}

impl Answerer {
    /// The answerer of `conn`'s requests.
    pub(super) fn new(conn: Conn) -> Answerer {
        let protocol = conn.tls.as_ref().map_or(Protocol::CLEAR, |t| t.protocol);
        Answerer {
            forwarded_for: rewrite::forwarded_for(conn.peer.ip()),
            conn,
            served: AtomicU64::new(0),
            protocol,
        }
    }

    /// The answer to `req`; interim responses go to `interim` (HTTP/1.1 clients).
    pub(super) fn answer(
        &self,
        mut req: Box<Request<Inbound>>,
        interim: Option<Interim>,
    ) -> impl Future<Output = Reply> + Send + 'static {
        let conn = &self.conn;
        let protocol = self.protocol;
        let state = conn.state.load_full();
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        // HTTP/2 ends a connection with GOAWAY (on a stop), never per request.
        let last = !protocol.h2
            && (state
                .config
                .limits
                .max_requests_per_connection
                .is_some_and(|max| n >= max)
                || conn.stop.has_changed().unwrap_or(true));
        conn.stats.requests_by_protocol[protocol.index()].fetch_add(1, Ordering::Relaxed);
        // Boxed: rare, and otherwise part of every request's future.
        let early = match &conn.tls {
            Some(tls) => misdirected(&req, tls),
            None => conn
                .https_port
                .and_then(|port| to_https(&req, &state, port)),
        }
        .map(Box::new);
        let peer = conn.peer;
        let forwarded_for = self.forwarded_for.clone();
        let in_flight = conn.streams.as_ref().map(|s| {
            // The session holds the request active until its response body ends.
            req.extensions_mut().insert(s.clone());
            s.begin()
        });
        async move {
            if let Some(answer) = early {
                return answer;
            }
            let mut resp =
                proxy::handle(state, peer, forwarded_for, req, last, interim, protocol).await;
            if let Some(guard) = in_flight {
                guard.finished();
            }
            if protocol.h2 {
                // hyper writes HTTP/2 heads from the field map alone.
                if let Some(passed) = resp.body_mut().take_passed() {
                    passed.into_headers(resp.headers_mut());
                }
                // RFC 9113 §8.2.2: connection-specific fields are malformed in HTTP/2.
                rewrite::strip_hop_by_hop(resp.headers_mut());
            }
            resp
        }
    }
}

/// The HTTP/2 service for `conn`'s requests (hyper reads them).
pub(super) fn h2(
    conn: Conn,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future: Send + 'static,
> + Send
       + 'static {
    let answerer = Answerer::new(conn);
    service_fn(move |req: Request<Incoming>| {
        // Boxed: awaiting a future captured by value would hold it twice.
        let answer = Box::pin(answerer.answer(Box::new(req.map(Inbound::from)), None));
        async move { Ok(*answer.await) }
    })
}

/// RFC 9110 §15.5.20: 421 for a request whose host the connection's certificate does
/// not cover (a client reusing a connection for another name). Requests without a
/// usable host are left to `proxy::handle`, which answers them as usual.
fn misdirected<B>(req: &Request<B>, tls: &Negotiated) -> Option<Response<ProxyBody>> {
    let target = host::target(req).ok()?;
    if tls.covers(&target.host) {
        return None;
    }
    let message = format!(
        "this connection's certificate does not cover `{}`: open a new connection for it",
        target.host
    );
    Some(page::page(StatusCode::MISDIRECTED_REQUEST, &message).map(ProxyBody::page))
}

/// `tls.redirect_http`: 308 to https (RFC 9110 §15.4.9 keeps the method and body) for
/// a plain-HTTP request to a host a certificate covers.
fn to_https<B>(req: &Request<B>, state: &State, port: u16) -> Option<Response<ProxyBody>> {
    let tls = state.config.tls.as_ref().filter(|t| t.redirect_http)?;
    let target = host::target(req).ok()?;
    if !tls.covers(&target.host) {
        return None;
    }
    let authority = match port {
        443 => target.authority_host().to_string(),
        port => format!("{}:{port}", target.authority_host()),
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = HeaderValue::from_str(&format!("https://{authority}{path}")).ok()?;
    let mut resp = page::page(
        StatusCode::PERMANENT_REDIRECT,
        "this host is served over https",
    )
    .map(ProxyBody::page);
    resp.headers_mut().insert(header::LOCATION, location);
    Some(resp)
}
