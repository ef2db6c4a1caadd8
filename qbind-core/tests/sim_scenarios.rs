//! Seeded simulator scenarios (issue: "Scenarios the test suite must run").
//!
//! Every run is checked for agreement, chain consistency, no honest double
//! vote / timeout / proposal across restarts, and (where stated) liveness:
//! after the last fault heals every honest node commits at least 20 blocks
//! proposed within 50 views. A failure prints the seed; replay one run with
//! `QBIND_SIM_SEED=N cargo test -p qbind-core --test sim_scenarios NAME`.
//!
//! The default run executes well over 500 seeded runs; the `*_slow` tests
//! (ignored by default; `cargo test -- --ignored` or the nextest `slow`
//! profile) run 20,000.

use qbind_core::consensus::SafetyFaults;
use qbind_core::sim::{Behavior, FeePool, Report, Scenario, Transfers, seeds};

/// Liveness requirement after the last fault heals.
const LIVE_COMMITS: u64 = 20;
const LIVE_VIEWS: u64 = 50;

/// A small deterministic generator for scenario shapes (the simulator has its
/// own seeded RNG for everything inside a run).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// How many of a long family's `count` seeds run: all with
/// `QBIND_SIM_FULL=1`, by default the first half (at least 10). With every
/// seed this binary took about 10 of CI's 45 minutes, most of it in the
/// DAG families (docs/simulation.md "Seeds in the default suite").
fn slice(count: u64) -> u64 {
    if std::env::var_os("QBIND_SIM_FULL").is_some_and(|v| v == "1") {
        count
    } else {
        (count / 2).max(10).min(count)
    }
}

/// Run `count` seeds of a scenario and fail on the first violation. Returns
/// the reports for further assertions.
fn run_all(name: &str, base: u64, count: u64, build: impl Fn(u64) -> Scenario) -> Vec<Report> {
    let mut reports = Vec::new();
    for seed in seeds(base, count) {
        let report = build(seed).run();
        assert!(
            report.violations.is_empty(),
            "{name} failed: {}",
            report.summary()
        );
        reports.push(report);
    }
    reports
}

fn base(seed: u64) -> Scenario {
    Scenario::new(4)
        .seed(seed)
        .transactions_every(20)
        .liveness(LIVE_COMMITS, LIVE_VIEWS)
}

fn leader_crash(seed: u64) -> Scenario {
    let mut m = Mix(seed);
    let node = m.below(4) as usize;
    let at = m.range(100, 1500);
    base(seed).crash(node, at, Some(at + m.range(200, 2000)))
}

fn short_partition(seed: u64) -> Scenario {
    let mut m = Mix(seed);
    let start = m.range(100, 800);
    let groups = match m.below(5) {
        0 => vec![vec![0, 1], vec![2, 3]],
        1 => vec![vec![0, 2], vec![1, 3]],
        2 => vec![vec![0, 3], vec![1, 2]],
        // Three-way partitions: no side has a quorum.
        3 => vec![vec![0], vec![1], vec![2, 3]],
        _ => vec![vec![0, 1], vec![2], vec![3]],
    };
    base(seed).partition(start, start + m.range(200, 1500), groups)
}

/// When the minority partition heals (long enough for 100+ majority views).
const MINORITY_HEAL: u64 = 15_000;

fn minority_partition(seed: u64) -> Scenario {
    // One isolated validator (f = 1) for at least 100 views of the majority.
    let mut m = Mix(seed);
    let lone = m.below(4) as usize;
    let rest: Vec<usize> = (0..4).filter(|i| *i != lone).collect();
    base(seed).partition(100, MINORITY_HEAL, vec![rest, vec![lone]])
}

fn forking_leader(seed: u64) -> Scenario {
    let mut m = Mix(seed);
    base(seed).byzantine(m.below(4) as usize, Behavior::ForkingLeader)
}

fn message_loss(seed: u64) -> Scenario {
    base(seed).loss(0.2, 4000).duplication(0.05)
}

fn equivocating_leader(seed: u64) -> Scenario {
    let mut m = Mix(seed);
    base(seed).byzantine(m.below(4) as usize, Behavior::EquivocatingLeader)
}

fn double_voters(seed: u64) -> Scenario {
    let mut m = Mix(seed);
    let a = m.below(7) as usize;
    let b = (a + 1 + m.below(6) as usize) % 7;
    Scenario::new(7)
        .seed(seed)
        .transactions_every(20)
        .liveness(LIVE_COMMITS, LIVE_VIEWS)
        .byzantine(a, Behavior::DoubleVoter)
        .byzantine(b, Behavior::DoubleVoter)
}

