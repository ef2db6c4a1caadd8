//! Execution throughput (docs/benchmarks.md "Execution"): one in-memory state
//! of 1,000,000 accounts, blocks of 10,000 transfers, signatures excluded
//! (they are verified before execution and measured in qbind-core's bench).
//!
//! Groups, all in one run so their ratios are comparable:
//! - `exec/ceiling/<pct>`: a plain `HashMap<AccountId, (u64, u128)>` loop
//!   (with the same hasher as the `Ledger`'s map, foldhash) doing the same
//!   balance and nonce updates in place, no checks beyond the balance, no
//!   receipts, no commitment;
//! - `exec/sequential/<pct>`: `qbind_core::execution::execute_block`, which
//!   includes receipts and the new state root (the outcome is not applied:
//!   every iteration executes the same block against the same state);
//! - `exec/sequential_no_root/<pct>`: the same steps without the commitment
//!   (the state root is not maintained): what the root costs;
//! - `exec/stage_b_1t/<pct>`, `exec/stage_b_2t/<pct>`: `StageBExecutor` on
//!   a dedicated rayon pool of 1 and 2 threads.
//!
//! - `exec/commitment_delta/<n>`: only the state-root update for the `n`
//!   changed accounts of the 0 % block (throughput in accounts), on this
//!   thread and (`commitment_delta_2t`) split over a 2-thread pool.
//!
//! - `exec/phase/<name>`: the serial steps of Stage B alone, on the 0 %
//!   block: `admission` (`admit_transactions`), `components_1t` /
//!   `components_2t` (`conflict_components` on a 1- and a 2-thread pool) and
//!   `sort_changes` (sorting the block's 20,001 changes by id, which Stage B
//!   overlaps with hashing and the sequential executor does not).
//!
//! - `exec/phase/leaf_element_1000`, `exec/phase/blake3_hash32_1000`,
//!   `exec/phase/blake3_xof1024_1000`: 1,000 account leaves against 1,000
//!   BLAKE3 calls (same key, same 56-byte inputs) with a 32-byte output (one
//!   compression) and a 1,024-byte output (16 compressions): whether a
//!   leaf costs its compressions' work or one compression's latency.
//!
//! `<pct>` is the share of transactions that touch one hot account (as
//! recipient): 0 %, 10 %, 100 %.
//!
//! The rows above execute the same block every iteration, so its 20,000
//! accounts stay in the CPU caches: a best case no chain sees. The `cold`
//! rows (`exec/ceiling_cold/0`, `exec/sequential_cold/0`,
//! `exec/stage_b_2t_cold/0`) go round [`COLD_BLOCKS`] different 0 % blocks
//! with disjoint senders and random recipients, one per iteration, so each
//! block's accounts were last touched 15 blocks (about 50 MB of other
//! accounts and transactions) earlier: what consecutive blocks over a large
//! state look like.
//!
//! `QBIND_BENCH_ACCOUNTS` overrides the account count (default 1,000,000).

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use blake3::hazmat::HasherExt;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use qbind_core::crypto::{KeyPair, PublicKey, Signature};
use qbind_core::execution::*;
use qbind_core::types::{AccountId, Height};
use qbind_exec::{StageBConfig, StageBExecutor, conflict_components};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BLOCK: usize = 10_000;
/// Distinct blocks the `cold` rows go round.
const COLD_BLOCKS: usize = 16;

type PlainMap = HashMap<AccountId, (u64, u128), foldhash::fast::RandomState>;

struct Setup {
    ledger: Ledger,
    plain: PlainMap,
    blocks: Vec<(u32, Vec<Transaction>)>,
    cold: Vec<Vec<Transaction>>,
}

