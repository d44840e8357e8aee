//! The bearer token both sides share.

use std::io::Read as _;
use std::path::Path;

use crate::Error;

/// The shortest token a server accepts, in bytes: shorter ones can be
/// guessed.
pub const MIN_SERVER_TOKEN_BYTES: usize = 16;

/// The largest token file read, in bytes: a token with a little
/// whitespace around it, never a stream without end.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// A bearer token. Its `Debug` form hides it, it has no `Display`, and
/// nothing in this crate logs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its text.
    ///
    /// Fails with [`Error::Config`] when it is empty or holds anything but
    /// visible ASCII (it travels in an HTTP header).
    pub fn new(text: impl Into<String>) -> Result<Token, Error> {
        let text = text.into();
        if text.is_empty() {
            return Err(Error::Config("the token is empty".into()));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Config(
                "the token must be visible ASCII (no spaces or control characters)".into(),
            ));
        }
        Ok(Token(text))
    }

    /// Reads a token from a file, ignoring surrounding whitespace (a
    /// trailing newline). Like ssh with its key files, the file must be
    /// private: whoever can read it holds every right the token gives, and
    /// whoever can change it chooses the token. So it must be a regular
    /// file (a FIFO or a device is neither waited on nor read: the file is
    /// opened without blocking), owned by the user berth runs as or by
    /// root, that group and others may neither read nor write, and of at
    /// most [`MAX_TOKEN_FILE_BYTES`]. Symlinks are judged by the file they
    /// point to.
    ///
    /// Fails with [`Error::Config`] when the file cannot be read, is not a
    /// regular file, belongs to another user, gives group or others any
    /// access, is larger than a token, or holds no valid token; each
    /// message is one line naming the file and the fix.
    pub fn from_file(path: &Path) -> Result<Token, Error> {
        use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
        let shown = path.display();
        let unreadable =
            |err: std::io::Error| Error::Config(format!("reading the token file `{shown}`: {err}"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(unreadable)?;
        let meta = file.metadata().map_err(unreadable)?;
        let kind = meta.file_type();
        if !kind.is_file() {
            let what = if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_char_device() {
                "a character device"
            } else if kind.is_block_device() {
                "a block device"
            } else if kind.is_socket() {
                "a socket"
            } else if kind.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            return Err(Error::Config(format!(
                "the token file `{shown}` is {what}; write the token into a regular file that only \
                 you can read (`chmod 600`)"
            )));
        }
        // SAFETY: geteuid cannot fail and touches no memory.
        let me = unsafe { libc::geteuid() };
        let owner = meta.uid();
        if owner != me && owner != 0 {
            return Err(Error::Config(format!(
                "the token file `{shown}` belongs to uid {owner}, not to this user (uid {me}) or \
                 root, so its owner can change the token; make it yours with `chown {me} {shown}`"
            )));
        }
        let mode = meta.mode();
        if mode & 0o077 != 0 {
            return Err(Error::Config(format!(
                "the token file `{shown}` is {} by {} (mode {:04o}); make it private with \
                 `chmod 600 {shown}`",
                if mode & 0o066 == 0 {
                    "usable"
                } else if mode & 0o044 != 0 && mode & 0o022 != 0 {
                    "readable and writable"
                } else if mode & 0o044 != 0 {
                    "readable"
                } else {
                    "writable"
                },
                match (mode & 0o070 != 0, mode & 0o007 != 0) {
                    (true, true) => "group and others",
                    (true, false) => "its group",
                    _ => "others",
                },
                mode & 0o7777,
            )));
        }
        let too_large = |size: u64| {
            Error::Config(format!(
                "the token file `{shown}` is {size} bytes, more than the {MAX_TOKEN_FILE_BYTES} a \
                 token file may hold; put the token alone in it"
            ))
        };
        if meta.len() > MAX_TOKEN_FILE_BYTES {
            return Err(too_large(meta.len()));
        }
        // It may grow while it is read: read one byte past the bound.
        let mut bytes = Vec::new();
        file.take(MAX_TOKEN_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
            return Err(too_large(bytes.len() as u64));
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::Config(format!(
                "the token file `{shown}` is not text; put the token alone in it"
            ))
        })?;
        Token::new(text.trim())
            .map_err(|err| Error::Config(format!("the token file `{shown}`: {err}")))
    }

    /// Reads a token from the environment variable `name`.
    ///
    /// Fails with [`Error::Config`] naming the variable when it is unset or
    /// not a valid token.
    pub fn from_env(name: &str) -> Result<Token, Error> {
        let text = std::env::var(name).map_err(|_| {
            Error::Config(format!(
                "the environment variable `{name}` that should hold the api token is not set"
            ))
        })?;
        Token::new(text)
            .map_err(|err| Error::Config(format!("the environment variable `{name}`: {err}")))
    }

    /// A fresh random token (64 hex digits), for a server started without
    /// one.
    pub fn generate() -> Token {
        Token(random_hex(32))
    }

    /// The token's text, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The token's text, to hand a generated token to its users: write it
    /// to a file only they can read, or show it once on a terminal. Never
    /// log it.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Whether the token is long enough for a server to accept it
    /// ([`MIN_SERVER_TOKEN_BYTES`]).
    ///
    /// Fails with [`Error::Config`] saying how long it is and how long it
    /// must be.
    pub fn check_server_strength(&self) -> Result<(), Error> {
        if self.0.len() < MIN_SERVER_TOKEN_BYTES {
            return Err(Error::Config(format!(
                "the token is {} bytes; a server needs at least {MIN_SERVER_TOKEN_BYTES}: use a long \
                 random one, such as 32 bytes from /dev/urandom in hex",
                self.0.len()
            )));
        }
        Ok(())
    }

    /// A digest to compare presented tokens with in constant time.
    pub(crate) fn digest(&self) -> [u8; 32] {
        digest(self.0.as_bytes())
    }
}

