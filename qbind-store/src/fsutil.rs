//! File-system helpers shared by checkpoints, snapshots and measurements:
//! directory fsync (a rename or a new file is durable only once its
//! directory is synced), recursive size and copy, and private directories.
//!
//! Data and snapshot directories hold the chain state and the consensus
//! safety state: they are created `0700` ([`PRIVATE_DIR_MODE`]), and an
//! existing one that group or others can access is tightened to `0700`
//! rather than refused (issue #22 finding 9): the node owns these
//! directories, and a refusal would only make the operator run the same
//! `chmod`. The caller logs that it happened.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use qbind_core::traits::StorageError;

use crate::error::from_io;

/// Mode of the directories the store creates: owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// What [`ensure_private_dir`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrivateDir {
    /// Created (with any missing parents) with mode `0700`.
    Created,
    /// Existed and was private already.
    Existing,
    /// Existed with group or other permissions (the old mode is given) and
    /// was tightened to `0700`.
    Tightened {
        /// Permission bits before.
        was: u32,
    },
}

/// Make `path` a directory only its owner can access: create it (and any
/// missing parents) with mode `0700`, or tighten an existing one whose mode
/// grants anything to group or others. A symlink to a directory is followed
/// (operators link data directories onto other disks); a path that is not a
/// directory is an `Io` error.
pub fn ensure_private_dir(path: &Path) -> Result<PrivateDir, StorageError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(PRIVATE_DIR_MODE)
                .create(path)
                .map_err(|e| from_io(&format!("creating {}", path.display()), &e))?;
            // The umask may have removed bits, never added any.
            Ok(PrivateDir::Created)
        }
        Err(e) => Err(from_io(&format!("stat {}", path.display()), &e)),
        Ok(meta) if !meta.is_dir() => Err(StorageError::Io {
            detail: format!("{} exists and is not a directory", path.display()),
        }),
        Ok(meta) => {
            let was = meta.permissions().mode() & 0o7777;
            if was & 0o077 == 0 {
                return Ok(PrivateDir::Existing);
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
                .map_err(|e| from_io(&format!("chmod 0700 {}", path.display()), &e))?;
            Ok(PrivateDir::Tightened { was })
        }
    }
}

/// Create the new directory `path` (its parent must exist) with mode
/// `0700`.
pub fn create_private_dir(path: &Path) -> Result<(), StorageError> {
    std::fs::DirBuilder::new()
        .mode(PRIVATE_DIR_MODE)
        .create(path)
        .map_err(|e| from_io(&format!("creating {}", path.display()), &e))
}

/// fsync every regular file and directory under `dir` (and `dir`), without
/// following symlinks: after this, a rename of `dir` publishes durable
/// contents.
pub fn sync_tree(dir: &Path) -> Result<(), StorageError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| from_io(&format!("listing {}", dir.display()), &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| from_io(&format!("listing {}", dir.display()), &e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| from_io(&format!("stat {}", path.display()), &e))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| from_io(&format!("syncing {}", path.display()), &e))?;
        }
    }
    sync_dir(dir)
}

/// fsync the directory `dir`, making its entries (new files, renames) durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| from_io(&format!("syncing directory {}", dir.display()), &e))
}

/// Bytes allocated on disk to the files under `path`, like `du` (0 if
/// absent). Allocated rather than apparent size, because journals are
/// preallocated sparse files whose length says little about their use.
pub fn dir_size(path: &Path) -> Result<u64, StorageError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(from_io(&format!("stat {}", path.display()), &e)),
    };
    if !meta.is_dir() {
        use std::os::unix::fs::MetadataExt;
        return Ok(if meta.is_file() {
            meta.blocks().saturating_mul(512)
        } else {
            0
        });
    }
    let mut total = 0u64;
    let entries =
        std::fs::read_dir(path).map_err(|e| from_io(&format!("listing {}", path.display()), &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| from_io(&format!("listing {}", path.display()), &e))?;
        total = total.saturating_add(dir_size(&entry.path())?);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_dirs_are_created_0700_and_open_ones_tightened() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a").join("b");
        assert_eq!(ensure_private_dir(&nested).unwrap(), PrivateDir::Created);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(ensure_private_dir(&nested).unwrap(), PrivateDir::Existing);
        std::fs::set_permissions(&nested, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            ensure_private_dir(&nested).unwrap(),
            PrivateDir::Tightened { was: 0o755 }
        );
        assert_eq!(mode(&nested), 0o700);
        let file = root.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            ensure_private_dir(&file),
            Err(StorageError::Io { .. })
        ));
    }
}
