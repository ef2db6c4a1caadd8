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
        ConsensusMsg::TimeoutCert(_)
        | ConsensusMsg::SyncRequest(_)
        | ConsensusMsg::SyncResponse(_) => {}
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
    let Payload::Transactions(mut txs) = p.block.payload().clone();
    txs.push(format!("equivocation-{marker}").into_bytes());
    let block = Block::new(
        p.block.header().clone(),
        p.block.justify().clone(),
        Payload::Transactions(txs),
    );
    let signature = sign_domain(key, env, SignKind::Proposal, &block.id().to_bytes());
    Proposal {
        block,
        tc: p.tc.clone(),
        signature,
    }
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
