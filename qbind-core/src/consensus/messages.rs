//! Consensus objects and messages with their canonical encodings
//! (layouts in `docs/wire-format.md`, frozen by `tests/golden.rs`).

pub use super::sync_messages::{SyncRangeRequest, SyncRequest, SyncResponse};
use crate::codec::{
    CodecLimits, Decode, DecodeError, Encode, Reader, decode_seq, encode_bytes, encode_seq,
};
use crate::crypto::{ML_DSA_44_SIGNATURE_BYTES, Signature};
use crate::dag::{BatchAck, BatchCertificate, SignedBatch};
pub use crate::quorum::SignerBitmap;
use crate::types::{ChainId, Epoch, Hash32, Height, ValidatorId, View};

/// What a vote signs: the block it certifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VoteData {
    /// Epoch of the block.
    pub epoch: Epoch,
    /// View of the block.
    pub view: View,
    /// Id of the block.
    pub block_id: Hash32,
}

impl Encode for VoteData {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.epoch.encode_to(out);
        self.view.encode_to(out);
        self.block_id.encode_to(out);
    }
}

impl Decode for VoteData {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(VoteData {
            epoch: Epoch::decode_from(r)?,
            view: View::decode_from(r)?,
            block_id: Hash32::decode_from(r)?,
        })
    }
}

/// A quorum certificate: signatures of more than two thirds of the stake of
/// `data.epoch`'s validator set on `data`. One signature per signer, in
/// ascending signer order (ML-DSA has no aggregation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuorumCert {
    /// The certified block.
    pub data: VoteData,
    /// Who signed.
    pub signers: SignerBitmap,
    /// The signatures, one per marked signer, ascending.
    pub signatures: Vec<Signature>,
}

impl QuorumCert {
    /// The view of the certified block.
    #[must_use]
    pub fn view(&self) -> View {
        self.data.view
    }

    /// The id of the certified block.
    #[must_use]
    pub fn block_id(&self) -> Hash32 {
        self.data.block_id
    }

    /// The certificate of the genesis block: no signers. It is accepted only
    /// when it equals the locally computed genesis certificate.
    #[must_use]
    pub fn genesis(genesis_id: Hash32) -> Self {
        QuorumCert {
            data: VoteData {
                epoch: Epoch(0),
                view: View(0),
                block_id: genesis_id,
            },
            signers: SignerBitmap::new(0),
            signatures: Vec::new(),
        }
    }
}

fn decode_signatures(
    r: &mut Reader<'_>,
    signers: &SignerBitmap,
) -> Result<Vec<Signature>, DecodeError> {
    let max = r.limits().max_validators;
    let sigs: Vec<Signature> =
        decode_seq(r, "certificate signatures", max, ML_DSA_44_SIGNATURE_BYTES)?;
    if sigs.len() != signers.count() {
        return Err(DecodeError::NonCanonical {
            what: "signature count differs from signer count",
        });
    }
    Ok(sigs)
}

impl Encode for QuorumCert {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.data.encode_to(out);
        self.signers.encode_to(out);
        encode_seq(&self.signatures, out);
    }
}

impl Decode for QuorumCert {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let data = VoteData::decode_from(r)?;
        let signers = SignerBitmap::decode_from(r)?;
        let signatures = decode_signatures(r, &signers)?;
        Ok(QuorumCert {
            data,
            signers,
            signatures,
        })
    }
}

/// A block's payload: a tag byte, then the body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Payload {
    /// Tag 0 — DevNet FIFO mode: an ordered list of opaque transactions.
    Transactions(Vec<Vec<u8>>),
    /// Tag 1 — DAG mode (TestNet Beta, MainNet): certificates of the batches
    /// the block orders, sorted by `(epoch, author, round)` without duplicates.
    /// The transactions are in the batches, fetched on miss.
    Batches(Vec<BatchCertificate>),
}

impl Payload {
    /// An empty payload.
    #[must_use]
    pub fn empty() -> Self {
        Payload::Transactions(Vec::new())
    }

