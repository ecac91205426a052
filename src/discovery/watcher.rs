//! One name's watcher: asks again when the answer's TTL runs out (clamped by
//! `dns.min_ttl` and `dns.max_ttl`), and decides what an answer does to the name's
//! backends. A failing resolver keeps the last good set; an authoritative "no such
//! name" (or an empty answer) removes it only once it has lasted `dns.hold`.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::resolver::{self, Outcome};
use super::target::Target;
use super::Discovery;
use crate::config::{Dns, DnsName};

/// What a watcher knows of its name between two resolutions.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The name watched.
    pub name: DnsName,
    /// The set in force: the last good answer (or empty).
    pub current: Vec<Target>,
    /// Since when the answers have been negative while `current` is not empty: the
    /// hold runs from the first of them.
    missing_since: Option<Instant>,
    /// Failed resolutions in a row, so that an outage warns once, not every second.
    failures: u32,
    /// TTL bounds and the hold.
    dns: Dns,
}

/// What one outcome did to a watch.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    /// The new set, when it changed.
    pub changed: Option<Vec<Target>>,
    /// When to ask again.
    pub next: Duration,
    /// The `result` label of `relevo_dns_resolutions_total`.
    pub result: &'static str,
    /// The first failure, or the first negative answer held, of a run: worth a warning
    /// (the ones after it are not, or an outage would warn every `min_ttl`).
    pub first_of_run: bool,
}

/// `ttl` within `[min_ttl, max_ttl]`: a TTL of 0 (Consul's default) must not make relevo
/// ask in a loop, and a day-long TTL must not hide a change for a day.
pub fn clamp_ttl(ttl: Duration, dns: &Dns) -> Duration {
    ttl.clamp(dns.min_ttl, dns.max_ttl)
}

impl Watch {
    /// A watch of `name` whose set in force is `current`.
    pub fn new(name: DnsName, current: Vec<Target>, dns: Dns) -> Watch {
        Watch {
            name,
            current,
            missing_since: None,
            failures: 0,
            dns,
        }
    }

    /// Takes the outcome of a resolution made at `now`.
    pub fn take(&mut self, outcome: &Outcome, now: Instant) -> Step {
        let dns = &self.dns;
        match outcome {
            Outcome::Found { targets, ttl } => {
                self.missing_since = None;
                self.failures = 0;
                let changed = (*targets != self.current).then(|| targets.clone());
                if let Some(set) = &changed {
                    self.current = set.clone();
                }
                Step {
                    result: if changed.is_some() {
                        "changed"
                    } else {
                        "unchanged"
                    },
                    changed,
                    next: clamp_ttl(*ttl, dns),
                    first_of_run: false,
                }
            }
            Outcome::Missing { nxdomain, ttl } => {
                self.failures = 0;
                // RFC 2308 §5: a negative answer may be cached for the SOA minimum; ask
                // again no sooner than that (clamped), and no later than the hold's end.
                let mut next = clamp_ttl(ttl.unwrap_or(dns.min_ttl), dns);
                let result = if *nxdomain { "nxdomain" } else { "empty" };
                if self.current.is_empty() {
                    return Step {
                        changed: None,
                        next,
                        result,
                        first_of_run: false,
                    };
                }
                let first_of_run = self.missing_since.is_none();
                let since = *self.missing_since.get_or_insert(now);
                let held = now.saturating_duration_since(since);
                if held >= dns.hold {
                    self.missing_since = None;
                    self.current.clear();
                    return Step {
                        changed: Some(Vec::new()),
                        next,
                        result,
                        first_of_run,
                    };
                }
                next = next.min(dns.hold - held).max(dns.min_ttl);
                Step {
                    changed: None,
                    next,
                    result,
                    first_of_run,
                }
            }
            Outcome::Failed(_) => {
                self.failures = self.failures.saturating_add(1);
                Step {
                    changed: None,
                    next: dns.min_ttl,
                    result: "error",
                    first_of_run: self.failures == 1,
                }
            }
        }
    }
}

/// The addresses of a set, for logs: `[10.0.0.1:80, 10.0.0.2:80]`.
pub fn show(set: &[Target]) -> String {
    let list: Vec<String> = set.iter().map(|t| t.addr.to_string()).collect();
    format!("[{}]", list.join(", "))
}

/// Logs what a resolution of `watch.name` did.
pub fn log(watch: &Watch, before: &[Target], outcome: &Outcome, step: &Step) {
    let name = &watch.name;
    match (outcome, &step.changed) {
        (_, Some(set)) => info!(
            "dns: {name} changed ({}): {} -> {}",
            step.result,
            show(before),
            show(set)
        ),
        (Outcome::Failed(e), None) if step.first_of_run => warn!(
            "dns: {name} does not resolve ({e}); keeping {} until it does",
            show(&watch.current)
        ),
        (Outcome::Failed(e), None) => debug!("dns: {name} still does not resolve: {e}"),
        (Outcome::Missing { .. }, None) if step.first_of_run => warn!(
            "dns: {name} answered {}; keeping {} for up to {:?} (dns.hold)",
            step.result,
            show(&watch.current),
            watch.dns.hold
        ),
        _ => debug!("dns: {name} {} {}", step.result, show(&watch.current)),
    }
}

