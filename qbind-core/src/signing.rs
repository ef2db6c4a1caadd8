//! Domain-separated signing preimages (DESIGN "Every signed object is signed
//! over `domain_tag || chain_id || canonical bytes`").
//!
//! The tag is `QBIND:{DEV|TST|MAIN}:{KIND}:v1`, the chain ID is 8 bytes
//! big-endian. A signature made for one network or one kind of object can
//! therefore never verify as another: the preimages differ in their first
//! bytes.

use crate::crypto::{self, CryptoError, KeyPair, PublicKey, Signature};
use crate::types::NetworkEnvironment;

/// The kinds of signed object, each with its own domain tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SignKind {
    /// A transaction.
    Tx,
    /// A DAG batch.
    Batch,
    /// An acknowledgement of a DAG batch.
    BatchAck,
    /// A consensus vote.
    Vote,
    /// A block proposal.
    Proposal,
    /// A view timeout.
    Timeout,
    /// A new-view message (reserved; the pacemaker uses timeouts).
    NewView,
    /// A key rotation event, signed with the current consensus key
    /// (runbook §6.2; `qbind_core::key_rotation`).
    KeyRotation,
}

impl SignKind {
    /// Every kind, for exhaustive tests.
    pub const ALL: [SignKind; 8] = [
        SignKind::Tx,
        SignKind::Batch,
        SignKind::BatchAck,
        SignKind::Vote,
        SignKind::Proposal,
        SignKind::Timeout,
        SignKind::NewView,
        SignKind::KeyRotation,
    ];

    /// The `{KIND}` part of the domain tag.
    #[must_use]
    pub fn tag_name(self) -> &'static str {
        match self {
            SignKind::Tx => "TX",
            SignKind::Batch => "BATCH",
            SignKind::BatchAck => "BATCH_ACK",
            SignKind::Vote => "VOTE",
            SignKind::Proposal => "PROPOSAL",
            SignKind::Timeout => "TIMEOUT",
            SignKind::NewView => "NEWVIEW",
            SignKind::KeyRotation => "KEY_ROTATION",
        }
    }
}

/// The domain tag `QBIND:{scope}:{kind}:v1`.
#[must_use]
pub fn domain_tag(env: NetworkEnvironment, kind: SignKind) -> String {
    format!("QBIND:{}:{}:v1", env.tag_scope(), kind.tag_name())
}

/// The exact bytes that are signed: `domain_tag || chain_id (u64 BE) || message`.
#[must_use]
pub fn signing_preimage(env: NetworkEnvironment, kind: SignKind, message: &[u8]) -> Vec<u8> {
    let tag = domain_tag(env, kind);
    let mut out = Vec::with_capacity(tag.len() + 8 + message.len());
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(&env.chain_id().0.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Sign `message` as an object of `kind` on network `env`.
#[must_use]
pub fn sign_domain(
    key: &KeyPair,
    env: NetworkEnvironment,
    kind: SignKind,
    message: &[u8],
) -> Signature {
    key.sign(&signing_preimage(env, kind, message))
}

/// Verify a signature made by [`sign_domain`].
pub fn verify_domain(
    public_key: &PublicKey,
    env: NetworkEnvironment,
    kind: SignKind,
    message: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    crypto::verify(public_key, &signing_preimage(env, kind, message), signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVS: [NetworkEnvironment; 3] = [
        NetworkEnvironment::Devnet,
        NetworkEnvironment::Testnet,
        NetworkEnvironment::Mainnet,
    ];

    #[test]
    fn tags_have_the_documented_form() {
        assert_eq!(
            domain_tag(NetworkEnvironment::Mainnet, SignKind::BatchAck),
            "QBIND:MAIN:BATCH_ACK:v1"
        );
        assert_eq!(
            domain_tag(NetworkEnvironment::Devnet, SignKind::Vote),
            "QBIND:DEV:VOTE:v1"
        );
        let pre = signing_preimage(NetworkEnvironment::Testnet, SignKind::Tx, b"xyz");
        assert_eq!(&pre[..15], b"QBIND:TST:TX:v1");
        assert_eq!(&pre[15..23], b"QBNDTST\0");
        assert_eq!(&pre[23..], b"xyz");
    }

    #[test]
    fn a_signature_verifies_only_for_its_own_chain_and_kind() {
        let key = KeyPair::from_seed(&[7u8; 32]);
        let msg = b"canonical bytes of some object";
        for env in ENVS {
            for kind in SignKind::ALL {
                let sig = sign_domain(&key, env, kind, msg);
                for env2 in ENVS {
                    for kind2 in SignKind::ALL {
                        let ok = verify_domain(key.public_key(), env2, kind2, msg, &sig).is_ok();
                        assert_eq!(
                            ok,
                            env == env2 && kind == kind2,
                            "{env:?}/{kind:?} vs {env2:?}/{kind2:?}"
                        );
                    }
                }
            }
        }
    }
}
