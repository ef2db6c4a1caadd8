//! Remote-signer protocol messages (what the daemon reads from a node and
//! the node reads from the daemon) must never panic on any bytes, and
//! whatever decodes must re-encode to exactly the input bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_core::codec::{Decode, Encode};
use qbind_signer::remote::protocol::{ClientMessage, DaemonMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ClientMessage::from_bytes(data) {
        assert_eq!(m.to_bytes(), data, "non-canonical client message accepted");
    }
    if let Ok(m) = DaemonMessage::from_bytes(data) {
        assert_eq!(m.to_bytes(), data, "non-canonical daemon message accepted");
    }
});
