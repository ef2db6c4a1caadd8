//! Signer modes through the `Signer` trait: loopback, encrypted-fs, the
//! double-sign guard across restarts, failure semantics, and the property
//! that no part of a secret seed reaches the keystore file or the logs.

use std::sync::{Arc, Mutex};

use qbind_core::crypto::KeyPair;
use qbind_core::key_rotation::KeyRole;
use qbind_core::signing::{SignKind, verify_domain};
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::{Hash32, NetworkEnvironment, ValidatorId, View};
use qbind_signer::keystore::{self, KdfParams, KdfPolicy, Passphrase};
use qbind_signer::slot::requests;
use qbind_signer::{
    DoubleSignGuard, EncryptedFsSigner, GuardedSigner, LoopbackSigner, SignerFailureMode,
    SignerHealth, SignerMetrics, SignerMode, SupervisedSigner,
};

const ENV: NetworkEnvironment = NetworkEnvironment::Testnet;
const PASS: &str = "correct horse battery staple";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// A canonical request of `kind` at `view`, `msg` telling objects apart.
fn req(kind: SignKind, view: u64, msg: &[u8]) -> SignRequest {
    let h = Hash32::digest(msg);
    match kind {
        SignKind::Proposal => requests::proposal(view, ValidatorId(42), h),
        _ => requests::vote(view, h),
    }
}

#[test]
fn loopback_is_refused_on_mainnet() {
    let key = KeyPair::from_seed(&[1; 32]);
    assert!(LoopbackSigner::new(ValidatorId(0), NetworkEnvironment::Mainnet, key.clone()).is_err());
    assert!(LoopbackSigner::new(ValidatorId(0), NetworkEnvironment::Devnet, key).is_ok());
    assert!(
        SignerMode::LoopbackTesting
            .validate_for(NetworkEnvironment::Mainnet)
            .is_err()
    );
    for mode in [
        SignerMode::EncryptedFs,
        SignerMode::HsmPkcs11,
        SignerMode::RemoteSigner,
    ] {
        mode.validate_for(NetworkEnvironment::Mainnet).unwrap();
    }
    assert_eq!(
        SignerMode::from_cli_name("hsm-pkcs11"),
        Some(SignerMode::HsmPkcs11)
    );
}

#[test]
fn encrypted_fs_signs_what_the_core_verifies_and_guard_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ks = dir.path().join("keystore");
    let seed = [9u8; 32];
    keystore::write_key(
        &ks,
        ValidatorId(42),
        KeyRole::Consensus,
        &seed,
        &Passphrase::new(PASS.into()),
        KdfParams::INSECURE_TEST,
        &KdfPolicy::INSECURE_TEST_ONLY,
    )
    .unwrap();
    let open = || -> Box<dyn Signer> {
        let inner = EncryptedFsSigner::open(
            &ks,
            ValidatorId(42),
            KeyRole::Consensus,
            ENV,
            &Passphrase::new(PASS.into()),
            &KdfPolicy::INSECURE_TEST_ONLY,
        )
        .unwrap();
        let guard = Arc::new(
            DoubleSignGuard::init(dir.path().join("record"), ValidatorId(42), ENV).unwrap(),
        );
        Box::new(GuardedSigner::new(
            Box::new(inner),
            guard,
            SignerMetrics::shared(),
        ))
    };
    let rt = rt();
    let signer = open();
    let reference = KeyPair::from_seed(&seed);
    assert_eq!(signer.public_key(), reference.public_key());
    let r = req(SignKind::Proposal, 5, b"block 5");
    let sig = rt.block_on(signer.sign(&r)).unwrap();
    verify_domain(
        reference.public_key(),
        ENV,
        SignKind::Proposal,
        &r.message,
        &sig,
    )
    .unwrap();
    // Same preimage as sign_domain (deterministic ML-DSA).
    assert_eq!(
        sig,
        qbind_core::signing::sign_domain(&reference, ENV, SignKind::Proposal, &r.message)
    );
    drop(signer);
    // "Restart": a fresh signer over the same record directory.
    let signer = open();
    assert_eq!(
        rt.block_on(signer.sign(&req(SignKind::Proposal, 5, b"other block"))),
        Err(SignerError::Conflict {
            kind: SignKind::Proposal,
            view: Some(View(5))
        })
    );
    assert!(
        rt.block_on(signer.sign(&req(SignKind::Proposal, 4, b"older")))
            .is_err()
    );
    rt.block_on(signer.sign(&req(SignKind::Proposal, 5, b"block 5")))
        .unwrap();
    rt.block_on(signer.sign(&req(SignKind::Proposal, 6, b"block 6")))
        .unwrap();
}

