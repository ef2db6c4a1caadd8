//! Restores are atomic and trust-anchored, start-up removes what crashes
//! left, and the store's directories are private (issue #22 findings 3, 6,
//! 7 and 9).
//!
//! - A restore killed at any moment (SIGKILL, in a child process) leaves the
//!   data directory absent or holding the complete, verified store, and a
//!   restore that fails (a forged state root, a full disk) never creates it.
//! - A snapshot of another chain whose meta.json was edited to this chain is
//!   refused by the trust anchor.
//! - `.tmp-snapshot-*` leftovers of a crashed creation or retention are
//!   removed and counted when the snapshot directory is prepared.
//! - Snapshot and restored data directories are 0700; an existing one open
//!   to others is tightened.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qbind_core::execution::{AccountReader, BackendAccounts};
use qbind_store::FjallBackend;
use qbind_store::metrics::StoreMetrics;
use qbind_store::snapshot::{
    SnapshotError, SnapshotMeta, TrustAnchor, create_snapshot, interrupted_restores,
    list_snapshots, prepare_snapshot_dir, restore_snapshot, verify_state,
};
use qbind_store::workload::{Workload, committed_height};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::TmpfsMount;
use crate::snapshots::{CHAIN, anchor_of, config, damaged_fixture, raw_hash};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn write_meta(snap: &Path, meta: &SnapshotMeta) {
    std::fs::write(
        snap.join("meta.json"),
        serde_json::to_vec_pretty(meta).unwrap(),
    )
    .unwrap();
}

fn read_meta(snap: &Path) -> SnapshotMeta {
    qbind_store::snapshot::read_meta(snap).unwrap()
}

/// Start the crash child restoring `snap` into `data` with `anchor`.
fn spawn_restore(snap: &Path, data: &Path, anchor: &TrustAnchor) -> std::process::Child {
    let exe = std::env::var_os("QBIND_CRASH_CHILD")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_qbind-store-crash-child").into());
    Command::new(exe)
        .arg("restore")
        .arg(snap)
        .arg(data)
        .arg(CHAIN.to_string())
        .arg(anchor.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn restore child")
}

/// The data directory holds the complete store the anchor names.
fn assert_verified_store(data: &Path, anchor: &TrustAnchor) {
    let store = FjallBackend::open(data).unwrap();
    assert_eq!(committed_height(&store).unwrap(), anchor.height);
    let summary =
        verify_state(&*qbind_core::traits::StateBackend::snapshot(&store).unwrap()).unwrap();
    assert_eq!(*summary.root().as_bytes(), anchor.state_root);
    assert_eq!(BackendAccounts::new(&store).summary().unwrap(), summary);
}

#[test]
fn restore_with_a_forged_state_root_never_creates_the_data_dir() {
    let (root, snap, _) = damaged_fixture();
    // meta.json and the operator's anchor both claim a root the state does
    // not have (checksums untouched): only the recomputation can tell.
    let mut meta = read_meta(&snap);
    meta.state_root = "00".repeat(32);
    write_meta(&snap, &meta);
    let anchor = TrustAnchor::of(&meta).unwrap();
    let data = root.path().join("data").join("validator-0");
    let mut child = spawn_restore(&snap, &data, &anchor);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if std::fs::symlink_metadata(&data).is_ok() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the data directory appeared before the state was verified");
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "restore child did not finish");
        std::thread::sleep(Duration::from_micros(200));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("state root mismatch"), "{stderr}");
    assert!(!data.exists());
    assert!(interrupted_restores(&data).unwrap().is_empty());
}

