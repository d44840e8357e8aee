//! Directory trees of any shape: walks that stay within bounds, and
//! removal that has none, neither of them recursive.
//!
//! A session's commands can make a tree of any depth, with paths of any
//! length, and with directories nobody may enter (`chmod 000`). Everything
//! here works through directory descriptors (`openat`, `fstatat`,
//! `unlinkat`, …), never following a symlink, so no path is resolved from
//! the root again and none is limited by `PATH_MAX`. A walk keeps its
//! position in an explicit stack ([`DirStack`]) rather than in the call
//! stack, and holds at most [`OPEN_DIRS`] descriptors however deep it goes:
//! past that, the shallowest directories are closed and reopened through
//! `..` when the walk climbs back to them, checked against the device and
//! inode they had.
//!
//! Reading a tree into berth ([`Walker`]: snapshot capture, sync scans,
//! file reads, copies) is bounded: an entry more than [`MAX_DEPTH`] levels
//! below the root, or whose path relative to the root is longer than
//! [`MAX_PATH_BYTES`], fails the walk with [`Error::TreeBound`] naming it.
//! Removal ([`remove_tree`]) has no bound: whatever a command made, the
//! session that held it leaves nothing behind. Every removal of a tree that
//! may hold session content goes through it (workspace cleanup, `berth gc`,
//! the server's session areas, scratch directories, extraction replacing a
//! directory).
//!
//! Nothing but a directory or a regular file is ever opened in a tree: a
//! process of the session may swap a FIFO or a device node in for a file
//! at any moment, and opening a device has effects of its own (a watchdog
//! arms, a serial line toggles, a terminal becomes the opener's controlling
//! terminal). Directories are opened `O_DIRECTORY | O_NOFOLLOW`, which the
//! kernel refuses for anything else before any driver sees it, and files
//! only through [`Dir::open_regular`], which looks at what is there through
//! an `O_PATH` descriptor before opening it for reading.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// The deepest entry a walk reads: a path of at most this many components
/// below the root.
pub const MAX_DEPTH: usize = 1024;

/// The longest path, relative to the root of its tree and `/`-separated, a
/// walk reads (`PATH_MAX` on Linux).
pub const MAX_PATH_BYTES: usize = 4096;

/// The most directory descriptors one [`DirStack`] keeps open.
pub const OPEN_DIRS: usize = 32;

/// How many bytes of a path an error shows before cutting it with `…`.
const SHOWN_PATH_BYTES: usize = 120;

/// How often removal starts a directory again when something keeps
/// appearing in it, before giving up.
const REMOVAL_ROUNDS: usize = 64;

/// The bound an entry of a tree went beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeLimit {
    /// More than [`MAX_DEPTH`] levels below the root.
    Depth,
    /// A relative path longer than [`MAX_PATH_BYTES`].
    PathBytes,
}

impl fmt::Display for TreeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeLimit::Depth => write!(f, "the limit of {MAX_DEPTH} directory levels"),
            TreeLimit::PathBytes => write!(f, "the limit of {MAX_PATH_BYTES} bytes of path"),
        }
    }
}

/// Which bound, if any, a path `depth` components and `bytes` bytes long
/// goes beyond.
pub fn beyond_bounds(depth: usize, bytes: usize) -> Option<TreeLimit> {
    if depth > MAX_DEPTH {
        Some(TreeLimit::Depth)
    } else if bytes > MAX_PATH_BYTES {
        Some(TreeLimit::PathBytes)
    } else {
        None
    }
}

/// A path cut for display: its first 120 bytes (at a character boundary)
/// and `…` when it is longer.
pub fn shorten(path: &str) -> String {
    if path.len() <= SHOWN_PATH_BYTES {
        return path.to_owned();
    }
    let mut end = SHOWN_PATH_BYTES;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

/// A path as an error shows it: at most its first 120 bytes (cut at a
/// character boundary), quoted when it needs to be
/// ([`crate::paths::quote_name`]: a name holding a newline or an escape
/// cannot break the message), and `…` after it when it was cut.
pub fn shown_path(path: &[u8]) -> String {
    let mut end = path.len().min(SHOWN_PATH_BYTES);
    // Back to the start of a UTF-8 character cut in two (at most three
    // continuation bytes), so a name that is UTF-8 stays readable.
    let mut back = 0;
    while end < path.len() && end > 0 && back < 3 && path[end] & 0xc0 == 0x80 {
        end -= 1;
        back += 1;
    }
    let shown = crate::paths::quote_name(&path[..end]).into_owned();
    if end < path.len() {
        format!("{shown}…")
    } else {
        shown
    }
}

/// What kind of file an entry is, as a walk sees it (symlinks are never
/// followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

impl FileKind {
    fn of_mode(mode: libc::mode_t) -> FileKind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFREG => FileKind::File,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }
}

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name (never `.` or `..`).
    pub name: OsString,
    /// What it is.
    pub kind: FileKind,
}

/// The status of a file, as `fstat`/`fstatat` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// What it is.
    pub kind: FileKind,
    /// Its permission, set-id and sticky bits (`mode & 0o7777`).
    pub mode: u32,
    /// The device it is on.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, in seconds since the Unix epoch.
    pub mtime: i64,
    /// The nanoseconds of its modification time.
    pub mtime_nsec: i64,
    /// Its status change time, in seconds since the Unix epoch.
    pub ctime: i64,
    /// The nanoseconds of its status change time.
    pub ctime_nsec: i64,
}

impl Stat {
    fn from_raw(st: &libc::stat) -> Stat {
        Stat {
            kind: FileKind::of_mode(st.st_mode),
            mode: st.st_mode & 0o7777,
            dev: st.st_dev,
            ino: st.st_ino,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
            ctime: st.st_ctime,
            ctime_nsec: st.st_ctime_nsec,
        }
    }
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a file name with a NUL byte in it",
        )
    })
}

