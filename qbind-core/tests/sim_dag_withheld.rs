//! DAG mode with one validator's batch data late or withheld from another,
//! while every validator executes and so votes only for proposals whose
//! reported state root it has checked (consensus §C3.7): a validator lagging
//! on batch data lags on its execution, and so on its votes. These runs
//! measure what that costs against the same seeds without the fault — blocks
//! committed per simulated second, votes that waited for execution, views
//! timed out, the longest time without a commit — and require that every
//! honest validator keeps committing and executing with equal state roots.
//!
//! The fault is [`Scenario::late_batches`]: a link on which batch data (a
//! validator's own batches and its answers to batch fetches), and optionally
//! batch certificates, arrive late or never, for the first [`FAULT_MS`] ms.
//! Every validator stays honest.
//!
//! The numbers are printed (`--nocapture`); the `_slow` test prints them for
//! every fault over 20 seeds (`QBIND_WITHHELD_SEEDS=N`: the first N). Replay one run with
//! `QBIND_SIM_SEED=N cargo test -p qbind-core --test sim_dag_withheld NAME`.

use qbind_core::sim::{LateBatches, Report, Scenario, Transfers, seeds};

/// How long the fault lasts (ms from the start); throughput is measured over
/// this window.
const FAULT_MS: u64 = 2_000;

/// Blocks every honest validator must commit and execute; a run ends once
/// they have, the fault has healed, and every node executed what it
/// committed.
const BLOCKS: u64 = 40;

/// Simulated time a run may take to get there.
const MAX_TIME: u64 = 60_000;

/// The longest an honest validator may go without a commit during the fault
/// (ms). Without the fault a block commits every ~20 ms; the worst run
/// measured (`ring_withheld_lossy`, 20 seeds) went 1.0 s, through failed
/// views in a row (200, then 400 ms timeouts), and 1.2 s with waiting votes
/// never released.
const MAX_GAP_MS: u64 = 1_600;

/// `withheld` and `ring_withheld_no_cert` commit at least this share of the
/// blocks the same seed commits without the fault. A validator missing data
/// asks two signers at once and prefetches the batches of certificates it
/// first sees in a proposal (docs/dag.md "Fetching batch data"), so its
/// execution keeps up and no vote waits: measured 0.95–1.04 (20 seeds).
/// Asking one signer at a time and fetching at commit, it was 0.83–0.94
/// with ~80–100 votes waiting per run (0.62–0.76 for the ring when a vote
/// that waited was never sent).
const SINGLE_FAULT_MIN_SHARE: f64 = 0.93;

/// Votes that waited for execution in a run of `withheld` or
/// `ring_withheld_no_cert`, at most (measured 0; ~80–100 before the fetch
/// changes above).
const SINGLE_FAULT_MAX_WAITS: u64 = 5;

/// `ring_withheld_lossy` (the ring and 10 % loss) commits at least this
/// share of the blocks the same seed commits without any fault: measured
/// 0.40–0.57 (20 seeds); 0.15–0.30 before the fetch changes.
const RING_LOSSY_MIN_SHARE: f64 = 0.35;

/// Signed transfers every 4 ms in DAG mode, every validator executing (one
/// tick per timer instant, the simulator's default: with one tick per timer
/// request, a run with loss takes millions of events).
fn executing_dag(seed: u64) -> Scenario {
    Scenario::new(4)
        .seed(seed)
        .transactions_every(4)
        .transfers(Transfers::default())
        .dag()
        .min_commits(BLOCKS)
        .max_time(MAX_TIME)
}

/// Batch traffic from `from` to `to` late by `delay` ms, or lost, for the
/// first [`FAULT_MS`]; with `certificates`, batch certificates too.
fn link(from: usize, to: usize, delay: Option<u64>, certificates: bool) -> LateBatches {
    LateBatches {
        from,
        to,
        delay,
        certificates,
        until: FAULT_MS,
    }
}

/// Every validator's batch traffic misses the next one.
fn ring(s: Scenario) -> Scenario {
    (0..4).fold(s, |s, i| s.late_batches(link(i, (i + 1) % 4, None, true)))
}

/// A fault applied to [`executing_dag`].
type Fault = fn(Scenario) -> Scenario;

/// The baseline: a link late by 0 ms, so that the run, like the others, goes
/// on until the fault window ends.
const NONE: (&str, Fault) = ("none", |s| s.late_batches(link(0, 3, Some(0), false)));

/// Validator 0's batches reach only a quorum (0, 1, 2). Validator 3 gets
/// each certificate and prefetches the data from two of its signers at
/// once; when one is validator 0, which never answers, the other does
/// (asking one signer at a time, it waited a 200 ms fetch retry whenever
/// validator 0 came first).
const WITHHELD: (&str, Fault) = ("withheld", |s| s.late_batches(link(0, 3, None, false)));

/// Each validator misses the next one's batches and certificates (0 → 1,
/// 1 → 2, 2 → 3, 3 → 0) and learns those certificates only from proposals,
/// whose batches it prefetches from two signers at once; a block with
/// batches of several authors would otherwise leave several validators
/// fetching at commit, and a QC needs at least one of them.
const RING: (&str, Fault) = ("ring_withheld_no_cert", ring);

