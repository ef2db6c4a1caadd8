//! QBIND's public HTTP/JSON API (issue #19 "A public API"; docs/api.md,
//! docs/openapi.yaml).
//!
//! - [`wire`] and [`codes`]: the JSON bodies and the stable error codes,
//!   shared with `qbind-client` (always compiled).
//! - [`submit`]: the state-independent checks a submitted transaction passes
//!   ([`CheckedTx`]) and the typed refusals ([`SubmitError`]).
//! - With the default feature `server`: the axum router over an
//!   [`ApiBackend`] (the node), per-client rate limiting, body limits, and
//!   [`ApiServer`] with graceful shutdown.
//!
//! ```
//! use qbind_api::wire::{TxStatusView, parse_hash};
//!
//! let view: TxStatusView = serde_json::from_str(
//!     r#"{"status":"pending","hash":"00"}"#,
//! ).unwrap();
//! assert!(!view.is_final());
//! assert!(parse_hash("not hex").is_none());
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod codes;
pub mod submit;
pub mod wire;

#[cfg(feature = "server")]
pub mod backend;
#[cfg(feature = "server")]
mod error;
#[cfg(feature = "server")]
mod handlers;
#[cfg(feature = "server")]
pub mod limiter;
#[cfg(feature = "server")]
pub mod listener;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod state_sync;

#[cfg(feature = "server")]
pub use backend::{
    ApiBackend, BackendError, BlockInfo, ChainStatus, DropReason, PoolStatus, StateSyncReply,
    StateSyncRequest, StateSyncStatus, SyncState, TxLookup,
};
#[cfg(feature = "server")]
pub use error::ApiError;
#[cfg(feature = "server")]
pub use server::{
    ApiConfig, ApiServer, ApiServerError, ROUTE_ACCOUNT, ROUTE_BLOCK, ROUTE_STATE_CHUNK,
    ROUTE_STATE_KEY_ROTATIONS, ROUTE_STATE_MANIFEST, ROUTE_STATE_PROOF, ROUTE_STATE_SNAPSHOTS,
    ROUTE_STATUS, ROUTE_SUBMIT_BATCH, ROUTE_SUBMIT_TX, ROUTE_TX, ROUTES, router,
};
pub use submit::{CheckedTx, SubmitError};
