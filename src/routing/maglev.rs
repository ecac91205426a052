//! Maglev hashing (Eisenbud et al., NSDI 2016): a lookup table of a prime size where
//! every backend fills slots in its own pseudo-random order, taking turns in
//! proportion to its weight. Built from the backend set alone — sorted by address —
//! so every relevo instance given the same backends, in any order, makes the same
//! choice for the same key; removing a backend moves its keys and only a small
//! fraction of the others.

use super::candidate::{Candidate, Member};
use super::hash_ring::hash_bytes;

/// The table size: a prime, large against the number of backends (the paper's 65537).
pub const TABLE_SIZE: usize = 65_537;

/// A Maglev lookup table: member index per slot.
#[derive(Debug)]
pub struct Maglev {
    /// `table[slot]` is the member (index in configuration order) owning the slot.
    table: Vec<u32>,
}

impl Maglev {
    /// The table for `members` (never empty), of `size` slots (a prime).
    pub fn new<B: Candidate>(members: &[Member<B>], size: usize) -> Maglev {
        // The same set gives the same table, whatever order the file lists it in.
        if members.is_empty() {
            // A name that resolves to nothing leaves an entry without members.
            return Maglev { table: Vec::new() };
        }
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by_key(|&i| members[i].backend.addr().to_string());
        let m = size as u64;
        let prefs: Vec<(u64, u64)> = order
            .iter()
            .map(|&i| {
                let name = members[i].backend.addr().to_string();
                let offset = hash_bytes(format!("{name}#offset").as_bytes()) % m;
                let skip = hash_bytes(format!("{name}#skip").as_bytes()) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; order.len()];
        let mut table = vec![u32::MAX; size];
        let mut filled = 0;
        'fill: loop {
            for (k, &i) in order.iter().enumerate() {
                // A member of weight w takes w slots per round.
                for _ in 0..members[i].weight.max(1) {
                    let (offset, skip) = prefs[k];
                    loop {
                        let slot = ((offset + next[k] * skip) % m) as usize;
                        next[k] += 1;
                        if table[slot] == u32::MAX {
                            table[slot] = i as u32;
                            filled += 1;
                            break;
                        }
                    }
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
        Maglev { table }
    }

    /// The member for a key's hash when `usable` allows it; else the first usable one
    /// in the slots that follow (only the keys of an unusable member move).
    pub fn lookup(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let start = (hash % self.table.len() as u64) as usize;
        (0..self.table.len())
            .map(|k| self.table[(start + k) % self.table.len()] as usize)
            .find(|&i| usable(i))
    }

    /// How many slots each member owns (its share of keys is this over the size).
    pub fn slots(&self, members: usize) -> Vec<usize> {
        let mut counts = vec![0; members];
        for &i in &self.table {
            if let Some(c) = counts.get_mut(i as usize) {
                *c += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::*;
    use crate::routing::candidate::testing::Idle;

    fn members(spec: &[(u8, u32)]) -> Vec<Member<Idle>> {
        spec.iter()
            .map(|&(last, weight)| Member {
                backend: Arc::new(Idle(SocketAddr::from(([10, 0, 0, last], 8080)))),
                weight,
                priority: 0,
            })
            .collect()
    }

    fn keys(n: u64) -> impl Iterator<Item = u64> {
        (0..n).map(|k| hash_bytes(format!("user-{k}").as_bytes()))
    }

    fn addr_of(m: &[Member<Idle>], t: &Maglev, h: u64) -> SocketAddr {
        m[t.lookup(h, |_| true).unwrap()].backend.0
    }

    #[test]
    fn two_instances_given_the_backends_in_another_order_agree_on_every_key() {
        let a = members(&[(1, 1), (2, 2), (3, 1), (4, 1)]);
        let b = members(&[(4, 1), (2, 2), (1, 1), (3, 1)]);
        let (ta, tb) = (Maglev::new(&a, TABLE_SIZE), Maglev::new(&b, TABLE_SIZE));
        for h in keys(100_000) {
            assert_eq!(addr_of(&a, &ta, h), addr_of(&b, &tb, h));
        }
    }

    #[test]
    fn removing_one_of_five_moves_its_keys_and_few_others() {
        let five = members(&[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
        let four = members(&[(1, 1), (2, 1), (4, 1), (5, 1)]);
        let (t5, t4) = (
            Maglev::new(&five, TABLE_SIZE),
            Maglev::new(&four, TABLE_SIZE),
        );
        let removed: SocketAddr = "10.0.0.3:8080".parse().unwrap();
        let (mut on_removed, mut others_moved, n) = (0, 0, 100_000u64);
        for h in keys(n) {
            let (before, after) = (addr_of(&five, &t5, h), addr_of(&four, &t4, h));
            if before == removed {
                on_removed += 1;
            } else if before != after {
                others_moved += 1;
            }
        }
        let share_removed = on_removed as f64 / n as f64;
        let disruption = others_moved as f64 / (n - on_removed) as f64;
        // The removed backend had a fifth of the keys; of the others' keys, Maglev moves
        // a few per cent (the paper's trade-off for its even spread).
        assert!((0.19..0.21).contains(&share_removed), "{share_removed}");
        assert!(disruption < 0.03, "{disruption} of the other keys moved");
        eprintln!("maglev: removed backend held {share_removed:.4} of the keys; {disruption:.4} of the rest moved");
    }

    #[test]
    fn load_follows_the_weights_within_one_percent() {
        let m = members(&[(1, 1), (2, 2), (3, 3), (4, 4)]);
        let t = Maglev::new(&m, TABLE_SIZE);
        let total: u32 = m.iter().map(|x| x.weight).sum();
        // The table itself is exact up to a slot per round.
        for (i, slots) in t.slots(m.len()).iter().enumerate() {
            let want = f64::from(m[i].weight) / f64::from(total);
            let got = *slots as f64 / TABLE_SIZE as f64;
            assert!(
                (got / want - 1.0).abs() < 0.001,
                "table: member {i} {got} vs {want}"
            );
        }
        // And 100,000 random keys land within one percentage point of the weights.
        let mut counts = vec![0u64; m.len()];
        for h in keys(100_000) {
            counts[t.lookup(h, |_| true).unwrap()] += 1;
        }
        for (i, c) in counts.iter().enumerate() {
            let want = f64::from(m[i].weight) / f64::from(total);
            let got = *c as f64 / 100_000.0;
            assert!(
                (got - want).abs() < 0.01,
                "keys: member {i} {got} vs {want}"
            );
        }
    }

    #[test]
    fn an_unusable_member_moves_only_its_own_keys() {
        let m = members(&[(1, 1), (2, 1), (3, 1)]);
        let t = Maglev::new(&m, TABLE_SIZE);
        for h in keys(20_000) {
            let all = t.lookup(h, |_| true).unwrap();
            let without_0 = t.lookup(h, |i| i != 0).unwrap();
            if all != 0 {
                assert_eq!(all, without_0);
            } else {
                assert_ne!(without_0, 0);
            }
        }
        assert_eq!(t.lookup(1, |_| false), None);
    }
}
