//! State sync: a node fetches a snapshot's account state from untrusted
//! peers in chunks, each verified before it is used (issue #18; docs/sync.md
//! "State sync").
//!
//! The protocol has three pieces, all plain data checked here without I/O:
//!
//! 1. **A commit proof** ([`CommitProof`]) certifies one committed height
//!    `H`: the full block at `H`, the headers above it up to a block `w`,
//!    and the three QCs of a 3-chain `t ← u ← w` (views consecutive) that
//!    commits `t ≥ H`. Every header is hash-linked to the one below, so `H`
//!    is an ancestor of a committed block and is committed itself. The
//!    headers at or below `t` that report `exec_height = H` (from at least
//!    four blocks above, all agreeing) give the state root of `H`
//!    ([`CertifiedState`]). That root is as strong as the vote rule behind
//!    it (consensus §C3.7): an honest validator that executes votes only for
//!    a block whose reported root it checked against its own execution of
//!    that height, so every QC's quorum holds at least f + 1 honest
//!    validators that computed the same root (docs/sync.md, "Trust
//!    assumptions"). QCs are checked against the validator set
//!    of their epoch from the node's own [`EpochSchedule`]: nothing about
//!    validator sets is taken from the peer. After on-chain key rotations
//!    the keys are the configured ones as a [`KeyLog`] of the height changed
//!    them ([`CommitProof::verify_with_key_log`]): each rotation is checked
//!    by the same rules (and signature) as when it was executed, and the
//!    certified root commits to the log's digest
//!    ([`crate::system_tx::reported_root`]).
//! 2. **A manifest** ([`StateManifest`]) splits the account space into
//!    `2^b` chunks by the first `b` bits of the account id (`b` from the
//!    account count, [`prefix_bits`]) and gives, for each chunk, the sum of
//!    its accounts' elements of the additive state accumulator, their number
//!    and their balance total. [`StateManifest::check`] holds the manifest to
//!    the certified root: the summary must hash to it, and the chunk sums
//!    must add up to the summary's accumulator, account count and supply
//!    (the summary's root combined with the certified key log's digest once
//!    the chain has applied a rotation).
//! 3. **Pages** ([`StatePage`]) carry one chunk's accounts in ascending id
//!    order, at most [`MAX_PAGE_ACCOUNTS`] at a time; a [`ChunkVerifier`]
//!    checks order, range and non-emptiness page by page and, at the
//!    chunk's last page, that the accounts sum to the manifest's entry.
//!
//! Why this is enough: the chunks partition the id space, so the union of
//! verified chunks has, per chunk, exactly the manifest's sum; the sums add
//! to the certified accumulator. A peer that wants a node to accept a
//! different account set must find a set of records with the same
//! accumulator sum — a collision of the multiset hash
//! ([`crate::execution::leaf_element`]). A forged manifest whose chunk sums
//! still add up to the certified totals only makes honest chunks fail
//! against it; the client then drops that manifest and its peer.
//!
//! The monetary engine's records (`Namespace::Monetary`) travel in the
//! manifest ([`StateManifest::monetary`]). The two that execution reads —
//! the latest epoch state and the fees of the current epoch — are committed
//! to by the state root through the summary's `monetary` digest
//! ([`monetary_records_digest`]), so [`StateManifest::check`] holds them to
//! the certified root too; the per-epoch history records are not (execution
//! never reads them).

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::consensus::{Block, BlockHeader, ConsensusError, QuorumCert, verify_quorum_cert};
use crate::execution::{
    ACCUMULATOR_LANES, Account, AccountAccumulator, StateSummary, leaf_element,
};
use crate::system_tx::{EMPTY_KEY_LOG, SystemTx, reported_root};
use crate::types::{AccountId, Epoch, Hash32, Height, NetworkEnvironment};
use crate::validator::EpochSchedule;

/// Accounts a chunk holds on average, which fixes the number of chunks.
pub const TARGET_CHUNK_ACCOUNTS: u64 = 4096;
/// Largest number of id bits that select a chunk (65,536 chunks).
pub const MAX_PREFIX_BITS: u8 = 16;
/// Largest number of accounts in one page.
pub const MAX_PAGE_ACCOUNTS: u32 = 8192;
/// Largest number of headers in a [`CommitProof`] above its block.
pub const MAX_PROOF_HEADERS: u32 = 64;
/// Largest number of monetary records a manifest carries.
pub const MAX_MONETARY_RECORDS: u32 = 16_384;
/// Largest key or value of a monetary record.
pub const MAX_MONETARY_RECORD_BYTES: u32 = 1024;
/// Largest number of on-chain key rotations a [`KeyLog`] carries (at most
/// one per validator and key role per epoch is applied; 4,096 records are
/// about 21 MB).
pub const MAX_KEY_LOG_RECORDS: u32 = 4096;
/// Bytes of one account on the wire: id, nonce, balance.
pub const ACCOUNT_RECORD_BYTES: usize = 32 + 8 + 16;

