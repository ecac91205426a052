//! One client connection, from its first byte to its close, in one task: read a head
//! (`head`), hand the request to the service, write the answer (`response`) and its
//! body, and again while the connection may stay open. The request body is read by
//! whoever sends it on (`request_body::WireBody` takes the `Reader` and gives it
//! back), so a body streams to the backend while its answer streams back. `Drain`
//! says what a graceful stop does with a connection waiting for its next request.

use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use tokio::io::AsyncWrite;
use tokio::sync::{oneshot, watch};
use tracing::debug;

use super::chunked;
use super::client_stream::linger_halves;
use super::head::{self, Framing as RequestFraming, Head, HeadError};
use super::interim::Interim;
use super::listener::Accepted;
use super::reader::{ReadHalf, Reader};
use super::request_body::{Inbound, Returned, WireBody};
use super::response::{self, Asked, Framing, Relayed};
use super::upgrade::Tunnel;
use super::writer::{HeadBuf, Writer};

/// What a client connection is held to (from `timeouts` and `limits`).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Reading a request head, and the keep-alive idle time.
    pub header_timeout: Duration,
    /// Longest a response write may stay blocked.
    pub send_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Most header fields in a request.
    pub max_headers: usize,
}

/// What a graceful stop does with a connection that is waiting for its next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Closes it at once: nobody takes over (SIGTERM).
    CloseIdle,
    /// Keeps it for its next request, answered with `Connection: close` (the service
    /// marks every answer after the stop as the connection's last): after a handover
    /// to a new binary, which serves the client's next connection. Closing it instead
    /// could cross a request the client is sending, which would fail.
    AnswerNext,
}

/// What answers a connection's requests: any function from a request to the future
/// of its response (`server::service` builds one per connection).
pub trait Answers {
    /// The response body.
    type Body: Body<Data = Bytes, Error: std::fmt::Display> + Relayed + Send + Unpin + 'static;
    /// The future of a response.
    /// (The response is boxed: each layer that returns it moves a pointer.)
    type Answer: Future<Output = Box<Response<Self::Body>>> + Send + 'static;
    /// The answer to `req`; the backend's interim responses go to `interim`.
    /// (Boxed: every async layer below keeps its arguments for its whole life, and
    /// copies them once more, so a request carried by value would take its 344 bytes
    /// several times over in each request's future.)
    fn answer(&mut self, req: Box<Request<Inbound>>, interim: Option<Interim>) -> Self::Answer;
}

impl<F, Fut, B> Answers for F
where
    F: FnMut(Box<Request<Inbound>>, Option<Interim>) -> Fut,
    Fut: Future<Output = Box<Response<B>>> + Send + 'static,
    B: Body<Data = Bytes, Error: std::fmt::Display> + Relayed + Send + Unpin + 'static,
{
    type Body = B;
    type Answer = Fut;
    fn answer(&mut self, req: Box<Request<Inbound>>, interim: Option<Interim>) -> Fut {
        self(req, interim)
    }
}

/// A client connection's stream cut into the halves this layer works with: the read
/// half travels with request bodies, the write half stays with the connection.
pub trait Halves: Send + 'static {
    /// The write half.
    type Write: AsyncWrite + Send + Unpin + 'static;
    /// Splits the stream.
    fn halves(self) -> (ReadHalf, Self::Write);
}

impl Halves for tokio::net::TcpStream {
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn halves(self) -> (ReadHalf, Self::Write) {
        // Halves of a TCP socket need no lock between them.
        let (read, write) = self.into_split();
        (Box::new(read), write)
    }
}

