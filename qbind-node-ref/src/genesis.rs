//! The genesis file: the chain a node belongs to (docs/node.md "Genesis
//! file"). JSON, versioned:
//!
//! ```json
//! {
//!   "version": 1,
//!   "profile": "devnet",
//!   "chain_id": 5855328520645203456,
//!   "epoch_length": null,
//!   "validators": [
//!     { "id": 0, "stake": 1, "consensus_pub": "<hex>", "p2p_pub": "<hex>",
//!       "address": "127.0.0.1:29000" }
//!   ],
//!   "accounts": [ { "id": "<hex, 32 bytes>", "balance": 1000000000000 } ],
//!   "monetary": { "mode": "active", "blocks_per_epoch": 50 },
//!   "fees": { "burn_bps": 5000, "proposer_bps": 5000 }
//! }
//! ```
//!
//! Its **genesis hash** is the SHA3-256 ([`Hash32::digest`]) of a domain
//! tag and the canonical encoding of the parsed file ([`Genesis::hash`]):
//! the fields above in this order, compact JSON, keys as lowercase hex.
//! Validator addresses are not part of it (a validator may move without
//! making a new chain). A node records the hash in its store at `init` or
//! its first start and refuses a store recorded for another genesis.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use qbind_core::crypto::{KeyPair, PublicKey};
use qbind_core::key_rotation::KeyRole;
use qbind_core::monetary::MonetaryMode;
use qbind_core::traits::{Durability, Namespace, StateBackend, WriteBatch};
use qbind_core::types::{AccountId, Hash32, ValidatorId};
use serde::{Deserialize, Serialize};

use crate::profile::Profile;
use crate::validator_set::{ValidatorEntry, ValidatorSetFile};

/// The genesis file format this build reads and writes.
pub const GENESIS_VERSION: u32 = 1;
/// Largest genesis file read.
pub const MAX_GENESIS_BYTES: u64 = 64 << 20;
/// Where the genesis hash is recorded in a store (namespace `Meta`).
pub const GENESIS_HASH_KEY: &[u8] = b"genesis_hash";
/// Domain tag of the genesis hash.
const HASH_DOMAIN: &[u8] = b"QBIND-GENESIS-V1:";

/// Why a genesis file or a store was refused.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The file could not be read or written.
    #[error("genesis file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Larger than [`MAX_GENESIS_BYTES`].
    #[error("genesis file {path} is {len} bytes, more than {MAX_GENESIS_BYTES}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// Not JSON of the genesis shape (a field missing, unknown or mistyped).
    #[error("malformed genesis file: {0}")]
    Malformed(String),
    /// A `version` this build does not read.
    #[error("genesis version {found} is not supported (this build reads {GENESIS_VERSION})")]
    UnsupportedVersion {
        /// The file's version.
        found: u32,
    },
    /// The chain ID is not the profile's.
    #[error("genesis chain_id {found} is not the {profile} chain id {expected}")]
    ChainIdMismatch {
        /// The profile.
        profile: Profile,
        /// The profile's chain ID.
        expected: u64,
        /// The file's.
        found: u64,
    },
    /// A validator entry is invalid (bad key, duplicate, order, stake).
    #[error("genesis validator {id}: {reason}")]
    InvalidValidator {
        /// The validator's position.
        id: usize,
        /// What is wrong.
        reason: String,
    },
    /// An account entry is invalid (bad id, duplicate, zero balance).
    #[error("genesis account {index}: {reason}")]
    InvalidAccount {
        /// The account's position.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// Monetary, fee or epoch parameters are invalid.
    #[error("genesis parameters: {0}")]
    InvalidParameters(String),
    /// The store was initialised for another genesis.
    #[error(
        "the store {store} belongs to genesis {recorded}, not to this genesis {expected}; use \
         another --data-dir (or remove the store) to start this chain"
    )]
    StoreMismatch {
        /// The store directory.
        store: PathBuf,
        /// The hash recorded in the store.
        recorded: Hash32,
        /// The hash of the genesis given.
        expected: Hash32,
    },
    /// The store could not be read or written.
    #[error("state store: {0}")]
    Storage(#[from] qbind_core::traits::StorageError),
}

