//! A full node joins a running TestNet: four validator processes (DAG
//! payloads, own keystores, a generated genesis) admit the full node's P2P
//! key (`--full-node-keys`); it starts after they have committed, follows
//! them over KEMTLS from one bootstrap peer, verifies and executes every
//! block from genesis, and serves the public API: a transfer submitted to a
//! validator's API is read back from the full node's (receipt, balances,
//! state root equal to the validators', balances equal on every node); a
//! submission to the full node is refused with `not_a_validator`; a
//! validator killed with SIGKILL and restarted catches up while the full
//! node follows; the full node stops cleanly on SIGTERM and resumes from its
//! store; a second full node starts from a validator's snapshot (with the
//! anchor `qbind-snapshot validate` prints) and follows from its height; a
//! third has neither store nor snapshot and starts by state sync from two
//! peers' APIs (one of them a proxy that forges every page it serves, which
//! is dropped), restores the certified state and follows from its height.
//! Bad full-node configurations are refused by name.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Reaper, Roots};
use qbind_api::wire::TxStatusView;
use qbind_client::{ClientError, QbindClient};
use qbind_core::crypto::KeyPair;
use qbind_core::execution::{Transaction, TransferPayload, TransferPayloadV1};
use qbind_core::types::{AccountId, NetworkEnvironment};

const PASS_VAR: &str = "QBIND_FULL_NODE_TEST_PASSPHRASE";
const PASS: &str = "correct horse battery staple, full node test";
const VALIDATORS: usize = 4;
const FULL: usize = VALIDATORS;
const LATE: usize = VALIDATORS + 1;
const SYNCED: usize = VALIDATORS + 2;

/// Every "state sync:" line the nodes printed, with the printing process's
/// id (the tests run in parallel and each reads only its own node's lines).
static STATE_SYNC_LINES: std::sync::Mutex<Vec<(u32, String)>> = std::sync::Mutex::new(Vec::new());

/// The "state sync:" lines process `pid` printed so far. A poisoned lock
/// (another test failed while holding it) is still read.
fn state_sync_lines(pid: u32) -> Vec<String> {
    STATE_SYNC_LINES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|(p, _)| *p == pid)
        .map(|(_, l)| l.clone())
        .collect()
}

/// `qbind-genesis devnet -P testnet` into `out`.
fn generate(out: &Path, base_port: u16) {
    common::testnet_genesis(out, base_port, 4, PASS_VAR, PASS);
}

/// The line before each validator's API address.
const API_PREFIXES: [&str; VALIDATORS] = [
    "API of validator 0 on ",
    "API of validator 1 on ",
    "API of validator 2 on ",
    "API of validator 3 on ",
];

/// Write the validators' `--full-node-keys` file admitting `nodes` (id and
/// key directory).
fn full_node_list(path: &Path, nodes: &[(usize, &Path)]) {
    let text: String = nodes
        .iter()
        .map(|(id, keys)| {
            format!(
                "[[full_node]]\nid = {id}\np2p_pub_file = \"{}\"\n",
                keys.join("p2p_identity.pub").display()
            )
        })
        .collect();
    std::fs::write(path, text).expect("write the full-node key file");
}

/// Validator `i` with its keystore, admitting the full nodes of `list`,
/// serving its API and writing a snapshot every 20 blocks into `snaps`.
fn validator(net: &Path, data: &Path, i: usize, list: &Path, snaps: &Path) -> Command {
    let mut cmd = node(net, data);
    cmd.args(["--validator-index", &i.to_string()])
        .args(["--signer-mode", "encrypted-fs", "--load-generator", "false"])
        .arg("--signer-keystore-path")
        .arg(net.join(format!("v{i}")))
        .arg("--full-node-keys")
        .arg(list)
        .args(["--api-addr", "127.0.0.1:0"])
        .arg("--snapshot-dir")
        .arg(snaps)
        .args(["--snapshot-interval", "20"]);
    cmd
}

/// `qbind-node` with the genesis of `net`, data in `data`, quick timeouts.
fn node(net: &Path, data: &Path) -> Command {
    let mut cmd = common::genesis_node(net, PASS_VAR, PASS);
    cmd.arg("-d").arg(data);
    cmd
}

