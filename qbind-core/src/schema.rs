//! The storage schema: what a validator persists, under which namespace and
//! key, in which encoding (DESIGN "A storage schema module in core").
//!
//! One place for the layout that the replica ([`crate::replica`]) writes,
//! that persistent stores, snapshots and pruning (`qbind-store`) read, and
//! that a restarted validator loads back ([`load_persisted`]). Values are
//! the canonical encodings of [`crate::codec`]; heights are u64 big-endian so
//! that keys sort by height.
//!
//! | namespace | key | value |
//! |---|---|---|
//! | `Safety` | [`SAFETY_KEY`] | [`SafetyState`] |
//! | `Blocks` | `'c'` ‖ height (u64 BE) ([`committed_block_key`]) | committed [`Block`] |
//! | `Blocks` | `'p'` ‖ block id ([`pending_block_key`]) | uncommitted [`Block`] |
//! | `QuorumCerts` | height (u64 BE) | the committed block's justify QC |
//! | `Blocks` | `'d'` ‖ batch digest ([`committed_batch_key`]) | the [`crate::dag::SignedBatch`] of a committed, delivered block, written when the DAG layer drops it from memory ([`archive_batches_batch`], its `DagBatches` copy deleted then); deleted with its block by pruning (`qbind-store`) |
//! | `DagBatches` | batch digest ([`batch_digest_key`]) | [`crate::dag::SignedBatch`] the DAG layer holds; deleted when pruned ([`forget_batches_batch`]) |
//! | `Meta` | [`COMMITTED_HEIGHT_KEY`] | u64 |
//! | `Meta` | [`EXECUTED_HEIGHT_KEY`] | u64: the height whose transactions were last executed |
//! | `Meta` | [`STATE_SUMMARY_KEY`] | [`crate::execution::StateSummary`] |
//! | `Meta` | [`KEY_ROTATION_PREFIX`] ‖ height (u64 BE) ‖ index (u16 BE) ([`key_rotation_key`]) | an applied on-chain key rotation's [`crate::system_tx::SystemTx`] |
//! | `Accounts` | account id (32 bytes) | [`crate::execution::Account`] |
//! | `Monetary` | [`MONETARY_STATE_KEY`], [`monetary_epoch_key`] | [`crate::monetary::MonetaryEpochState`] |
//! | `Monetary` | [`EPOCH_FEES_KEY`] | u128: fees paid so far in the current epoch |

use crate::codec::{Decode, DecodeError, Encode};
use crate::consensus::{Block, SafetyState};
use crate::dag::SignedBatch;
use crate::traits::{Namespace, StateBackend, StorageError, WriteBatch};
use crate::types::{Hash32, Height};

pub use crate::execution::STATE_SUMMARY_KEY;
pub use crate::monetary::{MONETARY_STATE_KEY, epoch_key as monetary_epoch_key};

/// Key of the safety state in [`Namespace::Safety`].
pub const SAFETY_KEY: &[u8] = b"safety_state";
/// Key of the committed height marker in [`Namespace::Meta`].
pub const COMMITTED_HEIGHT_KEY: &[u8] = b"committed_height";
/// Prefix of committed blocks in [`Namespace::Blocks`] (then the height, u64 BE).
pub const COMMITTED_BLOCK_PREFIX: u8 = b'c';
/// Prefix of uncommitted blocks in [`Namespace::Blocks`] (then the block id).
pub const PENDING_BLOCK_PREFIX: u8 = b'p';
/// Prefix in [`Namespace::Blocks`] of the data of a batch a committed block
/// ordered, once the DAG layer no longer holds it (then the batch digest): it
/// answers peers' fetches of old blocks' data and lives as long as the block
/// ([`archive_batches_batch`]).
pub const COMMITTED_BATCH_PREFIX: u8 = b'd';
/// Prefix in [`Namespace::Blocks`] of a node's record of one executed height
/// (then the height, u64 BE): its state root and transaction hashes. Written
/// and read by the reference node's receipt store (`qbind-node-ref`), never
/// by the core; reserved here so that no core key collides with it.
pub const RECEIPTS_PREFIX: u8 = b'r';
/// Prefix in [`Namespace::Blocks`] of one transaction's receipt, with its
/// height and position (then the transaction hash). Like
/// [`RECEIPTS_PREFIX`]: the reference node's, reserved here.
pub const TX_RECEIPT_PREFIX: u8 = b'x';
/// Key of the height whose transactions were last delivered for execution,
/// in [`Namespace::Meta`].
pub const EXECUTED_HEIGHT_KEY: &[u8] = b"executed_height";
/// Key in [`Namespace::Meta`] of the system-transaction activation height
/// the store was run with
/// ([`crate::consensus::ConsensusConfig::system_tx_activation`]; absent:
/// 0, or a store of a version without system transactions).
pub const SYSTEM_TX_ACTIVATION_KEY: &[u8] = b"system_tx_activation";
/// Prefix in [`Namespace::Meta`] of the state root of one executed height
/// (then the height, u64 BE). The [`Replica`](crate::replica::Replica) keeps
/// the roots of the last [`EXECUTED_ROOTS_KEPT`] heights, so a restarted
/// validator still checks the roots proposals report (consensus §C3.7).
pub const EXECUTED_ROOT_PREFIX: &[u8] = b"executed_root:";
pub use crate::consensus::EXECUTED_ROOTS_KEPT;
/// Key in [`Namespace::Monetary`] of the fees paid so far in the current
/// epoch (u128 BE), updated with every executed block.
pub const EPOCH_FEES_KEY: &[u8] = b"epoch_fees";
/// Prefix in [`Namespace::Meta`] of an on-chain key rotation the replica
/// applied (then the height of its block, u64 BE, and its position among
/// the block's applied rotations, u16 BE): the
/// [`SystemTx`](crate::system_tx::SystemTx) bytes. Written with the
/// block's executed-height marker; replayed in key order by
/// [`crate::replica::Replica::open`].
pub const KEY_ROTATION_PREFIX: &[u8] = b"key_rotation:";

