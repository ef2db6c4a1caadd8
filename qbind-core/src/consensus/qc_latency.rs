//! QC formation latency (runbook §7.4, `qbind_consensus_qc_formation_latency_ms`,
//! exported by the reference node in seconds): how long a view's proposal
//! waits, at this validator, for the quorum certificate that certifies it.
//!
//! The clock starts when this validator places the proposal of the view it
//! is in (its own proposal when it leads: the leader places it as it
//! broadcasts it) and stops when it first holds a QC for that view: formed
//! here from votes (the next leader), or carried by the next view's
//! proposal or a timeout (everyone else). So the next leader measures the
//! vote round; the others also wait for the next leader's proposal to
//! reach them. Views whose proposal arrived before its parent (placed later
//! by block sync) or after the view was left are not measured. The time is
//! the `now` given to [`HotStuff::handle`](super::HotStuff::handle): this
//! module reads no clock.

use crate::types::{Millis, View};

/// The view whose proposal is waiting for its QC, and since when.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct QcLatency {
    waiting: Option<(View, Millis)>,
}

impl QcLatency {
    /// The proposal of `view` (the current view) was placed at `now`. A
    /// second proposal of the same view (a re-broadcast, an equivocation)
    /// does not restart the clock.
    pub(crate) fn proposal_placed(&mut self, view: View, now: Millis) {
        if self.waiting.is_none_or(|(v, _)| v < view) {
            self.waiting = Some((view, now));
        }
    }

    /// A QC for `view` is held at `now`: the milliseconds its proposal
    /// waited, once per view. A QC of a later view ends the wait unmeasured
    /// (this validator missed the QC of the view it measured).
    pub(crate) fn certified(&mut self, view: View, now: Millis) -> Option<u64> {
        let (waiting, since) = self.waiting?;
        if view < waiting {
            return None;
        }
        self.waiting = None;
        (view == waiting).then(|| now.since(since))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::consensus::{ConsensusConfig, Effect, HotStuff, Input};
    use crate::crypto::KeyPair;
    use crate::signing::sign_domain;
    use crate::types::{Epoch, NetworkEnvironment, ValidatorId};
    use crate::validator::{EpochSchedule, ValidatorSet};

    const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;
    /// Every message takes this long; signing takes no time.
    const HOP: u64 = 7;

    #[test]
    fn the_clock_runs_once_per_view_from_the_first_proposal() {
        let mut q = QcLatency::default();
        assert_eq!(q.certified(View(3), Millis(5)), None, "nothing waiting");
        q.proposal_placed(View(3), Millis(10));
        q.proposal_placed(View(3), Millis(12));
        assert_eq!(q.certified(View(2), Millis(20)), None, "an older QC");
        assert_eq!(q.certified(View(3), Millis(25)), Some(15));
        assert_eq!(q.certified(View(3), Millis(30)), None, "measured once");
        q.proposal_placed(View(4), Millis(40));
        assert_eq!(q.certified(View(6), Millis(50)), None, "view 4's QC missed");
        assert_eq!(q.certified(View(4), Millis(60)), None);
    }

    /// Four validators start at 0 and exchange messages with a delay of
    /// [`HOP`] until `until` ms; the machines and the leaders of views 1
    /// and 2.
    fn four_validators(until: u64) -> (Vec<HotStuff>, usize, usize) {
        let keys: Vec<KeyPair> = (0..4u8)
            .map(|i| KeyPair::from_seed(&[i + 70; 32]))
            .collect();
        let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())
            .expect("set");
        let schedule = Arc::new(EpochSchedule::fixed(set));
        let cfg = ConsensusConfig::new(ENV);
        let mut nodes: Vec<HotStuff> = (0..4u32)
            .map(|i| {
                let (s, c) = (schedule.clone(), cfg.clone());
                HotStuff::new(c, ValidatorId(i), s, None, Vec::new(), Vec::new())
            })
            .collect();
        let leader = |v| nodes[0].leader(Epoch(0), View(v)).0 as usize;
        let (first, second) = (leader(1), leader(2));
        // (time, sequence) -> (validator, input): delivered in that order.
        let mut queue: BTreeMap<(u64, usize), (usize, Input)> = BTreeMap::new();
        for i in 0..4 {
            queue.insert((0, i), (i, Input::Start));
        }
        let mut seq = 4;
        while let Some(((at, _), (i, input))) = queue.pop_first() {
            if at > until {
                break;
            }
            let from = ValidatorId(i as u32);
            let mut deliveries = Vec::new();
            for effect in nodes[i].handle(Millis(at), input) {
                match effect {
                    Effect::Sign(job) => {
                        let r = &job.request;
                        let signature = sign_domain(&keys[i], ENV, r.kind, &r.message);
                        deliveries.push((at, i, Input::Signed { job, signature }));
                    }
                    Effect::Send { to, msg } => {
                        let input = Input::Message { from, msg };
                        deliveries.push((at + HOP, to.0 as usize, input));
                    }
                    Effect::Broadcast(msg) => {
                        for j in (0..4).filter(|j| *j != i) {
                            let msg = msg.clone();
                            deliveries.push((at + HOP, j, Input::Message { from, msg }));
                        }
                    }
                    _ => {}
                }
            }
            for (t, to, input) in deliveries {
                queue.insert((t, seq), (to, input));
                seq += 1;
            }
        }
        (nodes, first, second)
    }

    /// The leader of view 1 proposes at 0; the others place it at HOP and
    /// vote; the leader of view 2 has its quorum at 2·HOP (its own vote and
    /// the first leader's arrive first, the other two one hop later) and
    /// proposes view 2 with the QC, which reaches the others at 3·HOP.
    #[test]
    fn each_validator_measures_from_its_proposal_to_its_qc() {
        let (nodes, first, second) = four_validators(3 * HOP);
        for (i, node) in nodes.iter().enumerate() {
            let placed = if i == first { 0 } else { HOP };
            let certified = if i == second { 2 * HOP } else { 3 * HOP };
            let m = node.metrics();
            assert_eq!(
                (m.qc_formation_latency_ms, m.qc_latencies_measured),
                (certified - placed, 1),
                "validator {i} (leaders: view 1 {first}, view 2 {second})"
            );
        }
    }
}
