//! A local multi-validator network in one process (`qbind-node --local-validators N`):
//! every validator has its own persistent store under the data directory,
//! runs the real engine (chained HotStuff, fee-priority pool, execution of
//! signed transfers with the state written atomically per block), and talks
//! to the others over the in-memory transport. A generator submits signed
//! transfers between funded DevNet accounts. Stopping and starting again
//! resumes from the stores.
//!
//! Keys come from one of two places ([`Keys`]): DevNet keys derived from
//! public seeds (for DevNet only: the binary refuses them for any other
//! profile), or a validator-set file with the public keys of every validator
//! plus this process's own signer (`qbind-signer`: encrypted keystore,
//! PKCS#11 token or remote signer) and P2P identity.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use qbind_core::application::{Application, MonetarySettings, TransferApplication};
use qbind_core::codec::Encode;
use qbind_core::consensus::{ConsensusConfig, ConsensusMetrics};
use qbind_core::crypto::KeyPair;
use qbind_core::engine::Engine;
use qbind_core::execution::{
    AccountReader, AdmissionPolicy, BackendAccounts, ExecutionConfig, TRANSFER_PAYLOAD_V1_BYTES,
    Transaction, TransferPayload, TransferPayloadV1, check_transaction,
};
use qbind_core::monetary::{MonetaryConfig, MonetaryMode, SeigniorageRecipients};
use qbind_core::replica::{Event as EngineEvent, ReplicaError};
use qbind_core::traits::{LocalSigner, MemoryNetwork, Signer, TokioClock, Transport};
use qbind_core::types::{AccountId, Hash32, NetworkEnvironment, ValidatorId};
use qbind_core::validator::{EpochSchedule, ValidatorSet};
use tokio::sync::{mpsc, watch};

use crate::metrics::{PromText, Renderer};
use crate::node::{Maintenance, NodeError, Services, ensure_genesis, open_store};
use crate::validator_set::ValidatorSetFile;

/// Genesis balance of every DevNet account.
pub const DEVNET_BALANCE: u128 = 1_000_000_000_000;
/// DevNet epochs are short so that issuance is visible in a short run.
pub const DEVNET_BLOCKS_PER_EPOCH: u64 = 50;

/// A DevNet pool account (treasury, insurance, ...): the hash of its name.
fn pool_account(name: &[u8]) -> AccountId {
    AccountId(*Hash32::digest(&[b"QBIND-DEVNET-POOL:".as_slice(), name].concat()).as_bytes())
}

/// Transfers a sender may have in flight before the generator skips it.
const MAX_IN_FLIGHT: u64 = 4;

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
        /// This validator's P2P identity (its `p2p_identity.key`).
        identity: Box<qbind_net::StaticIdentity>,
    },
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

struct Shared {
    /// Validator id of each local slot.
    ids: Vec<usize>,
    consensus: Vec<watch::Receiver<ConsensusMetrics>>,
    net: Vec<Option<Arc<qbind_net::NetMetrics>>>,
    store: Vec<Arc<qbind_store::metrics::StoreMetrics>>,
    executed: Vec<AtomicU64>,
    transfers: Vec<AtomicU64>,
    root_mismatches: AtomicU64,
    /// With own keys: the signer (its failure and health metrics) and the
    /// key registry (rotation gauges).
    signer: Option<(
        Arc<qbind_signer::SupervisedSigner>,
        qbind_core::key_rotation::ValidatorKeyRegistry,
    )>,
}

/// A labeled sample: `*_total` names are counters, the rest gauges.
fn sample(p: &mut PromText, name: &str, help: &str, label: (&str, &str), value: u64) {
    if name.ends_with("_total") {
        p.counter_labeled(name, help, label, value);
    } else {
        p.gauge_labeled(name, help, label, value);
    }
}

