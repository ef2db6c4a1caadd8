//! The process's CPU split (issue #21): seconds of CPU spent on signature
//! verification, execution, consensus, storage and network, exported as
//! `qbind_cpu_seconds_total{activity}`.
//!
//! [`ThreadCpuMeter`] is the [`qbind_core::cpu::CpuMeter`] the node
//! installs ([`install`]): on every section boundary it reads the calling
//! thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`) and charges the time since
//! the previous boundary of that thread to the innermost open section, so
//! nested sections (a certificate verified while consensus handles a
//! message) split cleanly. Time outside every section (HTTP, JSON, logging,
//! the runtime, the store's background threads) is the process total minus
//! the split; `qbind-localnet` reports it as `other`. The workers of the
//! global rayon pool run Stage B execution: [`install`] starts them with
//! an execution section open for their whole life, so their CPU counts as
//! execution except for the verification they do.
//!
//! Limits. The thread CPU clock is read by a system call (below a
//! microsecond here) at every boundary, and that time lands in the section
//! around it: negligible against a verification (~70 µs) or a block's
//! execution, but store reads and small KEMTLS records are sections of a
//! few microseconds, so the storage and network shares include part of
//! the meter's own cost. A thread's time since its last boundary is not
//! charged yet when the split is read; a rayon worker's spinning before it
//! sleeps counts as execution.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use qbind_core::cpu::{Activity, CpuMeter};

use super::families::{Family, Labels};

/// Charges thread CPU time to the innermost open section.
#[derive(Default)]
pub struct ThreadCpuMeter {
    nanos: [AtomicU64; Activity::ALL.len()],
}

/// The sections open on this thread, innermost last, and the thread CPU
/// time of the last boundary.
#[derive(Default)]
struct Open {
    stack: Vec<Activity>,
    mark: u64,
}

thread_local! {
    static OPEN: RefCell<Open> = RefCell::new(Open::default());
}

/// Nanoseconds of CPU the calling thread has used.
fn thread_cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

impl ThreadCpuMeter {
    /// Charge the time since this thread's last boundary to its innermost
    /// section, then apply `change` to the stack.
    fn boundary(&self, change: impl FnOnce(&mut Vec<Activity>)) {
        let now = thread_cpu_nanos();
        OPEN.with(|open| {
            let mut open = open.borrow_mut();
            if let Some(top) = open.stack.last() {
                let spent = now.saturating_sub(open.mark);
                self.nanos[top.index()].fetch_add(spent, Ordering::Relaxed);
            }
            change(&mut open.stack);
            open.mark = now;
        });
    }

    /// Seconds charged to each activity so far, in [`Activity::ALL`] order.
    #[must_use]
    pub fn seconds(&self) -> [(Activity, f64); Activity::ALL.len()] {
        Activity::ALL.map(|a| {
            let nanos = self.nanos[a.index()].load(Ordering::Relaxed);
            (a, nanos as f64 / 1e9)
        })
    }
}

impl CpuMeter for ThreadCpuMeter {
    fn enter(&self, activity: Activity) {
        self.boundary(|stack| stack.push(activity));
    }

    fn exit(&self, activity: Activity) {
        self.boundary(|stack| {
            debug_assert_eq!(stack.last(), Some(&activity), "sections nest");
            stack.pop();
        });
    }
}

static METER: OnceLock<ThreadCpuMeter> = OnceLock::new();

/// The process's meter (installed or not).
pub fn meter() -> &'static ThreadCpuMeter {
    METER.get_or_init(ThreadCpuMeter::default)
}

/// Install the meter for this process and start the global rayon pool with
/// an execution section open on each worker. Call once, before anything
/// uses rayon. Returns false if the meter or the pool was set up already
/// (then the workers' time is not charged to execution but left out).
#[must_use]
pub fn install() -> bool {
    let m = meter();
    let installed = qbind_core::cpu::install(m);
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("qbind-exec-{i}"))
        .start_handler(move |_| m.enter(Activity::Execution))
        .build_global();
    installed && pool.is_ok()
}

/// `qbind_cpu_seconds_total{activity}` of `meter`, with `labels` added.
#[must_use]
pub fn families(meter: &ThreadCpuMeter, labels: &Labels) -> Vec<Family> {
    let mut f = Family::counter(
        "qbind_cpu_seconds_total",
        "CPU seconds this process spent on each activity (the rest is HTTP, logging, runtime).",
    );
    for (a, secs) in meter.seconds() {
        f.push(
            super::families::labels_with(labels, ("activity", a.name())),
            secs,
        );
    }
    vec![f]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burn about `ms` of this thread's CPU.
    fn spin(ms: u64) {
        let start = thread_cpu_nanos();
        let mut x = 0u64;
        while thread_cpu_nanos() - start < ms * 1_000_000 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }

    #[test]
    fn nested_sections_are_charged_to_the_innermost() {
        // A meter of its own (not the process's), on a thread of its own.
        let m: &'static ThreadCpuMeter = Box::leak(Box::default());
        std::thread::spawn(move || {
            spin(5); // outside every section: not charged
            m.enter(Activity::Consensus);
            spin(20);
            m.enter(Activity::Verification);
            spin(30);
            m.exit(Activity::Verification);
            spin(20);
            m.exit(Activity::Consensus);
            spin(5);
        })
        .join()
        .expect("thread");
        let s = m.seconds();
        let consensus = s[Activity::Consensus.index()].1;
        let verification = s[Activity::Verification.index()].1;
        assert!((0.040..0.050).contains(&consensus), "{s:?}");
        assert!((0.030..0.040).contains(&verification), "{s:?}");
        assert_eq!(s[Activity::Storage.index()].1, 0.0);
    }

    #[test]
    fn the_split_is_exported_per_activity() {
        let m = ThreadCpuMeter::default();
        m.nanos[Activity::Network.index()].store(1_500_000_000, Ordering::Relaxed);
        let page = crate::metrics::render(&crate::metrics::families::registry(move || {
            families(&m, &Labels::new())
        }));
        assert!(
            page.contains("qbind_cpu_seconds_total{activity=\"network\"} 1.5\n"),
            "{page}"
        );
        assert!(page.contains("qbind_cpu_seconds_total{activity=\"verification\"} 0"));
    }
}
