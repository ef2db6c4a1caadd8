//! The four seams through which the core meets the outside world
//! (DESIGN "The core is sans-I/O"): [`StateBackend`], [`Transport`],
//! [`Signer`], [`Clock`]. The state machines never call them; the engine
//! (and the reference node) do, in the order the machines' effects say.

mod memory;

pub use memory::*;

use std::path::Path;

use async_trait::async_trait;

use crate::crypto::{KeyPair, PublicKey, Signature};
use crate::signing::{SignKind, sign_domain, signing_preimage};
use crate::types::{Millis, NetworkEnvironment, ValidatorId, View};

// ---------------------------------------------------------------- storage

/// Separate key spaces of the state store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Namespace {
    /// Account state.
    Accounts,
    /// Committed block bodies, keyed by height.
    Blocks,
    /// Quorum certificates of committed blocks.
    QuorumCerts,
    /// The consensus safety state.
    Safety,
    /// DAG batches and certificates.
    DagBatches,
    /// Monetary engine state.
    Monetary,
    /// Markers such as the committed height.
    Meta,
}

impl Namespace {
    /// Every namespace.
    pub const ALL: [Namespace; 7] = [
        Namespace::Accounts,
        Namespace::Blocks,
        Namespace::QuorumCerts,
        Namespace::Safety,
        Namespace::DagBatches,
        Namespace::Monetary,
        Namespace::Meta,
    ];

    /// A stable short name (used as a column family / keyspace name).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Namespace::Accounts => "accounts",
            Namespace::Blocks => "blocks",
            Namespace::QuorumCerts => "qcs",
            Namespace::Safety => "safety",
            Namespace::DagBatches => "dag_batches",
            Namespace::Monetary => "monetary",
            Namespace::Meta => "meta",
        }
    }
}

/// Whether a write must be on stable storage before `write` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// May be lost on power failure (never partially applied, though).
    Buffered,
    /// On stable storage (fsync) before returning.
    Durable,
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put {
        /// Namespace.
        ns: Namespace,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// Namespace.
        ns: Namespace,
        /// Key.
        key: Vec<u8>,
    },
}

/// A set of writes applied atomically: all or none, also across a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Add a put.
    pub fn put(&mut self, ns: Namespace, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Put {
            ns,
            key: key.into(),
            value: value.into(),
        });
    }

    /// Add a delete.
    pub fn delete(&mut self, ns: Namespace, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete {
            ns,
            key: key.into(),
        });
    }

    /// Move every operation of `other` to the end of this batch.
    pub fn append(&mut self, other: &mut WriteBatch) {
        self.ops.append(&mut other.ops);
    }

    /// The operations in order.
    #[must_use]
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// Whether there is nothing to write.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Storage failures. None of them is a panic; each says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The underlying device or file system failed.
    #[error("storage I/O error: {detail}")]
    Io {
        /// What failed.
        detail: String,
    },
    /// Stored bytes are damaged.
    #[error("storage corruption in {what}")]
    Corruption {
        /// Where.
        what: String,
    },
    /// The disk is full.
    #[error("storage is full")]
    Full,
    /// The store is read-only.
    #[error("storage is read-only")]
    ReadOnly,
}

/// Key-value pairs returned by a scan, in ascending key order.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads of a store, shared by the live [`StateBackend`] and its
/// [`StateSnapshot`]s: ordered by key within a namespace, typed errors,
/// never a panic.
pub trait StateRead: Send + Sync {
    /// Read one value.
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Read several values; the result has one entry per key, in order.
    fn multi_get(
        &self,
        ns: Namespace,
        keys: &[&[u8]],
    ) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        keys.iter().map(|k| self.get(ns, k)).collect()
    }

    /// Up to `limit` entries whose key starts with `prefix`, ascending.
    fn scan_prefix(
        &self,
        ns: Namespace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError>;
}

/// Ordered key-value state storage with namespaces and atomic batches.
///
/// Contract:
/// - **Ordering**: writes are applied in call order; a `get` after a
///   returned `write` sees it. `scan_prefix` returns keys in ascending
///   byte order.
/// - **Atomicity**: a [`WriteBatch`] is applied entirely or not at all, also
///   across a crash.
/// - **Durability**: with [`Durability::Durable`], the batch is on stable
///   storage when `write` returns; with `Buffered` it may be lost by a crash,
///   but then together with every later batch (no holes).
/// - **Errors**: typed [`StorageError`]s, never a panic.
pub trait StateBackend: StateRead {
    /// Apply `batch` atomically with the given durability.
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError>;

