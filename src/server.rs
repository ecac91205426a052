//! The listener: accepts clients, caps their number, serves each connection with hyper,
//! swaps the state on reload and drains connections on a graceful stop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::guard;
use crate::proxy;
use crate::state::State;

/// Pending connections the kernel queues before `accept`.
const BACKLOG: u32 = 4096;

/// Sent to a client over `limits.max_connections`: quick, framed, and closing.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 33\r\nretry-after: 1\r\nconnection: close\r\n\r\ntoo many connections, retry later\n";

/// A bound proxy, ready to serve.
pub struct Server {
    listener: TcpListener,
    /// The current state; requests load it, reloads replace it.
    state: Arc<ArcSwap<State>>,
}

impl Server {
    /// Binds the configured listen address (inside a tokio runtime: it starts the
    /// health checkers).
    pub fn bind(config: Config) -> io::Result<Server> {
        let addr = config.listen;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // A restarted proxy must get its port back while old connections sit in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(BACKLOG)?;
        let state = State::build(config, None);
        state.start_health_checks();
        Ok(Server {
            listener,
            state: Arc::new(ArcSwap::from_pointee(state)),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle on the live state, for reloads.
    pub fn state(&self) -> Arc<ArcSwap<State>> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and waits (up to
    /// `timeouts.shutdown`) for open connections to finish their requests.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        let max = self.state.load().config.limits.max_connections;
        let slots = Arc::new(Semaphore::new(max));
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors or similar: back off instead of spinning.
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tokio::spawn(refuse(stream));
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = self.state.clone();
            let config = state.load().config.clone();
            let service = service_fn(move |req| proxy::handle(state.load_full(), peer, req));
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = permit;
                let Some(io) = guard::screen(stream, config.timeouts.client_header).await else {
                    return;
                };
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(config.timeouts.client_header)
                    .max_buf_size(config.limits.max_header_bytes)
                    .max_headers(config.limits.max_headers)
                    .serve_connection(TokioIo::new(io), service);
                if let Err(e) = watcher.watch(conn).await {
                    debug!(client = %peer, "connection ended: {e}");
                }
            });
        }
        drop(self.listener);
        let timeout = self.state.load().config.timeouts.shutdown;
        info!("stopping: waiting up to {timeout:?} for open connections");
        tokio::select! {
            _ = graceful.shutdown() => info!("all connections closed"),
            _ = tokio::time::sleep(timeout) => warn!("shutdown timeout: closing remaining connections"),
        }
    }
}

/// Replaces the live state with one built from `config`, keeping warm backends.
pub fn reload(state: &ArcSwap<State>, config: Config) {
    let current = state.load();
    if config.listen != current.config.listen {
        warn!(
            "listen address change ({} -> {}) needs a restart; keeping {}",
            current.config.listen, config.listen, current.config.listen
        );
    }
    let next = State::build(config, Some(&current));
    next.start_health_checks();
    state.store(Arc::new(next));
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
}
