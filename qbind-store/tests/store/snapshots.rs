//! Snapshots: round trip (same protocol state root), retention, background
//! creation during commits, and clear failures on damaged files, a damaged
//! meta.json, and state altered inside a snapshot whose checksums were
//! recomputed (the state commitment check catches it).

use std::path::Path;
use std::sync::Arc;

use qbind_core::codec::Encode;
use qbind_core::execution::{
    Account, AccountReader, BackendAccounts, STATE_SUMMARY_KEY, StateSummary,
};
use qbind_core::traits::{Durability, Namespace, StateBackend, WriteBatch};
use qbind_store::metrics::StoreMetrics;
use qbind_store::snapshot::{
    BlockHasher, SnapshotConfig, SnapshotError, SnapshotMeta, TrustAnchor, checksum_state_dir,
    create_snapshot, list_snapshots, read_meta, restore_snapshot, spawn_snapshot,
    validate_snapshot, verify_state,
};
use qbind_store::workload::{
    Workload, account_id, committed_height, summary_at, verify_committed_state,
};
use qbind_store::{FjallBackend, PersistentBackend};
use sha3::{Digest, Sha3_256};

pub(crate) const CHAIN: u64 = 0x5142_4E44_4445_5600;

/// The workload's bodies are not protocol blocks; hash their bytes.
pub(crate) fn raw_hash(_height: u64, body: &[u8]) -> Result<[u8; 32], SnapshotError> {
    Ok(Sha3_256::digest(body).into())
}

pub(crate) fn config(dir: &Path, max: usize) -> SnapshotConfig {
    SnapshotConfig {
        snapshot_dir: dir.to_path_buf(),
        interval_blocks: 10,
        max_snapshots: max,
        chain_id: CHAIN,
    }
}

/// The anchor the node that wrote the snapshot at `snap` prints (trusted
/// here: the test wrote it).
pub(crate) fn anchor_of(snap: &Path) -> TrustAnchor {
    TrustAnchor::of(&read_meta(snap).unwrap()).unwrap()
}

