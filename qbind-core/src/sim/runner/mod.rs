//! The event loop of the simulator: events in time order, node start,
//! crash and restart. Building a run is in `setup.rs`, applying a
//! replica's actions in `effects.rs`, the network and Byzantine senders in
//! `outbound.rs`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha3::{Digest, Sha3_256};

use crate::application::{Application, TransferApplication};
use crate::codec::{Decode, Encode};
use crate::consensus::{Block, ConsensusConfig, ConsensusMsg, HotStuff, Input, SafetyFaults};
use crate::crypto::KeyPair;
use crate::execution::{Account, AccountReader, BackendAccounts};
use crate::replica::{Action, Event as ReplicaEvent, Replica};
use crate::signing::sign_domain;
use crate::sim::byzantine::{
    corrupt_message, equivocate, equivocate_batch, forge_certificates, forged_timeout, fork,
    reckless_vote,
};
use crate::sim::checks::{Checker, Violation};
use crate::sim::network::{batch_delay, connected};
use crate::sim::{Behavior, CommitRecord, Report, Scenario};
use crate::traits::{MemoryBackend, Namespace, StateRead};
use crate::types::{Hash32, Height, Millis, NetworkEnvironment, ValidatorId, View};
use crate::validator::{EpochSchedule, ValidatorSet};
use effects::{Divergent, supply};

mod adversary;
mod effects;
mod outbound;
mod setup;

enum Event {
    Deliver {
        to: usize,
        from: ValidatorId,
        bytes: Rc<Vec<u8>>,
        /// Not a canonical encoding (an adversary appended bytes): an
        /// honest decoder must refuse it.
        noncanonical: bool,
    },
    Adversary,
    BoundCheck,
    Maintenance,
    Tick {
        node: usize,
        incarnation: u64,
    },
    Crash {
        node: usize,
        after_persist: bool,
        after_send: bool,
    },
    Restart {
        node: usize,
    },
    SubmitTx,
    /// Submit these bytes to one node's pool.
    SubmitBytes {
        node: usize,
        bytes: Vec<u8>,
    },
    Flood,
}

struct SimNode {
    validator: ValidatorId,
    key: KeyPair,
    /// Rotated consensus keys and the epochs from which the node uses
    /// them, in order.
    rotated_keys: Vec<(crate::types::Epoch, KeyPair)>,
    behavior: Option<Behavior>,
    honest: bool,
    /// The running replica (`None` while crashed).
    replica: Option<Replica<MemoryBackend>>,
    /// What the node persisted: survives a crash except for buffered
    /// writes no durable write covered yet.
    store: MemoryBackend,
    /// Highest height delivered for execution (observed).
    executed: Height,
    executed_txs: u64,
    high_fee_executed: u64,
    crash_after_persist: bool,
    /// Crash right after the next vote or timeout has left.
    crash_after_send: bool,
    incarnation: u64,
    /// Instants a tick is scheduled for in this incarnation (unless
    /// [`Scenario::timer_per_request`]).
    timers: BTreeSet<u64>,
    commits: Vec<CommitRecord>,
    executions: Vec<crate::sim::ExecRecord>,
    epochs_closed: u64,
    /// On-chain key rotations applied and refused (from events).
    key_rotations: (u64, u64),
}

