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

/// Splits a host-table key into a lower-case name and an optional explicit port.
/// Uses the request path's own host syntax, so every key can match a request.
pub fn parse_host_key(key: &str) -> Option<(String, Option<u16>)> {
    crate::http::host::split_authority(&key.parse().ok()?).ok()
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
