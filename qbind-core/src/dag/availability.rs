//! [`Availability`]: construction, input dispatch, batch authoring and the
//! handlers of batches, acks and certificates (spec §4.2–4.3).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::bounds::{MAX_OWN_AWAITING_ACKS, MAX_PENDING_BYTES_PER_AUTHOR};
use super::state::DagState;
use super::{
    Batch, BatchAck, BatchCertificate, BatchEquivocation, BatchRef, DagConfig, DagEffect, DagError,
    DagInput, DagMetrics, DagMsg, DagSignJob, DagSignPurpose, SignedBatch, slot_of,
};
use crate::codec::Encode;
use crate::crypto::Signature;
use crate::fee_mempool::{FeeMempoolMetrics, TxMetaFn};
use crate::mempool::TxPool;
use crate::quorum::{SigFailure, SigVerifier, SignerBitmap};
use crate::signing::SignKind;
use crate::traits::SignRequest;
use crate::types::{Epoch, Millis, NetworkEnvironment, ValidatorId};
use crate::validator::EpochSchedule;

/// What an [`Availability`] is built from. Every validator of a network uses
/// the same values for everything but the pool's local limits.
pub struct AvailabilityParams {
    /// The network (domain tags of batch and ack signatures).
    pub env: NetworkEnvironment,
    /// DAG parameters.
    pub dag: DagConfig,
    /// Most bytes per transaction.
    pub max_tx_bytes: usize,
    /// How to read a transaction's fee fields; batches carrying bytes it
    /// cannot read are refused (`None`: transactions are opaque).
    pub tx_meta: Option<TxMetaFn>,
    /// The pool batches are cut from.
    pub pool: TxPool,
    /// Signature verification cache entries.
    pub verify_cache: usize,
}

/// One validator's DAG availability layer (see the [module docs](super)).
pub struct Availability {
    pub(super) cfg: DagConfig,
    pub(super) me: ValidatorId,
    pub(super) schedule: Arc<EpochSchedule>,
    pub(super) max_tx_bytes: usize,
    pub(super) tx_meta: Option<TxMetaFn>,
    pub(super) pool: TxPool,
    pub(super) verifier: SigVerifier,
    pub(super) state: DagState,
    pub(super) now: Millis,
    pub(super) epoch: Epoch,
    pub(super) out: Vec<DagEffect>,
}

impl Availability {
    /// The local transaction pool batches are drawn from.
    pub(crate) fn pool_mut(&mut self) -> &mut TxPool {
        &mut self.pool
    }

    /// Whether no local transaction waits to be batched.
    pub(crate) fn pool_is_empty(&self) -> bool {
        self.pool.is_empty()
    }

    /// Verify from now on with `schedule` (see
    /// [`crate::consensus::HotStuff::set_schedule`]).
    pub(crate) fn set_schedule(&mut self, schedule: Arc<EpochSchedule>) {
        self.schedule = schedule;
        self.verifier.clear();
    }

    /// See [`crate::quorum::SigVerifier::set_keys_final_through`].
    pub(crate) fn set_keys_final_through(&mut self, epoch: Epoch) {
        self.verifier.set_keys_final_through(epoch);
    }

    /// Whether the keys of `epoch` are final here.
    #[cfg(test)]
    pub(crate) fn keys_final(&self, epoch: Epoch) -> bool {
        self.verifier.keys_final(epoch)
    }

    /// Validator `me`'s layer, empty (see [`Availability::restore`] after a
    /// restart).
    #[must_use]
    pub fn new(me: ValidatorId, schedule: Arc<EpochSchedule>, params: AvailabilityParams) -> Self {
        Availability {
            cfg: params.dag,
            me,
            schedule,
            max_tx_bytes: params.max_tx_bytes,
            tx_meta: params.tx_meta,
            pool: params.pool,
            verifier: SigVerifier::new(params.env, params.verify_cache),
            state: DagState::default(),
            now: Millis(0),
            epoch: Epoch(0),
            out: Vec::new(),
        }
    }