/// Why persisted state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A persisted record did not decode.
    #[error("persisted {what} is corrupt: {source}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Why.
        source: DecodeError,
    },
}

/// Key of the committed block at `height` in [`Namespace::Blocks`].
#[must_use]
pub fn committed_block_key(height: u64) -> Vec<u8> {
    let mut k = vec![COMMITTED_BLOCK_PREFIX];
    k.extend_from_slice(&height.to_be_bytes());
    k
}

/// Key of the uncommitted block `id` in [`Namespace::Blocks`].
#[must_use]
pub fn pending_block_key(id: &Hash32) -> Vec<u8> {
    let mut k = vec![PENDING_BLOCK_PREFIX];
    k.extend_from_slice(id.as_bytes());
    k
}

/// Key in [`Namespace::Blocks`] of the archived data of a committed block's
/// batch ([`COMMITTED_BATCH_PREFIX`]).
#[must_use]
pub fn committed_batch_key(digest: &Hash32) -> Vec<u8> {
    let mut k = vec![COMMITTED_BATCH_PREFIX];
    k.extend_from_slice(digest.as_bytes());
    k
}

/// Key of a DAG batch in [`Namespace::DagBatches`].
#[must_use]
pub fn batch_key(batch: &SignedBatch) -> Vec<u8> {
    batch_digest_key(&batch.batch.digest())
}

/// Key in [`Namespace::DagBatches`] of the batch with this digest.
#[must_use]
pub fn batch_digest_key(digest: &Hash32) -> Vec<u8> {
    digest.0.to_vec()
}

