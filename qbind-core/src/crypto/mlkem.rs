//! ML-KEM-768 (FIPS 203) keys, encapsulation and decapsulation on the default backend.
//!
//! Key generation is `ML-KEM.KeyGen_internal(d, z)` (FIPS 203 Alg. 16) and encapsulation is
//! `ML-KEM.Encaps_internal(ek, m)` (Alg. 17): both deterministic, so the caller supplies fresh
//! OS randomness for `d`, `z` and `m` (and the simulator supplies seeded bytes). Decapsulation
//! (Alg. 18) never fails: a forged ciphertext yields the implicit-rejection key. Keys decoded
//! from bytes pass the input checks of §7.2 (encapsulation key: modulus check) and §7.3
//! (decapsulation key: hash check) first.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::backend::{DefaultBackend, MlKem768Backend};
use super::{CryptoError, fmt_hex_prefix};

/// Length of an ML-KEM-768 encapsulation key, in bytes.
pub const ML_KEM_768_ENCAPSULATION_KEY_BYTES: usize = 1184;
/// Length of an ML-KEM-768 decapsulation key, in bytes.
pub const ML_KEM_768_DECAPSULATION_KEY_BYTES: usize = 2400;
/// Length of an ML-KEM-768 ciphertext, in bytes.
pub const ML_KEM_768_CIPHERTEXT_BYTES: usize = 1088;
/// Length of an ML-KEM shared secret, in bytes.
pub const ML_KEM_768_SHARED_SECRET_BYTES: usize = 32;
/// Length of each key-generation seed (`d` and `z`) and of the encapsulation randomness `m`.
pub const ML_KEM_768_SEED_BYTES: usize = 32;

type EkInner = <DefaultBackend as MlKem768Backend>::EncapsulationKey;
type DkInner = <DefaultBackend as MlKem768Backend>::DecapsulationKey;

/// An ML-KEM-768 encapsulation (public) key that passed the FIPS 203 §7.2 check, decoded once.
#[derive(Clone)]
pub struct KemEncapsulationKey {
    bytes: Box<[u8; ML_KEM_768_ENCAPSULATION_KEY_BYTES]>,
    key: EkInner,
}

impl KemEncapsulationKey {
    /// Reads an encapsulation key and runs the §7.2 type and modulus checks.
    ///
    /// # Errors
    /// [`CryptoError::InvalidLength`] if `b` is not 1184 bytes; [`CryptoError::InvalidKey`] if a
    /// coefficient is not reduced modulo q.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; ML_KEM_768_ENCAPSULATION_KEY_BYTES] =
            b.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "ML-KEM-768 encapsulation key",
                expected: ML_KEM_768_ENCAPSULATION_KEY_BYTES,
                actual: b.len(),
            })?;
        let key = DefaultBackend::encapsulation_key_from_bytes(&arr)?;
        Ok(Self {
            bytes: Box::new(arr),
            key,
        })
    }

    /// The 1184-byte encoding.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    fn from_inner(key: EkInner) -> Self {
        Self {
            bytes: DefaultBackend::encapsulation_key_bytes(&key),
            key,
        }
    }
}

impl PartialEq for KemEncapsulationKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for KemEncapsulationKey {}

impl fmt::Debug for KemEncapsulationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KemEncapsulationKey(")?;
        fmt_hex_prefix(f, self.as_bytes())?;
        f.write_str(")")
    }
}

/// An ML-KEM-768 decapsulation (secret) key that passed the FIPS 203 §7.3 check.
///
/// Wiped when dropped; `Debug` prints nothing secret.
#[derive(Clone)]
pub struct KemDecapsulationKey {
    bytes: Box<Zeroizing<[u8; ML_KEM_768_DECAPSULATION_KEY_BYTES]>>,
    key: DkInner,
}

impl KemDecapsulationKey {
    /// Reads a decapsulation key and runs the §7.3 type and hash checks (plus the §7.2
    /// modulus check on the embedded encapsulation key).
    ///
    /// # Errors
    /// [`CryptoError::InvalidLength`] if `b` is not 2400 bytes; [`CryptoError::InvalidKey`] if
    /// a check fails.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        if b.len() != ML_KEM_768_DECAPSULATION_KEY_BYTES {
            return Err(CryptoError::InvalidLength {
                what: "ML-KEM-768 decapsulation key",
                expected: ML_KEM_768_DECAPSULATION_KEY_BYTES,
                actual: b.len(),
            });
        }
        let mut bytes = Box::new(Zeroizing::new([0u8; ML_KEM_768_DECAPSULATION_KEY_BYTES]));
        bytes.copy_from_slice(b);
        let key = DefaultBackend::decapsulation_key_from_bytes(&bytes)?;
        Ok(Self { bytes, key })
    }

    /// The 2400-byte encoding. Secret: do not log it.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    fn from_inner(key: DkInner) -> Self {
        Self {
            bytes: DefaultBackend::decapsulation_key_bytes(&key),
            key,
        }
    }
}

