//! The daemon side of the remote signer (spec §6.5 "Remote Signer
//! Configuration"; runbook §4.1 option B, §4.2, §10.2).
//!
//! [`RemoteSignerDaemon::serve`] runs one client connection: it refuses any
//! peer other than the one allowed node, expects a `Hello` for its own
//! validator, then answers `Sign` requests through its backend — always a
//! [`crate::GuardedSigner`], so double-sign protection holds across daemon
//! restarts — subject to a token-bucket limit of `rate_limit_rps`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qbind_core::codec::{Decode, Encode};
use qbind_core::signing::SignKind;
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::channel::{ChannelError, PeerIdentity, SignerChannel};
use super::protocol::{ClientMessage, DaemonMessage, PROTOCOL_VERSION, RefusalCode};
use crate::metrics::SignerMetrics;

/// Backend of the daemon (`backend_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum BackendMode {
    /// An encrypted-fs keystore.
    #[serde(rename = "encrypted-fs")]
    EncryptedFs,
    /// A PKCS#11 token.
    #[serde(rename = "hsm-pkcs11")]
    HsmPkcs11,
}

fn default_listen() -> String {
    "0.0.0.0:9443".to_owned()
}
fn default_rps() -> u32 {
    100
}
fn default_metrics() -> String {
    "127.0.0.1:9444".to_owned()
}

/// `remote_signer.toml` (runbook §4.2 "Remote Signer Configuration Options",
/// plus the fields this implementation needs; see `docs/signer.md`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// KEMTLS listen address.
    #[serde(default = "default_listen")]
    pub listen_addr: String,
    /// Validator to sign for.
    pub validator_id: u32,
    /// `encrypted-fs` or `hsm-pkcs11`.
    pub backend_mode: BackendMode,
    /// HSM config (for `hsm-pkcs11`).
    pub hsm_config_path: Option<PathBuf>,
    /// Keystore directory (for `encrypted-fs`).
    pub keystore_path: Option<PathBuf>,
    /// Variable holding the keystore passphrase (for `encrypted-fs`).
    pub passphrase_env: Option<String>,
    /// File holding the keystore passphrase (for `encrypted-fs`; preferred
    /// over `passphrase_env`, see `docs/signer.md`).
    pub passphrase_file: Option<PathBuf>,
    /// Max signing requests per second.
    #[serde(default = "default_rps")]
    pub rate_limit_rps: u32,
    /// `mainnet`, `testnet` or `devnet`.
    pub network: String,
    /// The one node allowed to connect: its P2P identity public key file
    /// (`p2p_identity.pub`, hex ML-KEM-768 encapsulation key).
    pub allowed_client_pub: PathBuf,
    /// The daemon's own KEMTLS identity: an encrypted-fs `p2p_identity.key`.
    pub identity_key_path: PathBuf,
    /// Variable holding the passphrase of `identity_key_path`.
    #[serde(default)]
    pub identity_passphrase_env: String,
    /// File holding the passphrase of `identity_key_path` (preferred).
    pub identity_passphrase_file: Option<PathBuf>,
    /// Directory of the double-sign record.
    pub double_sign_dir: PathBuf,
    /// Plain-HTTP `/metrics` address (keep it on loopback or a management network).
    #[serde(default = "default_metrics")]
    pub metrics_addr: String,
    /// Also sign `KeyRotation` events (default false: a compromised node
    /// host could otherwise rotate the validator to its own key).
    #[serde(default)]
    pub allow_key_rotation: bool,
    /// Also sign transactions with the consensus key (default false).
    #[serde(default)]
    pub allow_transactions: bool,
}

/// Config problems.
#[derive(Debug, thiserror::Error)]
pub enum DaemonConfigError {
    /// Unreadable or malformed file.
    #[error("remote signer config: {0}")]
    Invalid(String),
}

