//! `qbind-node`: run QBIND validators.
//!
//! Today it runs a local DevNet of `--local-validators N` validators in one
//! process, each with its own persistent store under `--data-dir`, committing
//! and executing signed transfers, with the runbook's store flags
//! (`--snapshot-dir`, `--snapshot-interval`, `--max-snapshots`,
//! `--state-retention-mode`, `--state-retain-height`,
//! `--fast-sync-snapshot-dir` with `--trusted-snapshot-anchor`) and a
//! Prometheus endpoint (`--metrics-addr`).
//!
//! ```text
//! qbind-node --profile devnet --data-dir /tmp/qbind --local-validators 4 --blocks 50
//! ```
//!
//! With `--validator-set FILE --validator-index I --signer-mode MODE` it runs
//! one validator with its own keys (`qbind-keygen`): consensus signatures
//! from an encrypted keystore, a PKCS#11 token or a `qbind-remote-signer`
//! daemon, behind the double-sign guard; P2P identity from the keystore's
//! `p2p_identity.key`. A fatal signer failure under ExitOnFailure stops the
//! node with exit status 1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use qbind_core::key_rotation::KeyRole;
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_node_ref::config::{NodeConfig, config_file_args, validate_mainnet_invariants};
use qbind_node_ref::genesis::{Genesis, load_account_keys, monetary_mode_named};
use qbind_node_ref::local::{ChainSettings, Load};
use qbind_node_ref::local::{
    Executor, FastSync, Keys, LocalOptions, Network, run_local, validator_key,
};
use qbind_node_ref::node::{Maintenance, NodeError, init_data_dir, retention_mode};
use qbind_node_ref::profile::Profile;
use qbind_node_ref::validator_set::ValidatorSetFile;
use qbind_signer::keystore::{self, KdfPolicy, Passphrase};
use qbind_signer::{
    RemoteSettings, SignerFailureMode, SignerMetrics, SignerMode, SignerSettings, build_signer,
};
use qbind_store::snapshot::{SnapshotConfig, TrustAnchor};

/// Parse `--trusted-snapshot-anchor`.
fn parse_anchor(text: &str) -> Result<TrustAnchor, String> {
    text.parse()
        .map_err(|e: qbind_store::snapshot::SnapshotError| e.to_string())
}

/// `--executor` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExecutorArg {
    /// Stage B parallel execution.
    StageB,
    /// The sequential reference.
    Sequential,
}

/// `qbind-node` and its subcommands.
#[derive(Debug, Parser)]
#[command(
    name = "qbind-node",
    version,
    about = "Run QBIND validators",
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    args: Args,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Create a node's store(s) from a genesis file and record its hash.
    Init(InitArgs),
}

/// `qbind-node init` flags.
#[derive(Debug, clap::Args)]
struct InitArgs {
    /// The genesis file (JSON, docs/node.md).
    #[arg(long)]
    genesis: PathBuf,
    /// Data directory: validator i's store is DIR/validator-i.
    #[arg(short = 'd', long)]
    data_dir: PathBuf,
    /// Only this validator's store (default: every validator of the genesis).
    #[arg(long, visible_alias = "validator-id")]
    validator_index: Option<usize>,
}

