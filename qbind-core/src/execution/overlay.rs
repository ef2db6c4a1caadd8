//! The working set of a block: every account read or written so far, over
//! an unchanged base state.
//!
//! The touched accounts live in one vector, in the order they were first
//! read, each with its value before the block and its current value; a
//! small hash index (the position in the vector, under a hash of the
//! 32-byte id) finds them again. An executed transaction locates each of
//! its accounts once and then works on the slot, so a transfer costs two
//! index lookups, and the block's change list is the vector itself, with no
//! copy.
//!
//! The index hashes with `foldhash` seeded at random per overlay (as
//! `std`'s SipHash map is seeded per map): recipient ids are chosen freely
//! by senders, so a fixed, guessable hash would let a block be filled with
//! colliding ids. The index only finds entries; nothing iterates it, so the
//! seed never affects a result.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::state::{Account, AccountChange, AccountReader, StateError};
use super::tx::Transaction;
use crate::types::AccountId;

/// Accounts read and written during a block, over an unchanged base state.
pub struct Overlay<'s, S: ?Sized> {
    base: &'s S,
    /// Touched accounts in order of first access.
    changes: Vec<AccountChange>,
    /// Positions in `changes`, found by the hash of the id.
    index: HashTable<usize>,
    hasher: foldhash::fast::RandomState,
}

/// Where an [`Overlay`] holds one account (valid for that overlay only; its
/// list only grows, so a slot never moves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot(usize);

impl<'s, S: AccountReader + ?Sized> Overlay<'s, S> {
    /// An empty overlay over `base`.
    pub fn new(base: &'s S) -> Self {
        Overlay::with_capacity(base, 0)
    }

