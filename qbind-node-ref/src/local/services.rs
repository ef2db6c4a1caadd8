//! Stage two of a run, services: open every local validator's store
//! (restoring a snapshot for fast sync), write the genesis, start the store
//! services, connect the transports, start the engines and the `/metrics`
//! endpoint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::NodeStore;
use qbind_core::application::Application;
use qbind_core::consensus::{ConsensusConfig, ConsensusMetrics};
use qbind_core::engine::{Engine, NextSignerSlot};
use qbind_core::replica::{Event as EngineEvent, ReplicaError};
use qbind_core::traits::{
    FollowerSigner, LocalSigner, MemoryNetwork, Signer, TokioClock, Transport,
};
use qbind_core::types::ValidatorId;
use qbind_core::validator::EpochSchedule;
use tokio::sync::{mpsc, watch};

use super::api::{ReceiptIndex, Recording};
use super::builder::Chain;
use super::receipt_store::{Persisting, RECEIPT_RETAIN_HEIGHTS};
use super::render::Shared;
use super::{Executor, Keys, LocalOptions, Network, p2p_identity, validator_key};
use crate::metrics::{Registry, Renderer};
use crate::node::{NodeError, Services, ensure_genesis, open_store};
use qbind_core::execution::{VERIFIED_SET_CAPACITY, VerifiedSet, VerifyOnce};
use qbind_core::pool_drops::PoolMonitor;
use qbind_exec::StageBMetrics;

/// The opened stores of the local validators and their services.
pub(super) struct Stores {
    /// One store per local validator.
    pub(super) stores: Vec<Arc<NodeStore>>,
    /// Their snapshot and pruning services.
    pub(super) services: Vec<Services>,
    /// The executed height each store starts from.
    pub(super) resumed_from: Vec<u64>,
}

/// Open one store per local validator, write the genesis and start its
/// services. A validator that cannot start (a refused fast sync, a store
/// error) stops the services of those already started, so their stores
/// close.
pub(super) fn open_stores(
    opts: &LocalOptions,
    chain: &Chain,
    out: &impl Fn(&str),
) -> Result<Stores, NodeError> {
    let mut opened = Stores {
        stores: Vec::with_capacity(chain.local.len()),
        services: Vec::with_capacity(chain.local.len()),
        resumed_from: Vec::with_capacity(chain.local.len()),
    };
    for &i in &chain.local {
        if let Err(error) = open_one(opts, chain, i, &mut opened, out) {
            for s in opened.services.drain(..) {
                s.stop();
            }
            return Err(error);
        }
    }
    Ok(opened)
}

/// Open validator `i`'s store into `into`.
fn open_one(
    opts: &LocalOptions,
    chain: &Chain,
    i: usize,
    into: &mut Stores,
    out: &impl Fn(&str),
) -> Result<(), NodeError> {
    let chain_id = chain.env.chain_id().0;
    let dir = opts.data_dir.join(super::store_dir_name(&opts.keys, i));
    let fast = opts
        .fast_sync
        .as_ref()
        .filter(|f| f.validator == i)
        .map(|f| (f.snapshot.as_path(), &f.anchor));
    let opened = open_store(&dir, fast, chain_id, opts.maintenance.backend)?;
    if let Some(meta) = &opened.restored_from {
        out(&format!(
            "{} {i}: fast sync from snapshot at height {} (block hash {}, state root {}: \
             the trusted anchor)",
            if opts.keys.is_follower() {
                "full node"
            } else {
                "validator"
            },
            meta.height,
            meta.block_hash,
            meta.state_root
        ));
    }
    crate::genesis::bind_store(&*opened.store, &dir, chain.genesis_hash)?;
    if ensure_genesis(&*opened.store, &chain.balances)? {
        out(&format!(
            "{}: genesis {} written ({} accounts)",
            super::store_dir_name(&opts.keys, i),
            chain.genesis_hash,
            chain.balances.len()
        ));
    }
    let mut maintenance = opts.maintenance.clone();
    if let Some(s) = maintenance.snapshots.as_mut() {
        s.snapshot_dir = s.snapshot_dir.join(super::store_dir_name(&opts.keys, i));
        s.chain_id = chain_id;
    }
    into.services.push(Services::start(
        Arc::clone(&opened.store),
        maintenance,
        chain.schedule.epoch_length(),
    )?);
    let start =
        qbind_core::schema::read_height(&*opened.store, qbind_core::schema::EXECUTED_HEIGHT_KEY)
            .map_err(ReplicaError::from)?
            .unwrap_or_default()
            .0;
    into.resumed_from.push(start);
    into.stores.push(opened.store);
    Ok(())
}