/// The digest tokens are compared by: hashing first means the comparison
/// takes the same time whatever the lengths, and [`constant_time_eq`] takes
/// the same time whatever the bytes.
pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// Compares two digests without an early exit.
pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// `bytes` random bytes as hex, from the kernel's generator (ids, keys,
/// tokens). Falls back to a hash of the time, the process and a counter if
/// `/dev/urandom` cannot be read.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if read.is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&std::process::id().to_le_bytes());
        hasher.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        hasher.update(&now.as_nanos().to_le_bytes());
        hasher.finalize_xof().fill(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_hidden() {
        assert!(Token::new("").is_err());
        assert!(Token::new("has space").is_err());
        let token = Token::new("s3cret").unwrap();
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert!(constant_time_eq(&token.digest(), &digest(b"s3cret")));
        assert!(!constant_time_eq(&token.digest(), &digest(b"s3cret ")));
        assert_ne!(Token::generate(), Token::generate());
        assert_eq!(random_hex(16).len(), 32);
    }

    #[test]
    fn short_tokens_are_too_weak_for_a_server() {
        assert!(
            Token::new("s3cret")
                .unwrap()
                .check_server_strength()
                .is_err()
        );
        assert!(
            Token::new("x".repeat(MIN_SERVER_TOKEN_BYTES))
                .unwrap()
                .check_server_strength()
                .is_ok()
        );
        assert!(Token::generate().check_server_strength().is_ok());
    }

    #[test]
    fn token_files_others_can_reach_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "a-long-enough-token-for-tests\n").unwrap();
        for (mode, words) in [
            (0o644, "readable by group and others (mode 0644)"),
            (0o640, "readable by its group (mode 0640)"),
            (0o602, "writable by others (mode 0602)"),
            (0o610, "usable by its group (mode 0610)"),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = Token::from_file(&path).unwrap_err().to_string();
            assert!(err.contains(words), "{mode:o}: {err}");
            assert!(
                err.contains(&format!("chmod 600 {}", path.display())),
                "{err}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Token::from_file(&path).unwrap().reveal(),
            "a-long-enough-token-for-tests"
        );
    }

    /// A FIFO is refused at once rather than waited on, a file of another
    /// user is refused (also through a symlink), and a file larger than a
    /// token is not read.
    #[test]
    fn token_files_must_be_small_regular_files_of_this_user_or_root() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let private = |path: &Path| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        };

        let fifo = dir.path().join("fifo");
        let c_fifo = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
        let through = dir.path().join("to-fifo");
        std::os::unix::fs::symlink(&fifo, &through).unwrap();
        for path in [&fifo, &through] {
            let err = Token::from_file(path).unwrap_err().to_string();
            assert!(err.contains("is a FIFO"), "{err}");
            assert!(err.contains(&format!("`{}`", path.display())), "{err}");
        }

        let big = dir.path().join("big");
        std::fs::write(&big, "x".repeat(MAX_TOKEN_FILE_BYTES as usize + 1)).unwrap();
        private(&big);
        let err = Token::from_file(&big).unwrap_err().to_string();
        assert!(err.contains("4097 bytes, more than the 4096"), "{err}");

        let binary = dir.path().join("binary");
        std::fs::write(&binary, b"\xff\xfe-not-text-but-long-enough").unwrap();
        private(&binary);
        let err = Token::from_file(&binary).unwrap_err().to_string();
        assert!(err.contains("is not text"), "{err}");

        // Another user's file needs a user who may give files away: root.
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        let theirs = dir.path().join("theirs");
        std::fs::write(&theirs, "a-long-enough-token-for-tests\n").unwrap();
        private(&theirs);
        let given = std::os::unix::fs::chown(&theirs, Some(65534), None);
        if me != 0 {
            assert!(given.is_err(), "only root can give a file away");
            return;
        }
        given.unwrap();
        let link = dir.path().join("to-theirs");
        std::os::unix::fs::symlink(&theirs, &link).unwrap();
        for path in [&theirs, &link] {
            let err = Token::from_file(path).unwrap_err().to_string();
            assert!(
                err.contains("belongs to uid 65534, not to this user (uid 0) or root"),
                "{err}"
            );
            assert!(
                err.contains(&format!("chown 0 {}", path.display())),
                "{err}"
            );
        }
        std::os::unix::fs::chown(&theirs, Some(0), None).unwrap();
        assert_eq!(
            Token::from_file(&link).unwrap().reveal(),
            "a-long-enough-token-for-tests"
        );
    }
}
