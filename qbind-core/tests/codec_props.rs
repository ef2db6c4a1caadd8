//! Property tests of the canonical codec over every consensus wire type
//! (STYLE 6 and 15; the rules are listed in `codec/mod.rs` and
//! `docs/wire-format.md`).
//!
//! Values are arbitrary, not protocol-valid: signatures come from a small
//! pool (two real ML-DSA-44 signatures and two arbitrary 2,420-byte strings)
//! because the codec never verifies them and signing inside proptest would be
//! slow. Properties:
//! - `decode(encode(x)) == x`, the decoder consumes every byte, and
//!   re-encoding gives the same bytes;
//! - every strict prefix of a valid encoding fails to decode; one extra byte
//!   fails with `TrailingBytes`;
//! - arbitrary or mutated bytes never panic the `ConsensusMsg` and
//!   `SafetyState` decoders, and whatever does decode re-encodes to exactly
//!   the input (one encoding per value);
//! - non-zero bitmap padding, signature / high-QC-view counts that differ
//!   from the bitmap's popcount, unknown tags and over-limit length prefixes
//!   are rejected with the documented error.

use std::fmt::Debug;
use std::sync::OnceLock;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;

use qbind_core::codec::{CodecLimits, Decode, DecodeError, Encode, Reader};
use qbind_core::consensus::{
    Block, BlockHeader, ConsensusMsg, Payload, Proposal, QuorumCert, SafetyState, SignerBitmap,
    SyncRequest, SyncResponse, TimeoutCert, TimeoutData, TimeoutMsg, TimeoutRecord, Vote, VoteData,
};
use qbind_core::crypto::{KeyPair, ML_DSA_44_SIGNATURE_BYTES, Signature};
use qbind_core::signing::{SignKind, sign_domain};
use qbind_core::types::{Epoch, Hash32, Height, NetworkEnvironment, ValidatorId, View};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

// --------------------------------------------------------------- strategies

fn signature_pool() -> &'static [Signature] {
    static POOL: OnceLock<Vec<Signature>> = OnceLock::new();
    POOL.get_or_init(|| {
        let key = KeyPair::from_seed(&[9; 32]);
        let env = NetworkEnvironment::Devnet;
        vec![
            sign_domain(&key, env, SignKind::Vote, b"vote"),
            sign_domain(&key, env, SignKind::Timeout, b"timeout"),
            Signature::from_bytes(&[0u8; ML_DSA_44_SIGNATURE_BYTES]).unwrap(),
            Signature::from_bytes(&[0xa5u8; ML_DSA_44_SIGNATURE_BYTES]).unwrap(),
        ]
    })
}

fn signature() -> impl Strategy<Value = Signature> {
    (0..signature_pool().len()).prop_map(|i| signature_pool()[i].clone())
}

fn hash() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn view() -> impl Strategy<Value = View> {
    any::<u64>().prop_map(View)
}

fn vote_data() -> impl Strategy<Value = VoteData> {
    (any::<u64>(), view(), hash()).prop_map(|(e, view, block_id)| VoteData {
        epoch: Epoch(e),
        view,
        block_id,
    })
}

fn timeout_data() -> impl Strategy<Value = TimeoutData> {
    (any::<u64>(), view(), view()).prop_map(|(e, view, high_qc_view)| TimeoutData {
        epoch: Epoch(e),
        view,
        high_qc_view,
    })
}

/// A bitmap of 0..=1024 positions (small sizes favoured) with at most
/// `max_signers` marked, so that certificates stay a few signatures long.
fn bitmap(max_signers: usize) -> impl Strategy<Value = SignerBitmap> {
    prop_oneof![3 => 0u32..=16, 1 => 0u32..=1024]
        .prop_flat_map(move |n| (Just(n), vec(0..n.max(1), 0..=max_signers)))
        .prop_map(|(n, ids)| {
            let mut b = SignerBitmap::new(n as usize);
            for id in ids {
                // Out of range only when n == 0: nothing to mark then.
                let _ = b.set(ValidatorId(id));
            }
            b
        })
}

