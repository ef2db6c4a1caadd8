//! Mempool admission: what a transaction must pass against the current
//! state before a node pools, batches or gossips it (issue #17 finding 2;
//! spec §3.3, §4.4).
//!
//! Execution decides inclusion from the chain alone (nonces, balances,
//! block order; see [`super::BlockGas`]), so admission is not needed for
//! safety. It keeps what can never be included out of the pools: without
//! it anyone could resubmit committed transactions (stale nonces) or fill
//! batches with transactions their senders cannot pay for, and every
//! validator would carry them to consensus and execution.
//!
//! [`check_transaction`] is pure: it reads the sender's account through an
//! [`AccountReader`] (a `&dyn AccountReader` works, and
//! [`super::BackendAccounts`] reads a [`crate::traits::StateBackend`]) and
//! decides, in this order, cheapest and state-free first:
//!
//! | Code | Rejection |
//! |---|---|
//! | `undecodable` | not a canonical [`Transaction`] |
//! | `payload_version_not_allowed`, `gas_limit_below_minimum`, `gas_limit_below_intrinsic`, `max_fee_overflow` | execution's state-free rules ([`super::admit_transaction`]) |
//! | `gas_limit_above_block` | the gas limit exceeds the block gas limit: no block can include it |
//! | `wrong_chain` | the signature verifies only under another network's domain (chain id) |
//! | `bad_signature` | the signature verifies under no network |
//! | `nonce_stale` | nonce < the account's nonce (already used, e.g. a committed transaction resubmitted) |
//! | `nonce_exhausted` | the account's nonce is `u64::MAX`: nothing more can be included |
//! | `nonce_too_far_ahead` | nonce > the account's nonce + [`AdmissionPolicy::max_nonce_ahead`] |
//! | `cost_overflow` | `amount + gas_limit × max_fee_per_gas` does not fit in `u128` |
//! | `insufficient_balance` | balance < `amount + gas_limit × max_fee_per_gas` |
//! | `state_unavailable` | the sender's account could not be read (not the sender's fault) |
//!
//! The signature is checked before the state is read, so unauthenticated
//! bytes never cause a storage read. A transaction for another network is
//! told apart from a forged one by verifying it under the other networks'
//! domains, which only happens once the check under this network's has
//! failed: at most three verifications for a rejected transaction, one for
//! an accepted one.
//!
//! The nonce and balance checks use the *executed* state: a sender may have
//! several transactions pending (nonces ahead of the account's, up to the
//! bound), and each is checked alone against the balance, so admission
//! cannot promise inclusion; execution still decides.

use super::executor::{RejectReason, admit_transaction};
use super::gas::ExecutionConfig;
use super::state::{AccountReader, StateError};
use super::tx::Transaction;
use super::verified::VerifiedSet;
use crate::codec::{Decode, DecodeError};
use crate::types::NetworkEnvironment;

/// The default bound on how far ahead of the account's nonce a pooled
/// transaction may be: equal to the MainNet pool's per-sender limit
/// ([`crate::fee_mempool::FeeMempoolConfig::mainnet`], 64), so a sender can
/// fill its share of the pool with consecutive nonces but not park
/// transactions that cannot execute before 64 others of its own have.
pub const MAX_NONCE_AHEAD: u64 = 64;

/// What [`check_transaction`] checks against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// The network whose signature domain (chain id) transactions must use.
    pub env: NetworkEnvironment,
    /// The execution rules (profile, gas schedule, block gas limit).
    pub config: ExecutionConfig,
    /// A transaction's nonce may exceed the account's by at most this much.
    pub max_nonce_ahead: u64,
}

impl AdmissionPolicy {
    /// The policy for `env` and `config`, with [`MAX_NONCE_AHEAD`].
    #[must_use]
    pub fn new(env: NetworkEnvironment, config: ExecutionConfig) -> Self {
        AdmissionPolicy {
            env,
            config,
            max_nonce_ahead: MAX_NONCE_AHEAD,
        }
    }
}

