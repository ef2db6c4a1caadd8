//! The validators of one `qbind-node` process: all of a local network
//! (`--local-validators N`, in-memory transport) or one validator per
//! process over KEMTLS. Every validator has its own persistent store under
//! the data directory, bound to the chain's genesis, runs the real engine
//! (chained HotStuff, FIFO or DAG payloads, the fee-priority pool,
//! execution of signed transfers with the state written atomically per
//! block). A load generator submits signed transfers between funded
//! accounts; with [`LocalOptions::api`] one validator also serves the public
//! HTTP/JSON API (`qbind-api`: submissions pass the admission check against
//! its executed state; receipts come from a bounded in-memory index).
//! Stopping and starting again resumes from the stores.
//!
//! A run has three stages: configuration ([`LocalOptions`] → `builder`:
//! the chain), services (`services`, `loadgen`, `render`: stores, engines,
//! transports, the load generator, `/metrics`) and run (`run`: follow the
//! engines, then stop in order).
//!
//! Keys come from one of two places ([`Keys`]): DevNet keys derived from
//! public seeds (for DevNet only: the binary refuses them for any other
//! profile), or a validator-set file or genesis with the public keys of
//! every validator plus this process's own signer (`qbind-signer`:
//! encrypted keystore, PKCS#11 token or remote signer) and P2P identity.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use qbind_core::crypto::KeyPair;
use qbind_core::traits::Signer;
use qbind_core::types::{AccountId, Hash32};
use tokio::sync::watch;

use qbind_core::consensus::ConsensusConfig;
use qbind_core::dag::PayloadMode;
use qbind_core::fee_mempool::FeeMempoolConfig;
use qbind_core::monetary::MonetaryMode;
use qbind_net::peers::diversity::DiversityMode;

pub use crate::genesis::Genesis;
use crate::node::{Maintenance, NodeError};
use crate::profile::Profile;
use crate::validator_set::ValidatorSetFile;
pub use next_key::NextKey;

mod admin;
mod api;
mod builder;
mod loadgen;
pub mod next_key;
pub mod receipt_store;
mod render;
mod run;
mod services;

pub use api::{BLOCK_WINDOW, PENDING_CAPACITY, PENDING_TTL, RECEIPT_CAPACITY, ReceiptIndex};
pub use loadgen::MAX_IN_FLIGHT;

/// Genesis balance of every DevNet account.
pub const DEVNET_BALANCE: u128 = 1_000_000_000_000;
/// DevNet epochs are short so that issuance is visible in a short run.
pub const DEVNET_BLOCKS_PER_EPOCH: u64 = 50;

/// A DevNet pool account (treasury, insurance, ...): the hash of its name.
fn pool_account(name: &[u8]) -> AccountId {
    AccountId(*Hash32::digest(&[b"QBIND-DEVNET-POOL:".as_slice(), name].concat()).as_bytes())
}

/// Fast sync of one local validator (`--fast-sync-snapshot-dir`,
/// `--fast-sync-validator`, `--trusted-snapshot-anchor`).
#[derive(Clone, Debug)]
pub struct FastSync {
    /// Which local validator is restored.
    pub validator: usize,
    /// The snapshot directory (`<snapshot_dir>/<height>`).
    pub snapshot: PathBuf,
    /// What the operator trusts about it; a snapshot that does not match is
    /// refused.
    pub anchor: qbind_store::snapshot::TrustAnchor,
}

