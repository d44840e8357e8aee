//! Starting a command through the keeper *program* instead of a fork of
//! berth's own process.
//!
//! Forking berth copies its page tables (a multi-threaded host with tokio,
//! tens of MiB mapped; a Python interpreter with the module loaded), and the
//! in-process keeper ([`super::keeper`]) then forks the shell from that copy
//! again: on a VM, these two copies are most of what starting a command
//! costs. A launch that needs nothing run inside berth's process between
//! fork and exec — no sandbox hook, no cgroup to join — is started here
//! instead: `posix_spawn` (a vfork-style clone, no copy) of `berth-keeper`,
//! a static program of a few KiB, with no C library, that `build.rs`
//! compiles from `keeper/main.rs` and this crate embeds, executed from a
//! sealed in-memory file. It forks the shell from itself, which costs next to nothing, and
//! behaves as the in-process keeper does: same process groups,
//! parent-death signals, subreaping, status record and sweep (the
//! program's own documentation has its interface).
//!
//! Where the program cannot be built (another target than Linux on x86_64
//! or aarch64 with glibc) or cannot be executed (no `memfd_create`, no
//! `/proc`, in-memory files not executable), [`super::start`] forks as
//! before.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

use super::{InShellsPlace, Launch, Started, StartedIo, adopt, cloexec_pipe, keeper, status_pipe};

/// The program, as `build.rs` left it.
#[cfg(berth_keeper_program)]
const PROGRAM: Option<&[u8]> = Some(include_bytes!(env!("BERTH_KEEPER_PROGRAM")));
#[cfg(not(berth_keeper_program))]
const PROGRAM: Option<&[u8]> = None;

// The program's hand-written values are this platform's.
#[cfg(berth_keeper_program)]
#[path = "../../keeper/abi.rs"]
mod abi;

#[cfg(berth_keeper_program)]
const _: () = {
    use abi::*;
    const fn sys(ours: usize, theirs: libc::c_long) -> bool {
        ours as libc::c_long == theirs
    }
    assert!(sys(SYS_READ, libc::SYS_read) && sys(SYS_WRITE, libc::SYS_write));
    assert!(sys(SYS_CLOSE, libc::SYS_close) && sys(SYS_OPENAT, libc::SYS_openat));
    assert!(sys(SYS_RT_SIGACTION, libc::SYS_rt_sigaction));
    assert!(sys(SYS_RT_SIGPROCMASK, libc::SYS_rt_sigprocmask));
    assert!(sys(SYS_RT_SIGTIMEDWAIT, libc::SYS_rt_sigtimedwait));
    assert!(sys(SYS_GETPID, libc::SYS_getpid) && sys(SYS_GETPPID, libc::SYS_getppid));
    assert!(sys(SYS_CLONE, libc::SYS_clone) && sys(SYS_EXECVE, libc::SYS_execve));
    assert!(sys(SYS_WAIT4, libc::SYS_wait4) && sys(SYS_KILL, libc::SYS_kill));
    assert!(sys(SYS_FCNTL, libc::SYS_fcntl) && sys(SYS_CHDIR, libc::SYS_chdir));
    assert!(sys(SYS_SETPGID, libc::SYS_setpgid) && sys(SYS_PRCTL, libc::SYS_prctl));
    assert!(sys(SYS_EXIT_GROUP, libc::SYS_exit_group) && sys(SYS_DUP3, libc::SYS_dup3));
    assert!(sys(SYS_PRLIMIT64, libc::SYS_prlimit64));
    assert!(sys(SYS_CLOSE_RANGE, libc::SYS_close_range));
    assert!(SIGHUP == libc::SIGHUP && SIGINT == libc::SIGINT && SIGKILL == libc::SIGKILL);
    assert!(SIGPIPE == libc::SIGPIPE && SIGTERM == libc::SIGTERM && SIGCHLD == libc::SIGCHLD);
    assert!(SIG_SETMASK == libc::SIG_SETMASK && SIG_IGN == libc::SIG_IGN);
    assert!(SIG_DFL == libc::SIG_DFL);
    assert!(PR_SET_PDEATHSIG == libc::PR_SET_PDEATHSIG && PR_SET_NAME == libc::PR_SET_NAME);
    assert!(PR_SET_CHILD_SUBREAPER == libc::PR_SET_CHILD_SUBREAPER);
    assert!(WNOHANG == libc::WNOHANG && AT_FDCWD == libc::AT_FDCWD);
    assert!(O_RDONLY == libc::O_RDONLY && O_RDWR == libc::O_RDWR && O_CLOEXEC == libc::O_CLOEXEC);
    assert!(F_SETFD == libc::F_SETFD && FD_CLOEXEC == libc::FD_CLOEXEC);
    assert!(RLIMIT_FSIZE == libc::RLIMIT_FSIZE as i32 && RLIMIT_AS == libc::RLIMIT_AS as i32);
    assert!(ENOENT == libc::ENOENT && EINTR == libc::EINTR && ENOEXEC == libc::ENOEXEC);
    assert!(EACCES == libc::EACCES && ENODEV == libc::ENODEV && ENOTDIR == libc::ENOTDIR);
    assert!(EINVAL == libc::EINVAL && ENAMETOOLONG == libc::ENAMETOOLONG);
    assert!(ETIMEDOUT == libc::ETIMEDOUT && ESTALE == libc::ESTALE);
    assert!(std::mem::size_of::<libc::rusage>() == 8 * RUSAGE_WORDS);
    assert!(keeper::RECORD_LEN == 4 + 8 * RUSAGE_WORDS);
};