/// Command-line flags (runbook §3.5, §5); every long flag is also a key of
/// the `--config` TOML file.
#[derive(Debug, clap::Args)]
struct Args {
    /// TOML config file whose keys are the long flag names; flags given on
    /// the command line override it; unknown keys are an error.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Network profile: devnet, testnet-alpha, testnet-beta (or testnet),
    /// mainnet (default: the genesis file's, else devnet).
    #[arg(short = 'P', long)]
    profile: Option<String>,
    /// Directory of the validators' stores.
    #[arg(short = 'd', long)]
    data_dir: Option<PathBuf>,
    /// Genesis file (`qbind-genesis`); needs validators with their own keys
    /// (--signer-mode). Without it: the DevNet seed genesis.
    #[arg(long, conflicts_with = "validator_set")]
    genesis: Option<PathBuf>,
    /// Accounts file (`qbind-genesis` accounts.json) the load generator
    /// spends from.
    #[arg(long)]
    load_accounts: Option<PathBuf>,
    /// Run the built-in load generator (default: on for devnet, off
    /// otherwise).
    #[arg(long, action = clap::ArgAction::Set)]
    load_generator: Option<bool>,
    /// Print the effective configuration and the MainNet checks, then exit
    /// (2 if a MainNet profile breaks one).
    #[arg(long)]
    validate_only: bool,
    /// Payload source: fifo or dag (default: the profile's).
    #[arg(long)]
    mempool_mode: Option<String>,
    /// The fee-priority mempool (default true).
    #[arg(long, action = clap::ArgAction::Set)]
    enable_fee_priority: Option<bool>,
    /// P2P peer discovery (default true).
    #[arg(long, action = clap::ArgAction::Set)]
    enable_discovery: Option<bool>,
    /// Stage B parallel execution (true) or the sequential executor
    /// (false); same as --executor.
    #[arg(long, action = clap::ArgAction::Set)]
    enable_stage_b: Option<bool>,
    /// P2P diversity buckets: off, warn, enforce (default: the profile's).
    #[arg(long)]
    diversity_mode: Option<String>,
    /// Monetary engine: off, shadow, active (default: the genesis's).
    #[arg(long)]
    monetary_mode: Option<String>,
    /// Mempool eviction rate limiting: off, warn, enforce.
    #[arg(long)]
    mempool_eviction_mode: Option<String>,
    /// Capacity evictions allowed per interval.
    #[arg(long)]
    mempool_eviction_max_per_interval: Option<u32>,
    /// Eviction interval, seconds.
    #[arg(long)]
    mempool_eviction_interval_secs: Option<u64>,
    /// Most pending transactions in the mempool.
    #[arg(long)]
    mempool_max_pending_txs: Option<usize>,
    /// Run this many validators in this process (DevNet keys).
    #[arg(long, default_value_t = 4)]
    local_validators: usize,
    /// Stop after every validator executed this many more blocks (0: run
    /// until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    blocks: u64,
    /// Submit one signed transfer every this many milliseconds.
    #[arg(long, default_value_t = 5)]
    tx_interval_ms: u64,
    /// Funded DevNet accounts.
    #[arg(long, default_value_t = 32)]
    accounts: usize,
    /// Base view timeout in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    base_timeout_ms: u64,
    /// How committed blocks are executed: `stage-b` (parallel signature
    /// checks and conflict-aware parallel execution) or `sequential` (the
    /// reference). Both give the same state.
    #[arg(long, value_enum, default_value_t = ExecutorArg::StageB)]
    executor: ExecutorArg,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Where snapshots are written (none: snapshots off).
    #[arg(long)]
    snapshot_dir: Option<PathBuf>,
    /// Snapshot every this many executed blocks.
    #[arg(long, default_value_t = qbind_store::snapshot::DEFAULT_INTERVAL_BLOCKS)]
    snapshot_interval: u64,
    /// Snapshots kept; older ones are removed.
    #[arg(long, default_value_t = qbind_store::snapshot::DEFAULT_MAX_SNAPSHOTS)]
    max_snapshots: usize,
    /// archival (keep all blocks) or height (keep the last --state-retain-height).
    #[arg(long, default_value = "archival")]
    state_retention_mode: String,
    /// Blocks kept in height retention mode.
    #[arg(long)]
    state_retain_height: Option<u64>,
    /// Restore a validator's store from this snapshot directory
    /// (`<snapshot_dir>/<height>`) before starting, then continue from its
    /// height. The store directory must be absent or empty. Needs
    /// --trusted-snapshot-anchor.
    #[arg(long, requires = "trusted_snapshot_anchor")]
    fast_sync_snapshot_dir: Option<PathBuf>,
    /// HEIGHT:BLOCK_HASH_HEX:STATE_ROOT_HEX of the snapshot to restore, from
    /// a node you trust (qbind-node prints it for every snapshot it writes);
    /// a snapshot that does not match it is refused.
    #[arg(long, requires = "fast_sync_snapshot_dir", value_parser = parse_anchor)]
    trusted_snapshot_anchor: Option<TrustAnchor>,
    /// Which local validator --fast-sync-snapshot-dir restores.
    #[arg(long, default_value_t = 0)]
    fast_sync_validator: usize,
    /// Transport between validators: memory (all in this process) or
    /// kemtls (ML-KEM-768 KEMTLS over TCP, qbind-net).
    #[arg(long, default_value = "memory")]
    p2p: String,
    /// With --p2p kemtls: the IP every validator listens on.
    #[arg(long, default_value = "127.0.0.1")]
    p2p_ip: std::net::IpAddr,
    /// With --p2p kemtls: validator i listens on this port + i.
    #[arg(long, default_value_t = 29_000)]
    p2p_base_port: u16,
    /// Run only this validator of the --local-validators (one process per
    /// validator; needs --p2p kemtls).
    #[arg(long, visible_alias = "validator-id")]
    validator_index: Option<usize>,
    /// Validator-set file (docs/node.md): every validator's public keys,
    /// address and stake. Runs validator --validator-index with the keys of
    /// --signer-mode instead of DevNet seed keys; implies --p2p kemtls and
    /// sets --local-validators to the file's count.
    #[arg(long)]
    validator_set: Option<PathBuf>,
    /// With --validator-set: loopback-testing, encrypted-fs, hsm-pkcs11 or
    /// remote-signer.
    #[arg(long)]
    signer_mode: Option<String>,
    /// Keystore directory (consensus.key for encrypted-fs; p2p_identity.key
    /// for every mode unless --p2p-identity-key is given).
    #[arg(long)]
    signer_keystore_path: Option<PathBuf>,
    /// Environment variable holding the keystore passphrase.
    #[arg(long, default_value = "QBIND_KEYSTORE_PASSPHRASE")]
    signer_passphrase_env: String,
    /// File holding the keystore passphrase (regular, owner-only, at most
    /// 4 KiB); preferred over --signer-passphrase-env, whose value stays in
    /// the process environment (docs/signer.md).
    #[arg(long)]
    signer_passphrase_file: Option<PathBuf>,
    /// The node's encrypted P2P identity key (default:
    /// <--signer-keystore-path>/p2p_identity.key).
    #[arg(long)]
    p2p_identity_key: Option<PathBuf>,
    /// hsm-pkcs11: the HSM TOML (library_path, token_label, key_label, pin_env_var).
    #[arg(long)]
    hsm_config_path: Option<PathBuf>,
    /// remote-signer: kemtls://host:port of the qbind-remote-signer daemon.
    #[arg(long)]
    remote_signer_url: Option<String>,
    /// remote-signer: the daemon's p2p_identity.pub.
    #[arg(long)]
    remote_signer_pub: Option<PathBuf>,
    /// remote-signer: connect and per-request timeout in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    remote_signer_timeout_ms: u64,
    /// exit-on-failure or log-and-continue (default: exit-on-failure on
    /// MainNet, log-and-continue elsewhere).
    #[arg(long)]
    signer_failure_mode: Option<String>,
    /// Directory of the double-sign record (default: --signer-keystore-path,
    /// where qbind-keygen creates it with the key; else
    /// <--data-dir>/signer-<index>). Keep it with the validator, not in its
    /// store: restoring a snapshot must not roll it back.
    #[arg(long)]
    double_sign_dir: Option<PathBuf>,
    /// Create an EMPTY double-sign record if there is none (first start of a
    /// new key only; logged; see docs/signer.md "Losing the record").
    /// Without it a missing record stops start-up.
    #[arg(long)]
    init_double_sign_record: bool,
}

