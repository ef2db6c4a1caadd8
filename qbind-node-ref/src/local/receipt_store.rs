//! Receipts in the validator's store, so that the API answers for executed
//! transactions after a restart (docs/node.md "Public API").
//!
//! For every executed height `h` the API validator's application writes, in
//! the same durable batch as the block's state and the executed-height
//! marker (so a crash keeps both or neither):
//! - `b'r' || h_be` in `Blocks` ([`RECEIPTS_PREFIX`]): a [`HeightRecord`],
//!   the state root after the block and its transaction hashes in order;
//! - `b'x' || tx_hash` in `Blocks` ([`TX_RECEIPT_PREFIX`]): a [`TxRecord`],
//!   the height, position in the block as delivered (the index the API
//!   reports, also from memory) and receipt of one transaction; a hash
//!   executed twice keeps the later receipt, except that a refusal never
//!   replaces the receipt of an earlier inclusion
//!   ([`without_refused_repeats`]).
//!
//! Only the last `retain` heights are kept: the batch of height `h` also
//! deletes the records of at most [`PRUNE_HEIGHTS_PER_BLOCK`] stored heights
//! below `h + 1 - retain`, found by a range scan from the floor marker
//! [`RECEIPTS_FLOOR_KEY`] (each transaction entry only if it still points
//! at that height), and advances the marker in the same batch. The cost is
//! bounded per block: one short scan, and one point read per transaction of
//! the pruned heights. A marker above the target (from a snapshot) is
//! ignored; a damaged old record is deleted and logged, never an error that
//! would stop the validator.

use std::sync::Arc;

use qbind_core::application::{Application, ApplicationError, Applied, CommittedBlock};
use qbind_core::codec::{Decode, DecodeError, Encode, Reader, encode_seq};
use qbind_core::execution::{MIN_RECEIPT_BYTES, Receipt, RejectReason, TxStatus};
use qbind_core::schema::{RECEIPTS_PREFIX, TX_RECEIPT_PREFIX};
use qbind_core::system_tx::SystemTxOutcome;
use qbind_core::traits::{Namespace, StateBackend, StateRead, StorageError, WriteBatch};
use qbind_core::types::{AccountId, Hash32, Height};

use super::api::ReceiptIndex;

/// Heights whose receipts are kept by default (about 100,000 blocks: a day
/// at the local network's block rate).
pub const RECEIPT_RETAIN_HEIGHTS: u64 = 100_000;
/// Key in `Meta` of the lowest height whose receipts may still be stored.
pub const RECEIPTS_FLOOR_KEY: &[u8] = b"receipts_floor";
/// Heights whose receipts one executed block deletes at most.
pub const PRUNE_HEIGHTS_PER_BLOCK: u64 = 4;
/// The encoding version of [`HeightRecord`] and [`TxRecord`].
const VERSION: u8 = 1;
/// The most transactions one height record may declare. A DAG block can
/// carry more than the codec's per-block bound (batches of batches), so
/// this is only a sanity bound: the count is also checked against the bytes
/// present before anything is allocated.
const MAX_TXS: u32 = 1 << 24;

/// What the store keeps about one executed height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeightRecord {
    /// The state root reported for the height: the application's root
    /// after the block, with the on-chain key log once it has one
    /// ([`qbind_core::system_tx::reported_root`]).
    pub state_root: Hash32,
    /// Its executed transactions' hashes, in order.
    pub tx_hashes: Vec<Hash32>,
}

/// What the store keeps about one executed transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxRecord {
    /// The height of its block.
    pub height: Height,
    /// Its position among the block's delivered transactions (system
    /// transactions included).
    pub index: u32,
    /// What happened.
    pub receipt: Receipt,
}

fn version(r: &mut Reader<'_>, what: &'static str) -> Result<(), DecodeError> {
    match r.u8()? {
        VERSION => Ok(()),
        tag => Err(DecodeError::InvalidTag { what, tag }),
    }
}

impl Encode for HeightRecord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        self.state_root.encode_to(out);
        encode_seq(&self.tx_hashes, out);
    }
}

impl Decode for HeightRecord {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        version(r, "receipts height record version")?;
        let state_root = Hash32::decode_from(r)?;
        let n = r.count("receipts height record", MAX_TXS, 32)?;
        let mut tx_hashes = Vec::with_capacity(n);
        for _ in 0..n {
            tx_hashes.push(Hash32::decode_from(r)?);
        }
        Ok(HeightRecord {
            state_root,
            tx_hashes,
        })
    }
}

