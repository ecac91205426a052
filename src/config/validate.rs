//! From the file as written ([`super::raw`]) to the validated [`Config`]: one function
//! per section, each error pointing at the value it is about.

use std::net::SocketAddr;
use std::path::Path;

use toml::Spanned;

use super::bounds::{at_least, h2, not_shorter, positive, tries};
use super::error::Invalid;
use super::hosts::{hosts, key_span};
use super::raw::{
    RawAccessLog, RawAdmin, RawConfig, RawConnect, RawDns, RawLimits, RawPassive, RawRetries,
    RawTimeouts,
};
use super::tls;
use super::types::{
    AccessLogFormat, AccessLogTarget, Admin, Config, ConnectRule, Dns, Limits, Passive, Retries,
    Timeouts,
};
use super::values::parse_connect_rule;

/// Validates the whole file; `text` locates host keys, which toml cannot span.
/// Problems that do not stop the file from loading (host entries no certificate covers)
/// come back beside the configuration; relative paths are read from `base`.
pub(super) fn config(
    raw: RawConfig,
    text: &str,
    base: &Path,
) -> Result<(Config, Vec<Invalid>), Invalid> {
    let defaults = Config::with_hosts(SocketAddr::from(([127, 0, 0, 1], 8080)), Vec::new());
    let listen = match &raw.listen {
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
    if let Some(t) = &raw.threads {
        if *t.get_ref() == 0 {
            return Err((t.span(), "threads must be at least 1".into()));
        }
    }
    let hosts = hosts(raw.hosts, text)?;
    let tls = raw
        .tls
        .as_ref()
        .map(|t| tls::validate(t, base))
        .transpose()?;
    let warnings = tls.as_ref().map_or_else(Vec::new, |t| {
        hosts
            .iter()
            .filter(|h| !t.covers(&h.name))
            .map(|h| {
                let key = h.key();
                (
                    key_span(text, &key),
                    format!("warning: no tls certificate covers host `{key}`"),
                )
            })
            .collect()
    });
    let config = Config {
        listen,
        threads: raw.threads.map(|t| t.into_inner()),
        access_log: access_log_target(raw.access_log.as_ref())?,
        access_log_format: access_log_format(raw.access_log_format.as_ref())?,
        log_level: raw.log_level.unwrap_or(defaults.log_level),
        timeouts: timeouts(&raw.timeouts)?,
        limits: limits(&raw.limits)?,
        passive: passive(&raw.passive)?,
        retries: retries(&raw.retries)?,
        connect_allow: connect(&raw.connect)?,
        hosts,
        admin: raw.admin.as_ref().map(admin).transpose()?,
        dns: dns(&raw.dns)?,
        tls: tls.map(std::sync::Arc::new),
        warnings: Vec::new(),
    };
    Ok((config, warnings))
}

/// `[dns]`: name servers and how long answers are kept.
fn dns(d: &RawDns) -> Result<Dns, Invalid> {
    let defaults = Dns::default();
    let servers = d
        .servers
        .iter()
        .map(|s| {
            let text = s.get_ref();
            text.parse::<SocketAddr>()
                .or_else(|_| text.parse().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    (
                        s.span(),
                        format!("bad dns.servers entry `{text}`: expected IP or IP:PORT, e.g. \"127.0.0.1:5353\""),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let min_ttl = positive(&d.min_ttl, defaults.min_ttl, "dns.min_ttl")?;
    let max_ttl = positive(&d.max_ttl, defaults.max_ttl.max(min_ttl), "dns.max_ttl")?;
    not_shorter(min_ttl, (max_ttl, &d.max_ttl), "dns.max_ttl", "dns.min_ttl")?;
    Ok(Dns {
        servers,
        min_ttl,
        max_ttl,
        // 0 is allowed: an NXDOMAIN then removes the name's backends at once.
        hold: d.hold.as_ref().map_or(defaults.hold, |h| h.get_ref().0),
        timeout: positive(&d.timeout, defaults.timeout, "dns.timeout")?,
    })
}

/// `access_log = true | false | "PATH"`.
fn access_log_target(v: Option<&Spanned<RawAccessLog>>) -> Result<AccessLogTarget, Invalid> {
    Ok(match v.map(|v| (v.get_ref(), v.span())) {
        None | Some((RawAccessLog::On(true), _)) => AccessLogTarget::Stderr,
        Some((RawAccessLog::On(false), _)) => AccessLogTarget::Off,
        Some((RawAccessLog::Path(p), span)) if p.trim().is_empty() => {
            return Err((
                span,
                "access_log: an empty path; use true, false or a file".into(),
            ))
        }
        Some((RawAccessLog::Path(p), _)) => AccessLogTarget::File(p.into()),
    })
}

/// `access_log_format = "text" | "json" | "combined"`.
fn access_log_format(v: Option<&Spanned<String>>) -> Result<AccessLogFormat, Invalid> {
    Ok(match v.map(|v| (v.get_ref().as_str(), v.span())) {
        None | Some(("text", _)) => AccessLogFormat::Text,
        Some(("json", _)) => AccessLogFormat::Json,
        Some(("combined", _)) => AccessLogFormat::Combined,
        Some((other, span)) => {
            return Err((
                span,
                format!("unknown access_log_format `{other}`: expected text, json or combined"),
            ))
        }
    })
}

/// `[admin]`: an address of its own; off loopback only with a token.
fn admin(a: &Spanned<RawAdmin>) -> Result<Admin, Invalid> {
    let raw = a.get_ref();
    let listen: SocketAddr = match &raw.listen {
        None => Admin::DEFAULT_LISTEN
            .parse()
            .map_err(|_| (a.span(), "bad default".to_string()))?,
        Some(l) => l.get_ref().parse().map_err(|_| {
            (
                l.span(),
                format!(
                    "bad admin.listen `{}`: expected IP:PORT, e.g. \"127.0.0.1:9901\"",
                    l.get_ref()
                ),
            )
        })?,
    };
    let token = match &raw.token {
        Some(t) if t.get_ref().trim().is_empty() => {
            return Err((t.span(), "admin.token must not be empty".into()))
        }
        t => t.as_ref().map(|t| t.get_ref().clone()),
    };
    if token.is_none() && !listen.ip().is_loopback() {
        let span = raw.listen.as_ref().map_or(a.span(), |l| l.span());
        return Err((
            span,
            format!("admin.listen `{listen}` is not a loopback address: set admin.token too (clients then send `Authorization: Bearer TOKEN`)"),
        ));
    }
    Ok(Admin { listen, token })
}

/// `[timeouts]`: every one a positive duration, except `shutdown` (0 = do not wait).
fn timeouts(t: &RawTimeouts) -> Result<Timeouts, Invalid> {
    let d = Timeouts::default();
    Ok(Timeouts {
        connect: positive(&t.connect, d.connect, "timeouts.connect")?,
        response: positive(&t.response, d.response, "timeouts.response")?,
        client_header: positive(&t.client_header, d.client_header, "timeouts.client_header")?,
        upstream_idle: positive(&t.upstream_idle, d.upstream_idle, "timeouts.upstream_idle")?,
        shutdown: t.shutdown.as_ref().map_or(d.shutdown, |s| s.get_ref().0),
        client_body: positive(&t.client_body, d.client_body, "timeouts.client_body")?,
        client_send: positive(&t.client_send, d.client_send, "timeouts.client_send")?,
        tunnel_idle: positive(&t.tunnel_idle, d.tunnel_idle, "timeouts.tunnel_idle")?,
        queue: positive(&t.queue, d.queue, "timeouts.queue")?,
    })
}

/// `[limits]`: sizes with floors below which ordinary traffic would break.
fn limits(l: &RawLimits) -> Result<Limits, Invalid> {
    let d = Limits::default();
    Ok(Limits {
        max_header_bytes: at_least(
            &l.max_header_bytes,
            d.max_header_bytes,
            8192,
            "limits.max_header_bytes",
        )?,
        max_headers: at_least(&l.max_headers, d.max_headers, 1, "limits.max_headers")?,
        max_body_bytes: l.max_body_bytes,
        max_connections: at_least(
            &l.max_connections,
            d.max_connections,
            1,
            "limits.max_connections",
        )?,
        max_idle_per_backend: l.max_idle_per_backend.unwrap_or(d.max_idle_per_backend),
        max_uri_bytes: at_least(
            &l.max_uri_bytes,
            d.max_uri_bytes,
            64,
            "limits.max_uri_bytes",
        )?,
        upstream_read_buffer: at_least(
            &l.upstream_read_buffer,
            d.upstream_read_buffer,
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
        backend_max_conns: at_least(
            &l.backend_max_conns,
            d.backend_max_conns,
            1,
            "limits.backend_max_conns",
        )?,
        backend_queue: l.backend_queue.unwrap_or(d.backend_queue),
        h2_max_concurrent_streams: h2(
            &l.h2_max_concurrent_streams,
            d.h2_max_concurrent_streams as usize,
            1,
            "h2_max_concurrent_streams",
        )? as u32,
        h2_max_pending_accept_reset_streams: h2(
            &l.h2_max_pending_accept_reset_streams,
            d.h2_max_pending_accept_reset_streams,
            1,
            "h2_max_pending_accept_reset_streams",
        )?,
        h2_max_local_error_reset_streams: h2(
            &l.h2_max_local_error_reset_streams,
            d.h2_max_local_error_reset_streams,
            1,
            "h2_max_local_error_reset_streams",
        )?,
        h2_max_client_resets: h2(
            &l.h2_max_client_resets,
            d.h2_max_client_resets,
            1,
            "h2_max_client_resets",
        )?,
        h2_stream_window_bytes: h2(
            &l.h2_stream_window_bytes,
            d.h2_stream_window_bytes as usize,
            65_535,
            "h2_stream_window_bytes",
        )? as u32,
        h2_connection_window_bytes: h2(
            &l.h2_connection_window_bytes,
            d.h2_connection_window_bytes as usize,
            65_535,
            "h2_connection_window_bytes",
        )? as u32,
        h2_max_send_buf_bytes: h2(
            &l.h2_max_send_buf_bytes,
            d.h2_max_send_buf_bytes,
            16_384,
            "h2_max_send_buf_bytes",
        )?,
    })
}

/// `[passive]`: ejection after consecutive failures, with a doubling backoff.
fn passive(p: &RawPassive) -> Result<Passive, Invalid> {
    let d = Passive::default();
    let failures = match &p.failures {
        Some(f) if *f.get_ref() == 0 => {
            return Err((f.span(), "passive.failures must be at least 1".into()))
        }
        f => f.as_ref().map_or(d.failures, |f| *f.get_ref()),
    };
    let eject = positive(&p.eject, d.eject, "passive.eject")?;
    let max_eject = positive(&p.max_eject, d.max_eject.max(eject), "passive.max_eject")?;
    not_shorter(
        eject,
        (max_eject, &p.max_eject),
        "passive.max_eject",
        "passive.eject",
    )?;
    let mut statuses = Vec::new();
    for st in p.statuses.iter().flatten() {
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
        probe_interval: positive(
            &p.probe_interval,
            d.probe_interval,
            "passive.probe_interval",
        )?,
    })
}

/// `[retries]`: attempts per request and their time budget.
fn retries(r: &RawRetries) -> Result<Retries, Invalid> {
    let d = Retries::default();
    Ok(Retries {
        tries: tries(&r.tries, "retries.tries")?.unwrap_or(d.tries),
        budget: positive(&r.budget, d.budget, "retries.budget")?,
        replay_body_bytes: r.replay_body_bytes.unwrap_or(d.replay_body_bytes),
    })
}

/// `[connect] allow`: the CONNECT targets relevo tunnels to.
fn connect(c: &RawConnect) -> Result<Vec<ConnectRule>, Invalid> {
    c.allow
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
        .collect()
}
