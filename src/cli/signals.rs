//! Unix signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads the configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::{error, info};

use crate::config::Config;
use crate::discovery::Discovery;
use crate::proxy::State;
use crate::server;
use crate::stats::ServerStats;

/// Resolves on the first SIGTERM or SIGINT.
#[cfg(unix)]
pub async fn stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping gracefully"),
        _ = int.recv() => info!("SIGINT: stopping gracefully"),
    }
}

/// Reloads `path` into `state` on every SIGHUP (through `discovery`, which resolves
/// and watches its names); a bad file keeps the running table.
#[cfg(unix)]
pub async fn reload_on_sighup(
    state: Arc<ArcSwap<State>>,
    discovery: Arc<Discovery>,
    stats: Arc<ServerStats>,
    path: Option<PathBuf>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let Some(path) = path.as_deref() else {
            info!("SIGHUP: the demo has no configuration file to reload");
            continue;
        };
        reload(&state, &discovery, &stats, path).await;
    }
}

async fn reload(
    state: &ArcSwap<State>,
    discovery: &Arc<Discovery>,
    stats: &ServerStats,
    path: &Path,
) {
    match server::reload_counted(discovery, stats, Config::load(path)).await {
        Ok(()) => info!(
            "SIGHUP: reloaded {} (generation {})",
            path.display(),
            state.load().generation
        ),
        Err(e) => error!("SIGHUP: keeping the running configuration: {e}"),
    }
}

/// Reopens the access log file on every SIGUSR1 (logrotate's convention).
#[cfg(unix)]
pub async fn reopen_on_sigusr1(state: Arc<ArcSwap<State>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        return;
    };
    while usr1.recv().await.is_some() {
        match &state.load().access_log {
            Some(log) => {
                log.reopen();
                info!(
                    "SIGUSR1: reopening the access log ({} lines dropped so far)",
                    log.dropped()
                );
            }
            None => info!("SIGUSR1: no access log to reopen"),
        }
    }
}
