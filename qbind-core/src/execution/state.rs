//! Account state as execution sees it (spec §2.1 "Account State: Nonce +
//! Balance per account").
//!
//! Execution only *reads* state through [`AccountReader`] and returns a
//! [`StateTransition`] (the changed accounts with their before and after
//! values and the new [`StateSummary`]); the caller applies it, to the
//! in-memory [`Ledger`] with [`Ledger::apply`] or to any
//! [`StateBackend`] with [`StateTransition::to_write_batch`]. An absent
//! account and an account with nonce 0 and balance 0 are the same thing.

use std::collections::HashMap;

use super::overlay::Overlay;
use super::state_root::{CommitmentDelta, StateSummary};
use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::traits::{Namespace, StateBackend, StorageError, WriteBatch};
use crate::types::{AccountId, Hash32};

/// Key of the [`StateSummary`] in [`Namespace::Meta`].
pub const STATE_SUMMARY_KEY: &[u8] = b"execution/state_summary";

/// One account: 24 bytes on the wire, nonce u64 BE then balance u128 BE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Account {
    /// Number of transactions this account has had included.
    pub nonce: u64,
    /// Spendable units.
    pub balance: u128,
}

impl Account {
    /// Whether this is the empty account (not stored, not committed to).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nonce == 0 && self.balance == 0
    }
}

impl Encode for Account {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.nonce.encode_to(out);
        self.balance.encode_to(out);
    }
}

impl Decode for Account {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Account {
            nonce: r.u64()?,
            balance: r.u128()?,
        })
    }
}

/// One account's value before and after a state transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AccountChange {
    /// The account.
    pub id: AccountId,
    /// Its value before.
    pub before: Account,
    /// Its value after.
    pub after: Account,
}

/// Why state could not be read or a transition not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored account did not decode.
    #[error("stored account {id:?} is corrupt: {source}")]
    CorruptAccount {
        /// The account.
        id: AccountId,
        /// The decoding error.
        source: DecodeError,
    },
    /// The stored state summary did not decode.
    #[error("stored state summary is corrupt: {source}")]
    CorruptSummary {
        /// The decoding error.
        source: DecodeError,
    },
    /// A transition was computed against a different state than the one it
    /// is applied to.
    #[error("transition expects state root {expected} but the state has {actual}")]
    StaleTransition {
        /// The root the transition was computed from.
        expected: Hash32,
        /// The root of the state it was applied to.
        actual: Hash32,
    },
    /// A transition's `before` value does not match the state.
    #[error("account {id:?} does not hold the value the transition expects")]
    StaleAccount {
        /// The account.
        id: AccountId,
    },
    /// A supply counter would leave `u128` / `u64`.
    #[error("supply counter overflow in {what}")]
    SupplyOverflow {
        /// Which counter.
        what: &'static str,
    },
}

/// Read access to account state; execution needs nothing else.
pub trait AccountReader {
    /// The account `id` (the empty account if absent).
    fn account(&self, id: &AccountId) -> Result<Account, StateError>;

    /// The current state summary.
    fn summary(&self) -> Result<StateSummary, StateError>;
}

/// A state change produced by execution (or issuance), not yet applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateTransition {
    /// The root of the state this was computed from.
    pub prior_root: Hash32,
    /// Changed accounts, ascending by id, each at most once, `before != after`.
    pub changes: Vec<AccountChange>,
    /// The summary after the change.
    pub summary: StateSummary,
}

impl StateTransition {
    /// The state root after the change.
    #[must_use]
    pub fn root(&self) -> Hash32 {
        self.summary.root()
    }

    /// The writes that apply this transition to a [`StateBackend`]: one put
    /// per changed account (a delete if it became empty) and the summary, in
    /// one atomic batch.
    #[must_use]
    pub fn to_write_batch(&self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for change in &self.changes {
            if change.after.is_empty() {
                batch.delete(Namespace::Accounts, change.id.0.to_vec());
            } else {
                batch.put(
                    Namespace::Accounts,
                    change.id.0.to_vec(),
                    change.after.to_bytes(),
                );
            }
        }
        batch.put(Namespace::Meta, STATE_SUMMARY_KEY, self.summary.to_bytes());
        batch
    }

