//! Signed VM v0 transfers in the simulator ([`super::Scenario::transfers`]).
//!
//! The runner submits real ML-DSA-44-signed [`Transaction`]s from a set of
//! funded accounts; every node's replica executes each committed block with
//! the reference application ([`crate::application::TransferApplication`])
//! against its own store, exactly as a production validator does, and the
//! checker compares the state roots honest nodes reach at each height.
//!
//! Each sender's transactions go to one node (sender index modulo the node
//! count), so the fee pool of that node sees them in nonce order; a sender
//! with many transactions in flight is skipped for a while, and one whose
//! transactions were lost (crash, dropped pool) is re-synchronised from the
//! store of its node.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::codec::Encode;
use crate::crypto::KeyPair;
use crate::execution::{
    ExecutionConfig, Ledger, TRANSFER_PAYLOAD_V1_BYTES, Transaction, TransferPayload,
    TransferPayloadV1,
};
use crate::types::{AccountId, NetworkEnvironment};

use super::Transfers;

/// Transactions a sender may have submitted but not yet executed before the
/// workload picks another sender.
const MAX_IN_FLIGHT: u64 = 8;

/// The transfer generator of one run.
pub(crate) struct Workload {
    keys: Vec<KeyPair>,
    ids: Vec<AccountId>,
    next_nonce: Vec<u64>,
    config: ExecutionConfig,
    genesis: Vec<(AccountId, u128)>,
    max_amount: u128,
}

impl Workload {
    /// `t.accounts` funded accounts with deterministic keys.
    pub(crate) fn new(t: Transfers) -> Result<Workload, &'static str> {
        let accounts = t.accounts.max(2);
        let keys: Vec<KeyPair> = (0..accounts).map(account_key).collect();
        let ids: Vec<AccountId> = keys
            .iter()
            .map(|k| AccountId::from_public_key(k.public_key()))
            .collect();
        let genesis: Vec<(AccountId, u128)> =
            ids.iter().map(|id| (*id, t.initial_balance)).collect();
        Ledger::genesis(genesis.iter().copied())
            .map_err(|_| "transfer genesis overflows the supply")?;
        Ok(Workload {
            keys,
            ids,
            next_nonce: vec![0; accounts],
            config: ExecutionConfig::devnet(),
            genesis,
            max_amount: t.max_amount.max(1),
        })
    }

    /// The genesis balances every node's store starts from.
    pub(crate) fn genesis(&self) -> &[(AccountId, u128)] {
        &self.genesis
    }

    /// The execution configuration.
    pub(crate) fn config(&self) -> &ExecutionConfig {
        &self.config
    }

    /// The node a sender's transactions go to.
    pub(crate) fn home(sender: usize, nodes: usize) -> usize {
        sender % nodes.max(1)
    }

    /// The next signed transfer: (sender index, encoded bytes). `ledger_nonce`
    /// reads a sender's nonce from the ledger of its home node.
    pub(crate) fn next_tx(
        &mut self,
        rng: &mut ChaCha8Rng,
        env: NetworkEnvironment,
        ledger_nonce: impl Fn(usize, &AccountId) -> Option<u64>,
    ) -> (usize, Vec<u8>) {
        let n = self.keys.len();
        let mut sender = rng.gen_range(0..n);
        for _ in 0..n {
            let executed = ledger_nonce(sender, &self.ids[sender]).unwrap_or(0);
            if executed > self.next_nonce[sender] {
                self.next_nonce[sender] = executed;
            }
            if self.next_nonce[sender] - executed < MAX_IN_FLIGHT {
                break;
            }
            sender = (sender + 1) % n;
        }
        let executed = ledger_nonce(sender, &self.ids[sender]).unwrap_or(0);
        if self.next_nonce[sender] - executed >= MAX_IN_FLIGHT {
            // Every sender is saturated: the oldest in-flight transactions
            // were most likely lost; start again from the executed nonce.
            self.next_nonce[sender] = executed;
        }
        let mut recipient = rng.gen_range(0..n - 1);
        if recipient >= sender {
            recipient += 1;
        }
        let nonce = self.next_nonce[sender];
        self.next_nonce[sender] += 1;
        let payload = TransferPayload::V1(TransferPayloadV1 {
            recipient: self.ids[recipient],
            amount: rng.gen_range(1..=self.max_amount),
            gas_limit: self.config.gas.transfer_gas(TRANSFER_PAYLOAD_V1_BYTES),
            max_fee_per_gas: rng.gen_range(1..=5),
        });
        let tx = Transaction::sign(&self.keys[sender], env, nonce, payload);
        (sender, tx.to_bytes())
    }
}

/// Deterministic key of transfer account `i` (distinct from validator keys).
fn account_key(i: usize) -> KeyPair {
    let mut seed = [0xa7u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    KeyPair::from_seed(&seed)
}

/// The account a validator's fee share is credited to: the hash of its
/// consensus public key.
pub(crate) fn proposer_account(key: &KeyPair) -> AccountId {
    AccountId::from_public_key(key.public_key())
}
