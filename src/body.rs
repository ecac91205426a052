//! Body types on both hops. Bodies stream frame by frame: nothing here buffers more
//! than the frame in hand, so memory per exchange is bounded by hyper's buffers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Limited;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Sleep;
use tracing::info;

use crate::pool::PooledConn;

/// The client stopped sending its body for longer than `timeouts.client_body`.
#[derive(Debug, thiserror::Error)]
#[error("no request body data for {0:?}")]
pub struct BodyTimeout(pub Duration);

/// The client's request body: capped at the site's limit, and failing when the client
/// pauses longer than `idle`, so a slow upload cannot hold a backend connection.
#[derive(Debug)]
pub struct ClientBody {
    inner: Limited<Incoming>,
    idle: Duration,
    /// Armed while waiting for the next piece; created on the first wait only.
    timer: Option<Pin<Box<Sleep>>>,
}

impl ClientBody {
    /// Wraps the client's body with a size cap and an idle timeout.
    pub fn new(body: Incoming, cap: usize, idle: Duration) -> ClientBody {
        ClientBody {
            inner: Limited::new(body, cap),
            idle,
            timer: None,
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
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(idle))))),
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

/// Body of a response sent to a client: a backend's streamed body or a page of ours.
/// When it is done it returns the upstream connection to the pool and writes the
/// access-log line.
#[derive(Debug)]
pub struct ProxyBody {
    inner: Inner,
    /// The connection the body streams from; back to the pool after a clean end.
    conn: Option<PooledConn>,
    /// The access-log line, written when the body is finished or dropped.
    log: Option<Box<AccessLog>>,
    /// Set when the upstream body failed: that connection must not be reused.
    failed: bool,
}

#[derive(Debug)]
enum Inner {
    Upstream(Incoming),
    Page(Option<Bytes>),
}

impl ProxyBody {
    /// A backend's body, streamed as it arrives.
    pub fn upstream(body: Incoming, conn: PooledConn) -> ProxyBody {
        ProxyBody {
            inner: Inner::Upstream(body),
            conn: Some(conn),
            log: None,
            failed: false,
        }
    }

    /// An empty body (101 Switching Protocols, CONNECT's 200).
    pub fn empty() -> ProxyBody {
        ProxyBody {
            inner: Inner::Page(None),
            conn: None,
            log: None,
            failed: false,
        }
    }

    /// A body held in memory (error pages, demo backends).
    pub fn page(bytes: impl Into<Bytes>) -> ProxyBody {
        ProxyBody {
            inner: Inner::Page(Some(bytes.into())),
            conn: None,
            log: None,
            failed: false,
        }
    }

    /// Attaches the access-log line to write when the body ends.
    pub fn with_log(mut self, log: Option<Box<AccessLog>>) -> ProxyBody {
        self.log = log;
        self
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
            Inner::Page(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(log), Some(data)) = (this.log.as_mut(), frame.data_ref()) {
                    log.bytes += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => this.failed = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(body) => body.is_end_stream(),
            Inner::Page(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(body) => body.size_hint(),
            Inner::Page(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Page(None) => SizeHint::with_exact(0),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper may stop polling once `is_end_stream` is true, so the end of a body is
        // judged here rather than on a final `None` frame.
        let complete = !self.failed && self.is_end_stream();
        if let Some(conn) = self.conn.take() {
            conn.backend()
                .stats
                .in_flight
                .fetch_sub(1, Ordering::Relaxed);
            if complete {
                conn.release();
            } else {
                tracing::debug!(backend = %conn.backend().addr, failed = self.failed, "upstream connection not reused: body unfinished");
            }
        }
        if let Some(log) = self.log.take() {
            log.write(complete);
        }
    }
}

/// What the access log says about one request.
#[derive(Debug)]
pub struct AccessLog {
    /// Client address.
    pub client: SocketAddr,
    /// Method as received.
    pub method: http::Method,
    /// Target as received (origin-form path or absolute URI).
    pub target: String,
    /// Host-table key that served it, if any.
    pub host: Option<String>,
    /// Backend that answered, if any.
    pub backend: Option<SocketAddr>,
    /// Status sent to the client.
    pub status: StatusCode,
    /// Response body bytes sent.
    pub bytes: u64,
    /// When the request head was received.
    pub start: Instant,
}

impl AccessLog {
    fn write(&self, complete: bool) {
        info!(
            target: "relevo::access",
            client = %self.client,
            host = self.host.as_deref().unwrap_or("-"),
            method = %self.method,
            target = %self.target,
            backend = %self.backend.map_or_else(|| "-".to_string(), |b| b.to_string()),
            status = self.status.as_u16(),
            bytes = self.bytes,
            ms = format_args!("{:.3}", self.start.elapsed().as_secs_f64() * 1000.0),
            complete,
        );
    }
}
