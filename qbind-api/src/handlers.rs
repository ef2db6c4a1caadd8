//! One handler per route. Each parses its input itself (so every refusal is
//! a typed [`ApiError`] with a stable code, not a framework default), does
//! the state-independent transaction checks off the async threads, and asks
//! the backend for the rest.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use qbind_core::types::{Hash32, Height};
use serde::de::DeserializeOwned;

use crate::backend::{ApiBackend, SyncState, TxLookup};
use crate::codes;
use crate::error::ApiError;
use crate::server::Shared;
use crate::submit::{CheckedTx, SubmitError};
use crate::wire::{
    AccountView, BatchItemResult, BlockView, ErrorBody, PoolView, StatusView, SubmitBatchRequest,
    SubmitBatchResponse, SubmitTxRequest, SubmitTxResponse, SyncView, TxStatusView, chain_id_text,
    network_name, parse_account, parse_hash,
};

/// The client address the rate-limit middleware resolved for this request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientIp(pub(crate) IpAddr);

fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::BODY_TOO_LARGE,
                "request body exceeds this route's limit",
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::MALFORMED_JSON,
                "request body could not be read",
            )
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::MALFORMED_JSON,
            format!("malformed JSON: {e}"),
        )
    })
}

fn decode_tx_hex(text: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_HEX,
            format!("transaction is not hex: {e}"),
        )
    })
}

fn path_segment(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(s)| s).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_PATH,
            format!("bad path: {e}"),
        )
    })
}

fn internal(what: &str) -> ApiError {
    tracing::warn!(what, "API worker task failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        codes::INTERNAL,
        "internal error",
    )
}

/// `POST /v1/tx`.
pub(crate) async fn submit_tx<B: ApiBackend>(
    State(shared): State<Arc<Shared<B>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SubmitTxResponse>), ApiError> {
    if !shared.backend.takes_transactions() {
        return Err(SubmitError::NotAValidator.into());
    }
    let request: SubmitTxRequest = parse_body(body)?;
    let bytes = decode_tx_hex(&request.tx)?;
    if let Some(system) = qbind_core::system_tx::decode(&bytes) {
        // A key rotation: the backend checks it against the keys in force.
        let hash = Hash32::digest(&bytes);
        shared.backend.submit_system(system, bytes).await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(SubmitTxResponse {
                hash: hex::encode(hash.0),
            }),
        ));
    }
    let env = shared.backend.network();
    // ML-DSA verification (up to three on the failure path) off the async threads.
    let checked = tokio::task::spawn_blocking(move || CheckedTx::check(env, bytes))
        .await
        .map_err(|_| internal("transaction check"))??;
    let hash = checked.hash();
    shared.backend.submit(checked).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SubmitTxResponse {
            hash: hex::encode(hash.0),
        }),
    ))
}

fn item_error(e: &ApiError) -> Option<ErrorBody> {
    Some(e.body())
}

/// `POST /v1/txs`: each transaction is accepted or refused on its own; the
/// batch as a whole fails only for a bad body, an empty or oversized batch,
/// or a client without tokens for every transaction.
pub(crate) async fn submit_batch<B: ApiBackend>(
    State(shared): State<Arc<Shared<B>>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SubmitBatchResponse>, ApiError> {
    if !shared.backend.takes_transactions() {
        return Err(SubmitError::NotAValidator.into());
    }
    let request: SubmitBatchRequest = parse_body(body)?;
    let max = shared.config.max_batch_txs;
    if request.txs.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::EMPTY_BATCH,
            "the batch holds no transaction",
        ));
    }
    if request.txs.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::BATCH_TOO_LARGE,
            format!(
                "{} transactions, at most {max} per batch",
                request.txs.len()
            ),
        ));
    }
    // The middleware charged one token for the request; a batch costs one
    // per transaction.
    if let Some(limiter) = &shared.limiter {
        let extra = u32::try_from(request.txs.len() - 1).unwrap_or(u32::MAX);
        if extra > 0 {
            limiter
                .try_acquire(ip, extra, Instant::now())
                .map_err(crate::server::rate_limited)?;
        }
    }
    let env = shared.backend.network();
    let checked: Vec<Result<CheckedTx, ApiError>> = tokio::task::spawn_blocking(move || {
        request
            .txs
            .iter()
            .map(|text| {
                let bytes = decode_tx_hex(text)?;
                CheckedTx::check(env, bytes).map_err(ApiError::from)
            })
            .collect()
    })
    .await
    .map_err(|_| internal("batch check"))?;

    let mut results: Vec<BatchItemResult> = Vec::with_capacity(checked.len());
    let mut to_submit = Vec::new();
    let mut slots = Vec::new();
    for (i, item) in checked.into_iter().enumerate() {
        match item {
            Ok(tx) => {
                results.push(BatchItemResult {
                    hash: Some(hex::encode(tx.hash().0)),
                    error: None,
                });
                slots.push(i);
                to_submit.push(tx);
            }
            Err(e) => results.push(BatchItemResult {
                hash: None,
                error: item_error(&e),
            }),
        }
    }
    if !to_submit.is_empty() {
        let outcomes = shared.backend.submit_batch(to_submit).await;
        for (n, slot) in slots.into_iter().enumerate() {
            let outcome = outcomes
                .get(n)
                .cloned()
                .unwrap_or(Err(SubmitError::Internal {
                    detail: "backend returned fewer batch results than transactions".into(),
                }));
            if let (Err(e), Some(result)) = (outcome, results.get_mut(slot)) {
                result.error = item_error(&ApiError::from(e));
            }
        }
    }
    Ok(Json(SubmitBatchResponse { results }))
}