/// Calls `f` with `name` as a C string, kept on the stack when it is as
/// short as a file system's names are (at most 255 bytes).
fn with_c_name<T>(name: &OsStr, f: impl FnOnce(&CStr) -> io::Result<T>) -> io::Result<T> {
    const ON_STACK: usize = 256;
    let bytes = name.as_bytes();
    if bytes.len() >= ON_STACK {
        return f(&c_name(name)?);
    }
    let mut buf = [0u8; ON_STACK];
    buf[..bytes.len()].copy_from_slice(bytes);
    match CStr::from_bytes_with_nul(&buf[..=bytes.len()]) {
        Ok(name) => f(name),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a file name with a NUL byte in it",
        )),
    }
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn open_raw(dirfd: RawFd, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `name` is a valid C string; the flags never ask for a
        // descriptor that outlives its owner (O_CLOEXEC is always set).
        let fd = unsafe {
            libc::openat(
                dirfd,
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd >= 0 {
            // SAFETY: `openat` just returned this descriptor; nothing else
            // owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;

/// How a regular file is opened for reading: `O_NONBLOCK` so that a lease
/// a command holds on it fails the open rather than stall it, `O_NOCTTY`
/// so that nothing opened ever becomes berth's controlling terminal.
const READ_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;

/// Set once reopening through `/proc/self/fd` failed because there is no
/// such directory (no `/proc` mounted): [`Dir::open_regular`] then takes
/// its fallback without trying again.
static NO_PROC_FD: AtomicBool = AtomicBool::new(false);

fn fstat_raw(fd: RawFd) -> io::Result<Stat> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the caller's descriptor is open and `st` is writable.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(Stat::from_raw(&st))
}

/// This process's `/proc/self/fd`, for reopening `O_PATH` descriptors
/// (see [`Dir::open_regular`]).
///
/// The directory is opened once and kept (a lookup in it costs a fraction
/// of resolving the whole path each time), checked to be procfs; a child
/// forked since opens its own. Knowing which process asks costs a system
/// call, so a caller that opens many files (a walk) makes one
/// [`ProcFd`] for all of them rather than one per file.
#[derive(Debug)]
pub struct ProcFd {
    dir: ProcDir,
}

#[derive(Debug)]
enum ProcDir {
    /// The one kept for this process.
    Kept(RawFd),
    /// Opened for a child forked since the kept one was opened.
    Own(OwnedFd),
    /// There is no procfs at `/proc`: files are opened by name again.
    Missing,
}

impl ProcFd {
    /// The directory for the calling process. Not to be kept across a
    /// `fork`: a child must make its own.
    pub fn current() -> io::Result<ProcFd> {
        static KEPT: std::sync::OnceLock<Option<(u32, OwnedFd)>> = std::sync::OnceLock::new();
        if NO_PROC_FD.load(Ordering::Relaxed) {
            return Ok(ProcFd {
                dir: ProcDir::Missing,
            });
        }
        let kept = KEPT.get_or_init(|| proc_fd_dir().ok().map(|dir| (std::process::id(), dir)));
        let dir = match kept {
            Some((pid, dir)) if *pid == std::process::id() => ProcDir::Kept(dir.as_raw_fd()),
            _ => match proc_fd_dir() {
                Ok(dir) => ProcDir::Own(dir),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    NO_PROC_FD.store(true, Ordering::Relaxed);
                    ProcDir::Missing
                }
                Err(err) => return Err(err),
            },
        };
        Ok(ProcFd { dir })
    }

    fn raw(&self) -> Option<RawFd> {
        match &self.dir {
            ProcDir::Kept(fd) => Some(*fd),
            ProcDir::Own(fd) => Some(fd.as_raw_fd()),
            ProcDir::Missing => None,
        }
    }
}

/// Opens the file behind the descriptor `handle` (an `O_PATH` one) for
/// reading, through its entry in the `/proc/self/fd` directory `dir`: the
/// same inode, whatever its name is by now.
fn reopen_through_proc(dir: RawFd, handle: RawFd) -> io::Result<OwnedFd> {
    // The descriptor's number as a C string, without an allocation.
    let mut digits = [0u8; 12];
    let mut at = digits.len() - 1;
    let mut n = handle.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let name = std::ffi::CStr::from_bytes_with_nul(&digits[at..]).expect("one NUL, at the end");
    open_raw(dir, name, READ_FLAGS, 0)
}

/// This process's `/proc/self/fd`, refused (`NotFound`) unless it is on
/// procfs: only procfs's entries there are the process's descriptors.
fn proc_fd_dir() -> io::Result<OwnedFd> {
    let dir = open_raw(
        libc::AT_FDCWD,
        &CString::from(c"/proc/self/fd"),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )?;
    // SAFETY: an all-zero `statfs` is a valid value to be overwritten.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open and `fs` is writable.
    check(unsafe { libc::fstatfs(dir.as_raw_fd(), &mut fs) })?;
    if fs.f_type != libc::PROC_SUPER_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "/proc is not procfs",
        ));
    }
    Ok(dir)
}

/// What [`Dir::open_regular`] found at a name.
#[derive(Debug)]
pub enum Opened {
    /// A regular file, open for reading, with its status read from the
    /// descriptor returned.
    File(File, Stat),
    /// Anything else (a directory, a symlink, a FIFO, a socket, a device),
    /// with its status. It was never opened for reading or writing.
    NotRegular(Stat),
}

/// An open directory, read and changed through its descriptor. Every
/// operation on a name in it refuses to follow a symlink at that name.
#[derive(Debug)]
pub struct Dir {
    file: File,
}

impl Dir {
    /// Opens the directory at `path` (symlinks on the way to it are
    /// followed: the caller chose the path).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let name = c_name(path.as_os_str())?;
        let fd = open_raw(libc::AT_FDCWD, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        Ok(Dir { file: fd.into() })
    }

