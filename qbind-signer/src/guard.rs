//! Double-sign protection for every signer mode (issue #5 "Double-sign
//! protection"; issue #22 findings 1–3; DESIGN "no honest double vote
//! across restarts").
//!
//! A [`DoubleSignGuard`] admits a request only if the slot it signs —
//! decoded from the signed bytes by [`crate::slot`], never taken from the
//! client's claim — does not conflict with the [`DoubleSignRecord`]
//! ([`crate::record`] has the rules per kind). An admitted mark is written
//! durably (temp file, fsync, rename, fsync dir) *before* the inner signer
//! is asked for a signature.
//!
//! The record is loaded once, at start-up, and held in memory from then on:
//! - at start-up a missing record is refused ([`RecordError::Missing`]);
//!   only [`DoubleSignGuard::init`] — the key-creation path and the
//!   operator's explicit, logged initialisation flag — creates an empty one;
//! - on every request the file is re-read under an exclusive file lock and
//!   *merged* into the marks in memory (marks only rise), so two processes
//!   that share one record directory still never both sign conflicting
//!   messages, while a record deleted or replaced by an older copy while
//!   running cannot lower a mark: the guard writes its marks back.
//!
//! The record is a documented JSON document (`docs/signer.md`), exported and
//! imported with [`DoubleSignGuard::export_to`] / [`DoubleSignGuard::import_from`]
//! so that a validator can move hosts; an import never lowers a mark.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use qbind_core::crypto::{PublicKey, Signature};
use qbind_core::traits::{SignRequest, Signer, SignerError};
use qbind_core::types::{NetworkEnvironment, ValidatorId};

use crate::durable::{create_private_dir, write_atomic};
use crate::metrics::SignerMetrics;
pub use crate::record::{
    ACK_WINDOW, AckMarks, AuthorAcks, BatchMark, DoubleSignRecord, GuardError, MAX_ACK_AUTHORS,
    MAX_RECORD_BYTES, RECORD_FORMAT, RECORD_VERSION, RecordError, SignedMark,
};

/// File name of the record inside its directory.
pub const RECORD_FILE: &str = "double_sign_record.json";
const LOCK_FILE: &str = "double_sign_record.lock";

/// Read at most [`MAX_RECORD_BYTES`] of `path` through one handle; `None`
/// if it does not exist.
///
/// # Errors
/// [`RecordError::Io`] or [`RecordError::Corrupt`] (too large).
pub fn read_record_file(path: &Path) -> Result<Option<Vec<u8>>, RecordError> {
    let io = |source| RecordError::Io {
        path: path.to_owned(),
        source,
    };
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(RecordError::Corrupt {
            path: path.to_owned(),
            detail: format!("more than {MAX_RECORD_BYTES} bytes"),
        });
    }
    Ok(Some(bytes))
}

struct GuardState {
    lock: File,
    /// The marks: everything loaded or admitted since start-up.
    record: DoubleSignRecord,
}

/// The durable record of one validator, shared by every signer that signs
/// for it (see the module docs).
pub struct DoubleSignGuard {
    dir: PathBuf,
    validator: ValidatorId,
    env: NetworkEnvironment,
    state: Mutex<GuardState>,
}

impl std::fmt::Debug for DoubleSignGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoubleSignGuard")
            .field("dir", &self.dir)
            .field("validator", &self.validator)
            .finish_non_exhaustive()
    }
}

impl DoubleSignGuard {
    /// Open the existing record in directory `dir`.
    ///
    /// # Errors
    /// [`RecordError::Missing`] when there is no record (see
    /// `docs/signer.md` "Losing the record"); another [`RecordError`] if the
    /// directory cannot be used or the record is invalid or someone else's.
    pub fn open(
        dir: impl Into<PathBuf>,
        validator: ValidatorId,
        env: NetworkEnvironment,
    ) -> Result<Self, RecordError> {
        Self::start(dir.into(), validator, env, false)
    }

    /// Open the record in `dir`, creating an empty one if there is none.
    /// For key creation (`qbind-keygen`) and the operator's explicit
    /// initialisation flag only: an empty record allows signing anything.
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn init(
        dir: impl Into<PathBuf>,
        validator: ValidatorId,
        env: NetworkEnvironment,
    ) -> Result<Self, RecordError> {
        Self::start(dir.into(), validator, env, true)
    }

