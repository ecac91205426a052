//! Request bodies: as they come off the client connection (`WireBody`, framed by
//! `Content-Length` or chunked, reading the connection's `Reader`, which it hands back
//! when done), capped and timed (`ClientBody`), and as sent to a backend
//! (`UpstreamBody`: streamed, or buffered for a retry). Nothing here holds more than
//! the piece in hand, except a buffered body by design.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{LengthLimitError, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::chunked::{Decoder, Step};
use super::reader::Reader;
use crate::http::error::ClientBodyError;

/// Boxed error of the body types (what hyper and the upstream client take).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a `WireBody` sends back to its connection: the reader, and whether the body
/// was read to its end (if not, the connection cannot carry another request).
pub type Returned = (Reader, bool);

/// How a wire body is delimited.
#[derive(Debug)]
enum Delimit {
    /// This many bytes are still to come.
    Length(u64),
    /// Chunked, decoded as it comes.
    Chunked(Decoder),
}

/// A request body read off a client connection by HTTP/1.1 framing.
#[derive(Debug)]
pub struct WireBody {
    /// The connection's read side, while the body is being read.
    reader: Option<Reader>,
    /// Where the body ends.
    delimit: Delimit,
    /// Takes the reader back to the connection, once.
    home: Option<oneshot::Sender<Returned>>,
    /// Tells the connection to send `100 Continue` on the first read (RFC 9110
    /// §10.1.1: only once the body is actually wanted).
    wants_continue: Option<oneshot::Sender<()>>,
    /// Set at the end of the body.
    finished: bool,
}

impl WireBody {
    /// A body of `length` bytes (`None`: chunked) read from `reader`.
    pub fn new(
        reader: Reader,
        length: Option<u64>,
        max_trailer_bytes: usize,
        home: oneshot::Sender<Returned>,
        wants_continue: Option<oneshot::Sender<()>>,
    ) -> WireBody {
        let delimit = match length {
            Some(n) => Delimit::Length(n),
            None => Delimit::Chunked(Decoder::new(max_trailer_bytes)),
        };
        WireBody {
            reader: Some(reader),
            delimit,
            home: Some(home),
            wants_continue,
            finished: false,
        }
    }

    fn finish(&mut self) {
        self.finished = true;
        self.send_home();
    }

    fn send_home(&mut self) {
        if let (Some(reader), Some(home)) = (self.reader.take(), self.home.take()) {
            let _ = home.send((reader, self.finished));
        }
    }

    fn broken(&mut self, why: impl Into<String>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // The framing is lost: the connection closes after its answer.
        self.send_home();
        Poll::Ready(Some(Err(Box::new(ClientBodyError::Broken(why.into())))))
    }
}

impl Drop for WireBody {
    fn drop(&mut self) {
        // An unfinished body still returns the reader, for a lingering close.
        self.send_home();
    }
}

impl Body for WireBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(tell) = this.wants_continue.take() {
            let _ = tell.send(());
        }
        loop {
            let Some(reader) = this.reader.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.delimit {
                Delimit::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Delimit::Length(left) if !reader.buf.is_empty() => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(reader.buf.len());
                    *left -= n as u64;
                    let data = reader.buf.split_to(n).freeze();
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Delimit::Length(_) => {}
                Delimit::Chunked(decoder) => match decoder.decode(&mut reader.buf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::Trailers(fields)) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(fields))));
                    }
                    Ok(Step::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::More) => {}
                    Err(e) => return this.broken(e.to_string()),
                },
            }
            match reader.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    return this.broken("connection closed before the body ended")
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.broken(e.to_string()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.delimit {
            Delimit::Length(n) => *n == 0,
            Delimit::Chunked(d) => d.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.delimit {
            Delimit::Length(n) => SizeHint::with_exact(*n),
            Delimit::Chunked(_) => SizeHint::default(),
        }
    }
}

/// A client's request body, whichever connection layer read it.
#[derive(Debug)]
pub enum Inbound {
    /// No body.
    Empty,
    /// An HTTP/1 body read by relevo's connection layer.
    Wire(WireBody),
    /// A body read by hyper (HTTP/2).
    Hyper(Incoming),
}

