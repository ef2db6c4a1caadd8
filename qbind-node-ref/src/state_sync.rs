//! State sync over the public API (issue #18; docs/sync.md "State sync").
//!
//! **Serving** ([`StateSyncServer`]): a node with snapshots
//! (`--snapshot-dir`) serves its newest one through
//! `GET /v1/state-sync/...`: the snapshot heights, a commit proof built from
//! the committed blocks above the snapshot's height in its store
//! ([`CommitProof::build`]), the manifest and pages of each chunk
//! (`qbind_store::state_sync::SnapshotServer`). The newest snapshot is
//! offered, or, while it is not provable yet (a snapshot at the tip), the
//! one before it; each is opened once (a private, checksum-verified copy)
//! and at most three stay open, so a client cannot make the node copy
//! snapshots over and over.
//!
//! **Fetching** ([`fetch_state`]): a node started with `--state-sync-from
//! URL` and no store yet asks those peers for their snapshot heights, takes
//! the newest height offered, verifies a commit proof for it against its own
//! validator sets, gathers the manifests the peers offering it serve that
//! hold to the certified root (grouped by their bytes, the one most peers
//! serve first), then fetches every chunk page by page from the peers
//! serving that manifest, verifying each page before it is staged. A peer
//! that serves anything that fails a check is dropped for the rest of the
//! sync, and what it served of the chunk is discarded; the chunk is asked of
//! the next peer. When every peer serving a manifest was dropped (a
//! manifest whose chunk sums are shifted between chunks still holds to the
//! root, but honest pages fail against it), the next manifest is tried
//! (the chunks staged that it sums the same way are kept, the others
//! discarded), so one such peer cannot stop a sync. The
//! staged state becomes an ordinary snapshot that the node restores with
//! the certified trust anchor (`--fast-sync-snapshot-dir` does the same with
//! an operator's anchor). Its progress ([`StateSyncProgress`]) is read live
//! by the node's `/metrics` and API status, which are served from the start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qbind_api::{StateSyncReply, StateSyncRequest};
use qbind_client::{ClientError, QbindClient};
use qbind_core::codec::{Decode, Encode};
use qbind_core::consensus::Block;
use qbind_core::schema::committed_block_key;
use qbind_core::state_sync::{
    CertifiedState, ChunkSum, ChunkVerifier, CommitProof, KeyLog, MAX_PAGE_ACCOUNTS,
    MAX_PROOF_HEADERS, PageVerdict, StateManifest, StatePage, decode,
};
use qbind_core::traits::{Namespace, StateRead};
use qbind_core::types::{AccountId, Hash32, NetworkEnvironment};
use qbind_core::validator::EpochSchedule;
use qbind_store::PersistentBackend;
use qbind_store::snapshot::{TrustAnchor, list_snapshots};
use qbind_store::state_sync::{SnapshotServer, StateSyncStaging, trust_anchor};

use crate::node::NodeError;
use crate::store::{NodeStore, StoreBackend};

/// Largest commit proof a client reads (a full block of up to 4 MiB plus
/// headers and three QCs).
pub const MAX_PROOF_BYTES: usize = 8 << 20;
/// Largest manifest a client reads (65,536 chunks of 280 bytes plus the
/// monetary records).
pub const MAX_MANIFEST_BYTES: usize = 40 << 20;
/// Largest key log a client reads (4,096 rotations of about 5.1 KB).
pub const MAX_KEY_LOG_BYTES: usize = 24 << 20;
/// Largest page a client reads.
pub const MAX_PAGE_BYTES: usize = 64 + MAX_PAGE_ACCOUNTS as usize * 56;
/// Transport failures a peer may have before it is dropped.
const TRANSPORT_STRIKES: u32 = 3;
/// A page answer slower than this is slow (a full page of 458 KiB in 4 s is
/// about 115 KB/s).
const SLOW_PAGE: Duration = Duration::from_secs(4);
/// Slow pages in a row after which a peer is dropped, if another peer
/// serving the same manifest is left (its pages are still used).
const SLOW_PAGES_IN_A_ROW: u32 = 3;
/// Commit proofs kept by a server.
const PROOF_CACHE: usize = 4;

/// A snapshot opened for serving, of either backend.
enum Served {
    Fjall(SnapshotServer<qbind_store::FjallBackend>),
    #[cfg(feature = "rocksdb")]
    RocksDb(SnapshotServer<qbind_store::RocksDbBackend>),
}

impl Served {
    fn open(backend: StoreBackend, path: &Path, chain_id: u64) -> Result<Served, String> {
        let e = |e: qbind_store::state_sync::StateSyncStoreError| e.to_string();
        match backend {
            StoreBackend::Fjall => Ok(Served::Fjall(
                SnapshotServer::open(path, chain_id).map_err(e)?,
            )),
            #[cfg(feature = "rocksdb")]
            StoreBackend::RocksDb => Ok(Served::RocksDb(
                SnapshotServer::open(path, chain_id).map_err(e)?,
            )),
            #[cfg(not(feature = "rocksdb"))]
            StoreBackend::RocksDb => Err("this build has no RocksDB".into()),
        }
    }

    fn manifest(&self) -> &StateManifest {
        match self {
            Served::Fjall(s) => s.manifest(),
            #[cfg(feature = "rocksdb")]
            Served::RocksDb(s) => s.manifest(),
        }
    }

    fn key_log(&self) -> &KeyLog {
        match self {
            Served::Fjall(s) => s.key_log(),
            #[cfg(feature = "rocksdb")]
            Served::RocksDb(s) => s.key_log(),
        }
    }

