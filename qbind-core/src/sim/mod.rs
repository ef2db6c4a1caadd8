//! The deterministic discrete-event simulator (DESIGN "The simulator").
//!
//! It drives the same [`HotStuff`](crate::consensus::HotStuff) state
//! machines as the engine, in one thread, on simulated time, with every
//! random choice drawn from one seeded RNG: the same seed gives the same
//! event log (and the same [`Report::event_log_hash`]).
//!
//! ```
//! use qbind_core::sim::{Behavior, Scenario};
//!
//! let report = Scenario::new(4)
//!     .seed(7)
//!     .byzantine(3, Behavior::Silent)
//!     .min_commits(10)
//!     .run();
//! assert!(report.violations.is_empty(), "{}", report.summary());
//! assert!(report.min_honest_height() >= 10);
//! ```
//!
//! Checks applied to every run are in [`checks`], written without using the
//! consensus code's own predicates.

mod byzantine;
pub mod chain;
pub mod checks;
mod maintenance;
mod network;
mod runner;
mod seeds;
mod transfers;

pub use checks::Violation;
pub use maintenance::{Maintenance, NodeSample};
pub use network::LateBatches;
pub use seeds::{replay_seed, seeds};

use crate::consensus::SafetyFaults;
use crate::types::{Hash32, Height, View};

/// What a faulty simulated validator does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Sends nothing at all.
    Silent,
    /// Runs the honest protocol but corrupts the signature of everything it
    /// signs.
    InvalidSignatures,
    /// When leading, sends two different blocks for its view to two halves of
    /// the validators (and both to one of them, which can then prove it).
    EquivocatingLeader,
    /// Equivocates when leading and votes for every proposal it sees,
    /// ignoring the safety rules.
    DoubleVoter,
    /// When leading view `v`, sends the honest block only to the leader of
    /// `v + 3` and everybody else a validly signed block that forks off 1–3
    /// certified blocks below the honest choice (what the lock and the
    /// 3-chain rule exist to stop); votes for it and for every proposal it
    /// receives.
    ForkingLeader,
    /// DAG: sends its batches to all but one validator, which must fetch the
    /// data on miss once the batch is certified and committed.
    WithholdingAuthor,
    /// DAG: sends two different batches for each of its slots to two halves.
    EquivocatingAuthor,
    /// DAG: when leading, proposes certificates whose signatures do not match
    /// their batches (forged availability), validly signing the proposal.
    ForgedCertificates,
    /// Transfer scenarios: runs the honest protocol, but its state diverged
    /// — every state root it computes differs from the honest one. It must
    /// notice from the honest proposals and stop voting, and honest
    /// validators must not vote for its proposals.
    DivergentState,
}

/// A network partition: from `start` to `heal` (ms), nodes only reach nodes
/// in their own group. Nodes in no group are isolated.
#[derive(Clone, Debug)]
pub struct Partition {
    /// When it starts.
    pub start: u64,
    /// When it heals.
    pub heal: u64,
    /// Groups of node indices.
    pub groups: Vec<Vec<usize>>,
}

/// A crash of node `node` at `at`, restarting from its persisted state at
/// `restart` (never, if `None`).
#[derive(Clone, Copy, Debug)]
pub struct Crash {
    /// Node index.
    pub node: usize,
    /// When it crashes.
    pub at: u64,
    /// When it restarts.
    pub restart: Option<u64>,
    /// Crash right after the next safety-state write, before the message
    /// that depends on it leaves.
    pub after_persist: bool,
    /// Crash right after the next vote or timeout has left (what was not
    /// durable by then is lost).
    pub after_send: bool,
}

/// The members of one epoch's validator set: (node index, stake), in
/// position (validator id) order.
pub type SetMembers = Vec<(usize, u64)>;

/// A consensus-key rotation of one node (runbook §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Node index.
    pub node: usize,
    /// First epoch in which the new key signs.
    pub effective: u64,
    /// Epochs after `effective` in which the old key still verifies
    /// (planned rotations only).
    pub grace: u64,
    /// An emergency rotation: the old key is refused from `effective` on
    /// (and an [`Adversary::OldKeys`] holds it).
    pub emergency: bool,
}