    /// Whether the payload carries nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        match self {
            Payload::Transactions(txs) => txs.is_empty(),
            Payload::Batches(certs) => certs.is_empty(),
        }
    }

    /// Number of transactions carried inline (zero for DAG payloads).
    #[must_use]
    pub fn tx_count(&self) -> usize {
        match self {
            Payload::Transactions(txs) => txs.len(),
            Payload::Batches(_) => 0,
        }
    }

    /// The block-header commitment over the certified batches (zero for
    /// inline transactions).
    #[must_use]
    pub fn batch_commitment(&self) -> Hash32 {
        match self {
            Payload::Transactions(_) => Hash32::ZERO,
            Payload::Batches(certs) => crate::dag::batch_commitment(certs),
        }
    }

    /// The digest a block header binds (`payload_digest`). Inline
    /// transactions: SHA3-256 of [`PAYLOAD_TXS_DOMAIN`], their count (u32 BE)
    /// and each transaction's id ([`Hash32::of_transaction`]) in order — a
    /// validator already has those ids (pool, verified set, receipts), so a
    /// block's transactions are not hashed once more for its header.
    /// Batch certificates: SHA3-256 of the canonical encoding.
    #[must_use]
    pub fn digest(&self) -> Hash32 {
        match self {
            Payload::Transactions(txs) => Hash32::over_transaction_ids(PAYLOAD_TXS_DOMAIN, txs),
            Payload::Batches(_) => Hash32::digest(&self.to_bytes()),
        }
    }
}

/// Domain of an inline payload's digest ([`Payload::digest`]).
pub const PAYLOAD_TXS_DOMAIN: &[u8] = b"QBIND:PAYLOAD:TXS:v1";

impl Encode for Payload {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Transactions(txs) => {
                out.push(0);
                (txs.len() as u32).encode_to(out);
                for tx in txs {
                    encode_bytes(tx, out);
                }
            }
            Payload::Batches(certs) => {
                out.push(1);
                encode_seq(certs, out);
            }
        }
    }
}

impl Decode for Payload {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => {
                let limits = r.limits();
                let n = r.count("block transactions", limits.max_txs_per_block, 4)?;
                let mut txs = Vec::with_capacity(n);
                for _ in 0..n {
                    txs.push(r.bytes("transaction", limits.max_tx_bytes)?);
                }
                Ok(Payload::Transactions(txs))
            }
            1 => {
                let max = r.limits().max_batches_per_block;
                // A certificate is at least a BatchRef, a bitmap and a count.
                Ok(Payload::Batches(decode_seq(
                    r,
                    "block batches",
                    max,
                    52 + 4 + 4,
                )?))
            }
            tag => Err(DecodeError::InvalidTag {
                what: "payload",
                tag,
            }),
        }
    }
}

/// The header of a block; the block id is SHA3-256 of its encoding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockHeader {
    /// Epoch whose validators vote on this block.
    pub epoch: Epoch,
    /// View in which it was proposed.
    pub view: View,
    /// Height: parent's height + 1.
    pub height: Height,
    /// Id of the parent block.
    pub parent_id: Hash32,
    /// View of the QC the block carries (`justify`).
    pub justify_view: View,
    /// Who proposed it.
    pub proposer: ValidatorId,
    /// SHA3-256 of the payload's encoding.
    pub payload_digest: Hash32,
    /// Commitment over the certified batches the payload orders
    /// ([`crate::dag::batch_commitment`]); zero for inline transactions.
    pub batch_commitment: Hash32,
    /// The highest height the proposer had executed when it proposed
    /// (`Height(0)`: none, or an embedder without execution). Always below
    /// `height`.
    pub exec_height: Height,
    /// The proposer's state root after executing `exec_height` (zero when
    /// `exec_height` is 0). A validator that executed the same height with
    /// a different root does not vote for the block (DESIGN "State
    /// commitment": a diverged validator notices and stops voting).
    pub exec_state_root: Hash32,
}

impl Encode for BlockHeader {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.epoch.encode_to(out);
        self.view.encode_to(out);
        self.height.encode_to(out);
        self.parent_id.encode_to(out);
        self.justify_view.encode_to(out);
        self.proposer.encode_to(out);
        self.payload_digest.encode_to(out);
        self.batch_commitment.encode_to(out);
        self.exec_height.encode_to(out);
        self.exec_state_root.encode_to(out);
    }
}

impl Decode for BlockHeader {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BlockHeader {
            epoch: Epoch::decode_from(r)?,
            view: View::decode_from(r)?,
            height: Height::decode_from(r)?,
            parent_id: Hash32::decode_from(r)?,
            justify_view: View::decode_from(r)?,
            proposer: ValidatorId::decode_from(r)?,
            payload_digest: Hash32::decode_from(r)?,
            batch_commitment: Hash32::decode_from(r)?,
            exec_height: Height::decode_from(r)?,
            exec_state_root: Hash32::decode_from(r)?,
        })
    }
}

impl BlockHeader {
    /// The block id: SHA3-256 of the header's canonical encoding.
    #[must_use]
    pub fn id(&self) -> Hash32 {
        Hash32::digest(&self.to_bytes())
    }
}

