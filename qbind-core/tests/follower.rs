//! A follower (full node): an engine whose id no validator set names, with a
//! signer that holds no key, runs beside four validators on the in-memory
//! transport. It commits the validators' blocks, never asks its signer for a
//! signature, and the validators' progress does not depend on it.

use std::sync::Arc;
use std::time::Duration;

use qbind_core::consensus::{Block, ConsensusConfig};
use qbind_core::crypto::KeyPair;
use qbind_core::dag::PayloadMode;
use qbind_core::engine::Engine;
use qbind_core::replica::{Event, ReplicaError};
use qbind_core::traits::{
    FollowerSigner, LocalSigner, MemoryBackend, MemoryNetwork, Signer, TokioClock,
};
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_core::validator::{EpochSchedule, ValidatorSet};
use tokio::sync::{mpsc, watch};

const N: usize = 4;
const TARGET: usize = 15;

fn config(mode: PayloadMode) -> ConsensusConfig {
    let mut cfg = ConsensusConfig::new(NetworkEnvironment::Devnet);
    cfg.base_timeout_ms = 300;
    cfg.payload_mode = mode;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_commits_the_validators_chain_and_never_signs() {
    follow(PayloadMode::Fifo).await;
}

/// DAG payloads: the follower also receives batches and certificates, and
/// never authors a batch or acknowledges one (both are signing paths).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dag_follower_commits_the_validators_chain_and_never_signs() {
    follow(PayloadMode::Dag).await;
}

async fn follow(mode: PayloadMode) {
    let keys: Vec<KeyPair> = (0..N)
        .map(|i| KeyPair::from_seed(&[i as u8 + 1; 32]))
        .collect();
    let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())
        .expect("valid set");
    let schedule = Arc::new(EpochSchedule::fixed(set));
    let follower_id = ValidatorId(N as u32);
    assert!(follower_id.0 as usize >= schedule.max_validators());

    let (stop, stop_rx) = watch::channel(false);
    let (events_tx, mut events) = mpsc::unbounded_channel::<(usize, Event)>();
    let mut handles: Vec<tokio::task::JoinHandle<Result<(), ReplicaError>>> = Vec::new();
    let follower = Arc::new(FollowerSigner::new(follower_id));
    let mut submit = Vec::new();
    for (i, transport) in MemoryNetwork::endpoints(N + 1).into_iter().enumerate() {
        let signer: Box<dyn Signer> = if i < N {
            Box::new(LocalSigner::new(
                ValidatorId(i as u32),
                NetworkEnvironment::Devnet,
                keys[i].clone(),
            ))
        } else {
            Box::new(Arc::clone(&follower))
        };
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let forward = events_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = ev_rx.recv().await {
                if forward.send((i, ev)).is_err() {
                    break;
                }
            }
        });
        let (tx_in, tx_out) = mpsc::unbounded_channel();
        submit.push(tx_in);
        let engine = Engine::open(
            config(mode),
            Arc::clone(&schedule),
            MemoryBackend::new(),
            transport,
            signer,
            TokioClock::new(),
        )
        .expect("open engine")
        .with_events(ev_tx)
        .with_submissions(tx_out);
        handles.push(tokio::spawn(engine.run(stop_rx.clone())));
    }
    for (k, s) in submit.iter().take(N).enumerate() {
        for j in 0..5 {
            s.send(format!("tx-{k}-{j}").into_bytes())
                .expect("engine alive");
        }
    }

    let mut committed: Vec<Vec<Block>> = vec![Vec::new(); N + 1];
    // Transactions delivered for execution, per node (under DAG payloads
    // a block carries batch certificates, not the transactions).
    let mut delivered = [0usize; N + 1];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while committed.iter().any(|c| c.len() < TARGET) || delivered[N] < 20 {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("validators and follower did not commit in time")
            .expect("event stream open");
        match ev {
            (i, Event::Committed { block, .. }) => committed[i].push(block),
            (i, Event::Delivered { txs, .. }) => delivered[i] += txs.len(),
            _ => {}
        }
    }
    stop.send(true).expect("engines listening");
    for h in handles {
        h.await
            .expect("engine task")
            .expect("engine stopped cleanly");
    }

    for (h, block) in committed[N].iter().take(TARGET).enumerate() {
        for (v, chain) in committed.iter().take(N).enumerate() {
            assert_eq!(
                chain[h].id(),
                block.id(),
                "the follower and validator {v} differ at height {}",
                h + 1
            );
        }
    }
    assert_eq!(
        delivered[N], 20,
        "the follower delivers every transaction once"
    );
    assert_eq!(follower.refused(), 0, "the follower was asked to sign");
}

#[tokio::test]
async fn a_follower_signer_refuses_and_counts() {
    use qbind_core::signing::SignKind;
    use qbind_core::traits::{SignRequest, SignerError};
    let signer = FollowerSigner::new(ValidatorId(7));
    assert_eq!(signer.validator_id(), ValidatorId(7));
    assert_ne!(
        signer.public_key(),
        FollowerSigner::new(ValidatorId(8)).public_key()
    );
    let request = SignRequest {
        kind: SignKind::Vote,
        message: b"m".to_vec(),
        view: None,
        digest_preimage: Vec::new(),
    };
    let err = signer.sign(&request).await.expect_err("refused");
    assert!(matches!(err, SignerError::Unavailable { .. }), "{err}");
    assert_eq!(signer.refused(), 1);
}
