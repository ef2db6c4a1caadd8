//! The conformance suite every [`StateBackend`] must pass (issue #3 "each
//! passes one shared conformance suite"). It is ordinary library code, not
//! `#[test]`s, so that any implementation — ours or an integrator's — can
//! run it from its own tests:
//!
//! ```
//! use qbind_store::conformance::{run_all, Harness};
//! use qbind_core::traits::{MemoryBackend, StateRead, StorageError};
//! use std::path::{Path, PathBuf};
//!
//! struct Memory(tempfile::TempDir);
//! impl Harness for Memory {
//!     type Backend = MemoryBackend;
//!     fn fresh(&mut self) -> Result<MemoryBackend, StorageError> { Ok(MemoryBackend::new()) }
//!     fn reopen(&mut self, store: MemoryBackend) -> Result<MemoryBackend, StorageError> { Ok(store) }
//!     fn open_checkpoint(&mut self, dir: &Path) -> Result<MemoryBackend, StorageError> {
//!         MemoryBackend::open_checkpoint(dir)
//!     }
//!     fn scratch_dir(&mut self) -> PathBuf { self.0.path().to_path_buf() }
//! }
//! run_all(&mut Memory(tempfile::tempdir().unwrap())).unwrap();
//! ```
//!
//! Each case returns a [`ConformanceError`] naming the case and what differed.

use std::path::{Path, PathBuf};

use qbind_core::traits::{
    Durability, KeyValues, Namespace, StateBackend, StateRead, StateSnapshot, StorageError,
    WriteBatch,
};

/// How the suite obtains stores of the backend under test.
pub trait Harness {
    /// The backend under test.
    type Backend: StateBackend;
    /// A new, empty store (each call a different one).
    fn fresh(&mut self) -> Result<Self::Backend, StorageError>;
    /// Close `store` (drop it) and open the same data again, as after a
    /// restart. An in-memory backend returns the store unchanged.
    fn reopen(&mut self, store: Self::Backend) -> Result<Self::Backend, StorageError>;
    /// Open a checkpoint that [`StateBackend::checkpoint`] wrote to `dir`.
    fn open_checkpoint(&mut self, dir: &Path) -> Result<Self::Backend, StorageError>;
    /// An existing directory in which the suite may create checkpoint
    /// directories.
    fn scratch_dir(&mut self) -> PathBuf;
}

/// A conformance case that failed.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The backend returned an error where none was allowed.
    #[error("{case}: storage error: {source}")]
    Storage {
        /// The case.
        case: &'static str,
        /// The error.
        source: StorageError,
    },
    /// The backend returned something other than the contract requires.
    #[error("{case}: {detail}")]
    Violation {
        /// The case.
        case: &'static str,
        /// What differed.
        detail: String,
    },
}

type Outcome = Result<(), ConformanceError>;

fn st<T>(case: &'static str, r: Result<T, StorageError>) -> Result<T, ConformanceError> {
    r.map_err(|source| ConformanceError::Storage { case, source })
}

fn check(case: &'static str, ok: bool, detail: impl FnOnce() -> String) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(ConformanceError::Violation {
            case,
            detail: detail(),
        })
    }
}

fn eq<T: PartialEq + std::fmt::Debug>(case: &'static str, what: &str, got: T, want: T) -> Outcome {
    check(case, got == want, || {
        format!("{what}: got {got:?}, want {want:?}")
    })
}

fn kv(k: &[u8], v: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (k.to_vec(), v.to_vec())
}

/// Every entry of every namespace of a snapshot, ascending per namespace.
pub fn dump(snapshot: &dyn StateSnapshot) -> Result<Vec<(Namespace, KeyValues)>, StorageError> {
    Namespace::ALL
        .iter()
        .map(|ns| Ok((*ns, snapshot.scan_range(*ns, &[], None, usize::MAX)?)))
        .collect()
}

/// Run every case; stop at the first failure.
pub fn run_all<H: Harness>(harness: &mut H) -> Outcome
where
    H::Backend: Sync,
{
    point_get_and_multi_get(harness)?;
    prefix_and_range_order(harness)?;
    batch_atomicity(harness)?;
    durability_across_reopen(harness)?;
    snapshot_isolation(harness)?;
    checkpoint_contents(harness)?;
    Ok(())
}

