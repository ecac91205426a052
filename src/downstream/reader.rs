//! The read side of a client connection: the socket's read half and the bytes read
//! from it but not yet used. It stays with the connection between requests and moves
//! into a request's body while that body is read (`request_body::WireBody`), then
//! comes back. Its buffer exists only while there is something in it: an idle
//! keep-alive connection holds no read buffer (nginx frees its header buffers the
//! same way).

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Bytes read ahead from a socket per read while a head or body is being read.
const READ_CHUNK: usize = 8 * 1024;
/// How much an idle connection's first read may take, on the stack (a request head
/// usually fits; the rest is read into the heap buffer then).
const IDLE_PROBE: usize = 2 * 1024;

/// A boxed read half: the same `Reader` serves plain TCP and TLS connections.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;

/// The connection's read half and its read-ahead buffer.
pub struct Reader {
    /// Where bytes come from.
    io: ReadHalf,
    /// Read but not yet parsed or handed out.
    pub buf: BytesMut,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl Reader {
    /// A reader over `io` with bytes already read (`buf`, possibly empty).
    pub fn new(io: ReadHalf, buf: BytesMut) -> Reader {
        Reader { io, buf }
    }

    /// Reads more into the buffer: `Ok(0)` is the end of the stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 512 {
            self.buf.reserve(READ_CHUNK);
        }
        let read = self.io.read_buf(&mut self.buf);
        std::pin::pin!(read).poll(cx)
    }

    /// Reads more into the buffer.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.is_empty() {
            return self.first_read().await;
        }
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// The first read of an idle connection: into a stack probe, so that no heap
    /// buffer exists until bytes arrive; they are then copied into one of their size.
    /// That buffer lives as long as the request (the head's fields point into it), so
    /// it is no larger than what came (a 1 KiB one, as nginx's
    /// `client_header_buffer_size`, was 10 MB at 10,000 active clients sending
    /// 100-byte heads); a head that did not all come grows it in `poll_fill`.
    async fn first_read(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| {
            // Uninitialised: the probe is made at every poll (an idle connection's wait
            // for its next head is polled three times per request), and zeroing 2 KiB
            // each time was 1.5 % of relevo's instructions.
            let mut probe = [MaybeUninit::<u8>::uninit(); IDLE_PROBE];
            let mut rb = ReadBuf::uninit(&mut probe);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    if !got.is_empty() {
                        self.buf = BytesMut::from(got);
                    }
                    Poll::Ready(Ok(got.len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Gives the buffer's memory back when nothing is buffered: called before a
    /// connection goes idle.
    pub fn release_if_empty(&mut self) {
        release_if_empty(&mut self.buf);
    }
}

/// Frees `buf`'s memory when nothing is in it (a buffer that exists only while there
/// is something to hold: this reader's, and a backend connection's).
pub fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

/// Hands what `buf` holds to a reader of the stream (as much as `out` takes), freeing
/// the buffer once empty; false when nothing was buffered. What a tunnel reads first
/// after a head, on either side.
pub fn read_buffered(buf: &mut BytesMut, out: &mut ReadBuf<'_>) -> bool {
    if buf.is_empty() {
        return false;
    }
    let n = buf.len().min(out.remaining());
    out.put_slice(&buf[..n]);
    buf.advance(n);
    release_if_empty(buf);
    true
}

impl AsyncRead for Reader {
    /// Buffered bytes first, then the socket: what a tunnel reads after the head.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if read_buffered(&mut self.buf, out) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}
