//! Why a consensus input was rejected. Every rejection is typed, counted in
//! [`crate::consensus::ConsensusMetrics`] and reported as an effect; none
//! panics.

use crate::codec::DecodeError;
use crate::consensus::safety::VoteRefusal;
use crate::types::{Epoch, Hash32, Height, ValidatorId, View};

/// A rejected consensus input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// The bytes did not decode.
    #[error("malformed message: {0}")]
    Malformed(#[from] DecodeError),
    /// A signature did not verify.
    #[error("bad {what} signature from {signer}")]
    BadSignature {
        /// Which object.
        what: &'static str,
        /// The claimed signer.
        signer: ValidatorId,
    },
    /// A signature verified, but under another network's chain ID.
    #[error("{what} from {signer} was signed for another chain")]
    WrongChain {
        /// Which object.
        what: &'static str,
        /// The signer.
        signer: ValidatorId,
    },
    /// The signer is not in the validator set of the object's epoch.
    #[error("unknown signer {signer} in epoch {epoch:?}")]
    UnknownSigner {
        /// The claimed signer.
        signer: ValidatorId,
        /// The epoch.
        epoch: Epoch,
    },
    /// The object is for a view this validator has left.
    #[error("stale {what} for view {view}, current view {current}")]
    StaleView {
        /// Which object.
        what: &'static str,
        /// Its view.
        view: View,
        /// The current view.
        current: View,
    },
    /// The object is for a view too far ahead to keep state for.
    #[error("{what} for view {view} is too far ahead of the current view {current}")]
    FutureView {
        /// Which object.
        what: &'static str,
        /// Its view.
        view: View,
        /// The current view.
        current: View,
    },
    /// The object is signed in an epoch whose keys may still change
    /// through blocks this validator has not executed yet (an on-chain key
    /// rotation): dropped for now, no fault of the sender.
    #[error("{what} of epoch {epoch:?}: its keys are not final here yet (execution behind)")]
    KeysNotFinal {
        /// Which object.
        what: &'static str,
        /// Its epoch.
        epoch: Epoch,
    },
    /// The object is for an epoch this validator is not in.
    #[error("{what} for epoch {epoch:?}, current epoch {current:?}")]
    WrongEpoch {
        /// Which object.
        what: &'static str,
        /// Its epoch.
        epoch: Epoch,
        /// The current epoch.
        current: Epoch,
    },
    /// A proposal came from a validator that does not lead its view.
    #[error("proposal for {view} from {proposer}, leader is {leader}")]
    NotLeader {
        /// The view.
        view: View,
        /// Who proposed.
        proposer: ValidatorId,
        /// Who leads.
        leader: ValidatorId,
    },
    /// A vote reached a validator that does not lead the next view.
    #[error("vote for {view} sent to a validator that does not lead the next view")]
    NotNextLeader {
        /// The vote's view.
        view: View,
    },
    /// A quorum certificate is invalid.
    #[error("invalid QC for block {block:?} view {view}: {why}")]
    InvalidQc {
        /// Certified block.
        block: Hash32,
        /// Its view.
        view: View,
        /// Why.
        why: &'static str,
    },
    /// A timeout certificate is invalid.
    #[error("invalid TC for view {view}: {why}")]
    InvalidTc {
        /// The view.
        view: View,
        /// Why.
        why: &'static str,
    },
    /// A block is internally inconsistent or does not fit its parent.
    #[error("invalid block {block:?}: {why}")]
    InvalidBlock {
        /// The block.
        block: Hash32,
        /// Why.
        why: &'static str,
    },
    /// A block conflicts with the committed chain.
    #[error("block {block:?} at {height} does not extend the committed chain")]
    ConflictsWithCommitted {
        /// The block.
        block: Hash32,
        /// Its height.
        height: Height,
    },
    /// A proposal's payload breaks the DAG coupling rules (`why` is the
    /// `qbind_dag_coupling_validation_total` result label).
    #[error("invalid payload: {why}")]
    InvalidPayload {
        /// The result label.
        why: &'static str,
    },
    /// The proposal reports a state root for a height this validator
    /// executed with a different root: one of the two diverged, and this
    /// validator does not vote for it.
    #[error("state root at height {height} differs: ours {ours}, the proposal's {theirs}")]
    StateRootMismatch {
        /// The executed height the proposal reports.
        height: Height,
        /// Our root at that height.
        ours: Hash32,
        /// The proposal's root.
        theirs: Hash32,
    },
    /// A proposal reports the state root of a height this validator executed
    /// but no longer remembers (older than the last 256 it keeps, or executed
    /// before a restart): the root cannot be checked, so it gets no vote.
    #[error("state root at height {height} cannot be checked: not among the executed heights kept")]
    UncheckedStateRoot {
        /// The executed height the proposal reports.
        height: Height,
    },
    /// A batch or batch acknowledgement was refused.
    #[error("invalid batch: {why}")]
    InvalidBatch {
        /// Why.
        why: &'static str,
    },
    /// The safety rules refused to vote.
    #[error("vote refused: {0}")]
    VoteRefused(#[from] VoteRefusal),
    /// A sync response did not answer an outstanding request or did not link.
    #[error("unsolicited or unlinked sync response: {why}")]
    BadSyncResponse {
        /// Why.
        why: &'static str,
    },
}

impl ConsensusError {
    /// A stable label for metrics.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            ConsensusError::Malformed(_) => "malformed",
            ConsensusError::BadSignature { .. } => "bad_signature",
            ConsensusError::WrongChain { .. } => "wrong_chain",
            ConsensusError::UnknownSigner { .. } => "unknown_signer",
            ConsensusError::StaleView { .. } => "stale_view",
            ConsensusError::FutureView { .. } => "future_view",
            ConsensusError::WrongEpoch { .. } => "wrong_epoch",
            ConsensusError::KeysNotFinal { .. } => "keys_not_final",
            ConsensusError::NotLeader { .. } => "not_leader",
            ConsensusError::NotNextLeader { .. } => "not_next_leader",
            ConsensusError::InvalidQc { .. } => "invalid_qc",
            ConsensusError::InvalidTc { .. } => "invalid_tc",
            ConsensusError::InvalidBlock { .. } => "invalid_block",
            ConsensusError::ConflictsWithCommitted { .. } => "conflicts_with_committed",
            ConsensusError::VoteRefused(_) => "vote_refused",
            ConsensusError::InvalidPayload { .. } => "invalid_payload",
            ConsensusError::StateRootMismatch { .. } => "state_root_mismatch",
            ConsensusError::UncheckedStateRoot { .. } => "unchecked_state_root",
            ConsensusError::InvalidBatch { .. } => "invalid_batch",
            ConsensusError::BadSyncResponse { .. } => "bad_sync_response",
        }
    }
}

impl From<crate::dag::DagError> for ConsensusError {
    fn from(e: crate::dag::DagError) -> Self {
        use crate::dag::DagError;
        match e {
            DagError::InvalidBatch { why } => ConsensusError::InvalidBatch { why },
            DagError::InvalidPayload { why } => ConsensusError::InvalidPayload { why },
            DagError::WrongEpoch {
                what,
                epoch,
                current,
            } => ConsensusError::WrongEpoch {
                what,
                epoch,
                current,
            },
            DagError::Signature {
                what,
                signer,
                epoch,
                failure,
            } => crate::consensus::certs::sig_error(failure, what, signer, epoch),
        }
    }
}