/// The two `Monetary` records execution reads (the latest epoch state, the
/// fees of the current epoch), committed to by the state root: the only
/// ones a manifest carries, and the ones a snapshot's summary is checked
/// against.
pub const CONSENSUS_MONETARY_KEYS: [&[u8]; 2] = [
    crate::monetary::MONETARY_STATE_KEY,
    crate::schema::EPOCH_FEES_KEY,
];

/// Whether `key` is one of [`CONSENSUS_MONETARY_KEYS`].
#[must_use]
pub fn is_consensus_monetary_key(key: &[u8]) -> bool {
    CONSENSUS_MONETARY_KEYS.contains(&key)
}

/// The summary's `monetary` field that `records` (the `Monetary` namespace,
/// key and value) imply: [`crate::execution::monetary_digest`] of the latest
/// epoch state and the epoch fees, or zero when neither is present. `None`
/// if the epoch fee record is not a u128.
#[must_use]
pub fn monetary_records_digest(records: &[(Vec<u8>, Vec<u8>)]) -> Option<Hash32> {
    let find = |key: &[u8]| {
        records
            .iter()
            .find(|(k, _)| k.as_slice() == key)
            .map(|(_, v)| v.as_slice())
    };
    let latest = find(crate::monetary::MONETARY_STATE_KEY);
    let fees = find(crate::schema::EPOCH_FEES_KEY);
    if latest.is_none() && fees.is_none() {
        return Some(Hash32::ZERO);
    }
    let fees = match fees {
        None => 0,
        Some(bytes) => u128::from_bytes(bytes).ok()?,
    };
    Some(crate::execution::monetary_digest(latest, fees))
}

/// Why state-sync data was refused. Every variant names what a peer got
/// wrong; none of them is the local node's fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateSyncError {
    /// The data does not decode.
    #[error("undecodable {what}: {source}")]
    Decode {
        /// Which message.
        what: &'static str,
        /// Why.
        source: DecodeError,
    },
    /// A commit proof does not prove what it claims.
    #[error("commit proof refused: {0}")]
    Proof(String),
    /// A key log is out of order, of another height, or holds a rotation
    /// that does not apply.
    #[error("key log refused: {0}")]
    KeyLog(String),
    /// A certificate in a commit proof is invalid.
    #[error("commit proof certificate refused: {0}")]
    Certificate(#[from] ConsensusError),
    /// The manifest does not match the certified state.
    #[error("manifest refused: {0}")]
    Manifest(String),
    /// A page is not part of the chunk asked for, or breaks its order.
    #[error("page of chunk {chunk} refused: {why}")]
    Page {
        /// The chunk.
        chunk: u32,
        /// What is wrong.
        why: String,
    },
    /// The chunk's accounts do not add up to the manifest's entry.
    #[error("chunk {chunk} does not match the manifest: {why}")]
    ChunkMismatch {
        /// The chunk.
        chunk: u32,
        /// Which total differs.
        why: &'static str,
    },
}

/// The number of id bits that select a chunk for a state of `accounts`
/// accounts: the smallest `b` with `accounts ≤ TARGET_CHUNK_ACCOUNTS · 2^b`,
/// at most [`MAX_PREFIX_BITS`]. Deterministic, so every honest peer builds
/// the same manifest for the same state.
#[must_use]
pub fn prefix_bits(accounts: u64) -> u8 {
    let mut bits = 0u8;
    while bits < MAX_PREFIX_BITS && accounts > TARGET_CHUNK_ACCOUNTS << bits {
        bits += 1;
    }
    bits
}

/// The chunk of `id` when chunks are selected by `bits` bits.
#[must_use]
pub fn chunk_of(id: &AccountId, bits: u8) -> u32 {
    if bits == 0 {
        return 0;
    }
    let top = u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]);
    top >> (32 - u32::from(bits.min(MAX_PREFIX_BITS)))
}

/// The smallest account id of chunk `index` (where a server starts reading
/// a chunk). Only the low `bits` bits of `index` are used: callers check
/// that `index < 2^bits` first.
#[must_use]
pub fn chunk_start(index: u32, bits: u8) -> AccountId {
    let mut id = [0u8; 32];
    if bits > 0 {
        let bits = u32::from(bits.min(MAX_PREFIX_BITS));
        let top = (index & ((1 << bits) - 1)) << (32 - bits);
        id[..4].copy_from_slice(&top.to_be_bytes());
    }
    AccountId(id)
}