fn quorum_cert() -> impl Strategy<Value = QuorumCert> {
    (vote_data(), bitmap(4)).prop_flat_map(|(data, signers)| {
        let n = signers.count();
        vec(signature(), n).prop_map(move |signatures| QuorumCert {
            data,
            signers: signers.clone(),
            signatures,
        })
    })
}

fn payload() -> impl Strategy<Value = Payload> {
    vec(vec(any::<u8>(), 0..48), 0..6).prop_map(Payload::Transactions)
}

fn header() -> impl Strategy<Value = BlockHeader> {
    (
        (any::<u64>(), view(), any::<u64>(), hash()),
        (view(), any::<u32>(), hash(), hash()),
        (any::<u64>(), hash()),
    )
        .prop_map(
            |(
                (e, view, h, parent_id),
                (justify_view, p, payload_digest, batch_commitment),
                (exec_height, exec_state_root),
            )| {
                BlockHeader {
                    epoch: Epoch(e),
                    view,
                    height: Height(h),
                    parent_id,
                    justify_view,
                    proposer: ValidatorId(p),
                    payload_digest,
                    batch_commitment,
                    exec_height: Height(exec_height),
                    exec_state_root,
                }
            },
        )
}

/// Blocks need not be consistent (digest, justify view): the codec does not
/// care, validation does.
fn block() -> impl Strategy<Value = Block> {
    (header(), quorum_cert(), payload()).prop_map(|(h, qc, p)| Block::from_parts(h, qc, p))
}

fn timeout_cert() -> impl Strategy<Value = TimeoutCert> {
    (any::<u64>(), view(), bitmap(4)).prop_flat_map(|(e, view, signers)| {
        let n = signers.count();
        (vec(self::view(), n), vec(signature(), n)).prop_map(move |(high_qc_views, signatures)| {
            TimeoutCert {
                epoch: Epoch(e),
                view,
                signers: signers.clone(),
                high_qc_views,
                signatures,
            }
        })
    })
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (block(), option::of(timeout_cert()), signature()).prop_map(|(block, tc, signature)| Proposal {
        block,
        tc,
        signature,
    })
}

fn vote() -> impl Strategy<Value = Vote> {
    (vote_data(), any::<u32>(), signature()).prop_map(|(data, v, signature)| Vote {
        data,
        voter: ValidatorId(v),
        signature,
    })
}

fn timeout_msg() -> impl Strategy<Value = TimeoutMsg> {
    (
        timeout_data(),
        quorum_cert(),
        option::of(vote()),
        any::<u32>(),
        signature(),
    )
        .prop_map(|(data, high_qc, vote, s, signature)| TimeoutMsg {
            data,
            high_qc,
            vote,
            sender: ValidatorId(s),
            signature,
        })
}

fn sync_request() -> impl Strategy<Value = SyncRequest> {
    (hash(), any::<u32>()).prop_map(|(block_id, max_blocks)| SyncRequest {
        block_id,
        max_blocks,
    })
}

fn sync_response() -> impl Strategy<Value = SyncResponse> {
    vec(block(), 0..4).prop_map(|blocks| SyncResponse { blocks })
}

fn consensus_msg() -> impl Strategy<Value = ConsensusMsg> {
    prop_oneof![
        proposal().prop_map(ConsensusMsg::Proposal),
        vote().prop_map(ConsensusMsg::Vote),
        timeout_msg().prop_map(ConsensusMsg::Timeout),
        timeout_cert().prop_map(ConsensusMsg::TimeoutCert),
        sync_request().prop_map(ConsensusMsg::SyncRequest),
        sync_response().prop_map(ConsensusMsg::SyncResponse),
    ]
}

fn safety_state() -> impl Strategy<Value = SafetyState> {
    (
        view(),
        option::of((timeout_data(), quorum_cert())),
        view(),
        quorum_cert(),
        quorum_cert(),
    )
        .prop_map(
            |(last_voted_view, timeout, last_proposed_view, locked_qc, high_qc)| SafetyState {
                last_voted_view,
                last_timeout: timeout.map(|(data, high_qc)| TimeoutRecord { data, high_qc }),
                last_proposed_view,
                locked_qc,
                high_qc,
            },
        )
}

