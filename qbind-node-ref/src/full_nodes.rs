//! The full-node key file (`qbind-node --full-node-keys FILE`): the full
//! nodes a validator admits as authenticated, non-validator KEMTLS peers
//! (docs/node.md, "Full nodes"). A full node follows the chain: it receives
//! what the validators broadcast, asks them for blocks it misses, verifies
//! every certificate and executes every block, and never signs.
//!
//! ```toml
//! [[full_node]]
//! id = 4                                    # at least the number of validators
//! p2p_pub_file = "full-4/p2p_identity.pub"  # or p2p_pub = "<hex>"
//! ```
//!
//! Relative paths are relative to the file's directory. The file is not
//! part of the genesis: adding a full node changes no block and no hash,
//! only which keys a validator's listener accepts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qbind_core::key_rotation::KeyRole;
use qbind_core::types::ValidatorId;
use serde::Deserialize;

use crate::validator_set::{ValidatorSetFile, ValidatorSetFileError, key_bytes, read_text};

/// Most full nodes one file may list (each is a key a validator's listener
/// accepts; their connections have their own inbound cap in `qbind-net`).
pub const MAX_FULL_NODES: usize = 1_024;

/// Why a full-node key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FullNodeKeysError {
    /// The file could not be read.
    #[error("full-node key file {path}: {detail}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Not valid TOML, or fields missing or unknown.
    #[error("full-node key file: {0}")]
    Syntax(String),
    /// Valid TOML with invalid content.
    #[error("full-node key file: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    full_node: Vec<EntryToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryToml {
    id: u32,
    p2p_pub: Option<String>,
    p2p_pub_file: Option<PathBuf>,
}

/// One full node of the file.
#[derive(Clone, Debug)]
pub struct FullNodeEntry {
    /// Its id: never a validator's (at least the validator count).
    pub id: ValidatorId,
    /// Its ML-KEM-768 P2P identity key (`qbind-keygen --key-roles
    /// p2p-identity`).
    pub p2p_key: qbind_net::PeerPublic,
}

/// A parsed full-node key file.
#[derive(Clone, Debug, Default)]
pub struct FullNodeKeys {
    /// The full nodes, in file order.
    pub nodes: Vec<FullNodeEntry>,
}