    fn page(&self, chunk: u32, after: Option<AccountId>) -> Option<StatePage> {
        let page = match self {
            Served::Fjall(s) => s.page(chunk, after, MAX_PAGE_ACCOUNTS),
            #[cfg(feature = "rocksdb")]
            Served::RocksDb(s) => s.page(chunk, after, MAX_PAGE_ACCOUNTS),
        };
        page.ok()
    }
}

/// A snapshot opened for serving, with its encoded manifest.
struct Open {
    /// The snapshot directory's name (its committed height).
    dir_height: u64,
    /// The height its state is of (the manifest's).
    height: u64,
    served: Served,
    manifest: Vec<u8>,
    /// The encoded [`KeyLog`] of its on-chain key rotations.
    key_log: Vec<u8>,
}

/// Serves a node's newest snapshot for state sync (see the module
/// documentation). Blocking: call it from `spawn_blocking`.
pub struct StateSyncServer {
    snapshot_dir: PathBuf,
    chain_id: u64,
    backend: StoreBackend,
    store: Arc<NodeStore>,
    schedule: Arc<EpochSchedule>,
    open: Mutex<Opened>,
    proofs: Mutex<BTreeMap<u64, Arc<Vec<u8>>>>,
    /// Snapshot heights for which no proof could be built, with the
    /// committed height then (not tried again until a block commits).
    unprovable: Mutex<BTreeMap<u64, u64>>,
}

/// Snapshots offered: the newest, or the one before it while the newest is
/// not provable yet.
const OFFERED_SNAPSHOTS: usize = 2;

/// Snapshots kept open for serving: one more than are offered, so that a
/// client that began with the one before the newest finishes after the
/// next snapshot is written.
const SERVED_SNAPSHOTS: usize = OFFERED_SNAPSHOTS + 1;

/// Snapshot heights whose unprovability is remembered (per committed
/// height).
const UNPROVABLE_REMEMBERED: usize = 4;

/// The snapshots open for serving, oldest first, and the last one that
/// failed to open (by directory height) with why.
#[derive(Default)]
struct Opened {
    served: Vec<Arc<Open>>,
    failed: Option<(u64, String)>,
}

impl std::fmt::Debug for StateSyncServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSyncServer")
            .field("snapshot_dir", &self.snapshot_dir)
            .finish_non_exhaustive()
    }
}

impl StateSyncServer {
    /// A server of the snapshots in `snapshot_dir` (this node's own, of
    /// `backend`), with proofs from `store`.
    #[must_use]
    pub fn new(
        snapshot_dir: PathBuf,
        chain_id: u64,
        backend: StoreBackend,
        store: Arc<NodeStore>,
        schedule: Arc<EpochSchedule>,
    ) -> Self {
        StateSyncServer {
            snapshot_dir,
            chain_id,
            backend,
            store,
            schedule,
            open: Mutex::new(Opened::default()),
            proofs: Mutex::new(BTreeMap::new()),
            unprovable: Mutex::new(BTreeMap::new()),
        }
    }

    /// The newest snapshot, opened (once per snapshot), if there is one.
    /// It is served at its manifest's height: the height its state is of,
    /// which is below the directory's name when execution lagged. Older ones
    /// stay open (`SERVED_SNAPSHOTS`), so a client that began with one
    /// finishes; a snapshot that fails to open is not tried again.
    fn newest(&self) -> Result<Option<Arc<Open>>, String> {
        let dirs = list_snapshots(&self.snapshot_dir).map_err(|e| e.to_string())?;
        match dirs.last() {
            Some(dir_height) => self.open_dir(*dir_height).map(Some),
            None => Ok(None),
        }
    }

    /// The snapshots offered, newest first: the newest, and the one before
    /// it (while the newest is at the tip, its proof needs blocks above it
    /// that are not committed yet; before, nothing was offered then, and a
    /// node restarting with `--state-sync-from` gave up). A previous one
    /// that fails to open is left out (the other one is still offered).
    fn offered(&self) -> Result<Vec<Arc<Open>>, String> {
        let dirs = list_snapshots(&self.snapshot_dir).map_err(|e| e.to_string())?;
        Ok(dirs
            .iter()
            .rev()
            .take(OFFERED_SNAPSHOTS)
            .filter_map(|h| self.open_dir(*h).ok())
            .collect())
    }

    /// The snapshot in directory `dir_height`, opened once; the highest
    /// `SERVED_SNAPSHOTS` stay open (the newest, the one before, and one
    /// more for a client that began with the one before).
    fn open_dir(&self, dir_height: u64) -> Result<Arc<Open>, String> {
        let mut open = self.open.lock().map_err(|_| "poisoned".to_string())?;
        if let Some(o) = open.served.iter().find(|o| o.dir_height == dir_height) {
            return Ok(Arc::clone(o));
        }
        if let Some((failed, why)) = &open.failed
            && *failed == dir_height
        {
            return Err(why.clone());
        }
        let path = self.snapshot_dir.join(dir_height.to_string());
        let served = match Served::open(self.backend, &path, self.chain_id) {
            Ok(s) => s,
            Err(why) => {
                open.failed = Some((dir_height, why.clone()));
                return Err(why);
            }
        };
        let manifest = served.manifest().to_bytes();
        let key_log = served.key_log().to_bytes();
        let o = Arc::new(Open {
            dir_height,
            height: served.manifest().height.0,
            served,
            manifest,
            key_log,
        });
        open.served.push(Arc::clone(&o));
        while open.served.len() > SERVED_SNAPSHOTS {
            // The lowest goes.
            let lowest = open
                .served
                .iter()
                .enumerate()
                .min_by_key(|(_, o)| o.dir_height)
                .map_or(0, |(i, _)| i);
            open.served.remove(lowest);
        }
        Ok(o)
    }

