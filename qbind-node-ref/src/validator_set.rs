//! The validator-set file (`qbind-node --validator-set FILE`): who the
//! validators are, their public keys from `qbind-keygen`, where they listen,
//! their stake, and the consensus-key rotations in force. Every validator of
//! a network loads the same file; see `docs/node.md` for the format.
//!
//! ```toml
//! network = "devnet"
//! epoch_length = 100          # optional; key rotations take effect per epoch
//!
//! [[validator]]
//! id = 0
//! stake = 1
//! address = "127.0.0.1:29000"
//! consensus_pub_file = "v0/consensus.pub"   # or consensus_pub = "<hex>"
//! p2p_pub_file = "v0/p2p_identity.pub"      # or p2p_pub = "<hex>"
//!
//! [[rotation]]
//! file = "rotation-event.json"              # from qbind-key-rotation
//! ```
//!
//! Relative paths are relative to the file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use qbind_core::crypto::PublicKey;
use qbind_core::key_rotation::{KeyRole, SignedKeyRotationEvent, ValidatorKeyRegistry};
use qbind_core::types::{Epoch, NetworkEnvironment, ValidatorId};
use qbind_core::validator::{EpochSchedule, ValidatorSet};
use qbind_signer::rotation::RotationEventJson;
use serde::Deserialize;

