//! Who leads a view (Consensus §C2.1, §C10 in docs/consensus.md).
//!
//! Two policies. [`LeaderPolicy::RoundRobin`] is the epoch's set in id
//! order. [`LeaderPolicy::Reputation`] stops electing validators that took
//! no part in the recent committed chain: for view `v` of epoch `e` it looks
//! at the *anchor window* — the last `window` committed blocks of epoch `e`
//! whose view is at most `v − lag_views` — and counts a validator as active
//! if it proposed one of those blocks or signed the QC one of them carries.
//! The leader is then drawn by a hash of `(chain, epoch, view)` over the
//! active validators weighted by stake. When the active validators hold
//! less than a quorum of stake — the window holds no QC of its own epoch:
//! genesis, the start of an epoch — it is round-robin.
//!
//! Why honest validators agree: the answer is a pure function of the
//! committed blocks of view `≤ v − lag_views`, and committed chains of
//! honest validators are prefixes of one chain (safety). Two validators that
//! have both committed a block of view above `v − lag_views` therefore hold
//! the same anchor window and elect the same leader. One that lags further
//! behind may elect another; that costs it (and at worst the view) liveness,
//! never safety: the voting rules (§C4) do not depend on who leads.
//!
//! Why the draw does not use block hashes: a proposer can grind the
//! contents of its block, so a seed taken from a block id would let it
//! choose later leaders. The draw's only input a validator influences is
//! the active set, and only through which QC signers it includes in the
//! blocks it proposes (docs/security.md, "Leader reputation").

use std::collections::VecDeque;

use crate::consensus::messages::Block;
use crate::types::{ChainId, Epoch, Hash32, Height, ValidatorId, View};
use crate::validator::ValidatorSet;

/// Largest accepted [`ReputationConfig::window`] (blocks): bounds the work
/// of one leader computation and the committed history kept.
pub const MAX_REPUTATION_WINDOW: u64 = 4_096;

/// Committed blocks kept beyond the window, so that the leader of a view
/// up to this many committed blocks in the past is still computed from the
/// same history as when it was current (a late proposal of an old view is
/// checked against the right leader).
pub const EXTRA_HISTORY_BLOCKS: usize = 256;

/// Parameters of [`LeaderPolicy::Reputation`]. All validators of a network
/// must use the same values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReputationConfig {
    /// Committed blocks (of the view's epoch) whose proposers and QC
    /// signers count as active; capped at [`MAX_REPUTATION_WINDOW`].
    pub window: u64,
    /// Only blocks of view `≤ v − lag_views` decide the leader of view `v`,
    /// so that validators at slightly different commit heights agree.
    pub lag_views: u64,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            window: 10,
            lag_views: 8,
        }
    }
}

/// How the leader of a view is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderPolicy {
    /// View `v` is led by validator `v mod n` of its epoch's set.
    RoundRobin,
    /// Stake-weighted draw over the validators active in the recent
    /// committed chain (module docs).
    Reputation(ReputationConfig),
}

impl Default for LeaderPolicy {
    fn default() -> Self {
        LeaderPolicy::Reputation(ReputationConfig::default())
    }
}

impl LeaderPolicy {
    /// How many of the newest committed blocks leader selection remembers
    /// (the window and [`EXTRA_HISTORY_BLOCKS`]; none for round robin): a
    /// restarted validator loads their entries
    /// (`crate::schema::Window::history`) so that it computes the leaders
    /// the running validators do.
    #[must_use]
    pub fn history_blocks(self) -> usize {
        match self {
            LeaderPolicy::RoundRobin => 0,
            LeaderPolicy::Reputation(c) => {
                usize::try_from(c.window.clamp(1, MAX_REPUTATION_WINDOW))
                    .unwrap_or(usize::MAX)
                    .saturating_add(EXTRA_HISTORY_BLOCKS)
            }
        }
    }
}

/// What leader selection remembers of one committed block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedEntry {
    /// The block's height.
    pub height: Height,
    /// The block's epoch.
    pub epoch: Epoch,
    /// The block's view.
    pub view: View,
    /// Who proposed it.
    pub proposer: ValidatorId,
    /// Who signed the QC it carries, when that QC is of the block's own
    /// epoch (the first block of an epoch carries the previous set's QC,
    /// whose positions name other validators).
    pub signers: Vec<ValidatorId>,
}

impl CommittedEntry {
    /// The entry of a committed block.
    #[must_use]
    pub fn of(block: &Block) -> Self {
        let justify = block.justify();
        let signers = if justify.data.epoch == block.epoch() {
            justify.signers.iter().collect()
        } else {
            Vec::new()
        };
        CommittedEntry {
            height: block.height(),
            epoch: block.epoch(),
            view: block.view(),
            proposer: block.header().proposer,
            signers,
        }
    }
}

