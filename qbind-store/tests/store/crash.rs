//! The crash campaign: a child process commits blocks (state changes, body,
//! QC and height marker in one durable batch) and prints each acknowledged
//! height; the parent kills it with SIGKILL at a random moment (one kill in
//! five timed from the spawn, so often during recovery; the rest timed from
//! the moment the child reports its store open, so during commits), reopens the
//! store and checks that the committed block is complete, nothing of a later
//! block is present and no acknowledged height is missing. The check after
//! each reopen is incremental ([`CrashChecker`]: only the blocks committed
//! since the previous reopen plus the invariants of the last durable block),
//! and the full check ([`verify_committed_state`]) runs once at the end. The
//! seed is printed; `QBIND_CRASH_SEED=N` replays a campaign's kill schedule.
//! `QBIND_CRASH_CHILD=<path>` runs another build of the child binary (to run
//! a long campaign from a copy while the crate is being rebuilt).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qbind_core::traits::{StateBackend, StorageError};
use qbind_store::workload::{CrashChecker, Workload, verify_committed_state};
use qbind_store::{FjallBackend, FjallConfig, PersistentBackend};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seed() -> u64 {
    std::env::var("QBIND_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// When the kill lands.
#[derive(Clone, Copy, Debug)]
enum Aim {
    /// `delay` after the spawn: often during open and recovery (which takes
    /// hundreds of milliseconds once fjall's journal has grown).
    FromSpawn,
    /// `delay` after the child reported its store open: during commits.
    AfterOpen,
}

/// One kill: start the child, wait as `aim` says, SIGKILL it, and return
/// the highest height it acknowledged (0 if none).
fn run_and_kill(kind: &str, dir: &Path, aim: Aim, delay: Duration) -> u64 {
    let exe = std::env::var_os("QBIND_CRASH_CHILD")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_qbind-store-crash-child").into());
    let mut child = Command::new(exe)
        .arg(kind)
        .arg(dir)
        .arg("100000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crash child");
    let stdout = child.stdout.take().expect("child stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut highest = 0u64;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("ready") {
                let _ = ready_tx.send(());
            } else if let Ok(h) = line.trim().parse::<u64>() {
                highest = highest.max(h);
            }
        }
        highest
    });
    if let Aim::AfterOpen = aim {
        // Bounded: a child that never gets its store open is killed anyway
        // and then fails the checks below or the progress assertion.
        let _ = ready_rx.recv_timeout(Duration::from_secs(60));
    }
    std::thread::sleep(delay);
    // `Child::kill` sends SIGKILL on Unix.
    let _ = child.kill();
    let status = child.wait().expect("wait for crash child");
    let acknowledged = reader.join().expect("reader thread");
    if status.success() {
        panic!("crash child exited on its own before the kill");
    }
    if let Some(mut err) = child.stderr.take() {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut text);
        assert!(text.trim().is_empty(), "crash child failed: {text}");
    }
    acknowledged
}

/// `kind` is the child's backend argument; `open` opens the store the same
/// way in the parent.
fn campaign<B: StateBackend>(
    kind: &str,
    open: impl Fn(&Path) -> Result<B, StorageError>,
    kills: u32,
    max_delay_ms: u64,
) {
    let seed = seed();
    eprintln!("crash campaign {kind}: {kills} kills, QBIND_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let workload = Workload::default();
    let mut checker = CrashChecker::new(workload);
    let mut acknowledged = 0u64;
    let started = Instant::now();
    let mut recovered = 0;
    let mut from_spawn = 0u32;
    for round in 0..kills {
        let delay = Duration::from_millis(rng.gen_range(1..=max_delay_ms));
        // One kill in five is timed from the spawn (recovery), the rest
        // from the moment the store is open (commits).
        let aim = if rng.gen_ratio(1, 5) {
            from_spawn += 1;
            Aim::FromSpawn
        } else {
            Aim::AfterOpen
        };
        acknowledged = acknowledged.max(run_and_kill(kind, &path, aim, delay));
        let store =
            open(&path).unwrap_or_else(|e| panic!("seed {seed} round {round}: reopen failed: {e}"));
        recovered = checker.check(&store, acknowledged).unwrap_or_else(|e| {
            panic!("seed {seed} round {round} (killed {delay:?} {aim:?}): {e}")
        });
        drop(store);
        // The next child continues from the recovered height, so a block
        // that was durable but not acknowledged counts as acknowledged now.
        acknowledged = acknowledged.max(recovered);
        if (round + 1) % 100 == 0 {
            eprintln!(
                "crash campaign {kind}: {} kills survived, height {recovered}, {:.0} s",
                round + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    // Once at the end: the whole store from scratch (every account, body
    // and QC, nothing extra).
    let store = open(&path).unwrap();
    assert_eq!(
        verify_committed_state(&workload, &store, acknowledged)
            .unwrap_or_else(|e| panic!("seed {seed}: final full check: {e}")),
        recovered
    );
    drop(store);
    eprintln!(
        "crash campaign {kind}: {kills} kills ({from_spawn} timed from spawn, {} after open), {recovered} blocks committed, {:.1} s",
        kills - from_spawn,
        started.elapsed().as_secs_f64()
    );
    assert!(
        recovered > u64::from(kills),
        "too little progress: {recovered} blocks"
    );
}

#[test]
fn fjall_survives_30_kills() {
    campaign("fjall", FjallBackend::open_dir, 30, 250);
}

/// With 64 KiB memtables, so that the journal a reopen replays stays small
/// (with the default 16 MiB memtables it grows to tens of MB over thousands
/// of blocks and every reopen replays it, so kills land mostly in recovery
/// and the campaign slows down as it goes) and kills also hit flushes and
/// compactions.
#[test]
#[ignore = "slow: 1,000 kills (run with --ignored)"]
fn fjall_survives_1000_kills_slow() {
    campaign(
        "fjall-small",
        |p: &Path| FjallBackend::open_with(p, &FjallConfig::small_memtables()),
        1_000,
        250,
    );
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_survives_30_kills() {
    campaign("rocksdb", qbind_store::RocksDbBackend::open_dir, 30, 250);
}

#[cfg(feature = "rocksdb")]
#[test]
#[ignore = "slow: 1,000 kills (run with --ignored)"]
fn rocksdb_survives_1000_kills_slow() {
    campaign("rocksdb", qbind_store::RocksDbBackend::open_dir, 1_000, 250);
}
