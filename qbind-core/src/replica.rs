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
use crate::key_rotation::{KeyRotationError, KeyRotationEvent, ValidatorKeyRegistry};
use crate::schema::{self, PersistError};
use crate::system_tx::{SystemTx, SystemTxOutcome};
use crate::traits::{Durability, Namespace, StateBackend, StorageError, WriteBatch};
use crate::types::{AccountId, Hash32, Height, Millis, NetworkEnvironment, ValidatorId};
use crate::validator::{EpochSchedule, ValidatorSetError};

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
    /// A stored on-chain key rotation no longer applies, or a rotated key
    /// does not decode: the store does not belong to this schedule.
    #[error("stored key rotation at height {height} does not apply: {reason}")]
    KeyRotation {
        /// The height of its block.
        height: Height,
        /// Why.
        reason: String,
    },
    /// The store was run with another system-transaction activation
    /// height, and a block where the two differ is already executed: this
    /// node would not apply the same system transactions as before (or as
    /// its peers). Every node of a network must use the same value
    /// (docs/node.md "Upgrades").
    #[error(
        "this store was run with system transactions active from height {stored}, not the \
         configured {configured}, and is executed to height {executed}: {detail}"
    )]
    ActivationChanged {
        /// The height the store was run with (0: none recorded).
        stored: Height,
        /// The configured height.
        configured: Height,
        /// The store's executed height.
        executed: Height,
        /// What the store shows.
        detail: &'static str,
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
    /// A system transaction of the block at `height` asked for a key
    /// rotation (docs/key-rotation.md): applied (durable with the executed
    /// height; consensus verifies with the new key from its effective
    /// epoch) or refused, with the reason.
    KeyRotation {
        /// The block's height.
        height: Height,
        /// The rotation asked for.
        event: KeyRotationEvent,
        /// `Ok` if applied.
        result: Result<(), KeyRotationError>,
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
    /// The schedule given to [`Replica::open`] (genesis keys and configured
    /// rotations), and its key registry with every on-chain rotation
    /// executed so far.
    keys: OnChainKeys,
    /// [`ConsensusConfig::system_tx_activation`].
    system_tx_activation: Height,
}

/// The key registry as executed blocks have changed it.
struct OnChainKeys {
    env: NetworkEnvironment,
    base: Arc<EpochSchedule>,
    registry: ValidatorKeyRegistry,
    /// The digest of every rotation applied so far
    /// ([`crate::system_tx::extend_key_log`]): part of the reported state
    /// root ([`crate::system_tx::reported_root`]).
    log: Hash32,
}

impl OnChainKeys {
    /// Apply one rotation carried by the block at `height`.
    fn apply(&mut self, height: Height, tx: &SystemTx) -> Result<(), KeyRotationError> {
        let epoch = self.base.epoch_of_height(height);
        crate::system_tx::apply(&self.base, &mut self.registry, self.env, epoch, tx)?;
        self.log = crate::system_tx::extend_key_log(self.log, height, tx);
        Ok(())
    }

    /// The root reported for state whose application root is `app_root`.
    fn reported_root(&self, app_root: Hash32) -> Hash32 {
        crate::system_tx::reported_root(app_root, self.log)
    }

    /// The base schedule verifying with the current registry.
    fn schedule(&self) -> Result<Arc<EpochSchedule>, ValidatorSetError> {
        Ok(Arc::new(
            self.base
                .as_ref()
                .clone()
                .with_key_registry(self.registry.clone())?,
        ))
    }
}

/// The system-transaction activation height a store is opened with may
/// differ from the one it was run with only while no executed block lies
/// where the two differ; a store without a record (a version without
/// system transactions, or 0) may take any height no applied rotation lies
/// below. The configured height is then recorded (0 over nothing is not).
fn check_activation<S: StateBackend>(
    store: &S,
    configured: Height,
    executed: Height,
    rotations: &[(Height, SystemTx)],
) -> Result<(), ReplicaError> {
    let stored = schema::read_height(store, schema::SYSTEM_TX_ACTIVATION_KEY)?;
    let changed = |detail| ReplicaError::ActivationChanged {
        stored: stored.unwrap_or(Height(0)),
        configured,
        executed,
        detail,
    };
    match stored {
        Some(stored) if stored != configured && executed >= stored.min(configured) => {
            return Err(changed("blocks between the two heights are executed"));
        }
        None if rotations.iter().any(|(h, _)| *h < configured) => {
            return Err(changed(
                "a rotation was applied below the configured height",
            ));
        }
        _ => {}
    }
    if stored != Some(configured) && !(stored.is_none() && configured == Height(0)) {
        let mut batch = WriteBatch::new();
        schema::put_height(&mut batch, schema::SYSTEM_TX_ACTIVATION_KEY, configured);
        store.write(batch, Durability::Durable)?;
    }
    Ok(())
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
        let persisted = schema::load_persisted(&store, schema::Window::at_restart(&cfg))?;
        // The on-chain key rotations executed before the restart, replayed
        // onto the configured registry in the order they were applied.
        let rotations = schema::read_key_rotations(&store)?;
        check_activation(
            &store,
            cfg.system_tx_activation,
            persisted.executed,
            &rotations,
        )?;
        let (registry, log) = crate::system_tx::replay_key_log(&schedule, cfg.env, &rotations)
            .map_err(|(height, e)| ReplicaError::KeyRotation {
                height,
                reason: e.to_string(),
            })?;
        let keys = OnChainKeys {
            env: cfg.env,
            base: schedule,
            registry,
            log,
        };
        let schedule = if rotations.is_empty() {
            keys.base.clone()
        } else {
            keys.schedule().map_err(|e| ReplicaError::KeyRotation {
                height: rotations.last().map_or(Height(0), |r| r.0),
                reason: e.to_string(),
            })?
        };
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
        let system_tx_activation = cfg.system_tx_activation;
        let mut machine = HotStuff::resume(
            cfg,
            id,
            schedule,
            persisted.safety,
            persisted.leader_history,
            persisted.committed,
            persisted.pending,
        );
        machine.restore_dag(persisted.batches, delivered);
        machine.note_executed_height(persisted.executed);
        Ok(Replica {
            machine,
            store,
            application: None,
            unsynced_commits: Vec::new(),
            backlog,
            keys,
            system_tx_activation,
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
            let app_root =
                app.state_root(&self.store)
                    .map_err(|source| ReplicaError::Application {
                        height: executed,
                        source,
                    })?;
            // The rotation records were written with the executed height.
            let state_root = self.keys.reported_root(app_root);
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
            // Buffered, before the `ForgetBatches` of the same input: a
            // crash loses both or neither (one ordered log), and the
            // restart prunes and archives again.
            Effect::ArchiveBatches(batches) => {
                let write = schema::archive_batches_batch(&self.store, &batches)?;
                self.store.write(write, Durability::Buffered)?;
            }
            // A record that does not decode is not served (the peer asks
            // another signer) and does not stop this validator, which does
            // not need the data itself any more.
            Effect::ServeBatch { to, digest } => {
                let bytes = schema::read_archived_batch(&self.store, &digest)?;
                let decoded = bytes.map(|b| schema::decode_record("DAG batch", &b));
                if let Some(Ok(sb)) = decoded {
                    actions.push(Action::Send {
                        to,
                        msg: crate::dag::DagMsg::Batch(sb).into(),
                    });
                }
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
        let (rotations, system, app_txs) =
            self.system_transactions(height, &txs, &mut batch, actions);
        let mut executed = None;
        if let Some(app) = &mut self.application {
            let committed = CommittedBlock {
                height,
                id: block,
                proposer,
                txs: app_txs.as_deref().unwrap_or(&txs),
                delivered: &txs,
                system: &system,
                key_log: self.keys.log,
            };
            let mut applied = app
                .execute(&self.store, &committed)
                .map_err(|source| ReplicaError::Application { height, source })?;
            // What the validator reports: the application's root and the
            // rotation log as of this block (its rotations applied above).
            applied.state_root = self.keys.reported_root(applied.state_root);
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
        self.machine.note_executed_height(height);
        if rotations > 0 {
            // Durable with the executed height: consensus verifies with the
            // new registry from now on.
            let schedule = self
                .keys
                .schedule()
                .map_err(|e| ReplicaError::KeyRotation {
                    height,
                    reason: e.to_string(),
                })?;
            self.machine.set_schedule(schedule);
        }
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

    /// Apply the block's system transactions, in block order, to the key
    /// registry, recording each applied one in `batch`; returns how many were
    /// applied, what became of each (for the application's receipts) and, if
    /// the block had any, its other transactions (what the application
    /// executes). Below [`ConsensusConfig::system_tx_activation`] a block
    /// has none: the application gets every transaction.
    fn system_transactions(
        &mut self,
        height: Height,
        txs: &[Vec<u8>],
        batch: &mut WriteBatch,
        actions: &mut Vec<Action>,
    ) -> (u16, Vec<SystemTxOutcome>, Option<Vec<Vec<u8>>>) {
        let mut applied: u16 = 0;
        let mut others = Vec::new();
        let mut outcomes = Vec::new();
        if height < self.system_tx_activation {
            return (applied, outcomes, None);
        }
        for (index, bytes) in txs.iter().enumerate() {
            let Some(tx) = crate::system_tx::decode(bytes) else {
                others.push(bytes.clone());
                continue;
            };
            let result = self.keys.apply(height, &tx);
            if result.is_ok() {
                batch.put(
                    Namespace::Meta,
                    schema::key_rotation_key(height, applied),
                    bytes.clone(),
                );
                applied += 1;
            }
            outcomes.push(SystemTxOutcome {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                result: result.clone(),
            });
            let SystemTx::KeyRotation(signed) = tx;
            actions.push(Action::Event(Event::KeyRotation {
                height,
                event: signed.event,
                result,
            }));
        }
        if outcomes.is_empty() {
            return (0, outcomes, None);
        }
        (applied, outcomes, Some(others))
    }

    /// The key registry with every on-chain rotation executed so far.
    #[must_use]
    pub fn key_registry(&self) -> &ValidatorKeyRegistry {
        &self.keys.registry
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
                    let Some(sb) = schema::read_batch(&self.store, &c.batch.digest)? else {
                        return Err(ReplicaError::Unexecutable {
                            height,
                            missing: "the data of a batch it orders",
                        });
                    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encode;
    use crate::crypto::KeyPair;
    use crate::traits::MemoryBackend;
    use crate::types::Epoch;
    use crate::validator::ValidatorSet;

    const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

    fn key(n: u8) -> KeyPair {
        KeyPair::from_seed(&[n; 32])
    }

    fn open(store: MemoryBackend) -> Replica<MemoryBackend> {
        let set =
            ValidatorSet::new((0..4).map(|i| (key(i).public_key().clone(), 1)).collect()).unwrap();
        let schedule = Arc::new(EpochSchedule::with_epochs(10, set, Vec::new()));
        Replica::open(ConsensusConfig::new(ENV), ValidatorId(0), schedule, store).unwrap()
    }

    /// Validator `v` rotates from key `v` to key `new` at `effective`,
    /// signed by `signer`.
    fn rotation(v: u8, new: u8, effective: u64, signer: u8) -> Vec<u8> {
        let id = ValidatorId(u32::from(v));
        crate::sim::chain::consensus_rotation(
            ENV,
            id,
            &key(v),
            &key(new),
            effective,
            0,
            &key(signer),
        )
        .unwrap()
        .to_bytes()
    }

    fn events(actions: &[Action]) -> Vec<(ValidatorId, bool)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(Event::KeyRotation { event, result, .. }) => {
                    Some((event.validator_id, result.is_ok()))
                }
                _ => None,
            })
            .collect()
    }

    fn accepts(r: &Replica<MemoryBackend>, v: u32, k: u8, epoch: u64) -> bool {
        r.machine()
            .schedule()
            .set(Epoch(epoch))
            .accepted_keys(ValidatorId(v), Epoch(epoch))
            .iter()
            .any(|p| p.public_key() == key(k).public_key())
    }

    #[test]
    fn committed_rotations_apply_persist_and_survive_a_restart() {
        let store = MemoryBackend::new();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut r = open(store.clone()).with_application(Box::new(Recorder(Arc::clone(&seen))));
        let transfer = b"an application transaction".to_vec();
        // Height 5 is in epoch 0: effective epoch 2 is the earliest.
        let txs = vec![
            rotation(1, 11, 2, 1),
            transfer.clone(),
            rotation(2, 12, 2, 9), // signed by a key validator 2 never had
            rotation(3, 13, 1, 3), // too soon
        ];
        // The full execution path: applied durably with the height, and
        // consensus verifies with the new registry at once.
        let mut inputs = VecDeque::new();
        let mut actions = Vec::new();
        r.execute(
            Millis(0),
            Height(5),
            Hash32::ZERO,
            ValidatorId(0),
            txs.clone(),
            &mut inputs,
            &mut actions,
        )
        .unwrap();
        assert_eq!(
            events(&actions),
            vec![
                (ValidatorId(1), true),
                (ValidatorId(2), false),
                (ValidatorId(3), false)
            ]
        );
        // What the application saw: the transfer to execute, the whole
        // block, and each system transaction's place in it and verdict.
        {
            let seen = seen.lock().unwrap();
            let (app_txs, delivered, system) = &seen[0];
            assert_eq!(app_txs, &vec![transfer.clone()]);
            assert_eq!(delivered, &txs);
            let places: Vec<(u32, bool)> =
                system.iter().map(|o| (o.index, o.result.is_ok())).collect();
            assert_eq!(places, vec![(0, true), (2, false), (3, false)]);
        }
        // The application's share of the block: the transfer alone.
        let (applied, _, app_txs) = open(MemoryBackend::new()).system_transactions(
            Height(5),
            &txs,
            &mut WriteBatch::new(),
            &mut Vec::new(),
        );
        assert_eq!(applied, 1);
        assert_eq!(app_txs, Some(vec![transfer]));
        assert!(accepts(&r, 1, 1, 1) && !accepts(&r, 1, 11, 1));
        assert!(accepts(&r, 1, 11, 2) && !accepts(&r, 1, 1, 2));
        assert!(accepts(&r, 2, 2, 5) && accepts(&r, 3, 3, 5));
        assert_eq!(schema::read_key_rotations(&store).unwrap().len(), 1);
        // A restart replays it.
        drop(r);
        let r = open(store);
        assert!(accepts(&r, 1, 11, 2) && !accepts(&r, 1, 1, 2));
        assert!(accepts(&r, 1, 1, 1));
    }

    /// An application whose state root never changes: what differs in
    /// the reported root is the key log.
    struct FixedRoot;

    const APP_ROOT: Hash32 = Hash32([7; 32]);

    impl Application<MemoryBackend> for FixedRoot {
        fn execute(
            &mut self,
            _store: &MemoryBackend,
            _block: &CommittedBlock<'_>,
        ) -> Result<crate::application::Applied, crate::application::ApplicationError> {
            Ok(crate::application::Applied {
                writes: WriteBatch::new(),
                state_root: APP_ROOT,
                report: crate::application::ExecutionReport::default(),
                epoch_closed: None,
            })
        }

        fn state_root(
            &self,
            _store: &MemoryBackend,
        ) -> Result<Hash32, crate::application::ApplicationError> {
            Ok(APP_ROOT)
        }
    }

    /// What an application was handed: transactions to execute, the
    /// delivered block, the system transactions' outcomes.
    type Seen = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<SystemTxOutcome>);

    /// [`FixedRoot`] that records what each block handed it.
    struct Recorder(Arc<std::sync::Mutex<Vec<Seen>>>);

    impl Application<MemoryBackend> for Recorder {
        fn execute(
            &mut self,
            store: &MemoryBackend,
            block: &CommittedBlock<'_>,
        ) -> Result<crate::application::Applied, crate::application::ApplicationError> {
            self.0.lock().unwrap().push((
                block.txs.to_vec(),
                block.delivered.to_vec(),
                block.system.to_vec(),
            ));
            FixedRoot.execute(store, block)
        }

        fn state_root(
            &self,
            store: &MemoryBackend,
        ) -> Result<Hash32, crate::application::ApplicationError> {
            FixedRoot.state_root(store)
        }
    }

    fn executed_roots(actions: &[Action]) -> Vec<Hash32> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(Event::Executed { state_root, .. }) => Some(*state_root),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_reported_root_commits_to_the_key_log_and_survives_a_restart() {
        let store = MemoryBackend::new();
        let mut r = open(store.clone()).with_application(Box::new(FixedRoot));
        let run = |r: &mut Replica<MemoryBackend>, height: u64, txs: Vec<Vec<u8>>| {
            let (mut inputs, mut actions) = (VecDeque::new(), Vec::new());
            r.execute(
                Millis(0),
                Height(height),
                Hash32([height as u8; 32]),
                ValidatorId(0),
                txs,
                &mut inputs,
                &mut actions,
            )
            .unwrap();
            executed_roots(&actions)
        };
        // No rotation yet: the application's root.
        assert_eq!(run(&mut r, 1, vec![b"t".to_vec()]), vec![APP_ROOT]);
        // A refused rotation changes nothing.
        assert_eq!(run(&mut r, 2, vec![rotation(2, 12, 2, 9)]), vec![APP_ROOT]);
        // An applied one: the root commits to it, at its height.
        let tx = rotation(1, 11, 2, 1);
        let after = run(&mut r, 3, vec![tx.clone()]);
        let log = crate::system_tx::key_log_digest(&[(
            Height(3),
            crate::system_tx::decode(&tx).unwrap(),
        )]);
        let expected = crate::system_tx::reported_root(APP_ROOT, log);
        assert_ne!(expected, APP_ROOT);
        assert_eq!(after, vec![expected]);
        // And it stays in every later root, recorded as executed.
        assert_eq!(run(&mut r, 4, Vec::new()), vec![expected]);
        assert_eq!(
            schema::read_executed_roots(&store, Height(4)).unwrap(),
            vec![
                (Height(1), APP_ROOT),
                (Height(2), APP_ROOT),
                (Height(3), expected),
                (Height(4), expected)
            ]
        );
        // A restart reports the same root for the executed height.
        drop(r);
        let mut r = open(store).with_application(Box::new(FixedRoot));
        r.start(Millis(0)).unwrap();
        let known = &r.machine().executed_roots;
        assert_eq!(known.get(&Height(4)), Some(&expected));
        assert_eq!(known.get(&Height(3)), Some(&expected));
        assert_eq!(known.get(&Height(2)), Some(&APP_ROOT));
    }

    #[test]
    fn forged_rotations_ahead_of_an_honest_one_do_not_stop_it() {
        let mut r = open(MemoryBackend::new());
        // A Byzantine proposer puts many forged rotations of validator 1
        // (each correctly shaped: its real old key) ahead of its real one.
        let mut txs: Vec<Vec<u8>> = (0..20).map(|i| rotation(1, 20 + i, 2, 9)).collect();
        txs.push(rotation(1, 11, 2, 1));
        let mut actions = Vec::new();
        let (applied, outcomes, app_txs) =
            r.system_transactions(Height(1), &txs, &mut WriteBatch::new(), &mut actions);
        assert_eq!(applied, 1);
        assert_eq!(app_txs, Some(Vec::new()));
        // What the application is told, for receipts: each one's place in
        // the block and its verdict.
        assert_eq!(
            outcomes.iter().map(|o| o.index).collect::<Vec<_>>(),
            (0..21).collect::<Vec<u32>>()
        );
        assert!(outcomes[..20].iter().all(|o| o.result.is_err()));
        assert_eq!(outcomes[20].result, Ok(()));
        let seen = events(&actions);
        assert_eq!(seen.len(), 21);
        assert!(seen[..20].iter().all(|(_, ok)| !ok));
        assert_eq!(seen[20], (ValidatorId(1), true));
        // A block without system transactions leaves the application's
        // list alone.
        let plain = vec![b"tx".to_vec()];
        assert_eq!(
            r.system_transactions(Height(1), &plain, &mut WriteBatch::new(), &mut actions),
            (0, Vec::new(), None)
        );
    }

    /// Below the activation height a rotation's bytes go to the application
    /// like any transaction (what a version without system transactions
    /// does: validators upgraded early and late agree on those blocks); from
    /// it on, the same block applies the rotation.
    #[test]
    fn system_transactions_apply_from_the_activation_height() {
        let set =
            ValidatorSet::new((0..4).map(|i| (key(i).public_key().clone(), 1)).collect()).unwrap();
        let schedule = Arc::new(EpochSchedule::with_epochs(10, set, Vec::new()));
        let cfg = ConsensusConfig {
            system_tx_activation: Height(5),
            ..ConsensusConfig::new(ENV)
        };
        let mut r = Replica::open(cfg, ValidatorId(0), schedule, MemoryBackend::new()).unwrap();
        let txs = vec![rotation(1, 11, 2, 1), b"tx".to_vec()];
        let mut actions = Vec::new();
        assert_eq!(
            r.system_transactions(Height(4), &txs, &mut WriteBatch::new(), &mut actions),
            (0, Vec::new(), None),
            "not yet active: the application gets both"
        );
        assert!(actions.is_empty());
        let (applied, outcomes, app_txs) =
            r.system_transactions(Height(5), &txs, &mut WriteBatch::new(), &mut actions);
        assert_eq!((applied, outcomes.len()), (1, 1));
        assert_eq!(app_txs, Some(vec![b"tx".to_vec()]));
        assert_eq!(events(&actions), vec![(ValidatorId(1), true)]);
    }

    /// A store remembers the activation height it was run with: another
    /// one is refused once an executed block lies where the two differ,
    /// and accepted before; a store without a record takes any height no
    /// applied rotation lies below (review finding: a node restarted
    /// without the flag applied rotations its peers refused).
    #[test]
    fn a_store_refuses_another_activation_height_once_it_matters() {
        let set =
            ValidatorSet::new((0..4).map(|i| (key(i).public_key().clone(), 1)).collect()).unwrap();
        let schedule = Arc::new(EpochSchedule::with_epochs(10, set, Vec::new()));
        let with = |activation: u64, store: &MemoryBackend| {
            let cfg = ConsensusConfig {
                system_tx_activation: Height(activation),
                ..ConsensusConfig::new(ENV)
            };
            Replica::open(cfg, ValidatorId(0), schedule.clone(), store.clone()).map(|_| ())
        };
        let executed_to = |store: &MemoryBackend, h: u64| {
            let mut batch = WriteBatch::new();
            schema::put_height(&mut batch, schema::EXECUTED_HEIGHT_KEY, Height(h));
            store.write(batch, Durability::Durable).unwrap();
        };
        let store = MemoryBackend::new();
        with(0, &store).unwrap();
        assert_eq!(
            schema::read_height(&store, schema::SYSTEM_TX_ACTIVATION_KEY).unwrap(),
            None,
            "0 over nothing is not recorded"
        );
        with(50, &store).unwrap();
        executed_to(&store, 20);
        // Nothing executed at or past 30: 30 is still possible.
        with(30, &store).unwrap();
        executed_to(&store, 35);
        let refused = with(0, &store);
        assert!(
            matches!(
                refused,
                Err(ReplicaError::ActivationChanged {
                    stored: Height(30),
                    configured: Height(0),
                    ..
                })
            ),
            "{refused:?}"
        );
        with(30, &store).unwrap();
        // No record, but a rotation applied at height 5: not above it.
        let store = MemoryBackend::new();
        let mut batch = WriteBatch::new();
        batch.put(
            Namespace::Meta,
            schema::key_rotation_key(Height(5), 0),
            rotation(1, 11, 2, 1),
        );
        store.write(batch, Durability::Durable).unwrap();
        assert!(matches!(
            with(10, &store),
            Err(ReplicaError::ActivationChanged { .. })
        ));
        with(5, &store).unwrap();
    }

    #[test]
    fn a_chain_without_epochs_refuses_rotations() {
        let set =
            ValidatorSet::new((0..4).map(|i| (key(i).public_key().clone(), 1)).collect()).unwrap();
        let schedule = Arc::new(EpochSchedule::fixed(set));
        let mut r = Replica::open(
            ConsensusConfig::new(ENV),
            ValidatorId(0),
            schedule,
            MemoryBackend::new(),
        )
        .unwrap();
        let mut actions = Vec::new();
        let txs = vec![rotation(1, 11, 2, 1)];
        let (applied, outcomes, _) =
            r.system_transactions(Height(1), &txs, &mut WriteBatch::new(), &mut actions);
        assert_eq!(applied, 0);
        assert_eq!(
            outcomes,
            vec![SystemTxOutcome {
                index: 0,
                result: Err(KeyRotationError::NoEpochs)
            }]
        );
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::Event(Event::KeyRotation {
                result: Err(KeyRotationError::NoEpochs),
                ..
            })
        )));
    }
}