    /// This transition followed by `next`, which must have been computed on
    /// top of it (e.g. against [`AfterTransition`]): one transition whose
    /// write batch touches each account once.
    #[must_use]
    pub fn then(&self, next: &StateTransition) -> StateTransition {
        let mut merged: std::collections::BTreeMap<AccountId, AccountChange> =
            self.changes.iter().map(|c| (c.id, *c)).collect();
        for c in &next.changes {
            merged
                .entry(c.id)
                .and_modify(|m| m.after = c.after)
                .or_insert(*c);
        }
        StateTransition {
            prior_root: self.prior_root,
            changes: merged
                .into_values()
                .filter(|c| c.before != c.after)
                .collect(),
            summary: next.summary,
        }
    }

    /// Build a transition from `changes` (any order, distinct ids) against
    /// `prior`, with the commitment delta computed by the caller (possibly in
    /// parallel) and the supply counters moved by `minted` and `burned`.
    /// Changes that arrive already ascending by id (Stage B sorts them in
    /// parallel) are only checked, not sorted again.
    pub fn from_changes(
        prior: &StateSummary,
        mut changes: Vec<AccountChange>,
        delta: &CommitmentDelta,
        minted: u128,
        burned: u128,
    ) -> Result<StateTransition, StateError> {
        changes.retain(|c| c.before != c.after);
        if !changes.is_sorted_by(|a, b| a.id < b.id) {
            sort_changes_by_id(&mut changes);
        }
        let mut summary = prior
            .with_delta(delta)
            .ok_or(StateError::SupplyOverflow { what: "accounts" })?;
        summary.minted = summary
            .minted
            .checked_add(minted)
            .ok_or(StateError::SupplyOverflow { what: "minted" })?;
        summary.burned = summary
            .burned
            .checked_add(burned)
            .ok_or(StateError::SupplyOverflow { what: "burned" })?;
        Ok(StateTransition {
            prior_root: prior.root(),
            changes,
            summary,
        })
    }
}

/// Reads accounts from any [`StateBackend`]: accounts live in
/// [`Namespace::Accounts`] under their 32-byte id, the summary in
/// [`Namespace::Meta`] under [`STATE_SUMMARY_KEY`] (absent = empty state).
pub struct BackendAccounts<'a, B: ?Sized> {
    backend: &'a B,
}

impl<'a, B: StateBackend + ?Sized> BackendAccounts<'a, B> {
    /// A reader over `backend`.
    pub fn new(backend: &'a B) -> Self {
        BackendAccounts { backend }
    }
}

impl<B: StateBackend + ?Sized> AccountReader for BackendAccounts<'_, B> {
    fn account(&self, id: &AccountId) -> Result<Account, StateError> {
        match self.backend.get(Namespace::Accounts, &id.0)? {
            None => Ok(Account::default()),
            Some(bytes) => Account::from_bytes(&bytes)
                .map_err(|source| StateError::CorruptAccount { id: *id, source }),
        }
    }

    fn summary(&self) -> Result<StateSummary, StateError> {
        match self.backend.get(Namespace::Meta, STATE_SUMMARY_KEY)? {
            None => Ok(StateSummary::default()),
            Some(bytes) => StateSummary::from_bytes(&bytes)
                .map_err(|source| StateError::CorruptSummary { source }),
        }
    }
}

/// Below this many changes [`sort_changes_by_id`] is a plain comparison sort.
const BUCKET_SORT_MIN: usize = 2 * ID_BUCKETS;
/// The bucketed sort's bucket of an id is its first `ID_BUCKET_BITS` bits.
const ID_BUCKET_BITS: u32 = 12;
/// Buckets of the bucketed sort.
const ID_BUCKETS: usize = 1 << ID_BUCKET_BITS;

/// Sort account changes ascending by id (the order of
/// [`StateTransition::changes`]); see [`sorted_changes_by_id`].
pub fn sort_changes_by_id(changes: &mut Vec<AccountChange>) {
    if changes.len() < BUCKET_SORT_MIN {
        changes.sort_unstable_by_key(|c| c.id);
        return;
    }
    *changes = sorted_changes_by_id(&[changes.as_slice()]);
}

