//! The `hsm-pkcs11` mode (spec §6.5; runbook §4.1 option B, §4.2, §10.3).
//!
//! The signer loads the vendor's PKCS#11 library through `cryptoki`, finds
//! the token by label, logs in with the PIN from the environment variable
//! named in the config, and signs with `CKM_ML_DSA` (pure ML-DSA, empty
//! context, deterministic) using the ML-DSA-44 private key found by label.
//! The private key never leaves the token: only the public key is read (from
//! the public key object with the same label). The token signs exactly the
//! bytes `qbind_core::signing::signing_preimage` builds, so its signatures
//! verify with `qbind_core::signing::verify_domain`; every signature is also
//! verified before it is returned (a faulty token can never push a bad
//! signature into consensus).
//!
//! Failures are fail-closed: once the token fails (session gone, library
//! finalised, token removed) the signer answers every later request with
//! [`SignerError::Unavailable`] and counts `qbind_hsm_sign_error_total{kind}`;
//! the node's failure mode decides whether to exit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::dsa::{HedgeType, SignAdditionalContext};
use cryptoki::object::{
    Attribute, AttributeType, KeyType, MlDsaParameterSetType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use qbind_core::crypto::{PreparedPublicKey, PublicKey, Signature};
use qbind_core::signing::signing_preimage;
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use serde::Deserialize;

use crate::metrics::{HsmErrorKind, SignerMetrics};

/// The HSM configuration file (runbook §4.2 "HSM Configuration Options").
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// Path of the vendor's PKCS#11 library.
    pub library_path: PathBuf,
    /// Label of the token (slot) holding the key.
    pub token_label: String,
    /// Label of the key pair on the token.
    pub key_label: String,
    /// Name of the environment variable that holds the user PIN (empty or
    /// absent when `pin_file` is set).
    #[serde(default)]
    pub pin_env_var: String,
    /// A file holding the user PIN (regular, owner-only, at most 4 KiB;
    /// preferred over `pin_env_var`: see `docs/signer.md`).
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
}

impl HsmConfig {
    /// Parse a TOML document.
    ///
    /// # Errors
    /// [`Pkcs11Error::Config`].
    pub fn from_toml_str(text: &str) -> Result<Self, Pkcs11Error> {
        let c: HsmConfig = toml::from_str(text).map_err(|e| Pkcs11Error::Config {
            detail: e.to_string(),
        })?;
        if c.token_label.is_empty()
            || c.key_label.is_empty()
            || (c.pin_env_var.is_empty() == c.pin_file.is_none())
        {
            return Err(Pkcs11Error::Config {
                detail: "token_label and key_label must not be empty, and exactly one of \
                         pin_env_var and pin_file must be set"
                    .into(),
            });
        }
        Ok(c)
    }

    /// Read and parse the file at `path`.
    ///
    /// # Errors
    /// [`Pkcs11Error::Config`].
    pub fn load(path: &Path) -> Result<Self, Pkcs11Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Pkcs11Error::Config {
            detail: format!("{}: {e}", path.display()),
        })?;
        Self::from_toml_str(&text)
    }

    /// The user PIN: from `pin_file` when set (wiped after use by the
    /// `AuthPin` secret), else from the variable named by `pin_env_var`.
    ///
    /// # Errors
    /// [`Pkcs11Error::Config`] if it is unset or empty.
    pub fn pin_from_env(&self) -> Result<AuthPin, Pkcs11Error> {
        if let Some(path) = &self.pin_file {
            let pin = crate::keystore::read_secret_file(path).map_err(|e| Pkcs11Error::Config {
                detail: e.to_string(),
            })?;
            return Ok(AuthPin::from(pin.as_str().to_owned()));
        }
        match std::env::var(&self.pin_env_var) {
            Ok(p) if !p.is_empty() => Ok(AuthPin::from(p)),
            _ => Err(Pkcs11Error::Config {
                detail: format!("PIN variable {} is unset or empty", self.pin_env_var),
            }),
        }
    }
}

