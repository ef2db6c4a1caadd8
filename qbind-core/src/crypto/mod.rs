//! Post-quantum primitives behind one small backend seam.
//!
//! QBIND signs with ML-DSA-44 (FIPS 204) and agrees on transport keys with ML-KEM-768
//! (FIPS 203). This module decides the byte-level semantics every other module relies on:
//!
//! - [`KeyPair::sign`] is the *pure* FIPS 204 `ML-DSA.Sign` (Alg. 2) with an empty context
//!   string and the deterministic variant (`rnd = 0^32`), so the same seed and message give the
//!   same signature on every node, in the simulator, and with either backend. [`verify`] is the
//!   matching `ML-DSA.Verify` (Alg. 3). No hashing or prefixing happens here: callers already
//!   sign `domain_tag || chain_id || canonical bytes`.
//! - [`KemKeyPair::from_seed`] is `ML-KEM.KeyGen_internal(d, z)` (FIPS 203 Alg. 16),
//!   [`kem_encapsulate`] is `ML-KEM.Encaps_internal` (Alg. 17) with caller-supplied randomness and
//!   [`kem_decapsulate`] is `ML-KEM.Decaps` (Alg. 18, implicit rejection). Keys read from bytes
//!   pass the FIPS 203 §7.2 / §7.3 input checks first.
//!
//! Two backends implement the seam ([`backend::MlDsa44Backend`], [`backend::MlKem768Backend`]):
//! `libcrux-ml-dsa` / `libcrux-ml-kem` (cargo feature `libcrux`, the default: formally verified
//! arithmetic, AVX2 selected at run time) and RustCrypto `ml-dsa` / `ml-kem` (feature
//! `rustcrypto`, portable Rust). The public types use [`backend::DefaultBackend`]: libcrux when
//! enabled, otherwise RustCrypto. Both give byte-identical keys, signatures, ciphertexts and
//! shared secrets; `tests/crypto_cross_check.rs` proves it and `tests/acvp.rs` runs the NIST
//! ACVP vectors against each enabled backend. Feature `acvp` additionally exposes the FIPS 204
//! internal and external-μ interfaces (`backend::MlDsa44Internal`,
//! `backend::MlDsa44ExternalMu`) that only conformance tests should call.

#[cfg(not(any(feature = "libcrux", feature = "rustcrypto")))]
compile_error!("qbind-core needs a crypto backend: enable feature `libcrux` or `rustcrypto`");

pub mod backend;
#[cfg(feature = "libcrux")]
mod libcrux_backend;
mod mldsa;
mod mlkem;
#[cfg(feature = "rustcrypto")]
mod rustcrypto_backend;

pub use mldsa::{
    KeyPair, ML_DSA_44_PUBLIC_KEY_BYTES, ML_DSA_44_SEED_BYTES, ML_DSA_44_SIGNATURE_BYTES,
    ML_DSA_44_SIGNING_KEY_BYTES, ML_DSA_MAX_CONTEXT_BYTES, PreparedPublicKey, PublicKey, Signature,
    verify,
};
pub use mlkem::{
    KemCiphertext, KemDecapsulationKey, KemEncapsulationKey, KemKeyPair, KemSharedSecret,
    ML_KEM_768_CIPHERTEXT_BYTES, ML_KEM_768_DECAPSULATION_KEY_BYTES,
    ML_KEM_768_ENCAPSULATION_KEY_BYTES, ML_KEM_768_SEED_BYTES, ML_KEM_768_SHARED_SECRET_BYTES,
    kem_decapsulate, kem_encapsulate,
};

/// Why a cryptographic operation or a key/signature decoding was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// A byte string had the wrong length (for a context string, `expected` is the maximum).
    #[error("invalid {what} length: expected {expected} bytes, got {actual}")]
    InvalidLength {
        /// Which object was being decoded.
        what: &'static str,
        /// The length the encoding requires.
        expected: usize,
        /// The length that was supplied.
        actual: usize,
    },
    /// The signature does not verify under the public key and message.
    #[error("invalid signature")]
    InvalidSignature,
    /// The public key cannot be used for verification.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// A key failed its FIPS 203 / FIPS 204 input check.
    #[error("invalid {what}")]
    InvalidKey {
        /// Which key failed the check.
        what: &'static str,
    },
    /// Signing did not produce a signature (FIPS 204 rejection-sampling bound exhausted).
    #[error("signing failed")]
    SigningFailed,
}

/// Writes at most the first 8 bytes of `bytes` as lowercase hex followed by an ellipsis.
///
/// Public values are long (1–2 KiB); a prefix is enough to tell keys apart in logs.
fn fmt_hex_prefix(f: &mut core::fmt::Formatter<'_>, bytes: &[u8]) -> core::fmt::Result {
    for b in bytes.iter().take(8) {
        write!(f, "{b:02x}")?;
    }
    if bytes.len() > 8 {
        f.write_str("…")?;
    }
    Ok(())
}
