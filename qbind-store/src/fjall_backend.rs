//! The default persistent backend: [`fjall`], a pure-Rust LSM tree with
//! keyspaces, cross-keyspace atomic batches and MVCC snapshots (issue #3,
//! spec §2.3).
//!
//! One fjall keyspace per [`Namespace`] (named by [`Namespace::name`]); a
//! [`WriteBatch`] becomes one fjall batch, which fjall writes to its journal
//! as a single record, so it is applied entirely or not at all across a
//! crash. [`Durability::Durable`] fsyncs the journal (`PersistMode::SyncAll`)
//! before `write` returns; [`Durability::Buffered`] hands the record to the
//! OS (survives a process crash, not a power loss) and, the journal being
//! sequential, a later durable write makes it durable too (no holes).

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use qbind_core::traits::{
    Durability, KeyValues, Namespace, StateBackend, StateRead, StateSnapshot, StorageError,
    WriteBatch, WriteOp,
};

use crate::error::from_io;

/// Every user key is stored as `FJALL_KEY_TAG || key`: fjall refuses empty
/// keys (it asserts), the contract allows them, and a constant first byte
/// keeps the byte order of user keys.
const FJALL_KEY_TAG: u8 = 0;

/// The longest user key fjall can store (its limit is `u16::MAX` bytes,
/// including our tag byte).
pub const FJALL_MAX_KEY_LEN: usize = u16::MAX as usize - 1;

fn stored_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(FJALL_KEY_TAG);
    k.extend_from_slice(key);
    k
}

fn check_lengths(key: &[u8], value: Option<&[u8]>) -> Result<(), StorageError> {
    if key.len() > FJALL_MAX_KEY_LEN {
        return Err(StorageError::Io {
            detail: format!(
                "key of {} bytes exceeds fjall's limit of {FJALL_MAX_KEY_LEN}",
                key.len()
            ),
        });
    }
    if value.is_some_and(|v| u32::try_from(v.len()).is_err()) {
        return Err(StorageError::Io {
            detail: "value longer than 4 GiB".into(),
        });
    }
    Ok(())
}

/// Tuning of a [`FjallBackend`].
#[derive(Clone, Debug)]
pub struct FjallConfig {
    /// Block cache size in bytes (fjall's default is 32 MiB).
    pub cache_size_bytes: u64,
    /// Background flush/compaction threads. The default is 3, neither 1 nor
    /// 2, because of how fjall 3.1 schedules them: with more than one
    /// worker, worker 0 hands every compaction request back to the queue
    /// and takes the next message, so while the other workers are busy it
    /// spins on a request only they may take. With 2 workers that spin ran
    /// for every compaction — 10 % of a validator's CPU samples in the
    /// README's run against 1.7 % with 3 (docs/benchmarks.md "Storage
    /// workers"); with 1 worker a flood of memtable-rotation requests can
    /// fill the queue that the only worker then blocks on while sending
    /// its own flush request.
    pub worker_threads: usize,
    /// Memtable size per keyspace before it is flushed to a table (fjall's
    /// default is 64 MiB; smaller bounds peak memory).
    pub max_memtable_bytes: u64,
}

impl FjallConfig {
    /// The defaults with 64 KiB memtables: every keyspace flushes and the
    /// journal rotates every few hundred small blocks, so reopening replays
    /// little journal and a crash campaign also kills during flushes and
    /// compactions. For tests; production keeps larger memtables (fewer,
    /// larger tables).
    #[must_use]
    pub fn small_memtables() -> Self {
        FjallConfig {
            max_memtable_bytes: 64 * 1024,
            ..FjallConfig::default()
        }
    }
}

impl Default for FjallConfig {
    fn default() -> Self {
        FjallConfig {
            cache_size_bytes: 16 * 1024 * 1024,
            worker_threads: 3,
            max_memtable_bytes: 8 * 1024 * 1024,
        }
    }
}

