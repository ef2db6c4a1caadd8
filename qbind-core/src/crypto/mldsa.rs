//! ML-DSA-44 (FIPS 204) keys, signatures and verification on the default backend.
//!
//! Signing is the pure `ML-DSA.Sign` (FIPS 204 Alg. 2) with an empty context and `rnd = 0^32`
//! (the "deterministic variant" of §3.4); verification is `ML-DSA.Verify` (Alg. 3) with an empty
//! context. Encodings are `pkEncode` (Alg. 22, 1312 bytes) and `sigEncode` (Alg. 26, 2420 bytes).

use core::fmt;

use zeroize::Zeroizing;

use super::backend::{DefaultBackend, MlDsa44Backend};
use super::{CryptoError, fmt_hex_prefix};

/// Length of an ML-DSA-44 public key (`pkEncode`), in bytes.
pub const ML_DSA_44_PUBLIC_KEY_BYTES: usize = 1312;
/// Length of an ML-DSA-44 signature (`sigEncode`), in bytes.
pub const ML_DSA_44_SIGNATURE_BYTES: usize = 2420;
/// Length of the key-generation seed `ξ`, in bytes.
pub const ML_DSA_44_SEED_BYTES: usize = 32;
/// Length of an ML-DSA-44 expanded signing key (`skEncode`), in bytes.
pub const ML_DSA_44_SIGNING_KEY_BYTES: usize = 2560;
/// Longest context string FIPS 204 allows (Alg. 2 / 3).
pub const ML_DSA_MAX_CONTEXT_BYTES: usize = 255;

/// An ML-DSA-44 public (verification) key: the 1312-byte `pkEncode` output.
///
/// Every 1312-byte string is a well-formed encoding (FIPS 204 `pkDecode` has no failure case),
/// so only the length is checked.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(Box<[u8; ML_DSA_44_PUBLIC_KEY_BYTES]>);

impl PublicKey {
    /// Reads a public key from its 1312-byte encoding.
    ///
    /// # Errors
    /// [`CryptoError::InvalidLength`] if `b` is not exactly 1312 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; ML_DSA_44_PUBLIC_KEY_BYTES] =
            b.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "ML-DSA-44 public key",
                expected: ML_DSA_44_PUBLIC_KEY_BYTES,
                actual: b.len(),
            })?;
        Ok(Self(Box::new(arr)))
    }

    /// The 1312-byte encoding.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// The 1312-byte encoding as a fixed-size array.
    pub fn as_array(&self) -> &[u8; ML_DSA_44_PUBLIC_KEY_BYTES] {
        &self.0
    }

    pub(crate) fn from_array(bytes: Box<[u8; ML_DSA_44_PUBLIC_KEY_BYTES]>) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(")?;
        fmt_hex_prefix(f, self.as_bytes())?;
        f.write_str(")")
    }
}

/// An ML-DSA-44 signature: the 2420-byte `sigEncode` output.
///
/// Only the length is checked on decoding; a malformed hint encoding is a verification failure.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Signature(Box<[u8; ML_DSA_44_SIGNATURE_BYTES]>);

impl Signature {
    /// Reads a signature from its 2420-byte encoding.
    ///
    /// # Errors
    /// [`CryptoError::InvalidLength`] if `b` is not exactly 2420 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; ML_DSA_44_SIGNATURE_BYTES] =
            b.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "ML-DSA-44 signature",
                expected: ML_DSA_44_SIGNATURE_BYTES,
                actual: b.len(),
            })?;
        Ok(Self(Box::new(arr)))
    }

    /// The 2420-byte encoding.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// The 2420-byte encoding as a fixed-size array.
    pub fn as_array(&self) -> &[u8; ML_DSA_44_SIGNATURE_BYTES] {
        &self.0
    }

    pub(crate) fn from_array(bytes: Box<[u8; ML_DSA_44_SIGNATURE_BYTES]>) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(")?;
        fmt_hex_prefix(f, self.as_bytes())?;
        f.write_str(")")
    }
}

/// An ML-DSA-44 key pair derived from a 32-byte seed, with the signing key expanded once.
///
/// The seed and the expanded key are wiped when the key pair is dropped; `Debug` shows only the
/// public key.
#[derive(Clone)]
pub struct KeyPair {
    seed: Box<Zeroizing<[u8; ML_DSA_44_SEED_BYTES]>>,
    public_key: PublicKey,
    signing_key: <DefaultBackend as MlDsa44Backend>::SigningKey,
}

