//! The listening socket: binds, accepts, caps the number of open client connections
//! (extras get a quick 503) and, on a graceful stop, waits for them to close.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use super::client_stream;
use crate::stats::ServerStats;

/// Pending connections the kernel queues before `accept`.
const BACKLOG: u32 = 4096;

/// Sent to a client over `limits.max_connections`: quick, framed, and closing.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 33\r\nretry-after: 1\r\nconnection: close\r\n\r\ntoo many connections, retry later\n";

/// A bound listener and the slots of the connections it may have open at once.
#[derive(Debug)]
pub struct Listener {
    /// The socket clients connect to.
    socket: TcpListener,
    /// One permit per open connection: all permits back means all connections closed.
    slots: Arc<Semaphore>,
    /// The number of permits, to wait for all of them on a stop.
    max: usize,
    /// Clients accepted, refused and open, for metrics.
    stats: Arc<ServerStats>,
}

/// An accepted client connection, holding its slot until it is dropped.
#[derive(Debug)]
pub struct Accepted<S = TcpStream> {
    /// The client's socket (or the TLS session on it).
    pub stream: S,
    /// The client's address (logs, `X-Forwarded-For`, client-ip hashing).
    pub peer: SocketAddr,
    /// Returned to the listener when the connection ends.
    pub slot: Slot,
}

/// A client connection's place under the cap, and in the count of open connections.
#[derive(Debug)]
pub struct Slot {
    /// The listener's permit.
    _permit: OwnedSemaphorePermit,
    /// Where the connection is counted as open.
    stats: Arc<ServerStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.clients_active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Listener {
    /// Binds `addr` with room for `max_connections` open connections; `reuse_port`
    /// (SO_REUSEPORT) for the TLS listener, which a binary upgrade does not hand over,
    /// so that the new relevo can bind it beside the old one while that one drains.
    pub fn bind(
        addr: SocketAddr,
        max_connections: usize,
        stats: Arc<ServerStats>,
        reuse_port: bool,
    ) -> io::Result<Listener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // A restarted proxy must get its port back while old connections sit in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(reuse_port)?;
        socket.bind(addr)?;
        Ok(Listener::with_slots(
            socket.listen(BACKLOG)?,
            max_connections,
            stats,
        ))
    }

    /// Serves a socket that is already listening (handed over by the relevo being
    /// upgraded), with room for `max_connections` open connections.
    pub fn from_std(
        socket: std::net::TcpListener,
        max_connections: usize,
        stats: Arc<ServerStats>,
    ) -> io::Result<Listener> {
        // tokio polls the socket for readiness: a blocking accept would stall a worker.
        socket.set_nonblocking(true)?;
        Ok(Listener::with_slots(
            TcpListener::from_std(socket)?,
            max_connections,
            stats,
        ))
    }

    fn with_slots(
        socket: TcpListener,
        max_connections: usize,
        stats: Arc<ServerStats>,
    ) -> Listener {
        Listener {
            socket,
            slots: Arc::new(Semaphore::new(max_connections)),
            max: max_connections,
            stats,
        }
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The next client that fits under the connection cap; clients over it are
    /// answered 503 in the background.
    pub async fn accept(&self) -> Accepted {
        loop {
            let (stream, peer) = match self.socket.accept().await {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                self.stats.clients_refused.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(refuse(stream));
                continue;
            };
            self.stats.clients_total.fetch_add(1, Ordering::Relaxed);
            self.stats.clients_active.fetch_add(1, Ordering::Relaxed);
            let slot = Slot {
                _permit: permit,
                stats: self.stats.clone(),
            };
            // Small response heads must not wait for Nagle's delayed-ACK dance.
            let _ = stream.set_nodelay(true);
            return Accepted { stream, peer, slot };
        }
    }

    /// Closes the socket, then waits up to `timeout` for every open connection to end.
    pub async fn drain(self, timeout: Duration) {
        drop(self.socket);
        info!("stopping: waiting up to {timeout:?} for open connections");
        let all_closed = self
            .slots
            .clone()
            .acquire_many_owned(u32::try_from(self.max).unwrap_or(u32::MAX));
        match tokio::time::timeout(timeout, all_closed).await {
            Ok(_) => info!("all connections closed"),
            Err(_) => warn!("shutdown timeout: closing remaining connections"),
        }
    }
}

/// The listening socket itself, so that it can be handed to a new binary.
impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// The listening socket's descriptor number, for the calls that take one.
impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Answers a client over the cap, then closes gracefully: closing with its request
/// still unread would make the kernel send a reset that can destroy the 503.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
    client_stream::linger(stream).await;
}
