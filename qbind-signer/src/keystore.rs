//! The `encrypted-fs` keystore (issue #5; runbook §4.1 option A; format in
//! `docs/keystore.md`).
//!
//! A keystore is a directory per validator with one file per key role:
//! `consensus.key`, `batch_signing.key`, `p2p_identity.key` (versioned JSON,
//! mode 0600) and the matching `*.pub` (lowercase hex public key, for
//! inspection and rotation tooling). The secret seed is encrypted with
//! XChaCha20-Poly1305 under a key derived from the operator's passphrase by
//! Argon2id; the Argon2id parameters and salt are stored in the file and
//! checked against a [`KdfPolicy`] (minimums and maximums) before any work
//! is done. The cleartext header (format, version, validator, role,
//! algorithm, public key, KDF parameters) is the AEAD's associated data, so
//! editing it breaks decryption.
//!
//! Errors are distinct: wrong passphrase (the key-check value does not
//! match), corrupted file (bad JSON, bad field, AEAD failure with a correct
//! key check, seed that does not give the stated public key), unknown
//! version, wrong role, wrong validator, weak KDF parameters, loose file
//! permissions.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use qbind_core::crypto::{KemKeyPair, KeyPair, ML_KEM_768_SEED_BYTES};
use qbind_core::key_rotation::KeyRole;
use qbind_core::types::ValidatorId;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};
use zeroize::Zeroizing;

use crate::durable::{create_private_dir, write_atomic};

/// The `format` field of a keystore file.
pub const KEYSTORE_FORMAT: &str = "qbind-keystore";
/// The only keystore version this code reads and writes.
pub const KEYSTORE_VERSION: u32 = 1;
/// Shortest passphrase accepted when a key is written.
pub const MIN_PASSPHRASE_LEN: usize = 12;
/// Largest keystore file read (a valid one is about 3 KiB).
const MAX_FILE_BYTES: u64 = 64 * 1024;
const SALT_BYTES: usize = 16;
const NONCE_BYTES: usize = 24;
const CHECK_TAG: &[u8] = b"QBIND-KEYSTORE-KEY-CHECK-v1";

/// The operator's passphrase; wiped on drop and never printed.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wrap a passphrase.
    #[must_use]
    pub fn new(s: String) -> Self {
        Passphrase(Zeroizing::new(s))
    }

    /// Read the passphrase from the environment variable `var` (named by the
    /// operator, e.g. `QBIND_KEYSTORE_PASSPHRASE`).
    ///
    /// # Errors
    /// [`KeystoreError::PassphraseEnv`] if it is unset, empty or not UTF-8.
    pub fn from_env(var: &str) -> Result<Self, KeystoreError> {
        match std::env::var(var) {
            Ok(s) if !s.is_empty() => Ok(Passphrase::new(s)),
            _ => Err(KeystoreError::PassphraseEnv {
                var: var.to_owned(),
            }),
        }
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Read the passphrase from the file `path` (`--passphrase-file`),
    /// checked by [`read_secret_file`]. Preferred over [`Passphrase::from_env`]:
    /// an environment variable stays readable in `/proc/<pid>/environ` and is
    /// inherited by every child for the life of the process, while the file's
    /// contents are wiped from memory once the key is decrypted.
    ///
    /// # Errors
    /// [`KeystoreError`] from [`read_secret_file`].
    pub fn from_file(path: &Path) -> Result<Self, KeystoreError> {
        read_secret_file(path).map(Passphrase)
    }

    /// From `file` when given (preferred), else from the variable `var`.
    ///
    /// # Errors
    /// As [`Passphrase::from_file`] or [`Passphrase::from_env`].
    pub fn from_file_or_env(file: Option<&Path>, var: &str) -> Result<Self, KeystoreError> {
        match file {
            Some(f) => Self::from_file(f),
            None => Self::from_env(var),
        }
    }
}

/// Read a secret (passphrase, PIN) from `path`: the path must not be a
/// symlink, the file must be a regular file readable by its owner only
/// (no group or other bits), at most [`MAX_SECRET_FILE_BYTES`], UTF-8 and
/// not empty. One trailing newline (`\n` or `\r\n`) is dropped. Every
/// buffer that held the bytes is wiped.
///
/// # Errors
/// [`KeystoreError::InsecurePermissions`], [`KeystoreError::SecretFile`] or
/// [`KeystoreError::Io`].
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, KeystoreError> {
    let bad = |detail: &'static str| KeystoreError::SecretFile {
        path: path.to_owned(),
        detail,
    };
    let io = |source| KeystoreError::Io {
        path: path.to_owned(),
        source,
    };
    if fs::symlink_metadata(path)
        .map_err(io)?
        .file_type()
        .is_symlink()
    {
        return Err(bad("is a symlink"));
    }
    let f = fs::File::open(path).map_err(io)?;
    check_open_file(&f, path)?;
    let mut bytes = Zeroizing::new(Vec::new());
    (&f).take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(bad("is larger than 4096 bytes"));
    }
    let mut end = bytes.len();
    if bytes[..end].ends_with(b"\n") {
        end -= 1;
        if bytes[..end].ends_with(b"\r") {
            end -= 1;
        }
    }
    let text = std::str::from_utf8(&bytes[..end]).map_err(|_| bad("is not UTF-8"))?;
    if text.is_empty() {
        return Err(bad("is empty"));
    }
    Ok(Zeroizing::new(text.to_owned()))
}

