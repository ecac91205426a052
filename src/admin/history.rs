//! Samples of every host and backend every `INTERVAL`, kept for `POINTS` intervals:
//! the status page's charts, and the windowed rates and percentiles of status.json.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::View;
use crate::stats::HistogramSnapshot;

/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Samples kept: five minutes.
pub const POINTS: usize = 150;

/// One sample of a host or of one of its backends.
#[derive(Debug, Clone)]
pub struct Point {
    /// When it was taken.
    pub at: Instant,
    /// Responses so far.
    pub requests: u64,
    /// 5xx responses so far.
    pub errors: u64,
    /// Durations so far.
    pub durations: HistogramSnapshot,
}

/// What happened between two samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    /// Requests per second.
    pub rps: f64,
    /// 5xx responses per second.
    pub errors: f64,
    /// Fraction of the responses that were 5xx (`None`: no response).
    pub error_rate: Option<f64>,
    /// Median and 99th percentile in milliseconds (`None`: no response).
    pub p50_ms: Option<f64>,
    /// 99th percentile in milliseconds.
    pub p99_ms: Option<f64>,
}

impl Point {
    /// The rates from `earlier` to this sample.
    pub fn since(&self, earlier: &Point) -> Rates {
        let secs = self.at.duration_since(earlier.at).as_secs_f64().max(1e-3);
        let requests = self.requests.saturating_sub(earlier.requests);
        let errors = self.errors.saturating_sub(earlier.errors);
        let d = self.durations.since(&earlier.durations);
        Rates {
            rps: requests as f64 / secs,
            errors: errors as f64 / secs,
            error_rate: (requests > 0).then(|| errors as f64 / requests as f64),
            p50_ms: d.quantile(0.5).map(|s| s * 1000.0),
            p99_ms: d.quantile(0.99).map(|s| s * 1000.0),
        }
    }
}

/// Which series a sample belongs to: a host, or a host's backend.
pub type Key = (String, Option<SocketAddr>);

/// The kept samples.
#[derive(Debug, Default)]
pub struct History {
    /// Oldest first, per series.
    series: Mutex<HashMap<Key, VecDeque<Point>>>,
}

impl History {
    /// Adds `point` to `key`'s series, dropping the oldest beyond `POINTS`.
    pub fn push(&self, key: Key, point: Point) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let s = series.entry(key).or_default();
        s.push_back(point);
        while s.len() > POINTS + 1 {
            s.pop_front();
        }
    }

    /// A copy of `key`'s samples, oldest first.
    pub fn points(&self, key: &Key) -> Vec<Point> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .get(key)
            .map_or_else(Vec::new, |s| s.iter().cloned().collect())
    }

    /// Forgets series that are no longer configured.
    pub fn retain(&self, keep: impl Fn(&Key) -> bool) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series.retain(|k, _| keep(k));
    }
}

/// The current reading of every host and backend, as points.
pub fn read(view: &View) -> Vec<(Key, Point)> {
    let state = view.state.load();
    let now = Instant::now();
    let mut out = Vec::new();
    for entry in state.hosts.entries() {
        let traffic = &entry.traffic;
        let (mut host_all, mut host_errors) = traffic.own.totals();
        for (m, member) in entry.balancer.members().iter().enumerate() {
            let (all, errors) = traffic.by_member.get(m).map_or((0, 0), |c| c.totals());
            host_all += all;
            host_errors += errors;
            out.push((
                (entry.key.clone(), Some(member.backend.addr)),
                Point {
                    at: now,
                    requests: all,
                    errors,
                    durations: traffic
                        .member_durations
                        .get(m)
                        .map(|h| h.snapshot())
                        .unwrap_or_default(),
                },
            ));
        }
        out.push((
            (entry.key.clone(), None),
            Point {
                at: now,
                requests: host_all,
                errors: host_errors,
                durations: traffic.duration.snapshot(),
            },
        ));
    }
    out
}

/// Samples every `INTERVAL` until the process ends.
pub async fn sample(view: Arc<View>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let points = read(&view);
        let keys: std::collections::HashSet<Key> = points.iter().map(|(k, _)| k.clone()).collect();
        view.history.retain(|k| keys.contains(k));
        for (key, point) in points {
            view.history.push(key, point);
        }
    }
}