// ------------------------------------------------------------------ helpers

/// encode → decode gives the value back, consumes every byte, and
/// re-encoding is byte-identical. Returns the encoding.
fn assert_round_trip<T: Encode + Decode + PartialEq + Debug>(
    value: &T,
) -> Result<Vec<u8>, TestCaseError> {
    let bytes = value.to_bytes();
    let limits = CodecLimits::default();
    let mut r = Reader::new(&bytes, &limits);
    let decoded = T::decode_from(&mut r);
    prop_assert_eq!(decoded.as_ref(), Ok(value));
    prop_assert_eq!(r.remaining(), 0, "decoder left bytes unread");
    let again = T::from_bytes(&bytes);
    prop_assert_eq!(again.as_ref(), Ok(value));
    prop_assert_eq!(decoded.map(|d| d.to_bytes()), Ok(bytes.clone()));
    Ok(bytes)
}

/// A strict prefix fails, one extra byte fails with `TrailingBytes`.
fn assert_rejects_truncation_and_extension<T: Decode + Debug>(
    bytes: &[u8],
    cut: &Index,
    extra: u8,
) -> Result<(), TestCaseError> {
    prop_assert!(!bytes.is_empty());
    let short = &bytes[..bytes.len() - 1];
    prop_assert!(T::from_bytes(short).is_err(), "last byte dropped");
    let at = cut.index(bytes.len());
    prop_assert!(T::from_bytes(&bytes[..at]).is_err(), "prefix of {at} bytes");
    let mut long = bytes.to_vec();
    long.push(extra);
    prop_assert_eq!(
        T::from_bytes(&long).err(),
        Some(DecodeError::TrailingBytes { count: 1 })
    );
    Ok(())
}

/// Whatever decodes must re-encode to exactly the input.
fn assert_canonical_if_decodes<T: Encode + Decode + Debug>(
    bytes: &[u8],
    decoded: Result<T, DecodeError>,
) -> Result<(), TestCaseError> {
    if let Ok(value) = decoded {
        prop_assert_eq!(value.to_bytes(), bytes.to_vec(), "{:?}", value);
    }
    Ok(())
}

fn mutate(bytes: &mut Vec<u8>, edits: &[(Index, u8, u8)]) {
    for (at, byte, op) in edits {
        if bytes.is_empty() {
            bytes.push(*byte);
            continue;
        }
        let i = at.index(bytes.len());
        match op % 4 {
            0 | 1 => bytes[i] = *byte,
            2 => bytes.insert(i, *byte),
            _ => {
                bytes.remove(i);
            }
        }
    }
}

// --------------------------------------------------------------- round trips

