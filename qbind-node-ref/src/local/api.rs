//! The public API (`qbind-api`) over one local validator
//! (`--api-addr`, `--api-validator`; docs/api.md, docs/node.md).
//!
//! - **submit**: the server has already decoded the transaction and checked
//!   its signature; here it passes [`check_transaction`] against the
//!   validator's *executed* state (nonce, balance, gas rules: the same
//!   admission the load generator uses) and then goes to the engine's
//!   submission channel, where the fee-priority pool applies its own limits.
//!   A refusal changes nothing.
//! - **backpressure**: a submission the engine's pool would refuse (pending
//!   plus queued transactions at capacity, fee not above the lowest pending)
//!   gets 429 `pool_full` before anything is queued ([`PoolMonitor`]).
//! - **verify once**: the server's signature check is this validator's one
//!   verification; admission and execution consult the [`VerifiedSet`].
//! - **tx status**: a transaction the pool let go after accepting it is
//!   `dropped` with the pool's reason ([`PoolMonitor::dropped`]); otherwise a
//!   bounded in-memory [`ReceiptIndex`], then the validator's store.
//!   Receipts are recorded by [`Recording`], a wrapper around the
//!   validator's block executor, written to the store in the block's durable
//!   batch by [`super::receipt_store`] (they survive restarts), and
//!   published in memory when the engine reports `Event::Executed` for the
//!   height. Transactions accepted here and not yet executed are `pending`
//!   for [`PENDING_TTL`] (in memory only); anything else is unknown. The
//!   index keeps the last [`RECEIPT_CAPACITY`] receipts and the per-block
//!   data of the last [`BLOCK_WINDOW`] heights; the store keeps the last
//!   `--api-receipt-heights` heights.
//! - **account** and **block**: the validator's store (accounts; committed
//!   block, its QC, transaction hashes).
//! - **status**: the engine's consensus metrics and the P2P metrics.
//! - **before the node is ready** ([`LocalApi`]): the server is bound
//!   before the store is opened, so that a node that starts by state sync
//!   reports its progress in the status (`sync.state = "state_sync"`);
//!   every other route answers 503 until the node is ready.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::store::NodeStore;
use qbind_api::{
    ApiBackend, BackendError, BlockInfo, ChainStatus, CheckedTx, PoolStatus, SubmitError,
    SyncState, TxLookup,
};
use qbind_core::codec::{Decode, Encode};
use qbind_core::consensus::{Block, Payload, QuorumCert};
use qbind_core::execution::{
    Account, AccountReader, AdmissionError, AdmissionPolicy, BackendAccounts, BlockContext,
    BlockExecutor, BlockOutcome, ExecutionError, Receipt, RejectReason, Transaction,
    TransferPayload, VerifiedSet, check_transaction_verified,
};
use qbind_core::fee_mempool::check_replace_rank;
use qbind_core::pool_drops::PoolMonitor;
use qbind_core::schema::{committed_block_key, read_batch};
use qbind_core::system_tx::SystemTx;
use qbind_core::traits::{Namespace, StateRead};
use qbind_core::types::{AccountId, Epoch, Hash32, Height, NetworkEnvironment, View};
use tokio::sync::mpsc;

use super::receipt_store;
use super::render::Shared;

/// Receipts the index keeps (the oldest are forgotten first).
pub const RECEIPT_CAPACITY: usize = 100_000;
/// Heights whose transaction hashes and state root the index keeps.
pub const BLOCK_WINDOW: usize = 10_000;
/// Transactions accepted by the API and not yet executed that it tracks.
pub const PENDING_CAPACITY: usize = 50_000;
/// An accepted transaction not executed within this long is reported
/// unknown (the pool may have dropped it).
pub const PENDING_TTL: Duration = Duration::from_secs(600);

/// One executed transaction.
#[derive(Clone, Copy, Debug)]
struct Entry {
    height: Height,
    index: u32,
    receipt: Receipt,
}

