//! [`TcpTransport`]: `qbind_core::Transport` over KEMTLS channels on tokio,
//! with the peer manager of spec §5.3–§5.5 (bootstrap + peer exchange,
//! random outbound selection toward a target, diversity buckets, heartbeats,
//! liveness eviction, reconnection with backoff) and runbook §7.3 metrics.
//!
//! Every connected peer has one connection with a bounded send queue
//! (a full queue drops the message with `TransportError::QueueFull`) and a
//! reader that pushes into one bounded inbound queue (a full inbound queue
//! stops reading, so TCP flow control pushes back on the sender).
//!
//! Peers are validators or followers ([`PeerKind`]): followers are admitted
//! inbound only, up to `max_follower_inbound`, outside the validators'
//! inbound cap and diversity buckets, and are never dialled, booked or
//! relayed (`docs/p2p.md`, "Followers").

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use qbind_core::traits::{Transport, TransportError};
use qbind_core::types::ValidatorId;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinHandle};

use crate::channel::{Acceptor, ChannelConfig, SecureChannel, connect};
use crate::error::NetError;
use crate::identity::{AllowedPeers, KeyFingerprint, PeerPublic, StaticIdentity};
use crate::metrics::NetMetrics;
use crate::peers::backoff::BackoffConfig;
use crate::peers::book::{AddrRefusal, AddressBook};
use crate::peers::directory::{PeerDirectory, PeerKind};
use crate::peers::diversity::{DiversityConfig, DiversityTracker};
use crate::peers::liveness::{Heartbeat, Liveness, LivenessConfig};
use crate::wire::{MAX_PEERS_PER_MESSAGE, PeerMessage, PeerRecord};

/// Peer-manager settings (defaults: spec §5.3–§5.5, runbook §7.1).
#[derive(Clone, Debug)]
pub struct PeerManagerConfig {
    /// Outbound connections to aim for (default 8).
    pub outbound_target: usize,
    /// Most inbound connections of validators (default 32). Followers are
    /// not counted here, so they can never lock validators out.
    pub max_inbound: usize,
    /// Most connected followers (default 8): the bound on what the
    /// operator's follower list can hold of this node's connections.
    pub max_follower_inbound: usize,
    /// Ask peers for their peers (default true).
    pub discovery_enabled: bool,
    /// Peer-exchange interval (default 30 s).
    pub discovery_interval: Duration,
    /// Most discovered addresses kept (default 100).
    pub max_discovered: usize,
    /// Heartbeat interval (default 30 s).
    pub heartbeat_interval: Duration,
    /// How often outbound slots are refilled (default 1 s).
    pub maintenance_interval: Duration,
    /// Diversity limits.
    pub diversity: DiversityConfig,
    /// Liveness scoring.
    pub liveness: LivenessConfig,
    /// Reconnection backoff.
    pub backoff: BackoffConfig,
    /// Messages queued per peer before `send` reports `QueueFull` (default 1,024).
    pub send_queue: usize,
    /// Bytes queued per peer before `send` reports `QueueFull` (default
    /// 32 MiB): a peer that stops reading pins at most this much (plus one
    /// message) of our memory, however large the messages it asks for.
    pub send_queue_bytes: usize,
    /// Messages queued for `recv` before readers stop reading (default 4,096).
    pub inbound_queue: usize,
    /// Handshakes in progress at once on the listener (default 64).
    pub max_pending_handshakes: usize,
    /// The validators are on a loopback or private network (DevNet, tests):
    /// accept announced addresses that are not globally routable (default
    /// false: such announcements are refused, see [`crate::peers::book`]).
    pub local_network: bool,
    /// The address this node announces as its own in peer exchange
    /// (`--p2p-advertised-addr`: behind NAT or a port forward, where the
    /// listen address is not the one peers can dial). `None`: the listen
    /// address (a node listening on `0.0.0.0` is then taken at the IP its
    /// connection comes from).
    pub advertised_addr: Option<SocketAddr>,
}

impl Default for PeerManagerConfig {
    fn default() -> Self {
        PeerManagerConfig {
            outbound_target: 8,
            max_inbound: 32,
            max_follower_inbound: 8,
            discovery_enabled: true,
            discovery_interval: Duration::from_secs(30),
            max_discovered: 100,
            heartbeat_interval: Duration::from_secs(30),
            maintenance_interval: Duration::from_secs(1),
            diversity: DiversityConfig::default(),
            liveness: LivenessConfig::default(),
            backoff: BackoffConfig::default(),
            send_queue: 1024,
            send_queue_bytes: 32 * 1024 * 1024,
            inbound_queue: 4096,
            max_pending_handshakes: 64,
            local_network: false,
            advertised_addr: None,
        }
    }
}

