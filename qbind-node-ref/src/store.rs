//! The node's store: fjall (the default) or RocksDB (`--db-backend`,
//! cargo feature `rocksdb`, linked against the system's `librocksdb`), one
//! type for the rest of the node ([`NodeStore`]).
//!
//! A data directory belongs to the backend that created it: opening it with
//! the other one is refused ([`NodeError::WrongBackend`]) instead of
//! creating a second, empty store beside the first.

use std::path::Path;

use qbind_core::traits::{
    Durability, KeyValues, Namespace, StateBackend, StateRead, StateSnapshot, StorageError,
    WriteBatch,
};
use qbind_store::FjallBackend;
#[cfg(feature = "rocksdb")]
use qbind_store::RocksDbBackend;
use qbind_store::metrics::StoreMetrics;
use qbind_store::snapshot::{
    BlockHasher, SnapshotConfig, SnapshotError, SnapshotMeta, TrustAnchor,
};

use crate::node::NodeError;

/// Which storage engine holds a node's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreBackend {
    /// fjall (pure Rust; the default).
    #[default]
    Fjall,
    /// RocksDB (needs a build with the `rocksdb` feature).
    RocksDb,
}

impl StoreBackend {
    /// Its name on the command line and in snapshot metadata.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            StoreBackend::Fjall => "fjall",
            StoreBackend::RocksDb => "rocksdb",
        }
    }

    /// The backend called `name` (`fjall` or `rocksdb`).
    #[must_use]
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "fjall" => Some(StoreBackend::Fjall),
            "rocksdb" => Some(StoreBackend::RocksDb),
            _ => None,
        }
    }

    /// Whether this build can open stores of this backend.
    #[must_use]
    pub fn available(self) -> bool {
        match self {
            StoreBackend::Fjall => true,
            StoreBackend::RocksDb => cfg!(feature = "rocksdb"),
        }
    }

    /// The backend whose files `dir` holds, if any: RocksDB keeps `CURRENT`
    /// and `IDENTITY`, fjall a `version` file and a `keyspaces` directory.
    #[must_use]
    pub fn of_dir(dir: &Path) -> Option<Self> {
        if dir.join("CURRENT").is_file() && dir.join("IDENTITY").is_file() {
            Some(StoreBackend::RocksDb)
        } else if dir.join("version").is_file() && dir.join("keyspaces").is_dir() {
            Some(StoreBackend::Fjall)
        } else {
            None
        }
    }
}

impl std::fmt::Display for StoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A node's store, of either backend.
pub enum NodeStore {
    /// A fjall store.
    Fjall(FjallBackend),
    /// A RocksDB store.
    #[cfg(feature = "rocksdb")]
    RocksDb(RocksDbBackend),
}

impl NodeStore {
    /// Open (or create) the store of `backend` in `dir`. Refused when `dir`
    /// holds the other backend's store, or when this build lacks `backend`.
    pub fn open(backend: StoreBackend, dir: &Path) -> Result<Self, NodeError> {
        if let Some(found) = StoreBackend::of_dir(dir)
            && found != backend
        {
            return Err(NodeError::WrongBackend {
                dir: dir.to_path_buf(),
                found,
                asked: backend,
            });
        }
        match backend {
            StoreBackend::Fjall => Ok(NodeStore::Fjall(FjallBackend::open(dir)?)),
            #[cfg(feature = "rocksdb")]
            StoreBackend::RocksDb => Ok(NodeStore::RocksDb(RocksDbBackend::open(dir)?)),
            #[cfg(not(feature = "rocksdb"))]
            StoreBackend::RocksDb => Err(NodeError::BackendUnavailable(backend)),
        }
    }

    /// Its backend.
    #[must_use]
    pub fn backend(&self) -> StoreBackend {
        match self {
            NodeStore::Fjall(_) => StoreBackend::Fjall,
            #[cfg(feature = "rocksdb")]
            NodeStore::RocksDb(_) => StoreBackend::RocksDb,
        }
    }

    /// Bytes the store occupies on disk.
    pub fn disk_space(&self) -> Result<u64, StorageError> {
        match self {
            NodeStore::Fjall(s) => s.disk_space(),
            #[cfg(feature = "rocksdb")]
            NodeStore::RocksDb(s) => s.disk_space(),
        }
    }

    /// Write a snapshot of the store ([`qbind_store::snapshot::create_snapshot`]
    /// with this store's backend).
    pub fn create_snapshot(
        &self,
        config: &SnapshotConfig,
        epoch: u64,
        block_hash: &BlockHasher,
        metrics: &StoreMetrics,
    ) -> Result<SnapshotMeta, SnapshotError> {
        match self {
            NodeStore::Fjall(s) => {
                qbind_store::snapshot::create_snapshot(s, config, epoch, block_hash, metrics)
            }
            #[cfg(feature = "rocksdb")]
            NodeStore::RocksDb(s) => {
                qbind_store::snapshot::create_snapshot(s, config, epoch, block_hash, metrics)
            }
        }
    }