/// Serves one accepted connection (TCP, or TLS on TCP) with `service` until it
/// closes; `stop` turning to `Some(CloseIdle)` lets the request in flight finish, then
/// closes. Under `Some(AnswerNext)` the connection ends as usual, after the service's
/// last answer.
///
/// This future is all an idle connection holds, so it is one `async` block built by a
/// plain function: what can be set up before the first await is, and the block
/// captures each value once (an `async fn` keeps every argument twice, as itself and
/// as the local it is moved into, and a nested one adds its own copies).
pub fn serve<H: Halves, S: Answers>(
    accepted: Accepted<H>,
    settings: Settings,
    mut service: S,
    stop: watch::Receiver<Option<Drain>>,
) -> impl Future<Output = ()> {
    let Accepted { stream, peer, slot } = accepted;
    let (read, write) = stream.halves();
    let limits = head::Limits {
        max_bytes: settings.max_header_bytes,
        max_headers: settings.max_headers,
    };
    let mut reader = Reader::new(read, BytesMut::new());
    let mut writer = Writer::new(write, settings.send_timeout);
    let idle_stop = stop.clone();
    async move {
        // One wait for a stop that closes idle connections, registered with the stop
        // once for the connection's life: a wait made anew for every head would join
        // and leave the stop's list of waiters (two locks) at every request. It is
        // polled only between requests, and not again once it has fired (the
        // connection then closes).
        let mut closing = std::pin::pin!(close_idle(idle_stop));
        // One timer for the connection's life, moved later at every head: moving a
        // registered timer later is one store (the runtime finds the new deadline
        // when the old one comes), where a timer per request is registered with the
        // runtime and taken out again.
        let mut head_timer = std::pin::pin!(tokio::time::sleep(settings.header_timeout));
        let ending = loop {
            reader.release_if_empty();
            // A timeout too long to add stays as `sleep` made it: far off.
            if let Some(deadline) = tokio::time::Instant::now().checked_add(settings.header_timeout)
            {
                head_timer.as_mut().reset(deadline);
            }
            let next = tokio::select! {
                // The head first, as `timeout` polls it: no random draw per poll.
                biased;
                next = next_head(&mut reader, limits, closing.as_mut()) => Some(next),
                () = &mut head_timer => None,
            };
            let head = match next {
                Some(Next::Head(head)) => head,
                // Silent clients, slow heads, stops and broken sockets: closed without
                // an answer (a half-sent head gets none either, as with hyper).
                None | Some(Next::Closed) => break None,
                Some(Next::Refused(e)) => {
                    debug!(client = %peer, "refused: {e}");
                    // Boxed, like an exchange: rare, and large.
                    let _ = Box::pin(refuse(&mut writer, e)).await;
                    break Some(reader);
                }
            };
            // Boxed: an exchange's state (the service's future, the response being
            // written) is large; an idle connection keeps only the wait above.
            let served = Box::pin(exchange(
                head,
                reader,
                &mut writer,
                peer,
                settings,
                &mut service,
                &stop,
            ))
            .await;
            match served {
                Served::Again(back) => reader = back,
                Served::Close(back) => break Some(back),
                Served::Drop => break None,
            }
        };
        // The connection no longer counts against the cap while it lingers.
        drop(slot);
        if let Some(reader) = ending {
            linger_halves(reader, writer.io).await;
        }
    }
}

/// How an exchange left the connection.
enum Served {
    /// Ready for the next request.
    Again(Reader),
    /// To be closed gracefully.
    Close(Reader),
    /// To be dropped (the client left, a write failed, a tunnel ended).
    Drop,
}