/// A block: header, the QC it extends (`justify`) and the payload.
/// The id is computed once at construction and is not encoded. The payload
/// is shared between clones (a block is cloned into the tree, the store
/// queue and messages; its transactions are not copied each time).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Block {
    header: BlockHeader,
    justify: QuorumCert,
    payload: std::sync::Arc<Payload>,
    id: Hash32,
}

impl Block {
    /// Assemble a block, filling `payload_digest`, `batch_commitment` and
    /// `justify_view` from the arguments.
    #[must_use]
    pub fn new(mut header: BlockHeader, justify: QuorumCert, payload: Payload) -> Self {
        header.payload_digest = payload.digest();
        header.batch_commitment = payload.batch_commitment();
        header.justify_view = justify.view();
        Self::from_parts(header, justify, payload)
    }

    /// Assemble a block exactly as given (for decoding and for tests that
    /// build inconsistent blocks on purpose).
    #[must_use]
    pub fn from_parts(header: BlockHeader, justify: QuorumCert, payload: Payload) -> Self {
        let id = header.id();
        Block {
            header,
            justify,
            payload: std::sync::Arc::new(payload),
            id,
        }
    }

    /// About how many bytes this block holds in memory: its transactions
    /// (or batch certificates) and its certificate's signatures, plus a
    /// fixed allowance for the header and bitmaps (allocator overhead left
    /// out). What the committed window budgets
    /// ([`crate::consensus::ConsensusConfig::committed_window_bytes`]).
    #[must_use]
    pub fn held_bytes(&self) -> usize {
        /// Header, id, bitmaps and the vectors' own headers, rounded up.
        const FIXED: usize = 512;
        /// A batch certificate's reference and bitmap.
        const PER_CERTIFICATE: usize = 128;
        /// A transaction's vector header.
        const PER_TRANSACTION: usize = 24;
        let signatures = |n: usize| n.saturating_mul(ML_DSA_44_SIGNATURE_BYTES);
        let payload: usize = match self.payload.as_ref() {
            Payload::Transactions(txs) => txs.iter().map(|t| t.len() + PER_TRANSACTION).sum(),
            Payload::Batches(certs) => certs
                .iter()
                .map(|c| PER_CERTIFICATE + signatures(c.signatures.len()))
                .sum(),
        };
        FIXED + signatures(self.justify.signatures.len()) + payload
    }

    /// The genesis block of a chain: view 0, height 0, no payload, its parent
    /// a hash of the chain id so that chains never share a genesis.
    #[must_use]
    pub fn genesis(chain_id: ChainId) -> Self {
        let mut seed = b"QBIND:GENESIS:v1".to_vec();
        seed.extend_from_slice(&chain_id.0.to_be_bytes());
        let payload = Payload::empty();
        let header = BlockHeader {
            epoch: Epoch(0),
            view: View(0),
            height: Height(0),
            parent_id: Hash32::digest(&seed),
            justify_view: View(0),
            proposer: ValidatorId(0),
            payload_digest: payload.digest(),
            batch_commitment: Hash32::ZERO,
            exec_height: Height(0),
            exec_state_root: Hash32::ZERO,
        };
        let id = header.id();
        Block {
            justify: QuorumCert::genesis(id),
            header,
            payload: std::sync::Arc::new(payload),
            id,
        }
    }

    /// The block id.
    #[must_use]
    pub fn id(&self) -> Hash32 {
        self.id
    }

    /// The header.
    #[must_use]
    pub fn header(&self) -> &BlockHeader {
        &self.header
    }

    /// The QC this block extends.
    #[must_use]
    pub fn justify(&self) -> &QuorumCert {
        &self.justify
    }

    /// The payload.
    #[must_use]
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Shorthand for `header().view`.
    #[must_use]
    pub fn view(&self) -> View {
        self.header.view
    }

    /// Shorthand for `header().height`.
    #[must_use]
    pub fn height(&self) -> Height {
        self.header.height
    }

    /// Shorthand for `header().epoch`.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.header.epoch
    }

    /// Shorthand for `header().parent_id`.
    #[must_use]
    pub fn parent_id(&self) -> Hash32 {
        self.header.parent_id
    }
}

impl Encode for Block {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.header.encode_to(out);
        self.justify.encode_to(out);
        self.payload.encode_to(out);
    }
}

impl Decode for Block {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = BlockHeader::decode_from(r)?;
        let justify = QuorumCert::decode_from(r)?;
        let payload = Payload::decode_from(r)?;
        Ok(Block::from_parts(header, justify, payload))
    }
}

