//! The node's effective configuration ([`NodeConfig`]: profile preset,
//! then the config file, then flags), the MainNet invariants of runbook
//! §3.2 ([`validate_mainnet_invariants`]) and the TOML config file
//! (`--config node.toml`, [`config_file_args`]).

use std::path::PathBuf;

use qbind_core::dag::PayloadMode;
use qbind_core::fee_mempool::EvictionMode;
use qbind_core::monetary::MonetaryMode;
use qbind_core::types::NetworkEnvironment;
use qbind_net::peers::diversity::DiversityMode;

use crate::profile::Profile;

/// Smallest snapshot interval MainNet accepts (runbook §3.2 #14).
pub const MAINNET_MIN_SNAPSHOT_INTERVAL: u64 = 10_000;
/// Largest snapshot interval MainNet accepts (runbook §3.2 #14).
pub const MAINNET_MAX_SNAPSHOT_INTERVAL: u64 = 500_000;
/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The configuration a node would run with, as the invariants see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// The profile (`-P/--profile`).
    pub profile: Profile,
    /// The network of the genesis (the profile's for the seed genesis).
    pub genesis_env: NetworkEnvironment,
    /// A genesis file was given (`--genesis`), not the DevNet seed genesis.
    pub genesis_file: bool,
    /// `-d/--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// VM v0 with gas metering (always on in this build).
    pub gas_enabled: bool,
    /// The fee-priority mempool (`--enable-fee-priority`).
    pub fee_priority: bool,
    /// FIFO or DAG payloads (`--mempool-mode`); DAG payloads are certified
    /// DAG batches (DAG availability, runbook §3.2 #4 and #5).
    pub payload_mode: PayloadMode,
    /// KEMTLS P2P (`--p2p kemtls`) rather than in-process channels.
    pub p2p: bool,
    /// Validators run in this process.
    pub validators_in_process: usize,
    /// P2P peer exchange (`--enable-discovery`).
    pub discovery: bool,
    /// `--signer-mode`; `None`: DevNet seed keys.
    pub signer_mode: Option<String>,
    /// The signer fails closed (`--signer-failure-mode exit-on-failure`).
    pub signer_exit_on_failure: bool,
    /// `--diversity-mode`.
    pub diversity: DiversityMode,
    /// `--monetary-mode` (or the genesis's).
    pub monetary_mode: MonetaryMode,
    /// `--snapshot-interval` if `--snapshot-dir` is set.
    pub snapshot_interval: Option<u64>,
    /// `--mempool-eviction-mode`.
    pub eviction_mode: EvictionMode,
    /// The built-in load generator runs.
    pub load_generator: bool,
    /// What the process is (`--role`).
    pub role: NodeRole,
}

/// What a `qbind-node` process is (`--role`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeRole {
    /// A validator: signs, keeps a store.
    #[default]
    Validator,
    /// A full node: keeps a store, holds no consensus key (the signer
    /// checks #9 and #10 pass).
    Full,
    /// A sentry: relays for its validator, holds no consensus key and no
    /// store (the signer and store checks #8, #9, #10 and #13 pass).
    Sentry,
}

impl NodeRole {
    /// The `--role` name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            NodeRole::Validator => "validator",
            NodeRole::Full => "full",
            NodeRole::Sentry => "sentry",
        }
    }

    fn signs(self) -> bool {
        self == NodeRole::Validator
    }

    fn stores(self) -> bool {
        self != NodeRole::Sentry
    }
}

/// A MainNet invariant a configuration breaks (runbook §3.2; the number
/// is the checklist's).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    /// #1: the chain is not MainNet's.
    #[error("network_environment: the genesis is for {0:?}, not Mainnet (#1)")]
    NotMainnetEnvironment(NetworkEnvironment),
    /// #1: no genesis file: the DevNet seed genesis cannot be MainNet's.
    #[error("genesis: MainNet needs --genesis (the seed genesis is DevNet's) (#1)")]
    NoGenesisFile,
    /// #2.
    #[error("gas_enabled: gas metering cannot be disabled (#2)")]
    GasDisabled,
    /// #3.
    #[error("enable_fee_priority: the fee-priority mempool is required (#3)")]
    FeePriorityDisabled,
    /// #4, #5.
    #[error("mempool_mode: DAG payloads with availability certificates are required (#4, #5)")]
    MempoolNotDag,
    /// #6.
    #[error("network_mode: KEMTLS P2P with one validator per process is required (#6)")]
    NotP2p,
    /// #7.
    #[error("enable_discovery: peer discovery is required (#7)")]
    DiscoveryDisabled,
    /// #8.
    #[error("data_dir: a data directory must be set (#8)")]
    NoDataDir,
    /// #9.
    #[error("signer_mode: loopback or DevNet seed keys are forbidden (#9)")]
    LoopbackSigner,
    /// #10.
    #[error("signer_failure_mode: exit-on-failure is required (#10)")]
    SignerNotFailClosed,
    /// #11.
    #[error("diversity_mode: enforce is required (#11)")]
    DiversityNotEnforced,
    /// #12.
    #[error("monetary_mode: shadow or active is required (#12)")]
    MonetaryOff,
    /// #13.
    #[error("snapshots: --snapshot-dir is required (#13)")]
    SnapshotsDisabled,
    /// #14.
    #[error("snapshot_interval_blocks: {0} is outside [10000, 500000] (#14)")]
    SnapshotIntervalOutOfRange(u64),
    /// Runbook §3.5: eviction rate limiting may not be off.
    #[error("mempool_eviction_mode: off is forbidden (runbook §3.5)")]
    EvictionOff,
    /// The built-in load generator spends from funded accounts.
    #[error("load_generator: the built-in load generator is for DevNet and TestNet")]
    LoadGenerator,
}

