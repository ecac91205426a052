//! The attempt loop: pick a backend, exchange, and on a failure that is safe to retry
//! pick again, within the entry's tries and the retry time budget. A request body is
//! kept where a retry can find it again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use hyper::body::Body;
use tracing::{debug, warn};

use super::attempt::{self, Exchanged, How};
use super::response_body::Reply;
use super::session::Session;
use super::state::{Entry, State};
use super::tunnel;
use crate::downstream::interim::Interim;
use crate::downstream::request_body::{ClientBody, Inbound, UpstreamBody};
use crate::http::rewrite::Appended;
use crate::http::{ProxyError, Retry};
use crate::routing::NoPick;
use crate::upstream::Backend;

/// What the attempt loop needs to know about the request besides its head and body.
pub struct Plan<'a> {
    /// The entry serving it.
    pub entry: &'a Entry,
    /// The hash of its affinity key, for `balance = "hash"`.
    pub affinity: Option<u64>,
    /// Whether the method may be sent twice (RFC 9110 §9.2.2).
    pub idempotent: bool,
    /// Whether the client asked for an upgrade (a 101 is expected only then).
    pub wants_upgrade: bool,
    /// Where interim responses go, when the client can take them.
    pub interim: Option<Interim>,
}

/// Tries `resend` on the entry's backends until one answers or retrying is no longer
/// safe or allowed.
pub async fn run(
    state: &State,
    plan: Plan<'_>,
    resend: &mut Resend,
    session: &mut Session,
) -> Result<Reply, ProxyError> {
    let entry = plan.entry;
    // One clock reading per attempt: it starts the attempt, and after a failure it is
    // the one checked against the budget. The first attempt starts with the session
    // (what lies between, routing and the head's rewrite, takes microseconds).
    let mut now = session.started;
    let deadline = now + state.config.retries.budget;
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut last: Option<ProxyError> = None;
    // After a stale pooled connection, the same backend once more on a fresh one.
    let mut again: Option<Arc<Backend>> = None;
    let mut stale_retried = false;
    let mut attempt = 0;
    while attempt < entry.tries || again.is_some() {
        let fresh = again.is_some();
        let backend = match again.take() {
            Some(backend) => backend,
            None => match entry.balancer.pick_index(plan.affinity, &tried) {
                Ok(i) => {
                    session.member = Some(i);
                    entry.balancer.members()[i].backend.clone()
                }
                Err(NoPick::AllDown(e)) => return Err(last.unwrap_or(e)),
                Err(NoPick::AllTried) => break,
            },
        };
        if !fresh {
            attempt += 1;
        }
        session.backend = Some(backend.addr);
        session.attempts += 1;
        let Some((request, appended)) = resend.next() else {
            break;
        };
        let how = How {
            fresh,
            deadline,
            started: now,
            interim: plan.interim.as_ref(),
            appended,
        };
        let failure = match attempt::exchange(entry, &backend, request, state, how).await {
            Ok(Exchanged::Response(resp, took, connect_time)) => {
                session.upstream_time = Some(took);
                session.connect_time = connect_time;
                return Ok(resp);
            }
            Ok(Exchanged::Switching(resp, upstream, took)) => {
                if !plan.wants_upgrade {
                    // A 101 nobody asked for: the backend is not speaking HTTP/1.1 to us.
                    return Err(ProxyError::UnexpectedUpgrade(backend.addr));
                }
                session.upstream_time = Some(took);
                let idle = state.timeouts().tunnel_idle;
                return Ok(tunnel::upgraded(resp, upstream, idle, backend.addr));
            }
            Err(failure) => failure,
        };
        let error = failure.error;
        resend.failed(failure.unsent);
        let safe = match error.retry() {
            Retry::Always => true,
            Retry::IfIdempotent => plan.idempotent,
            Retry::Never => false,
        };
        now = Instant::now();
        if !safe || now >= deadline || !resend.available() {
            return Err(error);
        }
        // RFC 9112 §9.3.1: a kept-alive connection the backend closed as we sent is a
        // race, not a verdict on the backend: the same backend again, on a new
        // connection, once, without using up one of the entry's tries.
        if matches!(error, ProxyError::StaleConnection { .. }) && !stale_retried {
            stale_retried = true;
            debug!(backend = %backend.addr, "sending again on a fresh connection after: {error}");
            again = Some(backend);
            last = Some(error);
            continue;
        }
        if attempt >= entry.tries {
            return Err(error);
        }
        warn!(backend = %backend.addr, attempt, "retrying on another backend after: {error}");
        backend.stats.retried.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = session.member.and_then(|m| entry.traffic.retried.get(m)) {
            r.fetch_add(1, Ordering::Relaxed);
        }
        tried.push(backend.addr);
        last = Some(error);
    }
    Err(last.unwrap_or(ProxyError::AllDown(1)))
}

/// A request that can be sent again: a buffered body is re-sent from memory, a
/// streamed one only while no byte of it has left. Each attempt borrows the request
/// (the wire exchange only reads its head), so a retry costs no copy of its fields.
pub struct Resend {
    /// The rewritten request; its body is `Buffered` when it was read in full.
    req: Box<Request<UpstreamBody>>,
    /// The fields the rewrite adds after the request's own.
    appended: Appended,
    /// A streamed body went (at least in part) to a backend: it cannot go again.
    spent: bool,
}

impl Resend {
    /// Reads a small body in full when `replayable`; otherwise leaves it streaming.
    pub async fn new(
        req: Box<Request<Inbound>>,
        appended: Appended,
        replayable: bool,
        limit: Option<u64>,
        idle: Duration,
        counted: &Arc<AtomicU64>,
    ) -> Result<Resend, ProxyError> {
        let (parts, body) = (*req).into_parts();
        let body = if !replayable {
            UpstreamBody::Streaming(ClientBody::new(body, limit, idle, counted.clone()))
        } else if body.is_end_stream() {
            UpstreamBody::Buffered(Some(Bytes::new()))
        } else {
            let all = ClientBody::new(body, limit, idle, counted.clone())
                .read_all()
                .await
                .map_err(|e| ProxyError::from(&e))?;
            UpstreamBody::Buffered(Some(all))
        };
        Ok(Resend {
            req: Box::new(Request::from_parts(parts, body)),
            appended,
            spent: false,
        })
    }

    /// The request for the next attempt, if it may go (again), and the fields to add.
    fn next(&mut self) -> Option<(&mut Request<UpstreamBody>, &Appended)> {
        (!self.spent).then_some((&mut *self.req, &self.appended))
    }

    /// An attempt failed: a streamed body that may have left cannot go again.
    fn failed(&mut self, unsent: bool) {
        if !unsent && matches!(self.req.body(), UpstreamBody::Streaming(_)) {
            self.spent = true;
        }
    }

    /// Whether there is a request to send again.
    fn available(&self) -> bool {
        !self.spent
    }
}
