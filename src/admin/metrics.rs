//! `/metrics`: Prometheus exposition by `prometheus-client`, from relevo's own
//! counters read at scrape time (the request path only does atomic adds). Label values
//! are host-table keys, backend addresses (configured or resolved from configured
//! names) and configured names, never what a client sent.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::View;
use crate::clock::now_ms;
use crate::routing::{traffic, Availability, Candidate};
use crate::stats::{HistogramSnapshot, Protocol};

/// Label pairs of one series.
type Labels = Vec<(&'static str, String)>;

/// The text exposition of every metric.
pub fn render(view: &View) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape::read(view)));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        return "# encoding failed\n".into();
    }
    out
}

/// Everything one scrape reports, read once from the live counters.
#[derive(Debug, Default)]
struct Scrape {
    counters: BTreeMap<(&'static str, &'static str), Vec<(Labels, u64)>>,
    gauges: BTreeMap<(&'static str, &'static str), Vec<(Labels, f64)>>,
    histograms: BTreeMap<(&'static str, &'static str), Vec<(Labels, HistogramSnapshot)>>,
}

impl Scrape {
    fn counter(&mut self, name: &'static str, help: &'static str, labels: Labels, v: u64) {
        self.counters
            .entry((name, help))
            .or_default()
            .push((labels, v));
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, labels: Labels, v: f64) {
        self.gauges
            .entry((name, help))
            .or_default()
            .push((labels, v));
    }

