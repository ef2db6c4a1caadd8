//! Invariant checks of the simulator, written independently of the consensus
//! code (STYLE 13): they look only at what honest nodes *sent* and
//! *committed*, never at the state machine's own predicates.
//!
//! - **Agreement**: no two honest nodes commit different blocks at a height.
//! - **Chain**: each honest node commits consecutive heights, each block's
//!   parent being the previous commit (so committed chains are prefixes of
//!   each other).
//! - **No double signing**: an honest validator never sends two different
//!   votes, timeouts or proposals for one view, across restarts.
//! - **Liveness**: after the last fault heals, every honest node commits at
//!   least `commits` blocks proposed within `within_views` views.

use std::collections::BTreeMap;

use crate::types::{Epoch, Hash32, Height, ValidatorId, View};

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Two honest nodes committed different blocks at one height.
    Agreement {
        /// The height.
        height: Height,
        /// One block.
        first: Hash32,
        /// The other.
        second: Hash32,
    },
    /// A node's commits skipped a height or did not link to the previous.
    Chain {
        /// Node index.
        node: usize,
        /// The offending height.
        height: Height,
    },
    /// An honest validator sent two different votes in one view.
    DoubleVote {
        /// The validator.
        validator: ValidatorId,
        /// The view.
        view: View,
    },
    /// An honest validator sent two different timeouts for one view.
    DoubleTimeout {
        /// The validator.
        validator: ValidatorId,
        /// The view.
        view: View,
    },
    /// An honest validator proposed two different blocks in one view.
    DoubleProposal {
        /// The validator.
        validator: ValidatorId,
        /// The view.
        view: View,
    },
    /// An honest validator sent two different DAG batches for one slot.
    DoubleBatch {
        /// The validator.
        validator: ValidatorId,
        /// The slot's round.
        round: u64,
    },
    /// An honest node committed a block ordering a batch without a valid
    /// certificate (checked independently of the core's verifier).
    UncertifiedBatch {
        /// Height of the block.
        height: Height,
    },
    /// An honest node delivered one transaction for execution twice.
    DoubleExecution {
        /// Node index.
        node: usize,
        /// Height of the second delivery.
        height: Height,
    },
    /// Honest nodes delivered different transactions for one height.
    ExecutionMismatch {
        /// The height.
        height: Height,
    },
    /// An honest node could not get the data of blocks it committed.
    Unavailable {
        /// Node index.
        node: usize,
        /// Committed height.
        committed: Height,
        /// Executed height.
        executed: Height,
    },
    /// Honest nodes reached different state roots at one height.
    StateRootMismatch {
        /// The height.
        height: Height,
    },
    /// An honest node's executor failed on a committed block.
    ExecutionFailed {
        /// Node index.
        node: usize,
        /// The height.
        height: Height,
    },
    /// A node's persisted state could not be loaded at restart (the
    /// production restore path, [`crate::replica::Replica::open`], failed).
    RestoreFailed {
        /// Node index.
        node: usize,
    },
    /// An honest node sent a certificate without valid signatures of more
    /// than two thirds of its epoch's stake, or a QC whose epoch or view
    /// differs from its block's.
    BadCertificate {
        /// Node index.
        node: usize,
        /// The certificate's view.
        view: View,
    },
    /// A restarted honest node no longer remembers a vote or timeout it
    /// sent before the crash (its safety state was not durable in time).
    ForgotVote {
        /// Node index.
        node: usize,
        /// The highest view it had signed in.
        signed: View,
        /// What it remembered at restart.
        remembered: View,
    },
    /// An honest node decoded a message that was not canonically encoded
    /// (trailing bytes).
    NonCanonicalAccepted {
        /// Node index.
        node: usize,
    },
    /// An account's nonce advanced more often than distinct nonces of its
    /// transactions were delivered: a transaction executed twice.
    NonceReplay {
        /// Node index.
        node: usize,
        /// Height executed.
        height: Height,
    },
    /// An honest node held more than a stated bound.
    OverBound {
        /// Node index.
        node: usize,
        /// Which structure.
        what: &'static str,
        /// How much it held.
        held: usize,
    },
    /// The run processed its whole event budget without ending: something
    /// loops without simulated time advancing.
    EventBudget {
        /// Simulated time when the budget ran out.
        at: u64,
    },
    /// The scenario could not be built (the run did not happen).
    InvalidScenario {
        /// Why.
        why: &'static str,
    },
    /// An honest node did not make the required progress after the heal.
    Liveness {
        /// Node index.
        node: usize,
        /// Blocks it committed from the window.
        committed: u64,
        /// Blocks required.
        required: u64,
    },
}

