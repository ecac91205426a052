//! Opening a connection to a backend: TCP connect within a timeout, then hyper's
//! HTTP/1.1 client handshake, its connection driven by a task of its own.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use crate::downstream::request_body::UpstreamBody;
use crate::http::ProxyError;

/// A new connection to `addr`, its read buffer capped at `read_buffer` bytes.
pub async fn open(
    addr: SocketAddr,
    read_buffer: usize,
    timeout: Duration,
) -> Result<SendRequest<UpstreamBody>, ProxyError> {
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
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        // Caps the adaptive read buffer (and so the largest response head): larger
        // reads mean fewer syscalls and frames per body, at a memory cost per active
        // connection (see `limits.upstream_read_buffer`).
        .max_buf_size(read_buffer)
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
    Ok(sender)
}

/// Errors that say relevo, not the backend, is short of something: descriptors
/// (EMFILE, ENFILE), buffers or memory (ENOBUFS, ENOMEM), local ports (EADDRNOTAVAIL).
fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}
