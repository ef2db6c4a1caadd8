//! The per-epoch computation of the monetary engine (spec §3.6 "Monetary
//! Epoch State"; runbook §8.3 gauges). See the module docs of
//! [`crate::monetary`] for the order of operations.

use super::{MonetaryConfig, MonetaryError, MonetaryMode, MonetaryPhase, PhaseGate};
use crate::types::AccountId;

const BPS: u128 = 10_000;

/// `floor(x · bps / 10_000)` without overflow, for `bps <= 10_000`.
#[must_use]
pub fn mul_bps(x: u128, bps: u32) -> u128 {
    let bps = u128::from(bps).min(BPS);
    (x / BPS) * bps + (x % BPS) * bps / BPS
}

/// `min(10_000, floor(num · 10_000 / den))`; 10,000 when `den` is 0.
fn ratio_bps(num: u128, den: u128) -> u32 {
    if den == 0 || num >= den {
        return 10_000;
    }
    // num < den: num·10_000 may overflow only for huge values; then scale.
    let value = match num.checked_mul(BPS) {
        Some(n) => n / den,
        None => num / (den / BPS).max(1),
    };
    u32::try_from(value.min(BPS)).unwrap_or(10_000)
}

/// The epoch a height belongs to.
#[must_use]
pub fn epoch_for_height(height: u64, blocks_per_epoch: u64) -> u64 {
    height / blocks_per_epoch.max(1)
}

/// Whether `height` is the first block of a new epoch (the monetary state is
/// computed there, for the epoch that just ended). Height 0 is genesis, not a
/// boundary.
#[must_use]
pub fn is_epoch_boundary(height: u64, blocks_per_epoch: u64) -> bool {
    height > 0 && height.is_multiple_of(blocks_per_epoch.max(1))
}

/// How issuance is divided (bps; validators within [7500, 9000]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeigniorageSplit {
    /// Validators' share.
    pub validators_bps: u32,
    /// Treasury's share.
    pub treasury_bps: u32,
    /// Insurance fund's share.
    pub insurance_bps: u32,
    /// Community fund's share.
    pub community_bps: u32,
}

impl SeigniorageSplit {
    /// MainNet: 82 % validators, 10 % treasury, 5 % insurance, 3 % community.
    pub const MAINNET: SeigniorageSplit = SeigniorageSplit {
        validators_bps: 8_200,
        treasury_bps: 1_000,
        insurance_bps: 500,
        community_bps: 300,
    };

    /// Validators' share in [7500, 9000] and the shares sum to 10,000.
    pub fn validate(&self) -> Result<(), MonetaryError> {
        if !(7_500..=9_000).contains(&self.validators_bps) {
            return Err(MonetaryError::OutOfBounds {
                what: "validators_bps",
                value: u64::from(self.validators_bps),
                min: 7_500,
                max: 9_000,
            });
        }
        let sum = self
            .validators_bps
            .saturating_add(self.treasury_bps)
            .saturating_add(self.insurance_bps)
            .saturating_add(self.community_bps);
        if sum != 10_000 {
            return Err(MonetaryError::SplitNotWhole { sum });
        }
        Ok(())
    }
}

/// What one epoch contributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EpochInputs {
    /// Fees paid during the epoch (before burning).
    pub fees: u128,
    /// Staked units at the boundary.
    pub staked: u128,
    /// Total supply at the boundary (`minted - burned`).
    pub total_supply: u128,
}

/// The consensus-tracked monetary state of one epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MonetaryEpochState {
    /// The epoch this state closes.
    pub epoch: u64,
    /// Phase after this epoch's transition check.
    pub phase: MonetaryPhase,
    /// EMA of fees per epoch.
    pub ema_fees_per_epoch: u128,
    /// Annualised EMA fees over the target security budget (bps, ≤ 10,000).
    pub fee_coverage_bps: u32,
    /// Staked share of supply (bps).
    pub stake_ratio_bps: u32,
    /// The phase's target annual rate.
    pub r_target_annual_bps: u32,
    /// The chosen annual rate (after floor/cap and the Δ-limit).
    pub r_inf_annual_bps: u32,
    /// Whether every gate for the next phase holds (0 = Stay, 1 = Advance).
    pub phase_recommendation: bool,
    /// Units issued for this epoch: `floor(supply · r_inf / (10,000 · epochs_per_year))`.
    pub issuance: u128,
    /// Validators' part of the issuance.
    pub to_validators: u128,
    /// Treasury's part.
    pub to_treasury: u128,
    /// Insurance fund's part.
    pub to_insurance: u128,
    /// Community fund's part (the remainder).
    pub to_community: u128,
}

