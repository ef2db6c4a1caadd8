//! Golden bytes and round-trip properties for the DAG wire types and the
//! DAG block payload (layouts in docs/wire-format.md §4.4, §4.15, §4.16).

use proptest::prelude::*;
use qbind_core::codec::{Decode, DecodeError, Encode};
use qbind_core::consensus::{ConsensusMsg, Payload, SignerBitmap};
use qbind_core::crypto::{KeyPair, Signature};
use qbind_core::dag::{Batch, BatchAck, BatchCertificate, BatchRef, SignedBatch, batch_commitment};
use qbind_core::signing::{SignKind, sign_domain};
use qbind_core::types::{Epoch, Hash32, NetworkEnvironment, ValidatorId};

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

fn batch() -> Batch {
    Batch {
        epoch: Epoch(0),
        author: ValidatorId(2),
        round: 7,
        txs: vec![b"tx-a".to_vec(), b"tx-bc".to_vec()],
    }
}

fn key(i: u8) -> KeyPair {
    KeyPair::from_seed(&[i; 32])
}

fn cert() -> BatchCertificate {
    let r = BatchRef {
        epoch: Epoch(0),
        author: ValidatorId(2),
        round: 7,
        digest: batch().digest(),
    };
    let mut signers = SignerBitmap::new(4);
    let mut signatures = Vec::new();
    for i in [0u8, 2, 3] {
        signers.set(ValidatorId(u32::from(i)));
        signatures.push(sign_domain(&key(i), ENV, SignKind::BatchAck, &r.to_bytes()));
    }
    BatchCertificate {
        batch: r,
        signers,
        signatures,
    }
}

fn sha3(bytes: &[u8]) -> String {
    Hash32::digest(bytes).to_string()
}

#[test]
fn golden_batch() {
    let bytes = batch().to_bytes();
    assert_eq!(
        hex::encode(&bytes),
        concat!(
            "0000000000000000", // epoch = 0
            "00000002",         // author = 2
            "0000000000000007", // round = 7
            "00000002",         // 2 transactions
            "00000004",         // tx 0 length
            "74782d61",         // "tx-a"
            "00000005",         // tx 1 length
            "74782d6263",       // "tx-bc"
        )
    );
    assert_eq!(Batch::from_bytes(&bytes), Ok(batch()));
    // The digest is over the transactions' ids, not the encoding: pinned,
    // and recomputed from its definition (docs/wire-format.md §4.16).
    let mut preimage = b"QBIND:BATCH:v1".to_vec();
    preimage.extend_from_slice(&bytes[..24]); // epoch, author, round, count
    preimage.extend_from_slice(Hash32::digest(b"tx-a").as_bytes());
    preimage.extend_from_slice(Hash32::digest(b"tx-bc").as_bytes());
    assert_eq!(batch().digest().to_string(), sha3(&preimage));
    assert_eq!(
        batch().digest().to_string(),
        "a50ece8ff368ad1e6bf9db8265499505a2c73bbdcdabd185b31363b5cb509cb6"
    );
    assert_ne!(batch().digest().to_string(), sha3(&bytes));
}

#[test]
fn golden_batch_ref_and_ack() {
    let r = cert().batch;
    let bytes = r.to_bytes();
    assert_eq!(bytes.len(), 52);
    assert_eq!(
        &hex::encode(&bytes)[..40],
        concat!("0000000000000000", "00000002", "0000000000000007")
    );
    assert_eq!(&bytes[20..], batch().digest().as_bytes());
    let ack = BatchAck {
        batch: r,
        acker: ValidatorId(3),
        signature: sign_domain(&key(3), ENV, SignKind::BatchAck, &bytes),
    };
    let enc = ack.to_bytes();
    assert_eq!(enc.len(), 52 + 4 + 2420);
    assert_eq!(hex::encode(&enc[52..56]), "00000003");
    assert_eq!(BatchAck::from_bytes(&enc), Ok(ack));
}

