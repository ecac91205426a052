//! Everything a request needs, built from one configuration and swapped whole on reload.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use super::access_log::AccessLog;
use crate::config::{Config, Timeouts};
use crate::routing::{Balancer, HostEntry, HostTable, Member, Traffic};
use crate::stats::StatusCounts;
use crate::upstream::{active_check, Backend};

/// A host entry whose members are live backends.
pub type Entry = HostEntry<Backend>;

/// The proxy's read-only view of one configuration generation.
#[derive(Debug)]
pub struct State {
    /// The configuration this state was built from.
    pub config: Arc<Config>,
    /// The host table.
    pub hosts: HostTable<Backend>,
    /// Every backend by address, shared between entries.
    pub backends: HashMap<SocketAddr, Arc<Backend>>,
    /// Responses relevo gave to requests it could not route (400, 403…: `host="-"`).
    pub unrouted: StatusCounts,
    /// The access log, kept across reloads that do not change it.
    pub access_log: Option<Arc<AccessLog>>,
    /// Configurations loaded so far, this one included (1 at start).
    pub generation: u64,
    /// When this configuration was loaded.
    pub loaded_at: SystemTime,
    /// Dropped with the state, which stops this generation's health checkers.
    checks_alive: watch::Sender<()>,
}

impl State {
    /// Builds the state for `config`, reusing the backends (pools, counters, health) of
    /// `previous` that are still configured, so a reload keeps warm connections.
    pub fn build(config: Config, previous: Option<&State>) -> State {
        let mut backends: HashMap<SocketAddr, Arc<Backend>> = HashMap::new();
        let mut entries = Vec::with_capacity(config.hosts.len());
        for host in &config.hosts {
            let members = host
                .backends
                .iter()
                .map(|b| Member {
                    backend: backends
                        .entry(b.addr)
                        .or_insert_with(|| {
                            let max_conns = b.max_conns.unwrap_or(config.limits.backend_max_conns);
                            match previous.and_then(|p| p.backends.get(&b.addr)) {
                                Some(kept) => {
                                    kept.set_max_conns(max_conns);
                                    kept.clone()
                                }
                                None => Arc::new(Backend::new(
                                    b.addr,
                                    config.limits.max_idle_per_backend,
                                    config.timeouts.upstream_idle,
                                    config.limits.upstream_read_buffer,
                                    max_conns,
                                )),
                            }
                        })
                        .clone(),
                    weight: b.weight,
                    priority: b.priority,
                })
                .collect();
            let key = host.key();
            // The counters go on whole when the entry's backends are the same, in the
            // same order (their indexes are the counters' indexes); when the list
            // changed (a reload, a DNS answer), the entry's and those of the backends
            // that stay go on, matched by address.
            let traffic = match previous.and_then(|p| p.hosts.get(&key)) {
                None => Arc::new(Traffic::new(host.backends.len())),
                Some(old) => {
                    let old_addrs: Vec<SocketAddr> = old
                        .balancer
                        .members()
                        .iter()
                        .map(|m| m.backend.addr)
                        .collect();
                    if old_addrs
                        .iter()
                        .copied()
                        .eq(host.backends.iter().map(|b| b.addr))
                    {
                        old.traffic.clone()
                    } else {
                        let kept: Vec<Option<usize>> = host
                            .backends
                            .iter()
                            .map(|b| old_addrs.iter().position(|&a| a == b.addr))
                            .collect();
                        Arc::new(old.traffic.carried(&kept))
                    }
                }
            };
            entries.push(Arc::new(HostEntry {
                key,
                traffic,
                balancer: Balancer::new(host.balance, &host.hash_key, members, host.fail_open),
                max_body_bytes: host.max_body_bytes.or(config.limits.max_body_bytes),
                tries: host.tries.unwrap_or(config.retries.tries),
                health: host.health.clone(),
            }));
        }
        let access_log = match previous.and_then(|p| p.access_log.clone()) {
            Some(log) if log.is(&config.access_log, config.access_log_format) => Some(log),
            _ => match AccessLog::open(&config.access_log, config.access_log_format) {
                Ok(log) => log.map(Arc::new),
                Err(e) => {
                    tracing::error!("access log: cannot open: {e}");
                    None
                }
            },
        };
        State {
            access_log,
            config: Arc::new(config),
            hosts: HostTable::new(entries),
            backends,
            unrouted: StatusCounts::default(),
            generation: previous.map_or(1, |p| p.generation + 1),
            loaded_at: SystemTime::now(),
            checks_alive: watch::channel(()).0,
        }
    }

    /// Starts the active health checkers of this generation (inside a tokio runtime).
    pub fn start_health_checks(&self) {
        for entry in self.hosts.entries() {
            if let Some(check) = &entry.health {
                let backends: Vec<Arc<Backend>> = entry
                    .balancer
                    .members()
                    .iter()
                    .map(|m| m.backend.clone())
                    .collect();
                active_check::spawn_checks(
                    &entry.key,
                    check,
                    &backends,
                    &self.checks_alive.subscribe(),
                );
            }
        }
    }

    /// Timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.config.timeouts
    }
}
