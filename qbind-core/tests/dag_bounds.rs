//! The DAG availability layer's garbage collection and bounds (issue #17
//! findings 4 and 6; docs/dag.md "Bounds and pruning"), driven directly
//! through `Availability::handle` with a 4-validator schedule: committed and
//! delivered batches leave memory and the store, older epochs are dropped,
//! our own highest batch survives for the restart, a hostile author cannot
//! grow any structure past its bound, and a long run stays flat.

use std::collections::BTreeMap;
use std::sync::Arc;

use qbind_core::codec::Encode;
use qbind_core::consensus::SignerBitmap;
use qbind_core::crypto::{KeyPair, Signature};
use qbind_core::dag::{
    Availability, AvailabilityParams, Batch, BatchCertificate, BatchRef, CommittedBlock, DagConfig,
    DagEffect, DagError, DagInput, DagMsg, DagSignPurpose, Footprint, MAX_OWN_AWAITING_ACKS,
    MAX_PENDING_BYTES_PER_AUTHOR, MAX_PREFETCHES, MAX_PREFETCHES_PER_PEER, SignedBatch,
};
use qbind_core::fee_mempool::{FeeMempoolConfig, TxMeta, TxMetaFn};
use qbind_core::mempool::TxPool;
use qbind_core::signing::{SignKind, sign_domain};
use qbind_core::types::{
    AccountId, Epoch, Hash32, Height, Millis, NetworkEnvironment, ValidatorId,
};
use qbind_core::validator::{EpochSchedule, ValidatorSet};

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;
const W: u64 = 8;
const RETAIN: u64 = 4;

fn keys() -> Vec<KeyPair> {
    keys_of(4)
}

fn keys_of(n: u8) -> Vec<KeyPair> {
    (0..n).map(|i| KeyPair::from_seed(&[i + 40; 32])).collect()
}

fn dag_config() -> DagConfig {
    DagConfig {
        max_rounds_ahead: W,
        retain_delivered_blocks: RETAIN,
        ..DagConfig::default()
    }
}

fn layer(keys: &[KeyPair], me: u32, cfg: DagConfig) -> Availability {
    layer_with(keys, me, cfg, None)
}

fn layer_with(
    keys: &[KeyPair],
    me: u32,
    cfg: DagConfig,
    tx_meta: Option<TxMetaFn>,
) -> Availability {
    let set =
        ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect()).expect("set");
    let max_tx_bytes = 2 * 1024 * 1024;
    Availability::new(
        ValidatorId(me),
        Arc::new(EpochSchedule::fixed(set)),
        AvailabilityParams {
            env: ENV,
            dag: cfg,
            max_tx_bytes,
            tx_meta,
            pool: TxPool::new(None, FeeMempoolConfig::mainnet(), 10_000, max_tx_bytes),
            verify_cache: 4096,
        },
    )
}

fn signed(keys: &[KeyPair], epoch: u64, author: u32, round: u64, txs: Vec<Vec<u8>>) -> SignedBatch {
    let batch = Batch {
        epoch: Epoch(epoch),
        author: ValidatorId(author),
        round,
        txs,
    };
    let signature = sign_domain(
        &keys[author as usize],
        ENV,
        SignKind::Batch,
        &batch.digest().to_bytes(),
    );
    SignedBatch { batch, signature }
}

fn small(keys: &[KeyPair], epoch: u64, author: u32, round: u64) -> SignedBatch {
    let tx = format!("tx-{epoch}-{author}-{round}").into_bytes();
    signed(keys, epoch, author, round, vec![tx])
}

/// A certificate with real acks of validators 1, 2 and 3.
fn cert(keys: &[KeyPair], r: BatchRef) -> BatchCertificate {
    let n = keys.len() as u32;
    let mut signers = SignerBitmap::new(keys.len());
    let mut signatures = Vec::new();
    for v in 1..n {
        signers.set(ValidatorId(v));
        signatures.push(sign_domain(
            &keys[v as usize],
            ENV,
            SignKind::BatchAck,
            &r.to_bytes(),
        ));
    }
    BatchCertificate {
        batch: r,
        signers,
        signatures,
    }
}

