//! The admin endpoint's backend for a running node: what `status`,
//! `peers` and `dag-status` read (the values `/metrics` reads, and the
//! transports' connection tables) and the store handles `snapshot` and
//! `prune` act through (`crate::node::StoreControl`, on the stores the
//! node has open). Bound before the engines start, it answers
//! "not ready" until [`LocalAdmin::ready`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use qbind_core::dag::{DagMetrics, PayloadMode};
use qbind_store::snapshot::TrustAnchor;

use super::render::Shared;
use crate::admin::wire::{
    DagStatusReply, NextKeyReply, NodeDag, NodePeers, NodeStatus, PeerEntry, PeersReply,
    PruneReply, Pruned, SnapshotReply, SnapshotTaken, StatusReply,
};
use crate::admin::{Action, AdminBackend, AdminError};
use crate::node::{NodeError, StoreControl};

/// How one local node reaches its peers, for `peers`.
#[derive(Clone, Debug)]
pub(super) enum PeerSource {
    /// In-process channels: no connections to list.
    Memory,
    /// Only its sentry's link.
    SentryLink,
    /// KEMTLS: its transport's connection table.
    Kemtls(qbind_net::PeerView),
}

/// What the backend reads and acts on once the engines run (index: local
/// slot).
pub(super) struct Ready {
    pub(super) shared: Arc<Shared>,
    pub(super) peers: Vec<PeerSource>,
    pub(super) stores: Vec<StoreControl>,
    /// The validator's next consensus key, if it was given a place
    /// (`--next-signer-keystore-path`).
    pub(super) next_key: Option<Arc<super::NextKey>>,
}

/// The admin backend of one `qbind-node` process.
pub(super) struct LocalAdmin {
    role: &'static str,
    profile: crate::profile::Profile,
    payload_mode: PayloadMode,
    ready: OnceLock<Ready>,
}

impl LocalAdmin {
    /// The admin backend of a process running validators (or, with
    /// `follower`, a full node) of `profile`; it answers "not ready" until
    /// the engines are started.
    pub(super) fn new(
        follower: bool,
        profile: crate::profile::Profile,
        payload_mode: PayloadMode,
    ) -> Self {
        LocalAdmin {
            role: if follower { "full" } else { "validator" },
            profile,
            payload_mode,
            ready: OnceLock::new(),
        }
    }

    /// Serve the running node from now on.
    pub(super) fn ready(&self, ready: Ready) {
        let _ = self.ready.set(ready);
    }

    fn status(&self, r: &Ready) -> StatusReply {
        let nodes = r
            .shared
            .ids
            .iter()
            .enumerate()
            .map(|(slot, id)| {
                let consensus = r
                    .shared
                    .consensus
                    .get(slot)
                    .map(|m| m.borrow().clone())
                    .unwrap_or_default();
                NodeStatus {
                    id: *id,
                    executed_height: executed(r, slot),
                    committed_height: consensus.committed_height,
                    view: consensus.current_view,
                    epoch: consensus.epoch,
                }
            })
            .collect();
        StatusReply {
            role: self.role.to_string(),
            profile: self.profile.to_string(),
            nodes,
        }
    }

    fn dag_status(&self, r: &Ready) -> DagStatusReply {
        let dag = self.payload_mode == PayloadMode::Dag;
        DagStatusReply {
            payload_mode: if dag { "dag" } else { "fifo" }.to_string(),
            nodes: r
                .shared
                .ids
                .iter()
                .enumerate()
                .map(|(slot, id)| NodeDag {
                    id: *id,
                    dag: r
                        .shared
                        .payload
                        .get(slot)
                        .and_then(|m| m.borrow().dag.as_ref().map(dag_counters))
                        .filter(|_| dag),
                })
                .collect(),
        }
    }

    fn snapshot(r: &Ready) -> Result<SnapshotReply, NodeError> {
        let mut snapshots = Vec::with_capacity(r.stores.len());
        for (slot, (store, id)) in r.stores.iter().zip(&r.shared.ids).enumerate() {
            let (meta, path) = store.snapshot_now(executed(r, slot))?;
            eprintln!(
                "admin: snapshot at height {} written to {}",
                meta.height,
                path.display()
            );
            snapshots.push(SnapshotTaken {
                id: *id,
                height: meta.height,
                path: path.display().to_string(),
                trust_anchor: TrustAnchor::of(&meta)?.to_string(),
            });
        }
        Ok(SnapshotReply { snapshots })
    }

