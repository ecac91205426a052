//! A backend: its address, its pool of keep-alive connections and its counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use crate::body::UpstreamBody;
use crate::error::ProxyError;
use crate::health::{Health, PeakEwma};
use crate::pool::{Pool, PooledConn};

/// One backend server, shared by every site that lists it and kept across reloads.
#[derive(Debug)]
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Idle keep-alive connections to it.
    pool: Pool,
    /// Largest read buffer of a connection (`limits.upstream_read_buffer`).
    read_buffer: usize,
    /// Counters a status page and health logic read.
    pub stats: BackendStats,
    /// Passive and active health.
    pub health: Health,
    /// Response-time estimate for `p2c`.
    pub latency: PeakEwma,
}

/// Per-backend counters, all monotonic except `in_flight`.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Requests sent (or attempted).
    pub requests: AtomicU64,
    /// Requests that failed on the backend's side (connect, timeout, bad response).
    pub failures: AtomicU64,
    /// Requests waiting for or streaming a response right now.
    pub in_flight: AtomicU64,
    /// TCP connections opened.
    pub connects: AtomicU64,
    /// Requests that failed here and were retried on another backend.
    pub retried: AtomicU64,
}

impl Backend {
    /// A backend with an empty pool.
    pub fn new(
        addr: SocketAddr,
        max_idle: usize,
        idle_timeout: Duration,
        read_buffer: usize,
    ) -> Backend {
        Backend {
            addr,
            read_buffer,
            pool: Pool::new(max_idle, idle_timeout),
            stats: BackendStats::default(),
            health: Health::default(),
            latency: PeakEwma::default(),
        }
    }

    /// A ready connection: a pooled one if any is still open, else a new one.
    pub async fn checkout(
        self: &Arc<Self>,
        connect_timeout: Duration,
    ) -> Result<PooledConn, ProxyError> {
        while let Some(mut sender) = self.pool.take() {
            // The previous exchange finished, so readiness is immediate unless the
            // backend closed the connection meanwhile; then look further.
            if sender.ready().await.is_ok() {
                return Ok(PooledConn::new(sender, self.clone(), true));
            }
        }
        self.connect(connect_timeout).await
    }

    /// Opens a new connection, bypassing the pool (used after a pooled one failed).
    pub async fn connect(
        self: &Arc<Self>,
        connect_timeout: Duration,
    ) -> Result<PooledConn, ProxyError> {
        let addr = self.addr;
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ProxyError::ConnectTimeout(addr)),
            Ok(Err(source)) => return Err(ProxyError::Connect { addr, source }),
            Ok(Ok(s)) => s,
        };
        // Small request heads must not wait for Nagle's delayed-ACK dance.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            // Caps the adaptive read buffer (and so the largest response head): larger
            // reads mean fewer syscalls and frames per body, at a memory cost per active
            // connection (see `limits.upstream_read_buffer`).
            .max_buf_size(self.read_buffer)
            .handshake::<_, UpstreamBody>(TokioIo::new(stream))
            .await
            .map_err(|source| ProxyError::Upstream {
                addr,
                source,
                unsent: true,
            })?;
        tokio::spawn(async move {
            // `with_upgrades` lets a 101 response hand the connection over to a tunnel.
            if let Err(e) = conn.with_upgrades().await {
                debug!(backend = %addr, "upstream connection ended: {e}");
            }
        });
        Ok(PooledConn::new(sender, self.clone(), false))
    }

    /// Returns a connection whose exchange finished cleanly.
    pub(crate) fn release(&self, conn: hyper::client::conn::http1::SendRequest<UpstreamBody>) {
        self.pool.put(conn);
    }
}