/// An outside adversary injecting messages into the run (see
/// docs/simulation.md, "Adversaries"). Validators named here count as
/// faulty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adversary {
    /// Holds the key of every validator that leaves the set at some epoch
    /// and every key revoked by an emergency rotation; for each past epoch
    /// in which these keys hold a quorum, forges QCs (far-future views,
    /// views and epochs that differ from their block's), TCs, timeouts,
    /// proposals and votes with them, and re-proposes real certificates of
    /// previous epochs.
    OldKeys,
    /// Validator `node` forges QCs and TCs one stake unit short of a quorum
    /// from the honest votes and timeouts it sees and its own signature.
    Undersized {
        /// The faulty validator.
        node: usize,
    },
    /// Validator `node` sends validly signed votes, timeouts and proposals
    /// with far-future views (up to `u64::MAX`) and epoch labels far from
    /// the current one, and copies of honest messages with trailing bytes.
    Mislabelled {
        /// The faulty validator.
        node: usize,
    },
    /// Replays committed transactions to random validators (use with
    /// [`Scenario::transfers`] so that nonces matter).
    Resubmitter,
    /// Validator `node` floods: equivocating proposals for every view it
    /// leads ahead, votes with bogus epochs, replayed honest votes, DAG
    /// batches for far rounds; the bound checker watches every honest node.
    Resources {
        /// The faulty validator.
        node: usize,
    },
}

/// The liveness requirement checked after the last fault heals.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    /// Blocks every honest node must commit...
    pub commits: u64,
    /// ...among blocks proposed within this many views after the heal.
    pub within_views: u64,
}

/// A simulated run, built step by step and started with [`Scenario::run`].
#[derive(Clone, Debug)]
pub struct Scenario {
    pub(crate) validators: usize,
    pub(crate) seed: u64,
    pub(crate) latency: (u64, u64),
    pub(crate) loss: f64,
    pub(crate) loss_until: u64,
    pub(crate) duplication: f64,
    pub(crate) partitions: Vec<Partition>,
    pub(crate) late_batches: Vec<LateBatches>,
    pub(crate) crashes: Vec<Crash>,
    pub(crate) byzantine: Vec<(usize, Behavior)>,
    pub(crate) twins: Vec<usize>,
    /// Blocks per epoch and the sets of epochs 1, 2, ... as (node, stake)
    /// lists (the last repeats).
    pub(crate) epochs: Option<(u64, Vec<SetMembers>)>,
    /// Consensus-key rotations, in the order given.
    pub(crate) rotations: Vec<Rotation>,
    pub(crate) adversaries: Vec<Adversary>,
    pub(crate) mutants: Vec<crate::mutants::Mutant>,
    pub(crate) stakes: Vec<u64>,
    pub(crate) tx_interval: u64,
    pub(crate) max_block_txs: usize,
    pub(crate) base_timeout: u64,
    pub(crate) max_time: u64,
    pub(crate) min_commits: u64,
    pub(crate) liveness: Option<Liveness>,
    pub(crate) faults: SafetyFaults,
    pub(crate) dag: bool,
    pub(crate) fee_pool: Option<FeePool>,
    pub(crate) transfers: Option<Transfers>,
    /// A hook called every so many ms for each running honest node.
    pub(crate) maintenance: Option<(u64, Maintenance)>,
    /// Events a run may process before it counts as stuck.
    pub(crate) max_events: u64,
    /// Committed blocks each validator keeps in memory (`None`: the
    /// consensus default).
    pub(crate) committed_window: Option<usize>,
    pub(crate) leader_policy: crate::consensus::leader::LeaderPolicy,
    /// [`crate::consensus::ConsensusConfig::idle_proposal_delay_ms`].
    pub(crate) idle_proposal_delay: Option<u64>,
    /// See [`Scenario::coalesce_timers`].
    pub(crate) coalesce_timers: bool,
}

