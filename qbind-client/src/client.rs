//! An async client of the public API (docs/api.md): one method per route,
//! typed answers ([`qbind_api::wire`]) and typed errors carrying the API's
//! stable code. Shared by the `qbind` CLI and the load generator.

use std::time::Duration;

use qbind_api::wire::{
    AccountView, BlockView, ErrorBody, StatusView, SubmitBatchRequest, SubmitBatchResponse,
    SubmitTxRequest, SubmitTxResponse, TxStatusView, parse_hash,
};
use qbind_core::codec::Encode;
use qbind_core::execution::Transaction;
use qbind_core::types::{AccountId, Hash32};
use serde::de::DeserializeOwned;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node URL is not `http://host:port[/prefix]`.
    #[error("bad node URL {url:?}: expected http://host:port")]
    BadUrl {
        /// The URL given.
        url: String,
    },
    /// The node could not be reached or the connection failed.
    #[error("cannot reach the node at {url}: {source}")]
    Transport {
        /// The request URL.
        url: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// The node answered with an API error.
    #[error("node refused ({status} {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable machine code (`qbind_api::codes`).
        code: String,
        /// The node's explanation.
        message: String,
        /// Seconds from `Retry-After`, if given.
        retry_after: Option<u64>,
    },
    /// The answer was not what the API describes.
    #[error("unexpected answer from the node ({status}): {detail}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        detail: String,
    },
    /// [`QbindClient::wait`] gave up.
    #[error("transaction {hash} not final after {waited:?}")]
    WaitTimedOut {
        /// The transaction.
        hash: Hash32,
        /// How long it waited.
        waited: Duration,
    },
}

