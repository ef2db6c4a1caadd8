//! The thin async engine: runs one validator's [`Replica`] over the four
//! traits (DESIGN "A thin async engine in core wires the state machines to
//! those traits").
//!
//! Everything that decides or persists is in [`Replica`], which the
//! simulator drives too; the engine only waits for the next input (a
//! message from the [`Transport`], a timer of the [`Clock`], a submitted
//! transaction), asks the [`Signer`] for the signatures the replica wants,
//! sends what it sends and forwards its events. Actions are carried out
//! strictly in the order the replica returned them.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::codec::{CodecLimits, Encode};
use crate::consensus::{ConsensusConfig, ConsensusMetrics, ConsensusMsg, Input};
use crate::execution::PayloadPrefetch;
use crate::pool_drops::PoolMonitor;
use crate::replica::{Action, Event, Replica, ReplicaError};
use crate::traits::{Clock, Signer, StateBackend, Transport, TransportError};
use crate::types::{Epoch, Millis, ValidatorId};
use crate::validator::EpochSchedule;

/// The DAG and fee-pool counters of one validator, as its engine publishes
/// them ([`Engine::with_payload_metrics`]); the node exports them under the
/// runbook's names (`qbind_dag_*`, `qbind_mempool_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadMetrics {
    /// The DAG layer's counters (`None` with FIFO payloads).
    pub dag: Option<crate::dag::DagMetrics>,
    /// The fee-priority pool's counters (`None` with the FIFO pool).
    pub mempool: Option<crate::fee_mempool::FeeMempoolMetrics>,
}

/// Where a validator's next consensus key's signer is put, at most once,
/// before or while its engine runs ([`Engine::with_next_signer_slot`]).
pub type NextSignerSlot = Arc<std::sync::OnceLock<Box<dyn Signer>>>;

/// Which of a validator's two consensus keys signs a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyChoice {
    /// The key it signs with now.
    Current,
    /// The key an on-chain rotation moves it to.
    Next,
}

/// The key for a job of `epoch`, given whether that epoch accepts the next
/// key and the current one (`None`: its keys are not final here, so no
/// key: the job waits). The next key signs in every epoch that accepts it,
/// except that in an epoch before `next_from` (the epoch the engine first
/// saw the next key in — it may have been loaded, or the validator
/// restarted, in the middle of an epoch that accepts both keys — and
/// earlier ones) the current key keeps signing as long as it is accepted:
/// an epoch's messages are then never signed by both keys, whose
/// double-sign records are separate (a vote of one view under each key
/// would be an equivocation both records allow).
fn choose_key(
    epoch: Epoch,
    next_from: Epoch,
    accepts_next: Option<bool>,
    accepts_current: Option<bool>,
) -> Option<KeyChoice> {
    if !accepts_next? {
        return Some(KeyChoice::Current);
    }
    if epoch >= next_from || !accepts_current? {
        return Some(KeyChoice::Next);
    }
    Some(KeyChoice::Current)
}

/// One validator: a [`Replica`] driven over the traits.
pub struct Engine<S: StateBackend, T, C> {
    replica: Replica<S>,
    transport: T,
    signer: Box<dyn Signer>,
    /// The validator's next consensus key (an on-chain rotation): signs
    /// every job whose epoch accepts its key. Empty until it is given, at
    /// start or while the engine runs.
    next_signer: NextSignerSlot,
    /// The first epoch in which the next signer signs although the
    /// current key is accepted too ([`choose_key`]): the epoch after the
    /// one this validator was in when the engine first found a signer in
    /// the slot (at its first signing job, for a signer given at start).
    next_from: Option<Epoch>,
    /// Where the schedule goes whenever an executed rotation changed it.
    schedule_out: Option<watch::Sender<Arc<EpochSchedule>>>,
    clock: C,
    timers: BTreeSet<Millis>,
    events: Option<mpsc::UnboundedSender<Event>>,
    submissions: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    metrics_out: Option<watch::Sender<ConsensusMetrics>>,
    payload_metrics_out: Option<watch::Sender<PayloadMetrics>>,
    pool_monitor: Option<Arc<PoolMonitor>>,
    prefetch: Option<Arc<dyn PayloadPrefetch>>,
    /// Submissions taken from the channel since the last pool report.
    taken: usize,
    limits: CodecLimits,
}