/// Twins: validator 3 runs twice (node 3 and node 4, same key), and random
/// partitions put the twins on different sides, then heal.
fn twins(seed: u64) -> Scenario {
    let mut m = Mix(seed);
    let mut s = base(seed).twin(3);
    let mut t = m.range(0, 200);
    for _ in 0..m.range(2, 6) {
        let len = m.range(50, 500);
        let mut groups = vec![Vec::new(), Vec::new(), Vec::new()];
        let parts = m.range(2, 3) as usize;
        for node in 0..5 {
            groups[m.below(parts as u64) as usize].push(node);
        }
        // Keep the twins apart so they act as one equivocating validator.
        if groups.iter().any(|g| g.contains(&3) && g.contains(&4)) {
            for g in &mut groups {
                g.retain(|n| *n != 4);
            }
            let other = groups.iter().position(|g| !g.contains(&3)).unwrap_or(1);
            groups[other].push(4);
        }
        groups.retain(|g| !g.is_empty());
        s = s.partition(t, t + len, groups);
        t += len + m.range(0, 150);
    }
    s
}

fn crash_everyone(seed: u64) -> Scenario {
    let mut m = Mix(seed);
    let mut s = base(seed);
    for node in 0..4 {
        let at = m.range(100, 2500);
        let down = m.range(30, 900);
        s = if m.below(3) == 0 {
            s.crash_after_persist(node, at, at + down)
        } else {
            s.crash(node, at, Some(at + down))
        };
    }
    s
}

fn epoch_length(seed: u64) -> u64 {
    Mix(seed).range(8, 25)
}

fn epoch_change(seed: u64) -> Scenario {
    let len = epoch_length(seed);
    // Epoch 1: a fifth validator joins and stakes change.
    base(seed)
        .epoch_change(len, vec![2, 1, 1, 1, 2])
        .min_commits(len * 2 + 10)
}

#[test]
fn leader_crash_and_recover() {
    run_all("leader_crash_and_recover", 1_000, 40, leader_crash);
}

#[test]
fn short_partition_then_heal() {
    run_all("short_partition_then_heal", 2_000, 40, short_partition);
}

#[test]
fn minority_partition_for_100_views() {
    let reports = run_all("minority_partition", 3_000, 20, minority_partition);
    // The majority kept committing for 100+ views while the minority was cut
    // off; the minority then caught up (checked by liveness).
    for r in &reports {
        let majority = r
            .commits
            .iter()
            .filter(|c| {
                c.iter()
                    .filter(|x| x.at < MINORITY_HEAL)
                    .map(|x| x.view.0)
                    .max()
                    .unwrap_or(0)
                    >= 100
            })
            .count();
        assert!(
            majority >= 3,
            "seed {}: majority stalled: {}",
            r.seed,
            r.summary()
        );
    }
}

#[test]
fn twenty_percent_message_loss() {
    let reports = run_all(
        "twenty_percent_message_loss",
        4_000,
        slice(40),
        message_loss,
    );
    for r in &reports {
        // Progress during the lossy period too, not only after it.
        assert!(
            r.commits[0].iter().any(|c| c.at < 4000),
            "seed {}: nothing committed under loss",
            r.seed
        );
    }
}

#[test]
fn one_equivocating_leader() {
    let reports = run_all("one_equivocating_leader", 5_000, 40, equivocating_leader);
    assert!(
        reports.iter().any(|r| r.evidence > 0),
        "no equivocation evidence was ever produced"
    );
}

#[test]
fn forking_leader_is_refused() {
    let reports = run_all("forking_leader", 12_000, 30, forking_leader);
    assert!(
        reports
            .iter()
            .any(|r| r.rejected.get("vote_refused").copied().unwrap_or(0) > 0),
        "the lock never had to refuse a fork"
    );
}

#[test]
fn two_byzantine_double_voters_n7() {
    let reports = run_all("two_double_voters", 6_000, 30, double_voters);
    assert!(reports.iter().any(|r| r.evidence > 0));
}

#[test]
fn twins_over_200_seeds() {
    run_all("twins", 7_000, 200, twins);
}

#[test]
fn crash_every_validator_and_restart() {
    let reports = run_all("crash_every_validator", 8_000, 40, crash_everyone);
    // A restarted validator still checks the state roots proposals report
    // for heights it executed before the restart (it keeps the last 256 in
    // its store): it never has to refuse one as unchecked.
    for r in &reports {
        assert_eq!(
            r.rejected.get("unchecked_state_root"),
            None,
            "seed {}: {}",
            r.seed,
            r.summary()
        );
    }
}

