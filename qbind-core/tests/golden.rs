//! Golden byte vectors for every consensus wire type (DESIGN "Every wire
//! type's byte layout is written in `docs/wire-format.md` and frozen by golden
//! vectors"; STYLE 6).
//!
//! Each value is built deterministically: validator `i` holds
//! `KeyPair::from_seed(&[i; 32])` and every signature is the deterministic
//! ML-DSA-44 signature of `sign_domain(.., NetworkEnvironment::Devnet, ..)`
//! over exactly what the consensus code signs (vote and timeout: the
//! `VoteData` / `TimeoutData` encoding; proposal: the 32 block-id bytes).
//!
//! A golden pins the total length, the SHA3-256 of the whole encoding and the
//! exact leading bytes, written one field per line so that a reader can check
//! them against the tables in `docs/wire-format.md`. Small types are pinned in
//! full. Every golden also decodes its bytes back and compares with the value.
//!
//! If one of these fails, the wire format changed: that is a protocol change
//! (nodes on the old format reject the new bytes or, worse, sign different
//! preimages). Update the vectors only together with the docs and a version
//! bump.

use std::fmt::Debug;
use std::sync::OnceLock;

use qbind_core::codec::{Decode, Encode};
use qbind_core::consensus::{
    Block, BlockHeader, ConsensusMsg, Payload, Proposal, QuorumCert, SafetyState, SignerBitmap,
    SyncRangeRequest, SyncRequest, SyncResponse, TimeoutCert, TimeoutData, TimeoutMsg,
    TimeoutRecord, Vote, VoteData,
};
use qbind_core::crypto::{KeyPair, Signature};
use qbind_core::signing::{SignKind, sign_domain, signing_preimage, verify_domain};
use qbind_core::types::{Epoch, Hash32, Height, NetworkEnvironment, ValidatorId, View};

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

/// What a golden vector pins down.
struct Expect {
    /// Length of the whole encoding in bytes.
    len: usize,
    /// SHA3-256 of the whole encoding, lowercase hex.
    sha3: &'static str,
    /// The leading bytes of the encoding in hex, one entry per field; the
    /// entries are concatenated before comparing.
    prefix: &'static [&'static str],
}

/// Encode `value`, compare with `expect`, decode it back and compare with
/// `value`. Returns the encoding for further structural checks.
#[track_caller]
fn check<T: Encode + Decode + PartialEq + Debug>(value: &T, expect: &Expect) -> Vec<u8> {
    let bytes = value.to_bytes();
    let prefix = expect.prefix.concat();
    let shown = (prefix.len() / 2).min(bytes.len());
    assert_eq!(hex::encode(&bytes[..shown]), prefix, "leading bytes");
    assert_eq!(bytes.len(), expect.len, "encoded length");
    assert_eq!(
        hex::encode(Hash32::digest(&bytes).0),
        expect.sha3,
        "SHA3-256 of the encoding"
    );
    assert_eq!(
        T::from_bytes(&bytes).as_ref(),
        Ok(value),
        "decode(encode(x))"
    );
    bytes
}

/// [`check`] for small types whose golden is the full encoding.
#[track_caller]
fn check_full<T: Encode + Decode + PartialEq + Debug>(value: &T, expect: &Expect) -> Vec<u8> {
    let bytes = check(value, expect);
    assert_eq!(hex::encode(&bytes), expect.prefix.concat(), "full encoding");
    bytes
}

/// Every value the goldens use, built once (signing takes a few ms each).
struct Fixture {
    keys: Vec<KeyPair>,
    genesis: Block,
    genesis_qc: QuorumCert,
    /// View 1, height 1, proposed by validator 1, extends genesis; three txs.
    block1: Block,
    vote_data1: VoteData,
    /// Validators 0, 1, 3 of 4 on `vote_data1`.
    qc1: QuorumCert,
    /// View 2, height 2, proposed by validator 2, extends `block1` via `qc1`.
    block2: Block,
    /// View 4, height 2, proposed by validator 0 after view 3 timed out.
    block4: Block,
    timeout_data3: TimeoutData,
    /// Validators 0, 2, 3 timed out in view 3 with high-QC views 1, 1, 0.
    tc3: TimeoutCert,
    proposal2: Proposal,
    proposal4: Proposal,
    vote2: Vote,
    /// Validator 0's timeout of view 3 (it did not vote there).
    timeout_msg3: TimeoutMsg,
    /// Validator 0's timeout of view 2, carrying its vote for `block2`.
    timeout_msg2: TimeoutMsg,
    sync_request: SyncRequest,
    sync_response: SyncResponse,
}

fn sign(key: &KeyPair, kind: SignKind, message: &[u8]) -> Signature {
    let signature = sign_domain(key, ENV, kind, message);
    // Goldens of invalid signatures would freeze nonsense: check each one.
    assert!(verify_domain(key.public_key(), ENV, kind, message, &signature).is_ok());
    signature
}

