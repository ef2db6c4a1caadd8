//! Integration tests of qbind-store: the conformance suite on every backend,
//! typed file-system errors, the crash campaign, snapshots (hostile files,
//! atomic and trust-anchored restores), pruning, and state sync's serving
//! and staging.

mod common;
mod conformance;
mod crash;
mod fs_errors;
mod hostile_snapshots;
mod pruning;
mod restore;
mod snapshots;
mod state_sync;
