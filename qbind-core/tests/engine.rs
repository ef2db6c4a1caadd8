//! The async engine runs four validators over the in-memory `Transport`,
//! `Clock` and `StateBackend` on a tokio runtime; they commit the same blocks,
//! and a validator restarted from its store resumes without double signing.

use std::sync::Arc;
use std::time::Duration;

use qbind_core::consensus::{Block, ConsensusConfig};
use qbind_core::crypto::KeyPair;
use qbind_core::engine::Engine;
use qbind_core::replica::{Event, ReplicaError};
use qbind_core::schema::{Window, load_persisted};
use qbind_core::traits::{LocalSigner, MemoryBackend, MemoryNetwork, TokioClock};
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_core::validator::{EpochSchedule, ValidatorSet};
use tokio::sync::{mpsc, watch};

const N: usize = 4;
const TARGET: u64 = 12;

fn keys() -> Vec<KeyPair> {
    (0..N)
        .map(|i| KeyPair::from_seed(&[i as u8 + 1; 32]))
        .collect()
}

fn schedule(keys: &[KeyPair]) -> Arc<EpochSchedule> {
    let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())
        .expect("valid set");
    Arc::new(EpochSchedule::fixed(set))
}

fn config() -> ConsensusConfig {
    let mut cfg = ConsensusConfig::new(NetworkEnvironment::Devnet);
    cfg.base_timeout_ms = 300;
    cfg
}

/// Four engines on the in-memory transport, their submission channels and
/// one merged event stream tagged with the validator index.
struct Validators {
    submit: Vec<mpsc::UnboundedSender<Vec<u8>>>,
    events: mpsc::UnboundedReceiver<(usize, Event)>,
    stop: watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<Result<(), ReplicaError>>>,
}

impl Validators {
    /// Open one engine per store (executing blocks if `execution` is given)
    /// and start them.
    fn start(stores: &[MemoryBackend], execution: Option<TransferApplication>) -> Self {
        let keys = keys();
        let schedule = schedule(&keys);
        let (stop, stop_rx) = watch::channel(false);
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut handles = Vec::new();
        let mut submit = Vec::new();
        for (i, transport) in MemoryNetwork::endpoints(N).into_iter().enumerate() {
            let signer = LocalSigner::new(
                ValidatorId(i as u32),
                NetworkEnvironment::Devnet,
                keys[i].clone(),
            );
            let (tx_in, tx_out) = mpsc::unbounded_channel();
            submit.push(tx_in);
            let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
            let forward = events_tx.clone();
            tokio::spawn(async move {
                while let Some(ev) = ev_rx.recv().await {
                    if forward.send((i, ev)).is_err() {
                        break;
                    }
                }
            });
            let mut engine = Engine::open(
                config(),
                Arc::clone(&schedule),
                stores[i].clone(),
                transport,
                Box::new(signer),
                TokioClock::new(),
            )
            .expect("open engine")
            .with_events(ev_tx)
            .with_submissions(tx_out);
            if let Some(exec) = &execution {
                engine = engine.with_application(Box::new(exec.clone()));
            }
            handles.push(tokio::spawn(engine.run(stop_rx.clone())));
        }
        Validators {
            submit,
            events,
            stop,
            handles,
        }
    }

    /// Stop every engine and require a clean stop.
    async fn stop(self) {
        self.stop.send(true).expect("engines listening");
        for h in self.handles {
            h.await
                .expect("engine task")
                .expect("engine stopped cleanly");
        }
    }
}