/// What the index knows about one height.
#[derive(Clone, Debug, Default)]
struct BlockEntry {
    /// The delivered transactions' hashes, in order.
    delivered: Option<Vec<Hash32>>,
    /// The state root after the block, once executed.
    state_root: Option<Hash32>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Receipts recorded by the executor, before their positions are known.
    staged: BTreeMap<u64, Vec<(Hash32, Receipt)>>,
    /// Receipts with their positions in the delivered block, not yet
    /// durable.
    ready: BTreeMap<u64, Vec<super::receipt_store::Executed>>,
    receipts: HashMap<Hash32, Entry>,
    receipt_order: VecDeque<Hash32>,
    blocks: BTreeMap<u64, BlockEntry>,
    pending: HashMap<Hash32, Instant>,
    pending_order: VecDeque<Hash32>,
}

/// Receipts by transaction hash, per-height transaction hashes and state
/// roots, and the transactions in flight: bounded, in memory.
#[derive(Debug, Default)]
pub struct ReceiptIndex {
    inner: Mutex<Inner>,
}

impl ReceiptIndex {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent-enough data
        // (every update is a few map operations): keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record the receipts of the block at `height` (not yet durable).
    pub(super) fn stage(&self, height: Height, receipts: Vec<(Hash32, Receipt)>) {
        let mut inner = self.lock();
        inner.staged.insert(height.0, receipts);
        while inner.staged.len() > BLOCK_WINDOW {
            inner.staged.pop_first();
        }
    }

    /// Take the receipts staged for `height` (empty if none), in
    /// execution order.
    pub(super) fn take_staged(&self, height: Height) -> Vec<(Hash32, Receipt)> {
        self.lock().staged.remove(&height.0).unwrap_or_default()
    }

    /// The block at `height` delivered the transactions `delivered`
    /// (hashes, in order) and executed `executed` (with their positions);
    /// published by [`ReceiptIndex::executed`] once durable.
    pub(super) fn positioned(
        &self,
        height: Height,
        delivered: Vec<Hash32>,
        executed: Vec<super::receipt_store::Executed>,
    ) {
        let mut inner = self.lock();
        inner.blocks.entry(height.0).or_default().delivered = Some(delivered);
        inner.ready.insert(height.0, executed);
        while inner.ready.len() > BLOCK_WINDOW {
            inner.ready.pop_first();
        }
        trim_blocks(&mut inner);
    }

    /// The block at `height` is executed and durable: publish its receipts.
    pub(super) fn executed(&self, height: Height, state_root: Hash32) {
        let mut inner = self.lock();
        let ready = inner.ready.remove(&height.0).unwrap_or_default();
        // Anything left below this height was never made durable.
        inner.ready = inner.ready.split_off(&height.0);
        inner.staged = inner.staged.split_off(&(height.0 + 1));
        inner.blocks.entry(height.0).or_default().state_root = Some(state_root);
        for (hash, index, receipt) in ready {
            let entry = Entry {
                height,
                index,
                receipt,
            };
            if inner.receipts.insert(hash, entry).is_none() {
                inner.receipt_order.push_back(hash);
            }
            inner.pending.remove(&hash);
        }
        while inner.receipt_order.len() > RECEIPT_CAPACITY {
            if let Some(old) = inner.receipt_order.pop_front() {
                inner.receipts.remove(&old);
            }
        }
        trim_blocks(&mut inner);
    }

    /// A transaction accepted by the API.
    fn accepted(&self, hash: Hash32) {
        let mut inner = self.lock();
        if inner.pending.insert(hash, Instant::now()).is_none() {
            inner.pending_order.push_back(hash);
        }
        while inner.pending_order.len() > PENDING_CAPACITY {
            if let Some(old) = inner.pending_order.pop_front() {
                inner.pending.remove(&old);
            }
        }
    }

