//! # qbind-core
//!
//! The pure protocol core of QBIND, a post-quantum BFT blockchain: types, the
//! canonical codec, domain-separated ML-DSA-44 signing, chained HotStuff as a
//! sans-I/O state machine, the traits through which it meets storage,
//! network, signing and time, the application seam ([`application`]), the
//! storage schema ([`schema`]), one validator's replica with the one
//! interpreter of the machine's effects ([`replica`]), a thin async engine
//! over it (feature `engine`, tokio) and a deterministic simulator that
//! drives the same replica (feature `sim`).
//!
//! ```
//! use qbind_core::crypto::KeyPair;
//! use qbind_core::signing::{sign_domain, verify_domain, SignKind};
//! use qbind_core::types::NetworkEnvironment;
//!
//! let key = KeyPair::from_seed(&[1u8; 32]);
//! let env = NetworkEnvironment::Devnet;
//! let sig = sign_domain(&key, env, SignKind::Vote, b"canonical bytes");
//! assert!(verify_domain(key.public_key(), env, SignKind::Vote, b"canonical bytes", &sig).is_ok());
//! // The same signature is worthless on another chain or for another kind.
//! assert!(verify_domain(key.public_key(), NetworkEnvironment::Mainnet, SignKind::Vote, b"canonical bytes", &sig).is_err());
//! assert!(verify_domain(key.public_key(), env, SignKind::Timeout, b"canonical bytes", &sig).is_err());
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod application;
pub mod codec;
pub mod consensus;
pub mod cpu;
pub mod crypto;
pub mod dag;
#[cfg(feature = "engine")]
pub mod engine;
pub mod execution;
pub mod fee_mempool;
pub mod key_rotation;
mod memo;
pub mod mempool;
pub mod monetary;
pub mod mutants;
pub mod pool_drops;
pub mod quorum;
pub mod replica;
pub mod schema;
pub mod signing;
#[cfg(feature = "sim")]
pub mod sim;
pub mod state_sync;
pub mod system_tx;
pub mod traits;
pub mod types;
pub mod validator;

pub use traits::{Clock, Signer, StateBackend, Transport};
