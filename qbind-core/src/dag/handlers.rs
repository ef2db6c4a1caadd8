//! The DAG layer's handlers, as methods of the consensus machine that owns
//! it: batch creation, acks, certificates, proposal payloads and their
//! validation, fetch-on-miss, and delivery of committed transactions.

use std::collections::BTreeSet;

use super::{BatchEquivocation, BatchFetch, PayloadMode, Slot};
use crate::codec::Encode;
use crate::consensus::error::ConsensusError;
use crate::consensus::evidence::Evidence;
use crate::consensus::{Block, ConsensusMsg, Effect, HotStuff, Payload, SignJob, SignPurpose};
use crate::crypto::Signature;
use crate::dag::{Batch, BatchAck, BatchCertificate, BatchRef, SignedBatch};
use crate::signing::SignKind;
use crate::traits::SignRequest;
use crate::types::{Hash32, Height, ValidatorId};

fn slot(r: &BatchRef) -> Slot {
    (r.epoch, r.author, r.round)
}

impl HotStuff {
    pub(crate) fn dag_mode(&self) -> bool {
        self.cfg.payload_mode == PayloadMode::Dag
    }

    /// Counters of the DAG layer.
    #[must_use]
    pub fn dag_metrics(&self) -> &super::DagMetrics {
        &self.dag.metrics
    }

    /// After a restart: the batches this validator stored, and the height up
    /// to which committed transactions were already delivered for execution.
    /// Committed blocks above that height are delivered again, in order.
    ///
    /// Our own batches among them set the next slot we author: one past the
    /// highest we ever stored (a batch of ours is stored durably before it
    /// is broadcast), so a restarted validator never signs a second batch
    /// for a slot it already used (spec §4: that is equivocation).
    pub fn restore_dag(&mut self, batches: Vec<SignedBatch>, executed: Height) {
        for sb in batches {
            if sb.batch.author == self.me {
                self.dag.next_round = self.dag.next_round.max(sb.batch.round.saturating_add(1));
            }
            let r = self.batch_ref(&sb.batch);
            self.dag.slots.entry(slot(&r)).or_insert(r.digest);
            self.dag.data.insert(r.digest, sb);
        }
        let committed: Vec<Block> = self.tree.committed_blocks();
        for b in committed {
            if let Payload::Batches(certs) = b.payload() {
                for c in certs {
                    self.mark_committed(&c.batch);
                }
            }
            if b.height() > executed && b.height().0 > 0 {
                self.dag.to_execute.push_back(b);
            } else {
                for tx in self.block_txs(&b).unwrap_or_default() {
                    self.dag.executed_txs.insert(Hash32::digest(&tx));
                }
            }
        }
    }

    fn batch_ref(&self, b: &Batch) -> BatchRef {
        BatchRef {
            epoch: b.epoch,
            author: b.author,
            round: b.round,
            digest: b.digest(),
        }
    }

    fn mark_committed(&mut self, r: &BatchRef) {
        let s = slot(r);
        self.dag.committed.insert(s);
        self.dag.certified.remove(&s);
        let top = self.dag.committed_round.entry(r.author).or_default();
        *top = (*top).max(r.round);
    }

    // ------------------------------------------------------------ authoring

    /// Cut a batch from the pool when it is full or the interval passed.
    pub(crate) fn maybe_make_batch(&mut self) {
        if !self.dag_mode()
            || self.dag.signing
            || self.now < self.dag.paused_until
            || !self.is_member(self.epoch)
        {
            return;
        }
        let due = self.now.since(self.dag.last_batch_at) >= self.cfg.dag.batch_interval_ms;
        if self.mempool.is_empty() || (self.mempool.len() < self.cfg.dag.max_batch_txs && !due) {
            if !self.mempool.is_empty() {
                let at = self.dag.last_batch_at.plus(self.cfg.dag.batch_interval_ms);
                self.emit(Effect::SetTimer(at));
            }
            return;
        }
        let txs = self
            .mempool
            .drain(self.cfg.dag.max_batch_txs, self.cfg.dag.max_batch_bytes);
        self.dag.next_round = self.dag.next_round.max(1);
        let batch = Batch {
            epoch: self.epoch,
            author: self.me,
            round: self.dag.next_round,
            txs,
        };
        self.dag.next_round = self.dag.next_round.saturating_add(1);
        self.dag.last_batch_at = self.now;
        self.dag.signing = true;
        self.emit(Effect::Sign(SignJob {
            request: SignRequest {
                kind: SignKind::Batch,
                view: None,
                message: batch.digest().to_bytes(),
                digest_preimage: batch.to_bytes(),
            },
            purpose: SignPurpose::Batch {
                batch: Box::new(batch),
            },
        }));
    }

