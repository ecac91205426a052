//! Bringing an ejected backend back: while it is ejected, it is probed in the
//! background every `passive.probe_interval` (with the entry's active check when it
//! has one, else a TCP connect), and readmitted at the first good answer, so a
//! restarted backend takes traffic again within about that interval rather than after
//! its ejection (which doubles while it keeps failing) runs out.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::TcpStream;

use super::active_check;
use super::backend::Backend;
use crate::config::HealthCheck;

/// Starts probing `backend` (once: a second call while a probe runs does nothing).
/// `check` is the entry's active check and the host it is sent for.
pub fn watch(backend: &Arc<Backend>, interval: Duration, check: Option<(String, HealthCheck)>) {
    if !backend.health.claim_watch() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        backend.health.release_watch();
        return;
    };
    // The task holds the backend weakly: a backend dropped by a reload stops it.
    let weak: Weak<Backend> = Arc::downgrade(backend);
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(backend) = weak.upgrade() else {
                return;
            };
            if !backend.health.ejected() {
                // A real request found it good first.
                backend.health.release_watch();
                return;
            }
            let good = match &check {
                Some((host, check)) => active_check::probe(backend.addr, host, check).await,
                None => tcp_probe(&backend, interval).await,
            };
            if good {
                backend.health.readmit(backend.addr);
                backend.health.release_watch();
                return;
            }
        }
    });
}

/// A TCP connect within `timeout` (at least 100 ms, at most 1 s).
async fn tcp_probe(backend: &Backend, timeout: Duration) -> bool {
    let timeout = timeout.clamp(Duration::from_millis(100), Duration::from_secs(1));
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect(backend.addr)).await,
        Ok(Ok(_))
    )
}
