//! The sequential reference executor (spec §2.1, §3.1, §3.2). This is the
//! definition of a block's effect; Stage B (`qbind-exec`) must reproduce it
//! exactly.
//!
//! A block is executed in three steps:
//! 1. [`admit_transactions`]: a pass over the transaction list that needs no
//!    state and looks at each transaction alone. It rejects payload versions
//!    the profile forbids, gas limits below the minimum or the intrinsic gas,
//!    and `gas_limit × max_fee_per_gas` overflowing `u128`.
//! 2. [`apply_transaction`] per admitted transaction, in block order, against
//!    an [`Overlay`] of the pre-block state and the block's [`BlockGas`]
//!    ([`apply_transactions`] for a whole block). A transaction whose gas
//!    limit does not fit in what the transactions included before it left of
//!    the block gas limit is rejected, then the state checks (nonce, ability
//!    to pay the maximum fee) reject; a rejection has no effect at all and
//!    consumes no block gas. Past them the transaction is *included*: its
//!    nonce increments, it pays `gas_used × max_fee_per_gas` whether the
//!    transfer succeeds or fails, and its gas *used* counts against the
//!    block (issue #17 finding 2: reserving the limits of transactions that
//!    were then rejected let one stale transaction fill a block for free).
//!    Since gas used never exceeds the gas limit, the block's gas used never
//!    exceeds the block gas limit.
//! 3. [`finish_block`]: the proposer's share of all fees is credited once,
//!    after every transaction, and the state commitment is updated from the
//!    changed accounts only.

use super::gas::{ExecutionConfig, ExecutionProfile, MINIMUM_GAS_LIMIT};
use super::overlay::Overlay;
use super::state::{AccountChange, AccountReader, StateError, StateTransition};
use super::state_root::CommitmentDelta;
use super::tx::{Transaction, TransferPayload};
use crate::types::{AccountId, Hash32, Height};

/// What a block is executed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockContext {
    /// The block's height.
    pub height: Height,
    /// The account credited with the proposer's share of the fees.
    pub proposer: AccountId,
    /// Gas, fee and payload rules.
    pub config: ExecutionConfig,
}

/// Why a transaction was left out with no effect at all (no fee, no nonce
/// increment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RejectReason {
    /// A 48-byte legacy payload where the profile requires V1.
    #[error("legacy payload not allowed by the execution profile")]
    PayloadVersionNotAllowed,
    /// The gas limit is below [`MINIMUM_GAS_LIMIT`].
    #[error("gas limit {gas_limit} below the minimum {minimum}")]
    GasLimitBelowMinimum {
        /// Declared.
        gas_limit: u64,
        /// Required.
        minimum: u64,
    },
    /// The gas limit cannot cover even the intrinsic gas.
    #[error("gas limit {gas_limit} below the intrinsic gas {intrinsic}")]
    GasLimitBelowIntrinsic {
        /// Declared.
        gas_limit: u64,
        /// Required.
        intrinsic: u64,
    },
    /// `gas_limit × max_fee_per_gas` does not fit in `u128`.
    #[error("maximum fee overflows")]
    MaxFeeOverflow,
    /// The transaction's gas limit does not fit in the block gas left by the
    /// transactions included before it.
    #[error("block gas limit {block_gas_limit} exceeded: {used} used, {gas_limit} more")]
    BlockGasLimitExceeded {
        /// Gas used by the transactions included before it.
        used: u64,
        /// This transaction's limit.
        gas_limit: u64,
        /// The block's limit.
        block_gas_limit: u64,
    },
    /// The nonce is not the sender's next nonce.
    #[error("nonce {got}, expected {expected}")]
    BadNonce {
        /// The account's nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The sender's nonce is `u64::MAX` and cannot advance.
    #[error("sender nonce exhausted")]
    NonceExhausted,
    /// The sender's balance is below the maximum fee.
    #[error("balance {balance} cannot pay the maximum fee {max_fee}")]
    CannotPayMaxFee {
        /// Sender balance.
        balance: u128,
        /// `gas_limit × max_fee_per_gas`.
        max_fee: u128,
    },
    /// A system transaction (a key rotation) that the replica refused when
    /// its block executed: it changed nothing (the replica's
    /// [`crate::replica::Event::KeyRotation`] says why). Never produced by
    /// the transfer executor.
    #[error("system transaction refused at execution")]
    SystemTxRefused,
}