    /// A consistent read-only view of every namespace as of one instant.
    ///
    /// Contract:
    /// - **Isolation**: the snapshot sees every batch whose `write` returned
    ///   before `snapshot` was called and none that started after it returned;
    ///   a batch is never seen in part. Later writes to the backend do not
    ///   change what the snapshot returns.
    /// - **Cost**: taking a snapshot is cheap (no copy of the data in the
    ///   persistent backends; copy-on-write in [`MemoryBackend`]). Holding one
    ///   keeps old versions alive, so drop it when done.
    fn snapshot(&self) -> Result<Box<dyn StateSnapshot + '_>, StorageError>;

    /// Write a consistent, self-contained copy of the whole store into the
    /// directory `dir`, which must not exist yet (its parent must).
    ///
    /// Contract:
    /// - the copy holds exactly the state of one instant, like
    ///   [`StateBackend::snapshot`] (never a batch in part);
    /// - it is on stable storage when `checkpoint` returns, and opening it with
    ///   the same backend type (each backend documents how) yields that state;
    /// - writes to the backend may continue while the checkpoint is made;
    /// - an existing `dir` is an error ([`StorageError::Io`]) and is left as is.
    fn checkpoint(&self, dir: &Path) -> Result<(), StorageError>;
}

/// A shared store: the engine, a snapshotter and a pruner can each hold an
/// `Arc` of one backend.
impl<S: StateRead + ?Sized> StateRead for std::sync::Arc<S> {
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).get(ns, key)
    }

    fn multi_get(
        &self,
        ns: Namespace,
        keys: &[&[u8]],
    ) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        (**self).multi_get(ns, keys)
    }

    fn scan_prefix(
        &self,
        ns: Namespace,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        (**self).scan_prefix(ns, prefix, limit)
    }
}

impl<S: StateBackend + ?Sized> StateBackend for std::sync::Arc<S> {
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        (**self).write(batch, durability)
    }

    fn snapshot(&self) -> Result<Box<dyn StateSnapshot + '_>, StorageError> {
        (**self).snapshot()
    }

    fn checkpoint(&self, dir: &Path) -> Result<(), StorageError> {
        (**self).checkpoint(dir)
    }
}

/// A consistent read-only view of a [`StateBackend`] (see
/// [`StateBackend::snapshot`]). Reads have the same ordering and error
/// contract as the backend's.
pub trait StateSnapshot: StateRead {
    /// Up to `limit` entries with `start <= key` and, if `end` is given,
    /// `key < end`, ascending. An empty range (`end <= start`) yields nothing.
    fn scan_range(
        &self,
        ns: Namespace,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError>;
}

// ---------------------------------------------------------------- transport

/// Transport failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The peer is not known to the transport.
    #[error("unknown peer {0}")]
    UnknownPeer(ValidatorId),
    /// The transport has shut down.
    #[error("transport closed")]
    Closed,
    /// The per-peer queue is full; the message was dropped.
    #[error("send queue to {0} is full")]
    QueueFull(ValidatorId),
    /// The message is larger than the transport carries in one message; it
    /// was not sent (the connection is unaffected).
    #[error("message of {len} bytes exceeds the transport's maximum of {max}")]
    TooLarge {
        /// Encoded size of the refused message.
        len: usize,
        /// Largest message the transport carries.
        max: usize,
    },
}

/// Authenticated, best-effort message delivery between validators.
///
/// Contract:
/// - **Authentication**: the `ValidatorId` returned by `recv` is the
///   authenticated sender (KEMTLS in `qbind-net`); the core still verifies
///   every signature.
/// - **Ordering**: none guaranteed; messages may be lost, duplicated or
///   reordered, and the protocol tolerates it.
/// - **Back-pressure**: sends never block indefinitely; a full per-peer
///   queue drops the message and reports [`TransportError::QueueFull`].
/// - **Errors**: typed; `Closed` is final.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Send `bytes` to one validator.
    async fn send(&self, to: ValidatorId, bytes: Vec<u8>) -> Result<(), TransportError>;
    /// Send `bytes` to every other validator.
    async fn broadcast(&self, bytes: Vec<u8>) -> Result<(), TransportError>;
    /// The next message from any peer.
    async fn recv(&self) -> Result<(ValidatorId, Vec<u8>), TransportError>;
}

// ---------------------------------------------------------------- signer

/// A request to sign a protocol object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignRequest {
    /// The kind of object: selects the domain tag.
    pub kind: SignKind,
    /// The view the object belongs to, for double-sign protection (none for
    /// transactions and batches).
    pub view: Option<View>,
    /// The object's canonical bytes (without tag or chain ID).
    pub message: Vec<u8>,
    /// When `message` is a digest, the canonical bytes of the object it is
    /// the digest of, so that a signer can decode what it signs instead of
    /// trusting `view`: a proposal's canonical
    /// [`BlockHeader`](crate::consensus::BlockHeader) (its id, the SHA3-256
    /// of these bytes, is `message`), a batch's canonical encoding (its
    /// [`Batch::digest`](crate::dag::Batch::digest) is `message`). Empty for
    /// every other kind. Not signed.
    pub digest_preimage: Vec<u8>,
}

