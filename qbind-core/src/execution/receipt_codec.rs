//! The canonical encoding of a [`Receipt`] (docs/wire-format.md
//! "Receipt"), so that a node can keep receipts in its store.
//!
//! Layout: the status as its stable `u16` code ([`TxStatus::code`]), then
//! the fields of its reason in declaration order (`u64` or `u128`,
//! big-endian), then `gas_used: u64`, `fee: u128`, `burned: u128`,
//! `proposer_reward: u128`. An unknown code is refused.

use super::executor::{FailureReason, Receipt, RejectReason, TxStatus};
use crate::codec::{Decode, DecodeError, Encode, Reader};

/// The smallest encoding of a receipt (a success): code, gas and three fees.
pub const MIN_RECEIPT_BYTES: usize = 2 + 8 + 3 * 16;

impl Encode for TxStatus {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code().to_be_bytes());
        match *self {
            TxStatus::Success
            | TxStatus::Failed(FailureReason::RecipientBalanceOverflow)
            | TxStatus::Rejected(
                RejectReason::PayloadVersionNotAllowed
                | RejectReason::MaxFeeOverflow
                | RejectReason::NonceExhausted
                | RejectReason::SystemTxRefused,
            ) => {}
            TxStatus::Failed(FailureReason::InsufficientBalance { balance, needed }) => {
                balance.encode_to(out);
                needed.encode_to(out);
            }
            TxStatus::Failed(FailureReason::OutOfGas {
                gas_limit,
                required,
            }) => {
                gas_limit.encode_to(out);
                required.encode_to(out);
            }
            TxStatus::Rejected(RejectReason::GasLimitBelowMinimum { gas_limit, minimum }) => {
                gas_limit.encode_to(out);
                minimum.encode_to(out);
            }
            TxStatus::Rejected(RejectReason::GasLimitBelowIntrinsic {
                gas_limit,
                intrinsic,
            }) => {
                gas_limit.encode_to(out);
                intrinsic.encode_to(out);
            }
            TxStatus::Rejected(RejectReason::BlockGasLimitExceeded {
                used,
                gas_limit,
                block_gas_limit,
            }) => {
                used.encode_to(out);
                gas_limit.encode_to(out);
                block_gas_limit.encode_to(out);
            }
            TxStatus::Rejected(RejectReason::BadNonce { expected, got }) => {
                expected.encode_to(out);
                got.encode_to(out);
            }
            TxStatus::Rejected(RejectReason::CannotPayMaxFee { balance, max_fee }) => {
                balance.encode_to(out);
                max_fee.encode_to(out);
            }
        }
    }
}

impl Decode for TxStatus {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let code = u16::from_be_bytes(r.array()?);
        Ok(match code {
            0 => TxStatus::Success,
            101 => TxStatus::Failed(FailureReason::InsufficientBalance {
                balance: r.u128()?,
                needed: r.u128()?,
            }),
            102 => TxStatus::Failed(FailureReason::OutOfGas {
                gas_limit: r.u64()?,
                required: r.u64()?,
            }),
            103 => TxStatus::Failed(FailureReason::RecipientBalanceOverflow),
            201 => TxStatus::Rejected(RejectReason::PayloadVersionNotAllowed),
            202 => TxStatus::Rejected(RejectReason::GasLimitBelowMinimum {
                gas_limit: r.u64()?,
                minimum: r.u64()?,
            }),
            203 => TxStatus::Rejected(RejectReason::GasLimitBelowIntrinsic {
                gas_limit: r.u64()?,
                intrinsic: r.u64()?,
            }),
            204 => TxStatus::Rejected(RejectReason::MaxFeeOverflow),
            205 => TxStatus::Rejected(RejectReason::BlockGasLimitExceeded {
                used: r.u64()?,
                gas_limit: r.u64()?,
                block_gas_limit: r.u64()?,
            }),
            206 => TxStatus::Rejected(RejectReason::BadNonce {
                expected: r.u64()?,
                got: r.u64()?,
            }),
            207 => TxStatus::Rejected(RejectReason::NonceExhausted),
            208 => TxStatus::Rejected(RejectReason::CannotPayMaxFee {
                balance: r.u128()?,
                max_fee: r.u128()?,
            }),
            209 => TxStatus::Rejected(RejectReason::SystemTxRefused),
            _ => {
                return Err(DecodeError::NonCanonical {
                    what: "receipt status code",
                });
            }
        })
    }
}

