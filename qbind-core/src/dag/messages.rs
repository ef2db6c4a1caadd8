//! DAG availability objects and their canonical encodings (spec §4.2–4.3):
//! a signed [`Batch`] of transactions, a signed [`BatchAck`] ("I store it"),
//! and a [`BatchCertificate`] — acks from more than two thirds of the stake,
//! proving the batch's data is available.

use crate::codec::{Decode, DecodeError, Encode, Reader, decode_seq, encode_bytes, encode_seq};
use crate::crypto::{ML_DSA_44_SIGNATURE_BYTES, Signature};
use crate::quorum::SignerBitmap;
use crate::types::{Epoch, Hash32, ValidatorId};

/// Domain of a batch's digest ([`Batch::digest`]).
pub const BATCH_DOMAIN: &[u8] = b"QBIND:BATCH:v1";

/// A batch of transactions made by one validator for one of its slots.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Batch {
    /// Epoch whose validators acknowledge it.
    pub epoch: Epoch,
    /// Its author.
    pub author: ValidatorId,
    /// The author's slot number (1, 2, 3, … per author and epoch).
    pub round: u64,
    /// Opaque transactions, in the author's order.
    pub txs: Vec<Vec<u8>>,
}

impl Batch {
    /// The batch's digest (what its author signs and its certificate
    /// names): SHA3-256 of [`BATCH_DOMAIN`], epoch (u64 BE), author (u32
    /// BE), round (u64 BE), the transaction count (u32 BE) and each
    /// transaction's id ([`Hash32::of_transaction`]) in order. A validator
    /// holds those ids already (pool, verified set), so the batch's
    /// transactions are not hashed again each time the digest is needed.
    #[must_use]
    pub fn digest(&self) -> Hash32 {
        let mut preamble = BATCH_DOMAIN.to_vec();
        self.epoch.encode_to(&mut preamble);
        self.author.encode_to(&mut preamble);
        self.round.encode_to(&mut preamble);
        Hash32::over_transaction_ids(&preamble, &self.txs)
    }

    /// The reference naming this batch (its slot and digest).
    #[must_use]
    pub fn reference(&self) -> BatchRef {
        BatchRef {
            epoch: self.epoch,
            author: self.author,
            round: self.round,
            digest: self.digest(),
        }
    }

    /// Total bytes of transaction data.
    #[must_use]
    pub fn tx_bytes(&self) -> usize {
        self.txs.iter().map(Vec::len).sum()
    }
}

impl Encode for Batch {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.epoch.encode_to(out);
        self.author.encode_to(out);
        self.round.encode_to(out);
        (self.txs.len() as u32).encode_to(out);
        for tx in &self.txs {
            encode_bytes(tx, out);
        }
    }
}

impl Decode for Batch {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let epoch = Epoch::decode_from(r)?;
        let author = ValidatorId::decode_from(r)?;
        let round = r.u64()?;
        let limits = r.limits();
        let n = r.count("batch transactions", limits.max_txs_per_block, 4)?;
        let mut txs = Vec::with_capacity(n);
        for _ in 0..n {
            txs.push(r.bytes("transaction", limits.max_tx_bytes)?);
        }
        Ok(Batch {
            epoch,
            author,
            round,
            txs,
        })
    }
}

/// A batch with its author's signature over the digest (BATCH tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedBatch {
    /// The batch.
    pub batch: Batch,
    /// The author's signature over `batch.digest()`.
    pub signature: Signature,
}

impl Encode for SignedBatch {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.batch.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for SignedBatch {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SignedBatch {
            batch: Batch::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// What an acknowledgement signs, and what a certificate certifies: the
/// batch slot and its digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchRef {
    /// Epoch of the batch.
    pub epoch: Epoch,
    /// Author of the batch.
    pub author: ValidatorId,
    /// The author's slot.
    pub round: u64,
    /// Digest of the batch.
    pub digest: Hash32,
}

impl Encode for BatchRef {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.epoch.encode_to(out);
        self.author.encode_to(out);
        self.round.encode_to(out);
        self.digest.encode_to(out);
    }
}

impl Decode for BatchRef {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BatchRef {
            epoch: Epoch::decode_from(r)?,
            author: ValidatorId::decode_from(r)?,
            round: r.u64()?,
            digest: Hash32::decode_from(r)?,
        })
    }
}

/// A validator's signed statement that it stored the batch (BATCH_ACK tag
/// over the [`BatchRef`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchAck {
    /// The acknowledged batch.
    pub batch: BatchRef,
    /// Who acknowledges.
    pub acker: ValidatorId,
    /// Signature over `batch`.
    pub signature: Signature,
}

impl Encode for BatchAck {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.batch.encode_to(out);
        self.acker.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for BatchAck {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BatchAck {
            batch: BatchRef::decode_from(r)?,
            acker: ValidatorId::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// Acks from more than two thirds of the stake of `batch.epoch`: the batch is
/// stored by at least one honest validator beyond its author.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BatchCertificate {
    /// The certified batch.
    pub batch: BatchRef,
    /// Who acknowledged.
    pub signers: SignerBitmap,
    /// One signature per signer, ascending.
    pub signatures: Vec<Signature>,
}

impl Encode for BatchCertificate {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.batch.encode_to(out);
        self.signers.encode_to(out);
        encode_seq(&self.signatures, out);
    }
}

impl Decode for BatchCertificate {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let batch = BatchRef::decode_from(r)?;
        let signers = SignerBitmap::decode_from(r)?;
        let max = r.limits().max_validators;
        let signatures: Vec<Signature> = decode_seq(
            r,
            "batch certificate signatures",
            max,
            ML_DSA_44_SIGNATURE_BYTES,
        )?;
        if signatures.len() != signers.count() {
            return Err(DecodeError::NonCanonical {
                what: "signature count differs from signer count",
            });
        }
        Ok(BatchCertificate {
            batch,
            signers,
            signatures,
        })
    }
}

/// The commitment a block header carries over its certified batches: SHA3-256
/// over the encodings of their [`BatchRef`]s in payload order.
#[must_use]
pub fn batch_commitment(certs: &[BatchCertificate]) -> Hash32 {
    let mut bytes = b"QBIND:BATCH_COMMITMENT:v1".to_vec();
    for c in certs {
        c.batch.encode_to(&mut bytes);
    }
    Hash32::digest(&bytes)
}