impl FullNodeKeys {
    /// Load the file at `path` (see [`FullNodeKeys::parse`]).
    ///
    /// # Errors
    /// [`FullNodeKeysError`].
    pub fn load(path: &Path) -> Result<Self, FullNodeKeysError> {
        let text = read_text(path).map_err(|e| FullNodeKeysError::Read {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parse `text`; relative key paths are resolved against `base`.
    /// Checks: at most [`MAX_FULL_NODES`] entries, distinct ids, keys of the
    /// right length that decode, distinct keys.
    ///
    /// # Errors
    /// [`FullNodeKeysError`].
    pub fn parse(text: &str, base: &Path) -> Result<Self, FullNodeKeysError> {
        let raw: FileToml =
            toml::from_str(text).map_err(|e| FullNodeKeysError::Syntax(e.to_string()))?;
        let invalid = FullNodeKeysError::Invalid;
        if raw.full_node.len() > MAX_FULL_NODES {
            return Err(invalid(format!(
                "{} [[full_node]] entries, more than {MAX_FULL_NODES}",
                raw.full_node.len()
            )));
        }
        let mut nodes: Vec<FullNodeEntry> = Vec::with_capacity(raw.full_node.len());
        for entry in &raw.full_node {
            let who = format!("full node {}", entry.id);
            let bytes = key_bytes(
                entry.p2p_pub.as_deref(),
                entry.p2p_pub_file.as_deref(),
                base,
                "p2p_pub",
                &who,
                KeyRole::P2pIdentity,
            )
            .map_err(|e| match e {
                ValidatorSetFileError::Invalid(m) => invalid(m),
                other => invalid(format!("{who}: {other}")),
            })?;
            let p2p_key = qbind_net::PeerPublic::from_bytes(&bytes)
                .map_err(|e| invalid(format!("{who}: p2p_pub: {e}")))?;
            if let Some(other) = nodes.iter().find(|n| n.id.0 == entry.id) {
                return Err(invalid(format!("full node {} is listed twice", other.id.0)));
            }
            if let Some(other) = nodes
                .iter()
                .find(|n| n.p2p_key.as_bytes() == p2p_key.as_bytes())
            {
                return Err(invalid(format!(
                    "full nodes {} and {} have the same P2P key",
                    other.id.0, entry.id
                )));
            }
            nodes.push(FullNodeEntry {
                id: ValidatorId(entry.id),
                p2p_key,
            });
        }
        Ok(FullNodeKeys { nodes })
    }

    /// Check the file against the chain's validators: a full node's id is
    /// at least the validator count (an id inside the set would make it a
    /// member whose votes never come), and no full node has a validator's
    /// P2P key.
    ///
    /// # Errors
    /// [`FullNodeKeysError::Invalid`], naming the entry.
    pub fn check_against(&self, set: &ValidatorSetFile) -> Result<(), FullNodeKeysError> {
        let n = set.validators.len();
        for node in &self.nodes {
            if (node.id.0 as usize) < n {
                return Err(FullNodeKeysError::Invalid(format!(
                    "full node {} has a validator's id: full-node ids start at the validator \
                     count, {n}",
                    node.id.0
                )));
            }
            if let Some(v) = set
                .validators
                .iter()
                .find(|v| v.p2p_key.as_bytes() == node.p2p_key.as_bytes())
            {
                return Err(FullNodeKeysError::Invalid(format!(
                    "full node {} has validator {}'s P2P key",
                    node.id.0, v.id.0
                )));
            }
        }
        Ok(())
    }

    /// The full nodes' keys by id, as the transport admits them.
    #[must_use]
    pub fn peers(&self) -> BTreeMap<ValidatorId, qbind_net::PeerPublic> {
        self.nodes
            .iter()
            .map(|n| (n.id, n.p2p_key.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_key(i: usize) -> String {
        hex::encode(crate::local::p2p_identity(i).public().as_bytes())
    }

    fn entry(id: u32, key: &str) -> String {
        format!("[[full_node]]\nid = {id}\np2p_pub = \"{key}\"\n")
    }

    fn refused(text: &str) -> String {
        FullNodeKeys::parse(text, Path::new("."))
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn entries_parse_and_bad_ones_are_named() {
        let text = entry(4, &hex_key(10)) + &entry(5, &hex_key(11));
        let keys = FullNodeKeys::parse(&text, Path::new(".")).expect("parses");
        assert_eq!(keys.peers().len(), 2);
        assert!(
            FullNodeKeys::parse("", Path::new("."))
                .expect("empty is fine")
                .nodes
                .is_empty()
        );
        let twice = entry(4, &hex_key(10)) + &entry(4, &hex_key(11));
        assert!(
            refused(&twice).contains("listed twice"),
            "{}",
            refused(&twice)
        );
        let same = entry(4, &hex_key(10)) + &entry(5, &hex_key(10));
        assert!(refused(&same).contains("same P2P key"));
        assert!(refused(&entry(4, "zz")).contains("full node 4: p2p_pub is not hex"));
        assert!(refused(&entry(4, "abcd")).contains("bytes, expected"));
        assert!(refused("[[full_node]]\nid = 4\n").contains("exactly one of p2p_pub"));
        assert!(refused("[[full_node]]\nid = 4\nkey = 1\n").contains("unknown field"));
        let many: String = (0..=MAX_FULL_NODES as u32)
            .map(|i| entry(i + 4, "00"))
            .collect();
        assert!(refused(&many).contains("more than"));
    }

    #[test]
    fn ids_inside_the_set_and_validator_keys_are_refused() {
        let set = ValidatorSetFile::parse(
            &format!(
                "network = \"devnet\"\n{}",
                (0..4)
                    .map(|i| format!(
                        "[[validator]]\nid = {i}\nstake = 1\naddress = \"127.0.0.1:{}\"\n\
                         consensus_pub = \"{}\"\np2p_pub = \"{}\"\n",
                        29_000 + i,
                        hex::encode(crate::local::validator_key(i).public_key().as_bytes()),
                        hex_key(i)
                    ))
                    .collect::<String>()
            ),
            Path::new("."),
        )
        .expect("set");
        let ok = FullNodeKeys::parse(&entry(4, &hex_key(10)), Path::new(".")).expect("parses");
        ok.check_against(&set)
            .expect("id 4 of 4 validators is fine");
        let inside = FullNodeKeys::parse(&entry(3, &hex_key(10)), Path::new(".")).expect("parses");
        let err = inside
            .check_against(&set)
            .expect_err("id inside")
            .to_string();
        assert!(err.contains("validator's id"), "{err}");
        let stolen = FullNodeKeys::parse(&entry(9, &hex_key(2)), Path::new(".")).expect("parses");
        let err = stolen.check_against(&set).expect_err("key").to_string();
        assert!(err.contains("validator 2's P2P key"), "{err}");
    }
}
