//! Network profiles (runbook §3): DevNet, TestNet Alpha, TestNet Beta and
//! MainNet, each a preset of the node configuration. A profile fixes the
//! network environment (chain ID, domain tags) and gives the defaults of
//! the payload mode, the P2P diversity mode, the monetary mode and the
//! signer failure mode; flags and the config file may change the defaults,
//! and `validate_mainnet_invariants` (in [`crate::config`]) refuses the
//! changes MainNet does not allow.

use qbind_core::dag::PayloadMode;
use qbind_core::monetary::MonetaryMode;
use qbind_core::types::NetworkEnvironment;
use qbind_net::peers::diversity::DiversityMode;
use serde::{Deserialize, Serialize};

/// A network profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Local development network: FIFO payloads, diversity Warn, monetary
    /// Active with short epochs.
    Devnet,
    /// TestNet Alpha: FIFO payloads, diversity Enforce, monetary Shadow.
    TestnetAlpha,
    /// TestNet Beta: DAG payloads, diversity Enforce, monetary Shadow.
    TestnetBeta,
    /// MainNet: DAG payloads, diversity Enforce, monetary Shadow (launch),
    /// every invariant of runbook §3.2.
    Mainnet,
}

/// An unknown profile name.
#[derive(Debug, thiserror::Error)]
#[error("unknown profile {0:?} (devnet, testnet-alpha, testnet-beta or testnet, mainnet)")]
pub struct UnknownProfile(pub String);

/// The configuration a profile presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    /// Where block payloads come from.
    pub payload_mode: PayloadMode,
    /// P2P diversity buckets.
    pub diversity: DiversityMode,
    /// The monetary engine.
    pub monetary: MonetaryMode,
    /// Whether an ExitOnFailure signer is the default.
    pub signer_exit_on_failure: bool,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [
        Profile::Devnet,
        Profile::TestnetAlpha,
        Profile::TestnetBeta,
        Profile::Mainnet,
    ];

    /// Parse a `--profile` value; `testnet` is TestNet Beta.
    ///
    /// # Errors
    /// [`UnknownProfile`].
    pub fn parse(name: &str) -> Result<Profile, UnknownProfile> {
        match name {
            "devnet" => Ok(Profile::Devnet),
            "testnet-alpha" => Ok(Profile::TestnetAlpha),
            "testnet-beta" | "testnet" => Ok(Profile::TestnetBeta),
            "mainnet" => Ok(Profile::Mainnet),
            other => Err(UnknownProfile(other.to_owned())),
        }
    }

    /// The profile's name as `--profile` takes it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Profile::Devnet => "devnet",
            Profile::TestnetAlpha => "testnet-alpha",
            Profile::TestnetBeta => "testnet-beta",
            Profile::Mainnet => "mainnet",
        }
    }

    /// The network environment (chain ID and signing domains).
    #[must_use]
    pub fn env(self) -> NetworkEnvironment {
        match self {
            Profile::Devnet => NetworkEnvironment::Devnet,
            Profile::TestnetAlpha | Profile::TestnetBeta => NetworkEnvironment::Testnet,
            Profile::Mainnet => NetworkEnvironment::Mainnet,
        }
    }

    /// The configuration this profile presets.
    #[must_use]
    pub fn preset(self) -> Preset {
        match self {
            Profile::Devnet => Preset {
                payload_mode: PayloadMode::Fifo,
                diversity: DiversityMode::Warn,
                monetary: MonetaryMode::Active,
                signer_exit_on_failure: false,
            },
            Profile::TestnetAlpha => Preset {
                payload_mode: PayloadMode::Fifo,
                diversity: DiversityMode::Enforce,
                monetary: MonetaryMode::Shadow,
                signer_exit_on_failure: false,
            },
            Profile::TestnetBeta => Preset {
                payload_mode: PayloadMode::Dag,
                diversity: DiversityMode::Enforce,
                monetary: MonetaryMode::Shadow,
                signer_exit_on_failure: false,
            },
            Profile::Mainnet => Preset {
                payload_mode: PayloadMode::Dag,
                diversity: DiversityMode::Enforce,
                monetary: MonetaryMode::Shadow,
                signer_exit_on_failure: true,
            },
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_testnet_is_beta() {
        for p in Profile::ALL {
            assert_eq!(Profile::parse(p.name()).ok(), Some(p));
        }
        assert_eq!(Profile::parse("testnet").ok(), Some(Profile::TestnetBeta));
        assert!(Profile::parse("moonnet").is_err());
    }

    #[test]
    fn presets_follow_the_runbook() {
        assert_eq!(Profile::Devnet.preset().payload_mode, PayloadMode::Fifo);
        assert_eq!(Profile::TestnetBeta.preset().payload_mode, PayloadMode::Dag);
        assert_eq!(Profile::Mainnet.preset().payload_mode, PayloadMode::Dag);
        for p in [
            Profile::TestnetAlpha,
            Profile::TestnetBeta,
            Profile::Mainnet,
        ] {
            assert_eq!(p.preset().diversity, DiversityMode::Enforce, "{p}");
            assert_ne!(p.preset().monetary, MonetaryMode::Off, "{p}");
        }
        assert_eq!(Profile::Mainnet.env(), NetworkEnvironment::Mainnet);
    }
}
