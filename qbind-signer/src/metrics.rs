//! Signer failure semantics, metrics and health (spec §6.5.1; runbook §6.3,
//! §10.2, §10.3).
//!
//! - [`SignerFailureMode`]: `ExitOnFailure` (required on MainNet) makes a
//!   signer failure fatal — the [`SupervisedSigner`] records it and reports
//!   [`FailureAction::Exit`] with code 1, which the node binary turns into its
//!   exit code; `LogAndContinue` (test networks only) logs and goes on.
//! - [`SignerMetrics`]: atomics exported as `qbind_hsm_sign_error_total{kind}`,
//!   `qbind_remote_sign_failures_total{reason}`, `qbind_hsm_startup_ok` and a
//!   few more; the process embedding the signer reads them at scrape time
//!   into its Prometheus registry (`qbind-node`, `qbind-remote-signer`).
//! - [`SignerHealth`]: the aggregate Healthy / Degraded / Failed.
//!
//! A double-sign refusal is the signer working as intended: it is counted but
//! never fatal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use qbind_core::crypto::{PublicKey, Signature};
use qbind_core::signing::SignKind;
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::{NetworkEnvironment, ValidatorId};

/// Error kinds of `qbind_hsm_sign_error_total{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HsmErrorKind {
    /// Bad configuration (file, library path, PIN variable).
    Config,
    /// Loading or initialising the PKCS#11 library failed.
    Library,
    /// The token was not found or has gone away.
    Token,
    /// Login failed (wrong PIN, locked PIN).
    Login,
    /// The key label is not on the token.
    KeyNotFound,
    /// A signing call failed at run time.
    Runtime,
}

impl HsmErrorKind {
    /// Every kind, in label order.
    pub const ALL: [HsmErrorKind; 6] = [
        HsmErrorKind::Config,
        HsmErrorKind::Library,
        HsmErrorKind::Token,
        HsmErrorKind::Login,
        HsmErrorKind::KeyNotFound,
        HsmErrorKind::Runtime,
    ];