/// PKCS#11 failures, one per `qbind_hsm_sign_error_total{kind}` label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs11Error {
    /// Bad configuration.
    #[error("HSM configuration: {detail}")]
    Config {
        /// What is wrong.
        detail: String,
    },
    /// The library could not be loaded or initialised.
    #[error("PKCS#11 library: {detail}")]
    Library {
        /// What failed.
        detail: String,
    },
    /// No token with this label.
    #[error("no PKCS#11 token labelled {label:?}")]
    TokenNotFound {
        /// The label.
        label: String,
    },
    /// Login failed.
    #[error("PKCS#11 login failed: {detail}")]
    Login {
        /// The token's answer.
        detail: String,
    },
    /// No ML-DSA-44 key pair with this label.
    #[error("no ML-DSA key pair labelled {label:?} on the token")]
    KeyNotFound {
        /// The label.
        label: String,
    },
    /// A call failed at run time.
    #[error("PKCS#11 operation failed: {detail}")]
    Runtime {
        /// What failed.
        detail: String,
    },
}

impl Pkcs11Error {
    /// The metric label of this error.
    #[must_use]
    pub fn kind(&self) -> HsmErrorKind {
        match self {
            Pkcs11Error::Config { .. } => HsmErrorKind::Config,
            Pkcs11Error::Library { .. } => HsmErrorKind::Library,
            Pkcs11Error::TokenNotFound { .. } => HsmErrorKind::Token,
            Pkcs11Error::Login { .. } => HsmErrorKind::Login,
            Pkcs11Error::KeyNotFound { .. } => HsmErrorKind::KeyNotFound,
            Pkcs11Error::Runtime { .. } => HsmErrorKind::Runtime,
        }
    }
}

fn runtime(e: CkError) -> Pkcs11Error {
    Pkcs11Error::Runtime {
        detail: e.to_string(),
    }
}

/// Every PKCS#11 library this process loaded, kept loaded until the process
/// ends. A vendor library (and the OpenSSL inside many of them) registers
/// per-thread destructors; unloading it while other threads live makes
/// those threads jump into unmapped code when they exit. Seen with the
/// kryoptic token: `qbind-node` crashed with SIGSEGV on shutdown after its
/// signer, the last user of the library, was dropped.
static LOADED: std::sync::Mutex<Vec<(PathBuf, Pkcs11)>> = std::sync::Mutex::new(Vec::new());

/// Load and initialise the library (an already initialised library is fine).
/// The library is never unloaded (see [`LOADED`]).
fn open_library(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    let ctx = Pkcs11::new(path).map_err(|e| Pkcs11Error::Library {
        detail: format!("{}: {e}", path.display()),
    })?;
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !loaded.iter().any(|(p, _)| p == path) {
        loaded.push((path.to_owned(), ctx.clone()));
    }
    drop(loaded);
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(ctx),
        Err(e) => Err(Pkcs11Error::Library {
            detail: e.to_string(),
        }),
    }
}

fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, Pkcs11Error> {
    for slot in ctx.get_slots_with_token().map_err(runtime)? {
        if let Ok(info) = ctx.get_token_info(slot)
            && info.label().trim_end() == label
        {
            return Ok(slot);
        }
    }
    Err(Pkcs11Error::TokenNotFound {
        label: label.to_owned(),
    })
}

fn login(session: &Session, user: UserType, pin: &AuthPin) -> Result<(), Pkcs11Error> {
    match session.login(user, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(e) => Err(Pkcs11Error::Login {
            detail: e.to_string(),
        }),
    }
}

fn find_key(
    session: &Session,
    class: ObjectClass,
    label: &str,
) -> Result<ObjectHandle, Pkcs11Error> {
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::KeyType(KeyType::ML_DSA),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(runtime)?;
    found
        .first()
        .copied()
        .ok_or_else(|| Pkcs11Error::KeyNotFound {
            label: label.to_owned(),
        })
}

fn read_public_key(session: &Session, handle: ObjectHandle) -> Result<PublicKey, Pkcs11Error> {
    let attrs = session
        .get_attributes(handle, &[AttributeType::Value])
        .map_err(runtime)?;
    for a in attrs {
        if let Attribute::Value(v) = a {
            return PublicKey::from_bytes(&v).map_err(|e| Pkcs11Error::Runtime {
                detail: format!("token public key: {e} (is it ML-DSA-44?)"),
            });
        }
    }
    Err(Pkcs11Error::Runtime {
        detail: "token did not return the public key value".into(),
    })
}

