//! A validator that is behind: the batches it cannot check yet, and the
//! rounds it authors in a new epoch (issue #20; docs/dag.md "Behind").
//!
//! A batch is sent once, by its author. A validator that has not reached
//! the batch's epoch, or has not executed far enough for that epoch's keys
//! to be final (an on-chain key rotation may change them), cannot check it
//! and so cannot acknowledge it; when a quorum needs its ack (another
//! validator down), the batch would never be certified. Such batches are
//! parked, within bounds, and checked again once it has caught up.

use super::bounds::{
    MAX_PARKED_BYTES, MAX_PARKED_BYTES_PER_AUTHOR, MAX_PARKED_EPOCHS_AHEAD, MAX_PARKED_PER_AUTHOR,
};
use super::{Availability, DagEffect, DagError, SignedBatch};
use crate::quorum::SigFailure;
use crate::types::Epoch;

impl Availability {
    /// Hold back a batch from its author that cannot be checked yet, to be
    /// checked (and acknowledged) again once this validator has caught up
    /// (`retry_parked`): its author sends it once, and a quorum may need
    /// this validator's ack. Only from a member of the batch's epoch, of an
    /// epoch at most [`MAX_PARKED_EPOCHS_AHEAD`] past ours, and within
    /// [`MAX_PARKED_PER_AUTHOR`] batches and [`Availability::parked_bytes_per_author`]
    /// bytes per author (its lowest slots go first); otherwise, or if this
    /// batch is the one that would go, it is `refused`.
    pub(super) fn park(&mut self, sb: SignedBatch, refused: DagError) -> Result<(), DagError> {
        let author = sb.batch.author;
        let key = (sb.batch.epoch, sb.batch.round);
        let cap = self.parked_bytes_per_author();
        if key.0.0 > self.epoch.0.saturating_add(MAX_PARKED_EPOCHS_AHEAD)
            || self.schedule.set(key.0).get(author).is_none()
            || parked_size(&sb) > cap
        {
            return Err(refused);
        }
        let queue = self.state.parked.entry(author).or_default();
        if queue.contains_key(&key) {
            // The first batch for the slot stays (a second one is checked,
            // and found equivocating, if the author sends it again).
            return Ok(());
        }
        // The lowest slots go first: this batch stays only if it fits with
        // the author's higher ones (checked before anything is let go).
        let above = queue.range(key..).count();
        let above_bytes: usize = queue.range(key..).map(|(_, b)| parked_size(b)).sum();
        if above + 1 > MAX_PARKED_PER_AUTHOR || above_bytes + parked_size(&sb) > cap {
            return Err(refused);
        }
        queue.insert(key, sb);
        let mut held: usize = queue.values().map(parked_size).sum();
        while queue.len() > MAX_PARKED_PER_AUTHOR || held > cap {
            let Some((_, batch)) = queue.pop_first() else {
                break;
            };
            held -= parked_size(&batch);
        }
        // Checked in the current state (earlier parked batches were checked
        // again at the start of this input): nothing to retry until the
        // epoch or the final keys change.
        self.state.parked_checked = Some((self.epoch, self.verifier.keys_final_through()));
        if !self.state.retrying_parked {
            self.state.metrics.batches_parked_total += 1;
        }
        Ok(())
    }

    /// Most bytes parked for one author: [`MAX_PARKED_BYTES_PER_AUTHOR`],
    /// or less with many validators, so that all of them together stay
    /// within [`MAX_PARKED_BYTES`] and no author can take another's share.
    #[must_use]
    pub fn parked_bytes_per_author(&self) -> usize {
        let n = self.schedule.max_validators().max(1);
        MAX_PARKED_BYTES_PER_AUTHOR.min(MAX_PARKED_BYTES / n)
    }