    fn read(view: &View) -> Scrape {
        let mut s = Scrape::default();
        let state = view.state.load();
        let now = now_ms();
        let stats = &view.stats;
        for (code, n) in state.unrouted.nonzero() {
            s.counter(
                "relevo_requests",
                "Requests answered, by host entry, backend (none: relevo answered) and status sent",
                vec![
                    ("host", "-".into()),
                    ("backend", "none".into()),
                    ("code", code.to_string()),
                ],
                n,
            );
        }
        let mut backends_seen = std::collections::HashSet::new();
        for entry in state.hosts.entries() {
            let host = entry.key.clone();
            let t = &entry.traffic;
            for (code, n) in t.own.nonzero() {
                s.counter(
                    "relevo_requests",
                    "Requests answered, by host entry, backend (none: relevo answered) and status sent",
                    vec![("host", host.clone()), ("backend", "none".into()), ("code", code.to_string())],
                    n,
                );
            }
            s.histograms
                .entry((
                    "relevo_request_duration",
                    "Request head received to response end",
                ))
                .or_default()
                .push((vec![("host", host.clone())], t.duration.snapshot()));
            for (direction, n) in [
                ("in", t.bytes_in.load(Ordering::Relaxed)),
                ("out", t.bytes_out.load(Ordering::Relaxed)),
            ] {
                s.counter(
                    "relevo_bytes",
                    "Body bytes from clients (in) and to clients (out)",
                    vec![("host", host.clone()), ("direction", direction.into())],
                    n,
                );
            }
            let recent = t.recent();
            let fair = entry.balancer.fair_shares();
            if let Some(spread) = traffic::spread(&recent, &fair) {
                s.gauge(
                    "relevo_host_spread",
                    "Distance of the last 1024 forwarded requests from the split weights and health ask for: 0 fair, 1 all on backends that should get none",
                    vec![("host", host.clone())],
                    spread,
                );
            }
            for (m, member) in entry.balancer.members().iter().enumerate() {
                let b = &member.backend;
                let addr = b.addr.to_string();
                let hb = || vec![("host", host.clone()), ("backend", addr.clone())];
                if let Some(counts) = t.by_member.get(m) {
                    for (code, n) in counts.nonzero() {
                        let mut labels = hb();
                        labels.push(("code", code.to_string()));
                        s.counter(
                            "relevo_requests",
                            "Requests answered, by host entry, backend (none: relevo answered) and status sent",
                            labels,
                            n,
                        );
                    }
                }
                if let Some(r) = t.retried.get(m) {
                    s.counter(
                        "relevo_retries",
                        "Attempts that failed on this backend and were tried again",
                        hb(),
                        r.load(Ordering::Relaxed),
                    );
                }
                let up = matches!(b.availability(now), Availability::Up | Availability::Probe);
                s.gauge(
                    "relevo_backend_up",
                    "1 when the backend is in rotation, 0 when ejected or down",
                    hb(),
                    f64::from(u8::from(up)),
                );
                s.gauge(
                    "relevo_backend_in_flight",
                    "Requests waiting for or streaming a response from the backend",
                    hb(),
                    b.in_flight() as f64,
                );
                if backends_seen.insert(b.addr) {
                    let bl = || vec![("backend", addr.clone())];
                    s.counter(
                        "relevo_backend_ejections",
                        "Passive ejections of the backend",
                        bl(),
                        b.health.ejections.load(Ordering::Relaxed),
                    );
                    s.counter(
                        "relevo_upstream_connections_opened",
                        "TCP connections opened to the backend",
                        bl(),
                        b.stats.connects.load(Ordering::Relaxed),
                    );
                    for (st, n) in [
                        ("idle", b.idle_connections()),
                        ("active", b.active_connections()),
                    ] {
                        let mut labels = bl();
                        labels.push(("state", st.into()));
                        s.gauge(
                            "relevo_upstream_connections",
                            "Connections to the backend, idle in the pool or in use",
                            labels,
                            n as f64,
                        );
                    }
                    s.histograms
                        .entry((
                            "relevo_upstream_connect_duration",
                            "TCP connect and handshake to the backend",
                        ))
                        .or_default()
                        .push((bl(), b.connect_time.snapshot()));
                }
            }
        }
        s.gauge(
            "relevo_client_connections",
            "Client connections open",
            vec![("state", "active".into())],
            stats.clients_active.load(Ordering::Relaxed) as f64,
        );
        s.counter(
            "relevo_client_connections_accepted",
            "Client connections accepted",
            vec![],
            stats.clients_total.load(Ordering::Relaxed),
        );
        s.counter(
            "relevo_client_connections_refused",
            "Client connections refused over limits.max_connections",
            vec![],
            stats.clients_refused.load(Ordering::Relaxed),
        );
        for p in Protocol::all() {
            s.counter(
                "relevo_requests_by_protocol",
                "Client requests by protocol (http/1.1, h2) and TLS version (none in the clear)",
                vec![
                    ("protocol", p.name().into()),
                    ("tls", p.tls.unwrap_or("none").into()),
                ],
                stats.requests_by_protocol[p.index()].load(Ordering::Relaxed),
            );
        }
        for (result, n) in [
            ("ok", stats.reloads_ok.load(Ordering::Relaxed)),
            ("error", stats.reloads_failed.load(Ordering::Relaxed)),
        ] {
            s.counter(
                "relevo_config_reloads",
                "Configuration reloads, by result",
                vec![("result", result.into())],
                n,
            );
        }
        for (name, result, n) in view.discovery.resolutions.snapshot() {
            s.counter(
                "relevo_dns_resolutions",
                "Resolutions of backend names, by name (as configured) and result: changed, unchanged, nxdomain, empty, error",
                vec![("name", name), ("result", result.into())],
                n,
            );
        }
        for (name, set) in view.discovery.answers() {
            s.gauge(
                "relevo_dns_addresses",
                "Addresses a backend name has now (the last good answer, held or empty)",
                vec![("name", name.to_string())],
                set.len() as f64,
            );
        }
        s.gauge(
            "relevo_config_generation",
            "Configurations loaded, this one included",
            vec![],
            state.generation as f64,
        );
        s
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for ((name, help), series) in &self.counters {
            let metrics = series.iter().map(|(l, v)| (l, ConstCounter::new(*v)));
            family(&mut encoder, name, help, MetricType::Counter, metrics)?;
        }
        for ((name, help), series) in &self.gauges {
            let metrics = series.iter().map(|(l, v)| (l, ConstGauge::new(*v)));
            family(&mut encoder, name, help, MetricType::Gauge, metrics)?;
        }
        for ((name, help), series) in &self.histograms {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (labels, h) in series {
                family.encode_family(labels)?.encode_histogram::<Labels>(
                    h.sum,
                    h.count(),
                    &h.buckets(),
                    None,
                )?;
            }
        }
        Ok(())
    }
}

/// One metric family: a lone series without labels is written bare (`name_total 3`),
/// the others each with their labels.
fn family<'a, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl Iterator<Item = (&'a Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let series: Vec<(&Labels, M)> = series.collect();
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    if let [(labels, metric)] = series.as_slice() {
        if labels.is_empty() {
            return metric.encode(family);
        }
    }
    for (labels, metric) in &series {
        metric.encode(family.encode_family(*labels)?)?;
    }
    Ok(())
}
