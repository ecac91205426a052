//! The validated configuration: the types every stage reads, with their defaults.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Port used for a backend written as a bare IP, as in the lab.
pub const DEFAULT_BACKEND_PORT: u16 = 80;

/// A validated configuration, ready to build the proxy's state from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the proxy listens on.
    pub listen: SocketAddr,
    /// Worker threads; `None` means one per CPU.
    pub threads: Option<usize>,
    /// Where the access log goes (one line per request), if anywhere.
    pub access_log: AccessLogTarget,
    /// How its lines look.
    pub access_log_format: AccessLogFormat,
    /// Default `tracing` filter when `RUST_LOG` is not set.
    pub log_level: String,
    /// Timeouts on both hops.
    pub timeouts: Timeouts,
    /// Size and count limits.
    pub limits: Limits,
    /// When a backend's failures take it out of rotation.
    pub passive: Passive,
    /// When and how often a failed request is tried on another backend.
    pub retries: Retries,
    /// `CONNECT host:port` targets relevo tunnels to (none by default: 403).
    pub connect_allow: Vec<ConnectRule>,
    /// The host table, in file order.
    pub hosts: Vec<HostEntryConfig>,
    /// The admin listener (metrics, status page), off unless configured.
    pub admin: Option<Admin>,
    /// The TLS listener (HTTPS, HTTP/2), off unless `[tls]` is written. Shared so that
    /// the listener sees a reload as a new pointer and rebuilds its rustls config once.
    pub tls: Option<std::sync::Arc<super::tls::Tls>>,
    /// Located warnings (`file:line:column: warning: ...`) that do not stop the file
    /// from loading; `relevo check` prints them.
    pub warnings: Vec<String>,
    /// How backends written as names are resolved (`[dns]`).
    pub dns: Dns,
}

/// `[dns]`: the resolver behind backends written as names or SRV records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// Name servers to ask; empty means those of `/etc/resolv.conf`.
    pub servers: Vec<SocketAddr>,
    /// Shortest time between two resolutions of a name, whatever its TTL says
    /// (Consul answers with TTL 0 by default; a resolver must not be asked in a loop).
    pub min_ttl: Duration,
    /// Longest time an answer is kept before asking again, whatever its TTL says.
    pub max_ttl: Duration,
    /// How long an NXDOMAIN or an empty answer keeps the last good set before the
    /// name's backends are removed (a failing resolver keeps it indefinitely).
    pub hold: Duration,
    /// How long one query may take before the resolver counts it as failed.
    pub timeout: Duration,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            servers: Vec::new(),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(300),
            hold: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
        }
    }
}

/// `access_log = true | false | "PATH"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// No access log.
    Off,
    /// Standard error, beside relevo's own log (`true`, the default).
    Stderr,
    /// A file, appended to and reopened on SIGUSR1 (logrotate's convention).
    File(std::path::PathBuf),
}

/// `access_log_format = "text" | "json" | "combined"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// `key=value` fields, as relevo's own log.
    Text,
    /// One JSON object per line, with timings and attempts.
    Json,
    /// The Apache/nginx "combined" format log tools parse.
    Combined,
}

/// The admin listener: its own address, never the proxy's.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Where it listens (loopback unless a token guards it).
    pub listen: SocketAddr,
    /// Required as `Authorization: Bearer TOKEN` when set (and always off loopback).
    pub token: Option<String>,
}

impl Admin {
    /// Where the admin listener goes when `[admin]` names no address.
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:9901";
}

/// Timeouts on both hops; every one has a default a production proxy would pick.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// TCP connect to a backend.
    pub connect: Duration,
    /// From the request being sent to the backend's response head arriving.
    pub response: Duration,
    /// Reading a client's request head, and a client's keep-alive idle time.
    pub client_header: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub upstream_idle: Duration,
    /// How long a graceful stop waits for in-flight requests.
    pub shutdown: Duration,
    /// Longest pause between two pieces of a request body (slow upload: 408).
    pub client_body: Duration,
    /// Longest a response write may stay blocked (a client that stops reading).
    pub client_send: Duration,
    /// Longest silence in both directions of an upgraded (WebSocket) or CONNECT tunnel.
    pub tunnel_idle: Duration,
    /// Longest a request waits in a backend's queue for a connection (then 503).
    pub queue: Duration,
}

