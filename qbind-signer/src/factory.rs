//! Building the node's signer from its settings at run time (spec §6.5,
//! §7.2 `--signer-mode`, `--signer-keystore-path`, `--hsm-config-path`,
//! `--remote-signer-url`): the chosen mode, behind the double-sign guard,
//! behind the failure-mode supervisor, as one `Box<dyn Signer>`-compatible
//! [`SupervisedSigner`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use qbind_core::crypto::{KeyPair, PublicKey};
use qbind_core::key_rotation::KeyRole;
use qbind_core::traits::Signer;
use qbind_core::types::{NetworkEnvironment, ValidatorId};

use crate::keystore::{self, KdfPolicy, Passphrase};
use crate::pkcs11::{HsmConfig, Pkcs11Signer};
use crate::remote::{RemoteSigner, connect_kemtls};
use crate::{
    DoubleSignGuard, EncryptedFsSigner, GuardedSigner, LoopbackSigner, SignerFailureMode,
    SignerMetrics, SignerMode, SupervisedSigner,
};

/// Where the remote-signer client finds its KEMTLS keys.
#[derive(Clone, Debug)]
pub struct RemoteSettings {
    /// `kemtls://host:port`.
    pub url: String,
    /// The node's own encrypted `p2p_identity.key`.
    pub identity_key_path: PathBuf,
    /// Variable holding that key's passphrase.
    pub identity_passphrase_env: String,
    /// File holding that key's passphrase (preferred over the variable).
    pub identity_passphrase_file: Option<PathBuf>,
    /// The daemon's `p2p_identity.pub`.
    pub daemon_public_key_path: PathBuf,
    /// The consensus public key the daemon must hold (hex `consensus.pub`), if pinned.
    pub expected_consensus_pub: Option<PathBuf>,
    /// Connect and per-request timeout.
    pub timeout: Duration,
}

/// Everything needed to build a signer.
#[derive(Debug)]
pub struct SignerSettings {
    /// The mode.
    pub mode: SignerMode,
    /// The network.
    pub env: NetworkEnvironment,
    /// The validator.
    pub validator: ValidatorId,
    /// ExitOnFailure or LogAndContinue.
    pub failure_mode: SignerFailureMode,
    /// Directory of the double-sign record (on the node's data dir).
    /// `None` only for tools that sign no consensus messages (e.g.
    /// `qbind-key-rotation`): the signer then has no double-sign guard.
    pub double_sign_dir: Option<PathBuf>,
    /// Create an empty double-sign record when there is none (the
    /// operator's explicit `--init-double-sign-record`; logged). Without it
    /// a missing record stops start-up.
    pub init_double_sign_record: bool,
    /// `encrypted-fs`: keystore directory.
    pub keystore_path: Option<PathBuf>,
    /// `encrypted-fs`: passphrase variable.
    pub passphrase_env: Option<String>,
    /// `encrypted-fs`: passphrase file (preferred over the variable).
    pub passphrase_file: Option<PathBuf>,
    /// `hsm-pkcs11`: the HSM TOML.
    pub hsm_config_path: Option<PathBuf>,
    /// `remote-signer`: the KEMTLS settings.
    pub remote: Option<RemoteSettings>,
    /// `loopback-testing`: the in-memory key.
    pub loopback_key: Option<KeyPair>,
}

/// Why no signer could be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The mode or failure mode is forbidden on this network.
    #[error("{0}")]
    Forbidden(String),
    /// A setting the mode needs is missing.
    #[error("signer mode {mode:?} needs {what}")]
    Missing {
        /// The mode.
        mode: SignerMode,
        /// The missing setting.
        what: &'static str,
    },
    /// The backend failed to start (keystore, HSM, remote, record).
    #[error("signer startup failed: {0}")]
    Startup(String),
}

