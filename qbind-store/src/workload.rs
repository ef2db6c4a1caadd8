//! The deterministic block-commit workload of the crash campaign, the
//! snapshot tests and the benchmarks. It writes real protocol state: accounts
//! ([`Account`] under their 32-byte [`AccountId`] in `Accounts`) and the
//! [`StateSummary`] in `Meta`, produced by `qbind_core::execution` as
//! [`StateTransition`]s. Block 1 is a genesis [`credit`] of
//! [`INITIAL_BALANCE`] to every account; every later block makes transfers
//! between pairs of accounts (sender nonce + 1, [`BURN_PER_TRANSFER`] burned),
//! so the sum of balances is always `minted - burned`.
//!
//! Each block is one durable [`WriteBatch`]: the transition's account writes
//! and summary, the block body, its QC, the committed-height marker and the
//! executed-height marker, with the key layout of
//! [`qbind_core::schema::commit_batch`] (`b'c' || height_be` in `Blocks`,
//! `height_be` in `QuorumCerts`, `committed_height` and `executed_height` in
//! `Meta`).
//!
//! Everything a block writes is a function of its height (the transfers are
//! deterministic, so replaying blocks `1..=H` in memory gives the state of
//! height H). [`CrashChecker`] uses that to verify a reopened store
//! incrementally; [`verify_committed_state`] checks everything from scratch.

use std::collections::BTreeSet;

use qbind_core::codec::{Decode, Encode};
use qbind_core::execution::{
    Account, AccountChange, AccountReader, BackendAccounts, CommitmentDelta, Ledger, StateError,
    StateSummary, StateTransition, credit,
};
use qbind_core::schema::{COMMITTED_BLOCK_PREFIX, COMMITTED_HEIGHT_KEY, EXECUTED_HEIGHT_KEY};
use qbind_core::traits::{Durability, Namespace, StateBackend, StorageError, WriteBatch};
use qbind_core::types::AccountId;
use sha3::{Digest, Sha3_256};

/// Balance every account receives in block 1.
pub const INITIAL_BALANCE: u128 = 1_000_000;
/// Units each transfer burns from its sender (as a fee would).
pub const BURN_PER_TRANSFER: u128 = 1;
/// Upper bound (exclusive) of a transfer's amount.
const MAX_AMOUNT: u64 = 1_000;

/// Shape of the workload.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Distinct accounts (all created by block 1).
    pub accounts: u64,
    /// Accounts changed per block after block 1 (two per transfer).
    pub updates_per_block: u64,
    /// Bytes per block body.
    pub body_len: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            accounts: 2_000,
            updates_per_block: 20,
            body_len: 512,
        }
    }
}

/// Key of a committed block body in [`Namespace::Blocks`].
#[must_use]
pub fn block_key(height: u64) -> Vec<u8> {
    let mut k = vec![COMMITTED_BLOCK_PREFIX];
    k.extend_from_slice(&height.to_be_bytes());
    k
}

/// Key of a committed block's QC in [`Namespace::QuorumCerts`].
#[must_use]
pub fn qc_key(height: u64) -> Vec<u8> {
    height.to_be_bytes().to_vec()
}

/// The id of workload account `index` (a hash, so ids spread over the key
/// space like real ones).
#[must_use]
pub fn account_id(index: u64) -> AccountId {
    let mut hasher = Sha3_256::new();
    hasher.update(b"QBIND:STORE_WORKLOAD_ACCOUNT:v1");
    hasher.update(index.to_be_bytes());
    AccountId(hasher.finalize().into())
}

fn filler(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block: [u8; 32] = Sha3_256::digest(seed).into();
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha3_256::digest(block).into();
    }
    out.truncate(len);
    out
}

