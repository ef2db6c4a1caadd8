//! Fetching batch data (spec §4.3; docs/dag.md "Fetching batch data"):
//! whom a validator asks for the data a certificate names, when, and how
//! many requests it has in flight; and answering the requests of others.
//!
//! A fetch asks [`BATCH_FETCH_FANOUT`] of the certificate's signers at once
//! and, every `fetch_retry_ms`, the next ones in turn, so one signer that
//! never answers (it withholds, or it is Byzantine) costs no retry, and
//! every signer is asked before any is asked again. Data is fetched as soon
//! as a certificate is seen — broadcast by its author, or first seen in a
//! proposal — rather than when a committed block needs it, since a
//! validator whose execution lags on batch data lags on its votes
//! (consensus §C3.7). Fetched data is stored only if it is the batch its
//! certificate's digest names, signed by its author: where it came from
//! proves nothing, before or after a restart.

use super::bounds::{
    BATCH_FETCH_FANOUT, MAX_FETCH_ROUNDS, MAX_PREFETCHES, MAX_PREFETCHES_PER_PEER,
};
use super::state::BatchFetch;
use super::{Availability, BatchRef, DagEffect, DagMsg, slot_of};
use crate::types::{Hash32, ValidatorId};

impl Availability {
    /// Someone asks for batch data: it gets the batch stored under that
    /// digest (keyed by the digest of its content, so it is the batch
    /// asked for), or nothing.
    pub(super) fn on_batch_fetch(&mut self, from: ValidatorId, digest: Hash32) {
        if from == self.me {
            return;
        }
        if let Some(sb) = self.state.data.get(&digest).cloned() {
            self.emit(DagEffect::Send {
                to: from,
                msg: DagMsg::Batch(sb),
            });
        } else {
            // Perhaps an old committed block's: the store answers.
            self.state.metrics.batch_fetches_to_store_total += 1;
            self.emit(DagEffect::ServeBatch { to: from, digest });
        }
    }

    /// A proposal of `proposer` whose payload validated orders `batches`
    /// (each with its certificate's signers): prefetch the data of those
    /// this validator neither holds nor fetches, counted against
    /// `proposer`'s quota ([`MAX_PREFETCHES_PER_PEER`]). Batches of another
    /// epoch or of committed slots are left to delivery, and a payload is
    /// read up to `max_batches_per_block` (what validation allows).
    pub(super) fn on_proposed(
        &mut self,
        proposer: ValidatorId,
        batches: Vec<(BatchRef, Vec<ValidatorId>)>,
    ) {
        for (r, signers) in batches.into_iter().take(self.cfg.max_batches_per_block) {
            if r.epoch != self.epoch || self.state.committed.contains(&slot_of(&r)) {
                continue;
            }
            self.fetch_batch(&r, signers, proposer, Some(proposer));
        }
    }

    /// Ask `from` (the certificate's signers; `hint` if none is another
    /// validator) for the data of `r`: [`BATCH_FETCH_FANOUT`] of them at
    /// once, starting at a place that depends on the digest and on us (so
    /// that validators fetching the same batch spread their requests over
    /// its signers). A prefetch (`prefetch_for`: the peer whose certificate
    /// or proposal asked for it) is skipped when the global or that peer's
    /// quota of prefetches is used up ([`MAX_PREFETCHES`],
    /// [`MAX_PREFETCHES_PER_PEER`]); the data is then fetched when a
    /// committed block needs it.
    pub(super) fn fetch_batch(
        &mut self,
        r: &BatchRef,
        from: Vec<ValidatorId>,
        hint: ValidatorId,
        prefetch_for: Option<ValidatorId>,
    ) {
        let digest = r.digest;
        if self.state.fetches.contains_key(&digest) || self.state.data.contains_key(&digest) {
            return;
        }
        if let Some(peer) = prefetch_for {
            let mut total = 0;
            let mut theirs = 0;
            for f in self.state.fetches.values() {
                if let Some(p) = f.prefetch_for {
                    total += 1;
                    theirs += usize::from(p == peer);
                }
            }
            if total >= MAX_PREFETCHES || theirs >= MAX_PREFETCHES_PER_PEER {
                return;
            }
        }
        let mut from: Vec<ValidatorId> = from.into_iter().filter(|v| *v != self.me).collect();
        from.sort_unstable();
        from.dedup();
        if from.is_empty() && hint != self.me {
            from.push(hint);
        }
        if from.is_empty() {
            return;
        }
        let seed = u64::from_be_bytes([
            digest.0[0],
            digest.0[1],
            digest.0[2],
            digest.0[3],
            digest.0[4],
            digest.0[5],
            digest.0[6],
            digest.0[7],
        ]);
        let start = seed.wrapping_add(u64::from(self.me.0)) % from.len() as u64;
        let mut fetch = BatchFetch {
            slot: slot_of(r),
            from,
            next: usize::try_from(start).unwrap_or(0),
            sent: 0,
            last_sent: self.now,
            prefetch_for,
        };
        let to = fetch.next_signers();
        self.state.fetches.insert(digest, fetch);
        self.send_fetches(digest, to);
        let at = self.now.plus(self.cfg.fetch_retry_ms);
        self.emit(DagEffect::SetTimer(at));
    }