/// Limits that keep one client from taking more than its share.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request head (request line + fields) in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Most header fields in a request; more gets 431.
    pub max_headers: usize,
    /// Largest request body in bytes for hosts that do not set their own; `None` = no limit.
    pub max_body_bytes: Option<u64>,
    /// Most client connections served at once; extra ones get a quick 503.
    pub max_connections: usize,
    /// Most idle pooled connections kept per backend.
    pub max_idle_per_backend: usize,
    /// HTTP/2: most streams a client may have open at once on one connection
    /// (SETTINGS_MAX_CONCURRENT_STREAMS), which bounds its requests in flight.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: streams a client may open and reset before relevo accepts them; past
    /// it the connection gets GOAWAY (the rapid reset attack, CVE-2023-44487).
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2: streams relevo may reset for a client's protocol errors before it closes
    /// the connection (a client making relevo do the resetting, CVE-2023-44487 too).
    pub h2_max_local_error_reset_streams: usize,
    /// HTTP/2: requests a client may cancel (RST_STREAM before the response) within
    /// 10 s before its connection gets GOAWAY: relevo's answer to a rapid reset flood
    /// that resets each stream just after it is accepted (CVE-2023-44487).
    pub h2_max_client_resets: usize,
    /// HTTP/2: the receive window of one stream: how much of a request body may be
    /// buffered before the client must wait for relevo to pass it on.
    pub h2_stream_window_bytes: u32,
    /// HTTP/2: the receive window of a whole connection, bounding its buffered
    /// request bodies together.
    pub h2_connection_window_bytes: u32,
    /// HTTP/2: response bytes buffered per stream before the backend is read no
    /// further (what a client that does not read can pin).
    pub h2_max_send_buf_bytes: usize,
    /// Longest request target in bytes; longer gets 414.
    pub max_uri_bytes: usize,
    /// Largest read buffer of an upstream connection: the largest response head a
    /// backend may send, and how much of a body one read takes.
    pub upstream_read_buffer: usize,
    /// Requests served on one client connection before it is closed; `None` = no limit.
    pub max_requests_per_connection: Option<u64>,
    /// Most connections open to one backend at once (a backend's `max_conns` wins);
    /// requests beyond it wait in the backend's queue.
    pub backend_max_conns: usize,
    /// Most requests waiting for a connection to one backend; more get 503.
    pub backend_queue: usize,
}

/// One entry of the host table.
#[derive(Debug, Clone)]
pub struct HostEntryConfig {
    /// Lower-case host name as written (IPv6 without brackets).
    pub name: String,
    /// Port, when the entry lists one explicitly (`"app.test:8080"`).
    pub port: Option<u16>,
    /// Backends written as addresses, in file order.
    pub backends: Vec<BackendConfig>,
    /// Backends written as names or SRV records, resolved at run time (`discovery`).
    pub names: Vec<NamedBackend>,
    /// How requests are spread over the backends.
    pub balance: Balance,
    /// What `balance = "hash"` and `"maglev"` hash.
    pub hash_key: HashKey,
    /// Largest request body for this host; falls back to `limits.max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// With every backend down: true sends to all as if healthy, false answers 503.
    pub fail_open: bool,
    /// Attempts per request for this host; falls back to `retries.tries`.
    pub tries: Option<u32>,
    /// Active health check, if configured.
    pub health: Option<HealthCheck>,
}

/// One allowed `CONNECT` target: a host (or `*.suffix`) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRule {
    /// Lower-case host, or `*.example.com` for any subdomain.
    pub host: String,
    /// The only port allowed.
    pub port: u16,
}

impl ConnectRule {
    /// Whether `host:port` (host lower-case) is allowed by this rule.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        port == self.port
            && match self.host.strip_prefix("*.") {
                Some(suffix) => {
                    host.len() > suffix.len() + 1
                        && host.ends_with(suffix)
                        && host[..host.len() - suffix.len()].ends_with('.')
                }
                None => host == self.host,
            }
    }
}

/// A backend of a host and its share of the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Relative share of requests (1 by default).
    pub weight: u32,
    /// Its own connection limit, over `limits.backend_max_conns`.
    pub max_conns: Option<usize>,
    /// Its SRV priority (RFC 2782): only the lowest priority with a member in rotation
    /// takes requests. 0 for backends written as addresses.
    pub priority: u16,
}