/// A small static program in an executable, sealed in-memory file,
/// started with [`spawn_program`]: the keeper program here, the
/// `namespace` plugin's sandbox program there.
#[derive(Debug)]
pub struct MemoryProgram {
    /// The open file; `path` names it.
    file: OwnedFd,
    /// `/proc/self/fd/N`, which the spawned child resolves to its own copy
    /// of the descriptor.
    path: CString,
    /// The file's device and inode, to check that descriptor N is still
    /// this file (a host that closes descriptors it does not own could
    /// have put another file there, one a command wrote for all we know).
    identity: (u64, u64),
}

/// A descriptor's device and inode: what a caller that keeps a descriptor
/// of its own checks before use (another part of the process may have
/// closed it, and the number been reused).
pub fn descriptor_identity(fd: RawFd) -> io::Result<(u64, u64)> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat(2) into a local struct.
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((stat.st_dev, stat.st_ino))
}

impl MemoryProgram {
    /// Writes `program` (a static executable) to a new in-memory file named
    /// `name`, seals it and checks that `/proc/self/fd` can name it. Fails
    /// where in-memory files or `/proc` are missing.
    pub fn install(name: &std::ffi::CStr, program: &[u8]) -> io::Result<MemoryProgram> {
        install(name, program)
    }

    /// Whether its descriptor is still the program's file (another part of
    /// the process may have closed it, and the number been reused).
    pub fn intact(&self) -> bool {
        descriptor_identity(self.file.as_raw_fd()).is_ok_and(|found| found == self.identity)
    }
}

/// Set once the program failed to execute: every later command forks.
static UNUSABLE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set by [`use_in_process_keeper`].
    static IN_PROCESS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes every later command started on this thread use the in-process
/// keeper (a fork of berth), as a launch with a hook or a cgroup does, or
/// the program again (`false`), so tests can check both ways of starting a
/// command (with a current-thread tokio runtime, every command starts on
/// the thread that drives it).
#[doc(hidden)]
pub fn use_in_process_keeper(on: bool) {
    IN_PROCESS.set(on);
}

/// The program's in-memory file, written and sealed the first time it is
/// needed; `None` where there is none.
fn installed() -> Option<&'static MemoryProgram> {
    static INSTALLED: OnceLock<Option<MemoryProgram>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let program = PROGRAM?;
            install(c"berth-keeper", program)
                .inspect_err(|err| {
                    tracing::debug!("the keeper program cannot be installed, commands fork: {err}");
                })
                .ok()
        })
        .as_ref()
}