/// Why an included transaction's transfer did not happen (it still paid for
/// the gas it used and its nonce still advanced).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FailureReason {
    /// The balance covers the fee but not the fee plus the amount.
    #[error("balance {balance} below fee plus amount {needed}")]
    InsufficientBalance {
        /// Sender balance before the transaction.
        balance: u128,
        /// Fee plus amount (saturated at `u128::MAX`).
        needed: u128,
    },
    /// The gas limit covers the intrinsic gas but not the whole transfer;
    /// the whole gas limit is used.
    #[error("out of gas: limit {gas_limit}, transfer needs {required}")]
    OutOfGas {
        /// Declared.
        gas_limit: u64,
        /// Needed.
        required: u64,
    },
    /// Crediting the recipient would overflow its balance.
    #[error("recipient balance overflow")]
    RecipientBalanceOverflow,
}

/// The result of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxStatus {
    /// The transfer happened.
    Success,
    /// Included, fee paid, transfer not made.
    Failed(FailureReason),
    /// Not included: no effect.
    Rejected(RejectReason),
}

impl TxStatus {
    /// A stable numeric error code: 0 success, 1xx failures, 2xx rejections.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            TxStatus::Success => 0,
            TxStatus::Failed(FailureReason::InsufficientBalance { .. }) => 101,
            TxStatus::Failed(FailureReason::OutOfGas { .. }) => 102,
            TxStatus::Failed(FailureReason::RecipientBalanceOverflow) => 103,
            TxStatus::Rejected(RejectReason::PayloadVersionNotAllowed) => 201,
            TxStatus::Rejected(RejectReason::GasLimitBelowMinimum { .. }) => 202,
            TxStatus::Rejected(RejectReason::GasLimitBelowIntrinsic { .. }) => 203,
            TxStatus::Rejected(RejectReason::MaxFeeOverflow) => 204,
            TxStatus::Rejected(RejectReason::BlockGasLimitExceeded { .. }) => 205,
            TxStatus::Rejected(RejectReason::BadNonce { .. }) => 206,
            TxStatus::Rejected(RejectReason::NonceExhausted) => 207,
            TxStatus::Rejected(RejectReason::CannotPayMaxFee { .. }) => 208,
            TxStatus::Rejected(RejectReason::SystemTxRefused) => 209,
        }
    }

    /// Whether the transaction was included (its nonce advanced).
    #[must_use]
    pub fn is_included(&self) -> bool {
        !matches!(self, TxStatus::Rejected(_))
    }
}

/// The receipt of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// What happened.
    pub status: TxStatus,
    /// Gas charged (0 if rejected).
    pub gas_used: u64,
    /// `gas_used × max_fee_per_gas`.
    pub fee: u128,
    /// The burned part of the fee.
    pub burned: u128,
    /// The proposer's part of the fee.
    pub proposer_reward: u128,
}

impl Receipt {
    /// A receipt that charged nothing: a rejected transaction's, or a
    /// system transaction's (which pays no gas, applied or refused).
    #[must_use]
    pub fn free(status: TxStatus) -> Receipt {
        Receipt {
            status,
            gas_used: 0,
            fee: 0,
            burned: 0,
            proposer_reward: 0,
        }
    }

    fn rejected(reason: RejectReason) -> Receipt {
        Receipt::free(TxStatus::Rejected(reason))
    }
}

/// The state-independent verdict on one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Gas limit (for a legacy payload: its full transfer gas).
    pub gas_limit: u64,
    /// Price per gas (0 for a legacy payload).
    pub price: u128,
    /// `gas_limit × price`.
    pub max_fee: u128,
    /// The most gas it can use if included: its gas limit or its full
    /// transfer gas, whichever is smaller. A parallel executor bounds the
    /// block gas used before a transaction with it (see `qbind-exec`).
    pub max_gas_used: u64,
}