/// Run the network until every validator committed `TARGET` blocks (or 60 s)
/// and return each validator's committed blocks.
async fn run_network(stores: &[MemoryBackend], submit_txs: bool) -> Vec<Vec<Block>> {
    let mut net = Validators::start(stores, None);
    if submit_txs {
        for (k, s) in net.submit.iter().enumerate() {
            for j in 0..5 {
                s.send(format!("tx-{k}-{j}").into_bytes())
                    .expect("engine alive");
            }
        }
    }
    let mut committed: Vec<Vec<Block>> = vec![Vec::new(); N];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while committed.iter().any(|c| (c.len() as u64) < TARGET) {
        let ev = tokio::time::timeout_at(deadline, net.events.recv())
            .await
            .expect("validators did not commit in time")
            .expect("event stream open");
        if let (i, Event::Committed { block, .. }) = ev {
            committed[i].push(block);
        }
    }
    net.stop().await;
    committed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_engines_commit_the_same_blocks_and_resume_after_restart() {
    let stores: Vec<MemoryBackend> = (0..N).map(|_| MemoryBackend::new()).collect();
    let first = run_network(&stores, true).await;
    let common = first.iter().map(Vec::len).min().unwrap_or(0);
    assert!(common as u64 >= TARGET);
    for other in &first[1..] {
        for (h, (a, b)) in first[0].iter().zip(other).take(common).enumerate() {
            assert_eq!(a.id(), b.id(), "validators disagree at height {}", h + 1);
        }
    }
    // Heights are consecutive from 1 and link by parent id.
    for chain in &first {
        for (h, b) in chain.iter().enumerate() {
            assert_eq!(b.height().0, h as u64 + 1);
            if h > 0 {
                assert_eq!(b.parent_id(), chain[h - 1].id());
            }
        }
    }
    // Submitted transactions were committed.
    let txs: usize = first[0].iter().map(|b| b.payload().tx_count()).sum();
    assert!(txs > 0, "no submitted transaction was committed");

    // Everything a validator needs to resume is in its store.
    for store in &stores {
        let p = load_persisted(store, Window::count(4096)).expect("load");
        let safety = p.safety.expect("safety state persisted");
        assert!(safety.last_voted_view.0 > 0);
        assert!(!p.committed.is_empty());
    }
    let before: Vec<u64> = stores
        .iter()
        .map(|s| {
            load_persisted(s, Window::count(1)).expect("load").committed[0]
                .height()
                .0
        })
        .collect();

    // Restart all four from their stores: they continue the same chain.
    let second = run_network(&stores, false).await;
    for (i, chain) in second.iter().enumerate() {
        let first_new = chain.first().expect("committed after restart");
        assert_eq!(
            first_new.height().0,
            before[i] + 1,
            "validator {i} did not resume after its last committed block"
        );
    }
    let after: Vec<u64> = stores
        .iter()
        .map(|s| {
            load_persisted(s, Window::count(1)).expect("load").committed[0]
                .height()
                .0
        })
        .collect();
    for (a, b) in after.iter().zip(&before) {
        assert!(*a >= *b + TARGET);
    }
}

// ---------------------------------------------------------------- execution in the engine

use qbind_core::application::{MonetarySettings, TransferApplication};
use qbind_core::codec::Encode;
use qbind_core::execution::{
    AccountReader, BackendAccounts, ExecutionConfig, Transaction, TransferPayload,
    TransferPayloadV1, credit,
};
use qbind_core::monetary::{
    MonetaryConfig, MonetaryEpochState, MonetaryMode, SeigniorageRecipients,
};
use qbind_core::traits::{Durability, Namespace, StateBackend};
use qbind_core::types::{AccountId, Hash32, Height};

fn execution(keys: &[KeyPair], monetary: Option<MonetarySettings>) -> TransferApplication {
    let app = TransferApplication::new(
        NetworkEnvironment::Devnet,
        ExecutionConfig::devnet(),
        keys.iter()
            .map(|k| AccountId::from_public_key(k.public_key()))
            .collect(),
    );
    match monetary {
        Some(m) => app.with_monetary(m),
        None => app,
    }
}

/// Executed blocks per validator: (height, state root, succeeded).
type Executions = Vec<Vec<(Height, Hash32, u64)>>;

/// Run four executing engines until every validator executed `want`
/// successful transfers in total (or 60 s), submitting `txs` to validator 0.
async fn run_executing(stores: &[MemoryBackend], txs: Vec<Vec<u8>>, want: u64) -> Executions {
    run_executing_with(stores, txs, want, None).await.0
}

/// Epochs closed per validator: (height, state, credited).
type Epochs = Vec<Vec<(Height, MonetaryEpochState, u128)>>;

async fn run_executing_with(
    stores: &[MemoryBackend],
    txs: Vec<Vec<u8>>,
    want: u64,
    monetary: Option<MonetarySettings>,
) -> (Executions, Epochs) {
    let mut net = Validators::start(stores, Some(execution(&keys(), monetary.clone())));
    for tx in txs {
        net.submit[0].send(tx).expect("engine alive");
    }
    let mut executed: Executions = vec![Vec::new(); N];
    let mut epochs: Epochs = vec![Vec::new(); N];
    let need_epoch = monetary.is_some();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done = |e: &Executions, p: &Epochs| {
        e.iter()
            .all(|v| v.iter().map(|x| x.2).sum::<u64>() >= want && v.len() >= 3)
            && (!need_epoch || p.iter().all(|v| v.len() >= 2))
    };
    while !done(&executed, &epochs) {
        let ev = tokio::time::timeout_at(deadline, net.events.recv())
            .await
            .expect("validators did not execute in time")
            .expect("event stream open");
        if let (
            i,
            Event::Executed {
                height,
                state_root,
                report,
            },
        ) = ev
        {
            executed[i].push((height, state_root, report.succeeded));
        } else if let (
            i,
            Event::EpochClosed {
                height,
                state,
                credited,
            },
        ) = ev
        {
            epochs[i].push((height, state, credited));
        }
    }
    net.stop().await;
    (executed, epochs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_execute_signed_transfers_atomically_and_resume() {
    let alice = KeyPair::from_seed(&[0xa1; 32]);
    let alice_id = AccountId::from_public_key(alice.public_key());
    let bob = AccountId([0xb0; 32]);
    let stores: Vec<MemoryBackend> = (0..N).map(|_| MemoryBackend::new()).collect();
    for store in &stores {
        let genesis =
            credit(&BackendAccounts::new(store), &[(alice_id, 10_000_000_000)]).expect("genesis");
        store
            .write(genesis.to_write_batch(), Durability::Durable)
            .expect("write genesis");
    }
    let transfer = |nonce: u64| {
        let payload = TransferPayload::V1(TransferPayloadV1 {
            recipient: bob,
            amount: 1_000 + u128::from(nonce),
            gas_limit: 40_000,
            max_fee_per_gas: 2,
        });
        Transaction::sign(&alice, NetworkEnvironment::Devnet, nonce, payload)
    };
    let mut txs: Vec<Vec<u8>> = (0..8).map(|n| transfer(n).to_bytes()).collect();
    // Signed for another chain: must be skipped by every validator alike.
    let foreign = Transaction::sign(
        &alice,
        NetworkEnvironment::Mainnet,
        8,
        *transfer(8).payload(),
    );
    txs.insert(3, foreign.to_bytes());
    txs.insert(5, b"not a transaction".to_vec());

    let first = run_executing(&stores, txs, 8).await;
    for node in &first[1..] {
        for (h, root, _) in node {
            if let Some((_, r, _)) = first[0].iter().find(|x| x.0 == *h) {
                assert_eq!(r, root, "state roots differ at {h:?}");
            }
        }
    }
    // The store holds exactly the executed state: the last reported root,
    // bob's balance, alice's nonce, and the executed-height marker.
    let expected_bob: u128 = (0..8).map(|n| 1_000 + n).sum();
    let mut marks = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let reader = BackendAccounts::new(store);
        let summary = reader.summary().expect("summary");
        let (last_height, last_root, _) = *first[i].last().expect("executed");
        assert!(first[i].windows(2).all(|w| w[1].0.0 == w[0].0.0 + 1));
        let p = load_persisted(store, Window::count(1)).expect("load");
        assert!(p.executed >= last_height);
        assert_eq!(summary.root(), last_root, "validator {i}: stored root");
        assert_eq!(reader.account(&bob).expect("bob").balance, expected_bob);
        assert_eq!(reader.account(&alice_id).expect("alice").nonce, 8);
        marks.push(p.executed);
    }
    // One fsync per block for commit and execution together: the commit
    // batch (block, QC, committed height) is written buffered and made
    // durable by the executed-height write that follows it.
    for (i, store) in stores.iter().enumerate() {
        let p = load_persisted(store, Window::count(1)).expect("load");
        assert!(!p.committed.is_empty(), "validator {i} committed nothing");
        assert_eq!(
            store.durable_writes_touching(Namespace::Blocks),
            0,
            "validator {i}: a commit was fsynced on its own"
        );
        assert!(
            store.durable_writes_touching(Namespace::Meta) >= p.executed.0,
            "validator {i}: executed heights were not written durably"
        );
    }
    // Restart from the stores: no block is executed twice, the chain of
    // executed heights continues right after the persisted marker.
    let second = run_executing(&stores, Vec::new(), 0).await;
    for (i, node) in second.iter().enumerate() {
        let first_new = node.first().expect("executed after restart");
        assert_eq!(
            first_new.0.0,
            marks[i].0 + 1,
            "validator {i} resumed wrongly"
        );
        let reader = BackendAccounts::new(&stores[i]);
        assert_eq!(reader.account(&bob).expect("bob").balance, expected_bob);
    }
}

fn monetary(mode: MonetaryMode, keys: &[KeyPair]) -> MonetarySettings {
    let mut config = MonetaryConfig::mainnet();
    config.blocks_per_epoch = 3;
    config.mode = mode;
    MonetarySettings {
        config,
        pools: SeigniorageRecipients {
            validators: AccountId([0xf0; 32]),
            treasury: AccountId([0xf1; 32]),
            insurance: AccountId([0xf2; 32]),
            community: AccountId([0xf3; 32]),
        },
        // Validator i's reward account with stake i + 1.
        stakes: keys
            .iter()
            .enumerate()
            .map(|(i, k)| (AccountId::from_public_key(k.public_key()), i as u64 + 1))
            .collect(),
        staked: 4_000_000_000_000,
    }
}

fn funded_stores(amount: u128) -> Vec<MemoryBackend> {
    let stores: Vec<MemoryBackend> = (0..N).map(|_| MemoryBackend::new()).collect();
    for store in &stores {
        let genesis = credit(
            &BackendAccounts::new(store),
            &[(AccountId([0xaa; 32]), amount)],
        )
        .expect("genesis");
        store
            .write(genesis.to_write_batch(), Durability::Durable)
            .expect("write genesis");
    }
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_monetary_engine_issues_at_epoch_boundaries_and_shadow_does_not() {
    let keys = keys();
    let supply: u128 = 10_000_000_000_000;
    for mode in [MonetaryMode::Active, MonetaryMode::Shadow] {
        let stores = funded_stores(supply);
        let (executed, epochs) =
            run_executing_with(&stores, Vec::new(), 0, Some(monetary(mode, &keys))).await;
        for (i, closed) in epochs.iter().enumerate() {
            // Epochs close exactly at multiples of 3, consecutively.
            for (k, (height, state, credited)) in closed.iter().enumerate() {
                assert_eq!(height.0, 3 * (k as u64 + 1), "validator {i}");
                assert_eq!(state.epoch, k as u64 + 1);
                assert!(state.issuance > 0, "Bootstrap issues");
                let expected = if mode == MonetaryMode::Active {
                    state.issuance
                } else {
                    0
                };
                assert_eq!(*credited, expected, "{mode:?}");
            }
            // The same states on every validator.
            assert_eq!(closed[..2], epochs[0][..2], "validator {i}");
        }
        for (i, store) in stores.iter().enumerate() {
            let reader = BackendAccounts::new(store);
            let summary = reader.summary().expect("summary");
            let latest = MonetaryEpochState::load_latest(store)
                .expect("read")
                .expect("stored");
            let issued: u128 = (1..=latest.epoch)
                .map(|e| {
                    MonetaryEpochState::load_epoch(store, e)
                        .expect("read")
                        .expect("every epoch stored")
                        .issuance
                })
                .sum();
            let reward = |k: usize| {
                reader
                    .account(&AccountId::from_public_key(keys[k].public_key()))
                    .expect("account")
                    .balance
            };
            match mode {
                MonetaryMode::Active => {
                    assert_eq!(summary.minted, supply + issued, "validator {i}");
                    // Stake 1:2:3:4 -> validator 3 gets about 4x validator 0.
                    assert!(reward(3) > 3 * reward(0), "validator {i}");
                    let treasury = reader.account(&AccountId([0xf1; 32])).expect("t").balance;
                    assert!(treasury > 0);
                }
                _ => {
                    assert_eq!(summary.minted, supply, "Shadow must not mint");
                    assert_eq!(reward(3), 0);
                }
            }
            // The stored root is what the last Executed event reported.
            let last = executed[i].last().expect("executed");
            if load_persisted(store, Window::count(1))
                .expect("load")
                .executed
                == last.0
            {
                assert_eq!(summary.root(), last.1);
            }
        }
    }
}

/// Issue #19/#21: the engine publishes its pool's depth and every
/// transaction the pool let go (here: refused because it was full after
/// the submission was queued) to a `PoolMonitor`, which an API reads for
/// 429 backpressure and the `dropped` status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_reports_its_pool_and_the_transactions_it_let_go() {
    use qbind_core::pool_drops::{PoolDropReason, PoolMonitor};
    use qbind_core::types::Hash32;
    let keys = keys();
    let mut cfg = config();
    cfg.mempool_capacity = 2;
    let transport = MemoryNetwork::endpoints(N)
        .into_iter()
        .next()
        .expect("an endpoint");
    let signer = LocalSigner::new(ValidatorId(0), NetworkEnvironment::Devnet, keys[0].clone());
    let monitor = Arc::new(PoolMonitor::default());
    let (tx_in, tx_out) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    // Alone, validator 0 never commits: its pool only fills.
    let engine = Engine::open(
        cfg,
        schedule(&keys),
        MemoryBackend::new(),
        transport,
        Box::new(signer),
        TokioClock::new(),
    )
    .expect("open engine")
    .with_submissions(tx_out)
    .with_pool_monitor(Arc::clone(&monitor));
    let handle = tokio::spawn(engine.run(stop_rx));
    let txs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b't', i]).collect();
    for tx in &txs {
        monitor.queued(&Hash32::digest(tx));
        tx_in.send(tx.clone()).expect("engine alive");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while monitor.drops_len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "drops not published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (pool, queued) = monitor.snapshot();
    assert_eq!((pool.len, pool.capacity, queued), (2, 2, 0));
    assert!(monitor.would_refuse(0));
    for tx in &txs[2..] {
        assert_eq!(
            monitor.dropped(&Hash32::digest(tx)),
            Some(PoolDropReason::Refused("pool_full"))
        );
    }
    assert_eq!(monitor.dropped(&Hash32::digest(&txs[0])), None);
    stop.send(true).expect("engine listening");
    handle
        .await
        .expect("engine task")
        .expect("engine stopped cleanly");
}
