//! State sync on the store side (issue #18): a snapshot served in chunks,
//! every page verified by `qbind_core::state_sync::ChunkVerifier` and sent
//! through its wire encoding, staged, finished into a snapshot and restored
//! with the certified trust anchor — the restored store has the served
//! state. Dishonest pages (an altered balance, a dropped, injected or
//! foreign account, a reordered or truncated chunk) and forged manifests
//! are refused, and discarding the failed chunk lets an honest retry
//! complete. A server never writes the snapshot it serves; a staging left
//! by a crash is found and removed.

use std::path::{Path, PathBuf};
use std::process::Command;

use qbind_core::codec::Encode;
use qbind_core::consensus::{Block, BlockHeader, Payload, QuorumCert};
use qbind_core::execution::{Account, AccountReader, BackendAccounts};
use qbind_core::schema::{
    EPOCH_FEES_KEY, EXECUTED_HEIGHT_KEY, MONETARY_STATE_KEY, STATE_SUMMARY_KEY, commit_batch,
    load_persisted, monetary_epoch_key, put_height,
};
use qbind_core::state_sync::{
    CertifiedState, ChunkVerifier, MAX_PAGE_ACCOUNTS, PageVerdict, StateManifest, StatePage,
    StateSyncError, chunk_of, chunk_start, decode, is_consensus_monetary_key,
    monetary_records_digest,
};
use qbind_core::traits::{Durability, KeyValues, Namespace, StateRead};
use qbind_core::types::{AccountId, Epoch, Hash32, Height, ValidatorId, View};
use qbind_store::metrics::StoreMetrics;
use qbind_store::snapshot::{
    SnapshotError, SnapshotMeta, TrustAnchor, checksum_state_dir, create_snapshot,
    interrupted_restores, qbind_block_id, read_meta, restore_snapshot, verify_files,
};
use qbind_store::state_sync::{
    SnapshotServer, StateSyncStaging, StateSyncStoreError, interrupted_state_syncs,
    newest_snapshot, remove_interrupted_state_syncs, trust_anchor,
};
use qbind_store::workload::{Workload, committed_height, executed_height};
use qbind_store::{FjallBackend, PersistentBackend};

use crate::snapshots::{CHAIN, config, raw_hash, store_at};

/// Enough accounts for four chunks (`prefix_bits` 2) of about 2,500.
const ACCOUNTS: u64 = 10_000;
const HEIGHT: u64 = 5;
const EPOCH: u64 = 2;
/// Accounts per page asked for: every chunk spans several pages.
const PAGE_MAX: u32 = 500;

fn workload() -> Workload {
    Workload {
        accounts: ACCOUNTS,
        updates_per_block: 200,
        body_len: 0,
    }
}

/// The protocol block committed at `height` (its id is what the commit
/// proof certifies).
fn block_at(height: u64) -> Block {
    let parent = Hash32::digest(b"state sync test parent");
    let header = BlockHeader {
        epoch: Epoch(EPOCH),
        view: View(height + 3),
        height: Height(height),
        parent_id: parent,
        justify_view: View(0),
        proposer: ValidatorId(1),
        payload_digest: Hash32::ZERO,
        batch_commitment: Hash32::ZERO,
        exec_height: Height(height - 1),
        exec_state_root: Hash32::ZERO,
    };
    Block::new(header, QuorumCert::genesis(parent), Payload::empty())
}

/// The monetary records of the source store, keys ascending.
fn monetary_records() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut records = vec![
        (
            MONETARY_STATE_KEY.to_vec(),
            b"latest monetary state".to_vec(),
        ),
        (monetary_epoch_key(1), b"epoch 1 state".to_vec()),
        (monetary_epoch_key(2), b"epoch 2 state".to_vec()),
        (EPOCH_FEES_KEY.to_vec(), 1234u128.to_be_bytes().to_vec()),
    ];
    records.sort();
    records
}

/// The id after `id` (as a 256-bit big-endian number).
fn next_id(id: AccountId) -> AccountId {
    let mut out = id;
    for byte in out.0.iter_mut().rev() {
        let (b, carry) = byte.overflowing_add(1);
        *byte = b;
        if !carry {
            break;
        }
    }
    out
}

