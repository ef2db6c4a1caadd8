//! What became of transactions a pool accepted and then let go without
//! their being committed (issue #19: refusals after admission reported to
//! the API caller; issue #21: nothing accepted is silently lost).
//!
//! A transaction can leave a validator's pool without a commit when
//!
//! - a higher-fee transaction evicts it from the full fee-priority pool
//!   ([`PoolDropReason::Evicted`]);
//! - a transaction of the same sender and nonce with a higher fee replaces
//!   it ([`PoolDropReason::Replaced`]);
//! - the pool refuses it when the engine hands it over, after the public
//!   API already answered 202 (the pool filled up between the API's check
//!   and the engine's insert; [`PoolDropReason::Refused`]);
//! - (DAG mode) its batch was neither ordered nor committed before the
//!   batch's epoch ended ([`PoolDropReason::BatchExpired`]);
//! - another transaction of the same sender and nonce was committed first
//!   ([`PoolDropReason::NonceUsed`]).
//!
//! Batches otherwise keep what they took from the pool: a batch whose
//! signature fails returns its transactions to the pool (a refusal there is
//! recorded as above), and a certified batch stays until a block orders it.
//!
//! The pool ([`crate::mempool::TxPool`]) queues each such drop (bounded,
//! [`MAX_UNPUBLISHED_DROPS`]); the engine moves them after every input into
//! a [`PoolMonitor`] the embedder shares with its API, which keeps the
//! last [`DROP_RECORD_CAPACITY`] keyed by transaction hash, along with the
//! pool's depth and capacity for admission backpressure.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::types::Hash32;

/// Drops a [`DropRecord`] remembers; the oldest are forgotten first (their
/// transactions then read as unknown).
pub const DROP_RECORD_CAPACITY: usize = 65_536;

/// Drops a pool queues for the engine to publish; beyond this the oldest
/// unpublished ones are discarded (an engine publishes after every input,
/// so this only bounds a pool nobody reads, as in the simulator).
pub const MAX_UNPUBLISHED_DROPS: usize = 65_536;

/// Why an accepted transaction left the pool without a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolDropReason {
    /// Evicted from the full pool to make room for `by`, which pays more.
    Evicted {
        /// The transaction admitted in its place.
        by: Hash32,
    },
    /// Replaced by `by`, of the same sender and nonce, with a higher fee.
    Replaced {
        /// The replacement.
        by: Hash32,
    },
    /// The pool refused it when it arrived from the API (the metric label
    /// of the refusal, e.g. `pool_full`, `sender_limit`).
    Refused(&'static str),
    /// It was in our DAG batch `batch`, which no block ordered before the
    /// batch's epoch ended (docs/dag.md, "Epochs").
    BatchExpired {
        /// The batch's digest.
        batch: Hash32,
    },
    /// Another transaction of its sender with the same nonce was committed
    /// (or handed to a batch) first: it can never execute.
    NonceUsed,
}

impl PoolDropReason {
    /// A stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            PoolDropReason::Evicted { .. } => "evicted",
            PoolDropReason::Replaced { .. } => "replaced",
            PoolDropReason::Refused(_) => "refused",
            PoolDropReason::BatchExpired { .. } => "batch_expired",
            PoolDropReason::NonceUsed => "nonce_used",
        }
    }
}

/// The last [`DROP_RECORD_CAPACITY`] drops by transaction hash.
#[derive(Debug)]
pub struct DropRecord {
    by_hash: HashMap<Hash32, PoolDropReason>,
    order: VecDeque<Hash32>,
    capacity: usize,
}

impl Default for DropRecord {
    fn default() -> Self {
        DropRecord::with_capacity(DROP_RECORD_CAPACITY)
    }
}

impl DropRecord {
    /// A record keeping at most `capacity` drops.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        DropRecord {
            by_hash: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Record that `id` was dropped for `reason` (a later drop of the same
    /// transaction overwrites the reason).
    pub fn record(&mut self, id: Hash32, reason: PoolDropReason) {
        if self.by_hash.insert(id, reason).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.by_hash.remove(&old);
            }
        }
    }

    /// Why `id` was dropped, if it was recently.
    #[must_use]
    pub fn get(&self, id: &Hash32) -> Option<PoolDropReason> {
        self.by_hash.get(id).copied()
    }

    /// Forget `id` (it was accepted again).
    pub fn forget(&mut self, id: &Hash32) {
        if self.by_hash.remove(id).is_some() {
            self.order.retain(|h| h != id);
        }
    }

    /// Drops remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// The pool as the engine last saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// Pending transactions.
    pub len: usize,
    /// The most it holds.
    pub capacity: usize,
    /// The lowest pending fee per gas when the pool is the fee-priority one
    /// (a full pool admits only a transaction paying more).
    pub lowest_fee_per_gas: Option<u128>,
}

