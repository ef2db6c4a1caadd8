//! `qbind-admin` against a running `qbind-node --admin-addr`: four DevNet
//! validators in one process over KEMTLS (ports 22000–22003: this test
//! binary's range is 22000–22999), DAG payloads, snapshots and height
//! retention. Every action is run and its output checked (a snapshot
//! appears on disk, the peers are the other three validators); a wrong
//! token gets 401 and exit 2 and is counted on `/metrics`; an oversized
//! body gets 413; idle connections beyond the cap neither lock the
//! operator out for long nor stall the node; the node refuses to start
//! without a token file, with one readable by others, or on a
//! non-loopback address. A second node (FIFO payloads, no snapshot
//! directory, archival) says so, and its snapshot and prune fail with
//! exit 1.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Reaper, wait_exit, wait_until};

/// First P2P port of the KEMTLS node (validators on 22000..22003).
const P2P_BASE_PORT: u16 = 22_000;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn admin(addr: &str, token: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qbind-admin"))
        .args(["--addr", addr])
        .arg("--token-file")
        .arg(token)
        .args(args)
        .output()
        .expect("run qbind-admin")
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn gen_token(path: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_qbind-admin"))
        .arg("gen-token")
        .arg(path)
        .output()
        .expect("gen-token");
    assert!(o.status.success(), "{}", text(&o));
}

/// Start `qbind-node` with `args` and the admin endpoint on a free port;
/// returns it (reaped on drop), the admin address and the metrics
/// address (if `--metrics-addr` is among `args`).
fn start_node(data: &Path, token: &Path, args: &[&str]) -> (Reaper, String, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qbind-node"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .args(["--admin-addr", "127.0.0.1:0"])
        .arg("--admin-token-file")
        .arg(token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qbind-node");
    let stdout = child.stdout.take().expect("stdout is piped");
    let node = Reaper(vec![child]);
    let want_metrics = args.contains(&"--metrics-addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            for (prefix, which) in [("admin endpoint on http://", 0), ("metrics on http://", 1)] {
                if let Some(rest) = line.strip_prefix(prefix) {
                    let addr = rest.trim_end_matches("/metrics").to_owned();
                    let _ = tx.send((which, addr));
                }
            }
        }
    });
    let (mut admin_addr, mut metrics_addr) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while admin_addr.is_none() || (want_metrics && metrics_addr.is_none()) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx
            .recv_timeout(left)
            .expect("the node prints its addresses")
        {
            (0, a) => admin_addr = Some(a),
            (_, a) => metrics_addr = Some(a),
        }
    }
    (node, admin_addr.expect("admin address"), metrics_addr)
}

/// `qbind-admin status` once every node executed `height`.
fn wait_for_height(addr: &str, token: &Path, height: u64) -> serde_json::Value {
    let mut last = None;
    let reached = wait_until(Duration::from_secs(90), || {
        let o = admin(addr, token, &["--output", "json", "status"]);
        if !o.status.success() {
            // Exit 1 while the node is still starting.
            assert_eq!(o.status.code(), Some(1), "{}", text(&o));
            return false;
        }
        let status = json(&o);
        let done = status["nodes"].as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .all(|n| n["executed_height"].as_u64().unwrap_or(0) >= height)
        });
        last = Some(status);
        done
    });
    assert!(reached, "height {height} not reached: {last:?}");
    last.expect("a status")
}

