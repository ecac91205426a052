//! Parsers for the value syntaxes of the file: durations, backend addresses, host
//! keys, status ranges and CONNECT rules.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::types::{ConnectRule, DEFAULT_BACKEND_PORT};

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

/// Parses a backend written as a DNS name, `name` or `name:port` (port 80 when
/// omitted, as for an IP). `None` for anything that is not a plausible name: a mistyped
/// IP (a name's last label is never all digits) or a single label (`"x"`, more often
/// a typo than a name; `"api.default"` reaches a Kubernetes Service all the same).
pub fn parse_backend_name(s: &str) -> Option<(String, u16)> {
    let (name, port) = match s.rsplit_once(':') {
        Some((name, port)) => (name, port.parse().ok().filter(|p| *p != 0)?),
        None => (s, DEFAULT_BACKEND_PORT),
    };
    let name = parse_dns_name(name)?;
    name.trim_end_matches('.')
        .contains('.')
        .then_some((name, port))
}

/// A DNS name (RFC 1035 §2.3.1 labels, plus `_` for SRV owner names), lower case. A
/// trailing dot is kept: it makes the name absolute, so the resolver does not try the
/// resolv.conf search list first (Kubernetes pods have `ndots:5`). `None` when it is
/// not a name.
pub fn parse_dns_name(s: &str) -> Option<String> {
    let name = s.to_ascii_lowercase();
    let labels: Vec<&str> = name.strip_suffix('.').unwrap_or(&name).split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let last_numeric = labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    (name.len() <= 253 && labels.iter().all(label_ok) && !last_numeric).then_some(name)
}

/// Splits a host-table key into a lower-case name and an optional explicit port.
/// Uses the request path's own host syntax, so every key can match a request.
pub fn parse_host_key(key: &str) -> Option<(String, Option<u16>)> {
    // The `http` crate's parse first, as the table's keys always had it.
    let key: http::uri::Authority = key.parse().ok()?;
    crate::http::host::split_authority(key.as_str()).ok()
}

/// Parses a CONNECT rule: `host:port` or `*.domain:port`.
pub fn parse_connect_rule(s: &str) -> Option<ConnectRule> {
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

/// Parses a status (`"200"`) or an inclusive range (`"200-399"`).
pub fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let (lo, hi): (u16, u16) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}
