//! One request's context: what the phases learn about it on the way (entry, backend,
//! attempts, timings, bytes); `finish` settles it when its response ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode};

use super::state::{Entry, State};
use crate::config::AccessLogFormat;
use crate::downstream::h2::{Active, Streams};
use crate::stats::Protocol;

/// What is known about one request; finished when the response body is done.
#[derive(Debug)]
pub struct Session {
    /// Who sent it (logs, `X-Forwarded-For`, client-ip hashing).
    pub client: SocketAddr,
    /// Method as received.
    pub method: Method,
    /// Target as received (origin-form path or absolute URI).
    pub target: String,
    /// The host-table entry serving it, once routed.
    pub entry: Option<Arc<Entry>>,
    /// The host the client named when no entry serves it (for the log only).
    pub requested_host: Option<String>,
    /// The backend of the latest attempt.
    pub backend: Option<SocketAddr>,
    /// Its index among the entry's members, for the entry's per-backend counters.
    pub member: Option<usize>,
    /// The generation the request was served by (unrouted requests are counted there).
    pub state: Arc<State>,
    /// Attempts made (0 when relevo answered without a backend).
    pub attempts: u32,
    /// Status sent to the client.
    pub status: StatusCode,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// When the request head was received.
    pub started: Instant,
    /// From sending the request to the backend's response head, on the last attempt.
    pub upstream_time: Option<Duration>,
    /// The TCP connect (and handshake) of the last attempt, when it opened a connection.
    pub connect_time: Option<Duration>,
    /// The request's version, for the combined log's request line.
    pub version: http::Version,
    /// `Referer` and `User-Agent`, for the combined log only.
    pub referer: Option<String>,
    /// See `referer`.
    pub user_agent: Option<String>,
    /// Whether the access log is on (`access_log`).
    pub log: bool,
    /// What the request came in on (HTTP/1.1 or h2, TLS version), for the log.
    pub protocol: Protocol,
    /// Keeps an HTTP/2 connection from its idle timeout until the response has ended.
    pub active: Option<Active>,
}

impl Session {
    /// The context of `req`, received now from `client`.
    pub fn new<B>(
        client: SocketAddr,
        req: &Request<B>,
        state: Arc<State>,
        protocol: Protocol,
    ) -> Session {
        let log = state.access_log.is_some();
        let combined = log && state.config.access_log_format == AccessLogFormat::Combined;
        let field = |name: http::header::HeaderName| {
            combined
                .then(|| req.headers().get(name)?.to_str().ok().map(str::to_string))
                .flatten()
        };
        Session {
            client,
            method: req.method().clone(),
            target: if log {
                req.uri().to_string()
            } else {
                String::new()
            },
            entry: None,
            requested_host: None,
            backend: None,
            member: None,
            state,
            attempts: 0,
            status: StatusCode::OK,
            bytes_out: 0,
            started: Instant::now(),
            upstream_time: None,
            connect_time: None,
            version: req.version(),
            referer: field(http::header::REFERER),
            user_agent: field(http::header::USER_AGENT),
            log,
            protocol,
            active: req.extensions().get::<Arc<Streams>>().map(Streams::active),
        }
    }

    /// The host-table key, or the host the client named, or `-`.
    pub fn host(&self) -> &str {
        match (&self.entry, &self.requested_host) {
            (Some(entry), _) => &entry.key,
            (None, Some(named)) => named,
            (None, None) => "-",
        }
    }
}