/// Check an opened secret or key file through its handle (no second lookup
/// of the path): a regular file with no group or other permission bits.
fn check_open_file(f: &fs::File, path: &Path) -> Result<fs::Metadata, KeystoreError> {
    let meta = f.metadata().map_err(|source| KeystoreError::Io {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() {
        return Err(KeystoreError::SecretFile {
            path: path.to_owned(),
            detail: "is not a regular file",
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeystoreError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    Ok(meta)
}

/// Largest passphrase or PIN file read.
pub const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// Largest Argon2id memory × passes (KiB × passes) any policy accepts:
/// 2 GiB-passes, ten times the default (64 MiB × 3).
pub const MAX_KDF_COST_KIB_PASSES: u64 = 2 * 1024 * 1024;

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Argon2id cost parameters (stored in the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// The defaults for new keys: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    /// Cheap parameters for tests only; refused by [`KdfPolicy::PRODUCTION`].
    pub const INSECURE_TEST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::DEFAULT
    }
}

/// Bounds on [`KdfParams`] enforced when writing *and* reading a key (a
/// file cannot lower them, and cannot ask for absurd memory either).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfPolicy {
    /// Smallest allowed parameters.
    pub min: KdfParams,
    /// Largest allowed parameters.
    pub max: KdfParams,
}

impl KdfPolicy {
    /// Production bounds: at least 19 MiB / 2 passes / 1 lane (OWASP's
    /// Argon2id floor), at most 1 GiB / 16 passes / 8 lanes, and at most
    /// [`MAX_KDF_COST_KIB_PASSES`] of memory × passes. The maximums are what
    /// a key file may ask of a node at start-up (the parameters are read
    /// before the file is authenticated): about 2 GiB-passes of Argon2id,
    /// a few seconds, instead of 4 GiB × 64 passes. `docs/keystore.md`.
    pub const PRODUCTION: KdfPolicy = KdfPolicy {
        min: KdfParams {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        },
        max: KdfParams {
            memory_kib: 1024 * 1024,
            iterations: 16,
            parallelism: 8,
        },
    };

    /// A lower floor for tests and benchmarks only (never for real keys).
    pub const INSECURE_TEST_ONLY: KdfPolicy = KdfPolicy {
        min: KdfParams::INSECURE_TEST,
        max: KdfPolicy::PRODUCTION.max,
    };

    /// Whether `p` is within the bounds.
    ///
    /// # Errors
    /// [`KeystoreError::KdfParamsOutOfPolicy`].
    pub fn check(&self, p: &KdfParams) -> Result<(), KeystoreError> {
        let ok = (self.min.memory_kib..=self.max.memory_kib).contains(&p.memory_kib)
            && u64::from(p.memory_kib) * u64::from(p.iterations) <= MAX_KDF_COST_KIB_PASSES
            && (self.min.iterations..=self.max.iterations).contains(&p.iterations)
            && (self.min.parallelism..=self.max.parallelism).contains(&p.parallelism)
            && p.memory_kib >= 8 * p.parallelism;
        if ok {
            Ok(())
        } else {
            Err(KeystoreError::KdfParamsOutOfPolicy {
                params: *p,
                min: self.min,
                max: self.max,
            })
        }
    }
}

/// Keystore failures; each case is distinct (see the module docs).
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// A passphrase or PIN file that is not a small, regular, owner-only file.
    #[error("secret file {path} {detail}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: &'static str,
    },
    /// File system failure.
    #[error("keystore {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The passphrase environment variable is unset or empty.
    #[error("passphrase environment variable {var} is unset or empty")]
    PassphraseEnv {
        /// Its name.
        var: String,
    },
    /// The passphrase is too short to protect a key.
    #[error("passphrase must be at least {MIN_PASSPHRASE_LEN} characters")]
    PassphraseTooShort,
    /// The passphrase does not open this file.
    #[error("wrong passphrase for {path}")]
    WrongPassphrase {
        /// The file.
        path: PathBuf,
    },
    /// The file is damaged or was edited.
    #[error("keystore file {path} is corrupted: {detail}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file has a version this code does not read.
    #[error("keystore file {path} has unknown version {found} (supported: {KEYSTORE_VERSION})")]
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// The file holds a key of another role.
    #[error("keystore file {path} holds a {found} key, expected {expected}")]
    WrongRole {
        /// The file.
        path: PathBuf,
        /// Expected role name.
        expected: &'static str,
        /// Role name in the file.
        found: String,
    },
    /// The file belongs to another validator.
    #[error("keystore file {path} belongs to validator {found}, expected {expected}")]
    WrongValidator {
        /// The file.
        path: PathBuf,
        /// Expected validator.
        expected: u32,
        /// Validator in the file.
        found: u32,
    },
    /// The file's Argon2id parameters are outside the policy.
    #[error("Argon2id parameters {params:?} outside the allowed range {min:?}..={max:?}")]
    KdfParamsOutOfPolicy {
        /// Parameters found.
        params: KdfParams,
        /// Minimums.
        min: KdfParams,
        /// Maximums.
        max: KdfParams,
    },
    /// The key file is readable by group or others.
    #[error("keystore file {path} has mode {mode:o}; it must be 0600 or stricter")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Refusing to overwrite an existing key.
    #[error("keystore file {path} already exists")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfSection {
    algorithm: String,
    version: u32,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherSection {
    algorithm: String,
    nonce: String,
    ciphertext: String,
}

/// A keystore file as stored (public parts only; the ciphertext is opaque).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeystoreFile {
    format: String,
    version: u32,
    validator_id: u32,
    role: String,
    algorithm: String,
    public_key: String,
    kdf: KdfSection,
    cipher: CipherSection,
    key_check: String,
}

/// What can be learnt from a keystore file without the passphrase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The validator.
    pub validator_id: ValidatorId,
    /// The role.
    pub role: KeyRole,
    /// `ML-DSA-44` or `ML-KEM-768`.
    pub algorithm: &'static str,
    /// The public key bytes.
    pub public_key: Vec<u8>,
    /// The Argon2id parameters.
    pub kdf: KdfParams,
}

