//! # qbind-exec: Stage B parallel execution
//!
//! Executes a block of VM v0 transfers on several threads and produces
//! exactly what `qbind_core::execution::execute_block` produces — the same
//! receipts, the same account changes and the same state root — for every
//! input (spec §2.2; DESIGN "qbind-exec").
//!
//! ## Schedule
//! 1. The state-independent admission pass of the core
//!    ([`admit_transactions`]) runs first, in order, as in the reference.
//!    Then the block's *gas-safe prefix* ([`gas_safe_prefix`]): the longest
//!    prefix in which no transaction can be refused for block gas whatever
//!    the state, because the most gas the admitted transactions before it
//!    can use plus its own limit fits. Only the prefix is scheduled in
//!    steps 2–3; the transactions after it (a block whose limits sum past
//!    the block gas limit) run in block order on one thread, on top of the
//!    prefix's result and with the gas it used, as the reference continues
//!    (the core counts only included transactions' gas used, so whether a
//!    later transaction fits depends on state: issue #17 finding 2).
//! 2. Every admitted transaction touches at most two accounts, its sender and
//!    its recipient. Transactions are grouped into the connected components
//!    of the relation "shares an account" ([`conflict_components`]): an index
//!    from account to the first transaction that touched it, sharded by the
//!    account's first byte and built one shard per rayon task, yields an edge
//!    (first toucher, later toucher) per repeated account; a union–find over
//!    transaction indices joins the edges. O(n α(n)) for n transactions,
//!    never a comparison of pairs; the components are laid out flat, in
//!    order of their first transaction. The index is keyed by an id's first
//!    8 bytes and compares the whole id on a hit; ids that share a prefix
//!    with a different id go to a second, exact map, so the relation is
//!    exact. The proposer's fee share is *not* an
//!    account access of a transaction: fees are summed from receipts and
//!    credited once at the end, exactly as the reference does.
//! 3. Components are packed, in order, into contiguous chunks of similar
//!    size (8 per thread); rayon executes the chunks in parallel. Inside a
//!    chunk each component runs its transactions in block order against a
//!    private overlay of the pre-block state. When one component holds
//!    (nearly) the whole block there is one chunk: its transactions run in
//!    block order on one thread while the other threads hash the *old*
//!    elements of the touched accounts (the index lists each distinct
//!    account's first access; old values depend only on the pre-block
//!    state).
//! 4. Receipts go back to their block positions. Then, at the same time,
//!    one task sorts the chunks' account changes (disjoint between
//!    components) by id into one list, in a single copy, while the others
//!    hash their commitment delta (leaving out the proposer's account; only
//!    the new elements if the old ones were hashed in step 3). The core's
//!    `finish_block` receives them already sorted and the delta
//!    precomputed; it credits the proposer, to whose final value the
//!    precomputed delta adds the proposer's own term.
//!
//! Serial work left per block: admission (a few µs per thousand
//! transactions), the union of the edges and the component layout, the
//! placement of receipts and `finish_block`'s
//! linear passes; measured in docs/benchmarks.md ("Run E", "Run P").
//!
//! ## Why it equals the sequential result
//! In the gas-safe prefix the block gas check passes in every run, so the
//! prefix executes as it would without the check; the suffix then runs
//! exactly the reference's code on exactly the state and block gas the
//! reference has at that point. Within the prefix: two transactions in
//! different components touch disjoint account sets, so neither can
//! observe the other; within a component the relative order is
//! the block order. Each transaction therefore reads exactly the values it
//! reads in the sequential run, and writes the same values. The proposer
//! credit, the supply counters and the commitment delta are sums, which do
//! not depend on grouping; account ids are distinct, so the sorted change
//! list is unique. Old elements hashed during execution are those of the
//! same accounts with the same values: the accounts the overlays hold are
//! exactly the distinct accounts the admitted transactions touch (checked
//! by count; on a mismatch or a failed read the old elements are hashed
//! from the change lists instead), and both read the unchanged pre-block
//! state, which must not change while a block executes (for either
//! executor). Tests compare the two executors on random blocks with
//! 0–100 % conflicts, with the proposer untouched, a sender or a recipient,
//! with ids that share the index's 8-byte key, with an unreadable account,
//! and the components with a brute-force grouping (`tests/stage_b.rs`).
//!
//! ```
//! use qbind_core::crypto::KeyPair;
//! use qbind_core::execution::*;
//! use qbind_core::types::{AccountId, Height, NetworkEnvironment};
//! use qbind_exec::StageBExecutor;
//!
//! let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed(&[i; 32])).collect();
//! let ids: Vec<AccountId> = keys.iter().map(|k| AccountId::from_public_key(k.public_key())).collect();
//! let ledger = Ledger::genesis(ids.iter().map(|id| (*id, 1_000_000u128))).unwrap();
//! let txs: Vec<Transaction> = keys.iter().enumerate().map(|(i, k)| {
//!     let payload = TransferPayload::V1(TransferPayloadV1 {
//!         recipient: AccountId([100 + i as u8; 32]), amount: 7, gas_limit: 40_000, max_fee_per_gas: 1,
//!     });
//!     Transaction::sign(k, NetworkEnvironment::Devnet, 0, payload)
//! }).collect();
//! let ctx = BlockContext { height: Height(1), proposer: ids[0], config: ExecutionConfig::devnet() };
//! let stage_b = StageBExecutor::new(StageBConfig { min_parallel_txs: 2, ..StageBConfig::default() });
//! let (parallel, stats) = stage_b.execute(&ledger, &ctx, &txs).unwrap();
//! assert_eq!(parallel, execute_block(&ledger, &ctx, &txs).unwrap());
//! assert_eq!(stats.parallel_txs, 4);
//! # use qbind_exec::StageBConfig;
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ops::Range;
use std::sync::Arc;

