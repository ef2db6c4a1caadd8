//! A validator's next consensus key (`--next-signer-keystore-path`;
//! docs/key-rotation.md): an encrypted keystore the node loads at start if
//! its directory is there, or later, while it runs, when the operator asks
//! (`qbind-admin load-next-key`). So a node configured with the path once
//! rotates its key on chain with no restart at any step: the key is
//! generated into the directory when the rotation is planned and loaded
//! then.
//!
//! The key is loaded at most once per process. Its signer keeps its own
//! double-sign record beside the key, and the engine picks it for every
//! signing job of an epoch that accepts its key
//! (`qbind_core::engine::Engine::with_next_signer_slot`); before an
//! executed rotation names the key, a loaded next key signs nothing.
//!
//! It is supervised like the current signer: the same failure mode, its
//! own [`SignerMetrics`] (exported beside the current signer's with the
//! label `key="next"` once loaded), and under `exit-on-failure` a fatal
//! failure reported on [`NextKey::exit_signal`], which stops the node as
//! the current signer's does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use qbind_core::crypto::PublicKey;
use qbind_core::engine::NextSignerSlot;
use qbind_core::key_rotation::KeyRole;
use qbind_core::traits::Signer;
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_signer::keystore;
use qbind_signer::remote::PeerIdentity;
use qbind_signer::{SignerFailureMode, SignerMetrics, SignerMode, SignerSettings, build_signer};
use tokio::sync::watch;

/// Why the next key was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum NextKeyError {
    /// The configured directory holds no consensus key (yet).
    #[error(
        "no keystore at {0} (--next-signer-keystore-path): generate the next key there first \
         (qbind-keygen generate --validator-id ID --key-roles consensus --encrypt \
         --passphrase-env VAR --output DIR, with the current keystore's passphrase)"
    )]
    Missing(PathBuf),
    /// The keystore did not open: wrong passphrase, no consensus key, no
    /// double-sign record, a file with loose permissions, ...
    #[error("the next keystore at {dir}: {reason}")]
    Unusable {
        /// The configured directory.
        dir: PathBuf,
        /// What the signer factory said.
        reason: String,
    },
    /// It holds the key the validator signs with now.
    #[error("the next keystore at {0} holds the current consensus key: it must hold the new key")]
    SameKey(PathBuf),
}

/// What a load did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The key's fingerprint (as `qbind-keygen` prints it).
    pub fingerprint: String,
    /// False if it was loaded before (by an earlier request, or at start);
    /// the key is then the earlier one, whatever the directory holds now.
    pub now: bool,
}

/// Whether `dir` holds a consensus key to load: the node loads the next key
/// at start only then, and starts without it otherwise.
#[must_use]
pub fn holds_key(dir: &Path) -> bool {
    keystore::key_path(dir, KeyRole::Consensus).exists()
}

/// A validator's next consensus key: where its keystore is, how to open
/// it, and the slot its signer goes into once opened.
pub struct NextKey {
    dir: PathBuf,
    env: NetworkEnvironment,
    validator: ValidatorId,
    failure_mode: SignerFailureMode,
    passphrase_env: Option<String>,
    passphrase_file: Option<PathBuf>,
    current: PublicKey,
    slot: NextSignerSlot,
    /// The loaded signer's metrics (set with the slot).
    metrics: OnceLock<Arc<SignerMetrics>>,
    /// `Some(code)` once the loaded signer failed fatally (ExitOnFailure).
    exit: watch::Sender<Option<i32>>,
    /// One load at a time (two admin requests at once build one signer).
    loading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for NextKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NextKey")
            .field("dir", &self.dir)
            .field("validator", &self.validator)
            .field("loaded", &self.loaded())
            .finish_non_exhaustive()
    }
}

