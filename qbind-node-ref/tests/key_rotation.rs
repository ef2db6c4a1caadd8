//! An on-chain key rotation on a running network (issue #20; docs/key-rotation.md):
//! four `qbind-node` processes with their own keystores, epochs of 10
//! blocks, system transactions applied from height 40 (a rotation submitted
//! before is refused). Validator 1 runs with `--next-signer-keystore-path` naming a
//! directory that does not exist yet; once the network runs, the operator
//! generates the next key there and loads it with `qbind-admin
//! load-next-key` (refused before the key is there). The operator signs a rotation event with
//! `qbind-key-rotation` and submits it with `qbind-validator-registry
//! submit-rotation` to validator 0's public API; every validator applies it
//! when it executes the block (validator 0's rotation gauge shows it), then
//! validator 3 is killed, so no quorum forms without validator 1's votes.
//! The chain still commits past the end of the grace period, where only the
//! new key is accepted: validator 1 signs with it and everyone verifies it
//! — no file edit, no restart. Then validator 3's store is wiped and it
//! starts again with `--state-sync-from` validator 0: the commit proof of
//! validator 0's newest snapshot is signed with validator 1's new key, so the
//! state sync verifies only with the snapshot's key log, and the restored
//! validator reports the same roots (which commit to the log) as the
//! others.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{Reaper, highest, wait_until};

const VALIDATORS: usize = 4;
const EPOCH_LENGTH: u64 = 10;
const GRACE: u64 = 1;
/// Every node applies system transactions from this height on
/// (`--system-tx-activation-height`): a rotation submitted before the chain
/// is one block short of it is refused by the API.
const ACTIVATION: u64 = 40;
const PASS_VAR: &str = "QBIND_KEY_ROTATION_TEST_PASSPHRASE";
const PASS: &str = "correct horse battery staple, rotation test";

