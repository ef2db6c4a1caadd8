//! The monetary engine (spec §3.6; runbook §8; DESIGN "Monetary engine").
//!
//! At every epoch boundary the engine turns the epoch's fees and stake into a
//! [`MonetaryEpochState`]: the phase (Bootstrap → Transition → Mature, by
//! time *and* economic gates, one step at most, never back), the EMA of fees
//! per epoch with the phase's λ, the fee coverage and stake ratios, the
//! annual inflation rate (target reduced by fee coverage, clamped to the
//! phase's floor and cap, *then* moved at most Δ from the previous epoch's
//! rate), the epoch's issuance and its split between validators, treasury,
//! insurance and community. All arithmetic is on integers in basis points,
//! rounding down; the split's last part takes the remainder, so nothing is
//! created or lost by rounding.
//!
//! The mode decides what happens with the result: `Off` computes nothing,
//! `Shadow` computes and reports (gauges) but credits nothing, `Active`
//! credits the issuance ([`MonetaryEpochState::credits`] feeds
//! [`crate::execution::credit`]).
//!
//! ```
//! use qbind_core::monetary::*;
//!
//! let config = MonetaryConfig::mainnet();
//! config.validate(true).unwrap();
//! let genesis = MonetaryEpochState::genesis(&config);
//! let inputs = EpochInputs { fees: 1_000_000, staked: 400_000_000, total_supply: 1_000_000_000 };
//! let next = compute_epoch_state(&config, &genesis, 1, &inputs).unwrap();
//! assert_eq!(next.phase, MonetaryPhase::Bootstrap);
//! let gauges = MonetaryGauges::from_state(&next, config.mode);
//! assert_eq!(gauges.mode, 1); // Shadow
//! assert!(next.credits(config.mode, &SeigniorageRecipients::default()).is_empty());
//! ```

mod engine;
mod record;

pub use engine::{
    EpochInputs, MonetaryEpochState, MonetaryGauges, SeigniorageRecipients, SeigniorageSplit,
    compute_epoch_state, compute_phase_transition, epoch_for_height, is_epoch_boundary, mul_bps,
};
pub use record::{MONETARY_STATE_BYTES, MONETARY_STATE_KEY, epoch_key, split_by_stake};

/// Epochs per year with 10-minute epochs.
pub const EPOCHS_PER_YEAR: u64 = 52_560;
/// First epoch at which Bootstrap may end (~3 years).
pub const TRANSITION_TIME_GATE_EPOCH: u64 = 157_680;
/// First epoch at which Transition may end (~7 years).
pub const MATURE_TIME_GATE_EPOCH: u64 = 367_920;

/// The monetary phase; numbered as the `qbind_monetary_phase` gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MonetaryPhase {
    /// Years 0–3: high inflation covering PQC validation costs.
    Bootstrap = 0,
    /// Years 3–7: inflation falls as fees grow.
    Transition = 1,
    /// Year 7 on: fee-dominant. Terminal.
    Mature = 2,
}

/// What the node does with the engine's result (runbook §8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MonetaryMode {
    /// No computation (forbidden on MainNet).
    Off,
    /// Compute and report; credit nothing (MainNet launch default).
    Shadow,
    /// Compute and credit issuance.
    Active,
}

impl MonetaryMode {
    /// The `qbind_monetary_mode` gauge value: 0 Off, 1 Shadow, 2 Active.
    #[must_use]
    pub fn gauge(self) -> u8 {
        match self {
            MonetaryMode::Off => 0,
            MonetaryMode::Shadow => 1,
            MonetaryMode::Active => 2,
        }
    }
}

/// Per-phase rate parameters, all in basis points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PhaseParams {
    /// Annual inflation target with no fee coverage.
    pub r_target_bps: u32,
    /// Lowest annual rate.
    pub floor_bps: u32,
    /// Highest annual rate.
    pub cap_bps: u32,
    /// EMA weight of the newest epoch's fees.
    pub ema_lambda_bps: u32,
    /// Largest change of the annual rate from one epoch to the next.
    pub max_delta_bps: u32,
}

/// Gates for leaving a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PhaseGate {
    /// Earliest epoch.
    pub min_epoch: u64,
    /// Minimum fee coverage (bps).
    pub min_fee_coverage_bps: u32,
    /// Minimum staked share of supply (bps).
    pub min_stake_ratio_bps: u32,
}

/// The engine's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MonetaryConfig {
    /// Blocks per epoch (epoch of a height = height / blocks_per_epoch).
    pub blocks_per_epoch: u64,
    /// Epochs per year, to turn annual rates into per-epoch issuance.
    pub epochs_per_year: u64,
    /// Parameters of Bootstrap, Transition, Mature (indexed by phase).
    pub phases: [PhaseParams; 3],
    /// Bootstrap → Transition gate.
    pub to_transition: PhaseGate,
    /// Transition → Mature gate.
    pub to_mature: PhaseGate,
    /// How issuance is divided.
    pub split: SeigniorageSplit,
    /// Off, Shadow or Active.
    pub mode: MonetaryMode,
}