/// The changes of all `runs` in one new vector, ascending by id: the same
/// as concatenating and sorting them, with a single copy. A counting pass
/// over the first 12 bits of the ids places every change in one of 4,096
/// buckets, then each bucket is sorted on its own. Ids are hashes of public
/// keys or chosen recipients; when they are spread out this is linear in
/// practice, and when they are not (ids chosen to share a prefix) it is one
/// ordinary comparison sort. Equal ids keep no particular order (a
/// transition never holds one id twice).
#[must_use]
pub fn sorted_changes_by_id(runs: &[&[AccountChange]]) -> Vec<AccountChange> {
    let total: usize = runs.iter().map(|r| r.len()).sum();
    if total < BUCKET_SORT_MIN {
        let mut all = runs.concat();
        all.sort_unstable_by_key(|c| c.id);
        return all;
    }
    let all = || runs.iter().flat_map(|r| r.iter());
    let bucket = |c: &AccountChange| {
        usize::from(u16::from_be_bytes([c.id.0[0], c.id.0[1]]) >> (16 - ID_BUCKET_BITS))
    };
    let mut starts = vec![0usize; ID_BUCKETS + 1];
    for c in all() {
        if let Some(n) = starts.get_mut(bucket(c) + 1) {
            *n += 1;
        }
    }
    for k in 1..starts.len() {
        let previous = starts.get(k - 1).copied().unwrap_or(0);
        if let Some(n) = starts.get_mut(k) {
            *n += previous;
        }
    }
    let mut cursor = starts.clone();
    let mut sorted = vec![AccountChange::default(); total];
    for c in all() {
        if let Some(at) = cursor.get_mut(bucket(c)) {
            if let Some(slot) = sorted.get_mut(*at) {
                *slot = *c;
            }
            *at += 1;
        }
    }
    for w in starts.windows(2) {
        if let (Some(&a), Some(&b)) = (w.first(), w.get(1))
            && let Some(run) = sorted.get_mut(a..b)
        {
            run.sort_unstable_by_key(|c| c.id);
        }
    }
    sorted
}

/// Account state in memory: a hash map for lookups (never iterated into a
/// result without sorting) plus the running summary. The map hashes with
/// `foldhash`, seeded at random per map like `std`'s default (ids are
/// partly chosen by users, so the hash must not be predictable).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    accounts: HashMap<AccountId, Account, foldhash::fast::RandomState>,
    summary: StateSummary,
}

impl Ledger {
    /// An empty ledger.
    #[must_use]
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// A ledger whose only content is `balances` (nonce 0); repeated ids are
    /// summed. The genesis supply is recorded as minted.
    pub fn genesis(
        balances: impl IntoIterator<Item = (AccountId, u128)>,
    ) -> Result<Ledger, StateError> {
        let mut credits: HashMap<AccountId, u128> = HashMap::new();
        for (id, amount) in balances {
            let slot = credits.entry(id).or_insert(0);
            *slot = slot
                .checked_add(amount)
                .ok_or(StateError::SupplyOverflow { what: "genesis" })?;
        }
        let mut credits: Vec<(AccountId, u128)> = credits.into_iter().collect();
        credits.sort_unstable();
        let mut ledger = Ledger::new();
        let transition = credit(&ledger, &credits)?;
        ledger.apply(&transition)?;
        Ok(ledger)
    }

    /// The summary (commitment and supply counters).
    #[must_use]
    pub fn summary_value(&self) -> StateSummary {
        self.summary
    }

    /// The state root.
    #[must_use]
    pub fn root(&self) -> Hash32 {
        self.summary.root()
    }

    /// The account `id`.
    #[must_use]
    pub fn get(&self, id: &AccountId) -> Account {
        self.accounts.get(id).copied().unwrap_or_default()
    }

    /// Number of non-empty accounts.
    #[must_use]
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether no account is non-empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Every non-empty account, ascending by id.
    #[must_use]
    pub fn sorted_accounts(&self) -> Vec<(AccountId, Account)> {
        let mut out: Vec<(AccountId, Account)> =
            self.accounts.iter().map(|(k, v)| (*k, *v)).collect();
        out.sort_unstable_by_key(|a| a.0);
        out
    }

