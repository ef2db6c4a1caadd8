//! # qbind-signer
//!
//! The [`Signer`](qbind_core::traits::Signer) implementations of QBIND
//! (spec §6.5, §6.5.1; runbook §4.1–4.2, §6, §10.2–10.5), each chosen at run
//! time as a `Box<dyn Signer>`:
//!
//! | mode | type | notes |
//! | --- | --- | --- |
//! | `loopback-testing` | [`LoopbackSigner`] | in-memory key; refused on MainNet |
//! | `encrypted-fs` | [`EncryptedFsSigner`] | [`keystore`]: Argon2id + XChaCha20-Poly1305 |
//! | `hsm-pkcs11` | [`pkcs11::Pkcs11Signer`] | `CKM_ML_DSA` (ML-DSA-44) on the token |
//! | `remote-signer` | [`remote::RemoteSigner`] | talks to `qbind-remote-signer` |
//!
//! Every mode goes behind a [`GuardedSigner`] (durable double-sign
//! protection, [`guard`]) and a [`SupervisedSigner`] (failure mode, metrics,
//! health, [`metrics`]).
//!
//! ```
//! use std::sync::Arc;
//! use qbind_core::crypto::KeyPair;
//! use qbind_core::signing::{SignKind, verify_domain};
//! use qbind_core::traits::{SignRequest, Signer};
//! use qbind_core::types::{Hash32, NetworkEnvironment, ValidatorId};
//! use qbind_signer::slot::requests;
//! use qbind_signer::{DoubleSignGuard, GuardedSigner, LoopbackSigner, SignerMetrics};
//!
//! let env = NetworkEnvironment::Devnet;
//! let dir = tempfile::tempdir().unwrap();
//! let key = KeyPair::from_seed(&[7; 32]);
//! let inner = LoopbackSigner::new(ValidatorId(0), env, key.clone()).unwrap();
//! // `init` creates the record (with the key); a node later `open`s it.
//! let guard = Arc::new(DoubleSignGuard::init(dir.path(), ValidatorId(0), env).unwrap());
//! let signer: Box<dyn Signer> =
//!     Box::new(GuardedSigner::new(Box::new(inner), guard, SignerMetrics::shared()));
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let vote: SignRequest = requests::vote(3, Hash32::digest(b"block A"));
//! let sig = rt.block_on(signer.sign(&vote)).unwrap();
//! assert!(verify_domain(key.public_key(), env, SignKind::Vote, &vote.message, &sig).is_ok());
//! // A different vote in the same view is refused, also after a restart,
//! // and so is one that claims another view than the one it signs.
//! let other = requests::vote(3, Hash32::digest(b"block B"));
//! assert!(rt.block_on(signer.sign(&other)).is_err());
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod durable;
pub mod factory;
pub mod guard;
pub mod keystore;
pub mod local;
pub mod metrics;
pub mod pkcs11;
pub mod record;
pub mod remote;
pub mod rotation;
pub mod slot;

pub use factory::{BuildError, RemoteSettings, SignerSettings, build_signer};
pub use guard::{DoubleSignGuard, DoubleSignRecord, GuardError, GuardedSigner, RecordError};
pub use local::{EncryptedFsSigner, LoopbackForbidden, LoopbackSigner};
pub use metrics::{
    FailureAction, HsmErrorKind, RemoteFailureReason, SignerFailureMode, SignerHealth,
    SignerMetrics, SupervisedSigner,
};

use qbind_core::types::NetworkEnvironment;

/// The signer modes of spec §6.5 (`--signer-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignerMode {
    /// In-memory keys (tests, DevNet); forbidden on MainNet.
    LoopbackTesting,
    /// Encrypted keystore on disk.
    EncryptedFs,
    /// PKCS#11 token.
    HsmPkcs11,
    /// `qbind-remote-signer` daemon.
    RemoteSigner,
}

/// A signer mode that is not allowed on the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signer mode {mode:?} is forbidden on {env:?}")]
pub struct SignerModeForbidden {
    /// The mode.
    pub mode: SignerMode,
    /// The network.
    pub env: NetworkEnvironment,
}

impl SignerMode {
    /// Parse the CLI name (`loopback-testing`, `encrypted-fs`, `hsm-pkcs11`,
    /// `remote-signer`).
    #[must_use]
    pub fn from_cli_name(s: &str) -> Option<Self> {
        match s {
            "loopback-testing" => Some(SignerMode::LoopbackTesting),
            "encrypted-fs" => Some(SignerMode::EncryptedFs),
            "hsm-pkcs11" => Some(SignerMode::HsmPkcs11),
            "remote-signer" => Some(SignerMode::RemoteSigner),
            _ => None,
        }
    }

    /// MainNet refuses `loopback-testing`.
    ///
    /// # Errors
    /// [`SignerModeForbidden`].
    pub fn validate_for(self, env: NetworkEnvironment) -> Result<(), SignerModeForbidden> {
        if env == NetworkEnvironment::Mainnet && self == SignerMode::LoopbackTesting {
            return Err(SignerModeForbidden { mode: self, env });
        }
        Ok(())
    }
}
