//! PKCS#11 signing against a real soft token with ML-DSA (kryoptic, built by
//! `qbind-pkcs11-kryoptic`). The library path comes from
//! `QBIND_PKCS11_TEST_LIB`; without it these tests say so loudly and skip.
//!
//! A PKCS#11 library is process-global (one `C_Initialize`, configuration
//! read from `KRYOPTIC_CONF` at that moment), so each scenario re-runs this
//! test binary as a child process with its own token directory and
//! environment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cryptoki::context::Pkcs11;
use cryptoki::types::AuthPin;
use qbind_core::signing::{SignKind, verify_domain};
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_signer::metrics::{HsmErrorKind, SignerFailureMode, SignerHealth, SignerMetrics};
use qbind_signer::pkcs11::{HsmConfig, Pkcs11Error, Pkcs11Signer, admin};
use qbind_signer::{DoubleSignGuard, GuardedSigner, SupervisedSigner};

const CHILD: &str = "QBIND_PKCS11_CHILD_DIR";
const PIN_VAR: &str = "QBIND_TEST_HSM_PIN";
const USER_PIN: &str = "4711-user";
const SO_PIN: &str = "4711-so";
const TOKEN: &str = "qbind-test-token";
const KEY: &str = "qbind-consensus-42";
const ENV: NetworkEnvironment = NetworkEnvironment::Testnet;

fn library() -> Option<PathBuf> {
    match std::env::var_os("QBIND_PKCS11_TEST_LIB") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!(
                "\n!!!!!!!! SKIPPED: QBIND_PKCS11_TEST_LIB is not set, so the PKCS#11 tests did NOT run.\n\
                 !!!!!!!! Build qbind-pkcs11-kryoptic and point QBIND_PKCS11_TEST_LIB at its .so (see the PKCS#11 step of .ci/run).\n"
            );
            None
        }
    }
}

/// In the parent: run `name` in a child with a fresh token. In the child:
/// return the token directory.
fn child_dir(name: &str) -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(CHILD) {
        return Some(PathBuf::from(d));
    }
    let lib = library()?;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("token.conf");
    std::fs::write(
        &conf,
        format!(
            "[[slots]]\nslot = 42\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
            dir.path().join("token.sql").display()
        ),
    )
    .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("KRYOPTIC_CONF", &conf)
        .env(CHILD, dir.path())
        .env("QBIND_PKCS11_TEST_LIB", &lib)
        .env(PIN_VAR, USER_PIN)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child {name} failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "child {name} did not run the test:\n{text}"
    );
    None
}

fn setup_token(lib: &Path) -> qbind_core::crypto::PublicKey {
    admin::init_token(lib, TOKEN, &AuthPin::from(SO_PIN), &AuthPin::from(USER_PIN)).unwrap();
    admin::generate_ml_dsa_44(lib, TOKEN, &AuthPin::from(USER_PIN), KEY).unwrap()
}

fn config(lib: &Path, key_label: &str) -> HsmConfig {
    HsmConfig::from_toml_str(&format!(
        "library_path = \"{}\"\ntoken_label = \"{TOKEN}\"\nkey_label = \"{key_label}\"\npin_env_var = \"{PIN_VAR}\"\n",
        lib.display()
    ))
    .unwrap()
}

fn vote(view: u64, msg: &[u8]) -> SignRequest {
    qbind_signer::slot::requests::vote(view, qbind_core::types::Hash32::digest(msg))
}