#[test]
fn killed_restores_leave_no_store_or_a_verified_one() {
    let seed: u64 = std::env::var("QBIND_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("restore kill seed {seed} (QBIND_CRASH_SEED={seed} replays the schedule)");
    let mut rng = StdRng::seed_from_u64(seed);
    let (root, snap, _) = damaged_fixture();
    let anchor = anchor_of(&snap);
    let data = root.path().join("data").join("validator-0");
    // How long an uninterrupted restore takes, to aim the kills.
    let started = Instant::now();
    let status = spawn_restore(&snap, &data, &anchor).wait().unwrap();
    assert!(status.success());
    let full = started.elapsed();
    assert_verified_store(&data, &anchor);
    let (mut absent, mut complete) = (0, 0);
    for _ in 0..8 {
        std::fs::remove_dir_all(&data).unwrap();
        let mut child = spawn_restore(&snap, &data, &anchor);
        let delay = rng.gen_range(0..=full.as_micros() as u64);
        std::thread::sleep(Duration::from_micros(delay));
        let _ = child.kill();
        let _ = child.wait();
        if std::fs::symlink_metadata(&data).is_ok() {
            assert_verified_store(&data, &anchor);
            complete += 1;
        } else {
            absent += 1;
            // Restoring again clears the leftovers and succeeds.
            let (store, meta) =
                restore_snapshot::<FjallBackend>(&snap, CHAIN, &anchor, &data, &raw_hash).unwrap();
            drop(store);
            assert_eq!(meta.height, anchor.height);
            assert!(interrupted_restores(&data).unwrap().is_empty());
            assert_verified_store(&data, &anchor);
        }
    }
    println!("kills: {absent} before the rename, {complete} after");
}

#[test]
fn failed_copy_on_a_full_disk_leaves_no_data_dir() {
    let (_root, snap, _) = damaged_fixture();
    let size = qbind_store::fsutil::dir_size(&snap.join("state")).unwrap();
    let kib = (size / 2 / 1024).max(64);
    let Some(mount) = TmpfsMount::new(&format!("{kib}k"), "") else {
        println!("SKIPPED: mounting a tmpfs is not permitted here");
        return;
    };
    let data = mount.path.join("validator-0");
    let err = restore_snapshot::<FjallBackend>(&snap, CHAIN, &anchor_of(&snap), &data, &raw_hash)
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            SnapshotError::Storage(qbind_core::traits::StorageError::Full)
        ),
        "{err}"
    );
    assert!(
        !data.exists(),
        "a partial restore was left in {}",
        data.display()
    );
    assert_eq!(std::fs::read_dir(&mount.path).unwrap().count(), 0);
}

#[test]
fn snapshot_of_another_chain_is_refused_by_the_anchor() {
    let root = tempfile::tempdir().unwrap();
    // The chain the operator trusts, at height 30.
    let (trusted_root, trusted_snap, _) = damaged_fixture();
    let anchor = anchor_of(&trusted_snap);
    drop(trusted_root);
    // Another chain (other accounts) at the same height, its meta.json
    // edited to claim this chain.
    let other = Workload {
        accounts: 500,
        ..Workload::default()
    };
    let store = FjallBackend::open(&root.path().join("other-db")).unwrap();
    for h in 1..=30 {
        other.commit(&store, h).unwrap();
    }
    let mut cfg = config(&root.path().join("snapshots"), 5);
    cfg.chain_id = CHAIN + 1;
    create_snapshot(&store, &cfg, 0, &raw_hash, &StoreMetrics::default()).unwrap();
    let snap = cfg.snapshot_dir.join("30");
    let mut meta = read_meta(&snap);
    meta.chain_id = format!("0x{CHAIN:016x}");
    write_meta(&snap, &meta);
    let data = root.path().join("data");
    let err = restore_snapshot::<FjallBackend>(&snap, CHAIN, &anchor, &data, &raw_hash)
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            SnapshotError::AnchorMismatch {
                what: "state root",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("trusted anchor"), "{err}");
    assert!(!data.exists());
    // A forger who also copies the anchor into meta.json is caught by the
    // recomputed root.
    meta.block_hash = hex::encode(anchor.block_hash);
    meta.state_root = hex::encode(anchor.state_root);
    write_meta(&snap, &meta);
    let err = restore_snapshot::<FjallBackend>(&snap, CHAIN, &anchor, &data, &raw_hash)
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            SnapshotError::StateRootMismatch { .. } | SnapshotError::BlockHashMismatch { .. }
        ),
        "{err}"
    );
    assert!(!data.exists());
    // An anchor of another height is refused before anything is copied.
    let mut wrong = anchor;
    wrong.height += 1;
    let err = restore_snapshot::<FjallBackend>(&snap, CHAIN, &wrong, &data, &raw_hash)
        .err()
        .unwrap();
    assert!(
        matches!(err, SnapshotError::AnchorMismatch { what: "height", .. }),
        "{err}"
    );
}

