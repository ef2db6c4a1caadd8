//! Block sync from the store by height ranges (issue #18; docs/sync.md).
//!
//! A validator that sees verified proposals more than [`RANGE_SYNC_MIN_GAP`]
//! blocks above the highest block it holds asks peers for committed blocks by
//! height ([`SyncRangeRequest`]) in chunks of `sync_batch`, at most
//! [`MAX_IN_FLIGHT_PER_PEER`] requests per peer and [`MAX_IN_FLIGHT`] in
//! all, round-robin over the peers that have not served bad data lately,
//! never asking twice for a range in flight. Consecutive ranges overlap by
//! one block, so that every block placed is certified by the QC its
//! successor carries. Answers must match an outstanding request of the
//! peer that sends them (else they are dropped and counted), link by parent
//! id and height, and carry QCs that verify against the validator set of
//! their epoch; their blocks then go through the same placement and commit
//! rules as any other block, so the validator commits as it goes. A peer
//! that serves bad data is set aside and its range asked of another.
//!
//! Peers answer from their store ([`Effect::ServeSync`], carried out by the
//! replica), back to their pruning horizon.

use std::collections::BTreeMap;

use crate::consensus::Effect;
use crate::consensus::error::ConsensusError;
use crate::consensus::handlers::{Origin, Placement};
use crate::consensus::machine::HotStuff;
use crate::consensus::messages::{Block, ConsensusMsg, SyncRangeRequest};
use crate::types::{Height, Millis, ValidatorId};

/// Blocks behind the highest verified proposal at which range sync starts
/// (below it, the live protocol and block fetching catch up).
pub(crate) const RANGE_SYNC_MIN_GAP: u64 = 8;
/// Range requests in flight to one peer, at most.
pub(crate) const MAX_IN_FLIGHT_PER_PEER: usize = 2;
/// Range requests in flight plus answers buffered ahead of the chain, at
/// most: what an outsider can make this validator hold is bounded by this
/// many responses of at most `max_sync_blocks` blocks.
pub(crate) const MAX_IN_FLIGHT: usize = 8;
/// Retry periods for which a peer that served bad data is not asked.
const DROP_PERIODS: u64 = 20;

/// One outstanding range request.
#[derive(Clone, Copy, Debug)]
struct RangeRequest {
    peer: ValidatorId,
    count: u32,
    sent: Millis,
}

/// The state of catching up by height ranges.
#[derive(Debug, Default)]
pub(crate) struct RangeSync {
    /// Highest height seen in a verified proposal (lowered again when
    /// peers cannot serve up to it).
    pub(crate) target: Height,
    /// Lowest height not requested yet.
    next: Height,
    /// Requests in flight, by first height.
    in_flight: BTreeMap<Height, RangeRequest>,
    /// Ranges to ask again (timed out, truncated or badly served).
    retry: BTreeMap<Height, u32>,
    /// Ranges whose blocks are certified in epochs whose keys are not final
    /// here yet: asked again once execution has made them final
    /// ([`HotStuff::note_executed_height`]), not before.
    waiting: BTreeMap<Height, u32>,
    /// Verified answers waiting for the blocks below them, by first
    /// height: (sender, blocks ascending).
    ready: BTreeMap<Height, (ValidatorId, Vec<Block>)>,
    /// Peers set aside until the given time.
    dropped: BTreeMap<ValidatorId, Millis>,
    /// Where the round-robin over peers resumes.
    next_peer: u32,
    /// Start of the current rate sample: time and committed height.
    sample: (Millis, Height),
    /// The highest height each member claimed in a message this validator
    /// could not check yet but whose signature it verified with a key it
    /// knows (`HotStuff::hint_from_a_final_key`); at most one entry per
    /// validator.
    pub(crate) claims: BTreeMap<ValidatorId, Height>,
}

impl RangeSync {
    /// Requests in flight, retry records, fetched ranges waiting to be
    /// applied, dropped peers and members' catch-up claims.
    pub(crate) fn entries(&self) -> usize {
        self.in_flight.len()
            + self.retry.len()
            + self.waiting.len()
            + self.ready.len()
            + self.dropped.len()
            + self.claims.len()
    }

    /// The highest height claimed by members holding more than a third of
    /// `set`'s stake (at least one of them honest), if any.
    pub(crate) fn claimed_by_a_third(
        &self,
        set: &crate::validator::ValidatorSet,
    ) -> Option<Height> {
        let mut claims: Vec<(Height, ValidatorId)> =
            self.claims.iter().map(|(id, h)| (*h, *id)).collect();
        claims.sort_unstable_by(|a, b| b.cmp(a));
        let need = set.one_third_plus_stake();
        let mut stake = 0u64;
        for (height, id) in claims {
            stake = stake.saturating_add(set.stake_of([&id]));
            if stake >= need {
                return Some(height);
            }
        }
        None
    }