/// A close-on-exec in-memory file named `name` holding `bytes`, sealed so
/// that nobody can change it, nor (kernels since 6.3) its mode;
/// `executable` makes it one the kernel will execute.
pub fn sealed_memory_file(
    name: &std::ffi::CStr,
    bytes: &[u8],
    executable: bool,
) -> io::Result<OwnedFd> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // `MFD_EXEC` says the file is meant to be executed (kernels since 6.3
    // warn without it, or refuse with `vm.memfd_noexec`); older kernels do
    // not know the flag.
    let exec = if executable { libc::MFD_EXEC } else { 0 };
    // SAFETY: memfd_create(2) with a NUL-terminated name.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | exec) };
    if fd < 0 && exec != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut written = 0;
    while written < bytes.len() {
        // SAFETY: write(2) of the rest of a live slice to our own file.
        let count = unsafe {
            libc::write(
                file.as_raw_fd(),
                bytes[written..].as_ptr().cast(),
                bytes.len() - written,
            )
        };
        if count < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        written += count as usize;
    }
    // Nobody can change the file from now on, nor (kernels since 6.3,
    // `F_SEAL_EXEC`) its mode: a command running as berth's user could
    // otherwise `chmod` a program through `/proc` and so make berth fork.
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl(2) adding seals to our own file.
    let exec_sealed = unsafe {
        libc::fcntl(
            file.as_raw_fd(),
            libc::F_ADD_SEALS,
            seals | libc::F_SEAL_EXEC | libc::F_SEAL_SEAL,
        )
    } == 0;
    // SAFETY: as above, without the seal older kernels do not know.
    if !exec_sealed
        && unsafe {
            libc::fcntl(
                file.as_raw_fd(),
                libc::F_ADD_SEALS,
                seals | libc::F_SEAL_SEAL,
            )
        } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

fn install(name: &std::ffi::CStr, program: &[u8]) -> io::Result<MemoryProgram> {
    let file = sealed_memory_file(name, program, true)?;
    // The descriptor must not be one the spawned child's file actions
    // overwrite before it execs the program (a host with 0 to 4 closed).
    let file = at_least(file, MAX_TARGETS)?;
    let path =
        CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL in a number");
    if !std::path::Path::new(OsStr::from_bytes(path.as_bytes())).exists() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no /proc/self/fd"));
    }
    let identity = descriptor_identity(file.as_raw_fd())?;
    Ok(MemoryProgram {
        file,
        path,
        identity,
    })
}

/// Whether `launch` may start through the program.
pub(super) fn applies(launch: &Launch) -> bool {
    launch.keeper
        && launch.pre_exec.is_none()
        && launch.cgroup.is_none()
        && !IN_PROCESS.get()
        && !UNUSABLE.load(Ordering::Relaxed)
}

/// Starts `launch` through the program. `None` when the program is not
/// there or cannot be executed here (then the caller forks); otherwise the
/// command's start, or why it failed (a missing program, a bad working
/// directory: what exec or the setup before it said).
pub(super) fn start(launch: &Launch) -> Option<io::Result<Started>> {
    let program = installed()?;
    if !program.intact() {
        tracing::warn!(
            "the keeper program's descriptor was closed or replaced by another part of this \
             process; commands fork from now on"
        );
        UNUSABLE.store(true, Ordering::Relaxed);
        return None;
    }
    match spawn(program, launch) {
        Err(Spawn::Unusable(err)) => {
            tracing::debug!("the keeper program cannot be executed, commands fork: {err}");
            UNUSABLE.store(true, Ordering::Relaxed);
            None
        }
        Err(Spawn::Failed(err)) => Some(Err(err)),
        Ok(started) => Some(Ok(started)),
    }
}

/// Why [`spawn_program`] did not start a command.
#[derive(Debug)]
pub enum SpawnError {
    /// The program itself cannot be executed here (no executable
    /// in-memory files, say): the caller starts the command another way.
    Unusable(io::Error),
    /// The command could not be started (no process could be made, an
    /// argument holds a NUL byte).
    Failed(io::Error),
}