/// The leader of every view, from the policy and the committed chain.
#[derive(Clone, Debug)]
pub struct LeaderSchedule {
    policy: LeaderPolicy,
    chain_id: ChainId,
    /// The tail of the committed chain, ascending heights (and views).
    history: VecDeque<CommittedEntry>,
}

impl LeaderSchedule {
    /// A schedule for `policy` on chain `chain_id`, with no history.
    #[must_use]
    pub fn new(policy: LeaderPolicy, chain_id: ChainId) -> Self {
        LeaderSchedule {
            policy,
            chain_id,
            history: VecDeque::new(),
        }
    }

    /// The policy in force.
    #[must_use]
    pub fn policy(&self) -> LeaderPolicy {
        self.policy
    }

    fn window(&self) -> Option<(usize, u64)> {
        match self.policy {
            LeaderPolicy::RoundRobin => None,
            LeaderPolicy::Reputation(c) => {
                let w = c.window.clamp(1, MAX_REPUTATION_WINDOW);
                Some((usize::try_from(w).unwrap_or(usize::MAX), c.lag_views))
            }
        }
    }

    /// Record a committed block. Blocks must come in commit (height)
    /// order; genesis and blocks at or below the last recorded height are
    /// ignored, so the same block may be offered twice (restart, sync).
    pub fn record(&mut self, entry: CommittedEntry) {
        let Some((window, _)) = self.window() else {
            return;
        };
        if entry.height.0 == 0
            || self
                .history
                .back()
                .is_some_and(|b| b.height >= entry.height)
        {
            return;
        }
        self.history.push_back(entry);
        while self.history.len() > window.saturating_add(EXTRA_HISTORY_BLOCKS) {
            self.history.pop_front();
        }
    }

    /// Committed blocks remembered.
    #[must_use]
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// The validators of `set` active in the anchor window of `(epoch,
    /// view)`, in id order; empty under round-robin or with no window.
    #[must_use]
    pub fn active(&self, set: &ValidatorSet, epoch: Epoch, view: View) -> Vec<ValidatorId> {
        let Some((window, lag)) = self.window() else {
            return Vec::new();
        };
        let limit = View(view.0.saturating_sub(lag));
        // Views increase along the chain: the anchor is the last entry of
        // view `<= limit`.
        let end = self.history.partition_point(|b| b.view <= limit);
        let mut active = vec![false; set.len()];
        let mut mark = |id: ValidatorId| {
            if let Some(slot) = active.get_mut(id.0 as usize) {
                *slot = true;
            }
        };
        let blocks = self
            .history
            .range(..end)
            .rev()
            .skip_while(|b| b.epoch > epoch)
            .take_while(|b| b.epoch == epoch)
            .take(window);
        for b in blocks {
            mark(b.proposer);
            for s in &b.signers {
                mark(*s);
            }
        }
        active
            .iter()
            .enumerate()
            .filter(|(_, a)| **a)
            .map(|(i, _)| ValidatorId(i as u32))
            .collect()
    }

