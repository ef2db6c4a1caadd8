//! Receipt records in the API validator's store
//! (`qbind_node_ref::local::receipt_store`) and the receipt codec of
//! `qbind_core::execution::Receipt`: no panic on any bytes, and anything
//! that decodes re-encodes to exactly the same bytes (one encoding).

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_core::codec::{Decode, Encode};
use qbind_core::execution::Receipt;
use qbind_node_ref::local::receipt_store::{HeightRecord, TxRecord};

fuzz_target!(|data: &[u8]| {
    let (kind, bytes) = match data.split_first() {
        Some((k, rest)) => (*k, rest),
        None => return,
    };
    match kind % 3 {
        0 => {
            if let Ok(record) = TxRecord::from_bytes(bytes) {
                assert_eq!(record.to_bytes(), bytes, "one encoding");
            }
        }
        1 => {
            if let Ok(record) = HeightRecord::from_bytes(bytes) {
                assert_eq!(record.to_bytes(), bytes, "one encoding");
            }
        }
        _ => {
            if let Ok(receipt) = Receipt::from_bytes(bytes) {
                assert_eq!(receipt.to_bytes(), bytes, "one encoding");
            }
        }
    }
});
