//! A validator behind a sentry, over real sockets on 127.0.0.1: validators
//! 0 and 1 talk to "validator 2", which is its sentry (holding the P2P key
//! they know as 2's); the real validator 2 has only a link to the sentry.
//! Messages go both ways, broadcasts included, with the right senders; bad
//! link frames are counted and dropped; nothing but the validator may use
//! the link.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use qbind_core::traits::Transport;
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_net::metrics::HandshakeFailure;
use qbind_net::sentry::{LINK_FRAME_OVERHEAD, LinkFrame, Relay, SENTRY_LINK_ID, SentryLink};
use qbind_net::{
    ChannelConfig, PeerManagerConfig, PeerPublic, StaticIdentity, TcpTransport, TransportConfig,
};
use tokio::sync::watch;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(15);

fn ident(seed: u8) -> StaticIdentity {
    StaticIdentity::from_seed(&[seed; 32], &[seed ^ 0x5a; 32])
}

/// The network's view: validators 0, 1, 2 with keys `ident(0..3)`; 2's is
/// the sentry's.
fn network_keys() -> BTreeMap<ValidatorId, PeerPublic> {
    (0..3u8)
        .map(|i| (ValidatorId(u32::from(i)), ident(i).public().clone()))
        .collect()
}

/// The validator's own link key (nobody but its sentry knows it).
const LINK_KEY: u8 = 42;

fn peers() -> PeerManagerConfig {
    PeerManagerConfig {
        // Slow heartbeats: one test keeps the validator from reading for a
        // while, and liveness must not evict anyone meanwhile.
        heartbeat_interval: Duration::from_secs(5),
        maintenance_interval: Duration::from_millis(50),
        local_network: true,
        ..PeerManagerConfig::default()
    }
}

fn link_channel() -> ChannelConfig {
    let mut c = ChannelConfig::new(NetworkEnvironment::Devnet);
    // Exactly what qbind-node gives a link (qbind_node_ref::sentry).
    c.max_message += LINK_FRAME_OVERHEAD;
    c
}

struct Net {
    v0: TcpTransport,
    v1: TcpTransport,
    validator: SentryLink,
    relay: Relay,
    network: Arc<TcpTransport>,
    link_side: Arc<TcpTransport>,
    link_addr: std::net::SocketAddr,
    _stop: watch::Sender<bool>,
}