/// Signed VM v0 transfers as the workload (see [`Scenario::transfers`]).
#[derive(Clone, Copy, Debug)]
pub struct Transfers {
    /// Funded accounts that send to each other (at least 2).
    pub accounts: usize,
    /// Genesis balance of each.
    pub initial_balance: u128,
    /// Amounts are drawn uniformly from `1..=max_amount`.
    pub max_amount: u128,
}

impl Default for Transfers {
    fn default() -> Self {
        Transfers {
            accounts: 32,
            initial_balance: 1_000_000_000_000,
            max_amount: 1_000,
        }
    }
}

/// One executed block as seen by one node (transfer scenarios).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRecord {
    /// Height executed.
    pub height: Height,
    /// State root after it.
    pub state_root: Hash32,
    /// Transfers that happened.
    pub succeeded: u64,
    /// Included, fee paid, transfer not made (e.g. insufficient balance).
    pub failed: u64,
    /// Not included: undecodable, bad signature, wrong nonce, over the gas
    /// limit, and so on.
    pub rejected: u64,
    /// Fees paid in the block.
    pub fees: u128,
    /// The burned part of them.
    pub burned: u128,
}

/// A fee-priority pool under a flood (see [`Scenario::mempool_flood`]).
#[derive(Clone, Copy, Debug)]
pub struct FeePool {
    /// Pool capacity per node.
    pub capacity: usize,
    /// Capacity evictions allowed per interval (Enforce mode).
    pub max_evictions: u32,
    /// The interval, in ms.
    pub interval_ms: u64,
    /// Cheap transactions are submitted every this many ms...
    pub flood_every_ms: u64,
    /// ...this many at a time.
    pub flood_burst: u32,
}

/// Simulated transactions with fee fields: `"SIMTX" || sender u32 || nonce
/// u64 || max_fee_per_gas u128 || salt u64`.
pub mod simtx {
    use crate::fee_mempool::TxMeta;
    use crate::types::AccountId;

    /// Fee of the transactions the flood is made of.
    pub const LOW_FEE: u128 = 1;
    /// Fee of the regular transactions that must still commit.
    pub const HIGH_FEE: u128 = 1_000;

    /// Encode a simulated transaction.
    #[must_use]
    pub fn encode(sender: u32, nonce: u64, fee: u128, salt: u64) -> Vec<u8> {
        let mut out = b"SIMTX".to_vec();
        out.extend_from_slice(&sender.to_be_bytes());
        out.extend_from_slice(&nonce.to_be_bytes());
        out.extend_from_slice(&fee.to_be_bytes());
        out.extend_from_slice(&salt.to_be_bytes());
        out
    }

    /// Read the fee fields (the [`crate::fee_mempool::TxMetaFn`] the
    /// simulated nodes use).
    #[must_use]
    pub fn meta(bytes: &[u8]) -> Option<TxMeta> {
        let rest = bytes.strip_prefix(b"SIMTX")?;
        if rest.len() != 4 + 8 + 16 + 8 {
            return None;
        }
        let sender = u32::from_be_bytes(rest[..4].try_into().ok()?);
        let nonce = u64::from_be_bytes(rest[4..12].try_into().ok()?);
        let fee = u128::from_be_bytes(rest[12..28].try_into().ok()?);
        let mut account = [0u8; 32];
        account[..4].copy_from_slice(&sender.to_be_bytes());
        Some(TxMeta {
            sender: AccountId(account),
            nonce,
            max_fee_per_gas: fee,
            effective_fee: fee.saturating_mul(21_000),
            gas_limit: 0,
            v0_payload: false,
        })
    }

    /// The fee of a simulated transaction, if it is one.
    #[must_use]
    pub fn fee(bytes: &[u8]) -> Option<u128> {
        meta(bytes).map(|m| m.max_fee_per_gas)
    }
}