/// A store at `HEIGHT`: a genesis credit of `ACCOUNTS` accounts, transfers
/// in blocks 2..=HEIGHT, the protocol block at `HEIGHT` committed, both
/// height markers at `HEIGHT`, and monetary records.
fn source_store<B: PersistentBackend>(path: &Path) -> (B, Block) {
    let store = B::open_dir(path).unwrap();
    let w = workload();
    for h in 1..=HEIGHT {
        let t = w.transition(&BackendAccounts::new(&store), h).unwrap();
        store
            .write(t.to_write_batch(), Durability::Durable)
            .unwrap();
    }
    let block = block_at(HEIGHT);
    let mut batch = commit_batch(&block);
    put_height(&mut batch, EXECUTED_HEIGHT_KEY, Height(HEIGHT));
    for (k, v) in monetary_records() {
        batch.put(Namespace::Monetary, k, v);
    }
    // The summary commits to the two records execution reads.
    let mut summary = BackendAccounts::new(&store).summary().unwrap();
    summary.monetary = monetary_records_digest(&monetary_records()).unwrap();
    batch.put(
        Namespace::Meta,
        STATE_SUMMARY_KEY.to_vec(),
        summary.to_bytes(),
    );
    store.write(batch, Durability::Durable).unwrap();
    (store, block)
}

/// The monetary records a manifest carries and a synced store holds: the
/// two execution reads (not the per-epoch history).
fn consensus_monetary_records() -> Vec<(Vec<u8>, Vec<u8>)> {
    monetary_records()
        .into_iter()
        .filter(|(k, _)| is_consensus_monetary_key(k))
        .collect()
}

/// What the commit proof of the snapshot's height would certify (the
/// tests take it from the snapshot they wrote).
fn certified_of(meta: &SnapshotMeta) -> CertifiedState {
    let anchor = TrustAnchor::of(meta).unwrap();
    CertifiedState {
        height: Height(meta.height),
        block_id: Hash32(anchor.block_hash),
        state_root: Hash32(anchor.state_root),
        epoch: Epoch(meta.epoch),
        key_log: qbind_core::system_tx::EMPTY_KEY_LOG,
    }
}

struct Fixture<B: PersistentBackend> {
    root: tempfile::TempDir,
    source: B,
    block: Block,
    snap: PathBuf,
    meta: SnapshotMeta,
}

impl<B: PersistentBackend> Fixture<B> {
    fn new() -> Self {
        Self::build(false)
    }

    /// With `lagging`, the block above `HEIGHT` is committed but not
    /// executed when the snapshot is taken: its state is `HEIGHT`'s.
    fn build(lagging: bool) -> Self {
        let root = tempfile::tempdir().unwrap();
        let (source, block) = source_store::<B>(&root.path().join("source-db"));
        if lagging {
            let next = commit_batch(&block_at(HEIGHT + 1));
            source.write(next, Durability::Durable).unwrap();
        }
        let cfg = config(&root.path().join("snapshots"), 5);
        let meta = create_snapshot(
            &source,
            &cfg,
            EPOCH,
            &qbind_block_id,
            &StoreMetrics::default(),
        )
        .unwrap();
        let snap = newest_snapshot(&cfg.snapshot_dir).unwrap().unwrap();
        assert_eq!(snap, cfg.snapshot_dir.join(meta.height.to_string()));
        assert_eq!(meta.executed_height, HEIGHT);
        Fixture {
            root,
            source,
            block,
            snap,
            meta,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("node").join("validator-0")
    }

    fn synced_snapshots(&self) -> PathBuf {
        self.root.path().join("node").join("snapshots")
    }
}

/// A peer answering page requests, honestly or not.
type Peer<'a> = dyn FnMut(u32, Option<AccountId>) -> StatePage + 'a;

/// The client's loop for one chunk: ask for the page after the verifier's
/// position, decode it from its wire bytes, verify it, stage it; stop at
/// the first refused page (what was staged before it stays staged).
fn fetch_chunk<B: PersistentBackend>(
    peer: &mut Peer<'_>,
    manifest: &StateManifest,
    chunk: u32,
    staging: &mut StateSyncStaging<B>,
) -> Result<u32, StateSyncError> {
    let mut verifier = ChunkVerifier::new(manifest, chunk)?;
    let mut pages = 0;
    loop {
        let page: StatePage = decode("state page", &peer(chunk, verifier.after()).to_bytes())?;
        let verdict = verifier.feed(&page)?;
        staging.put_page(&page).unwrap();
        pages += 1;
        if verdict == PageVerdict::Complete {
            return Ok(pages);
        }
    }
}

fn honest<B: PersistentBackend>(
    server: &SnapshotServer<B>,
) -> impl FnMut(u32, Option<AccountId>) -> StatePage + '_ {
    |chunk, after| server.page(chunk, after, PAGE_MAX).unwrap()
}