/// A decrypted key. Secrets are wiped on drop; `Debug` shows public parts.
pub enum UnlockedKey {
    /// An ML-DSA-44 key pair (consensus, batch signing).
    MlDsa44(KeyPair),
    /// An ML-KEM-768 key pair (P2P identity) and its seed `d || z`.
    MlKem768(Box<KemKeyPair>, Zeroizing<[u8; 2 * ML_KEM_768_SEED_BYTES]>),
}

impl fmt::Debug for UnlockedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnlockedKey::MlDsa44(k) => f.debug_tuple("MlDsa44").field(k.public_key()).finish(),
            UnlockedKey::MlKem768(..) => f.write_str("MlKem768(<key pair>)"),
        }
    }
}

impl UnlockedKey {
    /// The ML-DSA-44 key pair, if this is one.
    #[must_use]
    pub fn into_signing_key(self) -> Option<KeyPair> {
        match self {
            UnlockedKey::MlDsa44(k) => Some(k),
            UnlockedKey::MlKem768(..) => None,
        }
    }

    /// The ML-KEM-768 seed halves `(d, z)` of a P2P identity key (for
    /// `qbind_net::StaticIdentity::from_seed`). Secret: do not log.
    #[must_use]
    #[allow(clippy::type_complexity)]
    pub fn kem_seed(
        &self,
    ) -> Option<(
        Zeroizing<[u8; ML_KEM_768_SEED_BYTES]>,
        Zeroizing<[u8; ML_KEM_768_SEED_BYTES]>,
    )> {
        match self {
            UnlockedKey::MlKem768(_, seed) => {
                let mut d = Zeroizing::new([0u8; ML_KEM_768_SEED_BYTES]);
                let mut z = Zeroizing::new([0u8; ML_KEM_768_SEED_BYTES]);
                d.copy_from_slice(&seed[..ML_KEM_768_SEED_BYTES]);
                z.copy_from_slice(&seed[ML_KEM_768_SEED_BYTES..]);
                Some((d, z))
            }
            UnlockedKey::MlDsa44(_) => None,
        }
    }

    /// The public key bytes.
    #[must_use]
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match self {
            UnlockedKey::MlDsa44(k) => k.public_key().as_bytes().to_vec(),
            UnlockedKey::MlKem768(k, _) => k.encapsulation_key().as_bytes().to_vec(),
        }
    }
}

fn role_file_stem(role: KeyRole) -> &'static str {
    match role {
        KeyRole::Consensus => "consensus",
        KeyRole::BatchSigning => "batch_signing",
        KeyRole::P2pIdentity => "p2p_identity",
    }
}

fn role_algorithm(role: KeyRole) -> &'static str {
    match role {
        KeyRole::Consensus | KeyRole::BatchSigning => "ML-DSA-44",
        KeyRole::P2pIdentity => "ML-KEM-768",
    }
}