use qbind_core::execution::{
    Account, AccountAccumulator, AccountChange, AccountReader, Admission, BlockContext, BlockGas,
    BlockOutcome, CommitmentDelta, ExecutionError, Overlay, Receipt, RejectReason, StateError,
    StateSummary, Transaction, TxStatus, VerifiedSet, admit_transactions, apply_transaction,
    apply_transactions, execute_block, finish_block, leaf_element, sorted_changes_by_id,
};
use qbind_core::types::{AccountId, NetworkEnvironment};
use rayon::prelude::*;

mod metrics;

pub use metrics::StageBMetrics;

/// Indices of the transactions whose signature does not verify under the TX
/// domain of `env`, checked in parallel on the current rayon pool; equal to
/// `qbind_core::execution::invalid_signatures`. Run it before execution:
/// neither executor checks signatures.
#[must_use]
pub fn invalid_signatures_parallel(env: NetworkEnvironment, txs: &[Transaction]) -> Vec<usize> {
    txs.par_iter()
        .enumerate()
        .filter(|(_, tx)| tx.verify(env).is_err())
        .map(|(i, _)| i)
        .collect()
}

/// Stage B as the block executor of the reference application
/// ([`qbind_core::application::TransferApplication`]): signatures are
/// checked in parallel, blocks run on the conflict-aware parallel path; the
/// outcome equals the sequential reference's.
impl qbind_core::execution::BlockExecutor for StageBExecutor {
    fn invalid_signatures(&self, env: NetworkEnvironment, txs: &[Transaction]) -> Vec<usize> {
        match &self.pool {
            Some(pool) => pool.install(|| invalid_signatures_parallel(env, txs)),
            None => invalid_signatures_parallel(env, txs),
        }
    }

    fn execute<S: AccountReader + Sync + ?Sized>(
        &self,
        state: &S,
        ctx: &BlockContext,
        txs: &[Transaction],
    ) -> Result<BlockOutcome, ExecutionError> {
        StageBExecutor::execute(self, state, ctx, txs).map(|(outcome, _)| outcome)
    }
}

/// The verify-once prefetch on rayon: the transactions of a received batch
/// or block are verified in parallel, off the consensus task, into a
/// [`VerifiedSet`], so that execution finds them verified
/// ([`qbind_core::execution::VerifyOnce`]). At most
/// [`VerifyPrefetch::MAX_IN_FLIGHT`] transactions wait at once; beyond that a
/// payload is skipped (execution verifies it then: the set is only a cache).
#[derive(Debug)]
pub struct VerifyPrefetch {
    set: Arc<VerifiedSet>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl VerifyPrefetch {
    /// Transactions queued for verification at most.
    pub const MAX_IN_FLIGHT: usize = 65_536;

    /// A prefetch filling `set`.
    #[must_use]
    pub fn new(set: Arc<VerifiedSet>) -> Self {
        VerifyPrefetch {
            set,
            in_flight: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }
}

impl qbind_core::execution::PayloadPrefetch for VerifyPrefetch {
    fn prefetch(&self, txs: &[Vec<u8>]) {
        use std::sync::atomic::Ordering;
        let n = txs.len();
        if n == 0 || self.in_flight.load(Ordering::Relaxed).saturating_add(n) > Self::MAX_IN_FLIGHT
        {
            return;
        }
        self.in_flight.fetch_add(n, Ordering::Relaxed);
        let txs = txs.to_vec();
        let set = Arc::clone(&self.set);
        let in_flight = Arc::clone(&self.in_flight);
        rayon::spawn(move || {
            txs.par_chunks(8).for_each(|chunk| set.verify_all(chunk));
            in_flight.fetch_sub(n, Ordering::Relaxed);
        });
    }
}

/// Stage B switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageBConfig {
    /// Run the parallel path (`stage_b_enabled`, on by default, spec §2.2).
    /// When off, every block goes through the sequential reference.
    pub enabled: bool,
    /// Blocks with fewer transactions than this run sequentially: below it
    /// the scheduling costs more than it saves.
    pub min_parallel_txs: usize,
    /// Target number of chunks per worker thread (more chunks balance load
    /// better, fewer cost less bookkeeping).
    pub chunks_per_thread: usize,
}

impl Default for StageBConfig {
    fn default() -> Self {
        StageBConfig {
            enabled: true,
            min_parallel_txs: 64,
            chunks_per_thread: 8,
        }
    }
}

/// What the scheduler did with one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StageBStats {
    /// Transactions in the block.
    pub txs: usize,
    /// Transactions that passed admission and were scheduled.
    pub scheduled: usize,
    /// Connected components of the conflict relation.
    pub components: usize,
    /// Transactions in the largest component (the critical path).
    pub largest_component: usize,
    /// Chunks handed to rayon (0 on the sequential path).
    pub chunks: usize,
    /// Transactions executed on the parallel path (0 on the sequential path).
    pub parallel_txs: usize,
    /// Whether the touched accounts' old elements were hashed while the
    /// block ran on one thread (the single-chunk path), rather than with
    /// the new ones afterwards.
    pub old_elements_early: bool,
    /// Transactions after the block's gas-safe prefix ([`gas_safe_prefix`]):
    /// whether they fit in the block gas depends on what the transactions
    /// before them used, so they run in block order after the prefix.
    pub sequential_suffix: usize,
}

