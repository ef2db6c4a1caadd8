//! Byte-exact encodings of the five handshake messages (layouts in
//! `docs/kemtls.md`). Every decoder checks the type byte, reads fixed-size
//! fields only after a length check, bounds the one variable list, and
//! rejects trailing bytes, so each message has exactly one encoding.

use qbind_core::crypto::{
    ML_KEM_768_CIPHERTEXT_BYTES as CT_LEN, ML_KEM_768_ENCAPSULATION_KEY_BYTES as EK_LEN,
};

use crate::error::NetError;
use crate::record::CipherSuite;

/// Protocol version carried in every handshake and bound into the key schedule.
pub const PROTOCOL_VERSION: u16 = 1;
/// Most cipher suites an initiator may offer.
pub const MAX_OFFERED_SUITES: usize = 4;
/// Length of the encrypted initiator identity (32-byte fingerprint + 16-byte tag).
pub const ENC_IDENTITY_LEN: usize = 48;

/// Type byte of [`ClientHello`].
pub const TYPE_CLIENT_HELLO: u8 = 0x01;
/// Type byte of [`CookieReply`].
pub const TYPE_COOKIE: u8 = 0x02;
/// Type byte of [`KeyExchange`].
pub const TYPE_KEY_EXCHANGE: u8 = 0x03;
/// Type byte of [`ServerFinished`].
pub const TYPE_SERVER_FINISHED: u8 = 0x04;
/// Type byte of [`ClientFinished`].
pub const TYPE_CLIENT_FINISHED: u8 = 0x05;

/// Largest handshake message (a [`KeyExchange`] offering [`MAX_OFFERED_SUITES`] suites).
pub const MAX_HANDSHAKE_MESSAGE: usize =
    1 + 2 + 8 + 32 + 32 + 1 + MAX_OFFERED_SUITES + EK_LEN + CT_LEN + ENC_IDENTITY_LEN;

/// M0, initiator → responder: asks for a cookie. Costs the responder one MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// Protocol version.
    pub version: u16,
    /// The initiator's chain ID.
    pub chain_id: u64,
    /// Fresh random nonce, echoed in M2.
    pub client_nonce: [u8; 32],
}

/// M1, responder → initiator: the stateless cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieReply {
    /// Protocol version.
    pub version: u16,
    /// MAC over the initiator's address, nonce and a time bucket.
    pub cookie: [u8; 32],
}

/// M2, initiator → responder: everything of M0/M1 echoed, the ephemeral key,
/// the encapsulation to the responder's static key, and the initiator's
/// identity encrypted under a key only the responder can derive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyExchange {
    /// Protocol version.
    pub version: u16,
    /// The initiator's chain ID.
    pub chain_id: u64,
    /// The nonce of M0.
    pub client_nonce: [u8; 32],
    /// The cookie of M1.
    pub cookie: [u8; 32],
    /// Offered record suites, most preferred first (1..=4, no duplicates).
    pub suites: Vec<CipherSuite>,
    /// Ephemeral ML-KEM-768 encapsulation key.
    pub ephemeral_ek: Vec<u8>,
    /// Ciphertext encapsulated to the responder's static key.
    pub ct_responder_static: Vec<u8>,
    /// AEAD-encrypted initiator key fingerprint.
    pub encrypted_identity: [u8; ENC_IDENTITY_LEN],
}

/// M3, responder → initiator: chosen suite, encapsulations to the initiator's
/// ephemeral and static keys, and the responder's key confirmation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFinished {
    /// The chosen suite.
    pub suite: CipherSuite,
    /// Ciphertext to the initiator's ephemeral key.
    pub ct_ephemeral: Vec<u8>,
    /// Ciphertext to the initiator's static key.
    pub ct_initiator_static: Vec<u8>,
    /// HMAC-SHA3-256 confirmation tag.
    pub confirm: [u8; 32],
}

/// M4, initiator → responder: the initiator's key confirmation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFinished {
    /// HMAC-SHA3-256 confirmation tag.
    pub confirm: [u8; 32],
}

