//! `qbind_net::record::RecordOpener::open` on arbitrary frame bodies (first
//! byte selects the suite) must never panic; forged records are refused.
//! A record sealed by the matching sealer must open to the same payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_net::record::{CipherSuite, RecordOpener, RecordSealer};
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let suite = if sel & 1 == 0 {
        CipherSuite::Aes256Gcm
    } else {
        CipherSuite::ChaCha20Poly1305
    };
    let key = Zeroizing::new([7u8; 32]);
    let mut opener = RecordOpener::new(suite, key.clone(), 4);
    // Random bytes essentially never authenticate.
    let _ = opener.open(rest);
    // Round trip of the input as a payload.
    let mut sealer = RecordSealer::new(suite, key.clone(), 4);
    let mut opener = RecordOpener::new(suite, key, 4);
    let mut out = Vec::new();
    sealer.seal_data(rest, &mut out).unwrap();
    let body = &out[4..];
    assert_eq!(opener.open(body).unwrap().unwrap(), rest);
});