    /// The snapshot served at `height`: the newest, or the one before it.
    fn opened(&self, height: u64) -> Result<Option<Arc<Open>>, String> {
        let newest = self.newest()?;
        if let Some(o) = newest.filter(|o| o.height == height) {
            return Ok(Some(o));
        }
        let open = self.open.lock().map_err(|_| "poisoned".to_string())?;
        Ok(open.served.iter().find(|o| o.height == height).cloned())
    }

    /// The commit proof of `height` from the committed blocks in the store.
    fn proof(&self, height: u64) -> Result<Option<Arc<Vec<u8>>>, String> {
        if self.opened(height)?.is_none() {
            return Ok(None);
        }
        if let Some(p) = self.proofs.lock().map_err(|_| "poisoned")?.get(&height) {
            return Ok(Some(Arc::clone(p)));
        }
        // Not provable at this committed height: not read again until a
        // block commits.
        let committed =
            qbind_core::schema::read_height(&*self.store, qbind_core::schema::COMMITTED_HEIGHT_KEY)
                .map_err(|e| e.to_string())?
                .map_or(0, |h| h.0);
        let mut unprovable = self.unprovable.lock().map_err(|_| "poisoned")?;
        if unprovable.get(&height) == Some(&committed) {
            return Ok(None);
        }
        let mut blocks = Vec::new();
        for h in height..=height + u64::from(MAX_PROOF_HEADERS) + 1 {
            let Some(bytes) = self
                .store
                .get(Namespace::Blocks, &committed_block_key(h))
                .map_err(|e| e.to_string())?
            else {
                break;
            };
            blocks.push(Block::from_bytes(&bytes).map_err(|e| e.to_string())?);
        }
        let Some(proof) = CommitProof::build(&blocks, &self.schedule) else {
            // Not enough committed blocks above it yet (a snapshot at the
            // tip), or pruned: offered again once provable.
            unprovable.insert(height, committed);
            while unprovable.len() > UNPROVABLE_REMEMBERED {
                unprovable.pop_first();
            }
            return Ok(None);
        };
        drop(unprovable);
        let bytes = Arc::new(proof.to_bytes());
        let mut proofs = self.proofs.lock().map_err(|_| "poisoned")?;
        proofs.insert(height, Arc::clone(&bytes));
        while proofs.len() > PROOF_CACHE {
            proofs.pop_first();
        }
        Ok(Some(bytes))
    }

    /// Answer one request.
    ///
    /// # Errors
    /// A snapshot or store failure, for the node's log.
    pub fn answer(&self, request: StateSyncRequest) -> Result<StateSyncReply, String> {
        let bytes = |b: Option<Vec<u8>>| b.map_or(StateSyncReply::NotServed, StateSyncReply::Bytes);
        Ok(match request {
            StateSyncRequest::Snapshots => {
                // Only a snapshot this node can prove is offered: the
                // newest that it can.
                let mut heights = Vec::new();
                for o in self.offered()? {
                    if self.proof(o.height)?.is_some() {
                        heights.push(o.height);
                        break;
                    }
                }
                StateSyncReply::Heights(heights)
            }
            StateSyncRequest::Proof(h) => bytes(self.proof(h.0)?.map(|p| p.to_vec())),
            StateSyncRequest::Manifest(h) => bytes(self.opened(h.0)?.map(|o| o.manifest.clone())),
            StateSyncRequest::KeyLog(h) => bytes(self.opened(h.0)?.map(|o| o.key_log.clone())),
            StateSyncRequest::Page {
                height,
                chunk,
                after,
            } => bytes(
                self.opened(height.0)?
                    .and_then(|o| o.served.page(chunk, after))
                    .map(|p| p.to_bytes()),
            ),
        })
    }
}

/// Where a state sync is (`qbind_state_sync_phase`, the API status's
/// `phase`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StateSyncPhase {
    /// Asking the peers for their snapshot heights and a commit proof.
    #[default]
    Proving,
    /// Fetching the manifests of the certified height.
    Manifest,
    /// Fetching and verifying the chunks' pages.
    Chunks,
    /// The state is staged; the node restores it and starts.
    Restoring,
    /// Restored: the node follows the chain by block sync.
    Done,
}

impl StateSyncPhase {
    /// The phase's number in `qbind_state_sync_phase` (1–5, in order).
    #[must_use]
    pub fn number(self) -> u64 {
        match self {
            StateSyncPhase::Proving => 1,
            StateSyncPhase::Manifest => 2,
            StateSyncPhase::Chunks => 3,
            StateSyncPhase::Restoring => 4,
            StateSyncPhase::Done => 5,
        }
    }

    /// The phase's name in the API status.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            StateSyncPhase::Proving => "proving",
            StateSyncPhase::Manifest => "manifest",
            StateSyncPhase::Chunks => "chunks",
            StateSyncPhase::Restoring => "restoring",
            StateSyncPhase::Done => "done",
        }
    }
}