impl NextKey {
    /// Validator `validator`'s next key in the encrypted keystore `dir`,
    /// opened with the current keystore's passphrase source; `current` is
    /// the key it signs with now (a next key equal to it is refused).
    #[must_use]
    pub fn new(
        dir: PathBuf,
        env: NetworkEnvironment,
        validator: ValidatorId,
        failure_mode: SignerFailureMode,
        passphrase_env: Option<String>,
        passphrase_file: Option<PathBuf>,
        current: PublicKey,
    ) -> Self {
        NextKey {
            dir,
            env,
            validator,
            failure_mode,
            passphrase_env,
            passphrase_file,
            current,
            slot: NextSignerSlot::default(),
            metrics: OnceLock::new(),
            exit: watch::Sender::new(None),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// The configured keystore directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The slot the engine takes the next signer from.
    #[must_use]
    pub fn slot(&self) -> NextSignerSlot {
        Arc::clone(&self.slot)
    }

    /// The loaded signer's metrics; none before it is loaded.
    #[must_use]
    pub fn metrics(&self) -> Option<&Arc<SignerMetrics>> {
        self.metrics.get()
    }

    /// Becomes `Some(code)` when the loaded signer failed fatally (its
    /// failure mode is `exit-on-failure`): the node stops and exits with
    /// `code`, as for the current signer. Never before a load.
    #[must_use]
    pub fn exit_signal(&self) -> watch::Receiver<Option<i32>> {
        self.exit.subscribe()
    }

    /// The loaded key's fingerprint, if it is loaded.
    #[must_use]
    pub fn loaded(&self) -> Option<String> {
        self.slot.get().map(|s| fingerprint(s.public_key()))
    }

    /// Open the keystore and hand its signer to the engine, unless it was
    /// loaded before. Opening derives the passphrase's key (a second or
    /// so): call it off the async workers' hot path.
    ///
    /// # Errors
    /// [`NextKeyError`]; nothing changes then.
    pub async fn load(&self) -> Result<Loaded, NextKeyError> {
        let _one = self.loading.lock().await;
        if let Some(fingerprint) = self.loaded() {
            return Ok(Loaded {
                fingerprint,
                now: false,
            });
        }
        let key_file = keystore::key_path(&self.dir, KeyRole::Consensus);
        if !holds_key(&self.dir) {
            return Err(NextKeyError::Missing(self.dir.clone()));
        }
        // The key file names its public key in the clear: the current key
        // is refused before the passphrase's key derivation (a second of
        // CPU), which a finished rotation would otherwise cost every
        // request.
        if keystore::inspect(&key_file).is_ok_and(|info| info.public_key == self.current.as_bytes())
        {
            return Err(NextKeyError::SameKey(self.dir.clone()));
        }
        let settings = SignerSettings {
            mode: SignerMode::EncryptedFs,
            env: self.env,
            validator: self.validator,
            failure_mode: self.failure_mode,
            double_sign_dir: Some(self.dir.clone()),
            init_double_sign_record: false,
            keystore_path: Some(self.dir.clone()),
            passphrase_env: self.passphrase_env.clone(),
            passphrase_file: self.passphrase_file.clone(),
            hsm_config_path: None,
            remote: None,
            loopback_key: None,
        };
        // The metrics are the loaded signer's only: a failed attempt
        // (its start-up check) builds on a fresh set.
        let metrics = SignerMetrics::shared();
        let signer = build_signer(settings, Arc::clone(&metrics))
            .await
            .map_err(|e| NextKeyError::Unusable {
                dir: self.dir.clone(),
                reason: e.to_string(),
            })?;
        if signer.public_key() == &self.current {
            return Err(NextKeyError::SameKey(self.dir.clone()));
        }
        let fingerprint = fingerprint(signer.public_key());
        let signer = Arc::new(signer);
        // Its fatal failure becomes this key's, for as long as the process
        // runs (the signer never leaves the slot).
        let mut failed = signer.exit_signal();
        let exit = self.exit.clone();
        tokio::spawn(async move {
            if let Ok(code) = failed.wait_for(Option::is_some).await {
                let code = *code;
                exit.send_replace(code);
            }
        });
        // Only this function fills the slot (and the metrics), under
        // `loading`, after seeing it empty.
        let _ = self.metrics.set(metrics);
        let _ = self.slot.set(Box::new(signer));
        tracing::info!(
            validator = self.validator.0,
            dir = %self.dir.display(),
            key = %fingerprint,
            "next consensus key loaded: it signs from the epoch an executed rotation to it takes \
             effect"
        );
        Ok(Loaded {
            fingerprint,
            now: true,
        })
    }
}

/// A consensus public key's fingerprint, as `qbind-keygen` prints it.
fn fingerprint(key: &PublicKey) -> String {
    PeerIdentity::of_key(key.as_bytes()).short_hex()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use qbind_signer::DoubleSignGuard;
    use qbind_signer::keystore::{KdfPolicy, Passphrase};

    pub(in crate::local) const PASS: &str = "next key unit test passphrase";
    const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

    /// A consensus keystore with its double-sign record, as `qbind-keygen
    /// generate` writes it; returns its public key.
    pub(in crate::local) fn keystore(dir: &Path) -> PublicKey {
        let pk = keystore::generate_key(
            dir,
            ValidatorId(1),
            KeyRole::Consensus,
            &Passphrase::new(PASS.into()),
            KdfPolicy::PRODUCTION.min,
            &KdfPolicy::PRODUCTION,
        )
        .expect("generate");
        DoubleSignGuard::init(dir, ValidatorId(1), ENV).expect("record");
        PublicKey::from_bytes(&pk).expect("public key")
    }

    fn next_key(dir: &Path, current: PublicKey, pass_file: &Path) -> NextKey {
        supervised(dir, current, pass_file, SignerFailureMode::LogAndContinue)
    }

    /// Validator 1's next key in `dir` (passphrase from `pass_file`).
    pub(in crate::local) fn supervised(
        dir: &Path,
        current: PublicKey,
        pass_file: &Path,
        mode: SignerFailureMode,
    ) -> NextKey {
        NextKey::new(
            dir.to_path_buf(),
            ENV,
            ValidatorId(1),
            mode,
            None,
            Some(pass_file.to_path_buf()),
            current,
        )
    }

    pub(in crate::local) fn pass_file(dir: &Path, pass: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("pass-{}", pass.len()));
        std::fs::write(&path, pass).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }

    #[tokio::test]
    async fn loads_once_from_a_directory_that_appears_later() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let current_dir = tmp.path().join("current");
        let current = keystore(&current_dir);
        let dir = tmp.path().join("next");
        let pass = pass_file(tmp.path(), PASS);
        let next = next_key(&dir, current, &pass);
        let slot = next.slot();

        // Not there yet, or an empty directory: refused, the slot stays
        // empty.
        assert!(matches!(next.load().await, Err(NextKeyError::Missing(_))));
        std::fs::create_dir(&dir).expect("mkdir");
        assert!(!holds_key(&dir));
        assert!(matches!(next.load().await, Err(NextKeyError::Missing(_))));
        assert!(slot.get().is_none() && next.loaded().is_none());

        // Generated later: loaded into the engine's slot.
        let key = keystore(&dir);
        let loaded = next.load().await.expect("load");
        let expected = PeerIdentity::of_key(key.as_bytes()).short_hex();
        assert_eq!(
            loaded,
            Loaded {
                fingerprint: expected.clone(),
                now: true
            }
        );
        assert_eq!(
            slot.get().map(|s| s.public_key().clone()),
            Some(key.clone())
        );

        // Once: a second request reports the loaded key, even when the
        // directory holds another one by then.
        std::fs::remove_dir_all(&dir).expect("remove");
        keystore(&dir);
        let again = next.load().await.expect("load again");
        assert_eq!(
            again,
            Loaded {
                fingerprint: expected,
                now: false
            }
        );
        assert_eq!(slot.get().map(|s| s.public_key().clone()), Some(key));
    }