/// Largest validator-set file read (a set of 1,000 validators with inline
/// hex keys is about 5 MB).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Why a validator-set file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorSetFileError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not valid TOML, or fields missing or unknown.
    #[error("validator set file: {0}")]
    Syntax(String),
    /// Valid TOML with invalid content.
    #[error("validator set file: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    network: String,
    #[serde(default)]
    epoch_length: Option<u64>,
    #[serde(default)]
    validator: Vec<ValidatorToml>,
    #[serde(default)]
    rotation: Vec<RotationToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidatorToml {
    id: u32,
    stake: u64,
    address: String,
    consensus_pub: Option<String>,
    consensus_pub_file: Option<PathBuf>,
    p2p_pub: Option<String>,
    p2p_pub_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotationToml {
    file: PathBuf,
}

/// One validator of the file.
#[derive(Clone, Debug)]
pub struct ValidatorEntry {
    /// Its id (position in the set).
    pub id: ValidatorId,
    /// Voting power.
    pub stake: u64,
    /// Where it accepts KEMTLS connections.
    pub address: SocketAddr,
    /// Its genesis ML-DSA-44 consensus key.
    pub consensus_key: PublicKey,
    /// Its ML-KEM-768 P2P identity key.
    pub p2p_key: qbind_net::PeerPublic,
}

/// A parsed, checked validator-set file.
#[derive(Clone, Debug)]
pub struct ValidatorSetFile {
    /// The network it is for.
    pub network: NetworkEnvironment,
    /// Consensus epoch length in blocks (`None`: one epoch for ever).
    pub epoch_length: Option<u64>,
    /// The validators, by id.
    pub validators: Vec<ValidatorEntry>,
    /// Consensus-key rotations, in the order they are applied.
    pub rotations: Vec<SignedKeyRotationEvent>,
}

pub(crate) fn read_text(path: &Path) -> Result<String, ValidatorSetFileError> {
    let io = |source| ValidatorSetFileError::Io {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE_BYTES {
        return Err(ValidatorSetFileError::Invalid(format!(
            "{} is {len} bytes, more than {MAX_FILE_BYTES}",
            path.display()
        )));
    }
    std::fs::read_to_string(path).map_err(io)
}

/// A key given inline (hex) or as a `.pub` file written by `qbind-keygen`.
pub(crate) fn key_bytes(
    inline: Option<&str>,
    file: Option<&Path>,
    base: &Path,
    what: &str,
    who: &str,
    role: KeyRole,
) -> Result<Vec<u8>, ValidatorSetFileError> {
    let invalid = |m: String| ValidatorSetFileError::Invalid(format!("{who}: {m}"));
    let text = match (inline, file) {
        (Some(hex), None) => hex.to_owned(),
        (None, Some(f)) => read_text(&base.join(f))?,
        _ => {
            return Err(invalid(format!(
                "give exactly one of {what} and {what}_file"
            )));
        }
    };
    let bytes = hex::decode(text.trim()).map_err(|_| invalid(format!("{what} is not hex")))?;
    if bytes.len() != role.public_key_len() {
        return Err(invalid(format!(
            "{what} has {} bytes, expected {}",
            bytes.len(),
            role.public_key_len()
        )));
    }
    Ok(bytes)
}

/// Parse a network name as in `--profile`.
#[must_use]
pub fn network_named(name: &str) -> Option<NetworkEnvironment> {
    match name {
        "devnet" => Some(NetworkEnvironment::Devnet),
        "testnet" => Some(NetworkEnvironment::Testnet),
        "mainnet" => Some(NetworkEnvironment::Mainnet),
        _ => None,
    }
}

impl ValidatorSetFile {
    /// Load and check the file at `path`.
    ///
    /// # Errors
    /// [`ValidatorSetFileError`].
    pub fn load(path: &Path) -> Result<Self, ValidatorSetFileError> {
        let text = read_text(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
    }

    /// Parse and check `text`; relative paths are resolved against `base`.
    ///
    /// Checks: a known network; ids `0..n` in order; non-zero stake with no
    /// overflow; keys of the right length that decode; distinct consensus
    /// keys, P2P keys and addresses; every rotation a signed consensus-key
    /// rotation that applies in order (see [`ValidatorSetFile::key_registry`]).
    ///
    /// # Errors
    /// [`ValidatorSetFileError`].
    pub fn parse(text: &str, base: &Path) -> Result<Self, ValidatorSetFileError> {
        let raw: FileToml =
            toml::from_str(text).map_err(|e| ValidatorSetFileError::Syntax(e.to_string()))?;
        let invalid = ValidatorSetFileError::Invalid;
        let network = network_named(&raw.network)
            .ok_or_else(|| invalid(format!("unknown network {:?}", raw.network)))?;
        if raw.epoch_length == Some(0) {
            return Err(invalid("epoch_length must be at least 1".into()));
        }
        if raw.validator.is_empty() {
            return Err(invalid("no [[validator]] entries".into()));
        }
        let mut validators = Vec::with_capacity(raw.validator.len());
        for (pos, v) in raw.validator.iter().enumerate() {
            if v.id as usize != pos {
                return Err(invalid(format!(
                    "validator at position {pos} has id {}; ids must be 0..n in order",
                    v.id
                )));
            }
            let address: SocketAddr = v.address.parse().map_err(|_| {
                invalid(format!(
                    "validator {}: address {:?} is not IP:port",
                    v.id, v.address
                ))
            })?;
            let consensus = key_bytes(
                v.consensus_pub.as_deref(),
                v.consensus_pub_file.as_deref(),
                base,
                "consensus_pub",
                &format!("validator {}", v.id),
                KeyRole::Consensus,
            )?;
            let p2p = key_bytes(
                v.p2p_pub.as_deref(),
                v.p2p_pub_file.as_deref(),
                base,
                "p2p_pub",
                &format!("validator {}", v.id),
                KeyRole::P2pIdentity,
            )?;
            let bad_key = |what: &str, e: &dyn std::fmt::Display| {
                invalid(format!("validator {}: {what}: {e}", v.id))
            };
            validators.push(ValidatorEntry {
                id: ValidatorId(v.id),
                stake: v.stake,
                address,
                consensus_key: PublicKey::from_bytes(&consensus)
                    .map_err(|e| bad_key("consensus_pub", &e))?,
                p2p_key: qbind_net::PeerPublic::from_bytes(&p2p)
                    .map_err(|e| bad_key("p2p_pub", &e))?,
            });
        }
        for (i, a) in validators.iter().enumerate() {
            for b in &validators[..i] {
                let clash = if a.consensus_key == b.consensus_key {
                    Some("consensus key")
                } else if a.p2p_key.as_bytes() == b.p2p_key.as_bytes() {
                    Some("P2P key")
                } else if a.address == b.address {
                    Some("address")
                } else {
                    None
                };
                if let Some(what) = clash {
                    return Err(invalid(format!(
                        "validators {} and {} have the same {what}",
                        b.id.0, a.id.0
                    )));
                }
            }
        }
        let mut rotations = Vec::with_capacity(raw.rotation.len());
        for r in &raw.rotation {
            let path = base.join(&r.file);
            let json: RotationEventJson = serde_json::from_str(&read_text(&path)?)
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            let signed = json
                .to_signed()
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            rotations.push(signed);
        }
        if !rotations.is_empty() && raw.epoch_length.is_none() {
            return Err(invalid(
                "key rotations need epoch_length (without it the chain is one epoch and a \
                 rotation never takes effect)"
                    .into(),
            ));
        }
        let file = ValidatorSetFile {
            network,
            epoch_length: raw.epoch_length,
            validators,
            rotations,
        };
        file.validator_set()?;
        file.key_registry()?;
        Ok(file)
    }

    /// The consensus validator set (genesis keys and stakes).
    ///
    /// # Errors
    /// [`ValidatorSetFileError::Invalid`] (zero stake, stake overflow).
    pub fn validator_set(&self) -> Result<ValidatorSet, ValidatorSetFileError> {
        ValidatorSet::new(
            self.validators
                .iter()
                .map(|v| (v.consensus_key.clone(), v.stake))
                .collect(),
        )
        .map_err(|e| ValidatorSetFileError::Invalid(e.to_string()))
    }

    /// The key registry: every validator's genesis consensus key, then the
    /// rotations applied in file order, each as of the epoch before its
    /// `effective_epoch` (an emergency rotation as of its `effective_epoch`),
    /// so every node derives the same registry.
    ///
    /// # Errors
    /// [`ValidatorSetFileError::Invalid`] for a rotation of another key role,
    /// for another network, or that does not apply (bad signature, wrong old
    /// key, overlapping a pending rotation, effective epoch 0).
    pub fn key_registry(&self) -> Result<ValidatorKeyRegistry, ValidatorSetFileError> {
        let mut registry = ValidatorKeyRegistry::new();
        for v in &self.validators {
            registry.register(
                v.id,
                KeyRole::Consensus,
                v.consensus_key.as_bytes().to_vec(),
            );
        }
        for (n, r) in self.rotations.iter().enumerate() {
            let ev = &r.event;
            let invalid = |m: String| {
                ValidatorSetFileError::Invalid(format!(
                    "rotation {n} (validator {}): {m}",
                    ev.validator_id.0
                ))
            };
            if ev.key_kind != KeyRole::Consensus {
                return Err(invalid(format!(
                    "only consensus-key rotations are applied from this file; to change a \
                     {} key, update the validator entry",
                    ev.key_kind.cli_name()
                )));
            }
            let at = if ev.emergency {
                ev.effective_epoch
            } else {
                let Some(before) = ev.effective_epoch.0.checked_sub(1) else {
                    return Err(invalid("effective_epoch must be at least 1".into()));
                };
                Epoch(before)
            };
            registry
                .apply(r, self.network, at)
                .map_err(|e| invalid(e.to_string()))?;
        }
        Ok(registry)
    }

    /// The epoch schedule with the key registry attached.
    ///
    /// # Errors
    /// [`ValidatorSetFileError::Invalid`].
    pub fn schedule(&self) -> Result<EpochSchedule, ValidatorSetFileError> {
        let set = self.validator_set()?;
        let schedule = match self.epoch_length {
            Some(len) => EpochSchedule::with_epochs(len, set, Vec::new()),
            None => EpochSchedule::fixed(set),
        };
        schedule
            .with_key_registry(self.key_registry()?)
            .map_err(|e| ValidatorSetFileError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qbind_core::crypto::KeyPair;
    use qbind_core::key_rotation::KeyRotationEvent;

    const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

    fn key(i: u8) -> KeyPair {
        KeyPair::from_seed(&[i; 32])
    }

    fn p2p_hex(i: u8) -> String {
        hex::encode(
            qbind_net::StaticIdentity::from_seed(&[i; 32], &[i + 100; 32])
                .public()
                .as_bytes(),
        )
    }

    fn entry(i: u8) -> String {
        format!(
            "[[validator]]\nid = {i}\nstake = {}\naddress = \"127.0.0.1:{}\"\n\
             consensus_pub = \"{}\"\np2p_pub = \"{}\"\n",
            u64::from(i) + 1,
            29_000 + u16::from(i),
            hex::encode(key(i).public_key().as_bytes()),
            p2p_hex(i)
        )
    }

    fn four() -> String {
        format!(
            "network = \"devnet\"\nepoch_length = 10\n{}",
            (0..4).map(entry).collect::<String>()
        )
    }

    #[test]
    fn a_valid_file_gives_the_set_and_the_schedule() {
        let f = ValidatorSetFile::parse(&four(), Path::new(".")).unwrap();
        assert_eq!(f.network, ENV);
        assert_eq!(f.validators.len(), 4);
        assert_eq!(f.validators[2].address.port(), 29_002);
        let set = f.validator_set().unwrap();
        assert_eq!(set.total_stake(), 1 + 2 + 3 + 4);
        assert_eq!(f.schedule().unwrap().epoch_length(), 10);
    }

    #[test]
    fn keys_from_pub_files_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("v0")).unwrap();
        std::fs::write(
            dir.path().join("v0/consensus.pub"),
            format!("{}\n", hex::encode(key(0).public_key().as_bytes())),
        )
        .unwrap();
        std::fs::write(dir.path().join("v0/p2p.pub"), p2p_hex(0)).unwrap();
        let text = "network = \"devnet\"\n[[validator]]\nid = 0\nstake = 5\n\
                    address = \"127.0.0.1:1\"\nconsensus_pub_file = \"v0/consensus.pub\"\n\
                    p2p_pub_file = \"v0/p2p.pub\"\n";
        let path = dir.path().join("set.toml");
        std::fs::write(&path, text).unwrap();
        let f = ValidatorSetFile::load(&path).unwrap();
        assert_eq!(&f.validators[0].consensus_key, key(0).public_key());
        assert_eq!(f.epoch_length, None);
    }

    #[test]
    fn refusals_are_specific() {
        let bad = |text: &str, needle: &str| {
            let e = ValidatorSetFile::parse(text, Path::new("/nonexistent")).unwrap_err();
            assert!(
                e.to_string().contains(needle),
                "{needle:?} not in {e} for {text:.60}"
            );
        };
        bad("network = ", "validator set file");
        bad(&four().replace("devnet", "moonnet"), "unknown network");
        bad(&four().replace("id = 2", "id = 3"), "ids must be 0..n");
        bad(&four().replace("stake = 3", "stake = 0"), "zero stake");
        bad(
            &four().replace("127.0.0.1:29001", "localhost"),
            "not IP:port",
        );
        bad(
            &four().replace("127.0.0.1:29001", "127.0.0.1:29000"),
            "same address",
        );
        bad(&four().replace(&p2p_hex(1), &p2p_hex(0)), "same P2P key");
        bad(
            &four().replace(
                &hex::encode(key(1).public_key().as_bytes()),
                &hex::encode(key(0).public_key().as_bytes()),
            ),
            "same consensus key",
        );
        bad(&four().replace(&p2p_hex(3), "abcd"), "expected 1184");
        bad(&four().replace(&p2p_hex(3), "zz"), "not hex");
        bad(
            &four().replace("p2p_pub = ", "p2p_pub_file = \"x\"\np2p_pub = "),
            "exactly one of p2p_pub",
        );
        bad(
            &four().replace("epoch_length = 10", "epoch_length = 0"),
            "at least 1",
        );
        bad(
            &four().replace("stake = 1\n", "stake = 1\ncolour = 2\n"),
            "unknown field",
        );
        bad("network = \"devnet\"\n", "no [[validator]]");
        bad(
            &format!("{}[[rotation]]\nfile = \"missing.json\"\n", four()),
            "missing.json",
        );
    }

    fn rotation_file(dir: &Path, name: &str, ev: KeyRotationEvent, signer: &KeyPair) -> String {
        let signed = ev.sign(ENV, signer).unwrap();
        let json = serde_json::to_string(&RotationEventJson::from_signed(&signed, None)).unwrap();
        std::fs::write(dir.join(name), json).unwrap();
        format!("[[rotation]]\nfile = \"{name}\"\n")
    }

    fn ev_for_epochs() -> KeyRotationEvent {
        KeyRotationEvent {
            validator_id: ValidatorId(1),
            key_kind: KeyRole::Consensus,
            old_key: key(1).public_key().as_bytes().to_vec(),
            new_key: key(50).public_key().as_bytes().to_vec(),
            effective_epoch: Epoch(2),
            grace_epochs: 1,
            emergency: false,
        }
    }

    #[test]
    fn rotations_reach_the_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let new = key(50);
        let ev = ev_for_epochs();
        let text = format!(
            "{}{}",
            four(),
            rotation_file(dir.path(), "r.json", ev.clone(), &key(1))
        );
        let f = ValidatorSetFile::parse(&text, dir.path()).unwrap();
        let schedule = f.schedule().unwrap();
        let msg = b"vote";
        let sig = |k: &KeyPair| {
            qbind_core::signing::sign_domain(k, ENV, qbind_core::signing::SignKind::Vote, msg)
        };
        let ok = |epoch: u64, k: &KeyPair| {
            schedule
                .set(Epoch(epoch))
                .verify_in_epoch(
                    ValidatorId(1),
                    Epoch(epoch),
                    ENV,
                    qbind_core::signing::SignKind::Vote,
                    msg,
                    &sig(k),
                )
                .is_ok()
        };
        assert_eq!([ok(1, &key(1)), ok(1, &new)], [true, false]);
        assert_eq!([ok(2, &key(1)), ok(2, &new)], [true, true]);
        assert_eq!([ok(3, &key(1)), ok(3, &new)], [false, true]);

        // Signed by the wrong key, or for epoch 0: refused with the reason.
        let forged = format!(
            "{}{}",
            four(),
            rotation_file(dir.path(), "f.json", ev.clone(), &key(2))
        );
        let e = ValidatorSetFile::parse(&forged, dir.path()).unwrap_err();
        assert!(e.to_string().contains("rotation 0 (validator 1)"), "{e}");
        let early = KeyRotationEvent {
            effective_epoch: Epoch(0),
            ..ev.clone()
        };
        let text = format!(
            "{}{}",
            four(),
            rotation_file(dir.path(), "e.json", early, &key(1))
        );
        let e = ValidatorSetFile::parse(&text, dir.path()).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
        let p2p = KeyRotationEvent {
            key_kind: KeyRole::P2pIdentity,
            old_key: hex::decode(p2p_hex(1)).unwrap(),
            new_key: hex::decode(p2p_hex(9)).unwrap(),
            ..ev
        };
        let text = format!(
            "{}{}",
            four(),
            rotation_file(dir.path(), "p.json", p2p, &key(1))
        );
        let e = ValidatorSetFile::parse(&text, dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("only consensus-key rotations"),
            "{e}"
        );
        let one_epoch = format!(
            "{}{}",
            four().replace("epoch_length = 10\n", ""),
            rotation_file(dir.path(), "n.json", ev_for_epochs(), &key(1))
        );
        let e = ValidatorSetFile::parse(&one_epoch, dir.path()).unwrap_err();
        assert!(e.to_string().contains("need epoch_length"), "{e}");
    }
}
