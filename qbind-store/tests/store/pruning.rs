//! Pruning: bounded steps delete exactly the block bodies and QCs below the
//! floor, and the on-disk size falls after compaction.

use std::sync::Arc;

use qbind_core::traits::{MemoryBackend, Namespace, StateRead};
use qbind_store::metrics::StoreMetrics;
use qbind_store::prune::{Pruner, RetentionMode};
use qbind_store::workload::{Workload, block_key, qc_key};
use qbind_store::{FjallBackend, PersistentBackend};

#[test]
fn archival_keeps_everything_and_height_mode_keeps_the_last_n() {
    let store = MemoryBackend::new();
    let w = Workload::default();
    for h in 1..=100 {
        w.commit(&store, h).unwrap();
    }
    let metrics = Arc::new(StoreMetrics::default());
    let archival = Pruner::new(RetentionMode::Archival, 10, Arc::clone(&metrics));
    assert_eq!(archival.prune_all(&store).unwrap(), 0);
    assert_eq!(
        store
            .scan_prefix(Namespace::Blocks, b"c", usize::MAX)
            .unwrap()
            .len(),
        100
    );

    let pruner = Pruner::new(
        RetentionMode::Height { retain_height: 30 },
        10,
        Arc::clone(&metrics),
    );
    let first = pruner.step(&store).unwrap();
    assert_eq!(first.deleted_keys, 8, "a step is bounded");
    assert!(!first.done);
    pruner.prune_all(&store).unwrap();
    let blocks = store
        .scan_prefix(Namespace::Blocks, b"c", usize::MAX)
        .unwrap();
    assert_eq!(blocks.first().unwrap().0, block_key(71));
    assert_eq!(blocks.len(), 30);
    let qcs = store
        .scan_prefix(Namespace::QuorumCerts, b"", usize::MAX)
        .unwrap();
    assert_eq!(qcs.first().unwrap().0, qc_key(71));
    assert_eq!(qcs.len(), 30);
    // Accounts are untouched.
    let accounts = store
        .scan_prefix(Namespace::Accounts, b"", usize::MAX)
        .unwrap();
    assert_eq!(accounts.len(), w.ledger_at(100).unwrap().len());
    let m = metrics.read();
    assert_eq!(m.prune_deleted_keys, 140);
    assert_eq!(m.prune_retained_height, 71);
    assert!(m.prune_runs >= 14);
    // More commits move the floor on.
    for h in 101..=110 {
        w.commit(&store, h).unwrap();
    }
    assert_eq!(pruner.prune_all(&store).unwrap(), 20);
    assert_eq!(Pruner::current_floor(&store).unwrap(), 81);
}

fn size_falls<B: PersistentBackend>() {
    let dir = tempfile::tempdir().unwrap();
    let store = B::open_dir(&dir.path().join("db")).unwrap();
    let w = Workload {
        body_len: 8 * 1024,
        ..Workload::default()
    };
    for h in 1..=1_500 {
        w.commit(&store, h).unwrap();
    }
    store.compact().unwrap();
    let before = store.disk_space().unwrap();
    let metrics = Arc::new(StoreMetrics::default());
    let pruner = Pruner::new(
        RetentionMode::Height { retain_height: 100 },
        500,
        Arc::clone(&metrics),
    );
    pruner.prune_all(&store).unwrap();
    store.compact().unwrap();
    let after = store.disk_space().unwrap();
    metrics.set_state_size(after);
    let pruned = metrics.read().prune_deleted_bytes;
    eprintln!(
        "{}: {before} bytes on disk before pruning, {after} after; {pruned} bytes of entries pruned",
        B::KIND
    );
    // The pruned bodies are incompressible, so at least most of their bytes
    // must come back (fjall keeps a journal of up to 64 MB that is recycled
    // only when it rotates, which the test does not reach).
    assert!(
        before.saturating_sub(after) >= pruned * 3 / 4,
        "{}: {before} -> {after}, pruned {pruned}",
        B::KIND
    );
    assert_eq!(metrics.read().prune_deleted_keys, 2 * 1_400);
    assert!(
        store
            .get(Namespace::Blocks, &block_key(1_401))
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get(Namespace::Blocks, &block_key(1_400))
            .unwrap()
            .is_none()
    );
}