impl<S: StateBackend, T: Transport, C: Clock> Engine<S, T, C> {
    /// Open validator `signer.validator_id()` on `store`, resuming from
    /// whatever it persisted before ([`Replica::open`]).
    pub fn open(
        cfg: ConsensusConfig,
        schedule: Arc<EpochSchedule>,
        store: S,
        transport: T,
        signer: Box<dyn Signer>,
        clock: C,
    ) -> Result<Self, ReplicaError> {
        let limits = cfg.limits.clone();
        let replica = Replica::open(cfg, signer.validator_id(), schedule, store)?;
        Ok(Engine {
            replica,
            transport,
            signer,
            next_signer: NextSignerSlot::default(),
            next_from: None,
            schedule_out: None,
            clock,
            timers: BTreeSet::new(),
            events: None,
            submissions: None,
            metrics_out: None,
            payload_metrics_out: None,
            pool_monitor: None,
            prefetch: None,
            taken: 0,
            limits,
        })
    }

    /// Sign with `next` (the same validator's next consensus key) every
    /// job of an epoch whose keys, as this validator's executed key
    /// registry has them, include `next`'s public key; with the current
    /// signer otherwise (docs/key-rotation.md). The two signers keep their
    /// own double-sign records: a job's epoch picks exactly one of them,
    /// and only once that epoch's keys are final here
    /// ([`crate::consensus::HotStuff::keys_final`]; before, the job fails
    /// like a signer that is unavailable).
    #[must_use]
    pub fn with_next_signer(self, next: Box<dyn Signer>) -> Self {
        let slot = NextSignerSlot::default();
        // A fresh slot is empty: the set cannot fail.
        let _ = slot.set(next);
        self.with_next_signer_slot(slot)
    }

    /// Take the next signer from `slot`, which may be filled later, while
    /// the engine runs (the node's `load-next-key` admin action); from
    /// then on it signs as [`Engine::with_next_signer`] says. Replaces an
    /// earlier [`Engine::with_next_signer`].
    #[must_use]
    pub fn with_next_signer_slot(mut self, slot: NextSignerSlot) -> Self {
        self.next_signer = slot;
        self
    }

    /// Publish the epoch schedule (with the key registry as executed
    /// blocks changed it) now and whenever it changes: the API checks a
    /// submitted key rotation against it.
    #[must_use]
    pub fn with_schedule_out(mut self, out: watch::Sender<Arc<EpochSchedule>>) -> Self {
        out.send_replace(Arc::clone(self.replica.machine().schedule()));
        self.schedule_out = Some(out);
        self
    }

    /// The signer for `job`: the next one if its epoch accepts its key
    /// (but see [`choose_key`] for the epoch a next key was loaded in);
    /// none while its epoch's keys are not final here (blocks this
    /// validator has not executed may still change them, so the choice
    /// could flip within the epoch).
    fn signer_for(&mut self, job: &crate::consensus::SignJob) -> Option<&dyn Signer> {
        let Some(next) = self.next_signer.get() else {
            return Some(self.signer.as_ref());
        };
        let machine = self.replica.machine();
        // Where the current key still counts: from the epoch after the one
        // the next signer was first seen in.
        let from = *self.next_from.get_or_insert_with(|| machine.epoch().next());
        let epoch = job.epoch();
        let choice = choose_key(
            epoch,
            from,
            machine.accepts_own_key(epoch, next.public_key()),
            machine.accepts_own_key(epoch, self.signer.public_key()),
        )?;
        Some(match choice {
            KeyChoice::Next => next.as_ref(),
            KeyChoice::Current => self.signer.as_ref(),
        })
    }

    /// Report commits, executions and evidence on `sink`.
    #[must_use]
    pub fn with_events(mut self, sink: mpsc::UnboundedSender<Event>) -> Self {
        self.events = Some(sink);
        self
    }

    /// Take transactions for the payload from `source`.
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

    /// Publish the DAG and fee-pool counters after every input that changed
    /// them.
    #[must_use]
    pub fn with_payload_metrics(mut self, out: watch::Sender<PayloadMetrics>) -> Self {
        self.payload_metrics_out = Some(out);
        self
    }

    /// Report the pool's depth and the transactions it drops to `monitor`
    /// after every input (the API's backpressure and `dropped` status;
    /// [`crate::pool_drops`]).
    #[must_use]
    pub fn with_pool_monitor(mut self, monitor: Arc<PoolMonitor>) -> Self {
        self.pool_monitor = Some(monitor);
        self
    }

