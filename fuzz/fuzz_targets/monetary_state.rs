//! `MonetaryEpochState::from_bytes` (the monetary state a node reads back
//! from its store) must never panic; whatever it accepts is internally
//! consistent (parts add up to the issuance) and re-encodes to exactly the
//! input bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_core::codec::{Decode, Encode};
use qbind_core::monetary::MonetaryEpochState;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = MonetaryEpochState::from_bytes(data) {
        assert_eq!(state.to_bytes(), data, "non-canonical encoding accepted");
        let parts =
            state.to_validators + state.to_treasury + state.to_insurance + state.to_community;
        assert_eq!(parts, state.issuance, "inconsistent split accepted");
    }
});
