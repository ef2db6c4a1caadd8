//! DAG and mempool benchmarks (issue #7): fee-priority pool operations at
//! 100,000 pending, batch-certificate verification at n = 4, 16, 64, and
//! simulated committed transactions per CPU-second in DAG mode at n = 4.
//!
//! `cargo bench -p qbind-core --bench dag`; results in docs/benchmarks.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use qbind_core::codec::Encode;
use qbind_core::crypto::KeyPair;
use qbind_core::dag::BatchRef;
use qbind_core::fee_mempool::{EvictionMode, FeeMempool, FeeMempoolConfig, MetaTx};
use qbind_core::signing::{SignKind, sign_domain, signing_preimage};
use qbind_core::sim::{FeePool, Scenario, simtx};
use qbind_core::types::{Epoch, Hash32, Millis, NetworkEnvironment, ValidatorId};
use qbind_core::validator::ValidatorSet;

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;
const PENDING: u32 = 100_000;

fn meta_tx(sender: u32, fee: u128, salt: u64) -> MetaTx {
    let bytes = simtx::encode(sender, 0, fee, salt);
    let meta = simtx::meta(&bytes).unwrap_or_else(|| unreachable!());
    MetaTx::new(bytes, meta)
}

fn full_pool() -> FeeMempool<MetaTx> {
    let mut pool = FeeMempool::new(FeeMempoolConfig {
        capacity: PENDING as usize,
        eviction_mode: EvictionMode::Off,
        ..FeeMempoolConfig::mainnet()
    });
    for i in 0..PENDING {
        let _ = pool.insert(
            Millis(0),
            meta_tx(i, u128::from(i % 1_000) + 1, u64::from(i)),
        );
    }
    assert_eq!(pool.len(), PENDING as usize);
    pool
}

fn mempool(c: &mut Criterion) {
    let mut g = c.benchmark_group("mempool_100k_pending");
    g.throughput(Throughput::Elements(1));
    let mut pool = full_pool();
    let mut next = u64::from(PENDING);
    // Every insert outranks the lowest pending one, so each is an insert
    // plus an eviction, at a constant 100,000 pending.
    g.bench_function("insert_with_eviction", |b| {
        b.iter(|| {
            next += 1;
            let tx = meta_tx(next as u32 + 1_000_000, 2_000 + u128::from(next), next);
            black_box(pool.insert(Millis(0), tx)).ok();
        })
    });
    g.bench_function("take_500", |b| b.iter(|| black_box(pool.take(500).len())));
    g.finish();
}

fn batch_cert_verification(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch_cert_verify");
    for n in [4usize, 16, 64] {
        let keys: Vec<KeyPair> = (0..n)
            .map(|i| {
                let mut seed = [7u8; 32];
                seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
                KeyPair::from_seed(&seed)
            })
            .collect();
        let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())
            .unwrap_or_else(|_| unreachable!());
        let r = BatchRef {
            epoch: Epoch(0),
            author: ValidatorId(0),
            round: 1,
            digest: Hash32([5; 32]),
        };
        let quorum = n * 2 / 3 + 1;
        let sigs: Vec<_> = keys[..quorum]
            .iter()
            .map(|k| sign_domain(k, ENV, SignKind::BatchAck, &r.to_bytes()))
            .collect();
        g.throughput(Throughput::Elements(quorum as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                // The work a validator does for an uncached certificate:
                // rebuild the preimage and verify a quorum of signatures.
                let pre = signing_preimage(ENV, SignKind::BatchAck, &r.to_bytes());
                let ok = sigs
                    .iter()
                    .enumerate()
                    .all(|(i, s)| set.validators()[i].key.verify(&pre, s).is_ok());
                assert!(ok);
            })
        });
    }
    g.finish();
}

fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

fn simulated_dag_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim_dag");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let mut printed = false;
    g.bench_function("n4_executed_txs", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (cpu0, wall0) = (thread_cpu(), Instant::now());
                // 10 transactions per ms: batches of up to 500 every 50 ms.
                let r = Scenario::new(4)
                    .seed(1)
                    .dag()
                    .mempool_flood(FeePool {
                        capacity: 100_000,
                        max_evictions: 1_000,
                        interval_ms: 10_000,
                        flood_every_ms: 1,
                        flood_burst: 10,
                    })
                    .min_commits(40)
                    .run();
                let cpu = thread_cpu().saturating_sub(cpu0);
                let spent = if cpu.is_zero() { wall0.elapsed() } else { cpu };
                total += spent;
                assert!(r.violations.is_empty(), "{}", r.summary());
                if !printed {
                    printed = true;
                    let txs = r.executed_txs[0];
                    println!(
                        "sim_dag n=4: {} blocks, {} txs executed per node in {} ms simulated; \
                         {:.0} executed txs per CPU-second of the whole 4-node simulation",
                        r.min_honest_height(),
                        txs,
                        r.end_time,
                        txs as f64 / spent.as_secs_f64()
                    );
                }
            }
            total
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    mempool(&mut c);
    batch_cert_verification(&mut c);
    simulated_dag_throughput(&mut c);
    c.final_summary();
}