/// One request on the connection: the service's answer, then the response written.
/// (A function returning a block, as `serve` is: the head and the reader are taken
/// apart before the first await instead of being kept beside their parts.)
fn exchange<'a, W, S: Answers>(
    head: Head,
    reader: Reader,
    writer: &'a mut Writer<W>,
    peer: SocketAddr,
    settings: Settings,
    service: &'a mut S,
    stop: &'a watch::Receiver<Option<Drain>>,
) -> impl Future<Output = Served> + 'a
where
    W: AsyncWrite + Send + Unpin,
{
    let Exchange {
        request,
        mut home,
        asked_continue,
        mut reader_at_home,
        method,
        version,
        mut keep_alive,
        accepts_trailers,
    } = Exchange::new(head, reader, settings);
    // RFC 9110 §15.2: interim responses go to HTTP/1.1 clients only.
    let interim = (version == http::Version::HTTP_11).then(Interim::default);
    async move {
        let waited = Waiting {
            writer: &mut *writer,
            asked_continue,
            reader_at_home: &mut reader_at_home,
            max_header_bytes: settings.max_header_bytes,
            peer,
        };
        let Some(resp) = wait_for(service, request, interim.as_ref(), waited).await else {
            return Served::Drop;
        };
        let interim = interim.map(|i| i.drain()).unwrap_or_default();
        let mut resp = resp;
        // A body already given up (the backend answered before reading it all, or relevo
        // refused the request): the connection closes after this answer, and says so
        // in its head (RFC 9112 §9.6).
        let mut returned = None;
        if let Some(Ok((reader, finished))) = home.as_mut().map(|rx| rx.try_recv()) {
            home = None;
            keep_alive &= finished;
            returned = Some((reader, finished));
        }
        let asked = Asked {
            method: &method,
            version,
            accepts_trailers,
            keep_alive,
        };
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS
            || (method == Method::CONNECT && resp.status().is_success());
        let tunnel = if switching {
            resp.extensions_mut().remove::<Tunnel>()
        } else {
            None
        };
        let mut head_buf = HeadBuf::new();
        // Interim heads that came with the final one go out first, in the same write.
        for head in &interim {
            response::write_interim(head, &mut head_buf);
        }
        let passed = resp.body_mut().take_passed();
        let written = response::write_head(&resp, passed.as_ref(), asked, &mut head_buf);
        drop(passed);
        if let Err(e) = write_body(writer, head_buf, (*resp).into_body(), written.framing).await {
            debug!(client = %peer, "response not completed: {e}");
            return Served::Drop;
        }
        if switching {
            match (tunnel, reader_at_home) {
                // Boxed: a tunnel's state is large and rare, and would otherwise be part
                // of every connection's future.
                (Some(tunnel), Some(reader)) => Box::pin(tunnel.run(reader, &mut writer.io)).await,
                _ => debug!(client = %peer, "switched protocols without a tunnel"),
            }
            return Served::Drop;
        }

        // The reader comes back from the body (read to its end, or not).
        let back = match (reader_at_home.take(), returned) {
            (Some(reader), _) | (None, Some((reader, true))) => reader,
            (None, Some((reader, false))) => return Served::Close(reader),
            (None, None) => match home.take() {
                Some(rx) => match tokio::time::timeout(settings.header_timeout, rx).await {
                    Ok(Ok((reader, true))) => reader,
                    // The body was left unread: what follows is not a request.
                    Ok(Ok((reader, false))) => return Served::Close(reader),
                    _ => return Served::Drop,
                },
                None => return Served::Drop,
            },
        };
        if !written.keep_alive || matches!(*stop.borrow(), Some(Drain::CloseIdle)) {
            return Served::Close(back);
        }
        Served::Again(back)
    }
}

/// What the wait for an answer works with besides the answer.
struct Waiting<'a, W> {
    /// Where a `100 Continue` or an interim response is written.
    writer: &'a mut Writer<W>,
    /// Fires when a `100 Continue` is owed.
    asked_continue: Option<oneshot::Receiver<()>>,
    /// The reader, when the request has no body to take it: watched for a close.
    reader_at_home: &'a mut Option<Reader>,
    /// How much pipelined input may be kept meanwhile.
    max_header_bytes: usize,
    /// For the log.
    peer: SocketAddr,
}

