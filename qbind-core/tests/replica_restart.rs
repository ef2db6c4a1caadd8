//! The replica's restore path (issue #17 finding 9): execution resumes from
//! the executed-height marker whatever the gap to the committed height —
//! also when the gap is longer than the committed window held in memory.

use std::sync::Arc;

use qbind_core::application::{
    Application, ApplicationError, Applied, CommittedBlock, ExecutionReport,
};
use qbind_core::consensus::{ConsensusConfig, Input};
use qbind_core::crypto::KeyPair;
use qbind_core::replica::{Action, Event, Replica};
use qbind_core::schema;
use qbind_core::signing::sign_domain;
use qbind_core::traits::{
    Durability, MemoryBackend, Namespace, StateBackend, StateRead, WriteBatch,
};
use qbind_core::types::{Hash32, Height, Millis, NetworkEnvironment, ValidatorId};
use qbind_core::validator::{EpochSchedule, ValidatorSet};

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;
/// Committed blocks held in memory.
const WINDOW: usize = 8;

fn config() -> ConsensusConfig {
    let mut cfg = ConsensusConfig::new(ENV);
    cfg.committed_window = WINDOW;
    cfg.base_timeout_ms = 100;
    cfg
}

fn schedule(key: &KeyPair) -> Arc<EpochSchedule> {
    let set = ValidatorSet::new(vec![(key.public_key().clone(), 1)]).expect("set");
    Arc::new(EpochSchedule::fixed(set))
}

/// Run a one-validator replica until it has delivered `until` (or `steps`
/// inputs passed); the heights it delivered, in order.
fn drive(replica: &mut Replica<MemoryBackend>, key: &KeyPair, until: Height) -> Vec<Height> {
    let mut delivered = Vec::new();
    let mut now = Millis(1);
    let mut pending: Vec<Action> = replica.start(now).expect("start");
    for step in 0..20_000u64 {
        let mut inputs = Vec::new();
        for action in pending.drain(..) {
            match action {
                Action::Sign(job) => {
                    let signature = sign_domain(key, ENV, job.request.kind, &job.request.message);
                    inputs.push(Input::Signed { job, signature });
                }
                Action::Event(Event::Delivered { height, .. }) => delivered.push(height),
                _ => {}
            }
        }
        if delivered.last().is_some_and(|h| *h >= until) {
            break;
        }
        if inputs.is_empty() {
            now = Millis(now.0 + 10);
            inputs.push(if step % 3 == 0 {
                Input::SubmitTransaction(format!("tx-{step}").into_bytes())
            } else {
                Input::Tick
            });
        }
        for input in inputs {
            pending.extend(replica.handle(now, input).expect("handle"));
        }
    }
    delivered
}

/// Move the executed-height marker back to `height` (as after execution
/// fell behind and the process stopped).
fn set_executed(store: &MemoryBackend, height: Height) {
    let mut batch = WriteBatch::new();
    schema::put_height(&mut batch, schema::EXECUTED_HEIGHT_KEY, height);
    store.write(batch, Durability::Durable).expect("write");
}

/// Drive a reopened replica past `committed`: it delivers exactly the
/// heights after `lagging`, each once, in order.
fn assert_resumes_from(
    replica: &mut Replica<MemoryBackend>,
    key: &KeyPair,
    lagging: Height,
    committed: Height,
) {
    let resumed = drive(replica, key, Height(committed.0 + 2));
    let expected: Vec<Height> = (lagging.0 + 1..=resumed.last().map_or(0, |h| h.0))
        .map(Height)
        .collect();
    assert_eq!(
        resumed, expected,
        "heights delivered after the restart are not exactly the ones after the marker"
    );
}

