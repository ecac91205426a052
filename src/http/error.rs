//! The one error type of the request path. Each variant knows the status the client
//! gets, which side was at fault (health feedback and log level read that), whether a
//! retry is safe, and whether the client connection must close.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

/// Who caused a failure: the answer health feedback, retries and log levels share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something relevo refuses, or stopped sending it.
    Client,
    /// A backend failed: it counts against the backend's health.
    Backend,
    /// relevo itself could not carry the request (its own resources); never a
    /// backend's fault.
    Relevo,
}

/// Whether a failed attempt may be sent again (to the same or another backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The request may have had an effect, or retrying cannot help.
    Never,
    /// The request may have reached the backend, but no response byte came back: safe
    /// for idempotent methods only (RFC 9110 §9.2.2).
    IfIdempotent,
    /// The request provably never reached a backend: safe whatever the method.
    Always,
}

/// Everything that can stop a request from being proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// HTTP/1.1 request without a usable host (RFC 9112 §3.2).
    #[error("request has no Host header and no absolute-form target")]
    MissingHost,
    /// More than one Host field, or one that is not a valid authority (RFC 9112 §3.2).
    #[error("invalid Host: {0}")]
    BadHost(String),
    /// Absolute-form target with a scheme other than `http`.
    #[error("unsupported scheme `{0}`: this proxy forwards http:// only")]
    UnsupportedScheme(String),
    /// A request target in a form its method may not use (RFC 9112 §3.2).
    #[error("bad request target: {0}")]
    BadTarget(String),
    /// The host is not in the host table.
    #[error("host `{0}` is not served by this proxy")]
    UnknownHost(String),
    /// A request transfer coding relevo does not implement (RFC 9112 §6.1: 501).
    #[error("transfer coding `{0}` is not supported in requests")]
    UnsupportedCoding(String),
    /// An `Expect` other than 100-continue (RFC 9110 §10.1.1).
    #[error("unsupported expectation: only 100-continue is defined")]
    ExpectationFailed,
    /// `CONNECT` tunnelling is not enabled.
    #[error("CONNECT is not allowed")]
    ConnectRefused,
    /// Request target longer than `limits.max_uri_bytes`.
    #[error("request target is longer than {0} bytes")]
    UriTooLong(usize),
    /// The client paused sending its body for longer than `timeouts.client_body`.
    #[error("request body stalled for {0:?}")]
    BodyTimeout(Duration),
    /// Declared or streamed request body larger than the host's limit.
    #[error("request body exceeds the limit of {0} bytes")]
    BodyTooLarge(u64),
    /// The client's body could not be read (malformed chunk, early close, too slow).
    #[error("cannot read the request body: {0}")]
    ClientBody(String),
    /// The backend refused or reset the TCP connection.
    #[error("cannot connect to backend {addr}: {source}")]
    Connect {
        /// The backend.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The backend switched protocols without being asked to.
    #[error("backend {0} sent 101 Switching Protocols to a request that asked for no upgrade")]
    UnexpectedUpgrade(SocketAddr),
    /// Every backend of the host is down and the host does not fail open.
    #[error("no backend is available for this host; retry in {0} s")]
    AllDown(u64),
    /// The TCP connect to the backend did not finish in time.
    #[error("timed out connecting to backend {0}")]
    ConnectTimeout(SocketAddr),
    /// No response head from the backend in time.
    #[error("backend {0} did not respond in time")]
    ResponseTimeout(SocketAddr),
    /// The backend sent something that is not a valid HTTP/1.1 response, or closed early.
    #[error("bad response from backend {addr}: {source}")]
    Upstream {
        /// The backend.
        addr: SocketAddr,
        /// What went wrong on the wire.
        source: BackendFault,
        /// True when no byte of the request reached the backend.
        unsent: bool,
    },
    /// A reused keep-alive connection closed as the request went out, before any
    /// response byte: the backend's idle close raced our send (RFC 9112 §9.3.1). Not
    /// held against the backend; an idempotent request goes again on a fresh
    /// connection.
    #[error("backend {addr} closed a kept-alive connection as the request was sent: {source}")]
    StaleConnection {
        /// The backend.
        addr: SocketAddr,
        /// What the socket said.
        source: BackendFault,
    },
    /// relevo ran out of something of its own (file descriptors, local ports, memory)
    /// while connecting: never the backend's fault.
    #[error("relevo is out of local resources connecting to backend {addr}: {source}")]
    LocalResources {
        /// The backend.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The backend is at its `max_conns` and the wait for a connection of its queue
    /// timed out, or the queue is full.
    #[error("backend {addr} is at its connection limit: {why}")]
    BackendBusy {
        /// The backend.
        addr: SocketAddr,
        /// Queue full, or how long the request waited.
        why: String,
    },
}

impl ProxyError {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::MissingHost
            | ProxyError::BadHost(_)
            | ProxyError::BadTarget(_)
            | ProxyError::UnsupportedScheme(_) => StatusCode::BAD_REQUEST,
            ProxyError::UnknownHost(_) | ProxyError::ConnectRefused => StatusCode::FORBIDDEN,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ProxyError::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            ProxyError::UnsupportedCoding(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Connect { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::StaleConnection { .. }
            | ProxyError::UnexpectedUpgrade(_) => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout(_) | ProxyError::ResponseTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::AllDown(_)
            | ProxyError::LocalResources { .. }
            | ProxyError::BackendBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Which side was at fault.
    pub fn side(&self) -> Side {
        match self {
            ProxyError::MissingHost
            | ProxyError::BadHost(_)
            | ProxyError::BadTarget(_)
            | ProxyError::UnsupportedScheme(_)
            | ProxyError::UnknownHost(_)
            | ProxyError::UnsupportedCoding(_)
            | ProxyError::ExpectationFailed
            | ProxyError::ConnectRefused
            | ProxyError::UriTooLong(_)
            | ProxyError::BodyTimeout(_)
            | ProxyError::BodyTooLarge(_)
            | ProxyError::ClientBody(_) => Side::Client,
            ProxyError::Connect { .. }
            | ProxyError::ConnectTimeout(_)
            | ProxyError::ResponseTimeout(_)
            | ProxyError::Upstream { .. }
            | ProxyError::StaleConnection { .. }
            | ProxyError::UnexpectedUpgrade(_)
            | ProxyError::AllDown(_) => Side::Backend,
            ProxyError::LocalResources { .. } | ProxyError::BackendBusy { .. } => Side::Relevo,
        }
    }

    /// Whether the request may be sent again after this failure.
    pub fn retry(&self) -> Retry {
        match self {
            ProxyError::Connect { .. } | ProxyError::ConnectTimeout(_) => Retry::Always,
            ProxyError::Upstream { unsent: true, .. } => Retry::Always,
            ProxyError::Upstream { .. }
            | ProxyError::StaleConnection { .. }
            | ProxyError::ResponseTimeout(_) => Retry::IfIdempotent,
            _ => Retry::Never,
        }
    }

    /// True when the failure is evidence against the backend's health: a backend-side
    /// failure other than a keep-alive race, which healthy backends cause too.
    pub fn blames_backend(&self) -> bool {
        self.side() == Side::Backend && !matches!(self, ProxyError::StaleConnection { .. })
    }

    /// True when the client connection cannot be trusted for another request: a
    /// client error, except a 403 for a host not served (the request itself was sound).
    pub fn closes_connection(&self) -> bool {
        self.side() == Side::Client && !matches!(self, ProxyError::UnknownHost(_))
    }

    /// The error page: a small, correctly framed HTML body naming the problem.
    /// `close` asks the client connection to close after it.
    pub fn to_response(&self, close: bool) -> http::Response<bytes::Bytes> {
        let mut resp = super::page::page(self.status(), &self.to_string());
        let retry_after = match self {
            ProxyError::AllDown(secs) => Some(*secs),
            ProxyError::LocalResources { .. } | ProxyError::BackendBusy { .. } => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        if close || self.closes_connection() {
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

impl From<&ClientBodyError> for ProxyError {
    fn from(e: &ClientBodyError) -> Self {
        match e {
            ClientBodyError::TooLarge(limit) => ProxyError::BodyTooLarge(*limit),
            ClientBodyError::Stalled(idle) => ProxyError::BodyTimeout(*idle),
            ClientBodyError::Broken(why) => ProxyError::ClientBody(why.clone()),
        }
    }
}

impl ClientBodyError {
    /// What a request body's boxed error was: relevo's own verdict when it is one,
    /// else the reading layer's words (a malformed or cut body).
    pub fn of(e: Box<dyn std::error::Error + Send + Sync>) -> ClientBodyError {
        match e.downcast::<ClientBodyError>() {
            Ok(e) => *e,
            Err(e) => ClientBodyError::Broken(e.to_string()),
        }
    }
}

/// What went wrong on a backend connection, as relevo's HTTP/1.1 client saw it.
#[derive(Debug, thiserror::Error)]
pub enum BackendFault {
    /// The socket failed (reset, broken pipe, ...).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The backend closed the connection before any byte of a response.
    #[error("connection closed before a response")]
    Closed,
    /// Not a valid HTTP/1.x response head (RFC 9112 §4, §5).
    #[error("invalid response head: {0}")]
    BadHead(&'static str),
    /// A response head larger than `limits.upstream_read_buffer`.
    #[error("response head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// The body's framing broke: a bad chunk, or the connection closed before the
    /// declared length.
    #[error("response body: {0}")]
    Body(String),
}

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
