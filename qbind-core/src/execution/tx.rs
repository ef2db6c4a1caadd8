//! Transfer transactions and their canonical encoding (spec §2.1; DESIGN
//! "`TransferPayloadV1` is 72 bytes").
//!
//! A [`Transaction`] is `sender public key (1,312 B) ‖ nonce (u64 BE) ‖
//! payload length (u32 BE, 48 or 72) ‖ payload ‖ signature (2,420 B)`. The
//! signature is ML-DSA-44 over `signing_preimage(env, SignKind::Tx, m)` where
//! `m` is the encoding without the signature ([`Transaction::signing_bytes`]).
//! Signature checks are separate from execution ([`Transaction::verify`]):
//! a node verifies a block's signatures first (possibly in parallel), then
//! executes.

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::crypto::{CryptoError, KeyPair, PublicKey, Signature};
use crate::signing::{SignKind, sign_domain, signing_preimage};
use crate::types::{AccountId, NetworkEnvironment};

/// Size of a [`TransferPayloadV1`] on the wire.
pub const TRANSFER_PAYLOAD_V1_BYTES: usize = 72;
/// Size of a legacy [`TransferPayloadV0`] on the wire.
pub const TRANSFER_PAYLOAD_V0_BYTES: usize = 48;

/// The gas-aware transfer payload, exactly 72 bytes: recipient `[u8; 32]` @0,
/// amount u128 BE @32, gas_limit u64 BE @48, max_fee_per_gas u128 BE @56.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransferPayloadV1 {
    /// The account credited with `amount`.
    pub recipient: AccountId,
    /// Amount moved from sender to recipient.
    pub amount: u128,
    /// The most gas the sender allows this transaction to use.
    pub gas_limit: u64,
    /// The price per unit of gas the sender pays (the whole price: v0 has no
    /// separate base fee and tip).
    pub max_fee_per_gas: u128,
}

/// The legacy 48-byte payload: recipient `[u8; 32]` @0, amount u128 BE @32.
/// Accepted only by profiles that allow it (never MainNet, spec §2.6 item 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransferPayloadV0 {
    /// The account credited with `amount`.
    pub recipient: AccountId,
    /// Amount moved from sender to recipient.
    pub amount: u128,
}

/// A transfer payload of either version; the version is told by its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferPayload {
    /// The 48-byte legacy payload.
    V0(TransferPayloadV0),
    /// The 72-byte gas-aware payload.
    V1(TransferPayloadV1),
}

impl TransferPayload {
    /// The recipient.
    #[must_use]
    pub fn recipient(&self) -> AccountId {
        match self {
            TransferPayload::V0(p) => p.recipient,
            TransferPayload::V1(p) => p.recipient,
        }
    }

    /// The amount.
    #[must_use]
    pub fn amount(&self) -> u128 {
        match self {
            TransferPayload::V0(p) => p.amount,
            TransferPayload::V1(p) => p.amount,
        }
    }

    /// Size of the payload on the wire (48 or 72).
    #[must_use]
    pub fn wire_len(&self) -> usize {
        match self {
            TransferPayload::V0(_) => TRANSFER_PAYLOAD_V0_BYTES,
            TransferPayload::V1(_) => TRANSFER_PAYLOAD_V1_BYTES,
        }
    }

    /// The fixed-layout bytes of the payload (no length prefix).
    #[must_use]
    pub fn payload_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire_len());
        match self {
            TransferPayload::V0(p) => {
                out.extend_from_slice(&p.recipient.0);
                out.extend_from_slice(&p.amount.to_be_bytes());
            }
            TransferPayload::V1(p) => {
                out.extend_from_slice(&p.recipient.0);
                out.extend_from_slice(&p.amount.to_be_bytes());
                out.extend_from_slice(&p.gas_limit.to_be_bytes());
                out.extend_from_slice(&p.max_fee_per_gas.to_be_bytes());
            }
        }
        out
    }

    /// Parse the fixed-layout bytes of a payload: 72 bytes are V1, 48 bytes
    /// are V0, anything else is an error.
    pub fn from_payload_bytes(bytes: &[u8]) -> Result<TransferPayload, DecodeError> {
        let limits = crate::codec::CodecLimits::default();
        let mut r = Reader::new(bytes, &limits);
        let payload = match bytes.len() {
            TRANSFER_PAYLOAD_V1_BYTES => TransferPayload::V1(TransferPayloadV1 {
                recipient: AccountId(r.array()?),
                amount: r.u128()?,
                gas_limit: r.u64()?,
                max_fee_per_gas: r.u128()?,
            }),
            TRANSFER_PAYLOAD_V0_BYTES => TransferPayload::V0(TransferPayloadV0 {
                recipient: AccountId(r.array()?),
                amount: r.u128()?,
            }),
            len => {
                return Err(DecodeError::LengthTooLarge {
                    what: "transfer payload (must be 48 or 72 bytes)",
                    len: len as u64,
                    max: TRANSFER_PAYLOAD_V1_BYTES as u64,
                });
            }
        };
        r.finish()?;
        Ok(payload)
    }
}

