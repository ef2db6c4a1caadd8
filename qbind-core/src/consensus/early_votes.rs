//! Votes that overtake the QC their leader needs (consensus §C10.4).
//!
//! A vote of view `v` goes to the leader of `v + 1`, which every validator
//! derives from its committed chain. A next leader that has not yet
//! processed the QC that commits the blocks the voter committed (the vote
//! overtook it) may elect another validator for `v + 1` and would refuse the
//! vote, costing that view a timeout. Such a vote, of this validator's
//! current view or a later one, is held instead and looked at again when
//! this validator's view or committed height changes: accepted if it now
//! leads `v + 1`, kept while its view is not past, and otherwise refused as
//! before (`NotNextLeader`).
//!
//! Bounded: one vote per sending peer (the newest view), so at most one per
//! validator; nothing is verified before the vote is accepted, and a held
//! vote is verified like any other then. Not persisted: after a restart a
//! vote lost here costs at most its view.

use std::collections::BTreeMap;

use super::error::ConsensusError;
use super::machine::HotStuff;
use super::messages::Vote;
use crate::types::{Height, ValidatorId, View};

/// Held votes and the state they were last looked at in.
#[derive(Debug, Default)]
pub(crate) struct HeldVotes {
    by_peer: BTreeMap<ValidatorId, Vote>,
    /// View and committed height at the last look.
    seen: (View, Height),
}

impl HotStuff {
    /// Hold `vote` from `from` if it may be for this validator once it has
    /// caught up: of the current view or later. `false`: refuse it.
    pub(crate) fn hold_vote(&mut self, from: ValidatorId, vote: Vote) -> bool {
        if vote.data.view < self.pace.view() {
            return false;
        }
        let held = &mut self.held_votes;
        if held.by_peer.is_empty() {
            held.seen = (self.pace.view(), self.tree.committed_height());
        }
        match held.by_peer.get(&from) {
            Some(older) if older.data.view >= vote.data.view => {}
            _ => {
                held.by_peer.insert(from, vote);
            }
        }
        true
    }

    /// Look at the held votes again if the view or the committed height
    /// changed since the last look.
    pub(crate) fn retry_held_votes(&mut self) {
        let now = (self.pace.view(), self.tree.committed_height());
        if self.held_votes.by_peer.is_empty() || self.held_votes.seen == now {
            return;
        }
        self.held_votes.seen = now;
        let held = std::mem::take(&mut self.held_votes.by_peer);
        for (from, vote) in held {
            let data = vote.data;
            if self.leader(data.epoch, data.view.next()) == self.me {
                if let Err(error) = self.accept_held_vote(vote) {
                    self.reject(from, error);
                }
            } else if data.view >= self.pace.view() {
                self.held_votes.by_peer.insert(from, vote);
            } else {
                self.reject(from, ConsensusError::NotNextLeader { view: data.view });
            }
        }
    }
}