/// A bounds-checked reader over one message.
struct Reader<'a> {
    what: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(what: &'static str, buf: &'a [u8], expected_type: u8) -> Result<Self, NetError> {
        let mut r = Reader { what, buf, pos: 0 };
        let t = r.u8()?;
        if t != expected_type {
            return Err(NetError::UnexpectedMessage {
                expected: expected_type,
                got: t,
            });
        }
        Ok(r)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], NetError> {
        let have = self.buf.len() - self.pos;
        if have < n {
            return Err(NetError::Truncated {
                what: self.what,
                need: n,
                have,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, NetError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, NetError> {
        let mut a = [0u8; 2];
        a.copy_from_slice(self.take(2)?);
        Ok(u16::from_be_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, NetError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], NetError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn finish(self) -> Result<(), NetError> {
        let count = self.buf.len() - self.pos;
        if count == 0 {
            Ok(())
        } else {
            Err(NetError::TrailingBytes {
                what: self.what,
                count,
            })
        }
    }
}

fn suite_from_byte(b: u8) -> Result<CipherSuite, NetError> {
    CipherSuite::from_byte(b).ok_or(NetError::InvalidField { field: "suite" })
}

impl ClientHello {
    /// Encoded length.
    pub const LEN: usize = 1 + 2 + 8 + 32;

    /// Encode.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.push(TYPE_CLIENT_HELLO);
        v.extend_from_slice(&self.version.to_be_bytes());
        v.extend_from_slice(&self.chain_id.to_be_bytes());
        v.extend_from_slice(&self.client_nonce);
        v
    }

    /// Decode, rejecting any other length or type.
    ///
    /// # Errors
    /// [`NetError::UnexpectedMessage`], [`NetError::Truncated`], [`NetError::TrailingBytes`].
    pub fn decode(b: &[u8]) -> Result<Self, NetError> {
        let mut r = Reader::new("ClientHello", b, TYPE_CLIENT_HELLO)?;
        let m = ClientHello {
            version: r.u16()?,
            chain_id: r.u64()?,
            client_nonce: r.array()?,
        };
        r.finish()?;
        Ok(m)
    }
}

impl CookieReply {
    /// Encoded length.
    pub const LEN: usize = 1 + 2 + 32;

    /// Encode.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.push(TYPE_COOKIE);
        v.extend_from_slice(&self.version.to_be_bytes());
        v.extend_from_slice(&self.cookie);
        v
    }

    /// Decode.
    ///
    /// # Errors
    /// [`NetError::UnexpectedMessage`], [`NetError::Truncated`], [`NetError::TrailingBytes`].
    pub fn decode(b: &[u8]) -> Result<Self, NetError> {
        let mut r = Reader::new("CookieReply", b, TYPE_COOKIE)?;
        let m = CookieReply {
            version: r.u16()?,
            cookie: r.array()?,
        };
        r.finish()?;
        Ok(m)
    }
}

impl KeyExchange {
    /// Encode.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(MAX_HANDSHAKE_MESSAGE);
        v.push(TYPE_KEY_EXCHANGE);
        v.extend_from_slice(&self.version.to_be_bytes());
        v.extend_from_slice(&self.chain_id.to_be_bytes());
        v.extend_from_slice(&self.client_nonce);
        v.extend_from_slice(&self.cookie);
        // At most MAX_OFFERED_SUITES by construction in the initiator.
        v.push(u8::try_from(self.suites.len()).unwrap_or(u8::MAX));
        v.extend(self.suites.iter().map(|s| s.to_byte()));
        v.extend_from_slice(&self.ephemeral_ek);
        v.extend_from_slice(&self.ct_responder_static);
        v.extend_from_slice(&self.encrypted_identity);
        v
    }

    /// Decode. The suite list must hold 1..=4 known, distinct suites.
    ///
    /// # Errors
    /// [`NetError::UnexpectedMessage`], [`NetError::Truncated`], [`NetError::TrailingBytes`],
    /// [`NetError::InvalidField`].
    pub fn decode(b: &[u8]) -> Result<Self, NetError> {
        let mut r = Reader::new("KeyExchange", b, TYPE_KEY_EXCHANGE)?;
        let version = r.u16()?;
        let chain_id = r.u64()?;
        let client_nonce = r.array()?;
        let cookie = r.array()?;
        let n = usize::from(r.u8()?);
        if n == 0 || n > MAX_OFFERED_SUITES {
            return Err(NetError::InvalidField {
                field: "suite count",
            });
        }
        let mut suites = Vec::with_capacity(n);
        for &s in r.take(n)? {
            let s = suite_from_byte(s)?;
            if suites.contains(&s) {
                return Err(NetError::InvalidField {
                    field: "duplicate suite",
                });
            }
            suites.push(s);
        }
        let ephemeral_ek = r.take(EK_LEN)?.to_vec();
        let ct_responder_static = r.take(CT_LEN)?.to_vec();
        let encrypted_identity = r.array()?;
        r.finish()?;
        Ok(KeyExchange {
            version,
            chain_id,
            client_nonce,
            cookie,
            suites,
            ephemeral_ek,
            ct_responder_static,
            encrypted_identity,
        })
    }
}

impl ServerFinished {
    /// Encoded length.
    pub const LEN: usize = 1 + 1 + CT_LEN + CT_LEN + 32;

    /// Encode.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.push(TYPE_SERVER_FINISHED);
        v.push(self.suite.to_byte());
        v.extend_from_slice(&self.ct_ephemeral);
        v.extend_from_slice(&self.ct_initiator_static);
        v.extend_from_slice(&self.confirm);
        v
    }

    /// Decode.
    ///
    /// # Errors
    /// [`NetError::UnexpectedMessage`], [`NetError::Truncated`], [`NetError::TrailingBytes`],
    /// [`NetError::InvalidField`].
    pub fn decode(b: &[u8]) -> Result<Self, NetError> {
        let mut r = Reader::new("ServerFinished", b, TYPE_SERVER_FINISHED)?;
        let suite = suite_from_byte(r.u8()?)?;
        let ct_ephemeral = r.take(CT_LEN)?.to_vec();
        let ct_initiator_static = r.take(CT_LEN)?.to_vec();
        let confirm = r.array()?;
        r.finish()?;
        Ok(ServerFinished {
            suite,
            ct_ephemeral,
            ct_initiator_static,
            confirm,
        })
    }
}

impl ClientFinished {
    /// Encoded length.
    pub const LEN: usize = 1 + 32;

    /// Encode.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.push(TYPE_CLIENT_FINISHED);
        v.extend_from_slice(&self.confirm);
        v
    }

    /// Decode.
    ///
    /// # Errors
    /// [`NetError::UnexpectedMessage`], [`NetError::Truncated`], [`NetError::TrailingBytes`].
    pub fn decode(b: &[u8]) -> Result<Self, NetError> {
        let mut r = Reader::new("ClientFinished", b, TYPE_CLIENT_FINISHED)?;
        let m = ClientFinished {
            confirm: r.array()?,
        };
        r.finish()?;
        Ok(m)
    }
}
