//! The files of a snapshot, read as hostile input (issue #22 finding 4).
//!
//! Only regular files and directories are accepted. Each entry is checked
//! with `symlink_metadata` (links are never followed), opened with
//! `O_NOFOLLOW | O_NONBLOCK` (a symlink swapped in after the check fails to
//! open, a FIFO does not block the open) and checked again on the open
//! handle. Every read is bounded by the size `meta.json` gives: a file of
//! another size is refused before a byte is read, and one that grows while
//! it is read is refused too. `meta.json` itself is bounded by
//! [`MAX_META_BYTES`]. The names in `meta.json` are never joined onto a
//! path: the tree is walked and the names found are looked up in it, so a
//! name like `../x` can only be "missing".

use std::collections::BTreeMap;
use std::fs::{File, FileType, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha3::{Digest, Sha3_256};

use super::{
    FileChecksum, MAX_META_BYTES, META_FILE, STATE_DIR, SnapshotError, SnapshotMeta, io_err,
};
use crate::fsutil::{create_private_dir, sync_dir};

/// Deepest directory nesting accepted under `state/` (fjall and RocksDB use
/// at most three levels); a deeper tree is refused before it is walked
/// further.
pub const MAX_STATE_DEPTH: usize = 16;

/// What a non-regular entry is, for error messages.
fn kind_name(t: FileType) -> &'static str {
    if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

fn not_regular(file: &str, kind: FileType) -> SnapshotError {
    SnapshotError::NotRegularFile {
        file: file.to_string(),
        kind: kind_name(kind),
    }
}

/// Open `path` (`rel` names it in errors) for reading if, and only if, it is
/// a regular file; returns it with its size.
fn open_regular(path: &Path, rel: &str) -> Result<(File, u64), SnapshotError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => SnapshotError::NotRegularFile {
                file: rel.to_string(),
                kind: "symlink",
            },
            _ if e.kind() == std::io::ErrorKind::NotFound => SnapshotError::MissingFile {
                file: rel.to_string(),
            },
            _ => io_err(path, "opening", &e),
        })?;
    let meta = file.metadata().map_err(|e| io_err(path, "stat", &e))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(rel, meta.file_type()));
    }
    Ok((file, meta.len()))
}

/// The regular files and directories under a snapshot's `state/`.
struct Tree {
    /// Relative `/`-separated name and path of every regular file.
    files: BTreeMap<String, PathBuf>,
    /// Relative names of the directories, parents before children.
    dirs: Vec<String>,
}

/// Walk `root` without following links; anything but a regular file or a
/// directory, a name that is not UTF-8 or nesting deeper than
/// [`MAX_STATE_DEPTH`] is an error naming the entry.
fn walk(root: &Path) -> Result<Tree, SnapshotError> {
    fn visit(dir: &Path, prefix: &str, depth: usize, tree: &mut Tree) -> Result<(), SnapshotError> {
        let entries = std::fs::read_dir(dir).map_err(|e| io_err(dir, "listing", &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err(dir, "listing", &e))?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(SnapshotError::UnexpectedFile {
                    file: format!("{prefix}{}", name.to_string_lossy()),
                });
            };
            let rel = format!("{prefix}{name}");
            // `DirEntry::file_type` does not follow symlinks.
            let kind = entry.file_type().map_err(|e| io_err(&path, "stat", &e))?;
            if kind.is_dir() {
                if depth >= MAX_STATE_DEPTH {
                    return Err(SnapshotError::TooDeep {
                        dir: rel,
                        limit: MAX_STATE_DEPTH,
                    });
                }
                tree.dirs.push(rel.clone());
                visit(&path, &format!("{rel}/"), depth + 1, tree)?;
            } else if kind.is_file() {
                tree.files.insert(rel, path);
            } else {
                return Err(not_regular(&rel, kind));
            }
        }
        Ok(())
    }
    match std::fs::symlink_metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(meta) => return Err(not_regular(STATE_DIR, meta.file_type())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SnapshotError::MissingFile {
                file: STATE_DIR.to_string(),
            });
        }
        Err(e) => return Err(io_err(root, "stat", &e)),
    }
    let mut tree = Tree {
        files: BTreeMap::new(),
        dirs: Vec::new(),
    };
    visit(root, "", 0, &mut tree)?;
    Ok(tree)
}

