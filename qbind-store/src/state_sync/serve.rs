//! Serving one snapshot's accounts in chunks.
//!
//! The snapshot directory is never opened as a store: opening a fjall or
//! RocksDB database writes to its directory (journal, lock and log files),
//! which would break the checksums in its `meta.json`, and
//! [`PersistentBackend`] has no read-only open. The server therefore
//! works on a private copy, made the way a restore makes one (every file's
//! size and SHA3-256 checked on the bytes copied, then the heights and the
//! block hash), in `<snapshot_dir>/.tmp-snapshot-serve-<pid>-<nanos>`; it
//! is removed when the server is dropped, and after a crash by
//! [`crate::snapshot::prepare_snapshot_dir`]. The cost is one copy of the
//! snapshot's files per server (for RocksDB its table files, for fjall its
//! whole database) and the disk space for it while the server lives.

use std::path::{Path, PathBuf};

use qbind_core::schema::committed_block_key;
use qbind_core::state_sync::{
    KeyLog, MAX_MONETARY_RECORD_BYTES, MAX_PAGE_ACCOUNTS, ManifestBuilder, StateManifest,
    StatePage, chunk_of,
};
use qbind_core::traits::{KeyValues, Namespace, StateSnapshot};
use qbind_core::types::{AccountId, Hash32, Height};

use super::{StateSyncStoreError, check_chunk, chunk_range};
use crate::PersistentBackend;
use crate::fsutil::create_private_dir;
use crate::snapshot::{
    SnapshotError, SnapshotMeta, TMP_PREFIX, TrustAnchor, decode_account, open_checked_copy,
    qbind_block_id, reported_state_root, stored_summary, unique_suffix,
};

/// Accounts read per range read while building the manifest.
const SCAN_PAGE: usize = 4096;

/// A directory removed when dropped (after the store in it: the server's
/// fields drop in declaration order).
#[derive(Debug)]
struct PrivateCopy(PathBuf);

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(path = %self.0.display(), %error, "could not remove a served snapshot's private copy");
        }
    }
}

/// Serves the accounts of one snapshot to state-sync clients: its
/// [`StateManifest`] and pages of each chunk.
pub struct SnapshotServer<B: PersistentBackend> {
    // Declared before `copy` so that it is closed before the copy is
    // removed.
    store: B,
    copy: PrivateCopy,
    meta: SnapshotMeta,
    manifest: StateManifest,
    key_log: KeyLog,
}

impl<B: PersistentBackend> std::fmt::Debug for SnapshotServer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotServer")
            .field("height", &self.meta.height)
            .field("copy", &self.copy.0)
            .field("chunks", &self.manifest.chunks.len())
            .finish_non_exhaustive()
    }
}

impl<B: PersistentBackend> SnapshotServer<B> {
    /// Open the snapshot at `snapshot_path` (`<snapshot_dir>/<height>`) of
    /// chain `chain_id`: copy it privately checking every file (see the
    /// module documentation), check its heights and the protocol block id
    /// of its stored block against `meta.json`, and build the manifest
    /// from every account (each a 32-byte id with a decodable, non-empty
    /// account) and the two `Monetary` records execution reads. The manifest's chunks must add
    /// up to the stored summary, whose root must be `meta.json`'s: the same
    /// state commitment check as a restore, done in the same pass.
    ///
    /// The manifest describes the snapshot's executed height (`meta.json`'s
    /// `executed_height`) and the block committed there: the height whose
    /// state the accounts are. It is the snapshot's height unless execution
    /// lagged the commit when the snapshot was taken.
    ///
    /// # Errors
    /// [`StateSyncStoreError::Snapshot`] for a snapshot that is damaged, of
    /// another chain or backend, whose stored block is not a protocol
    /// block, or that lacks the block of its executed height;
    /// [`StateSyncStoreError::Manifest`] if its accounts do not add
    /// up to its summary; the monetary-record bounds of a manifest.
    pub fn open(snapshot_path: &Path, chain_id: u64) -> Result<Self, StateSyncStoreError> {
        let parent = match snapshot_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = parent.join(format!("{TMP_PREFIX}serve-{}", unique_suffix()));
        create_private_dir(&dir)?;
        let copy = PrivateCopy(dir);
        let (store, meta) =
            open_checked_copy::<B>(snapshot_path, chain_id, None, &copy.0, &qbind_block_id)?;
        let (manifest, key_log) = {
            let snap = store.snapshot()?;
            let manifest = build_manifest(&*snap, &meta)?;
            // Checked by the root with the manifest: `build_manifest` held
            // the summary and these records to meta.json's root.
            let records = qbind_core::schema::read_key_rotations(&*snap).map_err(|e| {
                SnapshotError::KeyLogUnreadable {
                    detail: e.to_string(),
                }
            })?;
            let key_log = KeyLog {
                height: manifest.height,
                records,
            };
            (manifest, key_log)
        };
        tracing::info!(
            height = meta.height,
            accounts = manifest.summary.accounts,
            chunks = manifest.chunks.len(),
            "serving snapshot for state sync"
        );
        Ok(SnapshotServer {
            store,
            copy,
            meta,
            manifest,
            key_log,
        })
    }