/// A signed block proposal. The signature is over the block id under the
/// PROPOSAL tag; `tc` proves the previous view timed out when the block does
/// not extend a QC of the previous view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The proposed block.
    pub block: Block,
    /// Timeout certificate of the previous view, if the leader entered by one.
    pub tc: Option<TimeoutCert>,
    /// Proposer's signature over the block id.
    pub signature: Signature,
}

impl Encode for Proposal {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.block.encode_to(out);
        self.tc.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for Proposal {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Proposal {
            block: Block::decode_from(r)?,
            tc: Option::<TimeoutCert>::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// A vote for a block, sent to the leader of the next view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// What is voted for.
    pub data: VoteData,
    /// The voter.
    pub voter: ValidatorId,
    /// Signature over `data` under the VOTE tag.
    pub signature: Signature,
}

impl Encode for Vote {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.data.encode_to(out);
        self.voter.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for Vote {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Vote {
            data: VoteData::decode_from(r)?,
            voter: ValidatorId::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// What a timeout signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeoutData {
    /// Epoch of the view.
    pub epoch: Epoch,
    /// The view that timed out.
    pub view: View,
    /// View of the sender's highest QC.
    pub high_qc_view: View,
}

impl Encode for TimeoutData {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.epoch.encode_to(out);
        self.view.encode_to(out);
        self.high_qc_view.encode_to(out);
    }
}

impl Decode for TimeoutData {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TimeoutData {
            epoch: Epoch::decode_from(r)?,
            view: View::decode_from(r)?,
            high_qc_view: View::decode_from(r)?,
        })
    }
}

/// A signed timeout, broadcast to all; it carries the sender's highest QC so
/// that the next leader extends the highest certified block, and the vote the
/// sender cast in the timed-out view (if any), so that the QC the silent next
/// leader should have formed can be formed by anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutMsg {
    /// The signed content; `data.high_qc_view == high_qc.view()`.
    pub data: TimeoutData,
    /// The sender's highest QC.
    pub high_qc: QuorumCert,
    /// The sender's vote in `data.view`, if it voted there.
    pub vote: Option<Vote>,
    /// The sender.
    pub sender: ValidatorId,
    /// Signature over `data` under the TIMEOUT tag.
    pub signature: Signature,
}

impl Encode for TimeoutMsg {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.data.encode_to(out);
        self.high_qc.encode_to(out);
        self.vote.encode_to(out);
        self.sender.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for TimeoutMsg {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TimeoutMsg {
            data: TimeoutData::decode_from(r)?,
            high_qc: QuorumCert::decode_from(r)?,
            vote: Option::<Vote>::decode_from(r)?,
            sender: ValidatorId::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// A timeout certificate: timeouts for one view from more than two thirds of
/// the stake. Each signer signed `(epoch, view, high_qc_views[i])`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutCert {
    /// Epoch of the view.
    pub epoch: Epoch,
    /// The view that timed out.
    pub view: View,
    /// Who signed.
    pub signers: SignerBitmap,
    /// Each signer's high-QC view, in signer order.
    pub high_qc_views: Vec<View>,
    /// Each signer's signature, in signer order.
    pub signatures: Vec<Signature>,
}

impl TimeoutCert {
    /// The highest QC view any signer reported.
    #[must_use]
    pub fn max_high_qc_view(&self) -> View {
        self.high_qc_views.iter().copied().max().unwrap_or_default()
    }
}

impl Encode for TimeoutCert {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.epoch.encode_to(out);
        self.view.encode_to(out);
        self.signers.encode_to(out);
        encode_seq(&self.high_qc_views, out);
        encode_seq(&self.signatures, out);
    }
}

impl Decode for TimeoutCert {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let epoch = Epoch::decode_from(r)?;
        let view = View::decode_from(r)?;
        let signers = SignerBitmap::decode_from(r)?;
        let max = r.limits().max_validators;
        let high_qc_views: Vec<View> = decode_seq(r, "timeout high-QC views", max, 8)?;
        if high_qc_views.len() != signers.count() {
            return Err(DecodeError::NonCanonical {
                what: "high-QC view count differs from signer count",
            });
        }
        let signatures = decode_signatures(r, &signers)?;
        Ok(TimeoutCert {
            epoch,
            view,
            signers,
            high_qc_views,
            signatures,
        })
    }
}