    /// Check the parked batches again once this validator entered a later
    /// epoch or more epochs' keys became final here: acknowledged if still
    /// valid, parked again if still not checkable, dropped otherwise (a bad
    /// signature is reported against the author).
    pub(super) fn retry_parked(&mut self) {
        if self.state.parked.is_empty() {
            return;
        }
        let now = (self.epoch, self.verifier.keys_final_through());
        if self.state.parked_checked == Some(now) {
            return;
        }
        self.state.parked_checked = Some(now);
        let parked = std::mem::take(&mut self.state.parked);
        self.state.retrying_parked = true;
        for (author, batches) in parked {
            for sb in batches.into_values() {
                if sb.batch.epoch >= self.epoch
                    && sb.batch.round > self.top(author).saturating_add(self.cfg.max_rounds_ahead)
                {
                    // Past the author's window as this validator knows it:
                    // its committed rounds may still lag. Parked again.
                    let _ = self.park(
                        sb,
                        DagError::InvalidBatch {
                            why: "batch slot out of range",
                        },
                    );
                    continue;
                }
                // Other refusals (stale or committed by now, an epoch that
                // passed) are no fault of the author.
                if let Err(error @ DagError::Signature { failure, .. }) = self.on_batch(author, sb)
                    && failure != SigFailure::KeysNotFinal
                {
                    self.emit(DagEffect::Rejected {
                        from: author,
                        error,
                    });
                }
            }
        }
        self.state.retrying_parked = false;
    }

    /// The lowest round at which we may author in `epoch`: past our highest
    /// committed round and past every batch of ours of that epoch we hold.
    /// Rounds of earlier epochs' batches that no block ordered are free
    /// again: a slot names its epoch, and the signer's guard orders batches
    /// by (epoch, round). Without this, a validator that authored in an
    /// epoch the network had already left (restarted behind, before it
    /// caught up) used up its window of `max_rounds_ahead` rounds on batches
    /// nobody would certify, and could never author again.
    ///
    /// Every batch of ours of `epoch` above our highest committed round is
    /// held: it is stored before it is broadcast, restored after a restart,
    /// and pruning drops only older epochs', stale and delivered ones (and
    /// never our latest batch, `own_top`, nor our highest-round one,
    /// `own_high`). Our highest committed round is kept at least W below
    /// our highest batch round across a restart (`restore`), where peers
    /// that kept the true value do not find the rounds stale. A restart
    /// resumes in an epoch no earlier than our latest batch's (its epoch's
    /// start was committed durably before the batch was stored); were it
    /// ever earlier, the signer's guard would refuse the lower (epoch,
    /// round).
    pub(super) fn first_free_round(&self, epoch: Epoch) -> u64 {
        let own = self
            .stored_of(epoch, self.me)
            .next_back()
            .map_or(0, |((_, _, round), _)| *round);
        self.top(self.me).max(own).saturating_add(1)
    }
}

/// What a parked batch holds in memory, about: its transactions with their
/// vector headers, and the signed batch itself.
pub(super) fn parked_size(sb: &SignedBatch) -> usize {
    sb.batch
        .tx_bytes()
        .saturating_add(sb.batch.txs.len() * std::mem::size_of::<Vec<u8>>())
        .saturating_add(crate::crypto::ML_DSA_44_SIGNATURE_BYTES)
        .saturating_add(std::mem::size_of::<SignedBatch>())
}

#[cfg(test)]
mod tests {
    use super::super::fetch::tests::{ENV, feed, keys, layer, message};
    use crate::codec::Encode;
    use crate::crypto::KeyPair;
    use crate::dag::{
        Availability, Batch, BatchRef, DagEffect, DagInput, DagMsg, DagSignJob, DagSignPurpose,
        MAX_PARKED_PER_AUTHOR, SignedBatch,
    };
    use crate::signing::{SignKind, sign_domain};
    use crate::types::{Epoch, Height, Millis, ValidatorId};

    fn batch(keys: &[KeyPair], epoch: u64, author: u32, round: u64) -> SignedBatch {
        let batch = Batch {
            epoch: Epoch(epoch),
            author: ValidatorId(author),
            round,
            txs: vec![format!("tx {epoch} {author} {round}").into_bytes()],
        };
        let message = batch.digest().to_bytes();
        let signature = sign_domain(&keys[author as usize], ENV, SignKind::Batch, &message);
        SignedBatch { batch, signature }
    }

    fn at(dag: &mut Availability, now: u64, epoch: u64, input: DagInput) -> Vec<DagEffect> {
        dag.handle(Millis(now), Epoch(epoch), input)
    }

    fn send(dag: &mut Availability, now: u64, epoch: u64, sb: SignedBatch) -> Vec<DagEffect> {
        let from = sb.batch.author.0;
        at(dag, now, epoch, message(from, DagMsg::Batch(sb)))
    }

