//! In-memory implementations of the traits, for tests, the simulator and
//! DevNet.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use sha3::{Digest, Sha3_256};

use super::{
    Durability, KeyValues, Namespace, StateBackend, StateRead, StateSnapshot, StorageError,
    WriteBatch, WriteOp,
};

type Table = BTreeMap<(Namespace, Vec<u8>), Vec<u8>>;

/// Name of the single file a [`MemoryBackend`] checkpoint consists of.
pub const MEMORY_CHECKPOINT_FILE: &str = "memory-checkpoint.bin";
const MEMORY_CHECKPOINT_MAGIC: &[u8; 10] = b"QBINDMEM:1";

/// A [`StateBackend`] in memory. Cloning shares the same data, so a
/// "restarted" engine can reopen what an earlier one wrote.
///
/// Snapshots are copy-on-write: taking one is O(1); the first write after it
/// copies the table once.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<MemoryInner>>,
}

/// One undo entry: a key and the value it had before a buffered write.
type Undo = (Namespace, Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
struct MemoryInner {
    table: Arc<Table>,
    /// With crash semantics: how to undo the buffered writes made since the
    /// last durable one, newest last.
    undo: Option<Vec<Undo>>,
    durable_writes: u64,
    /// Durable writes per namespace they touched.
    durable_by_ns: std::collections::BTreeMap<Namespace, u64>,
}

impl MemoryBackend {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        MemoryBackend::default()
    }

    /// An empty store that models a crash: buffered writes become durable
    /// only with the next durable write (which covers every earlier write,
    /// as in the persistent stores' write-ahead logs), and [`Self::crash`]
    /// discards the ones that never did. The simulator runs validators on
    /// such stores.
    #[must_use]
    pub fn with_crash_semantics() -> Self {
        let backend = MemoryBackend::default();
        backend.lock().undo = Some(Vec::new());
        backend
    }

    /// Lose every buffered write not yet covered by a durable one, as a
    /// power cut would (only with [`Self::with_crash_semantics`]; otherwise
    /// nothing is lost). Returns how many writes were undone.
    pub fn crash(&self) -> usize {
        let mut inner = self.lock();
        let Some(undo) = inner.undo.take() else {
            return 0;
        };
        let lost = undo.len();
        let table = Arc::make_mut(&mut inner.table);
        for (ns, key, before) in undo.into_iter().rev() {
            match before {
                Some(value) => table.insert((ns, key), value),
                None => table.remove(&(ns, key)),
            };
        }
        inner.undo = Some(Vec::new());
        lost
    }

    fn lock(&self) -> MutexGuard<'_, MemoryInner> {
        // A poisoned lock means a panic happened while holding it; the map is
        // still structurally valid, so keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many durable writes have been made (for tests).
    #[must_use]
    pub fn durable_writes(&self) -> u64 {
        self.lock().durable_writes
    }

    /// How many durable writes touched namespace `ns` (for tests).
    #[must_use]
    pub fn durable_writes_touching(&self, ns: Namespace) -> u64 {
        self.lock().durable_by_ns.get(&ns).copied().unwrap_or(0)
    }

    /// Entries and bytes (keys plus values) held per namespace: what a
    /// persistent store would keep on disk before compression, for long
    /// runs that check stored bytes stay flat.
    #[must_use]
    pub fn stored(&self) -> BTreeMap<Namespace, (usize, usize)> {
        let inner = self.lock();
        let mut out: BTreeMap<Namespace, (usize, usize)> = BTreeMap::new();
        for ((ns, key), value) in inner.table.iter() {
            let e = out.entry(*ns).or_default();
            e.0 += 1;
            e.1 += key.len() + value.len();
        }
        out
    }

    /// Load a store written by [`StateBackend::checkpoint`] of a
    /// `MemoryBackend` (the file [`MEMORY_CHECKPOINT_FILE`] in `dir`).
    ///
    /// The file is `"QBINDMEM:1"`, then per entry the namespace's index in
    /// [`Namespace::ALL`] (1 byte), key length (u32 BE), key, value length
    /// (u32 BE), value, in ascending order; then SHA3-256 of all preceding
    /// bytes. A damaged file is [`StorageError::Corruption`].
    #[cfg(feature = "fs")]
    pub fn open_checkpoint(dir: &Path) -> Result<Self, StorageError> {
        let path = dir.join(MEMORY_CHECKPOINT_FILE);
        let bytes = std::fs::read(&path).map_err(|e| StorageError::Io {
            detail: format!("reading {}: {e}", path.display()),
        })?;
        Self::from_checkpoint_bytes(&bytes).map_err(|e| match e {
            StorageError::Corruption { what } => StorageError::Corruption {
                what: format!("{what} ({})", path.display()),
            },
            other => other,
        })
    }

    /// Decode the bytes of a checkpoint file (format at
    /// [`MemoryBackend::open_checkpoint`]).
    pub fn from_checkpoint_bytes(bytes: &[u8]) -> Result<Self, StorageError> {
        let corrupt = |why: &str| StorageError::Corruption {
            what: format!("memory checkpoint: {why}"),
        };
        let body_len = bytes
            .len()
            .checked_sub(32)
            .ok_or_else(|| corrupt("too short"))?;
        let (body, digest) = bytes.split_at(body_len);
        if Sha3_256::digest(body).as_slice() != digest {
            return Err(corrupt("checksum mismatch"));
        }
        let mut rest = body
            .strip_prefix(MEMORY_CHECKPOINT_MAGIC.as_slice())
            .ok_or_else(|| corrupt("bad magic"))?;
        let mut table = Table::new();
        fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if rest.len() < n {
                return None;
            }
            let (head, tail) = rest.split_at(n);
            *rest = tail;
            Some(head)
        }
        fn take_len(rest: &mut &[u8]) -> Option<usize> {
            let b = take(rest, 4)?;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        }
        while !rest.is_empty() {
            let entry = (|| {
                let ns_index = *take(&mut rest, 1)?.first()?;
                let ns = *Namespace::ALL.get(usize::from(ns_index))?;
                let key_len = take_len(&mut rest)?;
                let key = take(&mut rest, key_len)?.to_vec();
                let value_len = take_len(&mut rest)?;
                let value = take(&mut rest, value_len)?.to_vec();
                Some((ns, key, value))
            })();
            let (ns, key, value) = entry.ok_or_else(|| corrupt("truncated entry"))?;
            table.insert((ns, key), value);
        }
        Ok(MemoryBackend {
            inner: Arc::new(Mutex::new(MemoryInner {
                table: Arc::new(table),
                undo: None,
                durable_writes: 0,
                durable_by_ns: std::collections::BTreeMap::new(),
            })),
        })
    }
}

