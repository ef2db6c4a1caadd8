//! The DAG availability layer coupled to consensus (spec §4; DESIGN "DAG
//! availability"): [`Availability`], a sans-I/O state machine of its own
//! ([`Availability::handle`] takes the time, the current epoch and one
//! [`DagInput`] and returns [`DagEffect`]s). It owns batch data, slots,
//! certificates, what was committed and delivered, the transaction pool in
//! DAG mode, and its restore after a restart. It knows nothing of consensus:
//! the consensus machine asks it for a proposal's payload
//! ([`Availability::payload`]), has it validate a received one
//! ([`Availability::validate`]), and hands it committed blocks
//! ([`DagInput::Committed`]); it delivers their transactions in order
//! ([`DagEffect::Deliver`]).
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
//! 5. Batch data a validator missed is fetched from the certificate's
//!    signers, two at a time, as soon as it sees the certificate (from its
//!    author or in a proposal) and checked against the digest
//!    (`fetch.rs`). On commit, transactions are taken from the committed
//!    batches in order, each at most once.
//!
//! Two different batches by one author for one slot are equivocation: both
//! signed batches are kept as evidence.

mod availability;
mod bounds;
mod catch_up;
mod coupling;
mod fetch;
mod io;
mod messages;
mod prune;
mod state;

pub use availability::{Availability, AvailabilityParams};
pub use bounds::{
    BATCH_FETCH_FANOUT, Footprint, MAX_FETCH_ROUNDS, MAX_OWN_AWAITING_ACKS, MAX_PARKED_BYTES,
    MAX_PARKED_BYTES_PER_AUTHOR, MAX_PARKED_EPOCHS_AHEAD, MAX_PARKED_PER_AUTHOR,
    MAX_PENDING_BYTES_PER_AUTHOR, MAX_PREFETCHES, MAX_PREFETCHES_PER_PEER,
};
pub use io::{
    ArchivedBatch, CommittedBlock, DagEffect, DagError, DagInput, DagMsg, DagSignJob,
    DagSignPurpose,
};
pub use messages::*;

use std::collections::BTreeMap;

use crate::types::{Epoch, ValidatorId};

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
    /// Most gas the transactions of one of our batches declare (read with
    /// the fee reader). The consensus layer caps it at its block gas limit
    /// ([`crate::consensus::ConsensusConfig::block_gas_limit`]): a block
    /// takes its first batch whatever its gas, and execution refuses what
    /// passes the limit.
    pub max_batch_gas: u64,
    /// A non-full batch is cut after this many milliseconds.
    pub batch_interval_ms: u64,
    /// Most certified batches one block orders.
    pub max_batches_per_block: usize,
    /// Milliseconds before a batch fetch is retried with the next signer.
    pub fetch_retry_ms: u64,
    /// How many slots ahead of its last committed one an author may be
    /// (W). It also sets how far behind: slots W rounds below an author's
    /// highest committed round are stale (never ordered again) and their
    /// data is dropped 2W rounds below it.
    pub max_rounds_ahead: u64,
    /// Committed blocks whose batch data is kept after delivery, below the
    /// committed height, to answer fetches of peers that are a little
    /// behind (a peer further behind catches up by state sync).
    pub retain_delivered_blocks: u64,
}

impl Default for DagConfig {
    fn default() -> Self {
        DagConfig {
            max_batch_txs: 500,
            max_batch_bytes: 4 * 1024 * 1024,
            max_batch_gas: u64::MAX,
            batch_interval_ms: 20,
            max_batches_per_block: 64,
            fetch_retry_ms: 200,
            max_rounds_ahead: 64,
            retain_delivered_blocks: 256,
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
    /// Transactions skipped because an earlier batch of the same block
    /// already carried them.
    pub duplicate_txs_skipped: u64,
    /// Signatures of our own batches the signer refused or failed (the
    /// slot is given up and its transactions batched again).
    pub batch_sign_failures_total: u64,
    /// Batches dropped from memory (and deleted from the store) by pruning.
    pub batches_pruned_total: u64,
    /// `qbind_dag_batches_archived_total`: committed, delivered blocks'
    /// batches handed to the store's archive ([`DagEffect::ArchiveBatches`]).
    pub batches_archived_total: u64,
    /// `qbind_dag_batch_fetches_to_store_total`: peers' fetches of data this
    /// layer does not hold, handed to the store ([`DagEffect::ServeBatch`]).
    pub batch_fetches_to_store_total: u64,
    /// Certified batches of committed blocks whose transactions were
    /// delivered for execution (a block's certificates, counted once each).
    pub batches_committed_total: u64,
    /// `qbind_dag_batches_parked_total`: batches from their authors held
    /// back because they could not be checked yet (an epoch this validator
    /// has not reached, or whose keys are not final here), to be checked and
    /// acknowledged once it has caught up.
    pub batches_parked_total: u64,
}

/// Two different batches signed by one author for one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchEquivocation {
    /// The first batch seen.
    pub first: SignedBatch,
    /// The conflicting one.
    pub second: SignedBatch,
}

/// A batch slot: epoch, author, round.
pub type Slot = (Epoch, ValidatorId, u64);

/// The slot a batch reference names.
#[must_use]
pub fn slot_of(r: &BatchRef) -> Slot {
    (r.epoch, r.author, r.round)
}

/// The transactions a committed block delivers, from the transactions of
/// its payload in order (inline, or its batches' one after the other): a
/// transaction repeated within the block is delivered once, at its first
/// place. A function of the block alone — every validator, restarted or
/// not, delivers the same list — with the number of repeats skipped.
pub fn block_transactions<'a>(txs: impl IntoIterator<Item = &'a Vec<u8>>) -> (Vec<Vec<u8>>, u64) {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut repeats = 0;
    for tx in txs {
        if seen.insert(crate::types::Hash32::of_transaction(tx)) {
            out.push(tx.clone());
        } else {
            repeats += 1;
        }
    }
    (out, repeats)
}
