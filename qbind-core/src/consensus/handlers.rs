//! One handler per consensus message, and block placement (validation
//! against the parent, insertion, orphans, catch-up).

use crate::codec::Encode;
use crate::consensus::certs::sig_error;
use crate::consensus::error::ConsensusError;
use crate::consensus::machine::HotStuff;
use crate::consensus::messages::{Block, ConsensusMsg, Proposal, TimeoutCert, TimeoutMsg, Vote};
use crate::dag::DagMsg;
use crate::quorum::SigFailure;
use crate::signing::SignKind;
use crate::types::{Hash32, Height, ValidatorId};

/// Blocks past its epoch's last block that a proposal's height may claim
/// when taken as a catch-up hint (the payload-free blocks before the epoch
/// change commits).
const RANGE_HINT_SUFFIX: u32 = 8;

/// Uncommitted blocks held at most (a backstop: proposals are bounded by one
/// per proposer and view within `FUTURE_VIEWS` of the current view and the
/// epoch window, and fetched blocks by the fetches outstanding).
pub(crate) const MAX_PENDING_BLOCKS: usize = 8_192;

/// How a block reached this validator, which decides how its epoch-start
/// rule is checked (see `check_against_parent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A live proposal this validator may vote on.
    Proposal,
    /// A block fetched by sync: never voted on, committed only by verified
    /// QCs of later blocks.
    Sync,
}

/// Where a block stands after an attempt to place it in the tree.
pub(crate) enum Placement {
    /// In the tree (inserted now or before).
    Placed,
    /// Block `0` must be fetched first.
    Missing(Hash32),
}

impl HotStuff {
    pub(crate) fn on_message(
        &mut self,
        from: ValidatorId,
        msg: ConsensusMsg,
    ) -> Result<(), ConsensusError> {
        match msg {
            ConsensusMsg::Proposal(p) => self.on_proposal(from, p),
            ConsensusMsg::Vote(v) => self.on_vote(from, v),
            ConsensusMsg::Timeout(t) => self.on_timeout_msg(from, t),
            ConsensusMsg::TimeoutCert(tc) => self.on_tc(tc),
            ConsensusMsg::SyncRequest(r) => {
                if self.may_serve(from) {
                    self.on_sync_request(from, r);
                }
                Ok(())
            }
            ConsensusMsg::SyncResponse(r) => self.on_sync_response(from, r),
            ConsensusMsg::SyncRange(r) => {
                if self.may_serve(from) {
                    self.on_sync_range(from, r);
                }
                Ok(())
            }
            ConsensusMsg::Batch(b) => self.on_dag_message(from, DagMsg::Batch(b)),
            ConsensusMsg::BatchAck(a) => self.on_dag_message(from, DagMsg::BatchAck(a)),
            ConsensusMsg::BatchCert(c) => {
                let result = self.on_dag_message(from, DagMsg::BatchCert(c));
                // A proposal held back while idle may now carry it.
                self.retry_idle_proposal();
                result
            }
            ConsensusMsg::BatchFetch(d) => {
                if !self.may_serve(from) {
                    return Ok(());
                }
                self.on_dag_message(from, DagMsg::BatchFetch(d))
            }
        }
    }

    /// Whether a request from `from` to be served blocks or batch data is
    /// answered: always for a member of the current set, within the
    /// per-peer budget for anyone else (counted when refused).
    fn may_serve(&mut self, from: ValidatorId) -> bool {
        if self.schedule.set(self.epoch).get(from).is_some() {
            return true;
        }
        let allowed = self
            .serve_budget
            .take(from, self.now, self.cfg.serve_non_member_per_sec);
        if !allowed {
            self.metrics.sync_serve_refused += 1;
        }
        allowed
    }

