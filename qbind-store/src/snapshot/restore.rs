//! Restoring a snapshot atomically (issue #22 finding 3), and validating
//! one.
//!
//! A restore never writes the data directory before the state is verified:
//! it copies `state/` into a temporary directory beside the target
//! (`.<name>.restoring-<pid>-<nanos>`), checking every file's size and
//! checksum on the bytes it copies, opens the copy and checks the heights,
//! the block hash recomputed from the stored block and the state root
//! recomputed from the accounts (against `meta.json` and against the
//! operator's [`TrustAnchor`]), fsyncs the whole copy, renames it to the
//! target and fsyncs the parent. A failure removes the temporary directory;
//! a crash or kill leaves it behind under its recognisable name, and
//! [`interrupted_restores`] finds it so that the node refuses to start from
//! (or removes) it instead of opening a half-restored store.

use std::path::{Path, PathBuf};

use super::{
    STATE_DIR, SnapshotError, SnapshotMeta, TMP_PREFIX, TrustAnchor, chain_id_string, describe,
    files, io_err, reported_state_root, unique_suffix, verify_state,
};
use crate::PersistentBackend;
use crate::fsutil::{create_private_dir, ensure_private_dir, sync_dir, sync_tree};
use crate::metrics::StoreMetrics;
use crate::snapshot::BlockHasher;

/// Infix of the temporary directory of a restore: `.<target name>` +
/// this + `<pid>-<nanos>`, beside the target.
pub const RESTORE_MARK: &str = ".restoring-";

/// Check the parts of `meta` that need no file: format version, chain ID,
/// backend.
fn check_header(
    meta: &SnapshotMeta,
    chain_id: u64,
    backend: &'static str,
) -> Result<(), SnapshotError> {
    if meta.format_version != super::SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            found: meta.format_version,
        });
    }
    if meta.chain_id != chain_id_string(chain_id) {
        return Err(SnapshotError::ChainIdMismatch {
            expected: chain_id_string(chain_id),
            found: meta.chain_id.clone(),
        });
    }
    if meta.backend != backend {
        return Err(SnapshotError::BackendMismatch {
            expected: backend,
            found: meta.backend.clone(),
        });
    }
    Ok(())
}

/// Read and check `meta.json` and every file of the snapshot at `path`
/// (sizes, checksums, nothing missing or extra, only regular files and
/// directories); no state is opened.
pub fn verify_files(
    path: &Path,
    chain_id: u64,
    backend: &'static str,
) -> Result<SnapshotMeta, SnapshotError> {
    let meta = files::read_meta(path)?;
    check_header(&meta, chain_id, backend)?;
    files::check_state_files(&path.join(STATE_DIR), &meta.files, None)?;
    Ok(meta)
}

/// Copy and verify the snapshot at `path` into the existing empty directory
/// `into` and open it there: everything except the final rename.
fn restore_into<B: PersistentBackend>(
    path: &Path,
    chain_id: u64,
    anchor: Option<&TrustAnchor>,
    into: &Path,
    block_hash: &BlockHasher,
) -> Result<(B, SnapshotMeta), SnapshotError> {
    let (store, meta) = open_checked_copy::<B>(path, chain_id, anchor, into, block_hash)?;
    {
        let snap = store.snapshot()?;
        let summary = verify_state(&*snap)?;
        let root = hex::encode(reported_state_root(&*snap, &summary)?.as_bytes());
        if root != meta.state_root {
            return Err(SnapshotError::StateRootMismatch {
                expected: meta.state_root,
                computed: root,
            });
        }
        if let Some(anchor) = anchor {
            // `open_checked_copy` matched these two to the recomputed ones.
            let by = "recomputed from the restored state";
            anchor.check(
                "height",
                &anchor.height.to_string(),
                &meta.height.to_string(),
                by,
            )?;
            anchor.check(
                "block hash",
                &hex::encode(anchor.block_hash),
                &meta.block_hash,
                by,
            )?;
            anchor.check("state root", &hex::encode(anchor.state_root), &root, by)?;
        }
    }
    forget_executed_roots(&store)?;
    Ok((store, meta))
}

