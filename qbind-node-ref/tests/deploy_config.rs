//! The deployment examples in `deploy/` work as shipped: the validator's,
//! sentry's and RPC node's config files pass `qbind-node --validate-only` on
//! a real MainNet genesis (paths moved into a temporary directory) and
//! copies with an unknown key or another role's flag are refused; the
//! systemd units start the node with those files and stop it the way the
//! node expects.

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

/// A one-validator MainNet genesis with its keystore in `dir/etc`, as an
/// operator's /etc/qbind would hold (`etc/genesis.json`, `etc/v0`).
fn mainnet_etc(dir: &Path) -> PathBuf {
    let etc = dir.join("etc");
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
    etc
}

/// `deploy/config/NAME` with every path it names moved under `dir`
/// (genesis and keystore to those of [`mainnet_etc`]), written to
/// `dir/NAME`.
fn moved_config(name: &str, dir: &Path, etc: &Path) -> PathBuf {
    let shipped = std::fs::read_to_string(repo().join("deploy/config").join(name))
        .unwrap_or_else(|e| panic!("deploy/config/{name}: {e}"));
    let moved = shipped
        .replace(
            "/etc/qbind/genesis.json",
            &etc.join("genesis.json").display().to_string(),
        )
        .replace("/etc/qbind/keystore", &etc.join("v0").display().to_string())
        .replace(
            "/etc/qbind/validator-link.pub",
            &etc.join("v0/p2p_identity.pub").display().to_string(),
        )
        .replace("/var/lib/qbind", &dir.join("var").display().to_string());
    // Every path the settings name was moved (comments may mention /etc).
    assert!(
        moved
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .all(|l| !l.contains("/etc/qbind") && !l.contains("/var/lib")),
        "{moved}"
    );
    let config = dir.join(name);
    std::fs::write(&config, moved).expect("write config");
    config
}

/// `qbind-node --config FILE --validate-only`: exit status and output.
fn validate_only(config: &Path) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_qbind-node"))
        .arg("--config")
        .arg(config)
        .arg("--validate-only")
        .output()
        .expect("run qbind-node");
    (o.status.code(), text(&o))
}

/// `config` with `from` replaced by `to` (which must occur), as `NAME`.
fn mutated(config: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(config).expect("read config");
    assert!(text.contains(from), "{from:?} not in {}", config.display());
    let path = config.with_file_name(name);
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write config");
    path
}

/// Each example passes every MainNet check with its role; a copy with an
/// unknown key, or with a flag its role does not take, is refused (exit 2)
/// by name before anything starts.
#[test]
fn config_examples_pass_the_mainnet_checks_and_bad_copies_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etc = mainnet_etc(dir.path());
    for (name, role) in [
        ("validator.toml", "validator"),
        ("sentry.toml", "sentry"),
        ("rpc.toml", "full"),
    ] {
        let config = moved_config(name, dir.path(), &etc);
        let (code, out) = validate_only(&config);
        assert_eq!(code, Some(0), "{name}: {out}");
        assert!(!out.contains("FAIL"), "{name}: {out}");
        assert!(out.contains("profile = mainnet"), "{name}: {out}");
        assert!(out.contains(&format!("role = {role}\n")), "{name}: {out}");
        if role != "validator" {
            assert!(
                out.contains("signer_mode = none (no consensus key)"),
                "{name}: {out}"
            );
        }
        let unknown = mutated(
            &config,
            &format!("unknown-{name}"),
            "log-level",
            "colour = \"blue\"\nlog-level",
        );
        let (code, out) = validate_only(&unknown);
        assert_eq!(code, Some(2), "{name} with an unknown key: {out}");
        assert!(out.contains("unknown key \"colour\""), "{name}: {out}");
    }
    // Flags of another role, each refused by name.
    let sentry = dir.path().join("sentry.toml");
    let rpc = dir.path().join("rpc.toml");
    for (config, from, to, refusal) in [
        (
            &sentry,
            "role = \"sentry\"",
            "role = \"full\"",
            "--sentry-link-addr is for validators and sentries",
        ),
        (
            &sentry,
            "role = \"sentry\"",
            "role = \"sentry\"\nsigner-mode = \"encrypted-fs\"",
            "a sentry signs nothing: drop --signer-mode",
        ),
        (
            &sentry,
            "role = \"sentry\"",
            "role = \"sentry\"\napi-addr = \"0.0.0.0:8545\"",
            "a sentry keeps no store and serves no API: drop --api-addr",
        ),
        (
            &rpc,
            "role = \"full\"",
            "role = \"full\"\nsigner-mode = \"encrypted-fs\"",
            "--role full runs no validator",
        ),
        (
            &rpc,
            "role = \"full\"",
            "role = \"full\"\nvalidator-id = 0",
            "--role full runs no validator",
        ),
        (
            &rpc,
            "role = \"full\"",
            "role = \"full\"\nsentry-link-addr = \"10.1.0.5:29900\"",
            "--sentry-link-addr is for validators and sentries",
        ),
        (
            &rpc,
            "role = \"full\"",
            "role = \"sentry\"",
            "a sentry keeps no store and serves no API",
        ),
    ] {
        let bad = mutated(config, "bad.toml", from, to);
        let (code, out) = validate_only(&bad);
        assert_eq!(code, Some(2), "{to}: {out}");
        assert!(out.contains(refusal), "{to}: expected {refusal:?} in {out}");
    }
}

