//! The [`HotStuff`] state machine: construction and restart, input dispatch,
//! the pacemaker (views, timeouts), proposing, locking and committing.
//! Message handlers are in `handlers.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::codec::Encode;
use crate::consensus::block_budget::BlockBudget;
use crate::consensus::block_tree::BlockTree;
use crate::consensus::certs::Verifier;
use crate::consensus::error::ConsensusError;
use crate::consensus::evidence::{EquivocationDetector, Evidence};
use crate::consensus::leader::{CommittedEntry, LeaderSchedule};
use crate::consensus::messages::{
    Block, BlockHeader, ConsensusMsg, Proposal, TimeoutData, TimeoutMsg, Vote, VoteData,
};
use crate::consensus::metrics::ConsensusMetrics;
use crate::consensus::pacemaker::Pacemaker;
use crate::consensus::payload::Payloads;
use crate::consensus::range_sync::RangeSync;
use crate::consensus::safety::{SafetyState, TimeoutRecord};
use crate::consensus::sync::BlockSync;
use crate::consensus::votes::{TimeoutCollector, VoteCollector};
use crate::consensus::{ConsensusConfig, Effect, Input, SignJob, SignPurpose};
use crate::crypto::Signature;
use crate::dag::DagSignPurpose;
use crate::signing::SignKind;
use crate::traits::SignRequest;
use crate::types::{Epoch, Hash32, Height, Millis, ValidatorId, View};
use crate::validator::{EpochSchedule, ValidatorSet};

/// How many views of collector and detector state are kept behind the
/// current view.
pub(crate) const KEEP_VIEWS: u64 = 64;
/// How far ahead of the current view votes, timeouts and proposals are
/// kept; anything further is rejected (a lagging validator catches up
/// through the QCs such messages carry, which are processed first).
pub(crate) const FUTURE_VIEWS: u64 = 1024;

/// At most this many doublings of the re-broadcast gap in a stuck view
/// (16 × a quarter of the base timeout: 4 s with the default 1 s).
pub(crate) const MAX_REBROADCAST_BACKOFF: u32 = 4;

/// One validator's chained HotStuff instance.
pub struct HotStuff {
    pub(crate) cfg: ConsensusConfig,
    pub(crate) me: ValidatorId,
    pub(crate) schedule: Arc<EpochSchedule>,
    pub(crate) safety: SafetyState,
    pub(crate) tree: BlockTree,
    pub(crate) epoch: Epoch,
    /// Views, deadlines and back-off.
    pub(crate) pace: Pacemaker,
    pub(crate) now: Millis,
    pub(crate) votes: VoteCollector,
    pub(crate) timeouts: TimeoutCollector,
    /// Blocks being fetched and proposals waiting for them.
    pub(crate) sync: BlockSync,
    /// Catching up by height ranges from peers' stores.
    pub(crate) range: RangeSync,
    /// Where payloads come from and committed transactions go.
    pub(crate) payloads: Payloads,
    /// How many transactions our proposals carry.
    pub(crate) budget: BlockBudget,
    pub(crate) verifier: Verifier,
    pub(crate) detector: EquivocationDetector,
    pub(crate) metrics: ConsensusMetrics,
    pub(crate) out: Vec<Effect>,
    /// The last vote this validator signed (attached to its timeouts, and
    /// re-sent unchanged when its proposal is re-broadcast).
    pub(crate) last_vote: Option<Vote>,
    /// The last proposal this validator made, re-broadcast while its view
    /// has no QC yet, and when.
    pub(crate) last_proposal: Option<(Proposal, Millis)>,
    /// Re-broadcasts of `last_proposal` since this validator timed out in
    /// its view: each doubles the gap to the next (see
    /// [`HotStuff::rebroadcast_gap`]).
    pub(crate) stuck_rebroadcasts: u32,
    /// When the current view was entered (the idle proposal delay counts
    /// from here).
    pub(crate) view_entered: Millis,
    /// This view's proposal is held back while idle (`idle_hold`): a
    /// submission or a batch certificate should try again at once.
    pub(crate) idle_held: Option<View>,
    /// State roots of the last [`EXECUTED_ROOTS_KEPT`] executed heights
    /// ([`Input::Executed`]).
    pub(crate) executed_roots: BTreeMap<Height, Hash32>,
    /// This validator executes committed blocks and reports every executed
    /// root ([`HotStuff::set_executes`]): its votes wait for the height a
    /// proposal reports (§C3.7).
    pub(crate) executes: bool,
    /// The proposal whose vote waits until this validator has executed the
    /// height it reports: its block id, view and that height (§C3.7).
    pub(crate) awaiting_execution: Option<(Hash32, View, Height)>,
    /// Who leads each view: the policy and the committed chain it reads.
    pub(crate) leaders: LeaderSchedule,
    /// What non-members may still ask to be served.
    pub(crate) serve_budget: super::serve_budget::ServeBudget,
    /// Votes that reached this validator before the QC it needs to lead
    /// their next view (§C10.4, `early_votes.rs`).
    pub(crate) held_votes: super::early_votes::HeldVotes,
    /// When this view's proposal was placed, for the QC formation latency
    /// (`qc_latency.rs`).
    pub(crate) qc_latency: super::qc_latency::QcLatency,
}

/// The highest view any message or certificate may name. No honest network
/// gets near it (2^62 views at a thousand views per second take a hundred
/// million years); refusing beyond it keeps `view + 1` and the pacemaker's
/// arithmetic far from overflow whatever a certificate claims.
pub const MAX_VIEW: View = View(1 << 62);

/// How many executed heights' state roots a validator remembers (in memory
/// and, by the replica, in the store) for checking the roots proposals
/// report (§C3.7).
pub const EXECUTED_ROOTS_KEPT: u64 = 256;

