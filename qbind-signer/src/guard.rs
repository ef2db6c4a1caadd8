//! Double-sign protection for every signer mode (issue #5 "Double-sign
//! protection"; DESIGN "no honest double vote across restarts").
//!
//! A [`DoubleSignGuard`] keeps, per view-bearing message kind (proposal,
//! vote, timeout), the highest view signed and the SHA3-256 digest of the
//! message signed at that view. A request is refused when its view is lower,
//! or equal with a different message; an identical request at the same view
//! may be signed again (a retransmission signs the same bytes). The record is
//! written durably (temp file, fsync, rename, fsync dir) *before* the inner
//! signer is asked for a signature, under an exclusive file lock, and re-read
//! under that lock on every request: two processes (two nodes, or a node and
//! a restarted daemon) that share one record directory can never both sign
//! conflicting messages.
//!
//! The record is a documented JSON document (`docs/signer.md`), exported and
//! imported with [`DoubleSignGuard::export_to`] / [`DoubleSignGuard::import_from`]
//! so that a validator can move hosts; an import never lowers a mark.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use qbind_core::crypto::{PublicKey, Signature};
use qbind_core::signing::SignKind;
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::{NetworkEnvironment, ValidatorId, View};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};

use crate::durable::{create_private_dir, write_atomic};
use crate::metrics::SignerMetrics;

/// The `format` field of a record document.
pub const RECORD_FORMAT: &str = "qbind-double-sign-record";
/// The only record version this code reads and writes.
pub const RECORD_VERSION: u32 = 1;
/// File name of the record inside its directory.
pub const RECORD_FILE: &str = "double_sign_record.json";
const LOCK_FILE: &str = "double_sign_record.lock";
/// Largest record file read (a valid one is well under 1 KiB).
const MAX_RECORD_BYTES: u64 = 64 * 1024;

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

/// The persistent double-sign record (JSON, documented in `docs/signer.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoubleSignRecord {
    /// Always [`RECORD_FORMAT`].
    pub format: String,
    /// Always [`RECORD_VERSION`].
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
    /// It conflicts with what was signed before.
    #[error("conflicting {kind:?} at view {view:?} (last signed view {last_view})")]
    Conflict {
        /// The kind.
        kind: SignKind,
        /// The requested view.
        view: Option<View>,
        /// The highest view already signed.
        last_view: u64,
    },
    /// A view-bearing kind came without a view.
    #[error("{kind:?} request without a view")]
    MissingView {
        /// The kind.
        kind: SignKind,
    },
    /// The record could not be read or persisted: fail closed.
    #[error(transparent)]
    Record(#[from] RecordError),
}