/// Options of a local network run.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Number of validators (at least 1; 4 tolerates one fault).
    pub validators: usize,
    /// Each validator's store is `data_dir/validator-<i>`.
    pub data_dir: PathBuf,
    /// Stop once every validator executed this many more blocks (0: run
    /// until shut down).
    pub blocks: u64,
    /// One signed transfer is submitted every this often.
    pub tx_interval: Duration,
    /// Funded accounts that send to each other.
    pub accounts: usize,
    /// Serve `/metrics` here.
    pub metrics_addr: Option<SocketAddr>,
    /// Snapshots and pruning, applied to every validator's store (snapshots
    /// of validator `i` go to `<snapshot_dir>/validator-<i>`).
    pub maintenance: Maintenance,
    /// Restore one validator's store from a snapshot first.
    pub fast_sync: Option<FastSync>,
    /// Peers' API URLs to fetch a verified state from when this process's
    /// one node has no store yet (`--state-sync-from`; docs/sync.md "State
    /// sync"). Empty: no state sync.
    pub state_sync_from: Vec<String>,
    /// Base view timeout.
    pub base_timeout_ms: u64,
    /// How the validators talk to each other.
    pub network: Network,
    /// Run only this validator of the `validators` (the others run in other
    /// processes; needs [`Network::Kemtls`]). `None`: all in this process.
    pub only: Option<usize>,
    /// Where the validators' keys come from.
    pub keys: Keys,
    /// How committed blocks are executed.
    pub executor: Executor,
    /// The chain's genesis; `None`: the DevNet seed genesis of `validators`
    /// validators and `accounts` accounts ([`Genesis::devnet_seeded`]).
    pub genesis: Option<Box<Genesis>>,
    /// Profile-derived settings (DevNet defaults: [`ChainSettings::default`]).
    pub settings: ChainSettings,
    /// Serve the public HTTP/JSON API (`qbind-api`) over one local
    /// validator (`--api-addr`, `--api-validator`).
    pub api: Option<ApiOptions>,
    /// Serve the authenticated admin endpoint (`--admin-addr`,
    /// `--admin-token-file`; [`crate::admin`]) over every local validator.
    pub admin: Option<AdminOptions>,
}

/// Where the admin endpoint listens and the token it requires.
#[derive(Clone, Debug)]
pub struct AdminOptions {
    /// Listen here (port 0: a free port; the address is printed). The
    /// caller checks it ([`crate::admin::check_addr`]).
    pub addr: SocketAddr,
    /// The token every request must carry.
    pub token: crate::admin::AdminToken,
}

/// Where and over which validator the public API is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiOptions {
    /// Listen here (port 0: a free port; the address is printed).
    pub addr: SocketAddr,
    /// The validator (index in the network) whose pool receives the
    /// submissions and whose store answers the reads; it must run in this
    /// process. `None`: the first validator of the process.
    pub validator: Option<usize>,
    /// The per-client rate limit (`--api-rate-limit`); `None`: off.
    pub rate_limit: Option<qbind_api::limiter::RateLimitConfig>,
    /// Executed heights whose receipts and state roots the validator's
    /// store keeps for the API (`--api-receipt-heights`; docs/node.md).
    pub receipt_heights: u64,
}

/// Where the load generator's accounts come from.
#[derive(Clone, Debug, Default)]
pub enum Load {
    /// The DevNet seed accounts `0..accounts` (the seed genesis funds them).
    #[default]
    SeedAccounts,
    /// These keys (`--load-accounts`, written by the genesis generator).
    Keys(Vec<KeyPair>),
    /// No load generator.
    Off,
}

