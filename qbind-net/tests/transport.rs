//! The validator transport and peer manager over real sockets; distinct
//! 127.x.y.z addresses stand in for different subnets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use qbind_core::traits::{Transport, TransportError};
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_net::metrics::DiversityReason;
use qbind_net::peers::backoff::BackoffConfig;
use qbind_net::peers::diversity::{DiversityConfig, DiversityMode};
use qbind_net::wire::{PeerMessage, PeerRecord};
use qbind_net::{
    ChannelConfig, PeerManagerConfig, PeerPublic, StaticIdentity, TcpTransport, TransportConfig,
};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(15);

fn ident(id: u32) -> StaticIdentity {
    let b = id as u8;
    StaticIdentity::from_seed(&[b; 32], &[b ^ 0xa5; 32])
}

fn validators(n: u32) -> BTreeMap<ValidatorId, PeerPublic> {
    (0..n)
        .map(|i| (ValidatorId(i), ident(i).public().clone()))
        .collect()
}

fn fast_peers() -> PeerManagerConfig {
    PeerManagerConfig {
        discovery_interval: Duration::from_millis(200),
        heartbeat_interval: Duration::from_millis(100),
        maintenance_interval: Duration::from_millis(50),
        backoff: BackoffConfig {
            base: Duration::from_millis(300),
            max: Duration::from_secs(2),
            jitter: 0.1,
        },
        // Every node here is on 127.0.0.0/8.
        local_network: true,
        ..PeerManagerConfig::default()
    }
}

/// Followers `ids`, keyed like validators (`ident(id)`).
fn followers(ids: &[u32]) -> BTreeMap<ValidatorId, PeerPublic> {
    ids.iter()
        .map(|i| (ValidatorId(*i), ident(*i).public().clone()))
        .collect()
}

fn config(
    id: u32,
    ip: &str,
    n: u32,
    bootstrap: Vec<(u32, SocketAddr)>,
    peers: PeerManagerConfig,
) -> TransportConfig {
    TransportConfig {
        local_id: ValidatorId(id),
        identity: ident(id),
        listen: format!("{ip}:0").parse().unwrap(),
        validators: validators(n),
        followers: BTreeMap::new(),
        bootstrap: bootstrap
            .into_iter()
            .map(|(i, a)| (ValidatorId(i), a))
            .collect(),
        channel: ChannelConfig::new(NetworkEnvironment::Devnet),
        peers,
    }
}

async fn node(
    id: u32,
    ip: &str,
    n: u32,
    bootstrap: Vec<(u32, SocketAddr)>,
    peers: PeerManagerConfig,
) -> TcpTransport {
    TcpTransport::start(config(id, ip, n, bootstrap, peers))
        .await
        .unwrap()
}