fn seed_len(role: KeyRole) -> usize {
    match role {
        KeyRole::Consensus | KeyRole::BatchSigning => 32,
        KeyRole::P2pIdentity => 2 * ML_KEM_768_SEED_BYTES,
    }
}

/// Path of the encrypted key file of `role` in keystore `dir`.
#[must_use]
pub fn key_path(dir: &Path, role: KeyRole) -> PathBuf {
    dir.join(format!("{}.key", role_file_stem(role)))
}

/// Path of the public key file of `role` in keystore `dir`.
#[must_use]
pub fn pub_path(dir: &Path, role: KeyRole) -> PathBuf {
    dir.join(format!("{}.pub", role_file_stem(role)))
}

/// Derive the public key of `role` from its secret seed.
fn unlock_seed(role: KeyRole, seed: &[u8]) -> Option<UnlockedKey> {
    match role {
        KeyRole::Consensus | KeyRole::BatchSigning => {
            let arr: &[u8; 32] = seed.try_into().ok()?;
            Some(UnlockedKey::MlDsa44(KeyPair::from_seed(arr)))
        }
        KeyRole::P2pIdentity => {
            let d: &[u8; ML_KEM_768_SEED_BYTES] =
                seed.get(..ML_KEM_768_SEED_BYTES)?.try_into().ok()?;
            let z: &[u8; ML_KEM_768_SEED_BYTES] =
                seed.get(ML_KEM_768_SEED_BYTES..)?.try_into().ok()?;
            let mut both = Zeroizing::new([0u8; 2 * ML_KEM_768_SEED_BYTES]);
            both.copy_from_slice(seed);
            Some(UnlockedKey::MlKem768(
                Box::new(KemKeyPair::from_seed(d, z)),
                both,
            ))
        }
    }
}

/// Derive AEAD key and key-check value from the passphrase.
fn derive(
    passphrase: &Passphrase,
    salt: &[u8],
    p: &KdfParams,
) -> Result<(Zeroizing<[u8; 32]>, [u8; 32]), String> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(64))
        .map_err(|e| e.to_string())?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut okm = Zeroizing::new([0u8; 64]);
    argon
        .hash_password_into(passphrase.bytes(), salt, okm.as_mut())
        .map_err(|e| e.to_string())?;
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut h = Sha3_256::new();
    h.update(CHECK_TAG);
    h.update(&okm[32..]);
    Ok((key, h.finalize().into()))
}

