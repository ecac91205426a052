//! The path of one request, top to bottom: route → pick a backend → rewrite the head →
//! pooled upstream connection → stream the response back → access log.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::{header, Request, Response};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use tracing::{debug, warn};

use crate::body::{AccessLog, ProxyBody, UpstreamBody};
use crate::config::Timeouts;
use crate::error::ProxyError;
use crate::state::State;
use crate::upstream::Backend;
use crate::{forward, router};

/// hyper's service entry point: never fails, every error becomes a response.
pub async fn handle(
    state: Arc<State>,
    client: SocketAddr,
    req: Request<Incoming>,
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
    if let Some(log) = log.as_mut() {
        log.status = resp.status();
    }
    Ok(resp.map(|body| body.with_log(log)))
}

async fn proxy(
    state: &State,
    client: SocketAddr,
    req: Request<Incoming>,
    mut log: Option<&mut AccessLog>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let target = router::target(&req)?;
    let site = state.router.route(&target);
    if let Some(log) = log.as_deref_mut() {
        log.host = Some(
            site.as_ref()
                .map_or_else(|_| target.authority.to_string(), |s| s.key.clone()),
        );
    }
    let site = site?;
    let limit = site.max_body_bytes;
    if let (Some(limit), Some(len)) = (limit, declared_length(&req)) {
        if len > limit {
            return Err(ProxyError::BodyTooLarge(limit));
        }
    }
    let backend = site.balancer.pick(&site.backends);
    if let Some(log) = log {
        log.backend = Some(backend.addr);
    }
    let cap = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let req = forward::request(req.map(|b| Limited::new(b, cap)), &target, client);
    exchange(backend, req, state.timeouts())
        .await
        .map_err(|e| body_limit(e, limit))
}

/// Sends `req` to `backend` on a pooled connection and returns the response with its
/// body streaming from that connection.
async fn exchange(
    backend: &Arc<Backend>,
    mut req: Request<UpstreamBody>,
    timeouts: &Timeouts,
) -> Result<Response<ProxyBody>, ProxyError> {
    let stats = &backend.stats;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let result = async {
        let mut conn = backend.checkout(timeouts.connect).await?;
        loop {
            let sent = tokio::time::timeout(timeouts.response, conn.sender().try_send_request(req)).await;
            match sent {
                Err(_) => return Err(ProxyError::ResponseTimeout(backend.addr)),
                Ok(Ok(resp)) => return Ok((resp, conn)),
                Ok(Err(mut e)) => match e.take_message() {
                    // A pooled connection the backend closed meanwhile hands the request
                    // back unsent: a fresh connection is safe, whatever the method.
                    Some(unsent) if conn.reused => {
                        debug!(backend = %backend.addr, "pooled connection closed, reconnecting: {}", e.error());
                        req = unsent;
                        conn = backend.connect(timeouts.connect).await?;
                    }
                    message => {
                        return Err(ProxyError::Upstream {
                            addr: backend.addr,
                            unsent: message.is_some(),
                            source: e.into_error(),
                        })
                    }
                },
            }
        }
    }
    .await;
    match result {
        Ok((resp, conn)) => Ok(forward::response(resp).map(|body| ProxyBody::upstream(body, conn))),
        Err(e) => {
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            stats.failures.fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
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

/// A streamed body that outgrew the limit shows up as an upstream error; it is the
/// client's fault (413), not the backend's.
fn body_limit(err: ProxyError, limit: Option<u64>) -> ProxyError {
    if let (ProxyError::Upstream { source, .. }, Some(limit)) = (&err, limit) {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
        while let Some(c) = cause {
            if c.is::<LengthLimitError>() {
                return ProxyError::BodyTooLarge(limit);
            }
            cause = c.source();
        }
    }
    err
}
