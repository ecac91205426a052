//! `/status.json`: per host and backend, state, load, rates, latency, share against the
//! fair share, connections and five minutes of history; the status page renders it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::history::{self, Point, Rates};
use super::View;
use crate::clock::now_ms;
use crate::routing::{traffic, Availability, Candidate};
use crate::stats::{unix_secs, Protocol};

/// The window of the rates and percentiles shown beside each host and backend.
const WINDOW: Duration = Duration::from_secs(10);

#[derive(Serialize)]
struct Status {
    version: &'static str,
    generation: u64,
    loaded_at: u64,
    started_at: u64,
    now: u64,
    ready: bool,
    clients: Clients,
    /// Requests by what they came in on, the ones seen only.
    protocols: Vec<ProtocolCount>,
    hosts: Vec<Host>,
}

#[derive(Serialize)]
struct ProtocolCount {
    protocol: &'static str,
    tls: Option<&'static str>,
    requests: u64,
}

#[derive(Serialize)]
struct Clients {
    active: u64,
    total: u64,
    refused: u64,
}

#[derive(Serialize)]
struct Host {
    host: String,
    balance: &'static str,
    requests: u64,
    rps: f64,
    error_rate: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    spread: Option<f64>,
    /// The entry's backend names and the addresses each has now (they are among
    /// `backends`), so that a DNS change shows on the page.
    names: Vec<Name>,
    backends: Vec<Backend>,
}

/// A backend name of a host and what it resolves to now.
#[derive(Serialize)]
struct Name {
    /// As configured (`api.internal:8080`, `srv:_http._tcp...`), the metrics' label.
    name: String,
    /// The set in force: the last good answer, still held, or empty.
    addresses: Vec<String>,
}

#[derive(Serialize)]
struct Backend {
    addr: String,
    weight: u32,
    state: &'static str,
    ejected_for_ms: Option<u64>,
    in_flight: u64,
    requests: u64,
    rps: f64,
    error_rate: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    share: Option<f64>,
    fair_share: f64,
    connections: Connections,
    history: Series,
}

#[derive(Serialize)]
struct Connections {
    idle: usize,
    active: usize,
    opened: u64,
}

#[derive(Serialize)]
struct Series {
    interval_s: u64,
    rps: Vec<f64>,
    errors: Vec<f64>,
    p99_ms: Vec<Option<f64>>,
}

/// The JSON document.
pub fn render(view: &View) -> String {
    let state = view.state.load();
    let now = now_ms();
    let current: std::collections::HashMap<history::Key, Point> =
        history::read(view).into_iter().collect();
    let stats = &view.stats;
    let answers = view.discovery.answers();
    let mut hosts: Vec<Host> = Vec::new();
    for entry in state.hosts.entries() {
        let members = entry.balancer.members();
        let recent = entry.traffic.recent();
        let total_recent: u64 = recent.iter().sum();
        let fair = entry.balancer.fair_shares();
        let host_key: history::Key = (entry.key.clone(), None);
        let host_now = current.get(&host_key);
        let host_rates = windowed(&view.history.points(&host_key), host_now);
        let backends = members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let b = &m.backend;
                let key: history::Key = (entry.key.clone(), Some(b.addr));
                let points = view.history.points(&key);
                let point = current.get(&key);
                let rates = windowed(&points, point);
                let availability = b.availability(now);
                let ejected_for_ms =
                    matches!(availability, Availability::Ejected | Availability::Probe)
                        .then(|| b.health.ejected_until().saturating_sub(now));
                Backend {
                    addr: b.addr.to_string(),
                    weight: m.weight,
                    state: match availability {
                        Availability::Up => "up",
                        Availability::Probe | Availability::Ejected => "ejected",
                        Availability::Down => "down",
                    },
                    ejected_for_ms,
                    in_flight: b.in_flight(),
                    requests: point.map_or(0, |p| p.requests),
                    rps: round(rates.rps),
                    error_rate: rates.error_rate.map(round),
                    p50_ms: rates.p50_ms.map(round),
                    p99_ms: rates.p99_ms.map(round),
                    share: (total_recent > 0).then(|| {
                        round(recent.get(i).copied().unwrap_or(0) as f64 / total_recent as f64)
                    }),
                    fair_share: round(fair.get(i).copied().unwrap_or(0.0)),
                    connections: Connections {
                        idle: b.idle_connections(),
                        active: b.active_connections(),
                        opened: b.stats.connects.load(Ordering::Relaxed),
                    },
                    history: series(&points),
                }
            })
            .collect();
        hosts.push(Host {
            host: entry.key.clone(),
            balance: entry.balancer.name(),
            requests: host_now.map_or(0, |p| p.requests),
            rps: round(host_rates.rps),
            error_rate: host_rates.error_rate.map(round),
            p50_ms: host_rates.p50_ms.map(round),
            p99_ms: host_rates.p99_ms.map(round),
            spread: traffic::spread(&recent, &fair).map(round),
            names: state
                .config
                .hosts
                .iter()
                .filter(|h| h.key() == entry.key)
                .flat_map(|h| &h.names)
                .map(|n| Name {
                    name: n.name.to_string(),
                    addresses: answers
                        .get(&n.name)
                        .into_iter()
                        .flatten()
                        .map(|t| t.addr.to_string())
                        .collect(),
                })
                .collect(),
            backends,
        });
    }
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    let status = Status {
        version: env!("CARGO_PKG_VERSION"),
        generation: state.generation,
        loaded_at: unix_secs(state.loaded_at),
        started_at: unix_secs(stats.started),
        now: unix_secs(std::time::SystemTime::now()),
        ready: !stats.draining.load(Ordering::Relaxed),
        clients: Clients {
            active: stats.clients_active.load(Ordering::Relaxed),
            total: stats.clients_total.load(Ordering::Relaxed),
            refused: stats.clients_refused.load(Ordering::Relaxed),
        },
        protocols: Protocol::all()
            .map(|p| ProtocolCount {
                protocol: p.name(),
                tls: p.tls,
                requests: stats.requests_by_protocol[p.index()].load(Ordering::Relaxed),
            })
            .filter(|p| p.requests > 0)
            .collect(),
        hosts,
    };
    serde_json::to_string_pretty(&status).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Rates over about the last `WINDOW`: from the sample that old (or the oldest) to now.
fn windowed(points: &[Point], now: Option<&Point>) -> Rates {
    let Some(now) = now else {
        return Rates::default();
    };
    let cutoff = Instant::now().checked_sub(WINDOW);
    let from = points
        .iter()
        .find(|p| cutoff.is_none_or(|c| p.at >= c))
        .or(points.last());
    from.map_or_else(Rates::default, |from| now.since(from))
}

/// The charts: one value per interval between consecutive samples.
fn series(points: &[Point]) -> Series {
    let pairs = points.windows(2);
    let rates: Vec<Rates> = pairs.map(|w| w[1].since(&w[0])).collect();
    Series {
        interval_s: history::INTERVAL.as_secs(),
        rps: rates.iter().map(|r| round(r.rps)).collect(),
        errors: rates.iter().map(|r| round(r.errors)).collect(),
        p99_ms: rates.iter().map(|r| r.p99_ms.map(round)).collect(),
    }
}

/// Three decimals are plenty for people and keep the document small.
fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
