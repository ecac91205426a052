//! The body of a response sent to a client: a backend's body streamed frame by frame,
//! or a page of relevo's own. When it is done (sent to the end, failed, or dropped
//! because the client left) it settles the request: the backend's in-flight count
//! drops and the session is finished (the upstream connection has gone back to its
//! pool already, when its body's last read was clean: `upstream::BackendBody`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use hyper::body::{Body, Frame, SizeHint};

use super::finish;
use super::session::Session;
use crate::downstream::response::Relayed;
use crate::http::passed::PassedFields;
use crate::http::BackendFault;
use crate::upstream::{BackendBody, InFlight};

/// A response as the proxy's layers hand it on: boxed where it is made, so that each
/// layer's return moves a pointer instead of the response's 400 bytes (about twenty
/// such moves per request, measured in BENCHMARKS.md, session 8).
pub type Reply = Box<Response<ProxyBody>>;

/// Body of a response sent to a client.
#[derive(Debug)]
pub struct ProxyBody {
    /// Where the bytes come from.
    inner: Inner,
    /// Keeps the request in its backend's in-flight count until the body ends.
    in_flight: Option<InFlight>,
    /// The request's context, finished when the body is.
    session: Option<Box<Session>>,
    /// Set when the upstream body failed: the request did not end cleanly.
    failed: bool,
    /// Set when the body reported its end (`None`): a chunked body never says
    /// `is_end_stream` (its length is unknown), so its end is only seen here.
    ended: bool,
    /// The backend's end-to-end fields, kept as they came instead of in the
    /// response's field map: the client connection copies them into its head.
    passed: Option<PassedFields>,
}

#[derive(Debug)]
enum Inner {
    Upstream(BackendBody),
    Page(Option<Bytes>),
}

impl ProxyBody {
    /// A backend's body, streamed as it arrives from `conn`.
    /// `passed`: the head's fields, when the parser kept them as they came.
    pub fn upstream(
        body: BackendBody,
        in_flight: InFlight,
        passed: Option<PassedFields>,
    ) -> ProxyBody {
        ProxyBody {
            inner: Inner::Upstream(body),
            in_flight: Some(in_flight),
            session: None,
            failed: false,
            ended: false,
            passed,
        }
    }

    /// A body held in memory (error pages, answers relevo gives itself); empty bytes
    /// make an empty body (101 Switching Protocols, CONNECT's 200).
    pub fn page(bytes: Bytes) -> ProxyBody {
        ProxyBody {
            inner: Inner::Page((!bytes.is_empty()).then_some(bytes)),
            in_flight: None,
            session: None,
            failed: false,
            ended: false,
            passed: None,
        }
    }

    /// An empty body.
    pub fn empty() -> ProxyBody {
        ProxyBody::page(Bytes::new())
    }

    /// Attaches the session to finish when the body ends.
    pub fn set_session(&mut self, session: Box<Session>) {
        self.session = Some(session);
    }
}

impl Relayed for ProxyBody {
    fn take_passed(&mut self) -> Option<PassedFields> {
        self.passed.take()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BackendFault;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BackendFault>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
            Inner::Page(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(session), Some(data)) = (this.session.as_mut(), frame.data_ref()) {
                    session.bytes_out += data.len() as u64;
                }
                // Trailers come last (RFC 9112 §7.1.2): the writer may not poll again
                // after them.
                if frame.is_trailers() {
                    this.ended = true;
                }
            }
            Poll::Ready(Some(Err(_))) => this.failed = true,
            Poll::Ready(None) => this.ended = true,
            Poll::Pending => {}
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
        // A writer may stop polling once `is_end_stream` is true (a body of known
        // length), so the end is either that or a final `None` frame (chunked,
        // close-delimited).
        let complete = !self.failed && (self.ended || self.is_end_stream());
        drop(self.in_flight.take());
        if let Some(session) = self.session.take() {
            finish::finish(session, complete);
        }
    }
}
