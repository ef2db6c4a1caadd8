//! Garbage collection of the DAG layer (docs/dag.md "Bounds and pruning"):
//! what no delivered or deliverable block can need any more is dropped from
//! memory, and its stored copy is deleted ([`DagEffect::ForgetBatches`]);
//! the data of delivered blocks is first archived for as long as the blocks
//! are kept ([`DagEffect::ArchiveBatches`]).
//!
//! - **Epochs.** Everything of epochs older than the previous one.
//! - **Delivered blocks.** The batches of a committed block once it is
//!   delivered and `retain_delivered_blocks` below the committed height (the
//!   margin answers fetches of peers that are a little behind).
//! - **Stale slots.** Per author, committed slots and certificates at rounds
//!   `≤ top − W` (no block may order them any more, see the stale rule of
//!   [`Availability::validate`]) and batch data at rounds `≤ top − 2W`.
//!
//! Data a retained committed block names (delivered or not) is pinned and
//! never dropped by the epoch or stale rules; our own batch with the highest
//! (epoch, round) is never dropped (a restart resumes authoring after it, or,
//! in a later epoch, past our highest committed round:
//! `Availability::first_free_round`).

use super::{Availability, DagEffect, SignedBatch, Slot};
use crate::pool_drops::PoolDropReason;
use crate::types::{Epoch, Hash32, Height, ValidatorId};

impl Availability {
    /// Whether held data is uncommitted and named by no retained committed
    /// block (what the per-author bounds count).
    pub(super) fn is_pending(&self, slot: &Slot, digest: &Hash32) -> bool {
        !self.state.committed.contains(slot) && !self.state.pinned.contains_key(digest)
    }

    /// The batches held for `author` in `epoch`, by round.
    pub(super) fn stored_of(
        &self,
        epoch: Epoch,
        author: ValidatorId,
    ) -> impl DoubleEndedIterator<Item = &(Slot, Hash32)> {
        let from = ((epoch, author, 0), Hash32::ZERO);
        let to = ((epoch, author, u64::MAX), Hash32([0xff; 32]));
        self.state.stored.range(from..=to)
    }

    /// Uncommitted transaction bytes held for `author` in `epoch`.
    pub(super) fn pending_bytes(&self, epoch: Epoch, author: ValidatorId) -> usize {
        self.stored_of(epoch, author)
            .filter(|(s, d)| self.is_pending(s, d))
            .filter_map(|(_, d)| self.state.data.get(d))
            .map(|sb| sb.batch.tx_bytes())
            .sum()
    }

    /// The highest committed round of `author`.
    pub(super) fn top(&self, author: ValidatorId) -> u64 {
        self.state
            .committed_round
            .get(&author)
            .copied()
            .unwrap_or(0)
    }

    /// Whether a slot of `author` at `round` is too far below the highest
    /// round `top` of that author ordered so far to be ordered again.
    pub(super) fn is_stale(&self, round: u64, top: u64) -> bool {
        round.saturating_add(self.cfg.max_rounds_ahead) <= top
    }

    /// Drop batch data from memory and queue the deletion of its stored
    /// copy (unless it is our own highest batch); the data dropped.
    fn drop_data(&mut self, digest: &Hash32) -> Option<SignedBatch> {
        if self.state.own_top.is_some_and(|(_, d)| d == *digest)
            || self.state.own_high.is_some_and(|(_, d)| d == *digest)
        {
            return None;
        }
        let sb = self.state.data.remove(digest)?;
        let slot = (sb.batch.epoch, sb.batch.author, sb.batch.round);
        self.state.stored.remove(&(slot, *digest));
        if self.state.slots.get(&slot) == Some(digest) {
            self.state.slots.remove(&slot);
        }
        self.state.metrics.batches_pruned_total += 1;
        self.state.forget.push(*digest);
        Some(sb)
    }

    /// Emit the archive copies and deletions queued so far, one effect each
    /// (the copies first).
    pub(super) fn flush_forget(&mut self) {
        if !self.state.archive.is_empty() {
            let batches = std::mem::take(&mut self.state.archive);
            self.emit(DagEffect::ArchiveBatches(batches));
        }
        if !self.state.forget.is_empty() {
            let ids = std::mem::take(&mut self.state.forget);
            self.emit(DagEffect::ForgetBatches(ids));
        }
    }

    /// A block was committed: pin the data it names until it is delivered
    /// and far enough below the committed height.
    pub(super) fn retain_committed(&mut self, height: Height, digests: Vec<Hash32>) {
        for d in &digests {
            *self.state.pinned.entry(*d).or_default() += 1;
        }
        self.state
            .committed_data
            .entry(height)
            .or_default()
            .extend(digests);
        self.state.committed_height = self.state.committed_height.max(height);
    }

