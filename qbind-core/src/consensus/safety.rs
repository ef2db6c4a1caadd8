//! The persisted safety state and the voting rules (chained HotStuff with the
//! LibraBFT "preferred view" lock; spec §6, DESIGN "Safety state is persisted
//! before any vote leaves").
//!
//! Rules, each tied to a field of [`SafetyState`]:
//! - never vote twice in one view: a vote needs `view > last_voted_view`;
//! - never vote in a view after timing out in it (timing out raises
//!   `last_voted_view` too), and never sign two different timeouts for one
//!   view (`last_timeout` is re-sent unchanged);
//! - never propose twice in one view (`last_proposed_view`);
//! - the lock: a vote needs `block.justify.view >= locked_qc.view`, where the
//!   locked QC is the highest QC at the head of a 2-chain seen so far.
//!
//! The state is written through `StateBackend` (an `Effect::PersistSafety`)
//! before the signing request of the vote or timeout that depends on it.

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::consensus::messages::{QuorumCert, TimeoutData};
use crate::types::View;

/// What a validator must remember across restarts so that it never signs two
/// conflicting messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyState {
    /// Highest view in which this validator voted or timed out.
    pub last_voted_view: View,
    /// The last timeout it signed (re-sent unchanged if asked again).
    pub last_timeout: Option<TimeoutRecord>,
    /// Highest view in which this validator proposed (a leader never
    /// proposes twice in one view, also across restarts).
    pub last_proposed_view: View,
    /// The lock: highest 2-chain head QC.
    pub locked_qc: QuorumCert,
    /// Highest QC known.
    pub high_qc: QuorumCert,
}

impl SafetyState {
    /// The state of a fresh validator at genesis.
    #[must_use]
    pub fn genesis(genesis_qc: QuorumCert) -> Self {
        SafetyState {
            last_voted_view: View(0),
            last_timeout: None,
            last_proposed_view: View(0),
            locked_qc: genesis_qc.clone(),
            high_qc: genesis_qc,
        }
    }
}

/// A signed timeout's content, kept so that a re-broadcast (also after a
/// restart) is the same message, never a second different one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutRecord {
    /// What was signed.
    pub data: TimeoutData,
    /// The QC that was attached (`high_qc.view() == data.high_qc_view`).
    pub high_qc: QuorumCert,
}

impl Encode for TimeoutRecord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.data.encode_to(out);
        self.high_qc.encode_to(out);
    }
}

impl Decode for TimeoutRecord {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TimeoutRecord {
            data: TimeoutData::decode_from(r)?,
            high_qc: QuorumCert::decode_from(r)?,
        })
    }
}

/// Why the safety rules refused to vote.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VoteRefusal {
    /// Already voted (or timed out) in this view or a later one.
    #[error("already voted in view {last_voted}, proposal is for {view}")]
    AlreadyVoted {
        /// The proposal's view.
        view: View,
        /// The last view voted in.
        last_voted: View,
    },
    /// The block does not extend a QC at least as high as the lock.
    #[error("justify view {justify} is below the locked view {locked}")]
    BelowLock {
        /// The block's justify view.
        justify: View,
        /// The locked view.
        locked: View,
    },
}

/// Test-only ways to break the safety rules, used to prove that the
/// simulator's independent checkers notice. Never set in production.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SafetyFaults {
    /// Vote without checking the lock.
    pub skip_lock_check: bool,
    /// Vote without checking `last_voted_view`.
    pub skip_last_voted_check: bool,
    /// Commit on a 2-chain instead of a 3-chain.
    pub commit_on_two_chain: bool,
}

