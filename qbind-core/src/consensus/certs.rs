//! QC and TC verification (on the shared [`crate::quorum::SigVerifier`]),
//! and the collectors that turn votes into QCs
//! and timeouts into TCs.

use crate::codec::Encode;
use crate::consensus::error::ConsensusError;
use crate::consensus::messages::{QuorumCert, TimeoutCert, TimeoutData};
use crate::crypto::Signature;
use crate::quorum::{SigFailure, SigVerifier, check_signers};
use crate::signing::SignKind;
use crate::types::{Epoch, Hash32, NetworkEnvironment, ValidatorId, View};
use crate::validator::{EpochSchedule, ValidatorSet};

/// The typed consensus error for a failed signature check on `what`.
pub(crate) fn sig_error(
    failure: SigFailure,
    what: &'static str,
    signer: ValidatorId,
    epoch: Epoch,
) -> ConsensusError {
    match failure {
        SigFailure::UnknownSigner => ConsensusError::UnknownSigner { signer, epoch },
        SigFailure::Bad => ConsensusError::BadSignature { what, signer },
        SigFailure::WrongChain => ConsensusError::WrongChain { what, signer },
        SigFailure::KeysNotFinal => ConsensusError::KeysNotFinal { what, epoch },
    }
}

/// Verifies consensus signatures and certificates (QCs, TCs) against the
/// epoch schedule, on top of the shared [`SigVerifier`] and its cache.
pub(crate) struct Verifier {
    sigs: SigVerifier,
    genesis_qc: QuorumCert,
}

impl Verifier {
    pub(crate) fn new(env: NetworkEnvironment, genesis_qc: QuorumCert, capacity: usize) -> Self {
        Verifier {
            sigs: SigVerifier::new(env, capacity),
            genesis_qc,
        }
    }

    /// Forget every cached verification.
    pub(crate) fn clear_cache(&mut self) {
        self.sigs.clear();
    }

    /// See [`SigVerifier::set_keys_final_through`].
    pub(crate) fn set_keys_final_through(&mut self, epoch: Epoch) {
        self.sigs.set_keys_final_through(epoch);
    }

    /// Whether the keys of `epoch` are final here.
    pub(crate) fn keys_final(&self, epoch: Epoch) -> bool {
        self.sigs.keys_final(epoch)
    }

    /// The last epoch whose keys are final here (`None`: no bound).
    pub(crate) fn keys_final_through(&self) -> Option<Epoch> {
        self.sigs.keys_final_through()
    }

    /// Verify one signature by `signer` of `set` on `message` under `kind`.
    pub(crate) fn verify_sig(
        &mut self,
        set: &ValidatorSet,
        epoch: Epoch,
        signer: ValidatorId,
        kind: SignKind,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SigFailure> {
        self.sigs
            .verify_sig(set, epoch, signer, kind, message, signature)
    }

    /// Verify the signatures of `qcs` ahead, together (in parallel with the
    /// `parallel` feature), so that [`Verifier::verify_qc`] of each finds
    /// them cached; a QC that would not verify is left to `verify_qc`.
    pub(crate) fn prefetch_qcs<'a>(
        &mut self,
        schedule: &EpochSchedule,
        qcs: impl Iterator<Item = &'a QuorumCert>,
    ) {
        let qcs: Vec<(&QuorumCert, Vec<u8>)> = qcs
            .filter(|qc| qc.view() > View(0) && qc.view() <= crate::consensus::MAX_VIEW)
            .map(|qc| (qc, qc.data.to_bytes()))
            .collect();
        let certs: Vec<crate::quorum::CertRef<'_>> = qcs
            .iter()
            .map(|(qc, message)| crate::quorum::CertRef {
                set: schedule.set(qc.data.epoch),
                epoch: qc.data.epoch,
                kind: SignKind::Vote,
                message,
                signers: &qc.signers,
                signatures: &qc.signatures,
            })
            .collect();
        self.sigs.prefetch(&certs);
    }

    /// Verify a quorum certificate against its epoch's validator set.
    pub(crate) fn verify_qc(
        &mut self,
        schedule: &EpochSchedule,
        qc: &QuorumCert,
    ) -> Result<(), ConsensusError> {
        if qc.view() == View(0) {
            return if *qc == self.genesis_qc {
                Ok(())
            } else {
                Err(invalid_qc(qc, "view 0 is reserved for genesis"))
            };
        }
        if qc.view() > crate::consensus::MAX_VIEW {
            return Err(invalid_qc(qc, "view beyond the view space"));
        }
        if !self.sigs.keys_final(qc.data.epoch) {
            return Err(ConsensusError::KeysNotFinal {
                what: "QC",
                epoch: qc.data.epoch,
            });
        }
        let set = schedule.set(qc.data.epoch);
        self.sigs
            .verify_quorum(
                set,
                qc.data.epoch,
                SignKind::Vote,
                &qc.data.to_bytes(),
                &qc.signers,
                &qc.signatures,
            )
            .map_err(|why| invalid_qc(qc, why))
    }

