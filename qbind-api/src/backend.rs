//! The seam between the HTTP server and a node: [`ApiBackend`].
//!
//! A node implements it over what it already has: the fee-priority pool
//! (submission), the store (accounts, blocks and QCs by height), a receipt
//! index keyed by transaction hash (written with each executed block) and
//! its consensus/P2P state (status). The server never holds chain state of
//! its own.

use std::future::Future;

use qbind_core::consensus::{BlockHeader, QuorumCert};
use qbind_core::execution::{Account, Receipt};
use qbind_core::system_tx::SystemTx;
use qbind_core::types::{AccountId, Epoch, Hash32, Height, NetworkEnvironment, View};

use crate::submit::{CheckedTx, SubmitError};

/// What the node knows about a transaction hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxLookup {
    /// In the pool, not yet in a committed block.
    Pending,
    /// In the committed block at `height`, position `index`, with its
    /// receipt (which may say the executor rejected it).
    Executed {
        /// Block height.
        height: Height,
        /// Position in the block's transaction list.
        index: u32,
        /// The executor's receipt.
        receipt: Receipt,
    },
    /// Accepted once, then dropped from the pool without being included.
    Dropped(DropReason),
    /// Never seen (or forgotten: the receipt index may be pruned).
    Unknown,
}

/// Why the pool let go of a transaction it had accepted, without a commit
/// (`qbind_core::pool_drops`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Evicted by a higher-fee transaction when the pool was full.
    Evicted,
    /// Replaced by another transaction of the same sender and nonce.
    Replaced {
        /// The replacement's hash.
        by: Hash32,
    },
    /// Another transaction of the sender used its nonce first.
    NonceUsed,
    /// The pool refused it after the API had accepted it (it filled up in
    /// between); `cause` is the pool's reason, e.g. `pool_full`.
    Refused {
        /// The pool's refusal label.
        cause: &'static str,
    },
    /// Its DAG batch was not ordered before the batch's epoch ended.
    BatchExpired,
}

impl DropReason {
    /// Stable machine code (`reason` of `TxStatusView::Dropped`).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            DropReason::Evicted => "evicted",
            DropReason::Replaced { .. } => "replaced",
            DropReason::NonceUsed => "nonce_used",
            DropReason::Refused { .. } => "refused",
            DropReason::BatchExpired => "batch_expired",
        }
    }

    /// Explanation for people.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            DropReason::Evicted => "evicted from the full pool by higher-fee transactions".into(),
            DropReason::Replaced { by } => format!("replaced by transaction {by}"),
            DropReason::NonceUsed => "another transaction used this nonce".into(),
            DropReason::Refused { cause } => {
                format!("the pool refused it after the API accepted it ({cause}); submit it again")
            }
            DropReason::BatchExpired => {
                "its batch was not ordered before the epoch ended; submit it again".into()
            }
        }
    }
}

impl From<qbind_core::pool_drops::PoolDropReason> for DropReason {
    fn from(reason: qbind_core::pool_drops::PoolDropReason) -> DropReason {
        use qbind_core::pool_drops::PoolDropReason as P;
        match reason {
            P::Evicted { .. } => DropReason::Evicted,
            P::Replaced { by } => DropReason::Replaced { by },
            P::Refused(cause) => DropReason::Refused { cause },
            P::BatchExpired { .. } => DropReason::BatchExpired,
            P::NonceUsed => DropReason::NonceUsed,
        }
    }
}

/// A committed block as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// The header (its id is computed from it).
    pub header: BlockHeader,
    /// The QC certifying this block, if the node holds it.
    pub qc: Option<QuorumCert>,
    /// Hashes of the transactions in execution order (for a DAG payload:
    /// the certified batches' transactions, resolved).
    pub tx_hashes: Vec<Hash32>,
    /// The state root after executing the block, if executed.
    pub state_root: Option<Hash32>,
}

/// Whether the node follows the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Following the chain.
    Synced,
    /// Catching up towards `target` by height ranges (docs/sync.md).
    CatchingUp {
        /// Highest height seen from peers.
        target: Height,
        /// Blocks committed per second over the last second.
        blocks_per_sec: u64,
        /// Peers with a range request in flight now.
        source_peers: u64,
    },
    /// Fetching a snapshot's state from peers before the node has a store
    /// (state sync, docs/sync.md); only the status is served meanwhile.
    StateSync(StateSyncStatus),
}

/// Where a state sync is ([`SyncState::StateSync`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateSyncStatus {
    /// `proving` (a certified height), `manifest`, `chunks`, `restoring`,
    /// then `done` until the node serves everything.
    pub phase: &'static str,
    /// The certified height being fetched (0 until one is chosen).
    pub target: Height,
    /// Chunks of the state fetched and verified.
    pub chunks_done: u64,
    /// Chunks of the state (0 until its manifest is read).
    pub chunks_total: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Peers it fetches from.
    pub peers: u64,
    /// Peers it dropped.
    pub peers_dropped: u64,
}

