//! Leader selection with a validator down (issue #21, "Liveness with a
//! validator down"; docs/consensus.md §C10, docs/simulation.md "Leader
//! reputation").
//!
//! One of four validators is crashed for the whole run. With round-robin
//! leaders every fourth view waits for a timeout; with leader reputation
//! (the default) the crashed validator is no longer elected once the
//! committed chain shows it absent, and the chain commits at least 60 % of
//! the blocks per simulated second of the same network with all four up.
//! Every run also passes the simulator's safety checks. A failure prints
//! the seed; replay with
//! `QBIND_SIM_SEED=N cargo test -p qbind-core --test sim_leader NAME`.

use qbind_core::consensus::leader::{LeaderPolicy, ReputationConfig};
use qbind_core::sim::{Report, Scenario, seeds};

/// Blocks every honest node commits before a run ends.
const BLOCKS: u64 = 100;
/// Commits before this height are warm-up (the empty reputation window at
/// genesis is round-robin) and are not counted in the rate.
const WARM_UP: u64 = 20;
/// The bound: with one of four down, at least this share of the
/// all-up block rate.
const MIN_SHARE: f64 = 0.6;

fn network(seed: u64, policy: LeaderPolicy, crashed: Option<usize>) -> Scenario {
    let s = Scenario::new(4)
        .seed(seed)
        .transactions_every(20)
        .leader_policy(policy)
        .min_commits(BLOCKS)
        .max_time(120_000);
    match crashed {
        Some(node) => s.crash(node, 0, None),
        None => s,
    }
}

/// Blocks committed per simulated second from height `WARM_UP` to the
/// last commit, on the slowest of the nodes that kept running (at least
/// `running` of them must have committed past the warm-up).
fn block_rate(name: &str, r: &Report, running: usize) -> f64 {
    block_rate_from(name, r, running, WARM_UP)
}

/// [`block_rate`] from height `from`.
fn block_rate_from(name: &str, r: &Report, running: usize, from: u64) -> f64 {
    assert!(r.violations.is_empty(), "{name} failed: {}", r.summary());
    let rates: Vec<f64> = r
        .commits
        .iter()
        .filter_map(|c| {
            let start = c.iter().find(|b| b.height.0 >= from)?;
            let end = c.last()?;
            (end.at > start.at).then(|| {
                (end.height.0 - start.height.0) as f64 * 1_000.0 / (end.at - start.at) as f64
            })
        })
        .collect();
    assert!(
        rates.len() >= running,
        "{name}: only {} nodes committed past height {from}: {}",
        rates.len(),
        r.summary()
    );
    rates.into_iter().fold(f64::INFINITY, f64::min)
}

fn crashed_node(seed: u64) -> usize {
    (seed % 4) as usize
}

/// Issue #21: one of four down for the whole run, leader reputation keeps
/// the block rate at >= 60 % of all-up, on every seed.
#[test]
fn one_validator_down_keeps_sixty_percent_of_the_all_up_rate() {
    let policy = LeaderPolicy::default();
    let mut worst = f64::INFINITY;
    for seed in seeds(210_000, 50) {
        let up_run = network(seed, policy, None).run();
        let down_run = network(seed, policy, Some(crashed_node(seed))).run();
        // Honest validators agreed on every leader (§C10.4): no proposal
        // was refused as not the leader's, no vote as sent to a non-leader.
        for (what, r) in [("all up", &up_run), ("one down", &down_run)] {
            for label in ["not_leader", "not_next_leader"] {
                assert_eq!(
                    r.rejected.get(label),
                    None,
                    "seed {seed}, {what}: validators disagreed on a leader: {}",
                    r.summary()
                );
            }
        }
        let up = block_rate("all up", &up_run, 4);
        let down = block_rate("one down", &down_run, 3);
        assert!(
            down >= MIN_SHARE * up,
            "seed {seed}: {down:.1} blocks/s with validator {} down, {up:.1} all up",
            crashed_node(seed)
        );
        worst = worst.min(down / up);
    }
    eprintln!("lowest share of the all-up block rate with one of four down: {worst:.2}");
}

/// The same runs under round-robin fall below the bound: the family
/// measures what leader selection changes.
#[test]
fn round_robin_with_one_validator_down_falls_below_the_bound() {
    for seed in seeds(211_000, 8) {
        let up = block_rate(
            "all up",
            &network(seed, LeaderPolicy::RoundRobin, None).run(),
            4,
        );
        let down = block_rate(
            "round-robin, one down",
            &network(seed, LeaderPolicy::RoundRobin, Some(crashed_node(seed))).run(),
            3,
        );
        assert!(
            down < MIN_SHARE * up,
            "seed {seed}: round-robin kept {down:.1} of {up:.1} blocks/s"
        );
    }
}