fn render(shared: &Shared) -> String {
    let mut p = PromText::new();
    type Consensus = fn(&ConsensusMetrics) -> u64;
    const CONSENSUS: [(&str, &str, Consensus); 9] = [
        ("qbind_consensus_current_view", "Current view.", |m| {
            m.current_view
        }),
        (
            "qbind_consensus_highest_seen_view",
            "Highest view seen in any valid message.",
            |m| m.highest_seen_view,
        ),
        (
            "qbind_consensus_view_lag",
            "Highest seen view minus current view.",
            |m| m.highest_seen_view.saturating_sub(m.current_view),
        ),
        (
            "qbind_consensus_committed_height",
            "Highest committed height.",
            |m| m.committed_height,
        ),
        (
            "qbind_consensus_blocks_committed_total",
            "Blocks committed.",
            |m| m.blocks_committed,
        ),
        (
            "qbind_consensus_equivocation_detected_total",
            "Equivocations detected.",
            |m| m.equivocations_detected,
        ),
        (
            "qbind_consensus_views_timed_out_total",
            "Views left by a timeout.",
            |m| m.views_timed_out,
        ),
        (
            "qbind_consensus_state_root_refusals_total",
            "Proposals not voted for: their executed state root differs from ours.",
            |m| m.state_root_mismatches,
        ),
        (
            "qbind_consensus_rejected_total",
            "Consensus inputs rejected.",
            |m| m.rejected_total(),
        ),
    ];
    type Store = fn(&qbind_store::metrics::StoreMetrics) -> &AtomicU64;
    const STORE: [(&str, &str, Store); 14] = [
        (
            "qbind_state_size_bytes",
            "On-disk size of the state store.",
            |s| &s.state_size_bytes,
        ),
        ("qbind_state_prune_runs_total", "Prune steps.", |s| {
            &s.prune_runs
        }),
        (
            "qbind_state_prune_deleted_keys_total",
            "Entries deleted by pruning.",
            |s| &s.prune_deleted_keys,
        ),
        (
            "qbind_state_prune_deleted_bytes_total",
            "Key and value bytes deleted by pruning.",
            |s| &s.prune_deleted_bytes,
        ),
        (
            "qbind_state_prune_retained_height",
            "Lowest retained height.",
            |s| &s.prune_retained_height,
        ),
        (
            "qbind_state_prune_duration_ms_total",
            "Time spent pruning (ms).",
            |s| &s.prune_duration_ms,
        ),
        (
            "qbind_state_prune_errors_total",
            "Prune steps that failed.",
            |s| &s.prune_errors,
        ),
        ("qbind_snapshot_created_total", "Snapshots created.", |s| {
            &s.snapshots_created
        }),
        ("qbind_snapshot_failed_total", "Snapshots failed.", |s| {
            &s.snapshots_failed
        }),
        (
            "qbind_snapshot_removed_total",
            "Old snapshots removed by retention.",
            |s| &s.snapshots_removed,
        ),
        (
            "qbind_snapshot_tmp_removed_total",
            "Temporary snapshots left by a crash, removed at start-up.",
            |s| &s.snapshot_tmp_removed,
        ),
        (
            "qbind_snapshot_last_height",
            "Height of the newest snapshot.",
            |s| &s.snapshot_last_height,
        ),
        (
            "qbind_snapshot_last_duration_ms",
            "Time the newest snapshot took (ms).",
            |s| &s.snapshot_last_duration_ms,
        ),
        (
            "qbind_snapshot_duration_ms_total",
            "Time spent creating snapshots (ms).",
            |s| &s.snapshot_duration_ms,
        ),
    ];
    for (slot, id) in shared.ids.iter().enumerate() {
        let v = id.to_string();
        let label = ("validator", v.as_str());
        let m = shared.consensus[slot].borrow().clone();
        for (name, help, get) in CONSENSUS {
            sample(&mut p, name, help, label, get(&m));
        }
        p.gauge_labeled(
            "qbind_execution_executed_height",
            "Highest executed height.",
            label,
            shared.executed[slot].load(Ordering::Relaxed),
        );
        p.counter_labeled(
            "qbind_execution_transfers_total",
            "Successful transfers executed.",
            label,
            shared.transfers[slot].load(Ordering::Relaxed),
        );
        for (name, help, get) in STORE {
            p.counter_labeled(
                name,
                help,
                label,
                get(&shared.store[slot]).load(Ordering::Relaxed),
            );
        }
    }
    for (slot, net) in shared.net.iter().enumerate() {
        if let Some(net) = net {
            let v = shared.ids[slot].to_string();
            p.append_labeled(&net.render_prometheus(), ("validator", &v));
        }
    }
    if let Some((signer, registry)) = &shared.signer {
        let v = shared.ids.first().copied().unwrap_or_default().to_string();
        p.append_labeled(&signer.metrics().render_prometheus(), ("validator", &v));
        let epoch = shared.consensus.first().map_or(0, |m| m.borrow().epoch);
        p.append_rendered(&registry.render_prometheus(qbind_core::types::Epoch(epoch)));
    }
    p.counter(
        "qbind_execution_state_root_mismatch_total",
        "Heights at which local validators computed different state roots.",
        shared.root_mismatches.load(Ordering::Relaxed),
    );
    p.finish()
}