/// Why a transaction was not admitted. Each variant has a stable
/// machine-readable [`code`](AdmissionError::code) and an HTTP status
/// ([`http_status`](AdmissionError::http_status)) for the public API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// The bytes are not a canonical transaction.
    #[error("not a transaction: {source}")]
    Undecodable {
        /// The decoding error.
        source: DecodeError,
    },
    /// Refused by execution's state-free rules (codes 201–204 there).
    #[error(transparent)]
    Invalid {
        /// The rule it breaks.
        reason: RejectReason,
    },
    /// The gas limit exceeds the block gas limit: no block can include it.
    #[error("gas limit {gas_limit} above the block gas limit {block_gas_limit}")]
    GasLimitAboveBlock {
        /// Declared.
        gas_limit: u64,
        /// The block's.
        block_gas_limit: u64,
    },
    /// Signed for another network (its chain id is in the signed domain).
    #[error("signed for {signed_for:?}, this node runs {expected:?}")]
    WrongChain {
        /// The network whose domain its signature verifies under.
        signed_for: NetworkEnvironment,
        /// This node's network.
        expected: NetworkEnvironment,
    },
    /// The signature verifies under no network.
    #[error("bad signature")]
    BadSignature,
    /// The nonce was already used.
    #[error("nonce {got} is below the account's nonce {account_nonce}")]
    NonceStale {
        /// The account's nonce.
        account_nonce: u64,
        /// The transaction's.
        got: u64,
    },
    /// The account's nonce is `u64::MAX`; no transaction can be included.
    #[error("the sender's nonce is exhausted")]
    NonceExhausted,
    /// The nonce is too far ahead of the account's.
    #[error("nonce {got} is more than {max_ahead} ahead of the account's nonce {account_nonce}")]
    NonceTooFarAhead {
        /// The account's nonce.
        account_nonce: u64,
        /// The transaction's.
        got: u64,
        /// The bound.
        max_ahead: u64,
    },
    /// `amount + gas_limit × max_fee_per_gas` overflows `u128`.
    #[error("amount plus maximum fee overflows")]
    CostOverflow,
    /// The balance does not cover the amount and the maximum fee.
    #[error("balance {balance} below amount plus maximum fee {needed}")]
    InsufficientBalance {
        /// The sender's balance.
        balance: u128,
        /// `amount + gas_limit × max_fee_per_gas`.
        needed: u128,
    },
    /// The sender's account could not be read.
    #[error("state unavailable: {source}")]
    StateUnavailable {
        /// The read error.
        source: StateError,
    },
}

impl AdmissionError {
    /// A stable machine-readable code (never renamed; new variants get new
    /// codes).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            AdmissionError::Undecodable { .. } => "undecodable",
            AdmissionError::Invalid { reason } => match reason {
                RejectReason::PayloadVersionNotAllowed => "payload_version_not_allowed",
                RejectReason::GasLimitBelowMinimum { .. } => "gas_limit_below_minimum",
                RejectReason::GasLimitBelowIntrinsic { .. } => "gas_limit_below_intrinsic",
                RejectReason::MaxFeeOverflow => "max_fee_overflow",
                // Not produced by the state-free rules; mapped for totality.
                RejectReason::BlockGasLimitExceeded { .. } => "gas_limit_above_block",
                RejectReason::BadNonce { .. } => "nonce_stale",
                RejectReason::NonceExhausted => "nonce_exhausted",
                RejectReason::CannotPayMaxFee { .. } => "insufficient_balance",
                RejectReason::SystemTxRefused => "key_rotation_refused",
            },
            AdmissionError::GasLimitAboveBlock { .. } => "gas_limit_above_block",
            AdmissionError::WrongChain { .. } => "wrong_chain",
            AdmissionError::BadSignature => "bad_signature",
            AdmissionError::NonceStale { .. } => "nonce_stale",
            AdmissionError::NonceExhausted => "nonce_exhausted",
            AdmissionError::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
            AdmissionError::CostOverflow => "cost_overflow",
            AdmissionError::InsufficientBalance { .. } => "insufficient_balance",
            AdmissionError::StateUnavailable { .. } => "state_unavailable",
        }
    }

    /// The HTTP status the public API answers with: 400 for a malformed or
    /// invalid transaction, 409 for a nonce that conflicts with the
    /// account's, 422 when the sender cannot pay, 503 when the node could
    /// not read its state (the only one that is not the client's fault).
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            AdmissionError::Undecodable { .. }
            | AdmissionError::Invalid { .. }
            | AdmissionError::GasLimitAboveBlock { .. }
            | AdmissionError::WrongChain { .. }
            | AdmissionError::BadSignature
            | AdmissionError::CostOverflow => 400,
            AdmissionError::NonceStale { .. }
            | AdmissionError::NonceExhausted
            | AdmissionError::NonceTooFarAhead { .. } => 409,
            AdmissionError::InsufficientBalance { .. } => 422,
            AdmissionError::StateUnavailable { .. } => 503,
        }
    }
}

