//! The integrator's own [`Application`]: a replicated key-value map.
//!
//! Consensus orders opaque transaction bytes; this application reads each
//! as `key=value` and sets the key. What the core asks of it (see
//! [`qbind_core::application`]):
//!
//! - **return the writes, never write**: the replica stores them in one
//!   durable batch with the executed-height marker, so a crash leaves a
//!   block applied exactly once or not at all;
//! - **be deterministic**: the result may depend only on the store and the
//!   block, so that every honest validator computes the same state root;
//!   consensus compares roots through later proposals and a validator whose
//!   root differs stops voting;
//! - **stay out of the core's keys**: the replica's own records live in the
//!   `Safety`, `Blocks`, `QuorumCerts` and `DagBatches` namespaces and under
//!   the `Meta` markers of [`qbind_core::schema`]; this application keeps its
//!   entries in `Accounts` under the prefix [`KV_PREFIX`].
//!
//! The state root here hashes every entry, which is fine for a small map; a
//! real application keeps a Merkle structure and updates it per block.

use std::collections::BTreeMap;

use qbind_core::application::{
    Application, ApplicationError, Applied, CommittedBlock, ExecutionReport,
};
use qbind_core::traits::{Namespace, StateBackend, WriteBatch};
use qbind_core::types::Hash32;

/// Prefix of the application's keys in [`Namespace::Accounts`].
pub const KV_PREFIX: &[u8] = b"kv/";
/// Longest key a transaction may set, in bytes.
pub const MAX_KEY_BYTES: usize = 64;
/// Longest value a transaction may set, in bytes.
pub const MAX_VALUE_BYTES: usize = 256;
/// Most keys the map holds: a transaction that would add one more fails
/// (so nobody can grow every validator's store without bound).
pub const MAX_KEYS: usize = 10_000;

/// Sets keys to values. Holds no state of its own: everything is in the
/// store, which is what makes a restart trivial.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvApplication;

/// A transaction's `key=value`, if it is one (non-empty key within
/// [`MAX_KEY_BYTES`], value within [`MAX_VALUE_BYTES`]).
#[must_use]
pub fn parse_set(tx: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = tx.iter().position(|b| *b == b'=')?;
    let (key, value) = (tx.get(..at)?, tx.get(at + 1..)?);
    let fits = !key.is_empty() && key.len() <= MAX_KEY_BYTES && value.len() <= MAX_VALUE_BYTES;
    fits.then_some((key, value))
}

fn store_key(key: &[u8]) -> Vec<u8> {
    [KV_PREFIX, key].concat()
}

/// The root of a map: SHA3-256 over every entry in key order, each
/// length-prefixed so that no two maps hash alike.
fn root_of(entries: &BTreeMap<Vec<u8>, Vec<u8>>) -> Hash32 {
    let mut bytes = b"QBIND-EXAMPLE-KV:v1".to_vec();
    for (k, v) in entries {
        for part in [k, v] {
            bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
            bytes.extend_from_slice(part);
        }
    }
    Hash32::digest(&bytes)
}

fn load<S: StateBackend + ?Sized>(
    store: &S,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, ApplicationError> {
    Ok(store
        .scan_prefix(Namespace::Accounts, KV_PREFIX, usize::MAX)?
        .into_iter()
        .collect())
}

impl<S: StateBackend + ?Sized> Application<S> for KvApplication {
    fn execute(
        &mut self,
        store: &S,
        block: &CommittedBlock<'_>,
    ) -> Result<Applied, ApplicationError> {
        // The state after the previous height, then this block on top of it.
        let mut entries = load(store)?;
        let mut writes = WriteBatch::new();
        let mut report = ExecutionReport::default();
        for tx in block.txs {
            let Some((key, value)) = parse_set(tx) else {
                report.rejected += 1;
                continue;
            };
            let key = store_key(key);
            if !entries.contains_key(&key) && entries.len() >= MAX_KEYS {
                report.failed += 1;
                continue;
            }
            writes.put(Namespace::Accounts, key.clone(), value.to_vec());
            entries.insert(key, value.to_vec());
            report.succeeded += 1;
        }
        Ok(Applied {
            writes,
            state_root: root_of(&entries),
            report,
            epoch_closed: None,
        })
    }

    fn state_root(&self, store: &S) -> Result<Hash32, ApplicationError> {
        Ok(root_of(&load(store)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_key_value_pairs_parse() {
        assert_eq!(parse_set(b"a=1"), Some((&b"a"[..], &b"1"[..])));
        assert_eq!(parse_set(b"a="), Some((&b"a"[..], &b""[..])));
        assert_eq!(parse_set(b"=1"), None);
        assert_eq!(parse_set(b"no separator"), None);
        assert_eq!(parse_set(&[b'k'; MAX_KEY_BYTES + 2]), None);
        let long_value = [b"k=".as_slice(), &[b'v'; MAX_VALUE_BYTES + 1]].concat();
        assert_eq!(parse_set(&long_value), None);
    }
}
