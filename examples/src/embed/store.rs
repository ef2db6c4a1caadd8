//! The integrator's own [`StateBackend`]: one ordered map behind a mutex.
//!
//! The replica needs four things from a store (see the trait's contract):
//! ordered reads (`scan_prefix` ascending), batches applied all-or-nothing,
//! durability on request, and typed errors. An in-memory map gets the first
//! two from one lock and the `BTreeMap`'s order; it has no stable storage, so
//! `Durable` and `Buffered` writes are the same here. A real store would
//! fsync a `Durable` write before returning (`qbind-store` shows how with
//! fjall and RocksDB).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use qbind_core::traits::{
    Durability, KeyValues, Namespace, StateBackend, StateRead, StateSnapshot, StorageError,
    WriteBatch, WriteOp,
};

type Table = BTreeMap<(Namespace, Vec<u8>), Vec<u8>>;

/// A shared in-memory key-value store: clones are handles to the same map,
/// so the example can read a validator's state after its engine stopped.
#[derive(Clone, Default)]
pub struct BTreeStore {
    table: Arc<Mutex<Table>>,
}

impl BTreeStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        BTreeStore::default()
    }

    /// Number of entries in `ns` (for the example's progress output).
    #[must_use]
    pub fn len(&self, ns: Namespace) -> usize {
        self.lock().keys().filter(|(n, _)| *n == ns).count()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing between the operations of a batch can panic (map inserts
        // and removals), so a poisoned lock never guards a half-applied
        // batch and is safe to keep using.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn scan(table: &Table, ns: Namespace, start: &[u8], end: Option<&[u8]>, limit: usize) -> KeyValues {
    let lower = Bound::Included((ns, start.to_vec()));
    table
        .range((lower, Bound::Unbounded))
        .take_while(|((n, k), _)| *n == ns && end.is_none_or(|e| k.as_slice() < e))
        .take(limit)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

fn scan_prefix(table: &Table, ns: Namespace, prefix: &[u8], limit: usize) -> KeyValues {
    let lower = Bound::Included((ns, prefix.to_vec()));
    table
        .range((lower, Bound::Unbounded))
        .take_while(|((n, k), _)| *n == ns && k.starts_with(prefix))
        .take(limit)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

impl StateRead for BTreeStore {
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().get(&(ns, key.to_vec())).cloned())
    }

    fn scan_prefix(
        &self,
        ns: Namespace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        Ok(scan_prefix(&self.lock(), ns, prefix, limit))
    }
}

impl StateBackend for BTreeStore {
    fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<(), StorageError> {
        // All or nothing: every operation is applied under one lock, so no
        // reader ever sees part of the batch.
        let mut table = self.lock();
        for op in batch.ops() {
            match op {
                WriteOp::Put { ns, key, value } => {
                    table.insert((*ns, key.clone()), value.clone());
                }
                WriteOp::Delete { ns, key } => {
                    table.remove(&(*ns, key.clone()));
                }
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Box<dyn StateSnapshot + '_>, StorageError> {
        // A copy is the simplest consistent view; a real store would use its
        // engine's snapshots instead of copying.
        Ok(Box::new(TableSnapshot {
            table: self.lock().clone(),
        }))
    }

    fn checkpoint(&self, _dir: &Path) -> Result<(), StorageError> {
        // Only the node's snapshot service calls this; an embedder that does
        // not offer state snapshots may refuse.
        Err(StorageError::Io {
            detail: "the example store keeps no checkpoints".into(),
        })
    }
}

/// A copy of a [`BTreeStore`] taken at one instant.
struct TableSnapshot {
    table: Table,
}

impl StateRead for TableSnapshot {
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.table.get(&(ns, key.to_vec())).cloned())
    }

    fn scan_prefix(
        &self,
        ns: Namespace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        Ok(scan_prefix(&self.table, ns, prefix, limit))
    }
}

impl StateSnapshot for TableSnapshot {
    fn scan_range(
        &self,
        ns: Namespace,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        Ok(scan(&self.table, ns, start, end, limit))
    }
}