impl ClientError {
    /// The API's error code, if the node answered with one.
    #[must_use]
    pub fn api_code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A client of one node's API.
#[derive(Clone, Debug)]
pub struct QbindClient {
    base: String,
    http: reqwest::Client,
}

/// Largest JSON answer the client reads (the largest legitimate one, a
/// block's view with its transaction hashes, is far smaller).
pub const MAX_JSON_ANSWER: usize = 16 << 20;
/// Largest error answer the client reads.
pub const MAX_ERROR_ANSWER: usize = 64 << 10;

/// Per-request timeout of [`QbindClient::new`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl QbindClient {
    /// A client of the node at `base_url` (`http://host:port`, plain HTTP).
    pub fn new(base_url: &str) -> Result<QbindClient, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let bad = || ClientError::BadUrl {
            url: base_url.to_string(),
        };
        let rest = base.strip_prefix("http://").ok_or_else(bad)?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad());
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.clone(),
                source,
            })?;
        Ok(QbindClient { base, http })
    }

    /// The node URL.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Send `request` and read its answer: `(status, Retry-After seconds,
    /// body)`. A success body longer than `max` bytes, or an error body
    /// longer than [`MAX_ERROR_ANSWER`], is refused while it is read, so a
    /// hostile or broken node cannot make the client hold more.
    async fn answer(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        max: usize,
    ) -> Result<(u16, Option<u64>, Vec<u8>), ClientError> {
        let transport = |source| ClientError::Transport {
            url: url.to_string(),
            source,
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let limit = if (200..300).contains(&status) {
            max
        } else {
            MAX_ERROR_ANSWER
        };
        let too_long = || ClientError::Unexpected {
            status,
            detail: format!("answer longer than {limit} bytes"),
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_long());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limit {
                return Err(too_long());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, retry_after, body))
    }

    /// The API error an unsuccessful answer carries.
    fn refusal(status: u16, retry_after: Option<u64>, body: &[u8]) -> ClientError {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => ClientError::Api {
                status,
                code: e.code,
                message: e.message,
                retry_after,
            },
            Err(_) => ClientError::Unexpected {
                status,
                detail: "error without an API error body".into(),
            },
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: String,
    ) -> Result<T, ClientError> {
        let (status, retry_after, body) = self.answer(request, &url, MAX_JSON_ANSWER).await?;
        if !(200..300).contains(&status) {
            return Err(Self::refusal(status, retry_after, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Unexpected {
            status,
            detail: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url), url).await
    }

    /// Submit one transaction; its hash on acceptance.
    pub async fn submit(&self, tx: &Transaction) -> Result<Hash32, ClientError> {
        self.submit_bytes(&tx.to_bytes()).await
    }

    /// Submit one transaction given as its canonical bytes.
    pub async fn submit_bytes(&self, bytes: &[u8]) -> Result<Hash32, ClientError> {
        let url = format!("{}/v1/tx", self.base);
        let body = SubmitTxRequest {
            tx: hex::encode(bytes),
        };
        let answer: SubmitTxResponse = self.send(self.http.post(&url).json(&body), url).await?;
        parse_hash(&answer.hash).ok_or(ClientError::Unexpected {
            status: 202,
            detail: "hash is not 64 hex digits".into(),
        })
    }

    /// Submit a batch; one result per transaction, in order.
    pub async fn submit_batch(
        &self,
        txs: &[Transaction],
    ) -> Result<Vec<Result<Hash32, ErrorBody>>, ClientError> {
        let url = format!("{}/v1/txs", self.base);
        let body = SubmitBatchRequest {
            txs: txs.iter().map(|t| hex::encode(t.to_bytes())).collect(),
        };
        let answer: SubmitBatchResponse = self.send(self.http.post(&url).json(&body), url).await?;
        if answer.results.len() != txs.len() {
            return Err(ClientError::Unexpected {
                status: 200,
                detail: format!(
                    "{} results for {} transactions",
                    answer.results.len(),
                    txs.len()
                ),
            });
        }
        Ok(answer
            .results
            .into_iter()
            .map(
                |item| match (item.error, item.hash.as_deref().and_then(parse_hash)) {
                    (Some(e), _) => Err(e),
                    (None, Some(hash)) => Ok(hash),
                    (None, None) => Err(ErrorBody {
                        code: "unexpected".into(),
                        message: "batch item without hash or error".into(),
                    }),
                },
            )
            .collect())
    }

    /// Status and receipt of a transaction.
    pub async fn tx_status(&self, hash: Hash32) -> Result<TxStatusView, ClientError> {
        self.get(&format!("/v1/tx/{}", hex::encode(hash.0))).await
    }

    /// Balance and next nonce of an account.
    pub async fn account(&self, id: AccountId) -> Result<AccountView, ClientError> {
        self.get(&format!("/v1/account/{}", hex::encode(id.0)))
            .await
    }

    /// The committed block at `height`.
    pub async fn block(&self, height: u64) -> Result<BlockView, ClientError> {
        self.get(&format!("/v1/block/{height}")).await
    }

    /// The node's chain status.
    pub async fn status(&self) -> Result<StatusView, ClientError> {
        self.get("/v1/status").await
    }

    /// The heights of the snapshots the node serves for state sync (an
    /// answer of more than 64 KiB is refused unread).
    pub async fn state_snapshots(&self) -> Result<Vec<u64>, ClientError> {
        let path = "/v1/state-sync/snapshots";
        let body = self.state_bytes(path, 64 << 10).await?;
        let view: qbind_api::wire::StateSnapshotsView =
            serde_json::from_slice(&body).map_err(|e| ClientError::Unexpected {
                status: 200,
                detail: e.to_string(),
            })?;
        Ok(view.heights)
    }

    /// A state-sync answer (`/v1/state-sync/...`: proof, manifest or page),
    /// read only up to `max` bytes (an error body up to 64 KiB): a node that
    /// sends more is refused ([`ClientError::Unexpected`]) without reading
    /// the rest, so an endless answer costs at most that and
    /// [`REQUEST_TIMEOUT`].
    pub async fn state_bytes(&self, path: &str, max: usize) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let (status, retry_after, body) = self.answer(self.http.get(&url), &url, max).await?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(Self::refusal(status, retry_after, &body))
        }
    }

    /// Poll [`Self::tx_status`] every `poll` until the transaction is final
    /// (committed or rejected) or `timeout` passes. A hash the node does not
    /// know yet (404 `tx_not_found`, e.g. submitted through another node) is
    /// polled again; other errors end the wait.
    pub async fn wait(
        &self,
        hash: Hash32,
        timeout: Duration,
        poll: Duration,
    ) -> Result<TxStatusView, ClientError> {
        let start = tokio::time::Instant::now();
        loop {
            match self.tx_status(hash).await {
                Ok(view) if view.is_final() => return Ok(view),
                Ok(_) => {}
                Err(e) if e.api_code() == Some(qbind_api::codes::TX_NOT_FOUND) => {}
                Err(e) => return Err(e),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(ClientError::WaitTimedOut { hash, waited });
            }
            tokio::time::sleep(poll.min(timeout - waited)).await;
        }
    }
}
