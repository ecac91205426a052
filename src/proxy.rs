//! The path of one request, top to bottom: route → pick a backend → rewrite the head →
//! pooled upstream connection (retried on another backend when that is safe) → stream
//! the response back → access log.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, LengthLimitError};
use hyper::body::{Body, Incoming};
use tracing::{debug, warn};

use crate::balancer::NoPick;
use crate::body::{AccessLog, BodyTimeout, ClientBody, ProxyBody, UpstreamBody};
use crate::error::ProxyError;
use crate::state::State;
use crate::upstream::Backend;
use crate::{forward, router, tunnel};

/// hyper's service entry point: never fails, every error becomes a response.
/// `last` marks the last request the connection may carry (`max_requests_per_connection`).
pub async fn handle(
    state: Arc<State>,
    client: SocketAddr,
    req: Request<Incoming>,
    last: bool,
) -> Result<Response<ProxyBody>, Infallible> {
    let mut log = state.config.access_log.then(|| {
        Box::new(AccessLog {
            client,
            method: req.method().clone(),
            target: req.uri().to_string(),
            host: None,
            backend: None,
            status: http::StatusCode::OK,
            bytes: 0,
            start: Instant::now(),
        })
    });
    // A body we did not read would be parsed as the next request if the connection
    // stayed open, so an early answer closes it.
    let unread_body = !req.body().is_end_stream();
    let resp = match proxy(&state, client, req, log.as_deref_mut()).await {
        Ok(resp) => resp,
        Err(err) => {
            if err.is_backend_failure() {
                warn!(%client, "{err}");
            } else {
                debug!(%client, "refused: {err}");
            }
            err.to_response(unread_body)
        }
    };
    let mut resp = resp;
    if last {
        resp.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    if let Some(log) = log.as_mut() {
        log.status = resp.status();
    }
    Ok(resp.map(|body| body.with_log(log)))
}

async fn proxy(
    state: &State,
    client: SocketAddr,
    mut req: Request<Incoming>,
    mut log: Option<&mut AccessLog>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let limits = &state.config.limits;
    let uri = req.uri();
    let uri_len = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Err(ProxyError::UriTooLong(limits.max_uri_bytes));
    }
    forward::check_request_codings(req.headers())?;
    // RFC 9110 §10.1.1: 100-continue is the only expectation there is.
    if let Some(expect) = req.headers().get(header::EXPECT) {
        if !expect.as_bytes().eq_ignore_ascii_case(b"100-continue") {
            return Err(ProxyError::ExpectationFailed);
        }
    }
    if req.method() == Method::CONNECT {
        return tunnel::connect(state, req).await;
    }
    // Route: which site is this for?
    let target = router::target(&req)?;
    let site = state.router.route(&target);
    if let Some(log) = log.as_deref_mut() {
        log.host = Some(
            site.as_ref()
                .map_or_else(|_| target.authority.to_string(), |s| s.key.clone()),
        );
    }
    let site = site?;
    if let Some(answer) = forward::max_forwards(&mut req) {
        return Ok(answer);
    }
    let limit = site.max_body_bytes;
    let declared = declared_length(&req);
    if let (Some(limit), Some(len)) = (limit, declared) {
        if len > limit {
            return Err(ProxyError::BodyTooLarge(limit));
        }
    }
    let affinity = site
        .balancer
        .affinity(client.ip(), req.headers(), req.uri().path());
    let idempotent = req.method().is_idempotent();
    // RFC 9110 §7.8: an upgrade the client asks for goes to the backend; the client's
    // side of the tunnel is taken before the request is rewritten.
    let upgrade = forward::upgrade_protocol(&req);
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));

    // Rewrite the head once; keep the body where a retry can find it again.
    let req = forward::request(req, &target, client, upgrade);
    let retries = &state.config.retries;
    // Only an empty body or a small one with a declared length is read ahead; a chunked
    // body of unknown size streams, so memory stays bounded whatever its size.
    let replayable = site.tries > 1
        && (req.body().is_end_stream()
            || declared.is_some_and(|len| len <= retries.replay_body_bytes));
    let mut resend = Resend::new(req, replayable, limit, state.timeouts().client_body).await?;

    // Pick a backend and exchange; on a failure that is safe to retry, another backend.
    let deadline = Instant::now() + retries.budget;
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut last: Option<ProxyError> = None;
    for attempt in 1..=site.tries {
        let member = match site.balancer.pick(affinity, &tried) {
            Ok(m) => m,
            Err(NoPick::AllDown(e)) => return Err(last.unwrap_or(e)),
            Err(NoPick::AllTried) => break,
        };
        let backend = &member.backend;
        if let Some(log) = log.as_deref_mut() {
            log.backend = Some(backend.addr);
        }
        let Some(request) = resend.take() else { break };
        let failure = match exchange(backend, request, state, deadline).await {
            Ok(Exchanged::Response(resp)) => return Ok(resp),
            Ok(Exchanged::Switching(resp, upstream)) => {
                let Some(client_side) = client_upgrade else {
                    // A 101 nobody asked for: the backend is not speaking HTTP/1.1 to us.
                    return Err(ProxyError::UnexpectedUpgrade(backend.addr));
                };
                tunnel::spawn_upgraded(
                    client_side,
                    upstream,
                    state.timeouts().tunnel_idle,
                    backend.addr,
                );
                return Ok(resp);
            }
            Err(failure) => failure,
        };
        let error = body_error(failure.error, limit);
        if let Some(unsent) = failure.unsent {
            resend.give_back(unsent);
        }
        let safe = error.retry_safe() || (idempotent && error.retry_safe_if_idempotent());
        if !safe || attempt == site.tries || Instant::now() >= deadline || !resend.available() {
            return Err(error);
        }
        warn!(backend = %backend.addr, attempt, "retrying on another backend after: {error}");
        backend.stats.retried.fetch_add(1, Ordering::Relaxed);
        tried.push(backend.addr);
        last = Some(error);
    }
    Err(last.unwrap_or(ProxyError::AllDown(1)))
}

