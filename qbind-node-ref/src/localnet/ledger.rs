//! The end-of-run check of `qbind-localnet`: every transfer the network
//! accepted was applied exactly once.
//!
//! Written independently of the executor (STYLE 13): from what the load
//! generator sent, what the API reports per transaction (receipts), in
//! which blocks the transfers appeared, and the accounts before and after,
//! it recomputes every account's nonce and balance. A transfer not applied
//! is *lost*; an account whose nonce advanced further than its applied
//! transfers, or whose balance is not what they imply, was changed by
//! something else — a transfer applied twice among them.

use qbind_core::types::Hash32;

/// One transfer the network accepted (its hash was returned by the API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentTransfer {
    /// SHA3-256 of the transaction bytes.
    pub hash: Hash32,
    /// Sender account (index into the account lists).
    pub sender: usize,
    /// Recipient account (index into the account lists).
    pub recipient: usize,
    /// Amount moved on success.
    pub amount: u128,
    /// The fee it pays when included (gas used × price; the generator sets
    /// the gas limit to the transfer's exact gas).
    pub fee: u128,
}

/// What the node's API reports about a transfer at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Included and executed at `height`: succeeded (amount moved) or
    /// failed (only the fee paid).
    Applied {
        /// The block's height.
        height: u64,
        /// The fee charged (from the receipt).
        fee: u128,
        /// Whether the transfer succeeded.
        success: bool,
    },
    /// Refused by execution (no effect) at `height`, or dropped.
    Refused {
        /// The block that refused it, if a block did.
        height: Option<u64>,
    },
    /// Pending, or unknown to the node.
    Missing,
}

/// An account's nonce and balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountState {
    /// Transactions applied so far.
    pub nonce: u64,
    /// Balance.
    pub balance: u128,
}

/// The verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerReport {
    /// Accepted transfers applied once.
    pub applied: u64,
    /// Accepted transfers not applied.
    pub lost: Vec<Hash32>,
    /// Accounts whose nonce advanced further than their applied transfers
    /// (a transfer applied twice, or a transaction nobody sent).
    pub applied_twice: Vec<usize>,
    /// Accounts whose nonce fell short of, or whose balance differs from,
    /// what the applied transfers imply.
    pub inconsistent: Vec<usize>,
    /// Transfers that appeared in more than one block (the later inclusion
    /// refused by execution: not an error by itself).
    pub reincluded: Vec<Hash32>,
}

impl LedgerReport {
    /// No transfer lost, none applied twice, every account consistent.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.lost.is_empty() && self.applied_twice.is_empty() && self.inconsistent.is_empty()
    }
}

