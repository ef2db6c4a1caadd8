//! In-memory implementations of the traits, for tests, the simulator and
//! DevNet.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Durability, Namespace, StateBackend, StorageError, WriteBatch, WriteOp};

type Table = BTreeMap<(Namespace, Vec<u8>), Vec<u8>>;

/// A [`StateBackend`] in memory. Cloning shares the same data, so a
/// "restarted" engine can reopen what an earlier one wrote.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Default)]
struct MemoryInner {
    table: Table,
    durable_writes: u64,
}

impl MemoryBackend {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        MemoryBackend::default()
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
}

impl StateBackend for MemoryBackend {
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().table.get(&(ns, key.to_vec())).cloned())
    }

    fn scan_prefix(
        &self,
        ns: Namespace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<super::KeyValues, StorageError> {
        let inner = self.lock();
        Ok(inner
            .table
            .range((ns, prefix.to_vec())..)
            .take_while(|((n, k), _)| *n == ns && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        let mut inner = self.lock();
        for op in batch.ops {
            match op {
                WriteOp::Put { ns, key, value } => {
                    inner.table.insert((ns, key), value);
                }
                WriteOp::Delete { ns, key } => {
                    inner.table.remove(&(ns, key));
                }
            }
        }
        if durability == Durability::Durable {
            inner.durable_writes += 1;
        }
        Ok(())
    }
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
}