use SpawnError as Spawn;

impl From<io::Error> for SpawnError {
    fn from(err: io::Error) -> SpawnError {
        SpawnError::Failed(err)
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument, the working directory or the environment holds a NUL byte",
        )
    })
}

/// The most descriptors a program is started with (0 to 15): a program's
/// own file is kept above them, so that no file action of any start
/// overwrites it.
const MAX_TARGETS: RawFd = 16;

/// `fd` at a number of at least `floor` (close-on-exec), so that no file
/// action that puts a descriptor below `floor` overwrites a source not yet
/// moved.
fn at_least(fd: OwnedFd, floor: RawFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() >= floor {
        return Ok(fd);
    }
    duplicate_at_least(fd.as_raw_fd(), floor)
}

/// A close-on-exec copy of `fd` at a number of at least `floor`.
fn duplicate_at_least(fd: RawFd, floor: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(2) duplicating a descriptor of this process.
    let moved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// `posix_spawn`'s attributes and file actions, destroyed on drop.
struct SpawnSetup {
    attributes: libc::posix_spawnattr_t,
    actions: libc::posix_spawn_file_actions_t,
}

impl SpawnSetup {
    /// A process group of its own, signal mask `mask`, every signal at its
    /// default action, and its descriptors: `sources[i]` becomes
    /// descriptor `i`.
    fn new(sources: &[RawFd], mask: &libc::sigset_t) -> io::Result<Box<SpawnSetup>> {
        fn check(code: libc::c_int) -> io::Result<()> {
            if code == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(code))
            }
        }
        // SAFETY: all-zero values are placeholders the init calls below
        // overwrite; glibc's destroy calls (in Drop) accept them too (they
        // free a null pointer at most), so an early return is safe.
        let mut setup: Box<SpawnSetup> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: initialising the two objects in place.
        unsafe {
            check(libc::posix_spawnattr_init(&mut setup.attributes))?;
            check(libc::posix_spawn_file_actions_init(&mut setup.actions))?;
        }
        // SAFETY: plain setters on the initialised objects, with local sets.
        unsafe {
            let mut every: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut every);
            check(libc::posix_spawnattr_setsigmask(
                &mut setup.attributes,
                mask,
            ))?;
            check(libc::posix_spawnattr_setsigdefault(
                &mut setup.attributes,
                &every,
            ))?;
            check(libc::posix_spawnattr_setpgroup(&mut setup.attributes, 0))?;
            check(libc::posix_spawnattr_setflags(
                &mut setup.attributes,
                (libc::POSIX_SPAWN_SETPGROUP
                    | libc::POSIX_SPAWN_SETSIGMASK
                    | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            ))?;
            for (target, &source) in sources.iter().enumerate() {
                check(libc::posix_spawn_file_actions_adddup2(
                    &mut setup.actions,
                    source,
                    target as RawFd,
                ))?;
            }
        }
        Ok(setup)
    }
}

impl Drop for SpawnSetup {
    fn drop(&mut self) {
        // SAFETY: both objects were initialised by `new` (or are still
        // all-zero, which glibc's destroy calls accept).
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut self.actions);
            libc::posix_spawnattr_destroy(&mut self.attributes);
        }
    }
}

/// A spawned program's pid and berth's ends of its standard pipes.
struct Spawned {
    pid: libc::pid_t,
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    started_at: Instant,
}

