//! The event loop of the simulator.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha3::{Digest, Sha3_256};

use super::byzantine::{
    corrupt_message, equivocate, equivocate_batch, forge_certificates, forged_timeout, fork,
    reckless_vote,
};
use super::checks::{Checker, Violation};
use super::network::connected;
use super::{Behavior, CommitRecord, Report, Scenario};
use crate::application::{Application, TransferApplication};
use crate::codec::{Decode, Encode};
use crate::consensus::{Block, ConsensusConfig, ConsensusMsg, HotStuff, Input, SafetyFaults};
use crate::crypto::KeyPair;
use crate::execution::{Account, AccountReader, BackendAccounts};
use crate::replica::{Action, Event as ReplicaEvent, Replica};
use crate::signing::sign_domain;
use crate::traits::{MemoryBackend, Namespace, StateBackend};
use crate::types::{Hash32, Height, Millis, NetworkEnvironment, ValidatorId, View};
use crate::validator::{EpochSchedule, ValidatorSet};

enum Event {
    Deliver {
        to: usize,
        from: ValidatorId,
        bytes: Rc<Vec<u8>>,
    },
    Tick {
        node: usize,
        incarnation: u64,
    },
    Crash {
        node: usize,
        after_persist: bool,
    },
    Restart {
        node: usize,
    },
    SubmitTx,
    Flood,
}

struct SimNode {
    validator: ValidatorId,
    key: KeyPair,
    /// A rotated consensus key and the epoch from which the node uses it.
    rotated_key: Option<(crate::types::Epoch, KeyPair)>,
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
    incarnation: u64,
    commits: Vec<CommitRecord>,
    executions: Vec<super::ExecRecord>,
    epochs_closed: u64,
}

pub(crate) struct Runner {
    sc: Scenario,
    env: NetworkEnvironment,
    cfg: ConsensusConfig,
    schedule: Arc<EpochSchedule>,
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
    /// High-fee transactions submitted (mempool-flood scenarios).
    high_fee_submitted: u64,
    /// Committed DAG blocks whose certificates were already checked.
    checked_blocks: std::collections::HashSet<Hash32>,
    /// The conflicting proposal a faulty leader made per view (re-sent
    /// unchanged when its honest proposal is re-broadcast).
    alternates: HashMap<(usize, View), crate::consensus::Proposal>,
    /// The signed-transfer generator (transfer scenarios).
    workload: Option<super::transfers::Workload>,
    /// Fee account of each validator, by validator index.
    proposer_accounts: Vec<crate::types::AccountId>,
}

impl SimNode {
    fn new(validator: usize, key: KeyPair, behavior: Option<Behavior>, honest: bool) -> Self {
        SimNode {
            validator: ValidatorId(validator as u32),
            key,
            rotated_key: None,
            behavior,
            honest,
            replica: None,
            store: MemoryBackend::with_crash_semantics(),
            executed: Height(0),
            executed_txs: 0,
            high_fee_executed: 0,
            crash_after_persist: false,
            incarnation: 0,
            commits: Vec::new(),
            executions: Vec::new(),
            epochs_closed: 0,
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
        supply_check: None,
    })
}

fn make_set(keys: &[KeyPair], stakes: &[u64]) -> Option<ValidatorSet> {
    ValidatorSet::new(
        stakes
            .iter()
            .enumerate()
            .filter_map(|(i, s)| keys.get(i).map(|k| (k.public_key().clone(), *s)))
            .collect(),
    )
    .ok()
}

