//! # qbind-examples
//!
//! Three small programs for integrators, each a [`run`](embed::run)
//! function here, a `main` in `examples/` that calls it with defaults and
//! prints what happens, and a test in `tests/` that runs it small and checks
//! the outcome (so CI runs every example):
//!
//! - [`embed`] — the core with your own store, network, signer, clock and
//!   application: four validators commit blocks and agree on every state
//!   root (`cargo run -p qbind-examples --example embed`);
//! - [`sim_scenario`] — a deterministic simulator scenario with a crash and
//!   a partition, replayed from its seed with an identical outcome
//!   (`cargo run -p qbind-examples --example sim_scenario`);
//! - [`light_client`] — verifying committed blocks and their quorum
//!   certificates from outside, knowing only the validator set, and
//!   rejecting tampered ones (`cargo run -p qbind-examples --example light_client`).
//!
//! ```no_run
//! let summary = qbind_examples::embed::run(&Default::default(), &mut |line| println!("{line}"))?;
//! assert!(summary.roots_at_target.windows(2).all(|w| w[0] == w[1]));
//! # Ok::<(), qbind_examples::embed::EmbedError>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod embed;
pub mod light_client;
pub mod sim_scenario;
