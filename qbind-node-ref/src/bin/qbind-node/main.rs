//! `qbind-node`: run QBIND validators.
//!
//! A local DevNet of `--local-validators N` validators in one process (DevNet
//! seed keys and genesis), or one validator per process with its own keys
//! (`--validator-set` or `--genesis` with `--signer-mode`), on the profile
//! `-P devnet|testnet-alpha|testnet-beta|mainnet` (MainNet refuses any
//! configuration breaking runbook §3.2; `--validate-only` prints the
//! checks). Flags may come from a TOML `--config` file; `qbind-node init`
//! binds a data directory to a genesis. Each validator keeps its store
//! under `-d/--data-dir`, with the runbook's store flags (`--snapshot-dir`,
//! `--snapshot-interval`, `--max-snapshots`, `--state-retention-mode`,
//! `--state-retain-height`, `--fast-sync-snapshot-dir` with
//! `--trusted-snapshot-anchor`) and a Prometheus endpoint
//! (`--metrics-addr`). `--api-addr` serves the public HTTP/JSON API
//! (docs/api.md) over one of its validators (`--api-validator`);
//! `--admin-addr` with `--admin-token-file` the authenticated admin
//! endpoint `qbind-admin` talks to (docs/operator-tools.md). SIGINT and
//! SIGTERM stop it after the current block.
//!
//! ```text
//! qbind-node --profile devnet --data-dir /tmp/qbind --local-validators 4 --blocks 50
//! ```
//!
//! A fatal signer failure under ExitOnFailure stops the node with exit
//! status 1; bad flags, files or keys and MainNet violations exit with 2.

mod args;
mod keys;
mod logging;
mod sentry;
mod settings;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use qbind_api::limiter::RateLimitConfig;
use qbind_node_ref::admin::{AdminToken, check_addr};
use qbind_node_ref::config::config_file_args;
use qbind_node_ref::full_nodes::FullNodeKeys;
use qbind_node_ref::genesis::Genesis;
use qbind_node_ref::local::{
    AdminOptions, ApiOptions, Executor, FastSync, Keys, LocalOptions, Network, run_local,
};
use qbind_node_ref::node::{InitTarget, Maintenance, NodeError, init_data_dir, retention_mode};
use qbind_node_ref::profile::Profile;
use qbind_store::snapshot::SnapshotConfig;

