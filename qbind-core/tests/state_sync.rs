//! State sync's verification (issue #18; `qbind_core::state_sync`): a
//! manifest is held to a certified root, every page of every chunk to the
//! manifest, and a commit proof to the node's own validator sets. Each
//! attack a serving peer can make is refused by name.

use qbind_core::codec::{Decode, Encode};
use qbind_core::crypto::KeyPair;
use qbind_core::execution::{
    Account, AccountAccumulator, StateSummary, leaf_element, monetary_digest,
};
use qbind_core::monetary::MONETARY_STATE_KEY;
use qbind_core::schema::EPOCH_FEES_KEY;
use qbind_core::sim::chain;
use qbind_core::state_sync::{
    CertifiedState, ChunkSum, ChunkVerifier, CommitProof, PageVerdict, StateManifest, StatePage,
    StateSyncError, chunk_of, chunk_start, prefix_bits,
};
use qbind_core::types::{AccountId, Epoch, Hash32, Height, NetworkEnvironment};

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

/// `n` accounts with pseudo-random ids, sorted by id, and their summary.
fn state(n: u32) -> (Vec<(AccountId, Account)>, StateSummary) {
    let mut accounts: Vec<(AccountId, Account)> = (0..n)
        .map(|i| {
            let id = AccountId(*Hash32::digest(&i.to_be_bytes()).as_bytes());
            let account = Account {
                nonce: u64::from(i % 7),
                balance: 1_000 + u128::from(i),
            };
            (id, account)
        })
        .collect();
    accounts.sort();
    let mut summary = StateSummary {
        accumulator: AccountAccumulator::default(),
        accounts: u64::from(n),
        minted: 0,
        burned: 0,
        monetary: monetary_digest(Some(&LATEST), 77),
    };
    for (id, a) in &accounts {
        summary.accumulator.add(&leaf_element(id, a));
        summary.minted += a.balance;
    }
    summary.minted += 500;
    summary.burned = 500;
    (accounts, summary)
}

/// The stand-in latest monetary epoch state of these tests.
const LATEST: [u8; 3] = [1, 2, 3];

/// The monetary records of the state: the latest epoch state and the fees
/// of the epoch (77), plus a history record no manifest carries.
fn monetary_records() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (EPOCH_FEES_KEY.to_vec(), 77u128.to_bytes()),
        (MONETARY_STATE_KEY.to_vec(), LATEST.to_vec()),
        (b"epoch-history".to_vec(), vec![9; 8]),
    ]
}

fn certified(summary: &StateSummary) -> CertifiedState {
    CertifiedState {
        height: Height(100),
        block_id: Hash32([7; 32]),
        state_root: summary.root(),
        epoch: Epoch(0),
        key_log: qbind_core::system_tx::EMPTY_KEY_LOG,
    }
}

fn manifest(accounts: &[(AccountId, Account)], summary: StateSummary) -> StateManifest {
    StateManifest::build(
        Height(100),
        Hash32([7; 32]),
        summary,
        accounts.iter().map(|(i, a)| (i, a)),
        monetary_records(),
    )
    .expect("consistent state")
}

/// The pages a server sends for `chunk`, `per_page` accounts each.
fn pages(
    accounts: &[(AccountId, Account)],
    m: &StateManifest,
    chunk: u32,
    per_page: usize,
) -> Vec<StatePage> {
    let of_chunk: Vec<_> = accounts
        .iter()
        .filter(|(id, _)| chunk_of(id, m.prefix_bits) == chunk)
        .copied()
        .collect();
    let mut out: Vec<StatePage> = of_chunk
        .chunks(per_page)
        .map(|c| StatePage {
            height: m.height,
            chunk,
            accounts: c.to_vec(),
            last: false,
        })
        .collect();
    match out.last_mut() {
        Some(p) => p.last = true,
        None => out.push(StatePage {
            height: m.height,
            chunk,
            accounts: Vec::new(),
            last: true,
        }),
    }
    out
}