async fn start() -> Net {
    let keys = network_keys();
    let tcfg = |id: u32, bootstrap: Vec<(ValidatorId, std::net::SocketAddr)>| TransportConfig {
        local_id: ValidatorId(id),
        identity: ident(id as u8),
        listen: "127.0.0.1:0".parse().unwrap(),
        validators: keys.clone(),
        followers: BTreeMap::new(),
        bootstrap,
        channel: ChannelConfig::new(NetworkEnvironment::Devnet),
        peers: peers(),
    };
    let v0 = TcpTransport::start(tcfg(0, vec![])).await.unwrap();
    let v1 = TcpTransport::start(tcfg(1, vec![(ValidatorId(0), v0.local_addr())]))
        .await
        .unwrap();
    // The sentry: to the network it is validator 2.
    let network = TcpTransport::start(tcfg(
        2,
        vec![
            (ValidatorId(0), v0.local_addr()),
            (ValidatorId(1), v1.local_addr()),
        ],
    ))
    .await
    .unwrap();
    let link_side = TcpTransport::start(TransportConfig {
        local_id: SENTRY_LINK_ID,
        identity: ident(2),
        listen: "127.0.0.1:0".parse().unwrap(),
        validators: BTreeMap::from([(ValidatorId(2), ident(LINK_KEY).public().clone())]),
        followers: BTreeMap::new(),
        bootstrap: vec![],
        channel: link_channel(),
        peers: PeerManagerConfig {
            discovery_enabled: false,
            ..peers()
        },
    })
    .await
    .unwrap();
    let link_addr = link_side.local_addr();
    let (stop, stop_rx) = watch::channel(false);
    let link_side = Arc::new(link_side);
    let network = Arc::new(network);
    let relay = Relay::spawn(
        ValidatorId(2),
        Arc::clone(&network),
        Arc::clone(&link_side),
        stop_rx,
    );
    // The validator dials its sentry and nobody else.
    let link = TcpTransport::start(TransportConfig {
        local_id: ValidatorId(2),
        identity: ident(LINK_KEY),
        listen: "127.0.0.1:0".parse().unwrap(),
        validators: BTreeMap::from([(SENTRY_LINK_ID, ident(2).public().clone())]),
        followers: BTreeMap::new(),
        bootstrap: vec![(SENTRY_LINK_ID, link_addr)],
        channel: link_channel(),
        peers: PeerManagerConfig {
            discovery_enabled: false,
            ..peers()
        },
    })
    .await
    .unwrap();
    let net = Net {
        v0,
        v1,
        validator: SentryLink::new(link),
        relay,
        network,
        link_side,
        link_addr,
        _stop: stop,
    };
    wait_until("everyone connected", || {
        net.validator.link().connected_peers() == vec![SENTRY_LINK_ID]
            && net.v0.connected_peers().contains(&ValidatorId(2))
            && net.v1.connected_peers().contains(&ValidatorId(2))
    })
    .await;
    net
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn recv_from(t: &impl Transport) -> (ValidatorId, Vec<u8>) {
    timeout(LIMIT, t.recv())
        .await
        .expect("in time")
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_behind_its_sentry_talks_both_ways() {
    let net = start().await;
    // The network to the validator, through the sentry, with its sender.
    net.v0
        .send(ValidatorId(2), b"to 2 from 0".to_vec())
        .await
        .unwrap();
    assert_eq!(
        recv_from(&net.validator).await,
        (ValidatorId(0), b"to 2 from 0".to_vec())
    );
    net.v1.broadcast(b"everyone from 1".to_vec()).await.unwrap();
    assert_eq!(
        recv_from(&net.validator).await,
        (ValidatorId(1), b"everyone from 1".to_vec())
    );
    // The validator to one peer, and to all: they see validator 2.
    net.validator
        .send(ValidatorId(1), b"to 1 from 2".to_vec())
        .await
        .unwrap();
    loop {
        // (v1 may first see v0's broadcast-free traffic: only payloads reach recv.)
        let (from, msg) = recv_from(&net.v1).await;
        if msg == b"to 1 from 2" {
            assert_eq!(from, ValidatorId(2));
            break;
        }
    }
    net.validator
        .broadcast(b"everyone from 2".to_vec())
        .await
        .unwrap();
    for t in [&net.v0, &net.v1] {
        loop {
            let (from, msg) = recv_from(t).await;
            if msg == b"everyone from 2" {
                assert_eq!(from, ValidatorId(2));
                break;
            }
        }
    }
    let m = net.relay.metrics();
    assert_eq!(m.to_network.load(Ordering::Relaxed), 2);
    assert_eq!(m.to_validator.load(Ordering::Relaxed), 2);
    assert_eq!(m.malformed.load(Ordering::Relaxed), 0);

    // Frames that do not decode, or go the wrong way, are dropped and
    // counted; the relay keeps working.
    let link = net.validator.link();
    link.send(SENTRY_LINK_ID, vec![9, 9]).await.unwrap();
    let wrong_way = LinkFrame::From {
        peer: ValidatorId(0),
        payload: b"forged".to_vec(),
    };
    link.send(SENTRY_LINK_ID, wrong_way.encode()).await.unwrap();
    wait_until("two malformed frames counted", || {
        m.malformed.load(Ordering::Relaxed) == 2
    })
    .await;
    net.v0
        .send(ValidatorId(2), b"still here".to_vec())
        .await
        .unwrap();
    assert_eq!(
        recv_from(&net.validator).await,
        (ValidatorId(0), b"still here".to_vec())
    );
    // A message to a peer the sentry is not connected to is counted, not
    // fatal.
    net.validator
        .send(ValidatorId(7), b"nobody".to_vec())
        .await
        .unwrap();
    wait_until("undelivered counted", || {
        m.undelivered.load(Ordering::Relaxed) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_validator_key_may_open_the_link() {
    let net = start().await;
    // A stranger with a key the network knows (validator 0's) dials the
    // sentry's link listener: refused, it never becomes the link's peer.
    let stranger = TcpTransport::start(TransportConfig {
        local_id: ValidatorId(2),
        identity: ident(0),
        listen: "127.0.0.1:0".parse().unwrap(),
        validators: BTreeMap::from([(SENTRY_LINK_ID, ident(2).public().clone())]),
        followers: BTreeMap::new(),
        bootstrap: vec![(SENTRY_LINK_ID, net.link_addr)],
        channel: link_channel(),
        peers: PeerManagerConfig {
            discovery_enabled: false,
            ..peers()
        },
    })
    .await
    .unwrap();
    let metrics = net.link_side.metrics();
    wait_until("the stranger's handshake refused", || {
        metrics.handshake_failures_of(HandshakeFailure::UnknownPeer) >= 1
    })
    .await;
    assert!(stranger.connected_peers().is_empty());
    // The validator's link is untouched.
    assert_eq!(net.validator.link().connected_peers(), vec![SENTRY_LINK_ID]);
    net.v0
        .send(ValidatorId(2), b"after".to_vec())
        .await
        .unwrap();
    assert_eq!(
        recv_from(&net.validator).await,
        (ValidatorId(0), b"after".to_vec())
    );
}

/// Issue found in review: the relay dropped messages for the validator
/// when the link's queue was full, where a direct connection pushes back.
/// The validator reads nothing while validator 0 sends up to 30,000
/// messages of 1 KiB (far more than the link's and the validator's queues
/// hold) until its own queue is full; then the validator reads: every
/// message validator 0 was able to send arrives, in order, none dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_validator_pushes_back_through_its_sentry_instead_of_losing_messages() {
    let net = start().await;
    let payload = vec![7u8; 1_024];
    let mut sent = 0u32;
    'sending: for i in 0..30_000u32 {
        let mut m = payload.clone();
        m[..4].copy_from_slice(&i.to_be_bytes());
        let mut full_since = None;
        while net.v0.send(ValidatorId(2), m.clone()).await.is_err() {
            // A full queue: the writer is behind, or back-pressure reached
            // the sender (full for 300 ms): stop sending.
            let since = *full_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(300) {
                break 'sending;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sent += 1;
    }
    assert!(sent > 6_000, "only {sent} sent");
    let mut got = 0u32;
    let mut last = None;
    while got < sent {
        let (from, msg) = recv_from(&net.validator).await;
        assert_eq!(from, ValidatorId(0));
        let n = u32::from_be_bytes(msg[..4].try_into().unwrap());
        assert!(last.is_none_or(|l| n > l), "in order");
        last = Some(n);
        got += 1;
    }
    let m = net.relay.metrics();
    assert_eq!(m.undelivered.load(Ordering::Relaxed), 0);
    assert_eq!(m.to_validator.load(Ordering::Relaxed), u64::from(sent));
}

/// The largest message the network carries also fits through the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_network_message_fits_through_the_link() {
    let net = start().await;
    let max = ChannelConfig::new(NetworkEnvironment::Devnet).max_message;
    // The network channel carries the payload plus one type byte.
    let big = vec![0x5a; max - 1];
    net.v0.send(ValidatorId(2), big.clone()).await.unwrap();
    let (from, msg) = recv_from(&net.validator).await;
    assert_eq!((from, msg.len()), (ValidatorId(0), big.len()));
    net.validator
        .send(ValidatorId(1), big.clone())
        .await
        .unwrap();
    loop {
        let (from, msg) = recv_from(&net.v1).await;
        if msg.len() == big.len() {
            assert_eq!(from, ValidatorId(2));
            break;
        }
    }
}

/// When a transport of the relay closes, both directions stop and
/// `stopped` returns (the sentry then exits instead of answering as its
/// validator while relaying nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_stops_when_a_transport_closes() {
    let net = start().await;
    net.network.shutdown();
    timeout(LIMIT, net.relay.stopped())
        .await
        .expect("the relay stops");
    timeout(LIMIT, net.relay.join())
        .await
        .expect("both directions end");
}