/// [`RING`] with 10% of all messages lost as well.
const RING_LOSSY: (&str, Fault) = ("ring_withheld_lossy", |s| ring(s).loss(0.1, FAULT_MS));

/// Every fault measured by the `_slow` test, in the order printed.
const FAULTS: [(&str, Fault); 7] = [
    NONE,
    // Validator 0's batch data reaches 3 300 ms late (more than a fetch
    // retry and than many views): 3 gets it from validator 1 after a retry.
    ("late_300ms", |s| {
        s.late_batches(link(0, 3, Some(300), false))
    }),
    WITHHELD,
    // As `withheld`, and 3 learns 0's certificates only from proposals: no
    // prefetch, the data is fetched when a committed block needs it.
    ("withheld_no_cert", |s| {
        s.late_batches(link(0, 3, None, true))
    }),
    RING,
    // 10% message loss alone: the baseline of `ring_withheld_lossy`.
    ("lossy", |s| NONE.1(s).loss(0.1, FAULT_MS)),
    RING_LOSSY,
];

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
struct Measured {
    /// Height the slowest honest validator committed during the fault.
    height: u64,
    /// The longest time an honest validator committed nothing during the
    /// fault (ms).
    gap: u64,
    /// `votes_waited_for_execution`, summed over honest validators.
    waits: u64,
    /// `views_timed_out`, the most any honest validator counted.
    timeouts: u64,
    /// Fewest votes an honest validator sent, per cent of the most one sent.
    fewest_votes_pct: u64,
    /// Batches obtained by fetch, summed over honest validators.
    fetched: u64,
    /// Mean proposal-to-commit latency over honest commits (ms).
    latency: u64,
}

impl Measured {
    fn blocks_per_s(&self) -> f64 {
        self.height as f64 * 1_000.0 / FAULT_MS as f64
    }
}

fn honest<'a, T>(r: &'a Report, per_node: &'a [Option<T>]) -> impl Iterator<Item = &'a T> {
    per_node
        .iter()
        .zip(&r.honest)
        .filter(|(_, h)| **h)
        .filter_map(|(m, _)| m.as_ref())
}

/// Check a run — no violation (agreement, equal state roots per height, no
/// honest double vote, every committed block's data available), every
/// honest validator committed and executed [`BLOCKS`] with node 0's roots and
/// went at most [`MAX_GAP_MS`] without a commit during the fault — and
/// measure it.
fn measure(name: &str, r: &Report) -> Measured {
    assert!(r.violations.is_empty(), "{name}: {}", r.summary());
    assert!(
        r.min_honest_height() >= BLOCKS && r.end_time < MAX_TIME,
        "{name}: not live: {}",
        r.summary()
    );
    let reference = &r.executions[0];
    let mut height = u64::MAX;
    let mut gap = 0;
    for (i, (commits, executions)) in r.commits.iter().zip(&r.executions).enumerate() {
        if !r.honest[i] {
            continue;
        }
        assert!(
            executions.last().is_some_and(|e| e.height.0 >= BLOCKS),
            "seed {} ({name}): node {i} executed up to {:?}",
            r.seed,
            executions.last().map(|e| e.height)
        );
        for e in executions {
            if let Some(x) = reference.iter().find(|x| x.height == e.height) {
                assert_eq!(
                    x.state_root, e.state_root,
                    "seed {} ({name}): node {i} root at {:?}",
                    r.seed, e.height
                );
            }
        }
        let mut last = 0;
        for c in commits.iter().take_while(|c| c.at < FAULT_MS) {
            gap = gap.max(c.at - last);
            last = c.at;
        }
        gap = gap.max(FAULT_MS - last);
        let during = commits.iter().take_while(|c| c.at < FAULT_MS).last();
        height = height.min(during.map_or(0, |c| c.height.0));
    }
    assert!(
        gap <= MAX_GAP_MS,
        "seed {} ({name}): an honest validator went {gap} ms without a commit",
        r.seed
    );
    let (held, minted) = r.supply_check.expect("transfer runs report supply");
    assert_eq!(held, minted, "seed {} ({name}): supply", r.seed);
    let votes: Vec<u64> = honest(r, &r.metrics).map(|m| m.votes_sent).collect();
    let most = votes.iter().copied().max().unwrap_or(0).max(1);
    Measured {
        height,
        gap,
        waits: honest(r, &r.metrics)
            .map(|m| m.votes_waited_for_execution)
            .sum(),
        timeouts: honest(r, &r.metrics)
            .map(|m| m.views_timed_out)
            .max()
            .unwrap_or(0),
        fewest_votes_pct: votes.iter().copied().min().unwrap_or(0) * 100 / most,
        fetched: honest(r, &r.dag_metrics)
            .map(|m| m.batches_fetched_total)
            .sum(),
        latency: r.mean_latency(),
    }
}