/// Pure ML-DSA, empty context, deterministic (as `qbind_core::crypto::KeyPair::sign`).
fn ml_dsa_mechanism() -> Mechanism<'static> {
    Mechanism::MlDsa(SignAdditionalContext::new(
        HedgeType::DeterministicRequired,
        None,
    ))
}

struct TokenSession {
    session: Session,
    key: ObjectHandle,
}

/// A signer whose ML-DSA-44 key lives on a PKCS#11 token.
pub struct Pkcs11Signer {
    id: ValidatorId,
    env: NetworkEnvironment,
    public_key: PublicKey,
    verifier: PreparedPublicKey,
    session: Mutex<TokenSession>,
    failed: AtomicBool,
    metrics: Arc<SignerMetrics>,
    _ctx: Pkcs11,
}

/// The probe signed at startup; its tag cannot collide with a protocol
/// preimage (those start with `QBIND:DEV:`, `QBIND:TST:` or `QBIND:MAIN:`).
const STARTUP_PROBE: &[u8] = b"QBIND:HSM-STARTUP-PROBE:v1";

impl Pkcs11Signer {
    /// Open the token, log in, find the key and run the startup check (sign
    /// a probe and verify it). Sets `qbind_hsm_startup_ok` and counts the
    /// error kind on failure.
    ///
    /// # Errors
    /// [`Pkcs11Error`].
    pub fn open(
        config: &HsmConfig,
        pin: &AuthPin,
        id: ValidatorId,
        env: NetworkEnvironment,
        metrics: Arc<SignerMetrics>,
    ) -> Result<Self, Pkcs11Error> {
        let result = Self::open_inner(config, pin, id, env, Arc::clone(&metrics));
        match &result {
            Ok(_) => metrics.set_startup_ok(true),
            Err(e) => {
                metrics.set_startup_ok(false);
                metrics.record_hsm_error(e.kind());
                tracing::error!(error = %e, "HSM startup check failed");
            }
        }
        result
    }

    fn open_inner(
        config: &HsmConfig,
        pin: &AuthPin,
        id: ValidatorId,
        env: NetworkEnvironment,
        metrics: Arc<SignerMetrics>,
    ) -> Result<Self, Pkcs11Error> {
        let ctx = open_library(&config.library_path)?;
        let slot = find_slot(&ctx, &config.token_label)?;
        let session = ctx.open_ro_session(slot).map_err(runtime)?;
        login(&session, UserType::User, pin)?;
        let key = find_key(&session, ObjectClass::PRIVATE_KEY, &config.key_label)?;
        let pub_handle = find_key(&session, ObjectClass::PUBLIC_KEY, &config.key_label)?;
        let public_key = read_public_key(&session, pub_handle)?;
        let verifier = PreparedPublicKey::new(&public_key).map_err(|e| Pkcs11Error::Runtime {
            detail: e.to_string(),
        })?;
        let signer = Pkcs11Signer {
            id,
            env,
            public_key,
            verifier,
            session: Mutex::new(TokenSession { session, key }),
            failed: AtomicBool::new(false),
            metrics,
            _ctx: ctx,
        };
        signer.sign_preimage(STARTUP_PROBE)?;
        tracing::info!(token = %config.token_label, key = %config.key_label, "HSM signer ready");
        Ok(signer)
    }

    /// Open with the PIN from the configured environment variable.
    ///
    /// # Errors
    /// [`Pkcs11Error`].
    pub fn open_from_env(
        config: &HsmConfig,
        id: ValidatorId,
        env: NetworkEnvironment,
        metrics: Arc<SignerMetrics>,
    ) -> Result<Self, Pkcs11Error> {
        let pin = config.pin_from_env().inspect_err(|e| {
            metrics.set_startup_ok(false);
            metrics.record_hsm_error(e.kind());
        })?;
        Self::open(config, &pin, id, env, metrics)
    }

