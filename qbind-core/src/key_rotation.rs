//! Validator key rotation (runbook §6.2, §10.5): rotation events, their
//! canonical encoding and signature, and the validator key registry that
//! decides which keys of a validator are accepted in which epoch.
//!
//! A [`KeyRotationEvent`] names a validator, a key role, the old and the new
//! public key, the epoch from which the new key is valid and a grace period
//! in epochs. It is signed with the validator's *current* consensus key over
//! `"QBIND:{scope}:KEY_ROTATION:v1" || chain_id || canonical bytes`, so an
//! event made for one network never applies on another.
//!
//! The [`ValidatorKeyRegistry`] applies the acceptance rule:
//! - before `effective_epoch`: only the old key;
//! - in `[effective_epoch, effective_epoch + grace_epochs)`: both keys;
//! - from `effective_epoch + grace_epochs` on: only the new key.
//!
//! An emergency rotation (a compromised key) takes effect immediately: from
//! the epoch in which it is applied only the new key is accepted, whatever
//! its stated grace period.

use std::collections::BTreeMap;

use crate::codec::{Decode, DecodeError, Encode, Reader, encode_bytes};
use crate::crypto::{
    self, CryptoError, KeyPair, ML_DSA_44_PUBLIC_KEY_BYTES, ML_KEM_768_ENCAPSULATION_KEY_BYTES,
    PublicKey, Signature,
};
use crate::signing::{SignKind, signing_preimage};
use crate::traits::SignRequest;
use crate::types::{Epoch, NetworkEnvironment, ValidatorId};

/// The role of a validator key (runbook §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyRole {
    /// Signs proposals, votes and timeouts (ML-DSA-44).
    Consensus,
    /// Signs DAG batches and availability acks (ML-DSA-44).
    BatchSigning,
    /// Authenticates KEMTLS handshakes (ML-KEM-768 static key).
    P2pIdentity,
}

impl KeyRole {
    /// Every role, in wire-tag order.
    pub const ALL: [KeyRole; 3] = [
        KeyRole::Consensus,
        KeyRole::BatchSigning,
        KeyRole::P2pIdentity,
    ];

    /// The wire tag (one byte).
    #[must_use]
    pub fn tag(self) -> u8 {
        match self {
            KeyRole::Consensus => 0,
            KeyRole::BatchSigning => 1,
            KeyRole::P2pIdentity => 2,
        }
    }

    /// The role with wire tag `tag`.
    #[must_use]
    pub fn from_tag(tag: u8) -> Option<KeyRole> {
        KeyRole::ALL.into_iter().find(|r| r.tag() == tag)
    }

    /// The length of a public key of this role on the wire.
    #[must_use]
    pub fn public_key_len(self) -> usize {
        match self {
            KeyRole::Consensus | KeyRole::BatchSigning => ML_DSA_44_PUBLIC_KEY_BYTES,
            KeyRole::P2pIdentity => ML_KEM_768_ENCAPSULATION_KEY_BYTES,
        }
    }

    /// The operator-facing name (`consensus`, `batch-signing`, `p2p-identity`).
    #[must_use]
    pub fn cli_name(self) -> &'static str {
        match self {
            KeyRole::Consensus => "consensus",
            KeyRole::BatchSigning => "batch-signing",
            KeyRole::P2pIdentity => "p2p-identity",
        }
    }

    /// The role named `name` ([`KeyRole::cli_name`]).
    #[must_use]
    pub fn from_cli_name(name: &str) -> Option<KeyRole> {
        KeyRole::ALL.into_iter().find(|r| r.cli_name() == name)
    }
}

/// The fewest epochs between the block carrying an on-chain rotation and
/// its effective epoch ([`ValidatorKeyRegistry::apply_scheduled`]): the
/// keys of epoch `e` are then fixed by the blocks of epochs up to `e - 2`,
/// and a validator checks signatures of epoch `e` only once it has executed
/// all of those (`HotStuff::note_executed_height` holds the others back),
/// while it may still be executing blocks of `e - 1`.
pub const MIN_ROTATION_LEAD: u64 = 2;

/// The most epochs between the block carrying an on-chain rotation and its
/// effective epoch: a far-future rotation only holds the validator's key
/// registry entry hostage.
pub const MAX_ROTATION_LEAD: u64 = 1_000;

/// Longest key accepted on the wire by the decoder before the per-role check.
const MAX_KEY_BYTES: u32 = 4096;

/// A key rotation event (runbook §6.2 `rotation-event.json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRotationEvent {
    /// The validator whose key rotates.
    pub validator_id: ValidatorId,
    /// Which of its keys.
    pub key_kind: KeyRole,
    /// The key being replaced (its wire encoding).
    pub old_key: Vec<u8>,
    /// The replacement key.
    pub new_key: Vec<u8>,
    /// The first epoch in which the new key is valid.
    pub effective_epoch: Epoch,
    /// Epochs during which both keys are valid.
    pub grace_epochs: u64,
    /// Emergency rotation: effective immediately, no grace period.
    pub emergency: bool,
}

impl KeyRotationEvent {
    /// Checks lengths of both keys against the role and that they differ.
    ///
    /// # Errors
    /// [`KeyRotationError::BadKeyLength`] or [`KeyRotationError::SameKey`].
    pub fn check(&self) -> Result<(), KeyRotationError> {
        let want = self.key_kind.public_key_len();
        for key in [&self.old_key, &self.new_key] {
            if key.len() != want {
                return Err(KeyRotationError::BadKeyLength {
                    role: self.key_kind,
                    expected: want,
                    actual: key.len(),
                });
            }
        }
        if self.old_key == self.new_key {
            return Err(KeyRotationError::SameKey);
        }
        Ok(())
    }