/// Checksum the regular file `path` (`rel` in errors), reading exactly
/// `expected` bytes if given (a file of another size is refused before it
/// is read) or its size at open otherwise; with `copy_to`, also write the
/// bytes read into that new file (mode 0600) and fsync it, so what is
/// checked is exactly what is copied.
fn hash_file(
    path: &Path,
    rel: &str,
    expected: Option<u64>,
    copy_to: Option<&Path>,
) -> Result<FileChecksum, SnapshotError> {
    let (mut file, len) = open_regular(path, rel)?;
    if let Some(want) = expected
        && len != want
    {
        return Err(SnapshotError::SizeMismatch {
            file: rel.to_string(),
            expected: want,
            actual: len,
        });
    }
    let bound = expected.unwrap_or(len);
    let mut out = match copy_to {
        Some(target) => Some(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(target)
                .map_err(|e| io_err(target, "creating", &e))?,
        ),
        None => None,
    };
    let mut hasher = Sha3_256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut read = 0u64;
    {
        let mut limited = (&mut file).take(bound);
        loop {
            let n = limited
                .read(&mut buf)
                .map_err(|e| io_err(path, "reading", &e))?;
            let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
                break;
            };
            hasher.update(chunk);
            if let (Some(out), Some(target)) = (out.as_mut(), copy_to) {
                out.write_all(chunk)
                    .map_err(|e| io_err(target, "writing", &e))?;
            }
            read += n as u64;
        }
    }
    let mut probe = [0u8; 1];
    let longer = file
        .read(&mut probe)
        .map_err(|e| io_err(path, "reading", &e))?
        > 0;
    if read != bound || longer {
        // It changed size while being read.
        let now = file.metadata().map(|m| m.len()).unwrap_or(read);
        return Err(SnapshotError::SizeMismatch {
            file: rel.to_string(),
            expected: bound,
            actual: if longer { now.max(bound + 1) } else { read },
        });
    }
    if let (Some(out), Some(target)) = (out, copy_to) {
        out.sync_all().map_err(|e| io_err(target, "syncing", &e))?;
    }
    Ok(FileChecksum {
        size: read,
        sha3_256: hex::encode(hasher.finalize()),
    })
}

/// Size and checksum of every file under `state` (a snapshot's `state/`),
/// as recorded in `meta.json`'s `files`. Refuses anything but regular files
/// and directories, like validation does.
pub fn checksum_state_dir(state: &Path) -> Result<BTreeMap<String, FileChecksum>, SnapshotError> {
    let tree = walk(state)?;
    let mut files = BTreeMap::new();
    for (rel, path) in tree.files {
        let sum = hash_file(&path, &rel, None, None)?;
        files.insert(rel, sum);
    }
    Ok(files)
}

/// Check that `state` holds exactly the files `listed` (regular files, with
/// their sizes and checksums) and nothing else but directories; with
/// `copy_to` (an existing empty directory), copy the tree there while
/// checking it and fsync every file and directory of the copy.
pub(super) fn check_state_files(
    state: &Path,
    listed: &BTreeMap<String, FileChecksum>,
    copy_to: Option<&Path>,
) -> Result<(), SnapshotError> {
    let tree = walk(state)?;
    if let Some(extra) = tree.files.keys().find(|f| !listed.contains_key(*f)) {
        return Err(SnapshotError::UnexpectedFile {
            file: extra.clone(),
        });
    }
    if let Some(missing) = listed.keys().find(|f| !tree.files.contains_key(*f)) {
        return Err(SnapshotError::MissingFile {
            file: missing.clone(),
        });
    }
    if let Some(to) = copy_to {
        for dir in &tree.dirs {
            create_private_dir(&to.join(dir))?;
        }
    }
    for (rel, path) in &tree.files {
        let Some(want) = listed.get(rel) else {
            continue; // unreachable: every file is listed (checked above)
        };
        let target = copy_to.map(|to| to.join(rel));
        let got = hash_file(path, rel, Some(want.size), target.as_deref())?;
        if got.sha3_256 != want.sha3_256 {
            return Err(SnapshotError::ChecksumMismatch {
                file: rel.clone(),
                expected: want.sha3_256.clone(),
                actual: got.sha3_256,
            });
        }
    }
    if let Some(to) = copy_to {
        for dir in tree.dirs.iter().rev() {
            sync_dir(&to.join(dir))?;
        }
        sync_dir(to)?;
    }
    Ok(())
}