/// Everything one engine needs besides its transport.
struct EngineParts {
    cfg: ConsensusConfig,
    schedule: Arc<EpochSchedule>,
    store: Arc<qbind_store::FjallBackend>,
    signer: Box<dyn Signer>,
    events: mpsc::UnboundedSender<EngineEvent>,
    submissions: mpsc::UnboundedReceiver<Vec<u8>>,
    metrics: watch::Sender<ConsensusMetrics>,
    execution: Box<dyn Application<Arc<qbind_store::FjallBackend>>>,
    stop: watch::Receiver<bool>,
}

type EngineHandle = tokio::task::JoinHandle<Result<(), ReplicaError>>;

fn spawn_engine<T: Transport + 'static>(
    parts: EngineParts,
    transport: T,
) -> Result<EngineHandle, NodeError> {
    let engine = Engine::open(
        parts.cfg,
        parts.schedule,
        parts.store,
        transport,
        parts.signer,
        TokioClock::new(),
    )?
    .with_events(parts.events)
    .with_submissions(parts.submissions)
    .with_metrics(parts.metrics)
    .with_application(parts.execution);
    Ok(tokio::spawn(engine.run(parts.stop)))
}

/// Resolves with the exit code once the signer reports a fatal failure;
/// never without a signer.
async fn wait_exit(rx: Option<&mut watch::Receiver<Option<i32>>>) -> i32 {
    let Some(rx) = rx else {
        return std::future::pending().await;
    };
    match rx.wait_for(Option::is_some).await {
        Ok(code) => code.unwrap_or(1),
        // The signer is gone: nothing will report again.
        Err(_) => std::future::pending().await,
    }
}