/// Where a node's state sync is and what it did, for `/metrics`
/// (`qbind_state_sync_*`) and the API status: a copy taken from
/// [`StateSyncProgress`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StateSyncReport {
    /// The phase.
    pub phase: StateSyncPhase,
    /// The certified height being fetched (0 until one is chosen).
    pub height: u64,
    /// Accounts in the state being fetched (0 until its manifest is read).
    pub accounts: u64,
    /// Chunks of the manifest being fetched.
    pub chunks_total: u64,
    /// Chunks of it fetched, verified and staged (when a manifest is given
    /// up for the next one: the chunks kept).
    pub chunks_done: u64,
    /// Bytes of pages received.
    pub bytes: u64,
    /// Seconds from the first page: so far while fetching, then until the
    /// state was staged.
    pub seconds: f64,
    /// Peers given.
    pub peers: usize,
    /// Peers dropped (for serving data that failed a check, failing
    /// requests, or slowness).
    pub peers_dropped: usize,
}

/// A state sync's live progress, shared between the fetch and the
/// node's `/metrics` and API status, which read it while the state is
/// fetched (before the node has a store) and afterwards. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct StateSyncProgress(Arc<Mutex<Progress>>);

#[derive(Debug, Default)]
struct Progress {
    report: StateSyncReport,
    /// When the first page was asked for; `None` before, and after the
    /// state was staged (`report.seconds` then holds the total).
    running_since: Option<Instant>,
}

impl StateSyncProgress {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        // Plain figures: a panicking writer cannot leave them unusable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The figures now.
    #[must_use]
    pub fn report(&self) -> StateSyncReport {
        let p = self.lock();
        let mut report = p.report;
        if let Some(since) = p.running_since {
            report.seconds = since.elapsed().as_secs_f64();
        }
        report
    }

    /// Change the figures with `f`.
    pub fn update(&self, f: impl FnOnce(&mut StateSyncReport)) {
        f(&mut self.lock().report);
    }

    /// The node restored the state: [`StateSyncPhase::Done`].
    pub fn restored(&self) {
        self.update(|r| r.phase = StateSyncPhase::Done);
    }

    fn pages_started(&self) {
        self.lock().running_since.get_or_insert_with(Instant::now);
    }

    fn staged(&self) {
        let mut p = self.lock();
        if let Some(since) = p.running_since.take() {
            p.report.seconds = since.elapsed().as_secs_f64();
        }
        p.report.phase = StateSyncPhase::Restoring;
    }
}

/// What a state sync fetched and where the node restores it from (its
/// figures are in the [`StateSyncProgress`] given to [`fetch_state`]).
#[derive(Debug)]
pub struct StateSyncOutcome {
    /// The staged snapshot (`<dir>/<height>`), to restore with `anchor`;
    /// remove `staged_dir` afterwards.
    pub snapshot: PathBuf,
    /// The directory holding `snapshot`.
    pub staged_dir: PathBuf,
    /// The certified height, block and state root.
    pub anchor: TrustAnchor,
    /// Peers dropped for serving data that failed a check, failing
    /// requests or slowness.
    pub dropped: Vec<String>,
}

/// One peer of a state sync.
struct Peer {
    client: QbindClient,
    strikes: u32,
    /// Pages in a row it answered slower than [`SLOW_PAGE`].
    slow: u32,
    dropped: bool,
}

impl Peer {
    fn url(&self) -> &str {
        self.client.base_url()
    }
}

/// Why a peer's answer was not used.
enum Failure {
    /// Unreachable or timed out: counted, dropped after a few.
    Transport(String),
    /// It does not serve this (404): counted like a transport failure.
    NotServed,
    /// It served data that fails a check: dropped.
    Bad(String),
}

fn failure(e: ClientError) -> Failure {
    match e {
        ClientError::Api { status: 404, .. } => Failure::NotServed,
        ClientError::Api { status, code, .. } if status >= 500 || code == "rate_limited" => {
            Failure::Transport(code)
        }
        ClientError::Transport { .. } => Failure::Transport(e.to_string()),
        other => Failure::Bad(other.to_string()),
    }
}

struct Fetch<'a> {
    peers: Vec<Peer>,
    next: usize,
    out: &'a dyn Fn(&str),
    progress: &'a StateSyncProgress,
}

impl Fetch<'_> {
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.peers.len()).filter(|&i| !self.peers[i].dropped)
    }

    /// The next live peer in turn among `among`, if any.
    fn pick(&mut self, among: &[usize]) -> Option<usize> {
        let live: Vec<usize> = among
            .iter()
            .copied()
            .filter(|&i| !self.peers[i].dropped)
            .collect();
        if live.is_empty() {
            return None;
        }
        self.next = self.next.wrapping_add(1);
        Some(live[self.next % live.len()])
    }

    fn blame(&mut self, i: usize, f: &Failure) {
        let peer = &mut self.peers[i];
        match f {
            Failure::NotServed | Failure::Transport(_) => {
                let why = match f {
                    Failure::Transport(why) => why.as_str(),
                    _ => "not served",
                };
                peer.strikes += 1;
                if peer.strikes >= TRANSPORT_STRIKES {
                    peer.dropped = true;
                    self.progress.update(|r| r.peers_dropped += 1);
                    (self.out)(&format!(
                        "state sync: dropping {} after {} failed requests ({why})",
                        peer.url(),
                        peer.strikes
                    ));
                }
            }
            Failure::Bad(why) => {
                peer.dropped = true;
                self.progress.update(|r| r.peers_dropped += 1);
                (self.out)(&format!(
                    "state sync: dropping {}: it served data that fails verification: {why}",
                    peer.url()
                ));
            }
        }
    }

    /// Note how long peer `i` took for a page. Returns whether it was
    /// dropped: [`SLOW_PAGES_IN_A_ROW`] slow answers, and another peer of
    /// `serving` is left to ask.
    fn timed(&mut self, i: usize, took: Duration, serving: &[usize]) -> bool {
        if took <= SLOW_PAGE {
            self.peers[i].slow = 0;
            return false;
        }
        self.peers[i].slow += 1;
        let others = serving.iter().any(|&j| j != i && !self.peers[j].dropped);
        if self.peers[i].slow < SLOW_PAGES_IN_A_ROW || !others {
            return false;
        }
        self.peers[i].dropped = true;
        self.progress.update(|r| r.peers_dropped += 1);
        (self.out)(&format!(
            "state sync: dropping {}: {} pages in a row slower than {} s (the last {:.1} s)",
            self.peers[i].url(),
            self.peers[i].slow,
            SLOW_PAGE.as_secs(),
            took.as_secs_f64()
        ));
        true
    }

    async fn get(&self, i: usize, path: &str, max: usize) -> Result<Vec<u8>, Failure> {
        self.peers[i]
            .client
            .state_bytes(path, max)
            .await
            .map_err(failure)
    }
}

