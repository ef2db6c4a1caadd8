//! Every example runs, small, with its outcome checked — so CI runs them.

use std::sync::Arc;
use std::time::Duration;

use qbind_core::consensus::{Block, ConsensusError};
use qbind_core::crypto::KeyPair;
use qbind_core::traits::{Durability, Namespace, StateBackend, StateRead, WriteBatch};
use qbind_core::types::Epoch;
use qbind_core::validator::{EpochSchedule, ValidatorSet};
use qbind_examples::embed::{self, BTreeStore, KV_PREFIX};
use qbind_examples::light_client::{self, LightClient, LightClientError};
use qbind_examples::sim_scenario;

// ---------------------------------------------------------------- (a) embed

#[test]
fn embedded_validators_commit_and_agree_on_every_state_root() {
    let params = embed::Params {
        validators: 4,
        blocks: 10,
        txs_per_validator: 10,
        deadline: Duration::from_secs(60),
    };
    let summary = embed::run(&params, &mut |_| {}).expect("example runs");
    assert!(
        summary.executed.iter().all(|h| *h >= params.blocks),
        "{:?}",
        summary.executed
    );
    let root = summary.roots_at_target[0];
    assert!(summary.roots_at_target.iter().all(|r| *r == root));
    // Transactions took effect, identically everywhere, and the bad one was
    // rejected everywhere alike.
    assert!(summary.applied_txs[0] > 0);
    assert!(
        summary
            .applied_txs
            .iter()
            .all(|n| *n == summary.applied_txs[0])
    );
    assert!(
        summary
            .rejected_txs
            .iter()
            .all(|n| *n == summary.rejected_txs[0])
    );
    // Honest validators never ask their signer to sign twice in a view.
    assert_eq!(summary.signer_refusals, vec![0; 4]);
    // What the application wrote is what was submitted: "v{i}/k{j}" = j².
    let entries = summary.stores[0]
        .scan_prefix(Namespace::Accounts, KV_PREFIX, usize::MAX)
        .expect("read");
    assert!(!entries.is_empty());
    for (key, value) in entries {
        let key = String::from_utf8(key).expect("utf-8 key");
        let j: u64 = key
            .rsplit('k')
            .next()
            .and_then(|j| j.parse().ok())
            .expect("key form");
        assert_eq!(value, (j * j).to_string().into_bytes(), "{key}");
    }
}

#[test]
fn the_example_store_scans_in_order_within_namespace_and_prefix() {
    let store = BTreeStore::new();
    let mut batch = WriteBatch::new();
    for key in [&b"b2"[..], b"a1", b"b1", b"b3", b"c"] {
        batch.put(Namespace::Accounts, key.to_vec(), key.to_vec());
    }
    batch.put(
        Namespace::Blocks,
        b"b0".to_vec(),
        b"other namespace".to_vec(),
    );
    store.write(batch, Durability::Durable).expect("write");
    let keys = |limit| -> Vec<Vec<u8>> {
        store
            .scan_prefix(Namespace::Accounts, b"b", limit)
            .expect("scan")
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(
        keys(10),
        vec![b"b1".to_vec(), b"b2".to_vec(), b"b3".to_vec()]
    );
    assert_eq!(keys(2), vec![b"b1".to_vec(), b"b2".to_vec()]);
    let snapshot = store.snapshot().expect("snapshot");
    let mut delete = WriteBatch::new();
    delete.delete(Namespace::Accounts, b"b2".to_vec());
    store.write(delete, Durability::Buffered).expect("delete");
    assert_eq!(keys(10), vec![b"b1".to_vec(), b"b3".to_vec()]);
    // The snapshot still sees the state it was taken at.
    let range = snapshot
        .scan_range(Namespace::Accounts, b"a", Some(b"b3"), 10)
        .expect("range");
    let keys: Vec<_> = range.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![b"a1".to_vec(), b"b1".to_vec(), b"b2".to_vec()]);
}

// ---------------------------------------------------------------- (b) simulator

