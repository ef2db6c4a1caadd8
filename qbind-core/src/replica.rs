//! One validator's replica: the consensus state machine, its store and its
//! application, with the one interpreter of the machine's effects (DESIGN
//! "One effect interpreter, used by the async engine and by the simulator
//! alike").
//!
//! [`Replica::handle`] feeds an input to [`HotStuff`] and carries out, in
//! order, every effect that touches the store or the application: the safety
//! state, uncommitted blocks, DAG batches, commits, execution of committed
//! blocks (through [`Application`]) and the executed-height marker. What
//! needs the outside world — a signature, a message, a timer — and what the
//! embedder should hear about comes back as [`Action`]s, in the order the
//! machine produced them. Because every write of an input is done before any
//! action is returned, no signature can be asked for (and no message can
//! leave) before the state it depends on is written; the safety state is
//! written durably.
//!
//! [`Replica::open`] is the restore path after a restart: it loads what the
//! store holds ([`crate::schema::load_persisted`]) — safety state, the
//! committed tail, uncommitted blocks, DAG batches and the executed height —
//! and rebuilds the machine from it. The async engine
//! ([`crate::engine::Engine`], feature `engine`) and the simulator
//! ([`crate::sim`], feature `sim`) both drive validators through this type,
//! so a simulated crash and restart runs exactly the production code.
//!
//! Durability: uncommitted blocks and commits are written buffered; a
//! durable write covers every earlier write (the [`StateBackend`] contract
//! of the persistent stores), so one fsync per block suffices: the
//! executed-height write that follows a commit, or the sync at the end of
//! [`Replica::handle`]. A commit is reported ([`Event::Committed`]) only once
//! it is durable.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::application::{Application, ApplicationError, CommittedBlock, ExecutionReport};
use crate::consensus::{
    Block, ConsensusConfig, ConsensusError, ConsensusMetrics, ConsensusMsg, Effect, Evidence,
    HotStuff, Input, Payload, SignJob,
};
use crate::dag::SignedBatch;
use crate::schema::{self, PersistError};
use crate::traits::{Durability, Namespace, StateBackend, StorageError, WriteBatch};
use crate::types::{AccountId, Hash32, Height, Millis, ValidatorId};
use crate::validator::EpochSchedule;

/// Why a replica stopped or could not start. It stops rather than sign
/// anything it could not persist or execute a block it could not apply.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The state store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// Persisted state did not load.
    #[error(transparent)]
    Persisted(#[from] PersistError),
    /// A committed block that was not executed before a restart cannot be
    /// executed from the store (it was pruned or lost): this replica must
    /// be restored from a snapshot rather than skip it.
    #[error("committed height {height} cannot be executed: {missing} is not in the store")]
    Unexecutable {
        /// The height.
        height: Height,
        /// What is missing.
        missing: &'static str,
    },
    /// The application could not execute a committed block.
    #[error("application at height {height}: {source}")]
    Application {
        /// The block's height.
        height: Height,
        /// Why.
        source: ApplicationError,
    },
}

/// Something the embedder hears about.
#[derive(Clone, Debug)]
pub enum Event {
    /// A block was committed and is durable.
    Committed {
        /// The block.
        block: Block,
        /// When (the time passed to [`Replica::handle`]).
        at: Millis,
    },
    /// Committed transactions were delivered for execution (each height once,
    /// in order, each transaction at most once), and the executed-height
    /// marker for `height` is durable.
    Delivered {
        /// Height of the committed block.
        height: Height,
        /// Its id.
        block: Hash32,
        /// Its proposer.
        proposer: ValidatorId,
        /// Its transactions.
        txs: Vec<Vec<u8>>,
    },
    /// The application executed the block at `height` (only with an
    /// application); its writes are durable with the executed height.
    Executed {
        /// Its height.
        height: Height,
        /// The state root after it.
        state_root: Hash32,
        /// What happened to its transactions.
        report: ExecutionReport,
    },
    /// The application closed a monetary epoch with the block at `height`.
    EpochClosed {
        /// The block that closed the epoch.
        height: Height,
        /// The epoch's monetary state.
        state: crate::monetary::MonetaryEpochState,
        /// Units credited (0 in Shadow mode).
        credited: u128,
    },
    /// Equivocation evidence.
    Evidence(Evidence),
    /// An input was rejected (already counted in the metrics).
    Rejected {
        /// Who sent it (ourselves for local inputs).
        from: ValidatorId,
        /// Why.
        error: ConsensusError,
    },
}

