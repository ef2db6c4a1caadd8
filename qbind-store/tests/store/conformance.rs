//! The shared conformance suite against every backend.

use qbind_store::conformance::run_all;

use crate::common::{FjallHarness, MemoryHarness};

#[test]
fn memory_backend_passes_conformance() {
    let mut h = MemoryHarness(tempfile::tempdir().unwrap());
    if let Err(e) = run_all(&mut h) {
        panic!("{e}");
    }
}

#[test]
fn fjall_backend_passes_conformance() {
    let mut h = FjallHarness::new();
    if let Err(e) = run_all(&mut h) {
        panic!("{e}");
    }
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_backend_passes_conformance() {
    let mut h = crate::common::DirHarness::<qbind_store::RocksDbBackend>::new();
    if let Err(e) = run_all(&mut h) {
        panic!("{e}");
    }
}