/// Feed every page; the first refusal, or the verdict of the last page.
fn feed_all(
    m: &StateManifest,
    chunk: u32,
    pages: &[StatePage],
) -> Result<PageVerdict, StateSyncError> {
    let mut v = ChunkVerifier::new(m, chunk)?;
    let mut verdict = PageVerdict::Complete;
    for p in pages {
        verdict = v.feed(p)?;
    }
    Ok(verdict)
}

#[test]
fn chunk_layout_follows_the_account_count() {
    assert_eq!(prefix_bits(0), 0);
    assert_eq!(prefix_bits(4096), 0);
    assert_eq!(prefix_bits(4097), 1);
    assert_eq!(prefix_bits(1_000_000), 8);
    assert_eq!(prefix_bits(u64::MAX), 16);
    let id = AccountId([0xA5; 32]);
    assert_eq!(chunk_of(&id, 0), 0);
    assert_eq!(chunk_of(&id, 1), 1);
    assert_eq!(chunk_of(&id, 8), 0xA5);
    assert_eq!(chunk_of(&id, 16), 0xA5A5);
    for bits in [0u8, 1, 5, 8, 16] {
        for chunk in [0u32, 1, (1 << bits) - 1] {
            let chunk = chunk.min((1 << bits) - 1);
            assert_eq!(chunk_of(&chunk_start(chunk, bits), bits), chunk);
        }
    }
}

#[test]
fn an_honest_state_passes_page_by_page() {
    let (accounts, summary) = state(10_000);
    let m = manifest(&accounts, summary);
    assert_eq!(m.prefix_bits, 2);
    m.check(&certified(&summary)).expect("honest manifest");
    let mut total = 0;
    for chunk in 0..m.chunks.len() as u32 {
        let ps = pages(&accounts, &m, chunk, 333);
        total += ps.iter().map(|p| p.accounts.len()).sum::<usize>();
        let mut v = ChunkVerifier::new(&m, chunk).unwrap();
        for (i, p) in ps.iter().enumerate() {
            let verdict = v.feed(p).expect("honest page");
            if i + 1 < ps.len() {
                assert_eq!(
                    verdict,
                    PageVerdict::More {
                        after: p.accounts.last().unwrap().0
                    }
                );
            } else {
                assert_eq!(verdict, PageVerdict::Complete);
            }
        }
        assert!(v.is_complete());
    }
    assert_eq!(total, 10_000);
    // The encodings round-trip.
    assert_eq!(StateManifest::from_bytes(&m.to_bytes()).unwrap(), m);
    let p = &pages(&accounts, &m, 1, 100)[0];
    assert_eq!(&StatePage::from_bytes(&p.to_bytes()).unwrap(), p);
}

#[test]
fn a_manifest_that_does_not_match_the_certified_state_is_refused() {
    let (accounts, summary) = state(9_000);
    let m = manifest(&accounts, summary);
    let c = certified(&summary);
    let refused = |m: &StateManifest, c: &CertifiedState| {
        matches!(m.check(c), Err(StateSyncError::Manifest(_)))
    };
    // Another root, height or block.
    let mut other = c;
    other.state_root = Hash32([1; 32]);
    assert!(refused(&m, &other));
    let mut other = c;
    other.height = Height(101);
    assert!(refused(&m, &other));
    // Chunk sums that do not add up.
    let mut bad = m.clone();
    bad.chunks[0].lanes.0[0] ^= 1;
    assert!(refused(&bad, &c));
    let mut bad = m.clone();
    bad.chunks[1].accounts += 1;
    assert!(refused(&bad, &c));
    let mut bad = m.clone();
    bad.chunks[1].balance += 1;
    bad.chunks[2].balance -= 1;
    bad.chunks[3].balance += 1;
    assert!(refused(&bad, &c));
    // A layout other than the account count's.
    let mut bad = m.clone();
    bad.prefix_bits = 3;
    bad.chunks.resize(8, ChunkSum::default());
    assert!(refused(&bad, &c));
    // The history record is not carried; the two that are, in key order.
    assert_eq!(m.monetary.len(), 2);
    assert!(m.monetary[0].0 < m.monetary[1].0);
    // Monetary records out of order, altered, missing, or one execution
    // does not read.
    let mut bad = m.clone();
    bad.monetary.swap(0, 1);
    assert!(refused(&bad, &c));
    let mut bad = m.clone();
    bad.monetary[0].1 = 78u128.to_bytes();
    assert!(refused(&bad, &c));
    let mut bad = m.clone();
    bad.monetary[1].1[0] ^= 1;
    assert!(refused(&bad, &c));
    let mut bad = m.clone();
    bad.monetary.pop();
    assert!(refused(&bad, &c));
    let mut bad = m.clone();
    bad.monetary.push((b"zz".to_vec(), vec![]));
    assert!(refused(&bad, &c));
    let mut bad = m.clone();
    bad.monetary[0].1 = vec![1];
    assert!(refused(&bad, &c));
    // A summary built on top of a state that differs from the root.
    let mut s2 = summary;
    s2.burned += 1;
    let forged = StateManifest {
        summary: s2,
        ..m.clone()
    };
    assert!(refused(&forged, &c));
    m.check(&c).expect("the honest one passes");
}

