//! The `/metrics` page of a local run: consensus, execution, store, DAG,
//! mempool, monetary, P2P and signer series per local validator (labelled
//! `validator="i"`), gathered at each scrape from the values the engines,
//! stores, transports and signer keep, into the process's one
//! `prometheus_client` registry ([`registry`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use qbind_core::consensus::ConsensusMetrics;
use qbind_core::engine::PayloadMetrics;
use qbind_core::monetary::{MonetaryEpochState, MonetaryMode};
use tokio::sync::watch;

use crate::metrics::Registry;
use crate::metrics::components;
use crate::metrics::families::{Family, Labels, labels_with, validator};
use crate::state_sync::StateSyncReport;

/// What the run shares with the metrics endpoint.
pub(super) struct Shared {
    /// The admin endpoint's request counters, if it is served.
    pub(super) admin: Option<Arc<crate::admin::AdminMetrics>>,
    /// Validator id of each local slot.
    pub(super) ids: Vec<usize>,
    pub(super) consensus: Vec<watch::Receiver<ConsensusMetrics>>,
    /// DAG and fee-pool counters per local slot.
    pub(super) payload: Vec<watch::Receiver<PayloadMetrics>>,
    pub(super) net: Vec<Option<Arc<qbind_net::NetMetrics>>>,
    /// The P2P series are a validator's link to its sentry (labelled
    /// `side="link"`: the network's are on the sentry's page).
    pub(super) net_is_link: bool,
    pub(super) store: Vec<Arc<qbind_store::metrics::StoreMetrics>>,
    pub(super) executed: Vec<AtomicU64>,
    /// Stage B counters per local slot (`None`: the sequential executor).
    pub(super) stage_b: Vec<Option<Arc<qbind_exec::StageBMetrics>>>,
    pub(super) transfers: Vec<AtomicU64>,
    pub(super) root_mismatches: AtomicU64,
    /// The chain's monetary mode (`Off` without the monetary engine).
    pub(super) monetary_mode: MonetaryMode,
    /// The monetary state of the last epoch each local slot closed.
    pub(super) monetary: Vec<Mutex<Option<MonetaryEpochState>>>,
    /// The state sync this node started with (one local node).
    pub(super) state_synced: Option<crate::state_sync::StateSyncProgress>,
    /// With own keys: the signer (its failure and health metrics) and the
    /// engine's schedule, whose key registry (configured and on-chain
    /// rotations) gives the rotation gauges.
    pub(super) signer: Option<(
        Arc<qbind_signer::SupervisedSigner>,
        tokio::sync::watch::Receiver<Arc<qbind_core::validator::EpochSchedule>>,
    )>,
    /// With own keys and `--next-signer-keystore-path`: the next key,
    /// whose signer's series are exported (labelled `key="next"`) once it
    /// is loaded.
    pub(super) next_key: Option<Arc<super::NextKey>>,
}

impl Shared {
    /// Keep the monetary state of the epoch local slot `slot` closed.
    pub(super) fn epoch_closed(&self, slot: usize, state: &MonetaryEpochState) {
        if let Some(m) = self.monetary.get(slot) {
            *m.lock().unwrap_or_else(PoisonError::into_inner) = Some(*state);
        }
    }
}

/// A family with one sample per local validator; `*_total` names are
/// counters, the rest gauges.
fn per_validator(
    name: &'static str,
    help: &'static str,
    samples: impl Iterator<Item = (Labels, crate::metrics::families::Value)>,
) -> Family {
    let family = if name.ends_with("_total") {
        Family::counter(name, help)
    } else {
        Family::gauge(name, help)
    };
    samples.fold(family, |f, (l, v)| f.with(l, v))
}