/// What the replica needs done outside, in order.
#[derive(Clone, Debug)]
pub enum Action {
    /// Obtain a signature and feed it back as [`Input::Signed`].
    Sign(SignJob),
    /// Send to one validator.
    Send {
        /// Recipient.
        to: ValidatorId,
        /// Message.
        msg: ConsensusMsg,
    },
    /// Send to every other validator.
    Broadcast(ConsensusMsg),
    /// Deliver [`Input::Tick`] at or after this time.
    SetTimer(Millis),
    /// Tell the embedder.
    Event(Event),
}

/// One validator: a [`HotStuff`] machine with its store and application.
pub struct Replica<S: StateBackend> {
    machine: HotStuff,
    store: S,
    application: Option<Box<dyn Application<S>>>,
    /// Commits written buffered and not yet covered by a durable write.
    unsynced_commits: Vec<Block>,
    /// Committed heights below the window held in memory that were not
    /// executed before the restart (first, last): executed from the store
    /// by [`Replica::start`] before anything else.
    backlog: Option<(Height, Height)>,
}

impl<S: StateBackend> Replica<S> {
    /// Open validator `id` on `store`, resuming from whatever it persisted
    /// before (the restore path after a restart).
    pub fn open(
        cfg: ConsensusConfig,
        id: ValidatorId,
        schedule: Arc<EpochSchedule>,
        store: S,
    ) -> Result<Self, ReplicaError> {
        let persisted = schema::load_persisted(&store, cfg.committed_window)?;
        // Execution resumes from the executed-height marker whatever the
        // gap (issue #17 finding 9): committed blocks below the window the
        // machine holds are executed from the store by `start`, so the
        // machine delivers only from the window on.
        let mut delivered = persisted.executed;
        let mut backlog = None;
        if let Some(first) = persisted.committed.first().map(Block::height)
            && first.0 > persisted.executed.0.saturating_add(1)
        {
            let last = Height(first.0 - 1);
            backlog = Some((persisted.executed.next(), last));
            delivered = last;
        }
        let mut machine = HotStuff::new(
            cfg,
            id,
            schedule,
            persisted.safety,
            persisted.committed,
            persisted.pending,
        );
        machine.restore_dag(persisted.batches, delivered);
        Ok(Replica {
            machine,
            store,
            application: None,
            unsynced_commits: Vec::new(),
            backlog,
        })
    }

    /// Execute committed blocks with `application`. The validator then votes
    /// only for proposals whose reported state root it has checked against
    /// its own execution ([`HotStuff::set_executes`]).
    #[must_use]
    pub fn with_application(mut self, application: Box<dyn Application<S>>) -> Self {
        self.machine.set_executes(true);
        self.application = Some(application);
        self
    }

    /// Start (or restart) participating: report the state root of the
    /// executed height (so proposals carry it and others' are checked
    /// against it from the first view on), then enter the current view.
    pub fn start(&mut self, now: Millis) -> Result<Vec<Action>, ReplicaError> {
        let mut actions = Vec::new();
        self.execute_backlog(now, &mut actions)?;
        let executed =
            schema::read_height(&self.store, schema::EXECUTED_HEIGHT_KEY)?.unwrap_or(Height(0));
        if let Some(app) = &self.application
            && executed.0 > 0
        {
            let state_root =
                app.state_root(&self.store)
                    .map_err(|source| ReplicaError::Application {
                        height: executed,
                        source,
                    })?;
            // The roots of the heights before it, as recorded when they were
            // executed (a restarted validator still checks reports of them,
            // §C3.7); the executed height's own root comes from the
            // application.
            let mut roots = schema::read_executed_roots(&self.store, executed)?;
            roots.retain(|(height, _)| *height < executed);
            roots.push((executed, state_root));
            for (height, state_root) in roots {
                actions.extend(self.handle(now, Input::Executed { height, state_root })?);
            }
        }
        actions.extend(self.handle(now, Input::Start)?);
        Ok(actions)
    }

