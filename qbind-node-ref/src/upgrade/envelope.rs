//! The upgrade envelope of runbook §11: its JSON form (docs/operator-tools.md),
//! the checks a file must pass before anything is verified, its canonical
//! digest and the domain-separated bytes a council member signs.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use qbind_core::types::{Hash32, NetworkEnvironment};
use serde::{Deserialize, Serialize};

/// The only envelope format version this tool reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Largest envelope or council file read (a full envelope is about 40 KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most platforms one envelope may list.
pub const MAX_PLATFORMS: usize = 16;
/// Most approvals one envelope may carry (a council has 7 members; more is
/// padding an attacker could use to make verification slow).
pub const MAX_APPROVALS: usize = 32;
/// Longest protocol version, platform or member name.
pub const MAX_NAME_BYTES: usize = 64;
/// The `{KIND}` of the signing domain tag (`QBIND:{scope}:UPGRADE_ENVELOPE:v1`).
pub const SIGN_KIND: &str = "UPGRADE_ENVELOPE";

/// Why a file is not a usable envelope or council file.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{path}: larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The file is not JSON of the documented shape.
    #[error("{path}: not a valid {what}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Envelope or council file.
        what: &'static str,
        /// The parser's message (with line and column).
        source: serde_json::Error,
    },
    /// A `format_version` this tool does not know.
    #[error("unsupported format_version {found} (this tool reads {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
    },
    /// A network other than mainnet, testnet or devnet.
    #[error("unknown network {name:?} (mainnet, testnet or devnet)")]
    UnknownNetwork {
        /// The name in the file.
        name: String,
    },
    /// A name (protocol version, platform, member) that is empty, too long
    /// or has characters outside `[A-Za-z0-9._+-]`.
    #[error("invalid {what} {value:?}: 1 to {MAX_NAME_BYTES} characters of A-Z a-z 0-9 . _ + -")]
    BadName {
        /// Which field.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// No binary hashes, or more than [`MAX_PLATFORMS`].
    #[error("binary_hashes must list 1 to {MAX_PLATFORMS} platforms, found {count}")]
    PlatformCount {
        /// Platforms listed.
        count: usize,
    },
    /// A binary hash that is not 64 lowercase hex characters.
    #[error("binary_hashes[{platform:?}] is not a SHA3-256 hash (64 lowercase hex characters)")]
    BadHash {
        /// The platform.
        platform: String,
    },
    /// More than [`MAX_APPROVALS`] approvals.
    #[error("{count} council approvals, at most {MAX_APPROVALS} are read")]
    TooManyApprovals {
        /// Approvals in the file.
        count: usize,
    },
    /// A council file that does not list the council's members exactly once.
    #[error("invalid council file: {detail}")]
    BadCouncil {
        /// What is wrong.
        detail: String,
    },
}

/// Normal (5 of 7) or emergency (4 of 7, runbook §11.8) upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpgradeKind {
    /// A planned upgrade.
    Normal,
    /// An emergency security patch.
    Emergency,
}

impl UpgradeKind {
    /// Its byte in the canonical encoding.
    fn code(self) -> u8 {
        match self {
            UpgradeKind::Normal => 0,
            UpgradeKind::Emergency => 1,
        }
    }

    /// Its name in the file and in reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            UpgradeKind::Normal => "normal",
            UpgradeKind::Emergency => "emergency",
        }
    }
}

/// When the upgrade takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    /// First height at which the new protocol version applies.
    pub height: u64,
}

/// One council member's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The member's name in the council file.
    pub member: String,
    /// ML-DSA-44 signature, lowercase hex, over [`Envelope::signing_preimage`].
    pub signature: String,
}

/// An upgrade envelope as written in its JSON file. Every field except
/// `council_approvals` is covered by the digest, and unknown fields are
/// refused, so nothing in the file is unsigned but the signatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// `mainnet`, `testnet` or `devnet`: selects the chain ID and domain tag.
    pub network: String,
    /// The protocol version the upgrade installs, e.g. `1.2.0`.
    pub protocol_version: String,
    /// Normal or emergency.
    pub kind: UpgradeKind,
    /// Activation height.
    pub activation: Activation,
    /// SHA3-256 of the release binary per platform (e.g. `linux-x86_64`).
    pub binary_hashes: BTreeMap<String, String>,
    /// Council signatures (not covered by the digest).
    #[serde(default)]
    pub council_approvals: Vec<Approval>,
}

/// Read at most [`MAX_FILE_BYTES`] of `path`.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, EnvelopeError> {
    let io = |source| EnvelopeError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(EnvelopeError::TooLarge {
            path: path.to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(bytes)
}

/// Whether `s` is a valid name (see [`EnvelopeError::BadName`]).
fn check_name(what: &'static str, s: &str) -> Result<(), EnvelopeError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(EnvelopeError::BadName {
            what,
            value: s.chars().take(MAX_NAME_BYTES).collect(),
        })
    }
}