/// Point reads: namespaces are separate, overwrite and delete apply in batch
/// order, empty keys/values and large values round-trip, `multi_get` answers
/// per key in order.
pub fn point_get_and_multi_get<H: Harness>(harness: &mut H) -> Outcome {
    const C: &str = "point_get_and_multi_get";
    let store = st(C, harness.fresh())?;
    let big = vec![0xA5u8; 1 << 20];
    let mut batch = WriteBatch::new();
    for (i, ns) in Namespace::ALL.iter().enumerate() {
        batch.put(*ns, b"k".to_vec(), vec![i as u8]);
    }
    batch.put(Namespace::Accounts, Vec::new(), b"empty key".to_vec());
    batch.put(Namespace::Accounts, b"empty value".to_vec(), Vec::new());
    batch.put(Namespace::Blocks, b"big".to_vec(), big.clone());
    batch.put(Namespace::Meta, b"overwritten".to_vec(), b"1".to_vec());
    batch.put(Namespace::Meta, b"overwritten".to_vec(), b"2".to_vec());
    batch.put(Namespace::Meta, b"put then delete".to_vec(), b"x".to_vec());
    batch.delete(Namespace::Meta, b"put then delete".to_vec());
    batch.delete(Namespace::Meta, b"delete then put".to_vec());
    batch.put(Namespace::Meta, b"delete then put".to_vec(), b"y".to_vec());
    st(C, store.write(batch, Durability::Durable))?;

    for (i, ns) in Namespace::ALL.iter().enumerate() {
        eq(
            C,
            "per-namespace value",
            st(C, store.get(*ns, b"k"))?,
            Some(vec![i as u8]),
        )?;
    }
    eq(
        C,
        "empty key",
        st(C, store.get(Namespace::Accounts, b""))?,
        Some(b"empty key".to_vec()),
    )?;
    eq(
        C,
        "empty value",
        st(C, store.get(Namespace::Accounts, b"empty value"))?,
        Some(Vec::new()),
    )?;
    check(
        C,
        st(C, store.get(Namespace::Blocks, b"big"))? == Some(big),
        || "1 MiB value did not round-trip".into(),
    )?;
    eq(
        C,
        "last put wins",
        st(C, store.get(Namespace::Meta, b"overwritten"))?,
        Some(b"2".to_vec()),
    )?;
    eq(
        C,
        "put then delete",
        st(C, store.get(Namespace::Meta, b"put then delete"))?,
        None,
    )?;
    eq(
        C,
        "delete then put",
        st(C, store.get(Namespace::Meta, b"delete then put"))?,
        Some(b"y".to_vec()),
    )?;
    eq(
        C,
        "missing key",
        st(C, store.get(Namespace::Accounts, b"nope"))?,
        None,
    )?;
    eq(
        C,
        "multi_get",
        st(
            C,
            store.multi_get(
                Namespace::Meta,
                &[b"overwritten", b"nope", b"k", b"overwritten"],
            ),
        )?,
        vec![
            Some(b"2".to_vec()),
            None,
            Some(vec![6]),
            Some(b"2".to_vec()),
        ],
    )?;
    let mut batch = WriteBatch::new();
    batch.delete(Namespace::Meta, b"overwritten".to_vec());
    batch.delete(Namespace::Meta, b"never existed".to_vec());
    st(C, store.write(batch, Durability::Buffered))?;
    eq(
        C,
        "deleted",
        st(C, store.get(Namespace::Meta, b"overwritten"))?,
        None,
    )?;
    st(C, store.write(WriteBatch::new(), Durability::Durable))?;
    let snap = st(C, store.snapshot())?;
    eq(
        C,
        "snapshot multi_get",
        st(C, snap.multi_get(Namespace::Accounts, &[b"", b"zz"]))?,
        vec![Some(b"empty key".to_vec()), None],
    )
}

