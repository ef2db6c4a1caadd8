//! In-process signers: `loopback-testing` (keys in memory, refused on
//! MainNet) and `encrypted-fs` (the key decrypted from the keystore at
//! startup and kept in memory, wiped on drop).

use std::path::Path;

use async_trait::async_trait;
use qbind_core::crypto::{KeyPair, PublicKey, Signature};
use qbind_core::key_rotation::KeyRole;
use qbind_core::signing::signing_preimage;
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::{NetworkEnvironment, ValidatorId};

use crate::keystore::{KdfPolicy, KeystoreError, Passphrase, load_key};

/// Sign `request` with `key`: exactly `qbind_core::signing::sign_domain`.
fn sign_with(
    key: &KeyPair,
    env: NetworkEnvironment,
    request: &SignRequest,
) -> Result<Signature, SignerError> {
    key.try_sign(&signing_preimage(env, request.kind, &request.message))
        .map_err(|e| SignerError::Unavailable {
            detail: format!("signing failed: {e}"),
        })
}

/// Loopback signing is refused on MainNet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the loopback-testing signer is forbidden on MainNet")]
pub struct LoopbackForbidden;

/// The `loopback-testing` mode: an in-memory key, for tests and DevNet.
pub struct LoopbackSigner {
    id: ValidatorId,
    env: NetworkEnvironment,
    key: KeyPair,
}

impl LoopbackSigner {
    /// A loopback signer; MainNet refuses it.
    ///
    /// # Errors
    /// [`LoopbackForbidden`] on MainNet.
    pub fn new(
        id: ValidatorId,
        env: NetworkEnvironment,
        key: KeyPair,
    ) -> Result<Self, LoopbackForbidden> {
        if env == NetworkEnvironment::Mainnet {
            return Err(LoopbackForbidden);
        }
        Ok(LoopbackSigner { id, env, key })
    }
}

#[async_trait]
impl Signer for LoopbackSigner {
    fn validator_id(&self) -> ValidatorId {
        self.id
    }
    fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }
    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError> {
        sign_with(&self.key, self.env, request)
    }
}

/// The `encrypted-fs` mode: the consensus (or batch-signing) key from an
/// encrypted keystore directory.
pub struct EncryptedFsSigner {
    id: ValidatorId,
    env: NetworkEnvironment,
    key: KeyPair,
}

impl std::fmt::Debug for EncryptedFsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedFsSigner")
            .field("validator", &self.id)
            .field("env", &self.env)
            .field("public_key", self.key.public_key())
            .finish_non_exhaustive()
    }
}

impl EncryptedFsSigner {
    /// Unlock the key of `role` (Consensus or BatchSigning) from keystore
    /// `dir` for validator `id`.
    ///
    /// # Errors
    /// [`KeystoreError`]; a P2P identity key is a [`KeystoreError::WrongRole`].
    pub fn open(
        dir: &Path,
        id: ValidatorId,
        role: KeyRole,
        env: NetworkEnvironment,
        passphrase: &Passphrase,
        policy: &KdfPolicy,
    ) -> Result<Self, KeystoreError> {
        let path = crate::keystore::key_path(dir, role);
        let key = load_key(dir, Some(id), role, passphrase, policy)?
            .into_signing_key()
            .ok_or(KeystoreError::WrongRole {
                path,
                expected: "consensus or batch-signing",
                found: role.cli_name().to_owned(),
            })?;
        Ok(EncryptedFsSigner { id, env, key })
    }
}

#[async_trait]
impl Signer for EncryptedFsSigner {
    fn validator_id(&self) -> ValidatorId {
        self.id
    }
    fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }
    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError> {
        sign_with(&self.key, self.env, request)
    }
}
