//! State snapshots for fast sync (spec §2.5, runbook §5, issues #3, #22).
//!
//! Layout: `snapshot_dir/<height>/meta.json` + `snapshot_dir/<height>/state/`
//! (a checkpoint of the backend, openable with the same backend type).
//! `meta.json` ([`SnapshotMeta`]) records the format version, height, block
//! hash, executed height, state root, chain ID, epoch, creation time, backend
//! and the size and SHA3-256 of every file under `state/`. The state root is
//! the protocol's: [`StateSummary::root`] of the summary stored in `Meta`
//! under [`STATE_SUMMARY_KEY`] (`qbind_core::execution`).
//!
//! A snapshot is complete or absent: it is built in a temporary directory
//! (`.tmp-snapshot-*`), every file and directory is fsynced, and the
//! directory is renamed to `<height>` at the end, then the parent is fsynced.
//! The height is the committed-height marker *inside* the checkpoint (the
//! marker is committed atomically with its block's state), so a snapshot
//! taken while commits continue is still exactly one height's state.
//! Temporary directories a crash leaves are removed when the node starts
//! ([`prepare_snapshot_dir`]). Snapshot directories are private (`0700`).
//!
//! A snapshot to restore is hostile input (`files`): only regular files and
//! directories, reads bounded by the sizes in a bounded `meta.json`.
//! Validation checks `meta.json`, the chain ID, every checksum (and that no
//! file is missing or extra), then opens a copy of `state/` and checks the
//! committed and executed heights and the block hash, and recomputes the
//! state commitment from the accounts themselves ([`verify_state`]): every
//! entry of `Accounts` must be a 32-byte id with a decodable, non-empty
//! [`Account`]; the sum of their [`leaf_element`]s and their number must
//! equal the stored summary's accumulator and account count; the sum of
//! balances must equal `minted - burned`; the monetary engine's two
//! consensus records must match the summary's `monetary` digest; and the
//! summary's root must equal
//! `meta.json`'s `state_root`. Creating a snapshot only reads the summary
//! (cheap); the full recomputation is done by whoever validates or restores.
//! Those checks only show the snapshot is self-consistent; a restore also
//! needs the operator's [`TrustAnchor`] (height, block hash, state root) and
//! is atomic: it is verified beside the data directory and renamed into
//! place (`restore`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use qbind_core::codec::Decode;
use qbind_core::execution::{
    Account, AccountAccumulator, STATE_SUMMARY_KEY, StateSummary, leaf_element,
};
use qbind_core::traits::{Namespace, StateSnapshot, StorageError};
use serde::{Deserialize, Serialize};

use crate::PersistentBackend;
use crate::error::from_io;
use crate::fsutil::{PrivateDir, create_private_dir, ensure_private_dir, sync_dir};
use crate::metrics::StoreMetrics;
use crate::workload::block_key;

mod anchor;
mod files;
mod restore;

pub use anchor::{MAX_ANCHOR_LEN, TrustAnchor};
pub use files::{MAX_STATE_DEPTH, checksum_state_dir, parse_meta, read_meta};
pub use restore::{
    RESTORE_MARK, interrupted_restores, prepare_snapshot_dir, remove_interrupted_restores,
    restore_snapshot, validate_snapshot, verify_files,
};
pub(crate) use restore::{open_checked_copy, remove_entry};

/// Version of the snapshot format written by this crate (4: the state
/// summary carries the monetary digest, `qbind_core::execution::monetary_digest`;
/// 3: account leaves
/// hashed with BLAKE3, see `qbind_core::execution::LEAF_CONTEXT`; 2: the protocol's
/// state root and `executed_height`; version 1 carried a provisional root).
pub const SNAPSHOT_FORMAT_VERSION: u32 = 4;
/// Name of the metadata file.
pub const META_FILE: &str = "meta.json";
/// Name of the checkpoint directory.
pub const STATE_DIR: &str = "state";
/// MainNet bounds of `snapshot_interval_blocks` (runbook §3.2, invariant 14).
pub const MAINNET_INTERVAL_BOUNDS: (u64, u64) = (10_000, 500_000);
/// MainNet default of `snapshot_interval_blocks`.
pub const DEFAULT_INTERVAL_BLOCKS: u64 = 50_000;
/// MainNet default of `max_snapshots`.
pub const DEFAULT_MAX_SNAPSHOTS: usize = 5;
/// Largest accepted `meta.json` (16 MiB: about 100,000 listed files).
pub const MAX_META_BYTES: u64 = 16 << 20;
pub(crate) const TMP_PREFIX: &str = ".tmp-snapshot-";
/// Accounts read per page while validating.
const PAGE: usize = 4096;

