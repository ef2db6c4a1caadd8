//! State-sync benchmark (issue #18): one snapshot of N accounts served,
//! verified, staged and restored, each step timed on its own.
//!
//! Builds a state of N accounts (1,000,000 unless the first numeric
//! argument says otherwise) with a protocol block committed at height 1 and
//! a few monetary records, snapshots it, then measures:
//!
//! - (a) server open: the verified private copy of the snapshot and the
//!   manifest built from every account;
//! - (b) serving every page of every chunk (`SnapshotServer::page`, pages of
//!   `MAX_PAGE_ACCOUNTS`);
//! - (c) verifying every page (`ChunkVerifier::feed`);
//! - (d) staging every page, and `finish` (the snapshot of the staged
//!   state);
//! - the restore of that snapshot with the certified anchor
//!   (`restore_snapshot`: copy, checksums, state commitment recomputed);
//!
//! and prints accounts/s and MB/s (56 bytes per account on the wire) for
//! each step and end to end.
//!
//! `cargo bench -p qbind-store --bench state_sync [-- N]` (add
//! `--features rocksdb` with `ROCKSDB_LIB_DIR` for RocksDB too).

use std::path::Path;
use std::time::{Duration, Instant};

use qbind_core::consensus::{Block, BlockHeader, Payload, QuorumCert};
use qbind_core::execution::BackendAccounts;
use qbind_core::schema::{
    EPOCH_FEES_KEY, EXECUTED_HEIGHT_KEY, MONETARY_STATE_KEY, commit_batch, monetary_epoch_key,
    put_height,
};
use qbind_core::state_sync::{
    ACCOUNT_RECORD_BYTES, CertifiedState, ChunkVerifier, MAX_PAGE_ACCOUNTS, PageVerdict, StatePage,
};
use qbind_core::traits::{Durability, Namespace};
use qbind_core::types::{Epoch, Hash32, Height, ValidatorId, View};
use qbind_store::metrics::StoreMetrics;
use qbind_store::snapshot::{
    SnapshotConfig, TrustAnchor, create_snapshot, qbind_block_id, restore_snapshot,
};
use qbind_store::state_sync::{SnapshotServer, StateSyncStaging, trust_anchor};
use qbind_store::workload::Workload;
use qbind_store::{FjallBackend, PersistentBackend};

const CHAIN: u64 = 1;
const HEIGHT: u64 = 1;
const LOAD_CHUNK: u64 = 10_000;

fn block() -> Block {
    let parent = Hash32::digest(b"state sync bench parent");
    let header = BlockHeader {
        epoch: Epoch(0),
        view: View(3),
        height: Height(HEIGHT),
        parent_id: parent,
        justify_view: View(0),
        proposer: ValidatorId(0),
        payload_digest: Hash32::ZERO,
        batch_commitment: Hash32::ZERO,
        exec_height: Height(0),
        exec_state_root: Hash32::ZERO,
    };
    Block::new(header, QuorumCert::genesis(parent), Payload::empty())
}

/// A store of `accounts` accounts at height 1 (a genesis credit loaded in
/// buffered chunks), the block, both markers and three monetary records.
fn build<B: PersistentBackend>(path: &Path, accounts: u64) -> B {
    let store = B::open_dir(path).expect("open");
    let workload = Workload {
        accounts,
        ..Workload::default()
    };
    for chunk in 0..accounts.div_ceil(LOAD_CHUNK) {
        let range = chunk * LOAD_CHUNK..((chunk + 1) * LOAD_CHUNK).min(accounts);
        let t = workload
            .genesis_chunk(&BackendAccounts::new(&store), range)
            .expect("genesis");
        store
            .write(t.to_write_batch(), Durability::Buffered)
            .expect("load");
    }
    let mut batch = commit_batch(&block());
    put_height(&mut batch, EXECUTED_HEIGHT_KEY, Height(HEIGHT));
    batch.put(
        Namespace::Monetary,
        MONETARY_STATE_KEY.to_vec(),
        vec![7; 200],
    );
    batch.put(Namespace::Monetary, monetary_epoch_key(0), vec![8; 200]);
    batch.put(
        Namespace::Monetary,
        EPOCH_FEES_KEY.to_vec(),
        0u128.to_be_bytes().to_vec(),
    );
    // The summary commits to the latest state and the epoch fees.
    let mut summary = qbind_core::execution::AccountReader::summary(&BackendAccounts::new(&store))
        .expect("summary");
    summary.monetary = qbind_core::execution::monetary_digest(Some(&[7; 200]), 0);
    batch.put(
        Namespace::Meta,
        qbind_core::execution::STATE_SUMMARY_KEY.to_vec(),
        qbind_core::codec::Encode::to_bytes(&summary),
    );
    store.write(batch, Durability::Durable).expect("commit");
    store
}

fn vm_hwm_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn report(step: &str, accounts: u64, took: Duration) {
    let s = took.as_secs_f64();
    let mb = (accounts as usize * ACCOUNT_RECORD_BYTES) as f64 / 1e6;
    println!(
        "  {step:<34} {s:>8.3} s {:>12.0} accounts/s {:>8.1} MB/s",
        accounts as f64 / s,
        mb / s
    );
}