impl Encode for Receipt {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.status.encode_to(out);
        self.gas_used.encode_to(out);
        self.fee.encode_to(out);
        self.burned.encode_to(out);
        self.proposer_reward.encode_to(out);
    }
}

impl Decode for Receipt {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Receipt {
            status: TxStatus::decode_from(r)?,
            gas_used: r.u64()?,
            fee: r.u128()?,
            burned: r.u128()?,
            proposer_reward: r.u128()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_status() -> Vec<TxStatus> {
        vec![
            TxStatus::Success,
            TxStatus::Failed(FailureReason::InsufficientBalance {
                balance: 1,
                needed: u128::MAX,
            }),
            TxStatus::Failed(FailureReason::OutOfGas {
                gas_limit: 2,
                required: 3,
            }),
            TxStatus::Failed(FailureReason::RecipientBalanceOverflow),
            TxStatus::Rejected(RejectReason::PayloadVersionNotAllowed),
            TxStatus::Rejected(RejectReason::GasLimitBelowMinimum {
                gas_limit: 4,
                minimum: 5,
            }),
            TxStatus::Rejected(RejectReason::GasLimitBelowIntrinsic {
                gas_limit: 6,
                intrinsic: 7,
            }),
            TxStatus::Rejected(RejectReason::MaxFeeOverflow),
            TxStatus::Rejected(RejectReason::BlockGasLimitExceeded {
                used: 8,
                gas_limit: 9,
                block_gas_limit: 10,
            }),
            TxStatus::Rejected(RejectReason::BadNonce {
                expected: 11,
                got: 12,
            }),
            TxStatus::Rejected(RejectReason::NonceExhausted),
            TxStatus::Rejected(RejectReason::CannotPayMaxFee {
                balance: 13,
                max_fee: 14,
            }),
            TxStatus::Rejected(RejectReason::SystemTxRefused),
        ]
    }

    #[test]
    fn every_status_round_trips_and_no_shorter_input_decodes() {
        for status in every_status() {
            let receipt = Receipt {
                status,
                gas_used: 21_000,
                fee: 42,
                burned: 21,
                proposer_reward: 21,
            };
            let bytes = receipt.to_bytes();
            assert!(bytes.len() >= MIN_RECEIPT_BYTES);
            assert_eq!(&bytes[..2], &status.code().to_be_bytes());
            assert_eq!(Receipt::from_bytes(&bytes), Ok(receipt), "{status:?}");
            for cut in 0..bytes.len() {
                assert!(
                    Receipt::from_bytes(&bytes[..cut]).is_err(),
                    "{status:?} cut at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Receipt::from_bytes(&longer).is_err());
        }
    }

    #[test]
    fn unknown_status_codes_are_refused() {
        let known: Vec<u16> = every_status().iter().map(TxStatus::code).collect();
        let mut bytes = Receipt {
            status: TxStatus::Success,
            gas_used: 0,
            fee: 0,
            burned: 0,
            proposer_reward: 0,
        }
        .to_bytes();
        for code in 0..=u16::MAX {
            if known.contains(&code) {
                continue;
            }
            bytes[..2].copy_from_slice(&code.to_be_bytes());
            assert_eq!(
                Receipt::from_bytes(&bytes),
                Err(DecodeError::NonCanonical {
                    what: "receipt status code"
                }),
                "code {code}"
            );
        }
    }
}
