//! One request on a backend connection, driven by the client connection's own task:
//! the head (with a buffered body) in one write, a streamed body chunk by chunk while
//! watching for an early answer, then the response head. Informational responses
//! (RFC 9110 §15.2) other than 100 and 101 go to the client as they come (`Interim`),
//! `100 Continue` is dropped (relevo answers the client's `Expect` itself).

use std::future::poll_fn;
use std::io::{self, IoSlice};

use bytes::BytesMut;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::io::AsyncWrite;

use super::conn::{poll_fill, Conn, Readable};
use super::request_head::{self, forwardable_trailer, Framing};
use super::response_head::{self, ResponseHead};
use crate::downstream::chunked;
use crate::downstream::interim::Interim;
use crate::downstream::request_body::UpstreamBody;
use crate::downstream::writer::{write_all_vectored, HeadBuf};
use crate::http::error::ClientBodyError;
use crate::http::rewrite::Appended;
use crate::http::{rewrite, BackendFault};

/// Why an exchange failed, with what the retry logic must know.
#[derive(Debug)]
pub enum SendError {
    /// Not a byte of the request left: it may go again as it is.
    Unsent(BackendFault),
    /// The connection failed or closed before any byte of a response: on a reused
    /// connection, the backend's idle close racing the request (RFC 9112 §9.3.1).
    BeforeResponse(BackendFault),
    /// The backend's response was broken.
    Backend(BackendFault),
    /// The client's body failed on its way through (413, 408, 400).
    Client(ClientBodyError),
}

/// A response head, and whether the connection may carry another request after its
/// body.
#[derive(Debug)]
pub struct Answer {
    /// The head.
    pub head: ResponseHead,
    /// False when the backend closes, or the request body was not all sent.
    pub reusable: bool,
}

/// Sends `req` on `conn` and reads the response head. The request is lent, not
/// given: its head is only read, and a buffered body only cloned (a reference count),
/// so a retry sends the same request again without a copy of its fields. A streamed
/// body is read as it is sent.
/// `appended`: the fields the rewrite adds after the request's own.
pub async fn exchange(
    conn: &mut Conn,
    req: &mut Request<UpstreamBody>,
    appended: &Appended,
    interim: Option<&Interim>,
) -> Result<Answer, SendError> {
    let framing = request_head::framing(
        req.headers(),
        req.body().is_end_stream(),
        req.body().size_hint().exact(),
    );
    let mut head = HeadBuf::new();
    request_head::encode(req, appended, framing, &mut head);
    let buffered = match req.body() {
        UpstreamBody::Buffered(bytes) => Some(bytes.clone().unwrap_or_default()),
        UpstreamBody::Streaming(_) => None,
    };
    let first = buffered.as_deref().unwrap_or_default();
    let mut slices = [IoSlice::new(&head), IoSlice::new(first)];
    match write_all_vectored(&mut conn.stream, &mut slices).await {
        Ok(()) => {}
        Err((e, false)) => return Err(SendError::Unsent(e.into())),
        Err((e, true)) => return Err(SendError::BeforeResponse(e.into())),
    }
    drop(head);
    let method = req.method().clone();
    let body = req.body_mut();
    let max = conn.max_head();
    let first_read = conn.first_read();
    // A write the backend refused while the body streamed: it may have said why.
    let mut refused = None;
    if buffered.is_none() && framing != Framing::None {
        let (mut rd, mut wr) = conn.stream.split();
        let buf = &mut conn.buf;
        let sent = tokio::select! {
            biased;
            // A backend may answer before it has read the body (a 413, a redirect): the
            // answer is relayed and the rest of the body is not sent (nor the connection
            // reused).
            early = read_head(&mut rd, buf, max, first_read, &method, interim) => {
                return early.map(|head| Answer { head, reusable: false });
            }
            sent = send_body(&mut wr, body, framing) => sent,
        };
        match sent {
            Ok(()) => {}
            Err(Sending::Client(e)) => return Err(SendError::Client(e)),
            Err(Sending::Write(e)) => refused = Some(e),
        }
    }
    let read = read_head(
        &mut conn.stream,
        &mut conn.buf,
        max,
        first_read,
        &method,
        interim,
    )
    .await;
    match (read, refused) {
        (Ok(head), None) => Ok(Answer {
            reusable: head.keep_alive,
            head,
        }),
        // The rest of the body never went out: the connection is not reused.
        (Ok(head), Some(_)) => Ok(Answer {
            head,
            reusable: false,
        }),
        (Err(_), Some(e)) => Err(SendError::BeforeResponse(e.into())),
        (Err(e), None) => Err(e),
    }
}

