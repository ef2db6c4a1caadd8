//! The consensus state machine on hand-made inputs: every kind of bad input
//! gives a typed rejection and a counter (never a panic), state is bounded
//! against far-future views, and a restarted validator never signs a second,
//! different vote or timeout for a view.

use std::sync::Arc;

use qbind_core::codec::{DecodeError, Encode};
use qbind_core::consensus::{
    Block, BlockHeader, ConsensusConfig, ConsensusError, ConsensusMsg, Effect, HotStuff, Input,
    Payload, Proposal, QuorumCert, SafetyState, SignPurpose, SignerBitmap, TimeoutData, TimeoutMsg,
    Vote, VoteData,
};
use qbind_core::crypto::KeyPair;
use qbind_core::signing::{SignKind, sign_domain};
use qbind_core::types::{Epoch, Hash32, Height, Millis, NetworkEnvironment, ValidatorId, View};
use qbind_core::validator::{EpochSchedule, ValidatorSet};

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

fn keys() -> Vec<KeyPair> {
    (0..4)
        .map(|i| KeyPair::from_seed(&[i as u8 + 10; 32]))
        .collect()
}

fn schedule(keys: &[KeyPair]) -> Arc<EpochSchedule> {
    let set =
        ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect()).expect("set");
    Arc::new(EpochSchedule::fixed(set))
}

fn machine(
    me: u32,
    keys: &[KeyPair],
    safety: Option<SafetyState>,
    pending: Vec<Block>,
) -> HotStuff {
    let mut hs = HotStuff::new(
        ConsensusConfig::new(ENV),
        ValidatorId(me),
        schedule(keys),
        safety,
        Vec::new(),
        pending,
    );
    let _ = hs.handle(Millis(0), Input::Start);
    hs
}