/// Start `cmd`, record its "height" lines as node `i` of `roots`, and
/// return it with the URL it prints after `api_prefix` (if given).
fn spawn(
    mut cmd: Command,
    i: usize,
    roots: &Roots,
    api_prefix: Option<&'static str>,
) -> (Child, Option<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qbind-node");
    let stderr = common::stderr_tail(&mut child, 40);
    let Some(prefix) = api_prefix else {
        common::follow(i, &mut child, roots);
        return (child, None);
    };
    // Read the API line first, then hand the rest to the height follower.
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped");
    let (url_tx, url_rx) = mpsc::channel();
    let roots = std::sync::Arc::clone(roots);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix(prefix) {
                let _ = url_tx.send(url.to_owned());
            }
            if line.starts_with("state sync:") {
                STATE_SYNC_LINES
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((pid, line.clone()));
            }
            let Some(rest) = line.strip_prefix("height") else {
                continue;
            };
            let height = rest.split_whitespace().next().and_then(|h| h.parse().ok());
            let root = line.rsplit(' ').next().map(str::to_string);
            if let (Some(h), Some(r)) = (height, root) {
                roots.lock().expect("lock")[i].insert(h, r);
            }
        }
    });
    match url_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => (child, Some(url)),
        Err(e) => {
            let status = common::wait_exit(&mut child, Duration::from_secs(5));
            panic!(
                "node {i} printed no API address ({e}); exit {status:?}; its stderr ended:\n{}",
                common::show_tail(&stderr)
            )
        }
    }
}

fn transfer(key: &KeyPair, nonce: u64, to: AccountId, amount: u128) -> Transaction {
    let payload = TransferPayload::V1(TransferPayloadV1 {
        recipient: to,
        amount,
        gas_limit: 40_000,
        max_fee_per_gas: 1,
    });
    Transaction::sign(key, NetworkEnvironment::Testnet, nonce, payload)
}

fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

