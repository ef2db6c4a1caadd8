//! The reference node's local network end to end: four validators with
//! fjall stores commit and execute signed transfers with equal state roots,
//! stop and resume from their stores, write snapshots, prune block history,
//! and one validator is rebuilt from its snapshot (fast sync) and catches up.

use std::path::Path;
use std::time::Duration;

use qbind_core::traits::{Namespace, StateRead};
use qbind_node_ref::local::{LocalOptions, Network, RunSummary, run_local};
use qbind_node_ref::node::Maintenance;
use qbind_store::FjallBackend;
use qbind_store::prune::RetentionMode;
use qbind_store::snapshot::{SnapshotConfig, list_snapshots};
use tokio::sync::watch;

fn options(data: &Path, snapshots: &Path, blocks: u64) -> LocalOptions {
    LocalOptions {
        validators: 4,
        data_dir: data.to_path_buf(),
        blocks,
        tx_interval: Duration::from_millis(3),
        accounts: 16,
        metrics_addr: None,
        maintenance: Maintenance {
            snapshots: Some(SnapshotConfig {
                snapshot_dir: snapshots.to_path_buf(),
                interval_blocks: 10,
                max_snapshots: 2,
                chain_id: 0,
            }),
            retention: RetentionMode::Height { retain_height: 5 },
            prune_pause: Duration::from_millis(20),
            backend: qbind_node_ref::store::StoreBackend::Fjall,
        },
        fast_sync: None,
        state_sync_from: Vec::new(),
        base_timeout_ms: 300,
        executor: qbind_node_ref::local::Executor::StageB,
        network: Network::Memory,
        only: None,
        keys: qbind_node_ref::local::Keys::Devnet,
        genesis: None,
        settings: qbind_node_ref::local::ChainSettings::default(),
        api: None,
        admin: None,
    }
}

async fn run(opts: LocalOptions) -> RunSummary {
    let (_stop, stopped) = watch::channel(false);
    tokio::time::timeout(Duration::from_secs(120), run_local(opts, stopped, |_| {}))
        .await
        .expect("run finished in time")
        .expect("run succeeded")
}

fn assert_agree(s: &RunSummary) {
    assert!(s.root_mismatches.is_empty(), "roots differ: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_validators_execute_resume_snapshot_prune_and_fast_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let snaps = dir.path().join("snapshots");

    let first = run(options(&data, &snaps, 25)).await;
    assert_agree(&first);
    assert!(first.transfers > 0, "no transfer executed: {first:?}");
    assert!(first.executed_height.iter().all(|h| *h >= 25));

    // Resume: every validator continues from its persisted executed height.
    let second = run(options(&data, &snaps, 10)).await;
    assert_agree(&second);
    for (i, (from, before)) in second
        .resumed_from
        .iter()
        .zip(&first.executed_height)
        .enumerate()
    {
        assert!(
            from >= before,
            "validator {i} resumed from {from}, below {before}"
        );
    }

    // Snapshots exist for validator 1 and at most max_snapshots are kept.
    let v1_snaps = list_snapshots(&snaps.join("validator-1")).expect("list snapshots");
    assert!(!v1_snaps.is_empty(), "no snapshot written");
    assert!(v1_snaps.len() <= 2, "retention not applied: {v1_snaps:?}");

    // Pruning removed old committed blocks from validator 2's store.
    {
        let store = FjallBackend::open(&data.join("validator-2")).expect("open");
        let mut height_one = vec![qbind_core::schema::COMMITTED_BLOCK_PREFIX];
        height_one.extend_from_slice(&1u64.to_be_bytes());
        assert_eq!(
            store.get(Namespace::Blocks, &height_one).expect("read"),
            None,
            "block 1 was not pruned"
        );
    }

    // Fast sync: validator 1 loses its store and is rebuilt from its newest
    // snapshot; it continues from the snapshot's height and agrees again.
    let newest = *v1_snaps.last().expect("a snapshot");
    std::fs::remove_dir_all(data.join("validator-1")).expect("remove store");
    let mut opts = options(&data, &snaps, 10);
    let snapshot = snaps.join("validator-1").join(newest.to_string());
    // The anchor validator 1 printed when it wrote the snapshot (trusted:
    // this test ran that validator).
    let meta = qbind_store::snapshot::read_meta(&snapshot).expect("meta.json");
    let anchor = qbind_store::snapshot::TrustAnchor::of(&meta).expect("anchor");
    // A snapshot that is not the anchored one is refused before the node
    // starts, and leaves no store behind.
    let mut wrong = anchor;
    wrong.state_root[0] ^= 1;
    let mut refused = options(&data, &snaps, 10);
    refused.fast_sync = Some(qbind_node_ref::local::FastSync {
        validator: 1,
        snapshot: snapshot.clone(),
        anchor: wrong,
    });
    let (_stop, stopped) = watch::channel(false);
    let err = tokio::time::timeout(Duration::from_secs(60), run_local(refused, stopped, |_| {}))
        .await
        .expect("refused in time")
        .expect_err("a snapshot that does not match the anchor is refused");
    assert!(err.to_string().contains("trusted anchor"), "{err}");
    assert!(!data.join("validator-1").exists());
    opts.fast_sync = Some(qbind_node_ref::local::FastSync {
        validator: 1,
        snapshot,
        anchor,
    });
    let third = run(opts).await;
    assert_agree(&third);
    // The snapshot is named by its committed height; execution may lag
    // the commit by a block when the checkpoint is taken, and the validator
    // resumes from the snapshot's executed height.
    assert_eq!(meta.height, newest);
    assert_eq!(
        third.resumed_from[1], meta.executed_height,
        "validator 1 did not start from its snapshot"
    );
    assert!(third.executed_height[1] >= meta.executed_height + 10);
    let others = third.executed_height.iter().copied().max().unwrap_or(0);
    assert!(third.executed_height[1] + 5 >= others);
}

/// A network of one validator commits and executes on its own (it used to
/// chain proposals inside one engine step and never commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_validator_commits_and_executes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A lone validator commits a block every few milliseconds: 15 blocks
    // could all be cut before the generator's first transfer arrives (the
    // test was flaky for that reason), so it runs long enough for transfers.
    let mut opts = options(&dir.path().join("data"), &dir.path().join("snaps"), 300);
    opts.validators = 1;
    opts.maintenance.snapshots = None;
    let s = run(opts).await;
    assert!(s.executed_height[0] >= 300, "{s:?}");
    assert!(s.submitted > 0 && s.transfers > 0, "{s:?}");
}

