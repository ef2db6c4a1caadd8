//! Outside adversaries ([`crate::sim::Adversary`]) and the checks that
//! watch for what they try: certificates honest nodes send, bounds on what
//! a node holds, nonces after replays.

use std::collections::{BTreeMap, HashSet, VecDeque};

use super::*;
use crate::consensus::{
    Proposal, QuorumCert, SignerBitmap, TimeoutCert, TimeoutData, TimeoutMsg, Vote, VoteData,
};
use crate::crypto::Signature;
use crate::signing::SignKind;
use crate::sim::Adversary;
use crate::types::Epoch;

/// Adversaries act (and bounds are checked) every this many ms.
pub(super) const EVERY_MS: u64 = 40;
/// Uncommitted blocks an honest node may hold under attack: one block per
/// (proposer, view) over the views it accepts ahead, twice over.
pub(crate) const PENDING_BOUND: usize = 2 * 1024;
/// Collector and detector entries an honest node may hold, per validator
/// of the largest set: (64 views kept + 1,024 ahead + 1) × 3 epochs × 5
/// kinds of entry (signature, first vote, timeout, signed proposal,
/// signed vote).
pub(crate) const COLLECTOR_BOUND_PER_VALIDATOR: usize = 1_089 * 3 * 5;
/// Committed transactions a resubmitter remembers.
const REPLAY_POOL: usize = 512;

/// What the adversaries hold and have seen of honest traffic.
pub(crate) struct AdversaryState {
    /// Retired and revoked keys.
    held: Vec<KeyPair>,
    /// Per epoch: the held keys that verify for each position, if they
    /// reach a quorum of that epoch's stake.
    quorum_in: BTreeMap<Epoch, Option<Vec<(ValidatorId, KeyPair)>>>,
    /// Recent honest votes.
    votes: VecDeque<Vote>,
    /// Recent honest timeouts.
    timeouts: VecDeque<TimeoutMsg>,
    /// Highest honest QC seen per epoch.
    qcs: BTreeMap<Epoch, QuorumCert>,
    /// The last honest message's bytes.
    last_msg: Option<Vec<u8>>,
    /// Committed transactions seen delivered.
    committed: VecDeque<Vec<u8>>,
    /// Ids of transactions a resubmitter sent again.
    pub(super) replayed: HashSet<Hash32>,
    /// Certificates already checked.
    checked: HashSet<Hash32>,
    /// Per honest node and sender account: distinct nonces delivered.
    nonces: BTreeMap<(usize, crate::types::AccountId), std::collections::BTreeSet<u64>>,
}

impl AdversaryState {
    pub(super) fn new(held: Vec<KeyPair>) -> Self {
        AdversaryState {
            held,
            quorum_in: BTreeMap::new(),
            votes: VecDeque::new(),
            timeouts: VecDeque::new(),
            qcs: BTreeMap::new(),
            last_msg: None,
            committed: VecDeque::new(),
            replayed: HashSet::new(),
            checked: HashSet::new(),
            nonces: BTreeMap::new(),
        }
    }

