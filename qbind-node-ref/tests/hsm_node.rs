//! A validator whose consensus key lives on a PKCS#11 token: the token is
//! initialised and the ML-DSA-44 key generated on it with `qbind-keygen`,
//! and `qbind-node --signer-mode hsm-pkcs11` signs every proposal, vote and
//! timeout on the token, next to three validators with encrypted keystores.
//!
//! The token is the kryoptic soft token built by `qbind-pkcs11-kryoptic`;
//! its library path comes from `QBIND_PKCS11_TEST_LIB` (CI sets it). Without
//! it this test says so loudly and does not run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Reaper;

const VALIDATORS: usize = 4;
const TARGET: u64 = 8;
const PASS_VAR: &str = "QBIND_HSM_NODE_TEST_PASSPHRASE";
const PASS: &str = "hsm node test passphrase, not secret";
const PIN_VAR: &str = "QBIND_HSM_NODE_TEST_PIN";
const SO_PIN_VAR: &str = "QBIND_HSM_NODE_TEST_SO_PIN";

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

fn keygen(token_env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qbind-keygen"));
    c.envs(token_env.iter().copied())
        .env(PASS_VAR, PASS)
        .env(PIN_VAR, "2468-user")
        .env(SO_PIN_VAR, "1357-so");
    c
}

fn encrypted(out: &Path, validator: usize, roles: &str) -> Vec<String> {
    vec![
        "generate".into(),
        "--output".into(),
        out.display().to_string(),
        "--validator-id".into(),
        validator.to_string(),
        "--key-roles".into(),
        roles.into(),
        "--encrypt".into(),
        "--passphrase-env".into(),
        PASS_VAR.into(),
        "--kdf-memory-kib".into(),
        "19456".into(),
        "--kdf-iterations".into(),
        "2".into(),
    ]
}

#[test]
fn a_validator_signs_on_a_pkcs11_token() {
    let Some(lib) = std::env::var_os("QBIND_PKCS11_TEST_LIB").map(PathBuf::from) else {
        eprintln!(
            "\n!!!!!!!! SKIPPED: QBIND_PKCS11_TEST_LIB is not set, so the hsm-pkcs11 node test \
             did NOT run (.ci/run builds qbind-pkcs11-kryoptic and sets it).\n"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let conf = root.join("kryoptic.conf");
    std::fs::write(
        &conf,
        format!(
            "[[slots]]\nslot = 7\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
            root.join("token.sql").display()
        ),
    )
    .expect("token conf");
    let hsm = root.join("hsm.toml");
    std::fs::write(
        &hsm,
        format!(
            "library_path = \"{}\"\ntoken_label = \"qbind-node-test\"\n\
             key_label = \"validator-0-consensus\"\npin_env_var = \"{PIN_VAR}\"\n",
            lib.display()
        ),
    )
    .expect("hsm.toml");
    let conf_str = conf.display().to_string();
    let token_env = [("KRYOPTIC_CONF", conf_str.as_str())];

    run_ok(
        keygen(&token_env)
            .args(["init-token", "--so-pin-env", SO_PIN_VAR, "--hsm-config"])
            .arg(&hsm),
        "qbind-keygen init-token",
    );
    let v0 = root.join("v0");
    run_ok(
        keygen(&token_env)
            .args(["generate", "--validator-id", "0", "--output"])
            .arg(&v0)
            .arg("--hsm-config")
            .arg(&hsm),
        "qbind-keygen generate --hsm-config",
    );
    assert!(v0.join("consensus.pub").exists());
    assert!(
        !v0.join("consensus.key").exists(),
        "the private key stays on the token"
    );
    run_ok(
        keygen(&[]).args(encrypted(&v0, 0, "p2p-identity")),
        "p2p key of validator 0",
    );
    for i in 1..VALIDATORS {
        run_ok(
            keygen(&[]).args(encrypted(
                &root.join(format!("v{i}")),
                i,
                "consensus,p2p-identity",
            )),
            &format!("keys of validator {i}"),
        );
    }
    // Four ports from the pid, in this binary's range (19,600–19,999), below
    // the ephemeral ports (see multi_process.rs).
    let base = 19_600 + (std::process::id() % 100) as u16 * 4;
    let set_path = common::write_validator_set(root, VALIDATORS, base, "", |i| {
        format!("v{i}/consensus.pub")
    });

    let roots = common::roots(VALIDATORS);
    let mut nodes = Reaper(Vec::new());
    for i in 0..VALIDATORS {
        let mut cmd = common::own_keys_node(root, &set_path, i, PASS_VAR, PASS);
        if i == 0 {
            cmd.args(["--signer-mode", "hsm-pkcs11", "--hsm-config-path"])
                .arg(&hsm)
                .args(["--signer-failure-mode", "exit-on-failure"])
                .env("KRYOPTIC_CONF", &conf)
                .env(PIN_VAR, "2468-user");
        } else {
            cmd.args(["--signer-mode", "encrypted-fs"]);
        }
        let mut child = cmd.spawn().expect("start qbind-node");
        common::follow(i, &mut child, &roots);
        nodes.0.push(child);
    }
    let reached = common::wait_until(Duration::from_secs(120), || {
        common::heights(&roots).iter().all(|h| *h >= TARGET)
            || nodes
                .0
                .iter_mut()
                .any(|c| matches!(c.try_wait(), Ok(Some(_))))
    });
    let heights = common::heights(&roots);
    assert!(
        reached && heights.iter().all(|h| *h >= TARGET),
        "not every validator executed {TARGET} blocks: {heights:?}"
    );
    eprintln!("heights {heights:?} with validator 0 signing on the token");
    // A clean exit also covers the PKCS#11 library at shutdown (it used to
    // crash with SIGSEGV once the signer was dropped).
    common::interrupt_all_and_expect_clean_exit(&mut nodes.0);
    common::assert_equal_roots(&roots, TARGET);
}