#[test]
fn a_full_node_joins_follows_serves_reads_and_refuses_submissions() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ten ports from the pid, in this binary's range (5,000–9,999), below the
    // ephemeral ports (see multi_process.rs); the other test takes the next ten.
    let base_port = 5_000 + (std::process::id() % 250) as u16 * 20;
    let net = dir.path().join("net");
    generate(&net, base_port);
    let data = dir.path().join("data");
    let full_keys = dir.path().join("full");
    common::keygen(&full_keys, FULL, "p2p-identity", PASS_VAR, PASS);
    // A second full node, started later from a validator's snapshot.
    let late_keys = dir.path().join("late");
    common::keygen(&late_keys, LATE, "p2p-identity", PASS_VAR, PASS);
    // A third, started later still by state sync from the validators' APIs.
    let synced_keys = dir.path().join("synced");
    common::keygen(&synced_keys, SYNCED, "p2p-identity", PASS_VAR, PASS);
    let list = dir.path().join("full-nodes.toml");
    full_node_list(
        &list,
        &[
            (FULL, &full_keys),
            (LATE, &late_keys),
            (SYNCED, &synced_keys),
        ],
    );
    let snaps = dir.path().join("snaps");

    let roots = common::roots(SYNCED + 1);
    let mut nodes = Reaper(Vec::new());
    let mut validator_apis = Vec::new();
    for (i, prefix) in API_PREFIXES.iter().enumerate() {
        let cmd = validator(&net, &data, i, &list, &snaps);
        let (child, url) = spawn(cmd, i, &roots, Some(prefix));
        validator_apis.push(url.expect("a validator's API"));
        nodes.0.push(child);
    }
    let validator_api = validator_apis[0].clone();
    let joined_after = 10;
    let committed = common::wait_until(Duration::from_secs(90), || {
        common::heights(&roots)[..VALIDATORS]
            .iter()
            .all(|h| *h >= joined_after)
    });
    assert!(committed, "validators at {:?}", common::heights(&roots));

    // The full node's store is created first (as an operator would), then
    // it joins late, knowing only validator 0's address.
    let o = Command::new(env!("CARGO_BIN_EXE_qbind-node"))
        .args(["init", "--genesis"])
        .arg(net.join("genesis.json"))
        .arg("-d")
        .arg(&data)
        .args(["--full-node-id", &FULL.to_string()])
        .output()
        .expect("run qbind-node init");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{o:?}");
    assert!(text.contains("full-node-4"), "{text}");
    let full_p2p = format!("127.0.0.1:{}", base_port + 6);
    let full_node = |data: &Path| {
        let mut cmd = node(&net, data);
        cmd.args(["--role", "full", "--full-node-id", &FULL.to_string()])
            .arg("--p2p-identity-key")
            .arg(full_keys.join("p2p_identity.key"))
            .args(["--p2p-listen-addr", &full_p2p])
            .args(["--bootstrap-peers", &format!("127.0.0.1:{base_port}")])
            .args(["--api-addr", "127.0.0.1:0"]);
        cmd
    };
    let (child, url) = spawn(
        full_node(&data),
        FULL,
        &roots,
        Some("API of full node 4 on "),
    );
    nodes.0.push(child);
    let full_api = url.expect("the full node's API");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sender_key = qbind_node_ref::genesis::load_account_keys(&net.join("accounts.json"))
        .expect("accounts")
        .remove(0);
    let sender = AccountId::from_public_key(sender_key.public_key());
    let recipient = AccountId::from_public_key(KeyPair::from_seed(&[0x7c; 32]).public_key());
    let (height, hash) = runtime.block_on(async {
        let validator = QbindClient::new(&validator_api).expect("client");
        let full = QbindClient::new(&full_api).expect("client");
        let mut last = None;
        for nonce in 0..3 {
            let tx = transfer(&sender_key, nonce, recipient, 1_000 + u128::from(nonce));
            // A full node takes no transactions, and says so.
            match full.submit(&tx).await {
                Err(ClientError::Api { status, code, .. }) => {
                    assert_eq!((status, code.as_str()), (421, "not_a_validator"));
                }
                other => panic!("the full node answered {other:?}"),
            }
            last = Some(validator.submit(&tx).await.expect("validator accepts"));
        }
        let hash = last.expect("submitted");
        // The full node reports the receipt once it has executed the block.
        let view = full
            .wait(hash, Duration::from_secs(90), Duration::from_millis(200))
            .await
            .expect("the full node reports the transfer");
        let TxStatusView::Committed {
            height, outcome, ..
        } = view
        else {
            panic!("not committed on the full node: {view:?}");
        };
        assert_eq!(outcome.result, "success", "{outcome:?}");
        let on_full = full.account(recipient).await.expect("full node account");
        assert_eq!(on_full.balance, 1_000 + 1_001 + 1_002);
        for url in &validator_apis {
            let client = QbindClient::new(url).expect("client");
            client
                .wait(hash, Duration::from_secs(30), Duration::from_millis(200))
                .await
                .expect("every validator executes it");
            let on_validator = client.account(recipient).await.expect("account");
            assert_eq!(on_validator.balance, on_full.balance, "{url}");
        }
        assert_eq!(
            full.account(sender).await.expect("sender").nonce,
            validator.account(sender).await.expect("sender").nonce
        );
        let (a, b) = (
            full.block(height).await.expect("full node block"),
            validator.block(height).await.expect("validator block"),
        );
        assert!(a.state_root.is_some(), "{a:?}");
        assert_eq!(a.state_root, b.state_root, "state root at height {height}");
        assert_eq!(a.tx_hashes, b.tx_hashes);
        (height, hash)
    });

    // The full node executed everything from genesis, with the validators'
    // state roots, well past the height it joined at.
    let caught_up = common::wait_until(Duration::from_secs(60), || {
        common::highest(&roots, FULL) >= height
    });
    assert!(caught_up, "heights {:?}", common::heights(&roots));
    equal_roots(&roots, height);

    // A validator killed with SIGKILL and restarted catches up with the
    // others, the full node still following.
    let killed_at = common::highest(&roots, 3);
    let _ = nodes.0[3].kill();
    let _ = nodes.0[3].wait();
    let restarted = validator(&net, &data, 3, &list, &snaps);
    nodes.0[3] = spawn(restarted, 3, &roots, Some(API_PREFIXES[3])).0;
    let rejoined = common::wait_until(Duration::from_secs(60), || {
        common::heights(&roots)[..=FULL]
            .iter()
            .all(|h| *h >= killed_at + 10)
    });
    assert!(rejoined, "heights {:?}", common::heights(&roots));
    equal_roots(&roots, killed_at + 10);

    // SIGTERM stops it cleanly; it resumes from its store.
    let mut full_child = nodes.0.pop().expect("full node");
    sigterm(&full_child);
    let status = common::wait_exit(&mut full_child, Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "full node: {status:?}");
    let before = common::highest(&roots, FULL);
    let (child, url) = spawn(
        full_node(&data),
        FULL,
        &roots,
        Some("API of full node 4 on "),
    );
    nodes.0.push(child);
    runtime.block_on(async {
        let full = QbindClient::new(&url.expect("API")).expect("client");
        let view = full.tx_status(hash).await.expect("status after restart");
        assert!(
            matches!(view, TxStatusView::Committed { .. }),
            "after a restart: {view:?}"
        );
    });
    let resumed = common::wait_until(Duration::from_secs(60), || {
        common::highest(&roots, FULL) > before + 5
    });
    assert!(resumed, "heights {:?}", common::heights(&roots));

    // Another full node starts from validator 0's latest snapshot, with the
    // anchor `qbind-snapshot validate` prints, and follows from there.
    let (snapshot, anchor) = latest_snapshot(&snaps.join("validator-0"), &net);
    let from: u64 = snapshot
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("a snapshot is named by its height");
    let mut late = node(&net, &data);
    late.args(["--role", "full", "--full-node-id", &LATE.to_string()])
        .arg("--p2p-identity-key")
        .arg(late_keys.join("p2p_identity.key"))
        .args(["--p2p-listen-addr", &format!("127.0.0.1:{}", base_port + 7)])
        .args(["--bootstrap-peers", &format!("127.0.0.1:{}", base_port + 1)])
        .arg("--fast-sync-snapshot-dir")
        .arg(&snapshot)
        .args(["--trusted-snapshot-anchor", &anchor])
        .args(["--api-addr", "127.0.0.1:0"]);
    let (child, url) = spawn(late, LATE, &roots, Some("API of full node 5 on "));
    nodes.0.push(child);
    let target = common::highest(&roots, 0) + 5;
    let followed = common::wait_until(Duration::from_secs(60), || {
        common::highest(&roots, LATE) >= target
    });
    assert!(followed, "heights {:?}", common::heights(&roots));
    {
        let r = roots.lock().expect("lock");
        assert!(
            !r[LATE].contains_key(&from),
            "the snapshot's height is not executed again"
        );
        for h in from + 1..=target {
            assert_eq!(r[LATE][&h], r[0][&h], "state root at height {h}");
        }
    }
    runtime.block_on(async {
        let late = QbindClient::new(&url.expect("API")).expect("client");
        let got = late.account(recipient).await.expect("account");
        assert_eq!(
            got.balance,
            1_000 + 1_001 + 1_002,
            "state from the snapshot"
        );
    });

    // A third full node has no store and no snapshot: it fetches validator
    // 0's newest snapshot from the validators' APIs in verified chunks
    // (state sync), restores it with the anchor its commit proof
    // certified, and follows from there.
    let mut synced = node(&net, &data);
    synced
        .args(["--role", "full", "--full-node-id", &SYNCED.to_string()])
        .arg("--p2p-identity-key")
        .arg(synced_keys.join("p2p_identity.key"))
        .args(["--p2p-listen-addr", &format!("127.0.0.1:{}", base_port + 8)])
        .args(["--bootstrap-peers", &format!("127.0.0.1:{}", base_port + 2)])
        .args([
            "--state-sync-from",
            &format!(
                "{},{}",
                validator_apis[1],
                forging_proxy(&validator_apis[1])
            ),
        ])
        .args(["--api-addr", "127.0.0.1:0"]);
    let (child, url) = spawn(synced, SYNCED, &roots, Some("API of full node 6 on "));
    let synced_pid = child.id();
    nodes.0.push(child);
    let certified: u64 = {
        let lines = state_sync_lines(synced_pid);
        let line = lines
            .iter()
            .find(|l| l.contains("certified"))
            .unwrap_or_else(|| panic!("no certified height in {lines:?}"));
        line.split_whitespace()
            .nth(3)
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("{line}"))
    };
    assert!(
        certified >= from,
        "the newest snapshot: {certified} < {from}"
    );
    {
        let lines = state_sync_lines(synced_pid);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("dropping") && l.contains("fails verification")),
            "the forging peer was not dropped: {lines:?}"
        );
    }
    let target = common::highest(&roots, 0) + 5;
    let followed = common::wait_until(Duration::from_secs(60), || {
        common::highest(&roots, SYNCED) >= target
    });
    assert!(followed, "heights {:?}", common::heights(&roots));
    {
        let r = roots.lock().expect("lock");
        assert!(
            r[SYNCED].keys().all(|h| *h > certified),
            "nothing at or below the synced height is executed again"
        );
        for h in certified + 1..=target {
            assert_eq!(r[SYNCED][&h], r[0][&h], "state root at height {h}");
        }
    }
    runtime.block_on(async {
        let synced = QbindClient::new(&url.expect("API")).expect("client");
        let got = synced.account(recipient).await.expect("account");
        assert_eq!(got.balance, 1_000 + 1_001 + 1_002, "state from state sync");
    });
    for child in &nodes.0 {
        sigterm(child);
    }
    for (i, child) in nodes.0.iter_mut().enumerate() {
        let status = common::wait_exit(child, Duration::from_secs(30));
        assert!(status.is_some_and(|s| s.success()), "node {i}: {status:?}");
    }
    assert!(data.join("full-node-4").is_dir());
    assert!(data.join("full-node-5").is_dir());
    assert!(data.join("full-node-6").is_dir());
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .expect("data dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

/// Validators that keep only their last 40 blocks (`--state-retention-mode
/// height`) cannot bring a new node up from genesis by block sync once
/// they have pruned; a full node started with `--state-sync-from` joins
/// anyway: it fetches the newest snapshot's state, restores it and follows
/// by block sync from there, with the validators' roots.
#[test]
fn a_full_node_joins_by_state_sync_past_the_pruning_horizon() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ports +10..+14 of this process's range (the other test uses +0..+8).
    let base_port = 5_000 + (std::process::id() % 250) as u16 * 20 + 10;
    let net = dir.path().join("net");
    generate(&net, base_port);
    let data = dir.path().join("data");
    let keys = dir.path().join("full");
    common::keygen(&keys, FULL, "p2p-identity", PASS_VAR, PASS);
    let list = dir.path().join("full-nodes.toml");
    full_node_list(&list, &[(FULL, &keys)]);
    let snaps = dir.path().join("snaps");
    let roots = common::roots(FULL + 1);
    let mut nodes = Reaper(Vec::new());
    let mut apis = Vec::new();
    for (i, prefix) in API_PREFIXES.iter().enumerate() {
        let mut cmd = validator(&net, &data, i, &list, &snaps);
        cmd.args([
            "--state-retention-mode",
            "height",
            "--state-retain-height",
            "40",
        ]);
        let (child, url) = spawn(cmd, i, &roots, Some(prefix));
        apis.push(url.expect("a validator's API"));
        nodes.0.push(child);
    }
    // Wait until validator 0 has pruned its early blocks.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let v0 = QbindClient::new(&apis[0]).expect("client");
    let pruned = common::wait_until(Duration::from_secs(120), || {
        common::heights(&roots)[..VALIDATORS]
            .iter()
            .all(|h| *h >= 100)
            && runtime.block_on(async {
                matches!(v0.block(1).await, Err(ClientError::Api { status: 404, .. }))
            })
    });
    assert!(
        pruned,
        "validators at {:?}, block 1 not pruned",
        common::heights(&roots)
    );
    // ...and offers a snapshot it can prove.
    let offered = common::wait_until(Duration::from_secs(60), || {
        runtime.block_on(async { v0.state_snapshots().await.is_ok_and(|h| !h.is_empty()) })
    });
    assert!(offered, "no snapshot offered");

    let mut full = node(&net, &data);
    full.args(["--role", "full", "--full-node-id", &FULL.to_string()])
        .arg("--p2p-identity-key")
        .arg(keys.join("p2p_identity.key"))
        .args(["--p2p-listen-addr", &format!("127.0.0.1:{}", base_port + 4)])
        .args(["--bootstrap-peers", &format!("127.0.0.1:{base_port}")])
        .args(["--state-sync-from", &apis[..2].join(",")])
        .args(["--api-addr", "127.0.0.1:0"]);
    let (child, _) = spawn(full, FULL, &roots, Some("API of full node 4 on "));
    nodes.0.push(child);
    let target = common::highest(&roots, 0) + 10;
    let followed = common::wait_until(Duration::from_secs(90), || {
        common::highest(&roots, FULL) >= target
    });
    assert!(followed, "heights {:?}", common::heights(&roots));
    {
        let r = roots.lock().expect("lock");
        let first = *r[FULL].keys().next().expect("the full node executed");
        assert!(first > 40, "the full node started from genesis: {first}");
        for h in first..=target {
            assert_eq!(r[FULL][&h], r[0][&h], "state root at height {h}");
        }
    }
    // A second node stopped in the middle of its state sync (its own data
    // directory: full node 4 runs in `data`).
    stopped_in_the_chunks_phase(&net, &dir.path().join("data-stopped"), &keys, &apis[0]);
    for child in &nodes.0 {
        sigterm(child);
    }
    for (i, child) in nodes.0.iter_mut().enumerate() {
        let status = common::wait_exit(child, Duration::from_secs(30));
        assert!(status.is_some_and(|s| s.success()), "node {i}: {status:?}");
    }
}