fn run<B: PersistentBackend>(accounts: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    println!("{}: {accounts} accounts", B::KIND);
    let t = Instant::now();
    let source = build::<B>(&root.join("source"), accounts);
    println!(
        "  build state                        {:>8.3} s",
        t.elapsed().as_secs_f64()
    );
    let snapshots = root.join("snapshots");
    let t = Instant::now();
    let config = SnapshotConfig {
        snapshot_dir: snapshots.clone(),
        interval_blocks: 0,
        max_snapshots: 1,
        chain_id: CHAIN,
    };
    let meta = create_snapshot(
        &source,
        &config,
        0,
        &qbind_block_id,
        &StoreMetrics::default(),
    )
    .expect("snapshot");
    println!(
        "  create_snapshot                    {:>8.3} s",
        t.elapsed().as_secs_f64()
    );
    drop(source);
    let snap = snapshots.join(meta.height.to_string());
    println!(
        "  snapshot state/ on disk            {:>8.1} MB (what the server copies)",
        qbind_store::fsutil::dir_size(&snap.join("state")).expect("size") as f64 / 1e6
    );
    let anchor = TrustAnchor::of(&meta).expect("anchor");
    let certified = CertifiedState {
        height: Height(meta.height),
        block_id: Hash32(anchor.block_hash),
        state_root: Hash32(anchor.state_root),
        epoch: Epoch(meta.epoch),
        key_log: qbind_core::system_tx::EMPTY_KEY_LOG,
    };

    // (a) The server: verified private copy + manifest.
    let t = Instant::now();
    let server = SnapshotServer::<B>::open(&snap, CHAIN).expect("server");
    let open = t.elapsed();
    let manifest = server.manifest().clone();
    manifest.check(&certified).expect("manifest");
    println!(
        "  manifest: {} chunks ({} bits), {} monetary records",
        manifest.chunks.len(),
        manifest.prefix_bits,
        manifest.monetary.len()
    );
    report("(a) server open (copy + manifest)", accounts, open);

    // (b) Serving every page.
    let t = Instant::now();
    let mut pages: Vec<StatePage> = Vec::new();
    for chunk in 0..manifest.chunks.len() as u32 {
        let mut after = None;
        loop {
            let page = server.page(chunk, after, MAX_PAGE_ACCOUNTS).expect("page");
            after = page.accounts.last().map(|(id, _)| *id);
            let last = page.last;
            pages.push(page);
            if last {
                break;
            }
        }
    }
    let serve = t.elapsed();
    report(&format!("(b) serve {} pages", pages.len()), accounts, serve);
    drop(server);

    // (c) Verifying every page.
    let t = Instant::now();
    let mut served = pages.iter();
    for chunk in 0..manifest.chunks.len() as u32 {
        let mut verifier = ChunkVerifier::new(&manifest, chunk).expect("chunk");
        for page in served.by_ref() {
            if verifier.feed(page).expect("verify") == PageVerdict::Complete {
                break;
            }
        }
        assert!(verifier.is_complete());
    }
    let verify = t.elapsed();
    report("(c) verify every page", accounts, verify);

    // (d) Staging, finish, restore.
    let data = root.join("node").join("data");
    let t = Instant::now();
    let mut staging = StateSyncStaging::<B>::create(&data).expect("staging");
    for page in &pages {
        staging.put_page(page).expect("put");
    }
    let stage = t.elapsed();
    report("(d) stage every page", accounts, stage);
    drop(pages);
    let t = Instant::now();
    let synced = staging
        .finish(
            &manifest,
            &block(),
            &certified,
            &qbind_core::state_sync::KeyLog {
                height: manifest.height,
                records: Vec::new(),
            },
            CHAIN,
            &root.join("node").join("snapshots"),
        )
        .expect("finish");
    let finish = t.elapsed();
    report("(d) finish (summary, snapshot)", accounts, finish);
    let t = Instant::now();
    let (restored, _) = restore_snapshot::<B>(
        &synced,
        CHAIN,
        &trust_anchor(&certified),
        &data,
        &qbind_block_id,
    )
    .expect("restore");
    let restore = t.elapsed();
    report("restore (copy + recompute)", accounts, restore);
    drop(restored);
    let client = serve + verify + stage + finish + restore;
    report("end to end, client (b+c+d+restore)", accounts, client);
    report("end to end, with server open", accounts, open + client);
    println!("  peak RSS so far {:.1} MiB", vm_hwm_mib());
}

fn main() {
    let accounts = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<u64>().ok())
        .unwrap_or(1_000_000);
    println!(
        "state sync: {accounts} accounts, pages of {MAX_PAGE_ACCOUNTS}, {ACCOUNT_RECORD_BYTES} bytes per account on the wire"
    );
    run::<FjallBackend>(accounts);
    #[cfg(feature = "rocksdb")]
    run::<qbind_store::RocksDbBackend>(accounts);
}
