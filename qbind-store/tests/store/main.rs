//! Integration tests of qbind-store: the conformance suite on every backend,
//! typed file-system errors, the crash campaign, snapshots and pruning.

mod common;
mod conformance;
mod crash;
mod fs_errors;
mod pruning;
mod snapshots;
