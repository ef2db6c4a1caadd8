//! What a replica serves to peers outside the validator set (full nodes):
//! a token bucket per peer for the requests that make it read and send
//! blocks or batch data (`SyncRequest`, `SyncRange`, `BatchFetch`). A few
//! bytes of request can make a validator read and encode up to
//! [`crate::consensus::ConsensusConfig::sync_answer_bytes`] on the task that
//! also handles votes; members of the current set are not limited (a
//! validator catching up needs hundreds of ranges a second, and a faulty
//! member can hurt liveness in cheaper ways), non-members are.

use std::collections::BTreeMap;

use crate::types::{Millis, ValidatorId};

/// Non-members tracked at once; past this the peer seen longest ago is
/// forgotten (its bucket would have refilled by then anyway).
pub const MAX_TRACKED_PEERS: usize = 4_096;

/// One peer's bucket, in thousandths of a request.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli: u64,
    at: Millis,
}

/// Token buckets of non-member peers: `per_sec` requests a second, bursts
/// of twice that.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServeBudget {
    buckets: BTreeMap<ValidatorId, Bucket>,
}

impl ServeBudget {
    /// Spend one request of `from`'s budget at `now`; false if it is spent.
    pub(crate) fn take(&mut self, from: ValidatorId, now: Millis, per_sec: u32) -> bool {
        let rate = u64::from(per_sec);
        let full = rate.saturating_mul(2_000);
        if !self.buckets.contains_key(&from) && self.buckets.len() >= MAX_TRACKED_PEERS {
            let stalest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(id, _)| *id);
            if let Some(id) = stalest {
                self.buckets.remove(&id);
            }
        }
        let bucket = self.buckets.entry(from).or_insert(Bucket {
            milli: full,
            at: now,
        });
        let elapsed = now.0.saturating_sub(bucket.at.0);
        bucket.milli = bucket
            .milli
            .saturating_add(elapsed.saturating_mul(rate))
            .min(full);
        bucket.at = bucket.at.max(now);
        if bucket.milli >= 1_000 {
            bucket.milli -= 1_000;
            true
        } else {
            false
        }
    }

    /// Peers tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = ServeBudget::default();
        let peer = ValidatorId(9);
        let served = (0..100).filter(|_| b.take(peer, Millis(0), 10)).count();
        assert_eq!(served, 20, "a burst of twice the rate");
        // 100 ms later: one more request.
        assert!(b.take(peer, Millis(100), 10));
        assert!(!b.take(peer, Millis(100), 10));
        // A second later, 10 more; never more than the burst after a pause.
        let later = (0..100).filter(|_| b.take(peer, Millis(1_100), 10)).count();
        assert_eq!(later, 10);
        let after_pause = (0..100)
            .filter(|_| b.take(peer, Millis(60_000), 10))
            .count();
        assert_eq!(after_pause, 20);
        // Other peers have their own buckets.
        assert!(b.take(ValidatorId(10), Millis(60_000), 10));
        // A rate of 0 serves nothing.
        assert!(!b.take(ValidatorId(11), Millis(0), 0));
    }

    #[test]
    fn the_peers_tracked_are_bounded() {
        let mut b = ServeBudget::default();
        for i in 0..(MAX_TRACKED_PEERS as u32 + 50) {
            let _ = b.take(ValidatorId(1_000 + i), Millis(u64::from(i)), 5);
        }
        assert_eq!(b.len(), MAX_TRACKED_PEERS);
    }
}