impl HotStuff {
    /// A validator `me` at genesis (`safety = None`, nothing persisted), or
    /// restarted from what it persisted: its safety state, the tail of its
    /// committed chain (ascending heights) and its uncommitted blocks (any
    /// order; those that no longer fit are ignored).
    #[must_use]
    pub fn new(
        cfg: ConsensusConfig,
        me: ValidatorId,
        schedule: Arc<EpochSchedule>,
        safety: Option<SafetyState>,
        committed: Vec<Block>,
        pending: Vec<Block>,
    ) -> Self {
        Self::resume(cfg, me, schedule, safety, Vec::new(), committed, pending)
    }

    /// As [`HotStuff::new`], with `leader_history`: leader selection's
    /// entries of the committed blocks just below `committed` (ascending),
    /// when fewer blocks were loaded than it remembers
    /// ([`crate::schema::Persisted::leader_history`]).
    #[must_use]
    pub fn resume(
        cfg: ConsensusConfig,
        me: ValidatorId,
        schedule: Arc<EpochSchedule>,
        safety: Option<SafetyState>,
        leader_history: Vec<CommittedEntry>,
        mut committed: Vec<Block>,
        mut pending: Vec<Block>,
    ) -> Self {
        let genesis = Block::genesis(cfg.env.chain_id());
        let genesis_qc = genesis.justify().clone();
        if committed.is_empty() {
            committed.push(genesis);
        }
        let mut leaders = LeaderSchedule::new(cfg.leader_policy, cfg.env.chain_id());
        for entry in leader_history {
            leaders.record(entry);
        }
        for block in &committed {
            leaders.record(CommittedEntry::of(block));
        }
        let mut tree = BlockTree::new(committed, cfg.committed_window, cfg.committed_window_bytes);
        pending.sort_by_key(Block::height);
        let root_height = tree.committed_height();
        for block in pending {
            if block.height() > root_height && tree.contains(&block.parent_id()) {
                let _ = tree.insert(block);
            }
        }
        let safety = safety.unwrap_or_else(|| SafetyState::genesis(genesis_qc.clone()));
        let timeout_view = safety
            .last_timeout
            .as_ref()
            .map(|t| t.data.view)
            .unwrap_or_default();
        let view = safety.high_qc.view().next().max(timeout_view).max(View(1));
        let pace = Pacemaker::new(view, cfg.base_timeout_ms, cfg.max_timeout_exponent);
        let mut hs = HotStuff {
            verifier: Verifier::new(cfg.env, genesis_qc, cfg.verify_cache),
            payloads: Payloads::new(&cfg, me, schedule.clone()),
            budget: BlockBudget::new(cfg.block_budget, cfg.max_block_txs),
            cfg,
            me,
            schedule,
            safety,
            tree,
            epoch: Epoch(0),
            pace,
            now: Millis(0),
            votes: VoteCollector::default(),
            timeouts: TimeoutCollector::default(),
            sync: BlockSync::default(),
            range: RangeSync::default(),
            detector: EquivocationDetector::default(),
            metrics: ConsensusMetrics::default(),
            out: Vec::new(),
            last_vote: None,
            last_proposal: None,
            stuck_rebroadcasts: 0,
            view_entered: Millis(0),
            idle_held: None,
            executed_roots: BTreeMap::new(),
            executes: false,
            awaiting_execution: None,
            leaders,
            serve_budget: super::serve_budget::ServeBudget::default(),
            held_votes: super::early_votes::HeldVotes::default(),
            qc_latency: super::qc_latency::QcLatency::default(),
        };
        hs.epoch = hs.epoch_after_root();
        hs.update_gauges();
        hs
    }

    /// Process one input at time `now` and return the effects to carry out,
    /// in order.
    pub fn handle(&mut self, now: Millis, input: Input) -> Vec<Effect> {
        self.now = self.now.max(now);
        match input {
            Input::Start => self.on_start(),
            Input::Message { from, msg } => {
                if let Err(error) = self.on_message(from, msg) {
                    self.reject(from, error);
                }
            }
            Input::Malformed { from, error } => self.reject(from, error.into()),
            Input::Tick => self.on_tick(),
            Input::Signed { job, signature } => self.on_signed(job, signature),
            Input::SignFailed { job } => {
                if let SignPurpose::Batch { batch } = job.purpose {
                    self.on_dag_signed(DagSignPurpose::Batch { batch }, None);
                }
            }
            Input::SubmitTransaction(tx) => {
                self.submit(tx);
                self.retry_idle_proposal();
            }
            Input::Executed { height, state_root } => {
                self.executed_roots.insert(height, state_root);
                while self.executed_roots.len() as u64 > EXECUTED_ROOTS_KEPT {
                    self.executed_roots.pop_first();
                }
                self.vote_after_execution(height);
            }
        }
        self.retry_held_votes();
        self.update_gauges();
        std::mem::take(&mut self.out)
    }

    // ------------------------------------------------------------ accessors

    /// Declare that this validator executes committed blocks and feeds every
    /// executed state root back as [`Input::Executed`] (the
    /// [`Replica`](crate::replica::Replica) does so when it has an
    /// application). A vote then waits until the height a proposal reports
    /// is executed here and its root agrees, so every root a QC certifies was
    /// checked by each honest validator in the quorum (§C3.7). Without it, a
    /// report of a height not executed here is not checked.
    pub fn set_executes(&mut self, executes: bool) {
        self.executes = executes;
    }