impl Scenario {
    /// `n` honest validators with equal stake, 5–15 ms links, no faults.
    #[must_use]
    pub fn new(n: usize) -> Self {
        Scenario {
            validators: n.max(1),
            seed: 0,
            latency: (5, 15),
            loss: 0.0,
            loss_until: u64::MAX,
            duplication: 0.0,
            partitions: Vec::new(),
            late_batches: Vec::new(),
            crashes: Vec::new(),
            byzantine: Vec::new(),
            twins: Vec::new(),
            epochs: None,
            rotations: Vec::new(),
            adversaries: Vec::new(),
            mutants: Vec::new(),
            stakes: vec![1; n.max(1)],
            tx_interval: 0,
            max_block_txs: 100,
            base_timeout: 200,
            max_time: 120_000,
            min_commits: 0,
            liveness: None,
            faults: SafetyFaults::default(),
            dag: false,
            fee_pool: None,
            transfers: None,
            maintenance: None,
            max_events: DEFAULT_MAX_EVENTS,
            committed_window: None,
            idle_proposal_delay: None,
            coalesce_timers: false,
            leader_policy: crate::consensus::leader::LeaderPolicy::default(),
        }
    }

    /// How every validator chooses leaders (default: the consensus default,
    /// leader reputation; docs/consensus.md §C10).
    #[must_use]
    pub fn leader_policy(mut self, policy: crate::consensus::leader::LeaderPolicy) -> Self {
        self.leader_policy = policy;
        self
    }

    /// Submit signed VM v0 transfers ([`crate::execution::Transaction`])
    /// instead of opaque bytes, every [`Scenario::transactions_every`] ms;
    /// nodes order them in a fee-priority pool, execute every committed
    /// block with the reference executor, and the checker requires equal
    /// state roots on honest nodes at every height
    /// ([`Violation::StateRootMismatch`]).
    #[must_use]
    pub fn transfers(mut self, transfers: Transfers) -> Self {
        self.transfers = Some(transfers);
        self
    }

    /// Use fee-priority pools of `capacity` (eviction limit `max_evictions`
    /// per `interval_ms`, enforced) and flood them with `burst` cheap
    /// transactions every `flood_every_ms`, while the regular transactions
    /// ([`Scenario::transactions_every`]) pay a high fee.
    #[must_use]
    pub fn mempool_flood(mut self, pool: FeePool) -> Self {
        self.fee_pool = Some(pool);
        self
    }

    /// Use the DAG availability layer for payloads (the MainNet mode) instead
    /// of the DevNet FIFO pool.
    #[must_use]
    pub fn dag(mut self) -> Self {
        self.dag = true;
        self
    }

    /// The RNG seed. `QBIND_SIM_SEED` in the environment overrides it.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// One-way link latency drawn uniformly from `[min, max]` ms (jitter
    /// reorders messages).
    #[must_use]
    pub fn latency(mut self, min: u64, max: u64) -> Self {
        self.latency = (min, max.max(min));
        self
    }

    /// Drop each message with probability `p` until time `until` (ms).
    #[must_use]
    pub fn loss(mut self, p: f64, until: u64) -> Self {
        self.loss = p;
        self.loss_until = until;
        self
    }

    /// Deliver each message twice with probability `p`.
    #[must_use]
    pub fn duplication(mut self, p: f64) -> Self {
        self.duplication = p;
        self
    }

    /// Add a partition.
    #[must_use]
    pub fn partition(mut self, start: u64, heal: u64, groups: Vec<Vec<usize>>) -> Self {
        self.partitions.push(Partition {
            start,
            heal,
            groups,
        });
        self
    }

    /// Make batch traffic on one link late or lost until `link.until` (both
    /// nodes stay honest): batches that `link.from` authors and its answers
    /// to batch fetches (with `link.certificates`, its batch certificates
    /// too) reach `link.to` only after the added delay, or never, so the
    /// receiver gets the data from the certificate's other signers. A link
    /// that recovers counts as a fault that heals.
    #[must_use]
    pub fn late_batches(mut self, link: LateBatches) -> Self {
        self.late_batches.push(link);
        self
    }