    /// What the index knows about `hash`.
    #[must_use]
    pub fn lookup(&self, hash: &Hash32) -> TxLookup {
        let inner = self.lock();
        if let Some(e) = inner.receipts.get(hash) {
            return TxLookup::Executed {
                height: e.height,
                index: e.index,
                receipt: e.receipt,
            };
        }
        match inner.pending.get(hash) {
            Some(at) if at.elapsed() < PENDING_TTL => TxLookup::Pending,
            _ => TxLookup::Unknown,
        }
    }

    fn block(&self, height: u64) -> Option<BlockEntry> {
        self.lock().blocks.get(&height).cloned()
    }
}

fn trim_blocks(inner: &mut Inner) {
    while inner.blocks.len() > BLOCK_WINDOW {
        inner.blocks.pop_first();
    }
}

/// A block executor that records each block's receipts (by transaction
/// hash) in a [`ReceiptIndex`]; otherwise `inner` unchanged.
#[derive(Clone, Debug)]
pub(super) struct Recording<E> {
    /// The executor that runs the block.
    pub(super) inner: E,
    /// Where the receipts go.
    pub(super) index: Arc<ReceiptIndex>,
}

impl<E: BlockExecutor> BlockExecutor for Recording<E> {
    fn invalid_signatures(&self, env: NetworkEnvironment, txs: &[Transaction]) -> Vec<usize> {
        self.inner.invalid_signatures(env, txs)
    }

    fn execute<S: AccountReader + Sync + ?Sized>(
        &self,
        state: &S,
        ctx: &BlockContext,
        txs: &[Transaction],
    ) -> Result<BlockOutcome, ExecutionError> {
        let outcome = self.inner.execute(state, ctx, txs)?;
        let receipts = txs
            .iter()
            .map(|tx| Hash32::of_transaction(&tx.to_bytes()))
            .zip(outcome.receipts.iter().copied())
            .collect();
        self.index.stage(ctx.height, receipts);
        Ok(outcome)
    }
}

/// The API backend over local slot `slot`.
pub(super) struct NodeApi {
    pub(super) env: NetworkEnvironment,
    pub(super) admission: AdmissionPolicy,
    pub(super) store: Arc<NodeStore>,
    pub(super) submit: mpsc::UnboundedSender<Vec<u8>>,
    pub(super) index: Arc<ReceiptIndex>,
    /// The engine's pool: refuse when full, report drops.
    pub(super) pool: Arc<PoolMonitor>,
    /// Signatures already verified (the server's check counts as the one).
    pub(super) verified: Arc<VerifiedSet>,
    /// The engine's schedule with its executed key registry: what a
    /// submitted key rotation is checked against.
    pub(super) schedule: tokio::sync::watch::Receiver<Arc<qbind_core::validator::EpochSchedule>>,
    pub(super) shared: Arc<Shared>,
    pub(super) slot: usize,
    /// Validators of the network (peers of the in-memory transport).
    pub(super) n: usize,
    /// False on a full node: its pool never reaches a block, so
    /// submissions are refused with `not_a_validator` (421).
    pub(super) takes_transactions: bool,
    /// Serves this node's newest snapshot for state sync (with
    /// `--snapshot-dir`).
    pub(super) state_sync: Option<Arc<crate::state_sync::StateSyncServer>>,
    /// The key rotations this API handed to the pool, by pool sender (one
    /// per validator and key role, so at most that many entries; only
    /// signed rotations get here): their replacement rank and hash, so
    /// that one that would not replace a pending one is refused now
    /// rather than dropped by the pool after a 202.
    pub(super) rotations: Mutex<HashMap<AccountId, (u64, Hash32)>>,
    /// The first height whose system transactions are applied: before the
    /// chain is one block short of it, a rotation is refused here (a block
    /// below it would hand the rotation to the application, which refuses
    /// it).
    pub(super) system_tx_activation: Height,
}