/// A peer that serves `server`'s pages with `tamper` applied to the
/// `nth` page of each chunk it is asked for.
fn tampering<'a, B: PersistentBackend>(
    server: &'a SnapshotServer<B>,
    nth: u32,
    tamper: impl Fn(&mut StatePage) + 'a,
) -> impl FnMut(u32, Option<AccountId>) -> StatePage + 'a {
    let mut asked = 0u32;
    move |chunk, after| {
        let mut page = server.page(chunk, after, PAGE_MAX).unwrap();
        if asked == nth {
            tamper(&mut page);
        }
        asked += 1;
        page
    }
}

fn all(store: &dyn StateRead, ns: Namespace) -> KeyValues {
    store.scan_prefix(ns, &[], usize::MAX).unwrap()
}

/// No on-chain key rotation: the key log of the manifest's height is empty.
fn empty_log(manifest: &StateManifest) -> qbind_core::state_sync::KeyLog {
    qbind_core::state_sync::KeyLog {
        height: manifest.height,
        records: Vec::new(),
    }
}

/// Finish `staging`, restore the snapshot with the certified anchor and
/// check the restored store holds the source's state.
fn finish_and_restore<B: PersistentBackend>(
    f: &Fixture<B>,
    staging: StateSyncStaging<B>,
    manifest: &StateManifest,
    certified: &CertifiedState,
) {
    let staging_dir = staging.path().to_path_buf();
    let synced = staging
        .finish(
            manifest,
            &f.block,
            certified,
            &empty_log(manifest),
            CHAIN,
            &f.synced_snapshots(),
        )
        .unwrap();
    assert_eq!(synced, f.synced_snapshots().join(HEIGHT.to_string()));
    assert!(
        !staging_dir.exists(),
        "the staging directory was left behind"
    );
    let (restored, meta) = restore_snapshot::<B>(
        &synced,
        CHAIN,
        &trust_anchor(certified),
        &f.data_dir(),
        &qbind_block_id,
    )
    .unwrap();
    assert_eq!((meta.height, meta.epoch), (HEIGHT, EPOCH));
    assert_eq!(meta.state_root, f.meta.state_root);
    assert_eq!(meta.block_hash, hex::encode(f.block.id().0));
    let summary = BackendAccounts::new(&restored).summary().unwrap();
    assert_eq!(summary.root(), certified.state_root);
    assert_eq!(summary, BackendAccounts::new(&f.source).summary().unwrap());
    assert_eq!(
        all(&restored, Namespace::Accounts),
        all(&f.source, Namespace::Accounts)
    );
    assert_eq!(
        all(&restored, Namespace::Monetary),
        consensus_monetary_records()
    );
    // What a node starts from: both markers, the committed block and its QC.
    assert_eq!(committed_height(&restored).unwrap(), HEIGHT);
    assert_eq!(executed_height(&restored).unwrap(), HEIGHT);
    let persisted = load_persisted(&restored, qbind_core::schema::Window::count(16)).unwrap();
    assert_eq!(persisted.committed, vec![f.block.clone()]);
    assert_eq!(persisted.executed, Height(HEIGHT));
    assert_eq!(
        restored
            .get(Namespace::QuorumCerts, &HEIGHT.to_be_bytes())
            .unwrap(),
        Some(f.block.justify().to_bytes())
    );
    // The next block executes on it exactly as on the source.
    let next = |s: &B| {
        workload()
            .transition(&BackendAccounts::new(s), HEIGHT + 1)
            .unwrap()
            .root()
    };
    assert_eq!(next(&restored), next(&f.source));
    assert!(interrupted_state_syncs(&f.data_dir()).unwrap().is_empty());
    assert!(interrupted_restores(&f.data_dir()).unwrap().is_empty());
}

