//! Example (c): verifying committed blocks and their quorum certificates
//! from outside, as a light client or an auditor would.
//!
//! The light client trusts only the network (its chain id, hence its
//! genesis block) and the validator set with its public keys and stakes
//! (the epoch schedule). It receives encoded blocks — here read from a
//! validator's store after a run of example (a), in practice from any
//! untrusted peer — and accepts them only if:
//!
//! 1. each block decodes canonically and its header commits to its payload
//!    (`payload_digest`, `batch_commitment`), so the block id, the hash of
//!    the header, covers the transactions;
//! 2. the blocks form a chain from genesis: each one's `parent_id` is the
//!    previous block's id, its height one more, its view higher;
//! 3. each block's QC (`justify`) certifies its parent — same id, view and
//!    epoch — and verifies with
//!    [`qbind_core::consensus::verify_quorum_cert`]: signatures of more than
//!    two thirds of the stake, each by the right key, for this chain.
//!
//! A QC proves that a quorum *voted* for a block; that the block is
//! *committed* follows from the 3-chain rule: a block is final once it
//! starts three blocks with consecutive views, the third of them certified.
//! [`VerifiedChain::committed_height`] is the highest height proven so.
//!
//! Scope: one epoch (a fixed validator set) and inline transactions
//! (DevNet). Across epochs the QC of an epoch's first block certifies a
//! block of the previous epoch, and DAG payloads carry batch certificates
//! that a full auditor verifies too.

use std::sync::Arc;

use qbind_core::codec::{Decode, DecodeError};
use qbind_core::consensus::{
    Block, ConsensusError, Payload, QuorumCert, SignerBitmap, verify_quorum_cert,
};
use qbind_core::crypto::Signature;
use qbind_core::schema;
use qbind_core::traits::{Namespace, StateBackend, StorageError};
use qbind_core::types::{Height, NetworkEnvironment};
use qbind_core::validator::{EpochSchedule, ValidatorSet};

use crate::embed;

/// Why the light client refused a chain.
#[derive(Debug, thiserror::Error)]
pub enum LightClientError {
    /// Nothing to verify.
    #[error("no blocks")]
    Empty,
    /// A block did not decode.
    #[error("block {index} does not decode: {source}")]
    Decode {
        /// Its position in the input.
        index: usize,
        /// Why.
        source: DecodeError,
    },
    /// A header does not commit to the payload that came with it.
    #[error("block {height}: the header does not commit to this payload")]
    PayloadMismatch {
        /// The block's height.
        height: Height,
    },
    /// A block does not extend the previous one.
    #[error("block {height} does not extend the previous block: {why}")]
    NotAChain {
        /// The block's height.
        height: Height,
        /// What is wrong.
        why: &'static str,
    },
    /// A block's QC certifies some other block than its parent.
    #[error("the QC in block {height} does not certify its parent")]
    QcForOtherBlock {
        /// The block's height.
        height: Height,
    },
    /// A block's QC does not verify against the validator set.
    #[error("the QC in block {height} does not verify: {source}")]
    BadQc {
        /// The block's height.
        height: Height,
        /// Why.
        source: ConsensusError,
    },
}

/// What a chain proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedChain {
    /// Height of the last block received.
    pub tip: u64,
    /// Highest height whose block a verified QC certifies (`tip - 1`: the
    /// tip's own QC comes in the next block).
    pub certified_height: u64,
    /// Highest height proven committed by the 3-chain rule (0: none).
    pub committed_height: u64,
}

/// Verifies blocks knowing only the network and the validator set.
pub struct LightClient {
    env: NetworkEnvironment,
    schedule: Arc<EpochSchedule>,
    genesis: Block,
}

impl LightClient {
    /// A light client for `env` with the validator set of `schedule`.
    #[must_use]
    pub fn new(env: NetworkEnvironment, schedule: Arc<EpochSchedule>) -> Self {
        LightClient {
            env,
            schedule,
            genesis: Block::genesis(env.chain_id()),
        }
    }

    /// Verify that `qc` certifies `block`.
    pub fn verify_certified(&self, block: &Block, qc: &QuorumCert) -> Result<(), ConsensusError> {
        if !certifies(qc, block) {
            return Err(ConsensusError::InvalidQc {
                block: qc.block_id(),
                view: qc.view(),
                why: "certifies another block",
            });
        }
        verify_quorum_cert(self.env, &self.schedule, qc)
    }

