//! Messages between the remote-signer client and the `qbind-remote-signer`
//! daemon, in the canonical codec of `qbind-core` (big-endian integers,
//! `u32` length prefixes bounded before allocation, no trailing bytes).
//! Byte layouts are in `docs/signer.md`.

use qbind_core::codec::{Decode, DecodeError, Encode, Reader, encode_bytes};
use qbind_core::crypto::{PublicKey, Signature};
use qbind_core::signing::SignKind;
use qbind_core::types::{ValidatorId, View};

/// Protocol version spoken by this code (2: `Sign` carries the digest
/// preimage, refusal code 7).
pub const PROTOCOL_VERSION: u16 = 2;
/// Largest message to sign (a block proposal is bounded well below this).
pub const MAX_SIGN_MESSAGE_BYTES: u32 = 8 * 1024 * 1024;
/// Largest digest preimage of a `Sign` (a proposal's header is 228 bytes; a
/// DAG batch is at most `max_batch_bytes` = 4 MiB of transactions plus 4
/// bytes per transaction and its 20-byte header).
pub const MAX_DIGEST_PREIMAGE_BYTES: u32 = 7 * 1024 * 1024;
/// Largest error detail string.
pub const MAX_DETAIL_BYTES: u32 = 512;
/// Largest frame either side accepts (below the KEMTLS channel's 16 MiB).
pub const MAX_FRAME_BYTES: usize =
    MAX_SIGN_MESSAGE_BYTES as usize + MAX_DIGEST_PREIMAGE_BYTES as usize + 64;

const T_HELLO: u8 = 0x01;
const T_SIGN: u8 = 0x02;
const T_HELLO_ACK: u8 = 0x81;
const T_SIGNED: u8 = 0x82;
const T_REFUSED: u8 = 0x83;

/// Wire tag of a [`SignKind`].
#[must_use]
pub fn kind_tag(kind: SignKind) -> u8 {
    match kind {
        SignKind::Tx => 0,
        SignKind::Batch => 1,
        SignKind::BatchAck => 2,
        SignKind::Vote => 3,
        SignKind::Proposal => 4,
        SignKind::Timeout => 5,
        SignKind::NewView => 6,
        SignKind::KeyRotation => 7,
    }
}

fn kind_from_tag(tag: u8) -> Result<SignKind, DecodeError> {
    SignKind::ALL
        .into_iter()
        .find(|k| kind_tag(*k) == tag)
        .ok_or(DecodeError::InvalidTag {
            what: "sign kind",
            tag,
        })
}

/// Why the daemon refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalCode {
    /// Double-sign protection.
    Conflict = 1,
    /// Over `rate_limit_rps`.
    RateLimited = 2,
    /// The client is not the node this daemon serves.
    Unauthorized = 3,
    /// The backend (HSM, keystore) failed.
    BackendUnavailable = 4,
    /// Malformed or out-of-order request.
    BadRequest = 5,
    /// The request names another validator.
    WrongValidator = 6,
    /// The daemon's configuration does not allow signing this kind.
    KindNotAllowed = 7,
}

impl RefusalCode {
    const ALL: [RefusalCode; 7] = [
        RefusalCode::Conflict,
        RefusalCode::RateLimited,
        RefusalCode::Unauthorized,
        RefusalCode::BackendUnavailable,
        RefusalCode::BadRequest,
        RefusalCode::WrongValidator,
        RefusalCode::KindNotAllowed,
    ];

    fn from_u8(b: u8) -> Result<Self, DecodeError> {
        Self::ALL
            .into_iter()
            .find(|c| *c as u8 == b)
            .ok_or(DecodeError::InvalidTag {
                what: "refusal code",
                tag: b,
            })
    }
}

/// Client to daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// First message: which validator the client signs for.
    Hello {
        /// [`PROTOCOL_VERSION`].
        version: u16,
        /// The validator.
        validator_id: ValidatorId,
    },
    /// Sign one request.
    Sign {
        /// Echoed in the answer.
        request_id: u64,
        /// Object kind (domain tag).
        kind: SignKind,
        /// View, for double-sign protection.
        view: Option<View>,
        /// Canonical bytes of the object.
        message: Vec<u8>,
        /// What `message` is the digest of, for a proposal (block header)
        /// or a batch (the batch); empty otherwise. At most
        /// [`MAX_DIGEST_PREIMAGE_BYTES`].
        digest_preimage: Vec<u8>,
    },
}

