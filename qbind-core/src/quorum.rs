//! Quorums of a validator set, independent of what they certify: the
//! [`SignerBitmap`] that names a certificate's signers, and the
//! [`SigVerifier`] that checks single signatures and quorums of signatures
//! against the epoch schedule, with a cache so each signature is verified
//! once. Consensus (QCs, TCs) and the DAG (batch certificates) both build on
//! it; it knows neither.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::crypto::Signature;
use crate::signing::{SignKind, signing_preimage};
use crate::types::{Epoch, Hash32, NetworkEnvironment, ValidatorId};
use crate::validator::ValidatorSet;

/// Set of signers in a certificate: bit `i` is validator `i`.
///
/// Encoding: `u32` bit count, then `ceil(bits / 8)` bytes, least significant
/// bit first within each byte. Padding bits must be zero.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct SignerBitmap {
    bits: u32,
    bytes: Vec<u8>,
}

impl SignerBitmap {
    /// An empty bitmap for a set of `n` validators.
    #[must_use]
    pub fn new(n: usize) -> Self {
        SignerBitmap {
            bits: n as u32,
            bytes: vec![0; n.div_ceil(8)],
        }
    }

    /// Number of positions (the validator set size).
    #[must_use]
    pub fn len(&self) -> usize {
        self.bits as usize
    }

    /// Whether there are no positions.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// Mark validator `id`. Returns false if out of range.
    pub fn set(&mut self, id: ValidatorId) -> bool {
        if id.0 >= self.bits {
            return false;
        }
        if let Some(b) = self.bytes.get_mut((id.0 / 8) as usize) {
            *b |= 1 << (id.0 % 8);
        }
        true
    }

    /// Whether validator `id` is marked.
    #[must_use]
    pub fn contains(&self, id: ValidatorId) -> bool {
        id.0 < self.bits
            && self
                .bytes
                .get((id.0 / 8) as usize)
                .is_some_and(|b| b & (1 << (id.0 % 8)) != 0)
    }

    /// Marked validators in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = ValidatorId> + '_ {
        (0..self.bits)
            .map(ValidatorId)
            .filter(|id| self.contains(*id))
    }

    /// Number of marked validators.
    #[must_use]
    pub fn count(&self) -> usize {
        self.bytes.iter().map(|b| b.count_ones() as usize).sum()
    }
}

impl Encode for SignerBitmap {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.bits.encode_to(out);
        out.extend_from_slice(&self.bytes);
    }
}

impl Decode for SignerBitmap {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let bits = r.u32()?;
        let max = r.limits().max_validators;
        if bits > max {
            return Err(DecodeError::LengthTooLarge {
                what: "signer bitmap",
                len: u64::from(bits),
                max: u64::from(max),
            });
        }
        let bytes = r.take((bits as usize).div_ceil(8))?.to_vec();
        let rem = bits % 8;
        if rem != 0 && bytes.last().is_some_and(|b| b >> rem != 0) {
            return Err(DecodeError::NonCanonical {
                what: "signer bitmap padding",
            });
        }
        Ok(SignerBitmap { bits, bytes })
    }
}

/// How a single signature check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigFailure {
    /// The signer is not in the set (or holds no key accepted in the epoch).
    UnknownSigner,
    /// The signature is wrong.
    Bad,
    /// The signature is right for another network.
    WrongChain,
    /// Its epoch's keys may still change through blocks this validator
    /// has not executed yet ([`SigVerifier::set_keys_final_through`]):
    /// not checked now, and no fault of the sender.
    KeysNotFinal,
}

/// [`SigVerifier::verify_quorum`]'s reason for a certificate of an epoch
/// whose keys are not final here yet.
pub const KEYS_NOT_FINAL: &str =
    "its epoch's keys may still change through blocks not executed here";

/// Verifies signatures and quorums of signatures against validator sets,
/// caching successes.
///
/// The cache key is a digest of what was signed (kind, epoch, signer and the
/// short signed message — never the 2,420-byte signatures, whose SHA3
/// hashing would cost a third of a verification). The entry keeps a keyed
/// 64-bit fingerprint of the verified signature bytes (SipHash-1-3 under a
/// key drawn at random for each verifier, a microsecond or two per
/// signature), and a hit requires the presented signatures' fingerprint to
/// be equal: equal bytes always hit, and different bytes — a different
/// signature over the same message — are verified afresh unless they
/// collide, which someone without the key achieves with probability 2⁻⁶⁴
/// per attempt. The fingerprint is compared, never ordered or reported, so
/// outcomes do not depend on the key. Keeping the bytes instead cost 2,420
/// bytes per signature: with the default 65,536 entries the consensus and
/// DAG caches together grew to ~230 MB at peak (docs/benchmarks.md,
/// "Memory: where the heap goes"). The cache holds at most `capacity`
/// entries (oldest evicted first).
pub struct SigVerifier {
    env: NetworkEnvironment,
    /// The last epoch whose keys no unexecuted block can change (`None`:
    /// no limit).
    keys_final_through: Option<Epoch>,
    seen: HashMap<Hash32, u64>,
    order: VecDeque<Hash32>,
    capacity: usize,
    /// The fingerprint's secret key.
    fingerprint_key: RandomState,
}