/// A block from `senders` (each at nonce 0): `pct` % of the transfers go to
/// the hot account `others[0]`, the rest to random accounts of
/// `others[1..]`.
fn transfer_block(
    senders: &[(PublicKey, AccountId)],
    others: &[AccountId],
    pct: u32,
    rng: &mut ChaCha8Rng,
    zero: &Signature,
) -> Vec<Transaction> {
    senders
        .iter()
        .enumerate()
        .map(|(i, (pk, _))| {
            let recipient = if (i % 100) < pct as usize {
                others[0]
            } else {
                others[1 + rng.gen_range(0..others.len() - 1)]
            };
            let payload = TransferPayload::V1(TransferPayloadV1 {
                recipient,
                amount: rng.gen_range(1..1_000),
                gas_limit: 37_352,
                max_fee_per_gas: 1,
            });
            Transaction::from_parts(pk.clone(), 0, payload, zero.clone())
        })
        .collect()
}

fn setup() -> Setup {
    let accounts: usize = std::env::var("QBIND_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let senders: Vec<(PublicKey, AccountId)> = (0..BLOCK)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let pk = KeyPair::from_seed(&seed).public_key().clone();
            let id = AccountId::from_public_key(&pk);
            (pk, id)
        })
        .collect();
    // Senders of the cold blocks: random key bytes stand for public keys
    // (execution reads only the id derived from them; signatures are not
    // checked here).
    let cold_senders: Vec<(PublicKey, AccountId)> = (0..COLD_BLOCKS * BLOCK)
        .map(|_| {
            let mut bytes = vec![0u8; 1312];
            rng.fill(&mut bytes[..]);
            let pk = PublicKey::from_bytes(&bytes).expect("key length");
            let id = AccountId::from_public_key(&pk);
            (pk, id)
        })
        .collect();
    let others: Vec<AccountId> = (0..accounts.saturating_sub(BLOCK * (1 + COLD_BLOCKS)))
        .map(|_| AccountId(rng.r#gen()))
        .collect();
    let balances = senders
        .iter()
        .chain(&cold_senders)
        .map(|(_, id)| *id)
        .chain(others.iter().copied())
        .map(|id| (id, 1_000_000_000u128));
    let ledger = Ledger::genesis(balances).expect("genesis");
    let plain: PlainMap = ledger
        .sorted_accounts()
        .into_iter()
        .map(|(id, a)| (id, (a.nonce, a.balance)))
        .collect();
    let zero = Signature::from_bytes(&[0u8; 2420]).expect("signature length");
    let blocks = [0u32, 10, 100]
        .into_iter()
        .map(|pct| (pct, transfer_block(&senders, &others, pct, &mut rng, &zero)))
        .collect();
    let cold = cold_senders
        .chunks(BLOCK)
        .map(|senders| transfer_block(senders, &others, 0, &mut rng, &zero))
        .collect();
    Setup {
        ledger,
        plain,
        blocks,
        cold,
    }
}

/// The ceiling: the same debits, credits and nonce increments on a plain map.
fn ceiling(map: &mut PlainMap, txs: &[Transaction], proposer: AccountId) {
    let mut reward = 0u128;
    for tx in txs {
        let fee = 37_352u128;
        let amount = tx.payload().amount();
        let recipient = tx.payload().recipient();
        let sender = map.entry(tx.sender_id()).or_insert((0, 0));
        if sender.1 >= fee + amount {
            sender.1 -= fee + amount;
            sender.0 += 1;
            map.entry(recipient).or_insert((0, 0)).1 += amount;
            reward += fee - fee / 2;
        }
    }
    map.entry(proposer).or_insert((0, 0)).1 += reward;
}

/// `execute_block`'s steps with the commitment delta left at zero (the
/// receipts and account changes are the same; the state root is not
/// maintained).
fn sequential_without_root(
    ledger: &Ledger,
    ctx: &BlockContext,
    txs: &[Transaction],
) -> BlockOutcome {
    let admissions = admit_transactions(&ctx.config, txs);
    let (receipts, changes) =
        apply_transactions(ledger, &ctx.config, txs, &admissions).expect("apply");
    finish_block(ledger, ctx, receipts, changes, |_| {
        CommitmentDelta::default()
    })
    .expect("finish")
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let ctx = BlockContext {
        height: Height(1),
        proposer: AccountId([0xee; 32]),
        // 10,000 transfers need 373,520,000 gas; the MainNet block limit
        // (30,000,000) would admit only 803 of them.
        config: ExecutionConfig {
            block_gas_limit: (BLOCK as u64) * 37_352,
            ..ExecutionConfig::mainnet()
        },
    };
    let pool = |n| {
        Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("pool"),
        )
    };
    let one = StageBExecutor::with_pool(StageBConfig::default(), pool(1));
    let two = StageBExecutor::with_pool(StageBConfig::default(), pool(2));
    let mut group = c.benchmark_group("exec");
    group.sample_size(20);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(4));
    group.throughput(Throughput::Elements(BLOCK as u64));
    for (pct, txs) in &s.blocks {
        // Equality and stats, printed once for the record.
        let reference = execute_block(&s.ledger, &ctx, txs).expect("execute");
        let no_root = sequential_without_root(&s.ledger, &ctx, txs);
        assert_eq!(no_root.receipts, reference.receipts);
        assert_eq!(no_root.transition.changes, reference.transition.changes);
        let (b, stats) = two.execute(&s.ledger, &ctx, txs).expect("stage b");
        assert_eq!(b, reference);
        eprintln!(
            "conflicts {pct}%: {stats:?}; success {}",
            reference
                .receipts
                .iter()
                .filter(|r| r.status == TxStatus::Success)
                .count()
        );
        let mut plain = s.plain.clone();
        group.bench_with_input(BenchmarkId::new("ceiling", pct), txs, |bch, txs| {
            bch.iter(|| ceiling(&mut plain, black_box(txs), ctx.proposer))
        });
        group.bench_with_input(BenchmarkId::new("sequential", pct), txs, |bch, txs| {
            bch.iter(|| execute_block(&s.ledger, &ctx, black_box(txs)).expect("execute"))
        });
        // The same executor without the state root (the commitment delta
        // left at zero): what maintaining the root costs, in the same run.
        group.bench_with_input(
            BenchmarkId::new("sequential_no_root", pct),
            txs,
            |bch, txs| bch.iter(|| sequential_without_root(&s.ledger, &ctx, black_box(txs))),
        );
        group.bench_with_input(BenchmarkId::new("stage_b_1t", pct), txs, |bch, txs| {
            bch.iter(|| {
                one.execute(&s.ledger, &ctx, black_box(txs))
                    .expect("stage b")
            })
        });
        group.bench_with_input(BenchmarkId::new("stage_b_2t", pct), txs, |bch, txs| {
            bch.iter(|| {
                two.execute(&s.ledger, &ctx, black_box(txs))
                    .expect("stage b")
            })
        });
    }
    // The same work over blocks whose accounts are not in the caches.
    for txs in &s.cold {
        let reference = execute_block(&s.ledger, &ctx, txs).expect("execute");
        assert_eq!(
            two.execute(&s.ledger, &ctx, txs).expect("stage b").0,
            reference
        );
    }
    let mut plain = s.plain.clone();
    let mut turn = 0usize;
    let mut next_cold = || {
        turn = (turn + 1) % s.cold.len();
        &s.cold[turn]
    };
    group.bench_function(BenchmarkId::new("ceiling_cold", 0), |bch| {
        bch.iter(|| ceiling(&mut plain, black_box(next_cold()), ctx.proposer))
    });
    group.bench_function(BenchmarkId::new("sequential_cold", 0), |bch| {
        bch.iter(|| execute_block(&s.ledger, &ctx, black_box(next_cold())).expect("execute"))
    });
    group.bench_function(BenchmarkId::new("stage_b_2t_cold", 0), |bch| {
        bch.iter(|| {
            two.execute(&s.ledger, &ctx, black_box(next_cold()))
                .expect("stage b")
        })
    });
    // Stage B's serial steps on their own (0 % block).
    let txs0 = &s.blocks[0].1;
    let admissions = admit_transactions(&ctx.config, txs0);
    group.bench_function(BenchmarkId::new("phase", "admission"), |bch| {
        bch.iter(|| admit_transactions(&ctx.config, black_box(txs0)))
    });
    for (name, p) in [("components_1t", pool(1)), ("components_2t", pool(2))] {
        group.bench_function(BenchmarkId::new("phase", name), |bch| {
            bch.iter(|| p.install(|| conflict_components(black_box(txs0), &admissions)))
        });
    }
    // The commitment alone: the delta of the 0 % block's 20,001 changes
    // (two BLAKE3 expansions per changed account), on this thread.
    let changes = execute_block(&s.ledger, &ctx, &s.blocks[0].1)
        .expect("execute")
        .transition
        .changes;
    group.throughput(Throughput::Elements(changes.len() as u64));
    // In the order an overlay yields them: arbitrary (here: shuffled).
    let mut shuffled = changes.clone();
    shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(7));
    group.bench_function(BenchmarkId::new("phase", "sort_changes"), |bch| {
        bch.iter(|| {
            let mut c = black_box(&shuffled).clone();
            sort_changes_by_id(&mut c);
            c
        })
    });
    // The standard library's comparison sort on the same input, for scale.
    group.bench_function(BenchmarkId::new("phase", "sort_unstable"), |bch| {
        bch.iter(|| {
            let mut c = black_box(&shuffled).clone();
            c.sort_unstable_by_key(|c| c.id);
            c
        })
    });
    group.bench_function(BenchmarkId::new("commitment_delta", changes.len()), |bch| {
        bch.iter(|| CommitmentDelta::of(black_box(&changes)))
    });
    // The same delta split over a 2-thread pool: pure hashing, no shared
    // state, so it shows how much two threads can gain on this machine.
    let two_pool = pool(2);
    group.bench_function(
        BenchmarkId::new("commitment_delta_2t", changes.len()),
        |bch| {
            bch.iter(|| {
                two_pool.install(|| {
                    use rayon::prelude::*;
                    black_box(&changes)
                        .par_chunks(512)
                        .map(CommitmentDelta::of)
                        .reduce(CommitmentDelta::default, |a, b| a.combine(&b))
                })
            })
        },
    );
    // What one account leaf costs against BLAKE3 calls of the same input
    // (1,000 distinct 56-byte inputs each): a 32-byte hash (one
    // compression) and a 1,024-byte output (16 compressions). If the three
    // are close, a leaf costs one compression's latency, not its four
    // compressions' work.
    let inputs: Vec<(AccountId, Account)> = changes
        .iter()
        .take(1_000)
        .map(|c| (c.id, c.after))
        .collect();
    let key_material = |id: &AccountId, a: &Account| {
        let mut m = [0u8; 56];
        m[..32].copy_from_slice(&id.0);
        m[32..40].copy_from_slice(&a.nonce.to_be_bytes());
        m[40..].copy_from_slice(&a.balance.to_be_bytes());
        m
    };
    // The leaf's own key: the context hashed once, as `leaf_element` does.
    let context_key = blake3::hazmat::hash_derive_key_context(LEAF_CONTEXT);
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function(BenchmarkId::new("phase", "leaf_element_1000"), |bch| {
        bch.iter(|| {
            for (id, a) in black_box(&inputs) {
                black_box(leaf_element(id, a));
            }
        })
    });
    group.bench_function(BenchmarkId::new("phase", "blake3_hash32_1000"), |bch| {
        bch.iter(|| {
            for (id, a) in black_box(&inputs) {
                let mut h = <blake3::Hasher as HasherExt>::new_from_context_key(&context_key);
                h.update(&key_material(id, a));
                black_box(h.finalize());
            }
        })
    });
    group.bench_function(BenchmarkId::new("phase", "blake3_xof1024_1000"), |bch| {
        bch.iter(|| {
            for (id, a) in black_box(&inputs) {
                let mut h = <blake3::Hasher as HasherExt>::new_from_context_key(&context_key);
                h.update(&key_material(id, a));
                let mut out = [0u8; 1024];
                h.finalize_xof().fill(&mut out);
                black_box(out);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