    /// The batches `effects` ask the signer to acknowledge.
    fn acked(effects: &[DagEffect]) -> Vec<BatchRef> {
        effects
            .iter()
            .filter_map(|e| match e {
                DagEffect::Sign(DagSignJob {
                    purpose: DagSignPurpose::BatchAck { batch, .. },
                    ..
                }) => Some(*batch),
                _ => None,
            })
            .collect()
    }

    fn rejected(effects: &[DagEffect]) -> usize {
        effects
            .iter()
            .filter(|e| matches!(e, DagEffect::Rejected { .. }))
            .count()
    }

    /// A validator whose execution lags (keys final through epoch 0 only)
    /// in epoch 1 parks an author's batch instead of refusing it, and acks
    /// it at the first input after execution made epoch 1's keys final.
    /// Before, the batch was refused (`keys_not_final`) and never acked.
    #[test]
    fn a_batch_whose_keys_are_not_final_is_acked_once_they_are() {
        let keys = keys();
        let mut dag = layer(&keys);
        dag.set_keys_final_through(Epoch(0));
        let sb = batch(&keys, 1, 1, 1);
        let r = sb.batch.reference();
        let effects = send(&mut dag, 1, 1, sb);
        assert!(acked(&effects).is_empty(), "{effects:?}");
        assert_eq!(rejected(&effects), 0, "{effects:?}");
        assert_eq!(dag.metrics().batches_parked_total, 1);
        assert_eq!(dag.footprint().parked, 1);
        // Nothing changed: not checked again.
        assert!(acked(&at(&mut dag, 2, 1, DagInput::Tick)).is_empty());
        dag.set_keys_final_through(Epoch(1));
        let effects = at(&mut dag, 3, 1, DagInput::Tick);
        assert_eq!(acked(&effects), vec![r], "{effects:?}");
        assert_eq!(dag.footprint().parked, 0);
        assert_eq!(dag.metrics().batches_parked_total, 1);
    }

    /// A batch of an epoch this validator has not reached is parked, parked
    /// again while it is still behind, and acked once it is there.
    #[test]
    fn a_batch_of_a_later_epoch_is_acked_once_the_validator_is_there() {
        let keys = keys();
        let mut dag = layer(&keys);
        let sb = batch(&keys, 2, 3, 1);
        let r = sb.batch.reference();
        let effects = send(&mut dag, 1, 0, sb);
        assert!(acked(&effects).is_empty() && rejected(&effects) == 0);
        let effects = at(&mut dag, 2, 1, DagInput::Tick);
        assert!(acked(&effects).is_empty(), "{effects:?}");
        assert_eq!(dag.footprint().parked, 1);
        assert_eq!(
            dag.metrics().batches_parked_total,
            1,
            "parked again, counted once"
        );
        let effects = at(&mut dag, 3, 2, DagInput::Tick);
        assert_eq!(acked(&effects), vec![r], "{effects:?}");
        // Of an epoch that passed: refused as before.
        let effects = send(&mut dag, 4, 2, batch(&keys, 1, 3, 2));
        assert_eq!(rejected(&effects), 1, "{effects:?}");
    }

    /// An author (or an outsider claiming to be one) flooding batches this
    /// validator cannot check yet: at most `MAX_PARKED_PER_AUTHOR` of its
    /// highest slots are held, nothing from a validator outside the set,
    /// and only the held ones are acked later.
    #[test]
    fn parked_batches_are_bounded_per_author() {
        let keys = keys();
        let mut dag = layer(&keys);
        let flood = 40u64;
        for round in 1..=flood {
            send(&mut dag, round, 0, batch(&keys, 1, 2, round));
        }
        let outsider = KeyPair::from_seed(&[7; 32]);
        let mut stranger = batch(&keys, 1, 2, 1);
        stranger.batch.author = ValidatorId(9);
        stranger.signature = sign_domain(
            &outsider,
            ENV,
            SignKind::Batch,
            &stranger.batch.digest().to_bytes(),
        );
        let effects = feed(&mut dag, 50, message(9, DagMsg::Batch(stranger)));
        assert_eq!(rejected(&effects), 1, "{effects:?}");
        // A slot below all the kept ones is refused, and lets none go.
        let effects = send(&mut dag, 51, 0, batch(&keys, 1, 2, 3));
        assert_eq!(rejected(&effects), 1, "{effects:?}");
        let fp = dag.footprint();
        assert_eq!(fp.parked, MAX_PARKED_PER_AUTHOR);
        assert_eq!(fp.max_parked_per_author, MAX_PARKED_PER_AUTHOR);
        assert_eq!(fp.exceeds(&dag.footprint_limits()), None);
        let effects = at(&mut dag, 60, 1, DagInput::Tick);
        let rounds: Vec<u64> = acked(&effects).iter().map(|r| r.round).collect();
        let kept = flood - MAX_PARKED_PER_AUTHOR as u64 + 1;
        assert_eq!(rounds, (kept..=flood).collect::<Vec<_>>());
    }