/// The gas a block has used so far against its limit (spec §3.1): only
/// *included* transactions count, each with its gas used, and a transaction
/// is included only if its gas limit fits in what is left. Rejected
/// transactions consume nothing, so what a block executes depends on the
/// chain (nonces, balances, block order) and never on how much gas invalid
/// transactions declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockGas {
    used: u64,
    limit: u64,
}

impl BlockGas {
    /// Nothing used yet, `limit` available.
    #[must_use]
    pub fn new(limit: u64) -> Self {
        BlockGas { used: 0, limit }
    }

    /// `used` already used of `limit` (for an executor that continues a
    /// block another part of it started).
    #[must_use]
    pub fn resume(used: u64, limit: u64) -> Self {
        BlockGas { used, limit }
    }

    /// Gas used by the included transactions.
    #[must_use]
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The block gas limit.
    #[must_use]
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether a transaction declaring `gas_limit` may be included now.
    pub fn check(&self, gas_limit: u64) -> Result<(), RejectReason> {
        match self.used.checked_add(gas_limit) {
            Some(total) if total <= self.limit => Ok(()),
            _ => Err(RejectReason::BlockGasLimitExceeded {
                used: self.used,
                gas_limit,
                block_gas_limit: self.limit,
            }),
        }
    }

    /// Count `gas_used` of an included transaction (saturating: after a
    /// successful [`Self::check`] with a limit at least `gas_used`, it
    /// cannot overflow).
    pub fn charge(&mut self, gas_used: u64) {
        self.used = self.used.saturating_add(gas_used);
    }
}

/// The state-independent pass over a block: one entry per transaction,
/// each decided from that transaction alone ([`admit_transaction`]).
#[must_use]
pub fn admit_transactions(
    config: &ExecutionConfig,
    txs: &[Transaction],
) -> Vec<Result<Admission, RejectReason>> {
    txs.iter().map(|tx| admit_transaction(config, tx)).collect()
}

/// The state-independent verdict on one transaction: payload version, gas
/// limit at least the minimum and the intrinsic gas, maximum fee in `u128`.
pub fn admit_transaction(
    config: &ExecutionConfig,
    tx: &Transaction,
) -> Result<Admission, RejectReason> {
    let payload = tx.payload();
    let (gas_limit, price) = match (payload, config.profile) {
        (TransferPayload::V1(p), _) => (p.gas_limit, p.max_fee_per_gas),
        (TransferPayload::V0(_), ExecutionProfile::VmV0WithLegacyPayloads) => {
            (config.gas.transfer_gas(payload.wire_len()), 0)
        }
        (TransferPayload::V0(_), ExecutionProfile::VmV0) => {
            return Err(RejectReason::PayloadVersionNotAllowed);
        }
    };
    if gas_limit < MINIMUM_GAS_LIMIT {
        return Err(RejectReason::GasLimitBelowMinimum {
            gas_limit,
            minimum: MINIMUM_GAS_LIMIT,
        });
    }
    let intrinsic = config.gas.intrinsic_gas(payload.wire_len());
    if gas_limit < intrinsic {
        return Err(RejectReason::GasLimitBelowIntrinsic {
            gas_limit,
            intrinsic,
        });
    }
    let max_fee = u128::from(gas_limit)
        .checked_mul(price)
        .ok_or(RejectReason::MaxFeeOverflow)?;
    Ok(Admission {
        gas_limit,
        price,
        max_fee,
        max_gas_used: gas_limit.min(config.gas.transfer_gas(payload.wire_len())),
    })
}