    /// Opens the directory `name` in this one; a symlink there is refused
    /// with `ENOTDIR`, like anything else that is not a directory.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = open_raw(self.raw(), &c_name(name)?, DIR_FLAGS, 0)?;
        Ok(Dir { file: fd.into() })
    }

    /// Opens this directory's parent (`..`).
    pub fn parent(&self) -> io::Result<Dir> {
        let fd = open_raw(
            self.raw(),
            &CString::from(c".."),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )?;
        Ok(Dir { file: fd.into() })
    }

    /// Opens the file `name` in this directory with `flags` (`O_RDONLY`,
    /// `O_WRONLY | O_CREAT | O_EXCL`, …) and, when it is created, `mode`.
    /// A symlink at `name` is refused with `ELOOP`.
    pub fn open_file(&self, name: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<File> {
        let fd = open_raw(self.raw(), &c_name(name)?, flags | libc::O_NOFOLLOW, mode)?;
        Ok(fd.into())
    }

    /// Opens the regular file `name` in this directory for reading, and
    /// nothing else: a symlink is never followed, and a directory, FIFO,
    /// socket or device at `name` is never opened for reading, so neither
    /// a FIFO that would block nor a device whose opening has effects can
    /// be swapped in under a walk. What it is instead is
    /// [`Opened::NotRegular`], with its status.
    ///
    /// `name` is first opened `O_PATH | O_NOFOLLOW` (which reaches no
    /// driver and opens nothing for I/O), the descriptor's status is read,
    /// and only a regular file is opened again for reading, through
    /// `/proc/self/fd`: the same inode, whatever is at `name` by then. The
    /// status returned is the one read from the `O_PATH` descriptor.
    /// Without `/proc` the fallback opens `name` itself (`O_NOFOLLOW`,
    /// `O_NONBLOCK`, `O_NOCTTY`) and keeps it only when the descriptor's
    /// own status says it is a regular file; its limit is the moment
    /// between the look and the open, in which a FIFO or device swapped in
    /// is opened (without blocking, and never as a controlling terminal)
    /// before it is refused and closed.
    ///
    /// Fails with `NotFound` when nothing is at `name`, and with the error
    /// of the open (`EACCES`, `EWOULDBLOCK` for a file under a lease, …)
    /// otherwise.
    pub fn open_regular(&self, name: &OsStr) -> io::Result<Opened> {
        self.open_regular_in(name, &ProcFd::current()?)
    }

    /// [`Dir::open_regular`] with the process's `/proc/self/fd` looked up
    /// already: what a walk that opens many files calls.
    pub fn open_regular_in(&self, name: &OsStr, proc_fd: &ProcFd) -> io::Result<Opened> {
        with_c_name(name, |name| self.open_regular_with(name, proc_fd.raw()))
    }

    fn open_regular_with(&self, name: &CStr, proc_fd: Option<RawFd>) -> io::Result<Opened> {
        let handle = open_raw(self.raw(), name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        let looked = fstat_raw(handle.as_raw_fd())?;
        if looked.kind != FileKind::File {
            return Ok(Opened::NotRegular(looked));
        }
        if let Some(dir) = proc_fd {
            match reopen_through_proc(dir, handle.as_raw_fd()) {
                // The very inode looked at: its status is `looked`.
                Ok(fd) => return Ok(Opened::File(fd.into(), looked)),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    NO_PROC_FD.store(true, Ordering::Relaxed);
                }
                Err(err) => return Err(err),
            }
        }
        let fd = match open_raw(self.raw(), name, READ_FLAGS | libc::O_NOFOLLOW, 0) {
            Ok(fd) => fd,
            // A symlink swapped in since the look.
            Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                let mut now = looked;
                now.kind = FileKind::Symlink;
                return Ok(Opened::NotRegular(now));
            }
            Err(err) => return Err(err),
        };
        // Another regular file swapped in since the look is as harmless as
        // the one looked at; anything else was opened, but is not kept.
        let opened = fstat_raw(fd.as_raw_fd())?;
        if opened.kind != FileKind::File {
            return Ok(Opened::NotRegular(opened));
        }
        Ok(Opened::File(fd.into(), opened))
    }

    /// Another descriptor of the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            file: self.file.try_clone()?,
        })
    }

    /// The directory as a [`File`], for `fchmod`, `futimens` and the like.
    pub fn as_file(&self) -> &File {
        &self.file
    }

    fn raw(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The directory's own status.
    pub fn stat(&self) -> io::Result<Stat> {
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open and `st` is writable.
        check(unsafe { libc::fstat(self.raw(), &mut st) })?;
        Ok(Stat::from_raw(&st))
    }

    /// The status of `name` in this directory, not following a symlink.
    pub fn stat_at(&self, name: &OsStr) -> io::Result<Stat> {
        let name = c_name(name)?;
        // SAFETY: as in `stat`.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `name` is a valid C string and `st` is writable.
        check(unsafe {
            libc::fstatat(
                self.raw(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        Ok(Stat::from_raw(&st))
    }

    /// Everything the directory holds now, but `.` and `..`, in the order
    /// the file system gives.
    pub fn entries(&self) -> io::Result<Vec<DirEntry>> {
        // SAFETY: rewinds this directory's own descriptor.
        if unsafe { libc::lseek(self.raw(), 0, libc::SEEK_SET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8 << 10];
        loop {
            // SAFETY: the kernel writes at most `buf.len()` bytes of
            // `linux_dirent64` records into `buf`.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.raw(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if n == 0 {
                return Ok(out);
            }
            let filled = &buf[..n as usize];
            let mut at = 0;
            // Each record: d_ino (8), d_off (8), d_reclen (2), d_type (1),
            // then the NUL-terminated name, padded to d_reclen.
            while at + 19 <= filled.len() {
                let reclen = usize::from(u16::from_ne_bytes([filled[at + 16], filled[at + 17]]));
                if reclen < 19 || at + reclen > filled.len() {
                    return Err(io::Error::other("a malformed directory record"));
                }
                let d_type = filled[at + 18];
                let raw_name = &filled[at + 19..at + reclen];
                let name = &raw_name[..raw_name
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(raw_name.len())];
                at += reclen;
                if name == b"." || name == b".." {
                    continue;
                }
                let name = OsStr::from_bytes(name);
                let kind = match d_type {
                    libc::DT_DIR => FileKind::Dir,
                    libc::DT_REG => FileKind::File,
                    libc::DT_LNK => FileKind::Symlink,
                    libc::DT_UNKNOWN => match self.stat_at(name) {
                        Ok(stat) => stat.kind,
                        Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                        Err(err) => return Err(err),
                    },
                    _ => FileKind::Other,
                };
                out.push(DirEntry {
                    name: name.to_owned(),
                    kind,
                });
            }
        }
    }

    /// The target of the symlink `name`.
    pub fn read_link(&self, name: &OsStr) -> io::Result<OsString> {
        let name = c_name(name)?;
        let mut buf = vec![0u8; 256];
        loop {
            // SAFETY: the kernel writes at most `buf.len()` bytes.
            let n = unsafe {
                libc::readlinkat(
                    self.raw(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            if n < buf.len() {
                buf.truncate(n);
                return Ok(OsString::from_vec(buf));
            }
            buf.resize(buf.len() * 2, 0);
        }
    }

    /// Creates the directory `name` with `mode` (less the umask).
    pub fn create_dir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: `name` is a valid C string.
        check(unsafe { libc::mkdirat(self.raw(), name.as_ptr(), mode as libc::mode_t) })?;
        Ok(())
    }

    /// Creates the symlink `name` pointing to `target`.
    pub fn symlink(&self, target: &OsStr, name: &OsStr) -> io::Result<()> {
        let target = c_name(target)?;
        let name = c_name(name)?;
        // SAFETY: both are valid C strings.
        check(unsafe { libc::symlinkat(target.as_ptr(), self.raw(), name.as_ptr()) })?;
        Ok(())
    }

    /// Removes the file or symlink `name` (`EISDIR` for a directory).
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: `name` is a valid C string.
        check(unsafe { libc::unlinkat(self.raw(), name.as_ptr(), 0) })?;
        Ok(())
    }

    /// Removes the empty directory `name`.
    pub fn remove_dir(&self, name: &OsStr) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: `name` is a valid C string.
        check(unsafe { libc::unlinkat(self.raw(), name.as_ptr(), libc::AT_REMOVEDIR) })?;
        Ok(())
    }

    /// Sets the directory's own permission bits.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        // SAFETY: changes the mode of this directory's descriptor only.
        check(unsafe { libc::fchmod(self.raw(), mode as libc::mode_t) })?;
        Ok(())
    }

    /// Sets the permission bits of `name` in this directory without opening
    /// it for reading or writing (its own permissions may allow neither),
    /// and without following a symlink at `name`: it is changed through an
    /// `O_PATH` descriptor of the file itself. A symlink there is refused
    /// with `ELOOP`.
    pub fn set_mode_at(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let handle = open_raw(
            self.raw(),
            &c_name(name)?,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )?;
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open and `st` is writable.
        check(unsafe { libc::fstat(handle.as_raw_fd(), &mut st) })?;
        if FileKind::of_mode(st.st_mode) == FileKind::Symlink {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let proc_path = CString::new(format!("/proc/self/fd/{}", handle.as_raw_fd()))
            .expect("no NUL in a number");
        // SAFETY: `proc_path` is a valid C string naming our own descriptor,
        // which refers to the file itself, not to a symlink.
        check(unsafe { libc::chmod(proc_path.as_ptr(), mode as libc::mode_t) })?;
        Ok(())
    }

    /// Removes `name` in this directory whatever it is: a file or symlink,
    /// or a directory tree of any depth ([`remove_tree`]). Nothing there is
    /// not an error.
    pub fn remove_any(&self, name: &OsStr, display: &Path) -> Result<()> {
        match self.remove_file(name) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) if is_dir_error(&err) => remove_tree_at(self, name, display),
            Err(err) => Err(Error::io("removing", display)(err)),
        }
    }
}

/// Opens the regular file at `path` for reading, and nothing else:
/// [`Dir::open_regular`] on its last component, which is never followed if
/// it is a symlink (the directories on the way are the caller's choice, and
/// symlinks among them are followed).
///
/// Fails with `InvalidInput` when `path` does not end in a name (`/`,
/// `..`), and as [`Dir::open_regular`] does.
pub fn open_regular_path(path: &Path) -> io::Result<Opened> {
    let name = match path.components().next_back() {
        Some(std::path::Component::Normal(name)) => name,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path does not name a file",
            ));
        }
    };
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Dir::open(parent)?.open_regular(name)
}

