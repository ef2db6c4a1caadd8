//! Remote signer client and daemon logic over an in-memory authenticated
//! channel (the KEMTLS wiring is separate; see docs/signer.md).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use qbind_core::crypto::KeyPair;
use qbind_core::signing::{SignKind, verify_domain};
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::{Hash32, NetworkEnvironment, ValidatorId, View};
use qbind_signer::metrics::{RemoteFailureReason, SignerMetrics};
use qbind_signer::remote::KindPolicy;
use qbind_signer::remote::{
    PeerIdentity, RemoteConnectError, RemoteSigner, RemoteSignerDaemon, framed_duplex_pair,
    parse_remote_signer_url,
};
use qbind_signer::slot::requests;
use qbind_signer::{DoubleSignGuard, GuardedSigner, LoopbackSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::Slow;

const ENV: NetworkEnvironment = NetworkEnvironment::Testnet;
const NODE: PeerIdentity = PeerIdentity([1; 32]);
const DAEMON: PeerIdentity = PeerIdentity([2; 32]);
const TIMEOUT: Duration = Duration::from_secs(5);

fn key() -> KeyPair {
    KeyPair::from_seed(&[42; 32])
}

fn backend(dir: &std::path::Path) -> Arc<dyn Signer> {
    let guard = Arc::new(DoubleSignGuard::init(dir, ValidatorId(42), ENV).unwrap());
    Arc::new(GuardedSigner::new(
        Box::new(LoopbackSigner::new(ValidatorId(42), ENV, key()).unwrap()),
        guard,
        SignerMetrics::shared(),
    ))
}

fn vote(view: u64, msg: &[u8]) -> SignRequest {
    requests::vote(view, Hash32::digest(msg))
}

/// One canonical request of every consensus kind, all at `view`.
fn consensus_requests(view: u64) -> Vec<SignRequest> {
    let h = Hash32::digest(b"object");
    vec![
        requests::vote(view, h),
        requests::timeout(view, 0),
        requests::proposal(view, ValidatorId(42), h),
        requests::batch(ValidatorId(42), 0, view, vec![b"tx".to_vec()]),
        requests::batch_ack(ValidatorId(7), 0, view, h),
    ]
}

fn unguarded(kind: SignKind) -> SignRequest {
    SignRequest {
        kind,
        view: None,
        message: vec![7; 100],
        digest_preimage: Vec::new(),
    }
}

/// A daemon serving `backend` to [`NODE`] at `rps` requests per second.
fn daemon_with(backend: Arc<dyn Signer>, rps: u32) -> Arc<RemoteSignerDaemon> {
    Arc::new(RemoteSignerDaemon::new(
        backend,
        NODE,
        rps,
        SignerMetrics::shared(),
    ))
}

/// The client for validator 42 over `ch`, reporting to `m`.
async fn client(
    ch: Box<dyn qbind_signer::remote::SignerChannel>,
    m: &Arc<SignerMetrics>,
) -> RemoteSigner {
    RemoteSigner::connect(ch, ValidatorId(42), ENV, None, TIMEOUT, Arc::clone(m))
        .await
        .unwrap()
}

/// Start serving one connection; returns the client end and the task.
fn start(
    daemon: &Arc<RemoteSignerDaemon>,
    client_identity: PeerIdentity,
) -> (
    Box<dyn qbind_signer::remote::SignerChannel>,
    tokio::task::JoinHandle<Result<(), qbind_signer::remote::ServeError>>,
) {
    let (client, mut server) = framed_duplex_pair(client_identity, DAEMON);
    let d = Arc::clone(daemon);
    let task = tokio::spawn(async move { d.serve(&mut server).await });
    (Box::new(client), task)
}

#[tokio::test]
async fn signs_over_the_channel_and_serves_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_with(backend(dir.path()), 100);
    let (ch, _task) = start(&daemon, NODE);
    let m = SignerMetrics::shared();
    let client = RemoteSigner::connect(
        ch,
        ValidatorId(42),
        ENV,
        Some(key().public_key().clone()),
        TIMEOUT,
        Arc::clone(&m),
    )
    .await
    .unwrap();
    assert_eq!(m.startup_ok(), Some(true));
    let signer: Box<dyn Signer> = Box::new(client);
    for req in consensus_requests(4) {
        let sig = signer.sign(&req).await.unwrap();
        verify_domain(key().public_key(), ENV, req.kind, &req.message, &sig).unwrap();
    }
    assert!(matches!(
        signer.sign(&vote(4, b"conflict")).await,
        Err(SignerError::Conflict { .. })
    ));
    assert_eq!(m.remote_failures(RemoteFailureReason::Conflict), 1);

    // The daemon's own /metrics on loopback.
    let listener = qbind_signer::remote::daemon::bind_metrics("127.0.0.1:0", false)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(daemon.metrics().signed.load(Ordering::Relaxed), 5);
    assert_eq!(daemon.metrics().conflicts.load(Ordering::Relaxed), 1);
    // The page itself is built by the binary (qbind-node-ref's
    // `metrics::components::remote_signer_page`); here a stand-in page.
    let d = Arc::clone(&daemon);
    let http = tokio::spawn(qbind_signer::remote::daemon::serve_metrics(
        listener,
        move || {
            format!(
                "qbind_remote_signer_signed_total {}\nqbind_remote_signer_conflicts_total {}\nqbind_hsm_startup_ok {}\n",
                d.metrics().signed.load(Ordering::Relaxed),
                d.metrics().conflicts.load(Ordering::Relaxed),
                u8::from(d.signer_metrics().startup_ok() == Some(true)),
            )
        },
    ));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tokio::time::timeout(TIMEOUT, s.read_to_string(&mut body))
        .await
        .unwrap()
        .unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("qbind_remote_signer_signed_total 5\n"),
        "{body}"
    );
    assert!(
        body.contains("qbind_remote_signer_conflicts_total 1\n"),
        "{body}"
    );
    assert!(body.contains("qbind_hsm_startup_ok"), "{body}");
    http.abort();
    assert!(
        qbind_signer::remote::daemon::bind_metrics("0.0.0.0:0", false)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn rate_limit_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_with(backend(dir.path()), 3);
    let (ch, _task) = start(&daemon, NODE);
    let m = SignerMetrics::shared();
    let client = client(ch, &m).await;
    let mut ok = 0;
    let mut limited = 0;
    for v in 1..=10u64 {
        match client.sign(&vote(v, b"x")).await {
            Ok(_) => ok += 1,
            Err(SignerError::Unavailable { detail }) if detail.contains("rate_limited") => {
                limited += 1
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    // Burst of 3 (plus at most one refill during the loop).
    assert!((3..=4).contains(&ok), "ok = {ok}");
    assert_eq!(ok + limited, 10);
    assert_eq!(m.remote_failures(RemoteFailureReason::RateLimited), limited);
    assert_eq!(
        daemon
            .metrics()
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed),
        limited
    );
    // Tokens come back with time; the channel stayed usable.
    tokio::time::sleep(Duration::from_millis(400)).await;
    client.sign(&vote(20, b"x")).await.unwrap();
}

#[tokio::test]
async fn unauthorised_client_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_with(backend(dir.path()), 100);
    let stranger = PeerIdentity([9; 32]);
    let (ch, task) = start(&daemon, stranger);
    let m = SignerMetrics::shared();
    let err = RemoteSigner::connect(ch, ValidatorId(42), ENV, None, TIMEOUT, Arc::clone(&m))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, RemoteConnectError::Refused(_)), "{err:?}");
    assert_eq!(m.remote_failures(RemoteFailureReason::Unauthorized), 1);
    assert_eq!(m.startup_ok(), Some(false));
    assert!(task.await.unwrap().is_err());
    assert_eq!(
        daemon
            .metrics()
            .unauthorized
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        daemon
            .metrics()
            .signed
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // Right peer, wrong validator.
    let (ch, _task) = start(&daemon, NODE);
    assert!(
        RemoteSigner::connect(
            ch,
            ValidatorId(7),
            ENV,
            None,
            TIMEOUT,
            SignerMetrics::shared()
        )
        .await
        .is_err()
    );
    // Right peer, daemon holds another key than configured.
    let (ch, _task) = start(&daemon, NODE);
    let other = KeyPair::from_seed(&[1; 32]).public_key().clone();
    assert!(matches!(
        RemoteSigner::connect(
            ch,
            ValidatorId(42),
            ENV,
            Some(other),
            TIMEOUT,
            SignerMetrics::shared()
        )
        .await,
        Err(RemoteConnectError::Mismatch(_))
    ));
}