/// Everything one engine needs besides its transport.
struct EngineParts {
    cfg: ConsensusConfig,
    schedule: Arc<EpochSchedule>,
    store: Arc<NodeStore>,
    signer: Box<dyn Signer>,
    /// Where the next consensus key's signer is, or will be once loaded.
    next_signer: Option<NextSignerSlot>,
    schedule_out: watch::Sender<Arc<EpochSchedule>>,
    events: mpsc::UnboundedSender<EngineEvent>,
    submissions: mpsc::UnboundedReceiver<Vec<u8>>,
    metrics: watch::Sender<ConsensusMetrics>,
    payload_metrics: watch::Sender<qbind_core::engine::PayloadMetrics>,
    execution: Box<dyn Application<Arc<NodeStore>>>,
    pool: Arc<PoolMonitor>,
    verified: Arc<VerifiedSet>,
    stop: watch::Receiver<bool>,
}

/// A running engine task.
pub(super) type EngineHandle = tokio::task::JoinHandle<Result<(), ReplicaError>>;

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
    .with_schedule_out(parts.schedule_out)
    .with_submissions(parts.submissions)
    .with_metrics(parts.metrics)
    .with_payload_metrics(parts.payload_metrics)
    .with_pool_monitor(parts.pool)
    .with_payload_prefetch(Arc::new(qbind_exec::VerifyPrefetch::new(parts.verified)))
    .with_application(parts.execution);
    let engine = match parts.next_signer {
        Some(slot) => engine.with_next_signer_slot(slot),
        None => engine,
    };
    Ok(tokio::spawn(engine.run(parts.stop)))
}

/// The running engines of the local validators (index: local slot).
pub(super) struct Engines {
    /// The engine tasks.
    pub(super) handles: Vec<EngineHandle>,
    /// Where each engine takes submitted transactions.
    pub(super) submit: Vec<mpsc::UnboundedSender<Vec<u8>>>,
    /// Engine events, tagged with the local slot.
    pub(super) events: mpsc::UnboundedReceiver<(usize, EngineEvent)>,
    /// Set to true to stop the engines (and the generator and endpoint).
    pub(super) stop: watch::Sender<bool>,
    /// The receiving side of `stop`.
    pub(super) stopped: watch::Receiver<bool>,
    /// Consensus metrics per engine.
    pub(super) consensus: Vec<watch::Receiver<ConsensusMetrics>>,
    /// Each engine's epoch schedule, with the key registry as its executed
    /// blocks changed it (on-chain key rotations).
    pub(super) schedules: Vec<watch::Receiver<Arc<EpochSchedule>>>,
    /// DAG and fee-pool metrics per engine.
    pub(super) payload: Vec<watch::Receiver<qbind_core::engine::PayloadMetrics>>,
    /// P2P metrics per engine (KEMTLS only).
    pub(super) net: Vec<Option<Arc<qbind_net::NetMetrics>>>,
    /// The local slot the public API serves and its receipt index (filled
    /// by that engine's executor).
    pub(super) api_index: Option<(usize, Arc<ReceiptIndex>)>,
    /// Each engine's pool as its API sees it (backpressure, drops).
    pub(super) pools: Vec<Arc<PoolMonitor>>,
    /// Each engine's verified-signature set (admission and execution).
    pub(super) verified: Vec<Arc<VerifiedSet>>,
    /// Each engine's Stage B counters (with `--executor stage-b`).
    pub(super) stage_b: Vec<Option<Arc<StageBMetrics>>>,
    /// How each engine reaches its peers (the admin endpoint's `peers`).
    pub(super) peers: Vec<super::admin::PeerSource>,
}

