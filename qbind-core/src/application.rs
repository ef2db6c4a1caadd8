//! The application seam: what runs committed, ordered transactions (DESIGN
//! "An application trait"; spec §2–§3 for the reference application).
//!
//! Consensus orders opaque transaction bytes; the replica
//! ([`crate::replica::Replica`]) hands every committed block to an
//! [`Application`] exactly once, in height order, and writes what it returns
//! **in one durable batch together with the executed-height marker**, so a
//! crash leaves a block either fully applied and marked executed or neither
//! (DESIGN "Catch-up"). The state root it returns goes back to consensus,
//! which puts it in later proposals and refuses to vote for a proposal that
//! reports another root for a height this validator executed — divergence
//! detection for any application, not only for VM v0.
//!
//! [`TransferApplication`] is the reference application: VM v0 transfers
//! with gas and hybrid fees ([`crate::execution`]) and, at epoch boundaries,
//! the monetary engine ([`crate::monetary`]). Its [`BlockExecutor`] chooses
//! how a block runs: [`SequentialExecutor`] here, Stage B in `qbind-exec`;
//! both give the same outcome.
//!
//! ```
//! use qbind_core::application::{Application, CommittedBlock, TransferApplication};
//! use qbind_core::execution::ExecutionConfig;
//! use qbind_core::traits::MemoryBackend;
//! use qbind_core::types::{AccountId, Hash32, Height, NetworkEnvironment, ValidatorId};
//!
//! let store = MemoryBackend::new();
//! TransferApplication::write_genesis(&store, &[(AccountId([1; 32]), 1_000)]).unwrap();
//! let mut app = TransferApplication::new(
//!     NetworkEnvironment::Devnet,
//!     ExecutionConfig::devnet(),
//!     vec![AccountId([9; 32])],
//! );
//! let block = CommittedBlock {
//!     height: Height(1),
//!     id: Hash32([0; 32]),
//!     proposer: ValidatorId(0),
//!     txs: &[],
//!     delivered: &[],
//!     system: &[],
//!     key_log: qbind_core::system_tx::EMPTY_KEY_LOG,
//! };
//! let applied = Application::<MemoryBackend>::execute(&mut app, &store, &block).unwrap();
//! assert_eq!(applied.state_root, app.state_root(&store).unwrap());
//! ```

use std::borrow::Cow;

use crate::codec::{Decode, Encode};
use crate::execution::{
    AccountReader, AfterTransition, BackendAccounts, BlockContext, BlockExecutor, ExecutionConfig,
    ExecutionError, SequentialExecutor, execute_wire_block_with,
};
use crate::monetary::MONETARY_STATE_KEY;
use crate::monetary::{MonetaryConfig, MonetaryEpochState, MonetaryMode, SeigniorageRecipients};
use crate::schema::EPOCH_FEES_KEY;
use crate::traits::{Durability, Namespace, StateBackend, StorageError, WriteBatch};
use crate::types::{AccountId, Hash32, Height, NetworkEnvironment, ValidatorId};

/// A committed block as the application sees it.
#[derive(Clone, Copy, Debug)]
pub struct CommittedBlock<'a> {
    /// Its height.
    pub height: Height,
    /// Its id.
    pub id: Hash32,
    /// Its proposer (credited with the block's fees by VM v0).
    pub proposer: ValidatorId,
    /// Its transactions in consensus order, without ones delivered earlier
    /// (and without system transactions, which the replica applies).
    pub txs: &'a [Vec<u8>],
    /// Every transaction the block delivered, in consensus order, system
    /// transactions included: what [`crate::system_tx::SystemTxOutcome::index`]
    /// and a node's reported positions refer to.
    pub delivered: &'a [Vec<u8>],
    /// The system transactions among [`CommittedBlock::delivered`] and
    /// whether the replica applied each (empty for most blocks).
    pub system: &'a [crate::system_tx::SystemTxOutcome],
    /// The digest of the on-chain key log after this block's rotations
    /// ([`crate::system_tx::extend_key_log`]; [`crate::system_tx::EMPTY_KEY_LOG`]
    /// while none applied). The replica reports
    /// [`crate::system_tx::reported_root`] of it and [`Applied::state_root`];
    /// an application that records roots (receipts) records that.
    pub key_log: Hash32,
}

