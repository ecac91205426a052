//! The TOML configuration: parsing, defaults and validation with file:line:column errors.
//!
//! The lab's host table stays a one-liner per site (`"host" = ["ip", "ip:port"]`); a
//! table form (`[hosts."name"]`) carries per-host options.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// Port used for a backend written as a bare IP, as in the lab.
pub const DEFAULT_BACKEND_PORT: u16 = 80;

/// A validated configuration, ready to build the proxy's state from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the proxy listens on.
    pub listen: SocketAddr,
    /// Worker threads; `None` means one per CPU.
    pub threads: Option<usize>,
    /// Log one line per request at info level.
    pub access_log: bool,
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
    pub hosts: Vec<HostConfig>,
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
    /// Longest request target in bytes; longer gets 414.
    pub max_uri_bytes: usize,
    /// Largest read buffer of an upstream connection: the largest response head a
    /// backend may send, and how much of a body one read takes.
    pub upstream_read_buffer: usize,
    /// Requests served on one client connection before it is closed; `None` = no limit.
    pub max_requests_per_connection: Option<u64>,
}

/// One entry of the host table.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Lower-case host name as written (IPv6 without brackets).
    pub name: String,
    /// Port, when the entry lists one explicitly (`"app.test:8080"`).
    pub port: Option<u16>,
    /// Backends in file order.
    pub backends: Vec<BackendConfig>,
    /// How requests are spread over the backends.
    pub balance: Balance,
    /// What `balance = "hash"` hashes.
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
        BackendConfig { addr, weight: 1 }
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

impl HostConfig {
    /// An entry for `name` over `backends` (weight 1) with every option at its default.
    pub fn new(name: &str, backends: &[SocketAddr]) -> HostConfig {
        HostConfig {
            name: name.to_ascii_lowercase(),
            port: None,
            backends: backends.iter().map(|&addr| addr.into()).collect(),
            balance: Balance::RoundRobin,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round-robin, as nginx's.
    RoundRobin,
    /// Weighted random (the lab's choice, with weights).
    Random,
    /// Fewest in-flight requests per unit of weight.
    LeastConn,
    /// Power of two random choices on in-flight requests, peak-EWMA latency breaking ties.
    P2c,
    /// Consistent hashing (ketama ring) on `hash_key`.
    Hash,
}

impl Balance {
    /// The names accepted in `balance = "..."`.
    pub const NAMES: [&'static str; 5] = ["round-robin", "random", "least-conn", "p2c", "hash"];

    /// The algorithm called `name` in the configuration.
    pub fn from_name(name: &str) -> Option<Balance> {
        match name {
            "round-robin" => Some(Balance::RoundRobin),
            "random" => Some(Balance::Random),
            "least-conn" => Some(Balance::LeastConn),
            "p2c" => Some(Balance::P2c),
            "hash" => Some(Balance::Hash),
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
        }
    }
}

/// A configuration that could not be loaded, with where in the file it went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid, at a known place.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, in one line.
        message: String,
    },
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let at = |span: Option<Range<usize>>, message: String| {
            let (line, column) = line_col(text, span.map_or(0, |s| s.start));
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| at(e.span(), one_line(e.message())))?;
        raw.validate(text)
            .map_err(|(span, msg)| at(Some(span), msg))
    }

