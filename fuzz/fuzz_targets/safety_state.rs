//! `SafetyState::from_bytes` (what a validator reads back from disk after a
//! restart) must never panic, and whatever it accepts must re-encode to
//! exactly the input bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_core::codec::{Decode, Encode};
use qbind_core::consensus::SafetyState;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = SafetyState::from_bytes(data) {
        assert_eq!(state.to_bytes(), data, "non-canonical encoding accepted");
    }
});
