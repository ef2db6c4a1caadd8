//! The fee-priority mempool with DoS limits (spec §3.3, §4.4; runbook §3.5).
//!
//! - **Priority** is `(max_fee_per_gas, effective_fee, arrival)`: higher fees
//!   first, and among equal fees the earlier arrival first. Selection for a
//!   batch or block also keeps each sender's transactions in nonce order.
//! - **Capacity**: a full pool admits a transaction only by evicting the
//!   lowest-priority one, and only if the newcomer ranks higher.
//! - **Eviction rate limiting** (`Off` / `Warn` / `Enforce`): at most
//!   `max_evictions_per_interval` capacity evictions per interval; in
//!   `Enforce` mode a transaction that would need one more is refused
//!   instead (MainNet: 1,000 per 10 s), so a flood cannot churn the pool.
//! - **Per-sender limit** on pending transactions.
//! - **Replacement**: a transaction for a sender and nonce already pending
//!   replaces it only with a fee at least `replacement_bump_bps` higher.
//! - **v0 payloads** are refused where the profile forbids them (MainNet).
//!
//! Every refusal is a typed [`MempoolRejection`] and a counter; every
//! eviction is counted by reason. Time comes in as input; nothing here reads
//! a clock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};

use crate::types::{AccountId, Hash32, Millis};

/// What the pool needs to know about a transaction.
pub trait PoolTx: Clone {
    /// Unique id (hash of the signed transaction).
    fn id(&self) -> Hash32;
    /// The paying account.
    fn sender(&self) -> AccountId;
    /// The sender's nonce.
    fn nonce(&self) -> u64;
    /// The fee per gas it is willing to pay.
    fn max_fee_per_gas(&self) -> u128;
    /// Its fee at its gas limit (the second priority key).
    fn effective_fee(&self) -> u128;
    /// Whether it uses the legacy v0 payload.
    fn is_v0_payload(&self) -> bool;
    /// Gas it declares (counted against a block's gas limit); default 0.
    fn gas_limit(&self) -> u64 {
        0
    }
    /// For a transaction outside the fee market (a system transaction):
    /// its rank among transactions of the same sender and nonce, which a
    /// replacement must strictly exceed (fees are not compared). `None`
    /// (the default) for a transfer: the fee-bump rule applies.
    fn replace_rank(&self) -> Option<u64> {
        None
    }
}

/// The fields of a transaction the pool orders by, read from its bytes by a
/// decoder the embedder supplies ([`crate::consensus::ConsensusConfig::tx_meta`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxMeta {
    /// The paying account.
    pub sender: AccountId,
    /// The sender's nonce.
    pub nonce: u64,
    /// Fee per gas offered.
    pub max_fee_per_gas: u128,
    /// Fee at the gas limit.
    pub effective_fee: u128,
    /// Gas the transaction declares (what execution reserves of the block
    /// gas limit for it); 0 where unknown.
    pub gas_limit: u64,
    /// Whether the payload is the legacy v0 format.
    pub v0_payload: bool,
    /// [`PoolTx::replace_rank`]: `Some` only for system transactions
    /// ([`crate::system_tx::SystemTx::meta`]).
    pub replace_rank: Option<u64>,
}

/// Reads [`TxMeta`] from a transaction's bytes; `None` if they are not a
/// transaction.
pub type TxMetaFn = fn(&[u8]) -> Option<TxMeta>;

/// Opaque transaction bytes with their metadata; its id is SHA3-256 of the
/// bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaTx {
    /// The transaction as received.
    pub bytes: Vec<u8>,
    /// What the pool orders by.
    pub meta: TxMeta,
    id: Hash32,
}

impl MetaTx {
    /// Wrap `bytes` with `meta`.
    #[must_use]
    pub fn new(bytes: Vec<u8>, meta: TxMeta) -> Self {
        let id = Hash32::of_transaction(&bytes);
        MetaTx { bytes, meta, id }
    }
}

impl PoolTx for MetaTx {
    fn id(&self) -> Hash32 {
        self.id
    }
    fn sender(&self) -> AccountId {
        self.meta.sender
    }
    fn nonce(&self) -> u64 {
        self.meta.nonce
    }
    fn max_fee_per_gas(&self) -> u128 {
        self.meta.max_fee_per_gas
    }
    fn effective_fee(&self) -> u128 {
        self.meta.effective_fee
    }
    fn is_v0_payload(&self) -> bool {
        self.meta.v0_payload
    }
    fn gas_limit(&self) -> u64 {
        self.meta.gas_limit
    }
    fn replace_rank(&self) -> Option<u64> {
        self.meta.replace_rank
    }
}

/// How the eviction rate limit is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictionMode {
    /// No limit.
    Off,
    /// Count and report when over the limit, but evict anyway.
    Warn,
    /// Refuse transactions that would need an eviction over the limit.
    Enforce,
}

impl EvictionMode {
    /// The metric label (`warn`, `enforce`, `off`).
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            EvictionMode::Off => "off",
            EvictionMode::Warn => "warn",
            EvictionMode::Enforce => "enforce",
        }
    }
}

/// Pool parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeeMempoolConfig {
    /// Most pending transactions.
    pub capacity: usize,
    /// Most pending transactions per sender.
    pub max_per_sender: usize,
    /// Eviction rate limit mode.
    pub eviction_mode: EvictionMode,
    /// Capacity evictions allowed per interval.
    pub max_evictions_per_interval: u32,
    /// Interval length in milliseconds.
    pub eviction_interval_ms: u64,
    /// Fee increase a replacement needs, in basis points (1,000 = 10 %).
    pub replacement_bump_bps: u32,
    /// Whether v0 payloads are accepted (never on MainNet).
    pub allow_v0_payloads: bool,
}

impl FeeMempoolConfig {
    /// MainNet defaults (runbook §3.5): enforce 1,000 evictions per 10 s,
    /// no v0 payloads.
    #[must_use]
    pub fn mainnet() -> Self {
        FeeMempoolConfig {
            capacity: 10_000,
            max_per_sender: 64,
            eviction_mode: EvictionMode::Enforce,
            max_evictions_per_interval: 1_000,
            eviction_interval_ms: 10_000,
            replacement_bump_bps: 1_000,
            allow_v0_payloads: false,
        }
    }
}

/// Why a transaction was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MempoolRejection {
    /// Already pending.
    #[error("duplicate transaction")]
    Duplicate,
    /// A v0 payload where the profile forbids it.
    #[error("v0 transfer payloads are not accepted on this network")]
    V0PayloadForbidden,
    /// The sender has too many pending transactions.
    #[error("sender has {limit} pending transactions already")]
    SenderLimit {
        /// The limit.
        limit: usize,
    },
    /// A replacement without the required fee bump.
    #[error("replacement fee {offered} below the required {required}")]
    ReplacementUnderpriced {
        /// Fee per gas offered.
        offered: u128,
        /// Fee per gas required.
        required: u128,
    },
    /// A system transaction that does not outrank the pending one of the
    /// same sender and nonce ([`PoolTx::replace_rank`]): for a key
    /// rotation, neither an emergency over a normal one nor a later
    /// effective epoch.
    #[error(
        "a pending system transaction is replaced only by one that outranks it (a key \
         rotation: an emergency over a normal one, or a later effective epoch); rank \
         {offered} offered, {pending} pending"
    )]
    SystemTxNotNewer {
        /// The rank offered.
        offered: u64,
        /// The pending transaction's rank.
        pending: u64,
    },
    /// The pool is full and the transaction does not outrank the lowest one.
    #[error("mempool full ({capacity}) and the fee does not outrank pending transactions")]
    PoolFull {
        /// The capacity.
        capacity: usize,
    },
    /// The pool is full and the eviction rate limit is reached (Enforce).
    #[error("eviction rate limit reached ({limit} per {interval_ms} ms)")]
    EvictionRateLimited {
        /// Evictions allowed per interval.
        limit: u32,
        /// The interval.
        interval_ms: u64,
    },
}

