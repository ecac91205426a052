//! `relevo route`: a dry run of the request path that says which host entry and which
//! backend a request would reach, and why.

use std::fmt::Write;
use std::net::IpAddr;

use http::{HeaderName, HeaderValue, Method, Request, Uri};

use super::names;
use crate::config::Config;
use crate::http::{host, ProxyError};
use crate::proxy::State;
use crate::routing::NoPick;

/// Explains how `url` (absolute, or a path with a `Host` among `headers`) from
/// `client` would be routed, with the addresses the entry's names have now. `Err`
/// carries the refusal the client would get.
pub fn explain(
    config: Config,
    url: &str,
    headers: &[String],
    client: IpAddr,
) -> Result<String, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL `{url}`: {e}"))?;
    let mut req = Request::new(());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("bad header `{h}`: expected `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("bad header name in `{h}`: {e}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| format!("bad header value in `{h}`: {e}"))?;
        req.headers_mut().append(name, value);
    }
    let resolved = names::resolve(&config);
    let state = State::build(resolved.config, None);
    let refuse = |e: ProxyError| format!("{} {}", e.status(), e);
    let target = host::target(&req).map_err(refuse)?;
    let entry = state.hosts.route(&target).map_err(refuse)?;
    let mut out = String::new();
    let from = if req.uri().scheme().is_some() {
        "the absolute-form target"
    } else {
        "the Host header"
    };
    let _ = writeln!(
        out,
        "host:     `{}` from {from} -> entry `{}`",
        target.authority_str(),
        entry.key
    );
    if let Some(e) = &resolved.error {
        let _ = writeln!(out, "names:    {e}");
    }
    let entry_names = config.hosts.iter().filter(|h| h.key() == entry.key);
    for named in entry_names.flat_map(|h| &h.names) {
        if let Some((_, outcome)) = resolved.names.iter().find(|(n, _)| *n == named.name) {
            let _ = writeln!(
                out,
                "name:     {} -> {}",
                named.name,
                names::describe(outcome)
            );
        }
    }
    let path = req.uri().path();
    let affinity = entry.balancer.affinity(client, req.headers(), path);
    let _ = writeln!(
        out,
        "balance:  {}",
        entry
            .balancer
            .explain(affinity, client, req.headers(), path)
    );
    match entry.balancer.pick(affinity, &[]) {
        Ok(m) => {
            let _ = writeln!(out, "backend:  {} (weight {})", m.backend.addr, m.weight);
        }
        Err(NoPick::AllDown(e)) => return Err(refuse(e)),
        Err(NoPick::AllTried) => return Err("no backend".into()),
    }
    let health = match &entry.health {
        Some(h) => format!(
            "active check every {:?}: GET {} expecting {}-{} (down after {} failures, up after {} successes)",
            h.interval, h.path, h.expect.0, h.expect.1, h.fall, h.rise
        ),
        None => "no active check".into(),
    };
    let p = &state.config.passive;
    let _ = writeln!(
        out,
        "health:   {health}; passive ejection after {} consecutive failures ({:?} first, up to {:?}); a dry run assumes every backend up",
        p.failures, p.eject, p.max_eject
    );
    let r = &state.config.retries;
    let _ = writeln!(
        out,
        "retries:  up to {} tries within {:?}; bodies up to {} bytes are replayed",
        entry.tries, r.budget, r.replay_body_bytes
    );
    Ok(out)
}
