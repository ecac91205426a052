//! Backend health: passive ejection driven by real requests, and active HTTP checks.
//!
//! Passive: `passive.failures` consecutive failures eject a backend for `passive.eject`;
//! when that expires one probe request is let through. A failed probe ejects it again
//! for twice as long (up to `passive.max_eject`); a success puts it back in rotation.
//! Active: a task per backend sends `GET health.path` every `interval`; `fall` failures
//! in a row take it down, `rise` successes bring it back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{HealthCheck, Passive};
use crate::upstream::Backend;

/// Milliseconds since the first call, a cheap monotonic clock for atomics.
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Whether a backend may get a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// In rotation.
    Up,
    /// Ejected, but the ejection expired: one probe request may go.
    Probe,
    /// Down (active check) or ejected (passive).
    Down,
}

/// Health state of one backend, shared by every site that lists it.
#[derive(Debug)]
pub struct Health {
    /// Set by active checks; backends start up so that a reload never causes a 503 storm.
    active_up: AtomicBool,
    /// Consecutive failed requests.
    failures: AtomicU32,
    /// Ejected until this `now_ms()`; 0 when not ejected.
    ejected_until: AtomicU64,
    /// Ejections in a row, the exponent of the backoff.
    level: AtomicU32,
    /// A probe request is in flight.
    probing: AtomicBool,
    /// Ejections so far.
    pub ejections: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            active_up: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            level: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            ejections: AtomicU64::new(0),
        }
    }
}

impl Health {
    /// Whether the backend may take a request at `now` (from `now_ms`).
    pub fn availability(&self, now: u64) -> Availability {
        if !self.active_up.load(Ordering::Relaxed) {
            return Availability::Down;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            Availability::Up
        } else if now < until || self.probing.load(Ordering::Relaxed) {
            Availability::Down
        } else {
            Availability::Probe
        }
    }

    /// Claims the single probe after an ejection; false if another request has it.
    pub fn claim_probe(&self) -> bool {
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// A request got a good response.
    pub fn on_success(&self, addr: SocketAddr) {
        self.failures.store(0, Ordering::Relaxed);
        if self.ejected_until.swap(0, Ordering::AcqRel) != 0 {
            self.level.store(0, Ordering::Relaxed);
            self.probing.store(false, Ordering::Release);
            info!(backend = %addr, "backend back in rotation after a good probe");
        }
    }

    /// A request failed on the backend's side. Returns true if this ejected it.
    pub fn on_failure(&self, addr: SocketAddr, policy: &Passive) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let now = now_ms();
        let until = self.ejected_until.load(Ordering::Acquire);
        // Requests that were in flight when it was ejected do not extend the ejection.
        if failures < policy.failures || (until != 0 && now < until) {
            return false;
        }
        let level = self.level.fetch_add(1, Ordering::AcqRel).min(16);
        let eject = policy
            .eject
            .saturating_mul(1 << level)
            .min(policy.max_eject);
        self.ejected_until
            .store(now + eject.as_millis() as u64, Ordering::Release);
        self.probing.store(false, Ordering::Release);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        warn!(backend = %addr, failures, "backend ejected for {eject:?}");
        true
    }

    /// Seconds until the ejection ends (at least 1), for `Retry-After`.
    pub fn retry_after_secs(&self) -> u64 {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until.saturating_sub(now_ms()).div_ceil(1000).max(1)
    }

    /// Whether the last active checks say up.
    pub fn active_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    /// Whether it is ejected by passive health right now.
    pub fn ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) != 0
    }

    fn set_active(&self, up: bool) {
        self.active_up.store(up, Ordering::Relaxed);
    }
}

/// Starts one checker task per backend; they stop when `stop`'s sender is dropped.
pub fn spawn_checks(
    host: &str,
    check: &HealthCheck,
    backends: &[Arc<Backend>],
    stop: &watch::Receiver<()>,
) {
    for backend in backends {
        let (host, check, backend, mut stop) = (
            host.to_string(),
            check.clone(),
            backend.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let (mut good, mut bad) = (0u32, 0u32);
            loop {
                let ok = probe(backend.addr, &host, &check).await;
                let health = &backend.health;
                if ok {
                    (good, bad) = (good.saturating_add(1), 0);
                    if !health.active_up() && good >= check.rise {
                        health.set_active(true);
                        info!(backend = %backend.addr, host, "health check: backend up after {good} good checks");
                    }
                } else {
                    (good, bad) = (0, bad.saturating_add(1));
                    if health.active_up() && bad >= check.fall {
                        health.set_active(false);
                        warn!(backend = %backend.addr, host, "health check: backend down after {bad} failed checks");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(check.interval) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }
}

/// One check: a fresh connection, `GET path`, a status in the expected range.
async fn probe(addr: SocketAddr, host: &str, check: &HealthCheck) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = Request::get(check.path.as_str())
            .header(header::HOST, host)
            .header(header::USER_AGENT, "relevo-health-check")
            .header(header::CONNECTION, "close")
            .body(Empty::new())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        Some(resp.status().as_u16())
    };
    match tokio::time::timeout(check.timeout, attempt).await {
        Ok(Some(status)) => (check.expect.0..=check.expect.1).contains(&status),
        _ => false,
    }
}

/// Latency estimate that jumps up at once and decays slowly (peak-EWMA, as linkerd's).
#[derive(Debug, Default)]
pub struct PeakEwma {
    /// Current estimate in nanoseconds, as f64 bits.
    nanos: AtomicU64,
    /// `now_ms()` of the last sample.
    at: AtomicU64,
}

/// How fast old samples are forgotten.
const EWMA_TAU_MS: f64 = 10_000.0;

impl PeakEwma {
    /// Adds one response time.
    pub fn observe(&self, rtt: Duration) {
        let sample = rtt.as_nanos() as f64;
        let now = now_ms();
        let last = self.at.swap(now, Ordering::Relaxed);
        let current = f64::from_bits(self.nanos.load(Ordering::Relaxed));
        let next = if sample > current || last == 0 {
            sample
        } else {
            let decay = (-((now - last) as f64) / EWMA_TAU_MS).exp();
            current * decay + sample * (1.0 - decay)
        };
        self.nanos.store(next.to_bits(), Ordering::Relaxed);
    }

    /// The estimate in nanoseconds (0 before any sample).
    pub fn get(&self) -> f64 {
        f64::from_bits(self.nanos.load(Ordering::Relaxed))
    }
}