impl Runner {
    /// A runner for `sc`, or at once a report with an `InvalidScenario`
    /// violation if the scenario cannot be built (e.g. a zero stake).
    pub(crate) fn new(mut sc: Scenario) -> Result<Self, Box<Report>> {
        if let Some(seed) = std::env::var("QBIND_SIM_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            sc.seed = seed;
        }
        let env = NetworkEnvironment::Devnet;
        let n0 = sc.stakes.len();
        let n_all = sc
            .epoch_change
            .as_ref()
            .map_or(n0, |(_, later)| n0.max(later.len()));
        let keys: Vec<KeyPair> = (0..n_all).map(validator_key).collect();
        let Some(first) = make_set(&keys, &sc.stakes) else {
            return Err(invalid(&sc, "initial stakes do not form a validator set"));
        };
        let schedule = match &sc.epoch_change {
            Some((len, later)) => match make_set(&keys, later) {
                Some(set) => EpochSchedule::with_epochs(*len, first, vec![set]),
                None => return Err(invalid(&sc, "epoch stakes do not form a validator set")),
            },
            None => EpochSchedule::fixed(first),
        };
        let mut rotated_key = None;
        let schedule = match sc.key_rotation {
            None => schedule,
            Some((node, effective, grace)) => {
                let Some(old) = keys.get(node) else {
                    return Err(invalid(&sc, "key rotation of an unknown node"));
                };
                if sc.epoch_change.is_none() || effective == 0 {
                    return Err(invalid(
                        &sc,
                        "a key rotation needs epochs and an effective epoch of at least 1",
                    ));
                }
                let new = KeyPair::from_seed(&[0xa5; 32]);
                let mut registry = crate::key_rotation::ValidatorKeyRegistry::new();
                for (i, k) in keys.iter().enumerate() {
                    registry.register(
                        ValidatorId(i as u32),
                        crate::key_rotation::KeyRole::Consensus,
                        k.public_key().as_bytes().to_vec(),
                    );
                }
                let event = crate::key_rotation::KeyRotationEvent {
                    validator_id: ValidatorId(node as u32),
                    key_kind: crate::key_rotation::KeyRole::Consensus,
                    old_key: old.public_key().as_bytes().to_vec(),
                    new_key: new.public_key().as_bytes().to_vec(),
                    effective_epoch: crate::types::Epoch(effective),
                    grace_epochs: grace,
                    emergency: false,
                };
                let applied = event
                    .sign(env, old)
                    .map_err(|e| e.to_string())
                    .and_then(|signed| {
                        registry
                            .apply(&signed, env, crate::types::Epoch(effective - 1))
                            .map_err(|e| e.to_string())
                    });
                if applied.is_err() {
                    return Err(invalid(&sc, "the key rotation event does not apply"));
                }
                rotated_key = Some((node, crate::types::Epoch(effective), new));
                match schedule.with_key_registry(registry) {
                    Ok(s) => s,
                    Err(_) => return Err(invalid(&sc, "key registry")),
                }
            }
        };
        let mut cfg = ConsensusConfig::new(env);
        if sc.dag {
            cfg.payload_mode = crate::dag::PayloadMode::Dag;
            // Fewer, larger batches: each costs n signatures and a quorum of
            // verifications, which dominate simulated CPU.
            cfg.dag.batch_interval_ms = 50;
            cfg.dag.fetch_retry_ms = sc.base_timeout.max(50);
        }
        let workload = match sc.transfers {
            Some(_) if sc.fee_pool.is_some() => {
                return Err(invalid(
                    &sc,
                    "transfers and mempool_flood cannot be combined",
                ));
            }
            Some(t) => match super::transfers::Workload::new(t) {
                Ok(w) => {
                    cfg.tx_meta = Some(crate::execution::tx_meta);
                    cfg.fee_mempool = crate::fee_mempool::FeeMempoolConfig {
                        allow_v0_payloads: false,
                        ..crate::fee_mempool::FeeMempoolConfig::mainnet()
                    };
                    Some(w)
                }
                Err(why) => return Err(invalid(&sc, why)),
            },
            None => None,
        };
        if let Some(f) = sc.fee_pool {
            cfg.tx_meta = Some(super::simtx::meta);
            cfg.fee_mempool = crate::fee_mempool::FeeMempoolConfig {
                capacity: f.capacity,
                max_per_sender: 16,
                eviction_mode: crate::fee_mempool::EvictionMode::Enforce,
                max_evictions_per_interval: f.max_evictions,
                eviction_interval_ms: f.interval_ms,
                replacement_bump_bps: 1_000,
                allow_v0_payloads: false,
            };
        }
        cfg.base_timeout_ms = sc.base_timeout;
        cfg.max_block_txs = sc.max_block_txs;
        cfg.sync_retry_ms = sc.base_timeout.max(50);
        let mut nodes: Vec<SimNode> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let behavior = sc.byzantine.iter().find(|(n, _)| *n == i).map(|(_, b)| *b);
                SimNode::new(
                    i,
                    key.clone(),
                    behavior,
                    behavior.is_none() && !sc.twins.contains(&i),
                )
            })
            .collect();
        if let Some((node, from, key)) = rotated_key
            && let Some(n) = nodes.get_mut(node)
        {
            n.rotated_key = Some((from, key));
        }
        for &t in &sc.twins {
            if let Some(k) = keys.get(t) {
                nodes.push(SimNode::new(t, k.clone(), None, false));
            }
        }
        if let Some(w) = &workload {
            for n in &mut nodes {
                if TransferApplication::write_genesis(&n.store, w.genesis()).is_err() {
                    return Err(invalid(&sc, "transfer genesis"));
                }
            }
        }
        let proposer_accounts = keys
            .iter()
            .map(super::transfers::proposer_account)
            .collect();
        let genesis = Block::genesis(env.chain_id()).id();
        let mut heal_time = 0;
        for p in &sc.partitions {
            heal_time = heal_time.max(p.heal);
        }
        for c in &sc.crashes {
            heal_time = heal_time.max(c.restart.unwrap_or(c.at));
        }
        if sc.loss > 0.0 && sc.loss_until != u64::MAX {
            heal_time = heal_time.max(sc.loss_until);
        }
        let checker = Checker::new(genesis, nodes.len());
        let rng = ChaCha8Rng::seed_from_u64(sc.seed);
        Ok(Runner {
            env,
            cfg,
            schedule: Arc::new(schedule),
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            nodes,
            checker,
            log: Sha3_256::new(),
            proposed_at: HashMap::new(),
            processed: 0,
            delivered: 0,
            evidence: 0,
            rejected: BTreeMap::new(),
            workload,
            proposer_accounts,
            heal_time,
            heal_view: None,
            seen_blocks: HashMap::new(),
            checked_blocks: std::collections::HashSet::new(),
            high_fee_submitted: 0,
            alternates: HashMap::new(),
            sc,
        })
    }

    fn schedule_at(&mut self, at: u64, event: Event) {
        let seq = self.seq;
        self.seq += 1;
        self.events.insert(seq, event);
        self.queue.push(Reverse((at.max(self.now), seq)));
    }

    pub(crate) fn run(mut self) -> Report {
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
                },
            );
            if let Some(r) = c.restart {
                self.schedule_at(r, Event::Restart { node: c.node });
            }
        }
        if self.sc.tx_interval > 0 {
            self.schedule_at(self.sc.tx_interval, Event::SubmitTx);
        }
        if let Some(f) = self.sc.fee_pool {
            self.schedule_at(f.flood_every_ms.max(1), Event::Flood);
        }
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > self.sc.max_time {
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
            let home = super::transfers::Workload::home(s, validators);
            nodes.get(home).and_then(|n| n.account(id)).map(|a| a.nonce)
        });
        let target = super::transfers::Workload::home(sender, validators);
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
            Event::Deliver { to, from, bytes } => {
                self.log_event(seq, 1, to, &bytes);
                self.deliver(to, from, &bytes);
            }
            Event::Tick { node, incarnation } => {
                self.log_event(seq, 2, node, &[]);
                if self
                    .nodes
                    .get(node)
                    .is_some_and(|n| n.incarnation == incarnation)
                {
                    self.feed(node, Input::Tick);
                }
            }
            Event::Crash {
                node,
                after_persist,
            } => {
                self.log_event(seq, 3, node, &[u8::from(after_persist)]);
                if after_persist {
                    if let Some(n) = self.nodes.get_mut(node) {
                        n.crash_after_persist = true;
                    }
                } else {
                    self.crash(node);
                }
            }
            Event::Restart { node } => {
                self.log_event(seq, 4, node, &[]);
                if let Some(n) = self.nodes.get_mut(node) {
                    n.crash_after_persist = false;
                }
                if self.nodes.get(node).is_some_and(|n| n.replica.is_none()) {
                    self.start_node(node);
                }
            }
            Event::Flood => {
                let len = self.nodes.len().max(1);
                let burst = self.sc.fee_pool.map_or(1, |f| f.flood_burst.max(1));
                for k in 0..burst {
                    let target = self.rng.gen_range(0..len);
                    let salt = self.seq.wrapping_mul(1_000).wrapping_add(u64::from(k));
                    let sender = 1_000_000 + (salt % 1_000_000) as u32;
                    let tx = super::simtx::encode(sender, 0, super::simtx::LOW_FEE, salt);
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
                    super::simtx::encode(self.seq as u32, 0, super::simtx::HIGH_FEE, self.seq)
                } else {
                    format!("tx-{}-{}", self.seq, self.rng.r#gen::<u32>()).into_bytes()
                };
                self.log_event(seq, 5, target, &tx);
                self.feed(target, Input::SubmitTransaction(tx));
                self.schedule_at(self.now + self.sc.tx_interval, Event::SubmitTx);
            }
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
            Arc::clone(&self.schedule),
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
            n.crash_after_persist = false;
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

    fn deliver(&mut self, to: usize, from: ValidatorId, bytes: &[u8]) {
        if self.nodes.get(to).is_none_or(|n| n.replica.is_none()) {
            return;
        }
        self.delivered += 1;
        let input = match ConsensusMsg::decode_message(bytes, &self.cfg.limits) {
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
        let leader = self.schedule.set(block.epoch()).leader(block.view().next());
        self.send(i, Some(leader), ConsensusMsg::Vote(vote));
    }

    /// Run one input through node `i`'s replica and carry out its actions.
    fn feed(&mut self, i: usize, input: Input) {
        self.carry_out(i, Vec::new(), VecDeque::from([input]));
    }

    /// Carry out `actions`, then feed `inputs` (and the signatures asked
    /// for) one by one, carrying out what each returns.
    fn carry_out(&mut self, i: usize, actions: Vec<Action>, mut inputs: VecDeque<Input>) {
        let mut actions = VecDeque::from(actions);
        loop {
            while let Some(action) = actions.pop_front() {
                if let Some(input) = self.act(i, action) {
                    inputs.push_back(input);
                }
            }
            let Some(input) = inputs.pop_front() else {
                return;
            };
            let now = Millis(self.now);
            let Some(n) = self.nodes.get_mut(i) else {
                return;
            };
            let Some(replica) = n.replica.as_mut() else {
                return;
            };
            let safety_writes = n.store.durable_writes_touching(Namespace::Safety);
            match replica.handle(now, input) {
                Ok(more) => actions.extend(more),
                Err(_) => {
                    self.replica_failed(i);
                    return;
                }
            }
            // A crash scheduled "after persist" strikes right after the
            // safety state is durable, before anything signed leaves. What
            // the replica reported as durable (commits, executions) stays
            // observed; nothing else of this input happens.
            let n = &self.nodes[i];
            if n.crash_after_persist
                && n.store.durable_writes_touching(Namespace::Safety) > safety_writes
            {
                for action in actions {
                    if let Action::Event(event) = action {
                        self.observe_event(i, event);
                    }
                }
                self.crash(i);
                return;
            }
        }
    }

    /// Carry out one action of node `i`; a signature comes back as input.
    fn act(&mut self, i: usize, action: Action) -> Option<Input> {
        match action {
            Action::Sign(job) => {
                let n = &self.nodes[i];
                let key = match (&n.rotated_key, n.machine()) {
                    (Some((from, new)), Some(m)) if m.epoch() >= *from => new,
                    _ => &n.key,
                };
                let signature = sign_domain(key, self.env, job.request.kind, &job.request.message);
                return Some(Input::Signed { job, signature });
            }
            Action::Send { to, msg } => self.send(i, Some(to), msg),
            Action::Broadcast(msg) => self.send(i, None, msg),
            Action::SetTimer(at) => {
                let incarnation = self.nodes[i].incarnation;
                self.schedule_at(
                    at.0,
                    Event::Tick {
                        node: i,
                        incarnation,
                    },
                );
            }
            Action::Event(event) => self.observe_event(i, event),
        }
        None
    }

    /// What node `i` reports: commits, deliveries, executions, evidence.
    fn observe_event(&mut self, i: usize, event: ReplicaEvent) {
        let honest = self.nodes[i].honest;
        match event {
            ReplicaEvent::Committed { block, .. } => self.record_commit(i, block),
            ReplicaEvent::Delivered { height, txs, .. } => {
                let n = &mut self.nodes[i];
                n.executed = height;
                n.executed_txs += txs.len() as u64;
                n.high_fee_executed += txs
                    .iter()
                    .filter(|t| super::simtx::fee(t) == Some(super::simtx::HIGH_FEE))
                    .count() as u64;
                if honest {
                    self.checker.execute(i, height, &txs);
                }
            }
            ReplicaEvent::Executed {
                height,
                state_root,
                report,
            } => {
                if honest {
                    self.checker.state_root(height, state_root);
                }
                self.nodes[i].executions.push(super::ExecRecord {
                    height,
                    state_root,
                    succeeded: report.succeeded,
                    failed: report.failed,
                    rejected: report.rejected,
                    fees: report.fees,
                    burned: report.burned,
                });
            }
            ReplicaEvent::EpochClosed { .. } => self.nodes[i].epochs_closed += 1,
            ReplicaEvent::Evidence(_) => {
                if honest {
                    self.evidence += 1;
                }
            }
            ReplicaEvent::Rejected { error, .. } => {
                if honest {
                    *self.rejected.entry(error.label()).or_default() += 1;
                }
            }
        }
    }

    fn record_commit(&mut self, i: usize, block: Block) {
        let proposed = self
            .proposed_at
            .get(&block.id())
            .copied()
            .unwrap_or(self.now);
        let record = CommitRecord {
            at: self.now,
            height: block.height(),
            view: block.view(),
            epoch: block.epoch(),
            proposer: block.header().proposer,
            id: block.id(),
            txs: block.payload().tx_count(),
            latency: self.now.saturating_sub(proposed),
        };
        if self.nodes[i].honest {
            self.checker
                .commit(i, block.height(), block.id(), block.parent_id());
            self.check_certified(&block);
        }
        self.nodes[i].commits.push(record);
    }

    /// Every batch a committed block orders must carry acks of a quorum of
    /// its epoch's stake — checked here with the raw crypto, not the core's
    /// verifier.
    fn check_certified(&mut self, block: &Block) {
        let crate::consensus::Payload::Batches(certs) = block.payload() else {
            return;
        };
        if !self.checked_blocks.insert(block.id()) {
            return;
        }
        for cert in certs {
            let set = self.schedule.set(cert.batch.epoch);
            let message = cert.batch.to_bytes();
            let signers: Vec<ValidatorId> = cert.signers.iter().collect();
            let signed = signers.len() == cert.signatures.len()
                && signers.iter().zip(&cert.signatures).all(|(v, sig)| {
                    set.verify_in_epoch(
                        *v,
                        cert.batch.epoch,
                        self.env,
                        crate::signing::SignKind::BatchAck,
                        &message,
                        sig,
                    )
                    .is_ok()
                });
            if !signed || !set.is_quorum(set.stake_of(&signers)) {
                self.checker.report(Violation::UncertifiedBatch {
                    height: block.height(),
                });
            }
        }
    }

    /// Send `msg` from node `i` to validator `to` (every node running it) or
    /// to everybody.
    fn send(&mut self, i: usize, to: Option<ValidatorId>, msg: ConsensusMsg) {
        let (honest, behavior, me) = {
            let n = &self.nodes[i];
            (n.honest, n.behavior, n.validator)
        };
        if honest {
            self.observe(me, &msg);
        }
        if let ConsensusMsg::Proposal(p) = &msg {
            self.proposed_at.entry(p.block.id()).or_insert(self.now);
            self.seen_blocks
                .entry(p.block.id())
                .or_insert_with(|| p.block.clone());
        }
        let msg = match behavior {
            Some(Behavior::Silent) => return,
            Some(Behavior::InvalidSignatures) => corrupt_message(&msg),
            Some(Behavior::WithholdingAuthor) if to.is_none() => {
                if matches!(msg, ConsensusMsg::Batch(_)) {
                    // Everyone but the last other node gets the data.
                    let skip = (0..self.nodes.len()).rev().find(|j| *j != i);
                    let bytes = Rc::new(msg.to_bytes());
                    for j in 0..self.nodes.len() {
                        if j != i && Some(j) != skip {
                            self.transmit(i, j, me, Rc::clone(&bytes));
                        }
                    }
                    return;
                }
                msg
            }
            Some(Behavior::EquivocatingAuthor) if to.is_none() => {
                if let ConsensusMsg::Batch(sb) = &msg {
                    let alt = equivocate_batch(sb, &self.nodes[i].key, self.env);
                    let a = Rc::new(msg.to_bytes());
                    let b = Rc::new(ConsensusMsg::Batch(alt).to_bytes());
                    for j in 0..self.nodes.len() {
                        if j != i {
                            let bytes = if j % 2 == 0 { &a } else { &b };
                            self.transmit(i, j, me, Rc::clone(bytes));
                        }
                    }
                    // One node sees both and can prove it.
                    if let Some(j) = (0..self.nodes.len()).find(|j| *j != i && j % 2 == 0) {
                        self.transmit(i, j, me, Rc::clone(&b));
                    }
                    return;
                }
                msg
            }
            Some(Behavior::ForgedCertificates) if to.is_none() => match &msg {
                ConsensusMsg::Proposal(p) => {
                    match forge_certificates(p, &self.nodes[i].key, self.env) {
                        Some(forged) => ConsensusMsg::Proposal(forged),
                        None => msg,
                    }
                }
                _ => msg,
            },
            Some(
                b
                @ (Behavior::EquivocatingLeader | Behavior::DoubleVoter | Behavior::ForkingLeader),
            ) if to.is_none() => {
                if let ConsensusMsg::Proposal(p) = &msg {
                    let key = self.nodes[i].key.clone();
                    let slot = (i, p.block.view());
                    let alt = match self.alternates.get(&slot) {
                        Some(alt) => Some(alt.clone()),
                        None if b == Behavior::ForkingLeader => {
                            let depth = self.rng.gen_range(1..=3);
                            fork(p, depth, &self.seen_blocks, &key, self.env)
                        }
                        None => Some(equivocate(p, &key, self.env, self.seq)),
                    };
                    let first_time = !self.alternates.contains_key(&slot);
                    if let Some(alt) = &alt {
                        self.alternates.insert(slot, alt.clone());
                    }
                    if first_time && b == Behavior::ForkingLeader && alt.is_some() {
                        self.hide_previous_qc(i, me, p);
                    }
                    if let Some(alt) = alt {
                        self.split_proposal(i, me, b, &msg, alt);
                        return;
                    }
                }
                msg
            }
            _ => msg,
        };
        let bytes = Rc::new(msg.to_bytes());
        for j in 0..self.nodes.len() {
            if j != i && to.is_none_or(|v| self.nodes[j].validator == v) {
                self.transmit(i, j, me, Rc::clone(&bytes));
            }
        }
    }

    /// A forking leader keeps the fork's recipients from learning the QC of
    /// the previous view (which only its honest block carries): it lets them
    /// time that view out with a forged timeout of its own, so they enter its
    /// view by a timeout certificate, still holding older locks.
    fn hide_previous_qc(&mut self, i: usize, me: ValidatorId, p: &crate::consensus::Proposal) {
        let Some(parent) = self.seen_blocks.get(&p.block.parent_id()) else {
            return;
        };
        let view = p.block.view();
        let older = parent.justify().clone();
        if older.view().next() >= view {
            return;
        }
        let key = self.nodes[i].key.clone();
        let t = forged_timeout(View(view.0 - 1), &older, me, &key, self.env);
        let bytes = Rc::new(ConsensusMsg::Timeout(t).to_bytes());
        for j in 0..self.nodes.len() {
            if j != i {
                self.transmit(i, j, me, Rc::clone(&bytes));
            }
        }
    }

    /// Send `msg` to even-indexed nodes and the conflicting `alt` to odd ones
    /// (an equivocating leader also lets the first recipient see both).
    fn split_proposal(
        &mut self,
        i: usize,
        me: ValidatorId,
        behavior: Behavior,
        msg: &ConsensusMsg,
        alt: crate::consensus::Proposal,
    ) {
        self.proposed_at.entry(alt.block.id()).or_insert(self.now);
        self.seen_blocks
            .entry(alt.block.id())
            .or_insert_with(|| alt.block.clone());
        if behavior != Behavior::EquivocatingLeader {
            self.reckless_vote(i, &alt.block);
        }
        // A forking leader shows the honest block only to the leader of view
        // v + 3 (which commits from it, and whose timeouts later carry the
        // fork's QC) and the fork to everyone else; the others split by parity.
        let honest_only = (behavior == Behavior::ForkingLeader).then(|| {
            let v = alt.block.view();
            self.schedule.set(alt.block.epoch()).leader(View(v.0 + 3))
        });
        let a = Rc::new(msg.to_bytes());
        let b = Rc::new(ConsensusMsg::Proposal(alt).to_bytes());
        let mut first = true;
        for j in 0..self.nodes.len() {
            if j == i {
                continue;
            }
            let gets_honest = match honest_only {
                Some(v) => self.nodes[j].validator == v,
                None => j % 2 == 0,
            };
            let bytes = if gets_honest { &a } else { &b };
            if gets_honest && honest_only.is_some() {
                // Late enough that the others time out the previous view first.
                let extra = self.sc.base_timeout / 2;
                self.transmit_after(i, j, me, Rc::clone(bytes), extra);
            } else {
                self.transmit(i, j, me, Rc::clone(bytes));
            }
            if first && behavior == Behavior::EquivocatingLeader {
                let other = if gets_honest { &b } else { &a };
                self.transmit(i, j, me, Rc::clone(other));
            }
            first = false;
        }
    }

    /// What honest validators sign and send, for the double-signing checks.
    fn observe(&mut self, me: ValidatorId, msg: &ConsensusMsg) {
        match msg {
            ConsensusMsg::Vote(v) if v.voter == me => {
                self.checker
                    .vote(me, v.data.epoch, v.data.view, v.data.block_id);
            }
            ConsensusMsg::Timeout(t) if t.sender == me => {
                let qc = Hash32::digest(&t.high_qc.to_bytes());
                self.checker
                    .timeout(me, t.data.epoch, t.data.view, t.data.high_qc_view, qc);
            }
            ConsensusMsg::Proposal(p) if p.block.header().proposer == me => {
                self.checker
                    .proposal(me, p.block.epoch(), p.block.view(), p.block.id());
            }
            ConsensusMsg::Batch(sb) if sb.batch.author == me => {
                let b = &sb.batch;
                self.checker.batch(me, b.epoch, b.round, b.digest());
            }
            _ => {}
        }
    }

    fn transmit(&mut self, from: usize, to: usize, from_v: ValidatorId, bytes: Rc<Vec<u8>>) {
        self.transmit_after(from, to, from_v, bytes, 0);
    }

    /// Like `transmit`, with `extra` ms of added delay.
    fn transmit_after(
        &mut self,
        from: usize,
        to: usize,
        from_v: ValidatorId,
        bytes: Rc<Vec<u8>>,
        extra: u64,
    ) {
        if !connected(&self.sc.partitions, self.now, from, to) {
            return;
        }
        if self.sc.loss > 0.0 && self.now < self.sc.loss_until && self.rng.gen_bool(self.sc.loss) {
            return;
        }
        let (lo, hi) = self.sc.latency;
        let copies = if self.sc.duplication > 0.0 && self.rng.gen_bool(self.sc.duplication) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.gen_range(lo..=hi) + extra;
            self.schedule_at(
                self.now + delay,
                Event::Deliver {
                    to,
                    from: from_v,
                    bytes: Rc::clone(&bytes),
                },
            );
        }
    }
}

/// Total balance plus burned, and minted, over the accounts in `store`.
fn supply(store: &MemoryBackend) -> Option<(u128, u128)> {
    let summary = BackendAccounts::new(store).summary().ok()?;
    let mut held = summary.burned;
    for (_, bytes) in store
        .scan_prefix(Namespace::Accounts, &[], usize::MAX)
        .ok()?
    {
        held = held.checked_add(Account::from_bytes(&bytes).ok()?.balance)?;
    }
    Some((held, summary.minted))
}

/// A node whose state diverged: it reports (and proposes) a wrong root.
struct Divergent(TransferApplication);

impl Application<MemoryBackend> for Divergent {
    fn execute(
        &mut self,
        store: &MemoryBackend,
        block: &crate::application::CommittedBlock<'_>,
    ) -> Result<crate::application::Applied, crate::application::ApplicationError> {
        let mut applied = self.0.execute(store, block)?;
        applied.state_root.0[0] ^= 1;
        Ok(applied)
    }

    fn state_root(
        &self,
        store: &MemoryBackend,
    ) -> Result<Hash32, crate::application::ApplicationError> {
        let mut root = Application::<MemoryBackend>::state_root(&self.0, store)?;
        root.0[0] ^= 1;
        Ok(root)
    }
}
