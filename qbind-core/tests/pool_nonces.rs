//! The replica and its pool with signed transfers (issue #21): a sender's
//! transactions are proposed only from the nonce its account executes next,
//! also when a submission is proposed at once (an idle leader).

use std::sync::Arc;

use qbind_core::application::TransferApplication;
use qbind_core::codec::Encode;
use qbind_core::consensus::{ConsensusConfig, Input, Payload, SignPurpose};
use qbind_core::crypto::KeyPair;
use qbind_core::execution::{
    BackendAccounts, ExecutionConfig, Transaction, TransferPayload, TransferPayloadV1, credit,
    tx_meta,
};
use qbind_core::replica::{Action, Replica};
use qbind_core::traits::{Durability, MemoryBackend, StateBackend};
use qbind_core::types::{AccountId, Millis, NetworkEnvironment, ValidatorId};
use qbind_core::validator::{EpochSchedule, ValidatorSet};

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

fn transfer(from: &KeyPair, nonce: u64) -> Vec<u8> {
    let payload = TransferPayload::V1(TransferPayloadV1 {
        recipient: AccountId([0xb0; 32]),
        amount: 1_000,
        gas_limit: 40_000,
        max_fee_per_gas: 2,
    });
    Transaction::sign(from, ENV, nonce, payload).to_bytes()
}

/// The transactions of the proposals among `actions`.
fn proposed(actions: &[Action]) -> Vec<Vec<Vec<u8>>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Sign(job) => match &job.purpose {
                SignPurpose::Proposal { block, .. } => match block.payload() {
                    Payload::Transactions(txs) => Some(txs.clone()),
                    Payload::Batches(_) => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Found with `qbind-localnet`: with idle leaders proposing as soon as a
/// transaction arrives, the replica recorded the sender's nonce only after
/// the machine had handled the submission — a leader proposed nonce 41 of a
/// sender whose account executes 40 next; execution refused it
/// (`bad_nonce`) and the transfer was lost.
#[test]
fn a_submission_proposed_at_once_waits_for_its_predecessor() {
    let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed(&[i + 1; 32])).collect();
    let set =
        ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect()).expect("set");
    let alice = KeyPair::from_seed(&[0xa1; 32]);
    let alice_id = AccountId::from_public_key(alice.public_key());
    let store = MemoryBackend::new();
    let genesis =
        credit(&BackendAccounts::new(&store), &[(alice_id, 10_000_000_000)]).expect("genesis");
    store
        .write(genesis.to_write_batch(), Durability::Durable)
        .expect("genesis");
    let mut cfg = ConsensusConfig::new(ENV);
    cfg.tx_meta = Some(tx_meta);
    cfg.idle_proposal_delay_ms = Some(200);
    let app = TransferApplication::new(
        ENV,
        ExecutionConfig::devnet(),
        keys.iter()
            .map(|k| AccountId::from_public_key(k.public_key()))
            .collect(),
    );
    // Validator 1 leads view 1.
    let mut replica = Replica::open(
        cfg,
        ValidatorId(1),
        Arc::new(EpochSchedule::fixed(set)),
        store,
    )
    .expect("open")
    .with_application(Box::new(app));
    let started = replica.start(Millis(0)).expect("start");
    assert!(proposed(&started).is_empty(), "the idle leader waits");
    // Nonce 1 arrives first: the leader proposes at once, without it.
    let actions = replica
        .handle(Millis(10), Input::SubmitTransaction(transfer(&alice, 1)))
        .expect("submit");
    let blocks = proposed(&actions);
    assert_eq!(blocks.len(), 1, "a submission ends the idle wait");
    assert!(
        blocks[0].is_empty(),
        "nonce 1 was proposed before nonce 0: {} transactions",
        blocks[0].len()
    );
}
