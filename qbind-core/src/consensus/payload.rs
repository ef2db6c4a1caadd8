//! Where block payloads come from and where committed transactions go
//! (spec §1.3, §4.3): inline transactions from a local pool (FIFO mode,
//! DevNet), or certified batches of the DAG availability layer, a state
//! machine of its own ([`crate::dag::Availability`]) that this module asks
//! for payloads, has validate received payloads and hands committed blocks.

use std::collections::{BTreeSet, VecDeque};

use crate::consensus::error::ConsensusError;
use crate::consensus::evidence::Evidence;
use crate::consensus::machine::HotStuff;
use crate::consensus::messages::{Block, ConsensusMsg, Payload};
use crate::consensus::{ConsensusConfig, Effect, SignJob, SignPurpose};
use crate::crypto::Signature;
use crate::dag::{
    Availability, AvailabilityParams, BatchRef, CommittedBlock, DagEffect, DagInput, DagMetrics,
    DagMsg, DagSignJob, DagSignPurpose, PayloadMode, SignedBatch,
};
use crate::mempool::TxPool;
use crate::types::{Epoch, Hash32, Height, ValidatorId};
use crate::validator::EpochSchedule;

/// The payload layer of one validator.
pub(crate) enum Payloads {
    /// Inline transactions from a local pool; committed blocks whose
    /// transactions are not delivered yet (after a restart), in order.
    Fifo {
        pool: TxPool,
        to_deliver: VecDeque<Block>,
    },
    /// The DAG availability layer.
    Dag(Box<Availability>),
}

impl Payloads {
    pub(crate) fn new(
        cfg: &ConsensusConfig,
        me: ValidatorId,
        schedule: std::sync::Arc<EpochSchedule>,
    ) -> Self {
        let max_tx_bytes = cfg.limits.max_tx_bytes as usize;
        let pool = TxPool::new(
            cfg.tx_meta,
            cfg.fee_mempool.clone(),
            cfg.mempool_capacity,
            max_tx_bytes,
        );
        match cfg.payload_mode {
            PayloadMode::Fifo => Payloads::Fifo {
                pool,
                to_deliver: VecDeque::new(),
            },
            PayloadMode::Dag => Payloads::Dag(Box::new(Availability::new(
                me,
                schedule,
                AvailabilityParams {
                    env: cfg.env,
                    dag: crate::dag::DagConfig {
                        max_batch_gas: cfg
                            .dag
                            .max_batch_gas
                            .min(cfg.block_gas_limit.unwrap_or(u64::MAX)),
                        ..cfg.dag.clone()
                    },
                    max_tx_bytes,
                    tx_meta: cfg.tx_meta,
                    pool,
                    verify_cache: cfg.verify_cache,
                },
            ))),
        }
    }
}

impl From<DagMsg> for ConsensusMsg {
    fn from(m: DagMsg) -> Self {
        match m {
            DagMsg::Batch(b) => ConsensusMsg::Batch(b),
            DagMsg::BatchAck(a) => ConsensusMsg::BatchAck(a),
            DagMsg::BatchCert(c) => ConsensusMsg::BatchCert(c),
            DagMsg::BatchFetch(d) => ConsensusMsg::BatchFetch(d),
        }
    }
}

impl From<DagSignPurpose> for SignPurpose {
    fn from(p: DagSignPurpose) -> Self {
        match p {
            DagSignPurpose::Batch { batch } => SignPurpose::Batch { batch },
            DagSignPurpose::BatchAck { batch, to } => SignPurpose::BatchAck { batch, to },
        }
    }
}

impl HotStuff {
    /// Whether payloads are DAG batches.
    pub(crate) fn dag_mode(&self) -> bool {
        matches!(self.payloads, Payloads::Dag(_))
    }

    /// Counters of the DAG layer (`None` in FIFO mode).
    #[must_use]
    pub fn dag_metrics(&self) -> Option<&DagMetrics> {
        match &self.payloads {
            Payloads::Dag(a) => Some(a.metrics()),
            Payloads::Fifo { .. } => None,
        }
    }

    /// Pending transactions in the pool.
    #[must_use]
    pub fn mempool_len(&self) -> usize {
        match &self.payloads {
            Payloads::Dag(a) => a.pool_len(),
            Payloads::Fifo { pool, .. } => pool.len(),
        }
    }

    /// The pool's depth, capacity and lowest pending fee.
    #[must_use]
    pub fn pool_snapshot(&self) -> crate::pool_drops::PoolSnapshot {
        match &self.payloads {
            Payloads::Dag(a) => a.pool_snapshot(),
            Payloads::Fifo { pool, .. } => pool.snapshot(),
        }
    }