impl DaemonConfig {
    /// Parse TOML text.
    ///
    /// # Errors
    /// [`DaemonConfigError`].
    pub fn from_toml_str(text: &str) -> Result<Self, DaemonConfigError> {
        let c: DaemonConfig =
            toml::from_str(text).map_err(|e| DaemonConfigError::Invalid(e.to_string()))?;
        c.network()?;
        if c.rate_limit_rps == 0 {
            return Err(DaemonConfigError::Invalid(
                "rate_limit_rps must be > 0".into(),
            ));
        }
        match c.backend_mode {
            BackendMode::HsmPkcs11 if c.hsm_config_path.is_none() => Err(
                DaemonConfigError::Invalid("backend_mode hsm-pkcs11 needs hsm_config_path".into()),
            ),
            BackendMode::EncryptedFs
                if c.keystore_path.is_none()
                    || (c.passphrase_env.is_none() && c.passphrase_file.is_none()) =>
            {
                Err(DaemonConfigError::Invalid(
                    "backend_mode encrypted-fs needs keystore_path and passphrase_file or \
                     passphrase_env"
                        .into(),
                ))
            }
            _ if c.identity_passphrase_env.is_empty() && c.identity_passphrase_file.is_none() => {
                Err(DaemonConfigError::Invalid(
                    "identity_passphrase_file or identity_passphrase_env is required".into(),
                ))
            }
            _ => Ok(c),
        }
    }

    /// The network.
    ///
    /// # Errors
    /// [`DaemonConfigError`] for an unknown name.
    pub fn network(&self) -> Result<NetworkEnvironment, DaemonConfigError> {
        match self.network.as_str() {
            "mainnet" => Ok(NetworkEnvironment::Mainnet),
            "testnet" => Ok(NetworkEnvironment::Testnet),
            "devnet" => Ok(NetworkEnvironment::Devnet),
            other => Err(DaemonConfigError::Invalid(format!(
                "unknown network {other:?}"
            ))),
        }
    }

    /// The kinds this daemon signs.
    #[must_use]
    pub fn kind_policy(&self) -> KindPolicy {
        KindPolicy {
            allow_key_rotation: self.allow_key_rotation,
            allow_transactions: self.allow_transactions,
        }
    }

    /// The allowed node's P2P identity key bytes (read from `allowed_client_pub`).
    ///
    /// # Errors
    /// [`DaemonConfigError`] if unreadable or not an ML-KEM-768 key.
    pub fn allowed_client_key(&self) -> Result<Vec<u8>, DaemonConfigError> {
        crate::keystore::read_pub_file(
            &self.allowed_client_pub,
            qbind_core::key_rotation::KeyRole::P2pIdentity,
        )
        .map_err(|e| DaemonConfigError::Invalid(e.to_string()))
    }
}

/// Which kinds the daemon signs (issue #17 finding 7). By default only the
/// consensus kinds — vote, timeout, proposal, DAG batch, batch ack — whose
/// conflicts the double-sign guard catches; a key rotation or a transaction
/// only when the operator allows it explicitly in `remote_signer.toml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindPolicy {
    /// `allow_key_rotation`: sign `KeyRotation` events (an emergency
    /// rotation signed for a compromised node host moves the validator to the
    /// attacker's key; enable only while rotating).
    pub allow_key_rotation: bool,
    /// `allow_transactions`: sign transactions with the consensus key.
    pub allow_transactions: bool,
}

impl KindPolicy {
    /// Consensus kinds only (the default).
    pub const CONSENSUS_ONLY: KindPolicy = KindPolicy {
        allow_key_rotation: false,
        allow_transactions: false,
    };

    /// Whether the daemon signs `kind`.
    #[must_use]
    pub fn allows(self, kind: SignKind) -> bool {
        match kind {
            SignKind::Vote
            | SignKind::Timeout
            | SignKind::Proposal
            | SignKind::Batch
            | SignKind::BatchAck => true,
            SignKind::KeyRotation => self.allow_key_rotation,
            SignKind::Tx => self.allow_transactions,
            SignKind::NewView => false,
        }
    }
}

impl Default for KindPolicy {
    fn default() -> Self {
        Self::CONSENSUS_ONLY
    }
}

/// A token bucket: `rate` tokens per second, burst `rate`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rps` tokens.
    #[must_use]
    pub fn new(rps: u32, now: Instant) -> Self {
        let rate = f64::from(rps.max(1));
        TokenBucket {
            rate,
            tokens: rate,
            last: now,
        }
    }

    /// Take one token at `now`, if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counters of the daemon, plain atomics; `qbind-remote-signer` reads them at
