//! Hybrid fee distribution (spec §3.2): a fee is split in basis points between
//! burning and the block proposer. MainNet burns 5,000 bps and pays 5,000 bps
//! to the proposer; the parts must sum to 10,000.
//!
//! The burned part is rounded down and the proposer receives the remainder,
//! so `burned + proposer_reward == fee` exactly and no unit is created or
//! lost.

/// Basis points in one whole.
pub const BPS_DENOMINATOR: u16 = 10_000;

/// How a fee is divided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeeSplit {
    /// Share of each fee that is destroyed, in basis points.
    pub burn_bps: u16,
    /// Share of each fee credited to the proposer, in basis points.
    pub proposer_bps: u16,
}

/// Why a [`FeeSplit`] is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeeSplitError {
    /// The shares do not add up to 10,000 basis points.
    #[error("fee split {burn_bps} + {proposer_bps} bps does not sum to 10000")]
    DoesNotSumToWhole {
        /// Burn share.
        burn_bps: u16,
        /// Proposer share.
        proposer_bps: u16,
    },
}

/// One fee, divided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FeeParts {
    /// Destroyed.
    pub burned: u128,
    /// Owed to the proposer.
    pub proposer_reward: u128,
}

impl FeeSplit {
    /// MainNet: 50 % burned, 50 % to the proposer.
    pub const MAINNET: FeeSplit = FeeSplit {
        burn_bps: 5_000,
        proposer_bps: 5_000,
    };

    /// Check that the shares sum to 10,000 bps.
    pub fn validate(&self) -> Result<(), FeeSplitError> {
        if u32::from(self.burn_bps) + u32::from(self.proposer_bps) != u32::from(BPS_DENOMINATOR) {
            return Err(FeeSplitError::DoesNotSumToWhole {
                burn_bps: self.burn_bps,
                proposer_bps: self.proposer_bps,
            });
        }
        Ok(())
    }

    /// Divide `fee`. Never overflows: the burn share is computed as
    /// `q·bps + (r·bps)/10000` with `fee = q·10000 + r`. A `burn_bps` above
    /// 10,000 (an unvalidated split) is clamped to the whole fee.
    #[must_use]
    pub fn split(&self, fee: u128) -> FeeParts {
        let d = u128::from(BPS_DENOMINATOR);
        let bps = u128::from(self.burn_bps.min(BPS_DENOMINATOR));
        let burned = (fee / d) * bps + (fee % d) * bps / d;
        FeeParts {
            burned,
            proposer_reward: fee - burned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_exact_and_rounds_the_burn_down() {
        let s = FeeSplit::MAINNET;
        assert_eq!(
            s.split(7),
            FeeParts {
                burned: 3,
                proposer_reward: 4
            }
        );
        let max = s.split(u128::MAX);
        assert_eq!(max.burned + max.proposer_reward, u128::MAX);
        let thirds = FeeSplit {
            burn_bps: 3_333,
            proposer_bps: 6_667,
        };
        assert_eq!(thirds.validate(), Ok(()));
        assert_eq!(thirds.split(10_000).burned, 3_333);
    }

    #[test]
    fn splits_not_summing_to_a_whole_are_refused() {
        let bad = FeeSplit {
            burn_bps: 5_000,
            proposer_bps: 4_999,
        };
        assert!(bad.validate().is_err());
        assert_eq!(
            FeeSplit {
                burn_bps: 10_000,
                proposer_bps: 0
            }
            .validate(),
            Ok(())
        );
    }
}