#[test]
fn forged_pages_are_refused_and_the_verifier_can_resume() {
    let (accounts, summary) = state(9_000);
    let m = manifest(&accounts, summary);
    let chunk = 1;
    let honest = pages(&accounts, &m, chunk, 500);
    assert!(honest.len() >= 3);
    let refused_page =
        |ps: &[StatePage]| matches!(feed_all(&m, chunk, ps), Err(StateSyncError::Page { .. }));
    let mismatch = |ps: &[StatePage]| {
        matches!(
            feed_all(&m, chunk, ps),
            Err(StateSyncError::ChunkMismatch { .. })
        )
    };
    assert_eq!(feed_all(&m, chunk, &honest), Ok(PageVerdict::Complete));

    // An altered balance.
    let mut ps = honest.clone();
    ps[1].accounts[3].1.balance += 1;
    assert!(mismatch(&ps));
    // The same value moved between two accounts keeps the balance total but
    // not the accumulator.
    let mut ps = honest.clone();
    ps[1].accounts[3].1.balance += 1;
    ps[1].accounts[4].1.balance -= 1;
    assert!(mismatch(&ps));
    // A dropped account.
    let mut ps = honest.clone();
    ps[1].accounts.remove(2);
    assert!(mismatch(&ps));
    // An invented account (ids stay in order and in the chunk).
    let mut ps = honest.clone();
    let last = ps.last_mut().unwrap();
    let mut id = last.accounts.last().unwrap().0;
    id.0[31] = id.0[31].wrapping_add(1);
    last.accounts.push((
        id,
        Account {
            nonce: 0,
            balance: 1,
        },
    ));
    assert!(refused_page(&ps) || mismatch(&ps));
    // An account of another chunk.
    let mut ps = honest.clone();
    let stranger = accounts
        .iter()
        .find(|(i, _)| chunk_of(i, m.prefix_bits) != chunk)
        .unwrap();
    ps[0].accounts.insert(0, *stranger);
    ps[0].accounts.sort();
    assert!(refused_page(&ps));
    // Reordered accounts, and a page served twice.
    let mut ps = honest.clone();
    ps[1].accounts.swap(0, 1);
    assert!(refused_page(&ps));
    let mut ps = honest.clone();
    ps.insert(1, honest[0].clone());
    assert!(refused_page(&ps));
    // An empty account; an empty page that does not end the chunk; a page
    // of another height or chunk; a chunk the manifest does not have.
    let mut ps = honest.clone();
    ps[0].accounts[0].1 = Account::default();
    assert!(refused_page(&ps));
    let mut ps = honest.clone();
    ps[0].accounts.clear();
    assert!(refused_page(&ps));
    let mut ps = honest.clone();
    ps[0].height = Height(99);
    assert!(refused_page(&ps));
    let mut ps = honest.clone();
    ps[0].chunk = 2;
    assert!(refused_page(&ps));
    assert!(ChunkVerifier::new(&m, 4).is_err());
    // The chunk ended early (truncated).
    let mut ps = honest[..2].to_vec();
    ps[1].last = true;
    assert!(mismatch(&ps));

    // A refused page leaves the verifier where it was: the honest page
    // from another server continues.
    let mut v = ChunkVerifier::new(&m, chunk).unwrap();
    v.feed(&honest[0]).unwrap();
    let mut forged = honest[1].clone();
    forged.accounts.swap(0, 1);
    assert!(v.feed(&forged).is_err());
    assert_eq!(v.after(), Some(honest[0].accounts.last().unwrap().0));
    for p in &honest[1..] {
        v.feed(p).unwrap();
    }
    assert!(v.is_complete());
    assert!(v.feed(&honest[0]).is_err(), "nothing after the end");
}

