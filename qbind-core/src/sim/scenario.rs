//! The [`Scenario`] builder: a simulated run's validators, workload, faults
//! and checks, as docs/simulation.md "Writing a scenario" and "Faults" list
//! them.

use super::network::LateBatches;
use super::{
    Adversary, Behavior, Crash, DEFAULT_MAX_EVENTS, FeePool, Liveness, Maintenance, Partition,
    Report, Rotation, SetMembers, Transfers, runner,
};
use crate::consensus::SafetyFaults;

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
    /// On-chain consensus-key rotations: the rotation and when its system
    /// transaction is submitted (ms).
    pub(crate) on_chain_rotations: Vec<(Rotation, u64)>,
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
    /// One wake-up per instant a node's timers name, as the engine's timer
    /// set gives (default); `false` with [`Scenario::timer_per_request`].
    pub(crate) coalesce_timers: bool,
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
            on_chain_rotations: Vec::new(),
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
            coalesce_timers: true,
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
    /// ([`Violation::StateRootMismatch`](super::Violation::StateRootMismatch)).
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
    /// every vote and timeout it sent ([`Violation::ForgotVote`](super::Violation::ForgotVote)).
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

    /// Node `node` rotates its consensus key on chain (docs/key-rotation.md):
    /// at `at_ms` it submits, to its own pool, the system transaction of a
    /// rotation event signed with its current key (`effective_epoch`,
    /// `grace_epochs`, `emergency`); every replica applies it when it
    /// executes the block, and the node signs with its new key once it has
    /// entered `effective_epoch`. Nothing is in any registry at the start.
    /// Needs epochs ([`Scenario::epoch_change`]); the report counts each
    /// node's applied and refused rotations ([`crate::sim::Report::key_rotations`]).
    #[must_use]
    pub fn on_chain_key_rotation(
        mut self,
        node: usize,
        at_ms: u64,
        effective_epoch: u64,
        grace_epochs: u64,
        emergency: bool,
    ) -> Self {
        self.on_chain_rotations.push((
            Rotation {
                node,
                effective: effective_epoch,
                grace: grace_epochs,
                emergency,
            },
            at_ms,
        ));
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
    /// ([`Violation::EventBudget`](super::Violation::EventBudget); default
    /// [`DEFAULT_MAX_EVENTS`]): long runs need more.
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

    /// Wake a node once per timer it requests instead of once per instant
    /// its timers name. The default is what the engine does (its timers are
    /// a set of deadlines: one wake-up serves every deadline due); this is
    /// the simulator's old behaviour, which gives a node extra wake-ups when
    /// two of its timers name the same instant (docs/simulation.md
    /// "Timers").
    #[must_use]
    pub fn timer_per_request(mut self) -> Self {
        self.coalesce_timers = false;
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
