//! Who may hold a P2P connection to this node, and as what (spec §5.1):
//! the validator set's P2P keys, and the operator-listed *followers* —
//! authenticated non-validator peers (full nodes) that this
//! node admits inbound only. `docs/p2p.md` ("Followers") gives the rules the
//! transport applies to each kind.
//!
//! The directory is what the KEMTLS responder consults (by key fingerprint)
//! and what names a connection's peer and kind. A follower is never dialled,
//! booked or relayed, so the directory answers "is this a validator" for
//! those decisions.

use std::collections::BTreeMap;

use qbind_core::types::ValidatorId;

use crate::identity::{AllowedPeers, KeyFingerprint, PeerPublic};

/// What an authenticated peer is to this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerKind {
    /// A member of the validator set: dialled, booked, relayed in peer
    /// exchange, checked against the diversity buckets, inbound connections
    /// counted against `max_inbound`.
    Validator,
    /// An authenticated non-validator: admitted inbound only, up to
    /// `max_follower_inbound`, never dialled, booked or relayed.
    Follower,
}

/// Why a directory was refused at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// A follower has the id of a validator.
    #[error("follower id {id} is also a validator id")]
    FollowerIsValidator {
        /// The id listed both ways.
        id: ValidatorId,
    },
    /// A follower has the P2P key of a validator.
    #[error("follower {follower} has the P2P key of validator {validator}")]
    FollowerHasValidatorKey {
        /// The follower.
        follower: ValidatorId,
        /// The validator whose key it has.
        validator: ValidatorId,
    },
    /// Two followers have one P2P key (a key must name one peer).
    #[error("followers {first} and {second} have the same P2P key")]
    DuplicateFollowerKey {
        /// The smaller id.
        first: ValidatorId,
        /// The larger id.
        second: ValidatorId,
    },
}

/// The P2P keys this node accepts, by id and by fingerprint.
///
/// Bounded by its inputs: the validator set and the operator's follower
/// list; nothing a peer sends adds to it.
#[derive(Clone, Debug, Default)]
pub struct PeerDirectory {
    /// The validator set without this node.
    validators: BTreeMap<ValidatorId, PeerPublic>,
    /// The followers as configured (without this node), kept across epochs.
    configured_followers: BTreeMap<ValidatorId, PeerPublic>,
    /// The followers in effect: configured ones whose id and key are not
    /// (now) a validator's.
    followers: BTreeMap<ValidatorId, PeerPublic>,
    by_fingerprint: BTreeMap<KeyFingerprint, (ValidatorId, PeerKind)>,
}

impl PeerDirectory {
    /// The directory at start. `local` is this node's id: left out of both
    /// maps (a node never connects to itself).
    ///
    /// # Errors
    /// A follower whose id or key is a validator's (ours included), or two
    /// followers with one key: a configuration mistake, refused rather than
    /// resolved silently.
    pub fn new(
        local: ValidatorId,
        validators: &BTreeMap<ValidatorId, PeerPublic>,
        followers: &BTreeMap<ValidatorId, PeerPublic>,
    ) -> Result<Self, DirectoryError> {
        let validator_keys: BTreeMap<KeyFingerprint, ValidatorId> = validators
            .iter()
            .map(|(id, p)| (p.fingerprint(), *id))
            .collect();
        let mut follower_keys: BTreeMap<KeyFingerprint, ValidatorId> = BTreeMap::new();
        for (id, p) in followers {
            if validators.contains_key(id) {
                return Err(DirectoryError::FollowerIsValidator { id: *id });
            }
            let fp = p.fingerprint();
            if let Some(v) = validator_keys.get(&fp) {
                return Err(DirectoryError::FollowerHasValidatorKey {
                    follower: *id,
                    validator: *v,
                });
            }
            if let Some(first) = follower_keys.insert(fp, *id) {
                return Err(DirectoryError::DuplicateFollowerKey { first, second: *id });
            }
        }
        let configured_followers = followers
            .iter()
            .filter(|(id, _)| **id != local)
            .map(|(id, p)| (*id, p.clone()))
            .collect();
        Ok(Self::build(local, validators, configured_followers))
    }