    /// Drop the data of delivered blocks `retain_delivered_blocks` below the
    /// committed height.
    pub(super) fn prune_delivered(&mut self) {
        let below = self
            .state
            .committed_height
            .0
            .saturating_sub(self.cfg.retain_delivered_blocks);
        let upto = below.min(self.state.delivered.0);
        while let Some(entry) = self.state.committed_data.first_entry() {
            if entry.key().0 > upto {
                break;
            }
            let height = *entry.key();
            for d in entry.remove() {
                let left = match self.state.pinned.get_mut(&d) {
                    Some(n) => {
                        *n = n.saturating_sub(1);
                        *n
                    }
                    None => 0,
                };
                if left == 0 {
                    self.state.pinned.remove(&d);
                    // A delivered block's data: archived for peers that
                    // catch up from further back (also our own highest
                    // batch, which stays in memory: a copy).
                    let batch = self
                        .drop_data(&d)
                        .or_else(|| self.state.data.get(&d).cloned());
                    if let Some(batch) = batch {
                        self.state.metrics.batches_archived_total += 1;
                        self.state.archive.push(super::ArchivedBatch {
                            height,
                            digest: d,
                            batch,
                        });
                    }
                }
            }
        }
        self.flush_forget();
    }

    /// `author`'s highest committed round rose: drop its stale slots.
    pub(super) fn prune_stale(&mut self, author: ValidatorId) {
        let top = self.top(author);
        let w = self.cfg.max_rounds_ahead;
        let epochs: Vec<Epoch> = self
            .state
            .stored
            .iter()
            .map(|((e, _, _), _)| *e)
            .chain(self.state.committed.iter().map(|(e, _, _)| *e))
            .chain(self.state.certified.keys().map(|(e, _, _)| *e))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for epoch in epochs {
            let slots = |upto: u64| (epoch, author, 0)..=(epoch, author, upto);
            if let Some(upto) = top.checked_sub(w) {
                let dead: Vec<Slot> = self.state.committed.range(slots(upto)).copied().collect();
                for s in dead {
                    self.state.committed.remove(&s);
                }
                let dead: Vec<Slot> = self
                    .state
                    .certified
                    .range(slots(upto))
                    .map(|(s, _)| *s)
                    .collect();
                for s in dead {
                    self.state.certified.remove(&s);
                }
            }
            if let Some(upto) = top.checked_sub(w.saturating_mul(2)) {
                let from = ((epoch, author, 0), Hash32::ZERO);
                let to = ((epoch, author, upto), Hash32([0xff; 32]));
                let dead: Vec<Hash32> = self
                    .state
                    .stored
                    .range(from..=to)
                    .map(|(_, d)| *d)
                    .filter(|d| !self.state.pinned.contains_key(d))
                    .collect();
                for d in dead {
                    self.drop_data(&d);
                }
                self.state.fetches.retain(|_, f| {
                    f.prefetch_for.is_none()
                        || !(f.slot.0 == epoch && f.slot.1 == author && f.slot.2 <= upto)
                });
            }
        }
        self.flush_forget();
    }

    /// The epoch moved to `self.epoch`: drop what belongs to epochs before
    /// the previous one, and certificates and own batches awaiting acks of
    /// epochs before the current one (no block can order them any more).
    /// Our batches of epochs before `epoch` that no block ordered (awaiting
    /// acks, or certified but not committed) are given up with their epoch:
    /// their transactions were accepted by our pool and are now lost, so
    /// they are recorded as dropped ([`PoolDropReason::BatchExpired`]).
    fn record_expired_own_batches(&mut self, epoch: Epoch) {
        let me = self.me;
        let mut expired: Vec<Hash32> = self
            .state
            .own
            .values()
            .filter(|(r, _)| r.epoch < epoch)
            .map(|(r, _)| r.digest)
            .collect();
        expired.extend(
            self.state
                .certified
                .iter()
                .filter(|(s, _)| s.0 < epoch && s.1 == me && !self.state.committed.contains(*s))
                .map(|(_, c)| c.batch.digest),
        );
        expired.sort_unstable();
        expired.dedup();
        for digest in expired {
            let Some(batch) = self.state.data.get(&digest) else {
                continue;
            };
            let txs = batch.batch.txs.clone();
            for tx in &txs {
                self.pool
                    .record_drop(tx, PoolDropReason::BatchExpired { batch: digest });
            }
        }
    }

    pub(super) fn prune_epochs(&mut self) {
        let epoch = self.epoch;
        if self.state.pruned_for_epoch.is_some_and(|p| p >= epoch) {
            return;
        }
        self.state.pruned_for_epoch = Some(epoch);
        let keep_from = Epoch(epoch.0.saturating_sub(1));
        self.record_expired_own_batches(epoch);
        self.state.certified.retain(|s, _| s.0 >= epoch);
        self.state.own.retain(|_, (r, _)| r.epoch >= epoch);
        self.state.committed.retain(|s| s.0 >= keep_from);
        let dead: Vec<Hash32> = self
            .state
            .stored
            .iter()
            .take_while(|((e, _, _), _)| *e < keep_from)
            .map(|(_, d)| *d)
            .filter(|d| !self.state.pinned.contains_key(d))
            .collect();
        for d in dead {
            self.drop_data(&d);
        }
        self.state
            .fetches
            .retain(|_, f| f.prefetch_for.is_none() || f.slot.0 >= keep_from);
        self.state.next_round = self.first_free_round(epoch);
        self.flush_forget();
    }
}
