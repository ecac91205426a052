//! Picks the backend of a host entry for each request, among those health allows.
//!
//! Algorithms: smooth weighted round-robin (nginx's), weighted random, weighted
//! least-connections, power of two choices (in-flight, then peak-EWMA latency) and
//! consistent hashing on a ketama ring.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use http::HeaderMap;
use rand::Rng;
use smallvec::SmallVec;

use super::candidate::{Availability, Candidate, Member};
use super::hash_ring::{hash_bytes, key_value, ring, RING_POINTS};
use super::maglev::{Maglev, TABLE_SIZE};
use crate::clock::now_ms;
use crate::config::{Balance, HashKey};
use crate::http::ProxyError;

/// A list with one item per member, on the stack for entries of up to eight backends:
/// a pick makes three such lists per request, and three allocations cost more than
/// the pick itself.
type Few<T> = SmallVec<[T; 8]>;

/// How much faster (peak-EWMA) a backend must be to win a p2c tie on load.
const LATENCY_MARGIN: f64 = 1.5;

/// A host entry's algorithm, its state and its members.
#[derive(Debug)]
pub struct Balancer<B> {
    /// The backends of the entry, in configuration order.
    members: Vec<Member<B>>,
    /// Which algorithm, with the state it keeps between picks.
    algorithm: Algorithm,
    /// With every member down: true picks among all of them, false answers 503.
    fail_open: bool,
}

#[derive(Debug)]
enum Algorithm {
    /// Current weights of smooth weighted round-robin, one per member.
    RoundRobin(Mutex<Vec<i64>>),
    Random,
    /// Ties on load are broken by smooth weighted round-robin, as nginx does.
    LeastConn(Mutex<Vec<i64>>),
    P2c,
    /// Ring of (point, member index), sorted by point.
    Hash {
        key: HashKey,
        ring: Vec<(u64, usize)>,
    },
    /// Maglev's lookup table: the same choice on every instance with the same backends.
    Maglev {
        key: HashKey,
        table: Maglev,
    },
}

/// Why a pick could not be made.
#[derive(Debug)]
pub enum NoPick {
    /// Every member is down by its active check and the entry does not fail open.
    AllDown(ProxyError),
    /// Every member that could take the request was already tried.
    AllTried,
}

impl<B: Candidate> Balancer<B> {
    /// A balancer for `members` (empty only when every name of the entry resolved to
    /// nothing: then every pick answers 503).
    pub fn new(
        kind: Balance,
        hash_key: &HashKey,
        members: Vec<Member<B>>,
        fail_open: bool,
    ) -> Balancer<B> {
        let algorithm = match kind {
            Balance::RoundRobin => Algorithm::RoundRobin(Mutex::new(vec![0; members.len()])),
            Balance::Random => Algorithm::Random,
            Balance::LeastConn => Algorithm::LeastConn(Mutex::new(vec![0; members.len()])),
            Balance::P2c => Algorithm::P2c,
            Balance::Hash => Algorithm::Hash {
                key: hash_key.clone(),
                ring: ring(&members),
            },
            Balance::Maglev => Algorithm::Maglev {
                key: hash_key.clone(),
                table: Maglev::new(&members, TABLE_SIZE),
            },
        };
        Balancer {
            members,
            algorithm,
            fail_open,
        }
    }

