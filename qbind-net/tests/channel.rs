//! Secure channels over real sockets on 127.0.0.0/8: data exchange between
//! tasks and between processes, and every rejection path (wrong key,
//! tampering, replay, bad frames, cookie-less floods), each counted in the
//! metrics while an honest connection keeps working.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use qbind_core::types::NetworkEnvironment;
use qbind_net::frame::{read_frame, write_frame};
use qbind_net::handshake::machine::{HandshakeConfig, Initiator, InitiatorRandomness};
use qbind_net::handshake::messages::{KeyExchange, MAX_HANDSHAKE_MESSAGE};
use qbind_net::metrics::HandshakeFailure;
use qbind_net::{
    Acceptor, ChannelConfig, CipherSuite, NetError, NetMetrics, PeerPublic, StaticIdentity,
    connect, connect_addr,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

fn ident(n: u8) -> StaticIdentity {
    StaticIdentity::from_seed(&[n; 32], &[n ^ 0x5a; 32])
}

fn cfg() -> ChannelConfig {
    ChannelConfig::new(NetworkEnvironment::Devnet)
}

async fn stream_from(src: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{src}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// A server that accepts forever with one Acceptor and echoes each channel.
async fn echo_server(
    bind: &str,
    server: StaticIdentity,
    allowed: Vec<PeerPublic>,
    cfg: ChannelConfig,
) -> (SocketAddr, Arc<NetMetrics>) {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(NetMetrics::default());
    let acceptor = Arc::new(Acceptor::new(&server, &cfg).with_metrics(metrics.clone()));
    let allowed = Arc::new(allowed);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let allowed = allowed.clone();
            tokio::spawn(async move {
                if let Ok((mut chan, _)) = acceptor.accept(stream, allowed.as_ref()).await {
                    while let Ok(m) = chan.recv().await {
                        if chan.send(&m).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    (addr, metrics)
}

async fn honest_round_trip(addr: SocketAddr, client: &StaticIdentity, server: &PeerPublic) {
    let mut chan = timeout(LIMIT, connect_addr(addr, client, server, &cfg()))
        .await
        .unwrap()
        .unwrap();
    chan.send(b"still working").await.unwrap();
    assert_eq!(
        timeout(LIMIT, chan.recv()).await.unwrap().unwrap(),
        b"still working"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_data_between_tasks_both_suites() {
    let (s, c) = (ident(1), ident(2));
    for suites in [
        vec![CipherSuite::Aes256Gcm],
        vec![CipherSuite::ChaCha20Poly1305],
    ] {
        let mut config = cfg();
        config.suites = suites;
        let (addr, metrics) = echo_server(
            "127.0.0.1:0",
            s.clone(),
            vec![c.public().clone()],
            config.clone(),
        )
        .await;
        let mut chan = timeout(LIMIT, connect_addr(addr, &c, s.public(), &config))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(chan.peer(), s.public());
        let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
        for msg in [&b"hello"[..], &[], &big[..]] {
            chan.send(msg).await.unwrap();
            assert_eq!(timeout(LIMIT, chan.recv()).await.unwrap().unwrap(), msg);
        }
        let failures: u64 = HandshakeFailure::ALL
            .iter()
            .map(|r| metrics.handshake_failures_of(*r))
            .sum();
        assert_eq!(failures, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_data_between_processes() {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("secure_echo");
    assert!(bin.exists(), "example binary missing at {bin:?}");
    let mut child = tokio::process::Command::new(&bin)
        .args(["127.0.0.3:0", "11", "12"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while timeout(LIMIT, out.read(&mut byte)).await.unwrap().unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let addr: SocketAddr = line.strip_prefix("LISTENING ").unwrap().parse().unwrap();
    let server = StaticIdentity::from_seed(&[11; 32], &[11 ^ 0xff; 32]);
    let client = StaticIdentity::from_seed(&[12; 32], &[12 ^ 0xff; 32]);
    let chan = timeout(LIMIT, connect_addr(addr, &client, server.public(), &cfg()))
        .await
        .unwrap()
        .unwrap();
    let (mut tx, mut rx) = chan.into_split();
    for i in 0..50u32 {
        tx.send(&i.to_be_bytes()).await.unwrap();
        assert_eq!(
            timeout(LIMIT, rx.recv()).await.unwrap().unwrap(),
            i.to_be_bytes()
        );
    }
    tx.shutdown().await.unwrap();
    let status = timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    out.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest.trim(), "ECHOED 50");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_static_keys_are_rejected_and_counted() {
    let (s, c, mallory) = (ident(1), ident(2), ident(3));
    let (addr, metrics) =
        echo_server("127.0.0.1:0", s.clone(), vec![c.public().clone()], cfg()).await;
    // Client expects another server key (as if talking to an impostor).
    let r = timeout(LIMIT, connect_addr(addr, &c, mallory.public(), &cfg()))
        .await
        .unwrap();
    assert!(r.is_err());
    // A client whose key is not allowed.
    let r = timeout(LIMIT, connect_addr(addr, &mallory, s.public(), &cfg()))
        .await
        .unwrap();
    assert!(r.is_err());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(metrics.handshake_failures_of(HandshakeFailure::Auth), 1);
    assert_eq!(
        metrics.handshake_failures_of(HandshakeFailure::UnknownPeer),
        1
    );
    honest_round_trip(addr, &c, s.public()).await;
}

/// Run the initiator by hand so tests can inspect and alter its messages.
async fn manual_initiator(
    stream: &mut TcpStream,
    c: &StaticIdentity,
    s: &PeerPublic,
    alter_m2: impl FnOnce(&mut Vec<u8>),
) -> Result<Vec<u8>, NetError> {
    let hc = HandshakeConfig {
        chain_id: cfg().chain_id,
        suites: cfg().suites,
    };
    let (init, m0) = Initiator::start(c, s, &hc, InitiatorRandomness::random())?;
    write_frame(stream, &m0, MAX_HANDSHAKE_MESSAGE).await?;
    let m1 = read_frame(stream, MAX_HANDSHAKE_MESSAGE).await?;
    let (wait, mut m2) = init.on_cookie(&m1)?;
    alter_m2(&mut m2);
    write_frame(stream, &m2, MAX_HANDSHAKE_MESSAGE).await?;
    let m3 = read_frame(stream, MAX_HANDSHAKE_MESSAGE).await?;
    let (m4, _) = wait.on_server_finished(&m3)?;
    write_frame(stream, &m4, MAX_HANDSHAKE_MESSAGE).await?;
    Ok(m2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_replayed_handshakes_are_rejected_and_counted() {
    let (s, c) = (ident(1), ident(2));
    let (addr, metrics) =
        echo_server("127.0.0.1:0", s.clone(), vec![c.public().clone()], cfg()).await;
    // Tampered: one bit of the ephemeral key in M2.
    let mut st = TcpStream::connect(addr).await.unwrap();
    let r = timeout(
        LIMIT,
        manual_initiator(&mut st, &c, s.public(), |m2| m2[200] ^= 4),
    )
    .await
    .unwrap();
    assert!(r.is_err(), "tampered M2 must not complete");
    // Honest handshake, recorded, then its M0 and M2 replayed on a new connection.
    let mut st = TcpStream::connect(addr).await.unwrap();
    let m2 = timeout(LIMIT, manual_initiator(&mut st, &c, s.public(), |_| {}))
        .await
        .unwrap()
        .unwrap();
    let recorded = KeyExchange::decode(&m2).unwrap();
    let mut replay = TcpStream::connect(addr).await.unwrap();
    let m0 = qbind_net::handshake::messages::ClientHello {
        version: recorded.version,
        chain_id: recorded.chain_id,
        client_nonce: recorded.client_nonce,
    }
    .encode();
    write_frame(&mut replay, &m0, MAX_HANDSHAKE_MESSAGE)
        .await
        .unwrap();
    let _cookie = read_frame(&mut replay, MAX_HANDSHAKE_MESSAGE)
        .await
        .unwrap();
    write_frame(&mut replay, &m2, MAX_HANDSHAKE_MESSAGE)
        .await
        .unwrap();
    // The responder closes without answering.
    let r = timeout(LIMIT, read_frame(&mut replay, MAX_HANDSHAKE_MESSAGE))
        .await
        .unwrap();
    assert!(r.is_err());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(metrics.handshake_failures_of(HandshakeFailure::Replay), 1);
    assert_eq!(
        metrics.handshake_failures_of(HandshakeFailure::Auth)
            + metrics.handshake_failures_of(HandshakeFailure::Malformed),
        1,
        "tampered handshake counted"
    );
    honest_round_trip(addr, &c, s.public()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_oversized_frames_are_typed_errors() {
    let (s, c) = (ident(1), ident(2));
    let (addr, metrics) =
        echo_server("127.0.0.1:0", s.clone(), vec![c.public().clone()], cfg()).await;
    // Oversized handshake frame header.
    let mut st = TcpStream::connect(addr).await.unwrap();
    st.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    // Truncated: announces 43 bytes, sends 10, closes.
    let mut st2 = TcpStream::connect(addr).await.unwrap();
    st2.write_all(&[0, 0, 0, 43, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    st2.shutdown().await.unwrap();
    // Garbage of the right size.
    let mut st3 = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut st3, &[0x42; 43], MAX_HANDSHAKE_MESSAGE)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        metrics.handshake_failures_of(HandshakeFailure::Malformed),
        3,
        "oversized, truncated and garbage frames"
    );
    drop((st, st3));
    honest_round_trip(addr, &c, s.public()).await;

    // After the handshake: a record larger than the receiver allows.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = listener.local_addr().unwrap();
    let mut small = cfg();
    small.max_message = 1024;
    let server = tokio::spawn({
        let (s, c) = (s.clone(), c.clone());
        async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (mut chan, _) = Acceptor::new(&s, &small)
                .accept(stream, &vec![c.public().clone()])
                .await
                .unwrap();
            let first = chan.recv().await.unwrap();
            (first, chan.recv().await)
        }
    });
    let mut chan = connect_addr(a, &c, s.public(), &cfg()).await.unwrap();
    chan.send(&[1u8; 1024]).await.unwrap();
    chan.send(&[2u8; 1025]).await.unwrap();
    let (first, second) = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(first, vec![1u8; 1024]);
    assert!(
        matches!(second, Err(NetError::FrameTooLarge { max: 1041, .. })),
        "{second:?}"
    );
    // And the sender side refuses oversized messages before sealing.
    let mut tiny = cfg();
    tiny.max_message = 8;
    let (addr2, _) = echo_server(
        "127.0.0.1:0",
        s.clone(),
        vec![c.public().clone()],
        tiny.clone(),
    )
    .await;
    let mut chan = connect_addr(addr2, &c, s.public(), &tiny).await.unwrap();
    assert!(matches!(
        chan.send(&[0u8; 9]).await,
        Err(NetError::FrameTooLarge { len: 9, max: 8 })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookieless_flood_is_refused_cheaply_and_honest_peers_still_connect() {
    let (s, c) = (ident(1), ident(2));
    let mut config = cfg();
    config.handshake_burst = 40;
    config.handshakes_per_ip_per_sec = 1.0;
    let (addr, metrics) =
        echo_server("127.0.0.1:0", s.clone(), vec![c.public().clone()], config).await;
    // A real-looking M2 with a forged cookie, without ever asking for one.
    let hc = HandshakeConfig {
        chain_id: cfg().chain_id,
        suites: cfg().suites,
    };
    let (init, m0) = Initiator::start(&c, s.public(), &hc, InitiatorRandomness::random()).unwrap();
    let fake_m1 = qbind_net::handshake::messages::CookieReply {
        version: 1,
        cookie: [7u8; 32],
    }
    .encode();
    let (_, forged_m2) = init.on_cookie(&fake_m1).unwrap();
    let flood = 60;
    let mut tasks = Vec::new();
    for _ in 0..flood {
        let (m0, m2) = (m0.clone(), forged_m2.clone());
        tasks.push(tokio::spawn(async move {
            let mut st = stream_from("127.0.0.66", addr).await;
            if write_frame(&mut st, &m0, MAX_HANDSHAKE_MESSAGE)
                .await
                .is_err()
            {
                return;
            }
            if read_frame(&mut st, MAX_HANDSHAKE_MESSAGE).await.is_err() {
                return;
            }
            let _ = write_frame(&mut st, &m2, MAX_HANDSHAKE_MESSAGE).await;
            let _ = read_frame(&mut st, MAX_HANDSHAKE_MESSAGE).await;
        }));
    }
    for t in tasks {
        timeout(LIMIT, t).await.unwrap().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cookie = metrics.handshake_failures_of(HandshakeFailure::Cookie);
    let limited = metrics.handshake_failures_of(HandshakeFailure::RateLimited);
    assert_eq!(
        cookie + limited,
        flood,
        "cookie {cookie}, rate-limited {limited}"
    );
    assert!(
        cookie >= 35 && limited >= 15,
        "cookie {cookie}, rate-limited {limited}"
    );
    // The honest client at another address is unaffected.
    let mut chan = connect(stream_from("127.0.0.7", addr).await, &c, s.public(), &cfg())
        .await
        .unwrap();
    chan.send(b"ok").await.unwrap();
    assert_eq!(timeout(LIMIT, chan.recv()).await.unwrap().unwrap(), b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_is_enforced() {
    let (s, c) = (ident(1), ident(2));
    let mut config = cfg();
    config.handshake_timeout = Duration::from_millis(200);
    let (addr, metrics) =
        echo_server("127.0.0.1:0", s.clone(), vec![c.public().clone()], config).await;
    let _silent = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(metrics.handshake_failures_of(HandshakeFailure::Timeout), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekeying_keeps_the_stream_intact_in_both_directions() {
    let (s, c) = (ident(1), ident(2));
    let mut config = cfg();
    config.rekey_after = 4;
    let (addr, _) = echo_server(
        "127.0.0.1:0",
        s.clone(),
        vec![c.public().clone()],
        config.clone(),
    )
    .await;
    let mut chan = connect_addr(addr, &c, s.public(), &config).await.unwrap();
    for i in 0..30u32 {
        chan.send(&i.to_le_bytes()).await.unwrap();
        assert_eq!(
            timeout(LIMIT, chan.recv()).await.unwrap().unwrap(),
            i.to_le_bytes()
        );
    }
    let (sent, received) = chan.rekeys();
    assert!(sent >= 9 && received >= 9, "rekeys {sent}/{received}");
}

/// Issue #17 finding 8: a client that can receive cookies at many addresses
/// fills the replay set before authenticating. Each flood connection asks
/// for a cookie for a fresh nonce at its own source address (127.0.100.x),
/// then sends an M2 that passes the cookie and the replay set and fails
/// authentication. The set holds 16 nonces here; honest handshakes keep
/// succeeding while ten times that many arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_set_flood_from_many_addresses_does_not_lock_out_honest_peers() {
    use qbind_net::handshake::messages::{ClientHello, CookieReply};
    let (s, c, stranger) = (ident(1), ident(2), ident(3));
    let mut config = cfg();
    config.replay_capacity = 16;
    let (addr, metrics) =
        echo_server("127.0.0.1:0", s.clone(), vec![c.public().clone()], config).await;
    let hc = HandshakeConfig {
        chain_id: cfg().chain_id,
        suites: cfg().suites,
    };
    let (init, _) =
        Initiator::start(&stranger, s.public(), &hc, InitiatorRandomness::random()).unwrap();
    let dummy_m1 = CookieReply {
        version: 1,
        cookie: [0u8; 32],
    }
    .encode();
    let template = KeyExchange::decode(&init.on_cookie(&dummy_m1).unwrap().1).unwrap();
    let flood_sources = 160u8;
    let flood = tokio::spawn(async move {
        for i in 1..=flood_sources {
            let mut st = stream_from(&format!("127.0.100.{i}"), addr).await;
            let nonce = [i; 32];
            let m0 = ClientHello {
                version: template.version,
                chain_id: template.chain_id,
                client_nonce: nonce,
            }
            .encode();
            write_frame(&mut st, &m0, MAX_HANDSHAKE_MESSAGE)
                .await
                .unwrap();
            let m1 = read_frame(&mut st, MAX_HANDSHAKE_MESSAGE).await.unwrap();
            let m2 = KeyExchange {
                client_nonce: nonce,
                cookie: CookieReply::decode(&m1).unwrap().cookie,
                ..template.clone()
            }
            .encode();
            write_frame(&mut st, &m2, MAX_HANDSHAKE_MESSAGE)
                .await
                .unwrap();
            // The responder closes after failing to authenticate us.
            assert!(
                read_frame(&mut st, MAX_HANDSHAKE_MESSAGE).await.is_err(),
                "flood handshake {i} must not complete"
            );
        }
    });
    let start = std::time::Instant::now();
    let flooded = || {
        metrics.handshake_failures_of(HandshakeFailure::Auth)
            + metrics.handshake_failures_of(HandshakeFailure::RateLimited)
    };
    while flooded() < 32 {
        assert!(start.elapsed() < LIMIT, "flood too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The set has been full for a while: honest peers still get in.
    for _ in 0..3 {
        honest_round_trip(addr, &c, s.public()).await;
    }
    timeout(LIMIT, flood).await.unwrap().unwrap();
    honest_round_trip(addr, &c, s.public()).await;
    assert_eq!(
        metrics.handshake_failures_of(HandshakeFailure::Auth),
        u64::from(flood_sources)
    );
    assert_eq!(
        metrics.handshake_failures_of(HandshakeFailure::RateLimited),
        0
    );
}