impl Encode for TxRecord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        self.height.0.encode_to(out);
        self.index.encode_to(out);
        self.receipt.encode_to(out);
    }
}

impl Decode for TxRecord {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        version(r, "receipt record version")?;
        let height = Height(r.u64()?);
        let index = r.u32()?;
        let receipt = Receipt::decode_from(r)?;
        Ok(TxRecord {
            height,
            index,
            receipt,
        })
    }
}

/// The smallest [`TxRecord`] encoding.
pub const MIN_TX_RECORD_BYTES: usize = 1 + 8 + 4 + MIN_RECEIPT_BYTES;

/// Key of the record of `height`.
#[must_use]
pub fn height_key(height: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(RECEIPTS_PREFIX);
    key.extend_from_slice(&height.to_be_bytes());
    key
}

/// Key of the record of transaction `hash`.
#[must_use]
pub fn tx_key(hash: &Hash32) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(TX_RECEIPT_PREFIX);
    key.extend_from_slice(&hash.0);
    key
}

/// Why a stored receipt could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptStoreError {
    /// The store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A record did not decode.
    #[error("stored {what} is corrupt: {source}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Why.
        source: DecodeError,
    },
}

impl From<ReceiptStoreError> for ApplicationError {
    fn from(e: ReceiptStoreError) -> Self {
        match e {
            ReceiptStoreError::Storage(e) => ApplicationError::Storage(e),
            ReceiptStoreError::Corrupt { what, source } => {
                ApplicationError::Corrupt { what, source }
            }
        }
    }
}

fn decode<T: Decode>(what: &'static str, bytes: &[u8]) -> Result<T, ReceiptStoreError> {
    T::from_bytes(bytes).map_err(|source| ReceiptStoreError::Corrupt { what, source })
}

/// The stored receipt of transaction `hash`, if its height is retained.
pub fn tx_receipt<S: StateRead + ?Sized>(
    store: &S,
    hash: &Hash32,
) -> Result<Option<TxRecord>, ReceiptStoreError> {
    store
        .get(Namespace::Blocks, &tx_key(hash))?
        .map(|bytes| decode("receipt record", &bytes))
        .transpose()
}

/// The stored record of `height`, if retained.
pub fn height_record<S: StateRead + ?Sized>(
    store: &S,
    height: u64,
) -> Result<Option<HeightRecord>, ReceiptStoreError> {
    store
        .get(Namespace::Blocks, &height_key(height))?
        .map(|bytes| decode("receipts height record", &bytes))
        .transpose()
}

/// One executed transaction to record: its hash, its position in the
/// block as delivered (the index the API reports), its receipt.
pub type Executed = (Hash32, u32, Receipt);