fn scan_table(table: &Table, ns: Namespace, prefix: &[u8], limit: usize) -> KeyValues {
    table
        .range((ns, prefix.to_vec())..)
        .take_while(|((n, k), _)| *n == ns && k.starts_with(prefix))
        .take(limit)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

fn scan_table_range(
    table: &Table,
    ns: Namespace,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> KeyValues {
    if end.is_some_and(|end| end <= start) {
        return Vec::new();
    }
    let upper = match end {
        Some(end) => Bound::Excluded((ns, end.to_vec())),
        None => match Namespace::ALL.iter().position(|n| *n == ns) {
            Some(i) => match Namespace::ALL.get(i + 1) {
                Some(next) => Bound::Excluded((*next, Vec::new())),
                None => Bound::Unbounded,
            },
            None => Bound::Unbounded,
        },
    };
    table
        .range((Bound::Included((ns, start.to_vec())), upper))
        .filter(|((n, _), _)| *n == ns)
        .take(limit)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

/// A copy-on-write snapshot of a [`MemoryBackend`].
struct MemorySnapshot {
    table: Arc<Table>,
}

impl StateRead for MemorySnapshot {
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.table.get(&(ns, key.to_vec())).cloned())
    }

    fn scan_prefix(
        &self,
        ns: Namespace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        Ok(scan_table(&self.table, ns, prefix, limit))
    }
}

impl StateSnapshot for MemorySnapshot {
    fn scan_range(
        &self,
        ns: Namespace,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        Ok(scan_table_range(&self.table, ns, start, end, limit))
    }
}

impl StateRead for MemoryBackend {
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().table.get(&(ns, key.to_vec())).cloned())
    }

    fn scan_prefix(
        &self,
        ns: Namespace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        Ok(scan_table(&self.lock().table, ns, prefix, limit))
    }
}

