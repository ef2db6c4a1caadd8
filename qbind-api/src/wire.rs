//! The JSON bodies of the public API (docs/api.md, docs/openapi.yaml), shared
//! by the server and by `qbind-client`.
//!
//! Conventions: hashes, account ids and binary values are lower-case hex
//! without `0x`; amounts (`u128`) are decimal strings, so that JSON readers
//! with 53-bit numbers do not round them; heights, views, epochs and nonces
//! are JSON numbers (`u64`).

use qbind_core::codec::Encode;
use qbind_core::consensus::{BlockHeader, QuorumCert};
use qbind_core::execution::{Account, Receipt, TxStatus};
use qbind_core::types::{AccountId, Hash32, NetworkEnvironment};
use serde::{Deserialize, Serialize};

/// `u128` as a decimal string in JSON.
pub mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Write `v` as a decimal string.
    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Read a decimal string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<u128>()
            .map_err(|_| D::Error::custom("expected a decimal u128 in a string"))
    }
}

/// `POST /v1/tx`: one signed transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitTxRequest {
    /// Hex of the transaction's canonical encoding
    /// (`qbind_core::execution::Transaction`, docs/wire-format.md).
    pub tx: String,
}

/// The answer to an accepted `POST /v1/tx` (status 202).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitTxResponse {
    /// SHA3-256 of the transaction's bytes: the key of `GET /v1/tx/{hash}`.
    pub hash: String,
}

/// `POST /v1/txs`: a batch of signed transactions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatchRequest {
    /// Hex encodings, at most the server's batch bound.
    pub txs: Vec<String>,
}

/// The answer to `POST /v1/txs` (status 200): one result per transaction, in
/// request order; each is accepted or refused on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitBatchResponse {
    /// One entry per submitted transaction.
    pub results: Vec<BatchItemResult>,
}

/// One transaction of a batch: `hash` when accepted, `error` when refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItemResult {
    /// The transaction hash (also given when refused, if the bytes decoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Every error response: a stable machine code (see [`crate::codes`]) and a
/// human-readable message (not stable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `invalid_signature`.
    pub code: String,
    /// Explanation for people.
    pub message: String,
}

/// `GET /v1/tx/{hash}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatusView {
    /// Accepted and waiting in the pool.
    Pending {
        /// The transaction hash.
        hash: String,
    },
    /// Included in the committed block at `height`; the transfer succeeded
    /// or failed (a failed transfer still paid its fee).
    Committed {
        /// The transaction hash.
        hash: String,
        /// Height of the block.
        height: u64,
        /// Position in the block's transaction list.
        index: u32,
        /// The receipt.
        outcome: OutcomeView,
    },
    /// Not included, with no effect: refused by execution in the block at
    /// `height`.
    Rejected {
        /// The transaction hash.
        hash: String,
        /// Height of the block that refused it, if a block did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        height: Option<u64>,
        /// Stable machine code of the reason, e.g. `bad_nonce`.
        code: String,
        /// The executor's numeric code (2xx, `TxStatus::code`), if a block
        /// refused it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        numeric_code: Option<u16>,
        /// Explanation for people.
        message: String,
    },
    /// Accepted, then let go by the pool without being included (no
    /// effect; the sender may submit it, or a replacement, again).
    Dropped {
        /// The transaction hash.
        hash: String,
        /// Stable machine code: `evicted`, `replaced`, `nonce_used`,
        /// `refused` (the pool refused it after the API accepted it).
        reason: String,
        /// Explanation for people.
        message: String,
    },
}

/// The receipt of an included transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeView {
    /// `success` or `failed`.
    pub result: String,
    /// `TxStatus::code`: 0 success, 1xx failures.
    pub code: u16,
    /// Why the transfer failed (absent on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Gas charged.
    pub gas_used: u64,
    /// `gas_used × max_fee_per_gas`.
    #[serde(with = "u128_string")]
    pub fee: u128,
    /// The burned part of the fee.
    #[serde(with = "u128_string")]
    pub burned: u128,
    /// The proposer's part of the fee.
    #[serde(with = "u128_string")]
    pub proposer_reward: u128,
}

impl TxStatusView {
    /// The view of a transaction executed in the block at `height`, position
    /// `index`: committed, or rejected when the executor refused it.
    #[must_use]
    pub fn executed(hash: Hash32, height: u64, index: u32, receipt: &Receipt) -> TxStatusView {
        let hash = hex::encode(hash.0);
        match receipt.status {
            TxStatus::Rejected(reason) => TxStatusView::Rejected {
                hash,
                height: Some(height),
                code: crate::codes::reject_reason(&reason).to_string(),
                numeric_code: Some(receipt.status.code()),
                message: reason.to_string(),
            },
            TxStatus::Success | TxStatus::Failed(_) => {
                let (result, reason) = match receipt.status {
                    TxStatus::Failed(f) => ("failed", Some(f.to_string())),
                    _ => ("success", None),
                };
                TxStatusView::Committed {
                    hash,
                    height,
                    index,
                    outcome: OutcomeView {
                        result: result.to_string(),
                        code: receipt.status.code(),
                        reason,
                        gas_used: receipt.gas_used,
                        fee: receipt.fee,
                        burned: receipt.burned,
                        proposer_reward: receipt.proposer_reward,
                    },
                }
            }
        }
    }