    /// Verify from now on with `schedule`, and forget every cached
    /// signature verification. The [`Replica`](crate::replica::Replica)
    /// calls it when an executed block changed the key registry (an
    /// on-chain key rotation, docs/key-rotation.md). Like the schedule
    /// passed to [`HotStuff::new`], it must be the same on every validator
    /// and may change which keys are accepted only in epochs whose messages
    /// this validator has not handled yet.
    pub fn set_schedule(&mut self, schedule: Arc<EpochSchedule>) {
        if let Payloads::Dag(dag) = &mut self.payloads {
            dag.set_schedule(schedule.clone());
        }
        self.schedule = schedule;
        self.verifier.clear_cache();
    }

    /// Blocks up to `height` are executed here: the keys of every epoch up
    /// to two after the last fully executed one are final (an on-chain key
    /// rotation in a block of epoch `b` takes effect from `b + 2` at the
    /// earliest), and signatures of later epochs are held back
    /// ([`ConsensusError::KeysNotFinal`]) until execution catches up. The
    /// [`Replica`](crate::replica::Replica) calls it after each executed
    /// block and when it opens; without a call nothing is held back.
    pub fn note_executed_height(&mut self, height: Height) {
        let epoch = self.schedule.epoch_of_height(height);
        let complete = if height == self.schedule.boundary_height(epoch) {
            Some(epoch)
        } else {
            epoch.0.checked_sub(1).map(Epoch)
        };
        let lead = crate::key_rotation::MIN_ROTATION_LEAD;
        let final_through = match complete {
            Some(e) => Epoch(e.0.saturating_add(lead)),
            None => Epoch(lead - 1),
        };
        let before = self.verifier.keys_final_through();
        self.verifier.set_keys_final_through(final_through);
        if let Payloads::Dag(dag) = &mut self.payloads {
            dag.set_keys_final_through(final_through);
        }
        if before.is_none_or(|b| final_through > b) {
            self.range.release_waiting();
            // Claims were checked with the keys final then: a later message
            // claims again (they do not outlive the keys they were checked
            // with, nor the catching up they were for).
            self.range.claims.clear();
        }
    }

    /// Whether this validator checks signatures of `epoch` now (see
    /// [`HotStuff::note_executed_height`]); a signer choice that depends on
    /// the key registry must wait for it too.
    #[must_use]
    pub fn keys_final(&self, epoch: Epoch) -> bool {
        self.verifier.keys_final(epoch)
    }

    /// Whether the schedule accepts `key` as this validator's consensus key
    /// in `epoch`; `None` while that epoch's keys are not final here. How a
    /// validator with a next key picks its signer for a job of `epoch`
    /// (`Engine::with_next_signer`, and the simulator alike).
    #[must_use]
    pub fn accepts_own_key(&self, epoch: Epoch, key: &crate::crypto::PublicKey) -> Option<bool> {
        self.keys_final(epoch)
            .then(|| self.schedule.accepts_key(self.me, epoch, key))
    }

    /// The schedule this validator verifies with.
    #[must_use]
    pub fn schedule(&self) -> &Arc<EpochSchedule> {
        &self.schedule
    }

    /// This validator's id.
    #[must_use]
    pub fn id(&self) -> ValidatorId {
        self.me
    }

    /// The current view.
    #[must_use]
    pub fn view(&self) -> View {
        self.pace.view()
    }

    /// The current epoch.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The safety state (as last handed out for persistence, plus any QC
    /// updates since).
    #[must_use]
    pub fn safety(&self) -> &SafetyState {
        &self.safety
    }

    /// The leader of `view` in `epoch`, as this validator sees it (the
    /// leader policy over its committed chain; Consensus §C2.1, §C10).
    #[must_use]
    pub fn leader(&self, epoch: Epoch, view: View) -> ValidatorId {
        self.leaders.leader(self.set(epoch), epoch, view)
    }

    /// Counters.
    #[must_use]
    pub fn metrics(&self) -> &ConsensusMetrics {
        &self.metrics
    }

    /// The last committed block.
    #[must_use]
    pub fn committed_block(&self) -> Option<&Block> {
        self.tree.root()
    }

    /// Height of the last committed block.
    #[must_use]
    pub fn committed_height(&self) -> Height {
        self.tree.committed_height()
    }

    /// Uncommitted blocks held.
    #[must_use]
    pub fn pending_blocks(&self) -> usize {
        self.tree.pending_len()
    }

    /// Entries held for other validators' votes, timeouts and signed
    /// proposals (vote and timeout collectors, equivocation detector): what
    /// a peer can make this validator store. Bounded by validators × views
    /// kept × the epoch window (`KEEP_VIEWS` behind, `FUTURE_VIEWS` ahead,
    /// the epoch window of votes and proposals); the simulator checks it.
    #[must_use]
    pub fn collector_entries(&self) -> usize {
        self.votes.entries() + self.timeouts.entries() + self.detector.entries()
    }

    // ------------------------------------------------------------ helpers

    /// Reject `view` if it is too far ahead to keep state for.
    ///
    /// Consensus §C3.4, §C6.5 (docs/consensus.md).
    pub(crate) fn check_not_too_far(
        &self,
        what: &'static str,
        view: View,
    ) -> Result<(), ConsensusError> {
        if view > MAX_VIEW || view.0 > self.pace.view().0.saturating_add(FUTURE_VIEWS) {
            return Err(ConsensusError::FutureView {
                what,
                view,
                current: self.pace.view(),
            });
        }
        Ok(())
    }

    /// Votes and proposals count only for the current epoch and its
    /// neighbours (the previous one around an epoch start, the next one
    /// while this validator commits the boundary): any other label is
    /// refused before it can occupy a collector or the equivocation
    /// detector (issue #17, finding 1).
    ///
    /// Consensus §C3.4, §C5.4 (docs/consensus.md).
    pub(crate) fn check_epoch_window(
        &self,
        what: &'static str,
        epoch: Epoch,
    ) -> Result<(), ConsensusError> {
        if epoch.next() < self.epoch || epoch > self.epoch.next() {
            return Err(ConsensusError::WrongEpoch {
                what,
                epoch,
                current: self.epoch,
            });
        }
        Ok(())
    }