/// Start one engine per local validator on its transport.
pub(super) async fn start_engines(
    opts: &LocalOptions,
    chain: &Chain,
    stores: &Stores,
    out: &impl Fn(&str),
) -> Result<Engines, NodeError> {
    let (stop, stopped) = watch::channel(false);
    let (events_tx, events) = mpsc::unbounded_channel::<(usize, EngineEvent)>();
    let mut engines = Engines {
        handles: Vec::with_capacity(chain.local.len()),
        submit: Vec::with_capacity(chain.local.len()),
        events,
        stop,
        stopped,
        consensus: Vec::with_capacity(chain.local.len()),
        schedules: Vec::with_capacity(chain.local.len()),
        payload: Vec::with_capacity(chain.local.len()),
        net: Vec::with_capacity(chain.local.len()),
        api_index: super::api_slot(opts, &chain.local)?
            .map(|slot| (slot, Arc::new(ReceiptIndex::default()))),
        pools: Vec::with_capacity(chain.local.len()),
        verified: Vec::with_capacity(chain.local.len()),
        stage_b: Vec::with_capacity(chain.local.len()),
        peers: Vec::with_capacity(chain.local.len()),
    };
    let mut memory: Vec<_> = match opts.network {
        Network::Memory => MemoryNetwork::endpoints(chain.n)
            .into_iter()
            .map(Some)
            .collect(),
        Network::Kemtls { .. } => Vec::new(),
    };
    for (slot, &i) in chain.local.iter().enumerate() {
        let parts = engine_parts(opts, chain, stores, slot, &events_tx, &mut engines);
        let handle = match &opts.network {
            Network::Memory => {
                let transport = memory
                    .get_mut(i)
                    .and_then(Option::take)
                    .ok_or_else(|| NodeError::Config("no in-memory endpoint".into()))?;
                engines.net.push(None);
                engines.peers.push(super::admin::PeerSource::Memory);
                spawn_engine(parts, transport)?
            }
            Network::Kemtls { .. } if opts.settings.sentry_link.is_some() => {
                let link = sentry_link(opts, chain, i).await?;
                out(&format!(
                    "validator {i}: behind its sentry, link to {}",
                    opts.settings
                        .sentry_link
                        .map_or(String::new(), |a| a.to_string())
                ));
                engines.net.push(Some(link.link().metrics()));
                engines.peers.push(super::admin::PeerSource::SentryLink);
                spawn_engine(parts, link)?
            }
            Network::Kemtls { .. } => {
                let transport = kemtls_transport(opts, chain, i).await?;
                out(&format!(
                    "validator {i}: KEMTLS P2P on {}",
                    transport.local_addr()
                ));
                engines.net.push(Some(transport.metrics()));
                engines
                    .peers
                    .push(super::admin::PeerSource::Kemtls(transport.peer_view()));
                spawn_engine(parts, transport)?
            }
        };
        engines.handles.push(handle);
    }
    Ok(engines)
}

/// The channels and settings of the engine in local slot `slot`.
fn engine_parts(
    opts: &LocalOptions,
    chain: &Chain,
    stores: &Stores,
    slot: usize,
    events_tx: &mpsc::UnboundedSender<(usize, EngineEvent)>,
    engines: &mut Engines,
) -> EngineParts {
    let i = chain.local[slot];
    let (tx_in, tx_out) = mpsc::unbounded_channel();
    engines.submit.push(tx_in);
    let (m_tx, m_rx) = watch::channel(ConsensusMetrics::default());
    engines.consensus.push(m_rx);
    let (schedule_out, schedule_rx) = watch::channel(Arc::clone(&chain.schedule));
    engines.schedules.push(schedule_rx);
    let (p_tx, p_rx) = watch::channel(qbind_core::engine::PayloadMetrics::default());
    engines.payload.push(p_rx);
    let pool = Arc::new(PoolMonitor::default());
    engines.pools.push(Arc::clone(&pool));
    let verified = Arc::new(VerifiedSet::new(chain.env, VERIFIED_SET_CAPACITY));
    engines.verified.push(Arc::clone(&verified));
    let stage_b = Arc::new(StageBMetrics::default());
    engines
        .stage_b
        .push((opts.executor == Executor::StageB).then(|| Arc::clone(&stage_b)));
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let forward = events_tx.clone();
    tokio::spawn(async move {
        while let Some(ev) = ev_rx.recv().await {
            if forward.send((slot, ev)).is_err() {
                break;
            }
        }
    });
    EngineParts {
        cfg: chain.cfg.clone(),
        schedule: Arc::clone(&chain.schedule),
        store: Arc::clone(&stores.stores[slot]),
        signer: match &opts.keys {
            Keys::Devnet => Box::new(LocalSigner::new(
                ValidatorId(i as u32),
                chain.env,
                validator_key(i),
            )),
            Keys::Operator { signer, .. } => Box::new(Arc::clone(signer)),
            Keys::Follower { .. } => Box::new(FollowerSigner::new(ValidatorId(i as u32))),
        },
        next_signer: opts.keys.next_key().map(|next| next.slot()),
        schedule_out,
        events: ev_tx,
        submissions: tx_out,
        metrics: m_tx,
        payload_metrics: p_tx,
        execution: application(
            opts,
            chain,
            engines.api_index.as_ref(),
            slot,
            Arc::clone(&verified),
            stage_b,
        ),
        pool,
        verified,
        stop: engines.stopped.clone(),
    }
}