#[test]
fn shifted_chunk_sums_that_still_add_up_fail_on_honest_pages() {
    let (accounts, summary) = state(9_000);
    let m = manifest(&accounts, summary);
    let mut shifted = m.clone();
    let delta = [3u64; 32];
    shifted.chunks[0].lanes.add(&delta);
    shifted.chunks[1].lanes.sub(&delta);
    shifted
        .check(&certified(&summary))
        .expect("the totals still match");
    for chunk in [0, 1] {
        let ps = pages(&accounts, &m, chunk, 1000);
        assert!(matches!(
            feed_all(&shifted, chunk, &ps),
            Err(StateSyncError::ChunkMismatch {
                why: "accumulator sum",
                ..
            })
        ));
    }
    assert_eq!(
        feed_all(&shifted, 2, &pages(&accounts, &m, 2, 1000)),
        Ok(PageVerdict::Complete)
    );
}

fn keys() -> Vec<KeyPair> {
    (0..4u8)
        .map(|i| KeyPair::from_seed(&[i + 90; 32]))
        .collect()
}

fn root_of(h: u64) -> Hash32 {
    Hash32::digest(&h.to_be_bytes())
}

/// A certified chain of 40 blocks, block `h` reporting the root of `h - 4`.
fn reporting_chain(
    signers: usize,
) -> (
    std::sync::Arc<qbind_core::validator::EpochSchedule>,
    Vec<qbind_core::consensus::Block>,
) {
    chain::certified_chain_reporting(ENV, &keys(), signers, 40, |h| {
        (h > 4).then(|| (Height(h - 4), root_of(h - 4)))
    })
    .unwrap()
}

#[test]
fn a_commit_proof_certifies_the_height_and_its_root() {
    let (schedule, blocks) = reporting_chain(3);
    let proof = CommitProof::build(&blocks[10..], &schedule).expect("a proof");
    // Block 14 reports height 10; 14 ← 15 ← 16 with a QC in 17 commits 14.
    assert_eq!(proof.headers.len(), 6);
    let c = proof.verify(ENV, &schedule).expect("valid");
    assert_eq!(c.height, Height(10));
    assert_eq!(c.block_id, blocks[10].id());
    assert_eq!(c.state_root, root_of(10));
    let decoded = CommitProof::from_bytes(&proof.to_bytes()).unwrap();
    assert_eq!(decoded, proof);
    // Too few blocks above: no proof.
    assert!(CommitProof::build(&blocks[10..16], &schedule).is_none());
}