/// The settings a profile presets and flags may change.
#[derive(Clone, Debug)]
pub struct ChainSettings {
    /// The network profile (the genesis must be of it).
    pub profile: Profile,
    /// FIFO or DAG payloads.
    pub payload_mode: PayloadMode,
    /// The fee-priority pool (true) or the FIFO pool for opaque bytes.
    pub fee_priority: bool,
    /// Fee-priority pool parameters (capacity, eviction limits).
    pub fee_mempool: FeeMempoolConfig,
    /// P2P diversity buckets.
    pub diversity: DiversityMode,
    /// P2P peer exchange.
    pub discovery: bool,
    /// The monetary mode; `None`: the genesis's.
    pub monetary_mode: Option<MonetaryMode>,
    /// The load generator.
    pub load: Load,
    /// Bind this validator's P2P listener here instead of its address in
    /// the genesis or validator-set file (`--p2p-listen-addr`, one
    /// validator per process).
    pub p2p_listen: Option<SocketAddr>,
    /// Announce this address to peers as this validator's own
    /// (`--p2p-advertised-addr`, one validator per process); `None`: the
    /// listen address.
    pub p2p_advertised: Option<SocketAddr>,
    /// Dial only these addresses at start (each must be a validator's
    /// address in the genesis or validator-set file); discovery finds the
    /// others. Empty: dial every validator (`--bootstrap-peers`).
    pub bootstrap_peers: Vec<SocketAddr>,
    /// Talk to the network only through this validator's sentry, whose
    /// link listener is here (`--sentry-link-addr`; one validator per
    /// process, with its own keys).
    pub sentry_link: Option<SocketAddr>,
    /// Full nodes this validator admits as authenticated non-validator
    /// peers (`--full-node-keys`; ids at least the validator count).
    pub full_nodes:
        std::collections::BTreeMap<qbind_core::types::ValidatorId, qbind_net::PeerPublic>,
    /// The first height whose system transactions are applied
    /// (`--system-tx-activation-height`,
    /// [`ConsensusConfig::system_tx_activation`]); the same on every node.
    pub system_tx_activation: qbind_core::types::Height,
}

impl ChainSettings {
    /// The preset of `profile`.
    #[must_use]
    pub fn of(profile: Profile) -> Self {
        let preset = profile.preset();
        ChainSettings {
            profile,
            payload_mode: preset.payload_mode,
            fee_priority: true,
            fee_mempool: ConsensusConfig::new(profile.env()).fee_mempool,
            diversity: preset.diversity,
            discovery: true,
            monetary_mode: None,
            load: if profile == Profile::Devnet {
                Load::SeedAccounts
            } else {
                Load::Off
            },
            p2p_listen: None,
            p2p_advertised: None,
            bootstrap_peers: Vec::new(),
            full_nodes: std::collections::BTreeMap::new(),
            sentry_link: None,
            system_tx_activation: qbind_core::types::Height(0),
        }
    }
}

impl Default for ChainSettings {
    fn default() -> Self {
        ChainSettings::of(Profile::Devnet)
    }
}

/// How committed blocks are executed; both give the same state (the
/// application seam, `qbind_core::application`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Executor {
    /// Stage B (`qbind-exec`): signatures checked in parallel and
    /// conflict-free transactions run in parallel.
    #[default]
    StageB,
    /// The sequential reference executor.
    Sequential,
}

/// Where the validators' keys come from.
#[derive(Clone, Default)]
pub enum Keys {
    /// DevNet keys derived from public seeds ([`validator_key`],
    /// [`p2p_identity`]); addresses from [`Network::Kemtls`].
    #[default]
    Devnet,
    /// Validators with their own keys: the validator-set file gives every
    /// validator's public keys, address and stake (and the key rotations);
    /// this process runs [`LocalOptions::only`] with `signer` and `identity`.
    /// Needs [`Network::Kemtls`] (its `ip`/`base_port` are ignored: the
    /// addresses are the file's).
    Operator {
        /// The validator-set file.
        set: Box<ValidatorSetFile>,
        /// This validator's signer (from `qbind_signer::build_signer`); on a
        /// fatal failure (ExitOnFailure) the run stops with
        /// [`NodeError::SignerExit`].
        signer: Arc<qbind_signer::SupervisedSigner>,
        /// Its next consensus key (`--next-signer-keystore-path`), loaded
        /// at start or later by the admin action `load-next-key`: signs
        /// from the epoch an executed on-chain rotation to its key takes
        /// effect (docs/key-rotation.md).
        next_key: Option<Arc<NextKey>>,
        /// This validator's P2P identity (its `p2p_identity.key`).
        identity: Box<qbind_net::StaticIdentity>,
    },
    /// A full node (`--role full`): it follows the chain of the
    /// validator-set file's validators as the authenticated non-validator
    /// peer `id` (at least the validator count), verifies and executes
    /// every block and signs nothing (`qbind_core::traits::FollowerSigner`).
    /// Needs [`Network::Kemtls`], `--p2p-listen-addr` and the validators
    /// admitting its key (their `--full-node-keys`).
    Follower {
        /// The validator-set file (from the genesis).
        set: Box<ValidatorSetFile>,
        /// Its id among the peers, never a validator's.
        id: usize,
        /// Its P2P identity (its `p2p_identity.key`).
        identity: Box<qbind_net::StaticIdentity>,
    },
}

