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
        let oldest_kept = View(
            self.pace
                .view()
                .0
                .saturating_sub(super::machine::KEEP_VIEWS),
        );
        for (from, vote) in held {
            let data = vote.data;
            if data.view < oldest_kept {
                // Past what the vote collector keeps: refused, not aggregated.
                self.reject(from, ConsensusError::NotNextLeader { view: data.view });
            } else if self.leader(data.epoch, data.view.next()) == self.me {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::consensus::messages::VoteData;
    use crate::consensus::{ConsensusConfig, Effect, Input};
    use crate::crypto::{KeyPair, Signature};
    use crate::types::{Epoch, Hash32, Millis, NetworkEnvironment};
    use crate::validator::{EpochSchedule, ValidatorSet};

    /// Validator 0 of four, at genesis (view 1); the keys.
    fn node() -> HotStuff {
        let keys: Vec<KeyPair> = (0..4u8)
            .map(|i| KeyPair::from_seed(&[i + 50; 32]))
            .collect();
        let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())
            .expect("set");
        let cfg = ConsensusConfig::new(NetworkEnvironment::Devnet);
        let schedule = Arc::new(EpochSchedule::fixed(set));
        HotStuff::new(cfg, ValidatorId(0), schedule, None, Vec::new(), Vec::new())
    }

    /// A vote of `voter` for `view` with a signature that does not verify.
    fn vote(voter: u32, view: u64) -> Vote {
        Vote {
            data: VoteData {
                epoch: Epoch(0),
                view: View(view),
                block_id: Hash32([view as u8; 32]),
            },
            voter: ValidatorId(voter),
            signature: Signature::from_bytes(&[0u8; crate::crypto::ML_DSA_44_SIGNATURE_BYTES])
                .expect("2,420 bytes"),
        }
    }

    /// The first view from the current one whose next view `hs` leads
    /// (`by_me`) or another validator leads.
    fn first_view(hs: &HotStuff, by_me: bool) -> u64 {
        let now = hs.pace.view().0;
        (now..now + 40)
            .find(|v| (hs.leader(Epoch(0), View(v + 1)) == hs.me) == by_me)
            .expect("in 40 views")
    }

    fn rejected_views(effects: &[Effect]) -> Vec<(ValidatorId, String)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Rejected { from, error } => Some((*from, error.label().to_string())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_vote_per_peer_is_held_and_a_past_view_is_not() {
        let mut hs = node();
        let now = hs.pace.view().0;
        assert!(!hs.hold_vote(ValidatorId(1), vote(1, now - 1)), "past view");
        assert!(hs.hold_vote(ValidatorId(1), vote(1, now + 2)));
        assert!(
            hs.hold_vote(ValidatorId(1), vote(1, now + 1)),
            "older than the held one"
        );
        assert!(hs.hold_vote(ValidatorId(1), vote(1, now + 3)));
        assert!(hs.hold_vote(ValidatorId(2), vote(2, now)));
        let views: Vec<(ValidatorId, u64)> = hs
            .held_votes
            .by_peer
            .iter()
            .map(|(p, v)| (*p, v.data.view.0))
            .collect();
        assert_eq!(views, [(ValidatorId(1), now + 3), (ValidatorId(2), now)]);
    }

    #[test]
    fn a_held_vote_is_verified_once_this_validator_leads_and_refused_once_past() {
        let mut hs = node();
        // A view whose next leader is this validator, and one whose is not.
        let mine = first_view(&hs, true);
        let other = first_view(&hs, false);
        assert!(hs.hold_vote(ValidatorId(1), vote(1, mine)));
        assert!(hs.hold_vote(ValidatorId(2), vote(2, other)));
        // Nothing changed: nothing is looked at again.
        let effects = hs.handle(Millis(1), Input::Tick);
        assert!(rejected_views(&effects).is_empty(), "{effects:?}");
        assert_eq!(hs.held_votes.by_peer.len(), 2);
        // The view moves past `other` (and `mine`, still kept by the
        // collector): the vote this validator leads for is verified (and
        // fails: its signature is zeros), the other refused.
        let past = View(mine.max(other) + 1);
        assert!(hs.pace.advance(past, true));
        let effects = hs.handle(Millis(2), Input::Tick);
        let mut got = rejected_views(&effects);
        got.sort();
        assert_eq!(
            got,
            [
                (ValidatorId(1), "bad_signature".to_string()),
                (ValidatorId(2), "not_next_leader".to_string())
            ]
        );
        assert!(hs.held_votes.by_peer.is_empty());
    }

    #[test]
    fn a_held_vote_past_what_the_collector_keeps_is_refused_unverified() {
        let mut hs = node();
        let mine = first_view(&hs, true);
        assert!(hs.hold_vote(ValidatorId(1), vote(1, mine)));
        let far = View(mine + super::super::machine::KEEP_VIEWS + 1);
        assert!(hs.pace.advance(far, true));
        let effects = hs.handle(Millis(2), Input::Tick);
        assert_eq!(
            rejected_views(&effects),
            [(ValidatorId(1), "not_next_leader".to_string())]
        );
    }
}