    pub(crate) fn set(&self, epoch: Epoch) -> &ValidatorSet {
        self.schedule.set(epoch)
    }

    pub(crate) fn is_member(&self, epoch: Epoch) -> bool {
        self.set(epoch).get(self.me).is_some()
    }

    pub(crate) fn emit(&mut self, effect: Effect) {
        self.out.push(effect);
    }

    pub(crate) fn reject(&mut self, from: ValidatorId, error: ConsensusError) {
        self.metrics.reject(error.label());
        self.emit(Effect::Rejected { from, error });
    }

    pub(crate) fn evidence(&mut self, ev: Evidence) {
        self.metrics.equivocations_detected += 1;
        self.emit(Effect::Evidence(ev));
    }

    fn update_gauges(&mut self) {
        self.metrics.current_view = self.pace.view().0;
        self.metrics.highest_seen_view = self.metrics.highest_seen_view.max(self.pace.view().0);
        self.metrics.committed_height = self.tree.committed_height().0;
        self.metrics.epoch = self.epoch.0;
    }

    /// The boundary (last) height of `epoch`.
    pub(crate) fn boundary(&self, epoch: Epoch) -> Height {
        self.schedule.boundary_height(epoch)
    }

    fn epoch_after_root(&self) -> Epoch {
        match self.tree.root() {
            Some(root) if root.height() == self.boundary(root.epoch()) => root.epoch().next(),
            Some(root) => root.epoch(),
            None => Epoch(0),
        }
    }

    fn arm_timer(&mut self) {
        let deadline = self.pace.arm(self.now);
        self.emit(Effect::SetTimer(deadline));
    }

    pub(crate) fn persist_safety(&mut self) {
        self.emit(Effect::PersistSafety(self.safety.clone()));
    }

    // ------------------------------------------------------------ pacemaker

    /// Consensus §C6.1, §C7.1 (docs/consensus.md).
    fn on_start(&mut self) {
        self.view_entered = self.now;
        self.arm_timer();
        let high = self.safety.high_qc.clone();
        if !self.tree.contains(&high.block_id()) {
            let hint = self.leader(high.data.epoch, high.view());
            self.fetch(high.block_id(), hint);
        }
        self.try_propose();
    }

    /// One tick serves every deadline due by now: the engine keeps a set of
    /// deadlines and wakes once per instant, however many of them name it.
    /// So the view timer expiring does not skip the re-broadcast or the
    /// deferred proposal due at the same instant: each is guarded by its
    /// own condition, and the re-broadcast arms its next timer only when it
    /// runs (skipping it once ended the re-broadcasts for the view).
    fn on_tick(&mut self) {
        if self.pace.expired(self.now) {
            self.local_timeout();
        }
        self.rebroadcast_proposal();
        // A proposal deferred to this tick (see `try_propose`) or held back
        // while idle (`idle_hold`).
        self.try_propose();
        self.retry_fetches();
        self.pump_ranges();
        self.payload_tick();
    }

    /// Messages may be lost: while the current view's proposal has not led to
    /// a QC, send the same signed proposal again (voters answer with the same
    /// signed vote, never a new one).
    ///
    /// Consensus §C2.5 (docs/consensus.md).
    fn rebroadcast_proposal(&mut self) {
        let gap = self.rebroadcast_gap();
        let due = match &self.last_proposal {
            Some((p, at)) => {
                p.block.view() == self.pace.view()
                    && self.safety.high_qc.view() < self.pace.view()
                    && self.now.since(*at) >= gap
            }
            None => false,
        };
        if !due {
            return;
        }
        let timed_out_here = self
            .safety
            .last_timeout
            .as_ref()
            .is_some_and(|t| t.data.view == self.pace.view() && t.data.epoch == self.epoch);
        if timed_out_here {
            self.stuck_rebroadcasts = self.stuck_rebroadcasts.saturating_add(1);
        }
        let next = self.now.plus(self.rebroadcast_gap());
        if let Some((p, at)) = &mut self.last_proposal {
            *at = self.now;
            let msg = ConsensusMsg::Proposal(p.clone());
            self.emit(Effect::Broadcast(msg));
            self.emit(Effect::SetTimer(next));
        }
    }

    /// The gap before the next re-broadcast of `last_proposal`: the
    /// pacemaker's interval until this validator timed out in the view, then
    /// doubled after each re-broadcast, up to 2^[`MAX_REBROADCAST_BACKOFF`]
    /// times the interval. A view that stays stuck (no QC and no TC, e.g.
    /// too few validators up) then costs a proposal every few seconds, not
    /// four per base timeout for as long as it lasts (review finding).
    ///
    /// Consensus §C2.5 (docs/consensus.md).
    fn rebroadcast_gap(&self) -> u64 {
        let doublings = self
            .stuck_rebroadcasts
            .saturating_sub(1)
            .min(MAX_REBROADCAST_BACKOFF);
        self.pace.rebroadcast_interval() << doublings
    }

    /// Enter view `v` (if it is ahead). `by_qc` resets the timeout back-off.
    ///
    /// Consensus §C6.1 (docs/consensus.md).
    pub(crate) fn enter_view(&mut self, v: View, by_qc: bool) {
        if !self.pace.advance(v, by_qc) {
            return;
        }
        if !by_qc {
            self.metrics.views_timed_out += 1;
        }
        self.view_entered = self.now;
        let keep_from = View(v.0.saturating_sub(KEEP_VIEWS));
        self.votes.prune_below(keep_from);
        self.timeouts.prune_below(keep_from);
        self.detector.prune_below(keep_from);
        self.arm_timer();
        self.try_propose();
    }

