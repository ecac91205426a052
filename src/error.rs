//! The one error type of the request path: each variant knows its HTTP status, whether
//! a retry on another backend is safe, and whether the client connection must close.

use std::net::SocketAddr;

use http::StatusCode;

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
    BodyTimeout(std::time::Duration),
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
        /// hyper's account of it.
        source: hyper::Error,
        /// True when no byte of the request reached the backend.
        unsent: bool,
    },
}

impl ProxyError {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::MissingHost | ProxyError::BadHost(_) | ProxyError::UnsupportedScheme(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::UnknownHost(_) | ProxyError::ConnectRefused => StatusCode::FORBIDDEN,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ProxyError::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            ProxyError::UnsupportedCoding(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Connect { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::UnexpectedUpgrade(_) => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout(_) | ProxyError::ResponseTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::AllDown(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// True when the request provably never reached a backend, so sending it to
    /// another one cannot duplicate its effect, whatever the method.
    pub fn retry_safe(&self) -> bool {
        match self {
            ProxyError::Connect { .. } | ProxyError::ConnectTimeout(_) => true,
            ProxyError::Upstream { unsent, .. } => *unsent,
            _ => false,
        }
    }

    /// True when the request may have reached the backend but no response byte came
    /// back: a retry is safe for idempotent methods (RFC 9110 §9.2.2) only.
    pub fn retry_safe_if_idempotent(&self) -> bool {
        matches!(
            self,
            ProxyError::Upstream { .. } | ProxyError::ResponseTimeout(_)
        )
    }

    /// True when the failure is the backend's, so it counts against its health.
    pub fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect { .. }
                | ProxyError::ConnectTimeout(_)
                | ProxyError::ResponseTimeout(_)
                | ProxyError::Upstream { .. }
                | ProxyError::UnexpectedUpgrade(_)
        )
    }

    /// True when the client connection cannot be trusted for another request.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::MissingHost
                | ProxyError::BadHost(_)
                | ProxyError::UnsupportedScheme(_)
                | ProxyError::BodyTooLarge(_)
                | ProxyError::ClientBody(_)
                | ProxyError::UriTooLong(_)
                | ProxyError::ExpectationFailed
                | ProxyError::UnsupportedCoding(_)
                | ProxyError::ConnectRefused
                | ProxyError::BodyTimeout(_)
        )
    }
}

impl ProxyError {
    /// The error page: a small, correctly framed HTML body naming the problem.
    /// `close` asks the client connection to close after it.
    pub fn to_response(&self, close: bool) -> http::Response<crate::body::ProxyBody> {
        let status = self.status();
        let mut resp = page(status, &self.to_string());
        if let ProxyError::AllDown(secs) = self {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(*secs));
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

/// A small HTML page for `status` with `message` in it (HTML-escaped).
pub fn page(status: StatusCode, message: &str) -> http::Response<crate::body::ProxyBody> {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{}</p>\n<hr><address>relevo</address></body></html>\n",
        escape_html(message)
    );
    let mut resp = http::Response::new(crate::body::ProxyBody::page(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