/// A [`StateBackend`] on a fjall database in one directory.
///
/// A checkpoint ([`StateBackend::checkpoint`]) is itself a fjall database:
/// open it with [`FjallBackend::open`].
pub struct FjallBackend {
    db: Database,
    keyspaces: Vec<(Namespace, Keyspace)>,
    path: PathBuf,
    /// Why the database refused writes, once fjall has poisoned it after a
    /// failed journal write (so a full disk keeps reporting `Full`).
    poison_cause: Mutex<Option<StorageError>>,
}

/// Map a fjall error onto [`StorageError`].
pub(crate) fn map_fjall(context: &str, error: fjall::Error) -> StorageError {
    match error {
        fjall::Error::Io(e) => from_io(context, &e),
        fjall::Error::Storage(lsm_error) => map_lsm(context, lsm_error),
        fjall::Error::Poisoned => StorageError::Io {
            detail: format!("{context}: an earlier write failed; restart the node to recover"),
        },
        fjall::Error::Locked => StorageError::Io {
            detail: format!("{context}: the database is locked by another process"),
        },
        other @ (fjall::Error::JournalRecovery(_)
        | fjall::Error::InvalidVersion(_)
        | fjall::Error::Decompress(_)
        | fjall::Error::InvalidTrailer
        | fjall::Error::InvalidTag(_)
        | fjall::Error::Unrecoverable) => StorageError::Corruption {
            what: format!("{context}: {other}"),
        },
        other => StorageError::Io {
            detail: format!("{context}: {other}"),
        },
    }
}

fn map_lsm(context: &str, error: fjall::LsmError) -> StorageError {
    match error {
        fjall::LsmError::Io(e) => from_io(context, &e),
        other => StorageError::Corruption {
            what: format!("{context}: {other}"),
        },
    }
}

