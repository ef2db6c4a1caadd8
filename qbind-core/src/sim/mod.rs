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
mod scenario;
mod seeds;
mod transfers;

pub use checks::Violation;
pub use maintenance::{Maintenance, NodeSample};
pub use network::LateBatches;
pub use scenario::Scenario;
pub use seeds::{replay_seed, seeds};

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
            replace_rank: None,
        })
    }

    /// The fee of a simulated transaction, if it is one.
    #[must_use]
    pub fn fee(bytes: &[u8]) -> Option<u128> {
        meta(bytes).map(|m| m.max_fee_per_gas)
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
    /// On-chain key rotations each node's replica applied and refused
    /// ([`Scenario::on_chain_key_rotation`]), counted from its events
    /// (a restarted node counts again what it re-executes).
    pub key_rotations: Vec<(u64, u64)>,
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
