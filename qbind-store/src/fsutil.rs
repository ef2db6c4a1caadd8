//! File-system helpers shared by checkpoints, snapshots and measurements:
//! directory fsync (a rename or a new file is durable only once its
//! directory is synced), recursive size and copy.

use std::path::Path;

use qbind_core::traits::StorageError;

use crate::error::from_io;

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

/// Copy the tree `from` into the new directory `to` (which must not exist),
/// fsyncing every file and directory.
pub fn copy_dir(from: &Path, to: &Path) -> Result<(), StorageError> {
    std::fs::create_dir(to).map_err(|e| from_io(&format!("creating {}", to.display()), &e))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| from_io(&format!("listing {}", from.display()), &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| from_io(&format!("listing {}", from.display()), &e))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| from_io(&format!("stat {}", source.display()), &e))?;
        if kind.is_dir() {
            copy_dir(&source, &target)?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target)
                .and_then(|_| std::fs::File::open(&target)?.sync_all())
                .map_err(|e| from_io(&format!("copying {}", source.display()), &e))?;
        }
    }
    sync_dir(to)
}