/// Whether `unlinkat(…, 0)` failed because the name is a directory
/// (`EISDIR` on Linux, `EPERM` where POSIX allows it).
fn is_dir_error(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EISDIR) | Some(libc::EPERM))
}

struct Frame<T> {
    /// `None` once closed to stay within [`OPEN_DIRS`].
    dir: Option<Dir>,
    name: OsString,
    dev: u64,
    ino: u64,
    state: T,
}

/// The directories from a root down to the one a walk is in, each with
/// the walk's state for it.
///
/// The deepest directory is always open; when more than [`OPEN_DIRS`] are,
/// the shallowest (but the root) is closed, and reopened through `..` of
/// its child when the walk climbs back to it, after checking it is still
/// the directory it was (same device and inode): a directory moved during
/// the walk fails it rather than lead it elsewhere.
pub struct DirStack<T> {
    frames: Vec<Frame<T>>,
    /// `frames[1..first_open]` have no descriptor; the others all have one.
    first_open: usize,
}

impl<T> fmt::Debug for DirStack<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirStack")
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

impl<T> DirStack<T> {
    /// A stack holding `root` alone, with its state.
    pub fn new(root: Dir, state: T) -> io::Result<DirStack<T>> {
        let stat = root.stat()?;
        Ok(DirStack {
            frames: vec![Frame {
                dir: Some(root),
                name: OsString::new(),
                dev: stat.dev,
                ino: stat.ino,
                state,
            }],
            first_open: 1,
        })
    }

    /// How many directories below the root the walk is.
    pub fn depth(&self) -> usize {
        self.frames.len() - 1
    }

    /// The directory the walk is in.
    pub fn top(&self) -> &Dir {
        self.frames
            .last()
            .and_then(|f| f.dir.as_ref())
            .expect("the deepest directory is open")
    }

    /// The walk's state for the directory it is in.
    pub fn state(&self) -> &T {
        &self.frames.last().expect("a stack has a root").state
    }

    /// The same, to change it.
    pub fn state_mut(&mut self) -> &mut T {
        &mut self.frames.last_mut().expect("a stack has a root").state
    }

    /// The names of the directories from below the root down to the one
    /// the walk is in.
    pub fn names(&self) -> impl Iterator<Item = &OsStr> {
        self.frames[1..].iter().map(|f| f.name.as_os_str())
    }

    /// Enters `dir`, opened by the caller as `name` in [`DirStack::top`].
    pub fn push(&mut self, dir: Dir, name: OsString, state: T) -> io::Result<()> {
        let stat = dir.stat()?;
        self.frames.push(Frame {
            dir: Some(dir),
            name,
            dev: stat.dev,
            ino: stat.ino,
            state,
        });
        // Open: the root plus `frames[first_open..]`.
        if self.frames.len() - self.first_open + 1 > OPEN_DIRS {
            self.frames[self.first_open].dir = None;
            self.first_open += 1;
        }
        Ok(())
    }