impl StateBackend for MemoryBackend {
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if durability == Durability::Durable {
            let mut touched: Vec<Namespace> = batch
                .ops
                .iter()
                .map(|op| match op {
                    WriteOp::Put { ns, .. } | WriteOp::Delete { ns, .. } => *ns,
                })
                .collect();
            touched.sort_unstable();
            touched.dedup();
            for ns in touched {
                *inner.durable_by_ns.entry(ns).or_default() += 1;
            }
        }
        let inner = &mut *inner;
        let table = Arc::make_mut(&mut inner.table);
        let mut undo = match (&mut inner.undo, durability) {
            (Some(undo), Durability::Buffered) => Some(undo),
            _ => None,
        };
        for op in batch.ops {
            let (ns, key, value) = match op {
                WriteOp::Put { ns, key, value } => (ns, key, Some(value)),
                WriteOp::Delete { ns, key } => (ns, key, None),
            };
            match undo.as_mut() {
                Some(undo) => {
                    let before = match value {
                        Some(value) => table.insert((ns, key.clone()), value),
                        None => table.remove(&(ns, key.clone())),
                    };
                    undo.push((ns, key, before));
                }
                None => {
                    match value {
                        Some(value) => table.insert((ns, key), value),
                        None => table.remove(&(ns, key)),
                    };
                }
            }
        }
        if durability == Durability::Durable {
            inner.durable_writes += 1;
            if let Some(undo) = &mut inner.undo {
                undo.clear();
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Box<dyn StateSnapshot + '_>, StorageError> {
        Ok(Box::new(MemorySnapshot {
            table: Arc::clone(&self.lock().table),
        }))
    }

    /// Writes the single file described at [`MemoryBackend::open_checkpoint`],
    /// fsynced together with `dir` (feature `fs`; without it the core does no
    /// file I/O and this returns an error).
    fn checkpoint(&self, dir: &Path) -> Result<(), StorageError> {
        let body = self.checkpoint_bytes()?;
        write_checkpoint(dir, &body)
    }
}

impl MemoryBackend {
    /// The bytes of a checkpoint of the current state (format at
    /// [`MemoryBackend::open_checkpoint`]).
    pub fn checkpoint_bytes(&self) -> Result<Vec<u8>, StorageError> {
        let table = Arc::clone(&self.lock().table);
        let mut body = MEMORY_CHECKPOINT_MAGIC.to_vec();
        for ((ns, key), value) in table.iter() {
            let ns_index = Namespace::ALL.iter().position(|n| n == ns).unwrap_or(0) as u8;
            let key_len = u32::try_from(key.len()).map_err(|_| StorageError::Io {
                detail: "key longer than 4 GiB".into(),
            })?;
            let value_len = u32::try_from(value.len()).map_err(|_| StorageError::Io {
                detail: "value longer than 4 GiB".into(),
            })?;
            body.push(ns_index);
            body.extend_from_slice(&key_len.to_be_bytes());
            body.extend_from_slice(key);
            body.extend_from_slice(&value_len.to_be_bytes());
            body.extend_from_slice(value);
        }
        let digest = Sha3_256::digest(&body);
        body.extend_from_slice(&digest);
        Ok(body)
    }
}

#[cfg(feature = "fs")]
fn write_checkpoint(dir: &Path, body: &[u8]) -> Result<(), StorageError> {
    use std::io::Write;
    let io = |what: &str, e: std::io::Error| StorageError::Io {
        detail: format!("memory checkpoint {what} {}: {e}", dir.display()),
    };
    std::fs::create_dir(dir).map_err(|e| io("creating", e))?;
    let mut file = std::fs::File::create(dir.join(MEMORY_CHECKPOINT_FILE))
        .map_err(|e| io("creating file in", e))?;
    file.write_all(body).map_err(|e| io("writing", e))?;
    file.sync_all().map_err(|e| io("syncing", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("syncing directory", e))?;
    Ok(())
}

#[cfg(not(feature = "fs"))]
fn write_checkpoint(dir: &Path, _body: &[u8]) -> Result<(), StorageError> {
    Err(StorageError::Io {
        detail: format!(
            "memory checkpoint {}: qbind-core was built without its `fs` feature (no file I/O)",
            dir.display()
        ),
    })
}

#[cfg(feature = "engine")]
pub use net::*;

#[cfg(feature = "engine")]
mod net {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use async_trait::async_trait;
    use tokio::sync::{Mutex, mpsc};

    use crate::traits::{Clock, Transport, TransportError};
    use crate::types::{Millis, ValidatorId};

    /// The inbox senders of every endpoint.
    type Peers = BTreeMap<ValidatorId, mpsc::Sender<(ValidatorId, Vec<u8>)>>;

    /// Capacity of each in-memory inbox.
    const INBOX_CAPACITY: usize = 4096;

    /// A set of connected in-memory endpoints, one per validator.
    pub struct MemoryNetwork;

    impl MemoryNetwork {
        /// Endpoints for validators `0..n`, each able to reach all others.
        #[must_use]
        pub fn endpoints(n: usize) -> Vec<MemoryTransport> {
            let mut senders = BTreeMap::new();
            let mut receivers = Vec::with_capacity(n);
            for i in 0..n {
                let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
                senders.insert(ValidatorId(i as u32), tx);
                receivers.push(rx);
            }
            let senders = Arc::new(senders);
            receivers
                .into_iter()
                .enumerate()
                .map(|(i, rx)| MemoryTransport {
                    me: ValidatorId(i as u32),
                    peers: Arc::clone(&senders),
                    inbox: Mutex::new(rx),
                })
                .collect()
        }
    }

    /// One validator's endpoint on a [`MemoryNetwork`].
    pub struct MemoryTransport {
        me: ValidatorId,
        peers: Arc<Peers>,
        inbox: Mutex<mpsc::Receiver<(ValidatorId, Vec<u8>)>>,
    }

    #[async_trait]
    impl Transport for MemoryTransport {
        async fn send(&self, to: ValidatorId, bytes: Vec<u8>) -> Result<(), TransportError> {
            let peer = self.peers.get(&to).ok_or(TransportError::UnknownPeer(to))?;
            peer.try_send((self.me, bytes)).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => TransportError::QueueFull(to),
                mpsc::error::TrySendError::Closed(_) => TransportError::Closed,
            })
        }

        async fn broadcast(&self, bytes: Vec<u8>) -> Result<(), TransportError> {
            for (&id, peer) in self.peers.iter() {
                if id != self.me {
                    // A full or closed peer does not stop delivery to others.
                    let _ = peer.try_send((self.me, bytes.clone()));
                }
            }
            Ok(())
        }

        async fn recv(&self) -> Result<(ValidatorId, Vec<u8>), TransportError> {
            self.inbox
                .lock()
                .await
                .recv()
                .await
                .ok_or(TransportError::Closed)
        }
    }

