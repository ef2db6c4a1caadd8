//! What one validator's state machine holds in memory, counted per
//! structure: the simulator's bound checks and long runs read it, and an
//! integrator can export it as gauges.

use crate::consensus::machine::HotStuff;
use crate::consensus::payload::Payloads;

/// Entries held by a [`HotStuff`] machine, per structure. Every field is
/// bounded independently of how long the validator runs (docs/security.md
/// lists the bounds); a long run checks that none of them grows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineFootprint {
    /// Uncommitted blocks ([`HotStuff::pending_blocks`]).
    pub pending_blocks: usize,
    /// Committed blocks kept in memory for catch-up requests (the
    /// committed window).
    pub committed_blocks: usize,
    /// About how many bytes those committed blocks hold (payloads and
    /// certificates; `Block::held_bytes`), bounded by
    /// [`crate::consensus::ConsensusConfig::committed_window_bytes`] once
    /// the window holds more than [`crate::consensus::MIN_COMMITTED_WINDOW`]
    /// blocks.
    pub committed_bytes: usize,
    /// Committed blocks leader selection remembers (their proposer and QC
    /// signers: [`crate::consensus::leader::LeaderPolicy::history_blocks`]).
    pub leader_history: usize,
    /// Orphan blocks waiting for an ancestor.
    pub orphans: usize,
    /// Vote, timeout and proposal entries of other validators
    /// ([`HotStuff::collector_entries`]).
    pub collector_entries: usize,
    /// Block fetches and proposals waiting for them.
    pub block_sync: usize,
    /// Range-sync requests, retries, fetched ranges, dropped peers and
    /// catch-up claims (one per member).
    pub range_sync: usize,
    /// Executed state roots remembered.
    pub executed_roots: usize,
    /// Transactions in the pool.
    pub pool: usize,
    /// Committed blocks waiting to be delivered for execution (FIFO mode;
    /// the DAG counts its own in [`crate::dag::Footprint::to_deliver`]).
    pub to_deliver: usize,
    /// The DAG layer's structures (`None` in FIFO mode).
    pub dag: Option<crate::dag::Footprint>,
}

impl HotStuff {
    /// What this machine holds in memory, per structure.
    #[must_use]
    pub fn footprint(&self) -> MachineFootprint {
        let (to_deliver, dag) = match &self.payloads {
            Payloads::Fifo { to_deliver, .. } => (to_deliver.len(), None),
            Payloads::Dag(a) => (0, Some(a.footprint())),
        };
        MachineFootprint {
            pending_blocks: self.tree.pending_len(),
            committed_blocks: self.tree.committed_len(),
            committed_bytes: self.tree.committed_bytes(),
            leader_history: self.leaders.history_len(),
            orphans: self.tree.orphan_len(),
            collector_entries: self.collector_entries(),
            block_sync: self.sync.entries(),
            range_sync: self.range.entries(),
            executed_roots: self.executed_roots.len(),
            pool: self.mempool_len(),
            to_deliver,
            dag,
        }
    }
}
