//! Issue #17 finding 1: a certificate's epoch label is chosen by its
//! sender. Keys valid in a past epoch (a bootstrap set, leaked keys that
//! were rotated away) must not certify anything a validator in a later epoch
//! acts on; views cannot be pushed to where no view can be entered; votes
//! with arbitrary epoch labels cannot grow a validator's state.
//!
//! Every test builds a validator that is in epoch 1 (its committed chain
//! ends with epoch 0's boundary block), whose epoch-0 validator set is held
//! entirely by the attacker ("old keys"), and feeds it certificates those
//! old keys sign.

use std::sync::Arc;

use qbind_core::codec::Encode;
use qbind_core::consensus::{
    Block, BlockHeader, ConsensusConfig, ConsensusMsg, Effect, HotStuff, Input, Payload, Proposal,
    QuorumCert, TimeoutData, TimeoutMsg, Vote, VoteData,
};
use qbind_core::crypto::KeyPair;
use qbind_core::signing::{SignKind, sign_domain};
use qbind_core::types::{Epoch, Hash32, Height, Millis, NetworkEnvironment, ValidatorId, View};
use qbind_core::validator::{EpochSchedule, ValidatorSet};

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;
/// Blocks per epoch: epoch 0 ends at height 2.
const EPOCH_LEN: u64 = 2;

fn keys(seed: u8) -> Vec<KeyPair> {
    (0..4)
        .map(|i| KeyPair::from_seed(&[seed + i as u8; 32]))
        .collect()
}

fn set(keys: &[KeyPair]) -> ValidatorSet {
    ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect()).expect("set")
}

/// A QC on (`epoch`, `view`, `block`) signed by all of `keys`.
fn qc(keys: &[KeyPair], epoch: u64, view: u64, block: Hash32) -> QuorumCert {
    qbind_core::sim::chain::quorum_cert(ENV, keys, epoch, view, block)
}

fn block(epoch: u64, view: u64, parent: &Block, justify: QuorumCert, proposer: u32) -> Block {
    let header = BlockHeader {
        epoch: Epoch(epoch),
        view: View(view),
        height: parent.height().next(),
        parent_id: parent.id(),
        justify_view: justify.view(),
        proposer: ValidatorId(proposer),
        payload_digest: Hash32::ZERO,
        batch_commitment: Hash32::ZERO,
        exec_height: Height(0),
        exec_state_root: Hash32::ZERO,
    };
    Block::new(header, justify, Payload::empty())
}

struct Setup {
    old: Vec<KeyPair>,
    new: Vec<KeyPair>,
    /// The committed chain: genesis, then epoch 0's two blocks.
    chain: Vec<Block>,
    schedule: Arc<EpochSchedule>,
}

fn setup() -> Setup {
    let old = keys(10);
    let new = keys(50);
    let schedule = Arc::new(EpochSchedule::with_epochs(
        EPOCH_LEN,
        set(&old),
        vec![set(&new)],
    ));
    let genesis = Block::genesis(ENV.chain_id());
    let b1 = block(0, 1, &genesis, genesis.justify().clone(), 1);
    let b2 = block(0, 2, &b1, qc(&old, 0, 1, b1.id()), 2);
    assert_eq!(schedule.boundary_height(Epoch(0)), b2.height());
    Setup {
        old,
        new,
        chain: vec![genesis, b1, b2],
        schedule,
    }
}

/// Validator `me` of epoch 1, restarted with `pending` uncommitted blocks.
fn validator(s: &Setup, me: u32, pending: Vec<Block>) -> HotStuff {
    let mut hs = HotStuff::new(
        ConsensusConfig::new(ENV),
        ValidatorId(me),
        s.schedule.clone(),
        None,
        s.chain.clone(),
        pending,
    );
    assert_eq!(hs.epoch(), Epoch(1), "the validator is in epoch 1");
    let _ = hs.handle(Millis(0), Input::Start);
    hs
}

fn deliver(hs: &mut HotStuff, from: u32, msg: ConsensusMsg) -> Vec<Effect> {
    hs.handle(
        Millis(1),
        Input::Message {
            from: ValidatorId(from),
            msg,
        },
    )
}

/// A timeout of epoch 0 by old key 0 carrying `high_qc`.
fn old_timeout(s: &Setup, view: u64, high_qc: QuorumCert) -> TimeoutMsg {
    let data = TimeoutData {
        epoch: Epoch(0),
        view: View(view),
        high_qc_view: high_qc.view(),
    };
    TimeoutMsg {
        signature: sign_domain(&s.old[0], ENV, SignKind::Timeout, &data.to_bytes()),
        data,
        high_qc,
        vote: None,
        sender: ValidatorId(0),
    }
}

#[test]
fn old_keys_cannot_push_a_validator_to_the_last_view() {
    let s = setup();
    let mut hs = validator(&s, 0, Vec::new());
    let before = hs.view();
    let forged = qc(&s.old, 0, u64::MAX - 1, Hash32([7; 32]));
    let _ = deliver(
        &mut hs,
        1,
        ConsensusMsg::Timeout(old_timeout(&s, u64::MAX, forged)),
    );
    assert_eq!(hs.view(), before, "a past epoch's keys moved the view");
    assert!(hs.safety().high_qc.view() < View(1_000));
}

