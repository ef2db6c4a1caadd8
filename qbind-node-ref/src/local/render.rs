//! The `/metrics` page of a local run: consensus, execution, store, P2P and
//! signer series per local validator (labelled `validator="i"`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use qbind_core::consensus::ConsensusMetrics;
use tokio::sync::watch;

use crate::metrics::PromText;

/// What the run shares with the metrics endpoint.
pub(super) struct Shared {
    /// Validator id of each local slot.
    pub(super) ids: Vec<usize>,
    pub(super) consensus: Vec<watch::Receiver<ConsensusMetrics>>,
    pub(super) net: Vec<Option<Arc<qbind_net::NetMetrics>>>,
    pub(super) store: Vec<Arc<qbind_store::metrics::StoreMetrics>>,
    pub(super) executed: Vec<AtomicU64>,
    pub(super) transfers: Vec<AtomicU64>,
    pub(super) root_mismatches: AtomicU64,
    /// With own keys: the signer (its failure and health metrics) and the
    /// key registry (rotation gauges).
    pub(super) signer: Option<(
        Arc<qbind_signer::SupervisedSigner>,
        qbind_core::key_rotation::ValidatorKeyRegistry,
    )>,
}

/// A labeled sample: `*_total` names are counters, the rest gauges.
fn sample(
    p: &mut PromText,
    name: &str,
    help: &str,
    label: (&str, &str),
    value: impl std::fmt::Display,
) {
    if name.ends_with("_total") {
        p.counter_labeled(name, help, label, value);
    } else {
        p.gauge_labeled(name, help, label, value);
    }
}

/// Reads one consensus series.
type Consensus = fn(&ConsensusMetrics) -> u64;
/// The consensus series: name, help, value.
const CONSENSUS: [(&str, &str, Consensus); 13] = [
    ("qbind_consensus_current_view", "Current view.", |m| {
        m.current_view
    }),
    (
        "qbind_consensus_highest_seen_view",
        "Highest view seen in any valid message.",
        |m| m.highest_seen_view,
    ),
    (
        "qbind_consensus_view_lag",
        "Highest seen view minus current view.",
        |m| m.highest_seen_view.saturating_sub(m.current_view),
    ),
    (
        "qbind_consensus_committed_height",
        "Highest committed height.",
        |m| m.committed_height,
    ),
    (
        "qbind_consensus_blocks_committed_total",
        "Blocks committed.",
        |m| m.blocks_committed,
    ),
    (
        "qbind_consensus_equivocation_detected_total",
        "Equivocations detected.",
        |m| m.equivocations_detected,
    ),
    (
        "qbind_consensus_views_timed_out_total",
        "Views left by a timeout.",
        |m| m.views_timed_out,
    ),
    (
        "qbind_consensus_state_root_refusals_total",
        "Proposals not voted for: their executed state root differs from ours.",
        |m| m.state_root_mismatches,
    ),
    (
        "qbind_consensus_rejected_total",
        "Consensus inputs rejected.",
        |m| m.rejected_total(),
    ),
    ("qbind_consensus_epoch", "Current epoch.", |m| m.epoch),
    (
        "qbind_consensus_sync_phase",
        "0: following the chain live; 1: catching up by height ranges.",
        |m| m.sync_phase,
    ),
    (
        "qbind_consensus_sync_behind_by",
        "Blocks between the highest height seen from peers and the committed height.",
        |m| m.sync_behind_by,
    ),
    (
        "qbind_consensus_sync_rate",
        "Blocks committed per second while catching up.",
        |m| m.sync_rate,
    ),
];
/// Reads one store series.
type Store = fn(&qbind_store::metrics::StoreMetrics) -> &AtomicU64;
/// The store series: name, help, counter or gauge.
const STORE: [(&str, &str, Store); 11] = [
    (
        "qbind_state_size_bytes",
        "On-disk size of the state store.",
        |s| &s.state_size_bytes,
    ),
    ("qbind_state_prune_runs_total", "Prune steps.", |s| {
        &s.prune_runs
    }),
    (
        "qbind_state_prune_deleted_keys_total",
        "Entries deleted by pruning.",
        |s| &s.prune_deleted_keys,
    ),
    (
        "qbind_state_prune_deleted_bytes_total",
        "Key and value bytes deleted by pruning.",
        |s| &s.prune_deleted_bytes,
    ),
    (
        "qbind_state_prune_retained_height",
        "Lowest retained height.",
        |s| &s.prune_retained_height,
    ),
    (
        "qbind_state_prune_errors_total",
        "Prune steps that failed.",
        |s| &s.prune_errors,
    ),
    ("qbind_snapshot_created_total", "Snapshots created.", |s| {
        &s.snapshots_created
    }),
    ("qbind_snapshot_failed_total", "Snapshots failed.", |s| {
        &s.snapshots_failed
    }),
    (
        "qbind_snapshot_removed_total",
        "Old snapshots removed by retention.",
        |s| &s.snapshots_removed,
    ),
    (
        "qbind_snapshot_tmp_removed_total",
        "Temporary snapshots left by a crash, removed at start-up.",
        |s| &s.snapshot_tmp_removed,
    ),
    (
        "qbind_snapshot_last_height",
        "Height of the newest snapshot.",
        |s| &s.snapshot_last_height,
    ),
];
/// The store durations, counted in milliseconds and exported in seconds
/// (Prometheus base units: `promtool check metrics` refuses `_ms`).
const STORE_SECONDS: [(&str, &str, Store); 3] = [
    (
        "qbind_state_prune_duration_seconds_total",
        "Time spent pruning (s).",
        |s| &s.prune_duration_ms,
    ),
    (
        "qbind_snapshot_last_duration_seconds",
        "Time the newest snapshot took (s).",
        |s| &s.snapshot_last_duration_ms,
    ),
    (
        "qbind_snapshot_duration_seconds_total",
        "Time spent creating snapshots (s).",
        |s| &s.snapshot_duration_ms,
    ),
];

