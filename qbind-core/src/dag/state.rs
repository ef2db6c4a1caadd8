//! What the DAG layer of one validator holds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{BatchCertificate, BatchRef, CommittedBlock, DagMetrics, SignedBatch, Slot};
use crate::crypto::Signature;
use crate::types::{Hash32, Millis, ValidatorId};

/// An outstanding batch fetch.
#[derive(Clone, Debug)]
pub(super) struct BatchFetch {
    /// Whom to ask, in turn.
    pub(super) from: Vec<ValidatorId>,
    /// Requests sent after the first.
    pub(super) attempts: u32,
    /// When the last request left.
    pub(super) last_sent: Millis,
}

/// The DAG layer's state.
#[derive(Default)]
pub(super) struct DagState {
    /// The author's next slot number.
    pub(super) next_round: u64,
    /// When the last batch was cut.
    pub(super) last_batch_at: Millis,
    /// A batch of ours is being signed (one at a time).
    pub(super) signing: bool,
    /// No batch of ours is cut before this time (after a refused signature).
    pub(super) paused_until: Millis,
    /// Batch data by digest.
    pub(super) data: BTreeMap<Hash32, SignedBatch>,
    /// First batch seen per slot (its digest), for equivocation.
    pub(super) slots: BTreeMap<Slot, Hash32>,
    /// Our own batches awaiting acks: round -> (ref, acks).
    pub(super) own: BTreeMap<u64, (BatchRef, BTreeMap<ValidatorId, Signature>)>,
    /// Certified, not yet committed batches (proposal candidates).
    pub(super) certified: BTreeMap<Slot, BatchCertificate>,
    /// Committed slots.
    pub(super) committed: BTreeSet<Slot>,
    /// Highest committed round per author (bounds how far ahead authors go).
    pub(super) committed_round: BTreeMap<ValidatorId, u64>,
    /// Batch data being fetched.
    pub(super) fetches: BTreeMap<Hash32, BatchFetch>,
    /// Committed blocks whose transactions are not delivered yet, in order.
    pub(super) to_deliver: VecDeque<CommittedBlock>,
    /// Counters.
    pub(super) metrics: DagMetrics,
    /// Transactions this process delivered, kept only under the
    /// `DedupByProcessHistory` mutant (`crate::mutants`; simulator tests).
    #[cfg(feature = "sim")]
    pub(super) mutant_history: BTreeSet<Hash32>,
}

impl DagState {
    /// Count one outcome of payload validation.
    pub(super) fn validation(&mut self, result: &'static str) {
        *self.metrics.coupling_validation.entry(result).or_default() += 1;
    }
}