    /// The batches (epoch, round) `effects` ask the signer to sign.
    fn authored(effects: &[DagEffect]) -> Vec<Batch> {
        effects
            .iter()
            .filter_map(|e| match e {
                DagEffect::Sign(DagSignJob {
                    purpose: DagSignPurpose::Batch { batch },
                    ..
                }) => Some((**batch).clone()),
                _ => None,
            })
            .collect()
    }

    fn slots(batches: &[Batch]) -> Vec<(Epoch, u64)> {
        batches.iter().map(|b| (b.epoch, b.round)).collect()
    }

    /// A validator that used its whole window of rounds on batches of an
    /// epoch no block ordered (restarted behind, it authored in an epoch the
    /// network had left) authors again in the next epoch, from one past its
    /// highest committed round. Before, its next round stayed past the
    /// window and it never authored again. A late ack for the old epoch's
    /// batch with the same round is ignored, not held against the acker.
    #[test]
    fn a_new_epoch_frees_the_rounds_of_batches_no_block_ordered() {
        let keys = keys();
        let mut dag = layer(&keys);
        let window = dag.cfg.max_rounds_ahead;
        let own: Vec<SignedBatch> = (1..=window).map(|r| batch(&keys, 0, 0, r)).collect();
        let old = own[0].batch.reference();
        dag.restore(own, Vec::new(), Height(0));
        let tx = b"a transfer".to_vec();
        let effects = at(&mut dag, 10_000, 0, DagInput::Submit(tx));
        assert!(authored(&effects).is_empty(), "{effects:?}");
        let effects = at(&mut dag, 20_000, 1, DagInput::Tick);
        let new = authored(&effects);
        assert_eq!(slots(&new), vec![(Epoch(1), 1)], "{effects:?}");
        let signature = sign_domain(&keys[0], ENV, SignKind::Batch, &new[0].digest().to_bytes());
        let purpose = DagSignPurpose::Batch {
            batch: Box::new(new[0].clone()),
        };
        at(&mut dag, 20_001, 1, DagInput::Signed { purpose, signature });
        let late = crate::dag::BatchAck {
            batch: old,
            acker: ValidatorId(1),
            signature: sign_domain(&keys[1], ENV, SignKind::BatchAck, &old.to_bytes()),
        };
        let effects = at(&mut dag, 20_002, 1, message(1, DagMsg::BatchAck(late)));
        assert_eq!(rejected(&effects), 0, "{effects:?}");
    }

    /// After a restart that rebuilt no committed round of ours (none of our
    /// batches in the restored window), a new epoch's rounds start within W
    /// of our latest batch, where peers that kept our highest committed
    /// round do not find them stale. Review of issue #20: with only the
    /// rounds freed, round 1, which every such peer refused; before that,
    /// the validator never authored again (its next round was past its
    /// rebuilt committed round plus W).
    #[test]
    fn a_new_epoch_starts_within_the_window_of_our_latest_batch() {
        let keys = keys();
        let mut dag = layer(&keys);
        let window = dag.cfg.max_rounds_ahead;
        dag.restore(vec![batch(&keys, 0, 0, 200)], Vec::new(), Height(0));
        at(
            &mut dag,
            10_000,
            0,
            DagInput::Submit(b"a transfer".to_vec()),
        );
        let effects = at(&mut dag, 20_000, 1, DagInput::Tick);
        assert_eq!(
            slots(&authored(&effects)),
            vec![(Epoch(1), 200 - window + 1)],
            "{effects:?}"
        );
    }

