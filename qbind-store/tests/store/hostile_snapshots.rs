//! Hostile snapshot files (issue #22 finding 4): a FIFO, a symlink to a file
//! or a directory, a file longer than meta.json says and an oversized
//! meta.json must each fail fast with a typed error naming the file, never
//! hang validation or check something other than what is restored. Each
//! validation runs on its own thread under a deadline so a regression fails
//! the test instead of hanging CI.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use qbind_store::FjallBackend;
use qbind_store::snapshot::{FileChecksum, SnapshotError, SnapshotMeta, validate_snapshot};

use crate::snapshots::{CHAIN, damaged_fixture, raw_hash};

/// Far longer than a failing validation takes, far shorter than a hang.
const DEADLINE: Duration = Duration::from_secs(30);

/// Validate `snap` on another thread; `None` if it did not finish in time.
fn validate_within(root: &Path, snap: &Path) -> Option<Result<SnapshotMeta, SnapshotError>> {
    let (tx, rx) = mpsc::channel();
    let (root, snap) = (root.to_path_buf(), snap.to_path_buf());
    std::thread::spawn(move || {
        let _ = tx.send(validate_snapshot::<FjallBackend>(
            &snap, CHAIN, None, &root, &raw_hash,
        ));
    });
    rx.recv_timeout(DEADLINE).ok()
}

fn must_fail(root: &Path, snap: &Path) -> SnapshotError {
    match validate_within(root, snap) {
        None => panic!("validation of {} hung", snap.display()),
        Some(Ok(_)) => panic!("hostile snapshot {} validated", snap.display()),
        Some(Err(e)) => e,
    }
}

fn read_meta(snap: &Path) -> SnapshotMeta {
    serde_json::from_slice(&std::fs::read(snap.join("meta.json")).unwrap()).unwrap()
}

fn write_meta(snap: &Path, meta: &SnapshotMeta) {
    std::fs::write(
        snap.join("meta.json"),
        serde_json::to_vec_pretty(meta).unwrap(),
    )
    .unwrap();
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

fn not_regular(err: &SnapshotError, file: &str) {
    assert!(
        matches!(err, SnapshotError::NotRegularFile { file: f, .. } if f == file),
        "want NotRegularFile for {file}, got {err}"
    );
    assert!(err.to_string().contains(file), "{err}");
}

#[test]
fn fifo_listed_in_meta_json_fails_fast() {
    let (root, snap, _) = damaged_fixture();
    mkfifo(&snap.join("state").join("evil"));
    let mut meta = read_meta(&snap);
    meta.files.insert(
        "evil".into(),
        FileChecksum {
            size: 0,
            sha3_256: hex::encode(<sha3::Sha3_256 as sha3::Digest>::digest(b"")),
        },
    );
    write_meta(&snap, &meta);
    let err = must_fail(root.path(), &snap);
    not_regular(&err, "evil");
}

#[test]
fn fifo_as_meta_json_fails_fast() {
    let (root, snap, _) = damaged_fixture();
    std::fs::remove_file(snap.join("meta.json")).unwrap();
    mkfifo(&snap.join("meta.json"));
    let err = must_fail(root.path(), &snap);
    not_regular(&err, "meta.json");
}

/// Move `state/<rel>` out of the snapshot and put a symlink to it in its
/// place; returns where it went.
fn replace_with_symlink(root: &Path, snap: &Path, rel: &str) -> PathBuf {
    let inside = snap.join("state").join(rel);
    let outside = root.join("elsewhere");
    std::fs::rename(&inside, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &inside).unwrap();
    outside
}

#[test]
fn symlink_to_a_file_fails_verification() {
    let (root, snap, largest) = damaged_fixture();
    replace_with_symlink(root.path(), &snap, &largest);
    let err = must_fail(root.path(), &snap);
    not_regular(&err, &largest);
}

#[test]
fn symlink_to_a_directory_fails_verification() {
    let (root, snap, largest) = damaged_fixture();
    // The directory holding the largest file (fjall keeps tables in
    // subdirectories), or a new one.
    let dir = match largest.rsplit_once('/') {
        Some((dir, _)) => dir.to_string(),
        None => {
            std::fs::create_dir(snap.join("state").join("sub")).unwrap();
            "sub".to_string()
        }
    };
    replace_with_symlink(root.path(), &snap, &dir);
    let err = must_fail(root.path(), &snap);
    not_regular(&err, &dir);
}

#[test]
fn file_longer_than_meta_json_says_fails_without_reading_it() {
    let (root, snap, largest) = damaged_fixture();
    // 64 GiB, sparse: reading it to the end would take minutes.
    let path = snap.join("state").join(&largest);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let err = must_fail(root.path(), &snap);
    assert!(
        matches!(&err, SnapshotError::SizeMismatch { file, actual, .. }
            if *file == largest && *actual == 64 << 30),
        "{err}"
    );
}

#[test]
fn oversized_meta_json_is_refused() {
    let (root, snap, _) = damaged_fixture();
    // Still valid JSON (trailing whitespace), but beyond the bound.
    let mut bytes = std::fs::read(snap.join("meta.json")).unwrap();
    bytes.resize(17 << 20, b' ');
    std::fs::write(snap.join("meta.json"), bytes).unwrap();
    let err = must_fail(root.path(), &snap);
    assert!(
        matches!(err, SnapshotError::MetaTooLarge { size, .. } if size == 17 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("meta.json"), "{err}");
}