/// The application of local slot `slot`: the chain's, with the chosen
/// executor verifying only signatures `verified` does not vouch for (Stage B
/// counting into `stage_b_metrics`); the API's slot records receipts in its
/// index.
fn application(
    opts: &LocalOptions,
    chain: &Chain,
    api: Option<&(usize, Arc<ReceiptIndex>)>,
    slot: usize,
    verified: Arc<VerifiedSet>,
    stage_b_metrics: Arc<StageBMetrics>,
) -> Box<dyn Application<Arc<NodeStore>>> {
    let app = chain.execution.clone();
    let index = api.filter(|(s, _)| *s == slot).map(|(_, i)| Arc::clone(i));
    let stage_b = VerifyOnce {
        inner: qbind_exec::StageBExecutor::default().with_metrics(stage_b_metrics),
        set: Arc::clone(&verified),
    };
    let sequential = VerifyOnce {
        inner: qbind_core::execution::SequentialExecutor,
        set: verified,
    };
    let retain = opts
        .api
        .map_or(RECEIPT_RETAIN_HEIGHTS, |api| api.receipt_heights);
    match (opts.executor, index) {
        (Executor::StageB, None) => Box::new(app.with_executor(stage_b)),
        (Executor::StageB, Some(index)) => Box::new(Persisting {
            inner: app.with_executor(Recording {
                inner: stage_b,
                index: Arc::clone(&index),
            }),
            index,
            retain,
        }),
        (Executor::Sequential, None) => Box::new(app.with_executor(sequential)),
        (Executor::Sequential, Some(index)) => Box::new(Persisting {
            inner: app.with_executor(Recording {
                inner: sequential,
                index: Arc::clone(&index),
            }),
            index,
            retain,
        }),
    }
}

/// Validator `v`'s P2P address.
fn p2p_addr(opts: &LocalOptions, v: usize) -> Result<SocketAddr, NodeError> {
    match (&opts.keys, &opts.network) {
        (Keys::Operator { set, .. } | Keys::Follower { set, .. }, _) => set
            .validators
            .get(v)
            .map(|e| e.address)
            .ok_or_else(|| NodeError::Config(format!("no validator {v} in the set"))),
        (Keys::Devnet, Network::Kemtls { ip, base_port }) => u16::try_from(v)
            .ok()
            .and_then(|v| base_port.checked_add(v))
            .map(|port| SocketAddr::new(*ip, port))
            .ok_or_else(|| NodeError::Config("P2P port out of range".into())),
        (Keys::Devnet, Network::Memory) => Err(NodeError::Config(
            "the in-memory network has no addresses".into(),
        )),
    }
}

/// Validator `v`'s P2P public key.
fn p2p_key(opts: &LocalOptions, v: usize) -> Result<qbind_net::PeerPublic, NodeError> {
    match &opts.keys {
        Keys::Devnet => Ok(p2p_identity(v).public().clone()),
        Keys::Operator { set, .. } | Keys::Follower { set, .. } => set
            .validators
            .get(v)
            .map(|e| e.p2p_key.clone())
            .ok_or_else(|| NodeError::Config(format!("no validator {v} in the set"))),
    }
}