    /// An empty overlay with room for `accounts` entries.
    pub fn with_capacity(base: &'s S, accounts: usize) -> Self {
        Overlay {
            base,
            changes: Vec::with_capacity(accounts),
            index: HashTable::with_capacity(accounts),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The current value of `id`.
    pub fn get(&mut self, id: &AccountId) -> Result<Account, StateError> {
        let slot = self.load(id)?;
        Ok(self.value(slot))
    }

    /// Set `id` (read from the base first if it was not touched yet).
    pub fn set(&mut self, id: &AccountId, account: Account) -> Result<(), StateError> {
        let slot = self.load(id)?;
        self.store(slot, account);
        Ok(())
    }

    /// Number of accounts touched.
    #[must_use]
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether no account was touched.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Read `id` from the base now if it was not touched yet, so that a
    /// later access finds it here. A read that fails is not kept: the
    /// access that needs the account reads it again and reports the error.
    pub fn preload(&mut self, id: &AccountId) {
        // Ignoring the error is the point: see above.
        let _ = self.load(id);
    }

    /// [`Overlay::preload`] the two accounts `tx` may touch (sender and
    /// recipient). Executors call this for a run of transactions before
    /// executing them: on a large state most first reads miss the CPU
    /// caches, and a loop that does nothing else lets the processor wait
    /// for many of them at once.
    pub fn preload_transfer(&mut self, tx: &Transaction) {
        self.preload(&tx.sender_id());
        self.preload(&tx.payload().recipient());
    }

    /// The slot of `id`, reading it from the base on first access.
    pub(super) fn load(&mut self, id: &AccountId) -> Result<Slot, StateError> {
        let hash = self.hasher.hash_one(id);
        let changes = &self.changes;
        if let Some(&at) = self
            .index
            .find(hash, |&at| changes.get(at).is_some_and(|c| c.id == *id))
        {
            return Ok(Slot(at));
        }
        let before = self.base.account(id)?;
        let at = self.changes.len();
        self.changes.push(AccountChange {
            id: *id,
            before,
            after: before,
        });
        let (changes, hasher) = (&self.changes, &self.hasher);
        self.index.insert_unique(hash, at, |&j| {
            changes.get(j).map_or(0, |c| hasher.hash_one(c.id))
        });
        Ok(Slot(at))
    }

    /// The current value in `slot` (a slot from [`Overlay::load`] on this
    /// overlay always holds one).
    pub(super) fn value(&self, slot: Slot) -> Account {
        self.changes
            .get(slot.0)
            .map(|c| c.after)
            .unwrap_or_default()
    }

    /// Replace the current value in `slot`.
    pub(super) fn store(&mut self, slot: Slot, account: Account) {
        if let Some(change) = self.changes.get_mut(slot.0) {
            change.after = account;
        }
    }

    /// Every touched account with its value before and now, in order of
    /// first access (distinct ids; unchanged accounts included).
    #[must_use]
    pub fn into_changes(self) -> Vec<AccountChange> {
        self.changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::Ledger;

    #[test]
    fn reads_once_keeps_first_access_order_and_before_values() {
        let a = AccountId([1; 32]);
        let b = AccountId([2; 32]);
        let ledger = Ledger::genesis([(a, 10), (b, 20)]).expect("genesis");
        let mut overlay = Overlay::new(&ledger);
        assert!(overlay.is_empty());
        let fresh = AccountId([3; 32]);
        assert_eq!(overlay.get(&fresh).expect("read"), Account::default());
        overlay
            .set(
                &b,
                Account {
                    nonce: 1,
                    balance: 5,
                },
            )
            .expect("write");
        overlay
            .set(
                &a,
                Account {
                    nonce: 0,
                    balance: 25,
                },
            )
            .expect("write");
        assert_eq!(overlay.get(&b).expect("read").balance, 5);
        assert_eq!(overlay.len(), 3);
        let changes = overlay.into_changes();
        let ids: Vec<AccountId> = changes.iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![fresh, b, a]);
        assert_eq!(changes[1].before.balance, 20);
        assert_eq!(changes[2].before.balance, 10);
        assert_eq!(changes[2].after.balance, 25);
    }

    /// A ledger whose account `broken` cannot be read.
    struct Unreadable {
        ledger: Ledger,
        broken: AccountId,
    }

    impl AccountReader for Unreadable {
        fn account(&self, id: &AccountId) -> Result<Account, StateError> {
            if *id == self.broken {
                return Err(StateError::Storage(crate::traits::StorageError::Io {
                    detail: "unreadable".into(),
                }));
            }
            self.ledger.account(id)
        }

        fn summary(&self) -> Result<crate::execution::StateSummary, StateError> {
            self.ledger.summary()
        }
    }

    #[test]
    fn a_failed_preload_is_not_kept_and_only_a_real_access_reports_it() {
        use crate::crypto::{KeyPair, Signature};
        use crate::execution::{
            BlockContext, ExecutionConfig, RejectReason, TransferPayload, TransferPayloadV1,
            TxStatus, execute_block,
        };
        use crate::types::Height;
        let key = KeyPair::from_seed(&[7; 32]);
        let sender = AccountId::from_public_key(key.public_key());
        let broken = AccountId([0xbb; 32]);
        let state = Unreadable {
            ledger: Ledger::genesis([(sender, 1_000_000)]).expect("genesis"),
            broken,
        };
        let mut overlay = Overlay::new(&state);
        overlay.preload(&broken);
        assert!(overlay.is_empty());
        assert!(overlay.get(&broken).is_err());

        let ctx = BlockContext {
            height: Height(1),
            proposer: AccountId([9; 32]),
            config: ExecutionConfig::mainnet(),
        };
        let to_broken = |nonce| {
            let payload = TransferPayload::V1(TransferPayloadV1 {
                recipient: broken,
                amount: 1,
                gas_limit: 40_000,
                max_fee_per_gas: 1,
            });
            let zero = Signature::from_bytes(&[0u8; 2420]).expect("length");
            Transaction::from_parts(key.public_key().clone(), nonce, payload, zero)
        };
        // Rejected on its nonce, the transaction never needs the recipient:
        // the block executes although that account cannot be read.
        let outcome = execute_block(&state, &ctx, &[to_broken(5)]).expect("no read needed");
        assert_eq!(
            outcome.receipts[0].status,
            TxStatus::Rejected(RejectReason::BadNonce {
                expected: 0,
                got: 5
            })
        );
        // With the right nonce the credit needs it: the block fails.
        assert!(execute_block(&state, &ctx, &[to_broken(0)]).is_err());
    }

    #[test]
    fn many_accounts_with_equal_prefixes_are_kept_apart() {
        // Ids that differ only in their last bytes (a sender may pick any
        // recipient id) must still be distinct entries.
        let ledger = Ledger::new();
        let mut overlay = Overlay::new(&ledger);
        for i in 0..5_000u32 {
            let mut id = [0xab; 32];
            id[28..].copy_from_slice(&i.to_be_bytes());
            overlay
                .set(
                    &AccountId(id),
                    Account {
                        nonce: u64::from(i),
                        balance: 1,
                    },
                )
                .expect("write");
        }
        for i in (0..5_000u32).rev() {
            let mut id = [0xab; 32];
            id[28..].copy_from_slice(&i.to_be_bytes());
            assert_eq!(
                overlay.get(&AccountId(id)).expect("read").nonce,
                u64::from(i)
            );
        }
        assert_eq!(overlay.len(), 5_000);
    }
}