/// Everything a [`TcpTransport`] needs.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// This node: a validator's id, or a full node's id outside the validator set.
    pub local_id: ValidatorId,
    /// Its static P2P identity.
    pub identity: StaticIdentity,
    /// Listen address; outbound sockets are bound to its IP too (unless unspecified).
    pub listen: SocketAddr,
    /// P2P public keys of the validator set (ours may be included).
    pub validators: BTreeMap<ValidatorId, PeerPublic>,
    /// Authenticated non-validator peers (full nodes) this node
    /// admits inbound, by id and P2P key: they receive broadcasts and
    /// answers sent to their id, but are never dialled, booked or relayed.
    /// Empty on the full node itself and on validators that serve none.
    /// An id or key that is also a validator's is refused at start.
    pub followers: BTreeMap<ValidatorId, PeerPublic>,
    /// Static bootstrap peers.
    pub bootstrap: Vec<(ValidatorId, SocketAddr)>,
    /// Channel settings.
    pub channel: ChannelConfig,
    /// Peer-manager settings.
    pub peers: PeerManagerConfig,
}

/// The directory of peers, replaceable at epoch boundaries.
struct SharedDirectory(std::sync::RwLock<PeerDirectory>);

impl SharedDirectory {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, PeerDirectory> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, id: ValidatorId) -> Option<(PeerPublic, PeerKind)> {
        self.read().get(id).map(|(p, k)| (p.clone(), k))
    }

    fn validator_key(&self, id: ValidatorId) -> Option<PeerPublic> {
        self.read().validator_key(id).cloned()
    }

    fn is_validator(&self, id: ValidatorId) -> bool {
        self.read().is_validator(id)
    }
}

impl AllowedPeers for SharedDirectory {
    fn lookup(&self, fingerprint: &KeyFingerprint) -> Option<PeerPublic> {
        self.read().lookup(fingerprint)
    }
}

/// One connection's send queue, bounded in messages (`send_queue`) and in
/// bytes (`send_queue_bytes`); shared by the engine's sends and the
/// reader's protocol answers, drained by the writer task.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Vec<u8>>,
    /// Bytes queued and not yet written.
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// Why [`Outbox::push`] refused a message.
enum PushError {
    /// Over the message or byte bound (the message is dropped).
    Full,
    /// The writer task has ended.
    Closed,
}

impl Outbox {
    /// Queue `msg`. A message is refused when the queue already holds bytes
    /// and `msg` would take it over `max_bytes`, so one message larger than
    /// the bound still goes out on an empty queue.
    fn push(&self, msg: Vec<u8>) -> Result<(), PushError> {
        let len = msg.len();
        let queued = self.bytes.load(Ordering::Acquire);
        if queued > 0 && queued.saturating_add(len) > self.max_bytes {
            return Err(PushError::Full);
        }
        // Counted before the writer can take it, so the writer's
        // subtraction never goes below zero.
        self.bytes.fetch_add(len, Ordering::AcqRel);
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.bytes.fetch_sub(len, Ordering::AcqRel);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => PushError::Full,
                    mpsc::error::TrySendError::Closed(_) => PushError::Closed,
                })
            }
        }
    }
}

struct Conn {
    id: u64,
    outbox: Outbox,
    outbound: bool,
    kind: PeerKind,
    /// The address we dialled (outbound only): failures back off that address.
    dialled: Option<SocketAddr>,
    initiator: ValidatorId,
    ip: IpAddr,
    key: KeyFingerprint,
    liveness: Liveness,
    tasks: Vec<AbortHandle>,
}

/// Per-peer state is bounded: `conns` by the directory (one entry per
/// validator, inbound ones by `max_inbound`; one per follower, at most
/// `max_follower_inbound`), `dialing` by the validator set, `book` by
/// [`crate::peers::book::MAX_CANDIDATES_PER_VALIDATOR`] per validator, each
/// connection's queue by `send_queue` messages and `send_queue_bytes` bytes.
/// `diversity` counts validators only: followers are bounded by their own
/// cap, and full nodes run by the validator's operator next to it must not
/// use up that /24.
struct State {
    conns: BTreeMap<ValidatorId, Conn>,
    book: AddressBook,
    diversity: DiversityTracker,
    dialing: BTreeSet<ValidatorId>,
    closed: bool,
    rng: rand::rngs::StdRng,
    next_heartbeat: Instant,
    /// When peer exchange runs next (one peer or all, see `maintain`).
    next_discovery: Instant,
    /// When every connected validator is asked next.
    next_full_discovery: Instant,
    /// Which connected validator a single-peer exchange asks next.
    discovery_turn: usize,
    ping_nonce: u64,
}

