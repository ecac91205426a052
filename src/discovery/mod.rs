//! DNS service discovery: backends written as names (`"api.internal:8080"`) or SRV
//! records (`{ srv = "_http._tcp.api.service.consul" }`) become the addresses they
//! resolve to, and follow the answers as they change.
//!
//! [`Discovery`] holds the configuration as loaded and the last good set of every
//! name. A change of one name's set builds the *effective* configuration (the names
//! replaced by their addresses) and hands it to `apply`, which the server makes a
//! reload: a new state beside the live one, keeping the backends (pools, counters,
//! health) of the addresses that stay, swapped in whole. Requests in flight on a
//! removed address finish on the old state. [`resolver`] sets up hickory and sorts an
//! answer into found / missing / failed; [`watcher`] is one name's TTL loop and hold;
//! [`srv`] turns SRV records into weighted, prioritised targets.

pub mod resolver;
pub mod srv;
pub mod target;
pub mod watcher;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{BackendConfig, Config, DnsName};
use resolver::Outcome;
use target::Target;
use watcher::Watch;

/// Builds and swaps in the state for an effective configuration.
pub type Apply = Box<dyn Fn(Config) + Send + Sync>;

/// The names of a configuration, their current sets, and the watchers that keep them.
pub struct Discovery {
    /// Everything a change reads and writes, under one lock so that two changes (or a
    /// change and a reload) are applied one after the other, never interleaved.
    inner: Mutex<Inner>,
    /// Makes an effective configuration live (the server's reload).
    apply: Apply,
    /// `relevo_dns_resolutions_total`.
    pub resolutions: Resolutions,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
}

/// The mutable part of a [`Discovery`].
struct Inner {
    /// The configuration as loaded, names unresolved.
    base: Config,
    /// The set in force for every name of `base`.
    answers: BTreeMap<DnsName, Vec<Target>>,
    /// Counts loads, so that a watcher of an older configuration changes nothing.
    generation: u64,
    /// Dropped (replaced) to stop the watchers of the previous load.
    stop: watch::Sender<()>,
}

