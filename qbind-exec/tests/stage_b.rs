//! Stage B equals the sequential reference (spec §2.2 "Critical Invariant";
//! runbook §4.4): property tests on random blocks with 0 %, 10 %, 50 % and
//! 100 % conflicts, and a soak over chained random blocks.
//!
//! Signatures: transactions carry an all-zero signature. Neither executor
//! checks signatures (they are verified before execution), so equality does
//! not depend on them.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use qbind_core::crypto::{KeyPair, PublicKey, Signature};
use qbind_core::execution::*;
use qbind_core::traits::StorageError;
use qbind_core::types::{AccountId, Height};
use qbind_exec::{StageBConfig, StageBExecutor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const KEYS: usize = 96;

fn keys() -> &'static Vec<(PublicKey, AccountId)> {
    static K: OnceLock<Vec<(PublicKey, AccountId)>> = OnceLock::new();
    K.get_or_init(|| {
        (0..KEYS)
            .map(|i| {
                let pk = KeyPair::from_seed(&[i as u8; 32]).public_key().clone();
                let id = AccountId::from_public_key(&pk);
                (pk, id)
            })
            .collect()
    })
}

fn executor() -> &'static StageBExecutor {
    static E: OnceLock<StageBExecutor> = OnceLock::new();
    E.get_or_init(|| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        StageBExecutor::with_pool(
            StageBConfig {
                min_parallel_txs: 2,
                ..StageBConfig::default()
            },
            Arc::new(pool),
        )
    })
}

fn genesis() -> Ledger {
    Ledger::genesis(keys().iter().map(|(_, id)| (*id, 5_000_000u128))).unwrap()
}

/// A random block where about `conflict_pct` % of the transactions touch one
/// hot account (as sender or recipient) and the rest use accounts no other
/// transaction of the block uses.
fn random_block(
    rng: &mut ChaCha8Rng,
    ledger: &Ledger,
    n: usize,
    conflict_pct: u32,
) -> Vec<Transaction> {
    let mut next: Vec<u64> = keys().iter().map(|(_, id)| ledger.get(id).nonce).collect();
    let mut free: Vec<usize> = (1..KEYS).collect();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let hot = rng.gen_range(0..100) < conflict_pct;
        let sender = if hot && rng.gen_bool(0.5) || free.is_empty() {
            0
        } else {
            free.swap_remove(rng.gen_range(0..free.len()))
        };
        let recipient = if hot && sender != 0 {
            keys()[0].1
        } else {
            AccountId([
                (i % 200) as u8 + 1,
                rng.r#gen(),
                rng.r#gen(),
                7,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                9,
            ])
        };
        let nonce = if rng.gen_bool(0.9) {
            next[sender]
        } else {
            rng.gen_range(0..4)
        };
        if nonce == next[sender] {
            next[sender] += 1;
        }
        let amount = match rng.gen_range(0..10) {
            0 => 10_000_000,
            _ => rng.gen_range(0..50_000),
        };
        // Now and then a limit far above the transfer's gas: whether such a
        // transaction fits depends on what the block included before it.
        let gas_limit = match rng.gen_range(0..20) {
            0 | 1 => rng.gen_range(20_000..37_352),
            2 => rng.gen_range(37_352..2_000_000),
            _ => 37_352,
        };
        let payload = TransferPayload::V1(TransferPayloadV1 {
            recipient,
            amount,
            gas_limit,
            max_fee_per_gas: rng.gen_range(0..5),
        });
        let zero = Signature::from_bytes(&[0u8; 2420]).unwrap();
        out.push(Transaction::from_parts(
            keys()[sender].0.clone(),
            nonce,
            payload,
            zero,
        ));
    }
    out
}

fn context(height: u64, rng: &mut ChaCha8Rng) -> BlockContext {
    let mut config = ExecutionConfig::mainnet();
    if rng.gen_bool(0.2) {
        config.block_gas_limit = 1_000_000;
    }
    let proposer = if rng.gen_bool(0.3) {
        keys()[rng.gen_range(0..KEYS)].1
    } else {
        AccountId([0xee; 32])
    };
    BlockContext {
        height: Height(height),
        proposer,
        config,
    }
}

