//! Example (a): embedding the core with your own implementations.
//!
//! Four validators in one process, each an [`Engine`] over the integrator's
//! own store ([`BTreeStore`]), network ([`ChannelTransport`]), signer
//! ([`GuardedSigner`]), clock ([`MonotonicClock`]) and application
//! ([`KvApplication`]) — none of the core's in-memory implementations is
//! used. They commit blocks of submitted `key=value` transactions until
//! every validator has executed [`Params::blocks`] blocks; then [`run`]
//! checks that they all computed the same state root at every height.
//!
//! The engine is the tokio driver of the core's [`qbind_core::replica::Replica`]:
//! it feeds messages, timer ticks and submitted transactions to the replica,
//! asks the signer for the signatures the replica wants, and sends what it
//! sends. Everything the replica writes (safety state, blocks, commits, the
//! application's writes) is in the store before anything leaves. To drive
//! the replica from your own event loop instead, see `docs/embedding.md`.

mod app;
mod clock;
mod signer;
mod store;
mod transport;

pub use app::{KV_PREFIX, KvApplication, MAX_KEY_BYTES, MAX_KEYS, MAX_VALUE_BYTES, parse_set};
pub use clock::MonotonicClock;
pub use signer::GuardedSigner;
pub use store::BTreeStore;
pub use transport::ChannelTransport;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use qbind_core::application::{Application, ApplicationError};
use qbind_core::consensus::ConsensusConfig;
use qbind_core::crypto::KeyPair;
use qbind_core::engine::Engine;
use qbind_core::replica::{Event, ReplicaError};
use qbind_core::types::{Hash32, Height, NetworkEnvironment, ValidatorId};
use qbind_core::validator::{EpochSchedule, ValidatorSet, ValidatorSetError};
use tokio::sync::{mpsc, watch};

/// The network the example runs on (its chain id and domain tags).
pub const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

/// What to run.
#[derive(Clone, Debug)]
pub struct Params {
    /// Number of validators (equal stake).
    pub validators: usize,
    /// Stop once every validator has executed this many blocks.
    pub blocks: u64,
    /// `key=value` transactions submitted to each validator.
    pub txs_per_validator: usize,
    /// Give up after this much wall-clock time.
    pub deadline: Duration,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            validators: 4,
            blocks: 20,
            txs_per_validator: 25,
            deadline: Duration::from_secs(60),
        }
    }
}

/// What a run produced.
pub struct Summary {
    /// The validator set (public keys and stakes) the run used.
    pub schedule: Arc<EpochSchedule>,
    /// Highest height each validator executed when it was stopped.
    pub executed: Vec<u64>,
    /// Each validator's state root at height [`Params::blocks`].
    pub roots_at_target: Vec<Hash32>,
    /// Transactions the application applied, per validator, up to the
    /// target height.
    pub applied_txs: Vec<u64>,
    /// Transactions it rejected (not `key=value`), per validator, up to the
    /// target height.
    pub rejected_txs: Vec<u64>,
    /// Signing requests each validator's signer refused.
    pub signer_refusals: Vec<u64>,
    /// Each validator's store, as the engine left it.
    pub stores: Vec<BTreeStore>,
}

/// Why the example failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The validator set was refused.
    #[error("validator set: {0}")]
    ValidatorSet(#[from] ValidatorSetError),
    /// The tokio runtime did not start.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// A validator could not open its store.
    #[error("validator {validator} did not open: {source}")]
    Open {
        /// Which.
        validator: usize,
        /// Why.
        source: ReplicaError,
    },
    /// A validator stopped with an error.
    #[error("validator {validator} stopped: {source}")]
    Stopped {
        /// Which.
        validator: usize,
        /// Why.
        source: ReplicaError,
    },
    /// A validator's task panicked or was cancelled.
    #[error("validator {validator}'s task failed: {source}")]
    Task {
        /// Which.
        validator: usize,
        /// Why.
        source: tokio::task::JoinError,
    },
    /// The validators did not get there in time.
    #[error("after {secs} s the validators had executed heights {executed:?}")]
    Timeout {
        /// Heights executed by then.
        executed: Vec<u64>,
        /// The deadline.
        secs: u64,
    },
    /// Two validators computed different state roots for one height.
    #[error("validators {a} and {b} disagree on the state root at height {height}")]
    Diverged {
        /// The height.
        height: u64,
        /// One validator.
        a: usize,
        /// Another.
        b: usize,
    },
    /// A validator's store does not hold the state of the last height it
    /// reported executed.
    #[error("validator {validator}'s store does not hold the state it reported last")]
    StoreMismatch {
        /// Which.
        validator: usize,
    },
    /// The application could not read a validator's store.
    #[error("validator {validator}: {source}")]
    Application {
        /// Which.
        validator: usize,
        /// Why.
        source: ApplicationError,
    },
}

