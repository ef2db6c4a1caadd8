//! The backend seam: what an ML-DSA-44 (FIPS 204) or ML-KEM-768 (FIPS 203) implementation must
//! provide, and which implementation the public types use.
//!
//! The traits are sealed: the backends are `Libcrux` (feature `libcrux`) and `RustCrypto`
//! (feature `rustcrypto`). Most code should use the public types in [`crate::crypto`], which run
//! on [`DefaultBackend`]; the traits are public so tests can drive each backend explicitly and
//! compare them byte for byte.
//!
//! All signing is deterministic (`rnd = 0^32`, FIPS 204 §3.4) so that signatures are a function
//! of key and message only.

use super::CryptoError;
use super::mldsa::{ML_DSA_44_SEED_BYTES, ML_DSA_44_SIGNING_KEY_BYTES, PublicKey, Signature};
use super::mlkem::{
    ML_KEM_768_CIPHERTEXT_BYTES, ML_KEM_768_DECAPSULATION_KEY_BYTES,
    ML_KEM_768_ENCAPSULATION_KEY_BYTES, ML_KEM_768_SEED_BYTES, ML_KEM_768_SHARED_SECRET_BYTES,
};
use zeroize::Zeroizing;

#[cfg(feature = "libcrux")]
pub use super::libcrux_backend::Libcrux;
#[cfg(feature = "rustcrypto")]
pub use super::rustcrypto_backend::RustCrypto;

/// The backend behind the public types: libcrux when feature `libcrux` is on, else RustCrypto.
#[cfg(feature = "libcrux")]
pub type DefaultBackend = Libcrux;
/// The backend behind the public types: libcrux when feature `libcrux` is on, else RustCrypto.
#[cfg(all(not(feature = "libcrux"), feature = "rustcrypto"))]
pub type DefaultBackend = RustCrypto;

pub(crate) mod sealed {
    /// Keeps the backend traits closed to the two implementations in this crate.
    pub trait Sealed {}
}

/// ML-DSA-44 (FIPS 204) as the rest of the crate needs it.
pub trait MlDsa44Backend: sealed::Sealed {
    /// Human-readable backend name for test output.
    const NAME: &'static str;
    /// A signing key in the form the backend signs with (expanded once, wiped on drop).
    type SigningKey: Clone + Send + Sync;
    /// A verification key decoded once for repeated verification.
    type VerifyingKey: Clone + Send + Sync;

    /// `ML-DSA.KeyGen_internal(ξ)` (FIPS 204 Alg. 6): the expanded signing key and `pk`.
    fn dsa_keygen(seed: &[u8; ML_DSA_44_SEED_BYTES]) -> (Self::SigningKey, PublicKey);

    /// Imports an `skEncode` (FIPS 204 Alg. 24) signing key.
    ///
    /// Coefficient ranges of `s1` and `s2` are checked before the backend sees the bytes;
    /// `tr` cannot be checked without the public key. Keys made by [`Self::dsa_keygen`] never
    /// need this; it exists for keys and test vectors stored in expanded form.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if a coefficient of `s1` or `s2` is out of range.
    fn signing_key_from_expanded(
        sk: &[u8; ML_DSA_44_SIGNING_KEY_BYTES],
    ) -> Result<Self::SigningKey, CryptoError>;

    /// The `skEncode` bytes of a signing key (secret; wiped when dropped).
    fn expanded_signing_key_bytes(
        sk: &Self::SigningKey,
    ) -> Box<Zeroizing<[u8; ML_DSA_44_SIGNING_KEY_BYTES]>>;

    /// Deterministic pure `ML-DSA.Sign(sk, M, ctx)` (FIPS 204 Alg. 2, `rnd = 0^32`).
    ///
    /// # Errors
    /// [`CryptoError::InvalidLength`] if `context` exceeds 255 bytes;
    /// [`CryptoError::SigningFailed`] if the backend's rejection-sampling bound is exhausted.
    fn sign(
        sk: &Self::SigningKey,
        message: &[u8],
        context: &[u8],
    ) -> Result<Signature, CryptoError>;

    /// Decodes `pk` (FIPS 204 Alg. 23 `pkDecode`) for repeated verification.
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] if the backend refuses the key.
    fn prepare(pk: &PublicKey) -> Result<Self::VerifyingKey, CryptoError>;

    /// Pure `ML-DSA.Verify(pk, M, σ, ctx)` (FIPS 204 Alg. 3).
    ///
    /// # Errors
    /// [`CryptoError::InvalidSignature`] if the signature does not verify (including a malformed
    /// hint encoding or a context longer than 255 bytes).
    fn verify(
        vk: &Self::VerifyingKey,
        message: &[u8],
        context: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError>;
}

