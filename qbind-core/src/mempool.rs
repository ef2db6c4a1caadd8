//! The DevNet FIFO payload pool (spec §1.3: DevNet uses FIFO; the DAG layer
//! replaces it on TestNet Beta and MainNet). Transactions are opaque bytes,
//! deduplicated by SHA3-256, bounded in count.

use std::collections::{BTreeSet, VecDeque};

use crate::pool_drops::{PoolDropReason, PoolSnapshot};
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
        let id = Hash32::of_transaction(&tx);
        // Duplicate first: a copy of a pending transaction is pending, not
        // refused for a full pool (which would record it as dropped).
        if self.ids.contains(&id) {
            return Err(FifoRejection::Duplicate);
        }
        if self.queue.len() >= self.capacity {
            return Err(FifoRejection::Full {
                capacity: self.capacity,
            });
        }
        self.ids.insert(id);
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
            let id = Hash32::of_transaction(tx);
            if self.ids.remove(&id) {
                gone.insert(id);
            }
        }
        if !gone.is_empty() {
            self.queue.retain(|(id, _)| !gone.contains(id));
        }
    }

    /// The most transactions it holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
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
/// transactions, or fee-priority when the embedder can read fees. It
/// queues every transaction it lets go without a commit (evicted, replaced,
/// refused on arrival) for [`Self::take_drops`] ([`crate::pool_drops`]).
pub struct TxPool {
    kind: PoolKind,
    /// Drops not yet taken, oldest first; at most
    /// [`crate::pool_drops::MAX_UNPUBLISHED_DROPS`].
    drops: VecDeque<(Hash32, PoolDropReason)>,
}