impl StageBStats {
    /// Whether the parallel path was taken.
    #[must_use]
    pub fn parallel(&self) -> bool {
        self.chunks > 1
    }
}

/// A Stage B executor, optionally bound to its own rayon pool and counting
/// what it does into [`StageBMetrics`].
#[derive(Clone, Debug, Default)]
pub struct StageBExecutor {
    config: StageBConfig,
    pool: Option<Arc<rayon::ThreadPool>>,
    metrics: Option<Arc<StageBMetrics>>,
}

impl StageBExecutor {
    /// An executor on rayon's global pool.
    #[must_use]
    pub fn new(config: StageBConfig) -> Self {
        StageBExecutor {
            config,
            pool: None,
            metrics: None,
        }
    }

    /// An executor on a dedicated pool.
    #[must_use]
    pub fn with_pool(config: StageBConfig, pool: Arc<rayon::ThreadPool>) -> Self {
        StageBExecutor {
            config,
            pool: Some(pool),
            metrics: None,
        }
    }

    /// The same executor, counting every block it executes into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<StageBMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &StageBConfig {
        &self.config
    }

    /// Execute a block; equal to `execute_block(state, ctx, txs)`.
    pub fn execute<S: AccountReader + Sync + ?Sized>(
        &self,
        state: &S,
        ctx: &BlockContext,
        txs: &[Transaction],
    ) -> Result<(BlockOutcome, StageBStats), ExecutionError> {
        let result = match &self.pool {
            Some(pool) => pool.install(|| self.execute_here(state, ctx, txs)),
            None => self.execute_here(state, ctx, txs),
        };
        if let (Some(metrics), Ok((_, stats))) = (&self.metrics, &result) {
            metrics.record(stats);
        }
        result
    }

    fn execute_here<S: AccountReader + Sync + ?Sized>(
        &self,
        state: &S,
        ctx: &BlockContext,
        txs: &[Transaction],
    ) -> Result<(BlockOutcome, StageBStats), ExecutionError> {
        let mut stats = StageBStats {
            txs: txs.len(),
            ..StageBStats::default()
        };
        if !self.config.enabled || txs.len() < self.config.min_parallel_txs {
            return Ok((execute_block(state, ctx, txs)?, stats));
        }
        let admissions = admit_transactions(&ctx.config, txs);
        // Only the gas-safe prefix is scheduled in parallel; the rest runs
        // after it in block order (`run_suffix`).
        let fit = gas_safe_prefix(&admissions, ctx.config.block_gas_limit);
        let (prefix, suffix) = txs.split_at(fit.min(txs.len()));
        let (prefix_admissions, suffix_admissions) = admissions.split_at(prefix.len());
        stats.sequential_suffix = suffix.len();
        let (components, touched) = conflict_index(prefix, prefix_admissions);
        stats.scheduled = components.transactions();
        stats.components = components.len();
        stats.largest_component = components.largest();
        let threads = rayon::current_num_threads().max(1);
        let chunks = components.pack(threads.saturating_mul(self.config.chunks_per_thread.max(1)));
        if chunks.len() <= 1 {
            // One component holds (nearly) everything: execute in block order
            // on this thread while the other threads hash the touched
            // accounts' old values (they depend only on the pre-block state);
            // the new values are hashed in parallel when sealing.
            // (On a one-thread pool nothing would overlap, and reading the
            // accounts a second time would only add work.) The touched
            // accounts are the prefix's: with a suffix, the early hashes
            // would not cover every account, so they are not computed.
            let (executed, before) = if threads > 1 && suffix.is_empty() {
                rayon::join(
                    || apply_transactions(state, &ctx.config, txs, &admissions),
                    || old_leaves(state, txs, &touched, &ctx.proposer),
                )
            } else {
                (
                    apply_transactions(state, &ctx.config, txs, &admissions),
                    None,
                )
            };
            let (receipts, changes) = executed?;
            let (outcome, early) = seal(state, ctx, receipts, vec![changes], before)?;
            stats.old_elements_early = early;
            return Ok((outcome, stats));
        }
        stats.chunks = chunks.len();
        stats.parallel_txs = stats.scheduled;
        // Here the chunks keep both threads busy, and hashing old values
        // during execution measured slower than hashing them with the new
        // ones when sealing (docs/benchmarks.md, run P).
        let Some((mut receipts, mut runs)) =
            execute_chunks(state, ctx, prefix, prefix_admissions, &components, &chunks)?
                .filter(|(receipts, _)| !receipts.iter().any(is_gas_rejection))
        else {
            // Unreachable by construction (chunks cover the admitted
            // transactions, and no transaction of the gas-safe prefix can
            // be refused for block gas); fall back to the reference rather
            // than return a wrong outcome.
            return Ok((execute_block(state, ctx, txs)?, StageBStats::default()));
        };
        if !suffix.is_empty() {
            run_suffix(
                state,
                ctx,
                suffix,
                suffix_admissions,
                &mut receipts,
                &mut runs,
            )?;
        }
        let (outcome, _) = seal(state, ctx, receipts, runs, None)?;
        Ok((outcome, stats))
    }
}