#[test]
fn forged_commit_proofs_are_refused() {
    let (schedule, blocks) = reporting_chain(3);
    let proof = CommitProof::build(&blocks[10..], &schedule).unwrap();
    let refused = |p: &CommitProof| p.verify(ENV, &schedule).is_err();

    // Another root reported: the header's id changes, the link above breaks.
    let mut p = proof.clone();
    p.headers[3].exec_state_root = Hash32([9; 32]);
    assert!(matches!(
        p.verify(ENV, &schedule),
        Err(StateSyncError::Proof(_))
    ));
    // ...and cut the chain at the reporter: no 3-chain commits it.
    let mut p = proof.clone();
    p.headers.truncate(4);
    assert!(refused(&p));
    // A header dropped from the middle.
    let mut p = proof.clone();
    p.headers.remove(1);
    assert!(refused(&p));
    // A QC of another block, or with a signature removed (below a quorum).
    let mut p = proof.clone();
    p.qc = p.justifies[1].clone();
    assert!(refused(&p));
    let mut p = proof.clone();
    p.qc.signatures.pop();
    assert!(refused(&p));
    // A chain signed by two of four (no quorum) is refused at the QCs.
    let (_, weak) = reporting_chain(2);
    let p = CommitProof::build(&weak[10..], &schedule).unwrap();
    assert!(matches!(
        p.verify(ENV, &schedule),
        Err(StateSyncError::Certificate(_))
    ));
    // Another network's validators.
    let other: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed(&[i + 1; 32])).collect();
    let (other_schedule, _) = chain::certified_chain(ENV, &other, 4, 1).unwrap();
    assert!(proof.verify(ENV, &other_schedule).is_err());
    // A block whose payload does not match its header.
    let mut p = proof.clone();
    p.block = blocks[11].clone();
    assert!(refused(&p));
    // A valid 3-chain above a height no header reports a root for.
    let (silent_schedule, silent) = chain::certified_chain(ENV, &keys(), 3, 40).unwrap();
    assert!(CommitProof::build(&silent[10..], &silent_schedule).is_none());
    let p = CommitProof {
        block: silent[10].clone(),
        headers: silent[11..=16].iter().map(|b| b.header().clone()).collect(),
        justifies: [silent[15].justify().clone(), silent[16].justify().clone()],
        qc: silent[17].justify().clone(),
    };
    match p.verify(ENV, &silent_schedule) {
        Err(StateSyncError::Proof(why)) => assert!(why.contains("reports"), "{why}"),
        other => panic!("{other:?}"),
    }
    proof
        .verify(ENV, &schedule)
        .expect("the honest proof still passes");
}

#[test]
fn golden_bytes_of_a_page_and_a_manifest() {
    let page = StatePage {
        height: Height(5),
        chunk: 1,
        accounts: vec![(
            AccountId([0x80; 32]),
            Account {
                nonce: 2,
                balance: 3,
            },
        )],
        last: true,
    };
    let hex_page = hex::encode(page.to_bytes());
    assert_eq!(
        hex_page,
        concat!(
            "0000000000000005",
            "00000001",
            "00000001",
            "8080808080808080808080808080808080808080808080808080808080808080",
            "0000000000000002",
            "00000000000000000000000000000003",
            "01"
        )
    );
    let (accounts, summary) = state(3);
    let m = manifest(&accounts, summary);
    let bytes = m.to_bytes();
    // height, block id, summary (32 lanes, count, minted, burned,
    // monetary), bits, one chunk (32 lanes, count, balance), two monetary
    // records ("epoch_fees": u128, "latest": 3 bytes).
    let summary_bytes = 256 + 8 + 32 + 32;
    assert_eq!(
        bytes.len(),
        8 + 32 + summary_bytes + 1 + 4 + (256 + 24) + 4 + (4 + 10 + 4 + 16) + (4 + 6 + 4 + 3)
    );
    assert_eq!(&bytes[..8], &100u64.to_be_bytes());
    assert_eq!(bytes[8 + 32 + summary_bytes], 0, "prefix bits");
    assert_eq!(&bytes[bytes.len() - 3..], &LATEST);
    // Non-canonical encodings are refused.
    let mut bad = page.to_bytes();
    *bad.last_mut().unwrap() = 2;
    assert!(StatePage::from_bytes(&bad).is_err());
    let mut bad = bytes;
    bad[8 + 32 + summary_bytes] = 1; // two chunks claimed, one present
    assert!(StateManifest::from_bytes(&bad).is_err());
}

