//! The operator's JSON form of a key rotation event (runbook §6.2
//! `rotation-event.json`), mapped to and from
//! [`qbind_core::key_rotation::SignedKeyRotationEvent`]. Keys and signature
//! are standard base64; the canonical bytes that are signed are defined in
//! `qbind_core::key_rotation` and `docs/signer.md`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use qbind_core::crypto::Signature;
use qbind_core::key_rotation::{KeyRole, KeyRotationEvent, SignedKeyRotationEvent};
use qbind_core::types::{Epoch, ValidatorId};
use serde::{Deserialize, Serialize};

/// `rotation-event.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationEventJson {
    /// Validator ID.
    pub validator_id: u32,
    /// `Consensus`, `BatchSigning` or `P2pIdentity`.
    pub key_kind: String,
    /// Base64 old public key.
    pub old_key: String,
    /// Base64 new public key.
    pub new_key: String,
    /// First epoch of the new key.
    pub effective_epoch: u64,
    /// Epochs both keys are valid.
    pub grace_epochs: u64,
    /// Emergency rotation (effective immediately).
    #[serde(default)]
    pub emergency: bool,
    /// Free-text reason (not signed; for the operator's records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Base64 ML-DSA-44 signature by the current consensus key.
    pub signature: String,
}

/// A malformed rotation document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rotation event: {0}")]
pub struct RotationJsonError(pub String);

/// JSON name of a role.
#[must_use]
pub fn key_kind_name(role: KeyRole) -> &'static str {
    match role {
        KeyRole::Consensus => "Consensus",
        KeyRole::BatchSigning => "BatchSigning",
        KeyRole::P2pIdentity => "P2pIdentity",
    }
}

impl RotationEventJson {
    /// The JSON form of a signed event.
    #[must_use]
    pub fn from_signed(s: &SignedKeyRotationEvent, reason: Option<String>) -> Self {
        RotationEventJson {
            validator_id: s.event.validator_id.0,
            key_kind: key_kind_name(s.event.key_kind).to_owned(),
            old_key: B64.encode(&s.event.old_key),
            new_key: B64.encode(&s.event.new_key),
            effective_epoch: s.event.effective_epoch.0,
            grace_epochs: s.event.grace_epochs,
            emergency: s.event.emergency,
            reason,
            signature: B64.encode(s.signature.as_bytes()),
        }
    }

    /// Back to the signed event (lengths checked; signature not verified).
    ///
    /// # Errors
    /// [`RotationJsonError`].
    pub fn to_signed(&self) -> Result<SignedKeyRotationEvent, RotationJsonError> {
        let err = |s: &str| RotationJsonError(s.to_owned());
        let key_kind = KeyRole::ALL
            .into_iter()
            .find(|r| key_kind_name(*r) == self.key_kind)
            .ok_or_else(|| err("unknown key_kind"))?;
        let event = KeyRotationEvent {
            validator_id: ValidatorId(self.validator_id),
            key_kind,
            old_key: B64
                .decode(&self.old_key)
                .map_err(|_| err("old_key is not base64"))?,
            new_key: B64
                .decode(&self.new_key)
                .map_err(|_| err("new_key is not base64"))?,
            effective_epoch: Epoch(self.effective_epoch),
            grace_epochs: self.grace_epochs,
            emergency: self.emergency,
        };
        event
            .check()
            .map_err(|e| RotationJsonError(e.to_string()))?;
        let sig = B64
            .decode(&self.signature)
            .map_err(|_| err("signature is not base64"))?;
        let signature =
            Signature::from_bytes(&sig).map_err(|e| RotationJsonError(e.to_string()))?;
        Ok(SignedKeyRotationEvent { event, signature })
    }
}