/// A system transaction submitted when the chain has committed `committed`
/// blocks could land in a block below `activation`, where it is not applied:
/// refused then.
fn not_before_activation(committed: u64, activation: Height) -> Result<(), SubmitError> {
    if committed.saturating_add(1) < activation.0 {
        return Err(SubmitError::KeyRotationRefused {
            reason: format!(
                "system transactions are applied from height {} (--system-tx-activation-height); \
                 the chain has committed {committed}",
                activation.0
            ),
        });
    }
    Ok(())
}

/// The API's verdict on an admission refusal.
fn refusal(error: AdmissionError) -> SubmitError {
    match error {
        AdmissionError::Undecodable { source } => {
            SubmitError::MalformedTransaction { reason: source }
        }
        AdmissionError::Invalid { reason } => SubmitError::Inadmissible(reason),
        AdmissionError::GasLimitAboveBlock {
            gas_limit,
            block_gas_limit,
        } => SubmitError::Inadmissible(RejectReason::BlockGasLimitExceeded {
            used: 0,
            gas_limit,
            block_gas_limit,
        }),
        AdmissionError::WrongChain {
            signed_for,
            expected,
        } => SubmitError::WrongChain {
            signed_for,
            expected,
        },
        AdmissionError::BadSignature => SubmitError::InvalidSignature,
        AdmissionError::NonceStale { account_nonce, got } => SubmitError::StaleNonce {
            expected: account_nonce,
            got,
        },
        AdmissionError::NonceExhausted => SubmitError::Inadmissible(RejectReason::NonceExhausted),
        AdmissionError::NonceTooFarAhead {
            account_nonce, got, ..
        } => SubmitError::NonceTooHigh {
            expected: account_nonce,
            got,
        },
        AdmissionError::CostOverflow => SubmitError::Inadmissible(RejectReason::MaxFeeOverflow),
        AdmissionError::InsufficientBalance { balance, needed } => {
            SubmitError::InsufficientBalance { balance, needed }
        }
        AdmissionError::StateUnavailable { source } => SubmitError::Internal {
            detail: format!("reading the sender's account: {source}"),
        },
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Internal {
        detail: format!("{what}: {e}"),
    }
}

impl NodeApi {
    /// Whether this node takes submissions now.
    fn accepting(&self) -> Result<(), SubmitError> {
        if !self.takes_transactions {
            return Err(SubmitError::NotAValidator);
        }
        if self.submit.is_closed() {
            return Err(SubmitError::Unavailable);
        }
        Ok(())
    }

    /// Hand a checked submission to the engine's pool and index it as
    /// pending under `hash`.
    fn enqueue(&self, hash: Hash32, bytes: Vec<u8>) -> Result<(), SubmitError> {
        self.pool.queued(&hash);
        if self.submit.send(bytes).is_err() {
            self.pool.unqueued();
            return Err(SubmitError::Unavailable);
        }
        self.index.accepted(hash);
        Ok(())
    }

    /// The transaction hashes of committed `block` (its delivered list when
    /// the index has it, else from the payload and the stored batches).
    fn tx_hashes(
        &self,
        block: &Block,
        known: Option<&BlockEntry>,
    ) -> Result<Vec<Hash32>, BackendError> {
        if let Some(hashes) = known.and_then(|b| b.delivered.clone()) {
            return Ok(hashes);
        }
        let txs: Vec<Vec<u8>> = match block.payload() {
            Payload::Transactions(txs) => txs.clone(),
            Payload::Batches(certs) => {
                let mut all = Vec::new();
                for cert in certs {
                    let Some(batch) = read_batch(&*self.store, &cert.batch.digest)
                        .map_err(|e| internal("reading a batch", e))?
                    else {
                        // Pruned with its block: the hashes are gone.
                        continue;
                    };
                    all.extend(batch.batch.txs);
                }
                all
            }
        };
        let (delivered, _) = qbind_core::dag::block_transactions(&txs);
        Ok(delivered
            .iter()
            .map(|t| Hash32::of_transaction(t))
            .collect())
    }
}

impl ApiBackend for NodeApi {
    fn network(&self) -> NetworkEnvironment {
        self.env
    }

    fn takes_transactions(&self) -> bool {
        self.takes_transactions
    }

    async fn submit(&self, tx: CheckedTx) -> Result<(), SubmitError> {
        self.accepting()?;
        let hash = tx.hash();
        let dropped = self.pool.dropped(&hash).is_some();
        if !dropped && !matches!(self.index.lookup(&hash), TxLookup::Unknown) {
            return Err(SubmitError::AlreadyKnown);
        }
        // Executed before this process started (or out of the memory
        // window): known too, as `tx_status` reports it.
        let stored =
            receipt_store::tx_receipt(&*self.store, &hash).map_err(|e| SubmitError::Internal {
                detail: format!("reading a stored receipt: {e}"),
            })?;
        if stored.is_some() {
            return Err(SubmitError::AlreadyKnown);
        }
        let fee = match tx.transaction().payload() {
            TransferPayload::V1(p) => p.max_fee_per_gas,
            TransferPayload::V0(_) => 0,
        };
        if self.pool.would_refuse(fee) {
            return Err(SubmitError::PoolFull);
        }
        // The server verified the signature under this network
        // (`CheckedTx::check`): that is this validator's one verification.
        if !self.verified.contains(&hash) {
            self.verified.count_verifications(1);
            self.verified.insert(hash);
        }
        let state = BackendAccounts::new(&*self.store);
        check_transaction_verified(&state, &self.admission, tx.bytes(), &self.verified)
            .map_err(refusal)?;
        self.enqueue(hash, tx.into_bytes())
    }

    async fn submit_system(&self, tx: SystemTx, bytes: Vec<u8>) -> Result<(), SubmitError> {
        self.accepting()?;
        let (committed, epoch) = self.shared.consensus.get(self.slot).map_or((0, 0), |m| {
            let m = m.borrow();
            (m.committed_height, m.epoch)
        });
        not_before_activation(committed, self.system_tx_activation)?;
        let hash = Hash32::digest(&bytes);
        let dropped = self.pool.dropped(&hash).is_some();
        if !dropped && !matches!(self.index.lookup(&hash), TxLookup::Unknown) {
            return Err(SubmitError::AlreadyKnown);
        }
        let meta = tx.meta();
        // A dry run on the registry as executed so far, as if the rotation
        // were in a block of the current epoch (a later block applies it
        // only if its effective epoch is still far enough ahead).
        let schedule = Arc::clone(&self.schedule.borrow());
        let epoch = Epoch(epoch);
        let env = self.env;
        let verdict = tokio::task::spawn_blocking(move || {
            let mut registry = schedule.key_registry();
            qbind_core::system_tx::apply(&schedule, &mut registry, env, epoch, &tx)
        })
        .await
        .map_err(|_| SubmitError::Internal {
            detail: "key rotation check".into(),
        })?;
        verdict.map_err(|e| SubmitError::KeyRotationRefused {
            reason: e.to_string(),
        })?;
        // The pool's replacement rule, checked here against what this API
        // gave it and is still pending there.
        let offered = meta.replace_rank.unwrap_or(0);
        let mut rotations = self
            .rotations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&(pending, pending_hash)) = rotations.get(&meta.sender) {
            let still_pending = pending_hash != hash
                && matches!(self.index.lookup(&pending_hash), TxLookup::Pending)
                && self.pool.dropped(&pending_hash).is_none();
            if still_pending {
                check_replace_rank(Some(offered), Some(pending)).map_err(SubmitError::from)?;
            }
        }
        self.enqueue(hash, bytes)?;
        rotations.insert(meta.sender, (offered, hash));
        Ok(())
    }

    async fn tx_status(&self, hash: Hash32) -> Result<TxLookup, BackendError> {
        let recent = self.index.lookup(&hash);
        if matches!(recent, TxLookup::Executed { .. }) {
            return Ok(recent);
        }
        // Executed before this process started, or out of the memory
        // window: the store keeps the receipts of the retained heights.
        if let Some(stored) = receipt_store::tx_receipt(&*self.store, &hash)
            .map_err(|e| internal("reading a stored receipt", e))?
        {
            return Ok(TxLookup::Executed {
                height: stored.height,
                index: stored.index,
                receipt: stored.receipt,
            });
        }
        Ok(match self.pool.dropped(&hash) {
            Some(reason) => TxLookup::Dropped(reason.into()),
            None => recent,
        })
    }

    async fn account(&self, id: AccountId) -> Result<Account, BackendError> {
        BackendAccounts::new(&*self.store)
            .account(&id)
            .map_err(|e| internal("reading an account", e))
    }

    async fn block(&self, height: Height) -> Result<Option<BlockInfo>, BackendError> {
        let Some(bytes) = self
            .store
            .get(Namespace::Blocks, &committed_block_key(height.0))
            .map_err(|e| internal("reading a block", e))?
        else {
            return Ok(None);
        };
        let block = Block::from_bytes(&bytes).map_err(|e| internal("decoding a block", e))?;
        // The QC certifying block h is the justify of the block at h + 1
        // when that one extends it directly.
        let qc = match height.0.checked_add(1) {
            Some(next) => self
                .store
                .get(Namespace::QuorumCerts, &next.to_be_bytes())
                .map_err(|e| internal("reading a QC", e))?
                .and_then(|b| QuorumCert::from_bytes(&b).ok())
                .filter(|qc| qc.block_id() == block.id()),
            None => None,
        };
        let known = self.index.block(height.0);
        let state_root = match known.as_ref().and_then(|b| b.state_root) {
            Some(root) => Some(root),
            None => receipt_store::height_record(&*self.store, height.0)
                .map_err(|e| internal("reading a stored height record", e))?
                .map(|r| r.state_root),
        };
        Ok(Some(BlockInfo {
            header: block.header().clone(),
            qc,
            tx_hashes: self.tx_hashes(&block, known.as_ref())?,
            state_root,
        }))
    }

    async fn state_sync(
        &self,
        request: qbind_api::StateSyncRequest,
    ) -> Result<qbind_api::StateSyncReply, BackendError> {
        let Some(server) = self.state_sync.clone() else {
            return Ok(qbind_api::StateSyncReply::NotServed);
        };
        tokio::task::spawn_blocking(move || server.answer(request))
            .await
            .map_err(|e| internal("serving state sync", e))?
            .map_err(|e| internal("serving state sync", e))
    }

    async fn status(&self) -> Result<ChainStatus, BackendError> {
        let metrics = self
            .shared
            .consensus
            .get(self.slot)
            .map(|m| m.borrow().clone())
            .ok_or(BackendError::Unavailable)?;
        let executed = self
            .shared
            .executed
            .get(self.slot)
            .map_or(0, |e| e.load(Ordering::Relaxed));
        let peers = match self.shared.net.get(self.slot) {
            Some(Some(net)) => net
                .outbound_peers
                .load(Ordering::Relaxed)
                .saturating_add(net.inbound_peers.load(Ordering::Relaxed)),
            _ => self.n.saturating_sub(1) as u64,
        };
        Ok(ChainStatus {
            height: Height(metrics.committed_height),
            executed_height: Height(executed),
            view: View(metrics.current_view),
            epoch: Epoch(metrics.epoch),
            peers: u32::try_from(peers).unwrap_or(u32::MAX),
            sync: sync_state(&metrics),
            pool: Some({
                let (pool, queued) = self.pool.snapshot();
                PoolStatus {
                    pending: pool.len as u64,
                    queued: queued as u64,
                    capacity: pool.capacity as u64,
                }
            }),
        })
    }
}