/// Check `bytes` for admission to a pool against `state` (the executed
/// state); returns the decoded transaction if it may be pooled. Never
/// panics, whatever the bytes.
pub fn check_transaction<R: AccountReader + ?Sized>(
    state: &R,
    policy: &AdmissionPolicy,
    bytes: &[u8],
) -> Result<Transaction, AdmissionError> {
    check(state, policy, bytes, None)
}

/// [`check_transaction`] with the signature check going through `verified`
/// (when it is for the policy's network): a transaction it holds is not
/// verified again, one it lacks is verified once and remembered
/// ([`super::verified`]).
pub fn check_transaction_verified<R: AccountReader + ?Sized>(
    state: &R,
    policy: &AdmissionPolicy,
    bytes: &[u8],
    verified: &VerifiedSet,
) -> Result<Transaction, AdmissionError> {
    check(state, policy, bytes, Some(verified))
}

fn check<R: AccountReader + ?Sized>(
    state: &R,
    policy: &AdmissionPolicy,
    bytes: &[u8],
    verified: Option<&VerifiedSet>,
) -> Result<Transaction, AdmissionError> {
    let tx =
        Transaction::from_bytes(bytes).map_err(|source| AdmissionError::Undecodable { source })?;
    let admission = admit_transaction(&policy.config, &tx)
        .map_err(|reason| AdmissionError::Invalid { reason })?;
    if admission.gas_limit > policy.config.block_gas_limit {
        return Err(AdmissionError::GasLimitAboveBlock {
            gas_limit: admission.gas_limit,
            block_gas_limit: policy.config.block_gas_limit,
        });
    }
    check_signature(&tx, policy.env, verified.filter(|v| v.env() == policy.env))?;
    let account = state
        .account(&tx.sender_id())
        .map_err(|source| AdmissionError::StateUnavailable { source })?;
    if tx.nonce() < account.nonce {
        return Err(AdmissionError::NonceStale {
            account_nonce: account.nonce,
            got: tx.nonce(),
        });
    }
    if account.nonce == u64::MAX {
        return Err(AdmissionError::NonceExhausted);
    }
    // tx.nonce() >= account.nonce here, so the difference cannot underflow.
    if tx.nonce().saturating_sub(account.nonce) > policy.max_nonce_ahead {
        return Err(AdmissionError::NonceTooFarAhead {
            account_nonce: account.nonce,
            got: tx.nonce(),
            max_ahead: policy.max_nonce_ahead,
        });
    }
    let needed = tx
        .payload()
        .amount()
        .checked_add(admission.max_fee)
        .ok_or(AdmissionError::CostOverflow)?;
    if account.balance < needed {
        return Err(AdmissionError::InsufficientBalance {
            balance: account.balance,
            needed,
        });
    }
    Ok(tx)
}