/// Computes the hash of the block committed at a height from its stored
/// body. A node passes [`qbind_block_id`]; tests may hash raw bytes.
pub type BlockHasher = dyn Fn(u64, &[u8]) -> Result<[u8; 32], SnapshotError> + Send + Sync;

/// The protocol's block id of a stored committed block (decodes it as a
/// `qbind_core` block).
pub fn qbind_block_id(height: u64, body: &[u8]) -> Result<[u8; 32], SnapshotError> {
    use qbind_core::codec::Decode;
    let block = qbind_core::consensus::Block::from_bytes(body).map_err(|e| {
        SnapshotError::BlockUndecodable {
            height,
            detail: e.to_string(),
        }
    })?;
    Ok(*block.id().as_bytes())
}

/// Size and checksum of one file of `state/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChecksum {
    /// Bytes.
    pub size: u64,
    /// SHA3-256, lowercase hex.
    pub sha3_256: String,
}

/// The contents of `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotMeta {
    /// [`SNAPSHOT_FORMAT_VERSION`].
    pub format_version: u32,
    /// Committed height of the state.
    pub height: u64,
    /// Hash of the block committed at `height`, lowercase hex.
    pub block_hash: String,
    /// Height whose execution produced the account state (the
    /// `executed_height` marker in `Meta`, 0 if absent). The engine executes
    /// in a separate batch from the commit, so it may lag `height`.
    pub executed_height: u64,
    /// The protocol's state root of the account state
    /// ([`StateSummary::root`]), lowercase hex.
    pub state_root: String,
    /// Chain ID as `0x` + 16 hex digits (a JSON number cannot carry all u64s).
    pub chain_id: String,
    /// Epoch at `height`, as given by the node.
    pub epoch: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_unix_ms: u64,
    /// Backend that wrote `state/` (`"fjall"`, `"rocksdb"`).
    pub backend: String,
    /// Every file under `state/` (path relative to it, `/`-separated).
    pub files: BTreeMap<String, FileChecksum>,
}

