//! `qbind_net::sentry::LinkFrame::decode` (frames between a validator and
//! its sentry) must never panic, and whatever it accepts must re-encode to
//! exactly the input bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_net::sentry::LinkFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = LinkFrame::decode(data) {
        assert_eq!(f.encode(), data, "non-canonical encoding accepted");
    }
});
