//! State sync's choice among the manifests peers serve (issue #18,
//! docs/sync.md "State sync"): a peer whose manifest holds to the certified
//! root but has its chunk sums shifted between chunks (so honest pages fail
//! against it) is dropped, and the state is fetched with the manifest the
//! other peers serve — one such peer cannot stop a sync.
//!
//! The peers are in-process API servers on 127.0.0.1 serving a state of
//! 9,000 accounts (four chunks) at height 10 of a certified chain.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use qbind_api::{ApiBackend, BackendError, StateSyncReply, StateSyncRequest};
use qbind_core::codec::Encode;
use qbind_core::crypto::KeyPair;
use qbind_core::execution::{
    Account, AccountAccumulator, StateSummary, leaf_element, monetary_digest,
};
use qbind_core::monetary::MONETARY_STATE_KEY;
use qbind_core::schema::EPOCH_FEES_KEY;
use qbind_core::sim::chain;
use qbind_core::state_sync::{CommitProof, KeyLog, StateManifest, StatePage, chunk_of};
use qbind_core::types::{AccountId, Hash32, Height, NetworkEnvironment};
use qbind_node_ref::state_sync::{
    StateSyncOutcome, StateSyncPhase, StateSyncProgress, StateSyncReport, fetch_state,
};
use qbind_node_ref::store::StoreBackend;

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;
const ACCOUNTS: u32 = 9_000;
const HEIGHT: u64 = 10;
const PAGE: usize = 1_000;

/// What a peer serves: the proof, a manifest and the accounts' pages.
struct Served {
    proof: Vec<u8>,
    manifest: Vec<u8>,
    accounts: Arc<Vec<(AccountId, Account)>>,
    prefix_bits: u8,
    /// How long it takes for each page.
    delay: Duration,
    /// The chunk of every page asked of it, in order.
    asked: Arc<Mutex<Vec<u32>>>,
    /// The key log it serves.
    key_log: Vec<u8>,
}

impl ApiBackend for Served {
    state_sync_only_backend!(ENV);

    async fn state_sync(&self, r: StateSyncRequest) -> Result<StateSyncReply, BackendError> {
        Ok(match r {
            StateSyncRequest::Snapshots => StateSyncReply::Heights(vec![HEIGHT]),
            StateSyncRequest::Proof(h) if h.0 == HEIGHT => {
                StateSyncReply::Bytes(self.proof.clone())
            }
            StateSyncRequest::Manifest(h) if h.0 == HEIGHT => {
                StateSyncReply::Bytes(self.manifest.clone())
            }
            StateSyncRequest::KeyLog(h) if h.0 == HEIGHT => {
                StateSyncReply::Bytes(self.key_log.clone())
            }
            StateSyncRequest::Page {
                height,
                chunk,
                after,
            } if height.0 == HEIGHT => {
                self.asked.lock().expect("lock").push(chunk);
                tokio::time::sleep(self.delay).await;
                let rest: Vec<(AccountId, Account)> = self
                    .accounts
                    .iter()
                    .filter(|(id, _)| chunk_of(id, self.prefix_bits) == chunk)
                    .filter(|(id, _)| after.is_none_or(|a| *id > a))
                    .copied()
                    .collect();
                let page = StatePage {
                    height,
                    chunk,
                    last: rest.len() <= PAGE,
                    accounts: rest.into_iter().take(PAGE).collect(),
                };
                StateSyncReply::Bytes(page.to_bytes())
            }
            _ => StateSyncReply::NotServed,
        })
    }
}

/// A certified state of [`ACCOUNTS`] accounts at [`HEIGHT`]: the validator
/// schedule, the proof, the manifest, the accounts and the state root.
struct Fixture {
    schedule: Arc<qbind_core::validator::EpochSchedule>,
    proof: CommitProof,
    manifest: StateManifest,
    accounts: Arc<Vec<(AccountId, Account)>>,
    root: Hash32,
}

