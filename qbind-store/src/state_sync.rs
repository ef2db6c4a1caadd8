//! The store's side of state sync (issue #18; docs/storage.md "State sync
//! serving and staging"): serving a snapshot's accounts in chunks, and
//! staging verified chunks into a snapshot that the ordinary restore
//! accepts.
//!
//! The protocol — the chunk layout, the manifest, page verification, the
//! commit proof — is `qbind_core::state_sync` and decides everything about
//! what a peer sent. This module only does the I/O around it:
//!
//! - [`SnapshotServer`] opens one snapshot (`<snapshot_dir>/<height>`) from
//!   a private, checksum-verified copy (the snapshot directory is never
//!   written), builds its [`StateManifest`] once by reading every account
//!   and the `Monetary` records, and answers page requests with one bounded
//!   range read each.
//! - [`StateSyncStaging`] writes the pages a client verified into a fresh
//!   store in a private directory beside the data directory, deletes a
//!   chunk that later fails verification, and at the end writes the state
//!   summary, the height markers, the certified block, the monetary
//!   records and the on-chain key rotations of the certified key log, and
//!   makes an ordinary snapshot of the result
//!   ([`crate::snapshot::create_snapshot`]). The node then restores it with
//!   [`crate::snapshot::restore_snapshot`] and the trust anchor taken from
//!   the commit proof ([`trust_anchor`]), which recomputes the state
//!   commitment from the accounts once more before anything becomes the
//!   node's store.
//!
//! A staging directory left by a crash is named
//! `.<data dir name>`[`STATE_SYNC_MARK`]`<pid>-<nanos>` beside the data
//! directory; [`interrupted_state_syncs`] finds and
//! [`remove_interrupted_state_syncs`] removes such leftovers. A server's
//! private copy is a `.tmp-snapshot-serve-*` directory in the snapshot
//! directory, which [`crate::snapshot::prepare_snapshot_dir`] removes after
//! a crash like any other temporary snapshot.

use std::path::{Path, PathBuf};

use qbind_core::state_sync::{CertifiedState, StateManifest};
use qbind_core::traits::StorageError;

use crate::snapshot::{SnapshotError, TrustAnchor, list_snapshots};

mod serve;
mod staging;

pub use serve::SnapshotServer;
pub use staging::{
    STATE_SYNC_MARK, StateSyncStaging, interrupted_state_syncs, remove_interrupted_state_syncs,
};

/// Why a snapshot could not be served or a state-sync staging could not be
/// written or finished.
#[derive(Debug, thiserror::Error)]
pub enum StateSyncStoreError {
    /// The store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The snapshot could not be read or verified, or the staged state
    /// could not be made into one.
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    /// The served snapshot's accounts do not add up to its own summary, or
    /// [`StateSyncStaging::finish`] was given a manifest that does not hold
    /// to the certified state.
    #[error("state sync: {0}")]
    Manifest(#[from] qbind_core::state_sync::StateSyncError),
    /// A page was asked of a chunk the manifest does not have.
    #[error("chunk {chunk} is out of range: the manifest has {chunks} chunks")]
    ChunkOutOfRange {
        /// The chunk asked for.
        chunk: u32,
        /// How many chunks there are.
        chunks: usize,
    },
    /// A page was asked to start after an account of another chunk.
    #[error("account {after} is not in chunk {chunk}")]
    AfterOutsideChunk {
        /// The chunk asked for.
        chunk: u32,
        /// The account id given, hex.
        after: String,
    },
    /// A monetary record is larger than a manifest carries.
    #[error("monetary record {key} has a key or value of {len} bytes, more than {limit}")]
    MonetaryRecordTooLarge {
        /// Its key, hex (at most 64 bytes of it).
        key: String,
        /// The larger of key and value length.
        len: usize,
        /// `MAX_MONETARY_RECORD_BYTES`.
        limit: u32,
    },
    /// The block given to [`StateSyncStaging::finish`] is not the certified
    /// one.
    #[error(
        "the block given is height {height} id {id}; the certified state is height \
         {certified_height} block {certified_id}"
    )]
    BlockNotCertified {
        /// Its height.
        height: u64,
        /// Its id, hex.
        id: String,
        /// The certified height.
        certified_height: u64,
        /// The certified block id, hex.
        certified_id: String,
    },
    /// The key log given to [`StateSyncStaging::finish`] is not the one the
    /// certified state commits to.
    #[error("the key log given ({records} records to height {height}) is not the certified one")]
    KeyLogNotCertified {
        /// Its number of records.
        records: usize,
        /// The height it runs to.
        height: u64,
    },
    /// A chunk's staged accounts are not the manifest's number of them (a
    /// chunk was never fetched, or a failed one was not discarded).
    #[error("chunk {chunk} has {staged} accounts staged, the manifest counts {expected}")]
    ChunkIncomplete {
        /// The chunk.
        chunk: u32,
        /// Accounts written for it.
        staged: u64,
        /// Accounts the manifest counts.
        expected: u64,
    },
}

/// The snapshot with the highest height in `snapshot_dir`
/// (`<snapshot_dir>/<height>`), if there is one: the one a node serves.
pub fn newest_snapshot(snapshot_dir: &Path) -> Result<Option<PathBuf>, SnapshotError> {
    Ok(list_snapshots(snapshot_dir)?
        .last()
        .map(|height| snapshot_dir.join(height.to_string())))
}

/// The trust anchor a restore of a state-synced snapshot takes: the
/// height, block and state root a commit proof certified.
#[must_use]
pub fn trust_anchor(certified: &CertifiedState) -> TrustAnchor {
    TrustAnchor {
        height: certified.height.0,
        block_hash: certified.block_id.0,
        state_root: certified.state_root.0,
    }
}

/// Whether `manifest`'s chunk `chunk` exists (its index is in range).
fn check_chunk(manifest: &StateManifest, chunk: u32) -> Result<(), StateSyncStoreError> {
    if (chunk as usize) < manifest.chunks.len() {
        Ok(())
    } else {
        Err(StateSyncStoreError::ChunkOutOfRange {
            chunk,
            chunks: manifest.chunks.len(),
        })
    }
}

/// The key range `[start, end)` of chunk `chunk` of `2^bits` in
/// `Accounts` (`end = None`: the last chunk, to the end of the namespace).
fn chunk_range(chunk: u32, bits: u8) -> (Vec<u8>, Option<Vec<u8>>) {
    use qbind_core::state_sync::{MAX_PREFIX_BITS, chunk_start};
    let chunks = 1u64 << bits.min(MAX_PREFIX_BITS);
    let start = chunk_start(chunk, bits).0.to_vec();
    let end = (u64::from(chunk) + 1 < chunks).then(|| chunk_start(chunk + 1, bits).0.to_vec());
    (start, end)
}