fn aad(f: &KeystoreFile) -> Vec<u8> {
    // Unambiguous: every variable-length field is length-prefixed.
    let mut out = Vec::new();
    for s in [
        f.format.as_str(),
        f.role.as_str(),
        f.algorithm.as_str(),
        f.public_key.as_str(),
        f.kdf.algorithm.as_str(),
        f.kdf.salt.as_str(),
        f.cipher.algorithm.as_str(),
    ] {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    for n in [
        f.version,
        f.validator_id,
        f.kdf.version,
        f.kdf.memory_kib,
        f.kdf.iterations,
        f.kdf.parallelism,
    ] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out
}

/// Encrypt `seed` for `role` and write `<role>.key` and `<role>.pub` into
/// `dir` (created with mode 0700). Refuses to overwrite an existing key.
///
/// # Errors
/// [`KeystoreError`].
pub fn write_key(
    dir: &Path,
    validator: ValidatorId,
    role: KeyRole,
    seed: &[u8],
    passphrase: &Passphrase,
    params: KdfParams,
    policy: &KdfPolicy,
) -> Result<Vec<u8>, KeystoreError> {
    policy.check(&params)?;
    if passphrase.0.chars().count() < MIN_PASSPHRASE_LEN {
        return Err(KeystoreError::PassphraseTooShort);
    }
    let path = key_path(dir, role);
    let unlocked = unlock_seed(role, seed).ok_or_else(|| KeystoreError::Corrupted {
        path: path.clone(),
        detail: format!("seed must be {} bytes", seed_len(role)),
    })?;
    if path.exists() {
        return Err(KeystoreError::AlreadyExists { path });
    }
    let public_key = unlocked.public_key_bytes();
    let mut salt = [0u8; SALT_BYTES];
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let (key, check) =
        derive(passphrase, &salt, &params).map_err(|detail| KeystoreError::Corrupted {
            path: path.clone(),
            detail,
        })?;
    let mut file = KeystoreFile {
        format: KEYSTORE_FORMAT.to_owned(),
        version: KEYSTORE_VERSION,
        validator_id: validator.0,
        role: role.cli_name().to_owned(),
        algorithm: role_algorithm(role).to_owned(),
        public_key: hex::encode(&public_key),
        kdf: KdfSection {
            algorithm: "argon2id".to_owned(),
            version: 0x13,
            memory_kib: params.memory_kib,
            iterations: params.iterations,
            parallelism: params.parallelism,
            salt: hex::encode(salt),
        },
        cipher: CipherSection {
            algorithm: "xchacha20poly1305".to_owned(),
            nonce: hex::encode(nonce),
            ciphertext: String::new(),
        },
        key_check: hex::encode(check),
    };
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let ad = aad(&file);
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: seed,
                aad: &ad,
            },
        )
        .map_err(|_| KeystoreError::Corrupted {
            path: path.clone(),
            detail: "encryption failed".into(),
        })?;
    file.cipher.ciphertext = hex::encode(ct);
    let json = serde_json::to_vec_pretty(&file).map_err(|e| KeystoreError::Corrupted {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    create_private_dir(dir).map_err(|source| KeystoreError::Io {
        path: dir.to_owned(),
        source,
    })?;
    write_atomic(&path, &json).map_err(|source| KeystoreError::Io {
        path: path.clone(),
        source,
    })?;
    let pub_file = pub_path(dir, role);
    let mut text = hex::encode(&public_key);
    text.push('\n');
    write_atomic(&pub_file, text.as_bytes()).map_err(|source| KeystoreError::Io {
        path: pub_file,
        source,
    })?;
    tracing::info!(validator = validator.0, role = role.cli_name(), path = %path.display(), "wrote encrypted key");
    Ok(public_key)
}

/// Generate a fresh random key for `role` and write it (see [`write_key`]).
///
/// # Errors
/// [`KeystoreError`].
pub fn generate_key(
    dir: &Path,
    validator: ValidatorId,
    role: KeyRole,
    passphrase: &Passphrase,
    params: KdfParams,
    policy: &KdfPolicy,
) -> Result<Vec<u8>, KeystoreError> {
    let mut seed = Zeroizing::new(vec![0u8; seed_len(role)]);
    rand::rngs::OsRng.fill_bytes(&mut seed);
    write_key(dir, validator, role, &seed, passphrase, params, policy)
}

fn read_file(path: &Path) -> Result<(KeystoreFile, KdfParams, KeyRole), KeystoreError> {
    let corrupted = |detail: &str| KeystoreError::Corrupted {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    let io = |source| KeystoreError::Io {
        path: path.to_owned(),
        source,
    };
    // One handle: the checks and the read see the same file, and the read
    // is bounded whatever the file turns out to be.
    let f = fs::File::open(path).map_err(io)?;
    check_open_file(&f, path)?;
    let mut bytes = Vec::new();
    (&f).take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(corrupted("file too large"));
    }
    parse_file(&bytes, path)
}

fn parse_file(
    bytes: &[u8],
    path: &Path,
) -> Result<(KeystoreFile, KdfParams, KeyRole), KeystoreError> {
    let corrupted = |detail: &str| KeystoreError::Corrupted {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| corrupted("not valid JSON"))?;
    if value.get("format").and_then(serde_json::Value::as_str) != Some(KEYSTORE_FORMAT) {
        return Err(corrupted("missing or wrong `format`"));
    }
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| corrupted("missing `version`"))?;
    if version != u64::from(KEYSTORE_VERSION) {
        return Err(KeystoreError::UnknownVersion {
            path: path.to_owned(),
            found: version,
        });
    }
    let file: KeystoreFile =
        serde_json::from_value(value).map_err(|e| corrupted(&format!("bad field: {e}")))?;
    let role = KeyRole::from_cli_name(&file.role).ok_or_else(|| corrupted("unknown role"))?;
    if file.algorithm != role_algorithm(role)
        || file.kdf.algorithm != "argon2id"
        || file.kdf.version != 0x13
        || file.cipher.algorithm != "xchacha20poly1305"
    {
        return Err(corrupted("unsupported algorithm"));
    }
    let params = KdfParams {
        memory_kib: file.kdf.memory_kib,
        iterations: file.kdf.iterations,
        parallelism: file.kdf.parallelism,
    };
    Ok((file, params, role))
}

/// Parse the public parts of keystore file contents (no passphrase, no
/// file system; the entry point the fuzzer drives).
///
/// # Errors
/// [`KeystoreError::Corrupted`] or [`KeystoreError::UnknownVersion`].
pub fn inspect_bytes(bytes: &[u8]) -> Result<KeyInfo, KeystoreError> {
    let path = Path::new("<bytes>");
    let (file, kdf, role) = parse_file(bytes, path)?;
    key_info(file, kdf, role, path)
}

fn key_info(
    file: KeystoreFile,
    kdf: KdfParams,
    role: KeyRole,
    path: &Path,
) -> Result<KeyInfo, KeystoreError> {
    let public_key = hex::decode(&file.public_key).map_err(|_| KeystoreError::Corrupted {
        path: path.to_owned(),
        detail: "public key is not hex".into(),
    })?;
    if public_key.len() != role.public_key_len() {
        return Err(KeystoreError::Corrupted {
            path: path.to_owned(),
            detail: "public key has the wrong length".into(),
        });
    }
    Ok(KeyInfo {
        validator_id: ValidatorId(file.validator_id),
        role,
        algorithm: role_algorithm(role),
        public_key,
        kdf,
    })
}