#[tokio::test]
async fn daemon_killed_mid_stream_client_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_with(
        Arc::new(Slow(backend(dir.path()), Duration::from_millis(300))),
        100,
    );
    let (ch, task) = start(&daemon, NODE);
    let m = SignerMetrics::shared();
    let client = Arc::new(client(ch, &m).await);
    client.sign(&vote(1, b"a")).await.unwrap();
    let c = Arc::clone(&client);
    let in_flight = tokio::spawn(async move { c.sign(&vote(2, b"b")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    task.abort(); // the daemon dies while signing
    let r = tokio::time::timeout(TIMEOUT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r, Err(SignerError::Unavailable { .. })), "{r:?}");
    assert_eq!(m.remote_failures(RemoteFailureReason::Transport), 1);
    // Fail-closed: the client never signs again on this connection.
    assert!(client.sign(&vote(3, b"c")).await.is_err());
    assert_eq!(m.remote_failures(RemoteFailureReason::Transport), 2);
}

#[tokio::test]
async fn double_sign_refused_across_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let daemon = daemon_with(backend(dir.path()), 100);
        let (ch, task) = start(&daemon, NODE);
        let client = client(ch, &SignerMetrics::shared()).await;
        client.sign(&vote(5, b"block A")).await.unwrap();
        task.abort();
    }
    // A new daemon process over the same record directory.
    let daemon = daemon_with(backend(dir.path()), 100);
    let (ch, _task) = start(&daemon, NODE);
    let client = client(ch, &SignerMetrics::shared()).await;
    assert!(matches!(
        client.sign(&vote(5, b"block B")).await,
        Err(SignerError::Conflict { .. })
    ));
    client.sign(&vote(5, b"block A")).await.unwrap();
    client.sign(&vote(6, b"block C")).await.unwrap();
}