    /// The bytes the current consensus key signs:
    /// `"QBIND:{scope}:KEY_ROTATION:v1" || chain_id (u64 BE) || canonical bytes`,
    /// i.e. the domain-separated preimage of [`SignKind::KeyRotation`].
    #[must_use]
    pub fn signing_preimage(&self, env: NetworkEnvironment) -> Vec<u8> {
        signing_preimage(env, SignKind::KeyRotation, &self.to_bytes())
    }

    /// The request any [`Signer`](crate::traits::Signer) (keystore, PKCS#11
    /// token, remote signer) signs for this event; its signature goes into
    /// [`SignedKeyRotationEvent`] as is.
    #[must_use]
    pub fn sign_request(&self) -> SignRequest {
        SignRequest {
            kind: SignKind::KeyRotation,
            view: None,
            message: self.to_bytes(),
            digest_preimage: Vec::new(),
        }
    }

    /// Sign the event with `current_consensus_key`.
    ///
    /// # Errors
    /// [`KeyRotationError::Crypto`] if signing fails (never observed).
    pub fn sign(
        self,
        env: NetworkEnvironment,
        current_consensus_key: &KeyPair,
    ) -> Result<SignedKeyRotationEvent, KeyRotationError> {
        let signature = current_consensus_key.try_sign(&self.signing_preimage(env))?;
        Ok(SignedKeyRotationEvent {
            event: self,
            signature,
        })
    }
}

impl Encode for KeyRotationEvent {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.validator_id.encode_to(out);
        out.push(self.key_kind.tag());
        encode_bytes(&self.old_key, out);
        encode_bytes(&self.new_key, out);
        self.effective_epoch.encode_to(out);
        self.grace_epochs.encode_to(out);
        self.emergency.encode_to(out);
    }
}

impl Decode for KeyRotationEvent {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let validator_id = ValidatorId::decode_from(r)?;
        let tag = r.u8()?;
        let key_kind = KeyRole::from_tag(tag).ok_or(DecodeError::InvalidTag {
            what: "key role",
            tag,
        })?;
        let old_key = r.bytes("old key", MAX_KEY_BYTES)?;
        let new_key = r.bytes("new key", MAX_KEY_BYTES)?;
        let want = key_kind.public_key_len();
        if old_key.len() != want || new_key.len() != want {
            return Err(DecodeError::InvalidCrypto {
                what: "rotation public key length",
            });
        }
        Ok(KeyRotationEvent {
            validator_id,
            key_kind,
            old_key,
            new_key,
            effective_epoch: Epoch::decode_from(r)?,
            grace_epochs: u64::decode_from(r)?,
            emergency: bool::decode_from(r)?,
        })
    }
}

/// A rotation event with the ML-DSA-44 signature of the validator's current
/// consensus key. Encoding: event || signature (2420 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedKeyRotationEvent {
    /// The event.
    pub event: KeyRotationEvent,
    /// Signature over [`KeyRotationEvent::signing_preimage`].
    pub signature: Signature,
}

impl SignedKeyRotationEvent {
    /// Verify the signature with `current_consensus_key`.
    ///
    /// # Errors
    /// [`KeyRotationError::Crypto`] if it does not verify.
    pub fn verify(
        &self,
        env: NetworkEnvironment,
        current_consensus_key: &PublicKey,
    ) -> Result<(), KeyRotationError> {
        crypto::verify(
            current_consensus_key,
            &self.event.signing_preimage(env),
            &self.signature,
        )?;
        Ok(())
    }
}

