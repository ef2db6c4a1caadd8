//! The thin async engine: runs one validator's [`HotStuff`] over the four
//! traits (DESIGN "A thin async engine in core wires the state machines to
//! those traits").
//!
//! It carries out effects strictly in order: the safety state is durable
//! before the signing request that depends on it is even issued, and a
//! committed block is durable (block, height marker) before it is reported.
//! The same state machines run in the simulator; the engine adds no protocol
//! logic.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::codec::{CodecLimits, Decode, DecodeError, Encode};
use crate::consensus::{
    Block, ConsensusConfig, ConsensusMetrics, ConsensusMsg, Effect, Evidence, HotStuff, Input,
    SafetyState,
};
use crate::traits::{
    Clock, Durability, Namespace, Signer, StateBackend, StorageError, Transport, WriteBatch,
};
use crate::types::{Millis, ValidatorId};
use crate::validator::EpochSchedule;

/// Key of the safety state in [`Namespace::Safety`].
pub const SAFETY_KEY: &[u8] = b"safety_state";
/// Key of the committed height marker in [`Namespace::Meta`].
pub const COMMITTED_HEIGHT_KEY: &[u8] = b"committed_height";
/// Prefix of committed blocks in [`Namespace::Blocks`] (then the height, u64 BE).
pub const COMMITTED_BLOCK_PREFIX: u8 = b'c';
/// Prefix of uncommitted blocks in [`Namespace::Blocks`] (then the block id).
pub const PENDING_BLOCK_PREFIX: u8 = b'p';
/// Key of the height whose transactions were last delivered for execution,
/// in [`Namespace::Meta`].
pub const EXECUTED_HEIGHT_KEY: &[u8] = b"executed_height";

fn committed_key(height: u64) -> Vec<u8> {
    let mut k = vec![COMMITTED_BLOCK_PREFIX];
    k.extend_from_slice(&height.to_be_bytes());
    k
}

fn pending_key(id: &crate::types::Hash32) -> Vec<u8> {
    let mut k = vec![PENDING_BLOCK_PREFIX];
    k.extend_from_slice(id.as_bytes());
    k
}