    /// Sum of all balances, or `None` on overflow.
    #[must_use]
    pub fn total_balance(&self) -> Option<u128> {
        self.accounts
            .values()
            .try_fold(0u128, |acc, a| acc.checked_add(a.balance))
    }

    /// The summary recomputed from every account (for audits and tests; the
    /// executor never does this).
    #[must_use]
    pub fn recompute_summary(&self) -> StateSummary {
        let changes: Vec<AccountChange> = self
            .sorted_accounts()
            .into_iter()
            .map(|(id, after)| AccountChange {
                id,
                before: Account::default(),
                after,
            })
            .collect();
        let mut s = StateSummary::default()
            .with_delta(&CommitmentDelta::of(&changes))
            .unwrap_or_default();
        s.minted = self.summary.minted;
        s.burned = self.summary.burned;
        s
    }

    /// Apply a transition computed against this ledger.
    pub fn apply(&mut self, transition: &StateTransition) -> Result<(), StateError> {
        let actual = self.root();
        if transition.prior_root != actual {
            return Err(StateError::StaleTransition {
                expected: transition.prior_root,
                actual,
            });
        }
        for change in &transition.changes {
            if self.get(&change.id) != change.before {
                return Err(StateError::StaleAccount { id: change.id });
            }
        }
        for change in &transition.changes {
            if change.after.is_empty() {
                self.accounts.remove(&change.id);
            } else {
                self.accounts.insert(change.id, change.after);
            }
        }
        self.summary = transition.summary;
        Ok(())
    }
}

impl AccountReader for Ledger {
    fn account(&self, id: &AccountId) -> Result<Account, StateError> {
        Ok(self.get(id))
    }

    fn summary(&self) -> Result<StateSummary, StateError> {
        Ok(self.summary)
    }
}

/// The state `base` would have after `transition` (computed against it) is
/// applied, without applying it: lets a second transition (e.g. issuance at
/// an epoch boundary) be computed on top of a block's, so both can be
/// written in one atomic batch.
pub struct AfterTransition<'a, S: ?Sized> {
    base: &'a S,
    transition: &'a StateTransition,
}

impl<'a, S: AccountReader + ?Sized> AfterTransition<'a, S> {
    /// `base` with `transition` laid over it.
    pub fn new(base: &'a S, transition: &'a StateTransition) -> Self {
        AfterTransition { base, transition }
    }
}

impl<S: AccountReader + ?Sized> AccountReader for AfterTransition<'_, S> {
    fn account(&self, id: &AccountId) -> Result<Account, StateError> {
        // `changes` is ascending by id (StateTransition's invariant).
        match self.transition.changes.binary_search_by(|c| c.id.cmp(id)) {
            Ok(i) => Ok(self.transition.changes[i].after),
            Err(_) => self.base.account(id),
        }
    }

    fn summary(&self) -> Result<StateSummary, StateError> {
        Ok(self.transition.summary)
    }
}

/// The transition that credits newly created units (genesis or issuance) to
/// accounts: balances rise, `minted` rises by the total. `credits` may list an
/// id more than once.
pub fn credit<S: AccountReader + ?Sized>(
    state: &S,
    credits: &[(AccountId, u128)],
) -> Result<StateTransition, StateError> {
    let mut touched = Overlay::with_capacity(state, credits.len());
    let mut total: u128 = 0;
    for (id, amount) in credits {
        total = total
            .checked_add(*amount)
            .ok_or(StateError::SupplyOverflow { what: "minted" })?;
        let slot = touched.load(id)?;
        let mut account = touched.value(slot);
        account.balance = account
            .balance
            .checked_add(*amount)
            .ok_or(StateError::SupplyOverflow { what: "balance" })?;
        touched.store(slot, account);
    }
    let changes = touched.into_changes();
    let delta = CommitmentDelta::of(&changes);
    StateTransition::from_changes(&state.summary()?, changes, &delta, total, 0)
}
