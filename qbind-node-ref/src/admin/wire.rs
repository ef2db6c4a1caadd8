//! What the admin endpoint and `qbind-admin` exchange: one route per action
//! (`POST /admin/v1/<action>`, an empty body or `{}`, the token in
//! `Authorization: Bearer <hex>`), a JSON reply per action and one JSON
//! error shape ([`ErrorReply`]). Replies list every validator the node
//! process runs (one, unless it runs a local network).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The path every action's route starts with.
pub const ROUTE_PREFIX: &str = "/admin/v1/";

/// An admin action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Heights, view, epoch and role ([`StatusReply`]).
    Status,
    /// The connected peers ([`PeersReply`]).
    Peers,
    /// What the DAG availability layer reports ([`DagStatusReply`]).
    DagStatus,
    /// Take a snapshot now ([`SnapshotReply`]).
    Snapshot,
    /// Prune to the configured retention now ([`PruneReply`]).
    Prune,
    /// Load the validator's next consensus key from its
    /// `--next-signer-keystore-path` now ([`NextKeyReply`];
    /// docs/key-rotation.md).
    LoadNextKey,
}

impl Action {
    /// Every action, in the order of [`Action::index`].
    pub const ALL: [Action; 6] = [
        Action::Status,
        Action::Peers,
        Action::DagStatus,
        Action::Snapshot,
        Action::Prune,
        Action::LoadNextKey,
    ];

    /// Its name in the route, on the command line and in metrics.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Action::Status => "status",
            Action::Peers => "peers",
            Action::DagStatus => "dag-status",
            Action::Snapshot => "snapshot",
            Action::Prune => "prune",
            Action::LoadNextKey => "load-next-key",
        }
    }

    /// The action called `name`.
    #[must_use]
    pub fn named(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The action a request path names (`/admin/v1/<name>`).
    #[must_use]
    pub fn of_path(path: &str) -> Option<Action> {
        path.strip_prefix(ROUTE_PREFIX).and_then(Action::named)
    }

    /// Its route.
    #[must_use]
    pub fn path(self) -> String {
        format!("{ROUTE_PREFIX}{}", self.name())
    }

    /// Its position in [`Action::ALL`].
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Error codes of [`ErrorReply::error`].
pub mod codes {
    /// 401: no token, or not the node's.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 404: no such action.
    pub const NOT_FOUND: &str = "not_found";
    /// 405: actions are `POST`.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// 413: the body is above the limit.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// 400: the body is not empty or `{}`.
    pub const BAD_REQUEST: &str = "bad_request";
    /// 408: the request was not received in time.
    pub const TIMEOUT: &str = "timeout";
    /// 503: the node is still starting (state sync), or the action did not
    /// finish in time (it goes on; see the node's log).
    pub const UNAVAILABLE: &str = "unavailable";
    /// 409: the node refused or the action failed (snapshots or pruning
    /// off, a store error).
    pub const ACTION_FAILED: &str = "action_failed";
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// A code of [`codes`].
    pub error: String,
    /// What happened, for the operator.
    pub message: String,
}

/// `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// `validator` or `full`.
    pub role: String,
    /// The network profile.
    pub profile: String,
    /// One entry per validator (or full node) of the process.
    pub nodes: Vec<NodeStatus>,
}

/// One node's heights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its id (validator index, or full-node id).
    pub id: usize,
    /// Highest executed height.
    pub executed_height: u64,
    /// Highest committed height.
    pub committed_height: u64,
    /// Current consensus view.
    pub view: u64,
    /// Current epoch.
    pub epoch: u64,
}

/// `peers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersReply {
    /// One entry per node of the process.
    pub nodes: Vec<NodePeers>,
}

/// One node's connections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePeers {
    /// Its id.
    pub id: usize,
    /// `kemtls` (the peers are listed), `sentry-link` (its only peer is
    /// its sentry: ask the sentry) or `memory` (a local network in one
    /// process: no connections).
    pub transport: String,
    /// The established connections, ascending by id.
    pub peers: Vec<PeerEntry>,
}

/// One connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// The peer's id.
    pub id: u32,
    /// SHA3-256 fingerprint of its P2P key, hex.
    pub key_fingerprint: String,
    /// The address dialled (outbound) or the peer's IP (inbound).
    pub address: String,
    /// `outbound` or `inbound`.
    pub direction: String,
    /// `validator` or `follower`.
    pub kind: String,
}

/// `dag-status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagStatusReply {
    /// `dag` or `fifo` (FIFO payloads: no DAG availability layer, `nodes`
    /// carry no counters).
    pub payload_mode: String,
    /// One entry per node of the process.
    pub nodes: Vec<NodeDag>,
}

/// One node's DAG counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDag {
    /// Its id.
    pub id: usize,
    /// Counter name → value (the `qbind_dag_*` metrics' values); `None`
    /// with FIFO payloads or before the engine reported.
    pub dag: Option<BTreeMap<String, u64>>,
}

/// `snapshot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReply {
    /// One snapshot per node of the process.
    pub snapshots: Vec<SnapshotTaken>,
}

/// One snapshot written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTaken {
    /// The node's id.
    pub id: usize,
    /// The snapshot's committed height.
    pub height: u64,
    /// Its directory.
    pub path: String,
    /// `HEIGHT:BLOCK_HASH:STATE_ROOT`, for `--trusted-snapshot-anchor`.
    pub trust_anchor: String,
}

/// `prune`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReply {
    /// One entry per node of the process.
    pub nodes: Vec<Pruned>,
}

/// What one node's prune did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// The node's id.
    pub id: usize,
    /// Block and QC entries deleted.
    pub deleted_keys: u64,
    /// The lowest height still kept.
    pub floor: u64,
    /// Whether it reached the retention target (`false`: the node began
    /// stopping first).
    pub complete: bool,
}

/// `load-next-key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextKeyReply {
    /// The validator.
    pub id: usize,
    /// The keystore directory it was loaded from.
    pub dir: String,
    /// The loaded key's fingerprint (as `qbind-keygen` printed it).
    pub key_fingerprint: String,
    /// False if it was loaded already (at start or by an earlier request):
    /// the key stays the one loaded first until the node restarts.
    pub loaded_now: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_paths_and_indices_agree() {
        for (i, a) in Action::ALL.into_iter().enumerate() {
            assert_eq!(a.index(), i);
            assert_eq!(Action::named(a.name()), Some(a));
            assert_eq!(Action::of_path(&a.path()), Some(a));
        }
        assert_eq!(Action::of_path("/admin/v1/shutdown"), None);
        assert_eq!(Action::of_path("/v1/status"), None);
        assert_eq!(Action::named("dag_status"), None);
    }
}