/// The length of the block's *gas-safe prefix*: the longest prefix in which
/// no transaction can be refused for block gas, whatever the state.
///
/// In the reference, a transaction is refused (`BlockGasLimitExceeded`) when
/// the gas used by the transactions included before it plus its gas limit
/// exceeds the block gas limit, and which earlier transactions are included
/// depends on state. An included transaction uses at most
/// [`Admission::max_gas_used`], so if for every admitted transaction of the
/// prefix `Σ max_gas_used (admitted before it) + gas_limit ≤ block gas limit`,
/// the check passes there in every run: the prefix executes exactly as it
/// would without the check, hence in any grouping of its components.
#[must_use]
pub fn gas_safe_prefix<E>(admissions: &[Result<Admission, E>], block_gas_limit: u64) -> usize {
    let mut bound: u64 = 0;
    for (i, admission) in admissions.iter().enumerate() {
        let Ok(a) = admission else { continue };
        match bound.checked_add(a.gas_limit) {
            Some(total) if total <= block_gas_limit => {}
            _ => return i,
        }
        bound = bound.saturating_add(a.max_gas_used);
    }
    admissions.len()
}

fn is_gas_rejection(receipt: &Receipt) -> bool {
    matches!(
        receipt.status,
        TxStatus::Rejected(RejectReason::BlockGasLimitExceeded { .. })
    )
}

/// The pre-block state with the gas-safe prefix's changes applied: what the
/// suffix's first transaction reads in the reference.
struct AfterPrefix<'a, S: ?Sized> {
    base: &'a S,
    runs: &'a [Vec<AccountChange>],
    /// Where each account the prefix touched sits in `runs`.
    index: &'a HashMap<AccountId, (usize, usize), foldhash::fast::RandomState>,
}

impl<S: AccountReader + ?Sized> AccountReader for AfterPrefix<'_, S> {
    fn account(&self, id: &AccountId) -> Result<Account, StateError> {
        match self.index.get(id) {
            Some(&(run, at)) => match self.runs.get(run).and_then(|r| r.get(at)) {
                Some(change) => Ok(change.after),
                None => self.base.account(id),
            },
            None => self.base.account(id),
        }
    }

    fn summary(&self) -> Result<StateSummary, StateError> {
        self.base.summary()
    }
}

/// Execute the transactions after the gas-safe prefix in block order on
/// this thread, against the state the prefix left and with the block gas
/// it used, exactly as the reference continues. Their receipts are appended
/// to `receipts` (the prefix's, in block order) and their account changes
/// merged into `runs`: an account the prefix touched keeps its pre-block
/// value and takes the suffix's final one, any other goes into a new run,
/// so the runs stay disjoint.
fn run_suffix<S: AccountReader + ?Sized>(
    state: &S,
    ctx: &BlockContext,
    suffix: &[Transaction],
    admissions: &[Result<Admission, RejectReason>],
    receipts: &mut Vec<Receipt>,
    runs: &mut Vec<Vec<AccountChange>>,
) -> Result<(), StateError> {
    let used = receipts
        .iter()
        .map(|r| r.gas_used)
        .fold(0u64, u64::saturating_add);
    let mut index: HashMap<AccountId, (usize, usize), foldhash::fast::RandomState> =
        HashMap::default();
    for (r, run) in runs.iter().enumerate() {
        for (at, change) in run.iter().enumerate() {
            index.insert(change.id, (r, at));
        }
    }
    let after_prefix = AfterPrefix {
        base: state,
        runs: runs.as_slice(),
        index: &index,
    };
    let mut overlay = Overlay::with_capacity(&after_prefix, suffix.len().saturating_mul(2));
    let mut block_gas = BlockGas::resume(used, ctx.config.block_gas_limit);
    for (tx, admission) in suffix.iter().zip(admissions) {
        receipts.push(apply_transaction(
            &mut overlay,
            &ctx.config,
            tx,
            admission,
            &mut block_gas,
        )?);
    }
    let changes = overlay.into_changes();
    let mut fresh = Vec::new();
    for change in changes {
        match index
            .get(&change.id)
            .and_then(|&(r, at)| runs.get_mut(r).and_then(|run| run.get_mut(at)))
        {
            Some(earlier) => earlier.after = change.after,
            None => fresh.push(change),
        }
    }
    runs.push(fresh);
    Ok(())
}

/// The receipts of a block in block order and its account changes, one
/// list per chunk; `None` if the chunks did not cover exactly the admitted
/// transactions (unreachable by construction).
type Executed = Option<(Vec<Receipt>, Vec<Vec<AccountChange>>)>;