/// Starts `program` with `words` as its argv and `env` as its environment:
/// descriptors 0 to 2 new pipes (stdin `/dev/null` without `with_stdin`),
/// 3 and on `extra`, signal mask `mask`, every signal at its default
/// action, a process group of its own.
fn spawn_image(
    program: &MemoryProgram,
    words: &[CString],
    env: &[CString],
    with_stdin: bool,
    extra: Vec<OwnedFd>,
    mask: &libc::sigset_t,
) -> Result<Spawned, Spawn> {
    let mut argv_ptrs: Vec<*mut libc::c_char> =
        words.iter().map(|w| w.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut env_ptrs: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr().cast_mut()).collect();
    env_ptrs.push(std::ptr::null_mut());

    let (stdin_parent, stdin_child) = if with_stdin {
        let (read, write) = cloexec_pipe()?;
        (Some(write), read)
    } else {
        // SAFETY: open(2) of a NUL-terminated path.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if null < 0 {
            return Err(io::Error::last_os_error().into());
        }
        // SAFETY: the kernel just returned this descriptor.
        (None, unsafe { OwnedFd::from_raw_fd(null) })
    };
    let (stdout_read, stdout_write) = cloexec_pipe()?;
    let (stderr_read, stderr_write) = cloexec_pipe()?;
    // Every source above the targets 0 to `targets - 1`.
    let targets = 3 + extra.len() as RawFd;
    if targets > MAX_TARGETS {
        return Err(Spawn::Failed(io::Error::from_raw_os_error(libc::EMFILE)));
    }
    let mut child_side = vec![
        at_least(stdin_child, targets)?,
        at_least(stdout_write, targets)?,
        at_least(stderr_write, targets)?,
    ];
    for fd in extra {
        child_side.push(at_least(fd, targets)?);
    }
    let sources: Vec<RawFd> = child_side.iter().map(AsRawFd::as_raw_fd).collect();
    let setup = SpawnSetup::new(&sources, mask)?;

    let started_at = Instant::now();
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is to a live, NUL-terminated string or a
    // null-terminated array of them, and the attributes and file actions
    // are initialised; posix_spawn copies nothing it keeps.
    let code = unsafe {
        libc::posix_spawn(
            &mut pid,
            program.path.as_ptr(),
            &setup.actions,
            &setup.attributes,
            argv_ptrs.as_ptr(),
            env_ptrs.as_ptr(),
        )
    };
    drop(setup);
    // berth's copies of the child's ends go now: the pipes then read as
    // ended once the command (or the keeper) is done with them.
    drop(child_side);
    if code != 0 {
        let err = io::Error::from_raw_os_error(code);
        return Err(match code {
            // The program itself cannot be executed here.
            libc::ENOENT
            | libc::EACCES
            | libc::EPERM
            | libc::ENOEXEC
            | libc::ELIBBAD
            | libc::ENOTDIR
            | libc::ELOOP => Spawn::Unusable(err),
            // No process could be made now (EAGAIN, ENOMEM).
            _ => Spawn::Failed(err),
        });
    }
    Ok(Spawned {
        pid,
        stdin: stdin_parent,
        stdout: stdout_read,
        stderr: stderr_read,
        started_at,
    })
}

/// Starts `launch` through `program`, a sandbox's own static program that
/// contains the command's whole tree and reports its end as the keeper
/// does: its argv is `words` followed by the command's argv, its
/// environment the command's; descriptors 0 to 2 are the command's new
/// pipes (stdin `/dev/null` without [`Launch::with_stdin`]), 3 the status
/// pipe, on which the program writes one record when the command ends
/// (its wait status and `struct rusage`, as the keeper program does) and
/// which reads as ended once nothing of the command is left, and 4 on
/// copies of `extra` (at most 12). On SIGTERM the program must end
/// everything of the command. Every signal is unblocked and at its
/// default action; it leads a process group of its own. The program itself
/// arms its parent-death signal, joins the launch's cgroup (berth removes
/// it once the program is gone) and applies the launch's working directory
/// and rlimits as it sees fit (they are not applied here, nor its hook).
/// Returns once the program runs: what it reports about the command's
/// start is the caller's to read.
pub fn spawn_program(
    program: &MemoryProgram,
    words: &[CString],
    launch: &Launch,
    extra: &[RawFd],
) -> Result<Started, SpawnError> {
    if !program.intact() {
        return Err(SpawnError::Unusable(io::Error::new(
            io::ErrorKind::NotFound,
            "the program's descriptor was closed or replaced by another part of this process",
        )));
    }
    let argv = launch.program.argv();
    if argv.is_empty() {
        return Err(Spawn::Failed(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the command's argv is empty",
        )));
    }
    let mut all = words.to_vec();
    for word in &argv {
        all.push(c_string(word.as_bytes())?);
    }
    let env = environment(launch)?;
    let (status_read, status_write) = status_pipe()?;
    let mut fds = vec![status_write];
    for &fd in extra {
        fds.push(duplicate_at_least(fd, MAX_TARGETS)?);
    }
    // SAFETY: sigemptyset on a local set.
    let unblocked = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    };
    let spawned = spawn_image(program, &all, &env, launch.with_stdin, fds, &unblocked)?;
    let io = StartedIo {
        status_read: Some(status_read),
        stdin: spawned.stdin,
        stdout: spawned.stdout,
        stderr: spawned.stderr,
    };
    adopt(spawned.pid, io, launch.cgroup.clone(), spawned.started_at).map_err(SpawnError::Failed)
}

