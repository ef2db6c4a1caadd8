//! The genesis workflow as an operator runs it: `qbind-genesis devnet -P
//! testnet` makes a local TestNet Beta chain, `qbind-node init` binds the
//! stores to it, four validator processes run it (DAG payloads, bootstrap
//! peers and discovery) with their own keystores and the generated accounts
//! and stop on SIGTERM; a store of
//! another genesis and a malformed genesis file are refused with named
//! errors; `--validate-only` and `--config` report and refuse bad MainNet
//! configurations with exit status 2.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const PASS_VAR: &str = "QBIND_GENESIS_TEST_PASSPHRASE";
const PASS: &str = "correct horse battery staple, genesis test";

/// Run a binary to completion (killed after 120 s); its output.
fn run(mut cmd: Command) -> Output {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = common::wait_exit(&mut child, Duration::from_secs(120));
    let status = status.unwrap_or_else(|| panic!("did not finish in time: {cmd:?}"));
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `qbind-genesis devnet` into `out` with quick keystores.
fn generate(out: &Path, validators: usize, base_port: u16, profile: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-genesis"));
    // Every validator on 127.0.0.1 (tests use no other address).
    cmd.args(["devnet", "-P", profile, "--ip", "127.0.0.1", "--validators"])
        .arg(validators.to_string())
        .args(["--accounts", "6", "--base-port"])
        .arg(base_port.to_string())
        .args(["--passphrase-env", PASS_VAR])
        .args(["--kdf-memory-kib", "19456", "--kdf-iterations", "2"])
        .arg("--out")
        .arg(out)
        .env(PASS_VAR, PASS);
    let o = run(cmd);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("genesis hash: "))
        .expect("hash printed")
        .to_owned()
}

/// `qbind-node` for validator `i` of the genesis in `net`.
fn node(net: &Path, data: &Path, i: usize) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-node"));
    cmd.arg("--genesis")
        .arg(net.join("genesis.json"))
        .arg("-d")
        .arg(data)
        .args(["--validator-index", &i.to_string()])
        .args(["--signer-mode", "encrypted-fs"])
        .arg("--signer-keystore-path")
        .arg(net.join(format!("v{i}")))
        .args(["--signer-passphrase-env", PASS_VAR])
        .args(["--base-timeout-ms", "500", "--tx-interval-ms", "10"])
        .env(PASS_VAR, PASS);
    cmd
}

const VALIDATORS: usize = 4;
const TARGET: u64 = 8;

