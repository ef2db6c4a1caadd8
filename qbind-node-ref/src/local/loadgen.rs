//! The load generator: signed transfers between funded accounts, submitted
//! to the local validators. Only accounts whose home validator runs here
//! are used (account `s` is submitted to validator `s mod n`); nonces resume
//! from that validator's executed state, and a sender with
//! [`MAX_IN_FLIGHT`] transfers not yet executed is skipped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::NodeStore;
use qbind_core::codec::Encode;
use qbind_core::crypto::KeyPair;
use qbind_core::execution::{
    AccountReader, AdmissionPolicy, BackendAccounts, ExecutionConfig, TRANSFER_PAYLOAD_V1_BYTES,
    Transaction, TransferPayload, TransferPayloadV1, check_transaction,
};
use qbind_core::types::{AccountId, NetworkEnvironment};
use tokio::sync::{mpsc, watch};

/// Transfers a sender may have in flight before the generator skips it.
pub const MAX_IN_FLIGHT: u64 = 4;

/// Rounds without an eligible sender before the generator assumes its
/// in-flight transfers were lost and resumes from the executed nonces.
const STALL_ROUNDS: u32 = 50;

/// A load generator, ready to be spawned.
pub(super) struct LoadGenerator {
    /// The network the transfers are signed for.
    pub(super) env: NetworkEnvironment,
    /// Every funded account's key.
    pub(super) keys: Vec<KeyPair>,
    /// The validators of this process (local slot → validator index).
    pub(super) local: Vec<usize>,
    /// Validators in the network.
    pub(super) n: usize,
    /// Each local validator's store (executed nonces).
    pub(super) stores: Vec<Arc<NodeStore>>,
    /// Each local validator's submission channel.
    pub(super) submit: Vec<mpsc::UnboundedSender<Vec<u8>>>,
    /// One transfer every this often.
    pub(super) interval: Duration,
    /// Counts submitted transfers.
    pub(super) submitted: Arc<AtomicU64>,
}

/// The generator's progress between ticks.
struct Cursor {
    /// What a transfer must pass before it is submitted (built once).
    admission: AdmissionPolicy,
    ids: Vec<AccountId>,
    /// (account, local slot) of every sender this process submits for.
    senders: Vec<(usize, usize)>,
    /// The next nonce per account.
    next: Vec<u64>,
    /// Where the round-robin continues.
    k: usize,
    stalled: u32,
}

impl LoadGenerator {
    /// Submit transfers until `stop` fires or a validator stops taking them.
    pub(super) fn spawn(self, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let ids: Vec<AccountId> = self
                .keys
                .iter()
                .map(|k| AccountId::from_public_key(k.public_key()))
                .collect();
            let senders: Vec<(usize, usize)> = (0..ids.len())
                .filter_map(|s| {
                    self.local
                        .iter()
                        .position(|v| *v == s % self.n.max(1))
                        .map(|slot| (s, slot))
                })
                .collect();
            if senders.is_empty() || ids.len() < 2 {
                return;
            }
            let mut cursor = Cursor {
                admission: AdmissionPolicy::new(self.env, ExecutionConfig::devnet()),
                next: vec![0; ids.len()],
                ids,
                senders,
                k: 0,
                stalled: 0,
            };
            for &(s, slot) in &cursor.senders {
                cursor.next[s] = self.executed_nonce(&cursor.ids[s], slot);
            }
            let mut tick = tokio::time::interval(self.interval.max(Duration::from_millis(1)));
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tick.tick() => {}
                }
                if !self.step(&mut cursor) {
                    return;
                }
            }
        })
    }

    /// The nonce `account` has reached in local slot `slot`'s executed state.
    fn executed_nonce(&self, account: &AccountId, slot: usize) -> u64 {
        BackendAccounts::new(&*self.stores[slot])
            .account(account)
            .map(|a| a.nonce)
            .unwrap_or(0)
    }

    /// The next sender with room in flight, if any.
    fn pick(&self, c: &mut Cursor) -> Option<(usize, usize, usize)> {
        for step in 0..c.senders.len() {
            let pos = (c.k + step) % c.senders.len();
            let (s, slot) = c.senders[pos];
            let executed = self.executed_nonce(&c.ids[s], slot);
            c.next[s] = c.next[s].max(executed);
            if c.next[s] - executed < MAX_IN_FLIGHT {
                return Some((pos, s, slot));
            }
        }
        None
    }

    /// One tick: submit one transfer if a sender has room. False once the
    /// validator no longer takes submissions.
    fn step(&self, c: &mut Cursor) -> bool {
        let Some((pos, s, slot)) = self.pick(c) else {
            c.stalled += 1;
            if c.stalled > STALL_ROUNDS {
                // Transfers were lost (e.g. shut down with them in a pool):
                // resume from the executed nonces.
                for &(s, slot) in &c.senders {
                    c.next[s] = self.executed_nonce(&c.ids[s], slot);
                }
                c.stalled = 0;
            }
            return true;
        };
        c.stalled = 0;
        c.k = pos + 1;
        let count = c.ids.len();
        let nonce = c.next[s];
        let recipient = c.ids[(s + 1 + (nonce as usize % (count - 1))) % count];
        let payload = TransferPayload::V1(TransferPayloadV1 {
            recipient,
            amount: 1 + u128::from(nonce % 1_000),
            gas_limit: ExecutionConfig::devnet()
                .gas
                .transfer_gas(TRANSFER_PAYLOAD_V1_BYTES),
            max_fee_per_gas: 1 + u128::from(nonce % 3),
        });
        let tx = Transaction::sign(&self.keys[s], self.env, nonce, payload);
        let bytes = tx.to_bytes();
        // Transactions enter the node here: each is checked against the
        // executed state before it reaches a pool (issue #17 finding 2).
        let state = BackendAccounts::new(&*self.stores[slot]);
        if check_transaction(&state, &c.admission, &bytes).is_err() {
            // Stale (executed meanwhile) or unaffordable: resume from the
            // executed nonce rather than pool it.
            c.next[s] = self.executed_nonce(&c.ids[s], slot);
            return true;
        }
        c.next[s] += 1;
        if self.submit[slot].send(bytes).is_err() {
            return false;
        }
        self.submitted.fetch_add(1, Ordering::Relaxed);
        true
    }
}
