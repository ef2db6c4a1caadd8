//! `qbind_net::handshake::messages::ClientHello::decode` (handshake message from the
//! network) must never panic, and whatever it accepts must re-encode to
//! exactly the input bytes (one encoding per message).

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_net::handshake::messages::ClientHello;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ClientHello::decode(data) {
        assert_eq!(m.encode(), data, "non-canonical encoding accepted");
    }
});