    /// The Prometheus label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            HsmErrorKind::Config => "config",
            HsmErrorKind::Library => "library",
            HsmErrorKind::Token => "token",
            HsmErrorKind::Login => "login",
            HsmErrorKind::KeyNotFound => "key_not_found",
            HsmErrorKind::Runtime => "runtime",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Reasons of `qbind_remote_sign_failures_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteFailureReason {
    /// The channel failed or closed (daemon gone, network).
    Transport,
    /// No answer within the request timeout.
    Timeout,
    /// The daemon refused: rate limit.
    RateLimited,
    /// The daemon refused: this client is not authorised.
    Unauthorized,
    /// The daemon refused: double-sign protection.
    Conflict,
    /// The daemon's backend failed.
    Backend,
    /// A malformed or unexpected message.
    Protocol,
}

impl RemoteFailureReason {
    /// Every reason, in label order.
    pub const ALL: [RemoteFailureReason; 7] = [
        RemoteFailureReason::Transport,
        RemoteFailureReason::Timeout,
        RemoteFailureReason::RateLimited,
        RemoteFailureReason::Unauthorized,
        RemoteFailureReason::Conflict,
        RemoteFailureReason::Backend,
        RemoteFailureReason::Protocol,
    ];

    /// The Prometheus label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            RemoteFailureReason::Transport => "transport",
            RemoteFailureReason::Timeout => "timeout",
            RemoteFailureReason::RateLimited => "rate_limited",
            RemoteFailureReason::Unauthorized => "unauthorized",
            RemoteFailureReason::Conflict => "conflict",
            RemoteFailureReason::Backend => "backend",
            RemoteFailureReason::Protocol => "protocol",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Aggregate signer health (spec §6.5.1 item 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignerHealth {
    /// Startup check passed and the last signing attempt succeeded.
    Healthy,
    /// Startup passed, but recent attempts failed (LogAndContinue only).
    Degraded,
    /// Startup failed, a fatal failure was recorded, or failures persist.
    Failed,
}

impl SignerHealth {
    /// The gauge value of `qbind_signer_health` (0 healthy, 1 degraded, 2 failed).
    #[must_use]
    pub fn gauge(self) -> u8 {
        match self {
            SignerHealth::Healthy => 0,
            SignerHealth::Degraded => 1,
            SignerHealth::Failed => 2,
        }
    }
}

/// Consecutive failures after which a LogAndContinue signer counts as Failed.
pub const DEGRADED_FAILURE_LIMIT: u64 = 3;

/// Counters and gauges of one signer (shared by `Arc`).
#[derive(Debug, Default)]
pub struct SignerMetrics {
    hsm_errors: [AtomicU64; 6],
    remote_failures: [AtomicU64; 7],
    /// 0 = not checked, 1 = ok, 2 = failed.
    startup: AtomicU64,
    signatures: AtomicU64,
    double_sign_refusals: AtomicU64,
    request_mismatches: AtomicU64,
    consecutive_failures: AtomicU64,
    fatal: AtomicBool,
    /// Requests by kind, in [`SignKind::ALL`] order.
    requests: [AtomicU64; SignKind::ALL.len()],
    /// Every request that ended in an error.
    failures_total: AtomicU64,
}

impl SignerMetrics {
    /// Fresh metrics in an `Arc`.
    #[must_use]
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Count one HSM error of `kind`.
    pub fn record_hsm_error(&self, kind: HsmErrorKind) {
        if let Some(c) = self.hsm_errors.get(kind.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count one remote-signer failure for `reason`.
    pub fn record_remote_failure(&self, reason: RemoteFailureReason) {
        if let Some(c) = self.remote_failures.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Record the startup health check result (`qbind_hsm_startup_ok`).
    pub fn set_startup_ok(&self, ok: bool) {
        self.startup
            .store(if ok { 1 } else { 2 }, Ordering::Relaxed);
    }

    /// Count a double-sign refusal.
    pub fn record_double_sign_refusal(&self) {
        self.double_sign_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// Record a request whose signed bytes disagree with its claims (a
    /// claimed view that is not the signed object's, a preimage that does
    /// not hash to the signed digest, bytes that do not decode).
    pub fn record_request_mismatch(&self) {
        self.request_mismatches.fetch_add(1, Ordering::Relaxed);
    }

    /// Count one request to sign a `kind`.
    pub fn record_request(&self, kind: SignKind) {
        if let Some(c) = SignKind::ALL
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.requests.get(i))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count one request that ended in an error (any error: refused,
    /// unavailable, fatal).
    pub fn record_error(&self) {
        self.failures_total.fetch_add(1, Ordering::Relaxed);
    }

    /// `qbind_signer_sign_requests_total{kind}`.
    #[must_use]
    pub fn requests(&self, kind: SignKind) -> u64 {
        SignKind::ALL
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.requests.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// `qbind_signer_sign_failures_total`.
    #[must_use]
    pub fn failures_total(&self) -> u64 {
        self.failures_total.load(Ordering::Relaxed)
    }

    /// Record a successful signature.
    pub fn record_success(&self) {
        self.signatures.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Record a failed signing attempt; `fatal` under ExitOnFailure.
    pub fn record_failure(&self, fatal: bool) {
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        if fatal {
            self.fatal.store(true, Ordering::Relaxed);
        }
    }

    /// `qbind_hsm_sign_error_total{kind}`.
    #[must_use]
    pub fn hsm_errors(&self, kind: HsmErrorKind) -> u64 {
        self.hsm_errors
            .get(kind.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// `qbind_remote_sign_failures_total{reason}`.
    #[must_use]
    pub fn remote_failures(&self, reason: RemoteFailureReason) -> u64 {
        self.remote_failures
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// `qbind_hsm_startup_ok`: `Some(true)`/`Some(false)` once checked.
    #[must_use]
    pub fn startup_ok(&self) -> Option<bool> {
        match self.startup.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    /// `qbind_signer_double_sign_refused_total`.
    #[must_use]
    pub fn double_sign_refusals(&self) -> u64 {
        self.double_sign_refusals.load(Ordering::Relaxed)
    }

    /// `qbind_signer_request_mismatch_total`.
    #[must_use]
    pub fn request_mismatches(&self) -> u64 {
        self.request_mismatches.load(Ordering::Relaxed)
    }

    /// `qbind_signer_signatures_total`.
    #[must_use]
    pub fn signatures(&self) -> u64 {
        self.signatures.load(Ordering::Relaxed)
    }

    /// The aggregate health.
    #[must_use]
    pub fn health(&self) -> SignerHealth {
        let failures = self.consecutive_failures.load(Ordering::Relaxed);
        if self.startup_ok() == Some(false)
            || self.fatal.load(Ordering::Relaxed)
            || failures >= DEGRADED_FAILURE_LIMIT
        {
            SignerHealth::Failed
        } else if failures > 0 {
            SignerHealth::Degraded
        } else {
            SignerHealth::Healthy
        }
    }
}

/// What the node does when its signer fails (spec §6.5.1 item 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignerFailureMode {
    /// Log, count, and exit the process with code 1 (required on MainNet).
    ExitOnFailure,
    /// Log, count and continue (DevNet/TestNet chaos testing only).
    LogAndContinue,
}

/// The process exit code for a fatal signer failure.
pub const SIGNER_FAILURE_EXIT_CODE: i32 = 1;

/// What the caller must do after a signing error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureAction {
    /// Terminate the process with this exit code.
    Exit {
        /// The exit code (always [`SIGNER_FAILURE_EXIT_CODE`]).
        code: i32,
    },
    /// Carry on without the signature.
    Continue,
}

/// A failure mode that is not allowed on the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signer failure mode {mode:?} is forbidden on {env:?}")]
pub struct FailureModeForbidden {
    /// The mode.
    pub mode: SignerFailureMode,
    /// The network.
    pub env: NetworkEnvironment,
}

impl SignerFailureMode {
    /// The default for `env`: ExitOnFailure on MainNet, LogAndContinue elsewhere.
    #[must_use]
    pub fn default_for(env: NetworkEnvironment) -> Self {
        match env {
            NetworkEnvironment::Mainnet => SignerFailureMode::ExitOnFailure,
            _ => SignerFailureMode::LogAndContinue,
        }
    }

    /// MainNet refuses LogAndContinue.
    ///
    /// # Errors
    /// [`FailureModeForbidden`].
    pub fn validate_for(self, env: NetworkEnvironment) -> Result<(), FailureModeForbidden> {
        if env == NetworkEnvironment::Mainnet && self == SignerFailureMode::LogAndContinue {
            return Err(FailureModeForbidden { mode: self, env });
        }
        Ok(())
    }

    /// The action for `error`. A double-sign refusal is never fatal.
    #[must_use]
    pub fn action_for(self, error: &SignerError) -> FailureAction {
        match (self, error) {
            (_, SignerError::Conflict { .. }) => FailureAction::Continue,
            (SignerFailureMode::ExitOnFailure, SignerError::Unavailable { .. }) => {
                FailureAction::Exit {
                    code: SIGNER_FAILURE_EXIT_CODE,
                }
            }
            (SignerFailureMode::LogAndContinue, SignerError::Unavailable { .. }) => {
                FailureAction::Continue
            }
        }
    }
}

/// A signer that applies a [`SignerFailureMode`] and keeps the health metrics.
pub struct SupervisedSigner {
    inner: Box<dyn Signer>,
    mode: SignerFailureMode,
    metrics: Arc<SignerMetrics>,
    exit: std::sync::Mutex<Option<i32>>,
    exit_signal: tokio::sync::watch::Sender<Option<i32>>,
}

impl SupervisedSigner {
    /// Supervise `inner` with `mode`.
    #[must_use]
    pub fn new(
        inner: Box<dyn Signer>,
        mode: SignerFailureMode,
        metrics: Arc<SignerMetrics>,
    ) -> Self {
        SupervisedSigner {
            inner,
            mode,
            metrics,
            exit: std::sync::Mutex::new(None),
            exit_signal: tokio::sync::watch::Sender::new(None),
        }
    }

    /// Becomes `Some(code)` when a fatal failure happened (ExitOnFailure):
    /// the node waits on this to stop and exit with `code`.
    #[must_use]
    pub fn exit_signal(&self) -> tokio::sync::watch::Receiver<Option<i32>> {
        self.exit_signal.subscribe()
    }

    /// The exit code the process must terminate with, once a fatal failure
    /// happened (ExitOnFailure); the node checks this after every error.
    #[must_use]
    pub fn required_exit(&self) -> Option<i32> {
        *self
            .exit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> &Arc<SignerMetrics> {
        &self.metrics
    }

    /// The failure mode.
    #[must_use]
    pub fn mode(&self) -> SignerFailureMode {
        self.mode
    }
}

#[async_trait]
impl Signer for SupervisedSigner {
    fn validator_id(&self) -> ValidatorId {
        self.inner.validator_id()
    }

    fn public_key(&self) -> &PublicKey {
        self.inner.public_key()
    }

    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError> {
        self.metrics.record_request(request.kind);
        if let Some(code) = self.required_exit() {
            // Fail closed: after a fatal failure nothing more is signed.
            self.metrics.record_error();
            return Err(SignerError::Unavailable {
                detail: format!("signer failed earlier; process must exit with code {code}"),
            });
        }
        match self.inner.sign(request).await {
            Ok(sig) => {
                self.metrics.record_success();
                Ok(sig)
            }
            Err(e) => {
                self.metrics.record_error();
                match self.mode.action_for(&e) {
                    FailureAction::Exit { code } => {
                        tracing::error!(error = %e, exit_code = code, "signer failure (ExitOnFailure): node must exit");
                        self.metrics.record_failure(true);
                        *self
                            .exit
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(code);
                        self.exit_signal.send_replace(Some(code));
                    }
                    FailureAction::Continue => {
                        if matches!(e, SignerError::Unavailable { .. }) {
                            tracing::error!(error = %e, "signer failure (LogAndContinue)");
                            self.metrics.record_failure(false);
                        }
                    }
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qbind_core::signing::SignKind;
    use qbind_core::types::View;

    #[test]
    fn policy_decisions() {
        let unavailable = SignerError::Unavailable {
            detail: "hsm gone".into(),
        };
        let conflict = SignerError::Conflict {
            kind: SignKind::Vote,
            view: Some(View(1)),
        };
        assert_eq!(
            SignerFailureMode::ExitOnFailure.action_for(&unavailable),
            FailureAction::Exit { code: 1 }
        );
        assert_eq!(
            SignerFailureMode::ExitOnFailure.action_for(&conflict),
            FailureAction::Continue
        );
        assert_eq!(
            SignerFailureMode::LogAndContinue.action_for(&unavailable),
            FailureAction::Continue
        );
        assert!(
            SignerFailureMode::LogAndContinue
                .validate_for(NetworkEnvironment::Mainnet)
                .is_err()
        );
        assert!(
            SignerFailureMode::LogAndContinue
                .validate_for(NetworkEnvironment::Testnet)
                .is_ok()
        );
        assert_eq!(
            SignerFailureMode::default_for(NetworkEnvironment::Mainnet),
            SignerFailureMode::ExitOnFailure
        );
    }

    #[test]
    fn health_follows_failures() {
        let m = SignerMetrics::default();
        m.set_startup_ok(true);
        assert_eq!(m.health(), SignerHealth::Healthy);
        m.record_failure(false);
        assert_eq!(m.health(), SignerHealth::Degraded);
        m.record_success();
        assert_eq!(m.health(), SignerHealth::Healthy);
        for _ in 0..DEGRADED_FAILURE_LIMIT {
            m.record_failure(false);
        }
        assert_eq!(m.health(), SignerHealth::Failed);
        let m2 = SignerMetrics::default();
        m2.set_startup_ok(false);
        assert_eq!(m2.health(), SignerHealth::Failed);
        let m3 = SignerMetrics::default();
        m3.record_failure(true);
        assert_eq!(m3.health(), SignerHealth::Failed);
    }

    /// Every request is counted by kind, and every one that ends in an
    /// error once, whether it is fatal, refused after a fatal failure, or
    /// only logged.
    #[tokio::test]
    async fn requests_and_failures_are_counted() {
        use qbind_core::crypto::KeyPair;
        use qbind_core::traits::{FollowerSigner, LocalSigner};
        let request = |kind| SignRequest {
            kind,
            view: None,
            message: b"m".to_vec(),
            digest_preimage: Vec::new(),
        };
        let m = SignerMetrics::shared();
        let ok = SupervisedSigner::new(
            Box::new(LocalSigner::new(
                ValidatorId(0),
                NetworkEnvironment::Devnet,
                KeyPair::from_seed(&[3; 32]),
            )),
            SignerFailureMode::LogAndContinue,
            Arc::clone(&m),
        );
        ok.sign(&request(SignKind::Vote)).await.expect("signs");
        ok.sign(&request(SignKind::Vote)).await.expect("signs");
        ok.sign(&request(SignKind::Proposal)).await.expect("signs");
        assert_eq!(m.requests(SignKind::Vote), 2);
        assert_eq!(m.requests(SignKind::Proposal), 1);
        assert_eq!(m.requests(SignKind::Timeout), 0);
        assert_eq!((m.signatures(), m.failures_total()), (3, 0));

        let failing = SignerMetrics::shared();
        let fatal = SupervisedSigner::new(
            Box::new(FollowerSigner::new(ValidatorId(9))),
            SignerFailureMode::ExitOnFailure,
            Arc::clone(&failing),
        );
        assert!(fatal.sign(&request(SignKind::Vote)).await.is_err());
        // Refused without asking the signer after the fatal failure.
        assert!(fatal.sign(&request(SignKind::Timeout)).await.is_err());
        assert_eq!(failing.requests(SignKind::Vote), 1);
        assert_eq!(failing.requests(SignKind::Timeout), 1);
        assert_eq!((failing.signatures(), failing.failures_total()), (0, 2));
    }

    #[test]
    fn counters_by_kind_and_reason() {
        let m = SignerMetrics::default();
        m.record_hsm_error(HsmErrorKind::Runtime);
        m.record_hsm_error(HsmErrorKind::Runtime);
        m.record_remote_failure(RemoteFailureReason::Transport);
        m.set_startup_ok(true);
        assert_eq!(m.hsm_errors(HsmErrorKind::Runtime), 2);
        assert_eq!(m.hsm_errors(HsmErrorKind::Login), 0);
        assert_eq!(m.remote_failures(RemoteFailureReason::Transport), 1);
        assert_eq!(m.startup_ok(), Some(true));
        assert_eq!(m.health().gauge(), 0);
    }
}