/// What the checker remembers.
#[derive(Default)]
pub(crate) struct Checker {
    by_height: BTreeMap<Height, Hash32>,
    last: BTreeMap<usize, (Height, Hash32)>,
    votes: BTreeMap<(ValidatorId, Epoch, View), Hash32>,
    timeouts: BTreeMap<(ValidatorId, Epoch, View), (View, Hash32)>,
    proposals: BTreeMap<(ValidatorId, Epoch, View), Hash32>,
    batches: BTreeMap<(ValidatorId, Epoch, u64), Hash32>,
    executed: BTreeMap<Height, Hash32>,
    executed_txs: BTreeMap<usize, std::collections::HashSet<Hash32>>,
    state_roots: BTreeMap<Height, Hash32>,
    /// Highest view each honest node signed a vote or timeout in.
    signed: BTreeMap<usize, View>,
    pub(crate) violations: Vec<Violation>,
}

impl Checker {
    pub(crate) fn new(genesis: Hash32, nodes: usize) -> Self {
        let mut c = Checker::default();
        c.by_height.insert(Height(0), genesis);
        for i in 0..nodes {
            c.last.insert(i, (Height(0), genesis));
        }
        c
    }

    /// An honest node reached `root` after executing `height`.
    pub(crate) fn state_root(&mut self, height: Height, root: Hash32) {
        match self.state_roots.get(&height) {
            Some(r) if *r != root => self.push(Violation::StateRootMismatch { height }),
            Some(_) => {}
            None => {
                self.state_roots.insert(height, root);
            }
        }
    }

    /// Honest node `node` sent a vote or timeout for `view`.
    pub(crate) fn signed(&mut self, node: usize, view: View) {
        let v = self.signed.entry(node).or_default();
        *v = (*v).max(view);
    }

    /// Honest node `node` restarted remembering `remembered` as its last
    /// voted view.
    pub(crate) fn restarted(&mut self, node: usize, _validator: ValidatorId, remembered: View) {
        if let Some(&signed) = self.signed.get(&node)
            && signed > remembered
        {
            self.push(Violation::ForgotVote {
                node,
                signed,
                remembered,
            });
        }
    }

    /// An honest node delivered `txs` for execution at `height`. A
    /// transaction an adversary resubmitted (`replayed`) may be delivered
    /// again (execution refuses it by its nonce); any other twice is a
    /// violation.
    pub(crate) fn execute(
        &mut self,
        node: usize,
        height: Height,
        txs: &[Vec<u8>],
        replayed: &std::collections::HashSet<Hash32>,
    ) {
        let seen = self.executed_txs.entry(node).or_default();
        let mut twice = false;
        let mut list = Vec::new();
        for tx in txs {
            let id = Hash32::digest(tx);
            twice |= !seen.insert(id) && !replayed.contains(&id);
            list.extend_from_slice(id.as_bytes());
        }
        if twice {
            self.push(Violation::DoubleExecution { node, height });
        }
        let digest = Hash32::digest(&list);
        match self.executed.get(&height) {
            Some(d) if *d != digest => self.push(Violation::ExecutionMismatch { height }),
            Some(_) => {}
            None => {
                self.executed.insert(height, digest);
            }
        }
    }

    /// Record a violation found by the runner.
    pub(crate) fn report(&mut self, v: Violation) {
        self.push(v);
    }

    pub(crate) fn push(&mut self, v: Violation) {
        if self.violations.len() < 64 {
            self.violations.push(v);
        }
    }

