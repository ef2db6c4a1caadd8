//! A client of QBIND's public API (docs/api.md) and the `qbind` command line.
//!
//! - [`QbindClient`]: one async method per API route, typed answers
//!   ([`qbind_api::wire`]) and errors carrying the API's stable codes; the
//!   load generator uses it too.
//! - [`keyfile`]: ML-DSA-44 account key files (mode 0600).
//! - [`cli`]: the `qbind` program ([`cli::run`]).
//!
//! Transactions are `qbind_core::execution::Transaction`s, signed with the
//! core's own code for the network the node reports.
//!
//! ```no_run
//! # async fn demo() -> Result<(), qbind_client::ClientError> {
//! use qbind_client::QbindClient;
//! let node = QbindClient::new("http://127.0.0.1:8080")?;
//! let status = node.status().await?;
//! println!("{} at height {}", status.network, status.height);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cli;
mod client;
pub mod keyfile;

pub use client::{ClientError, MAX_ERROR_ANSWER, MAX_JSON_ANSWER, QbindClient, REQUEST_TIMEOUT};