/// SplitMix64: a cheap deterministic mixer for transfer amounts.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Workload {
    /// The account indices block `height` changes: all of them for block 1
    /// (genesis), otherwise `updates_per_block` distinct ones.
    #[must_use]
    pub fn touched(&self, height: u64) -> Vec<u64> {
        let n = self.accounts.max(1);
        if height <= 1 {
            return (0..self.accounts).collect();
        }
        let k = self.updates_per_block.min(n);
        let start = height.wrapping_mul(0x9E37_79B9) % n;
        let stride = if n > 1 { (height % (n - 1)) | 1 } else { 1 };
        let mut seen = BTreeSet::new();
        let mut i = start;
        while (seen.len() as u64) < k {
            if !seen.insert(i) {
                i = (i + 1) % n;
                continue;
            }
            i = (i + stride) % n;
        }
        seen.into_iter().collect()
    }

    /// The genesis credit of [`INITIAL_BALANCE`] to the accounts `indices`,
    /// against `state` (block 1 credits all of them at once; the benchmark
    /// loads a large genesis in chunks with this).
    pub fn genesis_chunk<R: AccountReader + ?Sized>(
        &self,
        state: &R,
        indices: std::ops::Range<u64>,
    ) -> Result<StateTransition, StateError> {
        let credits: Vec<(AccountId, u128)> =
            indices.map(|i| (account_id(i), INITIAL_BALANCE)).collect();
        credit(state, &credits)
    }

    /// The state transition of block `height` against `state` (which must be
    /// the state of height `height - 1`).
    pub fn transition<R: AccountReader + ?Sized>(
        &self,
        state: &R,
        height: u64,
    ) -> Result<StateTransition, StateError> {
        if height <= 1 {
            return self.genesis_chunk(state, 0..self.accounts);
        }
        let touched = self.touched(height);
        let mut changes = Vec::with_capacity(touched.len());
        let mut burned: u128 = 0;
        for (j, pair) in (0u64..).zip(touched.chunks_exact(2)) {
            let (Some(&from), Some(&to)) = (pair.first(), pair.get(1)) else {
                continue;
            };
            let (from, to) = (account_id(from), account_id(to));
            let before_from = state.account(&from)?;
            let before_to = state.account(&to)?;
            let mut sender = before_from;
            let mut recipient = before_to;
            let fee = sender.balance.min(BURN_PER_TRANSFER);
            sender.balance -= fee;
            let amount =
                u128::from(mix(height.wrapping_mul(1 << 20) ^ j) % MAX_AMOUNT).min(sender.balance);
            sender.balance -= amount;
            sender.nonce = sender.nonce.saturating_add(1);
            recipient.balance = recipient
                .balance
                .checked_add(amount)
                .ok_or(StateError::SupplyOverflow { what: "balance" })?;
            burned = burned
                .checked_add(fee)
                .ok_or(StateError::SupplyOverflow { what: "burned" })?;
            changes.push(AccountChange {
                id: from,
                before: before_from,
                after: sender,
            });
            changes.push(AccountChange {
                id: to,
                before: before_to,
                after: recipient,
            });
        }
        let delta = CommitmentDelta::of(&changes);
        StateTransition::from_changes(&state.summary()?, changes, &delta, 0, burned)
    }

    /// The body stored for block `height`.
    #[must_use]
    pub fn body(&self, height: u64) -> Vec<u8> {
        let mut seed = b"body".to_vec();
        seed.extend_from_slice(&height.to_be_bytes());
        let mut b = height.to_be_bytes().to_vec();
        b.extend(filler(&seed, self.body_len.saturating_sub(8)));
        b
    }

    /// The QC stored for block `height`.
    #[must_use]
    pub fn qc(&self, height: u64) -> Vec<u8> {
        let mut seed = b"qc".to_vec();
        seed.extend_from_slice(&height.to_be_bytes());
        filler(&seed, 96)
    }

    /// The atomic batch that commits block `height` with its `transition`:
    /// account writes, summary, body, QC and both height markers.
    #[must_use]
    pub fn block_batch(&self, transition: &StateTransition, height: u64) -> WriteBatch {
        let mut batch = transition.to_write_batch();
        batch.put(Namespace::Blocks, block_key(height), self.body(height));
        batch.put(Namespace::QuorumCerts, qc_key(height), self.qc(height));
        batch.put(
            Namespace::Meta,
            COMMITTED_HEIGHT_KEY.to_vec(),
            height.to_bytes(),
        );
        batch.put(
            Namespace::Meta,
            EXECUTED_HEIGHT_KEY.to_vec(),
            height.to_bytes(),
        );
        batch
    }

    /// Commit block `height` durably on top of the store's current state
    /// (read-modify-write through [`BackendAccounts`]); returns its
    /// transition.
    pub fn commit<S: StateBackend + ?Sized>(
        &self,
        store: &S,
        height: u64,
    ) -> Result<StateTransition, StateError> {
        let transition = self.transition(&BackendAccounts::new(store), height)?;
        store.write(self.block_batch(&transition, height), Durability::Durable)?;
        Ok(transition)
    }

    /// The account state after blocks `1..=height`, replayed in memory.
    pub fn ledger_at(&self, height: u64) -> Result<Ledger, StateError> {
        let mut ledger = Ledger::new();
        for h in 1..=height {
            let transition = self.transition(&ledger, h)?;
            ledger.apply(&transition)?;
        }
        Ok(ledger)
    }
}