    pub(crate) fn on_batch_signed(&mut self, batch: Batch, signature: Signature) {
        self.dag.signing = false;
        self.dag.metrics.batches_signed_total += 1;
        let r = self.batch_ref(&batch);
        self.dag.own.insert(r.round, (r, Default::default()));
        let sb = SignedBatch { batch, signature };
        self.emit(Effect::Broadcast(ConsensusMsg::Batch(sb.clone())));
        let me = self.me;
        if let Err(error) = self.on_batch(me, sb) {
            self.reject(me, error);
        }
        self.maybe_make_batch();
    }

    /// Our batch's signature was refused: give the slot up, put the
    /// transactions back in the pool and author again after a pause of
    /// `fetch_retry_ms` (a signer that keeps refusing is not asked in a
    /// tight loop).
    pub(crate) fn on_batch_sign_failed(&mut self, batch: Batch) {
        self.dag.signing = false;
        self.dag.metrics.batch_sign_failures_total += 1;
        for tx in batch.txs {
            // Dropped if the pool no longer takes it (full, or the
            // transaction became invalid); the submitter resubmits.
            let _ = self.mempool.insert(self.now, tx);
        }
        self.dag.paused_until = self.now.plus(self.cfg.dag.fetch_retry_ms.max(1));
        self.emit(Effect::SetTimer(self.dag.paused_until));
    }

    pub(crate) fn on_batch_ack_signed(&mut self, batch: BatchRef, to: ValidatorId, sig: Signature) {
        let ack = BatchAck {
            batch,
            acker: self.me,
            signature: sig,
        };
        if to == self.me {
            if let Err(error) = self.on_batch_ack(ack) {
                let me = self.me;
                self.reject(me, error);
            }
        } else {
            self.emit(Effect::Send {
                to,
                msg: ConsensusMsg::BatchAck(ack),
            });
        }
    }

    // ------------------------------------------------------------ receiving

