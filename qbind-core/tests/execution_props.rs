//! Execution laws of the sequential reference executor (spec §3.5, §6.1),
//! golden bytes of the transaction wire format, and hand-made cases for every
//! rejection and failure.
//!
//! Signatures: transactions in the property tests carry an all-zero
//! signature. Execution never checks signatures (a node verifies them first,
//! `invalid_signatures`), so the laws do not depend on them; the golden test
//! and the signature tests below use real deterministic signatures.

use proptest::prelude::*;
use qbind_core::codec::{Decode, Encode};
use qbind_core::crypto::{KeyPair, PublicKey, Signature};
use qbind_core::execution::*;
use qbind_core::types::{AccountId, Hash32, Height, NetworkEnvironment};
use std::sync::OnceLock;

const KEYS: usize = 8;

fn keys() -> &'static Vec<PublicKey> {
    static K: OnceLock<Vec<PublicKey>> = OnceLock::new();
    K.get_or_init(|| {
        (0..KEYS)
            .map(|i| KeyPair::from_seed(&[i as u8 + 1; 32]).public_key().clone())
            .collect()
    })
}

fn id(i: usize) -> AccountId {
    if i < KEYS {
        AccountId::from_public_key(&keys()[i])
    } else {
        AccountId([i as u8; 32])
    }
}

fn zero_sig() -> Signature {
    Signature::from_bytes(&[0u8; 2420]).unwrap()
}

fn v1(to: AccountId, amount: u128, gas_limit: u64, price: u128) -> TransferPayload {
    TransferPayload::V1(TransferPayloadV1 {
        recipient: to,
        amount,
        gas_limit,
        max_fee_per_gas: price,
    })
}

fn tx(sender: usize, nonce: u64, payload: TransferPayload) -> Transaction {
    Transaction::from_parts(keys()[sender].clone(), nonce, payload, zero_sig())
}

fn ctx(config: ExecutionConfig) -> BlockContext {
    BlockContext {
        height: Height(1),
        proposer: AccountId([0xee; 32]),
        config,
    }
}

/// One generated transaction: sender, recipient (0..12: 8 keyed + 4 plain),
/// amount, gas limit, price, whether the nonce is the predicted next one.
type GenTx = (usize, usize, u128, u64, u128, bool);

fn gen_tx() -> impl Strategy<Value = GenTx> {
    (
        0..KEYS,
        0usize..12,
        prop_oneof![0u128..1_000, 0u128..2_000_000, Just(u128::MAX)],
        prop_oneof![
            Just(37_352u64),
            30_000u64..40_000,
            0u64..30_000,
            Just(u64::MAX)
        ],
        prop_oneof![0u128..4, 0u128..100, Just(u128::MAX / 2)],
        prop::bool::weighted(0.85),
    )
}

fn build(ledger: &Ledger, spec: &[GenTx]) -> Vec<Transaction> {
    let mut next: Vec<u64> = (0..KEYS).map(|i| ledger.get(&id(i)).nonce).collect();
    spec.iter()
        .map(|&(s, r, amount, gas, price, good_nonce)| {
            let nonce = if good_nonce {
                next[s]
            } else {
                next[s].wrapping_add(3)
            };
            if good_nonce {
                next[s] += 1;
            }
            tx(s, nonce, v1(id(r), amount, gas, price))
        })
        .collect()
}

fn genesis() -> Ledger {
    Ledger::genesis((0..KEYS).map(|i| (id(i), 1_000_000 + 250_000 * i as u128))).unwrap()
}