    /// Hand the transactions of every received batch and inline proposal
    /// payload to `prefetch` before the replica sees the message.
    #[must_use]
    pub fn with_payload_prefetch(mut self, prefetch: Arc<dyn PayloadPrefetch>) -> Self {
        self.prefetch = Some(prefetch);
        self
    }

    /// Execute committed blocks with `application` (see
    /// [`crate::application`]).
    #[must_use]
    pub fn with_application(
        mut self,
        application: Box<dyn crate::application::Application<S>>,
    ) -> Self {
        self.replica = self.replica.with_application(application);
        self
    }

    /// The validator this engine runs.
    #[must_use]
    pub fn id(&self) -> ValidatorId {
        self.replica.id()
    }

    /// Run until `shutdown` becomes true or a storage failure stops it.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), ReplicaError> {
        let actions = self.replica.start(self.clock.now())?;
        self.carry_out(actions).await?;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let next_timer = self.timers.first().copied();
            let input = tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                received = self.transport.recv() => match received {
                    Ok((from, bytes)) => {
                        let decoded = crate::cpu::measure(crate::cpu::Activity::Consensus, || {
                            ConsensusMsg::decode_message(&bytes, &self.limits)
                        });
                        match decoded {
                            Ok(msg) => {
                                self.prefetch_payload(&msg);
                                Input::Message { from, msg }
                            }
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
                Some(tx) = recv_opt(&mut self.submissions) => {
                    self.taken = self.taken.saturating_add(1);
                    Input::SubmitTransaction(tx)
                }
            };
            let actions = {
                let _cpu = crate::cpu::Section::enter(crate::cpu::Activity::Consensus);
                self.replica.handle(self.clock.now(), input)?
            };
            self.carry_out(actions).await?;
        }
    }