#[test]
fn validator_set_change_at_epoch_boundary() {
    let reports = run_all("validator_set_change", 9_000, 20, epoch_change);
    for r in &reports {
        // The new validator (node 4) follows the chain across the boundary...
        assert!(
            r.commits[4].len() as u64 >= r.min_honest_height(),
            "seed {}: joining validator lags",
            r.seed
        );
        let chain = &r.commits[0];
        // ...every committed block is in the epoch its height says (epoch e
        // ends with the block at height (e + 1) * len)...
        let len = epoch_length(r.seed);
        for c in chain {
            assert_eq!(c.epoch.0, (c.height.0 - 1) / len, "seed {}", r.seed);
        }
        // ...and the new validator proposes committed blocks after epoch 0.
        assert!(
            chain.iter().any(|c| c.epoch.0 >= 1 && c.proposer.0 == 4),
            "seed {}: validator 4 never led a committed block",
            r.seed
        );
    }
}

#[test]
fn silent_and_invalid_signature_validators() {
    run_all("silent", 10_000, 20, |seed| {
        base(seed).byzantine((seed % 4) as usize, Behavior::Silent)
    });
    let reports = run_all("invalid_signatures", 11_000, 20, |seed| {
        base(seed).byzantine((seed % 4) as usize, Behavior::InvalidSignatures)
    });
    for r in &reports {
        assert!(r.rejected.get("bad_signature").copied().unwrap_or(0) > 0);
    }
}

#[test]
fn fault_free_runs_never_time_out_a_view() {
    // Regression: a leader whose QC formed (from votes) before the certified
    // block itself arrived used to skip proposing, timing its view out.
    for seed in seeds(13_000, 12) {
        let r = Scenario::new(4)
            .seed(seed)
            .transactions_every(5)
            .min_commits(150)
            .run();
        assert!(r.violations.is_empty(), "{}", r.summary());
        for m in r.metrics.iter().flatten() {
            assert_eq!(m.views_timed_out, 0, "{}", r.summary());
            assert_eq!(m.timeouts_sent, 0, "{}", r.summary());
        }
    }
}

#[test]
fn same_seed_same_event_log() {
    for build in [twins, message_loss, crash_everyone] {
        let a = build(42).run();
        let b = build(42).run();
        assert_eq!(a.event_log_hash, b.event_log_hash);
        assert_eq!(a.commits, b.commits);
        let c = build(43).run();
        assert_ne!(a.event_log_hash, c.event_log_hash);
    }
}

/// Broken safety rules must be caught by the independent checkers within 500
/// seeds of the adversarial scenarios.
fn caught_within(faults: SafetyFaults, limit: u64) -> Option<u64> {
    (0..limit).find(|&seed| {
        let s = match seed % 3 {
            0 => forking_leader(seed),
            1 => twins(seed),
            _ => double_voters(seed),
        };
        !s.with_safety_faults(faults).run().violations.is_empty()
    })
}

#[test]
fn broken_lock_check_is_caught() {
    let faults = SafetyFaults {
        skip_lock_check: true,
        ..SafetyFaults::default()
    };
    let seed = caught_within(faults, 500);
    assert!(seed.is_some());
    eprintln!("skip_lock_check caught at seed {seed:?}");
}

#[test]
fn broken_double_vote_rule_is_caught() {
    let faults = SafetyFaults {
        skip_last_voted_check: true,
        ..SafetyFaults::default()
    };
    assert!(caught_within(faults, 500).is_some());
}

#[test]
fn broken_commit_rule_is_caught() {
    let faults = SafetyFaults {
        commit_on_two_chain: true,
        ..SafetyFaults::default()
    };
    assert!(caught_within(faults, 500).is_some());
}

// ------------------------------------------------------------- DAG mode
//
// The MainNet payload path: the same fault families with payloads from the
// DAG availability layer, plus DAG-specific adversaries. Every run also
// checks (independently of the core): every committed batch carries a valid
// quorum certificate, every honest node gets the data of every block it
// committed, no transaction is delivered twice, and honest nodes deliver the
// same transactions at each height.

fn dag(s: Scenario) -> Scenario {
    s.dag()
}

fn dag_sum(r: &Report, f: impl Fn(&qbind_core::dag::DagMetrics) -> u64) -> u64 {
    r.dag_metrics.iter().flatten().map(f).sum()
}

fn dag_family(name: &str, base_seed: u64, count: u64, build: Builder) {
    let reports = run_all(name, base_seed, slice(count), |s| dag(build(s)));
    assert!(
        reports
            .iter()
            .any(|r| r.executed_txs.iter().any(|n| *n > 0)),
        "{name}: no transaction ever executed"
    );
}

#[test]
fn dag_leader_crash_and_partitions() {
    dag_family("dag_leader_crash", 20_000, 40, leader_crash);
    dag_family("dag_short_partition", 21_000, 40, short_partition);
}

#[test]
fn dag_message_loss() {
    dag_family("dag_message_loss", 22_000, 40, message_loss);
}