/// A request that can be sent again: a buffered body is re-sent from memory, a
/// streamed one only if it came back unsent.
enum Resend {
    Buffered {
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    },
    Streaming(Option<Request<UpstreamBody>>),
}

impl Resend {
    /// Reads a small body in full when `replayable`; otherwise leaves it streaming.
    async fn new(
        req: Request<Incoming>,
        replayable: bool,
        limit: Option<u64>,
        idle: Duration,
    ) -> Result<Resend, ProxyError> {
        let (parts, body) = req.into_parts();
        let cap = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        if !replayable {
            let req = Request::from_parts(
                parts,
                UpstreamBody::Streaming(ClientBody::new(body, cap, idle)),
            );
            return Ok(Resend::Streaming(Some(req)));
        }
        let body = if body.is_end_stream() {
            Bytes::new()
        } else {
            read_small_body(ClientBody::new(body, cap, idle), limit).await?
        };
        Ok(Resend::Buffered {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        })
    }

    fn take(&mut self) -> Option<Request<UpstreamBody>> {
        match self {
            Resend::Streaming(req) => req.take(),
            Resend::Buffered {
                method,
                uri,
                headers,
                body,
            } => {
                let mut req = Request::new(UpstreamBody::Buffered(Some(body.clone())));
                *req.method_mut() = method.clone();
                *req.uri_mut() = uri.clone();
                *req.headers_mut() = headers.clone();
                Some(req)
            }
        }
    }

    fn give_back(&mut self, req: Request<UpstreamBody>) {
        if let Resend::Streaming(slot) = self {
            *slot = Some(req);
        }
    }

    fn available(&self) -> bool {
        match self {
            Resend::Streaming(req) => req.is_some(),
            Resend::Buffered { .. } => true,
        }
    }
}

/// What a backend answered.
enum Exchanged {
    /// A response to relay, its body streaming from the backend.
    Response(Response<ProxyBody>),
    /// 101 Switching Protocols: the response for the client, and the backend's side of
    /// the tunnel.
    Switching(Response<ProxyBody>, hyper::upgrade::OnUpgrade),
}

/// Reads a small body into one buffer. Copying matters: each frame of a slow upload is
/// a slice of its own read buffer, and keeping the slices would keep those buffers
/// (measured: 100 KiB per slow-body client instead of the body's size).
async fn read_small_body(mut body: ClientBody, limit: Option<u64>) -> Result<Bytes, ProxyError> {
    // Grown as data arrives: a declared length is only a promise.
    let mut buf = BytesMut::with_capacity(body.size_hint().lower().min(4096) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            client_body_error(e.as_ref(), limit)
                .unwrap_or_else(|| ProxyError::ClientBody(e.to_string()))
        })?;
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}

/// Why an exchange failed, with the request when it provably was not sent.
struct Failure {
    error: ProxyError,
    unsent: Option<Request<UpstreamBody>>,
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Failure {
            error,
            unsent: None,
        }
    }
}