    /// Leaves the directory the walk is in, returning it (still open), its
    /// name and its state. Popping the root is a bug.
    ///
    /// Fails when the parent has to be reopened and cannot be, or is no
    /// longer the directory it was; the stack is then back at its root.
    pub fn pop(&mut self) -> io::Result<(Dir, OsString, T)> {
        assert!(
            self.frames.len() > 1,
            "the root of a DirStack is never popped"
        );
        let frame = self.frames.pop().expect("checked above");
        let dir = frame.dir.expect("the deepest directory is open");
        let top = self.frames.len() - 1;
        if top >= 1 && top < self.first_open {
            let expected = (self.frames[top].dev, self.frames[top].ino);
            let reopened = dir.parent().and_then(|parent| {
                let stat = parent.stat()?;
                if (stat.dev, stat.ino) == expected {
                    Ok(parent)
                } else {
                    Err(io::Error::other(
                        "a directory was moved while it was being walked",
                    ))
                }
            });
            match reopened {
                Ok(parent) => {
                    self.frames[top].dir = Some(parent);
                    self.first_open = top;
                }
                Err(err) => {
                    // Only the root is certainly open now.
                    self.frames.truncate(1);
                    self.first_open = 1;
                    return Err(err);
                }
            }
        }
        if self.first_open > self.frames.len() {
            self.first_open = self.frames.len();
        }
        Ok((dir, frame.name, frame.state))
    }
}

/// An entry found by a [`Walker`].
#[derive(Debug)]
pub struct WalkEntry<'w> {
    /// The directory holding it, for opening it without a path.
    pub dir: &'w Dir,
    /// Its name in `dir`.
    pub name: &'w OsStr,
    /// What it is (not following symlinks).
    pub kind: FileKind,
    /// Its path relative to the walk's root, `/`-separated.
    pub rel: &'w OsStr,
    /// How many components `rel` has (1 for the root's own entries).
    pub depth: usize,
    /// The entries of `dir` the walk returns after this one (directories
    /// aside, whose own entries come in between), last first: what a
    /// caller may prepare ahead, knowing the walk's order.
    pub upcoming: &'w [DirEntry],
}

struct WalkFrame {
    /// The length of the directory's own relative path in `Walker::rel`.
    rel_len: usize,
    /// Its entries not returned yet, sorted by name, last first.
    pending: Vec<DirEntry>,
}

/// A walk over a directory tree in depth-first order, each directory's
/// entries sorted by name (as bytes), without recursion and never
/// following symlinks.
///
/// [`Walker::next_entry`] returns every entry, directories included; a walk
/// enters a directory only when asked to ([`Walker::descend`]), right
/// after it was returned. A walk from [`Walker::new`] fails with
/// [`Error::TreeBound`] at the first entry beyond [`MAX_DEPTH`] or
/// [`MAX_PATH_BYTES`].
pub struct Walker {
    root: PathBuf,
    stack: DirStack<WalkFrame>,
    /// The relative path of the last entry returned.
    rel: Vec<u8>,
    /// The last entry returned, when it may be descended into.
    last: Option<DirEntry>,
    bounded: bool,
}

impl fmt::Debug for Walker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Walker")
            .field("root", &self.root)
            .field("depth", &self.stack.depth())
            .finish_non_exhaustive()
    }
}

/// What [`Walker::descend`] found.
#[derive(Debug, Clone, Copy)]
pub struct Descended {
    /// The directory's status, read from the directory opened.
    pub stat: Stat,
    /// How many entries it holds.
    pub entries: usize,
}

impl Walker {
    /// A bounded walk of the tree at `root` (a symlink as `root` itself is
    /// followed: the caller chose it).
    ///
    /// Fails with [`Error::Io`] when `root` cannot be opened or read.
    pub fn new(root: &Path) -> Result<Walker> {
        Walker::open(root, true)
    }

    /// A walk without bounds, for callers that only go as deep as data they
    /// already bounded (pruning a tree towards a manifest).
    pub fn without_bounds(root: &Path) -> Result<Walker> {
        Walker::open(root, false)
    }

    fn open(root: &Path, bounded: bool) -> Result<Walker> {
        let dir = Dir::open(root).map_err(Error::io("opening", root))?;
        let pending = sorted_entries(&dir).map_err(Error::io("reading directory", root))?;
        let stack = DirStack::new(
            dir,
            WalkFrame {
                rel_len: 0,
                pending,
            },
        )
        .map_err(Error::io("inspecting", root))?;
        Ok(Walker {
            root: root.to_path_buf(),
            stack,
            rel: Vec::new(),
            last: None,
            bounded,
        })
    }

    /// The root of the walk.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The next entry, after climbing out of every directory already
    /// walked through; `None` once the whole tree was.
    ///
    /// Fails with [`Error::TreeBound`] (bounded walks) for an entry beyond
    /// the bounds, and with [`Error::Io`] when a directory cannot be
    /// reopened on the way up.
    pub fn next_entry(&mut self) -> Result<Option<WalkEntry<'_>>> {
        self.last = None;
        loop {
            if let Some(entry) = self.stack.state_mut().pending.pop() {
                let rel_len = self.stack.state().rel_len;
                self.rel.truncate(rel_len);
                if rel_len > 0 {
                    self.rel.push(b'/');
                }
                self.rel.extend_from_slice(entry.name.as_bytes());
                let depth = self.stack.depth() + 1;
                if self.bounded
                    && let Some(limit) = beyond_bounds(depth, self.rel.len())
                {
                    return Err(Error::TreeBound {
                        root: self.root.clone(),
                        path: shown_path(&self.rel),
                        depth,
                        bytes: self.rel.len(),
                        limit,
                    });
                }
                let last = self.last.insert(entry);
                return Ok(Some(WalkEntry {
                    dir: self.stack.top(),
                    name: &last.name,
                    kind: last.kind,
                    rel: OsStr::from_bytes(&self.rel),
                    depth,
                    upcoming: &self.stack.state().pending,
                }));
            }
            if self.stack.depth() == 0 {
                return Ok(None);
            }
            let rel_len = self.stack.state().rel_len;
            self.rel.truncate(rel_len);
            self.stack.pop().map_err(|err| {
                Error::io(
                    "climbing out of",
                    &self.root.join(OsStr::from_bytes(&self.rel)),
                )(err)
            })?;
        }
    }

    /// Enters the directory [`Walker::next_entry`] just returned, so the next
    /// entries are the ones it holds. Returns `None`, entering nothing,
    /// when the last entry was not a directory or is no longer one (it
    /// vanished or was replaced since it was listed).
    ///
    /// Fails with [`Error::Io`] when the directory cannot be opened or
    /// read.
    pub fn descend(&mut self) -> Result<Option<Descended>> {
        let Some(entry) = self.last.take() else {
            return Ok(None);
        };
        if entry.kind != FileKind::Dir {
            return Ok(None);
        }
        let display = self.root.join(OsStr::from_bytes(&self.rel));
        let dir = match self.stack.top().open_dir(&entry.name) {
            Ok(dir) => dir,
            Err(err)
                if err.kind() == io::ErrorKind::NotFound
                    || err.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                return Ok(None);
            }
            Err(err) => return Err(Error::io("opening directory", &display)(err)),
        };
        let stat = dir.stat().map_err(Error::io("inspecting", &display))?;
        let pending = sorted_entries(&dir).map_err(Error::io("reading directory", &display))?;
        let entries = pending.len();
        let rel_len = self.rel.len();
        self.stack
            .push(dir, entry.name, WalkFrame { rel_len, pending })
            .map_err(Error::io("inspecting", &display))?;
        Ok(Some(Descended { stat, entries }))
    }
}

