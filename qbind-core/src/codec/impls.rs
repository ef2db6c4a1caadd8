//! Codec impls for the crypto types, which are fixed-size on the wire.

use super::{Decode, DecodeError, Encode, Reader};
use crate::crypto::{ML_DSA_44_PUBLIC_KEY_BYTES, ML_DSA_44_SIGNATURE_BYTES, PublicKey, Signature};

impl Encode for PublicKey {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl Decode for PublicKey {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        PublicKey::from_bytes(r.take(ML_DSA_44_PUBLIC_KEY_BYTES)?).map_err(|_| {
            DecodeError::InvalidCrypto {
                what: "ML-DSA-44 public key",
            }
        })
    }
}

impl Encode for Signature {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl Decode for Signature {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Signature::from_bytes(r.take(ML_DSA_44_SIGNATURE_BYTES)?).map_err(|_| {
            DecodeError::InvalidCrypto {
                what: "ML-DSA-44 signature",
            }
        })
    }
}
