//! Storage benchmark (issue #3 "Benchmarks"): the same workload on every
//! persistent backend in one run, each in its own child process so that its
//! peak RSS (`VmHWM`) is its own.
//!
//! Workload (the issue's, with fewer blocks), real protocol state through
//! `qbind_core::execution` ([`Workload`]): a genesis credit of [`accounts`]
//! accounts (1,000,000 unless `QBIND_STORE_BENCH_ACCOUNTS` says otherwise;
//! 24-byte `Account` values under 32-byte ids, plus the state summary) is
//! loaded in chunks, then `BLOCKS` blocks are committed, each reading and
//! rewriting `UPDATES_PER_BLOCK` accounts (transfers between pairs, with the
//! state summary updated incrementally) plus a body, QC and height markers
//! in one durable (fsynced) batch. Then: point-read latency, on-disk size
//! after compaction, snapshot time, snapshot validation time (recomputes the
//! state commitment from every account), pruning throughput.
//!
//! `cargo bench -p qbind-store --features rocksdb --bench store`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;
use qbind_core::execution::BackendAccounts;
use qbind_core::traits::{Durability, Namespace, StateRead};
use qbind_store::metrics::StoreMetrics;
use qbind_store::prune::{Pruner, RetentionMode};
use qbind_store::snapshot::{
    SnapshotConfig, SnapshotError, TrustAnchor, create_snapshot, validate_snapshot,
};
use qbind_store::workload::{Workload, account_id};
use qbind_store::{FjallBackend, PersistentBackend};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Accounts loaded; `QBIND_STORE_BENCH_ACCOUNTS` overrides.
fn accounts() -> u64 {
    std::env::var("QBIND_STORE_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}
/// Encoded `Account` (nonce u64 + balance u128).
const VALUE_LEN: usize = 24;
const UPDATES_PER_BLOCK: usize = 2_000;
const BLOCKS: u64 = 300;
const BODY_LEN: usize = 4_096;
const READS: usize = 20_000;
const CHILD_ENV: &str = "QBIND_STORE_BENCH_CHILD";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn run_workload<B: PersistentBackend>(dir: &Path) -> serde_json::Value {
    let store = B::open_dir(&dir.join("db")).expect("open");
    let mut rng = StdRng::seed_from_u64(7);
    let workload = Workload {
        accounts: accounts(),
        updates_per_block: UPDATES_PER_BLOCK as u64,
        body_len: BODY_LEN,
    };
    // Load: the genesis credit (block 1's state) in chunks of 10,000.
    let load_start = Instant::now();
    for chunk in 0..accounts().div_ceil(10_000) {
        let range = chunk * 10_000..((chunk + 1) * 10_000).min(accounts());
        let transition = workload
            .genesis_chunk(&BackendAccounts::new(&store), range)
            .expect("genesis");
        store
            .write(transition.to_write_batch(), Durability::Buffered)
            .expect("load");
    }
    let load_s = load_start.elapsed().as_secs_f64();
    // Commit blocks of read-modify-write transfers, fsync per block.
    let mut latencies = Vec::with_capacity(BLOCKS as usize);
    let commit_start = Instant::now();
    for height in 2..=BLOCKS + 1 {
        let t = Instant::now();
        workload.commit(&store, height).expect("commit");
        latencies.push(t.elapsed());
    }
    let commit_s = commit_start.elapsed().as_secs_f64();
    latencies.sort();
    // Point reads.
    let mut reads = Vec::with_capacity(READS);
    for _ in 0..READS {
        let key = account_id(rng.gen_range(0..accounts())).0;
        let t = Instant::now();
        let v = store.get(Namespace::Accounts, &key).expect("read");
        reads.push(t.elapsed());
        assert!(v.is_some());
    }
    reads.sort();
    // Size after compaction.
    store.compact().expect("compact");
    let disk = store.disk_space().expect("size");
    let logical = accounts() * (VALUE_LEN as u64 + 32) + BLOCKS * (BODY_LEN as u64 + 9 + 104);
    // Snapshot.
    let hash = |_h: u64, b: &[u8]| -> Result<[u8; 32], SnapshotError> {
        use sha3::Digest;
        Ok(sha3::Sha3_256::digest(b).into())
    };
    let cfg = SnapshotConfig {
        snapshot_dir: dir.join("snapshots"),
        interval_blocks: 10_000,
        max_snapshots: 1,
        chain_id: 1,
    };
    let t = Instant::now();
    store
        .checkpoint(&dir.join("checkpoint"))
        .expect("checkpoint");
    let checkpoint_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let meta = create_snapshot(&store, &cfg, 0, &hash, &StoreMetrics::default()).expect("snapshot");
    let snapshot_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let anchor = TrustAnchor::of(&meta).expect("anchor");
    validate_snapshot::<B>(
        &cfg.snapshot_dir.join(meta.height.to_string()),
        1,
        Some(&anchor),
        dir,
        &hash,
    )
    .expect("validate");
    let validate_s = t.elapsed().as_secs_f64();
    // Pruning: everything but the last 10 blocks.
    let pruner = Pruner::new(
        RetentionMode::Height { retain_height: 10 },
        1_000,
        std::sync::Arc::new(StoreMetrics::default()),
    );
    let t = Instant::now();
    let pruned = pruner.prune_all(&store).expect("prune");
    let prune_s = t.elapsed().as_secs_f64();
    serde_json::json!({
        "backend": B::KIND,
        "load_s": load_s,
        "blocks_per_s": BLOCKS as f64 / commit_s,
        "updates_per_s": (BLOCKS as usize * UPDATES_PER_BLOCK) as f64 / commit_s,
        "commit_p50_ms": percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        "commit_p99_ms": percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        "read_p50_us": percentile(&reads, 0.5).as_secs_f64() * 1e6,
        "read_p99_us": percentile(&reads, 0.99).as_secs_f64() * 1e6,
        "disk_bytes": disk,
        "space_amplification": disk as f64 / logical as f64,
        "checkpoint_s": checkpoint_s,
        "snapshot_s": snapshot_s,
        "snapshot_validate_s": validate_s,
        "pruned_keys": pruned,
        "prune_keys_per_s": pruned as f64 / prune_s,
        "peak_rss_kib": vm_hwm_kib(),
    })
}

fn child(kind: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let result = match kind {
        "fjall" => run_workload::<FjallBackend>(dir.path()),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => run_workload::<qbind_store::RocksDbBackend>(dir.path()),
        other => panic!("unknown backend {other}"),
    };
    println!("{result}");
}

fn point_get_bench(c: &mut Criterion) {
    fn setup<B: PersistentBackend>(dir: &Path) -> B {
        let store = B::open_dir(dir).expect("open");
        let genesis = Workload {
            accounts: 10_000,
            ..Workload::default()
        };
        genesis.commit(&store, 1).expect("load");
        store
    }
    let mut group = c.benchmark_group("store/point_get_10k_accounts");
    let dir = tempfile::tempdir().expect("tempdir");
    let fjall: FjallBackend = setup(&dir.path().join("fjall"));
    let mut i = 0u64;
    group.bench_function("fjall", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            fjall
                .get(Namespace::Accounts, &account_id(i).0)
                .expect("get")
        })
    });
    #[cfg(feature = "rocksdb")]
    {
        let rocks: qbind_store::RocksDbBackend = setup(&dir.path().join("rocksdb"));
        group.bench_function("rocksdb", |b| {
            b.iter(|| {
                i = (i + 7919) % 10_000;
                rocks
                    .get(Namespace::Accounts, &account_id(i).0)
                    .expect("get")
            })
        });
    }
    group.finish();
}