/// Check `sent` (with `outcomes[i]` and the heights `inclusions[i]` of the
/// blocks that listed `sent[i]`) against the accounts `before` and `after`
/// the run. A transfer reported refused at a height after it already
/// appeared in an earlier block counts as applied at that earlier block
/// (the node's receipt is the later, refused inclusion's); the account
/// arithmetic then confirms or refutes it.
#[must_use]
pub fn check_ledger(
    sent: &[SentTransfer],
    outcomes: &[Outcome],
    inclusions: &[Vec<u64>],
    before: &[AccountState],
    after: &[AccountState],
) -> LedgerReport {
    let mut report = LedgerReport::default();
    let n = before.len().min(after.len());
    let mut nonce: Vec<u64> = before.iter().map(|a| a.nonce).collect();
    // Signed: a run may move more out of an account than it held at the
    // start only if something is wrong, and then the comparison says so.
    let mut balance: Vec<i128> = before
        .iter()
        .map(|a| i128::try_from(a.balance).unwrap_or(i128::MAX))
        .collect();
    let as_i128 = |v: u128| i128::try_from(v).unwrap_or(i128::MAX);
    for (i, t) in sent.iter().enumerate() {
        let seen: &[u64] = inclusions.get(i).map_or(&[], Vec::as_slice);
        if seen.len() > 1 {
            report.reincluded.push(t.hash);
        }
        let applied = match outcomes.get(i).unwrap_or(&Outcome::Missing) {
            Outcome::Applied { fee, success, .. } => Some((*fee, *success)),
            Outcome::Refused {
                height: Some(refused_at),
            } if seen.iter().any(|h| h < refused_at) => Some((t.fee, true)),
            Outcome::Refused { .. } | Outcome::Missing => None,
        };
        let Some((fee, success)) = applied else {
            report.lost.push(t.hash);
            continue;
        };
        if t.sender >= n || t.recipient >= n {
            report.lost.push(t.hash);
            continue;
        }
        report.applied += 1;
        nonce[t.sender] = nonce[t.sender].saturating_add(1);
        balance[t.sender] = balance[t.sender].saturating_sub(as_i128(fee));
        if success {
            balance[t.sender] = balance[t.sender].saturating_sub(as_i128(t.amount));
            balance[t.recipient] = balance[t.recipient].saturating_add(as_i128(t.amount));
        }
    }
    for a in 0..n {
        if after[a].nonce > nonce[a] {
            report.applied_twice.push(a);
        } else if after[a].nonce < nonce[a] || as_i128(after[a].balance) != balance[a] {
            report.inconsistent.push(a);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u128 = 1_000_000;

    fn transfer(k: u8, sender: usize, recipient: usize, amount: u128) -> SentTransfer {
        SentTransfer {
            hash: Hash32([k; 32]),
            sender,
            recipient,
            amount,
            fee: 10,
        }
    }

    fn applied(height: u64) -> Outcome {
        Outcome::Applied {
            height,
            fee: 10,
            success: true,
        }
    }

    fn start() -> Vec<AccountState> {
        vec![
            AccountState {
                nonce: 0,
                balance: START,
            };
            2
        ]
    }

    /// Two transfers 0 → 1 and one 1 → 0, all applied.
    fn good_run() -> (
        Vec<SentTransfer>,
        Vec<Outcome>,
        Vec<Vec<u64>>,
        Vec<AccountState>,
    ) {
        let sent = vec![
            transfer(1, 0, 1, 100),
            transfer(2, 0, 1, 5),
            transfer(3, 1, 0, 7),
        ];
        let outcomes = vec![applied(3), applied(4), applied(4)];
        let inclusions = vec![vec![3], vec![4], vec![4]];
        let after = vec![
            AccountState {
                nonce: 2,
                balance: START - 105 - 20 + 7,
            },
            AccountState {
                nonce: 1,
                balance: START + 105 - 7 - 10,
            },
        ];
        (sent, outcomes, inclusions, after)
    }

    #[test]
    fn a_consistent_run_passes() {
        let (sent, outcomes, inclusions, after) = good_run();
        let report = check_ledger(&sent, &outcomes, &inclusions, &start(), &after);
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.applied, 3);
    }

    #[test]
    fn a_lost_transfer_fails() {
        let (sent, mut outcomes, inclusions, mut after) = good_run();
        // The second transfer never made it: pending at the end, and the
        // accounts show it (nonce 1 on account 0, 5 + fee not moved).
        outcomes[1] = Outcome::Missing;
        after[0].nonce = 1;
        after[0].balance += 15;
        after[1].balance -= 5;
        let report = check_ledger(&sent, &outcomes, &inclusions, &start(), &after);
        assert!(!report.ok());
        assert_eq!(report.lost, vec![Hash32([2; 32])]);
        assert!(report.applied_twice.is_empty() && report.inconsistent.is_empty());
        // Refused by execution: lost as well.
        outcomes[1] = Outcome::Refused { height: Some(4) };
        let report = check_ledger(&sent, &outcomes, &inclusions, &start(), &after);
        assert_eq!(report.lost, vec![Hash32([2; 32])]);
    }

    #[test]
    fn a_transfer_applied_twice_fails() {
        let (sent, outcomes, mut inclusions, mut after) = good_run();
        // The first transfer was applied again in block 5: account 0's
        // nonce and balance show one more application than was sent.
        inclusions[0].push(5);
        after[0].nonce += 1;
        after[0].balance -= 110;
        after[1].balance += 100;
        let report = check_ledger(&sent, &outcomes, &inclusions, &start(), &after);
        assert!(!report.ok());
        assert_eq!(report.applied_twice, vec![0]);
        assert_eq!(report.inconsistent, vec![1]);
        assert_eq!(report.reincluded, vec![Hash32([1; 32])]);
    }

    #[test]
    fn a_balance_that_does_not_add_up_fails() {
        let (sent, outcomes, inclusions, mut after) = good_run();
        after[1].balance += 1;
        let report = check_ledger(&sent, &outcomes, &inclusions, &start(), &after);
        assert_eq!(report.inconsistent, vec![1]);
        assert!(!report.ok());
    }

    #[test]
    fn a_refused_reinclusion_after_the_first_counts_once() {
        let (sent, mut outcomes, mut inclusions, after) = good_run();
        // Transfer 1 was listed again at height 6 and refused there (stale
        // nonce); the node's receipt is the refusal.
        inclusions[0].push(6);
        outcomes[0] = Outcome::Refused { height: Some(6) };
        let report = check_ledger(&sent, &outcomes, &inclusions, &start(), &after);
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.reincluded, vec![Hash32([1; 32])]);
        assert_eq!(report.applied, 3);
    }
}