    /// Carry out actions in order; signatures are fed back as inputs and
    /// their actions carried out in turn.
    async fn carry_out(&mut self, actions: Vec<Action>) -> Result<(), ReplicaError> {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Sign(job) => {
                    let result = match self.signer_for(&job) {
                        Some(signer) => Some(signer.sign(&job.request).await),
                        None => None,
                    };
                    let input = match result {
                        Some(Ok(signature)) => Input::Signed { job, signature },
                        Some(Err(error)) => {
                            let (height, view) = self.position();
                            tracing::error!(
                                validator = %self.id(),
                                height,
                                view,
                                %error,
                                kind = ?job.request.kind,
                                "signer refused or failed"
                            );
                            Input::SignFailed { job }
                        }
                        None => {
                            let (height, view) = self.position();
                            tracing::debug!(
                                validator = %self.id(),
                                height,
                                view,
                                epoch = job.epoch().0,
                                "signing held back: the job's epoch's keys are not final here yet"
                            );
                            Input::SignFailed { job }
                        }
                    };
                    let more = crate::cpu::measure(crate::cpu::Activity::Consensus, || {
                        self.replica.handle(self.clock.now(), input)
                    })?;
                    queue.extend(more);
                }
                Action::Send { to, msg } => {
                    if let Err(error) = self.transport.send(to, msg.to_bytes()).await {
                        let (height, view) = self.position();
                        if matches!(error, TransportError::TooLarge { .. }) {
                            // Our own message: a configuration error (the
                            // codec limit above the transport's), not noise.
                            tracing::warn!(validator = %self.id(), height, view, peer = %to, %error, "send failed");
                        } else {
                            tracing::debug!(validator = %self.id(), height, view, peer = %to, %error, "send failed");
                        }
                    }
                }
                Action::Broadcast(msg) => {
                    if let Err(error) = self.transport.broadcast(msg.to_bytes()).await {
                        let (height, view) = self.position();
                        if matches!(error, TransportError::TooLarge { .. }) {
                            tracing::warn!(validator = %self.id(), height, view, %error, "broadcast failed");
                        } else {
                            tracing::debug!(validator = %self.id(), height, view, %error, "broadcast failed");
                        }
                    }
                }
                Action::SetTimer(at) => {
                    self.timers.insert(at);
                }
                Action::Event(event) => self.report(event),
            }
        }
        if let Some(out) = &self.metrics_out {
            let _ = out.send(self.replica.metrics().clone());
        }
        if let Some(out) = &self.schedule_out {
            let schedule = self.replica.machine().schedule();
            out.send_if_modified(|now| {
                if Arc::ptr_eq(now, schedule) {
                    return false;
                }
                *now = Arc::clone(schedule);
                true
            });
        }
        if let Some(out) = &self.payload_metrics_out {
            let machine = self.replica.machine();
            let (dag, mempool) = (machine.dag_metrics(), machine.mempool_metrics());
            out.send_if_modified(|now| {
                if now.dag.as_ref() == dag && now.mempool.as_ref() == mempool {
                    return false;
                }
                now.dag = dag.cloned();
                now.mempool = mempool.cloned();
                true
            });
        }
        if let Some(monitor) = &self.pool_monitor {
            let drops = self.replica.take_pool_drops();
            monitor.publish(
                self.replica.machine().pool_snapshot(),
                drops,
                std::mem::take(&mut self.taken),
            );
        }
        Ok(())
    }

    fn prefetch_payload(&self, msg: &ConsensusMsg) {
        let Some(prefetch) = &self.prefetch else {
            return;
        };
        match msg {
            ConsensusMsg::Batch(sb) => prefetch.prefetch(&sb.batch.txs),
            ConsensusMsg::Proposal(p) => {
                if let crate::consensus::Payload::Transactions(txs) = p.block.payload() {
                    prefetch.prefetch(txs);
                }
            }
            _ => {}
        }
    }

    /// Committed height and current view, for log lines.
    fn position(&self) -> (u64, u64) {
        let m = self.replica.machine();
        (m.committed_height().0, m.view().0)
    }

    /// Log `event` (every consensus line carries the validator, committed
    /// height and view, and the peer where there is one) and pass it on.
    fn report(&self, event: Event) {
        let (height, view) = self.position();
        let validator = self.id();
        match &event {
            Event::Committed { block, .. } => tracing::info!(
                %validator,
                height = block.height().0,
                view = block.view().0,
                proposer = %block.header().proposer,
                "committed"
            ),
            Event::Executed {
                height: h,
                state_root,
                ..
            } => tracing::debug!(%validator, height = h.0, view, %state_root, "executed"),
            Event::Evidence(ev) => tracing::warn!(
                %validator,
                height,
                view,
                offender = %ev.offender(),
                "equivocation evidence"
            ),
            Event::KeyRotation {
                height: h,
                event: ev,
                result,
            } => match result {
                Ok(()) => tracing::info!(
                    %validator,
                    height = h.0,
                    view,
                    rotated = %ev.validator_id,
                    role = ev.key_kind.cli_name(),
                    effective_epoch = ev.effective_epoch.0,
                    "key rotation applied"
                ),
                Err(error) => tracing::warn!(
                    %validator,
                    height = h.0,
                    view,
                    rotated = %ev.validator_id,
                    %error,
                    "key rotation refused"
                ),
            },
            Event::Rejected { from, error } => {
                tracing::debug!(%validator, height, view, peer = %from, %error, "rejected consensus input");
            }
            _ => {}
        }
        if let Some(sink) = &self.events {
            let _ = sink.send(event);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A next key signs in every epoch that accepts it, except that in the
    /// epoch it was loaded in (and earlier ones) the current key goes on
    /// signing while it is accepted; nothing signs while an epoch's keys
    /// are not final.
    #[test]
    fn a_next_key_seen_mid_epoch_signs_from_the_next_epoch_on() {
        use KeyChoice::{Current, Next};
        let e = Epoch;
        // Seen before the rotation's epochs: the next key wherever it counts.
        assert_eq!(choose_key(e(5), e(3), Some(true), Some(true)), Some(Next));
        assert_eq!(
            choose_key(e(2), e(3), Some(false), Some(true)),
            Some(Current)
        );
        // Loaded (or the validator restarted) during epoch 5, a grace epoch
        // accepting both keys: the current key finishes epoch 5, the next
        // one signs from epoch 6.
        assert_eq!(
            choose_key(e(5), e(6), Some(true), Some(true)),
            Some(Current)
        );
        assert_eq!(choose_key(e(6), e(6), Some(true), Some(true)), Some(Next));
        // Loaded too late (the current key is refused already, or an
        // emergency rotation): the next key at once.
        assert_eq!(choose_key(e(5), e(6), Some(true), Some(false)), Some(Next));
        // Not final: no key.
        assert_eq!(choose_key(e(5), e(6), None, Some(true)), None);
        assert_eq!(choose_key(e(5), e(6), Some(true), None), None);
        assert_eq!(choose_key(e(5), e(3), Some(true), None), Some(Next));
    }
}
