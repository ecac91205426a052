//! One connection to a backend as relevo drives it: the socket, and the bytes read
//! from it but not yet used. The client connection's task reads and writes it
//! directly (no task of its own, no channel between the two). Between exchanges, in
//! the pool, it holds no buffer.

use std::future::Future;
use std::io;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{tcp, TcpStream};

use crate::downstream::reader;

/// The smallest read: a response head and a small body usually fit.
const MIN_READ: usize = 4 * 1024;

/// A backend connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Read from the backend but not yet parsed or handed out.
    pub buf: BytesMut,
    /// Largest read at once (`limits.upstream_read_buffer`): reads are sized to what
    /// is expected, up to this.
    max_read: usize,
    /// How many bytes the last response took (head and body), so the first read of
    /// the next one is sized for it: one read for a whole 64 KiB response, 4 KiB for
    /// a small one.
    last_response: u32,
}

impl Conn {
    /// A connection over `stream`, its reads capped at `max_read` bytes.
    pub fn new(stream: TcpStream, max_read: usize) -> Conn {
        Conn {
            stream,
            buf: BytesMut::new(),
            max_read: max_read.max(MIN_READ),
            last_response: 0,
        }
    }

    /// The largest response head this connection accepts.
    pub fn max_head(&self) -> usize {
        self.max_read
    }

    /// The size the first read of a response asks for.
    pub fn first_read(&self) -> usize {
        self.last_response as usize
    }

    /// Remembers how large a response was, for the next one's first read.
    pub fn saw_response(&mut self, bytes: u64) {
        self.last_response = u32::try_from(bytes).unwrap_or(u32::MAX);
    }

    /// Whether an idle connection still looks open: the reactor has seen nothing on
    /// it (no close, no stray bytes). No system call unless it did, since a read that
    /// drained the socket leaves it marked not readable.
    pub fn looks_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable while idle: a close (read 0), a reset, or bytes nobody asked for;
            // any of them retires the connection. A spurious wake-up reads nothing.
            Poll::Ready(Ok(())) => matches!(
                self.stream.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }

    /// Frees the buffer when nothing is in it (before the connection goes idle).
    pub fn release_buffer(&mut self) {
        reader::release_if_empty(&mut self.buf);
    }
}

/// A backend socket (or its read half) that can say it is readable without a read.
pub trait Readable: AsyncRead + Unpin {
    /// Ready once a read would not block.
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Readable for TcpStream {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

impl Readable for tcp::ReadHalf<'_> {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.as_ref().poll_read_ready(cx)
    }
}

/// Reads more from `io` into `buf`, making room for `want` bytes (clamped to
/// `[MIN_READ, max]`) when there is less: `Ok(0)` is the end of the stream.
///
/// A buffer without room waits for the socket to be readable before it is grown:
/// a request waiting for its backend's answer holds no read buffer (at 500 waiting
/// 64 KiB responses, 32 MB that nginx does not hold either).
pub fn poll_fill<R: Readable>(
    io: &mut R,
    buf: &mut BytesMut,
    want: usize,
    max: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let want = want.clamp(MIN_READ, max.max(MIN_READ));
    if buf.capacity() - buf.len() < want.min(MIN_READ) || buf.capacity() == 0 {
        std::task::ready!(io.poll_readable(cx))?;
        // One byte more than expected: a read that fills the buffer leaves the socket
        // marked readable (tokio clears readiness only on a short read), which would
        // cost the next read, or `looks_open` at the next checkout, an EAGAIN.
        buf.reserve(want + 1);
    }
    let read = io.read_buf(buf);
    std::pin::pin!(read).poll(cx)
}

impl Conn {
    /// Reads more into the buffer, making room for about `want` bytes.
    pub fn poll_fill(&mut self, want: usize, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_fill(&mut self.stream, &mut self.buf, want, self.max_read, cx)
    }
}