proptest! {
    #![proptest_config(config())]

    #[test]
    fn vote_data_round_trips(v in vote_data()) {
        let bytes = assert_round_trip(&v)?;
        prop_assert_eq!(bytes.len(), 48);
    }

    #[test]
    fn timeout_data_round_trips(v in timeout_data()) {
        let bytes = assert_round_trip(&v)?;
        prop_assert_eq!(bytes.len(), 24);
    }

    #[test]
    fn signer_bitmap_round_trips(b in bitmap(32)) {
        let bytes = assert_round_trip(&b)?;
        prop_assert_eq!(bytes.len(), 4 + b.len().div_ceil(8));
    }

    #[test]
    fn quorum_cert_round_trips(qc in quorum_cert(), cut: Index, extra: u8) {
        let bytes = assert_round_trip(&qc)?;
        assert_rejects_truncation_and_extension::<QuorumCert>(&bytes, &cut, extra)?;
    }

    #[test]
    fn payload_round_trips(p in payload(), cut: Index, extra: u8) {
        let bytes = assert_round_trip(&p)?;
        assert_rejects_truncation_and_extension::<Payload>(&bytes, &cut, extra)?;
    }

    #[test]
    fn block_header_round_trips(h in header(), cut: Index, extra: u8) {
        let bytes = assert_round_trip(&h)?;
        prop_assert_eq!(bytes.len(), 172);
        assert_rejects_truncation_and_extension::<BlockHeader>(&bytes, &cut, extra)?;
    }

    #[test]
    fn block_round_trips(b in block(), cut: Index, extra: u8) {
        let bytes = assert_round_trip(&b)?;
        assert_rejects_truncation_and_extension::<Block>(&bytes, &cut, extra)?;
        // The id is not on the wire: it is recomputed from the header.
        prop_assert_eq!(Block::from_bytes(&bytes).map(|d| d.id()), Ok(b.header().id()));
    }

    #[test]
    fn proposal_round_trips(p in proposal(), cut: Index, extra: u8) {
        let bytes = assert_round_trip(&p)?;
        assert_rejects_truncation_and_extension::<Proposal>(&bytes, &cut, extra)?;
    }

    #[test]
    fn vote_round_trips(v in vote(), cut: Index, extra: u8) {
        let bytes = assert_round_trip(&v)?;
        prop_assert_eq!(bytes.len(), 48 + 4 + ML_DSA_44_SIGNATURE_BYTES);
        assert_rejects_truncation_and_extension::<Vote>(&bytes, &cut, extra)?;
    }

    #[test]
    fn timeout_msg_round_trips(t in timeout_msg(), cut: Index, extra: u8) {
        let bytes = assert_round_trip(&t)?;
        assert_rejects_truncation_and_extension::<TimeoutMsg>(&bytes, &cut, extra)?;
    }

    #[test]
    fn timeout_cert_round_trips(tc in timeout_cert(), cut: Index, extra: u8) {
        let bytes = assert_round_trip(&tc)?;
        assert_rejects_truncation_and_extension::<TimeoutCert>(&bytes, &cut, extra)?;
    }

    #[test]
    fn sync_request_round_trips(s in sync_request(), cut: Index, extra: u8) {
        let bytes = assert_round_trip(&s)?;
        prop_assert_eq!(bytes.len(), 36);
        assert_rejects_truncation_and_extension::<SyncRequest>(&bytes, &cut, extra)?;
    }

    #[test]
    fn sync_response_round_trips(s in sync_response(), cut: Index, extra: u8) {
        let bytes = assert_round_trip(&s)?;
        assert_rejects_truncation_and_extension::<SyncResponse>(&bytes, &cut, extra)?;
    }

    #[test]
    fn consensus_msg_round_trips(m in consensus_msg(), cut: Index, extra: u8) {
        let bytes = assert_round_trip(&m)?;
        let decoded = ConsensusMsg::decode_message(&bytes, &CodecLimits::default());
        prop_assert_eq!(decoded.as_ref(), Ok(&m));
        assert_rejects_truncation_and_extension::<ConsensusMsg>(&bytes, &cut, extra)?;
    }

    #[test]
    fn safety_state_round_trips(s in safety_state(), cut: Index, extra: u8) {
        let bytes = assert_round_trip(&s)?;
        assert_rejects_truncation_and_extension::<SafetyState>(&bytes, &cut, extra)?;
    }
}

