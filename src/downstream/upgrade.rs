//! Byte tunnels after an HTTP exchange: a backend's 101 (WebSocket) or a CONNECT's 200.
//! The answer carries a `Tunnel` (the other side, still to be reached); the client
//! connection, once the head is written, relays its own bytes with it until both
//! sides close or nothing moves for the idle time.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::reader::Reader;

/// Size of each direction's relay buffer.
const RELAY_BUF: usize = 16 * 1024;

/// A byte stream both ways (an upgraded backend connection, a CONNECT target).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The far side of a tunnel, once reached.
pub type FarSide = Pin<Box<dyn Future<Output = io::Result<Box<dyn Io>>> + Send>>;

/// A response extension: after this response, relay the client's connection with
/// the far side. (Cloneable because response extensions must be; taken once.)
#[derive(Clone)]
pub struct Tunnel(Arc<Mutex<Option<Parts>>>);

/// What a tunnel is made of.
struct Parts {
    /// The other end.
    far: FarSide,
    /// Longest time with no byte either way.
    idle: Duration,
    /// For the log: what the tunnel goes to.
    label: String,
}

impl Tunnel {
    /// A tunnel to `far`, closed after `idle` without traffic; `label` names it in logs.
    pub fn new(far: FarSide, idle: Duration, label: String) -> Tunnel {
        Tunnel(Arc::new(Mutex::new(Some(Parts { far, idle, label }))))
    }

    /// Relays `client` (its read side, with any bytes already read, and its write
    /// side) with the far side.
    pub async fn run<W: AsyncWrite + Send + Unpin>(self, client: Reader, writer: W) {
        let parts = match self.0.lock() {
            Ok(mut p) => p.take(),
            Err(_) => None,
        };
        let Some(Parts { far, idle, label }) = parts else {
            return;
        };
        let far = match far.await {
            Ok(far) => far,
            Err(e) => return tracing::debug!(to = %label, "tunnel not established: {e}"),
        };
        let client = Joined {
            reader: client,
            writer,
        };
        match relay(client, far, idle).await {
            Ok((up, down)) => tracing::debug!(to = %label, up, down, "tunnel closed"),
            Err(e) => tracing::debug!(to = %label, "tunnel ended: {e}"),
        }
    }
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tunnel")
    }
}

/// The two halves of the client connection as one stream.
struct Joined<W> {
    /// Read side (buffered bytes first).
    reader: Reader,
    /// Write side.
    writer: W,
}

impl<W: Unpin> AsyncRead for Joined<W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Joined<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

/// Copies both ways until both sides have closed, or nothing moved for `idle`.
/// Returns the bytes sent each way (a→b, b→a).
pub async fn relay<A, B>(mut a: A, mut b: B, idle: Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ab, mut ba) = (vec![0u8; RELAY_BUF], vec![0u8; RELAY_BUF]);
    let (mut a_open, mut b_open) = (true, true);
    let (mut a_to_b, mut b_to_a) = (0u64, 0u64);
    while a_open || b_open {
        tokio::select! {
            r = a.read(&mut ab), if a_open => match r? {
                0 => {
                    a_open = false;
                    b.shutdown().await?;
                }
                n => {
                    b.write_all(&ab[..n]).await?;
                    a_to_b += n as u64;
                }
            },
            r = b.read(&mut ba), if b_open => match r? {
                0 => {
                    b_open = false;
                    a.shutdown().await?;
                }
                n => {
                    a.write_all(&ba[..n]).await?;
                    b_to_a += n as u64;
                }
            },
            _ = tokio::time::sleep(idle) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "tunnel idle"));
            }
        }
    }
    Ok((a_to_b, b_to_a))
}