impl Encode for SignedKeyRotationEvent {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.event.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for SignedKeyRotationEvent {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SignedKeyRotationEvent {
            event: KeyRotationEvent::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// Why a rotation event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRotationError {
    /// A key has the wrong length for its role.
    #[error("{role:?} key must be {expected} bytes, got {actual}")]
    BadKeyLength {
        /// The role.
        role: KeyRole,
        /// Required length.
        expected: usize,
        /// Length found.
        actual: usize,
    },
    /// Old and new key are equal.
    #[error("old and new key are the same")]
    SameKey,
    /// The registry does not know the validator or role.
    #[error("validator {validator:?} has no registered {role:?} key")]
    UnknownValidator {
        /// The validator.
        validator: ValidatorId,
        /// The role.
        role: KeyRole,
    },
    /// `old_key` is not the key the registry holds as current.
    #[error("old key does not match the registered {role:?} key of {validator:?}")]
    OldKeyMismatch {
        /// The validator.
        validator: ValidatorId,
        /// The role.
        role: KeyRole,
    },
    /// A rotation for this validator and role is still in progress.
    #[error("a {role:?} rotation of {validator:?} is still pending")]
    RotationPending {
        /// The validator.
        validator: ValidatorId,
        /// The role.
        role: KeyRole,
    },
    /// A regular rotation must take effect in a future epoch.
    #[error("effective epoch {effective:?} is not after the current epoch {current:?}")]
    EffectiveEpochNotInFuture {
        /// Stated effective epoch.
        effective: Epoch,
        /// Current epoch.
        current: Epoch,
    },
    /// An on-chain rotation must take effect at least
    /// [`MIN_ROTATION_LEAD`] epochs after the block that carries it.
    #[error("effective epoch {effective:?} is before the earliest allowed, {earliest:?}")]
    EffectiveEpochTooSoon {
        /// Stated effective epoch.
        effective: Epoch,
        /// The earliest epoch allowed for the block carrying it.
        earliest: Epoch,
    },
    /// Only consensus keys rotate on chain.
    #[error("{role:?} keys do not rotate on chain (only consensus keys do)")]
    NotOnChain {
        /// The role asked for.
        role: KeyRole,
    },
    /// An on-chain rotation must take effect at most [`MAX_ROTATION_LEAD`]
    /// epochs after its block.
    #[error("effective epoch {effective:?} is after the latest allowed, {latest:?}")]
    EffectiveEpochTooFar {
        /// Stated effective epoch.
        effective: Epoch,
        /// The latest epoch allowed for the block carrying it.
        latest: Epoch,
    },
    /// A validator's key rotates on chain at most once per epoch.
    #[error("validator {validator:?} already rotated a key in a block of epoch {epoch:?}")]
    OncePerEpoch {
        /// The validator.
        validator: ValidatorId,
        /// The block's epoch.
        epoch: Epoch,
    },
    /// The chain has no epochs (`epoch_length` unset): a rotation would
    /// never take effect.
    #[error("the chain has no epochs: a key rotation would never take effect")]
    NoEpochs,
    /// The new key is (or was) registered already, for some validator.
    #[error("the new key is already registered (keys are never reused)")]
    KeyReused,
    /// `effective_epoch + grace_epochs` overflows.
    #[error("grace period overflows the epoch counter")]
    GraceOverflow,
    /// Signature or key problem.
    #[error("signature check failed: {0}")]
    Crypto(#[from] CryptoError),
}

/// Where one key of one validator stands.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyEntry {
    /// The key accepted before the pending rotation (or the only key).
    current: Vec<u8>,
    /// A rotation in progress: (new key, first epoch of the new key, first
    /// epoch in which the old key is no longer accepted).
    pending: Option<PendingRotation>,
    /// Rotations that are final, oldest first: certificates of earlier
    /// epochs are still checked with the keys of their epoch.
    settled: Vec<SettledRotation>,
    /// The block epoch of the last on-chain rotation applied (at most one
    /// per epoch, so the record grows at most by one entry per epoch).
    last_on_chain: Option<Epoch>,
    /// New keys of pending rotations an emergency replaced before they
    /// took effect: never accepted, but never usable again either (else
    /// the replaced event could be replayed).
    retired: Vec<Vec<u8>>,
}

impl KeyEntry {
    /// Every key this entry has held or will hold (and the retired ones).
    fn all_keys(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.current.as_slice())
            .chain(self.pending.as_ref().map(|p| p.new_key.as_slice()))
            .chain(
                self.settled
                    .iter()
                    .flat_map(|s| [s.old_key.as_slice(), s.new_key.as_slice()]),
            )
            .chain(self.retired.iter().map(Vec::as_slice))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingRotation {
    new_key: Vec<u8>,
    effective: Epoch,
    old_key_until: Epoch,
}

/// A final rotation: `old_key` alone before `effective`, both keys in
/// `[effective, until)`, later rotations (or the current key) from `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SettledRotation {
    old_key: Vec<u8>,
    new_key: Vec<u8>,
    effective: Epoch,
    until: Epoch,
}

/// Rotation gauges for one validator and role at one epoch (runbook §6.2
/// step 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationStatus {
    /// The validator.
    pub validator: ValidatorId,
    /// The role.
    pub role: KeyRole,
    /// `qbind_consensus_key_rotation_pending`: whether a rotation is not yet final.
    pub pending: bool,
    /// `qbind_consensus_key_rotation_grace_epochs_remaining`: epochs until
    /// only the new key is accepted (0 when nothing is pending).
    pub grace_epochs_remaining: u64,
}

/// The keys each validator may use, per role and epoch.
#[derive(Clone, Debug, Default)]
pub struct ValidatorKeyRegistry {
    keys: BTreeMap<(ValidatorId, KeyRole), KeyEntry>,
}

impl ValidatorKeyRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Register (or replace, at genesis) the key of a validator.
    pub fn register(&mut self, validator: ValidatorId, role: KeyRole, key: Vec<u8>) {
        self.keys.insert(
            (validator, role),
            KeyEntry {
                current: key,
                pending: None,
                settled: Vec::new(),
                last_on_chain: None,
                retired: Vec::new(),
            },
        );
    }

    /// Every key ever registered for `role` (current, pending and replaced
    /// ones), with its validator.
    pub fn keys_of_role(&self, role: KeyRole) -> impl Iterator<Item = (ValidatorId, &[u8])> {
        self.keys
            .iter()
            .filter(move |((_, r), _)| *r == role)
            .flat_map(|(&(validator, _), entry)| entry.all_keys().map(move |k| (validator, k)))
    }

    /// Move every rotation that is final at `epoch` into place.
    fn settle(entry: &mut KeyEntry, epoch: Epoch) {
        if let Some(p) = &entry.pending
            && epoch >= p.old_key_until
        {
            let old_key = std::mem::replace(&mut entry.current, p.new_key.clone());
            entry.settled.push(SettledRotation {
                old_key,
                new_key: p.new_key.clone(),
                effective: p.effective,
                until: p.old_key_until,
            });
            entry.pending = None;
        }
    }

    /// Check that `signed` verifies under a consensus key of its validator
    /// accepted in `epoch`.
    fn check_signer(
        &self,
        signed: &SignedKeyRotationEvent,
        env: NetworkEnvironment,
        epoch: Epoch,
    ) -> Result<(), KeyRotationError> {
        let ev = &signed.event;
        let verified = self
            .accepted_keys(ev.validator_id, KeyRole::Consensus, epoch)
            .into_iter()
            .any(|k| PublicKey::from_bytes(k).is_ok_and(|pk| signed.verify(env, &pk).is_ok()));
        if verified {
            return Ok(());
        }
        if !self
            .keys
            .contains_key(&(ev.validator_id, KeyRole::Consensus))
        {
            return Err(KeyRotationError::UnknownValidator {
                validator: ev.validator_id,
                role: KeyRole::Consensus,
            });
        }
        Err(KeyRotationError::Crypto(CryptoError::InvalidSignature))
    }

