//! The response-time estimate `p2c` breaks load ties with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::now_ms;

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
            // Another sample may have stamped a later `now` in between.
            let decay = (-(now.saturating_sub(last) as f64) / EWMA_TAU_MS).exp();
            current * decay + sample * (1.0 - decay)
        };
        self.nanos.store(next.to_bits(), Ordering::Relaxed);
    }

    /// The estimate in nanoseconds (0 before any sample).
    pub fn get(&self) -> f64 {
        f64::from_bits(self.nanos.load(Ordering::Relaxed))
    }
}
