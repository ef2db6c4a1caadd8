//! One validator's persistent parts: its store (opened, or restored from a
//! snapshot for fast sync), its genesis state, and the background services
//! that keep the store healthy — snapshots every `snapshot_interval` executed
//! blocks, height-based pruning, and the on-disk size gauge (runbook §5).
//!
//! Fast sync needs the operator's trust anchor and restores atomically
//! (`qbind_store::snapshot::restore_snapshot`); a store directory beside the
//! leftovers of an interrupted restore is never opened. Data and snapshot
//! directories are made private (`0700`; an existing one open to others is
//! tightened and the node says so), and temporary snapshots left by a crash
//! are removed when the services start (issue #22).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use qbind_core::traits::StateBackend;
use qbind_core::types::AccountId;
use qbind_store::fsutil::{PrivateDir, ensure_private_dir};
use qbind_store::metrics::StoreMetrics;
use qbind_store::prune::{Pruner, RetentionMode};
use qbind_store::snapshot::{
    SnapshotConfig, SnapshotMeta, TrustAnchor, interrupted_restores, prepare_snapshot_dir,
    qbind_block_id,
};

use crate::store::{NodeStore, StoreBackend};

/// Why a node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// State sync from peers failed (`--state-sync-from`).
    #[error("state sync: {0}")]
    StateSync(String),
    /// The store failed.
    #[error("state store: {0}")]
    Storage(#[from] qbind_core::traits::StorageError),
    /// A snapshot could not be restored or created.
    #[error("snapshot: {0}")]
    Snapshot(#[from] qbind_store::snapshot::SnapshotError),
    /// The genesis state could not be built.
    #[error("genesis: {0}")]
    Genesis(String),
    /// The genesis file was refused, or the store belongs to another
    /// genesis.
    #[error(transparent)]
    GenesisFile(#[from] crate::genesis::GenesisError),
    /// The consensus engine stopped with an error.
    #[error("engine: {0}")]
    Engine(#[from] qbind_core::replica::ReplicaError),
    /// `--fast-sync-snapshot-dir` was given but the data directory already
    /// holds a store: restoring would overwrite it. (A restore only ever
    /// leaves a verified store there, see [`open_store`].)
    #[error(
        "--fast-sync-snapshot-dir given but {0} already holds a store, which a restore would \
         overwrite; to replace it, move it away and start again with the same flags; to keep \
         running from it, start without --fast-sync-snapshot-dir"
    )]
    FastSyncTargetNotEmpty(PathBuf),
    /// A restore into the data directory was interrupted (killed, crashed)
    /// and left its unverified copy beside it.
    #[error(
        "a snapshot restore into {data_dir} was interrupted and left the unverified copy \
         {leftover}; the node will not start beside it. To restore again, start with \
         --fast-sync-snapshot-dir and --trusted-snapshot-anchor (the leftover is removed \
         first); to start without the snapshot, delete {leftover}"
    )]
    InterruptedRestore {
        /// The validator's store directory.
        data_dir: PathBuf,
        /// The first leftover found.
        leftover: PathBuf,
    },
    /// The data directory holds a store of another backend.
    #[error(
        "{dir} holds a {found} store, not a {asked} one: start with --db-backend {found}, or \
         use another data directory"
    )]
    WrongBackend {
        /// The store directory.
        dir: PathBuf,
        /// The backend whose files it holds.
        found: crate::store::StoreBackend,
        /// The backend asked for.
        asked: crate::store::StoreBackend,
    },
    /// This build cannot open stores of this backend.
    #[error(
        "--db-backend {0} is not in this build: build qbind-node-ref with --features rocksdb \
         (needs the system librocksdb; set ROCKSDB_LIB_DIR)"
    )]
    BackendUnavailable(crate::store::StoreBackend),
    /// Invalid command-line or configuration value.
    #[error("configuration: {0}")]
    Config(String),
    /// The signer failed under ExitOnFailure: the process must exit with
    /// this code (1).
    #[error("signer failure (ExitOnFailure): exit code {0}")]
    SignerExit(i32),
    /// An admin snapshot was asked for but the node takes none
    /// (`--snapshot-dir` not given).
    #[error("snapshots are off: start the node with --snapshot-dir")]
    SnapshotsOff,
    /// An admin prune was asked for but the node keeps every block
    /// (`--state-retention-mode archival`).
    #[error(
        "pruning is off (--state-retention-mode archival): start the node with \
         --state-retention-mode height --state-retain-height N"
    )]
    PruningOff,
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
    pub store: Arc<NodeStore>,
    /// The snapshot it was restored from (fast sync), if any.
    pub restored_from: Option<SnapshotMeta>,
}

