//! The state commitment (DESIGN "State commitment"; docs/execution.md "State
//! root").
//!
//! The account set is committed to by an *additive multiset hash* in the
//! LtHash family: every non-empty account `(id, nonce, balance)` maps to an
//! element of the group `(Z/2^64)^32` (2,048 bits) by expanding
//! `id ‖ nonce BE ‖ balance BE` with BLAKE3's extendable output in key
//! derivation mode (context [`LEAF_CONTEXT`]) to 256 bytes (32 big-endian
//! `u64` lanes); the accumulator is the lane-wise wrapping sum over all
//! accounts. Changing one account subtracts its old element and adds its new
//! one, so a block costs two expansions per changed account, whatever the
//! number of accounts, and the result does not depend on the order in which
//! changes are applied (Stage B may hash in parallel).
//!
//! The state root is `SHA3-256("QBIND:STATE_ROOT:v1" ‖ 32 lanes BE ‖
//! account count u64 BE ‖ minted u128 BE ‖ burned u128 BE [‖ monetary])`,
//! where `monetary` ([`monetary_digest`]) commits to the monetary engine's
//! consensus state (its latest epoch state and the fees of the current
//! epoch) and is appended only when the engine has written any (it is zero
//! on chains without it, whose roots are unchanged by its introduction).
//!
//! What it is: a binding commitment to the *set* of account records, under
//! the conjectured hardness of finding a non-trivial small-coefficient
//! relation among BLAKE3 outputs in `(Z/2^64)^32`. What it is not: it gives
//! no inclusion or exclusion proofs (there is no path from an account to
//! the root), so light clients cannot use it; see docs/execution.md.

use super::state::{Account, AccountChange};
use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::types::{AccountId, Hash32};

/// Number of 64-bit lanes of the accumulator.
pub const ACCUMULATOR_LANES: usize = 32;

/// BLAKE3 key-derivation context of [`leaf_element`] (version 2 of the
/// leaf; version 1 was a SHAKE256 expansion, about 4× slower).
pub const LEAF_CONTEXT: &str = "QBIND 2026-12-05 state commitment account leaf v2";
const ROOT_TAG: &[u8] = b"QBIND:STATE_ROOT:v1";

/// A lane-wise sum of account elements in `(Z/2^64)^32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccountAccumulator(pub [u64; ACCUMULATOR_LANES]);

impl Default for AccountAccumulator {
    fn default() -> Self {
        AccountAccumulator([0; ACCUMULATOR_LANES])
    }
}

/// The context key of [`LEAF_CONTEXT`] (BLAKE3 hashes a key-derivation
/// context into a key once; every leaf starts from it, which is the same
/// function as `Hasher::new_derive_key(LEAF_CONTEXT)` without re-hashing or
/// copying a whole hasher per leaf).
static LEAF_CONTEXT_KEY: std::sync::LazyLock<blake3::hazmat::ContextKey> =
    std::sync::LazyLock::new(|| blake3::hazmat::hash_derive_key_context(LEAF_CONTEXT));

/// Length of the key material of [`leaf_element`]: id, nonce, balance.
const LEAF_INPUT_BYTES: usize = 32 + 8 + 16;

/// The group element of one account record: the first 256 bytes of
/// BLAKE3's extendable output in key-derivation mode with context
/// [`LEAF_CONTEXT`] and key material `id ‖ nonce u64 BE ‖ balance u128 BE`
/// (56 bytes), read as 32 big-endian `u64` lanes.
///
/// BLAKE3 (the `blake3` crate, SIMD chosen at run time) produces the four
/// 64-byte output blocks in parallel; a block's commitment measured
/// 4.2–4.4× faster than with a SHAKE256 expansion of the same size
/// (docs/benchmarks.md, Execution, runs I–K).
#[must_use]
pub fn leaf_element(id: &AccountId, account: &Account) -> [u64; ACCUMULATOR_LANES] {
    let mut input = [0u8; LEAF_INPUT_BYTES];
    input[..32].copy_from_slice(&id.0);
    input[32..40].copy_from_slice(&account.nonce.to_be_bytes());
    input[40..].copy_from_slice(&account.balance.to_be_bytes());
    let mut hasher =
        <blake3::Hasher as blake3::hazmat::HasherExt>::new_from_context_key(&LEAF_CONTEXT_KEY);
    hasher.update(&input);
    let mut bytes = [0u8; ACCUMULATOR_LANES * 8];
    hasher.finalize_xof().fill(&mut bytes);
    let mut lanes = [0u64; ACCUMULATOR_LANES];
    for (lane, chunk) in lanes.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *lane = u64::from_be_bytes(b);
    }
    lanes
}

impl AccountAccumulator {
    /// Add one element.
    pub fn add(&mut self, element: &[u64; ACCUMULATOR_LANES]) {
        for (a, e) in self.0.iter_mut().zip(element) {
            *a = a.wrapping_add(*e);
        }
    }

    /// Subtract one element.
    pub fn sub(&mut self, element: &[u64; ACCUMULATOR_LANES]) {
        for (a, e) in self.0.iter_mut().zip(element) {
            *a = a.wrapping_sub(*e);
        }
    }
}

