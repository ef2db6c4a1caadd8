//! The RustCrypto backend: `ml-dsa` (FIPS 204) and `ml-kem` (FIPS 203), portable Rust.
//!
//! RustCrypto decodes keys into NTT-domain polynomials; doing that once per key instead of once
//! per call is what makes it competitive, so the signing key, the verifying key and both KEM keys
//! are cached in decoded form. Secret types wipe themselves (the crates' `zeroize` feature).
//!
//! The expanded-key (`skEncode` / 2400-byte `dk`) codecs used here are deprecated upstream in
//! favour of seeds; qbind keeps them for ACVP vectors and stored keys, behind input checks.

use ml_dsa::{
    EncodedSignature, EncodedVerifyingKey, ExpandedSigningKey, ExpandedSigningKeyBytes, MlDsa44,
    VerifyingKey,
};
#[allow(
    deprecated,
    reason = "expanded decapsulation keys are the FIPS 203 encoding"
)]
use ml_kem::ExpandedKeyEncoding;
use ml_kem::{Decapsulate, DecapsulationKey, EncapsulationKey, KeyExport, MlKem768};
use zeroize::Zeroizing;

use super::CryptoError;
use super::backend::{MlDsa44Backend, MlKem768Backend, sealed::Sealed};
use super::mldsa::{
    ML_DSA_44_SEED_BYTES, ML_DSA_44_SIGNING_KEY_BYTES, PublicKey, Signature, check_context,
    check_expanded_signing_key,
};
use super::mlkem::{
    ML_KEM_768_CIPHERTEXT_BYTES, ML_KEM_768_DECAPSULATION_KEY_BYTES,
    ML_KEM_768_ENCAPSULATION_KEY_BYTES, ML_KEM_768_SEED_BYTES, ML_KEM_768_SHARED_SECRET_BYTES,
};

/// The RustCrypto implementation of the backend traits (feature `rustcrypto`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RustCrypto;

impl Sealed for RustCrypto {}

/// A decoded RustCrypto ML-DSA-44 signing key (NTT-domain `s1`, `s2`, `t0`, `Â`), wiped on drop.
#[derive(Clone)]
pub struct RustCryptoSigningKey(Box<ExpandedSigningKey<MlDsa44>>);

/// A decoded RustCrypto ML-DSA-44 verifying key (cached `Â`, `t1·2^d` and `tr`).
#[derive(Clone)]
pub struct RustCryptoVerifyingKey(Box<VerifyingKey<MlDsa44>>);

fn encode_signature(sig: &ml_dsa::Signature<MlDsa44>) -> Signature {
    let encoded: EncodedSignature<MlDsa44> = sig.encode();
    Signature::from_array(Box::new(encoded.into()))
}

/// `sigDecode` (FIPS 204 Alg. 27); a malformed hint is a verification failure.
fn decode_signature(signature: &Signature) -> Result<ml_dsa::Signature<MlDsa44>, CryptoError> {
    let encoded: &EncodedSignature<MlDsa44> = signature.as_array().into();
    ml_dsa::Signature::decode(encoded).ok_or(CryptoError::InvalidSignature)
}

fn verdict(ok: bool) -> Result<(), CryptoError> {
    if ok {
        Ok(())
    } else {
        Err(CryptoError::InvalidSignature)
    }
}

impl MlDsa44Backend for RustCrypto {
    const NAME: &'static str = "rustcrypto";
    type SigningKey = RustCryptoSigningKey;
    type VerifyingKey = RustCryptoVerifyingKey;

    fn dsa_keygen(seed: &[u8; ML_DSA_44_SEED_BYTES]) -> (Self::SigningKey, PublicKey) {
        let sk = ExpandedSigningKey::<MlDsa44>::from_seed(&(*seed).into());
        let encoded: EncodedVerifyingKey<MlDsa44> = sk.verifying_key().encode();
        let public_key = PublicKey::from_array(Box::new(encoded.into()));
        (RustCryptoSigningKey(Box::new(sk)), public_key)
    }