fn fixture() -> Fixture {
    // The state: accounts, their summary, the monetary records.
    let latest = vec![1u8, 2, 3];
    let fees = 77u128;
    let mut accounts: Vec<(AccountId, Account)> = (0..ACCOUNTS)
        .map(|i| {
            let id = AccountId(*Hash32::digest(&i.to_be_bytes()).as_bytes());
            (
                id,
                Account {
                    nonce: u64::from(i % 5),
                    balance: 10_000 + u128::from(i),
                },
            )
        })
        .collect();
    accounts.sort();
    let mut summary = StateSummary {
        accumulator: AccountAccumulator::default(),
        accounts: u64::from(ACCOUNTS),
        minted: 0,
        burned: 0,
        monetary: monetary_digest(Some(&latest), fees),
    };
    for (id, a) in &accounts {
        summary.accumulator.add(&leaf_element(id, a));
        summary.minted += a.balance;
    }
    // A chain whose blocks from height 14 on report that state's root for
    // height 10, certified by all four validators.
    let keys: Vec<KeyPair> = (0..4u8)
        .map(|i| KeyPair::from_seed(&[90 + i; 32]))
        .collect();
    let root = summary.root();
    let (schedule, blocks) = chain::certified_chain_reporting(ENV, &keys, 4, 24, |h| {
        (h >= HEIGHT + 4).then_some((Height(HEIGHT), root))
    })
    .expect("chain");
    let proof = CommitProof::build(&blocks[HEIGHT as usize..], &schedule).expect("proof");
    let manifest = StateManifest::build(
        Height(HEIGHT),
        blocks[HEIGHT as usize].id(),
        summary,
        accounts.iter().map(|(i, a)| (i, a)),
        vec![
            (EPOCH_FEES_KEY.to_vec(), fees.to_bytes()),
            (MONETARY_STATE_KEY.to_vec(), latest),
        ],
    )
    .expect("manifest");
    assert_eq!(manifest.chunks.len(), 4);
    Fixture {
        schedule,
        proof,
        manifest,
        accounts: Arc::new(accounts),
        root,
    }
}

impl Fixture {
    /// A peer serving this state with manifest `m`, `delay` per page; its URL.
    fn peer(&self, m: &StateManifest, delay: Duration) -> String {
        self.counted_peer(m, delay).0
    }

    /// [`Fixture::peer`], and the chunk of every page asked of it.
    fn counted_peer(&self, m: &StateManifest, delay: Duration) -> (String, Arc<Mutex<Vec<u32>>>) {
        // No on-chain key rotation in this chain: the empty log.
        let empty = KeyLog {
            height: Height(HEIGHT),
            records: Vec::new(),
        };
        self.peer_with_key_log(m, delay, &empty)
    }

    /// [`Fixture::counted_peer`] serving `log` as its key log.
    fn peer_with_key_log(
        &self,
        m: &StateManifest,
        delay: Duration,
        log: &KeyLog,
    ) -> (String, Arc<Mutex<Vec<u32>>>) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let url = common::serve_api(Served {
            proof: self.proof.to_bytes(),
            manifest: m.to_bytes(),
            accounts: Arc::clone(&self.accounts),
            prefix_bits: self.manifest.prefix_bits,
            delay,
            asked: Arc::clone(&asked),
            key_log: log.to_bytes(),
        });
        (url, asked)
    }

    /// State-sync from `urls` into a new directory; the outcome, its final
    /// figures and the lines printed.
    fn sync(&self, urls: &[String]) -> (StateSyncOutcome, StateSyncReport, Vec<String>) {
        self.sync_watched(urls, &StateSyncProgress::default())
    }

    /// [`Fixture::sync`] reporting to `progress`.
    fn sync_watched(
        &self,
        urls: &[String],
        progress: &StateSyncProgress,
    ) -> (StateSyncOutcome, StateSyncReport, Vec<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let lines = Mutex::new(Vec::<String>::new());
        let out = |l: &str| lines.lock().expect("lock").push(l.to_string());
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let outcome = runtime
            .block_on(fetch_state(
                urls,
                ENV,
                &self.schedule,
                &dir.path().join("store"),
                StoreBackend::Fjall,
                progress,
                &out,
            ))
            .unwrap_or_else(|e| panic!("{e}: {:?}", lines.lock().expect("lock")));
        (
            outcome,
            progress.report(),
            lines.into_inner().expect("lock"),
        )
    }
}

#[test]
fn a_peer_serving_a_shifted_manifest_is_dropped_and_the_sync_completes() {
    let fx = fixture();
    // The same totals, split differently between chunks 0 and 1.
    let mut shifted = fx.manifest.clone();
    shifted.chunks[0].balance = shifted.chunks[0].balance.wrapping_add(1);
    shifted.chunks[1].balance = shifted.chunks[1].balance.wrapping_sub(1);
    let certified = fx.proof.verify(ENV, &fx.schedule).expect("proof verifies");
    assert!(
        shifted.check(&certified).is_ok(),
        "the shift holds to the root"
    );
    // The shifting peer comes first: with one peer for each manifest, its
    // manifest is tried first.
    let urls = vec![
        fx.peer(&shifted, Duration::ZERO),
        fx.peer(&fx.manifest, Duration::ZERO),
    ];
    let (outcome, report, lines) = fx.sync(&urls);
    assert_eq!(report.accounts, u64::from(ACCOUNTS), "{lines:?}");
    assert_eq!(outcome.dropped, vec![urls[0].clone()], "{lines:?}");
    assert_eq!(outcome.anchor.state_root, fx.root.0);
    assert!(
        lines.iter().any(|l| l.contains("2 different manifests")),
        "{lines:?}"
    );
}

