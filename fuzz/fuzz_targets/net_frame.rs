//! `qbind_net::frame::decode_frame` must never panic or allocate beyond the
//! announced, bounded length; a decoded frame re-encodes to the bytes consumed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_net::frame::{decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    let max = 4096;
    if let Ok(Some((body, used))) = decode_frame(data, max) {
        assert!(!body.is_empty() && body.len() <= max);
        let mut out = Vec::new();
        encode_frame(body, max, &mut out).unwrap();
        assert_eq!(&out[..], &data[..used]);
    }
});
