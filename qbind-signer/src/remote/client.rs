//! The `remote-signer` mode: a [`Signer`] that forwards each request to the
//! `qbind-remote-signer` daemon over an authenticated [`SignerChannel`].
//!
//! Fail-closed: any transport failure, timeout or malformed answer drops the
//! channel for good; every later request fails with
//! [`SignerError::Unavailable`] (the node's failure mode then decides whether
//! to exit). Every signature is verified against the key announced in the
//! daemon's `HelloAck` — which must equal the configured key, when one is
//! configured — before it is returned.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use qbind_core::codec::{Decode, Encode};
use qbind_core::crypto::{PreparedPublicKey, PublicKey, Signature};
use qbind_core::signing::signing_preimage;
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use tokio::sync::Mutex;

use super::channel::SignerChannel;
use super::protocol::{ClientMessage, DaemonMessage, PROTOCOL_VERSION, RefusalCode};
use crate::metrics::{RemoteFailureReason, SignerMetrics};

/// Why the client could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteConnectError {
    /// The transport failed or timed out.
    #[error("remote signer unreachable: {0}")]
    Unreachable(String),
    /// The daemon refused the connection.
    #[error("remote signer refused: {0}")]
    Refused(String),
    /// The daemon signs for another validator or with another key.
    #[error("remote signer identity mismatch: {0}")]
    Mismatch(String),
    /// The URL is not `kemtls://host:port`.
    #[error("bad remote signer URL {0:?}: expected kemtls://host:port")]
    BadUrl(String),
}