/// One MainNet check: its name and whether `c` passes it.
type Check = (&'static str, fn(&NodeConfig) -> Option<InvariantViolation>);

/// Every MainNet check, in checklist order.
pub const MAINNET_CHECKS: [Check; 16] = [
    ("network_environment", |c| {
        (c.genesis_env != NetworkEnvironment::Mainnet)
            .then_some(InvariantViolation::NotMainnetEnvironment(c.genesis_env))
    }),
    ("genesis", |c| {
        (!c.genesis_file).then_some(InvariantViolation::NoGenesisFile)
    }),
    ("gas_enabled", |c| {
        (!c.gas_enabled).then_some(InvariantViolation::GasDisabled)
    }),
    ("enable_fee_priority", |c| {
        (!c.fee_priority).then_some(InvariantViolation::FeePriorityDisabled)
    }),
    ("mempool_mode", |c| {
        (c.payload_mode != PayloadMode::Dag).then_some(InvariantViolation::MempoolNotDag)
    }),
    ("network_mode", |c| {
        (!c.p2p || c.validators_in_process != 1).then_some(InvariantViolation::NotP2p)
    }),
    ("enable_discovery", |c| {
        (!c.discovery).then_some(InvariantViolation::DiscoveryDisabled)
    }),
    ("data_dir", |c| {
        (c.role.stores() && c.data_dir.as_ref().is_none_or(|d| d.as_os_str().is_empty()))
            .then_some(InvariantViolation::NoDataDir)
    }),
    ("signer_mode", |c| {
        (c.role.signs()
            && c.signer_mode
                .as_deref()
                .is_none_or(|m| m == "loopback-testing"))
        .then_some(InvariantViolation::LoopbackSigner)
    }),
    ("signer_failure_mode", |c| {
        (c.role.signs() && !c.signer_exit_on_failure)
            .then_some(InvariantViolation::SignerNotFailClosed)
    }),
    ("diversity_mode", |c| {
        (c.diversity != DiversityMode::Enforce).then_some(InvariantViolation::DiversityNotEnforced)
    }),
    ("monetary_mode", |c| {
        (c.monetary_mode == MonetaryMode::Off).then_some(InvariantViolation::MonetaryOff)
    }),
    ("snapshots", |c| {
        (c.role.stores() && c.snapshot_interval.is_none())
            .then_some(InvariantViolation::SnapshotsDisabled)
    }),
    ("snapshot_interval_blocks", |c| match c.snapshot_interval {
        Some(i)
            if !(MAINNET_MIN_SNAPSHOT_INTERVAL..=MAINNET_MAX_SNAPSHOT_INTERVAL).contains(&i) =>
        {
            Some(InvariantViolation::SnapshotIntervalOutOfRange(i))
        }
        _ => None,
    }),
    ("mempool_eviction_mode", |c| {
        (c.eviction_mode == EvictionMode::Off).then_some(InvariantViolation::EvictionOff)
    }),
    ("load_generator", |c| {
        c.load_generator
            .then_some(InvariantViolation::LoadGenerator)
    }),
];

/// Every MainNet invariant `config` breaks (empty: it may start on
/// MainNet). All checks live here, in [`MAINNET_CHECKS`].
#[must_use]
pub fn validate_mainnet_invariants(config: &NodeConfig) -> Vec<InvariantViolation> {
    MAINNET_CHECKS
        .iter()
        .filter_map(|(_, check)| check(config))
        .collect()
}

impl NodeConfig {
    /// The effective configuration as `key = value` lines.
    #[must_use]
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!("profile = {}", self.profile),
            format!("role = {}", self.role.name()),
            format!("genesis_network = {:?}", self.genesis_env),
            format!("genesis_file = {}", self.genesis_file),
            format!(
                "data_dir = {}",
                self.data_dir
                    .as_ref()
                    .map_or("(unset)".into(), |d| d.display().to_string())
            ),
            format!("gas_enabled = {}", self.gas_enabled),
            format!("enable_fee_priority = {}", self.fee_priority),
            format!("mempool_mode = {:?}", self.payload_mode),
            format!("p2p = {}", if self.p2p { "kemtls" } else { "memory" }),
            format!("validators_in_process = {}", self.validators_in_process),
            format!("enable_discovery = {}", self.discovery),
            format!(
                "signer_mode = {}",
                match (&self.signer_mode, self.role.signs()) {
                    (_, false) => "none (no consensus key)",
                    (Some(m), true) => m.as_str(),
                    (None, true) => "devnet-seed-keys",
                }
            ),
            format!("signer_exit_on_failure = {}", self.signer_exit_on_failure),
            format!("diversity_mode = {:?}", self.diversity),
            format!("monetary_mode = {:?}", self.monetary_mode),
            format!(
                "snapshot_interval = {}",
                self.snapshot_interval
                    .map_or("(snapshots off)".into(), |i| i.to_string())
            ),
            format!("mempool_eviction_mode = {:?}", self.eviction_mode),
            format!("load_generator = {}", self.load_generator),
        ]
    }

    /// One `PASS name` / `FAIL name: reason` line per MainNet check.
    #[must_use]
    pub fn check_lines(&self) -> Vec<String> {
        MAINNET_CHECKS
            .iter()
            .map(|(name, check)| match check(self) {
                None => format!("PASS {name}"),
                Some(v) => format!("FAIL {name}: {v}"),
            })
            .collect()
    }
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not TOML, too large, or a value of an unsupported type.
    #[error("config file {path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A key that is not a long flag of the command.
    #[error("config file {path}: unknown key {key:?} (keys are the long flag names)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
}