impl fmt::Debug for KemDecapsulationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KemDecapsulationKey(..)")
    }
}

/// An ML-KEM-768 ciphertext. Every 1088-byte string is a valid input to decapsulation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KemCiphertext(Box<[u8; ML_KEM_768_CIPHERTEXT_BYTES]>);

impl KemCiphertext {
    /// Reads a ciphertext (FIPS 203 §7.3 ciphertext type check: length only).
    ///
    /// # Errors
    /// [`CryptoError::InvalidLength`] if `b` is not 1088 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; ML_KEM_768_CIPHERTEXT_BYTES] =
            b.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "ML-KEM-768 ciphertext",
                expected: ML_KEM_768_CIPHERTEXT_BYTES,
                actual: b.len(),
            })?;
        Ok(Self(Box::new(arr)))
    }

    /// The 1088-byte encoding.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl fmt::Debug for KemCiphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KemCiphertext(")?;
        fmt_hex_prefix(f, self.as_bytes())?;
        f.write_str(")")
    }
}

/// A 32-byte ML-KEM shared secret, wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KemSharedSecret([u8; ML_KEM_768_SHARED_SECRET_BYTES]);

impl KemSharedSecret {
    /// The secret bytes. Do not log them.
    pub fn as_bytes(&self) -> &[u8; ML_KEM_768_SHARED_SECRET_BYTES] {
        &self.0
    }

    /// Wraps 32 secret bytes (for tests and for keys derived elsewhere).
    pub fn from_bytes(bytes: [u8; ML_KEM_768_SHARED_SECRET_BYTES]) -> Self {
        Self(bytes)
    }
}

impl PartialEq for KemSharedSecret {
    fn eq(&self, other: &Self) -> bool {
        // Branch-free over all 32 bytes; cheap, though callers should not rely on it.
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl Eq for KemSharedSecret {}

impl fmt::Debug for KemSharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KemSharedSecret(..)")
    }
}

/// An ML-KEM-768 key pair from `KeyGen_internal(d, z)`.
#[derive(Clone)]
pub struct KemKeyPair {
    encapsulation_key: KemEncapsulationKey,
    decapsulation_key: KemDecapsulationKey,
}

impl KemKeyPair {
    /// `ML-KEM.KeyGen_internal(d, z)` (FIPS 203 Alg. 16). Pass fresh OS randomness for both.
    #[must_use]
    pub fn from_seed(d: &[u8; ML_KEM_768_SEED_BYTES], z: &[u8; ML_KEM_768_SEED_BYTES]) -> Self {
        let (dk, ek) = DefaultBackend::kem_keygen(d, z);
        Self {
            encapsulation_key: KemEncapsulationKey::from_inner(ek),
            decapsulation_key: KemDecapsulationKey::from_inner(dk),
        }
    }

    /// The encapsulation (public) key.
    pub fn encapsulation_key(&self) -> &KemEncapsulationKey {
        &self.encapsulation_key
    }

    /// The decapsulation (secret) key.
    pub fn decapsulation_key(&self) -> &KemDecapsulationKey {
        &self.decapsulation_key
    }
}

impl fmt::Debug for KemKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemKeyPair")
            .field("encapsulation_key", &self.encapsulation_key)
            .finish_non_exhaustive()
    }
}

/// `ML-KEM.Encaps_internal(ek, m)` (FIPS 203 Alg. 17). Deterministic: pass 32 bytes of fresh
/// OS randomness as `m` (never reuse it).
#[must_use]
pub fn kem_encapsulate(
    ek: &KemEncapsulationKey,
    m: &[u8; ML_KEM_768_SEED_BYTES],
) -> (KemCiphertext, KemSharedSecret) {
    let (ct, ss) = DefaultBackend::encapsulate(&ek.key, m);
    (KemCiphertext(ct), KemSharedSecret(ss))
}

