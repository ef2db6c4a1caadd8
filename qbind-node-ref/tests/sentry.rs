//! A validator behind a sentry, as processes: a generated TestNet genesis of
//! four validators; validator 3's genesis P2P key and address belong to
//! its sentry (`qbind-node --role sentry`), and validator 3 itself runs with
//! a new link key and `--sentry-link-addr`, connected to nothing else. The
//! four commit with equal state roots; with validator 2 stopped, every
//! certificate needs validator 3's vote (3 of the remaining 3), so the chain
//! moves only if validator 3 takes part through its sentry: the others'
//! proposals and votes in, its own out (a vote to another leader is a
//! `LinkFrame::To`, tested on its own in `qbind-net/tests/sentry.rs`; here
//! leader reputation may let validator 3 lead). The sentry's `/metrics` counts the
//! relayed messages; it stops cleanly on SIGTERM. Bad sentry flags are
//! refused by name.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Reaper;

const PASS_VAR: &str = "QBIND_SENTRY_TEST_PASSPHRASE";
const PASS: &str = "correct horse battery staple, sentry test";
const VALIDATORS: usize = 4;
const HIDDEN: usize = 3;

fn generate(out: &Path, base_port: u16) {
    common::testnet_genesis(out, base_port, 2, PASS_VAR, PASS);
}

fn node(net: &Path) -> Command {
    common::genesis_node(net, PASS_VAR, PASS)
}

/// The value of the sample line starting with `prefix`.
fn sample(page: &str, prefix: &str) -> u64 {
    page.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in\n{page}"))
}