    /// The current view made no progress: sign (or re-send) a timeout.
    ///
    /// Consensus §C6.2 (docs/consensus.md).
    pub(crate) fn local_timeout(&mut self) {
        if !self.is_member(self.epoch) {
            self.arm_timer();
            return;
        }
        let record = match &self.safety.last_timeout {
            Some(t) if t.data.view == self.pace.view() && t.data.epoch == self.epoch => t.clone(),
            _ => {
                let record = TimeoutRecord {
                    data: TimeoutData {
                        epoch: self.epoch,
                        view: self.pace.view(),
                        high_qc_view: self.safety.high_qc.view(),
                    },
                    high_qc: self.safety.high_qc.clone(),
                };
                self.safety.last_timeout = Some(record.clone());
                self.safety.last_voted_view = self.safety.last_voted_view.max(self.pace.view());
                self.pace.note_local_timeout();
                self.persist_safety();
                record
            }
        };
        self.metrics.timeouts_sent += 1;
        self.emit(Effect::Sign(SignJob {
            request: SignRequest {
                kind: SignKind::Timeout,
                view: Some(record.data.view),
                message: record.data.to_bytes(),
                digest_preimage: Vec::new(),
            },
            purpose: SignPurpose::Timeout {
                data: record.data,
                high_qc: record.high_qc,
            },
        }));
        self.arm_timer();
    }

    /// Consensus §C2.2, §C4.4, §C6.2 (docs/consensus.md).
    fn on_signed(&mut self, job: SignJob, signature: Signature) {
        let me = self.me;
        let result = match job.purpose {
            SignPurpose::Proposal { block, tc } => {
                let p = Proposal {
                    block: *block,
                    tc,
                    signature,
                };
                self.metrics.proposals_made += 1;
                self.emit(Effect::Broadcast(ConsensusMsg::Proposal(p.clone())));
                self.last_proposal = Some((p.clone(), self.now));
                self.stuck_rebroadcasts = 0;
                let next = self.now.plus(self.pace.rebroadcast_interval());
                self.emit(Effect::SetTimer(next));
                self.on_proposal(me, p)
            }
            SignPurpose::Vote { data, to } => {
                let vote = Vote {
                    data,
                    voter: me,
                    signature,
                };
                self.metrics.votes_sent += 1;
                self.last_vote = Some(vote.clone());
                if to == me {
                    self.on_vote(me, vote)
                } else {
                    self.emit(Effect::Send {
                        to,
                        msg: ConsensusMsg::Vote(vote),
                    });
                    Ok(())
                }
            }
            SignPurpose::Batch { batch } => {
                self.on_dag_signed(DagSignPurpose::Batch { batch }, Some(signature));
                Ok(())
            }
            SignPurpose::BatchAck { batch, to } => {
                self.on_dag_signed(DagSignPurpose::BatchAck { batch, to }, Some(signature));
                Ok(())
            }
            SignPurpose::Timeout { data, high_qc } => {
                let vote = self
                    .last_vote
                    .clone()
                    .filter(|v| v.data.view == data.view && v.data.epoch == data.epoch);
                let msg = TimeoutMsg {
                    data,
                    high_qc,
                    vote,
                    sender: me,
                    signature,
                };
                self.emit(Effect::Broadcast(ConsensusMsg::Timeout(msg.clone())));
                self.on_timeout_msg(me, msg)
            }
        };
        if let Err(error) = result {
            self.reject(me, error);
        }
    }

    // ------------------------------------------------------------ proposing

    /// A proposal held back while idle in this view goes out now, if it
    /// can. Only then: `try_propose` may fetch a missing high-QC block, and
    /// must not do so on every submission or batch certificate.
    pub(crate) fn retry_idle_proposal(&mut self) {
        if self.idle_held == Some(self.pace.view()) {
            self.try_propose();
        }
    }

    /// Whether to hold back this view's proposal for now
    /// ([`super::ConsensusConfig::idle_proposal_delay_ms`]): nothing to
    /// propose and nothing uncommitted above `parent`'s committed ancestor
    /// that more blocks would commit. Until the delay (at most a quarter of
    /// the base view timeout) has passed since the view began, a timer
    /// brings the machine back; a submitted transaction or a new batch
    /// certificate does too.
    fn idle_hold(&mut self, parent: &Hash32) -> bool {
        let Some(delay) = self.cfg.idle_proposal_delay_ms else {
            return false;
        };
        let delay = delay.min(self.cfg.base_timeout_ms / 4);
        let due = self.view_entered.plus(delay);
        if self.now >= due || self.has_payload_to_propose(parent) {
            return false;
        }
        let mut pending_payload = false;
        self.walk_uncommitted(parent, |b| {
            pending_payload |= !b.payload().is_empty();
        });
        if pending_payload {
            return false;
        }
        self.idle_held = Some(self.pace.view());
        self.emit(Effect::SetTimer(due));
        true
    }