    /// Retry due fetches with the next signers in turn; once every signer
    /// was asked [`MAX_FETCH_ROUNDS`] times a fetch is dropped, and
    /// re-issued only while a committed block still waits for that data.
    pub(super) fn retry_batch_fetches(&mut self) {
        let retry = self.cfg.fetch_retry_ms;
        self.state.fetches.retain(|_, f| {
            (f.sent as usize) < MAX_FETCH_ROUNDS.saturating_mul(f.from.len().max(1))
        });
        self.drain_delivery();
        let now = self.now;
        let due: Vec<Hash32> = self
            .state
            .fetches
            .iter()
            .filter(|(_, f)| now.since(f.last_sent) >= retry)
            .map(|(d, _)| *d)
            .collect();
        for digest in due {
            let Some(f) = self.state.fetches.get_mut(&digest) else {
                continue;
            };
            f.last_sent = now;
            let to = f.next_signers();
            self.send_fetches(digest, to);
        }
        if !self.state.fetches.is_empty() {
            let at = self.now.plus(retry);
            self.emit(DagEffect::SetTimer(at));
        }
    }

    fn send_fetches(&mut self, digest: Hash32, to: Vec<ValidatorId>) {
        for v in to {
            self.emit(DagEffect::Send {
                to: v,
                msg: DagMsg::BatchFetch(digest),
            });
        }
    }
}

impl BatchFetch {
    /// The next signers to ask: [`BATCH_FETCH_FANOUT`] distinct ones (all
    /// of them if fewer), continuing the rotation.
    fn next_signers(&mut self) -> Vec<ValidatorId> {
        let n = self.from.len();
        let k = BATCH_FETCH_FANOUT.min(n);
        let to = (0..k)
            .filter_map(|i| self.from.get((self.next + i) % n).copied())
            .collect();
        self.next = (self.next + k) % n.max(1);
        self.sent = self.sent.saturating_add(k as u32);
        to
    }
}

#[cfg(test)]
pub(super) mod tests {
    //! Driven through [`Availability::handle`] with 7 validators (a
    //! certificate has 5 signers), validator 0 fetching.

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use crate::codec::Encode;
    use crate::crypto::KeyPair;
    use crate::dag::{
        Availability, AvailabilityParams, Batch, BatchCertificate, BatchRef, CommittedBlock,
        DagConfig, DagEffect, DagInput, DagMsg, MAX_PREFETCHES_PER_PEER, SignedBatch,
    };
    use crate::fee_mempool::FeeMempoolConfig;
    use crate::mempool::TxPool;
    use crate::quorum::SignerBitmap;
    use crate::signing::{SignKind, sign_domain};
    use crate::types::{Epoch, Hash32, Height, Millis, NetworkEnvironment, ValidatorId};
    use crate::validator::{EpochSchedule, ValidatorSet};

    pub(in crate::dag) const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;
    const RETRY: u64 = 200;
    /// The acks of a certificate (a quorum of 7).
    const SIGNERS: [u32; 5] = [1, 2, 3, 4, 5];

    pub(in crate::dag) fn keys() -> Vec<KeyPair> {
        (0..7u8)
            .map(|i| KeyPair::from_seed(&[i + 90; 32]))
            .collect()
    }

