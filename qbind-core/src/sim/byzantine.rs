//! Message transformations of faulty simulated validators.

use crate::codec::Encode;
use crate::consensus::{Block, ConsensusMsg, Payload, Proposal, Vote, VoteData};
use crate::crypto::{KeyPair, Signature};
use crate::signing::{SignKind, sign_domain};
use crate::types::{NetworkEnvironment, ValidatorId};

/// Flip one bit of a signature.
pub(crate) fn corrupt(sig: &Signature) -> Signature {
    let mut bytes = sig.as_bytes().to_vec();
    if let Some(b) = bytes.get_mut(17) {
        *b ^= 0x01;
    }
    Signature::from_bytes(&bytes).unwrap_or_else(|_| sig.clone())
}

/// The same message with its own signature corrupted.
pub(crate) fn corrupt_message(msg: &ConsensusMsg) -> ConsensusMsg {
    let mut msg = msg.clone();
    match &mut msg {
        ConsensusMsg::Proposal(p) => p.signature = corrupt(&p.signature),
        ConsensusMsg::Vote(v) => v.signature = corrupt(&v.signature),
        ConsensusMsg::Timeout(t) => t.signature = corrupt(&t.signature),
        ConsensusMsg::Batch(b) => b.signature = corrupt(&b.signature),
        ConsensusMsg::BatchAck(a) => a.signature = corrupt(&a.signature),
        ConsensusMsg::TimeoutCert(_)
        | ConsensusMsg::SyncRequest(_)
        | ConsensusMsg::SyncResponse(_)
        | ConsensusMsg::SyncRange(_)
        | ConsensusMsg::BatchCert(_)
        | ConsensusMsg::BatchFetch(_) => {}
    }
    msg
}

/// A second, conflicting proposal for the same view: same parent and QC, a
/// different payload, validly signed.
pub(crate) fn equivocate(
    p: &Proposal,
    key: &KeyPair,
    env: NetworkEnvironment,
    marker: u64,
) -> Proposal {
    let payload = match p.block.payload().clone() {
        Payload::Transactions(mut txs) => {
            txs.push(format!("equivocation-{marker}").into_bytes());
            Payload::Transactions(txs)
        }
        // A different (possibly empty) selection of certified batches.
        Payload::Batches(mut certs) => {
            if certs.pop().is_none() {
                return equivocate_empty(p, key, env, marker);
            }
            Payload::Batches(certs)
        }
    };
    let block = Block::new(p.block.header().clone(), p.block.justify().clone(), payload);
    let signature = sign_domain(key, env, SignKind::Proposal, &block.id().to_bytes());
    Proposal {
        block,
        tc: p.tc.clone(),
        signature,
    }
}

/// With nothing to drop, equivocate by a different view-local choice: an
/// inline payload (which DAG-mode validators refuse, as they must).
fn equivocate_empty(p: &Proposal, key: &KeyPair, env: NetworkEnvironment, marker: u64) -> Proposal {
    let payload = Payload::Transactions(vec![format!("equivocation-{marker}").into_bytes()]);
    let block = Block::new(p.block.header().clone(), p.block.justify().clone(), payload);
    let signature = sign_domain(key, env, SignKind::Proposal, &block.id().to_bytes());
    Proposal {
        block,
        tc: p.tc.clone(),
        signature,
    }
}

/// A conflicting proposal that extends the `depth`-th ancestor of `p`'s
/// parent (with the QC that the next block on the path holds for it), for the
/// same view, validly signed. `None` if the ancestry is not known.
pub(crate) fn fork(
    p: &Proposal,
    depth: usize,
    blocks: &std::collections::HashMap<crate::types::Hash32, Block>,
    key: &KeyPair,
    env: NetworkEnvironment,
) -> Option<Proposal> {
    let mut child = blocks.get(&p.block.parent_id())?.clone();
    let mut parent = blocks.get(&child.parent_id())?.clone();
    for _ in 1..depth {
        let up = blocks.get(&parent.parent_id())?.clone();
        child = parent;
        parent = up;
    }
    if parent.epoch() != p.block.epoch() || child.justify().block_id() != parent.id() {
        return None;
    }
    let header = crate::consensus::BlockHeader {
        epoch: p.block.epoch(),
        view: p.block.view(),
        height: parent.height().next(),
        parent_id: parent.id(),
        justify_view: child.justify().view(),
        proposer: p.block.header().proposer,
        payload_digest: crate::types::Hash32::ZERO,
        batch_commitment: crate::types::Hash32::ZERO,
        exec_height: p.block.header().exec_height,
        exec_state_root: p.block.header().exec_state_root,
    };
    let block = Block::new(header, child.justify().clone(), p.block.payload().clone());
    let signature = sign_domain(key, env, SignKind::Proposal, &block.id().to_bytes());
    Some(Proposal {
        block,
        tc: p.tc.clone(),
        signature,
    })
}

/// A vote for `block` by `voter`, ignoring every safety rule.
pub(crate) fn reckless_vote(
    block: &Block,
    voter: ValidatorId,
    key: &KeyPair,
    env: NetworkEnvironment,
) -> Vote {
    let data = VoteData {
        epoch: block.epoch(),
        view: block.view(),
        block_id: block.id(),
    };
    Vote {
        data,
        voter,
        signature: sign_domain(key, env, SignKind::Vote, &data.to_bytes()),
    }
}

/// A signed timeout for `view` carrying `high_qc`, with no vote: lets
/// validators form a timeout certificate without learning a newer QC.
pub(crate) fn forged_timeout(
    view: crate::types::View,
    high_qc: &crate::consensus::QuorumCert,
    sender: ValidatorId,
    key: &KeyPair,
    env: NetworkEnvironment,
) -> crate::consensus::TimeoutMsg {
    let data = crate::consensus::TimeoutData {
        epoch: high_qc.data.epoch,
        view,
        high_qc_view: high_qc.view(),
    };
    crate::consensus::TimeoutMsg {
        data,
        high_qc: high_qc.clone(),
        vote: None,
        sender,
        signature: sign_domain(key, env, SignKind::Timeout, &data.to_bytes()),
    }
}

/// A second, different batch for the same slot, validly signed.
pub(crate) fn equivocate_batch(
    sb: &crate::dag::SignedBatch,
    key: &KeyPair,
    env: NetworkEnvironment,
) -> crate::dag::SignedBatch {
    let mut batch = sb.batch.clone();
    batch
        .txs
        .push(format!("batch-equivocation-{}", batch.round).into_bytes());
    let signature = sign_domain(key, env, SignKind::Batch, &batch.digest().to_bytes());
    crate::dag::SignedBatch { batch, signature }
}

/// The same proposal with its first certificate pointing at a batch nobody
/// acknowledged (the signatures no longer match), validly signed.
pub(crate) fn forge_certificates(
    p: &Proposal,
    key: &KeyPair,
    env: NetworkEnvironment,
) -> Option<Proposal> {
    let Payload::Batches(certs) = p.block.payload() else {
        return None;
    };
    let mut certs = certs.clone();
    let first = certs.first_mut()?;
    first.batch.digest = crate::types::Hash32::digest(first.batch.digest.as_bytes());
    let block = Block::new(
        p.block.header().clone(),
        p.block.justify().clone(),
        Payload::Batches(certs),
    );
    let signature = sign_domain(key, env, SignKind::Proposal, &block.id().to_bytes());
    Some(Proposal {
        block,
        tc: p.tc.clone(),
        signature,
    })
}
