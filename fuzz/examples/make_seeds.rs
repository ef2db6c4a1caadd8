//! Writes the seed inputs under `seeds/<target>/`: real encodings of
//! protocol-valid messages, states and blocks, signed with the keys the
//! `hotstuff_input` target uses, so that mutations start from inputs that
//! pass decoding and signature checks. Also prints what a fresh validator 0
//! does with each `hotstuff_input` seed, to show the seeds reach past the
//! signature checks.
//!
//! Run from `fuzz/`: `cargo run --release --example make_seeds`.

use std::fs;
use std::path::{Path, PathBuf};

use qbind_core::codec::Encode;
use qbind_core::consensus::{
    Block, BlockHeader, ConsensusMsg, Effect, HotStuff, Input, Payload, Proposal, QuorumCert,
    SafetyState, SignerBitmap, SyncRequest, SyncResponse, TimeoutCert, TimeoutData, TimeoutMsg,
    TimeoutRecord, Vote, VoteData,
};
use qbind_core::crypto::{KeyPair, Signature};
use qbind_core::signing::{SignKind, sign_domain};
use qbind_core::types::{Epoch, Hash32, Height, Millis, ValidatorId, View};
use qbind_fuzz::{ENV, VALIDATORS, setup};

fn sign(key: &KeyPair, kind: SignKind, message: &[u8]) -> Signature {
    sign_domain(key, ENV, kind, message)
}

fn header(view: u64, height: u64, parent: Hash32, proposer: u32) -> BlockHeader {
    BlockHeader {
        epoch: Epoch(0),
        view: View(view),
        height: Height(height),
        parent_id: parent,
        justify_view: View(0),
        proposer: ValidatorId(proposer),
        payload_digest: Hash32::ZERO,
        batch_commitment: Hash32::ZERO,
        exec_height: Height(0),
        exec_state_root: Hash32::ZERO,
    }
}

fn qc(keys: &[KeyPair], data: VoteData, signers: &[u32]) -> QuorumCert {
    let mut bitmap = SignerBitmap::new(VALIDATORS);
    for &i in signers {
        bitmap.set(ValidatorId(i));
    }
    QuorumCert {
        data,
        signatures: bitmap
            .iter()
            .map(|id| sign(&keys[id.0 as usize], SignKind::Vote, &data.to_bytes()))
            .collect(),
        signers: bitmap,
    }
}

fn tc(keys: &[KeyPair], view: u64, signers: &[(u32, u64)]) -> TimeoutCert {
    let mut bitmap = SignerBitmap::new(VALIDATORS);
    for &(i, _) in signers {
        bitmap.set(ValidatorId(i));
    }
    let mut sorted = signers.to_vec();
    sorted.sort_unstable();
    TimeoutCert {
        epoch: Epoch(0),
        view: View(view),
        signers: bitmap,
        high_qc_views: sorted.iter().map(|&(_, hv)| View(hv)).collect(),
        signatures: sorted
            .iter()
            .map(|&(i, hv)| {
                let data = TimeoutData {
                    epoch: Epoch(0),
                    view: View(view),
                    high_qc_view: View(hv),
                };
                sign(&keys[i as usize], SignKind::Timeout, &data.to_bytes())
            })
            .collect(),
    }
}

fn proposal(keys: &[KeyPair], block: Block, tc: Option<TimeoutCert>) -> Proposal {
    let proposer = block.header().proposer.0 as usize;
    Proposal {
        signature: sign(&keys[proposer], SignKind::Proposal, block.id().as_bytes()),
        block,
        tc,
    }
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).expect("create seed directory");
    fs::write(d.join(format!("{name}.bin")), bytes).expect("write seed");
}