#[test]
fn execution_resumes_from_the_marker_across_a_gap_longer_than_the_window() {
    let key = KeyPair::from_seed(&[42; 32]);
    let store = MemoryBackend::default();
    let mut replica =
        Replica::open(config(), ValidatorId(0), schedule(&key), store.clone()).expect("open");
    let first = drive(&mut replica, &key, Height(30));
    assert!(first.last().is_some_and(|h| *h >= Height(30)), "{first:?}");
    let committed = schema::read_height(&store, schema::COMMITTED_HEIGHT_KEY)
        .expect("read")
        .expect("committed height");
    drop(replica);

    // Execution fell behind by more than the window (as after a long wait
    // for DAG data) and the process stopped.
    let lagging = Height(5);
    assert!(committed.0 > lagging.0 + WINDOW as u64 + 1);
    set_executed(&store, lagging);

    let mut replica =
        Replica::open(config(), ValidatorId(0), schedule(&key), store).expect("reopen");
    assert_resumes_from(&mut replica, &key, lagging, committed);
}

/// An application whose state is the last executed height and whose root
/// names it.
struct HeightApp;

fn root_of(height: u64) -> Hash32 {
    let mut root = [0u8; 32];
    root[..8].copy_from_slice(&height.to_be_bytes());
    Hash32(root)
}

impl Application<MemoryBackend> for HeightApp {
    fn execute(
        &mut self,
        _store: &MemoryBackend,
        block: &CommittedBlock<'_>,
    ) -> Result<Applied, ApplicationError> {
        let mut writes = WriteBatch::new();
        writes.put(
            Namespace::Accounts,
            b"height".to_vec(),
            block.height.0.to_be_bytes().to_vec(),
        );
        Ok(Applied {
            writes,
            state_root: root_of(block.height.0),
            report: ExecutionReport::default(),
            epoch_closed: None,
        })
    }

    fn state_root(&self, store: &MemoryBackend) -> Result<Hash32, ApplicationError> {
        let height = store
            .get(Namespace::Accounts, b"height")?
            .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
        Ok(root_of(height))
    }
}

/// The state roots of the last 256 executed heights are kept in the store
/// (older ones deleted as execution goes on) and a restarted validator
/// starts with all of them, so it can check the roots proposals report for
/// heights it executed before the restart (consensus §C3.7).
#[test]
fn a_restarted_validator_remembers_the_last_executed_roots() {
    let key = KeyPair::from_seed(&[43; 32]);
    let store = MemoryBackend::default();
    let open = |store: MemoryBackend| {
        Replica::open(config(), ValidatorId(0), schedule(&key), store)
            .expect("open")
            .with_application(Box::new(HeightApp))
    };
    let mut replica = open(store.clone());
    drive(&mut replica, &key, Height(300));
    let executed = schema::read_height(&store, schema::EXECUTED_HEIGHT_KEY)
        .expect("read")
        .expect("executed");
    assert!(executed.0 >= 300);
    let kept = schema::EXECUTED_ROOTS_KEPT as usize;
    assert_eq!(replica.machine().footprint().executed_roots, kept);
    let stored = store
        .scan_prefix(Namespace::Meta, schema::EXECUTED_ROOT_PREFIX, usize::MAX)
        .expect("scan");
    assert_eq!(
        stored.len(),
        kept,
        "old roots are deleted as execution goes on"
    );
    let roots = schema::read_executed_roots(&store, executed).expect("roots");
    let expected: Vec<(Height, Hash32)> = (executed.0 + 1 - kept as u64..=executed.0)
        .map(|h| (Height(h), root_of(h)))
        .collect();
    assert_eq!(roots, expected);
    drop(replica);

    let mut replica = open(store);
    let _ = replica.start(Millis(1)).expect("start");
    assert_eq!(replica.machine().footprint().executed_roots, kept);
}