/// A certificate as a committed block carries it (consensus verified it;
/// the DAG layer does not look at the signatures of committed blocks).
fn committed_cert(r: BatchRef) -> BatchCertificate {
    let mut signers = SignerBitmap::new(4);
    for v in 1..4u32 {
        signers.set(ValidatorId(v));
    }
    BatchCertificate {
        batch: r,
        signers,
        signatures: Vec::new(),
    }
}

fn block(height: u64, refs: &[BatchRef]) -> CommittedBlock {
    CommittedBlock {
        height: Height(height),
        id: Hash32::digest(&height.to_be_bytes()),
        proposer: ValidatorId(1),
        certs: refs.iter().map(|r| committed_cert(*r)).collect(),
    }
}

/// A stand-in for the replica's store: what `PersistBatch` wrote and
/// `ForgetBatches` did not delete, and what `ArchiveBatches` kept.
#[derive(Default)]
struct Store {
    batches: BTreeMap<Hash32, usize>,
    archived: BTreeMap<Hash32, usize>,
}

impl Store {
    fn apply(&mut self, effects: &[DagEffect]) {
        for e in effects {
            match e {
                DagEffect::PersistBatch(sb) => {
                    self.batches.insert(sb.batch.digest(), sb.to_bytes().len());
                }
                DagEffect::ForgetBatches(ids) => {
                    for id in ids {
                        self.batches.remove(id);
                    }
                }
                DagEffect::ArchiveBatches(batches) => {
                    for a in batches {
                        assert_eq!(a.digest, a.batch.batch.digest());
                        self.archived.insert(a.digest, a.batch.to_bytes().len());
                    }
                }
                _ => {}
            }
        }
    }

    fn bytes(&self) -> usize {
        self.batches.values().sum()
    }
}

struct Driver {
    dag: Availability,
    store: Store,
    now: u64,
    epoch: Epoch,
    delivered: Vec<(Height, Vec<Vec<u8>>)>,
}

impl Driver {
    fn new(keys: &[KeyPair], me: u32, cfg: DagConfig) -> Self {
        Driver {
            dag: layer(keys, me, cfg),
            store: Store::default(),
            now: 0,
            epoch: Epoch(0),
            delivered: Vec::new(),
        }
    }

    fn feed(&mut self, input: DagInput) -> Vec<DagEffect> {
        self.now += 1;
        let effects = self.dag.handle(Millis(self.now), self.epoch, input);
        self.store.apply(&effects);
        for e in &effects {
            if let DagEffect::Deliver { height, txs, .. } = e {
                self.delivered.push((*height, txs.clone()));
            }
        }
        let fp = self.dag.footprint();
        if let Some(field) = fp.exceeds(&self.dag.footprint_limits()) {
            panic!("{field} over its bound: {fp:?}");
        }
        effects
    }

    fn msg(&mut self, from: u32, msg: DagMsg) -> Vec<DagEffect> {
        self.feed(DagInput::Message {
            from: ValidatorId(from),
            msg,
        })
    }
}