/// scrape time into its Prometheus registry (its `/metrics`).
#[derive(Debug, Default)]
pub struct DaemonMetrics {
    /// `qbind_remote_signer_connections_total`.
    pub connections: AtomicU64,
    /// `qbind_remote_signer_requests_total`.
    pub requests: AtomicU64,
    /// `qbind_remote_signer_signed_total`.
    pub signed: AtomicU64,
    /// `qbind_remote_signer_rate_limited_total`.
    pub rate_limited: AtomicU64,
    /// `qbind_remote_signer_unauthorized_total`.
    pub unauthorized: AtomicU64,
    /// `qbind_remote_signer_conflicts_total`.
    pub conflicts: AtomicU64,
    /// `qbind_remote_signer_backend_errors_total`.
    pub backend_errors: AtomicU64,
    /// `qbind_remote_signer_bad_requests_total`.
    pub bad_requests: AtomicU64,
    /// `qbind_remote_signer_kind_refused_total`: requests of a kind the
    /// configuration does not allow.
    pub kinds_refused: AtomicU64,
}

/// Why a connection ended with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// The peer is not the allowed node.
    #[error("unauthorised peer {0:?}")]
    Unauthorized(PeerIdentity),
    /// The peer spoke another protocol version or for another validator.
    #[error("bad hello: {0}")]
    BadHello(String),
    /// A malformed message.
    #[error("malformed message: {0}")]
    BadRequest(String),
    /// The channel failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// The signing service of one validator.
pub struct RemoteSignerDaemon {
    validator: ValidatorId,
    backend: Arc<dyn Signer>,
    allowed_client: PeerIdentity,
    limiter: Mutex<TokenBucket>,
    metrics: Arc<DaemonMetrics>,
    signer_metrics: Arc<SignerMetrics>,
    kinds: KindPolicy,
}

impl RemoteSignerDaemon {
    /// A daemon signing with `backend` (wrap it in a [`crate::GuardedSigner`])
    /// for the one client `allowed_client`, at most `rate_limit_rps` per second.
    #[must_use]
    pub fn new(
        backend: Arc<dyn Signer>,
        allowed_client: PeerIdentity,
        rate_limit_rps: u32,
        signer_metrics: Arc<SignerMetrics>,
    ) -> Self {
        RemoteSignerDaemon {
            validator: backend.validator_id(),
            backend,
            allowed_client,
            limiter: Mutex::new(TokenBucket::new(rate_limit_rps, Instant::now())),
            metrics: Arc::new(DaemonMetrics::default()),
            signer_metrics,
            kinds: KindPolicy::CONSENSUS_ONLY,
        }
    }

    /// Sign the kinds `policy` allows (default [`KindPolicy::CONSENSUS_ONLY`]).
    #[must_use]
    pub fn with_kind_policy(mut self, policy: KindPolicy) -> Self {
        self.kinds = policy;
        self
    }

    /// The daemon's counters.
    #[must_use]
    pub fn metrics(&self) -> &Arc<DaemonMetrics> {
        &self.metrics
    }

    async fn refuse<C: SignerChannel + ?Sized>(
        ch: &mut C,
        request_id: u64,
        code: RefusalCode,
        detail: String,
    ) -> Result<(), ChannelError> {
        ch.send(
            &DaemonMessage::Refused {
                request_id,
                code,
                detail,
            }
            .to_bytes(),
        )
        .await
    }

