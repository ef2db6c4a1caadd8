//! The council file and the verdict on an envelope's approvals: which
//! signatures count towards the threshold (5 of 7 for a normal upgrade, 4 of
//! 7 for an emergency one, runbook §11.2 and §11.8).

use std::collections::BTreeSet;
use std::path::Path;

use qbind_core::crypto::{PublicKey, Signature, verify};
use serde::{Deserialize, Serialize};

use crate::upgrade::envelope::{
    Envelope, EnvelopeError, FORMAT_VERSION, UpgradeKind, read_bounded,
};

/// Members of the Protocol Council.
pub const COUNCIL_SIZE: usize = 7;
/// Valid signatures a normal upgrade needs.
pub const NORMAL_THRESHOLD: usize = 5;
/// Valid signatures an emergency upgrade needs.
pub const EMERGENCY_THRESHOLD: usize = 4;

/// The signatures `kind` needs.
#[must_use]
pub fn threshold(kind: UpgradeKind) -> usize {
    match kind {
        UpgradeKind::Normal => NORMAL_THRESHOLD,
        UpgradeKind::Emergency => EMERGENCY_THRESHOLD,
    }
}

/// One member in the council file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberJson {
    /// The name approvals refer to.
    pub name: String,
    /// ML-DSA-44 public key, hex.
    pub public_key: String,
}

/// The council file as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouncilJson {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Exactly [`COUNCIL_SIZE`] members, distinct names and keys.
    pub members: Vec<MemberJson>,
}

/// A checked council: names with their decoded keys.
#[derive(Debug)]
pub struct Council {
    members: Vec<(String, PublicKey)>,
}

impl Council {
    /// Read and check the council file in `path`.
    pub fn load(path: &Path) -> Result<Council, EnvelopeError> {
        Council::from_json_bytes(path, &read_bounded(path)?)
    }

    /// Number of members (always [`COUNCIL_SIZE`] once loaded).
    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the council has no members (never, once loaded).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Parse and check a council file read from `path` (named in errors).
    pub fn from_json_bytes(path: &Path, bytes: &[u8]) -> Result<Council, EnvelopeError> {
        let json: CouncilJson =
            serde_json::from_slice(bytes).map_err(|source| EnvelopeError::Json {
                path: path.to_owned(),
                what: "council file",
                source,
            })?;
        Council::from_json(&json)
    }

    /// Check a parsed council file.
    pub fn from_json(json: &CouncilJson) -> Result<Council, EnvelopeError> {
        let bad = |detail: String| EnvelopeError::BadCouncil { detail };
        if json.format_version != FORMAT_VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                found: json.format_version,
            });
        }
        if json.members.len() != COUNCIL_SIZE {
            return Err(bad(format!(
                "{} members listed, the council has {COUNCIL_SIZE}",
                json.members.len()
            )));
        }
        let mut names = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut members = Vec::with_capacity(COUNCIL_SIZE);
        for m in &json.members {
            let bytes = hex::decode(&m.public_key)
                .map_err(|_| bad(format!("member {:?}: public key is not hex", m.name)))?;
            let key = PublicKey::from_bytes(&bytes)
                .map_err(|e| bad(format!("member {:?}: {e}", m.name)))?;
            if !names.insert(m.name.clone()) {
                return Err(bad(format!("member {:?} listed twice", m.name)));
            }
            if !keys.insert(bytes) {
                return Err(bad(format!(
                    "member {:?} has the key of another member",
                    m.name
                )));
            }
            members.push((m.name.clone(), key));
        }
        Ok(Council { members })
    }

    /// The key of `name`, if it is a member.
    #[must_use]
    pub fn key_of(&self, name: &str) -> Option<&PublicKey> {
        self.members.iter().find(|(n, _)| n == name).map(|(_, k)| k)
    }
}

/// What one approval is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureVerdict {
    /// A member's valid signature, counted.
    Valid,
    /// Not a valid signature of the named member over this envelope.
    Invalid,
    /// The named signer is not in the council file.
    UnknownSigner,
    /// Valid, but this member was already counted.
    Duplicate,
}

impl SignatureVerdict {
    /// How reports spell it.
    #[must_use]
    pub fn text(self) -> &'static str {
        match self {
            SignatureVerdict::Valid => "valid",
            SignatureVerdict::Invalid => "invalid",
            SignatureVerdict::UnknownSigner => "unknown signer",
            SignatureVerdict::Duplicate => "duplicate (counted once)",
        }
    }
}

/// One approval's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct ApprovalReport {
    /// Position in `council_approvals` (from 0).
    pub index: usize,
    /// The member it names.
    pub member: String,
    /// Its verdict.
    pub verdict: SignatureVerdict,
}

/// The verdict on every approval and the count against the threshold.
#[derive(Clone, Debug, Serialize)]
pub struct SignatureReport {
    /// Per approval, in file order.
    pub approvals: Vec<ApprovalReport>,
    /// Distinct members with a valid signature.
    pub valid: usize,
    /// Signatures needed for the envelope's kind.
    pub threshold: usize,
    /// Council size.
    pub council_size: usize,
}

impl SignatureReport {
    /// Threshold met and no approval invalid or from an unknown signer
    /// (runbook §11.6: exit 0 only when all signatures are valid).
    #[must_use]
    pub fn passed(&self) -> bool {
        self.valid >= self.threshold
            && self.approvals.iter().all(|a| {
                matches!(
                    a.verdict,
                    SignatureVerdict::Valid | SignatureVerdict::Duplicate
                )
            })
    }
}

/// Judge every approval of `envelope` against `council`.
pub fn check_approvals(
    envelope: &Envelope,
    council: &Council,
) -> Result<SignatureReport, EnvelopeError> {
    let preimage = envelope.signing_preimage()?;
    let mut counted = BTreeSet::new();
    let mut approvals = Vec::with_capacity(envelope.council_approvals.len());
    for (index, a) in envelope.council_approvals.iter().enumerate() {
        let verdict = match council.key_of(&a.member) {
            None => SignatureVerdict::UnknownSigner,
            Some(key) => {
                let ok = hex::decode(&a.signature)
                    .ok()
                    .and_then(|b| Signature::from_bytes(&b).ok())
                    .is_some_and(|sig| verify(key, &preimage, &sig).is_ok());
                if !ok {
                    SignatureVerdict::Invalid
                } else if counted.insert(a.member.clone()) {
                    SignatureVerdict::Valid
                } else {
                    SignatureVerdict::Duplicate
                }
            }
        };
        approvals.push(ApprovalReport {
            index,
            member: a.member.clone(),
            verdict,
        });
    }
    Ok(SignatureReport {
        approvals,
        valid: counted.len(),
        threshold: threshold(envelope.kind),
        council_size: COUNCIL_SIZE,
    })
}
