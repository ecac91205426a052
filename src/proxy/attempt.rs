//! One attempt: a request sent to one backend on a pooled connection, and what came
//! back. Its outcome feeds the backend's health and latency estimate.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;

use super::response_body::{ProxyBody, Reply};
use super::state::{Entry, State};
use crate::downstream::interim::Interim;
use crate::downstream::request_body::UpstreamBody;
use crate::http::rewrite::Appended;
use crate::http::{rewrite, ProxyError};
use crate::upstream::backend::Queue;
use crate::upstream::exchange::{self as wire, Answer, SendError};
use crate::upstream::{recovery, Backend, BackendBody, PooledConn};

/// What a backend answered, and how long it took (to the response head).
pub enum Exchanged {
    /// A response to relay, its body streaming from the backend, and how long the
    /// connect took when the attempt opened a connection.
    Response(Reply, Duration, Option<Duration>),
    /// 101 Switching Protocols: the response for the client, and the backend's side of
    /// the tunnel (holding its connection slot until the tunnel closes).
    Switching(Reply, PooledConn, Duration),
}

/// Why an attempt failed, and whether the request provably was not sent.
pub struct Failure {
    /// What went wrong.
    pub error: ProxyError,
    /// No byte of the request left: even a streamed body may go again.
    pub unsent: bool,
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Failure {
            error,
            unsent: false,
        }
    }
}

/// How one attempt is made.
#[derive(Debug, Clone, Copy)]
pub struct How<'a> {
    /// Skip the pool: the previous attempt met a stale pooled connection.
    pub fresh: bool,
    /// Give up at this instant (the retry budget).
    pub deadline: Instant,
    /// When the attempt began (one clock reading for the loop and the attempt).
    pub started: Instant,
    /// Where the backend's interim responses go (HTTP/1.1 clients only).
    pub interim: Option<&'a Interim>,
    /// The fields written after the request's own (`X-Forwarded-For`, `Via`).
    pub appended: &'a Appended,
}

/// Sends `req` to `backend` and returns the response with its body streaming from
/// that connection. The request stays in the backend's in-flight count until the
/// body ends (or the attempt fails).
pub async fn exchange(
    entry: &Entry,
    backend: &Arc<Backend>,
    req: &mut Request<UpstreamBody>,
    state: &State,
    how: How<'_>,
) -> Result<Exchanged, Failure> {
    let passive = &state.config.passive;
    let in_flight = backend.start_request();
    let started = how.started;
    let left = how
        .deadline
        .saturating_duration_since(started)
        .max(Duration::from_millis(1));
    let timeouts = state.timeouts();
    let limits = Limits {
        connect: timeouts.connect.min(left),
        response: timeouts.response.min(left),
        queue: Queue {
            max: state.config.limits.backend_queue,
            timeout: timeouts.queue.min(left),
        },
    };
    match send(backend, req, limits, how).await {
        Ok((answer, conn, connect_time)) => {
            let took = started.elapsed();
            backend.latency.observe(took);
            let status = answer.head.parts.status;
            if passive.statuses.contains(&status.as_u16()) {
                failed(entry, backend, state);
            } else {
                backend.health.on_success(backend.addr);
            }
            let Answer { head, reusable } = answer;
            if status == StatusCode::SWITCHING_PROTOCOLS {
                // The connection becomes the tunnel: it never goes back to the pool,
                // and the request is no longer in flight.
                drop(in_flight);
                let resp = rewrite::response(Response::from_parts(head.parts, ProxyBody::empty()));
                return Ok(Exchanged::Switching(Box::new(resp), conn, took));
            }
            let body = BackendBody::new(conn, head.body, reusable, head.len);
            let passed = head.passed;
            let resp = if passed.is_none() {
                Box::new(rewrite::response(Response::from_parts(
                    head.parts,
                    ProxyBody::upstream(body, in_flight, passed),
                )))
            } else {
                // Fields kept as they came were screened for the client as they were
                // parsed; the client hop speaks relevo's version either way.
                let mut parts = head.parts;
                parts.version = http::Version::HTTP_11;
                Box::new(Response::from_parts(
                    parts,
                    ProxyBody::upstream(body, in_flight, passed),
                ))
            };
            Ok(Exchanged::Response(resp, took, connect_time))
        }
        Err(failure) => {
            if failure.error.blames_backend() {
                backend.stats.failures.fetch_add(1, Ordering::Relaxed);
                failed(entry, backend, state);
            }
            Err(failure)
        }
    }
}

