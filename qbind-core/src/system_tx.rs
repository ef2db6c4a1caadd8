//! System transactions: consensus-level changes carried in blocks like
//! transfers, and applied by every validator's [`Replica`] when it executes
//! the block, not by the application (docs/key-rotation.md).
//!
//! The only kind today is an on-chain validator key rotation
//! ([`SystemTx::KeyRotation`]): a [`SignedKeyRotationEvent`] signed by the
//! validator's current consensus key, which the replica applies to its key
//! registry with [`ValidatorKeyRegistry::apply_scheduled`] and from which
//! consensus verifies that validator's signatures at the event's epochs —
//! no file edit, no restart.
//!
//! Wire format: [`SYSTEM_TX_MAGIC`] (8 bytes) ‖ kind tag (1 byte) ‖ body.
//! A transfer starts with its sender's 1,312-byte ML-DSA-44 public key and
//! is 3.8 KB long; bytes are a system transaction only if they decode as
//! one exactly ([`SystemTx::from_bytes`]), so no transfer is taken for one.
//!
//! Who can send one, and what it costs: anyone can submit the bytes, but
//! only a correct signature of a validator's current key changes anything.
//! Every system transaction of a block is checked, the cheap rules first and
//! the signature last, so a proposer stuffing a block with forged ones costs
//! each validator at most one verification each — what forged transfers
//! cost — and cannot crowd out an honest rotation in the same block.
//!
//! [`Replica`]: crate::replica::Replica
//! [`ValidatorKeyRegistry::apply_scheduled`]: crate::key_rotation::ValidatorKeyRegistry::apply_scheduled

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::fee_mempool::TxMeta;
use crate::key_rotation::{
    KeyRotationError, MIN_ROTATION_LEAD, SignedKeyRotationEvent, ValidatorKeyRegistry,
};
use crate::types::{AccountId, Epoch, Hash32, Height, NetworkEnvironment};
use crate::validator::EpochSchedule;

/// The first 8 bytes of every system transaction.
pub const SYSTEM_TX_MAGIC: &[u8; 8] = b"QBSYSTX\x01";

/// Kind tag of [`SystemTx::KeyRotation`].
const KEY_ROTATION_TAG: u8 = 1;

/// Gas a system transaction reserves of a block's and a batch's gas budget
/// (about that of a transfer: it costs one signature verification).
pub const SYSTEM_TX_GAS: u64 = 50_000;

/// What the replica made of one system transaction of a committed block
/// (passed to the application in [`crate::application::CommittedBlock::system`],
/// so that a node can keep a receipt for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemTxOutcome {
    /// Its position among the block's delivered transactions
    /// ([`crate::application::CommittedBlock::delivered`]).
    pub index: u32,
    /// `Ok` if applied; why not otherwise (it then changed nothing).
    pub result: Result<(), KeyRotationError>,
}

/// A consensus-level change carried in a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemTx {
    /// Rotate one key of one validator at a future epoch.
    KeyRotation(SignedKeyRotationEvent),
}

impl SystemTx {
    /// The pool's view of it ([`TxMeta`]): a sender of its own per
    /// validator and key role (so a validator has at most one rotation in
    /// a pool at a time), nonce 0, the highest fee, so it is proposed
    /// before transfers, and a replacement rank ([`rotation_rank`]): a
    /// second rotation replaces a pending one only if it is an emergency
    /// over a normal one, or of the same kind with a later effective
    /// epoch. Nothing is charged: no account pays.
    #[must_use]
    pub fn meta(&self) -> TxMeta {
        match self {
            SystemTx::KeyRotation(signed) => {
                let ev = &signed.event;
                let mut preimage = b"QBIND:SYSTEM:KEY_ROTATION:v1".to_vec();
                ev.validator_id.encode_to(&mut preimage);
                preimage.push(ev.key_kind.tag());
                let max_fee_per_gas = u128::from(u64::MAX);
                TxMeta {
                    sender: AccountId(Hash32::digest(&preimage).0),
                    nonce: 0,
                    max_fee_per_gas,
                    effective_fee: max_fee_per_gas.saturating_mul(u128::from(SYSTEM_TX_GAS)),
                    gas_limit: SYSTEM_TX_GAS,
                    v0_payload: false,
                    replace_rank: Some(rotation_rank(ev)),
                }
            }
        }
    }
}