/// Fetch the newest state the peers at `urls` serve, verified against
/// `schedule`, into a staged snapshot beside `store_dir` (see the module
/// documentation), keeping `progress` current.
///
/// # Errors
/// [`NodeError::StateSync`] when no peer serves a snapshot with a valid
/// proof or a valid manifest, every peer was dropped, or staging fails.
pub async fn fetch_state(
    urls: &[String],
    env: NetworkEnvironment,
    schedule: &EpochSchedule,
    store_dir: &Path,
    backend: StoreBackend,
    progress: &StateSyncProgress,
    out: &dyn Fn(&str),
) -> Result<StateSyncOutcome, NodeError> {
    let to = Target {
        env,
        schedule,
        store_dir,
    };
    match backend {
        StoreBackend::Fjall => {
            fetch_into::<qbind_store::FjallBackend>(urls, to, progress, out).await
        }
        #[cfg(feature = "rocksdb")]
        StoreBackend::RocksDb => {
            fetch_into::<qbind_store::RocksDbBackend>(urls, to, progress, out).await
        }
        #[cfg(not(feature = "rocksdb"))]
        StoreBackend::RocksDb => Err(NodeError::BackendUnavailable(backend)),
    }
}

/// Where a state sync puts the snapshot it staged, beside the store
/// directory (`.<store>.synced-snapshot`; not a name
/// `qbind_store::state_sync::interrupted_state_syncs` matches).
#[must_use]
pub fn staged_snapshot_dir(store_dir: &Path) -> PathBuf {
    store_dir.with_file_name(format!(
        ".{}.synced-snapshot",
        store_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ))
}

fn fail(why: impl Into<String>) -> NodeError {
    NodeError::StateSync(why.into())
}

/// What a state sync verifies against and where it stages.
#[derive(Clone, Copy)]
struct Target<'a> {
    env: NetworkEnvironment,
    schedule: &'a EpochSchedule,
    store_dir: &'a Path,
}