/// Checks written from the laws, not from the executor's code.
fn check_block(before: &Ledger, txs: &[Transaction], c: &BlockContext, out: &BlockOutcome) {
    let mut after = before.clone();
    after.apply(&out.transition).unwrap();
    // Supply: balances + burned = minted, with no overflow anywhere.
    let total = after.total_balance().expect("balances overflow");
    let s = after.summary_value();
    assert_eq!(
        total.checked_add(s.burned),
        Some(s.minted),
        "supply not conserved"
    );
    // The incremental root equals the root recomputed from every account.
    assert_eq!(after.recompute_summary(), s);
    assert_eq!(out.state_root, after.root());
    // Block gas.
    assert!(out.gas_used <= c.config.block_gas_limit);
    assert_eq!(out.receipts.len(), txs.len());
    let mut included = [0u64; KEYS];
    let mut last_nonce: Vec<Option<u64>> = vec![None; KEYS];
    let mut fee_sum = 0u128;
    for (t, r) in txs.iter().zip(&out.receipts) {
        let (limit, price) = match t.payload() {
            TransferPayload::V1(p) => (p.gas_limit, p.max_fee_per_gas),
            TransferPayload::V0(_) => (u64::MAX, 0),
        };
        assert!(r.gas_used <= limit);
        assert_eq!(r.fee, u128::from(r.gas_used) * price);
        assert_eq!(r.burned + r.proposer_reward, r.fee);
        fee_sum += r.fee;
        let s = (0..KEYS).find(|&k| id(k) == t.sender_id()).unwrap();
        if r.status.is_included() {
            included[s] += 1;
            // Nonces of included transactions strictly increase per sender.
            if let Some(prev) = last_nonce[s] {
                assert!(t.nonce() > prev);
            }
            last_nonce[s] = Some(t.nonce());
            assert!(r.gas_used > 0);
        } else {
            assert_eq!((r.gas_used, r.fee), (0, 0));
        }
        if let TxStatus::Failed(_) = r.status {
            assert!(r.fee <= u128::from(limit) * price);
        }
    }
    assert_eq!(out.fees, fee_sum);
    assert_eq!(out.burned + out.proposer_reward, out.fees);
    for (k, count) in included.iter().enumerate() {
        assert_eq!(after.get(&id(k)).nonce, before.get(&id(k)).nonce + count);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// No negative balance or overflow, supply conservation (with issuance),
    /// strictly increasing nonces, failed transactions pay at most their gas,
    /// the block gas limit holds, and the incremental root is the full root.
    #[test]
    fn execution_laws_hold_over_three_blocks(
        blocks in prop::collection::vec(prop::collection::vec(gen_tx(), 0..24), 3),
        issuance in prop::collection::vec((0usize..12, 0u128..10_000), 0..4),
        burn_bps in 0u16..=10_000,
        small_block in any::<bool>(),
    ) {
        let mut config = ExecutionConfig::mainnet();
        config.fee_split = FeeSplit { burn_bps, proposer_bps: 10_000 - burn_bps };
        if small_block {
            config.block_gas_limit = 150_000;
        }
        let c = ctx(config);
        let mut ledger = genesis();
        for spec in &blocks {
            let txs = build(&ledger, spec);
            let out = execute_block(&ledger, &c, &txs).unwrap();
            check_block(&ledger, &txs, &c, &out);
            ledger.apply(&out.transition).unwrap();
        }
        let credits: Vec<(AccountId, u128)> = issuance.iter().map(|&(i, a)| (id(i), a)).collect();
        let t = credit(&ledger, &credits).unwrap();
        ledger.apply(&t).unwrap();
        let s = ledger.summary_value();
        prop_assert_eq!(ledger.total_balance().unwrap() + s.burned, s.minted);
        prop_assert_eq!(ledger.recompute_summary(), s);
    }
}

/// `n` changes with distinct ids: random, or (`shared_prefix`) all alike but
/// for their last four bytes, as ids chosen to collide would be.
fn changes_with_ids(seed: u64, n: usize, shared_prefix: bool) -> Vec<AccountChange> {
    use std::collections::BTreeSet;
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut ids = BTreeSet::new();
    while ids.len() < n {
        let mut id = [0x5a; 32];
        if shared_prefix {
            id[28..].copy_from_slice(&(next() as u32).to_be_bytes());
        } else {
            for chunk in id.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_be_bytes());
            }
        }
        ids.insert(id);
    }
    let mut changes: Vec<AccountChange> = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| AccountChange {
            id: AccountId(id),
            before: Account::default(),
            after: Account {
                nonce: i as u64,
                balance: 1,
            },
        })
        .collect();
    // Deterministic shuffle.
    for i in (1..changes.len()).rev() {
        changes.swap(i, (next() as usize) % (i + 1));
    }
    changes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The bucketed sort gives exactly the comparison sort's order, below and
    /// above the size where it starts bucketing, for spread and clustered ids.
    /// The same from several runs (as Stage B hands over its chunks' lists).
    #[test]
    fn sort_changes_by_id_equals_a_comparison_sort(
        seed in any::<u64>(),
        n in prop_oneof![0usize..300, 8_000usize..12_000],
        shared_prefix in any::<bool>(),
        cuts in prop::collection::vec(0usize..12_000, 0..6),
    ) {
        let mut ours = changes_with_ids(seed, n, shared_prefix);
        let mut reference = ours.clone();
        reference.sort_unstable_by_key(|c| c.id);
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (n + 1)).collect();
        bounds.push(0);
        bounds.push(n);
        bounds.sort_unstable();
        let runs: Vec<&[AccountChange]> = bounds.windows(2).map(|w| &ours[w[0]..w[1]]).collect();
        prop_assert_eq!(&sorted_changes_by_id(&runs), &reference);
        sort_changes_by_id(&mut ours);
        prop_assert_eq!(ours, reference);
    }
}

