//! The double-sign record document (`docs/signer.md` "Double-sign record"):
//! per slot-bearing kind, what was signed last, and the rule that admits or
//! refuses a new request against it (issue #5 "Double-sign protection";
//! issue #22 findings 1 and 2).
//!
//! Every rule works on the slot *decoded from the signed bytes*
//! ([`crate::slot::decode_slot`]), never on what a client claims:
//!
//! - proposal, vote, timeout: the highest view signed and the digest of the
//!   message signed there; a lower view, or the same view with another
//!   message, is refused;
//! - batch (our own): the highest (epoch, round) signed and the digest of the
//!   batch signed there; a lower slot, or the same slot with another batch,
//!   is refused;
//! - batch ack: for the highest epoch acked, per author, the digests acked in
//!   the newest [`ACK_WINDOW`] rounds; acking another digest for an acked
//!   slot, a round below the window, or an older epoch is refused. At most
//!   [`MAX_ACK_AUTHORS`] authors are tracked (a bound an attacker cannot pass:
//!   past it, acks for new authors are refused, never forgotten).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qbind_core::signing::SignKind;
use qbind_core::traits::SignRequest;
use qbind_core::types::{Epoch, Hash32, NetworkEnvironment, ValidatorId, View};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};

use crate::slot::{SignedSlot, SlotError, decode_slot};

/// The `format` field of a record document.
pub const RECORD_FORMAT: &str = "qbind-double-sign-record";
/// The record version this code writes (2 adds `batch` and `batch_acks`).
pub const RECORD_VERSION: u32 = 2;
/// The oldest record version this code still reads (a version-1 record has
/// no batch marks and reads as "no batch signed, no ack sent").
pub const OLDEST_READABLE_RECORD_VERSION: u32 = 1;
/// Rounds per author whose ack digests are remembered: an ack for a round
/// this far below the author's highest acked round is refused, because the
/// record can no longer tell whether it conflicts. Honest validators ack
/// batches of one author nearly in order; 16 rounds absorbs reordering.
pub const ACK_WINDOW: u64 = 16;
/// Most authors whose acks are tracked in one epoch (the codec's bound on a
/// validator set).
pub const MAX_ACK_AUTHORS: usize = 1024;
/// Largest record file read: [`MAX_ACK_AUTHORS`] × [`ACK_WINDOW`] digests
/// with their JSON framing fit well below this.
pub const MAX_RECORD_BYTES: u64 = 8 * 1024 * 1024;

/// The last signed view of one kind and what was signed there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedMark {
    /// The highest view signed for this kind.
    pub view: u64,
    /// Lowercase hex SHA3-256 of the message signed at `view`; `null` when two
    /// conflicting records were merged, which refuses every message at `view`.
    pub message_sha3_256: Option<String>,
}

/// Our highest DAG batch slot and what was signed there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchMark {
    /// Epoch of the highest slot.
    pub epoch: u64,
    /// Round of the highest slot.
    pub round: u64,
    /// Lowercase hex SHA3-256 of the message (the batch digest) signed
    /// there; `null` after merging two conflicting records.
    pub message_sha3_256: Option<String>,
}

/// The acks sent for one author's batches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthorAcks {
    /// Highest round acked.
    pub high_round: u64,
    /// Round → lowercase hex batch digest acked (`null`: two conflicting
    /// records were merged; the slot is refused). Only rounds within
    /// [`ACK_WINDOW`] of `high_round`.
    pub acked: BTreeMap<u64, Option<String>>,
}

/// The acks sent in the highest epoch acked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AckMarks {
    /// The epoch; acks for older epochs are refused.
    pub epoch: u64,
    /// Per author (validator id).
    pub authors: BTreeMap<u32, AuthorAcks>,
}