/// The service's answer, meanwhile sending `100 Continue` when the body is first read,
/// relaying interim responses, and watching an otherwise quiet client for a close
/// (which cancels the request: `None`). A function of its own, so that the answer's
/// future (the largest part of a request's state) is not kept beside the response
/// being written: the exchange's future holds one or the other. (A block, not an
/// `async fn`, which would keep its arguments twice.)
#[allow(clippy::manual_async_fn)] // an `async fn` keeps its arguments twice
fn wait_for<'a, W, S: Answers>(
    service: &'a mut S,
    request: Box<Request<Inbound>>,
    interim: Option<&'a Interim>,
    mut w: Waiting<'a, W>,
) -> impl Future<Output = Option<Box<Response<S::Body>>>> + 'a
where
    W: AsyncWrite + Unpin,
{
    async move {
        // Pinned where it is made: a future moved into a pinned local is kept twice.
        let mut answer = std::pin::pin!(service.answer(request, interim.cloned()));
        loop {
            // The writes happen after the `select!`, not in its arms: what an arm
            // holds across an await (the select's output, the answer's slot among
            // it) would be part of every request's state.
            // `Some`: an interim head to relay; `None`: the `100 Continue` owed.
            let interim_head = tokio::select! {
                // In this order: the answer first, no random draw per poll.
                biased;
                resp = &mut answer => return Some(resp),
                head = next_interim(interim) => Some(head),
                wanted = continue_wanted(&mut w.asked_continue) => {
                    if !wanted {
                        continue;
                    }
                    None
                }
                filled = fill_some(w.reader_at_home, w.max_header_bytes) => {
                    if !matches!(filled, Ok(n) if n > 0) {
                        debug!(client = %w.peer, "client closed with its request in flight");
                        return None;
                    }
                    continue;
                }
            };
            let bytes = interim_bytes(interim_head);
            // Boxed: rare, and a write's state would otherwise be in every request's.
            Box::pin(w.writer.write_all(&mut [IoSlice::new(&bytes)]))
                .await
                .ok()?;
        }
    }
}

/// An interim head as written (`None`: the `100 Continue` relevo owes). The buffer is
/// taken only once there is something to write: while the answer is awaited, the
/// thread's head buffer stays free for the request's and the response's heads. (A
/// function, so that the head is gone before the write is awaited.)
fn interim_bytes(head: Option<http::response::Parts>) -> HeadBuf {
    let mut bytes = HeadBuf::new();
    match head {
        Some(head) => response::write_interim(&head, &mut bytes),
        None => bytes.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n"),
    }
    bytes
}

/// What waiting for a head came to.
#[allow(clippy::large_enum_variant)] // one per request, never stored
enum Next {
    /// A whole head.
    Head(Head),
    /// The client left, or a stop closed the idle connection.
    Closed,
    /// A head relevo refuses, with the status to say so.
    Refused(HeadError),
}

/// Reads until a whole head is in the buffer. Between requests (nothing buffered) a
/// stop that closes idle connections ends the wait.
async fn next_head<C: Future<Output = ()>>(
    reader: &mut Reader,
    limits: head::Limits,
    mut closing: Pin<&mut C>,
) -> Next {
    loop {
        if !reader.buf.is_empty() {
            match head::parse(&mut reader.buf, limits) {
                Ok(Some(head)) => return Next::Head(head),
                Ok(None) => {}
                Err(e) => return Next::Refused(e),
            }
        }
        let filled = if reader.buf.is_empty() {
            tokio::select! {
                // The socket first: no random draw per poll.
                biased;
                filled = reader.fill() => filled,
                () = closing.as_mut() => return Next::Closed,
            }
        } else {
            reader.fill().await
        };
        match filled {
            Ok(0) | Err(_) => return Next::Closed,
            Ok(_) => {}
        }
    }
}

/// One request as the connection sees it while it is served.
struct Exchange {
    /// What goes to the service.
    request: Box<Request<Inbound>>,
    /// Where the reader comes back from the body.
    home: Option<oneshot::Receiver<Returned>>,
    /// Fires when the body is first read and a 100 is owed.
    asked_continue: Option<oneshot::Receiver<()>>,
    /// The reader, when the request has no body to take it.
    reader_at_home: Option<Reader>,
    /// The method: HEAD and CONNECT answers are framed apart.
    method: Method,
    /// The client's version.
    version: http::Version,
    /// Whether the head allows another request after this one.
    keep_alive: bool,
    /// `TE: trailers`.
    accepts_trailers: bool,
}