/// The example's validator keys: fixed seeds, so that every run (and the
/// light client, example (c)) knows them. Never derive real keys like this.
#[must_use]
pub fn validator_keys(n: usize) -> Vec<KeyPair> {
    (0..n)
        .map(|i| KeyPair::from_seed(&[i as u8 + 1; 32]))
        .collect()
}

/// Per-validator record of what it executed.
#[derive(Default)]
struct Executions {
    roots: BTreeMap<u64, Hash32>,
    applied: u64,
    rejected: u64,
}

/// Run the example; `progress` hears one line per notable event.
pub fn run(params: &Params, progress: &mut dyn FnMut(&str)) -> Result<Summary, EmbedError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(params, progress))
}

async fn run_async(params: &Params, progress: &mut dyn FnMut(&str)) -> Result<Summary, EmbedError> {
    let n = params.validators.max(1);
    let keys = validator_keys(n);
    // Everybody agrees on the validator set: public keys with their stakes.
    let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())?;
    let schedule = Arc::new(EpochSchedule::fixed(set));
    let stores: Vec<BTreeStore> = (0..n).map(|_| BTreeStore::new()).collect();
    let mut network = start(params, &schedule, keys, &stores)?;
    progress(&format!("started {n} validators"));

    let mut executions: Vec<Executions> = (0..n).map(|_| Executions::default()).collect();
    let deadline = tokio::time::Instant::now() + params.deadline;
    let done = |ex: &[Executions]| {
        ex.iter().all(|e| {
            e.roots
                .last_key_value()
                .is_some_and(|(h, _)| *h >= params.blocks)
        })
    };
    while !done(&executions) {
        let Ok(Some((i, event))) = tokio::time::timeout_at(deadline, network.events.recv()).await
        else {
            break;
        };
        record(&mut executions, params.blocks, i, event, progress);
    }
    let signers = std::mem::take(&mut network.signers);
    let mut events = network.stop().await?;
    // The engines went on executing until they saw the stop: take in what
    // they reported meanwhile (the stream ends once every engine is gone).
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some((i, event))) = tokio::time::timeout_at(drain_until, events.recv()).await {
        record(&mut executions, params.blocks, i, event, &mut |_| {});
    }
    let executed: Vec<u64> = executions
        .iter()
        .map(|e| e.roots.last_key_value().map_or(0, |(h, _)| *h))
        .collect();
    if !done(&executions) {
        return Err(EmbedError::Timeout {
            executed,
            secs: params.deadline.as_secs(),
        });
    }
    check_agreement(&executions, &stores)?;
    progress(&format!(
        "all {n} validators agree on every state root up to height {}",
        params.blocks
    ));
    Ok(Summary {
        schedule,
        roots_at_target: executions
            .iter()
            .map(|e| e.roots.get(&params.blocks).copied().unwrap_or(Hash32::ZERO))
            .collect(),
        executed,
        applied_txs: executions.iter().map(|e| e.applied).collect(),
        rejected_txs: executions.iter().map(|e| e.rejected).collect(),
        signer_refusals: signers.iter().map(|s| s.refused()).collect(),
        stores,
    })
}

/// The running validators.
struct Network {
    stop: watch::Sender<bool>,
    /// Every validator's events, tagged with its index.
    events: mpsc::UnboundedReceiver<(usize, Event)>,
    signers: Vec<Arc<GuardedSigner>>,
    /// Where to submit transactions to each validator.
    submitters: Vec<mpsc::UnboundedSender<Vec<u8>>>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), ReplicaError>>>,
}