/// Ordered iteration: `scan_prefix` and `scan_range` return ascending byte
/// order (unsigned, shorter first), honour limits and bounds, and never
/// cross into another namespace.
pub fn prefix_and_range_order<H: Harness>(harness: &mut H) -> Outcome {
    const C: &str = "prefix_and_range_order";
    let store = st(C, harness.fresh())?;
    let keys: [&[u8]; 10] = [
        b"b",
        b"a\xff",
        b"a",
        b"\x00",
        b"a\x00",
        b"ab",
        b"\xff\xff",
        b"a\x01z",
        b"aa",
        b"c",
    ];
    let mut batch = WriteBatch::new();
    for k in keys {
        batch.put(Namespace::Blocks, k.to_vec(), [b"v:", k].concat());
    }
    // Neighbours in adjacent namespaces must never show up.
    batch.put(Namespace::Accounts, b"a".to_vec(), b"other ns".to_vec());
    batch.put(Namespace::QuorumCerts, b"a".to_vec(), b"other ns".to_vec());
    batch.put(
        Namespace::QuorumCerts,
        b"\x00".to_vec(),
        b"other ns".to_vec(),
    );
    st(C, store.write(batch, Durability::Durable))?;

    let mut sorted: Vec<&[u8]> = keys.to_vec();
    sorted.sort();
    let expect = |f: &dyn Fn(&[u8]) -> bool| -> KeyValues {
        sorted
            .iter()
            .filter(|k| f(k))
            .map(|k| kv(k, &[b"v:", *k].concat()))
            .collect()
    };
    eq(
        C,
        "prefix a",
        st(C, store.scan_prefix(Namespace::Blocks, b"a", usize::MAX))?,
        expect(&|k| k.starts_with(b"a")),
    )?;
    eq(
        C,
        "prefix a limit 2",
        st(C, store.scan_prefix(Namespace::Blocks, b"a", 2))?,
        expect(&|k| k.starts_with(b"a"))
            .into_iter()
            .take(2)
            .collect(),
    )?;
    eq(
        C,
        "empty prefix",
        st(C, store.scan_prefix(Namespace::Blocks, b"", usize::MAX))?,
        expect(&|_| true),
    )?;
    eq(
        C,
        "limit 0",
        st(C, store.scan_prefix(Namespace::Blocks, b"", 0))?,
        Vec::new(),
    )?;
    eq(
        C,
        "no match",
        st(C, store.scan_prefix(Namespace::Blocks, b"zz", 10))?,
        Vec::new(),
    )?;
    eq(
        C,
        "prefix 0xff",
        st(C, store.scan_prefix(Namespace::Blocks, b"\xff", 10))?,
        expect(&|k| k.starts_with(b"\xff")),
    )?;

    let snap = st(C, store.snapshot())?;
    eq(
        C,
        "snapshot prefix",
        st(C, snap.scan_prefix(Namespace::Blocks, b"a", usize::MAX))?,
        expect(&|k| k.starts_with(b"a")),
    )?;
    eq(
        C,
        "range [a, b)",
        st(
            C,
            snap.scan_range(Namespace::Blocks, b"a", Some(b"b"), usize::MAX),
        )?,
        expect(&|k| k >= b"a".as_slice() && k < b"b".as_slice()),
    )?;
    eq(
        C,
        "range [a\\x00, ab) limit 3",
        st(
            C,
            snap.scan_range(Namespace::Blocks, b"a\x00", Some(b"ab"), 3),
        )?,
        expect(&|k| k >= b"a\x00".as_slice() && k < b"ab".as_slice())
            .into_iter()
            .take(3)
            .collect(),
    )?;
    eq(
        C,
        "range [b, ..)",
        st(
            C,
            snap.scan_range(Namespace::Blocks, b"b", None, usize::MAX),
        )?,
        expect(&|k| k >= b"b".as_slice()),
    )?;
    eq(
        C,
        "range [.., ..)",
        st(C, snap.scan_range(Namespace::Blocks, b"", None, usize::MAX))?,
        expect(&|_| true),
    )?;
    eq(
        C,
        "empty range",
        st(
            C,
            snap.scan_range(Namespace::Blocks, b"b", Some(b"a"), usize::MAX),
        )?,
        Vec::new(),
    )?;
    eq(
        C,
        "start == end",
        st(
            C,
            snap.scan_range(Namespace::Blocks, b"b", Some(b"b"), usize::MAX),
        )?,
        Vec::new(),
    )?;
    eq(
        C,
        "other namespace",
        st(
            C,
            snap.scan_range(Namespace::Accounts, b"", None, usize::MAX),
        )?,
        vec![kv(b"a", b"other ns")],
    )?;

    // Big-endian heights iterate in numeric order (the engine's block keys).
    let mut batch = WriteBatch::new();
    for h in [300u64, 2, 1 << 40, 256, 1] {
        batch.put(
            Namespace::QuorumCerts,
            h.to_be_bytes().to_vec(),
            h.to_le_bytes().to_vec(),
        );
    }
    st(C, store.write(batch, Durability::Buffered))?;
    let heights: Vec<u64> = st(
        C,
        store.scan_prefix(Namespace::QuorumCerts, &[0], usize::MAX),
    )?
    .iter()
    .filter_map(|(k, _)| {
        <[u8; 8]>::try_from(k.as_slice())
            .ok()
            .map(u64::from_be_bytes)
    })
    .collect();
    eq(C, "height order", heights, vec![1, 2, 256, 300, 1 << 40])
}

