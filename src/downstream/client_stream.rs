//! How a client connection closes, gracefully ("lingering close", RFC 9112 §9.6), and
//! the stream hyper's HTTP/2 server runs over: a bound on blocked writes, and a
//! lingering close when dropped. (HTTP/1.1 connections
//! are relevo's own, `connection.rs`, and linger with `linger_halves`.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// How long a closing connection keeps reading what the client still sends.
pub(super) const LINGER_TIME: Duration = Duration::from_secs(2);
/// How much a closing connection reads before giving up on a graceful close.
const LINGER_BYTES: usize = 256 * 1024;

/// What a client connection runs over: a TCP socket, or TLS on one.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A client stream for hyper's HTTP/2 server.
///
/// When dropped, it closes gracefully ("lingering close", RFC 9112 §9.6): closing a
/// socket with unread input makes the kernel send a reset, which can destroy the
/// response (a 400 or 431, say) before the client has read it. So the write side is
/// shut and the input is read and discarded for a short while first.
///
/// It also bounds how long a write may stay blocked (`send_timeout`): a client that
/// stops reading its response gets its connection closed instead of pinning buffers and
/// a backend connection forever.
#[derive(Debug)]
pub struct ClientStream<S: Io = TcpStream> {
    /// The socket; taken only by `drop`, which lingers on it.
    stream: Option<S>,
    /// Longest a write may stay blocked.
    send_timeout: Duration,
    /// Armed while a write is blocked; disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S: Io> Drop for ClientStream<S> {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(linger(stream));
            }
        }
    }
}

pub(super) async fn linger<S: Io>(stream: S) {
    let (read, write) = tokio::io::split(stream);
    linger_halves(read, write).await;
}

impl<S: Io> ClientStream<S> {
    /// The stream over `stream`, its writes bounded by `send_timeout`.
    pub(super) fn new(stream: S, send_timeout: Duration) -> ClientStream<S> {
        ClientStream {
            stream: Some(stream),
            send_timeout,
            stalled: None,
        }
    }

    fn stream(&mut self) -> Pin<&mut S> {
        // `stream` is only taken in `drop`, so it is always here while in use.
        Pin::new(self.stream.as_mut().expect("stream present until drop"))
    }

    /// Passes a write's outcome through, timing how long writes stay blocked.
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.send_timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client did not read its response in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: Io> AsyncRead for ClientStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl<S: Io> AsyncWrite for ClientStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = self.stream().poll_write(cx, buf);
        self.watch_write(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = self.stream().poll_write_vectored(cx, bufs);
        self.watch_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
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
