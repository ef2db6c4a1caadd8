//! The replica's restore path (issue #17 finding 9): execution resumes from
//! the executed-height marker whatever the gap to the committed height —
//! also when the gap is longer than the committed window held in memory.

use std::sync::Arc;

use qbind_core::consensus::{ConsensusConfig, Input};
use qbind_core::crypto::KeyPair;
use qbind_core::replica::{Action, Event, Replica};
use qbind_core::schema;
use qbind_core::signing::sign_domain;
use qbind_core::traits::{Durability, MemoryBackend, StateBackend, WriteBatch};
use qbind_core::types::{Height, Millis, NetworkEnvironment, ValidatorId};
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
    let mut batch = WriteBatch::new();
    schema::put_height(&mut batch, schema::EXECUTED_HEIGHT_KEY, lagging);
    store.write(batch, Durability::Durable).expect("write");

    let mut replica =
        Replica::open(config(), ValidatorId(0), schedule(&key), store).expect("reopen");
    let resumed = drive(&mut replica, &key, Height(committed.0 + 2));
    let expected: Vec<Height> = (lagging.0 + 1..=resumed.last().map_or(0, |h| h.0))
        .map(Height)
        .collect();
    assert_eq!(
        resumed, expected,
        "heights delivered after the restart are not exactly the ones after the marker"
    );
}
