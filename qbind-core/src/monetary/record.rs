//! The monetary state as consensus data: its canonical encoding, where it is
//! stored, and how the validators' share of issuance is divided by stake.
//!
//! ## Encoding of [`MonetaryEpochState`] (122 bytes, all integers big-endian)
//!
//! | offset | field | type |
//! |---:|---|---|
//! | 0 | epoch | u64 |
//! | 8 | phase (0 Bootstrap, 1 Transition, 2 Mature) | u8 |
//! | 9 | ema_fees_per_epoch | u128 |
//! | 25 | fee_coverage_bps (≤ 10,000) | u32 |
//! | 29 | stake_ratio_bps (≤ 10,000) | u32 |
//! | 33 | r_target_annual_bps (≤ 10,000) | u32 |
//! | 37 | r_inf_annual_bps (≤ 10,000) | u32 |
//! | 41 | phase_recommendation (0 or 1) | u8 |
//! | 42 | issuance | u128 |
//! | 58 | to_validators | u128 |
//! | 74 | to_treasury | u128 |
//! | 90 | to_insurance | u128 |
//! | 106 | to_community | u128 |
//!
//! Total: [`MONETARY_STATE_BYTES`] = 122. A decoder refuses any other length, an
//! unknown phase or flag byte, a ratio above 10,000 bps and a split whose
//! four parts do not add up to the issuance: a stored or received state that
//! decodes is internally consistent.
//!
//! ## Storage
//! The latest state lives in [`Namespace::Monetary`] under
//! [`MONETARY_STATE_KEY`], and each epoch's state under
//! [`epoch_key`]`(epoch)`; [`MonetaryEpochState::write_to`] adds both to a
//! write batch so a node commits them atomically with the block that closes
//! the epoch.
//!
//! ## Validators' share
//! [`split_by_stake`] divides `to_validators` in proportion to stake with
//! the largest-remainder method: everyone gets the floor of their exact
//! share, and the units left over (fewer than the number of validators) go
//! one each to the largest fractional remainders, ties broken by account id.
//! The parts always add up to the total exactly, each is within one unit of
//! the exact proportion, and the result does not depend on input order.

use super::MonetaryPhase;
use super::engine::MonetaryEpochState;
use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::traits::{Namespace, StateBackend, StorageError, WriteBatch};
use crate::types::AccountId;

/// Length of an encoded [`MonetaryEpochState`].
pub const MONETARY_STATE_BYTES: usize = 8 + 1 + 16 + 4 * 4 + 1 + 16 * 5;
/// Key of the latest state in [`Namespace::Monetary`].
pub const MONETARY_STATE_KEY: &[u8] = b"latest";

/// Key of epoch `epoch`'s state in [`Namespace::Monetary`]: `"e" || u64 BE`.
#[must_use]
pub fn epoch_key(epoch: u64) -> Vec<u8> {
    let mut k = b"e".to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

const BPS_MAX: u32 = 10_000;

impl Encode for MonetaryEpochState {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.epoch.encode_to(out);
        out.push(self.phase as u8);
        self.ema_fees_per_epoch.encode_to(out);
        self.fee_coverage_bps.encode_to(out);
        self.stake_ratio_bps.encode_to(out);
        self.r_target_annual_bps.encode_to(out);
        self.r_inf_annual_bps.encode_to(out);
        out.push(u8::from(self.phase_recommendation));
        self.issuance.encode_to(out);
        self.to_validators.encode_to(out);
        self.to_treasury.encode_to(out);
        self.to_insurance.encode_to(out);
        self.to_community.encode_to(out);
    }
}

fn bps(r: &mut Reader<'_>, what: &'static str) -> Result<u32, DecodeError> {
    let v = r.u32()?;
    if v > BPS_MAX {
        return Err(DecodeError::NonCanonical { what });
    }
    Ok(v)
}

