//! Pruning of block history (spec §2.4, runbook §5.4 and §10.4, issue #3).
//!
//! Retention modes: [`RetentionMode::Archival`] keeps everything;
//! [`RetentionMode::Height`] keeps the most recent `retain_height` committed
//! blocks (`--state-retention-mode height --state-retain-height N`; the
//! runbook's 500,000 for a validator is about 30 days of 5 s blocks, so N is
//! a count of recent blocks, not an absolute height). Below the floor
//! `committed_height - N + 1`, committed block bodies (`b'c' || height_be` in
//! `Blocks`) and their QCs (`height_be` in `QuorumCerts`) are deleted.
//! Account state is stored as current values only (no per-height versions),
//! so there is no historical state to delete; uncommitted blocks (`b'p'`)
//! belong to consensus and are never touched. The archived data of the DAG
//! batches a deleted block ordered (`b'd'` ‖ digest,
//! [`qbind_core::schema::committed_batch_key`]) is deleted with it (read
//! first, so that only records that exist are counted, bytes included).
//!
//! With [`Pruner::keeping_newest_snapshot`], the floor never passes the
//! height of the newest snapshot in a snapshot directory (its executed
//! height): a node serves that snapshot to state-sync clients with a commit
//! proof built from the blocks just above it (docs/sync.md "State sync"),
//! so those blocks stay until a newer snapshot exists.
//!
//! Work is done in bounded steps ([`Pruner::step`]: at most `step_keys`
//! block and QC deletions per batch, plus the archived batches of those
//! blocks, at most `max_batches_per_block` each). Progress is the `prune_floor` marker in `Meta`,
//! written in the same batch as the deletions, so a step never rescans
//! entries it already deleted and a crash just repeats at most one step.
//! Deleted entries stop using disk space once the backend compacts
//! ([`crate::PersistentBackend::compact`], or the backend's background
//! compaction).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use qbind_core::codec::{Decode, Encode};
use qbind_core::consensus::{Block, Payload};
use qbind_core::schema::{COMMITTED_BLOCK_PREFIX, committed_batch_key};
use qbind_core::traits::{Durability, Namespace, StateBackend, StorageError, WriteBatch};

use crate::metrics::StoreMetrics;
use crate::workload::{block_key, qc_key};

/// Key in `Meta` of the lowest height whose block is still retained.
pub const PRUNE_FLOOR_KEY: &[u8] = b"prune_floor";
/// Default deletions per step.
pub const DEFAULT_STEP_KEYS: usize = 1_000;

/// How much block history to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionMode {
    /// Keep everything (archival node).
    Archival,
    /// Keep the most recent `retain_height` committed blocks (at least 1).
    Height {
        /// Number of recent blocks kept.
        retain_height: u64,
    },
}

/// Result of one prune step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PruneProgress {
    /// Entries deleted by this step.
    pub deleted_keys: u64,
    /// Lowest retained height after this step.
    pub floor: u64,
    /// Whether everything below the target floor is gone.
    pub done: bool,
}

/// The last (snapshot directory name, executed height) a pruner read.
type SnapshotFloorCache = std::sync::Mutex<Option<(u64, u64)>>;

/// Deletes block history below the retention floor in bounded steps.
#[derive(Clone, Debug)]
pub struct Pruner {
    mode: RetentionMode,
    step_keys: usize,
    metrics: Arc<StoreMetrics>,
    /// Keep blocks from the newest snapshot here up, and the last
    /// (snapshot directory name, executed height) read.
    keep_snapshot: Option<(std::path::PathBuf, Arc<SnapshotFloorCache>)>,
}

fn height_of_block_key(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(&[COMMITTED_BLOCK_PREFIX])?;
    <[u8; 8]>::try_from(rest).ok().map(u64::from_be_bytes)
}

impl Pruner {
    /// A pruner with at most `step_keys` (raised to 4 if lower) deletions
    /// per step.
    #[must_use]
    pub fn new(mode: RetentionMode, step_keys: usize, metrics: Arc<StoreMetrics>) -> Self {
        Pruner {
            mode,
            step_keys: step_keys.max(4),
            metrics,
            keep_snapshot: None,
        }
    }

    /// Never prune past the newest snapshot in `snapshot_dir` (see the
    /// module documentation).
    #[must_use]
    pub fn keeping_newest_snapshot(mut self, snapshot_dir: std::path::PathBuf) -> Self {
        self.keep_snapshot = Some((snapshot_dir, Arc::default()));
        self
    }

    /// The executed height of the newest snapshot to keep blocks for, if
    /// any (a listing or metadata error keeps the last one read).
    fn newest_snapshot_floor(&self) -> Option<u64> {
        let (dir, cache) = self.keep_snapshot.as_ref()?;
        let newest = crate::snapshot::list_snapshots(dir).ok()?.last().copied();
        let mut cache = cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (newest, *cache) {
            (Some(name), Some((cached, keep))) if cached == name => Some(keep),
            (Some(name), _) => match crate::snapshot::read_meta(&dir.join(name.to_string())) {
                Ok(meta) => {
                    // A snapshot without an executed height (0) holds
                    // the floor at its committed height.
                    let keep = match meta.executed_height {
                        0 => name,
                        executed => executed.min(name),
                    };
                    *cache = Some((name, keep));
                    Some(keep)
                }
                Err(_) => cache.map(|(_, keep)| keep),
            },
            (None, _) => None,
        }
    }

    /// The floor the policy asks for at `committed` (heights below it go).
    #[must_use]
    pub fn target_floor(&self, committed: u64) -> u64 {
        match self.mode {
            RetentionMode::Archival => 0,
            RetentionMode::Height { retain_height } => {
                committed.saturating_sub(retain_height.max(1)) + 1
            }
        }
    }

