//! The bounds on everything an outsider can make the DAG layer hold
//! (STYLE 5c; docs/dag.md "Bounds and pruning"), and
//! [`Availability::footprint`], which counts it for tests and metrics.
//!
//! A validator keeps, per author and retained epoch (the current one and the
//! one before), only slots whose round lies within `max_rounds_ahead` (W) of
//! the author's highest committed round: batches are accepted for rounds in
//! `(top − W, top + W]` and kept down to `top − 2W` (the extra W is slack so
//! that no block a quorum could still commit needs pruned data, see
//! [`Availability::validate`]'s stale rule). Uncommitted data of one author
//! is also capped in bytes ([`MAX_PENDING_BYTES_PER_AUTHOR`]).

use std::collections::BTreeMap;

use super::Availability;
use crate::types::Epoch;

/// Most bytes of uncommitted batch data kept for one author in one epoch
/// (16 MiB). The slot window alone would allow `max_rounds_ahead` ×
/// `max_batch_bytes` (64 × 4 MiB = 256 MiB per author); an honest author
/// has only the batches of about one certification round trip uncommitted
/// (its batches are certified within a round trip and ordered by the next
/// block), which is far below this at any realistic bandwidth. A batch that
/// would exceed it is refused (not acknowledged), and an author at the bound
/// stops cutting batches until its batches commit.
pub const MAX_PENDING_BYTES_PER_AUTHOR: usize = 16 * 1024 * 1024;

/// Most outstanding prefetches (fetches of certified, not yet committed
/// batch data) in total. Fetches a committed block waits for are not
/// counted: there is at most one at a time (delivery stops at the first
/// missing batch).
pub const MAX_PREFETCHES: usize = 256;

/// Most outstanding prefetches started by one peer's certificates or
/// proposals.
pub const MAX_PREFETCHES_PER_PEER: usize = 32;

/// Signers of a certificate asked at once for its batch's data, and again
/// at each retry (the next ones in turn). Two: a single signer that never
/// answers (withholding, or Byzantine) no longer costs a retry per fetch,
/// and the requests in flight stay within `BATCH_FETCH_FANOUT ×
/// (MAX_PREFETCHES + 1)` per `fetch_retry_ms`, each answered by at most
/// one batch.
pub const BATCH_FETCH_FANOUT: usize = 2;

/// A fetch is dropped once every signer of its certificate was asked this
/// many times (a fetch a committed block waits for is then issued again).
pub const MAX_FETCH_ROUNDS: usize = 3;

/// Most batches of our own awaiting acknowledgements (the oldest is given
/// up beyond it; its acks stop being collected). Each holds at most one ack
/// per validator of its epoch.
pub const MAX_OWN_AWAITING_ACKS: usize = 64;

/// Most batches held back for one author because they cannot be checked
/// yet (a batch of an epoch this validator has not reached, or whose keys
/// are not final here: it is behind). They are checked again, and
/// acknowledged if still valid, once it has caught up; beyond the bound the
/// author's lowest slots are let go.
pub const MAX_PARKED_PER_AUTHOR: usize = 32;

/// Most bytes held back for one author (see [`MAX_PARKED_PER_AUTHOR`];
/// less with more than 8 validators, see
/// [`Availability::parked_bytes_per_author`]).
pub const MAX_PARKED_BYTES_PER_AUTHOR: usize = 8 * 1024 * 1024;

/// Most bytes held back in all, shared equally by the validators: a batch
/// that does not fit its author's share is refused as before (it is not
/// acknowledged).
pub const MAX_PARKED_BYTES: usize = 64 * 1024 * 1024;

/// Batches of epochs more than this many past the validator's own are not
/// held back (refused as before): a Byzantine member cannot park batches
/// that never expire, and what is parked goes when its epoch passes.
pub const MAX_PARKED_EPOCHS_AHEAD: u64 = 4;