#[test]
fn old_keys_cannot_certify_a_current_block() {
    let s = setup();
    let boundary = s.chain[2].clone();
    // A real epoch-1 block (the first of the epoch) is pending.
    let first = block(1, 3, &boundary, qc(&s.old, 0, 2, boundary.id()), 3);
    let mut hs = validator(&s, 0, vec![first.clone()]);
    let high_before = hs.safety().high_qc.clone();
    // The old keys certify it with their own epoch's label.
    let forged = qc(&s.old, 0, first.view().0, first.id());
    let _ = deliver(
        &mut hs,
        1,
        ConsensusMsg::Timeout(old_timeout(&s, 9, forged)),
    );
    assert_eq!(
        hs.safety().high_qc,
        high_before,
        "a QC labelled with a past epoch certified a block of the current one"
    );
    // The same block certified by the current keys is accepted.
    let real = qc(&s.new, 1, first.view().0, first.id());
    let data = TimeoutData {
        epoch: Epoch(1),
        view: View(9),
        high_qc_view: real.view(),
    };
    let t = TimeoutMsg {
        signature: sign_domain(&s.new[1], ENV, SignKind::Timeout, &data.to_bytes()),
        data,
        high_qc: real.clone(),
        vote: None,
        sender: ValidatorId(1),
    };
    let _ = deliver(&mut hs, 1, ConsensusMsg::Timeout(t));
    assert_eq!(hs.safety().high_qc, real);
}

#[test]
fn a_qc_whose_view_differs_from_its_block_is_not_applied() {
    let s = setup();
    let boundary = s.chain[2].clone();
    let first = block(1, 3, &boundary, qc(&s.old, 0, 2, boundary.id()), 3);
    let mut hs = validator(&s, 0, vec![first.clone()]);
    let high_before = hs.safety().high_qc.clone();
    // Current keys, but a view label far above the block's own.
    let mislabelled = qc(&s.new, 1, 500, first.id());
    let data = TimeoutData {
        epoch: Epoch(1),
        view: View(501),
        high_qc_view: View(500),
    };
    let t = TimeoutMsg {
        signature: sign_domain(&s.new[1], ENV, SignKind::Timeout, &data.to_bytes()),
        data,
        high_qc: mislabelled,
        vote: None,
        sender: ValidatorId(1),
    };
    let _ = deliver(&mut hs, 1, ConsensusMsg::Timeout(t));
    assert_eq!(hs.safety().high_qc, high_before);
}

#[test]
fn a_proposal_from_an_old_leader_does_not_move_the_view() {
    let s = setup();
    let mut hs = validator(&s, 0, Vec::new());
    let before = hs.view();
    let tip = s.chain[2].clone();
    let forged = qc(&s.old, 0, 1 << 40, Hash32([9; 32]));
    let view = (1 << 40) + 1;
    let leader = s.schedule.set(Epoch(0)).leader(View(view)).0 as usize;
    let b = block(0, view, &tip, forged, leader as u32);
    let p = Proposal {
        signature: sign_domain(&s.old[leader], ENV, SignKind::Proposal, &b.id().to_bytes()),
        block: b,
        tc: None,
    };
    let _ = deliver(&mut hs, leader as u32, ConsensusMsg::Proposal(p));
    assert_eq!(hs.view(), before, "an old leader's QC moved the view");
}

#[test]
fn votes_with_many_epoch_labels_are_not_all_kept() {
    let s = setup();
    let hs = validator(&s, 0, Vec::new());
    let view = hs.view();
    // The validator that leads the view after `view` in every epoch >= 1.
    let next = s.schedule.set(Epoch(1)).leader(view.next());
    let mut hs = if next == ValidatorId(0) {
        hs
    } else {
        validator(&s, next.0, Vec::new())
    };
    for e in 0..1_000u64 {
        let data = VoteData {
            epoch: Epoch(e),
            view,
            block_id: Hash32([3; 32]),
        };
        let key = if e == 0 { &s.old[1] } else { &s.new[1] };
        let v = Vote {
            data,
            voter: ValidatorId(1),
            signature: sign_domain(key, ENV, SignKind::Vote, &data.to_bytes()),
        };
        let _ = deliver(&mut hs, 1, ConsensusMsg::Vote(v));
    }
    assert!(
        hs.metrics().votes_received <= 3,
        "{} votes with distinct epoch labels were kept",
        hs.metrics().votes_received
    );
}

#[test]
fn a_certificate_at_the_end_of_the_view_space_is_refused() {
    let s = setup();
    let mut hs = validator(&s, 0, Vec::new());
    let before = hs.view();
    // Even the current keys: no honest network reaches such a view.
    let far = qc(&s.new, 1, u64::MAX - 1, Hash32([5; 32]));
    let data = TimeoutData {
        epoch: Epoch(1),
        view: View(u64::MAX),
        high_qc_view: far.view(),
    };
    let t = TimeoutMsg {
        signature: sign_domain(&s.new[1], ENV, SignKind::Timeout, &data.to_bytes()),
        data,
        high_qc: far,
        vote: None,
        sender: ValidatorId(1),
    };
    let _ = deliver(&mut hs, 1, ConsensusMsg::Timeout(t));
    assert_eq!(hs.view(), before);
}