    #[tokio::test]
    async fn the_current_key_and_a_wrong_passphrase_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("next");
        let key = keystore(&dir);
        let right = pass_file(tmp.path(), PASS);
        let wrong = pass_file(tmp.path(), "a different passphrase, long enough");

        let same = next_key(&dir, key.clone(), &right);
        assert!(matches!(same.load().await, Err(NextKeyError::SameKey(_))));
        assert!(same.loaded().is_none());

        let other = keystore(&tmp.path().join("current"));
        let locked = next_key(&dir, other, &wrong);
        assert!(matches!(
            locked.load().await,
            Err(NextKeyError::Unusable { .. })
        ));
        assert!(locked.loaded().is_none());
    }

    /// Under exit-on-failure a fatal failure of the loaded next signer is
    /// reported on the key's exit signal (the node stops on it) and in its
    /// metrics, which exist only once it is loaded.
    #[tokio::test]
    async fn a_fatal_failure_of_the_next_signer_is_reported() {
        use qbind_core::types::Hash32;
        use qbind_signer::SignerHealth;
        let tmp = tempfile::tempdir().expect("tempdir");
        let current = keystore(&tmp.path().join("current"));
        let dir = tmp.path().join("next");
        keystore(&dir);
        let pass = pass_file(tmp.path(), PASS);
        let next = supervised(&dir, current, &pass, SignerFailureMode::ExitOnFailure);
        let mut exit = next.exit_signal();
        assert!(next.metrics().is_none());
        next.load().await.expect("load");
        let metrics = Arc::clone(next.metrics().expect("metrics once loaded"));
        let slot = next.slot();
        let signer = slot.get().expect("loaded");

        // It signs while its double-sign record is there...
        let vote = qbind_signer::slot::requests::vote;
        signer
            .sign(&vote(1, Hash32([1; 32])))
            .await
            .expect("first vote");
        assert_eq!(metrics.signatures(), 1);
        assert_eq!(*exit.borrow(), None);

        // ... and fails fatally without it.
        std::fs::remove_dir_all(&dir).expect("remove the next keystore");
        let failed = signer.sign(&vote(2, Hash32([2; 32]))).await;
        assert!(
            matches!(
                failed,
                Err(qbind_core::traits::SignerError::Unavailable { .. })
            ),
            "{failed:?}"
        );
        let code = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            exit.wait_for(Option::is_some),
        )
        .await
        .expect("the exit signal fires")
        .map(|c| *c)
        .expect("the sender lives in the key");
        assert_eq!(code, Some(qbind_signer::metrics::SIGNER_FAILURE_EXIT_CODE));
        assert_eq!(metrics.health(), SignerHealth::Failed);
    }
}