/// The effect of a set of account changes on the commitment. Deltas combine
/// associatively and commutatively, so they may be computed in any grouping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CommitmentDelta {
    /// Sum of new elements minus sum of old elements.
    pub lanes: AccountAccumulator,
    /// Accounts that became non-empty.
    pub created: u64,
    /// Accounts that became empty.
    pub emptied: u64,
}

impl CommitmentDelta {
    /// The delta of `changes`, computed on this thread.
    #[must_use]
    pub fn of(changes: &[AccountChange]) -> CommitmentDelta {
        let mut delta = CommitmentDelta::default();
        for change in changes {
            delta.push(change);
        }
        delta
    }

    /// Account for one change.
    pub fn push(&mut self, change: &AccountChange) {
        if change.before == change.after {
            return;
        }
        if !change.before.is_empty() {
            self.lanes.sub(&leaf_element(&change.id, &change.before));
        }
        self.push_new(change);
    }

    /// Account for one change's *new* value only: add its element (if the
    /// account is non-empty after) and count the account as created or
    /// emptied. For callers that subtract the old elements elsewhere (Stage
    /// B hashes them while a block runs); an unchanged account then adds
    /// back exactly the element subtracted for it.
    pub fn push_new(&mut self, change: &AccountChange) {
        if !change.after.is_empty() {
            self.lanes.add(&leaf_element(&change.id, &change.after));
        }
        match (change.before.is_empty(), change.after.is_empty()) {
            (true, false) => self.created += 1,
            (false, true) => self.emptied += 1,
            _ => {}
        }
    }

    /// Combine two deltas.
    #[must_use]
    pub fn combine(mut self, other: &CommitmentDelta) -> CommitmentDelta {
        self.lanes.add(&other.lanes.0);
        self.created = self.created.wrapping_add(other.created);
        self.emptied = self.emptied.wrapping_add(other.emptied);
        self
    }
}

/// Everything the state root commits to besides the account records'
/// contents: the accumulator, the number of non-empty accounts, all units
/// ever created (genesis plus issuance) and all units ever burned. Supply is
/// conserved: the sum of balances always equals `minted - burned`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct StateSummary {
    /// Sum of the elements of all non-empty accounts.
    pub accumulator: AccountAccumulator,
    /// Number of non-empty accounts.
    pub accounts: u64,
    /// Genesis supply plus all issuance.
    pub minted: u128,
    /// All fees burned.
    pub burned: u128,
    /// [`monetary_digest`] of the monetary engine's consensus records
    /// (zero while the engine has written none).
    pub monetary: Hash32,
}

/// Domain tag of [`monetary_digest`].
const MONETARY_TAG: &[u8] = b"QBIND:MONETARY_STATE:v1";

/// The commitment to the monetary engine's consensus state, which the next
/// epoch's issuance depends on: `SHA3-256("QBIND:MONETARY_STATE:v1" ‖
/// present u8 ‖ latest epoch state's encoding ‖ epoch fees u128 BE)`, where
/// `latest` is the value under `crate::monetary::MONETARY_STATE_KEY` (absent
/// before the first epoch boundary: `present` 0 and no bytes) and
/// `epoch_fees` the value under `crate::schema::EPOCH_FEES_KEY`. The
/// per-epoch history records are not part of it: execution never reads
/// them.
#[must_use]
pub fn monetary_digest(latest: Option<&[u8]>, epoch_fees: u128) -> Hash32 {
    let mut bytes = MONETARY_TAG.to_vec();
    match latest {
        Some(state) => {
            bytes.push(1);
            bytes.extend_from_slice(state);
        }
        None => bytes.push(0),
    }
    bytes.extend_from_slice(&epoch_fees.to_be_bytes());
    Hash32::digest(&bytes)
}

impl StateSummary {
    /// The state root.
    #[must_use]
    pub fn root(&self) -> Hash32 {
        let mut bytes = Vec::with_capacity(ROOT_TAG.len() + 8 * ACCUMULATOR_LANES + 8 + 64);
        bytes.extend_from_slice(ROOT_TAG);
        for lane in &self.accumulator.0 {
            bytes.extend_from_slice(&lane.to_be_bytes());
        }
        bytes.extend_from_slice(&self.accounts.to_be_bytes());
        bytes.extend_from_slice(&self.minted.to_be_bytes());
        bytes.extend_from_slice(&self.burned.to_be_bytes());
        if self.monetary != Hash32::ZERO {
            bytes.extend_from_slice(self.monetary.as_bytes());
        }
        Hash32::digest(&bytes)
    }

    /// `self` with `delta` applied; `None` if the account count would leave
    /// `u64` (only possible with a corrupt summary).
    #[must_use]
    pub fn with_delta(&self, delta: &CommitmentDelta) -> Option<StateSummary> {
        let mut out = *self;
        out.accumulator.add(&delta.lanes.0);
        out.accounts = out
            .accounts
            .checked_add(delta.created)?
            .checked_sub(delta.emptied)?;
        Some(out)
    }
}