    /// An honest node sent `msg`.
    pub(super) fn saw(&mut self, msg: &ConsensusMsg) {
        match msg {
            ConsensusMsg::Vote(v) => push_bounded(&mut self.votes, v.clone(), 64),
            ConsensusMsg::Timeout(t) => push_bounded(&mut self.timeouts, t.clone(), 64),
            ConsensusMsg::Proposal(p) => {
                let qc = p.block.justify();
                let e = qc.data.epoch;
                if self.qcs.get(&e).is_none_or(|q| q.view() < qc.view()) {
                    self.qcs.insert(e, qc.clone());
                }
            }
            _ => {}
        }
        self.last_msg = Some(msg.to_bytes());
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T, cap: usize) {
    q.push_back(item);
    while q.len() > cap {
        q.pop_front();
    }
}

/// A QC on `data` signed by `signers`.
fn forge_qc(
    data: VoteData,
    n: usize,
    signers: &[(ValidatorId, KeyPair)],
    env: NetworkEnvironment,
) -> QuorumCert {
    let mut bitmap = SignerBitmap::new(n);
    let mut sorted: Vec<&(ValidatorId, KeyPair)> = signers.iter().collect();
    sorted.sort_by_key(|(id, _)| *id);
    let mut signatures = Vec::new();
    for (id, key) in sorted {
        if bitmap.set(*id) {
            signatures.push(sign_domain(key, env, SignKind::Vote, &data.to_bytes()));
        }
    }
    QuorumCert {
        data,
        signers: bitmap,
        signatures,
    }
}

impl Runner {
    fn honest_epoch(&self) -> Epoch {
        self.nodes
            .iter()
            .filter(|n| n.honest)
            .filter_map(|n| n.machine().map(HotStuff::epoch))
            .max()
            .unwrap_or_default()
    }

    /// Send `msg` as validator `from` to every honest running node.
    fn inject(&mut self, from: ValidatorId, msg: &ConsensusMsg, noncanonical: bool) {
        let mut bytes = msg.to_bytes();
        if noncanonical {
            bytes.push(0);
        }
        let bytes = Rc::new(bytes);
        for j in 0..self.nodes.len() {
            if self.nodes[j].honest {
                self.transmit_marked(j, j, from, Rc::clone(&bytes), 0, noncanonical);
            }
        }
    }

    pub(super) fn adversary_tick(&mut self) {
        let adversaries = self.sc.adversaries.clone();
        for a in adversaries {
            match a {
                Adversary::OldKeys => self.old_keys(),
                Adversary::Undersized { node } => self.undersized(node),
                Adversary::Mislabelled { node } => self.mislabelled(node),
                Adversary::Resubmitter => self.resubmit(),
                Adversary::Resources { node } => self.resources(node),
            }
        }
    }

    /// The held keys valid for each position of `epoch`'s set, if they
    /// reach a quorum of its stake.
    fn held_quorum(&mut self, epoch: Epoch) -> Option<Vec<(ValidatorId, KeyPair)>> {
        if let Some(q) = self.adv.quorum_in.get(&epoch) {
            return q.clone();
        }
        let set = self.schedule.set(epoch).clone();
        let probe = b"probe";
        let mut signers = Vec::new();
        for info in set.validators() {
            if let Some(k) = self.adv.held.iter().find(|k| {
                let sig = sign_domain(k, self.env, SignKind::Vote, probe);
                set.verify_in_epoch(info.id, epoch, self.env, SignKind::Vote, probe, &sig)
                    .is_ok()
            }) {
                signers.push((info.id, k.clone()));
            }
        }
        let ids: Vec<ValidatorId> = signers.iter().map(|(id, _)| *id).collect();
        let result = set.is_quorum(set.stake_of(&ids)).then_some(signers);
        self.adv.quorum_in.insert(epoch, result.clone());
        result
    }

