//! The DevNet FIFO payload pool (spec §1.3: DevNet uses FIFO; the DAG layer
//! replaces it on TestNet Beta and MainNet). Transactions are opaque bytes,
//! deduplicated by SHA3-256, bounded in count.

use std::collections::{BTreeSet, VecDeque};

use crate::types::Hash32;

/// Why a transaction was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FifoRejection {
    /// The pool is at capacity.
    #[error("mempool full ({capacity} transactions)")]
    Full {
        /// The bound.
        capacity: usize,
    },
    /// The same bytes are already pending.
    #[error("duplicate transaction")]
    Duplicate,
    /// Larger than the per-transaction bound.
    #[error("transaction of {size} bytes exceeds {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The bound.
        max: usize,
    },
}

/// A bounded first-in first-out pool of opaque transactions.
#[derive(Debug)]
pub struct FifoMempool {
    queue: VecDeque<(Hash32, Vec<u8>)>,
    ids: BTreeSet<Hash32>,
    capacity: usize,
    max_tx_bytes: usize,
}

impl FifoMempool {
    /// A pool holding at most `capacity` transactions of at most `max_tx_bytes`.
    #[must_use]
    pub fn new(capacity: usize, max_tx_bytes: usize) -> Self {
        FifoMempool {
            queue: VecDeque::new(),
            ids: BTreeSet::new(),
            capacity,
            max_tx_bytes,
        }
    }

    /// Admit a transaction.
    pub fn insert(&mut self, tx: Vec<u8>) -> Result<Hash32, FifoRejection> {
        if tx.len() > self.max_tx_bytes {
            return Err(FifoRejection::TooLarge {
                size: tx.len(),
                max: self.max_tx_bytes,
            });
        }
        if self.queue.len() >= self.capacity {
            return Err(FifoRejection::Full {
                capacity: self.capacity,
            });
        }
        let id = Hash32::digest(&tx);
        if !self.ids.insert(id) {
            return Err(FifoRejection::Duplicate);
        }
        self.queue.push_back((id, tx));
        Ok(id)
    }

    /// Up to `max` transactions in arrival order, skipping ids in `exclude`.
    #[must_use]
    pub fn take(&self, max: usize, exclude: &BTreeSet<Hash32>) -> Vec<Vec<u8>> {
        self.queue
            .iter()
            .filter(|(id, _)| !exclude.contains(id))
            .take(max)
            .map(|(_, tx)| tx.clone())
            .collect()
    }

    /// Remove and return up to `max` transactions (at most `max_bytes` of
    /// them) in arrival order.
    pub fn drain(&mut self, max: usize, max_bytes: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max {
            match self.queue.front() {
                Some((_, tx)) if bytes + tx.len() <= max_bytes => {}
                _ => break,
            }
            if let Some((id, tx)) = self.queue.pop_front() {
                self.ids.remove(&id);
                bytes += tx.len();
                out.push(tx);
            }
        }
        out
    }

    /// Remove transactions that were committed.
    pub fn remove_committed<'a>(&mut self, txs: impl IntoIterator<Item = &'a Vec<u8>>) {
        let mut gone = BTreeSet::new();
        for tx in txs {
            let id = Hash32::digest(tx);
            if self.ids.remove(&id) {
                gone.insert(id);
            }
        }
        if !gone.is_empty() {
            self.queue.retain(|(id, _)| !gone.contains(id));
        }
    }

    /// Number of pending transactions.
    #[must_use]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether the pool is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The pool the consensus machine takes payloads from: FIFO for opaque
/// transactions, or fee-priority when the embedder can read fees.
pub enum TxPool {
    /// First in, first out.
    Fifo(FifoMempool),
    /// Fee priority with DoS limits.
    Fee {
        /// The pool.
        pool: Box<crate::fee_mempool::FeeMempool<crate::fee_mempool::MetaTx>>,
        /// How to read a transaction's fee fields.
        meta: crate::fee_mempool::TxMetaFn,
        /// Most bytes per transaction.
        max_tx_bytes: usize,
    },
}

impl TxPool {
    /// The fee-priority pool when transactions have readable fee fields
    /// (`tx_meta`), else a FIFO pool of `fifo_capacity` opaque transactions;
    /// either holds transactions of at most `max_tx_bytes`.
    #[must_use]
    pub fn new(
        tx_meta: Option<crate::fee_mempool::TxMetaFn>,
        fee: crate::fee_mempool::FeeMempoolConfig,
        fifo_capacity: usize,
        max_tx_bytes: usize,
    ) -> Self {
        match tx_meta {
            Some(meta) => TxPool::Fee {
                pool: Box::new(crate::fee_mempool::FeeMempool::new(fee)),
                meta,
                max_tx_bytes,
            },
            None => TxPool::Fifo(FifoMempool::new(fifo_capacity, max_tx_bytes)),
        }
    }

