//! How many transactions this validator puts in the blocks it proposes
//! (issue #21, "batch and block sizes adapt so a block's work fits the view
//! timer").
//!
//! The protocol's bound is [`super::ConsensusConfig::max_block_txs`] (and,
//! in DAG mode, `max_batches_per_block`); validators check only that, so
//! what a proposer chooses below it has no effect on safety. A block that
//! takes longer to verify, vote on and execute than the view timer allows
//! times out, and under overload blocks used to grow to whatever the pool
//! held until every view timed out. [`BlockBudget`] is the proposer's own
//! limit, additive-increase / multiplicative-decrease on what it observes
//! of its *own* proposals:
//!
//! - a proposal of ours committed within
//!   [`BlockBudgetConfig::target_commit_latency_ms`] of proposing it: grow
//!   by [`BlockBudgetConfig::grow_step`] (slowly, up to the protocol max);
//! - committed later than that: shrink by a quarter;
//! - not committed within [`BlockBudgetConfig::abandon_after_ms`] (its view
//!   timed out or it lost a fork): halve.
//!
//! Never below [`BlockBudgetConfig::min_block_txs`]. Only proposals made by
//! this validator count, so a crashed peer's timed-out views (every fourth
//! view with one of four down) do not shrink honest leaders' blocks. The
//! rule reads time only as the `now` of the machine's inputs: a replayed
//! input sequence gives the same limits.

use std::collections::BTreeMap;

use crate::types::{Height, Millis};

/// Proposals of ours awaiting commit that the budget remembers (older ones
/// are forgotten, counted as abandoned).
pub const MAX_OUTSTANDING_PROPOSALS: usize = 16;

/// Parameters of [`BlockBudget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockBudgetConfig {
    /// Whether the budget adapts; `false` proposes up to the protocol max.
    pub adaptive: bool,
    /// The smallest limit the rule shrinks to.
    pub min_block_txs: usize,
    /// Growth per proposal committed in time.
    pub grow_step: usize,
    /// A proposal committed within this long counts as in time.
    pub target_commit_latency_ms: u64,
    /// A proposal not committed within this long counts as failed.
    pub abandon_after_ms: u64,
}

impl BlockBudgetConfig {
    /// Defaults for a view timer of `base_timeout_ms` and a protocol max
    /// of `max_block_txs`: a proposal should commit (three views later)
    /// within one view timer, is abandoned after three; the limit starts at
    /// the max, shrinks to no less than 1/32 of it (at least 16) and grows
    /// back by 1/64 of it per proposal committed in time.
    #[must_use]
    pub fn for_timer(base_timeout_ms: u64, max_block_txs: usize) -> Self {
        BlockBudgetConfig {
            adaptive: true,
            min_block_txs: (max_block_txs / 32).max(16).min(max_block_txs),
            grow_step: (max_block_txs / 64).max(1),
            target_commit_latency_ms: base_timeout_ms,
            abandon_after_ms: base_timeout_ms.saturating_mul(3),
        }
    }
}

/// The proposer's adaptive transaction limit (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockBudget {
    cfg: BlockBudgetConfig,
    max: usize,
    limit: usize,
    /// Our proposals awaiting commit: height → when proposed.
    outstanding: BTreeMap<Height, Millis>,
}

impl BlockBudget {
    /// A budget under the protocol bound `max_block_txs`, starting there.
    #[must_use]
    pub fn new(cfg: BlockBudgetConfig, max_block_txs: usize) -> Self {
        BlockBudget {
            cfg,
            max: max_block_txs,
            limit: max_block_txs,
            outstanding: BTreeMap::new(),
        }
    }

    /// Transactions the next proposal may carry (≤ the protocol max).
    #[must_use]
    pub fn limit(&self) -> usize {
        if self.cfg.adaptive {
            self.limit
        } else {
            self.max
        }
    }

    fn floor(&self) -> usize {
        self.cfg.min_block_txs.clamp(1, self.max.max(1))
    }

    fn shrink(&mut self, numerator: usize, denominator: usize) {
        let reduced = self.limit.saturating_mul(numerator) / denominator.max(1);
        self.limit = reduced.max(self.floor()).min(self.max);
    }

    /// We propose a block at `height` at `now`. Proposals that waited past
    /// [`BlockBudgetConfig::abandon_after_ms`], or beyond
    /// [`MAX_OUTSTANDING_PROPOSALS`], count as failed first.
    pub fn proposed(&mut self, height: Height, now: Millis) {
        let abandon = self.cfg.abandon_after_ms;
        let expired: Vec<Height> = self
            .outstanding
            .iter()
            .filter(|(_, at)| now.since(**at) >= abandon)
            .map(|(h, _)| *h)
            .collect();
        for h in expired {
            self.outstanding.remove(&h);
            self.shrink(1, 2);
        }
        self.outstanding.insert(height, now);
        while self.outstanding.len() > MAX_OUTSTANDING_PROPOSALS {
            self.outstanding.pop_first();
            self.shrink(1, 2);
        }
    }

