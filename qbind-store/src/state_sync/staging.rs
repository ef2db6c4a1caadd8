//! Staging verified chunks into a snapshot.
//!
//! The staged store lives in `.<data dir name>.state-sync-<pid>-<nanos>/`
//! beside the data directory (the same file system, like a restore's
//! temporary directory) and is never the node's store: it becomes a
//! snapshot, and the snapshot is restored with every check of a restore.
//! Pages are written buffered (durability only matters for what
//! [`StateSyncStaging::finish`] turns into a snapshot, and its last write is
//! durable); nothing is hashed here, the client verified each page with a
//! [`qbind_core::state_sync::ChunkVerifier`] before putting it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qbind_core::codec::Encode;
use qbind_core::consensus::Block;
use qbind_core::execution::STATE_SUMMARY_KEY;
use qbind_core::schema::{EXECUTED_HEIGHT_KEY, commit_batch, put_height};
use qbind_core::state_sync::{CertifiedState, KeyLog, MAX_PREFIX_BITS, StateManifest, StatePage};
use qbind_core::traits::{Durability, Namespace, WriteBatch};

use super::{StateSyncStoreError, chunk_range};
use crate::PersistentBackend;
use crate::error::from_io;
use crate::fsutil::{create_private_dir, ensure_private_dir, sync_dir};
use crate::metrics::StoreMetrics;
use crate::snapshot::{
    SnapshotConfig, SnapshotError, create_snapshot, qbind_block_id, remove_entry,
};

/// Infix of a staging directory: `.<data dir name>` + this +
/// `<pid>-<nanos>`, beside the data directory.
pub const STATE_SYNC_MARK: &str = ".state-sync-";

/// Name of the staged store inside the staging directory.
const STORE_DIR: &str = "state";

/// Keys deleted per batch when a chunk is discarded.
const DISCARD_PAGE: usize = 4096;

/// The staging directory: removed when dropped unless
/// [`StagingDir::remove`] already did.
#[derive(Debug)]
struct StagingDir {
    path: PathBuf,
    present: bool,
}

impl StagingDir {
    /// Remove it now, reporting failures, and sync its parent.
    fn remove(mut self) -> Result<(), StateSyncStoreError> {
        self.present = false;
        std::fs::remove_dir_all(&self.path)
            .map_err(|e| from_io(&format!("removing {}", self.path.display()), &e))?;
        if let Some(parent) = self.path.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if self.present
            && let Err(error) = std::fs::remove_dir_all(&self.path)
        {
            tracing::warn!(path = %self.path.display(), %error, "could not remove a state-sync staging directory");
        }
    }
}

/// A store being filled with verified chunks, in a private directory beside
/// the data directory; [`StateSyncStaging::finish`] makes a snapshot of it.
/// Dropped without finishing, it removes its directory.
pub struct StateSyncStaging<B: PersistentBackend> {
    // Declared before `dir` so that it is closed before the directory is
    // removed.
    store: B,
    dir: StagingDir,
    /// Accounts written per chunk since it was last discarded.
    staged: BTreeMap<u32, u64>,
}

impl<B: PersistentBackend> std::fmt::Debug for StateSyncStaging<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSyncStaging")
            .field("dir", &self.dir.path)
            .field("staged", &self.staged)
            .finish_non_exhaustive()
    }
}

impl<B: PersistentBackend> StateSyncStaging<B> {
    /// A new, empty staging for the data directory `data_dir` (which is not
    /// touched): a fresh private directory beside it, named with
    /// [`STATE_SYNC_MARK`]. The parent is created `0700` if missing.
    ///
    /// # Errors
    /// A `data_dir` without a UTF-8 name; storage errors.
    pub fn create(data_dir: &Path) -> Result<Self, StateSyncStoreError> {
        let (parent, prefix) = staging_prefix(data_dir)?;
        ensure_private_dir(&parent)?;
        let path = parent.join(format!("{prefix}{}", crate::snapshot::unique_suffix()));
        create_private_dir(&path)?;
        let dir = StagingDir {
            path,
            present: true,
        };
        let store = B::open_dir(&dir.path.join(STORE_DIR))?;
        Ok(StateSyncStaging {
            store,
            dir,
            staged: BTreeMap::new(),
        })
    }