/// A unit file's `KEY=value` lines.
struct Unit(String);

impl Unit {
    fn read(name: &str) -> Unit {
        let unit = std::fs::read_to_string(repo().join("deploy/systemd").join(name))
            .unwrap_or_else(|e| panic!("deploy/systemd/{name}: {e}"));
        for section in ["[Unit]", "[Service]", "[Install]"] {
            assert!(unit.contains(section), "{name}: {section} missing");
        }
        Unit(unit)
    }

    fn value(&self, key: &str) -> String {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing"))
            .trim()
            .to_owned()
    }

    /// What every QBIND unit does: stop with SIGTERM, no restart after a
    /// configuration error, the passphrase the config names from an
    /// environment file, writes only where listed.
    fn check_supervision(&self, config: &str) {
        // The node stops cleanly on SIGTERM (tests/genesis.rs checks that).
        assert_eq!(self.value("KillSignal"), "SIGTERM");
        // Exit 2 is a configuration error: restarting would loop.
        assert_eq!(self.value("RestartPreventExitStatus"), "2");
        // The (P2P or consensus) key's passphrase comes from the
        // environment file.
        assert!(
            config.contains("signer-passphrase-env = \"QBIND_KEYSTORE_PASSPHRASE\""),
            "{config}"
        );
        assert!(self.value("EnvironmentFile").starts_with("/etc/qbind/"));
        assert_eq!(self.value("ProtectSystem"), "strict");
    }

    fn writable(&self) -> Vec<String> {
        self.value("ReadWritePaths")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

fn shipped_config(name: &str) -> String {
    std::fs::read_to_string(repo().join("deploy/config").join(name))
        .unwrap_or_else(|e| panic!("deploy/config/{name}: {e}"))
}

/// The string value of `key` in a config file.
fn setting(config: &str, key: &str) -> String {
    config
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{key} missing"))
        .to_owned()
}

#[test]
fn systemd_unit_runs_the_config_and_stops_with_sigterm() {
    let unit = Unit::read("qbind-node.service");
    let exec = unit.value("ExecStart");
    assert!(
        exec.ends_with("qbind-node --config /etc/qbind/validator.toml"),
        "{exec}"
    );
    let config = shipped_config("validator.toml");
    unit.check_supervision(&config);
    // Regression: the double-sign record (by default in the keystore
    // directory) is rewritten at every signature; under ProtectSystem=strict
    // the unit made it read-only.
    assert!(
        !config.lines().any(|l| l.starts_with("double-sign-dir")),
        "{config}"
    );
    let writable = unit.writable();
    for dir in [
        setting(&config, "signer-keystore-path"),
        "/var/lib/qbind".into(),
    ] {
        assert!(writable.contains(&dir), "{dir} not in {writable:?}");
    }
    // The next key's double-sign record too, although the directory
    // appears only when a rotation is planned.
    let next = setting(&config, "next-signer-keystore-path");
    assert!(
        writable.iter().any(|w| Path::new(&next).starts_with(w)),
        "{next} not under any of {writable:?}"
    );
}

/// The sentry and the RPC node run under one template unit whose instance
/// names the config file; neither may write its keys.
#[test]
fn systemd_template_runs_the_sentry_and_rpc_configs() {
    let unit = Unit::read("qbind-node@.service");
    let exec = unit.value("ExecStart");
    assert!(
        exec.ends_with("qbind-node --config /etc/qbind/%i.toml"),
        "{exec}"
    );
    assert_eq!(unit.writable(), ["/var/lib/qbind"]);
    for (instance, role) in [("sentry", "sentry"), ("rpc", "full")] {
        let config = shipped_config(&format!("{instance}.toml"));
        assert_eq!(setting(&config, "role"), role);
        assert!(
            !config.lines().any(|l| l.starts_with("signer-mode")),
            "{instance}: signs nothing"
        );
        unit.check_supervision(&config);
        assert!(
            unit.0.contains(&format!("qbind-node@{instance} ")),
            "the unit's header shows qbind-node@{instance}"
        );
    }
}