fn header(view: u64, height: u64, parent: Hash32, proposer: u32) -> BlockHeader {
    BlockHeader {
        epoch: Epoch(0),
        view: View(view),
        height: Height(height),
        parent_id: parent,
        // Both filled in by `Block::new`.
        justify_view: View(0),
        proposer: ValidatorId(proposer),
        payload_digest: Hash32::ZERO,
        batch_commitment: Hash32::ZERO,
        exec_height: Height(0),
        exec_state_root: Hash32::ZERO,
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys: Vec<KeyPair> = (0u8..4).map(|i| KeyPair::from_seed(&[i; 32])).collect();
        let genesis = Block::genesis(ENV.chain_id());
        let genesis_qc = genesis.justify().clone();

        let block1 = Block::new(
            header(1, 1, genesis.id(), 1),
            genesis_qc.clone(),
            Payload::Transactions(vec![
                b"qbind-tx-1".to_vec(),
                vec![0xde, 0xad, 0xbe, 0xef],
                Vec::new(),
            ]),
        );
        let vote_data1 = VoteData {
            epoch: Epoch(0),
            view: View(1),
            block_id: block1.id(),
        };
        let mut signers = SignerBitmap::new(4);
        for i in [0, 1, 3] {
            assert!(signers.set(ValidatorId(i)));
        }
        let qc1 = QuorumCert {
            data: vote_data1,
            signatures: signers
                .iter()
                .map(|id| sign(&keys[id.0 as usize], SignKind::Vote, &vote_data1.to_bytes()))
                .collect(),
            signers,
        };

        let block2 = Block::new(
            header(2, 2, block1.id(), 2),
            qc1.clone(),
            Payload::Transactions(vec![b"transfer 7 QBD".to_vec()]),
        );
        let proposal2 = Proposal {
            signature: sign(&keys[2], SignKind::Proposal, block2.id().as_bytes()),
            block: block2.clone(),
            tc: None,
        };
        let data2 = VoteData {
            epoch: Epoch(0),
            view: View(2),
            block_id: block2.id(),
        };
        let vote2 = Vote {
            data: data2,
            voter: ValidatorId(3),
            signature: sign(&keys[3], SignKind::Vote, &data2.to_bytes()),
        };

        let timeout_data3 = TimeoutData {
            epoch: Epoch(0),
            view: View(3),
            high_qc_view: View(1),
        };
        let timeout_msg3 = TimeoutMsg {
            data: timeout_data3,
            high_qc: qc1.clone(),
            vote: None,
            sender: ValidatorId(0),
            signature: sign(&keys[0], SignKind::Timeout, &timeout_data3.to_bytes()),
        };
        // Validator 0 voted for block 2, then view 2 timed out: its timeout
        // carries that vote.
        let timeout_data2 = TimeoutData {
            epoch: Epoch(0),
            view: View(2),
            high_qc_view: View(1),
        };
        let timeout_msg2 = TimeoutMsg {
            data: timeout_data2,
            high_qc: qc1.clone(),
            vote: Some(Vote {
                data: data2,
                voter: ValidatorId(0),
                signature: sign(&keys[0], SignKind::Vote, &data2.to_bytes()),
            }),
            sender: ValidatorId(0),
            signature: sign(&keys[0], SignKind::Timeout, &timeout_data2.to_bytes()),
        };
        let mut tc_signers = SignerBitmap::new(4);
        for i in [0, 2, 3] {
            assert!(tc_signers.set(ValidatorId(i)));
        }
        let high_qc_views = vec![View(1), View(1), View(0)];
        let tc3 = TimeoutCert {
            epoch: Epoch(0),
            view: View(3),
            signatures: tc_signers
                .iter()
                .zip(&high_qc_views)
                .map(|(id, hv)| {
                    let data = TimeoutData {
                        high_qc_view: *hv,
                        ..timeout_data3
                    };
                    sign(&keys[id.0 as usize], SignKind::Timeout, &data.to_bytes())
                })
                .collect(),
            signers: tc_signers,
            high_qc_views,
        };

        let block4 = Block::new(header(4, 2, block1.id(), 0), qc1.clone(), Payload::empty());
        let proposal4 = Proposal {
            signature: sign(&keys[0], SignKind::Proposal, block4.id().as_bytes()),
            block: block4.clone(),
            tc: Some(tc3.clone()),
        };

        let sync_request = SyncRequest {
            block_id: block2.id(),
            max_blocks: 32,
        };
        let sync_response = SyncResponse {
            blocks: vec![block2.clone(), block1.clone()],
        };

        Fixture {
            keys,
            genesis,
            genesis_qc,
            block1,
            vote_data1,
            qc1,
            block2,
            block4,
            timeout_data3,
            tc3,
            proposal2,
            proposal4,
            vote2,
            timeout_msg3,
            timeout_msg2,
            sync_request,
            sync_response,
        }
    })
}

fn safety_without_timeout() -> SafetyState {
    let f = fixture();
    SafetyState {
        last_voted_view: View(2),
        last_timeout: None,
        last_proposed_view: View(1),
        locked_qc: f.genesis_qc.clone(),
        high_qc: f.qc1.clone(),
    }
}

fn safety_with_timeout() -> SafetyState {
    let f = fixture();
    SafetyState {
        last_voted_view: View(3),
        last_timeout: Some(TimeoutRecord {
            data: f.timeout_data3,
            high_qc: f.qc1.clone(),
        }),
        last_proposed_view: View(1),
        locked_qc: f.genesis_qc.clone(),
        high_qc: f.qc1.clone(),
    }
}

// ------------------------------------------------------------------ ids

#[test]
fn devnet_genesis_block_id() {
    let id = Block::genesis(NetworkEnvironment::Devnet.chain_id()).id();
    assert_eq!(
        id.to_string(),
        "9daaf0a609eafe6eb3a4566cd91a0be389afbd36b35b56032af44b6768309a53"
    );
    // Other chains never share it.
    for env in [NetworkEnvironment::Testnet, NetworkEnvironment::Mainnet] {
        assert_ne!(Block::genesis(env.chain_id()).id(), id);
    }
}

#[test]
fn block_id_is_sha3_of_the_header_encoding() {
    let f = fixture();
    for block in [&f.genesis, &f.block1, &f.block2, &f.block4] {
        assert_eq!(block.id(), Hash32::digest(&block.header().to_bytes()));
        assert_eq!(block.id(), block.header().id());
    }
    assert_eq!(
        f.block1.id().to_string(),
        "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860"
    );
    assert_eq!(
        f.block2.id().to_string(),
        "70a7159c73e7cef18b70571d8200aff2f0f3638ceb4ab3663a739d5cb892304d"
    );
}

