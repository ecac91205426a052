//! The admin listener: metrics, the status page and its JSON, liveness and readiness,
//! on an address of its own (never the proxy's), behind a bearer token when configured.

pub mod history;
pub mod metrics;
pub mod routes;
pub mod status;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::config::Admin;
use crate::discovery::Discovery;
use crate::proxy::State;
use crate::stats::ServerStats;
use history::History;

/// A bound admin listener, ready to serve.
#[derive(Debug)]
pub struct AdminServer {
    /// Its socket.
    listener: TcpListener,
    /// What the endpoints read.
    view: Arc<View>,
}

/// Everything the admin endpoints read.
#[derive(Debug)]
pub struct View {
    /// The live configuration generation (host table, backends, their counters).
    pub state: Arc<ArcSwap<State>>,
    /// Process-wide counters.
    pub stats: Arc<ServerStats>,
    /// The configuration's names: their sets and resolution counts.
    pub discovery: Arc<Discovery>,
    /// Recent samples for the status page's charts and windowed rates.
    pub history: History,
    /// The bearer token the requests must carry, if any.
    pub token: Option<String>,
}

impl AdminServer {
    /// Binds the admin address (inside a tokio runtime).
    /// With `inherited` (handed over by the relevo being upgraded), serves that socket
    /// instead of binding `config.listen`. `sources` are what the endpoints read: the
    /// live state, the process-wide counters and the names' discovery.
    pub fn bind(
        config: &Admin,
        inherited: Option<std::net::TcpListener>,
        sources: (Arc<ArcSwap<State>>, Arc<ServerStats>, Arc<Discovery>),
    ) -> io::Result<AdminServer> {
        let (state, stats, discovery) = sources;
        let std = match inherited {
            Some(socket) => socket,
            None => std::net::TcpListener::bind(config.listen)?,
        };
        std.set_nonblocking(true)?;
        Ok(AdminServer {
            listener: TcpListener::from_std(std)?,
            view: Arc::new(View {
                state,
                stats,
                discovery,
                history: History::default(),
                token: config.token.clone(),
            }),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The listening socket's descriptor, to hand it over on an upgrade.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Serves admin requests, and samples the history, until the process ends.
    pub async fn serve(self) {
        tokio::spawn(history::sample(self.view.clone()));
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    warn!("admin accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let view = self.view.clone();
            let service = service_fn(move |req| routes::answer(view.clone(), req));
            tokio::spawn(async move {
                let served = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    debug!(client = %peer, "admin connection ended: {e}");
                }
            });
        }
    }
}