/// Build the signer; `metrics` receives the startup result and every
/// failure. MainNet refuses `loopback-testing` and `LogAndContinue`.
///
/// # Errors
/// [`BuildError`].
pub async fn build_signer(
    s: SignerSettings,
    metrics: Arc<SignerMetrics>,
) -> Result<SupervisedSigner, BuildError> {
    let forbidden = |e: &dyn std::fmt::Display| BuildError::Forbidden(e.to_string());
    s.mode.validate_for(s.env).map_err(|e| forbidden(&e))?;
    s.failure_mode
        .validate_for(s.env)
        .map_err(|e| forbidden(&e))?;
    let startup = |e: &dyn std::fmt::Display| BuildError::Startup(e.to_string());
    let missing = |what| BuildError::Missing { mode: s.mode, what };
    let inner: Box<dyn Signer> = match s.mode {
        SignerMode::LoopbackTesting => {
            let key = s
                .loopback_key
                .clone()
                .ok_or_else(|| missing("a loopback key"))?;
            metrics.set_startup_ok(true);
            Box::new(LoopbackSigner::new(s.validator, s.env, key).map_err(|e| forbidden(&e))?)
        }
        SignerMode::EncryptedFs => {
            let dir = s
                .keystore_path
                .as_ref()
                .ok_or_else(|| missing("--signer-keystore-path"))?;
            let pass = match (&s.passphrase_file, s.passphrase_env.as_deref()) {
                (Some(f), _) => Passphrase::from_file(f),
                (None, Some(var)) => Passphrase::from_env(var),
                (None, None) => return Err(missing("a passphrase file or variable")),
            };
            let opened = pass.and_then(|p| {
                EncryptedFsSigner::open(
                    dir,
                    s.validator,
                    KeyRole::Consensus,
                    s.env,
                    &p,
                    &KdfPolicy::PRODUCTION,
                )
            });
            metrics.set_startup_ok(opened.is_ok());
            Box::new(opened.map_err(|e| startup(&e))?)
        }
        SignerMode::HsmPkcs11 => {
            let path = s
                .hsm_config_path
                .as_ref()
                .ok_or_else(|| missing("--hsm-config-path"))?;
            let cfg = HsmConfig::load(path).map_err(|e| {
                metrics.set_startup_ok(false);
                metrics.record_hsm_error(e.kind());
                startup(&e)
            })?;
            Box::new(
                Pkcs11Signer::open_from_env(&cfg, s.validator, s.env, Arc::clone(&metrics))
                    .map_err(|e| startup(&e))?,
            )
        }
        SignerMode::RemoteSigner => {
            let r = s
                .remote
                .as_ref()
                .ok_or_else(|| missing("--remote-signer-url and KEMTLS keys"))?;
            let fail = |e: &dyn std::fmt::Display| {
                metrics.set_startup_ok(false);
                BuildError::Startup(e.to_string())
            };
            let pass = Passphrase::from_file_or_env(
                r.identity_passphrase_file.as_deref(),
                &r.identity_passphrase_env,
            )
            .map_err(|e| fail(&e))?;
            let id = keystore::load_key_file(
                &r.identity_key_path,
                Some(s.validator),
                KeyRole::P2pIdentity,
                &pass,
                &KdfPolicy::PRODUCTION,
            )
            .map_err(|e| fail(&e))?;
            let (d, z) = id
                .kem_seed()
                .ok_or_else(|| fail(&"identity key is not ML-KEM"))?;
            let identity = qbind_net::StaticIdentity::from_seed(&d, &z);
            let daemon_key =
                keystore::read_pub_file(&r.daemon_public_key_path, KeyRole::P2pIdentity)
                    .map_err(|e| fail(&e))?;
            let daemon = qbind_net::PeerPublic::from_bytes(&daemon_key).map_err(|e| fail(&e))?;
            let expected = match &r.expected_consensus_pub {
                Some(p) => {
                    let bytes =
                        keystore::read_pub_file(p, KeyRole::Consensus).map_err(|e| fail(&e))?;
                    Some(PublicKey::from_bytes(&bytes).map_err(|e| fail(&e))?)
                }
                None => None,
            };
            let ch = connect_kemtls(&r.url, &identity, &daemon, s.env, r.timeout)
                .await
                .map_err(|e| {
                    metrics.record_remote_failure(crate::RemoteFailureReason::Transport);
                    fail(&e)
                })?;
            Box::new(
                RemoteSigner::connect(
                    Box::new(ch),
                    s.validator,
                    s.env,
                    expected,
                    r.timeout,
                    Arc::clone(&metrics),
                )
                .await
                .map_err(|e| startup(&e))?,
            )
        }
    };
    let inner: Box<dyn Signer> = match &s.double_sign_dir {
        Some(dir) => {
            let guard = if s.init_double_sign_record {
                tracing::warn!(
                    dir = %dir.display(),
                    "--init-double-sign-record: creating an empty double-sign record if none exists"
                );
                DoubleSignGuard::init(dir, s.validator, s.env)
            } else {
                DoubleSignGuard::open(dir, s.validator, s.env)
            }
            .map_err(|e| startup(&e))?;
            Box::new(GuardedSigner::new(
                inner,
                Arc::new(guard),
                Arc::clone(&metrics),
            ))
        }
        None => inner,
    };
    Ok(SupervisedSigner::new(inner, s.failure_mode, metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(
        mode: SignerMode,
        env: NetworkEnvironment,
        dir: &std::path::Path,
    ) -> SignerSettings {
        SignerSettings {
            mode,
            env,
            validator: ValidatorId(1),
            failure_mode: SignerFailureMode::default_for(env),
            double_sign_dir: Some(dir.to_owned()),
            init_double_sign_record: true,
            keystore_path: None,
            passphrase_env: None,
            passphrase_file: None,
            hsm_config_path: None,
            remote: None,
            loopback_key: Some(KeyPair::from_seed(&[1; 32])),
        }
    }

    #[tokio::test]
    async fn modes_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let m = SignerMetrics::shared();
        let s = build_signer(
            settings(
                SignerMode::LoopbackTesting,
                NetworkEnvironment::Devnet,
                dir.path(),
            ),
            Arc::clone(&m),
        )
        .await
        .unwrap();
        assert_eq!(s.mode(), SignerFailureMode::LogAndContinue);
        assert_eq!(m.startup_ok(), Some(true));
        assert!(matches!(
            build_signer(
                settings(
                    SignerMode::LoopbackTesting,
                    NetworkEnvironment::Mainnet,
                    dir.path()
                ),
                SignerMetrics::shared()
            )
            .await,
            Err(BuildError::Forbidden(_))
        ));
        let mut lac = settings(
            SignerMode::EncryptedFs,
            NetworkEnvironment::Mainnet,
            dir.path(),
        );
        lac.failure_mode = SignerFailureMode::LogAndContinue;
        assert!(matches!(
            build_signer(lac, SignerMetrics::shared()).await,
            Err(BuildError::Forbidden(_))
        ));
        for mode in [
            SignerMode::EncryptedFs,
            SignerMode::HsmPkcs11,
            SignerMode::RemoteSigner,
        ] {
            assert!(matches!(
                build_signer(
                    settings(mode, NetworkEnvironment::Mainnet, dir.path()),
                    SignerMetrics::shared()
                )
                .await,
                Err(BuildError::Missing { .. })
            ));
        }
        let mut fs = settings(
            SignerMode::EncryptedFs,
            NetworkEnvironment::Testnet,
            dir.path(),
        );
        fs.keystore_path = Some(dir.path().join("nope"));
        fs.passphrase_env = Some("QBIND_TEST_NEVER_SET_PASSPHRASE".into());
        let m = SignerMetrics::shared();
        assert!(matches!(
            build_signer(fs, Arc::clone(&m)).await,
            Err(BuildError::Startup(_))
        ));
        assert_eq!(m.startup_ok(), Some(false));
    }

    /// Issue #22 finding 3: without the explicit flag, a node with no
    /// double-sign record does not start.
    #[tokio::test]
    async fn a_missing_record_stops_start_up_unless_initialised() {
        let dir = tempfile::tempdir().unwrap();
        let record_dir = dir.path().join("record");
        let mut s = settings(
            SignerMode::LoopbackTesting,
            NetworkEnvironment::Devnet,
            &record_dir,
        );
        s.init_double_sign_record = false;
        assert!(matches!(
            build_signer(s, SignerMetrics::shared()).await,
            Err(BuildError::Startup(_))
        ));
        let s = settings(
            SignerMode::LoopbackTesting,
            NetworkEnvironment::Devnet,
            &record_dir,
        );
        build_signer(s, SignerMetrics::shared()).await.unwrap();
        let mut s = settings(
            SignerMode::LoopbackTesting,
            NetworkEnvironment::Devnet,
            &record_dir,
        );
        s.init_double_sign_record = false;
        build_signer(s, SignerMetrics::shared()).await.unwrap();
    }
}
