//! What Stage B did, counted across blocks ([`StageBMetrics`]): plain
//! atomics an executor updates as it executes and a metrics exporter reads
//! (the reference node exports `qbind_execution_parallel_blocks_total`, runbook
//! §4.4's `stage_b_blocks_parallel`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::StageBStats;

/// Blocks a [`StageBExecutor`](crate::StageBExecutor) executed, and how.
#[derive(Debug, Default)]
pub struct StageBMetrics {
    /// Blocks executed (either path).
    pub blocks: AtomicU64,
    /// Blocks executed on the parallel path (more than one chunk:
    /// [`StageBStats::parallel`]); runbook §4.4's `stage_b_blocks_parallel`.
    pub blocks_parallel: AtomicU64,
    /// Transactions executed on the parallel path.
    pub parallel_txs: AtomicU64,
}

impl StageBMetrics {
    /// Count one executed block.
    pub fn record(&self, stats: &StageBStats) {
        self.blocks.fetch_add(1, Ordering::Relaxed);
        if stats.parallel() {
            self.blocks_parallel.fetch_add(1, Ordering::Relaxed);
            self.parallel_txs
                .fetch_add(stats.parallel_txs as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use qbind_core::crypto::KeyPair;
    use qbind_core::execution::{
        BlockContext, ExecutionConfig, Ledger, Transaction, TransferPayload, TransferPayloadV1,
    };
    use qbind_core::types::{AccountId, Height, NetworkEnvironment};

    use crate::{StageBConfig, StageBExecutor, StageBMetrics};

    /// Four transfers between distinct accounts (four components) run on
    /// the parallel path of a two-thread pool; one transfer, below
    /// `min_parallel_txs`, does not.
    #[test]
    fn parallel_blocks_are_counted_apart_from_sequential_ones() {
        let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed(&[i; 32])).collect();
        let ids: Vec<AccountId> = keys
            .iter()
            .map(|k| AccountId::from_public_key(k.public_key()))
            .collect();
        let ledger = Ledger::genesis(ids.iter().map(|id| (*id, 1_000_000u128))).expect("genesis");
        let txs: Vec<Transaction> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let payload = TransferPayload::V1(TransferPayloadV1 {
                    recipient: AccountId([100 + i as u8; 32]),
                    amount: 7,
                    gas_limit: 40_000,
                    max_fee_per_gas: 1,
                });
                Transaction::sign(k, NetworkEnvironment::Devnet, 0, payload)
            })
            .collect();
        let ctx = BlockContext {
            height: Height(1),
            proposer: ids[0],
            config: ExecutionConfig::devnet(),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        let metrics = Arc::new(StageBMetrics::default());
        let config = StageBConfig {
            min_parallel_txs: 2,
            ..StageBConfig::default()
        };
        let stage_b =
            StageBExecutor::with_pool(config, Arc::new(pool)).with_metrics(Arc::clone(&metrics));
        let (_, stats) = stage_b.execute(&ledger, &ctx, &txs).expect("block");
        assert!(stats.parallel(), "{stats:?}");
        let (_, stats) = stage_b.execute(&ledger, &ctx, &txs[..1]).expect("block");
        assert!(!stats.parallel(), "{stats:?}");
        let read = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(
            (
                read(&metrics.blocks),
                read(&metrics.blocks_parallel),
                read(&metrics.parallel_txs)
            ),
            (2, 1, 4)
        );
    }
}