fn height_marker<S: StateBackend + ?Sized>(
    store: &S,
    key: &[u8],
    what: &str,
) -> Result<u64, StorageError> {
    match store.get(Namespace::Meta, key)? {
        None => Ok(0),
        Some(bytes) => u64::from_bytes(&bytes).map_err(|e| StorageError::Corruption {
            what: format!("{what} marker: {e}"),
        }),
    }
}

/// The committed height recorded in `Meta` (0 if none).
pub fn committed_height<S: StateBackend + ?Sized>(store: &S) -> Result<u64, StorageError> {
    height_marker(store, COMMITTED_HEIGHT_KEY, "committed height")
}

/// The executed height recorded in `Meta` (0 if none).
pub fn executed_height<S: StateBackend + ?Sized>(store: &S) -> Result<u64, StorageError> {
    height_marker(store, EXECUTED_HEIGHT_KEY, "executed height")
}

/// What the crash checks found wrong.
#[derive(Debug, thiserror::Error)]
pub enum CrashCheckError {
    /// The store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// State could not be read, or the model could not be advanced.
    #[error("state: {0}")]
    State(#[from] StateError),
    /// An acknowledged block is missing.
    #[error("acknowledged height {acknowledged} but the store is at {recovered}")]
    LostAcknowledged {
        /// Highest height acknowledged (or verified before).
        acknowledged: u64,
        /// Height found after reopening.
        recovered: u64,
    },
    /// The state differs from the one the committed height implies.
    #[error("at height {height}: {detail}")]
    Inconsistent {
        /// Recovered height.
        height: u64,
        /// What differs.
        detail: String,
    },
}

/// Verifies a store after each reopen of the crash campaign *incrementally*:
/// it keeps the in-memory state of the last verified height and, at each
/// check, replays only the blocks committed since, so a campaign costs
/// linear rather than quadratic time. Each [`CrashChecker::check`] verifies:
///
/// - no acknowledged block is missing (committed height ≥ acknowledged and
///   ≥ the last verified height) and at most one unacknowledged block became
///   durable;
/// - every block committed since the last check is complete: body and QC
///   equal, every account it changed holds the value of the recovered height;
/// - the last durable block's invariants: both height markers equal the
///   recovered height, the stored [`StateSummary`] equals the replayed one
///   (which commits to every account and the supply), the whole stored
///   account set sums to that summary ([`crate::snapshot::verify_state`]:
///   O(accounts), independent of the height, so an account lost or altered
///   anywhere is caught at once), and nothing of the next block is present
///   (no body or QC beyond, and every account the next block would change
///   still has its recovered value).
///
/// Bodies and QCs verified earlier are not re-read; [`verify_committed_state`]
/// does the full check (the campaign runs it once at the end).
#[derive(Clone, Debug)]
pub struct CrashChecker {
    workload: Workload,
    model: Ledger,
    verified: u64,
}

impl CrashChecker {
    /// A checker that has verified nothing yet (height 0, empty state).
    #[must_use]
    pub fn new(workload: Workload) -> Self {
        CrashChecker {
            workload,
            model: Ledger::new(),
            verified: 0,
        }
    }