/// The persistent double-sign record (JSON, documented in `docs/signer.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoubleSignRecord {
    /// Always [`RECORD_FORMAT`].
    pub format: String,
    /// [`RECORD_VERSION`] (or an older readable version).
    pub version: u32,
    /// The validator the record belongs to.
    pub validator_id: u32,
    /// The chain the record belongs to, `0x` + 16 hex digits.
    pub chain_id: String,
    /// Highest proposal signed.
    pub proposal: Option<SignedMark>,
    /// Highest vote signed.
    pub vote: Option<SignedMark>,
    /// Highest timeout signed.
    pub timeout: Option<SignedMark>,
    /// Highest own batch signed.
    #[serde(default)]
    pub batch: Option<BatchMark>,
    /// Acks sent.
    #[serde(default)]
    pub batch_acks: Option<AckMarks>,
}

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// File system failure.
    #[error("double-sign record {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// There is no record where one must be (see `docs/signer.md`,
    /// "Losing the record").
    #[error(
        "double-sign record {path} does not exist: refusing to start with no record of what \
         was signed (create it with the key, or pass the explicit initialisation flag)"
    )]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a valid record.
    #[error("double-sign record {path} is corrupt: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The record has a format version this code does not know.
    #[error("double-sign record version {found} is not supported (expected {RECORD_VERSION})")]
    UnknownVersion {
        /// Version found.
        found: u32,
    },
    /// The record belongs to another validator or chain.
    #[error(
        "double-sign record is for validator {found_validator} on chain {found_chain}, not {expected_validator} on {expected_chain}"
    )]
    WrongOwner {
        /// Expected validator.
        expected_validator: u32,
        /// Expected chain ID.
        expected_chain: String,
        /// Validator in the file.
        found_validator: u32,
        /// Chain in the file.
        found_chain: String,
    },
}

