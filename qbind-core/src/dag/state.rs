//! What the DAG layer of one validator holds. Every map here is bounded
//! (see [`super::bounds`] and docs/dag.md "Bounds and pruning").

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{BatchCertificate, BatchRef, CommittedBlock, DagMetrics, SignedBatch, Slot};
use crate::crypto::Signature;
use crate::types::{Epoch, Hash32, Height, Millis, ValidatorId};

/// An outstanding batch fetch.
#[derive(Clone, Debug)]
pub(super) struct BatchFetch {
    /// The slot of the batch being fetched (its epoch decides when the
    /// fetch is dropped).
    pub(super) slot: Slot,
    /// Whom to ask, in turn (distinct, never us).
    pub(super) from: Vec<ValidatorId>,
    /// Where in `from` the next request goes.
    pub(super) next: usize,
    /// Requests sent.
    pub(super) sent: u32,
    /// When the last request left.
    pub(super) last_sent: Millis,
    /// The peer whose certificate or proposal started a prefetch (counted against its
    /// per-peer quota); `None` for a fetch a committed block waits for.
    pub(super) prefetch_for: Option<ValidatorId>,
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
    /// The same data indexed by slot (range scans per epoch and author).
    pub(super) stored: BTreeSet<(Slot, Hash32)>,
    /// Our own stored batch with the highest (epoch, round), never pruned:
    /// the last slot we used (authoring resumes past it, or past our
    /// highest committed round in a later epoch, see `first_free_round`).
    pub(super) own_top: Option<((Epoch, u64), Hash32)>,
    /// Our own stored batch with the highest round, whatever its epoch,
    /// never pruned either: a restart keeps our highest committed round
    /// within W below it (`restore`).
    pub(super) own_high: Option<(u64, Hash32)>,
    /// First batch seen per slot (its digest), for equivocation.
    pub(super) slots: BTreeMap<Slot, Hash32>,
    /// Our own batches awaiting acks: round -> (ref, acks).
    pub(super) own: BTreeMap<u64, (BatchRef, BTreeMap<ValidatorId, Signature>)>,
    /// Certified, not yet committed batches (proposal candidates).
    pub(super) certified: BTreeMap<Slot, BatchCertificate>,
    /// Committed slots (those whose round is not yet stale).
    pub(super) committed: BTreeSet<Slot>,
    /// Highest committed round per author (bounds how far ahead authors go
    /// and which slots are stale).
    pub(super) committed_round: BTreeMap<ValidatorId, u64>,
    /// Batch data being fetched.
    pub(super) fetches: BTreeMap<Hash32, BatchFetch>,
    /// Committed blocks whose transactions are not delivered yet, in order.
    pub(super) to_deliver: VecDeque<CommittedBlock>,
    /// The batches of committed blocks whose data is still kept, by height
    /// (until delivered and `retain_delivered_blocks` below the committed
    /// height).
    pub(super) committed_data: BTreeMap<Height, Vec<Hash32>>,
    /// How many retained committed blocks name each digest (their data is
    /// never pruned by epoch or staleness).
    pub(super) pinned: BTreeMap<Hash32, u32>,
    /// Highest committed height handed to us.
    pub(super) committed_height: Height,
    /// Highest height whose transactions were delivered.
    pub(super) delivered: Height,
    /// The epoch the last epoch-pruning pass ran for.
    pub(super) pruned_for_epoch: Option<Epoch>,
    /// Digests deleted from memory whose stored copies are to be deleted
    /// (emitted as one `ForgetBatches` at the end of the input).
    pub(super) forget: Vec<Hash32>,
    /// Delivered blocks' batch data dropped from memory, to be archived in
    /// the store (emitted as one `ArchiveBatches` before `forget`).
    pub(super) archive: Vec<super::ArchivedBatch>,
    /// Batches from their authors held back until they can be checked
    /// (see `Availability::park`): author -> (epoch, round) -> batch.
    pub(super) parked: BTreeMap<ValidatorId, BTreeMap<(Epoch, u64), SignedBatch>>,
    /// The epoch and the last epoch with final keys when the parked batches
    /// were last checked again.
    pub(super) parked_checked: Option<(Epoch, Option<Epoch>)>,
    /// The parked batches are being checked again (a batch parked again is
    /// not counted twice).
    pub(super) retrying_parked: bool,
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