impl Encode for TransferPayload {
    /// `u32` length (48 or 72) followed by the fixed-layout bytes.
    fn encode_to(&self, out: &mut Vec<u8>) {
        (self.wire_len() as u32).encode_to(out);
        out.extend_from_slice(&self.payload_bytes());
    }
}

impl Decode for TransferPayload {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.count("transfer payload", TRANSFER_PAYLOAD_V1_BYTES as u32, 1)?;
        TransferPayload::from_payload_bytes(r.take(len)?)
    }
}

/// A signed transfer. The sender's account id (SHA3-256 of the public key) is
/// computed once when the value is built or decoded, so execution never
/// rehashes the 1,312-byte key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    sender: PublicKey,
    sender_id: AccountId,
    nonce: u64,
    payload: TransferPayload,
    signature: Signature,
}

impl Transaction {
    /// Build and sign a transaction for network `env`.
    #[must_use]
    pub fn sign(
        key: &KeyPair,
        env: NetworkEnvironment,
        nonce: u64,
        payload: TransferPayload,
    ) -> Transaction {
        let message = unsigned_bytes(key.public_key(), nonce, &payload);
        let signature = sign_domain(key, env, SignKind::Tx, &message);
        Transaction::from_parts(key.public_key().clone(), nonce, payload, signature)
    }

    /// Assemble a transaction from its parts without checking the signature
    /// (decoders, tests, and callers that verify later with [`Self::verify`]).
    #[must_use]
    pub fn from_parts(
        sender: PublicKey,
        nonce: u64,
        payload: TransferPayload,
        signature: Signature,
    ) -> Transaction {
        let sender_id = AccountId::from_public_key(&sender);
        Transaction {
            sender,
            sender_id,
            nonce,
            payload,
            signature,
        }
    }

    /// The sender's public key.
    #[must_use]
    pub fn sender(&self) -> &PublicKey {
        &self.sender
    }

    /// The sender's account id.
    #[must_use]
    pub fn sender_id(&self) -> AccountId {
        self.sender_id
    }

    /// The sender's nonce this transaction consumes.
    #[must_use]
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// The payload.
    #[must_use]
    pub fn payload(&self) -> &TransferPayload {
        &self.payload
    }

    /// The signature.
    #[must_use]
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The signed message: the encoding without the signature.
    #[must_use]
    pub fn signing_bytes(&self) -> Vec<u8> {
        unsigned_bytes(&self.sender, self.nonce, &self.payload)
    }

    /// Check the signature under the TX domain tag of `env`.
    pub fn verify(&self, env: NetworkEnvironment) -> Result<(), CryptoError> {
        let preimage = signing_preimage(env, SignKind::Tx, &self.signing_bytes());
        crate::crypto::verify(&self.sender, &preimage, &self.signature)
    }
}

fn unsigned_bytes(sender: &PublicKey, nonce: u64, payload: &TransferPayload) -> Vec<u8> {
    let mut out = Vec::with_capacity(sender.as_bytes().len() + 8 + 4 + payload.wire_len());
    sender.encode_to(&mut out);
    nonce.encode_to(&mut out);
    payload.encode_to(&mut out);
    out
}

impl Encode for Transaction {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.sender.encode_to(out);
        self.nonce.encode_to(out);
        self.payload.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for Transaction {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let sender = PublicKey::decode_from(r)?;
        let nonce = r.u64()?;
        let payload = TransferPayload::decode_from(r)?;
        let signature = Signature::decode_from(r)?;
        Ok(Transaction::from_parts(sender, nonce, payload, signature))
    }
}

/// Verify every signature of a block, in order; returns the index of each
/// transaction whose signature fails. Callers with threads may instead call
/// [`Transaction::verify`] in parallel: the result does not depend on order.
#[must_use]
pub fn invalid_signatures(env: NetworkEnvironment, txs: &[Transaction]) -> Vec<usize> {
    txs.iter()
        .enumerate()
        .filter(|(_, tx)| tx.verify(env).is_err())
        .map(|(i, _)| i)
        .collect()
}

