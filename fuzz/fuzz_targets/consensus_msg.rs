//! `ConsensusMsg::decode_message` with default limits must never panic, and
//! whatever it accepts must re-encode to exactly the input bytes (one valid
//! encoding per value).

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_core::codec::{CodecLimits, Encode};
use qbind_core::consensus::ConsensusMsg;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = ConsensusMsg::decode_message(data, &CodecLimits::default()) {
        assert_eq!(msg.to_bytes(), data, "non-canonical encoding accepted");
    }
});
