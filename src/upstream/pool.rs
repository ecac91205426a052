//! Keep-alive connections to one backend, reused across client connections.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use tokio::sync::OwnedSemaphorePermit;

use crate::downstream::request_body::UpstreamBody;

/// Idle connections to one backend, most recently used last.
#[derive(Debug)]
pub struct Pool {
    /// The idle connections, oldest first.
    idle: Mutex<Vec<Idle>>,
    /// More idle connections than this are closed rather than kept.
    max_idle: usize,
    /// An idle connection older than this is closed rather than reused: backends
    /// close idle connections too, and racing them costs a failed request.
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    /// hyper's handle on the connection.
    sender: SendRequest<UpstreamBody>,
    /// When it went idle, for `idle_timeout`.
    since: Instant,
}

impl Pool {
    /// An empty pool.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
        }
    }

    /// The most recently used idle connection that is still open and fresh.
    pub fn take(&self) -> Option<SendRequest<UpstreamBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = idle.pop() {
            if !conn.sender.is_closed() && conn.since.elapsed() < self.idle_timeout {
                return Some(conn.sender);
            }
        }
        None
    }

    /// Idle connections held now (some may have been closed by the backend since).
    pub fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no idle connection is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps a connection for reuse, unless the pool is full or it is closed.
    pub fn put(&self, sender: SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Connections at the front are the oldest; expired ones go first.
        let now = Instant::now();
        let fresh_from = idle
            .iter()
            .position(|c| now.duration_since(c.since) < self.idle_timeout && !c.sender.is_closed())
            .unwrap_or(idle.len());
        idle.drain(..fresh_from);
        if idle.len() < self.max_idle {
            idle.push(Idle { sender, since: now });
        }
    }
}

/// A connection checked out for one exchange; it goes back to the pool only when
/// the response body was read to its end (`release`), and is closed if dropped.
#[derive(Debug)]
pub struct PooledConn {
    /// hyper's handle, to send the request on.
    sender: SendRequest<UpstreamBody>,
    /// Where it goes back to.
    pool: Arc<Pool>,
    /// The backend, for logs.
    pub addr: SocketAddr,
    /// Whether this connection served an earlier request (then a failure before any
    /// response byte may just be the backend's idle close, and a retry is safe).
    pub reused: bool,
    /// The backend's connection slot, held while the connection is in use.
    slot: OwnedSemaphorePermit,
    /// When it was checked out (for a new connection: when the connect finished).
    pub opened: Instant,
}

impl PooledConn {
    /// A checked-out connection that returns to `pool`.
    pub fn new(
        sender: SendRequest<UpstreamBody>,
        pool: Arc<Pool>,
        addr: SocketAddr,
        reused: bool,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        PooledConn {
            sender,
            pool,
            addr,
            reused,
            slot,
            opened: Instant::now(),
        }
    }

    /// Gives the slot back, keeping the connection (a failed connection's slot
    /// goes to the next attempt's fresh connection).
    pub fn into_slot(self) -> OwnedSemaphorePermit {
        self.slot
    }

    /// The hyper handle, to send the request on.
    pub fn sender(&mut self) -> &mut SendRequest<UpstreamBody> {
        &mut self.sender
    }

    /// Puts the connection back in its backend's pool, then frees its slot (in that
    /// order, so a request woken by the slot finds the connection idle).
    pub fn release(self) {
        self.pool.put(self.sender);
        drop(self.slot);
    }
}
