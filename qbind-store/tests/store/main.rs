//! Integration tests of qbind-store: the conformance suite on every backend,
//! typed file-system errors, the crash campaign, snapshots (hostile files,
//! atomic and trust-anchored restores) and pruning.

mod common;
mod conformance;
mod crash;
mod fs_errors;
mod hostile_snapshots;
mod pruning;
mod restore;
mod snapshots;