#[test]
fn two_nodes_sharing_one_record_cannot_both_sign() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::from_seed(&[2; 32]);
    let make = || {
        let guard = Arc::new(DoubleSignGuard::init(dir.path(), ValidatorId(1), ENV).unwrap());
        GuardedSigner::new(
            Box::new(LoopbackSigner::new(ValidatorId(1), ENV, key.clone()).unwrap()),
            guard,
            SignerMetrics::shared(),
        )
    };
    let (a, b) = (make(), make());
    // Race 16 conflicting votes for one view from two "nodes" on threads.
    let a = Arc::new(a);
    let b = Arc::new(b);
    let ok = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for i in 0..16u8 {
            let signer = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            let ok = Arc::clone(&ok);
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                if rt
                    .block_on(signer.sign(&req(SignKind::Vote, 7, &[i])))
                    .is_ok()
                {
                    ok.lock().unwrap().push(i);
                }
            });
        }
    });
    assert_eq!(
        ok.lock().unwrap().len(),
        1,
        "exactly one conflicting vote may be signed"
    );
}

/// A failing inner signer, to drive the failure policy.
struct Broken;

#[async_trait::async_trait]
impl Signer for Broken {
    fn validator_id(&self) -> ValidatorId {
        ValidatorId(0)
    }
    fn public_key(&self) -> &qbind_core::crypto::PublicKey {
        static KEY: std::sync::OnceLock<KeyPair> = std::sync::OnceLock::new();
        KEY.get_or_init(|| KeyPair::from_seed(&[0; 32]))
            .public_key()
    }
    async fn sign(&self, _: &SignRequest) -> Result<qbind_core::crypto::Signature, SignerError> {
        Err(SignerError::Unavailable {
            detail: "device error".into(),
        })
    }
}

#[test]
fn exit_on_failure_vs_log_and_continue() {
    let rt = rt();
    let m = SignerMetrics::shared();
    m.set_startup_ok(true);
    let s = SupervisedSigner::new(
        Box::new(Broken),
        SignerFailureMode::ExitOnFailure,
        Arc::clone(&m),
    );
    let exit = s.exit_signal();
    assert_eq!(*exit.borrow(), None);
    assert!(rt.block_on(s.sign(&req(SignKind::Vote, 1, b"x"))).is_err());
    assert_eq!(s.required_exit(), Some(1));
    assert_eq!(*exit.borrow(), Some(1), "the node is told to exit");
    assert_eq!(m.health(), SignerHealth::Failed);

    let m = SignerMetrics::shared();
    m.set_startup_ok(true);
    let s = SupervisedSigner::new(
        Box::new(Broken),
        SignerFailureMode::LogAndContinue,
        Arc::clone(&m),
    );
    let exit = s.exit_signal();
    assert!(rt.block_on(s.sign(&req(SignKind::Vote, 1, b"x"))).is_err());
    assert_eq!(s.required_exit(), None);
    assert_eq!(*exit.borrow(), None);
    assert_eq!(m.health(), SignerHealth::Degraded);

    // A double-sign refusal is never fatal, even under ExitOnFailure.
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::from_seed(&[3; 32]);
    let guard = Arc::new(DoubleSignGuard::init(dir.path(), ValidatorId(0), ENV).unwrap());
    let m = SignerMetrics::shared();
    m.set_startup_ok(true);
    let g = GuardedSigner::new(
        Box::new(LoopbackSigner::new(ValidatorId(0), ENV, key).unwrap()),
        guard,
        Arc::clone(&m),
    );
    let s = SupervisedSigner::new(
        Box::new(g),
        SignerFailureMode::ExitOnFailure,
        Arc::clone(&m),
    );
    rt.block_on(s.sign(&req(SignKind::Vote, 2, b"a"))).unwrap();
    assert!(matches!(
        rt.block_on(s.sign(&req(SignKind::Vote, 2, b"b"))),
        Err(SignerError::Conflict { .. })
    ));
    assert_eq!(s.required_exit(), None);
    assert_eq!(m.health(), SignerHealth::Healthy);
    assert_eq!(m.double_sign_refusals(), 1);
}