    /// The manifest of the snapshot.
    #[must_use]
    pub fn manifest(&self) -> &StateManifest {
        &self.manifest
    }

    /// The on-chain key rotations the snapshot records, to its manifest's
    /// height ([`KeyLog`]).
    #[must_use]
    pub fn key_log(&self) -> &KeyLog {
        &self.key_log
    }

    /// The snapshot's `meta.json`, as verified.
    #[must_use]
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Up to `min(max, MAX_PAGE_ACCOUNTS)` accounts of chunk `chunk` (at
    /// least one) with ids above `after` (from the chunk's start if
    /// `None`), ascending; `last` says whether the chunk ends with this
    /// page. One range read of at most one account more than the page.
    ///
    /// # Errors
    /// [`StateSyncStoreError::ChunkOutOfRange`],
    /// [`StateSyncStoreError::AfterOutsideChunk`] for a request no honest
    /// client makes; storage errors.
    pub fn page(
        &self,
        chunk: u32,
        after: Option<AccountId>,
        max: u32,
    ) -> Result<StatePage, StateSyncStoreError> {
        check_chunk(&self.manifest, chunk)?;
        let bits = self.manifest.prefix_bits;
        let (mut start, end) = chunk_range(chunk, bits);
        if let Some(after) = after {
            if chunk_of(&after, bits) != chunk {
                return Err(StateSyncStoreError::AfterOutsideChunk {
                    chunk,
                    after: hex::encode(after.0),
                });
            }
            // The smallest key above `after`.
            start = after.0.to_vec();
            start.push(0);
        }
        let want = max.clamp(1, MAX_PAGE_ACCOUNTS) as usize;
        let mut entries = self.store.snapshot()?.scan_range(
            Namespace::Accounts,
            &start,
            end.as_deref(),
            want + 1,
        )?;
        let last = entries.len() <= want;
        entries.truncate(want);
        let accounts = entries
            .iter()
            .map(|(key, value)| decode_account(key, value))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StatePage {
            height: self.manifest.height,
            chunk,
            accounts,
            last,
        })
    }
}

/// The manifest of the state in `snap`, described by `meta` (checked
/// against it).
///
/// The accounts and the summary are the state after the executed height
/// (written atomically with its marker), which is the committed height
/// unless execution lagged the commit when the snapshot was taken; the
/// manifest describes that height and the block committed there.
fn build_manifest(
    snap: &dyn StateSnapshot,
    meta: &SnapshotMeta,
) -> Result<StateManifest, StateSyncStoreError> {
    let claimed = TrustAnchor::of(meta)?;
    let summary = stored_summary(snap)?;
    let root = reported_state_root(snap, &summary)?;
    if root.0 != claimed.state_root {
        return Err(SnapshotError::StateRootMismatch {
            expected: meta.state_root.clone(),
            computed: hex::encode(root.0),
        }
        .into());
    }
    let height = meta.executed_height;
    let block_id = if height == meta.height {
        claimed.block_hash
    } else {
        let body = snap
            .get(Namespace::Blocks, &committed_block_key(height))?
            .ok_or(SnapshotError::NoCommittedBlock { height })?;
        qbind_block_id(height, &body)?
    };
    let mut builder = ManifestBuilder::new(
        Height(height),
        Hash32(block_id),
        summary,
        monetary_records(snap)?,
    );
    let mut start: Vec<u8> = Vec::new();
    loop {
        let page = snap.scan_range(Namespace::Accounts, &start, None, SCAN_PAGE)?;
        for (key, value) in &page {
            let (id, account) = decode_account(key, value)?;
            builder.add(&id, &account);
        }
        match page.last() {
            Some((last, _)) if page.len() == SCAN_PAGE => {
                start = last.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    Ok(builder.finish()?)
}

/// The `Monetary` records a manifest carries: the two execution reads
/// (`qbind_core::state_sync::CONSENSUS_MONETARY_KEYS`), each within the
/// bound a manifest carries. The per-epoch history is not read.
fn monetary_records(snap: &dyn StateSnapshot) -> Result<KeyValues, StateSyncStoreError> {
    let bound = MAX_MONETARY_RECORD_BYTES as usize;
    let mut records = Vec::new();
    for key in qbind_core::state_sync::CONSENSUS_MONETARY_KEYS {
        if let Some(value) = snap.get(Namespace::Monetary, key)? {
            if value.len() > bound {
                return Err(StateSyncStoreError::MonetaryRecordTooLarge {
                    key: hex::encode(key),
                    len: value.len(),
                    limit: MAX_MONETARY_RECORD_BYTES,
                });
            }
            records.push((key.to_vec(), value));
        }
    }
    records.sort();
    Ok(records)
}
