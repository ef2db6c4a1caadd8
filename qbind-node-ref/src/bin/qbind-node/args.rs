//! `qbind-node`'s command line: flags (runbook §3.5, §5), the `init`
//! subcommand, and the value parsers.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use qbind_node_ref::store::StoreBackend;
use qbind_store::snapshot::TrustAnchor;

/// Parse `--trusted-snapshot-anchor`.
pub(crate) fn parse_anchor(text: &str) -> Result<TrustAnchor, String> {
    text.parse()
        .map_err(|e: qbind_store::snapshot::SnapshotError| e.to_string())
}

/// `--executor` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum ExecutorArg {
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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Sub>,
    #[command(flatten)]
    pub(crate) args: Args,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Sub {
    /// Create a node's store(s) from a genesis file and record its hash.
    Init(InitArgs),
}

/// `qbind-node init` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// The genesis file (JSON, docs/node.md).
    #[arg(long)]
    pub(crate) genesis: PathBuf,
    /// Data directory: validator i's store is DIR/validator-i.
    #[arg(short = 'd', long)]
    pub(crate) data_dir: PathBuf,
    /// Only this validator's store (default: every validator of the genesis).
    #[arg(long, visible_alias = "validator-id", conflicts_with = "full_node_id")]
    pub(crate) validator_index: Option<usize>,
    /// Only this full node's store, DIR/full-node-ID (ID at least the
    /// validator count).
    #[arg(long)]
    pub(crate) full_node_id: Option<usize>,
    /// The storage engine of the new stores: fjall or rocksdb (rocksdb
    /// needs a build with `--features rocksdb`).
    #[arg(long, default_value = "fjall", value_parser = db_backend)]
    pub(crate) db_backend: StoreBackend,
}

/// `--db-backend NAME`.
fn db_backend(name: &str) -> Result<StoreBackend, String> {
    StoreBackend::named(name).ok_or_else(|| format!("unknown backend {name:?} (fjall or rocksdb)"))
}