/// The command line with the `--config` file's flags placed before the
/// given ones (so that the given ones override them).
fn parse_cli() -> Result<Cli, Failure> {
    use clap::CommandFactory;
    let argv: Vec<String> = std::env::args().collect();
    let config = argv.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=").map(str::to_owned).or_else(|| {
            (a == "--config")
                .then(|| argv.get(i + 1).cloned())
                .flatten()
        })
    });
    let Some(config) = config else {
        return Ok(Cli::parse());
    };
    let known: Vec<(String, bool)> = Cli::command()
        .get_arguments()
        .filter_map(|a| {
            a.get_long()
                .map(|l| (l.to_owned(), a.get_action().takes_values()))
        })
        .collect();
    let file = config_file_args(std::path::Path::new(&config), &known)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let mut full = vec![argv.first().cloned().unwrap_or_default()];
    full.extend(file);
    full.extend(argv.into_iter().skip(1));
    Ok(Cli::parse_from(full))
}

/// `qbind-node init`.
fn init(args: &InitArgs) -> Result<ExitCode, Failure> {
    let genesis = Genesis::load(&args.genesis).map_err(|e| e.to_string())?;
    let dirs =
        init_data_dir(&genesis, &args.data_dir, args.validator_index).map_err(|e| e.to_string())?;
    for dir in dirs {
        println!(
            "initialised {} for genesis {}",
            dir.display(),
            genesis.hash()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let result = parse_cli().and_then(|cli| match &cli.command {
        Some(Sub::Init(init_args)) => init(init_args),
        None => run(cli.args),
    });
    match result {
        Ok(code) => code,
        Err(Failure::Usage(message)) => {
            eprintln!("qbind-node: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Signer(code)) => {
            eprintln!("qbind-node: signer failure under ExitOnFailure, exiting with {code}");
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

/// Why the node stopped without success.
enum Failure {
    /// Bad flags, configuration or a run-time error (exit status 2).
    Usage(String),
    /// A fatal signer failure (ExitOnFailure): exit with this status.
    Signer(i32),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Usage(s)
    }
}

/// The signer and P2P identity of a validator with its own keys.
async fn operator_keys(
    args: &Args,
    env: NetworkEnvironment,
    genesis: Option<&Genesis>,
) -> Result<Keys, String> {
    if let Some(genesis) = genesis {
        let set = genesis.validator_set_file().map_err(|e| e.to_string())?;
        return operator_keys_of(args, env, set).await;
    }
    let Some(path) = &args.validator_set else {
        return Ok(Keys::Devnet);
    };
    let set = ValidatorSetFile::load(path).map_err(|e| e.to_string())?;
    operator_keys_of(args, env, set).await
}

/// The signer and P2P identity of validator `--validator-index` of `set`.
async fn operator_keys_of(
    args: &Args,
    env: NetworkEnvironment,
    set: ValidatorSetFile,
) -> Result<Keys, String> {
    let index = args
        .validator_index
        .ok_or("--validator-set needs --validator-index")?;
    if index >= set.validators.len() {
        return Err(format!(
            "--validator-index {index} is not in the validator set ({} validators)",
            set.validators.len()
        ));
    }
    let validator = ValidatorId(index as u32);
    let mode_name = args
        .signer_mode
        .as_deref()
        .ok_or("--validator-set needs --signer-mode")?;
    let mode = SignerMode::from_cli_name(mode_name).ok_or_else(|| {
        format!(
            "unknown --signer-mode {mode_name:?} (loopback-testing, encrypted-fs, hsm-pkcs11, \
             remote-signer)"
        )
    })?;
    let failure_mode = match args.signer_failure_mode.as_deref() {
        None => SignerFailureMode::default_for(env),
        Some("exit-on-failure") => SignerFailureMode::ExitOnFailure,
        Some("log-and-continue") => SignerFailureMode::LogAndContinue,
        Some(other) => {
            return Err(format!(
                "unknown --signer-failure-mode {other:?} (exit-on-failure or log-and-continue)"
            ));
        }
    };
    let identity_key_path = match (&args.p2p_identity_key, &args.signer_keystore_path) {
        (Some(p), _) => p.clone(),
        (None, Some(dir)) => dir.join("p2p_identity.key"),
        (None, None) => {
            return Err(
                "--validator-set needs --p2p-identity-key or --signer-keystore-path".into(),
            );
        }
    };
    let pass = Passphrase::from_file_or_env(
        args.signer_passphrase_file.as_deref(),
        &args.signer_passphrase_env,
    )
    .map_err(|e| e.to_string())?;
    let id_key = keystore::load_key_file(
        &identity_key_path,
        Some(validator),
        KeyRole::P2pIdentity,
        &pass,
        &KdfPolicy::PRODUCTION,
    )
    .map_err(|e| format!("P2P identity key: {e}"))?;
    let (d, z) = id_key
        .kem_seed()
        .ok_or("the P2P identity key is not an ML-KEM key")?;
    let identity = qbind_net::StaticIdentity::from_seed(&d, &z);
    let remote = match mode {
        SignerMode::RemoteSigner => Some(RemoteSettings {
            url: args
                .remote_signer_url
                .clone()
                .ok_or("--signer-mode remote-signer needs --remote-signer-url")?,
            identity_key_path,
            identity_passphrase_env: args.signer_passphrase_env.clone(),
            identity_passphrase_file: args.signer_passphrase_file.clone(),
            daemon_public_key_path: args
                .remote_signer_pub
                .clone()
                .ok_or("--signer-mode remote-signer needs --remote-signer-pub")?,
            expected_consensus_pub: None,
            timeout: Duration::from_millis(args.remote_signer_timeout_ms.max(1)),
        }),
        _ => None,
    };
    let settings = SignerSettings {
        mode,
        env,
        validator,
        failure_mode,
        double_sign_dir: args
            .double_sign_dir
            .clone()
            .or_else(|| args.signer_keystore_path.clone())
            .or_else(|| {
                args.data_dir
                    .as_ref()
                    .map(|d| d.join(format!("signer-{index}")))
            }),
        init_double_sign_record: args.init_double_sign_record,
        keystore_path: args.signer_keystore_path.clone(),
        passphrase_env: Some(args.signer_passphrase_env.clone()),
        passphrase_file: args.signer_passphrase_file.clone(),
        hsm_config_path: args.hsm_config_path.clone(),
        remote,
        loopback_key: Some(validator_key(index)),
    };
    let signer = build_signer(settings, SignerMetrics::shared())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Keys::Operator {
        set: Box::new(set),
        signer: std::sync::Arc::new(signer),
        identity: Box::new(identity),
    })
}

/// Resolves with the name of the first SIGINT (Ctrl-C) or SIGTERM: both
/// stop the node cleanly (the engines finish their block and flush, the
/// signer's double-sign record is released). `None` if neither can be
/// listened for.
async fn stop_signal() -> Option<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let sigterm = async {
        match term.as_mut() {
            Some(t) => t.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.ok().map(|()| "SIGINT"),
        Some(()) = sigterm => Some("SIGTERM"),
    }
}

/// Parse an off/warn/enforce flag value.
fn mode_named<T>(flag: &str, value: &str, [off, warn, enforce]: [T; 3]) -> Result<T, String> {
    match value {
        "off" => Ok(off),
        "warn" => Ok(warn),
        "enforce" => Ok(enforce),
        other => Err(format!("unknown {flag} {other:?} (off, warn or enforce)")),
    }
}

/// The profile's preset with the flags applied.
fn chain_settings(args: &Args, profile: Profile) -> Result<ChainSettings, String> {
    use qbind_core::fee_mempool::EvictionMode;
    use qbind_net::peers::diversity::DiversityMode;
    let mut s = ChainSettings::of(profile);
    if let Some(mode) = &args.mempool_mode {
        s.payload_mode = match mode.as_str() {
            "fifo" => qbind_core::dag::PayloadMode::Fifo,
            "dag" => qbind_core::dag::PayloadMode::Dag,
            other => return Err(format!("unknown --mempool-mode {other:?} (fifo or dag)")),
        };
    }
    if let Some(mode) = &args.diversity_mode {
        s.diversity = mode_named(
            "--diversity-mode",
            mode,
            [
                DiversityMode::Off,
                DiversityMode::Warn,
                DiversityMode::Enforce,
            ],
        )?;
    }
    if let Some(mode) = &args.mempool_eviction_mode {
        s.fee_mempool.eviction_mode = mode_named(
            "--mempool-eviction-mode",
            mode,
            [EvictionMode::Off, EvictionMode::Warn, EvictionMode::Enforce],
        )?;
    }
    if let Some(n) = args.mempool_eviction_max_per_interval {
        s.fee_mempool.max_evictions_per_interval = n;
    }
    if let Some(secs) = args.mempool_eviction_interval_secs {
        s.fee_mempool.eviction_interval_ms = secs.saturating_mul(1_000).max(1);
    }
    if let Some(n) = args.mempool_max_pending_txs {
        s.fee_mempool.capacity = n.max(1);
    }
    if let Some(mode) = &args.monetary_mode {
        s.monetary_mode =
            Some(monetary_mode_named(mode).ok_or_else(|| {
                format!("unknown --monetary-mode {mode:?} (off, shadow or active)")
            })?);
    }
    s.fee_priority = args.enable_fee_priority.unwrap_or(true);
    s.discovery = args.enable_discovery.unwrap_or(true);
    s.load = match (args.load_generator, &args.load_accounts) {
        (Some(false), _) => Load::Off,
        (_, Some(path)) => Load::Keys(load_account_keys(path).map_err(|e| e.to_string())?),
        (Some(true), None) | (None, None) if profile == Profile::Devnet => Load::SeedAccounts,
        (Some(true), None) => Load::SeedAccounts,
        (None, None) => Load::Off,
    };
    Ok(s)
}

/// The configuration the MainNet checks look at.
fn node_config(
    args: &Args,
    settings: &ChainSettings,
    genesis: Option<&Genesis>,
) -> Result<NodeConfig, String> {
    let signer_exit_on_failure = match args.signer_failure_mode.as_deref() {
        None => settings.profile.preset().signer_exit_on_failure,
        Some("exit-on-failure") => true,
        Some(_) => false,
    };
    let monetary_mode = settings.monetary_mode.unwrap_or_else(|| {
        genesis.map_or(settings.profile.preset().monetary, Genesis::monetary_mode)
    });
    if let (Some(g), Some(m)) = (genesis, settings.monetary_mode)
        && g.monetary_mode() != m
    {
        return Err(format!(
            "--monetary-mode {m:?} differs from the genesis's {:?}: every validator must run \
             the chain's monetary mode",
            g.monetary_mode()
        ));
    }
    let own_keys = args.validator_set.is_some() || genesis.is_some();
    Ok(NodeConfig {
        profile: settings.profile,
        genesis_env: genesis.map_or(Profile::Devnet.env(), |g| g.profile.env()),
        genesis_file: genesis.is_some(),
        data_dir: args.data_dir.clone(),
        gas_enabled: true,
        fee_priority: settings.fee_priority,
        payload_mode: settings.payload_mode,
        p2p: args.p2p == "kemtls" || own_keys,
        validators_in_process: if args.validator_index.is_some() || own_keys {
            1
        } else {
            args.local_validators
        },
        discovery: settings.discovery,
        signer_mode: args.signer_mode.clone(),
        signer_exit_on_failure,
        diversity: settings.diversity,
        monetary_mode,
        snapshot_interval: args.snapshot_dir.as_ref().map(|_| args.snapshot_interval),
        eviction_mode: settings.fee_mempool.eviction_mode,
        load_generator: !matches!(settings.load, Load::Off),
    })
}

/// Apply the MainNet checks: print them with `--validate-only` (and exit),
/// refuse a MainNet start that breaks one (exit status 2).
fn validate(args: &Args, config: &NodeConfig) -> Result<Option<ExitCode>, Failure> {
    let violations = validate_mainnet_invariants(config);
    let mainnet = config.profile == Profile::Mainnet;
    if args.validate_only {
        println!("effective configuration:");
        for line in config.describe() {
            println!("  {line}");
        }
        println!(
            "MainNet invariants (runbook §3.2){}:",
            if mainnet {
                ""
            } else {
                ", informational for this profile"
            }
        );
        for line in config.check_lines() {
            println!("  {line}");
        }
        return Ok(Some(if mainnet && !violations.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        }));
    }
    if mainnet && !violations.is_empty() {
        let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Err(format!(
            "refusing to start on MainNet, the configuration breaks {} invariant(s):\n  {}",
            list.len(),
            list.join("\n  ")
        )
        .into());
    }
    Ok(None)
}

fn run(mut args: Args) -> Result<ExitCode, Failure> {
    let genesis = match &args.genesis {
        Some(path) => Some(Genesis::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let profile = match (&args.profile, &genesis) {
        (Some(name), _) => Profile::parse(name).map_err(|e| e.to_string())?,
        (None, Some(g)) => g.profile,
        (None, None) => Profile::Devnet,
    };
    let env = profile.env();
    let settings = chain_settings(&args, profile)?;
    let config = node_config(&args, &settings, genesis.as_ref())?;
    if let Some(code) = validate(&args, &config)? {
        return Ok(code);
    }
    if genesis.is_none() && profile != Profile::Devnet {
        return Err(format!(
            "profile {profile} needs a genesis file (--genesis); the seed genesis is DevNet's"
        )
        .into());
    }
    let data_dir = args.data_dir.clone().ok_or_else(|| {
        "the following required argument was not provided: --data-dir".to_string()
    })?;
    if let Some(stage_b) = args.enable_stage_b {
        args.executor = if stage_b {
            ExecutorArg::StageB
        } else {
            ExecutorArg::Sequential
        };
    }
    if args.validator_set.is_some() || genesis.is_some() {
        if args.p2p == "memory" {
            args.p2p = "kemtls".into();
        }
    } else if args.signer_mode.is_some() {
        return Err(
            "--signer-mode needs --validator-set or --genesis (the other validators' keys)"
                .to_string()
                .into(),
        );
    }
    let retention = retention_mode(&args.state_retention_mode, args.state_retain_height)
        .map_err(|e| e.to_string())?;
    let snapshots = args.snapshot_dir.clone().map(|dir| SnapshotConfig {
        snapshot_dir: dir,
        interval_blocks: args.snapshot_interval,
        max_snapshots: args.max_snapshots,
        chain_id: 0, // set per network by the runner
    });
    let network = match args.p2p.as_str() {
        "memory" => Network::Memory,
        "kemtls" => Network::Kemtls {
            ip: args.p2p_ip,
            base_port: args.p2p_base_port,
        },
        other => return Err(format!("unknown --p2p {other:?} (memory or kemtls)").into()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let keys = runtime.block_on(operator_keys(&args, env, genesis.as_ref()))?;
    let profile = settings.profile;
    let validators = match &keys {
        Keys::Operator { set, .. } => set.validators.len(),
        Keys::Devnet => args.local_validators,
    };
    if args.fast_sync_validator >= validators.max(1) {
        return Err("--fast-sync-validator is not one of the local validators"
            .to_string()
            .into());
    }
    let opts = LocalOptions {
        validators,
        data_dir,
        blocks: args.blocks,
        tx_interval: Duration::from_millis(args.tx_interval_ms),
        accounts: args.accounts,
        metrics_addr: args.metrics_addr,
        maintenance: Maintenance {
            snapshots,
            retention,
            prune_pause: Duration::from_millis(500),
        },
        fast_sync: args
            .fast_sync_snapshot_dir
            .zip(args.trusted_snapshot_anchor)
            .map(|(snapshot, anchor)| FastSync {
                validator: args.fast_sync_validator,
                snapshot,
                anchor,
            }),
        base_timeout_ms: args.base_timeout_ms,
        executor: match args.executor {
            ExecutorArg::StageB => Executor::StageB,
            ExecutorArg::Sequential => Executor::Sequential,
        },
        network,
        only: args.validator_index,
        keys,
        genesis: genesis.map(Box::new),
        settings,
    };
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if let Some(signal) = stop_signal().await {
                eprintln!("qbind-node: {signal}, stopping after the current block");
                let _ = stop_tx.send(true);
            }
        });
        match opts.only {
            Some(i) => println!(
                "qbind-node: {} validator {i} of {} ({}), data in {}",
                profile,
                opts.validators,
                match &opts.keys {
                    Keys::Devnet => "DevNet seed keys".to_string(),
                    Keys::Operator { signer, .. } =>
                        format!("own keys, signer failure mode {:?}", signer.mode()),
                },
                opts.data_dir.display()
            ),
            None => println!(
                "qbind-node: {} local {} validators, data in {}",
                opts.validators,
                profile,
                opts.data_dir.display()
            ),
        }
        let summary = run_local(opts, stop_rx, |line| println!("{line}"))
            .await
            .map_err(|e| match e {
                NodeError::SignerExit(code) => Failure::Signer(code),
                other => Failure::Usage(other.to_string()),
            })?;
        println!(
            "stopped: validators {:?} executed heights {:?} (resumed from {:?}); {} transfers executed, \
             {} submitted; state roots {}",
            summary.validators,
            summary.executed_height,
            summary.resumed_from,
            summary.transfers,
            summary.submitted,
            if summary.root_mismatches.is_empty() {
                "equal on all validators"
            } else {
                "DIFFER"
            }
        );
        Ok(if summary.root_mismatches.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