/// Run the chunks in parallel, each component's transactions in block
/// order against the chunk's own overlay of the pre-block state.
fn execute_chunks<S: AccountReader + Sync + ?Sized>(
    state: &S,
    ctx: &BlockContext,
    txs: &[Transaction],
    admissions: &[Result<Admission, RejectReason>],
    components: &Components,
    chunks: &[Range<usize>],
) -> Result<Executed, ExecutionError> {
    let results: Vec<ChunkResult> = chunks
        .par_iter()
        .map(|range| {
            let size: usize = components.transactions_in(range.clone());
            let mut overlay = Overlay::with_capacity(state, size.saturating_mul(2));
            // First reads, in one loop (see `Overlay::preload_transfer`).
            for component in components.iter_range(range.clone()) {
                for tx in component.iter().filter_map(|&index| txs.get(index)) {
                    overlay.preload_transfer(tx);
                }
            }
            let mut receipts = Vec::with_capacity(size);
            // Never refuses in the gas-safe prefix; each chunk counts its
            // own transactions only.
            let mut block_gas = BlockGas::new(ctx.config.block_gas_limit);
            for component in components.iter_range(range.clone()) {
                for &index in component {
                    let (Some(tx), Some(admission)) = (txs.get(index), admissions.get(index))
                    else {
                        continue;
                    };
                    let receipt = apply_transaction(
                        &mut overlay,
                        &ctx.config,
                        tx,
                        admission,
                        &mut block_gas,
                    )?;
                    receipts.push((index, receipt));
                }
            }
            Ok(ChunkResult {
                receipts,
                changes: overlay.into_changes(),
            })
        })
        .collect::<Result<_, ExecutionError>>()?;

    // Admission rejections need no state: their receipts are made here
    // (against an overlay they never read); every admitted transaction's
    // placeholder is overwritten by its chunk's receipt.
    let mut untouched = Overlay::new(state);
    let mut receipts: Vec<Receipt> = Vec::with_capacity(txs.len());
    for (tx, admission) in txs.iter().zip(admissions) {
        receipts.push(match admission {
            Ok(_) => PLACEHOLDER,
            Err(_) => apply_transaction(
                &mut untouched,
                &ctx.config,
                tx,
                admission,
                &mut BlockGas::new(ctx.config.block_gas_limit),
            )?,
        });
    }
    let mut filled = 0usize;
    let mut runs = Vec::with_capacity(results.len());
    for result in results {
        for (index, receipt) in result.receipts {
            if let Some(slot) = receipts.get_mut(index) {
                *slot = receipt;
                filled += 1;
            }
        }
        runs.push(result.changes);
    }
    if filled != components.transactions() {
        return Ok(None);
    }
    Ok(Some((receipts, runs)))
}

/// Stands in for an admitted transaction's receipt until its chunk's arrives.
const PLACEHOLDER: Receipt = Receipt {
    status: TxStatus::Success,
    gas_used: 0,
    fee: 0,
    burned: 0,
    proposer_reward: 0,
};

struct ChunkResult {
    receipts: Vec<(usize, Receipt)>,
    changes: Vec<AccountChange>,
}

/// The old elements of a block's touched accounts, summed while the
/// transactions run ([`old_leaves`]).
#[derive(Clone, Copy, Debug)]
struct OldLeaves {
    /// Sum of `leaf_element(id, account)` over the touched accounts that
    /// were non-empty before the block, the proposer left out.
    sum: AccountAccumulator,
    /// Touched accounts read, the proposer left out.
    accounts: usize,
}

/// Hash the pre-block elements of the distinct accounts the admitted
/// transactions touch (`touched`: [`TouchList`]s of [`conflict_index`]),
/// leaving out `proposer`; in parallel on the current pool. `None` if an
/// account could not be read: the caller then hashes old values from the
/// change lists instead, so a storage error here never becomes an error of
/// the block (only a real access by a transaction does, as in the
/// reference).
fn old_leaves<S: AccountReader + Sync + ?Sized>(
    state: &S,
    txs: &[Transaction],
    touched: &[TouchList],
    proposer: &AccountId,
) -> Option<OldLeaves> {
    let empty = || OldLeaves {
        sum: AccountAccumulator::default(),
        accounts: 0,
    };
    touched
        .par_iter()
        .flat_map(|list| list.par_chunks(HASH_CHUNK))
        .map(|part| {
            let mut acc = empty();
            for id in part.iter().filter_map(|&touch| touched_account(txs, touch)) {
                if id == *proposer {
                    continue;
                }
                let account = state.account(&id).ok()?;
                acc.accounts += 1;
                if !account.is_empty() {
                    acc.sum.add(&leaf_element(&id, &account));
                }
            }
            Some(acc)
        })
        .try_reduce(empty, |mut a, b| {
            a.sum.add(&b.sum.0);
            a.accounts += b.accounts;
            Some(a)
        })
}

/// The commitment delta of `changes` (all touched accounts, changed or
/// not) leaving out `skip`, given that their old elements are subtracted
/// elsewhere ([`old_leaves`]): every non-empty new value is added, so an
/// unchanged account's two terms cancel. Returns the delta and the number
/// of changes counted.
fn new_leaves(changes: &[AccountChange], skip: &AccountId) -> (CommitmentDelta, usize) {
    let mut delta = CommitmentDelta::default();
    let mut counted = 0usize;
    for change in changes.iter().filter(|c| c.id != *skip) {
        counted += 1;
        delta.push_new(change);
    }
    (delta, counted)
}

