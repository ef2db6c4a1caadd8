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