/// `ML-KEM.Decaps(dk, c)` (FIPS 203 Alg. 18). A forged ciphertext gives the implicit-rejection
/// key, which does not match the sender's, so the handshake fails later instead of here.
#[must_use]
pub fn kem_decapsulate(dk: &KemDecapsulationKey, ct: &KemCiphertext) -> KemSharedSecret {
    KemSharedSecret(DefaultBackend::decapsulate(&dk.key, &ct.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(n: u8) -> ([u8; 32], [u8; 32]) {
        (
            core::array::from_fn(|i| (i as u8) ^ n),
            core::array::from_fn(|i| (i as u8).wrapping_mul(3) ^ n ^ 0x5a),
        )
    }

    #[test]
    fn round_trip_and_determinism() {
        let (d, z) = seeds(1);
        let kp = KemKeyPair::from_seed(&d, &z);
        let m = [9u8; 32];
        let (ct, ss) = kem_encapsulate(kp.encapsulation_key(), &m);
        let (ct2, ss2) = kem_encapsulate(kp.encapsulation_key(), &m);
        assert_eq!(ct, ct2);
        assert_eq!(ss, ss2);
        assert_eq!(kem_decapsulate(kp.decapsulation_key(), &ct), ss);
        // The decapsulation key ends with z (FIPS 203 Alg. 16 line 3).
        assert_eq!(&kp.decapsulation_key().as_bytes()[2368..], &z);
        let ek = KemEncapsulationKey::from_bytes(kp.encapsulation_key().as_bytes()).unwrap();
        assert_eq!(&ek, kp.encapsulation_key());
        let dk = KemDecapsulationKey::from_bytes(kp.decapsulation_key().as_bytes()).unwrap();
        let ct_again = KemCiphertext::from_bytes(ct.as_bytes()).unwrap();
        assert_eq!(kem_decapsulate(&dk, &ct_again), ss);
        assert_eq!(kem_encapsulate(&ek, &m).1, ss);
    }

    #[test]
    fn modified_ciphertext_gives_a_different_key() {
        let (d, z) = seeds(2);
        let kp = KemKeyPair::from_seed(&d, &z);
        let (ct, ss) = kem_encapsulate(kp.encapsulation_key(), &[1u8; 32]);
        let mut bad = ct.as_bytes().to_vec();
        bad[100] ^= 0x10;
        let bad = KemCiphertext::from_bytes(&bad).unwrap();
        let rejected = kem_decapsulate(kp.decapsulation_key(), &bad);
        assert_ne!(rejected, ss);
        assert_eq!(rejected, kem_decapsulate(kp.decapsulation_key(), &bad));
    }

    #[test]
    fn wrong_lengths_are_invalid_length() {
        assert!(matches!(
            KemEncapsulationKey::from_bytes(&[0u8; 1183]),
            Err(CryptoError::InvalidLength {
                expected: 1184,
                actual: 1183,
                ..
            })
        ));
        assert!(matches!(
            KemDecapsulationKey::from_bytes(&[0u8; 2401]),
            Err(CryptoError::InvalidLength {
                expected: 2400,
                actual: 2401,
                ..
            })
        ));
        assert!(matches!(
            KemCiphertext::from_bytes(&[]),
            Err(CryptoError::InvalidLength {
                expected: 1088,
                actual: 0,
                ..
            })
        ));
    }

    #[test]
    fn input_checks_refuse_bad_keys() {
        let (d, z) = seeds(3);
        let kp = KemKeyPair::from_seed(&d, &z);
        // Coefficient 0 := 0xFFF = 4095 >= q: fails the modulus check.
        let mut ek = kp.encapsulation_key().as_bytes().to_vec();
        ek[0] = 0xff;
        ek[1] |= 0x0f;
        assert!(matches!(
            KemEncapsulationKey::from_bytes(&ek),
            Err(CryptoError::InvalidKey { .. })
        ));
        // A flipped bit in H(ek) fails the hash check.
        let mut dk = kp.decapsulation_key().as_bytes().to_vec();
        dk[2336] ^= 1;
        assert!(matches!(
            KemDecapsulationKey::from_bytes(&dk),
            Err(CryptoError::InvalidKey { .. })
        ));
        // A flipped bit in the embedded ek also fails the hash check.
        let mut dk = kp.decapsulation_key().as_bytes().to_vec();
        dk[1200] ^= 1;
        assert!(KemDecapsulationKey::from_bytes(&dk).is_err());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let (d, z) = seeds(4);
        let kp = KemKeyPair::from_seed(&d, &z);
        let (_, ss) = kem_encapsulate(kp.encapsulation_key(), &[2u8; 32]);
        let shown = format!("{kp:?} {:?} {ss:?}", kp.decapsulation_key());
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert!(!shown.contains(&hex(&z)), "{shown}");
        assert!(
            !shown.contains(&hex(&kp.decapsulation_key().as_bytes()[..8])),
            "{shown}"
        );
        assert!(!shown.contains(&hex(&ss.as_bytes()[..8])), "{shown}");
        assert!(shown.contains("KemEncapsulationKey("), "{shown}");
    }
}
