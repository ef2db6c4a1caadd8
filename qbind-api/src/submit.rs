//! What a submitted transaction must pass before a backend sees it, and the
//! typed reasons a submission is refused (each with its HTTP status and
//! stable code, docs/api.md "Errors").
//!
//! The server does the state-independent checks itself ([`CheckedTx::check`]:
//! canonical decoding and the ML-DSA-44 signature under the node's network
//! tag), so a backend only ever receives well-formed, validly signed
//! transactions and decides the rest (nonce, balance, pool limits).

use qbind_core::codec::{Decode, DecodeError};
use qbind_core::execution::{RejectReason, Transaction};
use qbind_core::fee_mempool::MempoolRejection;
use qbind_core::types::{Hash32, NetworkEnvironment};

use crate::codes;

/// A transaction that decoded canonically and whose signature verifies for
/// the node's network. Only [`CheckedTx::check`] builds one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedTx {
    bytes: Vec<u8>,
    tx: Transaction,
    hash: Hash32,
}

impl CheckedTx {
    /// Decode `bytes` as a [`Transaction`] and verify its signature for
    /// `env`. A signature that fails for `env` but verifies for another
    /// network is reported as [`SubmitError::WrongChain`] (at most two more
    /// verifications, only on the failure path).
    pub fn check(env: NetworkEnvironment, bytes: Vec<u8>) -> Result<CheckedTx, SubmitError> {
        let tx = Transaction::from_bytes(&bytes)
            .map_err(|reason| SubmitError::MalformedTransaction { reason })?;
        if tx.verify(env).is_err() {
            let others = [
                NetworkEnvironment::Devnet,
                NetworkEnvironment::Testnet,
                NetworkEnvironment::Mainnet,
            ];
            return Err(
                match others
                    .into_iter()
                    .find(|other| *other != env && tx.verify(*other).is_ok())
                {
                    Some(signed_for) => SubmitError::WrongChain {
                        signed_for,
                        expected: env,
                    },
                    None => SubmitError::InvalidSignature,
                },
            );
        }
        let hash = Hash32::digest(&bytes);
        Ok(CheckedTx { bytes, tx, hash })
    }

    /// The canonical bytes as submitted (what the pool and blocks carry).
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The decoded transaction.
    #[must_use]
    pub fn transaction(&self) -> &Transaction {
        &self.tx
    }

    /// SHA3-256 of [`Self::bytes`]: the id the pool and the receipt index
    /// use (`qbind_core::fee_mempool::MetaTx` computes the same).
    #[must_use]
    pub fn hash(&self) -> Hash32 {
        self.hash
    }

    /// The bytes, consuming the value.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Why a submitted transaction was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The bytes are not a canonical transaction.
    #[error("not a canonical transaction: {reason}")]
    MalformedTransaction {
        /// The decoder's reason.
        reason: DecodeError,
    },
    /// The signature does not verify for this network.
    #[error("signature does not verify")]
    InvalidSignature,
    /// Validly signed, but for another network.
    #[error("signed for {signed_for:?}, this node is {expected:?}")]
    WrongChain {
        /// The network the signature verifies for.
        signed_for: NetworkEnvironment,
        /// This node's network.
        expected: NetworkEnvironment,
    },
    /// The nonce was already used.
    #[error("nonce {got} already used: the account's next nonce is {expected}")]
    StaleNonce {
        /// The account's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The nonce is further ahead than the pool accepts.
    #[error("nonce {got} too far ahead of the account's next nonce {expected}")]
    NonceTooHigh {
        /// The account's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The sender cannot pay.
    #[error("balance {balance} cannot pay {needed}")]
    InsufficientBalance {
        /// The sender's balance.
        balance: u128,
        /// What the transaction may cost.
        needed: u128,
    },
    /// A state-independent execution rule refuses it.
    #[error("inadmissible: {0}")]
    Inadmissible(RejectReason),
    /// A key-rotation system transaction that would not apply now
    /// (docs/key-rotation.md).
    #[error("key rotation refused: {reason}")]
    KeyRotationRefused {
        /// The rule it breaks.
        reason: String,
    },
    /// Already pending or committed.
    #[error("transaction already known")]
    AlreadyKnown,
    /// A replacement without the required fee bump.
    #[error("replacement fee {offered} below the required {required}")]
    ReplacementUnderpriced {
        /// Fee per gas offered.
        offered: u128,
        /// Fee per gas required.
        required: u128,
    },
    /// The pool is full (or its eviction rate limit is reached).
    #[error("transaction pool full")]
    PoolFull,
    /// The sender has too many pending transactions.
    #[error("sender has {limit} pending transactions already")]
    SenderLimit {
        /// The per-sender limit.
        limit: usize,
    },
    /// The node cannot take transactions now (starting, stopping, syncing).
    #[error("node unavailable")]
    Unavailable,
    /// This node is a full node: it follows and serves the chain but has no
    /// pool that reaches a block (submit to a validator's API instead).
    #[error("this node is a full node and takes no transactions: submit to a validator")]
    NotAValidator,
    /// An internal failure; `detail` is logged, never sent to the client.
    #[error("internal error: {detail}")]
    Internal {
        /// For the node's log.
        detail: String,
    },
}

impl SubmitError {
    /// The stable machine code ([`crate::codes`]).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            SubmitError::MalformedTransaction { .. } => codes::MALFORMED_TRANSACTION,
            SubmitError::InvalidSignature => codes::INVALID_SIGNATURE,
            SubmitError::WrongChain { .. } => codes::WRONG_CHAIN,
            SubmitError::StaleNonce { .. } => codes::STALE_NONCE,
            SubmitError::NonceTooHigh { .. } => codes::NONCE_TOO_HIGH,
            SubmitError::InsufficientBalance { .. } => codes::INSUFFICIENT_BALANCE,
            SubmitError::Inadmissible(_) => codes::INADMISSIBLE,
            SubmitError::KeyRotationRefused { .. } => codes::KEY_ROTATION_REFUSED,
            SubmitError::AlreadyKnown => codes::ALREADY_KNOWN,
            SubmitError::ReplacementUnderpriced { .. } => codes::REPLACEMENT_UNDERPRICED,
            SubmitError::PoolFull => codes::POOL_FULL,
            SubmitError::SenderLimit { .. } => codes::SENDER_LIMIT,
            SubmitError::Unavailable => codes::UNAVAILABLE,
            SubmitError::NotAValidator => codes::NOT_A_VALIDATOR,
            SubmitError::Internal { .. } => codes::INTERNAL,
        }
    }

