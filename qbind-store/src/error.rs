//! Mapping of I/O and engine failures onto the core's typed
//! [`StorageError`] (issue #3 "typed errors (corruption, I/O, full disk)
//! that never panic"). Every backend funnels its failures through here so
//! that a full disk or a read-only directory is reported the same way by
//! fjall and RocksDB.

use std::io::ErrorKind;

use qbind_core::traits::StorageError;

/// `ENOSPC` (Linux): no space left on the device.
const ENOSPC: i32 = 28;
/// `EDQUOT` (Linux): disk quota exceeded.
const EDQUOT: i32 = 122;
/// `EFBIG` (Linux): file too large for the file system or `RLIMIT_FSIZE`.
const EFBIG: i32 = 27;
/// `EROFS` (Linux): read-only file system.
const EROFS: i32 = 30;

/// Classify an I/O error: a full device, a quota or a file size limit is
/// [`StorageError::Full`]; a read-only file system or a permission refusal
/// is [`StorageError::ReadOnly`]; malformed data read back is
/// [`StorageError::Corruption`]; everything else is [`StorageError::Io`]
/// with `context` and the OS message.
#[must_use]
pub fn from_io(context: &str, error: &std::io::Error) -> StorageError {
    let by_code = match error.raw_os_error() {
        Some(ENOSPC | EDQUOT | EFBIG) => Some(StorageError::Full),
        Some(EROFS) => Some(StorageError::ReadOnly),
        _ => None,
    };
    if let Some(mapped) = by_code {
        return mapped;
    }
    match error.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            StorageError::Full
        }
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => StorageError::ReadOnly,
        ErrorKind::InvalidData | ErrorKind::UnexpectedEof => StorageError::Corruption {
            what: format!("{context}: {error}"),
        },
        _ => StorageError::Io {
            detail: format!("{context}: {error}"),
        },
    }
}

/// Classify a RocksDB error message. RocksDB reports the OS error only as
/// text (`"IO error: No space left on device"`), so the mapping matches the
/// C library's `strerror` strings and RocksDB's status prefixes.
#[must_use]
pub fn from_engine_message(context: &str, message: &str) -> StorageError {
    let lower = message.to_ascii_lowercase();
    if lower.contains("no space left") || lower.contains("quota exceeded") {
        StorageError::Full
    } else if lower.contains("read-only file system") || lower.contains("permission denied") {
        StorageError::ReadOnly
    } else if lower.starts_with("corruption") || lower.contains("checksum mismatch") {
        StorageError::Corruption {
            what: format!("{context}: {message}"),
        }
    } else {
        StorageError::Io {
            detail: format!("{context}: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_codes_map_to_typed_errors() {
        let full = std::io::Error::from_raw_os_error(ENOSPC);
        assert_eq!(from_io("write", &full), StorageError::Full);
        let fbig = std::io::Error::from_raw_os_error(EFBIG);
        assert_eq!(from_io("write", &fbig), StorageError::Full);
        let rofs = std::io::Error::from_raw_os_error(EROFS);
        assert_eq!(from_io("open", &rofs), StorageError::ReadOnly);
        let denied = std::io::Error::from(ErrorKind::PermissionDenied);
        assert_eq!(from_io("open", &denied), StorageError::ReadOnly);
        let bad = std::io::Error::new(ErrorKind::InvalidData, "checksum");
        assert!(matches!(
            from_io("read", &bad),
            StorageError::Corruption { .. }
        ));
        let other = std::io::Error::other("boom");
        assert!(matches!(from_io("read", &other), StorageError::Io { .. }));
    }

    #[test]
    fn engine_messages_map_to_typed_errors() {
        assert_eq!(
            from_engine_message("put", "IO error: No space left on device"),
            StorageError::Full
        );
        assert_eq!(
            from_engine_message("open", "IO error: While mkdir: /x: Read-only file system"),
            StorageError::ReadOnly
        );
        assert!(matches!(
            from_engine_message("get", "Corruption: block checksum mismatch"),
            StorageError::Corruption { .. }
        ));
        assert!(matches!(
            from_engine_message("get", "Invalid argument: x"),
            StorageError::Io { .. }
        ));
    }
}