/// Why a snapshot could not be created, validated or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The snapshot has no `meta.json`.
    #[error("{path}: meta.json is missing")]
    MetaMissing {
        /// The snapshot directory.
        path: PathBuf,
    },
    /// `meta.json` is not valid.
    #[error("{path}: meta.json is damaged: {detail}")]
    MetaInvalid {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        detail: String,
    },
    /// An unknown format version.
    #[error(
        "snapshot format version {found} is not supported (expected {SNAPSHOT_FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// Version found.
        found: u32,
    },
    /// The snapshot is for another chain.
    #[error("snapshot is for chain {found}, expected {expected}")]
    ChainIdMismatch {
        /// Expected chain ID.
        expected: String,
        /// Chain ID in meta.json.
        found: String,
    },
    /// The snapshot was written by another backend.
    #[error("snapshot state was written by backend {found}, expected {expected}")]
    BackendMismatch {
        /// Backend asked for.
        expected: &'static str,
        /// Backend in meta.json.
        found: String,
    },
    /// A file listed in meta.json is absent.
    #[error("state file {file} is missing")]
    MissingFile {
        /// Relative path.
        file: String,
    },
    /// A file not listed in meta.json is present.
    #[error("state file {file} is not listed in meta.json")]
    UnexpectedFile {
        /// Relative path.
        file: String,
    },
    /// An entry of the snapshot is neither a regular file nor a directory
    /// (a symlink, a FIFO, a socket, a device), or a directory where a file
    /// belongs. Snapshots hold only regular files and directories; links are
    /// never followed.
    #[error("snapshot entry {file} is a {kind}, not a regular file or directory; refusing it")]
    NotRegularFile {
        /// Path relative to `state/` (or `meta.json`, `state`).
        file: String,
        /// What it is (`"symlink"`, `"fifo"`, ...).
        kind: &'static str,
    },
    /// `meta.json` is larger than [`MAX_META_BYTES`].
    #[error("{path} has {size} bytes, more than the {limit}-byte limit of meta.json")]
    MetaTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// [`MAX_META_BYTES`].
        limit: u64,
    },
    /// `state/` nests directories deeper than [`MAX_STATE_DEPTH`].
    #[error("snapshot directory {dir} is nested deeper than {limit} levels")]
    TooDeep {
        /// The directory, relative to `state/`.
        dir: String,
        /// [`MAX_STATE_DEPTH`].
        limit: usize,
    },
    /// A trust anchor (`--trusted-snapshot-anchor`) does not parse.
    #[error(
        "invalid trust anchor {input:?}: {reason} (expected HEIGHT:BLOCK_HASH_HEX:STATE_ROOT_HEX, \
         as qbind-node prints it for every snapshot it creates)"
    )]
    InvalidAnchor {
        /// The text (at most [`MAX_ANCHOR_LEN`] characters of it).
        input: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The snapshot is not the one the operator's trust anchor names.
    #[error(
        "snapshot does not match the trusted anchor: its {what} is {found} ({origin}), the anchor \
         says {trusted}; restore a snapshot of the anchored height from a source you trust, or \
         check the anchor against a node you trust"
    )]
    AnchorMismatch {
        /// `"height"`, `"block hash"` or `"state root"`.
        what: &'static str,
        /// The anchor's value.
        trusted: String,
        /// The snapshot's value.
        found: String,
        /// Where `found` comes from (`meta.json` or the restored state).
        origin: &'static str,
    },
    /// A file's size differs (e.g. truncated).
    #[error(
        "state file {file} has {actual} bytes, meta.json says {expected} (truncated or damaged)"
    )]
    SizeMismatch {
        /// Relative path.
        file: String,
        /// Size in meta.json.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// A file's checksum differs (e.g. a flipped bit).
    #[error(
        "state file {file} fails its SHA3-256 checksum (expected {expected}, computed {actual})"
    )]
    ChecksumMismatch {
        /// Relative path.
        file: String,
        /// Checksum in meta.json.
        expected: String,
        /// Checksum computed.
        actual: String,
    },
    /// The state holds another height than meta.json says.
    #[error("state is at height {state}, meta.json says {meta}")]
    HeightMismatch {
        /// Height in meta.json.
        meta: u64,
        /// Height in the state.
        state: u64,
    },
    /// The state's executed-height marker differs from meta.json.
    #[error("state is executed up to height {state}, meta.json says {meta}")]
    ExecutedHeightMismatch {
        /// Executed height in meta.json.
        meta: u64,
        /// Executed height in the state.
        state: u64,
    },
    /// The state root of the (verified) stored summary differs from
    /// meta.json.
    #[error("state root mismatch: meta.json says {expected}, the state's summary has {computed}")]
    StateRootMismatch {
        /// Root in meta.json.
        expected: String,
        /// Root of the stored summary.
        computed: String,
    },
    /// The on-chain key rotation records in `Meta` do not read or decode.
    #[error("stored key rotation records are unreadable: {detail}")]
    KeyLogUnreadable {
        /// Why.
        detail: String,
    },
    /// The state summary in `Meta` does not decode.
    #[error("stored state summary is corrupt: {detail}")]
    SummaryUndecodable {
        /// Decoder message.
        detail: String,
    },
    /// An `Accounts` key is not a 32-byte account id.
    #[error("account entry with a {len}-byte key {key} (account ids are 32 bytes)")]
    BadAccountKey {
        /// The key (at most its first 64 bytes), lowercase hex.
        key: String,
        /// Its length.
        len: usize,
    },
    /// An `Accounts` value does not decode as an account.
    #[error("account {id} does not decode: {detail}")]
    AccountUndecodable {
        /// The account id, lowercase hex.
        id: String,
        /// Decoder message.
        detail: String,
    },
    /// An empty account (nonce 0, balance 0) is stored; the protocol deletes
    /// empty accounts, so this cannot come from a valid state.
    #[error("account {id} is stored but empty")]
    EmptyAccountStored {
        /// The account id, lowercase hex.
        id: String,
    },
    /// The monetary engine's stored records (latest epoch state, epoch
    /// fees) do not match the summary's `monetary` digest.
    #[error(
        "monetary state mismatch: the stored monetary records do not match the summary's \
         monetary digest"
    )]
    MonetaryMismatch,
    /// The accumulator recomputed from the accounts differs from the one in
    /// the stored summary.
    #[error(
        "state accumulator mismatch: the {accounts} stored accounts do not sum to the summary's accumulator"
    )]
    AccumulatorMismatch {
        /// Accounts summed.
        accounts: u64,
    },
    /// The number of stored accounts differs from the summary's count.
    #[error("account count mismatch: the summary says {summary}, {counted} accounts are stored")]
    AccountCountMismatch {
        /// Count in the summary.
        summary: u64,
        /// Accounts counted.
        counted: u64,
    },
    /// The sum of balances overflows `u128`.
    #[error("the sum of account balances overflows u128")]
    BalanceOverflow,
    /// The sum of balances differs from `minted - burned`.
    #[error("supply mismatch: balances sum to {balances}, minted {minted} - burned {burned}")]
    SupplyMismatch {
        /// Sum of all balances.
        balances: u128,
        /// Minted, from the summary.
        minted: u128,
        /// Burned, from the summary.
        burned: u128,
    },
    /// The recomputed block hash differs.
    #[error(
        "block hash mismatch: meta.json says {expected}, the stored block hashes to {computed}"
    )]
    BlockHashMismatch {
        /// Hash in meta.json.
        expected: String,
        /// Hash recomputed.
        computed: String,
    },
    /// The store has no committed block to snapshot.
    #[error("no committed block at height {height} to snapshot")]
    NoCommittedBlock {
        /// The committed height marker (0 if none).
        height: u64,
    },
    /// The stored block does not decode.
    #[error("block at height {height} does not decode: {detail}")]
    BlockUndecodable {
        /// Height.
        height: u64,
        /// Decoder message.
        detail: String,
    },
    /// A snapshot of this height already exists.
    #[error("a snapshot of height {height} already exists")]
    AlreadyExists {
        /// Height.
        height: u64,
    },
    /// The restore target is not empty.
    #[error("restore target {path} exists and is not empty")]
    TargetNotEmpty {
        /// Target directory.
        path: PathBuf,
    },
    /// The configuration violates the MainNet bounds.
    #[error("invalid snapshot configuration: {detail}")]
    InvalidConfig {
        /// What is wrong.
        detail: String,
    },
}