// ------------------------------------------------------- hostile input

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic_the_message_decoder(bytes in vec(any::<u8>(), 0..4096)) {
        let decoded = ConsensusMsg::decode_message(&bytes, &CodecLimits::default());
        assert_canonical_if_decodes(&bytes, decoded)?;
    }

    #[test]
    fn random_bytes_after_a_valid_tag_never_panic(tag in 1u8..=6, body in vec(any::<u8>(), 0..4096)) {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&body);
        let decoded = ConsensusMsg::decode_message(&bytes, &CodecLimits::default());
        assert_canonical_if_decodes(&bytes, decoded)?;
    }

    #[test]
    fn random_bytes_never_panic_the_safety_state_decoder(bytes in vec(any::<u8>(), 0..4096)) {
        assert_canonical_if_decodes(&bytes, SafetyState::from_bytes(&bytes))?;
        let mut versioned = vec![1u8];
        versioned.extend_from_slice(&bytes);
        assert_canonical_if_decodes(&versioned, SafetyState::from_bytes(&versioned))?;
    }

    #[test]
    fn mutated_messages_never_panic_and_stay_canonical(
        m in consensus_msg(),
        edits in vec((any::<Index>(), any::<u8>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = m.to_bytes();
        mutate(&mut bytes, &edits);
        let decoded = ConsensusMsg::decode_message(&bytes, &CodecLimits::default());
        assert_canonical_if_decodes(&bytes, decoded)?;
    }

    #[test]
    fn mutated_safety_states_never_panic_and_stay_canonical(
        s in safety_state(),
        edits in vec((any::<Index>(), any::<u8>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = s.to_bytes();
        mutate(&mut bytes, &edits);
        assert_canonical_if_decodes(&bytes, SafetyState::from_bytes(&bytes))?;
    }

    #[test]
    fn bitmap_with_padding_bits_is_rejected(
        bits in 1u32..=1024,
        body in vec(any::<u8>(), 128),
        pad in any::<u8>(),
    ) {
        prop_assume!(bits % 8 != 0);
        let n = (bits as usize).div_ceil(8);
        let mut bytes = bits.to_be_bytes().to_vec();
        bytes.extend_from_slice(&body[..n]);
        let used = bits % 8;
        let padding = pad >> used << used;
        prop_assume!(padding != 0);
        // Clean padding decodes; any padding bit set is rejected.
        bytes[4 + n - 1] &= (1u8 << used) - 1;
        prop_assert!(SignerBitmap::from_bytes(&bytes).is_ok());
        bytes[4 + n - 1] |= padding;
        prop_assert_eq!(
            SignerBitmap::from_bytes(&bytes),
            Err(DecodeError::NonCanonical { what: "signer bitmap padding" })
        );
    }

    #[test]
    fn qc_signature_count_must_equal_popcount(
        qc in quorum_cert(),
        extra in 1usize..3,
        remove in any::<bool>(),
    ) {
        let mut bad = qc;
        if remove && !bad.signatures.is_empty() {
            bad.signatures.pop();
        } else {
            bad.signatures.extend(std::iter::repeat_n(signature_pool()[0].clone(), extra));
        }
        prop_assert_eq!(
            QuorumCert::from_bytes(&bad.to_bytes()),
            Err(DecodeError::NonCanonical { what: "signature count differs from signer count" })
        );
        // Also when the certificate is nested in a message.
        let msg = ConsensusMsg::Timeout(TimeoutMsg {
            data: TimeoutData { epoch: Epoch(0), view: View(2), high_qc_view: View(1) },
            high_qc: bad,
            vote: None,
            sender: ValidatorId(0),
            signature: signature_pool()[1].clone(),
        });
        let nested = ConsensusMsg::from_bytes(&msg.to_bytes());
        prop_assert!(
            matches!(nested, Err(DecodeError::NonCanonical { .. })),
            "nested: {:?}",
            nested
        );
    }

    #[test]
    fn tc_counts_must_equal_popcount(tc in timeout_cert(), which in any::<bool>()) {
        let mut bad = tc;
        let what = if which {
            bad.high_qc_views.push(View(0));
            "high-QC view count differs from signer count"
        } else {
            bad.signatures.push(signature_pool()[2].clone());
            "signature count differs from signer count"
        };
        prop_assert_eq!(
            TimeoutCert::from_bytes(&bad.to_bytes()),
            Err(DecodeError::NonCanonical { what })
        );
    }
}

// ------------------------------------------------------ fixed edge cases

#[test]
fn sync_response_claiming_u32_max_blocks_is_rejected_before_allocation() {
    let bytes = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
    assert_eq!(
        SyncResponse::from_bytes(&bytes),
        Err(DecodeError::LengthTooLarge {
            what: "sync blocks",
            len: u64::from(u32::MAX),
            max: 64,
        })
    );
    let mut msg = vec![6u8];
    msg.extend_from_slice(&bytes);
    assert!(matches!(
        ConsensusMsg::decode_message(&msg, &CodecLimits::default()),
        Err(DecodeError::LengthTooLarge {
            what: "sync blocks",
            ..
        })
    ));
    // With the configured bound lifted, the count is still checked against
    // the bytes that are actually there: allocating u32::MAX blocks would
    // abort the test process instead of returning.
    let open = CodecLimits {
        max_sync_blocks: u32::MAX,
        ..CodecLimits::default()
    };
    assert!(matches!(
        SyncResponse::from_bytes_with(&bytes, &open),
        Err(DecodeError::LengthTooLarge {
            what: "sync blocks",
            max: 0,
            ..
        })
    ));
}

#[test]
fn every_length_prefix_is_bounded_by_its_limit() {
    let limits = CodecLimits::default();
    // Payload: more transactions than allowed.
    let mut p = vec![0u8];
    p.extend_from_slice(&(limits.max_txs_per_block + 1).to_be_bytes());
    assert!(matches!(
        Payload::from_bytes(&p),
        Err(DecodeError::LengthTooLarge { what: "block transactions", len, max })
            if len == u64::from(limits.max_txs_per_block) + 1
                && max == u64::from(limits.max_txs_per_block)
    ));
    // Payload: one transaction longer than allowed.
    let mut p = vec![0u8, 0, 0, 0, 1];
    p.extend_from_slice(&(limits.max_tx_bytes + 1).to_be_bytes());
    assert!(matches!(
        Payload::from_bytes(&p),
        Err(DecodeError::LengthTooLarge {
            what: "transaction",
            ..
        })
    ));
    // Bitmap wider than the largest validator set.
    let b = (limits.max_validators + 1).to_be_bytes();
    assert_eq!(
        SignerBitmap::from_bytes(&b),
        Err(DecodeError::LengthTooLarge {
            what: "signer bitmap",
            len: u64::from(limits.max_validators) + 1,
            max: u64::from(limits.max_validators),
        })
    );
    // QC claiming more signatures than validators.
    let mut qc = QuorumCert::genesis(Hash32::ZERO).to_bytes();
    let n = qc.len();
    qc[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        QuorumCert::from_bytes(&qc),
        Err(DecodeError::LengthTooLarge {
            what: "certificate signatures",
            ..
        })
    ));
    // A message longer than max_message_bytes is refused before decoding.
    let small = CodecLimits {
        max_message_bytes: 8,
        ..CodecLimits::default()
    };
    let req = ConsensusMsg::SyncRequest(SyncRequest {
        block_id: Hash32::ZERO,
        max_blocks: 1,
    })
    .to_bytes();
    assert_eq!(
        ConsensusMsg::decode_message(&req, &small),
        Err(DecodeError::LengthTooLarge {
            what: "message",
            len: 37,
            max: 8,
        })
    );
}

#[test]
fn unknown_tags_are_rejected() {
    let req = ConsensusMsg::SyncRequest(SyncRequest {
        block_id: Hash32::ZERO,
        max_blocks: 1,
    })
    .to_bytes();
    for tag in (0u8..=255).filter(|t| !(1..=11).contains(t)) {
        let mut bytes = req.clone();
        bytes[0] = tag;
        assert_eq!(
            ConsensusMsg::from_bytes(&bytes),
            Err(DecodeError::InvalidTag {
                what: "consensus message",
                tag
            })
        );
    }
    let genesis_qc = QuorumCert::genesis(Hash32::ZERO);
    let mut state = SafetyState::genesis(genesis_qc).to_bytes();
    state[0] = 2;
    assert_eq!(
        SafetyState::from_bytes(&state),
        Err(DecodeError::InvalidTag {
            what: "safety state version",
            tag: 2
        })
    );
    // Option tag of `last_timeout` (offset 9) must be 0 or 1.
    state[0] = 1;
    state[9] = 2;
    assert_eq!(
        SafetyState::from_bytes(&state),
        Err(DecodeError::InvalidTag {
            what: "option",
            tag: 2
        })
    );
    // Tags 0 (inline transactions) and 1 (certified batches) are defined.
    assert_eq!(
        Payload::from_bytes(&[1, 0, 0, 0, 0]),
        Ok(Payload::Batches(Vec::new()))
    );
    assert_eq!(
        Payload::from_bytes(&[2, 0, 0, 0, 0]),
        Err(DecodeError::InvalidTag {
            what: "payload",
            tag: 2
        })
    );
}