impl SigVerifier {
    /// A verifier for `env` caching at most `capacity` (at least 16)
    /// successes.
    #[must_use]
    pub fn new(env: NetworkEnvironment, capacity: usize) -> Self {
        SigVerifier {
            env,
            keys_final_through: None,
            seen: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(16),
            fingerprint_key: RandomState::new(),
        }
    }

    /// The keyed fingerprint of `signatures`, in order: what
    /// [`SigVerifier::is_cached`] compares and [`SigVerifier::remember`]
    /// keeps (computed once per check, not once for each).
    pub(crate) fn fingerprint(&self, signatures: &[Signature]) -> u64 {
        let mut h = self.fingerprint_key.build_hasher();
        h.write_usize(signatures.len());
        for s in signatures {
            h.write(s.as_bytes());
        }
        h.finish()
    }

    /// The network whose domain tags signatures must carry.
    #[must_use]
    pub fn env(&self) -> NetworkEnvironment {
        self.env
    }

    /// Whether `key` was remembered with the signatures whose
    /// [`SigVerifier::fingerprint`] is `fingerprint`.
    pub(crate) fn is_cached(&self, key: &Hash32, fingerprint: u64) -> bool {
        self.seen.get(key) == Some(&fingerprint)
    }

    /// Check signatures only of epochs up to `epoch`: the keys of later
    /// epochs may still change through blocks not executed yet (an on-chain
    /// key rotation takes effect two epochs after its block; docs/key-rotation.md).
    /// A signature of a later epoch fails with [`SigFailure::KeysNotFinal`].
    pub fn set_keys_final_through(&mut self, epoch: Epoch) {
        self.keys_final_through = Some(epoch);
    }

    /// The last epoch whose keys are final here (`None`: no bound).
    #[must_use]
    pub fn keys_final_through(&self) -> Option<Epoch> {
        self.keys_final_through
    }

    /// Whether the keys of `epoch` are final here.
    #[must_use]
    pub fn keys_final(&self, epoch: Epoch) -> bool {
        self.keys_final_through.is_none_or(|f| epoch <= f)
    }

    /// Forget every cached success (the keys a validator may sign with
    /// changed: see [`crate::consensus::HotStuff::set_schedule`]).
    pub(crate) fn clear(&mut self) {
        self.seen.clear();
        self.order.clear();
    }

