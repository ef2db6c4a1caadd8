//! Deliberate bugs the simulator's default suite must catch (issue #17,
//! "a mutation list the suite must catch"): each [`Mutant`] is one switch at
//! one place in the production code.
//!
//! Switches exist only with the `sim` feature and only on the thread that
//! turned them on ([`Mutants::enable`], used by
//! [`Scenario::mutant`](crate::sim::Scenario::mutant)): a simulated run is
//! single-threaded, so runs on other test threads are never affected.
//! Without the feature, [`active`] is a constant `false` and the compiler
//! removes every switch. Never set outside tests.
//!
//! | mutant | where | what it breaks |
//! |---|---|---|
//! | `QuorumOffByOne` | `ValidatorSet::is_quorum` | quorum = 2f+1 − 1 stake |
//! | `DuplicateSignerCounted` | `consensus::votes::VoteCollector::add` | a repeated vote adds its stake again |
//! | `VoteBeforeDurable` | `replica::Replica` (`PersistSafety`) | the safety state is written buffered, so a vote can leave before it is durable |
//! | `PreviousEpochCertificate` | `HotStuff::process_qc` | a QC whose labels differ from its block's, or of a past epoch, is applied |
//! | `TrailingBytes` | `codec::Reader::finish` | trailing bytes after a value are accepted |
//! | `SkipNonceCheck` | `execution::executor` | a transaction with a stale nonce executes |
//! | `DedupByProcessHistory` | `dag` delivery | transactions delivered once per process lifetime, not per block |
//!
//! The lock check and the 3-chain commit rule are broken through
//! [`SafetyFaults`](crate::consensus::SafetyFaults), which predates this
//! module.

/// One deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutant {
    /// Quorum threshold one stake unit too low.
    QuorumOffByOne,
    /// A vote received twice from one voter counts its stake twice.
    DuplicateSignerCounted,
    /// The safety state is written buffered, not durably, before a vote or
    /// timeout is signed and sent.
    VoteBeforeDurable,
    /// `process_qc` skips the epoch/view binding of a QC to its block and
    /// applies past-epoch QCs of unknown blocks.
    PreviousEpochCertificate,
    /// The decoder accepts trailing bytes.
    TrailingBytes,
    /// Execution skips the nonce check.
    SkipNonceCheck,
    /// DAG delivery skips transactions this process delivered before
    /// (the behaviour before issue #17 finding 2).
    DedupByProcessHistory,
}

impl Mutant {
    /// Every mutant, in declaration order.
    pub const ALL: [Mutant; 7] = [
        Mutant::QuorumOffByOne,
        Mutant::DuplicateSignerCounted,
        Mutant::VoteBeforeDurable,
        Mutant::PreviousEpochCertificate,
        Mutant::TrailingBytes,
        Mutant::SkipNonceCheck,
        Mutant::DedupByProcessHistory,
    ];

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

#[cfg(feature = "sim")]
thread_local! {
    static ACTIVE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether `m` is switched on for this thread (always `false` without the
/// `sim` feature).
#[inline]
#[must_use]
pub fn active(m: Mutant) -> bool {
    #[cfg(feature = "sim")]
    {
        ACTIVE.with(|a| a.get() & m.bit() != 0)
    }
    #[cfg(not(feature = "sim"))]
    {
        let _ = m.bit();
        false
    }
}

/// Switches turned on for this thread until the guard is dropped.
#[cfg(feature = "sim")]
#[derive(Debug)]
pub struct Mutants {
    previous: u32,
}

#[cfg(feature = "sim")]
impl Mutants {
    /// Turn `mutants` on for this thread (tests only).
    #[must_use]
    pub fn enable(mutants: &[Mutant]) -> Mutants {
        let bits = mutants.iter().fold(0, |acc, m| acc | m.bit());
        let previous = ACTIVE.with(|a| a.replace(bits));
        Mutants { previous }
    }
}

#[cfg(feature = "sim")]
impl Drop for Mutants {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(self.previous));
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;

    #[test]
    fn switches_are_per_thread_and_scoped() {
        assert!(!active(Mutant::TrailingBytes));
        {
            let _on = Mutants::enable(&[Mutant::TrailingBytes]);
            assert!(active(Mutant::TrailingBytes));
            assert!(!active(Mutant::SkipNonceCheck));
            let other = std::thread::spawn(|| active(Mutant::TrailingBytes));
            assert_eq!(other.join().ok(), Some(false));
        }
        assert!(!active(Mutant::TrailingBytes));
    }
}
