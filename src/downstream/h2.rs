//! One HTTP/2 client connection (after ALPN `h2` on the TLS listener), served with
//! hyper's HTTP/2 server under the `[limits]` that bound what a client can make
//! relevo hold: streams at once, resets (CVE-2023-44487), header lists, windows and
//! send buffers. Each stream's request goes to the service as any other request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::{watch, Notify};
use tracing::debug;

use super::client_stream::{ClientStream, Io};
use super::connection::{Drain, Settings};
use super::listener::Accepted;
use super::service::ClientService;
use crate::config::Limits;

/// The window over which a connection's cancelled requests are counted.
const RESET_WINDOW: Duration = Duration::from_secs(10);
/// How long streams in flight may take to finish once an abusive connection got GOAWAY.
const ABUSE_GRACE: Duration = Duration::from_secs(1);

/// What relevo watches of one HTTP/2 connection's streams, beyond what h2 does:
///
/// - requests the client cancelled (RST_STREAM) before their response. h2 bounds streams
///   reset before hyper accepts them; a client that resets each stream just after it is
///   accepted still makes relevo start a backend request per stream, at no cost of a
///   stream slot (the rapid reset attack, CVE-2023-44487). Past
///   `limits.h2_max_client_resets` within `RESET_WINDOW`, the connection gets GOAWAY;
/// - requests under way, for the idle timeout: with none for `timeouts.client_header`
///   the connection gets GOAWAY, as an idle HTTP/1 keep-alive connection is closed,
///   so idle clients cannot hold every slot of `max_connections`.
#[derive(Debug)]
pub struct Streams {
    /// Most cancellations in a window.
    limit: usize,
    /// Cancellations in the current window.
    count: AtomicUsize,
    /// When the current window began.
    since: Mutex<Instant>,
    /// Woken when the limit is passed: the connection is to end.
    exceeded: Notify,
    /// Requests under way: from the head to the end of the response body.
    open: AtomicUsize,
    /// When a request last began or ended: the idle time counts from there.
    stirred: Mutex<Instant>,
}

/// A request under way on an HTTP/2 connection, from its head to the end of its
/// response body (the request's session holds it); the connection is idle while
/// there is none.
#[derive(Debug)]
pub struct Active {
    /// The connection's streams.
    streams: Arc<Streams>,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.streams.open.fetch_sub(1, Ordering::Relaxed);
        self.streams.stir();
    }
}

/// Counts its request as cancelled if dropped before `finished`.
#[derive(Debug)]
pub struct InFlight {
    /// The connection's count; taken by `finished`.
    resets: Option<Arc<Streams>>,
}

impl Streams {
    /// A count allowing `limit` cancellations per window.
    pub fn new(limit: usize) -> Arc<Streams> {
        Arc::new(Streams {
            limit,
            count: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
            exceeded: Notify::new(),
            open: AtomicUsize::new(0),
            stirred: Mutex::new(Instant::now()),
        })
    }

    /// Marks a request begun: dropping the guard unfinished counts a cancellation.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.stir();
        InFlight {
            resets: Some(self.clone()),
        }
    }

    /// A request under way until the guard is dropped.
    pub fn active(self: &Arc<Self>) -> Active {
        self.open.fetch_add(1, Ordering::Relaxed);
        Active {
            streams: self.clone(),
        }
    }

    fn stir(&self) {
        *self.stirred.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Resolves once no request has been under way for `timeout`.
    async fn idle(&self, timeout: Duration) {
        let check = (timeout / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(check).await;
            let quiet = self
                .stirred
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed();
            if self.open.load(Ordering::Relaxed) == 0 && quiet >= timeout {
                return;
            }
        }
    }

    fn cancelled(&self) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        if since.elapsed() > RESET_WINDOW {
            *since = Instant::now();
            self.count.store(0, Ordering::Relaxed);
        }
        drop(since);
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 > self.limit {
            self.exceeded.notify_one();
        }
    }
}

impl InFlight {
    /// The response head is ready: the request was not cancelled.
    pub fn finished(mut self) {
        self.resets = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(resets) = self.resets.take() {
            resets.cancelled();
        }
    }
}

/// Serves one HTTP/2 connection until the client closes it, a limit ends it (GOAWAY),
/// or a stop: any stop sends GOAWAY at once, lets the streams in flight finish, then
/// closes (an HTTP/2 client opens a new connection for its next request by itself).
pub async fn serve<I: Io, S: ClientService>(
    accepted: Accepted<I>,
    settings: Settings,
    limits: &Limits,
    service: S,
    streams: Arc<Streams>,
    mut stop: watch::Receiver<Option<Drain>>,
) {
    let Accepted { stream, peer, slot } = accepted;
    let _slot = slot;
    // The same blocked-write bound and lingering close as HTTP/1.
    let io = ClientStream::new(stream, settings.send_timeout);
    let header_list = u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX);
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams)
        .initial_stream_window_size(limits.h2_stream_window_bytes)
        .initial_connection_window_size(limits.h2_connection_window_bytes)
        .max_send_buf_size(limits.h2_max_send_buf_bytes)
        // Bounds a header block however many CONTINUATION frames carry it.
        .max_header_list_size(header_list)
        // A peer gone without a word (no FIN) is found by an unanswered PING, as
        // HTTP/1's keep-alive idle timeout would close its connection.
        .keep_alive_interval(settings.header_timeout)
        .keep_alive_timeout(settings.header_timeout)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        // The guard `wait_for` returns is dropped at once: it must not be held while
        // the streams finish.
        _ = async { drop(stop.wait_for(Option::is_some).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        _ = streams.idle(settings.header_timeout) => {
            debug!(client = %peer, "h2: idle for {:?}, closing", settings.header_timeout);
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        _ = streams.exceeded.notified() => {
            debug!(client = %peer, "h2: too many cancelled requests, closing (CVE-2023-44487)");
            conn.as_mut().graceful_shutdown();
            // An abusive client's streams get a moment to finish, not the usual wait.
            tokio::time::timeout(ABUSE_GRACE, conn).await.unwrap_or(Ok(()))
        }
    };
    if let Err(e) = ended {
        debug!(client = %peer, "h2 connection ended: {e}");
    }
}
