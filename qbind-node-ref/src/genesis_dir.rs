//! A local network's genesis directory, as `qbind-genesis devnet` and
//! `qbind-localnet` write it (docs/node.md "Genesis file"): `genesis.json`,
//! one encrypted keystore per validator in `v<i>` (`consensus.key`,
//! `p2p_identity.key`, their `.pub` files and the double-sign record, as
//! `qbind-keygen generate` makes them), `accounts.json` with the funded
//! accounts' secret seeds (mode 0600, for the load generators) and the same
//! keys as `qbind` CLI key files in `accounts/account-<i>.key`. One writer
//! for both tools.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use qbind_core::crypto::KeyPair;
use qbind_core::key_rotation::KeyRole;
use qbind_core::types::ValidatorId;
use qbind_signer::guard::DoubleSignGuard;
use qbind_signer::keystore::{self, KdfParams, KdfPolicy, Passphrase};

use crate::genesis::{Genesis, GenesisError, GenesisValidator, save_account_keys};
use crate::profile::Profile;

/// What to generate.
#[derive(Clone, Debug)]
pub struct LocalGenesisSpec {
    /// The genesis's profile.
    pub profile: Profile,
    /// Validators (fresh keys each, stake 1).
    pub validators: usize,
    /// Funded accounts (fresh keys each).
    pub accounts: usize,
    /// The directory written (created; must not hold a genesis already).
    pub out: PathBuf,
    /// The address every validator listens on (default 127.0.0.1).
    pub ip: Option<IpAddr>,
    /// Validator `i` on `127.0.i.1` (one /24 each, for diversity Enforce);
    /// `None`: on for TestNet and MainNet profiles without `ip`.
    pub loopback_per_validator: Option<bool>,
    /// Validator `i` listens on this port + `i`.
    pub base_port: u16,
    /// Argon2id parameters of the keystores (at least the production floor).
    pub kdf: KdfParams,
    /// Also write each funded account's key as a `qbind` CLI key file
    /// (`accounts/account-<i>.key`; one fsync each).
    pub cli_key_files: bool,
}

/// Why a genesis directory could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GenesisDirError {
    /// A spec value is out of range.
    #[error("{0}")]
    Spec(&'static str),
    /// `genesis.json` exists already in the output directory.
    #[error("{} exists already", .0.display())]
    Exists(PathBuf),
    /// The output directory could not be created.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A validator's keystore or double-sign record could not be written.
    #[error("validator {validator}: {reason}")]
    Keystore {
        /// The validator.
        validator: usize,
        /// What failed.
        reason: String,
    },
    /// The genesis or the accounts file.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
}

/// The files written by [`write_local_genesis`].
#[derive(Clone, Debug)]
pub struct LocalGenesis {
    /// The genesis (checked).
    pub genesis: Genesis,
    /// `out/genesis.json`.
    pub genesis_path: PathBuf,
    /// `out/accounts.json` (secret seeds).
    pub accounts_path: PathBuf,
}

impl LocalGenesis {
    /// Validator `i`'s keystore directory, `out/v<i>`.
    #[must_use]
    pub fn keystore(out: &Path, i: usize) -> PathBuf {
        out.join(format!("v{i}"))
    }

    /// Funded account `i`'s key as a `qbind` CLI key file,
    /// `out/accounts/account-<i>.key`.
    #[must_use]
    pub fn account_key_file(out: &Path, i: usize) -> PathBuf {
        out.join("accounts").join(format!("account-{i}.key"))
    }
}

/// Validator `i`'s keystore and genesis entry.
fn validator(
    spec: &LocalGenesisSpec,
    i: usize,
    pass: &Passphrase,
) -> Result<GenesisValidator, GenesisDirError> {
    let dir = LocalGenesis::keystore(&spec.out, i);
    let id =
        ValidatorId(u32::try_from(i).map_err(|_| GenesisDirError::Spec("too many validators"))?);
    let failed = |reason: String| GenesisDirError::Keystore {
        validator: i,
        reason,
    };
    let key = |role| {
        keystore::generate_key(&dir, id, role, pass, spec.kdf, &KdfPolicy::PRODUCTION)
            .map_err(|e| failed(e.to_string()))
    };
    let consensus = key(KeyRole::Consensus)?;
    let p2p = key(KeyRole::P2pIdentity)?;
    DoubleSignGuard::init(&dir, id, spec.profile.env())
        .map_err(|e| failed(format!("double-sign record: {e}")))?;
    let port = u16::try_from(i)
        .ok()
        .and_then(|i| spec.base_port.checked_add(i))
        .ok_or(GenesisDirError::Spec(
            "--base-port + validators exceeds 65535",
        ))?;
    let spread = spec
        .loopback_per_validator
        .unwrap_or(spec.ip.is_none() && spec.profile != Profile::Devnet);
    let ip = match (spread, spec.ip) {
        (true, _) => {
            let third = u8::try_from(i)
                .map_err(|_| GenesisDirError::Spec("--loopback-per-validator: at most 256"))?;
            IpAddr::V4(Ipv4Addr::new(127, 0, third, 1))
        }
        (false, ip) => ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    };
    Ok(GenesisValidator {
        id: id.0,
        stake: 1,
        consensus_pub: hex::encode(consensus),
        p2p_pub: hex::encode(p2p),
        address: SocketAddr::new(ip, port).to_string(),
    })
}

/// Write a local network's genesis directory with fresh validator and
/// account keys; the keystores are encrypted under `pass`.
///
/// # Errors
/// [`GenesisDirError`].
pub fn write_local_genesis(
    spec: &LocalGenesisSpec,
    pass: &Passphrase,
) -> Result<LocalGenesis, GenesisDirError> {
    if spec.validators == 0 {
        return Err(GenesisDirError::Spec("--validators must be at least 1"));
    }
    let genesis_path = spec.out.join("genesis.json");
    if genesis_path.exists() {
        return Err(GenesisDirError::Exists(genesis_path));
    }
    std::fs::create_dir_all(&spec.out).map_err(|source| GenesisDirError::Io {
        path: spec.out.clone(),
        source,
    })?;
    let validators = (0..spec.validators)
        .map(|i| validator(spec, i, pass))
        .collect::<Result<Vec<_>, _>>()?;
    let seeds: Vec<[u8; 32]> = (0..spec.accounts)
        .map(|_| {
            let mut seed = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
            seed
        })
        .collect();
    let keys: Vec<KeyPair> = seeds.iter().map(KeyPair::from_seed).collect();
    let genesis = Genesis::local(spec.profile, validators, &keys);
    genesis.check()?;
    let accounts_path = spec.out.join("accounts.json");
    save_account_keys(&accounts_path, &seeds)?;
    // The same keys as `qbind` CLI key files (mode 0600, in a 0700 folder).
    if spec.cli_key_files {
        let key_dir = spec.out.join("accounts");
        qbind_store::fsutil::ensure_private_dir(&key_dir).map_err(|e| GenesisDirError::Io {
            path: key_dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    let cli_keys: &[KeyPair] = if spec.cli_key_files { &keys } else { &[] };
    for (i, key) in cli_keys.iter().enumerate() {
        let path = LocalGenesis::account_key_file(&spec.out, i);
        qbind_client::keyfile::write_key_file(&path, key).map_err(|e| GenesisDirError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    genesis.save(&genesis_path)?;
    Ok(LocalGenesis {
        genesis,
        genesis_path,
        accounts_path,
    })
}
