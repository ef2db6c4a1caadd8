// A test double of a node behind the API: a `Ledger`, a bounded pool and
// blocks produced on demand with the real executor. Test-only, shared by
// qbind-api's and qbind-client's integration tests, which `include!` it
// inside a `mod fake_node { ... }` (so: no inner attributes or `//!` here).

use std::collections::HashMap;
use std::sync::Mutex;

use qbind_api::backend::{
    ApiBackend, BackendError, BlockInfo, ChainStatus, DropReason, PoolStatus, SyncState, TxLookup,
};
use qbind_api::submit::{CheckedTx, SubmitError};
use qbind_core::consensus::{BlockHeader, QuorumCert};
use qbind_core::execution::{
    Account, BlockContext, ExecutionConfig, Ledger, Receipt, TransferPayload, execute_block,
};
use qbind_core::types::{AccountId, Epoch, Hash32, Height, NetworkEnvironment, ValidatorId, View};

/// Everything the fake node holds.
#[derive(Debug)]
pub struct FakeState {
    pub ledger: Ledger,
    pub pool: Vec<CheckedTx>,
    pub receipts: HashMap<Hash32, (Height, u32, Receipt)>,
    pub blocks: Vec<BlockInfo>,
    pub submit_calls: usize,
    /// Transactions the pool let go after accepting them.
    pub drops: HashMap<Hash32, DropReason>,
}

/// The fake node.
#[derive(Debug)]
pub struct FakeNode {
    env: NetworkEnvironment,
    pool_capacity: usize,
    pub state: Mutex<FakeState>,
}

/// A comparable summary: state root, pool, height, receipts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub root: Hash32,
    pub pool: Vec<Hash32>,
    pub height: usize,
    pub receipts: usize,
}

impl FakeNode {
    pub fn new(
        env: NetworkEnvironment,
        funded: &[(AccountId, u128)],
        pool_capacity: usize,
    ) -> Self {
        FakeNode {
            env,
            pool_capacity,
            state: Mutex::new(FakeState {
                ledger: Ledger::genesis(funded.iter().copied()).unwrap(),
                pool: Vec::new(),
                receipts: HashMap::new(),
                blocks: Vec::new(),
                submit_calls: 0,
                drops: HashMap::new(),
            }),
        }
    }

    pub fn fingerprint(&self) -> Fingerprint {
        let s = self.state.lock().unwrap();
        Fingerprint {
            root: s.ledger.root(),
            pool: s.pool.iter().map(CheckedTx::hash).collect(),
            height: s.blocks.len(),
            receipts: s.receipts.len(),
        }
    }

    /// Execute the whole pool as the next block; returns its height.
    pub fn commit_block(&self) -> u64 {
        let mut s = self.state.lock().unwrap();
        let height = Height(s.blocks.len() as u64 + 1);
        let pool = std::mem::take(&mut s.pool);
        let txs: Vec<_> = pool.iter().map(|c| c.transaction().clone()).collect();
        let ctx = BlockContext {
            height,
            proposer: AccountId([0xEE; 32]),
            config: ExecutionConfig::devnet(),
        };
        let outcome = execute_block(&s.ledger, &ctx, &txs).unwrap();
        s.ledger.apply(&outcome.transition).unwrap();
        for (i, (tx, receipt)) in pool.iter().zip(&outcome.receipts).enumerate() {
            s.receipts.insert(tx.hash(), (height, i as u32, *receipt));
        }
        let parent_id = s.blocks.last().map_or(Hash32::ZERO, |b| b.header.id());
        let header = BlockHeader {
            epoch: Epoch(0),
            view: View(height.0 + 1),
            height,
            parent_id,
            justify_view: View(height.0),
            proposer: ValidatorId(0),
            payload_digest: Hash32::digest(&height.0.to_be_bytes()),
            batch_commitment: Hash32::ZERO,
            exec_height: Height(height.0 - 1),
            exec_state_root: Hash32::ZERO,
        };
        let qc = QuorumCert::genesis(header.id());
        s.blocks.push(BlockInfo {
            header,
            qc: Some(qc),
            tx_hashes: pool.iter().map(CheckedTx::hash).collect(),
            state_root: Some(outcome.state_root),
        });
        height.0
    }
}

impl ApiBackend for FakeNode {
    fn network(&self) -> NetworkEnvironment {
        self.env
    }

    async fn submit(&self, tx: CheckedTx) -> Result<(), SubmitError> {
        let mut s = self.state.lock().unwrap();
        s.submit_calls += 1;
        if s.pool.iter().any(|p| p.hash() == tx.hash()) || s.receipts.contains_key(&tx.hash()) {
            return Err(SubmitError::AlreadyKnown);
        }
        let t = tx.transaction();
        let sender = t.sender_id();
        let account = s.ledger.get(&sender);
        let pending = s
            .pool
            .iter()
            .filter(|p| p.transaction().sender_id() == sender)
            .count() as u64;
        if t.nonce() < account.nonce {
            return Err(SubmitError::StaleNonce {
                expected: account.nonce,
                got: t.nonce(),
            });
        }
        if t.nonce() != account.nonce + pending {
            return Err(SubmitError::NonceTooHigh {
                expected: account.nonce + pending,
                got: t.nonce(),
            });
        }
        let needed = match t.payload() {
            TransferPayload::V1(p) => u128::from(p.gas_limit)
                .saturating_mul(p.max_fee_per_gas)
                .saturating_add(p.amount),
            TransferPayload::V0(p) => p.amount,
        };
        if account.balance < needed {
            return Err(SubmitError::InsufficientBalance {
                balance: account.balance,
                needed,
            });
        }
        if s.pool.len() >= self.pool_capacity {
            return Err(SubmitError::PoolFull);
        }
        s.pool.push(tx);
        Ok(())
    }

    async fn tx_status(&self, hash: Hash32) -> Result<TxLookup, BackendError> {
        let s = self.state.lock().unwrap();
        if s.pool.iter().any(|p| p.hash() == hash) {
            return Ok(TxLookup::Pending);
        }
        if let Some(reason) = s.drops.get(&hash) {
            return Ok(TxLookup::Dropped(*reason));
        }
        Ok(match s.receipts.get(&hash) {
            Some((height, index, receipt)) => TxLookup::Executed {
                height: *height,
                index: *index,
                receipt: *receipt,
            },
            None => TxLookup::Unknown,
        })
    }

    async fn account(&self, id: AccountId) -> Result<Account, BackendError> {
        Ok(self.state.lock().unwrap().ledger.get(&id))
    }

    async fn block(&self, height: Height) -> Result<Option<BlockInfo>, BackendError> {
        let s = self.state.lock().unwrap();
        let index = height.0.checked_sub(1);
        Ok(index.and_then(|i| s.blocks.get(i as usize).cloned()))
    }

    async fn status(&self) -> Result<ChainStatus, BackendError> {
        let s = self.state.lock().unwrap();
        let h = Height(s.blocks.len() as u64);
        Ok(ChainStatus {
            height: h,
            executed_height: h,
            view: View(h.0 + 1),
            epoch: Epoch(0),
            peers: 3,
            sync: SyncState::Synced,
            pool: Some(PoolStatus {
                pending: s.pool.len() as u64,
                queued: 0,
                capacity: self.pool_capacity as u64,
            }),
        })
    }
}