#[test]
fn reports_too_close_to_their_block_or_in_disagreement_are_refused() {
    // Every block reports the height two below it: the report of 10 comes
    // from block 12, which no voter could have checked.
    let (schedule, close) = chain::certified_chain_reporting(ENV, &keys(), 3, 40, |h| {
        (h > 2).then(|| (Height(h - 2), root_of(h - 2)))
    })
    .unwrap();
    let p = CommitProof::build(&close[10..], &schedule).expect("built");
    match p.verify(ENV, &schedule) {
        Err(StateSyncError::Proof(why)) => assert!(why.contains("four"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Blocks 14 and 15 both report height 10, with different roots.
    let (schedule, split) = chain::certified_chain_reporting(ENV, &keys(), 3, 40, |h| match h {
        14 => Some((Height(10), root_of(10))),
        15 => Some((Height(10), Hash32([0xEE; 32]))),
        h if h > 4 => Some((Height(h - 4), root_of(h - 4))),
        _ => None,
    })
    .unwrap();
    // A proof whose 3-chain (15 ← 16 ← 17) commits both reporters.
    let p = CommitProof {
        block: split[10].clone(),
        headers: split[11..=17].iter().map(|b| b.header().clone()).collect(),
        justifies: [split[16].justify().clone(), split[17].justify().clone()],
        qc: split[18].justify().clone(),
    };
    match p.verify(ENV, &schedule) {
        Err(StateSyncError::Proof(why)) => assert!(why.contains("different roots"), "{why}"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- key log

mod key_log {
    use super::*;
    use qbind_core::state_sync::{KeyLog, MAX_KEY_LOG_RECORDS};
    use qbind_core::system_tx::{EMPTY_KEY_LOG, SystemTx, key_log_digest, reported_root};
    use qbind_core::types::ValidatorId;
    use qbind_core::validator::{EpochSchedule, ValidatorSet};

    fn key(i: u8) -> KeyPair {
        KeyPair::from_seed(&[i + 40; 32])
    }

    /// Four validators, epochs of 10 blocks.
    fn schedule() -> EpochSchedule {
        let set =
            ValidatorSet::new((0..4).map(|i| (key(i).public_key().clone(), 1)).collect()).unwrap();
        EpochSchedule::with_epochs(10, set, Vec::new())
    }

    /// Validator `v` rotates from key `v` to key `new` at `effective`,
    /// signed with key `signer`.
    fn rotation(v: u8, new: u8, effective: u64, signer: u8) -> SystemTx {
        let id = ValidatorId(u32::from(v));
        chain::consensus_rotation(ENV, id, &key(v), &key(new), effective, 1, &key(signer)).unwrap()
    }

    #[test]
    fn golden_bytes_and_bounded_decoding() {
        let log = KeyLog {
            height: Height(40),
            records: vec![(Height(12), rotation(1, 11, 3, 1))],
        };
        let bytes = log.to_bytes();
        assert_eq!(bytes.len(), 1 + 8 + 4 + 8 + 5_083);
        assert_eq!(
            hex::encode(&bytes[..29]),
            "01\
             0000000000000028\
             00000001\
             000000000000000c\
             5142535953545801"
        );
        assert_eq!(KeyLog::from_bytes(&bytes).unwrap(), log);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(KeyLog::from_bytes(&longer).is_err());
        let mut version = bytes.clone();
        version[0] = 2;
        assert!(KeyLog::from_bytes(&version).is_err());
        // A count above the bound, or above what the bytes can hold, is
        // refused before anything is allocated.
        let mut many = bytes[..9].to_vec();
        many.extend_from_slice(&(MAX_KEY_LOG_RECORDS + 1).to_be_bytes());
        assert!(KeyLog::from_bytes(&many).is_err());
        let mut short = bytes[..9].to_vec();
        short.extend_from_slice(&4_000u32.to_be_bytes());
        short.extend_from_slice(&[0; 64]);
        assert!(KeyLog::from_bytes(&short).is_err());
        let empty = KeyLog {
            height: Height(7),
            records: Vec::new(),
        };
        assert_eq!(hex::encode(empty.to_bytes()), "01000000000000000700000000");
    }

    #[test]
    fn a_key_log_replays_in_order_to_its_height_with_valid_rotations_only() {
        let base = schedule();
        // Height 5 is in epoch 0: effective epoch 2 is the earliest.
        let honest = rotation(1, 11, 2, 1);
        let log = KeyLog {
            height: Height(9),
            records: vec![(Height(5), honest.clone())],
        };
        let (rotated, digest) = log.replay(ENV, &base).unwrap();
        assert_eq!(digest, key_log_digest(&log.records));
        let (old, new) = (key(1).public_key().clone(), key(11).public_key().clone());
        assert!(rotated.accepts_key(ValidatorId(1), Epoch(1), &old));
        assert!(!rotated.accepts_key(ValidatorId(1), Epoch(1), &new));
        assert!(rotated.accepts_key(ValidatorId(1), Epoch(3), &new));
        assert!(!rotated.accepts_key(ValidatorId(1), Epoch(3), &old));
        // Empty: the configured keys.
        let (same, none) = KeyLog {
            height: Height(9),
            records: Vec::new(),
        }
        .replay(ENV, &base)
        .unwrap();
        assert_eq!(none, EMPTY_KEY_LOG);
        assert!(same.accepts_key(ValidatorId(1), Epoch(3), &old));
        let refused = |records: Vec<(Height, SystemTx)>, height: u64| {
            KeyLog {
                height: Height(height),
                records,
            }
            .replay(ENV, &base)
            .is_err()
        };
        // Above the log's height, at height 0, out of order.
        assert!(refused(vec![(Height(5), honest.clone())], 4));
        assert!(refused(vec![(Height(0), honest.clone())], 9));
        let second = rotation(2, 12, 3, 2);
        assert!(!refused(
            vec![(Height(5), honest.clone()), (Height(8), second.clone())],
            9
        ));
        assert!(refused(
            vec![(Height(8), second), (Height(5), honest.clone())],
            9
        ));
        // Signed by a key the validator never had; effective too soon.
        assert!(refused(vec![(Height(5), rotation(1, 11, 2, 3))], 9));
        assert!(refused(vec![(Height(5), rotation(1, 11, 1, 1))], 9));
        // The same rotation twice (a replay).
        assert!(refused(
            vec![(Height(5), honest.clone()), (Height(6), honest)],
            9
        ));
    }

    #[test]
    fn a_proof_is_verified_with_a_key_log_of_its_own_height_only() {
        let (schedule, blocks) = reporting_chain(3);
        let proof = CommitProof::build(&blocks[10..], &schedule).unwrap();
        let h = proof.block.height();
        let plain = proof.verify(ENV, &schedule).unwrap();
        let empty = KeyLog {
            height: h,
            records: Vec::new(),
        };
        assert_eq!(proof.verify_with_key_log(ENV, &schedule, &empty), Ok(plain));
        let other = KeyLog {
            height: Height(h.0 + 1),
            records: Vec::new(),
        };
        assert!(matches!(
            proof.verify_with_key_log(ENV, &schedule, &other),
            Err(StateSyncError::Proof(_))
        ));
        // A certificate of an epoch two past the height's: its keys could
        // have been rotated by a block above the height, which the log does
        // not hold.
        let mut later = proof;
        later.qc.data.epoch = Epoch(2);
        let err = later
            .verify_with_key_log(ENV, &schedule, &empty)
            .unwrap_err();
        assert!(err.to_string().contains("does not determine"), "{err}");
    }

    #[test]
    fn the_manifest_must_hash_to_the_certified_root_with_the_key_log() {
        let (accounts, summary) = state(100);
        let m = manifest(&accounts, summary);
        let log = Hash32([5; 32]);
        let mut with = certified(&summary);
        with.state_root = reported_root(summary.root(), log);
        // Without the log's digest, the summary does not hash to the root.
        assert!(matches!(m.check(&with), Err(StateSyncError::Manifest(_))));
        with.key_log = log;
        m.check(&with).unwrap();
        // A peer that withholds the log: the digest of the empty log.
        with.key_log = EMPTY_KEY_LOG;
        assert!(m.check(&with).is_err());
    }
}
