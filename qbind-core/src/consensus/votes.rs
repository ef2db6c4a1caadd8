//! Vote and timeout keeping (DESIGN "Consensus"): the next leader gathers
//! verified votes per block into a QC; every validator gathers verified
//! timeouts per view into a TC. Only a voter's first vote in a view counts,
//! so memory is bounded by validators × views kept (older views are pruned
//! as the pacemaker moves on).

use std::collections::BTreeMap;

use crate::consensus::messages::{QuorumCert, SignerBitmap, TimeoutCert, TimeoutData, VoteData};
use crate::crypto::Signature;
use crate::types::{Epoch, Hash32, ValidatorId, View};
use crate::validator::ValidatorSet;

/// Votes gathered by the leader of the next view, per block. Only a voter's
/// first vote in a view counts (a second, conflicting one is evidence, not
/// state), so memory is bounded by validators × views kept.
#[derive(Default)]
pub(crate) struct VoteCollector {
    pending: BTreeMap<(Epoch, View, Hash32), BTreeMap<ValidatorId, Signature>>,
    voted: BTreeMap<(Epoch, View), BTreeMap<ValidatorId, Hash32>>,
    done: BTreeMap<(Epoch, View), Hash32>,
}

impl VoteCollector {
    /// Add a verified vote. Returns a QC when this vote completes a quorum.
    pub(crate) fn add(
        &mut self,
        set: &ValidatorSet,
        data: VoteData,
        voter: ValidatorId,
        signature: Signature,
    ) -> Option<QuorumCert> {
        if self.done.contains_key(&(data.epoch, data.view)) {
            return None;
        }
        let first = self
            .voted
            .entry((data.epoch, data.view))
            .or_default()
            .entry(voter)
            .or_insert(data.block_id);
        if *first != data.block_id {
            return None;
        }
        let entry = self
            .pending
            .entry((data.epoch, data.view, data.block_id))
            .or_default();
        let repeated = entry.insert(voter, signature).is_some();
        let mut stake = set.stake_of(entry.keys());
        if repeated && crate::mutants::active(crate::mutants::Mutant::DuplicateSignerCounted) {
            stake = stake.saturating_add(set.stake_of([&voter]));
        }
        if !set.is_quorum(stake) {
            return None;
        }
        let mut signers = SignerBitmap::new(set.len());
        let mut signatures = Vec::with_capacity(entry.len());
        for (id, sig) in entry.iter() {
            if signers.set(*id) {
                signatures.push(sig.clone());
            }
        }
        self.done.insert((data.epoch, data.view), data.block_id);
        Some(QuorumCert {
            data,
            signers,
            signatures,
        })
    }

    /// Signatures and first-vote records held (for bound checks).
    pub(crate) fn entries(&self) -> usize {
        self.pending.values().map(BTreeMap::len).sum::<usize>()
            + self.voted.values().map(BTreeMap::len).sum::<usize>()
    }

    /// Forget everything below `view`.
    pub(crate) fn prune_below(&mut self, view: View) {
        self.pending.retain(|(_, v, _), _| *v >= view);
        self.voted.retain(|(_, v), _| *v >= view);
        self.done.retain(|(_, v), _| *v >= view);
    }

    /// Forget everything of epochs before `epoch`.
    pub(crate) fn prune_epochs_below(&mut self, epoch: Epoch) {
        self.pending.retain(|(e, _, _), _| *e >= epoch);
        self.voted.retain(|(e, _), _| *e >= epoch);
        self.done.retain(|(e, _), _| *e >= epoch);
    }
}

/// Timeouts gathered per view.
#[derive(Default)]
pub(crate) struct TimeoutCollector {
    views: BTreeMap<(Epoch, View), BTreeMap<ValidatorId, (View, Signature)>>,
    done: BTreeMap<(Epoch, View), ()>,
}

/// What adding a timeout achieved.
pub(crate) struct TimeoutProgress {
    /// Stake that has timed out in the view so far.
    pub(crate) stake: u64,
    /// A certificate, when this timeout completed a quorum.
    pub(crate) tc: Option<TimeoutCert>,
}

impl TimeoutCollector {
    /// Add a verified timeout.
    pub(crate) fn add(
        &mut self,
        set: &ValidatorSet,
        data: TimeoutData,
        sender: ValidatorId,
        signature: Signature,
    ) -> TimeoutProgress {
        let key = (data.epoch, data.view);
        let entry = self.views.entry(key).or_default();
        entry
            .entry(sender)
            .or_insert((data.high_qc_view, signature));
        let stake = set.stake_of(entry.keys());
        if self.done.contains_key(&key) || !set.is_quorum(stake) {
            return TimeoutProgress { stake, tc: None };
        }
        let mut signers = SignerBitmap::new(set.len());
        let mut high_qc_views = Vec::with_capacity(entry.len());
        let mut signatures = Vec::with_capacity(entry.len());
        for (id, (hv, sig)) in entry.iter() {
            if signers.set(*id) {
                high_qc_views.push(*hv);
                signatures.push(sig.clone());
            }
        }
        self.done.insert(key, ());
        TimeoutProgress {
            stake,
            tc: Some(TimeoutCert {
                epoch: data.epoch,
                view: data.view,
                signers,
                high_qc_views,
                signatures,
            }),
        }
    }

    /// Timeouts held (for bound checks).
    pub(crate) fn entries(&self) -> usize {
        self.views.values().map(BTreeMap::len).sum()
    }

    /// Forget everything below `view`.
    pub(crate) fn prune_below(&mut self, view: View) {
        self.views.retain(|(_, v), _| *v >= view);
        self.done.retain(|(_, v), _| *v >= view);
    }

    /// Forget everything of epochs before `epoch`.
    pub(crate) fn prune_epochs_below(&mut self, epoch: Epoch) {
        self.views.retain(|(e, _), _| *e >= epoch);
        self.done.retain(|(e, _), _| *e >= epoch);
    }
}