/// Snapshot settings (spec §2.5).
#[derive(Clone, Debug)]
pub struct SnapshotConfig {
    /// `snapshot_dir`.
    pub snapshot_dir: PathBuf,
    /// `snapshot_interval_blocks`.
    pub interval_blocks: u64,
    /// `max_snapshots`: older ones are removed after each new one.
    pub max_snapshots: usize,
    /// Chain ID recorded in and checked against meta.json.
    pub chain_id: u64,
}

impl SnapshotConfig {
    /// MainNet defaults (every 50,000 blocks, keep 5) for `snapshot_dir`.
    #[must_use]
    pub fn mainnet(snapshot_dir: PathBuf, chain_id: u64) -> Self {
        SnapshotConfig {
            snapshot_dir,
            interval_blocks: DEFAULT_INTERVAL_BLOCKS,
            max_snapshots: DEFAULT_MAX_SNAPSHOTS,
            chain_id,
        }
    }

    /// Check the MainNet invariants: interval within
    /// [`MAINNET_INTERVAL_BOUNDS`], at least one snapshot kept.
    pub fn validate_mainnet(&self) -> Result<(), SnapshotError> {
        let (lo, hi) = MAINNET_INTERVAL_BOUNDS;
        if !(lo..=hi).contains(&self.interval_blocks) {
            return Err(SnapshotError::InvalidConfig {
                detail: format!(
                    "snapshot_interval_blocks {} outside [{lo}, {hi}]",
                    self.interval_blocks
                ),
            });
        }
        if self.max_snapshots == 0 {
            return Err(SnapshotError::InvalidConfig {
                detail: "max_snapshots must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// Whether committing `height` should trigger a snapshot.
    #[must_use]
    pub fn is_due(&self, height: u64) -> bool {
        self.interval_blocks > 0 && height > 0 && height.is_multiple_of(self.interval_blocks)
    }
}

fn chain_id_string(chain_id: u64) -> String {
    format!("0x{chain_id:016x}")
}

fn io_err(path: &Path, what: &str, e: &std::io::Error) -> SnapshotError {
    SnapshotError::Storage(from_io(&format!("{what} {}", path.display()), e))
}

/// What a store's state says about itself.
struct Described {
    height: u64,
    executed_height: u64,
    block_hash: [u8; 32],
    /// [`reported_state_root`] of the stored summary.
    state_root: qbind_core::types::Hash32,
}

fn height_marker(snap: &dyn StateSnapshot, key: &[u8], what: &str) -> Result<u64, SnapshotError> {
    match snap.get(Namespace::Meta, key)? {
        None => Ok(0),
        Some(bytes) => Ok(
            u64::from_bytes(&bytes).map_err(|e| StorageError::Corruption {
                what: format!("{what} marker: {e}"),
            })?,
        ),
    }
}

/// The state summary stored in `Meta` (the empty state's if absent).
pub(crate) fn stored_summary(snap: &dyn StateSnapshot) -> Result<StateSummary, SnapshotError> {
    match snap.get(Namespace::Meta, STATE_SUMMARY_KEY)? {
        None => Ok(StateSummary::default()),
        Some(bytes) => {
            StateSummary::from_bytes(&bytes).map_err(|e| SnapshotError::SummaryUndecodable {
                detail: e.to_string(),
            })
        }
    }
}

/// The state root a validator reports for the executed height of `snap`,
/// whose (stored or verified) summary is `summary`: the summary's root,
/// combined with the digest of the on-chain key rotations `snap` records
/// ([`qbind_core::system_tx::reported_root`]; the summary's root alone
/// while it records none). What `meta.json`'s `state_root` holds, so a
/// snapshot's rotation records are checked by its root.
///
/// # Errors
/// [`SnapshotError::KeyLogUnreadable`].
pub fn reported_state_root(
    snap: &dyn StateSnapshot,
    summary: &StateSummary,
) -> Result<qbind_core::types::Hash32, SnapshotError> {
    let log = qbind_core::schema::read_key_rotations(snap).map_err(|e| {
        SnapshotError::KeyLogUnreadable {
            detail: e.to_string(),
        }
    })?;
    Ok(qbind_core::system_tx::reported_root(
        summary.root(),
        qbind_core::system_tx::key_log_digest(&log),
    ))
}

/// Committed height, executed height, block hash and stored summary of a
/// consistent view of a store (nothing is recomputed).
fn describe(
    snap: &dyn StateSnapshot,
    block_hash: &BlockHasher,
) -> Result<Described, SnapshotError> {
    let height = height_marker(
        snap,
        qbind_core::schema::COMMITTED_HEIGHT_KEY,
        "committed height",
    )?;
    let executed_height = height_marker(
        snap,
        qbind_core::schema::EXECUTED_HEIGHT_KEY,
        "executed height",
    )?;
    let body = snap
        .get(Namespace::Blocks, &block_key(height))?
        .ok_or(SnapshotError::NoCommittedBlock { height })?;
    let summary = stored_summary(snap)?;
    Ok(Described {
        height,
        executed_height,
        block_hash: block_hash(height, &body)?,
        state_root: reported_state_root(snap, &summary)?,
    })
}

/// Recompute the state commitment from every entry of `Accounts` and check
/// it against the stored summary: each key is a 32-byte id and each value a
/// non-empty [`Account`]; the accounts' [`leaf_element`]s sum to the
/// summary's accumulator; their number is its account count; their balances
/// sum to `minted - burned`. Returns the verified summary (its
/// [`StateSummary::root`] is the state root). Reads the accounts in pages of
/// 4,096.
pub fn verify_state(snap: &dyn StateSnapshot) -> Result<StateSummary, SnapshotError> {
    let summary = stored_summary(snap)?;
    let mut accumulator = AccountAccumulator::default();
    let mut counted = 0u64;
    let mut balances = 0u128;
    let mut start: Vec<u8> = Vec::new();
    loop {
        let page = snap.scan_range(Namespace::Accounts, &start, None, PAGE)?;
        for (key, value) in &page {
            let (id, account) = decode_account(key, value)?;
            accumulator.add(&leaf_element(&id, &account));
            counted += 1;
            balances = balances
                .checked_add(account.balance)
                .ok_or(SnapshotError::BalanceOverflow)?;
        }
        match page.last() {
            Some((last, _)) if page.len() == PAGE => {
                // The smallest key after `last`.
                start = last.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    if accumulator != summary.accumulator {
        return Err(SnapshotError::AccumulatorMismatch { accounts: counted });
    }
    if counted != summary.accounts {
        return Err(SnapshotError::AccountCountMismatch {
            summary: summary.accounts,
            counted,
        });
    }
    if summary.minted.checked_sub(summary.burned) != Some(balances) {
        return Err(SnapshotError::SupplyMismatch {
            balances,
            minted: summary.minted,
            burned: summary.burned,
        });
    }
    let mut monetary = Vec::new();
    for key in qbind_core::state_sync::CONSENSUS_MONETARY_KEYS {
        if let Some(value) = snap.get(Namespace::Monetary, key)? {
            monetary.push((key.to_vec(), value));
        }
    }
    if qbind_core::state_sync::monetary_records_digest(&monetary) != Some(summary.monetary) {
        return Err(SnapshotError::MonetaryMismatch);
    }
    Ok(summary)
}

/// One entry of `Accounts` as the protocol stores it: a 32-byte id and a
/// decodable, non-empty [`Account`].
pub(crate) fn decode_account(
    key: &[u8],
    value: &[u8],
) -> Result<(qbind_core::types::AccountId, Account), SnapshotError> {
    let id = qbind_core::types::AccountId(<[u8; 32]>::try_from(key).map_err(|_| {
        SnapshotError::BadAccountKey {
            key: hex::encode(key.get(..64).unwrap_or(key)),
            len: key.len(),
        }
    })?);
    let account = Account::from_bytes(value).map_err(|e| SnapshotError::AccountUndecodable {
        id: hex::encode(key),
        detail: e.to_string(),
    })?;
    if account.is_empty() {
        return Err(SnapshotError::EmptyAccountStored {
            id: hex::encode(key),
        });
    }
    Ok((id, account))
}

pub(crate) fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// Create a snapshot of `store` in `config.snapshot_dir` and apply the
/// retention limit. Commits may continue meanwhile; the snapshot's height is
/// the committed height captured by the checkpoint. Only one snapshot should
/// be created at a time per directory.
pub fn create_snapshot<B: PersistentBackend>(
    store: &B,
    config: &SnapshotConfig,
    epoch: u64,
    block_hash: &BlockHasher,
    metrics: &StoreMetrics,
) -> Result<SnapshotMeta, SnapshotError> {
    let started = Instant::now();
    let result = create_inner(store, config, epoch, block_hash);
    match &result {
        Ok(meta) => {
            metrics.record_snapshot(meta.height, started.elapsed());
            let removed = enforce_retention(&config.snapshot_dir, config.max_snapshots)?;
            metrics
                .snapshots_removed
                .fetch_add(removed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Err(error) => {
            metrics
                .snapshots_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(%error, "snapshot failed");
        }
    }
    result
}

fn create_inner<B: PersistentBackend>(
    store: &B,
    config: &SnapshotConfig,
    epoch: u64,
    block_hash: &BlockHasher,
) -> Result<SnapshotMeta, SnapshotError> {
    let dir = &config.snapshot_dir;
    if let PrivateDir::Tightened { was } = ensure_private_dir(dir)? {
        tracing::warn!(path = %dir.display(), was = format!("{was:o}"), "snapshot directory was accessible to others; set to 0700");
    }
    let tmp = dir.join(format!("{TMP_PREFIX}{}", unique_suffix()));
    create_private_dir(&tmp)?;
    let result = (|| {
        let state = tmp.join(STATE_DIR);
        store.checkpoint(&state)?;
        let described = {
            let copy = B::open_dir(&state)?;
            let snap = copy.snapshot()?;
            describe(&*snap, block_hash)?
        };
        let height = described.height;
        let files = checksum_state_dir(&state)?;
        let created_at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let meta = SnapshotMeta {
            format_version: SNAPSHOT_FORMAT_VERSION,
            height,
            block_hash: hex::encode(described.block_hash),
            executed_height: described.executed_height,
            state_root: hex::encode(described.state_root.as_bytes()),
            chain_id: chain_id_string(config.chain_id),
            epoch,
            created_at_unix_ms,
            backend: B::KIND.to_string(),
            files,
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| SnapshotError::MetaInvalid {
            path: tmp.join(META_FILE),
            detail: e.to_string(),
        })?;
        let meta_path = tmp.join(META_FILE);
        std::fs::write(&meta_path, json)
            .and_then(|()| std::fs::File::open(&meta_path)?.sync_all())
            .map_err(|e| io_err(&meta_path, "writing", &e))?;
        sync_dir(&state)?;
        sync_dir(&tmp)?;
        let target = dir.join(height.to_string());
        if target.exists() {
            return Err(SnapshotError::AlreadyExists { height });
        }
        std::fs::rename(&tmp, &target).map_err(|e| io_err(&target, "renaming to", &e))?;
        sync_dir(dir)?;
        tracing::info!(height, path = %target.display(), "snapshot created");
        Ok(meta)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Create a snapshot on a background thread so block commits go on.
pub fn spawn_snapshot<B: PersistentBackend + Send + Sync>(
    store: Arc<B>,
    config: SnapshotConfig,
    epoch: u64,
    block_hash: Arc<BlockHasher>,
    metrics: Arc<StoreMetrics>,
) -> std::thread::JoinHandle<Result<SnapshotMeta, SnapshotError>> {
    std::thread::spawn(move || create_snapshot(&*store, &config, epoch, &*block_hash, &metrics))
}

/// Heights of the complete snapshots in `snapshot_dir`, ascending
/// (directories named by a height that hold a `meta.json`).
pub fn list_snapshots(snapshot_dir: &Path) -> Result<Vec<u64>, SnapshotError> {
    let entries = match std::fs::read_dir(snapshot_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(snapshot_dir, "listing", &e)),
    };
    let mut heights = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(snapshot_dir, "listing", &e))?;
        let name = entry.file_name();
        if let Some(height) = name.to_str().and_then(|n| n.parse::<u64>().ok())
            && entry.path().join(META_FILE).is_file()
        {
            heights.push(height);
        }
    }
    heights.sort_unstable();
    Ok(heights)
}

/// Remove the oldest snapshots beyond `max_snapshots`; returns the heights
/// removed.
pub fn enforce_retention(
    snapshot_dir: &Path,
    max_snapshots: usize,
) -> Result<Vec<u64>, SnapshotError> {
    let heights = list_snapshots(snapshot_dir)?;
    let excess = heights.len().saturating_sub(max_snapshots.max(1));
    let mut removed = Vec::new();
    for height in heights.into_iter().take(excess) {
        let path = snapshot_dir.join(height.to_string());
        // Rename first so a crash mid-removal never leaves a half snapshot
        // that looks complete.
        let doomed =
            snapshot_dir.join(format!("{TMP_PREFIX}removing-{height}-{}", unique_suffix()));
        std::fs::rename(&path, &doomed).map_err(|e| io_err(&path, "renaming", &e))?;
        std::fs::remove_dir_all(&doomed).map_err(|e| io_err(&doomed, "removing", &e))?;
        removed.push(height);
    }
    if !removed.is_empty() {
        sync_dir(snapshot_dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Workload, account_id};
    use qbind_core::codec::Encode;
    use qbind_core::execution::{AccountReader, BackendAccounts};
    use qbind_core::traits::{Durability, MemoryBackend, StateBackend, WriteBatch};

    #[test]
    fn verify_state_pages_through_every_account() {
        // 10,000 accounts: more than two pages.
        let w = Workload {
            accounts: 10_000,
            ..Workload::default()
        };
        let store = MemoryBackend::new();
        for h in 1..=3 {
            w.commit(&store, h).unwrap();
        }
        let summary = BackendAccounts::new(&store).summary().unwrap();
        assert_eq!(summary.accounts, 10_000);
        assert_eq!(verify_state(&*store.snapshot().unwrap()).unwrap(), summary);
        // Deleting the account that sorts last (in the last page) is seen.
        let last = (0..10_000)
            .map(account_id)
            .max()
            .unwrap_or(qbind_core::types::AccountId([0; 32]));
        let mut batch = WriteBatch::new();
        batch.delete(Namespace::Accounts, last.0.to_vec());
        store.write(batch, Durability::Durable).unwrap();
        assert!(matches!(
            verify_state(&*store.snapshot().unwrap()),
            Err(SnapshotError::AccumulatorMismatch { accounts: 9_999 })
        ));
    }

    #[test]
    fn empty_state_verifies_with_the_default_summary() {
        let store = MemoryBackend::new();
        assert_eq!(
            verify_state(&*store.snapshot().unwrap()).unwrap(),
            StateSummary::default()
        );
        // An account without a summary is caught.
        let mut batch = WriteBatch::new();
        batch.put(
            Namespace::Accounts,
            account_id(1).0.to_vec(),
            Account {
                nonce: 0,
                balance: 5,
            }
            .to_bytes(),
        );
        store.write(batch, Durability::Durable).unwrap();
        assert!(matches!(
            verify_state(&*store.snapshot().unwrap()),
            Err(SnapshotError::AccumulatorMismatch { accounts: 1 })
        ));
    }
}