/// A directory's entries sorted by name, last first (to be popped).
fn sorted_entries(dir: &Dir) -> io::Result<Vec<DirEntry>> {
    let mut entries = dir.entries()?;
    entries.sort_by(|a, b| b.name.as_bytes().cmp(a.name.as_bytes()));
    Ok(entries)
}

/// Where a [`DirCursor`] could not go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// A component is missing (and was not to be created).
    Missing,
    /// A component is a symlink.
    Symlink,
    /// A component is something else that is not a directory.
    NotDir,
}

/// A position in a tree being written or changed: the open directories
/// from its root down to the one last worked in. Moving to the parent of
/// the next path reuses what the two paths share, so writing a tree in
/// walk order opens each directory once.
///
/// Symlinks are never followed below the root: a path through one is
/// [`Blocked::Symlink`].
pub struct DirCursor {
    root: PathBuf,
    stack: DirStack<()>,
}

impl fmt::Debug for DirCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirCursor")
            .field("root", &self.root)
            .field("depth", &self.stack.depth())
            .finish()
    }
}

impl DirCursor {
    /// A cursor at the directory `root` (a symlink as `root` itself is
    /// followed: the caller chose it).
    pub fn open(root: &Path) -> Result<DirCursor> {
        let dir = Dir::open(root).map_err(Error::io("opening", root))?;
        let stack = DirStack::new(dir, ()).map_err(Error::io("inspecting", root))?;
        Ok(DirCursor {
            root: root.to_path_buf(),
            stack,
        })
    }

    /// The tree's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Moves to the directory `parents` (components below the root),
    /// creating the missing ones (with mode 0o777 less the umask) when
    /// `create`, and returns it; or says what blocks the way.
    ///
    /// Fails with [`Error::Io`] when a directory cannot be opened or made.
    pub fn enter<S: AsRef<OsStr>>(
        &mut self,
        parents: &[S],
        create: bool,
    ) -> Result<std::result::Result<&Dir, Blocked>> {
        let shared = self
            .stack
            .names()
            .zip(parents)
            .take_while(|(have, want)| *have == want.as_ref())
            .count();
        while self.stack.depth() > shared {
            self.stack
                .pop()
                .map_err(|err| Error::io("climbing out of", &self.root)(err))?;
        }
        for name in &parents[shared..] {
            let name = name.as_ref();
            let top = self.stack.top();
            let opened = match top.open_dir(name) {
                Err(err) if create && err.kind() == io::ErrorKind::NotFound => {
                    match top.create_dir(name, 0o777) {
                        Ok(()) => {}
                        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(err) => {
                            return Err(Error::io("creating directory", &self.display(name))(err));
                        }
                    }
                    top.open_dir(name)
                }
                other => other,
            };
            let dir = match opened {
                Ok(dir) => dir,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    return Ok(Err(Blocked::Missing));
                }
                Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => {
                    let symlink = top
                        .stat_at(name)
                        .is_ok_and(|stat| stat.kind == FileKind::Symlink);
                    return Ok(Err(if symlink {
                        Blocked::Symlink
                    } else {
                        Blocked::NotDir
                    }));
                }
                Err(err) => return Err(Error::io("opening directory", &self.display(name))(err)),
            };
            self.stack
                .push(dir, name.to_owned(), ())
                .map_err(|err| Error::io("inspecting", &self.display(name))(err))?;
        }
        Ok(Ok(self.stack.top()))
    }

    /// The path of `name` in the current directory, for messages.
    pub fn display(&self, name: &OsStr) -> PathBuf {
        let mut path = self.root.clone();
        for part in self.stack.names() {
            path.push(part);
        }
        path.push(name);
        path
    }
}

/// Removes `path` whatever it is: a file, a symlink (never followed), or a
/// directory tree of any depth and any path length, making directories
/// writable and searchable first where a command took that away. Nothing
/// at `path` is not an error.
///
/// Never recursive, and never holding more than [`OPEN_DIRS`] descriptors.
///
/// Fails with [`Error::Io`] naming the path (its deep part shortened) when
/// something cannot be removed.
pub fn remove_tree(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::io("inspecting", path)(err)),
    };
    if !meta.is_dir() {
        return match std::fs::remove_file(path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                Err(Error::io("removing", path)(err))
            }
            _ => Ok(()),
        };
    }
    let Some(name) = path.file_name() else {
        return Err(Error::io("removing", path)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path does not name a directory entry",
        )));
    };
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let parent_dir = Dir::open(parent).map_err(Error::io("opening", parent))?;
    remove_tree_at(&parent_dir, name, path)
}

