//! Upgrade envelopes and council files (`qbind_node_ref::upgrade`, read by
//! `qbind-envelope`): no panic on any bytes; an envelope that loads has a
//! digest and signing bytes, and its own JSON loads again with the same
//! digest; a council that loads has seven distinct members.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qbind_node_ref::upgrade::council::{COUNCIL_SIZE, Council};
use qbind_node_ref::upgrade::envelope::Envelope;

fuzz_target!(|data: &[u8]| {
    let (kind, bytes) = match data.split_first() {
        Some((k, rest)) => (*k, rest),
        None => return,
    };
    let path = Path::new("fuzz.json");
    if kind % 2 == 0 {
        if let Ok(envelope) = Envelope::from_json_bytes(path, bytes) {
            let digest = envelope.digest().expect("a loaded envelope has a digest");
            assert!(envelope.signing_preimage().is_ok(), "no signing bytes");
            let again = serde_json::to_vec(&envelope).expect("serialise");
            let back = Envelope::from_json_bytes(path, &again).expect("its own JSON loads");
            assert_eq!(back.digest().expect("digest"), digest, "digest changed");
        }
    } else if let Ok(council) = Council::from_json_bytes(path, bytes) {
        assert_eq!(council.len(), COUNCIL_SIZE, "a loaded council has seven members");
    }
});