    /// The HTTP status of the error response.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            SubmitError::MalformedTransaction { .. } => 400,
            SubmitError::InvalidSignature
            | SubmitError::WrongChain { .. }
            | SubmitError::StaleNonce { .. }
            | SubmitError::NonceTooHigh { .. }
            | SubmitError::InsufficientBalance { .. }
            | SubmitError::Inadmissible(_)
            | SubmitError::KeyRotationRefused { .. } => 422,
            SubmitError::AlreadyKnown | SubmitError::ReplacementUnderpriced { .. } => 409,
            SubmitError::PoolFull | SubmitError::SenderLimit { .. } => 429,
            SubmitError::Unavailable => 503,
            SubmitError::NotAValidator => 421,
            SubmitError::Internal { .. } => 500,
        }
    }

    /// The message sent to the client (internal details withheld).
    #[must_use]
    pub fn public_message(&self) -> String {
        match self {
            SubmitError::Internal { .. } => "internal error".to_string(),
            other => other.to_string(),
        }
    }

    /// The submission-time verdict matching an execution rejection (for
    /// backends that pre-execute against current state).
    #[must_use]
    pub fn from_reject_reason(reason: RejectReason) -> SubmitError {
        match reason {
            RejectReason::BadNonce { expected, got } if got < expected => {
                SubmitError::StaleNonce { expected, got }
            }
            RejectReason::BadNonce { expected, got } => SubmitError::NonceTooHigh { expected, got },
            RejectReason::CannotPayMaxFee { balance, max_fee } => {
                SubmitError::InsufficientBalance {
                    balance,
                    needed: max_fee,
                }
            }
            other => SubmitError::Inadmissible(other),
        }
    }
}

impl From<MempoolRejection> for SubmitError {
    fn from(rejection: MempoolRejection) -> SubmitError {
        match rejection {
            MempoolRejection::Duplicate => SubmitError::AlreadyKnown,
            MempoolRejection::V0PayloadForbidden => {
                SubmitError::Inadmissible(RejectReason::PayloadVersionNotAllowed)
            }
            MempoolRejection::SenderLimit { limit } => SubmitError::SenderLimit { limit },
            MempoolRejection::ReplacementUnderpriced { offered, required } => {
                SubmitError::ReplacementUnderpriced { offered, required }
            }
            MempoolRejection::SystemTxNotNewer { .. } => SubmitError::KeyRotationRefused {
                reason: rejection.to_string(),
            },
            MempoolRejection::PoolFull { .. } | MempoolRejection::EvictionRateLimited { .. } => {
                SubmitError::PoolFull
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qbind_core::codec::Encode;
    use qbind_core::crypto::KeyPair;
    use qbind_core::execution::{TransferPayload, TransferPayloadV1};
    use qbind_core::types::AccountId;

    fn signed(env: NetworkEnvironment) -> Vec<u8> {
        let payload = TransferPayload::V1(TransferPayloadV1 {
            recipient: AccountId([2u8; 32]),
            amount: 1,
            gas_limit: 50_000,
            max_fee_per_gas: 1,
        });
        Transaction::sign(&KeyPair::from_seed(&[1u8; 32]), env, 0, payload).to_bytes()
    }

    #[test]
    fn check_tells_bad_signature_from_wrong_chain() {
        let env = NetworkEnvironment::Devnet;
        let ok = CheckedTx::check(env, signed(env)).unwrap();
        assert_eq!(ok.hash(), Hash32::digest(ok.bytes()));
        assert_eq!(
            CheckedTx::check(env, signed(NetworkEnvironment::Testnet)),
            Err(SubmitError::WrongChain {
                signed_for: NetworkEnvironment::Testnet,
                expected: env
            })
        );
        let mut bad = signed(env);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            CheckedTx::check(env, bad),
            Err(SubmitError::InvalidSignature)
        );
        let mut long = signed(env);
        long.push(0);
        assert!(matches!(
            CheckedTx::check(env, long),
            Err(SubmitError::MalformedTransaction { .. })
        ));
    }

    #[test]
    fn nonce_rejections_split_into_stale_and_too_high() {
        assert_eq!(
            SubmitError::from_reject_reason(RejectReason::BadNonce {
                expected: 5,
                got: 4
            })
            .code(),
            codes::STALE_NONCE
        );
        assert_eq!(
            SubmitError::from_reject_reason(RejectReason::BadNonce {
                expected: 5,
                got: 9
            })
            .code(),
            codes::NONCE_TOO_HIGH
        );
        assert_eq!(
            SubmitError::Internal {
                detail: "disk path /secret".into()
            }
            .public_message(),
            "internal error"
        );
    }
}