#[test]
fn generated_genesis_init_run_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Eight ports from the pid, in this binary's range (3,000–4,999), below
    // the ephemeral ports (see multi_process.rs).
    let base_port = 3_000 + (std::process::id() % 250) as u16 * 8;
    let net = dir.path().join("net");
    // TestNet Beta: DAG payloads, monetary Shadow (diversity Warn below:
    // all four share 127.0.0.1, and Enforce admits two peers per /24).
    let hash = generate(&net, VALIDATORS, base_port, "testnet");
    // Every funded account's key is also a `qbind` CLI key file.
    let seeds =
        qbind_node_ref::genesis::load_account_keys(&net.join("accounts.json")).expect("accounts");
    assert_eq!(seeds.len(), 6);
    for (i, key) in seeds.iter().enumerate() {
        let path = net.join("accounts").join(format!("account-{i}.key"));
        let cli = qbind_client::keyfile::read_key_file(&path).expect("a CLI key file");
        assert_eq!(
            cli.public_key().as_bytes(),
            key.public_key().as_bytes(),
            "{}",
            path.display()
        );
    }
    let data = dir.path().join("data");

    // init records the genesis hash in every validator's store.
    let mut init = Command::new(env!("CARGO_BIN_EXE_qbind-node"));
    init.args(["init", "--genesis"])
        .arg(net.join("genesis.json"))
        .arg("-d")
        .arg(&data);
    let o = run(init);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(text(&o).matches(&hash).count(), VALIDATORS, "{}", text(&o));

    // Four validators run on it (the profile is the genesis's) with their
    // own keys; the load generator
    // spends from the generated accounts; SIGTERM stops them cleanly.
    let roots = common::roots(VALIDATORS);
    let applied: Vec<_> = (0..VALIDATORS)
        .map(|_| std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)))
        .collect();
    let mut nodes = common::Reaper(Vec::new());
    for (i, applied) in applied.iter().enumerate() {
        // Validators 1..3 dial only validator 0, which dials only 1: the
        // others are found by peer discovery.
        let bootstrap = format!("127.0.0.1:{}", base_port + u16::from(i == 0));
        let mut cmd = node(&net, &data, i);
        cmd.arg("--load-accounts")
            .arg(net.join("accounts.json"))
            .args(["--diversity-mode", "warn", "--bootstrap-peers", &bootstrap])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if i == 2 {
            // As behind a port forward: nothing listens at its address in
            // the genesis; it listens elsewhere and announces that.
            let moved = format!("127.0.0.1:{}", base_port + 7);
            cmd.args(["--p2p-listen-addr", &moved, "--p2p-advertised-addr", &moved]);
        }
        let mut child = cmd.spawn().expect("start qbind-node");
        common::follow_counting(i, &mut child, &roots, applied);
        nodes.0.push(child);
    }
    // Every validator past TARGET, and validator 0 has applied a transfer
    // (the first ones can come after TARGET: the load generator starts with
    // the node, and a DAG batch takes a few blocks to be certified and
    // ordered; a loaded machine reached TARGET first in 1 of 3 runs).
    let reached = common::wait_until(Duration::from_secs(120), || {
        common::heights(&roots).iter().all(|h| *h >= TARGET)
            && applied[0].load(std::sync::atomic::Ordering::Relaxed) > 0
    });
    assert!(
        reached,
        "heights {:?}, transfers applied by validator 0: {}",
        common::heights(&roots),
        applied[0].load(std::sync::atomic::Ordering::Relaxed)
    );
    for child in &nodes.0 {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    for (i, child) in nodes.0.iter_mut().enumerate() {
        let status = common::wait_exit(child, Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "validator {i}: {status:?}"
        );
    }
    common::assert_equal_roots(&roots, TARGET);
    {
        use qbind_core::execution::{AccountReader, BackendAccounts};
        let keys = qbind_node_ref::genesis::load_account_keys(&net.join("accounts.json"))
            .expect("accounts");
        let store = qbind_store::FjallBackend::open(&data.join("validator-0")).expect("open store");
        let sent: u64 = keys
            .iter()
            .map(|k| {
                let id = qbind_core::types::AccountId::from_public_key(k.public_key());
                BackendAccounts::new(&store)
                    .account(&id)
                    .map_or(0, |a| a.nonce)
            })
            .sum();
        assert!(sent > 0, "no transfer from the generated accounts executed");
    }

    // The same store under another genesis is refused.
    let other = dir.path().join("other");
    let other_hash = generate(&other, 1, base_port + 6, "devnet");
    assert_ne!(other_hash, hash);
    let mut wrong = node(&other, &data, 0);
    wrong.args(["--blocks", "1"]);
    let o = run(wrong);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("belongs to genesis {hash}")),
        "{}",
        text(&o)
    );

    // A bootstrap peer that is not a validator is refused.
    let mut stray = node(&net, &dir.path().join("stray"), 0);
    stray.args(["--bootstrap-peers", "127.0.0.1:1", "--blocks", "1"]);
    let o = run(stray);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("is not the address of another validator"),
        "{}",
        text(&o)
    );

    // An advertised address needs one validator per process.
    let mut shared = Command::new(env!("CARGO_BIN_EXE_qbind-node"));
    shared
        .arg("-d")
        .arg(dir.path().join("shared"))
        .args(["--local-validators", "4", "--blocks", "1"])
        .args(["--p2p", "kemtls", "--p2p-advertised-addr", "127.0.0.1:9"]);
    let o = run(shared);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--p2p-advertised-addr needs one validator per process"),
        "{}",
        text(&o)
    );

    // On a public network (a routable address in the genesis), an
    // advertised address peers would refuse is refused at start. One
    // validator, listening on loopback: nothing is dialled.
    let public = dir.path().join("public");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-genesis"));
    cmd.args([
        "devnet",
        "--ip",
        "192.0.2.1",
        "--validators",
        "1",
        "--accounts",
        "1",
    ])
    .args(["--passphrase-env", PASS_VAR])
    .args(["--kdf-memory-kib", "19456", "--kdf-iterations", "2"])
    .arg("--out")
    .arg(&public)
    .env(PASS_VAR, PASS);
    let o = run(cmd);
    assert!(o.status.success(), "{}", text(&o));
    let mut natted = node(&public, &dir.path().join("public-data"), 0);
    natted.args(["--p2p-listen-addr", "127.0.0.1:0"]);
    natted.args(["--p2p-advertised-addr", "10.1.2.3:9000", "--blocks", "1"]);
    let o = run(natted);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("is not a globally routable address"),
        "{}",
        text(&o)
    );

    // A malformed genesis file is refused by name.
    std::fs::write(other.join("genesis.json"), "{\"version\": 1").expect("write");
    let o = run(node(&other, &dir.path().join("fresh"), 0));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("malformed genesis file"), "{}", text(&o));
}

/// `--validate-only` prints every check and exits 2 on a bad MainNet
/// configuration; the same configuration from a `--config` file too, with
/// flags overriding the file; an unknown key in the file is an error.
#[test]
fn validate_only_and_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-node"));
    cmd.args(["-P", "mainnet", "-d"])
        .arg(dir.path())
        .arg("--validate-only");
    let o = run(cmd);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    for check in [
        "FAIL network_environment",
        "FAIL signer_mode",
        "PASS diversity_mode",
    ] {
        assert!(out.contains(check), "{check} missing: {out}");
    }

    // A good MainNet configuration passes every check.
    let net = dir.path().join("mainnet");
    generate(&net, 1, 9_000, "mainnet");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-node"));
    cmd.arg("--genesis")
        .arg(net.join("genesis.json"))
        .arg("-d")
        .arg(dir.path().join("data"))
        .args(["--validator-id", "0", "--signer-mode", "encrypted-fs"])
        .arg("--snapshot-dir")
        .arg(dir.path().join("snapshots"))
        .args(["--snapshot-interval", "50000", "--validate-only"]);
    let o = run(cmd);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains("FAIL"), "{}", text(&o));
    assert!(text(&o).contains("profile = mainnet"), "{}", text(&o));

    // DevNet: the checks are informational, exit 0.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-node"));
    cmd.arg("-d").arg(dir.path()).arg("--validate-only");
    let o = run(cmd);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "profile = \"mainnet\"\ndata-dir = \"{}\"\nvalidate-only = true\n\
             diversity-mode = \"warn\"\n",
            dir.path().display()
        ),
    )
    .expect("write");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-node"));
    cmd.arg("--config").arg(&config);
    let o = run(cmd);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("FAIL diversity_mode"), "{}", text(&o));
    // A flag overrides the file.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-node"));
    cmd.arg("--config")
        .arg(&config)
        .args(["--diversity-mode", "enforce"]);
    let o = run(cmd);
    assert!(text(&o).contains("PASS diversity_mode"), "{}", text(&o));

    std::fs::write(&config, "colour = \"blue\"\n").expect("write");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-node"));
    cmd.arg("--config").arg(&config);
    let o = run(cmd);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("unknown key \"colour\""), "{}", text(&o));
}