/// Command-line flags (runbook §3.5, §5); every long flag is also a key of
/// the `--config` TOML file.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// TOML config file whose keys are the long flag names; flags given on
    /// the command line override it; unknown keys are an error.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Network profile: devnet, testnet-alpha, testnet-beta (or testnet),
    /// mainnet (default: the genesis file's, else devnet).
    #[arg(short = 'P', long)]
    pub(crate) profile: Option<String>,
    /// Directory of the validators' stores.
    #[arg(short = 'd', long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Genesis file (`qbind-genesis`); needs validators with their own keys
    /// (--signer-mode). Without it: the DevNet seed genesis.
    #[arg(long, conflicts_with = "validator_set")]
    pub(crate) genesis: Option<PathBuf>,
    /// Accounts file (`qbind-genesis` accounts.json) the load generator
    /// spends from.
    #[arg(long)]
    pub(crate) load_accounts: Option<PathBuf>,
    /// Run the built-in load generator (default: on for devnet, off
    /// otherwise).
    #[arg(long, action = clap::ArgAction::Set)]
    pub(crate) load_generator: Option<bool>,
    /// Print the effective configuration and the MainNet checks, then exit
    /// (2 if a MainNet profile breaks one).
    #[arg(long)]
    pub(crate) validate_only: bool,
    /// Payload source: fifo or dag (default: the profile's).
    #[arg(long)]
    pub(crate) mempool_mode: Option<String>,
    /// The first height whose system transactions (on-chain key rotations)
    /// are applied: below it they are refused like undecodable bytes, as a
    /// version without them did. Every node of a network must use the same
    /// value: the upgrade envelope's activation height (default 0: from
    /// genesis).
    #[arg(long, default_value_t = 0)]
    pub(crate) system_tx_activation_height: u64,
    /// The fee-priority mempool (default true).
    #[arg(long, action = clap::ArgAction::Set)]
    pub(crate) enable_fee_priority: Option<bool>,
    /// P2P peer discovery (default true).
    #[arg(long, action = clap::ArgAction::Set)]
    pub(crate) enable_discovery: Option<bool>,
    /// Stage B parallel execution (true) or the sequential executor
    /// (false); same as --executor.
    #[arg(long, action = clap::ArgAction::Set)]
    pub(crate) enable_stage_b: Option<bool>,
    /// P2P diversity buckets: off, warn, enforce (default: the profile's).
    #[arg(long)]
    pub(crate) diversity_mode: Option<String>,
    /// Monetary engine: off, shadow, active (default: the genesis's).
    #[arg(long)]
    pub(crate) monetary_mode: Option<String>,
    /// Bind this validator's KEMTLS listener here (e.g. 0.0.0.0:9000)
    /// instead of its address in the genesis or validator-set file.
    #[arg(long)]
    pub(crate) p2p_listen_addr: Option<SocketAddr>,
    /// The address this validator announces to its peers as its own
    /// (behind NAT or a port forward; default: its listen address).
    #[arg(long)]
    pub(crate) p2p_advertised_addr: Option<SocketAddr>,
    /// Comma-separated IP:port of the validators to dial at start (each a
    /// validator's address in the genesis or validator-set file); peer
    /// discovery finds the others. Default: every validator.
    #[arg(long, value_delimiter = ',')]
    pub(crate) bootstrap_peers: Vec<SocketAddr>,
    /// Mempool eviction rate limiting: off, warn, enforce.
    #[arg(long)]
    pub(crate) mempool_eviction_mode: Option<String>,
    /// Capacity evictions allowed per interval.
    #[arg(long)]
    pub(crate) mempool_eviction_max_per_interval: Option<u32>,
    /// Eviction interval, seconds.
    #[arg(long)]
    pub(crate) mempool_eviction_interval_secs: Option<u64>,
    /// Most pending transactions in the mempool.
    #[arg(long)]
    pub(crate) mempool_max_pending_txs: Option<usize>,
    /// Run this many validators in this process (DevNet keys).
    #[arg(long, default_value_t = 4)]
    pub(crate) local_validators: usize,
    /// Stop after every validator executed this many more blocks (0: run
    /// until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub(crate) blocks: u64,
    /// Submit one signed transfer every this many milliseconds.
    #[arg(long, default_value_t = 5)]
    pub(crate) tx_interval_ms: u64,
    /// Funded DevNet accounts.
    #[arg(long, default_value_t = 32)]
    pub(crate) accounts: usize,
    /// Base view timeout in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) base_timeout_ms: u64,
    /// How committed blocks are executed: `stage-b` (parallel signature
    /// checks and conflict-aware parallel execution) or `sequential` (the
    /// reference). Both give the same state.
    #[arg(long, value_enum, default_value_t = ExecutorArg::StageB)]
    pub(crate) executor: ExecutorArg,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Serve the public HTTP/JSON API (docs/api.md) at this address (port 0:
    /// a free port, printed). Bind a loopback or private address.
    #[arg(long)]
    pub(crate) api_addr: Option<SocketAddr>,
    /// The validator whose pool and store the API uses; it must run in this
    /// process (default: the first validator of the process).
    #[arg(long, requires = "api_addr")]
    pub(crate) api_validator: Option<usize>,
    /// API requests per second each client may make (token bucket with
    /// bursts of ten seconds' worth, at least 200); 0 turns the per-client
    /// limit off (for a trusted load generator, as `qbind-localnet` runs).
    #[arg(long, default_value_t = 20)]
    pub(crate) api_rate_limit: u32,
    /// Keep the receipts and state roots of the last this many executed
    /// heights in the API validator's store (they survive restarts; older
    /// transactions are `tx_not_found`). At least 1.
    #[arg(long, default_value_t = qbind_node_ref::local::receipt_store::RECEIPT_RETAIN_HEIGHTS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) api_receipt_heights: u64,
    /// Serve the authenticated admin endpoint (`qbind-admin`: status,
    /// peers, dag-status, snapshot, prune) at this address (port 0: a free
    /// port, printed). A loopback address unless
    /// --admin-allow-non-loopback. Needs --admin-token-file.
    #[arg(long)]
    pub(crate) admin_addr: Option<SocketAddr>,
    /// The admin endpoint's token: at least 32 random bytes as hex, in a
    /// file only its owner may read (`qbind-admin gen-token FILE` writes
    /// one); a file readable by group or others is refused.
    #[arg(long, requires = "admin_addr")]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Let --admin-addr be a non-loopback address (the endpoint is plain
    /// HTTP: only on a network protected otherwise).
    #[arg(long, requires = "admin_addr")]
    pub(crate) admin_allow_non_loopback: bool,
    /// Where snapshots are written (none: snapshots off).
    #[arg(long)]
    pub(crate) snapshot_dir: Option<PathBuf>,
    /// Snapshot every this many executed blocks.
    #[arg(long, default_value_t = qbind_store::snapshot::DEFAULT_INTERVAL_BLOCKS)]
    pub(crate) snapshot_interval: u64,
    /// Snapshots kept; older ones are removed.
    #[arg(long, default_value_t = qbind_store::snapshot::DEFAULT_MAX_SNAPSHOTS)]
    pub(crate) max_snapshots: usize,
    /// The storage engine: fjall or rocksdb (rocksdb needs a build with
    /// `--features rocksdb`; a data directory keeps the engine that
    /// created it).
    #[arg(long, default_value = "fjall", value_parser = db_backend)]
    pub(crate) db_backend: StoreBackend,
    /// archival (keep all blocks) or height (keep the last --state-retain-height).
    #[arg(long, default_value = "archival")]
    pub(crate) state_retention_mode: String,
    /// Blocks kept in height retention mode.
    #[arg(long)]
    pub(crate) state_retain_height: Option<u64>,
    /// Restore a validator's store from this snapshot directory
    /// (`<snapshot_dir>/<height>`) before starting, then continue from its
    /// height. The store directory must be absent or empty. Needs
    /// --trusted-snapshot-anchor.
    #[arg(long, requires = "trusted_snapshot_anchor")]
    pub(crate) fast_sync_snapshot_dir: Option<PathBuf>,
    /// HEIGHT:BLOCK_HASH_HEX:STATE_ROOT_HEX of the snapshot to restore, from
    /// a node you trust (qbind-node prints it for every snapshot it writes);
    /// a snapshot that does not match it is refused.
    #[arg(long, requires = "fast_sync_snapshot_dir", value_parser = parse_anchor)]
    pub(crate) trusted_snapshot_anchor: Option<TrustAnchor>,
    /// Which local validator --fast-sync-snapshot-dir restores.
    #[arg(long, default_value_t = 0)]
    pub(crate) fast_sync_validator: usize,
    /// State sync: when this node has no store yet, fetch the newest
    /// snapshot these peers serve (their public API, http://host:port;
    /// repeat the flag or separate with commas), verify it against a commit
    /// proof and this node's validator sets, restore it, then continue by
    /// block sync (docs/sync.md "State sync"). Peers serve their newest
    /// snapshot when started with --snapshot-dir and --api-addr.
    #[arg(long, value_delimiter = ',', conflicts_with = "fast_sync_snapshot_dir")]
    pub(crate) state_sync_from: Vec<String>,
    /// Transport between validators: memory (all in this process) or
    /// kemtls (ML-KEM-768 KEMTLS over TCP, qbind-net).
    #[arg(long, default_value = "memory")]
    pub(crate) p2p: String,
    /// With --p2p kemtls: the IP every validator listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) p2p_ip: std::net::IpAddr,
    /// With --p2p kemtls: validator i listens on this port + i.
    #[arg(long, default_value_t = 29_000)]
    pub(crate) p2p_base_port: u16,
    /// Run only this validator of the --local-validators (one process per
    /// validator; needs --p2p kemtls).
    #[arg(long, visible_alias = "validator-id")]
    pub(crate) validator_index: Option<usize>,
    /// validator (default), full or sentry. A full node follows the chain of the
    /// --genesis validators as the authenticated non-validator peer
    /// --full-node-id, verifies and executes every block, serves the API's
    /// reads and signs nothing (docs/node.md "Full nodes"). Needs
    /// --p2p-listen-addr, --p2p-identity-key and validators that list its
    /// key in their --full-node-keys. A sentry fronts validator
    /// --validator-index with that validator's genesis P2P key (docs/node.md
    /// "Sentries").
    #[arg(long, value_enum, default_value_t = RoleArg::Validator)]
    pub(crate) role: RoleArg,
    /// A validator behind a sentry: the sentry's link address, the only
    /// peer it connects to. A sentry: where it listens for its validator's
    /// link (a private address). See docs/node.md "Sentries".
    #[arg(long)]
    pub(crate) sentry_link_addr: Option<SocketAddr>,
    /// --role sentry: the validator's link key (the `p2p_identity.pub` of
    /// the key it runs with), the only key the link listener admits.
    #[arg(long)]
    pub(crate) sentry_validator_pub: Option<PathBuf>,
    /// --role full: this node's id among the peers (at least the number of
    /// validators; the id its key has in the validators' --full-node-keys).
    #[arg(long)]
    pub(crate) full_node_id: Option<usize>,
    /// A validator admits the full nodes of this TOML file
    /// (`[[full_node]] id = N, p2p_pub = "<hex>"` or `p2p_pub_file`) as
    /// authenticated non-validator peers (docs/node.md "Full nodes").
    #[arg(long)]
    pub(crate) full_node_keys: Option<PathBuf>,
    /// Validator-set file (docs/node.md): every validator's public keys,
    /// address and stake. Runs validator --validator-index with the keys of
    /// --signer-mode instead of DevNet seed keys; implies --p2p kemtls and
    /// sets --local-validators to the file's count.
    #[arg(long)]
    pub(crate) validator_set: Option<PathBuf>,
    /// With --validator-set: loopback-testing, encrypted-fs, hsm-pkcs11 or
    /// remote-signer.
    #[arg(long)]
    pub(crate) signer_mode: Option<String>,
    /// Keystore directory (consensus.key for encrypted-fs; p2p_identity.key
    /// for every mode unless --p2p-identity-key is given).
    #[arg(long)]
    pub(crate) signer_keystore_path: Option<PathBuf>,
    /// Keystore directory of this validator's next consensus key
    /// (encrypted-fs, same passphrase, its double-sign record beside it, as
    /// `qbind-keygen generate` makes it): the node signs with it from the
    /// epoch in which an executed on-chain rotation to that key takes effect
    /// (docs/key-rotation.md), with no restart.
    #[arg(long)]
    pub(crate) next_signer_keystore_path: Option<PathBuf>,
    /// Environment variable holding the keystore passphrase.
    #[arg(long, default_value = "QBIND_KEYSTORE_PASSPHRASE")]
    pub(crate) signer_passphrase_env: String,
    /// File holding the keystore passphrase (regular, owner-only, at most
    /// 4 KiB); preferred over --signer-passphrase-env, whose value stays in
    /// the process environment (docs/signer.md).
    #[arg(long)]
    pub(crate) signer_passphrase_file: Option<PathBuf>,
    /// The node's encrypted P2P identity key (default:
    /// <--signer-keystore-path>/p2p_identity.key).
    #[arg(long)]
    pub(crate) p2p_identity_key: Option<PathBuf>,
    /// hsm-pkcs11: the HSM TOML (library_path, token_label, key_label, pin_env_var).
    #[arg(long)]
    pub(crate) hsm_config_path: Option<PathBuf>,
    /// remote-signer: kemtls://host:port of the qbind-remote-signer daemon.
    #[arg(long)]
    pub(crate) remote_signer_url: Option<String>,
    /// remote-signer: the daemon's p2p_identity.pub.
    #[arg(long)]
    pub(crate) remote_signer_pub: Option<PathBuf>,
    /// remote-signer: connect and per-request timeout in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) remote_signer_timeout_ms: u64,
    /// exit-on-failure or log-and-continue (default: exit-on-failure on
    /// MainNet, log-and-continue elsewhere).
    #[arg(long)]
    pub(crate) signer_failure_mode: Option<String>,
    /// Directory of the double-sign record (default: --signer-keystore-path,
    /// where qbind-keygen creates it with the key; else
    /// `<--data-dir>/signer-<index>`). Keep it with the validator, not in its
    /// store: restoring a snapshot must not roll it back.
    #[arg(long)]
    pub(crate) double_sign_dir: Option<PathBuf>,
    /// Create an EMPTY double-sign record if there is none (first start of a
    /// new key only; logged; see docs/signer.md "Losing the record").
    /// Without it a missing record stops start-up.
    #[arg(long)]
    pub(crate) init_double_sign_record: bool,
    /// Log lines on stderr: `text` (human-readable) or `json` (one object
    /// per line, for log shippers). Consensus lines carry the validator,
    /// committed height, view and peer as fields.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Least severe log level written: error, warn, info (one line per
    /// committed block and validator), debug (rejected inputs, send
    /// failures, executions) or trace.
    #[arg(long, default_value = "warn")]
    pub(crate) log_level: tracing::Level,
    /// Stop cleanly (as on SIGTERM) when standard input reaches its end: a
    /// supervisor that holds the other end of a pipe — `qbind-localnet` —
    /// then never leaves validators running behind it, even if it is killed
    /// with SIGKILL.
    #[arg(long)]
    pub(crate) stop_with_stdin: bool,
}

/// `--role` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RoleArg {
    /// A validator: votes, proposes, signs.
    Validator,
    /// A full node: follows, verifies, executes, serves reads; never signs.
    Full,
    /// A sentry: the public face of validator --validator-index; relays
    /// between the network and that validator's link.
    Sentry,
}

/// `--log-format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