/// The network of a `network` field.
pub fn network(name: &str) -> Result<NetworkEnvironment, EnvelopeError> {
    match name {
        "mainnet" => Ok(NetworkEnvironment::Mainnet),
        "testnet" => Ok(NetworkEnvironment::Testnet),
        "devnet" => Ok(NetworkEnvironment::Devnet),
        other => Err(EnvelopeError::UnknownNetwork {
            name: other.chars().take(MAX_NAME_BYTES).collect(),
        }),
    }
}

/// Decode a SHA3-256 hash written as 64 lowercase hex characters.
pub fn parse_hash(hex_str: &str) -> Option<[u8; 32]> {
    if hex_str.len() != 64 || hex_str.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut out).ok()?;
    Some(out)
}

impl Envelope {
    /// Read and check the envelope in `path`.
    pub fn load(path: &Path) -> Result<Envelope, EnvelopeError> {
        Envelope::from_json_bytes(path, &read_bounded(path)?)
    }

    /// Parse and check an envelope read from `path` (named in errors).
    pub fn from_json_bytes(path: &Path, bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|source| EnvelopeError::Json {
                path: path.to_owned(),
                what: "upgrade envelope",
                source,
            })?;
        envelope.check()?;
        Ok(envelope)
    }

    /// The checks every envelope passes before it is digested or verified.
    pub fn check(&self) -> Result<(), EnvelopeError> {
        if self.format_version != FORMAT_VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                found: self.format_version,
            });
        }
        network(&self.network)?;
        check_name("protocol_version", &self.protocol_version)?;
        let count = self.binary_hashes.len();
        if count == 0 || count > MAX_PLATFORMS {
            return Err(EnvelopeError::PlatformCount { count });
        }
        for (platform, hash) in &self.binary_hashes {
            check_name("platform", platform)?;
            if parse_hash(hash).is_none() {
                return Err(EnvelopeError::BadHash {
                    platform: platform.clone(),
                });
            }
        }
        if self.council_approvals.len() > MAX_APPROVALS {
            return Err(EnvelopeError::TooManyApprovals {
                count: self.council_approvals.len(),
            });
        }
        for a in &self.council_approvals {
            check_name("member", &a.member)?;
        }
        Ok(())
    }

    /// The network (the envelope is checked, so it is known).
    pub fn environment(&self) -> Result<NetworkEnvironment, EnvelopeError> {
        network(&self.network)
    }

    /// The canonical bytes of everything but the approvals:
    ///
    /// ```text
    /// format_version u32 BE || chain_id u64 BE || kind u8 (0 normal, 1 emergency)
    /// || u16 BE length || protocol_version || activation height u64 BE
    /// || platform count u16 BE || per platform, sorted by name:
    ///    u16 BE length || name || 32-byte SHA3-256
    /// ```
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        self.check()?;
        let env = self.environment()?;
        let mut out = Vec::with_capacity(64 + self.binary_hashes.len() * 64);
        out.extend_from_slice(&self.format_version.to_be_bytes());
        out.extend_from_slice(&env.chain_id().0.to_be_bytes());
        out.push(self.kind.code());
        push_str(&mut out, &self.protocol_version);
        out.extend_from_slice(&self.activation.height.to_be_bytes());
        // `check` bounds both counts and lengths well below u16::MAX.
        push_u16(&mut out, self.binary_hashes.len());
        for (platform, hash) in &self.binary_hashes {
            push_str(&mut out, platform);
            let bytes = parse_hash(hash).ok_or_else(|| EnvelopeError::BadHash {
                platform: platform.clone(),
            })?;
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    /// SHA3-256 of [`Envelope::canonical_bytes`]: what `qbind-envelope digest` prints.
    pub fn digest(&self) -> Result<Hash32, EnvelopeError> {
        Ok(Hash32::digest(&self.canonical_bytes()?))
    }

    /// What a council member signs: `QBIND:{scope}:UPGRADE_ENVELOPE:v1 ||
    /// chain_id (u64 BE) || digest`, the layout of every other signed object
    /// (`qbind_core::signing`), so an envelope signature verifies as nothing
    /// else and on no other network.
    pub fn signing_preimage(&self) -> Result<Vec<u8>, EnvelopeError> {
        let env = self.environment()?;
        let digest = self.digest()?;
        let tag = format!("QBIND:{}:{SIGN_KIND}:v1", env.tag_scope());
        let mut out = Vec::with_capacity(tag.len() + 8 + 32);
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(&env.chain_id().0.to_be_bytes());
        out.extend_from_slice(digest.as_bytes());
        Ok(out)
    }
}

fn push_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    push_u16(out, s.len());
    out.extend_from_slice(s.as_bytes());
}