/// The API's backend from the moment its address is bound: the node's
/// [`NodeApi`] once the node is ready ([`LocalApi::ready`]); before, the
/// state sync's progress as the status (if the node starts by one) and 503
/// `unavailable` for everything else.
pub(super) struct LocalApi {
    env: NetworkEnvironment,
    takes_transactions: bool,
    syncing: Option<crate::state_sync::StateSyncProgress>,
    node: std::sync::OnceLock<NodeApi>,
}

impl LocalApi {
    pub(super) fn new(
        env: NetworkEnvironment,
        takes_transactions: bool,
        syncing: Option<crate::state_sync::StateSyncProgress>,
    ) -> LocalApi {
        LocalApi {
            env,
            takes_transactions,
            syncing,
            node: std::sync::OnceLock::new(),
        }
    }

    /// The node is ready: serve it from now on (a second call is ignored).
    pub(super) fn ready(&self, node: NodeApi) {
        let _ = self.node.set(node);
    }
}

impl ApiBackend for LocalApi {
    fn network(&self) -> NetworkEnvironment {
        self.env
    }

    fn takes_transactions(&self) -> bool {
        self.takes_transactions
    }

    async fn submit(&self, tx: CheckedTx) -> Result<(), SubmitError> {
        match self.node.get() {
            Some(node) => node.submit(tx).await,
            None => Err(SubmitError::Unavailable),
        }
    }

