//! The DAG availability layer coupled to consensus (spec §4; DESIGN "DAG
//! availability"). Sans-I/O, driven by [`crate::consensus::HotStuff`].
//!
//! 1. A validator packs pending transactions into a [`Batch`] for its next
//!    slot, signs it (BATCH tag) and broadcasts it.
//! 2. Receivers check it (author, signature, size, transactions), store it
//!    durably, and send the author a signed [`BatchAck`] (BATCH_ACK tag).
//! 3. Acks from more than two thirds of the stake form a
//!    [`BatchCertificate`], which the author broadcasts.
//! 4. Leaders propose only certified batches, in canonical order, with the
//!    `batch_commitment` in the block header; validators verify every
//!    certificate (and the commitment) before voting.
//! 5. On commit, transactions are taken from the committed batches in order,
//!    each at most once; missing batch data is fetched from the
//!    certificate's signers and checked against the digest.
//!
//! Two different batches by one author for one slot are equivocation: both
//! signed batches are kept as evidence.

mod handlers;
mod messages;

pub use messages::*;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use crate::consensus::Block;
use crate::crypto::Signature;
use crate::types::{Epoch, Hash32, Millis, ValidatorId};

/// Where block payloads come from (spec §1.3: FIFO for DevNet, DAG for
/// TestNet Beta and MainNet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadMode {
    /// Inline transactions from the local FIFO pool.
    Fifo,
    /// Certified DAG batches.
    Dag,
}

/// DAG parameters.
#[derive(Clone, Debug)]
pub struct DagConfig {
    /// Most transactions in one batch.
    pub max_batch_txs: usize,
    /// Most transaction bytes in one batch.
    pub max_batch_bytes: usize,
    /// A non-full batch is cut after this many milliseconds.
    pub batch_interval_ms: u64,
    /// Most certified batches one block orders.
    pub max_batches_per_block: usize,
    /// Milliseconds before a batch fetch is retried with the next signer.
    pub fetch_retry_ms: u64,
    /// How many slots ahead of its last committed one an author may be.
    pub max_rounds_ahead: u64,
}

impl Default for DagConfig {
    fn default() -> Self {
        DagConfig {
            max_batch_txs: 500,
            max_batch_bytes: 4 * 1024 * 1024,
            batch_interval_ms: 20,
            max_batches_per_block: 64,
            fetch_retry_ms: 200,
            max_rounds_ahead: 64,
        }
    }
}

/// DAG counters, exported by the node under the runbook's names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DagMetrics {
    /// `qbind_dag_batches_signed_total`.
    pub batches_signed_total: u64,
    /// Batch certificates this validator formed as author.
    pub certs_formed_total: u64,
    /// `qbind_dag_batch_equivocation_detected`.
    pub batch_equivocation_detected: u64,
    /// `qbind_dag_certs_invalid_total`.
    pub certs_invalid_total: u64,
    /// `qbind_dag_coupling_validation_total{result}`.
    pub coupling_validation: BTreeMap<&'static str, u64>,
    /// `qbind_dag_coupling_block_mismatch_total`: batch data that did not
    /// match the digest its certificate names.
    pub coupling_block_mismatch_total: u64,
    /// `qbind_dag_coupling_block_missing_total`: committed blocks whose batch
    /// data was missing locally and had to be fetched.
    pub coupling_block_missing_total: u64,
    /// Batches obtained through fetch-on-miss.
    pub batches_fetched_total: u64,
    /// Transactions skipped because an earlier batch already carried them.
    pub duplicate_txs_skipped: u64,
    /// Signatures of our own batches the signer refused or failed (the
    /// slot is given up and its transactions batched again).
    pub batch_sign_failures_total: u64,
}

/// Two different batches signed by one author for one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchEquivocation {
    /// The first batch seen.
    pub first: SignedBatch,
    /// The conflicting one.
    pub second: SignedBatch,
}

/// An outstanding batch fetch.
#[derive(Clone, Debug)]
pub(crate) struct BatchFetch {
    pub(crate) from: Vec<ValidatorId>,
    pub(crate) attempts: u32,
    pub(crate) last_sent: Millis,
}

/// A batch slot: epoch, author, round.
pub(crate) type Slot = (Epoch, ValidatorId, u64);

/// What the DAG layer of one validator holds.
#[derive(Default)]
pub(crate) struct DagState {
    /// The author's next slot number.
    pub(crate) next_round: u64,
    /// When the last batch was cut.
    pub(crate) last_batch_at: Millis,
    /// A batch of ours is being signed (one at a time).
    pub(crate) signing: bool,
    /// No batch of ours is cut before this time (after a refused signature).
    pub(crate) paused_until: Millis,
    /// Batch data by digest.
    pub(crate) data: BTreeMap<Hash32, SignedBatch>,
    /// First batch seen per slot (digest, signed batch), for equivocation.
    pub(crate) slots: BTreeMap<Slot, Hash32>,
    /// Our own batches awaiting acks: round -> (ref, acks).
    pub(crate) own: BTreeMap<u64, (BatchRef, BTreeMap<ValidatorId, Signature>)>,
    /// Certified, not yet committed batches (proposal candidates).
    pub(crate) certified: BTreeMap<Slot, BatchCertificate>,
    /// Committed slots.
    pub(crate) committed: BTreeSet<Slot>,
    /// Highest committed round per author (bounds how far ahead authors go).
    pub(crate) committed_round: BTreeMap<ValidatorId, u64>,
    /// Batch data being fetched.
    pub(crate) fetches: BTreeMap<Hash32, BatchFetch>,
    /// Committed blocks whose transactions are not delivered yet, in order.
    pub(crate) to_execute: VecDeque<Block>,
    /// Transactions already delivered for execution.
    pub(crate) executed_txs: HashSet<Hash32>,
    /// Counters.
    pub(crate) metrics: DagMetrics,
}

impl DagState {
    pub(crate) fn validation(&mut self, result: &'static str) {
        *self.metrics.coupling_validation.entry(result).or_default() += 1;
    }
}