/// Hand the receipts and the account changes (`runs`: disjoint lists, one
/// per chunk) to the core's `finish_block`, with the two costly parts of
/// finishing done in parallel: the runs are sorted by id into one list
/// (`sorted_changes_by_id`, a single copy) on one thread while the others
/// hash the new elements, and `finish_block` gets them already sorted and
/// the delta precomputed.
///
/// The old elements were summed during execution (`before`) over the
/// accounts the admitted transactions touch, which are exactly the accounts
/// in the runs: every account a chunk's overlay holds is one of its
/// transactions' (so the runs' ids are a subset of the touched ones) and
/// every touched account is read into an overlay unless that read fails.
/// So equal counts mean equal sets; if the counts differ, or `before` is
/// missing, the old elements are hashed from the runs instead (the
/// reference's way). The flag returned says whether the early sum was used.
///
/// The proposer's account is excluded from the precomputed delta because
/// `finish_block` credits it first; its final change is hashed inside the
/// `finish_block` callback. Deltas are sums, so the grouping changes nothing.
/// An unchanged entry for the proposer is added when no transaction touched
/// it, so that `finish_block` credits it in place and the list stays sorted;
/// if nothing is credited, `finish_block` drops it as unchanged.
fn seal<S: AccountReader + Sync + ?Sized>(
    state: &S,
    ctx: &BlockContext,
    receipts: Vec<Receipt>,
    runs: Vec<Vec<AccountChange>>,
    before: Option<OldLeaves>,
) -> Result<(BlockOutcome, bool), ExecutionError> {
    let proposer = ctx.proposer;
    let mut extra: Vec<AccountChange> = Vec::new();
    if !runs.iter().flatten().any(|c| c.id == proposer) {
        let before = state.account(&proposer)?;
        extra.push(AccountChange {
            id: proposer,
            before,
            after: before,
        });
    }
    let parts: Vec<&[AccountChange]> = runs
        .iter()
        .map(Vec::as_slice)
        .chain(std::iter::once(extra.as_slice()))
        .collect();
    let pieces = || runs.par_iter().flat_map(|run| run.par_chunks(HASH_CHUNK));
    let full_delta = || {
        pieces()
            .map(|part| delta_without(part, &proposer))
            .reduce(CommitmentDelta::default, |a, b| a.combine(&b))
    };
    let (changes, (partial, early)) = rayon::join(
        || sorted_changes_by_id(&parts),
        || match before {
            Some(old) => {
                let (mut delta, counted) = pieces().map(|part| new_leaves(part, &proposer)).reduce(
                    || (CommitmentDelta::default(), 0),
                    |a, b| (a.0.combine(&b.0), a.1 + b.1),
                );
                if counted == old.accounts {
                    delta.lanes.sub(&old.sum.0);
                    (delta, true)
                } else {
                    (full_delta(), false)
                }
            }
            None => (full_delta(), false),
        },
    );
    drop(parts);
    drop(runs);
    let outcome = finish_block(state, ctx, receipts, changes, |final_changes| {
        let mut rest = CommitmentDelta::default();
        for change in final_changes.iter().filter(|c| c.id == proposer) {
            rest.push(change);
        }
        partial.combine(&rest)
    })?;
    Ok((outcome, early))
}

/// Changed accounts hashed per rayon task.
const HASH_CHUNK: usize = 256;

/// The commitment delta of `changes` leaving out `skip`.
fn delta_without(changes: &[AccountChange], skip: &AccountId) -> CommitmentDelta {
    let mut delta = CommitmentDelta::default();
    for change in changes.iter().filter(|c| c.id != *skip) {
        delta.push(change);
    }
    delta
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while let Some(&p) = parent.get(x) {
        if p == x {
            break;
        }
        let grand = parent.get(p).copied().unwrap_or(p);
        if let Some(slot) = parent.get_mut(x) {
            *slot = grand;
        }
        x = grand;
    }
    x
}

/// The connected components of "shares an account" among the admitted
/// transactions of a block, stored flat: the transaction indices of every
/// component, ascending, one component after the other, components ordered
/// by their first transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Components {
    /// Transaction indices, component after component.
    order: Vec<usize>,
    /// Component `k` is `order[starts[k]..starts[k + 1]]`; `starts[0] == 0`.
    starts: Vec<usize>,
}

impl Components {
    /// Number of components.
    #[must_use]
    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Whether there is no component (no admitted transaction).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of transactions in all components.
    #[must_use]
    pub fn transactions(&self) -> usize {
        self.order.len()
    }

    /// Number of transactions in the largest component.
    #[must_use]
    pub fn largest(&self) -> usize {
        self.starts
            .windows(2)
            .map(|w| w.get(1).zip(w.first()).map_or(0, |(b, a)| b - a))
            .max()
            .unwrap_or(0)
    }