fn metrics(addr: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// The JSON body of `GET {path}` on the API at `addr` (`Null` if none).
fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let Ok(addr) = addr.trim_start_matches("http://").parse::<SocketAddr>() else {
        return serde_json::Value::Null;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return serde_json::Value::Null;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(request.as_bytes());
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `qbind-key-rotation init` for validator 1 to the key in `v1-next`,
/// signed with its current keystore.
fn sign_rotation(root: &Path, effective: u64, out: &str) -> Output {
    sign_rotation_with_grace(root, effective, GRACE, out)
}

fn sign_rotation_with_grace(root: &Path, effective: u64, grace: u64, out: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qbind-key-rotation"))
        .args([
            "init",
            "--validator-id",
            "1",
            "--key-role",
            "consensus",
            "--effective-epoch",
            &effective.to_string(),
            "--grace-epochs",
            &grace.to_string(),
            "--network",
            "devnet",
            "--passphrase-env",
            PASS_VAR,
        ])
        .arg("--sign-with")
        .arg(root.join("v1"))
        .arg("--new-key-path")
        .arg(root.join("v1-next/consensus.pub"))
        .arg("--output")
        .arg(root.join(out))
        .env(PASS_VAR, PASS)
        .output()
        .expect("run qbind-key-rotation")
}

/// `qbind-admin --output json load-next-key` against validator 1.
fn load_next_key(root: &Path, admin: SocketAddr) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qbind-admin"))
        .args(["--addr", &admin.to_string(), "--output", "json"])
        .arg("--token-file")
        .arg(root.join("admin.token"))
        .arg("load-next-key")
        .output()
        .expect("run qbind-admin")
}

fn submit(root: &Path, api: &str, event: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qbind-validator-registry"))
        .args(["--output", "json", "submit-rotation", "--api", api])
        .arg("--event")
        .arg(root.join(event))
        .output()
        .expect("run qbind-validator-registry")
}

#[test]
fn a_rotation_submitted_as_a_transaction_takes_effect_without_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // Eight ports from the pid: the validators' four, the API, metrics,
    // validator 1's admin endpoint and metrics.
    let base = 24_000 + (std::process::id() % 900) as u16 * 8;
    let api_port = base + 4;
    let metrics_addr: SocketAddr = ([127, 0, 0, 1], base + 5).into();
    let admin_addr: SocketAddr = ([127, 0, 0, 1], base + 6).into();
    let metrics_1: SocketAddr = ([127, 0, 0, 1], base + 7).into();
    let api = format!("http://127.0.0.1:{api_port}");

    for i in 0..VALIDATORS {
        common::keygen(
            &root.join(format!("v{i}")),
            i,
            "consensus,p2p-identity",
            PASS_VAR,
            PASS,
        );
    }
    let token = Command::new(env!("CARGO_BIN_EXE_qbind-admin"))
        .arg("gen-token")
        .arg(root.join("admin.token"))
        .output()
        .expect("run qbind-admin");
    assert!(token.status.success(), "{token:?}");
    let set_path = common::write_validator_set(
        root,
        VALIDATORS,
        base,
        &format!("epoch_length = {EPOCH_LENGTH}\n"),
        |i| format!("v{i}/consensus.pub"),
    );

    let roots = common::roots(VALIDATORS);
    let mut nodes = Reaper(Vec::new());
    for i in 0..VALIDATORS {
        let mut cmd = common::own_keys_node(root, &set_path, i, PASS_VAR, PASS);
        cmd.args(["--signer-mode", "encrypted-fs"])
            .args(["--system-tx-activation-height", &ACTIVATION.to_string()]);
        if i == 0 {
            cmd.args([
                "--api-addr",
                &format!("127.0.0.1:{api_port}"),
                "--metrics-addr",
                &metrics_addr.to_string(),
                "--snapshot-interval",
                "10",
            ])
            .arg("--snapshot-dir")
            .arg(root.join("snapshots-0"));
        }
        if i == 1 {
            cmd.arg("--next-signer-keystore-path")
                .arg(root.join("v1-next"))
                .args(["--admin-addr", &admin_addr.to_string()])
                .args(["--metrics-addr", &metrics_1.to_string()])
                .arg("--admin-token-file")
                .arg(root.join("admin.token"));
        }
        let mut child = cmd.spawn().expect("start qbind-node");
        common::follow(i, &mut child, &roots);
        nodes.0.push(child);
    }
    assert!(
        wait_until(Duration::from_secs(90), || {
            common::heights(&roots).iter().all(|h| *h >= 3)
        }),
        "the network did not start: {:?}",
        common::heights(&roots)
    );

    // The next key is not there yet: nothing to load (exit 1, the path
    // named). Generated while the node runs, it loads, once.
    let early = load_next_key(root, admin_addr);
    assert_eq!(early.status.code(), Some(1), "{early:?}");
    let why = String::from_utf8_lossy(&early.stderr);
    assert!(why.contains("no keystore at"), "{why}");
    common::keygen(&root.join("v1-next"), 1, "consensus", PASS_VAR, PASS);
    let loaded = load_next_key(root, admin_addr);
    assert!(loaded.status.success(), "load-next-key: {loaded:?}");
    let loaded: serde_json::Value = serde_json::from_slice(&loaded.stdout).expect("json reply");
    assert_eq!(loaded["id"], 1, "{loaded}");
    assert_eq!(loaded["loaded_now"], true, "{loaded}");
    let fingerprint = loaded["key_fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(fingerprint.len(), 16, "{loaded}");
    let again = load_next_key(root, admin_addr);
    assert!(again.status.success(), "load-next-key again: {again:?}");
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json reply");
    assert_eq!(again["loaded_now"], false, "{again}");
    assert_eq!(again["key_fingerprint"], fingerprint.as_str(), "{again}");

    // Before the activation height: refused by the API, whatever the
    // event (system transactions are not applied below it).
    // (Signed first: the signing's key derivation takes a while; the
    // committed height the API checks may be a few blocks past the
    // executed one read here.)
    let early = sign_rotation(root, 10, "early.json");
    assert!(early.status.success(), "{early:?}");
    let now = highest(&roots, 0);
    assert!(
        now + 4 < ACTIVATION,
        "the chain passed the activation height ({now}) before the test got there"
    );
    let early = submit(root, &api, "early.json");
    assert_eq!(early.status.code(), Some(1), "{early:?}");
    let why = String::from_utf8_lossy(&early.stderr);
    assert!(
        why.contains("key_rotation_refused") && why.contains(&format!("from height {ACTIVATION}")),
        "{why}"
    );
    assert!(
        wait_until(Duration::from_secs(120), || highest(&roots, 0) + 1
            >= ACTIVATION),
        "the chain did not reach the activation height"
    );

    // Effective four epochs after the current one: execution refuses less
    // than two after the epoch of the block that carries it, and that block
    // may be an epoch later — only validator 0's pool holds the rotation,
    // so only a block it leads carries it, and the test now reads the epoch
    // at its very end (with three, one run in five never applied it; a
    // review traced it to this).
    let epoch = highest(&roots, 0).saturating_sub(1) / EPOCH_LENGTH;
    let effective = epoch + 4;
    let signed = sign_rotation(root, effective, "rotation.json");
    assert!(
        signed.status.success(),
        "qbind-key-rotation: {}",
        String::from_utf8_lossy(&signed.stderr)
    );
    // A second event for the same validator and epoch (a longer grace
    // period), signed beforehand so that it is submitted while the first
    // is pending.
    let second = sign_rotation_with_grace(root, effective, GRACE + 1, "second.json");
    assert!(second.status.success());
    let out = submit(root, &api, "rotation.json");
    let second = submit(root, &api, "second.json");
    assert!(
        out.status.success(),
        "submit-rotation: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It does not outrank the pending one (neither an emergency nor a later
    // epoch): refused at once, not accepted and dropped by the pool. (Were
    // the first already applied, the rules refuse it too.)
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    let why = String::from_utf8_lossy(&second.stderr);
    assert!(why.contains("key_rotation_refused"), "{why}");
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json reply");
    assert_eq!(reply["effective_epoch"], effective);
    assert_eq!(reply["hash"].as_str().map(str::len), Some(64), "{reply}");
    let hash = reply["hash"].as_str().unwrap_or_default().to_string();
    // The same transaction again: refused (exit 1, already known).
    let again = submit(root, &api, "rotation.json");
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    // An event whose effective epoch is too soon: refused by the API's
    // check against the keys in force.
    let soon = sign_rotation(root, epoch + 1, "too-soon.json");
    assert!(soon.status.success());
    let refused = submit(root, &api, "too-soon.json");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("key_rotation_refused"), "{why}");

    // Every validator applies it when it executes the block; validator 0's
    // gauge shows the pending rotation.
    let pending = "qbind_consensus_key_rotation_pending{validator=\"1\",key_role=\"consensus\"}";
    assert!(
        wait_until(Duration::from_secs(60), || {
            gauge(&metrics(metrics_addr), pending) == Some(1)
        }),
        "the rotation was never applied; metrics:\n{}",
        metrics(metrics_addr)
    );
    // Its status is a receipt like a transfer's (no gas, no fee), and its
    // block lists it where it was delivered.
    let path = format!("/v1/tx/{hash}");
    let mut status = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            status = get_json(&api, &path);
            status["status"] == "committed"
        }),
        "GET {path}: {status}"
    );
    assert_eq!(status["outcome"]["result"], "success", "{status}");
    let height = status["height"].as_u64().expect("height");
    let index = status["index"].as_u64().expect("index") as usize;
    let block = get_json(&api, &format!("/v1/block/{height}"));
    assert_eq!(
        block["tx_hashes"][index].as_str(),
        Some(hash.as_str()),
        "GET /v1/block/{height}: {block}"
    );
    // From now on no quorum forms without validator 1.
    let _ = nodes.0[3].kill();
    let _ = nodes.0[3].wait();
    let past_grace = (effective + GRACE + 1) * EPOCH_LENGTH + 3;
    let reached = wait_until(Duration::from_secs(150), || {
        (0..3).all(|i| highest(&roots, i) >= past_grace)
    });
    let text = metrics(metrics_addr);
    assert!(
        reached,
        "validators 0..2 stopped before height {past_grace} (epoch {}, where only validator \
         1's new key is accepted): {:?}",
        effective + GRACE,
        common::heights(&roots)
    );
    assert_eq!(
        gauge(&text, pending),
        Some(0),
        "the rotation is final after its grace period:\n{text}"
    );
    // Validator 1's next signer signed, and is watched like the current
    // one: its series carry `key="next"`.
    let own = metrics(metrics_1);
    let next_signed = gauge(
        &own,
        "qbind_signer_signatures_total{validator=\"1\",key=\"next\"}",
    );
    assert!(next_signed.is_some_and(|n| n > 0), "{own}");
    assert_eq!(
        gauge(&own, "qbind_signer_health{validator=\"1\",key=\"next\"}"),
        Some(0),
        "{own}"
    );
    // Validators 0..2 agree at every height (validator 3 up to where it
    // was killed).
    {
        let roots = roots.lock().expect("lock");
        for h in 1..=past_grace {
            let first = &roots[0][&h];
            for (i, m) in roots.iter().enumerate() {
                if let Some(r) = m.get(&h) {
                    assert_eq!(r, first, "validator {i} state root at height {h}");
                }
            }
        }
    }

    // Validator 3, its store wiped, state-syncs from validator 0 past the
    // rotation and follows the chain with the rotated keys. (With the wait
    // for the activation height above, it restarts a few blocks after
    // validator 0's newest snapshot, whose commit proof is not committed
    // yet: validator 0 offered nothing then, and validator 3 gave up, in
    // three runs of three, until the server offered the snapshot before it.)
    std::fs::remove_dir_all(root.join("data").join("validator-3")).expect("wipe validator 3");
    roots.lock().expect("lock")[3].clear();
    let mut cmd = common::own_keys_node(root, &set_path, 3, PASS_VAR, PASS);
    cmd.args(["--signer-mode", "encrypted-fs", "--state-sync-from", &api])
        .args(["--system-tx-activation-height", &ACTIVATION.to_string()]);
    let mut child = cmd.spawn().expect("start qbind-node");
    common::follow(3, &mut child, &roots);
    nodes.0[3] = child;
    let target = highest(&roots, 0) + 5;
    let followed = wait_until(Duration::from_secs(120), || highest(&roots, 3) >= target);
    assert!(
        followed,
        "validator 3 did not follow after its state sync: {:?}",
        common::heights(&roots)
    );
    {
        let roots = roots.lock().expect("lock");
        let first = *roots[3].keys().next().expect("validator 3 executed");
        assert!(
            first > past_grace - 2 * EPOCH_LENGTH,
            "validator 3 executed from height {first}: not from a state synced past the rotation"
        );
        for (h, r) in &roots[3] {
            if let Some(r0) = roots[0].get(h) {
                assert_eq!(r, r0, "validator 3's state root at height {h}");
            }
        }
    }
    common::interrupt_all_and_expect_clean_exit(&mut nodes.0);
}
