//! What the remote-signer daemon does with a node's `Sign` message before
//! any key is used: decode it (bounded), decode the slot it signs from the
//! signed bytes and the digest preimage (`qbind_signer::slot`), and run the
//! double-sign rules on an in-memory record. Any bytes must give a typed
//! refusal or a decision, never a panic; a request admitted once must be
//! admitted again unchanged (a retransmission), and the record must still
//! parse after it.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qbind_core::codec::Decode;
use qbind_core::traits::SignRequest;
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_signer::DoubleSignRecord;
use qbind_signer::remote::protocol::ClientMessage;
use qbind_signer::slot::decode_slot;

const ME: ValidatorId = ValidatorId(42);
const ENV: NetworkEnvironment = NetworkEnvironment::Mainnet;

fuzz_target!(|data: &[u8]| {
    let Ok(ClientMessage::Sign {
        kind,
        view,
        message,
        digest_preimage,
        ..
    }) = ClientMessage::from_bytes(data)
    else {
        return;
    };
    let request = SignRequest {
        kind,
        view,
        message,
        digest_preimage,
    };
    let _ = decode_slot(&request, ME);
    let mut record = DoubleSignRecord::empty(ME, ENV);
    if let Ok(changed) = record.admit(&request) {
        let again = record.admit(&request);
        assert!(
            matches!(again, Ok(false)),
            "a retransmission was not admitted unchanged: {changed} then {again:?}"
        );
        let json = record.to_json();
        let parsed = DoubleSignRecord::parse(&json, Path::new("fuzz"), ME, ENV)
            .expect("a record written by the guard parses");
        assert_eq!(parsed, record);
    }
});
