//! In-process signers: `loopback-testing` (keys in memory, refused on
//! MainNet) and `encrypted-fs` (the key decrypted from the keystore at
//! startup and kept in memory, wiped on drop).

use std::path::Path;

use async_trait::async_trait;
use qbind_core::crypto::{KeyPair, PublicKey, Signature};
use qbind_core::key_rotation::KeyRole;
use qbind_core::traits::{LocalSigner, SignRequest, Signer, SignerError};
use qbind_core::types::{NetworkEnvironment, ValidatorId};

use crate::keystore::{KdfPolicy, KeystoreError, Passphrase, load_key};

/// Loopback signing is refused on MainNet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the loopback-testing signer is forbidden on MainNet")]
pub struct LoopbackForbidden;

/// The `loopback-testing` mode: an in-memory key, for tests and DevNet
/// (the core's [`LocalSigner`], refused on MainNet).
pub struct LoopbackSigner(LocalSigner);

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
        Ok(LoopbackSigner(LocalSigner::new(id, env, key)))
    }
}

#[async_trait]
impl Signer for LoopbackSigner {
    fn validator_id(&self) -> ValidatorId {
        self.0.validator_id()
    }
    fn public_key(&self) -> &PublicKey {
        self.0.public_key()
    }
    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError> {
        self.0.sign(request).await
    }
}

/// The `encrypted-fs` mode: the consensus (or batch-signing) key from an
/// encrypted keystore directory, held and used like the core's
/// [`LocalSigner`] once unlocked.
pub struct EncryptedFsSigner(LocalSigner);

impl std::fmt::Debug for EncryptedFsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedFsSigner")
            .field("validator", &self.0.validator_id())
            .field("public_key", self.0.public_key())
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
        Ok(EncryptedFsSigner(LocalSigner::new(id, env, key)))
    }
}

#[async_trait]
impl Signer for EncryptedFsSigner {
    fn validator_id(&self) -> ValidatorId {
        self.0.validator_id()
    }
    fn public_key(&self) -> &PublicKey {
        self.0.public_key()
    }
    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError> {
        self.0.sign(request).await
    }
}
