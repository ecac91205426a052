//! Unix signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads the configuration,
//! SIGUSR1 reopens the access log. All are installed before relevo says it listens:
//! a signal that comes before its handler takes the default action, and for SIGHUP
//! and SIGUSR1 that ends the process (a reload sent right after the start did).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
#[cfg(unix)]
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{error, info};

use crate::config::Config;
use crate::discovery::Discovery;
use crate::proxy::State;
use crate::server;
use crate::stats::ServerStats;

/// The signal streams, installed (their handlers in place) but not yet awaited.
#[cfg(unix)]
pub struct Signals {
    /// SIGTERM: graceful stop.
    pub term: Signal,
    /// SIGINT: graceful stop.
    pub int: Signal,
    /// SIGHUP: reload.
    pub hup: Signal,
    /// SIGUSR1: reopen the access log.
    pub usr1: Signal,
}

/// Installs the handlers of every signal relevo answers (in a runtime).
#[cfg(unix)]
pub fn install() -> std::io::Result<Signals> {
    Ok(Signals {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
        hup: signal(SignalKind::hangup())?,
        usr1: signal(SignalKind::user_defined1())?,
    })
}

/// Resolves on the first SIGTERM or SIGINT.
#[cfg(unix)]
pub async fn stop(mut term: Signal, mut int: Signal) {
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping gracefully"),
        _ = int.recv() => info!("SIGINT: stopping gracefully"),
    }
}

/// Reloads `path` into `state` on every SIGHUP (through `discovery`, which resolves
/// and watches its names); a bad file keeps the running table.
#[cfg(unix)]
pub async fn reload_on_sighup(
    mut hup: Signal,
    state: Arc<ArcSwap<State>>,
    discovery: Arc<Discovery>,
    stats: Arc<ServerStats>,
    path: Option<PathBuf>,
) {
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
pub async fn reopen_on_sigusr1(mut usr1: Signal, state: Arc<ArcSwap<State>>) {
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