/// The node's position in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainStatus {
    /// Highest committed height.
    pub height: Height,
    /// Highest executed height.
    pub executed_height: Height,
    /// Current consensus view.
    pub view: View,
    /// Current epoch.
    pub epoch: Epoch,
    /// Connected peers.
    pub peers: u32,
    /// Sync state.
    pub sync: SyncState,
    /// The transaction pool's depth, when the node reports it.
    pub pool: Option<PoolStatus>,
}

/// How full the node's transaction pool is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    /// Transactions in the pool.
    pub pending: u64,
    /// Transactions accepted by the API and not yet in the pool.
    pub queued: u64,
    /// The most the pool holds.
    pub capacity: u64,
}

/// A read the backend could not serve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Not now (starting, stopping): the client may retry (503).
    #[error("node unavailable")]
    Unavailable,
    /// A store or internal failure (500); `detail` is logged, never sent.
    #[error("internal error: {detail}")]
    Internal {
        /// For the node's log.
        detail: String,
    },
}

/// The node behind the API. Every method may be called concurrently from
/// many requests; implementations must not block the async runtime for long
/// (do store reads that may hit disk in `spawn_blocking` or keep them cheap).
pub trait ApiBackend: Send + Sync + 'static {
    /// The network whose signature tag submitted transactions must carry.
    fn network(&self) -> NetworkEnvironment;

    /// Whether this node takes transactions at all (false on a full node):
    /// if not, submissions are refused with
    /// [`SubmitError::NotAValidator`] before any signature is checked, so
    /// they cost the node no verification.
    fn takes_transactions(&self) -> bool {
        true
    }

    /// Offer a decoded, validly signed transaction to the pool. The backend
    /// decides what depends on state: nonce, balance, duplicates, pool
    /// limits. On success the transaction is pending under
    /// [`CheckedTx::hash`].
    fn submit(&self, tx: CheckedTx) -> impl Future<Output = Result<(), SubmitError>> + Send;

    /// Offer a system transaction (`bytes`, which decode as `tx`;
    /// docs/key-rotation.md). Its signature is *not* checked by the server:
    /// the backend checks it against the validator keys in force. The
    /// default refuses it.
    fn submit_system(
        &self,
        tx: SystemTx,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), SubmitError>> + Send {
        let _ = (tx, bytes);
        async {
            Err(SubmitError::KeyRotationRefused {
                reason: "this node takes no system transactions".into(),
            })
        }
    }

    /// Offer several transactions; one result per transaction, in order.
    /// The default submits them one by one.
    fn submit_batch(
        &self,
        txs: Vec<CheckedTx>,
    ) -> impl Future<Output = Vec<Result<(), SubmitError>>> + Send {
        async move {
            let mut out = Vec::with_capacity(txs.len());
            for tx in txs {
                out.push(self.submit(tx).await);
            }
            out
        }
    }

    /// What the node knows about `hash`.
    fn tx_status(
        &self,
        hash: Hash32,
    ) -> impl Future<Output = Result<TxLookup, BackendError>> + Send;

    /// The committed state of account `id` (an unknown account is the
    /// empty account: balance 0, nonce 0).
    fn account(&self, id: AccountId) -> impl Future<Output = Result<Account, BackendError>> + Send;

    /// The committed block at `height`, if the node holds it.
    fn block(
        &self,
        height: Height,
    ) -> impl Future<Output = Result<Option<BlockInfo>, BackendError>> + Send;

    /// The node's position in the chain.
    fn status(&self) -> impl Future<Output = Result<ChainStatus, BackendError>> + Send;

    /// Serve state sync (`/v1/state-sync/...`, docs/sync.md "State sync")
    /// from the node's snapshots. The default serves nothing
    /// ([`StateSyncReply::NotServed`], 404 `state_sync_unavailable`).
    fn state_sync(
        &self,
        request: StateSyncRequest,
    ) -> impl Future<Output = Result<StateSyncReply, BackendError>> + Send {
        let _ = request;
        async { Ok(StateSyncReply::NotServed) }
    }
}

/// A state-sync request (docs/sync.md "State sync"). Everything served is
/// verified by the client, so the routes need no authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateSyncRequest {
    /// The heights of the snapshots the node serves, newest last.
    Snapshots,
    /// The commit proof (`qbind_core::state_sync::CommitProof`) of a
    /// snapshot's height.
    Proof(Height),
    /// The manifest (`qbind_core::state_sync::StateManifest`) of a snapshot.
    Manifest(Height),
    /// The on-chain key rotations a snapshot records
    /// (`qbind_core::state_sync::KeyLog`).
    KeyLog(Height),
    /// One page (`qbind_core::state_sync::StatePage`) of a chunk: the
    /// accounts after `after` (from the chunk's start when `None`).
    Page {
        /// The snapshot's height.
        height: Height,
        /// The chunk.
        chunk: u32,
        /// The last id the client has.
        after: Option<AccountId>,
    },
}

/// The answer to a [`StateSyncRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateSyncReply {
    /// Snapshot heights, ascending.
    Heights(Vec<u64>),
    /// The canonical encoding of the proof, manifest or page.
    Bytes(Vec<u8>),
    /// No such snapshot or chunk here, or the node serves no state sync.
    NotServed,
}