/// A backend written as a name: every address it resolves to becomes a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedBackend {
    /// What to resolve.
    pub name: DnsName,
    /// Share of each address (an SRV record's weight replaces it).
    pub weight: u32,
    /// Connection limit of each address.
    pub max_conns: Option<usize>,
}

/// What a named backend resolves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DnsName {
    /// `"name:port"`: its A and AAAA records, each address on `port`.
    Host {
        /// The name, lower case.
        name: String,
        /// The port every address gets.
        port: u16,
    },
    /// `{ srv = "_service._proto.name" }`: its SRV records (ports, weights, priorities).
    Srv(String),
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsName::Host { name, port } => write!(f, "{name}:{port}"),
            DnsName::Srv(name) => write!(f, "srv:{name}"),
        }
    }
}

impl fmt::Display for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.weight {
            1 => write!(f, "{}", self.addr),
            w => write!(f, "{} (weight {w})", self.addr),
        }
    }
}

impl From<SocketAddr> for BackendConfig {
    fn from(addr: SocketAddr) -> Self {
        BackendConfig {
            addr,
            weight: 1,
            max_conns: None,
            priority: 0,
        }
    }
}

/// What consistent hashing keys on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address (the default).
    ClientIp,
    /// The request path (without the query).
    Path,
    /// The value of a request header; requests without it hash the client IP.
    Header(http::HeaderName),
    /// The value of a cookie; requests without it hash the client IP.
    Cookie(String),
}

impl HashKey {
    /// Parses `client-ip`, `path`, `header:NAME` or `cookie:NAME`.
    pub fn parse(s: &str) -> Option<HashKey> {
        match s.split_once(':') {
            None if s == "client-ip" => Some(HashKey::ClientIp),
            None if s == "path" => Some(HashKey::Path),
            Some(("header", name)) => http::HeaderName::from_bytes(name.trim().as_bytes())
                .ok()
                .map(HashKey::Header),
            Some(("cookie", name)) if !name.trim().is_empty() => {
                Some(HashKey::Cookie(name.trim().to_string()))
            }
            _ => None,
        }
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::ClientIp => f.write_str("client-ip"),
            HashKey::Path => f.write_str("path"),
            HashKey::Header(h) => write!(f, "header:{h}"),
            HashKey::Cookie(c) => write!(f, "cookie:{c}"),
        }
    }
}

/// An active HTTP health check of every backend of a host.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// Path requested (`GET`, with the host's name in `Host`).
    pub path: String,
    /// Time between checks of one backend.
    pub interval: Duration,
    /// A check slower than this fails.
    pub timeout: Duration,
    /// Consecutive good checks that bring a down backend back.
    pub rise: u32,
    /// Consecutive failed checks that take an up backend down.
    pub fall: u32,
    /// Statuses that count as healthy (inclusive range).
    pub expect: (u16, u16),
}

/// Passive health: ejection after consecutive failures of real requests.
#[derive(Debug, Clone)]
pub struct Passive {
    /// Consecutive failures (connect errors, resets, timeouts, listed statuses) that eject.
    pub failures: u32,
    /// First ejection time; it doubles while the backend keeps failing its probes.
    pub eject: Duration,
    /// Longest ejection.
    pub max_eject: Duration,
    /// Response statuses that count as failures (none by default).
    pub statuses: Vec<u16>,
    /// How often an ejected backend is probed in the background (the entry's active
    /// check if it has one, else a TCP connect), so that it is back within about this
    /// long of recovering instead of waiting out its ejection.
    pub probe_interval: Duration,
}

/// Retry policy (see `proxy.rs` for when a retry is safe).
#[derive(Debug, Clone)]
pub struct Retries {
    /// Attempts per request, the first included (1 = no retry).
    pub tries: u32,
    /// Total time for all attempts of one request.
    pub budget: Duration,
    /// Request bodies up to this size are kept in memory so they can be sent again.
    pub replay_body_bytes: u64,
}

impl Default for Passive {
    fn default() -> Self {
        Passive {
            failures: 3,
            eject: Duration::from_secs(2),
            max_eject: Duration::from_secs(60),
            statuses: Vec::new(),
            // HAProxy checks a down server every 500 ms by default (`fastinter`).
            probe_interval: Duration::from_millis(500),
        }
    }
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            tries: 3,
            budget: Duration::from_secs(30),
            replay_body_bytes: 64 * 1024,
        }
    }
}