async fn fetch_into<B: PersistentBackend>(
    urls: &[String],
    to: Target<'_>,
    progress: &StateSyncProgress,
    out: &dyn Fn(&str),
) -> Result<StateSyncOutcome, NodeError> {
    let Target {
        env,
        schedule,
        store_dir,
    } = to;
    let mut peers = Vec::new();
    for url in urls {
        let client = QbindClient::new(url).map_err(|e| fail(e.to_string()))?;
        peers.push(Peer {
            client,
            strikes: 0,
            slow: 0,
            dropped: false,
        });
    }
    if peers.is_empty() {
        return Err(fail("no peers given (--state-sync-from)"));
    }
    progress.update(|r| {
        r.phase = StateSyncPhase::Proving;
        r.peers = peers.len();
    });
    let mut f = Fetch {
        peers,
        next: 0,
        out,
        progress,
    };
    // 1–2. Who offers which snapshot, and the newest height with a valid
    // proof; asked again a few times while no peer has one to offer yet (a
    // snapshot at the tip is offered once enough blocks above it commit).
    let mut chosen = None;
    let mut reasons = Vec::new();
    for round in 0..OFFER_ROUNDS {
        if round > 0 {
            tokio::time::sleep(OFFER_RETRY).await;
        }
        reasons.clear();
        let offers = offers(&f, out).await;
        chosen = provable(&mut f, &offers, env, schedule, &mut reasons).await;
        if chosen.is_some() || f.live().count() == 0 {
            break;
        }
    }
    let Some((certified, block, key_log, mut offering, first_manifest)) = chosen else {
        return Err(fail(format!(
            "none of the {} peers served a snapshot with a valid commit proof ({})",
            urls.len(),
            if reasons.is_empty() {
                "no snapshots offered".to_string()
            } else {
                reasons.join("; ")
            }
        )));
    };
    // The peers are asked once more: one that did not list that height in
    // the round that found it (a listing that failed, or a snapshot taken a
    // moment later) is not left out for a transient failure.
    if let Some(late) = offers(&f, out).await.remove(&certified.height.0) {
        for i in late {
            if !offering.contains(&i) {
                offering.push(i);
            }
        }
    }
    progress.update(|r| {
        r.phase = StateSyncPhase::Manifest;
        r.height = certified.height.0;
    });
    out(&format!(
        "state sync: height {} certified (block {}, state root {}), offered by {} of {} peers",
        certified.height.0,
        certified.block_id,
        certified.state_root,
        offering.len(),
        urls.len()
    ));
    // 3. The manifests that hold to the certified root, by how many peers
    // serve each; 4. every chunk, page by page, from the peers serving the
    // first; the next one if all of those were dropped.
    let candidates = manifests(&mut f, &certified, &offering, first_manifest).await;
    if candidates.is_empty() {
        return Err(fail("no peer served a valid manifest"));
    }
    if candidates.len() > 1 {
        out(&format!(
            "state sync: the peers serve {} different manifests consistent with the certified \
             root (chunk sums shifted between chunks); trying the one most peers serve first",
            candidates.len()
        ));
    }
    let mut staging =
        StateSyncStaging::<B>::create(store_dir).map_err(|e| fail(format!("staging: {e}")))?;
    let mut fetched = None;
    // The manifest given up last: its chunk sums and prefix bits, which of
    // its chunks are staged whole, and the chunk it was given up at (partly
    // staged).
    let mut given_up: Option<GivenUp> = None;
    for (digest, serving) in candidates {
        // Fetched again now, so that only one manifest is held at a time.
        let Some(manifest) = manifest_of(&mut f, &certified, digest, &serving).await else {
            continue;
        };
        out(&format!(
            "state sync: manifest of {} accounts in {} chunks, served by {} peers",
            manifest.summary.accounts,
            manifest.chunks.len(),
            serving.len()
        ));
        let staged = match given_up.take() {
            Some(g) => keep_equal_chunks(&mut staging, &manifest, &g)
                .map_err(|e| fail(format!("staging: {e}")))?,
            None => vec![false; manifest.chunks.len()],
        };
        let kept = staged.iter().filter(|k| **k).count();
        if kept > 0 {
            out(&format!(
                "state sync: {kept} chunks staged against the manifest given up have the same \
                 sums in this one; kept"
            ));
        }
        progress.update(|r| {
            r.phase = StateSyncPhase::Chunks;
            r.accounts = manifest.summary.accounts;
            r.chunks_total = manifest.chunks.len() as u64;
            r.chunks_done = kept as u64;
        });
        progress.pages_started();
        match fetch_chunks(&mut f, &mut staging, &manifest, &serving, &staged).await {
            Ok(()) => {
                fetched = Some(manifest);
                break;
            }
            Err(ChunksFailed::Exhausted { chunk }) => {
                out(&format!(
                    "state sync: every peer serving that manifest was dropped at chunk {chunk}"
                ));
                // Every chunk before `chunk` was fetched or kept; after it,
                // only the ones kept.
                let whole = (0..manifest.chunks.len())
                    .map(|c| c < chunk as usize || (c > chunk as usize && staged[c]))
                    .collect();
                given_up = Some(GivenUp {
                    sums: manifest.chunks,
                    bits: manifest.prefix_bits,
                    whole,
                    at: chunk,
                });
            }
            Err(ChunksFailed::Fatal(e)) => return Err(e),
        }
    }
    let Some(manifest) = fetched else {
        return Err(fail("every peer was dropped before the state was complete"));
    };
    let staged_dir = staged_snapshot_dir(store_dir);
    let _ = std::fs::remove_dir_all(&staged_dir);
    let chain_id = env.chain_id().0;
    let snapshot = staging
        .finish(
            &manifest,
            &block,
            &certified,
            &key_log,
            chain_id,
            &staged_dir,
        )
        .map_err(|e| fail(format!("staging: {e}")))?;
    progress.staged();
    let report = progress.report();
    out(&format!(
        "state sync: {} accounts, {:.1} MB in {:.1} s",
        report.accounts,
        report.bytes as f64 / 1e6,
        report.seconds
    ));
    let dropped: Vec<String> = f
        .peers
        .iter()
        .filter(|p| p.dropped)
        .map(|p| p.url().to_string())
        .collect();
    Ok(StateSyncOutcome {
        snapshot,
        staged_dir,
        anchor: trust_anchor(&certified),
        dropped,
    })
}

/// Rounds of asking the peers for a provable snapshot, and the pause
/// between them.
const OFFER_ROUNDS: u32 = 15;
const OFFER_RETRY: Duration = Duration::from_secs(2);

/// The snapshot heights each live peer offers (at most 16 each).
async fn offers(f: &Fetch<'_>, out: &dyn Fn(&str)) -> BTreeMap<u64, Vec<usize>> {
    let mut offers: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for i in f.live().collect::<Vec<_>>() {
        match f.peers[i].client.state_snapshots().await {
            Ok(heights) => {
                for h in heights.into_iter().take(16) {
                    offers.entry(h).or_default().push(i);
                }
            }
            Err(e) => out(&format!(
                "state sync: {} lists no snapshots: {e}",
                f.peers[i].url()
            )),
        }
    }
    offers
}