/// One chunk's share of the state: the sum of its accounts' accumulator
/// elements, their number and their balance total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ChunkSum {
    /// Sum of [`leaf_element`]s.
    pub lanes: AccountAccumulator,
    /// Number of accounts.
    pub accounts: u64,
    /// Sum of balances (wrapping; checked against the supply in total).
    pub balance: u128,
}

impl ChunkSum {
    /// Count one account.
    pub fn add(&mut self, id: &AccountId, account: &Account) {
        self.lanes.add(&leaf_element(id, account));
        self.accounts = self.accounts.wrapping_add(1);
        self.balance = self.balance.wrapping_add(account.balance);
    }
}

impl Encode for ChunkSum {
    fn encode_to(&self, out: &mut Vec<u8>) {
        for lane in &self.lanes.0 {
            lane.encode_to(out);
        }
        self.accounts.encode_to(out);
        self.balance.encode_to(out);
    }
}

impl Decode for ChunkSum {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut lanes = [0u64; ACCUMULATOR_LANES];
        for lane in &mut lanes {
            *lane = r.u64()?;
        }
        Ok(ChunkSum {
            lanes: AccountAccumulator(lanes),
            accounts: r.u64()?,
            balance: r.u128()?,
        })
    }
}

const CHUNK_SUM_BYTES: usize = 8 * ACCUMULATOR_LANES + 8 + 16;

/// What a peer serves about one snapshot: the state summary, the chunk
/// layout and every chunk's sum, and the monetary records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateManifest {
    /// The height whose state it describes: committed and executed (a
    /// snapshot taken while execution lagged is described at its executed
    /// height).
    pub height: Height,
    /// The id of the block committed at `height`.
    pub block_id: Hash32,
    /// The state summary (its root is the state root of `height`).
    pub summary: StateSummary,
    /// Id bits that select a chunk ([`prefix_bits`] of the account count).
    pub prefix_bits: u8,
    /// One entry per chunk, `2^prefix_bits` of them.
    pub chunks: Vec<ChunkSum>,
    /// The `Monetary` records execution reads ([`is_consensus_monetary_key`]),
    /// key and value, keys ascending; committed to by the summary's
    /// `monetary` digest.
    pub monetary: Vec<(Vec<u8>, Vec<u8>)>,
}

impl StateManifest {
    /// Build a manifest from every account of a state, in any order.
    ///
    /// # Errors
    /// [`StateSyncError::Manifest`] if the accounts do not add up to
    /// `summary` (the serving node's own state is inconsistent).
    pub fn build<'a>(
        height: Height,
        block_id: Hash32,
        summary: StateSummary,
        accounts: impl IntoIterator<Item = (&'a AccountId, &'a Account)>,
        monetary: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<StateManifest, StateSyncError> {
        let mut builder = ManifestBuilder::new(height, block_id, summary, monetary);
        for (id, account) in accounts {
            builder.add(id, account);
        }
        builder.finish()
    }

    /// Hold the manifest to a certified state: same height and block, the
    /// summary hashes to the certified root, the chunk layout follows
    /// [`prefix_bits`], and the chunks add up to the summary's accumulator,
    /// account count and supply (`minted - burned`).
    ///
    /// # Errors
    /// [`StateSyncError::Manifest`] naming the first check that fails.
    pub fn check(&self, certified: &CertifiedState) -> Result<(), StateSyncError> {
        let bad = |why: String| Err(StateSyncError::Manifest(why));
        if self.height != certified.height || self.block_id != certified.block_id {
            return bad(format!(
                "it describes height {} block {}, the proof certifies height {} block {}",
                self.height.0, self.block_id, certified.height.0, certified.block_id
            ));
        }
        let root = reported_root(self.summary.root(), certified.key_log);
        if root != certified.state_root {
            return bad(format!(
                "its summary hashes to {} ({root} with the certified key log {}), the certified \
                 state root is {}",
                self.summary.root(),
                certified.key_log,
                certified.state_root
            ));
        }
        let bits = prefix_bits(self.summary.accounts);
        if self.prefix_bits != bits || self.chunks.len() != 1usize << bits {
            return bad(format!(
                "{} chunks of {} bits for {} accounts, expected {} bits",
                self.chunks.len(),
                self.prefix_bits,
                self.summary.accounts,
                bits
            ));
        }
        let mut total = ChunkSum::default();
        for c in &self.chunks {
            total.lanes.add(&c.lanes.0);
            total.accounts = total.accounts.wrapping_add(c.accounts);
            total.balance = total.balance.wrapping_add(c.balance);
        }
        if total.lanes != self.summary.accumulator {
            return bad("its chunk sums do not add up to the accumulator".into());
        }
        if total.accounts != self.summary.accounts
            || self
                .chunks
                .iter()
                .try_fold(0u64, |a, c| a.checked_add(c.accounts))
                .is_none()
        {
            return bad("its chunk account counts do not add up to the account count".into());
        }
        let supply = self.summary.minted.checked_sub(self.summary.burned);
        if supply != Some(total.balance)
            || self
                .chunks
                .iter()
                .try_fold(0u128, |a, c| a.checked_add(c.balance))
                .is_none()
        {
            return bad("its chunk balances do not add up to minted minus burned".into());
        }
        if self.monetary.windows(2).any(|w| w[0].0 >= w[1].0) {
            return bad("its monetary records are not in ascending key order".into());
        }
        if self
            .monetary
            .iter()
            .any(|(k, _)| !is_consensus_monetary_key(k))
        {
            return bad("it carries a monetary record execution does not read".into());
        }
        match monetary_records_digest(&self.monetary) {
            Some(digest) if digest == self.summary.monetary => Ok(()),
            Some(_) => bad("its monetary records differ from the certified monetary state".into()),
            None => bad("its epoch fee record does not decode".into()),
        }
    }
}

