//! `Block::from_bytes` (blocks arrive inside proposals and sync responses,
//! and are read back from storage) must never panic, and whatever it accepts
//! must re-encode to exactly the input bytes with the id of its header.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_core::codec::{Decode, Encode};
use qbind_core::consensus::Block;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = Block::from_bytes(data) {
        assert_eq!(block.to_bytes(), data, "non-canonical encoding accepted");
        assert_eq!(block.id(), block.header().id());
    }
});