    /// Verify and apply a signed rotation event at the current epoch.
    ///
    /// The signature must verify under the validator's consensus key in force
    /// at `current` (the old key, for a consensus rotation).
    ///
    /// # Errors
    /// Any [`KeyRotationError`]; the registry is unchanged on error.
    pub fn apply(
        &mut self,
        signed: &SignedKeyRotationEvent,
        env: NetworkEnvironment,
        current: Epoch,
    ) -> Result<(), KeyRotationError> {
        let ev = &signed.event;
        ev.check()?;
        self.check_signer(signed, env, current)?;
        let entry = self.keys.get_mut(&(ev.validator_id, ev.key_kind)).ok_or(
            KeyRotationError::UnknownValidator {
                validator: ev.validator_id,
                role: ev.key_kind,
            },
        )?;
        Self::settle(entry, current);
        if entry.pending.is_some() && !ev.emergency {
            return Err(KeyRotationError::RotationPending {
                validator: ev.validator_id,
                role: ev.key_kind,
            });
        }
        let old_matches = entry.current == ev.old_key
            || entry
                .pending
                .as_ref()
                .is_some_and(|p| p.new_key == ev.old_key);
        if !old_matches {
            return Err(KeyRotationError::OldKeyMismatch {
                validator: ev.validator_id,
                role: ev.key_kind,
            });
        }
        if ev.emergency {
            // Effective at once: the old key is refused from this epoch on.
            // A planned rotation that was already in its grace period stays
            // on record for the epochs before this one.
            if let Some(p) = entry.pending.take()
                && p.effective < current
            {
                entry.settled.push(SettledRotation {
                    old_key: entry.current.clone(),
                    new_key: p.new_key,
                    effective: p.effective,
                    until: current,
                });
            }
            entry.pending = Some(PendingRotation {
                new_key: ev.new_key.clone(),
                effective: current,
                old_key_until: current,
            });
            return Ok(());
        }
        if ev.effective_epoch <= current {
            return Err(KeyRotationError::EffectiveEpochNotInFuture {
                effective: ev.effective_epoch,
                current,
            });
        }
        let until = ev
            .effective_epoch
            .0
            .checked_add(ev.grace_epochs)
            .ok_or(KeyRotationError::GraceOverflow)?;
        entry.pending = Some(PendingRotation {
            new_key: ev.new_key.clone(),
            effective: ev.effective_epoch,
            old_key_until: Epoch(until),
        });
        Ok(())
    }

    /// Verify and apply a rotation event carried by a committed block of
    /// epoch `block_epoch` (an on-chain rotation, docs/key-rotation.md).
    ///
    /// Unlike [`ValidatorKeyRegistry::apply`], whose caller picks the
    /// epoch, this is run by every validator when it executes the block, at
    /// different times: so the event may change which keys are accepted only
    /// from `block_epoch + lead` on, an epoch whose signatures a validator
    /// checks only after it has executed every block of `block_epoch` (with
    /// `lead` ≥ 2; see [`MIN_ROTATION_LEAD`]). Rules:
    ///
    /// - only a consensus key rotates on chain (batches are signed with it
    ///   too; P2P identities come from the validator-set file);
    /// - the signature verifies under a consensus key of the validator
    ///   accepted in `block_epoch`;
    /// - `effective_epoch ≥ block_epoch + lead`, for an emergency rotation
    ///   too (which then accepts only the new key from `effective_epoch`:
    ///   no grace period);
    /// - the new key was never registered, for any validator or role: a
    ///   validator cannot take another's key (its signatures would count
    ///   twice), and an old event cannot be replayed (its new key is known);
    /// - `effective_epoch ≤ block_epoch + MAX_ROTATION_LEAD`, and a
    ///   validator rotates on chain at most once per block epoch (so its
    ///   record grows by at most one entry per epoch);
    /// - a regular rotation waits until the pending one is final; an
    ///   emergency one replaces a pending rotation (which keeps the epochs
    ///   before the emergency's effective epoch);
    /// - the signature is checked last, after every cheap rule.
    ///
    /// # Errors
    /// Any [`KeyRotationError`]; the registry is unchanged on error.
    pub fn apply_scheduled(
        &mut self,
        signed: &SignedKeyRotationEvent,
        env: NetworkEnvironment,
        block_epoch: Epoch,
        lead: u64,
    ) -> Result<(), KeyRotationError> {
        let ev = &signed.event;
        if ev.key_kind != KeyRole::Consensus {
            return Err(KeyRotationError::NotOnChain { role: ev.key_kind });
        }
        ev.check()?;
        let earliest = block_epoch.0.saturating_add(lead.max(MIN_ROTATION_LEAD));
        if ev.effective_epoch.0 < earliest {
            return Err(KeyRotationError::EffectiveEpochTooSoon {
                effective: ev.effective_epoch,
                earliest: Epoch(earliest),
            });
        }
        let latest = block_epoch.0.saturating_add(MAX_ROTATION_LEAD);
        if ev.effective_epoch.0 > latest {
            return Err(KeyRotationError::EffectiveEpochTooFar {
                effective: ev.effective_epoch,
                latest: Epoch(latest),
            });
        }
        let until = if ev.emergency {
            ev.effective_epoch
        } else {
            Epoch(
                ev.effective_epoch
                    .0
                    .checked_add(ev.grace_epochs)
                    .ok_or(KeyRotationError::GraceOverflow)?,
            )
        };
        if self
            .keys
            .values()
            .any(|e| e.all_keys().any(|k| k == ev.new_key.as_slice()))
        {
            return Err(KeyRotationError::KeyReused);
        }
        let key = (ev.validator_id, ev.key_kind);
        let unknown = KeyRotationError::UnknownValidator {
            validator: ev.validator_id,
            role: ev.key_kind,
        };
        let entry = self.keys.get(&key).ok_or(unknown.clone())?;
        if entry.last_on_chain == Some(block_epoch) {
            return Err(KeyRotationError::OncePerEpoch {
                validator: ev.validator_id,
                epoch: block_epoch,
            });
        }
        // Where the key stands at the block's epoch (a pending rotation
        // whose old key is no longer accepted is final).
        let (current, pending) = match &entry.pending {
            Some(p) if block_epoch >= p.old_key_until => (&p.new_key, None),
            p => (&entry.current, p.as_ref()),
        };
        if *current != ev.old_key && pending.is_none_or(|p| p.new_key != ev.old_key) {
            return Err(KeyRotationError::OldKeyMismatch {
                validator: ev.validator_id,
                role: ev.key_kind,
            });
        }
        if pending.is_some() && !ev.emergency {
            return Err(KeyRotationError::RotationPending {
                validator: ev.validator_id,
                role: ev.key_kind,
            });
        }
        // The one costly check, after every cheap one.
        self.check_signer(signed, env, block_epoch)?;
        let entry = self.keys.get_mut(&key).ok_or(unknown)?;
        Self::settle(entry, block_epoch);
        // An emergency replaces the pending rotation, which keeps the
        // epochs before the emergency's effective epoch.
        if let Some(p) = entry.pending.take() {
            if p.effective < ev.effective_epoch {
                let old_key = std::mem::replace(&mut entry.current, p.new_key.clone());
                entry.settled.push(SettledRotation {
                    old_key,
                    new_key: p.new_key,
                    effective: p.effective,
                    until: p.old_key_until,
                });
            } else {
                entry.retired.push(p.new_key);
            }
        }
        // From the effective epoch on only this rotation decides (an
        // earlier emergency's record may reach past it).
        for s in &mut entry.settled {
            s.until = s.until.min(ev.effective_epoch);
        }
        entry.pending = Some(PendingRotation {
            new_key: ev.new_key.clone(),
            effective: ev.effective_epoch,
            old_key_until: until,
        });
        entry.last_on_chain = Some(block_epoch);
        Ok(())
    }