    /// The block at `height` was committed at `now`; `ours` says whether
    /// it is the block we proposed there (another block at a height we
    /// proposed for means ours lost).
    pub fn committed(&mut self, height: Height, ours: bool, now: Millis) {
        let Some(at) = self.outstanding.remove(&height) else {
            return;
        };
        if !ours {
            self.shrink(1, 2);
        } else if now.since(at) <= self.cfg.target_commit_latency_ms {
            self.limit = self.limit.saturating_add(self.cfg.grow_step).min(self.max);
        } else {
            self.shrink(3, 4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BlockBudgetConfig {
        BlockBudgetConfig {
            adaptive: true,
            min_block_txs: 10,
            grow_step: 5,
            target_commit_latency_ms: 1_000,
            abandon_after_ms: 3_000,
        }
    }

    #[test]
    fn timed_out_proposals_halve_the_limit_down_to_the_floor() {
        let mut b = BlockBudget::new(cfg(), 100);
        assert_eq!(b.limit(), 100);
        b.proposed(Height(1), Millis(0));
        // Not committed after 3 s: counted when we propose again.
        b.proposed(Height(5), Millis(3_000));
        assert_eq!(b.limit(), 50);
        for i in 0..10u64 {
            b.proposed(Height(10 + i), Millis(10_000 + i * 3_000));
        }
        assert_eq!(b.limit(), 10, "never below min_block_txs");
    }

    #[test]
    fn slow_commits_shrink_and_fast_commits_grow_back_slowly() {
        let mut b = BlockBudget::new(cfg(), 100);
        b.proposed(Height(1), Millis(0));
        b.committed(Height(1), true, Millis(1_500));
        assert_eq!(b.limit(), 75);
        b.proposed(Height(2), Millis(2_000));
        b.committed(Height(2), true, Millis(2_400));
        assert_eq!(b.limit(), 80);
        // Grows one step per fast commit, never past the protocol max.
        for h in 3..20u64 {
            b.proposed(Height(h), Millis(h * 1_000));
            b.committed(Height(h), true, Millis(h * 1_000 + 100));
        }
        assert_eq!(b.limit(), 100);
    }

    #[test]
    fn a_lost_proposal_halves_and_others_commits_are_ignored() {
        let mut b = BlockBudget::new(cfg(), 100);
        // Commits at heights we did not propose for change nothing.
        b.committed(Height(7), true, Millis(0));
        b.committed(Height(8), false, Millis(0));
        assert_eq!(b.limit(), 100);
        b.proposed(Height(9), Millis(0));
        b.committed(Height(9), false, Millis(100));
        assert_eq!(b.limit(), 50);
    }

    #[test]
    fn the_rule_is_a_function_of_its_inputs() {
        let run = || {
            let mut b = BlockBudget::new(cfg(), 2_000);
            let mut out = Vec::new();
            for h in 0..200u64 {
                let now = Millis(h * 700);
                b.proposed(Height(h), now);
                if h % 3 != 0 {
                    b.committed(Height(h), true, Millis(h * 700 + (h % 5) * 400));
                }
                out.push(b.limit());
            }
            out
        };
        assert_eq!(run(), run());
        assert!(run().iter().all(|l| (10..=2_000).contains(l)));
    }

    #[test]
    fn outstanding_proposals_are_bounded() {
        let mut b = BlockBudget::new(cfg(), 100);
        for h in 0..1_000u64 {
            b.proposed(Height(h), Millis(h));
        }
        assert!(b.outstanding.len() <= MAX_OUTSTANDING_PROPOSALS);
        assert_eq!(b.limit(), 10);
    }

    #[test]
    fn a_fixed_budget_is_the_protocol_max() {
        let mut b = BlockBudget::new(
            BlockBudgetConfig {
                adaptive: false,
                ..cfg()
            },
            100,
        );
        b.proposed(Height(1), Millis(0));
        b.proposed(Height(2), Millis(10_000));
        assert_eq!(b.limit(), 100);
    }

    #[test]
    fn defaults_follow_the_timer_and_the_max() {
        let c = BlockBudgetConfig::for_timer(1_000, 2_000);
        assert_eq!(c.min_block_txs, 62);
        assert_eq!(c.grow_step, 31);
        assert_eq!(c.abandon_after_ms, 3_000);
        let tiny = BlockBudgetConfig::for_timer(1_000, 4);
        assert_eq!(tiny.min_block_txs, 4);
    }
}