    fn held(&self) -> usize {
        self.in_flight.len() + self.ready.len() + self.waiting.len()
    }

    /// More epochs' keys are final: the waiting ranges can be asked again.
    pub(crate) fn release_waiting(&mut self) {
        let waiting = std::mem::take(&mut self.waiting);
        self.retry.extend(waiting);
    }

    fn in_flight_to(&self, peer: ValidatorId) -> usize {
        self.in_flight.values().filter(|r| r.peer == peer).count()
    }

    /// Forget everything at or below `committed`.
    fn forget_up_to(&mut self, committed: Height) {
        let above =
            |start: Height, count: u32| start.0.saturating_add(u64::from(count)) > committed.0 + 1;
        self.in_flight.retain(|s, r| above(*s, r.count));
        self.retry.retain(|s, c| above(*s, *c));
        self.waiting.retain(|s, c| above(*s, *c));
        self.ready
            .retain(|_, (_, bs)| bs.last().is_some_and(|b| b.height() > committed));
    }
}

impl HotStuff {
    /// Whether this validator is far enough behind to sync by ranges: the
    /// chain is more than `RANGE_SYNC_MIN_GAP` blocks above the highest
    /// block it holds (a long uncommitted chain, when views fail, is not
    /// being behind: the live protocol and fetching by id handle it).
    pub(crate) fn catching_up(&self) -> bool {
        self.range.target.0 > self.tree.highest_height().0 + RANGE_SYNC_MIN_GAP
    }

    /// A verified proposal shows the chain reached `height`.
    pub(crate) fn note_chain_height(&mut self, height: Height) {
        if height > self.range.target {
            self.range.target = height;
            self.pump_ranges();
        }
    }

    /// A peer asks for committed blocks by height: the embedder answers
    /// from its store.
    pub(crate) fn on_sync_range(&mut self, from: ValidatorId, r: SyncRangeRequest) {
        let max = r
            .max_blocks
            .min(self.cfg.sync_batch)
            .min(self.cfg.limits.max_sync_blocks);
        if from == self.me || max == 0 || r.from_height.0 == 0 {
            return;
        }
        if r.from_height > self.tree.committed_height() {
            return;
        }
        self.metrics.sync_ranges_served += 1;
        self.emit(Effect::ServeSync {
            to: from,
            from_height: r.from_height,
            max,
            max_bytes: self.cfg.sync_answer_bytes(),
        });
    }

    /// Blocks per range request (at least 2: ranges overlap by one).
    fn chunk(&self) -> u32 {
        self.cfg
            .sync_batch
            .min(self.cfg.limits.max_sync_blocks)
            .max(2)
    }

    /// The next peer to ask, round-robin, skipping ourselves, peers set
    /// aside and peers with enough requests in flight.
    fn pick_peer(&mut self) -> Option<ValidatorId> {
        let n = self.schedule.max_validators().max(1) as u32;
        for k in 0..n {
            let id = ValidatorId((self.range.next_peer + k) % n);
            let dropped = self.range.dropped.get(&id).is_some_and(|t| *t > self.now);
            if id == self.me || dropped || self.range.in_flight_to(id) >= MAX_IN_FLIGHT_PER_PEER {
                continue;
            }
            self.range.next_peer = (id.0 + 1) % n;
            return Some(id);
        }
        None
    }

