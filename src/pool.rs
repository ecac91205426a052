//! Keep-alive connections to one backend, reused across client connections.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;

use crate::body::UpstreamBody;
use crate::upstream::Backend;

/// Idle connections to one backend, most recently used last.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    /// More idle connections than this are closed rather than kept.
    max_idle: usize,
    /// An idle connection older than this is closed rather than reused: backends
    /// close idle connections too, and racing them costs a failed request.
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<UpstreamBody>,
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
/// the response body was read to its end.
#[derive(Debug)]
pub struct PooledConn {
    sender: SendRequest<UpstreamBody>,
    backend: Arc<Backend>,
    /// Whether this connection served an earlier request (then a failure before any
    /// response byte may just be the backend's idle close, and a retry is safe).
    pub reused: bool,
}

impl PooledConn {
    pub(crate) fn new(
        sender: SendRequest<UpstreamBody>,
        backend: Arc<Backend>,
        reused: bool,
    ) -> Self {
        PooledConn {
            sender,
            backend,
            reused,
        }
    }

    /// The hyper handle, to send the request on.
    pub fn sender(&mut self) -> &mut SendRequest<UpstreamBody> {
        &mut self.sender
    }

    /// The backend this connection goes to.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Puts the connection back in its backend's pool.
    pub fn release(self) {
        self.backend.release(self.sender);
    }
}