/// FIPS 204 `ML-DSA.Sign_internal` / `ML-DSA.Verify_internal` (Alg. 7 / 8) on a caller-formatted
/// `M'`. Hazardous: it skips the domain separation of the pure interface. For ACVP tests only.
#[cfg(feature = "acvp")]
pub trait MlDsa44Internal: MlDsa44Backend {
    /// `Sign_internal(sk, M', rnd = 0^32)`.
    ///
    /// # Errors
    /// [`CryptoError::SigningFailed`] if the backend's rejection-sampling bound is exhausted.
    fn sign_internal(sk: &Self::SigningKey, message_prime: &[u8])
    -> Result<Signature, CryptoError>;

    /// `Verify_internal(pk, M', σ)`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidSignature`] if the signature does not verify.
    fn verify_internal(
        vk: &Self::VerifyingKey,
        message_prime: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError>;
}

/// FIPS 204 signing and verification from an externally computed `μ = H(tr || M', 64)`
/// (§6.2 and §6.3, "external μ"). Hazardous; for ACVP tests only. libcrux 0.0.11 has no such
/// interface, so only `RustCrypto` implements it.
#[cfg(feature = "acvp")]
pub trait MlDsa44ExternalMu: MlDsa44Backend {
    /// Deterministic signature over a 64-byte `μ`.
    ///
    /// # Errors
    /// [`CryptoError::SigningFailed`] if the backend's rejection-sampling bound is exhausted.
    fn sign_mu(sk: &Self::SigningKey, mu: &[u8; 64]) -> Result<Signature, CryptoError>;

    /// Verification against a 64-byte `μ`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidSignature`] if the signature does not verify.
    fn verify_mu(
        vk: &Self::VerifyingKey,
        mu: &[u8; 64],
        signature: &Signature,
    ) -> Result<(), CryptoError>;
}

/// ML-KEM-768 (FIPS 203) as the rest of the crate needs it.
pub trait MlKem768Backend: sealed::Sealed {
    /// Human-readable backend name for test output.
    const NAME: &'static str;
    /// An encapsulation key that passed the §7.2 modulus check, decoded for reuse.
    type EncapsulationKey: Clone + Send + Sync;
    /// A decapsulation key that passed the §7.3 hash check, wiped on drop.
    type DecapsulationKey: Clone + Send + Sync;

    /// `ML-KEM.KeyGen_internal(d, z)` (FIPS 203 Alg. 16).
    fn kem_keygen(
        d: &[u8; ML_KEM_768_SEED_BYTES],
        z: &[u8; ML_KEM_768_SEED_BYTES],
    ) -> (Self::DecapsulationKey, Self::EncapsulationKey);

    /// Encapsulation-key input check (FIPS 203 §7.2: type and modulus check) and decoding.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if a coefficient is not reduced modulo q.
    fn encapsulation_key_from_bytes(
        ek: &[u8; ML_KEM_768_ENCAPSULATION_KEY_BYTES],
    ) -> Result<Self::EncapsulationKey, CryptoError>;

    /// Decapsulation-key input check (FIPS 203 §7.3: type and hash check) and decoding.
    /// The embedded encapsulation key must also pass the §7.2 modulus check, so that both
    /// backends accept exactly the same keys.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if either check fails.
    fn decapsulation_key_from_bytes(
        dk: &[u8; ML_KEM_768_DECAPSULATION_KEY_BYTES],
    ) -> Result<Self::DecapsulationKey, CryptoError>;

    /// The 1184-byte encoding of an encapsulation key.
    fn encapsulation_key_bytes(
        ek: &Self::EncapsulationKey,
    ) -> Box<[u8; ML_KEM_768_ENCAPSULATION_KEY_BYTES]>;

    /// The 2400-byte encoding of a decapsulation key (secret; wiped when dropped).
    fn decapsulation_key_bytes(
        dk: &Self::DecapsulationKey,
    ) -> Box<Zeroizing<[u8; ML_KEM_768_DECAPSULATION_KEY_BYTES]>>;

    /// `ML-KEM.Encaps_internal(ek, m)` (FIPS 203 Alg. 17): ciphertext and shared secret.
    fn encapsulate(
        ek: &Self::EncapsulationKey,
        m: &[u8; 32],
    ) -> (
        Box<[u8; ML_KEM_768_CIPHERTEXT_BYTES]>,
        [u8; ML_KEM_768_SHARED_SECRET_BYTES],
    );

    /// `ML-KEM.Decaps_internal(dk, c)` (FIPS 203 Alg. 18); a bad ciphertext yields the
    /// implicit-rejection key, never an error.
    fn decapsulate(
        dk: &Self::DecapsulationKey,
        ct: &[u8; ML_KEM_768_CIPHERTEXT_BYTES],
    ) -> [u8; ML_KEM_768_SHARED_SECRET_BYTES];
}