/// One validator at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    /// Its id: its position, `0..n`.
    pub id: u32,
    /// Voting power (> 0); also its stake for the monetary engine.
    pub stake: u64,
    /// ML-DSA-44 consensus public key, hex.
    pub consensus_pub: String,
    /// ML-KEM-768 P2P identity public key, hex.
    pub p2p_pub: String,
    /// Where it accepts KEMTLS connections (`IP:port`); not hashed.
    pub address: String,
}

/// One funded account at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// The account id (SHA3 of its public key), 32 bytes hex.
    pub id: String,
    /// Its balance.
    pub balance: u128,
}

/// Monetary engine parameters (the rest is MainNet's `MonetaryConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisMonetary {
    /// `off`, `shadow` or `active`.
    pub mode: String,
    /// Blocks per monetary epoch (> 0).
    pub blocks_per_epoch: u64,
}

/// Fee parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFees {
    /// Share of each fee burnt, basis points.
    pub burn_bps: u16,
    /// Share of each fee paid to the proposer, basis points (the two sum to
    /// 10,000).
    pub proposer_bps: u16,
}

/// A genesis file, parsed and checked ([`Genesis::parse`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Format version, [`GENESIS_VERSION`].
    pub version: u32,
    /// The network profile.
    pub profile: Profile,
    /// The profile's chain ID (checked).
    pub chain_id: u64,
    /// Consensus epoch length in blocks; `null`: one epoch.
    pub epoch_length: Option<u64>,
    /// The validators, by id.
    pub validators: Vec<GenesisValidator>,
    /// Funded accounts.
    pub accounts: Vec<GenesisAccount>,
    /// Monetary parameters.
    pub monetary: GenesisMonetary,
    /// Fee parameters.
    pub fees: GenesisFees,
}

/// Parse a `mode` of [`GenesisMonetary`] or `--monetary-mode`.
#[must_use]
pub fn monetary_mode_named(name: &str) -> Option<MonetaryMode> {
    match name {
        "off" => Some(MonetaryMode::Off),
        "shadow" => Some(MonetaryMode::Shadow),
        "active" => Some(MonetaryMode::Active),
        _ => None,
    }
}

/// The name of a monetary mode, as [`monetary_mode_named`] reads it.
#[must_use]
pub fn monetary_mode_name(mode: MonetaryMode) -> &'static str {
    match mode {
        MonetaryMode::Off => "off",
        MonetaryMode::Shadow => "shadow",
        MonetaryMode::Active => "active",
    }
}

fn hex_exact(text: &str, len: usize) -> Result<Vec<u8>, String> {
    let bytes = hex::decode(text).map_err(|_| "not hex".to_owned())?;
    if bytes.len() != len {
        return Err(format!("{} bytes, expected {len}", bytes.len()));
    }
    Ok(bytes)
}

impl Genesis {
    /// Parse and check JSON text.
    ///
    /// # Errors
    /// [`GenesisError::Malformed`] for JSON that is not a genesis, and the
    /// named errors of [`Genesis::check`].
    pub fn parse(text: &str) -> Result<Genesis, GenesisError> {
        let genesis: Genesis =
            serde_json::from_str(text).map_err(|e| GenesisError::Malformed(e.to_string()))?;
        genesis.check()?;
        Ok(genesis)
    }