/// Delete the state roots of earlier executed heights a snapshot carries
/// (`schema::EXECUTED_ROOT_PREFIX`): its commitment does not cover them, and
/// a restored validator must check the roots proposals report only against
/// roots it computed itself (consensus §C3.7). At most 256 records.
fn forget_executed_roots<B: PersistentBackend>(store: &B) -> Result<(), SnapshotError> {
    use qbind_core::schema::EXECUTED_ROOT_PREFIX;
    use qbind_core::traits::{Durability, Namespace, WriteBatch};
    let roots = store.scan_prefix(Namespace::Meta, EXECUTED_ROOT_PREFIX, usize::MAX)?;
    if roots.is_empty() {
        return Ok(());
    }
    let mut batch = WriteBatch::new();
    for (key, _) in roots {
        batch.delete(Namespace::Meta, key);
    }
    store.write(batch, Durability::Durable)?;
    Ok(())
}

/// [`restore_into`] without the state commitment: copy and verify the
/// files of the snapshot at `path` into `into`, open the copy, and check its
/// committed and executed heights and the block hash recomputed from its
/// stored block against `meta.json` (and `meta.json` against `anchor`).
/// The caller recomputes the commitment from the accounts (a restore with
/// [`verify_state`], a state-sync server while it builds its manifest).
pub(crate) fn open_checked_copy<B: PersistentBackend>(
    path: &Path,
    chain_id: u64,
    anchor: Option<&TrustAnchor>,
    into: &Path,
    block_hash: &BlockHasher,
) -> Result<(B, SnapshotMeta), SnapshotError> {
    let meta = files::read_meta(path)?;
    check_header(&meta, chain_id, B::KIND)?;
    if let Some(anchor) = anchor {
        anchor.check_meta(&meta)?;
    }
    files::check_state_files(&path.join(STATE_DIR), &meta.files, Some(into))?;
    let store = B::open_dir(into)?;
    {
        let snap = store.snapshot()?;
        let described = describe(&*snap, block_hash)?;
        if described.height != meta.height {
            return Err(SnapshotError::HeightMismatch {
                meta: meta.height,
                state: described.height,
            });
        }
        if described.executed_height != meta.executed_height {
            return Err(SnapshotError::ExecutedHeightMismatch {
                meta: meta.executed_height,
                state: described.executed_height,
            });
        }
        let block = hex::encode(described.block_hash);
        if block != meta.block_hash {
            return Err(SnapshotError::BlockHashMismatch {
                expected: meta.block_hash,
                computed: block,
            });
        }
    }
    Ok((store, meta))
}

/// The parent of `data_dir` and the prefix of its restore directories.
fn restore_prefix(data_dir: &Path) -> Result<(PathBuf, String), SnapshotError> {
    let name = data_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| SnapshotError::InvalidConfig {
            detail: format!(
                "restore target {} has no UTF-8 directory name",
                data_dir.display()
            ),
        })?;
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, format!(".{name}{RESTORE_MARK}")))
}