#[test]
fn signing_preimages() {
    let f = fixture();
    let pre = signing_preimage(ENV, SignKind::Vote, &f.vote_data1.to_bytes());
    assert_eq!(&pre[..17], b"QBIND:DEV:VOTE:v1");
    assert_eq!(&pre[17..25], b"QBNDDEV\0");
    assert_eq!(&pre[25..], f.vote_data1.to_bytes().as_slice());
    assert_eq!(
        hex::encode(&pre),
        concat!(
            "5142494e443a4445563a564f54453a7631", // "QBIND:DEV:VOTE:v1"
            "51424e4444455600",                   // DevNet chain id, u64 BE
            "0000000000000000",                   // VoteData.epoch
            "0000000000000001",                   // VoteData.view
            "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // VoteData.block_id
        )
    );
    let pre = signing_preimage(ENV, SignKind::Timeout, &f.timeout_data3.to_bytes());
    assert_eq!(
        hex::encode(&pre),
        concat!(
            "5142494e443a4445563a54494d454f55543a7631", // "QBIND:DEV:TIMEOUT:v1"
            "51424e4444455600",                         // DevNet chain id, u64 BE
            "0000000000000000",                         // TimeoutData.epoch
            "0000000000000003",                         // TimeoutData.view
            "0000000000000001",                         // TimeoutData.high_qc_view
        )
    );
    // The first validator's signature on it, pinned by digest.
    assert_eq!(
        hex::encode(Hash32::digest(f.qc1.signatures[0].as_bytes()).0),
        "8b189524288f965c1e11a2be03049eed048d31a9502957b13c9287a0a19874f2"
    );
    // ... made with validator 0's key, itself pinned by digest.
    assert_eq!(
        hex::encode(Hash32::digest(f.keys[0].public_key().as_bytes()).0),
        "0f3cf699dcd46ec303d7bf35b185988d452dfde433ada2413f1f0604d91c1d6a"
    );
}

// ------------------------------------------------------------ goldens

#[test]
fn golden_vote_data() {
    check_full(
        &fixture().vote_data1,
        &Expect {
            len: 48,
            sha3: "c4e220a1fe619b85b7700dbf74041a6e9b717b5369ab674341c13a995fccbc52",
            prefix: &[
                "0000000000000000",                                                 // epoch = 0
                "0000000000000001",                                                 // view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // block_id
            ],
        },
    );
}

#[test]
fn golden_timeout_data() {
    check_full(
        &fixture().timeout_data3,
        &Expect {
            len: 24,
            sha3: "35b0a3c7a3b9984f2c3738316e5e4f4f60cd543a61b47c94ebfb22e26def351d",
            prefix: &[
                "0000000000000000", // epoch = 0
                "0000000000000003", // view = 3
                "0000000000000001", // high_qc_view = 1
            ],
        },
    );
}

#[test]
fn golden_signer_bitmap() {
    check_full(
        &fixture().qc1.signers,
        &Expect {
            len: 5,
            sha3: "b02b28a38bc1220a0759220a8ff85574fba38a169b455efcf305c62c87ae9206",
            prefix: &[
                "00000004", // bits = 4
                "0b",       // bytes: 0b0000_1011 = validators 0, 1, 3
            ],
        },
    );
    let mut wide = SignerBitmap::new(10);
    for i in [0, 8, 9] {
        assert!(wide.set(ValidatorId(i)));
    }
    check_full(
        &wide,
        &Expect {
            len: 6,
            sha3: "3ff7d3c3de4ac3f124ecd1913145a7459c8afbd43de79c276786b0f0c6984b23",
            prefix: &[
                "0000000a", // bits = 10
                "01",       // bytes[0]: 0b0000_0001 = validator 0
                "03",       // bytes[1]: 0b0000_0011 = validators 8, 9; padding bits zero
            ],
        },
    );
    check_full(
        &SignerBitmap::new(0),
        &Expect {
            len: 4,
            sha3: "8b0a2385d83c8bf7be27e59996f7d881d3bf1fc6606f81ce600b753ad94192a2",
            prefix: &[
                "00000000", // bits (no bytes follow) = 0
            ],
        },
    );
}

#[test]
fn golden_quorum_cert_genesis() {
    check_full(
        &fixture().genesis_qc,
        &Expect {
            len: 56,
            sha3: "5f393828471ca1a9797f5d68e2975317004dfa1435bddb486cddc16d18b54de9",
            prefix: &[
                "0000000000000000", // data.epoch = 0
                "0000000000000000", // data.view = 0
                "9daaf0a609eafe6eb3a4566cd91a0be389afbd36b35b56032af44b6768309a53", // data.block_id
                "00000000",         // signers.bits = 0
                "00000000",         // signature count = 0
            ],
        },
    );
}