    /// The keys of `validator` for `role` that are valid in `epoch`.
    #[must_use]
    pub fn accepted_keys(&self, validator: ValidatorId, role: KeyRole, epoch: Epoch) -> Vec<&[u8]> {
        let Some(entry) = self.keys.get(&(validator, role)) else {
            return Vec::new();
        };
        if let Some(s) = entry.settled.iter().find(|s| epoch < s.until) {
            return if epoch < s.effective {
                vec![s.old_key.as_slice()]
            } else {
                vec![s.old_key.as_slice(), s.new_key.as_slice()]
            };
        }
        match &entry.pending {
            None => vec![entry.current.as_slice()],
            Some(p) if epoch < p.effective => vec![entry.current.as_slice()],
            Some(p) if epoch < p.old_key_until => {
                vec![entry.current.as_slice(), p.new_key.as_slice()]
            }
            Some(p) => vec![p.new_key.as_slice()],
        }
    }

    /// Verify a signature by `validator`'s `role` key over `preimage` with
    /// any key accepted in `epoch`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidSignature`] if no accepted key verifies it,
    /// [`CryptoError::InvalidPublicKey`] if the validator has no such key.
    pub fn verify(
        &self,
        validator: ValidatorId,
        role: KeyRole,
        epoch: Epoch,
        preimage: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        let keys = self.accepted_keys(validator, role, epoch);
        if keys.is_empty() {
            return Err(CryptoError::InvalidPublicKey);
        }
        for key in keys {
            if let Ok(pk) = PublicKey::from_bytes(key)
                && crypto::verify(&pk, preimage, signature).is_ok()
            {
                return Ok(());
            }
        }
        Err(CryptoError::InvalidSignature)
    }