    /// A batch from its author, or fetched data.
    pub(crate) fn on_batch(
        &mut self,
        from: ValidatorId,
        sb: SignedBatch,
    ) -> Result<(), ConsensusError> {
        let r = self.batch_ref(&sb.batch);
        let bad = |why| ConsensusError::InvalidBatch { why };
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
            .map_err(|f| f.into_error("batch", r.author, r.epoch))?;
        if self.dag.fetches.remove(&r.digest).is_some() {
            // Fetched data: authenticated by the digest its certificate names.
            self.dag.metrics.batches_fetched_total += 1;
            self.store_batch(r, sb);
            self.drain_execution();
            return Ok(());
        }
        if from != r.author {
            let asked = self.dag.fetches.values().any(|f| f.from.contains(&from));
            if asked {
                // We asked this peer for certified data and got something else.
                self.dag.metrics.coupling_block_mismatch_total += 1;
            }
            return Err(bad("batch relayed by someone other than its author"));
        }
        if r.epoch != self.epoch {
            return Err(ConsensusError::WrongEpoch {
                what: "batch",
                epoch: r.epoch,
                current: self.epoch,
            });
        }
        let b = &sb.batch;
        let max_tx = self.cfg.limits.max_tx_bytes as usize;
        if b.txs.len() > self.cfg.dag.max_batch_txs || b.tx_bytes() > self.cfg.dag.max_batch_bytes {
            return Err(bad("batch exceeds the size limits"));
        }
        if b.txs.iter().any(|tx| tx.is_empty() || tx.len() > max_tx) {
            return Err(bad("batch carries an empty or oversized transaction"));
        }
        if let Some(meta) = self.cfg.tx_meta
            && b.txs.iter().any(|tx| meta(tx).is_none())
        {
            return Err(bad("batch carries bytes that are not a transaction"));
        }
        let top = self
            .dag
            .committed_round
            .get(&r.author)
            .copied()
            .unwrap_or(0);
        if r.round == 0 || r.round > top + self.cfg.dag.max_rounds_ahead {
            return Err(bad("batch slot out of range"));
        }
        match self.dag.slots.get(&slot(&r)).copied() {
            Some(first) if first != r.digest => {
                if let Some(first) = self.dag.data.get(&first).cloned() {
                    self.dag.metrics.batch_equivocation_detected += 1;
                    self.evidence(Evidence::ConflictingBatches(Box::new(BatchEquivocation {
                        first,
                        second: sb,
                    })));
                }
                return Err(bad("second batch for one slot (equivocation)"));
            }
            _ => {}
        }
        self.store_batch(r, sb);
        if !self.is_member(r.epoch) {
            return Ok(());
        }
        self.emit(Effect::Sign(SignJob {
            request: SignRequest {
                kind: SignKind::BatchAck,
                view: None,
                message: r.to_bytes(),
                digest_preimage: Vec::new(),
            },
            purpose: SignPurpose::BatchAck {
                batch: r,
                to: r.author,
            },
        }));
        Ok(())
    }

    fn store_batch(&mut self, r: BatchRef, sb: SignedBatch) {
        self.dag.slots.entry(slot(&r)).or_insert(r.digest);
        if !self.dag.data.contains_key(&r.digest) {
            self.emit(Effect::PersistBatch(sb.clone()));
            self.dag.data.insert(r.digest, sb);
        }
    }