pub(crate) struct Runner {
    sc: Scenario,
    env: NetworkEnvironment,
    cfg: ConsensusConfig,
    /// The schedule the checks and adversaries use: every key rotation of
    /// the scenario is in it from the start.
    schedule: Arc<EpochSchedule>,
    /// The schedule replicas open with: without the on-chain rotations,
    /// which they learn from blocks.
    node_schedule: Arc<EpochSchedule>,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    nodes: Vec<SimNode>,
    checker: Checker,
    log: Sha3_256,
    proposed_at: HashMap<Hash32, u64>,
    processed: u64,
    delivered: u64,
    evidence: u64,
    rejected: BTreeMap<&'static str, u64>,
    heal_time: u64,
    heal_view: Option<View>,
    /// Every proposed block, for forking leaders.
    seen_blocks: HashMap<Hash32, Block>,
    /// Whether `seen_blocks` is needed (Byzantine nodes, twins or
    /// adversaries in the scenario).
    keep_blocks: bool,
    /// High-fee transactions submitted (mempool-flood scenarios).
    high_fee_submitted: u64,
    /// Committed DAG blocks whose certificates were already checked.
    checked_blocks: std::collections::HashSet<Hash32>,
    /// The conflicting proposal a faulty leader made per view (re-sent
    /// unchanged when its honest proposal is re-broadcast).
    alternates: HashMap<(usize, View), crate::consensus::Proposal>,
    /// The signed-transfer generator (transfer scenarios).
    workload: Option<crate::sim::transfers::Workload>,
    /// Fee account of each validator, by validator index.
    proposer_accounts: Vec<crate::types::AccountId>,
    /// What the outside adversaries hold and have seen.
    adv: adversary::AdversaryState,
    /// System transactions to submit.
    system_txs: setup::SystemTxs,
}

impl SimNode {
    fn new(validator: usize, key: KeyPair, behavior: Option<Behavior>, honest: bool) -> Self {
        SimNode {
            validator: ValidatorId(validator as u32),
            key,
            rotated_keys: Vec::new(),
            behavior,
            honest,
            replica: None,
            store: MemoryBackend::with_crash_semantics(),
            executed: Height(0),
            executed_txs: 0,
            high_fee_executed: 0,
            crash_after_persist: false,
            crash_after_send: false,
            incarnation: 0,
            timers: BTreeSet::new(),
            commits: Vec::new(),
            executions: Vec::new(),
            epochs_closed: 0,
            key_rotations: (0, 0),
        }
    }

    fn machine(&self) -> Option<&HotStuff> {
        self.replica.as_ref().map(Replica::machine)
    }

    /// An account as the node's store holds it (transfer scenarios).
    fn account(&self, id: &crate::types::AccountId) -> Option<Account> {
        BackendAccounts::new(&self.store).account(id).ok()
    }
}