impl MempoolRejection {
    /// A stable metric label.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            MempoolRejection::Duplicate => "duplicate",
            MempoolRejection::V0PayloadForbidden => "v0_payload_forbidden",
            MempoolRejection::SenderLimit { .. } => "sender_limit",
            MempoolRejection::ReplacementUnderpriced { .. } => "replacement_underpriced",
            MempoolRejection::SystemTxNotNewer { .. } => "system_tx_not_newer",
            MempoolRejection::PoolFull { .. } => "pool_full",
            MempoolRejection::EvictionRateLimited { .. } => "eviction_rate_limited",
        }
    }
}

/// The replacement rule of ranked (system) transactions, for a transaction
/// offered with rank `offered` at a sender and nonce where one with rank
/// `pending` waits: a rank replaces only a strictly lower rank (both carry
/// the top fee, which no bump can exceed); a fee never displaces a rank, nor
/// a rank a transaction without one (their senders differ by construction).
/// Two unranked transactions are left to the fee rule (`Ok`).
///
/// # Errors
/// [`MempoolRejection::SystemTxNotNewer`] otherwise.
pub fn check_replace_rank(
    offered: Option<u64>,
    pending: Option<u64>,
) -> Result<(), MempoolRejection> {
    match (offered, pending) {
        (None, None) => Ok(()),
        (Some(o), Some(p)) if o > p => Ok(()),
        (o, p) => Err(MempoolRejection::SystemTxNotNewer {
            offered: o.unwrap_or(0),
            pending: p.unwrap_or(0),
        }),
    }
}

/// What admitting a transaction did.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Admission {
    /// A pending transaction it replaced (same sender and nonce).
    pub replaced: Option<Hash32>,
    /// A lower-priority transaction evicted to make room.
    pub evicted: Option<Hash32>,
}

/// Pool counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeeMempoolMetrics {
    /// Transactions admitted.
    pub admitted_total: u64,
    /// `qbind_mempool_evictions_total{reason}` (`capacity`, `replaced`,
    /// `parked`).
    pub evictions_total: BTreeMap<&'static str, u64>,
    /// `qbind_mempool_eviction_rate_limit_total{mode}`.
    pub eviction_rate_limit_total: BTreeMap<&'static str, u64>,
    /// Refusals by [`MempoolRejection::label`].
    pub rejected_total: BTreeMap<&'static str, u64>,
}

/// Priority key: ascending order = lowest priority first.
type Key = (u128, u128, Reverse<u64>, Hash32);

/// Senders with nonces handed to batches and not executed yet that the
/// pool tracks (beyond it, a sender's next transaction waits for execution).
pub const MAX_IN_FLIGHT_SENDERS: usize = 65_536;

/// The fee-priority pool.
pub struct FeeMempool<T: PoolTx> {
    cfg: FeeMempoolConfig,
    next_arrival: u64,
    txs: HashMap<Hash32, (T, Key)>,
    by_priority: BTreeSet<Key>,
    by_sender: BTreeMap<AccountId, BTreeMap<u64, Hash32>>,
    /// Each sender's lowest-nonce transaction: the ones eligible next.
    heads: BTreeSet<(Key, AccountId)>,
    /// The next nonce each sender's account will execute, where known
    /// ([`FeeMempool::note_account_nonce`], [`FeeMempool::note_used`]);
    /// only for senders with pending transactions.
    next_nonce: HashMap<AccountId, u64>,
    /// The next nonce of each sender's account in the executed state, as
    /// last read ([`FeeMempool::note_account_nonce`]): an abandoned nonce
    /// never sends the sender below it. Same senders as `next_nonce`.
    executed_nonce: HashMap<AccountId, u64>,
    /// Nonces this pool handed to batches whose blocks have not executed
    /// yet, per sender ([`FeeMempool::note_used`], settled by
    /// [`FeeMempool::note_settled`]): the sender may continue after them
    /// before execution catches up. At most [`MAX_IN_FLIGHT_SENDERS`].
    in_flight: HashMap<AccountId, BTreeSet<u64>>,
    /// The entries of `heads` whose nonce cannot execute next (the sender's
    /// next nonce is known and is not it): every transaction of those
    /// senders is parked, and the first to go when the pool is full.
    parked: BTreeSet<(Key, AccountId)>,
    evictions: VecDeque<Millis>,
    metrics: FeeMempoolMetrics,
}

impl<T: PoolTx> FeeMempool<T> {
    /// An empty pool.
    #[must_use]
    pub fn new(cfg: FeeMempoolConfig) -> Self {
        FeeMempool {
            cfg,
            next_arrival: 0,
            txs: HashMap::new(),
            by_priority: BTreeSet::new(),
            by_sender: BTreeMap::new(),
            heads: BTreeSet::new(),
            next_nonce: HashMap::new(),
            executed_nonce: HashMap::new(),
            in_flight: HashMap::new(),
            parked: BTreeSet::new(),
            evictions: VecDeque::new(),
            metrics: FeeMempoolMetrics::default(),
        }
    }

    /// Pending transactions.
    #[must_use]
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether nothing is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Counters.
    #[must_use]
    pub fn metrics(&self) -> &FeeMempoolMetrics {
        &self.metrics
    }

    /// Whether `id` is pending.
    #[must_use]
    pub fn contains(&self, id: &Hash32) -> bool {
        self.txs.contains_key(id)
    }