impl Encode for StateSummary {
    fn encode_to(&self, out: &mut Vec<u8>) {
        for lane in &self.accumulator.0 {
            lane.encode_to(out);
        }
        self.accounts.encode_to(out);
        self.minted.encode_to(out);
        self.burned.encode_to(out);
        self.monetary.encode_to(out);
    }
}

impl Decode for StateSummary {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut lanes = [0u64; ACCUMULATOR_LANES];
        for lane in &mut lanes {
            *lane = r.u64()?;
        }
        Ok(StateSummary {
            accumulator: AccountAccumulator(lanes),
            accounts: r.u64()?,
            minted: r.u128()?,
            burned: r.u128()?,
            monetary: Hash32::decode_from(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: u8, before: (u64, u128), after: (u64, u128)) -> AccountChange {
        AccountChange {
            id: AccountId([id; 32]),
            before: Account {
                nonce: before.0,
                balance: before.1,
            },
            after: Account {
                nonce: after.0,
                balance: after.1,
            },
        }
    }

    #[test]
    fn deltas_are_order_independent_and_invertible() {
        let a = change(1, (0, 0), (0, 10));
        let b = change(2, (0, 0), (3, 7));
        let c = change(1, (0, 10), (1, 4));
        let ab = CommitmentDelta::of(&[a, b, c]);
        let ba = CommitmentDelta::of(&[c, b]).combine(&CommitmentDelta::of(&[a]));
        assert_eq!(ab, ba);
        let undo = CommitmentDelta::of(&[change(1, (1, 4), (0, 0)), change(2, (3, 7), (0, 0))]);
        let zero = StateSummary::default()
            .with_delta(&ab)
            .and_then(|s| s.with_delta(&undo))
            .unwrap();
        assert_eq!(zero, StateSummary::default());
    }

    /// The `blake3` crate's key-derivation XOF against the official BLAKE3
    /// test vector (BLAKE3-team/BLAKE3 test_vectors.json, input length 1,
    /// extended output of 131 bytes): the mode the leaf relies on.
    #[test]
    fn blake3_derive_key_xof_matches_the_official_vector() {
        let mut h =
            blake3::Hasher::new_derive_key("BLAKE3 2019-12-27 16:29:52 test vectors context");
        h.update(&[0]);
        let mut out = [0u8; 131];
        h.finalize_xof().fill(&mut out);
        assert_eq!(
            hex::encode(out),
            "b3e2e340a117a499c6cf2398a19ee0d29cca2bb7404c73063382693bf66cb06c\
             5827b91bf889b6b97c5477f535361caefca0b5d8c4746441c57617111933158950\
             670f9aa8a05d791daae10ac683cbef8faf897c84e6114a59d2173c3f417023a35d\
             6983f2c7dfa57e7fc559ad751dbfb9ffab39c2ef8c4aafebc9ae973a64f0c76551"
        );
    }

    #[test]
    fn leaf_element_is_blake3_derive_key_of_the_documented_input() {
        for (id, nonce, balance) in [
            (0u8, 0u64, 0u128),
            (7, 3, 1_000),
            (255, u64::MAX, u128::MAX),
        ] {
            let account = Account { nonce, balance };
            let mut material = Vec::new();
            material.extend_from_slice(&[id; 32]);
            material.extend_from_slice(&nonce.to_be_bytes());
            material.extend_from_slice(&balance.to_be_bytes());
            let mut h = blake3::Hasher::new_derive_key(LEAF_CONTEXT);
            h.update(&material);
            let mut bytes = [0u8; ACCUMULATOR_LANES * 8];
            h.finalize_xof().fill(&mut bytes);
            // The first 32 bytes of the XOF are the default-length output.
            assert_eq!(bytes[..32], blake3::derive_key(LEAF_CONTEXT, &material));
            let lanes = leaf_element(&AccountId([id; 32]), &account);
            for (lane, chunk) in lanes.iter().zip(bytes.chunks_exact(8)) {
                assert_eq!(lane.to_be_bytes(), chunk);
            }
        }
    }

    /// Golden element: changing the construction changes every state root,
    /// so it must be deliberate (bump [`LEAF_CONTEXT`] and the snapshot
    /// format version, regenerate the goldens).
    #[test]
    fn leaf_element_golden() {
        let lanes = leaf_element(
            &AccountId([0x11; 32]),
            &Account {
                nonce: 5,
                balance: 1_000_000,
            },
        );
        let hex: String = lanes.iter().take(4).map(|l| format!("{l:016x}")).collect();
        assert_eq!(
            hex,
            "60321281d9ff0b2fdc5339ce79b798c35add5191c2a8a09afc9b6e4d848f61dd"
        );
    }

    #[test]
    fn summary_round_trips() {
        let s = StateSummary::default()
            .with_delta(&CommitmentDelta::of(&[change(5, (0, 0), (1, 1))]))
            .unwrap();
        assert_eq!(StateSummary::from_bytes(&s.to_bytes()), Ok(s));
        assert_eq!(s.to_bytes().len(), 8 * ACCUMULATOR_LANES + 8 + 32 + 32);
    }
}
