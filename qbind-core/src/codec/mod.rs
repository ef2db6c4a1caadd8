//! The canonical codec (DESIGN "Wire and consensus encoding"; STYLE 6).
//!
//! Every value has exactly one encoding:
//! - integers are fixed-width big-endian;
//! - `bool` is one byte, `0` or `1` (any other byte is rejected);
//! - `Option<T>` is a tag byte `0` (none) or `1` followed by `T`;
//! - sequences are a `u32` big-endian count followed by the elements; the
//!   count is checked against a configured bound ([`CodecLimits`]) *and*
//!   against the bytes left before anything is allocated;
//! - fixed-size byte arrays (keys, signatures, hashes) have no prefix;
//! - a top-level decode must consume every byte: trailing bytes are an error.
//!
//! Byte layouts of every wire type are in `docs/wire-format.md` and frozen by
//! golden vectors in `tests/golden.rs`.

mod impls;

use crate::types::{Epoch, Hash32, Height, ValidatorId, View};

/// Bounds applied while decoding. Each length prefix is checked against one
/// of these before allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecLimits {
    /// Maximum number of validators in a set (and bits in a signer bitmap).
    pub max_validators: u32,
    /// Maximum number of transactions in one block payload.
    pub max_txs_per_block: u32,
    /// Maximum size of one opaque transaction in bytes.
    pub max_tx_bytes: u32,
    /// Maximum number of blocks in one sync response.
    pub max_sync_blocks: u32,
    /// Maximum number of certified batches one block may carry.
    pub max_batches_per_block: u32,
    /// Maximum size of one encoded network message in bytes.
    pub max_message_bytes: u32,
}

impl Default for CodecLimits {
    fn default() -> Self {
        CodecLimits {
            max_validators: 1024,
            max_txs_per_block: 20_000,
            max_tx_bytes: 64 * 1024,
            max_sync_blocks: 64,
            max_batches_per_block: 1024,
            max_message_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why a byte string did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the value was complete.
    #[error("unexpected end of input: needed {needed} more bytes at offset {offset}")]
    UnexpectedEnd {
        /// Offset where reading stopped.
        offset: usize,
        /// Bytes that were still needed.
        needed: usize,
    },
    /// Bytes were left after the top-level value.
    #[error("{count} trailing bytes after the value")]
    TrailingBytes {
        /// Number of unread bytes.
        count: usize,
    },
    /// A length prefix exceeded its configured bound or the remaining input.
    #[error("length {len} of {what} exceeds the limit {max}")]
    LengthTooLarge {
        /// What was being decoded.
        what: &'static str,
        /// The decoded length.
        len: u64,
        /// The bound it exceeded.
        max: u64,
    },
    /// A tag byte (enum discriminant, bool, option) had no meaning.
    #[error("invalid tag {tag} for {what}")]
    InvalidTag {
        /// What was being decoded.
        what: &'static str,
        /// The offending byte.
        tag: u8,
    },
    /// A structurally valid value broke a canonical-form rule.
    #[error("non-canonical {what}")]
    NonCanonical {
        /// Which rule was broken.
        what: &'static str,
    },
    /// A key or signature had the wrong form.
    #[error("invalid {what}")]
    InvalidCrypto {
        /// Which object.
        what: &'static str,
    },
}

/// A cursor over input bytes that enforces [`CodecLimits`].
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a CodecLimits,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    #[must_use]
    pub fn new(buf: &'a [u8], limits: &'a CodecLimits) -> Self {
        Reader {
            buf,
            pos: 0,
            limits,
        }
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &'a CodecLimits {
        self.limits
    }

    /// Bytes not yet read.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Take the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::UnexpectedEnd {
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Take a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Read one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Read a big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Read a big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Read a big-endian `u128`.
    pub fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_be_bytes(self.array()?))
    }

    /// Read a sequence count, checked against `max` and against the bytes
    /// left, given that each element takes at least `min_elem_bytes`.
    pub fn count(
        &mut self,
        what: &'static str,
        max: u32,
        min_elem_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let len = self.u32()?;
        if len > max {
            return Err(DecodeError::LengthTooLarge {
                what,
                len: u64::from(len),
                max: u64::from(max),
            });
        }
        let len = len as usize;
        let needed = len.saturating_mul(min_elem_bytes.max(1));
        if min_elem_bytes > 0 && needed > self.remaining() {
            return Err(DecodeError::LengthTooLarge {
                what,
                len: len as u64,
                max: (self.remaining() / min_elem_bytes) as u64,
            });
        }
        Ok(len)
    }

    /// Read a length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, what: &'static str, max: u32) -> Result<Vec<u8>, DecodeError> {
        let len = self.count(what, max, 1)?;
        Ok(self.take(len)?.to_vec())
    }

    /// Fail unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            _ if crate::mutants::active(crate::mutants::Mutant::TrailingBytes) => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

