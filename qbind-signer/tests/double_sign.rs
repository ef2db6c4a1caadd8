//! Regression tests of issue #22 findings 1–3: the double-sign guard decodes
//! what it signs (never trusting a claimed view), keeps DAG batch and ack
//! slots durably, and does not fail open when its record disappears.

use std::sync::Arc;

use qbind_core::crypto::KeyPair;
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::{Hash32, NetworkEnvironment, ValidatorId, View};
use qbind_signer::guard::RECORD_FILE;
use qbind_signer::slot::requests::{batch, batch_ack, proposal, timeout, vote};
use qbind_signer::{
    DoubleSignGuard, DoubleSignRecord, GuardedSigner, LoopbackSigner, SignerMetrics,
};

const ENV: NetworkEnvironment = NetworkEnvironment::Testnet;
const ME: ValidatorId = ValidatorId(1);

fn h(tag: &[u8]) -> Hash32 {
    Hash32::digest(tag)
}

fn signer(dir: &std::path::Path) -> (GuardedSigner, Arc<SignerMetrics>) {
    let guard = Arc::new(DoubleSignGuard::init(dir, ME, ENV).unwrap());
    let metrics = SignerMetrics::shared();
    let inner = LoopbackSigner::new(ME, ENV, KeyPair::from_seed(&[1; 32])).unwrap();
    (
        GuardedSigner::new(Box::new(inner), guard, Arc::clone(&metrics)),
        metrics,
    )
}

fn sign(s: &GuardedSigner, r: &SignRequest) -> Result<(), SignerError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(s.sign(r)).map(|_| ())
}

fn claiming(mut r: SignRequest, view: u64) -> SignRequest {
    r.view = Some(View(view));
    r
}

// ------------------------------------------------------------ finding 1

#[test]
fn a_second_vote_for_a_view_is_refused_whatever_view_it_claims() {
    let dir = tempfile::tempdir().unwrap();
    let (s, m) = signer(dir.path());
    sign(&s, &vote(5, h(b"A"))).unwrap();
    // The reproduced attack: the same real view 5, claimed as view 6.
    assert!(sign(&s, &claiming(vote(5, h(b"B")), 6)).is_err());
    assert_eq!(m.request_mismatches(), 1);
    // And a lower claimed view cannot hide a higher real one either.
    assert!(sign(&s, &claiming(vote(9, h(b"C")), 5)).is_err());
    assert_eq!(m.request_mismatches(), 2);
    // The honest next vote still goes through.
    sign(&s, &vote(6, h(b"B"))).unwrap();
}

#[test]
fn a_timeout_signs_the_view_it_carries() {
    let dir = tempfile::tempdir().unwrap();
    let (s, m) = signer(dir.path());
    sign(&s, &timeout(5, 3)).unwrap();
    assert!(sign(&s, &claiming(timeout(5, 4), 6)).is_err());
    assert_eq!(m.request_mismatches(), 1);
}

#[test]
fn a_proposal_view_comes_from_its_header_not_from_the_claim() {
    let dir = tempfile::tempdir().unwrap();
    let (s, m) = signer(dir.path());
    sign(&s, &proposal(7, ME, h(b"P1"))).unwrap();
    // A second block for view 7 claimed as view 8.
    assert!(sign(&s, &claiming(proposal(7, ME, h(b"P2")), 8)).is_err());
    // A block id with a header that is not its preimage.
    let mut forged = proposal(8, ME, h(b"P3"));
    forged.message = proposal(7, ME, h(b"P4")).message;
    assert!(sign(&s, &forged).is_err());
    // A bare block id without its header.
    let mut bare = proposal(9, ME, h(b"P5"));
    bare.digest_preimage.clear();
    assert!(sign(&s, &bare).is_err());
    assert_eq!(m.request_mismatches(), 3);
    sign(&s, &proposal(8, ME, h(b"P2"))).unwrap();
}

// ------------------------------------------------------------ finding 2

#[test]
fn a_batch_slot_is_signed_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _) = signer(dir.path());
        sign(&s, &batch(ME, 1, 3, vec![b"tx1".to_vec()])).unwrap();
    }
    let (s, _) = signer(dir.path());
    // Another batch for (epoch 1, round 3) after a restart: refused.
    assert!(sign(&s, &batch(ME, 1, 3, vec![b"tx2".to_vec()])).is_err());
    // So is a batch for an earlier slot (the engine restarts its rounds at 1).
    assert!(sign(&s, &batch(ME, 1, 1, vec![b"tx2".to_vec()])).is_err());
    // The same batch again (a retransmission) and the next slot are fine.
    sign(&s, &batch(ME, 1, 3, vec![b"tx1".to_vec()])).unwrap();
    sign(&s, &batch(ME, 1, 4, vec![b"tx2".to_vec()])).unwrap();
    sign(&s, &batch(ME, 2, 1, vec![b"tx3".to_vec()])).unwrap();
}

#[test]
fn conflicting_acks_for_one_slot_are_refused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let author = ValidatorId(4);
    {
        let (s, _) = signer(dir.path());
        sign(&s, &batch_ack(author, 1, 3, h(b"D1"))).unwrap();
    }
    let (s, _) = signer(dir.path());
    assert!(sign(&s, &batch_ack(author, 1, 3, h(b"D2"))).is_err());
    // Re-acking the same digest, another author's slot, and an earlier
    // round that arrived late are all fine.
    sign(&s, &batch_ack(author, 1, 3, h(b"D1"))).unwrap();
    sign(&s, &batch_ack(ValidatorId(5), 1, 3, h(b"D2"))).unwrap();
    sign(&s, &batch_ack(author, 1, 2, h(b"D3"))).unwrap();
    assert!(sign(&s, &batch_ack(author, 1, 2, h(b"D4"))).is_err());
}

// ------------------------------------------------------------ finding 3

#[test]
fn a_missing_record_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    assert!(DoubleSignGuard::open(dir.path(), ME, ENV).is_err());
    // The explicit initialisation creates it; from then on open works.
    drop(DoubleSignGuard::init(dir.path(), ME, ENV).unwrap());
    assert!(dir.path().join(RECORD_FILE).exists());
    DoubleSignGuard::open(dir.path(), ME, ENV).unwrap();
}

#[test]
fn deleting_the_record_while_running_does_not_reset_the_marks() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = signer(dir.path());
    sign(&s, &vote(5, h(b"A"))).unwrap();
    std::fs::remove_file(dir.path().join(RECORD_FILE)).unwrap();
    assert!(sign(&s, &vote(4, h(b"B"))).is_err());
    assert!(sign(&s, &vote(5, h(b"B"))).is_err());
    sign(&s, &vote(6, h(b"B"))).unwrap();
    // The record is back on disk, with the mark.
    let rec = s.guard().record().unwrap();
    assert_eq!(rec.vote.unwrap().view, 6);
    assert!(dir.path().join(RECORD_FILE).exists());
}

#[test]
fn replacing_the_record_with_an_older_one_does_not_reset_the_marks() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = signer(dir.path());
    sign(&s, &vote(5, h(b"A"))).unwrap();
    sign(&s, &batch(ME, 1, 2, vec![b"t".to_vec()])).unwrap();
    std::fs::write(
        dir.path().join(RECORD_FILE),
        DoubleSignRecord::empty(ME, ENV).to_json(),
    )
    .unwrap();
    assert!(sign(&s, &vote(4, h(b"B"))).is_err());
    assert!(sign(&s, &batch(ME, 1, 2, vec![b"u".to_vec()])).is_err());
}