/// Daemon to client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonMessage {
    /// Answer to `Hello`: the key the daemon signs with.
    HelloAck {
        /// The validator.
        validator_id: ValidatorId,
        /// Its public key.
        public_key: PublicKey,
    },
    /// A signature.
    Signed {
        /// The request answered.
        request_id: u64,
        /// The signature over the domain-separated preimage.
        signature: Signature,
    },
    /// A refusal (request_id 0 when not tied to a request).
    Refused {
        /// The request answered.
        request_id: u64,
        /// Why.
        code: RefusalCode,
        /// Human-readable detail (UTF-8, at most 512 bytes).
        detail: String,
    },
}

impl Encode for ClientMessage {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            ClientMessage::Hello {
                version,
                validator_id,
            } => {
                out.push(T_HELLO);
                out.extend_from_slice(&version.to_be_bytes());
                validator_id.encode_to(out);
            }
            ClientMessage::Sign {
                request_id,
                kind,
                view,
                message,
                digest_preimage,
            } => {
                out.push(T_SIGN);
                request_id.encode_to(out);
                out.push(kind_tag(*kind));
                view.encode_to(out);
                encode_bytes(message, out);
                encode_bytes(digest_preimage, out);
            }
        }
    }
}

impl Decode for ClientMessage {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            T_HELLO => Ok(ClientMessage::Hello {
                version: u16::from_be_bytes(r.array()?),
                validator_id: ValidatorId::decode_from(r)?,
            }),
            T_SIGN => Ok(ClientMessage::Sign {
                request_id: u64::decode_from(r)?,
                kind: kind_from_tag(r.u8()?)?,
                view: Option::<View>::decode_from(r)?,
                message: r.bytes("sign message", MAX_SIGN_MESSAGE_BYTES)?,
                digest_preimage: r.bytes("digest preimage", MAX_DIGEST_PREIMAGE_BYTES)?,
            }),
            tag => Err(DecodeError::InvalidTag {
                what: "client message",
                tag,
            }),
        }
    }
}

impl Encode for DaemonMessage {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            DaemonMessage::HelloAck {
                validator_id,
                public_key,
            } => {
                out.push(T_HELLO_ACK);
                validator_id.encode_to(out);
                public_key.encode_to(out);
            }
            DaemonMessage::Signed {
                request_id,
                signature,
            } => {
                out.push(T_SIGNED);
                request_id.encode_to(out);
                signature.encode_to(out);
            }
            DaemonMessage::Refused {
                request_id,
                code,
                detail,
            } => {
                out.push(T_REFUSED);
                request_id.encode_to(out);
                out.push(*code as u8);
                // Truncate on a char boundary so the encoding stays decodable.
                let mut end = detail.len().min(MAX_DETAIL_BYTES as usize);
                while !detail.is_char_boundary(end) {
                    end -= 1;
                }
                encode_bytes(&detail.as_bytes()[..end], out);
            }
        }
    }
}

