//! The TLS listener's accept loop: each connection's handshake runs in its own task
//! (a slow one holds up nobody), then HTTP/2 or HTTP/1.1 as ALPN chose, with the same
//! per-connection service as the plain listener.
//!
//! The rustls configuration is built once per configuration generation: at each
//! accept the live `[tls]` is compared (by pointer) with the one the current acceptor
//! was made from, so a reload's certificates serve the next handshake while the ones
//! under way finish with the old.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tracing::error;

use super::service::{self, Conn};
use crate::downstream::connection::{self, Drain};
use crate::downstream::h2;
use crate::downstream::listener::Listener;
use crate::downstream::tls::Acceptor;
use crate::proxy::State;
use crate::stats::ServerStats;

/// Accepts on `listener` until a stop, then waits (up to `timeouts.shutdown`) for its
/// connections to finish.
pub(super) async fn run(
    listener: Listener,
    state: Arc<ArcSwap<State>>,
    stats: Arc<ServerStats>,
    stop: watch::Receiver<Option<Drain>>,
) {
    let mut acceptor: Option<Acceptor> = None;
    let mut stopped = stop.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(Option::is_some) => break,
        };
        let live = state.load_full();
        let Some(acceptor) = current(&mut acceptor, &live) else {
            continue;
        };
        let config = &live.config;
        let timeout = config.timeouts.client_header;
        let settings = super::settings(config);
        let limits = config.limits.clone();
        let (state, stats, stop) = (state.clone(), stats.clone(), stop.clone());
        tokio::spawn(async move {
            let Some((accepted, negotiated)) = acceptor.accept(accepted, timeout).await else {
                return;
            };
            let streams = negotiated
                .protocol
                .h2
                .then(|| h2::Streams::new(limits.h2_max_client_resets));
            let conn = Conn {
                state,
                stats,
                peer: accepted.peer,
                stop: stop.clone(),
                tls: Some(negotiated),
                streams: streams.clone(),
                https_port: None,
            };
            if let Some(streams) = streams {
                let service = service::h2(conn);
                h2::serve(accepted, settings, &limits, service, streams, stop).await;
            } else {
                let answerer = service::Answerer::new(conn);
                // Boxed: the connection's future would otherwise hold the service's 152
                // bytes three times over (each async layer keeps its arguments), idle or not.
                let service = Box::new(move |req, interim| answerer.answer(req, interim));
                connection::serve(accepted, settings, service, stop).await;
            }
        });
    }
    listener.drain(state.load().config.timeouts.shutdown).await;
}

/// The acceptor for the live `[tls]`, built anew when a reload changed it. A reload
/// that removed `[tls]` keeps the last one: the listener itself stays until a restart.
fn current(cached: &mut Option<Acceptor>, live: &State) -> Option<Acceptor> {
    match (&live.config.tls, cached.as_ref()) {
        (Some(tls), Some(a)) if Arc::ptr_eq(tls, a.tls()) => {}
        (Some(tls), _) => match Acceptor::new(tls.clone()) {
            Ok(a) => *cached = Some(a),
            Err(e) => error!("cannot build the TLS configuration: {e}"),
        },
        (None, _) => {}
    }
    cached.clone()
}
