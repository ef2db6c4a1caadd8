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
//! 2. Every admitted transaction touches at most two accounts, its sender and
//!    its recipient. Transactions are grouped into the connected components
//!    of the relation "shares an account" with a union–find over transaction
//!    indices, driven by a hash index from account to the first transaction
//!    that touched it: O(n α(n)) for n transactions, never a comparison of
//!    pairs. The proposer's fee share is *not* an account access of a
//!    transaction: fees are summed from receipts and credited once at the
//!    end, exactly as the reference does.
//! 3. Components are packed, in order of their first transaction, into
//!    contiguous chunks of similar size; rayon executes the chunks in
//!    parallel. Inside a chunk each component runs its transactions in block
//!    order against a private overlay of the pre-block state.
//! 4. Receipts go back to their block positions, account changes (disjoint
//!    between components) are concatenated, and the core's `finish_block`
//!    credits the proposer and updates the commitment, whose delta is summed
//!    over chunks in parallel.
//!
//! ## Why it equals the sequential result
//! Two transactions in different components touch disjoint account sets, so
//! neither can observe the other; within a component the relative order is
//! the block order. Each transaction therefore reads exactly the values it
//! reads in the sequential run, and writes the same values. The proposer
//! credit, the supply counters and the commitment delta are sums, which do
//! not depend on grouping. Tests compare the two executors on random blocks
//! with 0–100 % conflicts (`tests/stage_b.rs`).
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
use std::sync::Arc;

use qbind_core::execution::{
    AccountChange, AccountReader, BlockContext, BlockOutcome, CommitmentDelta, ExecutionError,
    Overlay, Receipt, Transaction, admit_transactions, apply_transaction, execute_block,
    finish_block,
};
use qbind_core::types::{AccountId, NetworkEnvironment};
use rayon::prelude::*;

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
            chunks_per_thread: 4,
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
}

impl StageBStats {
    /// Whether the parallel path was taken.
    #[must_use]
    pub fn parallel(&self) -> bool {
        self.chunks > 1
    }
}