    /// The transaction indices of component `k`, ascending.
    #[must_use]
    pub fn get(&self, k: usize) -> Option<&[usize]> {
        let start = *self.starts.get(k)?;
        let end = *self.starts.get(k.checked_add(1)?)?;
        self.order.get(start..end)
    }

    /// Every component, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[usize]> + '_ {
        self.iter_range(0..self.len())
    }

    /// Components `range`, in order.
    fn iter_range(&self, range: Range<usize>) -> impl Iterator<Item = &[usize]> + '_ {
        range.filter_map(|k| self.get(k))
    }

    /// Number of transactions in components `range`.
    fn transactions_in(&self, range: Range<usize>) -> usize {
        match (self.starts.get(range.start), self.starts.get(range.end)) {
            (Some(a), Some(b)) => b.saturating_sub(*a),
            _ => 0,
        }
    }

    /// Split the components (in order) into at most about `target`
    /// contiguous ranges of similar transaction count; a component is never
    /// split.
    fn pack(&self, target: usize) -> Vec<Range<usize>> {
        let per_chunk = self.transactions().div_ceil(target.max(1)).max(1);
        let mut chunks = Vec::new();
        let mut start = 0;
        for (k, &end) in self.starts.iter().enumerate().skip(1) {
            let begun = self.starts.get(start).copied().unwrap_or(0);
            if end.saturating_sub(begun) >= per_chunk {
                chunks.push(start..k);
                start = k;
            }
        }
        if start < self.len() {
            chunks.push(start..self.len());
        }
        chunks
    }
}

/// The connected components of "shares an account" among the admitted
/// transactions. Linear in the number of transactions: one hash lookup per
/// touched account (the account index is sharded and built on the current
/// rayon pool), near-constant union–find steps, then two counting passes
/// that lay the components out flat (no allocation per component).
#[must_use]
pub fn conflict_components<A: Sync, E: Sync>(
    txs: &[Transaction],
    admissions: &[Result<A, E>],
) -> Components {
    conflict_index(txs, admissions).0
}

/// One account access of a block: `2 × transaction index`, plus 1 for the
/// recipient (0 for the sender).
type Touch = usize;

/// The first accesses of one shard of the account index: one per distinct
/// account.
type TouchList = Vec<Touch>;

/// The account a [`Touch`] names.
fn touched_account(txs: &[Transaction], touch: Touch) -> Option<AccountId> {
    let tx = txs.get(touch / 2)?;
    Some(if touch.is_multiple_of(2) {
        tx.sender_id()
    } else {
        tx.payload().recipient()
    })
}

/// The index key of an account: its first 8 bytes.
fn id_prefix(id: &AccountId) -> u64 {
    let [a, b, c, d, e, f, g, h, ..] = id.0;
    u64::from_le_bytes([a, b, c, d, e, f, g, h])
}

