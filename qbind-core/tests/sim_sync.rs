//! Catch-up scenarios (issue #18): validators that were down while the
//! others committed, across epoch boundaries and over long outages, must
//! catch up to the others' height with equal state roots (the simulator's
//! checker compares roots per height in transfer runs), with a bounded
//! number of sync messages per block synced. A failure prints the seed;
//! replay with `QBIND_SIM_SEED=N cargo test -p qbind-core --test sim_sync NAME`.

use qbind_core::sim::{Report, Scenario, Transfers, seeds};

/// Every node (honest, running at the end) reached `target` and the run
/// has no violation.
fn assert_caught_up(name: &str, r: &Report, target: u64) {
    assert!(r.violations.is_empty(), "{name} failed: {}", r.summary());
    for (i, c) in r.commits.iter().enumerate() {
        let h = c.last().map_or(0, |c| c.height.0);
        assert!(
            h >= target,
            "{name}: node {i} stopped at height {h} < {target}: {}; its metrics: {:?}",
            r.summary(),
            r.metrics.get(i)
        );
    }
}

/// Issue #18 "What was measured", item 2: n = 4, epochs of 10 blocks,
/// validator 0 down from 500 ms to 2,000 ms, transactions every 20 ms.
fn epoch_crash(seed: u64, len: u64) -> Scenario {
    Scenario::new(4)
        .seed(seed)
        .transactions_every(20)
        .epoch_change(len, vec![1, 1, 1, 1])
        .crash(0, 500, Some(2_000))
        .min_commits(80)
        .max_time(20_000)
}

#[test]
fn validator_down_across_epoch_boundaries_catches_up() {
    for len in [10, 6, 15] {
        for seed in seeds(180_000 + len * 100, 4) {
            let r = epoch_crash(seed, len).run();
            assert_caught_up("epoch_crash", &r, 80);
        }
    }
}

#[test]
fn validator_down_across_epoch_boundaries_with_transfers_equal_roots() {
    for seed in seeds(181_000, 3) {
        let r = epoch_crash(seed, 10)
            .transactions_every(5)
            .transfers(Transfers::default())
            .run();
        assert_caught_up("epoch_crash_transfers", &r, 80);
        let executed = r.executions[0].last().map_or(0, |e| e.height.0);
        assert!(executed >= 80, "seed {seed}: node 0 executed to {executed}");
    }
}

/// Issue #18: n = 10 with repeated crashes and epoch changes.
fn repeated_crashes_n10(seed: u64) -> Scenario {
    let mut s = Scenario::new(10)
        .seed(seed)
        .transactions_every(20)
        .epoch_change(12, vec![1; 10])
        .min_commits(150)
        .max_time(30_000);
    // Three validators (fewer than a third) down at a time, repeatedly.
    for (k, node) in [0usize, 3, 7, 1, 5, 9, 2].into_iter().enumerate() {
        let at = 400 + 600 * k as u64;
        s = s.crash(node, at, Some(at + 1_500));
    }
    s
}

#[test]
fn n10_repeated_crashes_and_epoch_changes_catch_up() {
    for seed in seeds(182_000, 3) {
        let r = repeated_crashes_n10(seed).run();
        assert_caught_up("n10_repeated_crashes", &r, 150);
    }
}

/// A validator down for `down_ms` while the others commit catches up by
/// height ranges from the others' stores: it reaches `target`, most blocks
/// it was behind by come by range sync, and the sync requests it sends stay
/// within a bound per block synced. Returns the report and how many blocks
/// it was behind at its restart.
fn long_outage(seed: u64, down_ms: u64, target: u64) -> (Report, u64) {
    let restart = 100 + down_ms;
    let r = Scenario::new(4)
        .seed(seed)
        .latency(1, 3)
        .base_timeout(20)
        .transactions_every(50)
        .crash(0, 100, Some(restart))
        .min_commits(target)
        .max_time(down_ms * 4 + 10_000)
        .run();
    assert_caught_up("long_outage", &r, target);
    let behind = r.commits[1].iter().filter(|c| c.at <= restart).count() as u64;
    let m = r.metrics[0].clone().expect("node 0 runs at the end");
    let synced = m.sync_blocks_received;
    let requests = m.sync_range_requests_sent + m.sync_requests_sent;
    eprintln!(
        "long outage seed {seed}: node 0 behind by {behind}, synced {synced} blocks by range with \
         {requests} requests ({} by range, {} by id), {} bad, {} unsolicited; end {} ms",
        m.sync_range_requests_sent,
        m.sync_requests_sent,
        m.sync_bad_responses,
        m.sync_unsolicited,
        r.end_time
    );
    assert!(
        synced * 10 >= behind * 8,
        "seed {seed}: only {synced} of {behind} blocks came by range sync"
    );
    // 32 blocks per range (ranges overlap by one): at most one request per
    // 8 blocks synced, plus a constant for the tip.
    assert!(
        requests <= synced / 8 + 40,
        "seed {seed}: {requests} sync requests for {synced} blocks"
    );
    (r, behind)
}

#[test]
fn validator_down_for_a_thousand_blocks_catches_up_by_ranges() {
    for seed in seeds(183_000, 1) {
        // About 230 blocks per simulated second with validator 0 down
        // (leader reputation stops electing it; under round-robin it was
        // 20 s for ~1,000 blocks): the target must stay above the gap so
        // that the node syncs all of it.
        let (_, behind) = long_outage(seed, 6_000, 1_500);
        assert!(behind >= 900, "seed {seed}: only {behind} blocks behind");
    }
}

/// The 10,000-block outage (about a minute of test time).
#[test]
#[ignore = "slow: run with --ignored or the nextest slow profile"]
fn validator_down_for_ten_thousand_blocks_catches_up_slow() {
    for seed in seeds(184_000, 1) {
        let (_, behind) = long_outage(seed, 45_000, 12_500);
        assert!(behind >= 9_000, "seed {seed}: only {behind} blocks behind");
    }
}

/// Under DAG payloads a validator down for more than `retain_delivered_blocks`
/// (256) blocks needs batch data its peers no longer hold in memory: they
/// serve it from their stores, and it executes every block with the others'
/// state roots (the checker compares roots per height).
#[test]
fn validator_down_past_the_dag_retention_catches_up_and_executes() {
    for seed in seeds(185_000, 2) {
        let restart = 2_100;
        let target = 900;
        let r = Scenario::new(4)
            .dag()
            .seed(seed)
            .latency(1, 3)
            .base_timeout(20)
            .transactions_every(10)
            .transfers(Transfers::default())
            .crash(0, 100, Some(restart))
            .min_commits(target)
            .max_time(30_000)
            .run();
        let behind = r.commits[1].iter().filter(|c| c.at <= restart).count() as u64;
        assert!(behind >= 400, "seed {seed}: only {behind} blocks behind");
        assert_caught_up("dag_outage", &r, target);
        let executed = r.executions[0].last().map_or(0, |e| e.height.0);
        assert!(
            executed >= target,
            "seed {seed}: node 0 executed to {executed} of {target}; {}",
            r.summary()
        );
    }
}
