//! Keep-alive connections to one backend, reused across client connections.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use super::conn::Conn;
use crate::downstream::reader;

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
    /// The connection, without a buffer.
    conn: Conn,
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
    pub fn take(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(held) = idle.pop() {
            if held.since.elapsed() < self.idle_timeout && held.conn.looks_open() {
                return Some(held.conn);
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

    /// Keeps a connection for reuse, unless the pool is full or bytes are left in it
    /// (more than the response: the backend is not speaking HTTP/1.1 to us).
    pub fn put(&self, mut conn: Conn) {
        if !conn.buf.is_empty() {
            return;
        }
        conn.release_buffer();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Connections at the front are the oldest; expired ones go first.
        let now = Instant::now();
        let fresh_from = idle
            .iter()
            .position(|c| now.duration_since(c.since) < self.idle_timeout)
            .unwrap_or(idle.len());
        idle.drain(..fresh_from);
        if idle.len() < self.max_idle {
            idle.push(Idle { conn, since: now });
        }
    }
}

/// A connection checked out for one exchange; it goes back to the pool only when
/// the response body was read to its end (`release`), and is closed if dropped.
#[derive(Debug)]
pub struct PooledConn {
    /// The connection.
    conn: Conn,
    /// Where it goes back to.
    pool: Arc<Pool>,
    /// The backend, for logs.
    pub addr: SocketAddr,
    /// The backend's connection slot, held while the connection is in use.
    slot: OwnedSemaphorePermit,
    /// How long the connect took, for a connection opened for this exchange (the
    /// session's connect time); `None` for a pooled one, which is what `reused` says.
    pub connect_time: Option<Duration>,
}

impl PooledConn {
    /// A checked-out connection that returns to `pool`.
    pub fn new(
        conn: Conn,
        pool: Arc<Pool>,
        addr: SocketAddr,
        connect_time: Option<Duration>,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        PooledConn {
            conn,
            pool,
            addr,
            slot,
            connect_time,
        }
    }

    /// Whether this connection served an earlier request (then a failure before any
    /// response byte may just be the backend's idle close, and a retry is safe).
    pub fn reused(&self) -> bool {
        self.connect_time.is_none()
    }

    /// Gives the slot back, keeping the connection (a failed connection's slot
    /// goes to the next attempt's fresh connection).
    pub fn into_slot(self) -> OwnedSemaphorePermit {
        self.slot
    }

    /// The connection, to exchange on.
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Puts the connection back in its backend's pool, then frees its slot (in that
    /// order, so a request woken by the slot finds the connection idle).
    pub fn release(self) {
        self.pool.put(self.conn);
        drop(self.slot);
    }
}

/// A connection that became a tunnel (after a 101) reads and writes as a byte stream;
/// it keeps its backend slot until the tunnel closes.
impl AsyncRead for PooledConn {
    /// Buffered bytes first (what the backend sent with its 101), then the socket.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if reader::read_buffered(&mut self.conn.buf, out) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.conn.stream).poll_read(cx, out)
    }
}

impl AsyncWrite for PooledConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn.stream).poll_shutdown(cx)
    }
}
