//! The libcrux backend: `libcrux-ml-dsa` (FIPS 204) and `libcrux-ml-kem` (FIPS 203).
//!
//! libcrux works on packed byte encodings throughout (its AVX2 code is chosen at run time), so
//! there is nothing to cache beyond the bytes: the signing key is the 2560-byte `skEncode`
//! string and the verification key the 1312-byte `pkEncode` string. libcrux does not wipe its
//! key types, so the wrappers here do.

use libcrux_ml_dsa::ml_dsa_44::{
    self, MLDSA44Signature, MLDSA44SigningKey, MLDSA44VerificationKey,
};
use libcrux_ml_kem::mlkem768::{self, MlKem768Ciphertext, MlKem768PrivateKey, MlKem768PublicKey};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

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

/// The libcrux implementation of the backend traits (feature `libcrux`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Libcrux;

impl Sealed for Libcrux {}

/// A libcrux ML-DSA-44 signing key (`skEncode` bytes), wiped on drop.
#[derive(Clone)]
pub struct LibcruxSigningKey(Box<MLDSA44SigningKey>);

impl Drop for LibcruxSigningKey {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

impl ZeroizeOnDrop for LibcruxSigningKey {}

/// A libcrux ML-DSA-44 verification key (`pkEncode` bytes).
#[derive(Clone)]
pub struct LibcruxVerifyingKey(Box<MLDSA44VerificationKey>);

impl MlDsa44Backend for Libcrux {
    const NAME: &'static str = "libcrux";
    type SigningKey = LibcruxSigningKey;
    type VerifyingKey = LibcruxVerifyingKey;

    fn dsa_keygen(seed: &[u8; ML_DSA_44_SEED_BYTES]) -> (Self::SigningKey, PublicKey) {
        let mut pair = ml_dsa_44::generate_key_pair(*seed);
        let signing_key = LibcruxSigningKey(Box::new(pair.signing_key.clone()));
        pair.signing_key.as_mut_slice().zeroize();
        let public_key = PublicKey::from_array(Box::new(*pair.verification_key.as_ref()));
        (signing_key, public_key)
    }

    fn signing_key_from_expanded(
        sk: &[u8; ML_DSA_44_SIGNING_KEY_BYTES],
    ) -> Result<Self::SigningKey, CryptoError> {
        check_expanded_signing_key(sk)?;
        Ok(LibcruxSigningKey(Box::new(MLDSA44SigningKey::new(*sk))))
    }

    fn expanded_signing_key_bytes(
        sk: &Self::SigningKey,
    ) -> Box<Zeroizing<[u8; ML_DSA_44_SIGNING_KEY_BYTES]>> {
        Box::new(Zeroizing::new(*MLDSA44SigningKey::as_ref(&sk.0)))
    }

    fn sign(
        sk: &Self::SigningKey,
        message: &[u8],
        context: &[u8],
    ) -> Result<Signature, CryptoError> {
        check_context(context)?;
        let sig = ml_dsa_44::sign(&sk.0, message, context, [0u8; 32])
            .map_err(|_| CryptoError::SigningFailed)?;
        Ok(Signature::from_array(Box::new(*sig.as_ref())))
    }

    fn prepare(pk: &PublicKey) -> Result<Self::VerifyingKey, CryptoError> {
        Ok(LibcruxVerifyingKey(Box::new(MLDSA44VerificationKey::new(
            *pk.as_array(),
        ))))
    }

    fn verify(
        vk: &Self::VerifyingKey,
        message: &[u8],
        context: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        let sig = MLDSA44Signature::new(*signature.as_array());
        ml_dsa_44::verify(&vk.0, message, context, &sig).map_err(|_| CryptoError::InvalidSignature)
    }
}

/// Needs libcrux-ml-dsa's `acvp` feature, which qbind-core's `acvp` feature turns on.
#[cfg(feature = "acvp")]
impl super::backend::MlDsa44Internal for Libcrux {
    fn sign_internal(
        sk: &Self::SigningKey,
        message_prime: &[u8],
    ) -> Result<Signature, CryptoError> {
        let sig = ml_dsa_44::sign_internal(&sk.0, message_prime, [0u8; 32])
            .map_err(|_| CryptoError::SigningFailed)?;
        Ok(Signature::from_array(Box::new(*sig.as_ref())))
    }