    /// The leader of `view` in `epoch`, whose set is `set`.
    #[must_use]
    pub fn leader(&self, set: &ValidatorSet, epoch: Epoch, view: View) -> ValidatorId {
        let active = self.active(set, epoch, view);
        let total: u128 = active
            .iter()
            .filter_map(|id| set.get(*id))
            .map(|v| u128::from(v.stake))
            .sum();
        // Fewer than a quorum of stake active means the window holds no QC
        // of its own epoch (genesis, an epoch's first blocks): the few
        // proposers seen might all be down since, and electing only them
        // would stop the chain before it could commit anything that
        // changes the window. A window with a QC has a quorum of signers,
        // so more than a third of the stake in it is correct.
        if total == 0 || total < u128::from(set.quorum_stake()) {
            return set.leader(view);
        }
        let draw = Hash32::digest_parts(&[
            b"QBIND-LEADER-V1",
            &self.chain_id.0.to_le_bytes(),
            &epoch.0.to_le_bytes(),
            &view.0.to_le_bytes(),
        ]);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&draw.0[..16]);
        let mut ticket = u128::from_le_bytes(bytes) % total;
        for id in &active {
            let stake = set.get(*id).map_or(0, |v| u128::from(v.stake));
            if ticket < stake {
                return *id;
            }
            ticket -= stake;
        }
        set.leader(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;
    use crate::types::QBIND_DEVNET_CHAIN_ID;

    fn set(stakes: &[u64]) -> ValidatorSet {
        ValidatorSet::new(
            stakes
                .iter()
                .enumerate()
                .map(|(i, s)| (KeyPair::from_seed(&[i as u8; 32]).public_key().clone(), *s))
                .collect(),
        )
        .unwrap()
    }

    fn rep(window: u64, lag_views: u64) -> LeaderSchedule {
        LeaderSchedule::new(
            LeaderPolicy::Reputation(ReputationConfig { window, lag_views }),
            QBIND_DEVNET_CHAIN_ID,
        )
    }

    /// A committed chain of `n` validators, one block per view from view 1,
    /// in which `down` never proposes or signs and the others take turns.
    fn chain(n: u32, down: &[u32], blocks: u64, epoch: Epoch) -> Vec<CommittedEntry> {
        let live: Vec<u32> = (0..n).filter(|i| !down.contains(i)).collect();
        (1..=blocks)
            .map(|h| CommittedEntry {
                height: Height(h),
                epoch,
                view: View(h),
                proposer: ValidatorId(live[h as usize % live.len()]),
                signers: live.iter().map(|i| ValidatorId(*i)).collect(),
            })
            .collect()
    }

    fn fed(mut s: LeaderSchedule, entries: &[CommittedEntry]) -> LeaderSchedule {
        for e in entries {
            s.record(e.clone());
        }
        s
    }

    #[test]
    fn a_validator_absent_from_the_window_is_never_elected() {
        let set = set(&[1; 4]);
        let s = fed(rep(10, 8), &chain(4, &[2], 200, Epoch(0)));
        let mut led = [0u32; 4];
        for v in 100..2_000 {
            led[s.leader(&set, Epoch(0), View(v)).0 as usize] += 1;
        }
        assert_eq!(led[2], 0, "{led:?}");
        assert!(
            led.iter().enumerate().all(|(i, c)| i == 2 || *c > 400),
            "{led:?}"
        );
        // Round-robin keeps electing it every fourth view.
        let rr = fed(
            LeaderSchedule::new(LeaderPolicy::RoundRobin, QBIND_DEVNET_CHAIN_ID),
            &chain(4, &[2], 200, Epoch(0)),
        );
        assert_eq!(rr.leader(&set, Epoch(0), View(102)), ValidatorId(2));
        assert_eq!(rr.history_len(), 0);
    }

    #[test]
    fn same_committed_history_gives_the_same_leader_on_every_node() {
        let set = set(&[1; 4]);
        let history = chain(4, &[1], 120, Epoch(0));
        let a = fed(rep(10, 8), &history);
        let b = fed(rep(10, 8), &history);
        for v in 1..400 {
            assert_eq!(
                a.leader(&set, Epoch(0), View(v)),
                b.leader(&set, Epoch(0), View(v))
            );
        }
    }

    #[test]
    fn nodes_at_different_commit_heights_agree_within_the_lag() {
        // Node a committed up to height 60, node b up to 70; for views whose
        // anchor (view - lag) both have committed past, they agree.
        let set = set(&[1, 2, 3, 4, 5]);
        let mut history = chain(5, &[3], 70, Epoch(0));
        // Make the window's content change over time: validator 4 stops
        // proposing and signing from height 55 on.
        for e in history.iter_mut().skip(54) {
            e.signers.retain(|s| s.0 != 4);
            if e.proposer.0 == 4 {
                e.proposer = ValidatorId(0);
            }
        }
        let a = fed(rep(16, 10), &history[..60]);
        let b = fed(rep(16, 10), &history);
        // Both have committed a block of view > v - 10 for v <= 69.
        let mut differ = 0;
        for v in 1..=69 {
            assert_eq!(
                a.leader(&set, Epoch(0), View(v)),
                b.leader(&set, Epoch(0), View(v)),
                "view {v}"
            );
        }
        // Beyond the rule (a has not committed past v - 10) they may differ.
        for v in 71..200 {
            differ +=
                u32::from(a.leader(&set, Epoch(0), View(v)) != b.leader(&set, Epoch(0), View(v)));
        }
        assert!(differ > 0, "the histories differ, so some later view must");
        // Offering the same blocks again (restart, sync) changes nothing.
        let c = fed(fed(rep(16, 10), &history[..60]), &history);
        for v in 1..200 {
            assert_eq!(
                b.leader(&set, Epoch(0), View(v)),
                c.leader(&set, Epoch(0), View(v))
            );
        }
    }

    #[test]
    fn falls_back_to_round_robin_without_history() {
        let set = set(&[1; 4]);
        let s = rep(10, 8);
        for v in 0..40 {
            assert_eq!(s.leader(&set, Epoch(0), View(v)), set.leader(View(v)));
        }
        // History too recent for the view (nothing at or below v - lag).
        let s = fed(rep(10, 8), &chain(4, &[2], 30, Epoch(0)));
        for v in 0..=8 {
            assert_eq!(s.leader(&set, Epoch(0), View(v)), set.leader(View(v)));
        }
        // Only signers outside the set: nobody active, round-robin.
        let mut bogus = chain(4, &[], 30, Epoch(0));
        for e in &mut bogus {
            e.proposer = ValidatorId(9);
            e.signers = vec![ValidatorId(7), ValidatorId(8)];
        }
        let s = fed(rep(10, 8), &bogus);
        for v in 0..100 {
            assert_eq!(s.leader(&set, Epoch(0), View(v)), set.leader(View(v)));
        }
    }

    /// Seed 212003 of `sim_leader`: the only committed block carried the
    /// genesis QC (no signers) and was proposed by a validator that then
    /// crashed; electing only it stopped the chain for good.
    #[test]
    fn a_window_without_a_quorum_of_active_stake_is_round_robin() {
        let set = set(&[1; 7]);
        let first = CommittedEntry {
            height: Height(1),
            epoch: Epoch(0),
            view: View(1),
            proposer: ValidatorId(1),
            signers: Vec::new(),
        };
        let s = fed(rep(8, 6), std::slice::from_ref(&first));
        let led: std::collections::BTreeSet<_> = (7..200)
            .map(|v| s.leader(&set, Epoch(0), View(v)))
            .collect();
        assert_eq!(led.len(), 7, "{led:?}");
        // Four signers of seven are not a quorum (five): still round-robin.
        let mut weak = first.clone();
        weak.proposer = ValidatorId(2);
        weak.signers = (2..6).map(ValidatorId).collect();
        let s = fed(rep(8, 6), &[weak]);
        for v in 7..50 {
            assert_eq!(s.leader(&set, Epoch(0), View(v)), set.leader(View(v)));
        }
        // A quorum of signers: only they (and the proposer) lead.
        let mut strong = first;
        strong.signers = (2..7).map(ValidatorId).collect();
        let s = fed(rep(8, 6), &[strong]);
        assert!((7..200).all(|v| s.leader(&set, Epoch(0), View(v)) != ValidatorId(0)));
    }

    #[test]
    fn stake_weights_the_draw() {
        let set = set(&[1, 1, 1, 7]);
        let s = fed(rep(10, 8), &chain(4, &[], 100, Epoch(0)));
        let big = (50..5_050)
            .filter(|v| s.leader(&set, Epoch(0), View(*v)) == ValidatorId(3))
            .count();
        assert!((3_200..3_800).contains(&big), "{big} of 5000");
    }

    #[test]
    fn epoch_change_resets_the_window() {
        let set0 = set(&[1; 4]);
        let set1 = set(&[1; 5]);
        // Epoch 0: validator 2 down. Epoch 1 starts at view 101 with
        // validator 4 down and everybody else (2 included) active.
        let mut history = chain(4, &[2], 100, Epoch(0));
        let later: Vec<CommittedEntry> = chain(5, &[4], 100, Epoch(1))
            .into_iter()
            .map(|mut e| {
                e.height = Height(e.height.0 + 100);
                e.view = View(e.view.0 + 100);
                e
            })
            .collect();
        history.extend(later);
        let s = fed(rep(10, 8), &history);
        // Early in epoch 1 the anchor is still in epoch 0: round-robin over
        // the new set, not the old epoch's reputation.
        for v in 101..=108 {
            assert_eq!(s.leader(&set1, Epoch(1), View(v)), set1.leader(View(v)));
        }
        let mut led = [0u32; 5];
        for v in 150..1_150 {
            led[s.leader(&set1, Epoch(1), View(v)).0 as usize] += 1;
        }
        assert_eq!(led[4], 0, "{led:?}");
        assert!(led[2] > 100, "{led:?}");
        // Queries for epoch 0 still use epoch 0's blocks only.
        for v in 50..100 {
            assert_ne!(s.leader(&set0, Epoch(0), View(v)), ValidatorId(2));
        }
    }

    #[test]
    fn the_draw_depends_on_the_chain() {
        let set = set(&[1; 4]);
        let history = chain(4, &[], 100, Epoch(0));
        let a = fed(rep(10, 8), &history);
        let b = fed(
            LeaderSchedule::new(
                LeaderPolicy::Reputation(ReputationConfig::default()),
                crate::types::QBIND_MAINNET_CHAIN_ID,
            ),
            &history,
        );
        let same = (50..250)
            .filter(|v| a.leader(&set, Epoch(0), View(*v)) == b.leader(&set, Epoch(0), View(*v)))
            .count();
        assert!(same < 120, "{same}");
    }

    #[test]
    fn history_is_bounded() {
        let s = fed(rep(10, 8), &chain(4, &[], 5_000, Epoch(0)));
        assert_eq!(s.history_len(), 10 + EXTRA_HISTORY_BLOCKS);
        let s = fed(rep(u64::MAX, 10), &chain(4, &[], 5_000, Epoch(0)));
        assert!(s.history_len() <= MAX_REPUTATION_WINDOW as usize + EXTRA_HISTORY_BLOCKS);
    }
}