    async fn submit_system(&self, tx: SystemTx, bytes: Vec<u8>) -> Result<(), SubmitError> {
        match self.node.get() {
            Some(node) => node.submit_system(tx, bytes).await,
            None => Err(SubmitError::Unavailable),
        }
    }

    async fn tx_status(&self, hash: Hash32) -> Result<TxLookup, BackendError> {
        match self.node.get() {
            Some(node) => node.tx_status(hash).await,
            None => Err(BackendError::Unavailable),
        }
    }

    async fn account(&self, id: AccountId) -> Result<Account, BackendError> {
        match self.node.get() {
            Some(node) => node.account(id).await,
            None => Err(BackendError::Unavailable),
        }
    }

    async fn block(&self, height: Height) -> Result<Option<BlockInfo>, BackendError> {
        match self.node.get() {
            Some(node) => node.block(height).await,
            None => Err(BackendError::Unavailable),
        }
    }

    async fn state_sync(
        &self,
        request: qbind_api::StateSyncRequest,
    ) -> Result<qbind_api::StateSyncReply, BackendError> {
        match self.node.get() {
            Some(node) => node.state_sync(request).await,
            None => Ok(qbind_api::StateSyncReply::NotServed),
        }
    }

    async fn status(&self) -> Result<ChainStatus, BackendError> {
        if let Some(node) = self.node.get() {
            return node.status().await;
        }
        let r = self
            .syncing
            .as_ref()
            .ok_or(BackendError::Unavailable)?
            .report();
        Ok(ChainStatus {
            height: Height(0),
            executed_height: Height(0),
            view: View(0),
            epoch: Epoch(0),
            peers: 0,
            sync: SyncState::StateSync(qbind_api::StateSyncStatus {
                phase: r.phase.name(),
                target: Height(r.height),
                chunks_done: r.chunks_done,
                chunks_total: r.chunks_total,
                bytes: r.bytes,
                peers: r.peers as u64,
                peers_dropped: r.peers_dropped as u64,
            }),
            pool: None,
        })
    }
}