    /// Verify encoded blocks, the chain from height 1 up.
    pub fn verify_chain(&self, encoded: &[Vec<u8>]) -> Result<VerifiedChain, LightClientError> {
        let blocks = encoded
            .iter()
            .enumerate()
            .map(|(index, bytes)| {
                Block::from_bytes(bytes)
                    .map_err(|source| LightClientError::Decode { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut parent = &self.genesis;
        for block in &blocks {
            self.verify_link(parent, block)?;
            parent = block;
        }
        let tip = blocks.last().ok_or(LightClientError::Empty)?.height().0;
        Ok(VerifiedChain {
            tip,
            certified_height: tip.saturating_sub(1),
            committed_height: committed_height(&blocks),
        })
    }

    /// `block` extends `parent`, commits to its payload, and its QC
    /// certifies `parent`.
    fn verify_link(&self, parent: &Block, block: &Block) -> Result<(), LightClientError> {
        let height = block.height();
        let header = block.header();
        if header.payload_digest != block.payload().digest()
            || header.batch_commitment != block.payload().batch_commitment()
        {
            return Err(LightClientError::PayloadMismatch { height });
        }
        let not_a_chain = |why| LightClientError::NotAChain { height, why };
        if block.parent_id() != parent.id() {
            return Err(not_a_chain("parent id is not the previous block's id"));
        }
        if height != parent.height().next() {
            return Err(not_a_chain("height is not the previous height + 1"));
        }
        if block.view() <= parent.view() {
            return Err(not_a_chain("view is not above the previous block's view"));
        }
        let qc = block.justify();
        if header.justify_view != qc.view() || !certifies(qc, parent) {
            return Err(LightClientError::QcForOtherBlock { height });
        }
        verify_quorum_cert(self.env, &self.schedule, qc)
            .map_err(|source| LightClientError::BadQc { height, source })
    }
}

/// Whether `qc` is a certificate on `block` (its id, view and epoch); not
/// whether its signatures verify.
fn certifies(qc: &QuorumCert, block: &Block) -> bool {
    qc.block_id() == block.id() && qc.view() == block.view() && qc.data.epoch == block.epoch()
}

/// The highest height proven committed in a verified chain: block `b` is
/// committed when `b`, its child and grandchild have consecutive views and
/// the grandchild is certified (its QC is in the next block).
fn committed_height(blocks: &[Block]) -> u64 {
    blocks
        .windows(4)
        .filter(|w| w[0].view().next() == w[1].view() && w[1].view().next() == w[2].view())
        .map(|w| w[0].height().0)
        .max()
        .unwrap_or(0)
}

/// Read a validator's committed blocks, encoded, from its store (through the
/// layout in [`qbind_core::schema`]): what an auditor would be handed.
pub fn committed_blocks<S: StateBackend + ?Sized>(store: &S) -> Result<Vec<Vec<u8>>, Error> {
    let top = schema::read_height(store, schema::COMMITTED_HEIGHT_KEY)?.map_or(0, |h| h.0);
    let mut blocks = Vec::new();
    for h in 1..=top {
        match store.get(Namespace::Blocks, &schema::committed_block_key(h))? {
            Some(bytes) => blocks.push(bytes),
            None => return Err(Error::Missing { height: h }),
        }
    }
    Ok(blocks)
}

/// Flip one bit of the `which`-th signature of `qc`.
#[must_use]
pub fn flip_signature_bit(qc: &QuorumCert, which: usize) -> QuorumCert {
    let mut out = qc.clone();
    if let Some(sig) = out.signatures.get_mut(which) {
        let mut bytes = sig.as_bytes().to_vec();
        if let Some(b) = bytes.get_mut(17) {
            *b ^= 0x04;
        }
        if let Ok(flipped) = Signature::from_bytes(&bytes) {
            *sig = flipped;
        }
    }
    out
}

/// Keep only the first `keep` signers of `qc` (with their signatures): below
/// a quorum when `keep` signers hold two thirds of the stake or less.
#[must_use]
pub fn keep_signers(qc: &QuorumCert, keep: usize) -> QuorumCert {
    let mut signers = SignerBitmap::new(qc.signers.len());
    let mut signatures = Vec::new();
    for (id, sig) in qc.signers.iter().zip(&qc.signatures).take(keep) {
        signers.set(id);
        signatures.push(sig.clone());
    }
    QuorumCert {
        data: qc.data,
        signers,
        signatures,
    }
}

/// `block` with `justify` in place of its QC (the block id does not cover
/// the QC's signatures, only its view; the QC must be verified on its own).
#[must_use]
pub fn with_justify(block: &Block, justify: QuorumCert) -> Block {
    Block::from_parts(block.header().clone(), justify, block.payload().clone())
}

/// `block` with its first transaction replaced, the header left as it was.
#[must_use]
pub fn with_other_payload(block: &Block) -> Block {
    let mut txs = match block.payload() {
        Payload::Transactions(txs) => txs.clone(),
        Payload::Batches(_) => Vec::new(),
    };
    match txs.first_mut() {
        Some(tx) => *tx = b"mallory=rich".to_vec(),
        None => txs.push(b"mallory=rich".to_vec()),
    }
    Block::from_parts(
        block.header().clone(),
        block.justify().clone(),
        Payload::Transactions(txs),
    )
}

/// `block` with a rewritten header (another proposer's state root), so a
/// different id; it no longer matches the next block's parent id and QC.
#[must_use]
pub fn with_rewritten_header(block: &Block) -> Block {
    let mut header = block.header().clone();
    header.exec_state_root.0[0] ^= 0xff;
    Block::from_parts(header, block.justify().clone(), block.payload().clone())
}

/// Why the example failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run of example (a) failed.
    #[error("the embedded network: {0}")]
    Embed(#[from] embed::EmbedError),
    /// The store failed.
    #[error("store: {0}")]
    Storage(#[from] StorageError),
    /// The store's records did not load.
    #[error("store: {0}")]
    Persisted(#[from] schema::PersistError),
    /// A committed block is missing from the store.
    #[error("no committed block at height {height}")]
    Missing {
        /// Which.
        height: u64,
    },
    /// The honest chain was refused.
    #[error("the committed chain did not verify: {0}")]
    Refused(#[from] LightClientError),
    /// The chain is too short for the tampering cases.
    #[error("only {0} committed blocks; the example needs at least 5")]
    TooShort(usize),
    /// A tampered chain was accepted.
    #[error("a chain with {0} was accepted")]
    TamperedAccepted(&'static str),
}

/// What the example showed.
#[derive(Debug)]
pub struct Summary {
    /// What the honest chain proved.
    pub verified: VerifiedChain,
    /// How each tampered chain was refused: (what was tampered, why refused).
    pub refusals: Vec<(&'static str, LightClientError)>,
}

/// Run example (a) for `blocks` blocks, hand validator 0's committed chain
/// to a light client, then tampered copies of it.
pub fn run(blocks: u64, progress: &mut dyn FnMut(&str)) -> Result<Summary, Error> {
    let params = embed::Params {
        blocks,
        txs_per_validator: 5,
        ..embed::Params::default()
    };
    let run = embed::run(&params, &mut |_| {})?;
    let store = run.stores.first().ok_or(Error::TooShort(0))?;
    let encoded = committed_blocks(store)?;
    progress(&format!(
        "validator 0 committed {} blocks; the light client knows only the {} validators' public keys",
        encoded.len(),
        run.schedule.set(qbind_core::types::Epoch(0)).len()
    ));

    let client = LightClient::new(embed::ENV, Arc::clone(&run.schedule));
    let verified = client.verify_chain(&encoded)?;
    progress(&format!(
        "accepted: chain of {} blocks from genesis, QCs verified up to height {}, \
         committed (3-chain) up to height {}",
        verified.tip, verified.certified_height, verified.committed_height
    ));

    let set = run.schedule.set(qbind_core::types::Epoch(0));
    let refusals = tampered_chains(&encoded, set)?
        .into_iter()
        .map(|(what, chain)| match client.verify_chain(&chain) {
            Ok(_) => Err(Error::TamperedAccepted(what)),
            Err(why) => {
                progress(&format!("refused a chain with {what}: {why}"));
                Ok((what, why))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Summary { verified, refusals })
}

/// A tampered copy of a chain: what was changed, and the encoded blocks.
pub type TamperedChain = (&'static str, Vec<Vec<u8>>);

/// Tampered copies of an honest chain, each with what was changed; `set`
/// is the validator set (to make a QC just short of a quorum).
pub fn tampered_chains(
    encoded: &[Vec<u8>],
    set: &ValidatorSet,
) -> Result<Vec<TamperedChain>, Error> {
    use qbind_core::codec::Encode;
    let blocks = encoded
        .iter()
        .enumerate()
        .map(|(index, b)| {
            Block::from_bytes(b).map_err(|source| LightClientError::Decode { index, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Tamper in the middle of the chain: block `k`, certified by the QC in
    // block `k + 1`.
    let k = blocks.len() / 2;
    let (Some(target), Some(next), Some(after)) =
        (blocks.get(k), blocks.get(k + 1), blocks.get(k + 2))
    else {
        return Err(Error::TooShort(blocks.len()));
    };
    let replace = |i: usize, b: Block| {
        let mut chain = encoded.to_vec();
        if let Some(slot) = chain.get_mut(i) {
            *slot = b.to_bytes();
        }
        chain
    };
    // The most signers of the QC that still hold no quorum of stake.
    let signers: Vec<_> = next.justify().signers.iter().collect();
    let short = (0..=signers.len())
        .rev()
        .find(|n| !set.is_quorum(set.stake_of(signers.iter().take(*n))))
        .unwrap_or(0);
    Ok(vec![
        (
            "a transaction replaced",
            replace(k, with_other_payload(target)),
        ),
        (
            "a rewritten block header",
            replace(k, with_rewritten_header(target)),
        ),
        (
            "a flipped bit in a QC signature",
            replace(
                k + 1,
                with_justify(next, flip_signature_bit(next.justify(), 0)),
            ),
        ),
        (
            "a QC one signer short of a quorum",
            replace(
                k + 1,
                with_justify(next, keep_signers(next.justify(), short)),
            ),
        ),
        // Valid signatures, but on the wrong block: the QC of `k + 1` itself
        // (taken from `k + 2`) in place of the one on its parent.
        (
            "a valid QC of another block",
            replace(k + 1, with_justify(next, after.justify().clone())),
        ),
    ])
}