/// A failure that counts against `backend`: if it ejects it, a background probe
/// brings it back as soon as it answers.
fn failed(entry: &Entry, backend: &Arc<Backend>, state: &State) {
    let passive = &state.config.passive;
    if backend.health.on_failure(backend.addr, passive) {
        recovery::watch(
            backend,
            passive.probe_interval,
            entry
                .health
                .as_ref()
                .map(|check| (entry.key.clone(), check.clone())),
        );
    }
}

/// Time limits of one attempt.
struct Limits {
    /// TCP connect.
    connect: Duration,
    /// From the request sent to the response head.
    response: Duration,
    /// Waiting for a connection slot.
    queue: Queue,
}

/// Sends on a pooled connection (a new one when `fresh`); a pooled connection the
/// backend closed meanwhile hands the request back unsent, and a fresh connection to
/// the same backend is safe.
async fn send(
    backend: &Backend,
    req: &mut Request<UpstreamBody>,
    limits: Limits,
    how: How<'_>,
) -> Result<(Answer, PooledConn, Option<Duration>), Failure> {
    let slot = match backend.slot(limits.queue).await {
        Ok(slot) => slot,
        Err(error) => return Err(unsent(error)),
    };
    // Boxed: a request waiting for a slot above holds only this far. The connect's
    // and the exchange's state (about 1.2 KB) is taken once it has one: at 10,000
    // active clients, 8,000 of them wait here.
    Box::pin(send_with(backend, slot, req, limits, how)).await
}

/// A failure before any byte of the request left.
fn unsent(error: ProxyError) -> Failure {
    Failure {
        error,
        unsent: true,
    }
}

/// `send` once the request holds a connection slot.
async fn send_with(
    backend: &Backend,
    slot: OwnedSemaphorePermit,
    req: &mut Request<UpstreamBody>,
    limits: Limits,
    how: How<'_>,
) -> Result<(Answer, PooledConn, Option<Duration>), Failure> {
    let conn = if how.fresh {
        backend.connect(slot, limits.connect).await
    } else {
        backend.checkout(slot, limits.connect).await
    };
    let mut conn = match conn {
        Ok(c) => c,
        Err(error) => return Err(unsent(error)),
    };
    let addr = backend.addr;
    loop {
        let sent = tokio::time::timeout(
            limits.response,
            wire::exchange(conn.conn(), &mut *req, how.appended, how.interim),
        )
        .await;
        let error = match sent {
            Err(_) => ProxyError::ResponseTimeout(addr),
            Ok(Ok(answer)) => {
                let connect_time = conn.connect_time;
                return Ok((answer, conn, connect_time));
            }
            Ok(Err(SendError::Unsent(source))) if conn.reused() => {
                debug!(backend = %addr, "pooled connection closed, reconnecting: {source}");
                conn = match backend.connect(conn.into_slot(), limits.connect).await {
                    Ok(c) => c,
                    Err(error) => return Err(unsent(error)),
                };
                continue;
            }
            Ok(Err(SendError::Unsent(source))) => {
                let error = ProxyError::Upstream {
                    addr,
                    source,
                    unsent: true,
                };
                return Err(unsent(error));
            }
            Ok(Err(SendError::BeforeResponse(source))) if conn.reused() => {
                debug!(backend = %addr, "pooled connection closed as the request went out: {source}");
                ProxyError::StaleConnection { addr, source }
            }
            Ok(Err(SendError::BeforeResponse(source) | SendError::Backend(source))) => {
                ProxyError::Upstream {
                    addr,
                    source,
                    unsent: false,
                }
            }
            Ok(Err(SendError::Client(e))) => ProxyError::from(&e),
        };
        return Err(error.into());
    }
}