/// Catching up while range sync runs (docs/sync.md), towards the highest
/// height seen from peers; following the chain otherwise.
fn sync_state(m: &qbind_core::consensus::ConsensusMetrics) -> SyncState {
    if m.sync_phase == 0 {
        SyncState::Synced
    } else {
        SyncState::CatchingUp {
            target: Height(m.committed_height.saturating_add(m.sync_behind_by)),
            blocks_per_sec: m.sync_rate,
            source_peers: m.sync_source_peers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rotation is refused until the next block is at the activation
    /// height (it could otherwise land below it, where it is not applied).
    #[test]
    fn system_transactions_are_refused_before_their_activation() {
        let refused = |committed, activation| {
            matches!(
                not_before_activation(committed, Height(activation)),
                Err(SubmitError::KeyRotationRefused { .. })
            )
        };
        assert!(refused(3, 5));
        assert!(!refused(4, 5));
        assert!(!refused(9, 5));
        assert!(!refused(0, 0));
        let Err(SubmitError::KeyRotationRefused { reason }) = not_before_activation(0, Height(7))
        else {
            panic!("refused");
        };
        assert!(reason.contains("from height 7"), "{reason}");
    }

    #[test]
    fn status_reports_catching_up_while_range_sync_runs() {
        let mut m = qbind_core::consensus::ConsensusMetrics {
            committed_height: 100,
            ..Default::default()
        };
        assert_eq!(sync_state(&m), SyncState::Synced);
        m.sync_phase = 1;
        m.sync_behind_by = 5_000;
        m.sync_rate = 700;
        m.sync_source_peers = 3;
        assert_eq!(
            sync_state(&m),
            SyncState::CatchingUp {
                target: Height(5_100),
                blocks_per_sec: 700,
                source_peers: 3,
            }
        );
    }
    use qbind_core::execution::TxStatus;

    fn receipt(gas: u64) -> Receipt {
        Receipt {
            status: TxStatus::Success,
            gas_used: gas,
            fee: u128::from(gas),
            burned: 0,
            proposer_reward: u128::from(gas),
        }
    }

    #[test]
    fn receipts_are_published_only_once_the_block_is_executed() {
        let index = ReceiptIndex::default();
        let (a, b) = (vec![1u8], vec![2u8]);
        let (ha, hb) = (Hash32::digest(&a), Hash32::digest(&b));
        index.accepted(hb);
        assert_eq!(index.lookup(&hb), TxLookup::Pending);
        // The executor saw only b (a did not decode, say).
        index.stage(Height(7), vec![(hb, receipt(5))]);
        let staged = index.take_staged(Height(7));
        let positioned = super::super::receipt_store::with_positions(&[ha, hb], &staged);
        index.positioned(Height(7), vec![ha, hb], positioned);
        assert_eq!(index.lookup(&hb), TxLookup::Pending, "not durable yet");
        index.executed(Height(7), Hash32([9; 32]));
        assert_eq!(
            index.lookup(&hb),
            TxLookup::Executed {
                height: Height(7),
                index: 1,
                receipt: receipt(5)
            }
        );
        assert_eq!(index.lookup(&ha), TxLookup::Unknown);
        let block = index.block(7).expect("height 7 indexed");
        assert_eq!(block.delivered, Some(vec![ha, hb]));
        assert_eq!(block.state_root, Some(Hash32([9; 32])));
    }

    #[test]
    fn the_index_is_bounded() {
        let index = ReceiptIndex::default();
        for h in 0..(RECEIPT_CAPACITY as u64 + 10) {
            let hash = Hash32::digest(&h.to_be_bytes());
            index.stage(Height(h), vec![(hash, receipt(1))]);
            let staged = index.take_staged(Height(h));
            let positioned = super::super::receipt_store::with_positions(&[hash], &staged);
            index.positioned(Height(h), vec![hash], positioned);
            index.executed(Height(h), Hash32::ZERO);
        }
        let inner = index.lock();
        assert_eq!(inner.receipts.len(), RECEIPT_CAPACITY);
        assert_eq!(inner.receipt_order.len(), RECEIPT_CAPACITY);
        assert_eq!(inner.blocks.len(), BLOCK_WINDOW);
        assert!(inner.staged.is_empty());
        assert!(inner.ready.is_empty());
        drop(inner);
        assert_eq!(
            index.lookup(&Hash32::digest(&0u64.to_be_bytes())),
            TxLookup::Unknown
        );
    }
}