/// Temporary directories of restores into `data_dir` that did not finish
/// (the process was killed or crashed): their contents were never
/// verified and must not be used as a store.
pub fn interrupted_restores(data_dir: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let (parent, prefix) = restore_prefix(data_dir)?;
    let entries = match std::fs::read_dir(&parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&parent, "listing", &e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(&parent, "listing", &e))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Remove what [`interrupted_restores`] finds; returns how many.
pub fn remove_interrupted_restores(data_dir: &Path) -> Result<usize, SnapshotError> {
    let found = interrupted_restores(data_dir)?;
    for path in &found {
        tracing::warn!(path = %path.display(), "removing an interrupted snapshot restore");
        remove_entry(path)?;
    }
    if let Some(first) = found.first()
        && let Some(parent) = first.parent()
    {
        sync_dir(parent)?;
    }
    Ok(found.len())
}

/// Remove a directory tree or a single entry, without following links.
pub(crate) fn remove_entry(path: &Path) -> Result<(), SnapshotError> {
    let is_dir = std::fs::symlink_metadata(path)
        .map(|m| m.is_dir())
        .map_err(|e| io_err(path, "stat", &e))?;
    let removed = if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(|e| io_err(path, "removing", &e))
}

/// Restore the snapshot at `path` into `data_dir` (absent or empty) and
/// open it, atomically: the copy is made and verified beside `data_dir`
/// (see the module docs) and renamed into place only once everything
/// checked out, so `data_dir` is never a partly restored or unverified
/// store. Checks: `meta.json` (bounded, only regular files), version,
/// chain ID, backend, that `meta.json` claims `anchor`, every file's size
/// and checksum, the committed and executed heights, the block hash
/// recomputed from the stored block, the state commitment recomputed from
/// the accounts ([`verify_state`]), and that the recomputed height, block
/// hash and state root are the anchor's. Leftovers of an earlier
/// interrupted restore into `data_dir` are removed first. The parent of
/// `data_dir` is created `0700` if missing.
pub fn restore_snapshot<B: PersistentBackend>(
    path: &Path,
    chain_id: u64,
    anchor: &TrustAnchor,
    data_dir: &Path,
    block_hash: &BlockHasher,
) -> Result<(B, SnapshotMeta), SnapshotError> {
    let (parent, prefix) = restore_prefix(data_dir)?;
    match std::fs::symlink_metadata(data_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(data_dir, "stat", &e)),
        Ok(m) => {
            let empty = m.is_dir()
                && std::fs::read_dir(data_dir)
                    .map_err(|e| io_err(data_dir, "listing", &e))?
                    .next()
                    .is_none();
            if !empty {
                return Err(SnapshotError::TargetNotEmpty {
                    path: data_dir.to_path_buf(),
                });
            }
        }
    }
    ensure_private_dir(&parent)?;
    remove_interrupted_restores(data_dir)?;
    let tmp = parent.join(format!("{prefix}{}", unique_suffix()));
    create_private_dir(&tmp)?;
    let staged = restore_into::<B>(path, chain_id, Some(anchor), &tmp, block_hash).and_then(
        |(store, meta)| {
            // Close the store before it moves: its files are reopened at the
            // new path.
            drop(store);
            sync_tree(&tmp)?;
            Ok(meta)
        },
    );
    let meta = match staged {
        Ok(meta) => meta,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // Replaces `data_dir` if it is an empty directory.
    if let Err(e) = std::fs::rename(&tmp, data_dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(io_err(data_dir, "renaming the verified restore to", &e));
    }
    sync_dir(&parent)?;
    tracing::info!(height = meta.height, path = %data_dir.display(), "snapshot restored");
    Ok((B::open_dir(data_dir)?, meta))
}

/// Fully validate the snapshot at `path` (`qbind-snapshot validate`):
/// everything [`restore_snapshot`] checks, restoring into a scratch
/// directory under `scratch` that is removed afterwards. Without an
/// `anchor` this shows only that the snapshot is intact and
/// self-consistent, not that it is the chain's state.
pub fn validate_snapshot<B: PersistentBackend>(
    path: &Path,
    chain_id: u64,
    anchor: Option<&TrustAnchor>,
    scratch: &Path,
    block_hash: &BlockHasher,
) -> Result<SnapshotMeta, SnapshotError> {
    let target = scratch.join(format!("{TMP_PREFIX}validate-{}", unique_suffix()));
    create_private_dir(&target)?;
    let result =
        restore_into::<B>(path, chain_id, anchor, &target, block_hash).map(|(store, meta)| {
            drop(store);
            meta
        });
    let _ = std::fs::remove_dir_all(&target);
    result
}

/// Prepare the snapshot directory `dir` when a node starts (issue #22
/// finding 6): create it `0700` or tighten it (logged), and remove the
/// temporary directories (`.tmp-snapshot-*`) that a crash during snapshot
/// creation, retention or validation left behind, counting them in
/// [`StoreMetrics::snapshot_tmp_removed`]. Returns how many were removed.
pub fn prepare_snapshot_dir(dir: &Path, metrics: &StoreMetrics) -> Result<usize, SnapshotError> {
    if let crate::fsutil::PrivateDir::Tightened { was } = ensure_private_dir(dir)? {
        tracing::warn!(path = %dir.display(), was = format!("{was:o}"), "snapshot directory was accessible to others; set to 0700");
    }
    let entries = std::fs::read_dir(dir).map_err(|e| io_err(dir, "listing", &e))?;
    let mut removed = 0usize;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, "listing", &e))?;
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            let path = entry.path();
            tracing::warn!(path = %path.display(), "removing a temporary snapshot left by a crash");
            remove_entry(&path)?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
        metrics
            .snapshot_tmp_removed
            .fetch_add(removed as u64, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(removed)
}
