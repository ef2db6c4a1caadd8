//! The deterministic block-commit workload of the crash campaign and the
//! benchmarks: each block is one durable [`WriteBatch`] holding its account
//! updates, its body, its QC and the committed-height marker, with the key
//! layout of [`qbind_core::engine::commit_batch`] (`b'c' || height_be` in
//! `Blocks`, `height_be` in `QuorumCerts`, `committed_height` in `Meta`).
//!
//! Everything a block writes is a function of its height, so a checker can
//! recompute the exact state any committed height must have and detect a
//! missing, partial or extra block ([`verify_committed_state`]).

use std::collections::BTreeMap;

use qbind_core::codec::{Decode, Encode};
use qbind_core::engine::{COMMITTED_BLOCK_PREFIX, COMMITTED_HEIGHT_KEY};
use qbind_core::traits::{Durability, Namespace, StateBackend, StorageError, WriteBatch};
use sha3::{Digest, Sha3_256};

/// Shape of the workload.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Distinct accounts.
    pub accounts: u64,
    /// Account updates per block.
    pub updates_per_block: u64,
    /// Bytes per account value.
    pub value_len: usize,
    /// Bytes per block body.
    pub body_len: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            accounts: 2_000,
            updates_per_block: 20,
            value_len: 64,
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

/// Key of account `index` in [`Namespace::Accounts`].
#[must_use]
pub fn account_key(index: u64) -> Vec<u8> {
    let mut k = b"acct:".to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
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

impl Workload {
    /// The account indices block `height` updates (distinct within a block).
    #[must_use]
    pub fn touched(&self, height: u64) -> Vec<u64> {
        let n = self.accounts.max(1);
        let k = self.updates_per_block.min(n);
        let start = height.wrapping_mul(0x9E37_79B9) % n;
        let stride = if n > 1 { (height % (n - 1)) | 1 } else { 1 };
        let mut seen = std::collections::BTreeSet::new();
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

    /// The value block `height` writes to account `index`: the height (u64
    /// BE) then pseudo-random filler.
    #[must_use]
    pub fn account_value(&self, height: u64, index: u64) -> Vec<u8> {
        let mut v = height.to_be_bytes().to_vec();
        let mut seed = height.to_be_bytes().to_vec();
        seed.extend_from_slice(&index.to_be_bytes());
        v.extend(filler(&seed, self.value_len.saturating_sub(8)));
        v
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

    /// The atomic batch that commits block `height`.
    #[must_use]
    pub fn block_batch(&self, height: u64) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for index in self.touched(height) {
            batch.put(
                Namespace::Accounts,
                account_key(index),
                self.account_value(height, index),
            );
        }
        batch.put(Namespace::Blocks, block_key(height), self.body(height));
        batch.put(Namespace::QuorumCerts, qc_key(height), self.qc(height));
        batch.put(
            Namespace::Meta,
            COMMITTED_HEIGHT_KEY.to_vec(),
            height.to_bytes(),
        );
        batch
    }

    /// Commit block `height` durably.
    pub fn commit<S: StateBackend + ?Sized>(
        &self,
        store: &S,
        height: u64,
    ) -> Result<(), StorageError> {
        store.write(self.block_batch(height), Durability::Durable)
    }

    /// The account state after blocks `1..=height`.
    #[must_use]
    pub fn expected_accounts(&self, height: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut last_writer = BTreeMap::new();
        for h in 1..=height {
            for index in self.touched(h) {
                last_writer.insert(index, h);
            }
        }
        last_writer
            .into_iter()
            .map(|(index, h)| (account_key(index), self.account_value(h, index)))
            .collect()
    }
}

/// The committed height recorded in `Meta` (0 if none).
pub fn committed_height<S: StateBackend + ?Sized>(store: &S) -> Result<u64, StorageError> {
    match store.get(Namespace::Meta, COMMITTED_HEIGHT_KEY)? {
        None => Ok(0),
        Some(bytes) => u64::from_bytes(&bytes).map_err(|e| StorageError::Corruption {
            what: format!("committed height marker: {e}"),
        }),
    }
}

/// What [`verify_committed_state`] found wrong.
#[derive(Debug, thiserror::Error)]
pub enum CrashCheckError {
    /// The store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// An acknowledged block is missing.
    #[error("acknowledged height {acknowledged} but the store is at {recovered}")]
    LostAcknowledged {
        /// Highest height the writer acknowledged.
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

/// Check a reopened store against the workload: the committed block is
/// complete (body, QC, every account write), nothing of a later block is
/// present, and no acknowledged height is missing. Returns the recovered
/// height.
pub fn verify_committed_state<S: StateBackend + ?Sized>(
    workload: &Workload,
    store: &S,
    acknowledged: u64,
) -> Result<u64, CrashCheckError> {
    let height = committed_height(store)?;
    if height < acknowledged {
        return Err(CrashCheckError::LostAcknowledged {
            acknowledged,
            recovered: height,
        });
    }
    let bad = |detail: String| CrashCheckError::Inconsistent { height, detail };
    if height > acknowledged + 1 {
        return Err(bad(format!(
            "more than one unacknowledged block durable (acknowledged {acknowledged})"
        )));
    }
    let blocks = store.scan_prefix(Namespace::Blocks, &[COMMITTED_BLOCK_PREFIX], usize::MAX)?;
    let want_blocks: Vec<(Vec<u8>, Vec<u8>)> = (1..=height)
        .map(|h| (block_key(h), workload.body(h)))
        .collect();
    if blocks != want_blocks {
        return Err(bad(format!(
            "{} block bodies stored, {} expected (or a body differs)",
            blocks.len(),
            want_blocks.len()
        )));
    }
    let qcs = store.scan_prefix(Namespace::QuorumCerts, &[], usize::MAX)?;
    let want_qcs: Vec<(Vec<u8>, Vec<u8>)> =
        (1..=height).map(|h| (qc_key(h), workload.qc(h))).collect();
    if qcs != want_qcs {
        return Err(bad(format!(
            "{} QCs stored, {} expected (or a QC differs)",
            qcs.len(),
            want_qcs.len()
        )));
    }
    let accounts: BTreeMap<Vec<u8>, Vec<u8>> = store
        .scan_prefix(Namespace::Accounts, b"acct:", usize::MAX)?
        .into_iter()
        .collect();
    let want = workload.expected_accounts(height);
    if accounts != want {
        let differing = want
            .iter()
            .filter(|(k, v)| accounts.get(*k) != Some(*v))
            .count()
            + accounts.keys().filter(|k| !want.contains_key(*k)).count();
        return Err(bad(format!(
            "{differing} accounts differ from the state of height {height}"
        )));
    }
    Ok(height)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qbind_core::traits::MemoryBackend;

    #[test]
    fn touched_accounts_are_distinct_and_in_range() {
        let w = Workload::default();
        for h in 1..200 {
            let t = w.touched(h);
            assert_eq!(t.len() as u64, w.updates_per_block);
            assert!(t.iter().all(|i| *i < w.accounts));
        }
    }

    #[test]
    fn verifier_accepts_a_clean_store_and_rejects_partial_blocks() {
        let w = Workload::default();
        let store = MemoryBackend::new();
        for h in 1..=30 {
            w.commit(&store, h).unwrap();
        }
        assert_eq!(verify_committed_state(&w, &store, 30).unwrap(), 30);
        assert_eq!(verify_committed_state(&w, &store, 29).unwrap(), 30);
        assert!(matches!(
            verify_committed_state(&w, &store, 31),
            Err(CrashCheckError::LostAcknowledged { .. })
        ));
        // Half of block 31's account writes without its marker.
        let mut partial = WriteBatch::new();
        for index in w.touched(31).into_iter().take(3) {
            partial.put(
                Namespace::Accounts,
                account_key(index),
                w.account_value(31, index),
            );
        }
        store.write(partial, Durability::Durable).unwrap();
        assert!(matches!(
            verify_committed_state(&w, &store, 30),
            Err(CrashCheckError::Inconsistent { .. })
        ));
    }
}