#[test]
fn golden_quorum_cert_three_of_four() {
    let f = fixture();
    let bytes = check(
        &f.qc1,
        &Expect {
            len: 7317,
            sha3: "9e3367eb52e35a4e32718aedc24b75bd874797191cd50316ee165db048e0570c",
            prefix: &[
                "0000000000000000", // data.epoch = 0
                "0000000000000001", // data.view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // data.block_id
                "00000004",         // signers.bits = 4
                "0b",               // signers.bytes: 0b0000_1011 = validators 0, 1, 3
                "00000003",         // signature count = 3
                "f978f5314b96a77a5226f0cde3f977de", // signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
    // Signatures follow in ascending signer order, 2,420 bytes each.
    for (i, sig) in f.qc1.signatures.iter().enumerate() {
        let at = 48 + 4 + 1 + 4 + i * 2420;
        assert_eq!(&bytes[at..at + 2420], sig.as_bytes());
    }
}

#[test]
fn golden_payload() {
    check_full(
        f_payload1(),
        &Expect {
            len: 31,
            sha3: "4a76e25b8a1ba6e622d716829b898d8da80bd6b271c49b25e6079eadb534901e",
            prefix: &[
                "00",                   // payload tag: 0 = transactions
                "00000003",             // transaction count = 3
                "0000000a",             // txs[0] length = 10
                "7162696e642d74782d31", // txs[0] = "qbind-tx-1"
                "00000004",             // txs[1] length = 4
                "deadbeef",             // txs[1]
                "00000000",             // txs[2] length = 0
            ],
        },
    );
    check_full(
        &Payload::empty(),
        &Expect {
            len: 5,
            sha3: "67702a0ed25a50c46fc0a0fb46a6dfbf5333c9dc25451abdb1eeac93f1e968d5",
            prefix: &[
                "00",       // payload tag: 0 = transactions
                "00000000", // transaction count = 0
            ],
        },
    );
}

/// The digest a header binds for inline transactions is over the
/// transactions' ids, not their bytes (`Payload::digest`): pinned, and
/// recomputed here from its definition.
#[test]
fn golden_payload_digest() {
    let by_definition = |txs: &[&[u8]]| {
        let mut bytes = b"QBIND:PAYLOAD:TXS:v1".to_vec();
        bytes.extend_from_slice(&(txs.len() as u32).to_be_bytes());
        for tx in txs {
            bytes.extend_from_slice(Hash32::digest(tx).as_bytes());
        }
        Hash32::digest(&bytes)
    };
    let payload1 = f_payload1().digest();
    assert_eq!(
        payload1,
        by_definition(&[b"qbind-tx-1", &[0xde, 0xad, 0xbe, 0xef], b""])
    );
    assert_eq!(
        hex::encode(payload1.0),
        "b1304df6207868b154b4c8952600f474f2b121e3f8ed0e425d2a387791670bb1"
    );
    let empty = Payload::empty().digest();
    assert_eq!(empty, by_definition(&[]));
    assert_eq!(
        hex::encode(empty.0),
        "39ccacc9b91539198283b3dbf3a6bc14365c6f13690162be305c5e59c8a8ff12"
    );
    // Not the hash of the encoding (which the proposal carries).
    assert_ne!(payload1, Hash32::digest(&f_payload1().to_bytes()));
    // Batch certificates: the hash of the encoding.
    let batches = Payload::Batches(Vec::new());
    assert_eq!(batches.digest(), Hash32::digest(&batches.to_bytes()));
}

fn f_payload1() -> &'static Payload {
    fixture().block1.payload()
}

#[test]
fn golden_block_header() {
    check_full(
        fixture().block2.header(),
        &Expect {
            len: 172,
            sha3: "70a7159c73e7cef18b70571d8200aff2f0f3638ceb4ab3663a739d5cb892304d",
            prefix: &[
                "0000000000000000",                                                 // epoch = 0
                "0000000000000002",                                                 // view = 2
                "0000000000000002",                                                 // height = 2
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // parent_id
                "0000000000000001", // justify_view = 1
                "00000002",         // proposer = 2
                "0b91791e78f5187d055eb9c8f764e3254fded2ba7d624aba58f5a0d4c1c21229", // payload_digest
                "0000000000000000000000000000000000000000000000000000000000000000", // batch_commitment (zero: inline payload)
                "0000000000000000", // exec_height = 0
                "0000000000000000000000000000000000000000000000000000000000000000", // exec_state_root (zero: nothing executed)
            ],
        },
    );
}

#[test]
fn golden_block_header_with_an_executed_root() {
    let mut header = fixture().block2.header().clone();
    header.exec_height = Height(7);
    header.exec_state_root = Hash32([0xab; 32]);
    let bytes = check_full(
        &header,
        &Expect {
            len: 172,
            sha3: "5a36505f1ff0c4d7684f75f8f60b84b935b58c07b598847b4a8b1037a4bad074",
            prefix: &[
                "0000000000000000",                                                 // epoch = 0
                "0000000000000002",                                                 // view = 2
                "0000000000000002",                                                 // height = 2
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // parent_id
                "0000000000000001", // justify_view = 1
                "00000002",         // proposer = 2
                "0b91791e78f5187d055eb9c8f764e3254fded2ba7d624aba58f5a0d4c1c21229", // payload_digest
                "0000000000000000000000000000000000000000000000000000000000000000", // batch_commitment (zero: inline payload)
                "0000000000000007", // exec_height = 7
                "abababababababababababababababababababababababababababababababab", // exec_state_root
            ],
        },
    );
    assert_eq!(
        Hash32::digest(&bytes),
        header.id(),
        "the id covers the executed root"
    );
}

#[test]
fn golden_genesis_block() {
    check_full(
        &fixture().genesis,
        &Expect {
            len: 233,
            sha3: "4637da26eba1796c2c074fbac8cde940f5cba2de271dca639ec643b9384b3488",
            prefix: &[
                "0000000000000000", // header.epoch = 0
                "0000000000000000", // header.view = 0
                "0000000000000000", // header.height = 0
                "f6c23b1f6c25eb7e7df67b9ddc598b423dfdbbb60ad500729465b48889b4f025", // header.parent_id
                "0000000000000000", // header.justify_view = 0
                "00000000",         // header.proposer = 0
                "39ccacc9b91539198283b3dbf3a6bc14365c6f13690162be305c5e59c8a8ff12", // header.payload_digest
                "0000000000000000000000000000000000000000000000000000000000000000", // header.batch_commitment (zero: inline payload)
                "0000000000000000", // header.exec_height = 0
                "0000000000000000000000000000000000000000000000000000000000000000", // header.exec_state_root (zero: nothing executed)
                "0000000000000000", // justify.data.epoch = 0
                "0000000000000000", // justify.data.view = 0
                "9daaf0a609eafe6eb3a4566cd91a0be389afbd36b35b56032af44b6768309a53", // justify.data.block_id
                "00000000", // justify.signers.bits = 0
                "00000000", // justify.signature count = 0
                "00",       // payload tag: 0 = transactions
                "00000000", // transaction count = 0
            ],
        },
    );
}

#[test]
fn golden_block() {
    let f = fixture();
    check_full(
        &f.block1,
        &Expect {
            len: 259,
            sha3: "bc9b53b8a79ca5e2b64b444926a77ebd01389fe8ee44a392fc6524879525e663",
            prefix: &[
                "0000000000000000", // header.epoch = 0
                "0000000000000001", // header.view = 1
                "0000000000000001", // header.height = 1
                "9daaf0a609eafe6eb3a4566cd91a0be389afbd36b35b56032af44b6768309a53", // header.parent_id
                "0000000000000000", // header.justify_view = 0
                "00000001",         // header.proposer = 1
                "b1304df6207868b154b4c8952600f474f2b121e3f8ed0e425d2a387791670bb1", // header.payload_digest
                "0000000000000000000000000000000000000000000000000000000000000000", // header.batch_commitment (zero: inline payload)
                "0000000000000000", // header.exec_height = 0
                "0000000000000000000000000000000000000000000000000000000000000000", // header.exec_state_root (zero: nothing executed)
                "0000000000000000", // justify.data.epoch = 0
                "0000000000000000", // justify.data.view = 0
                "9daaf0a609eafe6eb3a4566cd91a0be389afbd36b35b56032af44b6768309a53", // justify.data.block_id
                "00000000",             // justify.signers.bits = 0
                "00000000",             // justify.signature count = 0
                "00",                   // payload tag: 0 = transactions
                "00000003",             // transaction count = 3
                "0000000a",             // txs[0] length = 10
                "7162696e642d74782d31", // txs[0] = "qbind-tx-1"
                "00000004",             // txs[1] length = 4
                "deadbeef",             // txs[1]
                "00000000",             // txs[2] length = 0
            ],
        },
    );
    check(
        &f.block2,
        &Expect {
            len: 7512,
            sha3: "e922192c01e9c30a106552d6818d3c56e4ce94bcb63f115bfa6c6649d31236d0",
            prefix: &[
                "0000000000000000", // header.epoch = 0
                "0000000000000002", // header.view = 2
                "0000000000000002", // header.height = 2
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // header.parent_id
                "0000000000000001", // header.justify_view = 1
                "00000002",         // header.proposer = 2
                "0b91791e78f5187d055eb9c8f764e3254fded2ba7d624aba58f5a0d4c1c21229", // header.payload_digest
                "0000000000000000000000000000000000000000000000000000000000000000", // header.batch_commitment (zero: inline payload)
                "0000000000000000", // header.exec_height = 0
                "0000000000000000000000000000000000000000000000000000000000000000", // header.exec_state_root (zero: nothing executed)
                "0000000000000000", // justify.data.epoch = 0
                "0000000000000001", // justify.data.view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // justify.data.block_id
                "00000004",                         // justify.signers.bits = 4
                "0b",       // justify.signers.bytes: 0b0000_1011 = validators 0, 1, 3
                "00000003", // justify.signature count = 3
                "f978f5314b96a77a5226f0cde3f977de", // justify.signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
}

#[test]
fn golden_proposal_without_tc() {
    let f = fixture();
    let bytes = check(
        &f.proposal2,
        &Expect {
            len: 9933,
            sha3: "b7e216c2a0a25b43aab72d00a0d3c309095ece0074134d7f2e2f094c8230aaff",
            prefix: &[
                "0000000000000000", // block.header.epoch = 0
                "0000000000000002", // block.header.view = 2
                "0000000000000002", // block.header.height = 2
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // block.header.parent_id
                "0000000000000001", // block.header.justify_view = 1
                "00000002",         // block.header.proposer = 2
                "0b91791e78f5187d055eb9c8f764e3254fded2ba7d624aba58f5a0d4c1c21229", // block.header.payload_digest
                "0000000000000000000000000000000000000000000000000000000000000000", // block.header.batch_commitment (zero: inline payload)
                "0000000000000000", // block.header.exec_height = 0
                "0000000000000000000000000000000000000000000000000000000000000000", // block.header.exec_state_root (zero: nothing executed)
                "0000000000000000", // block.justify.data.epoch = 0
                "0000000000000001", // block.justify.data.view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // block.justify.data.block_id
                "00000004",                         // block.justify.signers.bits = 4
                "0b",       // block.justify.signers.bytes: 0b0000_1011 = validators 0, 1, 3
                "00000003", // block.justify.signature count = 3
                "f978f5314b96a77a5226f0cde3f977de", // block.justify.signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
    let block_len = f.block2.to_bytes().len();
    assert_eq!(bytes[block_len], 0, "`tc` option tag: none");
    assert_eq!(&bytes[block_len + 1..], f.proposal2.signature.as_bytes());
}

#[test]
fn golden_proposal_with_tc() {
    let f = fixture();
    let bytes = check(
        &f.proposal4,
        &Expect {
            len: 17228,
            sha3: "88630e491c347b5ed2c1b586b84e3d8d439ff5a114246a79a37cc1f2ff8ea63a",
            prefix: &[
                "0000000000000000", // block.header.epoch = 0
                "0000000000000004", // block.header.view = 4
                "0000000000000002", // block.header.height = 2
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // block.header.parent_id
                "0000000000000001", // block.header.justify_view = 1
                "00000000",         // block.header.proposer = 0
                "39ccacc9b91539198283b3dbf3a6bc14365c6f13690162be305c5e59c8a8ff12", // block.header.payload_digest
                "0000000000000000000000000000000000000000000000000000000000000000", // block.header.batch_commitment (zero: inline payload)
                "0000000000000000", // block.header.exec_height = 0
                "0000000000000000000000000000000000000000000000000000000000000000", // block.header.exec_state_root (zero: nothing executed)
                "0000000000000000", // block.justify.data.epoch = 0
                "0000000000000001", // block.justify.data.view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // block.justify.data.block_id
                "00000004",                         // block.justify.signers.bits = 4
                "0b",       // block.justify.signers.bytes: 0b0000_1011 = validators 0, 1, 3
                "00000003", // block.justify.signature count = 3
                "f978f5314b96a77a5226f0cde3f977de", // block.justify.signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
    let block_len = f.block4.to_bytes().len();
    let tc = f.tc3.to_bytes();
    assert_eq!(bytes[block_len], 1, "`tc` option tag: some");
    assert_eq!(
        &bytes[block_len + 1..block_len + 1 + tc.len()],
        tc.as_slice()
    );
    assert_eq!(
        &bytes[block_len + 1 + tc.len()..],
        f.proposal4.signature.as_bytes()
    );
}

#[test]
fn golden_vote() {
    check(
        &fixture().vote2,
        &Expect {
            len: 2472,
            sha3: "c03abc6f84300cecd50089e2ffb62fe18992e5c2b4118afdc442885d3dbfab72",
            prefix: &[
                "0000000000000000", // data.epoch = 0
                "0000000000000002", // data.view = 2
                "70a7159c73e7cef18b70571d8200aff2f0f3638ceb4ab3663a739d5cb892304d", // data.block_id
                "00000003",         // voter = 3
                "a2580f0b69283d596c5bc1ce6d918ce1", // signature, first 16 of 2,420 bytes
            ],
        },
    );
}

#[test]
fn golden_timeout_msg_without_vote() {
    check(
        &fixture().timeout_msg3,
        &Expect {
            len: 9766,
            sha3: "a8c7473a7ff5f0a84b07cb12c7a4df72053b64c1c8b13f01a476624c3bd4fe5f",
            prefix: &[
                "0000000000000000", // data.epoch = 0
                "0000000000000003", // data.view = 3
                "0000000000000001", // data.high_qc_view = 1
                "0000000000000000", // high_qc.data.epoch = 0
                "0000000000000001", // high_qc.data.view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // high_qc.data.block_id
                "00000004",                         // high_qc.signers.bits = 4
                "0b",       // high_qc.signers.bytes: 0b0000_1011 = validators 0, 1, 3
                "00000003", // high_qc.signature count = 3
                "f978f5314b96a77a5226f0cde3f977de", // high_qc.signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
}

#[test]
fn golden_timeout_msg_with_vote() {
    let f = fixture();
    let bytes = check(
        &f.timeout_msg2,
        &Expect {
            len: 12238,
            sha3: "35e555b93dbf87f648698c8bf73db1fb1aaa415b169d6a42ad1c99efc4a07309",
            prefix: &[
                "0000000000000000", // data.epoch = 0
                "0000000000000002", // data.view = 2
                "0000000000000001", // data.high_qc_view = 1
                "0000000000000000", // high_qc.data.epoch = 0
                "0000000000000001", // high_qc.data.view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // high_qc.data.block_id
                "00000004",                         // high_qc.signers.bits = 4
                "0b",       // high_qc.signers.bytes: 0b0000_1011 = validators 0, 1, 3
                "00000003", // high_qc.signature count = 3
                "f978f5314b96a77a5226f0cde3f977de", // high_qc.signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
    let vote = f.timeout_msg2.vote.as_ref().map(Encode::to_bytes).unwrap();
    let at = 24 + f.qc1.to_bytes().len();
    assert_eq!(bytes[at], 1, "`vote` option tag: some");
    assert_eq!(&bytes[at + 1..at + 1 + vote.len()], vote.as_slice());
}

#[test]
fn golden_timeout_cert() {
    check(
        &fixture().tc3,
        &Expect {
            len: 7313,
            sha3: "5dd95b183d450afb3150fdbffd581ae35ee954830b4c1d682476e39b6211dac1",
            prefix: &[
                "0000000000000000",                 // epoch = 0
                "0000000000000003",                 // view = 3
                "00000004",                         // signers.bits = 4
                "0d",               // signers.bytes: 0b0000_1101 = validators 0, 2, 3
                "00000003",         // high_qc_views count = 3
                "0000000000000001", // high_qc_views[0] = 1
                "0000000000000001", // high_qc_views[1] = 1
                "0000000000000000", // high_qc_views[2] = 0
                "00000003",         // signature count = 3
                "b69b546ae287ae64fe27964401d82bb1", // signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
}

#[test]
fn golden_sync_request() {
    check_full(
        &fixture().sync_request,
        &Expect {
            len: 36,
            sha3: "983c0432a3fe17be0200f9664a5d8e9d300d18659fa29fc8f21df055557146ab",
            prefix: &[
                "70a7159c73e7cef18b70571d8200aff2f0f3638ceb4ab3663a739d5cb892304d", // block_id
                "00000020", // max_blocks = 32
            ],
        },
    );
}

#[test]
fn golden_sync_response() {
    let f = fixture();
    let bytes = check(
        &f.sync_response,
        &Expect {
            len: 7775,
            sha3: "58c1dfdda7ccc863f21dc498d4ea176cc8b3b58f2329bd8c56e2f9290899ffd2",
            prefix: &[
                "00000002",                                                         // block count = 2
                "0000000000000000", // blocks[0].header.epoch = 0
                "0000000000000002", // blocks[0].header.view = 2
                "0000000000000002", // blocks[0].header.height = 2
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // blocks[0].header.parent_id
                "0000000000000001", // blocks[0].header.justify_view = 1
                "00000002",         // blocks[0].header.proposer = 2
                "0b91791e78f5187d055eb9c8f764e3254fded2ba7d624aba58f5a0d4c1c21229", // blocks[0].header.payload_digest
                "0000000000000000000000000000000000000000000000000000000000000000", // blocks[0].header.batch_commitment (zero: inline payload)
                "0000000000000000", // blocks[0].header.exec_height = 0
                "0000000000000000000000000000000000000000000000000000000000000000", // blocks[0].header.exec_state_root (zero: nothing executed)
                "0000000000000000", // blocks[0].justify.data.epoch = 0
                "0000000000000001", // blocks[0].justify.data.view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // blocks[0].justify.data.block_id
                "00000004",                         // blocks[0].justify.signers.bits = 4
                "0b",       // blocks[0].justify.signers.bytes: 0b0000_1011 = validators 0, 1, 3
                "00000003", // blocks[0].justify.signature count = 3
                "f978f5314b96a77a5226f0cde3f977de", // blocks[0].justify.signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
    let first = f.block2.to_bytes();
    assert_eq!(&bytes[4..4 + first.len()], first.as_slice());
    assert_eq!(&bytes[4 + first.len()..], f.block1.to_bytes().as_slice());
}

#[test]
fn golden_consensus_msg_proposal() {
    check(
        &ConsensusMsg::Proposal(fixture().proposal2.clone()),
        &Expect {
            len: 9934,
            sha3: "6ad2d2a25c4a2ede777b6b5c1004616b6c5e7bf46fe5e20e286f591dd54dfca9",
            prefix: &[
                "01",                                                               // tag 1 = Proposal
                "0000000000000000", // block.header.epoch = 0
                "0000000000000002", // block.header.view = 2
                "0000000000000002", // block.header.height = 2
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // block.header.parent_id
                "0000000000000001", // block.header.justify_view = 1
                "00000002",         // block.header.proposer = 2
                "0b91791e78f5187d055eb9c8f764e3254fded2ba7d624aba58f5a0d4c1c21229", // block.header.payload_digest
                "0000000000000000000000000000000000000000000000000000000000000000", // block.header.batch_commitment (zero: inline payload)
                "0000000000000000", // block.header.exec_height = 0
                "0000000000000000000000000000000000000000000000000000000000000000", // block.header.exec_state_root (zero: nothing executed)
                "0000000000000000", // block.justify.data.epoch = 0
                "0000000000000001", // block.justify.data.view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // block.justify.data.block_id
                "00000004",                         // block.justify.signers.bits = 4
                "0b",       // block.justify.signers.bytes: 0b0000_1011 = validators 0, 1, 3
                "00000003", // block.justify.signature count = 3
                "f978f5314b96a77a5226f0cde3f977de", // block.justify.signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
}

#[test]
fn golden_consensus_msg_vote() {
    check(
        &ConsensusMsg::Vote(fixture().vote2.clone()),
        &Expect {
            len: 2473,
            sha3: "03dbeb346e953147163456bff48c34e64317b0d29c5e0b01358b7f248da9fa02",
            prefix: &[
                "02",                                                               // tag 2 = Vote
                "0000000000000000", // data.epoch = 0
                "0000000000000002", // data.view = 2
                "70a7159c73e7cef18b70571d8200aff2f0f3638ceb4ab3663a739d5cb892304d", // data.block_id
                "00000003",         // voter = 3
                "a2580f0b69283d596c5bc1ce6d918ce1", // signature, first 16 of 2,420 bytes
            ],
        },
    );
}

#[test]
fn golden_consensus_msg_timeout() {
    check(
        &ConsensusMsg::Timeout(fixture().timeout_msg2.clone()),
        &Expect {
            len: 12239,
            sha3: "2ff73f0b60d3d2ceb125785c1b3b796c2071829dee3639d355889e4096f5e30d",
            prefix: &[
                "03",                                                               // tag 3 = Timeout
                "0000000000000000", // data.epoch = 0
                "0000000000000002", // data.view = 2
                "0000000000000001", // data.high_qc_view = 1
                "0000000000000000", // high_qc.data.epoch = 0
                "0000000000000001", // high_qc.data.view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // high_qc.data.block_id
                "00000004",                         // high_qc.signers.bits = 4
                "0b",       // high_qc.signers.bytes: 0b0000_1011 = validators 0, 1, 3
                "00000003", // high_qc.signature count = 3
                "f978f5314b96a77a5226f0cde3f977de", // high_qc.signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
}

#[test]
fn golden_consensus_msg_timeout_cert() {
    check(
        &ConsensusMsg::TimeoutCert(fixture().tc3.clone()),
        &Expect {
            len: 7314,
            sha3: "c88d6af462043ec1f5b7856256c16ad766d28f13ff3e497e297e4e64e76c914b",
            prefix: &[
                "04",                               // tag 4 = TimeoutCert
                "0000000000000000",                 // epoch = 0
                "0000000000000003",                 // view = 3
                "00000004",                         // signers.bits = 4
                "0d",               // signers.bytes: 0b0000_1101 = validators 0, 2, 3
                "00000003",         // high_qc_views count = 3
                "0000000000000001", // high_qc_views[0] = 1
                "0000000000000001", // high_qc_views[1] = 1
                "0000000000000000", // high_qc_views[2] = 0
                "00000003",         // signature count = 3
                "b69b546ae287ae64fe27964401d82bb1", // signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
}

/// Issue #18: committed blocks by height (tag 11).
#[test]
fn golden_sync_range_request() {
    let request = SyncRangeRequest {
        from_height: Height(10),
        max_blocks: 32,
    };
    check_full(
        &request,
        &Expect {
            len: 12,
            sha3: "a9f9ad2c14fd7235675414ab4ed36fa9820bf501c2392e08b93d79f5562f1bb1",
            prefix: &[
                "000000000000000a", // from_height = 10
                "00000020",         // max_blocks = 32
            ],
        },
    );
    check_full(
        &ConsensusMsg::SyncRange(request),
        &Expect {
            len: 13,
            sha3: "73211a4e557cb1df305891c360a7cab8cbc47332331515d8021e56b6d734b8fb",
            prefix: &[
                "0b",               // tag 11 = SyncRange
                "000000000000000a", // from_height = 10
                "00000020",         // max_blocks = 32
            ],
        },
    );
}

#[test]
fn golden_consensus_msg_sync_request() {
    check_full(
        &ConsensusMsg::SyncRequest(fixture().sync_request),
        &Expect {
            len: 37,
            sha3: "88753af7664d37855c31cf469ac23c4a9d1ca30c6da62463c191070c4dde70ff",
            prefix: &[
                "05",                                                               // tag 5 = SyncRequest
                "70a7159c73e7cef18b70571d8200aff2f0f3638ceb4ab3663a739d5cb892304d", // block_id
                "00000020", // max_blocks = 32
            ],
        },
    );
}

#[test]
fn golden_consensus_msg_sync_response() {
    check(
        &ConsensusMsg::SyncResponse(fixture().sync_response.clone()),
        &Expect {
            len: 7776,
            sha3: "ebea2f1119435e742cd75bdfb6dce738bcf8fbc66f6f73086d22324aa8e7422f",
            prefix: &[
                "06",                                                               // tag 6 = SyncResponse
                "00000002",         // block count = 2
                "0000000000000000", // blocks[0].header.epoch = 0
                "0000000000000002", // blocks[0].header.view = 2
                "0000000000000002", // blocks[0].header.height = 2
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // blocks[0].header.parent_id
                "0000000000000001", // blocks[0].header.justify_view = 1
                "00000002",         // blocks[0].header.proposer = 2
                "0b91791e78f5187d055eb9c8f764e3254fded2ba7d624aba58f5a0d4c1c21229", // blocks[0].header.payload_digest
                "0000000000000000000000000000000000000000000000000000000000000000", // blocks[0].header.batch_commitment (zero: inline payload)
                "0000000000000000", // blocks[0].header.exec_height = 0
                "0000000000000000000000000000000000000000000000000000000000000000", // blocks[0].header.exec_state_root (zero: nothing executed)
                "0000000000000000", // blocks[0].justify.data.epoch = 0
                "0000000000000001", // blocks[0].justify.data.view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // blocks[0].justify.data.block_id
                "00000004",                         // blocks[0].justify.signers.bits = 4
                "0b",       // blocks[0].justify.signers.bytes: 0b0000_1011 = validators 0, 1, 3
                "00000003", // blocks[0].justify.signature count = 3
                "f978f5314b96a77a5226f0cde3f977de", // blocks[0].justify.signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
}

#[test]
fn consensus_msg_is_tag_then_body() {
    let f = fixture();
    let cases: [(ConsensusMsg, u8, Vec<u8>); 6] = [
        (
            ConsensusMsg::Proposal(f.proposal4.clone()),
            1,
            f.proposal4.to_bytes(),
        ),
        (ConsensusMsg::Vote(f.vote2.clone()), 2, f.vote2.to_bytes()),
        (
            ConsensusMsg::Timeout(f.timeout_msg2.clone()),
            3,
            f.timeout_msg2.to_bytes(),
        ),
        (
            ConsensusMsg::TimeoutCert(f.tc3.clone()),
            4,
            f.tc3.to_bytes(),
        ),
        (
            ConsensusMsg::SyncRequest(f.sync_request),
            5,
            f.sync_request.to_bytes(),
        ),
        (
            ConsensusMsg::SyncResponse(f.sync_response.clone()),
            6,
            f.sync_response.to_bytes(),
        ),
    ];
    for (msg, tag, body) in cases {
        let bytes = msg.to_bytes();
        assert_eq!(bytes[0], tag, "{}", msg.kind());
        assert_eq!(&bytes[1..], body.as_slice(), "{}", msg.kind());
        assert_eq!(ConsensusMsg::from_bytes(&bytes), Ok(msg));
    }
}

#[test]
fn golden_safety_state_genesis() {
    let f = fixture();
    check_full(
        &SafetyState::genesis(f.genesis_qc.clone()),
        &Expect {
            len: 130,
            sha3: "d230412d1e63358d9468d3b7bc5cb235e111a4c742a1a71aa68d920489380544",
            prefix: &[
                "01",                                                               // format version = 1
                "0000000000000000", // last_voted_view = 0
                "00",               // last_timeout: tag 0 = none
                "0000000000000000", // last_proposed_view = 0
                "0000000000000000", // locked_qc.data.epoch = 0
                "0000000000000000", // locked_qc.data.view = 0
                "9daaf0a609eafe6eb3a4566cd91a0be389afbd36b35b56032af44b6768309a53", // locked_qc.data.block_id
                "00000000",         // locked_qc.signers.bits = 0
                "00000000",         // locked_qc.signature count = 0
                "0000000000000000", // high_qc.data.epoch = 0
                "0000000000000000", // high_qc.data.view = 0
                "9daaf0a609eafe6eb3a4566cd91a0be389afbd36b35b56032af44b6768309a53", // high_qc.data.block_id
                "00000000", // high_qc.signers.bits = 0
                "00000000", // high_qc.signature count = 0
            ],
        },
    );
}

#[test]
fn golden_safety_state_without_last_timeout() {
    check(
        &safety_without_timeout(),
        &Expect {
            len: 7391,
            sha3: "fecdbe3d84d12042eb5a7504648483bf76def74efcc105c9707a6fe566564d1c",
            prefix: &[
                "01",                                                               // format version = 1
                "0000000000000002", // last_voted_view = 2
                "00",               // last_timeout: tag 0 = none
                "0000000000000001", // last_proposed_view = 1
                "0000000000000000", // locked_qc.data.epoch = 0
                "0000000000000000", // locked_qc.data.view = 0
                "9daaf0a609eafe6eb3a4566cd91a0be389afbd36b35b56032af44b6768309a53", // locked_qc.data.block_id
                "00000000",         // locked_qc.signers.bits = 0
                "00000000",         // locked_qc.signature count = 0
                "0000000000000000", // high_qc.data.epoch = 0
                "0000000000000001", // high_qc.data.view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // high_qc.data.block_id
                "00000004",                         // high_qc.signers.bits = 4
                "0b",       // high_qc.signers.bytes: 0b0000_1011 = validators 0, 1, 3
                "00000003", // high_qc.signature count = 3
                "f978f5314b96a77a5226f0cde3f977de", // high_qc.signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
}

#[test]
fn golden_safety_state_with_last_timeout() {
    check(
        &safety_with_timeout(),
        &Expect {
            len: 14732,
            sha3: "0b2576a21abbb1c8b4afa0f3ea557043634789276b5fb6a0b8bc560a9ab9228a",
            prefix: &[
                "01",                                                               // format version = 1
                "0000000000000003", // last_voted_view = 3
                "01",               // last_timeout: tag 1 = some
                "0000000000000000", // last_timeout.data.epoch = 0
                "0000000000000003", // last_timeout.data.view = 3
                "0000000000000001", // last_timeout.data.high_qc_view = 1
                "0000000000000000", // last_timeout.high_qc.data.epoch = 0
                "0000000000000001", // last_timeout.high_qc.data.view = 1
                "39d662467219781347831fdbb48be0a7fb9a23830d0c4118c1f046799bfb5860", // last_timeout.high_qc.data.block_id
                "00000004", // last_timeout.high_qc.signers.bits = 4
                "0b",       // last_timeout.high_qc.signers.bytes: 0b0000_1011 = validators 0, 1, 3
                "00000003", // last_timeout.high_qc.signature count = 3
                "f978f5314b96a77a5226f0cde3f977de", // last_timeout.high_qc.signatures[0], first 16 of 2,420 bytes
            ],
        },
    );
}
