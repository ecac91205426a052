//! A backend: its address, its pool of keep-alive connections, its health, its
//! latency estimate and its counters. One per address, shared by every host entry
//! that lists it and kept across reloads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::connect;
use super::latency::PeakEwma;
use super::passive::Health;
use super::pool::{Pool, PooledConn};
use crate::http::ProxyError;
use crate::routing::{Availability, Candidate};
use crate::stats::Histogram;

/// One backend server.
#[derive(Debug)]
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Idle keep-alive connections to it.
    pool: Arc<Pool>,
    /// Largest read buffer of a connection (`limits.upstream_read_buffer`).
    read_buffer: usize,
    /// One permit per connection in use (checked out): with idle connections reused
    /// before new ones are opened, the backend never sees more than `max_conns`.
    slots: Arc<Semaphore>,
    /// The current limit, so a reload can move it.
    max_conns: Mutex<usize>,
    /// Requests waiting for a slot now.
    queued: AtomicUsize,
    /// Counters a status page and health logic read.
    pub stats: BackendStats,
    /// Passive and active health.
    pub health: Health,
    /// Response-time estimate for `p2c`.
    pub latency: PeakEwma,
    /// TCP connect + handshake times: `relevo_upstream_connect_duration_seconds`.
    pub connect_time: Histogram,
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
    /// Requests that had to wait for a connection slot.
    pub queued: AtomicU64,
}

/// How long, and how many, requests may wait for a connection to a backend at its limit.
#[derive(Debug, Clone, Copy)]
pub struct Queue {
    /// Most requests waiting at once.
    pub max: usize,
    /// Longest wait.
    pub timeout: Duration,
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
    /// A backend with an empty pool and room for `max_conns` connections.
    pub fn new(
        addr: SocketAddr,
        max_idle: usize,
        idle_timeout: Duration,
        read_buffer: usize,
        max_conns: usize,
    ) -> Backend {
        Backend {
            addr,
            read_buffer,
            pool: Arc::new(Pool::new(max_idle, idle_timeout)),
            slots: Arc::new(Semaphore::new(max_conns)),
            max_conns: Mutex::new(max_conns),
            queued: AtomicUsize::new(0),
            stats: BackendStats::default(),
            health: Health::default(),
            latency: PeakEwma::default(),
            connect_time: Histogram::default(),
        }
    }

    /// Connections idle in the pool now.
    pub fn idle_connections(&self) -> usize {
        self.pool.len()
    }

    /// Connections in use now (slots taken).
    pub fn active_connections(&self) -> usize {
        let max = *self.max_conns.lock().unwrap_or_else(|p| p.into_inner());
        max.saturating_sub(self.slots.available_permits())
    }

    /// Counts a request to this backend; the returned guard keeps it in flight.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            backend: self.clone(),
        }
    }

    /// Moves the connection limit (a reload): permits are added, or taken away as
    /// connections in use give them back.
    pub fn set_max_conns(self: &Arc<Self>, max_conns: usize) {
        let mut current = self.max_conns.lock().unwrap_or_else(|p| p.into_inner());
        if max_conns > *current {
            self.slots.add_permits(max_conns - *current);
        } else if max_conns < *current {
            let excess = *current - max_conns;
            let gone = self.slots.forget_permits(excess);
            if gone < excess {
                let slots = self.slots.clone();
                let rest = u32::try_from(excess - gone).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(permits) = slots.acquire_many(rest).await {
                        permits.forget();
                    }
                });
            }
        }
        *current = max_conns;
    }

    /// A slot for one connection in use: at once if the backend is under its limit,
    /// else after waiting in its queue (bounded in length and time).
    pub async fn slot(&self, queue: Queue) -> Result<OwnedSemaphorePermit, ProxyError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let busy = |why: String| ProxyError::BackendBusy {
            addr: self.addr,
            why,
        };
        if self.queued.fetch_add(1, Ordering::AcqRel) >= queue.max {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(busy(format!("its queue of {} is full", queue.max)));
        }
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let waited = tokio::time::timeout(queue.timeout, self.slots.clone().acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(busy(format!("no connection within {:?}", queue.timeout))),
        }
    }

    /// A ready connection for the holder of `slot`: a pooled one if any is still
    /// open, else a new one.
    pub async fn checkout(
        &self,
        slot: OwnedSemaphorePermit,
        connect_timeout: Duration,
    ) -> Result<PooledConn, ProxyError> {
        match self.pool.take() {
            Some(conn) => Ok(PooledConn::new(
                conn,
                self.pool.clone(),
                self.addr,
                None,
                slot,
            )),
            None => self.connect(slot, connect_timeout).await,
        }
    }

    /// Opens a new connection, bypassing the pool (used after a pooled one failed).
    pub async fn connect(
        &self,
        slot: OwnedSemaphorePermit,
        connect_timeout: Duration,
    ) -> Result<PooledConn, ProxyError> {
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let conn = connect::open(self.addr, self.read_buffer, connect_timeout).await?;
        let took = started.elapsed();
        self.connect_time.observe(took);
        Ok(PooledConn::new(
            conn,
            self.pool.clone(),
            self.addr,
            Some(took),
            slot,
        ))
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