    /// Transactions the pool let go without a commit since the last call
    /// ([`crate::pool_drops`]).
    pub fn take_pool_drops(&mut self) -> Vec<(Hash32, crate::pool_drops::PoolDropReason)> {
        match &mut self.payloads {
            Payloads::Dag(a) => a.take_pool_drops(),
            Payloads::Fifo { pool, .. } => pool.take_drops(),
        }
    }

    /// Fee-priority pool counters (`None` with the FIFO pool).
    #[must_use]
    pub fn mempool_metrics(&self) -> Option<&crate::fee_mempool::FeeMempoolMetrics> {
        match &self.payloads {
            Payloads::Dag(a) => a.pool_metrics(),
            Payloads::Fifo { pool, .. } => pool.fee_metrics(),
        }
    }

    /// After a restart: the batches this validator stored (DAG mode), and
    /// the height up to which committed transactions were already delivered
    /// for execution. Committed blocks above that height are delivered
    /// again, in order (see [`Availability::restore`]).
    pub fn restore_dag(&mut self, batches: Vec<SignedBatch>, executed: Height) {
        let committed: Vec<Block> = self
            .tree
            .committed_blocks()
            .into_iter()
            .filter(|b| b.height().0 > 0)
            .collect();
        match &mut self.payloads {
            Payloads::Dag(a) => {
                let blocks = committed.iter().map(committed_block).collect();
                a.restore(batches, blocks, executed);
            }
            Payloads::Fifo { to_deliver, .. } => {
                to_deliver.extend(committed.into_iter().filter(|b| b.height() > executed));
            }
        }
        // What delivery needs was copied out: the window may shrink to its
        // byte budget now rather than at the first commit.
        self.tree.apply_window_budget();
    }

    // ------------------------------------------------------------ inputs

    /// A transaction submitted locally.
    pub(crate) fn submit(&mut self, tx: Vec<u8>) {
        match &mut self.payloads {
            Payloads::Fifo { pool, .. } => {
                if let Err(reason) = pool.insert(self.now, tx) {
                    self.pool_rejected(reason);
                }
            }
            Payloads::Dag(_) => self.dag(DagInput::Submit(tx)),
        }
    }

    /// The local pool, whichever layer holds it.
    fn pool_mut(&mut self) -> &mut TxPool {
        match &mut self.payloads {
            Payloads::Fifo { pool, .. } => pool,
            Payloads::Dag(a) => a.pool_mut(),
        }
    }

    /// `sender`'s account executes `nonce` next, as the embedder read it
    /// from the executed state when one of its transactions was submitted:
    /// the pool proposes none of the sender's transactions before it holds
    /// that nonce ([`crate::fee_mempool::FeeMempool::take`]).
    pub fn note_account_nonce(&mut self, sender: crate::types::AccountId, nonce: u64) {
        self.pool_mut().note_account_nonce(sender, nonce);
    }

    /// As [`HotStuff::note_account_nonce`], for the sender of a transaction
    /// about to be submitted: call it before the submission (which may be
    /// proposed or batched at once), even if the sender has nothing pending.
    pub fn prime_account_nonce(&mut self, sender: crate::types::AccountId, nonce: u64) {
        // FIFO: the proposer takes from this pool at once, so even a
        // sender with nothing pending is recorded; DAG: only senders with
        // transactions pending (docs/dag.md "Nonces without gaps").
        let idle = matches!(self.payloads, Payloads::Fifo { .. });
        self.pool_mut().prime_account_nonce(sender, nonce, idle);
    }

    /// `txs` were executed (a committed block of any validator): the pool
    /// settles them and reads its senders' next nonces with
    /// `executed_nonce` ([`TxPool::note_executed`]).
    pub fn note_executed(
        &mut self,
        txs: &[Vec<u8>],
        executed_nonce: impl FnMut(&crate::types::AccountId) -> Option<u64>,
    ) {
        self.pool_mut().note_executed(txs, executed_nonce);
    }

    fn pool_rejected(&mut self, reason: &'static str) {
        self.metrics.reject("mempool_rejected");
        *self.metrics.mempool_rejected.entry(reason).or_default() += 1;
    }

    /// Timers of the payload layer.
    pub(crate) fn payload_tick(&mut self) {
        match &self.payloads {
            Payloads::Dag(_) => self.dag(DagInput::Tick),
            Payloads::Fifo { .. } => self.deliver_fifo(),
        }
    }