impl Decode for MonetaryEpochState {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let epoch = r.u64()?;
        let phase = match r.u8()? {
            0 => MonetaryPhase::Bootstrap,
            1 => MonetaryPhase::Transition,
            2 => MonetaryPhase::Mature,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "monetary phase",
                    tag,
                });
            }
        };
        let ema_fees_per_epoch = r.u128()?;
        let fee_coverage_bps = bps(r, "fee coverage above 10,000 bps")?;
        let stake_ratio_bps = bps(r, "stake ratio above 10,000 bps")?;
        let r_target_annual_bps = bps(r, "target rate above 10,000 bps")?;
        let r_inf_annual_bps = bps(r, "inflation rate above 10,000 bps")?;
        let phase_recommendation = match r.u8()? {
            0 => false,
            1 => true,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "phase recommendation",
                    tag,
                });
            }
        };
        let state = MonetaryEpochState {
            epoch,
            phase,
            ema_fees_per_epoch,
            fee_coverage_bps,
            stake_ratio_bps,
            r_target_annual_bps,
            r_inf_annual_bps,
            phase_recommendation,
            issuance: r.u128()?,
            to_validators: r.u128()?,
            to_treasury: r.u128()?,
            to_insurance: r.u128()?,
            to_community: r.u128()?,
        };
        let parts = [
            state.to_validators,
            state.to_treasury,
            state.to_insurance,
            state.to_community,
        ]
        .into_iter()
        .try_fold(0u128, u128::checked_add);
        if parts != Some(state.issuance) {
            return Err(DecodeError::NonCanonical {
                what: "seigniorage parts do not add up to the issuance",
            });
        }
        Ok(state)
    }
}

impl MonetaryEpochState {
    /// Add this state to `batch` as the latest state and as its epoch's.
    pub fn write_to(&self, batch: &mut WriteBatch) {
        let bytes = self.to_bytes();
        batch.put(Namespace::Monetary, epoch_key(self.epoch), bytes.clone());
        batch.put(Namespace::Monetary, MONETARY_STATE_KEY.to_vec(), bytes);
    }

    /// The latest stored state (`None` before the first epoch boundary).
    pub fn load_latest<S: StateBackend + ?Sized>(
        store: &S,
    ) -> Result<Option<MonetaryEpochState>, StorageError> {
        Self::load_key(store, MONETARY_STATE_KEY)
    }

    /// The stored state of `epoch`.
    pub fn load_epoch<S: StateBackend + ?Sized>(
        store: &S,
        epoch: u64,
    ) -> Result<Option<MonetaryEpochState>, StorageError> {
        Self::load_key(store, &epoch_key(epoch))
    }

    fn load_key<S: StateBackend + ?Sized>(
        store: &S,
        key: &[u8],
    ) -> Result<Option<MonetaryEpochState>, StorageError> {
        match store.get(Namespace::Monetary, key)? {
            None => Ok(None),
            Some(bytes) => MonetaryEpochState::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| StorageError::Corruption {
                    what: format!("monetary state: {e}"),
                }),
        }
    }
}

impl MonetaryEpochState {
    /// The balance credits in Active mode with the validators' part divided
    /// among `stakes` (reward account, stake) by [`split_by_stake`]; the
    /// treasury, insurance and community parts go to their accounts. If no
    /// validator has stake, the validators' part goes to `to.validators`.
    /// Nothing in Shadow or Off. Repeated accounts are merged; the result is
    /// sorted by account and its amounts add up to the issuance in Active.
    #[must_use]
    pub fn credits_by_stake(
        &self,
        mode: super::MonetaryMode,
        to: &super::SeigniorageRecipients,
        stakes: &[(AccountId, u64)],
    ) -> Vec<(AccountId, u128)> {
        if mode != super::MonetaryMode::Active {
            return Vec::new();
        }
        let mut out: std::collections::BTreeMap<AccountId, u128> =
            std::collections::BTreeMap::new();
        let mut add = |id: AccountId, amount: u128| {
            if amount > 0 {
                let slot = out.entry(id).or_insert(0);
                *slot = slot.saturating_add(amount);
            }
        };
        let shares = split_by_stake(self.to_validators, stakes);
        if shares.is_empty() {
            add(to.validators, self.to_validators);
        }
        for (id, amount) in shares {
            add(id, amount);
        }
        add(to.treasury, self.to_treasury);
        add(to.insurance, self.to_insurance);
        add(to.community, self.to_community);
        out.into_iter().collect()
    }
}