    /// The height verified last.
    #[must_use]
    pub fn verified_height(&self) -> u64 {
        self.verified
    }

    /// Check the reopened `store` given the highest `acknowledged` height;
    /// returns the recovered height. On error the checker is unchanged.
    pub fn check<S: StateBackend + ?Sized>(
        &mut self,
        store: &S,
        acknowledged: u64,
    ) -> Result<u64, CrashCheckError> {
        let height = committed_height(store)?;
        let must_have = acknowledged.max(self.verified);
        if height < must_have {
            return Err(CrashCheckError::LostAcknowledged {
                acknowledged: must_have,
                recovered: height,
            });
        }
        let bad = |detail: String| CrashCheckError::Inconsistent { height, detail };
        if height > acknowledged + 1 {
            return Err(bad(format!(
                "more than one unacknowledged block durable (acknowledged {acknowledged})"
            )));
        }
        let executed = executed_height(store)?;
        if executed != height {
            return Err(bad(format!("executed height marker is {executed}")));
        }
        // Replay the new blocks and check their bodies and QCs.
        let mut model = self.model.clone();
        let mut ids = BTreeSet::new();
        for h in self.verified + 1..=height {
            let transition = self.workload.transition(&model, h)?;
            model.apply(&transition)?;
            ids.extend(transition.changes.iter().map(|c| c.id));
            if store.get(Namespace::Blocks, &block_key(h))? != Some(self.workload.body(h)) {
                return Err(bad(format!("body of block {h} missing or different")));
            }
            if store.get(Namespace::QuorumCerts, &qc_key(h))? != Some(self.workload.qc(h)) {
                return Err(bad(format!("QC of block {h} missing or different")));
            }
        }
        // Nothing of the next block.
        let next = height + 1;
        if store.get(Namespace::Blocks, &block_key(next))?.is_some()
            || store.get(Namespace::QuorumCerts, &qc_key(next))?.is_some()
        {
            return Err(bad(format!("body or QC of block {next} present")));
        }
        ids.extend(self.workload.touched(next).into_iter().map(account_id));
        // Every changed (or next-to-change) account holds the model's value.
        let ids: Vec<AccountId> = ids.into_iter().collect();
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.0.as_slice()).collect();
        let stored = store.multi_get(Namespace::Accounts, &keys)?;
        let mut differing = 0usize;
        for (id, value) in ids.iter().zip(&stored) {
            let want = model.get(id);
            let got = match value {
                None => Account::default(),
                Some(bytes) => Account::from_bytes(bytes)
                    .map_err(|source| StateError::CorruptAccount { id: *id, source })?,
            };
            let well_formed = value.is_some() != want.is_empty();
            if got != want || !well_formed {
                differing += 1;
            }
        }
        if differing > 0 {
            return Err(bad(format!(
                "{differing} of {} checked accounts differ from the state of height {height}",
                ids.len()
            )));
        }
        let summary = BackendAccounts::new(store).summary()?;
        if summary != model.summary_value() {
            return Err(bad(format!(
                "stored state summary (root {}) differs from the replayed one (root {})",
                summary.root(),
                model.root()
            )));
        }
        // The whole account set (not only the accounts checked above) sums
        // to that summary.
        crate::snapshot::verify_state(&*store.snapshot()?).map_err(|e| {
            bad(format!(
                "stored accounts do not match the state summary: {e}"
            ))
        })?;
        self.model = model;
        self.verified = height;
        Ok(height)
    }
}