impl State {
    /// Remove `peer`'s connection, stop its tasks and free its diversity slot.
    fn remove_conn(&mut self, peer: ValidatorId) -> Option<Conn> {
        let c = self.conns.remove(&peer)?;
        if c.kind == PeerKind::Validator {
            self.diversity.remove(c.ip);
        }
        for t in &c.tasks {
            t.abort();
        }
        Some(c)
    }

    fn count(&self, kind: PeerKind, outbound: bool) -> usize {
        self.conns
            .values()
            .filter(|c| c.kind == kind && c.outbound == outbound)
            .count()
    }
}

struct Shared {
    cfg: TransportConfig,
    keys: SharedDirectory,
    acceptor: Acceptor,
    metrics: Arc<NetMetrics>,
    state: Mutex<State>,
    inbound_tx: mpsc::Sender<(ValidatorId, Vec<u8>)>,
    next_conn_id: AtomicU64,
    local_addr: SocketAddr,
    unresponsive: AtomicBool,
    closed_notify: tokio::sync::Notify,
}

/// The KEMTLS/TCP implementation of [`qbind_core::Transport`].
pub struct TcpTransport {
    shared: Arc<Shared>,
    inbound_rx: tokio::sync::Mutex<mpsc::Receiver<(ValidatorId, Vec<u8>)>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the peer table
        // inconsistent in a way that matters more than stopping would.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update_gauges(&self, st: &State) {
        let m = &self.metrics;
        let (validator, follower) = (PeerKind::Validator, PeerKind::Follower);
        m.outbound_peers
            .store(st.count(validator, true) as u64, Ordering::Relaxed);
        m.inbound_peers
            .store(st.count(validator, false) as u64, Ordering::Relaxed);
        let followers = st.count(follower, false) + st.count(follower, true);
        m.follower_peers.store(followers as u64, Ordering::Relaxed);
        m.known_peers.store(st.book.len() as u64, Ordering::Relaxed);
        m.diversity_distinct_buckets
            .store(st.diversity.distinct_buckets() as u64, Ordering::Relaxed);
    }

    /// Remove connection `conn_id` of `peer` if it is still the current one;
    /// `failed` puts the address into backoff.
    fn drop_conn(&self, peer: ValidatorId, conn_id: u64, failed: bool) {
        let mut st = self.lock();
        if st.conns.get(&peer).is_some_and(|c| c.id == conn_id) {
            let c_dialled = st.remove_conn(peer).and_then(|c| c.dialled);
            // A follower has no book entry: nothing to back off.
            if failed {
                let State { book, rng, .. } = &mut *st;
                let (now, backoff) = (Instant::now(), &self.cfg.peers.backoff);
                match c_dialled {
                    Some(addr) => book.record_dial_failure(peer, addr, now, backoff, rng),
                    None => book.record_failure(peer, now, backoff, rng),
                }
            }
            self.update_gauges(&st);
        }
    }
}

/// `dialled` is the address we dialled for an outbound connection.
fn register(
    shared: &Arc<Shared>,
    peer: ValidatorId,
    chan: SecureChannel,
    dialled: Option<SocketAddr>,
) {
    let outbound = dialled.is_some();
    let local = shared.cfg.local_id;
    let Some(ip) = chan.peer_addr().map(|a| a.ip()) else {
        return;
    };
    let kind = match shared.keys.get(peer) {
        Some((key, kind)) if &key == chan.peer() => kind,
        // The validator set changed while the handshake ran.
        _ => return,
    };
    if outbound && kind != PeerKind::Validator {
        return;
    }
    let mut st = shared.lock();
    if st.closed || peer == local {
        return;
    }
    let initiator = if outbound { local } else { peer };
    if let Some(existing) = st.conns.get(&peer) {
        // Both ends apply the same rule, so they keep the same TCP connection:
        // prefer the one opened by the smaller id; a reconnect from the same
        // side replaces the old (probably dead) connection. (A follower only
        // ever dials, so its connections are all from its side.)
        let preferred = local.min(peer);
        if existing.initiator == preferred && initiator != preferred {
            return;
        }
        st.remove_conn(peer);
    }
    let pcfg = &shared.cfg.peers;
    match kind {
        PeerKind::Validator => {
            if !outbound && st.count(kind, false) >= pcfg.max_inbound {
                return;
            }
            let (admit, violation) = st.diversity.admit(ip, &pcfg.diversity);
            if let Some(v) = violation {
                shared.metrics.diversity_rejected(v);
                tracing::warn!(peer = peer.0, %ip, reason = v.label(), admitted = admit, "P2P peer violates diversity limits");
            }
            if !admit {
                return;
            }
            st.diversity.add(ip);
        }
        PeerKind::Follower => {
            if st.count(kind, false) >= pcfg.max_follower_inbound {
                shared
                    .metrics
                    .follower_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = peer.0, %ip, "P2P follower refused: follower slots full");
                return;
            }
        }
    }
    if outbound {
        shared
            .metrics
            .connections_outbound
            .fetch_add(1, Ordering::Relaxed);
    } else {
        shared
            .metrics
            .connections_inbound
            .fetch_add(1, Ordering::Relaxed);
    }
    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(shared.cfg.peers.send_queue.max(1));
    let outbox = Outbox {
        tx,
        bytes: Arc::new(AtomicUsize::new(0)),
        max_bytes: shared.cfg.peers.send_queue_bytes.max(1),
    };
    let chan_key = chan.peer().fingerprint();
    let (sender, receiver) = chan.into_split();
    let writer = tokio::spawn(write_loop(
        shared.clone(),
        peer,
        conn_id,
        sender,
        rx,
        Arc::clone(&outbox.bytes),
    ));
    let reader = tokio::spawn(read_loop(
        shared.clone(),
        peer,
        conn_id,
        receiver,
        outbox.clone(),
    ));
    st.conns.insert(
        peer,
        Conn {
            id: conn_id,
            outbox,
            outbound,
            kind,
            dialled,
            initiator,
            ip,
            key: chan_key,
            liveness: Liveness::new(&shared.cfg.peers.liveness),
            tasks: vec![writer.abort_handle(), reader.abort_handle()],
        },
    );
    shared.update_gauges(&st);
    tracing::debug!(peer = peer.0, outbound, ?kind, "P2P connection established");
}