#[test]
fn dag_equivocating_and_forking_leaders() {
    dag_family("dag_equivocating_leader", 23_000, 40, equivocating_leader);
    dag_family("dag_forking_leader", 24_000, 30, forking_leader);
}

#[test]
fn dag_crash_everyone_and_epoch_change() {
    dag_family("dag_crash_everyone", 25_000, 40, crash_everyone);
    dag_family("dag_epoch_change", 26_000, 20, epoch_change);
}

#[test]
fn dag_twins() {
    run_all("dag_twins", 30_000, slice(100), |s| dag(twins(s)));
}

#[test]
fn dag_withholding_author_is_fetched_on_miss() {
    let reports = run_all("dag_withholding_author", 31_000, slice(60), |s| {
        dag(base(s)).byzantine((s % 4) as usize, Behavior::WithholdingAuthor)
    });
    assert!(
        reports
            .iter()
            .map(|r| dag_sum(r, |m| m.batches_fetched_total))
            .sum::<u64>()
            > 0,
        "no batch was ever fetched on miss"
    );
}

#[test]
fn dag_forged_certificates_are_never_committed() {
    let reports = run_all("dag_forged_certificates", 32_000, slice(60), |s| {
        dag(base(s)).byzantine((s % 4) as usize, Behavior::ForgedCertificates)
    });
    let refused: u64 = reports
        .iter()
        .map(|r| {
            dag_sum(r, |m| {
                m.coupling_validation
                    .get("uncertified")
                    .copied()
                    .unwrap_or(0)
            })
        })
        .sum();
    assert!(refused > 0, "no forged certificate was ever refused");
}

#[test]
fn dag_equivocating_author_is_detected() {
    let reports = run_all("dag_equivocating_author", 33_000, 40, |s| {
        dag(base(s)).byzantine((s % 4) as usize, Behavior::EquivocatingAuthor)
    });
    assert!(
        reports
            .iter()
            .any(|r| dag_sum(r, |m| m.batch_equivocation_detected) > 0)
    );
}

fn flood(seed: u64, max_evictions: u32, dag_mode: bool) -> Scenario {
    let s = Scenario::new(4)
        .seed(seed)
        .transactions_every(20)
        .mempool_flood(FeePool {
            capacity: 50,
            max_evictions,
            interval_ms: 1_000,
            flood_every_ms: 1,
            flood_burst: 20,
        })
        .min_commits(60);
    if dag_mode { s.dag() } else { s }
}

fn assert_eviction_limit(r: &Report, max_evictions: u32) {
    let windows = r.end_time / 1_000 + 1;
    for m in r.mempool_metrics.iter().flatten() {
        let evictions = m.evictions_total.get("capacity").copied().unwrap_or(0);
        assert!(
            evictions <= u64::from(max_evictions) * windows,
            "seed {}: {evictions} evictions in {windows} windows",
            r.seed
        );
        assert!(
            m.rejected_total.get("pool_full").copied().unwrap_or(0) > 0,
            "flood did not fill the pool"
        );
    }
}

#[test]
fn mempool_flood_high_fees_still_commit() {
    for dag_mode in [false, true] {
        for r in run_all("mempool_flood", 34_000, 10, |s| flood(s, 100, dag_mode)) {
            assert_eviction_limit(&r, 100);
            // Everything but the last few submissions before the run ended.
            let executed = r.high_fee_executed.iter().min().copied().unwrap_or(0);
            assert!(
                executed * 10 >= r.high_fee_submitted * 8,
                "seed {}: only {executed} of {} high-fee transactions executed",
                r.seed,
                r.high_fee_submitted
            );
        }
    }
}

#[test]
fn mempool_flood_eviction_limit_is_enforced() {
    for dag_mode in [false, true] {
        let reports = run_all("mempool_flood_tight", 35_000, 10, |s| flood(s, 3, dag_mode));
        for r in &reports {
            assert_eviction_limit(r, 3);
        }
        let limited: u64 = reports
            .iter()
            .flat_map(|r| r.mempool_metrics.iter().flatten())
            .map(|m| {
                m.eviction_rate_limit_total
                    .get("enforce")
                    .copied()
                    .unwrap_or(0)
            })
            .sum();
        assert!(
            limited > 0,
            "the eviction limit never had to refuse anything"
        );
    }
}

#[test]
fn dag_same_seed_same_event_log() {
    let a = dag(twins(5)).run();
    let b = dag(twins(5)).run();
    assert_eq!(a.event_log_hash, b.event_log_hash);
    assert_eq!(a.executed_txs, b.executed_txs);
}

// ------------------------------------------------------------- slow suite

const SLOW_PER_SCENARIO: u64 = 2_000;

/// A scenario family: seed in, scenario out.
type Builder = fn(u64) -> Scenario;