/// Parse `kemtls://host:port` into `(host, port)`.
///
/// # Errors
/// [`RemoteConnectError::BadUrl`].
pub fn parse_remote_signer_url(url: &str) -> Result<(String, u16), RemoteConnectError> {
    let bad = || RemoteConnectError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("kemtls://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || host.contains('/') || port == 0 {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// The remote-signer client.
pub struct RemoteSigner {
    id: ValidatorId,
    env: NetworkEnvironment,
    public_key: PublicKey,
    verifier: PreparedPublicKey,
    channel: Mutex<Option<Box<dyn SignerChannel>>>,
    next_request: AtomicU64,
    timeout: Duration,
    metrics: Arc<SignerMetrics>,
}

impl RemoteSigner {
    /// Say hello over `channel` and check who answers.
    ///
    /// # Errors
    /// [`RemoteConnectError`]; counted in `qbind_remote_sign_failures_total`
    /// and reflected in `qbind_hsm_startup_ok`.
    pub async fn connect(
        mut channel: Box<dyn SignerChannel>,
        id: ValidatorId,
        env: NetworkEnvironment,
        expected_key: Option<PublicKey>,
        timeout: Duration,
        metrics: Arc<SignerMetrics>,
    ) -> Result<Self, RemoteConnectError> {
        let result = async {
            let hello = ClientMessage::Hello {
                version: PROTOCOL_VERSION,
                validator_id: id,
            };
            let answer = tokio::time::timeout(timeout, async {
                channel.send(&hello.to_bytes()).await?;
                channel.recv().await
            })
            .await
            .map_err(|_| {
                (
                    RemoteFailureReason::Timeout,
                    RemoteConnectError::Unreachable("hello timed out".into()),
                )
            })?
            .map_err(|e| {
                (
                    RemoteFailureReason::Transport,
                    RemoteConnectError::Unreachable(e.to_string()),
                )
            })?;
            match DaemonMessage::from_bytes(&answer) {
                Ok(DaemonMessage::HelloAck {
                    validator_id,
                    public_key,
                }) => {
                    if validator_id != id {
                        return Err((
                            RemoteFailureReason::Protocol,
                            RemoteConnectError::Mismatch(format!(
                                "daemon signs for validator {}",
                                validator_id.0
                            )),
                        ));
                    }
                    if let Some(k) = &expected_key
                        && *k != public_key
                    {
                        return Err((
                            RemoteFailureReason::Protocol,
                            RemoteConnectError::Mismatch(
                                "daemon key differs from the configured key".into(),
                            ),
                        ));
                    }
                    Ok(public_key)
                }
                Ok(DaemonMessage::Refused { code, detail, .. }) => {
                    let reason = if code == RefusalCode::Unauthorized {
                        RemoteFailureReason::Unauthorized
                    } else {
                        RemoteFailureReason::Protocol
                    };
                    Err((
                        reason,
                        RemoteConnectError::Refused(format!("{code:?}: {detail}")),
                    ))
                }
                Ok(DaemonMessage::Signed { .. }) | Err(_) => Err((
                    RemoteFailureReason::Protocol,
                    RemoteConnectError::Refused("unexpected answer to hello".into()),
                )),
            }
        }
        .await;
        match result {
            Ok(public_key) => {
                let verifier = PreparedPublicKey::new(&public_key)
                    .map_err(|e| RemoteConnectError::Mismatch(e.to_string()))?;
                metrics.set_startup_ok(true);
                Ok(RemoteSigner {
                    id,
                    env,
                    public_key,
                    verifier,
                    channel: Mutex::new(Some(channel)),
                    next_request: AtomicU64::new(1),
                    timeout,
                    metrics,
                })
            }
            Err((reason, e)) => {
                metrics.set_startup_ok(false);
                metrics.record_remote_failure(reason);
                tracing::error!(error = %e, "remote signer startup check failed");
                Err(e)
            }
        }
    }

    fn fail(&self, reason: RemoteFailureReason, detail: String) -> SignerError {
        self.metrics.record_remote_failure(reason);
        tracing::error!(reason = reason.label(), %detail, "remote signing failed");
        SignerError::Unavailable {
            detail: format!("remote signer ({}): {detail}", reason.label()),
        }
    }
}

#[async_trait]
impl Signer for RemoteSigner {
    fn validator_id(&self) -> ValidatorId {
        self.id
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError> {
        let mut guard = self.channel.lock().await;
        let Some(ch) = guard.as_mut() else {
            return Err(self.fail(
                RemoteFailureReason::Transport,
                "channel is closed (fail-closed)".into(),
            ));
        };
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let frame = ClientMessage::Sign {
            request_id,
            kind: request.kind,
            view: request.view,
            message: request.message.clone(),
            digest_preimage: request.digest_preimage.clone(),
        }
        .to_bytes();
        let answer = tokio::time::timeout(self.timeout, async {
            ch.send(&frame).await?;
            ch.recv().await
        })
        .await;
        let bytes = match answer {
            Err(_) => {
                *guard = None;
                return Err(self.fail(RemoteFailureReason::Timeout, "no answer in time".into()));
            }
            Ok(Err(e)) => {
                *guard = None;
                return Err(self.fail(RemoteFailureReason::Transport, e.to_string()));
            }
            Ok(Ok(b)) => b,
        };
        match DaemonMessage::from_bytes(&bytes) {
            Ok(DaemonMessage::Signed {
                request_id: rid,
                signature,
            }) if rid == request_id => {
                let preimage = signing_preimage(self.env, request.kind, &request.message);
                if self.verifier.verify(&preimage, &signature).is_err() {
                    *guard = None;
                    return Err(self.fail(
                        RemoteFailureReason::Protocol,
                        "daemon returned a signature that does not verify".into(),
                    ));
                }
                Ok(signature)
            }
            Ok(DaemonMessage::Refused {
                request_id: rid,
                code,
                detail,
            }) if rid == request_id || rid == 0 => match code {
                RefusalCode::Conflict => {
                    self.metrics
                        .record_remote_failure(RemoteFailureReason::Conflict);
                    self.metrics.record_double_sign_refusal();
                    Err(SignerError::Conflict {
                        kind: request.kind,
                        view: request.view,
                    })
                }
                RefusalCode::RateLimited => {
                    Err(self.fail(RemoteFailureReason::RateLimited, detail))
                }
                RefusalCode::BackendUnavailable => {
                    Err(self.fail(RemoteFailureReason::Backend, detail))
                }
                RefusalCode::Unauthorized => {
                    *guard = None;
                    Err(self.fail(RemoteFailureReason::Unauthorized, detail))
                }
                RefusalCode::KindNotAllowed => {
                    Err(self.fail(RemoteFailureReason::Protocol, detail))
                }
                RefusalCode::BadRequest | RefusalCode::WrongValidator => {
                    *guard = None;
                    Err(self.fail(RemoteFailureReason::Protocol, detail))
                }
            },
            _ => {
                *guard = None;
                Err(self.fail(RemoteFailureReason::Protocol, "unexpected answer".into()))
            }
        }
    }
}
