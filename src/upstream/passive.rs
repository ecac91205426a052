//! Passive health, driven by real requests: `passive.failures` consecutive failures
//! eject a backend for `passive.eject`; when that expires one probe request is let
//! through. A failed probe ejects it again for twice as long (up to
//! `passive.max_eject`); a success puts it back in rotation. The active checker's
//! verdict is kept here too, so that one place answers "may it take a request?".

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use tracing::{info, warn};

use crate::clock::now_ms;
use crate::config::Passive;
use crate::routing::Availability;

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
    /// A background probe (`recovery::watch`) is running.
    watched: AtomicBool,
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
            watched: AtomicBool::new(false),
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
            Availability::Ejected
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
        self.back_in_rotation(addr, "a request got a good response");
    }

    /// A background probe found it good: back in rotation with a clean slate, so its
    /// share returns to normal at once.
    pub fn readmit(&self, addr: SocketAddr) {
        self.back_in_rotation(addr, "it answered a background probe");
    }

    /// Ends an ejection (if any) and its backoff.
    fn back_in_rotation(&self, addr: SocketAddr, why: &str) {
        self.failures.store(0, Ordering::Relaxed);
        if self.ejected_until.swap(0, Ordering::AcqRel) != 0 {
            self.level.store(0, Ordering::Relaxed);
            self.probing.store(false, Ordering::Release);
            info!(backend = %addr, "backend back in rotation: {why}");
        }
    }

    /// Claims the background probe; false if one is already running.
    pub fn claim_watch(&self) -> bool {
        self.watched
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// The background probe ended.
    pub fn release_watch(&self) {
        self.watched.store(false, Ordering::Release);
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

    /// When the ejection ends (`clock::now_ms`), 0 when not ejected.
    pub fn ejected_until(&self) -> u64 {
        self.ejected_until.load(Ordering::Relaxed)
    }

    /// Whether it is ejected by passive health right now.
    pub fn ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) != 0
    }

    /// Records the active checker's verdict.
    pub fn set_active(&self, up: bool) {
        self.active_up.store(up, Ordering::Relaxed);
    }
}