    /// Feed one input; carry out every effect on the store and the
    /// application; return what needs the outside world, in order.
    pub fn handle(&mut self, now: Millis, input: Input) -> Result<Vec<Action>, ReplicaError> {
        let mut actions = Vec::new();
        // Before the machine sees a submission: it may propose or batch it
        // at once, and must know where its sender's nonces stand.
        if let Input::SubmitTransaction(tx) = &input
            && let Some((sender, nonce)) = self.sender_nonce(tx)
        {
            self.machine.prime_account_nonce(sender, nonce);
        }
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            for effect in self.machine.handle(now, input) {
                self.apply(now, effect, &mut inputs, &mut actions)?;
            }
        }
        // Commits whose execution did not follow (DAG data still missing,
        // no application) are made durable here.
        if let Some(block) = self.unsynced_commits.last() {
            let mut batch = WriteBatch::new();
            schema::put_height(&mut batch, schema::COMMITTED_HEIGHT_KEY, block.height());
            self.store.write(batch, Durability::Durable)?;
            self.commits_durable(now, &mut actions);
        }
        Ok(actions)
    }

    /// The sender of a submitted transaction and the nonce its account
    /// executes next in the executed state (fee-field decoder and an
    /// application with nonces needed; issue #21). A failed read gives
    /// `None`: the pool then knows nothing of the sender, as without an
    /// application, and execution still checks every nonce.
    fn sender_nonce(&self, tx: &[u8]) -> Option<(AccountId, u64)> {
        let (Some(meta), Some(app)) = (self.machine.cfg.tx_meta, &self.application) else {
            return None;
        };
        let m = meta(tx)?;
        let nonce = app.account_nonce(&self.store, &m.sender).ok()??;
        Some((m.sender, nonce))
    }

    fn apply(
        &mut self,
        now: Millis,
        effect: Effect,
        inputs: &mut VecDeque<Input>,
        actions: &mut Vec<Action>,
    ) -> Result<(), ReplicaError> {
        match effect {
            Effect::PersistSafety(state) => {
                let durability =
                    if crate::mutants::active(crate::mutants::Mutant::VoteBeforeDurable) {
                        Durability::Buffered
                    } else {
                        Durability::Durable
                    };
                self.store.write(schema::safety_batch(&state), durability)?;
            }
            // Buffered: the durable safety-state write that precedes any vote
            // on this block makes it durable too (no holes).
            Effect::PersistBlock(block) => {
                self.store
                    .write(schema::pending_block_batch(&block), Durability::Buffered)?;
            }
            // Durable: an acknowledgement follows, promising availability.
            Effect::PersistBatch(sb) => {
                self.store
                    .write(schema::dag_batch_batch(&sb), Durability::Durable)?;
            }
            Effect::ForgetBlocks(ids) => {
                self.store
                    .write(schema::forget_blocks_batch(&ids), Durability::Buffered)?;
            }
            // Buffered: a deletion lost in a crash is pruned again after
            // the restart (see `Availability::restore`).
            Effect::ForgetBatches(ids) => {
                self.store
                    .write(schema::forget_batches_batch(&ids), Durability::Buffered)?;
            }
            // Buffered: the durable executed-height write that follows in
            // the same input (or the sync at the end of `handle`) makes it
            // durable, so a block costs one fsync, not two.
            Effect::Commit(block) => {
                self.store
                    .write(schema::commit_batch(&block), Durability::Buffered)?;
                self.unsynced_commits.push(block);
            }
            Effect::Execute {
                height,
                block,
                proposer,
                txs,
            } => self.execute(now, height, block, proposer, txs, inputs, actions)?,
            Effect::ServeSync {
                to,
                from_height,
                max,
                max_bytes,
            } => {
                let blocks =
                    schema::committed_blocks_from(&self.store, from_height, max, max_bytes)?;
                if !blocks.is_empty() {
                    actions.push(Action::Send {
                        to,
                        msg: ConsensusMsg::SyncResponse(crate::consensus::SyncResponse { blocks }),
                    });
                }
            }
            Effect::Sign(job) => actions.push(Action::Sign(job)),
            Effect::Send { to, msg } => actions.push(Action::Send { to, msg }),
            Effect::Broadcast(msg) => actions.push(Action::Broadcast(msg)),
            Effect::SetTimer(at) => actions.push(Action::SetTimer(at)),
            Effect::Evidence(ev) => actions.push(Action::Event(Event::Evidence(ev))),
            Effect::Rejected { from, error } => {
                actions.push(Action::Event(Event::Rejected { from, error }));
            }
        }
        Ok(())
    }

    /// Execute one committed block and write its state together with the
    /// executed-height marker, durably, in one batch.
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &mut self,
        now: Millis,
        height: Height,
        block: Hash32,
        proposer: ValidatorId,
        txs: Vec<Vec<u8>>,
        inputs: &mut VecDeque<Input>,
        actions: &mut Vec<Action>,
    ) -> Result<(), ReplicaError> {
        let mut batch = WriteBatch::new();
        let mut executed = None;
        if let Some(app) = &mut self.application {
            let committed = CommittedBlock {
                height,
                id: block,
                proposer,
                txs: &txs,
            };
            let mut applied = app
                .execute(&self.store, &committed)
                .map_err(|source| ReplicaError::Application { height, source })?;
            batch.append(&mut applied.writes);
            executed = Some(applied);
        }
        schema::put_height(&mut batch, schema::EXECUTED_HEIGHT_KEY, height);
        if let Some(applied) = &executed {
            schema::put_executed_root(&mut batch, height, applied.state_root);
        }
        self.store.write(batch, Durability::Durable)?;
        // No holes: this durable write made the commits before it durable.
        self.commits_durable(now, actions);
        // The pool learns its senders' next nonces from the executed state
        // (a committed transaction refused by execution used no nonce).
        let (app, store) = (&self.application, &self.store);
        self.machine.note_executed(&txs, |sender| {
            app.as_ref()
                .and_then(|a| a.account_nonce(store, sender).ok().flatten())
        });
        actions.push(Action::Event(Event::Delivered {
            height,
            block,
            proposer,
            txs,
        }));
        if let Some(applied) = executed {
            inputs.push_back(Input::Executed {
                height,
                state_root: applied.state_root,
            });
            actions.push(Action::Event(Event::Executed {
                height,
                state_root: applied.state_root,
                report: applied.report,
            }));
            if let Some(closed) = applied.epoch_closed {
                actions.push(Action::Event(Event::EpochClosed {
                    height,
                    state: closed.state,
                    credited: closed.credited,
                }));
            }
        }
        Ok(())
    }

    /// Execute, in order and from the store, the committed blocks below the
    /// window that were not executed before the restart.
    fn execute_backlog(
        &mut self,
        now: Millis,
        actions: &mut Vec<Action>,
    ) -> Result<(), ReplicaError> {
        let Some((first, last)) = self.backlog.take() else {
            return Ok(());
        };
        let mut inputs = VecDeque::new();
        for h in first.0..=last.0 {
            let height = Height(h);
            let block: Block = match self
                .store
                .get(Namespace::Blocks, &schema::committed_block_key(h))?
            {
                Some(bytes) => schema::decode_record("committed block", &bytes)?,
                None => {
                    return Err(ReplicaError::Unexecutable {
                        height,
                        missing: "the committed block",
                    });
                }
            };
            let txs = self.stored_transactions(&block, height)?;
            let proposer = block.header().proposer;
            self.execute(now, height, block.id(), proposer, txs, &mut inputs, actions)?;
        }
        // The machine learns the state roots of what was executed.
        for input in inputs {
            for effect in self.machine.handle(now, input) {
                let mut more = VecDeque::new();
                self.apply(now, effect, &mut more, actions)?;
            }
        }
        Ok(())
    }

    /// A committed block's transactions, its batch data read from the store.
    fn stored_transactions(
        &self,
        block: &Block,
        height: Height,
    ) -> Result<Vec<Vec<u8>>, ReplicaError> {
        match block.payload() {
            Payload::Transactions(txs) => Ok(crate::dag::block_transactions(txs).0),
            Payload::Batches(certs) => {
                let mut batches = Vec::with_capacity(certs.len());
                for c in certs {
                    let Some(bytes) = self
                        .store
                        .get(Namespace::DagBatches, c.batch.digest.as_bytes())?
                    else {
                        return Err(ReplicaError::Unexecutable {
                            height,
                            missing: "the data of a batch it orders",
                        });
                    };
                    let sb: SignedBatch = schema::decode_record("DAG batch", &bytes)?;
                    if sb.batch.digest() != c.batch.digest {
                        return Err(ReplicaError::Unexecutable {
                            height,
                            missing: "batch data matching its certificate",
                        });
                    }
                    batches.push(sb.batch.txs);
                }
                Ok(crate::dag::block_transactions(batches.iter().flatten()).0)
            }
        }
    }

    /// The commits written so far are durable: report them.
    fn commits_durable(&mut self, now: Millis, actions: &mut Vec<Action>) {
        for block in self.unsynced_commits.drain(..) {
            actions.push(Action::Event(Event::Committed { block, at: now }));
        }
    }

    /// The validator this replica runs.
    #[must_use]
    pub fn id(&self) -> ValidatorId {
        self.machine.id()
    }

    /// The consensus state machine (read-only).
    #[must_use]
    pub fn machine(&self) -> &HotStuff {
        &self.machine
    }

    /// Transactions the pool let go without a commit since the last call
    /// ([`crate::pool_drops`]).
    pub fn take_pool_drops(&mut self) -> Vec<(Hash32, crate::pool_drops::PoolDropReason)> {
        self.machine.take_pool_drops()
    }

    /// The consensus counters.
    #[must_use]
    pub fn metrics(&self) -> &ConsensusMetrics {
        self.machine.metrics()
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &S {
        &self.store
    }
}