/// The peers validator `i` dials at start: every other validator, or those
/// at the `--bootstrap-peers` addresses.
fn bootstrap_peers(
    opts: &LocalOptions,
    chain: &Chain,
    i: usize,
) -> Result<Vec<(ValidatorId, SocketAddr)>, NodeError> {
    let mut all = Vec::with_capacity(chain.n);
    for v in (0..chain.n).filter(|v| *v != i) {
        all.push((ValidatorId(v as u32), p2p_addr(opts, v)?));
    }
    if opts.settings.bootstrap_peers.is_empty() {
        return Ok(all);
    }
    opts.settings
        .bootstrap_peers
        .iter()
        .map(|addr| {
            all.iter().find(|(_, a)| a == addr).copied().ok_or_else(|| {
                NodeError::Config(format!(
                    "--bootstrap-peers {addr} is not the address of another validator in \
                         the genesis or validator-set file"
                ))
            })
        })
        .collect()
}

/// Validator `i`'s link to its sentry (`--sentry-link-addr`): its own link
/// key, the sentry holding the key the genesis lists as `i`'s.
async fn sentry_link(
    opts: &LocalOptions,
    chain: &Chain,
    i: usize,
) -> Result<qbind_net::sentry::SentryLink, NodeError> {
    let (Keys::Operator { identity, .. }, Some(addr)) = (&opts.keys, opts.settings.sentry_link)
    else {
        return Err(NodeError::Config(
            "--sentry-link-addr needs a validator with its own keys (--genesis, --signer-mode)"
                .into(),
        ));
    };
    let listed = p2p_key(opts, i)?;
    if identity.public() == &listed {
        return Err(NodeError::Config(format!(
            "behind a sentry, the P2P identity key is the validator's own link key: validator \
             {i}'s p2p_pub in the genesis belongs to its sentry"
        )));
    }
    crate::sentry::validator_link(
        chain.env,
        ValidatorId(i as u32),
        (**identity).clone(),
        addr,
        listed,
    )
    .await
}

/// Validator `i`'s KEMTLS transport, listening and dialling the others.
async fn kemtls_transport(
    opts: &LocalOptions,
    chain: &Chain,
    i: usize,
) -> Result<qbind_net::TcpTransport, NodeError> {
    let identity = match &opts.keys {
        Keys::Devnet => p2p_identity(i),
        Keys::Operator { identity, .. } => {
            if identity.public() != &p2p_key(opts, i)? {
                return Err(NodeError::Config(format!(
                    "the P2P identity key is not validator {i}'s p2p_pub in the \
                     validator set file"
                )));
            }
            (**identity).clone()
        }
        Keys::Follower { identity, .. } => (**identity).clone(),
    };
    let mut validators = BTreeMap::new();
    for v in 0..chain.n {
        validators.insert(ValidatorId(v as u32), p2p_key(opts, v)?);
    }
    let bootstrap = bootstrap_peers(opts, chain, i)?;
    let follower = opts.keys.is_follower();
    let listen = match (opts.settings.p2p_listen, opts.only) {
        (Some(addr), Some(_)) => addr,
        (Some(addr), None) if follower => addr,
        (None, _) if follower => {
            return Err(NodeError::Config(
                "a full node needs --p2p-listen-addr (it has no address in the genesis)".into(),
            ));
        }
        (Some(_), None) => {
            return Err(NodeError::Config(
                "--p2p-listen-addr needs one validator per process (--validator-index)".into(),
            ));
        }
        (None, _) => p2p_addr(opts, i)?,
    };
    if opts.settings.p2p_advertised.is_some() && opts.only.is_none() && !follower {
        return Err(NodeError::Config(
            "--p2p-advertised-addr needs one validator per process (--validator-index)".into(),
        ));
    }
    let mut peers = qbind_net::PeerManagerConfig::default();
    // DevNet (all validators in one address range) counts diversity
    // violations but admits them; TestNet and MainNet enforce.
    peers.diversity.mode = opts.settings.diversity;
    peers.discovery_enabled = opts.settings.discovery;
    peers.heartbeat_interval = Duration::from_secs(5);
    // A loopback or private P2P address (the validator's own, in the file)
    // means a local network, whose peers announce such addresses too.
    // (A full node has no address in the file: validator 0's tells.)
    peers.local_network =
        !qbind_net::peers::book::is_routable(p2p_addr(opts, if follower { 0 } else { i })?);
    if let Some(addr) = opts.settings.p2p_advertised
        && !peers.local_network
        && !qbind_net::peers::book::is_routable(addr)
    {
        // Peers of a public network refuse such an announcement.
        return Err(NodeError::Config(format!(
            "--p2p-advertised-addr {addr} is not a globally routable address (loopback, \
             private, link-local or port 0): peers of this network would refuse it"
        )));
    }
    peers.advertised_addr = opts.settings.p2p_advertised;
    qbind_net::TcpTransport::start(qbind_net::TransportConfig {
        local_id: ValidatorId(i as u32),
        identity,
        listen,
        validators,
        bootstrap,
        channel: super::builder::channel_config(chain.env),
        peers,
        // Full nodes this validator admits (none on a full node itself).
        followers: opts.settings.full_nodes.clone(),
    })
    .await
    .map_err(|e| NodeError::Config(format!("P2P transport of validator {i}: {e}")))
}

