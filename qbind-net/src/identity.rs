//! Static P2P identities: an ML-KEM-768 key pair per node, pre-distributed as
//! its public encapsulation key (the validator set's P2P keys, spec §5.1).
//! Both sides authenticate with these KEM keys; see `docs/kemtls.md` for why
//! no signature is used.

use core::fmt;

use qbind_core::crypto::{
    CryptoError, KemDecapsulationKey, KemEncapsulationKey, KemKeyPair, ML_KEM_768_SEED_BYTES,
};
use rand::RngCore;
use sha3::{Digest, Sha3_256};
use zeroize::Zeroizing;

/// SHA3-256 fingerprint of a static encapsulation key; how an initiator names
/// itself (encrypted) inside the handshake.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyFingerprint(pub [u8; 32]);

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A node's long-term P2P identity: its static ML-KEM-768 key pair.
#[derive(Clone)]
pub struct StaticIdentity {
    keys: KemKeyPair,
    public: PeerPublic,
}

impl StaticIdentity {
    /// Derive the identity from two 32-byte secret seeds (`ML-KEM.KeyGen_internal(d, z)`).
    #[must_use]
    pub fn from_seed(d: &[u8; ML_KEM_768_SEED_BYTES], z: &[u8; ML_KEM_768_SEED_BYTES]) -> Self {
        let keys = KemKeyPair::from_seed(d, z);
        let public = PeerPublic::new(keys.encapsulation_key().clone());
        StaticIdentity { keys, public }
    }

    /// A fresh identity from OS randomness.
    #[must_use]
    pub fn generate() -> Self {
        let mut d = Zeroizing::new([0u8; 32]);
        let mut z = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(d.as_mut());
        rand::rngs::OsRng.fill_bytes(z.as_mut());
        Self::from_seed(&d, &z)
    }

    /// The public half, to distribute to peers.
    #[must_use]
    pub fn public(&self) -> &PeerPublic {
        &self.public
    }

    pub(crate) fn decapsulation_key(&self) -> &KemDecapsulationKey {
        self.keys.decapsulation_key()
    }
}

impl fmt::Debug for StaticIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticIdentity")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A peer's public P2P identity: its static ML-KEM-768 encapsulation key.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerPublic {
    key: KemEncapsulationKey,
    fingerprint: KeyFingerprint,
}

impl PeerPublic {
    /// Wrap an already checked encapsulation key.
    #[must_use]
    pub fn new(key: KemEncapsulationKey) -> Self {
        let fingerprint = KeyFingerprint(Sha3_256::digest(key.as_bytes()).into());
        PeerPublic { key, fingerprint }
    }

    /// Read a 1184-byte encapsulation key (FIPS 203 §7.2 checks included).
    ///
    /// # Errors
    /// [`CryptoError`] if the bytes are not a valid ML-KEM-768 encapsulation key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self::new(KemEncapsulationKey::from_bytes(bytes)?))
    }

    /// The encapsulation key.
    #[must_use]
    pub fn key(&self) -> &KemEncapsulationKey {
        &self.key
    }

    /// The 1184-byte encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.key.as_bytes()
    }

    /// SHA3-256 of the encoding.
    #[must_use]
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }
}

impl fmt::Debug for PeerPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerPublic({:?})", self.fingerprint)
    }
}

/// Which initiators a responder accepts.
pub trait AllowedPeers: Send + Sync {
    /// The public identity with this fingerprint, if it may connect.
    fn lookup(&self, fingerprint: &KeyFingerprint) -> Option<PeerPublic>;
}

impl AllowedPeers for [PeerPublic] {
    fn lookup(&self, fingerprint: &KeyFingerprint) -> Option<PeerPublic> {
        self.iter().find(|p| &p.fingerprint == fingerprint).cloned()
    }
}

impl AllowedPeers for Vec<PeerPublic> {
    fn lookup(&self, fingerprint: &KeyFingerprint) -> Option<PeerPublic> {
        self.as_slice().lookup(fingerprint)
    }
}