/// Make `dir` private (`0700`), saying so if it was open to others.
fn private_dir(dir: &Path, what: &str) -> Result<(), NodeError> {
    if let PrivateDir::Tightened { was } = ensure_private_dir(dir)? {
        eprintln!(
            "{what} {} was accessible to group or others (mode {was:o}); set to 0700",
            dir.display()
        );
    }
    Ok(())
}

/// Open the store in `data_dir`; with `fast_sync` (a snapshot directory and
/// the operator's trust anchor), first restore the snapshot into it (which
/// must then be absent or empty): the snapshot's files, height, block hash
/// and state root are checked against `meta.json` and the anchor before the
/// node uses it, and the node continues from its height. The restore is
/// atomic, so `data_dir` only ever holds a verified store; leftovers of an
/// interrupted restore make a start without `fast_sync` fail
/// ([`NodeError::InterruptedRestore`]) and are removed by a start with it.
/// `data_dir` and its parent are made private (`0700`).
pub fn open_store(
    data_dir: &Path,
    fast_sync: Option<(&Path, &TrustAnchor)>,
    chain_id: u64,
    backend: StoreBackend,
) -> Result<OpenedStore, NodeError> {
    if !backend.available() {
        return Err(NodeError::BackendUnavailable(backend));
    }
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        private_dir(parent, "data directory")?;
    }
    if let Some((snapshot, anchor)) = fast_sync {
        let occupied = std::fs::read_dir(data_dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false);
        if occupied {
            return Err(NodeError::FastSyncTargetNotEmpty(data_dir.to_path_buf()));
        }
        let (store, meta) = NodeStore::restore(
            backend,
            snapshot,
            chain_id,
            anchor,
            data_dir,
            &qbind_block_id,
        )?;
        return Ok(OpenedStore {
            store: Arc::new(store),
            restored_from: Some(meta),
        });
    }
    if let Some(leftover) = interrupted_restores(data_dir)?.into_iter().next() {
        return Err(NodeError::InterruptedRestore {
            data_dir: data_dir.to_path_buf(),
            leftover,
        });
    }
    private_dir(data_dir, "store directory")?;
    Ok(OpenedStore {
        store: Arc::new(NodeStore::open(backend, data_dir)?),
        restored_from: None,
    })
}

/// Write the genesis balances if the store holds no state yet; returns
/// whether it did. Idempotent across restarts.
pub fn ensure_genesis<S: StateBackend + ?Sized>(
    store: &S,
    balances: &[(AccountId, u128)],
) -> Result<bool, NodeError> {
    qbind_core::application::TransferApplication::write_genesis(store, balances)
        .map_err(|e| NodeError::Genesis(e.to_string()))
}