/// Execute one transaction against `overlay`. `admission` is its entry from
/// [`admit_transactions`]; `block_gas` is what the transactions before it
/// used, and is charged with this one's gas used if it is included. Never
/// panics; errors only if state cannot be read.
pub fn apply_transaction<S: AccountReader + ?Sized>(
    overlay: &mut Overlay<'_, S>,
    config: &ExecutionConfig,
    tx: &Transaction,
    admission: &Result<Admission, RejectReason>,
    block_gas: &mut BlockGas,
) -> Result<Receipt, StateError> {
    let adm = match admission {
        Ok(a) => *a,
        Err(reason) => return Ok(Receipt::rejected(*reason)),
    };
    // First, as it needs no state: a transaction that does not fit is
    // rejected without reading its accounts.
    if let Err(reason) = block_gas.check(adm.gas_limit) {
        return Ok(Receipt::rejected(reason));
    }
    let sender_id = tx.sender_id();
    let sender_slot = overlay.load(&sender_id)?;
    let mut sender = overlay.value(sender_slot);
    if tx.nonce() != sender.nonce && !crate::mutants::active(crate::mutants::Mutant::SkipNonceCheck)
    {
        return Ok(Receipt::rejected(RejectReason::BadNonce {
            expected: sender.nonce,
            got: tx.nonce(),
        }));
    }
    let Some(next_nonce) = sender.nonce.checked_add(1) else {
        return Ok(Receipt::rejected(RejectReason::NonceExhausted));
    };
    if sender.balance < adm.max_fee {
        return Ok(Receipt::rejected(RejectReason::CannotPayMaxFee {
            balance: sender.balance,
            max_fee: adm.max_fee,
        }));
    }
    let payload = tx.payload();
    let len = payload.wire_len();
    let required = config.gas.transfer_gas(len);
    let amount = payload.amount();
    let recipient_id = payload.recipient();
    // Every fee below is at most `max_fee <= sender.balance`: gas_used never
    // exceeds gas_limit, so the multiplications and the debit cannot fail.
    let (status, gas_used) = if adm.gas_limit < required {
        (
            TxStatus::Failed(FailureReason::OutOfGas {
                gas_limit: adm.gas_limit,
                required,
            }),
            adm.gas_limit,
        )
    } else {
        let fee = u128::from(required).saturating_mul(adm.price);
        let needed = fee.saturating_add(amount);
        if fee.checked_add(amount).is_none_or(|n| sender.balance < n) {
            (
                TxStatus::Failed(FailureReason::InsufficientBalance {
                    balance: sender.balance,
                    needed,
                }),
                config.gas.intrinsic_gas(len),
            )
        } else if recipient_id == sender_id {
            (TxStatus::Success, required)
        } else {
            let recipient_slot = overlay.load(&recipient_id)?;
            let mut recipient = overlay.value(recipient_slot);
            match recipient.balance.checked_add(amount) {
                Some(b) => {
                    recipient.balance = b;
                    overlay.store(recipient_slot, recipient);
                    sender.balance -= amount;
                    (TxStatus::Success, required)
                }
                None => (
                    TxStatus::Failed(FailureReason::RecipientBalanceOverflow),
                    required,
                ),
            }
        }
    };
    let fee = u128::from(gas_used)
        .saturating_mul(adm.price)
        .min(sender.balance);
    sender.balance -= fee;
    sender.nonce = next_nonce;
    overlay.store(sender_slot, sender);
    debug_assert!(gas_used <= adm.max_gas_used);
    block_gas.charge(gas_used);
    let parts = config.fee_split.split(fee);
    Ok(Receipt {
        status,
        gas_used,
        fee,
        burned: parts.burned,
        proposer_reward: parts.proposer_reward,
    })
}

/// Why a block could not be executed at all. Individual bad transactions
/// never cause this; only unreadable state or a corrupt supply does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionError {
    /// State could not be read or the supply counters overflowed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The effect of a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOutcome {
    /// Height executed.
    pub height: Height,
    /// One receipt per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// Sum of `gas_used` (never above the block gas limit).
    pub gas_used: u64,
    /// Sum of fees.
    pub fees: u128,
    /// Sum of burned fees.
    pub burned: u128,
    /// Credited to the proposer after the last transaction.
    pub proposer_reward: u128,
    /// The state change, including the proposer credit.
    pub transition: StateTransition,
    /// The state root after the block.
    pub state_root: Hash32,
}