#[test]
#[ignore = "slow: 20,000 seeded runs; cargo test -- --ignored"]
fn scenarios_slow() {
    let all: [(&str, Builder); 11] = [
        ("forking_leader", forking_leader),
        ("leader_crash", leader_crash),
        ("short_partition", short_partition),
        ("minority_partition", minority_partition),
        ("message_loss", message_loss),
        ("equivocating_leader", equivocating_leader),
        ("double_voters", double_voters),
        ("twins", twins),
        ("crash_everyone", crash_everyone),
        ("epoch_change", epoch_change),
        ("silent", |s| {
            base(s).byzantine((s % 4) as usize, Behavior::Silent)
        }),
    ];
    for (i, (name, build)) in all.into_iter().enumerate() {
        run_all(name, 1_000_000 * (i as u64 + 1), SLOW_PER_SCENARIO, build);
    }
}

#[test]
#[ignore = "slow: 20,000 seeded DAG-mode runs; cargo test -- --ignored"]
fn dag_scenarios_slow() {
    let all: [(&str, Builder); 10] = [
        ("leader_crash", leader_crash),
        ("short_partition", short_partition),
        ("message_loss", message_loss),
        ("equivocating_leader", equivocating_leader),
        ("forking_leader", forking_leader),
        ("twins", twins),
        ("crash_everyone", crash_everyone),
        ("withholding", |s| {
            base(s).byzantine((s % 4) as usize, Behavior::WithholdingAuthor)
        }),
        ("forged", |s| {
            base(s).byzantine((s % 4) as usize, Behavior::ForgedCertificates)
        }),
        ("equivocating_author", |s| {
            base(s).byzantine((s % 4) as usize, Behavior::EquivocatingAuthor)
        }),
    ];
    for (i, (name, build)) in all.into_iter().enumerate() {
        run_all(name, 50_000_000 * (i as u64 + 1), SLOW_PER_SCENARIO, |s| {
            dag(build(s))
        });
    }
}

// ---------------------------------------------------------------- signed transfers

/// Checks of a transfer run beyond "no violation" (the checker already
/// compares state roots per height): every honest node executed the same
/// heights with the same roots as node 0 up to the shorter of the two,
/// transfers really happened, and the supply is conserved.
fn assert_transfers(r: &Report, min_transfers: u64) {
    let reference = &r.executions[0];
    let ok: u64 = reference.iter().map(|e| e.succeeded).sum();
    assert!(
        ok >= min_transfers,
        "seed {}: only {ok} transfers executed",
        r.seed
    );
    for (i, node) in r.executions.iter().enumerate() {
        if !r.honest[i] {
            continue;
        }
        for e in node {
            if let Some(x) = reference.iter().find(|x| x.height == e.height) {
                assert_eq!(
                    x.state_root, e.state_root,
                    "seed {}: node {i} root at {:?}",
                    r.seed, e.height
                );
            }
        }
    }
    let (held, minted) = r.supply_check.expect("transfer runs report supply");
    assert_eq!(held, minted, "seed {}: supply not conserved", r.seed);
}

fn transfers(seed: u64) -> Scenario {
    Scenario::new(4)
        .seed(seed)
        .transactions_every(4)
        .transfers(Transfers::default())
        .min_commits(40)
}

#[test]
fn signed_transfers_execute_with_equal_state_roots() {
    for r in run_all("transfers", 41_000, 6, transfers) {
        assert_transfers(&r, 50);
    }
}

#[test]
fn signed_transfers_under_dag_loss_and_crashes() {
    let dag = run_all("transfers_dag", 42_000, 3, |s| transfers(s).dag());
    for r in &dag {
        assert_transfers(r, 30);
    }
    let lossy = run_all("transfers_loss", 43_000, 3, |s| {
        transfers(s).loss(0.1, 2_000).max_time(60_000)
    });
    for r in &lossy {
        assert_transfers(r, 30);
    }
    let crashes = run_all("transfers_crash", 44_000, 3, |s| {
        transfers(s)
            .crash(1, 300, Some(900))
            .crash_after_persist(2, 1_200, 1_700)
    });
    for r in &crashes {
        assert_transfers(r, 30);
    }
}