/// Key in [`Namespace::Meta`] of the `index`-th on-chain key rotation
/// applied at `height` ([`KEY_ROTATION_PREFIX`]).
#[must_use]
pub fn key_rotation_key(height: Height, index: u16) -> Vec<u8> {
    let mut k = KEY_ROTATION_PREFIX.to_vec();
    k.extend_from_slice(&height.0.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Every on-chain key rotation the store records, in the order applied,
/// with the height of its block.
///
/// # Errors
/// [`PersistError`] if the store fails or a record does not decode.
pub fn read_key_rotations<S: crate::traits::StateRead + ?Sized>(
    store: &S,
) -> Result<Vec<(Height, crate::system_tx::SystemTx)>, PersistError> {
    const WHAT: &str = "key rotation record";
    let mut out = Vec::new();
    for (key, bytes) in store.scan_prefix(Namespace::Meta, KEY_ROTATION_PREFIX, usize::MAX)? {
        let rest = &key[KEY_ROTATION_PREFIX.len()..];
        let height = rest
            .get(..8)
            .filter(|_| rest.len() == 10)
            .and_then(|h| <[u8; 8]>::try_from(h).ok())
            .map(u64::from_be_bytes)
            .ok_or(PersistError::Corrupt {
                what: WHAT,
                source: DecodeError::NonCanonical {
                    what: "key rotation record key",
                },
            })?;
        out.push((Height(height), decode_record(WHAT, &bytes)?));
    }
    Ok(out)
}

/// Decode a stored record, naming it in the error.
pub fn decode_record<T: Decode>(what: &'static str, bytes: &[u8]) -> Result<T, PersistError> {
    T::from_bytes(bytes).map_err(|source| PersistError::Corrupt { what, source })
}

/// Read a u64 marker (committed or executed height) from [`Namespace::Meta`].
pub fn read_height<S: StateBackend + ?Sized>(
    store: &S,
    key: &'static [u8],
) -> Result<Option<Height>, PersistError> {
    let what = if key == COMMITTED_HEIGHT_KEY {
        "committed height"
    } else if key == SYSTEM_TX_ACTIVATION_KEY {
        "system transaction activation height"
    } else {
        "executed height"
    };
    match store.get(Namespace::Meta, key)? {
        Some(bytes) => Ok(Some(Height(decode_record::<u64>(what, &bytes)?))),
        None => Ok(None),
    }
}

/// What a validator persisted.
#[derive(Debug, Default)]
pub struct Persisted {
    /// The safety state, if it ever wrote one.
    pub safety: Option<SafetyState>,
    /// The last committed blocks, ascending.
    pub committed: Vec<Block>,
    /// Leader selection's entries of the committed blocks just below
    /// `committed`, ascending: with [`Window::history`] above what the byte
    /// budget let load, the rest of the history, read one block at a time.
    pub leader_history: Vec<crate::consensus::leader::CommittedEntry>,
    /// Uncommitted blocks it stored.
    pub pending: Vec<Block>,
    /// DAG batches it stored.
    pub batches: Vec<SignedBatch>,
    /// Height whose transactions were last delivered for execution.
    pub executed: Height,
}

/// Which committed blocks a restart loads into memory ([`load_persisted`]):
/// the newest ones, at most [`Window::blocks`], and beyond the first
/// [`Window::floor`] only while their held bytes fit [`Window::bytes`].
///
/// Issue #21: with the count alone, a validator restarted after a busy run
/// loaded up to 4,096 blocks whatever their size (DevNet blocks carry their
/// transactions: hundreds of MB to GB) before the running window's byte
/// budget trimmed them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// At most this many blocks.
    pub blocks: usize,
    /// The byte budget (`Block::held_bytes`) of the blocks past the floor.
    pub bytes: usize,
    /// This many of the newest blocks are loaded whatever their size
    /// (within `blocks`).
    pub floor: usize,
    /// Leader selection's entries (proposer and QC signers, not the
    /// blocks) are read for this many of the newest blocks, past the ones
    /// loaded whole (even beyond `blocks`:
    /// [`crate::consensus::leader::LeaderPolicy::history_blocks`]).
    pub history: usize,
}

impl Window {
    /// The newest `blocks` blocks, whatever their size.
    #[must_use]
    pub fn count(blocks: usize) -> Self {
        Window {
            blocks,
            bytes: usize::MAX,
            floor: blocks,
            history: 0,
        }
    }

    /// The window a replica with `cfg` loads at a restart: the count limit and byte
    /// budget of the running window
    /// ([`crate::consensus::ConsensusConfig::committed_window`],
    /// [`crate::consensus::ConsensusConfig::committed_window_bytes`]), floor
    /// [`crate::consensus::MIN_COMMITTED_WINDOW`] blocks, and the entries
    /// leader selection remembers. Transactions of blocks left out that were
    /// not executed yet are executed from the store at start
    /// ([`crate::replica::Replica::start`]).
    ///
    /// With the DAG layer the floor is the whole count, as before the byte
    /// budget: the layer rebuilds its record of what was committed (each
    /// author's highest committed round, the committed slots, the batches
    /// it must still archive) from these blocks, and a running validator
    /// keeps that record for longer than any byte budget's worth of blocks.
    /// Its blocks carry certificates, not transactions.
    #[must_use]
    pub fn at_restart(cfg: &crate::consensus::ConsensusConfig) -> Self {
        let floor = match cfg.payload_mode {
            crate::dag::PayloadMode::Fifo => crate::consensus::MIN_COMMITTED_WINDOW,
            crate::dag::PayloadMode::Dag => cfg.committed_window,
        };
        Window {
            blocks: cfg.committed_window,
            bytes: cfg.committed_window_bytes,
            floor,
            history: cfg.leader_policy.history_blocks(),
        }
    }
}

/// Load what a validator persisted: its safety state, the committed blocks
/// `window` selects, its uncommitted blocks, its DAG batches and its
/// executed height.
pub fn load_persisted<S: StateBackend + ?Sized>(
    store: &S,
    window: Window,
) -> Result<Persisted, PersistError> {
    let safety = match store.get(Namespace::Safety, SAFETY_KEY)? {
        Some(bytes) => Some(decode_record("safety state", &bytes)?),
        None => None,
    };
    let mut committed: Vec<Block> = Vec::new();
    let mut leader_history = Vec::new();
    if let Some(height) = read_height(store, COMMITTED_HEIGHT_KEY)? {
        // Newest first, one block decoded at a time (heights pruned from
        // the store are skipped, as before).
        let reach = window.blocks.max(1).max(window.history);
        let from = height.0.saturating_sub(reach as u64 - 1).max(1);
        let mut held = 0usize;
        let mut full = false;
        for h in (from..=height.0).rev() {
            let Some(bytes) = store.get(Namespace::Blocks, &committed_block_key(h))? else {
                continue;
            };
            let block: Block = decode_record("committed block", &bytes)?;
            held = held.saturating_add(block.held_bytes());
            full = full
                || committed.len() >= window.blocks.max(1)
                || (committed.len() >= window.floor.max(1) && held > window.bytes);
            if !full {
                committed.push(block);
            } else if committed.len() + leader_history.len() < window.history {
                leader_history.push(crate::consensus::leader::CommittedEntry::of(&block));
            } else {
                break;
            }
        }
        committed.reverse();
        leader_history.reverse();
    }
    let mut pending = Vec::new();
    for (_, bytes) in store.scan_prefix(Namespace::Blocks, &[PENDING_BLOCK_PREFIX], usize::MAX)? {
        pending.push(decode_record("uncommitted block", &bytes)?);
    }
    let mut batches = Vec::new();
    for (_, bytes) in store.scan_prefix(Namespace::DagBatches, &[], usize::MAX)? {
        batches.push(decode_record("DAG batch", &bytes)?);
    }
    let executed = read_height(store, EXECUTED_HEIGHT_KEY)?.unwrap_or(Height(0));
    Ok(Persisted {
        safety,
        committed,
        leader_history,
        pending,
        batches,
        executed,
    })
}

/// The write that records the safety state.
#[must_use]
pub fn safety_batch(state: &SafetyState) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(Namespace::Safety, SAFETY_KEY.to_vec(), state.to_bytes());
    batch
}