fn main() {
    if let Ok(kind) = std::env::var(CHILD_ENV) {
        child(&kind);
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut kinds = vec!["fjall"];
    if cfg!(feature = "rocksdb") {
        kinds.push("rocksdb");
    }
    let accounts = accounts();
    println!(
        "workload: {accounts} accounts x {VALUE_LEN} B (protocol Account + state summary), {BLOCKS} blocks x {UPDATES_PER_BLOCK} read-modify-write account updates (transfers) + {BODY_LEN} B body, fsync per block"
    );
    let mut results = Vec::new();
    for kind in &kinds {
        let out = Command::new(&exe)
            .env(CHILD_ENV, kind)
            .output()
            .expect("run child");
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        let value: serde_json::Value =
            serde_json::from_str(line.lines().last().unwrap_or("")).expect("child json");
        println!("{value}");
        results.push(value);
    }
    if let [f, r] = results.as_slice() {
        let ratio = |k: &str| f[k].as_f64().unwrap_or(0.0) / r[k].as_f64().unwrap_or(1.0);
        println!(
            "fjall/rocksdb: blocks/s {:.2}x, p50 commit {:.2}x, p99 commit {:.2}x, read p50 {:.2}x, disk {:.2}x, peak RSS {:.2}x, checkpoint time {:.2}x, snapshot time {:.2}x, prune keys/s {:.2}x",
            ratio("blocks_per_s"),
            ratio("commit_p50_ms"),
            ratio("commit_p99_ms"),
            ratio("read_p50_us"),
            ratio("disk_bytes"),
            ratio("peak_rss_kib"),
            ratio("checkpoint_s"),
            ratio("snapshot_s"),
            ratio("prune_keys_per_s"),
        );
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    point_get_bench(&mut c);
    c.final_summary();
}
