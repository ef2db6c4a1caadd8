//! Counters kept by the consensus state machine. The reference node exports
//! them to Prometheus under the runbook's names (`qbind_consensus_*`); the
//! simulator reads them directly.

use std::collections::BTreeMap;

/// Consensus counters and gauges of one validator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsensusMetrics {
    /// `qbind_consensus_current_view`.
    pub current_view: u64,
    /// `qbind_consensus_highest_seen_view`.
    pub highest_seen_view: u64,
    /// `qbind_consensus_committed_height`.
    pub committed_height: u64,
    /// `qbind_consensus_epoch`.
    pub epoch: u64,
    /// Proposals accepted for processing.
    pub proposals_received: u64,
    /// Proposals this validator made.
    pub proposals_made: u64,
    /// Votes accepted.
    pub votes_received: u64,
    /// Votes this validator signed.
    pub votes_sent: u64,
    /// Timeouts this validator signed (re-broadcasts included).
    pub timeouts_sent: u64,
    /// QCs formed here as leader.
    pub qcs_formed: u64,
    /// `qbind_consensus_qc_formation_latency_seconds` (runbook §7.4 names it
    /// `qbind_consensus_qc_formation_latency_ms`): for the last view
    /// measured, milliseconds from this validator placing the view's
    /// proposal while in that view (its own when it leads) to holding a QC
    /// for the view, formed here from votes or carried by a later proposal
    /// or timeout (`qc_latency.rs`).
    pub qc_formation_latency_ms: u64,
    /// Views whose QC formation latency was measured.
    pub qc_latencies_measured: u64,
    /// TCs formed here.
    pub tcs_formed: u64,
    /// Views left by a timeout certificate or timeout jump.
    pub views_timed_out: u64,
    /// Blocks committed.
    pub blocks_committed: u64,
    /// `qbind_consensus_equivocation_detected_total`.
    pub equivocations_detected: u64,
    /// Proposals refused because they report a state root that differs
    /// from ours at a height we executed (divergence: ours or theirs).
    pub state_root_mismatches: u64,
    /// `qbind_consensus_votes_waited_for_execution_total`: proposals whose
    /// vote waited until this validator executed the height they report
    /// (consensus §C3.7; stays near 0 while execution keeps up).
    pub votes_waited_for_execution: u64,
    /// Sync requests sent.
    pub sync_requests_sent: u64,
    /// Blocks from peers (proposals and sync responses) inserted into the
    /// block tree.
    pub blocks_from_peers: u64,
    /// `qbind_consensus_sync_phase`: 0 following the chain live, 1
    /// catching up by height ranges (docs/sync.md).
    pub sync_phase: u64,
    /// `qbind_consensus_sync_behind_by`: blocks between the highest height
    /// seen in verified proposals and the committed height.
    pub sync_behind_by: u64,
    /// `qbind_consensus_sync_rate`: blocks committed per second over the
    /// last full second of catching up (0 when not catching up).
    pub sync_rate: u64,
    /// `qbind_consensus_sync_source_peers`: distinct peers with a range
    /// request of this validator in flight now (gauge; 0 when not
    /// catching up).
    pub sync_source_peers: u64,
    /// Height-range requests sent.
    pub sync_range_requests_sent: u64,
    /// Height-range requests in flight now (gauge).
    pub sync_ranges_in_flight: u64,
    /// Blocks placed from height-range responses.
    pub sync_blocks_received: u64,
    /// Sync responses that answered no outstanding request (dropped).
    pub sync_unsolicited: u64,
    /// Sync responses that were forged, reordered, too long or did not fit
    /// the chain (dropped, their range asked of another peer).
    pub sync_bad_responses: u64,
    /// Times a peer was set aside for serving bad sync data.
    pub sync_peers_dropped: u64,
    /// Height-range requests served (from the store, by the embedder).
    pub sync_ranges_served: u64,
    /// Block and batch requests from non-members not served: their
    /// per-peer budget was spent (`ConsensusConfig::serve_non_member_per_sec`).
    pub sync_serve_refused: u64,
    /// Transactions the pool refused, by reason label.
    pub mempool_rejected: BTreeMap<&'static str, u64>,
    /// Rejected inputs by reason label (`ConsensusError::label`).
    pub rejected: BTreeMap<&'static str, u64>,
}

impl ConsensusMetrics {
    /// Count one rejection.
    pub(crate) fn reject(&mut self, label: &'static str) {
        *self.rejected.entry(label).or_default() += 1;
    }

    /// Total rejections.
    #[must_use]
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}
