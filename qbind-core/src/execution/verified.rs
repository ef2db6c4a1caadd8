//! Verify each transaction's signature once per validator (issue #21, "a
//! verification pipeline at the ceiling").
//!
//! An ML-DSA-44 verification costs about 40 µs; before this a transaction
//! submitted through the API was verified by the server, again by the
//! node's admission check and again by execution. A [`VerifiedSet`]
//! remembers the transactions whose signature verified under its network,
//! keyed by the SHA3-256 of their canonical bytes (which include the
//! signature, so a changed signature is a different key), and the checks
//! consult it:
//!
//! - admission: [`super::check_transaction_verified`];
//! - execution: [`VerifyOnce`] wraps a [`BlockExecutor`] and verifies only
//!   the transactions of a block the set does not hold (through the inner
//!   executor's own, possibly parallel, verification), then remembers them;
//! - batch or block receipt: [`VerifiedSet::verify_all`], which an embedder
//!   runs off the consensus task on a thread pool, so that execution finds
//!   the block's transactions already verified.
//!
//! Correctness never depends on the set: a transaction that is not in it
//! is verified, and the set is bounded ([`VERIFIED_SET_CAPACITY`], oldest
//! forgotten first), so an entry lost to a flood costs one more
//! verification, never a skipped one. Only successes are remembered; a bad
//! signature is verified (and refused) every time it shows up.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::executor::{BlockContext, BlockExecutor, BlockOutcome, ExecutionError};
use super::state::AccountReader;
use super::tx::Transaction;
use crate::codec::Encode;
use crate::crypto::CryptoError;
use crate::types::{Hash32, NetworkEnvironment};

/// Transactions a [`VerifiedSet`] remembers by default: about two minutes
/// of transactions at 2,000 per second, 32 bytes each plus the index.
pub const VERIFIED_SET_CAPACITY: usize = 262_144;

#[derive(Debug)]
struct Inner {
    ids: HashSet<Hash32>,
    order: VecDeque<Hash32>,
}

/// Transactions whose signature verified under one network (see the module
/// docs). Shared between threads (`Arc<VerifiedSet>`).
#[derive(Debug)]
pub struct VerifiedSet {
    env: NetworkEnvironment,
    capacity: usize,
    inner: Mutex<Inner>,
    verifications: AtomicU64,
}

impl VerifiedSet {
    /// An empty set for `env` remembering at most `capacity` transactions.
    #[must_use]
    pub fn new(env: NetworkEnvironment, capacity: usize) -> Self {
        VerifiedSet {
            env,
            capacity,
            inner: Mutex::new(Inner {
                ids: HashSet::new(),
                order: VecDeque::new(),
            }),
            verifications: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Inserts are two collection operations: a poisoned lock still
        // holds a usable set (and a wrong answer only costs a verification
        // when it says "absent").
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The network whose signatures it vouches for.
    #[must_use]
    pub fn env(&self) -> NetworkEnvironment {
        self.env
    }

    /// The key of a transaction: SHA3-256 of its canonical bytes (its hash
    /// in the pool and the API).
    #[must_use]
    pub fn key(tx: &Transaction) -> Hash32 {
        Hash32::of_transaction(&tx.to_bytes())
    }

    /// Whether the transaction with hash `id` is known to verify.
    #[must_use]
    pub fn contains(&self, id: &Hash32) -> bool {
        self.lock().ids.contains(id)
    }

    /// Remember that the transaction with hash `id` verified under
    /// [`Self::env`] (the caller verified it, e.g. the API server).
    pub fn insert(&self, id: Hash32) {
        let mut inner = self.lock();
        if inner.ids.insert(id) {
            inner.order.push_back(id);
        }
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.ids.remove(&old);
            }
        }
    }

    /// Count `n` signature verifications done on the set's behalf.
    pub fn count_verifications(&self, n: u64) {
        self.verifications.fetch_add(n, Ordering::Relaxed);
    }

    /// Signature verifications done through this set so far (a metric, and
    /// what tests count).
    #[must_use]
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Transactions remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().ids.len()
    }

    /// Whether nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().ids.is_empty()
    }

    /// Check `tx`'s signature under [`Self::env`]: no work if the set holds
    /// it, else one verification, remembered on success.
    ///
    /// # Errors
    /// The signature does not verify.
    pub fn verify(&self, tx: &Transaction) -> Result<(), CryptoError> {
        let id = Self::key(tx);
        if self.contains(&id) {
            return Ok(());
        }
        self.count_verifications(1);
        tx.verify(self.env)?;
        self.insert(id);
        Ok(())
    }

    /// Verify every transaction among `raw` (wire bytes; undecodable ones
    /// are skipped) that the set does not hold, and remember those that
    /// verify. Meant for batch or block receipt, on a worker thread.
    pub fn verify_all(&self, raw: &[Vec<u8>]) {
        use crate::codec::Decode;
        for bytes in raw {
            let id = Hash32::of_transaction(bytes);
            if self.contains(&id) {
                continue;
            }
            if let Ok(tx) = Transaction::from_bytes(bytes) {
                self.count_verifications(1);
                if tx.verify(self.env).is_ok() {
                    self.insert(id);
                }
            }
        }
    }
}

