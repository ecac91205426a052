//! The listener: accepts clients, caps their number, serves each connection with hyper,
//! swaps the state on reload and drains connections on a graceful stop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
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
        // Tells connection tasks to finish their request and close.
        let (stopping, stop) = watch::channel(false);
        let max = self.state.load().config.limits.max_connections;
        // One permit per open connection: all permits back means all connections closed.
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
            // Counts requests on this connection, for `max_requests_per_connection`.
            let served = AtomicU64::new(0);
            let max_requests = config.limits.max_requests_per_connection;
            let service = service_fn(move |req| {
                let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                let last = max_requests.is_some_and(|max| n >= max);
                proxy::handle(state.load_full(), peer, req, last)
            });
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let screened = tokio::select! {
                    io = guard::screen(
                        stream,
                        config.timeouts.client_header,
                        config.timeouts.client_send,
                        config.limits.max_header_bytes,
                    ) => io,
                    _ = stop.changed() => None,
                };
                let Some(io) = screened else {
                    return;
                };
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(config.timeouts.client_header)
                    .max_buf_size(config.limits.max_header_bytes)
                    .max_headers(config.limits.max_headers)
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades();
                let mut conn = std::pin::pin!(conn);
                let ended = tokio::select! {
                    ended = conn.as_mut() => ended,
                    _ = stop.changed() => {
                        // Finish the request in flight (if any), then close.
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = ended {
                    debug!(client = %peer, "connection ended: {e}");
                }
            });
        }
        drop(self.listener);
        let timeout = self.state.load().config.timeouts.shutdown;
        info!("stopping: waiting up to {timeout:?} for open connections");
        let _ = stopping.send(true);
        let all_closed = slots
            .clone()
            .acquire_many_owned(u32::try_from(max).unwrap_or(u32::MAX));
        match tokio::time::timeout(timeout, all_closed).await {
            Ok(_) => info!("all connections closed"),
            Err(_) => warn!("shutdown timeout: closing remaining connections"),
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
