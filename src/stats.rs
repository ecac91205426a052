//! Counters recorded on the request path and read by the admin listener: plain atomics
//! on handles resolved when a configuration is built, so recording a request is a few
//! atomic adds and never a label lookup.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Upper bounds of the duration histograms, in seconds (Prometheus' defaults, with
/// finer steps below 5 ms where a proxy's latencies live).
pub const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A latency histogram with fixed buckets; the last slot counts what is above them all.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative), `BUCKETS.len() + 1` of them.
    counts: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of the observations in microseconds.
    sum_us: AtomicU64,
}

/// A copy of a histogram at one moment, for differences over a time window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative).
    pub counts: Vec<u64>,
    /// Sum in seconds.
    pub sum: f64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The counts and sum now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

impl HistogramSnapshot {
    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// What was observed since `earlier`.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
                .collect(),
            sum: (self.sum - earlier.sum).max(0.0),
        }
    }

    /// The `q` quantile in seconds, interpolated inside its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut seen = 0.0;
        for (i, &c) in self.counts.iter().enumerate() {
            let next = seen + c as f64;
            if next >= rank && c > 0 {
                let lo = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
                let hi = BUCKETS.get(i).copied().unwrap_or(lo * 2.0);
                return Some(lo + (hi - lo) * ((rank - seen) / c as f64).clamp(0.0, 1.0));
            }
            seen = next;
        }
        Some(BUCKETS[BUCKETS.len() - 1])
    }

    /// `(upper bound, count)` pairs as prometheus-client encodes them (`f64::MAX` = +Inf).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, &c)| (BUCKETS.get(i).copied().unwrap_or(f64::MAX), c))
            .collect()
    }
}

/// Responses by status code, 100 to 599.
#[derive(Debug)]
pub struct StatusCounts {
    /// One counter per code, index `code - 100`.
    counts: Box<[AtomicU64]>,
}

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts {
            counts: (100..600).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl StatusCounts {
    /// Counts one response with `code`.
    pub fn add(&self, code: u16) {
        if let Some(c) = self.counts.get(usize::from(code).wrapping_sub(100)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The codes seen so far, with their counts.
    pub fn nonzero(&self) -> Vec<(u16, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then_some((i as u16 + 100, n))
            })
            .collect()
    }

    /// Responses in all, and how many of them were 5xx.
    pub fn totals(&self) -> (u64, u64) {
        let mut all = 0;
        let mut errors = 0;
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            all += n;
            if (400..500).contains(&i) {
                errors += n;
            }
        }
        (all, errors)
    }
}

/// Process-wide numbers of one running server: client connections, reloads, drain.
#[derive(Debug)]
pub struct ServerStats {
    /// Client connections accepted.
    pub clients_total: AtomicU64,
    /// Client connections refused over `limits.max_connections`.
    pub clients_refused: AtomicU64,
    /// Client connections open now.
    pub clients_active: AtomicU64,
    /// Reloads that took effect.
    pub reloads_ok: AtomicU64,
    /// Reloads refused (a bad file; the running configuration stays).
    pub reloads_failed: AtomicU64,
    /// Set when a graceful stop began: `/ready` turns false.
    pub draining: AtomicBool,
    /// When the process started serving.
    pub started: SystemTime,
    /// Requests by the protocol they came in on (`Protocol::index`).
    pub requests_by_protocol: [AtomicU64; Protocol::COUNT],
}

/// What a request came in on: HTTP/1.1 or HTTP/2, in the clear or over which TLS
/// version. A handful of values, so a metric labelled by it stays small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol {
    /// HTTP/2 (negotiated with ALPN `h2`) rather than HTTP/1.x.
    pub h2: bool,
    /// The TLS version, `None` in the clear.
    pub tls: Option<&'static str>,
}

impl Protocol {
    /// How many distinct values there are (`index` is below it).
    pub const COUNT: usize = 6;
    /// TLS versions in `index` order after the clear ("1.2", "1.3").
    const TLS: [&'static str; 2] = ["1.2", "1.3"];

    /// Plain HTTP/1.x on the plain listener.
    pub const CLEAR: Protocol = Protocol {
        h2: false,
        tls: None,
    };

    /// `http/1.1` or `h2`, as ALPN names them.
    pub fn name(self) -> &'static str {
        if self.h2 {
            "h2"
        } else {
            "http/1.1"
        }
    }

    /// A slot in `ServerStats::requests_by_protocol`.
    pub fn index(self) -> usize {
        let tls = self
            .tls
            .and_then(|v| Self::TLS.iter().position(|t| *t == v))
            .map_or(0, |i| i + 1);
        usize::from(self.h2) * 3 + tls
    }

    /// Every value, in `index` order.
    pub fn all() -> impl Iterator<Item = Protocol> {
        [false, true].into_iter().flat_map(|h2| {
            [None, Some(Self::TLS[0]), Some(Self::TLS[1])]
                .into_iter()
                .map(move |tls| Protocol { h2, tls })
        })
    }
}

impl Default for ServerStats {
    fn default() -> Self {
        ServerStats {
            clients_total: AtomicU64::new(0),
            clients_refused: AtomicU64::new(0),
            clients_active: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            started: SystemTime::now(),
            requests_by_protocol: Default::default(),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_and_windows() {
        let h = Histogram::default();
        for ms in [1, 1, 1, 2, 3, 4, 8, 9, 20, 900] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 10);
        let p50 = s.quantile(0.5).unwrap();
        assert!((0.001..=0.005).contains(&p50), "{p50}");
        let p99 = s.quantile(0.99).unwrap();
        assert!((0.5..=1.0).contains(&p99), "{p99}");
        h.observe(Duration::from_millis(2));
        let d = h.snapshot().since(&s);
        assert_eq!(d.count(), 1);
        assert_eq!(HistogramSnapshot::default().quantile(0.5), None);
    }

    #[test]
    fn protocol_indexes_are_distinct() {
        let all: Vec<usize> = Protocol::all().map(Protocol::index).collect();
        assert_eq!(all, (0..Protocol::COUNT).collect::<Vec<_>>());
    }

    #[test]
    fn status_counts() {
        let c = StatusCounts::default();
        for code in [200, 200, 502, 404, 99, 600] {
            c.add(code);
        }
        assert_eq!(c.nonzero(), vec![(200, 2), (404, 1), (502, 1)]);
        assert_eq!(c.totals(), (4, 1));
    }
}