fn vote(keys: &[KeyPair], voter: u32, view: u64, block: Hash32, env: NetworkEnvironment) -> Vote {
    let data = VoteData {
        epoch: Epoch(0),
        view: View(view),
        block_id: block,
    };
    Vote {
        data,
        voter: ValidatorId(voter),
        signature: sign_domain(&keys[voter as usize], env, SignKind::Vote, &data.to_bytes()),
    }
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

fn rejections(effects: &[Effect]) -> Vec<ConsensusError> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Rejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

/// The block validator 1 proposes in view 1, on genesis.
fn proposal_v1(keys: &[KeyPair], payload: &[u8]) -> Proposal {
    let genesis = Block::genesis(ENV.chain_id());
    let header = BlockHeader {
        epoch: Epoch(0),
        view: View(1),
        height: Height(1),
        parent_id: genesis.id(),
        justify_view: View(0),
        proposer: ValidatorId(1),
        payload_digest: Hash32::ZERO,
        batch_commitment: Hash32::ZERO,
        exec_height: Height(0),
        exec_state_root: Hash32::ZERO,
    };
    let block = Block::new(
        header,
        genesis.justify().clone(),
        Payload::Transactions(vec![payload.to_vec()]),
    );
    let signature = sign_domain(&keys[1], ENV, SignKind::Proposal, &block.id().to_bytes());
    Proposal {
        block,
        tc: None,
        signature,
    }
}

fn sign_requests(effects: &[Effect]) -> Vec<SignPurpose> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Sign(job) => Some(job.purpose.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn bad_votes_are_rejected_with_typed_errors_and_counted() {
    let keys = keys();
    // Validator 2 leads view 2, so it collects votes for view 1.
    let mut hs = machine(2, &keys, None, Vec::new());
    let block = Hash32([7; 32]);

    let mut bad_sig = vote(&keys, 0, 1, block, ENV);
    bad_sig.signature = vote(&keys, 0, 1, Hash32([8; 32]), ENV).signature;
    let e = rejections(&deliver(&mut hs, 0, ConsensusMsg::Vote(bad_sig)));
    assert!(
        matches!(e[..], [ConsensusError::BadSignature { .. }]),
        "{e:?}"
    );

    let other_chain = vote(&keys, 0, 1, block, NetworkEnvironment::Mainnet);
    let e = rejections(&deliver(&mut hs, 0, ConsensusMsg::Vote(other_chain)));
    assert!(
        matches!(e[..], [ConsensusError::WrongChain { .. }]),
        "{e:?}"
    );

    let mut unknown = vote(&keys, 0, 1, block, ENV);
    unknown.voter = ValidatorId(9);
    let e = rejections(&deliver(&mut hs, 9, ConsensusMsg::Vote(unknown)));
    assert!(
        matches!(e[..], [ConsensusError::UnknownSigner { .. }]),
        "{e:?}"
    );

    // Votes for view 0 belong to the leader of view 1: a view already
    // past, refused.
    let e = rejections(&deliver(
        &mut hs,
        0,
        ConsensusMsg::Vote(vote(&keys, 0, 0, block, ENV)),
    ));
    assert!(
        matches!(e[..], [ConsensusError::NotNextLeader { .. }]),
        "{e:?}"
    );
    // Votes for view 2 belong to the leader of view 3, by this validator's
    // committed chain; one of its current view or later may have overtaken
    // the QC that changes that chain, so it is held, not refused (§C10.4).
    let e = rejections(&deliver(
        &mut hs,
        0,
        ConsensusMsg::Vote(vote(&keys, 0, 2, block, ENV)),
    ));
    assert!(e.is_empty(), "{e:?}");

    // Far-future views are refused before any state is kept. Votes for view
    // 4001 go to the leader of view 4002, which is validator 2 again.
    let far = 4 * 1000 + 1;
    let e = rejections(&deliver(
        &mut hs,
        0,
        ConsensusMsg::Vote(vote(&keys, 0, far, block, ENV)),
    ));
    assert!(
        matches!(e[..], [ConsensusError::FutureView { .. }]),
        "{e:?}"
    );

    let e = rejections(&hs.handle(
        Millis(2),
        Input::Malformed {
            from: ValidatorId(3),
            error: DecodeError::TrailingBytes { count: 1 },
        },
    ));
    assert!(matches!(e[..], [ConsensusError::Malformed(_)]), "{e:?}");

    let m = hs.metrics();
    for label in [
        "bad_signature",
        "wrong_chain",
        "unknown_signer",
        "not_next_leader",
        "future_view",
        "malformed",
    ] {
        assert_eq!(m.rejected.get(label), Some(&1), "{label}: {:?}", m.rejected);
    }
}

#[test]
fn a_second_conflicting_vote_is_evidence_not_a_quorum_member() {
    let keys = keys();
    let mut hs = machine(2, &keys, None, Vec::new());
    let a = Hash32([1; 32]);
    let b = Hash32([2; 32]);
    // Voter 0 votes a then b; voters 1 and 3 vote b. Without the one-vote rule
    // b would have a quorum {0, 1, 3}; with it, only {1, 3}.
    let _ = deliver(&mut hs, 0, ConsensusMsg::Vote(vote(&keys, 0, 1, a, ENV)));
    let effects = deliver(&mut hs, 0, ConsensusMsg::Vote(vote(&keys, 0, 1, b, ENV)));
    let evidence: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Evidence(ev) => Some(ev.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].offender(), ValidatorId(0));
    assert!(evidence[0].verify(ENV, &schedule(&keys)));
    let _ = deliver(&mut hs, 1, ConsensusMsg::Vote(vote(&keys, 1, 1, b, ENV)));
    let _ = deliver(&mut hs, 3, ConsensusMsg::Vote(vote(&keys, 3, 1, b, ENV)));
    assert_eq!(hs.metrics().qcs_formed, 0);
    assert_eq!(hs.metrics().equivocations_detected, 1);
}

#[test]
fn a_timeout_may_only_carry_its_senders_vote_of_the_same_view() {
    let keys = keys();
    let mut hs = machine(0, &keys, None, Vec::new());
    let genesis = Block::genesis(ENV.chain_id());
    let data = TimeoutData {
        epoch: Epoch(0),
        view: View(1),
        high_qc_view: View(0),
    };
    let timeout = |vote: Option<Vote>| TimeoutMsg {
        data,
        high_qc: genesis.justify().clone(),
        vote,
        sender: ValidatorId(3),
        signature: sign_domain(&keys[3], ENV, SignKind::Timeout, &data.to_bytes()),
    };
    let foreign = vote(&keys, 2, 1, Hash32([5; 32]), ENV);
    let e = rejections(&deliver(
        &mut hs,
        3,
        ConsensusMsg::Timeout(timeout(Some(foreign))),
    ));
    assert!(
        matches!(e[..], [ConsensusError::InvalidBlock { .. }]),
        "{e:?}"
    );
    let other_view = vote(&keys, 3, 7, Hash32([5; 32]), ENV);
    let e = rejections(&deliver(
        &mut hs,
        3,
        ConsensusMsg::Timeout(timeout(Some(other_view))),
    ));
    assert!(
        matches!(e[..], [ConsensusError::InvalidBlock { .. }]),
        "{e:?}"
    );
    let own = vote(&keys, 3, 1, Hash32([5; 32]), ENV);
    assert!(
        rejections(&deliver(
            &mut hs,
            3,
            ConsensusMsg::Timeout(timeout(Some(own)))
        ))
        .is_empty()
    );
}

#[test]
fn a_qc_with_a_forged_signer_set_is_rejected() {
    let keys = keys();
    let mut hs = machine(0, &keys, None, Vec::new());
    let data = VoteData {
        epoch: Epoch(0),
        view: View(3),
        block_id: Hash32([3; 32]),
    };
    // Only two real signatures (no quorum of 3 out of 4).
    let mut signers = SignerBitmap::new(4);
    let mut signatures = Vec::new();
    for v in [1u32, 2] {
        signers.set(ValidatorId(v));
        signatures.push(sign_domain(
            &keys[v as usize],
            ENV,
            SignKind::Vote,
            &data.to_bytes(),
        ));
    }
    let qc = QuorumCert {
        data,
        signers,
        signatures,
    };
    let tdata = TimeoutData {
        epoch: Epoch(0),
        view: View(4),
        high_qc_view: View(3),
    };
    let t = TimeoutMsg {
        data: tdata,
        high_qc: qc,
        vote: None,
        sender: ValidatorId(1),
        signature: sign_domain(&keys[1], ENV, SignKind::Timeout, &tdata.to_bytes()),
    };
    let e = rejections(&deliver(&mut hs, 1, ConsensusMsg::Timeout(t)));
    assert!(
        matches!(e[..], [ConsensusError::InvalidQc { why, .. }] if why.contains("quorum")),
        "{e:?}"
    );
    assert_eq!(hs.view(), View(1), "an invalid QC must not move the view");
}

#[test]
fn a_restarted_validator_never_votes_twice_in_a_view() {
    let keys = keys();
    let mut hs = machine(0, &keys, None, Vec::new());
    let p = proposal_v1(&keys, b"first");
    let effects = deliver(&mut hs, 1, ConsensusMsg::Proposal(p.clone()));
    // The safety state is persisted before the vote is even signed.
    let persist = effects
        .iter()
        .position(|e| matches!(e, Effect::PersistSafety(_)))
        .expect("persisted");
    let sign = effects
        .iter()
        .position(|e| matches!(e, Effect::Sign(_)))
        .expect("asked to sign a vote");
    assert!(persist < sign);
    let persisted_block = effects
        .iter()
        .position(|e| matches!(e, Effect::PersistBlock(_)))
        .expect("block persisted");
    assert!(persisted_block < sign);
    let Effect::PersistSafety(saved) = effects[persist].clone() else {
        unreachable!()
    };
    assert_eq!(saved.last_voted_view, View(1));

    // Crash; restart from the persisted state; a different block for view 1
    // arrives. No vote may be signed.
    let mut restarted = machine(0, &keys, Some(saved), vec![p.block]);
    let other = proposal_v1(&keys, b"second");
    let effects = deliver(&mut restarted, 1, ConsensusMsg::Proposal(other));
    assert!(sign_requests(&effects).is_empty(), "voted twice in view 1");
    assert!(matches!(
        rejections(&effects)[..],
        [ConsensusError::VoteRefused(_)]
    ));
    // The evidence of the leader's equivocation is also not produced here
    // (the restarted node lost its memory of the first proposal) — but the
    // double-vote protection held.
}

#[test]
fn a_restarted_validator_resends_the_same_timeout() {
    let keys = keys();
    let mut hs = machine(0, &keys, None, Vec::new());
    let effects = hs.handle(Millis(10_000), Input::Tick);
    let first: Vec<_> = sign_requests(&effects);
    let Some(SignPurpose::Timeout { data, high_qc }) = first.first().cloned() else {
        panic!("no timeout signed: {effects:?}")
    };
    let saved = effects
        .iter()
        .find_map(|e| match e {
            Effect::PersistSafety(s) => Some(s.clone()),
            _ => None,
        })
        .expect("persisted before signing");
    let mut restarted = machine(0, &keys, Some(saved), Vec::new());
    let again = sign_requests(&restarted.handle(Millis(20_000), Input::Tick));
    assert_eq!(
        again.first(),
        Some(&SignPurpose::Timeout { data, high_qc }),
        "a restarted validator signed a different timeout for the same view"
    );
}

// ------------------------------------------------------------- DAG coupling

/// Issue #17 finding 4: conflicting signed proposals of one leader for one
/// view are evidence, and after the second none is stored (2,000 of them
/// gave 2,000 `PersistBlock` effects before).
#[test]
fn an_equivocating_leader_cannot_make_a_validator_store_many_blocks() {
    let keys = keys();
    let mut hs = machine(0, &keys, None, Vec::new());
    let mut persisted = 0;
    let mut evidence = 0;
    for i in 0..2_000u32 {
        let effects = deliver(
            &mut hs,
            1,
            ConsensusMsg::Proposal(proposal_v1(&keys, &i.to_be_bytes())),
        );
        for e in &effects {
            match e {
                Effect::PersistBlock(_) => persisted += 1,
                Effect::Evidence(_) => evidence += 1,
                _ => {}
            }
        }
    }
    assert_eq!(persisted, 2, "blocks stored for one (proposer, view)");
    assert!(hs.pending_blocks() <= 2);
    assert!(evidence >= 1, "the equivocation is reported");
}

mod dag_coupling {
    use super::*;
    use qbind_core::dag::{Batch, BatchCertificate, BatchRef, PayloadMode};

    fn dag_machine(keys: &[KeyPair]) -> HotStuff {
        let mut cfg = ConsensusConfig::new(ENV);
        cfg.payload_mode = PayloadMode::Dag;
        let mut hs = HotStuff::new(
            cfg,
            ValidatorId(0),
            schedule(keys),
            None,
            Vec::new(),
            Vec::new(),
        );
        let _ = hs.handle(Millis(0), Input::Start);
        hs
    }

    fn cert(keys: &[KeyPair], author: u32, round: u64, signers_of: &[u32]) -> BatchCertificate {
        let batch = Batch {
            epoch: Epoch(0),
            author: ValidatorId(author),
            round,
            txs: vec![format!("tx-{author}-{round}").into_bytes()],
        };
        let r = BatchRef {
            epoch: Epoch(0),
            author: ValidatorId(author),
            round,
            digest: batch.digest(),
        };
        let mut signers = SignerBitmap::new(4);
        let mut signatures = Vec::new();
        for v in signers_of {
            signers.set(ValidatorId(*v));
            signatures.push(sign_domain(
                &keys[*v as usize],
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

    /// Validator 1's view-1 proposal with `payload`.
    fn proposal(keys: &[KeyPair], payload: Payload) -> Proposal {
        let genesis = Block::genesis(ENV.chain_id());
        let header = BlockHeader {
            epoch: Epoch(0),
            view: View(1),
            height: Height(1),
            parent_id: genesis.id(),
            justify_view: View(0),
            proposer: ValidatorId(1),
            payload_digest: Hash32::ZERO,
            batch_commitment: Hash32::ZERO,
            exec_height: Height(0),
            exec_state_root: Hash32::ZERO,
        };
        let block = Block::new(header, genesis.justify().clone(), payload);
        let signature = sign_domain(&keys[1], ENV, SignKind::Proposal, &block.id().to_bytes());
        Proposal {
            block,
            tc: None,
            signature,
        }
    }

    fn outcome(
        keys: &[KeyPair],
        p: Proposal,
    ) -> (Vec<ConsensusError>, bool, Vec<(&'static str, u64)>) {
        let mut hs = dag_machine(keys);
        let effects = deliver(&mut hs, 1, ConsensusMsg::Proposal(p));
        let voted = !sign_requests(&effects).is_empty();
        let counted = hs
            .dag_metrics()
            .expect("DAG mode")
            .coupling_validation
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        (rejections(&effects), voted, counted)
    }

    #[test]
    fn certified_canonical_payload_gets_a_vote() {
        let keys = keys();
        let certs = vec![cert(&keys, 1, 1, &[0, 1, 2]), cert(&keys, 2, 1, &[1, 2, 3])];
        let (rejected, voted, counted) = outcome(&keys, proposal(&keys, Payload::Batches(certs)));
        assert!(rejected.is_empty(), "{rejected:?}");
        assert!(voted);
        assert_eq!(counted, vec![("valid", 1)]);
    }

    #[test]
    fn every_coupling_violation_is_refused_and_counted() {
        let keys = keys();
        let good = cert(&keys, 1, 1, &[0, 1, 2]);
        let cases: Vec<(Payload, &str)> = vec![
            // Two signers only: no quorum.
            (
                Payload::Batches(vec![cert(&keys, 1, 1, &[0, 1])]),
                "uncertified",
            ),
            (
                Payload::Batches(vec![good.clone(), good.clone()]),
                "not_canonical_or_duplicate",
            ),
            (
                Payload::Batches(vec![cert(&keys, 2, 1, &[0, 1, 2]), good]),
                "not_canonical_or_duplicate",
            ),
            (
                Payload::Transactions(vec![b"inline".to_vec()]),
                "wrong_payload_mode",
            ),
        ];
        for (payload, label) in cases {
            let (rejected, voted, counted) = outcome(&keys, proposal(&keys, payload));
            assert!(!voted, "{label}: voted");
            assert!(
                matches!(rejected[..], [ConsensusError::InvalidPayload { why }] if why == label),
                "{label}: {rejected:?}"
            );
            assert_eq!(counted, vec![(label, 1)]);
        }
    }

    #[test]
    fn a_header_commitment_that_does_not_match_is_refused() {
        let keys = keys();
        let mut p = proposal(&keys, Payload::Batches(vec![cert(&keys, 1, 1, &[0, 1, 2])]));
        let mut header = p.block.header().clone();
        header.batch_commitment = Hash32([1; 32]);
        p.block = Block::from_parts(header, p.block.justify().clone(), p.block.payload().clone());
        p.signature = sign_domain(&keys[1], ENV, SignKind::Proposal, &p.block.id().to_bytes());
        let (rejected, voted, _) = outcome(&keys, p);
        assert!(!voted);
        assert!(
            matches!(rejected[..], [ConsensusError::InvalidBlock { why, .. }] if why.contains("commitment")),
            "{rejected:?}"
        );
    }

    /// The batch of a `Sign` effect among `effects`, if any.
    fn batch_sign(effects: &[Effect]) -> Option<qbind_core::consensus::SignJob> {
        effects.iter().find_map(|e| match e {
            Effect::Sign(job) if matches!(job.purpose, SignPurpose::Batch { .. }) => {
                Some(job.clone())
            }
            _ => None,
        })
    }

    /// A refused batch signature (e.g. the signer's record holds that slot
    /// from before a crash) used to leave the machine waiting for it
    /// forever: no batch of this validator was ever cut again. Now the slot
    /// is given up, the transactions go back to the pool, and after a pause
    /// the next slot is signed with them.
    #[test]
    fn a_refused_batch_signature_gives_up_the_slot_and_batches_again_later() {
        let keys = keys();
        let mut hs = dag_machine(&keys);
        let first = batch_sign(&hs.handle(Millis(100), Input::SubmitTransaction(b"tx-a".to_vec())))
            .expect("a batch is cut and signed");
        let SignPurpose::Batch { batch } = &first.purpose else {
            unreachable!()
        };
        assert_eq!(
            (batch.round, batch.txs.clone()),
            (1, vec![b"tx-a".to_vec()])
        );
        let effects = hs.handle(Millis(101), Input::SignFailed { job: first });
        assert!(batch_sign(&effects).is_none(), "no tight retry loop");
        let resume = effects
            .iter()
            .find_map(|e| match e {
                Effect::SetTimer(at) => Some(*at),
                _ => None,
            })
            .expect("a timer to author again");
        assert_eq!(
            hs.dag_metrics()
                .expect("DAG mode")
                .batch_sign_failures_total,
            1
        );
        // Paused: a new transaction does not cut a batch yet.
        let early = hs.handle(Millis(102), Input::SubmitTransaction(b"tx-b".to_vec()));
        assert!(batch_sign(&early).is_none());
        let again = batch_sign(&hs.handle(resume, Input::Tick)).expect("authoring resumes");
        let SignPurpose::Batch { batch } = &again.purpose else {
            unreachable!()
        };
        assert_eq!(batch.round, 2, "the refused slot is not signed again");
        assert!(batch.txs.contains(&b"tx-a".to_vec()), "{:?}", batch.txs);
        assert!(batch.txs.contains(&b"tx-b".to_vec()), "{:?}", batch.txs);
    }
}

fn proposals(effects: &[Effect]) -> usize {
    sign_requests(effects)
        .iter()
        .filter(|p| matches!(p, SignPurpose::Proposal { .. }))
        .count()
}

/// Issue #21: an idle network committed ~100 empty blocks a second (each
/// stored with its QC). With `idle_proposal_delay_ms`, a leader with
/// nothing to propose waits that long into its view; a submitted
/// transaction ends the wait at once.
#[test]
fn an_idle_leader_waits_before_an_empty_proposal() {
    let keys = keys();
    let start = |delay: Option<u64>| {
        let mut cfg = ConsensusConfig::new(ENV);
        cfg.idle_proposal_delay_ms = delay;
        let mut hs = HotStuff::new(
            cfg,
            ValidatorId(1),
            schedule(&keys),
            None,
            Vec::new(),
            Vec::new(),
        );
        let effects = hs.handle(Millis(0), Input::Start);
        (hs, effects)
    };
    // Without the delay the leader of view 1 proposes at once.
    let (_, effects) = start(None);
    assert_eq!(proposals(&effects), 1);
    // With it: not at once, not before the delay, then an empty block.
    let (mut hs, effects) = start(Some(200));
    assert_eq!(proposals(&effects), 0);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::SetTimer(at) if *at == Millis(200))),
        "a timer brings the leader back: {effects:?}"
    );
    assert_eq!(proposals(&hs.handle(Millis(150), Input::Tick)), 0);
    assert_eq!(proposals(&hs.handle(Millis(200), Input::Tick)), 1);
    // A transaction ends the wait.
    let (mut hs, _) = start(Some(200));
    let effects = hs.handle(Millis(50), Input::SubmitTransaction(b"tx".to_vec()));
    assert_eq!(proposals(&effects), 1);
    // The delay is capped at a quarter of the base view timeout.
    let (mut hs, _) = start(Some(10_000));
    assert_eq!(proposals(&hs.handle(Millis(250), Input::Tick)), 1);
}

/// Honest state root of executed height `h` in [`a_vote_waits_for_the_height_a_proposal_reports`].
fn honest_root(h: u64) -> Hash32 {
    Hash32([h as u8; 32])
}

/// What validator 3 did about block 7 in [`votes_for_block_7`].
struct Block7 {
    /// Votes it asked to sign for block 7 when the proposal arrived.
    votes: usize,
    /// Its rejections then.
    refused: Vec<ConsensusError>,
    /// Votes for block 7 once it executed height 3 with the honest root.
    votes_after: usize,
    /// Its rejections then.
    refused_after: Vec<ConsensusError>,
}

/// Validator 3 receives blocks 1..=7 (block `v` in view `v`, each block from
/// 5 on reporting the root of `v − 4`; block 7 reports `root7` for height 3)
/// and executes the committed heights up to `executed_up_to` only: its
/// execution lags. `restarted_at`: it starts knowing only that height's
/// root, as after a restart. Then it executes height 3 with the honest root.
fn votes_for_block_7(
    executes: bool,
    restarted_at: Option<u64>,
    executed_up_to: u64,
    root7: Hash32,
) -> Block7 {
    votes_for_block_7_then(executes, restarted_at, executed_up_to, root7, false)
}

/// [`votes_for_block_7`]; with `rebroadcast_6`, block 6's proposal arrives
/// again after block 7's (its leader re-broadcasts it until it sees a QC).
fn votes_for_block_7_then(
    executes: bool,
    restarted_at: Option<u64>,
    executed_up_to: u64,
    root7: Hash32,
    rebroadcast_6: bool,
) -> Block7 {
    use qbind_core::consensus::leader::LeaderPolicy;
    let keys = keys();
    let (schedule, chain) =
        qbind_core::sim::chain::certified_chain_reporting(ENV, &keys, keys.len(), 7, |v| match v {
            7 => Some((Height(3), root7)),
            v if v >= 5 => Some((Height(v - 4), honest_root(v - 4))),
            _ => None,
        })
        .expect("chain");
    let mut cfg = ConsensusConfig::new(ENV);
    cfg.leader_policy = LeaderPolicy::RoundRobin;
    let mut hs = HotStuff::new(cfg, ValidatorId(3), schedule, None, Vec::new(), Vec::new());
    hs.set_executes(executes);
    if let Some(h) = restarted_at {
        let _ = hs.handle(
            Millis(0),
            Input::Executed {
                height: Height(h),
                state_root: honest_root(h),
            },
        );
    }
    let _ = hs.handle(Millis(0), Input::Start);
    let id7 = chain[7].id();
    let votes_for_7 = |effects: &[Effect]| {
        sign_requests(effects)
            .iter()
            .filter(|p| matches!(p, SignPurpose::Vote { data, .. } if data.block_id == id7))
            .count()
    };
    let mut last = Vec::new();
    let mut blocks: Vec<&Block> = chain[1..].iter().collect();
    if rebroadcast_6 {
        blocks.push(&chain[6]);
    }
    for (n, block) in blocks.into_iter().enumerate() {
        let proposer = block.header().proposer;
        let signature = sign_domain(
            &keys[proposer.0 as usize],
            ENV,
            SignKind::Proposal,
            &block.id().to_bytes(),
        );
        let proposal = Proposal {
            block: block.clone(),
            tc: None,
            signature,
        };
        let effects = deliver(&mut hs, proposer.0, ConsensusMsg::Proposal(proposal));
        for e in &effects {
            if let Effect::Execute { height, .. } = e
                && height.0 <= executed_up_to
            {
                let _ = hs.handle(
                    Millis(1),
                    Input::Executed {
                        height: *height,
                        state_root: honest_root(height.0),
                    },
                );
            }
        }
        if n < 7 {
            last = effects;
        }
    }
    let after = hs.handle(
        Millis(2),
        Input::Executed {
            height: Height(3),
            state_root: honest_root(3),
        },
    );
    Block7 {
        votes: votes_for_7(&last),
        refused: rejections(&last),
        votes_after: votes_for_7(&after),
        refused_after: rejections(&after),
    }
}

/// A proposal reporting the root of a height this validator has committed
/// but not executed yet gets its vote only once that height is executed
/// and the roots agree (§C3.7): otherwise a Byzantine leader could have a
/// false root certified by voters whose execution lagged (issue #18
/// review). A validator that does not execute votes unchecked, as before.
#[test]
fn a_vote_waits_for_the_height_a_proposal_reports() {
    let forged = Hash32([0xee; 32]);
    // Execution keeps up: the report is checked at once.
    let b = votes_for_block_7(true, None, 7, honest_root(3));
    assert_eq!((b.votes, b.votes_after), (1, 0), "{:?}", b.refused);
    let b = votes_for_block_7(true, None, 7, forged);
    assert_eq!(b.votes, 0, "voted for a root that differs from its own");
    assert!(matches!(
        b.refused[..],
        [ConsensusError::StateRootMismatch { .. }]
    ));
    // Execution lags behind height 3: no vote until it is executed.
    let b = votes_for_block_7(true, None, 2, honest_root(3));
    assert_eq!((b.votes, b.votes_after), (0, 1), "{:?}", b.refused_after);
    let b = votes_for_block_7(true, None, 2, forged);
    assert_eq!((b.votes, b.votes_after), (0, 0), "a false root got a vote");
    assert!(
        matches!(
            b.refused_after[..],
            [ConsensusError::StateRootMismatch {
                height: Height(3),
                ..
            }]
        ),
        "{:?}",
        b.refused_after
    );
    // Without execution nothing can be checked.
    let b = votes_for_block_7(false, None, 0, forged);
    assert_eq!(b.votes, 1);
}

/// A report of a height this validator executed but does not remember (here
/// it restarted at height 5 and knows only that root) cannot be checked and
/// gets no vote; reports of later heights are checked as usual.
#[test]
fn a_report_this_validator_cannot_check_gets_no_vote() {
    let b = votes_for_block_7(true, Some(5), 0, honest_root(3));
    assert_eq!((b.votes, b.votes_after), (0, 0));
    assert!(
        matches!(
            b.refused[..],
            [ConsensusError::UncheckedStateRoot { height: Height(3) }]
        ),
        "{:?}",
        b.refused
    );
}

/// A proposal that cannot get a vote now (here block 6's, re-broadcast after
/// block 7's arrived) never takes the place of the one waiting for
/// execution: block 7 still gets its vote once height 3 is executed.
#[test]
fn a_stale_proposal_does_not_replace_the_one_waiting_for_execution() {
    let b = votes_for_block_7_then(true, None, 1, honest_root(3), true);
    assert_eq!((b.votes, b.votes_after), (0, 1), "{:?}", b.refused_after);
}