/// A state-sync peer that relays `upstream`'s answers but raises one
/// balance in every page it serves (the pages still decode); its URL. Runs
/// on its own thread until the test process ends.
fn forging_proxy(upstream: &str) -> String {
    proxy(upstream, Tamper::Forge)
}

/// What [`proxy`] does to the pages it relays.
#[derive(Clone, Copy)]
enum Tamper {
    /// Raise one balance in every page.
    Forge,
    /// Answer no page for a minute (longer than the client waits).
    Stall,
}

/// A state-sync peer relaying `upstream`'s answers, with its pages
/// tampered with as `tamper` says; its URL. Runs on its own thread until
/// the test process ends.
fn proxy(upstream: &str, tamper: Tamper) -> String {
    use qbind_api::{ApiBackend, BackendError, StateSyncReply, StateSyncRequest};
    use qbind_core::codec::{Decode, Encode};
    use qbind_core::state_sync::StatePage;

    struct Forger(QbindClient, Tamper);
    impl ApiBackend for Forger {
        state_sync_only_backend!(NetworkEnvironment::Testnet);

        async fn state_sync(&self, r: StateSyncRequest) -> Result<StateSyncReply, BackendError> {
            let path = match r {
                StateSyncRequest::Snapshots => {
                    // An upstream failure is passed on as one, not as "no
                    // snapshots", so the client asks again.
                    let heights = self
                        .0
                        .state_snapshots()
                        .await
                        .map_err(|_| BackendError::Unavailable)?;
                    return Ok(StateSyncReply::Heights(heights));
                }
                StateSyncRequest::Proof(h) => format!("/v1/state-sync/{}/proof", h.0),
                StateSyncRequest::Manifest(h) => format!("/v1/state-sync/{}/manifest", h.0),
                StateSyncRequest::KeyLog(h) => format!("/v1/state-sync/{}/key-rotations", h.0),
                StateSyncRequest::Page {
                    height,
                    chunk,
                    after,
                } => match after {
                    None => format!("/v1/state-sync/{}/chunk/{chunk}", height.0),
                    Some(a) => format!(
                        "/v1/state-sync/{}/chunk/{chunk}?after={}",
                        height.0,
                        hex::encode(a.0)
                    ),
                },
            };
            let Ok(bytes) = self.0.state_bytes(&path, 64 << 20).await else {
                return Ok(StateSyncReply::NotServed);
            };
            if !matches!(r, StateSyncRequest::Page { .. }) {
                return Ok(StateSyncReply::Bytes(bytes));
            }
            if let Tamper::Stall = self.1 {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return Ok(StateSyncReply::Bytes(bytes));
            }
            let mut page = StatePage::from_bytes(&bytes).expect("the validator's page");
            if let Some((_, account)) = page.accounts.first_mut() {
                account.balance += 1;
            }
            Ok(StateSyncReply::Bytes(page.to_bytes()))
        }
    }

    common::serve_api(Forger(QbindClient::new(upstream).expect("client"), tamper))
}