/// Idle leaders (`idle_proposal_delay_ms`, as `qbind-node` runs): sparse
/// transfers (one every 400 ms, so most views are idle) in FIFO and DAG
/// mode, with a crash and a restart: every transfer still executes with
/// equal roots, and the idle chain commits far fewer blocks than without
/// the delay.
#[test]
fn signed_transfers_with_idle_leaders_and_crashes() {
    // Six simulated seconds each, whatever the block rate.
    let sparse = |s: u64| {
        transfers(s)
            .transactions_every(400)
            .min_commits(u64::MAX)
            .max_time(6_000)
            .crash(1, 400, Some(1_200))
    };
    for dag in [false, true] {
        let idle = run_all("transfers_idle", 48_000, 3, |s| {
            let sc = sparse(s).idle_proposal_delay(100);
            if dag { sc.dag() } else { sc }
        });
        let eager = run_all("transfers_eager", 48_000, 3, |s| {
            let sc = sparse(s);
            if dag { sc.dag() } else { sc }
        });
        for (i, e) in idle.iter().zip(&eager) {
            assert_transfers(i, 10);
            let ok = |r: &Report| r.executions[0].iter().map(|x| x.succeeded).sum::<u64>();
            // The last few may still be on their way at the 6 s cut-off
            // (an idle leader adds up to its delay to a transfer's latency).
            assert!(
                ok(i) + 3 >= ok(e),
                "seed {} (dag {dag}): {} transfers executed with idle leaders, {} without",
                i.seed,
                ok(i),
                ok(e)
            );
            let blocks = |r: &Report| r.executions[0].len();
            assert!(
                blocks(i) * 2 < blocks(e),
                "seed {} (dag {dag}): {} blocks with idle leaders, {} without",
                i.seed,
                blocks(i),
                blocks(e)
            );
        }
    }
}

/// DAG mode with execution and the monetary engine, every validator
/// crashed and restarted (some right after persisting their safety state):
/// a restart goes through the production restore path
/// (`Replica::open` → `schema::load_persisted` → `HotStuff::restore_dag`,
/// the executed height and the monetary records from the store). Breaking
/// any of them makes this fail (docs/simulation.md, "Restart through the
/// production path").
#[test]
fn dag_transfers_with_monetary_survive_crashes_of_everyone() {
    let reports = run_all("dag_transfers_crash_everyone", 47_000, 6, |s| {
        transfers(s)
            .dag()
            .crash(0, 250, Some(700))
            .crash_after_persist(1, 450, 900)
            .crash(2, 650, Some(1_100))
            .crash_after_persist(3, 800, 1_300)
            .min_commits(48)
            .max_time(15_000)
    });
    for r in &reports {
        assert_transfers(r, 30);
        for (i, closed) in r.epochs_closed.iter().enumerate() {
            assert!(
                *closed >= 2,
                "seed {}: node {i} closed only {closed} monetary epochs",
                r.seed
            );
        }
    }
}

#[test]
fn signed_transfers_with_an_equivocating_leader() {
    for r in run_all("transfers_byzantine", 45_000, 3, |s| {
        transfers(s).byzantine(3, Behavior::EquivocatingLeader)
    }) {
        assert_transfers(&r, 30);
    }
}

#[test]
fn transfers_cannot_be_combined_with_the_flood_pool() {
    let r = transfers(1)
        .mempool_flood(FeePool {
            capacity: 10,
            max_evictions: 1,
            interval_ms: 1_000,
            flood_every_ms: 1,
            flood_burst: 1,
        })
        .run();
    assert!(matches!(
        r.violations.as_slice(),
        [qbind_core::sim::Violation::InvalidScenario { .. }]
    ));
}

/// No violation, and validator `node` committed up to `height` at least.
fn assert_caught_up(report: &Report, node: usize, height: u64) {
    assert!(
        report.violations.is_empty(),
        "seed {}: {}",
        report.seed,
        report.summary()
    );
    let top = |n: usize| report.commits[n].last().map_or(0, |c| c.height.0);
    assert!(
        top(node) >= height,
        "seed {}: validator {node} stopped at {} (others at {})",
        report.seed,
        top(node),
        top(0)
    );
}

/// No violation, and validator 0 committed a block of epoch `epoch`.
fn assert_clean_through_epoch(report: &Report, epoch: u64) {
    assert!(
        report.violations.is_empty(),
        "seed {}: {}",
        report.seed,
        report.summary()
    );
    let last = report.commits[0].last().expect("commits");
    assert!(
        last.epoch.0 >= epoch,
        "seed {}: only reached epoch {} (height {})",
        report.seed,
        last.epoch.0,
        last.height.0
    );
}

/// Validator 0 rotates its consensus key (effective epoch 2, one grace
/// epoch) while validator 3 is down for the whole run, so no quorum forms
/// without validator 0's votes. Blocks keep committing through epoch 3,
/// where only the new key is accepted: consensus verifies with the key
/// registry. (With the registry detached from the schedule, seed 12000
/// stopped at height 20, the last block of epoch 1: checked by hand when
/// this test was written.)
#[test]
fn consensus_key_rotation_with_a_needed_validator() {
    let len = 10;
    for seed in seeds(12_000, 4) {
        let report = Scenario::new(4)
            .seed(seed)
            .transactions_every(20)
            .epoch_change(len, vec![1, 1, 1, 1])
            .key_rotation(0, 2, 1)
            .crash(3, 0, None)
            .min_commits(len * 4 + 5)
            .run();
        assert_clean_through_epoch(&report, 4);
    }
}