/// A Stage B executor, optionally bound to its own rayon pool.
#[derive(Clone, Debug, Default)]
pub struct StageBExecutor {
    config: StageBConfig,
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl StageBExecutor {
    /// An executor on rayon's global pool.
    #[must_use]
    pub fn new(config: StageBConfig) -> Self {
        StageBExecutor { config, pool: None }
    }

    /// An executor on a dedicated pool.
    #[must_use]
    pub fn with_pool(config: StageBConfig, pool: Arc<rayon::ThreadPool>) -> Self {
        StageBExecutor {
            config,
            pool: Some(pool),
        }
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
        match &self.pool {
            Some(pool) => pool.install(|| self.execute_here(state, ctx, txs)),
            None => self.execute_here(state, ctx, txs),
        }
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
        let components = conflict_components(txs, &admissions);
        stats.scheduled = components.iter().map(Vec::len).sum();
        stats.components = components.len();
        stats.largest_component = components.iter().map(Vec::len).max().unwrap_or(0);
        let threads = rayon::current_num_threads().max(1);
        let chunks = pack(
            &components,
            threads.saturating_mul(self.config.chunks_per_thread.max(1)),
        );
        if chunks.len() <= 1 {
            // One component holds (nearly) everything: execute in block order
            // on this thread, but still hash the changed accounts in parallel
            // (the commitment delta is a sum, independent of grouping).
            let mut overlay = Overlay::with_capacity(state, txs.len().saturating_mul(2));
            let mut receipts = Vec::with_capacity(txs.len());
            for (tx, admission) in txs.iter().zip(&admissions) {
                receipts.push(apply_transaction(&mut overlay, &ctx.config, tx, admission)?);
            }
            let outcome =
                finish_block(state, ctx, receipts, overlay.into_changes(), parallel_delta)?;
            return Ok((outcome, stats));
        }
        stats.chunks = chunks.len();
        stats.parallel_txs = stats.scheduled;

        let results: Vec<Result<ChunkResult, ExecutionError>> = chunks
            .par_iter()
            .map(|chunk| {
                let size: usize = chunk.iter().map(|c| c.len()).sum();
                let mut overlay = Overlay::with_capacity(state, size.saturating_mul(2));
                let mut receipts = Vec::with_capacity(size);
                for component in *chunk {
                    for &index in component {
                        let (Some(tx), Some(admission)) = (txs.get(index), admissions.get(index))
                        else {
                            continue;
                        };
                        let receipt = apply_transaction(&mut overlay, &ctx.config, tx, admission)?;
                        receipts.push((index, receipt));
                    }
                }
                Ok(ChunkResult {
                    receipts,
                    changes: overlay.into_changes(),
                })
            })
            .collect();

        // Admission rejections need no state: they are filled in directly.
        let mut receipts: Vec<Option<Receipt>> = admissions
            .iter()
            .zip(txs)
            .map(|(admission, tx)| match admission {
                Ok(_) => None,
                Err(_) => {
                    let mut dummy = Overlay::new(state);
                    apply_transaction(&mut dummy, &ctx.config, tx, admission).ok()
                }
            })
            .collect();
        let mut changes: Vec<AccountChange> = Vec::new();
        for result in results {
            let result = result?;
            for (index, receipt) in result.receipts {
                if let Some(slot) = receipts.get_mut(index) {
                    *slot = Some(receipt);
                }
            }
            changes.extend(result.changes);
        }
        let receipts: Vec<Receipt> = receipts.into_iter().flatten().collect();
        if receipts.len() != txs.len() {
            // Unreachable by construction; fall back to the reference rather
            // than return a wrong outcome.
            return Ok((execute_block(state, ctx, txs)?, StageBStats::default()));
        }
        let outcome = finish_block(state, ctx, receipts, changes, parallel_delta)?;
        Ok((outcome, stats))
    }
}

struct ChunkResult {
    receipts: Vec<(usize, Receipt)>,
    changes: Vec<AccountChange>,
}

/// The commitment delta of `changes`, summed over parallel chunks.
fn parallel_delta(changes: &[AccountChange]) -> CommitmentDelta {
    changes
        .par_chunks(512)
        .map(CommitmentDelta::of)
        .reduce(CommitmentDelta::default, |a, b| a.combine(&b))
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
/// transactions; each component lists its transaction indices ascending, and
/// components are ordered by their first transaction. Linear in the number
/// of transactions (one hash lookup per touched account, near-constant
/// union–find steps).
#[must_use]
pub fn conflict_components<A, E>(
    txs: &[Transaction],
    admissions: &[Result<A, E>],
) -> Vec<Vec<usize>> {
    let n = txs.len();
    let mut parent: Vec<usize> = (0..n).collect();
    let mut first_toucher: HashMap<AccountId, usize> = HashMap::with_capacity(n.saturating_mul(2));
    for (i, (tx, admission)) in txs.iter().zip(admissions).enumerate() {
        if admission.is_err() {
            continue;
        }
        for account in [tx.sender_id(), tx.payload().recipient()] {
            match first_toucher.entry(account) {
                Entry::Vacant(e) => {
                    e.insert(i);
                }
                Entry::Occupied(e) => {
                    let a = find(&mut parent, *e.get());
                    let b = find(&mut parent, i);
                    if a != b {
                        // Keep the smaller index as root: deterministic.
                        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                        if let Some(slot) = parent.get_mut(hi) {
                            *slot = lo;
                        }
                    }
                }
            }
        }
    }
    let mut slot_of_root: HashMap<usize, usize> = HashMap::new();
    let mut components: Vec<Vec<usize>> = Vec::new();
    for (i, admission) in admissions.iter().enumerate().take(n) {
        if admission.is_err() {
            continue;
        }
        let root = find(&mut parent, i);
        let slot = *slot_of_root.entry(root).or_insert_with(|| {
            components.push(Vec::new());
            components.len() - 1
        });
        if let Some(c) = components.get_mut(slot) {
            c.push(i);
        }
    }
    components
}

/// Split `components` (in order) into at most about `target` contiguous
/// chunks of similar transaction count; a component is never split.
fn pack(components: &[Vec<usize>], target: usize) -> Vec<&[Vec<usize>]> {
    let total: usize = components.iter().map(Vec::len).sum();
    let per_chunk = total.div_ceil(target.max(1)).max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, component) in components.iter().enumerate() {
        size += component.len();
        if size >= per_chunk {
            if let Some(chunk) = components.get(start..=i) {
                chunks.push(chunk);
            }
            start = i + 1;
            size = 0;
        }
    }
    if let Some(rest) = components.get(start..)
        && !rest.is_empty()
    {
        chunks.push(rest);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_order_and_covers_everything() {
        let components: Vec<Vec<usize>> = vec![vec![0, 3], vec![1], vec![2, 4, 5], vec![6]];
        for target in 1..6 {
            let chunks = pack(&components, target);
            let flat: Vec<&Vec<usize>> = chunks.iter().flat_map(|c| c.iter()).collect();
            assert_eq!(flat.len(), components.len());
            for (a, b) in flat.iter().zip(&components) {
                assert_eq!(*a, b);
            }
        }
    }
}