impl HostEntryConfig {
    /// An entry for `name` over `backends` (weight 1) with every option at its default.
    pub fn new(name: &str, backends: &[SocketAddr]) -> HostEntryConfig {
        HostEntryConfig {
            name: name.to_ascii_lowercase(),
            port: None,
            backends: backends.iter().map(|&addr| addr.into()).collect(),
            names: Vec::new(),
            balance: Balance::default(),
            hash_key: HashKey::ClientIp,
            max_body_bytes: None,
            fail_open: false,
            tries: None,
            health: None,
        }
    }

    /// The key the router matches on: `name` or `name:port`.
    pub fn key(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.name, p),
            None => self.name.clone(),
        }
    }
}

/// Balancing algorithm of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Smooth weighted round-robin, as nginx's.
    RoundRobin,
    /// Weighted random (the lab's choice, with weights).
    Random,
    /// Fewest in-flight requests per unit of weight, ties by smooth weighted
    /// round-robin. The default: it steers away from a slow or overloaded backend
    /// (its in-flight count grows) and is exactly round-robin when all are idle.
    #[default]
    LeastConn,
    /// Power of two random choices on in-flight requests, peak-EWMA latency breaking ties.
    P2c,
    /// Consistent hashing (ketama ring) on `hash_key`.
    Hash,
    /// Maglev hashing on `hash_key`: the same choice on every instance.
    Maglev,
}

impl Balance {
    /// The names accepted in `balance = "..."`.
    pub const NAMES: [&'static str; 6] = [
        "round-robin",
        "random",
        "least-conn",
        "p2c",
        "hash",
        "maglev",
    ];

    /// The algorithm called `name` in the configuration.
    pub fn from_name(name: &str) -> Option<Balance> {
        match name {
            "round-robin" => Some(Balance::RoundRobin),
            "random" => Some(Balance::Random),
            "least-conn" => Some(Balance::LeastConn),
            "p2c" => Some(Balance::P2c),
            "hash" => Some(Balance::Hash),
            "maglev" => Some(Balance::Maglev),
            _ => None,
        }
    }

    /// The configuration name of the algorithm.
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::Random => "random",
            Balance::LeastConn => "least-conn",
            Balance::P2c => "p2c",
            Balance::Hash => "hash",
            Balance::Maglev => "maglev",
        }
    }
}

impl Config {
    /// A configuration for tests and the demo: the given hosts, every default.
    pub fn with_hosts(listen: SocketAddr, hosts: Vec<HostEntryConfig>) -> Config {
        Config {
            listen,
            threads: None,
            access_log: AccessLogTarget::Stderr,
            access_log_format: AccessLogFormat::Text,
            log_level: "info".into(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            passive: Passive::default(),
            retries: Retries::default(),
            connect_allow: Vec::new(),
            hosts,
            admin: None,
            tls: None,
            warnings: Vec::new(),
            dns: Dns::default(),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(60),
            client_header: Duration::from_secs(30),
            upstream_idle: Duration::from_secs(60),
            shutdown: Duration::from_secs(10),
            client_body: Duration::from_secs(30),
            client_send: Duration::from_secs(60),
            tunnel_idle: Duration::from_secs(300),
            // As HAProxy's `timeout queue`, which defaults to `timeout connect`.
            queue: Duration::from_secs(5),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: None,
            max_connections: 10_000,
            max_idle_per_backend: 1024,
            // nginx's `http2_max_concurrent_streams` and RFC 9113 §6.5.2's advice (100).
            h2_max_concurrent_streams: 100,
            // hyper's own default, which is what the CVE-2023-44487 fix picked.
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 1024,
            // A browser cancels a few requests per navigation; hundreds in 10 s is a flood.
            h2_max_client_resets: 200,
            h2_stream_window_bytes: 256 * 1024,
            h2_connection_window_bytes: 1024 * 1024,
            h2_max_send_buf_bytes: 256 * 1024,
            max_uri_bytes: 8192,
            // A 64 KiB body plus its head in one read: measured 30% less CPU per request
            // than 64 KiB on 64 KiB responses (BENCHMARKS.md).
            upstream_read_buffer: 128 * 1024,
            max_requests_per_connection: None,
            // Envoy's default circuit breaker: 1024 connections per upstream cluster.
            // A burst of clients must not open thousands of connections to one
            // backend at once; one that can take more says so with `max_conns`.
            backend_max_conns: 1024,
            // Every client may wait: the queue is bounded by the client connections.
            backend_queue: 10_000,
        }
    }
}
