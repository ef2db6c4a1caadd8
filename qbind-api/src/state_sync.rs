//! The state-sync routes (docs/sync.md "State sync"): snapshot heights as
//! JSON, commit proofs, manifests and pages as the core's canonical
//! encodings (`application/octet-stream`). The node answers from its
//! snapshots through [`ApiBackend::state_sync`]; the client verifies
//! everything (`qbind_core::state_sync`), so the routes are public and rate
//! limited like every other.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use qbind_core::types::Height;

use crate::backend::{ApiBackend, StateSyncReply, StateSyncRequest};
use crate::codes;
use crate::error::ApiError;
use crate::server::Shared;
use crate::wire::{StateSnapshotsView, parse_account};

fn bad_path(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, codes::BAD_PATH, why)
}

fn not_served() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        codes::STATE_SYNC_UNAVAILABLE,
        "this node does not serve that snapshot",
    )
}

fn height(text: &str) -> Result<Height, ApiError> {
    text.parse()
        .map(Height)
        .map_err(|_| bad_path("a height is a decimal u64"))
}

fn bytes(reply: StateSyncReply) -> Result<Response, ApiError> {
    match reply {
        StateSyncReply::Bytes(b) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response())
        }
        StateSyncReply::Heights(_) | StateSyncReply::NotServed => Err(not_served()),
    }
}

/// `GET /v1/state-sync/snapshots`.
pub(crate) async fn snapshots<B: ApiBackend>(
    State(shared): State<Arc<Shared<B>>>,
) -> Result<Json<StateSnapshotsView>, ApiError> {
    match shared
        .backend
        .state_sync(StateSyncRequest::Snapshots)
        .await?
    {
        StateSyncReply::Heights(heights) => Ok(Json(StateSnapshotsView { heights })),
        StateSyncReply::Bytes(_) | StateSyncReply::NotServed => Err(not_served()),
    }
}

/// `GET /v1/state-sync/{height}/proof`.
pub(crate) async fn proof<B: ApiBackend>(
    State(shared): State<Arc<Shared<B>>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(text) = path.map_err(|e| bad_path(format!("bad path: {e}")))?;
    let request = StateSyncRequest::Proof(height(&text)?);
    bytes(shared.backend.state_sync(request).await?)
}

/// `GET /v1/state-sync/{height}/manifest`.
pub(crate) async fn manifest<B: ApiBackend>(
    State(shared): State<Arc<Shared<B>>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(text) = path.map_err(|e| bad_path(format!("bad path: {e}")))?;
    let request = StateSyncRequest::Manifest(height(&text)?);
    bytes(shared.backend.state_sync(request).await?)
}

/// `GET /v1/state-sync/{height}/key-rotations`.
pub(crate) async fn key_rotations<B: ApiBackend>(
    State(shared): State<Arc<Shared<B>>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(text) = path.map_err(|e| bad_path(format!("bad path: {e}")))?;
    let request = StateSyncRequest::KeyLog(height(&text)?);
    bytes(shared.backend.state_sync(request).await?)
}

/// `GET /v1/state-sync/{height}/chunk/{index}[?after=<id>]`.
pub(crate) async fn chunk<B: ApiBackend>(
    State(shared): State<Arc<Shared<B>>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let Path((h, index)) = path.map_err(|e| bad_path(format!("bad path: {e}")))?;
    let chunk: u32 = index
        .parse()
        .map_err(|_| bad_path("a chunk index is a decimal u32"))?;
    let after = match query.as_deref() {
        None | Some("") => None,
        Some(q) => Some(
            q.strip_prefix("after=")
                .and_then(parse_account)
                .ok_or_else(|| bad_path("the only query is after=<account id, 64 hex digits>"))?,
        ),
    };
    let request = StateSyncRequest::Page {
        height: height(&h)?,
        chunk,
        after,
    };
    bytes(shared.backend.state_sync(request).await?)
}