/// Signer failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    /// The signer refused a request that conflicts with one it already signed.
    #[error("refused to sign a conflicting {kind:?} for view {view:?}")]
    Conflict {
        /// The kind.
        kind: SignKind,
        /// The view.
        view: Option<View>,
    },
    /// The signer (HSM, remote daemon) is unavailable.
    #[error("signer unavailable: {detail}")]
    Unavailable {
        /// Why.
        detail: String,
    },
}

/// Produces domain-separated ML-DSA-44 signatures for one validator.
///
/// Contract:
/// - the signature is over `domain_tag(env, kind) || chain_id || message`
///   and must verify with [`crate::signing::verify_domain`];
/// - a signer may refuse a request (double-sign protection, rate limits) with
///   a typed [`SignerError`]; the core then sends nothing for that request;
/// - implementations chosen at run time are used as `Box<dyn Signer>`.
#[async_trait]
pub trait Signer: Send + Sync {
    /// The validator this signer signs for.
    fn validator_id(&self) -> ValidatorId;
    /// Its public key.
    fn public_key(&self) -> &PublicKey;
    /// Sign one request.
    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError>;
}

/// A shared signer signs like the signer it shares (so a node can keep a
/// handle, e.g. to watch a supervisor's health, while the engine owns a
/// `Box<dyn Signer>` of the same signer).
#[async_trait]
impl<S: Signer + ?Sized> Signer for std::sync::Arc<S> {
    fn validator_id(&self) -> ValidatorId {
        (**self).validator_id()
    }

    fn public_key(&self) -> &PublicKey {
        (**self).public_key()
    }

    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError> {
        (**self).sign(request).await
    }
}

/// An in-process signer holding the key in memory (tests and DevNet only).
#[derive(Clone)]
pub struct LocalSigner {
    id: ValidatorId,
    env: NetworkEnvironment,
    key: KeyPair,
}

impl LocalSigner {
    /// A signer for validator `id` on network `env`.
    #[must_use]
    pub fn new(id: ValidatorId, env: NetworkEnvironment, key: KeyPair) -> Self {
        LocalSigner { id, env, key }
    }

    /// Sign synchronously.
    #[must_use]
    pub fn sign_now(&self, request: &SignRequest) -> Signature {
        sign_domain(&self.key, self.env, request.kind, &request.message)
    }
}

#[async_trait]
impl Signer for LocalSigner {
    fn validator_id(&self) -> ValidatorId {
        self.id
    }

    fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// Signs with the in-memory key; a failure of the signing operation
    /// (not expected from a valid key) is [`SignerError::Unavailable`].
    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError> {
        self.key
            .try_sign(&signing_preimage(self.env, request.kind, &request.message))
            .map_err(|e| SignerError::Unavailable {
                detail: format!("signing failed: {e}"),
            })
    }
}

/// The signer of a follower (a full node): a replica whose id no validator
/// set names, so the core never asks it to sign (proposals, votes, timeouts
/// and batch acks are all gated on set membership). It holds no key: every
/// request is refused with [`SignerError::Unavailable`] and counted, so a
/// request that did reach it is visible ([`FollowerSigner::refused`]) and
/// fails safe (the engine sends nothing for it).
pub struct FollowerSigner {
    id: ValidatorId,
    placeholder: PublicKey,
    refused: std::sync::atomic::AtomicU64,
}

impl FollowerSigner {
    /// The signer of follower `id`. Its [`Signer::public_key`] is a
    /// placeholder derived from the id by a public rule (anyone could sign
    /// for it; no validator set names it, so nothing it signed would count).
    #[must_use]
    pub fn new(id: ValidatorId) -> Self {
        let seed = *crate::types::Hash32::digest(
            &[
                b"QBIND-FOLLOWER-PLACEHOLDER:".as_slice(),
                &id.0.to_be_bytes(),
            ]
            .concat(),
        )
        .as_bytes();
        FollowerSigner {
            id,
            placeholder: KeyPair::from_seed(&seed).public_key().clone(),
            refused: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Sign requests refused so far (0 for a correct follower).
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl Signer for FollowerSigner {
    fn validator_id(&self) -> ValidatorId {
        self.id
    }

    fn public_key(&self) -> &PublicKey {
        &self.placeholder
    }

    /// Always refused: a follower holds no consensus key.
    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError> {
        self.refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(SignerError::Unavailable {
            detail: format!(
                "follower {} holds no consensus key (asked to sign a {:?})",
                self.id.0, request.kind
            ),
        })
    }
}

// ---------------------------------------------------------------- clock

/// A monotonic source of time in milliseconds.
///
/// Contract: `now` never decreases; `sleep_until` returns at or after the
/// deadline (immediately if it has passed).
#[async_trait]
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Millis;
    /// Wait until `deadline`.
    async fn sleep_until(&self, deadline: Millis);
}
