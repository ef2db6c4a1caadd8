//! Catch-up by block fetching (DESIGN "Consensus"): a block referenced by
//! a QC or a parent link that this validator lacks is asked for
//! ([`SyncRequest`]: the block and up to `sync_batch` ancestors) from the
//! validator that referenced it, then from the others in turn; answers are
//! authenticated by hash links from a verified QC. Proposals whose parent is
//! missing wait (bounded) until it arrives.

use std::collections::BTreeMap;

use crate::codec::Encode;
use crate::consensus::Effect;
use crate::consensus::error::ConsensusError;
use crate::consensus::handlers::{Origin, Placement};
use crate::consensus::machine::HotStuff;
use crate::consensus::messages::{ConsensusMsg, Proposal, SyncRequest, SyncResponse};
use crate::types::{Hash32, Height, Millis, ValidatorId};

/// Proposals waiting for missing ancestors, at most.
const MAX_WAITING: usize = 256;
/// Attempts before a block fetch is abandoned (a later reference restarts it).
const MAX_FETCH_ATTEMPTS: u32 = 12;

/// An outstanding block fetch.
#[derive(Clone, Copy, Debug)]
struct Fetch {
    hint: ValidatorId,
    attempts: u32,
    last_sent: Millis,
}

/// Blocks being fetched and the proposals waiting for them.
#[derive(Default)]
pub(crate) struct BlockSync {
    fetches: BTreeMap<Hash32, Fetch>,
    waiting: BTreeMap<Hash32, Vec<(ValidatorId, Proposal)>>,
}

impl BlockSync {
    /// Blocks being fetched plus proposals waiting for them.
    pub(crate) fn entries(&self) -> usize {
        self.fetches.len() + self.waiting.values().map(Vec::len).sum::<usize>()
    }

    /// Start fetching `id` (asking `hint` first); false if already fetching.
    fn start(&mut self, id: Hash32, hint: ValidatorId, now: Millis) -> bool {
        if self.fetches.contains_key(&id) {
            return false;
        }
        self.fetches.insert(
            id,
            Fetch {
                hint,
                attempts: 0,
                last_sent: now,
            },
        );
        true
    }

    /// Whether `id` is being fetched.
    pub(crate) fn is_fetching(&self, id: &Hash32) -> bool {
        self.fetches.contains_key(id)
    }

    /// Whether anything is being fetched.
    fn fetching(&self) -> bool {
        !self.fetches.is_empty()
    }

    /// `id` arrived.
    pub(crate) fn done(&mut self, id: &Hash32) {
        self.fetches.remove(id);
    }

    /// Fetches due for another request at `now` (hint, attempt number);
    /// fetches that ran out of attempts or whose block `have` are dropped.
    fn retry_due(
        &mut self,
        now: Millis,
        retry_ms: u64,
        have: impl Fn(&Hash32) -> bool,
    ) -> Vec<(Hash32, ValidatorId, u32)> {
        let mut due = Vec::new();
        self.fetches.retain(|id, f| {
            if now.since(f.last_sent) < retry_ms {
                return true;
            }
            if f.attempts + 1 >= MAX_FETCH_ATTEMPTS || have(id) {
                return false;
            }
            f.attempts += 1;
            f.last_sent = now;
            due.push((*id, f.hint, f.attempts));
            true
        });
        due
    }

    /// Park a proposal from `from` until block `missing` arrives (dropped
    /// when `MAX_WAITING` proposals already wait).
    fn park(&mut self, missing: Hash32, from: ValidatorId, p: Proposal) {
        let total: usize = self.waiting.values().map(Vec::len).sum();
        if total < MAX_WAITING {
            self.waiting.entry(missing).or_default().push((from, p));
        }
    }

    /// The proposals that waited for `id`.
    pub(crate) fn take_waiting(&mut self, id: &Hash32) -> Option<Vec<(ValidatorId, Proposal)>> {
        self.waiting.remove(id)
    }

    /// Drop waiting proposals at or below the committed height.
    pub(crate) fn forget_waiting_up_to(&mut self, committed: Height) {
        self.waiting.retain(|_, ps| {
            ps.retain(|(_, p)| p.block.height() > committed);
            !ps.is_empty()
        });
    }
}