    /// Propose if this validator leads the current view and has not proposed
    /// in it yet.
    ///
    /// Consensus §C2.1–C2.4 (docs/consensus.md).
    pub(crate) fn try_propose(&mut self) {
        let epoch = self.epoch;
        if !self.is_member(epoch)
            || self.leader(epoch, self.pace.view()) != self.me
            || self.safety.last_proposed_view >= self.pace.view()
        {
            return;
        }
        // At most one proposal per millisecond. A validator that forms the
        // QC of its own proposal and leads the next view too (a set of one,
        // or one validator with a quorum of stake) would otherwise chain
        // proposals without ever returning to its driver: the next one
        // waits for the next tick.
        if self
            .last_proposal
            .as_ref()
            .is_some_and(|(p, at)| *at == self.now && p.block.view() < self.pace.view())
        {
            let next = self.now.plus(1);
            self.emit(Effect::SetTimer(next));
            return;
        }
        let high_qc = self.safety.high_qc.clone();
        let Some(qc_block) = self.tree.get(&high_qc.block_id()).cloned() else {
            let hint = self.leader(high_qc.data.epoch, high_qc.view());
            self.fetch(high_qc.block_id(), hint);
            return;
        };
        let (parent, suffix) = if qc_block.epoch() < epoch {
            // First block of a new epoch: extend the committed boundary block.
            match self.tree.root() {
                Some(root)
                    if root.height() == self.boundary(root.epoch())
                        && root.epoch().next() == epoch =>
                {
                    (root.clone(), false)
                }
                _ => return,
            }
        } else if qc_block.epoch() == epoch {
            let suffix = qc_block.height() >= self.boundary(qc_block.epoch());
            (qc_block, suffix)
        } else {
            return;
        };
        if parent.view() >= self.pace.view() {
            return;
        }
        if !suffix && self.idle_hold(&parent.id()) {
            return;
        }
        let payload = self.make_payload(epoch, &parent.id(), suffix);
        let header = BlockHeader {
            epoch,
            view: self.pace.view(),
            height: parent.height().next(),
            parent_id: parent.id(),
            justify_view: high_qc.view(),
            proposer: self.me,
            payload_digest: Hash32::ZERO,
            batch_commitment: Hash32::ZERO,
            exec_height: Height(0),
            exec_state_root: Hash32::ZERO,
        };
        // Report the root of an executed height the voters have executed
        // too by the time they see this proposal: the QC it carries can
        // commit `height - 3`, which they execute only after voting, so
        // report `height - 4` or lower.
        let mut header = header;
        if let Some((h, root)) = self
            .executed_roots
            .range(..Height(header.height.0.saturating_sub(3)))
            .next_back()
            .map(|(h, r)| (*h, *r))
        {
            header.exec_height = h;
            header.exec_state_root = root;
        }
        let block = Block::new(header, high_qc, payload);
        let tc = self.pace.tc_entering(self.pace.view());
        self.safety.last_proposed_view = self.pace.view();
        self.persist_safety();
        self.emit(Effect::Sign(SignJob {
            request: SignRequest {
                kind: SignKind::Proposal,
                view: Some(self.pace.view()),
                message: block.id().to_bytes(),
                digest_preimage: block.header().to_bytes(),
            },
            purpose: SignPurpose::Proposal {
                block: Box::new(block),
                tc,
            },
        }));
    }

    // ------------------------------------------------------------ voting