/// Reads the response head; informational ones other than 101 go to `interim`.
async fn read_head<R: Readable>(
    io: &mut R,
    buf: &mut BytesMut,
    max: usize,
    first_read: usize,
    method: &Method,
    interim: Option<&Interim>,
) -> Result<ResponseHead, SendError> {
    let mut answered = false;
    loop {
        if !buf.is_empty() {
            answered = true;
            match response_head::parse(buf, max, method).map_err(SendError::Backend)? {
                Some(head)
                    if head.parts.status.is_informational()
                        && head.parts.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    if let Some(interim) =
                        interim.filter(|_| head.parts.status != StatusCode::CONTINUE)
                    {
                        let mut parts = head.parts;
                        rewrite::strip_hop_by_hop(&mut parts.headers);
                        interim.send(parts);
                    }
                    continue;
                }
                Some(head) => return Ok(head),
                None => {}
            }
        }
        let failed = |fault| {
            if answered {
                SendError::Backend(fault)
            } else {
                SendError::BeforeResponse(fault)
            }
        };
        match poll_fn(|cx| poll_fill(io, buf, first_read, max, cx)).await {
            Ok(0) => return Err(failed(BackendFault::Closed)),
            Ok(_) => {}
            Err(e) => return Err(failed(BackendFault::Io(e))),
        }
    }
}

/// Why a streamed body stopped.
enum Sending {
    /// The client's side failed.
    Client(ClientBodyError),
    /// The backend's socket did.
    Write(io::Error),
}

/// Streams the body, framed as `framing` says.
async fn send_body<W: AsyncWrite + Unpin>(
    io: &mut W,
    body: &mut UpstreamBody,
    framing: Framing,
) -> Result<(), Sending> {
    let write = |e: (io::Error, bool)| Sending::Write(e.0);
    let mut sent = 0u64;
    let mut line = Vec::with_capacity(24);
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Sending::Client(ClientBodyError::of(e)))?;
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                break;
            }
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        match framing {
            Framing::Chunked => {
                line.clear();
                chunked::size_line(data.len(), &mut line);
                let mut slices = [
                    IoSlice::new(&line),
                    IoSlice::new(&data),
                    IoSlice::new(b"\r\n"),
                ];
                write_all_vectored(io, &mut slices).await.map_err(write)?;
            }
            Framing::Length(n) if sent > n => {
                return Err(Sending::Client(ClientBodyError::Broken(
                    "request body longer than its length".into(),
                )))
            }
            _ => write_all_vectored(io, &mut [IoSlice::new(&data)])
                .await
                .map_err(write)?,
        }
    }
    match framing {
        Framing::Chunked => {
            if let Some(t) = trailers.as_mut() {
                let dropped: Vec<_> = t
                    .keys()
                    .filter(|n| !forwardable_trailer(n))
                    .cloned()
                    .collect();
                for name in dropped {
                    t.remove(name);
                }
            }
            line.clear();
            chunked::last_chunk(trailers.as_ref(), &mut line);
            write_all_vectored(io, &mut [IoSlice::new(&line)])
                .await
                .map_err(write)
        }
        Framing::Length(n) if sent < n => Err(Sending::Client(ClientBodyError::Broken(format!(
            "request body ended after {sent} of {n} bytes"
        )))),
        _ => Ok(()),
    }
}