    /// Forge with retired and revoked keys for every past epoch in which
    /// they hold a quorum.
    fn old_keys(&mut self) {
        let current = self.honest_epoch();
        let view = self.max_honest_view();
        for e in 0..current.0 {
            let epoch = Epoch(e);
            let Some(held) = self.held_quorum(epoch) else {
                continue;
            };
            let n = self.schedule.set(epoch).len();
            let Some((sender, key)) = held.first().cloned() else {
                continue;
            };
            let random_id = Hash32::digest(&self.rng.r#gen::<u64>().to_be_bytes());
            // A recent block of the current epoch, certified under the old
            // epoch's label.
            let recent = self
                .seen_blocks
                .values()
                .filter(|b| b.epoch() == current)
                .max_by_key(|b| b.view())
                .map(|b| (b.view(), b.id()));
            let mut qcs = vec![
                (View(crate::consensus::MAX_VIEW.0 - 1), random_id),
                (View(view.0 + 3), random_id),
            ];
            if let Some(r) = recent {
                qcs.push(r);
            }
            // A real certificate of that previous epoch, re-proposed.
            let real = self.adv.qcs.get(&epoch).cloned();
            for (v, id) in qcs {
                let data = VoteData {
                    epoch,
                    view: v,
                    block_id: id,
                };
                let qc = forge_qc(data, n, &held, self.env);
                let t = TimeoutData {
                    epoch,
                    view: v.next(),
                    high_qc_view: v,
                };
                let msg = ConsensusMsg::Timeout(TimeoutMsg {
                    data: t,
                    high_qc: qc,
                    vote: None,
                    sender,
                    signature: sign_domain(&key, self.env, SignKind::Timeout, &t.to_bytes()),
                });
                self.inject(sender, &msg, false);
            }
            // A TC for a view ahead.
            let tc = forge_tc(epoch, View(view.0 + 2), n, &held, self.env);
            self.inject(sender, &ConsensusMsg::TimeoutCert(tc), false);
            // A proposal of the old epoch at the current view, led by a held
            // key, carrying a real certificate of that epoch.
            let leader = self.leader_seen_by(None, epoch, view);
            if let (Some(qc), Some((_, lk))) = (real, held.iter().find(|(id, _)| *id == leader))
                && let Some(parent) = self.seen_blocks.get(&qc.block_id()).cloned()
                && parent.view() < view
            {
                let header = crate::consensus::BlockHeader {
                    epoch,
                    view,
                    height: parent.height().next(),
                    parent_id: parent.id(),
                    justify_view: qc.view(),
                    proposer: leader,
                    payload_digest: Hash32::ZERO,
                    batch_commitment: Hash32::ZERO,
                    exec_height: Height(0),
                    exec_state_root: Hash32::ZERO,
                };
                let block = Block::new(header, qc, crate::consensus::Payload::empty());
                let signature =
                    sign_domain(lk, self.env, SignKind::Proposal, &block.id().to_bytes());
                let p = Proposal {
                    block,
                    tc: None,
                    signature,
                };
                self.inject(leader, &ConsensusMsg::Proposal(p), false);
            }
            // Votes with old keys for the current view.
            if let Some((_, id)) = recent {
                for (voter, k) in held.iter().take(2) {
                    let data = VoteData {
                        epoch,
                        view,
                        block_id: id,
                    };
                    let vote = Vote {
                        data,
                        voter: *voter,
                        signature: sign_domain(k, self.env, SignKind::Vote, &data.to_bytes()),
                    };
                    self.inject(*voter, &ConsensusMsg::Vote(vote), false);
                }
            }
        }
    }

    /// The key and id of node `node` (its current key).
    fn node_key(&self, node: usize) -> Option<(ValidatorId, KeyPair)> {
        let n = self.nodes.get(node)?;
        let epoch = self.honest_epoch();
        let key = n
            .rotated_keys
            .iter()
            .rev()
            .find(|(from, _)| epoch >= *from)
            .map_or(&n.key, |(_, k)| k);
        Some((n.validator, key.clone()))
    }

    /// QCs and TCs one stake unit short of a quorum.
    fn undersized(&mut self, node: usize) {
        let Some((me, key)) = self.node_key(node) else {
            return;
        };
        let Some(last) = self.adv.votes.back().cloned() else {
            return;
        };
        let data = last.data;
        let set = self.schedule.set(data.epoch).clone();
        let mut signers: Vec<(ValidatorId, Signature)> = Vec::new();
        if set.get(me).is_some() {
            signers.push((
                me,
                sign_domain(&key, self.env, SignKind::Vote, &data.to_bytes()),
            ));
        }
        for v in self.adv.votes.iter().filter(|v| v.data == data) {
            if !signers.iter().any(|(id, _)| *id == v.voter) {
                signers.push((v.voter, v.signature.clone()));
            }
        }
        signers.sort_by_key(|(id, _)| *id);
        // Keep signers while one stake unit short of a quorum at most.
        let mut kept = Vec::new();
        for s in signers {
            let mut ids: Vec<ValidatorId> = kept.iter().map(|(id, _)| *id).collect();
            ids.push(s.0);
            if set.stake_of(&ids).saturating_add(1) <= set.quorum_stake() {
                kept.push(s);
            }
        }
        if kept.is_empty() {
            return;
        }
        let mut bitmap = SignerBitmap::new(set.len());
        let mut sigs = Vec::new();
        for (id, sig) in kept {
            if bitmap.set(id) {
                sigs.push(sig);
            }
        }
        let qc = QuorumCert {
            data,
            signers: bitmap,
            signatures: sigs,
        };
        let view = self.max_honest_view().max(data.view.next());
        let t = TimeoutData {
            epoch: data.epoch,
            view,
            high_qc_view: data.view,
        };
        let msg = ConsensusMsg::Timeout(TimeoutMsg {
            data: t,
            high_qc: qc,
            vote: None,
            sender: me,
            signature: sign_domain(&key, self.env, SignKind::Timeout, &t.to_bytes()),
        });
        self.inject(me, &msg, false);
        // A TC from the honest timeouts of one view, one short.
        if let Some(last) = self.adv.timeouts.back().cloned() {
            let d = last.data;
            let set = self.schedule.set(d.epoch).clone();
            let mut entries: Vec<(ValidatorId, View, Signature)> = Vec::new();
            for t in self
                .adv
                .timeouts
                .iter()
                .filter(|t| t.data.view == d.view && t.data.epoch == d.epoch)
            {
                if !entries.iter().any(|(id, _, _)| *id == t.sender) {
                    entries.push((t.sender, t.data.high_qc_view, t.signature.clone()));
                }
            }
            entries.sort_by_key(|(id, _, _)| *id);
            let mut bitmap = SignerBitmap::new(set.len());
            let (mut hvs, mut sigs, mut ids) = (Vec::new(), Vec::new(), Vec::new());
            for (id, hv, sig) in entries {
                ids.push(id);
                if set.stake_of(&ids).saturating_add(1) > set.quorum_stake() {
                    break;
                }
                if bitmap.set(id) {
                    hvs.push(hv);
                    sigs.push(sig);
                }
            }
            if !sigs.is_empty() {
                let tc = TimeoutCert {
                    epoch: d.epoch,
                    view: d.view,
                    signers: bitmap,
                    high_qc_views: hvs,
                    signatures: sigs,
                };
                self.inject(me, &ConsensusMsg::TimeoutCert(tc), false);
            }
        }
    }

    /// Validly signed messages with far-future views and far epoch labels,
    /// and non-canonical copies of honest messages.
    fn mislabelled(&mut self, node: usize) {
        let Some((me, key)) = self.node_key(node) else {
            return;
        };
        let epoch = self.honest_epoch();
        let view = self.max_honest_view();
        let far_epochs = [epoch.0 + 1, epoch.0 + 2, epoch.0 + 1_000, u64::MAX];
        let far_views = [
            view.0 + 1,
            view.0 + 5_000,
            crate::consensus::MAX_VIEW.0,
            u64::MAX - 1,
        ];
        let e = far_epochs[self.rng.gen_range(0..far_epochs.len())];
        let v = far_views[self.rng.gen_range(0..far_views.len())];
        let block_id = Hash32::digest(&self.rng.r#gen::<u64>().to_be_bytes());
        for (e, v) in [(e, view.0), (epoch.0, v), (e, v)] {
            let data = VoteData {
                epoch: Epoch(e),
                view: View(v),
                block_id,
            };
            let vote = Vote {
                data,
                voter: me,
                signature: sign_domain(&key, self.env, SignKind::Vote, &data.to_bytes()),
            };
            self.inject(me, &ConsensusMsg::Vote(vote), false);
            let genesis = Block::genesis(self.env.chain_id()).justify().clone();
            let t = TimeoutData {
                epoch: Epoch(e),
                view: View(v.max(1)),
                high_qc_view: View(0),
            };
            let timeout = TimeoutMsg {
                data: t,
                high_qc: genesis,
                vote: None,
                sender: me,
                signature: sign_domain(&key, self.env, SignKind::Timeout, &t.to_bytes()),
            };
            self.inject(me, &ConsensusMsg::Timeout(timeout), false);
        }
        if let Some(bytes) = self.adv.last_msg.clone()
            && let Ok(msg) = ConsensusMsg::decode_message(&bytes, &self.cfg.limits)
        {
            self.inject(me, &msg, true);
        }
    }

    /// Replay committed transactions to random validators.
    fn resubmit(&mut self) {
        if self.adv.committed.is_empty() {
            return;
        }
        for _ in 0..4 {
            let k = self.rng.gen_range(0..self.adv.committed.len());
            let Some(tx) = self.adv.committed.get(k).cloned() else {
                return;
            };
            self.adv.replayed.insert(Hash32::digest(&tx));
            let target = self.rng.gen_range(0..self.nodes.len());
            self.feed(target, Input::SubmitTransaction(tx));
        }
    }

    /// Equivocating proposals for views ahead, bogus epochs, replayed
    /// votes, DAG batches for far rounds.
    fn resources(&mut self, node: usize) {
        let Some((me, key)) = self.node_key(node) else {
            return;
        };
        let epoch = self.honest_epoch();
        let view = self.max_honest_view();
        // Proposals: several different blocks for views it leads ahead.
        let high = self.adv.qcs.get(&epoch).cloned();
        if let Some(qc) = high
            && let Some(parent) = self.seen_blocks.get(&qc.block_id()).cloned()
        {
            let mut made = 0;
            let mut v = view.0.max(parent.view().0 + 1);
            while made < 8 && v < view.0 + 1_024 {
                v += 1 + self.rng.gen_range(0..64);
                if self.leader_seen_by(Some(node), epoch, View(v)) != me {
                    continue;
                }
                made += 1;
                for k in 0..3u64 {
                    let header = crate::consensus::BlockHeader {
                        epoch,
                        view: View(v),
                        height: parent.height().next(),
                        parent_id: parent.id(),
                        justify_view: qc.view(),
                        proposer: me,
                        payload_digest: Hash32::ZERO,
                        batch_commitment: Hash32::ZERO,
                        exec_height: Height(0),
                        exec_state_root: Hash32::ZERO,
                    };
                    let payload = if self.sc.dag {
                        crate::consensus::Payload::empty()
                    } else {
                        crate::consensus::Payload::Transactions(vec![
                            format!("flood-{v}-{k}-{}", self.seq).into_bytes(),
                        ])
                    };
                    let mut block = Block::new(header, qc.clone(), payload);
                    let mut h = block.header().clone();
                    h.payload_digest = block.payload().digest();
                    h.batch_commitment = block.payload().batch_commitment();
                    block = Block::new(h, qc.clone(), block.payload().clone());
                    let signature =
                        sign_domain(&key, self.env, SignKind::Proposal, &block.id().to_bytes());
                    let p = Proposal {
                        block,
                        tc: None,
                        signature,
                    };
                    self.inject(me, &ConsensusMsg::Proposal(p), false);
                }
            }
        }
        // Votes with bogus epochs.
        for _ in 0..8 {
            let data = VoteData {
                epoch: Epoch(self.rng.gen_range(0..10_000)),
                view: View(view.0 + self.rng.gen_range(0..1_024)),
                block_id: Hash32::digest(&self.rng.r#gen::<u64>().to_be_bytes()),
            };
            let vote = Vote {
                data,
                voter: me,
                signature: sign_domain(&key, self.env, SignKind::Vote, &data.to_bytes()),
            };
            self.inject(me, &ConsensusMsg::Vote(vote), false);
        }
        // Honest votes again (duplicates at their leaders).
        let votes: Vec<Vote> = self.adv.votes.iter().rev().take(8).cloned().collect();
        for v in votes {
            self.inject(v.voter, &ConsensusMsg::Vote(v), false);
        }
        // DAG: batches for far rounds.
        if self.sc.dag {
            for _ in 0..4 {
                let batch = crate::dag::Batch {
                    epoch,
                    author: me,
                    round: self.rng.gen_range(1..1_000_000),
                    txs: vec![vec![0xab; 512]; 8],
                };
                let signature =
                    sign_domain(&key, self.env, SignKind::Batch, &batch.digest().to_bytes());
                let sb = crate::dag::SignedBatch { batch, signature };
                self.inject(me, &ConsensusMsg::Batch(sb), false);
            }
        }
    }

    /// Every honest running node stays under the stated bounds.
    pub(super) fn check_bounds(&mut self) {
        let validators = self.schedule.max_validators();
        let mut over = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let (true, Some(m)) = (n.honest, n.machine()) else {
                continue;
            };
            if m.pending_blocks() > PENDING_BOUND {
                over.push(Violation::OverBound {
                    node: i,
                    what: "pending blocks",
                    held: m.pending_blocks(),
                });
            }
            if m.collector_entries() > COLLECTOR_BOUND_PER_VALIDATOR * validators {
                over.push(Violation::OverBound {
                    node: i,
                    what: "collector entries",
                    held: m.collector_entries(),
                });
            }
        }
        for v in over {
            self.checker.report(v);
        }
        // Between inputs, every delivery of what a store executed has been
        // observed.
        for i in 0..self.nodes.len() {
            if self.nodes[i].honest && self.nodes[i].replica.is_some() {
                let executed = self.nodes[i].executed;
                self.check_nonces(i, executed);
            }
        }
    }

    /// Every certificate an honest node sends carries valid signatures of
    /// more than two thirds of its epoch's stake, and a QC names the epoch
    /// and view of its block — checked with the raw signature verifier and
    /// the checker's own stake arithmetic, not the core's quorum code.
    pub(super) fn check_certificates(&mut self, i: usize, msg: &ConsensusMsg) {
        let view_signed = match msg {
            ConsensusMsg::Vote(v) => Some(v.data.view),
            ConsensusMsg::Timeout(t) => Some(t.data.view),
            _ => None,
        };
        if let Some(v) = view_signed {
            self.checker.signed(i, v);
        }
        let (qc, tc) = match msg {
            ConsensusMsg::Proposal(p) => (Some(p.block.justify()), p.tc.as_ref()),
            ConsensusMsg::Timeout(t) => (Some(&t.high_qc), None),
            ConsensusMsg::TimeoutCert(tc) => (None, Some(tc)),
            _ => (None, None),
        };
        if let Some(qc) = qc
            && qc.view() != View(0)
        {
            let key = Hash32::digest(&qc.to_bytes());
            if self.adv.checked.insert(key) {
                let ok = self.quorum_signed(
                    qc.data.epoch,
                    &qc.signers,
                    &qc.signatures,
                    SignKind::Vote,
                    |_| qc.data.to_bytes(),
                ) && self
                    .seen_blocks
                    .get(&qc.block_id())
                    .is_none_or(|b| b.epoch() == qc.data.epoch && b.view() == qc.view());
                if !ok {
                    self.checker.report(Violation::BadCertificate {
                        node: i,
                        view: qc.view(),
                    });
                }
            }
        }
        if let Some(tc) = tc {
            let key = Hash32::digest(&tc.to_bytes());
            if self.adv.checked.insert(key) {
                let hvs = tc.high_qc_views.clone();
                let ok = hvs.len() == tc.signatures.len()
                    && self.quorum_signed(
                        tc.epoch,
                        &tc.signers,
                        &tc.signatures,
                        SignKind::Timeout,
                        |k| {
                            TimeoutData {
                                epoch: tc.epoch,
                                view: tc.view,
                                high_qc_view: hvs.get(k).copied().unwrap_or_default(),
                            }
                            .to_bytes()
                        },
                    );
                if !ok {
                    self.checker.report(Violation::BadCertificate {
                        node: i,
                        view: tc.view,
                    });
                }
            }
        }
    }

    /// Distinct signers, each signature valid, stake × 3 > total × 2.
    fn quorum_signed(
        &self,
        epoch: Epoch,
        signers: &SignerBitmap,
        signatures: &[Signature],
        kind: SignKind,
        message: impl Fn(usize) -> Vec<u8>,
    ) -> bool {
        let set = self.schedule.set(epoch);
        let ids: Vec<ValidatorId> = signers.iter().collect();
        if ids.len() != signatures.len() || signers.len() != set.len() {
            return false;
        }
        let mut stake: u128 = 0;
        let mut seen = std::collections::BTreeSet::new();
        for (k, (id, sig)) in ids.iter().zip(signatures).enumerate() {
            if !seen.insert(*id)
                || set
                    .verify_in_epoch(*id, epoch, self.env, kind, &message(k), sig)
                    .is_err()
            {
                return false;
            }
            stake += u128::from(set.get(*id).map_or(0, |v| v.stake));
        }
        let total: u128 = set.validators().iter().map(|v| u128::from(v.stake)).sum();
        stake * 3 > total * 2
    }

    /// Honest node `i` delivered `txs` at `height` (for the resubmitter
    /// and the nonce check).
    pub(super) fn note_delivered(&mut self, i: usize, _height: Height, txs: &[Vec<u8>]) {
        let replaying = self.sc.adversaries.contains(&Adversary::Resubmitter);
        for tx in txs {
            if replaying {
                push_bounded(&mut self.adv.committed, tx.clone(), REPLAY_POOL);
            }
            if self.workload.is_some()
                && let Ok(t) = crate::execution::Transaction::from_bytes(tx)
            {
                self.adv
                    .nonces
                    .entry((i, t.sender_id()))
                    .or_default()
                    .insert(t.nonce());
            }
        }
    }

    /// Honest node `i` has executed up to `height`: no account's nonce is above
    /// the number of distinct nonces of its transactions delivered so far
    /// (each nonce value can advance it once).
    pub(super) fn check_nonces(&mut self, i: usize, height: Height) {
        if self.workload.is_none() {
            return;
        }
        let mut bad = false;
        for ((node, account), nonces) in &self.adv.nonces {
            if *node != i {
                continue;
            }
            if let Some(a) = self.nodes[i].account(account)
                && a.nonce > nonces.len() as u64
            {
                bad = true;
            }
        }
        if bad {
            self.checker
                .report(Violation::NonceReplay { node: i, height });
        }
    }
}

/// A TC of `epoch` for `view` signed by every held key (high-QC views 0).
fn forge_tc(
    epoch: Epoch,
    view: View,
    n: usize,
    held: &[(ValidatorId, KeyPair)],
    env: NetworkEnvironment,
) -> TimeoutCert {
    let mut signers = SignerBitmap::new(n);
    let mut signatures = Vec::new();
    let mut high_qc_views = Vec::new();
    let mut sorted = held.to_vec();
    sorted.sort_by_key(|(id, _)| *id);
    for (id, k) in &sorted {
        if signers.set(*id) {
            let d = TimeoutData {
                epoch,
                view,
                high_qc_view: View(0),
            };
            signatures.push(sign_domain(k, env, SignKind::Timeout, &d.to_bytes()));
            high_qc_views.push(View(0));
        }
    }
    TimeoutCert {
        epoch,
        view,
        signers,
        high_qc_views,
        signatures,
    }
}