/// Peer `i`'s commit proof and key log of `height`, the proof verified
/// with the keys of `schedule` as the log's rotations changed them
/// ([`CommitProof::verify_with_key_log`]). The proof is fetched first: a
/// proof of another height costs no key log (up to 24 MiB).
async fn key_log_and_proof(
    f: &Fetch<'_>,
    i: usize,
    height: u64,
    env: NetworkEnvironment,
    schedule: &EpochSchedule,
) -> Result<(CertifiedState, CommitProof, KeyLog), Failure> {
    let bad = |e: qbind_core::state_sync::StateSyncError| Failure::Bad(e.to_string());
    let path = format!("/v1/state-sync/{height}/proof");
    let proof = f.get(i, &path, MAX_PROOF_BYTES).await?;
    let proof = decode::<CommitProof>("commit proof", &proof).map_err(bad)?;
    if proof.block.height().0 != height {
        return Err(Failure::Bad("a proof of another height".into()));
    }
    let path = format!("/v1/state-sync/{height}/key-rotations");
    let log = f.get(i, &path, MAX_KEY_LOG_BYTES).await?;
    let log = decode::<KeyLog>("key log", &log).map_err(bad)?;
    // One signature verification per rotation of the log, then the
    // proof's certificates, off the async threads.
    let base = schedule.clone();
    let (certified, proof, log) = tokio::task::spawn_blocking(move || {
        proof
            .verify_with_key_log(env, &base, &log)
            .map(|c| (c, proof, log))
    })
    .await
    .map_err(|e| Failure::Bad(format!("verification task: {e}")))?
    .map_err(bad)?;
    Ok((certified, proof, log))
}

/// The newest offered height whose proof a peer serves and verifies, and
/// whose manifest from the same peer holds to the certified root with the
/// peer's key log: the certified state, its block, the key log, the peers
/// offering it, and that peer with its manifest's digest (not asked for it
/// again by [`manifests`]). The manifest binds the log to the root before the log is
/// used: a log that replays but leaves out (or adds) a rotation that the
/// proof's certificates do not need would otherwise make every honest
/// manifest fail against its digest, and their peers be dropped.
async fn provable(
    f: &mut Fetch<'_>,
    offers: &BTreeMap<u64, Vec<usize>>,
    env: NetworkEnvironment,
    schedule: &EpochSchedule,
    reasons: &mut Vec<String>,
) -> Option<(CertifiedState, Block, KeyLog, Vec<usize>, (usize, Hash32))> {
    for (&height, offering) in offers.iter().rev() {
        for &i in offering {
            if f.peers[i].dropped {
                continue;
            }
            let checked = key_log_and_proof(f, i, height, env, schedule).await;
            match checked {
                Ok((certified, proof, log)) => {
                    // `fetch_manifest` drops the peer if its manifest does
                    // not hold to the root with its log.
                    if let Some((digest, _)) = fetch_manifest(f, &certified, i).await {
                        return Some((certified, proof.block, log, offering.clone(), (i, digest)));
                    }
                    reasons.push(format!(
                        "{} at height {height}: no manifest that holds to the certified root \
                         with its key log",
                        f.peers[i].url()
                    ));
                }
                Err(e) => {
                    reasons.push(format!(
                        "{} at height {height}: {}",
                        f.peers[i].url(),
                        match &e {
                            Failure::NotServed => "no proof or key log served",
                            Failure::Transport(why) | Failure::Bad(why) => why.as_str(),
                        }
                    ));
                    // A snapshot replaced between the listing and the
                    // proof is no fault: it is asked again next round.
                    if !matches!(e, Failure::NotServed) {
                        f.blame(i, &e);
                    }
                }
            }
        }
    }
    None
}

/// The manifests of the certified height that hold to the certified root,
/// each named by the digest of its bytes with the peers serving exactly
/// those bytes; most peers first, then in the order first served. Only
/// digests are kept (a manifest can be 40 MiB): [`manifest_of`] fetches the
/// one tried. Honest peers serve identical manifests; two that both hold to
/// the root differ only in how the totals are split between chunks, and
/// honest pages fail against all but the honest one. `known`: a peer whose
/// manifest digest was already fetched (by [`provable`]).
async fn manifests(
    f: &mut Fetch<'_>,
    certified: &CertifiedState,
    offering: &[usize],
    known: (usize, Hash32),
) -> Vec<(Hash32, Vec<usize>)> {
    let mut groups: Vec<(Hash32, Vec<usize>)> = vec![(known.1, vec![known.0])];
    // A peer whose answer did not arrive is asked once more, so that one
    // transient failure does not leave it out of every group.
    for _round in 0..2 {
        for &i in offering {
            if groups.iter().any(|g| g.1.contains(&i)) {
                continue;
            }
            if let Some((digest, _)) = fetch_manifest(f, certified, i).await {
                match groups.iter_mut().find(|g| g.0 == digest) {
                    Some(group) => group.1.push(i),
                    None => groups.push((digest, vec![i])),
                }
            }
        }
    }
    // A stable sort keeps the order first served among equals.
    groups.sort_by_key(|g| std::cmp::Reverse(g.1.len()));
    groups
}

/// Peer `i`'s manifest of the certified height if it holds to the certified
/// root, with the digest of its bytes; a peer that serves one that does not
/// is dropped, and a transport failure counted.
async fn fetch_manifest(
    f: &mut Fetch<'_>,
    certified: &CertifiedState,
    i: usize,
) -> Option<(Hash32, StateManifest)> {
    if f.peers[i].dropped {
        return None;
    }
    let path = format!("/v1/state-sync/{}/manifest", certified.height.0);
    let bytes = match f.get(i, &path, MAX_MANIFEST_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            f.blame(i, &e);
            return None;
        }
    };
    match decode::<StateManifest>("manifest", &bytes).and_then(|m| m.check(certified).map(|()| m)) {
        Ok(m) => Some((Hash32::digest(&bytes), m)),
        Err(e) => {
            f.blame(i, &Failure::Bad(e.to_string()));
            None
        }
    }
}