/// What the DAG layer holds: counts (and bytes) per structure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Batches whose data is held.
    pub batches: usize,
    /// Transaction bytes of the batches held.
    pub batch_bytes: usize,
    /// Largest count of uncommitted batches held for one (epoch, author).
    pub max_pending_batches_per_author: usize,
    /// Largest uncommitted transaction bytes held for one (epoch, author).
    pub max_pending_bytes_per_author: usize,
    /// Entries of the first-batch-per-slot map.
    pub slots: usize,
    /// Our own batches awaiting acknowledgements.
    pub own_awaiting: usize,
    /// Acknowledgements collected for them.
    pub own_acks: usize,
    /// Certified, uncommitted batches (proposal candidates).
    pub certified: usize,
    /// Committed slots remembered.
    pub committed_slots: usize,
    /// Authors with a highest committed round.
    pub committed_rounds: usize,
    /// Outstanding fetches.
    pub fetches: usize,
    /// Largest count of outstanding prefetches started by one peer.
    pub max_prefetches_per_peer: usize,
    /// Batches held back until they can be checked.
    pub parked: usize,
    /// Largest count of batches held back for one author.
    pub max_parked_per_author: usize,
    /// Bytes of the batches held back (transactions, their vector headers,
    /// the signed batch).
    pub parked_bytes: usize,
    /// Committed blocks waiting for delivery.
    pub to_deliver: usize,
    /// Committed blocks whose batch data is still retained.
    pub retained_blocks: usize,
}

impl Footprint {
    /// The first field of `self` above the same field of `limit`, if any.
    #[must_use]
    pub fn exceeds(&self, limit: &Footprint) -> Option<&'static str> {
        let fields = [
            ("batches", self.batches, limit.batches),
            ("batch_bytes", self.batch_bytes, limit.batch_bytes),
            (
                "max_pending_batches_per_author",
                self.max_pending_batches_per_author,
                limit.max_pending_batches_per_author,
            ),
            (
                "max_pending_bytes_per_author",
                self.max_pending_bytes_per_author,
                limit.max_pending_bytes_per_author,
            ),
            ("slots", self.slots, limit.slots),
            ("own_awaiting", self.own_awaiting, limit.own_awaiting),
            ("own_acks", self.own_acks, limit.own_acks),
            ("certified", self.certified, limit.certified),
            (
                "committed_slots",
                self.committed_slots,
                limit.committed_slots,
            ),
            (
                "committed_rounds",
                self.committed_rounds,
                limit.committed_rounds,
            ),
            ("fetches", self.fetches, limit.fetches),
            (
                "max_prefetches_per_peer",
                self.max_prefetches_per_peer,
                limit.max_prefetches_per_peer,
            ),
            ("parked", self.parked, limit.parked),
            (
                "max_parked_per_author",
                self.max_parked_per_author,
                limit.max_parked_per_author,
            ),
            ("parked_bytes", self.parked_bytes, limit.parked_bytes),
            ("to_deliver", self.to_deliver, limit.to_deliver),
            (
                "retained_blocks",
                self.retained_blocks,
                limit.retained_blocks,
            ),
        ];
        fields
            .into_iter()
            .find(|(_, have, max)| have > max)
            .map(|(name, _, _)| name)
    }
}

