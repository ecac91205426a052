//! Request bodies: the client's body as it arrives (capped at the entry's limit, with
//! an idle timeout) and the body sent to a backend (streamed, or buffered for a retry).
//! Nothing here holds more than the frame in hand, except a buffered body by design.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{LengthLimitError, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

/// Why a client's request body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// More bytes than the entry's limit (413).
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// No data for longer than `timeouts.client_body` (408).
    #[error("no request body data for {0:?}")]
    Stalled(Duration),
    /// Malformed framing or an early close (400).
    #[error("{0}")]
    Broken(String),
}

/// The client's request body: capped at the entry's limit, and failing when the client
/// pauses longer than `idle`, so a slow upload cannot hold a backend connection.
#[derive(Debug)]
pub struct ClientBody {
    /// hyper's body under the size cap.
    inner: Limited<Incoming>,
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
        body: Incoming,
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

    fn classify(&self, e: Box<dyn std::error::Error + Send + Sync>) -> ClientBodyError {
        if e.is::<LengthLimitError>() {
            ClientBodyError::TooLarge(self.limit)
        } else {
            ClientBodyError::Broken(e.to_string())
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(timer) = this.timer.as_mut() {
                    timer
                        .as_mut()
                        .reset(tokio::time::Instant::now() + this.idle);
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
    type Error = Box<dyn std::error::Error + Send + Sync>;

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
