//! `relevo run` and `relevo demo`: logging, the runtime, and serving until a stop signal.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use tracing::{error, info, warn};

use super::upgrade::{self, Upgrade};
use super::{fd_limit, signals};
use crate::config::Config;
use crate::downstream::connection::Drain;
use crate::server::Server;

/// Exit status for a configuration that does not validate (as `nginx -t` style tools do).
pub const EXIT_CONFIG: u8 = 2;
/// Exit status for a failure at run time (cannot bind, ...).
pub const EXIT_RUNTIME: u8 = 1;

/// Logs to stderr at `default_level` unless `RUST_LOG` says otherwise.
pub fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

/// Runs `fut` on a runtime with `threads` workers (default: one per CPU).
pub fn run_blocking(threads: Option<usize>, fut: impl Future<Output = ExitCode>) -> ExitCode {
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // One thread: a current-thread runtime has no cross-thread wake-ups to pay for.
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    match runtime {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("relevo: cannot start the runtime: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Serves `config` until SIGTERM/SIGINT or a handover to a new binary (`upgrade`);
/// SIGHUP reloads `path` (when there is one).
pub async fn serve(config: Config, path: Option<PathBuf>, upgrade: upgrade::Options) -> ExitCode {
    match fd_limit::raise() {
        Ok(limit) => match fd_limit::warning(&config, limit) {
            Some(w) => warn!("{w}"),
            None => info!("open files limit {limit}"),
        },
        Err(e) => warn!("cannot read the open files limit: {e}"),
    }
    // Before the takeover and the listener, and so before "listening on" is logged: a SIGHUP sent as
    // soon as relevo answers must find its handler.
    let signals = match signals::install() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let mut upgrade = match Upgrade::begin(upgrade, &config).await {
        Ok(u) => u,
        Err(e) => {
            error!("upgrade: cannot take over {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let server = match Server::bind_with(config.clone(), upgrade.inherited()) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot listen on {}: {e}", config.listen);
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let addr = server.local_addr().unwrap_or(config.listen);
    info!("listening on {addr}");
    if let Some(tls) = server.tls_addr() {
        info!("TLS (HTTP/2, HTTP/1.1) on {tls}");
    }
    for h in &config.hosts {
        let list: Vec<String> = h
            .backends
            .iter()
            .map(|b| b.to_string())
            .chain(h.names.iter().map(|n| n.name.to_string()))
            .collect();
        info!(
            "host {} -> [{}] ({})",
            h.key(),
            list.join(", "),
            h.balance.name()
        );
    }
    if let Some(admin) = server.admin_addr() {
        info!("admin listener on {admin}: status page http://{admin}/status, metrics http://{admin}/metrics");
    }
    let handed_over = match upgrade.serve(&server) {
        Ok(h) => h,
        Err(e) => {
            error!("upgrade: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let signals::Signals {
        term,
        int,
        hup,
        usr1,
    } = signals;
    tokio::spawn(signals::reopen_on_sigusr1(usr1, server.state()));
    tokio::spawn(signals::reload_on_sighup(
        hup,
        server.state(),
        server.discovery(),
        server.stats(),
        path,
    ));
    server
        .run_until(async {
            tokio::select! {
                _ = signals::stop(term, int) => Drain::CloseIdle,
                // The successor serves new connections; idle ones get one more answer.
                _ = handed_over => Drain::AnswerNext,
            }
        })
        .await;
    ExitCode::SUCCESS
}