async fn write_loop(
    shared: Arc<Shared>,
    peer: ValidatorId,
    conn_id: u64,
    mut sender: crate::channel::SecureSender,
    mut rx: mpsc::Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(msg) = rx.recv().await {
        let sent = sender.send(&msg).await;
        queued.fetch_sub(msg.len(), Ordering::AcqRel);
        if let Err(e) = sent {
            tracing::debug!(peer = peer.0, error = %e, "P2P connection closed on send failure");
            break;
        }
    }
    shared.drop_conn(peer, conn_id, true);
}

async fn read_loop(
    shared: Arc<Shared>,
    peer: ValidatorId,
    conn_id: u64,
    mut receiver: crate::channel::SecureReceiver,
    tx: Outbox,
) {
    let failed = loop {
        let bytes = match receiver.recv().await {
            Ok(b) => b,
            Err(NetError::Closed) => break true,
            Err(e) => {
                shared
                    .metrics
                    .frames_rejected
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = peer.0, error = %e, "P2P connection closed on bad frame");
                break true;
            }
        };
        let msg = match PeerMessage::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                shared
                    .metrics
                    .frames_rejected
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = peer.0, error = %e, "P2P connection closed on malformed message");
                break true;
            }
        };
        let unresponsive = shared.unresponsive.load(Ordering::Relaxed);
        match msg {
            PeerMessage::Payload(b) => {
                if let Some(c) = shared.lock().conns.get_mut(&peer) {
                    c.liveness.on_message();
                }
                if shared.inbound_tx.send((peer, b)).await.is_err() {
                    break false;
                }
            }
            PeerMessage::Ping(n) if !unresponsive => {
                let _ = tx.push(PeerMessage::Pong(n).encode());
            }
            PeerMessage::Ping(_) => {}
            PeerMessage::Pong(n) => {
                let cfg = &shared.cfg.peers.liveness;
                if let Some(c) = shared.lock().conns.get_mut(&peer) {
                    c.liveness.on_message();
                    c.liveness.on_pong(n, cfg);
                }
            }
            PeerMessage::GetPeers if !unresponsive => {
                let list = peer_list(&shared);
                let _ = tx.push(PeerMessage::Peers(list).encode());
            }
            PeerMessage::GetPeers => {}
            PeerMessage::Peers(list) => {
                let mut st = shared.lock();
                let Some(c) = st.conns.get(&peer) else {
                    continue;
                };
                // A follower's word about addresses is not taken: validators
                // book validators only, from validators.
                if c.kind != PeerKind::Validator {
                    continue;
                }
                let observed_ip = c.ip;
                for r in list {
                    if r.id == shared.cfg.local_id || !shared.keys.is_validator(r.id) {
                        continue;
                    }
                    let refused = if r.id == peer {
                        // Its own address, over its own authenticated session;
                        // a node listening on 0.0.0.0 is where we see it.
                        let addr = if r.addr.ip().is_unspecified() {
                            SocketAddr::new(observed_ip, r.addr.port())
                        } else {
                            r.addr
                        };
                        st.book.add_self_announced(peer, addr).err()
                    } else {
                        st.book.add_hearsay(r.id, r.addr, Some(peer)).err()
                    };
                    if let Some(why @ AddrRefusal::NotRoutable) = refused {
                        tracing::debug!(peer = peer.0, about = r.id.0, addr = %r.addr, %why, "P2P announced address refused");
                    }
                }
                shared.update_gauges(&st);
            }
        }
    };
    shared.drop_conn(peer, conn_id, failed);
}

