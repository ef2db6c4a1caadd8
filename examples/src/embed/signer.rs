//! The integrator's own [`Signer`]: an ML-DSA-44 key pair in memory, with a
//! minimal double-sign guard.
//!
//! What the core asks of a signer: sign `request.message` under the domain
//! tag of `request.kind` and the chain id (exactly what
//! [`qbind_core::signing::signing_preimage`] builds, so that
//! [`qbind_core::signing::verify_domain`] accepts it), and feel free to
//! refuse. A refusal is not an error for the validator: the replica gives
//! the job up and sends nothing for it. A production signer keeps its key in
//! a keystore or an HSM and its double-sign record on disk
//! (`qbind-signer`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use qbind_core::crypto::{KeyPair, PublicKey, Signature};
use qbind_core::signing::{SignKind, signing_preimage};
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::{NetworkEnvironment, ValidatorId, View};

/// Views of history the guard keeps below the highest view it signed.
const GUARD_WINDOW: u64 = 1_024;

/// Signs with a key pair it holds; refuses to sign two different messages
/// of one kind for one view (a second, different vote or timeout or
/// proposal in a view is what slashing punishes).
pub struct GuardedSigner {
    id: ValidatorId,
    env: NetworkEnvironment,
    key: KeyPair,
    signed: Mutex<BTreeMap<(View, SignKind), Vec<u8>>>,
    refused: AtomicU64,
}

impl GuardedSigner {
    /// A signer for validator `id` on network `env`.
    #[must_use]
    pub fn new(id: ValidatorId, env: NetworkEnvironment, key: KeyPair) -> Self {
        GuardedSigner {
            id,
            env,
            key,
            signed: Mutex::new(BTreeMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// How many requests the guard refused.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Record `request` if it conflicts with nothing signed before.
    fn admit(&self, request: &SignRequest) -> Result<(), SignerError> {
        // Transactions and batches carry no view: nothing to guard here (a
        // batch's slot is guarded by the replica's own persisted state).
        let Some(view) = request.view else {
            return Ok(());
        };
        let mut signed = self
            .signed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match signed.get(&(view, request.kind)) {
            Some(previous) if *previous != request.message => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(SignerError::Conflict {
                    kind: request.kind,
                    view: request.view,
                });
            }
            Some(_) => return Ok(()),
            None => {}
        }
        signed.insert((view, request.kind), request.message.clone());
        let floor = View(view.0.saturating_sub(GUARD_WINDOW));
        *signed = signed.split_off(&(floor, SignKind::Tx));
        Ok(())
    }
}

#[async_trait]
impl Signer for GuardedSigner {
    fn validator_id(&self) -> ValidatorId {
        self.id
    }

    fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError> {
        self.admit(request)?;
        let preimage = signing_preimage(self.env, request.kind, &request.message);
        self.key
            .try_sign(&preimage)
            .map_err(|e| SignerError::Unavailable {
                detail: e.to_string(),
            })
    }
}