/// Check a reopened store against the workload from scratch: everything
/// [`CrashChecker::check`] checks starting from height 0, plus that the
/// store holds exactly the replayed accounts and exactly one body and QC per
/// height (no extra entries). Returns the recovered height.
pub fn verify_committed_state<S: StateBackend + ?Sized>(
    workload: &Workload,
    store: &S,
    acknowledged: u64,
) -> Result<u64, CrashCheckError> {
    let mut checker = CrashChecker::new(*workload);
    let height = checker.check(store, acknowledged)?;
    let bad = |detail: String| CrashCheckError::Inconsistent { height, detail };
    let want: Vec<(Vec<u8>, Vec<u8>)> = checker
        .model
        .sorted_accounts()
        .into_iter()
        .map(|(id, account)| (id.0.to_vec(), account.to_bytes()))
        .collect();
    let accounts = store.scan_prefix(Namespace::Accounts, &[], usize::MAX)?;
    if accounts != want {
        return Err(bad(format!(
            "{} accounts stored, {} expected (or one differs)",
            accounts.len(),
            want.len()
        )));
    }
    let bodies = store.scan_prefix(Namespace::Blocks, &[COMMITTED_BLOCK_PREFIX], usize::MAX)?;
    let qcs = store.scan_prefix(Namespace::QuorumCerts, &[], usize::MAX)?;
    let expected = usize::try_from(height).unwrap_or(usize::MAX);
    if bodies.len() != expected || qcs.len() != expected {
        return Err(bad(format!(
            "{} bodies and {} QCs stored, {height} expected",
            bodies.len(),
            qcs.len()
        )));
    }
    Ok(height)
}

