//! Snapshots: round trip (same state root), retention, background creation
//! during commits, and clear failures on damaged files or meta.json.

use std::path::Path;
use std::sync::Arc;

use qbind_store::metrics::StoreMetrics;
use qbind_store::snapshot::{
    BlockHasher, SnapshotConfig, SnapshotError, create_snapshot, list_snapshots, restore_snapshot,
    spawn_snapshot, validate_snapshot,
};
use qbind_store::state_root::accounts_root;
use qbind_store::workload::{Workload, committed_height, verify_committed_state};
use qbind_store::{FjallBackend, PersistentBackend};
use sha3::{Digest, Sha3_256};

const CHAIN: u64 = 0x5142_4E44_4445_5600;

/// The workload's bodies are not protocol blocks; hash their bytes.
fn raw_hash(_height: u64, body: &[u8]) -> Result<[u8; 32], SnapshotError> {
    Ok(Sha3_256::digest(body).into())
}

fn config(dir: &Path, max: usize) -> SnapshotConfig {
    SnapshotConfig {
        snapshot_dir: dir.to_path_buf(),
        interval_blocks: 10,
        max_snapshots: max,
        chain_id: CHAIN,
    }
}

fn store_at<B: PersistentBackend>(path: &Path, height: u64) -> B {
    let store = B::open_dir(path).unwrap();
    let w = Workload::default();
    for h in committed_height(&store).unwrap() + 1..=height {
        w.commit(&store, h).unwrap();
    }
    store
}

fn round_trip<B: PersistentBackend>() {
    let root = tempfile::tempdir().unwrap();
    let store: B = store_at(&root.path().join("db"), 40);
    let live_root = accounts_root(&*store.snapshot().unwrap()).unwrap();
    let metrics = StoreMetrics::default();
    let cfg = config(&root.path().join("snapshots"), 5);
    let meta = create_snapshot(&store, &cfg, 3, &raw_hash, &metrics).unwrap();
    assert_eq!(meta.height, 40);
    assert_eq!(meta.epoch, 3);
    assert_eq!(meta.chain_id, "0x51424e4444455600");
    assert_eq!(meta.state_root, hex::encode(live_root));
    assert!(!meta.files.is_empty());
    assert_eq!(list_snapshots(&cfg.snapshot_dir).unwrap(), vec![40]);
    let snap_path = cfg.snapshot_dir.join("40");
    assert!(snap_path.join("meta.json").is_file() && snap_path.join("state").is_dir());

    let validated = validate_snapshot::<B>(&snap_path, CHAIN, root.path(), &raw_hash).unwrap();
    assert_eq!(validated, meta);
    let (restored, _) =
        restore_snapshot::<B>(&snap_path, CHAIN, &root.path().join("restored"), &raw_hash).unwrap();
    assert_eq!(
        accounts_root(&*restored.snapshot().unwrap()).unwrap(),
        live_root
    );
    assert_eq!(
        verify_committed_state(&Workload::default(), &restored, 40).unwrap(),
        40
    );
    // The restored node continues from the snapshot's height.
    Workload::default().commit(&restored, 41).unwrap();
    assert_eq!(committed_height(&restored).unwrap(), 41);
    assert_eq!(metrics.read().snapshots_created, 1);
    assert_eq!(metrics.read().snapshot_last_height, 40);
}