/// The write that stores an uncommitted block.
#[must_use]
pub fn pending_block_batch(block: &Block) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(
        Namespace::Blocks,
        pending_block_key(&block.id()),
        block.to_bytes(),
    );
    batch
}

/// The write that stores a DAG batch.
#[must_use]
pub fn dag_batch_batch(batch_data: &SignedBatch) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(
        Namespace::DagBatches,
        batch_key(batch_data),
        batch_data.to_bytes(),
    );
    batch
}

/// The write that deletes uncommitted blocks that can never commit.
#[must_use]
pub fn forget_blocks_batch(ids: &[Hash32]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for id in ids {
        batch.delete(Namespace::Blocks, pending_block_key(id));
    }
    batch
}

/// The write that deletes DAG batches that pruning dropped.
#[must_use]
pub fn forget_batches_batch(digests: &[Hash32]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for d in digests {
        batch.delete(Namespace::DagBatches, batch_digest_key(d));
    }
    batch
}

/// The write that keeps the data of committed, delivered blocks' batches
/// once the DAG layer drops them from memory: under
/// [`committed_batch_key`], for as long as the blocks are kept. A batch
/// whose block `store` no longer holds (pruned by a block retention shorter
/// than the DAG layer's) is left out: nothing would ever delete it.
pub fn archive_batches_batch<S: StateBackend + ?Sized>(
    store: &S,
    batches: &[crate::dag::ArchivedBatch],
) -> Result<WriteBatch, StorageError> {
    let mut batch = WriteBatch::new();
    let mut kept: Option<(Height, bool)> = None;
    for a in batches {
        let stored = match kept {
            Some((h, stored)) if h == a.height => stored,
            _ => {
                let stored = store
                    .get(Namespace::Blocks, &committed_block_key(a.height.0))?
                    .is_some();
                kept = Some((a.height, stored));
                stored
            }
        };
        if stored {
            batch.put(
                Namespace::Blocks,
                committed_batch_key(&a.digest),
                a.batch.to_bytes(),
            );
        }
    }
    Ok(batch)
}

/// The archived data of a committed block's batch ([`committed_batch_key`])
/// as stored, for a peer that fetches it: not decoded nor hashed here (the
/// peer checks it against the certified digest before using it).
pub fn read_archived_batch<S: StateBackend + ?Sized>(
    store: &S,
    digest: &Hash32,
) -> Result<Option<Vec<u8>>, StorageError> {
    store.get(Namespace::Blocks, &committed_batch_key(digest))
}

