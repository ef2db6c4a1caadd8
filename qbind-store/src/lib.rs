//! # qbind-store
//!
//! Implementations of `qbind-core`'s [`StateBackend`] (spec §2.3–2.6,
//! runbook §5 and §10.4, issue #3):
//!
//! - [`FjallBackend`]: the default persistent backend (pure Rust LSM);
//! - `RocksDbBackend` (feature `rocksdb`): RocksDB through the system
//!   `librocksdb`;
//! - the in-memory [`qbind_core::traits::MemoryBackend`] lives in the core.
//!
//! On top of any of them: the shared [`conformance`] suite, [`snapshot`]s
//! (`snapshot_dir/<height>/{meta.json,state/}`), height-based [`prune`]ing
//! and plain [`metrics`] counters. The contract, key layout and durability
//! argument are in `docs/storage.md`.
//!
//! ```
//! use qbind_core::execution::{AccountReader, BackendAccounts, credit};
//! use qbind_core::traits::{Durability, StateBackend, StateRead};
//! use qbind_core::types::AccountId;
//! use qbind_store::FjallBackend;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = FjallBackend::open(dir.path()).unwrap();
//! // Protocol state: a genesis credit as a state transition (accounts +
//! // state summary), written in one durable, atomic batch.
//! let alice = AccountId([1; 32]);
//! let genesis = credit(&BackendAccounts::new(&store), &[(alice, 100)]).unwrap();
//! store.write(genesis.to_write_batch(), Durability::Durable).unwrap(); // fsynced
//! let reader = BackendAccounts::new(&store);
//! assert_eq!(reader.account(&alice).unwrap().balance, 100);
//! assert_eq!(reader.summary().unwrap().root(), genesis.root());
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod conformance;
pub mod error;
mod fjall_backend;
pub mod fsutil;
pub mod metrics;
pub mod prune;
#[cfg(feature = "rocksdb")]
mod rocksdb_backend;
pub mod snapshot;
pub mod state_sync;
pub mod workload;

pub use fjall_backend::{FjallBackend, FjallConfig};
pub use qbind_core::traits::StateBackend;
#[cfg(feature = "rocksdb")]
pub use rocksdb_backend::RocksDbBackend;

/// A persistent backend that can be opened from a directory — the store's
/// own data directory or a checkpoint made by [`StateBackend::checkpoint`].
/// Snapshots, restores and the crash campaign are generic over it.
pub trait PersistentBackend: StateBackend + Sized + 'static {
    /// Short name recorded in snapshot metadata (`"fjall"`, `"rocksdb"`).
    const KIND: &'static str;

    /// Open (or create) the store in `path`.
    fn open_dir(path: &std::path::Path) -> Result<Self, qbind_core::traits::StorageError>;

    /// Bytes the store occupies on disk.
    fn disk_space(&self) -> Result<u64, qbind_core::traits::StorageError>;

    /// Reclaim the space of deleted entries (flush and full compaction).
    fn compact(&self) -> Result<(), qbind_core::traits::StorageError>;
}

impl PersistentBackend for FjallBackend {
    const KIND: &'static str = "fjall";

    fn open_dir(path: &std::path::Path) -> Result<Self, qbind_core::traits::StorageError> {
        FjallBackend::open(path)
    }

    fn disk_space(&self) -> Result<u64, qbind_core::traits::StorageError> {
        FjallBackend::disk_space(self)
    }

    fn compact(&self) -> Result<(), qbind_core::traits::StorageError> {
        FjallBackend::compact(self)
    }
}
