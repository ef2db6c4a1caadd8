//! What a signing request really signs (issue #22 finding 1): the
//! double-sign guard never trusts the view a client *claims*; it decodes the
//! object behind the bytes it is asked to sign and takes the view or DAG slot
//! from there.
//!
//! | kind | decoded from | slot |
//! | --- | --- | --- |
//! | vote | `message` = `VoteData` | its view |
//! | timeout | `message` = `TimeoutData` | its view |
//! | proposal | `digest_preimage` = `BlockHeader`, whose id must be `message` | the header's view |
//! | batch | `digest_preimage` = `Batch`, whose digest must be `message` | (epoch, round); author must be us |
//! | batch ack | `message` = `BatchRef` | (epoch, author, round) and digest |
//!
//! Every other kind is not slot-bearing ([`SignedSlot::Unguarded`]). A request
//! whose claimed view differs from the decoded one, whose preimage's digest
//! (a header's id, a batch's `Batch::digest`) is not the message, or whose
//! bytes do not decode is a
//! [`SlotError`]: the guard refuses it and counts it.

use qbind_core::codec::{CodecLimits, Decode};
use qbind_core::consensus::{BlockHeader, TimeoutData, VoteData};
use qbind_core::dag::{Batch, BatchRef};
use qbind_core::signing::SignKind;
use qbind_core::traits::SignRequest;
use qbind_core::types::{Epoch, Hash32, ValidatorId, View};

/// The slot a request signs in, decoded from its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignedSlot {
    /// A proposal, vote or timeout for `view`.
    View {
        /// The kind.
        kind: SignKind,
        /// The decoded view.
        view: View,
    },
    /// One of our own DAG batches.
    Batch {
        /// Its epoch.
        epoch: Epoch,
        /// Its round (the author's slot number).
        round: u64,
    },
    /// An acknowledgement of `author`'s batch `digest` at (epoch, round).
    BatchAck {
        /// Epoch of the batch.
        epoch: Epoch,
        /// Author of the batch.
        author: ValidatorId,
        /// The author's slot.
        round: u64,
        /// The batch digest acknowledged.
        digest: Hash32,
    },
    /// A kind without a slot (transactions, key rotations, new-view).
    Unguarded,
}

/// A request whose bytes do not say what its fields claim.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The signed bytes (or the preimage) do not decode as the kind's object.
    #[error("{kind:?} request does not decode: {detail}")]
    Undecodable {
        /// The kind.
        kind: SignKind,
        /// The decoder's complaint.
        detail: String,
    },
    /// The preimage's digest (a header's id, a batch's `Batch::digest`) is
    /// not the message.
    #[error("{kind:?} request: the preimage's digest is not the signed digest")]
    PreimageMismatch {
        /// The kind.
        kind: SignKind,
    },
    /// The claimed view is not the view of the signed object.
    #[error("{kind:?} request claims view {claimed:?} but signs view {decoded:?}")]
    ViewMismatch {
        /// The kind.
        kind: SignKind,
        /// What the request says.
        claimed: Option<View>,
        /// What the signed bytes say.
        decoded: Option<View>,
    },
    /// A batch authored by another validator.
    #[error("batch authored by validator {author} is not ours ({ours})")]
    WrongAuthor {
        /// Author in the batch.
        author: u32,
        /// The validator this signer signs for.
        ours: u32,
    },
}

fn undecodable(kind: SignKind, e: impl std::fmt::Display) -> SlotError {
    SlotError::Undecodable {
        kind,
        detail: e.to_string(),
    }
}

fn check_view(
    kind: SignKind,
    claimed: Option<View>,
    decoded: View,
) -> Result<SignedSlot, SlotError> {
    if claimed != Some(decoded) {
        return Err(SlotError::ViewMismatch {
            kind,
            claimed,
            decoded: Some(decoded),
        });
    }
    Ok(SignedSlot::View {
        kind,
        view: decoded,
    })
}

fn check_no_view(kind: SignKind, claimed: Option<View>) -> Result<(), SlotError> {
    match claimed {
        None => Ok(()),
        Some(_) => Err(SlotError::ViewMismatch {
            kind,
            claimed,
            decoded: None,
        }),
    }
}

