//! The gas schedule and the execution configuration (spec §3.1; DESIGN
//! "Gas: base 21,000; per account read 2,600; per account write 5,000; per
//! payload byte 16; block gas limit 30,000,000; minimum gas limit 21,000").
//!
//! A transfer reads and writes two accounts (sender and recipient), so it
//! costs `base + 2·read + 2·write + 16·payload bytes` = 37,352 gas with a
//! 72-byte payload. A transfer that fails after its checks (insufficient
//! balance for the amount) touched only the sender: it uses the *intrinsic*
//! gas `base + read + write + 16·payload bytes` = 29,752.

use super::fees::{FeeSplit, FeeSplitError};

/// Gas prices of the VM v0 operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GasSchedule {
    /// Charged once per transaction.
    pub base_tx: u64,
    /// Charged per account read.
    pub per_account_read: u64,
    /// Charged per account write.
    pub per_account_write: u64,
    /// Charged per byte of the transfer payload.
    pub per_payload_byte: u64,
}

impl GasSchedule {
    /// The MainNet v0 schedule.
    pub const MAINNET: GasSchedule = GasSchedule {
        base_tx: 21_000,
        per_account_read: 2_600,
        per_account_write: 5_000,
        per_payload_byte: 16,
    };

    /// Gas of a transaction that only reads and writes its sender (the
    /// nonce and the fee), for a payload of `payload_len` bytes.
    #[must_use]
    pub fn intrinsic_gas(&self, payload_len: usize) -> u64 {
        self.base_tx
            .saturating_add(self.per_account_read)
            .saturating_add(self.per_account_write)
            .saturating_add(self.per_payload_byte.saturating_mul(payload_len as u64))
    }

    /// Gas of a complete transfer: the intrinsic gas plus reading and writing
    /// the recipient.
    #[must_use]
    pub fn transfer_gas(&self, payload_len: usize) -> u64 {
        self.intrinsic_gas(payload_len)
            .saturating_add(self.per_account_read)
            .saturating_add(self.per_account_write)
    }
}

/// The smallest gas limit a transaction may declare (spec §3.1, not
/// adjustable).
pub const MINIMUM_GAS_LIMIT: u64 = 21_000;
/// The default block gas limit (spec §3.1).
pub const BLOCK_GAS_LIMIT_DEFAULT: u64 = 30_000_000;

/// Which payload formats a network accepts (spec §2.1, §2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecutionProfile {
    /// VM v0 with gas: only [`super::TransferPayloadV1`] (MainNet, TestNet).
    VmV0,
    /// VM v0 that also accepts the 48-byte legacy payload (DevNet only): a
    /// legacy transfer is charged its full transfer gas at price 0, i.e. it
    /// is free but still counts against the block gas limit.
    VmV0WithLegacyPayloads,
}

/// Why an [`ExecutionConfig`] is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionConfigError {
    /// The fee split is invalid.
    #[error(transparent)]
    FeeSplit(#[from] FeeSplitError),
    /// The block gas limit cannot hold even one minimal transaction.
    #[error("block gas limit {block_gas_limit} is below the minimum gas limit {minimum}")]
    BlockGasLimitTooSmall {
        /// The configured limit.
        block_gas_limit: u64,
        /// [`MINIMUM_GAS_LIMIT`].
        minimum: u64,
    },
    /// MainNet must not accept v0 payloads (spec §2.6 item 4).
    #[error("MainNet forbids the legacy 48-byte payload")]
    LegacyPayloadsOnMainnet,
}

/// Everything that parameterises block execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExecutionConfig {
    /// Accepted payload formats.
    pub profile: ExecutionProfile,
    /// Gas prices.
    pub gas: GasSchedule,
    /// The most gas the included transactions of one block may use; a
    /// transaction is included only if its gas limit fits in what is left.
    pub block_gas_limit: u64,
    /// How fees are divided.
    pub fee_split: FeeSplit,
}

impl ExecutionConfig {
    /// The MainNet v0 configuration: V1 payloads only, the MainNet schedule,
    /// 30,000,000 block gas, 50 % burn / 50 % proposer.
    #[must_use]
    pub fn mainnet() -> ExecutionConfig {
        ExecutionConfig {
            profile: ExecutionProfile::VmV0,
            gas: GasSchedule::MAINNET,
            block_gas_limit: BLOCK_GAS_LIMIT_DEFAULT,
            fee_split: FeeSplit::MAINNET,
        }
    }

    /// The DevNet configuration: as MainNet, but legacy payloads accepted.
    #[must_use]
    pub fn devnet() -> ExecutionConfig {
        ExecutionConfig {
            profile: ExecutionProfile::VmV0WithLegacyPayloads,
            ..ExecutionConfig::mainnet()
        }
    }

    /// Check the configuration; `mainnet` adds the MainNet-only invariants.
    pub fn validate(&self, mainnet: bool) -> Result<(), ExecutionConfigError> {
        self.fee_split.validate()?;
        if self.block_gas_limit < MINIMUM_GAS_LIMIT {
            return Err(ExecutionConfigError::BlockGasLimitTooSmall {
                block_gas_limit: self.block_gas_limit,
                minimum: MINIMUM_GAS_LIMIT,
            });
        }
        if mainnet && self.profile != ExecutionProfile::VmV0 {
            return Err(ExecutionConfigError::LegacyPayloadsOnMainnet);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_gas_matches_the_schedule() {
        let g = GasSchedule::MAINNET;
        assert_eq!(g.intrinsic_gas(72), 21_000 + 2_600 + 5_000 + 72 * 16);
        assert_eq!(g.transfer_gas(72), 37_352);
        assert_eq!(g.transfer_gas(48), 36_968);
    }

    #[test]
    fn mainnet_invariants_are_enforced() {
        assert_eq!(ExecutionConfig::mainnet().validate(true), Ok(()));
        assert_eq!(
            ExecutionConfig::devnet().validate(true),
            Err(ExecutionConfigError::LegacyPayloadsOnMainnet)
        );
        assert_eq!(ExecutionConfig::devnet().validate(false), Ok(()));
        let small = ExecutionConfig {
            block_gas_limit: 20_999,
            ..ExecutionConfig::mainnet()
        };
        assert!(matches!(
            small.validate(false),
            Err(ExecutionConfigError::BlockGasLimitTooSmall { .. })
        ));
    }
}