/// Send raw bytes to `addr` and read the response (up to 10 s).
fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn metrics_page(addr: &str) -> String {
    raw(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
}

#[test]
fn admin_actions_on_a_running_node_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("admin.token");
    gen_token(&token);
    let mode = std::fs::metadata(&token)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // Never overwritten: exit 2.
    let o = Command::new(env!("CARGO_BIN_EXE_qbind-admin"))
        .arg("gen-token")
        .arg(&token)
        .output()
        .expect("gen-token");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    refusals_at_start(dir.path(), &token);

    let snaps = dir.path().join("snaps");
    let p2p_port = P2P_BASE_PORT.to_string();
    let (mut node, addr, metrics) = start_node(
        &dir.path().join("data"),
        &token,
        &[
            "--local-validators",
            "4",
            "--p2p",
            "kemtls",
            "--p2p-base-port",
            &p2p_port,
            "--mempool-mode",
            "dag",
            "--base-timeout-ms",
            "500",
            "--tx-interval-ms",
            "20",
            "--snapshot-dir",
            snaps.to_str().expect("utf-8"),
            "--snapshot-interval",
            "100000",
            "--state-retention-mode",
            "height",
            "--state-retain-height",
            "3",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let metrics = metrics.expect("metrics address");

    // status
    let status = wait_for_height(&addr, &token, 8);
    assert_eq!(status["role"], "validator", "{status}");
    assert_eq!(status["profile"], "devnet", "{status}");
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4, "{status}");
    for n in nodes {
        assert!(n["view"].as_u64().expect("view") >= 1, "{status}");
        assert!(n["epoch"].as_u64().is_some(), "{status}");
        assert!(n["committed_height"].as_u64().expect("committed") >= 8);
    }
    let o = admin(&addr, &token, &["status"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("validator 0 (devnet): executed height"),
        "{}",
        text(&o)
    );

    // peers: each validator is connected to the other three.
    let mut peers = None;
    let connected = wait_until(Duration::from_secs(30), || {
        let o = admin(&addr, &token, &["--output", "json", "peers"]);
        assert!(o.status.success(), "{}", text(&o));
        let p = json(&o);
        let all = p["nodes"].as_array().is_some_and(|nodes| {
            nodes.len() == 4
                && nodes
                    .iter()
                    .all(|n| n["peers"].as_array().is_some_and(|p| p.len() == 3))
        });
        peers = Some(p);
        all
    });
    let peers = peers.expect("peers");
    assert!(connected, "{peers}");
    for n in peers["nodes"].as_array().expect("nodes") {
        assert_eq!(n["transport"], "kemtls");
        for p in n["peers"].as_array().expect("peers") {
            assert_ne!(p["id"], n["id"], "{peers}");
            assert_eq!(p["kind"], "validator");
            assert_eq!(
                p["key_fingerprint"].as_str().expect("fingerprint").len(),
                64
            );
            assert!(
                ["inbound", "outbound"].contains(&p["direction"].as_str().expect("dir")),
                "{peers}"
            );
            assert!(
                p["address"]
                    .as_str()
                    .expect("addr")
                    .starts_with("127.0.0.1")
            );
        }
    }
    let o = admin(&addr, &token, &["peers"]);
    assert!(
        text(&o).contains("node 0: 3 connected peers"),
        "{}",
        text(&o)
    );

    // dag-status
    let o = admin(&addr, &token, &["--output", "json", "dag-status"]);
    assert!(o.status.success(), "{}", text(&o));
    let dag = json(&o);
    assert_eq!(dag["payload_mode"], "dag", "{dag}");
    assert!(
        dag["nodes"][0]["dag"]["batches_committed_total"]
            .as_u64()
            .is_some(),
        "{dag}"
    );
    let o = admin(&addr, &token, &["dag-status"]);
    assert!(text(&o).contains("node 0 DAG:"), "{}", text(&o));

    // snapshot: one per validator, on disk, at least the height reached.
    let o = admin(&addr, &token, &["--output", "json", "snapshot"]);
    assert!(o.status.success(), "{}", text(&o));
    let taken = json(&o);
    let snapshots = taken["snapshots"].as_array().expect("snapshots");
    assert_eq!(snapshots.len(), 4, "{taken}");
    for s in snapshots {
        let height = s["height"].as_u64().expect("height");
        assert!(height >= 8, "{taken}");
        let path = Path::new(s["path"].as_str().expect("path"));
        assert!(path.starts_with(&snaps), "{taken}");
        assert!(path.join("meta.json").is_file(), "{taken}");
        assert!(
            s["trust_anchor"]
                .as_str()
                .expect("anchor")
                .starts_with(&format!("{height}:")),
            "{taken}"
        );
    }
    // A second snapshot needs a new height (one of the same height exists).
    let first = snapshots[0]["height"].as_u64().expect("height");
    wait_for_height(&addr, &token, first + 2);
    let o = admin(&addr, &token, &["snapshot"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("trust anchor"), "{}", text(&o));

    // prune: to the retention, but never past the newest snapshot.
    wait_for_height(&addr, &token, 14);
    let o = admin(&addr, &token, &["--output", "json", "prune"]);
    assert!(o.status.success(), "{}", text(&o));
    let pruned = json(&o);
    for n in pruned["nodes"].as_array().expect("nodes") {
        assert!(n["floor"].as_u64().expect("floor") >= 1, "{pruned}");
        assert!(n["deleted_keys"].as_u64().is_some(), "{pruned}");
    }
    let o = admin(&addr, &token, &["prune"]);
    assert!(text(&o).contains("lowest height kept"), "{}", text(&o));

    // A wrong token: 401, exit 2, counted.
    let other = dir.path().join("other.token");
    gen_token(&other);
    let o = admin(&addr, &other, &["status"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("401"), "{}", text(&o));
    let page = metrics_page(&metrics);
    assert!(
        page.contains(r#"qbind_admin_requests_total{action="status",result="unauthorized"} 1"#),
        "{page}"
    );
    assert!(
        page.contains(r#"qbind_admin_requests_total{action="snapshot",result="ok"} 2"#),
        "{page}"
    );

    attacks_are_bounded(&addr, &token);

    // The node kept committing and stops cleanly.
    wait_for_height(&addr, &token, 20);
    common::interrupt(&node.0[0]);
    let stopped = wait_exit(&mut node.0[0], Duration::from_secs(30));
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");

    fifo_node_without_snapshots_or_pruning(dir.path(), &token);
}

/// Oversized body: 413. More idle connections than the endpoint holds:
/// the operator's request is still answered (after the idle ones time
/// out), and the node goes on committing meanwhile.
fn attacks_are_bounded(addr: &str, token: &Path) {
    let hex = std::fs::read_to_string(token).expect("token");
    let hex = hex.trim();
    let body = "x".repeat(64 * 1024);
    let response = raw(
        addr,
        format!(
            "POST /admin/v1/status HTTP/1.1\r\nAuthorization: Bearer {hex}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    // Without the token the body is never read: 401.
    let response = raw(
        addr,
        format!(
            "POST /admin/v1/status HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");

    let before = wait_for_height(addr, token, 0)["nodes"][0]["executed_height"]
        .as_u64()
        .expect("height");
    let cap = qbind_node_ref::admin::AdminConfig::default();
    let idle: Vec<TcpStream> = (0..cap.max_connections + 4)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let started = Instant::now();
    let o = admin(addr, token, &["--output", "json", "status"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        started.elapsed() < cap.idle_timeout * 3,
        "{:?}",
        started.elapsed()
    );
    let after = json(&o)["nodes"][0]["executed_height"]
        .as_u64()
        .expect("height");
    assert!(after > before, "the node stalled: {before} → {after}");
    drop(idle);
}

/// The node refuses to start without a token file, with a token file
/// readable by others, and on a non-loopback address.
fn refusals_at_start(dir: &Path, token: &Path) {
    let node = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-node"));
        cmd.arg("--data-dir")
            .arg(dir.join("refused"))
            .args(["--local-validators", "1", "--blocks", "1"])
            .args(args);
        let o = cmd.output().expect("run qbind-node");
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        text(&o)
    };
    assert!(node(&["--admin-addr", "127.0.0.1:0"]).contains("--admin-token-file"));
    let open = dir.join("open.token");
    std::fs::copy(token, &open).expect("copy");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let open = open.to_str().expect("utf-8");
    assert!(
        node(&["--admin-addr", "127.0.0.1:0", "--admin-token-file", open])
            .contains("accessible to group or others")
    );
    let token = token.to_str().expect("utf-8");
    assert!(
        node(&["--admin-addr", "0.0.0.0:0", "--admin-token-file", token])
            .contains("not a loopback address")
    );
    // `--validate-only` refuses what a start would refuse.
    assert!(
        node(&[
            "--admin-addr",
            "127.0.0.1:0",
            "--admin-token-file",
            open,
            "--validate-only"
        ])
        .contains("accessible to group or others")
    );
    assert!(
        node(&["--admin-addr", "127.0.0.1:0", "--validate-only"]).contains("--admin-token-file")
    );
    // qbind-admin refuses the insecure file too (exit 2), before any request.
    let o = admin("127.0.0.1:9", Path::new(open), &["status"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // Nothing listening: exit 2.
    let o = admin("127.0.0.1:9", Path::new(token), &["status"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("cannot reach"), "{}", text(&o));
    // With --output json the failure is also one object on stdout (as
    // every operator tool reports it).
    let o = admin(
        "127.0.0.1:9",
        Path::new(token),
        &["--output", "json", "status"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let failed = json(&o);
    assert_eq!(failed["result"], "error", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach")),
        "{failed}"
    );
}

/// FIFO payloads, no snapshot directory, archival, no next key: dag-status
/// says so; snapshot, prune and load-next-key are refused with exit 1.
fn fifo_node_without_snapshots_or_pruning(dir: &Path, token: &Path) {
    let (mut node, addr, _) = start_node(
        &dir.join("fifo"),
        token,
        &["--local-validators", "1", "--base-timeout-ms", "300"],
    );
    wait_for_height(&addr, token, 2);
    let o = admin(&addr, token, &["dag-status"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("payload mode fifo: this node runs no DAG availability layer"),
        "{}",
        text(&o)
    );
    let o = admin(&addr, token, &["--output", "json", "peers"]);
    assert_eq!(json(&o)["nodes"][0]["transport"], "memory");
    let o = admin(&addr, token, &["snapshot"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--snapshot-dir"), "{}", text(&o));
    let o = admin(&addr, token, &["prune"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("pruning is off"), "{}", text(&o));
    let o = admin(&addr, token, &["--output", "json", "prune"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(json(&o)["result"], "error", "{}", text(&o));
    // No place for a next consensus key was given: nothing to load.
    let o = admin(&addr, token, &["load-next-key"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("--next-signer-keystore-path"),
        "{}",
        text(&o)
    );
    common::interrupt(&node.0[0]);
    let stopped = wait_exit(&mut node.0[0], Duration::from_secs(30));
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
}