/// Runs `watch` until `stop`'s sender is dropped (a reload started new watchers) or
/// the discovery is gone, first asking after `first`.
pub async fn run(
    discovery: Weak<Discovery>,
    resolver: Arc<TokioResolver>,
    mut watch: Watch,
    generation: u64,
    mut stop: watch::Receiver<()>,
    first: Duration,
) {
    let mut next = first;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = stop.changed() => return,
        }
        let outcome = resolver::ask(&resolver, &watch.name, &watch.dns).await;
        let before = watch.current.clone();
        let step = watch.take(&outcome, Instant::now());
        let Some(discovery) = discovery.upgrade() else {
            return;
        };
        discovery.resolutions.count(&watch.name, step.result);
        log(&watch, &before, &outcome, &step);
        if let Some(set) = step.changed {
            discovery.update(generation, &watch.name, set);
        }
        next = step.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn dns() -> Dns {
        Dns {
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(60),
            hold: Duration::from_secs(30),
            ..Dns::default()
        }
    }

    fn set(last: u8) -> Vec<Target> {
        vec![Target {
            addr: SocketAddr::from(([10, 0, 0, last], 80)),
            weight: 1,
            priority: 0,
        }]
    }

    fn found(last: u8, ttl: u64) -> Outcome {
        Outcome::Found {
            targets: set(last),
            ttl: Duration::from_secs(ttl),
        }
    }

    const NX: Outcome = Outcome::Missing {
        nxdomain: true,
        ttl: None,
    };

    fn watch() -> Watch {
        Watch::new(
            DnsName::Host {
                name: "api.test".into(),
                port: 80,
            },
            set(1),
            dns(),
        )
    }

    #[test]
    fn ttls_are_clamped_to_min_and_max() {
        let d = dns();
        assert_eq!(clamp_ttl(Duration::ZERO, &d), Duration::from_secs(1));
        assert_eq!(
            clamp_ttl(Duration::from_secs(5), &d),
            Duration::from_secs(5)
        );
        assert_eq!(
            clamp_ttl(Duration::from_secs(86400), &d),
            Duration::from_secs(60)
        );
        let mut w = watch();
        assert_eq!(
            w.take(&found(1, 0), Instant::now()).next,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_changed_answer_replaces_the_set_and_an_equal_one_does_not() {
        let mut w = watch();
        let now = Instant::now();
        let same = w.take(&found(1, 5), now);
        assert_eq!((same.changed, same.result), (None, "unchanged"));
        let moved = w.take(&found(2, 5), now);
        assert_eq!((moved.changed, moved.result), (Some(set(2)), "changed"));
        assert_eq!(w.current, set(2));
    }

    #[test]
    fn a_failing_resolver_keeps_the_last_good_set_indefinitely() {
        let mut w = watch();
        let t0 = Instant::now();
        for k in 0..1000 {
            let step = w.take(
                &Outcome::Failed("timeout".into()),
                t0 + Duration::from_secs(k),
            );
            assert_eq!(step.first_of_run, k == 0, "only the first failure warns");
            assert_eq!((step.changed, step.result), (None, "error"));
        }
        assert_eq!(w.current, set(1));
    }

    #[test]
    fn nxdomain_empties_the_set_only_after_the_hold() {
        let mut w = watch();
        let t0 = Instant::now();
        let first = w.take(&NX, t0);
        assert_eq!(first.changed, None);
        assert!(first.first_of_run);
        assert!(!w.take(&NX, t0 + Duration::from_secs(1)).first_of_run);
        assert!(first.next <= Duration::from_secs(30));
        assert_eq!(w.take(&NX, t0 + Duration::from_secs(29)).changed, None);
        // The hold is counted from the first negative answer.
        let last = w.take(&NX, t0 + Duration::from_secs(30));
        assert_eq!(last.changed, Some(Vec::new()));
        assert_eq!(last.result, "nxdomain");
        assert!(w.current.is_empty());
    }

    #[test]
    fn a_good_answer_during_the_hold_starts_it_over() {
        let mut w = watch();
        let t0 = Instant::now();
        w.take(&NX, t0);
        w.take(&found(1, 5), t0 + Duration::from_secs(20));
        assert_eq!(w.take(&NX, t0 + Duration::from_secs(40)).changed, None);
        assert_eq!(
            w.take(&NX, t0 + Duration::from_secs(70)).changed,
            Some(Vec::new())
        );
    }

    #[test]
    fn a_negative_ttl_sets_the_next_question_within_the_hold() {
        let mut w = watch();
        let negative = Outcome::Missing {
            nxdomain: false,
            ttl: Some(Duration::from_secs(3600)),
        };
        let step = w.take(&negative, Instant::now());
        assert_eq!(step.result, "empty");
        // Not the SOA's hour: the hold ends sooner.
        assert_eq!(step.next, Duration::from_secs(30));
    }
}