    fn signing_key_from_expanded(
        sk: &[u8; ML_DSA_44_SIGNING_KEY_BYTES],
    ) -> Result<Self::SigningKey, CryptoError> {
        check_expanded_signing_key(sk)?;
        let encoded: &ExpandedSigningKeyBytes<MlDsa44> = sk.into();
        #[allow(
            deprecated,
            reason = "expanded keys are needed for ACVP vectors and stored keys"
        )]
        let key = ExpandedSigningKey::<MlDsa44>::from_expanded(encoded);
        Ok(RustCryptoSigningKey(Box::new(key)))
    }

    fn expanded_signing_key_bytes(
        sk: &Self::SigningKey,
    ) -> Box<Zeroizing<[u8; ML_DSA_44_SIGNING_KEY_BYTES]>> {
        #[allow(
            deprecated,
            reason = "expanded keys are needed for ACVP vectors and stored keys"
        )]
        let mut encoded = sk.0.to_expanded();
        let out = Box::new(Zeroizing::new(encoded.into()));
        zeroize::Zeroize::zeroize(encoded.as_mut_slice());
        out
    }

    fn sign(
        sk: &Self::SigningKey,
        message: &[u8],
        context: &[u8],
    ) -> Result<Signature, CryptoError> {
        check_context(context)?;
        let sig =
            sk.0.sign_deterministic(message, context)
                .map_err(|_| CryptoError::SigningFailed)?;
        Ok(encode_signature(&sig))
    }

    fn prepare(pk: &PublicKey) -> Result<Self::VerifyingKey, CryptoError> {
        let encoded: &EncodedVerifyingKey<MlDsa44> = pk.as_array().into();
        Ok(RustCryptoVerifyingKey(Box::new(VerifyingKey::decode(
            encoded,
        ))))
    }

    fn verify(
        vk: &Self::VerifyingKey,
        message: &[u8],
        context: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        let sig = decode_signature(signature)?;
        verdict(vk.0.verify_with_context(message, context, &sig))
    }
}

// ml-dsa's `sign_internal` / `sign_mu_deterministic` panic (inside the crate) if its
// 16,384-iteration rejection-sampling bound is exhausted; acceptable for these ACVP-only paths.
#[cfg(feature = "acvp")]
impl super::backend::MlDsa44Internal for RustCrypto {
    fn sign_internal(
        sk: &Self::SigningKey,
        message_prime: &[u8],
    ) -> Result<Signature, CryptoError> {
        let sig = sk.0.sign_internal(&[message_prime], &Default::default());
        Ok(encode_signature(&sig))
    }

    fn verify_internal(
        vk: &Self::VerifyingKey,
        message_prime: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        let sig = decode_signature(signature)?;
        verdict(vk.0.verify_internal(message_prime, &sig))
    }
}

#[cfg(feature = "acvp")]
impl super::backend::MlDsa44ExternalMu for RustCrypto {
    fn sign_mu(sk: &Self::SigningKey, mu: &[u8; 64]) -> Result<Signature, CryptoError> {
        let sig = sk.0.sign_mu_deterministic(mu.into());
        Ok(encode_signature(&sig))
    }

    fn verify_mu(
        vk: &Self::VerifyingKey,
        mu: &[u8; 64],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        let sig = decode_signature(signature)?;
        verdict(vk.0.verify_mu(mu.into(), &sig))
    }
}

/// A decoded RustCrypto ML-KEM-768 decapsulation key, wiped on drop.
#[derive(Clone)]
pub struct RustCryptoDecapsulationKey(Box<DecapsulationKey<MlKem768>>);

/// A decoded RustCrypto ML-KEM-768 encapsulation key (NTT-domain `t̂` and `H(ek)` cached).
#[derive(Clone)]
pub struct RustCryptoEncapsulationKey(Box<EncapsulationKey<MlKem768>>);

