//! Account ids by public key, remembered. [`crate::types::AccountId::from_public_key`]
//! hashes a 1,312-byte key (about 6 µs), and every decode of a transaction
//! needs its sender's id: a validator decodes each transaction several
//! times (admission, pool, proposal, execution), so in the README's run
//! this hash was a sixth of all hashing (docs/benchmarks.md "CPU split").
//!
//! Exact: an entry answers only a key equal to the one it stores. Bounded:
//! [`SLOTS`] direct-mapped entries (about 5.5 MB when all are filled), a
//! new key replacing the one in its slot, so a flood of fresh keys costs
//! the hash the memo would have saved and nothing more. Deterministic: a
//! memo of a pure function.

use std::sync::{Mutex, OnceLock, PoisonError};

use crate::crypto::PublicKey;

/// Entries kept.
pub(crate) const SLOTS: usize = 4096;

/// A key and its account id's bytes.
type Slot = Mutex<Option<(PublicKey, [u8; 32])>>;

fn slots() -> &'static [Slot] {
    static SLOTS_: OnceLock<Vec<Slot>> = OnceLock::new();
    SLOTS_.get_or_init(|| (0..SLOTS).map(|_| Mutex::new(None)).collect())
}

/// The slot of `pk`: its first eight bytes (part of the key's random seed
/// `ρ` for an honest key; a crafted key only collides with others, which
/// costs misses).
fn slot_of(pk: &PublicKey) -> usize {
    let mut first = [0u8; 8];
    first.copy_from_slice(&pk.as_bytes()[..8]);
    (u64::from_le_bytes(first) % SLOTS as u64) as usize
}

/// `pk`'s account id (its bytes): remembered, or `compute`d and remembered.
pub(crate) fn account_of(pk: &PublicKey, compute: impl FnOnce() -> [u8; 32]) -> [u8; 32] {
    let slot = &slots()[slot_of(pk)];
    {
        let held = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((key, id)) = held.as_ref()
            && key == pk
        {
            return *id;
        }
    }
    let id = compute();
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some((pk.clone(), id));
    id
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
        assert_eq!(slot_of(&a), slot_of(&b));
        let id_b = Hash32::digest(b.as_bytes()).0;
        assert_eq!(account_of(&b, || id_b), id_b);
        assert_eq!(AccountId::from_public_key(&b), AccountId(id_b));
        assert_eq!(
            AccountId::from_public_key(&a),
            AccountId(id_a),
            "a computed again"
        );
    }
}