/// Read the `meta.json` of the snapshot directory `dir`: it must be a
/// regular file (not a link, FIFO, ...) of at most [`MAX_META_BYTES`], and
/// is parsed with [`parse_meta`].
pub fn read_meta(dir: &Path) -> Result<SnapshotMeta, SnapshotError> {
    let path = dir.join(META_FILE);
    let (file, len) = open_regular(&path, META_FILE).map_err(|e| match e {
        SnapshotError::MissingFile { .. } => SnapshotError::MetaMissing {
            path: dir.to_path_buf(),
        },
        other => other,
    })?;
    if len > MAX_META_BYTES {
        return Err(SnapshotError::MetaTooLarge {
            path,
            size: len,
            limit: MAX_META_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_META_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(&path, "reading", &e))?;
    parse_meta(&bytes, &path)
}

/// A plain relative name: `/`-separated, non-empty components other than
/// `.` and `..`, no NUL.
fn plain_relative(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\0')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// 64 lowercase hex digits.
fn lower_hex_32(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Decode `meta.json` (`path` names it in errors): at most
/// [`MAX_META_BYTES`], no unknown fields, hashes and checksums as 64
/// lowercase hex digits, file names plain relative paths.
pub fn parse_meta(bytes: &[u8], path: &Path) -> Result<SnapshotMeta, SnapshotError> {
    if bytes.len() as u64 > MAX_META_BYTES {
        return Err(SnapshotError::MetaTooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit: MAX_META_BYTES,
        });
    }
    let invalid = |detail: String| SnapshotError::MetaInvalid {
        path: path.to_path_buf(),
        detail,
    };
    let meta: SnapshotMeta = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    if !lower_hex_32(&meta.block_hash) {
        return Err(invalid("block_hash is not 64 lowercase hex digits".into()));
    }
    if !lower_hex_32(&meta.state_root) {
        return Err(invalid("state_root is not 64 lowercase hex digits".into()));
    }
    for (name, sum) in &meta.files {
        if !plain_relative(name) {
            return Err(invalid(format!(
                "file name {name:?} is not a plain relative path"
            )));
        }
        if !lower_hex_32(&sum.sha3_256) {
            return Err(invalid(format!(
                "checksum of {name:?} is not 64 lowercase hex digits"
            )));
        }
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_plain_relative_paths() {
        for ok in ["a", "a/b", "keyspaces/1/tables/0", "..a", "a.."] {
            assert!(plain_relative(ok), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/../b", ".", "a/./b", "a\0b",
        ] {
            assert!(!plain_relative(bad), "{bad:?}");
        }
    }

    fn sample() -> SnapshotMeta {
        let mut files = BTreeMap::new();
        files.insert(
            "keyspaces/1/tables/0".to_string(),
            FileChecksum {
                size: 4096,
                sha3_256: "ab".repeat(32),
            },
        );
        SnapshotMeta {
            format_version: 3,
            height: 30,
            block_hash: "01".repeat(32),
            executed_height: 30,
            state_root: "02".repeat(32),
            chain_id: "0x51424e4444455600".into(),
            epoch: 0,
            created_at_unix_ms: 1,
            backend: "fjall".into(),
            files,
        }
    }

    #[test]
    fn meta_json_is_parsed_with_its_bounds() {
        let path = Path::new("meta.json");
        let meta = sample();
        let bytes = serde_json::to_vec(&meta).unwrap();
        assert_eq!(parse_meta(&bytes, path).unwrap(), meta);
        let invalid = |m: &SnapshotMeta| {
            matches!(
                parse_meta(&serde_json::to_vec(m).unwrap(), path),
                Err(SnapshotError::MetaInvalid { .. })
            )
        };
        let mut bad = meta.clone();
        bad.block_hash = "AB".repeat(32);
        assert!(invalid(&bad));
        let mut bad = meta.clone();
        bad.state_root = "02".repeat(31);
        assert!(invalid(&bad));
        let mut bad = meta.clone();
        bad.files.insert(
            "../sibling".into(),
            FileChecksum {
                size: 1,
                sha3_256: "ab".repeat(32),
            },
        );
        assert!(invalid(&bad));
        let mut bad = meta;
        if let Some(sum) = bad.files.values_mut().next() {
            sum.sha3_256 = "x".into();
        }
        assert!(invalid(&bad));
        let mut big = bytes;
        big.resize(MAX_META_BYTES as usize + 1, b' ');
        assert!(matches!(
            parse_meta(&big, path),
            Err(SnapshotError::MetaTooLarge { .. })
        ));
    }

    #[test]
    fn hashes_are_lowercase_hex() {
        assert!(lower_hex_32(&"ab".repeat(32)));
        assert!(!lower_hex_32(&"AB".repeat(32)));
        assert!(!lower_hex_32(&"ab".repeat(31)));
        assert!(!lower_hex_32(&"zz".repeat(32)));
    }
}