/// Every run's measure, by fault name.
type Measures = Vec<(&'static str, Vec<Measured>)>;

/// The runs of fault `name`.
fn runs<'a>(all: &'a Measures, name: &str) -> &'a [Measured] {
    all.iter()
        .find(|(n, _)| *n == name)
        .map_or(&[], |(_, runs)| runs.as_slice())
}

/// Run each fault over the same seeds, check and measure every run, print
/// each run and a table of the faults.
fn measure_all(faults: &[(&'static str, Fault)], base: u64, count: u64) -> Measures {
    let seeds = seeds(base, count);
    let mut all = Vec::new();
    for (name, fault) in faults {
        let mut runs = Vec::new();
        for &seed in &seeds {
            let m = measure(name, &fault(executing_dag(seed)).run());
            eprintln!(
                "{name:<22} seed {seed}: height {:>3} ({:>4.1} blocks/s), {:>3} waits, \
                 {:>2} views timed out, fewest votes {:>3}%, {:>3} fetched, latency {:>3} ms, \
                 longest gap {:>4} ms",
                m.height,
                m.blocks_per_s(),
                m.waits,
                m.timeouts,
                m.fewest_votes_pct,
                m.fetched,
                m.latency,
                m.gap
            );
            runs.push(m);
        }
        all.push((*name, runs));
    }
    eprintln!(
        "{} seeds from {base}; means per run, except the longest gap (worst run)\n\
         fault                  | blocks/s | vs none | waits | views timed out | fewest votes | \
         fetched | latency ms | longest gap ms",
        seeds.len()
    );
    let mean = |runs: &[Measured], f: &dyn Fn(&Measured) -> f64| {
        runs.iter().map(f).sum::<f64>() / runs.len().max(1) as f64
    };
    let none = mean(runs(&all, NONE.0), &|m| m.blocks_per_s());
    for (name, runs) in &all {
        let rate = mean(runs, &|m| m.blocks_per_s());
        eprintln!(
            "{name:<22} | {rate:>8.1} | {:>6.2}x | {:>5.1} | {:>15.1} | {:>11.0}% | {:>7.1} | \
             {:>10.0} | {:>4}",
            rate / none,
            mean(runs, &|m| m.waits as f64),
            mean(runs, &|m| m.timeouts as f64),
            mean(runs, &|m| m.fewest_votes_pct as f64),
            mean(runs, &|m| m.fetched as f64),
            mean(runs, &|m| m.latency as f64),
            runs.iter().map(|m| m.gap).max().unwrap_or(0)
        );
    }
    all
}

/// Each run of `faulty` commits at least `share` of what the same seed
/// commits without the fault.
fn assert_share(name: &str, none: &[Measured], faulty: &[Measured], share: f64) {
    assert_eq!(none.len(), faulty.len());
    for (n, r) in none.iter().zip(faulty) {
        assert!(
            r.height as f64 >= share * n.height as f64,
            "{name} committed {} blocks, {} without the fault (at least {share} of it)",
            r.height,
            n.height
        );
    }
}

/// The default-suite slice: no fault, one link withheld, the ring without
/// and with loss, two seeds each.
#[test]
fn dag_withheld_batch_data_stays_live() {
    let all = measure_all(&[NONE, WITHHELD, RING, RING_LOSSY], 91_000, 2);
    let none = runs(&all, NONE.0);
    // The fault bites: the validators missing data fetch it, and fast
    // enough that their votes do not wait for execution (§C3.7).
    for fault in [WITHHELD.0, RING.0] {
        for m in runs(&all, fault) {
            assert!(m.fetched > 0, "{fault}: {m:?}");
            assert!(m.waits <= SINGLE_FAULT_MAX_WAITS, "{fault}: {m:?}");
        }
        assert_share(fault, none, runs(&all, fault), SINGLE_FAULT_MIN_SHARE);
    }
    // With loss on top votes still wait (0 would mean the rule is off), and
    // are sent once execution catches up.
    for m in runs(&all, RING_LOSSY.0) {
        assert!(m.waits > 0, "{m:?}");
    }
    assert_share(
        RING_LOSSY.0,
        none,
        runs(&all, RING_LOSSY.0),
        RING_LOSSY_MIN_SHARE,
    );
}

#[test]
#[ignore = "slow: every late-batch fault over 20 seeds (run with --ignored)"]
fn dag_withheld_batch_data_measured_slow() {
    // `QBIND_WITHHELD_SEEDS=N` measures the first N seeds only.
    let count = std::env::var("QBIND_WITHHELD_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let all = measure_all(&FAULTS, 92_000, count);
    for (name, runs) in all.iter().filter(|(name, _)| *name != NONE.0) {
        assert!(runs.iter().all(|m| m.fetched > 0), "{name}: {runs:?}");
    }
    let none = runs(&all, NONE.0);
    for fault in [WITHHELD.0, RING.0] {
        assert_share(fault, none, runs(&all, fault), SINGLE_FAULT_MIN_SHARE);
    }
    assert_share(
        RING_LOSSY.0,
        none,
        runs(&all, RING_LOSSY.0),
        RING_LOSSY_MIN_SHARE,
    );
}