fn round_trip<B: PersistentBackend>() {
    let f = Fixture::<B>::new();
    let files_before = checksum_state_dir(&f.snap.join("state")).unwrap();
    let server = SnapshotServer::<B>::open(&f.snap, CHAIN).unwrap();
    // The manifest crosses the wire and holds to the certified state.
    let manifest: StateManifest = decode("state manifest", &server.manifest().to_bytes()).unwrap();
    assert_eq!(&manifest, server.manifest());
    let certified = certified_of(&f.meta);
    manifest.check(&certified).unwrap();
    assert_eq!(manifest.prefix_bits, 2);
    assert_eq!(manifest.summary.accounts, ACCOUNTS);
    assert_eq!(manifest.monetary, consensus_monetary_records());

    let mut staging = StateSyncStaging::<B>::create(&f.data_dir()).unwrap();
    assert_eq!(staging.incomplete_chunks(&manifest), vec![0, 1, 2, 3]);
    let mut peer = honest(&server);
    for chunk in 0..manifest.chunks.len() as u32 {
        let pages = fetch_chunk(&mut peer, &manifest, chunk, &mut staging).unwrap();
        assert!(pages > 1, "chunk {chunk} fit in one page of {PAGE_MAX}");
    }
    assert!(staging.incomplete_chunks(&manifest).is_empty());
    drop(peer);
    drop(server);
    finish_and_restore(&f, staging, &manifest, &certified);
    // Serving never wrote the snapshot, and its private copy is gone.
    verify_files(&f.snap, CHAIN, B::KIND).unwrap();
    assert_eq!(
        checksum_state_dir(&f.snap.join("state")).unwrap(),
        files_before
    );
    let parent = f.snap.parent().unwrap();
    let names: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![HEIGHT.to_string()]);
}

