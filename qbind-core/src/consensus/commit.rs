//! QCs and TCs acting on state: raising the high QC, locking, the 3-chain
//! commit rule, epoch changes at commit, and TCs moving the view
//! (docs/consensus.md §C5, §C6.3, §C9).

use crate::consensus::Effect;
use crate::consensus::error::ConsensusError;
use crate::consensus::machine::HotStuff;
use crate::consensus::messages::{Block, QuorumCert, TimeoutCert};
use crate::types::{Epoch, Hash32, ValidatorId, View};

impl HotStuff {
    /// A verified QC: raise the high QC, lock, commit, and advance the view
    /// — if its labels may act on this validator's state (issue #17,
    /// finding 1: a QC's epoch label is chosen by whoever assembled it).
    ///
    /// - For a block this validator holds, the QC's epoch and view must be
    ///   the block's own, or the QC is invalid: old keys cannot certify a
    ///   block of a later epoch under their own epoch's label, and a view
    ///   label cannot be inflated.
    /// - For a block it does not hold, a QC of an epoch before the current
    ///   one is ignored (it cannot certify anything this validator still
    ///   needs; the block itself is fetched when a placed block needs it),
    ///   so keys valid only in a past epoch move no view and no high QC.
    ///
    /// Consensus §C5.1–C5.2 (docs/consensus.md).
    pub(crate) fn process_qc(
        &mut self,
        qc: &QuorumCert,
        hint: ValidatorId,
    ) -> Result<(), ConsensusError> {
        if qc.view() == View(0) {
            return Ok(());
        }
        let unbound = crate::mutants::active(crate::mutants::Mutant::PreviousEpochCertificate);
        match self.tree.get(&qc.block_id()) {
            _ if unbound => {}
            Some(b) if b.epoch() != qc.data.epoch || b.view() != qc.view() => {
                return Err(ConsensusError::InvalidQc {
                    block: qc.block_id(),
                    view: qc.view(),
                    why: "epoch or view differs from the certified block's",
                });
            }
            Some(_) => {}
            None if qc.data.epoch < self.epoch => {
                self.metrics.reject("past_epoch_qc_ignored");
                return Ok(());
            }
            None => {}
        }
        self.metrics.highest_seen_view = self.metrics.highest_seen_view.max(qc.view().0);
        if let Some(ms) = self.qc_latency.certified(qc.view(), self.now) {
            self.metrics.qc_formation_latency_ms = ms;
            self.metrics.qc_latencies_measured += 1;
        }
        self.safety.update_high_qc(qc);
        if self.tree.contains(&qc.block_id()) {
            self.apply_qc_to_known_block(qc);
        } else if qc.view() > self.tree.root().map(Block::view).unwrap_or_default() {
            self.fetch(qc.block_id(), hint);
        }
        self.enter_view(qc.view().next(), true);
        Ok(())
    }

    /// Lock and commit rules for a QC whose block is known and whose labels
    /// are the block's own.
    ///
    /// Consensus §C5.2 (docs/consensus.md).
    pub(crate) fn apply_qc_to_known_block(&mut self, qc: &QuorumCert) {
        let Some(block) = self.tree.get(&qc.block_id()).cloned() else {
            return;
        };
        if (block.epoch() != qc.data.epoch || block.view() != qc.view())
            && !crate::mutants::active(crate::mutants::Mutant::PreviousEpochCertificate)
        {
            return;
        }
        // 2-chain: the QC inside the certified block becomes the lock.
        let inner = block.justify().clone();
        self.safety.update_lock(&inner);
        self.try_commit(&block);
    }

    /// 3-chain rule: with a QC on `b`, commit `b`'s grandparent when the
    /// three views are consecutive. Suffix blocks past an epoch boundary are
    /// never committed; their boundary ancestor is.
    ///
    /// Consensus §C5.3 (docs/consensus.md).
    fn try_commit(&mut self, b: &Block) {
        let Some(p1) = self.tree.get(&b.parent_id()).cloned() else {
            return;
        };
        let two_chain = p1.view().next() == b.view();
        let mut target = if self.cfg.faults.commit_on_two_chain && two_chain {
            p1
        } else {
            let Some(p2) = self.tree.get(&p1.parent_id()).cloned() else {
                return;
            };
            if !(two_chain && p2.view().next() == p1.view()) {
                return;
            }
            p2
        };
        while target.height() > self.boundary(target.epoch()) {
            match self.tree.get(&target.parent_id()) {
                Some(p) => target = p.clone(),
                None => return,
            }
        }
        if target.height() <= self.tree.committed_height() {
            return;
        }
        self.commit_chain(&target.id());
    }

    /// Consensus §C5.3, §C9 (docs/consensus.md).
    fn commit_chain(&mut self, target: &Hash32) {
        let (chain, dropped) = self.tree.commit_to(target);
        let mut epoch_changed = false;
        for b in &chain {
            self.metrics.blocks_committed += 1;
            self.leaders
                .record(crate::consensus::leader::CommittedEntry::of(b));
            if b.height() == self.boundary(b.epoch()) {
                self.epoch = b.epoch().next();
                epoch_changed = true;
            }
            self.emit(Effect::Commit(b.clone()));
        }
        if !dropped.is_empty() {
            self.emit(Effect::ForgetBlocks(dropped));
        }
        self.deliver_committed(&chain);
        let committed = self.tree.committed_height();
        self.sync.forget_waiting_up_to(committed);
        if epoch_changed {
            // Votes and timeouts count only from the previous epoch on.
            let keep = Epoch(self.epoch.0.saturating_sub(1));
            self.votes.prune_epochs_below(keep);
            self.timeouts.prune_epochs_below(keep);
            self.try_propose();
        }
    }

    /// A verified TC: move to the view after it.
    ///
    /// Consensus §C6.3 (docs/consensus.md).
    pub(crate) fn process_tc(&mut self, tc: &TimeoutCert) {
        if let Some(next) = self.pace.record_tc(tc, self.epoch) {
            self.enter_view(next, false);
        }
    }
}