    /// Crash `node` at `at` and restart it at `restart`.
    #[must_use]
    pub fn crash(mut self, node: usize, at: u64, restart: Option<u64>) -> Self {
        self.crashes.push(Crash {
            node,
            at,
            restart,
            after_persist: false,
            after_send: false,
        });
        self
    }

    /// From `at` on, crash `node` right after its next safety-state write,
    /// before the vote or timeout it was about to send; restart at `restart`.
    #[must_use]
    pub fn crash_after_persist(mut self, node: usize, at: u64, restart: u64) -> Self {
        self.crashes.push(Crash {
            node,
            at,
            restart: Some(restart),
            after_persist: true,
            after_send: false,
        });
        self
    }

    /// From `at` on, crash `node` right after its next vote or timeout has
    /// left; restart at `restart`. A restarted validator must remember
    /// every vote and timeout it sent ([`Violation::ForgotVote`]).
    #[must_use]
    pub fn crash_after_send(mut self, node: usize, at: u64, restart: u64) -> Self {
        self.crashes.push(Crash {
            node,
            at,
            restart: Some(restart),
            after_persist: false,
            after_send: true,
        });
        self
    }

    /// Add an outside adversary.
    #[must_use]
    pub fn adversary(mut self, adversary: Adversary) -> Self {
        self.adversaries.push(adversary);
        self
    }

    /// Switch on a deliberate bug for this run (mutation tests only; see
    /// [`crate::mutants`]).
    #[must_use]
    pub fn mutant(mut self, mutant: crate::mutants::Mutant) -> Self {
        self.mutants.push(mutant);
        self
    }

    /// Make validator `node` faulty.
    #[must_use]
    pub fn byzantine(mut self, node: usize, behavior: Behavior) -> Self {
        self.byzantine.push((node, behavior));
        self
    }

    /// Run a second honest instance of validator `node` with the same key
    /// (node index `n + k` for the k-th twin). The pair counts as faulty.
    #[must_use]
    pub fn twin(mut self, node: usize) -> Self {
        self.twins.push(node);
        self
    }

    /// Stakes of the initial validators.
    #[must_use]
    pub fn stakes(mut self, stakes: Vec<u64>) -> Self {
        self.validators = stakes.len().max(1);
        self.stakes = stakes;
        self
    }

    /// Change the validator set after `epoch_length` blocks to validators
    /// with `stakes` (new validators get new keys and node indices).
    /// Shorthand for [`Scenario::epochs`] with one later set.
    #[must_use]
    pub fn epoch_change(self, epoch_length: u64, stakes: Vec<u64>) -> Self {
        let set = stakes.into_iter().enumerate().collect();
        self.epochs(epoch_length, vec![set])
    }

    /// A schedule of validator sets: every epoch lasts `epoch_length`
    /// blocks; epoch 0 has the initial validators, epoch `k >= 1` the set
    /// `sets[k - 1]` (the last repeats), given as (node, stake) pairs.
    ///
    /// Validator ids are positions in a set, so a node keeps its position
    /// for life: the `i`-th pair of a set is validator `i`. Any validator
    /// may leave (its position is then taken by a joining node, which gets a
    /// new key, or, for the last positions, the set shrinks), join, or
    /// change its stake at any epoch. A node named at two positions is an
    /// invalid scenario.
    #[must_use]
    pub fn epochs(mut self, epoch_length: u64, sets: Vec<Vec<(usize, u64)>>) -> Self {
        self.epochs = Some((epoch_length, sets));
        self
    }

    /// Node `node` loses its consensus key and rotates it in an emergency:
    /// from `epoch` on only the new key verifies (runbook §6); the old one
    /// is what an [`Adversary::OldKeys`] holds. Needs epochs.
    #[must_use]
    pub fn emergency_rotation(mut self, node: usize, epoch: u64) -> Self {
        self.rotations.push(Rotation {
            node,
            effective: epoch,
            grace: 0,
            emergency: true,
        });
        self
    }

