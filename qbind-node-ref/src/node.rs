//! One validator's persistent parts: its store (opened, or restored from a
//! snapshot for fast sync), its genesis state, and the background services
//! that keep the store healthy — snapshots every `snapshot_interval` executed
//! blocks, height-based pruning, and the on-disk size gauge (runbook §5).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use qbind_core::execution::{BackendAccounts, STATE_SUMMARY_KEY, credit};
use qbind_core::traits::{Durability, Namespace, StateBackend};
use qbind_core::types::AccountId;
use qbind_store::FjallBackend;
use qbind_store::metrics::StoreMetrics;
use qbind_store::prune::{Pruner, RetentionMode};
use qbind_store::snapshot::{SnapshotConfig, SnapshotMeta, qbind_block_id, restore_snapshot};

/// Why a node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store failed.
    #[error("state store: {0}")]
    Storage(#[from] qbind_core::traits::StorageError),
    /// A snapshot could not be restored or created.
    #[error("snapshot: {0}")]
    Snapshot(#[from] qbind_store::snapshot::SnapshotError),
    /// The genesis state could not be built.
    #[error("genesis: {0}")]
    Genesis(String),
    /// The consensus engine stopped with an error.
    #[error("engine: {0}")]
    Engine(#[from] qbind_core::replica::ReplicaError),
    /// `--fast-sync-snapshot-dir` was given but the data directory already
    /// holds a store: restoring would overwrite it.
    #[error(
        "--fast-sync-snapshot-dir given but {0} already holds a store; \
         move it away (or drop the flag to continue from it)"
    )]
    FastSyncTargetNotEmpty(PathBuf),
    /// Invalid command-line or configuration value.
    #[error("configuration: {0}")]
    Config(String),
    /// The signer failed under ExitOnFailure: the process must exit with
    /// this code (1).
    #[error("signer failure (ExitOnFailure): exit code {0}")]
    SignerExit(i32),
    /// Network or file I/O outside the store.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// How a store was opened.
pub struct OpenedStore {
    /// The store, shared with the snapshotter and the pruner.
    pub store: Arc<FjallBackend>,
    /// The snapshot it was restored from (fast sync), if any.
    pub restored_from: Option<SnapshotMeta>,
}

/// Open the store in `data_dir`; with `fast_sync`, first restore the
/// snapshot directory into it (which must then be absent or empty): the
/// snapshot's files, height, block hash and state root are all checked
/// before the node uses it, and the node continues from its height.
pub fn open_store(
    data_dir: &Path,
    fast_sync: Option<&Path>,
    chain_id: u64,
) -> Result<OpenedStore, NodeError> {
    if let Some(snapshot) = fast_sync {
        let occupied = std::fs::read_dir(data_dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false);
        if occupied {
            return Err(NodeError::FastSyncTargetNotEmpty(data_dir.to_path_buf()));
        }
        if let Some(parent) = data_dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| NodeError::Io {
                what: format!("creating {}", parent.display()),
                source,
            })?;
        }
        let (store, meta) =
            restore_snapshot::<FjallBackend>(snapshot, chain_id, data_dir, &qbind_block_id)?;
        return Ok(OpenedStore {
            store: Arc::new(store),
            restored_from: Some(meta),
        });
    }
    std::fs::create_dir_all(data_dir).map_err(|source| NodeError::Io {
        what: format!("creating {}", data_dir.display()),
        source,
    })?;
    Ok(OpenedStore {
        store: Arc::new(FjallBackend::open(data_dir)?),
        restored_from: None,
    })
}

/// Write the genesis balances if the store holds no state yet; returns
/// whether it did. Idempotent across restarts.
pub fn ensure_genesis<S: StateBackend + ?Sized>(
    store: &S,
    balances: &[(AccountId, u128)],
) -> Result<bool, NodeError> {
    if store.get(Namespace::Meta, STATE_SUMMARY_KEY)?.is_some() {
        return Ok(false);
    }
    let transition = credit(&BackendAccounts::new(store), balances)
        .map_err(|e| NodeError::Genesis(e.to_string()))?;
    store.write(transition.to_write_batch(), Durability::Durable)?;
    Ok(true)
}

/// Store maintenance settings (runbook §5).
#[derive(Clone, Debug)]
pub struct Maintenance {
    /// Snapshot settings; `None` disables snapshots.
    pub snapshots: Option<SnapshotConfig>,
    /// Block history retention.
    pub retention: RetentionMode,
    /// Pause between prune passes once caught up.
    pub prune_pause: Duration,
}

/// The running background services of one store.
pub struct Services {
    store: Arc<FjallBackend>,
    maintenance: Maintenance,
    /// The store's counters, exported on `/metrics`.
    pub metrics: Arc<StoreMetrics>,
    stop: Arc<AtomicBool>,
    pruner: Option<std::thread::JoinHandle<()>>,
    snapshot: Option<std::thread::JoinHandle<()>>,
    epoch_length: u64,
}