/// Why the engine stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The state store failed; the engine stops rather than sign anything it
    /// could not persist.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// Persisted state did not decode.
    #[error("persisted {what} is corrupt: {source}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Why.
        source: DecodeError,
    },
    /// Executing a committed block failed (state unreadable or a supply
    /// counter overflowed); the engine stops rather than diverge.
    #[error("execution: {0}")]
    Execution(#[from] crate::execution::ExecutionError),
    /// The monetary engine refused its inputs (e.g. a stored state that does
    /// not precede the epoch being closed).
    #[error("monetary engine: {0}")]
    Monetary(#[from] crate::monetary::MonetaryError),
    /// A committed block's proposer has no fee account configured.
    #[error("no fee account configured for proposer {0}")]
    UnknownProposer(ValidatorId),
}

/// Execution inside the engine ([`Engine::with_execution`]): every committed
/// block's transactions are decoded, signature-checked and executed with
/// [`crate::execution::execute_wire_block`] against the engine's store, and
/// the resulting account changes, the state summary and the executed-height
/// marker are written in **one durable batch** — so after a crash a block
/// is either fully applied and marked executed, or neither, and it is never
/// applied twice (DESIGN "Catch-up").
#[derive(Clone, Debug)]
pub struct EngineExecution {
    /// The network the transactions are signed for.
    pub env: crate::types::NetworkEnvironment,
    /// Profile, gas schedule, block gas limit, fee split.
    pub config: crate::execution::ExecutionConfig,
    /// The fee account of each validator, indexed by validator id.
    pub proposer_accounts: Vec<crate::types::AccountId>,
    /// Run the monetary engine at epoch boundaries (`None`: never).
    pub monetary: Option<EngineMonetary>,
}

/// Key in [`Namespace::Monetary`] of the fees paid so far in the current
/// epoch (u128 BE), updated with every executed block.
pub const EPOCH_FEES_KEY: &[u8] = b"epoch_fees";

/// The monetary engine inside [`EngineExecution`]: at every height that is
/// a multiple of `config.blocks_per_epoch`, the epoch's fees (summed in the
/// store block by block), `staked` and the supply after the block go to
/// [`crate::monetary::compute_epoch_state`]; the resulting state is stored
/// ([`crate::monetary::MonetaryEpochState::write_to`]) and, in Active mode,
/// its issuance is credited — the validators' share split by stake — all in
/// the same durable batch as the block. Shadow computes and stores the state
/// but credits nothing; Off skips the boundary entirely.
#[derive(Clone, Debug)]
pub struct EngineMonetary {
    /// Phases, rates, split, mode, epoch length.
    pub config: crate::monetary::MonetaryConfig,
    /// Treasury, insurance and community accounts (and the validator pool
    /// used when no validator has stake).
    pub pools: crate::monetary::SeigniorageRecipients,
    /// Reward account and stake of each validator.
    pub stakes: Vec<(crate::types::AccountId, u64)>,
    /// Units staked, the `staked` input of every epoch.
    pub staked: u128,
}

/// Something the engine reports to its embedder.
#[derive(Clone, Debug)]
pub enum EngineEvent {
    /// A block was committed and persisted. The commit is written buffered
    /// and reported once a later durable write covers it (normally the
    /// executed-height write of the same block, so this event follows that
    /// block's [`EngineEvent::Execute`]).
    Committed {
        /// The block.
        block: Block,
        /// When (engine clock).
        at: Millis,
    },
    /// Equivocation evidence.
    Evidence(Evidence),
    /// An epoch was closed by the monetary engine (only with
    /// [`EngineMonetary`]); its state is stored with the block at `height`.
    EpochClosed {
        /// The block that closed the epoch.
        height: crate::types::Height,
        /// The epoch's monetary state.
        state: crate::monetary::MonetaryEpochState,
        /// Units credited (0 in Shadow mode).
        credited: u128,
    },
    /// A committed block was executed and its state written (only with
    /// [`Engine::with_execution`]).
    Executed {
        /// Its height.
        height: crate::types::Height,
        /// The state root after it.
        state_root: crate::types::Hash32,
        /// Transfers that happened.
        succeeded: u64,
        /// Included, fee paid, transfer not made.
        failed: u64,
        /// Had no effect (undecodable, bad signature, admission or nonce).
        rejected: u64,
        /// Fees paid.
        fees: u128,
        /// The burned part.
        burned: u128,
    },
    /// Committed transactions to execute, in height order, each at most once.
    /// Delivery is at least once across a crash of the engine between this
    /// event and its durable executed-height marker; executors must make
    /// applying a height idempotent (the execution layer commits the
    /// executed height atomically with the state it produced).
    Execute {
        /// Height of the committed block.
        height: crate::types::Height,
        /// Its proposer.
        proposer: crate::types::ValidatorId,
        /// Its transactions.
        txs: Vec<Vec<u8>>,
    },
}

/// What a validator persisted.
#[derive(Debug, Default)]
pub struct Persisted {
    /// The safety state, if it ever wrote one.
    pub safety: Option<SafetyState>,
    /// The last committed blocks, ascending.
    pub committed: Vec<Block>,
    /// Uncommitted blocks it stored.
    pub pending: Vec<Block>,
    /// DAG batches it stored.
    pub batches: Vec<crate::dag::SignedBatch>,
    /// Height whose transactions were last delivered for execution.
    pub executed: crate::types::Height,
}

/// Load what a validator persisted: its safety state, the last `window`
/// committed blocks and its uncommitted blocks.
pub fn load_persisted<S: StateBackend>(store: &S, window: usize) -> Result<Persisted, EngineError> {
    let safety = match store.get(Namespace::Safety, SAFETY_KEY)? {
        Some(bytes) => {
            Some(
                SafetyState::from_bytes(&bytes).map_err(|source| EngineError::Corrupt {
                    what: "safety state",
                    source,
                })?,
            )
        }
        None => None,
    };
    let mut committed = Vec::new();
    if let Some(bytes) = store.get(Namespace::Meta, COMMITTED_HEIGHT_KEY)? {
        let height = u64::from_bytes(&bytes).map_err(|source| EngineError::Corrupt {
            what: "committed height",
            source,
        })?;
        let from = height.saturating_sub(window.max(1) as u64 - 1).max(1);
        for h in from..=height {
            if let Some(bytes) = store.get(Namespace::Blocks, &committed_key(h))? {
                committed.push(Block::from_bytes(&bytes).map_err(|source| {
                    EngineError::Corrupt {
                        what: "committed block",
                        source,
                    }
                })?);
            }
        }
    }
    let mut pending = Vec::new();
    for (_, bytes) in store.scan_prefix(Namespace::Blocks, &[PENDING_BLOCK_PREFIX], usize::MAX)? {
        pending.push(
            Block::from_bytes(&bytes).map_err(|source| EngineError::Corrupt {
                what: "uncommitted block",
                source,
            })?,
        );
    }
    let mut batches = Vec::new();
    for (_, bytes) in store.scan_prefix(Namespace::DagBatches, &[], usize::MAX)? {
        batches.push(
            crate::dag::SignedBatch::from_bytes(&bytes).map_err(|source| EngineError::Corrupt {
                what: "DAG batch",
                source,
            })?,
        );
    }
    let executed = match store.get(Namespace::Meta, EXECUTED_HEIGHT_KEY)? {
        Some(bytes) => crate::types::Height(u64::from_bytes(&bytes).map_err(|source| {
            EngineError::Corrupt {
                what: "executed height",
                source,
            }
        })?),
        None => crate::types::Height(0),
    };
    Ok(Persisted {
        safety,
        committed,
        pending,
        batches,
        executed,
    })
}

/// The atomic batch that records one committed block: body, QC, height
/// marker, and removal of its uncommitted copy.
#[must_use]
pub fn commit_batch(block: &Block) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(
        Namespace::Blocks,
        committed_key(block.height().0),
        block.to_bytes(),
    );
    batch.delete(Namespace::Blocks, pending_key(&block.id()));
    batch.put(
        Namespace::QuorumCerts,
        block.height().0.to_be_bytes().to_vec(),
        block.justify().to_bytes(),
    );
    batch.put(
        Namespace::Meta,
        COMMITTED_HEIGHT_KEY.to_vec(),
        block.height().0.to_bytes(),
    );
    batch
}

