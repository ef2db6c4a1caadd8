//! `qbind_net::wire::PeerMessage::decode` (heartbeats, peer exchange and
//! payloads inside a channel) must never panic, and whatever it accepts must
//! re-encode to exactly the input bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_net::wire::PeerMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = PeerMessage::decode(data) {
        assert_eq!(m.encode(), data, "non-canonical encoding accepted");
    }
});
