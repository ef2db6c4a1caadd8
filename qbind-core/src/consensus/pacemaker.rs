//! The pacemaker (DESIGN "Consensus": views, timeouts, timeout
//! certificates): which view this validator is in, when that view times out,
//! and the exponential back-off of consecutive failed views. It decides
//! nothing about safety; the machine asks it to advance and arms timers with
//! the deadlines it returns.

use crate::consensus::messages::TimeoutCert;
use crate::types::{Epoch, Millis, View};

/// Views, deadlines and back-off of one validator.
pub(crate) struct Pacemaker {
    view: View,
    deadline: Millis,
    consecutive_timeouts: u32,
    last_tc: Option<TimeoutCert>,
    base_timeout_ms: u64,
    max_timeout_exponent: u32,
}

impl Pacemaker {
    /// Start in `view` with the given timer parameters.
    pub(crate) fn new(view: View, base_timeout_ms: u64, max_timeout_exponent: u32) -> Self {
        Pacemaker {
            view,
            deadline: Millis(0),
            consecutive_timeouts: 0,
            last_tc: None,
            base_timeout_ms,
            max_timeout_exponent,
        }
    }

    /// The current view.
    pub(crate) fn view(&self) -> View {
        self.view
    }

    /// Whether the current view's deadline has passed at `now`.
    pub(crate) fn expired(&self, now: Millis) -> bool {
        now >= self.deadline
    }

    /// The current view's timeout: the base doubled per consecutive failed
    /// view, up to `2^max_timeout_exponent`.
    ///
    /// Consensus §C6.1 (docs/consensus.md).
    fn timeout_duration(&self) -> u64 {
        let exp = self.consecutive_timeouts.min(self.max_timeout_exponent);
        self.base_timeout_ms.saturating_mul(1u64 << exp.min(62))
    }

    /// Restart the current view's timer at `now`; the new deadline.
    pub(crate) fn arm(&mut self, now: Millis) -> Millis {
        self.deadline = now.plus(self.timeout_duration());
        self.deadline
    }

    /// Move to `v` if it is ahead of the current view; `by_qc` (progress)
    /// resets the back-off. Whether the view changed.
    ///
    /// Consensus §C5.2, §C6.1 (docs/consensus.md).
    pub(crate) fn advance(&mut self, v: View, by_qc: bool) -> bool {
        if v <= self.view {
            return false;
        }
        self.view = v;
        if by_qc {
            self.consecutive_timeouts = 0;
        }
        true
    }

    /// This validator timed out in the current view (once per view).
    pub(crate) fn note_local_timeout(&mut self) {
        self.consecutive_timeouts = self.consecutive_timeouts.saturating_add(1);
    }

    /// A verified TC of `epoch` (the current one): remember it (a proposal
    /// of the next view carries it) and return the view it lets everyone
    /// enter, or `None` when it is stale or of another epoch.
    ///
    /// Consensus §C6.3 (docs/consensus.md).
    pub(crate) fn record_tc(&mut self, tc: &TimeoutCert, epoch: Epoch) -> Option<View> {
        if tc.epoch != epoch || tc.view < self.view {
            return None;
        }
        self.last_tc = Some(tc.clone());
        Some(tc.view.next())
    }

    /// The TC that let this validator enter `view`, if it entered by one.
    pub(crate) fn tc_entering(&self, view: View) -> Option<TimeoutCert> {
        self.last_tc.clone().filter(|tc| tc.view.next() == view)
    }

    /// Interval between re-broadcasts of an unanswered proposal.
    pub(crate) fn rebroadcast_interval(&self) -> u64 {
        (self.base_timeout_ms / 4).max(1)
    }
}