impl Encode for StateManifest {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.height.encode_to(out);
        self.block_id.encode_to(out);
        self.summary.encode_to(out);
        self.prefix_bits.encode_to(out);
        (self.chunks.len() as u32).encode_to(out);
        for c in &self.chunks {
            c.encode_to(out);
        }
        (self.monetary.len() as u32).encode_to(out);
        for (k, v) in &self.monetary {
            (k.len() as u32).encode_to(out);
            out.extend_from_slice(k);
            (v.len() as u32).encode_to(out);
            out.extend_from_slice(v);
        }
    }
}

impl Decode for StateManifest {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let height = Height::decode_from(r)?;
        let block_id = Hash32::decode_from(r)?;
        let summary = StateSummary::decode_from(r)?;
        let prefix_bits = r.u8()?;
        if prefix_bits > MAX_PREFIX_BITS {
            return Err(DecodeError::NonCanonical {
                what: "manifest prefix bits",
            });
        }
        let n = r.count("manifest chunks", 1 << MAX_PREFIX_BITS, CHUNK_SUM_BYTES)?;
        if n != 1usize << prefix_bits {
            return Err(DecodeError::NonCanonical {
                what: "manifest chunk count",
            });
        }
        let mut chunks = Vec::with_capacity(n);
        for _ in 0..n {
            chunks.push(ChunkSum::decode_from(r)?);
        }
        let m = r.count("monetary records", MAX_MONETARY_RECORDS, 8)?;
        let mut monetary = Vec::with_capacity(m);
        for _ in 0..m {
            let k = r.bytes("monetary key", MAX_MONETARY_RECORD_BYTES)?;
            let v = r.bytes("monetary value", MAX_MONETARY_RECORD_BYTES)?;
            monetary.push((k, v));
        }
        Ok(StateManifest {
            height,
            block_id,
            summary,
            prefix_bits,
            chunks,
            monetary,
        })
    }
}

/// Builds a [`StateManifest`] from accounts fed one at a time (a server
/// streaming its snapshot).
#[derive(Debug)]
pub struct ManifestBuilder {
    manifest: StateManifest,
}

impl ManifestBuilder {
    /// Start a manifest for a state with `summary`.
    #[must_use]
    pub fn new(
        height: Height,
        block_id: Hash32,
        summary: StateSummary,
        monetary: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Self {
        let bits = prefix_bits(summary.accounts);
        let mut monetary = monetary;
        monetary.retain(|(k, _)| is_consensus_monetary_key(k));
        monetary.sort();
        ManifestBuilder {
            manifest: StateManifest {
                height,
                block_id,
                summary,
                prefix_bits: bits,
                chunks: vec![ChunkSum::default(); 1 << bits],
                monetary,
            },
        }
    }

    /// Count one account.
    pub fn add(&mut self, id: &AccountId, account: &Account) {
        let chunk = chunk_of(id, self.manifest.prefix_bits) as usize;
        self.manifest.chunks[chunk].add(id, account);
    }

    /// The manifest, once its chunks add up to the summary.
    ///
    /// # Errors
    /// [`StateSyncError::Manifest`] if they do not.
    pub fn finish(self) -> Result<StateManifest, StateSyncError> {
        let m = self.manifest;
        let own = CertifiedState {
            height: m.height,
            block_id: m.block_id,
            state_root: m.summary.root(),
            epoch: Epoch(0),
            key_log: EMPTY_KEY_LOG,
        };
        m.check(&own)?;
        Ok(m)
    }
}

/// Up to [`MAX_PAGE_ACCOUNTS`] accounts of one chunk, ids ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatePage {
    /// The snapshot's height.
    pub height: Height,
    /// The chunk.
    pub chunk: u32,
    /// Accounts, ids strictly ascending, each in `chunk`, none empty.
    pub accounts: Vec<(AccountId, Account)>,
    /// Whether this page ends the chunk.
    pub last: bool,
}

