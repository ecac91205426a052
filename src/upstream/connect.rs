//! Opening a connection to a backend: a TCP connect within a timeout. The connection
//! is then driven by whichever client connection's task uses it (`exchange.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::conn::Conn;
use crate::http::ProxyError;

/// A new connection to `addr`, its reads capped at `read_buffer` bytes.
pub async fn open(
    addr: SocketAddr,
    read_buffer: usize,
    timeout: Duration,
) -> Result<Conn, ProxyError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ProxyError::ConnectTimeout(addr)),
        Ok(Err(source)) if is_local_shortage(&source) => {
            return Err(ProxyError::LocalResources { addr, source })
        }
        Ok(Err(source)) => return Err(ProxyError::Connect { addr, source }),
        Ok(Ok(s)) => s,
    };
    // Small request heads must not wait for Nagle's delayed-ACK dance.
    let _ = stream.set_nodelay(true);
    Ok(Conn::new(stream, read_buffer))
}

/// Errors that say relevo, not the backend, is short of something: descriptors
/// (EMFILE, ENFILE), buffers or memory (ENOBUFS, ENOMEM), local ports (EADDRNOTAVAIL).
fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}