    pub(in crate::dag) fn layer(keys: &[KeyPair]) -> Availability {
        let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())
            .expect("set");
        let max_tx_bytes = 1024;
        Availability::new(
            ValidatorId(0),
            Arc::new(EpochSchedule::fixed(set)),
            AvailabilityParams {
                env: ENV,
                dag: DagConfig {
                    fetch_retry_ms: RETRY,
                    ..DagConfig::default()
                },
                max_tx_bytes,
                tx_meta: None,
                pool: TxPool::new(None, FeeMempoolConfig::mainnet(), 100, max_tx_bytes),
                verify_cache: 4096,
            },
        )
    }

    fn batch(keys: &[KeyPair], author: u32, round: u64, tx: &str) -> SignedBatch {
        let batch = Batch {
            epoch: Epoch(0),
            author: ValidatorId(author),
            round,
            txs: vec![tx.as_bytes().to_vec()],
        };
        let message = batch.digest().to_bytes();
        let signature = sign_domain(&keys[author as usize], ENV, SignKind::Batch, &message);
        SignedBatch { batch, signature }
    }

    /// A certificate of `r` with real acks of [`SIGNERS`] (`signed`), or
    /// none (a committed block's, whose signatures consensus checked).
    fn cert(keys: &[KeyPair], r: BatchRef, signed: bool) -> BatchCertificate {
        let mut signers = SignerBitmap::new(keys.len());
        let mut signatures = Vec::new();
        for v in SIGNERS {
            signers.set(ValidatorId(v));
            if signed {
                let ack = sign_domain(&keys[v as usize], ENV, SignKind::BatchAck, &r.to_bytes());
                signatures.push(ack);
            }
        }
        BatchCertificate {
            batch: r,
            signers,
            signatures,
        }
    }

    pub(in crate::dag) fn feed(
        dag: &mut Availability,
        now: u64,
        input: DagInput,
    ) -> Vec<DagEffect> {
        dag.handle(Millis(now), Epoch(0), input)
    }

    pub(in crate::dag) fn message(from: u32, msg: DagMsg) -> DagInput {
        DagInput::Message {
            from: ValidatorId(from),
            msg,
        }
    }

    /// Whom `effects` ask for `digest`'s data.
    fn asked(effects: &[DagEffect], digest: Hash32) -> Vec<ValidatorId> {
        effects
            .iter()
            .filter_map(|e| match e {
                DagEffect::Send {
                    to,
                    msg: DagMsg::BatchFetch(d),
                } if *d == digest => Some(*to),
                _ => None,
            })
            .collect()
    }

    fn fetch_requests(effects: &[DagEffect]) -> usize {
        effects
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    DagEffect::Send {
                        msg: DagMsg::BatchFetch(_),
                        ..
                    }
                )
            })
            .count()
    }

    fn signers() -> BTreeSet<ValidatorId> {
        SIGNERS.iter().map(|v| ValidatorId(*v)).collect()
    }

    /// Two distinct signers, not us.
    fn assert_two_signers(to: &[ValidatorId]) {
        let distinct: BTreeSet<ValidatorId> = to.iter().copied().collect();
        assert_eq!((to.len(), distinct.len()), (2, 2), "{to:?}");
        assert!(distinct.is_subset(&signers()), "{to:?}");
    }

    #[test]
    fn a_certificates_batch_is_fetched_from_two_signers_at_once() {
        let keys = keys();
        let mut dag = layer(&keys);
        let r = batch(&keys, 1, 1, "a").batch.reference();
        let effects = feed(
            &mut dag,
            1,
            message(6, DagMsg::BatchCert(cert(&keys, r, true))),
        );
        assert_two_signers(&asked(&effects, r.digest));
    }

    #[test]
    fn a_committed_blocks_missing_batch_is_fetched_from_two_signers_at_once() {
        let keys = keys();
        let mut dag = layer(&keys);
        let r = batch(&keys, 1, 1, "a").batch.reference();
        let block = CommittedBlock {
            height: Height(1),
            id: Hash32::digest(b"block 1"),
            proposer: ValidatorId(6),
            certs: vec![cert(&keys, r, false)],
        };
        let effects = feed(&mut dag, 1, DagInput::Committed(vec![block]));
        assert_two_signers(&asked(&effects, r.digest));
    }

    /// Each retry asks signers not asked yet, until every one was asked;
    /// then the rotation starts over.
    #[test]
    fn retries_rotate_to_the_signers_not_yet_asked() {
        let keys = keys();
        let mut dag = layer(&keys);
        let r = batch(&keys, 1, 1, "a").batch.reference();
        let mut now = 1;
        let mut rounds = vec![asked(
            &feed(
                &mut dag,
                now,
                message(6, DagMsg::BatchCert(cert(&keys, r, true))),
            ),
            r.digest,
        )];
        for _ in 0..3 {
            now += RETRY;
            rounds.push(asked(&feed(&mut dag, now, DagInput::Tick), r.digest));
        }
        let mut seen = BTreeSet::new();
        for to in &rounds[..3] {
            assert!(!to.is_empty(), "{rounds:?}");
            for v in to {
                assert!(seen.insert(*v) || seen.len() == SIGNERS.len(), "{rounds:?}");
            }
        }
        assert_eq!(
            seen,
            signers(),
            "three requests rounds ask all five: {rounds:?}"
        );
        // Five signers, two at a time: the third round asks the last one and
        // starts over with the first.
        assert_two_signers(&rounds[2]);
        assert_two_signers(&rounds[3]);
    }

    /// The data comes back from one signer; the other's answer is the same
    /// batch and is neither stored again nor held against it.
    #[test]
    fn a_second_signers_answer_is_not_held_against_it() {
        let keys = keys();
        let mut dag = layer(&keys);
        let sb = batch(&keys, 1, 1, "a");
        let r = sb.batch.reference();
        let effects = feed(
            &mut dag,
            1,
            message(6, DagMsg::BatchCert(cert(&keys, r, true))),
        );
        let to = asked(&effects, r.digest);
        assert!(!to.is_empty());
        let mut answers = Vec::new();
        // Signers 2 and 3, not the author (1).
        for (i, v) in SIGNERS[1..3].iter().enumerate() {
            answers.push(feed(
                &mut dag,
                2 + i as u64,
                message(*v, DagMsg::Batch(sb.clone())),
            ));
        }
        let persisted = |e: &[DagEffect]| {
            e.iter()
                .filter(|e| matches!(e, DagEffect::PersistBatch(_)))
                .count()
        };
        assert_eq!(persisted(&answers[0]), 1, "{:?}", answers[0]);
        assert_eq!(persisted(&answers[1]), 0, "{:?}", answers[1]);
        for a in &answers {
            assert!(
                !a.iter().any(|e| matches!(e, DagEffect::Rejected { .. })),
                "{a:?}"
            );
        }
        assert_eq!(dag.metrics().coupling_block_mismatch_total, 0);
        assert_eq!(dag.metrics().batches_fetched_total, 1);
        assert_eq!(dag.footprint().fetches, 0);
    }

    /// A fetch of data the layer holds is answered from memory; of any other
    /// digest, handed to the store (which answers only for an archived
    /// committed batch). A flood of fetches for unknown digests costs the
    /// layer nothing it keeps: one `ServeBatch` each, footprint unchanged.
    #[test]
    fn fetches_of_data_not_held_are_handed_to_the_store_and_hold_nothing() {
        let keys = keys();
        let mut dag = layer(&keys);
        let sb = batch(&keys, 1, 1, "a");
        let r = sb.batch.reference();
        feed(&mut dag, 1, message(1, DagMsg::Batch(sb.clone())));
        let held = feed(&mut dag, 2, message(3, DagMsg::BatchFetch(r.digest)));
        assert!(
            held.iter().any(|e| matches!(
                e,
                DagEffect::Send { to, msg: DagMsg::Batch(b) } if *to == ValidatorId(3) && *b == sb
            )),
            "{held:?}"
        );
        assert!(
            !held
                .iter()
                .any(|e| matches!(e, DagEffect::ServeBatch { .. }))
        );
        let before = dag.footprint();
        for i in 0..1_000u32 {
            let digest = Hash32::digest(&i.to_be_bytes());
            let effects = feed(&mut dag, 3, message(4, DagMsg::BatchFetch(digest)));
            assert!(
                matches!(
                    effects.as_slice(),
                    [DagEffect::ServeBatch { to, digest: d }] if *to == ValidatorId(4) && *d == digest
                ),
                "{effects:?}"
            );
        }
        assert_eq!(dag.footprint(), before);
    }

    /// The batches of a proposal's certificates are fetched when the
    /// proposal is seen, not when its block commits.
    #[test]
    fn a_proposals_batches_are_prefetched() {
        let keys = keys();
        let mut dag = layer(&keys);
        let held = batch(&keys, 2, 1, "held");
        let refs = [
            batch(&keys, 1, 1, "a").batch.reference(),
            held.batch.reference(),
        ];
        feed(&mut dag, 1, message(2, DagMsg::Batch(held)));
        let batches = refs
            .iter()
            .map(|r| (*r, signers().into_iter().collect()))
            .collect();
        let effects = feed(
            &mut dag,
            2,
            DagInput::Proposed {
                proposer: ValidatorId(6),
                batches,
            },
        );
        assert_two_signers(&asked(&effects, refs[0].digest));
        assert!(asked(&effects, refs[1].digest).is_empty(), "held already");
        assert_eq!(dag.footprint().max_prefetches_per_peer, 1);
    }

    /// A peer flooding us with certificates, or a leader with proposals,
    /// starts at most `MAX_PREFETCHES_PER_PEER` fetches, and each retry
    /// round sends at most two requests per fetch.
    #[test]
    fn a_flood_of_certificates_or_proposals_keeps_fetches_bounded() {
        let keys = keys();
        let mut dag = layer(&keys);
        let mut now = 1;
        let mut sent = 0;
        for author in 1..=5u32 {
            for round in 1..=8 {
                let r = batch(&keys, author, round, "c").batch.reference();
                now += 1;
                let msg = DagMsg::BatchCert(cert(&keys, r, true));
                sent += fetch_requests(&feed(&mut dag, now, message(6, msg)));
            }
        }
        assert_eq!(dag.footprint().fetches, MAX_PREFETCHES_PER_PEER);
        assert_eq!(sent, 2 * MAX_PREFETCHES_PER_PEER);
        // A leader's proposals: 10 × 64 batches, rounds the window allows.
        let mut by_leader = 0;
        for p in 0..10u64 {
            let batches = (0..64u64)
                .map(|i| {
                    let r = BatchRef {
                        epoch: Epoch(0),
                        author: ValidatorId(3),
                        round: 1 + (p * 64 + i) % 64,
                        digest: Hash32::digest(&(p * 64 + i).to_be_bytes()),
                    };
                    (r, SIGNERS.iter().map(|v| ValidatorId(*v)).collect())
                })
                .collect();
            now += 1;
            let input = DagInput::Proposed {
                proposer: ValidatorId(4),
                batches,
            };
            by_leader += fetch_requests(&feed(&mut dag, now, input));
        }
        assert_eq!(by_leader, 2 * MAX_PREFETCHES_PER_PEER);
        assert_eq!(dag.footprint().fetches, 2 * MAX_PREFETCHES_PER_PEER);
        assert!(dag.footprint().exceeds(&dag.footprint_limits()).is_none());
        now += RETRY;
        let retried = fetch_requests(&feed(&mut dag, now, DagInput::Tick));
        assert_eq!(retried, 2 * dag.footprint().fetches);
    }

    /// After a restart, a committed block's missing batch is fetched from
    /// two signers, and only the batch its certificate's digest names is
    /// taken: another batch of the author for the same slot, or the right
    /// batch with a forged signature, is not stored or delivered.
    #[test]
    fn after_a_restart_only_the_certified_batch_is_taken() {
        let keys = keys();
        let mut dag = layer(&keys);
        let sb = batch(&keys, 1, 1, "certified");
        let r = sb.batch.reference();
        let block = CommittedBlock {
            height: Height(1),
            id: Hash32::digest(b"block 1"),
            proposer: ValidatorId(6),
            certs: vec![cert(&keys, r, false)],
        };
        dag.restore(Vec::new(), vec![block], Height(0));
        let effects = feed(&mut dag, 1, DagInput::Tick);
        let to = asked(&effects, r.digest);
        assert_two_signers(&to);
        let other = batch(&keys, 1, 1, "another");
        let mut forged = sb.clone();
        forged.signature = other.signature.clone();
        for bad in [other, forged] {
            let effects = feed(&mut dag, 2, message(to[0].0, DagMsg::Batch(bad)));
            assert!(
                !effects
                    .iter()
                    .any(|e| matches!(e, DagEffect::PersistBatch(_) | DagEffect::Deliver { .. })),
                "{effects:?}"
            );
        }
        let effects = feed(&mut dag, 3, message(to[1].0, DagMsg::Batch(sb)));
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, DagEffect::Deliver { height, .. } if *height == Height(1))),
            "{effects:?}"
        );
    }
}