    /// Whether the transaction reached a final state (committed, rejected
    /// or dropped).
    #[must_use]
    pub fn is_final(&self) -> bool {
        !matches!(self, TxStatusView::Pending { .. })
    }
}

/// `GET /v1/account/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// The account id (hex of 32 bytes).
    pub account: String,
    /// Balance in base units.
    #[serde(with = "u128_string")]
    pub balance: u128,
    /// Transactions included so far: the nonce of the account's next one.
    pub nonce: u64,
}

impl AccountView {
    /// The view of `account` under `id`.
    #[must_use]
    pub fn new(id: AccountId, account: Account) -> AccountView {
        AccountView {
            account: hex::encode(id.0),
            balance: account.balance,
            nonce: account.nonce,
        }
    }
}

/// `GET /v1/block/{height}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    /// Height.
    pub height: u64,
    /// Block id (SHA3-256 of the header encoding).
    pub id: String,
    /// Epoch.
    pub epoch: u64,
    /// View it was proposed in.
    pub view: u64,
    /// Parent block id.
    pub parent_id: String,
    /// View of the QC the block carries.
    pub justify_view: u64,
    /// Proposer's validator index.
    pub proposer: u32,
    /// SHA3-256 of the payload encoding.
    pub payload_digest: String,
    /// Commitment over the certified batches (zero for inline transactions).
    pub batch_commitment: String,
    /// Height the proposer had executed.
    pub exec_height: u64,
    /// The proposer's state root at `exec_height`.
    pub exec_state_root: String,
    /// Hex of the canonical encoding of the QC that certifies this block, if
    /// the node holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qc: Option<String>,
    /// Hashes of the block's transactions, in execution order.
    pub tx_hashes: Vec<String>,
    /// The state root after executing this block, if the node executed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_root: Option<String>,
}

impl BlockView {
    /// The view of a block from its parts.
    #[must_use]
    pub fn new(
        header: &BlockHeader,
        qc: Option<&QuorumCert>,
        tx_hashes: &[Hash32],
        state_root: Option<Hash32>,
    ) -> BlockView {
        BlockView {
            height: header.height.0,
            id: hex::encode(header.id().0),
            epoch: header.epoch.0,
            view: header.view.0,
            parent_id: hex::encode(header.parent_id.0),
            justify_view: header.justify_view.0,
            proposer: header.proposer.0,
            payload_digest: hex::encode(header.payload_digest.0),
            batch_commitment: hex::encode(header.batch_commitment.0),
            exec_height: header.exec_height.0,
            exec_state_root: hex::encode(header.exec_state_root.0),
            qc: qc.map(|qc| hex::encode(qc.to_bytes())),
            tx_hashes: tx_hashes.iter().map(|h| hex::encode(h.0)).collect(),
            state_root: state_root.map(|r| hex::encode(r.0)),
        }
    }
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// `devnet`, `testnet` or `mainnet`: the network transactions must be
    /// signed for.
    pub network: String,
    /// The chain id, `0x` and 16 hex digits (a string: it does not fit a
    /// 53-bit JSON number).
    pub chain_id: String,
    /// Highest committed height.
    pub height: u64,
    /// Highest executed height.
    pub executed_height: u64,
    /// Current consensus view.
    pub view: u64,
    /// Current epoch.
    pub epoch: u64,
    /// Connected peers.
    pub peers: u32,
    /// Whether the node is following the chain or catching up.
    pub sync: SyncView,
    /// The transaction pool's depth (absent when the node does not report
    /// it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolView>,
}

/// The pool in [`StatusView`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolView {
    /// Transactions in the pool.
    pub pending: u64,
    /// Transactions accepted by the API and not yet in the pool.
    pub queued: u64,
    /// The most the pool holds.
    pub capacity: u64,
}