/// Read the public parts of a keystore file (no passphrase needed).
///
/// # Errors
/// [`KeystoreError`] except the passphrase and role cases.
pub fn inspect(path: &Path) -> Result<KeyInfo, KeystoreError> {
    let (file, kdf, role) = read_file(path)?;
    key_info(file, kdf, role, path)
}

/// Decrypt the key of `role` from keystore `dir`.
///
/// `expected_validator`, when given, must match the file's validator.
///
/// # Errors
/// [`KeystoreError`]: every failure case is distinct.
pub fn load_key(
    dir: &Path,
    expected_validator: Option<ValidatorId>,
    role: KeyRole,
    passphrase: &Passphrase,
    policy: &KdfPolicy,
) -> Result<UnlockedKey, KeystoreError> {
    load_key_file(
        &key_path(dir, role),
        expected_validator,
        role,
        passphrase,
        policy,
    )
}

/// Decrypt the key in the file `path` (see [`load_key`]).
///
/// # Errors
/// [`KeystoreError`].
pub fn load_key_file(
    path: &Path,
    expected_validator: Option<ValidatorId>,
    role: KeyRole,
    passphrase: &Passphrase,
    policy: &KdfPolicy,
) -> Result<UnlockedKey, KeystoreError> {
    let corrupted = |detail: &str| KeystoreError::Corrupted {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    let (file, params, file_role) = read_file(path)?;
    if file_role != role {
        return Err(KeystoreError::WrongRole {
            path: path.to_owned(),
            expected: role.cli_name(),
            found: file.role,
        });
    }
    if let Some(v) = expected_validator
        && v.0 != file.validator_id
    {
        return Err(KeystoreError::WrongValidator {
            path: path.to_owned(),
            expected: v.0,
            found: file.validator_id,
        });
    }
    policy.check(&params)?;
    let salt = hex::decode(&file.kdf.salt).map_err(|_| corrupted("salt is not hex"))?;
    let nonce = hex::decode(&file.cipher.nonce).map_err(|_| corrupted("nonce is not hex"))?;
    let ct =
        hex::decode(&file.cipher.ciphertext).map_err(|_| corrupted("ciphertext is not hex"))?;
    let check = hex::decode(&file.key_check).map_err(|_| corrupted("key check is not hex"))?;
    let public_key =
        hex::decode(&file.public_key).map_err(|_| corrupted("public key is not hex"))?;
    if salt.len() != SALT_BYTES || nonce.len() != NONCE_BYTES || check.len() != 32 {
        return Err(corrupted("salt, nonce or key check has the wrong length"));
    }
    let (key, expected_check) = derive(passphrase, &salt, &params).map_err(|e| corrupted(&e))?;
    if expected_check.as_slice() != check.as_slice() {
        return Err(KeystoreError::WrongPassphrase {
            path: path.to_owned(),
        });
    }
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let seed = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: &aad(&file),
                },
            )
            .map_err(|_| corrupted("authenticated decryption failed"))?,
    );
    let unlocked =
        unlock_seed(role, &seed).ok_or_else(|| corrupted("secret has the wrong length"))?;
    if unlocked.public_key_bytes() != public_key {
        return Err(corrupted("secret does not match the stated public key"));
    }
    tracing::info!(
        validator = file.validator_id,
        role = role.cli_name(),
        "unlocked keystore key"
    );
    Ok(unlocked)
}