#[test]
fn fjall_disk_size_falls_after_pruning() {
    size_falls::<FjallBackend>();
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_disk_size_falls_after_pruning() {
    size_falls::<qbind_store::RocksDbBackend>();
}

/// With snapshots, blocks from the newest snapshot's height up are kept
/// (they prove it to state-sync clients), whatever the retention asks; a
/// newer snapshot lets the floor move on.
#[test]
fn the_newest_snapshot_holds_the_floor() {
    use crate::snapshots::{config, raw_hash, store_at};
    let dir = tempfile::tempdir().unwrap();
    let store: FjallBackend = store_at(&dir.path().join("db"), 50);
    let cfg = config(&dir.path().join("snapshots"), 5);
    let metrics = Arc::new(StoreMetrics::default());
    qbind_store::snapshot::create_snapshot(&store, &cfg, 0, &raw_hash, &metrics).unwrap();
    let store: FjallBackend = {
        drop(store);
        store_at(&dir.path().join("db"), 100)
    };
    let pruner = Pruner::new(RetentionMode::Height { retain_height: 10 }, 10, metrics)
        .keeping_newest_snapshot(cfg.snapshot_dir.clone());
    pruner.prune_all(&store).unwrap();
    assert_eq!(Pruner::current_floor(&store).unwrap(), 50);
    let blocks = store
        .scan_prefix(Namespace::Blocks, b"c", usize::MAX)
        .unwrap();
    assert_eq!(blocks.first().unwrap().0, block_key(50));
    // A snapshot at 100: the retention's floor (91) applies again.
    qbind_store::snapshot::create_snapshot(&store, &cfg, 0, &raw_hash, &StoreMetrics::default())
        .unwrap();
    pruner.prune_all(&store).unwrap();
    assert_eq!(Pruner::current_floor(&store).unwrap(), 91);
}

/// A committed DAG block at `height` ordering one batch with digest
/// `[height; 32]` (the pruner only decodes it, nothing is verified).
fn dag_block(height: u8) -> qbind_core::consensus::Block {
    use qbind_core::consensus::{Block, BlockHeader, Payload};
    use qbind_core::dag::{BatchCertificate, BatchRef};
    use qbind_core::quorum::SignerBitmap;
    use qbind_core::types::{Epoch, Hash32, Height, ValidatorId, View};
    let genesis = Block::genesis(qbind_core::types::ChainId(1));
    let header = BlockHeader {
        epoch: Epoch(0),
        view: View(u64::from(height)),
        height: Height(u64::from(height)),
        parent_id: genesis.id(),
        justify_view: View(0),
        proposer: ValidatorId(0),
        payload_digest: Hash32::ZERO,
        batch_commitment: Hash32::ZERO,
        exec_height: Height(0),
        exec_state_root: Hash32::ZERO,
    };
    let cert = BatchCertificate {
        batch: BatchRef {
            epoch: Epoch(0),
            author: ValidatorId(1),
            round: u64::from(height),
            digest: Hash32([height; 32]),
        },
        signers: SignerBitmap::new(4),
        signatures: Vec::new(),
    };
    Block::new(
        header,
        genesis.justify().clone(),
        Payload::Batches(vec![cert]),
    )
}

#[test]
fn archived_batch_data_is_deleted_with_its_block() {
    use qbind_core::codec::Encode;
    use qbind_core::schema::committed_batch_key;
    use qbind_core::traits::{Durability, StateBackend, WriteBatch};
    use qbind_core::types::Hash32;
    let store = MemoryBackend::new();
    let mut batch = WriteBatch::new();
    for h in 1..=40u8 {
        batch.put(
            Namespace::Blocks,
            block_key(u64::from(h)),
            dag_block(h).to_bytes(),
        );
        batch.put(Namespace::QuorumCerts, qc_key(u64::from(h)), vec![h]);
        batch.put(
            Namespace::Blocks,
            committed_batch_key(&Hash32([h; 32])),
            vec![h],
        );
    }
    // Archived data no stored block names (not ours to judge): kept.
    batch.put(
        Namespace::Blocks,
        committed_batch_key(&Hash32([200; 32])),
        vec![0],
    );
    batch.put(
        Namespace::Meta,
        qbind_core::schema::COMMITTED_HEIGHT_KEY.to_vec(),
        40u64.to_bytes(),
    );
    store.write(batch, Durability::Durable).unwrap();

    let pruner = Pruner::new(
        RetentionMode::Height { retain_height: 10 },
        8,
        Arc::new(StoreMetrics::default()),
    );
    pruner.prune_all(&store).unwrap();
    let archived: Vec<u8> = store
        .scan_prefix(Namespace::Blocks, b"d", usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k[1])
        .collect();
    let mut expected: Vec<u8> = (31..=40).collect();
    expected.push(200);
    assert_eq!(archived, expected);
}

/// A batch whose block a block retention shorter than the DAG layer's
/// margin already pruned is not archived (nothing would ever delete it);
/// one whose block is stored is.
#[test]
fn a_batch_whose_block_is_gone_is_not_archived() {
    use qbind_core::codec::Encode;
    use qbind_core::crypto::KeyPair;
    use qbind_core::dag::{ArchivedBatch, Batch, SignedBatch};
    use qbind_core::schema::{archive_batches_batch, committed_batch_key, read_batch};
    use qbind_core::signing::{SignKind, sign_domain};
    use qbind_core::traits::{Durability, StateBackend, WriteBatch};
    use qbind_core::types::{Epoch, Height, NetworkEnvironment, ValidatorId};
    let key = KeyPair::from_seed(&[7; 32]);
    let signed = |round: u64| {
        let batch = Batch {
            epoch: Epoch(0),
            author: ValidatorId(1),
            round,
            txs: vec![vec![round as u8; 10]],
        };
        let signature = sign_domain(
            &key,
            NetworkEnvironment::Devnet,
            SignKind::Batch,
            &batch.digest().to_bytes(),
        );
        SignedBatch { batch, signature }
    };
    let store = MemoryBackend::new();
    let mut blocks = WriteBatch::new();
    blocks.put(Namespace::Blocks, block_key(5), dag_block(5).to_bytes());
    store.write(blocks, Durability::Durable).unwrap();
    let archived: Vec<ArchivedBatch> = [(3, signed(3)), (5, signed(5)), (5, signed(6))]
        .into_iter()
        .map(|(h, sb)| ArchivedBatch {
            height: Height(h),
            digest: sb.batch.digest(),
            batch: sb,
        })
        .collect();
    let write = archive_batches_batch(&store, &archived).unwrap();
    store.write(write, Durability::Buffered).unwrap();
    assert!(
        store
            .get(Namespace::Blocks, &committed_batch_key(&archived[0].digest))
            .unwrap()
            .is_none()
    );
    for a in &archived[1..] {
        assert_eq!(
            read_batch(&store, &a.digest).unwrap(),
            Some(a.batch.clone())
        );
    }
}