impl MlKem768Backend for RustCrypto {
    const NAME: &'static str = "rustcrypto";
    type EncapsulationKey = RustCryptoEncapsulationKey;
    type DecapsulationKey = RustCryptoDecapsulationKey;

    fn kem_keygen(
        d: &[u8; ML_KEM_768_SEED_BYTES],
        z: &[u8; ML_KEM_768_SEED_BYTES],
    ) -> (Self::DecapsulationKey, Self::EncapsulationKey) {
        // ml-kem's 64-byte seed is `d || z`, the two inputs of KeyGen_internal.
        let mut seed = Zeroizing::new([0u8; 2 * ML_KEM_768_SEED_BYTES]);
        seed[..ML_KEM_768_SEED_BYTES].copy_from_slice(d);
        seed[ML_KEM_768_SEED_BYTES..].copy_from_slice(z);
        let dk = DecapsulationKey::<MlKem768>::from_seed((*seed).into());
        let ek = dk.encapsulation_key().clone();
        (
            RustCryptoDecapsulationKey(Box::new(dk)),
            RustCryptoEncapsulationKey(Box::new(ek)),
        )
    }

    fn encapsulation_key_from_bytes(
        ek: &[u8; ML_KEM_768_ENCAPSULATION_KEY_BYTES],
    ) -> Result<Self::EncapsulationKey, CryptoError> {
        EncapsulationKey::<MlKem768>::new(ek.into())
            .map(|k| RustCryptoEncapsulationKey(Box::new(k)))
            .map_err(|_| CryptoError::InvalidKey {
                what: "ML-KEM-768 encapsulation key",
            })
    }

    fn decapsulation_key_from_bytes(
        dk: &[u8; ML_KEM_768_DECAPSULATION_KEY_BYTES],
    ) -> Result<Self::DecapsulationKey, CryptoError> {
        // `from_expanded` runs the §7.3 hash check and the §7.2 modulus check on the
        // embedded encapsulation key.
        #[allow(
            deprecated,
            reason = "expanded decapsulation keys are the FIPS 203 encoding"
        )]
        let key = DecapsulationKey::<MlKem768>::from_expanded(dk.into());
        key.map(|k| RustCryptoDecapsulationKey(Box::new(k)))
            .map_err(|_| CryptoError::InvalidKey {
                what: "ML-KEM-768 decapsulation key",
            })
    }

    fn encapsulation_key_bytes(
        ek: &Self::EncapsulationKey,
    ) -> Box<[u8; ML_KEM_768_ENCAPSULATION_KEY_BYTES]> {
        Box::new(ek.0.to_bytes().into())
    }

    fn decapsulation_key_bytes(
        dk: &Self::DecapsulationKey,
    ) -> Box<Zeroizing<[u8; ML_KEM_768_DECAPSULATION_KEY_BYTES]>> {
        #[allow(
            deprecated,
            reason = "expanded decapsulation keys are the FIPS 203 encoding"
        )]
        let mut encoded = dk.0.to_expanded_bytes();
        let out = Box::new(Zeroizing::new(encoded.into()));
        zeroize::Zeroize::zeroize(encoded.as_mut_slice());
        out
    }

    fn encapsulate(
        ek: &Self::EncapsulationKey,
        m: &[u8; 32],
    ) -> (
        Box<[u8; ML_KEM_768_CIPHERTEXT_BYTES]>,
        [u8; ML_KEM_768_SHARED_SECRET_BYTES],
    ) {
        let (ct, ss) = ek.0.encapsulate_deterministic(m.into());
        (Box::new(ct.into()), ss.into())
    }

    fn decapsulate(
        dk: &Self::DecapsulationKey,
        ct: &[u8; ML_KEM_768_CIPHERTEXT_BYTES],
    ) -> [u8; ML_KEM_768_SHARED_SECRET_BYTES] {
        dk.0.decapsulate(ct.into()).into()
    }
}