    /// Remember a success under `key`: the signatures whose
    /// [`SigVerifier::fingerprint`] is `fingerprint`.
    pub(crate) fn remember(&mut self, key: Hash32, fingerprint: u64) {
        if self.seen.insert(key, fingerprint).is_none() {
            self.order.push_back(key);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }

    /// Verify one signature by `signer` of `set` on `message` under `kind`,
    /// with the keys `set` accepts for `signer` in `epoch`.
    ///
    /// # Errors
    /// Why the signature does not count.
    pub fn verify_sig(
        &mut self,
        set: &ValidatorSet,
        epoch: Epoch,
        signer: ValidatorId,
        kind: SignKind,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SigFailure> {
        if !self.keys_final(epoch) {
            return Err(SigFailure::KeysNotFinal);
        }
        let keys = set.accepted_keys(signer, epoch);
        if keys.is_empty() {
            return Err(SigFailure::UnknownSigner);
        }
        let key = sig_cache_key(kind, epoch, signer, message);
        let fingerprint = self.fingerprint(std::slice::from_ref(signature));
        if self.is_cached(&key, fingerprint) {
            return Ok(());
        }
        let preimage = signing_preimage(self.env, kind, message);
        if keys.iter().any(|k| k.verify(&preimage, signature).is_ok()) {
            self.remember(key, fingerprint);
            return Ok(());
        }
        // Classify the failure for operators: was it made for another chain?
        let other_chain = [
            NetworkEnvironment::Devnet,
            NetworkEnvironment::Testnet,
            NetworkEnvironment::Mainnet,
        ]
        .into_iter()
        .filter(|e| *e != self.env)
        .any(|e| {
            let preimage = signing_preimage(e, kind, message);
            keys.iter().any(|k| k.verify(&preimage, signature).is_ok())
        });
        Err(if other_chain {
            SigFailure::WrongChain
        } else {
            SigFailure::Bad
        })
    }

    /// A quorum of `set`'s stake signed `message` as `kind` in `epoch`: one
    /// signature per marked signer, each verified (or cached). Successes
    /// are cached for the whole certificate.
    ///
    /// # Errors
    /// Why the certificate does not hold, as a short static reason.
    pub fn verify_quorum(
        &mut self,
        set: &ValidatorSet,
        epoch: Epoch,
        kind: SignKind,
        message: &[u8],
        signers: &SignerBitmap,
        signatures: &[Signature],
    ) -> Result<(), &'static str> {
        if !self.keys_final(epoch) {
            return Err(KEYS_NOT_FINAL);
        }
        let key = Hash32::digest_parts(&[b"CERT", &[kind as u8], message, &signers.to_bytes()]);
        let whole = self.fingerprint(signatures);
        if self.is_cached(&key, whole) {
            return Ok(());
        }
        check_signers(set, signers, signatures.len())?;
        // The signatures not cached yet (one certificate is too little work
        // to hand to another core: see `prefetch` for batches), then
        // remembered one by one.
        let pending: Vec<(ValidatorId, &Signature, Hash32, u64)> = signers
            .iter()
            .zip(signatures)
            .map(|(signer, sig)| {
                let k = sig_cache_key(kind, epoch, signer, message);
                (signer, sig, k, self.fingerprint(std::slice::from_ref(sig)))
            })
            .filter(|(_, _, k, f)| !self.is_cached(k, *f))
            .collect();
        let preimage = signing_preimage(self.env, kind, message);
        let valid = |(signer, sig, _, _): &(ValidatorId, &Signature, Hash32, u64)| {
            set.accepted_keys(*signer, epoch)
                .iter()
                .any(|k| k.verify(&preimage, sig).is_ok())
        };
        if !pending.iter().all(valid) {
            return Err("a signature does not verify");
        }
        for (_, _, k, f) in pending {
            self.remember(k, f);
        }
        self.remember(key, whole);
        Ok(())
    }
}

/// One certificate to verify ahead ([`SigVerifier::prefetch`]).
#[derive(Clone, Copy, Debug)]
pub struct CertRef<'a> {
    /// The validator set of its epoch.
    pub set: &'a ValidatorSet,
    /// Its epoch.
    pub epoch: Epoch,
    /// What its signers signed.
    pub kind: SignKind,
    /// The signed bytes.
    pub message: &'a [u8],
    /// Its signers.
    pub signers: &'a SignerBitmap,
    /// Their signatures, in signer order.
    pub signatures: &'a [Signature],
}

impl SigVerifier {
    /// Verify, all together, the signatures of `certs` that are not cached
    /// yet, and remember the valid ones, so that verifying each
    /// certificate afterwards finds them in the cache. Invalid signatures
    /// are not remembered: the certificate's own verification reports them.
    /// With the `parallel` feature the signatures are spread over rayon's
    /// pool: a whole sync answer (up to 32 certificates) is enough work to
    /// keep a second core busy, where one certificate (a few signatures)
    /// is not (docs/benchmarks.md, "Parallel certificate verification").
    /// Without it this does nothing.
    pub fn prefetch(&mut self, certs: &[CertRef<'_>]) {
        #[cfg(feature = "parallel")]
        {
            use rayon::prelude::*;
            let mut pending: Vec<(CertRef<'_>, ValidatorId, &Signature, Hash32, u64)> = Vec::new();
            for c in certs {
                if c.signers.count() != c.signatures.len() || !self.keys_final(c.epoch) {
                    continue;
                }
                for (signer, sig) in c.signers.iter().zip(c.signatures) {
                    let key = sig_cache_key(c.kind, c.epoch, signer, c.message);
                    let fingerprint = self.fingerprint(std::slice::from_ref(sig));
                    if !self.is_cached(&key, fingerprint) {
                        pending.push((*c, signer, sig, key, fingerprint));
                    }
                }
            }
            let env = self.env;
            let valid: Vec<bool> = pending
                .par_iter()
                .map(|(c, signer, sig, _, _)| {
                    let preimage = signing_preimage(env, c.kind, c.message);
                    c.set
                        .accepted_keys(*signer, c.epoch)
                        .iter()
                        .any(|k| k.verify(&preimage, sig).is_ok())
                })
                .collect();
            for ((_, _, _, key, fingerprint), ok) in pending.into_iter().zip(valid) {
                if ok {
                    self.remember(key, fingerprint);
                }
            }
        }
        #[cfg(not(feature = "parallel"))]
        let _ = certs;
    }
}

/// The cache key of one signature: what it signs, as whom, in which epoch.
fn sig_cache_key(kind: SignKind, epoch: Epoch, signer: ValidatorId, message: &[u8]) -> Hash32 {
    Hash32::digest_parts(&[
        &[kind as u8],
        &epoch.0.to_be_bytes(),
        &signer.0.to_be_bytes(),
        message,
    ])
}

/// The shape of a certificate's signer list: the bitmap has `set`'s size,
/// one signature per marked signer, and the signers hold a quorum of stake.
///
/// # Errors
/// Which of these fails.
pub fn check_signers(
    set: &ValidatorSet,
    signers: &SignerBitmap,
    n_sigs: usize,
) -> Result<(), &'static str> {
    if signers.len() != set.len() {
        return Err("signer bitmap size differs from the validator set size");
    }
    if signers.count() != n_sigs {
        return Err("signature count differs from signer count");
    }
    let ids: Vec<ValidatorId> = signers.iter().collect();
    if !set.is_quorum(set.stake_of(&ids)) {
        return Err("signers do not reach a quorum of stake");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;
    use crate::signing::sign_domain;

    const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

    fn set_of(keys: &[KeyPair]) -> ValidatorSet {
        ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect()).expect("set")
    }

    /// The cache answers for the exact bytes it verified, and only for
    /// them. A hit is seen through a set that gives the signer another key
    /// (a real check would fail there): the same signature hits, one with a
    /// flipped bit does not, and nothing hits after `clear`.
    #[test]
    fn the_cache_hits_for_the_verified_bytes_only() {
        let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(&[i + 70; 32])).collect();
        let other: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(&[i + 90; 32])).collect();
        let (set, changed) = (set_of(&keys), set_of(&other));
        let msg = b"a vote";
        let sig = sign_domain(&keys[1], ENV, SignKind::Vote, msg);
        let mut flipped = sig.as_bytes().to_vec();
        flipped[2000] ^= 0x10;
        let flipped = Signature::from_bytes(&flipped).expect("signature");
        let mut v = SigVerifier::new(ENV, 64);
        let check = |v: &mut SigVerifier, set: &ValidatorSet, s: &Signature| {
            v.verify_sig(set, Epoch(0), ValidatorId(1), SignKind::Vote, msg, s)
        };
        assert_eq!(check(&mut v, &set, &sig), Ok(()));
        assert_eq!(check(&mut v, &changed, &sig), Ok(()), "a cache hit");
        assert_eq!(check(&mut v, &changed, &flipped), Err(SigFailure::Bad));
        assert_eq!(check(&mut v, &set, &flipped), Err(SigFailure::Bad));

