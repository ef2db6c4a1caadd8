//! The genesis file of `qbind-node` (`qbind_node_ref::genesis`): no panic on
//! any text, and whatever loads is consistent: it re-checks, its validators
//! build a validator set, its balances load, and its hash survives a round
//! trip through its own JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_node_ref::genesis::Genesis;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(genesis) = Genesis::parse(text) {
        assert!(genesis.check().is_ok(), "a loaded genesis fails its checks");
        let set = genesis.validator_set_file().expect("validators of a loaded genesis");
        assert!(set.validator_set().is_ok(), "a loaded genesis has no set");
        assert!(genesis.balances().is_ok(), "a loaded genesis has no balances");
        let again = serde_json::to_string(&genesis).expect("serialise");
        let back = Genesis::parse(&again).expect("its own JSON parses");
        assert_eq!(back.hash(), genesis.hash(), "the hash changed in a round trip");
    }
});
