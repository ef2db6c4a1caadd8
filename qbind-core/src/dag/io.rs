//! What goes into and out of [`super::Availability`]: its messages, inputs,
//! effects, signing jobs and errors.

use super::{BatchAck, BatchCertificate, BatchEquivocation, BatchRef, SignedBatch};
use crate::crypto::Signature;
use crate::quorum::SigFailure;
use crate::traits::SignRequest;
use crate::types::{Epoch, Hash32, Height, Millis, ValidatorId};

/// The DAG layer's messages (carried on the wire as the corresponding
/// consensus message variants, whose encoding they share).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DagMsg {
    /// A signed batch from its author, or fetched batch data.
    Batch(SignedBatch),
    /// An acknowledgement, sent to the batch's author.
    BatchAck(BatchAck),
    /// A batch certificate, broadcast by the author.
    BatchCert(BatchCertificate),
    /// A request for a batch's data by digest.
    BatchFetch(Hash32),
}

/// What a DAG signature is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DagSignPurpose {
    /// A batch of ours (the digest is signed).
    Batch {
        /// The batch.
        batch: Box<super::Batch>,
    },
    /// An acknowledgement of a stored batch, to be sent to its author.
    BatchAck {
        /// The acknowledged batch.
        batch: BatchRef,
        /// The author.
        to: ValidatorId,
    },
}

/// A DAG signing job: the request for the signer and what to do with the
/// signature (fed back as [`DagInput::Signed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DagSignJob {
    /// What to sign.
    pub request: SignRequest,
    /// What the signature is for.
    pub purpose: DagSignPurpose,
}

/// A committed block as the DAG layer sees it: where it is in the chain and
/// the batch certificates it orders (none for a block without batches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedBlock {
    /// Its height.
    pub height: Height,
    /// Its id.
    pub id: Hash32,
    /// Its proposer (credited with the block's fees).
    pub proposer: ValidatorId,
    /// The certificates it orders, in order.
    pub certs: Vec<BatchCertificate>,
}

/// Inputs to [`super::Availability::handle`].
#[derive(Clone, Debug)]
pub enum DagInput {
    /// A message from an authenticated peer (or ourselves).
    Message {
        /// The sender as authenticated by the transport.
        from: ValidatorId,
        /// The message.
        msg: DagMsg,
    },
    /// A signature requested by [`DagEffect::Sign`].
    Signed {
        /// What it is for.
        purpose: DagSignPurpose,
        /// The signature.
        signature: Signature,
    },
    /// The signer refused or failed a [`DagEffect::Sign`] request.
    SignFailed {
        /// What it was for.
        purpose: DagSignPurpose,
    },
    /// Time passed: cut batches, retry fetches.
    Tick,
    /// A transaction for the pool.
    Submit(Vec<u8>),
    /// Blocks were committed, oldest first: their batches are ordered and
    /// their transactions are delivered once the data is here.
    Committed(Vec<CommittedBlock>),
    /// A proposal whose payload passed [`super::Availability::validate`]
    /// orders these batches (each with its certificate's signers): the data
    /// this validator lacks is fetched now, as prefetches of `proposer`,
    /// rather than when the block commits.
    Proposed {
        /// The block's proposer (its prefetch quota is charged).
        proposer: ValidatorId,
        /// The batches and their certificates' signers.
        batches: Vec<(BatchRef, Vec<ValidatorId>)>,
    },
}

/// A committed, delivered block's batch data to keep
/// ([`DagEffect::ArchiveBatches`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedBatch {
    /// Height of the block that ordered it.
    pub height: Height,
    /// Its digest (the certified one).
    pub digest: Hash32,
    /// The data.
    pub batch: SignedBatch,
}

/// Effects the caller carries out, in order.
#[derive(Clone, Debug)]
pub enum DagEffect {
    /// Obtain a signature and feed it back as [`DagInput::Signed`].
    Sign(DagSignJob),
    /// Send to one validator.
    Send {
        /// Recipient.
        to: ValidatorId,
        /// Message.
        msg: DagMsg,
    },
    /// Send to every other validator.
    Broadcast(DagMsg),
    /// Store batch data durably before anything later is carried out (an
    /// ack follows it).
    PersistBatch(SignedBatch),
    /// Delete stored batch data (by digest) that no block can need any
    /// more; it was dropped from memory. Need not be durable: a batch whose
    /// deletion is lost is dropped again after the restart.
    ForgetBatches(Vec<Hash32>),
    /// Keep the data of committed, delivered blocks' batches that the layer
    /// drops from memory, for as long as their blocks are kept (carried out
    /// before the [`DagEffect::ForgetBatches`] of the same input, which
    /// deletes the working copy): peers catching up from further back than
    /// `retain_delivered_blocks` fetch it ([`DagEffect::ServeBatch`]). The
    /// embedder skips a batch whose block it no longer stores (pruned by a
    /// short block retention). Need not be durable: lost in a crash with the
    /// deletion that follows it, it is redone after the restart for the
    /// blocks of the restored committed window (which must reach
    /// `retain_delivered_blocks` below the committed height).
    ArchiveBatches(Vec<ArchivedBatch>),
    /// A peer asked for batch data this layer does not hold (any more): if
    /// the store keeps it (an archived committed batch), send it to `to` as
    /// [`DagMsg::Batch`]; otherwise do nothing.
    ServeBatch {
        /// Who asked.
        to: ValidatorId,
        /// The batch's digest.
        digest: Hash32,
    },
    /// Deliver [`DagInput::Tick`] at or after this time.
    SetTimer(Millis),
    /// One author signed two batches for one slot.
    Evidence(BatchEquivocation),
    /// A message was rejected.
    Rejected {
        /// Its sender.
        from: ValidatorId,
        /// Why.
        error: DagError,
    },
    /// The pool refused a submitted transaction (the metric label).
    PoolRejected(&'static str),
    /// A committed block's transactions for execution, in height order,
    /// each block exactly once per run; a transaction carried by two batches
    /// of one block is delivered once. What is delivered is a function of
    /// the chain alone (never of what this process saw before).
    Deliver {
        /// Height of the committed block.
        height: Height,
        /// Its id.
        block: Hash32,
        /// Its proposer.
        proposer: ValidatorId,
        /// Its transactions, in order.
        txs: Vec<Vec<u8>>,
    },
}

/// Why the DAG layer refused a message or a payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    /// A batch, ack or fetch answer is malformed or out of place.
    #[error("invalid batch: {why}")]
    InvalidBatch {
        /// Why.
        why: &'static str,
    },
    /// A proposal's payload breaks the coupling rule (the label of
    /// `qbind_dag_coupling_validation_total{result}`).
    #[error("invalid DAG payload: {why}")]
    InvalidPayload {
        /// The result label.
        why: &'static str,
    },
    /// A batch for another epoch than the current one.
    #[error("{what} for epoch {epoch:?}, current {current:?}")]
    WrongEpoch {
        /// Which object.
        what: &'static str,
        /// Its epoch.
        epoch: Epoch,
        /// The current epoch.
        current: Epoch,
    },
    /// A signature does not count.
    #[error("{what} signed by {signer:?} in epoch {epoch:?}: {failure:?}")]
    Signature {
        /// Which object.
        what: &'static str,
        /// The claimed signer.
        signer: ValidatorId,
        /// The epoch it was checked in.
        epoch: Epoch,
        /// How the check failed.
        failure: SigFailure,
    },
}
