//! The serde layer: the file as written, every field optional and spanned so that
//! validation can point at it.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::values::parse_duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) threads: Option<Spanned<usize>>,
    pub(super) access_log: Option<Spanned<RawAccessLog>>,
    pub(super) access_log_format: Option<Spanned<String>>,
    pub(super) log_level: Option<String>,
    #[serde(default)]
    pub(super) timeouts: RawTimeouts,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) passive: RawPassive,
    #[serde(default)]
    pub(super) retries: RawRetries,
    #[serde(default)]
    pub(super) connect: RawConnect,
    pub(super) admin: Option<Spanned<RawAdmin>>,
    #[serde(default)]
    pub(super) dns: RawDns,
    pub(super) tls: Option<Spanned<super::tls::RawTls>>,
    // Neither keys nor values are `Spanned`: toml cannot span `[hosts."name"]` tables.
    // Errors about an entry point at where its key is written (see `key_span`).
    #[serde(default)]
    pub(super) hosts: HashMap<String, RawHost>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) connect: Option<Spanned<DurationValue>>,
    pub(super) response: Option<Spanned<DurationValue>>,
    pub(super) client_header: Option<Spanned<DurationValue>>,
    pub(super) upstream_idle: Option<Spanned<DurationValue>>,
    pub(super) shutdown: Option<Spanned<DurationValue>>,
    pub(super) client_body: Option<Spanned<DurationValue>>,
    pub(super) client_send: Option<Spanned<DurationValue>>,
    pub(super) tunnel_idle: Option<Spanned<DurationValue>>,
    pub(super) queue: Option<Spanned<DurationValue>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_header_bytes: Option<Spanned<usize>>,
    pub(super) max_headers: Option<Spanned<usize>>,
    pub(super) max_body_bytes: Option<u64>,
    pub(super) max_connections: Option<Spanned<usize>>,
    pub(super) max_idle_per_backend: Option<usize>,
    pub(super) max_uri_bytes: Option<Spanned<usize>>,
    pub(super) upstream_read_buffer: Option<Spanned<usize>>,
    pub(super) max_requests_per_connection: Option<Spanned<u64>>,
    pub(super) backend_max_conns: Option<Spanned<usize>>,
    pub(super) backend_queue: Option<usize>,
    pub(super) h2_max_concurrent_streams: Option<Spanned<usize>>,
    pub(super) h2_max_pending_accept_reset_streams: Option<Spanned<usize>>,
    pub(super) h2_max_local_error_reset_streams: Option<Spanned<usize>>,
    pub(super) h2_max_client_resets: Option<Spanned<usize>>,
    pub(super) h2_stream_window_bytes: Option<Spanned<usize>>,
    pub(super) h2_connection_window_bytes: Option<Spanned<usize>>,
    pub(super) h2_max_send_buf_bytes: Option<Spanned<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPassive {
    pub(super) failures: Option<Spanned<u32>>,
    pub(super) eject: Option<Spanned<DurationValue>>,
    pub(super) max_eject: Option<Spanned<DurationValue>>,
    pub(super) statuses: Option<Vec<Spanned<u16>>>,
    pub(super) probe_interval: Option<Spanned<DurationValue>>,
}

/// `[dns]`: fields as `config::Dns`'s.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    #[serde(default)]
    pub(super) servers: Vec<Spanned<String>>,
    pub(super) min_ttl: Option<Spanned<DurationValue>>,
    pub(super) max_ttl: Option<Spanned<DurationValue>>,
    pub(super) hold: Option<Spanned<DurationValue>>,
    pub(super) timeout: Option<Spanned<DurationValue>>,
}

/// `access_log`: a switch or a path.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawAccessLog {
    /// `true` (stderr) or `false` (off).
    On(bool),
    /// A file.
    Path(String),
}

/// `[admin]`: fields as `config::Admin`'s.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) token: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnect {
    #[serde(default)]
    pub(super) allow: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetries {
    pub(super) tries: Option<Spanned<u32>>,
    pub(super) budget: Option<Spanned<DurationValue>>,
    pub(super) replay_body_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub(super) path: Option<Spanned<String>>,
    pub(super) interval: Option<Spanned<DurationValue>>,
    pub(super) timeout: Option<Spanned<DurationValue>>,
    pub(super) rise: Option<Spanned<u32>>,
    pub(super) fall: Option<Spanned<u32>>,
    pub(super) expect: Option<Spanned<String>>,
}

/// A backend written as `"ip[:port]"`, `"name[:port]"`, `{ addr = "...", weight = N }`
/// or `{ srv = "_service._proto.name" }`.
pub(super) struct RawBackend {
    pub(super) addr: Option<String>,
    pub(super) srv: Option<Spanned<String>>,
    pub(super) weight: Option<Spanned<u32>>,
    pub(super) max_conns: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackendTable {
    pub(super) addr: Option<String>,
    pub(super) srv: Option<Spanned<String>>,
    pub(super) weight: Option<Spanned<u32>>,
    pub(super) max_conns: Option<Spanned<usize>>,
}

impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BackendVisitor;
        impl<'de> Visitor<'de> for BackendVisitor {
            type Value = RawBackend;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"ip:port\", \"name:port\", { addr = \"ip:port\", weight = N } or { srv = \"_http._tcp.name\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawBackend, E> {
                Ok(RawBackend {
                    addr: Some(v.to_string()),
                    srv: None,
                    weight: None,
                    max_conns: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBackend, A::Error> {
                let t = RawBackendTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawBackend {
                    addr: t.addr,
                    srv: t.srv,
                    weight: t.weight,
                    max_conns: t.max_conns,
                })
            }
        }
        d.deserialize_any(BackendVisitor)
    }
}

/// A host entry: the lab's plain list of backends, or a table with options.
pub(super) struct RawHost {
    pub(super) backends: Spanned<Vec<Spanned<RawBackend>>>,
    pub(super) balance: Option<Spanned<String>>,
    pub(super) hash_key: Option<Spanned<String>>,
    pub(super) max_body_bytes: Option<u64>,
    pub(super) fail_open: Option<bool>,
    pub(super) tries: Option<Spanned<u32>>,
    pub(super) health: Option<RawHealth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHostTable {
    pub(super) backends: Spanned<Vec<Spanned<RawBackend>>>,
    pub(super) balance: Option<Spanned<String>>,
    pub(super) hash_key: Option<Spanned<String>>,
    pub(super) max_body_bytes: Option<u64>,
    pub(super) fail_open: Option<bool>,
    pub(super) tries: Option<Spanned<u32>>,
    pub(super) health: Option<RawHealth>,
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
pub(super) struct DurationValue(pub(super) Duration);

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