/// What a fresh validator 0 emits for `msg` from validator 1, in short.
fn summary(msg: &ConsensusMsg) -> String {
    let s = setup();
    let mut hs = HotStuff::new(
        s.config.clone(),
        ValidatorId(0),
        s.schedule.clone(),
        None,
        Vec::new(),
        Vec::new(),
    );
    let _ = hs.handle(Millis(0), Input::Start);
    let effects = hs.handle(
        Millis(1),
        Input::Message {
            from: ValidatorId(1),
            msg: msg.clone(),
        },
    );
    let kinds: Vec<String> = effects
        .iter()
        .map(|e| match e {
            Effect::PersistSafety(_) => "persist".to_string(),
            Effect::Sign(job) => format!("sign {:?}", job.request.kind),
            Effect::Send { to, msg } => format!("send {} to {to}", msg.kind()),
            Effect::Broadcast(msg) => format!("broadcast {}", msg.kind()),
            Effect::Commit(b) => format!("commit {}", b.height()),
            Effect::SetTimer(_) => "timer".to_string(),
            Effect::Evidence(_) => "evidence".to_string(),
            Effect::Rejected { error, .. } => format!("rejected: {error}"),
            Effect::PersistBlock(b) => format!("persist block {}", b.height()),
            Effect::ForgetBlocks(ids) => format!("forget {} blocks", ids.len()),
            Effect::ForgetBatches(ids) => format!("forget {} batches", ids.len()),
            Effect::PersistBatch(b) => format!("persist batch {}", b.batch.round),
            Effect::Execute { height, txs, .. } => {
                format!("execute {} ({} txs)", height, txs.len())
            }
            Effect::ServeSync { to, .. } => format!("serve sync to {to}"),
            Effect::ArchiveBatches(b) => format!("archive {} batches", b.len()),
            Effect::ServeBatch { to, .. } => format!("serve batch to {to}"),
        })
        .collect();
    format!("view {} after; [{}]", hs.view().0, kinds.join(", "))
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let keys = &setup().keys;
    let genesis = Block::genesis(ENV.chain_id());
    let genesis_qc = genesis.justify().clone();

    // View 1: leader 1 extends genesis.
    let block1 = Block::new(
        header(1, 1, genesis.id(), 1),
        genesis_qc.clone(),
        Payload::Transactions(vec![b"tx-1".to_vec(), b"tx-2".to_vec()]),
    );
    let data1 = VoteData {
        epoch: Epoch(0),
        view: View(1),
        block_id: block1.id(),
    };
    let qc1 = qc(keys, data1, &[0, 1, 2]);
    // View 2: leader 2 extends block 1 via qc1.
    let block2 = Block::new(header(2, 2, block1.id(), 2), qc1.clone(), Payload::empty());
    let data2 = VoteData {
        epoch: Epoch(0),
        view: View(2),
        block_id: block2.id(),
    };
    // View 3: leader 3 extends block 2; its votes go to validator 0, the
    // leader of view 4.
    let qc2 = qc(keys, data2, &[1, 2, 3]);
    let block3 = Block::new(header(3, 3, block2.id(), 3), qc2, Payload::empty());
    let data3 = VoteData {
        epoch: Epoch(0),
        view: View(3),
        block_id: block3.id(),
    };
    // View 1 timed out instead: leader 2 extends genesis with a TC of view 1.
    let tc1 = tc(keys, 1, &[(1, 0), (2, 0), (3, 0)]);
    let block2_tc = Block::new(
        header(2, 1, genesis.id(), 2),
        genesis_qc.clone(),
        Payload::empty(),
    );
    let timeout1 = TimeoutData {
        epoch: Epoch(0),
        view: View(1),
        high_qc_view: View(0),
    };
    let timeout2 = TimeoutData {
        epoch: Epoch(0),
        view: View(2),
        high_qc_view: View(1),
    };

    let messages: Vec<(&str, ConsensusMsg)> = vec![
        (
            "proposal_v1",
            ConsensusMsg::Proposal(proposal(keys, block1.clone(), None)),
        ),
        (
            "proposal_v2",
            ConsensusMsg::Proposal(proposal(keys, block2.clone(), None)),
        ),
        (
            "proposal_v2_with_tc",
            ConsensusMsg::Proposal(proposal(keys, block2_tc, Some(tc1.clone()))),
        ),
        (
            "vote_v1",
            ConsensusMsg::Vote(Vote {
                data: data1,
                voter: ValidatorId(1),
                signature: sign(&keys[1], SignKind::Vote, &data1.to_bytes()),
            }),
        ),
        (
            "vote_v3",
            ConsensusMsg::Vote(Vote {
                data: data3,
                voter: ValidatorId(1),
                signature: sign(&keys[1], SignKind::Vote, &data3.to_bytes()),
            }),
        ),
        (
            "timeout_v1",
            ConsensusMsg::Timeout(TimeoutMsg {
                data: timeout1,
                high_qc: genesis_qc.clone(),
                vote: None,
                sender: ValidatorId(1),
                signature: sign(&keys[1], SignKind::Timeout, &timeout1.to_bytes()),
            }),
        ),
        (
            "timeout_v2_with_vote",
            ConsensusMsg::Timeout(TimeoutMsg {
                data: timeout2,
                high_qc: qc1.clone(),
                vote: Some(Vote {
                    data: data2,
                    voter: ValidatorId(1),
                    signature: sign(&keys[1], SignKind::Vote, &data2.to_bytes()),
                }),
                sender: ValidatorId(1),
                signature: sign(&keys[1], SignKind::Timeout, &timeout2.to_bytes()),
            }),
        ),
        ("timeout_cert_v1", ConsensusMsg::TimeoutCert(tc1.clone())),
        (
            "sync_request_genesis",
            ConsensusMsg::SyncRequest(SyncRequest {
                block_id: genesis.id(),
                max_blocks: 8,
            }),
        ),
        (
            "sync_response",
            ConsensusMsg::SyncResponse(SyncResponse {
                blocks: vec![block2.clone(), block1.clone()],
            }),
        ),
    ];
    for (name, msg) in &messages {
        let bytes = msg.to_bytes();
        write(&dir, "consensus_msg", name, &bytes);
        write(&dir, "hotstuff_input", name, &bytes);
        println!("{name:>22} {:>6} B  {}", bytes.len(), summary(msg));
    }

    for (name, block) in [
        ("genesis", &genesis),
        ("block1", &block1),
        ("block2", &block2),
    ] {
        write(&dir, "block", name, &block.to_bytes());
    }

    let mut voted = SafetyState::genesis(genesis_qc.clone());
    voted.last_voted_view = View(2);
    voted.last_proposed_view = View(1);
    voted.locked_qc = qc1.clone();
    voted.high_qc = qc1.clone();
    let mut timed_out = voted.clone();
    timed_out.last_voted_view = View(3);
    timed_out.last_timeout = Some(TimeoutRecord {
        data: TimeoutData {
            epoch: Epoch(0),
            view: View(3),
            high_qc_view: View(1),
        },
        high_qc: qc1,
    });
    for (name, state) in [
        ("genesis", SafetyState::genesis(genesis_qc)),
        ("voted", voted),
        ("timed_out", timed_out),
    ] {
        write(&dir, "safety_state", name, &state.to_bytes());
    }
    state_sync_seeds(&dir, keys);
    println!("seeds written under {}", dir.display());
}

