//! A backend's response body, read off its connection by the framing of its head
//! (length, chunked, or until the close). The read that completes it gives the
//! connection back to the pool at once (when the backend allows reuse), before the
//! last bytes are even written to the client; an unfinished body closes it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::pool::PooledConn;
use super::response_head::BodyKind;
use crate::downstream::chunked::{Decoder, Step};
use crate::downstream::reader::release_if_empty;
use crate::http::BackendFault;

/// Largest trailer section accepted from a backend (hyper's client has the same
/// budget for chunk extensions and trailers).
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// The read size while a body of unknown length streams.
const STREAM_READ: usize = 16 * 1024;

/// What is left of the body.
#[derive(Debug)]
enum Left {
    /// This many bytes.
    Length(u64),
    /// Chunks, decoded as they come.
    Chunked(Decoder),
    /// Everything until the backend closes.
    Close,
    /// Nothing: the body has ended (or failed).
    Done,
}

/// A response body streaming from its backend connection.
#[derive(Debug)]
pub struct BackendBody {
    /// The connection, until the body ends.
    conn: Option<PooledConn>,
    /// Where the body ends.
    left: Left,
    /// Whether the connection may serve another request once the body is read.
    reusable: bool,
    /// Bytes read off the socket for this response (head included), so that the
    /// connection's next first read is sized for a response like this one.
    seen: u64,
}

impl BackendBody {
    /// The body after a head of `head_len` bytes, framed as `kind`, read from `conn`.
    pub fn new(conn: PooledConn, kind: BodyKind, reusable: bool, head_len: usize) -> BackendBody {
        let left = match kind {
            BodyKind::Empty => Left::Length(0),
            BodyKind::Length(n) => Left::Length(n),
            BodyKind::Chunked => Left::Chunked(Decoder::new(MAX_TRAILER_BYTES)),
            BodyKind::Close => Left::Close,
        };
        let mut conn = conn;
        let seen = (head_len + conn.conn().buf.len()) as u64;
        let mut body = BackendBody {
            conn: Some(conn),
            left,
            reusable: reusable && kind != BodyKind::Close,
            seen,
        };
        if matches!(body.left, Left::Length(0)) {
            body.done();
        }
        body
    }

    /// The body has ended: the connection goes back to its pool if it may.
    fn done(&mut self) {
        self.left = Left::Done;
        if let Some(mut pooled) = self.conn.take() {
            pooled.conn().saw_response(self.seen);
            if self.reusable {
                pooled.release();
            }
        }
    }

    /// The framing broke: the connection closes.
    fn fail(&mut self, fault: BackendFault) -> Poll<Option<Result<Frame<Bytes>, BackendFault>>> {
        self.left = Left::Done;
        self.conn = None;
        Poll::Ready(Some(Err(fault)))
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = BackendFault;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BackendFault>>> {
        let this = &mut *self;
        loop {
            let Some(pooled) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let conn = pooled.conn();
            let want = match &mut this.left {
                Left::Done => return Poll::Ready(None),
                Left::Length(left) if !conn.buf.is_empty() => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(conn.buf.len());
                    *left -= n as u64;
                    let data = conn.buf.split_to(n).freeze();
                    // The buffer goes with its last bytes: its memory is freed as soon
                    // as they are written to the client, not kept for the next read
                    // (which takes a buffer once the socket is readable).
                    release_if_empty(&mut conn.buf);
                    if *left == 0 {
                        this.done();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Left::Length(left) => usize::try_from(*left).unwrap_or(usize::MAX),
                Left::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Step::Data(data)) => {
                        release_if_empty(&mut conn.buf);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(Step::Trailers(fields)) => {
                        this.done();
                        return Poll::Ready(Some(Ok(Frame::trailers(fields))));
                    }
                    Ok(Step::End) => {
                        this.done();
                        return Poll::Ready(None);
                    }
                    Ok(Step::More) => STREAM_READ.max(conn.first_read()),
                    Err(e) => return this.fail(BackendFault::Body(e.to_string())),
                },
                Left::Close if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    release_if_empty(&mut conn.buf);
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Left::Close => STREAM_READ.max(conn.first_read()),
            };
            match conn.poll_fill(want, cx) {
                Poll::Ready(Ok(0)) if matches!(this.left, Left::Close) => {
                    this.done();
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    return this.fail(BackendFault::Body(
                        "connection closed before the body ended".into(),
                    ))
                }
                Poll::Ready(Ok(n)) => this.seen += n as u64,
                Poll::Ready(Err(e)) => return this.fail(BackendFault::Io(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.left, Left::Done | Left::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Left::Length(n) => SizeHint::with_exact(n),
            Left::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