/// Accounts that receive issuance in Active mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SeigniorageRecipients {
    /// The validator reward pool.
    pub validators: AccountId,
    /// The treasury.
    pub treasury: AccountId,
    /// The insurance fund.
    pub insurance: AccountId,
    /// The community fund.
    pub community: AccountId,
}

impl MonetaryEpochState {
    /// The state before the first epoch: Bootstrap at its target rate.
    #[must_use]
    pub fn genesis(config: &MonetaryConfig) -> MonetaryEpochState {
        let p = config.params(MonetaryPhase::Bootstrap);
        MonetaryEpochState {
            epoch: 0,
            phase: MonetaryPhase::Bootstrap,
            ema_fees_per_epoch: 0,
            fee_coverage_bps: 0,
            stake_ratio_bps: 0,
            r_target_annual_bps: p.r_target_bps,
            r_inf_annual_bps: p.r_target_bps,
            phase_recommendation: false,
            issuance: 0,
            to_validators: 0,
            to_treasury: 0,
            to_insurance: 0,
            to_community: 0,
        }
    }

    /// The balance credits this state causes: the four parts in Active mode,
    /// nothing in Shadow or Off (zero parts are left out).
    #[must_use]
    pub fn credits(
        &self,
        mode: MonetaryMode,
        to: &SeigniorageRecipients,
    ) -> Vec<(AccountId, u128)> {
        if mode != MonetaryMode::Active {
            return Vec::new();
        }
        [
            (to.validators, self.to_validators),
            (to.treasury, self.to_treasury),
            (to.insurance, self.to_insurance),
            (to.community, self.to_community),
        ]
        .into_iter()
        .filter(|(_, amount)| *amount > 0)
        .collect()
    }
}

fn economic_gate(gate: &PhaseGate, coverage: u32, stake: u32) -> bool {
    coverage >= gate.min_fee_coverage_bps && stake >= gate.min_stake_ratio_bps
}

/// The phase after `epoch`, given the current phase and the epoch's ratios:
/// at most one step forward, only when the time gate *and* both economic
/// gates hold; Mature is terminal. Returns `(next phase, recommendation)`,
/// where the recommendation (gauge `qbind_monetary_phase_recommendation`)
/// says whether the economic gates of the next phase hold, whatever the
/// time gate says.
#[must_use]
pub fn compute_phase_transition(
    config: &MonetaryConfig,
    current: MonetaryPhase,
    epoch: u64,
    fee_coverage_bps: u32,
    stake_ratio_bps: u32,
) -> (MonetaryPhase, bool) {
    let (gate, next) = match current {
        MonetaryPhase::Bootstrap => (&config.to_transition, MonetaryPhase::Transition),
        MonetaryPhase::Transition => (&config.to_mature, MonetaryPhase::Mature),
        MonetaryPhase::Mature => return (MonetaryPhase::Mature, false),
    };
    let economic = economic_gate(gate, fee_coverage_bps, stake_ratio_bps);
    if economic && epoch >= gate.min_epoch {
        (next, true)
    } else {
        (current, economic)
    }
}