/// Atomicity: a reader never observes part of a batch, even while a writer
/// commits batches concurrently across all namespaces.
pub fn batch_atomicity<H: Harness>(harness: &mut H) -> Outcome
where
    H::Backend: Sync,
{
    const C: &str = "batch_atomicity";
    let store = st(C, harness.fresh())?;
    let write_round = |round: u64| -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        for ns in Namespace::ALL {
            for key in 0u8..8 {
                batch.put(ns, vec![b'k', key], round.to_be_bytes().to_vec());
            }
        }
        store.write(batch, Durability::Buffered)
    };
    st(C, write_round(0))?;
    let rounds = 300u64;
    let result: Outcome = std::thread::scope(|scope| {
        let writer = scope.spawn(|| -> Result<(), StorageError> {
            for round in 1..=rounds {
                write_round(round)?;
            }
            Ok(())
        });
        let mut last_seen = 0u64;
        let mut reads = 0u32;
        while !writer.is_finished() || reads < 20 {
            reads += 1;
            let snap = st(C, store.snapshot())?;
            let mut seen = Vec::new();
            for ns in Namespace::ALL {
                for (_, v) in st(C, snap.scan_prefix(ns, b"k", usize::MAX))? {
                    seen.push(v);
                }
            }
            check(C, seen.len() == 8 * Namespace::ALL.len(), || {
                format!(
                    "snapshot saw {} of {} entries",
                    seen.len(),
                    8 * Namespace::ALL.len()
                )
            })?;
            let first = seen.first().cloned().unwrap_or_default();
            check(C, seen.iter().all(|v| *v == first), || {
                "a snapshot saw two different rounds: a batch was visible in part".into()
            })?;
            let round = <[u8; 8]>::try_from(first.as_slice())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            check(C, round >= last_seen, || {
                format!("round went back from {last_seen} to {round}")
            })?;
            last_seen = round;
        }
        match writer.join() {
            Ok(r) => st(C, r),
            Err(_) => Err(ConformanceError::Violation {
                case: C,
                detail: "writer thread panicked".into(),
            }),
        }
    });
    result?;
    eq(
        C,
        "final round",
        st(C, store.get(Namespace::Meta, b"k\x07"))?,
        Some(rounds.to_be_bytes().to_vec()),
    )
}

/// Durability: everything written (durable, and buffered followed by a
/// durable write) is there after the store is closed and reopened.
pub fn durability_across_reopen<H: Harness>(harness: &mut H) -> Outcome {
    const C: &str = "durability_across_reopen";
    let store = st(C, harness.fresh())?;
    for height in 1u64..=50 {
        let mut batch = WriteBatch::new();
        batch.put(
            Namespace::Accounts,
            height.to_be_bytes().to_vec(),
            vec![height as u8; 100],
        );
        batch.put(
            Namespace::Meta,
            b"height".to_vec(),
            height.to_be_bytes().to_vec(),
        );
        let durability = if height % 5 == 0 {
            Durability::Durable
        } else {
            Durability::Buffered
        };
        st(C, store.write(batch, durability))?;
    }
    let mut batch = WriteBatch::new();
    batch.delete(Namespace::Accounts, 7u64.to_be_bytes().to_vec());
    st(C, store.write(batch, Durability::Durable))?;
    let before = dump(&*st(C, store.snapshot())?);
    let store = st(C, harness.reopen(store))?;
    let after = dump(&*st(C, store.snapshot())?);
    check(C, st(C, before)? == st(C, after)?, || {
        "contents changed across reopen".into()
    })?;
    eq(
        C,
        "height",
        st(C, store.get(Namespace::Meta, b"height"))?,
        Some(50u64.to_be_bytes().to_vec()),
    )?;
    eq(
        C,
        "deleted stays deleted",
        st(C, store.get(Namespace::Accounts, &7u64.to_be_bytes()))?,
        None,
    )?;
    // The reopened store keeps accepting writes.
    let mut batch = WriteBatch::new();
    batch.put(
        Namespace::Meta,
        b"height".to_vec(),
        51u64.to_be_bytes().to_vec(),
    );
    st(C, store.write(batch, Durability::Durable))?;
    let store = st(C, harness.reopen(store))?;
    eq(
        C,
        "height after second reopen",
        st(C, store.get(Namespace::Meta, b"height"))?,
        Some(51u64.to_be_bytes().to_vec()),
    )
}

