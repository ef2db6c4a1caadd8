//! `--db-backend fjall|rocksdb`: validators run on the chosen engine and
//! resume on it; a data directory keeps the engine that created it (the
//! other one is refused by name, exit 2, instead of starting a second empty
//! store beside the first); an unknown name, or RocksDB in a build without
//! the `rocksdb` feature, is a clear usage error.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qbind_node_ref::store::{NodeStore, StoreBackend};

mod common;

/// Run `qbind-node ARGS` to its end (at most 120 s); exit code and output.
fn qbind_node(data: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qbind-node"))
        .args(["--local-validators", "4", "--base-timeout-ms", "300"])
        .args(["--tx-interval-ms", "5", "-d"])
        .arg(data)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qbind-node");
    let (out, err) = common::collect_output(&mut child);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("qbind-node did not stop in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = format!(
        "{}{}",
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader")
    );
    (status.code(), text)
}

fn executed_height(backend: StoreBackend, dir: &Path) -> u64 {
    let store = NodeStore::open(backend, dir).expect("open the store");
    qbind_core::schema::read_height(&store, qbind_core::schema::EXECUTED_HEIGHT_KEY)
        .expect("read")
        .map_or(0, |h| h.0)
}

#[test]
fn a_store_keeps_its_backend_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (code, text) = qbind_node(&data, &["--blocks", "3"]);
    assert_eq!(code, Some(0), "{text}");
    let v0 = data.join("validator-0");
    assert_eq!(StoreBackend::of_dir(&v0), Some(StoreBackend::Fjall));
    let before = executed_height(StoreBackend::Fjall, &v0);
    assert!(before >= 3, "executed {before}");

    let (code, text) = qbind_node(&data, &["--blocks", "6", "--db-backend", "rocksdb"]);
    assert_eq!(code, Some(2), "{text}");
    let why = if cfg!(feature = "rocksdb") {
        "holds a fjall store, not a rocksdb one"
    } else {
        "--features rocksdb"
    };
    assert!(text.contains(why), "want {why:?} in: {text}");
    // Nothing was created beside the fjall store, which still opens.
    assert!(!v0.join("CURRENT").exists(), "RocksDB files beside fjall's");
    assert_eq!(executed_height(StoreBackend::Fjall, &v0), before);

    let (code, text) = qbind_node(&data, &["--blocks", "6", "--db-backend", "leveldb"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("unknown backend \"leveldb\""), "{text}");
}

#[cfg(feature = "rocksdb")]
#[test]
fn validators_run_and_resume_on_rocksdb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let rocks = ["--db-backend", "rocksdb"];
    let (code, text) = qbind_node(&data, &[&rocks[..], &["--blocks", "3"]].concat());
    assert_eq!(code, Some(0), "{text}");
    let v0 = data.join("validator-0");
    assert_eq!(StoreBackend::of_dir(&v0), Some(StoreBackend::RocksDb));
    let first = executed_height(StoreBackend::RocksDb, &v0);
    assert!(first >= 3, "executed {first}");
    // Restarted on the same stores: resumes and goes further.
    let (code, text) = qbind_node(&data, &[&rocks[..], &["--blocks", "8"]].concat());
    assert_eq!(code, Some(0), "{text}");
    let second = executed_height(StoreBackend::RocksDb, &v0);
    assert!(second > first, "executed {first} then {second}");
    // fjall on a RocksDB store is refused by name.
    let (code, text) = qbind_node(&data, &["--blocks", "9"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("holds a rocksdb store, not a fjall one"),
        "{text}"
    );
}