impl Keys {
    /// The validator-set file, for nodes with their own keys.
    #[must_use]
    pub fn set_file(&self) -> Option<&ValidatorSetFile> {
        match self {
            Keys::Devnet => None,
            Keys::Operator { set, .. } | Keys::Follower { set, .. } => Some(set),
        }
    }

    /// The validator's next consensus key, when it was given a place
    /// (`--next-signer-keystore-path`).
    #[must_use]
    pub fn next_key(&self) -> Option<&Arc<NextKey>> {
        match self {
            Keys::Operator { next_key, .. } => next_key.as_ref(),
            Keys::Devnet | Keys::Follower { .. } => None,
        }
    }

    /// Whether this is a full node.
    #[must_use]
    pub fn is_follower(&self) -> bool {
        matches!(self, Keys::Follower { .. })
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keys::Devnet => f.write_str("Keys::Devnet"),
            Keys::Operator { set, signer, .. } => f
                .debug_struct("Keys::Operator")
                .field("validators", &set.validators.len())
                .field("signer_validator", &signer.validator_id())
                .finish_non_exhaustive(),
            Keys::Follower { set, id, .. } => f
                .debug_struct("Keys::Follower")
                .field("validators", &set.validators.len())
                .field("id", id)
                .finish_non_exhaustive(),
        }
    }
}

/// The transport between validators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// In-process channels (all validators in this process).
    Memory,
    /// KEMTLS over TCP (`qbind-net`): validator `i` listens on
    /// `ip:base_port + i` and dials the others there. Their P2P identities
    /// are DevNet keys derived from public seeds, like their signing keys.
    Kemtls {
        /// Address every validator binds (e.g. 127.0.0.1).
        ip: std::net::IpAddr,
        /// Validator `i` listens on `base_port + i`.
        base_port: u16,
    },
}

/// What a run did. Per-validator vectors list the validators of this
/// process in ascending order ([`RunSummary::validators`]).
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// The validators this process ran.
    pub validators: Vec<usize>,
    /// Last executed height per local validator.
    pub executed_height: Vec<u64>,
    /// State root per local validator at its last executed height.
    pub state_root: Vec<Hash32>,
    /// Successful transfers executed by the first local validator in this run.
    pub transfers: u64,
    /// Transfers submitted in this run.
    pub submitted: u64,
    /// Heights at which two local validators reported different state roots.
    pub root_mismatches: Vec<u64>,
    /// Height each local validator started this run from (its executed marker).
    pub resumed_from: Vec<u64>,
}

/// The directory under the data directory that holds node `i`'s store:
/// `validator-<i>`, or `full-node-<i>` for a full node.
#[must_use]
pub fn store_dir_name(keys: &Keys, i: usize) -> String {
    if keys.is_follower() {
        format!("full-node-{i}")
    } else {
        format!("validator-{i}")
    }
}

/// The DevNet P2P identity (static ML-KEM-768 key) of validator `i`.
#[must_use]
pub fn p2p_identity(i: usize) -> qbind_net::StaticIdentity {
    let part = |which: &[u8]| {
        *Hash32::digest(
            &[
                b"QBIND-DEVNET-P2P:".as_slice(),
                which,
                &(i as u64).to_be_bytes(),
            ]
            .concat(),
        )
        .as_bytes()
    };
    qbind_net::StaticIdentity::from_seed(&part(b"d"), &part(b"z"))
}