use args::{Args, Cli, ExecutorArg, InitArgs, RoleArg, Sub};
use settings::{chain_settings, node_config, validate};

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
    // Long names and their aliases (`validator-id` for `validator-index`).
    let known: Vec<(String, bool)> = Cli::command()
        .get_arguments()
        .flat_map(|a| {
            let takes = a.get_action().takes_values();
            a.get_long()
                .into_iter()
                .chain(a.get_all_aliases().unwrap_or_default())
                .map(move |l| (l.to_owned(), takes))
                .collect::<Vec<_>>()
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
    let target = match (args.validator_index, args.full_node_id) {
        (Some(i), _) => Some(InitTarget::Validator(i)),
        (None, Some(id)) => Some(InitTarget::FullNode(id)),
        (None, None) => None,
    };
    let dirs = init_data_dir(&genesis, &args.data_dir, target, args.db_backend)
        .map_err(|e| e.to_string())?;
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
pub(crate) enum Failure {
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

/// `--api-rate-limit`: `per_second` requests per client and second, bursts
/// of ten seconds' worth (at least the default burst); 0: no limit.
fn api_rate_limit(per_second: u32) -> Option<RateLimitConfig> {
    let default = RateLimitConfig::default();
    (per_second > 0).then(|| RateLimitConfig {
        per_second,
        burst: per_second.saturating_mul(10).max(default.burst),
        ..default
    })
}

/// `--admin-addr` with its token (required: the endpoint never runs
/// without authentication, on any profile), the address checked.
fn admin_options(args: &Args) -> Result<Option<AdminOptions>, Failure> {
    let Some(addr) = args.admin_addr else {
        return Ok(None);
    };
    check_addr(addr, args.admin_allow_non_loopback)?;
    let Some(path) = &args.admin_token_file else {
        return Err(
            "--admin-addr needs --admin-token-file (the admin endpoint always \
             requires a token; `qbind-admin gen-token FILE` writes one)"
                .to_string()
                .into(),
        );
    };
    let token = AdminToken::load(path).map_err(|e| e.to_string())?;
    Ok(Some(AdminOptions { addr, token }))
}

/// The run's options from the checked flags.
fn local_options(
    mut args: Args,
    data_dir: std::path::PathBuf,
    keys: Keys,
    genesis: Option<Genesis>,
    settings: qbind_node_ref::local::ChainSettings,
) -> Result<LocalOptions, Failure> {
    if let Some(stage_b) = args.enable_stage_b {
        args.executor = if stage_b {
            ExecutorArg::StageB
        } else {
            ExecutorArg::Sequential
        };
    }
    let retention = retention_mode(&args.state_retention_mode, args.state_retain_height)
        .map_err(|e| e.to_string())?;
    let backend = args.db_backend;
    if !backend.available() {
        return Err(NodeError::BackendUnavailable(backend).to_string().into());
    }
    let validators = match &keys {
        Keys::Operator { set, .. } | Keys::Follower { set, .. } => set.validators.len(),
        Keys::Devnet => args.local_validators,
    };
    if let Keys::Follower { id, .. } = &keys {
        // A full node restores its own store.
        args.fast_sync_validator = *id;
    } else if args.fast_sync_validator >= validators.max(1) {
        return Err("--fast-sync-validator is not one of the local validators"
            .to_string()
            .into());
    }
    Ok(LocalOptions {
        validators,
        data_dir,
        blocks: args.blocks,
        tx_interval: Duration::from_millis(args.tx_interval_ms),
        accounts: args.accounts,
        metrics_addr: args.metrics_addr,
        admin: admin_options(&args)?,
        api: args.api_addr.map(|addr| ApiOptions {
            addr,
            validator: args.api_validator,
            rate_limit: api_rate_limit(args.api_rate_limit),
            receipt_heights: args.api_receipt_heights,
        }),
        maintenance: Maintenance {
            snapshots: args.snapshot_dir.clone().map(|dir| SnapshotConfig {
                snapshot_dir: dir,
                interval_blocks: args.snapshot_interval,
                max_snapshots: args.max_snapshots,
                chain_id: 0, // set per network by the runner
            }),
            retention,
            prune_pause: Duration::from_millis(500),
            backend,
        },
        fast_sync: args
            .fast_sync_snapshot_dir
            .zip(args.trusted_snapshot_anchor)
            .map(|(snapshot, anchor)| FastSync {
                validator: args.fast_sync_validator,
                snapshot,
                anchor,
            }),
        state_sync_from: args.state_sync_from.clone(),
        base_timeout_ms: args.base_timeout_ms,
        executor: match args.executor {
            ExecutorArg::StageB => Executor::StageB,
            ExecutorArg::Sequential => Executor::Sequential,
        },
        network: match args.p2p.as_str() {
            "memory" => Network::Memory,
            "kemtls" => Network::Kemtls {
                ip: args.p2p_ip,
                base_port: args.p2p_base_port,
            },
            other => return Err(format!("unknown --p2p {other:?} (memory or kemtls)").into()),
        },
        only: args.validator_index,
        keys,
        genesis: genesis.map(Box::new),
        settings,
    })
}

/// Run the node until it is done or stopped by SIGINT or SIGTERM; exit
/// status 1 if local validators disagreed on a state root.
async fn serve(
    opts: LocalOptions,
    profile: Profile,
    stop_with_stdin: bool,
) -> Result<ExitCode, Failure> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let on_stdin = stop_tx.clone();
    tokio::spawn(async move {
        if let Some(signal) = qbind_node_ref::signals::stop_signal().await {
            eprintln!("qbind-node: {signal}, stopping after the current block");
            let _ = stop_tx.send(true);
        }
    });
    if stop_with_stdin {
        // A plain thread: reading stdin blocks, and it ends only with it.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            eprintln!("qbind-node: standard input closed, stopping after the current block");
            let _ = on_stdin.send(true);
        });
    }
    match (opts.only, &opts.keys) {
        (_, Keys::Follower { id, .. }) => println!(
            "qbind-node: {profile} full node {id} following {} validators, data in {}",
            opts.validators,
            opts.data_dir.display()
        ),
        (Some(i), _) => println!(
            "qbind-node: {profile} validator {i} of {} ({}), data in {}",
            opts.validators,
            match &opts.keys {
                Keys::Devnet => "DevNet seed keys".to_string(),
                Keys::Operator {
                    signer, next_key, ..
                } => format!(
                    "own keys, signer failure mode {:?}{}",
                    signer.mode(),
                    next_key
                        .as_ref()
                        .map_or_else(String::new, |next| match next.loaded() {
                            Some(key) => format!(", next consensus key {key} loaded"),
                            None => format!(
                                ", next consensus key not loaded (qbind-admin load-next-key \
                                 once {} holds it)",
                                next.dir().display()
                            ),
                        })
                ),
                Keys::Follower { .. } => "full node".to_string(),
            },
            opts.data_dir.display()
        ),
        (None, _) => println!(
            "qbind-node: {} local {profile} validators, data in {}",
            opts.validators,
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
}

fn run(mut args: Args) -> Result<ExitCode, Failure> {
    logging::init(args.log_format, args.log_level);
    let genesis = match &args.genesis {
        Some(path) => Some(Genesis::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let profile = match (&args.profile, &genesis) {
        (Some(name), _) => Profile::parse(name).map_err(|e| e.to_string())?,
        (None, Some(g)) => g.profile,
        (None, None) => Profile::Devnet,
    };
    let settings = chain_settings(&args, profile)?;
    // The admin flags are checked before `--validate-only` answers: a file
    // it passes is not refused at start (review finding).
    if args.role == RoleArg::Sentry && args.admin_addr.is_some() {
        return Err(
            "--admin-addr is not available on a sentry (--role sentry) yet; \
             serve it on the validator behind it"
                .to_string()
                .into(),
        );
    }
    admin_options(&args)?;
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
    if args.role == RoleArg::Sentry {
        return sentry::run(&args, genesis.as_ref(), &settings);
    }
    let data_dir = args.data_dir.clone().ok_or_else(|| {
        "the following required argument was not provided: --data-dir".to_string()
    })?;
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
    // The CPU split (`qbind_cpu_seconds_total`), before anything uses rayon.
    if !qbind_node_ref::metrics::cpu::install() {
        eprintln!(
            "qbind-node: warning: the CPU split is incomplete (meter or worker pool set up before it)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let keys = runtime.block_on(keys::operator_keys(&args, profile.env(), genesis.as_ref()))?;
    let stop_with_stdin = args.stop_with_stdin;
    let mut settings = settings;
    if let Some(path) = &args.full_node_keys {
        let set = keys
            .set_file()
            .ok_or_else(|| "--full-node-keys needs --genesis or --validator-set".to_string())?;
        let file = FullNodeKeys::load(path).map_err(|e| e.to_string())?;
        file.check_against(set).map_err(|e| e.to_string())?;
        settings.full_nodes = file.peers();
    }
    let opts = local_options(args, data_dir, keys, genesis, settings)?;
    runtime.block_on(serve(opts, profile, stop_with_stdin))
}
