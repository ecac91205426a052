//! Everything a request needs, built from one configuration and swapped whole on reload.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::balancer::Balancer;
use crate::config::{Config, Timeouts};
use crate::router::{Router, Site};
use crate::upstream::Backend;

/// The proxy's read-only view of one configuration generation.
#[derive(Debug)]
pub struct State {
    /// The configuration this state was built from.
    pub config: Arc<Config>,
    /// Host table.
    pub router: Router,
    /// Every backend by address, shared between sites.
    pub backends: HashMap<SocketAddr, Arc<Backend>>,
}

impl State {
    /// Builds the state for `config`, reusing the backends (pools and counters) of
    /// `previous` that are still configured, so a reload keeps warm connections.
    pub fn build(config: Config, previous: Option<&State>) -> State {
        let mut backends: HashMap<SocketAddr, Arc<Backend>> = HashMap::new();
        let mut sites = Vec::with_capacity(config.hosts.len());
        for host in &config.hosts {
            let members = host
                .backends
                .iter()
                .map(|addr| {
                    backends
                        .entry(*addr)
                        .or_insert_with(|| {
                            previous
                                .and_then(|p| p.backends.get(addr).cloned())
                                .unwrap_or_else(|| {
                                    Arc::new(Backend::new(
                                        *addr,
                                        config.limits.max_idle_per_backend,
                                        config.timeouts.upstream_idle,
                                    ))
                                })
                        })
                        .clone()
                })
                .collect();
            sites.push(Arc::new(Site {
                key: host.key(),
                backends: members,
                balancer: Balancer::new(host.balance),
                max_body_bytes: host.max_body_bytes.or(config.limits.max_body_bytes),
            }));
        }
        State {
            config: Arc::new(config),
            router: Router::new(sites),
            backends,
        }
    }

    /// Timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.config.timeouts
    }
}