/// Divide `total` among `stakes` (account, stake) in proportion to stake by
/// the largest-remainder method (see the module documentation). Accounts
/// with zero stake get nothing and are left out; repeated accounts are
/// merged. With no positive stake at all the result is empty and nothing is
/// credited (the caller keeps `total` undistributed, e.g. in the pool).
#[must_use]
pub fn split_by_stake(total: u128, stakes: &[(AccountId, u64)]) -> Vec<(AccountId, u128)> {
    let mut merged: std::collections::BTreeMap<AccountId, u128> = std::collections::BTreeMap::new();
    for (id, stake) in stakes {
        if *stake > 0 {
            *merged.entry(*id).or_insert(0) += u128::from(*stake);
        }
    }
    // Each stake is below 2^64, so the sum of fewer than 2^64 of them fits.
    let sum = merged.values().fold(0u128, |a, s| a.saturating_add(*s));
    if sum == 0 || total == 0 {
        return Vec::new();
    }
    // floor(total · s / sum) and its remainder, without overflowing u128:
    // total = q·sum + r, so total·s/sum = q·s + r·s/sum (r < sum ≤ 2^70).
    let (q, r) = (total / sum, total % sum);
    let mut parts: Vec<(AccountId, u128, u128)> = merged
        .iter()
        .map(|(id, s)| {
            let (whole, frac) = mul_div(r, *s, sum);
            (*id, q.saturating_mul(*s).saturating_add(whole), frac)
        })
        .collect();
    let given = parts.iter().fold(0u128, |a, p| a.saturating_add(p.1));
    let mut left = total.saturating_sub(given);
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|a, b| {
        parts[*b]
            .2
            .cmp(&parts[*a].2)
            .then(parts[*a].0.cmp(&parts[*b].0))
    });
    for i in order {
        if left == 0 {
            break;
        }
        parts[i].1 += 1;
        left -= 1;
    }
    parts
        .into_iter()
        .filter(|p| p.1 > 0)
        .map(|(id, amount, _)| (id, amount))
        .collect()
}

/// `(a · b) / d` and `(a · b) % d` for `a < d`, `b ≤ d`, without overflow
/// (schoolbook on 64-bit halves of `b`).
fn mul_div(a: u128, b: u128, d: u128) -> (u128, u128) {
    // a < d and b ≤ d; d fits in u128. Compute with a 256-bit product.
    let (hi, lo) = mul_wide(a, b);
    div_wide(hi, lo, d)
}

fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    let mask = u128::from(u64::MAX);
    let (a1, a0) = (a >> 64, a & mask);
    let (b1, b0) = (b >> 64, b & mask);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 64) + (p01 & mask) + (p10 & mask);
    let lo = (p00 & mask) | (mid << 64);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (hi, lo)
}

/// (hi·2^128 + lo) / d and remainder, for a quotient that fits in u128
/// (guaranteed here because a < d). Bitwise long division: 256 steps.
fn div_wide(hi: u128, lo: u128, d: u128) -> (u128, u128) {
    let mut rem = hi % d;
    let mut quot = 0u128;
    for bit in (0..128).rev() {
        let carry = rem >> 127;
        rem = (rem << 1) | ((lo >> bit) & 1);
        quot <<= 1;
        if carry == 1 || rem >= d {
            rem = rem.wrapping_sub(d);
            quot |= 1;
        }
    }
    (quot, rem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_arithmetic_matches_small_cases() {
        for (a, b, d) in [(3u128, 7u128, 10u128), (0, 5, 9), (99, 100, 100), (1, 1, 2)] {
            assert_eq!(mul_div(a, b, d), ((a * b) / d, (a * b) % d));
        }
        let big = u128::MAX - 5;
        let (q, r) = mul_div(big - 1, big, big);
        assert_eq!((q, r), (big - 1, 0));
    }
}
