//! A provisional state root over the `Accounts` namespace, used to validate
//! snapshots (issue #3 "Validation recomputes the state root"). The execution
//! issue defines the protocol's real, incrementally updated state root; this
//! one only has to be deterministic and cover every account byte.
//!
//! Definition: SHA3-256 over the domain tag `QBIND:STORE_ACCOUNTS_ROOT:v0`
//! followed, for every entry of `Accounts` in ascending key order, by
//! `len(key) as u32 BE || key || len(value) as u32 BE || value`.

use qbind_core::traits::{Namespace, StateSnapshot, StorageError};
use sha3::{Digest, Sha3_256};

/// Domain tag that starts the hashed stream.
pub const ACCOUNTS_ROOT_DOMAIN: &[u8] = b"QBIND:STORE_ACCOUNTS_ROOT:v0";

/// Entries read per page while hashing.
const PAGE: usize = 4096;

/// The accounts root of a consistent view of a store.
pub fn accounts_root(snapshot: &dyn StateSnapshot) -> Result<[u8; 32], StorageError> {
    let mut hasher = Sha3_256::new();
    hasher.update(ACCOUNTS_ROOT_DOMAIN);
    let mut start: Vec<u8> = Vec::new();
    loop {
        let page = snapshot.scan_range(Namespace::Accounts, &start, None, PAGE)?;
        for (key, value) in &page {
            hash_entry(&mut hasher, key, value)?;
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
    Ok(hasher.finalize().into())
}

/// The accounts root of explicit entries, which must be sorted by key.
pub fn accounts_root_of<'a>(
    entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<[u8; 32], StorageError> {
    let mut hasher = Sha3_256::new();
    hasher.update(ACCOUNTS_ROOT_DOMAIN);
    for (key, value) in entries {
        hash_entry(&mut hasher, key, value)?;
    }
    Ok(hasher.finalize().into())
}

fn hash_entry(hasher: &mut Sha3_256, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
    let too_long = || StorageError::Io {
        detail: "account entry longer than 4 GiB".into(),
    };
    let key_len = u32::try_from(key.len()).map_err(|_| too_long())?;
    let value_len = u32::try_from(value.len()).map_err(|_| too_long())?;
    hasher.update(key_len.to_be_bytes());
    hasher.update(key);
    hasher.update(value_len.to_be_bytes());
    hasher.update(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qbind_core::traits::{Durability, MemoryBackend, StateBackend, WriteBatch};

    #[test]
    fn root_pages_through_many_accounts_and_matches_the_explicit_form() {
        let store = MemoryBackend::new();
        let mut batch = WriteBatch::new();
        let mut expected = Vec::new();
        for i in 0u32..10_000 {
            let key = i.to_be_bytes().to_vec();
            let value = (i * 7).to_le_bytes().to_vec();
            batch.put(Namespace::Accounts, key.clone(), value.clone());
            expected.push((key, value));
        }
        batch.put(Namespace::Meta, b"not hashed".to_vec(), b"x".to_vec());
        store.write(batch, Durability::Durable).unwrap();
        let root = accounts_root(&*store.snapshot().unwrap()).unwrap();
        let explicit =
            accounts_root_of(expected.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))).unwrap();
        assert_eq!(root, explicit);
        // Moving a byte between key and value changes the root (length prefixes).
        let a = accounts_root_of([(&b"ab"[..], &b"c"[..])]).unwrap();
        let b = accounts_root_of([(&b"a"[..], &b"bc"[..])]).unwrap();
        assert_ne!(a, b);
    }
}