    /// Internal consistency of a block, independent of any other block.
    ///
    /// Consensus §C3.1 (docs/consensus.md).
    pub(crate) fn check_block_shape(&self, block: &Block) -> Result<(), ConsensusError> {
        let bad = |why| ConsensusError::InvalidBlock {
            block: block.id(),
            why,
        };
        let h = block.header();
        if h.payload_digest != block.payload().digest() {
            return Err(bad("payload digest mismatch"));
        }
        if h.justify_view != block.justify().view() {
            return Err(bad("justify view mismatch"));
        }
        if h.batch_commitment != block.payload().batch_commitment() {
            return Err(bad("batch commitment mismatch"));
        }
        if h.view <= block.justify().view() {
            return Err(bad("view not above its justify view"));
        }
        if block.payload().tx_count() > self.cfg.max_block_txs {
            return Err(bad("too many transactions"));
        }
        if h.exec_height >= h.height {
            return Err(bad("executed height not below the block's height"));
        }
        // A proposer reports a height at least four below its block (one
        // its voters have executed by then, see `propose`): a report
        // closer to the block could only name a height no voter can check,
        // and its root would be certified unchecked (issue #18 review).
        if h.exec_height.0 > 0 && h.exec_height.0.saturating_add(4) > h.height.0 {
            return Err(bad(
                "executed height less than four below the block's height",
            ));
        }
        if h.exec_height.0 == 0 && h.exec_state_root != Hash32::ZERO {
            return Err(bad("state root without an executed height"));
        }
        Ok(())
    }

    /// A proposal that reports a state root for a height we executed with a
    /// different root gets no vote: either we or the proposer diverged.
    /// `Ok(Some(h))`: this validator executes but has not executed `h` yet,
    /// so the vote waits for it ([`HotStuff::vote_after_execution`]).
    ///
    /// Consensus §C3.7, §C8.2 (docs/consensus.md).
    fn check_state_root(&mut self, block: &Block) -> Result<Option<Height>, ConsensusError> {
        let h = block.header();
        if h.exec_height.0 == 0 {
            return Ok(None);
        }
        match self.executed_roots.get(&h.exec_height) {
            Some(ours) if *ours != h.exec_state_root => {
                self.metrics.state_root_mismatches += 1;
                Err(ConsensusError::StateRootMismatch {
                    height: h.exec_height,
                    ours: *ours,
                    theirs: h.exec_state_root,
                })
            }
            Some(_) => Ok(None),
            None if !self.executes => Ok(None),
            None => {
                let newest = self
                    .executed_roots
                    .last_key_value()
                    .map_or(Height(0), |(h, _)| *h);
                if h.exec_height > newest {
                    Ok(Some(h.exec_height))
                } else {
                    Err(ConsensusError::UncheckedStateRoot {
                        height: h.exec_height,
                    })
                }
            }
        }
    }