    /// The staging directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dir.path
    }

    /// Write the accounts of a page the caller has verified (each page
    /// once; a chunk that fails later is [`discard_chunk`]ed first).
    ///
    /// [`discard_chunk`]: StateSyncStaging::discard_chunk
    ///
    /// # Errors
    /// Storage errors.
    pub fn put_page(&mut self, page: &StatePage) -> Result<(), StateSyncStoreError> {
        if page.accounts.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        for (id, account) in &page.accounts {
            batch.put(Namespace::Accounts, id.0.to_vec(), account.to_bytes());
        }
        self.store.write(batch, Durability::Buffered)?;
        let staged = self.staged.entry(page.chunk).or_default();
        *staged = staged.saturating_add(page.accounts.len() as u64);
        Ok(())
    }

    /// Delete every account staged in chunk `chunk` of `2^bits` (a chunk
    /// whose pages did not verify to the end); returns how many there were.
    ///
    /// # Errors
    /// [`StateSyncStoreError::ChunkOutOfRange`] for a chunk `2^bits` chunks
    /// do not have; storage errors.
    pub fn discard_chunk(&mut self, chunk: u32, bits: u8) -> Result<u64, StateSyncStoreError> {
        let chunks = 1usize << bits.min(MAX_PREFIX_BITS);
        if bits > MAX_PREFIX_BITS || chunk as usize >= chunks {
            return Err(StateSyncStoreError::ChunkOutOfRange { chunk, chunks });
        }
        let (mut start, end) = chunk_range(chunk, bits);
        let mut deleted = 0u64;
        {
            let snap = self.store.snapshot()?;
            loop {
                let keys =
                    snap.scan_range(Namespace::Accounts, &start, end.as_deref(), DISCARD_PAGE)?;
                let mut batch = WriteBatch::new();
                for (key, _) in &keys {
                    batch.delete(Namespace::Accounts, key.clone());
                }
                self.store.write(batch, Durability::Buffered)?;
                deleted += keys.len() as u64;
                match keys.last() {
                    Some((last, _)) if keys.len() == DISCARD_PAGE => {
                        start = last.clone();
                        start.push(0);
                    }
                    _ => break,
                }
            }
        }
        self.staged.remove(&chunk);
        tracing::info!(chunk, deleted, "discarded a state-sync chunk");
        Ok(deleted)
    }

    /// The chunks whose staged accounts are not `manifest`'s number of them
    /// (ascending; staged chunks the manifest does not have included).
    #[must_use]
    pub fn incomplete_chunks(&self, manifest: &StateManifest) -> Vec<u32> {
        incomplete(&self.staged, manifest)
    }

    /// Finish: check that `manifest` holds to `certified` and `block` is
    /// the certified block (cheap; no account is hashed) and that every
    /// chunk has the manifest's number of accounts staged; write the state
    /// summary, the committed block with its QC and the committed height
    /// ([`commit_batch`]), the executed height (both `manifest.height`) and
    /// the monetary records in one durable batch; make a snapshot of the
    /// result in `snapshot_dir` ([`create_snapshot`]: the format a node
    /// writes, epoch `certified.epoch`, no retention applied) and remove the
    /// staging directory. Returns the snapshot's path
    /// (`<snapshot_dir>/<height>`), to restore with
    /// [`crate::snapshot::restore_snapshot`] and [`super::trust_anchor`] of
    /// `certified`, which recomputes the state commitment from the
    /// accounts. On an error the staging directory is removed as well.
    ///
    /// # Errors
    /// [`StateSyncStoreError::Manifest`],
    /// [`StateSyncStoreError::BlockNotCertified`],
    /// [`StateSyncStoreError::KeyLogNotCertified`],
    /// [`StateSyncStoreError::ChunkIncomplete`]; snapshot and storage
    /// errors.
    pub fn finish(
        self,
        manifest: &StateManifest,
        block: &Block,
        certified: &CertifiedState,
        key_log: &KeyLog,
        chain_id: u64,
        snapshot_dir: &Path,
    ) -> Result<PathBuf, StateSyncStoreError> {
        let StateSyncStaging { store, dir, staged } = self;
        let sealed = (|| {
            manifest.check(certified)?;
            if block.height() != manifest.height || block.id() != certified.block_id {
                return Err(StateSyncStoreError::BlockNotCertified {
                    height: block.height().0,
                    id: block.id().to_string(),
                    certified_height: certified.height.0,
                    certified_id: certified.block_id.to_string(),
                });
            }
            if key_log.height != manifest.height
                || qbind_core::system_tx::key_log_digest(&key_log.records) != certified.key_log
            {
                return Err(StateSyncStoreError::KeyLogNotCertified {
                    records: key_log.records.len(),
                    height: key_log.height.0,
                });
            }
            if let Some(&chunk) = incomplete(&staged, manifest).first() {
                return Err(StateSyncStoreError::ChunkIncomplete {
                    chunk,
                    staged: staged.get(&chunk).copied().unwrap_or(0),
                    expected: manifest
                        .chunks
                        .get(chunk as usize)
                        .map_or(0, |c| c.accounts),
                });
            }
            let mut batch = commit_batch(block);
            put_height(&mut batch, EXECUTED_HEIGHT_KEY, manifest.height);
            // The rotations as the replica records them: the index counts
            // the ones applied in the same block.
            let mut index = 0u16;
            let mut previous = None;
            for (height, tx) in &key_log.records {
                if previous == Some(*height) {
                    index = index.saturating_add(1);
                } else {
                    index = 0;
                }
                previous = Some(*height);
                batch.put(
                    Namespace::Meta,
                    qbind_core::schema::key_rotation_key(*height, index),
                    tx.to_bytes(),
                );
            }
            batch.put(
                Namespace::Meta,
                STATE_SUMMARY_KEY.to_vec(),
                manifest.summary.to_bytes(),
            );
            for (key, value) in &manifest.monetary {
                batch.put(Namespace::Monetary, key.clone(), value.clone());
            }
            store.write(batch, Durability::Durable)?;
            let config = SnapshotConfig {
                snapshot_dir: snapshot_dir.to_path_buf(),
                interval_blocks: 0,
                max_snapshots: usize::MAX,
                chain_id,
            };
            let meta = create_snapshot(
                &store,
                &config,
                certified.epoch.0,
                &qbind_block_id,
                &StoreMetrics::default(),
            )?;
            Ok(snapshot_dir.join(meta.height.to_string()))
        })();
        drop(store);
        let path = sealed?;
        dir.remove()?;
        tracing::info!(path = %path.display(), "state sync staged into a snapshot");
        Ok(path)
    }
}