/// Validator `id` of a set of `n` that admits the followers `admit`.
async fn serving_node(
    id: u32,
    ip: &str,
    n: u32,
    bootstrap: Vec<(u32, SocketAddr)>,
    peers: PeerManagerConfig,
    admit: &[u32],
) -> TcpTransport {
    TcpTransport::start(TransportConfig {
        followers: followers(admit),
        ..config(id, ip, n, bootstrap, peers)
    })
    .await
    .unwrap()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(v: &[u32]) -> Vec<ValidatorId> {
    v.iter().map(|i| ValidatorId(*i)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_validators_exchange_messages() {
    let n0 = node(0, "127.10.0.1", 3, vec![], fast_peers()).await;
    let n1 = node(1, "127.11.0.1", 3, vec![(0, n0.local_addr())], fast_peers()).await;
    let n2 = node(
        2,
        "127.12.0.1",
        3,
        vec![(0, n0.local_addr()), (1, n1.local_addr())],
        fast_peers(),
    )
    .await;
    wait_until("full mesh", || {
        n0.connected_peers() == ids(&[1, 2])
            && n1.connected_peers() == ids(&[0, 2])
            && n2.connected_peers() == ids(&[0, 1])
    })
    .await;
    n0.send(ValidatorId(1), b"to one".to_vec()).await.unwrap();
    assert_eq!(
        timeout(LIMIT, n1.recv()).await.unwrap().unwrap(),
        (ValidatorId(0), b"to one".to_vec())
    );
    n2.broadcast(b"all".to_vec()).await.unwrap();
    assert_eq!(
        timeout(LIMIT, n0.recv()).await.unwrap().unwrap(),
        (ValidatorId(2), b"all".to_vec())
    );
    assert_eq!(
        timeout(LIMIT, n1.recv()).await.unwrap().unwrap(),
        (ValidatorId(2), b"all".to_vec())
    );
    assert!(matches!(
        n0.send(ValidatorId(9), vec![1]).await,
        Err(TransportError::UnknownPeer(ValidatorId(9)))
    ));
    let m = n2.metrics();
    assert!(
        m.connections_inbound.load(Ordering::Relaxed)
            + m.connections_outbound.load(Ordering::Relaxed)
            >= 2
    );
    assert_eq!(
        m.outbound_peers.load(Ordering::Relaxed) + m.inbound_peers.load(Ordering::Relaxed),
        2
    );
    n0.shutdown();
    assert!(matches!(n0.recv().await, Err(TransportError::Closed)));
}

/// A validator that connects to our peer after our last peer exchange is
/// found in seconds, not after the whole `discovery_interval` (30 s here):
/// while a validator of the directory is missing, one connected validator is
/// asked every two maintenance rounds (the startup race of a 4-process test,
/// where validator 2 was reached 31 s late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_that_joins_after_the_last_exchange_is_found_quickly() {
    let slow = PeerManagerConfig {
        discovery_interval: Duration::from_secs(30),
        ..fast_peers()
    };
    let b = node(2, "127.91.0.1", 4, vec![], slow.clone()).await;
    let a = node(1, "127.92.0.1", 4, vec![(2, b.local_addr())], slow.clone()).await;
    wait_until("A connected to B", || {
        a.connected_peers().contains(&ValidatorId(2))
    })
    .await;
    // A's first exchange (two maintenance rounds after its start) is over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // C asks nobody for peers itself: A must find it through B.
    let quiet = PeerManagerConfig {
        discovery_enabled: false,
        ..slow
    };
    let c = node(3, "127.93.0.1", 4, vec![(2, b.local_addr())], quiet).await;
    wait_until("A connected to C", || {
        a.connected_peers().contains(&ValidatorId(3))
    })
    .await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_reaches_a_peer_known_only_through_another() {
    let no_discovery = PeerManagerConfig {
        discovery_enabled: false,
        ..fast_peers()
    };
    let c = node(3, "127.23.0.1", 4, vec![], no_discovery).await;
    let b = node(2, "127.22.0.1", 4, vec![(3, c.local_addr())], fast_peers()).await;
    let a = node(1, "127.21.0.1", 4, vec![(2, b.local_addr())], fast_peers()).await;
    wait_until("A connected to C", || {
        a.connected_peers().contains(&ValidatorId(3))
    })
    .await;
    assert_eq!(
        a.is_outbound(ValidatorId(3)),
        Some(true),
        "A dialled C itself"
    );
    assert!(
        a.known_addresses()
            .iter()
            .any(|(id, addr, _)| *id == ValidatorId(3) && *addr == c.local_addr())
    );
    a.send(ValidatorId(3), b"found you".to_vec()).await.unwrap();
    assert_eq!(
        timeout(LIMIT, c.recv()).await.unwrap().unwrap(),
        (ValidatorId(1), b"found you".to_vec())
    );
    assert!(a.metrics().known_peers.load(Ordering::Relaxed) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diversity_limits_are_enforced_across_subnets() {
    let quiet = PeerManagerConfig {
        discovery_enabled: false,
        outbound_target: 0,
        ..fast_peers()
    };
    let targets = [
        (1, "127.5.5.1"),
        (2, "127.5.5.2"),
        (3, "127.5.5.3"),
        (4, "127.6.1.1"),
        (5, "127.6.2.1"),
    ];
    let mut nodes = Vec::new();
    for (id, ip) in targets {
        nodes.push(node(id, ip, 8, vec![], quiet.clone()).await);
    }
    let boot: Vec<(u32, SocketAddr)> = nodes
        .iter()
        .zip(targets)
        .map(|(n, (id, _))| (id, n.local_addr()))
        .collect();
    let enforce = PeerManagerConfig {
        discovery_enabled: false,
        ..fast_peers()
    };
    let x = node(0, "127.9.9.1", 8, boot.clone(), enforce.clone()).await;
    let warn = PeerManagerConfig {
        diversity: DiversityConfig {
            mode: DiversityMode::Warn,
            ..DiversityConfig::default()
        },
        ..enforce
    };
    let y = node(6, "127.9.8.1", 8, boot, warn).await;
    wait_until("X has four peers", || x.connected_peers().len() == 4).await;
    wait_until("Y has five peers", || y.connected_peers().len() == 5).await;
    wait_until("rejection counted", || {
        x.metrics()
            .diversity_rejections_of(DiversityReason::Prefix24)
            >= 1
    })
    .await;
    // Give X time to try again: still only two peers from 127.5.5.0/24.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let in_24 = x.connected_peers().iter().filter(|p| p.0 <= 3).count();
    assert_eq!(in_24, 2);
    assert_eq!(x.connected_peers().len(), 4);
    assert!(
        y.metrics()
            .diversity_rejections_of(DiversityReason::Prefix24)
            >= 1,
        "Warn mode counts too"
    );
    assert_eq!(
        x.metrics()
            .diversity_distinct_buckets
            .load(Ordering::Relaxed),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_evicted_and_reconnected_with_backoff() {
    let no_discovery = PeerManagerConfig {
        discovery_enabled: false,
        ..fast_peers()
    };
    let b = node(2, "127.32.0.1", 3, vec![], no_discovery.clone()).await;
    let a = node(1, "127.31.0.1", 3, vec![(2, b.local_addr())], no_discovery).await;
    wait_until("connected", || a.connected_peers() == ids(&[2])).await;
    b.set_unresponsive(true);
    wait_until("evicted", || {
        a.metrics().evicted_liveness.load(Ordering::Relaxed) == 1
    })
    .await;
    let evicted_at = Instant::now();
    b.set_unresponsive(false);
    assert!(a.metrics().heartbeat_failed.load(Ordering::Relaxed) >= 3);
    assert_eq!(
        a.known_addresses()[0].2,
        1,
        "one failure recorded: backoff armed"
    );
    wait_until("reconnected", || a.connected_peers() == ids(&[2])).await;
    let waited = evicted_at.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "reconnected after {waited:?}, before the backoff"
    );
    assert!(a.metrics().dial_attempts.load(Ordering::Relaxed) >= 2);
    assert!(a.peer_score(ValidatorId(2)).unwrap() > 50);
    a.send(ValidatorId(2), b"back".to_vec()).await.unwrap();
    assert_eq!(
        timeout(LIMIT, b.recv()).await.unwrap().unwrap(),
        (ValidatorId(1), b"back".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_send_queue_reports_queue_full() {
    let small = PeerManagerConfig {
        discovery_enabled: false,
        send_queue: 2,
        inbound_queue: 1,
        ..fast_peers()
    };
    let b = node(2, "127.42.0.1", 3, vec![], small.clone()).await;
    let a = node(1, "127.41.0.1", 3, vec![(2, b.local_addr())], small).await;
    wait_until("connected", || a.connected_peers() == ids(&[2])).await;
    // B never calls recv: its reader stops, TCP fills, A's writer blocks, A's queue fills.
    let big = vec![0u8; 1 << 20];
    let mut full = false;
    for _ in 0..200 {
        match a.send(ValidatorId(2), big.clone()).await {
            Ok(()) => tokio::time::sleep(Duration::from_millis(2)).await,
            Err(TransportError::QueueFull(ValidatorId(2))) => {
                full = true;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(full, "queue never filled");
    assert!(a.metrics().send_queue_full.load(Ordering::Relaxed) >= 1);
    // Draining on B's side lets traffic flow again.
    assert_eq!(
        timeout(LIMIT, b.recv()).await.unwrap().unwrap().0,
        ValidatorId(1)
    );
}

/// A peer that stops reading while asking for large answers (a 4 MiB sync
/// answer costs it a few bytes of request) pins at most `send_queue_bytes`
/// of our memory, not `send_queue` messages of any size (1,024 × 4 MiB
/// would be 4 GiB per peer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_pins_a_bounded_number_of_bytes() {
    let bounded = PeerManagerConfig {
        discovery_enabled: false,
        send_queue_bytes: 8 << 20,
        inbound_queue: 1,
        ..fast_peers()
    };
    let b = node(2, "127.44.0.1", 3, vec![], bounded.clone()).await;
    let a = node(1, "127.43.0.1", 3, vec![(2, b.local_addr())], bounded).await;
    wait_until("connected", || a.connected_peers() == ids(&[2])).await;
    // B never calls recv: its reader stops, TCP fills, A's writer blocks.
    let answer = vec![0u8; 4 << 20];
    let mut accepted = 0usize;
    let mut full = false;
    for _ in 0..400 {
        match a.send(ValidatorId(2), answer.clone()).await {
            Ok(()) => {
                accepted += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(TransportError::QueueFull(ValidatorId(2))) => {
                full = true;
                break;
            }
            Err(e) => panic!("unexpected {e} after {accepted} answers of 4 MiB queued"),
        }
    }
    assert!(
        full,
        "{accepted} answers of 4 MiB queued and still no QueueFull"
    );
    // 8 MiB of queue, plus what the TCP buffers, the channel's reader and
    // B's inbound queue took before the writer blocked.
    assert!(
        accepted <= 16,
        "{accepted} answers of 4 MiB accepted for a peer that does not read"
    );
    // Once B reads again, traffic flows and the queue drains.
    assert_eq!(
        timeout(LIMIT, b.recv()).await.unwrap().unwrap().0,
        ValidatorId(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_cut_off_and_counted_while_honest_traffic_flows() {
    use qbind_net::metrics::HandshakeFailure;
    let quiet = PeerManagerConfig {
        discovery_enabled: false,
        ..fast_peers()
    };
    let a = node(1, "127.51.0.1", 4, vec![], quiet.clone()).await;
    let b = node(2, "127.52.0.1", 4, vec![(1, a.local_addr())], quiet).await;
    wait_until("honest link", || a.connected_peers() == ids(&[2])).await;
    let cfg = ChannelConfig::new(NetworkEnvironment::Devnet);
    // A stranger (not in the validator set) is refused during the handshake.
    let stranger = StaticIdentity::from_seed(&[200; 32], &[201; 32]);
    assert!(
        qbind_net::connect_addr(a.local_addr(), &stranger, ident(1).public(), &cfg)
            .await
            .is_err()
    );
    // Validator 3 authenticates, then sends a malformed peer message.
    let mut chan = qbind_net::connect_addr(a.local_addr(), &ident(3), ident(1).public(), &cfg)
        .await
        .unwrap();
    wait_until("validator 3 registered", || {
        a.connected_peers().contains(&ValidatorId(3))
    })
    .await;
    chan.send(&[0x09, 1, 2, 3]).await.unwrap();
    assert!(
        timeout(LIMIT, chan.recv()).await.unwrap().is_err(),
        "connection closed by A"
    );
    wait_until("counted", || {
        a.metrics().frames_rejected.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(
        a.metrics()
            .handshake_failures_of(HandshakeFailure::UnknownPeer),
        1
    );
    assert_eq!(a.connected_peers(), ids(&[2]));
    b.send(ValidatorId(1), b"unaffected".to_vec())
        .await
        .unwrap();
    assert_eq!(
        timeout(LIMIT, a.recv()).await.unwrap().unwrap(),
        (ValidatorId(2), b"unaffected".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_set_changes_close_and_open_connections() {
    let quiet = PeerManagerConfig {
        discovery_enabled: false,
        ..fast_peers()
    };
    let a = node(1, "127.61.0.1", 3, vec![], quiet.clone()).await;
    let b = node(2, "127.62.0.1", 3, vec![(1, a.local_addr())], quiet.clone()).await;
    wait_until("linked", || a.connected_peers() == ids(&[2])).await;
    // Next epoch: validator 2 leaves A's set, validator 3 joins.
    let mut next = validators(3);
    next.remove(&ValidatorId(2));
    next.insert(ValidatorId(3), ident(3).public().clone());
    a.update_validators(&next);
    assert!(
        a.connected_peers().is_empty(),
        "departed validator disconnected"
    );
    // B keeps redialling with backoff but is refused as an unknown peer.
    wait_until("B refused", || {
        a.metrics()
            .handshake_failures_of(qbind_net::metrics::HandshakeFailure::UnknownPeer)
            >= 1
    })
    .await;
    assert!(a.connected_peers().is_empty());
    let c = node(3, "127.63.0.1", 4, vec![(1, a.local_addr())], quiet).await;
    wait_until("newcomer linked", || a.connected_peers() == ids(&[3])).await;
    c.send(ValidatorId(1), b"new epoch".to_vec()).await.unwrap();
    assert_eq!(
        timeout(LIMIT, a.recv()).await.unwrap().unwrap(),
        (ValidatorId(3), b"new epoch".to_vec())
    );
    drop(b);
}

/// A Byzantine validator `id`: connects to the victim with its real key,
/// answers heartbeats, and tells the victim (unprompted every 50 ms, and in
/// reply to every `GetPeers`) that the validators of `lies` are at the
/// addresses it gives. Reconnects when dropped; runs until aborted.
fn byzantine(
    id: u32,
    victim: (u32, SocketAddr),
    lies: Vec<(u32, SocketAddr)>,
) -> tokio::task::JoinHandle<()> {
    let list: Vec<PeerRecord> = lies
        .into_iter()
        .map(|(i, addr)| PeerRecord {
            id: ValidatorId(i),
            addr,
        })
        .collect();
    tokio::spawn(async move {
        let cfg = ChannelConfig::new(NetworkEnvironment::Devnet);
        loop {
            let Ok(chan) =
                qbind_net::connect_addr(victim.1, &ident(id), ident(victim.0).public(), &cfg).await
            else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (mut tx, mut rx) = chan.into_split();
            let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<PeerMessage>(16);
            let reader = tokio::spawn(async move {
                while let Ok(b) = rx.recv().await {
                    let reply = match PeerMessage::decode(&b) {
                        Ok(PeerMessage::Ping(n)) => PeerMessage::Pong(n),
                        Ok(PeerMessage::GetPeers) => PeerMessage::GetPeers,
                        _ => continue,
                    };
                    if pong_tx.send(reply).await.is_err() {
                        return;
                    }
                }
            });
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                let msg = tokio::select! {
                    _ = tick.tick() => PeerMessage::Peers(list.clone()),
                    m = pong_rx.recv() => match m {
                        Some(PeerMessage::GetPeers) => PeerMessage::Peers(list.clone()),
                        Some(m) => m,
                        None => break,
                    },
                };
                if tx.send(&msg.encode()).await.is_err() {
                    break;
                }
            }
            reader.abort();
        }
    })
}

/// Issue #22 finding 5: a Byzantine validator announces bogus addresses for
/// every other validator before the victim hears from anyone honest. The
/// victim must still dial the honest validators it knows only by peer exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byzantine_announcements_do_not_eclipse_honest_validators() {
    let quiet = PeerManagerConfig {
        discovery_enabled: false,
        ..fast_peers()
    };
    let victim = node(0, "127.70.0.1", 5, vec![], fast_peers()).await;
    let bogus = |i: u32| -> SocketAddr { format!("127.250.0.{i}:9").parse().unwrap() };
    let liar = byzantine(
        1,
        (0, victim.local_addr()),
        vec![(2, bogus(2)), (3, bogus(3)), (4, bogus(4))],
    );
    wait_until("the lies are in the victim's book", || {
        let known = victim.known_addresses();
        (2..5).all(|i| {
            known
                .iter()
                .any(|(id, a, _)| *id == ValidatorId(i) && *a == bogus(i))
        })
    })
    .await;
    // Honest validators 3 and 4 never dial anyone; 2 knows them and the victim.
    let c3 = node(3, "127.73.0.1", 5, vec![], quiet.clone()).await;
    let c4 = node(4, "127.74.0.1", 5, vec![], quiet.clone()).await;
    let b2 = node(
        2,
        "127.72.0.1",
        5,
        vec![
            (0, victim.local_addr()),
            (3, c3.local_addr()),
            (4, c4.local_addr()),
        ],
        quiet,
    )
    .await;
    wait_until("the victim dialled 3 and 4 itself", || {
        victim.is_outbound(ValidatorId(3)) == Some(true)
            && victim.is_outbound(ValidatorId(4)) == Some(true)
    })
    .await;
    let known = victim.known_addresses();
    for (id, real) in [(3, c3.local_addr()), (4, c4.local_addr())] {
        let first = known
            .iter()
            .find(|(i, _, _)| *i == ValidatorId(id))
            .unwrap();
        assert_eq!(first.1, real, "the proven address is preferred for {id}");
    }
    assert!(
        known
            .iter()
            .any(|(id, a, _)| *id == ValidatorId(2) && *a == b2.local_addr()),
        "2's own announcement over its session is kept"
    );
    liar.abort();
}

/// On a public network, announced loopback or private addresses are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_routable_announcements_are_refused_on_a_public_network() {
    let public = PeerManagerConfig {
        local_network: false,
        ..fast_peers()
    };
    let victim = node(0, "127.80.0.1", 4, vec![], public).await;
    let liar = byzantine(
        1,
        (0, victim.local_addr()),
        vec![
            (2, "127.0.0.1:22".parse().unwrap()),
            (3, "10.0.0.1:9000".parse().unwrap()),
            (1, "192.168.1.1:9000".parse().unwrap()),
        ],
    );
    wait_until("the liar is connected", || {
        victim.connected_peers() == ids(&[1])
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        victim.known_addresses().is_empty(),
        "{:?}",
        victim.known_addresses()
    );
    liar.abort();
}

/// Issue #18: a message larger than the channel's `max_message` used to be
/// queued, fail in the writer task and take the whole connection down
/// (silently); a restarted validator whose peers answered its catch-up with
/// over-long sync responses was cut off on every reconnect. Now it is
/// refused at `send` and the connection carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused_and_the_connection_survives() {
    let start = |id: u32, ip: &str, bootstrap: Vec<(u32, SocketAddr)>| {
        let mut channel = ChannelConfig::new(NetworkEnvironment::Devnet);
        channel.max_message = 64 << 10;
        let peers = PeerManagerConfig {
            discovery_enabled: false,
            ..fast_peers()
        };
        let ip = ip.to_string();
        async move {
            TcpTransport::start(TransportConfig {
                local_id: ValidatorId(id),
                identity: ident(id),
                listen: format!("{ip}:0").parse().unwrap(),
                validators: validators(2),
                followers: BTreeMap::new(),
                bootstrap: bootstrap
                    .into_iter()
                    .map(|(i, a)| (ValidatorId(i), a))
                    .collect(),
                channel,
                peers,
            })
            .await
            .unwrap()
        }
    };
    let b = start(1, "127.44.0.1", vec![]).await;
    let a = start(0, "127.43.0.1", vec![(1, b.local_addr())]).await;
    wait_until("connected", || {
        a.connected_peers() == ids(&[1]) && b.connected_peers() == ids(&[0])
    })
    .await;
    let opened = a.metrics().connections_outbound.load(Ordering::Relaxed)
        + a.metrics().connections_inbound.load(Ordering::Relaxed);
    let err = a
        .send(ValidatorId(1), vec![7u8; 64 << 10])
        .await
        .expect_err("a message over max_message must be refused");
    assert!(
        matches!(err, TransportError::TooLarge { max, .. } if max == 64 << 10),
        "{err}"
    );
    // Broadcast skips it too, and says so.
    assert!(matches!(
        a.broadcast(vec![7u8; 64 << 10]).await,
        Err(TransportError::TooLarge { .. })
    ));
    a.send(ValidatorId(1), b"after".to_vec()).await.unwrap();
    assert_eq!(
        timeout(LIMIT, b.recv()).await.unwrap().unwrap(),
        (ValidatorId(0), b"after".to_vec())
    );
    // The same connection: nothing was torn down and re-dialled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.connected_peers(), ids(&[1]));
    assert_eq!(
        a.metrics().connections_outbound.load(Ordering::Relaxed)
            + a.metrics().connections_inbound.load(Ordering::Relaxed),
        opened,
        "the connection was replaced"
    );
}

/// `--p2p-advertised-addr`: a node announces the configured address as its
/// own (behind NAT its listen address is not the one peers can dial), and a
/// peer that hears it over the node's own session keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_announces_its_advertised_address() {
    let advertised: SocketAddr = "127.81.0.9:7000".parse().unwrap();
    let n0 = node(
        0,
        "127.81.0.1",
        2,
        vec![],
        PeerManagerConfig {
            advertised_addr: Some(advertised),
            ..fast_peers()
        },
    )
    .await;
    let n1 = node(1, "127.82.0.1", 2, vec![(0, n0.local_addr())], fast_peers()).await;
    wait_until("1 heard 0's advertised address from 0", || {
        n1.known_addresses()
            .iter()
            .any(|(id, a, _)| *id == ValidatorId(0) && *a == advertised)
    })
    .await;
    assert!(
        !n0.known_addresses()
            .iter()
            .any(|(_, a, _)| *a == advertised),
        "a node does not list itself"
    );
}

/// Receive on `t` until every message of `want` has arrived (in any
/// order), skipping other traffic; bounded by `LIMIT`.
async fn recv_all(t: &TcpTransport, want: &[(u32, &[u8])]) {
    let mut missing: Vec<(ValidatorId, Vec<u8>)> = want
        .iter()
        .map(|(id, b)| (ValidatorId(*id), b.to_vec()))
        .collect();
    let done = timeout(LIMIT, async {
        while !missing.is_empty() {
            let got = t.recv().await.unwrap();
            missing.retain(|m| *m != got);
        }
    })
    .await;
    assert!(done.is_ok(), "never received all of {want:?}");
}

/// A full node (id 5, outside the validator set, no followers of its own)
/// bootstraps on one validator, finds the other by peer exchange, and gets
/// both validators' broadcasts and an answer addressed to it; its requests
/// reach them. The validators never dial it nor book its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_receives_broadcasts_and_answers_from_two_validators() {
    let v0 = serving_node(0, "127.100.0.1", 2, vec![], fast_peers(), &[5]).await;
    let v1 = serving_node(
        1,
        "127.101.0.1",
        2,
        vec![(0, v0.local_addr())],
        fast_peers(),
        &[5],
    )
    .await;
    let full = node(
        5,
        "127.105.0.1",
        2,
        vec![(0, v0.local_addr())],
        fast_peers(),
    )
    .await;
    wait_until("the full node is connected to both validators", || {
        full.connected_peers() == ids(&[0, 1])
            && v0.connected_followers() == ids(&[5])
            && v1.connected_followers() == ids(&[5])
    })
    .await;
    assert_eq!(full.is_outbound(ValidatorId(0)), Some(true));
    assert_eq!(
        full.is_outbound(ValidatorId(1)),
        Some(true),
        "found through 0"
    );
    v0.broadcast(b"proposal".to_vec()).await.unwrap();
    v1.broadcast(b"timeout".to_vec()).await.unwrap();
    v1.send(ValidatorId(5), b"sync answer".to_vec())
        .await
        .unwrap();
    recv_all(
        &full,
        &[(0, b"proposal"), (1, b"timeout"), (1, b"sync answer")],
    )
    .await;
    // The validators still have each other, and hear the follower.
    recv_all(&v1, &[(0, b"proposal")]).await;
    full.send(ValidatorId(1), b"sync request".to_vec())
        .await
        .unwrap();
    recv_all(&v1, &[(5, b"sync request")]).await;
    // Several discovery and maintenance rounds later: inbound only, never booked.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for v in [&v0, &v1] {
        assert_eq!(v.is_outbound(ValidatorId(5)), Some(false));
        assert!(
            v.known_addresses()
                .iter()
                .all(|(id, _, _)| *id != ValidatorId(5)),
            "{:?}",
            v.known_addresses()
        );
        let m = v.metrics();
        assert_eq!(m.follower_peers.load(Ordering::Relaxed), 1);
        assert_eq!(
            m.inbound_peers.load(Ordering::Relaxed) + m.outbound_peers.load(Ordering::Relaxed),
            1,
            "the validator gauges count the other validator only"
        );
    }
    assert!(
        full.known_addresses()
            .iter()
            .any(|(id, a, _)| *id == ValidatorId(1) && *a == v1.local_addr())
    );
}

/// Followers have their own inbound cap and are outside the validators' cap
/// and diversity buckets: five followers in one /24 try a validator with one
/// inbound validator slot and two follower slots; three are refused, and a
/// validator in that same /24 still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_cannot_take_validator_slots() {
    let tight = PeerManagerConfig {
        discovery_enabled: false,
        max_inbound: 1,
        max_follower_inbound: 2,
        ..fast_peers()
    };
    let crowd = [10, 11, 12, 13, 14];
    let v0 = serving_node(0, "127.110.0.1", 2, vec![], tight.clone(), &crowd).await;
    let dialler = PeerManagerConfig {
        discovery_enabled: false,
        ..fast_peers()
    };
    let mut fulls = Vec::new();
    for (i, id) in crowd.into_iter().enumerate() {
        let ip = format!("127.111.0.{}", i + 1);
        fulls.push(node(id, &ip, 2, vec![(0, v0.local_addr())], dialler.clone()).await);
    }
    wait_until("two followers in, the others refused", || {
        v0.connected_followers().len() == 2
            && v0.metrics().follower_refused.load(Ordering::Relaxed) >= 3
    })
    .await;
    let v1 = node(1, "127.111.0.9", 2, vec![(0, v0.local_addr())], dialler).await;
    wait_until("the validator got in", || {
        v0.connected_peers().contains(&ValidatorId(1))
    })
    .await;
    assert_eq!(v0.is_outbound(ValidatorId(1)), Some(false));
    // The refused followers keep retrying; the caps hold.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(v0.connected_followers().len(), 2);
    assert_eq!(v0.connected_peers().len(), 3);
    let m = v0.metrics();
    assert_eq!(m.follower_peers.load(Ordering::Relaxed), 2);
    assert_eq!(m.inbound_peers.load(Ordering::Relaxed), 1);
    assert_eq!(m.diversity_rejections_of(DiversityReason::Prefix24), 0);
    v1.send(ValidatorId(0), b"still here".to_vec())
        .await
        .unwrap();
    recv_all(&v0, &[(1, b"still here")]).await;
    drop(fulls);
}

/// An epoch change rebuilds the validator directory; the followers stay
/// admitted and their connections stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_survives_update_validators() {
    let quiet = PeerManagerConfig {
        discovery_enabled: false,
        ..fast_peers()
    };
    let v1 = serving_node(1, "127.120.0.1", 3, vec![], quiet.clone(), &[7]).await;
    let full = node(7, "127.127.0.1", 3, vec![(1, v1.local_addr())], quiet).await;
    wait_until("follower connected", || {
        v1.connected_followers() == ids(&[7])
    })
    .await;
    let opened = v1.metrics().connections_inbound.load(Ordering::Relaxed);
    let mut next = validators(3);
    next.remove(&ValidatorId(2));
    next.insert(ValidatorId(3), ident(3).public().clone());
    v1.update_validators(&next);
    assert_eq!(v1.connected_followers(), ids(&[7]), "not closed as stale");
    v1.send(ValidatorId(7), b"next epoch".to_vec())
        .await
        .unwrap();
    recv_all(&full, &[(1, b"next epoch")]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(v1.connected_followers(), ids(&[7]));
    assert_eq!(
        v1.metrics().connections_inbound.load(Ordering::Relaxed),
        opened,
        "the follower's connection was replaced"
    );
    // And a follower still admitted after the change: it may reconnect.
    let cfg = ChannelConfig::new(NetworkEnvironment::Devnet);
    assert!(
        qbind_net::connect_addr(v1.local_addr(), &ident(7), ident(1).public(), &cfg)
            .await
            .is_ok()
    );
}

/// A key in neither list is refused in the handshake; a listed follower's is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlisted_key_is_refused() {
    use qbind_net::metrics::HandshakeFailure;
    let quiet = PeerManagerConfig {
        discovery_enabled: false,
        ..fast_peers()
    };
    let v1 = serving_node(1, "127.130.0.1", 3, vec![], quiet, &[7]).await;
    let cfg = ChannelConfig::new(NetworkEnvironment::Devnet);
    let unlisted = qbind_net::connect_addr(v1.local_addr(), &ident(8), ident(1).public(), &cfg)
        .await
        .err();
    assert!(unlisted.is_some(), "an unlisted key was let in");
    assert_eq!(
        v1.metrics()
            .handshake_failures_of(HandshakeFailure::UnknownPeer),
        1
    );
    let _listed = qbind_net::connect_addr(v1.local_addr(), &ident(7), ident(1).public(), &cfg)
        .await
        .unwrap();
    wait_until("the follower registered", || {
        v1.connected_followers() == ids(&[7])
    })
    .await;
    assert!(v1.connected_peers().iter().all(|p| *p != ValidatorId(8)));
}

/// A follower listed under a validator's id or with a validator's key is a
/// configuration mistake: start refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_a_follower_that_collides_with_a_validator() {
    use qbind_net::NetError;
    use qbind_net::peers::directory::DirectoryError;
    let same_id = TransportConfig {
        followers: [(ValidatorId(2), ident(9).public().clone())].into(),
        ..config(0, "127.140.0.1", 3, vec![], fast_peers())
    };
    match TcpTransport::start(same_id).await {
        Err(NetError::Directory(DirectoryError::FollowerIsValidator { id })) => {
            assert_eq!(id, ValidatorId(2));
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a follower with a validator's id was accepted"),
    }
    let same_key = TransportConfig {
        followers: [(ValidatorId(9), ident(1).public().clone())].into(),
        ..config(0, "127.140.0.1", 3, vec![], fast_peers())
    };
    match TcpTransport::start(same_key).await {
        Err(NetError::Directory(DirectoryError::FollowerHasValidatorKey {
            follower,
            validator,
        })) => assert_eq!((follower, validator), (ValidatorId(9), ValidatorId(1))),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a follower with a validator's key was accepted"),
    }
}

/// A follower's peer-exchange announcements are not taken (its own address
/// and its claims about validators), and neither is a validator's claim
/// about a follower's address: validators book, dial and relay validators only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_announced_by_or_about_a_follower_are_not_booked() {
    let victim = serving_node(0, "127.150.0.1", 3, vec![], fast_peers(), &[5]).await;
    let somewhere = |i: u8| -> SocketAddr { format!("127.151.0.{i}:9").parse().unwrap() };
    let follower = byzantine(
        5,
        (0, victim.local_addr()),
        vec![(5, somewhere(5)), (2, somewhere(2))],
    );
    let validator = byzantine(1, (0, victim.local_addr()), vec![(5, somewhere(6))]);
    wait_until("both announcers connected", || {
        victim.connected_peers() == ids(&[1, 5])
    })
    .await;
    // Tens of unprompted announcements from each.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        victim.known_addresses().is_empty(),
        "{:?}",
        victim.known_addresses()
    );
    assert_eq!(victim.is_outbound(ValidatorId(5)), Some(false));
    follower.abort();
    validator.abort();
}