/// Run `qbind-node` with `args`, killing it after 120 s; exit code, stdout
/// and stderr.
fn qbind_node(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qbind-node"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run qbind-node");
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("qbind-node did not stop in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        readers.0.join().expect("stdout reader"),
        readers.1.join().expect("stderr reader"),
    )
}

/// The operator's workflow: a node prints the trust anchor of every snapshot
/// it writes; fast sync needs one (and refuses a malformed one), and
/// restores with the printed one.
#[test]
fn fast_sync_needs_the_trust_anchor_the_node_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let os = |s: &str| std::ffi::OsString::from(s);
    let data = dir.path().join("data").into_os_string();
    let snaps = dir.path().join("snaps").into_os_string();
    let base = [
        os("--local-validators"),
        os("1"),
        os("--base-timeout-ms"),
        os("300"),
        os("--tx-interval-ms"),
        os("5"),
    ];
    let run = |extra: &[std::ffi::OsString]| {
        let args: Vec<&std::ffi::OsStr> = base
            .iter()
            .chain(extra)
            .map(std::ffi::OsString::as_os_str)
            .collect();
        qbind_node(&args)
    };
    let (code, _, stderr) = run(&[
        os("--data-dir"),
        data,
        os("--blocks"),
        os("12"),
        os("--snapshot-dir"),
        snaps,
        os("--snapshot-interval"),
        os("10"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("trust anchor"))
        .unwrap_or_else(|| panic!("no trust anchor printed: {stderr}"));
    let anchor = line
        .split("trust anchor ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("anchor text");
    let height = anchor.split(':').next().expect("height");
    let snapshot = dir
        .path()
        .join("snaps")
        .join("validator-0")
        .join(height)
        .into_os_string();
    let fresh = dir.path().join("fresh").into_os_string();
    // No anchor, a malformed one, an anchor without a snapshot: usage errors.
    for extra in [
        vec![os("--fast-sync-snapshot-dir"), snapshot.clone()],
        vec![
            os("--fast-sync-snapshot-dir"),
            snapshot.clone(),
            os("--trusted-snapshot-anchor"),
            os("10:00:00"),
        ],
        vec![os("--trusted-snapshot-anchor"), os(anchor)],
    ] {
        let mut args = vec![os("--data-dir"), fresh.clone(), os("--blocks"), os("2")];
        args.extend(extra);
        let (code, _, stderr) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--trusted-snapshot-anchor")
                || stderr.contains("--fast-sync-snapshot-dir"),
            "{stderr}"
        );
    }
    assert!(!Path::new(&fresh).join("validator-0").exists());
    let (code, stdout, stderr) = run(&[
        os("--data-dir"),
        fresh,
        os("--blocks"),
        os("2"),
        os("--fast-sync-snapshot-dir"),
        snapshot,
        os("--trusted-snapshot-anchor"),
        os(anchor),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("fast sync from snapshot at height {height}")),
        "{stdout}"
    );
}

/// `--log-format json`: every stderr line is one JSON object, and each
/// committed block is logged with the validator, height and view as fields.
#[test]
fn json_logs_carry_validator_height_and_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let os = std::ffi::OsStr::new;
    let (code, _out, err) = qbind_node(&[
        os("--data-dir"),
        data.as_os_str(),
        os("--blocks"),
        os("6"),
        os("--log-format"),
        os("json"),
        os("--log-level"),
        os("info"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let mut committed = 0;
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
        if v.get("message").and_then(|m| m.as_str()) == Some("committed") {
            for field in ["validator", "height", "view", "proposer"] {
                assert!(v.get(field).is_some(), "no {field}: {line}");
            }
            committed += 1;
        }
    }
    // Four validators, at least six blocks each.
    assert!(committed >= 24, "{committed} committed lines in:\n{err}");
    // A level that does not exist is a usage error.
    let (code, _, err) = qbind_node(&[os("--log-level"), os("loud")]);
    assert_eq!(code, Some(2), "{err}");
}