    /// Time out, clean up and send range requests; update the gauges.
    pub(crate) fn pump_ranges(&mut self) {
        let committed = self.tree.committed_height();
        self.range.forget_up_to(committed);
        let retry_ms = self.cfg.sync_retry_ms;
        let now = self.now;
        let expired: Vec<(Height, u32)> = self
            .range
            .in_flight
            .iter()
            .filter(|(_, r)| now.since(r.sent) >= retry_ms)
            .map(|(s, r)| (*s, r.count))
            .collect();
        for (start, count) in expired {
            self.range.in_flight.remove(&start);
            self.range.retry.insert(start, count);
            // Nobody served it in time: the height that made us ask may not
            // exist (a faulty leader can claim any height); the next
            // verified proposal raises the target again.
            self.range.target = self.range.target.min(start.max(committed));
        }
        let catching_up = self.catching_up();
        if !catching_up {
            // Resume from the committed height next time.
            self.range.retry.clear();
            self.range.waiting.clear();
            self.range.next = Height(0);
        }
        let chunk = self.chunk();
        while catching_up && self.range.held() < MAX_IN_FLIGHT {
            let next = self.range.next.max(committed.next());
            let (start, count, fresh) = match self.range.retry.first_key_value() {
                Some((s, c)) => (*s, *c, false),
                None if next < self.range.target => (next, chunk, true),
                None => break,
            };
            if let Some(r) = self.range.in_flight.get(&start).copied() {
                // Asked already (before a restart of the range walk).
                self.range.retry.remove(&start);
                if fresh {
                    self.range.next = Height(start.0 + u64::from(r.count) - 1);
                }
                continue;
            }
            let Some(peer) = self.pick_peer() else {
                break;
            };
            if fresh {
                self.range.next = Height(start.0 + u64::from(count) - 1);
            } else {
                self.range.retry.remove(&start);
            }
            self.range.in_flight.insert(
                start,
                RangeRequest {
                    peer,
                    count,
                    sent: now,
                },
            );
            self.metrics.sync_range_requests_sent += 1;
            self.emit(Effect::Send {
                to: peer,
                msg: ConsensusMsg::SyncRange(SyncRangeRequest {
                    from_height: start,
                    max_blocks: count,
                }),
            });
        }
        if !self.range.in_flight.is_empty() {
            self.emit(Effect::SetTimer(now.plus(retry_ms)));
        }
        self.sync_gauges();
    }

    fn sync_gauges(&mut self) {
        let committed = self.tree.committed_height();
        let phase = self.catching_up() || !self.range.in_flight.is_empty();
        self.metrics.sync_phase = u64::from(phase);
        self.metrics.sync_behind_by = self.range.target.0.saturating_sub(committed.0);
        self.metrics.sync_ranges_in_flight = self.range.in_flight.len() as u64;
        let sources: std::collections::BTreeSet<ValidatorId> =
            self.range.in_flight.values().map(|r| r.peer).collect();
        self.metrics.sync_source_peers = sources.len() as u64;
        let (at, from) = self.range.sample;
        if !phase {
            self.metrics.sync_rate = 0;
            self.range.sample = (self.now, committed);
        } else if self.now.since(at) >= 1_000 {
            let per_s = committed.0.saturating_sub(from.0) * 1_000 / self.now.since(at);
            self.metrics.sync_rate = per_s;
            self.range.sample = (self.now, committed);
        }
    }

    /// Set `peer` aside for serving bad data; its range is asked again.
    fn drop_peer(&mut self, peer: ValidatorId, start: Height, count: u32) {
        self.metrics.sync_bad_responses += 1;
        self.metrics.sync_peers_dropped += 1;
        let until = self
            .now
            .plus(self.cfg.sync_retry_ms.saturating_mul(DROP_PERIODS));
        self.range.dropped.insert(peer, until);
        self.range.retry.insert(start, count);
    }

    /// Whether `blocks` is a sync answer to one of our range requests (the
    /// fetch-by-id answers are told apart by their first block).
    pub(crate) fn is_range_answer(&self, from: ValidatorId, blocks: &[Block]) -> bool {
        blocks.last().is_some_and(|b| {
            self.range
                .in_flight
                .get(&b.height())
                .is_some_and(|r| r.peer == from)
        })
    }

