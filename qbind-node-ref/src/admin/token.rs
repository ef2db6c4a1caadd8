//! The admin endpoint's shared secret: at least [`MIN_TOKEN_BYTES`] random
//! bytes, hex, in a file only its owner may read (`--admin-token-file`,
//! written by `qbind-admin gen-token`). Like ssh with a private key, the
//! node and `qbind-admin` refuse a token file that group or others can
//! read or write. The presented token is compared in constant time.

use std::io::Read;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Fewest secret bytes a token holds (256 bits).
pub const MIN_TOKEN_BYTES: usize = 32;
/// Most secret bytes a token holds; a longer file is refused unread.
pub const MAX_TOKEN_BYTES: usize = 256;
/// Bytes `gen-token` writes.
pub const GENERATED_TOKEN_BYTES: usize = 32;
/// Largest token file read (hex of [`MAX_TOKEN_BYTES`], a line end, slack).
const MAX_FILE_BYTES: u64 = (MAX_TOKEN_BYTES as u64) * 2 + 16;

/// Why a token file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be opened, read or created.
    #[error("admin token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Group or others may read or write it.
    #[error(
        "admin token file {path} is accessible to group or others (mode {mode:o}); \
         run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Owned by another user than the one running (or root): that user
    /// could have planted it (ssh's rule for private keys).
    #[error(
        "admin token file {path} is owned by uid {owner}, not by this user (uid {me}) or root; \
         run `chown` on it or write it as this user (`qbind-admin gen-token`)"
    )]
    WrongOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The user reading it.
        me: u32,
    },
    /// Not a regular file.
    #[error("admin token file {path} is not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Not a hex token of the allowed length.
    #[error(
        "admin token file {path}: {detail} (want {MIN_TOKEN_BYTES} to {MAX_TOKEN_BYTES} bytes \
         as hex on one line; `qbind-admin gen-token FILE` writes one)"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: &'static str,
    },
}

/// The admin secret (kept out of `Debug` output and wiped when dropped).
#[derive(Clone)]
pub struct AdminToken {
    secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Parse a token: hex of [`MIN_TOKEN_BYTES`] to [`MAX_TOKEN_BYTES`]
    /// bytes, surrounding whitespace ignored.
    ///
    /// # Errors
    /// A description of what is wrong.
    pub fn parse(text: &str) -> Result<AdminToken, &'static str> {
        let hex_text = text.trim();
        if hex_text.is_empty() {
            return Err("it is empty");
        }
        if hex_text.len() > MAX_TOKEN_BYTES * 2 {
            return Err("it is too long");
        }
        let secret = Zeroizing::new(hex::decode(hex_text).map_err(|_| "it is not hex")?);
        if secret.len() < MIN_TOKEN_BYTES {
            return Err("it is too short");
        }
        Ok(AdminToken { secret })
    }

    /// Read the token file at `path`: a regular file, no permission bits
    /// for group or others, one hex token.
    ///
    /// # Errors
    /// [`TokenError`].
    pub fn load(path: &Path) -> Result<AdminToken, TokenError> {
        let io = |source| TokenError::Io {
            path: path.to_owned(),
            source,
        };
        let file = open_no_wait(path).map_err(io)?;
        // Checked through the open handle: no second lookup of the path.
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(TokenError::NotAFile {
                path: path.to_owned(),
            });
        }
        check_mode(&meta, path)?;
        check_owner(&meta, path)?;
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(TokenError::Malformed {
                path: path.to_owned(),
                detail: "it is too long",
            });
        }
        AdminToken::parse(&text).map_err(|detail| TokenError::Malformed {
            path: path.to_owned(),
            detail,
        })
    }

    /// A fresh token of [`GENERATED_TOKEN_BYTES`] from the OS's random
    /// source.
    #[must_use]
    pub fn generate() -> AdminToken {
        let mut secret = Zeroizing::new(vec![0u8; GENERATED_TOKEN_BYTES]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        AdminToken { secret }
    }

    /// Write the token as hex to a new file `path`, readable by its owner
    /// only (`0600`); an existing file is never overwritten.
    ///
    /// # Errors
    /// [`TokenError::Io`] (e.g. the file exists).
    pub fn write_new(&self, path: &Path) -> Result<(), TokenError> {
        use std::io::Write;
        let io = |source| TokenError::Io {
            path: path.to_owned(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        file.write_all(format!("{}\n", self.to_hex().as_str()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)
    }

    /// The token as hex (what a client sends).
    #[must_use]
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&*self.secret))
    }

    /// Whether `presented` (the hex a client sent) is this token. The bytes
    /// are compared in constant time; only a wrong length (or non-hex)
    /// answers early, which reveals nothing about the secret.
    #[must_use]
    pub fn verify(&self, presented: &str) -> bool {
        let Ok(bytes) = hex::decode(presented.trim()).map(Zeroizing::new) else {
            return false;
        };
        constant_time_eq(&bytes, &self.secret)
    }
}

/// `a == b` in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

