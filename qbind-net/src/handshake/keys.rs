//! The KEMTLS key schedule (HKDF over SHA3-256, `docs/kemtls.md` "Key
//! schedule"). Public so that tests and auditors can recompute every secret
//! from the transcript and the KEM shared secrets.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha3::{Digest, Sha3_256};
use zeroize::Zeroizing;

use super::messages::PROTOCOL_VERSION;

/// Prefix of every HKDF label.
pub const LABEL_PREFIX: &[u8] = b"qbind-kemtls-v1 ";

/// SHA3-256.
#[must_use]
pub fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha3_256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `HKDF-Expand(prk, LABEL_PREFIX || label || context, 32)`.
#[must_use]
pub fn expand_label(prk: &[u8; 32], label: &[u8], context: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // A 32-byte PRK is always long enough, and 32 bytes of output is far
    // below HKDF's 255·32 limit, so neither call can fail.
    if let Ok(h) = Hkdf::<Sha3_256>::from_prk(prk) {
        let _ = h.expand_multi_info(&[LABEL_PREFIX, label, context], out.as_mut());
    }
    out
}

fn extract(salt: &[u8], ikm: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut buf = Zeroizing::new(Vec::new());
    for p in ikm {
        buf.extend_from_slice(p);
    }
    let (prk, _) = Hkdf::<Sha3_256>::extract(Some(salt), &buf);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&prk);
    out
}

/// HMAC-SHA3-256.
#[must_use]
pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let Ok(mut m) = <Hmac<Sha3_256> as Mac>::new_from_slice(key) else {
        return [0u8; 32];
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time equality of two tags.
#[must_use]
pub fn tags_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The salt binding the protocol version and chain ID into every secret.
#[must_use]
pub fn context_salt(chain_id: u64) -> [u8; 32] {
    hash(&[
        b"qbind-kemtls context",
        &PROTOCOL_VERSION.to_be_bytes(),
        &chain_id.to_be_bytes(),
    ])
}

/// Secrets after M2: the early secret and the identity-encryption key.
pub struct EarlySecrets {
    /// `HKDF-Extract(context_salt, ss_R)`.
    pub early_secret: Zeroizing<[u8; 32]>,
    /// Key of the AES-256-GCM that hides the initiator's fingerprint.
    pub identity_key: Zeroizing<[u8; 32]>,
}

/// Derive [`EarlySecrets`] from the shared secret of the encapsulation to
/// the responder's static key and `th_m2 = H(M2 without encrypted identity)`.
#[must_use]
pub fn early_secrets(
    chain_id: u64,
    ss_responder_static: &[u8; 32],
    th_m2: &[u8; 32],
) -> EarlySecrets {
    let early_secret = extract(&context_salt(chain_id), &[ss_responder_static]);
    let identity_key = expand_label(&early_secret, b"identity", th_m2);
    EarlySecrets {
        early_secret,
        identity_key,
    }
}

/// `hs = HKDF-Extract(salt = early_secret, ss_E || ss_I)`: the secret that
/// needs the ephemeral shared secret, hence forward secrecy.
#[must_use]
pub fn handshake_secret(
    early_secret: &[u8; 32],
    ss_ephemeral: &[u8; 32],
    ss_initiator_static: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    extract(early_secret, &[ss_ephemeral, ss_initiator_static])
}

/// Keys of the two confirmation MACs, bound to `th3 = H(M2 || M3 without tag)`.
pub struct FinishedKeys {
    /// Key of the responder's confirmation MAC (over `th3`).
    pub responder: Zeroizing<[u8; 32]>,
    /// Key of the initiator's confirmation MAC (over `th4`).
    pub initiator: Zeroizing<[u8; 32]>,
}

/// Derive the [`FinishedKeys`].
#[must_use]
pub fn finished_keys(hs: &[u8; 32], th3: &[u8; 32]) -> FinishedKeys {
    FinishedKeys {
        responder: expand_label(hs, b"r finished", th3),
        initiator: expand_label(hs, b"i finished", th3),
    }
}

/// One traffic secret per direction, bound to `th4 = H(M2 || M3)`.
pub struct TrafficSecrets {
    /// Initiator → responder.
    pub initiator_to_responder: Zeroizing<[u8; 32]>,
    /// Responder → initiator.
    pub responder_to_initiator: Zeroizing<[u8; 32]>,
}

/// Derive the [`TrafficSecrets`].
#[must_use]
pub fn traffic_secrets(hs: &[u8; 32], th4: &[u8; 32]) -> TrafficSecrets {
    TrafficSecrets {
        initiator_to_responder: expand_label(hs, b"i2r traffic", th4),
        responder_to_initiator: expand_label(hs, b"r2i traffic", th4),
    }
}

/// The whole schedule from the three KEM shared secrets and the encoded M2
/// and M3 (as on the wire): what an observer who learned all three secrets
/// could compute. Used by the forward-secrecy test.
#[must_use]
pub fn traffic_from_transcript(
    chain_id: u64,
    ss_responder_static: &[u8; 32],
    ss_ephemeral: &[u8; 32],
    ss_initiator_static: &[u8; 32],
    m2: &[u8],
    m3: &[u8],
) -> TrafficSecrets {
    let m2_head = &m2[..m2.len().saturating_sub(super::messages::ENC_IDENTITY_LEN)];
    let early = early_secrets(chain_id, ss_responder_static, &hash(&[m2_head]));
    let hs = handshake_secret(&early.early_secret, ss_ephemeral, ss_initiator_static);
    traffic_secrets(&hs, &hash(&[m2, m3]))
}
