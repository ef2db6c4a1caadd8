//! The remote signer over real KEMTLS sessions (`qbind-net`) on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use qbind_core::crypto::KeyPair;
use qbind_core::signing::{SignKind, verify_domain};
use qbind_core::traits::{Signer, SignerError};
use qbind_core::types::{Hash32, NetworkEnvironment, ValidatorId};
use qbind_net::StaticIdentity;
use qbind_signer::metrics::{RemoteFailureReason, SignerMetrics};
use qbind_signer::remote::{
    KemtlsListener, PeerIdentity, RemoteSigner, RemoteSignerDaemon, connect_kemtls,
};
use qbind_signer::slot::requests::{proposal, vote};
use qbind_signer::{DoubleSignGuard, GuardedSigner, LoopbackSigner};

mod common;

use common::Slow;

const ENV: NetworkEnvironment = NetworkEnvironment::Testnet;
const TIMEOUT: Duration = Duration::from_secs(10);

fn key() -> KeyPair {
    KeyPair::from_seed(&[42; 32])
}

struct Daemon {
    url: String,
    identity: StaticIdentity,
    task: tokio::task::JoinHandle<()>,
}

async fn start_daemon(dir: &std::path::Path, node: &StaticIdentity, delay: Duration) -> Daemon {
    let guard = Arc::new(DoubleSignGuard::init(dir, ValidatorId(42), ENV).unwrap());
    let backend: Arc<dyn Signer> = Arc::new(Slow(
        Arc::new(GuardedSigner::new(
            Box::new(LoopbackSigner::new(ValidatorId(42), ENV, key()).unwrap()),
            guard,
            SignerMetrics::shared(),
        )),
        delay,
    ));
    let allowed = PeerIdentity(node.public().fingerprint().0);
    let daemon = Arc::new(RemoteSignerDaemon::new(
        backend,
        allowed,
        100,
        SignerMetrics::shared(),
    ));
    let identity = StaticIdentity::generate();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = Arc::new(KemtlsListener::new(
        tcp,
        &identity,
        node.public().clone(),
        ENV,
    ));
    let url = format!("kemtls://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        // Bounded: a test daemon serves at most 8 connections.
        for _ in 0..8 {
            let Ok(stream) = listener.accept_tcp().await else {
                break;
            };
            let (l, d) = (Arc::clone(&listener), Arc::clone(&daemon));
            conns.spawn(async move {
                if let Ok(mut ch) = l.handshake(stream).await {
                    let _ = d.serve(&mut ch).await;
                }
            });
        }
        while conns.join_next().await.is_some() {}
    });
    Daemon {
        url,
        identity,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kemtls_sign_unauthorised_and_daemon_death() {
    let dir = tempfile::tempdir().unwrap();
    let node = StaticIdentity::generate();
    let d = start_daemon(dir.path(), &node, Duration::from_millis(200)).await;

    // Signing over KEMTLS.
    let ch = connect_kemtls(&d.url, &node, d.identity.public(), ENV, TIMEOUT)
        .await
        .unwrap();
    let m = SignerMetrics::shared();
    let client = Arc::new(
        RemoteSigner::connect(
            Box::new(ch),
            ValidatorId(42),
            ENV,
            Some(key().public_key().clone()),
            TIMEOUT,
            Arc::clone(&m),
        )
        .await
        .unwrap(),
    );
    let req = proposal(3, ValidatorId(42), Hash32::digest(b"payload"));
    let sig = client.sign(&req).await.unwrap();
    verify_domain(
        key().public_key(),
        ENV,
        SignKind::Proposal,
        &req.message,
        &sig,
    )
    .unwrap();

    // An unauthorised node key fails the handshake: no channel at all.
    let stranger = StaticIdentity::generate();
    assert!(
        connect_kemtls(&d.url, &stranger, d.identity.public(), ENV, TIMEOUT)
            .await
            .is_err()
    );
    // A client expecting another daemon key refuses this daemon.
    let impostor = StaticIdentity::generate();
    assert!(
        connect_kemtls(&d.url, &node, impostor.public(), ENV, TIMEOUT)
            .await
            .is_err()
    );

    // The daemon dies while a request is in flight: the client fails closed.
    let c = Arc::clone(&client);
    let in_flight = tokio::spawn(async move { c.sign(&vote(4, Hash32::digest(b"vote"))).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    d.task.abort();
    let r = tokio::time::timeout(TIMEOUT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r, Err(SignerError::Unavailable { .. })), "{r:?}");
    assert_eq!(m.remote_failures(RemoteFailureReason::Transport), 1);
    assert!(client.sign(&req).await.is_err());

    // A restarted daemon over the same record still refuses the conflict.
    let d2 = start_daemon(dir.path(), &node, Duration::ZERO).await;
    let ch = connect_kemtls(&d2.url, &node, d2.identity.public(), ENV, TIMEOUT)
        .await
        .unwrap();
    let client = RemoteSigner::connect(
        Box::new(ch),
        ValidatorId(42),
        ENV,
        None,
        TIMEOUT,
        SignerMetrics::shared(),
    )
    .await
    .unwrap();
    assert!(matches!(
        client
            .sign(&proposal(
                3,
                ValidatorId(42),
                Hash32::digest(b"another payload")
            ))
            .await,
        Err(SignerError::Conflict { .. })
    ));
    d2.task.abort();
}