    /// Node `node` rotates its consensus key (runbook §6.2): a signed
    /// rotation event with `effective_epoch` and `grace_epochs` is in every
    /// node's key registry from the start, and the node signs with its new
    /// key once it has entered `effective_epoch`. Needs epochs
    /// ([`Scenario::epoch_change`]).
    #[must_use]
    pub fn key_rotation(mut self, node: usize, effective_epoch: u64, grace_epochs: u64) -> Self {
        self.rotations.push(Rotation {
            node,
            effective: effective_epoch,
            grace: grace_epochs,
            emergency: false,
        });
        self
    }

    /// Submit a transaction to a random node every `ms` (0: none).
    #[must_use]
    pub fn transactions_every(mut self, ms: u64) -> Self {
        self.tx_interval = ms;
        self
    }

    /// Base view timeout in ms.
    #[must_use]
    pub fn base_timeout(mut self, ms: u64) -> Self {
        self.base_timeout = ms;
        self
    }

    /// Stop at this simulated time at the latest.
    #[must_use]
    pub fn max_time(mut self, ms: u64) -> Self {
        self.max_time = ms;
        self
    }

    /// Stop once every honest node has committed this many blocks (and any
    /// liveness requirement is met).
    #[must_use]
    pub fn min_commits(mut self, blocks: u64) -> Self {
        self.min_commits = blocks;
        self
    }

    /// Require liveness after the last fault heals.
    #[must_use]
    pub fn liveness(mut self, commits: u64, within_views: u64) -> Self {
        self.liveness = Some(Liveness {
            commits,
            within_views,
        });
        self
    }

    /// Break the honest nodes' safety rules (checker tests only).
    #[must_use]
    pub fn with_safety_faults(mut self, faults: SafetyFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Call `hook` every `every_ms` simulated ms for each running honest
    /// node, with its memory footprint and its store (long runs: check
    /// bounds, run a production pruner on the store).
    #[must_use]
    pub fn maintenance(mut self, every_ms: u64, hook: Maintenance) -> Self {
        self.maintenance = Some((every_ms.max(1), hook));
        self
    }

    /// Allow this many events before the run counts as stuck
    /// ([`Violation::EventBudget`]; default [`DEFAULT_MAX_EVENTS`]): long
    /// runs need more.
    #[must_use]
    pub fn max_events(mut self, events: u64) -> Self {
        self.max_events = events;
        self
    }

    /// Keep this many committed blocks in each validator's memory
    /// ([`crate::consensus::ConsensusConfig::committed_window`]) instead of
    /// the default: short long-runs reach a full window sooner.
    #[must_use]
    pub fn committed_window(mut self, blocks: usize) -> Self {
        self.committed_window = Some(blocks.max(1));
        self
    }

    /// Idle leaders wait `ms` before an empty proposal
    /// ([`crate::consensus::ConsensusConfig::idle_proposal_delay_ms`], as
    /// `qbind-node` runs); default: propose at once.
    #[must_use]
    pub fn idle_proposal_delay(mut self, ms: u64) -> Self {
        self.idle_proposal_delay = Some(ms);
        self
    }

    /// Wake a node once per instant its timers name, as the engine's timer
    /// set does, not once per timer set (the default): a node re-arming
    /// several timers per tick then stays at a few ticks per instant.
    #[must_use]
    pub fn coalesce_timers(mut self) -> Self {
        self.coalesce_timers = true;
        self
    }

    /// Run the scenario to completion.
    #[must_use]
    pub fn run(self) -> Report {
        match runner::Runner::new(self) {
            Ok(runner) => runner.run(),
            Err(report) => *report,
        }
    }
}

/// One committed block as seen by one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRecord {
    /// Simulated time of the commit.
    pub at: u64,
    /// Height.
    pub height: Height,
    /// View the block was proposed in.
    pub view: View,
    /// Epoch of the block.
    pub epoch: crate::types::Epoch,
    /// Who proposed it.
    pub proposer: crate::types::ValidatorId,
    /// Block id.
    pub id: Hash32,
    /// Transactions in it.
    pub txs: usize,
    /// Time from its proposal to this commit, in ms.
    pub latency: u64,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed used.
    pub seed: u64,
    /// SHA3-256 over every event processed, in order.
    pub event_log_hash: Hash32,
    /// Commits per node index.
    pub commits: Vec<Vec<CommitRecord>>,
    /// Which node indices count as honest.
    pub honest: Vec<bool>,
    /// Final view per node (0 if crashed at the end).
    pub views: Vec<u64>,
    /// Safety and liveness violations found.
    pub violations: Vec<Violation>,
    /// Simulated time at the end.
    pub end_time: u64,
    /// Events processed.
    pub events: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Equivocation evidence produced by honest nodes.
    pub evidence: u64,
    /// Inputs rejected by honest nodes, by reason.
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
    /// Transactions delivered for execution, per node.
    pub executed_txs: Vec<u64>,
    /// High-fee transactions submitted (mempool-flood scenarios).
    pub high_fee_submitted: u64,
    /// High-fee transactions delivered for execution, per node.
    pub high_fee_executed: Vec<u64>,
    /// Fee-pool counters per node (`None` with FIFO pools or when crashed).
    pub mempool_metrics: Vec<Option<crate::fee_mempool::FeeMempoolMetrics>>,
    /// DAG counters per node (`None` if crashed at the end).
    pub dag_metrics: Vec<Option<crate::dag::DagMetrics>>,
    /// Final consensus metrics per node (`None` if crashed at the end).
    pub metrics: Vec<Option<crate::consensus::ConsensusMetrics>>,
    /// Executed blocks per node (transfer scenarios; empty otherwise).
    pub executions: Vec<Vec<ExecRecord>>,
    /// Total balance plus burned over all accounts of node 0's ledger and
    /// the genesis supply plus issuance, at the end (transfer scenarios).
    pub supply_check: Option<(u128, u128)>,
    /// Monetary epochs each node's application closed (transfer scenarios
    /// run the monetary engine in Active mode, one epoch every
    /// [`SIM_BLOCKS_PER_EPOCH`] blocks).
    pub epochs_closed: Vec<u64>,
}