impl FjallBackend {
    /// Open (or create) the store in `path` with the default configuration.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        Self::open_with(path, &FjallConfig::default())
    }

    /// Open (or create) the store in `path`.
    ///
    /// Errors: a read-only file system is [`StorageError::ReadOnly`], a full
    /// one [`StorageError::Full`], damaged files [`StorageError::Corruption`],
    /// a path that cannot be a directory (a file, or under a file)
    /// [`StorageError::Io`].
    pub fn open_with(path: &Path, config: &FjallConfig) -> Result<Self, StorageError> {
        if !path.exists() {
            Self::create_atomically(path, config)?;
        }
        Self::open_existing(path, config)
    }

    /// Create a new store so that a crash leaves either no store or a
    /// complete one: initialise it in `<path>.creating`, sync it, and rename
    /// it into place. A stale staging directory from an earlier crash is
    /// discarded. (fjall's own creation is not atomic: a store killed while
    /// being created could not be reopened.)
    fn create_atomically(path: &Path, config: &FjallConfig) -> Result<(), StorageError> {
        let context = format!("creating {}", path.display());
        let mut staging = path.as_os_str().to_owned();
        staging.push(".creating");
        let staging = std::path::PathBuf::from(staging);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| from_io(&context, &e))?;
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| from_io(&context, &e))?;
        }
        std::fs::create_dir(&staging).map_err(|e| from_io(&context, &e))?;
        {
            let created = Self::open_existing(&staging, config)?;
            created
                .db
                .persist(PersistMode::SyncAll)
                .map_err(|e| map_fjall(&context, e))?;
        }
        crate::fsutil::sync_dir(&staging)?;
        std::fs::rename(&staging, path).map_err(|e| from_io(&context, &e))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::fsutil::sync_dir(parent)?;
        }
        Ok(())
    }

    fn open_existing(path: &Path, config: &FjallConfig) -> Result<Self, StorageError> {
        std::fs::create_dir_all(path)
            .map_err(|e| from_io(&format!("creating {}", path.display()), &e))?;
        let context = format!("opening fjall store {}", path.display());
        let db = Database::builder(path)
            .cache_size(config.cache_size_bytes)
            .worker_threads(config.worker_threads.max(1))
            // Large values (blocks, batches) are mostly ML-DSA keys and
            // signatures, which do not compress: fjall's default lz4 of
            // journal values over 4 KiB was 1.7 % of a validator's CPU
            // samples in the README's run for no saving.
            .journal_compression(CompressionType::None)
            .open()
            .map_err(|e| map_fjall(&context, e))?;
        let mut keyspaces = Vec::with_capacity(Namespace::ALL.len());
        for ns in Namespace::ALL {
            let ks = db
                .keyspace(ns.name(), || {
                    KeyspaceCreateOptions::default().max_memtable_size(config.max_memtable_bytes)
                })
                .map_err(|e| map_fjall(&context, e))?;
            keyspaces.push((ns, ks));
        }
        Ok(FjallBackend {
            db,
            keyspaces,
            path: path.to_path_buf(),
            poison_cause: Mutex::new(None),
        })
    }

    /// The directory of the store.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn keyspace(&self, ns: Namespace) -> Result<&Keyspace, StorageError> {
        self.keyspaces
            .iter()
            .find(|(n, _)| *n == ns)
            .map(|(_, ks)| ks)
            .ok_or_else(|| StorageError::Io {
                detail: format!("keyspace {} not open", ns.name()),
            })
    }

    /// Bytes allocated on disk to the store (journals and tables), as
    /// [`crate::fsutil::dir_size`] measures them.
    pub fn disk_space(&self) -> Result<u64, StorageError> {
        crate::fsutil::dir_size(&self.path)
    }

    /// Flush every memtable to tables and compact each keyspace fully, so
    /// that deleted entries (pruning) stop occupying disk space. Blocking.
    pub fn compact(&self) -> Result<(), StorageError> {
        for (ns, ks) in &self.keyspaces {
            let context = format!("compacting {}", ns.name());
            ks.rotate_memtable_and_wait()
                .map_err(|e| map_fjall(&context, e))?;
            ks.major_compact().map_err(|e| map_fjall(&context, e))?;
        }
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| map_fjall("persisting after compaction", e))
    }

    fn poisoned_or(&self, error: StorageError) -> StorageError {
        let mut cause = self.poison_cause.lock().unwrap_or_else(|e| e.into_inner());
        match (&*cause, &error) {
            (Some(first), StorageError::Io { .. }) => first.clone(),
            (None, _) => {
                *cause = Some(error.clone());
                error
            }
            _ => error,
        }
    }
}

fn collect(iter: fjall::Iter, limit: usize, context: &str) -> Result<KeyValues, StorageError> {
    let mut out = Vec::new();
    for guard in iter.take(limit) {
        let (k, v) = guard.into_inner().map_err(|e| map_fjall(context, e))?;
        out.push((k.get(1..).unwrap_or_default().to_vec(), v.to_vec()));
    }
    Ok(out)
}

impl StateRead for FjallBackend {
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Storage);
        if key.len() > FJALL_MAX_KEY_LEN {
            return Ok(None);
        }
        self.keyspace(ns)?
            .get(stored_key(key))
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| map_fjall("get", e))
    }

    fn scan_prefix(
        &self,
        ns: Namespace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Storage);
        collect(
            self.keyspace(ns)?.prefix(stored_key(prefix)),
            limit,
            "scan_prefix",
        )
    }
}