    /// An answer to a range request (`blocks` newest first).
    pub(crate) fn on_range_response(
        &mut self,
        from: ValidatorId,
        blocks: Vec<Block>,
    ) -> Result<(), ConsensusError> {
        let bad = |why| ConsensusError::BadSyncResponse { why };
        let Some(start) = blocks.last().map(Block::height) else {
            self.metrics.sync_unsolicited += 1;
            return Err(bad("empty"));
        };
        let Some(req) = self
            .range
            .in_flight
            .get(&start)
            .copied()
            .filter(|r| r.peer == from)
        else {
            self.metrics.sync_unsolicited += 1;
            return Err(bad("no outstanding range request for it"));
        };
        self.range.in_flight.remove(&start);
        let mut ascending = blocks;
        ascending.reverse();
        if let Err(why) = self.check_range(&ascending, start, req.count) {
            self.drop_peer(from, start, req.count);
            self.pump_ranges();
            return Err(bad(why));
        }
        // Only blocks certified in epochs whose keys are final here: the
        // rest may be signed with keys of an on-chain rotation this
        // validator has not executed yet. Asked again once execution has
        // caught up (no fault of the peer).
        let committed = self.tree.committed_height();
        let keep = ascending
            .iter()
            .take_while(|b| {
                b.height() <= committed || self.verifier.keys_final(b.justify().data.epoch)
            })
            .count();
        if keep == 0 {
            let epoch = ascending[0].justify().data.epoch;
            self.range.waiting.insert(start, req.count);
            return Err(ConsensusError::KeysNotFinal {
                what: "sync range",
                epoch,
            });
        }
        let held_back = keep < ascending.len();
        ascending.truncate(keep);
        if let Err(e) = self.verify_range(&ascending) {
            self.drop_peer(from, start, req.count);
            self.pump_ranges();
            return Err(e);
        }
        let served = ascending.len() as u32;
        if served < req.count {
            // Truncated: the peer holds no more (or will not say). The rest
            // is asked of the next peer, from the last block on. An answer
            // with no block past the overlap makes no progress: believe the
            // chain ends there until a verified proposal says otherwise.
            let top = Height(start.0 + u64::from(served) - 1);
            if held_back {
                self.range.waiting.insert(top, req.count - served + 1);
            } else {
                self.range.retry.insert(top, req.count - served + 1);
            }
            if served == 1 && !held_back {
                self.range.target = self.range.target.min(top);
            }
        }
        self.range.ready.insert(start, (from, ascending));
        self.drain_ready();
        self.pump_ranges();
        Ok(())
    }

    /// Shape of an answer: heights `start, start + 1, ...`, at most `count`
    /// blocks, each the parent of the next.
    fn check_range(&self, blocks: &[Block], start: Height, count: u32) -> Result<(), &'static str> {
        if blocks.len() > count as usize {
            return Err("more blocks than asked for");
        }
        for (i, b) in blocks.iter().enumerate() {
            if b.height().0 != start.0 + i as u64 {
                return Err("heights out of order");
            }
        }
        if blocks.windows(2).any(|w| w[1].parent_id() != w[0].id()) {
            return Err("blocks do not link by parent id");
        }
        Ok(())
    }

    /// Every block well formed and every QC valid for the set of its epoch.
    fn verify_range(&mut self, blocks: &[Block]) -> Result<(), ConsensusError> {
        let committed = self.tree.committed_height();
        // All the answer's QC signatures at once (in parallel with the
        // `parallel` feature), then each QC from the cache.
        self.verifier.prefetch_qcs(
            &self.schedule,
            blocks
                .iter()
                .filter(|b| b.height() > committed)
                .map(Block::justify),
        );
        for b in blocks.iter().filter(|b| b.height() > committed) {
            self.check_block_shape(b)?;
            self.verifier.verify_qc(&self.schedule, b.justify())?;
        }
        Ok(())
    }

    /// Place buffered answers whose first new block's parent is known,
    /// lowest first; an answer that cannot fit although nothing is missing
    /// below it is bad.
    fn drain_ready(&mut self) {
        loop {
            let committed = self.tree.committed_height();
            let tree = &self.tree;
            let first_new = |bs: &[Block]| {
                bs.iter()
                    .find(|b| b.height() > committed && !tree.contains(&b.id()))
                    .map(|b| tree.contains(&b.parent_id()))
            };
            let mut fitting = None;
            let mut stale = Vec::new();
            for (start, (_, bs)) in &self.range.ready {
                match first_new(bs) {
                    None => stale.push(*start),
                    Some(true) => {
                        fitting = Some(*start);
                        break;
                    }
                    Some(false) => {}
                }
            }
            for s in stale {
                self.range.ready.remove(&s);
            }
            let Some(start) = fitting else {
                break;
            };
            let Some((from, blocks)) = self.range.ready.remove(&start) else {
                break;
            };
            let count = blocks.len() as u32;
            for b in &blocks {
                if b.height() <= self.tree.committed_height() || self.tree.contains(&b.id()) {
                    continue;
                }
                match self.place(b, from, Origin::Sync) {
                    Ok(Placement::Placed) => self.metrics.sync_blocks_received += 1,
                    Ok(Placement::Missing(_)) | Err(_) => {
                        self.drop_peer(from, b.height(), count);
                        break;
                    }
                }
            }
        }
        // The lowest answer cannot fit although everything below it is
        // committed: it does not extend our chain.
        let committed = self.tree.committed_height();
        let lowest = self
            .range
            .ready
            .iter()
            .next()
            .map(|(s, (p, bs))| (*s, *p, bs.len() as u32));
        if let Some((start, peer, count)) = lowest
            && start <= committed.next()
        {
            self.range.ready.remove(&start);
            self.drop_peer(peer, start, count);
        }
    }
}