/// Snapshot isolation: a snapshot keeps answering with the state of the
/// instant it was taken, whatever is written afterwards.
pub fn snapshot_isolation<H: Harness>(harness: &mut H) -> Outcome {
    const C: &str = "snapshot_isolation";
    let store = st(C, harness.fresh())?;
    let mut batch = WriteBatch::new();
    batch.put(Namespace::Accounts, b"a".to_vec(), b"1".to_vec());
    batch.put(Namespace::Accounts, b"b".to_vec(), b"1".to_vec());
    batch.put(Namespace::Safety, b"s".to_vec(), b"1".to_vec());
    st(C, store.write(batch, Durability::Durable))?;
    let old = st(C, store.snapshot())?;
    let old_dump = st(C, dump(&*old))?;
    let mut batch = WriteBatch::new();
    batch.put(Namespace::Accounts, b"a".to_vec(), b"2".to_vec());
    batch.delete(Namespace::Accounts, b"b".to_vec());
    batch.put(Namespace::Accounts, b"c".to_vec(), b"2".to_vec());
    batch.put(Namespace::Safety, b"s".to_vec(), b"2".to_vec());
    st(C, store.write(batch, Durability::Durable))?;
    eq(
        C,
        "old get",
        st(C, old.get(Namespace::Accounts, b"a"))?,
        Some(b"1".to_vec()),
    )?;
    eq(
        C,
        "old deleted key",
        st(C, old.get(Namespace::Accounts, b"b"))?,
        Some(b"1".to_vec()),
    )?;
    eq(
        C,
        "old missing key",
        st(C, old.get(Namespace::Accounts, b"c"))?,
        None,
    )?;
    eq(
        C,
        "old scan",
        st(C, old.scan_prefix(Namespace::Accounts, b"", 10))?,
        vec![kv(b"a", b"1"), kv(b"b", b"1")],
    )?;
    eq(C, "old dump", st(C, dump(&*old))?, old_dump)?;
    let new = st(C, store.snapshot())?;
    eq(
        C,
        "new scan",
        st(C, new.scan_range(Namespace::Accounts, b"", None, 10))?,
        vec![kv(b"a", b"2"), kv(b"c", b"2")],
    )?;
    eq(
        C,
        "new safety",
        st(C, new.get(Namespace::Safety, b"s"))?,
        Some(b"2".to_vec()),
    )?;
    drop(old);
    eq(
        C,
        "live get",
        st(C, store.get(Namespace::Accounts, b"a"))?,
        Some(b"2".to_vec()),
    )
}

/// Checkpoints: the directory holds exactly the state at the checkpoint,
/// later writes do not leak into it, an existing directory is refused, and
/// the source store keeps working.
pub fn checkpoint_contents<H: Harness>(harness: &mut H) -> Outcome {
    const C: &str = "checkpoint_contents";
    let store = st(C, harness.fresh())?;
    let mut batch = WriteBatch::new();
    for i in 0u32..2_000 {
        batch.put(
            Namespace::Accounts,
            i.to_be_bytes().to_vec(),
            i.to_le_bytes().repeat(8),
        );
    }
    for ns in Namespace::ALL {
        batch.put(ns, b"marker".to_vec(), ns.name().as_bytes().to_vec());
    }
    st(C, store.write(batch, Durability::Durable))?;
    let mut batch = WriteBatch::new();
    batch.delete(Namespace::Accounts, 5u32.to_be_bytes().to_vec());
    st(C, store.write(batch, Durability::Buffered))?;
    let expected = st(C, dump(&*st(C, store.snapshot())?))?;

    let scratch = harness.scratch_dir();
    let dir = scratch.join(format!("checkpoint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    st(C, store.checkpoint(&dir))?;
    let mut batch = WriteBatch::new();
    batch.put(Namespace::Accounts, b"after".to_vec(), b"x".to_vec());
    batch.delete(Namespace::Meta, b"marker".to_vec());
    st(C, store.write(batch, Durability::Durable))?;

    check(C, store.checkpoint(&dir).is_err(), || {
        "checkpoint into an existing directory succeeded".into()
    })?;
    let copy = st(C, harness.open_checkpoint(&dir))?;
    let got = st(C, dump(&*st(C, copy.snapshot())?))?;
    check(C, got == expected, || {
        "checkpoint contents differ from the state at checkpoint time".into()
    })?;
    eq(
        C,
        "source still live",
        st(C, store.get(Namespace::Accounts, b"after"))?,
        Some(b"x".to_vec()),
    )?;
    drop(copy);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