/// What happened to a block's transactions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecutionReport {
    /// Transactions that took full effect.
    pub succeeded: u64,
    /// Included, fee paid, effect not made.
    pub failed: u64,
    /// Had no effect (undecodable, bad signature, admission or nonce).
    pub rejected: u64,
    /// Fees paid.
    pub fees: u128,
    /// The burned part of the fees.
    pub burned: u128,
}

/// An epoch closed by the monetary engine with this block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochReport {
    /// The epoch's monetary state (stored with the block).
    pub state: MonetaryEpochState,
    /// Units credited (0 in Shadow mode).
    pub credited: u128,
}

/// What an application returns for one block.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The state writes, committed atomically with the executed-height
    /// marker by the replica.
    pub writes: WriteBatch,
    /// The state root after the block (and after any issuance).
    pub state_root: Hash32,
    /// Counters for the block.
    pub report: ExecutionReport,
    /// Set when the block closed a monetary epoch.
    pub epoch_closed: Option<EpochReport>,
}

/// Why an application could not execute a block. The replica stops rather
/// than diverge or skip the block.
#[derive(Debug, thiserror::Error)]
pub enum ApplicationError {
    /// The state store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A stored record did not decode.
    #[error("stored {what} is corrupt: {source}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Why.
        source: crate::codec::DecodeError,
    },
    /// Execution failed (state unreadable, a supply counter overflowed).
    #[error("execution: {0}")]
    Execution(#[from] ExecutionError),
    /// The monetary engine refused its inputs.
    #[error("monetary engine: {0}")]
    Monetary(#[from] crate::monetary::MonetaryError),
    /// A committed block's proposer has no fee account configured.
    #[error("no fee account configured for proposer {0}")]
    UnknownProposer(ValidatorId),
    /// An integrator's application failed.
    #[error("application: {0}")]
    Custom(Box<dyn std::error::Error + Send + Sync>),
}

/// Runs committed blocks against the validator's store.
///
/// Contract:
/// - `execute` is called once per committed height, in order, with the
///   store holding exactly the state after the previous height; it must not
///   write to the store itself — it returns the writes, which the replica
///   makes durable atomically with the executed-height marker;
/// - the result must be a deterministic function of the store's state and
///   the block (no clock, no randomness, no process history): every honest
///   validator must compute the same `state_root`;
/// - `state_root` reports the root of what the store holds (used after a
///   restart, before any block is executed).
pub trait Application<S: StateBackend + ?Sized>: Send {
    /// Execute one committed block.
    fn execute(
        &mut self,
        store: &S,
        block: &CommittedBlock<'_>,
    ) -> Result<Applied, ApplicationError>;

    /// The state root of what `store` holds.
    fn state_root(&self, store: &S) -> Result<Hash32, ApplicationError>;

    /// The nonce `account` executes next in what `store` holds, if the
    /// application has nonces (the pool then holds back a sender's
    /// transactions until it has that nonce). Default: none.
    fn account_nonce(
        &self,
        _store: &S,
        _account: &crate::types::AccountId,
    ) -> Result<Option<u64>, ApplicationError> {
        Ok(None)
    }
}

impl<S: StateBackend + ?Sized, A: Application<S> + ?Sized> Application<S> for Box<A> {
    fn execute(
        &mut self,
        store: &S,
        block: &CommittedBlock<'_>,
    ) -> Result<Applied, ApplicationError> {
        (**self).execute(store, block)
    }

    fn state_root(&self, store: &S) -> Result<Hash32, ApplicationError> {
        (**self).state_root(store)
    }

    fn account_nonce(
        &self,
        store: &S,
        account: &crate::types::AccountId,
    ) -> Result<Option<u64>, ApplicationError> {
        (**self).account_nonce(store, account)
    }
}

/// The monetary engine inside [`TransferApplication`]: at every height that
/// is a multiple of `config.blocks_per_epoch`, the epoch's fees (summed in
/// the store block by block), `staked` and the supply after the block go to
/// [`crate::monetary::compute_epoch_state`]; the resulting state is stored
/// ([`MonetaryEpochState::write_to`]) and, in Active mode, its issuance is
/// credited — the validators' share split by stake — all in the same
/// durable batch as the block. Shadow computes and stores the state but
/// credits nothing; Off skips the boundary entirely.
#[derive(Clone, Debug)]
pub struct MonetarySettings {
    /// Phases, rates, split, mode, epoch length.
    pub config: MonetaryConfig,
    /// Treasury, insurance and community accounts (and the validator pool
    /// used when no validator has stake).
    pub pools: SeigniorageRecipients,
    /// Reward account and stake of each validator.
    pub stakes: Vec<(AccountId, u64)>,
    /// Units staked, the `staked` input of every epoch.
    pub staked: u128,
}

/// The reference application: VM v0 transfers and the monetary engine.
///
/// Every committed block's transactions are decoded, signature-checked and
/// executed with [`execute_wire_block_with`] by `executor`; the account
/// changes, the state summary and the monetary records form the returned
/// writes.
#[derive(Clone, Debug)]
pub struct TransferApplication<E = SequentialExecutor> {
    /// The network the transactions are signed for.
    pub env: NetworkEnvironment,
    /// Profile, gas schedule, block gas limit, fee split.
    pub config: ExecutionConfig,
    /// The fee account of each validator, indexed by validator id.
    pub proposer_accounts: Vec<AccountId>,
    /// Run the monetary engine at epoch boundaries (`None`: never).
    pub monetary: Option<MonetarySettings>,
    /// Executes the decoded, correctly signed transactions.
    pub executor: E,
}

impl TransferApplication<SequentialExecutor> {
    /// The sequential reference, without the monetary engine.
    #[must_use]
    pub fn new(
        env: NetworkEnvironment,
        config: ExecutionConfig,
        proposer_accounts: Vec<AccountId>,
    ) -> Self {
        TransferApplication {
            env,
            config,
            proposer_accounts,
            monetary: None,
            executor: SequentialExecutor,
        }
    }

    /// Fund `balances` in an empty store (durably); `false` if the store
    /// already holds a state.
    pub fn write_genesis<S: StateBackend + ?Sized>(
        store: &S,
        balances: &[(AccountId, u128)],
    ) -> Result<bool, ApplicationError> {
        if store
            .get(Namespace::Meta, crate::execution::STATE_SUMMARY_KEY)?
            .is_some()
        {
            return Ok(false);
        }
        let transition = crate::execution::credit(&BackendAccounts::new(store), balances)
            .map_err(ExecutionError::from)?;
        store.write(transition.to_write_batch(), Durability::Durable)?;
        Ok(true)
    }
}

impl<E> TransferApplication<E> {
    /// Run the monetary engine at epoch boundaries.
    #[must_use]
    pub fn with_monetary(mut self, monetary: MonetarySettings) -> Self {
        self.monetary = Some(monetary);
        self
    }

    /// Execute blocks with `executor` instead.
    #[must_use]
    pub fn with_executor<F: BlockExecutor>(self, executor: F) -> TransferApplication<F> {
        TransferApplication {
            env: self.env,
            config: self.config,
            proposer_accounts: self.proposer_accounts,
            monetary: self.monetary,
            executor,
        }
    }
}

impl<S: StateBackend + ?Sized, E: BlockExecutor> Application<S> for TransferApplication<E> {
    fn execute(
        &mut self,
        store: &S,
        block: &CommittedBlock<'_>,
    ) -> Result<Applied, ApplicationError> {
        let proposer_account = *self
            .proposer_accounts
            .get(block.proposer.0 as usize)
            .ok_or(ApplicationError::UnknownProposer(block.proposer))?;
        let ctx = BlockContext {
            height: block.height,
            proposer: proposer_account,
            config: self.config,
        };
        let reader = BackendAccounts::new(store);
        let wire = execute_wire_block_with(&self.executor, &reader, &ctx, self.env, block.txs)?;
        let outcome = &wire.outcome;
        let mut applied = Applied {
            writes: WriteBatch::new(),
            state_root: outcome.state_root,
            report: ExecutionReport {
                succeeded: wire.succeeded(),
                failed: wire.failed(),
                rejected: wire.rejected(),
                fees: outcome.fees,
                burned: outcome.burned,
            },
            epoch_closed: None,
        };
        let mut transition = Cow::Borrowed(&outcome.transition);
        if let Some(m) = &self.monetary
            && m.config.mode != MonetaryMode::Off
        {
            let so_far = match store.get(Namespace::Monetary, EPOCH_FEES_KEY)? {
                None => 0,
                Some(bytes) => {
                    u128::from_bytes(&bytes).map_err(|source| ApplicationError::Corrupt {
                        what: "epoch fee total",
                        source,
                    })?
                }
            };
            let fees = so_far.saturating_add(outcome.fees);
            let bpe = m.config.blocks_per_epoch;
            let (latest, fees_now) = if crate::monetary::is_epoch_boundary(block.height.0, bpe) {
                let after = AfterTransition::new(&reader, &outcome.transition);
                let (closed, issuance) = close_epoch(store, m, &after, block.height, fees)?;
                if let Some(issuance) = issuance {
                    transition = Cow::Owned(outcome.transition.then(&issuance));
                }
                closed.state.write_to(&mut applied.writes);
                let latest = closed.state.to_bytes();
                applied.epoch_closed = Some(closed);
                (Some(latest), 0)
            } else {
                (store.get(Namespace::Monetary, MONETARY_STATE_KEY)?, fees)
            };
            put_epoch_fees(&mut applied.writes, fees_now);
            // The state root commits to what the next epoch's issuance
            // depends on (docs/execution.md "State root").
            transition.to_mut().summary.monetary =
                crate::execution::monetary_digest(latest.as_deref(), fees_now);
            applied.state_root = transition.root();
        }
        let mut writes = transition.to_write_batch();
        writes.append(&mut applied.writes);
        applied.writes = writes;
        Ok(applied)
    }

    fn state_root(&self, store: &S) -> Result<Hash32, ApplicationError> {
        Ok(BackendAccounts::new(store)
            .summary()
            .map_err(ExecutionError::from)?
            .root())
    }

    fn account_nonce(
        &self,
        store: &S,
        account: &crate::types::AccountId,
    ) -> Result<Option<u64>, ApplicationError> {
        Ok(Some(
            BackendAccounts::new(store)
                .account(account)
                .map_err(ExecutionError::from)?
                .nonce,
        ))
    }
}

fn put_epoch_fees(batch: &mut WriteBatch, fees: u128) {
    batch.put(
        Namespace::Monetary,
        EPOCH_FEES_KEY.to_vec(),
        fees.to_bytes(),
    );
}

/// The monetary step at an epoch boundary: the epoch's state and, in Active
/// mode, the issuance transition on top of the block's.
fn close_epoch<S: StateBackend + ?Sized, R: AccountReader + ?Sized>(
    store: &S,
    m: &MonetarySettings,
    after: &R,
    height: Height,
    fees: u128,
) -> Result<(EpochReport, Option<crate::execution::StateTransition>), ApplicationError> {
    let epoch = crate::monetary::epoch_for_height(height.0, m.config.blocks_per_epoch);
    let previous = match MonetaryEpochState::load_latest(store)? {
        Some(p) => p,
        // First boundary this store sees: start from the genesis state
        // placed just before this epoch.
        None => MonetaryEpochState {
            epoch: epoch.saturating_sub(1),
            ..MonetaryEpochState::genesis(&m.config)
        },
    };
    let summary = after.summary().map_err(ExecutionError::from)?;
    let inputs = crate::monetary::EpochInputs {
        fees,
        staked: m.staked,
        total_supply: summary.minted.saturating_sub(summary.burned),
    };
    let state = crate::monetary::compute_epoch_state(&m.config, &previous, epoch, &inputs)?;
    let credits = state.credits_by_stake(m.config.mode, &m.pools, &m.stakes);
    let credited: u128 = credits.iter().map(|c| c.1).sum();
    let issuance = if credits.is_empty() {
        None
    } else {
        Some(crate::execution::credit(after, &credits).map_err(ExecutionError::from)?)
    };
    Ok((EpochReport { state, credited }, issuance))
}