impl KeyPair {
    /// `ML-DSA.KeyGen_internal(ξ = seed)` (FIPS 204 Alg. 6).
    #[must_use]
    pub fn from_seed(seed: &[u8; ML_DSA_44_SEED_BYTES]) -> Self {
        let (signing_key, public_key) = DefaultBackend::dsa_keygen(seed);
        Self {
            seed: Box::new(Zeroizing::new(*seed)),
            public_key,
            signing_key,
        }
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Deterministic pure ML-DSA-44 signature over `message` with an empty context.
    ///
    /// # Errors
    /// [`CryptoError::SigningFailed`] if the backend exhausts its rejection-sampling bound (for
    /// libcrux 814 iterations, probability below 2^-300 per message; never observed).
    pub fn try_sign(&self, message: &[u8]) -> Result<Signature, CryptoError> {
        DefaultBackend::sign(&self.signing_key, message, &[])
    }

    /// Deterministic pure ML-DSA-44 signature over `message` with an empty context.
    ///
    /// Callers pass the already domain-separated bytes (`domain_tag || chain_id || bytes`).
    ///
    /// # Panics
    /// Only if [`Self::try_sign`] fails, which FIPS 204 bounds below 2^-300 per message; the
    /// message cannot be chosen to make it likely. Use [`Self::try_sign`] to handle it as an error.
    #[must_use]
    #[allow(clippy::panic, reason = "unreachable in practice; see # Panics")]
    pub fn sign(&self, message: &[u8]) -> Signature {
        match self.try_sign(message) {
            Ok(signature) => signature,
            Err(e) => panic!("ML-DSA-44 signing failed: {e}"),
        }
    }

    /// The 32-byte seed, for keystores. Secret: do not log it.
    pub fn seed_bytes(&self) -> &[u8; ML_DSA_44_SEED_BYTES] {
        &self.seed
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// Pure `ML-DSA.Verify(pk, message, signature, ctx = "")` (FIPS 204 Alg. 3).
///
/// Decodes `public_key` on every call; for keys used more than once (validators) build a
/// [`PreparedPublicKey`] once instead.
///
/// # Errors
/// [`CryptoError::InvalidSignature`] if the signature does not verify.
pub fn verify(
    public_key: &PublicKey,
    message: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    let _cpu = crate::cpu::Section::enter(crate::cpu::Activity::Verification);
    let vk = DefaultBackend::prepare(public_key)?;
    DefaultBackend::verify(&vk, message, &[], signature)
}

/// A public key decoded once for repeated verification (for RustCrypto this caches the expanded
/// matrix `Â` and `t1·2^d`, doubling verification speed).
#[derive(Clone)]
pub struct PreparedPublicKey {
    public_key: PublicKey,
    key: <DefaultBackend as MlDsa44Backend>::VerifyingKey,
}

impl PreparedPublicKey {
    /// Decodes `pk` for repeated verification.
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] if the backend refuses the key.
    pub fn new(pk: &PublicKey) -> Result<Self, CryptoError> {
        Ok(Self {
            public_key: pk.clone(),
            key: DefaultBackend::prepare(pk)?,
        })
    }

    /// Pure `ML-DSA.Verify` with an empty context, as [`verify`].
    ///
    /// # Errors
    /// [`CryptoError::InvalidSignature`] if the signature does not verify.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        let _cpu = crate::cpu::Section::enter(crate::cpu::Activity::Verification);
        DefaultBackend::verify(&self.key, message, &[], signature)
    }

    /// The public key this was prepared from.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }
}

impl fmt::Debug for PreparedPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PreparedPublicKey")
            .field(&self.public_key)
            .finish()
    }
}

/// Refuses a context string longer than FIPS 204 allows.
pub(crate) fn check_context(context: &[u8]) -> Result<(), CryptoError> {
    if context.len() > ML_DSA_MAX_CONTEXT_BYTES {
        return Err(CryptoError::InvalidLength {
            what: "ML-DSA context string",
            expected: ML_DSA_MAX_CONTEXT_BYTES,
            actual: context.len(),
        });
    }
    Ok(())
}

