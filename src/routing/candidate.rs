//! What routing needs to know of a backend, and nothing more: who it is, how loaded it
//! is, and whether it may take a request now. `upstream::Backend` implements it, so
//! the choice of a backend never depends on how connections to it are made.

use std::net::SocketAddr;
use std::sync::Arc;

/// Whether a backend may get a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// In rotation.
    Up,
    /// Ejected, but the ejection expired: one probe request may go.
    Probe,
    /// Ejected by passive health (real requests failed): weak evidence, so it still
    /// takes requests when every other member is out too.
    Ejected,
    /// Down by the active check.
    Down,
}

/// The balancer's view of a backend.
pub trait Candidate {
    /// Its address (retries skip the ones tried; the hash ring places it by this).
    fn addr(&self) -> SocketAddr;
    /// Requests waiting for or streaming a response from it right now.
    fn in_flight(&self) -> u64;
    /// Its response-time estimate in nanoseconds (0 before any sample).
    fn latency(&self) -> f64;
    /// Whether it may take a request at `now` (milliseconds of `clock::now_ms`).
    fn availability(&self, now: u64) -> Availability;
    /// Claims the single probe after an ejection; false if another request has it.
    fn claim_probe(&self) -> bool;
    /// Seconds until it may be tried again (at least 1), for `Retry-After`.
    fn retry_after_secs(&self) -> u64;
}

/// A backend as a member of one host entry, with its weight there.
#[derive(Debug)]
pub struct Member<B> {
    /// The backend (shared between entries and kept across reloads).
    pub backend: Arc<B>,
    /// Relative share of requests.
    pub weight: u32,
    /// SRV priority (RFC 2782 §"Priority"): only the lowest priority among the members
    /// a pick may choose takes requests; 0 for backends written as addresses.
    pub priority: u16,
}

/// Backends for the routing unit tests, which need no connections.
#[cfg(test)]
pub mod testing {
    use std::net::SocketAddr;

    use super::{Availability, Candidate};

    /// An idle, healthy backend at an address: all the algorithms need of one.
    #[derive(Debug)]
    pub struct Idle(pub SocketAddr);

    impl Candidate for Idle {
        fn addr(&self) -> SocketAddr {
            self.0
        }
        fn in_flight(&self) -> u64 {
            0
        }
        fn latency(&self) -> f64 {
            0.0
        }
        fn availability(&self, _now: u64) -> Availability {
            Availability::Up
        }
        fn claim_probe(&self) -> bool {
            false
        }
        fn retry_after_secs(&self) -> u64 {
            1
        }
    }
}