    fn start(
        dir: PathBuf,
        validator: ValidatorId,
        env: NetworkEnvironment,
        create: bool,
    ) -> Result<Self, RecordError> {
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
                path: lock_path.clone(),
                source,
            })?;
        lock.lock().map_err(|source| RecordError::Io {
            path: lock_path,
            source,
        })?;
        let path = dir.join(RECORD_FILE);
        let loaded = (|| {
            let record = match read_record_file(&path)? {
                Some(bytes) => DoubleSignRecord::parse(&bytes, &path, validator, env)?,
                None if create => {
                    let record = DoubleSignRecord::empty(validator, env);
                    write_atomic(&path, &record.to_json()).map_err(|source| RecordError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    tracing::warn!(
                        path = %path.display(),
                        validator = validator.0,
                        "created an EMPTY double-sign record: this validator must never have \
                         signed anything with this key before"
                    );
                    record
                }
                None => return Err(RecordError::Missing { path: path.clone() }),
            };
            Ok(record)
        })();
        let _ = lock.unlock();
        let record = loaded?;
        Ok(DoubleSignGuard {
            dir,
            validator,
            env,
            state: Mutex::new(GuardState { lock, record }),
        })
    }

    /// Path of the record file.
    #[must_use]
    pub fn record_path(&self) -> PathBuf {
        self.dir.join(RECORD_FILE)
    }

    /// Run `f` on the marks under the process-wide and file lock: first
    /// merge in whatever is on disk (another process may have signed), then
    /// let `f` decide, then write the marks back if they differ from the
    /// file (a change, or a file deleted or replaced behind our back).
    fn with_lock<T, E: From<RecordError>>(
        &self,
        f: impl FnOnce(&mut DoubleSignRecord) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let path = self.record_path();
        state.lock.lock().map_err(|source| RecordError::Io {
            path: self.dir.join(LOCK_FILE),
            source,
        })?;
        let result = (|| {
            let on_disk = match read_record_file(&path)? {
                Some(bytes) => Some(DoubleSignRecord::parse(
                    &bytes,
                    &path,
                    self.validator,
                    self.env,
                )?),
                None => {
                    tracing::error!(
                        path = %path.display(),
                        "double-sign record vanished while running; rewriting it from memory"
                    );
                    None
                }
            };
            let mut rec = state.record.clone();
            if let Some(disk) = &on_disk {
                rec.merge(disk);
            }
            let out = f(&mut rec)?;
            if on_disk.as_ref() != Some(&rec) {
                write_atomic(&path, &rec.to_json()).map_err(|source| RecordError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
            state.record = rec;
            Ok(out)
        })();
        let _ = state.lock.unlock();
        result
    }

    /// Admit `request` or refuse it; when admitted, the raised mark is on
    /// stable storage before this returns.
    ///
    /// # Errors
    /// [`GuardError`].
    pub fn admit(&self, request: &SignRequest) -> Result<(), GuardError> {
        self.with_lock(|rec| rec.admit(request).map(|_| ()))
    }

    /// The current marks (merged with the file).
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn record(&self) -> Result<DoubleSignRecord, RecordError> {
        self.with_lock(|rec| Ok::<_, RecordError>(rec.clone()))
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
    /// [`RecordError`], also when the file is missing or for another
    /// validator or chain.
    pub fn import_from(&self, path: &Path) -> Result<(), RecordError> {
        let bytes = read_record_file(path)?.ok_or_else(|| RecordError::Missing {
            path: path.to_owned(),
        })?;
        let other = DoubleSignRecord::parse(&bytes, path, self.validator, self.env)?;
        self.with_lock(|rec| {
            rec.merge(&other);
            Ok::<_, RecordError>(())
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
        let refused = SignerError::Conflict {
            kind: request.kind,
            view: request.view,
        };
        match self.guard.admit(request) {
            Ok(()) => self.inner.sign(request).await,
            Err(GuardError::Mismatch(e)) => {
                self.metrics.record_request_mismatch();
                self.metrics.record_double_sign_refusal();
                tracing::warn!(error = %e, "refused a request whose bytes disagree with its claims");
                Err(refused)
            }
            Err(GuardError::Record(e)) => {
                tracing::error!(error = %e, "double-sign record unavailable; refusing to sign");
                Err(SignerError::Unavailable {
                    detail: format!("double-sign record: {e}"),
                })
            }
            Err(e) => {
                self.metrics.record_double_sign_refusal();
                tracing::warn!(error = %e, "refused a conflicting signing request");
                Err(refused)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::requests::{proposal, timeout, vote};
    use qbind_core::signing::SignKind;
    use qbind_core::types::{Hash32, View};

    const ENV: NetworkEnvironment = NetworkEnvironment::Testnet;
    const ME: ValidatorId = ValidatorId(1);

    fn req(kind: SignKind, view: u64, msg: &[u8]) -> SignRequest {
        let h = Hash32::digest(msg);
        match kind {
            SignKind::Vote => vote(view, h),
            SignKind::Proposal => proposal(view, ME, h),
            // The high-QC view stands in for the message.
            _ => timeout(view, u64::from(msg[0])),
        }
    }

    #[test]
    fn refuses_lower_and_conflicting_views_but_allows_retransmission() {
        let dir = tempfile::tempdir().unwrap();
        let g = DoubleSignGuard::init(dir.path(), ME, ENV).unwrap();
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
        // Unguarded kinds pass, guarded kinds need their view.
        g.admit(&SignRequest {
            kind: SignKind::Tx,
            view: None,
            message: vec![1],
            digest_preimage: Vec::new(),
        })
        .unwrap();
        let mut no_view = req(SignKind::Vote, 7, b"c");
        no_view.view = None;
        assert!(matches!(g.admit(&no_view), Err(GuardError::Mismatch(_))));
    }

    #[test]
    fn survives_reopen_and_is_shared_between_two_handles() {
        let dir = tempfile::tempdir().unwrap();
        let a = DoubleSignGuard::init(dir.path(), ME, ENV).unwrap();
        let b = DoubleSignGuard::open(dir.path(), ME, ENV).unwrap();
        a.admit(&req(SignKind::Proposal, 9, b"x")).unwrap();
        // The second handle (another node sharing the signer) sees it at once.
        assert!(b.admit(&req(SignKind::Proposal, 9, b"y")).is_err());
        drop((a, b));
        let c = DoubleSignGuard::open(dir.path(), ME, ENV).unwrap();
        assert!(c.admit(&req(SignKind::Proposal, 9, b"y")).is_err());
        assert_eq!(c.record().unwrap().proposal.unwrap().view, 9);
    }

    #[test]
    fn export_import_only_raises_marks() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let a = DoubleSignGuard::init(d1.path(), ME, ENV).unwrap();
        a.admit(&req(SignKind::Vote, 10, b"v")).unwrap();
        a.admit(&req(SignKind::Timeout, 2, b"t")).unwrap();
        let exported = d1.path().join("export.json");
        a.export_to(&exported).unwrap();
        let b = DoubleSignGuard::init(d2.path(), ME, ENV).unwrap();
        b.admit(&req(SignKind::Timeout, 7, b"t")).unwrap();
        b.import_from(&exported).unwrap();
        let rec = b.record().unwrap();
        assert_eq!(rec.vote.unwrap().view, 10);
        assert_eq!(rec.timeout.unwrap().view, 7);
        assert!(b.admit(&req(SignKind::Vote, 10, b"other")).is_err());
        // Another validator's record is refused.
        let c = DoubleSignGuard::init(tempfile::tempdir().unwrap().path(), ValidatorId(2), ENV)
            .unwrap();
        assert!(matches!(
            c.import_from(&exported),
            Err(RecordError::WrongOwner { .. })
        ));
    }

    #[test]
    fn merge_of_conflicting_marks_refuses_the_view() {
        let mut a = DoubleSignRecord::empty(ME, ENV);
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
        let g = DoubleSignGuard::init(dir.path(), ME, ENV).unwrap();
        g.admit(&req(SignKind::Vote, 1, b"a")).unwrap();
        std::fs::write(g.record_path(), b"{not json").unwrap();
        assert!(matches!(
            g.admit(&req(SignKind::Vote, 2, b"a")),
            Err(GuardError::Record(RecordError::Corrupt { .. }))
        ));
        let mut doc = DoubleSignRecord::empty(ME, ENV);
        doc.version = 9;
        std::fs::write(g.record_path(), doc.to_json()).unwrap();
        assert!(matches!(
            DoubleSignGuard::open(dir.path(), ME, ENV),
            Err(RecordError::UnknownVersion { found: 9 })
        ));
        // An oversized file is refused without reading it all.
        std::fs::write(g.record_path(), vec![b' '; MAX_RECORD_BYTES as usize + 10]).unwrap();
        assert!(matches!(
            DoubleSignGuard::open(dir.path(), ME, ENV),
            Err(RecordError::Corrupt { .. })
        ));
    }

    #[test]
    fn version_1_records_are_read_and_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let mut v1 = serde_json::to_value(DoubleSignRecord::empty(ME, ENV)).unwrap();
        let obj = v1.as_object_mut().unwrap();
        obj.insert("version".into(), 1.into());
        obj.remove("batch");
        obj.remove("batch_acks");
        obj.insert(
            "vote".into(),
            serde_json::json!({"view": 4, "message_sha3_256": "00".repeat(32)}),
        );
        std::fs::write(
            dir.path().join(RECORD_FILE),
            serde_json::to_vec(&v1).unwrap(),
        )
        .unwrap();
        let g = DoubleSignGuard::open(dir.path(), ME, ENV).unwrap();
        assert!(g.admit(&req(SignKind::Vote, 3, b"a")).is_err());
        g.admit(&req(SignKind::Vote, 5, b"a")).unwrap();
        assert_eq!(g.record().unwrap().version, RECORD_VERSION);
        let _ = View(0);
    }
}