    /// An ack for one of our batches.
    pub(crate) fn on_batch_ack(&mut self, ack: BatchAck) -> Result<(), ConsensusError> {
        let r = ack.batch;
        if r.author != self.me {
            return Err(ConsensusError::InvalidBatch {
                why: "ack sent to a validator that is not the author",
            });
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
            .map_err(|f| f.into_error("batch ack", ack.acker, r.epoch))?;
        let Some((own, acks)) = self.dag.own.get_mut(&r.round) else {
            // A late ack for a batch that is already certified.
            return Ok(());
        };
        if *own != r {
            return Err(ConsensusError::InvalidBatch {
                why: "ack for a batch we did not make",
            });
        }
        acks.insert(ack.acker, ack.signature);
        if !set.is_quorum(set.stake_of(acks.keys())) {
            return Ok(());
        }
        let mut signers = crate::consensus::SignerBitmap::new(set.len());
        let mut signatures = Vec::new();
        for (id, sig) in acks.iter() {
            if signers.set(*id) {
                signatures.push(sig.clone());
            }
        }
        self.dag.own.remove(&r.round);
        let cert = BatchCertificate {
            batch: r,
            signers,
            signatures,
        };
        self.dag.metrics.certs_formed_total += 1;
        self.emit(Effect::Broadcast(ConsensusMsg::BatchCert(cert.clone())));
        self.dag.certified.insert(slot(&r), cert);
        Ok(())
    }

    /// A certificate from an author.
    pub(crate) fn on_batch_cert(
        &mut self,
        from: ValidatorId,
        cert: BatchCertificate,
    ) -> Result<(), ConsensusError> {
        self.check_batch_cert(&cert)?;
        let s = slot(&cert.batch);
        if self.dag.committed.contains(&s) {
            return Ok(());
        }
        if !self.dag.data.contains_key(&cert.batch.digest) {
            // Prefetch now rather than at commit time.
            let signers: Vec<ValidatorId> = cert.signers.iter().collect();
            self.fetch_batch(cert.batch.digest, signers, from);
        }
        self.dag.certified.entry(s).or_insert(cert);
        Ok(())
    }

    pub(crate) fn check_batch_cert(
        &mut self,
        cert: &BatchCertificate,
    ) -> Result<(), ConsensusError> {
        let result = self.verifier.verify_batch_cert(&self.schedule, cert);
        if result.is_err() {
            self.dag.metrics.certs_invalid_total += 1;
        }
        result
    }

    /// Someone asks for batch data.
    pub(crate) fn on_batch_fetch(&mut self, from: ValidatorId, digest: Hash32) {
        if from == self.me {
            return;
        }
        if let Some(sb) = self.dag.data.get(&digest).cloned() {
            self.emit(Effect::Send {
                to: from,
                msg: ConsensusMsg::Batch(sb),
            });
        }
    }

    fn fetch_batch(&mut self, digest: Hash32, from: Vec<ValidatorId>, hint: ValidatorId) {
        if self.dag.fetches.contains_key(&digest) || self.dag.data.contains_key(&digest) {
            return;
        }
        let mut from: Vec<ValidatorId> = from.into_iter().filter(|v| *v != self.me).collect();
        if from.is_empty() && hint != self.me {
            from.push(hint);
        }
        let Some(first) = from.first().copied() else {
            return;
        };
        self.dag.fetches.insert(
            digest,
            BatchFetch {
                from,
                attempts: 0,
                last_sent: self.now,
            },
        );
        self.emit(Effect::Send {
            to: first,
            msg: ConsensusMsg::BatchFetch(digest),
        });
        let at = self.now.plus(self.cfg.dag.fetch_retry_ms);
        self.emit(Effect::SetTimer(at));
    }

    /// Retry fetches with the next signer; after `MAX_FETCH_ROUNDS` passes
    /// over the signers a fetch is dropped, and re-issued only while a
    /// committed block still waits for that data.
    pub(crate) fn retry_batch_fetches(&mut self) {
        const MAX_FETCH_ROUNDS: usize = 3;
        let retry = self.cfg.dag.fetch_retry_ms;
        self.dag
            .fetches
            .retain(|_, f| (f.attempts as usize) < MAX_FETCH_ROUNDS * f.from.len().max(1));
        self.drain_execution();
        let due: Vec<Hash32> = self
            .dag
            .fetches
            .iter()
            .filter(|(_, f)| self.now.since(f.last_sent) >= retry)
            .map(|(d, _)| *d)
            .collect();
        for digest in due {
            let Some(f) = self.dag.fetches.get_mut(&digest) else {
                continue;
            };
            f.attempts += 1;
            f.last_sent = self.now;
            let to = f.from[(f.attempts as usize) % f.from.len().max(1)];
            self.emit(Effect::Send {
                to,
                msg: ConsensusMsg::BatchFetch(digest),
            });
        }
        if !self.dag.fetches.is_empty() {
            let at = self.now.plus(retry);
            self.emit(Effect::SetTimer(at));
        }
    }

    // ------------------------------------------------------------ coupling

    /// A leader's payload: certified, uncommitted batches not already ordered
    /// by an uncommitted ancestor, in canonical order.
    pub(crate) fn dag_payload(&self, parent: &Hash32) -> Payload {
        let taken = self.slots_in_chain(parent);
        let certs = self
            .dag
            .certified
            .iter()
            .filter(|(s, _)| s.0 == self.epoch && !taken.contains(*s))
            .take(self.cfg.dag.max_batches_per_block)
            .map(|(_, c)| c.clone())
            .collect();
        Payload::Batches(certs)
    }

    /// Batch slots ordered by uncommitted blocks from `tip` back to the root.
    fn slots_in_chain(&self, tip: &Hash32) -> BTreeSet<Slot> {
        let mut out = BTreeSet::new();
        let mut cur = *tip;
        while let Some(b) = self.tree.get(&cur) {
            if self.tree.is_committed(&cur) {
                break;
            }
            if let Payload::Batches(certs) = b.payload() {
                out.extend(certs.iter().map(|c| slot(&c.batch)));
            }
            cur = b.parent_id();
        }
        out
    }

    /// The MainNet coupling rule: before voting, every certificate must be
    /// valid for the block's epoch, canonical, new, and match the header's
    /// commitment. Every outcome is counted.
    pub(crate) fn validate_payload(&mut self, block: &Block) -> Result<(), ConsensusError> {
        let result = self.check_payload(block);
        let label = match &result {
            Ok(()) => "valid",
            Err(ConsensusError::InvalidPayload { why }) => why,
            Err(_) => "uncertified",
        };
        self.dag.validation(label);
        result
    }

    fn check_payload(&mut self, block: &Block) -> Result<(), ConsensusError> {
        let bad = |why| ConsensusError::InvalidPayload { why };
        let certs = match (block.payload(), self.dag_mode()) {
            (Payload::Batches(certs), true) => certs.clone(),
            (Payload::Transactions(_), false) => return Ok(()),
            _ => return Err(bad("wrong_payload_mode")),
        };
        if certs.len() > self.cfg.dag.max_batches_per_block {
            return Err(bad("too_many_batches"));
        }
        if certs
            .windows(2)
            .any(|w| slot(&w[0].batch) >= slot(&w[1].batch))
        {
            return Err(bad("not_canonical_or_duplicate"));
        }
        let taken = self.slots_in_chain(&block.parent_id());
        for c in &certs {
            let s = slot(&c.batch);
            if c.batch.epoch != block.epoch() {
                return Err(bad("wrong_epoch"));
            }
            if self.dag.committed.contains(&s) || taken.contains(&s) {
                return Err(bad("already_ordered"));
            }
            self.check_batch_cert(c)?;
        }
        Ok(())
    }

    // ------------------------------------------------------------ execution

    /// A block was committed: mark its batches and queue its transactions.
    pub(crate) fn queue_execution(&mut self, block: &Block) {
        if let Payload::Batches(certs) = block.payload() {
            for c in certs {
                self.mark_committed(&c.batch);
            }
        }
        self.dag.to_execute.push_back(block.clone());
    }

    /// The transactions of `block` in order, or the first missing batch.
    fn block_txs(&self, block: &Block) -> Result<Vec<Vec<u8>>, (Hash32, Vec<ValidatorId>)> {
        match block.payload() {
            Payload::Transactions(txs) => Ok(txs.clone()),
            Payload::Batches(certs) => {
                let mut out = Vec::new();
                for c in certs {
                    match self.dag.data.get(&c.batch.digest) {
                        Some(sb) => out.extend(sb.batch.txs.iter().cloned()),
                        None => return Err((c.batch.digest, c.signers.iter().collect())),
                    }
                }
                Ok(out)
            }
        }
    }

    /// Deliver committed blocks' transactions in height order, each
    /// transaction at most once; fetch missing batch data.
    pub(crate) fn drain_execution(&mut self) {
        while let Some(block) = self.dag.to_execute.front().cloned() {
            match self.block_txs(&block) {
                Ok(txs) => {
                    self.dag.to_execute.pop_front();
                    let mut fresh = Vec::with_capacity(txs.len());
                    for tx in txs {
                        if self.dag.executed_txs.insert(Hash32::digest(&tx)) {
                            fresh.push(tx);
                        } else {
                            self.dag.metrics.duplicate_txs_skipped += 1;
                        }
                    }
                    self.emit(Effect::Execute {
                        height: block.height(),
                        block: block.id(),
                        proposer: block.header().proposer,
                        txs: fresh,
                    });
                }
                Err((digest, signers)) => {
                    if !self.dag.fetches.contains_key(&digest) {
                        self.dag.metrics.coupling_block_missing_total += 1;
                        let hint = block.header().proposer;
                        self.fetch_batch(digest, signers, hint);
                    }
                    return;
                }
            }
        }
    }
}