#[test]
fn url_parsing() {
    assert_eq!(
        parse_remote_signer_url("kemtls://signer.internal:9443").unwrap(),
        ("signer.internal".to_owned(), 9443)
    );
    for bad in [
        "tcp://a:1",
        "kemtls://a",
        "kemtls://:1",
        "kemtls://a:0",
        "kemtls://a:99999",
    ] {
        assert!(parse_remote_signer_url(bad).is_err(), "{bad}");
    }
}

/// Issue #17 finding 7: a compromised node host must not obtain a key
/// rotation (or any non-consensus signature) from the daemon.
#[tokio::test]
async fn the_daemon_signs_only_the_kinds_it_is_configured_for() {
    let dir = tempfile::tempdir().unwrap();
    let signer_metrics = SignerMetrics::shared();
    let daemon = daemon_with(backend(dir.path()), 100);
    let (ch, _task) = start(&daemon, NODE);
    let node = client(ch, &signer_metrics).await;
    for kind in [SignKind::KeyRotation, SignKind::Tx, SignKind::NewView] {
        assert!(
            node.sign(&unguarded(kind)).await.is_err(),
            "{kind:?} signed by a consensus-only daemon"
        );
    }
    assert_eq!(
        daemon
            .metrics()
            .kinds_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );

    // Rotation only with the explicit option; transactions stay refused.
    let dir = tempfile::tempdir().unwrap();
    let daemon = Arc::new(
        RemoteSignerDaemon::new(backend(dir.path()), NODE, 100, SignerMetrics::shared())
            .with_kind_policy(KindPolicy {
                allow_key_rotation: true,
                ..KindPolicy::CONSENSUS_ONLY
            }),
    );
    let (ch, _task) = start(&daemon, NODE);
    let rotating = client(ch, &signer_metrics).await;
    rotating
        .sign(&unguarded(SignKind::KeyRotation))
        .await
        .unwrap();
    assert!(rotating.sign(&unguarded(SignKind::Tx)).await.is_err());
}

/// Issue #22 finding 1 through the daemon: the view a node claims is checked
/// against the bytes, and the mismatch is counted.
#[tokio::test]
async fn the_daemon_refuses_a_vote_whose_claimed_view_is_not_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let backend_metrics = SignerMetrics::shared();
    let guard = Arc::new(DoubleSignGuard::init(dir.path(), ValidatorId(42), ENV).unwrap());
    let backend: Arc<dyn Signer> = Arc::new(GuardedSigner::new(
        Box::new(LoopbackSigner::new(ValidatorId(42), ENV, key()).unwrap()),
        guard,
        Arc::clone(&backend_metrics),
    ));
    let daemon = Arc::new(RemoteSignerDaemon::new(
        backend,
        NODE,
        100,
        Arc::clone(&backend_metrics),
    ));
    let (ch, _task) = start(&daemon, NODE);
    let client = client(ch, &SignerMetrics::shared()).await;
    client.sign(&vote(5, b"A")).await.unwrap();
    let mut second = vote(5, b"B");
    second.view = Some(View(6));
    assert!(matches!(
        client.sign(&second).await,
        Err(SignerError::Conflict { .. })
    ));
    assert_eq!(backend_metrics.request_mismatches(), 1);
    assert_eq!(daemon.signer_metrics().request_mismatches(), 1);
}