    fn verify_internal(
        vk: &Self::VerifyingKey,
        message_prime: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        let sig = MLDSA44Signature::new(*signature.as_array());
        ml_dsa_44::verify_internal(&vk.0, message_prime, &sig)
            .map_err(|_| CryptoError::InvalidSignature)
    }
}

/// A libcrux ML-KEM-768 decapsulation key (2400 bytes), wiped on drop.
#[derive(Clone)]
pub struct LibcruxDecapsulationKey(Box<MlKem768PrivateKey>);

impl Drop for LibcruxDecapsulationKey {
    fn drop(&mut self) {
        self.0[0..ML_KEM_768_DECAPSULATION_KEY_BYTES].zeroize();
    }
}

impl ZeroizeOnDrop for LibcruxDecapsulationKey {}

/// A libcrux ML-KEM-768 encapsulation key (1184 bytes) that passed the modulus check.
#[derive(Clone)]
pub struct LibcruxEncapsulationKey(Box<MlKem768PublicKey>);

/// Offset of the embedded encapsulation key in a decapsulation key (`dk_PKE` is 384·k bytes).
const EK_OFFSET: usize = 384 * 3;

impl MlKem768Backend for Libcrux {
    const NAME: &'static str = "libcrux";
    type EncapsulationKey = LibcruxEncapsulationKey;
    type DecapsulationKey = LibcruxDecapsulationKey;

    fn kem_keygen(
        d: &[u8; ML_KEM_768_SEED_BYTES],
        z: &[u8; ML_KEM_768_SEED_BYTES],
    ) -> (Self::DecapsulationKey, Self::EncapsulationKey) {
        // libcrux takes `d || z` as one 64-byte input, exactly KeyGen_internal's two seeds.
        let mut randomness = Zeroizing::new([0u8; 2 * ML_KEM_768_SEED_BYTES]);
        randomness[..ML_KEM_768_SEED_BYTES].copy_from_slice(d);
        randomness[ML_KEM_768_SEED_BYTES..].copy_from_slice(z);
        let pair = mlkem768::generate_key_pair(*randomness);
        let (mut sk, pk) = pair.into_parts();
        let dk = LibcruxDecapsulationKey(Box::new(sk.clone()));
        sk[0..ML_KEM_768_DECAPSULATION_KEY_BYTES].zeroize();
        (dk, LibcruxEncapsulationKey(Box::new(pk)))
    }

    fn encapsulation_key_from_bytes(
        ek: &[u8; ML_KEM_768_ENCAPSULATION_KEY_BYTES],
    ) -> Result<Self::EncapsulationKey, CryptoError> {
        let pk = MlKem768PublicKey::from(ek);
        if !mlkem768::validate_public_key(&pk) {
            return Err(CryptoError::InvalidKey {
                what: "ML-KEM-768 encapsulation key",
            });
        }
        Ok(LibcruxEncapsulationKey(Box::new(pk)))
    }

    fn decapsulation_key_from_bytes(
        dk: &[u8; ML_KEM_768_DECAPSULATION_KEY_BYTES],
    ) -> Result<Self::DecapsulationKey, CryptoError> {
        let sk = LibcruxDecapsulationKey(Box::new(MlKem768PrivateKey::from(dk)));
        let mut embedded_ek = [0u8; ML_KEM_768_ENCAPSULATION_KEY_BYTES];
        embedded_ek.copy_from_slice(&dk[EK_OFFSET..EK_OFFSET + ML_KEM_768_ENCAPSULATION_KEY_BYTES]);
        let hash_ok = mlkem768::portable::validate_private_key_only(&sk.0);
        let modulus_ok = mlkem768::validate_public_key(&MlKem768PublicKey::from(embedded_ek));
        if !(hash_ok && modulus_ok) {
            return Err(CryptoError::InvalidKey {
                what: "ML-KEM-768 decapsulation key",
            });
        }
        Ok(sk)
    }

    fn encapsulation_key_bytes(
        ek: &Self::EncapsulationKey,
    ) -> Box<[u8; ML_KEM_768_ENCAPSULATION_KEY_BYTES]> {
        Box::new(*ek.0.as_slice())
    }

    fn decapsulation_key_bytes(
        dk: &Self::DecapsulationKey,
    ) -> Box<Zeroizing<[u8; ML_KEM_768_DECAPSULATION_KEY_BYTES]>> {
        Box::new(Zeroizing::new(*dk.0.as_slice()))
    }

    fn encapsulate(
        ek: &Self::EncapsulationKey,
        m: &[u8; 32],
    ) -> (
        Box<[u8; ML_KEM_768_CIPHERTEXT_BYTES]>,
        [u8; ML_KEM_768_SHARED_SECRET_BYTES],
    ) {
        let (ct, ss) = mlkem768::encapsulate(&ek.0, *m);
        (Box::new(*ct.as_slice()), ss)
    }

    fn decapsulate(
        dk: &Self::DecapsulationKey,
        ct: &[u8; ML_KEM_768_CIPHERTEXT_BYTES],
    ) -> [u8; ML_KEM_768_SHARED_SECRET_BYTES] {
        mlkem768::decapsulate(&dk.0, &MlKem768Ciphertext::from(ct))
    }
}