    /// A configuration for tests and the demo: the given hosts, every default.
    pub fn with_hosts(listen: SocketAddr, hosts: Vec<HostConfig>) -> Config {
        Config {
            listen,
            threads: None,
            access_log: true,
            log_level: "info".into(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            passive: Passive::default(),
            retries: Retries::default(),
            connect_allow: Vec::new(),
            hosts,
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
            max_uri_bytes: 8192,
            // A 64 KiB body plus its head in one read: measured 30% less CPU per request
            // than 64 KiB on 64 KiB responses (BENCHMARKS.md).
            upstream_read_buffer: 128 * 1024,
            max_requests_per_connection: None,
        }
    }
}

fn one_line(s: &str) -> String {
    s.trim().replace('\n', "; ")
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

type Invalid = (Range<usize>, String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    threads: Option<Spanned<usize>>,
    access_log: Option<bool>,
    log_level: Option<String>,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    passive: RawPassive,
    #[serde(default)]
    retries: RawRetries,
    #[serde(default)]
    connect: RawConnect,
    // Neither keys nor values are `Spanned`: toml cannot span `[hosts."name"]` tables.
    // Errors about an entry point at where its key is written (see `key_span`).
    #[serde(default)]
    hosts: HashMap<String, RawHost>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect: Option<Spanned<DurationValue>>,
    response: Option<Spanned<DurationValue>>,
    client_header: Option<Spanned<DurationValue>>,
    upstream_idle: Option<Spanned<DurationValue>>,
    shutdown: Option<Spanned<DurationValue>>,
    client_body: Option<Spanned<DurationValue>>,
    client_send: Option<Spanned<DurationValue>>,
    tunnel_idle: Option<Spanned<DurationValue>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_header_bytes: Option<Spanned<usize>>,
    max_headers: Option<Spanned<usize>>,
    max_body_bytes: Option<u64>,
    max_connections: Option<Spanned<usize>>,
    max_idle_per_backend: Option<usize>,
    max_uri_bytes: Option<Spanned<usize>>,
    upstream_read_buffer: Option<Spanned<usize>>,
    max_requests_per_connection: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPassive {
    failures: Option<Spanned<u32>>,
    eject: Option<Spanned<DurationValue>>,
    max_eject: Option<Spanned<DurationValue>>,
    statuses: Option<Vec<Spanned<u16>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConnect {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetries {
    tries: Option<Spanned<u32>>,
    budget: Option<Spanned<DurationValue>>,
    replay_body_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: Option<Spanned<String>>,
    interval: Option<Spanned<DurationValue>>,
    timeout: Option<Spanned<DurationValue>>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
    expect: Option<Spanned<String>>,
}

/// A backend written as `"ip[:port]"` or `{ addr = "ip[:port]", weight = N }`.
struct RawBackend {
    addr: String,
    weight: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackendTable {
    addr: String,
    weight: Option<Spanned<u32>>,
}

impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BackendVisitor;
        impl<'de> Visitor<'de> for BackendVisitor {
            type Value = RawBackend;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"ip:port\" or { addr = \"ip:port\", weight = N }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawBackend, E> {
                Ok(RawBackend {
                    addr: v.to_string(),
                    weight: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBackend, A::Error> {
                let t = RawBackendTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawBackend {
                    addr: t.addr,
                    weight: t.weight,
                })
            }
        }
        d.deserialize_any(BackendVisitor)
    }
}

/// A host entry: the lab's plain list of backends, or a table with options.
struct RawHost {
    backends: Spanned<Vec<Spanned<RawBackend>>>,
    balance: Option<Spanned<String>>,
    hash_key: Option<Spanned<String>>,
    max_body_bytes: Option<u64>,
    fail_open: Option<bool>,
    tries: Option<Spanned<u32>>,
    health: Option<RawHealth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostTable {
    backends: Spanned<Vec<Spanned<RawBackend>>>,
    balance: Option<Spanned<String>>,
    hash_key: Option<Spanned<String>>,
    max_body_bytes: Option<u64>,
    fail_open: Option<bool>,
    tries: Option<Spanned<u32>>,
    health: Option<RawHealth>,
}

impl<'de> Deserialize<'de> for RawHost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HostVisitor;
        impl<'de> Visitor<'de> for HostVisitor {
            type Value = RawHost;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of backends or a table with `backends = [...]`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawHost, A::Error> {
                let mut list = Vec::new();
                while let Some(b) = seq.next_element::<Spanned<RawBackend>>()? {
                    list.push(b);
                }
                // The list's own span is not visible here; the key's span stands in.
                Ok(RawHost {
                    backends: Spanned::new(0..0, list),
                    balance: None,
                    hash_key: None,
                    max_body_bytes: None,
                    fail_open: None,
                    tries: None,
                    health: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawHost, A::Error> {
                let t = RawHostTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawHost {
                    backends: t.backends,
                    balance: t.balance,
                    hash_key: t.hash_key,
                    max_body_bytes: t.max_body_bytes,
                    fail_open: t.fail_open,
                    tries: t.tries,
                    health: t.health,
                })
            }
        }
        d.deserialize_any(HostVisitor)
    }
}

/// A duration written as `"250ms"`, `"5s"`, `"2m"`, `"1h"` or a number of seconds.
#[derive(Clone, Copy)]
struct DurationValue(Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DurVisitor;
        impl Visitor<'_> for DurVisitor {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"250ms\", \"5s\", \"2m\" or a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                u64::try_from(v)
                    .map(|s| DurationValue(Duration::from_secs(s)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationValue, E> {
                Duration::try_from_secs_f64(v)
                    .map(DurationValue)
                    .map_err(|_| E::custom("a duration must be a finite, non-negative number"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                parse_duration(v).map(DurationValue).ok_or_else(|| {
                    E::custom(format!(
                        "bad duration `{v}`: expected a number and a unit (ms, s, m, h), e.g. \"5s\""
                    ))
                })
            }
        }
        d.deserialize_any(DurVisitor)
    }
}

/// Parses `"250ms"`, `"5s"`, `"1.5s"`, `"2m"` or `"1h"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// Parses a backend written as `ip`, `ip:port`, `[v6]` or `[v6]:port`.
pub fn parse_backend(s: &str) -> Option<SocketAddr> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, DEFAULT_BACKEND_PORT))
}

/// Splits a host-table key into a lower-case name and an optional explicit port.
/// Uses the router's own host syntax, so every key can match a request.
pub fn parse_host_key(key: &str) -> Option<(String, Option<u16>)> {
    crate::router::split_authority(&key.parse().ok()?).ok()
}

impl RawConfig {
    fn validate(self, text: &str) -> Result<Config, Invalid> {
        let defaults = Config::with_hosts(SocketAddr::from(([127, 0, 0, 1], 8080)), Vec::new());
        let listen = match &self.listen {
            None => defaults.listen,
            Some(l) => l.get_ref().parse().map_err(|_| {
                (
                    l.span(),
                    format!(
                        "bad listen address `{}`: expected IP:PORT, e.g. \"0.0.0.0:8080\"",
                        l.get_ref()
                    ),
                )
            })?,
        };
        if let Some(t) = &self.threads {
            if *t.get_ref() == 0 {
                return Err((t.span(), "threads must be at least 1".into()));
            }
        }
        let t = &self.timeouts;
        let d = &defaults.timeouts;
        let timeouts = Timeouts {
            connect: positive(&t.connect, d.connect, "timeouts.connect")?,
            response: positive(&t.response, d.response, "timeouts.response")?,
            client_header: positive(&t.client_header, d.client_header, "timeouts.client_header")?,
            upstream_idle: positive(&t.upstream_idle, d.upstream_idle, "timeouts.upstream_idle")?,
            shutdown: t.shutdown.as_ref().map_or(d.shutdown, |s| s.get_ref().0),
            client_body: positive(&t.client_body, d.client_body, "timeouts.client_body")?,
            client_send: positive(&t.client_send, d.client_send, "timeouts.client_send")?,
            tunnel_idle: positive(&t.tunnel_idle, d.tunnel_idle, "timeouts.tunnel_idle")?,
        };
        let l = &self.limits;
        let dl = &defaults.limits;
        let limits = Limits {
            max_header_bytes: at_least(
                &l.max_header_bytes,
                dl.max_header_bytes,
                8192,
                "limits.max_header_bytes",
            )?,
            max_headers: at_least(&l.max_headers, dl.max_headers, 1, "limits.max_headers")?,
            max_body_bytes: l.max_body_bytes,
            max_connections: at_least(
                &l.max_connections,
                dl.max_connections,
                1,
                "limits.max_connections",
            )?,
            max_idle_per_backend: l.max_idle_per_backend.unwrap_or(dl.max_idle_per_backend),
            max_uri_bytes: at_least(
                &l.max_uri_bytes,
                dl.max_uri_bytes,
                64,
                "limits.max_uri_bytes",
            )?,
            upstream_read_buffer: at_least(
                &l.upstream_read_buffer,
                dl.upstream_read_buffer,
                8192,
                "limits.upstream_read_buffer",
            )?,
            max_requests_per_connection: match &l.max_requests_per_connection {
                Some(m) if *m.get_ref() == 0 => {
                    return Err((
                        m.span(),
                        "limits.max_requests_per_connection must be at least 1".into(),
                    ))
                }
                m => m.as_ref().map(|m| *m.get_ref()),
            },
        };

        let mut entries: Vec<_> = self
            .hosts
            .into_iter()
            .map(|(k, v)| (key_span(text, &k), k, v))
            .collect();
        entries.sort_by_key(|(span, _, _)| span.start);
        if entries.is_empty() {
            return Err((
                0..0,
                "the host table is empty: add at least one `\"host\" = [\"ip:port\"]`".into(),
            ));
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut hosts = Vec::with_capacity(entries.len());
        for (key_span, key, raw) in entries {
            let (name, port) = parse_host_key(&key).ok_or_else(|| {
                (
                    key_span.clone(),
                    format!(
                        "bad host name `{}`: expected a name or IP, optionally with :PORT",
                        key
                    ),
                )
            })?;
            let balance = match &raw.balance {
                None => Balance::RoundRobin,
                Some(b) => Balance::from_name(b.get_ref()).ok_or_else(|| {
                    (
                        b.span(),
                        format!(
                            "unknown balance `{}`: expected one of {}",
                            b.get_ref(),
                            Balance::NAMES.join(", ")
                        ),
                    )
                })?,
            };
            let hash_key = match &raw.hash_key {
                None => HashKey::ClientIp,
                Some(k) => HashKey::parse(k.get_ref()).ok_or_else(|| {
                    (
                        k.span(),
                        format!(
                            "bad hash_key `{}`: expected client-ip, path, header:NAME or cookie:NAME",
                            k.get_ref()
                        ),
                    )
                })?,
            };
            let tries = match &raw.tries {
                Some(t) if *t.get_ref() == 0 => {
                    return Err((t.span(), "tries must be at least 1 (1 = no retry)".into()))
                }
                t => t.as_ref().map(|t| *t.get_ref()),
            };
            let health = raw.health.as_ref().map(validate_health).transpose()?;
            let host = HostConfig {
                name,
                port,
                backends: Vec::new(),
                balance,
                hash_key,
                max_body_bytes: raw.max_body_bytes,
                fail_open: raw.fail_open.unwrap_or(false),
                tries,
                health,
            };
            if let Some(first) = seen.insert(host.key(), key.clone()) {
                return Err((
                    key_span,
                    format!("duplicate host `{}`: `{first}` already names it (host names are case-insensitive)", key),
                ));
            }
            let list = raw.backends.get_ref();
            if list.is_empty() {
                let span = if raw.backends.span().is_empty() {
                    key_span
                } else {
                    raw.backends.span()
                };
                return Err((span, format!("host `{}` has no backends", host.key())));
            }
            let mut backends = Vec::with_capacity(list.len());
            for b in list {
                let addr = parse_backend(&b.get_ref().addr).ok_or_else(|| {
                    (
                        b.span(),
                        format!("bad backend address `{}`: expected IP or IP:PORT, e.g. \"10.0.0.5:8080\"", b.get_ref().addr),
                    )
                })?;
                if backends.iter().any(|c: &BackendConfig| c.addr == addr) {
                    return Err((
                        b.span(),
                        format!("backend `{addr}` is listed twice for host `{}`", host.key()),
                    ));
                }
                let weight = match &b.get_ref().weight {
                    None => 1,
                    Some(w) if (1..=1000).contains(w.get_ref()) => *w.get_ref(),
                    Some(w) => return Err((w.span(), "weight must be between 1 and 1000".into())),
                };
                backends.push(BackendConfig { addr, weight });
            }
            hosts.push(HostConfig { backends, ..host });
        }
        Ok(Config {
            listen,
            threads: self.threads.map(|t| t.into_inner()),
            access_log: self.access_log.unwrap_or(true),
            log_level: self.log_level.unwrap_or(defaults.log_level),
            timeouts,
            limits,
            passive: self.passive.validate()?,
            retries: self.retries.validate()?,
            connect_allow: self
                .connect
                .allow
                .iter()
                .map(|rule| {
                    parse_connect_rule(rule.get_ref()).ok_or_else(|| {
                        (
                            rule.span(),
                            format!(
                                "connect.allow `{}`: expected HOST:PORT or *.DOMAIN:PORT",
                                rule.get_ref()
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            hosts,
        })
    }
}

impl RawPassive {
    fn validate(&self) -> Result<Passive, Invalid> {
        let d = Passive::default();
        let failures = match &self.failures {
            Some(f) if *f.get_ref() == 0 => {
                return Err((f.span(), "passive.failures must be at least 1".into()))
            }
            f => f.as_ref().map_or(d.failures, |f| *f.get_ref()),
        };
        let eject = positive(&self.eject, d.eject, "passive.eject")?;
        let max_eject = positive(&self.max_eject, d.max_eject.max(eject), "passive.max_eject")?;
        if max_eject < eject {
            let span = self.max_eject.as_ref().map_or(0..0, |m| m.span());
            return Err((
                span,
                "passive.max_eject must not be shorter than passive.eject".into(),
            ));
        }
        let mut statuses = Vec::new();
        for st in self.statuses.iter().flatten() {
            if !(500..=599).contains(st.get_ref()) {
                return Err((
                    st.span(),
                    format!("passive.statuses: {} is not a 5xx status", st.get_ref()),
                ));
            }
            statuses.push(*st.get_ref());
        }
        Ok(Passive {
            failures,
            eject,
            max_eject,
            statuses,
        })
    }
}

impl RawRetries {
    fn validate(&self) -> Result<Retries, Invalid> {
        let d = Retries::default();
        let tries = match &self.tries {
            Some(t) if *t.get_ref() == 0 => {
                return Err((
                    t.span(),
                    "retries.tries must be at least 1 (1 = no retry)".into(),
                ))
            }
            t => t.as_ref().map_or(d.tries, |t| *t.get_ref()),
        };
        Ok(Retries {
            tries,
            budget: positive(&self.budget, d.budget, "retries.budget")?,
            replay_body_bytes: self.replay_body_bytes.unwrap_or(d.replay_body_bytes),
        })
    }
}

fn validate_health(h: &RawHealth) -> Result<HealthCheck, Invalid> {
    let path = match &h.path {
        None => "/".to_string(),
        Some(p)
            if p.get_ref().starts_with('/')
                && p.get_ref().parse::<http::uri::PathAndQuery>().is_ok() =>
        {
            p.get_ref().clone()
        }
        Some(p) => {
            return Err((
                p.span(),
                format!(
                    "health.path `{}` must be a path starting with /",
                    p.get_ref()
                ),
            ))
        }
    };
    let count = |v: &Option<Spanned<u32>>, default: u32, name: &str| match v {
        Some(c) if *c.get_ref() == 0 => {
            Err((c.span(), format!("health.{name} must be at least 1")))
        }
        c => Ok(c.as_ref().map_or(default, |c| *c.get_ref())),
    };
    let expect = match &h.expect {
        None => (200, 399),
        Some(e) => parse_status_range(e.get_ref()).ok_or_else(|| {
            (
                e.span(),
                format!(
                    "health.expect `{}`: expected a status or a range such as \"200-399\"",
                    e.get_ref()
                ),
            )
        })?,
    };
    Ok(HealthCheck {
        path,
        interval: positive(&h.interval, Duration::from_secs(2), "health.interval")?,
        timeout: positive(&h.timeout, Duration::from_secs(1), "health.timeout")?,
        rise: count(&h.rise, 2, "rise")?,
        fall: count(&h.fall, 3, "fall")?,
        expect,
    })
}

fn parse_connect_rule(s: &str) -> Option<ConnectRule> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let bare = host.strip_prefix("*.").unwrap_or(host);
    let (name, no_port) = parse_host_key(bare)?;
    (no_port.is_none() && !name.is_empty()).then(|| ConnectRule {
        host: if host.starts_with("*.") {
            format!("*.{name}")
        } else {
            name
        },
        port,
    })
}

fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let (lo, hi): (u16, u16) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}

/// Where host key `key` is written: `"key"` quoted, or bare at the start of a line.
fn key_span(text: &str, key: &str) -> Range<usize> {
    let quoted = format!("\"{key}\"");
    if let Some(i) = text.find(&quoted) {
        return i..i + quoted.len();
    }
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with(key) && trimmed[key.len()..].trim_start().starts_with('=') {
            let start = offset + (line.len() - trimmed.len());
            return start..start + key.len();
        }
        offset += line.len();
    }
    0..0
}

fn positive(
    v: &Option<Spanned<DurationValue>>,
    default: Duration,
    name: &str,
) -> Result<Duration, Invalid> {
    match v {
        None => Ok(default),
        Some(s) if s.get_ref().0.is_zero() => {
            Err((s.span(), format!("{name} must be greater than zero")))
        }
        Some(s) => Ok(s.get_ref().0),
    }
}

fn at_least(
    v: &Option<Spanned<usize>>,
    default: usize,
    min: usize,
    name: &str,
) -> Result<usize, Invalid> {
    match v {
        None => Ok(default),
        Some(s) if *s.get_ref() < min => Err((s.span(), format!("{name} must be at least {min}"))),
        Some(s) => Ok(*s.get_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    fn assert_errors(cases: &[(&str, &str)]) {
        for (text, want) in cases {
            let got = parse(text).unwrap_err();
            assert!(
                got.starts_with(want),
                "for {text:?}\n got: {got}\nwant: {want}"
            );
        }
    }

    #[test]
    fn lab_table_is_accepted_as_written() {
        let c = parse(
            r#"
listen = "127.0.0.1:8080"

[hosts]
"app.test"  = ["127.0.0.1:19101", "127.0.0.1:19102"]
"solo.test" = ["127.0.0.1:19103"]
"legacy.test" = ["127.0.0.1"]                # port 80 when omitted
"#,
        )
        .unwrap();
        assert_eq!(c.hosts.len(), 3);
        assert_eq!(c.hosts[0].name, "app.test");
        assert_eq!(
            c.hosts[2].backends,
            vec![BackendConfig::from(
                "127.0.0.1:80".parse::<SocketAddr>().unwrap()
            )]
        );
    }

    #[test]
    fn long_form_and_mixed() {
        let c = parse(
            r#"
[hosts]
"solo.test" = ["127.0.0.1:1"]
[hosts."App.Test"]
backends = ["127.0.0.1:19101", "[::1]:19102"]
balance = "random"
"#,
        )
        .unwrap();
        let app = c.hosts.iter().find(|h| h.name == "app.test").unwrap();
        assert_eq!(app.balance, Balance::Random);
        assert_eq!(app.backends[1].addr, "[::1]:19102".parse().unwrap());
    }

    #[test]
    fn errors_name_line_and_problem() {
        let cases = [
            (
                "[hosts]\n\"a\" = [\"1.2.3\"]\n",
                "t.toml:2:8: bad backend address `1.2.3`",
            ),
            (
                "[hosts]\n\"a\" = []\n",
                "t.toml:2:1: host `a` has no backends",
            ),
            (
                "[hosts]\n\"a\" = [\"1.1.1.1\"]\n\"A\" = [\"1.1.1.2\"]\n",
                "t.toml:3:1: duplicate host `A`",
            ),
            (
                "bogus = 1\n[hosts]\n\"a\" = [\"1.1.1.1\"]\n",
                "t.toml:1:1: unknown field `bogus`",
            ),
            (
                "[hosts.\"a\"]\nbackends = [\"1.1.1.1\"]\nbalance = \"fastest\"\n",
                "t.toml:3:11: unknown balance `fastest`: expected one of round-robin, random",
            ),
            (
                "listen = \"nope\"\n[hosts]\n\"a\" = [\"1.1.1.1\"]\n",
                "t.toml:1:10: bad listen address `nope`",
            ),
            (
                "[timeouts]\nconnect = \"5 parsecs\"\n[hosts]\n\"a\" = [\"1.1.1.1\"]\n",
                "t.toml:2:11: bad duration",
            ),
            ("[hosts]\n", "t.toml:1:1: the host table is empty"),
            (
                "[hosts.\"a\"]\nbackends = []\n",
                "t.toml:2:12: host `a` has no backends",
            ),
            (
                "[hosts.\"a\"]\nbackends = [\"x\"]\n",
                "t.toml:2:13: bad backend address `x`",
            ),
            (
                "[hosts.\"a b\"]\nbackends = [\"1.1.1.1\"]\n",
                "t.toml:1:8: bad host name `a b`",
            ),
            (
                "listen = \"127.0.0.1:1\"\n",
                "t.toml:1:1: the host table is empty",
            ),
            (
                "[hosts]\n\"a\" = [\"1.1.1.1\", \"1.1.1.1:80\"]\n",
                "t.toml:2:19: backend `1.1.1.1:80` is listed twice",
            ),
        ];
        assert_errors(&cases);
    }

    #[test]
    fn balancing_health_and_retry_options() {
        let c = parse(
            r#"
[passive]
failures = 5
eject = "1s"
statuses = [502, 503]
[retries]
tries = 2
budget = "5s"
[hosts."app.test"]
backends = ["127.0.0.1:1", { addr = "127.0.0.1:2", weight = 3 }]
balance = "hash"
hash_key = "cookie:sid"
fail_open = true
tries = 4
[hosts."app.test".health]
path = "/healthz"
interval = "500ms"
expect = "200-299"
"#,
        )
        .unwrap();
        let h = &c.hosts[0];
        assert_eq!(h.backends[1].weight, 3);
        assert_eq!(h.balance, Balance::Hash);
        assert_eq!(h.hash_key, HashKey::Cookie("sid".into()));
        assert!(h.fail_open);
        assert_eq!(h.tries, Some(4));
        let hc = h.health.as_ref().unwrap();
        assert_eq!(
            (hc.path.as_str(), hc.interval, hc.expect, hc.rise, hc.fall),
            ("/healthz", Duration::from_millis(500), (200, 299), 2, 3)
        );
        assert_eq!(
            (c.passive.failures, c.passive.statuses.clone()),
            (5, vec![502, 503])
        );
        assert_eq!(
            (c.retries.tries, c.retries.budget),
            (2, Duration::from_secs(5))
        );
    }

    #[test]
    fn option_errors_name_line_and_problem() {
        let cases = [
            ("[hosts]\n\"a\" = [{ addr = \"1.1.1.1\", weight = 0 }]\n", "t.toml:2:37: weight must be between 1 and 1000"),
            ("[hosts.\"a\"]\nbackends = [\"1.1.1.1\"]\nhash_key = \"body\"\n", "t.toml:3:12: bad hash_key `body`"),
            ("[hosts.\"a\"]\nbackends = [\"1.1.1.1\"]\n[hosts.\"a\".health]\nexpect = \"299-200\"\n", "t.toml:4:10: health.expect `299-200`"),
            ("[hosts.\"a\"]\nbackends = [\"1.1.1.1\"]\n[hosts.\"a\".health]\npath = \"healthz\"\n", "t.toml:4:8: health.path `healthz` must be a path"),
            ("[passive]\nstatuses = [404]\n[hosts]\n\"a\" = [\"1.1.1.1\"]\n", "t.toml:2:13: passive.statuses: 404 is not a 5xx status"),
            ("[retries]\ntries = 0\n[hosts]\n\"a\" = [\"1.1.1.1\"]\n", "t.toml:2:9: retries.tries must be at least 1"),
            ("[hosts]\n\"a\" = [{ addr = \"1.1.1.1\", wieght = 2 }]\n", "t.toml:2:"),
        ];
        assert_errors(&cases);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
