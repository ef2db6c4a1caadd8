//! Example (b): a simulator scenario, run and replayed from its seed.
//!
//! [`qbind_core::sim`] (feature `sim`) runs every validator as the same
//! [`qbind_core::replica::Replica`] the engine drives, in one thread, on
//! simulated time, over stores that lose unsynced writes on a crash. Every
//! random choice (latency, which node gets a transaction, …) comes from one
//! seeded RNG, so a seed *is* the run: replaying it gives the same event log
//! hash, the same commits and the same state roots. That is what turns a
//! failure found among thousands of seeds into a reproducible bug report.
//!
//! The scenario: four validators exchanging signed VM v0 transfers, 5–15 ms
//! links; validator 1 crashes at 300 ms and restarts at 1.2 s from whatever
//! its store kept (through the production restore path, `Replica::open`);
//! from 1.5 s to 2.5 s validator 3 is cut off from the others. Every run is
//! checked by the simulator's own checkers (agreement, chain, no double
//! signing, equal state roots, supply conservation, liveness after the
//! heal).

use qbind_core::sim::{ExecRecord, Report, Scenario, Transfers};
use qbind_core::types::Hash32;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// The seed (`QBIND_SIM_SEED` in the environment overrides it).
    pub seed: u64,
    /// Blocks every honest validator must commit before the run stops.
    pub blocks: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seed: 42,
            blocks: 30,
        }
    }
}

/// The scenario for `params`.
#[must_use]
pub fn scenario(params: &Params) -> Scenario {
    Scenario::new(4)
        .seed(params.seed)
        .latency(5, 15)
        .transfers(Transfers {
            accounts: 8,
            ..Transfers::default()
        })
        .transactions_every(20)
        .crash(1, 300, Some(1_200))
        .partition(1_500, 2_500, vec![vec![0, 1, 2], vec![3]])
        // After the partition heals, everybody (validator 3 included) must
        // commit 5 more blocks within 50 views.
        .liveness(5, 50)
        .min_commits(params.blocks)
        .max_time(60_000)
}

/// What a run is compared on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The seed actually used.
    pub seed: u64,
    /// SHA3-256 over every event the simulator processed.
    pub event_log_hash: Hash32,
    /// Per validator: the ids of the blocks it committed, by height.
    pub committed: Vec<Vec<Hash32>>,
    /// Per validator: every executed height with its state root.
    pub executions: Vec<Vec<ExecRecord>>,
    /// Violations the checkers found (rendered).
    pub violations: Vec<String>,
    /// Per validator: the last height it committed.
    pub heights: Vec<u64>,
    /// Lowest committed height over the honest validators.
    pub min_height: u64,
    /// Simulated end time, ms.
    pub end_time: u64,
}

impl Outcome {
    /// The comparable parts of `report`.
    #[must_use]
    pub fn of(report: &Report) -> Self {
        Outcome {
            seed: report.seed,
            event_log_hash: report.event_log_hash,
            committed: report
                .commits
                .iter()
                .map(|c| c.iter().map(|r| r.id).collect())
                .collect(),
            executions: report.executions.clone(),
            heights: report
                .commits
                .iter()
                .map(|c| c.last().map_or(0, |r| r.height.0))
                .collect(),
            violations: report.violations.iter().map(|v| format!("{v:?}")).collect(),
            min_height: report.min_honest_height(),
            end_time: report.end_time,
        }
    }

    /// The state root every validator reached at `height`, if they all
    /// executed it and agree.
    #[must_use]
    pub fn common_root(&self, height: u64) -> Option<Hash32> {
        let mut roots = self.executions.iter().map(|node| {
            node.iter()
                .find(|e| e.height.0 == height)
                .map(|e| e.state_root)
        });
        let first = roots.next()??;
        roots.all(|r| r == Some(first)).then_some(first)
    }
}

/// A run and its replay.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The first run.
    pub first: Outcome,
    /// The same scenario and seed again.
    pub replay: Outcome,
    /// The height validator 1 — the one that crashed and restarted — had
    /// committed by the end.
    pub crashed_validator_height: u64,
}

/// Why the example failed.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The checkers found violations.
    #[error("seed {seed}: violations {violations:?}")]
    Violations {
        /// The seed (replay with `QBIND_SIM_SEED`).
        seed: u64,
        /// What they found.
        violations: Vec<String>,
    },
    /// The validators did not commit enough blocks.
    #[error("seed {seed}: honest validators reached height {reached}, not {wanted}")]
    TooFewCommits {
        /// The seed.
        seed: u64,
        /// Lowest honest height.
        reached: u64,
        /// Wanted.
        wanted: u64,
    },
    /// The replay differed from the first run: determinism is broken.
    #[error("seed {seed}: the replay differs from the first run")]
    ReplayDiffers {
        /// The seed.
        seed: u64,
    },
}

/// Run the scenario once and check it.
pub fn run_once(params: &Params) -> Result<Outcome, ScenarioError> {
    let outcome = Outcome::of(&scenario(params).run());
    if !outcome.violations.is_empty() {
        return Err(ScenarioError::Violations {
            seed: outcome.seed,
            violations: outcome.violations,
        });
    }
    if outcome.min_height < params.blocks {
        return Err(ScenarioError::TooFewCommits {
            seed: outcome.seed,
            reached: outcome.min_height,
            wanted: params.blocks,
        });
    }
    Ok(outcome)
}

/// Run the scenario, replay it with the same seed, and require the same
/// outcome; `progress` hears one line per step.
pub fn run(params: &Params, progress: &mut dyn FnMut(&str)) -> Result<Summary, ScenarioError> {
    let first = run_once(params)?;
    progress(&format!(
        "seed {}: {} blocks on every honest validator in {} simulated ms, no violations, event log {:?}…",
        first.seed, first.min_height, first.end_time, first.event_log_hash
    ));
    let replay = run_once(params)?;
    progress(&format!(
        "replay of seed {}: event log {:?}…",
        replay.seed, replay.event_log_hash
    ));
    if replay != first {
        return Err(ScenarioError::ReplayDiffers { seed: first.seed });
    }
    let crashed_validator_height = first.heights.get(1).copied().unwrap_or(0);
    progress(&format!(
        "identical: same event log, same {} commits, same state roots; validator 1 crashed, \
         restarted and reached height {crashed_validator_height}",
        first.committed.iter().map(Vec::len).sum::<usize>(),
    ));
    Ok(Summary {
        first,
        replay,
        crashed_validator_height,
    })
}