/// An on-chain key rotation (docs/key-rotation.md): validator 0 submits
/// the system transaction of a rotation (effective epoch 3, one grace
/// epoch; nothing is in any registry at the start) at 40 ms and signs with
/// its new key from epoch 3. Validator 3 is down for the whole run, so no
/// quorum forms without validator 0's votes: blocks commit through epoch 4,
/// where only the new key is accepted, only if every replica applied the
/// committed rotation. Validator 1 crashes after the rotation is applied
/// and restarts (in epoch 1, about 2 s before epoch 3), so it must rebuild
/// the registry from its store. Checked by hand when written (seed
/// 12,100): without `HotStuff::set_schedule` after execution, and again
/// without the replay in `Replica::open`, the run stopped at height 30,
/// the last block of epoch 2.
#[test]
fn on_chain_key_rotation_with_a_needed_validator_and_a_restart() {
    let len = 10;
    for seed in seeds(12_100, 3) {
        let report = Scenario::new(4)
            .seed(seed)
            .transactions_every(20)
            .epoch_change(len, vec![1, 1, 1, 1])
            .on_chain_key_rotation(0, 40, 3, 1, false)
            .crash(3, 0, None)
            .crash(1, 2_000, Some(2_300))
            .min_commits(len * 6 + 5)
            .run();
        assert_clean_through_epoch(&report, 5);
        for node in [0, 1, 2] {
            let (applied, refused) = report.key_rotations[node];
            assert!(applied >= 1, "seed {seed}: node {node} applied none");
            assert_eq!(refused, 0, "seed {seed}: node {node}");
        }
        assert_eq!(
            report.rejected.get("bad_signature"),
            None,
            "seed {seed}: {:?}",
            report.rejected
        );
    }
}

/// A validator that was down while an on-chain rotation was applied and
/// took effect catches up across it: validator 2 crashes at 20 ms (before
/// the rotation's block) and restarts at 7 s, when the chain is past the
/// epoch where only validator 0's new key counts. Its range sync gets
/// certificates signed with that key before it has executed the rotation's
/// block: it holds back the ones whose epoch's keys are not final for it
/// yet (`keys_not_final`), executes what it has, and goes on. Checked by
/// hand when written (seed 12,300): without the hold-back (no
/// `note_executed_height`), validator 2 refused those certificates
/// (`invalid_qc`, `bad_signature`) and stayed at height 0; without a held
/// back proposal's height as a catch-up hint, it never started to sync.
#[test]
fn on_chain_key_rotation_caught_up_by_a_restarted_validator() {
    let len = 10;
    for seed in seeds(12_300, 3) {
        let report = Scenario::new(4)
            .seed(seed)
            .transactions_every(20)
            .epoch_change(len, vec![1, 1, 1, 1])
            .on_chain_key_rotation(0, 40, 3, 1, false)
            .crash(2, 20, Some(7_000))
            .min_commits(len * 8)
            .max_time(60_000)
            .run();
        assert_caught_up(&report, 2, len * 7);
        assert_eq!(report.key_rotations[2].0, 1, "seed {seed}");
    }
}

/// A validator needed for every quorum restarts epochs behind, over the
/// DAG with signed transfers: validator 2 is down from 20 ms to 7 s (the
/// chain is in epoch 3 by then) and validator 3 goes down for good at
/// 6.5 s, so the chain stalls until validator 2 has caught up, and its
/// peers send nothing but timeouts and batches it cannot check yet (the
/// keys of an epoch are final only once its epoch minus two is executed).
/// Checked by hand when written (issue #20):
/// - without a timeout's epoch as a catch-up hint, validator 2 stayed at
///   height 0 and the chain at 34 for all 60 s (every seed);
/// - without the rounds of unordered batches freed at a new epoch,
///   validator 2 (seed 12,402) had used its window on batches of an epoch
///   the others had left, and none of its batches was certified again;
/// - the batches it could not check yet are parked and acked once it has
///   caught up (`dag::catch_up`'s tests show they were never acked before).
#[test]
fn a_needed_validator_restarted_epochs_behind_catches_up_over_the_dag() {
    let len = 10;
    for seed in seeds(12_400, 3) {
        let report = transfers(seed)
            .dag()
            .epoch_change(len, vec![1, 1, 1, 1])
            .crash(2, 20, Some(7_000))
            .crash(3, 6_500, None)
            .min_commits(len * 8)
            .max_time(60_000)
            .run();
        assert_caught_up(&report, 2, len * 7);
        assert_transfers(&report, 30);
        for node in [0, 1, 2] {
            let m = report.dag_metrics[node].as_ref().expect("running");
            assert!(
                m.certs_formed_total * 2 >= m.batches_signed_total,
                "seed {seed}: validator {node} certified {} of its {} batches",
                m.certs_formed_total,
                m.batches_signed_total
            );
        }
        let behind = report.dag_metrics[2].as_ref().expect("running");
        assert!(behind.batches_parked_total > 0, "seed {seed}");
    }
}