impl Encode for StatePage {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.height.encode_to(out);
        self.chunk.encode_to(out);
        (self.accounts.len() as u32).encode_to(out);
        for (id, account) in &self.accounts {
            out.extend_from_slice(&id.0);
            account.encode_to(out);
        }
        u8::from(self.last).encode_to(out);
    }
}

impl Decode for StatePage {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let height = Height::decode_from(r)?;
        let chunk = r.u32()?;
        let n = r.count("page accounts", MAX_PAGE_ACCOUNTS, ACCOUNT_RECORD_BYTES)?;
        let mut accounts = Vec::with_capacity(n);
        for _ in 0..n {
            let id = AccountId(r.array()?);
            accounts.push((id, Account::decode_from(r)?));
        }
        let last = match r.u8()? {
            0 => false,
            1 => true,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "page end flag",
                    tag,
                });
            }
        };
        Ok(StatePage {
            height,
            chunk,
            accounts,
            last,
        })
    }
}

/// What a verified page means for its chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageVerdict {
    /// The chunk continues: ask for the accounts after this id.
    More {
        /// The last id received.
        after: AccountId,
    },
    /// The chunk is complete and matches the manifest.
    Complete,
}

/// Checks one chunk's pages as they arrive against the manifest's entry.
#[derive(Clone, Debug)]
pub struct ChunkVerifier {
    height: Height,
    chunk: u32,
    bits: u8,
    expected: ChunkSum,
    seen: ChunkSum,
    after: Option<AccountId>,
    done: bool,
}

impl ChunkVerifier {
    /// A verifier for chunk `chunk` of a manifest already
    /// [`check`](StateManifest::check)ed.
    ///
    /// # Errors
    /// [`StateSyncError::Page`] if the manifest has no such chunk.
    pub fn new(manifest: &StateManifest, chunk: u32) -> Result<Self, StateSyncError> {
        let expected =
            *manifest
                .chunks
                .get(chunk as usize)
                .ok_or_else(|| StateSyncError::Page {
                    chunk,
                    why: format!("the manifest has {} chunks", manifest.chunks.len()),
                })?;
        Ok(ChunkVerifier {
            height: manifest.height,
            chunk,
            bits: manifest.prefix_bits,
            expected,
            seen: ChunkSum::default(),
            after: None,
            done: false,
        })
    }

    /// The id after which the next page starts (`None`: from the chunk's
    /// start).
    #[must_use]
    pub fn after(&self) -> Option<AccountId> {
        self.after
    }

    /// Whether the chunk is complete.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// Check the next page. On an error the verifier is unchanged, so the
    /// same position can be asked of another peer.
    ///
    /// # Errors
    /// [`StateSyncError::Page`] for a page of another height or chunk, out
    /// of order or range, empty accounts, an empty page that does not end
    /// the chunk, or more accounts than the manifest counts;
    /// [`StateSyncError::ChunkMismatch`] when the last page leaves totals
    /// that differ from the manifest's.
    pub fn feed(&mut self, page: &StatePage) -> Result<PageVerdict, StateSyncError> {
        let chunk = self.chunk;
        let bad = |why: String| Err(StateSyncError::Page { chunk, why });
        if self.done {
            return bad("the chunk is already complete".into());
        }
        if page.height != self.height || page.chunk != self.chunk {
            return bad(format!(
                "it is chunk {} of height {}",
                page.chunk, page.height.0
            ));
        }
        if page.accounts.len() > MAX_PAGE_ACCOUNTS as usize {
            return bad(format!("{} accounts in one page", page.accounts.len()));
        }
        if page.accounts.is_empty() && !page.last {
            return bad("an empty page that does not end the chunk".into());
        }
        let mut seen = self.seen;
        let mut after = self.after;
        for (id, account) in &page.accounts {
            if after.is_some_and(|a| *id <= a) {
                return bad(format!("account {} is out of order", hex_id(id)));
            }
            if chunk_of(id, self.bits) != self.chunk {
                return bad(format!("account {} belongs to another chunk", hex_id(id)));
            }
            if account.is_empty() {
                return bad(format!("account {} is empty", hex_id(id)));
            }
            seen.add(id, account);
            after = Some(*id);
            if seen.accounts > self.expected.accounts {
                return bad(format!(
                    "more accounts than the manifest's {}",
                    self.expected.accounts
                ));
            }
        }
        if page.last {
            let why = if seen.accounts != self.expected.accounts {
                Some("account count")
            } else if seen.balance != self.expected.balance {
                Some("balance total")
            } else if seen.lanes != self.expected.lanes {
                Some("accumulator sum")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(StateSyncError::ChunkMismatch { chunk, why });
            }
        }
        self.seen = seen;
        self.after = after;
        self.done = page.last;
        Ok(match (page.last, after) {
            (false, Some(after)) => PageVerdict::More { after },
            _ => PageVerdict::Complete,
        })
    }
}