/// Compute the state closing `epoch` from the previous epoch's state.
///
/// Order: (1) EMA with the *current* phase's λ; (2) fee coverage = annualised
/// EMA over `supply · r_target`, and stake ratio; (3) phase transition; (4) raw
/// rate `r_target · (10,000 − coverage) / 10,000` of the (new) phase; (5)
/// clamp to floor and cap; (6) Δ-limit: within `max_delta` of the previous
/// rate; (7) issuance and its split.
pub fn compute_epoch_state(
    config: &MonetaryConfig,
    previous: &MonetaryEpochState,
    epoch: u64,
    inputs: &EpochInputs,
) -> Result<MonetaryEpochState, MonetaryError> {
    if config.mode == MonetaryMode::Off {
        return Err(MonetaryError::Off);
    }
    if previous.epoch.checked_add(1) != Some(epoch) {
        return Err(MonetaryError::EpochNotNext {
            previous: previous.epoch,
            got: epoch,
        });
    }
    let current = config.params(previous.phase);
    let lambda = current.ema_lambda_bps.min(10_000);
    let ema = mul_bps(inputs.fees, lambda)
        .saturating_add(mul_bps(previous.ema_fees_per_epoch, 10_000 - lambda));
    let annual_fees = ema.saturating_mul(u128::from(config.epochs_per_year));
    let budget = mul_bps(inputs.total_supply, current.r_target_bps);
    let fee_coverage_bps = if budget == 0 {
        0
    } else {
        ratio_bps(annual_fees, budget)
    };
    let stake_ratio_bps = if inputs.total_supply == 0 {
        0
    } else {
        ratio_bps(inputs.staked, inputs.total_supply)
    };
    let (phase, phase_recommendation) = compute_phase_transition(
        config,
        previous.phase,
        epoch,
        fee_coverage_bps,
        stake_ratio_bps,
    );
    let p = config.params(phase);
    let raw = u64::from(p.r_target_bps) * u64::from(10_000 - fee_coverage_bps.min(10_000)) / 10_000;
    let clamped = raw.clamp(
        u64::from(p.floor_bps),
        u64::from(p.cap_bps.max(p.floor_bps)),
    );
    let prev = u64::from(previous.r_inf_annual_bps);
    let delta = u64::from(p.max_delta_bps);
    let limited = clamped.clamp(prev.saturating_sub(delta), prev.saturating_add(delta));
    let r_inf_annual_bps = u32::try_from(limited.min(10_000)).unwrap_or(10_000);
    let issuance =
        mul_bps(inputs.total_supply, r_inf_annual_bps) / u128::from(config.epochs_per_year.max(1));
    let to_validators = mul_bps(issuance, config.split.validators_bps);
    let to_treasury = mul_bps(issuance, config.split.treasury_bps);
    let to_insurance = mul_bps(issuance, config.split.insurance_bps);
    let to_community = issuance
        .saturating_sub(to_validators)
        .saturating_sub(to_treasury)
        .saturating_sub(to_insurance);
    Ok(MonetaryEpochState {
        epoch,
        phase,
        ema_fees_per_epoch: ema,
        fee_coverage_bps,
        stake_ratio_bps,
        r_target_annual_bps: p.r_target_bps,
        r_inf_annual_bps,
        phase_recommendation,
        issuance,
        to_validators,
        to_treasury,
        to_insurance,
        to_community,
    })
}

/// Every figure of runbook §8.3, ready for the metrics layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MonetaryGauges {
    /// `qbind_monetary_phase`: 0 Bootstrap, 1 Transition, 2 Mature.
    pub phase: u8,
    /// `qbind_monetary_r_inf_annual_bps`.
    pub r_inf_annual_bps: u32,
    /// `qbind_monetary_r_target_annual_bps`.
    pub r_target_annual_bps: u32,
    /// `qbind_monetary_fee_coverage_ratio_bps`.
    pub fee_coverage_ratio_bps: u32,
    /// `qbind_monetary_phase_recommendation`: 0 Stay, 1 Advance.
    pub phase_recommendation: u8,
    /// `qbind_monetary_mode`: 0 Off, 1 Shadow, 2 Active.
    pub mode: u8,
}

impl MonetaryGauges {
    /// The gauges for `state` under `mode`.
    #[must_use]
    pub fn from_state(state: &MonetaryEpochState, mode: MonetaryMode) -> MonetaryGauges {
        MonetaryGauges {
            phase: state.phase as u8,
            r_inf_annual_bps: state.r_inf_annual_bps,
            r_target_annual_bps: state.r_target_annual_bps,
            fee_coverage_ratio_bps: state.fee_coverage_bps,
            phase_recommendation: u8::from(state.phase_recommendation),
            mode: mode.gauge(),
        }
    }
}