/// Run `blocks` chained blocks through both executors; returns the number of
/// blocks that took the parallel path, the number whose old account
/// values were hashed early (the single-chunk path), and the number that took
/// the parallel path with a sequential suffix past the gas-safe prefix.
fn compare_chain(
    seed: u64,
    blocks: usize,
    max_txs: usize,
    conflict_pct: u32,
) -> (usize, usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seq = genesis();
    let mut par = seq.clone();
    let mut parallel_blocks = 0;
    let mut early_blocks = 0;
    let mut suffix_blocks = 0;
    for h in 0..blocks {
        let n = rng.gen_range(0..=max_txs);
        let txs = random_block(&mut rng, &seq, n, conflict_pct);
        let ctx = context(h as u64 + 1, &mut rng);
        let expected = execute_block(&seq, &ctx, &txs).unwrap();
        let (got, stats) = executor().execute(&par, &ctx, &txs).unwrap();
        assert_eq!(
            got, expected,
            "seed {seed}, block {h}: Stage B differs from sequential"
        );
        assert_eq!(stats.txs, n);
        if stats.parallel() {
            parallel_blocks += 1;
            assert!(stats.parallel_txs > 0);
            if stats.sequential_suffix > 0 {
                suffix_blocks += 1;
            }
        }
        if stats.old_elements_early {
            early_blocks += 1;
            assert!(
                !stats.parallel(),
                "early hashing only on the single-chunk path"
            );
        }
        seq.apply(&expected.transition).unwrap();
        par.apply(&got.transition).unwrap();
        assert_eq!(seq, par);
    }
    (parallel_blocks, early_blocks, suffix_blocks)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Stage B ≡ sequential (receipts, changes, summary, root) over two
    /// chained blocks, at the given conflict rates.
    #[test]
    fn stage_b_equals_sequential(seed in any::<u64>(), pct in prop_oneof![Just(0u32), Just(10), Just(50), Just(100)]) {
        compare_chain(seed, 2, 40, pct);
    }
}

#[test]
fn parallel_path_is_taken_without_conflicts_and_not_with_total_conflict() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let ledger = genesis();
    let ctx = BlockContext {
        height: Height(1),
        proposer: AccountId([0xee; 32]),
        config: ExecutionConfig::mainnet(),
    };
    let txs = random_block(&mut rng, &ledger, 60, 0);
    let (out, stats) = executor().execute(&ledger, &ctx, &txs).unwrap();
    assert_eq!(out, execute_block(&ledger, &ctx, &txs).unwrap());
    assert!(stats.parallel());
    assert_eq!(stats.components, stats.scheduled);
    // Every transaction from the same sender: one component, sequential path.
    let zero = Signature::from_bytes(&[0u8; 2420]).unwrap();
    let same: Vec<Transaction> = (0..50u64)
        .map(|n| {
            let p = TransferPayload::V1(TransferPayloadV1 {
                recipient: AccountId([n as u8; 32]),
                amount: 1,
                gas_limit: 37_352,
                max_fee_per_gas: 1,
            });
            Transaction::from_parts(keys()[0].0.clone(), n, p, zero.clone())
        })
        .collect();
    let (out, stats) = executor().execute(&ledger, &ctx, &same).unwrap();
    assert_eq!(out, execute_block(&ledger, &ctx, &same).unwrap());
    assert_eq!(
        (
            stats.components,
            stats.largest_component,
            stats.parallel_txs
        ),
        (1, 50, 0)
    );
    // ... whose old account values were hashed while it ran.
    assert!(stats.old_elements_early, "{stats:?}");
    // Switched off: always the sequential path.
    let off = StageBExecutor::new(StageBConfig {
        enabled: false,
        ..StageBConfig::default()
    });
    let (out, stats) = off.execute(&ledger, &ctx, &txs).unwrap();
    assert_eq!(out, execute_block(&ledger, &ctx, &txs).unwrap());
    assert!(!stats.parallel());
    assert!(StageBConfig::default().enabled);
}

