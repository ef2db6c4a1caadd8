//! What `qbind-localnet` decides, apart from its processes and HTTP calls
//! (docs/node.md "Local network"): the meaning of its options
//! ([`options`]), latency percentiles ([`percentile`]) and the end-of-run
//! ledger check that every accepted transfer was applied exactly once
//! ([`ledger`]). Pure functions, unit-tested here; the binary
//! (`src/bin/qbind-localnet/`) runs the validators and the load.

pub mod ledger;
pub mod options;
pub mod percentile;