/// Validators 0..=3 and the first full node report the same state root at
/// every height `1..=up_to` (the late full node starts from a snapshot).
fn equal_roots(roots: &Roots, up_to: u64) {
    let r = roots.lock().expect("lock");
    for h in 1..=up_to {
        for (i, m) in r.iter().enumerate().take(FULL + 1) {
            assert_eq!(m.get(&h), r[0].get(&h), "node {i} state root at height {h}");
            assert!(m.contains_key(&h), "node {i} executed height {h}");
        }
    }
}

/// The highest complete snapshot under `dir` and its trust anchor, as
/// `qbind-snapshot validate` reports it (waits up to 60 s for one).
fn latest_snapshot(dir: &Path, net: &Path) -> (std::path::PathBuf, String) {
    let mut found = None;
    let ok = common::wait_until(Duration::from_secs(60), || {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        let best = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let h: u64 = e.file_name().to_str()?.parse().ok()?;
                Some((h, e.path()))
            })
            .max();
        let Some((_, path)) = best else {
            return false;
        };
        let o = Command::new(env!("CARGO_BIN_EXE_qbind-snapshot"))
            .arg("validate")
            .arg(&path)
            .arg("--genesis")
            .arg(net.join("genesis.json"))
            .output()
            .expect("run qbind-snapshot");
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        found = text
            .lines()
            .find_map(|l| l.strip_prefix("Trust anchor: "))
            .filter(|_| o.status.success())
            .map(|a| (path, a.trim().to_string()));
        found.is_some()
    });
    assert!(ok, "no valid snapshot in {}", dir.display());
    found.expect("found")
}