fn check_digest(kind: SignKind, preimage: &[u8], message: &[u8]) -> Result<(), SlotError> {
    if Hash32::digest(preimage).0.as_slice() != message {
        return Err(SlotError::PreimageMismatch { kind });
    }
    Ok(())
}

/// Decode the slot `request` signs in, for the validator `ours`.
///
/// # Errors
/// [`SlotError`] when the bytes do not decode or disagree with the request's
/// claims (a compromised or buggy client).
pub fn decode_slot(request: &SignRequest, ours: ValidatorId) -> Result<SignedSlot, SlotError> {
    let kind = request.kind;
    let limits = CodecLimits::default();
    let no_preimage = || {
        if request.digest_preimage.is_empty() {
            Ok(())
        } else {
            Err(undecodable(kind, "unexpected digest preimage"))
        }
    };
    match kind {
        SignKind::Vote => {
            no_preimage()?;
            let data = VoteData::from_bytes_with(&request.message, &limits)
                .map_err(|e| undecodable(kind, e))?;
            check_view(kind, request.view, data.view)
        }
        SignKind::Timeout => {
            no_preimage()?;
            let data = TimeoutData::from_bytes_with(&request.message, &limits)
                .map_err(|e| undecodable(kind, e))?;
            check_view(kind, request.view, data.view)
        }
        SignKind::Proposal => {
            let header = BlockHeader::from_bytes_with(&request.digest_preimage, &limits)
                .map_err(|e| undecodable(kind, e))?;
            check_digest(kind, &request.digest_preimage, &request.message)?;
            check_view(kind, request.view, header.view)
        }
        SignKind::Batch => {
            check_no_view(kind, request.view)?;
            let batch = Batch::from_bytes_with(&request.digest_preimage, &limits)
                .map_err(|e| undecodable(kind, e))?;
            // A batch's digest is over its transactions' ids (wire format
            // §4.15), not the SHA3-256 of its encoding.
            if batch.digest().0.as_slice() != request.message {
                return Err(SlotError::PreimageMismatch { kind });
            }
            if batch.author != ours {
                return Err(SlotError::WrongAuthor {
                    author: batch.author.0,
                    ours: ours.0,
                });
            }
            Ok(SignedSlot::Batch {
                epoch: batch.epoch,
                round: batch.round,
            })
        }
        SignKind::BatchAck => {
            check_no_view(kind, request.view)?;
            no_preimage()?;
            let r = BatchRef::from_bytes_with(&request.message, &limits)
                .map_err(|e| undecodable(kind, e))?;
            Ok(SignedSlot::BatchAck {
                epoch: r.epoch,
                author: r.author,
                round: r.round,
                digest: r.digest,
            })
        }
        SignKind::Tx | SignKind::NewView | SignKind::KeyRotation => Ok(SignedSlot::Unguarded),
    }
}

/// Canonical requests for the slot-bearing kinds, as the consensus engine
/// builds them (for tests, benches and tools).
pub mod requests {
    use qbind_core::codec::Encode;
    use qbind_core::consensus::{BlockHeader, TimeoutData, VoteData};
    use qbind_core::dag::{Batch, BatchRef};
    use qbind_core::signing::SignKind;
    use qbind_core::traits::SignRequest;
    use qbind_core::types::{Epoch, Hash32, Height, ValidatorId, View};

    /// A vote for `block_id` at `view` (epoch 0).
    #[must_use]
    pub fn vote(view: u64, block_id: Hash32) -> SignRequest {
        let data = VoteData {
            epoch: Epoch(0),
            view: View(view),
            block_id,
        };
        SignRequest {
            kind: SignKind::Vote,
            view: Some(View(view)),
            message: data.to_bytes(),
            digest_preimage: Vec::new(),
        }
    }

    /// A timeout of `view` with high QC view `high_qc_view` (epoch 0).
    #[must_use]
    pub fn timeout(view: u64, high_qc_view: u64) -> SignRequest {
        let data = TimeoutData {
            epoch: Epoch(0),
            view: View(view),
            high_qc_view: View(high_qc_view),
        };
        SignRequest {
            kind: SignKind::Timeout,
            view: Some(View(view)),
            message: data.to_bytes(),
            digest_preimage: Vec::new(),
        }
    }