/// Two maintenance rounds (at most the discovery interval): when the first
/// peer exchange runs, and how often one peer is asked while a validator is
/// missing.
fn quick_discovery(peers: &PeerManagerConfig) -> Duration {
    peers.discovery_interval.min(peers.maintenance_interval * 2)
}

fn peer_list(shared: &Shared) -> Vec<PeerRecord> {
    let st = shared.lock();
    let mut v = vec![PeerRecord {
        id: shared.cfg.local_id,
        addr: shared
            .cfg
            .peers
            .advertised_addr
            .unwrap_or(shared.local_addr),
    }];
    // Only bootstrap and proven addresses of validators: hearsay and
    // followers are not relayed.
    let keys = shared.keys.read();
    v.extend(
        st.book
            .shareable()
            .filter(|(id, _)| *id != shared.cfg.local_id && keys.is_validator(*id))
            .map(|(id, addr)| PeerRecord { id, addr })
            .take(MAX_PEERS_PER_MESSAGE - 1),
    );
    v
}

async fn dial(shared: Arc<Shared>, peer: ValidatorId, addr: SocketAddr) {
    shared.metrics.dial_attempts.fetch_add(1, Ordering::Relaxed);
    let result = async {
        let key = shared
            .keys
            .validator_key(peer)
            .ok_or(NetError::UnknownPeer)?;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        let local_ip = shared.local_addr.ip();
        if !local_ip.is_unspecified() && local_ip.is_ipv4() == addr.is_ipv4() {
            socket.bind(SocketAddr::new(local_ip, 0))?;
        }
        let cfg = &shared.cfg.channel;
        let stream: TcpStream = tokio::time::timeout(cfg.handshake_timeout, socket.connect(addr))
            .await
            .map_err(|_| NetError::Timeout)??;
        connect(stream, &shared.cfg.identity, &key, cfg).await
    }
    .await;
    match result {
        Ok(chan) => {
            {
                let mut st = shared.lock();
                st.dialing.remove(&peer);
                // We dialled `addr` and the handshake authenticated `peer`'s key.
                st.book.record_verified(peer, addr);
            }
            register(&shared, peer, chan, Some(addr));
        }
        Err(e) => {
            shared.metrics.handshake_failed(&e);
            tracing::debug!(peer = peer.0, %addr, error = %e, "P2P dial failed");
            let mut st = shared.lock();
            st.dialing.remove(&peer);
            let State { book, rng, .. } = &mut *st;
            book.record_dial_failure(peer, addr, Instant::now(), &shared.cfg.peers.backoff, rng);
        }
    }
}

async fn listen_loop(shared: Arc<Shared>, listener: TcpListener) {
    let pending = Arc::new(Semaphore::new(
        shared.cfg.peers.max_pending_handshakes.max(1),
    ));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            shared.metrics.handshake_failed(&NetError::RateLimited);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let res = shared.acceptor.accept(stream, &shared.keys).await;
            drop(permit);
            let Ok((chan, public)) = res else {
                return;
            };
            // Not inside the `if let`: the directory's read guard would be
            // held into `register`, which takes the state lock (the
            // opposite order of `update_validators`).
            let found = shared.keys.read().identify(&public.fingerprint());
            if let Some((id, _)) = found {
                register(&shared, id, chan, None);
            }
        });
    }
}