/// What the run shares with the metrics endpoint.
pub(super) fn shared(
    opts: &LocalOptions,
    chain: &Chain,
    stores: &Stores,
    engines: &mut Engines,
    admin: Option<Arc<crate::admin::AdminMetrics>>,
) -> Result<Arc<Shared>, NodeError> {
    Ok(Arc::new(Shared {
        admin,
        net_is_link: opts.settings.sentry_link.is_some(),
        ids: chain.local.clone(),
        consensus: std::mem::take(&mut engines.consensus),
        payload: std::mem::take(&mut engines.payload),
        net: std::mem::take(&mut engines.net),
        stage_b: std::mem::take(&mut engines.stage_b),
        store: stores
            .services
            .iter()
            .map(|s| Arc::clone(&s.metrics))
            .collect(),
        executed: stores
            .resumed_from
            .iter()
            .map(|h| AtomicU64::new(*h))
            .collect(),
        transfers: chain.local.iter().map(|_| AtomicU64::new(0)).collect(),
        root_mismatches: AtomicU64::new(0),
        monetary_mode: chain
            .execution
            .monetary
            .as_ref()
            .map_or(qbind_core::monetary::MonetaryMode::Off, |m| m.config.mode),
        monetary: chain.local.iter().map(|_| Mutex::new(None)).collect(),
        state_synced: chain.state_synced.clone(),
        signer: match &opts.keys {
            Keys::Devnet => None,
            Keys::Follower { .. } => None,
            Keys::Operator { signer, .. } => Some((
                Arc::clone(signer),
                engines
                    .schedules
                    .first()
                    .cloned()
                    .ok_or_else(|| NodeError::Config("no local validator".into()))?,
            )),
        },
        next_key: opts.keys.next_key().cloned(),
    }))
}

/// The `/metrics` endpoint, bound before anything else starts; the page
/// it serves is set with [`MetricsEndpoint::show`] (empty until then).
/// Dropping it stops the endpoint.
pub(super) struct MetricsEndpoint {
    page: Arc<std::sync::RwLock<Renderer>>,
    _stop: watch::Sender<bool>,
}

impl MetricsEndpoint {
    /// Bind `addr` and serve.
    pub(super) async fn bind(
        addr: SocketAddr,
        out: &impl Fn(&str),
    ) -> Result<MetricsEndpoint, NodeError> {
        let listener = crate::metrics::bind_announced(addr, out).await?;
        let empty: Renderer = Arc::new(String::new);
        let page = Arc::new(std::sync::RwLock::new(empty));
        let current = Arc::clone(&page);
        let renderer: Renderer = Arc::new(move || {
            // Read the renderer, then render without holding the lock.
            let render = Arc::clone(
                &current
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            render()
        });
        if crate::metrics::exposed_beyond_localhost(addr) {
            out(&format!("warning: {}", crate::metrics::EXPOSED_WARNING));
        }
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(crate::metrics::serve(listener, renderer, stopped));
        Ok(MetricsEndpoint { page, _stop: stop })
    }

    /// Serve `registry` from now on (the process's one registry, read at
    /// each scrape).
    pub(super) fn show(&self, registry: Registry) {
        let renderer: Renderer = Arc::new(move || crate::metrics::render(&registry));
        *self
            .page
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = renderer;
    }
}