    /// Verify a timeout certificate against its epoch's validator set.
    pub(crate) fn verify_tc(
        &mut self,
        schedule: &EpochSchedule,
        tc: &TimeoutCert,
    ) -> Result<(), ConsensusError> {
        if tc.view > crate::consensus::MAX_VIEW {
            return Err(ConsensusError::InvalidTc {
                view: tc.view,
                why: "view beyond the view space",
            });
        }
        if !self.sigs.keys_final(tc.epoch) {
            return Err(ConsensusError::KeysNotFinal {
                what: "TC",
                epoch: tc.epoch,
            });
        }
        let mut header = b"TC".to_vec();
        tc.epoch.encode_to(&mut header);
        tc.view.encode_to(&mut header);
        tc.signers.encode_to(&mut header);
        crate::codec::encode_seq(&tc.high_qc_views, &mut header);
        let key = Hash32::digest(&header);
        let whole = self.sigs.fingerprint(&tc.signatures);
        if self.sigs.is_cached(&key, whole) {
            return Ok(());
        }
        let set = schedule.set(tc.epoch);
        let bad = |why| ConsensusError::InvalidTc { view: tc.view, why };
        check_signers(set, &tc.signers, tc.signatures.len()).map_err(bad)?;
        if tc.high_qc_views.len() != tc.signatures.len() {
            return Err(bad("high-QC view count differs from signature count"));
        }
        for ((signer, sig), hv) in tc.signers.iter().zip(&tc.signatures).zip(&tc.high_qc_views) {
            if *hv >= tc.view {
                return Err(bad("a high-QC view is not below the timed-out view"));
            }
            let data = TimeoutData {
                epoch: tc.epoch,
                view: tc.view,
                high_qc_view: *hv,
            };
            self.sigs
                .verify_sig(
                    set,
                    tc.epoch,
                    signer,
                    SignKind::Timeout,
                    &data.to_bytes(),
                    sig,
                )
                .map_err(|_| bad("a signature does not verify"))?;
        }
        self.sigs.remember(key, whole);
        Ok(())
    }
}

fn invalid_qc(qc: &QuorumCert, why: &'static str) -> ConsensusError {
    ConsensusError::InvalidQc {
        block: qc.block_id(),
        view: qc.view(),
        why,
    }
}

