//! Harnesses and helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::process::Command;

use qbind_core::traits::{MemoryBackend, StorageError};
use qbind_store::conformance::Harness;
use qbind_store::{FjallBackend, PersistentBackend};

/// Conformance harness for the in-memory backend.
pub struct MemoryHarness(pub tempfile::TempDir);

impl Harness for MemoryHarness {
    type Backend = MemoryBackend;
    fn fresh(&mut self) -> Result<MemoryBackend, StorageError> {
        Ok(MemoryBackend::new())
    }
    fn reopen(&mut self, store: MemoryBackend) -> Result<MemoryBackend, StorageError> {
        Ok(store)
    }
    fn open_checkpoint(&mut self, dir: &Path) -> Result<MemoryBackend, StorageError> {
        MemoryBackend::open_checkpoint(dir)
    }
    fn scratch_dir(&mut self) -> PathBuf {
        self.0.path().to_path_buf()
    }
}

/// Conformance harness for any persistent backend: one directory per store.
pub struct DirHarness<B> {
    pub root: tempfile::TempDir,
    next: u32,
    current: Option<PathBuf>,
    _backend: std::marker::PhantomData<B>,
}

impl<B> DirHarness<B> {
    pub fn new() -> Self {
        DirHarness {
            root: tempfile::tempdir().unwrap(),
            next: 0,
            current: None,
            _backend: std::marker::PhantomData,
        }
    }
}

impl<B: PersistentBackend> Harness for DirHarness<B> {
    type Backend = B;
    fn fresh(&mut self) -> Result<B, StorageError> {
        self.next += 1;
        let path = self.root.path().join(format!("db{}", self.next));
        let store = B::open_dir(&path)?;
        self.current = Some(path);
        Ok(store)
    }
    fn reopen(&mut self, store: B) -> Result<B, StorageError> {
        // The store was created last by `fresh` in every case of the suite.
        drop(store);
        let path = self.current.clone().unwrap();
        B::open_dir(&path)
    }
    fn open_checkpoint(&mut self, dir: &Path) -> Result<B, StorageError> {
        B::open_dir(dir)
    }
    fn scratch_dir(&mut self) -> PathBuf {
        self.root.path().to_path_buf()
    }
}

pub type FjallHarness = DirHarness<FjallBackend>;

/// A tmpfs mounted for the duration of a test (needs root with
/// CAP_SYS_ADMIN, as in CI); unmounted on drop.
pub struct TmpfsMount {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TmpfsMount {
    /// Mount a tmpfs of `size` (e.g. "1m") with extra `options`; `None` if
    /// this machine does not allow it.
    pub fn new(size: &str, options: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).ok()?;
        let opts = if options.is_empty() {
            format!("size={size}")
        } else {
            format!("size={size},{options}")
        };
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "qbind-store-test"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(TmpfsMount { path, _dir: dir })
    }

    /// Remount read-only or read-write.
    pub fn remount(&self, read_only: bool) -> bool {
        let opts = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        Command::new("mount")
            .args(["-o", opts])
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