/// Every consensus message on the wire: a tag byte, then the body.
// A proposal holds its block header inline (172 bytes); the bulk of every
// variant (signatures, payloads) is on the heap already, and a message is
// moved once from the decoder to the machine, so boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsensusMsg {
    /// Tag 1.
    Proposal(Proposal),
    /// Tag 2.
    Vote(Vote),
    /// Tag 3.
    Timeout(TimeoutMsg),
    /// Tag 4: a TC forwarded to the next leader.
    TimeoutCert(TimeoutCert),
    /// Tag 5.
    SyncRequest(SyncRequest),
    /// Tag 6.
    SyncResponse(SyncResponse),
    /// Tag 7: a signed batch from its author (or re-sent on a fetch).
    Batch(SignedBatch),
    /// Tag 8: an acknowledgement, sent to the batch's author.
    BatchAck(BatchAck),
    /// Tag 9: a batch certificate, broadcast by the author.
    BatchCert(BatchCertificate),
    /// Tag 10: a request for a batch's data by digest.
    BatchFetch(Hash32),
    /// Tag 11: a request for committed blocks by height.
    SyncRange(SyncRangeRequest),
}

impl ConsensusMsg {
    /// A short name for logs and metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            ConsensusMsg::Proposal(_) => "proposal",
            ConsensusMsg::Vote(_) => "vote",
            ConsensusMsg::Timeout(_) => "timeout",
            ConsensusMsg::TimeoutCert(_) => "timeout_cert",
            ConsensusMsg::SyncRequest(_) => "sync_request",
            ConsensusMsg::SyncResponse(_) => "sync_response",
            ConsensusMsg::Batch(_) => "batch",
            ConsensusMsg::BatchAck(_) => "batch_ack",
            ConsensusMsg::BatchCert(_) => "batch_cert",
            ConsensusMsg::BatchFetch(_) => "batch_fetch",
            ConsensusMsg::SyncRange(_) => "sync_range",
        }
    }

    /// Decode with the given limits, also enforcing `max_message_bytes`.
    pub fn decode_message(bytes: &[u8], limits: &CodecLimits) -> Result<Self, DecodeError> {
        if bytes.len() as u64 > u64::from(limits.max_message_bytes) {
            return Err(DecodeError::LengthTooLarge {
                what: "message",
                len: bytes.len() as u64,
                max: u64::from(limits.max_message_bytes),
            });
        }
        Self::from_bytes_with(bytes, limits)
    }
}

impl Encode for ConsensusMsg {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            ConsensusMsg::Proposal(m) => {
                out.push(1);
                m.encode_to(out);
            }
            ConsensusMsg::Vote(m) => {
                out.push(2);
                m.encode_to(out);
            }
            ConsensusMsg::Timeout(m) => {
                out.push(3);
                m.encode_to(out);
            }
            ConsensusMsg::TimeoutCert(m) => {
                out.push(4);
                m.encode_to(out);
            }
            ConsensusMsg::SyncRequest(m) => {
                out.push(5);
                m.encode_to(out);
            }
            ConsensusMsg::SyncResponse(m) => {
                out.push(6);
                m.encode_to(out);
            }
            ConsensusMsg::Batch(m) => {
                out.push(7);
                m.encode_to(out);
            }
            ConsensusMsg::BatchAck(m) => {
                out.push(8);
                m.encode_to(out);
            }
            ConsensusMsg::BatchCert(m) => {
                out.push(9);
                m.encode_to(out);
            }
            ConsensusMsg::BatchFetch(m) => {
                out.push(10);
                m.encode_to(out);
            }
            ConsensusMsg::SyncRange(m) => {
                out.push(11);
                m.encode_to(out);
            }
        }
    }
}

impl Decode for ConsensusMsg {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            1 => ConsensusMsg::Proposal(Proposal::decode_from(r)?),
            2 => ConsensusMsg::Vote(Vote::decode_from(r)?),
            3 => ConsensusMsg::Timeout(TimeoutMsg::decode_from(r)?),
            4 => ConsensusMsg::TimeoutCert(TimeoutCert::decode_from(r)?),
            5 => ConsensusMsg::SyncRequest(SyncRequest::decode_from(r)?),
            6 => ConsensusMsg::SyncResponse(SyncResponse::decode_from(r)?),
            7 => ConsensusMsg::Batch(SignedBatch::decode_from(r)?),
            8 => ConsensusMsg::BatchAck(BatchAck::decode_from(r)?),
            9 => ConsensusMsg::BatchCert(BatchCertificate::decode_from(r)?),
            10 => ConsensusMsg::BatchFetch(Hash32::decode_from(r)?),
            11 => ConsensusMsg::SyncRange(SyncRangeRequest::decode_from(r)?),
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "consensus message",
                    tag,
                });
            }
        })
    }
}