#[test]
fn a_validator_behind_a_sentry_votes_and_proposes_through_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Seven ports from the pid, in this binary's range (1,024–1,983), below
    // the ephemeral ports (see multi_process.rs).
    let base_port = 1_024 + (std::process::id() % 120) as u16 * 8;
    let net = dir.path().join("net");
    generate(&net, base_port);
    let data = dir.path().join("data");
    let link_keys = dir.path().join("link-3");
    common::keygen(&link_keys, HIDDEN, "p2p-identity", PASS_VAR, PASS);
    let link_addr = format!("127.0.0.1:{}", base_port + 6);

    // The sentry: validator 3's genesis P2P key, at validator 3's address.
    let sentry_cmd = || {
        let mut sentry = node(&net);
        sentry
            .args(["--role", "sentry", "--validator-index", "3"])
            .arg("--p2p-identity-key")
            .arg(net.join("v3").join("p2p_identity.key"))
            .args(["--sentry-link-addr", &link_addr])
            .arg("--sentry-validator-pub")
            .arg(link_keys.join("p2p_identity.pub"))
            .args(["--metrics-addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        sentry
    };
    let mut sentry = sentry_cmd().spawn().expect("start the sentry");
    let (url_tx, url_rx) = mpsc::channel();
    let stdout = sentry.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("metrics on ") {
                let _ = url_tx.send(url.to_owned());
            }
        }
    });
    let mut nodes = Reaper(vec![sentry]);
    let metrics = url_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the sentry prints its metrics address");

    let roots = common::roots(VALIDATORS);
    let validator = |i: usize| {
        let mut cmd = node(&net);
        cmd.arg("-d")
            .arg(&data)
            .args(["--validator-index", &i.to_string()])
            .args(["--signer-mode", "encrypted-fs", "--load-generator", "false"])
            .arg("--signer-keystore-path")
            .arg(net.join(format!("v{i}")))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if i == HIDDEN {
            cmd.arg("--p2p-identity-key")
                .arg(link_keys.join("p2p_identity.key"))
                .args(["--sentry-link-addr", &link_addr]);
        }
        cmd
    };
    for i in 0..VALIDATORS {
        let mut child: Child = validator(i).spawn().expect("start a validator");
        common::follow(i, &mut child, &roots);
        nodes.0.push(child);
    }
    let all_at = |h: u64| {
        common::wait_until(Duration::from_secs(90), || {
            common::heights(&roots).iter().all(|x| *x >= h)
        })
    };
    assert!(all_at(10), "heights {:?}", common::heights(&roots));

    // Validator 2 stops: 0, 1 and 3 are the quorum now, so every block
    // needs validator 3's vote, relayed by its sentry.
    let v2 = &mut nodes.0[3];
    let _ = Command::new("kill")
        .args(["-TERM", &v2.id().to_string()])
        .status();
    let status = common::wait_exit(v2, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "validator 2: {status:?}"
    );
    let stopped_at = common::highest(&roots, 2);
    let moved = common::wait_until(Duration::from_secs(90), || {
        [0, 1, HIDDEN]
            .iter()
            .all(|i| common::highest(&roots, *i) >= stopped_at + 10)
    });
    assert!(moved, "heights {:?}", common::heights(&roots));
    common::assert_equal_roots(
        &{
            let r = roots.lock().expect("lock").clone();
            let mut without_2 = r;
            without_2.remove(2);
            std::sync::Arc::new(std::sync::Mutex::new(without_2))
        },
        stopped_at + 10,
    );
    common::assert_equal_roots(&roots, stopped_at);

    let page = common::scrape(&metrics);
    let to_network = sample(
        &page,
        "qbind_sentry_relayed_total{validator=\"3\",direction=\"to_network\"}",
    );
    let to_validator = sample(
        &page,
        "qbind_sentry_relayed_total{validator=\"3\",direction=\"to_validator\"}",
    );
    assert!(to_network > 10 && to_validator > 10, "{page}");
    assert_eq!(
        sample(&page, "qbind_sentry_malformed_total{validator=\"3\"}"),
        0
    );

    // The sentry restarts after 6 s down (the chain stalls meanwhile: only
    // validators 0 and 1 are reachable); validator 3 redials its link and
    // the chain moves again.
    let sentry = &mut nodes.0[0];
    let _ = Command::new("kill")
        .args(["-TERM", &sentry.id().to_string()])
        .status();
    let status = common::wait_exit(sentry, Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "sentry: {status:?}");
    std::thread::sleep(Duration::from_secs(6));
    let stalled = common::highest(&roots, 0);
    nodes.0[0] = sentry_cmd().spawn().expect("restart the sentry");
    let resumed = common::wait_until(Duration::from_secs(30), || {
        [0, 1, HIDDEN]
            .iter()
            .all(|i| common::highest(&roots, *i) >= stalled + 5)
    });
    assert!(
        resumed,
        "after the sentry restart: heights {:?}",
        common::heights(&roots)
    );

    for (i, child) in nodes.0.iter().enumerate() {
        if i == 3 {
            continue; // validator 2, already stopped
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    for (i, child) in nodes.0.iter_mut().enumerate() {
        if i == 3 {
            continue; // validator 2, already stopped
        }
        let status = common::wait_exit(child, Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "process {i}: {status:?}"
        );
    }
}

#[test]
fn bad_sentry_flags_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = dir.path().join("net");
    generate(&net, 47_800);
    let link = dir.path().join("link");
    common::keygen(&link, HIDDEN, "p2p-identity", PASS_VAR, PASS);
    let sentry = |extra: &[&str], key: &Path| {
        let mut cmd = node(&net);
        cmd.args(["--role", "sentry"])
            .arg("--p2p-identity-key")
            .arg(key)
            .args(extra);
        let o = cmd.output().expect("run qbind-node");
        (
            o.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let pubfile = link.join("p2p_identity.pub");
    let pubfile = pubfile.to_str().expect("utf-8");
    let genesis_key = net.join("v3").join("p2p_identity.key");
    let link_key = link.join("p2p_identity.key");
    let cases: Vec<(Vec<&str>, &Path, &str)> = vec![
        (vec![], &genesis_key, "--validator-index"),
        (
            vec!["--validator-index", "3"],
            &genesis_key,
            "--sentry-link-addr",
        ),
        (
            vec![
                "--validator-index",
                "3",
                "--sentry-link-addr",
                "127.0.0.1:47807",
            ],
            &genesis_key,
            "--sentry-validator-pub",
        ),
        (
            vec![
                "--validator-index",
                "3",
                "--sentry-link-addr",
                "127.0.0.1:47807",
                "--sentry-validator-pub",
                pubfile,
                "--signer-mode",
                "encrypted-fs",
            ],
            &genesis_key,
            "signs nothing",
        ),
        // The link key is not the key the genesis lists as validator 3's.
        (
            vec![
                "--validator-index",
                "3",
                "--sentry-link-addr",
                "127.0.0.1:47807",
                "--sentry-validator-pub",
                pubfile,
            ],
            &link_key,
            "is its validator's p2p_pub",
        ),
        (
            vec![
                "--validator-index",
                "3",
                "--sentry-link-addr",
                "127.0.0.1:47807",
                "--sentry-validator-pub",
                pubfile,
                "--load-generator",
                "true",
            ],
            &genesis_key,
            "takes no transactions",
        ),
    ];
    let with_api = [
        "--validator-index",
        "3",
        "--sentry-link-addr",
        "127.0.0.1:47807",
        "--sentry-validator-pub",
        pubfile,
        "--api-addr",
        "127.0.0.1:0",
    ];
    let cases: Vec<(Vec<&str>, &Path, &str)> = cases
        .into_iter()
        .chain([(with_api.to_vec(), genesis_key.as_path(), "drop --api-addr")])
        .collect();
    for (extra, key, expected) in cases {
        let (code, text) = sentry(&extra, key);
        assert_eq!(code, Some(2), "{extra:?}: {text}");
        assert!(text.contains(expected), "{extra:?}: {text}");
    }
    // A validator behind a sentry must run with its own link key, not the
    // genesis one (that is the sentry's).
    let mut cmd = node(&net);
    cmd.arg("-d")
        .arg(dir.path().join("data"))
        .args(["--validator-index", "3", "--signer-mode", "encrypted-fs"])
        .arg("--signer-keystore-path")
        .arg(net.join("v3"))
        .args(["--sentry-link-addr", "127.0.0.1:47807", "--blocks", "1"]);
    let o = cmd.output().expect("run qbind-node");
    let text = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("own link key"), "{text}");
    // Network-facing flags on a validator behind a sentry are the sentry's.
    let list = dir.path().join("full-nodes.toml");
    std::fs::write(&list, "").expect("write");
    let mut cmd = node(&net);
    cmd.arg("-d")
        .arg(dir.path().join("data"))
        .args(["--validator-index", "3", "--signer-mode", "encrypted-fs"])
        .arg("--signer-keystore-path")
        .arg(net.join("v3"))
        .args(["--sentry-link-addr", "127.0.0.1:47807", "--blocks", "1"])
        .arg("--full-node-keys")
        .arg(&list);
    let o = cmd.output().expect("run qbind-node");
    let text = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains("--full-node-keys has no effect behind a sentry"),
        "{text}"
    );
}