#[test]
fn start_up_removes_temporary_snapshots_left_by_a_crash() {
    let (root, snap, _) = damaged_fixture();
    let dir = snap.parent().unwrap().to_path_buf();
    // A creation killed after its checkpoint, and a retention killed
    // between its rename and its removal.
    std::fs::create_dir_all(dir.join(".tmp-snapshot-4242-1").join("state")).unwrap();
    std::fs::write(
        dir.join(".tmp-snapshot-4242-1").join("state").join("x"),
        b"x",
    )
    .unwrap();
    std::fs::rename(&snap, dir.join(".tmp-snapshot-removing-30-4242-2")).unwrap();
    let metrics = StoreMetrics::default();
    let store: FjallBackend = FjallBackend::open(&root.path().join("db")).unwrap();
    create_snapshot(&store, &config(&dir, 5), 0, &raw_hash, &metrics).unwrap();
    assert_eq!(prepare_snapshot_dir(&dir, &metrics).unwrap(), 2);
    assert_eq!(metrics.read().snapshot_tmp_removed, 2);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["30".to_string()]);
    assert_eq!(list_snapshots(&dir).unwrap(), vec![30]);
    // Nothing left: a second start-up removes nothing.
    assert_eq!(prepare_snapshot_dir(&dir, &metrics).unwrap(), 0);
    assert_eq!(metrics.read().snapshot_tmp_removed, 2);
}

#[test]
fn snapshot_and_restored_directories_are_private() {
    let (root, snap, _) = damaged_fixture();
    let dir = snap.parent().unwrap();
    assert_eq!(mode(dir), 0o700, "snapshot directory");
    assert_eq!(mode(&snap), 0o700, "snapshot");
    // An existing directory open to others is tightened.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    prepare_snapshot_dir(dir, &StoreMetrics::default()).unwrap();
    assert_eq!(mode(dir), 0o700);
    let parent = root.path().join("data");
    std::fs::create_dir(&parent).unwrap();
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).unwrap();
    let data = parent.join("validator-0");
    let (store, _) =
        restore_snapshot::<FjallBackend>(&snap, CHAIN, &anchor_of(&snap), &data, &raw_hash)
            .unwrap();
    drop(store);
    assert_eq!(mode(&data), 0o700, "restored data directory");
    assert_eq!(mode(&parent), 0o700, "its parent");
}

/// A snapshot carries the state roots its store recorded for earlier
/// executed heights, which its commitment does not cover: a restore drops
/// them, so the restored validator checks proposals only against roots it
/// computed itself (consensus §C3.7; a forged snapshot with a valid anchor
/// could otherwise make it vote for false roots of those heights).
#[test]
fn a_restore_drops_the_executed_roots_the_snapshot_carries() {
    use qbind_core::schema::{EXECUTED_ROOT_PREFIX, put_executed_root};
    use qbind_core::traits::{Durability, Namespace, StateBackend, StateRead, WriteBatch};
    use qbind_core::types::{Hash32, Height};
    let root = tempfile::tempdir().unwrap();
    let store: FjallBackend = crate::snapshots::store_at(&root.path().join("db"), 30);
    let mut batch = WriteBatch::new();
    for h in 20..=30 {
        put_executed_root(&mut batch, Height(h), Hash32([0xee; 32]));
    }
    store.write(batch, Durability::Durable).unwrap();
    let cfg = config(&root.path().join("snapshots"), 5);
    create_snapshot(&store, &cfg, 0, &raw_hash, &StoreMetrics::default()).unwrap();
    let snap = cfg.snapshot_dir.join("30");
    let anchor = anchor_of(&snap);
    let data = root.path().join("data").join("validator-0");
    let (restored, _) =
        restore_snapshot::<FjallBackend>(&snap, CHAIN, &anchor, &data, &raw_hash).unwrap();
    let roots = restored
        .scan_prefix(Namespace::Meta, EXECUTED_ROOT_PREFIX, usize::MAX)
        .unwrap();
    assert!(roots.is_empty(), "{} executed roots restored", roots.len());
    drop(restored);
    assert_verified_store(&data, &anchor);
}