/// What the fee-priority pool orders a transfer by, read from its wire bytes
/// (a [`crate::fee_mempool::TxMetaFn`] for
/// [`crate::consensus::ConsensusConfig::tx_meta`]); `None` if the bytes are
/// not a canonical [`Transaction`]. The signature is *not* checked here:
/// execution drops transactions with bad signatures
/// ([`invalid_signatures`]), and a pool that admits them only wastes its
/// own space. A v0 payload offers no fee (its effective fee is zero).
/// A [system transaction](crate::system_tx) has its own
/// ([`crate::system_tx::SystemTx::meta`]).
#[must_use]
pub fn tx_meta(bytes: &[u8]) -> Option<crate::fee_mempool::TxMeta> {
    let Ok(tx) = Transaction::from_bytes(bytes) else {
        return crate::system_tx::decode(bytes).map(|s| s.meta());
    };
    let (max_fee_per_gas, effective_fee, gas_limit, v0_payload) = match tx.payload {
        TransferPayload::V1(p) => (
            p.max_fee_per_gas,
            p.max_fee_per_gas.saturating_mul(u128::from(p.gas_limit)),
            p.gas_limit,
            false,
        ),
        // Execution charges v0 by the gas schedule of its configuration;
        // the MainNet schedule stands in here (the only one configured).
        TransferPayload::V0(_) => (
            0,
            0,
            crate::execution::GasSchedule::MAINNET.transfer_gas(tx.payload.wire_len()),
            true,
        ),
    };
    Some(crate::fee_mempool::TxMeta {
        sender: tx.sender_id,
        nonce: tx.nonce,
        max_fee_per_gas,
        effective_fee,
        gas_limit,
        v0_payload,
        replace_rank: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_meta_reads_the_fee_fields_of_canonical_transfers_only() {
        let key = KeyPair::from_seed(&[3u8; 32]);
        let v1 = TransferPayload::V1(TransferPayloadV1 {
            recipient: AccountId([4u8; 32]),
            amount: 10,
            gas_limit: 40_000,
            max_fee_per_gas: 7,
        });
        let tx = Transaction::sign(&key, NetworkEnvironment::Devnet, 5, v1);
        let bytes = tx.to_bytes();
        let meta = tx_meta(&bytes).expect("a canonical transfer");
        assert_eq!(meta.sender, AccountId::from_public_key(key.public_key()));
        assert_eq!(meta.nonce, 5);
        assert_eq!(meta.max_fee_per_gas, 7);
        assert_eq!(meta.effective_fee, 280_000);
        assert!(!meta.v0_payload);
        let v0 = TransferPayload::V0(TransferPayloadV0 {
            recipient: AccountId([4u8; 32]),
            amount: 10,
        });
        let legacy = Transaction::sign(&key, NetworkEnvironment::Devnet, 6, v0).to_bytes();
        let meta = tx_meta(&legacy).expect("a legacy transfer");
        assert!(meta.v0_payload);
        assert_eq!(meta.effective_fee, 0);
        assert!(tx_meta(&bytes[..bytes.len() - 1]).is_none());
        let mut longer = bytes;
        longer.push(0);
        assert!(tx_meta(&longer).is_none());
        assert!(tx_meta(b"SIMTX").is_none());
    }

    #[test]
    fn payload_lengths_other_than_48_and_72_are_refused() {
        for len in [0usize, 47, 49, 71, 73, 200] {
            assert!(TransferPayload::from_payload_bytes(&vec![0u8; len]).is_err());
        }
        assert!(matches!(
            TransferPayload::from_payload_bytes(&[0u8; 72]),
            Ok(TransferPayload::V1(_))
        ));
        assert!(matches!(
            TransferPayload::from_payload_bytes(&[0u8; 48]),
            Ok(TransferPayload::V0(_))
        ));
    }

    #[test]
    fn signed_transactions_verify_only_on_their_network() {
        let key = KeyPair::from_seed(&[3u8; 32]);
        let payload = TransferPayload::V1(TransferPayloadV1 {
            recipient: AccountId([9u8; 32]),
            amount: 5,
            gas_limit: 50_000,
            max_fee_per_gas: 2,
        });
        let tx = Transaction::sign(&key, NetworkEnvironment::Devnet, 0, payload);
        assert!(tx.verify(NetworkEnvironment::Devnet).is_ok());
        assert!(tx.verify(NetworkEnvironment::Mainnet).is_err());
        let back = Transaction::from_bytes(&tx.to_bytes()).unwrap();
        assert_eq!(back, tx);
        assert_eq!(
            back.sender_id(),
            AccountId::from_public_key(key.public_key())
        );
    }
}