/// The config file `path` as command-line arguments (`--key=value`), to be
/// placed before the real ones so that flags override the file. Keys are
/// long flag names without `--` (`data-dir`; `data_dir` is accepted too);
/// `known` lists the command's long flags. A boolean `true` is the bare
/// flag, `false` omits it (unless the flag takes a value: then
/// `--key=false`); an array is a comma-separated list.
///
/// # Errors
/// [`ConfigFileError`].
pub fn config_file_args(
    path: &std::path::Path,
    known: &[(String, bool)],
) -> Result<Vec<String>, ConfigFileError> {
    let malformed = |reason: String| ConfigFileError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let io = |source| ConfigFileError::Io {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_CONFIG_BYTES {
        return Err(malformed(format!(
            "{len} bytes, more than {MAX_CONFIG_BYTES}"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    let mut args = Vec::with_capacity(table.len());
    for (key, value) in table {
        let flag = key.replace('_', "-");
        let Some((_, takes_value)) = known.iter().find(|(k, _)| *k == flag && k != "config") else {
            return Err(ConfigFileError::UnknownKey {
                path: path.to_owned(),
                key,
            });
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) if !takes_value => {
                if b {
                    args.push(format!("--{flag}"));
                }
                continue;
            }
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
            other => return Err(malformed(format!("{key}: unsupported value {other}"))),
        };
        args.push(format!("--{flag}={text}"));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration that passes every MainNet check.
    pub(crate) fn good_mainnet() -> NodeConfig {
        NodeConfig {
            profile: Profile::Mainnet,
            genesis_env: NetworkEnvironment::Mainnet,
            genesis_file: true,
            data_dir: Some("/data/qbind".into()),
            gas_enabled: true,
            fee_priority: true,
            payload_mode: PayloadMode::Dag,
            p2p: true,
            validators_in_process: 1,
            discovery: true,
            signer_mode: Some("encrypted-fs".into()),
            signer_exit_on_failure: true,
            diversity: DiversityMode::Enforce,
            monetary_mode: MonetaryMode::Shadow,
            snapshot_interval: Some(50_000),
            eviction_mode: EvictionMode::Enforce,
            load_generator: false,
            role: NodeRole::Validator,
        }
    }

    #[test]
    fn a_good_mainnet_config_passes() {
        assert_eq!(validate_mainnet_invariants(&good_mainnet()), vec![]);
        assert!(
            good_mainnet()
                .check_lines()
                .iter()
                .all(|l| l.starts_with("PASS"))
        );
    }

    #[test]
    fn each_bad_mainnet_config_is_refused_by_name() {
        use InvariantViolation as V;
        type Breaks = fn(&mut NodeConfig);
        let table: Vec<(Breaks, V)> = vec![
            (
                |c| c.genesis_env = NetworkEnvironment::Testnet,
                V::NotMainnetEnvironment(NetworkEnvironment::Testnet),
            ),
            (|c| c.genesis_file = false, V::NoGenesisFile),
            (|c| c.gas_enabled = false, V::GasDisabled),
            (|c| c.fee_priority = false, V::FeePriorityDisabled),
            (|c| c.payload_mode = PayloadMode::Fifo, V::MempoolNotDag),
            (|c| c.p2p = false, V::NotP2p),
            (|c| c.validators_in_process = 4, V::NotP2p),
            (|c| c.discovery = false, V::DiscoveryDisabled),
            (|c| c.data_dir = None, V::NoDataDir),
            (|c| c.signer_mode = None, V::LoopbackSigner),
            (
                |c| c.signer_mode = Some("loopback-testing".into()),
                V::LoopbackSigner,
            ),
            (|c| c.signer_exit_on_failure = false, V::SignerNotFailClosed),
            (
                |c| c.diversity = DiversityMode::Warn,
                V::DiversityNotEnforced,
            ),
            (|c| c.monetary_mode = MonetaryMode::Off, V::MonetaryOff),
            (|c| c.snapshot_interval = None, V::SnapshotsDisabled),
            (
                |c| c.snapshot_interval = Some(9_999),
                V::SnapshotIntervalOutOfRange(9_999),
            ),
            (
                |c| c.snapshot_interval = Some(500_001),
                V::SnapshotIntervalOutOfRange(500_001),
            ),
            (|c| c.eviction_mode = EvictionMode::Off, V::EvictionOff),
            (|c| c.load_generator = true, V::LoadGenerator),
        ];
        for (breaks, expected) in table {
            let mut c = good_mainnet();
            breaks(&mut c);
            assert_eq!(validate_mainnet_invariants(&c), vec![expected.clone()]);
            let fail = c
                .check_lines()
                .into_iter()
                .filter(|l| l.starts_with("FAIL"));
            assert_eq!(fail.count(), 1, "{expected}");
        }
    }

    #[test]
    fn a_full_node_needs_no_signer_and_keeps_every_other_check() {
        let mut full = good_mainnet();
        full.role = NodeRole::Full;
        full.signer_mode = None;
        full.signer_exit_on_failure = false;
        assert_eq!(validate_mainnet_invariants(&full), vec![]);
        assert!(full.describe().contains(&"role = full".to_string()));
        full.diversity = DiversityMode::Warn;
        assert_eq!(
            validate_mainnet_invariants(&full),
            vec![InvariantViolation::DiversityNotEnforced]
        );
        // A full node keeps a store: it needs a data directory and snapshots.
        let mut full = good_mainnet();
        full.role = NodeRole::Full;
        full.data_dir = None;
        full.snapshot_interval = None;
        assert_eq!(
            validate_mainnet_invariants(&full),
            vec![
                InvariantViolation::NoDataDir,
                InvariantViolation::SnapshotsDisabled
            ]
        );
    }

    #[test]
    fn a_sentry_needs_no_signer_and_no_store() {
        let mut sentry = good_mainnet();
        sentry.role = NodeRole::Sentry;
        sentry.signer_mode = None;
        sentry.signer_exit_on_failure = false;
        sentry.data_dir = None;
        sentry.snapshot_interval = None;
        assert_eq!(validate_mainnet_invariants(&sentry), vec![]);
        assert!(sentry.describe().contains(&"role = sentry".to_string()));
        sentry.discovery = false;
        assert_eq!(
            validate_mainnet_invariants(&sentry),
            vec![InvariantViolation::DiscoveryDisabled]
        );
    }

    #[test]
    fn config_file_becomes_flags_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        let known = [
            ("data-dir".to_string(), true),
            ("blocks".to_string(), true),
            ("validate-only".to_string(), false),
            ("bootstrap-peers".to_string(), true),
        ];
        std::fs::write(
            &path,
            "data_dir = \"/d\"\nblocks = 5\nvalidate-only = true\nbootstrap-peers = [\"a:1\", \"b:2\"]\n",
        )
        .expect("write");
        let mut args = config_file_args(&path, &known).expect("args");
        args.sort();
        assert_eq!(
            args,
            vec![
                "--blocks=5",
                "--bootstrap-peers=a:1,b:2",
                "--data-dir=/d",
                "--validate-only"
            ]
        );
        std::fs::write(&path, "colour = 1\n").expect("write");
        assert!(matches!(
            config_file_args(&path, &known),
            Err(ConfigFileError::UnknownKey { key, .. }) if key == "colour"
        ));
        std::fs::write(&path, "blocks = \n").expect("write");
        assert!(matches!(
            config_file_args(&path, &known),
            Err(ConfigFileError::Malformed { .. })
        ));
    }
}