/// Credit the proposer, update the commitment and assemble the outcome.
/// `changes` are the touched accounts of all transactions (distinct ids, any
/// order); `hash` computes the commitment delta of the final change list (the
/// sequential executor uses [`CommitmentDelta::of`]; Stage B may split it
/// across threads, which gives the same value because deltas add).
pub fn finish_block<S, F>(
    state: &S,
    ctx: &BlockContext,
    receipts: Vec<Receipt>,
    mut changes: Vec<AccountChange>,
    hash: F,
) -> Result<BlockOutcome, ExecutionError>
where
    S: AccountReader + ?Sized,
    F: FnOnce(&[AccountChange]) -> CommitmentDelta,
{
    let overflow = |what| StateError::SupplyOverflow { what };
    let mut gas_used: u64 = 0;
    let mut fees: u128 = 0;
    let mut burned: u128 = 0;
    let mut proposer_reward: u128 = 0;
    for r in &receipts {
        gas_used = gas_used.checked_add(r.gas_used).ok_or(overflow("gas"))?;
        fees = fees.checked_add(r.fee).ok_or(overflow("fees"))?;
        burned = burned.checked_add(r.burned).ok_or(overflow("burned"))?;
        proposer_reward = proposer_reward
            .checked_add(r.proposer_reward)
            .ok_or(overflow("proposer reward"))?;
    }
    if proposer_reward > 0 {
        let index = match changes.iter().position(|c| c.id == ctx.proposer) {
            Some(i) => i,
            None => {
                let before = state.account(&ctx.proposer)?;
                changes.push(AccountChange {
                    id: ctx.proposer,
                    before,
                    after: before,
                });
                changes.len() - 1
            }
        };
        let Some(slot) = changes.get_mut(index) else {
            return Err(overflow("proposer index").into());
        };
        slot.after.balance = slot
            .after
            .balance
            .checked_add(proposer_reward)
            .ok_or(overflow("proposer balance"))?;
    }
    changes.retain(|c| c.before != c.after);
    let delta = hash(&changes);
    let transition = StateTransition::from_changes(&state.summary()?, changes, &delta, 0, burned)?;
    let state_root = transition.root();
    Ok(BlockOutcome {
        height: ctx.height,
        receipts,
        gas_used,
        fees,
        burned,
        proposer_reward,
        transition,
        state_root,
    })
}

/// Execute a block sequentially: the reference semantics. Signatures are not
/// checked here (verify them first, see [`super::invalid_signatures`]).
pub fn execute_block<S: AccountReader + ?Sized>(
    state: &S,
    ctx: &BlockContext,
    txs: &[Transaction],
) -> Result<BlockOutcome, ExecutionError> {
    let admissions = admit_transactions(&ctx.config, txs);
    let (receipts, changes) = apply_transactions(state, &ctx.config, txs, &admissions)?;
    finish_block(state, ctx, receipts, changes, CommitmentDelta::of)
}

/// Step 2 for a whole block: every transaction in block order against one
/// overlay of `state`. Returns the receipts in block order and the touched
/// accounts (distinct ids, any order), ready for [`finish_block`].
/// `admissions` is [`admit_transactions`]' verdict on `txs`.
pub fn apply_transactions<S: AccountReader + ?Sized>(
    state: &S,
    config: &ExecutionConfig,
    txs: &[Transaction],
    admissions: &[Result<Admission, RejectReason>],
) -> Result<(Vec<Receipt>, Vec<AccountChange>), StateError> {
    let mut overlay = Overlay::with_capacity(state, txs.len().saturating_mul(2));
    // Every account an admitted transaction may touch is read first, in one
    // tight loop (measured 5-20 % faster per block than reading each when
    // its transaction runs; docs/benchmarks.md, runs L–N).
    for (tx, admission) in txs.iter().zip(admissions) {
        if admission.is_ok() {
            overlay.preload_transfer(tx);
        }
    }
    let mut receipts = Vec::with_capacity(txs.len());
    let mut block_gas = BlockGas::new(config.block_gas_limit);
    for (tx, admission) in txs.iter().zip(admissions) {
        receipts.push(apply_transaction(
            &mut overlay,
            config,
            tx,
            admission,
            &mut block_gas,
        )?);
    }
    Ok((receipts, overlay.into_changes()))
}

/// A committed block's outcome when its transactions arrive as wire bytes
/// ([`execute_wire_block`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireBlockOutcome {
    /// The outcome of the well-formed, correctly signed transactions.
    pub outcome: BlockOutcome,
    /// Byte strings that were not a canonical [`Transaction`].
    pub undecodable: u64,
    /// Transactions whose signature did not verify.
    pub bad_signatures: u64,
}