/// One validator: a [`HotStuff`] machine driven over the traits.
pub struct Engine<S, T, C> {
    machine: HotStuff,
    store: S,
    transport: T,
    signer: Box<dyn Signer>,
    clock: C,
    timers: BTreeSet<Millis>,
    events: Option<mpsc::UnboundedSender<EngineEvent>>,
    submissions: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    metrics_out: Option<watch::Sender<ConsensusMetrics>>,
    limits: CodecLimits,
    execution: Option<EngineExecution>,
    /// Commits written `Buffered` and not yet covered by a durable write,
    /// with their [`EngineEvent::Committed`] held back until they are.
    unsynced_commits: Vec<(Block, Millis)>,
}

impl<S: StateBackend, T: Transport, C: Clock> Engine<S, T, C> {
    /// Open validator `signer.validator_id()` on `store`, resuming from
    /// whatever it persisted before.
    pub fn open(
        cfg: ConsensusConfig,
        schedule: Arc<EpochSchedule>,
        store: S,
        transport: T,
        signer: Box<dyn Signer>,
        clock: C,
    ) -> Result<Self, EngineError> {
        let p = load_persisted(&store, cfg.committed_window)?;
        let limits = cfg.limits.clone();
        let mut machine = HotStuff::new(
            cfg,
            signer.validator_id(),
            schedule,
            p.safety,
            p.committed,
            p.pending,
        );
        machine.restore_dag(p.batches, p.executed);
        Ok(Engine {
            machine,
            store,
            transport,
            signer,
            clock,
            timers: BTreeSet::new(),
            events: None,
            submissions: None,
            metrics_out: None,
            limits,
            execution: None,
            unsynced_commits: Vec::new(),
        })
    }