/// Refuse a file that group or others may access.
/// Open for reading without blocking on a FIFO (or any special file) whose
/// other end nobody holds: such a file is refused after the open.
fn open_no_wait(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    options.open(path)
}

/// The file must belong to the user running, or to root.
fn check_owner(meta: &std::fs::Metadata, path: &Path) -> Result<(), TokenError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if !owner_allowed(meta.uid(), me) {
            return Err(TokenError::WrongOwner {
                path: path.to_owned(),
                owner: meta.uid(),
                me,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (meta, path);
    Ok(())
}

/// Whether a file owned by `owner` may hold a secret for user `me`.
fn owner_allowed(owner: u32, me: u32) -> bool {
    owner == me || owner == 0
}

fn check_mode(meta: &std::fs::Metadata, path: &Path) -> Result<(), TokenError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (meta, path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const HEX64: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn only_the_running_user_or_root_may_own_the_file() {
        assert!(owner_allowed(1000, 1000));
        assert!(owner_allowed(0, 1000), "root's file");
        assert!(!owner_allowed(1001, 1000), "another user's file");
        assert!(!owner_allowed(1001, 0), "root reads no other user's file");
    }

    /// A FIFO at the token path is refused at once: opening it for
    /// reading once waited for a writer for ever.
    #[test]
    fn a_fifo_is_refused_without_waiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(AdminToken::load(&path));
        });
        let result = wait
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("load returned without a writer on the FIFO");
        assert!(
            matches!(result, Err(TokenError::NotAFile { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn tokens_must_be_hex_of_at_least_32_bytes() {
        assert!(AdminToken::parse(HEX64).is_ok());
        assert!(AdminToken::parse(&format!("  {HEX64}\n")).is_ok());
        assert_eq!(AdminToken::parse("").err(), Some("it is empty"));
        assert_eq!(
            AdminToken::parse(&HEX64[..62]).err(),
            Some("it is too short")
        );
        assert_eq!(AdminToken::parse(&HEX64[..63]).err(), Some("it is not hex"));
        assert_eq!(
            AdminToken::parse(&HEX64.replace('0', "g")).err(),
            Some("it is not hex")
        );
        let long = "ab".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(AdminToken::parse(&long).err(), Some("it is too long"));
        assert!(AdminToken::parse(&"ab".repeat(MAX_TOKEN_BYTES)).is_ok());
    }

    #[test]
    fn verify_accepts_only_the_same_bytes() {
        let token = AdminToken::parse(HEX64).expect("token");
        assert!(token.verify(HEX64));
        assert!(token.verify(&HEX64.to_uppercase()));
        let mut last_differs = HEX64.to_string();
        last_differs.replace_range(63.., "e");
        assert!(!token.verify(&last_differs));
        assert!(!token.verify(&HEX64[..62]));
        assert!(!token.verify(&format!("{HEX64}00")));
        assert!(!token.verify(""));
        assert!(!token.verify("not hex at all"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b"b"));
        assert!(!constant_time_eq(b"a", b"ab"));
    }

    #[test]
    fn generated_tokens_round_trip_through_an_owner_only_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.token");
        let token = AdminToken::generate();
        token.write_new(&path).expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = AdminToken::load(&path).expect("load");
        assert!(loaded.verify(&token.to_hex()));
        assert!(!AdminToken::generate().verify(&token.to_hex()));
        // Never overwritten.
        assert!(matches!(token.write_new(&path), Err(TokenError::Io { .. })));
        assert!(!format!("{loaded:?}").contains(token.to_hex().as_str()));
    }

    #[test]
    fn files_open_to_group_or_others_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.token");
        std::fs::write(&path, HEX64).expect("write");
        for mode in [0o640, 0o604, 0o620, 0o644, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            match AdminToken::load(&path) {
                Err(TokenError::InsecurePermissions { mode: m, .. }) => assert_eq!(m, mode),
                other => panic!("mode {mode:o}: want InsecurePermissions, got {other:?}"),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(AdminToken::load(&path).is_ok());
        assert!(matches!(
            AdminToken::load(dir.path()),
            Err(TokenError::NotAFile { .. }) | Err(TokenError::InsecurePermissions { .. })
        ));
        assert!(matches!(
            AdminToken::load(&dir.path().join("missing")),
            Err(TokenError::Io { .. })
        ));
    }

    #[test]
    fn oversized_and_malformed_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.token");
        let mut options = std::fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let write = |text: &str| {
            let _ = std::fs::remove_file(&path);
            let mut f = options
                .clone()
                .write(true)
                .create_new(true)
                .open(&path)
                .expect("create");
            std::io::Write::write_all(&mut f, text.as_bytes()).expect("write");
        };
        write(&"a".repeat(10_000));
        assert!(matches!(
            AdminToken::load(&path),
            Err(TokenError::Malformed {
                detail: "it is too long",
                ..
            })
        ));
        write("password\n");
        assert!(matches!(
            AdminToken::load(&path),
            Err(TokenError::Malformed { .. })
        ));
    }
}