/// A peer whose key log does not replay onto the node's keys (here a
/// rotation on a chain without epochs, signed by no validator), or runs to
/// another height, is dropped before its proof is used; the sync completes
/// from the honest peer. Before key logs were fetched, neither was noticed.
#[test]
fn a_peer_serving_a_bad_key_log_is_dropped() {
    use qbind_core::crypto::KeyPair;
    use qbind_core::types::ValidatorId;
    let fx = fixture();
    let (old, new) = (KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[2; 32]));
    let rotation =
        chain::consensus_rotation(ENV, ValidatorId(0), &old, &new, 3, 0, &old).expect("sign");
    let forged = KeyLog {
        height: Height(HEIGHT),
        records: vec![(Height(2), rotation)],
    };
    let elsewhere = KeyLog {
        height: Height(HEIGHT + 1),
        records: Vec::new(),
    };
    let urls = vec![
        fx.peer_with_key_log(&fx.manifest, Duration::ZERO, &forged)
            .0,
        fx.peer_with_key_log(&fx.manifest, Duration::ZERO, &elsewhere)
            .0,
        fx.peer(&fx.manifest, Duration::ZERO),
    ];
    let (outcome, report, lines) = fx.sync(&urls);
    assert_eq!(report.accounts, u64::from(ACCOUNTS), "{lines:?}");
    assert_eq!(outcome.dropped, urls[..2].to_vec(), "{lines:?}");
    assert_eq!(outcome.anchor.state_root, fx.root.0);
    assert!(
        lines.iter().any(|l| l.contains("key log refused")),
        "{lines:?}"
    );
}

/// A peer holding a validator's current key adds a rotation it signed,
/// effective two epochs on, to its key log: the log replays, and the proof's
/// certificates (epoch 0) do not need the rotated key, so the proof
/// verifies with it; but the peer's manifest does not hold to the certified
/// root with that log's digest. The peer is dropped when its proof is
/// chosen and the sync completes from the honest one. Before, the log was
/// tied to the root only at the manifest step, where every honest manifest
/// failed against the forged digest: the honest peers were dropped and the
/// sync failed. (A log that leaves out such a rotation is the same case.)
#[test]
fn a_peer_adding_a_signed_rotation_to_its_key_log_is_dropped() {
    use qbind_core::crypto::KeyPair;
    use qbind_core::types::{Epoch, ValidatorId};
    use qbind_core::validator::EpochSchedule;
    let mut fx = fixture();
    // The same validators in epochs of 1,000 blocks: the chain is in epoch
    // 0, and rotations can be scheduled.
    let set = fx.schedule.set(Epoch(0)).clone();
    fx.schedule = Arc::new(EpochSchedule::with_epochs(1_000, set, Vec::new()));
    let v0 = KeyPair::from_seed(&[90; 32]);
    let new = KeyPair::from_seed(&[7; 32]);
    let rotation =
        chain::consensus_rotation(ENV, ValidatorId(0), &v0, &new, 2, 0, &v0).expect("sign");
    let added = KeyLog {
        height: Height(HEIGHT),
        records: vec![(Height(3), rotation)],
    };
    let urls = vec![
        fx.peer_with_key_log(&fx.manifest, Duration::ZERO, &added).0,
        fx.peer(&fx.manifest, Duration::ZERO),
    ];
    let (outcome, report, lines) = fx.sync(&urls);
    assert_eq!(report.accounts, u64::from(ACCOUNTS), "{lines:?}");
    assert_eq!(outcome.dropped, vec![urls[0].clone()], "{lines:?}");
    assert_eq!(outcome.anchor.state_root, fx.root.0);
}

/// A peer that answers every page correctly but slower than 4 s is dropped
/// after three such pages in a row, and the sync finishes from the other
/// peer (before, it was asked for its share of the chunks to the end).
#[test]
fn a_peer_slower_than_the_page_deadline_is_dropped() {
    let fx = fixture();
    let urls = vec![
        fx.peer(&fx.manifest, Duration::from_millis(4_300)),
        fx.peer(&fx.manifest, Duration::ZERO),
    ];
    let (outcome, report, lines) = fx.sync(&urls);
    assert_eq!(report.accounts, u64::from(ACCOUNTS), "{lines:?}");
    assert_eq!(outcome.dropped, vec![urls[0].clone()], "{lines:?}");
    assert_eq!(report.peers_dropped, 1, "{report:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("pages in a row slower than")),
        "{lines:?}"
    );
}