/// Sends `req` to `backend` on a pooled connection and returns the response with its
/// body streaming from that connection. Feeds the backend's health and latency.
async fn exchange(
    backend: &Arc<Backend>,
    req: Request<UpstreamBody>,
    state: &State,
    deadline: Instant,
) -> Result<Exchanged, Failure> {
    let stats = &backend.stats;
    let passive = &state.config.passive;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let left = deadline
        .saturating_duration_since(started)
        .max(Duration::from_millis(1));
    let timeouts = state.timeouts();
    let result = send(
        backend,
        req,
        timeouts.connect.min(left),
        timeouts.response.min(left),
    )
    .await;
    match result {
        Ok((mut resp, conn)) => {
            backend.latency.observe(started.elapsed());
            if passive.statuses.contains(&resp.status().as_u16()) {
                backend.health.on_failure(backend.addr, passive);
            } else {
                backend.health.on_success(backend.addr);
            }
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                // The connection becomes the tunnel: it never goes back to the pool.
                stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                let upstream = hyper::upgrade::on(&mut resp);
                drop(conn);
                let resp = forward::response(resp).map(|_| ProxyBody::empty());
                return Ok(Exchanged::Switching(resp, upstream));
            }
            Ok(Exchanged::Response(
                forward::response(resp).map(|body| ProxyBody::upstream(body, conn)),
            ))
        }
        Err(failure) => {
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            if counts_against_backend(&failure.error) {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                backend.health.on_failure(backend.addr, passive);
            }
            Err(failure)
        }
    }
}

async fn send(
    backend: &Arc<Backend>,
    mut req: Request<UpstreamBody>,
    connect: Duration,
    response: Duration,
) -> Result<(Response<Incoming>, crate::pool::PooledConn), Failure> {
    let mut conn = match backend.checkout(connect).await {
        Ok(c) => c,
        Err(error) => {
            return Err(Failure {
                error,
                unsent: Some(req),
            })
        }
    };
    loop {
        let sent = tokio::time::timeout(response, conn.sender().try_send_request(req)).await;
        match sent {
            Err(_) => return Err(ProxyError::ResponseTimeout(backend.addr).into()),
            Ok(Ok(resp)) => return Ok((resp, conn)),
            Ok(Err(mut e)) => match e.take_message() {
                // A pooled connection the backend closed meanwhile hands the request
                // back unsent: a fresh connection to the same backend is safe.
                Some(unsent) if conn.reused => {
                    debug!(backend = %backend.addr, "pooled connection closed, reconnecting: {}", e.error());
                    req = unsent;
                    conn = match backend.connect(connect).await {
                        Ok(c) => c,
                        Err(error) => {
                            return Err(Failure {
                                error,
                                unsent: Some(req),
                            })
                        }
                    };
                }
                unsent => {
                    let error = ProxyError::Upstream {
                        addr: backend.addr,
                        unsent: unsent.is_some(),
                        source: e.into_error(),
                    };
                    return Err(Failure { error, unsent });
                }
            },
        }
    }
}

/// Failures that are the backend's doing; a client body that broke off is not.
fn counts_against_backend(err: &ProxyError) -> bool {
    match err {
        ProxyError::Upstream { source, .. } => !source.is_user(),
        e => e.is_backend_failure(),
    }
}

/// `Content-Length` of a request, when it has one. hyper has already rejected
/// invalid or conflicting values (RFC 9112 §6.3).
fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A streamed request body that failed shows up as an upstream error; it is the
/// client's doing: 413 past the limit, 408 when it stalled, 400 otherwise.
fn body_error(err: ProxyError, limit: Option<u64>) -> ProxyError {
    let ProxyError::Upstream { source, .. } = &err else {
        return err;
    };
    if !source.is_user() {
        return err;
    }
    client_body_error(source, limit).unwrap_or_else(|| ProxyError::ClientBody(source.to_string()))
}

/// The client-side cause in an error chain: a body over the limit or a stalled body.
fn client_body_error(
    err: &(dyn std::error::Error + 'static),
    limit: Option<u64>,
) -> Option<ProxyError> {
    let mut cause = Some(err);
    while let Some(c) = cause {
        if c.is::<LengthLimitError>() {
            return Some(ProxyError::BodyTooLarge(limit.unwrap_or(0)));
        }
        if let Some(BodyTimeout(idle)) = c.downcast_ref::<BodyTimeout>() {
            return Some(ProxyError::BodyTimeout(*idle));
        }
        cause = c.source();
    }
    None
}