    /// A proposal at `view` by `proposer`, `payload` standing in for the
    /// payload digest (different payloads, different blocks).
    #[must_use]
    pub fn proposal(view: u64, proposer: ValidatorId, payload: Hash32) -> SignRequest {
        let header = BlockHeader {
            epoch: Epoch(0),
            view: View(view),
            height: Height(view),
            parent_id: Hash32::ZERO,
            justify_view: View(view.saturating_sub(1)),
            proposer,
            payload_digest: payload,
            batch_commitment: Hash32::ZERO,
            exec_height: Height(0),
            exec_state_root: Hash32::ZERO,
        };
        SignRequest {
            kind: SignKind::Proposal,
            view: Some(View(view)),
            message: header.id().to_bytes(),
            digest_preimage: header.to_bytes(),
        }
    }

    /// Our batch for (epoch, round) carrying `txs`.
    #[must_use]
    pub fn batch(author: ValidatorId, epoch: u64, round: u64, txs: Vec<Vec<u8>>) -> SignRequest {
        let batch = Batch {
            epoch: Epoch(epoch),
            author,
            round,
            txs,
        };
        SignRequest {
            kind: SignKind::Batch,
            view: None,
            message: batch.digest().to_bytes(),
            digest_preimage: batch.to_bytes(),
        }
    }

    /// An acknowledgement of `author`'s batch `digest` at (epoch, round).
    #[must_use]
    pub fn batch_ack(author: ValidatorId, epoch: u64, round: u64, digest: Hash32) -> SignRequest {
        let r = BatchRef {
            epoch: Epoch(epoch),
            author,
            round,
            digest,
        };
        SignRequest {
            kind: SignKind::BatchAck,
            view: None,
            message: r.to_bytes(),
            digest_preimage: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::requests::*;
    use super::*;

    const ME: ValidatorId = ValidatorId(1);

    #[test]
    fn decodes_every_slot_bearing_kind() {
        let h = Hash32::digest(b"a");
        assert_eq!(
            decode_slot(&vote(5, h), ME),
            Ok(SignedSlot::View {
                kind: SignKind::Vote,
                view: View(5)
            })
        );
        assert_eq!(
            decode_slot(&timeout(6, 4), ME),
            Ok(SignedSlot::View {
                kind: SignKind::Timeout,
                view: View(6)
            })
        );
        assert_eq!(
            decode_slot(&proposal(7, ME, h), ME),
            Ok(SignedSlot::View {
                kind: SignKind::Proposal,
                view: View(7)
            })
        );
        assert_eq!(
            decode_slot(&batch(ME, 2, 3, vec![vec![1]]), ME),
            Ok(SignedSlot::Batch {
                epoch: Epoch(2),
                round: 3
            })
        );
        assert_eq!(
            decode_slot(&batch_ack(ValidatorId(4), 2, 3, h), ME),
            Ok(SignedSlot::BatchAck {
                epoch: Epoch(2),
                author: ValidatorId(4),
                round: 3,
                digest: h
            })
        );
    }

    #[test]
    fn refuses_claims_that_differ_from_the_bytes() {
        let h = Hash32::digest(b"a");
        let mut v = vote(5, h);
        v.view = Some(View(6));
        assert!(matches!(
            decode_slot(&v, ME),
            Err(SlotError::ViewMismatch { .. })
        ));
        v.view = None;
        assert!(matches!(
            decode_slot(&v, ME),
            Err(SlotError::ViewMismatch { .. })
        ));
        let mut p = proposal(7, ME, h);
        p.message = Hash32::digest(b"other block").0.to_vec();
        assert_eq!(
            decode_slot(&p, ME),
            Err(SlotError::PreimageMismatch {
                kind: SignKind::Proposal
            })
        );
        let mut b = batch(ME, 1, 1, vec![vec![1]]);
        b.digest_preimage = batch(ME, 1, 1, vec![vec![2]]).digest_preimage;
        assert!(matches!(
            decode_slot(&b, ME),
            Err(SlotError::PreimageMismatch { .. })
        ));
        assert!(matches!(
            decode_slot(&batch(ValidatorId(9), 1, 1, vec![]), ME),
            Err(SlotError::WrongAuthor { .. })
        ));
        let mut junk = vote(5, h);
        junk.message.push(0);
        assert!(matches!(
            decode_slot(&junk, ME),
            Err(SlotError::Undecodable { .. })
        ));
    }
}