/// The pool's replacement rank of a rotation: emergency ones above normal
/// ones (the top bit), then by effective epoch.
#[must_use]
pub fn rotation_rank(event: &crate::key_rotation::KeyRotationEvent) -> u64 {
    (u64::from(event.emergency) << 63) | (event.effective_epoch.0 & (u64::MAX >> 1))
}

impl Encode for SystemTx {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(SYSTEM_TX_MAGIC);
        match self {
            SystemTx::KeyRotation(signed) => {
                out.push(KEY_ROTATION_TAG);
                signed.encode_to(out);
            }
        }
    }
}

impl Decode for SystemTx {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.take(SYSTEM_TX_MAGIC.len())? != SYSTEM_TX_MAGIC {
            return Err(DecodeError::InvalidTag {
                what: "system transaction magic",
                tag: 0,
            });
        }
        match r.u8()? {
            KEY_ROTATION_TAG => Ok(SystemTx::KeyRotation(SignedKeyRotationEvent::decode_from(
                r,
            )?)),
            tag => Err(DecodeError::InvalidTag {
                what: "system transaction kind",
                tag,
            }),
        }
    }
}

/// Apply `tx`, carried by a block of `block_epoch`, to `registry` (the key
/// registry `schedule` verifies with, as executed so far): the rules of
/// [`ValidatorKeyRegistry::apply_scheduled`] with [`MIN_ROTATION_LEAD`], on a
/// chain with epochs. The replica runs it when it executes the block; the
/// node's API runs it on a copy before its pool takes the transaction.
///
/// # Errors
/// Why the rotation does not apply; `registry` is unchanged then.
pub fn apply(
    schedule: &EpochSchedule,
    registry: &mut ValidatorKeyRegistry,
    env: NetworkEnvironment,
    block_epoch: Epoch,
    tx: &SystemTx,
) -> Result<(), KeyRotationError> {
    if schedule.epoch_length() == u64::MAX {
        return Err(KeyRotationError::NoEpochs);
    }
    let SystemTx::KeyRotation(signed) = tx;
    registry.apply_scheduled(signed, env, block_epoch, MIN_ROTATION_LEAD)
}

/// The system transaction `bytes` encode exactly, if any (cheap: no
/// signature is checked).
#[must_use]
pub fn decode(bytes: &[u8]) -> Option<SystemTx> {
    if !bytes.starts_with(SYSTEM_TX_MAGIC) {
        return None;
    }
    SystemTx::from_bytes(bytes).ok()
}

/// The digest of the empty on-chain key log: no rotation applied yet.
pub const EMPTY_KEY_LOG: Hash32 = Hash32::ZERO;

/// The key log's digest after `digest` with one more applied system
/// transaction, carried by the block at `height`: SHA3-256 of
/// `"QBIND:KEY_LOG:v1"` ‖ `digest` ‖ height (u64 BE) ‖ the transaction's
/// encoding. A hash chain over every applied rotation in the order applied,
/// so two validators agree on it only if they applied the same rotations at
/// the same heights in the same order.
#[must_use]
pub fn extend_key_log(digest: Hash32, height: Height, tx: &SystemTx) -> Hash32 {
    let mut preimage = b"QBIND:KEY_LOG:v1".to_vec();
    preimage.extend_from_slice(&digest.0);
    preimage.extend_from_slice(&height.0.to_be_bytes());
    tx.encode_to(&mut preimage);
    Hash32::digest(&preimage)
}

/// The digest of `log` (applied rotations with their blocks' heights, in
/// the order applied, as [`crate::schema::read_key_rotations`] returns
/// them): [`EMPTY_KEY_LOG`] extended by each.
#[must_use]
pub fn key_log_digest(log: &[(Height, SystemTx)]) -> Hash32 {
    log.iter().fold(EMPTY_KEY_LOG, |d, (height, tx)| {
        extend_key_log(d, *height, tx)
    })
}