/// Why a request was not allowed through the guard.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A proposal, vote or timeout conflicts with what was signed before.
    #[error("conflicting {kind:?} at view {view:?} (last signed view {last_view})")]
    Conflict {
        /// The kind.
        kind: SignKind,
        /// The view decoded from the request.
        view: Option<View>,
        /// The highest view already signed.
        last_view: u64,
    },
    /// A batch for a slot at or below one already signed, with other bytes.
    #[error(
        "conflicting batch for epoch {epoch} round {round} (last signed epoch {last_epoch} round {last_round})"
    )]
    BatchConflict {
        /// Epoch requested.
        epoch: u64,
        /// Round requested.
        round: u64,
        /// Epoch of the highest batch signed.
        last_epoch: u64,
        /// Round of the highest batch signed.
        last_round: u64,
    },
    /// An ack that conflicts with one sent, or that the record cannot check
    /// (older epoch, round below the window, too many authors).
    #[error("refused ack for validator {author}'s batch at epoch {epoch} round {round}: {why}")]
    AckConflict {
        /// Epoch of the batch.
        epoch: u64,
        /// Author of the batch.
        author: u32,
        /// Round of the batch.
        round: u64,
        /// Which rule refused it.
        why: &'static str,
    },
    /// The request's bytes disagree with its claims: refused and counted.
    #[error(transparent)]
    Mismatch(#[from] SlotError),
    /// The record could not be read or persisted: fail closed.
    #[error(transparent)]
    Record(#[from] RecordError),
}

pub(crate) fn chain_hex(env: NetworkEnvironment) -> String {
    format!("0x{:016x}", env.chain_id().0)
}

fn digest_hex(bytes: &[u8]) -> String {
    hex::encode(Sha3_256::digest(bytes))
}

fn valid_hex(h: &str) -> bool {
    h.len() == 64 && hex::decode(h).is_ok()
}

impl DoubleSignRecord {
    /// An empty record for `validator` on `env`.
    #[must_use]
    pub fn empty(validator: ValidatorId, env: NetworkEnvironment) -> Self {
        DoubleSignRecord {
            format: RECORD_FORMAT.to_owned(),
            version: RECORD_VERSION,
            validator_id: validator.0,
            chain_id: chain_hex(env),
            proposal: None,
            vote: None,
            timeout: None,
            batch: None,
            batch_acks: None,
        }
    }

    /// Parse and check a record document.
    ///
    /// # Errors
    /// [`RecordError::Corrupt`], [`RecordError::UnknownVersion`] or
    /// [`RecordError::WrongOwner`].
    pub fn parse(
        bytes: &[u8],
        path: &Path,
        validator: ValidatorId,
        env: NetworkEnvironment,
    ) -> Result<Self, RecordError> {
        let corrupt = |detail: String| RecordError::Corrupt {
            path: path.to_owned(),
            detail,
        };
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err(corrupt(format!("{} bytes is too large", bytes.len())));
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(RECORD_FORMAT) {
            return Err(corrupt("missing or wrong `format`".into()));
        }
        let version = value
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| corrupt("missing `version`".into()))?;
        if !(u64::from(OLDEST_READABLE_RECORD_VERSION)..=u64::from(RECORD_VERSION))
            .contains(&version)
        {
            return Err(RecordError::UnknownVersion {
                found: u32::try_from(version).unwrap_or(u32::MAX),
            });
        }
        let mut rec: DoubleSignRecord =
            serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        if version < u64::from(RECORD_VERSION) && (rec.batch.is_some() || rec.batch_acks.is_some())
        {
            return Err(corrupt("batch marks in a version-1 record".into()));
        }
        rec.version = RECORD_VERSION;
        let digests = [&rec.proposal, &rec.vote, &rec.timeout]
            .into_iter()
            .flatten()
            .filter_map(|m| m.message_sha3_256.as_deref())
            .chain(
                rec.batch
                    .iter()
                    .filter_map(|b| b.message_sha3_256.as_deref()),
            );
        for h in digests {
            if !valid_hex(h) {
                return Err(corrupt("bad message digest".into()));
            }
        }
        if let Some(acks) = &rec.batch_acks {
            if acks.authors.len() > MAX_ACK_AUTHORS {
                return Err(corrupt("too many ack authors".into()));
            }
            for a in acks.authors.values() {
                let in_window = a
                    .acked
                    .keys()
                    .all(|r| r.saturating_add(ACK_WINDOW) > a.high_round);
                if a.acked.len() as u64 > ACK_WINDOW
                    || !in_window
                    || a.acked.keys().any(|r| *r > a.high_round)
                {
                    return Err(corrupt("ack rounds outside the window".into()));
                }
                if a.acked.values().flatten().any(|h| !valid_hex(h)) {
                    return Err(corrupt("bad ack digest".into()));
                }
            }
        }
        if rec.validator_id != validator.0 || rec.chain_id != chain_hex(env) {
            return Err(RecordError::WrongOwner {
                expected_validator: validator.0,
                expected_chain: chain_hex(env),
                found_validator: rec.validator_id,
                found_chain: rec.chain_id,
            });
        }
        Ok(rec)
    }

    fn mark_mut(&mut self, kind: SignKind) -> Option<&mut Option<SignedMark>> {
        match kind {
            SignKind::Proposal => Some(&mut self.proposal),
            SignKind::Vote => Some(&mut self.vote),
            SignKind::Timeout => Some(&mut self.timeout),
            _ => None,
        }
    }

    /// Decode what `request` signs, check it against the record and, if
    /// allowed, raise the mark. Returns whether the record changed.
    ///
    /// # Errors
    /// [`GuardError::Mismatch`] when the request's bytes disagree with its
    /// claims; [`GuardError::Conflict`], [`GuardError::BatchConflict`] or
    /// [`GuardError::AckConflict`] when it conflicts with the record.
    pub fn admit(&mut self, request: &SignRequest) -> Result<bool, GuardError> {
        let slot = decode_slot(request, ValidatorId(self.validator_id))?;
        let digest = digest_hex(&request.message);
        match slot {
            SignedSlot::Unguarded => Ok(false),
            SignedSlot::View { kind, view } => self.admit_view(kind, view, digest),
            SignedSlot::Batch { epoch, round } => self.admit_batch(epoch, round, digest),
            SignedSlot::BatchAck {
                epoch,
                author,
                round,
                digest,
            } => self.admit_ack(epoch, author, round, digest),
        }
    }

    fn admit_view(
        &mut self,
        kind: SignKind,
        view: View,
        digest: String,
    ) -> Result<bool, GuardError> {
        let Some(slot) = self.mark_mut(kind) else {
            return Ok(false);
        };
        match slot {
            Some(mark) if view.0 < mark.view => Err(GuardError::Conflict {
                kind,
                view: Some(view),
                last_view: mark.view,
            }),
            Some(mark) if view.0 == mark.view => {
                if mark.message_sha3_256.as_deref() == Some(digest.as_str()) {
                    Ok(false)
                } else {
                    Err(GuardError::Conflict {
                        kind,
                        view: Some(view),
                        last_view: mark.view,
                    })
                }
            }
            _ => {
                *slot = Some(SignedMark {
                    view: view.0,
                    message_sha3_256: Some(digest),
                });
                Ok(true)
            }
        }
    }

    fn admit_batch(
        &mut self,
        epoch: Epoch,
        round: u64,
        digest: String,
    ) -> Result<bool, GuardError> {
        let slot = (epoch.0, round);
        match &self.batch {
            Some(mark) if slot < (mark.epoch, mark.round) => Err(GuardError::BatchConflict {
                epoch: epoch.0,
                round,
                last_epoch: mark.epoch,
                last_round: mark.round,
            }),
            Some(mark) if slot == (mark.epoch, mark.round) => {
                if mark.message_sha3_256.as_deref() == Some(digest.as_str()) {
                    Ok(false)
                } else {
                    Err(GuardError::BatchConflict {
                        epoch: epoch.0,
                        round,
                        last_epoch: mark.epoch,
                        last_round: mark.round,
                    })
                }
            }
            _ => {
                self.batch = Some(BatchMark {
                    epoch: epoch.0,
                    round,
                    message_sha3_256: Some(digest),
                });
                Ok(true)
            }
        }
    }

    fn admit_ack(
        &mut self,
        epoch: Epoch,
        author: ValidatorId,
        round: u64,
        batch: Hash32,
    ) -> Result<bool, GuardError> {
        let refuse = |why| GuardError::AckConflict {
            epoch: epoch.0,
            author: author.0,
            round,
            why,
        };
        let acks = self.batch_acks.get_or_insert_with(|| AckMarks {
            epoch: epoch.0,
            authors: BTreeMap::new(),
        });
        if epoch.0 < acks.epoch {
            return Err(refuse("an ack for a later epoch was sent"));
        }
        if epoch.0 > acks.epoch {
            acks.epoch = epoch.0;
            acks.authors.clear();
        }
        if !acks.authors.contains_key(&author.0) && acks.authors.len() >= MAX_ACK_AUTHORS {
            return Err(refuse("too many authors acked in this epoch"));
        }
        let entry = acks.authors.entry(author.0).or_default();
        let digest = hex::encode(batch.0);
        if entry.acked.is_empty() && entry.high_round == 0 {
            entry.high_round = round;
        }
        if round.saturating_add(ACK_WINDOW) <= entry.high_round {
            return Err(refuse("round below the remembered window"));
        }
        match entry.acked.get(&round) {
            Some(Some(d)) if *d == digest => return Ok(false),
            Some(_) => return Err(refuse("another digest was acked for this slot")),
            None => {}
        }
        entry.acked.insert(round, Some(digest));
        entry.high_round = entry.high_round.max(round);
        let high = entry.high_round;
        entry
            .acked
            .retain(|r, _| r.saturating_add(ACK_WINDOW) > high);
        Ok(true)
    }

    /// Merge `other` into `self`, keeping the higher mark per kind; equal
    /// slots with different messages become a mark that refuses that slot.
    pub fn merge(&mut self, other: &DoubleSignRecord) {
        fn merge_one(a: &mut Option<SignedMark>, b: &Option<SignedMark>) {
            match (a.as_mut(), b) {
                (_, None) => {}
                (None, Some(b)) => *a = Some(b.clone()),
                (Some(x), Some(y)) if y.view > x.view => *x = y.clone(),
                (Some(x), Some(y))
                    if y.view == x.view && x.message_sha3_256 != y.message_sha3_256 =>
                {
                    x.message_sha3_256 = None;
                }
                _ => {}
            }
        }
        merge_one(&mut self.proposal, &other.proposal);
        merge_one(&mut self.vote, &other.vote);
        merge_one(&mut self.timeout, &other.timeout);
        match (self.batch.as_mut(), &other.batch) {
            (_, None) => {}
            (None, Some(b)) => self.batch = Some(b.clone()),
            (Some(x), Some(y)) if (y.epoch, y.round) > (x.epoch, x.round) => *x = y.clone(),
            (Some(x), Some(y))
                if (y.epoch, y.round) == (x.epoch, x.round)
                    && x.message_sha3_256 != y.message_sha3_256 =>
            {
                x.message_sha3_256 = None;
            }
            _ => {}
        }
        match (self.batch_acks.as_mut(), &other.batch_acks) {
            (_, None) => {}
            (None, Some(b)) => self.batch_acks = Some(b.clone()),
            (Some(x), Some(y)) if y.epoch > x.epoch => *x = y.clone(),
            (Some(x), Some(y)) if y.epoch == x.epoch => {
                for (author, theirs) in &y.authors {
                    if !x.authors.contains_key(author) && x.authors.len() >= MAX_ACK_AUTHORS {
                        continue;
                    }
                    let ours = x.authors.entry(*author).or_default();
                    ours.high_round = ours.high_round.max(theirs.high_round);
                    for (round, d) in &theirs.acked {
                        match ours.acked.get(round) {
                            None => {
                                ours.acked.insert(*round, d.clone());
                            }
                            Some(mine) if mine != d => {
                                ours.acked.insert(*round, None);
                            }
                            Some(_) => {}
                        }
                    }
                    let high = ours.high_round;
                    ours.acked
                        .retain(|r, _| r.saturating_add(ACK_WINDOW) > high);
                }
            }
            _ => {}
        }
    }

    /// The document as pretty JSON.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings, integers and maps cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}
