//! How a client connection closes: gracefully ("lingering close", RFC 9112 §9.6).
//! Closing a socket with unread input makes the kernel send a reset, which can destroy
//! the response (a 400 or 431, say) before the client has read it. So the write side
//! is shut and the input is read and discarded for a short while first.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a closing connection keeps reading what the client still sends.
pub(super) const LINGER_TIME: Duration = Duration::from_secs(2);
/// How much a closing connection reads before giving up on a graceful close.
const LINGER_BYTES: usize = 256 * 1024;

/// Lingering close of a whole socket.
pub(super) async fn linger(mut stream: TcpStream) {
    let (read, write) = stream.split();
    linger_halves(read, write).await;
}

/// Lingering close of a connection whose halves are apart: shut the write side,
/// then read and drop what still comes, within bounds.
pub(super) async fn linger_halves<R, W>(mut read: R, mut write: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(LINGER_TIME, async {
        write.shutdown().await?;
        // On the heap: an array here would be part of every connection's future,
        // idle or not.
        let mut sink = vec![0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES {
            match read.read(&mut sink).await? {
                0 => break,
                n => total += n,
            }
        }
        io::Result::Ok(())
    })
    .await;
}