fn devnet_key(role: &[u8], i: usize) -> KeyPair {
    let mut seed = [0u8; 32];
    let tag = qbind_core::types::Hash32::digest(&[role, &(i as u64).to_be_bytes()].concat());
    seed.copy_from_slice(tag.as_bytes());
    KeyPair::from_seed(&seed)
}

/// The DevNet key of validator `i`.
#[must_use]
pub fn validator_key(i: usize) -> KeyPair {
    devnet_key(b"QBIND-DEVNET-VALIDATOR", i)
}

/// The DevNet key of funded account `i`.
#[must_use]
pub fn account_key(i: usize) -> KeyPair {
    devnet_key(b"QBIND-DEVNET-ACCOUNT", i)
}

/// Run the local validators until `blocks` more blocks are executed by each
/// of them or `shutdown` becomes true. `out` receives progress lines.
///
/// Three stages: configuration (`builder`: the chain from the options),
/// services (`services`: stores, engines, transports, metrics, the load
/// generator), run (`run`: follow the engines, then stop in order). The
/// `/metrics` and API endpoints are bound first, so that a node that starts
/// by state sync reports its progress on both while it fetches the state;
/// `shutdown` stops that fetch too.
pub async fn run_local(
    opts: LocalOptions,
    shutdown: watch::Receiver<bool>,
    out: impl Fn(&str),
) -> Result<RunSummary, NodeError> {
    let mut chain = builder::resolve(&opts)?;
    let mut opts = opts;
    let sync_dir = state_sync_plan(&opts, &chain, &out)?;
    let progress = sync_dir.as_ref().map(|_| {
        let p = crate::state_sync::StateSyncProgress::default();
        p.update(|r| r.peers = opts.state_sync_from.len());
        p
    });
    let endpoints = bind_endpoints(&opts, &chain, progress.as_ref(), &out).await?;
    let mut staged = None;
    if let (Some(dir), Some(progress)) = (sync_dir, progress) {
        let local = chain.local.clone();
        let mut stop = shutdown.clone();
        tokio::select! {
            fetched = state_sync_fetch(&mut opts, &mut chain, &dir, &progress, &out) => {
                staged = Some(fetched?);
            }
            Ok(_) = stop.wait_for(|s| *s) => {
                // What was staged is removed now (and by the next start, if
                // this removal fails).
                let _ = remove_state_sync_leftovers(&dir);
                out("state sync: stopped before the state was complete; nothing was kept");
                endpoints.close().await;
                return Ok(RunSummary {
                    validators: local,
                    ..RunSummary::default()
                });
            }
        }
    }
    let running = start(&opts, &mut chain, endpoints, &out).await;
    if let Some(dir) = staged {
        // Restored (or refused) by now: the staged snapshot is not needed.
        let _ = std::fs::remove_dir_all(dir);
    }
    running?.run(shutdown, &out).await
}

/// With `--state-sync-from`: check the options, remove what a killed state
/// sync left, and return the store directory to state-sync into; `None`
/// without the option or when the store exists already (the node then
/// continues from it by block sync).
fn state_sync_plan(
    opts: &LocalOptions,
    chain: &builder::Chain,
    out: &impl Fn(&str),
) -> Result<Option<PathBuf>, NodeError> {
    if opts.state_sync_from.is_empty() {
        return Ok(None);
    }
    let [i] = chain.local[..] else {
        return Err(NodeError::Config(
            "--state-sync-from needs exactly one node in this process (--validator-index or \
             --role full)"
                .into(),
        ));
    };
    if opts.fast_sync.is_some() {
        return Err(NodeError::Config(
            "--state-sync-from and --fast-sync-snapshot-dir both restore the store: give one"
                .into(),
        ));
    }
    let dir = opts.data_dir.join(store_dir_name(&opts.keys, i));
    // What a state sync killed earlier left.
    let removed = remove_state_sync_leftovers(&dir)?;
    if removed > 0 {
        out(&format!(
            "state sync: removed {removed} staging directories a killed state sync left"
        ));
    }
    if dir.exists() {
        out(&format!(
            "state sync: {} already holds a store; continuing from it by block sync",
            dir.display()
        ));
        return Ok(None);
    }
    Ok(Some(dir))
}