fn maintain(shared: &Arc<Shared>) {
    let now = Instant::now();
    let pcfg = &shared.cfg.peers;
    let mut st = shared.lock();
    if st.closed {
        return;
    }
    // Heartbeats and liveness eviction.
    if now >= st.next_heartbeat {
        st.next_heartbeat = now + pcfg.heartbeat_interval;
        let mut evict = Vec::new();
        let mut nonce = st.ping_nonce;
        for (id, c) in &mut st.conns {
            nonce += 1;
            match c.liveness.on_heartbeat(nonce, now, &pcfg.liveness) {
                Heartbeat::Ping(n) => {
                    let _ = c.outbox.push(PeerMessage::Ping(n).encode());
                }
                Heartbeat::MissedThenPing(n) => {
                    shared
                        .metrics
                        .heartbeat_failed
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = c.outbox.push(PeerMessage::Ping(n).encode());
                }
                Heartbeat::Evict => {
                    shared
                        .metrics
                        .heartbeat_failed
                        .fetch_add(1, Ordering::Relaxed);
                    evict.push((*id, c.id));
                }
            }
        }
        st.ping_nonce = nonce;
        drop(st);
        for (id, conn_id) in evict {
            shared
                .metrics
                .evicted_liveness
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = id.0, "P2P peer evicted for liveness");
            shared.drop_conn(id, conn_id, true);
        }
        st = shared.lock();
    }
    // Peer exchange, with validators only (a follower's answer is not taken):
    // every `discovery_interval` all of them are asked; while some validator
    // of the directory is not connected, one of them in turn is asked every
    // two maintenance rounds as well, so that a validator that joined after
    // our last exchange (found only through another) is reached in seconds,
    // not after a whole interval. That costs one small request per round.
    let connected: Vec<ValidatorId> = st
        .conns
        .iter()
        .filter(|(_, c)| c.kind == PeerKind::Validator)
        .map(|(id, _)| *id)
        .collect();
    let missing = shared.keys.read().validator_count() > connected.len();
    let quick = quick_discovery(pcfg);
    if missing {
        // A peer just dropped, or the set grew: no waiting for the full round.
        st.next_discovery = st.next_discovery.min(now + quick);
    }
    if pcfg.discovery_enabled && now >= st.next_discovery {
        if now >= st.next_full_discovery {
            st.next_full_discovery = now + pcfg.discovery_interval;
            for id in &connected {
                if let Some(c) = st.conns.get(id) {
                    let _ = c.outbox.push(PeerMessage::GetPeers.encode());
                }
            }
        } else if !connected.is_empty() {
            let id = connected[st.discovery_turn % connected.len()];
            st.discovery_turn = st.discovery_turn.wrapping_add(1);
            if let Some(c) = st.conns.get(&id) {
                let _ = c.outbox.push(PeerMessage::GetPeers.encode());
            }
        }
        st.next_discovery = if missing {
            (now + quick).min(st.next_full_discovery)
        } else {
            st.next_full_discovery
        };
    }
    // Refill outbound slots with randomly chosen, diverse peers.
    let outbound = st.conns.values().filter(|c| c.outbound).count() + st.dialing.len();
    let mut need = pcfg.outbound_target.saturating_sub(outbound);
    if need > 0 {
        let local = shared.cfg.local_id;
        let mut candidates = st.book.dialable(now, |id| {
            id == local || st.conns.contains_key(&id) || st.dialing.contains(&id)
        });
        let State { rng, .. } = &mut *st;
        candidates.shuffle(rng);
        for (id, addr) in candidates {
            if need == 0 {
                break;
            }
            let (admit, violation) = st.diversity.admit(addr.ip(), &pcfg.diversity);
            if let Some(v) = violation {
                shared.metrics.diversity_rejected(v);
                tracing::warn!(peer = id.0, %addr, reason = v.label(), admitted = admit, "P2P candidate violates diversity limits");
            }
            if !admit {
                let State { book, rng, .. } = &mut *st;
                book.record_dial_failure(id, addr, now, &pcfg.backoff, rng);
                continue;
            }
            st.dialing.insert(id);
            tokio::spawn(dial(shared.clone(), id, addr));
            need -= 1;
        }
    }
    shared.update_gauges(&st);
}