impl StateBackend for FjallBackend {
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Storage);
        if batch.is_empty() {
            return Ok(());
        }
        let mode = match durability {
            Durability::Durable => PersistMode::SyncAll,
            Durability::Buffered => PersistMode::Buffer,
        };
        let mut fb = self.db.batch().durability(Some(mode));
        for op in batch.ops() {
            match op {
                WriteOp::Put { ns, key, value } => {
                    check_lengths(key, Some(value))?;
                    fb.insert(self.keyspace(*ns)?, stored_key(key), value.as_slice());
                }
                WriteOp::Delete { ns, key } => {
                    check_lengths(key, None)?;
                    fb.remove(self.keyspace(*ns)?, stored_key(key));
                }
            }
        }
        fb.commit()
            .map_err(|e| self.poisoned_or(map_fjall("write batch", e)))
    }

    fn snapshot(&self) -> Result<Box<dyn StateSnapshot + '_>, StorageError> {
        Ok(Box::new(FjallSnapshot {
            backend: self,
            snapshot: self.db.snapshot(),
        }))
    }

    /// A logical checkpoint: every keyspace of one MVCC snapshot is bulk
    /// loaded (sorted ingestion) into a new fjall database at `dir`, which is
    /// then fsynced. Commits continue meanwhile.
    fn checkpoint(&self, dir: &Path) -> Result<(), StorageError> {
        let context = format!("checkpoint to {}", dir.display());
        std::fs::create_dir(dir).map_err(|e| from_io(&context, &e))?;
        let snapshot = self.db.snapshot();
        let target = FjallBackend::open(dir)?;
        for (ns, ks) in &self.keyspaces {
            let out = target.keyspace(*ns)?;
            let mut ingestion = out.start_ingestion().map_err(|e| map_fjall(&context, e))?;
            for guard in snapshot.iter(ks) {
                let (k, v) = guard.into_inner().map_err(|e| map_fjall(&context, e))?;
                ingestion.write(k, v).map_err(|e| map_fjall(&context, e))?;
            }
            ingestion.finish().map_err(|e| map_fjall(&context, e))?;
        }
        target
            .db
            .persist(PersistMode::SyncAll)
            .map_err(|e| map_fjall(&context, e))?;
        drop(target);
        crate::fsutil::sync_dir(dir)?;
        Ok(())
    }
}

/// An MVCC snapshot of a [`FjallBackend`].
struct FjallSnapshot<'a> {
    backend: &'a FjallBackend,
    snapshot: fjall::Snapshot,
}

impl StateRead for FjallSnapshot<'_> {
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Storage);
        if key.len() > FJALL_MAX_KEY_LEN {
            return Ok(None);
        }
        self.snapshot
            .get(self.backend.keyspace(ns)?, stored_key(key))
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| map_fjall("snapshot get", e))
    }

    fn scan_prefix(
        &self,
        ns: Namespace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Storage);
        let ks = self.backend.keyspace(ns)?;
        collect(
            self.snapshot.prefix(ks, stored_key(prefix)),
            limit,
            "snapshot scan",
        )
    }
}

impl StateSnapshot for FjallSnapshot<'_> {
    fn scan_range(
        &self,
        ns: Namespace,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Storage);
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let ks = self.backend.keyspace(ns)?;
        let end = end.map(stored_key);
        let start = stored_key(start);
        let upper = match &end {
            Some(end) => Bound::Excluded(end.as_slice()),
            None => Bound::Unbounded,
        };
        let range: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(start.as_slice()), upper);
        collect(
            self.snapshot.range::<&[u8], _>(ks, range),
            limit,
            "snapshot range",
        )
    }
}

#[cfg(test)]
mod creation_tests {
    use super::*;

    #[test]
    fn a_crash_during_creation_leaves_no_half_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // What a kill in the middle of creating the store leaves behind.
        let staging = dir.path().join("db.creating");
        std::fs::create_dir_all(staging.join("keyspaces")).unwrap();
        std::fs::write(staging.join("partial-journal"), b"\x00\x01garbage").unwrap();
        assert!(!path.exists());
        let store = FjallBackend::open(&path).unwrap();
        let mut batch = WriteBatch::new();
        batch.put(Namespace::Meta, b"k".to_vec(), b"v".to_vec());
        store.write(batch, Durability::Durable).unwrap();
        drop(store);
        assert!(!staging.exists(), "stale staging directory not cleaned up");
        let store = FjallBackend::open(&path).unwrap();
        assert_eq!(
            store.get(Namespace::Meta, b"k").unwrap(),
            Some(b"v".to_vec())
        );
    }
}
