//! Primitive protocol types: identifiers, views, heights, epochs, hashes and
//! the network environments with their chain IDs (DESIGN "Decisions already
//! taken"; spec §1.1).

use core::fmt;

use sha3::{Digest, Sha3_256};

/// Index of a validator in the validator set of its epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ValidatorId(pub u32);

/// A consensus view (round). Views only ever increase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct View(pub u64);

/// Height of a block in the chain; genesis is height 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Height(pub u64);

/// A validator-set epoch. The set changes only at epoch boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u64);

impl View {
    /// The next view.
    #[must_use]
    pub fn next(self) -> View {
        View(self.0.saturating_add(1))
    }
}

impl Epoch {
    /// The following epoch (saturating: an epoch number never wraps).
    #[must_use]
    pub fn next(self) -> Epoch {
        Epoch(self.0.saturating_add(1))
    }
}

impl Height {
    /// The next height.
    #[must_use]
    pub fn next(self) -> Height {
        Height(self.0.saturating_add(1))
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h{}", self.0)
    }
}

impl fmt::Display for ValidatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "val{}", self.0)
    }
}

/// A SHA3-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The all-zero hash (used only as the genesis parent).
    pub const ZERO: Hash32 = Hash32([0u8; 32]);

    /// SHA3-256 of `bytes`.
    #[must_use]
    pub fn digest(bytes: &[u8]) -> Hash32 {
        Hash32(Sha3_256::digest(bytes).into())
    }

    /// The id of a transaction: SHA3-256 of its bytes, as [`Hash32::digest`],
    /// remembered for recently seen transactions (a validator needs each
    /// transaction's id about ten times between admission and receipts).
    #[must_use]
    pub fn of_transaction(bytes: &[u8]) -> Hash32 {
        Hash32(crate::memo::transaction_id(bytes, || Self::digest(bytes).0))
    }

    /// SHA3-256 of `preamble`, the number of `txs` (u32 BE) and each
    /// transaction's id ([`Hash32::of_transaction`]) in order: the digest of
    /// a block's inline payload and of a DAG batch (wire format §4.4,
    /// §4.15), which needs no transaction hashed again. A list longer than
    /// `u32::MAX` (never decoded: the codec's limits are far lower) counts
    /// as `u32::MAX`.
    #[must_use]
    pub fn over_transaction_ids(preamble: &[u8], txs: &[Vec<u8>]) -> Hash32 {
        let mut bytes = Vec::with_capacity(preamble.len() + 4 + 32 * txs.len());
        bytes.extend_from_slice(preamble);
        bytes.extend_from_slice(&u32::try_from(txs.len()).unwrap_or(u32::MAX).to_be_bytes());
        for tx in txs {
            bytes.extend_from_slice(Self::of_transaction(tx).as_bytes());
        }
        Self::digest(&bytes)
    }

    /// SHA3-256 over the concatenation of `parts`, without copying them.
    #[must_use]
    pub fn digest_parts(parts: &[&[u8]]) -> Hash32 {
        let mut hasher = Sha3_256::new();
        for part in parts {
            hasher.update(part);
        }
        Hash32(hasher.finalize().into())
    }

    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(&self.0[..6]))
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}

/// An account address: SHA3-256 of the account's ML-DSA-44 public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AccountId(pub [u8; 32]);

impl AccountId {
    /// The account address of a public key (remembered for recently seen
    /// keys: a validator decodes each transaction several times).
    #[must_use]
    pub fn from_public_key(pk: &crate::crypto::PublicKey) -> AccountId {
        AccountId(crate::memo::account_of(pk, || {
            Hash32::digest(pk.as_bytes()).0
        }))
    }
}

/// A 64-bit chain identifier, bound into every signature preimage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainId(pub u64);

/// DevNet chain ID (`"QBND" "DEV\0"`).
pub const QBIND_DEVNET_CHAIN_ID: ChainId = ChainId(0x5142_4E44_4445_5600);
/// TestNet chain ID (`"QBND" "TST\0"`).
pub const QBIND_TESTNET_CHAIN_ID: ChainId = ChainId(0x5142_4E44_5453_5400);
/// MainNet chain ID (`"QBND" "MAIN"`).
pub const QBIND_MAINNET_CHAIN_ID: ChainId = ChainId(0x5142_4E44_4D41_494E);

/// The network a node belongs to. It fixes the chain ID and the scope part of
/// every domain tag, so a signature made for one network never verifies on
/// another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NetworkEnvironment {
    /// Local development network.
    Devnet,
    /// Public test network.
    Testnet,
    /// Production network.
    Mainnet,
}

impl NetworkEnvironment {
    /// The chain ID of this network.
    #[must_use]
    pub fn chain_id(self) -> ChainId {
        match self {
            NetworkEnvironment::Devnet => QBIND_DEVNET_CHAIN_ID,
            NetworkEnvironment::Testnet => QBIND_TESTNET_CHAIN_ID,
            NetworkEnvironment::Mainnet => QBIND_MAINNET_CHAIN_ID,
        }
    }

    /// The scope used in domain tags: `DEV`, `TST` or `MAIN`.
    #[must_use]
    pub fn tag_scope(self) -> &'static str {
        match self {
            NetworkEnvironment::Devnet => "DEV",
            NetworkEnvironment::Testnet => "TST",
            NetworkEnvironment::Mainnet => "MAIN",
        }
    }

    /// The environment whose chain ID is `id`, if any.
    #[must_use]
    pub fn from_chain_id(id: ChainId) -> Option<NetworkEnvironment> {
        [
            NetworkEnvironment::Devnet,
            NetworkEnvironment::Testnet,
            NetworkEnvironment::Mainnet,
        ]
        .into_iter()
        .find(|env| env.chain_id() == id)
    }
}

/// A point in time in milliseconds, from whatever origin the [`crate::Clock`]
/// uses. The core never reads a wall clock: time always comes in as input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + d`, saturating.
    #[must_use]
    pub fn plus(self, d: u64) -> Millis {
        Millis(self.0.saturating_add(d))
    }

    /// `self - earlier`, or zero.
    #[must_use]
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_spell_their_names() {
        assert_eq!(&QBIND_DEVNET_CHAIN_ID.0.to_be_bytes(), b"QBNDDEV\0");
        assert_eq!(&QBIND_TESTNET_CHAIN_ID.0.to_be_bytes(), b"QBNDTST\0");
        assert_eq!(&QBIND_MAINNET_CHAIN_ID.0.to_be_bytes(), b"QBNDMAIN");
        for env in [
            NetworkEnvironment::Devnet,
            NetworkEnvironment::Testnet,
            NetworkEnvironment::Mainnet,
        ] {
            assert_eq!(NetworkEnvironment::from_chain_id(env.chain_id()), Some(env));
        }
        assert_eq!(NetworkEnvironment::from_chain_id(ChainId(7)), None);
    }

    #[test]
    fn sha3_256_known_answer() {
        // FIPS 202 SHA3-256("abc").
        assert_eq!(
            Hash32::digest(b"abc").to_string(),
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
        );
        assert_eq!(Hash32::digest_parts(&[b"a", b"bc"]), Hash32::digest(b"abc"));
    }
}