/// Removes the directory tree `name` in `parent` (see [`remove_tree`]);
/// `display` is its path for messages. A file or symlink there is removed
/// too; nothing there is not an error.
pub fn remove_tree_at(parent: &Dir, name: &OsStr, display: &Path) -> Result<()> {
    let root = parent.try_clone().map_err(Error::io("opening", display))?;
    // The root frame is the parent, holding `name` alone: the loop below
    // removes it like any other directory.
    let mut stack = DirStack::new(
        root,
        vec![DirEntry {
            name: name.to_owned(),
            kind: FileKind::Dir,
        }],
    )
    .map_err(Error::io("inspecting", display))?;
    let mut rounds = 0;
    let path_of = |stack: &DirStack<Vec<DirEntry>>, name: Option<&OsStr>| {
        deep_display(display, stack.names().skip(1).chain(name))
    };
    loop {
        let Some(entry) = stack.state_mut().pop() else {
            if stack.depth() == 0 {
                return Ok(());
            }
            let (_, dir_name, _) = stack
                .pop()
                .map_err(|err| Error::io("climbing out of", &path_of(&stack, None))(err))?;
            match stack.top().remove_dir(&dir_name) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                // Something arrived in it meanwhile: go through it again.
                Err(err)
                    if err.raw_os_error() == Some(libc::ENOTEMPTY) && rounds < REMOVAL_ROUNDS =>
                {
                    rounds += 1;
                    stack.state_mut().push(DirEntry {
                        name: dir_name,
                        kind: FileKind::Dir,
                    });
                }
                Err(err) => {
                    return Err(Error::io("removing", &path_of(&stack, Some(&dir_name)))(
                        err,
                    ));
                }
            }
            continue;
        };
        if entry.kind != FileKind::Dir {
            match stack.top().remove_file(&entry.name) {
                Ok(()) => continue,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                // Replaced by a directory since it was listed.
                Err(err) if is_dir_error(&err) => {}
                Err(err) => {
                    return Err(Error::io("removing", &path_of(&stack, Some(&entry.name)))(
                        err,
                    ));
                }
            }
        }
        match open_for_removal(stack.top(), &entry.name) {
            Ok(dir) => {
                let entries = dir.entries().map_err(|err| {
                    Error::io("reading directory", &path_of(&stack, Some(&entry.name)))(err)
                })?;
                stack
                    .push(dir, entry.name, entries)
                    .map_err(|err| Error::io("inspecting", &path_of(&stack, None))(err))?;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            // Not a directory (any more, or never: the first entry).
            Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => {
                match stack.top().remove_file(&entry.name) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => {
                        return Err(Error::io("removing", &path_of(&stack, Some(&entry.name)))(
                            err,
                        ));
                    }
                    _ => {}
                }
            }
            Err(err) => {
                return Err(Error::io(
                    "opening directory",
                    &path_of(&stack, Some(&entry.name)),
                )(err));
            }
        }
    }
}

/// Opens the directory `name` in `parent` to empty it: made searchable and
/// writable by its owner first when it is not (a command may have left it
/// `000`), without ever following a symlink.
fn open_for_removal(parent: &Dir, name: &OsStr) -> io::Result<Dir> {
    let dir = match parent.open_dir(name) {
        Ok(dir) => dir,
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            // Unreadable: change its mode through a descriptor of the
            // directory itself, so a symlink swapped in at `name` is never
            // what gets changed.
            parent.set_mode_at(name, 0o700)?;
            parent.open_dir(name)?
        }
        Err(err) => return Err(err),
    };
    let stat = dir.stat()?;
    if stat.mode & 0o700 != 0o700 {
        dir.set_mode(stat.mode | 0o700)?;
    }
    Ok(dir)
}

/// `base` followed by `names`, shortened for display when the names make
/// it long: the first bytes, `…`, and how deep it goes.
fn deep_display<'a>(base: &Path, names: impl Iterator<Item = &'a OsStr>) -> PathBuf {
    let mut rel = Vec::new();
    let mut depth = 0;
    for name in names {
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        depth += 1;
    }
    if rel.is_empty() {
        return base.to_path_buf();
    }
    let text = String::from_utf8_lossy(&rel);
    if text.len() <= SHOWN_PATH_BYTES {
        return base.join(OsStr::from_bytes(&rel));
    }
    base.join(format!("{} ({depth} levels deep)", shorten(&text)))
}

/// A directory that is removed with [`remove_tree`] when dropped, unless
/// it is kept: the guard for temporary directories that may hold session
/// content, where `tempfile`'s own removal would recurse once per level.
#[derive(Debug)]
pub struct RemoveOnDrop {
    path: Option<PathBuf>,
}

impl RemoveOnDrop {
    /// Guards the existing directory `path`.
    pub fn new(path: PathBuf) -> RemoveOnDrop {
        RemoveOnDrop { path: Some(path) }
    }