impl WireBlockOutcome {
    /// Transfers that happened.
    #[must_use]
    pub fn succeeded(&self) -> u64 {
        self.count(|s| matches!(s, TxStatus::Success))
    }

    /// Included transactions whose transfer failed (fee paid).
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.count(|s| matches!(s, TxStatus::Failed(_)))
    }

    /// Everything that had no effect: undecodable, badly signed, or rejected
    /// by admission or nonce rules.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.undecodable + self.bad_signatures + self.count(|s| matches!(s, TxStatus::Rejected(_)))
    }

    fn count(&self, f: impl Fn(&TxStatus) -> bool) -> u64 {
        self.outcome
            .receipts
            .iter()
            .filter(|r| f(&r.status))
            .count() as u64
    }
}

/// How a block's decoded, correctly signed transactions are executed: the
/// sequential reference ([`SequentialExecutor`]) or an engine that must
/// give exactly its result (Stage B in `qbind-exec`).
pub trait BlockExecutor: Send + Sync {
    /// Indices (ascending) of the transactions whose signature does not
    /// verify under `env`; equal to [`super::invalid_signatures`].
    fn invalid_signatures(
        &self,
        env: crate::types::NetworkEnvironment,
        txs: &[Transaction],
    ) -> Vec<usize> {
        super::tx::invalid_signatures(env, txs)
    }

    /// Execute `txs` against `state`; equal to [`execute_block`].
    fn execute<S: AccountReader + Sync + ?Sized>(
        &self,
        state: &S,
        ctx: &BlockContext,
        txs: &[Transaction],
    ) -> Result<BlockOutcome, ExecutionError>;
}

/// The sequential reference executor: [`execute_block`] on one thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SequentialExecutor;

impl BlockExecutor for SequentialExecutor {
    fn execute<S: AccountReader + Sync + ?Sized>(
        &self,
        state: &S,
        ctx: &BlockContext,
        txs: &[Transaction],
    ) -> Result<BlockOutcome, ExecutionError> {
        execute_block(state, ctx, txs)
    }
}

/// Execute a committed block whose transactions are wire bytes, as every
/// node must: bytes that are not a canonical [`Transaction`] and
/// transactions with a bad signature (under `env`'s chain ID) are skipped
/// and counted, the rest go to [`execute_block`] in order. Consensus orders
/// bytes; this is the one place they become transfers, so all honest nodes
/// skip exactly the same ones.
pub fn execute_wire_block<S: AccountReader + Sync + ?Sized>(
    state: &S,
    ctx: &BlockContext,
    env: crate::types::NetworkEnvironment,
    raw: &[Vec<u8>],
) -> Result<WireBlockOutcome, ExecutionError> {
    execute_wire_block_with(&SequentialExecutor, state, ctx, env, raw)
}

/// [`execute_wire_block`] with the signatures checked and the block executed
/// by `executor`; the result is the same for every executor.
pub fn execute_wire_block_with<E: BlockExecutor + ?Sized, S: AccountReader + Sync + ?Sized>(
    executor: &E,
    state: &S,
    ctx: &BlockContext,
    env: crate::types::NetworkEnvironment,
    raw: &[Vec<u8>],
) -> Result<WireBlockOutcome, ExecutionError> {
    use crate::codec::Decode;
    let _cpu = crate::cpu::Section::enter(crate::cpu::Activity::Execution);
    let mut undecodable = 0u64;
    let mut txs = Vec::with_capacity(raw.len());
    for bytes in raw {
        match Transaction::from_bytes(bytes) {
            Ok(tx) => txs.push(tx),
            Err(_) => undecodable += 1,
        }
    }
    let bad = executor.invalid_signatures(env, &txs);
    let bad_signatures = bad.len() as u64;
    if !bad.is_empty() {
        let mut index = 0usize;
        txs.retain(|_| {
            let keep = bad.binary_search(&index).is_err();
            index += 1;
            keep
        });
    }
    let outcome = executor.execute(state, ctx, &txs)?;
    Ok(WireBlockOutcome {
        outcome,
        undecodable,
        bad_signatures,
    })
}