/// Resolutions by name and result, for the metrics.
#[derive(Debug, Default)]
pub struct Resolutions {
    /// Counts by (name as configured, result label); names come from the file only.
    counts: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Resolutions {
    /// Counts one resolution of `name`.
    pub fn count(&self, name: &DnsName, result: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry((name.to_string(), result)).or_default() += 1;
    }

    /// Every (name, result, count) so far.
    pub fn snapshot(&self) -> Vec<(String, &'static str, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .iter()
            .map(|((n, r), c)| (n.clone(), *r, *c))
            .collect()
    }
}

impl Discovery {
    /// A discovery for `config` that makes its changes live with `apply`; nothing is
    /// resolved before [`Discovery::start`].
    pub fn new(config: Config, apply: Apply) -> Arc<Discovery> {
        Arc::new(Discovery {
            inner: Mutex::new(Inner {
                base: config,
                answers: BTreeMap::new(),
                generation: 0,
                stop: watch::channel(()).0,
            }),
            apply,
            resolutions: Resolutions::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves the names of the configuration given to `new` and starts watching
    /// them (inside a tokio runtime). Without names it does nothing.
    pub async fn start(self: &Arc<Self>) {
        let base = self.lock().base.clone();
        if has_names(&base) {
            self.load(base).await;
        }
    }

    /// Makes `config` live (a reload): names it shares with the running configuration
    /// keep their set, new ones are resolved first, and the watchers of the previous
    /// configuration are replaced by watchers of this one.
    pub async fn load(self: &Arc<Self>, config: Config) {
        let names = names_of(&config);
        let kept = self.lock().answers.clone();
        let resolver = if names.is_empty() {
            None
        } else {
            match resolver::build(&config.dns) {
                Ok(r) => Some(Arc::new(r)),
                Err(e) => {
                    warn!("dns: {e}; names keep the addresses they had");
                    None
                }
            }
        };
        // The names not known yet are resolved now, all at once, before the
        // configuration goes live, so that none starts without its addresses.
        let mut fresh = Vec::new();
        if let Some(r) = &resolver {
            let mut asks = tokio::task::JoinSet::new();
            for name in names.iter().filter(|n| !kept.contains_key(n)) {
                let (r, name, dns) = (r.clone(), name.clone(), config.dns.clone());
                asks.spawn(async move {
                    let outcome = resolver::ask(&r, &name, &dns).await;
                    (name, outcome)
                });
            }
            while let Some(done) = asks.join_next().await {
                if let Ok(pair) = done {
                    fresh.push(pair);
                }
            }
        }
        let mut watches = Vec::new();
        let (generation, stop) = {
            let mut inner = self.lock();
            let mut answers = BTreeMap::new();
            for name in &names {
                let mut w = Watch::new(
                    name.clone(),
                    kept.get(name).cloned().unwrap_or_default(),
                    config.dns.clone(),
                );
                let mut first = config.dns.min_ttl;
                if let Some((_, outcome)) = fresh.iter().find(|(n, _)| n == name) {
                    let step = w.take(outcome, std::time::Instant::now());
                    self.resolutions.count(name, step.result);
                    log_first(name, outcome, &w.current);
                    first = step.next;
                }
                answers.insert(name.clone(), w.current.clone());
                watches.push((w, first));
            }
            inner.base = config;
            inner.answers = answers;
            inner.generation += 1;
            // The old sender is dropped here: the previous watchers stop.
            inner.stop = watch::channel(()).0;
            (self.apply)(effective(&inner.base, &inner.answers));
            (inner.generation, inner.stop.subscribe())
        };
        let Some(resolver) = resolver else {
            return;
        };
        for (w, first) in watches {
            tokio::spawn(watcher::run(
                Arc::downgrade(self),
                resolver.clone(),
                w,
                generation,
                stop.clone(),
                first,
            ));
        }
    }

    /// A watcher of load `generation` has a new set for `name`: the effective
    /// configuration is rebuilt and applied, unless a reload has replaced that load.
    pub fn update(&self, generation: u64, name: &DnsName, set: Vec<Target>) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        inner.answers.insert(name.clone(), set);
        (self.apply)(effective(&inner.base, &inner.answers));
    }

    /// The set in force for every name, for the status page.
    pub fn answers(&self) -> BTreeMap<DnsName, Vec<Target>> {
        self.lock().answers.clone()
    }
}

/// Logs the first resolution of a name.
fn log_first(name: &DnsName, outcome: &Outcome, set: &[Target]) {
    match outcome {
        Outcome::Found { .. } => info!("dns: {name} -> {}", watcher::show(set)),
        Outcome::Missing { nxdomain: true, .. } => {
            warn!("dns: {name} does not exist (NXDOMAIN); no backends from it until it does")
        }
        Outcome::Missing { .. } => warn!("dns: {name} has no records; no backends from it yet"),
        Outcome::Failed(e) => warn!("dns: {name} does not resolve ({e}); no backends from it yet"),
    }
}

/// Whether any entry of `config` has a backend written as a name.
pub fn has_names(config: &Config) -> bool {
    config.hosts.iter().any(|h| !h.names.is_empty())
}

/// Every name of `config`, once each.
pub fn names_of(config: &Config) -> Vec<DnsName> {
    let mut names: Vec<DnsName> = config
        .hosts
        .iter()
        .flat_map(|h| h.names.iter().map(|n| n.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `base` with every name replaced by the addresses of its set: what the state is
/// built from. An address listed already (as an address, or by an earlier name of the
/// entry) is not added twice.
pub fn effective(base: &Config, answers: &BTreeMap<DnsName, Vec<Target>>) -> Config {
    let mut config = base.clone();
    for host in &mut config.hosts {
        for named in &host.names {
            for t in answers.get(&named.name).into_iter().flatten() {
                if host.backends.iter().any(|b| b.addr == t.addr) {
                    continue;
                }
                host.backends.push(BackendConfig {
                    addr: t.addr,
                    weight: match named.name {
                        DnsName::Host { .. } => named.weight,
                        DnsName::Srv(_) => t.weight,
                    },
                    max_conns: named.max_conns,
                    priority: t.priority,
                });
            }
        }
    }
    config
}

/// Resolves every name of `config` once, without watching: `relevo check` and
/// `relevo route`. Returns the effective configuration and each name's outcome.
pub async fn resolve_once(config: &Config) -> Result<(Config, Vec<(DnsName, Outcome)>), String> {
    let names = names_of(config);
    if names.is_empty() {
        return Ok((config.clone(), Vec::new()));
    }
    let resolver = Arc::new(resolver::build(&config.dns)?);
    let mut outcomes = Vec::new();
    let mut answers = BTreeMap::new();
    for name in names {
        let outcome = resolver::ask(&resolver, &name, &config.dns).await;
        if let Outcome::Found { targets, .. } = &outcome {
            answers.insert(name.clone(), targets.clone());
        }
        outcomes.push((name, outcome));
    }
    Ok((effective(config, &answers), outcomes))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;

    use super::*;

    fn target(addr: &str, weight: u32, priority: u16) -> Target {
        Target {
            addr: addr.parse().unwrap(),
            weight,
            priority,
        }
    }

    #[test]
    fn effective_adds_each_address_once_with_its_names_options() {
        let text = "[hosts]\n\"a.test\" = [\"10.0.0.1:80\", { addr = \"x.internal:80\", weight = 3, max_conns = 5 }, { srv = \"_h._tcp.y.internal\" }]\n";
        let base = Config::parse(text, Path::new("t.toml")).unwrap();
        let names = names_of(&base);
        let mut answers = BTreeMap::new();
        // x's first address is listed already as an address: one backend.
        // Sorted: the A name (`x`) before the SRV name.
        answers.insert(
            names[0].clone(),
            vec![target("10.0.0.1:80", 1, 0), target("10.0.0.2:80", 1, 0)],
        );
        answers.insert(names[1].clone(), vec![target("10.0.0.3:81", 100, 10)]);
        let got: Vec<(SocketAddr, u32, Option<usize>, u16)> = effective(&base, &answers).hosts[0]
            .backends
            .iter()
            .map(|b| (b.addr, b.weight, b.max_conns, b.priority))
            .collect();
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            got,
            vec![
                (addr("10.0.0.1:80"), 1, None, 0),
                (addr("10.0.0.2:80"), 3, Some(5), 0),
                (addr("10.0.0.3:81"), 100, None, 10),
            ]
        );
        // A name without a set adds nothing; the file's addresses stay.
        assert_eq!(
            effective(&base, &BTreeMap::new()).hosts[0].backends.len(),
            1
        );
    }
}
