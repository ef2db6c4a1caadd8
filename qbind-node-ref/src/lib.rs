//! # qbind-node-ref: the reference node
//!
//! The binaries an operator runs (runbook §3.5, §4, §5, §6): one file per
//! binary under `src/bin/` (`qbind-node` is a directory). This library holds what they share:
//!
//! - [`node`]: a validator's store (opened, or restored from a snapshot for
//!   fast sync), its genesis state, and the background snapshot and pruning
//!   services;
//! - [`local`]: a multi-validator network in one process (`qbind-node
//!   --local-validators N`), each validator with its own persistent store;
//! - [`genesis`]: the genesis file, its hash, and the binding of a store to
//!   it; [`genesis_dir`]: a local network's genesis directory with fresh
//!   keys (`qbind-genesis devnet`, `qbind-localnet`);
//! - [`localnet`]: what `qbind-localnet` decides (options, latency
//!   percentiles, the check that every accepted transfer applied once);
//! - [`profile`]: the network profiles and their presets;
//! - [`config`]: the effective configuration, the MainNet invariants of
//!   runbook §3.2 (`validate_mainnet_invariants`) and the TOML config file;
//! - [`metrics`]: the Prometheus text format and the `/metrics` endpoint;
//! - [`validator_set`]: the validator-set file (keys from `qbind-keygen`,
//!   addresses, stake, key rotations) for validators with their own keys;
//! - [`full_nodes`]: the full-node key file a validator admits full nodes
//!   by (`--full-node-keys`);
//! - [`sentry`]: `qbind-node --role sentry`, the public face of one
//!   validator, and the validator's link to it;
//! - [`admin`]: the authenticated local admin endpoint `qbind-admin`
//!   talks to (status, peers, DAG status, snapshot and prune now);
//! - [`cli`]: what the operator tools share (exit statuses, `--output`,
//!   how a result or failure is printed).
//!
//! No other crate depends on this one (DESIGN "Workspace").

pub mod admin;
pub mod cli;
pub mod config;
pub mod full_nodes;
pub mod genesis;
pub mod genesis_dir;
pub mod local;
pub mod localnet;
pub mod metrics;
pub mod node;
pub mod profile;
pub mod sentry;
pub mod signals;
pub mod state_sync;
pub mod store;
pub mod upgrade;
pub mod validator_set;