/// Why a [`MonetaryConfig`] is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MonetaryError {
    /// A parameter is outside its governance bounds.
    #[error("{what} = {value} outside [{min}, {max}]")]
    OutOfBounds {
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: u64,
        /// Lower bound.
        min: u64,
        /// Upper bound.
        max: u64,
    },
    /// The seigniorage shares do not sum to 10,000 bps.
    #[error("seigniorage shares sum to {sum} bps, not 10000")]
    SplitNotWhole {
        /// Their sum.
        sum: u32,
    },
    /// `floor <= target <= cap` does not hold for a phase.
    #[error("phase {phase:?}: floor {floor} <= target {target} <= cap {cap} does not hold")]
    RateOrder {
        /// Which phase.
        phase: MonetaryPhase,
        /// Floor.
        floor: u32,
        /// Target.
        target: u32,
        /// Cap.
        cap: u32,
    },
    /// Mode Off on MainNet.
    #[error("monetary mode Off is forbidden on MainNet")]
    OffOnMainnet,
    /// Epochs must advance by exactly one.
    #[error("epoch {got} does not follow epoch {previous}")]
    EpochNotNext {
        /// The previous state's epoch.
        previous: u64,
        /// The requested epoch.
        got: u64,
    },
    /// The engine is Off.
    #[error("monetary mode is Off")]
    Off,
}

impl MonetaryConfig {
    /// MainNet defaults (Shadow mode). Rates are this implementation's
    /// choices inside the runbook §8.1 ranges: Bootstrap target 850 bps,
    /// floor 0, cap 900; Transition 625 / 500 / 750; Mature 350 / 200 / 500.
    #[must_use]
    pub fn mainnet() -> MonetaryConfig {
        MonetaryConfig {
            blocks_per_epoch: 600,
            epochs_per_year: EPOCHS_PER_YEAR,
            phases: [
                PhaseParams {
                    r_target_bps: 850,
                    floor_bps: 0,
                    cap_bps: 900,
                    ema_lambda_bps: 700,
                    max_delta_bps: 25,
                },
                PhaseParams {
                    r_target_bps: 625,
                    floor_bps: 500,
                    cap_bps: 750,
                    ema_lambda_bps: 300,
                    max_delta_bps: 10,
                },
                PhaseParams {
                    r_target_bps: 350,
                    floor_bps: 200,
                    cap_bps: 500,
                    ema_lambda_bps: 150,
                    max_delta_bps: 5,
                },
            ],
            to_transition: PhaseGate {
                min_epoch: TRANSITION_TIME_GATE_EPOCH,
                min_fee_coverage_bps: 2_000,
                min_stake_ratio_bps: 3_000,
            },
            to_mature: PhaseGate {
                min_epoch: MATURE_TIME_GATE_EPOCH,
                min_fee_coverage_bps: 5_000,
                min_stake_ratio_bps: 4_000,
            },
            split: SeigniorageSplit::MAINNET,
            mode: MonetaryMode::Shadow,
        }
    }

    /// The parameters of `phase`.
    #[must_use]
    pub fn params(&self, phase: MonetaryPhase) -> &PhaseParams {
        match phase {
            MonetaryPhase::Bootstrap => &self.phases[0],
            MonetaryPhase::Transition => &self.phases[1],
            MonetaryPhase::Mature => &self.phases[2],
        }
    }

    /// Check every governance bound (spec §3.6 table): λ in [50, 1500],
    /// [20, 500], [10, 200]; validators' share in [7500, 9000]; shares sum to
    /// 10,000; floor ≤ target ≤ cap ≤ 10,000; non-zero epoch lengths;
    /// `mainnet` forbids mode Off.
    pub fn validate(&self, mainnet: bool) -> Result<(), MonetaryError> {
        let bound = |what, value: u64, min: u64, max: u64| {
            if value < min || value > max {
                Err(MonetaryError::OutOfBounds {
                    what,
                    value,
                    min,
                    max,
                })
            } else {
                Ok(())
            }
        };
        bound("blocks_per_epoch", self.blocks_per_epoch, 1, u64::MAX)?;
        bound("epochs_per_year", self.epochs_per_year, 1, u64::MAX)?;
        let lambda_bounds = [(50, 1_500), (20, 500), (10, 200)];
        let phases = [
            MonetaryPhase::Bootstrap,
            MonetaryPhase::Transition,
            MonetaryPhase::Mature,
        ];
        for (phase, (lo, hi)) in phases.into_iter().zip(lambda_bounds) {
            let p = self.params(phase);
            bound("ema_lambda_bps", u64::from(p.ema_lambda_bps), lo, hi)?;
            bound("max_delta_bps", u64::from(p.max_delta_bps), 0, 10_000)?;
            bound("cap_bps", u64::from(p.cap_bps), 0, 10_000)?;
            if !(p.floor_bps <= p.r_target_bps && p.r_target_bps <= p.cap_bps) {
                return Err(MonetaryError::RateOrder {
                    phase,
                    floor: p.floor_bps,
                    target: p.r_target_bps,
                    cap: p.cap_bps,
                });
            }
        }
        self.split.validate()?;
        if mainnet && self.mode == MonetaryMode::Off {
            return Err(MonetaryError::OffOnMainnet);
        }
        Ok(())
    }
}