#[test]
fn token_keygen_sign_verify_wrong_pin_missing_key() {
    let Some(dir) = child_dir("token_keygen_sign_verify_wrong_pin_missing_key") else {
        return;
    };
    let lib = library().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pk = setup_token(&lib);

    // Wrong PIN: a login error, counted, startup not ok.
    let m = SignerMetrics::shared();
    let err = Pkcs11Signer::open(
        &config(&lib, KEY),
        &AuthPin::from("0000-wrong"),
        ValidatorId(42),
        ENV,
        Arc::clone(&m),
    )
    .err()
    .unwrap();
    assert!(matches!(err, Pkcs11Error::Login { .. }), "{err:?}");
    assert_eq!(m.hsm_errors(HsmErrorKind::Login), 1);
    assert_eq!(m.startup_ok(), Some(false));
    assert_eq!(m.health(), SignerHealth::Failed);

    // Missing key label.
    let m = SignerMetrics::shared();
    let err = Pkcs11Signer::open_from_env(
        &config(&lib, "no-such-key"),
        ValidatorId(42),
        ENV,
        Arc::clone(&m),
    )
    .err()
    .unwrap();
    assert_eq!(
        err,
        Pkcs11Error::KeyNotFound {
            label: "no-such-key".into()
        }
    );
    assert_eq!(m.hsm_errors(HsmErrorKind::KeyNotFound), 1);

    // Unknown token label.
    let mut bad_token = config(&lib, KEY);
    bad_token.token_label = "other-token".into();
    assert!(matches!(
        Pkcs11Signer::open_from_env(&bad_token, ValidatorId(42), ENV, SignerMetrics::shared()),
        Err(Pkcs11Error::TokenNotFound { .. })
    ));

    // The real thing, through the Signer trait with double-sign protection.
    let m = SignerMetrics::shared();
    let hsm = Pkcs11Signer::open_from_env(&config(&lib, KEY), ValidatorId(42), ENV, Arc::clone(&m))
        .unwrap();
    assert_eq!(m.startup_ok(), Some(true));
    assert_eq!(hsm.public_key(), &pk);
    let guard = Arc::new(DoubleSignGuard::init(dir.join("record"), ValidatorId(42), ENV).unwrap());
    let signer: Box<dyn Signer> =
        Box::new(GuardedSigner::new(Box::new(hsm), guard, Arc::clone(&m)));
    let object = qbind_core::types::Hash32::digest(b"object");
    for req in [
        qbind_signer::slot::requests::proposal(10, ValidatorId(42), object),
        qbind_signer::slot::requests::vote(11, object),
        qbind_signer::slot::requests::timeout(12, 0),
        SignRequest {
            kind: SignKind::Tx,
            view: None,
            message: b"object 3".to_vec(),
            digest_preimage: Vec::new(),
        },
    ] {
        let kind = req.kind;
        let sig = rt.block_on(signer.sign(&req)).unwrap();
        assert_eq!(sig.as_bytes().len(), 2420);
        verify_domain(&pk, ENV, kind, &req.message, &sig).unwrap();
        // Tampered message, other kind or other chain: refused by our verifier.
        assert!(verify_domain(&pk, ENV, kind, b"tampered", &sig).is_err());
        assert!(verify_domain(&pk, NetworkEnvironment::Mainnet, kind, &req.message, &sig).is_err());
    }
    assert!(matches!(
        rt.block_on(signer.sign(&vote(11, b"another block"))),
        Err(SignerError::Conflict { .. })
    ));
    // Deterministic ML-DSA: the token's signature equals the software one
    // would be only with the same key; at least repeat signing is stable.
    let a = rt.block_on(signer.sign(&vote(20, b"same"))).unwrap();
    let b = rt.block_on(signer.sign(&vote(20, b"same"))).unwrap();
    assert_eq!(
        a, b,
        "CKH_DETERMINISTIC_REQUIRED must give equal signatures"
    );
}

#[test]
fn token_removed_mid_run_fails_closed() {
    let Some(_dir) = child_dir("token_removed_mid_run_fails_closed") else {
        return;
    };
    let lib = library().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    setup_token(&lib);
    let m = SignerMetrics::shared();
    let hsm = Pkcs11Signer::open_from_env(&config(&lib, KEY), ValidatorId(42), ENV, Arc::clone(&m))
        .unwrap();
    let signer = SupervisedSigner::new(
        Box::new(hsm),
        SignerFailureMode::ExitOnFailure,
        Arc::clone(&m),
    );
    rt.block_on(signer.sign(&vote(1, b"before"))).unwrap();
    assert_eq!(signer.required_exit(), None);
    assert_eq!(m.health(), SignerHealth::Healthy);

    // Another party finalises the library: every session and login is gone,
    // as when the token is pulled.
    Pkcs11::new(&lib).unwrap().finalize().unwrap();

    let err = rt.block_on(signer.sign(&vote(2, b"after"))).unwrap_err();
    assert!(matches!(err, SignerError::Unavailable { .. }), "{err:?}");
    assert_eq!(m.hsm_errors(HsmErrorKind::Runtime), 1);
    assert_eq!(signer.required_exit(), Some(1));
    assert_eq!(m.health(), SignerHealth::Failed);
    // Fail-closed: nothing is signed any more.
    assert!(rt.block_on(signer.sign(&vote(3, b"later"))).is_err());
}