    /// The guarded directory.
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("present until kept or removed")
    }

    /// Stops guarding the directory and returns its path.
    pub fn keep(mut self) -> PathBuf {
        self.path.take().expect("present until kept or removed")
    }

    /// Removes the directory now, reporting a failure.
    pub fn remove(mut self) -> Result<()> {
        match self.path.take() {
            Some(path) => remove_tree(&path),
            None => Ok(()),
        }
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(err) = remove_tree(&path)
        {
            tracing::warn!(path = %path.display(), error = %err, "removing a temporary directory failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Makes a chain of `depth` directories named `name` under `root`
    /// through descriptors (no path is ever longer than one name).
    fn chain(root: &Path, name: &str, depth: usize) {
        let mut dir = Dir::open(root).unwrap();
        for _ in 0..depth {
            dir.create_dir(OsStr::new(name), 0o755).unwrap();
            dir = dir.open_dir(OsStr::new(name)).unwrap();
        }
        drop(dir.open_file(OsStr::new("leaf"), libc::O_WRONLY | libc::O_CREAT, 0o644));
    }

    #[test]
    fn removal_takes_any_depth_and_path_length() {
        let temp = tempfile::tempdir().unwrap();
        let deep = temp.path().join("deep");
        std::fs::create_dir(&deep).unwrap();
        chain(&deep, "d", 5000);
        let long = temp.path().join("long");
        std::fs::create_dir(&long).unwrap();
        chain(&long, &"n".repeat(255), 100);
        remove_tree(&deep).unwrap();
        remove_tree(&long).unwrap();
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);
        // Nothing there is fine.
        remove_tree(&deep).unwrap();
    }

    #[test]
    fn removal_enters_closed_directories_and_never_follows_links() {
        let temp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let tree = temp.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
        std::fs::write(tree.join("a/b/c/f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.join("a/link")).unwrap();
        for dir in ["a/b/c", "a/b", "a"] {
            std::fs::set_permissions(tree.join(dir), std::fs::Permissions::from_mode(0o000))
                .unwrap();
        }
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.path().join("keep").exists());
        // A symlink given as the path is removed, not followed.
        std::os::unix::fs::symlink(outside.path(), temp.path().join("link")).unwrap();
        remove_tree(&temp.path().join("link")).unwrap();
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn a_bounded_walk_names_the_first_entry_too_deep() {
        let temp = tempfile::tempdir().unwrap();
        chain(temp.path(), "d", MAX_DEPTH + 5);
        let mut walker = Walker::new(temp.path()).unwrap();
        let err = loop {
            match walker.next_entry() {
                Ok(Some(_)) => {
                    walker.descend().unwrap();
                }
                Ok(None) => panic!("the walk ended"),
                Err(err) => break err,
            }
        };
        match &err {
            Error::TreeBound {
                depth, path, limit, ..
            } => {
                assert_eq!(*depth, MAX_DEPTH + 1);
                assert_eq!(*limit, TreeLimit::Depth);
                assert!(path.starts_with("d/d/d/") && path.ends_with('…'), "{path}");
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("1024"), "{err}");
        remove_tree(&temp.path().join("d")).unwrap();
    }

    #[test]
    fn a_walk_deeper_than_the_open_directories_comes_back_up() {
        let temp = tempfile::tempdir().unwrap();
        chain(temp.path(), "d", OPEN_DIRS * 3);
        std::fs::write(temp.path().join("z"), "last").unwrap();
        let mut walker = Walker::new(temp.path()).unwrap();
        let mut seen = Vec::new();
        while let Some(entry) = walker.next_entry().unwrap() {
            seen.push((entry.depth, entry.name.to_owned()));
            walker.descend().unwrap();
        }
        assert_eq!(seen.len(), OPEN_DIRS * 3 + 2);
        assert_eq!(seen.last().unwrap(), &(1, OsString::from("z")));
    }

    /// A directory moved away while the walk is below it cannot lead the
    /// walk elsewhere on its way back up: `..` is checked, and the stack is
    /// left at its root, still usable.
    #[test]
    fn climbing_back_through_a_moved_directory_fails_cleanly() {
        let temp = tempfile::tempdir().unwrap();
        let levels = OPEN_DIRS * 2;
        chain(temp.path(), "d", levels);
        let mut stack = DirStack::new(Dir::open(temp.path()).unwrap(), ()).unwrap();
        for _ in 0..levels {
            let dir = stack.top().open_dir(OsStr::new("d")).unwrap();
            stack.push(dir, "d".into(), ()).unwrap();
        }
        // The shallowest directory still open is at this depth; its
        // parent's descriptor was closed. Move it elsewhere.
        let open_from = levels - OPEN_DIRS + 2;
        let mut path = temp.path().to_path_buf();
        for _ in 0..open_from {
            path.push("d");
        }
        std::fs::rename(&path, temp.path().join("moved")).unwrap();
        let err = loop {
            match stack.pop() {
                Ok(_) => assert!(stack.depth() >= open_from - 1),
                Err(err) => break err,
            }
        };
        assert!(err.to_string().contains("moved"), "{err}");
        assert_eq!(stack.depth(), 0);
        assert!(stack.top().entries().unwrap().len() == 2);
        remove_tree(temp.path()).unwrap();
    }

    /// Both ways of opening (through `/proc/self/fd`, and the fallback
    /// for hosts without `/proc`) open regular files and nothing else.
    #[test]
    fn only_regular_files_are_opened_with_or_without_proc() {
        use std::io::Read;
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join("file"), "content").unwrap();
        std::fs::create_dir(temp.path().join("dir")).unwrap();
        std::os::unix::fs::symlink("file", temp.path().join("link")).unwrap();
        let fifo = c_name(temp.path().join("fifo").as_os_str()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let dir = Dir::open(temp.path()).unwrap();
        let proc_fd = ProcFd::current().unwrap();
        assert!(proc_fd.raw().is_some(), "the tests run with /proc");
        let open = |name: &str, through_proc: bool| {
            let proc_fd = if through_proc { proc_fd.raw() } else { None };
            with_c_name(OsStr::new(name), |name| {
                dir.open_regular_with(name, proc_fd)
            })
        };
        for through_proc in [true, false] {
            match open("file", through_proc) {
                Ok(Opened::File(mut file, stat)) => {
                    assert_eq!((stat.kind, stat.size), (FileKind::File, 7));
                    let mut text = String::new();
                    file.read_to_string(&mut text).unwrap();
                    assert_eq!(text, "content");
                }
                other => panic!("{through_proc}: {other:?}"),
            }
            for (name, kind) in [
                ("fifo", FileKind::Other),
                ("dir", FileKind::Dir),
                ("link", FileKind::Symlink),
            ] {
                match open(name, through_proc) {
                    Ok(Opened::NotRegular(stat)) => assert_eq!(stat.kind, kind, "{name}"),
                    other => panic!("{name}, {through_proc}: {other:?}"),
                }
            }
            let missing = open("missing", through_proc);
            assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
        }
        // And by path, the last component never followed.
        assert!(matches!(
            open_regular_path(&temp.path().join("link")),
            Ok(Opened::NotRegular(Stat {
                kind: FileKind::Symlink,
                ..
            }))
        ));
        assert!(matches!(
            open_regular_path(&temp.path().join("file")),
            Ok(Opened::File(..))
        ));
        assert_eq!(
            open_regular_path(Path::new("/")).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn shown_paths_are_cut_and_quoted() {
        assert_eq!(shown_path(b"a/b"), "a/b");
        assert_eq!(shown_path(b"a/\x1b[31m/\n"), "\"a/\\033[31m/\\n\"");
        let long = "é".repeat(100);
        let shown = shown_path(long.as_bytes());
        assert!(shown.ends_with('…') && !shown.contains('\\'), "{shown}");
        assert!(shown.len() <= SHOWN_PATH_BYTES + '…'.len_utf8());
        let mut bytes = b"d/".repeat(70);
        bytes.push(0xff);
        assert!(shown_path(&bytes).ends_with('…'));
        assert_eq!(shown_path(&bytes[..4]), "d/d/");
        assert_eq!(shown_path(b"x\xff"), "\"x\\377\"");
    }

    #[test]
    fn shortening_keeps_characters_whole() {
        assert_eq!(shorten("short"), "short");
        let long = "é".repeat(100);
        let short = shorten(&long);
        assert!(short.ends_with('…'));
        assert!(short.len() <= SHOWN_PATH_BYTES + '…'.len_utf8());
    }
}