    /// Report commits and evidence on `sink`.
    #[must_use]
    pub fn with_events(mut self, sink: mpsc::UnboundedSender<EngineEvent>) -> Self {
        self.events = Some(sink);
        self
    }

    /// Take transactions for the FIFO payload from `source`.
    #[must_use]
    pub fn with_submissions(mut self, source: mpsc::UnboundedReceiver<Vec<u8>>) -> Self {
        self.submissions = Some(source);
        self
    }

    /// Publish the consensus metrics after every input.
    #[must_use]
    pub fn with_metrics(mut self, out: watch::Sender<ConsensusMetrics>) -> Self {
        self.metrics_out = Some(out);
        self
    }

    /// Execute committed blocks against the store (see [`EngineExecution`]).
    #[must_use]
    pub fn with_execution(mut self, execution: EngineExecution) -> Self {
        self.execution = Some(execution);
        self
    }

    /// The validator this engine runs.
    #[must_use]
    pub fn id(&self) -> ValidatorId {
        self.machine.id()
    }

    /// Run until `shutdown` becomes true or a storage failure stops it.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), EngineError> {
        if self.execution.is_some() {
            // Proposals carry the root of our latest executed height, and we
            // check theirs against it, also right after a restart.
            let executed = load_persisted(&self.store, 1)?.executed;
            if executed.0 > 0 {
                use crate::execution::AccountReader;
                let state_root = crate::execution::BackendAccounts::new(&self.store)
                    .summary()
                    .map_err(crate::execution::ExecutionError::from)?
                    .root();
                self.step(Input::Executed {
                    height: executed,
                    state_root,
                })
                .await?;
            }
        }
        self.step(Input::Start).await?;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let next_timer = self.timers.first().copied();
            let input = tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                received = self.transport.recv() => match received {
                    Ok((from, bytes)) => {
                        match ConsensusMsg::decode_message(&bytes, &self.limits) {
                            Ok(msg) => Input::Message { from, msg },
                            Err(error) => Input::Malformed { from, error },
                        }
                    }
                    Err(_) => return Ok(()),
                },
                () = sleep_opt(&self.clock, next_timer) => {
                    let now = self.clock.now();
                    while self.timers.first().is_some_and(|t| *t <= now) {
                        self.timers.pop_first();
                    }
                    Input::Tick
                }
                Some(tx) = recv_opt(&mut self.submissions) => Input::SubmitTransaction(tx),
            };
            self.step(input).await?;
        }
    }

    /// Feed one input and carry out all resulting effects (signatures are
    /// fed back as further inputs).
    async fn step(&mut self, input: Input) -> Result<(), EngineError> {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let effects = self.machine.handle(self.clock.now(), input);
            for effect in effects {
                self.apply(effect, &mut inputs).await?;
            }
        }
        // Commits whose execution did not follow in this step (DAG data
        // still missing, or the last step of a run) are made durable here.
        if let Some((block, _)) = self.unsynced_commits.last() {
            let mut batch = WriteBatch::new();
            batch.put(
                Namespace::Meta,
                COMMITTED_HEIGHT_KEY.to_vec(),
                block.height().0.to_bytes(),
            );
            self.store.write(batch, Durability::Durable)?;
            self.commits_durable();
        }
        if let Some(out) = &self.metrics_out {
            let _ = out.send(self.machine.metrics().clone());
        }
        Ok(())
    }

    async fn apply(
        &mut self,
        effect: Effect,
        inputs: &mut VecDeque<Input>,
    ) -> Result<(), EngineError> {
        match effect {
            Effect::PersistSafety(state) => {
                let mut batch = WriteBatch::new();
                batch.put(Namespace::Safety, SAFETY_KEY.to_vec(), state.to_bytes());
                self.store.write(batch, Durability::Durable)?;
            }
            Effect::Sign(job) => match self.signer.sign(&job.request).await {
                Ok(signature) => inputs.push_back(Input::Signed { job, signature }),
                Err(error) => {
                    tracing::error!(%error, kind = ?job.request.kind, "signer refused or failed");
                }
            },
            Effect::Send { to, msg } => {
                if let Err(error) = self.transport.send(to, msg.to_bytes()).await {
                    tracing::debug!(%error, %to, "send failed");
                }
            }
            Effect::Broadcast(msg) => {
                if let Err(error) = self.transport.broadcast(msg.to_bytes()).await {
                    tracing::debug!(%error, "broadcast failed");
                }
            }
            Effect::PersistBlock(block) => {
                // Buffered: the durable safety-state write that precedes any
                // vote on this block makes it durable too (no holes).
                let mut batch = WriteBatch::new();
                batch.put(
                    Namespace::Blocks,
                    pending_key(&block.id()),
                    block.to_bytes(),
                );
                self.store.write(batch, Durability::Buffered)?;
            }
            Effect::PersistBatch(sb) => {
                // Durable: an acknowledgement follows, promising availability.
                let mut batch = WriteBatch::new();
                batch.put(
                    Namespace::DagBatches,
                    sb.batch.digest().0.to_vec(),
                    sb.to_bytes(),
                );
                self.store.write(batch, Durability::Durable)?;
            }
            Effect::Execute {
                height,
                proposer,
                txs,
                ..
            } => {
                let (mut batch, executed) = match &self.execution {
                    Some(exec) => execution_batch(&self.store, exec, height, proposer, &txs)?,
                    None => (WriteBatch::new(), Vec::new()),
                };
                if let Some(sink) = &self.events {
                    let _ = sink.send(EngineEvent::Execute {
                        height,
                        proposer,
                        txs,
                    });
                }
                batch.put(
                    Namespace::Meta,
                    EXECUTED_HEIGHT_KEY.to_vec(),
                    height.0.to_bytes(),
                );
                self.store.write(batch, Durability::Durable)?;
                // No holes: this durable write made the commits before it
                // durable too.
                self.commits_durable();
                for event in &executed {
                    if let EngineEvent::Executed { state_root, .. } = event {
                        inputs.push_back(Input::Executed {
                            height,
                            state_root: *state_root,
                        });
                    }
                }
                if let Some(sink) = &self.events {
                    for event in executed {
                        let _ = sink.send(event);
                    }
                }
            }
            Effect::ForgetBlocks(ids) => {
                let mut batch = WriteBatch::new();
                for id in &ids {
                    batch.delete(Namespace::Blocks, pending_key(id));
                }
                self.store.write(batch, Durability::Buffered)?;
            }
            Effect::Commit(block) => {
                // Buffered: the durable executed-height write that follows
                // in the same step (or the sync at the end of the step)
                // makes it durable, so a block costs one fsync, not two.
                self.store
                    .write(commit_batch(&block), Durability::Buffered)?;
                self.unsynced_commits.push((block, self.clock.now()));
            }
            Effect::SetTimer(at) => {
                self.timers.insert(at);
            }
            Effect::Evidence(ev) => {
                tracing::warn!(offender = %ev.offender(), "equivocation evidence");
                if let Some(sink) = &self.events {
                    let _ = sink.send(EngineEvent::Evidence(ev));
                }
            }
            Effect::Rejected { from, error } => {
                tracing::debug!(%from, %error, "rejected consensus input");
            }
        }
        Ok(())
    }
}

