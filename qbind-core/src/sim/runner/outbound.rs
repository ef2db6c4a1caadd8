//! What leaves a node: honest sends, Byzantine rewrites of them, and the
//! simulated network (partitions, loss, delay).

use super::*;

impl Runner {
    /// Send `msg` from node `i` to validator `to` (every node running it) or
    /// to everybody.
    pub(super) fn send(&mut self, i: usize, to: Option<ValidatorId>, msg: ConsensusMsg) {
        let (honest, behavior, me) = {
            let n = &self.nodes[i];
            (n.honest, n.behavior, n.validator)
        };
        if honest {
            self.observe(me, &msg);
            self.check_certificates(i, &msg);
            self.adv.saw(&msg);
        }
        if let ConsensusMsg::Proposal(p) = &msg {
            self.proposed_at.entry(p.block.id()).or_insert(self.now);
            // Kept for forking leaders and adversaries only: a long honest
            // run would otherwise hold every block it ever saw.
            if self.keep_blocks {
                self.seen_blocks
                    .entry(p.block.id())
                    .or_insert_with(|| p.block.clone());
            }
        }
        let msg = match behavior {
            Some(Behavior::Silent) => return,
            Some(Behavior::InvalidSignatures) => corrupt_message(&msg),
            Some(Behavior::WithholdingAuthor) if to.is_none() => {
                if matches!(msg, ConsensusMsg::Batch(_)) {
                    // Everyone but the last other node gets the data.
                    let skip = (0..self.nodes.len()).rev().find(|j| *j != i);
                    let bytes = Rc::new(msg.to_bytes());
                    for j in 0..self.nodes.len() {
                        if j != i && Some(j) != skip {
                            self.transmit(i, j, me, Rc::clone(&bytes));
                        }
                    }
                    return;
                }
                msg
            }
            Some(Behavior::EquivocatingAuthor) if to.is_none() => {
                if let ConsensusMsg::Batch(sb) = &msg {
                    let alt = equivocate_batch(sb, &self.nodes[i].key, self.env);
                    let a = Rc::new(msg.to_bytes());
                    let b = Rc::new(ConsensusMsg::Batch(alt).to_bytes());
                    for j in 0..self.nodes.len() {
                        if j != i {
                            let bytes = if j % 2 == 0 { &a } else { &b };
                            self.transmit(i, j, me, Rc::clone(bytes));
                        }
                    }
                    // One node sees both and can prove it.
                    if let Some(j) = (0..self.nodes.len()).find(|j| *j != i && j % 2 == 0) {
                        self.transmit(i, j, me, Rc::clone(&b));
                    }
                    return;
                }
                msg
            }
            Some(Behavior::ForgedCertificates) if to.is_none() => match &msg {
                ConsensusMsg::Proposal(p) => {
                    match forge_certificates(p, &self.nodes[i].key, self.env) {
                        Some(forged) => ConsensusMsg::Proposal(forged),
                        None => msg,
                    }
                }
                _ => msg,
            },
            Some(
                b
                @ (Behavior::EquivocatingLeader | Behavior::DoubleVoter | Behavior::ForkingLeader),
            ) if to.is_none() => {
                if let ConsensusMsg::Proposal(p) = &msg {
                    let key = self.nodes[i].key.clone();
                    let slot = (i, p.block.view());
                    let alt = match self.alternates.get(&slot) {
                        Some(alt) => Some(alt.clone()),
                        None if b == Behavior::ForkingLeader => {
                            let depth = self.rng.gen_range(1..=3);
                            fork(p, depth, &self.seen_blocks, &key, self.env)
                        }
                        None => Some(equivocate(p, &key, self.env, self.seq)),
                    };
                    let first_time = !self.alternates.contains_key(&slot);
                    if let Some(alt) = &alt {
                        self.alternates.insert(slot, alt.clone());
                    }
                    if first_time && b == Behavior::ForkingLeader && alt.is_some() {
                        self.hide_previous_qc(i, me, p);
                    }
                    if let Some(alt) = alt {
                        self.split_proposal(i, me, b, &msg, alt);
                        return;
                    }
                }
                msg
            }
            _ => msg,
        };
        let bytes = Rc::new(msg.to_bytes());
        for j in 0..self.nodes.len() {
            if j != i
                && to.is_none_or(|v| self.nodes[j].validator == v)
                && let Some(extra) = batch_delay(&self.sc.late_batches, self.now, i, j, &msg)
            {
                self.transmit_after(i, j, me, Rc::clone(&bytes), extra);
            }
        }
        if self.nodes[i].crash_after_send
            && matches!(msg, ConsensusMsg::Vote(_) | ConsensusMsg::Timeout(_))
        {
            self.crash(i);
        }
    }

