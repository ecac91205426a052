//! The resolver: hickory's, set up from `[dns]` (or `/etc/resolv.conf`), and one
//! resolution of a name sorted into what the watcher acts on: addresses with a TTL, an
//! authoritative "no such name / no records", or a failure that says nothing.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, Record};
use hickory_resolver::TokioResolver;

use super::srv::{self, SrvRecord};
use super::target::Target;
use crate::config::{Dns, DnsName};

/// What one resolution said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The name has these targets (sorted, no duplicates) for `ttl`.
    Found {
        /// The targets.
        targets: Vec<Target>,
        /// The smallest TTL among the records used (not clamped yet).
        ttl: Duration,
    },
    /// An authoritative answer that the name has no such records: NXDOMAIN
    /// (`nxdomain`), or NOERROR with no answer (RFC 2308 §2.2 "NODATA"), or SRV
    /// records none of whose targets has an address (a target "." is RFC 2782's
    /// "service decidedly not available").
    Missing {
        /// NXDOMAIN rather than an empty answer.
        nxdomain: bool,
        /// The negative-caching TTL (RFC 2308 §5: the SOA's minimum), if one came.
        ttl: Option<Duration>,
    },
    /// No usable answer: timeout, SERVFAIL, REFUSED, a network error.
    Failed(String),
}

/// A resolver for `dns`: its servers, else the system's (`/etc/resolv.conf`).
pub fn build(dns: &Dns) -> Result<TokioResolver, String> {
    let mut builder = if dns.servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?
    } else {
        let servers = dns
            .servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    let opts = builder.options_mut();
    opts.timeout = dns.timeout;
    opts.attempts = 1;
    // The watcher asks again when the TTL runs out; a cache would answer that question
    // with the answer that just expired.
    opts.cache_size = 0;
    builder
        .build()
        .map_err(|e| format!("cannot set up the resolver: {e}"))
}

/// `resolve`, bounded whatever the resolver does: a query may go to several servers,
/// over UDP then TCP, each within `dns.timeout`; a watcher must never hang on one.
pub async fn ask(resolver: &TokioResolver, name: &DnsName, dns: &Dns) -> Outcome {
    let limit = dns.timeout * 4 + Duration::from_secs(1);
    tokio::time::timeout(limit, resolve(resolver, name))
        .await
        .unwrap_or_else(|_| Outcome::Failed(format!("no answer within {limit:?}")))
}

/// Resolves `name` once. The addresses of an A/AAAA name get weight 1: the entry's
/// own weight for the name is applied with the rest of its options (`effective`).
pub async fn resolve(resolver: &TokioResolver, name: &DnsName) -> Outcome {
    match name {
        DnsName::Host { name, port } => match resolver.lookup_ip(name.as_str()).await {
            Ok(found) => {
                let ttl = min_ttl(found.as_lookup().answers());
                let targets = found
                    .iter()
                    .map(|ip| Target {
                        addr: SocketAddr::new(ip, *port),
                        weight: 1,
                        priority: 0,
                    })
                    .collect();
                found_or_missing(targets, ttl)
            }
            Err(e) => classify(e),
        },
        DnsName::Srv(name) => resolve_srv(resolver, name).await,
    }
}

/// An SRV name: its records, each target's addresses (from the additional section
/// when the server sent them, else looked up), the weights made relevo's.
async fn resolve_srv(resolver: &TokioResolver, name: &str) -> Outcome {
    let lookup = match resolver.srv_lookup(name).await {
        Ok(found) => found,
        Err(e) => return classify(e),
    };
    let mut ttl = min_ttl(lookup.answers());
    let mut records = Vec::new();
    for record in lookup.answers() {
        let RData::SRV(srv) = &record.data else {
            continue;
        };
        let target = srv.target.to_ascii();
        // RFC 2782: a target of "." means the service is decidedly not available.
        if srv.target.is_root() {
            continue;
        }
        let glued = addresses_in(lookup.additionals(), &target);
        let ips = if glued.is_empty() {
            match resolver.lookup_ip(srv.target.clone()).await {
                Ok(ips) => {
                    ttl = ttl.min(min_ttl(ips.as_lookup().answers()));
                    ips.iter().collect()
                }
                Err(e) => match classify(e) {
                    // A lookup that failed says nothing: dropping the target on it would
                    // let a resolver hiccup remove a backend. The last set stays.
                    Outcome::Failed(why) => {
                        return Outcome::Failed(format!("SRV target {target}: {why}"))
                    }
                    // The target is authoritatively gone: the others still serve.
                    _ => {
                        tracing::debug!(srv = name, target, "dns: SRV target has no address");
                        continue;
                    }
                },
            }
        } else {
            glued
        };
        for ip in ips {
            records.push(SrvRecord {
                addr: SocketAddr::new(ip, srv.port),
                priority: srv.priority,
                weight: srv.weight,
            });
        }
    }
    // No target left (every one "." or without an address): an empty answer.
    found_or_missing(srv::targets(&records), ttl)
}

/// Addresses of `target` among `records` (an SRV answer's additional section).
fn addresses_in(records: &[Record], target: &str) -> Vec<IpAddr> {
    records
        .iter()
        .filter(|r| r.name.to_ascii().eq_ignore_ascii_case(target))
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// The smallest TTL of `records` (RFC 2181 §5.2: an RRset has one TTL; across the
/// records used, the smallest decides when the answer is stale). 0 without records.
fn min_ttl(records: &[Record]) -> Duration {
    Duration::from_secs(u64::from(records.iter().map(|r| r.ttl).min().unwrap_or(0)))
}

/// Sorted, deduplicated targets; none is an empty answer.
fn found_or_missing(mut targets: Vec<Target>, ttl: Duration) -> Outcome {
    targets.sort();
    targets.dedup_by_key(|t| t.addr);
    if targets.is_empty() {
        Outcome::Missing {
            nxdomain: false,
            ttl: Some(ttl),
        }
    } else {
        Outcome::Found { targets, ttl }
    }
}

/// An error from hickory: an authoritative negative answer, or a failure.
fn classify(e: NetError) -> Outcome {
    match &e {
        NetError::Dns(DnsError::NoRecordsFound(none)) => Outcome::Missing {
            nxdomain: none.response_code == ResponseCode::NXDomain,
            ttl: none.negative_ttl.map(|s| Duration::from_secs(u64::from(s))),
        },
        _ => Outcome::Failed(e.to_string()),
    }
}