/// Verify a quorum certificate from outside a running validator, as a light
/// client or an auditor would: with only the network, the epoch schedule
/// (validator sets with their public keys and stakes, and any key registry)
/// and the certificate.
///
/// Accepts exactly what a validator accepts (the same checks, without a
/// cache): the genesis certificate of `env`'s chain for view 0; otherwise a
/// signer bitmap sized to the set of `qc.data.epoch`, one signature per
/// marked signer, signers holding more than two thirds of that set's stake,
/// and every signature a valid vote signature ([`SignKind::Vote`], domain-
/// separated for `env`) on `qc.data` by an accepted key of its signer.
///
/// That a QC verifies says that a quorum voted for the block `qc.data.block_id`;
/// whether the block is committed follows from the 3-chain rule on the blocks
/// above it.
///
/// # Errors
/// [`ConsensusError::InvalidQc`], saying why.
///
/// ```
/// use qbind_core::consensus::{Block, ConsensusError, verify_quorum_cert};
/// use qbind_core::crypto::KeyPair;
/// use qbind_core::types::NetworkEnvironment;
/// use qbind_core::validator::{EpochSchedule, ValidatorSet};
///
/// let env = NetworkEnvironment::Devnet;
/// let key = KeyPair::from_seed(&[1; 32]);
/// let schedule = EpochSchedule::fixed(ValidatorSet::new(vec![(key.public_key().clone(), 1)]).unwrap());
/// let genesis = Block::genesis(env.chain_id());
/// assert_eq!(verify_quorum_cert(env, &schedule, genesis.justify()), Ok(()));
/// // The genesis certificate of another chain is not accepted.
/// let other = Block::genesis(NetworkEnvironment::Mainnet.chain_id());
/// assert!(matches!(
///     verify_quorum_cert(env, &schedule, other.justify()),
///     Err(ConsensusError::InvalidQc { .. })
/// ));
/// ```
pub fn verify_quorum_cert(
    env: NetworkEnvironment,
    schedule: &EpochSchedule,
    qc: &QuorumCert,
) -> Result<(), ConsensusError> {
    let genesis = crate::consensus::messages::Block::genesis(env.chain_id());
    Verifier::new(env, genesis.justify().clone(), 16).verify_qc(schedule, qc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::messages::{Block, SignerBitmap, VoteData};
    use crate::crypto::KeyPair;
    use crate::signing::sign_domain;

    const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

    fn setup() -> (Vec<KeyPair>, EpochSchedule, Verifier) {
        let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(&[i + 40; 32])).collect();
        let set =
            ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect()).unwrap();
        let genesis = Block::genesis(ENV.chain_id());
        let verifier = Verifier::new(ENV, genesis.justify().clone(), 64);
        (keys, EpochSchedule::fixed(set), verifier)
    }

    #[test]
    fn a_cache_hit_never_vouches_for_a_different_signature() {
        let (keys, schedule, mut v) = setup();
        let set = schedule.set(Epoch(0));
        let msg = b"vote bytes";
        let good = sign_domain(&keys[1], ENV, SignKind::Vote, msg);
        let other = sign_domain(&keys[2], ENV, SignKind::Vote, msg);
        let vote = |v: &mut Verifier, sig: &Signature| {
            v.verify_sig(set, Epoch(0), ValidatorId(1), SignKind::Vote, msg, sig)
        };
        assert_eq!(vote(&mut v, &good), Ok(()));
        assert_eq!(vote(&mut v, &good), Ok(()), "cached");
        assert_eq!(vote(&mut v, &other), Err(SigFailure::Bad));
    }

    /// A QC for view `view` signed by validators 0, 1 and 2.
    fn qc_of(keys: &[KeyPair], view: u64) -> QuorumCert {
        let data = VoteData {
            epoch: Epoch(0),
            view: View(view),
            block_id: Hash32([view as u8; 32]),
        };
        let mut signers = SignerBitmap::new(4);
        let mut signatures = Vec::new();
        for i in 0..3u32 {
            signers.set(ValidatorId(i));
            signatures.push(sign_domain(
                &keys[i as usize],
                ENV,
                SignKind::Vote,
                &data.to_bytes(),
            ));
        }
        QuorumCert {
            data,
            signers,
            signatures,
        }
    }

    #[test]
    fn a_cached_qc_with_a_swapped_signature_is_verified_again() {
        let (keys, schedule, mut v) = setup();
        let qc = qc_of(&keys, 5);
        let data = qc.data;
        assert_eq!(v.verify_qc(&schedule, &qc), Ok(()));
        let mut forged = qc.clone();
        forged.signatures[2] = sign_domain(&keys[3], ENV, SignKind::Vote, &data.to_bytes());
        assert!(matches!(
            v.verify_qc(&schedule, &forged),
            Err(ConsensusError::InvalidQc { .. })
        ));
        assert_eq!(v.verify_qc(&schedule, &qc), Ok(()));
    }

    /// Verifying a batch of QCs ahead (in parallel with the `parallel`
    /// feature) changes no verdict: good QCs verify, a QC with one forged
    /// signature is still refused (its bad signature was not remembered),
    /// and the good signatures of the forged QC do not make it pass.
    #[test]
    fn prefetched_qcs_keep_their_verdicts() {
        let (keys, schedule, mut v) = setup();
        let good: Vec<QuorumCert> = (1..=8).map(|view| qc_of(&keys, view)).collect();
        let mut forged = qc_of(&keys, 9);
        forged.signatures[1] = forged.signatures[0].clone();
        let all: Vec<&QuorumCert> = good.iter().chain([&forged]).collect();
        v.prefetch_qcs(&schedule, all.iter().copied());
        for qc in &good {
            assert_eq!(v.verify_qc(&schedule, qc), Ok(()));
        }
        assert!(matches!(
            v.verify_qc(&schedule, &forged),
            Err(ConsensusError::InvalidQc { .. })
        ));
    }

    /// The public verifier accepts what a validator accepts and nothing
    /// else: a quorum QC of the right chain, not one with a flipped
    /// signature bit, one signer short of a quorum, or signed for another
    /// network.
    #[test]
    fn the_public_verifier_accepts_only_a_valid_quorum() {
        let (keys, schedule, _) = setup();
        let data = VoteData {
            epoch: Epoch(0),
            view: View(9),
            block_id: Hash32([9; 32]),
        };
        let qc_by = |env: NetworkEnvironment, signers_of: &[u32]| {
            let mut signers = SignerBitmap::new(4);
            let mut signatures = Vec::new();
            for i in signers_of {
                signers.set(ValidatorId(*i));
                signatures.push(sign_domain(
                    &keys[*i as usize],
                    env,
                    SignKind::Vote,
                    &data.to_bytes(),
                ));
            }
            QuorumCert {
                data,
                signers,
                signatures,
            }
        };
        let good = qc_by(ENV, &[0, 1, 3]);
        assert_eq!(verify_quorum_cert(ENV, &schedule, &good), Ok(()));

        let mut flipped = good;
        let mut bytes = flipped.signatures[1].as_bytes().to_vec();
        bytes[100] ^= 0x01;
        flipped.signatures[1] = Signature::from_bytes(&bytes).unwrap();
        let undersized = qc_by(ENV, &[0, 1]);
        let other_chain = qc_by(NetworkEnvironment::Testnet, &[0, 1, 3]);
        for bad in [&flipped, &undersized, &other_chain] {
            assert!(matches!(
                verify_quorum_cert(ENV, &schedule, bad),
                Err(ConsensusError::InvalidQc { .. })
            ));
        }
        let genesis = Block::genesis(ENV.chain_id());
        assert_eq!(
            verify_quorum_cert(ENV, &schedule, genesis.justify()),
            Ok(())
        );
    }

    /// Consensus verification consults the key registry: validator 2
    /// rotates to a new key effective in epoch 3 with a grace period of 2
    /// epochs. A QC in which it signs with the new key is refused before
    /// epoch 3, accepted in epochs 3 and 4, and one signed with the old key
    /// is accepted up to epoch 4 and refused from epoch 5 on.
    #[test]
    fn quorum_certificates_follow_key_rotations() {
        use crate::key_rotation::{KeyRole, KeyRotationEvent, ValidatorKeyRegistry};
        let (keys, _, _) = setup();
        let new_key = KeyPair::from_seed(&[99; 32]);
        let mut registry = ValidatorKeyRegistry::new();
        for (i, k) in keys.iter().enumerate() {
            registry.register(
                ValidatorId(i as u32),
                KeyRole::Consensus,
                k.public_key().as_bytes().to_vec(),
            );
        }
        let event = KeyRotationEvent {
            validator_id: ValidatorId(2),
            key_kind: KeyRole::Consensus,
            old_key: keys[2].public_key().as_bytes().to_vec(),
            new_key: new_key.public_key().as_bytes().to_vec(),
            effective_epoch: Epoch(3),
            grace_epochs: 2,
            emergency: false,
        }
        .sign(ENV, &keys[2])
        .unwrap();
        registry.apply(&event, ENV, Epoch(0)).unwrap();
        let set =
            ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect()).unwrap();
        let schedule = EpochSchedule::with_epochs(10, set.clone(), vec![set])
            .with_key_registry(registry)
            .unwrap();
        let qc = |epoch: u64, third: &KeyPair| {
            let data = VoteData {
                epoch: Epoch(epoch),
                view: View(7 + epoch),
                block_id: Hash32([epoch as u8; 32]),
            };
            let mut signers = SignerBitmap::new(4);
            let mut signatures = Vec::new();
            for (i, k) in [&keys[0], &keys[1], third].into_iter().enumerate() {
                signers.set(ValidatorId(i as u32));
                signatures.push(sign_domain(k, ENV, SignKind::Vote, &data.to_bytes()));
            }
            QuorumCert {
                data,
                signers,
                signatures,
            }
        };
        let genesis = Block::genesis(ENV.chain_id());
        let accepted = |epoch: u64, third: &KeyPair| {
            let mut v = Verifier::new(ENV, genesis.justify().clone(), 64);
            v.verify_qc(&schedule, &qc(epoch, third)).is_ok()
        };
        let old_key = &keys[2];
        assert_eq!([accepted(2, old_key), accepted(2, &new_key)], [true, false]);
        assert_eq!([accepted(3, old_key), accepted(3, &new_key)], [true, true]);
        assert_eq!([accepted(4, old_key), accepted(4, &new_key)], [true, true]);
        assert_eq!([accepted(5, old_key), accepted(5, &new_key)], [false, true]);
        // Without the registry only the key of the set counts.
        let plain = EpochSchedule::fixed(
            ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect()).unwrap(),
        );
        let mut v = Verifier::new(ENV, genesis.justify().clone(), 64);
        assert!(v.verify_qc(&plain, &qc(4, &new_key)).is_err());
    }
}
