//! SRV selection (RFC 2782): which records serve, with which share. Priorities stay on
//! the targets (the balancer uses only the lowest priority that has a member in
//! rotation, so a lower one takes over again as soon as one of its targets is back);
//! weights become relevo weights.

use std::net::SocketAddr;

use super::target::Target;

/// Largest relevo weight an SRV weight maps to: enough resolution for any split a
/// person writes (1% steps), small enough for the hash ring (160 points per unit).
pub const MAX_WEIGHT: u32 = 100;

/// One SRV record with one of its target's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrvRecord {
    /// The target's address on the record's port.
    pub addr: SocketAddr,
    /// The record's priority: lower is preferred.
    pub priority: u16,
    /// The record's weight among the records of its priority.
    pub weight: u16,
}

/// The targets of `records`, their weights scaled per priority.
///
/// RFC 2782 §"Weight": larger weights get a proportionately higher share; "records
/// with weight 0 should have a very small chance of being selected" when others of
/// the same priority weigh more, and an all-zero priority means no preference. So
/// within a priority the largest weight becomes `MAX_WEIGHT`, the others their
/// proportion of it (at least 1), and a 0 becomes 1 (1% of the largest); all zero
/// become 1 each. The same address in two records keeps the first (lowest priority).
pub fn targets(records: &[SrvRecord]) -> Vec<Target> {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| (r.priority, r.addr));
    let mut out: Vec<Target> = Vec::with_capacity(sorted.len());
    for r in &sorted {
        if out.iter().any(|t| t.addr == r.addr) {
            continue;
        }
        let heaviest = sorted
            .iter()
            .filter(|o| o.priority == r.priority)
            .map(|o| u32::from(o.weight))
            .max()
            .unwrap_or(0);
        let weight = match (heaviest, u32::from(r.weight)) {
            (0, _) | (_, 0) => 1,
            (max, w) => ((w * MAX_WEIGHT + max / 2) / max).max(1),
        };
        out.push(Target {
            addr: r.addr,
            weight,
            priority: r.priority,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(port: u16, priority: u16, weight: u16) -> SrvRecord {
        SrvRecord {
            addr: SocketAddr::from(([10, 0, 0, 1], port)),
            priority,
            weight,
        }
    }

    fn weights(t: &[Target]) -> Vec<(u16, u16, u32)> {
        t.iter()
            .map(|t| (t.addr.port(), t.priority, t.weight))
            .collect()
    }

    #[test]
    fn weights_keep_their_proportions_within_a_priority() {
        let t = targets(&[rec(1, 10, 3), rec(2, 10, 1), rec(3, 20, 7)]);
        assert_eq!(weights(&t), vec![(1, 10, 100), (2, 10, 33), (3, 20, 100)]);
    }

    #[test]
    fn weight_zero_gets_a_very_small_share_unless_all_are_zero() {
        let t = targets(&[rec(1, 0, 0), rec(2, 0, 50)]);
        assert_eq!(weights(&t), vec![(1, 0, 1), (2, 0, 100)]);
        let t = targets(&[rec(1, 0, 0), rec(2, 0, 0)]);
        assert_eq!(weights(&t), vec![(1, 0, 1), (2, 0, 1)]);
    }

    #[test]
    fn large_weights_are_scaled_down_and_never_to_zero() {
        let t = targets(&[rec(1, 0, 65535), rec(2, 0, 1)]);
        assert_eq!(weights(&t), vec![(1, 0, 100), (2, 0, 1)]);
    }

    #[test]
    fn an_address_in_two_priorities_serves_in_the_lower() {
        let t = targets(&[rec(1, 20, 5), rec(1, 10, 5), rec(2, 20, 5)]);
        assert_eq!(weights(&t), vec![(1, 10, 100), (2, 20, 100)]);
    }
}
