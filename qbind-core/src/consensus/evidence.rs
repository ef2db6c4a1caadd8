//! Equivocation detection (spec §6.3, runbook "qbind_consensus_equivocation_detected_total").
//!
//! A validator that signs two different proposals, or two votes for different
//! blocks, in one view leaves verifiable evidence: both signed messages. The
//! detector keeps the first signed object per `(epoch, view, signer)` for a
//! bounded window of views and reports the second conflicting one.

use std::collections::BTreeMap;

use crate::codec::Encode;
use crate::consensus::messages::{BlockHeader, VoteData};
use crate::crypto::Signature;
use crate::signing::SignKind;
use crate::types::{Epoch, NetworkEnvironment, ValidatorId, View};
use crate::validator::EpochSchedule;

/// Proof that a validator equivocated.
// The proposal variant holds two block headers inline (2 × 172 bytes); evidence
// is rare and moved a handful of times, so boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// Two signed proposals for one view by one proposer.
    ConflictingProposals {
        /// The proposer.
        proposer: ValidatorId,
        /// First header and its signature (over the block id).
        first: (BlockHeader, Signature),
        /// Second header and its signature.
        second: (BlockHeader, Signature),
    },
    /// Two signed batches by one author for one slot.
    ConflictingBatches(Box<crate::dag::BatchEquivocation>),
    /// Two signed votes for different blocks in one view.
    ConflictingVotes {
        /// The voter.
        voter: ValidatorId,
        /// First vote.
        first: (VoteData, Signature),
        /// Second vote.
        second: (VoteData, Signature),
    },
}

impl Evidence {
    /// The validator the evidence convicts.
    #[must_use]
    pub fn offender(&self) -> ValidatorId {
        match self {
            Evidence::ConflictingProposals { proposer, .. } => *proposer,
            Evidence::ConflictingVotes { voter, .. } => *voter,
            Evidence::ConflictingBatches(e) => e.first.batch.author,
        }
    }

    /// Check the evidence from scratch: both messages are validly signed by
    /// the offender, for the same view, and differ.
    #[must_use]
    pub fn verify(&self, env: NetworkEnvironment, schedule: &EpochSchedule) -> bool {
        match self {
            Evidence::ConflictingProposals {
                proposer,
                first,
                second,
            } => {
                let (a, b) = (&first.0, &second.0);
                let same_slot = a.epoch == b.epoch
                    && a.view == b.view
                    && a.proposer == *proposer
                    && b.proposer == *proposer;
                same_slot
                    && a.id() != b.id()
                    && check(
                        env,
                        schedule,
                        a.epoch,
                        *proposer,
                        SignKind::Proposal,
                        &a.id().to_bytes(),
                        &first.1,
                    )
                    && check(
                        env,
                        schedule,
                        b.epoch,
                        *proposer,
                        SignKind::Proposal,
                        &b.id().to_bytes(),
                        &second.1,
                    )
            }
            Evidence::ConflictingBatches(e) => {
                let (a, b) = (&e.first.batch, &e.second.batch);
                a.epoch == b.epoch
                    && a.author == b.author
                    && a.round == b.round
                    && a.digest() != b.digest()
                    && check(
                        env,
                        schedule,
                        a.epoch,
                        a.author,
                        SignKind::Batch,
                        &a.digest().to_bytes(),
                        &e.first.signature,
                    )
                    && check(
                        env,
                        schedule,
                        b.epoch,
                        b.author,
                        SignKind::Batch,
                        &b.digest().to_bytes(),
                        &e.second.signature,
                    )
            }
            Evidence::ConflictingVotes {
                voter,
                first,
                second,
            } => {
                let (a, b) = (&first.0, &second.0);
                a.epoch == b.epoch
                    && a.view == b.view
                    && a.block_id != b.block_id
                    && check(
                        env,
                        schedule,
                        a.epoch,
                        *voter,
                        SignKind::Vote,
                        &a.to_bytes(),
                        &first.1,
                    )
                    && check(
                        env,
                        schedule,
                        b.epoch,
                        *voter,
                        SignKind::Vote,
                        &b.to_bytes(),
                        &second.1,
                    )
            }
        }
    }
}

fn check(
    env: NetworkEnvironment,
    schedule: &EpochSchedule,
    epoch: Epoch,
    who: ValidatorId,
    kind: SignKind,
    msg: &[u8],
    sig: &Signature,
) -> bool {
    schedule
        .set(epoch)
        .verify_in_epoch(who, epoch, env, kind, msg, sig)
        .is_ok()
}

/// Remembers the first proposal and vote per signer and view.
#[derive(Default)]
pub(crate) struct EquivocationDetector {
    proposals: BTreeMap<(Epoch, View, ValidatorId), (BlockHeader, Signature)>,
    /// Proposers seen equivocating, per view: the second block they sent is
    /// the last one of theirs stored for that view.
    equivocated: BTreeMap<(Epoch, View, ValidatorId), ()>,
    votes: BTreeMap<(Epoch, View, ValidatorId), (VoteData, Signature)>,
}

impl EquivocationDetector {
    /// Proposals and votes remembered (for bound checks).
    pub(crate) fn entries(&self) -> usize {
        self.proposals.len() + self.votes.len()
    }

    /// Record a verified proposal; evidence if it conflicts with an earlier one.
    pub(crate) fn proposal(&mut self, header: &BlockHeader, sig: &Signature) -> Option<Evidence> {
        let key = (header.epoch, header.view, header.proposer);
        match self.proposals.get(&key) {
            Some((first, first_sig)) if first.id() != header.id() => {
                Some(Evidence::ConflictingProposals {
                    proposer: header.proposer,
                    first: (first.clone(), first_sig.clone()),
                    second: (header.clone(), sig.clone()),
                })
            }
            Some(_) => None,
            None => {
                self.proposals.insert(key, (header.clone(), sig.clone()));
                None
            }
        }
    }

    /// Record a verified vote; evidence if it conflicts with an earlier one.
    pub(crate) fn vote(
        &mut self,
        voter: ValidatorId,
        data: &VoteData,
        sig: &Signature,
    ) -> Option<Evidence> {
        let key = (data.epoch, data.view, voter);
        match self.votes.get(&key) {
            Some((first, first_sig)) if first.block_id != data.block_id => {
                Some(Evidence::ConflictingVotes {
                    voter,
                    first: (*first, first_sig.clone()),
                    second: (*data, sig.clone()),
                })
            }
            Some(_) => None,
            None => {
                self.votes.insert(key, (*data, sig.clone()));
                None
            }
        }
    }

    /// Mark `header`'s proposer as equivocating in its view; whether it was
    /// already marked (then no further block of its for that view is
    /// stored).
    pub(crate) fn mark_equivocation(&mut self, header: &BlockHeader) -> bool {
        self.equivocated
            .insert((header.epoch, header.view, header.proposer), ())
            .is_some()
    }

    /// Forget everything below `view`.
    pub(crate) fn prune_below(&mut self, view: View) {
        self.proposals.retain(|(_, v, _), _| *v >= view);
        self.equivocated.retain(|(_, v, _), _| *v >= view);
        self.votes.retain(|(_, v, _), _| *v >= view);
    }
}
