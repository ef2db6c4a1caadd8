//! The validator-set file of `qbind-node` (`qbind_node_ref::validator_set`):
//! no panic on any text, and whatever loads yields a validator set, a key
//! registry and a schedule. Paths resolve under a directory that does not
//! exist, so file references fail cleanly.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qbind_node_ref::validator_set::ValidatorSetFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = ValidatorSetFile::parse(text, Path::new("/nonexistent/qbind-fuzz")) {
        assert!(!file.validators.is_empty(), "an empty set loaded");
        assert!(file.validator_set().is_ok(), "a loaded set does not build");
        assert!(file.key_registry().is_ok(), "a loaded set has no registry");
        assert!(file.schedule().is_ok(), "a loaded set has no schedule");
    }
});