/// The summary a workload store has after block `height` (convenience for
/// tests and benchmarks).
pub fn summary_at(workload: &Workload, height: u64) -> Result<StateSummary, StateError> {
    Ok(workload.ledger_at(height)?.summary_value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qbind_core::traits::MemoryBackend;

    #[test]
    fn touched_accounts_are_distinct_and_in_range() {
        let w = Workload::default();
        assert_eq!(w.touched(1).len() as u64, w.accounts);
        for h in 2..200 {
            let t = w.touched(h);
            assert_eq!(t.len() as u64, w.updates_per_block);
            assert!(t.iter().all(|i| *i < w.accounts));
        }
    }

    #[test]
    fn blocks_are_real_transfers_that_conserve_supply() {
        let w = Workload::default();
        let store = MemoryBackend::new();
        for h in 1..=50 {
            w.commit(&store, h).unwrap();
        }
        let ledger = w.ledger_at(50).unwrap();
        let summary = BackendAccounts::new(&store).summary().unwrap();
        assert_eq!(summary, ledger.summary_value());
        assert_eq!(summary, ledger.recompute_summary());
        assert_eq!(summary.accounts, w.accounts);
        assert_eq!(summary.minted, INITIAL_BALANCE * u128::from(w.accounts));
        // 10 transfers per block after genesis, one unit burned each.
        assert_eq!(summary.burned, 49 * 10 * BURN_PER_TRANSFER);
        assert_eq!(
            ledger.total_balance(),
            Some(summary.minted - summary.burned)
        );
        // Transfers moved value and bumped nonces.
        let moved = ledger
            .sorted_accounts()
            .iter()
            .filter(|(_, a)| a.balance != INITIAL_BALANCE)
            .count();
        assert!(moved > 100, "{moved}");
        assert!(ledger.sorted_accounts().iter().any(|(_, a)| a.nonce > 0));
        assert_eq!(summary_at(&w, 50).unwrap(), summary);
    }

    #[test]
    fn verifier_accepts_a_clean_store_and_rejects_partial_blocks() {
        let w = Workload::default();
        let store = MemoryBackend::new();
        let mut checker = CrashChecker::new(w);
        assert_eq!(checker.check(&store, 0).unwrap(), 0);
        for h in 1..=30 {
            w.commit(&store, h).unwrap();
            if h % 7 == 0 {
                assert_eq!(checker.check(&store, h).unwrap(), h);
            }
        }
        assert_eq!(checker.check(&store, 30).unwrap(), 30);
        assert_eq!(verify_committed_state(&w, &store, 30).unwrap(), 30);
        assert_eq!(verify_committed_state(&w, &store, 29).unwrap(), 30);
        assert!(matches!(
            verify_committed_state(&w, &store, 31),
            Err(CrashCheckError::LostAcknowledged { .. })
        ));
        // Part of block 31's account writes without its markers: both the
        // incremental and the full check see it.
        let next = w.transition(&BackendAccounts::new(&store), 31).unwrap();
        let mut partial = WriteBatch::new();
        for change in next.changes.iter().take(3) {
            partial.put(
                Namespace::Accounts,
                change.id.0.to_vec(),
                change.after.to_bytes(),
            );
        }
        store.write(partial, Durability::Durable).unwrap();
        let before = checker.verified_height();
        assert!(matches!(
            checker.check(&store, 30),
            Err(CrashCheckError::Inconsistent { .. })
        ));
        assert_eq!(checker.verified_height(), before, "unchanged on error");
        assert!(matches!(
            verify_committed_state(&w, &store, 30),
            Err(CrashCheckError::Inconsistent { .. })
        ));
    }

    #[test]
    fn checker_rejects_a_lost_body_a_stale_summary_and_a_regression() {
        let w = Workload::default();
        // A block whose body is missing.
        let store = MemoryBackend::new();
        for h in 1..=5 {
            w.commit(&store, h).unwrap();
        }
        let mut batch = WriteBatch::new();
        batch.delete(Namespace::Blocks, block_key(4));
        store.write(batch, Durability::Durable).unwrap();
        let err = CrashChecker::new(w).check(&store, 5).unwrap_err();
        assert!(err.to_string().contains("body of block 4"), "{err}");

        // A summary that does not match the accounts.
        let store = MemoryBackend::new();
        for h in 1..=5 {
            w.commit(&store, h).unwrap();
        }
        let mut checker = CrashChecker::new(w);
        checker.check(&store, 5).unwrap();
        let mut batch = WriteBatch::new();
        batch.put(
            Namespace::Meta,
            qbind_core::execution::STATE_SUMMARY_KEY,
            summary_at(&w, 4).unwrap().to_bytes(),
        );
        store.write(batch, Durability::Durable).unwrap();
        let err = checker.check(&store, 5).unwrap_err();
        assert!(err.to_string().contains("summary"), "{err}");

        // An account no recent block touched, lost: caught by the check of
        // the whole account set against the summary.
        let store = MemoryBackend::new();
        for h in 1..=5 {
            w.commit(&store, h).unwrap();
        }
        let mut checker = CrashChecker::new(w);
        checker.check(&store, 5).unwrap();
        w.commit(&store, 6).unwrap();
        let mut recent: BTreeSet<u64> = w.touched(6).into_iter().collect();
        recent.extend(w.touched(7));
        let untouched = (0..w.accounts).find(|i| !recent.contains(i)).unwrap();
        let mut batch = WriteBatch::new();
        batch.delete(Namespace::Accounts, account_id(untouched).0.to_vec());
        store.write(batch, Durability::Durable).unwrap();
        let err = checker.check(&store, 6).unwrap_err();
        assert!(err.to_string().contains("accumulator"), "{err}");

        // A store that went back below a verified height.
        let older = MemoryBackend::new();
        for h in 1..=3 {
            w.commit(&older, h).unwrap();
        }
        assert!(matches!(
            checker.check(&older, 0),
            Err(CrashCheckError::LostAcknowledged {
                acknowledged: 5,
                recovered: 3
            })
        ));
    }
}