/// Replay `log` (applied rotations with their blocks' heights, in the
/// order applied) onto `base`'s key registry with [`apply`], each with the
/// epoch of its block: what [`crate::replica::Replica::open`] does with the
/// records it stored and what a state-synced node does with a peer's
/// [`crate::state_sync::KeyLog`]. Returns the registry and the log's
/// digest ([`key_log_digest`]).
///
/// # Errors
/// The height and the reason of the first record that does not apply.
pub fn replay_key_log(
    base: &EpochSchedule,
    env: NetworkEnvironment,
    log: &[(Height, SystemTx)],
) -> Result<(ValidatorKeyRegistry, Hash32), (Height, KeyRotationError)> {
    let mut registry = base.key_registry();
    let mut digest = EMPTY_KEY_LOG;
    for (height, tx) in log {
        apply(base, &mut registry, env, base.epoch_of_height(*height), tx)
            .map_err(|e| (*height, e))?;
        digest = extend_key_log(digest, *height, tx);
    }
    Ok((registry, digest))
}

/// The state root a validator reports for an executed height (in block
/// headers, votes' checks, receipts, snapshots): the application's root
/// while no on-chain rotation has been applied, else SHA3-256 of
/// `"QBIND:STATE_ROOT:KEYS:v1"` ‖ `app_root` ‖ `key_log`. The keys
/// consensus verifies with are thereby part of the certified state: a
/// validator that applied a different rotation log reports another root,
/// and a snapshot's rotation records are checked by its root.
#[must_use]
pub fn reported_root(app_root: Hash32, key_log: Hash32) -> Hash32 {
    if key_log == EMPTY_KEY_LOG {
        return app_root;
    }
    let mut preimage = b"QBIND:STATE_ROOT:KEYS:v1".to_vec();
    preimage.extend_from_slice(&app_root.0);
    preimage.extend_from_slice(&key_log.0);
    Hash32::digest(&preimage)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN_REPORTED_ROOT: &str =
        "11b7a815aed28a8757965a9bd55150503fb9addddbc2ccec409b2950bbfdc271";
    use crate::crypto::KeyPair;
    use crate::fee_mempool::PoolTx;
    use crate::key_rotation::{KeyRole, KeyRotationEvent};
    use crate::types::{Epoch, Millis, NetworkEnvironment, ValidatorId};

    fn rotation(seed: u8) -> SystemTx {
        rotation_at(seed, 9, false)
    }

    fn rotation_at(seed: u8, effective: u64, emergency: bool) -> SystemTx {
        let old = KeyPair::from_seed(&[seed; 32]);
        let new = KeyPair::from_seed(&[seed.wrapping_add(1); 32]);
        let ev = KeyRotationEvent {
            validator_id: ValidatorId(3),
            key_kind: KeyRole::Consensus,
            old_key: old.public_key().as_bytes().to_vec(),
            new_key: new.public_key().as_bytes().to_vec(),
            effective_epoch: Epoch(effective),
            grace_epochs: if emergency { 0 } else { 2 },
            emergency,
        };
        SystemTx::KeyRotation(ev.sign(NetworkEnvironment::Devnet, &old).unwrap())
    }

    #[test]
    fn a_pending_rotation_is_replaced_only_by_a_newer_one() {
        use crate::fee_mempool::{
            EvictionMode, FeeMempool, FeeMempoolConfig, MempoolRejection, MetaTx,
        };
        let pooled = |tx: SystemTx| {
            let meta = tx.meta();
            MetaTx::new(tx.to_bytes(), meta)
        };
        let mut pool = FeeMempool::new(FeeMempoolConfig {
            capacity: 10,
            max_per_sender: 4,
            eviction_mode: EvictionMode::Enforce,
            max_evictions_per_interval: 3,
            eviction_interval_ms: 1_000,
            replacement_bump_bps: 1_000,
            allow_v0_payloads: false,
        });
        let first = pooled(rotation_at(1, 9, false));
        pool.insert(Millis(0), first.clone()).unwrap();
        // Another key, same kind and epoch; or an earlier epoch: refused
        // (both carry the top fee, which no fee bump could beat).
        for (epoch, emergency) in [(9, false), (8, false)] {
            let err = pool
                .insert(Millis(0), pooled(rotation_at(7, epoch, emergency)))
                .unwrap_err();
            assert!(
                matches!(err, MempoolRejection::SystemTxNotNewer { .. }),
                "{err:?}"
            );
        }
        // A later effective epoch replaces it.
        let later = pooled(rotation_at(7, 10, false));
        let admitted = pool.insert(Millis(0), later.clone()).unwrap();
        assert_eq!(admitted.replaced, Some(first.id()));
        // An emergency one replaces a normal one even at an earlier epoch,
        let emergency = pooled(rotation_at(9, 5, true));
        let admitted = pool.insert(Millis(0), emergency).unwrap();
        assert_eq!(admitted.replaced, Some(later.id()));
        // and a normal one never replaces an emergency one.
        let err = pool
            .insert(Millis(0), pooled(rotation_at(11, 900, false)))
            .unwrap_err();
        assert!(
            matches!(err, MempoolRejection::SystemTxNotNewer { .. }),
            "{err:?}"
        );
        assert_eq!(pool.len(), 1);
        assert!(
            rotation_rank(&event(&rotation_at(1, 3, true)))
                > rotation_rank(&event(&rotation_at(1, u64::MAX, false)))
        );
    }

    fn event(tx: &SystemTx) -> KeyRotationEvent {
        let SystemTx::KeyRotation(signed) = tx;
        signed.event.clone()
    }

    #[test]
    fn golden_bytes() {
        let bytes = rotation(1).to_bytes();
        assert_eq!(bytes.len(), 8 + 1 + 2654 + 2420);
        assert_eq!(hex::encode(&bytes[..13]), "51425359535458010100000003");
        // The event's tail: effective epoch 9, grace 2, not an emergency.
        let tail = 9 + 2654 - 17;
        assert_eq!(
            hex::encode(&bytes[tail..tail + 17]),
            "0000000000000009000000000000000200"
        );
        assert_eq!(decode(&bytes), Some(rotation(1)));
    }

    #[test]
    fn decoding_is_exact() {
        let bytes = rotation(1).to_bytes();
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        let mut bad_kind = bytes.clone();
        bad_kind[8] = 2;
        assert_eq!(decode(&bad_kind), None);
        let mut bad_magic = bytes;
        bad_magic[7] = 2;
        assert_eq!(decode(&bad_magic), None);
        assert!(SystemTx::from_bytes(&bad_magic).is_err());
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(SYSTEM_TX_MAGIC), None);
    }

    #[test]
    fn each_validator_and_role_has_its_own_pool_sender() {
        let a = rotation(1).meta();
        let b = rotation(5).meta();
        // Same validator and role, different keys: the same sender.
        assert_eq!(a.sender, b.sender);
        let SystemTx::KeyRotation(mut other) = rotation(1);
        other.event.validator_id = ValidatorId(4);
        assert_ne!(SystemTx::KeyRotation(other).meta().sender, a.sender);
        assert_eq!(a.nonce, 0);
        assert_eq!(a.gas_limit, SYSTEM_TX_GAS);
        assert!(a.effective_fee > u128::from(u64::MAX));
    }

    #[test]
    fn the_key_log_orders_and_places_every_rotation() {
        let (a, b) = (rotation(1), rotation(5));
        let ab = key_log_digest(&[(Height(4), a.clone()), (Height(9), b.clone())]);
        assert_ne!(ab, EMPTY_KEY_LOG);
        assert_eq!(
            ab,
            extend_key_log(extend_key_log(EMPTY_KEY_LOG, Height(4), &a), Height(9), &b)
        );
        // Another order, another height, one fewer: another digest.
        assert_ne!(
            ab,
            key_log_digest(&[(Height(9), b.clone()), (Height(4), a.clone())])
        );
        assert_ne!(
            ab,
            key_log_digest(&[(Height(4), a.clone()), (Height(10), b)])
        );
        assert_ne!(ab, key_log_digest(&[(Height(4), a)]));
        assert_eq!(key_log_digest(&[]), EMPTY_KEY_LOG);
    }

    #[test]
    fn the_reported_root_is_the_application_s_until_a_rotation_applies() {
        let app = Hash32([1; 32]);
        assert_eq!(reported_root(app, EMPTY_KEY_LOG), app);
        let with = reported_root(app, Hash32([2; 32]));
        assert_ne!(with, app);
        assert_ne!(with, reported_root(app, Hash32([3; 32])));
        assert_ne!(with, reported_root(Hash32([4; 32]), Hash32([2; 32])));
        // Golden: SHA3-256("QBIND:STATE_ROOT:KEYS:v1" || 01*32 || 02*32).
        assert_eq!(hex::encode(with.0), GOLDEN_REPORTED_ROOT);
    }
}
