//! One client connection, from the screen to its close: the first head is screened,
//! then hyper serves requests on it until the client leaves, a limit ends it or a
//! graceful stop finishes the request in flight (`Drain` says what becomes of a
//! connection waiting for its next request).

use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tracing::debug;

use super::client_stream::Io;
use super::listener::Accepted;
use super::screen;
use super::service::ClientService;

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

/// Serves one accepted connection with `service` until it closes; `stop` turning to
/// `Some(CloseIdle)` lets the request in flight finish, then closes. Under
/// `Some(AnswerNext)` the connection ends as usual, after the service's last answer.
pub async fn serve<I: Io, S: ClientService>(
    accepted: Accepted<I>,
    settings: Settings,
    service: S,
    mut stop: watch::Receiver<Option<Drain>>,
) {
    let Accepted { stream, peer, slot } = accepted;
    let _slot = slot;
    let screened = tokio::select! {
        io = screen::screen(
            stream,
            settings.header_timeout,
            settings.send_timeout,
            settings.max_header_bytes,
        ) => io,
        _ = close_idle(&mut stop) => None,
    };
    let Some(io) = screened else {
        return;
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_header_bytes)
        .max_headers(settings.max_headers)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = close_idle(&mut stop) => {
            // Finish the request in flight (if any), then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        debug!(client = %peer, "connection ended: {e}");
    }
}

/// Resolves when the stop says to close connections between requests (or when the
/// server is gone altogether).
async fn close_idle(stop: &mut watch::Receiver<Option<Drain>>) {
    // Err: the sender is dropped, the server has stopped: close as well.
    let _ = stop.wait_for(|s| *s == Some(Drain::CloseIdle)).await;
}