/// `qbind-node init`: create the store of `index` (every validator of
/// `genesis` if `None`) under `data_dir/validator-<i>` or
/// `data_dir/full-node-<id>`, record
/// the genesis hash and write the genesis balances, with `backend`. A store already bound
/// to this genesis is left as it is; one bound to another is refused
/// ([`crate::genesis::GenesisError::StoreMismatch`]). Returns the store
/// directories.
///
/// # Errors
/// [`NodeError`].
pub fn init_data_dir(
    genesis: &crate::genesis::Genesis,
    data_dir: &Path,
    index: Option<InitTarget>,
    backend: StoreBackend,
) -> Result<Vec<PathBuf>, NodeError> {
    let n = genesis.validators.len();
    let dirs: Vec<String> = match index {
        Some(InitTarget::Validator(i)) if i < n => vec![format!("validator-{i}")],
        Some(InitTarget::Validator(i)) => {
            return Err(NodeError::Config(format!(
                "validator index {i} is not in the genesis ({n} validators)"
            )));
        }
        Some(InitTarget::FullNode(id)) if id >= n => vec![format!("full-node-{id}")],
        Some(InitTarget::FullNode(id)) => {
            return Err(NodeError::Config(format!(
                "full node id {id} is a validator's: full-node ids start at {n}"
            )));
        }
        None => (0..n).map(|i| format!("validator-{i}")).collect(),
    };
    let hash = genesis.hash();
    let balances = genesis.balances()?;
    let names = dirs;
    let mut dirs = Vec::with_capacity(names.len());
    for name in names {
        let dir = data_dir.join(name);
        let opened = open_store(&dir, None, genesis.chain_id, backend)?;
        crate::genesis::bind_store(&*opened.store, &dir, hash)?;
        ensure_genesis(&*opened.store, &balances)?;
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Which store `qbind-node init` creates (`None`: every validator's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitTarget {
    /// Validator `i`'s, `validator-<i>`.
    Validator(usize),
    /// Full node `id`'s, `full-node-<id>` (`id` at least the validator
    /// count).
    FullNode(usize),
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
    /// The storage engine (`--db-backend`).
    pub backend: StoreBackend,
}

/// The running background services of one store.
pub struct Services {
    store: Arc<NodeStore>,
    maintenance: Maintenance,
    /// The store's counters, exported on `/metrics`.
    pub metrics: Arc<StoreMetrics>,
    stop: Arc<AtomicBool>,
    pruner: Option<std::thread::JoinHandle<()>>,
    snapshot: Option<std::thread::JoinHandle<()>>,
    epoch_length: u64,
    control: StoreControl,
}

/// What the admin endpoint may do to a running node's store: take a
/// snapshot now, prune now. It works on the store the node already has
/// open (never a second writer), and shares one lock per job with the
/// background services, so a manual snapshot or prune never runs beside
/// the periodic one.
#[derive(Clone)]
pub struct StoreControl {
    store: Arc<NodeStore>,
    snapshots: Option<SnapshotConfig>,
    pruner: Option<Pruner>,
    metrics: Arc<StoreMetrics>,
    epoch_length: u64,
    snapshot_lock: Arc<Mutex<()>>,
    prune_lock: Arc<Mutex<()>>,
    /// Set when the node stops (a manual prune ends between two steps).
    stop: Arc<AtomicBool>,
}

/// What a manual prune did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Block and QC entries deleted.
    pub deleted_keys: u64,
    /// The lowest height still kept.
    pub floor: u64,
    /// Whether it reached the retention target (`false`: the node began
    /// stopping first; what was pruned stays pruned).
    pub complete: bool,
}

fn hold(lock: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    // The lock guards no data: a panic while holding it leaves nothing
    // inconsistent.
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StoreControl {
    /// Write a snapshot of the store now into the configured snapshot
    /// directory; `executed` is the node's executed height (its epoch goes
    /// into the snapshot's metadata). Waits for a periodic snapshot being
    /// written. Returns the snapshot's metadata and directory.
    ///
    /// # Errors
    /// [`NodeError::SnapshotsOff`] without `--snapshot-dir`;
    /// [`NodeError::Snapshot`] if writing failed (e.g. a snapshot of this
    /// height exists already).
    pub fn snapshot_now(&self, executed: u64) -> Result<(SnapshotMeta, PathBuf), NodeError> {
        let config = self.snapshots.as_ref().ok_or(NodeError::SnapshotsOff)?;
        let _held = hold(&self.snapshot_lock);
        let meta = self.store.create_snapshot(
            config,
            executed / self.epoch_length,
            &qbind_block_id,
            &self.metrics,
        )?;
        let path = config.snapshot_dir.join(meta.height.to_string());
        Ok((meta, path))
    }

    /// Prune the store to the configured retention now (every step until
    /// nothing below the floor is left). Waits for a background prune step
    /// in progress.
    ///
    /// # Errors
    /// [`NodeError::PruningOff`] in archival mode; [`NodeError::Storage`]
    /// if the store failed.
    pub fn prune_now(&self) -> Result<PruneOutcome, NodeError> {
        let pruner = self.pruner.as_ref().ok_or(NodeError::PruningOff)?;
        // One step at a time under the lock, as the background pruner does:
        // holding it for the whole run (minutes, the first time after an
        // archival node turns pruning on) kept a stopping node's pruner
        // thread, and so the node, from exiting (review finding).
        let mut deleted_keys = 0u64;
        let mut complete = false;
        while !self.stop.load(Ordering::Relaxed) {
            let progress = {
                let _held = hold(&self.prune_lock);
                pruner.step(&*self.store)?
            };
            deleted_keys = deleted_keys.saturating_add(progress.deleted_keys);
            if progress.done {
                complete = true;
                break;
            }
        }
        Ok(PruneOutcome {
            deleted_keys,
            floor: Pruner::current_floor(&*self.store)?,
            complete,
        })
    }

    /// The snapshot directory, if snapshots are on.
    #[must_use]
    pub fn snapshot_dir(&self) -> Option<&Path> {
        self.snapshots.as_ref().map(|c| c.snapshot_dir.as_path())
    }
}

/// Prune in the background like [`Pruner::spawn`], one step at a time
/// under `lock` (shared with [`StoreControl::prune_now`]).
fn spawn_pruner(
    pruner: Pruner,
    store: Arc<NodeStore>,
    pause: Duration,
    stop: Arc<AtomicBool>,
    lock: Arc<Mutex<()>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let step = {
                let _held = hold(&lock);
                pruner.step(&*store)
            };
            match step {
                Ok(progress) if !progress.done => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "prune step failed"),
            }
            std::thread::sleep(pause);
        }
    })
}