    /// The directory for a new validator set (an epoch change), keeping the
    /// configured followers. A follower whose id or key is now a validator's
    /// (a full node promoted to the set) is that validator while it is in
    /// the set, and a follower again once it leaves: the validator set is
    /// authoritative and an epoch change is never refused.
    #[must_use]
    pub fn with_validators(
        &self,
        local: ValidatorId,
        validators: &BTreeMap<ValidatorId, PeerPublic>,
    ) -> Self {
        Self::build(local, validators, self.configured_followers.clone())
    }

    fn build(
        local: ValidatorId,
        validators: &BTreeMap<ValidatorId, PeerPublic>,
        configured_followers: BTreeMap<ValidatorId, PeerPublic>,
    ) -> Self {
        let mut by_fingerprint = BTreeMap::new();
        let validators: BTreeMap<ValidatorId, PeerPublic> = validators
            .iter()
            .filter(|(id, _)| **id != local)
            .map(|(id, p)| (*id, p.clone()))
            .collect();
        for (id, p) in &validators {
            by_fingerprint.insert(p.fingerprint(), (*id, PeerKind::Validator));
        }
        let mut followers = BTreeMap::new();
        for (id, p) in &configured_followers {
            let fp = p.fingerprint();
            if validators.contains_key(id) || by_fingerprint.contains_key(&fp) {
                continue;
            }
            by_fingerprint.insert(fp, (*id, PeerKind::Follower));
            followers.insert(*id, p.clone());
        }
        PeerDirectory {
            validators,
            configured_followers,
            followers,
            by_fingerprint,
        }
    }

    /// The key and kind of `id`, if it may connect.
    #[must_use]
    pub fn get(&self, id: ValidatorId) -> Option<(&PeerPublic, PeerKind)> {
        self.validators
            .get(&id)
            .map(|p| (p, PeerKind::Validator))
            .or_else(|| self.followers.get(&id).map(|p| (p, PeerKind::Follower)))
    }

    /// The key of validator `id`: the only peers this node dials.
    #[must_use]
    pub fn validator_key(&self, id: ValidatorId) -> Option<&PeerPublic> {
        self.validators.get(&id)
    }

    /// Whether `id` is a validator (other than this node): the only ids
    /// booked and relayed in peer exchange.
    #[must_use]
    pub fn is_validator(&self, id: ValidatorId) -> bool {
        self.validators.contains_key(&id)
    }

    /// How many validators other than this node the directory holds.
    #[must_use]
    pub fn validator_count(&self) -> usize {
        self.validators.len()
    }

    /// Who holds the key with this fingerprint.
    #[must_use]
    pub fn identify(&self, fingerprint: &KeyFingerprint) -> Option<(ValidatorId, PeerKind)> {
        self.by_fingerprint.get(fingerprint).copied()
    }

    /// The followers in effect, in id order.
    pub fn followers(&self) -> impl Iterator<Item = ValidatorId> + '_ {
        self.followers.keys().copied()
    }
}

