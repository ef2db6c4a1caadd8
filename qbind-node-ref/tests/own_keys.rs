//! Validators with their own keys, as an operator runs them: `qbind-keygen`
//! makes encrypted keystores, a validator-set file lists the public keys,
//! three `qbind-node` processes sign from their keystores (`encrypted-fs`)
//! and the fourth through a separate `qbind-remote-signer` daemon process
//! over KEMTLS, with ExitOnFailure. All four commit the same state roots;
//! when the daemon is killed, the fourth node exits with status 1 and the
//! other three keep committing.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Reaper, highest, wait_exit, wait_until};

const VALIDATORS: usize = 4;
const TARGET: u64 = 10;
const PASS_VAR: &str = "QBIND_OWN_KEYS_TEST_PASSPHRASE";
const PASS: &str = "correct horse battery staple, own keys test";

fn http_get(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn keystores_and_a_remote_signer_daemon_run_a_network() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // Eight ports from the pid, in this binary's range (20,000–31,999): the
    // validators' four, the daemon's two and a node's metrics, all below
    // Linux's ephemeral range (32768-60999), where no outgoing connection of
    // another process can hold them (see multi_process.rs).
    let base = 20_000 + (std::process::id() % 1_500) as u16 * 8;
    let signer_port = base + 4;
    let metrics_port = signer_port + 1;

    // Keys: validators 0..3 hold their consensus key; validator 3's is held
    // by the daemon, which also has its own KEMTLS identity.
    for i in 0..VALIDATORS {
        let roles = if i == 3 {
            "p2p-identity"
        } else {
            "consensus,p2p-identity"
        };
        common::keygen(&root.join(format!("v{i}")), i, roles, PASS_VAR, PASS);
    }
    let signer_dir = root.join("signer3");
    common::keygen(&signer_dir, 3, "consensus,p2p-identity", PASS_VAR, PASS);

    let set_path = common::write_validator_set(root, VALIDATORS, base, "", |i| {
        if i == 3 {
            "signer3/consensus.pub".into()
        } else {
            format!("v{i}/consensus.pub")
        }
    });

    let daemon_cfg = format!(
        "listen_addr = \"127.0.0.1:{signer_port}\"\nvalidator_id = 3\n\
         backend_mode = \"encrypted-fs\"\nkeystore_path = \"{}\"\npassphrase_env = \"{PASS_VAR}\"\n\
         rate_limit_rps = 1000\nnetwork = \"devnet\"\nallowed_client_pub = \"{}\"\n\
         identity_key_path = \"{}\"\nidentity_passphrase_env = \"{PASS_VAR}\"\n\
         double_sign_dir = \"{}\"\nmetrics_addr = \"127.0.0.1:{metrics_port}\"\n\
         allow_key_rotation = true\n",
        signer_dir.display(),
        root.join("v3/p2p_identity.pub").display(),
        signer_dir.join("p2p_identity.key").display(),
        // qbind-keygen created the record next to the daemon's key.
        signer_dir.display(),
    );
    let daemon_cfg_path = root.join("remote_signer.toml");
    std::fs::write(&daemon_cfg_path, daemon_cfg).expect("write daemon config");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_qbind-remote-signer"))
        .arg("--config")
        .arg(&daemon_cfg_path)
        .env(PASS_VAR, PASS)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qbind-remote-signer");
    let daemon_stderr = common::stderr_tail(&mut daemon, 40);
    let metrics_addr: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    let up = wait_until(Duration::from_secs(30), || http_get(metrics_addr).is_some());
    if !up {
        let exited = daemon.try_wait();
        let _ = daemon.kill();
        panic!(
            "the remote signer daemon did not come up (exit {exited:?}); its stderr ended:\n{}",
            common::show_tail(&daemon_stderr)
        );
    }

    let roots = common::roots(VALIDATORS);
    let mut nodes = Reaper(Vec::new());
    for i in 0..VALIDATORS {
        let mut cmd = common::own_keys_node(root, &set_path, i, PASS_VAR, PASS);
        if i == 3 {
            cmd.args([
                "--metrics-addr",
                &format!("127.0.0.1:{}", metrics_port + 1),
                "--signer-mode",
                "remote-signer",
                "--remote-signer-url",
                &format!("kemtls://127.0.0.1:{signer_port}"),
                "--signer-failure-mode",
                "exit-on-failure",
                "--remote-signer-timeout-ms",
                "2000",
            ])
            .arg("--remote-signer-pub")
            .arg(signer_dir.join("p2p_identity.pub"));
        } else {
            cmd.args(["--signer-mode", "encrypted-fs"]);
        }
        let mut child = cmd.spawn().expect("start qbind-node");
        common::follow(i, &mut child, &roots);
        nodes.0.push(child);
    }

    let all_reached = wait_until(Duration::from_secs(120), || {
        common::heights(&roots).iter().all(|h| *h >= TARGET)
    });
    // While the daemon runs, the operator signs a rotation of validator 3's
    // consensus key through it (the key never leaves the daemon).
    common::keygen(&root.join("v3-next"), 3, "consensus", PASS_VAR, PASS);
    let rotation = Command::new(env!("CARGO_BIN_EXE_qbind-key-rotation"))
        .args([
            "init",
            "--validator-id",
            "3",
            "--key-role",
            "consensus",
            "--effective-epoch",
            "5",
            "--grace-epochs",
            "2",
            "--network",
            "devnet",
            "--remote-signer-url",
            &format!("kemtls://127.0.0.1:{signer_port}"),
            "--passphrase-env",
            PASS_VAR,
        ])
        .arg("--new-key-path")
        .arg(root.join("v3-next/consensus.pub"))
        .arg("--remote-signer-pub")
        .arg(signer_dir.join("p2p_identity.pub"))
        .arg("--p2p-identity-key")
        .arg(root.join("v3/p2p_identity.key"))
        .arg("--output")
        .arg(root.join("rotation-3.json"))
        .env(PASS_VAR, PASS)
        .output()
        .expect("run qbind-key-rotation");
    let metrics = http_get(metrics_addr).unwrap_or_default();
    let node_metrics = http_get(([127, 0, 0, 1], metrics_port + 1).into()).unwrap_or_default();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        all_reached,
        "not every validator executed {TARGET} blocks: {:?}",
        common::heights(&roots)
    );
    let signed = counter(&metrics, "qbind_remote_signer_signed_total");
    eprintln!(
        "heights {:?}; the daemon signed {signed} requests for validator 3",
        common::heights(&roots)
    );
    assert!(
        signed > 0,
        "the daemon signed nothing for validator 3:\n{metrics}"
    );
    // The node exports its signer's health and the rotation gauges.
    for (name, at_least) in [
        ("qbind_hsm_startup_ok{validator=\"3\"}", 1),
        ("qbind_signer_signatures_total{validator=\"3\"}", 1),
        (
            "qbind_consensus_key_rotation_pending{validator=\"3\",key_role=\"consensus\"}",
            0,
        ),
    ] {
        assert!(
            node_metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{node_metrics}"
        );
        assert!(
            counter(&node_metrics, name) >= at_least,
            "{name} below {at_least}"
        );
    }
    common::assert_equal_roots(&roots, TARGET);

    assert!(
        rotation.status.success(),
        "qbind-key-rotation through the daemon: {}",
        String::from_utf8_lossy(&rotation.stderr)
    );
    // The event is valid for the network: the validator-set file with it
    // loads, and from epoch 5 validator 3 may sign with the new key.
    let with_rotation = std::fs::read_to_string(&set_path)
        .expect("read set")
        .replace(
            "network = \"devnet\"\n",
            "network = \"devnet\"\nepoch_length = 100\n",
        )
        + "[[rotation]]\nfile = \"rotation-3.json\"\n";
    let rotated_path = root.join("validators-rotated.toml");
    std::fs::write(&rotated_path, with_rotation).expect("write set");
    let rotated = qbind_node_ref::validator_set::ValidatorSetFile::load(&rotated_path)
        .expect("the signed rotation applies");
    let registry = rotated.key_registry().expect("registry");
    use qbind_core::key_rotation::KeyRole;
    use qbind_core::types::{Epoch, ValidatorId};
    assert_eq!(
        registry
            .accepted_keys(ValidatorId(3), KeyRole::Consensus, Epoch(5))
            .len(),
        2,
        "both keys during the grace period"
    );

    // The daemon is gone: validator 3's next signature fails and, under
    // ExitOnFailure, the node exits with status 1.
    let status = wait_exit(&mut nodes.0[3], Duration::from_secs(60));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "validator 3 should exit with 1 after losing its signer: {status:?}"
    );
    // Three of four still commit.
    let before = highest(&roots, 0);
    eprintln!("validator 3 exited with {status:?}; validator 0 at height {before}");
    assert!(
        wait_until(Duration::from_secs(60), || highest(&roots, 0) >= before + 3),
        "validators 0..2 stopped committing without validator 3"
    );
    common::interrupt_all_and_expect_clean_exit(&mut nodes.0[..3]);
}

