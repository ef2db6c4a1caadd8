//! The JSON documents qbind-signer reads from files: keystore files (public
//! parts), double-sign records and rotation events. Any bytes must give a
//! typed error or a value, never a panic.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_signer::DoubleSignRecord;
use qbind_signer::keystore;
use qbind_signer::rotation::RotationEventJson;

fuzz_target!(|data: &[u8]| {
    let _ = keystore::inspect_bytes(data);
    if let Ok(mut rec) = DoubleSignRecord::parse(
        data,
        Path::new("fuzz"),
        ValidatorId(42),
        NetworkEnvironment::Mainnet,
    ) {
        let copy = rec.clone();
        rec.merge(&copy);
        assert_eq!(rec, copy, "merging a record with itself changed it");
        let _ = rec.to_json();
    }
    if let Ok(doc) = serde_json::from_slice::<RotationEventJson>(data) {
        let _ = doc.to_signed();
    }
});
