//! Plain storage metrics (runbook §10.4: `qbind_state_size_bytes`,
//! `qbind_state_prune_*`, snapshot counters and durations). They are atomic
//! counters and gauges shared by reference; exporting them to Prometheus is
//! the node's job, under the names given on each field.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters and gauges of one store. All fields are monotonic counters
/// unless marked as a gauge.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    /// Gauge `qbind_state_size_bytes`: on-disk size at the last measurement.
    pub state_size_bytes: AtomicU64,
    /// `qbind_state_prune_runs_total`: prune steps executed.
    pub prune_runs: AtomicU64,
    /// `qbind_state_prune_deleted_keys_total`: entries deleted by pruning.
    pub prune_deleted_keys: AtomicU64,
    /// `qbind_state_prune_deleted_bytes_total`: key + value bytes deleted.
    pub prune_deleted_bytes: AtomicU64,
    /// Gauge `qbind_state_prune_retained_height`: lowest height still kept.
    pub prune_retained_height: AtomicU64,
    /// `qbind_state_prune_duration_seconds_total` (counted in ms): time spent pruning.
    pub prune_duration_ms: AtomicU64,
    /// `qbind_state_prune_errors_total`: prune steps that failed.
    pub prune_errors: AtomicU64,
    /// `qbind_snapshot_created_total`: snapshots completed.
    pub snapshots_created: AtomicU64,
    /// `qbind_snapshot_failed_total`: snapshot attempts that failed.
    pub snapshots_failed: AtomicU64,
    /// `qbind_snapshot_removed_total`: old snapshots removed by retention.
    pub snapshots_removed: AtomicU64,
    /// `qbind_snapshot_tmp_removed_total`: temporary snapshot directories
    /// (`.tmp-snapshot-*`) left by a crash and removed at start-up.
    pub snapshot_tmp_removed: AtomicU64,
    /// Gauge `qbind_snapshot_last_height`: height of the newest snapshot.
    pub snapshot_last_height: AtomicU64,
    /// Gauge `qbind_snapshot_last_duration_seconds` (counted in ms): how long it took.
    pub snapshot_last_duration_ms: AtomicU64,
    /// `qbind_snapshot_duration_seconds_total` (counted in ms): time spent creating snapshots.
    pub snapshot_duration_ms: AtomicU64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl StoreMetrics {
    /// Record a measured on-disk size.
    pub fn set_state_size(&self, bytes: u64) {
        self.state_size_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Record one prune step.
    pub fn record_prune(&self, keys: u64, bytes: u64, retained_height: u64, took: Duration) {
        self.prune_runs.fetch_add(1, Ordering::Relaxed);
        self.prune_deleted_keys.fetch_add(keys, Ordering::Relaxed);
        self.prune_deleted_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.prune_retained_height
            .fetch_max(retained_height, Ordering::Relaxed);
        self.prune_duration_ms
            .fetch_add(millis(took), Ordering::Relaxed);
    }

    /// Record a completed snapshot.
    pub fn record_snapshot(&self, height: u64, took: Duration) {
        self.snapshots_created.fetch_add(1, Ordering::Relaxed);
        self.snapshot_last_height.store(height, Ordering::Relaxed);
        self.snapshot_last_duration_ms
            .store(millis(took), Ordering::Relaxed);
        self.snapshot_duration_ms
            .fetch_add(millis(took), Ordering::Relaxed);
    }

    /// A consistent-enough copy of every value, for export or assertions.
    #[must_use]
    pub fn read(&self) -> StoreMetricsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreMetricsSnapshot {
            state_size_bytes: r(&self.state_size_bytes),
            prune_runs: r(&self.prune_runs),
            prune_deleted_keys: r(&self.prune_deleted_keys),
            prune_deleted_bytes: r(&self.prune_deleted_bytes),
            prune_retained_height: r(&self.prune_retained_height),
            prune_duration_ms: r(&self.prune_duration_ms),
            prune_errors: r(&self.prune_errors),
            snapshots_created: r(&self.snapshots_created),
            snapshots_failed: r(&self.snapshots_failed),
            snapshots_removed: r(&self.snapshots_removed),
            snapshot_tmp_removed: r(&self.snapshot_tmp_removed),
            snapshot_last_height: r(&self.snapshot_last_height),
            snapshot_last_duration_ms: r(&self.snapshot_last_duration_ms),
            snapshot_duration_ms: r(&self.snapshot_duration_ms),
        }
    }
}

/// The values of a [`StoreMetrics`] at one moment; each field means the same
/// as the [`StoreMetrics`] field of the same name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreMetricsSnapshot {
    /// See [`StoreMetrics::state_size_bytes`].
    pub state_size_bytes: u64,
    /// See [`StoreMetrics::prune_runs`].
    pub prune_runs: u64,
    /// See [`StoreMetrics::prune_deleted_keys`].
    pub prune_deleted_keys: u64,
    /// See [`StoreMetrics::prune_deleted_bytes`].
    pub prune_deleted_bytes: u64,
    /// See [`StoreMetrics::prune_retained_height`].
    pub prune_retained_height: u64,
    /// See [`StoreMetrics::prune_duration_ms`].
    pub prune_duration_ms: u64,
    /// See [`StoreMetrics::prune_errors`].
    pub prune_errors: u64,
    /// See [`StoreMetrics::snapshots_created`].
    pub snapshots_created: u64,
    /// See [`StoreMetrics::snapshots_failed`].
    pub snapshots_failed: u64,
    /// See [`StoreMetrics::snapshots_removed`].
    pub snapshots_removed: u64,
    /// See [`StoreMetrics::snapshot_tmp_removed`].
    pub snapshot_tmp_removed: u64,
    /// See [`StoreMetrics::snapshot_last_height`].
    pub snapshot_last_height: u64,
    /// See [`StoreMetrics::snapshot_last_duration_ms`].
    pub snapshot_last_duration_ms: u64,
    /// See [`StoreMetrics::snapshot_duration_ms`].
    pub snapshot_duration_ms: u64,
}