fn rejected(effects: &[DagEffect]) -> Vec<DagError> {
    effects
        .iter()
        .filter_map(|e| match e {
            DagEffect::Rejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

fn forgotten(effects: &[DagEffect]) -> Vec<Hash32> {
    effects
        .iter()
        .filter_map(|e| match e {
            DagEffect::ForgetBatches(ids) => Some(ids.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn delivered_batches_leave_memory_and_store_after_the_margin() {
    let keys = keys();
    let mut d = Driver::new(&keys, 0, dag_config());
    let mut refs = Vec::new();
    for h in 1..=20u64 {
        let author = 1 + (h % 3) as u32;
        let sb = small(&keys, 0, author, h.div_ceil(3));
        let r = sb.batch.reference();
        assert!(rejected(&d.msg(author, DagMsg::Batch(sb))).is_empty());
        refs.push(r);
        d.feed(DagInput::Committed(vec![block(h, &[r])]));
    }
    assert_eq!(d.delivered.len(), 20);
    let fp = d.dag.footprint();
    // Heights 17..=20 are within the margin, 16 is the one being pruned
    // next: nothing older is held, in memory or in the store.
    assert!(fp.batches <= RETAIN as usize + 1, "{fp:?}");
    assert!(d.store.batches.len() <= RETAIN as usize + 1);
    assert!(!d.store.batches.contains_key(&refs[0].digest));
    assert!(d.store.batches.contains_key(&refs[19].digest));
    assert_eq!(d.dag.metrics().batches_pruned_total, 20 - fp.batches as u64);
    // Every delivered block's data left the working store for the archive
    // (peers catching up from further back fetch it there), none is lost.
    for r in &refs {
        assert!(
            d.store.batches.contains_key(&r.digest) != d.store.archived.contains_key(&r.digest),
            "{r:?}"
        );
    }
    assert_eq!(d.store.archived.len(), 20 - d.store.batches.len());
}

#[test]
fn a_block_waiting_for_data_keeps_what_it_needs_until_delivered() {
    let keys = keys();
    let mut d = Driver::new(&keys, 0, dag_config());
    // Block 1 orders a batch we never received; blocks 2..=12 batches we
    // hold. Nothing can be delivered (height order) and nothing pruned.
    let missing = small(&keys, 0, 1, 1);
    let mut held = Vec::new();
    d.feed(DagInput::Committed(vec![block(
        1,
        &[missing.batch.reference()],
    )]));
    for h in 2..=12u64 {
        let sb = small(&keys, 0, 2, h - 1);
        held.push(sb.batch.reference());
        d.msg(2, DagMsg::Batch(sb.clone()));
        d.feed(DagInput::Committed(vec![block(h, &[sb.batch.reference()])]));
    }
    assert!(d.delivered.is_empty());
    assert_eq!(d.dag.footprint().batches, 11);
    // The fetched data arrives (from a signer): all twelve blocks are
    // delivered in order with their transactions, then the old ones pruned.
    let effects = d.msg(3, DagMsg::Batch(missing));
    assert!(rejected(&effects).is_empty(), "{effects:?}");
    let heights: Vec<u64> = d.delivered.iter().map(|(h, _)| h.0).collect();
    assert_eq!(heights, (1..=12).collect::<Vec<_>>());
    assert_eq!(d.delivered[0].1, vec![b"tx-0-1-1".to_vec()]);
    assert!(!forgotten(&effects).is_empty());
    assert!(d.dag.footprint().batches <= RETAIN as usize + 1);
}

#[test]
fn batches_of_epochs_before_the_previous_one_are_dropped() {
    let keys = keys();
    let mut d = Driver::new(&keys, 0, dag_config());
    let old = small(&keys, 0, 1, 1);
    d.msg(1, DagMsg::Batch(old.clone()));
    d.epoch = Epoch(1);
    let prev = small(&keys, 1, 2, 1);
    d.msg(2, DagMsg::Batch(prev.clone()));
    assert_eq!(d.dag.footprint().batches, 2);
    // Epoch 2: epoch 0 is gone, epoch 1 (the previous) is kept.
    d.epoch = Epoch(2);
    let effects = d.feed(DagInput::Tick);
    assert_eq!(forgotten(&effects), vec![old.batch.digest()]);
    // Never ordered: deleted, not archived.
    assert!(d.store.archived.is_empty());
    assert_eq!(d.dag.footprint().batches, 1);
    assert!(d.store.batches.contains_key(&prev.batch.digest()));
    d.epoch = Epoch(3);
    d.feed(DagInput::Tick);
    assert_eq!(d.dag.footprint().batches, 0);
    assert!(d.store.batches.is_empty());
}

/// Cut one batch of ours and sign it with our key; returns its reference.
fn author_one(d: &mut Driver, keys: &[KeyPair], tx: Vec<u8>) -> Option<BatchRef> {
    d.now += 1_000;
    let effects = d.feed(DagInput::Submit(tx));
    let batch = effects.iter().find_map(|e| match e {
        DagEffect::Sign(job) => match &job.purpose {
            DagSignPurpose::Batch { batch } => Some(batch.clone()),
            DagSignPurpose::BatchAck { .. } => None,
        },
        _ => None,
    })?;
    let r = batch.reference();
    let signature: Signature =
        sign_domain(&keys[0], ENV, SignKind::Batch, &batch.digest().to_bytes());
    d.feed(DagInput::Signed {
        purpose: DagSignPurpose::Batch { batch },
        signature,
    });
    Some(r)
}

#[test]
fn our_highest_batch_survives_pruning_and_a_restart_resumes_after_it() {
    let keys = keys();
    let mut d = Driver::new(&keys, 0, dag_config());
    let mut ours = Vec::new();
    for h in 1..=6u64 {
        let r = author_one(&mut d, &keys, format!("own-{h}").into_bytes()).expect("authored");
        d.feed(DagInput::Committed(vec![block(h, &[r])]));
        ours.push(r);
    }
    // Then others' blocks, far past the retention margin.
    for h in 7..=30u64 {
        let sb = small(&keys, 0, 1, h);
        let r = sb.batch.reference();
        d.msg(1, DagMsg::Batch(sb));
        d.feed(DagInput::Committed(vec![block(h, &[r])]));
    }
    assert_eq!(d.delivered.len(), 30);
    // Our rounds 1..=5 are pruned, round 6 (our highest) is kept.
    for r in &ours[..5] {
        assert!(!d.store.batches.contains_key(&r.digest));
    }
    assert!(d.store.batches.contains_key(&ours[5].digest));
    // A restart loads what the store holds (its committed window lost) and
    // must author round 7 next, never a round it used.
    let stored: Vec<SignedBatch> = (1..=6u64)
        .map(|h| signed(&keys, 0, 0, h, vec![format!("own-{h}").into_bytes()]))
        .filter(|sb| d.store.batches.contains_key(&sb.batch.digest()))
        .collect();
    assert_eq!(stored.len(), 1);
    let mut again = Driver::new(&keys, 0, dag_config());
    again.dag.restore(stored, Vec::new(), Height(30));
    let next = author_one(&mut again, &keys, b"after-restart".to_vec()).expect("authored");
    assert_eq!(next.round, 7);
}

#[test]
fn an_author_cannot_hold_more_uncommitted_bytes_than_its_bound() {
    let keys = keys();
    let mut d = Driver::new(
        &keys,
        0,
        DagConfig {
            max_rounds_ahead: 64,
            ..dag_config()
        },
    );
    // 64 slots × 1 MiB would be 64 MiB; the bound is 16 MiB.
    let mut refused = 0;
    for round in 1..=64u64 {
        let sb = signed(&keys, 0, 3, round, vec![vec![round as u8; 1024 * 1024]]);
        let errors = rejected(&d.msg(3, DagMsg::Batch(sb)));
        refused += usize::from(!errors.is_empty());
    }
    let fp = d.dag.footprint();
    assert!(
        fp.max_pending_bytes_per_author <= MAX_PENDING_BYTES_PER_AUTHOR,
        "{fp:?}"
    );
    assert_eq!(fp.batches, MAX_PENDING_BYTES_PER_AUTHOR / (1024 * 1024));
    assert_eq!(refused, 64 - fp.batches);
    assert!(d.store.bytes() <= MAX_PENDING_BYTES_PER_AUTHOR + 64 * 1024);
}

/// Issue #21: transactions our pool accepted and cut into a batch that no
/// block ordered before the batch's epoch ended are lost; they are recorded
/// as dropped (the API's `dropped`/`batch_expired`), not left unknown.
#[test]
fn our_batches_given_up_with_their_epoch_record_their_transactions_as_dropped() {
    use qbind_core::pool_drops::PoolDropReason;
    let keys = keys();
    let mut d = Driver::new(&keys, 0, dag_config());
    let tx = b"lost-with-its-epoch".to_vec();
    let r = author_one(&mut d, &keys, tx.clone()).expect("authored");
    assert!(d.dag.take_pool_drops().is_empty());
    d.epoch = Epoch(1);
    d.feed(DagInput::Tick);
    assert_eq!(
        d.dag.take_pool_drops(),
        vec![(
            Hash32::digest(&tx),
            PoolDropReason::BatchExpired { batch: r.digest }
        )]
    );
}

#[test]
fn own_batches_awaiting_acks_are_bounded() {
    let keys = keys();
    let mut d = Driver::new(
        &keys,
        0,
        DagConfig {
            max_rounds_ahead: 1_000,
            ..dag_config()
        },
    );
    // Nobody acknowledges: 200 batches of ours, never certified.
    for i in 0..200u32 {
        author_one(&mut d, &keys, format!("lonely-{i}").into_bytes()).expect("authored");
    }
    let fp = d.dag.footprint();
    assert_eq!(fp.own_awaiting, MAX_OWN_AWAITING_ACKS, "{fp:?}");
}

#[test]
fn an_author_stops_cutting_batches_beyond_its_window() {
    let keys = keys();
    let mut d = Driver::new(&keys, 0, dag_config());
    let mut made = 0;
    for i in 0..(3 * W) {
        if author_one(&mut d, &keys, format!("ahead-{i}").into_bytes()).is_some() {
            made += 1;
        }
    }
    // Every validator refuses rounds beyond W past the committed one: the
    // transactions stay in the pool instead.
    assert_eq!(made, W);
    assert!(d.dag.pool_len() > 0);
}

#[test]
fn stale_certificates_are_not_proposed_and_refused_in_proposals() {
    let keys = keys();
    let mut d = Driver::new(&keys, 0, dag_config());
    let low = small(&keys, 0, 1, 2);
    let low_cert = cert(&keys, low.batch.reference());
    assert!(rejected(&d.msg(1, DagMsg::BatchCert(low_cert.clone()))).is_empty());
    assert_eq!(d.dag.payload(Epoch(0), &[]).len(), 1);
    // Author 1's round 2 + W is committed: round 2 can never be ordered.
    let high = small(&keys, 0, 1, 2 + W).batch.reference();
    d.feed(DagInput::Committed(vec![block(1, &[high])]));
    assert!(d.dag.payload(Epoch(0), &[]).is_empty());
    assert_eq!(
        d.dag.validate(Epoch(0), &[low_cert], &[]),
        Err(DagError::InvalidPayload { why: "stale_round" })
    );
    // An uncommitted ancestor ordering a high round makes it stale too.
    let mid = small(&keys, 0, 2, 1);
    let mid_cert = cert(&keys, mid.batch.reference());
    let ancestor = small(&keys, 0, 2, 1 + W).batch.reference();
    assert_eq!(
        d.dag
            .validate(Epoch(0), std::slice::from_ref(&mid_cert), &[ancestor]),
        Err(DagError::InvalidPayload { why: "stale_round" })
    );
    assert_eq!(d.dag.validate(Epoch(0), &[mid_cert], &[]), Ok(()));
}

/// Test transactions for the gas bound: byte 0 × 1,000 is the declared
/// gas, byte 1 the sender.
fn gas_meta(bytes: &[u8]) -> Option<TxMeta> {
    let [gas, sender, ..] = bytes else {
        return None;
    };
    Some(TxMeta {
        sender: AccountId([*sender; 32]),
        nonce: 0,
        max_fee_per_gas: 1,
        effective_fee: 1,
        gas_limit: u64::from(*gas) * 1_000,
        v0_payload: false,
        replace_rank: None,
    })
}

/// Issue #21: a DAG block of several full batches (500 transfers of
/// ~37,000 gas each) passed the 30 M block gas limit, and execution refused
/// the excess. A payload now stops at the gas limit; a batch whose data is
/// missing (gas unknown) ends it; the first batch always goes.
#[test]
fn a_payload_keeps_within_the_block_gas_limit() {
    let keys = keys();
    let mut d = Driver {
        dag: layer_with(&keys, 0, dag_config(), Some(gas_meta)),
        store: Store::default(),
        now: 0,
        epoch: Epoch(0),
        delivered: Vec::new(),
    };
    for author in 1..=3u32 {
        let a = author as u8;
        let sb = signed(&keys, 0, author, 1, vec![vec![10, a, 0], vec![10, a, 1]]);
        d.msg(author, DagMsg::Batch(sb.clone()));
        let c = cert(&keys, sb.batch.reference());
        assert!(rejected(&d.msg(author, DagMsg::BatchCert(c))).is_empty());
    }
    let within = |d: &Driver, gas| d.dag.payload_within(Epoch(0), &[], usize::MAX, gas).len();
    assert_eq!(within(&d, u64::MAX), 3);
    assert_eq!(within(&d, 60_000), 3);
    assert_eq!(within(&d, 59_999), 2);
    assert_eq!(within(&d, 40_000), 2);
    assert_eq!(within(&d, 1), 1, "the first batch goes whatever its gas");
    // A certified batch whose data we lack: its gas is unknown.
    // In canonical order (epoch, author, round) it comes third of four.
    let blind = small(&keys, 0, 2, 2);
    let c = cert(&keys, blind.batch.reference());
    assert!(rejected(&d.msg(2, DagMsg::BatchCert(c))).is_empty());
    assert_eq!(
        within(&d, u64::MAX),
        2,
        "the payload ends at the blind batch"
    );
}

/// Everything a Byzantine validator (3, whose key we hold) can send: its
/// own batches for every slot far and near, in past and future epochs,
/// equivocations, valid certificates of other authors' far rounds and of
/// past epochs, forged certificates, stray acks and fetches.
fn hostile_messages(keys: &[KeyPair]) -> Vec<(u32, DagMsg)> {
    let mut out = Vec::new();
    for round in 1..=3 * W {
        out.push((3, DagMsg::Batch(small(keys, 0, 3, round))));
        out.push((
            3,
            DagMsg::Batch(signed(keys, 0, 3, round, vec![b"twin".to_vec()])),
        ));
    }
    for (epoch, round) in [(1, 1), (7, 1), (0, 1_000), (0, u64::MAX), (0, 0)] {
        out.push((3, DagMsg::Batch(small(keys, epoch, 3, round))));
    }
    // Relayed batches of others (not asked for).
    out.push((3, DagMsg::Batch(small(keys, 0, 1, 1))));
    // Valid certificates for slots near and far of every author, in this
    // epoch and others.
    for author in 1..4u32 {
        for round in (1..=1_000u64).step_by(5) {
            let r = small(keys, 0, author, round).batch.reference();
            out.push((3, DagMsg::BatchCert(cert(keys, r))));
        }
        for epoch in [1u64, 5] {
            let r = small(keys, epoch, author, 1).batch.reference();
            out.push((3, DagMsg::BatchCert(cert(keys, r))));
        }
    }
    // A forged certificate (signatures of another slot).
    let real = cert(keys, small(keys, 0, 2, 1).batch.reference());
    let mut forged = real;
    forged.batch.round = 2;
    out.push((3, DagMsg::BatchCert(forged)));
    // Acks for batches of ours that do not exist, fetches of anything.
    let ack_ref = small(keys, 0, 0, 1).batch.reference();
    out.push((
        3,
        DagMsg::BatchAck(qbind_core::dag::BatchAck {
            batch: ack_ref,
            acker: ValidatorId(3),
            signature: sign_domain(&keys[3], ENV, SignKind::BatchAck, &ack_ref.to_bytes()),
        }),
    ));
    out.push((3, DagMsg::BatchFetch(Hash32::digest(b"nothing"))));
    out
}

#[test]
fn a_hostile_peer_sending_100k_messages_stays_within_every_bound() {
    let keys = keys();
    let mut d = Driver::new(&keys, 0, dag_config());
    let msgs = hostile_messages(&keys);
    let mut max = Footprint::default();
    let mut sent = 0usize;
    'flood: loop {
        for (from, msg) in &msgs {
            for sender in [*from, 1, 2] {
                d.msg(sender, msg.clone());
                sent += 1;
                let fp = d.dag.footprint();
                max.batches = max.batches.max(fp.batches);
                max.certified = max.certified.max(fp.certified);
                max.fetches = max.fetches.max(fp.fetches);
                max.max_prefetches_per_peer =
                    max.max_prefetches_per_peer.max(fp.max_prefetches_per_peer);
                max.slots = max.slots.max(fp.slots);
                if sent >= 100_000 {
                    break 'flood;
                }
            }
            if sent % 5_000 < 3 {
                d.feed(DagInput::Tick);
            }
        }
    }
    // Numbers, not just "within the limits": 4 validators, W = 8.
    // Author 3's slots 1..=W, plus certified prefetched data of others
    // within their windows.
    assert!(max.batches <= 4 * 3 * W as usize + 1, "{max:?}");
    assert!(max.certified <= 4 * 2 * W as usize, "{max:?}");
    assert!(max.fetches <= MAX_PREFETCHES + 1, "{max:?}");
    assert!(
        max.max_prefetches_per_peer <= MAX_PREFETCHES_PER_PEER,
        "{max:?}"
    );
    assert!(max.slots <= 4 * 3 * W as usize + 1, "{max:?}");
    assert!(d.store.batches.len() <= 4 * 3 * W as usize + 1);
}

#[test]
fn prefetches_are_bounded_per_peer_and_in_total() {
    // Ten validators, a wide window: every peer relays valid certificates
    // of everyone's in-window slots whose data we do not have.
    let keys = keys_of(10);
    let mut d = Driver::new(
        &keys,
        0,
        DagConfig {
            max_rounds_ahead: 64,
            ..dag_config()
        },
    );
    let mut round = 0;
    for peer in 1..10u32 {
        for _ in 0..40 {
            round += 1;
            let author = 1 + (round % 9) as u32;
            let r = small(&keys, 0, author, 1 + round / 9).batch.reference();
            d.msg(peer, DagMsg::BatchCert(cert(&keys, r)));
        }
        let fp = d.dag.footprint();
        assert!(
            fp.max_prefetches_per_peer <= MAX_PREFETCHES_PER_PEER,
            "{fp:?}"
        );
    }
    let fp = d.dag.footprint();
    assert_eq!(fp.fetches, MAX_PREFETCHES, "{fp:?}");
    assert_eq!(fp.max_prefetches_per_peer, MAX_PREFETCHES_PER_PEER);
    // Every certificate is still a proposal candidate.
    assert_eq!(fp.certified, 360);
}

/// Blocks of one batch each, by rotating authors, committed and delivered;
/// returns the footprint and stored bytes after warm-up and at the end.
fn long_run(blocks: u64) -> ((Footprint, usize, usize), (Footprint, usize, usize)) {
    let keys = keys();
    let mut d = Driver::new(&keys, 0, dag_config());
    let mut rounds = [0u64; 4];
    let mut warm = None;
    for h in 1..=blocks {
        let author = 1 + (h % 3) as u32;
        rounds[author as usize] += 1;
        let sb = small(&keys, 0, author, rounds[author as usize]);
        let r = sb.batch.reference();
        d.msg(author, DagMsg::Batch(sb));
        // Certified and known before it is ordered, as in a real network.
        d.feed(DagInput::Committed(vec![block(h, &[r])]));
        if h == 1_000 {
            warm = Some((d.dag.footprint(), d.store.batches.len(), d.store.bytes()));
        }
    }
    assert_eq!(d.delivered.len() as u64, blocks);
    let end = (d.dag.footprint(), d.store.batches.len(), d.store.bytes());
    (warm.expect("warm-up reached"), end)
}

fn assert_flat(blocks: u64) {
    let (warm, end) = long_run(blocks);
    assert_eq!(warm.0.batches, end.0.batches, "{warm:?} {end:?}");
    assert_eq!(warm.0.slots, end.0.slots);
    assert_eq!(warm.0.committed_slots, end.0.committed_slots);
    assert_eq!(warm.0.retained_blocks, end.0.retained_blocks);
    assert_eq!(warm.1, end.1);
    // Transaction bytes differ by the length of the round's digits only.
    assert!(end.2 <= warm.2 + warm.1 * 8, "{warm:?} {end:?}");
    assert!(end.0.batches <= RETAIN as usize + 2);
}

#[test]
fn long_run_of_10k_blocks_keeps_memory_and_store_flat() {
    assert_flat(10_000);
}

#[test]
#[ignore = "slow: 100,000 blocks (run with --ignored)"]
fn long_run_of_100k_blocks_keeps_memory_and_store_flat_slow() {
    assert_flat(100_000);
}