/// [`conflict_components`], plus the first access of every distinct account
/// (one list per shard of the index).
fn conflict_index<A: Sync, E: Sync>(
    txs: &[Transaction],
    admissions: &[Result<A, E>],
) -> (Components, Vec<TouchList>) {
    const NONE: usize = usize::MAX;
    let n = txs.len().min(admissions.len());
    let admitted = |i: usize| admissions.get(i).is_some_and(Result::is_ok);
    // Every account is owned by one of `parts` shards (by its first byte),
    // one per thread of the current pool; each shard, in parallel, indexes
    // its accounts and reports an edge (first toucher, i) whenever
    // transaction i touches an account an earlier transaction touched. How
    // accounts fall into shards only affects speed: the edges, hence the
    // components, are the same for any number of shards.
    //
    // The index maps an id's first 8 bytes to the account's first access
    // (16-byte entries instead of 40, hashing 8 bytes instead of 32). When
    // the prefix is known, the full id is compared with that access's; ids
    // that share a prefix with a different, earlier id (possible only if
    // someone chose them so) go to a second map keyed by the whole id, so
    // the relation stays exactly "shares an account".
    let parts = rayon::current_num_threads().clamp(1, 256);
    let shards: Vec<(Vec<(usize, usize)>, TouchList)> = (0..parts)
        .into_par_iter()
        .map(|part| {
            // foldhash, seeded at random per map (ids are partly chosen by
            // users; a predictable hash would let them collide on purpose).
            let mut first: HashMap<u64, Touch, foldhash::fast::RandomState> =
                HashMap::with_capacity_and_hasher(
                    n.saturating_mul(2) / parts + 16,
                    foldhash::fast::RandomState::default(),
                );
            let mut clashing: HashMap<AccountId, Touch, foldhash::fast::RandomState> =
                HashMap::default();
            let mut edges = Vec::new();
            let mut firsts = TouchList::new();
            for (i, tx) in txs.iter().enumerate().take(n) {
                if !admitted(i) {
                    continue;
                }
                for (slot, account) in [tx.sender_id(), tx.payload().recipient()]
                    .into_iter()
                    .enumerate()
                {
                    if usize::from(account.0[0]) % parts != part {
                        continue;
                    }
                    let touch = 2 * i + slot;
                    let earlier = match first.entry(id_prefix(&account)) {
                        Entry::Vacant(e) => {
                            e.insert(touch);
                            None
                        }
                        Entry::Occupied(e) => Some(*e.get()),
                    };
                    let earlier = match earlier {
                        Some(t) if touched_account(txs, t) != Some(account) => {
                            match clashing.entry(account) {
                                Entry::Vacant(e) => {
                                    e.insert(touch);
                                    None
                                }
                                Entry::Occupied(e) => Some(*e.get()),
                            }
                        }
                        other => other,
                    };
                    match earlier {
                        Some(t) => edges.push((t / 2, i)),
                        None => firsts.push(touch),
                    }
                }
            }
            (edges, firsts)
        })
        .collect();
    let (edges, touched): (Vec<Vec<(usize, usize)>>, Vec<TouchList>) = shards.into_iter().unzip();
    // Union by smaller root: every root is its component's first
    // transaction, whatever the order of the edges.
    let mut parent: Vec<usize> = (0..n).collect();
    for &(first, i) in edges.iter().flatten() {
        let a = find(&mut parent, first);
        let b = find(&mut parent, i);
        if a != b {
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            if let Some(slot) = parent.get_mut(hi) {
                *slot = lo;
            }
        }
    }
    // Number the components by first transaction and count their sizes;
    // `member[i]` becomes transaction i's component (NONE if not admitted).
    let mut component_of_root: Vec<usize> = vec![NONE; n];
    let mut member: Vec<usize> = vec![NONE; n];
    let mut sizes: Vec<usize> = Vec::new();
    for i in 0..n {
        if !admitted(i) {
            continue;
        }
        let root = find(&mut parent, i);
        let Some(slot) = component_of_root.get_mut(root) else {
            continue;
        };
        if *slot == NONE {
            *slot = sizes.len();
            sizes.push(0);
        }
        if let Some(size) = sizes.get_mut(*slot) {
            *size += 1;
        }
        if let Some(m) = member.get_mut(i) {
            *m = *slot;
        }
    }
    let mut starts = Vec::with_capacity(sizes.len() + 1);
    let mut total = 0usize;
    starts.push(0);
    for size in &sizes {
        total += size;
        starts.push(total);
    }
    // Lay out: a cursor per component, transactions visited ascending.
    let mut cursor: Vec<usize> = starts.clone();
    let mut order = vec![0usize; total];
    for (i, &k) in member.iter().enumerate() {
        if k == NONE {
            continue;
        }
        if let Some(at) = cursor.get_mut(k) {
            if let Some(slot) = order.get_mut(*at) {
                *slot = i;
            }
            *at += 1;
        }
    }
    (Components { order, starts }, touched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn components(groups: &[&[usize]]) -> Components {
        let mut c = Components {
            order: Vec::new(),
            starts: vec![0],
        };
        for g in groups {
            c.order.extend_from_slice(g);
            c.starts.push(c.order.len());
        }
        c
    }

    #[test]
    fn packing_keeps_order_and_covers_everything() {
        let c = components(&[&[0, 3], &[1], &[2, 4, 5], &[6]]);
        assert_eq!((c.len(), c.transactions(), c.largest()), (4, 7, 3));
        for target in 1..6 {
            let chunks = c.pack(target);
            assert!(chunks.len() <= target.max(1) + 1, "{target}: {chunks:?}");
            let flat: Vec<usize> = chunks.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(flat, (0..4).collect::<Vec<_>>());
            let covered: usize = chunks.iter().map(|r| c.transactions_in(r.clone())).sum();
            assert_eq!(covered, 7);
        }
        assert_eq!(c.pack(1), vec![0..4]);
        assert_eq!(c.pack(100), vec![0..1, 1..2, 2..3, 3..4]);
        assert!(Components::default().pack(4).is_empty());
    }

    /// Transactions of a received payload are verified off the calling
    /// thread into the set; execution through `VerifyOnce` then verifies
    /// none of them again.
    #[test]
    fn a_prefetched_payload_is_not_verified_again_by_execution() {
        use qbind_core::codec::Encode;
        use qbind_core::crypto::KeyPair;
        use qbind_core::execution::{
            PayloadPrefetch, TransferPayload, TransferPayloadV1, VerifyOnce,
        };
        let env = NetworkEnvironment::Testnet;
        let txs: Vec<Transaction> = (0..6u8)
            .map(|i| {
                let payload = TransferPayload::V1(TransferPayloadV1 {
                    recipient: AccountId([9u8; 32]),
                    amount: 1,
                    gas_limit: 40_000,
                    max_fee_per_gas: 1,
                });
                Transaction::sign(&KeyPair::from_seed(&[60 + i; 32]), env, 0, payload)
            })
            .collect();
        let raw: Vec<Vec<u8>> = txs.iter().map(Encode::to_bytes).collect();
        let set = Arc::new(VerifiedSet::new(env, 1_000));
        VerifyPrefetch::new(Arc::clone(&set)).prefetch(&raw);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while set.len() < txs.len() {
            assert!(
                std::time::Instant::now() < deadline,
                "prefetch did not finish"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let exec = VerifyOnce {
            inner: StageBExecutor::default(),
            set: Arc::clone(&set),
        };
        use qbind_core::execution::BlockExecutor;
        assert!(exec.invalid_signatures(env, &txs).is_empty());
        assert_eq!(set.verifications(), 6, "verified once, on receipt");
    }
}