impl Services {
    /// Start pruning (if the retention mode asks for it) for `store`, and
    /// prepare the snapshot directory (if snapshots are on): make it and its
    /// parent private and remove the temporary snapshots a crash left
    /// (counted in `qbind_snapshot_tmp_removed_total`).
    pub fn start(
        store: Arc<NodeStore>,
        maintenance: Maintenance,
        epoch_length: u64,
    ) -> Result<Self, NodeError> {
        let metrics = Arc::new(StoreMetrics::default());
        if let Some(config) = &maintenance.snapshots {
            if let Some(parent) = config
                .snapshot_dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                private_dir(parent, "snapshot directory")?;
            }
            private_dir(&config.snapshot_dir, "snapshot directory")?;
            let removed = prepare_snapshot_dir(&config.snapshot_dir, &metrics)?;
            if removed > 0 {
                eprintln!(
                    "removed {removed} temporary snapshot(s) left in {} by a crash",
                    config.snapshot_dir.display()
                );
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let pruner = match maintenance.retention {
            RetentionMode::Archival => None,
            mode @ RetentionMode::Height { .. } => {
                let pruner = Pruner::new(
                    mode,
                    qbind_store::prune::DEFAULT_STEP_KEYS,
                    Arc::clone(&metrics),
                );
                // Blocks above the newest snapshot prove it to state-sync
                // clients (docs/sync.md "State sync").
                Some(match &maintenance.snapshots {
                    Some(config) => pruner.keeping_newest_snapshot(config.snapshot_dir.clone()),
                    None => pruner,
                })
            }
        };
        let control = StoreControl {
            store: Arc::clone(&store),
            snapshots: maintenance.snapshots.clone(),
            pruner: pruner.clone(),
            metrics: Arc::clone(&metrics),
            epoch_length: epoch_length.max(1),
            snapshot_lock: Arc::default(),
            prune_lock: Arc::default(),
            stop: Arc::clone(&stop),
        };
        let pruner = pruner.map(|p| {
            spawn_pruner(
                p,
                Arc::clone(&store),
                maintenance.prune_pause,
                Arc::clone(&stop),
                Arc::clone(&control.prune_lock),
            )
        });
        Ok(Services {
            store,
            maintenance,
            metrics,
            stop,
            pruner,
            snapshot: None,
            epoch_length: epoch_length.max(1),
            control,
        })
    }

    /// A handle for snapshots and pruning on demand (the admin endpoint).
    #[must_use]
    pub fn control(&self) -> StoreControl {
        self.control.clone()
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
        let lock = Arc::clone(&self.control.snapshot_lock);
        self.snapshot = Some(std::thread::spawn(move || {
            let _held = hold(&lock);
            match store.create_snapshot(&config, epoch, &qbind_block_id, &metrics) {
                Ok(meta) => eprintln!(
                    "snapshot at height {} written to {}; trust anchor {} (give it to \
                     --trusted-snapshot-anchor to restore this snapshot)",
                    meta.height,
                    config.snapshot_dir.join(meta.height.to_string()).display(),
                    TrustAnchor::of(&meta).map_or_else(|e| e.to_string(), |a| a.to_string())
                ),
                Err(error) => eprintln!("snapshot failed: {error}"),
            }
        }));
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

    /// Services over a fresh store in `dir` with `maintenance`.
    fn services(dir: &Path, maintenance: Maintenance) -> Services {
        let opened = open_store(&dir.join("store"), None, 1, StoreBackend::Fjall).expect("open");
        Services::start(opened.store, maintenance, 10).expect("start")
    }

    fn maintenance(snapshots: Option<SnapshotConfig>, retention: RetentionMode) -> Maintenance {
        Maintenance {
            snapshots,
            retention,
            prune_pause: Duration::from_millis(10),
            backend: StoreBackend::Fjall,
        }
    }

    #[test]
    fn on_demand_snapshots_and_prunes_need_their_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let off = services(dir.path(), maintenance(None, RetentionMode::Archival));
        let control = off.control();
        assert!(control.snapshot_dir().is_none());
        assert!(matches!(
            control.snapshot_now(0),
            Err(NodeError::SnapshotsOff)
        ));
        assert!(matches!(control.prune_now(), Err(NodeError::PruningOff)));
        off.stop();
    }

    /// With the settings on, the actions reach the open store: a store
    /// with no committed block yet has nothing to snapshot (a real
    /// snapshot is taken in tests/admin.rs) and nothing to prune.
    #[test]
    fn on_demand_snapshot_and_prune_reach_the_open_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = dir.path().join("snaps");
        let on = services(
            dir.path(),
            maintenance(
                Some(SnapshotConfig {
                    snapshot_dir: snaps.clone(),
                    interval_blocks: 1_000,
                    max_snapshots: 2,
                    chain_id: 1,
                }),
                RetentionMode::Height { retain_height: 5 },
            ),
        );
        let control = on.control();
        assert_eq!(control.snapshot_dir(), Some(snaps.as_path()));
        assert!(matches!(
            control.snapshot_now(0),
            Err(NodeError::Snapshot(
                qbind_store::snapshot::SnapshotError::NoCommittedBlock { .. }
            ))
        ));
        let pruned = control.prune_now().expect("prune");
        assert_eq!((pruned.deleted_keys, pruned.complete), (0, true));
        on.stop();
        // A prune asked of a stopping node returns at once, unfinished.
        let pruned = control.prune_now().expect("prune");
        assert_eq!((pruned.deleted_keys, pruned.complete), (0, false));
    }

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
        let reader = qbind_core::execution::BackendAccounts::new(&store);
        assert_eq!(reader.account(&alice).expect("read").balance, 50);
        assert_eq!(reader.summary().expect("summary").minted, 50);
    }

    #[test]
    fn fast_sync_refuses_to_overwrite_an_existing_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        std::fs::write(data.join("something"), b"x").expect("write");
        let anchor = TrustAnchor {
            height: 1,
            block_hash: [0; 32],
            state_root: [0; 32],
        };
        let err = open_store(
            &data,
            Some((&dir.path().join("snap"), &anchor)),
            1,
            StoreBackend::Fjall,
        )
        .err()
        .expect("refused");
        assert!(matches!(err, NodeError::FastSyncTargetNotEmpty(_)), "{err}");
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn open_store_refuses_the_leftovers_of_an_interrupted_restore() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("validator-0");
        let leftover = dir.path().join(".validator-0.restoring-1-2");
        std::fs::create_dir_all(leftover.join("keyspaces")).expect("mkdir");
        let err = open_store(&data, None, 1, StoreBackend::Fjall)
            .err()
            .expect("refused");
        assert!(
            matches!(&err, NodeError::InterruptedRestore { leftover: l, .. } if *l == leftover),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("--fast-sync-snapshot-dir") && message.contains("delete"),
            "{message}"
        );
        assert!(!data.exists(), "a store was created beside the leftover");
        // Once the operator deleted it, the node starts.
        std::fs::remove_dir_all(&leftover).expect("rm");
        assert!(open_store(&data, None, 1, StoreBackend::Fjall).is_ok());
    }

    #[test]
    fn data_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("data");
        let data = root.join("validator-0");
        drop(open_store(&data, None, 1, StoreBackend::Fjall).expect("open"));
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&data), 0o700);
        for path in [&root, &data] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        drop(open_store(&data, None, 1, StoreBackend::Fjall).expect("reopen"));
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&data), 0o700);
    }

    #[test]
    fn services_remove_temporary_snapshots_left_by_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = dir.path().join("snaps").join("validator-0");
        std::fs::create_dir_all(snaps.join(".tmp-snapshot-1-2").join("state")).expect("mkdir");
        std::fs::create_dir_all(snaps.join(".tmp-snapshot-removing-10-1-3")).expect("mkdir");
        std::fs::create_dir_all(snaps.join("10")).expect("mkdir");
        let opened = open_store(
            &dir.path().join("data").join("v"),
            None,
            1,
            StoreBackend::Fjall,
        )
        .expect("open");
        let services = Services::start(
            opened.store,
            Maintenance {
                snapshots: Some(SnapshotConfig {
                    snapshot_dir: snaps.clone(),
                    interval_blocks: 10,
                    max_snapshots: 2,
                    chain_id: 1,
                }),
                retention: RetentionMode::Archival,
                prune_pause: Duration::from_millis(10),
                backend: StoreBackend::Fjall,
            },
            10,
        )
        .expect("start");
        assert_eq!(services.metrics.read().snapshot_tmp_removed, 2);
        services.stop();
        let left: Vec<_> = std::fs::read_dir(&snaps)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("10")]);
        assert_eq!(mode(&snaps), 0o700);
        assert_eq!(mode(snaps.parent().expect("parent")), 0o700);
    }
}
