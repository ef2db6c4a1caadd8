//! Block gas and checked arithmetic at the edges (issue #17 findings 2 and
//! 5), for the sequential reference executor; Stage B is held to the same
//! results in `qbind-exec/tests/stage_b.rs`.
//!
//! Transactions carry an all-zero signature: execution never checks
//! signatures (a node verifies them first).

use qbind_core::crypto::{KeyPair, PublicKey, Signature};
use qbind_core::execution::*;
use qbind_core::types::{AccountId, Height};

fn key(i: u8) -> PublicKey {
    KeyPair::from_seed(&[i; 32]).public_key().clone()
}

fn transfer(sender: &PublicKey, nonce: u64, gas_limit: u64, price: u128) -> Transaction {
    let payload = TransferPayload::V1(TransferPayloadV1 {
        recipient: AccountId([0x42; 32]),
        amount: 1,
        gas_limit,
        max_fee_per_gas: price,
    });
    let zero = Signature::from_bytes(&[0u8; 2420]).unwrap();
    Transaction::from_parts(sender.clone(), nonce, payload, zero)
}

fn ctx() -> BlockContext {
    BlockContext {
        height: Height(1),
        proposer: AccountId([0xee; 32]),
        config: ExecutionConfig::mainnet(),
    }
}

fn codes(out: &BlockOutcome) -> Vec<u16> {
    out.receipts.iter().map(|r| r.status.code()).collect()
}

/// Finding 2: a bad-nonce transaction declaring the whole block gas limit
/// used to reserve it, so every later transaction failed with code 205.
#[test]
fn a_rejected_transaction_consumes_no_block_gas() {
    let keys: Vec<PublicKey> = (1..=4).map(key).collect();
    let ids: Vec<AccountId> = keys.iter().map(AccountId::from_public_key).collect();
    let ledger = Ledger::genesis(ids.iter().map(|id| (*id, 10_000_000_000u128))).unwrap();
    let limit = ExecutionConfig::mainnet().block_gas_limit;
    let txs = vec![
        transfer(&keys[0], 9, limit, 1), // bad nonce
        transfer(&keys[1], 0, 37_352, 1),
        transfer(&keys[2], 0, 37_352, 1),
        transfer(&keys[0], 0, 37_352, 1),
    ];
    let out = execute_block(&ledger, &ctx(), &txs).unwrap();
    assert_eq!(codes(&out), vec![206, 0, 0, 0]);
    assert_eq!(out.gas_used, 3 * 37_352);
}

/// The block counts gas *used*: a valid transaction that over-declares its
/// limit blocks the rest only if its limit no longer fits.
#[test]
fn the_block_counts_gas_used_by_included_transactions() {
    let keys: Vec<PublicKey> = (1..=3).map(key).collect();
    let ids: Vec<AccountId> = keys.iter().map(AccountId::from_public_key).collect();
    let ledger = Ledger::genesis(ids.iter().map(|id| (*id, 10_000_000_000u128))).unwrap();
    let limit = ExecutionConfig::mainnet().block_gas_limit;
    // First: fits (nothing used yet), uses 37,352. Then the same limit no
    // longer fits; a normal transfer does.
    let txs = vec![
        transfer(&keys[0], 0, limit, 1),
        transfer(&keys[1], 0, limit, 1),
        transfer(&keys[2], 0, 37_352, 1),
    ];
    let out = execute_block(&ledger, &ctx(), &txs).unwrap();
    assert_eq!(codes(&out), vec![0, 205, 0]);
    assert_eq!(out.receipts[0].fee, 37_352);
    match out.receipts[1].status {
        TxStatus::Rejected(RejectReason::BlockGasLimitExceeded { used, .. }) => {
            assert_eq!(used, 37_352)
        }
        other => panic!("{other:?}"),
    }
}

/// Finding 5: `used + gas_limit` with a gas limit of `u64::MAX` (price 0, so
/// the maximum fee is 0 and admission passes) is checked: code 205, no panic.
#[test]
fn block_gas_arithmetic_does_not_overflow() {
    let keys: Vec<PublicKey> = (1..=2).map(key).collect();
    let ids: Vec<AccountId> = keys.iter().map(AccountId::from_public_key).collect();
    let ledger = Ledger::genesis(ids.iter().map(|id| (*id, 1_000_000u128))).unwrap();
    let txs = vec![
        transfer(&keys[0], 0, 37_352, 0),
        transfer(&keys[1], 0, u64::MAX, 0),
    ];
    let out = execute_block(&ledger, &ctx(), &txs).unwrap();
    assert_eq!(codes(&out), vec![0, 205]);
    let mut gas = BlockGas::resume(u64::MAX - 1, u64::MAX);
    assert!(gas.check(2).is_err());
    gas.charge(5);
    assert_eq!(gas.used(), u64::MAX);
}

/// A sender whose nonce reaches `u64::MAX` cannot send again (code 207),
/// whatever the transaction's nonce; nothing wraps.
#[test]
fn a_sender_nonce_at_the_maximum_is_exhausted_not_wrapped() {
    struct Near(AccountId, u64);
    impl AccountReader for Near {
        fn account(&self, id: &AccountId) -> Result<Account, StateError> {
            Ok(if *id == self.0 {
                Account {
                    nonce: self.1,
                    balance: 1_000_000,
                }
            } else {
                Account::default()
            })
        }
        fn summary(&self) -> Result<StateSummary, StateError> {
            Ok(StateSummary {
                accounts: 1,
                minted: 1_000_000,
                ..StateSummary::default()
            })
        }
    }
    let k = key(1);
    let state = Near(AccountId::from_public_key(&k), u64::MAX - 1);
    let txs = vec![
        transfer(&k, u64::MAX - 1, 37_352, 0),
        transfer(&k, u64::MAX, 37_352, 0),
        transfer(&k, 0, 37_352, 0),
    ];
    let out = execute_block(&state, &ctx(), &txs).unwrap();
    assert_eq!(codes(&out), vec![0, 207, 206]);
}