/// Types with a canonical encoding.
pub trait Encode {
    /// Append the canonical encoding of `self` to `out`.
    fn encode_to(&self, out: &mut Vec<u8>);

    /// The canonical encoding of `self`.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// Types that decode from their canonical encoding.
pub trait Decode: Sized {
    /// Decode one value from the reader, leaving the rest.
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decode exactly one value from `bytes` with the given limits.
    fn from_bytes_with(bytes: &[u8], limits: &CodecLimits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, limits);
        let v = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    /// Decode exactly one value from `bytes` with default limits.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_bytes_with(bytes, &CodecLimits::default())
    }
}

macro_rules! int_codec {
    ($t:ty, $read:ident) => {
        impl Encode for $t {
            fn encode_to(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
        }
        impl Decode for $t {
            fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                r.$read()
            }
        }
    };
}

int_codec!(u8, u8);
int_codec!(u32, u32);
int_codec!(u64, u64);
int_codec!(u128, u128);

impl Encode for bool {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Decode for bool {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::InvalidTag { what: "bool", tag }),
        }
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode_to(out);
            }
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(None),
            1 => Ok(Some(T::decode_from(r)?)),
            tag => Err(DecodeError::InvalidTag {
                what: "option",
                tag,
            }),
        }
    }
}

/// Encode a sequence as a `u32` count followed by its elements.
pub fn encode_seq<T: Encode>(items: &[T], out: &mut Vec<u8>) {
    // Counts are bounded by CodecLimits (all far below u32::MAX) on decode;
    // encoders only ever see values that passed those bounds or were built
    // locally under the same configuration.
    (items.len() as u32).encode_to(out);
    for item in items {
        item.encode_to(out);
    }
}

/// Decode a sequence whose count is bounded by `max`; `min_elem_bytes` is the
/// smallest encoding of one element, used to reject counts that cannot fit.
pub fn decode_seq<T: Decode>(
    r: &mut Reader<'_>,
    what: &'static str,
    max: u32,
    min_elem_bytes: usize,
) -> Result<Vec<T>, DecodeError> {
    let n = r.count(what, max, min_elem_bytes)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(T::decode_from(r)?);
    }
    Ok(out)
}

/// Encode a byte string with a `u32` length prefix.
pub fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    (bytes.len() as u32).encode_to(out);
    out.extend_from_slice(bytes);
}

macro_rules! newtype_codec {
    ($t:ty, $inner:ty) => {
        impl Encode for $t {
            fn encode_to(&self, out: &mut Vec<u8>) {
                self.0.encode_to(out);
            }
        }
        impl Decode for $t {
            fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(Self(<$inner>::decode_from(r)?))
            }
        }
    };
}

newtype_codec!(ValidatorId, u32);
newtype_codec!(View, u64);
newtype_codec!(Height, u64);
newtype_codec!(Epoch, u64);

impl Encode for Hash32 {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for Hash32 {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Hash32(r.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_are_rejected() {
        assert_eq!(
            u32::from_bytes(&[0, 0, 0, 1, 9]),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn bool_and_option_tags_are_strict() {
        assert!(bool::from_bytes(&[2]).is_err());
        assert!(Option::<u8>::from_bytes(&[2, 0]).is_err());
        assert_eq!(Option::<u8>::from_bytes(&[1, 7]), Ok(Some(7)));
    }

    #[test]
    fn counts_are_checked_before_allocation() {
        let limits = CodecLimits::default();
        // Claims 4 billion u64s with 0 bytes behind it.
        let bytes = [0xff, 0xff, 0xff, 0xff];
        let mut r = Reader::new(&bytes, &limits);
        let err = decode_seq::<u64>(&mut r, "test", u32::MAX, 8);
        assert!(matches!(err, Err(DecodeError::LengthTooLarge { .. })));
        // Within the byte budget but over the configured bound.
        let bytes = [0, 0, 0, 3, 1, 2, 3];
        let mut r = Reader::new(&bytes, &limits);
        assert!(matches!(
            r.bytes("b", 2),
            Err(DecodeError::LengthTooLarge { len: 3, max: 2, .. })
        ));
    }
}