    /// The most transactions it holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.cfg.capacity
    }

    /// The fee per gas of the lowest-priority pending transaction (a full
    /// pool admits only a transaction that outranks it).
    #[must_use]
    pub fn lowest_fee_per_gas(&self) -> Option<u128> {
        self.by_priority.first().map(|k| k.0)
    }

    /// Admit `tx` at time `now`, or say why not.
    pub fn insert(&mut self, now: Millis, tx: T) -> Result<Admission, MempoolRejection> {
        let result = self.try_insert(now, tx);
        match &result {
            Ok(_) => self.metrics.admitted_total += 1,
            Err(r) => *self.metrics.rejected_total.entry(r.label()).or_default() += 1,
        }
        result
    }

    fn try_insert(&mut self, now: Millis, tx: T) -> Result<Admission, MempoolRejection> {
        let id = tx.id();
        if self.txs.contains_key(&id) {
            return Err(MempoolRejection::Duplicate);
        }
        if tx.is_v0_payload() && !self.cfg.allow_v0_payloads {
            return Err(MempoolRejection::V0PayloadForbidden);
        }
        let sender = tx.sender();
        let existing = self
            .by_sender
            .get(&sender)
            .and_then(|m| m.get(&tx.nonce()))
            .copied();
        let key: Key = (
            tx.max_fee_per_gas(),
            tx.effective_fee(),
            Reverse(self.next_arrival),
            id,
        );
        if let Some(old_id) = existing {
            let old = self.txs.get(&old_id).map(|(t, _)| t);
            let old_rank = old.and_then(PoolTx::replace_rank);
            check_replace_rank(tx.replace_rank(), old_rank)?;
            if tx.replace_rank().is_none() {
                // Neither is ranked: the fee must rise by the bump.
                let old_fee = old.map_or(0, PoolTx::max_fee_per_gas);
                let bump = u128::from(self.cfg.replacement_bump_bps);
                let required = old_fee.saturating_add(old_fee.saturating_mul(bump) / 10_000);
                let required = required.max(old_fee.saturating_add(1));
                if tx.max_fee_per_gas() < required {
                    return Err(MempoolRejection::ReplacementUnderpriced {
                        offered: tx.max_fee_per_gas(),
                        required,
                    });
                }
            }
            // Detached, not removed: what is known of the sender survives
            // its replaced transaction (removing its only one forgot it, and
            // a parked sender came back as executable: review finding).
            self.detach(&old_id);
            *self.metrics.evictions_total.entry("replaced").or_default() += 1;
            self.add(tx, key);
            return Ok(Admission {
                replaced: Some(old_id),
                evicted: None,
            });
        }
        let pending_for_sender = self.by_sender.get(&sender).map_or(0, BTreeMap::len);
        if pending_for_sender >= self.cfg.max_per_sender {
            return Err(MempoolRejection::SenderLimit {
                limit: self.cfg.max_per_sender,
            });
        }
        let mut evicted = None;
        if self.txs.len() >= self.cfg.capacity {
            let full = MempoolRejection::PoolFull {
                capacity: self.cfg.capacity,
            };
            if !self.could_execute(&sender, tx.nonce()) {
                // It would park: a full pool keeps its room for
                // transactions that can execute.
                return Err(full);
            }
            if let Some(victim) = self.parked_victim(sender) {
                // A transaction that cannot execute gives way to one that
                // can, whatever their fees: it would never pay them.
                self.remove_id(&victim);
                *self.metrics.evictions_total.entry("parked").or_default() += 1;
                evicted = Some(victim);
            } else {
                let Some(lowest) = self.by_priority.first().copied() else {
                    return Err(full);
                };
                if key <= lowest {
                    return Err(full);
                }
                self.check_eviction_rate(now)?;
                self.remove_id(&lowest.3);
                self.evictions.push_back(now);
                *self.metrics.evictions_total.entry("capacity").or_default() += 1;
                evicted = Some(lowest.3);
            }
        }
        self.add(tx, key);
        Ok(Admission {
            replaced: None,
            evicted,
        })
    }

    fn check_eviction_rate(&mut self, now: Millis) -> Result<(), MempoolRejection> {
        let window = self.cfg.eviction_interval_ms;
        while self
            .evictions
            .front()
            .is_some_and(|t| now.since(*t) >= window)
        {
            self.evictions.pop_front();
        }
        let over = self.evictions.len() as u64 >= u64::from(self.cfg.max_evictions_per_interval);
        if !over || self.cfg.eviction_mode == EvictionMode::Off {
            return Ok(());
        }
        let mode = self.cfg.eviction_mode;
        *self
            .metrics
            .eviction_rate_limit_total
            .entry(mode.label())
            .or_default() += 1;
        match mode {
            EvictionMode::Enforce => Err(MempoolRejection::EvictionRateLimited {
                limit: self.cfg.max_evictions_per_interval,
                interval_ms: window,
            }),
            EvictionMode::Warn | EvictionMode::Off => Ok(()),
        }
    }

    /// When the pool is full and a transaction of `sender` that could
    /// execute arrives (checked by the caller), and its account's next
    /// nonce is *known*: the highest-nonce transaction of the
    /// lowest-priority parked sender (not `sender`), to evict. Parked
    /// transactions hold no executable one out (a review found that
    /// accounts submitting only nonces past their own could fill the pool
    /// with high fees they never pay). A sender whose next nonce is unknown
    /// (a DAG pool does not read it for a sender with nothing pending)
    /// evicts only by priority, under the rate limit: otherwise any funded
    /// account could evict parked transactions for free with a nonce far
    /// ahead of its own.
    fn parked_victim(&self, sender: AccountId) -> Option<Hash32> {
        if !self.next_nonce.contains_key(&sender) {
            return None;
        }
        let (_, victim) = self.parked.iter().find(|(_, s)| *s != sender)?;
        self.by_sender.get(victim)?.values().next_back().copied()
    }

    /// Whether `sender`'s transaction with `nonce` could execute after the
    /// sender's pending ones: its account's next nonce is unknown, or is
    /// `nonce`, or every nonce between is pending.
    fn could_execute(&self, sender: &AccountId, nonce: u64) -> bool {
        let Some(&next) = self.next_nonce.get(sender) else {
            return true;
        };
        if nonce < next {
            return false;
        }
        let between = self
            .by_sender
            .get(sender)
            .map_or(0, |m| m.range(next..nonce).count());
        u64::try_from(between).is_ok_and(|b| b == nonce - next)
    }

    /// Put `sender` back in or out of `parked` after its next nonce
    /// changed (its head did not).
    fn reclassify(&mut self, sender: AccountId) {
        let head = self.head_of(&sender);
        self.repark(sender, head, head);
    }

    /// `parked` after `sender`'s head moved from `old` to `new` (or its next
    /// nonce changed): its entry, if any, carries `new`, the key it has in
    /// `heads`.
    fn repark(&mut self, sender: AccountId, old: Option<Key>, new: Option<Key>) {
        if let Some(k) = old {
            self.parked.remove(&(k, sender));
        }
        let head_nonce = self.by_sender.get(&sender).and_then(|m| m.keys().next());
        if let Some(k) = new
            && head_nonce.is_some_and(|n| !self.executable(&sender, *n))
        {
            self.parked.insert((k, sender));
        }
    }

    /// Senders whose transactions are parked behind a missing nonce (see
    /// [`FeeMempool::take`]).
    #[must_use]
    pub fn parked_senders(&self) -> usize {
        self.parked.len()
    }

    /// The key of `sender`'s lowest-nonce pending transaction.
    fn head_of(&self, sender: &AccountId) -> Option<Key> {
        let id = self.by_sender.get(sender)?.values().next()?;
        self.txs.get(id).map(|(_, k)| *k)
    }

    fn add(&mut self, tx: T, key: Key) {
        // One per insertion: cannot reach u64::MAX, saturating all the same.
        self.next_arrival = self.next_arrival.saturating_add(1);
        let sender = tx.sender();
        let old_head = self.head_of(&sender);
        self.by_priority.insert(key);
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(tx.nonce(), key.3);
        self.txs.insert(key.3, (tx, key));
        self.refresh_head(sender, old_head);
    }

    /// Take `id` out, and forget its sender if it has nothing left pending.
    fn remove_id(&mut self, id: &Hash32) -> Option<T> {
        let tx = self.detach(id)?;
        self.forget_idle_sender(&tx.sender());
        Some(tx)
    }

    /// Take `id` out of the indexes, keeping what is known of its sender.
    fn detach(&mut self, id: &Hash32) -> Option<T> {
        let sender = self.txs.get(id).map(|(t, _)| t.sender())?;
        let old_head = self.head_of(&sender);
        let (tx, key) = self.txs.remove(id)?;
        self.by_priority.remove(&key);
        if let Some(m) = self.by_sender.get_mut(&sender) {
            m.remove(&tx.nonce());
            if m.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
        self.refresh_head(sender, old_head);
        Some(tx)
    }

    fn refresh_head(&mut self, sender: AccountId, old: Option<Key>) {
        let new = self.head_of(&sender);
        if old != new {
            if let Some(k) = old {
                self.heads.remove(&(k, sender));
            }
            if let Some(k) = new {
                self.heads.insert((k, sender));
            }
        }
        self.repark(sender, old, new);
    }

    /// Remove transactions that were committed (or otherwise settled).
    pub fn remove(&mut self, ids: impl IntoIterator<Item = Hash32>) {
        for id in ids {
            self.remove_id(&id);
        }
    }

    /// `sender`'s account will execute `nonce` next: read from the executed
    /// state when one of its transactions is submitted and after every
    /// executed block that carried one of its transactions. The executed
    /// state is the truth: this replaces what was known, also downwards (a
    /// nonce handed to a batch that execution then refused is wanted again).
    /// Recorded only while the sender has pending transactions. Pending
    /// transactions of the sender below `nonce` can never execute: they are
    /// removed and returned.
    pub fn note_account_nonce(&mut self, sender: AccountId, nonce: u64) -> Vec<Hash32> {
        let Some(pending) = self.by_sender.get(&sender) else {
            return Vec::new();
        };
        let stale: Vec<Hash32> = pending.range(..nonce).map(|(_, id)| *id).collect();
        let next = self.after_in_flight(&sender, nonce);
        self.next_nonce.insert(sender, next);
        self.executed_nonce.insert(sender, nonce);
        for id in &stale {
            self.remove_id(id);
        }
        self.reclassify(sender);
        stale
    }

    /// `sender`'s transaction with `nonce` was handed out (to a batch) and
    /// then given up without executing: the sender's next nonce goes back
    /// to it, so its later transactions wait for it to be submitted again
    /// rather than fail at execution one after another — but never below
    /// the nonce its account executes next as last read: a nonce already
    /// executed (by another copy) cannot be submitted again, and the
    /// sender's later transactions would wait for ever (found in review).
    pub fn note_abandoned(&mut self, sender: AccountId, nonce: u64) {
        self.note_settled(&sender, nonce);
        let floor = self.executed_nonce.get(&sender).copied().unwrap_or(0);
        if let Some(next) = self.next_nonce.get_mut(&sender) {
            *next = (*next).min(nonce).max(floor);
        }
        self.reclassify(sender);
    }

    /// As [`FeeMempool::note_account_nonce`] for a transaction of `sender`
    /// about to be inserted (the insert may propose or batch it at once),
    /// for a sender with transactions pending already.
    pub fn prime_account_nonce(
        &mut self,
        sender: AccountId,
        nonce: u64,
        idle_senders: bool,
    ) -> Vec<Hash32> {
        // `idle_senders`: also a sender with nothing pending (FIFO pools,
        // whose proposer takes it at once). DAG pools leave such a sender
        // unknown: holding every transaction of an account whose previous
        // nonce sits in another validator's batch serialised senders on
        // execution and stalled the DAG whole-node long run.
        if self.by_sender.contains_key(&sender) {
            return self.note_account_nonce(sender, nonce);
        }
        if idle_senders {
            let next = self.after_in_flight(&sender, nonce);
            self.next_nonce.insert(sender, next);
            self.executed_nonce.insert(sender, nonce);
        }
        Vec::new()
    }

    /// The sender's next nonce given that its account executes `executed`
    /// next: past the nonces handed to batches and still in flight above it.
    fn after_in_flight(&self, sender: &AccountId, executed: u64) -> u64 {
        let mut next = executed;
        if let Some(set) = self.in_flight.get(sender) {
            for n in set.range(executed..) {
                if *n != next {
                    break;
                }
                next = next.saturating_add(1);
            }
        }
        next
    }

    /// `sender`'s transaction with `nonce` was in an executed block (used or
    /// refused): it is no longer in flight.
    pub fn note_settled(&mut self, sender: &AccountId, nonce: u64) {
        if let Some(set) = self.in_flight.get_mut(sender) {
            set.remove(&nonce);
            if set.is_empty() {
                self.in_flight.remove(sender);
            }
        }
    }

    /// Forget what is known about `sender` if it has nothing pending (after a
    /// refused insert; keeps `next_nonce` bounded by the pending senders).
    pub fn forget_idle_sender(&mut self, sender: &AccountId) {
        if !self.by_sender.contains_key(sender) {
            self.next_nonce.remove(sender);
            self.executed_nonce.remove(sender);
        }
    }

    /// This pool handed `sender`'s `nonce` to a batch: its next transaction
    /// may follow in the next batch (`nonce + 1`), ahead of execution (which
    /// corrects it, [`FeeMempool::note_account_nonce`]). Pending
    /// transactions of the sender at or below `nonce` (same-nonce copies)
    /// are removed and returned.
    pub fn note_used(&mut self, sender: AccountId, nonce: u64) -> Vec<Hash32> {
        if self.in_flight.len() < MAX_IN_FLIGHT_SENDERS || self.in_flight.contains_key(&sender) {
            self.in_flight.entry(sender).or_default().insert(nonce);
        }
        let Some(pending) = self.by_sender.get(&sender) else {
            return Vec::new();
        };
        let stale: Vec<Hash32> = pending.range(..=nonce).map(|(_, id)| *id).collect();
        let next = nonce.saturating_add(1);
        let entry = self.next_nonce.entry(sender).or_insert(next);
        *entry = (*entry).max(next);
        for id in &stale {
            self.remove_id(id);
        }
        self.reclassify(sender);
        stale
    }

    /// Whether `sender`'s transaction with `nonce` may go into a block now:
    /// its account executes `nonce` next, or nothing is known about it.
    fn executable(&self, sender: &AccountId, nonce: u64) -> bool {
        self.next_nonce.get(sender).is_none_or(|n| *n == nonce)
    }

    /// Up to `max` transactions, highest priority first, each sender's in
    /// nonce order without gaps: a sender's first transaction is taken only
    /// if its account executes that nonce next (where known, see
    /// [`FeeMempool::note_account_nonce`]), and its next one only after the
    /// previous nonce was taken. A transaction whose predecessor is missing
    /// would fail at execution, and every later one of its sender with it
    /// (issue #21: concurrent submissions of one account reached the pool
    /// out of order).
    #[must_use]
    pub fn take(&self, max: usize) -> Vec<T> {
        self.take_within(max, u64::MAX, |_| false)
    }

    /// As [`FeeMempool::take`], for a block: at most `max` transactions
    /// and `max_gas` of declared gas (the block gas limit execution
    /// enforces: a transaction over it would be refused there, and every
    /// later one of its sender with it), not counting the ones `skip` says
    /// are already in an ancestor block — those are passed over but still
    /// let their sender's next nonce follow. A transaction that does not
    /// fit ends its sender's run; smaller ones of other senders may still
    /// fill the block.
    #[must_use]
    pub fn take_within(&self, max: usize, max_gas: u64, skip: impl Fn(&Hash32) -> bool) -> Vec<T> {
        // Every pick is the best of the executable heads not picked yet
        // (read lazily, in priority order) and the successors of earlier
        // picks. Heads are not cut to the first `max`: one that does not
        // fit the gas left must not keep a smaller one below it out
        // (found in review).
        let mut heads = self
            .heads
            .iter()
            .rev()
            .filter_map(|(key, sender)| {
                let (tx, _) = self.txs.get(&key.3)?;
                self.executable(sender, tx.nonce())
                    .then_some((*key, *sender, tx.nonce()))
            })
            .peekable();
        let mut successors: BinaryHeap<(Key, AccountId, u64)> = BinaryHeap::new();
        let mut out = Vec::with_capacity(max.min(self.txs.len()));
        let mut gas = 0u64;
        while out.len() < max {
            let from_heads = match (heads.peek(), successors.peek()) {
                (Some(h), Some(s)) => h > s,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let pick = if from_heads {
                heads.next()
            } else {
                successors.pop()
            };
            let Some((key, sender, nonce)) = pick else {
                break;
            };
            if let Some((tx, _)) = self.txs.get(&key.3)
                && !skip(&key.3)
            {
                match gas.checked_add(tx.gas_limit()) {
                    Some(total) if total <= max_gas => gas = total,
                    // Its successors cannot go before it.
                    _ => continue,
                }
                out.push(tx.clone());
            }
            // Only the very next nonce (none after u64::MAX).
            let next = nonce.checked_add(1).and_then(|after| {
                self.by_sender
                    .get(&sender)
                    .and_then(|m| m.get_key_value(&after))
            });
            if let Some((n, id)) = next
                && let Some((_, k)) = self.txs.get(id)
            {
                successors.push((*k, sender, *n));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Tx {
        sender: u16,
        nonce: u64,
        fee: u128,
        v0: bool,
    }

    impl PoolTx for Tx {
        fn id(&self) -> Hash32 {
            Hash32::digest(
                &[
                    &self.sender.to_be_bytes()[..],
                    &self.nonce.to_be_bytes(),
                    &self.fee.to_be_bytes(),
                    &[u8::from(self.v0)],
                ]
                .concat(),
            )
        }
        fn sender(&self) -> AccountId {
            let mut a = [0u8; 32];
            a[..2].copy_from_slice(&self.sender.to_be_bytes());
            AccountId(a)
        }
        fn nonce(&self) -> u64 {
            self.nonce
        }
        fn max_fee_per_gas(&self) -> u128 {
            self.fee
        }
        fn effective_fee(&self) -> u128 {
            self.fee * 21_000
        }
        fn is_v0_payload(&self) -> bool {
            self.v0
        }
        fn gas_limit(&self) -> u64 {
            21_000
        }
    }

    fn tx(sender: u16, nonce: u64, fee: u128) -> Tx {
        Tx {
            sender,
            nonce,
            fee,
            v0: false,
        }
    }

    fn cfg(capacity: usize, mode: EvictionMode) -> FeeMempoolConfig {
        FeeMempoolConfig {
            capacity,
            max_per_sender: 4,
            eviction_mode: mode,
            max_evictions_per_interval: 3,
            eviction_interval_ms: 1_000,
            replacement_bump_bps: 1_000,
            allow_v0_payloads: false,
        }
    }

    const T0: Millis = Millis(0);

    #[test]
    fn take_orders_by_fee_then_arrival_and_keeps_nonce_order() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        p.insert(T0, tx(1, 0, 5)).unwrap();
        p.insert(T0, tx(2, 0, 9)).unwrap();
        p.insert(T0, tx(3, 0, 5)).unwrap();
        // Sender 1's nonce 1 pays more, but must follow its nonce 0.
        p.insert(T0, tx(1, 1, 50)).unwrap();
        let order: Vec<(u16, u64)> = p.take(10).iter().map(|t| (t.sender, t.nonce)).collect();
        assert_eq!(order, vec![(2, 0), (1, 0), (1, 1), (3, 0)]);
        assert_eq!(p.take(2).len(), 2);
    }

    fn order(p: &FeeMempool<Tx>) -> Vec<(u16, u64)> {
        p.take(10).iter().map(|t| (t.sender, t.nonce)).collect()
    }

    /// Issue #21: two submissions of one account raced through the API and
    /// nonce 1 reached the pool first; the proposer took it alone, execution
    /// refused it ("nonce 1, expected 0") and every later transfer of the
    /// account after it — 2,000–3,000 accepted transfers of a localnet run.
    #[test]
    fn a_sender_whose_next_nonce_is_missing_waits_for_it() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        let one = tx(1, 0, 5).sender();
        p.insert(T0, tx(1, 1, 5)).unwrap();
        assert!(p.note_account_nonce(one, 0).is_empty());
        p.insert(T0, tx(2, 0, 5)).unwrap();
        assert_eq!(order(&p), vec![(2, 0)], "nonce 0 of sender 1 is missing");
        p.insert(T0, tx(1, 0, 5)).unwrap();
        assert_eq!(order(&p), vec![(2, 0), (1, 0), (1, 1)]);
    }

    #[test]
    fn a_gap_between_pending_nonces_stops_the_sender_there() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        p.insert(T0, tx(1, 0, 5)).unwrap();
        p.insert(T0, tx(1, 2, 5)).unwrap();
        assert_eq!(order(&p), vec![(1, 0)]);
    }

    #[test]
    fn a_used_nonce_advances_the_sender_and_drops_stale_copies() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        let one = tx(1, 0, 5).sender();
        // Nonce 1 waits: the account executes 0 next, and 0 is elsewhere.
        p.insert(T0, tx(1, 1, 5)).unwrap();
        p.insert(T0, tx(1, 2, 5)).unwrap();
        assert!(p.note_account_nonce(one, 0).is_empty());
        assert!(order(&p).is_empty());
        // Another validator's block executed nonce 0.
        assert!(p.note_account_nonce(one, 1).is_empty());
        assert_eq!(order(&p), vec![(1, 1), (1, 2)]);
        // A batch took a different nonce-1 transaction: ours is a copy.
        assert_eq!(p.note_used(one, 1), vec![tx(1, 1, 5).id()]);
        assert_eq!(order(&p), vec![(1, 2)]);
        // Execution refused that batch's nonce 1: the state is the truth,
        // nonce 2 waits for a new nonce 1.
        p.note_settled(&one, 1);
        assert!(p.note_account_nonce(one, 1).is_empty());
        assert!(order(&p).is_empty());
        p.note_account_nonce(one, 2);
        assert_eq!(order(&p), vec![(1, 2)]);
        // Nonce 2 handed to a batch (gone from the pool), 3 arrives and may
        // follow; the batch is given up: the sender waits for a new 2.
        p.remove([tx(1, 2, 5).id()]);
        p.insert(T0, tx(1, 3, 5)).unwrap();
        assert!(p.note_used(one, 2).is_empty());
        assert_eq!(order(&p), vec![(1, 3)]);
        p.note_abandoned(one, 2);
        assert!(order(&p).is_empty());
        p.insert(T0, tx(1, 2, 6)).unwrap();
        assert_eq!(order(&p), vec![(1, 2), (1, 3)]);
        // The state moved past a pending nonce: it is stale.
        assert_eq!(p.note_account_nonce(one, 3), vec![tx(1, 2, 6).id()]);
        assert_eq!(order(&p), vec![(1, 3)]);
        // Nothing pending: nothing remembered.
        assert_eq!(p.note_used(one, 3), vec![tx(1, 3, 5).id()]);
        assert!(p.is_empty() && p.next_nonce.is_empty() && p.executed_nonce.is_empty());
        p.note_used(one, 7);
        assert!(p.next_nonce.is_empty());
    }

    /// Issue #21: with 3,000 transfers in flight the proposer filled blocks
    /// with up to 2,000 transfers of ~37,000 gas against a 30 M block gas
    /// limit; execution refused the excess (`block_gas_limit_exceeded`) and
    /// every later transfer of those senders: 7,174 accepted transfers lost
    /// in a 20 s localnet run.
    #[test]
    fn a_block_takes_no_more_gas_than_its_limit() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        for sender in 1..=3 {
            p.insert(T0, tx(sender, 0, 5)).unwrap();
            p.insert(T0, tx(sender, 1, 5)).unwrap();
        }
        let taken = p.take_within(10, 4 * 21_000 + 20_999, |_| false);
        assert_eq!(taken.len(), 4);
        // Transactions already in an ancestor block neither count nor
        // block their sender's next nonce.
        let first = tx(1, 0, 5).id();
        let taken: Vec<(u16, u64)> = p
            .take_within(10, 21_000, |id| *id == first)
            .iter()
            .map(|t| (t.sender, t.nonce))
            .collect();
        assert_eq!(taken, vec![(1, 1)]);
        assert!(p.take_within(10, 20_999, |_| false).is_empty());
    }

    #[test]
    fn a_ranked_transaction_is_replaced_only_by_a_higher_rank_never_by_a_fee() {
        let ranked = |rank: Option<u64>, fee: u128, tag: u8| {
            MetaTx::new(
                vec![9, tag],
                TxMeta {
                    sender: AccountId([9; 32]),
                    nonce: 0,
                    max_fee_per_gas: fee,
                    effective_fee: fee,
                    gas_limit: 0,
                    v0_payload: false,
                    replace_rank: rank,
                },
            )
        };
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        p.insert(T0, ranked(Some(5), 10, 1)).unwrap();
        let not_newer = |r: Result<Admission, MempoolRejection>| {
            matches!(r, Err(MempoolRejection::SystemTxNotNewer { .. }))
        };
        // Neither an equal rank, nor any fee without a rank.
        assert!(not_newer(p.insert(T0, ranked(Some(5), 10, 2))));
        assert!(not_newer(p.insert(T0, ranked(None, u128::MAX, 3))));
        let higher = p.insert(T0, ranked(Some(6), 1, 4)).unwrap();
        assert!(higher.replaced.is_some());
        // A rank does not displace an unranked transaction either.
        let mut q = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        q.insert(T0, ranked(None, 10, 5)).unwrap();
        assert!(not_newer(q.insert(T0, ranked(Some(1), u128::MAX, 6))));
        assert_eq!((p.len(), q.len()), (1, 1));
    }

    /// A transaction with its fee fields and a declared gas.
    fn gas_tx(sender: u8, nonce: u64, fee: u128, gas: u64) -> MetaTx {
        let mut bytes = vec![sender];
        bytes.extend(nonce.to_be_bytes());
        bytes.extend(fee.to_be_bytes());
        bytes.extend(gas.to_be_bytes());
        MetaTx::new(
            bytes,
            TxMeta {
                sender: AccountId([sender; 32]),
                nonce,
                max_fee_per_gas: fee,
                effective_fee: fee,
                gas_limit: gas,
                v0_payload: false,
                replace_rank: None,
            },
        )
    }

    /// Found in review (issue #21): `take_within` put only the best `max`
    /// heads in its heap, so heads refused for the gas left kept every head
    /// below them out. Senders paying more with transactions just over half
    /// the block gas limit made each block carry one transaction.
    #[test]
    fn a_transaction_over_the_gas_left_does_not_keep_smaller_ones_out() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        let half = 15_000_001;
        let (a, b, c) = (
            gas_tx(1, 0, 10, half),
            gas_tx(2, 0, 9, half),
            gas_tx(3, 0, 1, 21_000),
        );
        for t in [&a, &b, &c] {
            p.insert(T0, t.clone()).unwrap();
        }
        assert_eq!(p.take_within(2, 30_000_000, |_| false), vec![a, c]);
    }

    /// Found in review (issue #21): a batch of ours carrying a sender's
    /// nonce was given up after another copy of that nonce had executed;
    /// the sender went back to a nonce that can never be submitted again,
    /// and its pending transactions waited for ever.
    #[test]
    fn a_nonce_given_up_after_it_executed_does_not_stall_its_sender() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        let one = tx(1, 0, 5).sender();
        p.insert(T0, tx(1, 1, 5)).unwrap();
        // The executed state has used nonce 0 (another validator's batch).
        assert!(p.note_account_nonce(one, 1).is_empty());
        assert_eq!(order(&p), vec![(1, 1)]);
        // Our own batch with nonce 0 expires.
        p.note_abandoned(one, 0);
        assert_eq!(order(&p), vec![(1, 1)]);
    }

    /// Found in review (issue #21): execution refused a transaction of a
    /// block (a nonce ahead of the account's, a fee the sender could not
    /// pay): its nonce was not used, and the sender's next is the
    /// account's as the executed state says.
    #[test]
    fn a_nonce_refused_at_execution_stays_the_senders_next() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        let one = tx(1, 0, 5).sender();
        for n in 0..3 {
            p.insert(T0, tx(1, n, 5)).unwrap();
        }
        assert!(p.note_account_nonce(one, 0).is_empty());
        // Nonce 2 ordered alone, refused: nonces 0 and 1 may still execute.
        p.remove([tx(1, 2, 5).id()]);
        assert!(p.note_account_nonce(one, 0).is_empty());
        assert_eq!(order(&p), vec![(1, 0), (1, 1)]);
        // Nonce 0 executed, nonce 1 refused: the sender waits for a nonce 1.
        p.remove([tx(1, 0, 5).id(), tx(1, 1, 5).id()]);
        p.insert(T0, tx(1, 2, 5)).unwrap();
        assert!(p.note_account_nonce(one, 1).is_empty());
        assert!(order(&p).is_empty());
        p.insert(T0, tx(1, 1, 7)).unwrap();
        assert_eq!(order(&p), vec![(1, 1), (1, 2)]);
        // A copy executed elsewhere: what the account used is dropped.
        assert_eq!(p.note_account_nonce(one, 2), vec![tx(1, 1, 7).id()]);
        assert_eq!(order(&p), vec![(1, 2)]);
    }

    /// Found in review (issue #21), NOT fixed: a transaction whose sender's
    /// next nonce is missing is never taken, and nothing removes it (no
    /// expiry; a full pool evicts by fee alone). Accounts that submit only
    /// nonces past their own (admission allows 64 ahead, each checked alone
    /// against the balance, which may then move on) park high-fee
    /// transactions that never execute, so never pay; a full pool then
    /// refuses or evicts every transaction that could execute for less.
    #[test]
    fn transactions_that_cannot_execute_do_not_hold_the_pool() {
        let mut p = FeeMempool::new(cfg(3, EvictionMode::Enforce));
        for sender in 1..=3 {
            p.insert(T0, tx(sender, 1, 1_000)).unwrap();
            p.note_account_nonce(tx(sender, 0, 0).sender(), 0);
        }
        assert!(order(&p).is_empty());
        assert_eq!(p.parked_senders(), 3);
        // A sender at its account's nonce (read from the executed state as
        // it is submitted), paying less.
        p.prime_account_nonce(tx(9, 0, 0).sender(), 0, true);
        let a = p
            .insert(T0, tx(9, 0, 5))
            .expect("an executable transaction is admitted");
        assert!(a.evicted.is_some());
        assert_eq!(order(&p), vec![(9, 0)]);
        assert_eq!(p.metrics().evictions_total.get("parked"), Some(&1));
        // Its next nonce follows it (no gap): admitted too.
        assert!(p.insert(T0, tx(9, 1, 5)).is_ok());
        assert_eq!(order(&p), vec![(9, 0), (9, 1)]);
        assert_eq!(p.parked_senders(), 1);
        // A full pool takes no transaction that cannot execute yet, whatever
        // its fee: it would evict one that can.
        p.note_account_nonce(tx(9, 0, 0).sender(), 0);
        assert!(matches!(
            p.insert(T0, tx(9, 5, 1_000_000)),
            Err(MempoolRejection::PoolFull { .. })
        ));
        assert_eq!(order(&p), vec![(9, 0), (9, 1)]);
    }

    /// A fee-bumped copy of a parked transaction stays parked (replacing a
    /// sender's only transaction once forgot its next nonce), and a sender
    /// whose next nonce is unknown evicts by priority only, never a parked
    /// transaction for free.
    #[test]
    fn replacements_and_unknown_senders_do_not_unpark_for_free() {
        let mut p = FeeMempool::new(cfg(2, EvictionMode::Enforce));
        let one = tx(1, 0, 0).sender();
        p.insert(T0, tx(1, 7, 100)).unwrap();
        p.note_account_nonce(one, 5);
        assert_eq!(p.parked_senders(), 1);
        let a = p.insert(T0, tx(1, 7, 1_000)).expect("a fee bump replaces");
        assert!(a.replaced.is_some());
        assert_eq!(p.parked_senders(), 1, "the copy is parked too");
        assert!(order(&p).is_empty());
        // Fill the pool with an executable transaction.
        p.insert(T0, tx(2, 0, 2_000)).unwrap();
        // Sender 3 is unknown and pays less than the parked transaction:
        // refused, not admitted by evicting it.
        assert!(matches!(
            p.insert(T0, tx(3, 60, 10)),
            Err(MempoolRejection::PoolFull { .. })
        ));
        assert_eq!(p.parked_senders(), 1);
        assert_eq!(p.metrics().evictions_total.get("parked"), None);
    }

    /// A sender whose missing nonce arrives leaves the parked set and its
    /// transactions are no longer the first to go.
    #[test]
    fn a_filled_gap_unparks_the_sender() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Off));
        let one = tx(1, 0, 5).sender();
        p.insert(T0, tx(1, 2, 5)).unwrap();
        p.note_account_nonce(one, 1);
        assert_eq!(p.parked_senders(), 1);
        p.insert(T0, tx(1, 1, 5)).unwrap();
        assert_eq!(p.parked_senders(), 0);
        assert_eq!(order(&p), vec![(1, 1), (1, 2)]);
        // Execution moves past both: they are stale, and removed.
        p.note_account_nonce(one, 3);
        assert_eq!(p.parked_senders(), 0, "stale nonces are removed");
        assert!(p.is_empty());
    }

    /// A nonce handed to a batch is in flight until a block carrying it
    /// executes: the executed state lags behind it, and the sender's next
    /// transaction may follow it in the next batch meanwhile.
    #[test]
    fn nonces_in_flight_in_batches_let_the_sender_continue() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        let one = tx(1, 0, 5).sender();
        p.insert(T0, tx(1, 1, 5)).unwrap();
        // Nonce 0 went into one of our batches; the state still says 0.
        assert!(p.note_used(one, 0).is_empty());
        assert!(p.note_account_nonce(one, 0).is_empty());
        assert_eq!(order(&p), vec![(1, 1)]);
        // Its block executed and refused it: the sender waits for a new 0.
        p.note_settled(&one, 0);
        assert!(p.note_account_nonce(one, 0).is_empty());
        assert!(order(&p).is_empty());
    }

    /// Issue #17 finding 5: `take` computed `nonce + 1`, so a pending
    /// transaction with nonce `u64::MAX` panicked in debug builds and, in
    /// release, wrapped to 0 and the same sender's transactions were taken
    /// again, filling the batch with one transaction.
    #[test]
    fn a_pending_nonce_of_u64_max_is_taken_once() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        p.insert(T0, tx(1, u64::MAX - 1, 5)).unwrap();
        p.insert(T0, tx(1, u64::MAX, 5)).unwrap();
        p.insert(T0, tx(2, 0, 4)).unwrap();
        let order: Vec<(u16, u64)> = p.take(10).iter().map(|t| (t.sender, t.nonce)).collect();
        assert_eq!(order, vec![(1, u64::MAX - 1), (1, u64::MAX), (2, 0)]);
    }

    #[test]
    fn duplicates_and_forbidden_v0_payloads_are_refused() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        p.insert(T0, tx(1, 0, 10)).unwrap();
        assert_eq!(p.insert(T0, tx(1, 0, 10)), Err(MempoolRejection::Duplicate));
        let v0 = Tx {
            v0: true,
            ..tx(2, 0, 10)
        };
        assert_eq!(
            p.insert(T0, v0.clone()),
            Err(MempoolRejection::V0PayloadForbidden)
        );
        let mut devnet = FeeMempool::new(FeeMempoolConfig {
            allow_v0_payloads: true,
            ..cfg(10, EvictionMode::Enforce)
        });
        assert!(devnet.insert(T0, v0).is_ok());
        assert_eq!(p.metrics().rejected_total.get("duplicate"), Some(&1));
        assert_eq!(
            p.metrics().rejected_total.get("v0_payload_forbidden"),
            Some(&1)
        );
    }

    #[test]
    fn replacement_needs_the_fee_bump() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        let old = tx(1, 0, 100);
        p.insert(T0, old.clone()).unwrap();
        assert_eq!(
            p.insert(T0, tx(1, 0, 105)),
            Err(MempoolRejection::ReplacementUnderpriced {
                offered: 105,
                required: 110
            })
        );
        let a = p.insert(T0, tx(1, 0, 110)).unwrap();
        assert_eq!(a.replaced, Some(old.id()));
        assert_eq!(p.len(), 1);
        assert_eq!(p.metrics().evictions_total.get("replaced"), Some(&1));
    }

    #[test]
    fn a_sender_cannot_fill_the_pool() {
        let mut p = FeeMempool::new(cfg(10, EvictionMode::Enforce));
        for n in 0..4 {
            p.insert(T0, tx(7, n, 10)).unwrap();
        }
        assert_eq!(
            p.insert(T0, tx(7, 4, 10)),
            Err(MempoolRejection::SenderLimit { limit: 4 })
        );
    }

    #[test]
    fn a_full_pool_evicts_only_for_a_higher_priority() {
        let mut p = FeeMempool::new(cfg(3, EvictionMode::Enforce));
        for (s, fee) in [(1, 1), (2, 2), (3, 3)] {
            p.insert(T0, tx(s, 0, fee)).unwrap();
        }
        assert_eq!(
            p.insert(T0, tx(4, 0, 1)),
            Err(MempoolRejection::PoolFull { capacity: 3 })
        );
        let a = p.insert(T0, tx(5, 0, 9)).unwrap();
        assert_eq!(a.evicted, Some(tx(1, 0, 1).id()));
        assert!(!p.contains(&tx(1, 0, 1).id()));
        assert_eq!(p.len(), 3);
        assert_eq!(p.metrics().evictions_total.get("capacity"), Some(&1));
    }

    fn flood(mode: EvictionMode) -> (FeeMempool<Tx>, Vec<Result<Admission, MempoolRejection>>) {
        let mut p = FeeMempool::new(cfg(2, mode));
        p.insert(T0, tx(1, 0, 1)).unwrap();
        p.insert(T0, tx(2, 0, 1)).unwrap();
        // Each newcomer outranks everything: every admission needs an eviction.
        let results = (0..5u16)
            .map(|i| p.insert(Millis(10), tx(10 + i, 0, 10 + u128::from(i))))
            .collect();
        (p, results)
    }

    #[test]
    fn enforce_mode_caps_evictions_per_interval() {
        let (mut p, results) = flood(EvictionMode::Enforce);
        assert!(results[..3].iter().all(Result::is_ok));
        assert!(results[3..].iter().all(|r| matches!(
            r,
            Err(MempoolRejection::EvictionRateLimited {
                limit: 3,
                interval_ms: 1_000
            })
        )));
        assert_eq!(
            p.metrics().eviction_rate_limit_total.get("enforce"),
            Some(&2)
        );
        // A new interval allows evictions again.
        assert!(p.insert(Millis(1_010), tx(99, 0, 1_000)).is_ok());
    }

    #[test]
    fn warn_mode_counts_but_evicts_and_off_mode_does_neither() {
        let (p, results) = flood(EvictionMode::Warn);
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(p.metrics().eviction_rate_limit_total.get("warn"), Some(&2));
        let (p, results) = flood(EvictionMode::Off);
        assert!(results.iter().all(Result::is_ok));
        assert!(p.metrics().eviction_rate_limit_total.is_empty());
    }

    #[test]
    fn mainnet_flood_of_low_fees_keeps_room_for_high_fees() {
        let mut p = FeeMempool::new(FeeMempoolConfig {
            capacity: 500,
            ..FeeMempoolConfig::mainnet()
        });
        // 20,000 cheap transactions from distinct senders over 5 s.
        for i in 0..20_000u32 {
            let t = tx(
                (i % 60_000) as u16,
                u64::from(i / 60_000),
                1 + u128::from(i % 3),
            );
            let _ = p.insert(Millis(u64::from(i) / 4), t);
        }
        assert!(p.len() <= 500);
        let capacity_evictions = p
            .metrics()
            .evictions_total
            .get("capacity")
            .copied()
            .unwrap_or(0);
        assert!(
            capacity_evictions <= 1_000,
            "{capacity_evictions} evictions in one window"
        );
        // After the window, high-fee transactions still get in.
        let later = Millis(20_000);
        for i in 0..10u16 {
            assert!(p.insert(later, tx(61_000 + i, 0, 1_000)).is_ok());
        }
        let top = p.take(10);
        assert!(top.iter().all(|t| t.fee == 1_000));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn bounds_hold_under_random_traffic(
            ops in prop::collection::vec(
                (0u16..20, 0u64..6, 0u128..50, 0u64..60, any::<bool>(), 0u8..5),
                1..300,
            ),
        ) {
            let mut p = FeeMempool::new(cfg(16, EvictionMode::Enforce));
            let mut evicted_at: Vec<u64> = Vec::new();
            let mut now = 0u64;
            for (sender, nonce, fee, step, remove, note) in ops {
                now += step;
                let t = tx(sender, nonce, fee);
                if remove {
                    p.remove([t.id()]);
                    continue;
                }
                if note == 0 {
                    // Execution says where the sender's account is.
                    p.note_account_nonce(t.sender(), nonce);
                } else if note == 1 {
                    // The nonce went into a batch.
                    p.note_used(t.sender(), nonce);
                } else {
                    let capacity_before = p.metrics().evictions_total.get("capacity").copied();
                    let admitted = p.insert(Millis(now), t);
                    // Only capacity evictions are rate limited; a parked
                    // transaction gives way to an executable one at once.
                    if admitted.is_ok()
                        && p.metrics().evictions_total.get("capacity").copied() != capacity_before
                    {
                        evicted_at.push(now);
                    }
                }
                prop_assert!(p.len() <= 16);
                for nonces in p.by_sender.values() {
                    prop_assert!(nonces.len() <= 4);
                }
                prop_assert_eq!(p.txs.len(), p.by_priority.len());
                prop_assert_eq!(p.heads.len(), p.by_sender.len());
                // The parked index is exactly the senders whose lowest nonce
                // cannot execute next.
                let parked: BTreeSet<AccountId> = p
                    .by_sender
                    .iter()
                    .filter(|(s, m)| m.keys().next().is_some_and(|n| !p.executable(s, *n)))
                    .map(|(s, _)| *s)
                    .collect();
                let indexed: BTreeSet<AccountId> = p.parked.iter().map(|(_, s)| *s).collect();
                prop_assert_eq!(&parked, &indexed);
                // Each parked entry carries its sender's current head key.
                prop_assert!(p.parked.is_subset(&p.heads));
            }
            // Never more than 3 capacity evictions within any 1,000 ms.
            for (i, t) in evicted_at.iter().enumerate() {
                let in_window = evicted_at[i..].iter().take_while(|u| **u < t + 1_000).count();
                prop_assert!(in_window <= 3, "{} evictions within 1 s of {}", in_window, t);
            }
            // Taken transactions come out in per-sender nonce order without
            // gaps: each sender's run of consecutive nonces from its lowest.
            let taken = p.take(usize::MAX);
            let runs: usize = p
                .by_sender
                .iter()
                .map(|(s, m)| {
                    let first = m.keys().next().copied().unwrap_or(0);
                    if p.executable(s, first) {
                        (first..).take_while(|n| m.contains_key(n)).count()
                    } else {
                        0
                    }
                })
                .sum();
            prop_assert_eq!(taken.len(), runs);
            let mut last: BTreeMap<u16, u64> = BTreeMap::new();
            for t in taken {
                if let Some(prev) = last.insert(t.sender, t.nonce) {
                    prop_assert_eq!(prev + 1, t.nonce);
                }
            }
        }
    }
}