/// The signature under `env`'s domain; on failure, whether it is another
/// network's transaction.
fn check_signature(
    tx: &Transaction,
    env: NetworkEnvironment,
    verified: Option<&VerifiedSet>,
) -> Result<(), AdmissionError> {
    let ok = match verified {
        Some(set) => set.verify(tx).is_ok(),
        None => tx.verify(env).is_ok(),
    };
    if ok {
        return Ok(());
    }
    [
        NetworkEnvironment::Devnet,
        NetworkEnvironment::Testnet,
        NetworkEnvironment::Mainnet,
    ]
    .into_iter()
    .filter(|other| *other != env)
    .find(|other| tx.verify(*other).is_ok())
    .map_or(Err(AdmissionError::BadSignature), |signed_for| {
        Err(AdmissionError::WrongChain {
            signed_for,
            expected: env,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encode;
    use crate::crypto::{KeyPair, Signature};
    use crate::execution::{
        Account, Ledger, StateSummary, TransferPayload, TransferPayloadV0, TransferPayloadV1,
    };
    use crate::traits::StorageError;
    use crate::types::AccountId;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    const ENV: NetworkEnvironment = NetworkEnvironment::Testnet;

    fn key() -> &'static KeyPair {
        static K: OnceLock<KeyPair> = OnceLock::new();
        K.get_or_init(|| KeyPair::from_seed(&[21u8; 32]))
    }

    fn sender() -> AccountId {
        AccountId::from_public_key(key().public_key())
    }

    fn policy() -> AdmissionPolicy {
        AdmissionPolicy::new(ENV, ExecutionConfig::mainnet())
    }

    /// The sender (nonce 0) with `balance`.
    fn state(balance: u128) -> Ledger {
        Ledger::genesis([(sender(), balance)]).unwrap()
    }

    fn v1(amount: u128, gas_limit: u64, price: u128) -> TransferPayload {
        TransferPayload::V1(TransferPayloadV1 {
            recipient: AccountId([7u8; 32]),
            amount,
            gas_limit,
            max_fee_per_gas: price,
        })
    }

    fn signed(nonce: u64, payload: TransferPayload) -> Vec<u8> {
        Transaction::sign(key(), ENV, nonce, payload).to_bytes()
    }

    fn code(result: Result<Transaction, AdmissionError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn a_valid_transaction_is_admitted() {
        let ledger = state(1_000_000);
        let bytes = signed(0, v1(100, 40_000, 2));
        let tx = check_transaction(&ledger, &policy(), &bytes).unwrap();
        assert_eq!(tx.nonce(), 0);
        // Exactly enough: amount + gas_limit × price.
        let ledger = state(100 + 80_000);
        assert_eq!(code(check_transaction(&ledger, &policy(), &bytes)), "ok");
        // Through a trait object, as a node holding a `dyn` reader would.
        let reader: &dyn AccountReader = &ledger;
        assert!(check_transaction(reader, &policy(), &bytes).is_ok());
        // Up to the bound ahead.
        let ahead = signed(MAX_NONCE_AHEAD, v1(1, 40_000, 1));
        assert_eq!(code(check_transaction(&ledger, &policy(), &ahead)), "ok");
    }

    #[test]
    fn every_rejection_has_its_code_and_status() {
        let ledger = state(1_000_000);
        let p = policy();
        let check = |bytes: &[u8]| check_transaction(&ledger, &p, bytes);
        let cases: Vec<(Vec<u8>, &str, u16)> = vec![
            (b"garbage".to_vec(), "undecodable", 400),
            (
                {
                    let mut b = signed(0, v1(1, 40_000, 1));
                    b.push(0);
                    b
                },
                "undecodable",
                400,
            ),
            (
                signed(
                    0,
                    TransferPayload::V0(TransferPayloadV0 {
                        recipient: AccountId([7u8; 32]),
                        amount: 1,
                    }),
                ),
                "payload_version_not_allowed",
                400,
            ),
            (signed(0, v1(1, 20_999, 1)), "gas_limit_below_minimum", 400),
            (
                signed(0, v1(1, 29_751, 1)),
                "gas_limit_below_intrinsic",
                400,
            ),
            (signed(0, v1(1, 40_000, u128::MAX)), "max_fee_overflow", 400),
            (
                signed(0, v1(1, 30_000_001, 0)),
                "gas_limit_above_block",
                400,
            ),
            (
                Transaction::sign(key(), NetworkEnvironment::Mainnet, 0, v1(1, 40_000, 1))
                    .to_bytes(),
                "wrong_chain",
                400,
            ),
            (
                Transaction::from_parts(
                    key().public_key().clone(),
                    0,
                    v1(1, 40_000, 1),
                    Signature::from_bytes(&[0u8; 2420]).unwrap(),
                )
                .to_bytes(),
                "bad_signature",
                400,
            ),
            (
                signed(MAX_NONCE_AHEAD + 1, v1(1, 40_000, 1)),
                "nonce_too_far_ahead",
                409,
            ),
            (
                signed(0, v1(u128::MAX - 10, 40_000, 1)),
                "cost_overflow",
                400,
            ),
            (signed(0, v1(1_000_000, 40_000, 0)), "ok", 0),
            (
                signed(0, v1(1_000_001, 40_000, 0)),
                "insufficient_balance",
                422,
            ),
            (signed(0, v1(0, 40_000, 26)), "insufficient_balance", 422),
        ];
        for (bytes, expected, status) in cases {
            let result = check(&bytes);
            assert_eq!(code(result.clone()), expected, "{result:?}");
            if let Err(e) = result {
                assert_eq!(e.http_status(), status, "{e}");
            }
        }
        match check(
            &Transaction::sign(key(), NetworkEnvironment::Mainnet, 0, v1(1, 40_000, 1)).to_bytes(),
        ) {
            Err(AdmissionError::WrongChain {
                signed_for,
                expected,
            }) => assert_eq!((signed_for, expected), (NetworkEnvironment::Mainnet, ENV)),
            other => panic!("{other:?}"),
        }
    }

    /// A reader whose sender sits at a chosen nonce, or fails.
    struct At {
        nonce: u64,
        fail: bool,
    }

    impl AccountReader for At {
        fn account(&self, _: &AccountId) -> Result<Account, StateError> {
            if self.fail {
                return Err(StateError::Storage(StorageError::Io {
                    detail: "down".into(),
                }));
            }
            Ok(Account {
                nonce: self.nonce,
                balance: 1_000_000,
            })
        }

        fn summary(&self) -> Result<StateSummary, StateError> {
            Ok(StateSummary::default())
        }
    }

    #[test]
    fn nonces_are_checked_against_the_account() {
        let p = policy();
        let tx = |nonce| signed(nonce, v1(1, 40_000, 1));
        let at = |nonce| At { nonce, fail: false };
        // A committed transaction resubmitted: its nonce is below the account's.
        assert_eq!(code(check_transaction(&at(5), &p, &tx(4))), "nonce_stale");
        assert_eq!(code(check_transaction(&at(5), &p, &tx(0))), "nonce_stale");
        assert_eq!(code(check_transaction(&at(5), &p, &tx(5))), "ok");
        assert_eq!(code(check_transaction(&at(5), &p, &tx(5 + 64))), "ok");
        assert_eq!(
            code(check_transaction(&at(5), &p, &tx(5 + 65))),
            "nonce_too_far_ahead"
        );
        // Near u64::MAX: no overflow, and an exhausted account takes nothing.
        assert_eq!(
            code(check_transaction(&at(u64::MAX - 1), &p, &tx(u64::MAX))),
            "ok"
        );
        assert_eq!(
            code(check_transaction(&at(u64::MAX), &p, &tx(u64::MAX))),
            "nonce_exhausted"
        );
        assert_eq!(
            code(check_transaction(&at(0), &p, &tx(u64::MAX))),
            "nonce_too_far_ahead"
        );
        let down = At {
            nonce: 0,
            fail: true,
        };
        let err = check_transaction(&down, &p, &tx(0)).unwrap_err();
        assert_eq!((err.code(), err.http_status()), ("state_unavailable", 503));
        // Bad signatures are refused before the state is read.
        let forged = Transaction::from_parts(
            key().public_key().clone(),
            0,
            v1(1, 40_000, 1),
            Signature::from_bytes(&[0u8; 2420]).unwrap(),
        )
        .to_bytes();
        assert_eq!(code(check_transaction(&down, &p, &forged)), "bad_signature");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Admission never panics: arbitrary bytes, and a real transaction
        /// with arbitrary bytes flipped, appended or cut, against accounts
        /// at arbitrary nonces and balances.
        #[test]
        fn admission_never_panics(
            raw in prop::collection::vec(any::<u8>(), 0..4_000),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
            nonce in any::<u64>(),
            balance in any::<u128>(),
            account_nonce in any::<u64>(),
            amount in prop_oneof![any::<u128>(), 0u128..2_000_000],
            gas_limit in prop_oneof![any::<u64>(), 20_000u64..100_000],
            price in prop_oneof![any::<u128>(), 0u128..30],
        ) {
            let ledger = Ledger::genesis([(sender(), balance)]).unwrap();
            let reader = At { nonce: account_nonce, fail: false };
            let _ = check_transaction(&ledger, &policy(), &raw);
            let mut bytes = signed(nonce, v1(amount, gas_limit, price));
            for (at, byte) in flips {
                let len = bytes.len();
                if let Some(b) = bytes.get_mut(at % len) {
                    *b ^= byte;
                }
            }
            let _ = check_transaction(&ledger, &policy(), &bytes);
            let _ = check_transaction(&reader, &policy(), &bytes);
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = check_transaction(&reader, &policy(), &bytes);
        }
    }
}