fn hex_id(id: &AccountId) -> String {
    id.0[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A committed height, its block and its state root, as a [`CommitProof`]
/// established them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertifiedState {
    /// The height.
    pub height: Height,
    /// The id of the block committed there.
    pub block_id: Hash32,
    /// The state root after executing it.
    pub state_root: Hash32,
    /// The block's epoch.
    pub epoch: Epoch,
    /// The digest of the on-chain key log the root commits to
    /// ([`crate::system_tx::reported_root`]; [`EMPTY_KEY_LOG`] when
    /// verified without a [`KeyLog`]): the manifest's summary with it must
    /// hash to `state_root`.
    pub key_log: Hash32,
}

/// The on-chain key rotations applied up to a snapshot's height, in the
/// order applied, with their blocks' heights (the `key_rotation:` records
/// of its store). A state-syncing node replays them onto its configured key
/// registry before it verifies the commit proof, whose certificates may be
/// signed with rotated keys ([`CommitProof::verify_with_key_log`]); the
/// certified root commits to their digest, so a peer can neither forge nor
/// withhold one. Encoding: version `0x01`, height (u64 BE), count (u32 BE,
/// at most [`MAX_KEY_LOG_RECORDS`]), then each record's height (u64 BE) and
/// system transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyLog {
    /// The height the log runs to (the snapshot's).
    pub height: Height,
    /// The rotations, in the order applied.
    pub records: Vec<(Height, SystemTx)>,
}

/// Version byte of [`KeyLog`]'s encoding.
const KEY_LOG_VERSION: u8 = 1;

impl Encode for KeyLog {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(KEY_LOG_VERSION);
        self.height.encode_to(out);
        (self.records.len() as u32).encode_to(out);
        for (height, tx) in &self.records {
            height.encode_to(out);
            tx.encode_to(out);
        }
    }
}

impl Decode for KeyLog {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != KEY_LOG_VERSION {
            return Err(DecodeError::InvalidTag {
                what: "key log version",
                tag: version,
            });
        }
        let height = Height::decode_from(r)?;
        // A record: its height, the magic, the kind and at least a few
        // bytes of event.
        let n = r.count("key log records", MAX_KEY_LOG_RECORDS, 8 + 9 + 16)?;
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            records.push((Height::decode_from(r)?, SystemTx::decode_from(r)?));
        }
        Ok(KeyLog { height, records })
    }
}

impl KeyLog {
    /// Replay the log onto `base`'s key registry (cheap order checks
    /// first, then one signature verification per record): the schedule
    /// that verifies with it and the log's digest.
    ///
    /// # Errors
    /// [`StateSyncError::KeyLog`] for records out of order, above the log's
    /// height or at height 0, or one that does not apply.
    pub fn replay(
        &self,
        env: NetworkEnvironment,
        base: &EpochSchedule,
    ) -> Result<(EpochSchedule, Hash32), StateSyncError> {
        let bad = |why: String| Err(StateSyncError::KeyLog(why));
        let mut last = Height(1);
        for (height, _) in &self.records {
            if *height < last || *height > self.height {
                return bad(format!(
                    "a record at height {height} (after height {last}, in a log to height {})",
                    self.height
                ));
            }
            last = *height;
        }
        let (registry, digest) = crate::system_tx::replay_key_log(base, env, &self.records)
            .map_err(|(height, e)| {
                StateSyncError::KeyLog(format!("the rotation at height {height}: {e}"))
            })?;
        if self.records.is_empty() {
            return Ok((base.clone(), digest));
        }
        let schedule = base
            .clone()
            .with_key_registry(registry)
            .map_err(|e| StateSyncError::KeyLog(e.to_string()))?;
        Ok((schedule, digest))
    }
}