/// Remove what a state sync into the store directory `dir` leaves beside
/// it: its staging directories (their number is returned) and its staged
/// snapshot (the store is restored from it or refused, never opened).
fn remove_state_sync_leftovers(dir: &std::path::Path) -> Result<usize, NodeError> {
    let removed = qbind_store::state_sync::remove_interrupted_state_syncs(dir)
        .map_err(|e| NodeError::StateSync(format!("removing an interrupted state sync: {e}")))?;
    let staged = crate::state_sync::staged_snapshot_dir(dir);
    if staged.exists() {
        std::fs::remove_dir_all(&staged)
            .map_err(|e| NodeError::StateSync(format!("removing {}: {e}", staged.display())))?;
    }
    Ok(removed)
}

/// Fetch a verified state from the peers into a staged snapshot beside
/// `dir` and have it restored like a snapshot with the certified anchor
/// (`opts.fast_sync`). Returns the staged snapshot's directory to remove.
async fn state_sync_fetch(
    opts: &mut LocalOptions,
    chain: &mut builder::Chain,
    dir: &std::path::Path,
    progress: &crate::state_sync::StateSyncProgress,
    out: &impl Fn(&str),
) -> Result<PathBuf, NodeError> {
    let fetched = crate::state_sync::fetch_state(
        &opts.state_sync_from,
        chain.env,
        &chain.schedule,
        dir,
        opts.maintenance.backend,
        progress,
        out,
    )
    .await?;
    opts.fast_sync = Some(FastSync {
        validator: chain.local[0],
        snapshot: fetched.snapshot,
        anchor: fetched.anchor,
    });
    chain.state_synced = Some(progress.clone());
    Ok(fetched.staged_dir)
}

/// The `/metrics`, API and admin endpoints, bound before anything else
/// starts.
struct Endpoints {
    /// Dropping it stops the endpoint.
    metrics: Option<services::MetricsEndpoint>,
    api: Option<EarlyApi>,
    admin: Option<EarlyAdmin>,
}

impl Endpoints {
    /// Stop the servers; the API's requests in flight finish (5 s at most).
    async fn close(self) {
        if let Some(api) = self.api {
            let _ = api.stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), api.task).await;
        }
        if let Some(admin) = self.admin {
            admin.running.stop().await;
        }
        drop(self.metrics);
    }
}

/// The admin endpoint, bound, answering "not ready" until the node runs.
struct EarlyAdmin {
    backend: Arc<admin::LocalAdmin>,
    metrics: Arc<crate::admin::AdminMetrics>,
    running: run::RunningAdmin,
}

/// Bind the admin endpoint, if configured.
async fn bind_admin(
    opts: &LocalOptions,
    out: &impl Fn(&str),
) -> Result<Option<EarlyAdmin>, NodeError> {
    let Some(admin_opts) = &opts.admin else {
        return Ok(None);
    };
    let backend = Arc::new(admin::LocalAdmin::new(
        opts.keys.is_follower(),
        opts.settings.profile,
        opts.settings.payload_mode,
    ));
    let metrics = Arc::new(crate::admin::AdminMetrics::default());
    let server = crate::admin::AdminServer::bind(
        admin_opts.addr,
        admin_opts.token.clone(),
        Arc::clone(&backend),
        Arc::clone(&metrics),
        crate::admin::AdminConfig::default(),
    )
    .await?;
    out(&format!("admin endpoint on http://{}", server.local_addr()));
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = server.run(shutdown).await {
            tracing::warn!("admin endpoint stopped: {e}");
        }
    });
    Ok(Some(EarlyAdmin {
        backend,
        metrics,
        running: run::RunningAdmin { stop, task },
    }))
}