impl Exchange {
    fn new(head: Head, reader: Reader, settings: Settings) -> Exchange {
        let Head {
            mut request,
            framing,
            keep_alive,
            expect_continue,
            accepts_trailers,
        } = head;
        let method = request.method().clone();
        let version = request.version();
        let length = match framing {
            RequestFraming::Empty => None,
            RequestFraming::Length(n) => Some(Some(n)),
            RequestFraming::Chunked => Some(None),
        };
        let (body, home, asked_continue, reader_at_home) = match length {
            None => (Inbound::Empty, None, None, Some(reader)),
            Some(length) => {
                let (tx, rx) = oneshot::channel();
                let (continue_tx, continue_rx) = if expect_continue {
                    let (t, r) = oneshot::channel();
                    (Some(t), Some(r))
                } else {
                    (None, None)
                };
                let body =
                    WireBody::new(reader, length, settings.max_header_bytes, tx, continue_tx);
                (Inbound::Wire(body), Some(rx), continue_rx, None)
            }
        };
        *request.body_mut() = body;
        Exchange {
            request,
            home,
            asked_continue,
            reader_at_home,
            method,
            version,
            keep_alive,
            accepts_trailers,
        }
    }
}

/// Reads ahead while a request without a body is served: pipelined bytes are kept
/// (up to a head's limit), and `Ok(0)` says the client closed. Pending forever when
/// there is no reader here or the buffer is full.
async fn fill_some(reader: &mut Option<Reader>, max: usize) -> std::io::Result<usize> {
    match reader {
        Some(reader) if reader.buf.len() < max => reader.fill().await,
        _ => std::future::pending().await,
    }
}