/// Reads one consensus series.
type Consensus = fn(&ConsensusMetrics) -> u64;
/// The consensus series: name, help, value.
const CONSENSUS: [(&str, &str, Consensus); 15] = [
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
        "qbind_consensus_votes_waited_for_execution_total",
        "Proposals whose vote waited until this validator executed the height they report.",
        |m| m.votes_waited_for_execution,
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
    (
        "qbind_consensus_sync_source_peers",
        "Peers with a range request of this validator in flight.",
        |m| m.sync_source_peers,
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

/// The families of the whole page.
fn families(shared: &Shared) -> Vec<Family> {
    let labels: Vec<Labels> = shared.ids.iter().map(validator).collect();
    let consensus: Vec<ConsensusMetrics> = shared
        .consensus
        .iter()
        .map(|m| m.borrow().clone())
        .collect();
    let mut out = Vec::new();
    for (name, help, get) in CONSENSUS {
        out.push(per_validator(
            name,
            help,
            labels
                .iter()
                .zip(&consensus)
                .map(|(l, m)| (l.clone(), get(m).into())),
        ));
    }
    // Runbook §7.4 names it `qbind_consensus_qc_formation_latency_ms`;
    // exported in seconds like the store durations (`promtool check
    // metrics` refuses `_ms`).
    out.push(per_validator(
        "qbind_consensus_qc_formation_latency_seconds",
        "Seconds from placing the last measured view's proposal to holding a QC for that view.",
        labels.iter().zip(&consensus).map(|(l, m)| {
            (
                l.clone(),
                (m.qc_formation_latency_ms as f64 / 1000.0).into(),
            )
        }),
    ));
    out.push(per_validator(
        "qbind_execution_executed_height",
        "Highest executed height.",
        labels
            .iter()
            .zip(&shared.executed)
            .map(|(l, a)| (l.clone(), a.load(Ordering::Relaxed).into())),
    ));
    out.push(per_validator(
        "qbind_execution_transfers_total",
        "Successful transfers executed.",
        labels
            .iter()
            .zip(&shared.transfers)
            .map(|(l, a)| (l.clone(), a.load(Ordering::Relaxed).into())),
    ));
    // The runbook's `stage_b_blocks_parallel`: promtool rejects its `_b_`
    // (read as an abbreviated unit, bytes) and a count needs `_total`.
    out.push(per_validator(
        "qbind_execution_parallel_blocks_total",
        "Blocks executed on Stage B's parallel path.",
        labels.iter().zip(&shared.stage_b).filter_map(|(l, m)| {
            m.as_ref()
                .map(|m| (l.clone(), m.blocks_parallel.load(Ordering::Relaxed).into()))
        }),
    ));
    for (name, help, get) in STORE {
        out.push(per_validator(
            name,
            help,
            labels
                .iter()
                .zip(&shared.store)
                .map(|(l, s)| (l.clone(), get(s).load(Ordering::Relaxed).into())),
        ));
    }
    for (name, help, get) in STORE_SECONDS {
        out.push(per_validator(
            name,
            help,
            labels.iter().zip(&shared.store).map(|(l, s)| {
                let millis = get(s).load(Ordering::Relaxed);
                (l.clone(), (millis as f64 / 1000.0).into())
            }),
        ));
    }
    let payload: Vec<PayloadMetrics> = shared.payload.iter().map(|m| m.borrow().clone()).collect();
    out.extend(payload_families(&labels, &payload));
    out.extend(monetary_families(shared, &labels));
    let net: Vec<(Labels, &qbind_net::NetMetrics)> = labels
        .iter()
        .zip(&shared.net)
        .filter_map(|(l, n)| {
            n.as_deref().map(|n| {
                let l = if shared.net_is_link {
                    crate::metrics::families::labels_with(l, ("side", "link"))
                } else {
                    l.clone()
                };
                (l, n)
            })
        })
        .collect();
    out.extend(components::net(&net));
    if let Some((signer, schedule)) = &shared.signer {
        let l = labels.first().cloned().unwrap_or_else(|| validator(0));
        let next = shared
            .next_key
            .as_ref()
            .and_then(|next| next.metrics())
            .map(|m| {
                (
                    crate::metrics::families::labels_with(&l, ("key", "next")),
                    &**m,
                )
            });
        let items: Vec<(Labels, &qbind_signer::SignerMetrics)> =
            std::iter::once((l, &**signer.metrics()))
                .chain(next)
                .collect();
        out.extend(components::signer(&items));
        let epoch = consensus.first().map_or(0, |m| m.epoch);
        let registry = schedule.borrow().key_registry();
        out.extend(components::key_rotation(
            &registry.status(qbind_core::types::Epoch(epoch)),
        ));
    }
    if let (Some(p), Some(l)) = (&shared.state_synced, labels.first()) {
        out.extend(state_sync_families(&p.report(), l));
    }
    out.extend(crate::metrics::cpu::families(
        crate::metrics::cpu::meter(),
        &Labels::new(),
    ));
    out.push(
        Family::counter(
            "qbind_execution_state_root_mismatch_total",
            "Heights at which local validators computed different state roots.",
        )
        .with(
            Labels::new(),
            shared.root_mismatches.load(Ordering::Relaxed),
        ),
    );
    if let Some(admin) = &shared.admin {
        out.extend(admin.families());
    }
    out
}

/// The DAG and fee-pool families (runbook §10.5.5, §3.5) of the validators
/// that run a DAG or a fee-priority pool.
fn payload_families(labels: &[Labels], payload: &[PayloadMetrics]) -> Vec<Family> {
    let dag: Vec<_> = labels
        .iter()
        .zip(payload)
        .filter_map(|(l, p)| p.dag.as_ref().map(|d| (l, d)))
        .collect();
    let pool: Vec<_> = labels
        .iter()
        .zip(payload)
        .filter_map(|(l, p)| p.mempool.as_ref().map(|m| (l, m)))
        .collect();
    let mut signed = Family::counter(
        "qbind_dag_batches_signed_total",
        "Batches this validator signed.",
    );
    // The runbook's name has no `_total`: a counter must (Prometheus,
    // prometheus-client), so the count is exported as a gauge.
    let mut equivocations = Family::gauge(
        "qbind_dag_batch_equivocation_detected",
        "DAG batch equivocations detected (a count).",
    );
    let mut invalid = Family::counter(
        "qbind_dag_certs_invalid_total",
        "Invalid batch certificates received.",
    );
    let mut committed = Family::counter(
        "qbind_dag_batches_committed_total",
        "Certified batches of committed blocks delivered for execution.",
    );
    let mut archived = Family::counter(
        "qbind_dag_batches_archived_total",
        "Committed blocks' batches moved to the store's archive.",
    );
    let mut to_store = Family::counter(
        "qbind_dag_batch_fetches_to_store_total",
        "Peers' batch fetches of data not in memory, answered from the store if archived.",
    );
    let mut parked = Family::counter(
        "qbind_dag_batches_parked_total",
        "Batches held back until this validator could check them (it was behind).",
    );
    let mut coupling = Family::counter(
        "qbind_dag_coupling_validation_total",
        "DAG coupling validations of proposals, by result.",
    );
    for (l, d) in &dag {
        signed.push((*l).clone(), d.batches_signed_total);
        equivocations.push((*l).clone(), d.batch_equivocation_detected);
        invalid.push((*l).clone(), d.certs_invalid_total);
        committed.push((*l).clone(), d.batches_committed_total);
        archived.push((*l).clone(), d.batches_archived_total);
        to_store.push((*l).clone(), d.batch_fetches_to_store_total);
        parked.push((*l).clone(), d.batches_parked_total);
        for (result, n) in &d.coupling_validation {
            coupling.push(labels_with(l, ("result", result)), *n);
        }
    }
    let mut evictions = Family::counter(
        "qbind_mempool_evictions_total",
        "Pending transactions evicted from the pool, by reason.",
    );
    let mut rate_limit = Family::counter(
        "qbind_mempool_eviction_rate_limit_total",
        "Evictions beyond the eviction rate limit, by enforcement mode.",
    );
    for (l, m) in &pool {
        for reason in ["capacity", "replaced", "parked"] {
            let n = m.evictions_total.get(reason).copied().unwrap_or(0);
            evictions.push(labels_with(l, ("reason", reason)), n);
        }
        for (reason, n) in &m.evictions_total {
            if !matches!(*reason, "capacity" | "replaced" | "parked") {
                evictions.push(labels_with(l, ("reason", reason)), *n);
            }
        }
        for (mode, n) in &m.eviction_rate_limit_total {
            rate_limit.push(labels_with(l, ("mode", mode)), *n);
        }
    }
    vec![
        signed,
        equivocations,
        invalid,
        committed,
        archived,
        to_store,
        parked,
        coupling,
        evictions,
        rate_limit,
    ]
}

/// The monetary gauges (runbook §8.3): the mode always, the rest once the
/// validator closed an epoch.
fn monetary_families(shared: &Shared, labels: &[Labels]) -> Vec<Family> {
    let mut mode = Family::gauge(
        "qbind_monetary_mode",
        "Monetary engine mode (0 off, 1 shadow, 2 active).",
    );
    let mut phase = Family::gauge(
        "qbind_monetary_phase",
        "Monetary phase (0 bootstrap, 1 transition, 2 mature) after the last closed epoch.",
    );
    let mut r_inf = Family::gauge(
        "qbind_monetary_r_inf_annual_bps",
        "Chosen annual inflation rate of the last closed epoch (bps).",
    );
    let mut r_target = Family::gauge(
        "qbind_monetary_r_target_annual_bps",
        "Target annual inflation rate of the phase (bps).",
    );
    let mut coverage = Family::gauge(
        "qbind_monetary_fee_coverage_ratio_bps",
        "Annualised fees over the target security budget (bps).",
    );
    let mut recommendation = Family::gauge(
        "qbind_monetary_phase_recommendation",
        "1 when every gate for the next phase holds, else 0.",
    );
    for (l, state) in labels.iter().zip(&shared.monetary) {
        mode.push(l.clone(), u64::from(shared.monetary_mode.gauge()));
        let state = *state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = state {
            phase.push(l.clone(), s.phase as u64);
            r_inf.push(l.clone(), u64::from(s.r_inf_annual_bps));
            r_target.push(l.clone(), u64::from(s.r_target_annual_bps));
            coverage.push(l.clone(), u64::from(s.fee_coverage_bps));
            recommendation.push(l.clone(), u64::from(s.phase_recommendation));
        }
    }
    vec![mode, phase, r_inf, r_target, coverage, recommendation]
}

/// The `qbind_state_sync_*` gauges of `r`, labelled `l`: the whole page
/// while the state is fetched (before the node has a store), part of it
/// afterwards.
pub(super) fn state_sync_families(r: &StateSyncReport, l: &Labels) -> Vec<Family> {
    let gauge = |name, help, value: crate::metrics::families::Value| {
        Family::gauge(name, help).with(l.clone(), value)
    };
    vec![
        gauge(
            "qbind_state_sync_phase",
            "State sync phase: 1 proving a height, 2 manifest, 3 chunks, 4 restoring, 5 done.",
            r.phase.number().into(),
        ),
        gauge(
            "qbind_state_sync_height",
            "Certified height this node's store is state-synced to (0 until chosen).",
            r.height.into(),
        ),
        gauge(
            "qbind_state_sync_accounts",
            "Accounts in the state being fetched (0 until its manifest is read).",
            r.accounts.into(),
        ),
        gauge(
            "qbind_state_sync_chunks",
            "Chunks of the manifest being fetched.",
            r.chunks_total.into(),
        ),
        gauge(
            "qbind_state_sync_chunks_done",
            "Chunks fetched, verified and staged.",
            r.chunks_done.into(),
        ),
        gauge(
            "qbind_state_sync_bytes",
            "Bytes of pages received by the state sync.",
            r.bytes.into(),
        ),
        gauge(
            "qbind_state_sync_duration_seconds",
            "Seconds from the state sync's first page: so far, then until the state was staged.",
            r.seconds.into(),
        ),
        gauge(
            "qbind_state_sync_peers",
            "Peers given to the state sync (--state-sync-from).",
            (r.peers as u64).into(),
        ),
        gauge(
            "qbind_state_sync_peers_dropped",
            "Peers the state sync dropped (failed checks, failing requests, slowness).",
            (r.peers_dropped as u64).into(),
        ),
    ]
}

/// The page while a state sync fetches the state: its gauges only.
pub(super) fn state_sync_registry(
    progress: crate::state_sync::StateSyncProgress,
    id: usize,
) -> Registry {
    let labels = validator(id);
    crate::metrics::families::registry(move || state_sync_families(&progress.report(), &labels))
}

/// The process's registry: one collector reading `shared` at each scrape.
pub(super) fn registry(shared: Arc<Shared>) -> Registry {
    crate::metrics::families::registry(move || families(&shared))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::families::duplicate_families;
    use qbind_core::dag::DagMetrics;
    use qbind_core::fee_mempool::FeeMempoolMetrics;
    use qbind_core::monetary::MonetaryPhase;

    /// Two local validators (ids 3 and 5) with distinct values; the second
    /// runs a DAG and a fee-priority pool and closed a monetary epoch.
    fn shared() -> Shared {
        let consensus = |view| {
            watch::channel(ConsensusMetrics {
                current_view: view,
                highest_seen_view: view + 4,
                committed_height: view - 1,
                blocks_committed: 7,
                qc_formation_latency_ms: view * 25,
                ..ConsensusMetrics::default()
            })
            .1
        };
        let dag = DagMetrics {
            batches_signed_total: 11,
            batch_equivocation_detected: 1,
            certs_invalid_total: 2,
            batches_committed_total: 6,
            batches_archived_total: 4,
            batch_fetches_to_store_total: 3,
            batches_parked_total: 8,
            coupling_validation: [("valid", 9), ("stale_round", 1)].into_iter().collect(),
            ..DagMetrics::default()
        };
        let pool = FeeMempoolMetrics {
            evictions_total: [("capacity", 4)].into_iter().collect(),
            eviction_rate_limit_total: [("enforce", 2)].into_iter().collect(),
            ..FeeMempoolMetrics::default()
        };
        let stage_b = Arc::new(qbind_exec::StageBMetrics::default());
        stage_b.blocks_parallel.store(12, Ordering::Relaxed);
        let store = Arc::new(qbind_store::metrics::StoreMetrics::default());
        store.set_state_size(4096);
        store.prune_duration_ms.store(1500, Ordering::Relaxed);
        let net = Arc::new(qbind_net::NetMetrics::default());
        net.outbound_peers.store(3, Ordering::Relaxed);
        let state = MonetaryEpochState {
            epoch: 1,
            phase: MonetaryPhase::Transition,
            ema_fees_per_epoch: 0,
            fee_coverage_bps: 1234,
            stake_ratio_bps: 0,
            r_target_annual_bps: 700,
            r_inf_annual_bps: 650,
            phase_recommendation: true,
            issuance: 0,
            to_validators: 0,
            to_treasury: 0,
            to_insurance: 0,
            to_community: 0,
        };
        let admin = Arc::new(crate::admin::AdminMetrics::default());
        admin.record(
            Some(crate::admin::Action::Status),
            crate::admin::server::Outcome::Unauthorized,
        );
        let shared = Shared {
            admin: Some(admin),
            ids: vec![3, 5],
            consensus: vec![consensus(10), consensus(20)],
            payload: vec![
                watch::channel(PayloadMetrics::default()).1,
                watch::channel(PayloadMetrics {
                    dag: Some(dag),
                    mempool: Some(pool),
                })
                .1,
            ],
            net: vec![None, Some(net)],
            store: vec![Arc::default(), store],
            executed: vec![AtomicU64::new(8), AtomicU64::new(18)],
            stage_b: vec![None, Some(stage_b)],
            transfers: vec![AtomicU64::new(0), AtomicU64::new(6)],
            root_mismatches: AtomicU64::new(0),
            monetary_mode: MonetaryMode::Shadow,
            monetary: vec![Mutex::new(None), Mutex::new(None)],
            state_synced: Some({
                let p = crate::state_sync::StateSyncProgress::default();
                p.update(|r| {
                    *r = StateSyncReport {
                        phase: crate::state_sync::StateSyncPhase::Done,
                        height: 40,
                        accounts: 7,
                        chunks_total: 1,
                        chunks_done: 1,
                        bytes: 512,
                        seconds: 0.25,
                        peers: 2,
                        peers_dropped: 1,
                    }
                });
                p
            }),
            signer: None,
            next_key: None,
            net_is_link: false,
        };
        shared.epoch_closed(1, &state);
        shared
    }

    fn page() -> String {
        crate::metrics::render(&registry(Arc::new(shared())))
    }

    /// The next key's signer series appear beside the current signer's,
    /// labelled `key="next"`, once the key is loaded (issue #20: a failing
    /// next signer was invisible).
    #[tokio::test]
    async fn next_signer_series_appear_once_loaded() {
        use crate::local::next_key::tests::{PASS, keystore, pass_file, supervised};
        use qbind_core::crypto::KeyPair;
        use qbind_core::traits::LocalSigner;
        use qbind_core::types::{NetworkEnvironment, ValidatorId};
        let tmp = tempfile::tempdir().expect("tempdir");
        let current = KeyPair::from_seed(&[3; 32]);
        let dir = tmp.path().join("next");
        keystore(&dir);
        let next = Arc::new(supervised(
            &dir,
            current.public_key().clone(),
            &pass_file(tmp.path(), PASS),
            qbind_signer::SignerFailureMode::ExitOnFailure,
        ));
        let set = qbind_core::validator::ValidatorSet::new(vec![(current.public_key().clone(), 1)])
            .expect("set");
        let signer = qbind_signer::SupervisedSigner::new(
            Box::new(LocalSigner::new(
                ValidatorId(3),
                NetworkEnvironment::Devnet,
                current,
            )),
            qbind_signer::SignerFailureMode::ExitOnFailure,
            qbind_signer::SignerMetrics::shared(),
        );
        let shared = Arc::new(Shared {
            signer: Some((
                Arc::new(signer),
                watch::channel(Arc::new(qbind_core::validator::EpochSchedule::fixed(set))).1,
            )),
            next_key: Some(Arc::clone(&next)),
            ..shared()
        });
        let page = || crate::metrics::render(&registry(Arc::clone(&shared)));

        let before = page();
        assert!(
            before.contains("qbind_signer_health{validator=\"3\"} 0\n"),
            "{before}"
        );
        assert!(!before.contains("key=\"next\""), "{before}");

        next.load().await.expect("load");
        let after = page();
        for needle in [
            "qbind_signer_health{validator=\"3\"} 0\n",
            "qbind_signer_health{validator=\"3\",key=\"next\"} 0\n",
            "qbind_hsm_startup_ok{validator=\"3\",key=\"next\"} 1\n",
            "qbind_signer_sign_failures_total{validator=\"3\",key=\"next\"} 0\n",
        ] {
            assert!(after.contains(needle), "missing {needle} in\n{after}");
        }
        assert_eq!(duplicate_families(&after), Vec::<String>::new(), "{after}");
    }

    #[test]
    fn node_page_has_one_block_per_family() {
        let text = page();
        assert_eq!(duplicate_families(&text), Vec::<String>::new(), "{text}");
    }

    #[test]
    fn node_page_has_consensus_execution_and_store_series() {
        let text = page();
        for needle in [
            "# TYPE qbind_consensus_current_view gauge\n",
            "qbind_consensus_current_view{validator=\"3\"} 10\n\
             qbind_consensus_current_view{validator=\"5\"} 20\n",
            "qbind_consensus_view_lag{validator=\"5\"} 4\n",
            "qbind_consensus_committed_height{validator=\"3\"} 9\n",
            "# TYPE qbind_consensus_blocks_committed_total counter\n",
            "qbind_consensus_blocks_committed_total{validator=\"5\"} 7\n",
            "qbind_consensus_rejected_total{validator=\"3\"} 0\n",
            "qbind_execution_executed_height{validator=\"5\"} 18\n",
            "# TYPE qbind_consensus_qc_formation_latency_seconds gauge\n",
            "qbind_consensus_qc_formation_latency_seconds{validator=\"3\"} 0.25\n",
            "qbind_consensus_qc_formation_latency_seconds{validator=\"5\"} 0.5\n",
            "# TYPE qbind_execution_parallel_blocks_total counter\n\
             qbind_execution_parallel_blocks_total{validator=\"5\"} 12\n",
            "qbind_execution_transfers_total{validator=\"5\"} 6\n",
            "# TYPE qbind_state_size_bytes gauge\n",
            "qbind_state_size_bytes{validator=\"5\"} 4096\n",
            "# TYPE qbind_state_prune_duration_seconds_total counter\n",
            "qbind_state_prune_duration_seconds_total{validator=\"5\"} 1.5\n",
            "qbind_snapshot_last_duration_seconds{validator=\"3\"} 0",
            "qbind_p2p_outbound_peers{validator=\"5\"} 3\n",
            "# TYPE qbind_execution_state_root_mismatch_total counter\n\
             qbind_execution_state_root_mismatch_total 0\n",
            "# TYPE qbind_state_sync_height gauge\nqbind_state_sync_height{validator=\"3\"} 40\n",
            "qbind_state_sync_peers_dropped{validator=\"3\"} 1\n",
            "qbind_state_sync_duration_seconds{validator=\"3\"} 0.25\n",
            "qbind_state_sync_phase{validator=\"3\"} 5\n",
            "qbind_state_sync_chunks_done{validator=\"3\"} 1\n",
            "# TYPE qbind_admin_requests_total counter\n",
            "qbind_admin_requests_total{action=\"status\",result=\"unauthorized\"} 1\n",
            "qbind_admin_requests_total{action=\"unknown\",result=\"ok\"} 0\n",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        // Validator 3 has no P2P metrics (in-memory network) and executes
        // sequentially.
        assert!(!text.contains("qbind_p2p_outbound_peers{validator=\"3\"}"));
        assert!(!text.contains("qbind_execution_parallel_blocks_total{validator=\"3\"}"));
    }

    #[test]
    fn node_page_has_dag_mempool_and_monetary_series() {
        let text = page();
        for needle in [
            "# TYPE qbind_dag_batches_signed_total counter\n\
             qbind_dag_batches_signed_total{validator=\"5\"} 11\n",
            "# TYPE qbind_dag_batch_equivocation_detected gauge\n\
             qbind_dag_batch_equivocation_detected{validator=\"5\"} 1\n",
            "qbind_dag_certs_invalid_total{validator=\"5\"} 2\n",
            "qbind_dag_batches_committed_total{validator=\"5\"} 6\n",
            "qbind_dag_batches_archived_total{validator=\"5\"} 4\n",
            "qbind_dag_batch_fetches_to_store_total{validator=\"5\"} 3\n",
            "qbind_dag_batches_parked_total{validator=\"5\"} 8\n",
            "qbind_dag_coupling_validation_total{validator=\"5\",result=\"valid\"} 9\n",
            "qbind_dag_coupling_validation_total{validator=\"5\",result=\"stale_round\"} 1\n",
            "qbind_mempool_evictions_total{validator=\"5\",reason=\"capacity\"} 4\n",
            "qbind_mempool_evictions_total{validator=\"5\",reason=\"replaced\"} 0\n",
            "qbind_mempool_evictions_total{validator=\"5\",reason=\"parked\"} 0\n",
            "qbind_mempool_eviction_rate_limit_total{validator=\"5\",mode=\"enforce\"} 2\n",
            "qbind_monetary_mode{validator=\"3\"} 1\nqbind_monetary_mode{validator=\"5\"} 1\n",
            "qbind_monetary_phase{validator=\"5\"} 1\n",
            "qbind_monetary_r_inf_annual_bps{validator=\"5\"} 650\n",
            "qbind_monetary_r_target_annual_bps{validator=\"5\"} 700\n",
            "qbind_monetary_fee_coverage_ratio_bps{validator=\"5\"} 1234\n",
            "qbind_monetary_phase_recommendation{validator=\"5\"} 1\n",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        // Validator 3 runs neither a DAG nor a fee pool, and closed no epoch.
        for absent in [
            "qbind_dag_batches_signed_total{validator=\"3\"}",
            "qbind_mempool_evictions_total{validator=\"3\"",
            "qbind_monetary_phase{validator=\"3\"}",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }
}