    /// The vote for the proposal waiting for execution, once `executed`
    /// reaches the height it reports (§C3.7). A refusal then (another root,
    /// a view moved on) is counted like any other.
    pub(crate) fn vote_after_execution(&mut self, executed: Height) {
        let Some((id, view, height)) = self.awaiting_execution else {
            return;
        };
        if view != self.pace.view() {
            // The view moved on: that proposal can no longer get a vote.
            self.awaiting_execution = None;
            return;
        }
        if executed < height {
            return;
        }
        self.awaiting_execution = None;
        let Some(block) = self.tree.get(&id).cloned() else {
            return;
        };
        let proposer = block.header().proposer;
        let result = match self.check_state_root(&block) {
            Ok(None) => self.try_vote(&block),
            Ok(Some(_)) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(error) = result {
            self.reject(proposer, error);
        }
    }

    /// A message of an epoch whose keys are not final here (this
    /// validator may be far behind) claims the chain reached `height`.
    /// The claim counts if its signer is a member of that epoch's set and
    /// signed `message` with a key it held in the last final epoch (a
    /// validator that rotated since cannot give this hint; the others can).
    /// The highest height claimed by members with more than a third of the
    /// stake — at least one honest validator among them — is taken as a
    /// catch-up target by ranges, whose answers are verified (a height
    /// nobody serves is given up): a single Byzantine member cannot make an
    /// up-to-date validator chase heights that do not exist. A claim that
    /// would not raise its signer's last one costs no verification, so each
    /// member's claims cost at most one verification per higher height.
    fn hint_from_a_final_key(
        &mut self,
        epoch: crate::types::Epoch,
        signer: ValidatorId,
        kind: SignKind,
        message: &[u8],
        signature: &crate::crypto::Signature,
        height: Height,
    ) {
        let Some(last) = self.verifier.keys_final_through() else {
            return;
        };
        if self.schedule.set(epoch).get(signer).is_none() {
            return;
        }
        let set = self.schedule.set(last);
        let claimed = self.range.claims.get(&signer).copied();
        if claimed.is_none_or(|h| height > h) {
            let preimage = crate::signing::signing_preimage(self.cfg.env, kind, message);
            let known = set
                .accepted_keys(signer, last)
                .iter()
                .any(|k| k.verify(&preimage, signature).is_ok());
            if known {
                self.range.claims.insert(signer, height);
            }
        }
        // Also when nothing new was claimed: the target is lowered when
        // nobody serves up to it (and ranges of epochs whose keys are not
        // final wait for execution), and raised again by the next message.
        if let Some(target) = self.range.claimed_by_a_third(set) {
            self.note_chain_height(target);
        }
    }

    /// The highest height a catch-up hint from a message of `epoch` may
    /// claim: the epoch's last block plus the payload-free blocks before
    /// the epoch change commits.
    fn hint_cap(&self, epoch: crate::types::Epoch) -> Height {
        Height(
            self.boundary(epoch)
                .0
                .saturating_add(u64::from(RANGE_HINT_SUFFIX)),
        )
    }

    /// Consensus §C3 (docs/consensus.md).
    pub(crate) fn on_proposal(
        &mut self,
        from: ValidatorId,
        p: Proposal,
    ) -> Result<(), ConsensusError> {
        let block = &p.block;
        let h = block.header().clone();
        self.check_block_shape(block)?;
        let set = self.schedule.set(h.epoch);
        let signed = self.verifier.verify_sig(
            set,
            h.epoch,
            h.proposer,
            SignKind::Proposal,
            &block.id().to_bytes(),
            &p.signature,
        );
        if signed == Err(SigFailure::KeysNotFinal) {
            // The proposal's height, at most a few blocks past its epoch's
            // end.
            let height = h.height.min(self.hint_cap(h.epoch));
            let id = block.id().to_bytes();
            self.hint_from_a_final_key(
                h.epoch,
                h.proposer,
                SignKind::Proposal,
                &id,
                &p.signature,
                height,
            );
        }
        signed.map_err(|f| sig_error(f, "proposal", h.proposer, h.epoch))?;
        self.metrics.proposals_received += 1;
        self.verifier.verify_qc(&self.schedule, block.justify())?;
        self.note_chain_height(h.height);
        if let Some(tc) = &p.tc {
            self.verifier.verify_tc(&self.schedule, tc)?;
            self.process_tc(tc);
        }
        let justify = block.justify().clone();
        self.process_qc(&justify, from)?;
        // The leader is checked after the proposal's certificates are
        // processed: the QC it carries may commit blocks this validator had
        // not committed yet, which brings its view of the committed chain
        // (and so of the leader, §C10) to the proposer's.
        let leader = self.leader(h.epoch, h.view);
        if h.proposer != leader {
            return Err(ConsensusError::NotLeader {
                view: h.view,
                proposer: h.proposer,
                leader,
            });
        }
        self.check_epoch_window("proposal", h.epoch)?;
        self.check_not_too_far("proposal", h.view)?;
        if let Some(ev) = self.detector.proposal(&h, &p.signature)
            && !self.tree.contains(&block.id())
        {
            // The second block of an equivocating proposer for a view is
            // evidence and is still placed (it may be the one that gathers
            // a QC); after that, none of its blocks for that view is stored
            // (issue #17 finding 4: 2,000 conflicting proposals were 2,000
            // stored blocks). A certified one among them is fetched by sync.
            if self.detector.mark_equivocation(&h) {
                return Err(ConsensusError::InvalidBlock {
                    block: block.id(),
                    why: "a third proposal of its proposer for one view (equivocation)",
                });
            }
            self.evidence(ev);
        }
        match self.place(block, from, Origin::Proposal)? {
            Placement::Placed => {
                if p.block.view() == self.pace.view() {
                    self.validate_payload(&p.block)?;
                    self.qc_latency.proposal_placed(p.block.view(), self.now);
                }
                match self.check_state_root(&p.block)? {
                    // Only a proposal this validator could vote for now
                    // waits (its payload was validated above); any other
                    // goes to `try_vote`, which refuses it or holds no vote
                    // without voting, and leaves the waiting one in place.
                    Some(height)
                        if p.block.view() == self.pace.view()
                            && p.block.epoch() == self.epoch
                            && self.is_member(self.epoch) =>
                    {
                        let waiting = Some((p.block.id(), p.block.view(), height));
                        if self.awaiting_execution != waiting {
                            self.metrics.votes_waited_for_execution += 1;
                            self.awaiting_execution = waiting;
                        }
                        Ok(())
                    }
                    _ => self.try_vote(&p.block),
                }
            }
            Placement::Missing(id) => {
                self.wait_for(id, from, p);
                Ok(())
            }
        }
    }

    /// Consensus §C4.5, §C5.4 (docs/consensus.md).
    pub(crate) fn on_vote(&mut self, from: ValidatorId, vote: Vote) -> Result<(), ConsensusError> {
        let data = vote.data;
        self.check_epoch_window("vote", data.epoch)?;
        if self.leader(data.epoch, data.view.next()) != self.me {
            // It may have overtaken the QC this validator needs to lead the
            // next view (§C10.4): held, not refused (`early_votes.rs`).
            if self.check_not_too_far("vote", data.view).is_ok() && self.hold_vote(from, vote) {
                return Ok(());
            }
            return Err(ConsensusError::NotNextLeader { view: data.view });
        }
        self.check_not_too_far("vote", data.view)?;
        self.accept_vote(vote)
    }

    /// A held vote whose view this validator now leads next (`early_votes.rs`).
    pub(crate) fn accept_held_vote(&mut self, vote: Vote) -> Result<(), ConsensusError> {
        self.check_epoch_window("vote", vote.data.epoch)?;
        self.accept_vote(vote)
    }

    /// Verify a vote, record it for equivocation detection, and aggregate
    /// it; a completed quorum is processed as a new QC.
    ///
    /// Consensus §C5.4 (docs/consensus.md).
    fn accept_vote(&mut self, vote: Vote) -> Result<(), ConsensusError> {
        let data = vote.data;
        let set = self.schedule.set(data.epoch);
        self.verifier
            .verify_sig(
                set,
                data.epoch,
                vote.voter,
                SignKind::Vote,
                &data.to_bytes(),
                &vote.signature,
            )
            .map_err(|f| sig_error(f, "vote", vote.voter, data.epoch))?;
        self.metrics.votes_received += 1;
        if let Some(ev) = self.detector.vote(vote.voter, &data, &vote.signature) {
            self.evidence(ev);
        }
        let set = self.schedule.set(data.epoch);
        if let Some(qc) = self.votes.add(set, data, vote.voter, vote.signature) {
            self.metrics.qcs_formed += 1;
            self.process_qc(&qc, vote.voter)?;
        }
        Ok(())
    }

    /// Consensus §C6.2–C6.4 (docs/consensus.md).
    pub(crate) fn on_timeout_msg(
        &mut self,
        from: ValidatorId,
        t: TimeoutMsg,
    ) -> Result<(), ConsensusError> {
        let d = t.data;
        if d.high_qc_view != t.high_qc.view() || d.high_qc_view >= d.view {
            return Err(ConsensusError::InvalidQc {
                block: t.high_qc.block_id(),
                view: t.high_qc.view(),
                why: "timeout's high QC does not match what it signed",
            });
        }
        let set = self.schedule.set(d.epoch);
        let signed = self.verifier.verify_sig(
            set,
            d.epoch,
            t.sender,
            SignKind::Timeout,
            &d.to_bytes(),
            &t.signature,
        );
        if signed == Err(SigFailure::KeysNotFinal) {
            // A timeout carries no height: its epoch's end bounds it. When
            // the chain stalls for want of this validator's vote, timeouts
            // are the only messages its peers still send (issue #20: a
            // validator restarted two epochs behind, with another one
            // down, never caught up).
            let height = self.hint_cap(d.epoch);
            self.hint_from_a_final_key(
                d.epoch,
                t.sender,
                SignKind::Timeout,
                &d.to_bytes(),
                &t.signature,
                height,
            );
        }
        signed.map_err(|f| sig_error(f, "timeout", t.sender, d.epoch))?;
        self.verifier.verify_qc(&self.schedule, &t.high_qc)?;
        self.process_qc(&t.high_qc, from)?;
        if d.epoch != self.epoch {
            return Err(ConsensusError::WrongEpoch {
                what: "timeout",
                epoch: d.epoch,
                current: self.epoch,
            });
        }
        if d.view < self.pace.view() {
            return Err(ConsensusError::StaleView {
                what: "timeout",
                view: d.view,
                current: self.pace.view(),
            });
        }
        self.check_not_too_far("timeout", d.view)?;
        if let Some(vote) = &t.vote {
            self.collect_timeout_vote(t.sender, d, vote)?;
        }
        let set = self.schedule.set(d.epoch);
        let progress = self.timeouts.add(set, d, t.sender, t.signature);
        let join_stake = set.one_third_plus_stake();
        if let Some(tc) = progress.tc {
            self.metrics.tcs_formed += 1;
            self.process_tc(&tc);
            let next_leader = self.leader(tc.epoch, tc.view.next());
            if next_leader != self.me {
                self.emit(crate::consensus::Effect::Send {
                    to: next_leader,
                    msg: ConsensusMsg::TimeoutCert(tc),
                });
            }
        } else if d.view > self.pace.view()
            && progress.stake >= join_stake
            && self.is_member(self.epoch)
        {
            // More than a third of the stake gave up on a later view: at least
            // one honest validator is there, so join it and time out too.
            self.enter_view(d.view, false);
            self.local_timeout();
        }
        Ok(())
    }

    /// A vote carried by a timeout: anyone may aggregate these, so the QC
    /// that a crashed or silent next leader should have formed still forms.
    ///
    /// Consensus §C6.2 (docs/consensus.md).
    fn collect_timeout_vote(
        &mut self,
        sender: ValidatorId,
        timeout: crate::consensus::TimeoutData,
        vote: &Vote,
    ) -> Result<(), ConsensusError> {
        if vote.voter != sender
            || vote.data.view != timeout.view
            || vote.data.epoch != timeout.epoch
        {
            return Err(ConsensusError::InvalidBlock {
                block: vote.data.block_id,
                why: "a timeout may carry only its sender's vote of the same view",
            });
        }
        self.accept_vote(vote.clone())
    }

    /// Consensus §C6.3 (docs/consensus.md).
    fn on_tc(&mut self, tc: TimeoutCert) -> Result<(), ConsensusError> {
        self.verifier.verify_tc(&self.schedule, &tc)?;
        self.process_tc(&tc);
        Ok(())
    }

    /// Validate `block` against its parent and insert it, with any orphans
    /// it unblocks; re-run proposals that waited for these blocks.
    ///
    /// Consensus §C3.6 (docs/consensus.md).
    pub(crate) fn place(
        &mut self,
        block: &Block,
        from: ValidatorId,
        origin: Origin,
    ) -> Result<Placement, ConsensusError> {
        if self.tree.contains(&block.id()) {
            return Ok(Placement::Placed);
        }
        if block.height() <= self.tree.committed_height() {
            return Err(ConsensusError::ConflictsWithCommitted {
                block: block.id(),
                height: block.height(),
            });
        }
        self.commit_boundary_through(block);
        if let Some(missing) = self.check_against_parent(block, origin)? {
            return Ok(Placement::Missing(missing));
        }
        if self.tree.pending_len() >= MAX_PENDING_BLOCKS {
            return Err(ConsensusError::InvalidBlock {
                block: block.id(),
                why: "too many uncommitted blocks held",
            });
        }
        let mut work = vec![block.clone()];
        let mut reprocess = Vec::new();
        while let Some(b) = work.pop() {
            let id = b.id();
            self.emit(crate::consensus::Effect::PersistBlock(b.clone()));
            let children = self.tree.insert(b.clone());
            self.metrics.blocks_from_peers += u64::from(from != self.me);
            self.on_block_inserted(&b);
            for child in children {
                let verified = self.check_block_shape(&child).is_ok()
                    && self
                        .verifier
                        .verify_qc(&self.schedule, child.justify())
                        .is_ok();
                if !verified {
                    continue;
                }
                self.commit_boundary_through(&child);
                // Orphans are blocks that came by sync.
                match self.check_against_parent(&child, Origin::Sync) {
                    Ok(None) => work.push(child),
                    // An epoch's first block also waits for the block its
                    // QC certifies (issue #18).
                    Ok(Some(missing)) => {
                        self.tree.add_orphan(child, missing);
                        self.fetch(missing, from);
                    }
                    Err(_) => {}
                }
            }
            if let Some(ps) = self.sync.take_waiting(&id) {
                reprocess.extend(ps);
            }
        }
        for (from, p) in reprocess {
            if let Err(error) = self.on_proposal(from, p) {
                self.reject(from, error);
            }
        }
        // A leader whose QC formed before the certified block arrived could
        // not propose on entering its view; now it may be able to.
        self.try_propose();
        Ok(Placement::Placed)
    }

    /// The first block of an epoch extends the previous epoch's boundary
    /// block, which must be committed before it is placed — and the QC that
    /// commits the boundary block is often the new block's own justify (it
    /// certifies the suffix above the boundary). A live validator has
    /// processed that QC before placing the proposal; a block arriving by
    /// sync (or as an orphan whose parent just arrived) brings it only
    /// inside itself. Apply it first, so the epoch-start rule never blocks
    /// catch-up (issue #18, item 2). `block`'s justify must be verified.
    fn commit_boundary_through(&mut self, block: &Block) {
        let justify = block.justify();
        if block.epoch() != justify.data.epoch && self.tree.contains(&justify.block_id()) {
            let justify = justify.clone();
            self.apply_qc_to_known_block(&justify);
        }
    }

    /// `Ok(None)` if `block` fits its parent, `Ok(Some(id))` if block `id`
    /// must be fetched first.
    ///
    /// An epoch's first block extends the committed boundary block and its
    /// QC certifies a descendant of it (the payload-free suffix). A proposal
    /// is held to that in full, since this validator may vote on it. A block
    /// that came by sync is not: peers prune the suffix blocks once the
    /// boundary is committed, so they cannot serve them, and the boundary
    /// may not be committed here yet (issue #18, item 2). It is placed as
    /// an uncommitted child of the boundary block and commits — with the
    /// boundary — only through a 3-chain of QCs of its own epoch's set,
    /// whose honest members voted for it only after committing the boundary
    /// block themselves.
    ///
    /// Consensus §C3.6, §C9.1 (docs/consensus.md).
    fn check_against_parent(
        &self,
        block: &Block,
        origin: Origin,
    ) -> Result<Option<Hash32>, ConsensusError> {
        let bad = |why| ConsensusError::InvalidBlock {
            block: block.id(),
            why,
        };
        let justify = block.justify();
        let Some(parent) = self.tree.get(&block.parent_id()) else {
            return Ok(Some(block.parent_id()));
        };
        if block.height() != parent.height().next() {
            return Err(bad("height is not parent height + 1"));
        }
        if block.view() <= parent.view() {
            return Err(bad("view not above parent view"));
        }
        if block.epoch() == justify.data.epoch {
            if block.parent_id() != justify.block_id() {
                return Err(bad("parent is not the block its QC certifies"));
            }
            if block.epoch() != parent.epoch() {
                return Err(bad("epoch differs from parent epoch"));
            }
            if parent.height() >= self.boundary(parent.epoch()) && !block.payload().is_empty() {
                return Err(bad("block past its epoch boundary carries a payload"));
            }
            return Ok(None);
        }
        // First block of a new epoch: its parent is the previous epoch's
        // committed boundary block, and its QC certifies a descendant of it.
        if block.epoch() != parent.epoch().next()
            || parent.height() != self.boundary(parent.epoch())
            || justify.data.epoch != parent.epoch()
        {
            return Err(bad("epoch change not at a boundary block"));
        }
        if !self.tree.contains(&justify.block_id()) {
            return Ok(match origin {
                Origin::Proposal => Some(justify.block_id()),
                Origin::Sync => None,
            });
        }
        if origin == Origin::Sync && !self.tree.is_committed(&parent.id()) {
            return if self.tree.extends(&justify.block_id(), &parent.id()) {
                Ok(None)
            } else {
                Err(bad(
                    "epoch-start QC does not descend from the boundary block",
                ))
            };
        }
        if !self.tree.is_committed(&parent.id()) {
            return Err(bad("epoch starts before its boundary block is committed"));
        }
        if !self.tree.extends(&justify.block_id(), &parent.id()) {
            return Err(bad(
                "epoch-start QC does not descend from the boundary block",
            ));
        }
        Ok(None)
    }

    /// A block entered the tree: its QC certifies its parent (lock and
    /// commit rules), and our high QC may certify the block itself.
    fn on_block_inserted(&mut self, block: &Block) {
        let inner = block.justify().clone();
        self.apply_qc_to_known_block(&inner);
        if self.safety.high_qc.block_id() == block.id() {
            let high = self.safety.high_qc.clone();
            self.apply_qc_to_known_block(&high);
        }
    }
}
