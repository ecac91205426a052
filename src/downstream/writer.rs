//! The write side of a client connection: whole buffers written with one `writev`
//! where the kernel takes them, each write bounded by `timeouts.client_send` so a
//! client that stops reading cannot pin a connection (and its backend) forever.

use std::io::{self, IoSlice};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A client connection's write half with its send timeout.
#[derive(Debug)]
pub struct Writer<W> {
    /// The socket's write half.
    pub io: W,
    /// Longest a write may stay blocked.
    send_timeout: Duration,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    /// A writer over `io`.
    pub fn new(io: W, send_timeout: Duration) -> Writer<W> {
        Writer { io, send_timeout }
    }

    /// Writes every byte of `bufs`, in order, gathering them into as few system calls
    /// as the kernel allows; then flushes (a no-op for TCP, a record for TLS).
    pub async fn write_all(&mut self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        let write = async {
            write_all_vectored(&mut self.io, bufs)
                .await
                .map_err(|(e, _)| e)?;
            self.io.flush().await
        };
        match tokio::time::timeout(self.send_timeout, write).await {
            Ok(done) => done,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client did not read its response in time",
            )),
        }
    }
}

/// Writes all of `bufs`, in order, with as few `writev`s as the kernel allows. The
/// error says whether any byte had been written before it (the upstream side resends
/// a request only when none was).
pub async fn write_all_vectored<W: AsyncWrite + Unpin>(
    io: &mut W,
    bufs: &mut [IoSlice<'_>],
) -> Result<(), (io::Error, bool)> {
    let mut bufs = bufs;
    IoSlice::advance_slices(&mut bufs, 0);
    let mut any = false;
    while !bufs.is_empty() {
        match io.write_vectored(bufs).await {
            Ok(0) => return Err((io::ErrorKind::WriteZero.into(), any)),
            Ok(n) => {
                any = true;
                IoSlice::advance_slices(&mut bufs, n);
            }
            Err(e) => return Err((e, any)),
        }
    }
    Ok(())
}