/// The next interim response to relay; pending forever when there is no channel.
async fn next_interim(interim: Option<&Interim>) -> http::response::Parts {
    match interim {
        Some(interim) => std::future::poll_fn(|cx| interim.poll_next(cx)).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the body asks for its `100 Continue` (true), or can no longer ask
/// (false); pending forever when no 100 is owed. Either way it is owed no more.
async fn continue_wanted(asked: &mut Option<oneshot::Receiver<()>>) -> bool {
    match asked {
        Some(rx) => {
            let wanted = rx.await.is_ok();
            *asked = None;
            wanted
        }
        None => std::future::pending().await,
    }
}

/// Resolves when the stop says to close connections between requests (or when the
/// server is gone altogether).
async fn close_idle(mut stop: watch::Receiver<Option<Drain>>) {
    // Err: the sender is dropped, the server has stopped: close as well.
    let _ = stop.wait_for(|s| *s == Some(Drain::CloseIdle)).await;
}

/// Answers a refused head with its status and a page, closing the connection.
async fn refuse<W: AsyncWrite + Unpin>(
    writer: &mut Writer<W>,
    e: HeadError,
) -> std::io::Result<()> {
    let mut page = crate::http::page::page(e.status(), &e.to_string()).map(Full::new);
    page.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    let asked = Asked {
        method: &Method::GET,
        version: http::Version::HTTP_11,
        accepts_trailers: false,
        keep_alive: false,
    };
    let mut head = HeadBuf::new();
    let written = response::write_head(&page, None, asked, &mut head);
    write_body(writer, head, page.into_body(), written.framing)
        .await
        .map_err(std::io::Error::other)
}

/// Writes a head and the body after it, framed by `framing`. The head goes out with
/// the first piece of the body when that is ready at once (one `writev`); otherwise
/// alone, so a client sees a slow response begin. (A function returning a block, as
/// `serve` is: an `async fn` would keep the body, the largest argument, twice.)
fn write_body<'a, W, B>(
    writer: &'a mut Writer<W>,
    head: HeadBuf,
    body: B,
    framing: Framing,
) -> impl Future<Output = Result<(), String>> + 'a
where
    W: AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin + 'a,
    B::Error: std::fmt::Display,
{
    let mut head = Some(head);
    // Dropped as soon as its end is known, before the last bytes are written: that
    // settles the request (its upstream connection back to the pool) before the
    // client can send the next one, as hyper's server did.
    let mut body = Some(body);
    async move {
        let io = |e: std::io::Error| e.to_string();
        if framing == Framing::None {
            let head = head.take().unwrap_or_default();
            return writer
                .write_all(&mut [IoSlice::new(&head)])
                .await
                .map_err(io);
        }
        let mut sent: u64 = 0;
        let mut trailers = None;
        // Only chunked framing writes size lines: no allocation for a length-framed body.
        let mut line = Vec::new();
        loop {
            if let Framing::Length(n) = framing {
                if sent == n {
                    break;
                }
            }
            let Some(source) = body.as_mut() else {
                break;
            };
            let frame = if head.is_some() {
                match poll_once(source).await {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => {
                        if let Some(h) = head.take() {
                            writer
                                .write_all(&mut [IoSlice::new(&h)])
                                .await
                                .map_err(io)?;
                        }
                        continue;
                    }
                }
            } else {
                source.frame().await
            };
            let frame = match frame {
                None => {
                    drop(body.take());
                    break;
                }
                Some(Err(e)) => return Err(format!("response body failed: {e}")),
                Some(Ok(frame)) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    trailers = frame.into_trailers().ok();
                    drop(body.take());
                    break;
                }
            };
            if data.is_empty() {
                continue;
            }
            let last = match framing {
                Framing::Length(n) => sent + data.len() as u64 >= n,
                _ => false,
            };
            if last || body.as_ref().is_some_and(Body::is_end_stream) {
                drop(body.take());
            }
            let first = head.take().unwrap_or_default();
            line.clear();
            match framing {
                Framing::Length(n) => {
                    if sent + data.len() as u64 > n {
                        return Err("response body longer than its length".into());
                    }
                    writer
                        .write_all(&mut [IoSlice::new(&first), IoSlice::new(&data)])
                        .await
                        .map_err(io)?;
                }
                Framing::Chunked { .. } => {
                    chunked::size_line(data.len(), &mut line);
                    writer
                        .write_all(&mut [
                            IoSlice::new(&first),
                            IoSlice::new(&line),
                            IoSlice::new(&data),
                            IoSlice::new(b"\r\n"),
                        ])
                        .await
                        .map_err(io)?;
                }
                Framing::Close | Framing::None => {
                    writer
                        .write_all(&mut [IoSlice::new(&first), IoSlice::new(&data)])
                        .await
                        .map_err(io)?;
                }
            }
            sent += data.len() as u64;
        }
        let first = head.take().unwrap_or_default();
        match framing {
            Framing::Length(n) if sent < n => {
                if !first.is_empty() {
                    let _ = writer.write_all(&mut [IoSlice::new(&first)]).await;
                }
                Err(format!("response body ended after {sent} of {n} bytes"))
            }
            Framing::Chunked { trailers: allowed } => {
                line.clear();
                chunked::last_chunk(trailers.as_ref().filter(|_| allowed), &mut line);
                writer
                    .write_all(&mut [IoSlice::new(&first), IoSlice::new(&line)])
                    .await
                    .map_err(io)
            }
            _ if !first.is_empty() => writer
                .write_all(&mut [IoSlice::new(&first)])
                .await
                .map_err(io),
            _ => Ok(()),
        }
    }
}

/// A body's next frame, as `poll_frame` gives it.
type Polled<B> = Option<Result<hyper::body::Frame<<B as Body>::Data>, <B as Body>::Error>>;

/// Polls a body once: its next frame if it is ready now.
fn poll_once<B: Body + Unpin>(body: &mut B) -> impl Future<Output = Poll<Polled<B>>> + '_ {
    std::future::poll_fn(move |cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx)))
}