impl Availability {
    /// What this layer holds now.
    #[must_use]
    pub fn footprint(&self) -> Footprint {
        let s = &self.state;
        let mut pending = std::collections::BTreeMap::new();
        for (slot, digest) in &s.stored {
            if self.is_pending(slot, digest) {
                let e: &mut (usize, usize) = pending.entry((slot.0, slot.1)).or_default();
                e.0 += 1;
                e.1 += s.data.get(digest).map_or(0, |sb| sb.batch.tx_bytes());
            }
        }
        let mut per_peer = std::collections::BTreeMap::new();
        for f in s.fetches.values() {
            if let Some(p) = f.prefetch_for {
                *per_peer.entry(p).or_insert(0usize) += 1;
            }
        }
        Footprint {
            batches: s.data.len(),
            batch_bytes: s.data.values().map(|sb| sb.batch.tx_bytes()).sum(),
            max_pending_batches_per_author: pending.values().map(|p| p.0).max().unwrap_or(0),
            max_pending_bytes_per_author: pending.values().map(|p| p.1).max().unwrap_or(0),
            slots: s.slots.len(),
            own_awaiting: s.own.len(),
            own_acks: s.own.values().map(|(_, acks)| acks.len()).sum(),
            certified: s.certified.len(),
            committed_slots: s.committed.len(),
            committed_rounds: s.committed_round.len(),
            fetches: s.fetches.len(),
            max_prefetches_per_peer: per_peer.values().copied().max().unwrap_or(0),
            parked: s.parked.values().map(BTreeMap::len).sum(),
            max_parked_per_author: s.parked.values().map(BTreeMap::len).max().unwrap_or(0),
            parked_bytes: s
                .parked
                .values()
                .flat_map(BTreeMap::values)
                .map(super::catch_up::parked_size)
                .sum(),
            to_deliver: s.to_deliver.len(),
            retained_blocks: s.committed_data.len(),
        }
    }

    /// The most each structure of [`Availability::footprint`] may hold now,
    /// whatever peers send. The parts that follow the chain rather than
    /// peers (committed blocks waiting for delivery and their batches) are
    /// bounded by the commit rate; they are added from the current backlog.
    #[must_use]
    pub fn footprint_limits(&self) -> Footprint {
        let w = usize::try_from(self.cfg.max_rounds_ahead).unwrap_or(usize::MAX);
        let n_current = self.schedule.set(self.epoch).len();
        let n_previous = Epoch(self.epoch.0.saturating_sub(1));
        let n = n_current + self.schedule.set(n_previous).len();
        let retain = usize::try_from(self.cfg.retain_delivered_blocks).unwrap_or(usize::MAX);
        // Heights retained: `retain` delivered ones, the undelivered backlog
        // and the one being delivered.
        let retained_blocks = retain
            .saturating_add(self.state.to_deliver.len())
            .saturating_add(1);
        let committed_batches = retained_blocks.saturating_mul(self.cfg.max_batches_per_block);
        // Per (epoch, author): rounds in (top − 2W, top + W].
        let pending_batches = w.saturating_mul(3);
        let batches = n
            .saturating_mul(pending_batches)
            .saturating_add(committed_batches)
            .saturating_add(2); // our own latest and highest-round batches
        let pending_bytes = MAX_PENDING_BYTES_PER_AUTHOR.saturating_add(self.cfg.max_batch_bytes);
        Footprint {
            batches,
            batch_bytes: n.saturating_mul(pending_bytes).saturating_add(
                committed_batches
                    .saturating_add(1)
                    .saturating_mul(self.cfg.max_batch_bytes),
            ),
            max_pending_batches_per_author: pending_batches,
            max_pending_bytes_per_author: pending_bytes,
            slots: batches,
            own_awaiting: MAX_OWN_AWAITING_ACKS,
            own_acks: MAX_OWN_AWAITING_ACKS.saturating_mul(self.schedule.max_validators()),
            certified: n_current.saturating_mul(w.saturating_mul(2)),
            committed_slots: n.saturating_mul(w),
            committed_rounds: self.schedule.max_validators(),
            fetches: MAX_PREFETCHES + 1,
            max_prefetches_per_peer: MAX_PREFETCHES_PER_PEER,
            parked: self
                .schedule
                .max_validators()
                .saturating_mul(MAX_PARKED_PER_AUTHOR),
            max_parked_per_author: MAX_PARKED_PER_AUTHOR,
            parked_bytes: MAX_PARKED_BYTES,
            to_deliver: self.state.to_deliver.len(),
            retained_blocks,
        }
    }
}
