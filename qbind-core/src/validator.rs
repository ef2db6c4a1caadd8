//! Validator sets with stake, quorum arithmetic, and the epoch schedule
//! (spec §1.4 "on-chain validator set with stake requirements"; DESIGN
//! "Epochs: the validator set changes only at epoch boundaries; certificates
//! are always checked against the set of their own epoch").

use std::collections::HashMap;
use std::sync::Arc;

use crate::crypto::{CryptoError, PreparedPublicKey, PublicKey, Signature};
use crate::key_rotation::{KeyRole, ValidatorKeyRegistry};
use crate::signing::{SignKind, signing_preimage};
use crate::types::{Epoch, Height, NetworkEnvironment, ValidatorId, View};

/// One validator: its consensus key and its stake.
#[derive(Clone, Debug)]
pub struct ValidatorInfo {
    /// Its index in the set.
    pub id: ValidatorId,
    /// Stake weight (voting power).
    pub stake: u64,
    /// The ML-DSA-44 consensus public key, decoded once and cached.
    pub key: PreparedPublicKey,
}

/// Errors building a validator set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorSetError {
    /// The set has no validators.
    #[error("validator set is empty")]
    Empty,
    /// Validator IDs must be 0..n in order.
    #[error("validator at position {position} has id {id}; ids must be 0..n in order")]
    BadIds {
        /// Position in the list.
        position: usize,
        /// The id found there.
        id: u32,
    },
    /// A validator has zero stake.
    #[error("validator {id} has zero stake")]
    ZeroStake {
        /// The validator.
        id: u32,
    },
    /// Stake overflowed.
    #[error("total stake overflows u64")]
    StakeOverflow,
    /// A public key did not decode.
    #[error("public key of validator {id}: {source}")]
    BadKey {
        /// The validator.
        id: u32,
        /// Why.
        source: CryptoError,
    },
}

/// The validators of one epoch. Quorum is *more than two thirds* of stake.
///
/// A set may carry the consensus-key rotations of a
/// [`ValidatorKeyRegistry`] (attached with
/// [`EpochSchedule::with_key_registry`]): then the keys a validator may sign
/// with in an epoch are the registry's ([`ValidatorSet::accepted_keys`]),
/// so both the old and the new key verify during a rotation's grace period.
#[derive(Clone, Debug)]
pub struct ValidatorSet {
    validators: Vec<ValidatorInfo>,
    total_stake: u64,
    rotations: Option<Arc<RotatedKeys>>,
}

/// Consensus keys from a key registry, decoded once.
#[derive(Debug)]
struct RotatedKeys {
    registry: ValidatorKeyRegistry,
    prepared: HashMap<Vec<u8>, PreparedPublicKey>,
}

impl RotatedKeys {
    fn new(registry: ValidatorKeyRegistry) -> Result<Self, ValidatorSetError> {
        let mut prepared = HashMap::new();
        for (validator, key) in registry.keys_of_role(KeyRole::Consensus) {
            if prepared.contains_key(key) {
                continue;
            }
            let pk = PublicKey::from_bytes(key)
                .and_then(|pk| PreparedPublicKey::new(&pk))
                .map_err(|source| ValidatorSetError::BadKey {
                    id: validator.0,
                    source,
                })?;
            prepared.insert(key.to_vec(), pk);
        }
        Ok(RotatedKeys { registry, prepared })
    }
}

impl ValidatorSet {
    /// Build a set from `(public key, stake)` pairs; validator `i` gets id `i`.
    pub fn new(members: Vec<(PublicKey, u64)>) -> Result<Self, ValidatorSetError> {
        if members.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        let mut validators = Vec::with_capacity(members.len());
        let mut total: u64 = 0;
        for (i, (pk, stake)) in members.into_iter().enumerate() {
            let id = i as u32;
            if stake == 0 {
                return Err(ValidatorSetError::ZeroStake { id });
            }
            total = total
                .checked_add(stake)
                .ok_or(ValidatorSetError::StakeOverflow)?;
            let key = PreparedPublicKey::new(&pk)
                .map_err(|source| ValidatorSetError::BadKey { id, source })?;
            validators.push(ValidatorInfo {
                id: ValidatorId(id),
                stake,
                key,
            });
        }
        Ok(ValidatorSet {
            validators,
            total_stake: total,
            rotations: None,
        })
    }

    /// The consensus keys validator `id` may sign with in `epoch`: the key
    /// registry's accepted keys if the set carries a registry that knows the
    /// validator (one key, or two during a rotation's grace period), else
    /// its key in this set. Empty for an unknown validator.
    #[must_use]
    pub fn accepted_keys(&self, id: ValidatorId, epoch: Epoch) -> Vec<&PreparedPublicKey> {
        let Some(info) = self.get(id) else {
            return Vec::new();
        };
        if let Some(r) = &self.rotations {
            let keys = r.registry.accepted_keys(id, KeyRole::Consensus, epoch);
            if !keys.is_empty() {
                return keys.into_iter().filter_map(|k| r.prepared.get(k)).collect();
            }
        }
        vec![&info.key]
    }

