//! `qbind-node`: run QBIND validators.
//!
//! Today it runs a local DevNet of `--local-validators N` validators in one
//! process, each with its own persistent store under `--data-dir`, committing
//! and executing signed transfers, with the runbook's store flags
//! (`--snapshot-dir`, `--snapshot-interval`, `--max-snapshots`,
//! `--state-retention-mode`, `--state-retain-height`,
//! `--fast-sync-snapshot-dir`) and a Prometheus endpoint (`--metrics-addr`).
//!
//! ```text
//! qbind-node --profile devnet --data-dir /tmp/qbind --local-validators 4 --blocks 50
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use qbind_node_ref::local::{LocalOptions, Network, run_local};
use qbind_node_ref::node::{Maintenance, retention_mode};
use qbind_store::snapshot::SnapshotConfig;

/// Command-line flags (runbook §3.5, §5).
#[derive(Debug, Parser)]
#[command(name = "qbind-node", version, about = "Run QBIND validators")]
struct Args {
    /// Network profile: devnet, testnet or mainnet.
    #[arg(long, default_value = "devnet")]
    profile: String,
    /// Directory of the validators' stores.
    #[arg(long)]
    data_dir: PathBuf,
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
    /// height. The store directory must be absent or empty.
    #[arg(long)]
    fast_sync_snapshot_dir: Option<PathBuf>,
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
    #[arg(long)]
    validator_index: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("qbind-node: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    match args.profile.as_str() {
        "devnet" => {}
        "testnet" | "mainnet" => {
            return Err(format!(
                "profile {} needs real validator keys and the P2P transport; this build \
                 runs local DevNet validators only (--profile devnet)",
                args.profile
            ));
        }
        other => return Err(format!("unknown --profile {other:?}")),
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
        other => return Err(format!("unknown --p2p {other:?} (memory or kemtls)")),
    };
    if args.fast_sync_validator >= args.local_validators.max(1) {
        return Err("--fast-sync-validator is not one of the local validators".into());
    }
    let opts = LocalOptions {
        validators: args.local_validators,
        data_dir: args.data_dir,
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
            .map(|p| (args.fast_sync_validator, p)),
        base_timeout_ms: args.base_timeout_ms,
        network,
        only: args.validator_index,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("qbind-node: Ctrl-C, stopping after the current block");
                let _ = stop_tx.send(true);
            }
        });
        match opts.only {
            Some(i) => println!(
                "qbind-node: DevNet validator {i} of {}, data in {}",
                opts.validators,
                opts.data_dir.display()
            ),
            None => println!(
                "qbind-node: {} local DevNet validators, data in {}",
                opts.validators,
                opts.data_dir.display()
            ),
        }
        let summary = run_local(opts, stop_rx, |line| println!("{line}"))
            .await
            .map_err(|e| e.to_string())?;
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