#[test]
fn the_scenario_replays_identically_from_its_seed() {
    let params = sim_scenario::Params {
        seed: 7,
        blocks: 15,
    };
    let summary = sim_scenario::run(&params, &mut |_| {}).expect("scenario passes");
    assert_eq!(summary.first, summary.replay);
    assert!(summary.first.min_height >= 15);
    assert!(
        summary.crashed_validator_height >= 15,
        "the crashed validator caught up"
    );
    assert!(
        summary.first.common_root(15).is_some(),
        "equal state roots at height 15"
    );
    // The comparison is not vacuous: another seed is another run.
    let other =
        sim_scenario::run_once(&sim_scenario::Params { seed: 8, ..params }).expect("seed 8 passes");
    // (Unless QBIND_SIM_SEED forces one seed on every scenario.)
    if other.seed != summary.first.seed {
        assert_ne!(other.event_log_hash, summary.first.event_log_hash);
    }
}

// ---------------------------------------------------------------- (c) light client

#[test]
fn the_light_client_accepts_the_committed_chain_and_refuses_tampered_ones() {
    let summary = light_client::run(8, &mut |_| {}).expect("example runs");
    let v = summary.verified;
    assert!(v.tip >= 8);
    assert_eq!(v.certified_height, v.tip - 1);
    assert!(v.committed_height >= 1 && v.committed_height <= v.tip - 3);
    let refusals: Vec<_> = summary.refusals.iter().map(|(_, why)| why).collect();
    assert_eq!(refusals.len(), 5);
    assert!(matches!(
        refusals[0],
        LightClientError::PayloadMismatch { .. }
    ));
    assert!(matches!(refusals[1], LightClientError::NotAChain { .. }));
    for bad_qc in &refusals[2..4] {
        assert!(matches!(
            bad_qc,
            LightClientError::BadQc {
                source: ConsensusError::InvalidQc { .. },
                ..
            }
        ));
    }
    // Valid signatures on the wrong block are refused too.
    assert!(matches!(
        refusals[4],
        LightClientError::QcForOtherBlock { .. }
    ));
}

#[test]
fn a_light_client_with_another_validator_set_refuses_the_chain() {
    let run = embed::run(
        &embed::Params {
            blocks: 5,
            txs_per_validator: 2,
            ..embed::Params::default()
        },
        &mut |_| {},
    )
    .expect("example runs");
    let encoded = light_client::committed_blocks(&run.stores[0]).expect("read chain");
    let right = LightClient::new(embed::ENV, Arc::clone(&run.schedule));
    assert!(right.verify_chain(&encoded).is_ok());
    // The same chain, judged against other keys: no QC verifies.
    let strangers: Vec<_> = (0..4).map(|i| KeyPair::from_seed(&[100 + i; 32])).collect();
    let set = ValidatorSet::new(
        strangers
            .iter()
            .map(|k| (k.public_key().clone(), 1))
            .collect(),
    )
    .expect("set");
    let wrong = LightClient::new(embed::ENV, Arc::new(EpochSchedule::fixed(set)));
    assert!(matches!(
        wrong.verify_chain(&encoded),
        Err(LightClientError::BadQc { .. })
    ));
    // And on another network the genesis differs: the first block does not
    // extend it.
    let other_net = LightClient::new(
        qbind_core::types::NetworkEnvironment::Testnet,
        Arc::clone(&run.schedule),
    );
    assert!(matches!(
        other_net.verify_chain(&encoded),
        Err(LightClientError::NotAChain { .. })
    ));
    // The undersized QC of the tampering case really holds no quorum.
    let set = run.schedule.set(Epoch(0));
    let chains = light_client::tampered_chains(&encoded, set).expect("tamper");
    let (_, short_chain) = &chains[3];
    let k = encoded.len() / 2;
    let block =
        <Block as qbind_core::codec::Decode>::from_bytes(&short_chain[k + 1]).expect("decode");
    let signers: Vec<_> = block.justify().signers.iter().collect();
    assert!(!set.is_quorum(set.stake_of(&signers)));
    assert_eq!(
        signers.len() + 1,
        3,
        "one signer short of the quorum of 3 out of 4"
    );
}
