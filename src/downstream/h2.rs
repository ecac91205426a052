//! One HTTP/2 client connection (after ALPN `h2` on the TLS listener), served with
//! hyper's HTTP/2 server under the `[limits]` that bound what a client can make
//! relevo hold: streams at once, resets (CVE-2023-44487), header lists, windows and
//! send buffers. Each stream's request goes to the service as any other request.

use bytes::BytesMut;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http2;
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;
use tracing::debug;

use super::client_stream::{ClientStream, Io};
use super::connection::{Drain, Settings};
use super::listener::Accepted;
use crate::config::Limits;

/// Serves one HTTP/2 connection until the client closes it, a limit ends it (GOAWAY),
/// or a stop: any stop sends GOAWAY at once, lets the streams in flight finish, then
/// closes (an HTTP/2 client opens a new connection for its next request by itself).
pub async fn serve<I: Io, S>(
    accepted: Accepted<I>,
    settings: Settings,
    limits: &Limits,
    service: S,
    mut stop: watch::Receiver<Option<Drain>>,
) where
    S: HttpService<Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: Send + 'static,
    <S::ResBody as Body>::Data: Send,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Accepted { stream, peer, slot } = accepted;
    let _slot = slot;
    // The same blocked-write bound and lingering close as HTTP/1.
    let io = ClientStream::new(BytesMut::new(), stream, settings.send_timeout);
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
    };
    if let Err(e) = ended {
        debug!(client = %peer, "h2 connection ended: {e}");
    }
}
