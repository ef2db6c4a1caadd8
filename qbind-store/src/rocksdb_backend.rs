//! The RocksDB backend (feature `rocksdb`; spec §2.3's MainNet store of the
//! seed system): the `rocksdb` crate `=0.20.1` linked against the system's
//! `librocksdb` (Debian's 7.8; set `ROCKSDB_LIB_DIR`).
//!
//! One column family per [`Namespace`] (named by [`Namespace::name`]); a
//! [`WriteBatch`] is one RocksDB write batch, atomic across column families
//! through the shared WAL. [`Durability::Durable`] sets `sync = true` (the
//! WAL is fsynced before the write returns); `Buffered` leaves the WAL record
//! in OS buffers (survives a process crash, not a power loss; the WAL is
//! sequential, so a later synced write makes it durable too). Checkpoints use
//! RocksDB's own `Checkpoint` (hard links plus a flushed memtable).

use std::path::{Path, PathBuf};

use qbind_core::traits::{
    Durability, KeyValues, Namespace, StateBackend, StateRead, StateSnapshot, StorageError,
    WriteBatch, WriteOp,
};
use rocksdb::{
    ColumnFamily, DB, Direction, IteratorMode, Options, ReadOptions, SnapshotWithThreadMode,
    WriteOptions,
};

use crate::PersistentBackend;
use crate::error::from_engine_message;

/// A [`StateBackend`] on a RocksDB database in one directory. A checkpoint
/// is itself a RocksDB database: open it with [`RocksDbBackend::open`].
pub struct RocksDbBackend {
    db: DB,
    path: PathBuf,
}

fn map_rocks(context: &str, error: rocksdb::Error) -> StorageError {
    let message = error.into_string();
    from_engine_message(context, &message)
}

impl RocksDbBackend {
    /// Open (or create) the store in `path`. Errors are typed like
    /// [`crate::FjallBackend::open_with`]'s.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        // RocksDB's own info LOG lives in the store's directory. On a full
        // disk its writer fails, and Debian's librocksdb (built with
        // assertions) aborts the whole process on the next line logged to
        // it (`AssertFalseAndGetStatusForPrevError`, from the write path or
        // the background error-recovery thread). Only fatal lines are
        // logged, so a full disk stays a typed `StorageError::Full`.
        opts.set_log_level(rocksdb::LogLevel::Fatal);
        let names: Vec<&str> = Namespace::ALL.iter().map(|ns| ns.name()).collect();
        let db = DB::open_cf(&opts, path, names)
            .map_err(|e| map_rocks(&format!("opening rocksdb store {}", path.display()), e))?;
        Ok(RocksDbBackend {
            db,
            path: path.to_path_buf(),
        })
    }

    /// The directory of the store.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, ns: Namespace) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(ns.name())
            .ok_or_else(|| StorageError::Io {
                detail: format!("column family {} not open", ns.name()),
            })
    }

    fn scan(
        &self,
        ns: Namespace,
        snapshot: Option<&SnapshotWithThreadMode<'_, DB>>,
        start: &[u8],
        end: Option<&[u8]>,
        prefix: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        if limit == 0 || end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let cf = self.cf(ns)?;
        let mut readopts = ReadOptions::default();
        if let Some(end) = end {
            readopts.set_iterate_upper_bound(end.to_vec());
        }
        let mode = IteratorMode::From(start, Direction::Forward);
        let iter = match snapshot {
            Some(s) => s.iterator_cf_opt(cf, readopts, mode),
            None => self.db.iterator_cf_opt(cf, readopts, mode),
        };
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(|e| map_rocks("scan", e))?;
            if prefix.is_some_and(|p| !k.starts_with(p)) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Bytes allocated on disk to the store ([`crate::fsutil::dir_size`]).
    pub fn disk_space(&self) -> Result<u64, StorageError> {
        crate::fsutil::dir_size(&self.path)
    }

    /// Flush memtables and compact every column family fully, so that
    /// deleted entries stop occupying disk space. Blocking.
    pub fn compact(&self) -> Result<(), StorageError> {
        for ns in Namespace::ALL {
            let cf = self.cf(ns)?;
            self.db
                .flush_cf(cf)
                .map_err(|e| map_rocks("flushing before compaction", e))?;
            self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }
}

impl StateRead for RocksDbBackend {
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Storage);
        self.db
            .get_cf(self.cf(ns)?, key)
            .map_err(|e| map_rocks("get", e))
    }

    fn scan_prefix(
        &self,
        ns: Namespace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Storage);
        self.scan(ns, None, prefix, None, Some(prefix), limit)
    }
}

impl StateBackend for RocksDbBackend {
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Storage);
        let mut rb = rocksdb::WriteBatch::default();
        for op in batch.ops() {
            match op {
                WriteOp::Put { ns, key, value } => rb.put_cf(self.cf(*ns)?, key, value),
                WriteOp::Delete { ns, key } => rb.delete_cf(self.cf(*ns)?, key),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(durability == Durability::Durable);
        self.db
            .write_opt(rb, &opts)
            .map_err(|e| map_rocks("write batch", e))
    }

    fn snapshot(&self) -> Result<Box<dyn StateSnapshot + '_>, StorageError> {
        Ok(Box::new(RocksSnapshot {
            backend: self,
            snapshot: self.db.snapshot(),
        }))
    }

    fn checkpoint(&self, dir: &Path) -> Result<(), StorageError> {
        let context = format!("checkpoint to {}", dir.display());
        if dir.exists() {
            return Err(StorageError::Io {
                detail: format!("{context}: directory exists"),
            });
        }
        let checkpoint =
            rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(|e| map_rocks(&context, e))?;
        checkpoint
            .create_checkpoint(dir)
            .map_err(|e| map_rocks(&context, e))?;
        crate::fsutil::sync_dir(dir)
    }
}

/// A RocksDB snapshot (sequence-number pinned view).
struct RocksSnapshot<'a> {
    backend: &'a RocksDbBackend,
    snapshot: SnapshotWithThreadMode<'a, DB>,
}

impl StateRead for RocksSnapshot<'_> {
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Storage);
        self.snapshot
            .get_cf(self.backend.cf(ns)?, key)
            .map_err(|e| map_rocks("snapshot get", e))
    }

    fn scan_prefix(
        &self,
        ns: Namespace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Storage);
        self.backend
            .scan(ns, Some(&self.snapshot), prefix, None, Some(prefix), limit)
    }
}

impl StateSnapshot for RocksSnapshot<'_> {
    fn scan_range(
        &self,
        ns: Namespace,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Storage);
        self.backend
            .scan(ns, Some(&self.snapshot), start, end, None, limit)
    }
}

impl PersistentBackend for RocksDbBackend {
    const KIND: &'static str = "rocksdb";

    fn open_dir(path: &Path) -> Result<Self, StorageError> {
        RocksDbBackend::open(path)
    }

    fn disk_space(&self) -> Result<u64, StorageError> {
        RocksDbBackend::disk_space(self)
    }

    fn compact(&self) -> Result<(), StorageError> {
        RocksDbBackend::compact(self)
    }
}
