//! Signatures per second for each signer mode (docs/benchmarks.md
//! "Signers (qbind-signer)").
//!
//! - `in_memory`: loopback signer, unguarded kind (pure ML-DSA-44 signing).
//! - `encrypted_fs`: the keystore signer after unlock (same signing path).
//! - `guarded_vote_fsync`: encrypted-fs behind the double-sign guard, a new
//!   view each time (record rewritten + fsync'd before each signature).
//! - `pkcs11_token`: the kryoptic soft token through cryptoki; runs only
//!   when `QBIND_PKCS11_TEST_LIB` and `KRYOPTIC_CONF` are set (the token in
//!   that configuration is initialised, i.e. wiped, by this benchmark).
//! - `remote_kemtls_loopback`: the remote-signer client over a real KEMTLS
//!   session on 127.0.0.1 to an in-process daemon with an in-memory backend.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use qbind_core::crypto::KeyPair;
use qbind_core::key_rotation::KeyRole;
use qbind_core::signing::SignKind;
use qbind_core::traits::{SignRequest, Signer};
use qbind_core::types::{Hash32, NetworkEnvironment, ValidatorId};
use qbind_net::StaticIdentity;
use qbind_signer::keystore::{self, KdfParams, KdfPolicy, Passphrase};
use qbind_signer::remote::{
    KemtlsListener, PeerIdentity, RemoteSigner, RemoteSignerDaemon, connect_kemtls,
};
use qbind_signer::{
    DoubleSignGuard, EncryptedFsSigner, GuardedSigner, LoopbackSigner, SignerMetrics,
};

const ENV: NetworkEnvironment = NetworkEnvironment::Testnet;

fn tx() -> SignRequest {
    SignRequest {
        kind: SignKind::Tx,
        view: None,
        message: vec![7u8; 200],
        digest_preimage: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("signers");
    g.sample_size(20).measurement_time(Duration::from_secs(4));

    let key = KeyPair::from_seed(&[5; 32]);
    let mem = LoopbackSigner::new(ValidatorId(1), ENV, key.clone()).unwrap();
    g.bench_function("in_memory", |b| {
        b.iter(|| rt.block_on(mem.sign(&tx())).unwrap())
    });

    let dir = tempfile::tempdir().unwrap();
    let pass = Passphrase::new("benchmark passphrase 1".into());
    keystore::write_key(
        dir.path(),
        ValidatorId(1),
        KeyRole::Consensus,
        &[5; 32],
        &pass,
        KdfParams::INSECURE_TEST,
        &KdfPolicy::INSECURE_TEST_ONLY,
    )
    .unwrap();
    let open_fs = || {
        EncryptedFsSigner::open(
            dir.path(),
            ValidatorId(1),
            KeyRole::Consensus,
            ENV,
            &pass,
            &KdfPolicy::INSECURE_TEST_ONLY,
        )
        .unwrap()
    };
    let fs = open_fs();
    g.bench_function("encrypted_fs", |b| {
        b.iter(|| rt.block_on(fs.sign(&tx())).unwrap())
    });

    let guard =
        Arc::new(DoubleSignGuard::init(dir.path().join("record"), ValidatorId(1), ENV).unwrap());
    let guarded = GuardedSigner::new(Box::new(open_fs()), guard, SignerMetrics::shared());
    let view = AtomicU64::new(1);
    g.bench_function("guarded_vote_fsync", |b| {
        b.iter(|| {
            let v = view.fetch_add(1, Ordering::Relaxed);
            let r = qbind_signer::slot::requests::vote(v, Hash32::digest(&v.to_be_bytes()));
            rt.block_on(guarded.sign(&r)).unwrap()
        })
    });

    if let (Some(lib), Some(_)) = (
        std::env::var_os("QBIND_PKCS11_TEST_LIB"),
        std::env::var_os("KRYOPTIC_CONF"),
    ) {
        use cryptoki::types::AuthPin;
        use qbind_signer::pkcs11::{HsmConfig, Pkcs11Signer, admin};
        let lib = std::path::PathBuf::from(lib);
        admin::init_token(
            &lib,
            "bench",
            &AuthPin::from("so-pin-1"),
            &AuthPin::from("user-pin-1"),
        )
        .unwrap();
        admin::generate_ml_dsa_44(&lib, "bench", &AuthPin::from("user-pin-1"), "k").unwrap();
        let cfg = HsmConfig {
            library_path: lib,
            token_label: "bench".into(),
            key_label: "k".into(),
            pin_env_var: "UNUSED".into(),
            pin_file: None,
        };
        let hsm = Pkcs11Signer::open(
            &cfg,
            &AuthPin::from("user-pin-1"),
            ValidatorId(1),
            ENV,
            SignerMetrics::shared(),
        )
        .unwrap();
        g.bench_function("pkcs11_token", |b| {
            b.iter(|| rt.block_on(hsm.sign(&tx())).unwrap())
        });
    } else {
        eprintln!("pkcs11_token: skipped (set QBIND_PKCS11_TEST_LIB and KRYOPTIC_CONF)");
    }

    let node = StaticIdentity::generate();
    let daemon_id = StaticIdentity::generate();
    let backend: Arc<dyn Signer> = Arc::new(LoopbackSigner::new(ValidatorId(1), ENV, key).unwrap());
    let daemon = Arc::new(RemoteSignerDaemon::new(
        backend,
        PeerIdentity(node.public().fingerprint().0),
        1_000_000,
        SignerMetrics::shared(),
    ));
    let client = rt.block_on(async {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = KemtlsListener::new(tcp, &daemon_id, node.public().clone(), ENV);
        let url = format!("kemtls://{}", listener.local_addr().unwrap());
        let d = Arc::clone(&daemon);
        tokio::spawn(async move {
            if let Ok(mut ch) = listener.accept().await {
                let _ = d.serve(&mut ch).await;
            }
        });
        let ch = connect_kemtls(
            &url,
            &node,
            daemon_id.public(),
            ENV,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        RemoteSigner::connect(
            Box::new(ch),
            ValidatorId(1),
            ENV,
            None,
            Duration::from_secs(10),
            SignerMetrics::shared(),
        )
        .await
        .unwrap()
    });
    // The daemon signs consensus kinds only; the loopback backend has no
    // guard, so one vote request can be signed repeatedly.
    let vote = qbind_signer::slot::requests::vote(1, Hash32::digest(b"block"));
    g.bench_function("remote_kemtls_loopback", |b| {
        b.iter(|| rt.block_on(client.sign(&vote)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