#[derive(Debug, Default)]
struct MonitorState {
    pool: PoolSnapshot,
    /// Handed to the engine and not yet seen in a snapshot.
    queued: usize,
    drops: DropRecord,
}

/// A validator's pool as its embedder sees it across threads: the engine
/// [`publish`](Self::publish)es after every input, the API reads it to
/// refuse submissions when the pool is full ([`Self::would_refuse`]) and to
/// report dropped transactions ([`Self::dropped`]).
#[derive(Debug, Default)]
pub struct PoolMonitor {
    state: Mutex<MonitorState>,
}

impl PoolMonitor {
    fn lock(&self) -> MutexGuard<'_, MonitorState> {
        // Every update is a few field writes: a poisoned lock still holds
        // consistent-enough data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The engine's report: the pool now, the drops since the last report,
    /// and how many submissions it took from its channel since then.
    pub fn publish(
        &self,
        pool: PoolSnapshot,
        drops: impl IntoIterator<Item = (Hash32, PoolDropReason)>,
        taken: usize,
    ) {
        let mut s = self.lock();
        s.pool = pool;
        s.queued = s.queued.saturating_sub(taken);
        for (id, reason) in drops {
            s.drops.record(id, reason);
        }
    }

    /// A submission was handed to the engine (counted against the pool's
    /// room until the engine takes it); `id` is no longer dropped.
    pub fn queued(&self, id: &Hash32) {
        let mut s = self.lock();
        s.queued = s.queued.saturating_add(1);
        s.drops.forget(id);
    }

    /// A submission queued with [`Self::queued`] never reached the engine.
    pub fn unqueued(&self) {
        let mut s = self.lock();
        s.queued = s.queued.saturating_sub(1);
    }

    /// Whether a transaction paying `fee_per_gas` would find the pool full:
    /// pending plus queued transactions reach the capacity and (fee pool)
    /// it does not outbid the lowest pending one.
    #[must_use]
    pub fn would_refuse(&self, fee_per_gas: u128) -> bool {
        let s = self.lock();
        if s.pool.capacity == 0 {
            return false;
        }
        let full = s.pool.len.saturating_add(s.queued) >= s.pool.capacity;
        full && s
            .pool
            .lowest_fee_per_gas
            .is_none_or(|low| fee_per_gas <= low)
    }

    /// The last snapshot and the submissions queued since.
    #[must_use]
    pub fn snapshot(&self) -> (PoolSnapshot, usize) {
        let s = self.lock();
        (s.pool, s.queued)
    }

    /// Why `id` left the pool without a commit, if it did recently.
    #[must_use]
    pub fn dropped(&self, id: &Hash32) -> Option<PoolDropReason> {
        self.lock().drops.get(id)
    }

    /// Drops remembered.
    #[must_use]
    pub fn drops_len(&self) -> usize {
        self.lock().drops.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u64) -> Hash32 {
        Hash32::digest(&i.to_be_bytes())
    }

    #[test]
    fn the_record_is_bounded_under_a_flood() {
        let mut r = DropRecord::with_capacity(100);
        for i in 0..10_000 {
            r.record(h(i), PoolDropReason::Refused("pool_full"));
        }
        assert_eq!(r.len(), 100);
        assert_eq!(r.order.len(), 100);
        assert_eq!(r.get(&h(0)), None, "the oldest are forgotten");
        assert_eq!(r.get(&h(9_999)), Some(PoolDropReason::Refused("pool_full")));
        // Re-recording does not grow it.
        r.record(h(9_999), PoolDropReason::Evicted { by: h(1) });
        assert_eq!(r.len(), 100);
        r.forget(&h(9_999));
        assert_eq!(r.get(&h(9_999)), None);
        assert_eq!(r.order.len(), 99);
    }

    #[test]
    fn the_monitor_refuses_when_pending_and_queued_fill_the_pool() {
        let m = PoolMonitor::default();
        assert!(!m.would_refuse(1), "nothing published yet: no opinion");
        let pool = PoolSnapshot {
            len: 9,
            capacity: 10,
            lowest_fee_per_gas: Some(5),
        };
        m.publish(pool, [], 0);
        assert!(!m.would_refuse(1));
        m.queued(&h(1));
        assert!(m.would_refuse(5), "9 pending + 1 queued = capacity");
        assert!(!m.would_refuse(6), "a higher fee may still evict");
        m.publish(pool, [(h(7), PoolDropReason::Refused("pool_full"))], 1);
        assert!(!m.would_refuse(1));
        assert_eq!(m.dropped(&h(7)), Some(PoolDropReason::Refused("pool_full")));
        // Accepted again: no longer dropped.
        m.queued(&h(7));
        assert_eq!(m.dropped(&h(7)), None);
        m.unqueued();
        assert_eq!(m.snapshot().1, 0);
    }
}
