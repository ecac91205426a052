//! Active health checks: a task per backend of an entry sends `GET health.path` every
//! `interval`; `fall` failures in a row take it down, `rise` successes bring it back.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{info, warn};

use super::backend::Backend;
use crate::config::HealthCheck;

/// Starts one checker task per backend; they stop when `stop`'s sender is dropped.
pub fn spawn_checks(
    host: &str,
    check: &HealthCheck,
    backends: &[Arc<Backend>],
    stop: &watch::Receiver<()>,
) {
    for backend in backends {
        let (host, check, backend, mut stop) = (
            host.to_string(),
            check.clone(),
            backend.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let (mut good, mut bad) = (0u32, 0u32);
            loop {
                let ok = probe(backend.addr, &host, &check).await;
                let health = &backend.health;
                if ok {
                    (good, bad) = (good.saturating_add(1), 0);
                    if !health.active_up() && good >= check.rise {
                        health.set_active(true);
                        info!(backend = %backend.addr, host, "health check: backend up after {good} good checks");
                    }
                } else {
                    (good, bad) = (0, bad.saturating_add(1));
                    if health.active_up() && bad >= check.fall {
                        health.set_active(false);
                        warn!(backend = %backend.addr, host, "health check: backend down after {bad} failed checks");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(check.interval) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }
}

/// One check: a fresh connection, `GET path`, a status in the expected range.
pub(super) async fn probe(addr: SocketAddr, host: &str, check: &HealthCheck) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = Request::get(check.path.as_str())
            .header(header::HOST, host)
            .header(header::USER_AGENT, "relevo-health-check")
            .header(header::CONNECTION, "close")
            .body(Empty::new())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        Some(resp.status().as_u16())
    };
    match tokio::time::timeout(check.timeout, attempt).await {
        Ok(Some(status)) => (check.expect.0..=check.expect.1).contains(&status),
        _ => false,
    }
}