impl TcpTransport {
    /// Bind the listener and start the peer manager. Must be called inside a
    /// tokio runtime.
    ///
    /// # Errors
    /// [`NetError::Directory`] if a follower's id or key is a validator's
    /// (or two followers share a key); [`NetError::Io`] if the listen address
    /// cannot be bound.
    pub async fn start(cfg: TransportConfig) -> Result<TcpTransport, NetError> {
        let directory = PeerDirectory::new(cfg.local_id, &cfg.validators, &cfg.followers)?;
        let listener = TcpListener::bind(cfg.listen).await?;
        let local_addr = listener.local_addr()?;
        let metrics = Arc::new(NetMetrics::default());
        let mut book =
            AddressBook::new(cfg.peers.max_discovered).local_network(cfg.peers.local_network);
        for (id, addr) in &cfg.bootstrap {
            if directory
                .get(*id)
                .is_some_and(|(_, k)| k == PeerKind::Follower)
            {
                tracing::warn!(peer = id.0, %addr, "P2P bootstrap entry names a follower: ignored (followers are never dialled)");
            } else if *id != cfg.local_id {
                book.add_bootstrap(*id, *addr);
            }
        }
        let keys = SharedDirectory(std::sync::RwLock::new(directory));
        let (inbound_tx, inbound_rx) = mpsc::channel(cfg.peers.inbound_queue.max(1));
        let now = Instant::now();
        // The first exchange, two maintenance rounds after the start (a
        // full one: nobody has been asked yet).
        let first_discovery = now + quick_discovery(&cfg.peers);
        let shared = Arc::new(Shared {
            acceptor: Acceptor::new(&cfg.identity, &cfg.channel).with_metrics(metrics.clone()),
            keys,
            metrics,
            state: Mutex::new(State {
                conns: BTreeMap::new(),
                book,
                diversity: DiversityTracker::new(),
                dialing: BTreeSet::new(),
                closed: false,
                rng: rand::rngs::StdRng::from_entropy(),
                next_heartbeat: now + cfg.peers.heartbeat_interval,
                next_discovery: first_discovery,
                next_full_discovery: first_discovery,
                discovery_turn: 0,
                ping_nonce: 0,
            }),
            inbound_tx,
            next_conn_id: AtomicU64::new(1),
            local_addr,
            unresponsive: AtomicBool::new(false),
            closed_notify: tokio::sync::Notify::new(),
            cfg,
        });
        let listen = tokio::spawn(listen_loop(shared.clone(), listener));
        let s2 = shared.clone();
        let maintenance = tokio::spawn(async move {
            let mut tick = tokio::time::interval(s2.cfg.peers.maintenance_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                maintain(&s2);
            }
        });
        Ok(TcpTransport {
            shared,
            inbound_rx: tokio::sync::Mutex::new(inbound_rx),
            tasks: vec![listen, maintenance],
        })
    }

    /// The bound listen address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// This node's metrics.
    #[must_use]
    pub fn metrics(&self) -> Arc<NetMetrics> {
        self.shared.metrics.clone()
    }

    /// Peers with an established connection (validators and followers:
    /// everyone `broadcast` reaches), ascending.
    #[must_use]
    pub fn connected_peers(&self) -> Vec<ValidatorId> {
        self.shared.lock().conns.keys().copied().collect()
    }

    /// A read-only view of this transport's connections that stays with
    /// the caller when the transport itself is handed to an engine (the
    /// node's admin endpoint lists peers through it). It does not keep the
    /// transport alive: once the transport is dropped it reports none.
    #[must_use]
    pub fn peer_view(&self) -> PeerView {
        PeerView(Arc::downgrade(&self.shared))
    }