#[test]
fn golden_signed_batch_certificate_and_payload() {
    let sb = SignedBatch {
        batch: batch(),
        signature: sign_domain(&key(2), ENV, SignKind::Batch, &batch().digest().to_bytes()),
    };
    let enc = sb.to_bytes();
    assert_eq!(enc.len(), batch().to_bytes().len() + 2420);
    assert_eq!(SignedBatch::from_bytes(&enc), Ok(sb.clone()));

    let c = cert();
    let enc = c.to_bytes();
    // BatchRef, bitmap (4 + 1 bytes: bits 0, 2, 3 = 0b1101), count 3, 3 signatures.
    assert_eq!(enc.len(), 52 + 5 + 4 + 3 * 2420);
    assert_eq!(hex::encode(&enc[52..61]), "000000040d00000003");
    assert_eq!(BatchCertificate::from_bytes(&enc), Ok(c.clone()));

    let payload = Payload::Batches(vec![c.clone()]);
    let enc = payload.to_bytes();
    assert_eq!(hex::encode(&enc[..5]), "0100000001");
    assert_eq!(Payload::from_bytes(&enc), Ok(payload.clone()));
    // The header commitment covers the BatchRefs, not the signatures.
    let mut pre = b"QBIND:BATCH_COMMITMENT:v1".to_vec();
    pre.extend_from_slice(&c.batch.to_bytes());
    assert_eq!(payload.batch_commitment(), Hash32::digest(&pre));
    assert_eq!(batch_commitment(&[c]), Hash32::digest(&pre));
    assert_eq!(Payload::empty().batch_commitment(), Hash32::ZERO);

    for msg in [
        ConsensusMsg::Batch(sb),
        ConsensusMsg::BatchAck(BatchAck {
            batch: cert().batch,
            acker: ValidatorId(0),
            signature: cert().signatures[0].clone(),
        }),
        ConsensusMsg::BatchCert(cert()),
        ConsensusMsg::BatchFetch(Hash32([9; 32])),
    ] {
        let bytes = msg.to_bytes();
        assert_eq!(
            ConsensusMsg::from_bytes(&bytes),
            Ok(msg.clone()),
            "{}",
            msg.kind()
        );
    }
    assert_eq!(ConsensusMsg::BatchFetch(Hash32([9; 32])).to_bytes()[0], 10);
}

#[test]
fn certificate_signature_count_must_match_bitmap() {
    let mut c = cert();
    c.signatures.pop();
    let bytes = c.to_bytes();
    assert!(matches!(
        BatchCertificate::from_bytes(&bytes),
        Err(DecodeError::NonCanonical { .. })
    ));
}

fn sig() -> Signature {
    cert().signatures[0].clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn batch_round_trips(epoch: u64, author: u32, round: u64,
                         txs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 0..12),
                         extra: u8) {
        let b = Batch { epoch: Epoch(epoch), author: ValidatorId(author), round, txs };
        let bytes = b.to_bytes();
        prop_assert_eq!(Batch::from_bytes(&bytes), Ok(b));
        prop_assert!(Batch::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes;
        longer.push(extra);
        prop_assert_eq!(Batch::from_bytes(&longer), Err(DecodeError::TrailingBytes { count: 1 }));
    }

    #[test]
    fn ack_and_fetch_round_trip(epoch: u64, author: u32, round: u64, digest: [u8; 32], acker: u32) {
        let ack = BatchAck {
            batch: BatchRef { epoch: Epoch(epoch), author: ValidatorId(author), round, digest: Hash32(digest) },
            acker: ValidatorId(acker),
            signature: sig(),
        };
        let msg = ConsensusMsg::BatchAck(ack);
        prop_assert_eq!(ConsensusMsg::from_bytes(&msg.to_bytes()), Ok(msg));
        let fetch = ConsensusMsg::BatchFetch(Hash32(digest));
        prop_assert_eq!(ConsensusMsg::from_bytes(&fetch.to_bytes()), Ok(fetch));
    }

    #[test]
    fn dag_decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), tag in 7u8..=10) {
        let mut input = vec![tag];
        input.extend_from_slice(&bytes);
        let _ = ConsensusMsg::from_bytes(&input);
        let mut payload = vec![1u8];
        payload.extend_from_slice(&bytes);
        let _ = Payload::from_bytes(&payload);
    }
}
