//! Shared set-up for the QBIND fuzz targets and for `examples/make_seeds.rs`:
//! the validator keys, set and consensus configuration that the
//! `hotstuff_input` target runs against, so that seed messages signed with
//! these keys pass signature checks and reach the deeper handlers.

#![forbid(unsafe_code)]

use std::sync::{Arc, OnceLock};

use qbind_core::consensus::ConsensusConfig;
use qbind_core::crypto::KeyPair;
use qbind_core::types::NetworkEnvironment;
use qbind_core::validator::{EpochSchedule, ValidatorSet};

/// The network every target runs on.
pub const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

/// Validators in the fuzzed set (f = 1).
pub const VALIDATORS: usize = 4;

/// Validator `i`'s key, derived as the simulator derives it: the seed is
/// `0x5a` repeated, with the first 8 bytes replaced by `i` (u64 big-endian).
#[must_use]
pub fn validator_key(i: usize) -> KeyPair {
    let mut seed = [0x5au8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    KeyPair::from_seed(&seed)
}

/// Everything a [`qbind_core::consensus::HotStuff`] needs that is worth
/// building only once per fuzzing process.
pub struct Setup {
    /// Keys of validators `0..VALIDATORS`.
    pub keys: Vec<KeyPair>,
    /// One fixed validator set of equal stakes.
    pub schedule: Arc<EpochSchedule>,
    /// DevNet defaults.
    pub config: ConsensusConfig,
}

/// The shared set-up, built on first use.
///
/// # Panics
/// If four distinct keys of equal stake do not form a validator set, which
/// would be a bug in `ValidatorSet::new`.
pub fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let keys: Vec<KeyPair> = (0..VALIDATORS).map(validator_key).collect();
        let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())
            .expect("four equal-stake validators form a set");
        Setup {
            keys,
            schedule: Arc::new(EpochSchedule::fixed(set)),
            config: ConsensusConfig::new(ENV),
        }
    })
}
