//! Where a node's CPU time goes (issue #21's CPU split): signature
//! verification, execution, consensus, storage and network.
//!
//! The core reads no clock here. Code marks the sections it runs with a
//! [`Section`] guard; an embedder that wants the split installs one
//! [`CpuMeter`] per process ([`install`]), which is told when a section of
//! the current thread begins and ends and measures what it likes (the
//! reference node reads the thread's CPU clock and charges the innermost
//! open section). Without a meter a section costs one atomic load.
//!
//! Sections nest: consensus handling that verifies a certificate and
//! executes a block opens verification and execution sections inside its
//! own; a meter that charges the innermost section splits them apart.
//! Sections are marked in qbind-core (signature verification, block
//! execution, the engine's message handling), qbind-store (reads and
//! writes) and qbind-net (record sealing and opening); they never span an
//! `.await` ([`Section`] is not `Send`).

use std::marker::PhantomData;
use std::sync::OnceLock;

/// What CPU time is spent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activity {
    /// ML-DSA-44 signature verification (transactions, votes, certificates,
    /// handshakes).
    Verification,
    /// Executing committed blocks (decoding, nonces, balances, fees).
    Execution,
    /// Consensus message handling: decoding, the state machine, the pool.
    Consensus,
    /// Reads and writes of the state store.
    Storage,
    /// Sealing and opening KEMTLS records.
    Network,
}

impl Activity {
    /// Every activity, in a fixed order ([`Activity::index`]).
    pub const ALL: [Activity; 5] = [
        Activity::Verification,
        Activity::Execution,
        Activity::Consensus,
        Activity::Storage,
        Activity::Network,
    ];

    /// Its position in [`Activity::ALL`].
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label value metrics and reports use.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Activity::Verification => "verification",
            Activity::Execution => "execution",
            Activity::Consensus => "consensus",
            Activity::Storage => "storage",
            Activity::Network => "network",
        }
    }
}

/// Told when a section of the calling thread begins and ends. Both calls
/// come from the thread that runs the section, in nesting order.
pub trait CpuMeter: Send + Sync {
    /// A section of `activity` begins on this thread.
    fn enter(&self, activity: Activity);
    /// The innermost open section of this thread, of `activity`, ends.
    fn exit(&self, activity: Activity);
}

static METER: OnceLock<&'static dyn CpuMeter> = OnceLock::new();

/// Install the process's meter. Returns false (and keeps the first) if one
/// is installed already.
pub fn install(meter: &'static dyn CpuMeter) -> bool {
    METER.set(meter).is_ok()
}

/// An open section of one activity on the current thread: the meter is
/// told when it is made and when it is dropped. Not `Send`: a section
/// begins and ends on one thread (and never spans an `.await` of a task
/// that may move).
#[must_use = "a section ends when the guard is dropped"]
pub struct Section {
    open: Option<(&'static dyn CpuMeter, Activity)>,
    _thread: PhantomData<*const ()>,
}

impl Section {
    /// Begin a section of `activity`.
    pub fn enter(activity: Activity) -> Section {
        let open = METER.get().map(|m| {
            m.enter(activity);
            (*m, activity)
        });
        Section {
            open,
            _thread: PhantomData,
        }
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        if let Some((meter, activity)) = self.open {
            meter.exit(activity);
        }
    }
}

/// Run `f` in a section of `activity`.
pub fn measure<T>(activity: Activity, f: impl FnOnce() -> T) -> T {
    let _section = Section::enter(activity);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records the calls of one thread (the process-wide meter is shared
    /// by every test of this crate: only this test installs one, and the
    /// other tests' sections are not kept).
    struct Recorder {
        thread: std::thread::ThreadId,
        calls: Mutex<Vec<(bool, Activity)>>,
    }

    impl Recorder {
        fn record(&self, enter: bool, a: Activity) {
            if std::thread::current().id() == self.thread {
                self.calls.lock().expect("lock").push((enter, a));
            }
        }
    }

    impl CpuMeter for Recorder {
        fn enter(&self, a: Activity) {
            self.record(true, a);
        }
        fn exit(&self, a: Activity) {
            self.record(false, a);
        }
    }

    #[test]
    fn sections_nest_and_reach_the_installed_meter() {
        static RECORDER: OnceLock<Recorder> = OnceLock::new();
        let recorder = RECORDER.get_or_init(|| Recorder {
            thread: std::thread::current().id(),
            calls: Mutex::new(Vec::new()),
        });
        assert!(install(recorder));
        assert!(!install(recorder), "one meter per process");
        measure(Activity::Consensus, || {
            let _inner = Section::enter(Activity::Verification);
        });
        let key = crate::crypto::KeyPair::from_seed(&[1; 32]);
        let signature = key.sign(b"m");
        assert!(crate::crypto::verify(key.public_key(), b"m", &signature).is_ok());
        let calls = recorder.calls.lock().expect("lock").clone();
        use Activity::*;
        assert_eq!(
            calls,
            vec![
                (true, Consensus),
                (true, Verification),
                (false, Verification),
                (false, Consensus),
                (true, Verification),
                (false, Verification),
            ]
        );
        let names: Vec<&str> = Activity::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(
            names,
            [
                "verification",
                "execution",
                "consensus",
                "storage",
                "network"
            ]
        );
        assert!(
            Activity::ALL
                .iter()
                .enumerate()
                .all(|(i, a)| a.index() == i)
        );
    }
}
