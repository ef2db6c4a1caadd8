//! The deployment examples in `deploy/` work as shipped: the validator's
//! config file passes `qbind-node --validate-only` on a real MainNet
//! genesis (paths moved into a temporary directory), and the systemd unit
//! starts the node with that file and stops it the way the node expects.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn validator_config_example_passes_the_mainnet_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etc = dir.path().join("etc");
    // A one-validator MainNet genesis with its keystore, as an operator's
    // /etc/qbind would hold.
    let o = Command::new(env!("CARGO_BIN_EXE_qbind-genesis"))
        .args(["devnet", "-P", "mainnet", "--ip", "127.0.0.1"])
        .args([
            "--validators",
            "1",
            "--accounts",
            "2",
            "--base-port",
            "9000",
        ])
        .args(["--passphrase-env", "QBIND_TEST_DEPLOY_PASS"])
        .args(["--kdf-memory-kib", "19456", "--kdf-iterations", "2"])
        .arg("--out")
        .arg(&etc)
        .env("QBIND_TEST_DEPLOY_PASS", "deploy-test-passphrase")
        .output()
        .expect("run qbind-genesis");
    assert!(o.status.success(), "{}", text(&o));

    let shipped = std::fs::read_to_string(repo().join("deploy/config/validator.toml"))
        .expect("deploy/config/validator.toml");
    let moved = shipped
        .replace(
            "/etc/qbind/genesis.json",
            &etc.join("genesis.json").display().to_string(),
        )
        .replace("/etc/qbind/keystore", &etc.join("v0").display().to_string())
        .replace(
            "/var/lib/qbind",
            &dir.path().join("var").display().to_string(),
        );
    // Every path the settings name was moved (comments may mention /etc).
    assert!(
        moved
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .all(|l| !l.contains("/etc/qbind") && !l.contains("/var/lib")),
        "{moved}"
    );
    let config = dir.path().join("validator.toml");
    std::fs::write(&config, moved).expect("write config");
    let o = Command::new(env!("CARGO_BIN_EXE_qbind-node"))
        .arg("--config")
        .arg(&config)
        .arg("--validate-only")
        .output()
        .expect("run qbind-node");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.contains("profile = mainnet"), "{out}");
}

#[test]
fn systemd_unit_runs_the_config_and_stops_with_sigterm() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/qbind-node.service"))
        .expect("deploy/systemd/qbind-node.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing"))
            .trim()
            .to_owned()
    };
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(unit.contains(section), "{section} missing");
    }
    let exec = value("ExecStart");
    assert!(
        exec.ends_with("qbind-node --config /etc/qbind/validator.toml"),
        "{exec}"
    );
    // The node stops cleanly on SIGTERM (tests/genesis.rs checks that).
    assert_eq!(value("KillSignal"), "SIGTERM");
    // Exit 2 is a configuration error: restarting would loop.
    assert_eq!(value("RestartPreventExitStatus"), "2");
    // The passphrase comes from the environment file the config names.
    let config =
        std::fs::read_to_string(repo().join("deploy/config/validator.toml")).expect("config");
    assert!(config.contains("signer-passphrase-env = \"QBIND_KEYSTORE_PASSPHRASE\""));
    assert!(value("EnvironmentFile").starts_with("/etc/qbind/"));
}