/// A restart loads the committed window within its byte budget (issue
/// #21: it loaded up to `committed_window` blocks whatever their size, and
/// only trimmed them after restoring): the newest blocks while they fit,
/// never fewer than the floor; execution still resumes exactly from the
/// marker, the blocks left out executed from the store.
#[test]
fn a_restart_loads_the_committed_window_within_its_byte_budget() {
    let key = KeyPair::from_seed(&[44; 32]);
    let store = MemoryBackend::default();
    let mut cfg = config();
    cfg.committed_window = 4096;
    let mut replica =
        Replica::open(cfg.clone(), ValidatorId(0), schedule(&key), store.clone()).expect("open");
    drive(&mut replica, &key, Height(300));
    drop(replica);
    let committed = schema::read_height(&store, schema::COMMITTED_HEIGHT_KEY)
        .expect("read")
        .expect("committed height");
    assert!(committed.0 >= 300);
    let held = |blocks: &[qbind_core::consensus::Block]| -> usize {
        blocks
            .iter()
            .map(qbind_core::consensus::Block::held_bytes)
            .sum()
    };
    let load = |window| schema::load_persisted(&store, window).expect("load");

    // By count alone: every block (what a restart loaded before).
    let all = load(schema::Window::count(4096)).committed;
    assert_eq!(all.len() as u64, committed.0);
    let one = held(&all) / all.len();

    // A budget of about 100 blocks: the newest that fit, ending at the
    // committed height.
    let budget = one * 100;
    let fit = load(schema::Window {
        blocks: 4096,
        bytes: budget,
        floor: 64,
        history: 0,
    })
    .committed;
    assert!(held(&fit) <= budget, "{} > {budget}", held(&fit));
    assert!((80..=120).contains(&fit.len()), "{}", fit.len());
    assert_eq!(fit.last().map(|b| b.height()), Some(committed));
    let heights: Vec<u64> = fit.iter().map(|b| b.height().0).collect();
    let expected: Vec<u64> = (committed.0 + 1 - fit.len() as u64..=committed.0).collect();
    assert_eq!(heights, expected, "the newest blocks, ascending");

    // A budget below the floor: the floor, whatever the size; the count
    // limit still applies.
    let tight = |floor, blocks| {
        load(schema::Window {
            blocks,
            bytes: 1,
            floor,
            history: 0,
        })
        .committed
        .len()
    };
    assert_eq!(tight(64, 4096), 64);
    assert_eq!(tight(64, 10), 10);

    // What a replica loads at restart: the running window's count and
    // budget, floor MIN_COMMITTED_WINDOW, and leader selection's history;
    // with the DAG layer the whole count (its committed record is rebuilt
    // from the blocks).
    cfg.committed_window_bytes = one * 10;
    assert_eq!(
        schema::Window::at_restart(&cfg),
        schema::Window {
            blocks: 4096,
            bytes: one * 10,
            floor: qbind_core::consensus::MIN_COMMITTED_WINDOW,
            history: cfg.leader_policy.history_blocks(),
        }
    );

    // Leader selection remembers more blocks than the budget loads: their
    // entries are read (not the blocks), just below the loaded ones, so a
    // restarted validator draws the leaders the running ones do.
    let history = 100;
    let loaded = load(schema::Window {
        blocks: 4096,
        bytes: 1,
        floor: 64,
        history,
    });
    assert_eq!(loaded.committed.len(), 64);
    let heights: Vec<u64> = loaded.leader_history.iter().map(|e| e.height.0).collect();
    let below = loaded.committed[0].height().0;
    let expected: Vec<u64> = (below - (history as u64 - 64)..below).collect();
    assert_eq!(heights, expected);
    // Leader history reaches past the count limit too.
    let short = load(schema::Window {
        blocks: 10,
        bytes: usize::MAX,
        floor: 10,
        history,
    });
    assert_eq!(short.committed.len(), 10);
    assert_eq!(short.committed.len() + short.leader_history.len(), history);
    let mut dag = cfg.clone();
    dag.payload_mode = qbind_core::dag::PayloadMode::Dag;
    assert_eq!(schema::Window::at_restart(&dag).floor, 4096);

    // Execution 100 blocks behind, more than the 64 blocks this budget
    // loads: the rest are executed from the store, exactly once each.
    let lagging = Height(committed.0 - 100);
    set_executed(&store, lagging);
    let remembered = cfg.leader_policy.history_blocks();
    assert!(remembered > 64 && (remembered as u64) < committed.0);
    let mut replica =
        Replica::open(cfg, ValidatorId(0), schedule(&key), store.clone()).expect("reopen");
    let footprint = replica.machine().footprint();
    assert_eq!(footprint.committed_blocks, 64);
    assert_eq!(footprint.leader_history, remembered);
    assert_resumes_from(&mut replica, &key, lagging, committed);
}