#[test]
fn every_rejection_and_failure_has_its_receipt() {
    let ledger = genesis();
    let c = ctx(ExecutionConfig::mainnet());
    let bal0 = ledger.get(&id(0)).balance; // 1,000,000
    let cases: Vec<(Transaction, u16)> = vec![
        (tx(0, 0, v1(id(9), 5, 37_352, 1)), 0),
        (tx(0, 0, v1(id(9), 5, 37_352, 1)), 206),
        (tx(0, 1, v1(id(9), 5, 20_000, 1)), 202),
        (tx(0, 1, v1(id(9), 5, 29_751, 1)), 203),
        (tx(0, 1, v1(id(9), 5, 40_000, u128::MAX)), 204),
        (tx(0, 1, v1(id(9), 5, 40_000, 1_000)), 208),
        (tx(0, 1, v1(id(9), 5, 30_000, 1)), 102),
        (tx(0, 2, v1(id(9), bal0, 37_352, 1)), 101),
        (
            tx(
                0,
                3,
                TransferPayload::V0(TransferPayloadV0 {
                    recipient: id(9),
                    amount: 1,
                }),
            ),
            201,
        ),
    ];
    let txs: Vec<Transaction> = cases.iter().map(|(t, _)| t.clone()).collect();
    let out = execute_block(&ledger, &c, &txs).unwrap();
    let codes: Vec<u16> = out.receipts.iter().map(|r| r.status.code()).collect();
    let want: Vec<u16> = cases.iter().map(|(_, c)| *c).collect();
    assert_eq!(codes, want);
    // Out of gas pays the whole limit; insufficient balance pays intrinsic gas.
    assert_eq!(out.receipts[6].gas_used, 30_000);
    assert_eq!(out.receipts[7].gas_used, 29_752);
    let mut after = ledger;
    after.apply(&out.transition).unwrap();
    assert_eq!(after.get(&id(0)).nonce, 3);
    assert_eq!(
        after.get(&id(0)).balance,
        bal0 - 5 - 37_352 - 30_000 - 29_752
    );
    assert_eq!(after.get(&id(9)).balance, 5);
    // Proposer gets the rounded-up half, once, after the block.
    let fees = 37_352 + 30_000 + 29_752;
    assert_eq!(out.burned, (37_352 / 2) + (30_000 / 2) + (29_752 / 2));
    assert_eq!(after.get(&c.proposer).balance, fees - out.burned);
}

#[test]
fn block_gas_limit_rejects_what_would_not_fit() {
    let ledger = genesis();
    let mut config = ExecutionConfig::mainnet();
    config.block_gas_limit = 80_000;
    let txs = vec![
        tx(0, 0, v1(id(9), 1, 37_352, 0)),
        tx(1, 0, v1(id(9), 1, 37_352, 0)),
        tx(2, 0, v1(id(9), 1, 37_352, 0)),
        tx(3, 0, v1(id(9), 1, 5_296 + 1, 0)),
    ];
    let out = execute_block(&ledger, &ctx(config), &txs).unwrap();
    let codes: Vec<u16> = out.receipts.iter().map(|r| r.status.code()).collect();
    assert_eq!(codes, vec![0, 0, 205, 202]);
}

#[test]
fn legacy_payloads_only_where_the_profile_allows() {
    let ledger = genesis();
    let t = tx(
        0,
        0,
        TransferPayload::V0(TransferPayloadV0 {
            recipient: id(9),
            amount: 10,
        }),
    );
    let main = execute_block(
        &ledger,
        &ctx(ExecutionConfig::mainnet()),
        std::slice::from_ref(&t),
    )
    .unwrap();
    assert_eq!(main.receipts[0].status.code(), 201);
    let dev = execute_block(&ledger, &ctx(ExecutionConfig::devnet()), &[t]).unwrap();
    assert_eq!(dev.receipts[0].status, TxStatus::Success);
    assert_eq!(dev.receipts[0].fee, 0);
    assert_eq!(dev.receipts[0].gas_used, 36_968);
}

