//! A backend: its address, its pool of keep-alive connections, its health, its
//! latency estimate and its counters. One per address, shared by every host entry
//! that lists it and kept across reloads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::connect;
use super::latency::PeakEwma;
use super::passive::Health;
use super::pool::{Pool, PooledConn};
use crate::http::ProxyError;
use crate::routing::{Availability, Candidate};

/// One backend server.
#[derive(Debug)]
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Idle keep-alive connections to it.
    pool: Arc<Pool>,
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
    /// Requests waiting for or streaming a response right now (kept by [`InFlight`]).
    pub in_flight: AtomicU64,
    /// TCP connections opened.
    pub connects: AtomicU64,
    /// Requests that failed here and were retried.
    pub retried: AtomicU64,
}

/// One request counted against its backend from the moment it is sent until its
/// response body ends or the attempt fails: dropping the guard is the only way the
/// in-flight count goes down.
#[derive(Debug)]
pub struct InFlight {
    /// The backend whose count this holds.
    backend: Arc<Backend>,
}

impl InFlight {
    /// The backend this request went to.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
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
            pool: Arc::new(Pool::new(max_idle, idle_timeout)),
            stats: BackendStats::default(),
            health: Health::default(),
            latency: PeakEwma::default(),
        }
    }

    /// Counts a request to this backend; the returned guard keeps it in flight.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            backend: self.clone(),
        }
    }

    /// A ready connection: a pooled one if any is still open, else a new one.
    pub async fn checkout(&self, connect_timeout: Duration) -> Result<PooledConn, ProxyError> {
        while let Some(mut sender) = self.pool.take() {
            // The previous exchange finished, so readiness is immediate unless the
            // backend closed the connection meanwhile; then look further.
            if sender.ready().await.is_ok() {
                return Ok(PooledConn::new(sender, self.pool.clone(), self.addr, true));
            }
        }
        self.connect(connect_timeout).await
    }

    /// Opens a new connection, bypassing the pool (used after a pooled one failed).
    pub async fn connect(&self, connect_timeout: Duration) -> Result<PooledConn, ProxyError> {
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        let sender = connect::open(self.addr, self.read_buffer, connect_timeout).await?;
        Ok(PooledConn::new(sender, self.pool.clone(), self.addr, false))
    }
}

impl Candidate for Backend {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn in_flight(&self) -> u64 {
        self.stats.in_flight.load(Ordering::Relaxed)
    }

    fn latency(&self) -> f64 {
        self.latency.get()
    }

    fn availability(&self, now: u64) -> Availability {
        self.health.availability(now)
    }

    fn claim_probe(&self) -> bool {
        self.health.claim_probe()
    }

    fn retry_after_secs(&self) -> u64 {
        self.health.retry_after_secs()
    }
}
