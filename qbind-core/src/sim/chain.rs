//! Certified chains built directly (not by running consensus), for sync
//! tests and benchmarks: every block's QC is signed by the given keys, in
//! consecutive views of epoch 0.

use std::sync::Arc;

use crate::codec::Encode;
use crate::consensus::{Block, BlockHeader, Payload, QuorumCert, SignerBitmap, VoteData};
use crate::crypto::KeyPair;
use crate::signing::{SignKind, sign_domain};
use crate::types::{Epoch, Hash32, Height, NetworkEnvironment, ValidatorId, View};
use crate::validator::{EpochSchedule, ValidatorSet, ValidatorSetError};

/// A QC for `block` in (`epoch`, `view`), signed by every key of `keys`
/// (validator `i` is `keys[i]`).
#[must_use]
pub fn quorum_cert(
    env: NetworkEnvironment,
    keys: &[KeyPair],
    epoch: u64,
    view: u64,
    block: Hash32,
) -> QuorumCert {
    let data = VoteData {
        epoch: Epoch(epoch),
        view: View(view),
        block_id: block,
    };
    let mut signers = SignerBitmap::new(keys.len());
    let mut signatures = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        signers.set(ValidatorId(i as u32));
        signatures.push(sign_domain(k, env, SignKind::Vote, &data.to_bytes()));
    }
    QuorumCert {
        data,
        signers,
        signatures,
    }
}

/// A fixed validator set of `keys` (stake 1 each) and a chain of `len`
/// empty blocks on genesis, block `v` in view `v`, each certified by
/// `signers` (a prefix of `keys`, at least a quorum) in its child. Returns
/// the schedule and the blocks, genesis first; an error if `keys` do not
/// make a validator set (none, duplicates). `signers` is capped at
/// `keys.len()`.
pub fn certified_chain(
    env: NetworkEnvironment,
    keys: &[KeyPair],
    signers: usize,
    len: usize,
) -> Result<(Arc<EpochSchedule>, Vec<Block>), ValidatorSetError> {
    certified_chain_reporting(env, keys, signers, len, |_| None)
}

/// [`certified_chain`] whose block at height `h` reports the executed
/// height and state root `report(h)` (`None`: nothing executed), as a
/// proposer does in `exec_height` / `exec_state_root`.
pub fn certified_chain_reporting(
    env: NetworkEnvironment,
    keys: &[KeyPair],
    signers: usize,
    len: usize,
    report: impl Fn(u64) -> Option<(Height, Hash32)>,
) -> Result<(Arc<EpochSchedule>, Vec<Block>), ValidatorSetError> {
    let signers = signers.min(keys.len());
    let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())?;
    let schedule = Arc::new(EpochSchedule::fixed(set));
    let mut chain = vec![Block::genesis(env.chain_id())];
    for v in 1..=len as u64 {
        let parent = chain[chain.len() - 1].clone();
        let justify = if v == 1 {
            parent.justify().clone()
        } else {
            let mut qc = quorum_cert(env, &keys[..signers], 0, v - 1, parent.id());
            // The bitmap spans the whole set.
            let mut bits = SignerBitmap::new(keys.len());
            for i in 0..signers {
                bits.set(ValidatorId(i as u32));
            }
            qc.signers = bits;
            qc
        };
        let header = BlockHeader {
            epoch: Epoch(0),
            view: View(v),
            height: Height(v),
            parent_id: parent.id(),
            justify_view: justify.view(),
            proposer: schedule.set(Epoch(0)).leader(View(v)),
            payload_digest: Hash32::ZERO,
            batch_commitment: Hash32::ZERO,
            exec_height: report(v).map_or(Height(0), |r| r.0),
            exec_state_root: report(v).map_or(Hash32::ZERO, |r| r.1),
        };
        chain.push(Block::new(header, justify, Payload::empty()));
    }
    Ok((schedule, chain))
}

/// A signed on-chain rotation of `validator`'s consensus key from `old` to
/// `new` at epoch `effective` with `grace` epochs (not an emergency), signed
/// with `signer` (the current key, `old`, for an honest one): for tests of
/// the paths that carry system transactions.
///
/// # Errors
/// [`crate::key_rotation::KeyRotationError::Crypto`] if signing fails.
pub fn consensus_rotation(
    env: NetworkEnvironment,
    validator: ValidatorId,
    old: &KeyPair,
    new: &KeyPair,
    effective: u64,
    grace: u64,
    signer: &KeyPair,
) -> Result<crate::system_tx::SystemTx, crate::key_rotation::KeyRotationError> {
    let event = crate::key_rotation::KeyRotationEvent {
        validator_id: validator,
        key_kind: crate::key_rotation::KeyRole::Consensus,
        old_key: old.public_key().as_bytes().to_vec(),
        new_key: new.public_key().as_bytes().to_vec(),
        effective_epoch: Epoch(effective),
        grace_epochs: grace,
        emergency: false,
    };
    Ok(crate::system_tx::SystemTx::KeyRotation(
        event.sign(env, signer)?,
    ))
}