#[test]
fn bad_signer_settings_are_refused_with_status_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    common::keygen(
        &root.join("v0"),
        0,
        "consensus,p2p-identity",
        PASS_VAR,
        PASS,
    );
    let set = "network = \"devnet\"\n[[validator]]\nid = 0\nstake = 1\naddress = \"127.0.0.1:1\"\n\
               consensus_pub_file = \"v0/consensus.pub\"\np2p_pub_file = \"v0/p2p_identity.pub\"\n";
    let set_path = root.join("validators.toml");
    std::fs::write(&set_path, set).expect("write set");
    let run = |args: &[&str], pass: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_qbind-node"))
            .arg("--data-dir")
            .arg(root.join("data"))
            .args(args)
            .env(PASS_VAR, pass)
            .output()
            .expect("run qbind-node");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let set_arg = set_path.to_str().expect("utf-8 path");
    let ks = root.join("v0");
    let ks_arg = ks.to_str().expect("utf-8 path");
    let common = [
        "--validator-set",
        set_arg,
        "--validator-index",
        "0",
        "--signer-keystore-path",
        ks_arg,
        "--signer-passphrase-env",
        PASS_VAR,
    ];
    let (code, err) = run(&["--signer-mode", "encrypted-fs"], PASS);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--signer-mode needs --validator-set"), "{err}");

    let with = |extra: &[&'static str]| -> Vec<&str> {
        common
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect()
    };
    let (code, err) = run(
        &with(&["--signer-mode", "encrypted-fs"]),
        "wrong passphrase",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("P2P identity key"), "{err}");

    let (code, err) = run(&with(&["--signer-mode", "paper"]), PASS);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown --signer-mode"), "{err}");

    let (code, err) = run(
        &with(&[
            "--signer-mode",
            "hsm-pkcs11",
            "--hsm-config-path",
            "/nonexistent/hsm.toml",
        ]),
        PASS,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("signer startup failed"), "{err}");

    let (code, err) = run(
        &with(&[
            "--signer-mode",
            "encrypted-fs",
            "--signer-failure-mode",
            "sometimes",
        ]),
        PASS,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--signer-failure-mode"), "{err}");

    // A next key that is there but does not open stops the start; one that
    // is the current key (a finished rotation) is not loaded, and the node
    // runs (stopped here by its closed stdin).
    let not_a_keystore = root.join("broken-next");
    std::fs::create_dir(&not_a_keystore).expect("mkdir");
    std::fs::write(not_a_keystore.join("consensus.key"), "not a key").expect("write");
    let next_arg = |next: &'static str| {
        let mut a = common.to_vec();
        a.extend([
            "--signer-mode",
            "encrypted-fs",
            "--next-signer-keystore-path",
            next,
        ]);
        a
    };
    let leak = |p: &std::path::Path| -> &'static str {
        Box::leak(p.to_str().expect("utf-8 path").to_owned().into_boxed_str())
    };
    let (code, err) = run(&next_arg(leak(&not_a_keystore)), PASS);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--next-signer-keystore-path"), "{err}");
    let mut same = next_arg(leak(&ks));
    same.push("--stop-with-stdin");
    let (code, err) = run(&same, PASS);
    assert!(
        err.contains("holds the current consensus key (a finished rotation?): not loaded"),
        "{code:?} {err}"
    );
    assert_eq!(code, Some(0), "{err}");
}