/// The API server, bound, serving [`api::LocalApi`] until the node is
/// ready.
struct EarlyApi {
    backend: Arc<api::LocalApi>,
    addr: SocketAddr,
    /// Dropping it, or sending `true`, stops the server.
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Bind `/metrics` and the API (those configured). While a state sync runs,
/// `/metrics` shows its progress and the API's status reports it.
async fn bind_endpoints(
    opts: &LocalOptions,
    chain: &builder::Chain,
    syncing: Option<&crate::state_sync::StateSyncProgress>,
    out: &impl Fn(&str),
) -> Result<Endpoints, NodeError> {
    let metrics = match opts.metrics_addr {
        Some(addr) => {
            let endpoint = services::MetricsEndpoint::bind(addr, out).await?;
            if let (Some(p), Some(id)) = (syncing, chain.local.first()) {
                endpoint.show(render::state_sync_registry(p.clone(), *id));
            }
            Some(endpoint)
        }
        None => None,
    };
    let admin = bind_admin(opts, out).await?;
    let Some(api_opts) = opts.api else {
        return Ok(Endpoints {
            metrics,
            api: None,
            admin,
        });
    };
    let backend = Arc::new(api::LocalApi::new(
        chain.env,
        !opts.keys.is_follower(),
        syncing.cloned(),
    ));
    let server = qbind_api::ApiServer::bind(
        api_opts.addr,
        Arc::clone(&backend),
        qbind_api::ApiConfig {
            rate_limit: api_opts.rate_limit,
            ..qbind_api::ApiConfig::default()
        },
    )
    .await
    .map_err(|e| NodeError::Config(format!("public API: {e}")))?;
    let addr = server.local_addr();
    if syncing.is_some() {
        out(&format!(
            "state sync: progress in the status on http://{addr}/v1/status"
        ));
    }
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = server.run(shutdown).await {
            tracing::warn!("public API stopped: {e}");
        }
    });
    Ok(Endpoints {
        metrics,
        admin,
        api: Some(EarlyApi {
            backend,
            addr,
            stop,
            task,
        }),
    })
}

/// Stage two: open the stores and start everything; on a failure the store
/// services already started are stopped.
async fn start(
    opts: &LocalOptions,
    chain: &mut builder::Chain,
    endpoints: Endpoints,
    out: &impl Fn(&str),
) -> Result<run::Running, NodeError> {
    let mut stores = services::open_stores(opts, chain, out)?;
    if let Some(p) = &chain.state_synced {
        p.restored();
    }
    let admin_metrics = endpoints.admin.as_ref().map(|a| Arc::clone(&a.metrics));
    let started = start_engines(opts, chain, &stores, admin_metrics, out).await;
    let (engines, shared) = match started {
        Ok(started) => started,
        Err(error) => {
            for s in stores.services.drain(..) {
                s.stop();
            }
            return Err(error);
        }
    };
    if let Some(metrics) = &endpoints.metrics {
        metrics.show(render::registry(Arc::clone(&shared)));
    }
    let submitted = Arc::new(AtomicU64::new(0));
    let generator = loadgen::LoadGenerator {
        env: chain.env,
        keys: std::mem::take(&mut chain.accounts),
        local: chain.local.clone(),
        n: chain.n,
        stores: stores.stores.clone(),
        submit: engines.submit.clone(),
        interval: opts.tx_interval,
        submitted: Arc::clone(&submitted),
    }
    .spawn(engines.stopped.clone());
    let api = ready_api(opts, chain, &stores, &engines, &shared, endpoints.api, out);
    let admin = endpoints.admin.map(|early| {
        early.backend.ready(admin::Ready {
            shared: Arc::clone(&shared),
            peers: engines.peers.clone(),
            stores: stores
                .services
                .iter()
                .map(crate::node::Services::control)
                .collect(),
            next_key: opts.keys.next_key().cloned(),
        });
        early.running
    });
    Ok(run::Running {
        local: chain.local.clone(),
        api,
        admin,
        metrics: endpoints.metrics,
        blocks: opts.blocks,
        summary: RunSummary {
            validators: chain.local.clone(),
            resumed_from: stores.resumed_from.clone(),
            ..RunSummary::default()
        },
        services: std::mem::take(&mut stores.services),
        engines,
        shared,
        generator: Some(generator),
        submitted,
        signer_exit: std::mem::take(&mut chain.signer_exit),
    })
}