        // A whole certificate: a hit for the same signatures in the same
        // order, a fresh check for any other list.
        let mut signers = SignerBitmap::new(4);
        let mut sigs = Vec::new();
        for i in 0..3u32 {
            signers.set(ValidatorId(i));
            sigs.push(sign_domain(&keys[i as usize], ENV, SignKind::Vote, msg));
        }
        let quorum = |v: &mut SigVerifier, set: &ValidatorSet, s: &[Signature]| {
            v.verify_quorum(set, Epoch(0), SignKind::Vote, msg, &signers, s)
        };
        assert_eq!(quorum(&mut v, &set, &sigs), Ok(()));
        assert_eq!(quorum(&mut v, &changed, &sigs), Ok(()), "a cache hit");
        let mut swapped = sigs.clone();
        swapped.swap(0, 1);
        assert!(quorum(&mut v, &changed, &swapped).is_err());
        let mut one_flipped = sigs.clone();
        one_flipped[2] = flipped;
        assert!(quorum(&mut v, &changed, &one_flipped).is_err());

        v.clear();
        assert_eq!(check(&mut v, &changed, &sig), Err(SigFailure::Bad));
        assert!(quorum(&mut v, &changed, &sigs).is_err());
    }

    /// Two verifiers key their fingerprints independently, and within one
    /// the fingerprint depends on every byte and on the order.
    #[test]
    fn fingerprints_cover_every_byte_and_the_order() {
        let k = KeyPair::from_seed(&[7; 32]);
        let a = sign_domain(&k, ENV, SignKind::Vote, b"a");
        let b = sign_domain(&k, ENV, SignKind::Vote, b"b");
        let v = SigVerifier::new(ENV, 16);
        let w = SigVerifier::new(ENV, 16);
        let ab = [a.clone(), b.clone()];
        let ba = [b, a.clone()];
        assert_eq!(v.fingerprint(&ab), v.fingerprint(&ab));
        assert_ne!(v.fingerprint(&ab), v.fingerprint(&ba));
        assert_ne!(v.fingerprint(&ab), v.fingerprint(std::slice::from_ref(&a)));
        assert_ne!(v.fingerprint(&ab), w.fingerprint(&ab));
        for at in [0, 1_209, 2_419] {
            let mut bytes = a.as_bytes().to_vec();
            bytes[at] ^= 1;
            let changed = Signature::from_bytes(&bytes).expect("signature");
            assert_ne!(
                v.fingerprint(std::slice::from_ref(&a)),
                v.fingerprint(std::slice::from_ref(&changed)),
                "byte {at}"
            );
        }
    }
}