    /// Vote for `block` if it is for the current view and epoch and the
    /// safety rules allow it.
    ///
    /// Consensus §C4.1–C4.5 (docs/consensus.md).
    pub(crate) fn try_vote(&mut self, block: &Block) -> Result<(), ConsensusError> {
        if block.view() < self.pace.view() {
            return Err(ConsensusError::StaleView {
                what: "proposal",
                view: block.view(),
                current: self.pace.view(),
            });
        }
        if block.view() > self.pace.view() {
            // Not entered yet (no certificate for the previous view seen).
            return Ok(());
        }
        if block.epoch() != self.epoch {
            return Err(ConsensusError::WrongEpoch {
                what: "proposal",
                epoch: block.epoch(),
                current: self.epoch,
            });
        }
        if !self.is_member(self.epoch) {
            return Ok(());
        }
        if let Some(vote) = self
            .last_vote
            .clone()
            .filter(|v| v.data.block_id == block.id())
        {
            // A re-broadcast proposal: answer with the very same signed vote.
            let to = self.leader(self.epoch, block.view().next());
            if to != self.me {
                self.emit(Effect::Send {
                    to,
                    msg: ConsensusMsg::Vote(vote),
                });
            }
            return Ok(());
        }
        self.safety
            .check_vote(block.view(), block.justify().view(), self.cfg.faults)?;
        self.safety.last_voted_view = block.view();
        self.persist_safety();
        let data = VoteData {
            epoch: block.epoch(),
            view: block.view(),
            block_id: block.id(),
        };
        let to = self.leader(self.epoch, block.view().next());
        self.emit(Effect::Sign(SignJob {
            request: SignRequest {
                kind: SignKind::Vote,
                view: Some(block.view()),
                message: data.to_bytes(),
                digest_preimage: Vec::new(),
            },
            purpose: SignPurpose::Vote { data, to },
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;
    use crate::signing::sign_domain;
    use crate::types::NetworkEnvironment;
    use crate::validator::ValidatorSet;

    const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

    /// The executed height bounds the epochs whose signatures are checked:
    /// two after the last fully executed epoch (and nothing before the
    /// replica first says), for FIFO and DAG payloads alike.
    #[test]
    fn executed_height_bounds_the_epochs_whose_keys_are_checked() {
        let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed(&[i; 32])).collect();
        let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())
            .expect("set");
        let schedule = Arc::new(EpochSchedule::with_epochs(10, set, Vec::new()));
        for mode in [crate::dag::PayloadMode::Fifo, crate::dag::PayloadMode::Dag] {
            let mut cfg = ConsensusConfig::new(ENV);
            cfg.payload_mode = mode;
            let mut hs = HotStuff::new(
                cfg,
                ValidatorId(0),
                schedule.clone(),
                None,
                Vec::new(),
                Vec::new(),
            );
            assert!(hs.verifier.keys_final(Epoch(1_000)));
            for (h, last) in [
                (0, 1),
                (5, 1),
                (9, 1),
                (10, 2),
                (11, 2),
                (19, 2),
                (20, 3),
                (25, 3),
            ] {
                hs.note_executed_height(Height(h));
                assert!(hs.verifier.keys_final(Epoch(last)), "height {h}");
                assert!(!hs.verifier.keys_final(Epoch(last + 1)), "height {h}");
                if let Payloads::Dag(dag) = &hs.payloads {
                    assert!(dag.keys_final(Epoch(last)) && !dag.keys_final(Epoch(last + 1)));
                }
            }
        }
    }

    /// Four validators, validator 0 having executed nothing (keys final
    /// through epoch 1 of 10-block epochs), started.
    fn far_behind(keys: &[KeyPair]) -> HotStuff {
        let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())
            .expect("set");
        let schedule = Arc::new(EpochSchedule::with_epochs(10, set, Vec::new()));
        let mut hs = HotStuff::new(
            ConsensusConfig::new(ENV),
            ValidatorId(0),
            schedule,
            None,
            Vec::new(),
            Vec::new(),
        );
        hs.note_executed_height(Height(0));
        let _ = hs.handle(Millis(0), Input::Start);
        hs
    }

    /// A proposal of epoch 5 at `height` by `proposer`, signed with `key`.
    fn far_proposal(keys: &[KeyPair], proposer: u32, height: u64, key: &KeyPair) -> Input {
        use crate::consensus::{BlockHeader, ConsensusMsg, Payload, Proposal};
        let header = BlockHeader {
            epoch: Epoch(5),
            view: View(200 + u64::from(proposer)),
            height: Height(height),
            parent_id: Hash32([7; 32]),
            justify_view: View(199),
            proposer: ValidatorId(proposer),
            payload_digest: Hash32::ZERO,
            batch_commitment: Hash32::ZERO,
            exec_height: Height(0),
            exec_state_root: Hash32::ZERO,
        };
        let justify = crate::sim::chain::quorum_cert(ENV, keys, 5, 199, Hash32([7; 32]));
        let block = Block::new(header, justify, Payload::empty());
        let signature = sign_domain(key, ENV, SignKind::Proposal, &block.id().to_bytes());
        Input::Message {
            from: ValidatorId(proposer),
            msg: ConsensusMsg::Proposal(Proposal {
                block,
                tc: None,
                signature,
            }),
        }
    }

    /// A timeout of epoch 5 by `sender`, signed with `key`.
    fn far_timeout(keys: &[KeyPair], sender: u32, key: &KeyPair) -> Input {
        use crate::consensus::{ConsensusMsg, TimeoutData, TimeoutMsg};
        let data = TimeoutData {
            epoch: Epoch(5),
            view: View(200),
            high_qc_view: View(199),
        };
        let signature = sign_domain(key, ENV, SignKind::Timeout, &data.to_bytes());
        Input::Message {
            from: ValidatorId(sender),
            msg: ConsensusMsg::Timeout(TimeoutMsg {
                data,
                high_qc: crate::sim::chain::quorum_cert(ENV, keys, 5, 199, Hash32([7; 32])),
                vote: None,
                sender: ValidatorId(sender),
                signature,
            }),
        }
    }

    /// A proposal of an epoch whose keys are not final here is held back,
    /// but, signed by a member with a key this validator knows, its height
    /// (capped near its epoch's end) is a claim; the highest height claimed
    /// by more than a third of the stake starts catching up. One member
    /// alone, a forged signature or a height far past its epoch does not
    /// move the target further.
    #[test]
    fn a_held_back_proposal_is_a_catch_up_hint_only_when_signed() {
        let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed(&[i; 32])).collect();
        let mut hs = far_behind(&keys);
        let _ = hs.handle(Millis(1), far_proposal(&keys, 1, 55, &keys[1]));
        assert_eq!(
            hs.metrics().rejected.get("keys_not_final"),
            Some(&1),
            "held back, not accepted"
        );
        assert!(!hs.catching_up(), "one member of four is not enough");
        let _ = hs.handle(Millis(1), far_proposal(&keys, 2, 57, &keys[2]));
        assert!(hs.catching_up(), "a second signed claim starts catching up");
        assert_eq!(hs.range.target, Height(55), "the lower of the two claims");
        // A height far past epoch 5's end is capped.
        let mut hs = far_behind(&keys);
        let _ = hs.handle(Millis(1), far_proposal(&keys, 1, 1_000_000, &keys[1]));
        let _ = hs.handle(Millis(1), far_proposal(&keys, 2, 1_000_000, &keys[2]));
        assert_eq!(hs.range.target, Height(60 + 8));
        // A forged signature moves nothing.
        let mut hs = far_behind(&keys);
        let _ = hs.handle(Millis(1), far_proposal(&keys, 1, 55, &keys[1]));
        let _ = hs.handle(Millis(1), far_proposal(&keys, 2, 55, &keys[3]));
        assert!(!hs.catching_up());
    }