enum PoolKind {
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
        let kind = match tx_meta {
            Some(meta) => PoolKind::Fee {
                pool: Box::new(crate::fee_mempool::FeeMempool::new(fee)),
                meta,
                max_tx_bytes,
            },
            None => PoolKind::Fifo(FifoMempool::new(fifo_capacity, max_tx_bytes)),
        };
        TxPool {
            kind,
            drops: VecDeque::new(),
        }
    }

    /// Queue a drop of a transaction this pool accepted and that was lost
    /// elsewhere (the DAG layer gave up its batch): its sender's next
    /// nonce goes back to it ([`crate::fee_mempool::FeeMempool::note_abandoned`]).
    pub(crate) fn record_drop(&mut self, tx: &[u8], reason: PoolDropReason) {
        if let PoolKind::Fee { pool, meta, .. } = &mut self.kind
            && let Some(m) = meta(tx)
        {
            pool.note_abandoned(m.sender, m.nonce);
        }
        self.dropped(Hash32::of_transaction(tx), reason);
    }

    fn dropped(&mut self, id: Hash32, reason: PoolDropReason) {
        self.drops.push_back((id, reason));
        while self.drops.len() > crate::pool_drops::MAX_UNPUBLISHED_DROPS {
            self.drops.pop_front();
        }
    }

    /// Admit a transaction; on refusal, the metric label of the reason. A
    /// refusal other than `duplicate` (the same bytes are pending) and any
    /// transaction evicted or replaced to make room are queued as drops.
    pub fn insert(&mut self, now: crate::types::Millis, tx: Vec<u8>) -> Result<(), &'static str> {
        let id = Hash32::of_transaction(&tx);
        let sender = match &self.kind {
            PoolKind::Fee { meta, .. } => meta(&tx).map(|m| m.sender),
            PoolKind::Fifo(_) => None,
        };
        let result = match &mut self.kind {
            PoolKind::Fifo(p) => p.insert(tx).map(|_| None).map_err(|e| match e {
                FifoRejection::Full { .. } => "pool_full",
                FifoRejection::Duplicate => "duplicate",
                FifoRejection::TooLarge { .. } => "too_large",
            }),
            PoolKind::Fee {
                pool,
                meta,
                max_tx_bytes,
            } => {
                if tx.len() > *max_tx_bytes {
                    Err("too_large")
                } else if let Some(m) = meta(&tx) {
                    pool.insert(now, crate::fee_mempool::MetaTx::new(tx, m))
                        .map(Some)
                        .map_err(|e| e.label())
                } else {
                    Err("undecodable")
                }
            }
        };
        match result {
            Ok(admission) => {
                if let Some(a) = admission {
                    if let Some(old) = a.evicted {
                        self.dropped(old, PoolDropReason::Evicted { by: id });
                    }
                    if let Some(old) = a.replaced {
                        self.dropped(old, PoolDropReason::Replaced { by: id });
                    }
                }
                Ok(())
            }
            Err(label) => {
                if label != "duplicate" {
                    self.dropped(id, PoolDropReason::Refused(label));
                }
                if let (PoolKind::Fee { pool, .. }, Some(sender)) = (&mut self.kind, sender) {
                    pool.forget_idle_sender(&sender);
                }
                Err(label)
            }
        }
    }

    /// The drops queued since the last call, oldest first.
    pub fn take_drops(&mut self) -> Vec<(Hash32, PoolDropReason)> {
        self.drops.drain(..).collect()
    }

    /// The pool's depth, capacity and lowest pending fee.
    #[must_use]
    pub fn snapshot(&self) -> PoolSnapshot {
        match &self.kind {
            PoolKind::Fifo(p) => PoolSnapshot {
                len: p.len(),
                capacity: p.capacity(),
                lowest_fee_per_gas: None,
            },
            PoolKind::Fee { pool, .. } => PoolSnapshot {
                len: pool.len(),
                capacity: pool.capacity(),
                lowest_fee_per_gas: pool.lowest_fee_per_gas(),
            },
        }
    }

    /// Up to `max` transactions by the pool's order, skipping ids in `exclude`.
    #[must_use]
    pub fn take(&self, max: usize, exclude: &BTreeSet<Hash32>) -> Vec<Vec<u8>> {
        self.take_within(max, u64::MAX, exclude)
    }

    /// As [`TxPool::take`], with at most `max_gas` of declared gas (the
    /// fee pool, whose transactions declare gas; see
    /// [`crate::fee_mempool::FeeMempool::take_within`]).
    #[must_use]
    pub fn take_within(
        &self,
        max: usize,
        max_gas: u64,
        exclude: &BTreeSet<Hash32>,
    ) -> Vec<Vec<u8>> {
        match &self.kind {
            PoolKind::Fifo(p) => p.take(max, exclude),
            PoolKind::Fee { pool, .. } => pool
                .take_within(max, max_gas, |id| exclude.contains(id))
                .into_iter()
                .map(|t| t.bytes)
                .collect(),
        }
    }

    /// Remove and return up to `max` transactions (at most `max_bytes`,
    /// and with the fee pool at most `max_gas` of declared gas: a batch
    /// must fit in one block).
    pub fn drain(&mut self, max: usize, max_bytes: usize, max_gas: u64) -> Vec<Vec<u8>> {
        match &mut self.kind {
            PoolKind::Fifo(p) => p.drain(max, max_bytes),
            PoolKind::Fee { pool, .. } => {
                use crate::fee_mempool::PoolTx;
                let mut bytes = 0usize;
                let chosen: Vec<_> = pool
                    .take_within(max, max_gas, |_| false)
                    .into_iter()
                    .take_while(|t| {
                        bytes += t.bytes.len();
                        bytes <= max_bytes
                    })
                    .collect();
                pool.remove(chosen.iter().map(PoolTx::id));
                // Handed to a batch: the sender's next transaction may follow
                // in the next batch.
                let mut stale = Vec::new();
                for t in &chosen {
                    stale.extend(pool.note_used(t.sender(), t.nonce()));
                }
                for id in stale {
                    self.dropped(id, PoolDropReason::NonceUsed);
                }
                chosen.into_iter().map(|t| t.bytes).collect()
            }
        }
    }

    /// Remove transactions that were committed. Senders' next nonces are
    /// not advanced here: a committed transaction may still be refused by
    /// execution; the replica reads them from the executed state
    /// ([`TxPool::note_account_nonce`]).
    pub fn remove_committed<'a>(&mut self, txs: impl IntoIterator<Item = &'a Vec<u8>>) {
        match &mut self.kind {
            PoolKind::Fifo(p) => p.remove_committed(txs),
            PoolKind::Fee { pool, .. } => {
                pool.remove(txs.into_iter().map(|t| Hash32::of_transaction(t)))
            }
        }
    }

    /// As [`TxPool::note_account_nonce`] for a transaction of `sender` about
    /// to be inserted; `idle_senders`: record it even for a sender with
    /// nothing pending (a refused insert forgets it again).
    pub fn prime_account_nonce(
        &mut self,
        sender: crate::types::AccountId,
        nonce: u64,
        idle_senders: bool,
    ) {
        if let PoolKind::Fee { pool, .. } = &mut self.kind {
            for id in pool.prime_account_nonce(sender, nonce, idle_senders) {
                self.dropped(id, PoolDropReason::NonceUsed);
            }
        }
    }

    /// `sender`'s account executes `nonce` next, in the executed state (read
    /// when one of its transactions arrived or a block carrying one was
    /// executed): the pool proposes none of its transactions until it holds
    /// that nonce (fee pool only). Pending transactions of the sender below
    /// `nonce` are dropped ([`PoolDropReason::NonceUsed`]).
    pub fn note_account_nonce(&mut self, sender: crate::types::AccountId, nonce: u64) {
        if let PoolKind::Fee { pool, .. } = &mut self.kind {
            for id in pool.note_account_nonce(sender, nonce) {
                self.dropped(id, PoolDropReason::NonceUsed);
            }
        }
    }

    /// `txs` were in an executed block (fee pool only), in one pass: they
    /// leave the pool (a copy pending here, submitted to several
    /// validators, is settled too), the nonces this pool handed to batches
    /// among them are no longer in flight, and each of their senders with
    /// transactions pending gets its next nonce from `executed_nonce`, read
    /// from the executed state ([`TxPool::note_account_nonce`]).
    pub fn note_executed<'a>(
        &mut self,
        txs: impl IntoIterator<Item = &'a Vec<u8>>,
        mut executed_nonce: impl FnMut(&crate::types::AccountId) -> Option<u64>,
    ) {
        let PoolKind::Fee { pool, meta, .. } = &mut self.kind else {
            return;
        };
        let mut senders = Vec::new();
        for tx in txs {
            pool.remove([Hash32::of_transaction(tx)]);
            if let Some(m) = meta(tx) {
                pool.note_settled(&m.sender, m.nonce);
                senders.push(m.sender);
            }
        }
        senders.sort_unstable();
        senders.dedup();
        for sender in senders {
            if let Some(nonce) = executed_nonce(&sender) {
                self.note_account_nonce(sender, nonce);
            }
        }
    }

    /// Pending transactions.
    #[must_use]
    pub fn len(&self) -> usize {
        match &self.kind {
            PoolKind::Fifo(p) => p.len(),
            PoolKind::Fee { pool, .. } => pool.len(),
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
        match &self.kind {
            PoolKind::Fifo(_) => None,
            PoolKind::Fee { pool, .. } => Some(pool.metrics()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fee_mempool::{FeeMempoolConfig, TxMeta};
    use crate::types::{AccountId, Millis};

    /// Test transactions: byte 0 is the sender, byte 1 the fee, byte 2 the
    /// nonce.
    fn meta(bytes: &[u8]) -> Option<TxMeta> {
        let [sender, fee, nonce, ..] = bytes else {
            return None;
        };
        Some(TxMeta {
            sender: AccountId([*sender; 32]),
            nonce: u64::from(*nonce),
            max_fee_per_gas: u128::from(*fee),
            effective_fee: u128::from(*fee),
            gas_limit: 0,
            v0_payload: false,
            replace_rank: None,
        })
    }

    fn fee_pool(capacity: usize) -> TxPool {
        TxPool::new(
            Some(meta),
            FeeMempoolConfig {
                capacity,
                ..FeeMempoolConfig::mainnet()
            },
            0,
            64,
        )
    }

    #[test]
    fn a_full_pool_refuses_and_records_the_refusal() {
        let mut p = TxPool::new(None, FeeMempoolConfig::mainnet(), 2, 64);
        p.insert(Millis(0), b"a".to_vec()).unwrap();
        p.insert(Millis(0), b"b".to_vec()).unwrap();
        assert_eq!(p.insert(Millis(0), b"c".to_vec()), Err("pool_full"));
        // A duplicate of a pending transaction is not a drop: it is pending.
        assert_eq!(p.insert(Millis(0), b"a".to_vec()), Err("duplicate"));
        assert_eq!(
            p.take_drops(),
            vec![(Hash32::digest(b"c"), PoolDropReason::Refused("pool_full"))]
        );
        assert!(p.take_drops().is_empty(), "taken once");
        assert_eq!(
            p.snapshot(),
            PoolSnapshot {
                len: 2,
                capacity: 2,
                lowest_fee_per_gas: None
            }
        );
    }

    #[test]
    fn evictions_and_replacements_are_recorded_as_drops() {
        let mut p = fee_pool(2);
        let (low, mid, high) = (vec![1, 1, 0], vec![2, 5, 0], vec![3, 9, 0]);
        p.insert(Millis(0), low.clone()).unwrap();
        p.insert(Millis(0), mid.clone()).unwrap();
        assert_eq!(p.snapshot().lowest_fee_per_gas, Some(1));
        // A cheaper one is refused; a richer one evicts the cheapest.
        assert_eq!(p.insert(Millis(0), vec![4, 1, 0]), Err("pool_full"));
        p.insert(Millis(0), high.clone()).unwrap();
        // Sender 2 replaces its nonce 0 with a higher fee.
        let bump = vec![2, 50, 0];
        p.insert(Millis(0), bump.clone()).unwrap();
        let id = |t: &[u8]| Hash32::digest(t);
        assert_eq!(
            p.take_drops(),
            vec![
                (id(&[4, 1, 0]), PoolDropReason::Refused("pool_full")),
                (id(&low), PoolDropReason::Evicted { by: id(&high) }),
                (id(&mid), PoolDropReason::Replaced { by: id(&bump) }),
            ]
        );
        assert_eq!(p.len(), 2);
    }

    /// Found in review (issue #21): batches were cut by count and bytes
    /// only. With transactions declaring more than the block gas limit over
    /// the batch size (60,000 gas for 500 transactions and 30 M), one batch
    /// passed the limit on its own; a block takes its first batch whatever
    /// its gas, and execution refused the excess.
    #[test]
    fn a_batch_declares_no_more_gas_than_a_block_takes() {
        /// Byte 0 the sender, byte 1 the declared gas in millions.
        fn gas_meta(bytes: &[u8]) -> Option<TxMeta> {
            let [sender, gas, ..] = bytes else {
                return None;
            };
            Some(TxMeta {
                sender: AccountId([*sender; 32]),
                nonce: 0,
                max_fee_per_gas: 1,
                effective_fee: 1,
                gas_limit: u64::from(*gas) * 1_000_000,
                v0_payload: false,
                replace_rank: None,
            })
        }
        let mut p = TxPool::new(Some(gas_meta), FeeMempoolConfig::mainnet(), 0, 64);
        for sender in 1..=3 {
            p.insert(Millis(0), vec![sender, 16]).unwrap();
        }
        assert_eq!(p.drain(10, 1 << 20, 30_000_000).len(), 1);
        assert_eq!(p.len(), 2);
    }

    /// Found in review (issue #21): a committed block's transactions used
    /// to advance their senders at commit, including one execution then
    /// refused; the executed state is read instead. A block (a Byzantine
    /// batch) carrying a sender's nonce 1 ahead of its nonce 0, refused by
    /// execution, leaves the pending nonce 0 in place.
    #[test]
    fn a_later_nonce_refused_at_execution_does_not_drop_the_earlier_one() {
        let mut p = fee_pool(10);
        let sender = AccountId([1; 32]);
        let (t0, t1) = (vec![1, 5, 0], vec![1, 5, 1]);
        p.insert(Millis(0), t0.clone()).unwrap();
        p.insert(Millis(0), t1.clone()).unwrap();
        p.note_account_nonce(sender, 0);
        let block = vec![t1];
        p.remove_committed(&block);
        p.note_account_nonce(sender, 0);
        assert_eq!(p.take(10, &BTreeSet::new()), vec![t0]);
        assert!(p.take_drops().is_empty());
    }

    #[test]
    fn unpublished_drops_are_bounded_under_a_flood() {
        let mut p = TxPool::new(None, FeeMempoolConfig::mainnet(), 0, 64);
        let n = crate::pool_drops::MAX_UNPUBLISHED_DROPS + 1_000;
        for i in 0..n as u64 {
            let _ = p.insert(Millis(0), i.to_be_bytes().to_vec());
        }
        let drops = p.take_drops();
        assert_eq!(drops.len(), crate::pool_drops::MAX_UNPUBLISHED_DROPS);
        // The newest are kept.
        let last = (n as u64 - 1).to_be_bytes();
        assert_eq!(drops.last().map(|d| d.0), Some(Hash32::digest(&last)));
    }

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