    /// The algorithm's configuration name.
    pub fn name(&self) -> &'static str {
        match &self.algorithm {
            Algorithm::RoundRobin(_) => "round-robin",
            Algorithm::Random => "random",
            Algorithm::LeastConn(_) => "least-conn",
            Algorithm::P2c => "p2c",
            Algorithm::Hash { .. } => "hash",
            Algorithm::Maglev { .. } => "maglev",
        }
    }

    /// The members, in configuration order.
    pub fn members(&self) -> &[Member<B>] {
        &self.members
    }

    /// The hash of what `hash` keys on for this request; `None` for other algorithms.
    pub fn affinity(&self, client: IpAddr, headers: &HeaderMap, path: &str) -> Option<u64> {
        let (Algorithm::Hash { key, .. } | Algorithm::Maglev { key, .. }) = &self.algorithm else {
            return None;
        };
        Some(hash_bytes(key_value(key, client, headers, path).as_bytes()))
    }

    /// Picks a member that is available and not in `tried`.
    ///
    /// Members in rotation are preferred; when none is, the passively ejected ones
    /// take the traffic (passive evidence alone never empties an entry: one broken URL
    /// or a burst of timeouts must not turn every request into a 503); when every
    /// member is down by its active check, the entry answers 503 unless it fails open.
    pub fn pick(&self, affinity: Option<u64>, tried: &[SocketAddr]) -> Result<&Member<B>, NoPick> {
        self.pick_index(affinity, tried).map(|i| &self.members[i])
    }

    /// As `pick`, the member's index in `members()`.
    pub fn pick_index(&self, affinity: Option<u64>, tried: &[SocketAddr]) -> Result<usize, NoPick> {
        let avail = self.availability();
        let Some(eligible) = self.eligible(&avail) else {
            let retry_after = self
                .members
                .iter()
                .map(|m| m.backend.retry_after_secs())
                .min()
                .unwrap_or(1);
            return Err(NoPick::AllDown(ProxyError::AllDown(retry_after)));
        };
        let candidates: Few<usize> = (0..self.members.len())
            .filter(|&i| eligible[i])
            .filter(|&i| !tried.contains(&self.members[i].backend.addr()))
            .collect();
        let i = self.choose(&candidates, affinity).ok_or(NoPick::AllTried)?;
        if avail[i] == Availability::Probe {
            // If another request won the probe, this one goes anyway: at most a few
            // requests reach a backend whose ejection just ended.
            self.members[i].backend.claim_probe();
        }
        Ok(i)
    }

    /// Each member's availability now.
    fn availability(&self) -> Few<Availability> {
        let now = now_ms();
        self.members
            .iter()
            .map(|m| m.backend.availability(now))
            .collect()
    }

    /// Which members a pick may choose among, given their availability: those in
    /// rotation; else the passively ejected; else (fail-open) all; else none.
    fn tier(&self, avail: &[Availability]) -> Option<fn(Availability) -> bool> {
        let in_rotation = |a: Availability| matches!(a, Availability::Up | Availability::Probe);
        if avail.iter().any(|&a| in_rotation(a)) {
            Some(|a| matches!(a, Availability::Up | Availability::Probe))
        } else if avail.contains(&Availability::Ejected) {
            Some(|a| a == Availability::Ejected)
        } else if self.fail_open {
            Some(|_| true)
        } else {
            None
        }
    }

    /// Which members a pick may choose among: those of the availability tier, and of
    /// those only the ones of the lowest SRV priority present (RFC 2782: a client MUST
    /// contact the lowest-numbered priority it can reach). `None`: no member may.
    fn eligible(&self, avail: &[Availability]) -> Option<Few<bool>> {
        if self.members.is_empty() {
            return None;
        }
        let tier = self.tier(avail)?;
        let lowest = (0..self.members.len())
            .filter(|&i| tier(avail[i]))
            .map(|i| self.members[i].priority)
            .min()?;
        Some(
            (0..self.members.len())
                .map(|i| tier(avail[i]) && self.members[i].priority == lowest)
                .collect(),
        )
    }

    /// The share of requests each member should get now: its weight over the weights
    /// of the members a pick may choose (all zero when none may be chosen).
    pub fn fair_shares(&self) -> Vec<f64> {
        let avail = self.availability();
        let Some(eligible) = self.eligible(&avail) else {
            return vec![0.0; self.members.len()];
        };
        let total: u32 = (0..self.members.len())
            .filter(|&i| eligible[i])
            .map(|i| self.members[i].weight)
            .sum();
        (0..self.members.len())
            .map(|i| {
                if eligible[i] && total > 0 {
                    f64::from(self.members[i].weight) / f64::from(total)
                } else {
                    0.0
                }
            })
            .collect()
    }

    fn choose(&self, candidates: &[usize], affinity: Option<u64>) -> Option<usize> {
        match candidates.len() {
            0 => return None,
            1 => return Some(candidates[0]),
            _ => {}
        }
        let weight = |i: usize| i64::from(self.members[i].weight);
        let in_flight = |i: usize| self.members[i].backend.in_flight() as i64;
        Some(match &self.algorithm {
            Algorithm::RoundRobin(current) => self.smooth_round_robin(current, candidates),
            Algorithm::Random => self.weighted_random(candidates, None),
            Algorithm::LeastConn(current) => {
                // One reading per member: counts move under our feet, and comparing a
                // member with itself across two readings could leave no tie at all.
                let load: Vec<i64> = (0..self.members.len())
                    .map(|i| {
                        if candidates.contains(&i) {
                            in_flight(i)
                        } else {
                            0
                        }
                    })
                    .collect();
                // load(i)/weight(i) compared without division.
                let load_lt = |a: usize, b: usize| load[a] * weight(b) < load[b] * weight(a);
                let best = candidates.iter().copied().fold(candidates[0], |b, i| {
                    if load_lt(i, b) {
                        i
                    } else {
                        b
                    }
                });
                let tied: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|&i| !load_lt(best, i))
                    .collect();
                self.smooth_round_robin(current, &tied)
            }
            Algorithm::P2c => {
                let a = self.weighted_random(candidates, None);
                let b = self.weighted_random(candidates, Some(a));
                let (la, lb) = (in_flight(a) * weight(b), in_flight(b) * weight(a));
                if la != lb {
                    if la < lb {
                        a
                    } else {
                        b
                    }
                } else if la > 0
                    && self.members[b].backend.latency() * LATENCY_MARGIN
                        < self.members[a].backend.latency()
                {
                    // Latency breaks ties only under load, and only when clearly faster:
                    // idle backends get random picks, so the peak of one slow response
                    // (a cold connection, say) does not send all light traffic elsewhere.
                    b
                } else {
                    a
                }
            }
            Algorithm::Maglev { table, .. } => table
                .lookup(affinity.unwrap_or(0), |i| candidates.contains(&i))
                .unwrap_or(candidates[0]),
            Algorithm::Hash { ring, .. } => {
                let h = affinity.unwrap_or(0);
                let start = ring.partition_point(|(point, _)| *point < h);
                // Walk clockwise to the first usable member: only the keys of a member
                // that is down move, and they spread over the others.
                (0..ring.len())
                    .map(|k| ring[(start + k) % ring.len()].1)
                    .find(|i| candidates.contains(i))
                    .unwrap_or(candidates[0])
            }
        })
    }

    /// A candidate drawn in proportion to its weight, other than `skip`.
    fn weighted_random(&self, candidates: &[usize], skip: Option<usize>) -> usize {
        let weight = |i: usize| {
            if Some(i) == skip {
                0
            } else {
                u64::from(self.members[i].weight)
            }
        };
        let total: u64 = candidates.iter().map(|&i| weight(i)).sum();
        let mut r = rand::thread_rng().gen_range(0..total.max(1));
        for &i in candidates {
            if r < weight(i) {
                return i;
            }
            r -= weight(i);
        }
        candidates[0]
    }

    /// nginx's smooth weighted round-robin over `candidates`: each gains its weight,
    /// the richest is chosen and pays the total, so weights 5,1,1 give a a b a c a a.
    fn smooth_round_robin(&self, current: &Mutex<Vec<i64>>, candidates: &[usize]) -> usize {
        let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = 0;
        let mut best = candidates[0];
        for &i in candidates {
            let w = i64::from(self.members[i].weight);
            current[i] += w;
            total += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        best
    }

    /// A human account of how a request would be routed, for `relevo route`.
    pub fn explain(
        &self,
        affinity: Option<u64>,
        client: IpAddr,
        headers: &HeaderMap,
        path: &str,
    ) -> String {
        match &self.algorithm {
            Algorithm::RoundRobin(_) => {
                let weights: Vec<String> = self.members.iter().map(|m| format!("{}×{}", m.backend.addr(), m.weight)).collect();
                format!("round-robin (smooth, weighted): the rotation goes through [{}]; a fresh proxy sends its first request to the first listed", weights.join(", "))
            }
            Algorithm::Random => "random, weighted: any member, in proportion to its weight".into(),
            Algorithm::LeastConn(_) => "least-conn: the member with the fewest in-flight requests per unit of weight (all idle in a dry run)".into(),
            Algorithm::P2c => "p2c: two random members, the one with fewer in-flight requests (then lower peak-EWMA latency)".into(),
            Algorithm::Hash { key, .. } => format!(
                "hash on {key} = {:?} -> {:#018x} on a ketama ring ({} points per unit of weight)",
                key_value(key, client, headers, path),
                affinity.unwrap_or(0),
                RING_POINTS
            ),
            Algorithm::Maglev { key, .. } => format!(
                "maglev on {key} = {:?} -> {:#018x} in a {TABLE_SIZE}-slot table (the same on every instance with these backends)",
                key_value(key, client, headers, path),
                affinity.unwrap_or(0),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::candidate::testing::Idle;
    use std::sync::Arc;

    fn members(weights: &[u32]) -> Vec<Member<Idle>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Member {
                backend: Arc::new(Idle(SocketAddr::from(([10, 0, 0, i as u8 + 1], 80)))),
                weight: w,
                priority: 0,
            })
            .collect()
    }

    fn spread(b: &Balancer<Idle>, n: usize) -> Vec<usize> {
        let mut counts = vec![0; b.members().len()];
        for k in 0..n {
            let m = b.pick(Some(hash_bytes(&k.to_le_bytes())), &[]).unwrap();
            let i = b
                .members()
                .iter()
                .position(|x| Arc::ptr_eq(&x.backend, &m.backend))
                .unwrap();
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn smooth_round_robin_has_no_bursts() {
        let b = Balancer::new(
            Balance::RoundRobin,
            &HashKey::ClientIp,
            members(&[5, 1, 1]),
            false,
        );
        let order: Vec<u8> = (0..7)
            .map(|_| match b.pick(None, &[]).unwrap().backend.addr().ip() {
                IpAddr::V4(v4) => v4.octets()[3],
                IpAddr::V6(_) => 0,
            })
            .collect();
        // nginx's documented sequence for weights 5,1,1: a a b a c a a.
        assert_eq!(order, [1, 1, 2, 1, 3, 1, 1]);
    }

    #[test]
    fn weights_shape_every_algorithm() {
        for kind in [Balance::RoundRobin, Balance::Random, Balance::Hash] {
            let b = Balancer::new(kind, &HashKey::ClientIp, members(&[3, 1]), false);
            let c = spread(&b, 4000);
            let share = c[0] as f64 / 4000.0;
            assert!((0.70..0.80).contains(&share), "{kind:?}: {c:?}");
        }
    }

    #[test]
    fn hash_moves_about_one_nth_of_keys_when_a_member_goes() {
        let five = Balancer::new(
            Balance::Hash,
            &HashKey::ClientIp,
            members(&[1, 1, 1, 1, 1]),
            false,
        );
        let mut four_members = members(&[1, 1, 1, 1, 1]);
        four_members.remove(2);
        let four = Balancer::new(Balance::Hash, &HashKey::ClientIp, four_members, false);
        let (mut moved, n) = (0, 10_000u64);
        for k in 0..n {
            let h = Some(hash_bytes(&k.to_le_bytes()));
            let (a, b) = (five.pick(h, &[]).unwrap(), four.pick(h, &[]).unwrap());
            if a.backend.addr() != b.backend.addr() {
                moved += 1;
                assert_eq!(
                    a.backend.addr().to_string(),
                    "10.0.0.3:80",
                    "only the removed member's keys move"
                );
            }
        }
        let share = moved as f64 / n as f64;
        assert!((0.15..0.25).contains(&share), "moved {share}");
    }

    #[test]
    fn tried_members_are_skipped_and_exhaustion_is_reported() {
        let b = Balancer::new(
            Balance::RoundRobin,
            &HashKey::ClientIp,
            members(&[1, 1]),
            false,
        );
        let first = b.pick(None, &[]).unwrap().backend.addr();
        let second = b.pick(None, &[first]).unwrap().backend.addr();
        assert_ne!(first, second);
        assert!(matches!(
            b.pick(None, &[first, second]),
            Err(NoPick::AllTried)
        ));
    }

    #[test]
    fn only_the_lowest_priority_takes_requests_and_none_empties_the_entry() {
        let mut m = members(&[1, 1, 1]);
        m[2].priority = 20;
        m[0].priority = 10;
        m[1].priority = 10;
        for kind in [Balance::RoundRobin, Balance::Maglev, Balance::Hash] {
            let m = members(&[1, 1, 1])
                .into_iter()
                .enumerate()
                .map(|(i, mut x)| {
                    x.priority = if i == 2 { 20 } else { 10 };
                    x
                })
                .collect();
            let b = Balancer::new(kind, &HashKey::ClientIp, m, false);
            let counts = spread(&b, 300);
            assert_eq!(counts[2], 0, "{kind:?}: priority 20 used: {counts:?}");
            assert_eq!(b.fair_shares(), vec![0.5, 0.5, 0.0]);
        }
        let only_high = Balancer::new(
            Balance::RoundRobin,
            &HashKey::ClientIp,
            m.split_off(2),
            false,
        );
        assert_eq!(spread(&only_high, 3), vec![3]);
        for kind in [
            Balance::RoundRobin,
            Balance::Maglev,
            Balance::Hash,
            Balance::P2c,
        ] {
            let empty: Balancer<Idle> = Balancer::new(kind, &HashKey::ClientIp, Vec::new(), true);
            assert!(matches!(empty.pick(Some(7), &[]), Err(NoPick::AllDown(_))));
            assert!(empty.fair_shares().is_empty());
        }
    }
}