#[test]
fn backend_transition_matches_the_ledger() {
    use qbind_core::traits::{Durability, MemoryBackend, StateBackend};
    let ledger = genesis();
    let backend = MemoryBackend::new();
    let genesis_t = credit(&BackendAccounts::new(&backend), &{
        let mut v = ledger.sorted_accounts();
        v.reverse();
        v.into_iter()
            .map(|(i, a)| (i, a.balance))
            .collect::<Vec<_>>()
    })
    .unwrap();
    backend
        .write(genesis_t.to_write_batch(), Durability::Durable)
        .unwrap();
    assert_eq!(genesis_t.root(), ledger.root());
    let txs = vec![
        tx(0, 0, v1(id(1), 7, 40_000, 3)),
        tx(1, 0, v1(id(0), 9, 40_000, 2)),
    ];
    let c = ctx(ExecutionConfig::mainnet());
    let a = execute_block(&ledger, &c, &txs).unwrap();
    let b = execute_block(&BackendAccounts::new(&backend), &c, &txs).unwrap();
    assert_eq!(a, b);
    backend
        .write(b.transition.to_write_batch(), Durability::Durable)
        .unwrap();
    let reader = BackendAccounts::new(&backend);
    assert_eq!(reader.summary().unwrap().root(), a.state_root);
    assert_eq!(
        reader.account(&id(1)).unwrap().balance,
        ledger.get(&id(1)).balance + 7 - 9 - 37_352 * 2
    );
}

#[test]
fn a_transition_applies_only_to_its_own_state() {
    let ledger = genesis();
    let c = ctx(ExecutionConfig::mainnet());
    let out = execute_block(&ledger, &c, &[tx(0, 0, v1(id(9), 1, 40_000, 1))]).unwrap();
    let mut twice = ledger;
    twice.apply(&out.transition).unwrap();
    assert!(matches!(
        twice.apply(&out.transition),
        Err(StateError::StaleTransition { .. })
    ));
}

/// Golden bytes of the transaction wire format (docs/execution.md). A change
/// here is a protocol change.
#[test]
fn transaction_golden_bytes() {
    let payload = v1(AccountId([0x11; 32]), 0x0102_0304, 37_352, 5);
    let payload_hex = concat!(
        "00000048",
        "1111111111111111111111111111111111111111111111111111111111111111",
        "00000000000000000000000001020304",
        "00000000000091e8",
        "00000000000000000000000000000005",
    );
    assert_eq!(hex::encode(payload.to_bytes()), payload_hex);
    assert_eq!(
        TransferPayload::from_bytes(&hex::decode(payload_hex).unwrap()).unwrap(),
        payload
    );
    let legacy = TransferPayload::V0(TransferPayloadV0 {
        recipient: AccountId([0x22; 32]),
        amount: 1,
    });
    assert_eq!(
        hex::encode(legacy.to_bytes()),
        "000000302222222222222222222222222222222222222222222222222222222222222222\
         00000000000000000000000000000001"
    );
    let key = KeyPair::from_seed(&[1u8; 32]);
    let t = Transaction::sign(&key, NetworkEnvironment::Mainnet, 7, payload);
    let bytes = t.to_bytes();
    assert_eq!(bytes.len(), 1312 + 8 + 4 + 72 + 2420);
    assert_eq!(&bytes[..1312], key.public_key().as_bytes());
    assert_eq!(hex::encode(&bytes[1312..1320]), "0000000000000007");
    assert_eq!(hex::encode(&bytes[1320..1396]), payload_hex);
    assert_eq!(
        hex::encode(Hash32::digest(&bytes).0),
        GOLDEN_TX_SHA3,
        "transaction encoding or deterministic signature changed"
    );
    assert_eq!(Transaction::from_bytes(&bytes).unwrap(), t);
    assert!(t.verify(NetworkEnvironment::Mainnet).is_ok());
    // Trailing bytes, a 73-byte payload and a truncated signature are refused.
    let mut long = bytes.clone();
    long.push(0);
    assert!(Transaction::from_bytes(&long).is_err());
    assert!(Transaction::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    let mut bad_len = bytes;
    bad_len[1323] = 73;
    assert!(Transaction::from_bytes(&bad_len).is_err());
}

const GOLDEN_TX_SHA3: &str = "cc714e47f71e3009836f522333a6c0587ca67770bf53854276afe0ad21271095";

#[test]
fn an_invalid_signature_is_reported_separately_from_execution() {
    let key = KeyPair::from_seed(&[1u8; 32]);
    let good = Transaction::sign(&key, NetworkEnvironment::Devnet, 0, v1(id(9), 1, 40_000, 1));
    let forged = tx(0, 0, v1(id(9), 1, 40_000, 1));
    assert_eq!(
        invalid_signatures(NetworkEnvironment::Devnet, &[good, forged]),
        vec![1]
    );
}