/// The page.
pub(super) fn render(shared: &Shared) -> String {
    let mut p = PromText::new();
    for (slot, id) in shared.ids.iter().enumerate() {
        let v = id.to_string();
        let label = ("validator", v.as_str());
        let m = shared.consensus[slot].borrow().clone();
        for (name, help, get) in CONSENSUS {
            sample(&mut p, name, help, label, get(&m));
        }
        p.gauge_labeled(
            "qbind_execution_executed_height",
            "Highest executed height.",
            label,
            shared.executed[slot].load(Ordering::Relaxed),
        );
        p.counter_labeled(
            "qbind_execution_transfers_total",
            "Successful transfers executed.",
            label,
            shared.transfers[slot].load(Ordering::Relaxed),
        );
        for (name, help, get) in STORE {
            let value = get(&shared.store[slot]).load(Ordering::Relaxed);
            sample(&mut p, name, help, label, value);
        }
        for (name, help, get) in STORE_SECONDS {
            let millis = get(&shared.store[slot]).load(Ordering::Relaxed);
            sample(&mut p, name, help, label, millis as f64 / 1000.0);
        }
    }
    for (slot, net) in shared.net.iter().enumerate() {
        if let Some(net) = net {
            let v = shared.ids[slot].to_string();
            p.append_labeled(&net.render_prometheus(), ("validator", &v));
        }
    }
    if let Some((signer, registry)) = &shared.signer {
        let v = shared.ids.first().copied().unwrap_or_default().to_string();
        p.append_labeled(&signer.metrics().render_prometheus(), ("validator", &v));
        let epoch = shared.consensus.first().map_or(0, |m| m.borrow().epoch);
        p.append_rendered(&registry.render_prometheus(qbind_core::types::Epoch(epoch)));
    }
    p.counter(
        "qbind_execution_state_root_mismatch_total",
        "Heights at which local validators computed different state roots.",
        shared.root_mismatches.load(Ordering::Relaxed),
    );
    p.finish()
}