/// Proof that a block is committed and what the state root after it is.
///
/// `headers` are the headers of the blocks above `block`, heights
/// `block.height + 1, +2, …` in order, each the parent of the next; the last
/// three blocks of `[block] ++ headers` are `t ← u ← w` with consecutive
/// views, `justifies` are `u`'s and `w`'s justify QCs (certifying `t` and
/// `u`) and `qc` certifies `w`: the 3-chain that commits `t`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitProof {
    /// The full block at the proven height.
    pub block: Block,
    /// Headers above it, ascending.
    pub headers: Vec<BlockHeader>,
    /// The justify QCs of the last two blocks.
    pub justifies: [QuorumCert; 2],
    /// A QC on the last block.
    pub qc: QuorumCert,
}

impl Encode for CommitProof {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.block.encode_to(out);
        (self.headers.len() as u32).encode_to(out);
        for h in &self.headers {
            h.encode_to(out);
        }
        self.justifies[0].encode_to(out);
        self.justifies[1].encode_to(out);
        self.qc.encode_to(out);
    }
}

impl Decode for CommitProof {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let block = Block::decode_from(r)?;
        let n = r.count("proof headers", MAX_PROOF_HEADERS, 100)?;
        let mut headers = Vec::with_capacity(n);
        for _ in 0..n {
            headers.push(BlockHeader::decode_from(r)?);
        }
        Ok(CommitProof {
            block,
            headers,
            justifies: [QuorumCert::decode_from(r)?, QuorumCert::decode_from(r)?],
            qc: QuorumCert::decode_from(r)?,
        })
    }
}

impl CommitProof {
    /// Build the proof of `committed[0]`'s height from the committed blocks
    /// `committed[0], committed[1], …` (consecutive heights, as a node's
    /// store holds them): the first header above that reports the state root
    /// of that height, then the first 3-chain at or above it whose committed
    /// block lies within its epoch, and the block above that 3-chain whose
    /// justify certifies it. `None` if the blocks given do not contain one
    /// within [`MAX_PROOF_HEADERS`] headers.
    #[must_use]
    pub fn build(committed: &[Block], schedule: &EpochSchedule) -> Option<CommitProof> {
        let base = committed.first()?;
        let limit = committed.len().min(MAX_PROOF_HEADERS as usize + 2);
        let reporter = (1..limit).find(|&i| committed[i].header().exec_height == base.height())?;
        let certifies = |qc: &QuorumCert, b: &Block| {
            qc.block_id() == b.id() && qc.view() == b.view() && qc.data.epoch == b.epoch()
        };
        for t in reporter..limit.saturating_sub(3) {
            let (tb, ub, wb, xb) = (
                &committed[t],
                &committed[t + 1],
                &committed[t + 2],
                &committed[t + 3],
            );
            if tb.view().next() == ub.view()
                && ub.view().next() == wb.view()
                && certifies(ub.justify(), tb)
                && certifies(wb.justify(), ub)
                && certifies(xb.justify(), wb)
                && tb.height() <= schedule.boundary_height(tb.epoch())
                && t + 2 <= MAX_PROOF_HEADERS as usize
            {
                return Some(CommitProof {
                    block: base.clone(),
                    headers: committed[1..=t + 2]
                        .iter()
                        .map(|b| b.header().clone())
                        .collect(),
                    justifies: [ub.justify().clone(), wb.justify().clone()],
                    qc: xb.justify().clone(),
                });
            }
        }
        None
    }

    /// Check the proof against the node's own validator sets.
    ///
    /// # Errors
    /// [`StateSyncError::Proof`] for a block whose payload does not match
    /// its header, broken hash links or heights, a 3-chain whose views are
    /// not consecutive or whose QCs certify other blocks, a committed block
    /// past its epoch's boundary, or no header reporting the state root of
    /// the block's height; [`StateSyncError::Certificate`] for a QC that does
    /// not verify.
    pub fn verify(
        &self,
        env: NetworkEnvironment,
        schedule: &EpochSchedule,
    ) -> Result<CertifiedState, StateSyncError> {
        self.verify_inner(env, schedule, EMPTY_KEY_LOG)
    }