/// Read a `*.pub` file (lowercase hex, optional trailing newline).
///
/// # Errors
/// [`KeystoreError::Io`] or [`KeystoreError::Corrupted`].
pub fn read_pub_file(path: &Path, role: KeyRole) -> Result<Vec<u8>, KeystoreError> {
    let text = fs::read_to_string(path).map_err(|source| KeystoreError::Io {
        path: path.to_owned(),
        source,
    })?;
    let bytes = hex::decode(text.trim()).map_err(|_| KeystoreError::Corrupted {
        path: path.to_owned(),
        detail: "public key file is not hex".into(),
    })?;
    if bytes.len() != role.public_key_len() {
        return Err(KeystoreError::Corrupted {
            path: path.to_owned(),
            detail: format!(
                "public key is {} bytes, a {} key has {}",
                bytes.len(),
                role.cli_name(),
                role.public_key_len()
            ),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: KdfPolicy = KdfPolicy::INSECURE_TEST_ONLY;
    const PARAMS: KdfParams = KdfParams::INSECURE_TEST;

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.to_owned())
    }

    fn setup(seed: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ks = dir.path().join("ks");
        write_key(
            &ks,
            ValidatorId(42),
            KeyRole::Consensus,
            seed,
            &pass("correct horse battery"),
            PARAMS,
            &POLICY,
        )
        .unwrap();
        (dir, ks)
    }

    #[test]
    fn round_trip_every_role() {
        let dir = tempfile::tempdir().unwrap();
        for role in KeyRole::ALL {
            let pk = generate_key(
                dir.path(),
                ValidatorId(7),
                role,
                &pass("correct horse battery"),
                PARAMS,
                &POLICY,
            )
            .unwrap();
            let k = load_key(
                dir.path(),
                Some(ValidatorId(7)),
                role,
                &pass("correct horse battery"),
                &POLICY,
            )
            .unwrap();
            assert_eq!(k.public_key_bytes(), pk);
            assert_eq!(
                read_pub_file(&pub_path(dir.path(), role), role).unwrap(),
                pk
            );
            let info = inspect(&key_path(dir.path(), role)).unwrap();
            assert_eq!(info.public_key, pk);
            assert_eq!(info.role, role);
        }
        let seed_key = KeyPair::from_seed(&[3u8; 32]);
        let (_d, ks) = setup(&[3u8; 32]);
        let k = load_key(
            &ks,
            None,
            KeyRole::Consensus,
            &pass("correct horse battery"),
            &POLICY,
        )
        .unwrap()
        .into_signing_key()
        .unwrap();
        assert_eq!(k.public_key(), seed_key.public_key());
    }

    #[test]
    fn each_error_is_distinct() {
        let (_d, ks) = setup(&[5u8; 32]);
        let p = key_path(&ks, KeyRole::Consensus);
        let good = pass("correct horse battery");
        assert!(matches!(
            load_key(
                &ks,
                None,
                KeyRole::Consensus,
                &pass("wrong horse battery"),
                &POLICY
            ),
            Err(KeystoreError::WrongPassphrase { .. })
        ));
        assert!(matches!(
            load_key(
                &ks,
                Some(ValidatorId(1)),
                KeyRole::Consensus,
                &good,
                &POLICY
            ),
            Err(KeystoreError::WrongValidator {
                expected: 1,
                found: 42,
                ..
            })
        ));
        // Wrong role: the consensus file presented as batch-signing.
        fs::copy(&p, key_path(&ks, KeyRole::BatchSigning)).unwrap();
        assert!(matches!(
            load_key(&ks, None, KeyRole::BatchSigning, &good, &POLICY),
            Err(KeystoreError::WrongRole { .. })
        ));
        // Production policy refuses the cheap test parameters.
        assert!(matches!(
            load_key(&ks, None, KeyRole::Consensus, &good, &KdfPolicy::PRODUCTION),
            Err(KeystoreError::KdfParamsOutOfPolicy { .. })
        ));
        let original = fs::read_to_string(&p).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
        // Unknown version.
        v["version"] = 2.into();
        write_atomic(&p, v.to_string().as_bytes()).unwrap();
        assert!(matches!(
            load_key(&ks, None, KeyRole::Consensus, &good, &POLICY),
            Err(KeystoreError::UnknownVersion { found: 2, .. })
        ));
        // Flipped ciphertext: key check passes, AEAD fails.
        let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
        let ct = v["cipher"]["ciphertext"].as_str().unwrap().to_owned();
        let flipped = format!(
            "{}{}",
            if ct.starts_with('0') { '1' } else { '0' },
            &ct[1..]
        );
        v["cipher"]["ciphertext"] = flipped.into();
        write_atomic(&p, v.to_string().as_bytes()).unwrap();
        assert!(matches!(
            load_key(&ks, None, KeyRole::Consensus, &good, &POLICY),
            Err(KeystoreError::Corrupted { .. })
        ));
        // Edited public key (associated data): corrupted.
        let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
        let other = hex::encode(KeyPair::from_seed(&[9u8; 32]).public_key().as_bytes());
        v["public_key"] = other.into();
        write_atomic(&p, v.to_string().as_bytes()).unwrap();
        assert!(matches!(
            load_key(&ks, None, KeyRole::Consensus, &good, &POLICY),
            Err(KeystoreError::Corrupted { .. })
        ));
        // Truncated JSON.
        write_atomic(&p, &original.as_bytes()[..original.len() / 2]).unwrap();
        assert!(matches!(
            load_key(&ks, None, KeyRole::Consensus, &good, &POLICY),
            Err(KeystoreError::Corrupted { .. })
        ));
        // Loose permissions.
        write_atomic(&p, original.as_bytes()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                load_key(&ks, None, KeyRole::Consensus, &good, &POLICY),
                Err(KeystoreError::InsecurePermissions { mode: 0o644, .. })
            ));
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
        load_key(&ks, None, KeyRole::Consensus, &good, &POLICY).unwrap();
        // Refuses to overwrite, short passphrases and weak parameters.
        assert!(matches!(
            write_key(
                &ks,
                ValidatorId(42),
                KeyRole::Consensus,
                &[1; 32],
                &good,
                PARAMS,
                &POLICY
            ),
            Err(KeystoreError::AlreadyExists { .. })
        ));
        let d2 = tempfile::tempdir().unwrap();
        assert!(matches!(
            write_key(
                d2.path(),
                ValidatorId(1),
                KeyRole::Consensus,
                &[1; 32],
                &pass("short"),
                PARAMS,
                &POLICY
            ),
            Err(KeystoreError::PassphraseTooShort)
        ));
        assert!(matches!(
            write_key(
                d2.path(),
                ValidatorId(1),
                KeyRole::Consensus,
                &[1; 32],
                &good,
                PARAMS,
                &KdfPolicy::PRODUCTION
            ),
            Err(KeystoreError::KdfParamsOutOfPolicy { .. })
        ));
    }

    #[test]
    fn files_are_private() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let (_d, ks) = setup(&[1u8; 32]);
            let mode = fs::metadata(key_path(&ks, KeyRole::Consensus))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let dmode = fs::metadata(&ks).unwrap().permissions().mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
    }

    #[test]
    fn passphrase_debug_is_redacted() {
        let p = pass("correct horse battery");
        assert!(!format!("{p:?}").contains("horse"));
    }

    /// Issue #22 finding 4: a tampered key file cannot make start-up run
    /// Argon2id over gigabytes for dozens of passes.
    #[test]
    fn read_side_kdf_bounds_refuse_start_up_stalling_parameters() {
        for huge in [
            KdfParams {
                memory_kib: 4 * 1024 * 1024,
                iterations: 64,
                parallelism: 16,
            },
            KdfParams {
                memory_kib: 2 * 1024 * 1024,
                iterations: 3,
                parallelism: 1,
            },
            KdfParams {
                memory_kib: 1024 * 1024,
                iterations: 16,
                parallelism: 1,
            },
        ] {
            assert!(KdfPolicy::PRODUCTION.check(&huge).is_err(), "{huge:?}");
            assert!(POLICY.check(&huge).is_err(), "{huge:?}");
        }
        KdfPolicy::PRODUCTION.check(&KdfParams::DEFAULT).unwrap();
        // The tampered file is refused before any KDF work.
        let (_d, ks) = setup(&[1u8; 32]);
        let path = key_path(&ks, KeyRole::Consensus);
        let text = fs::read_to_string(&path).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["kdf"]["memory_kib"] = (4u32 * 1024 * 1024).into();
        v["kdf"]["iterations"] = 64.into();
        write_atomic(&path, v.to_string().as_bytes()).unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(
            load_key(
                &ks,
                None,
                KeyRole::Consensus,
                &pass("correct horse battery"),
                &POLICY
            ),
            Err(KeystoreError::KdfParamsOutOfPolicy { .. })
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    /// Issue #22 finding 4: the key file is read through one handle with a
    /// size bound, whatever it is (here a FIFO that would feed 8 MiB).
    #[cfg(unix)]
    #[test]
    fn key_file_reads_are_bounded_whatever_the_file_is() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("consensus.key");
        let made = std::process::Command::new("mkfifo")
            .arg("-m")
            .arg("0600")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let writer_path = fifo.clone();
        let writer = std::thread::spawn(move || {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .open(writer_path)
                .unwrap();
            let chunk = vec![b' '; 64 * 1024];
            let mut written = 0usize;
            for _ in 0..128 {
                match f.write_all(&chunk) {
                    Ok(()) => written += chunk.len(),
                    Err(_) => break,
                }
            }
            written
        });
        assert!(inspect(&fifo).is_err());
        let written = writer.join().unwrap();
        assert!(
            written <= 2 * MAX_FILE_BYTES as usize,
            "the reader consumed {written} bytes"
        );
    }

    /// Issue #22 finding 6: `--passphrase-file` files must be regular,
    /// owner-only and small; one trailing newline is not part of the secret.
    #[cfg(unix)]
    #[test]
    fn passphrase_files_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pass");
        fs::write(&p, b"correct horse battery\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Passphrase::from_file(&p).unwrap().bytes(),
            b"correct horse battery"
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            Passphrase::from_file(&p),
            Err(KeystoreError::InsecurePermissions { .. })
        ));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(Passphrase::from_file(&link).is_err());
        let big = dir.path().join("big");
        fs::write(&big, vec![b'a'; MAX_SECRET_FILE_BYTES as usize + 1]).unwrap();
        fs::set_permissions(&big, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Passphrase::from_file(&big).is_err());
        let empty = dir.path().join("empty");
        fs::write(&empty, b"\n").unwrap();
        fs::set_permissions(&empty, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Passphrase::from_file(&empty).is_err());
        assert!(Passphrase::from_file(dir.path()).is_err());
    }
}
