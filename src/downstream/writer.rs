//! The write side of a client connection: whole buffers written with one `writev`
//! where the kernel takes them, each write bounded by `timeouts.client_send` so a
//! client that stops reading cannot pin a connection (and its backend) forever.

use std::cell::Cell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::ops::{Deref, DerefMut};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The largest buffer kept for reuse: a head of the usual size.
const MAX_SPARE: usize = 4 * 1024;

thread_local! {
    /// One head buffer per thread, reused by every head encoded on it (the two heads
    /// of a request take it in turn): two allocations fewer per request, and no
    /// buffer per connection.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A buffer a head is encoded into before it is written: the thread's spare one when
/// it is free, given back (emptied) when dropped.
#[derive(Debug)]
pub struct HeadBuf(Vec<u8>);

impl HeadBuf {
    /// The spare buffer, or a new empty one when it is in use.
    pub fn new() -> HeadBuf {
        HeadBuf(SPARE.take())
    }
}

impl Default for HeadBuf {
    fn default() -> Self {
        HeadBuf::new()
    }
}

impl Deref for HeadBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for HeadBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for HeadBuf {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        if buf.capacity() <= MAX_SPARE {
            buf.clear();
            SPARE.set(buf);
        }
    }
}

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
        let send_timeout = self.send_timeout;
        let io = &mut self.io;
        let mut write = std::pin::pin!(async move {
            write_all_vectored(io, bufs).await.map_err(|(e, _)| e)?;
            io.flush().await
        });
        // Almost every write completes at once (the send buffer has room): the timer,
        // a clock reading and a timer-wheel entry made and dropped, is armed only for
        // a write that has to wait.
        if let Poll::Ready(done) =
            std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await
        {
            return done;
        }
        match tokio::time::timeout(send_timeout, write).await {
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