impl SafetyState {
    /// Check the voting rules for a block in `view` extending a QC of
    /// `justify_view`.
    ///
    /// Consensus §C4.2–C4.3 (docs/consensus.md).
    pub fn check_vote(
        &self,
        view: View,
        justify_view: View,
        faults: SafetyFaults,
    ) -> Result<(), VoteRefusal> {
        if view <= self.last_voted_view && !faults.skip_last_voted_check {
            return Err(VoteRefusal::AlreadyVoted {
                view,
                last_voted: self.last_voted_view,
            });
        }
        if justify_view < self.locked_qc.view() && !faults.skip_lock_check {
            return Err(VoteRefusal::BelowLock {
                justify: justify_view,
                locked: self.locked_qc.view(),
            });
        }
        Ok(())
    }

    /// Raise the lock to `qc` if it is higher. Returns whether it changed.
    pub fn update_lock(&mut self, qc: &QuorumCert) -> bool {
        if qc.view() > self.locked_qc.view() {
            self.locked_qc = qc.clone();
            true
        } else {
            false
        }
    }

    /// Raise the high QC to `qc` if it is higher. Returns whether it changed.
    pub fn update_high_qc(&mut self, qc: &QuorumCert) -> bool {
        if qc.view() > self.high_qc.view() {
            self.high_qc = qc.clone();
            true
        } else {
            false
        }
    }
}

impl Encode for SafetyState {
    fn encode_to(&self, out: &mut Vec<u8>) {
        1u8.encode_to(out); // format version
        self.last_voted_view.encode_to(out);
        self.last_timeout.encode_to(out);
        self.last_proposed_view.encode_to(out);
        self.locked_qc.encode_to(out);
        self.high_qc.encode_to(out);
    }
}

impl Decode for SafetyState {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => {}
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "safety state version",
                    tag,
                });
            }
        }
        Ok(SafetyState {
            last_voted_view: View::decode_from(r)?,
            last_timeout: Option::<TimeoutRecord>::decode_from(r)?,
            last_proposed_view: View::decode_from(r)?,
            locked_qc: QuorumCert::decode_from(r)?,
            high_qc: QuorumCert::decode_from(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::messages::{SignerBitmap, VoteData};
    use crate::types::{Epoch, Hash32};

    fn qc(view: u64) -> QuorumCert {
        QuorumCert {
            data: VoteData {
                epoch: Epoch(0),
                view: View(view),
                block_id: Hash32([view as u8; 32]),
            },
            signers: SignerBitmap::new(4),
            signatures: vec![],
        }
    }

    #[test]
    fn rules_refuse_double_votes_and_votes_below_the_lock() {
        let mut s = SafetyState::genesis(qc(0));
        s.last_voted_view = View(5);
        s.locked_qc = qc(3);
        let none = SafetyFaults::default();
        assert!(matches!(
            s.check_vote(View(5), View(4), none),
            Err(VoteRefusal::AlreadyVoted { .. })
        ));
        assert!(matches!(
            s.check_vote(View(6), View(2), none),
            Err(VoteRefusal::BelowLock { .. })
        ));
        assert_eq!(s.check_vote(View(6), View(3), none), Ok(()));
        let broken = SafetyFaults {
            skip_lock_check: true,
            ..SafetyFaults::default()
        };
        assert_eq!(s.check_vote(View(6), View(2), broken), Ok(()));
    }

    #[test]
    fn lock_and_high_qc_only_rise() {
        let mut s = SafetyState::genesis(qc(0));
        assert!(s.update_lock(&qc(4)));
        assert!(!s.update_lock(&qc(2)));
        assert_eq!(s.locked_qc.view(), View(4));
        assert!(s.update_high_qc(&qc(7)));
        assert!(!s.update_high_qc(&qc(7)));
    }

    #[test]
    fn round_trips() {
        let mut s = SafetyState::genesis(qc(0));
        s.last_timeout = Some(TimeoutRecord {
            data: TimeoutData {
                epoch: Epoch(0),
                view: View(9),
                high_qc_view: View(7),
            },
            high_qc: qc(7),
        });
        let bytes = s.to_bytes();
        assert_eq!(SafetyState::from_bytes(&bytes), Ok(s));
    }
}
