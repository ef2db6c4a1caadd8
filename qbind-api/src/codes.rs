//! The stable machine-readable error codes of the API (`ErrorBody::code`,
//! docs/api.md "Errors"). Clients match on these strings; messages may change,
//! codes may not.

use qbind_core::execution::RejectReason;

/// 400: the body is not the JSON the route expects.
pub const MALFORMED_JSON: &str = "malformed_json";
/// 400: a hex field or path segment is not valid hex of the right length.
pub const BAD_HEX: &str = "bad_hex";
/// 400: the bytes are not a canonical transaction encoding.
pub const MALFORMED_TRANSACTION: &str = "malformed_transaction";
/// 400: a path segment is not a valid number.
pub const BAD_PATH: &str = "bad_path";
/// 400: the batch is empty.
pub const EMPTY_BATCH: &str = "empty_batch";
/// 413: the request body exceeds the route's limit.
pub const BODY_TOO_LARGE: &str = "body_too_large";
/// 413: the batch holds more transactions than the server accepts at once.
pub const BATCH_TOO_LARGE: &str = "batch_too_large";
/// 422: the signature does not verify for this network.
pub const INVALID_SIGNATURE: &str = "invalid_signature";
/// 422: the transaction is validly signed, but for another network.
pub const WRONG_CHAIN: &str = "wrong_chain";
/// 422: the nonce is below the sender's next nonce (already used).
pub const STALE_NONCE: &str = "stale_nonce";
/// 422: the nonce is further ahead of the sender's next nonce than the pool
/// accepts.
pub const NONCE_TOO_HIGH: &str = "nonce_too_high";
/// 422: the sender cannot pay the transaction's maximum fee (plus amount).
pub const INSUFFICIENT_BALANCE: &str = "insufficient_balance";
/// 422: a state-independent execution rule refuses it (gas limit, payload
/// version, fee overflow); the message names the rule.
pub const INADMISSIBLE: &str = "inadmissible";
/// 422: a key-rotation system transaction would not apply now (bad
/// signature, effective epoch too soon, key reused, a rotation pending);
/// the message says which rule (docs/key-rotation.md).
pub const KEY_ROTATION_REFUSED: &str = "key_rotation_refused";
/// 409: the same transaction is already pending or committed.
pub const ALREADY_KNOWN: &str = "already_known";
/// 409: replaces a pending transaction without the required fee increase.
pub const REPLACEMENT_UNDERPRICED: &str = "replacement_underpriced";
/// 429: this client sent too many requests; retry after `Retry-After`.
pub const RATE_LIMITED: &str = "rate_limited";
/// 429: the pool is full (or its eviction limit reached); retry later.
pub const POOL_FULL: &str = "pool_full";
/// 429: the sender has as many pending transactions as the pool allows.
pub const SENDER_LIMIT: &str = "sender_limit";
/// 404: no such route.
pub const NOT_FOUND: &str = "not_found";
/// 404: the node knows no transaction with this hash.
pub const TX_NOT_FOUND: &str = "tx_not_found";
/// 404: the node holds no committed block at this height (not yet
/// committed, or pruned).
pub const BLOCK_NOT_FOUND: &str = "block_not_found";
/// 405: the route exists, the method does not.
pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
/// 408: the request took longer than the server's request timeout.
pub const TIMEOUT: &str = "timeout";
/// 503: the node cannot serve this now (starting, stopping, catching up).
pub const UNAVAILABLE: &str = "unavailable";
/// 421: this node is a full node: it serves reads but takes no
/// transactions (submit them to a validator's API).
pub const NOT_A_VALIDATOR: &str = "not_a_validator";
/// 500: an internal error (details are in the node's log only).
pub const INTERNAL: &str = "internal";
/// 404: the node serves no state sync, or not that snapshot or chunk.
pub const STATE_SYNC_UNAVAILABLE: &str = "state_sync_unavailable";

/// The code of an execution rejection in `TxStatusView::Rejected`.
#[must_use]
pub fn reject_reason(reason: &RejectReason) -> &'static str {
    match reason {
        RejectReason::PayloadVersionNotAllowed => "payload_version_not_allowed",
        RejectReason::GasLimitBelowMinimum { .. } => "gas_limit_below_minimum",
        RejectReason::GasLimitBelowIntrinsic { .. } => "gas_limit_below_intrinsic",
        RejectReason::MaxFeeOverflow => "max_fee_overflow",
        RejectReason::BlockGasLimitExceeded { .. } => "block_gas_limit_exceeded",
        RejectReason::BadNonce { .. } => "bad_nonce",
        RejectReason::NonceExhausted => "nonce_exhausted",
        RejectReason::CannotPayMaxFee { .. } => "cannot_pay_max_fee",
        RejectReason::SystemTxRefused => KEY_ROTATION_REFUSED,
    }
}