impl Decode for DaemonMessage {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            T_HELLO_ACK => Ok(DaemonMessage::HelloAck {
                validator_id: ValidatorId::decode_from(r)?,
                public_key: PublicKey::decode_from(r)?,
            }),
            T_SIGNED => Ok(DaemonMessage::Signed {
                request_id: u64::decode_from(r)?,
                signature: Signature::decode_from(r)?,
            }),
            T_REFUSED => {
                let request_id = u64::decode_from(r)?;
                let code = RefusalCode::from_u8(r.u8()?)?;
                let bytes = r.bytes("refusal detail", MAX_DETAIL_BYTES)?;
                let detail = String::from_utf8(bytes).map_err(|_| DecodeError::NonCanonical {
                    what: "refusal detail is not UTF-8",
                })?;
                Ok(DaemonMessage::Refused {
                    request_id,
                    code,
                    detail,
                })
            }
            tag => Err(DecodeError::InvalidTag {
                what: "daemon message",
                tag,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qbind_core::crypto::KeyPair;

    #[test]
    fn golden_bytes() {
        let hello = ClientMessage::Hello {
            version: 1,
            validator_id: ValidatorId(42),
        };
        assert_eq!(hex::encode(hello.to_bytes()), "0100010000002a");
        let sign = ClientMessage::Sign {
            request_id: 7,
            kind: SignKind::Vote,
            view: Some(View(9)),
            message: b"ab".to_vec(),
            digest_preimage: Vec::new(),
        };
        assert_eq!(
            hex::encode(sign.to_bytes()),
            concat!(
                "02",
                "0000000000000007",
                "03",
                "01",
                "0000000000000009",
                "00000002",
                "6162",
                "00000000"
            )
        );
        let proposal = ClientMessage::Sign {
            request_id: 8,
            kind: SignKind::Proposal,
            view: Some(View(1)),
            message: vec![0xaa],
            digest_preimage: vec![0xbb, 0xcc],
        };
        assert_eq!(
            hex::encode(proposal.to_bytes()),
            concat!(
                "02",
                "0000000000000008",
                "04",
                "01",
                "0000000000000001",
                "00000001",
                "aa",
                "00000002",
                "bbcc"
            )
        );
        let refused_kind = DaemonMessage::Refused {
            request_id: 2,
            code: RefusalCode::KindNotAllowed,
            detail: String::new(),
        };
        assert_eq!(
            hex::encode(refused_kind.to_bytes()),
            concat!("83", "0000000000000002", "07", "00000000")
        );
        let refused = DaemonMessage::Refused {
            request_id: 1,
            code: RefusalCode::RateLimited,
            detail: "slow".into(),
        };
        assert_eq!(
            hex::encode(refused.to_bytes()),
            concat!("83", "0000000000000001", "02", "00000004", "736c6f77")
        );
    }

    #[test]
    fn round_trips_and_strictness() {
        let key = KeyPair::from_seed(&[1; 32]);
        let msgs = [
            DaemonMessage::HelloAck {
                validator_id: ValidatorId(3),
                public_key: key.public_key().clone(),
            },
            DaemonMessage::Signed {
                request_id: u64::MAX,
                signature: key.sign(b"x"),
            },
        ];
        for m in msgs {
            let b = m.to_bytes();
            assert_eq!(DaemonMessage::from_bytes(&b).unwrap(), m);
            let mut t = b.clone();
            t.push(0);
            assert!(DaemonMessage::from_bytes(&t).is_err());
            assert!(DaemonMessage::from_bytes(&b[..b.len() - 1]).is_err());
        }
        // A length prefix beyond the bound is refused before allocation.
        let mut huge = vec![T_SIGN];
        huge.extend_from_slice(&[0; 8]);
        huge.push(3);
        huge.push(0);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            ClientMessage::from_bytes(&huge),
            Err(DecodeError::LengthTooLarge { .. })
        ));
        // So is a preimage beyond its own bound.
        let mut big_preimage = vec![T_SIGN];
        big_preimage.extend_from_slice(&[0; 8]);
        big_preimage.push(4);
        big_preimage.push(0);
        big_preimage.extend_from_slice(&0u32.to_be_bytes());
        big_preimage.extend_from_slice(&(MAX_DIGEST_PREIMAGE_BYTES + 1).to_be_bytes());
        assert!(matches!(
            ClientMessage::from_bytes(&big_preimage),
            Err(DecodeError::LengthTooLarge { .. })
        ));
        // The frame bound leaves room for both inside a KEMTLS message.
        const { assert!(MAX_FRAME_BYTES < 16 << 20) };
        assert!(ClientMessage::from_bytes(&[0x09]).is_err());
        // Long details are cut on a char boundary.
        let long = DaemonMessage::Refused {
            request_id: 0,
            code: RefusalCode::BadRequest,
            detail: "é".repeat(400),
        };
        let d = DaemonMessage::from_bytes(&long.to_bytes()).unwrap();
        let DaemonMessage::Refused { detail, .. } = d else {
            panic!("wrong variant")
        };
        assert_eq!(detail.len(), 512);
    }
}