/// Events one run may process by default: a run that needs more is stuck
/// (for example a node re-arming a timer at the same instant without end).
pub const DEFAULT_MAX_EVENTS: u64 = 400_000;

/// Monetary epoch length in the simulator's transfer scenarios: short, so
/// that runs of a few dozen blocks close several epochs (and crash in the
/// middle of them).
pub const SIM_BLOCKS_PER_EPOCH: u64 = 8;

impl Report {
    /// Lowest committed height over honest nodes.
    #[must_use]
    pub fn min_honest_height(&self) -> u64 {
        self.commits
            .iter()
            .zip(&self.honest)
            .filter(|(_, h)| **h)
            .map(|(c, _)| c.last().map_or(0, |r| r.height.0))
            .min()
            .unwrap_or(0)
    }

    /// Mean commit latency over honest nodes' commits, in ms.
    #[must_use]
    pub fn mean_latency(&self) -> u64 {
        let (sum, n) = self
            .commits
            .iter()
            .zip(&self.honest)
            .filter(|(_, h)| **h)
            .flat_map(|(c, _)| c.iter())
            .fold((0u64, 0u64), |(s, n), r| (s + r.latency, n + 1));
        sum.checked_div(n).unwrap_or(0)
    }

    /// A one-paragraph summary with the seed, for failure messages.
    #[must_use]
    pub fn summary(&self) -> String {
        format!(
            "seed {} (replay with QBIND_SIM_SEED={}): {} violations {:?}; min honest height {}; \
             views {:?}; end {} ms; {} events; rejected {:?}",
            self.seed,
            self.seed,
            self.violations.len(),
            self.violations.iter().take(3).collect::<Vec<_>>(),
            self.min_honest_height(),
            self.views,
            self.end_time,
            self.events,
            self.rejected,
        )
    }
}