    /// A DAG message from `from`.
    pub(crate) fn on_dag_message(
        &mut self,
        from: ValidatorId,
        msg: DagMsg,
    ) -> Result<(), ConsensusError> {
        if !self.dag_mode() {
            return Err(ConsensusError::InvalidBatch {
                why: "DAG message to a validator in FIFO mode",
            });
        }
        self.dag(DagInput::Message { from, msg });
        Ok(())
    }

    /// A DAG signature came back (or was refused: `signature` is `None`).
    pub(crate) fn on_dag_signed(&mut self, purpose: DagSignPurpose, signature: Option<Signature>) {
        let input = match signature {
            Some(signature) => DagInput::Signed { purpose, signature },
            None => DagInput::SignFailed { purpose },
        };
        self.dag(input);
    }

    fn dag(&mut self, input: DagInput) {
        let Payloads::Dag(a) = &mut self.payloads else {
            return;
        };
        let effects = a.handle(self.now, self.epoch, input);
        for e in effects {
            self.apply_dag_effect(e);
        }
    }

    fn apply_dag_effect(&mut self, effect: DagEffect) {
        match effect {
            DagEffect::Sign(DagSignJob { request, purpose }) => self.emit(Effect::Sign(SignJob {
                request,
                purpose: purpose.into(),
            })),
            DagEffect::Send { to, msg } => self.emit(Effect::Send {
                to,
                msg: msg.into(),
            }),
            DagEffect::Broadcast(msg) => self.emit(Effect::Broadcast(msg.into())),
            DagEffect::PersistBatch(sb) => self.emit(Effect::PersistBatch(sb)),
            DagEffect::ForgetBatches(ids) => self.emit(Effect::ForgetBatches(ids)),
            DagEffect::ArchiveBatches(batches) => self.emit(Effect::ArchiveBatches(batches)),
            DagEffect::ServeBatch { to, digest } => self.emit(Effect::ServeBatch { to, digest }),
            DagEffect::SetTimer(at) => self.emit(Effect::SetTimer(at)),
            DagEffect::Evidence(eq) => self.evidence(Evidence::ConflictingBatches(Box::new(eq))),
            DagEffect::Rejected { from, error } => self.reject(from, error.into()),
            DagEffect::PoolRejected(reason) => self.pool_rejected(reason),
            DagEffect::Deliver {
                height,
                block,
                proposer,
                txs,
            } => self.emit(Effect::Execute {
                height,
                block,
                proposer,
                txs,
            }),
        }
    }

    // ------------------------------------------------------------ proposing

    /// The payload of a block of `epoch` extending `parent`; `empty` for the
    /// blocks after an epoch's boundary block (they carry nothing).
    ///
    /// Consensus §C2.3 (docs/consensus.md).
    /// A non-empty payload carries at most the [`super::BlockBudget`]'s
    /// limit of transactions (DAG: whole batches, at least one), and the
    /// proposal is recorded for the budget's rule.
    pub(crate) fn make_payload(&mut self, epoch: Epoch, parent: &Hash32, empty: bool) -> Payload {
        if !empty && let Some(height) = self.tree.get(parent).map(|b| b.height().next()) {
            self.budget.proposed(height, self.now);
        }
        let max_txs = self.budget.limit().min(self.cfg.max_block_txs);
        match (&self.payloads, empty) {
            (Payloads::Dag(_), true) => Payload::Batches(Vec::new()),
            (Payloads::Fifo { .. }, true) => Payload::Transactions(Vec::new()),
            (Payloads::Dag(a), false) => {
                let ordered = self.ordered_batches(parent);
                let max_gas = self.cfg.block_gas_limit.unwrap_or(u64::MAX);
                Payload::Batches(a.payload_within(epoch, &ordered, max_txs, max_gas))
            }
            (Payloads::Fifo { pool, .. }, false) => {
                let exclude = self.uncommitted_tx_ids(parent);
                let max_gas = self.cfg.block_gas_limit.unwrap_or(u64::MAX);
                Payload::Transactions(pool.take_within(max_txs, max_gas, &exclude))
            }
        }
    }

    /// The proposer's current transaction limit ([`super::BlockBudget`]).
    #[must_use]
    pub fn block_budget(&self) -> usize {
        self.budget.limit().min(self.cfg.max_block_txs)
    }