/// The stored data of the batch with this digest: what the DAG layer holds
/// ([`Namespace::DagBatches`]) or else the archived copy of a committed
/// block's batch. The digest is checked, so a damaged record is an error,
/// never another batch.
pub fn read_batch<S: StateBackend + ?Sized>(
    store: &S,
    digest: &Hash32,
) -> Result<Option<SignedBatch>, PersistError> {
    let bytes = match store.get(Namespace::DagBatches, &batch_digest_key(digest))? {
        Some(bytes) => bytes,
        None => match store.get(Namespace::Blocks, &committed_batch_key(digest))? {
            Some(bytes) => bytes,
            None => return Ok(None),
        },
    };
    let sb: SignedBatch = decode_record("DAG batch", &bytes)?;
    if sb.batch.digest() != *digest {
        return Err(PersistError::Corrupt {
            what: "DAG batch",
            source: DecodeError::NonCanonical {
                what: "batch stored under another digest",
            },
        });
    }
    Ok(Some(sb))
}

/// Key in [`Namespace::Meta`] of the state root of executed height `height`.
#[must_use]
pub fn executed_root_key(height: Height) -> Vec<u8> {
    let mut key = EXECUTED_ROOT_PREFIX.to_vec();
    key.extend_from_slice(&height.0.to_be_bytes());
    key
}

/// Record the state root of executed `height` in `batch`, and drop the one
/// that falls out of the last [`EXECUTED_ROOTS_KEPT`].
pub fn put_executed_root(batch: &mut WriteBatch, height: Height, root: Hash32) {
    batch.put(Namespace::Meta, executed_root_key(height), root.to_bytes());
    if let Some(old) = height.0.checked_sub(EXECUTED_ROOTS_KEPT) {
        batch.delete(Namespace::Meta, executed_root_key(Height(old)));
    }
}

/// The stored state roots of the last [`EXECUTED_ROOTS_KEPT`] heights up to
/// `executed`, ascending; heights without a record are skipped.
pub fn read_executed_roots<S: StateBackend + ?Sized>(
    store: &S,
    executed: Height,
) -> Result<Vec<(Height, Hash32)>, PersistError> {
    let first = executed.0.saturating_sub(EXECUTED_ROOTS_KEPT - 1).max(1);
    if executed.0 < first {
        return Ok(Vec::new());
    }
    let keys: Vec<Vec<u8>> = (first..=executed.0)
        .map(|h| executed_root_key(Height(h)))
        .collect();
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let values = store.multi_get(Namespace::Meta, &refs)?;
    let mut roots = Vec::new();
    for (h, value) in (first..=executed.0).zip(values) {
        if let Some(bytes) = value {
            roots.push((Height(h), decode_record("executed state root", &bytes)?));
        }
    }
    Ok(roots)
}

/// Put a u64 height marker into `batch`.
pub fn put_height(batch: &mut WriteBatch, key: &'static [u8], height: Height) {
    batch.put(Namespace::Meta, key.to_vec(), height.0.to_bytes());
}

/// The atomic batch that records one committed block: body, QC, height
/// marker, and removal of its uncommitted copy.
#[must_use]
pub fn commit_batch(block: &Block) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(
        Namespace::Blocks,
        committed_block_key(block.height().0),
        block.to_bytes(),
    );
    batch.delete(Namespace::Blocks, pending_block_key(&block.id()));
    batch.put(
        Namespace::QuorumCerts,
        block.height().0.to_be_bytes().to_vec(),
        block.justify().to_bytes(),
    );
    put_height(&mut batch, COMMITTED_HEIGHT_KEY, block.height());
    batch
}

/// Committed blocks from `from` upwards, newest first (the order of a
/// [`crate::consensus::SyncResponse`]): at most `max` blocks and, past the
/// first, at most `max_bytes` of encoding; it stops at the first height the
/// store does not hold (above the committed height, or pruned).
pub fn committed_blocks_from<S: StateBackend + ?Sized>(
    store: &S,
    from: Height,
    max: u32,
    max_bytes: usize,
) -> Result<Vec<Block>, PersistError> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut bytes = 0usize;
    for h in (from.0..).take(max as usize) {
        let Some(raw) = store.get(Namespace::Blocks, &committed_block_key(h))? else {
            break;
        };
        bytes = bytes.saturating_add(raw.len());
        if !blocks.is_empty() && bytes > max_bytes {
            break;
        }
        blocks.push(decode_record("committed block", &raw)?);
    }
    blocks.reverse();
    Ok(blocks)
}