    /// Process one input at time `now` in the current `epoch` and return the
    /// effects to carry out, in order.
    pub fn handle(&mut self, now: Millis, epoch: Epoch, input: DagInput) -> Vec<DagEffect> {
        self.now = self.now.max(now);
        self.epoch = epoch;
        self.prune_epochs();
        self.retry_parked();
        match input {
            DagInput::Message { from, msg } => {
                if let Err(error) = self.on_message(from, msg) {
                    self.out.push(DagEffect::Rejected { from, error });
                }
            }
            DagInput::Signed { purpose, signature } => self.on_signed(purpose, signature),
            DagInput::SignFailed { purpose } => {
                if let DagSignPurpose::Batch { batch } = purpose {
                    self.on_batch_sign_failed(*batch);
                }
            }
            DagInput::Tick => {
                self.maybe_make_batch();
                self.retry_batch_fetches();
            }
            DagInput::Submit(tx) => {
                if let Err(reason) = self.pool.insert(self.now, tx) {
                    self.out.push(DagEffect::PoolRejected(reason));
                }
                self.maybe_make_batch();
            }
            DagInput::Proposed { proposer, batches } => self.on_proposed(proposer, batches),
            DagInput::Committed(blocks) => {
                let mut advanced = BTreeSet::new();
                for b in blocks {
                    for c in &b.certs {
                        if self.mark_committed(&c.batch) {
                            advanced.insert(c.batch.author);
                        }
                    }
                    let digests = b.certs.iter().map(|c| c.batch.digest).collect();
                    self.retain_committed(b.height, digests);
                    self.state.to_deliver.push_back(b);
                }
                self.drain_delivery();
                for author in advanced {
                    self.prune_stale(author);
                }
                self.maybe_make_batch();
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Counters.
    #[must_use]
    pub fn metrics(&self) -> &DagMetrics {
        &self.state.metrics
    }

    /// Transactions waiting in the pool.
    #[must_use]
    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }

    /// The pool's depth, capacity and lowest pending fee.
    #[must_use]
    pub fn pool_snapshot(&self) -> crate::pool_drops::PoolSnapshot {
        self.pool.snapshot()
    }

    /// Transactions the pool let go since the last call
    /// ([`crate::mempool::TxPool::take_drops`]).
    pub fn take_pool_drops(
        &mut self,
    ) -> Vec<(crate::types::Hash32, crate::pool_drops::PoolDropReason)> {
        self.pool.take_drops()
    }

    /// The fee-priority pool's counters (`None` for the FIFO pool).
    #[must_use]
    pub fn pool_metrics(&self) -> Option<&FeeMempoolMetrics> {
        self.pool.fee_metrics()
    }

    pub(super) fn emit(&mut self, effect: DagEffect) {
        self.out.push(effect);
    }

    fn is_member(&self, epoch: Epoch) -> bool {
        self.schedule.set(epoch).get(self.me).is_some()
    }

    fn on_message(&mut self, from: ValidatorId, msg: DagMsg) -> Result<(), DagError> {
        match msg {
            DagMsg::Batch(b) => self.on_batch(from, b),
            DagMsg::BatchAck(a) => self.on_batch_ack(a),
            DagMsg::BatchCert(c) => self.on_batch_cert(from, c),
            DagMsg::BatchFetch(d) => {
                self.on_batch_fetch(from, d);
                Ok(())
            }
        }
    }

    fn on_signed(&mut self, purpose: DagSignPurpose, signature: Signature) {
        match purpose {
            DagSignPurpose::Batch { batch } => self.on_batch_signed(*batch, signature),
            DagSignPurpose::BatchAck { batch, to } => {
                self.on_batch_ack_signed(batch, to, signature);
            }
        }
    }

    // ------------------------------------------------------------ authoring

    /// Cut a batch from the pool when it is full or the interval passed.
    /// An author whose next slot is beyond `max_rounds_ahead` of its highest
    /// committed one, or whose uncommitted data is at its bound, waits for
    /// its batches to commit (every validator would refuse the batch).
    fn maybe_make_batch(&mut self) {
        // Not while this epoch's keys may still change through blocks not
        // executed here (its batches and acks could not be checked).
        if self.state.signing
            || self.now < self.state.paused_until
            || !self.is_member(self.epoch)
            || !self.verifier.keys_final(self.epoch)
        {
            return;
        }
        // Past our highest committed round even if a block of the new epoch
        // committed it after the epoch's first input set `next_round`.
        self.state.next_round = self
            .state
            .next_round
            .max(self.top(self.me).saturating_add(1));
        let next = self.state.next_round;
        if next > self.top(self.me).saturating_add(self.cfg.max_rounds_ahead)
            || self.pending_bytes(self.epoch, self.me) >= MAX_PENDING_BYTES_PER_AUTHOR
        {
            return;
        }
        let due = self.now.since(self.state.last_batch_at) >= self.cfg.batch_interval_ms;
        if self.pool.is_empty() || (self.pool.len() < self.cfg.max_batch_txs && !due) {
            if !self.pool.is_empty() {
                let at = self.state.last_batch_at.plus(self.cfg.batch_interval_ms);
                self.emit(DagEffect::SetTimer(at));
            }
            return;
        }
        let txs = self.pool.drain(
            self.cfg.max_batch_txs,
            self.cfg.max_batch_bytes,
            self.cfg.max_batch_gas,
        );
        let batch = Batch {
            epoch: self.epoch,
            author: self.me,
            round: self.state.next_round,
            txs,
        };
        self.state.next_round = self.state.next_round.saturating_add(1);
        self.state.last_batch_at = self.now;
        self.state.signing = true;
        self.emit(DagEffect::Sign(DagSignJob {
            request: SignRequest {
                kind: SignKind::Batch,
                view: None,
                message: batch.digest().to_bytes(),
                digest_preimage: batch.to_bytes(),
            },
            purpose: DagSignPurpose::Batch {
                batch: Box::new(batch),
            },
        }));
    }

    fn on_batch_signed(&mut self, batch: Batch, signature: Signature) {
        self.state.signing = false;
        self.state.metrics.batches_signed_total += 1;
        let r = batch.reference();
        self.state.own.insert(r.round, (r, Default::default()));
        while self.state.own.len() > MAX_OWN_AWAITING_ACKS {
            self.state.own.pop_first();
        }
        let sb = SignedBatch { batch, signature };
        // Stored durably before it leaves, whatever the checks below say:
        // it is the record of the slot we used.
        self.store_batch(r, sb.clone());
        self.emit(DagEffect::Broadcast(DagMsg::Batch(sb.clone())));
        let me = self.me;
        if let Err(error) = self.on_batch(me, sb) {
            self.emit(DagEffect::Rejected { from: me, error });
        }
        self.maybe_make_batch();
    }

    /// Our batch's signature was refused: give the slot up, put the
    /// transactions back in the pool and author again after a pause of
    /// `fetch_retry_ms` (a signer that keeps refusing is not asked in a
    /// tight loop).
    fn on_batch_sign_failed(&mut self, batch: Batch) {
        self.state.signing = false;
        self.state.metrics.batch_sign_failures_total += 1;
        for tx in batch.txs {
            // Dropped if the pool no longer takes it (full, or the
            // transaction became invalid); the submitter resubmits.
            let _ = self.pool.insert(self.now, tx);
        }
        self.state.paused_until = self.now.plus(self.cfg.fetch_retry_ms.max(1));
        self.emit(DagEffect::SetTimer(self.state.paused_until));
    }

    fn on_batch_ack_signed(&mut self, batch: BatchRef, to: ValidatorId, sig: Signature) {
        let ack = BatchAck {
            batch,
            acker: self.me,
            signature: sig,
        };
        if to == self.me {
            if let Err(error) = self.on_batch_ack(ack) {
                let me = self.me;
                self.emit(DagEffect::Rejected { from: me, error });
            }
        } else {
            self.emit(DagEffect::Send {
                to,
                msg: DagMsg::BatchAck(ack),
            });
        }
    }

    // ------------------------------------------------------------ receiving

    /// A batch from its author, or fetched data. The checks that cost
    /// nothing come before the signature.
    pub(super) fn on_batch(&mut self, from: ValidatorId, sb: SignedBatch) -> Result<(), DagError> {
        let r = sb.batch.reference();
        let bad = |why| DagError::InvalidBatch { why };
        let known = self.state.data.contains_key(&r.digest);
        let needed = !known && self.state.pinned.contains_key(&r.digest);
        if let Some(prefetch) = self.state.fetches.get(&r.digest).map(|f| f.prefetch_for) {
            // Fetched data: authenticated by the digest its certificate names.
            self.verify_batch(&r, &sb)?;
            self.state.fetches.remove(&r.digest);
            self.state.metrics.batches_fetched_total += 1;
            if prefetch.is_some() && !needed && !known && self.over_pending_bound(&r, &sb) {
                return Err(bad("author's uncommitted batch data is at its bound"));
            }
            self.store_batch(r, sb);
            self.drain_delivery();
            return Ok(());
        }
        if needed {
            // Data a committed block waits for, from whoever has it.
            self.verify_batch(&r, &sb)?;
            self.store_batch(r, sb);
            self.drain_delivery();
            return Ok(());
        }
        if from != r.author && known {
            // A second signer's answer to a fetch the first one served.
            return Ok(());
        }
        if from != r.author {
            let asked = self.state.fetches.values().any(|f| f.from.contains(&from));
            if asked {
                // We asked this peer for certified data and got something else.
                self.state.metrics.coupling_block_mismatch_total += 1;
            }
            return Err(bad("batch relayed by someone other than its author"));
        }
        let wrong_epoch = DagError::WrongEpoch {
            what: "batch",
            epoch: r.epoch,
            current: self.epoch,
        };
        if r.epoch > self.epoch {
            // An epoch this validator has not reached: it is behind.
            self.check_batch_shape(&sb.batch)?;
            return self.park(sb, wrong_epoch);
        }
        if r.epoch != self.epoch {
            return Err(wrong_epoch);
        }
        self.check_batch_shape(&sb.batch)?;
        let top = self.top(r.author);
        if r.round == 0
            || r.round > top.saturating_add(self.cfg.max_rounds_ahead)
            || self.is_stale(r.round, top)
        {
            return Err(bad("batch slot out of range"));
        }
        if self.state.committed.contains(&slot_of(&r)) {
            return Err(bad("batch for a committed slot"));
        }
        match self.verify_batch(&r, &sb) {
            Err(
                e @ DagError::Signature {
                    failure: SigFailure::KeysNotFinal,
                    ..
                },
            ) => return self.park(sb, e),
            other => other?,
        }
        match self.state.slots.get(&slot_of(&r)).copied() {
            Some(first) if first != r.digest => {
                if let Some(first) = self.state.data.get(&first).cloned() {
                    self.state.metrics.batch_equivocation_detected += 1;
                    self.emit(DagEffect::Evidence(BatchEquivocation { first, second: sb }));
                }
                return Err(bad("second batch for one slot (equivocation)"));
            }
            _ => {}
        }
        if !known && self.over_pending_bound(&r, &sb) {
            return Err(bad("author's uncommitted batch data is at its bound"));
        }
        self.store_batch(r, sb);
        if !self.is_member(r.epoch) {
            return Ok(());
        }
        self.emit(DagEffect::Sign(DagSignJob {
            request: SignRequest {
                kind: SignKind::BatchAck,
                view: None,
                message: r.to_bytes(),
                digest_preimage: Vec::new(),
            },
            purpose: DagSignPurpose::BatchAck {
                batch: r,
                to: r.author,
            },
        }));
        Ok(())
    }

    /// Whether storing `sb` would take its author's uncommitted data of its
    /// epoch over [`MAX_PENDING_BYTES_PER_AUTHOR`].
    fn over_pending_bound(&self, r: &BatchRef, sb: &SignedBatch) -> bool {
        self.pending_bytes(r.epoch, r.author)
            .saturating_add(sb.batch.tx_bytes())
            > MAX_PENDING_BYTES_PER_AUTHOR
    }

    /// The author's signature of a batch.
    fn verify_batch(&mut self, r: &BatchRef, sb: &SignedBatch) -> Result<(), DagError> {
        let set = self.schedule.set(r.epoch);
        self.verifier
            .verify_sig(
                set,
                r.epoch,
                r.author,
                SignKind::Batch,
                &r.digest.to_bytes(),
                &sb.signature,
            )
            .map_err(|failure| DagError::Signature {
                what: "batch",
                signer: r.author,
                epoch: r.epoch,
                failure,
            })
    }

    /// Size and content bounds of a batch from its author.
    fn check_batch_shape(&self, b: &Batch) -> Result<(), DagError> {
        let bad = |why| DagError::InvalidBatch { why };
        if b.txs.len() > self.cfg.max_batch_txs || b.tx_bytes() > self.cfg.max_batch_bytes {
            return Err(bad("batch exceeds the size limits"));
        }
        if b.txs
            .iter()
            .any(|tx| tx.is_empty() || tx.len() > self.max_tx_bytes)
        {
            return Err(bad("batch carries an empty or oversized transaction"));
        }
        if let Some(meta) = self.tx_meta
            && b.txs.iter().any(|tx| meta(tx).is_none())
        {
            return Err(bad("batch carries bytes that are not a transaction"));
        }
        Ok(())
    }

    /// Keep `own_top` and `own_high` (never pruned) up to date with a batch
    /// held.
    pub(super) fn note_own(&mut self, r: &BatchRef) {
        if r.author != self.me {
            return;
        }
        if self
            .state
            .own_top
            .is_none_or(|(at, _)| (r.epoch, r.round) > at)
        {
            self.state.own_top = Some(((r.epoch, r.round), r.digest));
        }
        if self.state.own_high.is_none_or(|(round, _)| r.round > round) {
            self.state.own_high = Some((r.round, r.digest));
        }
    }

    pub(super) fn store_batch(&mut self, r: BatchRef, sb: SignedBatch) {
        self.state.slots.entry(slot_of(&r)).or_insert(r.digest);
        self.note_own(&r);
        if !self.state.data.contains_key(&r.digest) {
            self.state.stored.insert((slot_of(&r), r.digest));
            self.emit(DagEffect::PersistBatch(sb.clone()));
            self.state.data.insert(r.digest, sb);
        }
    }

    /// An ack for one of our batches. The checks that cost nothing come
    /// before the signature.
    fn on_batch_ack(&mut self, ack: BatchAck) -> Result<(), DagError> {
        let r = ack.batch;
        if r.author != self.me {
            return Err(DagError::InvalidBatch {
                why: "ack sent to a validator that is not the author",
            });
        }
        if r.epoch < self.epoch {
            // A late ack for a batch of an epoch that ended (its round may
            // be ours again in this epoch, see `first_free_round`).
            return Ok(());
        }
        match self.state.own.get(&r.round) {
            // A late ack for a batch that is already certified (or given up).
            None => return Ok(()),
            Some((own, _)) if *own != r => {
                return Err(DagError::InvalidBatch {
                    why: "ack for a batch we did not make",
                });
            }
            Some((_, acks)) if acks.contains_key(&ack.acker) => return Ok(()),
            Some(_) => {}
        }
        let set = self.schedule.set(r.epoch);
        self.verifier
            .verify_sig(
                set,
                r.epoch,
                ack.acker,
                SignKind::BatchAck,
                &r.to_bytes(),
                &ack.signature,
            )
            .map_err(|failure| DagError::Signature {
                what: "batch ack",
                signer: ack.acker,
                epoch: r.epoch,
                failure,
            })?;
        let Some((_, acks)) = self.state.own.get_mut(&r.round) else {
            return Ok(());
        };
        acks.insert(ack.acker, ack.signature);
        if !set.is_quorum(set.stake_of(acks.keys())) {
            return Ok(());
        }
        let mut signers = SignerBitmap::new(set.len());
        let mut signatures = Vec::new();
        for (id, sig) in acks.iter() {
            if signers.set(*id) {
                signatures.push(sig.clone());
            }
        }
        self.state.own.remove(&r.round);
        let cert = BatchCertificate {
            batch: r,
            signers,
            signatures,
        };
        self.state.metrics.certs_formed_total += 1;
        self.emit(DagEffect::Broadcast(DagMsg::BatchCert(cert.clone())));
        self.state.certified.insert(slot_of(&r), cert);
        Ok(())
    }

    /// A certificate from an author (or relayed). Only certificates of the
    /// current epoch for slots within the author's window are kept; the
    /// checks that cost nothing come before the signatures.
    fn on_batch_cert(&mut self, from: ValidatorId, cert: BatchCertificate) -> Result<(), DagError> {
        let r = cert.batch;
        if r.epoch != self.epoch {
            if r.epoch.0.saturating_add(1) == self.epoch.0 {
                // Late, from the epoch that just ended: nothing can order it.
                return Ok(());
            }
            return Err(DagError::WrongEpoch {
                what: "batch certificate",
                epoch: r.epoch,
                current: self.epoch,
            });
        }
        let top = self.top(r.author);
        if r.round == 0
            || r.round > top.saturating_add(self.cfg.max_rounds_ahead)
            || self.is_stale(r.round, top)
        {
            return Err(DagError::InvalidBatch {
                why: "certificate slot out of range",
            });
        }
        let s = slot_of(&r);
        if self.state.committed.contains(&s) || self.state.certified.contains_key(&s) {
            return Ok(());
        }
        self.check_batch_cert(&cert)?;
        if !self.state.data.contains_key(&r.digest) {
            // Prefetch now rather than at commit time (`fetch.rs`).
            let signers: Vec<ValidatorId> = cert.signers.iter().collect();
            self.fetch_batch(&r, signers, from, Some(from));
        }
        self.state.certified.insert(s, cert);
        Ok(())
    }

    /// A batch certificate holds acks of a quorum of its epoch's stake.
    pub(super) fn check_batch_cert(&mut self, cert: &BatchCertificate) -> Result<(), DagError> {
        let set = self.schedule.set(cert.batch.epoch);
        let result = self
            .verifier
            .verify_quorum(
                set,
                cert.batch.epoch,
                SignKind::BatchAck,
                &cert.batch.to_bytes(),
                &cert.signers,
                &cert.signatures,
            )
            .map_err(|why| {
                if why == crate::quorum::KEYS_NOT_FINAL {
                    DagError::Signature {
                        what: "batch certificate",
                        signer: cert.batch.author,
                        epoch: cert.batch.epoch,
                        failure: crate::quorum::SigFailure::KeysNotFinal,
                    }
                } else {
                    DagError::InvalidPayload { why: "uncertified" }
                }
            });
        if matches!(result, Err(DagError::InvalidPayload { .. })) {
            self.state.metrics.certs_invalid_total += 1;
        }
        result
    }
}