/// A [`BlockExecutor`] that verifies only what a [`VerifiedSet`] does not
/// already vouch for (through `inner`'s verification, so Stage B's stays
/// parallel) and executes with `inner`.
#[derive(Clone, Debug)]
pub struct VerifyOnce<E> {
    /// The executor that verifies the rest and runs blocks.
    pub inner: E,
    /// The set consulted and filled.
    pub set: std::sync::Arc<VerifiedSet>,
}

impl<E: BlockExecutor> BlockExecutor for VerifyOnce<E> {
    fn invalid_signatures(&self, env: NetworkEnvironment, txs: &[Transaction]) -> Vec<usize> {
        if env != self.set.env() {
            return self.inner.invalid_signatures(env, txs);
        }
        let keys: Vec<Hash32> = txs.iter().map(VerifiedSet::key).collect();
        let unknown: Vec<usize> = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| !self.set.contains(k))
            .map(|(i, _)| i)
            .collect();
        if unknown.is_empty() {
            return Vec::new();
        }
        let subset: Vec<Transaction> = unknown
            .iter()
            .filter_map(|i| txs.get(*i).cloned())
            .collect();
        self.set.count_verifications(subset.len() as u64);
        let bad_in_subset = self.inner.invalid_signatures(env, &subset);
        let mut bad = Vec::with_capacity(bad_in_subset.len());
        for (j, i) in unknown.iter().enumerate() {
            if bad_in_subset.binary_search(&j).is_ok() {
                bad.push(*i);
            } else if let Some(k) = keys.get(*i) {
                self.set.insert(*k);
            }
        }
        bad
    }

    fn execute<S: AccountReader + Sync + ?Sized>(
        &self,
        state: &S,
        ctx: &BlockContext,
        txs: &[Transaction],
    ) -> Result<BlockOutcome, ExecutionError> {
        self.inner.execute(state, ctx, txs)
    }
}

