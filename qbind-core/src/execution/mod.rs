//! VM v0 execution: transfer transactions, gas, hybrid fees, account state,
//! the state commitment and the sequential reference executor (spec §2.1,
//! §3.1, §3.2; DESIGN "Gas", "State commitment").
//!
//! ```
//! use qbind_core::crypto::KeyPair;
//! use qbind_core::execution::*;
//! use qbind_core::types::{AccountId, Height, NetworkEnvironment};
//!
//! let alice = KeyPair::from_seed(&[1u8; 32]);
//! let alice_id = AccountId::from_public_key(alice.public_key());
//! let bob = AccountId([2u8; 32]);
//! let mut ledger = Ledger::genesis([(alice_id, 1_000_000)]).unwrap();
//! let payload = TransferPayload::V1(TransferPayloadV1 {
//!     recipient: bob, amount: 500, gas_limit: 40_000, max_fee_per_gas: 2,
//! });
//! let tx = Transaction::sign(&alice, NetworkEnvironment::Mainnet, 0, payload);
//! assert!(invalid_signatures(NetworkEnvironment::Mainnet, &[tx.clone()]).is_empty());
//! let ctx = BlockContext {
//!     height: Height(1), proposer: AccountId([9u8; 32]), config: ExecutionConfig::mainnet(),
//! };
//! let outcome = execute_block(&ledger, &ctx, &[tx]).unwrap();
//! assert_eq!(outcome.receipts[0].status, TxStatus::Success);
//! assert_eq!(outcome.receipts[0].fee, 37_352 * 2);
//! ledger.apply(&outcome.transition).unwrap();
//! assert_eq!(ledger.get(&bob).balance, 500);
//! assert_eq!(ledger.root(), outcome.state_root);
//! ```

mod admission;
mod executor;
mod fees;
mod gas;
mod overlay;
mod receipt_codec;
mod state;
mod state_root;
mod tx;
mod verified;

pub use admission::{
    AdmissionError, AdmissionPolicy, MAX_NONCE_AHEAD, check_transaction, check_transaction_verified,
};
pub use executor::{
    Admission, BlockContext, BlockExecutor, BlockGas, BlockOutcome, ExecutionError, FailureReason,
    Receipt, RejectReason, SequentialExecutor, TxStatus, WireBlockOutcome, admit_transaction,
    admit_transactions, apply_transaction, apply_transactions, execute_block, execute_wire_block,
    execute_wire_block_with, finish_block,
};
pub use fees::{BPS_DENOMINATOR, FeeParts, FeeSplit, FeeSplitError};
pub use gas::{
    BLOCK_GAS_LIMIT_DEFAULT, ExecutionConfig, ExecutionConfigError, ExecutionProfile, GasSchedule,
    MINIMUM_GAS_LIMIT,
};
pub use overlay::Overlay;
pub use receipt_codec::MIN_RECEIPT_BYTES;
pub use state::{
    Account, AccountChange, AccountReader, AfterTransition, BackendAccounts, Ledger,
    STATE_SUMMARY_KEY, StateError, StateTransition, credit, sort_changes_by_id,
    sorted_changes_by_id,
};
pub use state_root::{
    ACCUMULATOR_LANES, AccountAccumulator, CommitmentDelta, LEAF_CONTEXT, StateSummary,
    leaf_element, monetary_digest,
};
pub use tx::{
    TRANSFER_PAYLOAD_V0_BYTES, TRANSFER_PAYLOAD_V1_BYTES, Transaction, TransferPayload,
    TransferPayloadV0, TransferPayloadV1, invalid_signatures, tx_meta,
};
pub use verified::{PayloadPrefetch, VERIFIED_SET_CAPACITY, VerifiedSet, VerifyOnce};