/// Byte range of `s1 || s2` inside `skEncode` (after `ρ`, `K`, `tr`: 32 + 32 + 64 bytes);
/// each of the 8 polynomials packs 256 coefficients in 3 bits (η = 2).
const S1_S2_RANGE: core::ops::Range<usize> = 128..128 + 8 * 96;

/// Checks that every `s1`/`s2` coefficient of an `skEncode` key decodes into `[-η, η]`
/// (FIPS 204 Alg. 25 `skDecode` / Alg. 19 `BitUnpack(·, η, η)` with η = 2: the packed value
/// `η - s` must be at most `2η = 4`). `skDecode` itself does not check this, and a backend fed
/// out-of-range values may misbehave, so both backends refuse such keys here.
pub(crate) fn check_expanded_signing_key(
    sk: &[u8; ML_DSA_44_SIGNING_KEY_BYTES],
) -> Result<(), CryptoError> {
    let packed = sk.get(S1_S2_RANGE).unwrap_or_default();
    let all_in_range = packed.chunks_exact(3).all(|c| {
        let word = c
            .iter()
            .rev()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        (0..8).all(|j| (word >> (3 * j)) & 7 <= 4)
    });
    if all_in_range && packed.len() == S1_S2_RANGE.len() {
        Ok(())
    } else {
        Err(CryptoError::InvalidKey {
            what: "ML-DSA-44 expanded signing key",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(n: u8) -> [u8; 32] {
        core::array::from_fn(|i| (i as u8).wrapping_mul(7) ^ n)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn wrong_lengths_are_invalid_length() {
        for len in [
            0,
            1,
            ML_DSA_44_PUBLIC_KEY_BYTES - 1,
            ML_DSA_44_PUBLIC_KEY_BYTES + 1,
        ] {
            let err = PublicKey::from_bytes(&vec![0u8; len]).unwrap_err();
            assert_eq!(
                err,
                CryptoError::InvalidLength {
                    what: "ML-DSA-44 public key",
                    expected: ML_DSA_44_PUBLIC_KEY_BYTES,
                    actual: len
                }
            );
        }
        for len in [
            0,
            ML_DSA_44_SIGNATURE_BYTES - 1,
            ML_DSA_44_SIGNATURE_BYTES + 1,
        ] {
            let err = Signature::from_bytes(&vec![0u8; len]).unwrap_err();
            assert!(matches!(
                err,
                CryptoError::InvalidLength { expected: ML_DSA_44_SIGNATURE_BYTES, actual, .. }
                    if actual == len
            ));
        }
        assert!(PublicKey::from_bytes(&[0u8; ML_DSA_44_PUBLIC_KEY_BYTES]).is_ok());
        assert!(Signature::from_bytes(&[0u8; ML_DSA_44_SIGNATURE_BYTES]).is_ok());
    }

    #[test]
    fn sign_verify_round_trip_and_determinism() {
        let kp = KeyPair::from_seed(&seed(1));
        let msg = b"QBIND:DEV:VOTE:v1 example";
        let sig = kp.sign(msg);
        assert_eq!(sig, kp.sign(msg), "signing must be deterministic");
        assert_eq!(sig, KeyPair::from_seed(&seed(1)).sign(msg));
        verify(kp.public_key(), msg, &sig).unwrap();
        let prepared = PreparedPublicKey::new(kp.public_key()).unwrap();
        prepared.verify(msg, &sig).unwrap();
        assert_eq!(prepared.public_key(), kp.public_key());
        let round = Signature::from_bytes(sig.as_bytes()).unwrap();
        assert_eq!(round, sig);
        let pk = PublicKey::from_bytes(kp.public_key().as_bytes()).unwrap();
        verify(&pk, msg, &round).unwrap();
    }

    #[test]
    fn tampered_signature_message_or_key_fails() {
        let kp = KeyPair::from_seed(&seed(2));
        let msg = b"payload";
        let sig = kp.sign(msg);
        let prepared = PreparedPublicKey::new(kp.public_key()).unwrap();
        for pos in [0, 17, 40, 1000, ML_DSA_44_SIGNATURE_BYTES - 1] {
            let mut bad = sig.as_bytes().to_vec();
            bad[pos] ^= 0x01;
            let bad = Signature::from_bytes(&bad).unwrap();
            assert_eq!(
                verify(kp.public_key(), msg, &bad),
                Err(CryptoError::InvalidSignature)
            );
            assert_eq!(
                prepared.verify(msg, &bad),
                Err(CryptoError::InvalidSignature)
            );
        }
        assert_eq!(
            verify(kp.public_key(), b"payloae", &sig),
            Err(CryptoError::InvalidSignature)
        );
        let other = KeyPair::from_seed(&seed(3));
        assert_eq!(
            verify(other.public_key(), msg, &sig),
            Err(CryptoError::InvalidSignature)
        );
        let zero = Signature::from_bytes(&[0u8; ML_DSA_44_SIGNATURE_BYTES]).unwrap();
        assert!(verify(kp.public_key(), msg, &zero).is_err());
        let ones = Signature::from_bytes(&[0xffu8; ML_DSA_44_SIGNATURE_BYTES]).unwrap();
        assert!(verify(kp.public_key(), msg, &ones).is_err());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let s = seed(4);
        let kp = KeyPair::from_seed(&s);
        let sk = DefaultBackend::expanded_signing_key_bytes(&kp.signing_key);
        let shown = format!("{kp:?} {kp:#?}");
        assert!(shown.contains("PublicKey("), "{shown}");
        assert!(!shown.contains(&hex(&s)), "seed leaked: {shown}");
        // The key `K` and the secret vectors start at byte 32; check every 4-byte window.
        for w in sk[32..].windows(4).step_by(4) {
            assert!(
                !shown.contains(&hex(w)),
                "signing key bytes leaked: {shown}"
            );
        }
        assert_eq!(kp.seed_bytes(), &s);
        let pk_dbg = format!("{:?}", kp.public_key());
        assert_eq!(
            pk_dbg.len(),
            "PublicKey(".len() + 16 + "…".len() + 1,
            "{pk_dbg}"
        );
    }

    #[test]
    fn expanded_key_check() {
        let kp = KeyPair::from_seed(&seed(5));
        let sk = DefaultBackend::expanded_signing_key_bytes(&kp.signing_key);
        check_expanded_signing_key(&sk).unwrap();
        let imported = DefaultBackend::signing_key_from_expanded(&sk).unwrap();
        let sig = DefaultBackend::sign(&imported, b"m", &[]).unwrap();
        assert_eq!(sig, kp.sign(b"m"));
        let mut bad = **sk;
        bad[S1_S2_RANGE.start] |= 0b111; // coefficient 7 > 2η
        assert!(matches!(
            DefaultBackend::signing_key_from_expanded(&bad),
            Err(CryptoError::InvalidKey { .. })
        ));
        let mut bad = **sk;
        bad[S1_S2_RANGE.end - 1] |= 0b1110_0000; // last coefficient of s2
        assert!(check_expanded_signing_key(&bad).is_err());
    }

    #[test]
    fn shared_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<PublicKey>();
        assert_send_sync::<Signature>();
        assert_send_sync::<KeyPair>();
        assert_send_sync::<PreparedPublicKey>();
        assert_send_sync::<super::super::KemEncapsulationKey>();
        assert_send_sync::<super::super::KemDecapsulationKey>();
        assert_send_sync::<super::super::KemKeyPair>();
    }

    #[test]
    fn context_longer_than_255_is_refused() {
        let kp = KeyPair::from_seed(&seed(6));
        let ctx = [0u8; 256];
        assert!(matches!(
            DefaultBackend::sign(&kp.signing_key, b"m", &ctx),
            Err(CryptoError::InvalidLength { actual: 256, .. })
        ));
        let vk = DefaultBackend::prepare(kp.public_key()).unwrap();
        let sig = kp.sign(b"m");
        assert!(DefaultBackend::verify(&vk, b"m", &ctx, &sig).is_err());
        let sig255 = DefaultBackend::sign(&kp.signing_key, b"m", &ctx[..255]).unwrap();
        DefaultBackend::verify(&vk, b"m", &ctx[..255], &sig255).unwrap();
        assert!(DefaultBackend::verify(&vk, b"m", &[], &sig255).is_err());
    }
}