/// Sync state in [`StatusView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SyncView {
    /// Following the chain.
    Synced,
    /// Catching up towards `target_height` by height ranges.
    CatchingUp {
        /// The highest height seen from peers.
        target_height: u64,
        /// `target_height` minus the committed height (absent from nodes
        /// before it was reported, as the next two).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        behind_by: Option<u64>,
        /// Blocks committed per second over the last second.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blocks_per_sec: Option<u64>,
        /// Peers with a range request in flight now (the sources).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_peers: Option<u64>,
    },
    /// Fetching a snapshot's state from peers before the node has a store
    /// (state sync); the chain figures of the status are 0 meanwhile and
    /// every other route answers 503 `unavailable`.
    StateSync {
        /// `proving` (a certified height), `manifest`, `chunks`,
        /// `restoring`, then `done` until the node serves everything.
        phase: String,
        /// The certified height being fetched (0 until one is chosen).
        target_height: u64,
        /// Chunks fetched and verified.
        chunks_done: u64,
        /// Chunks of the state (0 until its manifest is read).
        chunks_total: u64,
        /// Bytes received.
        bytes: u64,
        /// Peers it fetches from.
        peers: u64,
        /// Peers it dropped.
        peers_dropped: u64,
    },
}

/// The chain id of `env` as [`StatusView::chain_id`] shows it.
#[must_use]
pub fn chain_id_text(env: NetworkEnvironment) -> String {
    format!("{:#018x}", env.chain_id().0)
}

/// The name of `env` in [`StatusView::network`].
#[must_use]
pub fn network_name(env: NetworkEnvironment) -> &'static str {
    match env {
        NetworkEnvironment::Devnet => "devnet",
        NetworkEnvironment::Testnet => "testnet",
        NetworkEnvironment::Mainnet => "mainnet",
    }
}

/// The environment named `name` ([`network_name`]'s inverse).
#[must_use]
pub fn parse_network(name: &str) -> Option<NetworkEnvironment> {
    match name {
        "devnet" => Some(NetworkEnvironment::Devnet),
        "testnet" => Some(NetworkEnvironment::Testnet),
        "mainnet" => Some(NetworkEnvironment::Mainnet),
        _ => None,
    }
}

/// Parse 64 hex digits (optionally `0x`-prefixed) as 32 bytes.
#[must_use]
pub fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Parse a transaction hash.
#[must_use]
pub fn parse_hash(text: &str) -> Option<Hash32> {
    parse_hex32(text).map(Hash32)
}

/// Parse an account id.
#[must_use]
pub fn parse_account(text: &str) -> Option<AccountId> {
    parse_hex32(text).map(AccountId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_strings_and_round_trip() {
        let view = AccountView {
            account: "00".repeat(32),
            balance: u128::MAX,
            nonce: 7,
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["balance"], u128::MAX.to_string());
        let back: AccountView = serde_json::from_value(json).unwrap();
        assert_eq!(back, view);
        assert!(
            serde_json::from_str::<AccountView>(r#"{"account":"","balance":"-1","nonce":0}"#)
                .is_err()
        );
    }

    /// The three sync states as clients read them (golden JSON).
    #[test]
    fn sync_states_have_a_stable_json_shape() {
        let cases = [
            (SyncView::Synced, r#"{"state":"synced"}"#),
            (
                SyncView::CatchingUp {
                    target_height: 9_000,
                    behind_by: Some(4_000),
                    blocks_per_sec: Some(700),
                    source_peers: Some(3),
                },
                r#"{"state":"catching_up","target_height":9000,"behind_by":4000,"blocks_per_sec":700,"source_peers":3}"#,
            ),
            (
                SyncView::StateSync {
                    phase: "chunks".into(),
                    target_height: 500,
                    chunks_done: 3,
                    chunks_total: 16,
                    bytes: 1_234,
                    peers: 2,
                    peers_dropped: 1,
                },
                r#"{"state":"state_sync","phase":"chunks","target_height":500,"chunks_done":3,"chunks_total":16,"bytes":1234,"peers":2,"peers_dropped":1}"#,
            ),
        ];
        for (view, json) in cases {
            assert_eq!(serde_json::to_string(&view).unwrap(), json);
            assert_eq!(serde_json::from_str::<SyncView>(json).unwrap(), view);
        }
        // A node of an earlier version reports only the target.
        assert_eq!(
            serde_json::from_str::<SyncView>(r#"{"state":"catching_up","target_height":9}"#)
                .unwrap(),
            SyncView::CatchingUp {
                target_height: 9,
                behind_by: None,
                blocks_per_sec: None,
                source_peers: None,
            }
        );
    }

    #[test]
    fn hex32_parsing_refuses_wrong_lengths_and_digits() {
        assert_eq!(parse_hex32(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(
            parse_hex32(&format!("0x{}", "ab".repeat(32))),
            Some([0xab; 32])
        );
        assert_eq!(parse_hex32(&"ab".repeat(31)), None);
        assert_eq!(parse_hex32(&"zz".repeat(32)), None);
        assert_eq!(parse_hex32(""), None);
    }
}

/// `GET /v1/state-sync/snapshots`: the heights of the snapshots a node
/// serves for state sync, ascending (docs/sync.md "State sync").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSnapshotsView {
    /// Snapshot heights, ascending.
    pub heights: Vec<u64>,
}