    /// Followers with an established connection, ascending.
    #[must_use]
    pub fn connected_followers(&self) -> Vec<ValidatorId> {
        let st = self.shared.lock();
        st.conns
            .iter()
            .filter(|(_, c)| c.kind == PeerKind::Follower)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether the connection to `peer` was opened by us.
    #[must_use]
    pub fn is_outbound(&self, peer: ValidatorId) -> Option<bool> {
        self.shared.lock().conns.get(&peer).map(|c| c.outbound)
    }

    /// The liveness score of a connected peer.
    #[must_use]
    pub fn peer_score(&self, peer: ValidatorId) -> Option<i32> {
        self.shared
            .lock()
            .conns
            .get(&peer)
            .map(|c| c.liveness.score())
    }

    /// The address book: validator, candidate address, consecutive
    /// failures; every candidate, in id order, most preferred first.
    #[must_use]
    pub fn known_addresses(&self) -> Vec<(ValidatorId, SocketAddr, u32)> {
        self.shared
            .lock()
            .book
            .iter_all()
            .map(|(id, e)| (id, e.addr, e.failures))
            .collect()
    }

    /// Replace the validator set's P2P keys (at an epoch boundary). Connections
    /// to validators that left the set or changed key are closed, their
    /// addresses forgotten; new validators can connect at once. The
    /// configured followers are kept, and so are their connections; a
    /// follower that joins the set becomes that validator (its follower
    /// connection is closed and it reconnects as a validator), and a
    /// follower again when it leaves.
    pub fn update_validators(&self, validators: &BTreeMap<ValidatorId, PeerPublic>) {
        let local = self.shared.cfg.local_id;
        let mut st = self.shared.lock();
        let directory = self.shared.keys.read().with_validators(local, validators);
        let stale: Vec<ValidatorId> = st
            .conns
            .iter()
            .filter(|(id, c)| {
                directory.get(**id).map(|(p, kind)| (p.fingerprint(), kind))
                    != Some((c.key, c.kind))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            st.remove_conn(id);
        }
        let gone: Vec<ValidatorId> = st
            .book
            .iter()
            .map(|(id, _)| id)
            .filter(|id| !directory.is_validator(*id))
            .collect();
        for id in gone {
            st.book.remove(id);
        }
        *self
            .shared
            .keys
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = directory;
        self.shared.update_gauges(&st);
    }

    /// Fault injection for tests and drills: while set, this node ignores
    /// heartbeats and peer-exchange requests (it keeps its connections open
    /// and keeps sending payloads), as a hung peer would.
    pub fn set_unresponsive(&self, on: bool) {
        self.shared.unresponsive.store(on, Ordering::Relaxed);
    }

    /// Close every connection and stop all tasks. Later calls fail with
    /// `TransportError::Closed`.
    pub fn shutdown(&self) {
        let mut st = self.shared.lock();
        st.closed = true;
        let peers: Vec<ValidatorId> = st.conns.keys().copied().collect();
        for id in peers {
            st.remove_conn(id);
        }
        for t in &self.tasks {
            t.abort();
        }
        self.shared.update_gauges(&st);
        drop(st);
        self.shared.closed_notify.notify_waiters();
    }

    /// Refuse a message the channel could not carry: queued, it would fail
    /// in the writer task and take the connection down with it.
    fn check_size(&self, encoded: &[u8]) -> Result<(), TransportError> {
        let max = self.shared.cfg.channel.max_message;
        if encoded.len() > max {
            return Err(TransportError::TooLarge {
                len: encoded.len(),
                max,
            });
        }
        Ok(())
    }

    fn queue(&self, to: ValidatorId, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.check_size(&bytes)?;
        let st = self.shared.lock();
        if st.closed {
            return Err(TransportError::Closed);
        }
        let c = st.conns.get(&to).ok_or(TransportError::UnknownPeer(to))?;
        match c.outbox.push(bytes) {
            Ok(()) => Ok(()),
            Err(PushError::Full) => {
                self.shared
                    .metrics
                    .send_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                Err(TransportError::QueueFull(to))
            }
            Err(PushError::Closed) => Err(TransportError::UnknownPeer(to)),
        }
    }
}

/// One established connection, as [`PeerView::connected`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectedPeer {
    /// The peer's id (a validator's index, or a follower's id).
    pub id: ValidatorId,
    /// The fingerprint of the P2P key the peer authenticated with.
    pub key: KeyFingerprint,
    /// Whether this node dialled the connection.
    pub outbound: bool,
    /// The address dialled (outbound connections only).
    pub dialled: Option<SocketAddr>,
    /// The peer's IP address as the socket saw it.
    pub ip: IpAddr,
    /// A validator of the current set or an admitted follower.
    pub kind: PeerKind,
}

/// A read-only view of a [`TcpTransport`]'s connections
/// ([`TcpTransport::peer_view`]); it holds the transport weakly.
#[derive(Clone)]
pub struct PeerView(std::sync::Weak<Shared>);

impl std::fmt::Debug for PeerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerView")
            .field("transport_alive", &(self.0.strong_count() > 0))
            .finish()
    }
}

impl PeerView {
    /// The established connections, ascending by id (none once the
    /// transport is gone).
    #[must_use]
    pub fn connected(&self) -> Vec<ConnectedPeer> {
        let Some(shared) = self.0.upgrade() else {
            return Vec::new();
        };
        let st = shared.lock();
        st.conns
            .iter()
            .map(|(id, c)| ConnectedPeer {
                id: *id,
                key: c.key,
                outbound: c.outbound,
                dialled: c.dialled,
                ip: c.ip,
                kind: c.kind,
            })
            .collect()
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[async_trait]
impl Transport for TcpTransport {
    /// Queue `bytes` for `to`. `UnknownPeer` if `to` is not currently
    /// connected; `QueueFull` if its send queue is full (message dropped);
    /// `TooLarge` above the channel's `max_message` (nothing sent).
    async fn send(&self, to: ValidatorId, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.queue(to, PeerMessage::Payload(bytes).encode())
    }

    /// Queue `bytes` for every connected peer, validators and followers; full
    /// queues drop (and count) their copy.
    /// `TooLarge` (nothing sent) above the channel's `max_message`.
    async fn broadcast(&self, bytes: Vec<u8>) -> Result<(), TransportError> {
        let msg = PeerMessage::Payload(bytes).encode();
        self.check_size(&msg)?;
        let peers = self.connected_peers();
        if self.shared.lock().closed {
            return Err(TransportError::Closed);
        }
        for p in peers {
            let _ = self.queue(p, msg.clone());
        }
        Ok(())
    }

    async fn recv(&self) -> Result<(ValidatorId, Vec<u8>), TransportError> {
        let notified = self.shared.closed_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.shared.lock().closed {
            return Err(TransportError::Closed);
        }
        let mut rx = self.inbound_rx.lock().await;
        tokio::select! {
            m = rx.recv() => m.ok_or(TransportError::Closed),
            () = &mut notified => Err(TransportError::Closed),
        }
    }
}