/// Append to `writes` the deletions that keep the last `retain` heights
/// below `height` (at most [`PRUNE_HEIGHTS_PER_BLOCK`] stored heights per
/// call, found by a range scan so that heights without records cost
/// nothing), then the records of `height`. Deletions come first so that a
/// transaction of `height` whose hash was also in a pruned height keeps its
/// new entry. A stored record that does not decode is deleted and skipped
/// (logged): API bookkeeping never stops the validator.
pub fn write_height<S: StateBackend + ?Sized>(
    store: &S,
    writes: &mut WriteBatch,
    height: Height,
    state_root: Hash32,
    executed: &[Executed],
    retain: u64,
) -> Result<(), ReceiptStoreError> {
    let target = height.0.saturating_add(1).saturating_sub(retain.max(1));
    let stored = match store.get(Namespace::Meta, RECEIPTS_FLOOR_KEY)? {
        Some(bytes) => u64::from_bytes(&bytes).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "receipts floor marker is corrupt; pruning from 0");
            0
        }),
        None => 0,
    };
    // Our own marker is never above the target; one that is came from
    // elsewhere (a snapshot) and is not trusted: scan from 0 (cheap: a
    // range scan skips heights without records).
    let floor = if stored > target { 0 } else { stored };
    let old = store.snapshot()?.scan_range(
        Namespace::Blocks,
        &height_key(floor),
        Some(&height_key(target)),
        PRUNE_HEIGHTS_PER_BLOCK as usize,
    )?;
    let mut new_floor = target;
    if old.len() == PRUNE_HEIGHTS_PER_BLOCK as usize {
        // More may follow: resume after the last one deleted here.
        new_floor = old
            .last()
            .and_then(|(k, _)| height_of_key(k))
            .map_or(target, |h| h.saturating_add(1).min(target));
    }
    for (key, value) in &old {
        let Some(at) = height_of_key(key) else {
            continue;
        };
        match HeightRecord::from_bytes(value) {
            Ok(record) => {
                for hash in &record.tx_hashes {
                    let points_here = match tx_receipt(store, hash) {
                        Ok(found) => found.is_some_and(|r| r.height.0 == at),
                        // A damaged entry goes with its height.
                        Err(ReceiptStoreError::Corrupt { .. }) => true,
                        Err(e) => return Err(e),
                    };
                    if points_here {
                        writes.delete(Namespace::Blocks, tx_key(hash));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(height = at, error = %e, "corrupt receipts record deleted");
            }
        }
        writes.delete(Namespace::Blocks, key.clone());
    }
    writes.put(
        Namespace::Meta,
        RECEIPTS_FLOOR_KEY.to_vec(),
        new_floor.to_bytes(),
    );
    let record = HeightRecord {
        state_root,
        tx_hashes: executed.iter().map(|(hash, _, _)| *hash).collect(),
    };
    writes.put(Namespace::Blocks, height_key(height.0), record.to_bytes());
    for (hash, index, receipt) in executed {
        let record = TxRecord {
            height,
            index: *index,
            receipt: *receipt,
        };
        writes.put(Namespace::Blocks, tx_key(hash), record.to_bytes());
    }
    Ok(())
}

/// The height in a [`height_key`].
fn height_of_key(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(&[RECEIPTS_PREFIX])?;
    <[u8; 8]>::try_from(rest).ok().map(u64::from_be_bytes)
}

/// The staged receipts of a block with each transaction's position in the
/// block as delivered (`delivered`: the hashes of the block's transactions,
/// in order; the position in the staged order where a hash is not among
/// them).
#[must_use]
pub fn with_positions(delivered: &[Hash32], staged: &[(Hash32, Receipt)]) -> Vec<Executed> {
    let positions: std::collections::HashMap<Hash32, usize> = delivered
        .iter()
        .enumerate()
        .map(|(i, hash)| (*hash, i))
        .collect();
    staged
        .iter()
        .enumerate()
        .map(|(i, (hash, receipt))| {
            let at = positions.get(hash).copied().unwrap_or(i);
            (*hash, u32::try_from(at).unwrap_or(u32::MAX), *receipt)
        })
        .collect()
}

/// `executed` without the refusals of transactions whose stored receipt
/// says an earlier block included them: a copy of an included transaction
/// in a later block (a re-broadcast, or a proposer repeating it) is refused
/// there (a used nonce; a key rotation already applied), and that refusal
/// must not hide the inclusion from `GET /v1/tx`. One point read per
/// refused transaction of the block. A damaged stored receipt is
/// overwritten.
pub fn without_refused_repeats<S: StateRead + ?Sized>(
    store: &S,
    executed: Vec<Executed>,
) -> Result<Vec<Executed>, ReceiptStoreError> {
    let mut kept = Vec::with_capacity(executed.len());
    for entry in executed {
        if !entry.2.status.is_included() {
            match tx_receipt(store, &entry.0) {
                Ok(Some(earlier)) if earlier.receipt.status.is_included() => continue,
                Ok(_) | Err(ReceiptStoreError::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        kept.push(entry);
    }
    Ok(kept)
}

/// The receipts of a block's system transactions (`delivered`: the hashes
/// of the block's transactions, in order): a success or
/// [`RejectReason::SystemTxRefused`], with no gas and no fee (no account
/// pays for a system transaction).
#[must_use]
pub fn system_receipts(delivered: &[Hash32], system: &[SystemTxOutcome]) -> Vec<(Hash32, Receipt)> {
    system
        .iter()
        .filter_map(|outcome| {
            let hash = *delivered.get(usize::try_from(outcome.index).ok()?)?;
            let status = match outcome.result {
                Ok(()) => TxStatus::Success,
                Err(_) => TxStatus::Rejected(RejectReason::SystemTxRefused),
            };
            Some((hash, Receipt::free(status)))
        })
        .collect()
}

/// The API validator's application: `inner` (whose executor is wrapped in
/// [`super::api::Recording`], staging each block's receipts in `index`)
/// plus the block's receipt records in its durable batch.
pub(super) struct Persisting<A> {
    /// The chain's application.
    pub(super) inner: A,
    /// Where the executor staged the receipts.
    pub(super) index: Arc<ReceiptIndex>,
    /// Heights whose receipts are kept.
    pub(super) retain: u64,
}

impl<S: StateBackend + ?Sized, A: Application<S>> Application<S> for Persisting<A> {
    fn execute(
        &mut self,
        store: &S,
        block: &CommittedBlock<'_>,
    ) -> Result<Applied, ApplicationError> {
        let mut applied = self.inner.execute(store, block)?;
        // Each delivered transaction (system ones included) is hashed once,
        // here: for the positions, the records and the API's per-block
        // hash list.
        let delivered: Vec<Hash32> = block
            .delivered
            .iter()
            .map(|t| Hash32::of_transaction(t))
            .collect();
        let mut staged = self.index.take_staged(block.height);
        staged.extend(system_receipts(&delivered, block.system));
        let mut executed = with_positions(&delivered, &staged);
        // Block order, system transactions in their places.
        executed.sort_by_key(|(_, index, _)| *index);
        let executed = without_refused_repeats(store, executed)?;
        write_height(
            store,
            &mut applied.writes,
            block.height,
            // The root the validator reports for the height (the
            // application's, with the on-chain key log once it has one).
            qbind_core::system_tx::reported_root(applied.state_root, block.key_log),
            &executed,
            self.retain,
        )?;
        self.index.positioned(block.height, delivered, executed);
        Ok(applied)
    }

    fn state_root(&self, store: &S) -> Result<Hash32, ApplicationError> {
        self.inner.state_root(store)
    }

    fn account_nonce(
        &self,
        store: &S,
        account: &AccountId,
    ) -> Result<Option<u64>, ApplicationError> {
        self.inner.account_nonce(store, account)
    }
}

#[cfg(test)]
mod tests {
    use qbind_api::TxLookup;
    use qbind_core::traits::{Durability, MemoryBackend, StateBackend};

    use super::*;

    fn receipt(status: TxStatus, gas: u64) -> Receipt {
        Receipt {
            status,
            gas_used: gas,
            fee: u128::from(gas) * 3,
            burned: u128::from(gas),
            proposer_reward: u128::from(gas) * 2,
        }
    }

    fn hash(n: u64) -> Hash32 {
        Hash32::digest(&n.to_be_bytes())
    }

    /// Execute heights `from..=to` with `per_block` transactions each
    /// (transaction `h * 100 + i`), one durable batch per height.
    fn run(store: &MemoryBackend, from: u64, to: u64, per_block: u64, retain: u64) {
        for h in from..=to {
            let receipts: Vec<_> = (0..per_block)
                .map(|i| {
                    (
                        hash(h * 100 + i),
                        i as u32,
                        receipt(TxStatus::Success, 21_000 + i),
                    )
                })
                .collect();
            let mut writes = WriteBatch::new();
            write_height(store, &mut writes, Height(h), hash(h), &receipts, retain).unwrap();
            store.write(writes, Durability::Durable).unwrap();
        }
    }

    #[test]
    fn records_round_trip_and_are_found_by_hash_and_height() {
        let store = MemoryBackend::new();
        run(&store, 1, 5, 3, 100);
        let found = tx_receipt(&store, &hash(402)).unwrap().unwrap();
        assert_eq!(found.height, Height(4));
        assert_eq!(found.index, 2);
        assert_eq!(found.receipt, receipt(TxStatus::Success, 21_002));
        let record = height_record(&store, 4).unwrap().unwrap();
        assert_eq!(record.state_root, hash(4));
        assert_eq!(record.tx_hashes, vec![hash(400), hash(401), hash(402)]);
        assert_eq!(tx_receipt(&store, &hash(999)).unwrap(), None);
    }

    #[test]
    fn only_the_last_retain_heights_are_kept_and_the_floor_catches_up() {
        let store = MemoryBackend::new();
        run(&store, 1, 20, 2, 5);
        for h in 1..=15 {
            assert_eq!(height_record(&store, h).unwrap(), None, "height {h}");
            assert_eq!(tx_receipt(&store, &hash(h * 100)).unwrap(), None);
        }
        for h in 16..=20 {
            assert!(height_record(&store, h).unwrap().is_some(), "height {h}");
            assert!(tx_receipt(&store, &hash(h * 100 + 1)).unwrap().is_some());
        }
        // A smaller window later (a restart with another setting): the
        // floor catches up a few heights per block, never all at once.
        run(&store, 21, 21, 1, 2);
        let kept: Vec<u64> = (1..=21)
            .filter(|h| height_record(&store, *h).unwrap().is_some())
            .collect();
        assert_eq!(
            kept,
            vec![20, 21],
            "16..=19 deleted in one block (4 heights)"
        );
        let floor = store
            .get(Namespace::Meta, RECEIPTS_FLOOR_KEY)
            .unwrap()
            .unwrap();
        assert_eq!(u64::from_bytes(&floor).unwrap(), 20);
    }

    #[test]
    fn a_hash_executed_again_keeps_its_later_receipt_when_the_old_height_goes() {
        let store = MemoryBackend::new();
        let refused = receipt(
            TxStatus::Rejected(RejectReason::BadNonce {
                expected: 0,
                got: 1,
            }),
            0,
        );
        let tx = hash(7);
        let mut writes = WriteBatch::new();
        write_height(
            &store,
            &mut writes,
            Height(1),
            hash(1),
            &[(tx, 0, refused)],
            2,
        )
        .unwrap();
        store.write(writes, Durability::Durable).unwrap();
        let mut writes = WriteBatch::new();
        let ok = receipt(TxStatus::Success, 21_000);
        write_height(&store, &mut writes, Height(2), hash(2), &[(tx, 0, ok)], 2).unwrap();
        store.write(writes, Durability::Durable).unwrap();
        // Height 3 prunes height 1, whose hash list names `tx`.
        run(&store, 3, 3, 0, 2);
        assert_eq!(height_record(&store, 1).unwrap(), None);
        let found = tx_receipt(&store, &tx).unwrap().unwrap();
        assert_eq!((found.height, found.receipt), (Height(2), ok));
        // The same hash in the pruned height and in the new one.
        let mut writes = WriteBatch::new();
        let again = receipt(TxStatus::Success, 1);
        write_height(
            &store,
            &mut writes,
            Height(4),
            hash(4),
            &[(tx, 0, again)],
            2,
        )
        .unwrap();
        store.write(writes, Durability::Durable).unwrap();
        assert_eq!(tx_receipt(&store, &tx).unwrap().unwrap().height, Height(4));
    }

    #[test]
    fn a_block_larger_than_the_codec_bound_is_recorded_and_pruned() {
        // A DAG block may carry more than 20,000 transactions (64 batches
        // of 500): its record must read back, or pruning it would fail.
        let store = MemoryBackend::new();
        let big: Vec<Executed> = (0..32_000u64)
            .map(|i| (hash(1_000_000 + i), i as u32, receipt(TxStatus::Success, 1)))
            .collect();
        let mut writes = WriteBatch::new();
        write_height(&store, &mut writes, Height(1), hash(1), &big, 2).unwrap();
        store.write(writes, Durability::Durable).unwrap();
        assert_eq!(
            height_record(&store, 1).unwrap().unwrap().tx_hashes.len(),
            32_000
        );
        run(&store, 2, 3, 1, 2);
        assert_eq!(height_record(&store, 1).unwrap(), None);
        assert_eq!(tx_receipt(&store, &hash(1_000_000)).unwrap(), None);
    }

    #[test]
    fn a_floor_marker_from_elsewhere_neither_stops_pruning_nor_the_validator() {
        let store = MemoryBackend::new();
        run(&store, 1, 3, 1, 100);
        // A snapshot's marker far above the target, and a damaged record.
        let mut writes = WriteBatch::new();
        writes.put(
            Namespace::Meta,
            RECEIPTS_FLOOR_KEY.to_vec(),
            u64::MAX.to_bytes(),
        );
        writes.put(Namespace::Blocks, height_key(2), vec![9, 9]);
        store.write(writes, Durability::Durable).unwrap();
        run(&store, 4, 6, 1, 3);
        for h in 1..=3 {
            assert_eq!(
                store.get(Namespace::Blocks, &height_key(h)).unwrap(),
                None,
                "height {h}"
            );
        }
        assert!(height_record(&store, 6).unwrap().is_some());
    }

    #[test]
    fn positions_are_those_of_the_block_as_delivered() {
        // Transaction 1 did not decode: no receipt, but it keeps its place.
        let delivered: Vec<Vec<u8>> = vec![b"a".to_vec(), b"junk".to_vec(), b"c".to_vec()];
        let ok = receipt(TxStatus::Success, 1);
        let staged = vec![
            (Hash32::digest(b"a"), ok),
            (Hash32::digest(b"c"), ok),
            (hash(77), ok),
        ];
        let delivered: Vec<Hash32> = delivered.iter().map(|t| Hash32::digest(t)).collect();
        let got: Vec<u32> = with_positions(&delivered, &staged)
            .iter()
            .map(|(_, i, _)| *i)
            .collect();
        assert_eq!(got, vec![0, 2, 2], "not delivered: its staged position");
    }

    /// An application that changes nothing and stages no receipt.
    struct Nothing;

    impl Application<MemoryBackend> for Nothing {
        fn execute(
            &mut self,
            _: &MemoryBackend,
            _: &CommittedBlock<'_>,
        ) -> Result<Applied, ApplicationError> {
            Ok(Applied {
                writes: WriteBatch::new(),
                state_root: Hash32([5; 32]),
                report: qbind_core::application::ExecutionReport::default(),
                epoch_closed: None,
            })
        }

        fn state_root(&self, _: &MemoryBackend) -> Result<Hash32, ApplicationError> {
            Ok(Hash32([5; 32]))
        }

        fn account_nonce(
            &self,
            _: &MemoryBackend,
            _: &AccountId,
        ) -> Result<Option<u64>, ApplicationError> {
            Ok(None)
        }
    }

    #[test]
    fn system_transactions_get_receipts_at_their_places_in_the_block() {
        let store = MemoryBackend::new();
        let receipts = Arc::new(ReceiptIndex::default());
        let mut app = Persisting {
            inner: Nothing,
            index: Arc::clone(&receipts),
            retain: 10,
        };
        let delivered = vec![
            b"applied".to_vec(),
            b"transfer".to_vec(),
            b"refused".to_vec(),
        ];
        let [applied_hash, transfer_hash, refused_hash] =
            [0, 1, 2].map(|i| Hash32::digest(&delivered[i]));
        let system = [
            SystemTxOutcome {
                index: 0,
                result: Ok(()),
            },
            SystemTxOutcome {
                index: 2,
                result: Err(qbind_core::key_rotation::KeyRotationError::NoEpochs),
            },
        ];
        let mut execute = |height: u64, system: &[SystemTxOutcome], staged: Receipt| {
            // What the executor stages for the block's one transfer.
            app.index
                .stage(Height(height), vec![(transfer_hash, staged)]);
            let block = CommittedBlock {
                height: Height(height),
                id: Hash32([height as u8; 32]),
                proposer: qbind_core::types::ValidatorId(0),
                txs: &delivered[1..2],
                delivered: &delivered,
                system,
                key_log: qbind_core::system_tx::EMPTY_KEY_LOG,
            };
            let applied = app.execute(&store, &block).unwrap();
            store.write(applied.writes, Durability::Durable).unwrap();
            app.index.executed(Height(height), Hash32([5; 32]));
        };
        let transfer_ok = receipt(TxStatus::Success, 21_000);
        execute(3, &system, transfer_ok);
        let ok = tx_receipt(&store, &applied_hash)
            .unwrap()
            .expect("a receipt");
        assert_eq!((ok.height, ok.index), (Height(3), 0));
        assert_eq!(ok.receipt.status, TxStatus::Success);
        assert_eq!((ok.receipt.gas_used, ok.receipt.fee), (0, 0));
        // The transfer's position counts the system transaction before it.
        let transfer = tx_receipt(&store, &transfer_hash)
            .unwrap()
            .expect("a receipt");
        assert_eq!((transfer.index, transfer.receipt), (1, transfer_ok));
        let refused = tx_receipt(&store, &refused_hash)
            .unwrap()
            .expect("a receipt");
        assert_eq!(refused.index, 2);
        assert_eq!(
            refused.receipt.status,
            TxStatus::Rejected(RejectReason::SystemTxRefused)
        );
        assert_eq!(refused.receipt.status.code(), 209);
        assert_eq!(
            height_record(&store, 3).unwrap().unwrap().tx_hashes,
            vec![applied_hash, transfer_hash, refused_hash]
        );
        assert!(matches!(
            receipts.lookup(&refused_hash),
            TxLookup::Executed { index: 2, .. }
        ));

        // The same three again at height 4, all refused there (the nonce
        // is used, the rotation applied): the receipts of the earlier
        // inclusions stay, in the store and in memory; the rotation refused
        // before may now show its later refusal.
        let all_refused = [0, 2].map(|index| SystemTxOutcome {
            index,
            result: Err(qbind_core::key_rotation::KeyRotationError::NoEpochs),
        });
        let stale = receipt(
            TxStatus::Rejected(RejectReason::BadNonce {
                expected: 1,
                got: 0,
            }),
            0,
        );
        execute(4, &all_refused, stale);
        for (hash, at) in [(applied_hash, 0), (transfer_hash, 1)] {
            let kept = tx_receipt(&store, &hash).unwrap().unwrap();
            assert_eq!((kept.height, kept.index), (Height(3), at));
            assert!(kept.receipt.status.is_included());
            assert!(matches!(
                receipts.lookup(&hash),
                TxLookup::Executed {
                    height: Height(3),
                    ..
                }
            ));
        }
        assert_eq!(
            tx_receipt(&store, &refused_hash).unwrap().unwrap().height,
            Height(4)
        );
        assert_eq!(
            height_record(&store, 4).unwrap().unwrap().tx_hashes,
            vec![refused_hash]
        );
    }

    #[test]
    fn damaged_records_are_typed_errors() {
        let store = MemoryBackend::new();
        run(&store, 1, 1, 1, 10);
        let mut writes = WriteBatch::new();
        writes.put(Namespace::Blocks, tx_key(&hash(100)), vec![VERSION, 0, 1]);
        writes.put(Namespace::Blocks, height_key(1), vec![2]);
        store.write(writes, Durability::Durable).unwrap();
        assert!(matches!(
            tx_receipt(&store, &hash(100)),
            Err(ReceiptStoreError::Corrupt { .. })
        ));
        assert!(matches!(
            height_record(&store, 1),
            Err(ReceiptStoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn encodings_are_pinned() {
        let tx = TxRecord {
            height: Height(0x0102),
            index: 3,
            receipt: receipt(
                TxStatus::Rejected(RejectReason::BadNonce {
                    expected: 5,
                    got: 6,
                }),
                0,
            ),
        };
        let bytes = tx.to_bytes();
        assert_eq!(
            hex::encode(&bytes),
            concat!(
                "01",                               // version
                "0000000000000102",                 // height
                "00000003",                         // index
                "00ce",                             // status code 206 (bad nonce)
                "0000000000000005",                 // expected
                "0000000000000006",                 // got
                "0000000000000000",                 // gas used
                "00000000000000000000000000000000", // fee
                "00000000000000000000000000000000", // burned
                "00000000000000000000000000000000", // proposer reward
            )
        );
        assert_eq!(bytes.len(), MIN_TX_RECORD_BYTES + 16);
        assert_eq!(TxRecord::from_bytes(&bytes).unwrap(), tx);
        let record = HeightRecord {
            state_root: Hash32([0xaa; 32]),
            tx_hashes: vec![Hash32([0x11; 32])],
        };
        assert_eq!(
            hex::encode(record.to_bytes()),
            format!("01{}00000001{}", "aa".repeat(32), "11".repeat(32))
        );
        assert_eq!(
            HeightRecord::from_bytes(&record.to_bytes()).unwrap(),
            record
        );
        // A count the bytes cannot hold is refused before allocating.
        let mut lying = vec![VERSION];
        lying.extend_from_slice(&[0; 32]);
        lying.extend_from_slice(&MAX_TXS.to_be_bytes());
        assert!(matches!(
            HeightRecord::from_bytes(&lying),
            Err(DecodeError::LengthTooLarge { .. })
        ));
    }
}