/// Start full node [`FULL`] by state sync from a proxy of `api` that
/// stalls every page, stop it with SIGTERM once its `/metrics` shows the
/// chunks phase with its staging on disk, and check that it exits 0 at
/// once and leaves neither staging nor store behind.
fn stopped_in_the_chunks_phase(net: &Path, data: &Path, keys: &Path, api: &str) {
    std::fs::create_dir_all(data).expect("data directory");
    let mut cmd = node(net, data);
    cmd.args(["--role", "full", "--full-node-id", &FULL.to_string()])
        .arg("--p2p-identity-key")
        .arg(keys.join("p2p_identity.key"))
        .args(["--state-sync-from", &proxy(api, Tamper::Stall)])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .args(["--api-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut nodes = Reaper(vec![cmd.spawn().expect("start qbind-node")]);
    let stderr = common::stderr_tail(&mut nodes.0[0], 40);
    let stdout = nodes.0[0].stdout.take().expect("piped");
    let (line_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let metrics = loop {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) else {
            panic!(
                "no metrics address; stderr:\n{}",
                common::show_tail(&stderr)
            );
        };
        if let Some(url) = line.strip_prefix("metrics on ") {
            break url.to_string();
        }
    };
    let ours = |name: &str| name == "full-node-4" || name.starts_with(".full-node-4.");
    let entries = || -> Vec<String> {
        std::fs::read_dir(data)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| ours(n))
                    .collect()
            })
            .unwrap_or_default()
    };
    let page = || common::try_scrape(&metrics).unwrap_or_default();
    let in_chunks = common::wait_until(Duration::from_secs(60), || {
        page().contains("qbind_state_sync_phase{validator=\"4\"} 3\n")
            || !matches!(nodes.0[0].try_wait(), Ok(None))
    });
    let exited = nodes.0[0].try_wait();
    assert!(
        in_chunks && matches!(exited, Ok(None)),
        "not in the chunks phase (exit {exited:?}): {}\nstderr:\n{}",
        page(),
        common::show_tail(&stderr)
    );
    let staging = entries();
    assert!(
        staging
            .iter()
            .any(|n| n.starts_with(".full-node-4.state-sync-")),
        "no staging on disk in the chunks phase: {staging:?}"
    );
    sigterm(&nodes.0[0]);
    let status = common::wait_exit(&mut nodes.0[0], Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}; stderr:\n{}",
        common::show_tail(&stderr)
    );
    assert_eq!(entries(), Vec::<String>::new(), "left after the stop");
}