/// `GET /v1/tx/{hash}`.
pub(crate) async fn tx_status<B: ApiBackend>(
    State(shared): State<Arc<Shared<B>>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TxStatusView>, ApiError> {
    let text = path_segment(path)?;
    let hash = parse_hash(&text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_HEX,
            "a transaction hash is 64 hex digits",
        )
    })?;
    let hex_hash = hex::encode(hash.0);
    let view = match shared.backend.tx_status(hash).await? {
        TxLookup::Pending => TxStatusView::Pending { hash: hex_hash },
        TxLookup::Executed {
            height,
            index,
            receipt,
        } => TxStatusView::executed(hash, height.0, index, &receipt),
        TxLookup::Dropped(reason) => TxStatusView::Dropped {
            hash: hex_hash,
            reason: reason.code().to_string(),
            message: reason.message(),
        },
        TxLookup::Unknown => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                codes::TX_NOT_FOUND,
                format!("no transaction {hex_hash} is known to this node"),
            ));
        }
    };
    Ok(Json(view))
}

/// `GET /v1/account/{id}`.
pub(crate) async fn account<B: ApiBackend>(
    State(shared): State<Arc<Shared<B>>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let text = path_segment(path)?;
    let id = parse_account(&text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_HEX,
            "an account id is 64 hex digits",
        )
    })?;
    let account = shared.backend.account(id).await?;
    Ok(Json(AccountView::new(id, account)))
}

/// `GET /v1/block/{height}`.
pub(crate) async fn block<B: ApiBackend>(
    State(shared): State<Arc<Shared<B>>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BlockView>, ApiError> {
    let text = path_segment(path)?;
    let height: u64 = text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_PATH,
            "a height is a decimal u64",
        )
    })?;
    let info = shared.backend.block(Height(height)).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            codes::BLOCK_NOT_FOUND,
            format!("no committed block at height {height} on this node"),
        )
    })?;
    Ok(Json(BlockView::new(
        &info.header,
        info.qc.as_ref(),
        &info.tx_hashes,
        info.state_root,
    )))
}

/// `GET /v1/status`.
pub(crate) async fn status<B: ApiBackend>(
    State(shared): State<Arc<Shared<B>>>,
) -> Result<Json<StatusView>, ApiError> {
    let env = shared.backend.network();
    let s = shared.backend.status().await?;
    Ok(Json(StatusView {
        network: network_name(env).to_string(),
        chain_id: chain_id_text(env),
        height: s.height.0,
        executed_height: s.executed_height.0,
        view: s.view.0,
        epoch: s.epoch.0,
        peers: s.peers,
        sync: match s.sync {
            SyncState::Synced => SyncView::Synced,
            SyncState::CatchingUp {
                target,
                blocks_per_sec,
                source_peers,
            } => SyncView::CatchingUp {
                target_height: target.0,
                behind_by: Some(target.0.saturating_sub(s.height.0)),
                blocks_per_sec: Some(blocks_per_sec),
                source_peers: Some(source_peers),
            },
            SyncState::StateSync(s) => SyncView::StateSync {
                phase: s.phase.to_string(),
                target_height: s.target.0,
                chunks_done: s.chunks_done,
                chunks_total: s.chunks_total,
                bytes: s.bytes,
                peers: s.peers,
                peers_dropped: s.peers_dropped,
            },
        },
        pool: s.pool.map(|p| PoolView {
            pending: p.pending,
            queued: p.queued,
            capacity: p.capacity,
        }),
    }))
}

/// Unknown routes.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such route")
}

/// Known routes with another method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}