/// Open one engine per store, each with its own implementations of the
/// four traits and the application, hand each its share of the
/// transactions, and start them (on the current tokio runtime).
fn start(
    params: &Params,
    schedule: &Arc<EpochSchedule>,
    keys: Vec<KeyPair>,
    stores: &[BTreeStore],
) -> Result<Network, EmbedError> {
    let mut cfg = ConsensusConfig::new(ENV);
    cfg.base_timeout_ms = 300;
    let (stop, stop_rx) = watch::channel(false);
    let (events_tx, events) = mpsc::unbounded_channel::<(usize, Event)>();
    let mut network = Network {
        stop,
        events,
        signers: Vec::new(),
        submitters: Vec::new(),
        tasks: Vec::new(),
    };
    let transports = ChannelTransport::network(stores.len(), 4_096);
    for (i, ((transport, key), store)) in transports.into_iter().zip(keys).zip(stores).enumerate() {
        let signer = Arc::new(GuardedSigner::new(ValidatorId(i as u32), ENV, key));
        network.signers.push(Arc::clone(&signer));
        // Submitted transactions go to this validator's pool; it proposes
        // them when it leads.
        let (submit, submissions) = mpsc::unbounded_channel();
        for j in 0..params.txs_per_validator {
            let _ = submit.send(format!("v{i}/k{j}={}", j * j).into_bytes());
        }
        // Consensus orders any bytes; the application rejects what it cannot
        // read, and every validator rejects it alike.
        let _ = submit.send(format!("not a key-value pair from {i}").into_bytes());
        network.submitters.push(submit);
        let (own_events, mut own_rx) = mpsc::unbounded_channel();
        let forward = events_tx.clone();
        tokio::spawn(async move {
            while let Some(event) = own_rx.recv().await {
                if forward.send((i, event)).is_err() {
                    break;
                }
            }
        });
        let engine = Engine::open(
            cfg.clone(),
            Arc::clone(schedule),
            store.clone(),
            transport,
            Box::new(signer),
            MonotonicClock::new(),
        )
        .map_err(|source| EmbedError::Open {
            validator: i,
            source,
        })?
        .with_application(Box::new(KvApplication))
        .with_events(own_events)
        .with_submissions(submissions);
        network
            .tasks
            .push(tokio::spawn(engine.run(stop_rx.clone())));
    }
    Ok(network)
}

impl Network {
    /// Stop every engine and require a clean stop; what is left is the
    /// event stream, to drain.
    async fn stop(self) -> Result<mpsc::UnboundedReceiver<(usize, Event)>, EmbedError> {
        let _ = self.stop.send(true);
        drop(self.submitters);
        for (i, task) in self.tasks.into_iter().enumerate() {
            task.await
                .map_err(|source| EmbedError::Task {
                    validator: i,
                    source,
                })?
                .map_err(|source| EmbedError::Stopped {
                    validator: i,
                    source,
                })?;
        }
        Ok(self.events)
    }
}

/// Take in one validator's event.
fn record(
    executions: &mut [Executions],
    target: u64,
    i: usize,
    event: Event,
    progress: &mut dyn FnMut(&str),
) {
    let Event::Executed {
        height: Height(h),
        state_root,
        report,
    } = event
    else {
        return;
    };
    let Some(e) = executions.get_mut(i) else {
        return;
    };
    e.roots.insert(h, state_root);
    if h <= target {
        e.applied += report.succeeded;
        e.rejected += report.rejected;
    }
    if i == 0 {
        progress(&format!(
            "validator 0 executed height {h}: {} set, {} rejected, state root {state_root:?}…",
            report.succeeded, report.rejected,
        ));
    }
}

/// Every height that two validators both executed has one root, and each
/// store holds the root its validator reported last.
fn check_agreement(executions: &[Executions], stores: &[BTreeStore]) -> Result<(), EmbedError> {
    for (a, ea) in executions.iter().enumerate() {
        for (b, eb) in executions.iter().enumerate().skip(a + 1) {
            for (h, root) in &ea.roots {
                if eb.roots.get(h).is_some_and(|r| r != root) {
                    return Err(EmbedError::Diverged { height: *h, a, b });
                }
            }
        }
    }
    for (i, (e, store)) in executions.iter().zip(stores).enumerate() {
        let in_store =
            KvApplication
                .state_root(store)
                .map_err(|source| EmbedError::Application {
                    validator: i,
                    source,
                })?;
        if e.roots.last_key_value().map(|(_, r)| *r) != Some(in_store) {
            return Err(EmbedError::StoreMismatch { validator: i });
        }
    }
    Ok(())
}