/// Run the local validators until `blocks` more blocks are executed by each
/// of them or `shutdown` becomes true. `out` receives progress lines.
pub async fn run_local(
    opts: LocalOptions,
    mut shutdown: watch::Receiver<bool>,
    out: impl Fn(&str),
) -> Result<RunSummary, NodeError> {
    let n = opts.validators;
    if n == 0 {
        return Err(NodeError::Config(
            "--local-validators must be at least 1".into(),
        ));
    }
    let local: Vec<usize> = match opts.only {
        None => (0..n).collect(),
        Some(i) if i < n => vec![i],
        Some(i) => {
            return Err(NodeError::Config(format!(
                "validator index {i} is not below the validator count {n}"
            )));
        }
    };
    if opts.only.is_some() && opts.network == Network::Memory {
        return Err(NodeError::Config(
            "running one validator per process needs the KEMTLS network".into(),
        ));
    }
    let env = NetworkEnvironment::Devnet;
    let chain_id = env.chain_id().0;
    let mut signer_exit = None;
    // Consensus public key and stake of every validator.
    let (validator_keys, schedule) = match &opts.keys {
        Keys::Devnet => {
            let keys: Vec<(qbind_core::crypto::PublicKey, u64)> = (0..n)
                .map(|i| (validator_key(i).public_key().clone(), 1))
                .collect();
            let set = ValidatorSet::new(keys.clone())
                .map_err(|e| NodeError::Config(format!("validator set: {e}")))?;
            (keys, EpochSchedule::fixed(set))
        }
        Keys::Operator { set, signer, .. } => {
            if set.network != env {
                return Err(NodeError::Config(format!(
                    "the validator set file is for {:?}, this node runs {env:?}",
                    set.network
                )));
            }
            if set.validators.len() != n {
                return Err(NodeError::Config(format!(
                    "the validator set file has {} validators, not {n}",
                    set.validators.len()
                )));
            }
            let me = opts.only.ok_or_else(|| {
                NodeError::Config(
                    "a node with its own keys runs one validator (--validator-index)".into(),
                )
            })?;
            if !matches!(opts.network, Network::Kemtls { .. }) {
                return Err(NodeError::Config(
                    "a node with its own keys needs the KEMTLS network".into(),
                ));
            }
            if signer.validator_id() != ValidatorId(me as u32) {
                return Err(NodeError::Config(format!(
                    "the signer signs for validator {}, not {me}",
                    signer.validator_id().0
                )));
            }
            let schedule = set
                .schedule()
                .map_err(|e| NodeError::Config(e.to_string()))?;
            // The signer must hold this validator's genesis key or a key it
            // rotates to.
            let own = signer.public_key();
            let rotated_to = set.rotations.iter().any(|r| {
                r.event.validator_id == ValidatorId(me as u32) && r.event.new_key == own.as_bytes()
            });
            if set.validators[me].consensus_key != *own && !rotated_to {
                return Err(NodeError::Config(format!(
                    "the signer's public key is neither validator {me}'s consensus key in the \
                     validator set file nor a key it rotates to"
                )));
            }
            signer_exit = Some(signer.exit_signal());
            let keys = set
                .validators
                .iter()
                .map(|v| (v.consensus_key.clone(), v.stake))
                .collect();
            (keys, schedule)
        }
    };
    let schedule = Arc::new(schedule);
    let account_keys: Vec<KeyPair> = (0..opts.accounts.max(2)).map(account_key).collect();
    let account_ids: Vec<AccountId> = account_keys
        .iter()
        .map(|k| AccountId::from_public_key(k.public_key()))
        .collect();
    let genesis: Vec<(AccountId, u128)> =
        account_ids.iter().map(|id| (*id, DEVNET_BALANCE)).collect();
    let proposer_accounts: Vec<AccountId> = validator_keys
        .iter()
        .map(|(k, _)| AccountId::from_public_key(k))
        .collect();
    let mut monetary_config = MonetaryConfig::mainnet();
    monetary_config.blocks_per_epoch = DEVNET_BLOCKS_PER_EPOCH;
    monetary_config.mode = MonetaryMode::Active;
    let execution =
        TransferApplication::new(env, ExecutionConfig::devnet(), proposer_accounts.clone())
            .with_monetary(MonetarySettings {
                config: monetary_config,
                pools: SeigniorageRecipients {
                    validators: pool_account(b"validators"),
                    treasury: pool_account(b"treasury"),
                    insurance: pool_account(b"insurance"),
                    community: pool_account(b"community"),
                },
                stakes: proposer_accounts
                    .iter()
                    .zip(&validator_keys)
                    .map(|(a, (_, stake))| (*a, *stake))
                    .collect(),
                staked: DEVNET_BALANCE * opts.accounts.max(2) as u128 / 2,
            });
    let mut cfg = ConsensusConfig::new(env);
    cfg.tx_meta = Some(qbind_core::execution::tx_meta);
    cfg.base_timeout_ms = opts.base_timeout_ms;

    let mut stores = Vec::with_capacity(local.len());
    let mut services = Vec::with_capacity(local.len());
    let mut summary = RunSummary {
        validators: local.clone(),
        ..RunSummary::default()
    };
    // A validator that cannot start (a refused fast sync, a store error)
    // stops the services of those already started, so their stores close.
    let started = (|| -> Result<(), NodeError> {
        for &i in &local {
            let dir = opts.data_dir.join(format!("validator-{i}"));
            let fast = opts
                .fast_sync
                .as_ref()
                .filter(|f| f.validator == i)
                .map(|f| (f.snapshot.as_path(), &f.anchor));
            let opened = open_store(&dir, fast, chain_id)?;
            if let Some(meta) = &opened.restored_from {
                out(&format!(
                    "validator {i}: fast sync from snapshot at height {} (block hash {}, state root {}: \
                     the trusted anchor)",
                    meta.height, meta.block_hash, meta.state_root
                ));
            }
            if ensure_genesis(&*opened.store, &genesis)? {
                out(&format!(
                    "validator {i}: genesis written ({} accounts)",
                    genesis.len()
                ));
            }
            let mut maintenance = opts.maintenance.clone();
            if let Some(s) = maintenance.snapshots.as_mut() {
                s.snapshot_dir = s.snapshot_dir.join(format!("validator-{i}"));
                s.chain_id = chain_id;
            }
            services.push(Services::start(
                Arc::clone(&opened.store),
                maintenance,
                schedule.epoch_length(),
            )?);
            stores.push(opened.store);
        }
        Ok(())
    })();
    if let Err(error) = started {
        for s in services.drain(..) {
            s.stop();
        }
        return Err(error);
    }

    let (stop_engines, engines_stop) = watch::channel(false);
    let (events_tx, mut events) = mpsc::unbounded_channel::<(usize, EngineEvent)>();
    let mut submit = Vec::with_capacity(local.len());
    let mut handles = Vec::with_capacity(local.len());
    let mut consensus_rx = Vec::with_capacity(local.len());
    let mut net_metrics = Vec::with_capacity(local.len());
    let mut memory = match opts.network {
        Network::Memory => MemoryNetwork::endpoints(n).into_iter().map(Some).collect(),
        Network::Kemtls { .. } => Vec::new(),
    };
    for (slot, &i) in local.iter().enumerate() {
        let (tx_in, tx_out) = mpsc::unbounded_channel();
        submit.push(tx_in);
        let (m_tx, m_rx) = watch::channel(ConsensusMetrics::default());
        consensus_rx.push(m_rx);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let forward = events_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = ev_rx.recv().await {
                if forward.send((slot, ev)).is_err() {
                    break;
                }
            }
        });
        let parts = EngineParts {
            cfg: cfg.clone(),
            schedule: Arc::clone(&schedule),
            store: Arc::clone(&stores[slot]),
            signer: match &opts.keys {
                Keys::Devnet => Box::new(LocalSigner::new(
                    ValidatorId(i as u32),
                    env,
                    validator_key(i),
                )),
                Keys::Operator { signer, .. } => Box::new(Arc::clone(signer)),
            },
            events: ev_tx,
            submissions: tx_out,
            metrics: m_tx,
            execution: match opts.executor {
                Executor::StageB => Box::new(
                    execution
                        .clone()
                        .with_executor(qbind_exec::StageBExecutor::default()),
                ),
                Executor::Sequential => Box::new(execution.clone()),
            },
            stop: engines_stop.clone(),
        };
        let start = qbind_core::schema::load_persisted(&*stores[slot], 1)
            .map_err(ReplicaError::from)?
            .executed
            .0;
        summary.resumed_from.push(start);
        let handle = match &opts.network {
            Network::Memory => {
                let transport = memory
                    .get_mut(i)
                    .and_then(Option::take)
                    .ok_or_else(|| NodeError::Config("no in-memory endpoint".into()))?;
                net_metrics.push(None);
                spawn_engine(parts, transport)?
            }
            Network::Kemtls { ip, base_port } => {
                let addr = |v: usize| match &opts.keys {
                    Keys::Devnet => u16::try_from(v)
                        .ok()
                        .and_then(|v| base_port.checked_add(v))
                        .map(|port| SocketAddr::new(*ip, port))
                        .ok_or_else(|| NodeError::Config("P2P port out of range".into())),
                    Keys::Operator { set, .. } => Ok(set.validators[v].address),
                };
                let peer_key = |v: usize| match &opts.keys {
                    Keys::Devnet => p2p_identity(v).public().clone(),
                    Keys::Operator { set, .. } => set.validators[v].p2p_key.clone(),
                };
                let identity = match &opts.keys {
                    Keys::Devnet => p2p_identity(i),
                    Keys::Operator { identity, .. } => {
                        if identity.public() != &peer_key(i) {
                            return Err(NodeError::Config(format!(
                                "the P2P identity key is not validator {i}'s p2p_pub in the \
                                 validator set file"
                            )));
                        }
                        (**identity).clone()
                    }
                };
                let mut validators = BTreeMap::new();
                let mut bootstrap = Vec::new();
                for v in 0..n {
                    validators.insert(ValidatorId(v as u32), peer_key(v));
                    if v != i {
                        bootstrap.push((ValidatorId(v as u32), addr(v)?));
                    }
                }
                let mut peers = qbind_net::PeerManagerConfig::default();
                // All DevNet validators share one address range: count
                // diversity violations but admit them.
                peers.diversity.mode = qbind_net::peers::diversity::DiversityMode::Warn;
                peers.heartbeat_interval = Duration::from_secs(5);
                // A loopback or private P2P address means a local network,
                // whose peers announce such addresses too.
                peers.local_network = !qbind_net::peers::book::is_routable(addr(i)?);
                let transport = qbind_net::TcpTransport::start(qbind_net::TransportConfig {
                    local_id: ValidatorId(i as u32),
                    identity,
                    listen: addr(i)?,
                    validators,
                    bootstrap,
                    channel: qbind_net::ChannelConfig::new(env),
                    peers,
                })
                .await
                .map_err(|e| NodeError::Config(format!("P2P transport of validator {i}: {e}")))?;
                out(&format!(
                    "validator {i}: KEMTLS P2P on {}",
                    transport.local_addr()
                ));
                net_metrics.push(Some(transport.metrics()));
                spawn_engine(parts, transport)?
            }
        };
        handles.push(handle);
    }
    drop(events_tx);

    let shared = Arc::new(Shared {
        ids: local.clone(),
        consensus: consensus_rx,
        net: net_metrics,
        store: services.iter().map(|s| Arc::clone(&s.metrics)).collect(),
        executed: summary
            .resumed_from
            .iter()
            .map(|h| AtomicU64::new(*h))
            .collect(),
        transfers: local.iter().map(|_| AtomicU64::new(0)).collect(),
        root_mismatches: AtomicU64::new(0),
        signer: match &opts.keys {
            Keys::Devnet => None,
            Keys::Operator { set, signer, .. } => Some((
                Arc::clone(signer),
                set.key_registry()
                    .map_err(|e| NodeError::Config(e.to_string()))?,
            )),
        },
    });
    if let Some(addr) = opts.metrics_addr {
        let listener = crate::metrics::bind(addr)
            .await
            .map_err(|source| NodeError::Io {
                what: format!("binding the metrics endpoint {addr}"),
                source,
            })?;
        let for_render = Arc::clone(&shared);
        let renderer: Renderer = Arc::new(move || render(&for_render));
        out(&format!(
            "metrics on http://{}/metrics",
            listener.local_addr().map_or(addr, |a| a)
        ));
        if crate::metrics::exposed_beyond_localhost(addr) {
            out(&format!("warning: {}", crate::metrics::EXPOSED_WARNING));
        }
        tokio::spawn(crate::metrics::serve(
            listener,
            renderer,
            engines_stop.clone(),
        ));
    }

    // The transfer generator: only accounts whose home validator runs here
    // (account s is submitted to validator s mod n); nonces resume from that
    // validator's executed state.
    let submitted = Arc::new(AtomicU64::new(0));
    let generator = {
        let senders: Vec<(usize, usize)> = (0..account_ids.len())
            .filter_map(|s| local.iter().position(|v| *v == s % n).map(|slot| (s, slot)))
            .collect();
        let stores: Vec<_> = stores.iter().map(Arc::clone).collect();
        let submitted = Arc::clone(&submitted);
        let mut stop = engines_stop.clone();
        let interval = opts.tx_interval.max(Duration::from_millis(1));
        tokio::spawn(async move {
            if senders.is_empty() || account_ids.len() < 2 {
                return;
            }
            let executed_nonce = |s: usize, slot: usize| {
                BackendAccounts::new(&*stores[slot])
                    .account(&account_ids[s])
                    .map(|a| a.nonce)
                    .unwrap_or(0)
            };
            let mut next: Vec<u64> = vec![0; account_ids.len()];
            for &(s, slot) in &senders {
                next[s] = executed_nonce(s, slot);
            }
            let mut tick = tokio::time::interval(interval);
            let mut k = 0usize;
            let mut stalled = 0u32;
            let gas_limit = ExecutionConfig::devnet()
                .gas
                .transfer_gas(TRANSFER_PAYLOAD_V1_BYTES);
            let count = account_ids.len();
            // Transactions enter the node here: each is checked against the
            // executed state before it reaches a pool (issue #17 finding 2).
            let admission = AdmissionPolicy::new(env, ExecutionConfig::devnet());
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tick.tick() => {}
                }
                let mut chosen = None;
                for step in 0..senders.len() {
                    let (s, slot) = senders[(k + step) % senders.len()];
                    let executed = executed_nonce(s, slot);
                    next[s] = next[s].max(executed);
                    if next[s] - executed < MAX_IN_FLIGHT {
                        chosen = Some(((k + step) % senders.len(), s, slot));
                        break;
                    }
                }
                let Some((pos, s, slot)) = chosen else {
                    stalled += 1;
                    if stalled > 50 {
                        // Transfers were lost (e.g. shut down with them in
                        // a pool): resume from the executed nonces.
                        for &(s, slot) in &senders {
                            next[s] = executed_nonce(s, slot);
                        }
                        stalled = 0;
                    }
                    continue;
                };
                stalled = 0;
                k = pos + 1;
                let recipient = account_ids[(s + 1 + (next[s] as usize % (count - 1))) % count];
                let payload = TransferPayload::V1(TransferPayloadV1 {
                    recipient,
                    amount: 1 + u128::from(next[s] % 1_000),
                    gas_limit,
                    max_fee_per_gas: 1 + u128::from(next[s] % 3),
                });
                let tx = Transaction::sign(&account_keys[s], env, next[s], payload);
                let bytes = tx.to_bytes();
                let state = BackendAccounts::new(&*stores[slot]);
                if check_transaction(&state, &admission, &bytes).is_err() {
                    // Stale (executed meanwhile) or unaffordable: resume
                    // from the executed nonce rather than pool it.
                    next[s] = executed_nonce(s, slot);
                    continue;
                }
                next[s] += 1;
                if submit[slot].send(bytes).is_err() {
                    return;
                }
                submitted.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let start_height: Vec<u64> = summary.resumed_from.clone();
    let mut roots: BTreeMap<u64, Hash32> = BTreeMap::new();
    summary.executed_height = start_height.clone();
    summary.state_root = vec![Hash32::ZERO; local.len()];
    let done = |s: &RunSummary| {
        opts.blocks > 0
            && s.executed_height
                .iter()
                .zip(&start_height)
                .all(|(h, from)| *h >= from + opts.blocks)
    };
    let mut engine_failed = false;
    let mut signer_exit_code = None;
    let mut signer_exit = signer_exit;
    while !done(&summary) {
        let (slot, ev) = tokio::select! {
            _ = shutdown.changed() => break,
            code = wait_exit(signer_exit.as_mut()) => {
                out(&format!("signer failure (ExitOnFailure): stopping, exit code {code}"));
                signer_exit_code = Some(code);
                break;
            }
            ev = events.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        let i = local[slot];
        if let EngineEvent::EpochClosed {
            height,
            state,
            credited,
        } = &ev
            && slot == 0
        {
            out(&format!(
                "epoch {} closed at height {}: phase {:?}, annual rate {} bps, issued {} \
                 (validators {}, treasury {}, insurance {}, community {}), credited {credited}",
                state.epoch,
                height.0,
                state.phase,
                state.r_inf_annual_bps,
                state.issuance,
                state.to_validators,
                state.to_treasury,
                state.to_insurance,
                state.to_community
            ));
        }
        if let EngineEvent::Executed {
            height,
            state_root,
            report:
                qbind_core::application::ExecutionReport {
                    succeeded,
                    failed,
                    rejected,
                    fees,
                    ..
                },
        } = ev
        {
            summary.executed_height[slot] = height.0;
            summary.state_root[slot] = state_root;
            shared.executed[slot].store(height.0, Ordering::Relaxed);
            shared.transfers[slot].fetch_add(succeeded, Ordering::Relaxed);
            services[slot].on_executed(height.0);
            match roots.get(&height.0) {
                Some(r) if *r != state_root => {
                    shared.root_mismatches.fetch_add(1, Ordering::Relaxed);
                    summary.root_mismatches.push(height.0);
                    out(&format!(
                        "STATE ROOT MISMATCH at height {}: validator {i} has {state_root:?}, another {r:?}",
                        height.0
                    ));
                }
                Some(_) => {}
                None => {
                    roots.insert(height.0, state_root);
                }
            }
            if slot == 0 {
                summary.transfers += succeeded;
                let hex: String = state_root.as_bytes()[..8]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                out(&format!(
                    "height {:>6}  transfers ok {succeeded:>3} failed {failed:>2} rejected {rejected:>2}  fees {fees:>8}  state root {hex}",
                    height.0
                ));
            }
            // Keep the agreement map small.
            let floor = summary.executed_height.iter().min().copied().unwrap_or(0);
            while roots.first_key_value().is_some_and(|(h, _)| *h + 1 < floor) {
                roots.pop_first();
            }
        }
        if handles.iter().any(|h| h.is_finished()) {
            engine_failed = true;
            break;
        }
    }
    let _ = stop_engines.send(true);
    let _ = generator.await;
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(NodeError::Engine(e));
            }
            Err(e) => {
                first_error.get_or_insert(NodeError::Config(format!("engine task failed: {e}")));
            }
        }
    }
    for s in services {
        s.stop();
    }
    if let Some(code) = signer_exit_code {
        return Err(NodeError::SignerExit(code));
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if engine_failed {
        return Err(NodeError::Config("an engine stopped unexpectedly".into()));
    }
    summary.submitted = submitted.load(Ordering::Relaxed);
    Ok(summary)
}