    /// A timeout of an epoch whose keys are not final here is held back,
    /// but, signed by a member with a key this validator knows, its epoch's
    /// end is a claim: when the chain stalls for want of this validator's
    /// vote, its peers send nothing else (issue #20; before, such a
    /// validator never caught up, see the simulator test
    /// `a_needed_validator_restarted_epochs_behind_catches_up_over_the_dag`).
    /// One member alone (a Byzantine one pushing an up-to-date validator to
    /// chase heights that do not exist) and forged signatures move nothing.
    #[test]
    fn a_held_back_timeout_is_a_catch_up_hint_only_when_signed() {
        let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed(&[i; 32])).collect();
        let mut hs = far_behind(&keys);
        let _ = hs.handle(Millis(1), far_timeout(&keys, 1, &keys[1]));
        assert_eq!(
            hs.metrics().rejected.get("keys_not_final"),
            Some(&1),
            "held back, not accepted"
        );
        assert!(!hs.catching_up(), "one member of four is not enough");
        let _ = hs.handle(Millis(1), far_timeout(&keys, 2, &keys[3]));
        assert!(!hs.catching_up(), "a forged signature is no claim");
        let _ = hs.handle(Millis(1), far_timeout(&keys, 2, &keys[2]));
        assert!(hs.catching_up(), "two signed claims start catching up");
        assert_eq!(hs.range.target, Height(60 + 8));
        // More keys final: the claims go with the keys they were checked
        // with (review finding: they never expired).
        hs.note_executed_height(Height(40));
        assert!(hs.range.claims.is_empty());
    }

    /// The leader of view 1 of four validators, started at 0 with its
    /// proposal signed and sent; and the view timeout.
    fn leader_that_proposed() -> (HotStuff, u64) {
        let keys: Vec<KeyPair> = (0..4u8)
            .map(|i| KeyPair::from_seed(&[i + 10; 32]))
            .collect();
        let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())
            .expect("set");
        let schedule = Arc::new(EpochSchedule::fixed(set));
        let cfg = ConsensusConfig::new(ENV);
        let timeout = cfg.base_timeout_ms;
        let probe = HotStuff::new(
            cfg.clone(),
            ValidatorId(0),
            schedule.clone(),
            None,
            Vec::new(),
            Vec::new(),
        );
        let leader = probe.leader(Epoch(0), View(1));
        let mut hs = HotStuff::new(cfg, leader, schedule, None, Vec::new(), Vec::new());
        let job = hs
            .handle(Millis(0), Input::Start)
            .into_iter()
            .find_map(|e| match e {
                Effect::Sign(job) => Some(job),
                _ => None,
            })
            .expect("the leader of view 1 proposes at start");
        let key = &keys[leader.0 as usize];
        let signature = sign_domain(key, ENV, job.request.kind, &job.request.message);
        let _ = hs.handle(Millis(0), Input::Signed { job, signature });
        (hs, timeout)
    }

    /// What a tick did, in short: proposals broadcast, timeouts to sign.
    fn tick(hs: &mut HotStuff, at: u64) -> (usize, usize, Vec<u64>) {
        let effects = hs.handle(Millis(at), Input::Tick);
        let proposals = effects
            .iter()
            .filter(|e| matches!(e, Effect::Broadcast(ConsensusMsg::Proposal(_))))
            .count();
        let timeouts = effects
            .iter()
            .filter(|e| {
                matches!(e, Effect::Sign(job) if matches!(job.purpose, SignPurpose::Timeout { .. }))
            })
            .count();
        let timers = effects
            .iter()
            .filter_map(|e| match e {
                Effect::SetTimer(t) => Some(t.0),
                _ => None,
            })
            .collect();
        (proposals, timeouts, timers)
    }

    /// The engine wakes once per instant, however many deadlines name it: a
    /// tick where the view timer and the proposal's re-broadcast are both
    /// due must do both, or the re-broadcasts (each armed by the previous
    /// one) stop for good (docs/simulation.md "Timers").
    #[test]
    fn a_tick_at_the_view_deadline_still_rebroadcasts_the_proposal() {
        let (mut hs, timeout) = leader_that_proposed();
        let interval = hs.pace.rebroadcast_interval();
        assert_eq!(
            timeout % interval,
            0,
            "the deadline is a re-broadcast instant"
        );
        let mut at = interval;
        while at < timeout {
            let (proposals, timeouts, timers) = tick(&mut hs, at);
            assert_eq!((proposals, timeouts), (1, 0), "at {at} ms");
            assert_eq!(timers, vec![at + interval], "at {at} ms");
            at += interval;
        }
        let (proposals, timeouts, timers) = tick(&mut hs, timeout);
        assert_eq!(
            (proposals, timeouts),
            (1, 1),
            "at the deadline ({timeout} ms, timers set {timers:?}): a timeout and a re-broadcast"
        );
        assert!(timers.contains(&(timeout + interval)), "{timers:?}");
        let (proposals, _, _) = tick(&mut hs, timeout + interval);
        assert_eq!(
            proposals, 1,
            "the re-broadcasts go on after the view timed out"
        );
    }

    /// A view that stays stuck after its timeout (no QC, no TC) re-broadcasts
    /// its proposal with a doubling gap, up to 16 intervals, and the chain of
    /// timers never breaks.
    #[test]
    fn a_stuck_view_backs_its_rebroadcasts_off() {
        let (mut hs, timeout) = leader_that_proposed();
        let interval = hs.pace.rebroadcast_interval();
        let mut at = interval;
        while at < timeout {
            let _ = tick(&mut hs, at);
            at += interval;
        }
        // The deadline: a timeout and a re-broadcast, the next one interval later.
        let (proposals, timeouts, timers) = tick(&mut hs, timeout);
        assert_eq!((proposals, timeouts), (1, 1));
        assert!(timers.contains(&(timeout + interval)), "{timers:?}");
        // From here on, wake it as the engine does: at every deadline it set.
        let mut pending: std::collections::BTreeSet<u64> = timers.into_iter().collect();
        let mut sent_at = vec![timeout];
        while sent_at.len() < 8 {
            let at = pending.pop_first().expect("a timer is always armed");
            let (proposals, _, timers) = tick(&mut hs, at);
            assert!(proposals <= 1);
            if proposals == 1 {
                sent_at.push(at);
            }
            pending.extend(timers.into_iter().filter(|t| *t > at));
        }
        let gaps: Vec<u64> = sent_at
            .windows(2)
            .map(|w| (w[1] - w[0]) / interval)
            .collect();
        assert_eq!(gaps, vec![1, 2, 4, 8, 16, 16, 16]);
    }
}
