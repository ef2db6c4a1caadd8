//! Which seeds a test runs: a range, or the one `QBIND_SIM_SEED` names
//! (replaying a failure, docs/simulation.md "Replaying").

/// The seed in `QBIND_SIM_SEED`, if the environment sets one: every
/// scenario of the process then runs with it.
#[must_use]
pub fn replay_seed() -> Option<u64> {
    std::env::var("QBIND_SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// The seeds `base..base + count`, or only [`replay_seed`] when set.
#[must_use]
pub fn seeds(base: u64, count: u64) -> Vec<u64> {
    match replay_seed() {
        Some(seed) => vec![seed],
        None => (base..base + count).collect(),
    }
}