impl AllowedPeers for PeerDirectory {
    fn lookup(&self, fingerprint: &KeyFingerprint) -> Option<PeerPublic> {
        let (id, _) = self.identify(fingerprint)?;
        self.get(id).map(|(p, _)| p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::StaticIdentity;

    fn key(i: u8) -> PeerPublic {
        StaticIdentity::from_seed(&[i; 32], &[i ^ 0x5a; 32])
            .public()
            .clone()
    }

    fn set(ids: &[(u32, u8)]) -> BTreeMap<ValidatorId, PeerPublic> {
        ids.iter()
            .map(|(id, k)| (ValidatorId(*id), key(*k)))
            .collect()
    }

    #[test]
    fn followers_are_known_by_key_but_not_validators() {
        let d =
            PeerDirectory::new(ValidatorId(0), &set(&[(0, 0), (1, 1)]), &set(&[(7, 7)])).unwrap();
        assert_eq!(
            d.identify(&key(7).fingerprint()),
            Some((ValidatorId(7), PeerKind::Follower))
        );
        assert_eq!(
            d.identify(&key(1).fingerprint()),
            Some((ValidatorId(1), PeerKind::Validator))
        );
        assert_eq!(d.identify(&key(0).fingerprint()), None, "ourselves");
        assert_eq!(d.lookup(&key(7).fingerprint()), Some(key(7)));
        assert_eq!(d.lookup(&key(9).fingerprint()), None);
        assert!(d.validator_key(ValidatorId(7)).is_none());
        assert!(!d.is_validator(ValidatorId(7)));
        assert!(d.is_validator(ValidatorId(1)));
        assert_eq!(d.followers().collect::<Vec<_>>(), vec![ValidatorId(7)]);
    }

    #[test]
    fn collisions_are_refused_at_start() {
        let validators = set(&[(0, 0), (1, 1)]);
        assert_eq!(
            PeerDirectory::new(ValidatorId(0), &validators, &set(&[(1, 9)])).unwrap_err(),
            DirectoryError::FollowerIsValidator { id: ValidatorId(1) }
        );
        // Our own id and key count: they are the validator set's.
        assert_eq!(
            PeerDirectory::new(ValidatorId(0), &validators, &set(&[(0, 9)])).unwrap_err(),
            DirectoryError::FollowerIsValidator { id: ValidatorId(0) }
        );
        assert_eq!(
            PeerDirectory::new(ValidatorId(0), &validators, &set(&[(5, 0)])).unwrap_err(),
            DirectoryError::FollowerHasValidatorKey {
                follower: ValidatorId(5),
                validator: ValidatorId(0)
            }
        );
        assert_eq!(
            PeerDirectory::new(ValidatorId(0), &validators, &set(&[(5, 7), (6, 7)])).unwrap_err(),
            DirectoryError::DuplicateFollowerKey {
                first: ValidatorId(5),
                second: ValidatorId(6)
            }
        );
    }

    /// A full node: its id is in neither map, and everything it knows is a validator.
    #[test]
    fn a_local_id_outside_the_validator_set_is_fine() {
        let d =
            PeerDirectory::new(ValidatorId(9), &set(&[(0, 0), (1, 1)]), &BTreeMap::new()).unwrap();
        assert!(d.is_validator(ValidatorId(0)) && d.is_validator(ValidatorId(1)));
        assert_eq!(d.followers().count(), 0);
    }

    #[test]
    fn an_epoch_change_keeps_followers_and_lets_a_promoted_one_be_a_validator() {
        let d =
            PeerDirectory::new(ValidatorId(0), &set(&[(0, 0), (1, 1)]), &set(&[(7, 7)])).unwrap();
        let next = d.with_validators(ValidatorId(0), &set(&[(0, 0), (2, 2)]));
        assert_eq!(
            next.get(ValidatorId(7)),
            Some((&key(7), PeerKind::Follower))
        );
        assert!(next.get(ValidatorId(1)).is_none());
        // 7 joins the validator set: it is a validator while there.
        let promoted = next.with_validators(ValidatorId(0), &set(&[(0, 0), (7, 7)]));
        assert_eq!(
            promoted.identify(&key(7).fingerprint()),
            Some((ValidatorId(7), PeerKind::Validator))
        );
        assert_eq!(promoted.followers().count(), 0);
        // A validator with a follower's key under another id shadows the follower too.
        let rekeyed = next.with_validators(ValidatorId(0), &set(&[(0, 0), (3, 7)]));
        assert_eq!(
            rekeyed.identify(&key(7).fingerprint()),
            Some((ValidatorId(3), PeerKind::Validator))
        );
        assert!(rekeyed.get(ValidatorId(7)).is_none());
        // And a follower again once it leaves.
        let left = promoted.with_validators(ValidatorId(0), &set(&[(0, 0)]));
        assert_eq!(
            left.get(ValidatorId(7)),
            Some((&key(7), PeerKind::Follower))
        );
    }
}