/// When a manifest is given up, the chunks staged against it that the next
/// manifest sums the same way are kept, not fetched again: here chunks 2
/// and 3 are shifted, so chunks 0 and 1 fetched with the shifted manifest
/// stay, and the other peer is asked only for chunks 2 and 3.
#[test]
fn chunks_the_next_manifest_sums_the_same_way_are_kept() {
    let fx = fixture();
    let mut shifted = fx.manifest.clone();
    shifted.chunks[2].balance = shifted.chunks[2].balance.wrapping_add(1);
    shifted.chunks[3].balance = shifted.chunks[3].balance.wrapping_sub(1);
    let (shifting, _) = fx.counted_peer(&shifted, Duration::ZERO);
    let (honest, asked) = fx.counted_peer(&fx.manifest, Duration::ZERO);
    let urls = vec![shifting, honest];
    let (outcome, report, lines) = fx.sync(&urls);
    assert_eq!(outcome.dropped, vec![urls[0].clone()], "{lines:?}");
    assert_eq!(outcome.anchor.state_root, fx.root.0);
    assert!(
        lines.iter().any(|l| l.contains("2 chunks staged against")),
        "{lines:?}"
    );
    let asked = asked.lock().expect("lock").clone();
    assert!(
        asked.iter().all(|c| *c >= 2) && asked.contains(&2) && asked.contains(&3),
        "the honest peer was asked for the pages of chunks {asked:?}"
    );
    assert_eq!((report.chunks_done, report.chunks_total), (4, 4));
}

/// Two manifests given up in turn: a chunk kept from the first one and
/// staged past the point where the second one is given up stays counted
/// once. Peer A shifts chunks 2 and 3 (given up at 2: chunks 0 and 1
/// staged), peer B shifts chunks 0 and 3 (chunk 1 kept, given up at 0), so
/// the honest peer is asked for chunks 0, 2 and 3 only. Before, chunk 1 was
/// fetched again on top of the kept copy and the sync failed at the end
/// (found by review).
#[test]
fn a_chunk_kept_across_two_given_up_manifests_is_staged_once() {
    let fx = fixture();
    let shift = |a: usize, b: usize| {
        let mut m = fx.manifest.clone();
        m.chunks[a].balance = m.chunks[a].balance.wrapping_add(1);
        m.chunks[b].balance = m.chunks[b].balance.wrapping_sub(1);
        m
    };
    let (a, _) = fx.counted_peer(&shift(2, 3), Duration::ZERO);
    let (b, _) = fx.counted_peer(&shift(0, 3), Duration::ZERO);
    let (honest, asked) = fx.counted_peer(&fx.manifest, Duration::ZERO);
    let urls = vec![a, b, honest];
    let (outcome, report, lines) = fx.sync(&urls);
    assert_eq!(outcome.dropped, urls[..2].to_vec(), "{lines:?}");
    let mut asked = asked.lock().expect("lock").clone();
    asked.dedup();
    assert_eq!(asked, vec![0, 2, 3], "{lines:?}");
    assert_eq!((report.chunks_done, report.chunks_total), (4, 4));
}

/// The progress shared with `/metrics` and the API status moves while the
/// state is fetched: the certified height, then chunks done out of the
/// total and bytes, then the staged state (phase `restoring`).
#[test]
fn progress_is_visible_while_the_state_is_fetched() {
    let fx = fixture();
    // Nine pages of 250 ms: about 2.3 s of fetching to watch.
    let urls = vec![fx.peer(&fx.manifest, Duration::from_millis(250))];
    let progress = StateSyncProgress::default();
    let seen = Arc::new(Mutex::new(Vec::<StateSyncReport>::new()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (progress, seen, done) = (progress.clone(), Arc::clone(&seen), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                seen.lock().expect("lock").push(progress.report());
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let (_, report, lines) = fx.sync_watched(&urls, &progress);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().expect("watcher");
    let seen = seen.lock().expect("lock").clone();
    let midway = seen.iter().find(|r| {
        r.phase == StateSyncPhase::Chunks && r.chunks_done > 0 && r.chunks_done < r.chunks_total
    });
    let midway = midway.unwrap_or_else(|| panic!("no report midway through the chunks: {seen:?}"));
    assert_eq!(midway.height, HEIGHT);
    assert_eq!(midway.chunks_total, 4);
    assert!(midway.bytes > 0 && midway.seconds > 0.0, "{midway:?}");
    assert_eq!(report.phase, StateSyncPhase::Restoring, "{lines:?}");
    assert_eq!(
        (
            report.chunks_done,
            report.accounts,
            report.peers,
            report.peers_dropped
        ),
        (4, u64::from(ACCOUNTS), 1, 0)
    );
    assert!(report.seconds >= 2.0, "{report:?}");
    // The time is frozen once the state is staged.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(progress.report().seconds, report.seconds);
}