/// A block of `n` transfers from distinct senders at their next nonce, each
/// to a fresh account, at `price` per gas.
fn disjoint_block(ledger: &Ledger, n: usize, price: u128) -> Vec<Transaction> {
    let zero = Signature::from_bytes(&[0u8; 2420]).unwrap();
    (0..n)
        .map(|i| {
            let (pk, id) = &keys()[i + 1];
            let payload = TransferPayload::V1(TransferPayloadV1 {
                recipient: AccountId([(i + 1) as u8; 32]),
                amount: 5,
                gas_limit: 37_352,
                max_fee_per_gas: price,
            });
            Transaction::from_parts(pk.clone(), ledger.get(id).nonce, payload, zero.clone())
        })
        .collect()
}

#[test]
fn proposer_credit_is_equal_wherever_the_proposer_sits() {
    let ledger = genesis();
    let n = 80;
    for price in [0u128, 1, 3] {
        let txs = disjoint_block(&ledger, n, price);
        // The proposer: untouched, an early sender, a late sender (its
        // component lands in another chunk), a recipient, an empty account.
        let proposers = [
            AccountId([0xee; 32]),
            keys()[1].1,
            keys()[n].1,
            AccountId([40; 32]),
            keys()[0].1,
        ];
        for proposer in proposers {
            let ctx = BlockContext {
                height: Height(1),
                proposer,
                config: ExecutionConfig::mainnet(),
            };
            let expected = execute_block(&ledger, &ctx, &txs).unwrap();
            let (got, stats) = executor().execute(&ledger, &ctx, &txs).unwrap();
            assert!(stats.parallel(), "{stats:?}");
            assert_eq!(got, expected, "price {price}, proposer {proposer:?}");
            let ids: Vec<AccountId> = got.transition.changes.iter().map(|c| c.id).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "changes not ascending");
            let credited = got.transition.changes.iter().any(|c| c.id == proposer);
            let touched = txs
                .iter()
                .any(|t| t.sender_id() == proposer || t.payload().recipient() == proposer);
            assert_eq!(credited, price > 0 || touched);
        }
    }
}

#[test]
fn duplicate_senders_and_rejections_keep_receipt_order() {
    // Sender 1 sends three times (nonces 0, 1, 2, one of them wrong), sender
    // 2 twice, and some transactions are rejected by admission (gas limit
    // below the minimum or over the block limit) between them.
    let ledger = genesis();
    let zero = Signature::from_bytes(&[0u8; 2420]).unwrap();
    let tx = |k: usize, nonce: u64, gas_limit: u64, to: u8| {
        let payload = TransferPayload::V1(TransferPayloadV1 {
            recipient: AccountId([to; 32]),
            amount: 11,
            gas_limit,
            max_fee_per_gas: 2,
        });
        Transaction::from_parts(keys()[k].0.clone(), nonce, payload, zero.clone())
    };
    let mut txs = disjoint_block(&ledger, 70, 1);
    txs.insert(3, tx(1, 1, 37_352, 200));
    txs.insert(10, tx(1, 5, 37_352, 201));
    txs.insert(20, tx(1, 2, 37_352, 202));
    txs.insert(30, tx(2, 1, 1, 203));
    txs.insert(40, tx(2, 1, 37_352, 1));
    txs.push(tx(3, 1, 29_000_000, 204));
    let ctx = BlockContext {
        height: Height(1),
        proposer: keys()[2].1,
        config: ExecutionConfig::mainnet(),
    };
    let expected = execute_block(&ledger, &ctx, &txs).unwrap();
    let (got, stats) = executor().execute(&ledger, &ctx, &txs).unwrap();
    assert!(stats.parallel());
    assert!(stats.scheduled < txs.len(), "some rejected by admission");
    assert_eq!(got, expected);
    let codes: Vec<u16> = got.receipts.iter().map(|r| r.status.code()).collect();
    assert_eq!(codes[10], 206, "wrong nonce rejected in place");
    assert_eq!(codes[30], 202, "gas limit below minimum");
    assert_eq!(*codes.last().unwrap(), 205, "block gas limit");
}

/// Pools of 1, 3 and 5 threads (the account index has one shard per thread).
fn shard_pools() -> &'static [rayon::ThreadPool] {
    static P: OnceLock<Vec<rayon::ThreadPool>> = OnceLock::new();
    P.get_or_init(|| {
        [1, 3, 5]
            .into_iter()
            .map(|n| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .unwrap()
            })
            .collect()
    })
}