    /// Rotation gauges of every registered key at `epoch`.
    #[must_use]
    pub fn status(&self, epoch: Epoch) -> Vec<RotationStatus> {
        self.keys
            .iter()
            .map(|(&(validator, role), entry)| {
                let remaining = entry
                    .pending
                    .as_ref()
                    .map_or(0, |p| p.old_key_until.0.saturating_sub(epoch.0));
                RotationStatus {
                    validator,
                    role,
                    pending: remaining > 0,
                    grace_epochs_remaining: remaining,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Decode;

    const ENV: NetworkEnvironment = NetworkEnvironment::Testnet;

    fn kp(n: u8) -> KeyPair {
        KeyPair::from_seed(&[n; 32])
    }

    fn event(
        old: &KeyPair,
        new: &KeyPair,
        eff: u64,
        grace: u64,
        emergency: bool,
    ) -> KeyRotationEvent {
        KeyRotationEvent {
            validator_id: ValidatorId(42),
            key_kind: KeyRole::Consensus,
            old_key: old.public_key().as_bytes().to_vec(),
            new_key: new.public_key().as_bytes().to_vec(),
            effective_epoch: Epoch(eff),
            grace_epochs: grace,
            emergency,
        }
    }

    fn registry(old: &KeyPair) -> ValidatorKeyRegistry {
        let mut r = ValidatorKeyRegistry::new();
        r.register(
            ValidatorId(42),
            KeyRole::Consensus,
            old.public_key().as_bytes().to_vec(),
        );
        r
    }

    #[test]
    fn both_keys_during_grace_then_only_the_new_one() {
        let (old, new) = (kp(1), kp(2));
        let mut reg = registry(&old);
        let signed = event(&old, &new, 10, 5, false).sign(ENV, &old).unwrap();
        reg.apply(&signed, ENV, Epoch(3)).unwrap();
        let msg = b"vote preimage";
        let s_old = old.sign(msg);
        let s_new = new.sign(msg);
        let check = |e: u64, s: &Signature| {
            reg.verify(ValidatorId(42), KeyRole::Consensus, Epoch(e), msg, s)
                .is_ok()
        };
        // Before the effective epoch: old only.
        assert!(check(9, &s_old) && !check(9, &s_new));
        // Grace [10, 15): both.
        assert!(check(10, &s_old) && check(10, &s_new));
        assert!(check(14, &s_old) && check(14, &s_new));
        // After: new only.
        assert!(!check(15, &s_old) && check(15, &s_new));
        let st = reg.status(Epoch(12));
        assert_eq!(st[0].grace_epochs_remaining, 3);
        assert!(st[0].pending);
        assert!(!reg.status(Epoch(15))[0].pending);
        assert_eq!(st[0].validator, ValidatorId(42));
        assert_eq!(st[0].role, KeyRole::Consensus);
    }

    #[test]
    fn emergency_rotation_is_immediate() {
        let (old, new) = (kp(1), kp(2));
        let mut reg = registry(&old);
        let signed = event(&old, &new, 100, 50, true).sign(ENV, &old).unwrap();
        reg.apply(&signed, ENV, Epoch(7)).unwrap();
        let msg = b"m";
        assert!(
            reg.verify(
                ValidatorId(42),
                KeyRole::Consensus,
                Epoch(7),
                msg,
                &old.sign(msg)
            )
            .is_err()
        );
        assert!(
            reg.verify(
                ValidatorId(42),
                KeyRole::Consensus,
                Epoch(7),
                msg,
                &new.sign(msg)
            )
            .is_ok()
        );
        assert!(!reg.status(Epoch(7))[0].pending);
        // Earlier epochs keep the old key: their certificates still verify.
        let check = |reg: &ValidatorKeyRegistry, e: u64, k: &KeyPair| {
            reg.verify(
                ValidatorId(42),
                KeyRole::Consensus,
                Epoch(e),
                msg,
                &k.sign(msg),
            )
            .is_ok()
        };
        assert!(check(&reg, 6, &old) && !check(&reg, 6, &new));
        assert!(!check(&reg, 100, &old) && check(&reg, 100, &new));
    }

    /// Whether validator 42's signature by `k` verifies in epoch `e`.
    fn signs_in(reg: &ValidatorKeyRegistry, e: u64, k: &KeyPair) -> bool {
        let msg = b"qc";
        reg.verify(
            ValidatorId(42),
            KeyRole::Consensus,
            Epoch(e),
            msg,
            &k.sign(msg),
        )
        .is_ok()
    }

    #[test]
    fn history_survives_later_rotations() {
        let (a, b, c) = (kp(1), kp(2), kp(3));
        let mut reg = registry(&a);
        let ab = event(&a, &b, 10, 2, false).sign(ENV, &a).unwrap();
        reg.apply(&ab, ENV, Epoch(1)).unwrap();
        // Signed by b (accepted from epoch 10), applied after a's grace.
        let bc = event(&b, &c, 20, 3, false).sign(ENV, &b).unwrap();
        reg.apply(&bc, ENV, Epoch(15)).unwrap();
        let ok = |e: u64, k: &KeyPair| signs_in(&reg, e, k);
        let accepted = |e: u64| [ok(e, &a), ok(e, &b), ok(e, &c)];
        assert_eq!(accepted(5), [true, false, false]);
        assert_eq!(accepted(11), [true, true, false]);
        assert_eq!(accepted(12), [false, true, false]);
        assert_eq!(accepted(19), [false, true, false]);
        assert_eq!(accepted(21), [false, true, true]);
        assert_eq!(accepted(23), [false, false, true]);
        let keys: Vec<&[u8]> = reg
            .keys_of_role(KeyRole::Consensus)
            .map(|(_, k)| k)
            .collect();
        for k in [&a, &b, &c] {
            assert!(keys.contains(&k.public_key().as_bytes()));
        }
    }

    #[test]
    fn an_emergency_during_a_grace_period_keeps_both_keys_before_it() {
        let (a, b, c) = (kp(1), kp(2), kp(3));
        let mut reg = registry(&a);
        let ab = event(&a, &b, 10, 10, false).sign(ENV, &a).unwrap();
        reg.apply(&ab, ENV, Epoch(1)).unwrap();
        // b is compromised at epoch 13, inside the grace period [10, 20).
        let bc = event(&b, &c, 13, 0, true).sign(ENV, &a).unwrap();
        reg.apply(&bc, ENV, Epoch(13)).unwrap();
        let ok = |e: u64, k: &KeyPair| signs_in(&reg, e, k);
        assert!(ok(9, &a) && !ok(9, &b));
        assert!(ok(12, &a) && ok(12, &b) && !ok(12, &c));
        assert!(!ok(13, &a) && !ok(13, &b) && ok(13, &c));
    }

    #[test]
    fn refusals() {
        let (old, new, other) = (kp(1), kp(2), kp(3));
        let mut reg = registry(&old);
        // Signed by a key that is not the current consensus key.
        let bad = event(&old, &new, 10, 5, false).sign(ENV, &other).unwrap();
        assert_eq!(
            reg.apply(&bad, ENV, Epoch(1)),
            Err(KeyRotationError::Crypto(CryptoError::InvalidSignature))
        );
        // Signed for another network.
        let wrong_net = event(&old, &new, 10, 5, false)
            .sign(NetworkEnvironment::Mainnet, &old)
            .unwrap();
        assert!(reg.apply(&wrong_net, ENV, Epoch(1)).is_err());
        // Effective epoch in the past.
        let past = event(&old, &new, 1, 5, false).sign(ENV, &old).unwrap();
        assert!(matches!(
            reg.apply(&past, ENV, Epoch(1)),
            Err(KeyRotationError::EffectiveEpochNotInFuture { .. })
        ));
        // Old key mismatch.
        let mismatch = event(&other, &new, 10, 5, false).sign(ENV, &old).unwrap();
        assert!(matches!(
            reg.apply(&mismatch, ENV, Epoch(1)),
            Err(KeyRotationError::OldKeyMismatch { .. })
        ));
        // Same key.
        let same = event(&old, &old, 10, 5, false).sign(ENV, &old).unwrap();
        assert_eq!(
            reg.apply(&same, ENV, Epoch(1)),
            Err(KeyRotationError::SameKey)
        );
        // Second regular rotation while one is pending.
        let ok = event(&old, &new, 10, 5, false).sign(ENV, &old).unwrap();
        reg.apply(&ok, ENV, Epoch(1)).unwrap();
        let again = event(&new, &other, 20, 5, false).sign(ENV, &old).unwrap();
        assert!(matches!(
            reg.apply(&again, ENV, Epoch(2)),
            Err(KeyRotationError::RotationPending { .. })
        ));
    }

    #[test]
    fn on_chain_rotations_take_effect_after_the_lead_only() {
        let (old, new) = (kp(1), kp(2));
        let mut reg = registry(&old);
        // Carried by a block of epoch 5: effective 6 is too soon.
        let soon = event(&old, &new, 6, 1, false).sign(ENV, &old).unwrap();
        assert_eq!(
            reg.apply_scheduled(&soon, ENV, Epoch(5), MIN_ROTATION_LEAD),
            Err(KeyRotationError::EffectiveEpochTooSoon {
                effective: Epoch(6),
                earliest: Epoch(7)
            })
        );
        // An emergency is held to the same lead.
        let urgent = event(&old, &new, 5, 0, true).sign(ENV, &old).unwrap();
        assert!(matches!(
            reg.apply_scheduled(&urgent, ENV, Epoch(5), MIN_ROTATION_LEAD),
            Err(KeyRotationError::EffectiveEpochTooSoon { .. })
        ));
        // A lead below the minimum is raised to it.
        assert!(reg.apply_scheduled(&soon, ENV, Epoch(5), 0).is_err());
        // Only consensus keys rotate on chain.
        let mut p2p = event(&old, &new, 9, 1, false);
        p2p.key_kind = KeyRole::BatchSigning;
        assert_eq!(
            reg.apply_scheduled(&p2p.sign(ENV, &old).unwrap(), ENV, Epoch(5), 2),
            Err(KeyRotationError::NotOnChain {
                role: KeyRole::BatchSigning
            })
        );
        let ok = event(&old, &new, 7, 1, false).sign(ENV, &old).unwrap();
        reg.apply_scheduled(&ok, ENV, Epoch(5), MIN_ROTATION_LEAD)
            .unwrap();
        // Nothing changed for the epochs up to the block's epoch + 1.
        for e in 0..7 {
            assert!(signs_in(&reg, e, &old) && !signs_in(&reg, e, &new), "{e}");
        }
        assert!(signs_in(&reg, 7, &old) && signs_in(&reg, 7, &new));
        assert!(!signs_in(&reg, 8, &old) && signs_in(&reg, 8, &new));
    }

    #[test]
    fn on_chain_rotations_never_reuse_a_key() {
        let (a, b, c) = (kp(1), kp(2), kp(3));
        let mut reg = registry(&a);
        reg.register(
            ValidatorId(7),
            KeyRole::Consensus,
            c.public_key().as_bytes().to_vec(),
        );
        // Validator 42 may not take validator 7's key.
        let steal = event(&a, &c, 10, 0, false).sign(ENV, &a).unwrap();
        assert_eq!(
            reg.apply_scheduled(&steal, ENV, Epoch(1), 2),
            Err(KeyRotationError::KeyReused)
        );
        // a -> b, settled; then b -> a is refused, and replaying a -> b
        // (still correctly signed by a) is refused too.
        let ab = event(&a, &b, 10, 0, false).sign(ENV, &a).unwrap();
        reg.apply_scheduled(&ab, ENV, Epoch(1), 2).unwrap();
        let ba = event(&b, &a, 30, 0, false).sign(ENV, &b).unwrap();
        assert_eq!(
            reg.apply_scheduled(&ba, ENV, Epoch(20), 2),
            Err(KeyRotationError::KeyReused)
        );
        let replay = event(&a, &b, 40, 0, false).sign(ENV, &a).unwrap();
        assert_eq!(
            reg.apply_scheduled(&replay, ENV, Epoch(20), 2),
            Err(KeyRotationError::KeyReused)
        );
        assert!(signs_in(&reg, 25, &b) && !signs_in(&reg, 25, &a));
    }

    #[test]
    fn a_second_emergency_with_an_earlier_epoch_decides_from_its_epoch() {
        let (a, b, c, d) = (kp(1), kp(2), kp(3), kp(4));
        let mut reg = registry(&a);
        let planned = event(&a, &b, 10, 10, false).sign(ENV, &a).unwrap();
        reg.apply_scheduled(&planned, ENV, Epoch(1), 2).unwrap();
        // Signed with A: the only key accepted in epochs 8 and 9.
        let first = event(&b, &c, 15, 0, true).sign(ENV, &a).unwrap();
        reg.apply_scheduled(&first, ENV, Epoch(8), 2).unwrap();
        // C turns out compromised too: D only, from epoch 12.
        let second = event(&c, &d, 12, 0, true).sign(ENV, &a).unwrap();
        reg.apply_scheduled(&second, ENV, Epoch(9), 2).unwrap();
        // Replaying the first emergency (still correctly signed by A, which
        // epochs 10 and 11 accept) must not bring C back.
        assert_eq!(
            reg.apply_scheduled(&first, ENV, Epoch(10), 2),
            Err(KeyRotationError::KeyReused)
        );
        assert!(signs_in(&reg, 9, &a) && !signs_in(&reg, 9, &b));
        for e in 10..12 {
            assert!(signs_in(&reg, e, &a) && signs_in(&reg, e, &b), "{e}");
        }
        for e in [12, 13, 14, 15, 19, 20, 50] {
            for k in [&a, &b, &c] {
                assert!(!signs_in(&reg, e, k), "epoch {e}");
            }
            assert!(signs_in(&reg, e, &d), "epoch {e}");
        }
    }

    #[test]
    fn on_chain_rotations_are_bounded_in_lead_and_rate() {
        let (a, b, c) = (kp(1), kp(2), kp(3));
        let mut reg = registry(&a);
        let far = event(&a, &b, 3 + MAX_ROTATION_LEAD, 0, false)
            .sign(ENV, &a)
            .unwrap();
        assert!(matches!(
            reg.apply_scheduled(&far, ENV, Epoch(2), 2),
            Err(KeyRotationError::EffectiveEpochTooFar { .. })
        ));
        let first = event(&a, &b, 10, 5, true).sign(ENV, &a).unwrap();
        reg.apply_scheduled(&first, ENV, Epoch(2), 2).unwrap();
        // A second one (an emergency, allowed to replace) in the same epoch.
        let again = event(&b, &c, 10, 0, true).sign(ENV, &a).unwrap();
        assert_eq!(
            reg.apply_scheduled(&again, ENV, Epoch(2), 2),
            Err(KeyRotationError::OncePerEpoch {
                validator: ValidatorId(42),
                epoch: Epoch(2)
            })
        );
        reg.apply_scheduled(&again, ENV, Epoch(3), 2).unwrap();
        assert!(signs_in(&reg, 10, &c) && !signs_in(&reg, 10, &b));
    }

    #[test]
    fn an_on_chain_emergency_replaces_a_pending_rotation_from_its_epoch() {
        let (a, b, c) = (kp(1), kp(2), kp(3));
        let mut reg = registry(&a);
        // Planned a -> b: both keys in epochs 5..15.
        let planned = event(&a, &b, 5, 10, false).sign(ENV, &a).unwrap();
        reg.apply_scheduled(&planned, ENV, Epoch(1), 2).unwrap();
        // A regular rotation must wait.
        let regular = event(&b, &c, 20, 0, false).sign(ENV, &b).unwrap();
        assert!(matches!(
            reg.apply_scheduled(&regular, ENV, Epoch(6), 2),
            Err(KeyRotationError::RotationPending { .. })
        ));
        // In epoch 6, b is found compromised: only c from epoch 8.
        let urgent = event(&b, &c, 8, 99, true).sign(ENV, &b).unwrap();
        reg.apply_scheduled(&urgent, ENV, Epoch(6), 2).unwrap();
        assert!(signs_in(&reg, 4, &a) && !signs_in(&reg, 4, &b));
        for e in 5..8 {
            assert!(signs_in(&reg, e, &a) && signs_in(&reg, e, &b), "{e}");
            assert!(!signs_in(&reg, e, &c), "{e}");
        }
        for e in [8, 9, 14, 15, 100] {
            assert!(!signs_in(&reg, e, &a) && !signs_in(&reg, e, &b), "{e}");
            assert!(signs_in(&reg, e, &c), "{e}");
        }
    }

    #[test]
    fn golden_bytes() {
        use sha3::{Digest, Sha3_256};
        let ev = KeyRotationEvent {
            validator_id: ValidatorId(42),
            key_kind: KeyRole::Consensus,
            old_key: vec![1; 1312],
            new_key: vec![2; 1312],
            effective_epoch: Epoch(12345),
            grace_epochs: 100,
            emergency: false,
        };
        let bytes = ev.to_bytes();
        assert_eq!(bytes.len(), 2654);
        assert_eq!(hex::encode(&bytes[..13]), "0000002a000000052001010101");
        assert_eq!(
            hex::encode(&bytes[bytes.len() - 17..]),
            "0000000000003039000000000000006400"
        );
        assert_eq!(
            hex::encode(Sha3_256::digest(&bytes)),
            "a92977da4ef5de212f024dbc1593ecafa18e84082ba8d1437cfed3044183235e"
        );
        let pre = ev.signing_preimage(NetworkEnvironment::Mainnet);
        assert_eq!(&pre[..26], b"QBIND:MAIN:KEY_ROTATION:v1");
        assert_eq!(
            hex::encode(Sha3_256::digest(&pre)),
            "613f9610d36666f9bf0083d8cb661f7d3513156f41cef1c21739371c90d93100"
        );
    }

    #[test]
    fn codec_round_trip_and_strictness() {
        let (old, new) = (kp(1), kp(2));
        let signed = event(&old, &new, 10, 5, false).sign(ENV, &old).unwrap();
        let bytes = signed.to_bytes();
        assert_eq!(SignedKeyRotationEvent::from_bytes(&bytes).unwrap(), signed);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(SignedKeyRotationEvent::from_bytes(&trailing).is_err());
        let mut bad_role = bytes.clone();
        bad_role[4] = 9;
        assert!(SignedKeyRotationEvent::from_bytes(&bad_role).is_err());
        for cut in [0, 5, 100, bytes.len() - 1] {
            assert!(SignedKeyRotationEvent::from_bytes(&bytes[..cut]).is_err());
        }
    }
}
