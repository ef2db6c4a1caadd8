//! The crash campaign: a child process commits blocks (state changes, body,
//! QC and height marker in one durable batch) and prints each acknowledged
//! height; the parent kills it with SIGKILL at a random moment, reopens the
//! store and checks that the committed block is complete, nothing of a later
//! block is present and no acknowledged height is missing. The seed is
//! printed; `QBIND_CRASH_SEED=N` replays a campaign's kill schedule.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qbind_store::workload::{Workload, verify_committed_state};
use qbind_store::{FjallBackend, PersistentBackend};
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

/// One kill: start the child, wait `delay`, SIGKILL it, and return the
/// highest height it acknowledged (0 if none).
fn run_and_kill(kind: &str, dir: &Path, delay: Duration) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qbind-store-crash-child"))
        .arg(kind)
        .arg(dir)
        .arg("100000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crash child");
    let stdout = child.stdout.take().expect("child stdout");
    let reader = std::thread::spawn(move || {
        let mut highest = 0u64;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(h) = line.trim().parse::<u64>() {
                highest = highest.max(h);
            }
        }
        highest
    });
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

fn campaign<B: PersistentBackend>(kills: u32, max_delay_ms: u64) {
    let seed = seed();
    eprintln!(
        "crash campaign {}: {kills} kills, QBIND_CRASH_SEED={seed}",
        B::KIND
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let workload = Workload::default();
    let mut acknowledged = 0u64;
    let started = Instant::now();
    let mut recovered = 0;
    for round in 0..kills {
        let delay = Duration::from_millis(rng.gen_range(1..=max_delay_ms));
        acknowledged = acknowledged.max(run_and_kill(B::KIND, &path, delay));
        let store = B::open_dir(&path)
            .unwrap_or_else(|e| panic!("seed {seed} round {round}: reopen failed: {e}"));
        recovered = verify_committed_state(&workload, &store, acknowledged)
            .unwrap_or_else(|e| panic!("seed {seed} round {round} (killed after {delay:?}): {e}"));
        drop(store);
        // The next child continues from the recovered height, so a block
        // that was durable but not acknowledged counts as acknowledged now.
        acknowledged = acknowledged.max(recovered);
        if (round + 1) % 100 == 0 {
            eprintln!(
                "crash campaign {}: {} kills survived, height {recovered}, {:.0} s",
                B::KIND,
                round + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "crash campaign {}: {kills} kills, {recovered} blocks committed, {:.1} s",
        B::KIND,
        started.elapsed().as_secs_f64()
    );
    assert!(
        recovered > u64::from(kills),
        "too little progress: {recovered} blocks"
    );
}

#[test]
fn fjall_survives_30_kills() {
    campaign::<FjallBackend>(30, 250);
}

#[test]
#[ignore = "slow: 1,000 kills (run with --ignored)"]
fn fjall_survives_1000_kills_slow() {
    campaign::<FjallBackend>(1_000, 250);
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_survives_30_kills() {
    campaign::<qbind_store::RocksDbBackend>(30, 250);
}

#[cfg(feature = "rocksdb")]
#[test]
#[ignore = "slow: 1,000 kills (run with --ignored)"]
fn rocksdb_survives_1000_kills_slow() {
    campaign::<qbind_store::RocksDbBackend>(1_000, 250);
}
