//! The DAG's coupling to consensus (spec §4.3): payloads for proposals,
//! validation of received payloads, delivery of committed transactions with
//! fetch-on-miss, and restore after a restart.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    Availability, BatchCertificate, BatchRef, CommittedBlock, DagEffect, DagError, SignedBatch,
    Slot, slot_of,
};
use crate::types::{Epoch, Height, ValidatorId};

impl Availability {
    /// A leader's payload for a block of `epoch`: certified, uncommitted
    /// batches of that epoch not already ordered by an uncommitted ancestor
    /// (`ordered`: the batches those ancestors carry) and not stale, in
    /// canonical order, at most `max_batches_per_block`.
    #[must_use]
    pub fn payload<'a>(
        &self,
        epoch: Epoch,
        ordered: impl IntoIterator<Item = &'a BatchRef>,
    ) -> Vec<BatchCertificate> {
        self.payload_within(epoch, ordered, usize::MAX, u64::MAX)
    }

    /// [`Self::payload`] carrying at most `max_txs` transactions: batches
    /// are taken in canonical order while their transactions fit (a batch
    /// whose data this validator lacks counts as `max_batch_txs`), and the
    /// first is taken whatever its size, so a budget smaller than a batch
    /// still makes progress. The limit is the proposer's choice
    /// ([`crate::consensus::BlockBudget`]); validators never check it.
    ///
    /// `max_gas` is the block gas limit execution enforces: past the first
    /// batch, a batch goes in only if the gas its transactions declare
    /// (read with the fee reader) fits beside the others', and a batch whose
    /// data this validator lacks ends the payload (its gas is unknown).
    /// Without it, blocks of several full batches passed the limit and
    /// execution refused the excess (issue #21).
    #[must_use]
    pub fn payload_within<'a>(
        &self,
        epoch: Epoch,
        ordered: impl IntoIterator<Item = &'a BatchRef>,
        max_txs: usize,
        max_gas: u64,
    ) -> Vec<BatchCertificate> {
        let ordered: Vec<&BatchRef> = ordered.into_iter().collect();
        let taken: BTreeSet<Slot> = ordered.iter().map(|r| slot_of(r)).collect();
        let tops = self.ancestry_tops(ordered);
        let mut txs = 0usize;
        let mut out = Vec::new();
        let eligible = self
            .state
            .certified
            .iter()
            .filter(|(s, _)| s.0 == epoch && !taken.contains(*s))
            .filter(|(s, _)| !self.is_stale(s.2, tops.get(&s.1).copied().unwrap_or(0)))
            .take(self.cfg.max_batches_per_block);
        let mut gas = 0u64;
        for (_, cert) in eligible {
            let data = self.state.data.get(&cert.batch.digest);
            let size = data.map_or(self.cfg.max_batch_txs, |b| b.batch.txs.len());
            if !out.is_empty() && txs.saturating_add(size) > max_txs {
                break;
            }
            let batch_gas = match (data, self.tx_meta) {
                (_, None) => Some(0),
                (None, Some(_)) => None,
                (Some(b), Some(meta)) => Some(b.batch.txs.iter().fold(0u64, |g, t| {
                    g.saturating_add(meta(t).map_or(0, |m| m.gas_limit))
                })),
            };
            let total = batch_gas.map(|g| gas.saturating_add(g));
            if !out.is_empty() && total.is_none_or(|t| t > max_gas) {
                break;
            }
            txs = txs.saturating_add(size);
            gas = total.unwrap_or(u64::MAX);
            out.push(cert.clone());
        }
        out
    }

    /// The MainNet coupling rule for a proposed block of `epoch` carrying
    /// `certs`, whose uncommitted ancestors carry `ordered`: at most
    /// `max_batches_per_block` certificates, in canonical order, each valid,
    /// of the block's epoch and not ordered before. Every outcome is counted
    /// (`qbind_dag_coupling_validation_total{result}`).
    ///
    /// Stale rule (`stale_round`): a certificate's round must be above the
    /// highest round of its author ordered by the block's ancestors (the
    /// committed chain and `ordered`) minus `max_rounds_ahead`. It is a
    /// function of the block's chain, so a block that a quorum accepted
    /// never names a slot `2 × max_rounds_ahead` below its author's highest
    /// committed round, whose data pruning drops.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn validate<'a>(
        &mut self,
        epoch: Epoch,
        certs: &[BatchCertificate],
        ordered: impl IntoIterator<Item = &'a BatchRef>,
    ) -> Result<(), DagError> {
        let result = self.check_payload(epoch, certs, ordered);
        let label = match &result {
            Ok(()) => "valid",
            Err(DagError::InvalidPayload { why }) => why,
            Err(DagError::Signature {
                failure: crate::quorum::SigFailure::KeysNotFinal,
                ..
            }) => "keys_not_final",
            Err(_) => "uncertified",
        };
        self.state.validation(label);
        result
    }

    /// Count a payload refused before it reached [`Availability::validate`]
    /// (for example one of the wrong kind).
    pub fn count_invalid_payload(&mut self, label: &'static str) {
        self.state.validation(label);
    }

    fn check_payload<'a>(
        &mut self,
        epoch: Epoch,
        certs: &[BatchCertificate],
        ordered: impl IntoIterator<Item = &'a BatchRef>,
    ) -> Result<(), DagError> {
        let bad = |why| DagError::InvalidPayload { why };
        if certs.len() > self.cfg.max_batches_per_block {
            return Err(bad("too_many_batches"));
        }
        if certs
            .windows(2)
            .any(|w| slot_of(&w[0].batch) >= slot_of(&w[1].batch))
        {
            return Err(bad("not_canonical_or_duplicate"));
        }
        let ordered: Vec<&BatchRef> = ordered.into_iter().collect();
        let taken: BTreeSet<Slot> = ordered.iter().map(|r| slot_of(r)).collect();
        let tops = self.ancestry_tops(ordered);
        for c in certs {
            let s = slot_of(&c.batch);
            if c.batch.epoch != epoch {
                return Err(bad("wrong_epoch"));
            }
            if self.state.committed.contains(&s) || taken.contains(&s) {
                return Err(bad("already_ordered"));
            }
            if self.is_stale(s.2, tops.get(&s.1).copied().unwrap_or(0)) {
                return Err(bad("stale_round"));
            }
            self.check_batch_cert(c)?;
        }
        Ok(())
    }

    /// Per author, the highest round ordered by the committed chain or by
    /// `ordered` (the uncommitted ancestors of a block).
    fn ancestry_tops(&self, ordered: Vec<&BatchRef>) -> BTreeMap<ValidatorId, u64> {
        let mut tops = self.state.committed_round.clone();
        for r in ordered {
            let top = tops.entry(r.author).or_default();
            *top = (*top).max(r.round);
        }
        tops
    }

    // ------------------------------------------------------------ restore

    /// After a restart: the batches this validator stored, the committed
    /// blocks it still holds (ascending) and the height up to which their
    /// transactions were already delivered for execution. Committed blocks
    /// above that height are delivered again, in order, at the next input.
    ///
    /// Our own batches among them set the next slot we author: past every
    /// batch of ours of the current epoch and past our highest committed
    /// round (set at the first input, `first_free_round`; a batch of ours is
    /// stored durably before it is broadcast), so a restarted validator
    /// never signs a second batch for a slot it already used (spec §4: that
    /// is equivocation).
    ///
    /// What pruning would have dropped (delivered blocks' batches below the
    /// retention margin, stale slots; older epochs at the first input) is
    /// dropped again, and its deletion is among the effects of the next
    /// input.
    pub fn restore(
        &mut self,
        batches: Vec<SignedBatch>,
        committed: Vec<CommittedBlock>,
        delivered: Height,
    ) {
        for sb in batches {
            let r = sb.batch.reference();
            self.state.slots.entry(slot_of(&r)).or_insert(r.digest);
            self.note_own(&r);
            self.state.stored.insert((slot_of(&r), r.digest));
            self.state.data.insert(r.digest, sb);
        }
        self.state.delivered = self.state.delivered.max(delivered);
        let mut authors = BTreeSet::new();
        for b in committed {
            for c in &b.certs {
                self.mark_committed(&c.batch);
                authors.insert(c.batch.author);
            }
            let digests = b.certs.iter().map(|c| c.batch.digest).collect();
            self.retain_committed(b.height, digests);
            if b.height > delivered && b.height.0 > 0 {
                self.state.to_deliver.push_back(b);
            }
        }
        // Our highest committed round is at least our highest batch round
        // less W (we author at most W past it), and at most that round (our
        // committed batches were stored, and the highest is never pruned);
        // a window holding none of our batches rebuilt a lower one, under
        // which we could never author again (`next_round` past `top + W`),
        // and our rounds in a new epoch would restart where peers that kept
        // the true value find them stale (review of issue #20).
        if let Some((round, _)) = self.state.own_high {
            let floor = round.saturating_sub(self.cfg.max_rounds_ahead);
            let top = self.state.committed_round.entry(self.me).or_default();
            *top = (*top).max(floor);
        }
        // The first input sets the next round for its epoch from what was
        // restored (`prune_epochs`, `first_free_round`).
        self.state.pruned_for_epoch = None;
        authors.extend(self.state.stored.iter().map(|((_, a, _), _)| *a));
        for author in authors {
            self.prune_stale(author);
        }
        self.prune_delivered();
    }

    /// Record a committed batch; whether its author's highest committed
    /// round rose.
    pub(super) fn mark_committed(&mut self, r: &BatchRef) -> bool {
        let s = slot_of(r);
        self.state.committed.insert(s);
        self.state.certified.remove(&s);
        let top = self.state.committed_round.entry(r.author).or_default();
        let rose = r.round > *top;
        *top = (*top).max(r.round);
        rose
    }

    // ------------------------------------------------------------ delivery

    /// The transactions of `block` in order (a transaction carried by two of
    /// its batches once), or the first missing batch and its signers.
    fn block_txs(
        &mut self,
        block: &CommittedBlock,
    ) -> Result<Vec<Vec<u8>>, (BatchRef, Vec<ValidatorId>)> {
        let mut batches = Vec::with_capacity(block.certs.len());
        for c in &block.certs {
            let Some(sb) = self.state.data.get(&c.batch.digest) else {
                return Err((c.batch, c.signers.iter().collect()));
            };
            batches.push(&sb.batch.txs);
        }
        let (out, repeats) = super::block_transactions(batches.into_iter().flatten());
        self.state.metrics.duplicate_txs_skipped += repeats;
        // The mutation "dedup by process history" (sim only): skip what this
        // process delivered before, as the code did before issue #17.
        #[cfg(feature = "sim")]
        if crate::mutants::active(crate::mutants::Mutant::DedupByProcessHistory) {
            let history = &mut self.state.mutant_history;
            return Ok(out
                .into_iter()
                .filter(|tx| history.insert(crate::types::Hash32::of_transaction(tx)))
                .collect());
        }
        Ok(out)
    }

    /// Deliver committed blocks' transactions in height order; fetch missing
    /// batch data.
    pub(super) fn drain_delivery(&mut self) {
        while let Some(block) = self.state.to_deliver.front().cloned() {
            match self.block_txs(&block) {
                Ok(txs) => {
                    self.state.to_deliver.pop_front();
                    self.state.metrics.batches_committed_total += block.certs.len() as u64;
                    self.state.delivered = self.state.delivered.max(block.height);
                    self.emit(DagEffect::Deliver {
                        height: block.height,
                        block: block.id,
                        proposer: block.proposer,
                        txs,
                    });
                }
                Err((r, signers)) => {
                    if !self.state.fetches.contains_key(&r.digest) {
                        self.state.metrics.coupling_block_missing_total += 1;
                        self.fetch_batch(&r, signers, block.proposer, None);
                    }
                    break;
                }
            }
        }
        self.prune_delivered();
    }
}