    /// A second restart, an epoch after the first: our latest batch (epoch
    /// 1, round 137) has a lower round than our highest (epoch 0, round
    /// 200), which pruning keeps, so the committed round is still kept
    /// within W of round 200 and the next epoch starts at 137, not at 74
    /// (stale at peers that kept our committed round of 200). Found by
    /// review.
    #[test]
    fn a_second_restart_keeps_rounds_within_the_window_of_our_highest_batch() {
        let keys = keys();
        let mut dag = layer(&keys);
        let high = batch(&keys, 0, 0, 200);
        let high_digest = high.batch.digest();
        dag.restore(vec![high.clone()], Vec::new(), Height(0));
        at(&mut dag, 10_000, 0, DagInput::Submit(b"first".to_vec()));
        let effects = at(&mut dag, 20_000, 1, DagInput::Tick);
        let latest = authored(&effects);
        assert_eq!(slots(&latest), vec![(Epoch(1), 137)], "{effects:?}");
        let message = latest[0].digest().to_bytes();
        let signature = sign_domain(&keys[0], ENV, SignKind::Batch, &message);
        let signed = SignedBatch {
            batch: latest[0].clone(),
            signature: signature.clone(),
        };
        let purpose = DagSignPurpose::Batch {
            batch: Box::new(latest[0].clone()),
        };
        at(&mut dag, 20_001, 1, DagInput::Signed { purpose, signature });
        // Epoch 3: epoch 0's data is pruned, but not our highest round.
        let effects = at(&mut dag, 30_000, 3, DagInput::Tick);
        let forgotten = effects
            .iter()
            .any(|e| matches!(e, DagEffect::ForgetBatches(ids) if ids.contains(&high_digest)));
        assert!(!forgotten, "{effects:?}");
        let mut again = layer(&keys);
        again.restore(vec![high, signed], Vec::new(), Height(0));
        let effects = at(&mut again, 40_000, 3, DagInput::Submit(b"second".to_vec()));
        assert_eq!(
            slots(&authored(&effects)),
            vec![(Epoch(3), 137)],
            "{effects:?}"
        );
    }

    /// Parked bytes per author stay within its share; batches of epochs far
    /// ahead are refused; a parked batch whose signature turns out bad is
    /// reported against its author once it can be checked.
    #[test]
    fn parking_refuses_far_epochs_and_reports_bad_signatures() {
        let keys = keys();
        let mut dag = layer(&keys);
        let cap = dag.parked_bytes_per_author();
        assert_eq!(
            cap,
            crate::dag::MAX_PARKED_BYTES_PER_AUTHOR.min((64 << 20) / 7)
        );
        // Full batches: 500 transactions of 1,000 bytes, about 0.5 MB each.
        let full = |epoch: u64, round: u64| {
            let batch = Batch {
                epoch: Epoch(epoch),
                author: ValidatorId(4),
                round,
                txs: (0..500u32)
                    .map(|i| {
                        let mut tx = vec![0u8; 1_000];
                        tx[..12].copy_from_slice(
                            &[&round.to_be_bytes()[..], &i.to_be_bytes()[..]].concat(),
                        );
                        tx
                    })
                    .collect(),
            };
            let signature = sign_domain(&keys[4], ENV, SignKind::Batch, &batch.digest().to_bytes());
            SignedBatch { batch, signature }
        };
        for round in 1..=30 {
            send(&mut dag, round, 0, full(1, round));
        }
        let fp = dag.footprint();
        assert!(fp.parked_bytes <= cap, "{} > {cap}", fp.parked_bytes);
        assert!(fp.parked < 30 && fp.parked > 1, "{}", fp.parked);
        assert_eq!(fp.exceeds(&dag.footprint_limits()), None);
        let far = crate::dag::MAX_PARKED_EPOCHS_AHEAD + 1;
        let effects = send(&mut dag, 40, 0, batch(&keys, far, 2, 1));
        assert_eq!(rejected(&effects), 1, "{effects:?}");
        let mut forged = batch(&keys, 1, 3, 1);
        forged.signature = sign_domain(
            &keys[5],
            ENV,
            SignKind::Batch,
            &forged.batch.digest().to_bytes(),
        );
        let effects = send(&mut dag, 41, 0, forged);
        assert_eq!(rejected(&effects), 0, "not checkable yet: {effects:?}");
        let effects = at(&mut dag, 42, 1, DagInput::Tick);
        assert_eq!(rejected(&effects), 1, "{effects:?}");
        let kept = acked(&effects);
        assert_eq!(
            kept.len(),
            fp.parked,
            "the author's parked batches are acked"
        );
        assert!(
            kept.iter().all(|r| r.round > 30 - fp.parked as u64),
            "the highest kept"
        );
    }
}