impl From<Incoming> for Inbound {
    fn from(body: Incoming) -> Inbound {
        Inbound::Hyper(body)
    }
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Inbound::Empty => Poll::Ready(None),
            Inbound::Wire(b) => Pin::new(b).poll_frame(cx),
            Inbound::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inbound::Empty => true,
            Inbound::Wire(b) => b.is_end_stream(),
            Inbound::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inbound::Empty => SizeHint::with_exact(0),
            Inbound::Wire(b) => b.size_hint(),
            Inbound::Hyper(b) => b.size_hint(),
        }
    }
}

/// The client's request body: capped at the entry's limit, and failing when the client
/// pauses longer than `idle`, so a slow upload cannot hold a backend connection.
#[derive(Debug)]
pub struct ClientBody {
    /// The body under the size cap.
    inner: Limited<Inbound>,
    /// The cap, for the 413 it causes (`u64::MAX`: none).
    limit: u64,
    /// Longest pause between two frames.
    idle: Duration,
    /// Armed while waiting for the next piece; created on the first wait only.
    timer: Option<Pin<Box<Sleep>>>,
    /// Where the bytes read are counted (the host entry's `bytes_in`).
    counted: Arc<AtomicU64>,
}

impl ClientBody {
    /// Wraps the client's body with a size cap (`None`: none) and an idle timeout.
    pub fn new(
        body: Inbound,
        limit: Option<u64>,
        idle: Duration,
        counted: Arc<AtomicU64>,
    ) -> ClientBody {
        let cap = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        ClientBody {
            inner: Limited::new(body, cap),
            limit: limit.unwrap_or(u64::MAX),
            idle,
            timer: None,
            counted,
        }
    }

    /// Reads the whole body into one buffer (for a body small enough to replay).
    /// Copying matters: each frame of a slow upload is a slice of its own read buffer,
    /// and keeping the slices would keep those buffers (measured: 100 KiB per
    /// slow-body client instead of the body's size).
    pub async fn read_all(mut self) -> Result<Bytes, ClientBodyError> {
        use http_body_util::BodyExt;
        // Grown as data arrives: a declared length is only a promise.
        let mut buf = bytes::BytesMut::with_capacity(self.size_hint().lower().min(4096) as usize);
        while let Some(frame) = self.frame().await {
            let frame = frame.map_err(|e| match e.downcast::<ClientBodyError>() {
                Ok(e) => *e,
                Err(e) => ClientBodyError::Broken(e.to_string()),
            })?;
            if let Some(data) = frame.data_ref() {
                buf.extend_from_slice(data);
            }
        }
        Ok(buf.freeze())
    }

    fn classify(&self, e: BoxError) -> ClientBodyError {
        if e.is::<LengthLimitError>() {
            return ClientBodyError::TooLarge(self.limit);
        }
        match e.downcast::<ClientBodyError>() {
            Ok(e) => *e,
            Err(e) => ClientBodyError::Broken(e.to_string()),
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // A timeout too long to add leaves the timer where it was: far off.
                let deadline = tokio::time::Instant::now().checked_add(this.idle);
                if let (Some(timer), Some(deadline)) = (this.timer.as_mut(), deadline) {
                    timer.as_mut().reset(deadline);
                }
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(|f| f.data_ref())) {
                    let n = data.map_or(0, |d| d.len() as u64);
                    this.counted.fetch_add(n, Ordering::Relaxed);
                }
                Poll::Ready(frame.map(|f| f.map_err(|e| this.classify(e).into())))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(Box::new(ClientBodyError::Stalled(idle)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Body of a request sent to a backend.
#[derive(Debug)]
pub enum UpstreamBody {
    /// The client's body, streamed as it arrives.
    Streaming(ClientBody),
    /// A small body read in full first, so that it can be sent again on a retry.
    Buffered(Option<Bytes>),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            UpstreamBody::Streaming(body) => Pin::new(body).poll_frame(cx),
            UpstreamBody::Buffered(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Streaming(body) => body.is_end_stream(),
            UpstreamBody::Buffered(bytes) => bytes.as_ref().is_none_or(|b| b.is_empty()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Streaming(body) => body.size_hint(),
            UpstreamBody::Buffered(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
