//! Picks the backend of a site for each request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;

use crate::config::Balance;
use crate::upstream::Backend;

/// A balancing algorithm with its per-site state.
#[derive(Debug)]
pub enum Balancer {
    /// Each backend in turn; the counter is shared by all threads.
    RoundRobin(AtomicUsize),
    /// Uniformly at random, as the lab did.
    Random,
}

impl Balancer {
    /// A fresh balancer for `kind`.
    pub fn new(kind: Balance) -> Balancer {
        match kind {
            Balance::RoundRobin => Balancer::RoundRobin(AtomicUsize::new(0)),
            Balance::Random => Balancer::Random,
        }
    }

    /// The backend for the next request. `backends` is never empty: config validation
    /// rejects a host without backends.
    pub fn pick<'a>(&self, backends: &'a [Arc<Backend>]) -> &'a Arc<Backend> {
        let i = match self {
            Balancer::RoundRobin(next) => next.fetch_add(1, Ordering::Relaxed) % backends.len(),
            Balancer::Random => rand::thread_rng().gen_range(0..backends.len()),
        };
        &backends[i]
    }
}
