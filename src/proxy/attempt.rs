//! One attempt: a request sent to one backend on a pooled connection, and what came
//! back. Its outcome feeds the backend's health and latency estimate.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::debug;

use super::response_body::ProxyBody;
use super::state::State;
use crate::http::request_body::UpstreamBody;
use crate::http::{rewrite, ProxyError, Side};
use crate::upstream::{Backend, PooledConn};

/// What a backend answered.
pub enum Exchanged {
    /// A response to relay, its body streaming from the backend.
    Response(Response<ProxyBody>),
    /// 101 Switching Protocols: the response for the client, and the backend's side of
    /// the tunnel.
    Switching(Response<ProxyBody>, hyper::upgrade::OnUpgrade),
}

/// Why an attempt failed, with the request when it provably was not sent.
pub struct Failure {
    /// What went wrong.
    pub error: ProxyError,
    /// The request, handed back by hyper when no byte of it left.
    pub unsent: Option<Request<UpstreamBody>>,
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Failure {
            error,
            unsent: None,
        }
    }
}

/// Sends `req` to `backend` and returns the response with its body streaming from
/// that connection. The request stays in the backend's in-flight count until the
/// body ends (or the attempt fails).
pub async fn exchange(
    backend: &Arc<Backend>,
    req: Request<UpstreamBody>,
    state: &State,
    deadline: Instant,
) -> Result<Exchanged, Failure> {
    let passive = &state.config.passive;
    let in_flight = backend.start_request();
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
                // The connection becomes the tunnel: it never goes back to the pool,
                // and the request is no longer in flight.
                let upstream = hyper::upgrade::on(&mut resp);
                drop((conn, in_flight));
                let resp = rewrite::response(resp).map(|_| ProxyBody::empty());
                return Ok(Exchanged::Switching(resp, upstream));
            }
            Ok(Exchanged::Response(
                rewrite::response(resp).map(|body| ProxyBody::upstream(body, conn, in_flight)),
            ))
        }
        Err(failure) => {
            if failure.error.side() == Side::Backend {
                backend.stats.failures.fetch_add(1, Ordering::Relaxed);
                backend.health.on_failure(backend.addr, passive);
            }
            Err(failure)
        }
    }
}

/// Sends on a pooled connection; a pooled connection the backend closed meanwhile
/// hands the request back unsent, and a fresh connection to the same backend is safe.
async fn send(
    backend: &Backend,
    mut req: Request<UpstreamBody>,
    connect: Duration,
    response: Duration,
) -> Result<(Response<Incoming>, PooledConn), Failure> {
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
                    let error =
                        ProxyError::upstream(backend.addr, e.into_error(), unsent.is_some());
                    return Err(Failure { error, unsent });
                }
            },
        }
    }
}