/// A validator that crashes mid-run (at 0.5 s, about height 25) stops
/// being elected once its last QC signature leaves the window: from height
/// 80 on the rate is back above the bound.
#[test]
fn a_validator_crashing_mid_run_stops_being_elected() {
    let policy = LeaderPolicy::default();
    for seed in seeds(213_000, 10) {
        let run = |crash: bool| {
            let s = Scenario::new(4)
                .seed(seed)
                .transactions_every(20)
                .leader_policy(policy)
                .min_commits(160)
                .max_time(120_000);
            if crash {
                s.crash(crashed_node(seed), 500, None)
            } else {
                s
            }
        };
        let up = block_rate_from("all up", &run(false).run(), 4, 80);
        let down = block_rate_from("crash at 0.5 s", &run(true).run(), 3, 80);
        assert!(
            down >= MIN_SHARE * up,
            "seed {seed}: {down:.1} blocks/s after validator {} crashed, {up:.1} all up",
            crashed_node(seed)
        );
    }
}

/// A short window and lag still exclude the crashed validator, and seven
/// validators with two down keep the bound too.
#[test]
fn two_of_seven_down_with_a_short_window() {
    let policy = LeaderPolicy::Reputation(ReputationConfig {
        window: 8,
        lag_views: 6,
    });
    for seed in seeds(212_000, 6) {
        let seven = |crash: bool| {
            let s = Scenario::new(7)
                .seed(seed)
                .transactions_every(20)
                .leader_policy(policy)
                .min_commits(BLOCKS)
                .max_time(120_000);
            if crash {
                s.crash((seed % 7) as usize, 0, None)
                    .crash(((seed + 3) % 7) as usize, 0, None)
            } else {
                s
            }
        };
        let up = block_rate("seven up", &seven(false).run(), 7);
        let down = block_rate("two of seven down", &seven(true).run(), 5);
        assert!(
            down >= MIN_SHARE * up,
            "seed {seed}: {down:.1} blocks/s with two of seven down, {up:.1} all up"
        );
    }
}

/// A validator restarted from its committed tail (`HotStuff::new`, the
/// `Replica::open` path) elects the same leaders as the schedule fed the
/// whole chain, as long as the tail covers the window and the lag.
#[test]
fn a_restarted_validator_elects_the_same_leaders() {
    use std::sync::Arc;

    use qbind_core::consensus::leader::{CommittedEntry, LeaderSchedule};
    use qbind_core::consensus::{
        Block, BlockHeader, ConsensusConfig, HotStuff, Payload, QuorumCert, SignerBitmap, VoteData,
    };
    use qbind_core::crypto::KeyPair;
    use qbind_core::types::{Epoch, Hash32, Height, NetworkEnvironment, ValidatorId, View};
    use qbind_core::validator::{EpochSchedule, ValidatorSet};

    const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;
    let keys: Vec<KeyPair> = (0..4u8)
        .map(|i| KeyPair::from_seed(&[90 + i; 32]))
        .collect();
    let set =
        ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect()).expect("set");
    let schedule = Arc::new(EpochSchedule::fixed(set.clone()));
    // Validator 3 is down: it proposes nothing and signs no QC. Nothing
    // verifies the signatures of a reloaded committed tail, so the QCs
    // carry none.
    let mut chain = vec![Block::genesis(ENV.chain_id())];
    for v in 1..=60u64 {
        let parent = chain.last().expect("genesis").clone();
        let justify = if v == 1 {
            parent.justify().clone()
        } else {
            let mut signers = SignerBitmap::new(4);
            for i in 0..3 {
                signers.set(ValidatorId(i));
            }
            QuorumCert {
                data: VoteData {
                    epoch: Epoch(0),
                    view: View(v - 1),
                    block_id: parent.id(),
                },
                signers,
                signatures: Vec::new(),
            }
        };
        let header = BlockHeader {
            epoch: Epoch(0),
            view: View(v),
            height: Height(v),
            parent_id: parent.id(),
            justify_view: justify.view(),
            proposer: ValidatorId((v % 3) as u32),
            payload_digest: Hash32::ZERO,
            batch_commitment: Hash32::ZERO,
            exec_height: Height(0),
            exec_state_root: Hash32::ZERO,
        };
        chain.push(Block::new(header, justify, Payload::empty()));
    }
    let mut reference = LeaderSchedule::new(LeaderPolicy::default(), ENV.chain_id());
    for b in &chain {
        reference.record(CommittedEntry::of(b));
    }
    let restarted = |tail: usize| {
        HotStuff::new(
            ConsensusConfig::new(ENV),
            ValidatorId(0),
            schedule.clone(),
            None,
            chain[chain.len() - tail..].to_vec(),
            Vec::new(),
        )
    };
    let whole = restarted(chain.len());
    let short = restarted(30);
    for v in 1..300u64 {
        let expected = reference.leader(&set, Epoch(0), View(v));
        assert_eq!(whole.leader(Epoch(0), View(v)), expected, "view {v}");
        if v >= 60 {
            assert_eq!(short.leader(Epoch(0), View(v)), expected, "view {v}");
        }
        if v >= 20 {
            assert_ne!(expected, ValidatorId(3), "view {v}");
        }
    }
}