    fn sign_preimage(&self, preimage: &[u8]) -> Result<Signature, Pkcs11Error> {
        let s = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let raw = s
            .session
            .sign(&ml_dsa_mechanism(), s.key, preimage)
            .map_err(runtime)?;
        drop(s);
        let sig = Signature::from_bytes(&raw).map_err(|e| Pkcs11Error::Runtime {
            detail: format!("token signature: {e}"),
        })?;
        self.verifier
            .verify(preimage, &sig)
            .map_err(|_| Pkcs11Error::Runtime {
                detail: "token produced a signature that does not verify".into(),
            })?;
        Ok(sig)
    }
}

#[async_trait]
impl Signer for Pkcs11Signer {
    fn validator_id(&self) -> ValidatorId {
        self.id
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError> {
        if self.failed.load(Ordering::Relaxed) {
            self.metrics.record_hsm_error(HsmErrorKind::Token);
            return Err(SignerError::Unavailable {
                detail: "HSM failed earlier; refusing to sign (fail-closed)".into(),
            });
        }
        let preimage = signing_preimage(self.env, request.kind, &request.message);
        self.sign_preimage(&preimage).map_err(|e| {
            self.failed.store(true, Ordering::Relaxed);
            self.metrics.record_hsm_error(e.kind());
            tracing::error!(error = %e, "HSM signing failed");
            SignerError::Unavailable {
                detail: e.to_string(),
            }
        })
    }
}

/// Token administration used by tests, benchmarks and `qbind-keygen`:
/// initialise a token and generate an ML-DSA-44 key pair *on* it.
pub mod admin {
    use super::*;

    /// Initialise the token in the first slot of `library` with `label`,
    /// set the SO and user PINs. (`C_InitToken` erases the token.)
    ///
    /// # Errors
    /// [`Pkcs11Error`].
    pub fn init_token(
        library: &Path,
        label: &str,
        so_pin: &AuthPin,
        user_pin: &AuthPin,
    ) -> Result<(), Pkcs11Error> {
        let ctx = open_library(library)?;
        let slot = *ctx
            .get_all_slots()
            .map_err(runtime)?
            .first()
            .ok_or_else(|| Pkcs11Error::TokenNotFound {
                label: label.to_owned(),
            })?;
        ctx.init_token(slot, so_pin, label).map_err(runtime)?;
        let session = ctx.open_rw_session(slot).map_err(runtime)?;
        login(&session, UserType::So, so_pin)?;
        session.init_pin(user_pin).map_err(runtime)?;
        session.logout().map_err(runtime)?;
        Ok(())
    }

    /// [`init_token`] with the token label and user PIN of `cfg` and the SO
    /// PIN from the environment variable `so_pin_env` (`qbind-keygen
    /// init-token`).
    ///
    /// # Errors
    /// [`Pkcs11Error::Config`] for a missing PIN; else as [`init_token`].
    pub fn init_token_from_env(cfg: &HsmConfig, so_pin_env: &str) -> Result<(), Pkcs11Error> {
        let so_pin = match std::env::var(so_pin_env) {
            Ok(p) if !p.is_empty() => AuthPin::from(p),
            _ => {
                return Err(Pkcs11Error::Config {
                    detail: format!("SO PIN variable {so_pin_env} is unset or empty"),
                });
            }
        };
        init_token(
            &cfg.library_path,
            &cfg.token_label,
            &so_pin,
            &cfg.pin_from_env()?,
        )
    }

    /// Generate a persistent, non-extractable ML-DSA-44 key pair labelled
    /// `key_label` on the token labelled `token_label`; returns its public key.
    ///
    /// # Errors
    /// [`Pkcs11Error`].
    pub fn generate_ml_dsa_44(
        library: &Path,
        token_label: &str,
        user_pin: &AuthPin,
        key_label: &str,
    ) -> Result<PublicKey, Pkcs11Error> {
        let ctx = open_library(library)?;
        let slot = find_slot(&ctx, token_label)?;
        let session = ctx.open_rw_session(slot).map_err(runtime)?;
        login(&session, UserType::User, user_pin)?;
        let label = Attribute::Label(key_label.as_bytes().to_vec());
        let public_template = [
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::ParameterSet(MlDsaParameterSetType::ML_DSA_44.into()),
            label.clone(),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            label,
        ];
        let (public, _private) = session
            .generate_key_pair(
                &Mechanism::MlDsaKeyPairGen,
                &public_template,
                &private_template,
            )
            .map_err(runtime)?;
        read_public_key(&session, public)
    }
}
