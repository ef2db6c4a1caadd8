//! The reference node's local network end to end: four validators with
//! fjall stores commit and execute signed transfers with equal state roots,
//! stop and resume from their stores, write snapshots, prune block history,
//! and one validator is rebuilt from its snapshot (fast sync) and catches up.

use std::path::Path;
use std::time::Duration;

use qbind_core::traits::{Namespace, StateBackend};
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
        },
        fast_sync: None,
        base_timeout_ms: 300,
        executor: qbind_node_ref::local::Executor::StageB,
        network: Network::Memory,
        only: None,
        keys: qbind_node_ref::local::Keys::Devnet,
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
        let mut height_one = vec![qbind_core::engine::COMMITTED_BLOCK_PREFIX];
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
    opts.fast_sync = Some((1, snaps.join("validator-1").join(newest.to_string())));
    let third = run(opts).await;
    assert_agree(&third);
    assert_eq!(
        third.resumed_from[1], newest,
        "validator 1 did not start from its snapshot"
    );
    assert!(third.executed_height[1] >= newest + 10);
    let others = third.executed_height.iter().copied().max().unwrap_or(0);
    assert!(third.executed_height[1] + 5 >= others);
}

/// A network of one validator commits and executes on its own (it used to
/// chain proposals inside one engine step and never commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_validator_commits_and_executes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = options(&dir.path().join("data"), &dir.path().join("snaps"), 15);
    opts.validators = 1;
    opts.maintenance.snapshots = None;
    let s = run(opts).await;
    assert!(s.executed_height[0] >= 15, "{s:?}");
    assert!(s.submitted > 0 && s.transfers > 0, "{s:?}");
}