    /// Verify a domain-separated signature by validator `id` in `epoch`
    /// with any of its [accepted keys](ValidatorSet::accepted_keys).
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] for an unknown validator,
    /// [`CryptoError::InvalidSignature`] if no accepted key verifies it.
    pub fn verify_in_epoch(
        &self,
        id: ValidatorId,
        epoch: Epoch,
        env: NetworkEnvironment,
        kind: SignKind,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        let keys = self.accepted_keys(id, epoch);
        if keys.is_empty() {
            return Err(CryptoError::InvalidPublicKey);
        }
        let preimage = signing_preimage(env, kind, message);
        if keys.iter().any(|k| k.verify(&preimage, signature).is_ok()) {
            Ok(())
        } else {
            Err(CryptoError::InvalidSignature)
        }
    }

    /// Number of validators.
    #[must_use]
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Always false: a set is never empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// All validators in id order.
    #[must_use]
    pub fn validators(&self) -> &[ValidatorInfo] {
        &self.validators
    }

    /// A validator by id.
    #[must_use]
    pub fn get(&self, id: ValidatorId) -> Option<&ValidatorInfo> {
        self.validators.get(id.0 as usize)
    }

    /// Sum of all stake.
    #[must_use]
    pub fn total_stake(&self) -> u64 {
        self.total_stake
    }

    /// Smallest stake that is more than two thirds of the total.
    #[must_use]
    pub fn quorum_stake(&self) -> u64 {
        // floor(2T/3) + 1, computed without overflow.
        let t = u128::from(self.total_stake);
        (t * 2 / 3 + 1) as u64
    }

    /// Smallest stake that is more than one third of the total (at least one
    /// honest validator among any such group when faults are below 1/3).
    #[must_use]
    pub fn one_third_plus_stake(&self) -> u64 {
        let t = u128::from(self.total_stake);
        (t / 3 + 1) as u64
    }

    /// Whether `stake` reaches a quorum.
    #[must_use]
    pub fn is_quorum(&self, stake: u64) -> bool {
        if crate::mutants::active(crate::mutants::Mutant::QuorumOffByOne) {
            return stake.saturating_add(1) >= self.quorum_stake();
        }
        stake >= self.quorum_stake()
    }

    /// Total stake of the given signers (unknown ids count zero).
    #[must_use]
    pub fn stake_of<'a>(&self, ids: impl IntoIterator<Item = &'a ValidatorId>) -> u64 {
        ids.into_iter()
            .filter_map(|id| self.get(*id))
            .map(|v| v.stake)
            .sum()
    }

    /// The leader of `view`: round-robin over the set.
    #[must_use]
    pub fn leader(&self, view: View) -> ValidatorId {
        ValidatorId((view.0 % self.validators.len() as u64) as u32)
    }

    /// Verify a domain-separated signature by validator `id` with its key in
    /// this set (ignoring key rotations; see [`ValidatorSet::verify_in_epoch`]).
    pub fn verify(
        &self,
        id: ValidatorId,
        env: NetworkEnvironment,
        kind: SignKind,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        let info = self.get(id).ok_or(CryptoError::InvalidPublicKey)?;
        info.key
            .verify(&signing_preimage(env, kind, message), signature)
    }
}

/// Which validator set is in force for which heights.
///
/// Epoch `e` ends at the boundary height `(e + 1) * epoch_length`. The block at
/// that height is the epoch's last block; once it is committed, epoch `e + 1`
/// starts with the next set. In production the next set comes from staking
/// state; here the schedule is configuration, identical on every node.
#[derive(Clone, Debug)]
pub struct EpochSchedule {
    epoch_length: u64,
    first: ValidatorSet,
    later: Vec<ValidatorSet>,
}

impl EpochSchedule {
    /// A schedule with one set for every epoch.
    #[must_use]
    pub fn fixed(set: ValidatorSet) -> Self {
        EpochSchedule {
            epoch_length: u64::MAX,
            first: set,
            later: Vec::new(),
        }
    }

    /// A schedule where epoch 0 uses `first`, epoch `e >= 1` uses
    /// `later[min(e - 1, last)]`, and every epoch lasts `epoch_length` blocks.
    #[must_use]
    pub fn with_epochs(epoch_length: u64, first: ValidatorSet, later: Vec<ValidatorSet>) -> Self {
        EpochSchedule {
            epoch_length: epoch_length.max(1),
            first,
            later,
        }
    }

    /// Attach consensus-key rotations to every set of the schedule: from
    /// now on a validator known to `registry` is verified with the keys the
    /// registry accepts in the signature's epoch (runbook §6.2: old key
    /// before `effective_epoch`, both during the grace period, only the new
    /// key after it). Like the schedule itself, the registry must be
    /// identical on every node.
    ///
    /// # Errors
    /// [`ValidatorSetError::BadKey`] if a registered consensus key does not
    /// decode.
    pub fn with_key_registry(
        mut self,
        registry: ValidatorKeyRegistry,
    ) -> Result<Self, ValidatorSetError> {
        let rotations = Some(Arc::new(RotatedKeys::new(registry)?));
        self.first.rotations.clone_from(&rotations);
        for set in &mut self.later {
            set.rotations.clone_from(&rotations);
        }
        Ok(self)
    }