fn chain_hex(env: NetworkEnvironment) -> String {
    format!("0x{:016x}", env.chain_id().0)
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
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(RECORD_FORMAT) {
            return Err(corrupt("missing or wrong `format`".into()));
        }
        let version = value
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| corrupt("missing `version`".into()))?;
        if version != u64::from(RECORD_VERSION) {
            return Err(RecordError::UnknownVersion {
                found: u32::try_from(version).unwrap_or(u32::MAX),
            });
        }
        let rec: DoubleSignRecord =
            serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        for mark in [&rec.proposal, &rec.vote, &rec.timeout]
            .into_iter()
            .flatten()
        {
            if let Some(h) = &mark.message_sha3_256
                && (h.len() != 64 || hex::decode(h).is_err())
            {
                return Err(corrupt("bad message digest".into()));
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

    /// Check `request` against the record and, if allowed, raise the mark.
    /// Returns whether the record changed.
    ///
    /// # Errors
    /// [`GuardError::Conflict`] or [`GuardError::MissingView`].
    pub fn admit(&mut self, request: &SignRequest) -> Result<bool, GuardError> {
        let Some(slot) = self.mark_mut(request.kind) else {
            return Ok(false); // kinds without views are not guarded
        };
        let view = request
            .view
            .ok_or(GuardError::MissingView { kind: request.kind })?;
        let digest = hex::encode(Sha3_256::digest(&request.message));
        match slot {
            Some(mark) if view.0 < mark.view => Err(GuardError::Conflict {
                kind: request.kind,
                view: request.view,
                last_view: mark.view,
            }),
            Some(mark) if view.0 == mark.view => {
                if mark.message_sha3_256.as_deref() == Some(digest.as_str()) {
                    Ok(false)
                } else {
                    Err(GuardError::Conflict {
                        kind: request.kind,
                        view: request.view,
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

    /// Merge `other` into `self`, keeping the higher mark per kind; equal
    /// views with different messages become a mark that refuses that view.
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
    }

    /// The document as pretty JSON.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// The durable record of one validator, shared by every signer that signs
/// for it (see the module docs).
#[derive(Debug)]
pub struct DoubleSignGuard {
    dir: PathBuf,
    validator: ValidatorId,
    env: NetworkEnvironment,
    lock: Mutex<File>,
}

impl DoubleSignGuard {
    /// Open (creating if needed) the record in directory `dir`.
    ///
    /// # Errors
    /// A [`RecordError`] if the directory cannot be used or an existing
    /// record is invalid or belongs to someone else.
    pub fn open(
        dir: impl Into<PathBuf>,
        validator: ValidatorId,
        env: NetworkEnvironment,
    ) -> Result<Self, RecordError> {
        let dir = dir.into();
        create_private_dir(&dir).map_err(|source| RecordError::Io {
            path: dir.clone(),
            source,
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| RecordError::Io {
                path: lock_path,
                source,
            })?;
        let guard = DoubleSignGuard {
            dir,
            validator,
            env,
            lock: Mutex::new(lock),
        };
        guard.with_lock(|rec| Ok::<_, RecordError>((rec.clone(), false)))?;
        Ok(guard)
    }

    /// Path of the record file.
    #[must_use]
    pub fn record_path(&self) -> PathBuf {
        self.dir.join(RECORD_FILE)
    }

    fn load(&self) -> Result<DoubleSignRecord, RecordError> {
        let path = self.record_path();
        match File::open(&path) {
            Ok(f) => {
                let len = f
                    .metadata()
                    .map_err(|source| RecordError::Io {
                        path: path.clone(),
                        source,
                    })?
                    .len();
                if len > MAX_RECORD_BYTES {
                    return Err(RecordError::Corrupt {
                        path,
                        detail: format!("{len} bytes is too large"),
                    });
                }
                let bytes = fs::read(&path).map_err(|source| RecordError::Io {
                    path: path.clone(),
                    source,
                })?;
                DoubleSignRecord::parse(&bytes, &path, self.validator, self.env)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(DoubleSignRecord::empty(self.validator, self.env))
            }
            Err(source) => Err(RecordError::Io { path, source }),
        }
    }

    fn store(&self, rec: &DoubleSignRecord) -> Result<(), RecordError> {
        let path = self.record_path();
        write_atomic(&path, &rec.to_json()).map_err(|source| RecordError::Io { path, source })
    }

    /// Run `f` on the current record under the process-wide and file lock;
    /// persist the record if `f` says it changed.
    fn with_lock<T, E: From<RecordError>>(
        &self,
        f: impl FnOnce(&mut DoubleSignRecord) -> Result<(T, bool), E>,
    ) -> Result<T, E> {
        let file = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.lock().map_err(|source| RecordError::Io {
            path: self.dir.join(LOCK_FILE),
            source,
        })?;
        let result = (|| {
            let mut rec = self.load()?;
            let (out, changed) = f(&mut rec)?;
            if changed {
                self.store(&rec)?;
            }
            Ok(out)
        })();
        let _ = file.unlock();
        result
    }

    /// Admit `request` or refuse it; when admitted, the raised mark is on
    /// stable storage before this returns.
    ///
    /// # Errors
    /// [`GuardError`].
    pub fn admit(&self, request: &SignRequest) -> Result<(), GuardError> {
        if !matches!(
            request.kind,
            SignKind::Proposal | SignKind::Vote | SignKind::Timeout
        ) {
            return Ok(());
        }
        self.with_lock(|rec| Ok::<_, GuardError>(((), rec.admit(request)?)))
    }

    /// The current record.
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn record(&self) -> Result<DoubleSignRecord, RecordError> {
        self.with_lock(|rec| Ok::<_, RecordError>((rec.clone(), false)))
    }

    /// Write the record to `path` (JSON, mode 0600), durably.
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn export_to(&self, path: &Path) -> Result<(), RecordError> {
        let rec = self.record()?;
        write_atomic(path, &rec.to_json()).map_err(|source| RecordError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Merge the record exported at `path` into this one (marks only rise).
    ///
    /// # Errors
    /// [`RecordError`], also when the file is for another validator or chain.
    pub fn import_from(&self, path: &Path) -> Result<(), RecordError> {
        let bytes = fs::read(path).map_err(|source| RecordError::Io {
            path: path.to_owned(),
            source,
        })?;
        let other = DoubleSignRecord::parse(&bytes, path, self.validator, self.env)?;
        self.with_lock(|rec| {
            let before = rec.clone();
            rec.merge(&other);
            let changed = *rec != before;
            Ok::<_, RecordError>(((), changed))
        })
    }
}

/// Any [`Signer`] behind a [`DoubleSignGuard`].
pub struct GuardedSigner {
    inner: Box<dyn Signer>,
    guard: Arc<DoubleSignGuard>,
    metrics: Arc<SignerMetrics>,
}

impl GuardedSigner {
    /// Wrap `inner`; refusals are counted in `metrics`.
    #[must_use]
    pub fn new(
        inner: Box<dyn Signer>,
        guard: Arc<DoubleSignGuard>,
        metrics: Arc<SignerMetrics>,
    ) -> Self {
        GuardedSigner {
            inner,
            guard,
            metrics,
        }
    }

    /// The guard.
    #[must_use]
    pub fn guard(&self) -> &Arc<DoubleSignGuard> {
        &self.guard
    }
}

#[async_trait]
impl Signer for GuardedSigner {
    fn validator_id(&self) -> ValidatorId {
        self.inner.validator_id()
    }

    fn public_key(&self) -> &PublicKey {
        self.inner.public_key()
    }

    async fn sign(&self, request: &SignRequest) -> Result<Signature, SignerError> {
        match self.guard.admit(request) {
            Ok(()) => self.inner.sign(request).await,
            Err(GuardError::Conflict { kind, view, .. }) => {
                self.metrics.record_double_sign_refusal();
                tracing::warn!(?kind, ?view, "refused a conflicting signing request");
                Err(SignerError::Conflict { kind, view })
            }
            Err(GuardError::MissingView { kind }) => {
                self.metrics.record_double_sign_refusal();
                Err(SignerError::Conflict { kind, view: None })
            }
            Err(GuardError::Record(e)) => {
                tracing::error!(error = %e, "double-sign record unavailable; refusing to sign");
                Err(SignerError::Unavailable {
                    detail: format!("double-sign record: {e}"),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: NetworkEnvironment = NetworkEnvironment::Testnet;

    fn req(kind: SignKind, view: u64, msg: &[u8]) -> SignRequest {
        SignRequest {
            kind,
            view: Some(View(view)),
            message: msg.to_vec(),
        }
    }

    #[test]
    fn refuses_lower_and_conflicting_views_but_allows_retransmission() {
        let dir = tempfile::tempdir().unwrap();
        let g = DoubleSignGuard::open(dir.path(), ValidatorId(1), ENV).unwrap();
        g.admit(&req(SignKind::Vote, 5, b"a")).unwrap();
        g.admit(&req(SignKind::Vote, 5, b"a")).unwrap();
        assert!(matches!(
            g.admit(&req(SignKind::Vote, 5, b"b")),
            Err(GuardError::Conflict { last_view: 5, .. })
        ));
        assert!(matches!(
            g.admit(&req(SignKind::Vote, 4, b"a")),
            Err(GuardError::Conflict { .. })
        ));
        // Kinds are independent.
        g.admit(&req(SignKind::Timeout, 5, b"t")).unwrap();
        g.admit(&req(SignKind::Proposal, 3, b"p")).unwrap();
        g.admit(&req(SignKind::Vote, 6, b"b")).unwrap();
        // Unguarded kinds pass, guarded kinds need a view.
        g.admit(&SignRequest {
            kind: SignKind::Tx,
            view: None,
            message: vec![1],
        })
        .unwrap();
        assert!(matches!(
            g.admit(&SignRequest {
                kind: SignKind::Vote,
                view: None,
                message: vec![1],
            }),
            Err(GuardError::MissingView { .. })
        ));
    }

    #[test]
    fn survives_reopen_and_is_shared_between_two_handles() {
        let dir = tempfile::tempdir().unwrap();
        let a = DoubleSignGuard::open(dir.path(), ValidatorId(1), ENV).unwrap();
        let b = DoubleSignGuard::open(dir.path(), ValidatorId(1), ENV).unwrap();
        a.admit(&req(SignKind::Proposal, 9, b"x")).unwrap();
        // The second handle (another node sharing the signer) sees it at once.
        assert!(b.admit(&req(SignKind::Proposal, 9, b"y")).is_err());
        drop((a, b));
        let c = DoubleSignGuard::open(dir.path(), ValidatorId(1), ENV).unwrap();
        assert!(c.admit(&req(SignKind::Proposal, 9, b"y")).is_err());
        assert_eq!(c.record().unwrap().proposal.unwrap().view, 9);
    }

    #[test]
    fn export_import_only_raises_marks() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let a = DoubleSignGuard::open(d1.path(), ValidatorId(1), ENV).unwrap();
        a.admit(&req(SignKind::Vote, 10, b"v")).unwrap();
        a.admit(&req(SignKind::Timeout, 2, b"t")).unwrap();
        let exported = d1.path().join("export.json");
        a.export_to(&exported).unwrap();
        let b = DoubleSignGuard::open(d2.path(), ValidatorId(1), ENV).unwrap();
        b.admit(&req(SignKind::Timeout, 7, b"t7")).unwrap();
        b.import_from(&exported).unwrap();
        let rec = b.record().unwrap();
        assert_eq!(rec.vote.unwrap().view, 10);
        assert_eq!(rec.timeout.unwrap().view, 7);
        assert!(b.admit(&req(SignKind::Vote, 10, b"other")).is_err());
        // Another validator's record is refused.
        let c = DoubleSignGuard::open(tempfile::tempdir().unwrap().path(), ValidatorId(2), ENV)
            .unwrap();
        assert!(matches!(
            c.import_from(&exported),
            Err(RecordError::WrongOwner { .. })
        ));
    }

    #[test]
    fn merge_of_conflicting_marks_refuses_the_view() {
        let mut a = DoubleSignRecord::empty(ValidatorId(1), ENV);
        let mut b = a.clone();
        a.admit(&req(SignKind::Vote, 3, b"a")).unwrap();
        b.admit(&req(SignKind::Vote, 3, b"b")).unwrap();
        a.merge(&b);
        assert!(a.admit(&req(SignKind::Vote, 3, b"a")).is_err());
        assert!(a.admit(&req(SignKind::Vote, 3, b"b")).is_err());
        assert!(a.admit(&req(SignKind::Vote, 4, b"c")).unwrap());
    }

    #[test]
    fn damaged_records_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let g = DoubleSignGuard::open(dir.path(), ValidatorId(1), ENV).unwrap();
        g.admit(&req(SignKind::Vote, 1, b"a")).unwrap();
        fs::write(g.record_path(), b"{not json").unwrap();
        assert!(matches!(
            g.admit(&req(SignKind::Vote, 2, b"a")),
            Err(GuardError::Record(RecordError::Corrupt { .. }))
        ));
        let mut doc = DoubleSignRecord::empty(ValidatorId(1), ENV);
        doc.version = 9;
        fs::write(g.record_path(), doc.to_json()).unwrap();
        assert!(matches!(
            DoubleSignGuard::open(dir.path(), ValidatorId(1), ENV),
            Err(RecordError::UnknownVersion { found: 9 })
        ));
    }
}