    fn load_next_key(r: &Ready) -> Result<NextKeyReply, NodeError> {
        let (Some(next), Some(id)) = (&r.next_key, r.shared.ids.first()) else {
            return Err(NodeError::Config(
                "this node has no place for a next consensus key: start it with \
                 --next-signer-keystore-path DIR (DIR need not exist or hold a key until a \
                 rotation is planned)"
                    .into(),
            ));
        };
        // On the admin endpoint's blocking thread, inside the runtime.
        let loaded = tokio::runtime::Handle::current()
            .block_on(next.load())
            .map_err(|e| NodeError::Config(e.to_string()))?;
        Ok(NextKeyReply {
            id: *id,
            dir: next.dir().display().to_string(),
            key_fingerprint: loaded.fingerprint,
            loaded_now: loaded.now,
        })
    }

    fn prune(r: &Ready) -> Result<PruneReply, NodeError> {
        let mut nodes = Vec::with_capacity(r.stores.len());
        for (store, id) in r.stores.iter().zip(&r.shared.ids) {
            let outcome = store.prune_now()?;
            nodes.push(Pruned {
                id: *id,
                deleted_keys: outcome.deleted_keys,
                floor: outcome.floor,
                complete: outcome.complete,
            });
        }
        Ok(PruneReply { nodes })
    }
}

fn executed(r: &Ready, slot: usize) -> u64 {
    r.shared
        .executed
        .get(slot)
        .map_or(0, |a| a.load(Ordering::Relaxed))
}

fn peers(r: &Ready) -> PeersReply {
    let nodes = r
        .shared
        .ids
        .iter()
        .zip(&r.peers)
        .map(|(id, source)| {
            let (transport, peers) = match source {
                PeerSource::Memory => ("memory", Vec::new()),
                PeerSource::SentryLink => ("sentry-link", Vec::new()),
                PeerSource::Kemtls(view) => (
                    "kemtls",
                    view.connected()
                        .into_iter()
                        .map(|p| PeerEntry {
                            id: p.id.0,
                            key_fingerprint: hex::encode(p.key.0),
                            address: p
                                .dialled
                                .map_or_else(|| p.ip.to_string(), |a| a.to_string()),
                            direction: if p.outbound { "outbound" } else { "inbound" }.into(),
                            kind: match p.kind {
                                qbind_net::peers::directory::PeerKind::Validator => "validator",
                                qbind_net::peers::directory::PeerKind::Follower => "follower",
                            }
                            .into(),
                        })
                        .collect(),
                ),
            };
            NodePeers {
                id: *id,
                transport: transport.to_string(),
                peers,
            }
        })
        .collect();
    PeersReply { nodes }
}

/// The DAG counters by their metric names (labelled ones flattened as
/// `name.label`).
fn dag_counters(m: &DagMetrics) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = [
        ("batches_signed_total", m.batches_signed_total),
        ("certs_formed_total", m.certs_formed_total),
        ("batch_equivocation_detected", m.batch_equivocation_detected),
        ("certs_invalid_total", m.certs_invalid_total),
        (
            "coupling_block_mismatch_total",
            m.coupling_block_mismatch_total,
        ),
        (
            "coupling_block_missing_total",
            m.coupling_block_missing_total,
        ),
        ("batches_fetched_total", m.batches_fetched_total),
        ("duplicate_txs_skipped", m.duplicate_txs_skipped),
        ("batch_sign_failures_total", m.batch_sign_failures_total),
        ("batches_pruned_total", m.batches_pruned_total),
        ("batches_archived_total", m.batches_archived_total),
        (
            "batch_fetches_to_store_total",
            m.batch_fetches_to_store_total,
        ),
        ("batches_committed_total", m.batches_committed_total),
        ("batches_parked_total", m.batches_parked_total),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (result, v) in &m.coupling_validation {
        out.insert(format!("coupling_validation_total.{result}"), *v);
    }
    out
}

fn to_json<T: serde::Serialize>(reply: &T) -> Result<serde_json::Value, AdminError> {
    serde_json::to_value(reply).map_err(|e| AdminError::Failed(NodeError::Config(e.to_string())))
}

impl AdminBackend for LocalAdmin {
    fn run(&self, action: Action) -> Result<serde_json::Value, AdminError> {
        let r = self.ready.get().ok_or(AdminError::NotReady)?;
        match action {
            Action::Status => to_json(&self.status(r)),
            Action::Peers => to_json(&peers(r)),
            Action::DagStatus => to_json(&self.dag_status(r)),
            Action::Snapshot => to_json(&Self::snapshot(r)?),
            Action::Prune => to_json(&Self::prune(r)?),
            Action::LoadNextKey => to_json(&Self::load_next_key(r)?),
        }
    }
}