#[test]
fn fjall_state_sync_round_trip_restores_the_served_state() {
    round_trip::<FjallBackend>();
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_state_sync_round_trip_restores_the_served_state() {
    round_trip::<qbind_store::RocksDbBackend>();
}

#[test]
fn a_snapshot_whose_execution_lagged_is_served_at_its_executed_height() {
    let f = Fixture::<FjallBackend>::build(true);
    assert_eq!(
        (f.meta.height, f.meta.executed_height),
        (HEIGHT + 1, HEIGHT)
    );
    let server = SnapshotServer::<FjallBackend>::open(&f.snap, CHAIN).unwrap();
    let manifest = server.manifest().clone();
    assert_eq!(
        (manifest.height, manifest.block_id),
        (Height(HEIGHT), f.block.id())
    );
    // What a commit proof of `HEIGHT` certifies: a later header reports
    // the root of the state after executing it.
    let certified = CertifiedState {
        height: Height(HEIGHT),
        block_id: f.block.id(),
        state_root: Hash32(TrustAnchor::of(&f.meta).unwrap().state_root),
        epoch: Epoch(EPOCH),
        key_log: qbind_core::system_tx::EMPTY_KEY_LOG,
    };
    manifest.check(&certified).unwrap();
    let mut staging = StateSyncStaging::<FjallBackend>::create(&f.data_dir()).unwrap();
    let mut peer = honest(&server);
    for chunk in 0..manifest.chunks.len() as u32 {
        fetch_chunk(&mut peer, &manifest, chunk, &mut staging).unwrap();
    }
    finish_and_restore(&f, staging, &manifest, &certified);
}

fn is_page_error(e: &StateSyncError, chunk: u32, what: &str) -> bool {
    matches!(e, StateSyncError::Page { chunk: c, why } if *c == chunk && why.contains(what))
}

/// The chunk the dishonest peers of `refused_pages_are_discarded` attack.
const ATTACKED: u32 = 1;
/// The chunk layout of `ACCOUNTS` accounts.
const BITS: u8 = 2;

/// The refusal a dishonest answer must meet.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// At the chunk's last page: this total differs from the manifest's.
    Mismatch(&'static str),
    /// At the altered page: the page error says this.
    Page(&'static str),
}

/// A dishonest answer for chunk `ATTACKED`: which of its pages is altered,
/// how, and the refusal it must meet.
struct Attack {
    name: &'static str,
    nth: u32,
    tamper: fn(&mut StatePage),
    refusal: Refusal,
}

const ATTACKS: [Attack; 7] = [
    Attack {
        name: "altered balance",
        nth: 0,
        tamper: |p| p.accounts[3].1.balance += 1,
        refusal: Refusal::Mismatch("balance total"),
    },
    Attack {
        name: "dropped account",
        nth: 0,
        tamper: |p| {
            p.accounts.remove(3);
        },
        refusal: Refusal::Mismatch("account count"),
    },
    Attack {
        name: "injected account",
        nth: 0,
        tamper: |p| {
            let id = next_id(p.accounts[3].0);
            assert!(id < p.accounts[4].0);
            let account = Account {
                nonce: 0,
                balance: 77,
            };
            p.accounts.insert(4, (id, account));
        },
        refusal: Refusal::Page("more accounts than the manifest's"),
    },
    Attack {
        name: "replaced account",
        nth: 1,
        tamper: |p| {
            let id = next_id(p.accounts[3].0);
            assert!(id < p.accounts[4].0);
            p.accounts[3].0 = id;
        },
        refusal: Refusal::Mismatch("accumulator sum"),
    },
    Attack {
        name: "account of another chunk",
        nth: 1,
        tamper: |p| {
            let mut foreign = chunk_start(ATTACKED + 1, BITS);
            foreign.0[31] = 1;
            let account = Account {
                nonce: 1,
                balance: 1,
            };
            p.accounts.push((foreign, account));
        },
        refusal: Refusal::Page("belongs to another chunk"),
    },
    Attack {
        name: "reordered page",
        nth: 2,
        tamper: |p| p.accounts.swap(1, 2),
        refusal: Refusal::Page("out of order"),
    },
    Attack {
        name: "chunk cut short",
        nth: 1,
        tamper: |p| p.last = true,
        refusal: Refusal::Mismatch("account count"),
    },
];

fn refused_pages_are_discarded<B: PersistentBackend>() {
    let f = Fixture::<B>::new();
    let server = SnapshotServer::<B>::open(&f.snap, CHAIN).unwrap();
    let manifest = server.manifest().clone();
    let certified = certified_of(&f.meta);
    manifest.check(&certified).unwrap();
    assert_eq!(manifest.prefix_bits, BITS);
    let mut staging = StateSyncStaging::<B>::create(&f.data_dir()).unwrap();

    // Each attack on the chunk, then the chunk is discarded and the next
    // attack (finally an honest peer) starts from scratch.
    for attack in ATTACKS {
        let mut peer = tampering(&server, attack.nth, attack.tamper);
        let err = fetch_chunk(&mut peer, &manifest, ATTACKED, &mut staging).expect_err(attack.name);
        let right = match attack.refusal {
            Refusal::Mismatch(why) => {
                err == StateSyncError::ChunkMismatch {
                    chunk: ATTACKED,
                    why,
                }
            }
            Refusal::Page(what) => is_page_error(&err, ATTACKED, what),
        };
        assert!(
            right,
            "{}: {err}, expected {:?}",
            attack.name, attack.refusal
        );
        assert_eq!(staging.incomplete_chunks(&manifest), vec![0, 1, 2, 3]);
        let deleted = staging.discard_chunk(ATTACKED, BITS).unwrap();
        assert!(
            deleted > 0,
            "{}: nothing was staged before the refusal",
            attack.name
        );
    }
    // An honest server completes the chunk, and the others.
    let mut peer = honest(&server);
    for c in 0..manifest.chunks.len() as u32 {
        fetch_chunk(&mut peer, &manifest, c, &mut staging).unwrap();
    }
    // A chunk index the layout does not have is refused.
    assert!(matches!(
        staging.discard_chunk(4, BITS),
        Err(StateSyncStoreError::ChunkOutOfRange {
            chunk: 4,
            chunks: 4
        })
    ));
    finish_and_restore(&f, staging, &manifest, &certified);
}

#[test]
fn fjall_refused_chunks_are_discarded_and_refetched_from_an_honest_server() {
    refused_pages_are_discarded::<FjallBackend>();
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_refused_chunks_are_discarded_and_refetched_from_an_honest_server() {
    refused_pages_are_discarded::<qbind_store::RocksDbBackend>();
}

#[test]
fn forged_manifests_are_refused_or_fail_on_honest_chunks() {
    let f = Fixture::<FjallBackend>::new();
    let server = SnapshotServer::<FjallBackend>::open(&f.snap, CHAIN).unwrap();
    let honest_manifest = server.manifest().clone();
    let certified = certified_of(&f.meta);
    let bits = honest_manifest.prefix_bits;

    // Refused by `check` outright.
    let refused = |forge: &dyn Fn(&mut StateManifest), what: &str| {
        let mut m = honest_manifest.clone();
        forge(&mut m);
        match m.check(&certified) {
            Err(StateSyncError::Manifest(why)) => assert!(why.contains(what), "{why}"),
            other => panic!("forged manifest ({what}) gave {other:?}"),
        }
    };
    refused(&|m| m.summary.minted += 1, "hashes to");
    refused(&|m| m.height = Height(HEIGHT + 1), "describes height");
    refused(&|m| m.chunks[0].lanes.0[0] ^= 1, "accumulator");
    refused(&|m| m.chunks[2].accounts += 1, "account count");
    refused(&|m| m.chunks[3].balance += 1, "minted minus burned");
    refused(
        &|m| {
            m.prefix_bits = 3;
            m.chunks.extend(m.chunks.clone());
        },
        "expected 2 bits",
    );
    refused(&|m| m.monetary.reverse(), "ascending key order");

    // Shifted between two chunks, the sums still add up: `check` passes,
    // and honest chunks fail against the forged entries.
    let shifted = |shift: &dyn Fn(&mut StateManifest)| {
        let mut m = honest_manifest.clone();
        shift(&mut m);
        m.check(&certified).unwrap();
        m
    };
    let lanes = shifted(&|m| {
        m.chunks[0].lanes.0[7] = m.chunks[0].lanes.0[7].wrapping_add(99);
        m.chunks[1].lanes.0[7] = m.chunks[1].lanes.0[7].wrapping_sub(99);
    });
    let balances = shifted(&|m| {
        m.chunks[2].balance += 5;
        m.chunks[3].balance -= 5;
    });
    let counts = shifted(&|m| {
        m.chunks[0].accounts += 1;
        m.chunks[1].accounts -= 1;
    });
    let mut staging = StateSyncStaging::<FjallBackend>::create(&f.data_dir()).unwrap();
    let mut peer = honest(&server);
    let mut fails = |m: &StateManifest, chunk: u32| {
        let err = fetch_chunk(&mut peer, m, chunk, &mut staging).unwrap_err();
        (err, chunk)
    };
    let (e, c) = fails(&lanes, 0);
    assert_eq!(
        e,
        StateSyncError::ChunkMismatch {
            chunk: c,
            why: "accumulator sum"
        }
    );
    let (e, c) = fails(&lanes, 1);
    assert_eq!(
        e,
        StateSyncError::ChunkMismatch {
            chunk: c,
            why: "accumulator sum"
        }
    );
    let (e, c) = fails(&balances, 2);
    assert_eq!(
        e,
        StateSyncError::ChunkMismatch {
            chunk: c,
            why: "balance total"
        }
    );
    let (e, c) = fails(&counts, 0);
    assert_eq!(
        e,
        StateSyncError::ChunkMismatch {
            chunk: c,
            why: "account count"
        }
    );
    let (e, c) = fails(&counts, 1);
    assert!(
        is_page_error(&e, c, "more accounts than the manifest's"),
        "{e}"
    );
    // The client drops the forged manifests, discards what their chunks
    // staged and syncs against the honest one.
    for c in 0..4 {
        staging.discard_chunk(c, bits).unwrap();
    }
    for c in 0..4 {
        fetch_chunk(&mut peer, &honest_manifest, c, &mut staging).unwrap();
    }
    drop(peer);
    // `finish` holds the manifest to the certified state and the block to
    // the certified block; a refused finish removes its staging.
    let mut other = certified;
    other.state_root = Hash32::digest(b"another root");
    let wrong_block = block_at(HEIGHT + 1);
    for (as_certified, block) in [(&other, &f.block), (&certified, &wrong_block)] {
        let refused = StateSyncStaging::<FjallBackend>::create(&f.data_dir()).unwrap();
        let dir = refused.path().to_path_buf();
        let err = refused
            .finish(
                &honest_manifest,
                block,
                as_certified,
                &empty_log(&honest_manifest),
                CHAIN,
                &f.synced_snapshots(),
            )
            .unwrap_err();
        let right = if block == &f.block {
            matches!(err, StateSyncStoreError::Manifest(_))
        } else {
            matches!(err, StateSyncStoreError::BlockNotCertified { .. })
        };
        assert!(right, "{err}");
        assert!(!dir.exists());
    }
    // And the key log to the certified digest: a rotation the certified
    // state does not commit to, or a log of another height, is refused.
    let added = qbind_core::state_sync::KeyLog {
        height: honest_manifest.height,
        records: vec![(Height(2), crate::snapshots::rotation_record())],
    };
    let mut elsewhere = empty_log(&honest_manifest);
    elsewhere.height = Height(honest_manifest.height.0 + 1);
    for log in [added, elsewhere] {
        let refused = StateSyncStaging::<FjallBackend>::create(&f.data_dir()).unwrap();
        let dir = refused.path().to_path_buf();
        let err = refused
            .finish(
                &honest_manifest,
                &f.block,
                &certified,
                &log,
                CHAIN,
                &f.synced_snapshots(),
            )
            .unwrap_err();
        assert!(
            matches!(err, StateSyncStoreError::KeyLogNotCertified { .. }),
            "{err}"
        );
        assert!(!dir.exists());
    }
    finish_and_restore(&f, staging, &honest_manifest, &certified);
}

#[test]
fn finish_refuses_a_staging_with_a_missing_chunk() {
    let f = Fixture::<FjallBackend>::new();
    let server = SnapshotServer::<FjallBackend>::open(&f.snap, CHAIN).unwrap();
    let manifest = server.manifest().clone();
    let certified = certified_of(&f.meta);
    let mut staging = StateSyncStaging::<FjallBackend>::create(&f.data_dir()).unwrap();
    let mut peer = honest(&server);
    for c in [0, 1, 3] {
        fetch_chunk(&mut peer, &manifest, c, &mut staging).unwrap();
    }
    assert_eq!(staging.incomplete_chunks(&manifest), vec![2]);
    let dir = staging.path().to_path_buf();
    let err = staging
        .finish(
            &manifest,
            &f.block,
            &certified,
            &empty_log(&manifest),
            CHAIN,
            &f.synced_snapshots(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            StateSyncStoreError::ChunkIncomplete {
                chunk: 2,
                staged: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(!dir.exists());
    assert!(newest_snapshot(&f.synced_snapshots()).unwrap().is_none());
}

#[test]
fn server_answers_bounded_pages_and_refuses_bad_requests() {
    let f = Fixture::<FjallBackend>::new();
    let server = SnapshotServer::<FjallBackend>::open(&f.snap, CHAIN).unwrap();
    let m = server.manifest();
    let bits = m.prefix_bits;
    // Private copy beside the snapshot while serving.
    let parent = f.snap.parent().unwrap();
    let copies = || {
        std::fs::read_dir(parent)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".tmp-snapshot-serve-")
            })
            .count()
    };
    assert_eq!(copies(), 1);
    assert_eq!(server.meta(), &f.meta);
    // `max` is clamped to [1, MAX_PAGE_ACCOUNTS].
    let one = server.page(0, None, 0).unwrap();
    assert_eq!((one.accounts.len(), one.last), (1, false));
    let whole = server.page(0, None, u32::MAX).unwrap();
    assert!(whole.accounts.len() <= MAX_PAGE_ACCOUNTS as usize);
    assert_eq!(whole.accounts.len() as u64, m.chunks[0].accounts);
    assert!(whole.last);
    assert_eq!(whole.height, Height(HEIGHT));
    assert!(whole.accounts.iter().all(|(id, _)| chunk_of(id, bits) == 0));
    assert!(whole.accounts.windows(2).all(|w| w[0].0 < w[1].0));
    // After the chunk's last account: an empty last page.
    let (last_id, _) = *whole.accounts.last().unwrap();
    let end = server.page(0, Some(last_id), 10).unwrap();
    assert!(end.accounts.is_empty() && end.last);
    // Exactly the chunk's count: `last` on the page that ends it.
    let n = m.chunks[3].accounts as u32;
    let exact = server.page(3, None, n).unwrap();
    assert_eq!((exact.accounts.len() as u32, exact.last), (n, true));
    let short = server.page(3, None, n - 1).unwrap();
    assert!(!short.last);
    // Requests outside the manifest.
    for chunk in [4, u32::MAX] {
        assert!(matches!(
            server.page(chunk, None, 10),
            Err(StateSyncStoreError::ChunkOutOfRange { chunks: 4, .. })
        ));
    }
    assert!(matches!(
        server.page(1, Some(last_id), 10),
        Err(StateSyncStoreError::AfterOutsideChunk { chunk: 1, .. })
    ));
    drop(server);
    assert_eq!(copies(), 0);
}

#[test]
fn server_refuses_damaged_or_foreign_snapshots() {
    let f = Fixture::<FjallBackend>::new();
    // Another chain.
    assert!(matches!(
        SnapshotServer::<FjallBackend>::open(&f.snap, CHAIN + 1),
        Err(StateSyncStoreError::Snapshot(
            SnapshotError::ChainIdMismatch { .. }
        ))
    ));
    // A flipped byte: refused while copying, no copy left behind.
    let (name, _) = f.meta.files.iter().max_by_key(|(_, c)| c.size).unwrap();
    let file = f.snap.join("state").join(name);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    let err = SnapshotServer::<FjallBackend>::open(&f.snap, CHAIN).unwrap_err();
    assert!(
        matches!(
            err,
            StateSyncStoreError::Snapshot(SnapshotError::ChecksumMismatch { .. })
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(f.snap.parent().unwrap()).unwrap().count(),
        1
    );
    // A stored block that is not a protocol block has no certified id.
    let root = tempfile::tempdir().unwrap();
    let store: FjallBackend = store_at(&root.path().join("db"), 10);
    let cfg = config(&root.path().join("snapshots"), 5);
    create_snapshot(&store, &cfg, 0, &raw_hash, &StoreMetrics::default()).unwrap();
    assert!(matches!(
        SnapshotServer::<FjallBackend>::open(&cfg.snapshot_dir.join("10"), CHAIN),
        Err(StateSyncStoreError::Snapshot(
            SnapshotError::BlockUndecodable { height: 10, .. }
        ))
    ));
    assert_eq!(newest_snapshot(&root.path().join("absent")).unwrap(), None);
    let meta = read_meta(&cfg.snapshot_dir.join("10")).unwrap();
    assert_eq!(meta.height, 10);
}

const CRASH_CHILD_ENV: &str = "QBIND_STATE_SYNC_CRASH_DATA_DIR";

/// Run by `a_staging_left_by_a_crash_is_found_and_removed` in a child
/// process: stage a page, then abort (no destructor runs).
#[test]
fn staging_crash_child() {
    let Some(data) = std::env::var_os(CRASH_CHILD_ENV) else {
        return;
    };
    let mut staging = StateSyncStaging::<FjallBackend>::create(Path::new(&data)).unwrap();
    let page = StatePage {
        height: Height(HEIGHT),
        chunk: 0,
        accounts: vec![(
            AccountId([1; 32]),
            Account {
                nonce: 0,
                balance: 5,
            },
        )],
        last: false,
    };
    staging.put_page(&page).unwrap();
    std::process::abort();
}

#[test]
fn a_staging_left_by_a_crash_is_found_and_removed() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("node").join("validator-0");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "state_sync::staging_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, &data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child did not crash");
    let left = interrupted_state_syncs(&data).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].join("state").is_dir());
    let name = left[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(".validator-0.state-sync-"), "{name}");
    // Not mistaken for a restore's leftovers, nor the data directory.
    assert!(interrupted_restores(&data).unwrap().is_empty());
    assert!(!data.exists());
    assert_eq!(remove_interrupted_state_syncs(&data).unwrap(), 1);
    assert!(interrupted_state_syncs(&data).unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(data.parent().unwrap()).unwrap().count(),
        0
    );
    // A staging dropped without finishing removes itself.
    let staging = StateSyncStaging::<FjallBackend>::create(&data).unwrap();
    let dir = staging.path().to_path_buf();
    assert!(dir.is_dir());
    drop(staging);
    assert!(!dir.exists());
    assert_eq!(remove_interrupted_state_syncs(&data).unwrap(), 0);
}