/// Work on the transactions of a received batch or inline block payload,
/// started by the engine (`crate::engine`, feature `engine`) before the replica handles the message and run
/// elsewhere (a thread pool): the verify-once prefetch
/// ([`VerifiedSet::verify_all`]; `qbind_exec`'s
/// `VerifyPrefetch` runs it on rayon). It must return at once; what it
/// computes may only be a cache, since the replica never waits for it.
pub trait PayloadPrefetch: Send + Sync {
    /// The transactions (wire bytes) of a payload that just arrived.
    fn prefetch(&self, txs: &[Vec<u8>]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encode;
    use crate::crypto::{KeyPair, Signature};
    use crate::execution::{
        AdmissionPolicy, ExecutionConfig, Ledger, SequentialExecutor, TransferPayload,
        TransferPayloadV1, TxStatus, check_transaction, check_transaction_verified,
        execute_wire_block_with,
    };
    use crate::fee_mempool::FeeMempoolConfig;
    use crate::mempool::TxPool;
    use crate::types::{AccountId, Height, Millis};
    use std::collections::BTreeSet;
    use std::sync::Arc;

    const ENV: NetworkEnvironment = NetworkEnvironment::Testnet;

    fn keys(n: u8) -> Vec<KeyPair> {
        (0..n).map(|i| KeyPair::from_seed(&[40 + i; 32])).collect()
    }

    fn transfer(key: &KeyPair, nonce: u64) -> Transaction {
        let payload = TransferPayload::V1(TransferPayloadV1 {
            recipient: AccountId([7u8; 32]),
            amount: 10,
            gas_limit: 40_000,
            max_fee_per_gas: 1,
        });
        Transaction::sign(key, ENV, nonce, payload)
    }

    fn ledger(keys: &[KeyPair]) -> Ledger {
        Ledger::genesis(
            keys.iter()
                .map(|k| (AccountId::from_public_key(k.public_key()), 1_000_000)),
        )
        .unwrap()
    }

    fn ctx() -> BlockContext {
        BlockContext {
            height: Height(1),
            proposer: AccountId([9u8; 32]),
            config: ExecutionConfig::mainnet(),
        }
    }

    /// With the set, a transaction admitted through the pool, proposed and
    /// executed costs one signature verification on this validator.
    #[test]
    fn one_verification_per_transaction_across_admit_propose_execute() {
        let keys = keys(4);
        let state = ledger(&keys);
        let set = Arc::new(VerifiedSet::new(ENV, VERIFIED_SET_CAPACITY));
        let policy = AdmissionPolicy::new(ENV, ExecutionConfig::mainnet());
        let mut pool = TxPool::new(
            Some(crate::execution::tx_meta),
            FeeMempoolConfig::mainnet(),
            0,
            8_192,
        );
        for k in &keys {
            let bytes = transfer(k, 0).to_bytes();
            check_transaction_verified(&state, &policy, &bytes, &set).unwrap();
            pool.insert(Millis(0), bytes).unwrap();
        }
        // Propose: the leader takes the payload (no verification).
        let block = pool.take(100, &BTreeSet::new());
        assert_eq!(block.len(), 4);
        let exec = VerifyOnce {
            inner: SequentialExecutor,
            set: set.clone(),
        };
        let out = execute_wire_block_with(&exec, &state, &ctx(), ENV, &block).unwrap();
        assert_eq!(out.succeeded(), 4);
        assert_eq!(set.verifications(), 4, "one per transaction");
        // Without the set the same path verifies at admission and again in
        // execution; a validator that only executes verifies once too.
        let fresh = Arc::new(VerifiedSet::new(ENV, VERIFIED_SET_CAPACITY));
        let exec = VerifyOnce {
            inner: SequentialExecutor,
            set: fresh.clone(),
        };
        execute_wire_block_with(&exec, &state, &ctx(), ENV, &block).unwrap();
        assert_eq!(fresh.verifications(), 4);
        // Received in a batch and verified on receipt: execution adds none.
        let received = Arc::new(VerifiedSet::new(ENV, VERIFIED_SET_CAPACITY));
        received.verify_all(&block);
        let exec = VerifyOnce {
            inner: SequentialExecutor,
            set: received.clone(),
        };
        execute_wire_block_with(&exec, &state, &ctx(), ENV, &block).unwrap();
        assert_eq!(received.verifications(), 4);
    }

    /// A transaction that never passed admission and arrives in a block with
    /// a bad signature is refused by execution, even when its correctly
    /// signed twin (same body, other signature) is in the set.
    #[test]
    fn a_bad_signature_that_bypasses_admission_is_still_rejected() {
        let keys = keys(2);
        let state = ledger(&keys);
        let set = Arc::new(VerifiedSet::new(ENV, VERIFIED_SET_CAPACITY));
        let good = transfer(&keys[0], 0);
        set.verify(&good).unwrap();
        let forged = Transaction::from_parts(
            good.sender().clone(),
            0,
            *good.payload(),
            Signature::from_bytes(&[0u8; 2420]).unwrap(),
        );
        let other = transfer(&keys[1], 0);
        let exec = VerifyOnce {
            inner: SequentialExecutor,
            set: set.clone(),
        };
        let block = vec![forged.to_bytes(), other.to_bytes()];
        let out = execute_wire_block_with(&exec, &state, &ctx(), ENV, &block).unwrap();
        assert_eq!(out.bad_signatures, 1);
        assert_eq!(out.succeeded(), 1);
        assert_eq!(out.outcome.receipts.len(), 1);
        assert_eq!(out.outcome.receipts[0].status, TxStatus::Success);
        assert!(!set.contains(&VerifiedSet::key(&forged)));
        // And again: failures are not remembered.
        let again = execute_wire_block_with(&exec, &state, &ctx(), ENV, &block[..1]).unwrap();
        assert_eq!(again.bad_signatures, 1);
        // Admission with the set refuses it as well.
        let policy = AdmissionPolicy::new(ENV, ExecutionConfig::mainnet());
        let err = check_transaction_verified(&state, &policy, &forged.to_bytes(), &set);
        assert_eq!(err.map(|_| ()).unwrap_err().code(), "bad_signature");
        // A set for another network is not consulted.
        let devnet = VerifyOnce {
            inner: SequentialExecutor,
            set: Arc::new(VerifiedSet::new(NetworkEnvironment::Devnet, 8)),
        };
        let bad = devnet.invalid_signatures(ENV, &[forged, good.clone()]);
        assert_eq!(bad, vec![0]);
        assert!(check_transaction(&state, &policy, &good.to_bytes()).is_ok());
    }

    #[test]
    fn the_set_is_bounded_under_a_flood_and_an_evicted_entry_is_verified_again() {
        let set = VerifiedSet::new(ENV, 100);
        for i in 0..10_000u64 {
            set.insert(Hash32::digest(&i.to_be_bytes()));
        }
        assert_eq!(set.len(), 100);
        assert_eq!(set.lock().order.len(), 100);
        let keys = keys(1);
        let tx = transfer(&keys[0], 0);
        set.verify(&tx).unwrap();
        assert_eq!(set.verifications(), 1);
        set.verify(&tx).unwrap();
        assert_eq!(set.verifications(), 1, "remembered");
        for i in 0..100u64 {
            set.insert(Hash32::digest(&(i + 20_000).to_be_bytes()));
        }
        assert!(!set.contains(&VerifiedSet::key(&tx)), "flooded out");
        set.verify(&tx).unwrap();
        assert_eq!(set.verifications(), 2, "verified again, never skipped");
    }
}