    /// The floor recorded by earlier steps (0 if never pruned).
    pub fn current_floor<S: StateBackend + ?Sized>(store: &S) -> Result<u64, StorageError> {
        match store.get(Namespace::Meta, PRUNE_FLOOR_KEY)? {
            None => Ok(0),
            Some(bytes) => u64::from_bytes(&bytes).map_err(|e| StorageError::Corruption {
                what: format!("prune floor marker: {e}"),
            }),
        }
    }

    /// Delete up to `step_keys` entries below the target floor.
    pub fn step<S: StateBackend + ?Sized>(&self, store: &S) -> Result<PruneProgress, StorageError> {
        let started = Instant::now();
        let result = self.step_inner(store);
        match &result {
            Ok((progress, bytes)) if progress.deleted_keys > 0 => {
                self.metrics.record_prune(
                    progress.deleted_keys,
                    *bytes,
                    progress.floor,
                    started.elapsed(),
                );
            }
            Ok(_) => {}
            Err(_) => {
                self.metrics.prune_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result.map(|(p, _)| p)
    }

    fn step_inner<S: StateBackend + ?Sized>(
        &self,
        store: &S,
    ) -> Result<(PruneProgress, u64), StorageError> {
        let snap = store.snapshot()?;
        let committed = match snap.get(Namespace::Meta, qbind_core::schema::COMMITTED_HEIGHT_KEY)? {
            None => 0,
            Some(bytes) => u64::from_bytes(&bytes).map_err(|e| StorageError::Corruption {
                what: format!("committed height marker: {e}"),
            })?,
        };
        let mut target = self.target_floor(committed);
        if let Some(keep) = self.newest_snapshot_floor() {
            target = target.min(keep);
        }
        let floor = Self::current_floor(store)?;
        if target <= floor {
            return Ok((
                PruneProgress {
                    deleted_keys: 0,
                    floor,
                    done: true,
                },
                0,
            ));
        }
        let per_kind = self.step_keys / 2;
        let blocks = snap.scan_range(
            Namespace::Blocks,
            &block_key(floor),
            Some(&block_key(target)),
            per_kind,
        )?;
        let qcs = snap.scan_range(
            Namespace::QuorumCerts,
            &qc_key(floor),
            Some(&qc_key(target)),
            per_kind,
        )?;
        // Advance the floor only past heights whose block and QC are both
        // deleted in this batch.
        let full = |n: usize| n >= per_kind;
        let block_reach = if full(blocks.len()) {
            blocks
                .last()
                .and_then(|(k, _)| height_of_block_key(k))
                .unwrap_or(floor)
        } else {
            target
        };
        let qc_reach = if full(qcs.len()) {
            qcs.last()
                .and_then(|(k, _)| {
                    <[u8; 8]>::try_from(k.as_slice())
                        .ok()
                        .map(u64::from_be_bytes)
                })
                .unwrap_or(floor)
        } else {
            target
        };
        let new_floor = block_reach.min(qc_reach).min(target).max(floor);
        let mut batch = WriteBatch::new();
        let mut bytes = 0u64;
        let mut deleted = 0u64;
        for (key, value) in blocks
            .iter()
            .filter(|(k, _)| height_of_block_key(k).is_some_and(|h| h < new_floor))
        {
            bytes += (key.len() + value.len()) as u64;
            deleted += 1;
            batch.delete(Namespace::Blocks, key.clone());
            // The archived data of the batches it ordered goes with it. A
            // body that does not decode (damaged, or not a block: the
            // storage benchmarks' workload) names none and is deleted all
            // the same, so pruning never stalls on it.
            match Block::from_bytes(value) {
                Ok(block) => {
                    if let Payload::Batches(certs) = block.payload() {
                        for c in certs {
                            let key = committed_batch_key(&c.batch.digest);
                            if let Some(data) = snap.get(Namespace::Blocks, &key)? {
                                bytes += (key.len() + data.len()) as u64;
                                deleted += 1;
                                batch.delete(Namespace::Blocks, key);
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "pruned a committed block body that does not decode");
                }
            }
        }
        for (key, value) in qcs
            .iter()
            .filter(|(k, _)| k.as_slice() < qc_key(new_floor).as_slice())
        {
            bytes += (key.len() + value.len()) as u64;
            deleted += 1;
            batch.delete(Namespace::QuorumCerts, key.clone());
        }
        batch.put(
            Namespace::Meta,
            PRUNE_FLOOR_KEY.to_vec(),
            new_floor.to_bytes(),
        );
        store.write(batch, Durability::Buffered)?;
        Ok((
            PruneProgress {
                deleted_keys: deleted,
                floor: new_floor,
                done: new_floor >= target,
            },
            bytes,
        ))
    }

    /// Run steps until nothing is left below the target floor; returns the
    /// number of entries deleted.
    pub fn prune_all<S: StateBackend + ?Sized>(&self, store: &S) -> Result<u64, StorageError> {
        let mut total = 0;
        loop {
            let progress = self.step(store)?;
            total += progress.deleted_keys;
            if progress.done {
                return Ok(total);
            }
        }
    }

    /// Prune in the background: one step, then `pause` when caught up,
    /// until `stop` is set. Errors are counted and logged, and retried.
    pub fn spawn<S: StateBackend + 'static>(
        self,
        store: Arc<S>,
        pause: Duration,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match self.step(&*store) {
                    Ok(progress) if !progress.done => continue,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "prune step failed"),
                }
                std::thread::sleep(pause);
            }
        })
    }
}