/// The manifest with `digest`, from the first peer of `serving` that still
/// serves it. A peer that now serves other bytes is dropped (it changed its
/// answer within one sync).
async fn manifest_of(
    f: &mut Fetch<'_>,
    certified: &CertifiedState,
    digest: Hash32,
    serving: &[usize],
) -> Option<StateManifest> {
    for &i in serving {
        match fetch_manifest(f, certified, i).await {
            Some((d, m)) if d == digest => return Some(m),
            Some(_) => f.blame(i, &Failure::Bad("it changed its manifest".into())),
            None => {}
        }
    }
    None
}

/// Why the chunks of a manifest could not all be fetched.
enum ChunksFailed {
    /// Every peer serving the manifest was dropped before `chunk` was
    /// complete.
    Exhausted {
        /// The chunk being fetched.
        chunk: u32,
    },
    /// Staging failed.
    Fatal(NodeError),
}

/// A manifest given up while its chunks were fetched.
struct GivenUp {
    /// Its chunk sums.
    sums: Vec<ChunkSum>,
    /// Its prefix bits.
    bits: u8,
    /// Which of its chunks are staged whole (fetched, or kept from an
    /// earlier manifest).
    whole: Vec<bool>,
    /// The chunk it was given up at (partly staged).
    at: u32,
}

/// Of the chunks staged against a manifest given up: which ones `next`
/// sums the same way, so that they verify against it as they are and are
/// kept. The other whole chunks, and the chunk it was given up at, are
/// discarded.
fn keep_equal_chunks<B: PersistentBackend>(
    staging: &mut StateSyncStaging<B>,
    next: &StateManifest,
    given_up: &GivenUp,
) -> Result<Vec<bool>, qbind_store::state_sync::StateSyncStoreError> {
    let mut kept = vec![false; next.chunks.len()];
    for (i, whole) in given_up.whole.iter().enumerate() {
        let c = i as u32;
        let same = given_up.bits == next.prefix_bits
            && given_up
                .sums
                .get(i)
                .is_some_and(|s| next.chunks.get(i) == Some(s));
        if *whole && same {
            kept[i] = true;
        } else if *whole || c == given_up.at {
            staging.discard_chunk(c, given_up.bits)?;
        }
    }
    Ok(kept)
}

/// Fetch and stage every chunk of `manifest` from the peers `serving` it,
/// except those `staged` already, counting chunks and page bytes in the
/// progress; a line every two seconds.
async fn fetch_chunks<B: PersistentBackend>(
    f: &mut Fetch<'_>,
    staging: &mut StateSyncStaging<B>,
    manifest: &StateManifest,
    serving: &[usize],
    staged: &[bool],
) -> Result<(), ChunksFailed> {
    let mut last_report = Instant::now();
    for chunk in 0..manifest.chunks.len() as u32 {
        if staged.get(chunk as usize).copied().unwrap_or(false) {
            continue;
        }
        fetch_chunk(f, staging, manifest, chunk, serving).await?;
        f.progress.update(|r| r.chunks_done += 1);
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            let r = f.progress.report();
            (f.out)(&format!(
                "state sync: {} of {} chunks, {:.1} MB at {:.1} MB/s",
                r.chunks_done,
                r.chunks_total,
                r.bytes as f64 / 1e6,
                r.bytes as f64 / 1e6 / r.seconds.max(1e-3)
            ));
        }
    }
    Ok(())
}

/// Fetch and stage one chunk.
async fn fetch_chunk<B: PersistentBackend>(
    f: &mut Fetch<'_>,
    staging: &mut StateSyncStaging<B>,
    manifest: &StateManifest,
    chunk: u32,
    serving: &[usize],
) -> Result<(), ChunksFailed> {
    let staging_failed = |e: qbind_store::state_sync::StateSyncStoreError| {
        ChunksFailed::Fatal(fail(format!("staging: {e}")))
    };
    let height = manifest.height.0;
    'peers: loop {
        let Some(mut i) = f.pick(serving) else {
            return Err(ChunksFailed::Exhausted { chunk });
        };
        let mut verifier = ChunkVerifier::new(manifest, chunk)
            .map_err(|e| ChunksFailed::Fatal(fail(e.to_string())))?;
        loop {
            let asked = Instant::now();
            let path = match verifier.after() {
                None => format!("/v1/state-sync/{height}/chunk/{chunk}"),
                Some(a) => format!(
                    "/v1/state-sync/{height}/chunk/{chunk}?after={}",
                    hex::encode(a.0)
                ),
            };
            let answer = f.get(i, &path, MAX_PAGE_BYTES).await;
            // The peer's answer time only, not our verifying and staging.
            let took = asked.elapsed();
            let checked = match answer {
                Ok(b) => {
                    f.progress.update(|r| r.bytes += b.len() as u64);
                    decode::<StatePage>("page", &b)
                        .and_then(|p| Ok((verifier.feed(&p)?, p)))
                        .map_err(|e| Failure::Bad(e.to_string()))
                }
                Err(e) => Err(e),
            };
            match checked {
                Ok((verdict, page)) => {
                    staging.put_page(&page).map_err(staging_failed)?;
                    let too_slow = f.timed(i, took, serving);
                    if verdict == PageVerdict::Complete {
                        return Ok(());
                    }
                    // A peer dropped for slowness: the verified pages stay
                    // and the chunk goes on from another peer.
                    if too_slow {
                        i = match f.pick(serving) {
                            Some(next) => next,
                            None => return Err(ChunksFailed::Exhausted { chunk }),
                        };
                    }
                }
                Err(e) => {
                    f.blame(i, &e);
                    staging
                        .discard_chunk(chunk, manifest.prefix_bits)
                        .map_err(staging_failed)?;
                    continue 'peers;
                }
            }
        }
    }
}
