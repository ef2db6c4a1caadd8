//! Typed errors from the file system: a read-only file system, a full one,
//! and paths that cannot hold a store. Tests run as root in CI, where
//! `chmod 0555` stops nothing, so they mount small tmpfs file systems
//! (read-only, or of 1 MiB); where mounting is not permitted they say so
//! and check only what needs no mount.

use qbind_core::traits::{Durability, Namespace, StorageError, WriteBatch};
use qbind_store::{FjallBackend, PersistentBackend};

use crate::common::TmpfsMount;

fn store_on_read_only_fs_is_read_only<B: PersistentBackend>() {
    // A fresh store on a read-only file system.
    let Some(ro) = TmpfsMount::new("1m", "ro") else {
        eprintln!("SKIPPED: cannot mount tmpfs here (needs root); read-only case not run");
        return;
    };
    match B::open_dir(&ro.path.join("db")) {
        Err(StorageError::ReadOnly) => {}
        Err(other) => panic!("{}: want ReadOnly, got {other}", B::KIND),
        Ok(_) => panic!("{}: opened a store on a read-only file system", B::KIND),
    }
    // An existing store whose file system became read-only.
    let rw = TmpfsMount::new("16m", "").unwrap();
    let path = rw.path.join("db");
    {
        let store = B::open_dir(&path).unwrap();
        let mut batch = WriteBatch::new();
        batch.put(Namespace::Accounts, b"a".to_vec(), b"1".to_vec());
        store.write(batch, Durability::Durable).unwrap();
    }
    assert!(rw.remount(true), "remount read-only failed");
    match B::open_dir(&path) {
        Err(StorageError::ReadOnly) => {}
        Err(other) => panic!("{}: want ReadOnly on reopen, got {other}", B::KIND),
        Ok(_) => panic!("{}: reopened a store read-write on a read-only fs", B::KIND),
    }
    assert!(rw.remount(false));
}

fn store_on_full_fs_reports_full<B: PersistentBackend>() {
    let Some(mount) = TmpfsMount::new("2m", "") else {
        eprintln!("SKIPPED: cannot mount tmpfs here (needs root); full-disk case not run");
        return;
    };
    let store = match B::open_dir(&mount.path.join("db")) {
        Ok(store) => store,
        Err(StorageError::Full) => {
            // Not even room to create it (RocksDB preallocates its WAL): also typed.
            eprintln!("{}: Full already at open", B::KIND);
            return;
        }
        Err(other) => panic!("{}: open on a small fs: {other}", B::KIND),
    };
    // Incompressible bytes (xorshift), so compression cannot hide the size.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let value: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut first_error = None;
    let mut writes = 0u32;
    for i in 0u32..200 {
        let mut batch = WriteBatch::new();
        batch.put(Namespace::Blocks, i.to_be_bytes().to_vec(), value.clone());
        if let Err(e) = store.write(batch, Durability::Durable) {
            first_error = Some(e);
            break;
        }
        writes += 1;
    }
    assert_eq!(first_error, Some(StorageError::Full), "{}", B::KIND);
    eprintln!("{}: Full after {writes} durable 64 KiB writes", B::KIND);
    // Later writes keep saying why the store stopped.
    let mut batch = WriteBatch::new();
    batch.put(Namespace::Meta, b"x".to_vec(), b"y".to_vec());
    assert_eq!(
        store.write(batch, Durability::Durable),
        Err(StorageError::Full),
        "{}",
        B::KIND
    );
    // And after the engine's background threads (RocksDB's error recovery)
    // have had time to run on the full disk: still typed, no abort.
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let mut batch = WriteBatch::new();
    batch.put(Namespace::Meta, b"x".to_vec(), b"z".to_vec());
    assert_eq!(
        store.write(batch, Durability::Durable),
        Err(StorageError::Full),
        "{}",
        B::KIND
    );
    // A restart on the still-full disk: opening logs and writes files, and
    // must end in a store or a typed error, never an abort.
    drop(store);
    match B::open_dir(&mount.path.join("db")) {
        Ok(reopened) => {
            let mut batch = WriteBatch::new();
            batch.put(Namespace::Blocks, b"more".to_vec(), value);
            let _ = reopened.write(batch, Durability::Durable);
        }
        Err(StorageError::Full | StorageError::Io { .. }) => {}
        Err(other) => panic!("{}: reopen on a full fs: {other}", B::KIND),
    }
}

fn unusable_paths_are_io_errors<B: PersistentBackend>() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    for path in [file.clone(), file.join("db")] {
        match B::open_dir(&path) {
            Err(StorageError::Io { detail }) => assert!(!detail.is_empty()),
            Err(other) => panic!("{}: {}: want Io, got {other}", B::KIND, path.display()),
            Ok(_) => panic!("{}: opened a store at {}", B::KIND, path.display()),
        }
    }
}

#[test]
fn fjall_read_only_fs_is_a_typed_error() {
    store_on_read_only_fs_is_read_only::<FjallBackend>();
}

#[test]
fn fjall_full_fs_is_a_typed_error() {
    store_on_full_fs_reports_full::<FjallBackend>();
}

#[test]
fn fjall_unusable_path_is_a_typed_error() {
    unusable_paths_are_io_errors::<FjallBackend>();
}

#[cfg(feature = "rocksdb")]
mod rocks {
    use super::*;
    use qbind_store::RocksDbBackend;

    #[test]
    fn rocksdb_read_only_fs_is_a_typed_error() {
        store_on_read_only_fs_is_read_only::<RocksDbBackend>();
    }

    #[test]
    fn rocksdb_full_fs_is_a_typed_error() {
        store_on_full_fs_reports_full::<RocksDbBackend>();
    }

    #[test]
    fn rocksdb_unusable_path_is_a_typed_error() {
        unusable_paths_are_io_errors::<RocksDbBackend>();
    }
}
