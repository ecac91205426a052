//! A cheap monotonic clock in milliseconds, for state kept in atomics (ejections,
//! latency samples) and read on every pick.

use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds since the first call, plus one (so 0 can mean "never").
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}