pub(crate) fn store_at<B: PersistentBackend>(path: &Path, height: u64) -> B {
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
    let live_summary = BackendAccounts::new(&store).summary().unwrap();
    let live_root = live_summary.root();
    // The store holds the protocol's state: the summary the execution types
    // produce, consistent with the accounts.
    assert_eq!(live_summary, summary_at(&Workload::default(), 40).unwrap());
    assert_eq!(
        verify_state(&*store.snapshot().unwrap()).unwrap(),
        live_summary
    );
    let metrics = StoreMetrics::default();
    let cfg = config(&root.path().join("snapshots"), 5);
    let meta = create_snapshot(&store, &cfg, 3, &raw_hash, &metrics).unwrap();
    assert_eq!(meta.height, 40);
    assert_eq!(meta.epoch, 3);
    assert_eq!(meta.executed_height, 40);
    assert_eq!(meta.chain_id, "0x51424e4444455600");
    assert_eq!(meta.state_root, hex::encode(live_root.as_bytes()));
    assert!(!meta.files.is_empty());
    assert_eq!(list_snapshots(&cfg.snapshot_dir).unwrap(), vec![40]);
    let snap_path = cfg.snapshot_dir.join("40");
    assert!(snap_path.join("meta.json").is_file() && snap_path.join("state").is_dir());

    let anchor = TrustAnchor::of(&meta).unwrap();
    assert_eq!(anchor.height, 40);
    assert_eq!(anchor.state_root, *live_root.as_bytes());
    let validated =
        validate_snapshot::<B>(&snap_path, CHAIN, Some(&anchor), root.path(), &raw_hash).unwrap();
    assert_eq!(validated, meta);
    let (restored, _) = restore_snapshot::<B>(
        &snap_path,
        CHAIN,
        &anchor,
        &root.path().join("restored"),
        &raw_hash,
    )
    .unwrap();
    assert_eq!(
        BackendAccounts::new(&restored).summary().unwrap().root(),
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
    let (restored, _) = restore_snapshot::<FjallBackend>(
        &path,
        CHAIN,
        &anchor_of(&path),
        &root.path().join("r"),
        &raw_hash,
    )
    .unwrap();
    verify_committed_state(&w, &restored, meta.height).unwrap();
}

/// A snapshot to damage, and the largest file of its state.
pub(crate) fn damaged_fixture() -> (tempfile::TempDir, std::path::PathBuf, String) {
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
    validate_snapshot::<FjallBackend>(snap, CHAIN, None, root, &raw_hash).unwrap_err()
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
    let err = validate_snapshot::<FjallBackend>(&snap, CHAIN + 1, None, root.path(), &raw_hash)
        .unwrap_err();
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

/// Apply `batch` to the state inside the snapshot at `snap` and recompute
/// its file checksums in meta.json, as a forger (or a bug) that rewrites the
/// state consistently would: only the state checks can catch it.
fn tamper(snap: &Path, batch: WriteBatch) {
    let state = snap.join("state");
    {
        let store = FjallBackend::open(&state).unwrap();
        store.write(batch, Durability::Durable).unwrap();
    }
    let meta_path = snap.join("meta.json");
    let mut meta: SnapshotMeta =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta.files = checksum_state_dir(&state).unwrap();
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
}

/// The summary stored in the snapshot's state.
fn snapshot_summary(snap: &Path) -> StateSummary {
    let store = FjallBackend::open(&snap.join("state")).unwrap();
    BackendAccounts::new(&store).summary().unwrap()
}

#[test]
fn altered_account_with_recomputed_checksums_fails_the_accumulator_check() {
    let (root, snap, _) = damaged_fixture();
    // Unchanged, it validates.
    let anchor = anchor_of(&snap);
    validate_snapshot::<FjallBackend>(&snap, CHAIN, Some(&anchor), root.path(), &raw_hash).unwrap();
    let id = account_id(7);
    let store = FjallBackend::open(&snap.join("state")).unwrap();
    let mut account = BackendAccounts::new(&store).account(&id).unwrap();
    drop(store);
    assert!(!account.is_empty());
    // Move one unit from nothing: the account set no longer sums to the
    // stored accumulator.
    account.balance += 1;
    let mut batch = WriteBatch::new();
    batch.put(Namespace::Accounts, id.0.to_vec(), account.to_bytes());
    tamper(&snap, batch);
    let err = validate(root.path(), &snap);
    assert!(
        matches!(err, SnapshotError::AccumulatorMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("accumulator"), "{err}");
    // Restoring is refused the same way and leaves no data directory.
    let target = root.path().join("restored");
    let err = restore_snapshot::<FjallBackend>(&snap, CHAIN, &anchor, &target, &raw_hash)
        .err()
        .unwrap();
    assert!(matches!(err, SnapshotError::AccumulatorMismatch { .. }));
    assert!(!target.exists());
    assert!(
        qbind_store::snapshot::interrupted_restores(&target)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn malformed_account_entries_are_typed_corruption_errors() {
    // A key that is not a 32-byte id.
    let (root, snap, _) = damaged_fixture();
    let mut batch = WriteBatch::new();
    batch.put(
        Namespace::Accounts,
        b"short".to_vec(),
        Account {
            nonce: 1,
            balance: 1,
        }
        .to_bytes(),
    );
    tamper(&snap, batch);
    let err = validate(root.path(), &snap);
    assert!(
        matches!(err, SnapshotError::BadAccountKey { len: 5, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&hex::encode(b"short")), "{err}");

    // A value that is not an account.
    let (root, snap, _) = damaged_fixture();
    let mut batch = WriteBatch::new();
    batch.put(Namespace::Accounts, account_id(3).0.to_vec(), vec![1, 2, 3]);
    tamper(&snap, batch);
    let err = validate(root.path(), &snap);
    assert!(
        matches!(err, SnapshotError::AccountUndecodable { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&hex::encode(account_id(3).0)),
        "{err}"
    );

    // An empty account stored (the protocol deletes those).
    let (root, snap, _) = damaged_fixture();
    let mut batch = WriteBatch::new();
    batch.put(
        Namespace::Accounts,
        [0xEE; 32].to_vec(),
        Account::default().to_bytes(),
    );
    tamper(&snap, batch);
    assert!(matches!(
        validate(root.path(), &snap),
        SnapshotError::EmptyAccountStored { .. }
    ));

    // A summary that does not decode.
    let (root, snap, _) = damaged_fixture();
    let mut batch = WriteBatch::new();
    batch.put(Namespace::Meta, STATE_SUMMARY_KEY.to_vec(), vec![0u8; 7]);
    tamper(&snap, batch);
    assert!(matches!(
        validate(root.path(), &snap),
        SnapshotError::SummaryUndecodable { .. }
    ));
}

#[test]
fn summary_that_disagrees_with_the_accounts_fails_its_own_check() {
    // Wrong account count (accumulator still right).
    let (root, snap, _) = damaged_fixture();
    let mut summary = snapshot_summary(&snap);
    summary.accounts += 1;
    let mut batch = WriteBatch::new();
    batch.put(
        Namespace::Meta,
        STATE_SUMMARY_KEY.to_vec(),
        summary.to_bytes(),
    );
    tamper(&snap, batch);
    let err = validate(root.path(), &snap);
    assert!(
        matches!(
            err,
            SnapshotError::AccountCountMismatch {
                summary: 2_001,
                counted: 2_000
            }
        ),
        "{err}"
    );

    // Supply counters that do not match the balances.
    let (root, snap, _) = damaged_fixture();
    let mut summary = snapshot_summary(&snap);
    let (minted, burned) = (summary.minted, summary.burned);
    summary.minted += 5;
    let mut batch = WriteBatch::new();
    batch.put(
        Namespace::Meta,
        STATE_SUMMARY_KEY.to_vec(),
        summary.to_bytes(),
    );
    tamper(&snap, batch);
    let err = validate(root.path(), &snap);
    match err {
        SnapshotError::SupplyMismatch {
            balances,
            minted: m,
            burned: b,
        } => {
            assert_eq!(balances, minted - burned);
            assert_eq!((m, b), (minted + 5, burned));
        }
        other => panic!("want SupplyMismatch, got {other}"),
    }

    // A consistent summary of another height: the state checks pass, but
    // its root is not the one meta.json records.
    let (root, snap, _) = damaged_fixture();
    let w = Workload::default();
    let ledger = w.ledger_at(29).unwrap();
    let mut batch = WriteBatch::new();
    for id in w.touched(30).into_iter().map(account_id) {
        batch.put(
            Namespace::Accounts,
            id.0.to_vec(),
            ledger.get(&id).to_bytes(),
        );
    }
    batch.put(
        Namespace::Meta,
        STATE_SUMMARY_KEY.to_vec(),
        ledger.summary_value().to_bytes(),
    );
    tamper(&snap, batch);
    let err = validate(root.path(), &snap);
    assert!(
        matches!(err, SnapshotError::StateRootMismatch { .. }),
        "{err}"
    );
}

#[test]
fn executed_height_in_meta_is_checked() {
    let (root, snap, _) = damaged_fixture();
    let meta_path = snap.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert_eq!(meta["executed_height"], 30);
    meta["executed_height"] = 29.into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    assert!(matches!(
        validate(root.path(), &snap),
        SnapshotError::ExecutedHeightMismatch {
            meta: 29,
            state: 30
        }
    ));
}

/// An applied on-chain key rotation, as the replica records it.
pub(crate) fn rotation_record() -> qbind_core::system_tx::SystemTx {
    use qbind_core::crypto::KeyPair;
    use qbind_core::types::{NetworkEnvironment, ValidatorId};
    let old = KeyPair::from_seed(&[1; 32]);
    let new = KeyPair::from_seed(&[2; 32]);
    let env = NetworkEnvironment::Devnet;
    qbind_core::sim::chain::consensus_rotation(env, ValidatorId(1), &old, &new, 5, 1, &old).unwrap()
}

#[test]
fn a_snapshot_s_root_commits_to_its_key_rotation_records() {
    use qbind_core::schema::{key_rotation_key, read_key_rotations};
    use qbind_core::system_tx::{key_log_digest, reported_root};
    use qbind_core::types::Height;
    let root = tempfile::tempdir().unwrap();
    let store: FjallBackend = store_at(&root.path().join("db"), 40);
    let app_root = BackendAccounts::new(&store).summary().unwrap().root();
    let tx = rotation_record();
    let mut batch = WriteBatch::new();
    let key = key_rotation_key(Height(30), 0);
    batch.put(Namespace::Meta, key.clone(), tx.to_bytes());
    store.write(batch, Durability::Durable).unwrap();
    let cfg = config(&root.path().join("snapshots"), 5);
    let meta = create_snapshot(&store, &cfg, 0, &raw_hash, &StoreMetrics::default()).unwrap();
    // The root validators report: the accounts' root with the key log.
    let reported = reported_root(app_root, key_log_digest(&[(Height(30), tx)]));
    assert_ne!(reported, app_root);
    assert_eq!(meta.state_root, hex::encode(reported.as_bytes()));
    let snap = cfg.snapshot_dir.join("40");
    let anchor = anchor_of(&snap);
    let (restored, _) = restore_snapshot::<FjallBackend>(
        &snap,
        CHAIN,
        &anchor,
        &root.path().join("restored"),
        &raw_hash,
    )
    .unwrap();
    assert_eq!(read_key_rotations(&restored).unwrap().len(), 1);
    drop(restored);
    // An anchor with the accounts' root alone is not the snapshot's.
    let mut app_only = anchor;
    app_only.state_root = *app_root.as_bytes();
    assert!(
        validate_snapshot::<FjallBackend>(&snap, CHAIN, Some(&app_only), root.path(), &raw_hash)
            .is_err()
    );
    // A snapshot whose rotation record was dropped (checksums recomputed)
    // no longer holds to its root.
    let mut batch = WriteBatch::new();
    batch.delete(Namespace::Meta, key);
    tamper(&snap, batch);
    let err = validate(root.path(), &snap);
    assert!(
        matches!(err, SnapshotError::StateRootMismatch { .. }),
        "{err}"
    );
}