/// The components by brute force: transactions i and j are joined when they
/// share an account, then closed transitively (quadratic, for tests only).
fn naive_components(txs: &[Transaction], admitted: &[bool]) -> Vec<Vec<usize>> {
    let n = txs.len();
    let accounts = |t: &Transaction| [t.sender_id(), t.payload().recipient()];
    let mut label: Vec<usize> = (0..n).collect();
    loop {
        let mut changed = false;
        for i in 0..n {
            for j in 0..n {
                if admitted[i]
                    && admitted[j]
                    && accounts(&txs[i])
                        .iter()
                        .any(|a| accounts(&txs[j]).contains(a))
                    && label[j] < label[i]
                {
                    label[i] = label[j];
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut out: Vec<Vec<usize>> = Vec::new();
    for i in (0..n).filter(|&i| admitted[i]) {
        match out.iter_mut().find(|c| label[c[0]] == label[i]) {
            Some(c) => c.push(i),
            None => out.push(vec![i]),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// The flat union–find components equal the brute-force ones (same
    /// components, same order, indices ascending), with admission
    /// rejections left out.
    #[test]
    fn components_equal_brute_force(seed in any::<u64>(), pct in 0u32..=100, n in 0usize..60) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let txs = random_block(&mut rng, &genesis(), n, pct);
        let admissions: Vec<Result<(), ()>> =
            (0..n).map(|_| if rng.gen_bool(0.2) { Err(()) } else { Ok(()) }).collect();
        let admitted: Vec<bool> = admissions.iter().map(Result::is_ok).collect();
        let got = qbind_exec::conflict_components(&txs, &admissions);
        let want = naive_components(&txs, &admitted);
        // The account index is sharded per pool thread: any count agrees.
        for pool in shard_pools() {
            prop_assert_eq!(&pool.install(|| qbind_exec::conflict_components(&txs, &admissions)), &got);
        }
        let got_vec: Vec<Vec<usize>> = got.iter().map(<[usize]>::to_vec).collect();
        prop_assert_eq!(&got_vec, &want);
        prop_assert_eq!(got.len(), want.len());
        prop_assert_eq!(got.transactions(), admitted.iter().filter(|a| **a).count());
        prop_assert_eq!(got.largest(), want.iter().map(Vec::len).max().unwrap_or(0));
    }
}

/// `txs` with about `share` of the recipients replaced by ids that share
/// their first 8 bytes (the account index's key) with another account of
/// the block but differ after them, and some by exact copies of another
/// account: distinct accounts must stay distinct, equal ones equal.
fn with_prefix_twins(rng: &mut ChaCha8Rng, txs: &[Transaction], share: f64) -> Vec<Transaction> {
    let accounts: Vec<AccountId> = txs
        .iter()
        .flat_map(|t| [t.sender_id(), t.payload().recipient()])
        .collect();
    txs.iter()
        .map(|t| {
            if accounts.is_empty() || !rng.gen_bool(share) {
                return t.clone();
            }
            let mut recipient = accounts[rng.gen_range(0..accounts.len())];
            if rng.gen_bool(0.7) {
                // Same prefix, another tail (one of a few, so twins of
                // twins occur too).
                let at = rng.gen_range(8..32);
                recipient.0[at] ^= rng.gen_range(1..4u8);
            }
            let TransferPayload::V1(mut p) = *t.payload() else {
                return t.clone();
            };
            p.recipient = recipient;
            Transaction::from_parts(
                t.sender().clone(),
                t.nonce(),
                TransferPayload::V1(p),
                Signature::from_bytes(&[0u8; 2420]).unwrap(),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Ids that share the index's 8-byte key but not the whole id are
    /// different accounts: the components still equal the brute-force ones
    /// and Stage B still equals the sequential executor.
    #[test]
    fn ids_sharing_a_prefix_are_told_apart(seed in any::<u64>(), pct in prop_oneof![Just(0u32), Just(10), Just(100)], n in 0usize..60) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ledger = genesis();
        let block = random_block(&mut rng, &ledger, n, pct);
        let txs = with_prefix_twins(&mut rng, &block, 0.5);
        let admissions: Vec<Result<(), ()>> =
            (0..n).map(|_| if rng.gen_bool(0.1) { Err(()) } else { Ok(()) }).collect();
        let admitted: Vec<bool> = admissions.iter().map(Result::is_ok).collect();
        let want = naive_components(&txs, &admitted);
        for pool in shard_pools() {
            let got = pool.install(|| qbind_exec::conflict_components(&txs, &admissions));
            let got_vec: Vec<Vec<usize>> = got.iter().map(<[usize]>::to_vec).collect();
            prop_assert_eq!(&got_vec, &want);
        }
        let ctx = context(1, &mut rng);
        let expected = execute_block(&ledger, &ctx, &txs).unwrap();
        let (got, _) = executor().execute(&ledger, &ctx, &txs).unwrap();
        prop_assert_eq!(got, expected);
    }
}

/// A ledger with one account that cannot be read.
struct Unreadable {
    ledger: Ledger,
    broken: AccountId,
}

impl AccountReader for Unreadable {
    fn account(&self, id: &AccountId) -> Result<Account, StateError> {
        if *id == self.broken {
            return Err(StateError::Storage(StorageError::Io {
                detail: "unreadable".into(),
            }));
        }
        self.ledger.account(id)
    }

    fn summary(&self) -> Result<StateSummary, StateError> {
        self.ledger.summary()
    }
}

/// When one component holds the whole block, Stage B hashes the touched
/// accounts' old values while the transactions run. An account it cannot
/// read there must not fail the block unless a transaction really reads it
/// (as in the sequential executor, whose read-ahead ignores such errors).
#[test]
fn unreadable_account_fails_a_block_only_when_a_transaction_reads_it() {
    let zero = Signature::from_bytes(&[0u8; 2420]).unwrap();
    let broken = AccountId([0xbb; 32]);
    let state = Unreadable {
        ledger: genesis(),
        broken,
    };
    let ctx = BlockContext {
        height: Height(1),
        proposer: AccountId([0xee; 32]),
        config: ExecutionConfig::mainnet(),
    };
    // One sender throughout: one component, the single-chunk path.
    let block = |bad_nonce: u64| -> Vec<Transaction> {
        (0..40u64)
            .map(|n| {
                let (recipient, nonce) = if n == 20 {
                    (broken, bad_nonce)
                } else {
                    (AccountId([n as u8 + 1; 32]), if n < 20 { n } else { n - 1 })
                };
                let p = TransferPayload::V1(TransferPayloadV1 {
                    recipient,
                    amount: 1,
                    gas_limit: 37_352,
                    max_fee_per_gas: 1,
                });
                Transaction::from_parts(keys()[0].0.clone(), nonce, p, zero.clone())
            })
            .collect()
    };
    // The transfer to the unreadable account has a wrong nonce: rejected
    // before its recipient is read, so the block executes.
    let txs = block(99);
    let expected = execute_block(&state, &ctx, &txs).unwrap();
    let (got, stats) = executor().execute(&state, &ctx, &txs).unwrap();
    assert_eq!((stats.components, stats.chunks), (1, 0), "{stats:?}");
    assert!(
        !stats.old_elements_early,
        "the early pass could not read every account"
    );
    assert_eq!(got, expected);
    assert_eq!(got.receipts[20].status.code(), 206);
    // With the right nonce it is read: both executors fail the block.
    let txs = block(20);
    assert!(execute_block(&state, &ctx, &txs).is_err());
    assert!(executor().execute(&state, &ctx, &txs).is_err());
}

#[test]
fn parallel_signature_checks_match_the_sequential_ones() {
    use qbind_core::types::NetworkEnvironment;
    let env = NetworkEnvironment::Testnet;
    let payload = TransferPayload::V1(TransferPayloadV1 {
        recipient: AccountId([5; 32]),
        amount: 1,
        gas_limit: 37_352,
        max_fee_per_gas: 1,
    });
    let mut txs: Vec<Transaction> = (0..12u8)
        .map(|i| Transaction::sign(&KeyPair::from_seed(&[i; 32]), env, 0, payload))
        .collect();
    let zero = Signature::from_bytes(&[0u8; 2420]).unwrap();
    txs[3] = Transaction::from_parts(txs[3].sender().clone(), 0, payload, zero);
    txs[7] = Transaction::sign(
        &KeyPair::from_seed(&[7; 32]),
        NetworkEnvironment::Mainnet,
        0,
        payload,
    );
    let bad = qbind_exec::invalid_signatures_parallel(env, &txs);
    assert_eq!(bad, vec![3, 7]);
    assert_eq!(bad, invalid_signatures(env, &txs));
}

/// Soak (runbook §4.4): chained random blocks, zero mismatches, parallel path
/// demonstrably taken.
#[test]
fn soak_stage_b_matches_sequential() {
    let (mut parallel, mut early, mut suffix) = (0, 0, 0);
    for (i, pct) in [0u32, 10, 50, 100].into_iter().enumerate() {
        let (p, e, s) = compare_chain(1000 + i as u64, 500, 80, pct);
        parallel += p;
        early += e;
        suffix += s;
    }
    assert!(
        suffix > 50,
        "a sequential suffix after a parallel prefix in only {suffix} of 2000 blocks"
    );
    assert!(
        parallel > 500,
        "parallel path taken in only {parallel} of 2000 blocks"
    );
    assert!(early > 100, "early hashing in only {early} of 2000 blocks");
    eprintln!(
        "soak: 2000 blocks, 0 mismatches, {parallel} on the parallel path, {early} hashed early, \
         {suffix} with a sequential suffix"
    );
}

#[test]
#[ignore = "slow: 200,000 blocks; run with --ignored"]
fn soak_stage_b_matches_sequential_slow() {
    let (mut parallel, mut early) = (0, 0);
    for (i, pct) in [0u32, 10, 50, 100].into_iter().enumerate() {
        let (p, e, _) = compare_chain(5000 + i as u64, 50_000, 80, pct);
        parallel += p;
        early += e;
    }
    assert!(parallel > 50_000);
    assert!(early > 10_000);
    eprintln!(
        "soak: 200000 blocks, 0 mismatches, {parallel} on the parallel path, {early} hashed early"
    );
}

/// Stage B as the reference application's block executor: the same writes,
/// state roots, reports and monetary epochs as the sequential reference,
/// block after block on two stores, with undecodable bytes and a bad
/// signature in the blocks (checked in parallel by Stage B).
#[test]
fn transfer_application_with_stage_b_equals_the_sequential_one() {
    use qbind_core::application::TransferApplication;
    use qbind_core::application::{Application, CommittedBlock, MonetarySettings};
    use qbind_core::codec::Encode;
    use qbind_core::monetary::{MonetaryConfig, MonetaryMode, SeigniorageRecipients};
    use qbind_core::traits::{Durability, MemoryBackend, StateBackend};
    use qbind_core::types::{Hash32, NetworkEnvironment, ValidatorId};

    let env = NetworkEnvironment::Devnet;
    let balances: Vec<(AccountId, u128)> = keys().iter().map(|(_, id)| (*id, 5_000_000)).collect();
    let stores = [MemoryBackend::new(), MemoryBackend::new()];
    for s in &stores {
        assert!(TransferApplication::write_genesis(s, &balances).unwrap());
    }
    let mut monetary = MonetaryConfig::mainnet();
    monetary.blocks_per_epoch = 2;
    monetary.mode = MonetaryMode::Active;
    let settings = MonetarySettings {
        config: monetary,
        pools: SeigniorageRecipients {
            validators: AccountId([0xe1; 32]),
            treasury: AccountId([0xe2; 32]),
            insurance: AccountId([0xe3; 32]),
            community: AccountId([0xe4; 32]),
        },
        stakes: vec![(AccountId([0xf0; 32]), 3), (AccountId([0xf1; 32]), 1)],
        staked: 1_000_000,
    };
    let base = TransferApplication::new(
        env,
        ExecutionConfig::devnet(),
        vec![AccountId([0xf0; 32]), AccountId([0xf1; 32])],
    )
    .with_monetary(settings);
    let mut sequential = base.clone();
    let mut stage_b = base.with_executor(executor().clone());
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for height in 1..=4u64 {
        let mut raw: Vec<Vec<u8>> = (0..48usize)
            .map(|i| {
                let payload = TransferPayload::V1(TransferPayloadV1 {
                    recipient: AccountId([rng.r#gen(); 32]),
                    amount: rng.gen_range(1..1_000),
                    gas_limit: 40_000,
                    max_fee_per_gas: rng.gen_range(1..4),
                });
                let key = KeyPair::from_seed(&[i as u8; 32]);
                Transaction::sign(&key, env, height - 1, payload).to_bytes()
            })
            .collect();
        raw.insert(5, b"not a transaction".to_vec());
        let wrong_chain = Transaction::sign(
            &KeyPair::from_seed(&[60; 32]),
            NetworkEnvironment::Mainnet,
            height - 1,
            TransferPayload::V1(TransferPayloadV1 {
                recipient: AccountId([1; 32]),
                amount: 1,
                gas_limit: 40_000,
                max_fee_per_gas: 1,
            }),
        );
        raw.insert(17, wrong_chain.to_bytes());
        let block = CommittedBlock {
            height: Height(height),
            id: Hash32([height as u8; 32]),
            proposer: ValidatorId((height % 2) as u32),
            txs: &raw,
            delivered: &raw,
            system: &[],
            key_log: qbind_core::system_tx::EMPTY_KEY_LOG,
        };
        let a = sequential.execute(&stores[0], &block).unwrap();
        let b = stage_b.execute(&stores[1], &block).unwrap();
        assert_eq!(a.state_root, b.state_root, "height {height}");
        assert_eq!(a.report, b.report, "height {height}");
        assert_eq!(a.epoch_closed, b.epoch_closed, "height {height}");
        assert_eq!(a.writes.ops(), b.writes.ops(), "height {height}");
        assert_eq!(a.report.rejected, 2, "undecodable + wrong chain");
        assert!(a.report.succeeded >= 40, "height {height}: {:?}", a.report);
        assert_eq!(a.epoch_closed.is_some(), height % 2 == 0);
        for (s, applied) in stores.iter().zip([a, b]) {
            s.write(applied.writes, Durability::Durable).unwrap();
        }
        assert_eq!(
            Application::<MemoryBackend>::state_root(&sequential, &stores[0]).unwrap(),
            Application::<MemoryBackend>::state_root(&stage_b, &stores[1]).unwrap()
        );
    }
}

/// Both executors on `txs`: the outcomes must be equal; returns the
/// sequential one and Stage B's statistics.
fn both(
    state: &Ledger,
    ctx: &BlockContext,
    txs: &[Transaction],
) -> (BlockOutcome, qbind_exec::StageBStats) {
    let expected = execute_block(state, ctx, txs).unwrap();
    let (got, stats) = executor().execute(state, ctx, txs).unwrap();
    assert_eq!(
        got, expected,
        "Stage B differs from the sequential executor"
    );
    (expected, stats)
}

/// Issue #17 finding 2: a transaction rejected at execution consumes no
/// block gas. A bad-nonce transaction whose gas limit is the whole block's
/// used to reserve it, and every later transaction of the block failed with
/// `BlockGasLimitExceeded` (free block stuffing).
#[test]
fn a_bad_nonce_transaction_with_the_block_gas_limit_does_not_stuff_the_block() {
    let ledger = genesis();
    let zero = Signature::from_bytes(&[0u8; 2420]).unwrap();
    let config = ExecutionConfig::mainnet();
    let stuffing = Transaction::from_parts(
        keys()[0].0.clone(),
        7, // the account's nonce is 0
        TransferPayload::V1(TransferPayloadV1 {
            recipient: AccountId([0x77; 32]),
            amount: 1,
            gas_limit: config.block_gas_limit,
            max_fee_per_gas: 1,
        }),
        zero,
    );
    let mut txs = vec![stuffing];
    txs.extend(disjoint_block(&ledger, 40, 1));
    let ctx = BlockContext {
        height: Height(1),
        proposer: AccountId([0xee; 32]),
        config,
    };
    let (out, stats) = both(&ledger, &ctx, &txs);
    let codes: Vec<u16> = out.receipts.iter().map(|r| r.status.code()).collect();
    assert_eq!(codes[0], 206, "stale nonce rejected");
    assert!(codes[1..].iter().all(|&c| c == 0), "{codes:?}");
    assert!(stats.parallel(), "{stats:?}");
    assert_eq!(out.gas_used, 40 * 37_352);
}

/// Issue #17 finding 2: a block that repeats an already executed
/// transaction (same bytes, as a resubmitter would send it) before a valid
/// one. The repeats are stale nonces and consume nothing; the valid
/// transactions execute, the same in both executors.
#[test]
fn resubmitted_executed_transactions_are_stale_and_consume_no_block_gas() {
    let mut ledger = genesis();
    let zero = Signature::from_bytes(&[0u8; 2420]).unwrap();
    let ctx = |height: u64| BlockContext {
        height: Height(height),
        proposer: AccountId([0xee; 32]),
        config: ExecutionConfig::mainnet(),
    };
    let transfer = |k: usize, nonce: u64, gas_limit: u64| {
        let payload = TransferPayload::V1(TransferPayloadV1 {
            recipient: AccountId([0x55; 32]),
            amount: 3,
            gas_limit,
            max_fee_per_gas: 0,
        });
        Transaction::from_parts(keys()[k].0.clone(), nonce, payload, zero.clone())
    };
    // Block 1 executes it.
    let executed = transfer(0, 0, 10_000_000);
    let (first, _) = both(&ledger, &ctx(1), std::slice::from_ref(&executed));
    assert_eq!(first.receipts[0].status, TxStatus::Success);
    ledger.apply(&first.transition).unwrap();
    // Block 2: the same bytes four times (their limits sum past the block
    // gas limit), then the sender's next transaction and others' transfers.
    let mut txs = vec![executed; 4];
    txs.push(transfer(0, 1, 37_352));
    txs.extend(disjoint_block(&ledger, 20, 1));
    let (out, stats) = both(&ledger, &ctx(2), &txs);
    let codes: Vec<u16> = out.receipts.iter().map(|r| r.status.code()).collect();
    assert_eq!(&codes[..4], &[206; 4], "repeats rejected as stale nonces");
    assert!(codes[4..].iter().all(|&c| c == 0), "{codes:?}");
    assert!(stats.parallel(), "{stats:?}");
    assert!(
        out.receipts[..4]
            .iter()
            .all(|r| r.gas_used == 0 && r.fee == 0)
    );
}

/// A block whose gas limits sum past the block gas limit: the gas-safe
/// prefix runs in parallel, the rest in block order on top of it. Prefix
/// transactions refused for their nonce leave room that suffix transactions
/// use; a suffix transaction reuses a prefix sender and a prefix recipient,
/// and the proposer is a prefix sender.
#[test]
fn a_suffix_past_the_gas_safe_prefix_continues_the_prefix_exactly() {
    let ledger = genesis();
    let zero = Signature::from_bytes(&[0u8; 2420]).unwrap();
    let mut config = ExecutionConfig::mainnet();
    config.block_gas_limit = 1_000_000;
    let mut txs = disjoint_block(&ledger, 40, 2);
    for k in [2usize, 9, 17] {
        txs[k] = Transaction::from_parts(
            txs[k].sender().clone(),
            txs[k].nonce() + 5,
            *txs[k].payload(),
            zero.clone(),
        );
    }
    let again = TransferPayload::V1(TransferPayloadV1 {
        recipient: AccountId([3; 32]), // credited by prefix transaction 2's neighbour
        amount: 1,
        gas_limit: 37_352,
        max_fee_per_gas: 2,
    });
    txs.insert(
        27,
        Transaction::from_parts(keys()[1].0.clone(), 1, again, zero),
    );
    let ctx = BlockContext {
        height: Height(1),
        proposer: keys()[1].1,
        config,
    };
    let (out, stats) = both(&ledger, &ctx, &txs);
    assert!(stats.parallel(), "{stats:?}");
    assert!(stats.sequential_suffix > 0, "{stats:?}");
    let codes: Vec<u16> = out.receipts.iter().map(|r| r.status.code()).collect();
    let suffix = &codes[txs.len() - stats.sequential_suffix..];
    assert!(suffix.contains(&0) && suffix.contains(&205), "{codes:?}");
    assert_eq!(codes[27], 0, "the prefix sender's next transaction");
    assert!(out.gas_used <= 1_000_000);
}