    /// An honest node committed `id` at `height` with parent `parent`.
    pub(crate) fn commit(&mut self, node: usize, height: Height, id: Hash32, parent: Hash32) {
        match self.by_height.get(&height) {
            Some(existing) if *existing != id => {
                let first = *existing;
                self.push(Violation::Agreement {
                    height,
                    first,
                    second: id,
                });
            }
            Some(_) => {}
            None => {
                self.by_height.insert(height, id);
            }
        }
        let (last_h, last_id) = self.last.get(&node).copied().unwrap_or_default();
        if height.0 != last_h.0 + 1 || parent != last_id {
            self.push(Violation::Chain { node, height });
        }
        self.last.insert(node, (height, id));
    }

    /// An honest validator sent a vote.
    pub(crate) fn vote(&mut self, who: ValidatorId, epoch: Epoch, view: View, block: Hash32) {
        match self.votes.insert((who, epoch, view), block) {
            Some(prev) if prev != block => self.push(Violation::DoubleVote {
                validator: who,
                view,
            }),
            _ => {}
        }
    }

    /// An honest validator sent a timeout (`qc` identifies the attached QC).
    pub(crate) fn timeout(
        &mut self,
        who: ValidatorId,
        epoch: Epoch,
        view: View,
        high_qc_view: View,
        qc: Hash32,
    ) {
        match self.timeouts.insert((who, epoch, view), (high_qc_view, qc)) {
            Some(prev) if prev != (high_qc_view, qc) => self.push(Violation::DoubleTimeout {
                validator: who,
                view,
            }),
            _ => {}
        }
    }

    /// An honest validator sent a proposal.
    pub(crate) fn proposal(&mut self, who: ValidatorId, epoch: Epoch, view: View, block: Hash32) {
        match self.proposals.insert((who, epoch, view), block) {
            Some(prev) if prev != block => self.push(Violation::DoubleProposal {
                validator: who,
                view,
            }),
            _ => {}
        }
    }

    /// An honest validator sent its DAG batch for slot (epoch, round).
    pub(crate) fn batch(&mut self, who: ValidatorId, epoch: Epoch, round: u64, digest: Hash32) {
        match self.batches.insert((who, epoch, round), digest) {
            Some(prev) if prev != digest => self.push(Violation::DoubleBatch {
                validator: who,
                round,
            }),
            _ => {}
        }
    }

    /// Liveness of one honest node: `views` are the views of the blocks it
    /// committed.
    pub(crate) fn liveness(
        &mut self,
        node: usize,
        views: impl Iterator<Item = View>,
        after: View,
        within: u64,
        required: u64,
    ) {
        let end = View(after.0.saturating_add(within));
        let committed = views.filter(|v| *v > after && *v <= end).count() as u64;
        if committed < required {
            self.push(Violation::Liveness {
                node,
                committed,
                required,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_flags_forks_gaps_and_double_signing() {
        let g = Hash32([0; 32]);
        let a = Hash32([1; 32]);
        let b = Hash32([2; 32]);
        let mut c = Checker::new(g, 2);
        c.commit(0, Height(1), a, g);
        c.commit(1, Height(1), b, g);
        assert!(matches!(c.violations[0], Violation::Agreement { .. }));
        c.commit(0, Height(3), b, a);
        assert!(matches!(c.violations[1], Violation::Chain { node: 0, .. }));
        c.vote(ValidatorId(1), Epoch(0), View(4), a);
        c.vote(ValidatorId(1), Epoch(0), View(4), a);
        assert_eq!(c.violations.len(), 2);
        c.vote(ValidatorId(1), Epoch(0), View(4), b);
        assert!(matches!(c.violations[2], Violation::DoubleVote { .. }));
        c.timeout(ValidatorId(1), Epoch(0), View(5), View(3), a);
        c.timeout(ValidatorId(1), Epoch(0), View(5), View(4), b);
        assert!(matches!(c.violations[3], Violation::DoubleTimeout { .. }));
        c.liveness(0, [View(11), View(12)].into_iter(), View(10), 50, 3);
        assert!(matches!(
            c.violations[4],
            Violation::Liveness { committed: 2, .. }
        ));
        c.state_root(Height(7), a);
        c.state_root(Height(7), a);
        assert_eq!(c.violations.len(), 5);
        c.state_root(Height(7), b);
        assert!(matches!(
            c.violations[5],
            Violation::StateRootMismatch { height: Height(7) }
        ));
    }
}