    /// A forking leader keeps the fork's recipients from learning the QC of
    /// the previous view (which only its honest block carries): it lets them
    /// time that view out with a forged timeout of its own, so they enter its
    /// view by a timeout certificate, still holding older locks.
    pub(super) fn hide_previous_qc(
        &mut self,
        i: usize,
        me: ValidatorId,
        p: &crate::consensus::Proposal,
    ) {
        let Some(parent) = self.seen_blocks.get(&p.block.parent_id()) else {
            return;
        };
        let view = p.block.view();
        let older = parent.justify().clone();
        if older.view().next() >= view {
            return;
        }
        let key = self.nodes[i].key.clone();
        let t = forged_timeout(View(view.0 - 1), &older, me, &key, self.env);
        let bytes = Rc::new(ConsensusMsg::Timeout(t).to_bytes());
        for j in 0..self.nodes.len() {
            if j != i {
                self.transmit(i, j, me, Rc::clone(&bytes));
            }
        }
    }

    /// Send `msg` to even-indexed nodes and the conflicting `alt` to odd ones
    /// (an equivocating leader also lets the first recipient see both).
    pub(super) fn split_proposal(
        &mut self,
        i: usize,
        me: ValidatorId,
        behavior: Behavior,
        msg: &ConsensusMsg,
        alt: crate::consensus::Proposal,
    ) {
        self.proposed_at.entry(alt.block.id()).or_insert(self.now);
        self.seen_blocks
            .entry(alt.block.id())
            .or_insert_with(|| alt.block.clone());
        if behavior != Behavior::EquivocatingLeader {
            self.reckless_vote(i, &alt.block);
        }
        // A forking leader shows the honest block only to the leader of view
        // v + 3 (which commits from it, and whose timeouts later carry the
        // fork's QC) and the fork to everyone else; the others split by parity.
        let honest_only = (behavior == Behavior::ForkingLeader).then(|| {
            let v = alt.block.view();
            self.leader_seen_by(Some(i), alt.block.epoch(), View(v.0 + 3))
        });
        let a = Rc::new(msg.to_bytes());
        let b = Rc::new(ConsensusMsg::Proposal(alt).to_bytes());
        let mut first = true;
        for j in 0..self.nodes.len() {
            if j == i {
                continue;
            }
            let gets_honest = match honest_only {
                Some(v) => self.nodes[j].validator == v,
                None => j % 2 == 0,
            };
            let bytes = if gets_honest { &a } else { &b };
            if gets_honest && honest_only.is_some() {
                // Late enough that the others time out the previous view first.
                let extra = self.sc.base_timeout / 2;
                self.transmit_after(i, j, me, Rc::clone(bytes), extra);
            } else {
                self.transmit(i, j, me, Rc::clone(bytes));
            }
            if first && behavior == Behavior::EquivocatingLeader {
                let other = if gets_honest { &b } else { &a };
                self.transmit(i, j, me, Rc::clone(other));
            }
            first = false;
        }
    }

    /// What honest validators sign and send, for the double-signing checks.
    pub(super) fn observe(&mut self, me: ValidatorId, msg: &ConsensusMsg) {
        match msg {
            ConsensusMsg::Vote(v) if v.voter == me => {
                self.checker
                    .vote(me, v.data.epoch, v.data.view, v.data.block_id);
            }
            ConsensusMsg::Timeout(t) if t.sender == me => {
                let qc = Hash32::digest(&t.high_qc.to_bytes());
                self.checker
                    .timeout(me, t.data.epoch, t.data.view, t.data.high_qc_view, qc);
            }
            ConsensusMsg::Proposal(p) if p.block.header().proposer == me => {
                self.checker
                    .proposal(me, p.block.epoch(), p.block.view(), p.block.id());
            }
            ConsensusMsg::Batch(sb) if sb.batch.author == me => {
                let b = &sb.batch;
                self.checker.batch(me, b.epoch, b.round, b.digest());
            }
            _ => {}
        }
    }

    pub(super) fn transmit(
        &mut self,
        from: usize,
        to: usize,
        from_v: ValidatorId,
        bytes: Rc<Vec<u8>>,
    ) {
        self.transmit_after(from, to, from_v, bytes, 0);
    }

    /// Like `transmit`, with `extra` ms of added delay.
    pub(super) fn transmit_after(
        &mut self,
        from: usize,
        to: usize,
        from_v: ValidatorId,
        bytes: Rc<Vec<u8>>,
        extra: u64,
    ) {
        self.transmit_marked(from, to, from_v, bytes, extra, false);
    }

    /// Like `transmit_after`; `noncanonical` marks bytes an honest decoder
    /// must refuse.
    pub(super) fn transmit_marked(
        &mut self,
        from: usize,
        to: usize,
        from_v: ValidatorId,
        bytes: Rc<Vec<u8>>,
        extra: u64,
        noncanonical: bool,
    ) {
        if !connected(&self.sc.partitions, self.now, from, to) {
            return;
        }
        if self.sc.loss > 0.0 && self.now < self.sc.loss_until && self.rng.gen_bool(self.sc.loss) {
            return;
        }
        let (lo, hi) = self.sc.latency;
        let copies = if self.sc.duplication > 0.0 && self.rng.gen_bool(self.sc.duplication) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.gen_range(lo..=hi) + extra;
            self.schedule_at(
                self.now + delay,
                Event::Deliver {
                    to,
                    from: from_v,
                    bytes: Rc::clone(&bytes),
                    noncanonical,
                },
            );
        }
    }
}