impl HotStuff {
    /// Consensus §C7.3 (docs/consensus.md).
    pub(crate) fn on_sync_request(&mut self, from: ValidatorId, r: SyncRequest) {
        let max = r
            .max_blocks
            .min(self.cfg.sync_batch)
            .min(self.cfg.limits.max_sync_blocks) as usize;
        let mut blocks = self.tree.chain_from(&r.block_id, max);
        // The same byte budget as answers from the store (the first block
        // always goes: it is what was asked for).
        let budget = self.cfg.sync_answer_bytes();
        let mut bytes = 0usize;
        let keep = blocks
            .iter()
            .take_while(|b| {
                bytes = bytes.saturating_add(b.to_bytes().len());
                bytes <= budget
            })
            .count()
            .max(1);
        blocks.truncate(keep);
        if !blocks.is_empty() && from != self.me {
            self.emit(Effect::Send {
                to: from,
                msg: ConsensusMsg::SyncResponse(SyncResponse { blocks }),
            });
        }
    }

    /// Consensus §C7.2 (docs/consensus.md).
    pub(crate) fn on_sync_response(
        &mut self,
        from: ValidatorId,
        r: SyncResponse,
    ) -> Result<(), ConsensusError> {
        let bad = |why| ConsensusError::BadSyncResponse { why };
        let first = r.blocks.first().ok_or(bad("empty"))?;
        if !self.sync.is_fetching(&first.id()) {
            if self.is_range_answer(from, &r.blocks) {
                return self.on_range_response(from, r.blocks);
            }
            self.metrics.sync_unsolicited += 1;
            return Err(bad("no outstanding request for its first block"));
        }
        if r.blocks.windows(2).any(|w| w[0].parent_id() != w[1].id()) {
            return Err(bad("blocks do not link by parent id"));
        }
        self.sync.done(&first.id());
        // Oldest first, so that each block's parent is placed before it.
        for block in r.blocks.iter().rev() {
            if self.tree.contains(&block.id()) || block.height() <= self.tree.committed_height() {
                continue;
            }
            self.check_block_shape(block)?;
            self.verifier.verify_qc(&self.schedule, block.justify())?;
            match self.place(block, from, Origin::Sync)? {
                Placement::Placed => {}
                Placement::Missing(id) => {
                    self.tree.add_orphan(block.clone(), id);
                    self.fetch(id, from);
                }
            }
        }
        Ok(())
    }

    /// Ask `hint` for block `id` and its ancestors, unless already asked.
    ///
    /// Consensus §C7.1 (docs/consensus.md).
    pub(crate) fn fetch(&mut self, id: Hash32, hint: ValidatorId) {
        // Far behind, blocks come by height ranges: fetching each missing
        // parent by id would multiply requests (issue #18, item 1).
        if self.catching_up() {
            return;
        }
        if self.tree.contains(&id) || !self.sync.start(id, hint, self.now) {
            return;
        }
        self.send_fetch(id, hint, 0);
        let at = self.now.plus(self.cfg.sync_retry_ms);
        self.emit(Effect::SetTimer(at));
    }

    fn send_fetch(&mut self, id: Hash32, hint: ValidatorId, attempt: u32) {
        let n = self.schedule.max_validators().max(1) as u32;
        let mut to = ValidatorId((hint.0 + attempt) % n);
        if to == self.me {
            to = ValidatorId((to.0 + 1) % n);
        }
        if to == self.me {
            return;
        }
        self.metrics.sync_requests_sent += 1;
        self.emit(Effect::Send {
            to,
            msg: ConsensusMsg::SyncRequest(SyncRequest {
                block_id: id,
                max_blocks: self.cfg.sync_batch,
            }),
        });
    }

    /// Consensus §C7.1 (docs/consensus.md).
    pub(crate) fn retry_fetches(&mut self) {
        let tree = &self.tree;
        let due = self
            .sync
            .retry_due(self.now, self.cfg.sync_retry_ms, |id| tree.contains(id));
        for (id, hint, attempts) in due {
            self.send_fetch(id, hint, attempts);
        }
        if self.sync.fetching() {
            let at = self.now.plus(self.cfg.sync_retry_ms);
            self.emit(Effect::SetTimer(at));
        }
    }

    /// Park a proposal until block `missing` arrives.
    ///
    /// Consensus §C3.6 (docs/consensus.md).
    pub(crate) fn wait_for(&mut self, missing: Hash32, from: ValidatorId, p: Proposal) {
        self.sync.park(missing, from, p);
        self.fetch(missing, from);
    }
}