/// Seeds of `state_sync`: a commit proof of a certified chain signed by the
/// fuzz validators, a manifest and a page (first byte: 0, 1, 2).
fn state_sync_seeds(dir: &Path, keys: &[KeyPair]) {
    use qbind_core::execution::{Account, StateSummary, leaf_element};
    use qbind_core::state_sync::{CommitProof, StateManifest, StatePage};
    use qbind_core::types::AccountId;
    let (schedule, blocks) = qbind_core::sim::chain::certified_chain_reporting(
        ENV,
        keys,
        3,
        12,
        |h| (h > 4).then(|| (Height(h - 4), Hash32([h as u8; 32]))),
    )
    .expect("the fuzz validators make a set");
    let proof = CommitProof::build(&blocks[2..], &schedule).expect("a proof");
    let accounts: Vec<(AccountId, Account)> = (1..=3u8)
        .map(|i| (AccountId([i * 60; 32]), Account { nonce: u64::from(i), balance: 100 }))
        .collect();
    let mut summary = StateSummary {
        minted: 300,
        accounts: 3,
        ..StateSummary::default()
    };
    for (id, a) in &accounts {
        summary.accumulator.add(&leaf_element(id, a));
    }
    let manifest = StateManifest::build(
        Height(2),
        blocks[2].id(),
        summary,
        accounts.iter().map(|(i, a)| (i, a)),
        vec![(b"monetary".to_vec(), vec![0; 16])],
    )
    .expect("consistent");
    let page = StatePage {
        height: Height(2),
        chunk: 0,
        accounts,
        last: true,
    };
    for (name, kind, bytes) in [
        ("proof", 0u8, proof.to_bytes()),
        ("manifest", 1, manifest.to_bytes()),
        ("page", 2, page.to_bytes()),
    ] {
        write(dir, "state_sync", name, &[vec![kind], bytes].concat());
    }
}
