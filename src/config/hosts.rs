//! `[hosts]`: the host table validated, entry by entry and backend by backend, each
//! error pointing at the key or value it is about.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::bounds::{positive, tries};
use super::error::Invalid;
use super::raw::{RawBackend, RawHealth, RawHost};
use super::types::{
    BackendConfig, Balance, DnsName, HashKey, HealthCheck, HostEntryConfig, NamedBackend,
};
use super::values::{
    parse_backend, parse_backend_name, parse_dns_name, parse_host_key, parse_status_range,
};

/// `[hosts]`: the host table, in file order, keys unique (case-insensitively).
pub(super) fn hosts(
    raw: HashMap<String, RawHost>,
    text: &str,
) -> Result<Vec<HostEntryConfig>, Invalid> {
    let mut entries: Vec<_> = raw
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
    for (span, key, raw) in entries {
        let entry = host_entry(&key, span.clone(), &raw)?;
        if let Some(first) = seen.insert(entry.key(), key.clone()) {
            return Err((
                span,
                format!("duplicate host `{key}`: `{first}` already names it (host names are case-insensitive)"),
            ));
        }
        hosts.push(entry);
    }
    Ok(hosts)
}

/// One entry of the host table; `key_span` is where its key is written.
fn host_entry(
    key: &str,
    key_span: Range<usize>,
    raw: &RawHost,
) -> Result<HostEntryConfig, Invalid> {
    let (name, port) = parse_host_key(key).ok_or_else(|| {
        (
            key_span.clone(),
            format!("bad host name `{key}`: expected a name or IP, optionally with :PORT"),
        )
    })?;
    let balance = match &raw.balance {
        None => Balance::default(),
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
    let mut entry = HostEntryConfig {
        name,
        port,
        backends: Vec::new(),
        names: Vec::new(),
        balance,
        hash_key,
        max_body_bytes: raw.max_body_bytes,
        fail_open: raw.fail_open.unwrap_or(false),
        tries: tries(&raw.tries, "tries")?,
        health: raw.health.as_ref().map(health).transpose()?,
    };
    let list = raw.backends.get_ref();
    // An entry of names only may still resolve to nothing; that is the resolver's
    // business at run time, but an empty list is a mistake in the file.
    if list.is_empty() {
        let span = if raw.backends.span().is_empty() {
            key_span
        } else {
            raw.backends.span()
        };
        return Err((span, format!("host `{}` has no backends", entry.key())));
    }
    for b in list {
        let twice = |what: String| {
            Err((
                b.span(),
                format!(
                    "backend `{what}` is listed twice for host `{}`",
                    entry.key()
                ),
            ))
        };
        match backend(b)? {
            Backend::Addr(backend) => {
                if entry.backends.iter().any(|c| c.addr == backend.addr) {
                    return twice(backend.addr.to_string());
                }
                entry.backends.push(backend);
            }
            Backend::Name(named) => {
                if entry.names.iter().any(|n| n.name == named.name) {
                    return twice(named.name.to_string());
                }
                entry.names.push(named);
            }
        }
    }
    Ok(entry)
}

/// A backend: `"ip[:port]"`, `"name[:port]"`, `{ addr, weight, max_conns }` or `{ srv }`.
fn backend(b: &Spanned<RawBackend>) -> Result<Backend, Invalid> {
    let raw = b.get_ref();
    let name = match (&raw.addr, &raw.srv) {
        (Some(_), Some(_)) | (None, None) => {
            return Err((
                b.span(),
                "a backend table needs either `addr` or `srv`, not both".into(),
            ))
        }
        (None, Some(srv)) => {
            if let Some(w) = &raw.weight {
                return Err((
                    w.span(),
                    "an SRV backend takes its weights from the records: remove `weight`".into(),
                ));
            }
            let name = parse_dns_name(srv.get_ref()).ok_or_else(|| {
                (
                    srv.span(),
                    format!(
                        "bad SRV name `{}`: expected e.g. \"_http._tcp.api.service.consul\"",
                        srv.get_ref()
                    ),
                )
            })?;
            Some(DnsName::Srv(name))
        }
        (Some(addr), None) => match parse_backend(addr) {
            Some(_) => None,
            None => {
                let (name, port) = parse_backend_name(addr).ok_or_else(|| {
                    (
                        b.span(),
                        format!(
                            "bad backend address `{addr}`: expected IP, IP:PORT, NAME or NAME:PORT, e.g. \"10.0.0.5:8080\""
                        ),
                    )
                })?;
                Some(DnsName::Host { name, port })
            }
        },
    };
    let weight = match &raw.weight {
        None => 1,
        Some(w) if (1..=1000).contains(w.get_ref()) => *w.get_ref(),
        Some(w) => return Err((w.span(), "weight must be between 1 and 1000".into())),
    };
    let max_conns = match &raw.max_conns {
        Some(m) if *m.get_ref() == 0 => {
            return Err((m.span(), "max_conns must be at least 1".into()))
        }
        m => m.as_ref().map(|m| *m.get_ref()),
    };
    Ok(match (name, raw.addr.as_deref().and_then(parse_backend)) {
        (Some(name), _) => Backend::Name(NamedBackend {
            name,
            weight,
            max_conns,
        }),
        (None, Some(addr)) => Backend::Addr(BackendConfig {
            addr,
            weight,
            max_conns,
            priority: 0,
        }),
        (None, None) => return Err((b.span(), "a backend without an address".into())),
    })
}

/// `[hosts."name".health]`: an active HTTP check.
fn health(h: &RawHealth) -> Result<HealthCheck, Invalid> {
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

/// Where host key `key` is written: `"key"` quoted, or bare at the start of a line.
pub(super) fn key_span(text: &str, key: &str) -> Range<usize> {
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

/// A validated backend: an address, or a name resolved at run time.
enum Backend {
    /// `"ip[:port]"` or `{ addr = "ip[:port]" }`.
    Addr(BackendConfig),
    /// `"name[:port]"`, `{ addr = "name[:port]" }` or `{ srv = "..." }`.
    Name(NamedBackend),
}
