//! Hashes remembered. A validator hashes the same bytes many times: each
//! transaction's sender key on every decode (admission, pool, proposal,
//! execution), and each transaction's bytes for its id in the pool, the
//! verified set, the block's delivered list, the committed-transaction
//! bookkeeping and the receipts. SHA3-256 of a 3.7 KB transfer takes
//! 16–20 µs here, and in the README's run these hashes were about twice the
//! signature verification (docs/benchmarks.md "CPU split").
//!
//! Exact: an entry answers only input equal to the one it stores (compared
//! byte for byte, about 0.1 µs for a transfer). Bounded: a fixed number of
//! direct-mapped entries, a new input replacing the one in its slot, so a
//! flood of fresh inputs — or inputs crafted to share a slot — costs the
//! hash the memo would have saved and the comparison, nothing more.
//! Deterministic: a memo of a pure function.

use std::borrow::Borrow;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::crypto::PublicKey;

/// Sender keys remembered (about 5.5 MB when all are filled).
pub(crate) const SENDER_SLOTS: usize = 4096;

/// Transaction ids remembered. A transaction is looked up from admission to
/// its receipts, about a second at the README's load, so 8,192 slots keep
/// most in-flight transactions of a ~1,000 tx/s network.
pub(crate) const TX_SLOTS: usize = 8192;

/// Longest transaction whose id is remembered: a transfer is about 3.7 KB.
/// Longer ones are hashed every time. With [`TX_SLOTS`], at most 64 MiB.
pub(crate) const TX_MAX_BYTES: usize = 8 * 1024;

/// One entry: an input and its 32-byte hash.
type Slot<K> = Mutex<Option<(K, [u8; 32])>>;

/// A direct-mapped table of inputs and their hashes.
struct Memo<K> {
    slots: Box<[Slot<K>]>,
}

impl<K> Memo<K> {
    fn new(slots: usize) -> Self {
        Memo {
            slots: (0..slots).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The hash of `input`, whose slot is chosen by `spread` (any value;
    /// reduced modulo the slots): remembered if the slot holds an equal
    /// input, otherwise `compute`d and stored there.
    fn get<Q>(&self, input: &Q, spread: u64, compute: impl FnOnce() -> [u8; 32]) -> [u8; 32]
    where
        Q: ?Sized + PartialEq + ToOwned<Owned = K>,
        K: Borrow<Q>,
    {
        let slot = &self.slots[(spread % self.slots.len() as u64) as usize];
        {
            let held = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((key, hash)) = held.as_ref()
                && key.borrow() == input
            {
                return *hash;
            }
        }
        let hash = compute();
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some((input.to_owned(), hash));
        hash
    }
}

/// Eight bytes of `bytes` at `at` (fewer near the end, zero-padded).
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    let end = bytes.len().min(at + 8);
    w[..end - at].copy_from_slice(&bytes[at..end]);
    u64::from_le_bytes(w)
}

/// The slot spread of a transaction: its length and eight words sampled
/// across it, mixed. An honest transaction ends in a signature, so the
/// samples differ between transactions; a crafted one only shares a slot
/// with others, which costs misses.
fn spread_of(bytes: &[u8]) -> u64 {
    let last = bytes.len().saturating_sub(8);
    (0..8).fold(bytes.len() as u64, |h, i| {
        (h ^ word_at(bytes, last * i / 7))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29)
    })
}

/// The slot spread of a key: its first eight bytes (part of the key's
/// random seed `ρ` for an honest key).
fn spread_of_key(pk: &PublicKey) -> u64 {
    word_at(pk.as_bytes(), 0)
}

/// `pk`'s account id (its bytes): remembered, or `compute`d and remembered.
pub(crate) fn account_of(pk: &PublicKey, compute: impl FnOnce() -> [u8; 32]) -> [u8; 32] {
    static SENDERS: OnceLock<Memo<PublicKey>> = OnceLock::new();
    SENDERS
        .get_or_init(|| Memo::new(SENDER_SLOTS))
        .get(pk, spread_of_key(pk), compute)
}

/// The id of the transaction `bytes`: remembered, or `compute`d (and
/// remembered if it is at most [`TX_MAX_BYTES`] long).
pub(crate) fn transaction_id(bytes: &[u8], compute: impl FnOnce() -> [u8; 32]) -> [u8; 32] {
    static TRANSACTIONS: OnceLock<Memo<Vec<u8>>> = OnceLock::new();
    if bytes.len() > TX_MAX_BYTES {
        return compute();
    }
    TRANSACTIONS
        .get_or_init(|| Memo::new(TX_SLOTS))
        .get(bytes, spread_of(bytes), compute)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;
    use crate::types::{AccountId, Hash32};

    #[test]
    fn remembered_ids_are_exact_and_colliding_keys_replace_each_other() {
        let a = KeyPair::from_seed(&[41; 32]).public_key().clone();
        let id_a = Hash32::digest(a.as_bytes()).0;
        assert_eq!(account_of(&a, || id_a), id_a);
        // Remembered: the computation is not called again.
        assert_eq!(account_of(&a, || unreachable!("remembered")), id_a);
        // A key with the same first eight bytes (same slot) but different
        // bytes elsewhere is not answered from a's entry.
        let mut bytes = a.as_bytes().to_vec();
        bytes[100] ^= 1;
        let b = PublicKey::from_bytes(&bytes).expect("1312 bytes");
        assert_eq!(spread_of_key(&a), spread_of_key(&b));
        let id_b = Hash32::digest(b.as_bytes()).0;
        assert_eq!(account_of(&b, || id_b), id_b);
        assert_eq!(AccountId::from_public_key(&b), AccountId(id_b));
        assert_eq!(
            AccountId::from_public_key(&a),
            AccountId(id_a),
            "a computed again"
        );
    }

    #[test]
    fn transaction_ids_are_exact_and_bounded_in_size() {
        // Bytes no other test uses (the memo is shared by the process).
        let tx: Vec<u8> = (0..3_700u32).map(|i| (i * 7 + 3) as u8).collect();
        let id = Hash32::digest(&tx).0;
        assert_eq!(transaction_id(&tx, || id), id);
        assert_eq!(transaction_id(&tx, || unreachable!("remembered")), id);
        assert_eq!(Hash32::of_transaction(&tx).0, id);
        // A byte between the sampled words changes the input but not its
        // slot: not answered from tx's entry.
        let mut other = tx.clone();
        other[100] ^= 1;
        assert_eq!(spread_of(&tx), spread_of(&other));
        let other_id = Hash32::digest(&other).0;
        assert_ne!(other_id, id);
        assert_eq!(Hash32::of_transaction(&other).0, other_id);
        assert_eq!(Hash32::of_transaction(&tx).0, id, "tx computed again");
        // Too long to remember: computed every time.
        let long = vec![9u8; TX_MAX_BYTES + 1];
        let long_id = Hash32::digest(&long).0;
        assert_eq!(transaction_id(&long, || long_id), long_id);
        let mut calls = 0;
        transaction_id(&long, || {
            calls += 1;
            long_id
        });
        assert_eq!(calls, 1, "not remembered");
        // Short inputs (shorter than a word) have a slot too.
        assert_eq!(Hash32::of_transaction(b"ab"), Hash32::digest(b"ab"));
        assert_eq!(Hash32::of_transaction(b""), Hash32::digest(b""));
    }
}