    /// The consensus-key registry the schedule verifies with: the one
    /// attached with [`EpochSchedule::with_key_registry`], else one holding
    /// the consensus key of each validator of epoch 0's set.
    #[must_use]
    pub fn key_registry(&self) -> ValidatorKeyRegistry {
        if let Some(r) = &self.first.rotations {
            return r.registry.clone();
        }
        let mut registry = ValidatorKeyRegistry::new();
        for v in &self.first.validators {
            registry.register(
                v.id,
                KeyRole::Consensus,
                v.key.public_key().as_bytes().to_vec(),
            );
        }
        registry
    }

    /// Whether `key` is one of the consensus keys validator `id` may sign
    /// with in `epoch` ([`ValidatorSet::accepted_keys`]).
    #[must_use]
    pub fn accepts_key(&self, id: ValidatorId, epoch: Epoch, key: &PublicKey) -> bool {
        self.set(epoch)
            .accepted_keys(id, epoch)
            .iter()
            .any(|k| k.public_key() == key)
    }

    /// The epoch of the committed block at `height` (≥ 1): epoch `e` holds
    /// heights `e * epoch_length + 1 ..= (e + 1) * epoch_length` (a block
    /// past its epoch's boundary carries no payload; the genesis height 0
    /// is epoch 0).
    #[must_use]
    pub fn epoch_of_height(&self, height: Height) -> Epoch {
        Epoch(height.0.saturating_sub(1) / self.epoch_length)
    }

    /// Blocks per epoch.
    #[must_use]
    pub fn epoch_length(&self) -> u64 {
        self.epoch_length
    }

    /// The set in force in `epoch` (the last configured set repeats).
    #[must_use]
    pub fn set(&self, epoch: Epoch) -> &ValidatorSet {
        if epoch.0 == 0 {
            return &self.first;
        }
        let idx = usize::try_from(epoch.0 - 1).unwrap_or(usize::MAX);
        self.later
            .get(idx)
            .or(self.later.last())
            .unwrap_or(&self.first)
    }

    /// The last height of `epoch` (its boundary block).
    #[must_use]
    pub fn boundary_height(&self, epoch: Epoch) -> Height {
        Height(epoch.0.saturating_add(1).saturating_mul(self.epoch_length))
    }

    /// The largest set size across configured epochs.
    #[must_use]
    pub fn max_validators(&self) -> usize {
        self.later
            .iter()
            .map(ValidatorSet::len)
            .fold(self.first.len(), usize::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;

    fn set(stakes: &[u64]) -> ValidatorSet {
        ValidatorSet::new(
            stakes
                .iter()
                .enumerate()
                .map(|(i, s)| (KeyPair::from_seed(&[i as u8; 32]).public_key().clone(), *s))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn quorum_is_more_than_two_thirds() {
        assert_eq!(set(&[1, 1, 1, 1]).quorum_stake(), 3);
        assert_eq!(set(&[1; 7]).quorum_stake(), 5);
        assert_eq!(set(&[1, 1, 1]).quorum_stake(), 3);
        assert_eq!(set(&[10, 10, 10, 70]).quorum_stake(), 67);
        assert_eq!(set(&[1; 4]).one_third_plus_stake(), 2);
    }

    #[test]
    fn bad_sets_are_rejected() {
        assert_eq!(
            ValidatorSet::new(vec![]).unwrap_err(),
            ValidatorSetError::Empty
        );
        let pk = KeyPair::from_seed(&[1; 32]).public_key().clone();
        assert_eq!(
            ValidatorSet::new(vec![(pk, 0)]).unwrap_err(),
            ValidatorSetError::ZeroStake { id: 0 }
        );
    }

    #[test]
    fn schedule_repeats_last_set_and_places_boundaries() {
        let s = EpochSchedule::with_epochs(10, set(&[1; 4]), vec![set(&[1; 5])]);
        assert_eq!(s.set(Epoch(0)).len(), 4);
        assert_eq!(s.set(Epoch(1)).len(), 5);
        assert_eq!(s.set(Epoch(9)).len(), 5);
        assert_eq!(s.boundary_height(Epoch(0)), Height(10));
        assert_eq!(s.boundary_height(Epoch(1)), Height(20));
        for (h, e) in [(0, 0), (1, 0), (10, 0), (11, 1), (20, 1), (21, 2)] {
            assert_eq!(s.epoch_of_height(Height(h)), Epoch(e), "height {h}");
        }
        for e in 0..5 {
            assert_eq!(s.epoch_of_height(s.boundary_height(Epoch(e))), Epoch(e));
        }
        assert_eq!(
            EpochSchedule::fixed(set(&[1; 4])).epoch_of_height(Height(u64::MAX)),
            Epoch(0)
        );
    }
}