    /// Admit a transaction; on refusal, the metric label of the reason.
    pub fn insert(&mut self, now: crate::types::Millis, tx: Vec<u8>) -> Result<(), &'static str> {
        match self {
            TxPool::Fifo(p) => p.insert(tx).map(|_| ()).map_err(|e| match e {
                FifoRejection::Full { .. } => "pool_full",
                FifoRejection::Duplicate => "duplicate",
                FifoRejection::TooLarge { .. } => "too_large",
            }),
            TxPool::Fee {
                pool,
                meta,
                max_tx_bytes,
            } => {
                if tx.len() > *max_tx_bytes {
                    return Err("too_large");
                }
                let Some(m) = meta(&tx) else {
                    return Err("undecodable");
                };
                pool.insert(now, crate::fee_mempool::MetaTx::new(tx, m))
                    .map(|_| ())
                    .map_err(|e| e.label())
            }
        }
    }

    /// Up to `max` transactions by the pool's order, skipping ids in `exclude`.
    #[must_use]
    pub fn take(&self, max: usize, exclude: &BTreeSet<Hash32>) -> Vec<Vec<u8>> {
        match self {
            TxPool::Fifo(p) => p.take(max, exclude),
            TxPool::Fee { pool, .. } => {
                use crate::fee_mempool::PoolTx;
                pool.take(max.saturating_add(exclude.len()))
                    .into_iter()
                    .filter(|t| !exclude.contains(&t.id()))
                    .take(max)
                    .map(|t| t.bytes)
                    .collect()
            }
        }
    }

    /// Remove and return up to `max` transactions (at most `max_bytes`).
    pub fn drain(&mut self, max: usize, max_bytes: usize) -> Vec<Vec<u8>> {
        match self {
            TxPool::Fifo(p) => p.drain(max, max_bytes),
            TxPool::Fee { pool, .. } => {
                use crate::fee_mempool::PoolTx;
                let mut bytes = 0usize;
                let chosen: Vec<_> = pool
                    .take(max)
                    .into_iter()
                    .take_while(|t| {
                        bytes += t.bytes.len();
                        bytes <= max_bytes
                    })
                    .collect();
                pool.remove(chosen.iter().map(PoolTx::id));
                chosen.into_iter().map(|t| t.bytes).collect()
            }
        }
    }

    /// Remove transactions that were committed.
    pub fn remove_committed<'a>(&mut self, txs: impl IntoIterator<Item = &'a Vec<u8>>) {
        match self {
            TxPool::Fifo(p) => p.remove_committed(txs),
            TxPool::Fee { pool, .. } => pool.remove(txs.into_iter().map(|t| Hash32::digest(t))),
        }
    }

    /// Pending transactions.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            TxPool::Fifo(p) => p.len(),
            TxPool::Fee { pool, .. } => pool.len(),
        }
    }

    /// Whether nothing is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fee-pool counters, if this is the fee-priority pool.
    #[must_use]
    pub fn fee_metrics(&self) -> Option<&crate::fee_mempool::FeeMempoolMetrics> {
        match self {
            TxPool::Fifo(_) => None,
            TxPool::Fee { pool, .. } => Some(pool.metrics()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_bounds_dedups_and_removes() {
        let mut m = FifoMempool::new(2, 4);
        assert!(m.insert(b"a".to_vec()).is_ok());
        assert_eq!(m.insert(b"a".to_vec()), Err(FifoRejection::Duplicate));
        assert!(matches!(
            m.insert(b"toolong".to_vec()),
            Err(FifoRejection::TooLarge { .. })
        ));
        assert!(m.insert(b"b".to_vec()).is_ok());
        assert_eq!(
            m.insert(b"c".to_vec()),
            Err(FifoRejection::Full { capacity: 2 })
        );
        let mut skip = BTreeSet::new();
        skip.insert(Hash32::digest(b"a"));
        assert_eq!(m.take(5, &skip), vec![b"b".to_vec()]);
        m.remove_committed([&b"a".to_vec()]);
        assert_eq!(m.len(), 1);
    }
}