impl<S: StateBackend, T: Transport, C: Clock> Engine<S, T, C> {
    /// The commits written so far are durable: report them.
    fn commits_durable(&mut self) {
        for (block, at) in self.unsynced_commits.drain(..) {
            if let Some(sink) = &self.events {
                let _ = sink.send(EngineEvent::Committed { block, at });
            }
        }
    }
}

/// Execute one committed block (and, at an epoch boundary, the monetary
/// step) against `store`: the writes to commit atomically with the
/// executed-height marker, and the events to report once they are durable.
fn execution_batch<S: StateBackend>(
    store: &S,
    exec: &EngineExecution,
    height: crate::types::Height,
    proposer: ValidatorId,
    txs: &[Vec<u8>],
) -> Result<(WriteBatch, Vec<EngineEvent>), EngineError> {
    use crate::execution::{AccountReader, AfterTransition, BackendAccounts};
    let proposer_account = *exec
        .proposer_accounts
        .get(proposer.0 as usize)
        .ok_or(EngineError::UnknownProposer(proposer))?;
    let ctx = crate::execution::BlockContext {
        height,
        proposer: proposer_account,
        config: exec.config,
    };
    let reader = BackendAccounts::new(store);
    let wire = crate::execution::execute_wire_block(&reader, &ctx, exec.env, txs)?;
    let outcome = &wire.outcome;
    let mut transition = std::borrow::Cow::Borrowed(&outcome.transition);
    let mut closed = None;
    let mut epoch_fees = None;
    let mut events = Vec::new();
    let mut state_root = outcome.state_root;
    if let Some(m) = &exec.monetary
        && m.config.mode != crate::monetary::MonetaryMode::Off
    {
        let so_far = match store.get(Namespace::Monetary, EPOCH_FEES_KEY)? {
            None => 0,
            Some(bytes) => u128::from_bytes(&bytes).map_err(|source| EngineError::Corrupt {
                what: "epoch fee total",
                source,
            })?,
        };
        let fees = so_far.saturating_add(outcome.fees);
        let bpe = m.config.blocks_per_epoch;
        if crate::monetary::is_epoch_boundary(height.0, bpe) {
            let epoch = crate::monetary::epoch_for_height(height.0, bpe);
            let previous = match crate::monetary::MonetaryEpochState::load_latest(store)? {
                Some(p) => p,
                // First boundary this store sees: start from the genesis
                // state placed just before this epoch.
                None => crate::monetary::MonetaryEpochState {
                    epoch: epoch.saturating_sub(1),
                    ..crate::monetary::MonetaryEpochState::genesis(&m.config)
                },
            };
            let after = AfterTransition::new(&reader, &outcome.transition);
            let summary = after
                .summary()
                .map_err(crate::execution::ExecutionError::from)?;
            let inputs = crate::monetary::EpochInputs {
                fees,
                staked: m.staked,
                total_supply: summary.minted.saturating_sub(summary.burned),
            };
            let state = crate::monetary::compute_epoch_state(&m.config, &previous, epoch, &inputs)?;
            let credits = state.credits_by_stake(m.config.mode, &m.pools, &m.stakes);
            let credited: u128 = credits.iter().map(|c| c.1).sum();
            if !credits.is_empty() {
                let issuance = crate::execution::credit(&after, &credits)
                    .map_err(crate::execution::ExecutionError::from)?;
                state_root = issuance.root();
                transition = std::borrow::Cow::Owned(outcome.transition.then(&issuance));
            }
            closed = Some(state);
            epoch_fees = Some(0);
            events.push(EngineEvent::EpochClosed {
                height,
                state,
                credited,
            });
        } else {
            epoch_fees = Some(fees);
        }
    }
    let mut batch = transition.to_write_batch();
    if let Some(state) = closed {
        state.write_to(&mut batch);
    }
    if let Some(fees) = epoch_fees {
        batch.put(
            Namespace::Monetary,
            EPOCH_FEES_KEY.to_vec(),
            fees.to_bytes(),
        );
    }
    events.insert(
        0,
        EngineEvent::Executed {
            height,
            state_root,
            succeeded: wire.succeeded(),
            failed: wire.failed(),
            rejected: wire.rejected(),
            fees: outcome.fees,
            burned: outcome.burned,
        },
    );
    Ok((batch, events))
}

async fn sleep_opt<C: Clock>(clock: &C, at: Option<Millis>) {
    match at {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn recv_opt(rx: &mut Option<mpsc::UnboundedReceiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