/// The chunks whose `staged` count is not `manifest`'s, ascending.
fn incomplete(staged: &BTreeMap<u32, u64>, manifest: &StateManifest) -> Vec<u32> {
    let mut out: Vec<u32> = (0u32..)
        .zip(&manifest.chunks)
        .filter(|(c, sum)| staged.get(c).copied().unwrap_or(0) != sum.accounts)
        .map(|(c, _)| c)
        .collect();
    out.extend(
        staged
            .iter()
            .filter(|(c, n)| **c as usize >= manifest.chunks.len() && **n > 0)
            .map(|(c, _)| *c),
    );
    out
}

/// The parent of `data_dir` and the prefix of its staging directories.
fn staging_prefix(data_dir: &Path) -> Result<(PathBuf, String), StateSyncStoreError> {
    let name = data_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| SnapshotError::InvalidConfig {
            detail: format!(
                "state sync target {} has no UTF-8 directory name",
                data_dir.display()
            ),
        })?;
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, format!(".{name}{STATE_SYNC_MARK}")))
}

/// Staging directories for `data_dir` that a crash or kill left behind
/// (a live [`StateSyncStaging`] of this process is listed too: call this
/// before starting one). Their contents were never verified.
///
/// # Errors
/// A `data_dir` without a UTF-8 name; listing errors.
pub fn interrupted_state_syncs(data_dir: &Path) -> Result<Vec<PathBuf>, StateSyncStoreError> {
    let (parent, prefix) = staging_prefix(data_dir)?;
    let listing = |e: &std::io::Error| from_io(&format!("listing {}", parent.display()), e);
    let entries = match std::fs::read_dir(&parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(listing(&e).into()),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| listing(&e))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Remove what [`interrupted_state_syncs`] finds; returns how many.
///
/// # Errors
/// As [`interrupted_state_syncs`]; removal errors.
pub fn remove_interrupted_state_syncs(data_dir: &Path) -> Result<usize, StateSyncStoreError> {
    let found = interrupted_state_syncs(data_dir)?;
    for path in &found {
        tracing::warn!(path = %path.display(), "removing an interrupted state-sync staging");
        remove_entry(path)?;
    }
    if let Some(parent) = found.first().and_then(|p| p.parent()) {
        sync_dir(parent)?;
    }
    Ok(found.len())
}
