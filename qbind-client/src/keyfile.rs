//! Account key files (docs/api.md "Account key file").
//!
//! A JSON object, written with mode 0600 and never over an existing file:
//!
//! ```json
//! { "format": "qbind-account-key", "version": 1, "algorithm": "ML-DSA-44",
//!   "seed": "<64 hex>", "public_key": "<2,624 hex>", "account": "<64 hex>" }
//! ```
//!
//! `seed` is the FIPS 204 key-generation seed ξ; the key pair is derived from
//! it on load, and `public_key` and `account` must match what it derives
//! (a damaged or hand-edited file is refused, not used to sign). The seed is
//! not encrypted: keep the file on a disk only its owner can read; on Unix a
//! file that group or others can access is refused.

use std::io::Write;
use std::path::{Path, PathBuf};

use qbind_core::crypto::KeyPair;
use qbind_core::types::AccountId;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// `format` of an account key file.
pub const KEY_FILE_FORMAT: &str = "qbind-account-key";
/// `version` this build writes and reads.
pub const KEY_FILE_VERSION: u32 = 1;
/// `algorithm` of an account key.
pub const KEY_FILE_ALGORITHM: &str = "ML-DSA-44";
/// Largest key file read (a valid one is about 2.8 KB).
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Why a key file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading, creating or writing the file failed (including: it exists).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Group or others can access the file.
    #[error("{path}: mode {mode:o} lets others read the key; chmod 600 it")]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than any key file.
    #[error("{path}: {len} bytes is not a key file")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// Not a key file of this format and version, or inconsistent.
    #[error("{path}: not a valid account key file: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    format: String,
    version: u32,
    algorithm: String,
    seed: String,
    public_key: String,
    account: String,
}

impl Drop for KeyFileJson {
    fn drop(&mut self) {
        self.seed.zeroize();
    }
}

/// A fresh account key from the operating system's random source.
#[must_use]
pub fn generate_account_key() -> KeyPair {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(seed.as_mut());
    KeyPair::from_seed(&seed)
}

/// The account id of `key`.
#[must_use]
pub fn account_of(key: &KeyPair) -> AccountId {
    AccountId::from_public_key(key.public_key())
}

/// Write `key` to a new file at `path` with mode 0600; refuses to replace an
/// existing file.
pub fn write_key_file(path: &Path, key: &KeyPair) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let json = KeyFileJson {
        format: KEY_FILE_FORMAT.into(),
        version: KEY_FILE_VERSION,
        algorithm: KEY_FILE_ALGORITHM.into(),
        seed: hex::encode(key.seed_bytes()),
        public_key: hex::encode(key.public_key().as_bytes()),
        account: hex::encode(account_of(key).0),
    };
    let text = Zeroizing::new(
        serde_json::to_string_pretty(&json).map_err(|e| io(std::io::Error::other(e)))?,
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)
}

/// Read and check the key file at `path`.
pub fn read_key_file(path: &Path) -> Result<KeyPair, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |reason| KeyFileError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyFileError::TooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    let text = Zeroizing::new(std::fs::read(path).map_err(io)?);
    let json: KeyFileJson =
        serde_json::from_slice(&text).map_err(|_| invalid("not the key file JSON"))?;
    if json.format != KEY_FILE_FORMAT {
        return Err(invalid("format is not qbind-account-key"));
    }
    if json.version != KEY_FILE_VERSION {
        return Err(invalid("unsupported version"));
    }
    if json.algorithm != KEY_FILE_ALGORITHM {
        return Err(invalid("algorithm is not ML-DSA-44"));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(&json.seed, seed.as_mut())
        .map_err(|_| invalid("seed is not 64 hex digits"))?;
    let key = KeyPair::from_seed(&seed);
    if hex::encode(key.public_key().as_bytes()) != json.public_key.to_ascii_lowercase() {
        return Err(invalid("public_key does not match the seed"));
    }
    if hex::encode(account_of(&key).0) != json.account.to_ascii_lowercase() {
        return Err(invalid("account does not match the public key"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_key_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.key");
        let key = generate_account_key();
        write_key_file(&path, &key).unwrap();
        let back = read_key_file(&path).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                read_key_file(&path),
                Err(KeyFileError::TooOpen { .. })
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        // Never over an existing file.
        assert!(matches!(
            write_key_file(&path, &generate_account_key()),
            Err(KeyFileError::Io { .. })
        ));
        assert_eq!(read_key_file(&path).unwrap().public_key(), key.public_key());
    }

    #[test]
    fn a_damaged_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_key_file(&path, &KeyPair::from_seed(&[5u8; 32])).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let seed = hex::encode([5u8; 32]);
        let damaged = text.replace(&seed, &hex::encode([6u8; 32]));
        std::fs::write(&path, damaged).unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(KeyFileError::Invalid { .. })
        ));
        std::fs::write(&path, "{}").unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(KeyFileError::Invalid { .. })
        ));
    }
}