impl Services {
    /// Start pruning (if the retention mode asks for it) for `store`.
    #[must_use]
    pub fn start(store: Arc<FjallBackend>, maintenance: Maintenance, epoch_length: u64) -> Self {
        let metrics = Arc::new(StoreMetrics::default());
        let stop = Arc::new(AtomicBool::new(false));
        let pruner = match maintenance.retention {
            RetentionMode::Archival => None,
            mode @ RetentionMode::Height { .. } => Some(
                Pruner::new(
                    mode,
                    qbind_store::prune::DEFAULT_STEP_KEYS,
                    Arc::clone(&metrics),
                )
                .spawn(
                    Arc::clone(&store),
                    maintenance.prune_pause,
                    Arc::clone(&stop),
                ),
            ),
        };
        Services {
            store,
            maintenance,
            metrics,
            stop,
            pruner,
            snapshot: None,
            epoch_length: epoch_length.max(1),
        }
    }

    /// Called after each executed block: starts a background snapshot when
    /// one is due (and none is running) and refreshes the size gauge.
    pub fn on_executed(&mut self, height: u64) {
        if self.snapshot.as_ref().is_some_and(|h| h.is_finished())
            && let Some(handle) = self.snapshot.take()
        {
            let _ = handle.join();
        }
        if height.is_multiple_of(16)
            && let Ok(bytes) = self.store.disk_space()
        {
            self.metrics.set_state_size(bytes);
        }
        let Some(config) = self.maintenance.snapshots.clone() else {
            return;
        };
        if !config.is_due(height) || self.snapshot.is_some() {
            return;
        }
        let store = Arc::clone(&self.store);
        let metrics = Arc::clone(&self.metrics);
        let epoch = height / self.epoch_length;
        self.snapshot = Some(std::thread::spawn(
            move || match qbind_store::snapshot::create_snapshot(
                &*store,
                &config,
                epoch,
                &qbind_block_id,
                &metrics,
            ) {
                Ok(meta) => eprintln!(
                    "snapshot at height {} written to {}",
                    meta.height,
                    config.snapshot_dir.join(meta.height.to_string()).display()
                ),
                Err(error) => eprintln!("snapshot failed: {error}"),
            },
        ));
    }

    /// Stop the services and wait for them (an unfinished snapshot is
    /// completed first: it is complete or absent, never partial).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.pruner.take() {
            let _ = h.join();
        }
        if let Some(h) = self.snapshot.take() {
            let _ = h.join();
        }
    }
}

/// Parse `--state-retention-mode` and `--state-retain-height`.
pub fn retention_mode(mode: &str, retain_height: Option<u64>) -> Result<RetentionMode, NodeError> {
    match (mode, retain_height) {
        ("archival", None) => Ok(RetentionMode::Archival),
        ("archival", Some(_)) => Err(NodeError::Config(
            "--state-retain-height needs --state-retention-mode height".into(),
        )),
        ("height", Some(h)) if h >= 1 => Ok(RetentionMode::Height { retain_height: h }),
        ("height", _) => Err(NodeError::Config(
            "--state-retention-mode height needs --state-retain-height >= 1".into(),
        )),
        (other, _) => Err(NodeError::Config(format!(
            "unknown --state-retention-mode {other:?} (archival or height)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_flags_are_validated() {
        assert_eq!(
            retention_mode("archival", None).ok(),
            Some(RetentionMode::Archival)
        );
        assert_eq!(
            retention_mode("height", Some(100)).ok(),
            Some(RetentionMode::Height { retain_height: 100 })
        );
        assert!(retention_mode("height", None).is_err());
        assert!(retention_mode("height", Some(0)).is_err());
        assert!(retention_mode("archival", Some(5)).is_err());
        assert!(retention_mode("pruned", None).is_err());
    }

    #[test]
    fn genesis_is_written_once() {
        let store = qbind_core::traits::MemoryBackend::new();
        let alice = AccountId([1; 32]);
        assert!(ensure_genesis(&store, &[(alice, 50)]).expect("genesis"));
        assert!(!ensure_genesis(&store, &[(alice, 50)]).expect("again"));
        use qbind_core::execution::AccountReader;
        let reader = BackendAccounts::new(&store);
        assert_eq!(reader.account(&alice).expect("read").balance, 50);
        assert_eq!(reader.summary().expect("summary").minted, 50);
    }

    #[test]
    fn fast_sync_refuses_to_overwrite_an_existing_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        std::fs::write(data.join("something"), b"x").expect("write");
        let err = open_store(&data, Some(&dir.path().join("snap")), 1)
            .err()
            .expect("refused");
        assert!(matches!(err, NodeError::FastSyncTargetNotEmpty(_)), "{err}");
    }
}