    /// The payload of a proposed block fits this validator's mode and, in
    /// DAG mode, the coupling rule.
    ///
    /// Consensus §C3.1, DAG coupling (docs/dag.md) (docs/consensus.md).
    pub(crate) fn validate_payload(&mut self, block: &Block) -> Result<(), ConsensusError> {
        let dag = self.dag_mode();
        match block.payload() {
            Payload::Transactions(_) if !dag => Ok(()),
            Payload::Batches(certs) if dag => {
                let ordered = self.ordered_batches(&block.parent_id());
                let Payloads::Dag(a) = &mut self.payloads else {
                    return Ok(());
                };
                a.validate(block.epoch(), certs, &ordered)?;
                // Fetch what we lack of it now: execution, and so our vote
                // on later blocks (§C3.7), waits for this data at commit.
                let batches = certs
                    .iter()
                    .map(|c| (c.batch, c.signers.iter().collect()))
                    .collect();
                let proposer = block.header().proposer;
                self.dag(DagInput::Proposed { proposer, batches });
                Ok(())
            }
            _ => {
                if let Payloads::Dag(a) = &mut self.payloads {
                    a.count_invalid_payload("wrong_payload_mode");
                }
                Err(ConsensusError::InvalidPayload {
                    why: "wrong_payload_mode",
                })
            }
        }
    }

    /// Batches ordered by uncommitted blocks from `tip` back to the root.
    fn ordered_batches(&self, tip: &Hash32) -> Vec<BatchRef> {
        let mut out = Vec::new();
        self.walk_uncommitted(tip, |b| {
            if let Payload::Batches(certs) = b.payload() {
                out.extend(certs.iter().map(|c| c.batch));
            }
        });
        out
    }

    /// Transaction ids in uncommitted blocks from `tip` back to the root.
    fn uncommitted_tx_ids(&self, tip: &Hash32) -> BTreeSet<Hash32> {
        let mut out = BTreeSet::new();
        self.walk_uncommitted(tip, |b| {
            if let Payload::Transactions(txs) = b.payload() {
                out.extend(txs.iter().map(|tx| Hash32::of_transaction(tx)));
            }
        });
        out
    }

    /// Whether a proposal extending `parent` would carry anything: a
    /// pending local transaction (FIFO), or (DAG) a transaction waiting to
    /// be batched or a certified batch not yet ordered.
    pub(crate) fn has_payload_to_propose(&self, parent: &Hash32) -> bool {
        match &self.payloads {
            Payloads::Fifo { pool, .. } => !pool.is_empty(),
            Payloads::Dag(a) => {
                if !a.pool_is_empty() {
                    return true;
                }
                let ordered = self.ordered_batches(parent);
                !a.payload(self.epoch, &ordered).is_empty()
            }
        }
    }

    pub(crate) fn walk_uncommitted(&self, tip: &Hash32, mut f: impl FnMut(&Block)) {
        let mut cur = *tip;
        while let Some(b) = self.tree.get(&cur) {
            if self.tree.is_committed(&cur) {
                break;
            }
            f(b);
            cur = b.parent_id();
        }
    }

    // ------------------------------------------------------------ delivery

    /// Blocks were committed (oldest first, after their `Commit` effects):
    /// hand them to the payload layer, which delivers their transactions.
    ///
    /// Consensus §C8.1 (docs/consensus.md).
    pub(crate) fn deliver_committed(&mut self, chain: &[Block]) {
        for b in chain {
            let ours = b.header().proposer == self.me;
            self.budget.committed(b.height(), ours, self.now);
        }
        match &mut self.payloads {
            Payloads::Fifo { pool, to_deliver } => {
                for b in chain {
                    if let Payload::Transactions(txs) = b.payload() {
                        pool.remove_committed(txs);
                    }
                    to_deliver.push_back(b.clone());
                }
                self.deliver_fifo();
            }
            Payloads::Dag(_) => {
                let blocks = chain.iter().map(committed_block).collect();
                self.dag(DagInput::Committed(blocks));
            }
        }
    }

    /// Deliver queued committed FIFO blocks: their inline transactions, a
    /// transaction repeated within one block once.
    fn deliver_fifo(&mut self) {
        let Payloads::Fifo { to_deliver, .. } = &mut self.payloads else {
            return;
        };
        let blocks: Vec<Block> = to_deliver.drain(..).collect();
        for b in blocks {
            let txs = match b.payload() {
                Payload::Transactions(txs) => crate::dag::block_transactions(txs).0,
                Payload::Batches(_) => Vec::new(),
            };
            self.emit(Effect::Execute {
                height: b.height(),
                block: b.id(),
                proposer: b.header().proposer,
                txs,
            });
        }
    }
}

/// A committed block as the DAG layer sees it.
fn committed_block(b: &Block) -> CommittedBlock {
    CommittedBlock {
        height: b.height(),
        id: b.id(),
        proposer: b.header().proposer,
        certs: match b.payload() {
            Payload::Batches(certs) => certs.clone(),
            Payload::Transactions(_) => Vec::new(),
        },
    }
}