    /// Load and check the file at `path`.
    ///
    /// # Errors
    /// [`GenesisError`].
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        Genesis::parse(&read_bounded(path)?)
    }

    /// Write the file (pretty JSON) to `path`.
    ///
    /// # Errors
    /// [`GenesisError::Io`].
    pub fn save(&self, path: &Path) -> Result<(), GenesisError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| GenesisError::Malformed(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|source| GenesisError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Check everything [`Genesis::parse`] checks: the version, the chain
    /// ID, the validators (ids `0..n` in order, non-zero stake, keys of the
    /// right length that decode, distinct keys and addresses), the accounts
    /// (32-byte ids, distinct, non-zero balances, no supply overflow) and the
    /// parameters (known monetary mode, non-zero epochs, fee shares summing
    /// to 10,000).
    ///
    /// # Errors
    /// [`GenesisError`].
    pub fn check(&self) -> Result<(), GenesisError> {
        if self.version != GENESIS_VERSION {
            return Err(GenesisError::UnsupportedVersion {
                found: self.version,
            });
        }
        let expected = self.profile.env().chain_id().0;
        if self.chain_id != expected {
            return Err(GenesisError::ChainIdMismatch {
                profile: self.profile,
                expected,
                found: self.chain_id,
            });
        }
        self.validator_set_file()?;
        self.balances()?;
        self.check_parameters()
    }

    fn check_parameters(&self) -> Result<(), GenesisError> {
        let bad = |m: &str| Err(GenesisError::InvalidParameters(m.to_owned()));
        if monetary_mode_named(&self.monetary.mode).is_none() {
            return bad("monetary.mode must be off, shadow or active");
        }
        if self.monetary.blocks_per_epoch == 0 || self.epoch_length == Some(0) {
            return bad("epoch lengths must be at least 1");
        }
        if u32::from(self.fees.burn_bps) + u32::from(self.fees.proposer_bps) != 10_000 {
            return bad("fees.burn_bps + fees.proposer_bps must be 10000");
        }
        Ok(())
    }

    /// The monetary mode.
    #[must_use]
    pub fn monetary_mode(&self) -> MonetaryMode {
        monetary_mode_named(&self.monetary.mode).unwrap_or(MonetaryMode::Off)
    }

    /// The validators as a validator-set file (no key rotations).
    ///
    /// # Errors
    /// [`GenesisError::InvalidValidator`].
    pub fn validator_set_file(&self) -> Result<ValidatorSetFile, GenesisError> {
        let mut entries: Vec<ValidatorEntry> = Vec::with_capacity(self.validators.len());
        if self.validators.is_empty() {
            return Err(GenesisError::InvalidValidator {
                id: 0,
                reason: "no validators".into(),
            });
        }
        for (pos, v) in self.validators.iter().enumerate() {
            let bad = |reason: String| GenesisError::InvalidValidator { id: pos, reason };
            if v.id as usize != pos {
                return Err(bad(format!("has id {}; ids must be 0..n in order", v.id)));
            }
            let consensus = hex_exact(&v.consensus_pub, KeyRole::Consensus.public_key_len())
                .and_then(|b| PublicKey::from_bytes(&b).map_err(|e| e.to_string()))
                .map_err(|e| bad(format!("consensus_pub: {e}")))?;
            let p2p = hex_exact(&v.p2p_pub, KeyRole::P2pIdentity.public_key_len())
                .and_then(|b| qbind_net::PeerPublic::from_bytes(&b).map_err(|e| e.to_string()))
                .map_err(|e| bad(format!("p2p_pub: {e}")))?;
            let address: SocketAddr = v
                .address
                .parse()
                .map_err(|_| bad(format!("address {:?} is not IP:port", v.address)))?;
            if v.stake == 0 {
                return Err(bad("zero stake".into()));
            }
            if let Some(other) = entries.iter().find(|e| {
                e.consensus_key == consensus
                    || e.p2p_key.as_bytes() == p2p.as_bytes()
                    || e.address == address
            }) {
                return Err(bad(format!(
                    "same consensus key, P2P key or address as validator {}",
                    other.id.0
                )));
            }
            entries.push(ValidatorEntry {
                id: ValidatorId(v.id),
                stake: v.stake,
                address,
                consensus_key: consensus,
                p2p_key: p2p,
            });
        }
        let file = ValidatorSetFile {
            network: self.profile.env(),
            epoch_length: self.epoch_length,
            validators: entries,
            rotations: Vec::new(),
        };
        file.validator_set()
            .map_err(|e| GenesisError::InvalidValidator {
                id: 0,
                reason: e.to_string(),
            })?;
        Ok(file)
    }

    /// The funded accounts and their balances.
    ///
    /// # Errors
    /// [`GenesisError::InvalidAccount`].
    pub fn balances(&self) -> Result<Vec<(AccountId, u128)>, GenesisError> {
        let mut out: Vec<(AccountId, u128)> = Vec::with_capacity(self.accounts.len());
        let mut supply: u128 = 0;
        let mut seen = std::collections::BTreeSet::new();
        for (index, a) in self.accounts.iter().enumerate() {
            let bad = |reason: String| GenesisError::InvalidAccount { index, reason };
            let bytes = hex_exact(&a.id, 32).map_err(|e| bad(format!("id: {e}")))?;
            let mut id = [0u8; 32];
            id.copy_from_slice(&bytes);
            if !seen.insert(id) {
                return Err(bad("listed twice".into()));
            }
            if a.balance == 0 {
                return Err(bad("zero balance".into()));
            }
            supply = supply
                .checked_add(a.balance)
                .ok_or_else(|| bad("total supply overflows".into()))?;
            out.push((AccountId(id), a.balance));
        }
        Ok(out)
    }

    /// Total validator stake (the monetary engine's `staked` input).
    #[must_use]
    pub fn total_stake(&self) -> u128 {
        self.validators.iter().map(|v| u128::from(v.stake)).sum()
    }

    /// The canonical encoding: this genesis with every address blanked,
    /// every hex string lowercase, as compact JSON in field order.
    #[must_use]
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut c = self.clone();
        for v in &mut c.validators {
            v.address.clear();
            v.consensus_pub.make_ascii_lowercase();
            v.p2p_pub.make_ascii_lowercase();
        }
        for a in &mut c.accounts {
            a.id.make_ascii_lowercase();
        }
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(&c).unwrap_or_default()
    }

    /// The genesis hash: SHA3-256 of the domain tag and
    /// [`Genesis::canonical_bytes`].
    #[must_use]
    pub fn hash(&self) -> Hash32 {
        Hash32::digest(&[HASH_DOMAIN, &self.canonical_bytes()].concat())
    }

    /// The DevNet genesis of the seed-key mode: `validators` validators with
    /// the DevNet seed keys (stake 1, addresses `127.0.0.1:29000 + i`) and
    /// `accounts` seed accounts of [`crate::local::DEVNET_BALANCE`].
    #[must_use]
    pub fn devnet_seeded(validators: usize, accounts: usize) -> Genesis {
        let validators = (0..validators)
            .map(|i| GenesisValidator {
                id: i as u32,
                stake: 1,
                consensus_pub: hex::encode(crate::local::validator_key(i).public_key().as_bytes()),
                p2p_pub: hex::encode(crate::local::p2p_identity(i).public().as_bytes()),
                address: format!("127.0.0.1:{}", 29_000 + i),
            })
            .collect();
        Genesis::local(Profile::Devnet, validators, &seed_accounts(accounts))
    }

    /// A genesis of `profile` for a local network: `validators`, each
    /// account of `accounts` funded with [`crate::local::DEVNET_BALANCE`],
    /// the profile's monetary mode, DevNet's short monetary epochs and the
    /// MainNet fee split.
    #[must_use]
    pub fn local(
        profile: Profile,
        validators: Vec<GenesisValidator>,
        accounts: &[KeyPair],
    ) -> Genesis {
        Genesis {
            version: GENESIS_VERSION,
            profile,
            chain_id: profile.env().chain_id().0,
            epoch_length: None,
            validators,
            accounts: accounts
                .iter()
                .map(|k| GenesisAccount {
                    id: hex::encode(AccountId::from_public_key(k.public_key()).0),
                    balance: crate::local::DEVNET_BALANCE,
                })
                .collect(),
            monetary: GenesisMonetary {
                mode: monetary_mode_name(profile.preset().monetary).into(),
                blocks_per_epoch: crate::local::DEVNET_BLOCKS_PER_EPOCH,
            },
            fees: GenesisFees {
                burn_bps: qbind_core::execution::FeeSplit::MAINNET.burn_bps,
                proposer_bps: qbind_core::execution::FeeSplit::MAINNET.proposer_bps,
            },
        }
    }
}