/// The same on-chain rotation on the production data path: signed
/// transfers through the fee-priority pool (which gives the system
/// transaction its own sender and the top fee) and DAG batches, with the
/// application executing the block's transfers and the replica the
/// rotation. Roots stay equal, transfers execute, and the chain commits
/// past the epoch where only validator 0's new key is accepted while
/// validator 3 is down.
#[test]
fn on_chain_key_rotation_with_transfers_over_the_dag() {
    let len = 10;
    for seed in seeds(12_200, 2) {
        let report = transfers(seed)
            .dag()
            .epoch_change(len, vec![1, 1, 1, 1])
            .on_chain_key_rotation(0, 40, 3, 1, false)
            .crash(3, 0, None)
            .min_commits(len * 5 + 5)
            .max_time(60_000)
            .run();
        assert_clean_through_epoch(&report, 5);
        assert_transfers(&report, 30);
        for node in [0, 1, 2] {
            assert_eq!(report.key_rotations[node], (1, 0), "seed {seed}: {node}");
        }
    }
}

#[test]
fn a_key_rotation_without_epochs_is_an_invalid_scenario() {
    let report = Scenario::new(4).key_rotation(0, 2, 1).run();
    assert!(!report.violations.is_empty());
    assert!(
        report.summary().contains("InvalidScenario"),
        "{}",
        report.summary()
    );
}

/// A set of one validator forms the QC of its own proposal and leads the
/// next view too. It must still return to its driver between proposals
/// (one proposal per tick) instead of chaining them without end; before
/// that rule such a run never finished (and `qbind-node --local-validators
/// 1` never committed).
#[test]
fn a_single_validator_commits_one_block_per_tick() {
    for seed in seeds(13_000, 3) {
        let report = Scenario::new(1)
            .seed(seed)
            .transactions_every(20)
            .min_commits(50)
            .run();
        assert!(report.violations.is_empty(), "{}", report.summary());
        let commits = &report.commits[0];
        assert!(commits.len() >= 50, "{}", report.summary());
        // One proposal per simulated millisecond at most.
        for pair in commits.windows(2) {
            assert!(pair[1].at >= pair[0].at, "commit times go backwards");
        }
        let span = commits.last().map_or(0, |c| c.at) - commits[0].at;
        assert!(
            span + 1 >= commits.len() as u64 - 1,
            "{} commits in {span} ms",
            commits.len()
        );
    }
}

/// Proposals carry the proposer's latest executed state root. Validator 2's
/// state diverged (every root it computes differs): it notices from the
/// honest proposals and stops voting, the honest validators never vote for
/// its proposals, and the chain goes on with the three honest validators.
#[test]
fn a_validator_whose_state_diverged_stops_voting() {
    for r in run_all("divergent_state", 46_000, 4, |s| {
        transfers(s).byzantine(2, Behavior::DivergentState)
    }) {
        assert_transfers(&r, 30);
        let diverged = r.metrics[2].as_ref().expect("validator 2 runs");
        let honest = r.metrics[0].as_ref().expect("validator 0 runs");
        eprintln!(
            "seed {}: validator 2 refused {} proposals, made {} and sent {} votes; validator 0 \
             sent {} votes; honest refusals {:?}",
            r.seed,
            diverged.state_root_mismatches,
            diverged.proposals_made,
            diverged.votes_sent,
            honest.votes_sent,
            r.rejected.get("state_root_mismatch")
        );
        assert!(diverged.state_root_mismatches > 0, "{}", r.summary());
        assert!(
            r.rejected.get("state_root_mismatch").copied().unwrap_or(0) > 0,
            "honest validators voted for a proposal with a wrong state root: {}",
            r.summary()
        );
        // Its votes: for its own proposals, and for the first blocks, whose
        // proposals carry no executed height yet (execution starts with the
        // first commit; a proposal at height h reports height h - 4 or
        // lower). Never for an honest proposal after that.
        let first_checked = 8;
        assert!(
            diverged.votes_sent <= diverged.proposals_made + first_checked,
            "validator 2 kept voting for honest proposals: {} votes, {} own proposals",
            diverged.votes_sent,
            diverged.proposals_made
        );
    }
}