/// A state-sync peer that has no snapshot to offer yet; its URL.
fn peer_without_snapshots() -> String {
    use qbind_api::{ApiBackend, BackendError, StateSyncReply, StateSyncRequest};
    struct Empty;
    impl ApiBackend for Empty {
        state_sync_only_backend!(NetworkEnvironment::Testnet);

        async fn state_sync(&self, r: StateSyncRequest) -> Result<StateSyncReply, BackendError> {
            Ok(match r {
                StateSyncRequest::Snapshots => StateSyncReply::Heights(Vec::new()),
                _ => StateSyncReply::NotServed,
            })
        }
    }
    common::serve_api(Empty)
}

/// While a node fetches its state by state sync, before it has a store,
/// its `/metrics` shows the state sync's gauges and its API status says
/// `state_sync` with the phase (other routes answer 503); SIGTERM stops it
/// at once, cleanly, leaving no store behind. Before, neither endpoint
/// was up until the state was restored, and a stop signal waited for the
/// whole state sync (here 30 s of asking for a snapshot).
#[test]
fn a_node_in_state_sync_reports_its_progress_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = dir.path().join("net");
    generate(&net, 47_700);
    let data = dir.path().join("data");
    let keys = dir.path().join("full");
    common::keygen(&keys, FULL, "p2p-identity", PASS_VAR, PASS);
    let mut cmd = node(&net, &data);
    cmd.args(["--role", "full", "--full-node-id", &FULL.to_string()])
        .arg("--p2p-identity-key")
        .arg(keys.join("p2p_identity.key"))
        .args(["--state-sync-from", &peer_without_snapshots()])
        .args(["--api-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qbind-node");
    let mut nodes = Reaper(Vec::new());
    let stdout = child.stdout.take().expect("piped");
    let (line_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    nodes.0.push(child);
    let mut seen = Vec::new();
    let (mut metrics, mut status) = (None, None);
    while metrics.is_none() || status.is_none() {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no endpoint lines: {seen:?}"));
        if let Some(url) = line.strip_prefix("metrics on ") {
            metrics = Some(url.to_string());
        }
        if let Some(url) = line.strip_prefix("state sync: progress in the status on ") {
            status = Some(url.trim_end_matches("/v1/status").to_string());
        }
        seen.push(line);
    }
    let (metrics, api) = (metrics.expect("metrics"), status.expect("status"));

    let page = common::scrape(&metrics);
    for needle in [
        "qbind_state_sync_phase{validator=\"4\"} 1\n",
        "qbind_state_sync_peers{validator=\"4\"} 1\n",
        "qbind_state_sync_chunks_done{validator=\"4\"} 0\n",
    ] {
        assert!(page.contains(needle), "missing {needle} in\n{page}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = QbindClient::new(&api).expect("client");
    let view = runtime.block_on(client.status()).expect("status");
    match &view.sync {
        qbind_api::wire::SyncView::StateSync {
            phase,
            target_height,
            peers,
            ..
        } => assert_eq!((phase.as_str(), *target_height, *peers), ("proving", 0, 1)),
        other => panic!("status while state-syncing: {other:?}"),
    }
    let account = runtime.block_on(client.account(AccountId([7; 32])));
    assert!(
        matches!(account, Err(ClientError::Api { status: 503, .. })),
        "{account:?}"
    );

    sigterm(&nodes.0[0]);
    let status = common::wait_exit(&mut nodes.0[0], Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {seen:?}");
    seen.extend(lines.try_iter());
    assert!(
        seen.iter()
            .any(|l| l.starts_with("state sync: stopped before the state was complete")),
        "{seen:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&data)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the data directory: {left:?}");
}

/// Run `cmd` to completion; (exit code, stdout + stderr).
fn run(mut cmd: Command) -> (Option<i32>, String) {
    let o = cmd.output().expect("run qbind-node");
    (
        o.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn bad_full_node_configurations_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = dir.path().join("net");
    generate(&net, 47_900);
    let data = dir.path().join("data");
    let keys = dir.path().join("full");
    common::keygen(&keys, FULL, "p2p-identity", PASS_VAR, PASS);
    let full = |extra: &[&str]| {
        let mut cmd = node(&net, &data);
        cmd.args(["--role", "full", "--blocks", "1"])
            .arg("--p2p-identity-key")
            .arg(keys.join("p2p_identity.key"))
            .args(extra);
        cmd
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "--full-node-id"),
        (vec!["--full-node-id", "2"], "is a validator's id"),
        (
            vec!["--full-node-id", "5", "--p2p-listen-addr", "127.0.0.1:0"],
            "P2P identity key",
        ),
        (
            vec!["--full-node-id", "4", "--signer-mode", "encrypted-fs"],
            "drop --validator-index and --signer-mode",
        ),
        (vec!["--full-node-id", "4"], "needs --p2p-listen-addr"),
        (
            vec![
                "--full-node-id",
                "4",
                "--p2p-listen-addr",
                "127.0.0.1:0",
                "--load-generator",
                "true",
            ],
            "takes no transactions",
        ),
    ];
    for (extra, expected) in cases {
        let (code, text) = run(full(&extra));
        assert_eq!(code, Some(2), "{extra:?}: {text}");
        assert!(text.contains(expected), "{extra:?}: {text}");
    }

    // init refuses a full-node id inside the set.
    let o = Command::new(env!("CARGO_BIN_EXE_qbind-node"))
        .args(["init", "--genesis"])
        .arg(net.join("genesis.json"))
        .arg("-d")
        .arg(&data)
        .args(["--full-node-id", "3"])
        .output()
        .expect("run qbind-node init");
    let text = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("is a validator's"), "{text}");

    // A validator refuses a full-node key file naming a validator id.
    let list = dir.path().join("bad.toml");
    std::fs::write(
        &list,
        format!(
            "[[full_node]]\nid = 1\np2p_pub_file = \"{}\"\n",
            keys.join("p2p_identity.pub").display()
        ),
    )
    .expect("write");
    let mut cmd = node(&net, &data);
    cmd.args(["--validator-index", "0", "--signer-mode", "encrypted-fs"])
        .arg("--signer-keystore-path")
        .arg(net.join("v0"))
        .arg("--full-node-keys")
        .arg(&list)
        .args(["--blocks", "1"]);
    let (code, text) = run(cmd);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("has a validator's id"), "{text}");
}