/// The DevNet seed accounts `0..n` ([`crate::local::account_key`]).
#[must_use]
pub fn seed_accounts(n: usize) -> Vec<KeyPair> {
    (0..n).map(crate::local::account_key).collect()
}

/// One funded account's key in an accounts file (`qbind-genesis devnet`
/// writes it; `qbind-node --load-accounts` reads it). The seed is secret:
/// the file is written with mode 0600.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountKeyEntry {
    /// The account id, hex.
    pub id: String,
    /// The ML-DSA-44 key seed, 32 bytes hex.
    pub seed: String,
}

/// Write `keys` as an accounts file (JSON array of [`AccountKeyEntry`],
/// mode 0600), returning their seeds' account ids.
///
/// # Errors
/// [`GenesisError::Io`].
pub fn save_account_keys(path: &Path, seeds: &[[u8; 32]]) -> Result<(), GenesisError> {
    let entries: Vec<AccountKeyEntry> = seeds
        .iter()
        .map(|seed| AccountKeyEntry {
            id: hex::encode(AccountId::from_public_key(KeyPair::from_seed(seed).public_key()).0),
            seed: hex::encode(seed),
        })
        .collect();
    let text = serde_json::to_string_pretty(&entries)
        .map_err(|e| GenesisError::Malformed(e.to_string()))?;
    let io = |source| GenesisError::Io {
        path: path.to_owned(),
        source,
    };
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Read a genesis or accounts file of at most [`MAX_GENESIS_BYTES`].
fn read_bounded(path: &Path) -> Result<String, GenesisError> {
    let io = |source| GenesisError::Io {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_GENESIS_BYTES {
        return Err(GenesisError::TooLarge {
            path: path.to_owned(),
            len,
        });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Read an accounts file; every entry's id must match its seed.
///
/// # Errors
/// [`GenesisError::Io`], [`GenesisError::Malformed`],
/// [`GenesisError::InvalidAccount`].
pub fn load_account_keys(path: &Path) -> Result<Vec<KeyPair>, GenesisError> {
    let entries: Vec<AccountKeyEntry> = serde_json::from_str(&read_bounded(path)?)
        .map_err(|e| GenesisError::Malformed(e.to_string()))?;
    let mut keys = Vec::with_capacity(entries.len());
    for (index, e) in entries.iter().enumerate() {
        let bad = |reason: String| GenesisError::InvalidAccount { index, reason };
        let bytes = hex_exact(&e.seed, 32).map_err(|m| bad(format!("seed: {m}")))?;
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes);
        let key = KeyPair::from_seed(&seed);
        let id = hex::encode(AccountId::from_public_key(key.public_key()).0);
        if !id.eq_ignore_ascii_case(&e.id) {
            return Err(bad("id is not the seed's account".into()));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Record `hash` in `store` if it holds none yet; refuse a store that
/// records another hash. Returns whether it recorded it.
///
/// # Errors
/// [`GenesisError::StoreMismatch`], [`GenesisError::Storage`].
pub fn bind_store<S: StateBackend + ?Sized>(
    store: &S,
    dir: &Path,
    hash: Hash32,
) -> Result<bool, GenesisError> {
    match store.get(Namespace::Meta, GENESIS_HASH_KEY)? {
        Some(bytes) if bytes.as_slice() == hash.as_bytes() => Ok(false),
        Some(bytes) => {
            let mut recorded = [0u8; 32];
            if bytes.len() == 32 {
                recorded.copy_from_slice(&bytes);
            }
            Err(GenesisError::StoreMismatch {
                store: dir.to_owned(),
                recorded: Hash32(recorded),
                expected: hash,
            })
        }
        None => {
            let mut batch = WriteBatch::default();
            batch.put(
                Namespace::Meta,
                GENESIS_HASH_KEY.to_vec(),
                hash.as_bytes().to_vec(),
            );
            store.write(batch, Durability::Durable)?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Genesis {
        Genesis::devnet_seeded(4, 3)
    }

    #[test]
    fn round_trip_keeps_the_hash() {
        let g = sample();
        let text = serde_json::to_string_pretty(&g).expect("json");
        let back = Genesis::parse(&text).expect("parse");
        assert_eq!(back, g);
        assert_eq!(back.hash(), g.hash());
    }

    #[test]
    fn the_hash_ignores_addresses_and_hex_case_but_not_balances() {
        let g = sample();
        let mut moved = g.clone();
        moved.validators[1].address = "10.0.0.1:1".into();
        moved.accounts[0].id.make_ascii_uppercase();
        assert_eq!(moved.hash(), g.hash());
        let mut richer = g.clone();
        richer.accounts[0].balance += 1;
        assert_ne!(richer.hash(), g.hash());
    }

    #[test]
    fn refusals_are_named() {
        let g = sample();
        let text = |g: &Genesis| serde_json::to_string(g).expect("json");
        let check = |t: String| Genesis::parse(&t).expect_err("refused");
        assert!(matches!(check("{".into()), GenesisError::Malformed(_)));
        let unknown = text(&g).replacen("{", "{\"colour\":1,", 1);
        assert!(matches!(check(unknown), GenesisError::Malformed(_)));
        let mut v = g.clone();
        v.version = 2;
        assert!(matches!(
            check(text(&v)),
            GenesisError::UnsupportedVersion { found: 2 }
        ));
        let mut c = g.clone();
        c.chain_id += 1;
        assert!(matches!(
            check(text(&c)),
            GenesisError::ChainIdMismatch { .. }
        ));
        let mut d = g.clone();
        d.validators[2].p2p_pub = d.validators[1].p2p_pub.clone();
        assert!(matches!(
            check(text(&d)),
            GenesisError::InvalidValidator { id: 2, .. }
        ));
        let mut k = g.clone();
        k.validators[0].consensus_pub = "abcd".into();
        assert!(matches!(
            check(text(&k)),
            GenesisError::InvalidValidator { id: 0, .. }
        ));
        let mut a = g.clone();
        a.accounts[1].id = a.accounts[0].id.clone();
        assert!(matches!(
            check(text(&a)),
            GenesisError::InvalidAccount { index: 1, .. }
        ));
        let mut f = g;
        f.fees.burn_bps = 1;
        assert!(matches!(
            check(text(&f)),
            GenesisError::InvalidParameters(_)
        ));
    }

    /// The committed genesis file (tests/data/genesis-golden.json) hashes
    /// to the committed value: the canonical encoding and the hash must
    /// not change without a version bump.
    /// The committed genesis file (tests/data/genesis-golden.json) hashes
    /// to the committed value: the canonical encoding and the hash must
    /// not change without a version bump.
    #[test]
    fn write_golden_tmp() {
        if std::env::var("QBIND_WRITE_GOLDEN").is_ok() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
            let g = Genesis::devnet_seeded(4, 3);
            g.save(&dir.join("genesis-golden.json")).unwrap();
            std::fs::write(dir.join("genesis-golden.hash"), format!("{}\n", g.hash())).unwrap();
        }
    }

    #[test]
    fn golden_genesis_hash_is_stable() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/genesis-golden.json");
        let g = Genesis::load(&path).expect("golden genesis");
        assert_eq!(g, Genesis::devnet_seeded(4, 3));
        let golden =
            std::fs::read_to_string(path.with_file_name("genesis-golden.hash")).expect("hash");
        assert_eq!(g.hash().to_string(), golden.trim());
    }

    #[test]
    fn account_keys_round_trip_and_a_wrong_id_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("accounts.json");
        save_account_keys(&path, &[[1; 32], [2; 32]]).expect("save");
        let keys = load_account_keys(&path).expect("load");
        assert_eq!(
            keys[1].public_key(),
            KeyPair::from_seed(&[2; 32]).public_key()
        );
        let text = std::fs::read_to_string(&path).expect("read");
        let first = hex::encode(AccountId::from_public_key(keys[0].public_key()).0);
        let second = hex::encode(AccountId::from_public_key(keys[1].public_key()).0);
        std::fs::write(&path, text.replace(&first, &second)).expect("write");
        assert!(matches!(
            load_account_keys(&path),
            Err(GenesisError::InvalidAccount { index: 0, .. })
        ));
    }

    #[test]
    fn a_store_of_another_genesis_is_refused() {
        let store = qbind_core::traits::MemoryBackend::new();
        let dir = Path::new("/data/v0");
        let a = sample().hash();
        let b = Genesis::devnet_seeded(4, 4).hash();
        assert!(bind_store(&store, dir, a).expect("first"));
        assert!(!bind_store(&store, dir, a).expect("same"));
        let err = bind_store(&store, dir, b).expect_err("other genesis");
        assert!(
            matches!(err, GenesisError::StoreMismatch { recorded, expected, .. }
                if recorded == a && expected == b),
            "{err}"
        );
        assert!(err.to_string().contains("belongs to genesis"), "{err}");
    }
}