/// Hand the bound API the node's backend: (the local slot it serves, its
/// receipt index, the server task).
fn ready_api(
    opts: &LocalOptions,
    chain: &builder::Chain,
    stores: &services::Stores,
    engines: &services::Engines,
    shared: &Arc<render::Shared>,
    early: Option<EarlyApi>,
    out: &impl Fn(&str),
) -> Option<run::RunningApi> {
    let (Some(early), Some((slot, index))) = (early, engines.api_index.clone()) else {
        return None;
    };
    early.backend.ready(api::NodeApi {
        env: chain.env,
        admission: qbind_core::execution::AdmissionPolicy::new(chain.env, chain.execution.config),
        store: Arc::clone(&stores.stores[slot]),
        submit: engines.submit[slot].clone(),
        index: Arc::clone(&index),
        pool: Arc::clone(&engines.pools[slot]),
        verified: Arc::clone(&engines.verified[slot]),
        schedule: engines.schedules[slot].clone(),
        shared: Arc::clone(shared),
        slot,
        n: chain.n,
        takes_transactions: !opts.keys.is_follower(),
        rotations: std::sync::Mutex::default(),
        system_tx_activation: opts.settings.system_tx_activation,
        state_sync: opts.maintenance.snapshots.as_ref().map(|s| {
            Arc::new(crate::state_sync::StateSyncServer::new(
                s.snapshot_dir
                    .join(store_dir_name(&opts.keys, chain.local[slot])),
                chain.env.chain_id().0,
                opts.maintenance.backend,
                Arc::clone(&stores.stores[slot]),
                Arc::clone(&chain.schedule),
            ))
        }),
    });
    out(&format!(
        "API of {} {} on http://{}",
        if opts.keys.is_follower() {
            "full node"
        } else {
            "validator"
        },
        chain.local[slot],
        early.addr
    ));
    Some(run::RunningApi {
        slot,
        index,
        task: early.task,
        stop: early.stop,
    })
}

/// The local slot the API serves, checked against the validators of the
/// process.
fn api_slot(opts: &LocalOptions, local: &[usize]) -> Result<Option<usize>, NodeError> {
    let Some(api) = opts.api else {
        return Ok(None);
    };
    match api.validator {
        None => Ok(Some(0)),
        Some(v) => local.iter().position(|i| *i == v).map(Some).ok_or_else(|| {
            NodeError::Config(format!(
                "--api-validator {v} is not a validator of this process ({local:?})"
            ))
        }),
    }
}

/// Start the engines; what they share with `/metrics` and the API.
async fn start_engines(
    opts: &LocalOptions,
    chain: &builder::Chain,
    stores: &services::Stores,
    admin: Option<Arc<crate::admin::AdminMetrics>>,
    out: &impl Fn(&str),
) -> Result<(services::Engines, Arc<render::Shared>), NodeError> {
    let mut engines = services::start_engines(opts, chain, stores, out).await?;
    let shared = services::shared(opts, chain, stores, &mut engines, admin)?;
    Ok((engines, shared))
}