/// The monetary records execution reads are part of the state commitment:
/// a snapshot whose latest monetary state or epoch fees were changed after
/// the summary was written (its file checksums recomputed) is refused by a
/// server and by a restore, although its accounts are intact.
#[test]
fn altered_monetary_records_are_refused_by_server_and_restore() {
    for key in [MONETARY_STATE_KEY, EPOCH_FEES_KEY] {
        let root = tempfile::tempdir().unwrap();
        let (source, _) = source_store::<FjallBackend>(&root.path().join("source-db"));
        let mut batch = qbind_core::traits::WriteBatch::new();
        batch.put(Namespace::Monetary, key.to_vec(), 99u128.to_bytes());
        qbind_core::traits::StateBackend::write(&source, batch, Durability::Durable).unwrap();
        let cfg = config(&root.path().join("snapshots"), 5);
        let meta = create_snapshot(
            &source,
            &cfg,
            EPOCH,
            &qbind_block_id,
            &StoreMetrics::default(),
        )
        .unwrap();
        let snap = cfg.snapshot_dir.join(meta.height.to_string());
        let err = SnapshotServer::<FjallBackend>::open(&snap, CHAIN).unwrap_err();
        assert!(
            err.to_string().contains("monetary"),
            "{}: {err}",
            String::from_utf8_lossy(key)
        );
        let certified = certified_of(&meta);
        let restored = restore_snapshot::<FjallBackend>(
            &snap,
            CHAIN,
            &trust_anchor(&certified),
            &root.path().join("node").join("validator-0"),
            &qbind_block_id,
        );
        assert!(
            matches!(restored, Err(SnapshotError::MonetaryMismatch)),
            "{:?}",
            restored.err()
        );
    }
}