    /// A [`Clock`] on tokio's monotonic time (honours paused test time).
    #[derive(Clone)]
    pub struct TokioClock {
        start: tokio::time::Instant,
    }

    impl TokioClock {
        /// A clock whose zero is now.
        #[must_use]
        pub fn new() -> Self {
            TokioClock {
                start: tokio::time::Instant::now(),
            }
        }
    }

    impl Default for TokioClock {
        fn default() -> Self {
            Self::new()
        }
    }

    #[async_trait]
    impl Clock for TokioClock {
        fn now(&self) -> Millis {
            Millis(self.start.elapsed().as_millis() as u64)
        }

        async fn sleep_until(&self, deadline: Millis) {
            let at = self.start + std::time::Duration::from_millis(deadline.0);
            tokio::time::sleep_until(at).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loses_exactly_the_buffered_writes_no_durable_write_covered() {
        let db = MemoryBackend::with_crash_semantics();
        let put = |k: &[u8], v: &[u8], d: Durability| {
            let mut b = WriteBatch::new();
            b.put(Namespace::Meta, k.to_vec(), v.to_vec());
            db.write(b, d).unwrap();
        };
        put(b"a", b"1", Durability::Buffered);
        put(b"b", b"1", Durability::Durable); // covers `a`
        put(b"a", b"2", Durability::Buffered);
        put(b"c", b"1", Durability::Buffered);
        let mut del = WriteBatch::new();
        del.delete(Namespace::Meta, b"b".to_vec());
        db.write(del, Durability::Buffered).unwrap();
        assert_eq!(db.get(Namespace::Meta, b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(db.crash(), 3);
        assert_eq!(db.get(Namespace::Meta, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(db.get(Namespace::Meta, b"b").unwrap(), Some(b"1".to_vec()));
        assert_eq!(db.get(Namespace::Meta, b"c").unwrap(), None);
        assert_eq!(db.crash(), 0);
        // Without crash semantics nothing is lost.
        let plain = MemoryBackend::new();
        let mut b = WriteBatch::new();
        b.put(Namespace::Meta, b"a".to_vec(), b"1".to_vec());
        plain.write(b, Durability::Buffered).unwrap();
        assert_eq!(plain.crash(), 0);
        assert!(plain.get(Namespace::Meta, b"a").unwrap().is_some());
    }

    #[test]
    fn memory_backend_scans_in_order_and_applies_batches() {
        let db = MemoryBackend::new();
        let mut b = WriteBatch::new();
        b.put(Namespace::Blocks, b"k2".to_vec(), b"2".to_vec());
        b.put(Namespace::Blocks, b"k1".to_vec(), b"1".to_vec());
        b.put(Namespace::Meta, b"k3".to_vec(), b"3".to_vec());
        b.put(Namespace::Blocks, b"x".to_vec(), b"x".to_vec());
        db.write(b, Durability::Durable).unwrap();
        let scan = db.scan_prefix(Namespace::Blocks, b"k", 10).unwrap();
        assert_eq!(
            scan,
            vec![
                (b"k1".to_vec(), b"1".to_vec()),
                (b"k2".to_vec(), b"2".to_vec())
            ]
        );
        let mut b = WriteBatch::new();
        b.delete(Namespace::Blocks, b"k1".to_vec());
        db.write(b, Durability::Buffered).unwrap();
        assert_eq!(db.get(Namespace::Blocks, b"k1").unwrap(), None);
        assert_eq!(
            db.multi_get(Namespace::Blocks, &[b"k2", b"zz"]).unwrap(),
            vec![Some(b"2".to_vec()), None]
        );
        assert_eq!(db.durable_writes(), 1);
    }

    #[test]
    fn memory_checkpoint_round_trips_and_detects_damage() {
        let db = MemoryBackend::new();
        let mut b = WriteBatch::new();
        b.put(Namespace::Accounts, b"a".to_vec(), b"1".to_vec());
        b.put(Namespace::Meta, Vec::new(), vec![0u8; 300]);
        db.write(b, Durability::Durable).unwrap();
        let snap = db.snapshot().unwrap();
        let mut b = WriteBatch::new();
        b.put(Namespace::Accounts, b"a".to_vec(), b"2".to_vec());
        db.write(b, Durability::Durable).unwrap();
        // The snapshot is isolated from the later write.
        assert_eq!(
            snap.get(Namespace::Accounts, b"a").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(
            snap.scan_range(Namespace::Accounts, b"", None, 10).unwrap(),
            vec![(b"a".to_vec(), b"1".to_vec())]
        );

        let dir = std::env::temp_dir().join(format!("qbind-mem-cp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        db.checkpoint(&dir).unwrap();
        assert!(
            db.checkpoint(&dir).is_err(),
            "existing directory is refused"
        );
        let copy = MemoryBackend::open_checkpoint(&dir).unwrap();
        assert_eq!(
            copy.get(Namespace::Accounts, b"a").unwrap(),
            Some(b"2".to_vec())
        );
        assert_eq!(
            copy.get(Namespace::Meta, b"").unwrap(),
            Some(vec![0u8; 300])
        );

        let file = dir.join(MEMORY_CHECKPOINT_FILE);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[12] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(matches!(
            MemoryBackend::open_checkpoint(&dir),
            Err(StorageError::Corruption { .. })
        ));
        std::fs::write(&file, &bytes[..5]).unwrap();
        assert!(matches!(
            MemoryBackend::open_checkpoint(&dir),
            Err(StorageError::Corruption { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
