//! What a host entry's requests did: responses by code per member, durations, bytes,
//! and a sliding window of which member served the recent requests, from which the
//! *spread* (how far the split is from what weights and health ask for) is read.

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::stats::{Histogram, StatusCounts};

/// How many recent requests the spread is computed over.
pub const WINDOW: usize = 1024;

/// Counters of one host entry, recorded when a request finishes.
///
/// Every counter is shared (`Arc`) so that a new generation of the entry whose members
/// changed (a reload, a DNS answer) keeps counting where the old one was, for the entry
/// and for each member still there: Prometheus counters must not go back.
#[derive(Debug)]
pub struct Traffic {
    /// Responses by status per member (balancer order): `relevo_requests_total`.
    pub by_member: Vec<Arc<StatusCounts>>,
    /// Responses relevo gave itself, no backend involved (`backend="none"`).
    pub own: Arc<StatusCounts>,
    /// Head received → response end: `relevo_request_duration_seconds`.
    pub duration: Arc<Histogram>,
    /// The same, per member (the status page's per-backend p50/p99).
    pub member_durations: Vec<Arc<Histogram>>,
    /// Failed attempts per member that were tried again: `relevo_retries_total`.
    pub retried: Vec<Arc<AtomicU64>>,
    /// Request body bytes read from clients (shared with each request's body reader).
    pub bytes_in: Arc<AtomicU64>,
    /// Response body bytes sent to clients.
    pub bytes_out: Arc<AtomicU64>,
    /// Member index + 1 of each of the last `WINDOW` forwarded requests (0: empty).
    window: Box<[AtomicU16]>,
    /// Where the next request goes in `window`.
    next: AtomicUsize,
}

impl Traffic {
    /// Counters for an entry of `members` backends.
    pub fn new(members: usize) -> Traffic {
        Traffic {
            by_member: (0..members).map(|_| Arc::default()).collect(),
            own: Arc::default(),
            retried: (0..members).map(|_| Arc::default()).collect(),
            duration: Arc::default(),
            member_durations: (0..members).map(|_| Arc::default()).collect(),
            bytes_in: Arc::default(),
            bytes_out: Arc::default(),
            window: (0..WINDOW).map(|_| AtomicU16::new(0)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Counters for a new member list: `kept[i]` is the index in `self` of new member
    /// `i` if it was a member before. Kept members and the entry go on counting where
    /// they were; new members start at zero. The spread's window starts empty, since
    /// its indexes were the old list's.
    pub fn carried(&self, kept: &[Option<usize>]) -> Traffic {
        fn pick<T: Default>(v: &[Arc<T>], old: Option<usize>) -> Arc<T> {
            old.and_then(|o| v.get(o)).cloned().unwrap_or_default()
        }
        Traffic {
            by_member: kept.iter().map(|&o| pick(&self.by_member, o)).collect(),
            own: self.own.clone(),
            retried: kept.iter().map(|&o| pick(&self.retried, o)).collect(),
            duration: self.duration.clone(),
            member_durations: kept
                .iter()
                .map(|&o| pick(&self.member_durations, o))
                .collect(),
            bytes_in: self.bytes_in.clone(),
            bytes_out: self.bytes_out.clone(),
            window: (0..WINDOW).map(|_| AtomicU16::new(0)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// One finished request: `member` served it (`None`: relevo answered).
    pub fn record(&self, member: Option<usize>, status: u16, took: Duration, bytes_out: u64) {
        self.duration.observe(took);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        match member.and_then(|m| self.by_member.get(m).map(|c| (m, c))) {
            Some((m, counts)) => {
                counts.add(status);
                if let Some(h) = self.member_durations.get(m) {
                    h.observe(took);
                }
                let slot = self.next.fetch_add(1, Ordering::Relaxed) % WINDOW;
                self.window[slot].store(m as u16 + 1, Ordering::Relaxed);
            }
            None => self.own.add(status),
        }
    }

    /// How many of the recent forwarded requests each member served.
    pub fn recent(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.by_member.len()];
        for slot in self.window.iter() {
            let m = slot.load(Ordering::Relaxed) as usize;
            if let Some(c) = m.checked_sub(1).and_then(|m| counts.get_mut(m)) {
                *c += 1;
            }
        }
        counts
    }
}

/// The spread of a split: the total variation distance between the shares `observed`
/// and the `fair` ones (which sum to 1): 0 when every member got exactly its share, 1
/// when all the traffic went to members that should get none. Half the sum of the
/// absolute differences is also "the fraction of requests that would have to move".
/// `None` without requests.
pub fn spread(observed: &[u64], fair: &[f64]) -> Option<f64> {
    let total: u64 = observed.iter().sum();
    if total == 0 {
        return None;
    }
    let distance: f64 = observed
        .iter()
        .zip(fair)
        .map(|(&o, &f)| (o as f64 / total as f64 - f).abs())
        .sum();
    Some((distance / 2.0).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_reads_as_the_fraction_to_move() {
        assert_eq!(spread(&[50, 50], &[0.5, 0.5]), Some(0.0));
        assert_eq!(spread(&[100, 0], &[0.5, 0.5]), Some(0.5));
        assert_eq!(spread(&[0, 10], &[1.0, 0.0]), Some(1.0));
        assert_eq!(spread(&[0, 0], &[0.5, 0.5]), None);
        let t = Traffic::new(2);
        for _ in 0..3 {
            t.record(Some(1), 200, Duration::from_millis(1), 10);
        }
        t.record(None, 403, Duration::from_millis(1), 10);
        assert_eq!(t.recent(), vec![0, 3]);
        assert_eq!(t.own.nonzero(), vec![(403, 1)]);
        assert_eq!(t.bytes_out.load(Ordering::Relaxed), 40);
    }

    #[test]
    fn carried_counters_follow_the_members_that_stay() {
        let old = Traffic::new(2);
        old.record(Some(0), 200, Duration::from_millis(1), 1);
        old.record(Some(1), 502, Duration::from_millis(1), 1);
        // Member 1 stays (now first), member 0 goes, a new one comes.
        let new = old.carried(&[Some(1), None]);
        assert_eq!(new.by_member[0].nonzero(), vec![(502, 1)]);
        assert!(new.by_member[1].nonzero().is_empty());
        // A request of the old generation still finishing counts in the new one too.
        old.record(Some(1), 200, Duration::from_millis(1), 1);
        assert_eq!(new.by_member[0].nonzero(), vec![(200, 1), (502, 1)]);
        assert_eq!(new.duration.snapshot().count(), 3);
    }
}