    /// Restore the snapshot in `snapshot` into `data_dir` with `backend`
    /// ([`qbind_store::snapshot::restore_snapshot`]; the snapshot must be of
    /// that backend).
    pub fn restore(
        backend: StoreBackend,
        snapshot: &Path,
        chain_id: u64,
        anchor: &TrustAnchor,
        data_dir: &Path,
        block_hash: &BlockHasher,
    ) -> Result<(Self, SnapshotMeta), NodeError> {
        match backend {
            StoreBackend::Fjall => {
                let (store, meta) = qbind_store::snapshot::restore_snapshot::<FjallBackend>(
                    snapshot, chain_id, anchor, data_dir, block_hash,
                )?;
                Ok((NodeStore::Fjall(store), meta))
            }
            #[cfg(feature = "rocksdb")]
            StoreBackend::RocksDb => {
                let (store, meta) = qbind_store::snapshot::restore_snapshot::<RocksDbBackend>(
                    snapshot, chain_id, anchor, data_dir, block_hash,
                )?;
                Ok((NodeStore::RocksDb(store), meta))
            }
            #[cfg(not(feature = "rocksdb"))]
            StoreBackend::RocksDb => Err(NodeError::BackendUnavailable(backend)),
        }
    }

    fn inner(&self) -> &dyn StateBackend {
        match self {
            NodeStore::Fjall(s) => s,
            #[cfg(feature = "rocksdb")]
            NodeStore::RocksDb(s) => s,
        }
    }
}

impl StateRead for NodeStore {
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner().get(ns, key)
    }

    fn multi_get(
        &self,
        ns: Namespace,
        keys: &[&[u8]],
    ) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        self.inner().multi_get(ns, keys)
    }

    fn scan_prefix(
        &self,
        ns: Namespace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        self.inner().scan_prefix(ns, prefix, limit)
    }
}

impl StateBackend for NodeStore {
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        self.inner().write(batch, durability)
    }

    fn snapshot(&self) -> Result<Box<dyn StateSnapshot + '_>, StorageError> {
        self.inner().snapshot()
    }

    fn checkpoint(&self, dir: &Path) -> Result<(), StorageError> {
        self.inner().checkpoint(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_none() {
        for b in [StoreBackend::Fjall, StoreBackend::RocksDb] {
            assert_eq!(StoreBackend::named(b.name()), Some(b));
        }
        assert_eq!(StoreBackend::named("leveldb"), None);
        assert!(StoreBackend::Fjall.available());
        assert_eq!(StoreBackend::RocksDb.available(), cfg!(feature = "rocksdb"));
    }

    #[test]
    fn a_fjall_store_is_recognised_and_kept_from_the_other_backend() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        {
            let store = NodeStore::open(StoreBackend::Fjall, &path).expect("open");
            assert_eq!(store.backend(), StoreBackend::Fjall);
            let mut batch = WriteBatch::new();
            batch.put(Namespace::Meta, b"k".to_vec(), b"v".to_vec());
            store.write(batch, Durability::Durable).expect("write");
            assert!(store.disk_space().expect("size") > 0);
        }
        assert_eq!(StoreBackend::of_dir(&path), Some(StoreBackend::Fjall));
        match NodeStore::open(StoreBackend::RocksDb, &path) {
            Err(NodeError::WrongBackend { found, asked, .. }) => {
                assert_eq!((found, asked), (StoreBackend::Fjall, StoreBackend::RocksDb));
            }
            Err(other) => panic!("want WrongBackend, got {other}"),
            Ok(_) => panic!("opened a fjall store as RocksDB"),
        }
        let again = NodeStore::open(StoreBackend::Fjall, &path).expect("reopen");
        assert_eq!(
            again.get(Namespace::Meta, b"k").expect("get"),
            Some(b"v".to_vec())
        );
        assert_eq!(StoreBackend::of_dir(dir.path()), None);
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn a_rocksdb_store_is_recognised_and_kept_from_the_other_backend() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        {
            let store = NodeStore::open(StoreBackend::RocksDb, &path).expect("open");
            let mut batch = WriteBatch::new();
            batch.put(Namespace::Meta, b"k".to_vec(), b"v".to_vec());
            store.write(batch, Durability::Durable).expect("write");
        }
        assert_eq!(StoreBackend::of_dir(&path), Some(StoreBackend::RocksDb));
        assert!(matches!(
            NodeStore::open(StoreBackend::Fjall, &path),
            Err(NodeError::WrongBackend { .. })
        ));
        let again = NodeStore::open(StoreBackend::RocksDb, &path).expect("reopen");
        assert_eq!(again.backend(), StoreBackend::RocksDb);
        assert_eq!(
            again.get(Namespace::Meta, b"k").expect("get"),
            Some(b"v".to_vec())
        );
    }

    #[cfg(not(feature = "rocksdb"))]
    #[test]
    fn rocksdb_without_the_feature_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = NodeStore::open(StoreBackend::RocksDb, &dir.path().join("db"))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("--features rocksdb"), "{err}");
    }
}