    /// Serve one connection until the client closes it.
    ///
    /// # Errors
    /// [`ServeError`] when the connection is refused or broken.
    pub async fn serve<C: SignerChannel + ?Sized>(&self, ch: &mut C) -> Result<(), ServeError> {
        self.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let peer = ch.peer();
        if peer != self.allowed_client {
            self.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(?peer, "refused unauthorised remote-signer client");
            let _ = Self::refuse(
                ch,
                0,
                RefusalCode::Unauthorized,
                "not the allowed node".into(),
            )
            .await;
            return Err(ServeError::Unauthorized(peer));
        }
        let hello = ch.recv().await?;
        match ClientMessage::from_bytes(&hello) {
            Ok(ClientMessage::Hello {
                version,
                validator_id,
            }) if version == PROTOCOL_VERSION && validator_id == self.validator => {
                ch.send(
                    &DaemonMessage::HelloAck {
                        validator_id: self.validator,
                        public_key: self.backend.public_key().clone(),
                    }
                    .to_bytes(),
                )
                .await?;
            }
            Ok(ClientMessage::Hello {
                version,
                validator_id,
            }) => {
                let detail = format!(
                    "version {version} for validator {} (serving v{PROTOCOL_VERSION} for {})",
                    validator_id.0, self.validator.0
                );
                let _ = Self::refuse(ch, 0, RefusalCode::WrongValidator, detail.clone()).await;
                return Err(ServeError::BadHello(detail));
            }
            Ok(ClientMessage::Sign { .. }) | Err(_) => {
                self.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
                let _ = Self::refuse(ch, 0, RefusalCode::BadRequest, "expected hello".into()).await;
                return Err(ServeError::BadHello("expected hello".into()));
            }
        }
        loop {
            let frame = match ch.recv().await {
                Ok(f) => f,
                Err(ChannelError::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let (request_id, request) = match ClientMessage::from_bytes(&frame) {
                Ok(ClientMessage::Sign {
                    request_id,
                    kind,
                    view,
                    message,
                    digest_preimage,
                }) => (
                    request_id,
                    SignRequest {
                        kind,
                        view,
                        message,
                        digest_preimage,
                    },
                ),
                Ok(ClientMessage::Hello { .. }) | Err(_) => {
                    self.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
                    let _ =
                        Self::refuse(ch, 0, RefusalCode::BadRequest, "malformed request".into())
                            .await;
                    return Err(ServeError::BadRequest("malformed request".into()));
                }
            };
            self.metrics.requests.fetch_add(1, Ordering::Relaxed);
            if !self.kinds.allows(request.kind) {
                self.metrics.kinds_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(kind = ?request.kind, "refused a kind this daemon is not configured to sign");
                Self::refuse(
                    ch,
                    request_id,
                    RefusalCode::KindNotAllowed,
                    format!(
                        "{:?} is not allowed by this daemon's configuration",
                        request.kind
                    ),
                )
                .await?;
                continue;
            }
            let allowed = self
                .limiter
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .try_take(Instant::now());
            if !allowed {
                self.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
                Self::refuse(
                    ch,
                    request_id,
                    RefusalCode::RateLimited,
                    "rate limit exceeded".into(),
                )
                .await?;
                continue;
            }
            let answer = match self.backend.sign(&request).await {
                Ok(signature) => {
                    self.metrics.signed.fetch_add(1, Ordering::Relaxed);
                    DaemonMessage::Signed {
                        request_id,
                        signature,
                    }
                }
                Err(e @ SignerError::Conflict { .. }) => {
                    self.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
                    DaemonMessage::Refused {
                        request_id,
                        code: RefusalCode::Conflict,
                        detail: e.to_string(),
                    }
                }
                Err(e @ SignerError::Unavailable { .. }) => {
                    self.metrics.backend_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "remote signer backend failed");
                    DaemonMessage::Refused {
                        request_id,
                        code: RefusalCode::BackendUnavailable,
                        detail: e.to_string(),
                    }
                }
            };
            ch.send(&answer.to_bytes()).await?;
        }
    }

    /// The backend signer's metrics (exported next to the daemon's).
    #[must_use]
    pub fn signer_metrics(&self) -> &Arc<SignerMetrics> {
        &self.signer_metrics
    }
}

/// Largest HTTP request head read by [`serve_metrics`].
const MAX_HTTP_HEAD: usize = 8 * 1024;

/// Serve `GET /metrics` with `render()` on `listener` until the task is
/// dropped. One connection at a time, 2 s per request, request head at most
/// 8 KiB: enough for a scraper, no more.
pub async fn serve_metrics<F>(listener: tokio::net::TcpListener, render: F)
where
    F: Fn() -> String + Send + Sync + 'static,
{
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let body = render();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HTTP_HEAD {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let response = if head.starts_with(b"GET /metrics ") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
            };
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await
        })
        .await;
    }
}

/// Bind the metrics listener (refuses non-loopback addresses unless
/// `allow_public` is set: the endpoint is unauthenticated).
///
/// # Errors
/// I/O errors, or `InvalidInput` for a non-loopback address.
pub async fn bind_metrics(
    addr: &str,
    allow_public: bool,
) -> std::io::Result<tokio::net::TcpListener> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad metrics_addr"))?;
    if !allow_public && !sa.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "metrics_addr must be a loopback address",
        ));
    }
    tokio::net::TcpListener::bind(sa).await
}