fn validator_key(i: usize) -> KeyPair {
    let mut seed = [0x5au8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    KeyPair::from_seed(&seed)
}

/// The report of a scenario that could not run.
fn invalid(sc: &Scenario, why: &'static str) -> Box<Report> {
    Box::new(Report {
        seed: sc.seed,
        event_log_hash: Hash32::ZERO,
        commits: Vec::new(),
        honest: Vec::new(),
        views: Vec::new(),
        violations: vec![Violation::InvalidScenario { why }],
        end_time: 0,
        events: 0,
        delivered: 0,
        evidence: 0,
        rejected: BTreeMap::new(),
        metrics: Vec::new(),
        dag_metrics: Vec::new(),
        executed_txs: Vec::new(),
        high_fee_submitted: 0,
        high_fee_executed: Vec::new(),
        mempool_metrics: Vec::new(),
        executions: Vec::new(),
        epochs_closed: Vec::new(),
        key_rotations: Vec::new(),
        supply_check: None,
    })
}

impl Runner {
    fn schedule_at(&mut self, at: u64, event: Event) {
        let seq = self.seq;
        self.seq += 1;
        self.events.insert(seq, event);
        self.queue.push(Reverse((at.max(self.now), seq)));
    }

    pub(crate) fn run(mut self) -> Report {
        #[cfg(feature = "sim")]
        let _mutants = crate::mutants::Mutants::enable(&self.sc.mutants);
        for i in 0..self.nodes.len() {
            self.start_node(i);
        }
        let crashes = self.sc.crashes.clone();
        for c in crashes {
            self.schedule_at(
                c.at,
                Event::Crash {
                    node: c.node,
                    after_persist: c.after_persist,
                    after_send: c.after_send,
                },
            );
            if let Some(r) = c.restart {
                self.schedule_at(r, Event::Restart { node: c.node });
            }
        }
        if self.sc.tx_interval > 0 {
            self.schedule_at(self.sc.tx_interval, Event::SubmitTx);
        }
        for (at, node, bytes) in std::mem::take(&mut self.system_txs) {
            self.schedule_at(at, Event::SubmitBytes { node, bytes });
        }
        if !self.sc.adversaries.is_empty() {
            self.schedule_at(adversary::EVERY_MS, Event::Adversary);
            self.schedule_at(adversary::EVERY_MS, Event::BoundCheck);
        }
        if let Some(f) = self.sc.fee_pool {
            self.schedule_at(f.flood_every_ms.max(1), Event::Flood);
        }
        if let Some((every, _)) = &self.sc.maintenance {
            self.schedule_at(*every, Event::Maintenance);
        }
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > self.sc.max_time {
                break;
            }
            if self.processed >= self.sc.max_events {
                self.checker.report(Violation::EventBudget { at });
                break;
            }
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            self.now = at;
            self.processed += 1;
            self.handle(seq, event);
            if self.heal_view.is_none() && self.now >= self.heal_time {
                self.heal_view = Some(self.max_honest_view());
            }
            if self.processed.is_multiple_of(64) && self.done() {
                break;
            }
        }
        self.finish()
    }

    fn max_honest_view(&self) -> View {
        self.nodes
            .iter()
            .filter(|n| n.honest)
            .filter_map(|n| n.machine().map(HotStuff::view))
            .max()
            .unwrap_or_default()
    }

    /// The leader of `view` in `epoch` as node `i` sees it (its own
    /// committed chain decides, §C10), or as the honest running node with
    /// the highest commit does when `i` is `None` or not running: faulty
    /// validators and outside adversaries know the committed chain too.
    pub(super) fn leader_seen_by(
        &self,
        i: Option<usize>,
        epoch: crate::types::Epoch,
        view: View,
    ) -> ValidatorId {
        let own = i.and_then(|i| self.nodes.get(i)).and_then(SimNode::machine);
        let machine = own.or_else(|| {
            self.nodes
                .iter()
                .filter(|n| n.honest)
                .filter_map(SimNode::machine)
                .max_by_key(|m| m.committed_height())
        });
        match machine {
            Some(m) => m.leader(epoch, view),
            None => self.schedule.set(epoch).leader(view),
        }
    }

    /// Honest nodes that are running (or will restart).
    fn required_nodes(&self) -> impl Iterator<Item = &SimNode> {
        self.nodes
            .iter()
            .filter(|n| n.honest && n.replica.is_some())
    }

    fn done(&self) -> bool {
        if self.now < self.heal_time {
            return false;
        }
        let enough = self
            .required_nodes()
            .all(|n| n.commits.last().map_or(0, |c| c.height.0) >= self.sc.min_commits);
        let live = match (self.sc.liveness, self.heal_view) {
            (Some(l), Some(hv)) => self.required_nodes().all(|n| {
                n.commits
                    .iter()
                    .filter(|c| c.view > hv && c.view.0 <= hv.0 + l.within_views)
                    .count() as u64
                    >= l.commits
            }),
            (Some(_), None) => false,
            (None, _) => true,
        };
        // Every committed block's data reached every running honest node.
        let available = self
            .required_nodes()
            .all(|n| n.executed >= n.commits.last().map_or(Height(0), |c| c.height));
        enough && live && available
    }

    fn finish(mut self) -> Report {
        let unavailable: Vec<Violation> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.honest && n.replica.is_some())
            .filter_map(|(i, n)| {
                let committed = n.commits.last().map_or(Height(0), |c| c.height);
                (n.executed < committed).then_some(Violation::Unavailable {
                    node: i,
                    committed,
                    executed: n.executed,
                })
            })
            .collect();
        for v in unavailable {
            self.checker.report(v);
        }
        if let Some(l) = self.sc.liveness {
            let hv = self.heal_view.unwrap_or(View(u64::MAX / 2));
            let views: Vec<(usize, Vec<View>)> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.honest && n.replica.is_some())
                .map(|(i, n)| (i, n.commits.iter().map(|c| c.view).collect()))
                .collect();
            for (i, vs) in views {
                self.checker
                    .liveness(i, vs.into_iter(), hv, l.within_views, l.commits);
            }
        }
        let violations = std::mem::take(&mut self.checker.violations);
        let supply_check = self
            .workload
            .as_ref()
            .and(self.nodes.first())
            .and_then(|n| supply(&n.store));
        Report {
            supply_check,
            executions: self.nodes.iter().map(|n| n.executions.clone()).collect(),
            epochs_closed: self.nodes.iter().map(|n| n.epochs_closed).collect(),
            key_rotations: self.nodes.iter().map(|n| n.key_rotations).collect(),
            seed: self.sc.seed,
            event_log_hash: Hash32(self.log.finalize().into()),
            honest: self.nodes.iter().map(|n| n.honest).collect(),
            views: self
                .nodes
                .iter()
                .map(|n| n.machine().map_or(0, |m| m.view().0))
                .collect(),
            metrics: self
                .nodes
                .iter()
                .map(|n| n.machine().map(|m| m.metrics().clone()))
                .collect(),
            dag_metrics: self
                .nodes
                .iter()
                .map(|n| n.machine().and_then(|m| m.dag_metrics().cloned()))
                .collect(),
            executed_txs: self.nodes.iter().map(|n| n.executed_txs).collect(),
            high_fee_submitted: self.high_fee_submitted,
            high_fee_executed: self.nodes.iter().map(|n| n.high_fee_executed).collect(),
            mempool_metrics: self
                .nodes
                .iter()
                .map(|n| n.machine().and_then(|m| m.mempool_metrics().cloned()))
                .collect(),
            commits: self.nodes.into_iter().map(|n| n.commits).collect(),
            violations,
            end_time: self.now,
            events: self.processed,
            delivered: self.delivered,
            evidence: self.evidence,
            rejected: self.rejected,
        }
    }

    /// Submit the workload's next signed transfer to its sender's node.
    fn submit_transfer(&mut self, seq: u64) {
        let validators = self.sc.stakes.len().max(1);
        let nodes = &self.nodes;
        let Some(w) = self.workload.as_mut() else {
            return;
        };
        let (sender, tx) = w.next_tx(&mut self.rng, self.env, |s, id| {
            let home = crate::sim::transfers::Workload::home(s, validators);
            nodes.get(home).and_then(|n| n.account(id)).map(|a| a.nonce)
        });
        let target = crate::sim::transfers::Workload::home(sender, validators);
        self.log_event(seq, 5, target, &tx);
        self.feed(target, Input::SubmitTransaction(tx));
    }

    fn log_event(&mut self, seq: u64, tag: u8, node: usize, detail: &[u8]) {
        self.log.update(self.now.to_be_bytes());
        self.log.update(seq.to_be_bytes());
        self.log.update([tag]);
        self.log.update((node as u64).to_be_bytes());
        self.log.update((detail.len() as u64).to_be_bytes());
        self.log.update(&detail[..detail.len().min(48)]);
    }

    fn handle(&mut self, seq: u64, event: Event) {
        match event {
            Event::Deliver {
                to,
                from,
                bytes,
                noncanonical,
            } => {
                self.log_event(seq, 1, to, &bytes);
                self.deliver(to, from, &bytes, noncanonical);
            }
            Event::Adversary => {
                self.log_event(seq, 7, 0, &[]);
                self.adversary_tick();
                self.schedule_at(self.now + adversary::EVERY_MS, Event::Adversary);
            }
            Event::BoundCheck => {
                self.check_bounds();
                self.schedule_at(self.now + adversary::EVERY_MS, Event::BoundCheck);
            }
            Event::Maintenance => {
                if let Some((every, hook)) = self.sc.maintenance.clone() {
                    self.maintain(&hook);
                    self.schedule_at(self.now + every, Event::Maintenance);
                }
            }
            Event::Tick { node, incarnation } => {
                self.log_event(seq, 2, node, &[]);
                let coalesce = self.sc.coalesce_timers;
                let now = self.now;
                if self.nodes.get_mut(node).is_some_and(|n| {
                    n.incarnation == incarnation && (!coalesce || n.timers.remove(&now))
                }) {
                    self.feed(node, Input::Tick);
                }
            }
            Event::Crash {
                node,
                after_persist,
                after_send,
            } => {
                self.log_event(seq, 3, node, &[u8::from(after_persist)]);
                if after_persist || after_send {
                    if let Some(n) = self.nodes.get_mut(node) {
                        n.crash_after_persist = after_persist;
                        n.crash_after_send = after_send;
                    }
                } else {
                    self.crash(node);
                }
            }
            Event::Restart { node } => {
                self.log_event(seq, 4, node, &[]);
                if let Some(n) = self.nodes.get_mut(node) {
                    n.crash_after_persist = false;
                    n.crash_after_send = false;
                }
                if self.nodes.get(node).is_some_and(|n| n.replica.is_none()) {
                    self.start_node(node);
                }
            }
            Event::SubmitBytes { node, bytes } => {
                self.log_event(seq, 8, node, &bytes);
                self.feed(node, Input::SubmitTransaction(bytes));
            }
            Event::Flood => {
                let len = self.nodes.len().max(1);
                let burst = self.sc.fee_pool.map_or(1, |f| f.flood_burst.max(1));
                for k in 0..burst {
                    let target = self.rng.gen_range(0..len);
                    let salt = self.seq.wrapping_mul(1_000).wrapping_add(u64::from(k));
                    let sender = 1_000_000 + (salt % 1_000_000) as u32;
                    let tx = crate::sim::simtx::encode(sender, 0, crate::sim::simtx::LOW_FEE, salt);
                    self.log_event(seq, 6, target, &tx);
                    self.feed(target, Input::SubmitTransaction(tx));
                }
                let every = self.sc.fee_pool.map_or(1, |f| f.flood_every_ms.max(1));
                self.schedule_at(self.now + every, Event::Flood);
            }
            Event::SubmitTx => {
                if self.workload.is_some() {
                    self.submit_transfer(seq);
                    self.schedule_at(self.now + self.sc.tx_interval, Event::SubmitTx);
                    return;
                }
                let len = self.nodes.len().max(1);
                let target = self.rng.gen_range(0..len);
                let tx = if self.sc.fee_pool.is_some() {
                    self.high_fee_submitted += 1;
                    crate::sim::simtx::encode(
                        self.seq as u32,
                        0,
                        crate::sim::simtx::HIGH_FEE,
                        self.seq,
                    )
                } else {
                    format!("tx-{}-{}", self.seq, self.rng.r#gen::<u32>()).into_bytes()
                };
                self.log_event(seq, 5, target, &tx);
                self.feed(target, Input::SubmitTransaction(tx));
                self.schedule_at(self.now + self.sc.tx_interval, Event::SubmitTx);
            }
        }
    }

    /// Show every running honest node to the maintenance hook.
    fn maintain(&self, hook: &crate::sim::Maintenance) {
        for (i, n) in self.nodes.iter().enumerate() {
            let (true, Some(m)) = (n.honest, n.machine()) else {
                continue;
            };
            (hook.0)(&crate::sim::NodeSample {
                node: i,
                now: self.now,
                committed: m.committed_height(),
                executed: n.executed,
                machine: m.footprint(),
                store: &n.store,
            });
        }
    }

    fn start_node(&mut self, i: usize) {
        let Some(n) = self.nodes.get(i) else {
            return;
        };
        let mut cfg = self.cfg.clone();
        if n.honest {
            cfg.faults = self.sc.faults;
        } else {
            cfg.faults = SafetyFaults::default();
        }
        // The production restore path: everything comes back from the
        // node's store, as after a real restart.
        let replica = match Replica::open(
            cfg,
            n.validator,
            Arc::clone(&self.node_schedule),
            n.store.clone(),
        ) {
            Ok(r) => r,
            Err(_) => {
                self.checker.push(Violation::RestoreFailed { node: i });
                return;
            }
        };
        let replica = match &self.workload {
            Some(w) => {
                let app =
                    TransferApplication::new(self.env, *w.config(), self.proposer_accounts.clone())
                        .with_monetary(self.monetary());
                let app: Box<dyn Application<MemoryBackend>> =
                    if n.behavior == Some(Behavior::DivergentState) {
                        Box::new(Divergent(app))
                    } else {
                        Box::new(app)
                    };
                replica.with_application(app)
            }
            None => replica,
        };
        // A restarted validator remembers every vote and timeout it sent:
        // what it signed was durable before it left.
        if self.nodes[i].honest {
            let validator = self.nodes[i].validator;
            let remembered = replica.machine().safety().last_voted_view;
            self.checker.restarted(i, validator, remembered);
        }
        self.nodes[i].replica = Some(replica);
        let now = Millis(self.now);
        let started = self.nodes[i].replica.as_mut().map(|r| r.start(now));
        match started {
            Some(Ok(actions)) => self.carry_out(i, actions, VecDeque::new()),
            Some(Err(_)) => self.replica_failed(i),
            None => {}
        }
    }

    /// The monetary engine of transfer scenarios: Active, short epochs,
    /// validators staked equally.
    fn monetary(&self) -> crate::application::MonetarySettings {
        let mut config = crate::monetary::MonetaryConfig::mainnet();
        config.blocks_per_epoch = super::SIM_BLOCKS_PER_EPOCH;
        config.mode = crate::monetary::MonetaryMode::Active;
        let pool = |tag: u8| crate::types::AccountId([tag; 32]);
        crate::application::MonetarySettings {
            config,
            pools: crate::monetary::SeigniorageRecipients {
                validators: pool(0xe1),
                treasury: pool(0xe2),
                insurance: pool(0xe3),
                community: pool(0xe4),
            },
            stakes: self.proposer_accounts.iter().map(|a| (*a, 1)).collect(),
            staked: 1_000_000,
        }
    }

    fn crash(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.replica = None;
            n.store.crash();
            n.incarnation += 1;
            n.timers.clear();
            n.crash_after_persist = false;
            n.crash_after_send = false;
        }
    }

    /// A replica stopped on an error (storage or execution): honest ones
    /// must not; the node is crashed.
    fn replica_failed(&mut self, i: usize) {
        let height = self.nodes[i].executed;
        if self.nodes[i].honest {
            self.checker
                .push(Violation::ExecutionFailed { node: i, height });
        }
        self.crash(i);
    }

    fn deliver(&mut self, to: usize, from: ValidatorId, bytes: &[u8], noncanonical: bool) {
        if self.nodes.get(to).is_none_or(|n| n.replica.is_none()) {
            return;
        }
        self.delivered += 1;
        let input = match ConsensusMsg::decode_message(bytes, &self.cfg.limits) {
            Ok(_) if noncanonical => {
                if self.nodes[to].honest {
                    self.checker
                        .report(Violation::NonCanonicalAccepted { node: to });
                }
                return;
            }
            Ok(msg) => {
                if let ConsensusMsg::Proposal(p) = &msg
                    && matches!(
                        self.nodes[to].behavior,
                        Some(Behavior::DoubleVoter | Behavior::ForkingLeader)
                    )
                {
                    self.reckless_vote(to, &p.block);
                }
                Input::Message { from, msg }
            }
            Err(error) => Input::Malformed { from, error },
        };
        self.feed(to, input);
    }

    fn reckless_vote(&mut self, i: usize, block: &Block) {
        let n = &self.nodes[i];
        if self.schedule.set(block.epoch()).get(n.validator).is_none() {
            return;
        }
        let vote = reckless_vote(block, n.validator, &n.key, self.env);
        let leader = self.leader_seen_by(Some(i), block.epoch(), block.view().next());
        self.send(i, Some(leader), ConsensusMsg::Vote(vote));
    }
}