    /// [`CommitProof::verify`] with the keys of the node's configured
    /// schedule `base` as the on-chain rotations of `log` changed them:
    /// the log must run to the proof's height, and every certificate must
    /// be of an epoch whose keys that log determines (at most one past the
    /// height's: a rotation takes effect at least two epochs after its
    /// block, so later blocks cannot change them). The certified state
    /// carries the log's digest, which the root must commit to
    /// ([`StateManifest::check`]).
    ///
    /// # Errors
    /// Those of [`CommitProof::verify`]; [`StateSyncError::KeyLog`] for a
    /// log that does not replay; [`StateSyncError::Proof`] for a log of
    /// another height or a certificate of a later epoch.
    pub fn verify_with_key_log(
        &self,
        env: NetworkEnvironment,
        base: &EpochSchedule,
        log: &KeyLog,
    ) -> Result<CertifiedState, StateSyncError> {
        let height = self.block.height();
        if log.height != height {
            return Err(StateSyncError::Proof(format!(
                "the key log runs to height {}, the proof is of height {height}",
                log.height
            )));
        }
        let last_known = base.epoch_of_height(height).0.saturating_add(1);
        for qc in self.justifies.iter().chain([&self.qc]) {
            if qc.data.epoch.0 > last_known {
                return Err(StateSyncError::Proof(format!(
                    "a certificate of epoch {}, whose keys the key log of height {height} does \
                     not determine",
                    qc.data.epoch.0
                )));
            }
        }
        let (schedule, digest) = log.replay(env, base)?;
        self.verify_inner(env, &schedule, digest)
    }

    fn verify_inner(
        &self,
        env: NetworkEnvironment,
        schedule: &EpochSchedule,
        key_log: Hash32,
    ) -> Result<CertifiedState, StateSyncError> {
        let bad = |why: String| Err(StateSyncError::Proof(why));
        let b = &self.block;
        let h = b.header();
        if h.payload_digest != b.payload().digest()
            || h.batch_commitment != b.payload().batch_commitment()
            || h.justify_view != b.justify().view()
        {
            return bad("the block's payload or justify does not match its header".into());
        }
        if self.headers.len() > MAX_PROOF_HEADERS as usize {
            return bad(format!("{} headers", self.headers.len()));
        }
        let mut chain: Vec<BlockHeader> = Vec::with_capacity(self.headers.len() + 1);
        chain.push(h.clone());
        let (mut prev_id, mut prev_height) = (b.id(), h.height);
        for next in &self.headers {
            if next.parent_id != prev_id || next.height != prev_height.next() {
                return bad(format!(
                    "the header at height {} does not extend the one below",
                    next.height.0
                ));
            }
            prev_id = next.id();
            prev_height = next.height;
            chain.push(next.clone());
        }
        let n = chain.len();
        if n < 3 {
            return bad("fewer than three blocks: no 3-chain".into());
        }
        let (t, u, w) = (&chain[n - 3], &chain[n - 2], &chain[n - 1]);
        if t.view.next() != u.view || u.view.next() != w.view {
            return bad("the last three views are not consecutive".into());
        }
        let certifies = |qc: &QuorumCert, x: &BlockHeader| {
            qc.block_id() == x.id() && qc.view() == x.view && qc.data.epoch == x.epoch
        };
        let [ju, jw] = &self.justifies;
        if !certifies(ju, t) || u.justify_view != ju.view() {
            return bad("the first justify does not certify the committed block".into());
        }
        if !certifies(jw, u) || w.justify_view != jw.view() {
            return bad("the second justify does not certify its parent".into());
        }
        if !certifies(&self.qc, w) {
            return bad("the last QC does not certify the last block".into());
        }
        if t.height > schedule.boundary_height(t.epoch) {
            return bad("the committed block lies past its epoch's boundary".into());
        }
        for qc in [ju, jw, &self.qc] {
            verify_quorum_cert(env, schedule, qc)?;
        }
        // Every committed header that reports the height must agree, and
        // report it from at least four blocks above (as honest proposers
        // do, and as voters check).
        let reports: Vec<&BlockHeader> = chain[1..n - 2]
            .iter()
            .filter(|x| x.exec_height == h.height)
            .collect();
        if reports
            .iter()
            .any(|x| x.height.0 < h.height.0.saturating_add(4))
        {
            return bad("a header reports the height from fewer than four blocks above".into());
        }
        if reports
            .windows(2)
            .any(|w| w[0].exec_state_root != w[1].exec_state_root)
        {
            return bad("two committed headers report different roots for the height".into());
        }
        let root = reports.first().map(|x| x.exec_state_root);
        let Some(state_root) = root else {
            return bad(format!(
                "no committed header reports the state root of height {}",
                h.height.0
            ));
        };
        Ok(CertifiedState {
            height: h.height,
            block_id: b.id(),
            state_root,
            epoch: h.epoch,
            key_log,
        })
    }
}

/// Decode a peer's message, naming it in the error.
///
/// # Errors
/// [`StateSyncError::Decode`].
pub fn decode<T: Decode>(what: &'static str, bytes: &[u8]) -> Result<T, StateSyncError> {
    T::from_bytes(bytes).map_err(|source| StateSyncError::Decode { what, source })
}
