//! Key rotation events in the canonical codec (`qbind_core::key_rotation`):
//! no panic on any bytes, canonical re-encoding, and signature verification
//! of whatever decodes must not panic either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_core::codec::{Decode, Encode};
use qbind_core::crypto::PublicKey;
use qbind_core::key_rotation::{KeyRotationEvent, SignedKeyRotationEvent};
use qbind_core::types::NetworkEnvironment;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = KeyRotationEvent::from_bytes(data) {
        assert_eq!(ev.to_bytes(), data, "non-canonical event accepted");
        let _ = ev.check();
    }
    if let Ok(signed) = SignedKeyRotationEvent::from_bytes(data) {
        assert_eq!(
            signed.to_bytes(),
            data,
            "non-canonical signed event accepted"
        );
        if let Ok(pk) = PublicKey::from_bytes(&signed.event.old_key) {
            let _ = signed.verify(NetworkEnvironment::Mainnet, &pk);
        }
    }
});