#[test]
fn fjall_snapshot_round_trip_keeps_the_state_root() {
    round_trip::<FjallBackend>();
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_snapshot_round_trip_keeps_the_state_root() {
    round_trip::<qbind_store::RocksDbBackend>();
}

#[test]
fn retention_keeps_the_newest_max_snapshots() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("db");
    let cfg = config(&root.path().join("snapshots"), 2);
    let metrics = StoreMetrics::default();
    let mut store: FjallBackend = store_at(&path, 10);
    for height in [10, 20, 30] {
        drop(store);
        store = store_at(&path, height);
        create_snapshot(&store, &cfg, 0, &raw_hash, &metrics).unwrap();
    }
    assert_eq!(list_snapshots(&cfg.snapshot_dir).unwrap(), vec![20, 30]);
    assert_eq!(metrics.read().snapshots_removed, 1);
    // No temporary directories are left behind.
    let leftovers = std::fs::read_dir(&cfg.snapshot_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(leftovers, 0);
    // A second snapshot of the same height is refused, not overwritten.
    assert!(matches!(
        create_snapshot(&store, &cfg, 0, &raw_hash, &metrics),
        Err(SnapshotError::AlreadyExists { height: 30 })
    ));
}

#[test]
fn background_snapshot_does_not_block_commits() {
    let root = tempfile::tempdir().unwrap();
    let store = Arc::new(store_at::<FjallBackend>(&root.path().join("db"), 100));
    let cfg = config(&root.path().join("snapshots"), 5);
    assert!(cfg.is_due(100) && !cfg.is_due(101));
    let hasher: Arc<BlockHasher> = Arc::new(raw_hash);
    let handle = spawn_snapshot(
        Arc::clone(&store),
        cfg.clone(),
        0,
        hasher,
        Arc::new(StoreMetrics::default()),
    );
    let w = Workload::default();
    for h in 101..=150 {
        w.commit(&*store, h).unwrap();
    }
    let meta = handle.join().unwrap().unwrap();
    // Whatever height the checkpoint captured, the snapshot is exactly it.
    assert!((100..=150).contains(&meta.height));
    let path = cfg.snapshot_dir.join(meta.height.to_string());
    let (restored, _) =
        restore_snapshot::<FjallBackend>(&path, CHAIN, &root.path().join("r"), &raw_hash).unwrap();
    verify_committed_state(&w, &restored, meta.height).unwrap();
}

/// A snapshot to damage, and the largest file of its state.
fn damaged_fixture() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let root = tempfile::tempdir().unwrap();
    let store: FjallBackend = store_at(&root.path().join("db"), 30);
    let cfg = config(&root.path().join("snapshots"), 5);
    let meta = create_snapshot(&store, &cfg, 0, &raw_hash, &StoreMetrics::default()).unwrap();
    let largest = meta
        .files
        .iter()
        .max_by_key(|(_, f)| f.size)
        .map(|(name, _)| name.clone())
        .unwrap();
    (root, cfg.snapshot_dir.join("30"), largest)
}

fn validate(root: &Path, snap: &Path) -> SnapshotError {
    validate_snapshot::<FjallBackend>(snap, CHAIN, root, &raw_hash).unwrap_err()
}

#[test]
fn truncated_file_fails_validation() {
    let (root, snap, file) = damaged_fixture();
    let path = snap.join("state").join(&file);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = validate(root.path(), &snap);
    assert!(matches!(err, SnapshotError::SizeMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&file) && err.to_string().contains("truncated"),
        "{err}"
    );
}

#[test]
fn bit_flip_fails_validation() {
    let (root, snap, file) = damaged_fixture();
    let path = snap.join("state").join(&file);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let err = validate(root.path(), &snap);
    assert!(
        matches!(err, SnapshotError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&file), "{err}");
}

#[test]
fn damaged_meta_json_fails_validation() {
    let (root, snap, file) = damaged_fixture();
    let meta_path = snap.join("meta.json");
    let original = std::fs::read_to_string(&meta_path).unwrap();

    std::fs::write(&meta_path, &original[..original.len() / 2]).unwrap();
    let err = validate(root.path(), &snap);
    assert!(matches!(err, SnapshotError::MetaInvalid { .. }), "{err}");
    assert!(err.to_string().contains("meta.json is damaged"), "{err}");

    // A valid JSON document with a forged state root: the root is recomputed.
    let mut meta: serde_json::Value = serde_json::from_str(&original).unwrap();
    meta["state_root"] = serde_json::Value::String("00".repeat(32));
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let err = validate(root.path(), &snap);
    assert!(
        matches!(err, SnapshotError::StateRootMismatch { .. }),
        "{err}"
    );

    // Another chain.
    let err =
        validate_snapshot::<FjallBackend>(&snap, CHAIN + 1, root.path(), &raw_hash).unwrap_err();
    assert!(
        matches!(err, SnapshotError::ChainIdMismatch { .. }),
        "{err}"
    );

    // Unknown field, missing file, missing meta.json.
    let mut meta: serde_json::Value = serde_json::from_str(&original).unwrap();
    meta["surprise"] = serde_json::Value::Bool(true);
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    assert!(matches!(
        validate(root.path(), &snap),
        SnapshotError::MetaInvalid { .. }
    ));
    std::fs::write(&meta_path, &original).unwrap();
    std::fs::remove_file(snap.join("state").join(&file)).unwrap();
    assert!(matches!(
        validate(root.path(), &snap),
        SnapshotError::MissingFile { .. }
    ));
    std::fs::remove_file(&meta_path).unwrap();
    assert!(matches!(
        validate(root.path(), &snap),
        SnapshotError::MetaMissing { .. }
    ));
}
