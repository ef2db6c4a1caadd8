//! What the remote-signer tests share.

use std::sync::Arc;
use std::time::Duration;

use qbind_core::crypto::{PublicKey, Signature};
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::ValidatorId;

/// A backend that takes `.1` per signature, so a daemon can die mid-request.
pub struct Slow(pub Arc<dyn Signer>, pub Duration);

#[async_trait::async_trait]
impl Signer for Slow {
    fn validator_id(&self) -> ValidatorId {
        self.0.validator_id()
    }
    fn public_key(&self) -> &PublicKey {
        self.0.public_key()
    }
    async fn sign(&self, r: &SignRequest) -> Result<Signature, SignerError> {
        tokio::time::sleep(self.1).await;
        self.0.sign(r).await
    }
}