fn spawn(program: &MemoryProgram, launch: &Launch) -> Result<Started, Spawn> {
    // Everything the child needs, made before it exists.
    let limit = |bytes: Option<u64>| match bytes {
        Some(bytes) => c_string(bytes.to_string().as_bytes()),
        None => c_string(b"-"),
    };
    let mut words = vec![
        c_string(b"berth-keeper")?,
        c_string(std::process::id().to_string().as_bytes())?,
        limit(launch.rlimits.address_space)?,
        limit(launch.rlimits.file_size)?,
        c_string(launch.cwd.as_os_str().as_bytes())?,
        c_string(match launch.in_shells_place {
            InShellsPlace::No => b"0",
            InShellsPlace::Exec => b"1",
            InShellsPlace::Fork => b"2",
        })?,
    ];
    let argv = launch.program.argv();
    if argv.is_empty() {
        return Err(Spawn::Failed(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the command's argv is empty",
        )));
    }
    for word in &argv {
        words.push(c_string(word.as_bytes())?);
    }
    let env = environment(launch)?;
    let (status_read, status_write) = status_pipe()?;
    let (error_read, error_write) = cloexec_pipe()?;
    // The signals the program waits for, blocked from its first
    // instruction.
    let signals = keeper::keeper_signals();
    let spawned = spawn_image(
        program,
        &words,
        &env,
        launch.with_stdin,
        vec![status_write, error_write],
        &signals,
    )?;
    // The start-error pipe reads as ended once the command exec'd; an
    // errno on it means it did not start (the keeper then exits).
    if let Some(errno) = read_start_error(&error_read) {
        reap(spawned.pid);
        return Err(Spawn::Failed(io::Error::from_raw_os_error(errno)));
    }
    drop(error_read);
    let io = StartedIo {
        status_read: Some(status_read),
        stdin: spawned.stdin,
        stdout: spawned.stdout,
        stderr: spawned.stderr,
    };
    adopt(spawned.pid, io, None, spawned.started_at).map_err(Spawn::Failed)
}

/// The launch's environment as `KEY=value` strings.
fn environment(launch: &Launch) -> io::Result<Vec<CString>> {
    launch
        .env
        .iter()
        .map(|(key, value)| c_string(format!("{key}={value}").as_bytes()))
        .collect()
}

/// Waits for the start-error pipe to end: `None` when the command exec'd,
/// else the errno of what failed before.
fn read_start_error(pipe: &OwnedFd) -> Option<i32> {
    let mut bytes = [0u8; 4];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: read(2) into the rest of a local buffer.
        let count = unsafe {
            libc::read(
                pipe.as_raw_fd(),
                bytes[filled..].as_mut_ptr().cast(),
                bytes.len() - filled,
            )
        };
        if count < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Some(libc::EIO);
        }
        if count == 0 {
            break;
        }
        filled += count as usize;
    }
    match filled {
        0 => None,
        4 => Some(i32::from_ne_bytes(bytes)),
        _ => Some(libc::EIO),
    }
}

/// Reaps a keeper whose command did not start (it exits at once).
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    loop {
        // SAFETY: waitpid(2) of our own child with a local out-pointer.
        let reaped = unsafe { libc::waitpid(pid, &mut status, 0) };
        if reaped >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}
