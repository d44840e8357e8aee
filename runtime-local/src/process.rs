//! Starting one command as a host process and driving it to its end.
//!
//! Each command is a `sh -c` started by a *keeper*: the keeper forks the
//! shell into a process group of its own and stays behind as a child
//! subreaper, so every process the command
//! starts — also those that `setsid`, `nohup` or double-fork away from the
//! group — ends with the command's kill, the runtime's cleanup, or berth's
//! own death (the keeper's parent-death signal makes it sweep the tree).
//! The keeper is `berth-keeper`, a small program started without copying
//! berth's process (`process/keeper_program.rs`), or, for a launch with a
//! hook or a cgroup, a fork of berth (`process/keeper.rs`); both behave
//! alike.
//! The keeper reports the shell's wait status and resource usage through a
//! pipe. The command starts with exactly descriptors 0, 1 and 2: whatever
//! else berth's caller left open is closed at exec. The driver reads stdout
//! and stderr as they come, feeds stdin, enforces the wall and idle
//! timeouts by killing the whole tree, and never waits more than a short
//! grace period for pipes that a background grandchild keeps open.
//!
//! This module is public so that sandbox backends built on host processes
//! (the `namespace` plugin) reuse the one way berth starts and reads a
//! process instead of copying it. Their extension point is
//! [`Launch::pre_exec`]: a hook run in the forked child after this module's
//! own setup and before exec, where a sandbox enters its namespaces. A
//! sandbox that contains the command's whole tree itself (a pid namespace
//! whose init dies with its supervisor) may go without the keeper
//! ([`Launch::keeper`]); its forked child is then the process berth
//! watches, leading a process group berth kills. [`child`] holds the
//! async-signal-safe system calls such hooks need.

pub mod child;
mod keeper;
mod keeper_program;

pub use keeper_program::{
    MemoryProgram, SpawnError, descriptor_identity, sealed_memory_file, spawn_program,
    use_in_process_keeper,
};

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use session_core::runtime::{
    ChunkPool, Event, EventSender, EventStream, ExecResult, ExecStatus, OutputBuffer, StdinSource,
    StdoutLend, Usage, grow_pipe_to, pipe_waiting,
};

use crate::cgroup::CommandCgroup;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::time::{Instant, sleep_until};

/// How long output may keep arriving after the shell exited before berth
/// stops reading (a background grandchild may hold the pipes for ever).
pub(crate) const EXIT_DRAIN_GRACE: Duration = Duration::from_millis(250);

/// How long berth reads after killing a group, for output already in the
/// pipes.
const KILL_DRAIN_GRACE: Duration = Duration::from_millis(500);

/// The most berth reads from a pipe at once, until a stream proves bulky.
const READ_CHUNK: usize = 64 << 10;

/// The size berth gives a command's stdout pipe once that much came
/// through it (the stream is bulky), and the most it reads from it at
/// once from then on. Four times Linux's default pipe: a command that
/// writes fast can run that much ahead of its reader, and each read (and
/// event) carries up to that much, so a fast stream costs a quarter of the
/// wake-ups between the command, berth's reader and the consumer. Pipe
/// pages count against the user's `pipe-user-pages-soft` (64 MiB by
/// default) while the pipe exists, which is why only a bulky stream's pipe
/// grows (by 48 pages). Where the kernel refuses, the pipe keeps its size.
const STDOUT_PIPE: usize = 256 << 10;

/// How long [`ProcessTable::close_and_wait`] waits for killed commands to
/// be reaped.
pub const CLEANUP_PATIENCE: Duration = Duration::from_secs(5);

/// Resource limits applied between fork and exec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rlimits {
    /// `RLIMIT_AS`: the largest address space, in bytes.
    pub address_space: Option<u64>,
    /// `RLIMIT_FSIZE`: the largest file the process may write, in bytes.
    pub file_size: Option<u64>,
}

/// A hook run in the forked child between fork and exec, after the
/// process group, the parent-death signal and the rlimits are in place.
/// Made only through the `unsafe` [`PreExec::new`], whose contract is the
/// same as std's `CommandExt::pre_exec`.
#[derive(Clone)]
pub struct PreExec(Arc<dyn Fn() -> io::Result<()> + Send + Sync>);

impl PreExec {
    /// A hook that runs `hook` in the child. Returning `Err` makes
    /// [`start`] fail with that error; a hook may also fork and never
    /// return in the parent branch, as long as exactly one process goes on
    /// to exec.
    ///
    /// # Safety
    ///
    /// `hook` runs in a copy of a possibly multi-threaded process, between
    /// fork and exec: it may call only async-signal-safe functions — no
    /// allocation, no locks (a lock another thread held at the fork stays
    /// held for ever), no `println!`, no `tracing` — and must prepare
    /// everything it needs (paths as `CString`s, buffers) before [`start`].
    /// It must not close or replace descriptors 0, 1 and 2 or those berth
    /// keeps for itself, and must leave exactly one process to exec. The
    /// same contract as std's `CommandExt::pre_exec`.
    pub unsafe fn new<F>(hook: F) -> PreExec
    where
        F: Fn() -> io::Result<()> + Send + Sync + 'static,
    {
        PreExec(Arc::new(hook))
    }

    fn call(&self) -> io::Result<()> {
        (self.0)()
    }
}

impl std::fmt::Debug for PreExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreExec")
    }
}

/// The program a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `shell -c command`: how commands of a spec run.
    Shell {
        /// The POSIX shell (resolved when the child execs, after
        /// [`Launch::pre_exec`] ran).
        shell: PathBuf,
        /// The command string.
        command: String,
    },
    /// A program and its arguments, run as they are (no shell reads
    /// them): `argv[0]` is looked up in `PATH` when it has no `/`.
    Argv(Vec<OsString>),
}

impl Program {
    /// `shell -c command`.
    pub fn shell(shell: impl Into<PathBuf>, command: impl Into<String>) -> Program {
        Program::Shell {
            shell: shell.into(),
            command: command.into(),
        }
    }

    /// The whole argv: `[shell, "-c", command]` for a shell string.
    pub fn argv(&self) -> Vec<OsString> {
        match self {
            Program::Shell { shell, command } => vec![
                shell.clone().into_os_string(),
                OsString::from("-c"),
                OsString::from(command),
            ],
            Program::Argv(argv) => argv.clone(),
        }
    }

    /// This program run by `wrapper` (`bwrap --ro-bind / / --`, `nice -n
    /// 10`...): the wrapper's words, then this program's whole argv.
    pub fn wrapped_in<I, S>(&self, wrapper: I) -> Program
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut argv: Vec<OsString> = wrapper.into_iter().map(Into::into).collect();
        argv.extend(self.argv());
        Program::Argv(argv)
    }

    /// The file executed, for messages.
    pub fn executable(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Program::Shell { shell, .. } => shell.to_string_lossy(),
            Program::Argv(argv) => argv
                .first()
                .map_or(std::borrow::Cow::Borrowed(""), |first| {
                    first.to_string_lossy()
                }),
        }
    }
}

/// What to start: one command as a host process.
pub struct Launch {
    /// What runs.
    pub program: Program,
    /// The working directory, entered before [`Launch::pre_exec`] runs.
    pub cwd: PathBuf,
    /// The whole environment of the command (nothing else is inherited).
    pub env: IndexMap<String, String>,
    /// Give the command a stdin pipe (else `/dev/null`).
    pub with_stdin: bool,
    /// Limits set in the child.
    pub rlimits: Rlimits,
    /// Extra setup in the child, last before exec (a sandbox entering its
    /// namespaces); `None` for a plain host process.
    pub pre_exec: Option<PreExec>,
    /// Start the command under a keeper (see the module docs): `true` for
    /// every host process whose tree nothing else contains. `false` only
    /// for a sandbox whose [`Launch::pre_exec`] hook contains the whole
    /// tree itself and ends it when its forked child dies.
    pub keeper: bool,
    /// The command's cgroup (its limits), joined in the child before the
    /// hook runs: by the shell under a keeper (the keeper stays outside
    /// it), else by the forked child. It is removed once every process of
    /// the command is gone.
    pub cgroup: Option<Arc<CommandCgroup>>,
    /// Whether [`Launch::program`] starts in the place of a shell that
    /// would only have run it ([`InShellsPlace`]); such a launch needs the
    /// keeper program, and fails to start ([`io::ErrorKind::Unsupported`])
    /// where it does not apply (a hook, a cgroup, the in-process keeper).
    pub in_shells_place: InShellsPlace,
}

/// How a program started without the shell stands in for the shell's run
/// of it ([`Launch::in_shells_place`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InShellsPlace {
    /// Not in a shell's place: the argv is exec'd as `execvp` does (a
    /// file the kernel will not execute is run by `/bin/sh`).
    #[default]
    No,
    /// For a shell that would exec it (`exec` and literal words): exec'd;
    /// a file the kernel will not execute fails to start, so that the
    /// caller hands the command to the shell, which decides what to do
    /// with it.
    Exec,
    /// For dash, which would fork it and wait: the command's first process
    /// does what dash would — leads the group, forks the program (exec'd
    /// as for [`InShellsPlace::Exec`]), waits for it, and ends with its
    /// status, or `128 + N` and dash's line on stderr when signal N ended
    /// it — in a fork of the keeper program instead of dash's exec.
    Fork,
}

impl Launch {
    /// A launch of `program` in `cwd` with environment `env`, under a
    /// keeper, with stdin from `/dev/null`, no rlimits, no hook and no
    /// cgroup.
    pub fn new(program: Program, cwd: impl Into<PathBuf>, env: IndexMap<String, String>) -> Launch {
        Launch {
            program,
            cwd: cwd.into(),
            env,
            with_stdin: false,
            rlimits: Rlimits::default(),
            pre_exec: None,
            keeper: true,
            cgroup: None,
            in_shells_place: InShellsPlace::No,
        }
    }
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("program", &self.program)
            .field("cwd", &self.cwd)
            .field("with_stdin", &self.with_stdin)
            .field("rlimits", &self.rlimits)
            .field("pre_exec", &self.pre_exec.is_some())
            .field("keeper", &self.keeper)
            .field("cgroup", &self.cgroup.as_ref().map(|cgroup| cgroup.name()))
            .field("in_shells_place", &self.in_shells_place)
            .finish_non_exhaustive()
    }
}

/// How berth reaches a started command's processes.
#[derive(Clone)]
enum Control {
    /// A keeper: SIGTERM makes it sweep the command's tree and exit; it is
    /// alive while anything of the command is.
    Keeper {
        /// Its pid (for `/proc`).
        pid: i32,
        /// Its pidfd (for signals, and to tell that it ended).
        pidfd: Arc<AsyncFd<OwnedFd>>,
    },
    /// A process group berth kills itself (a sandbox without a keeper).
    Group(i32),
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Keeper { pid, .. } => write!(f, "Keeper({pid})"),
            Control::Group(pgid) => write!(f, "Group({pgid})"),
        }
    }
}

/// Sends `signal` through a pidfd; a process that already ended is not an
/// error.
fn signal_pidfd(pidfd: &AsyncFd<OwnedFd>, signal: libc::c_int) {
    // SAFETY: pidfd_send_signal(2) on a pidfd we own, without siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        );
    }
}

/// How many rounds [`kill_children_of`] makes at most.
const FORCE_ROUNDS: usize = 1000;

/// SIGKILLs every living child of `parent` (as `/proc` lists them) until a
/// round finds none, for at most [`FORCE_ROUNDS`] rounds.
fn kill_children_of(parent: i32) {
    let list = format!("/proc/{parent}/task/{parent}/children");
    for _ in 0..FORCE_ROUNDS {
        let Ok(text) = std::fs::read_to_string(&list) else {
            return;
        };
        let mut alive = 0;
        for child in text
            .split_whitespace()
            .filter_map(|pid| pid.parse::<i32>().ok())
        {
            let zombie = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit_once(") ")
                        .map(|(_, rest)| rest.starts_with(['Z', 'X']))
                })
                .unwrap_or(true);
            if !zombie {
                alive += 1;
                // SAFETY: kill(2) of a child of berth's own keeper.
                unsafe {
                    libc::kill(child, libc::SIGKILL);
                }
            }
        }
        if alive == 0 {
            return;
        }
        std::thread::yield_now();
    }
}

impl Control {
    /// Ends every process of the command: asks the keeper to sweep (and
    /// wakes it, should the command have stopped it), or kills the group.
    fn kill(&self) {
        match self {
            Control::Keeper { pidfd, .. } => {
                signal_pidfd(pidfd, libc::SIGTERM);
                signal_pidfd(pidfd, libc::SIGCONT);
            }
            Control::Group(pgid) => kill_group(*pgid),
        }
    }

    /// Ends the command without the keeper's help, for a keeper that did
    /// not finish its sweep in time (the command, running as the same user,
    /// may have stopped or otherwise hindered it): kills every child of the
    /// keeper until none is left alive (orphans keep coming to it, a
    /// subreaper), then the keeper.
    fn force(&self) {
        match self {
            Control::Keeper { pid, pidfd } => {
                kill_children_of(*pid);
                signal_pidfd(pidfd, libc::SIGKILL);
            }
            Control::Group(pgid) => kill_group(*pgid),
        }
    }

    /// Whether any process of the command may still run.
    fn alive(&self) -> bool {
        match self {
            Control::Keeper { pidfd, .. } => {
                let mut poll = libc::pollfd {
                    fd: pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: poll(2) of one local pollfd without waiting. A
                // pidfd is readable once its process has ended.
                unsafe { libc::poll(&mut poll, 1, 0) == 0 }
            }
            Control::Group(pgid) => group_alive(*pgid),
        }
    }
}

/// How berth learns that the command ended.
enum ExitWatch {
    /// Reaping the forked child, whose wait status is the command's.
    Reap,
    /// Reading the keeper's record from the status pipe.
    Report(AsyncFd<OwnedFd>),
}

/// A started process, not yet reaped.
pub struct Started {
    /// The process id of berth's child (the keeper, or a sandbox's forked
    /// child), which also leads a process group.
    pub pid: i32,
    pidfd: Arc<AsyncFd<OwnedFd>>,
    exit: ExitWatch,
    cgroup: Option<Arc<CommandCgroup>>,
    stdin: Option<pipe::Sender>,
    stdout: StdoutPipe,
    stderr: pipe::Receiver,
    /// When it was started.
    pub started_at: Instant,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Started {
    fn control(&self) -> Control {
        match self.exit {
            ExitWatch::Reap => Control::Group(self.pid),
            ExitWatch::Report(_) => Control::Keeper {
                pid: self.pid,
                pidfd: Arc::clone(&self.pidfd),
            },
        }
    }

    /// What is left to settle once the command's result is known.
    fn settlement(&mut self) -> Settlement {
        Settlement {
            keeper: match self.exit {
                ExitWatch::Reap => None,
                ExitWatch::Report(_) => Some((self.pid, Arc::clone(&self.pidfd))),
            },
            cgroup: self.cgroup.take(),
        }
    }

    /// Kills the command's processes and reaps berth's child, for a process
    /// that was started but must not run (a sandbox that reported a failed
    /// setup). Returns its raw wait status.
    pub async fn kill_and_reap(mut self) -> i32 {
        self.control().kill();
        let status = wait_exit(&self.pidfd, self.pid).await.0;
        self.settlement().settle().await;
        status
    }
    /// As [`kill_and_reap`](Self::kill_and_reap), on the calling thread,
    /// for a start that failed (its process ends at once): nothing of it,
    /// its cgroup included, is left once this returns, even when the
    /// runtime is shut down right after.
    pub fn kill_and_reap_now(mut self) {
        self.control().kill();
        let mut status = 0;
        // SAFETY: waitpid(2) of our own child with a local out-pointer.
        while unsafe { libc::waitpid(self.pid, &mut status, 0) } < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
        drop(self.settlement().cgroup);
    }
}

/// What outlives a command's result: its keeper, which ends (and is
/// reaped) once the last process of the command is gone, and its cgroup,
/// removed after that.
struct Settlement {
    keeper: Option<(i32, Arc<AsyncFd<OwnedFd>>)>,
    cgroup: Option<Arc<CommandCgroup>>,
}

impl Settlement {
    /// Waits for the keeper to end and reaps it, then removes the cgroup
    /// (off the async threads: removal waits for the kernel to release the
    /// last task).
    async fn settle(self) {
        if let Some((pid, pidfd)) = &self.keeper {
            wait_exit(pidfd, *pid).await;
        }
        if let Some(cgroup) = self.cgroup {
            let _ = tokio::task::spawn_blocking(move || drop(cgroup)).await;
        }
    }
}

/// Starts the process: berth's child (a new process group, its
/// parent-death signal), the keeper's split when [`Launch::keeper`] is set,
/// rlimits, the launch's [`PreExec`] hook, every descriptor above 2 marked
/// close-on-exec, then exec. Must run inside a tokio runtime with I/O
/// enabled.
///
/// Fails when fork or exec fails, or with the hook's error.
pub fn start(launch: &Launch) -> io::Result<Started> {
    if keeper_program::applies(launch)
        && let Some(started) = keeper_program::start(launch)
    {
        return started;
    }
    if launch.in_shells_place != InShellsPlace::No {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a program in the shell's place starts through the keeper program only",
        ));
    }
    let argv = launch.program.argv();
    let Some((program, args)) = argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the command's argv is empty",
        ));
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(&launch.cwd)
        .env_clear()
        .envs(
            launch
                .env
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
        .stdin(if launch.with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let parent = std::process::id() as libc::pid_t;
    let rlimits = launch.rlimits;
    let hook = launch.pre_exec.clone();
    // The keeper's status pipe: berth reads, the keeper writes (the shell
    // never holds it: close-on-exec).
    let status = if launch.keeper {
        Some(status_pipe()?)
    } else {
        None
    };
    let status_write = status.as_ref().map(|(_, write)| write.as_raw_fd());
    let join = launch.cgroup.as_ref().map(|cgroup| cgroup.joiner());
    // What the keeper keeps open, ascending: its status pipe and the
    // cgroup's descriptors (made here: the child must not allocate).
    let mut keep: Vec<RawFd> = status_write.into_iter().collect();
    if let Some(join) = &join {
        let (fds, count) = join.descriptors();
        keep.extend_from_slice(&fds[..count]);
    }
    keep.sort_unstable();
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe functions (setpgid, prctl, getppid, signal,
    // setrlimit, fork, fcntl, close_range, _exit), the keeper (which makes
    // only system calls on stack buffers) and the launch's hook, which
    // promises the same; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            match status_write {
                Some(status) => {
                    let kill_cgroup = || {
                        if let Some(join) = &join {
                            let _ = join.kill_in_child();
                        }
                    };
                    keeper::split(
                        parent,
                        &keeper::KeeperPlan {
                            status,
                            keep: &keep,
                            kill_cgroup: join.as_ref().map(|_| &kill_cgroup as &(dyn Fn() + Sync)),
                        },
                    )?;
                }
                None => {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // The parent may have died before prctl took effect.
                    if libc::getppid() != parent {
                        libc::_exit(137);
                    }
                }
            }
            if let Some(join) = &join {
                join.join()?;
            }
            if let Some(bytes) = rlimits.address_space {
                set_rlimit(libc::RLIMIT_AS, bytes)?;
            }
            if let Some(bytes) = rlimits.file_size {
                set_rlimit(libc::RLIMIT_FSIZE, bytes)?;
            }
            // Whatever berth's caller left open is not the command's: only
            // 0, 1 and 2 survive the exec. Every signal at its default
            // action, as the keeper program leaves it. Both before the hook,
            // whose last step may be a seccomp filter that refuses the
            // calls.
            child::default_signal_dispositions();
            child::cloexec_from(3);
            if let Some(hook) = &hook {
                hook.call()?;
                // And whatever the hook opened.
                child::cloexec_from(3);
            }
            Ok(())
        });
    }
    let started_at = Instant::now();
    let spawned = command.spawn();
    // berth's copy of the write end goes now, so the pipe reads as ended
    // once the keeper is gone.
    let status_read = status.map(|(read, _write)| read);
    let mut child = spawned?;
    let pid = child.id() as i32;
    // Also from the parent, so the group exists before anyone signals it.
    // SAFETY: plain syscall on our own child's pid.
    unsafe {
        libc::setpgid(pid, pid);
    }
    let stdin = child.stdin.take().map(OwnedFd::from);
    let stdout = OwnedFd::from(child.stdout.take().expect("piped"));
    let stderr = OwnedFd::from(child.stderr.take().expect("piped"));
    // `child` is dropped without waiting: the pidfd and wait4 reap it.
    drop(child);
    let io = StartedIo {
        status_read,
        stdin,
        stdout,
        stderr,
    };
    adopt(pid, io, launch.cgroup.clone(), started_at)
}

/// berth's ends of a started process's pipes.
struct StartedIo {
    /// The keeper's status pipe; `None` without a keeper.
    status_read: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// Takes charge of the process `pid` just started (however it was): its
/// pidfd and its pipes, registered with tokio. Should that fail, the
/// process is ended (the keeper sweeps, a keeper-less child's group is
/// killed) and reaped on a thread of its own, so nothing runs unowned.
fn adopt(
    pid: i32,
    io: StartedIo,
    cgroup: Option<Arc<CommandCgroup>>,
    started_at: Instant,
) -> io::Result<Started> {
    let keeper = io.status_read.is_some();
    let adopted = (|| {
        let pidfd = pidfd_open(pid)?;
        let exit = match io.status_read {
            // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and
            // unchanged for as long as it is registered.
            Some(read) => ExitWatch::Report(
                unsafe { AsyncFd::register_with_interest(read, tokio::io::Interest::READABLE) }
                    .map_err(io::Error::from)?,
            ),
            None => ExitWatch::Reap,
        };
        Ok(Started {
            pid,
            // SAFETY: as above, the AsyncFd owns the pidfd.
            pidfd: Arc::new(
                unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
                    .map_err(io::Error::from)?,
            ),
            exit,
            cgroup,
            stdin: io.stdin.map(pipe::Sender::from_owned_fd).transpose()?,
            stdout: StdoutPipe::Watched(pipe::Receiver::from_owned_fd(io.stdout)?),
            stderr: pipe::Receiver::from_owned_fd(io.stderr)?,
            started_at,
        })
    })();
    if adopted.is_err() {
        // SAFETY: kill(2) of our own child (or its group); the pid stays
        // ours until it is reaped below.
        unsafe {
            if keeper {
                libc::kill(pid, libc::SIGTERM);
                libc::kill(pid, libc::SIGCONT);
            } else {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        std::thread::spawn(move || {
            let mut status = 0;
            // SAFETY: waitpid(2) of our own child with a local out-pointer.
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        });
    }
    adopted
}

/// A close-on-exec pipe: (read end, write end).
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) with a pointer to a local array of two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned these fds; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec pipe whose read end does not block.
fn status_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = cloexec_pipe()?;
    // SAFETY: fcntl(2) on the read end we own.
    unsafe {
        let flags = libc::fcntl(read.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(read.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    Ok((read, write))
}

fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: setrlimit with a valid pointer to a local struct.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends SIGKILL to every process of the group. A group that is already
/// gone is not an error.
pub fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals the group; no memory is
    // involved.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Whether any process of the group is still alive (or unreaped).
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// Waits for the process to exit and reaps it, returning the raw wait
/// status and its resource usage.
async fn wait_exit(pidfd: &AsyncFd<OwnedFd>, pid: i32) -> (i32, Usage) {
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value to be overwritten.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child with valid out-pointers.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            return (status, usage_of(&usage));
        }
        if reaped < 0 {
            // Nothing to reap (already reaped elsewhere): report it as killed.
            return (libc::SIGKILL, Usage::default());
        }
        match pidfd.readable().await {
            Ok(mut guard) => guard.clear_ready(),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Waits for the keeper's record of the shell's end. A keeper that ended
/// without one (killed from outside) counts as a SIGKILL of the command.
async fn wait_report(pipe: &AsyncFd<OwnedFd>) -> (i32, Usage) {
    let mut record = [0u8; keeper::RECORD_LEN];
    loop {
        // SAFETY: read(2) into a local buffer from a non-blocking fd we own.
        let read = unsafe {
            libc::read(
                pipe.as_raw_fd(),
                record.as_mut_ptr().cast(),
                keeper::RECORD_LEN,
            )
        };
        if read == keeper::RECORD_LEN as isize {
            let (status, usage) = keeper::decode(&record);
            return (status, usage_of(&usage));
        }
        let would_block = read < 0
            && matches!(
                io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN | libc::EINTR)
            );
        if !would_block {
            return (libc::SIGKILL, Usage::default());
        }
        match pipe.readable().await {
            Ok(mut guard) => guard.clear_ready(),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// How the command ended, by whichever way `exit` says.
async fn wait_end(exit: &ExitWatch, pidfd: &AsyncFd<OwnedFd>, pid: i32) -> (i32, Usage) {
    match exit {
        ExitWatch::Reap => wait_exit(pidfd, pid).await,
        ExitWatch::Report(pipe) => wait_report(pipe).await,
    }
}

fn usage_of(usage: &libc::rusage) -> Usage {
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Usage {
        user_cpu: time(usage.ru_utime),
        system_cpu: time(usage.ru_stime),
        max_rss_bytes: (usage.ru_maxrss.max(0) as u64) * 1024,
    }
}

/// How a command is to be watched.
#[derive(Debug)]
pub struct Watch {
    /// Kill the group this long after the start.
    pub wall_timeout: Option<Duration>,
    /// Kill the group after this long without output.
    pub idle_timeout: Option<Duration>,
    /// Bytes kept in memory per stream.
    pub output_limit: u64,
    /// Where full streams spill past `output_limit`.
    pub spill_dir: Option<std::path::PathBuf>,
    /// The result keeps no output (the caller takes it from the events):
    /// [`ExecCommand::events_only`](session_core::runtime::ExecCommand).
    pub events_only: bool,
    /// Bytes fed to stdin (which needs [`Launch::with_stdin`]).
    pub stdin: Option<Vec<u8>>,
    /// Stdin that arrives while the command runs, written after `stdin`'s
    /// bytes as it comes (also needs [`Launch::with_stdin`]); the command's
    /// stdin is closed at its end ([`ExecCommand::take_stdin`] makes it).
    ///
    /// [`ExecCommand::take_stdin`]: session_core::runtime::ExecCommand::take_stdin
    pub stdin_source: Option<StdinSource>,
}

impl Default for Watch {
    /// No timeouts, the spec's default output limit, no spilling, no
    /// stdin.
    fn default() -> Watch {
        Watch {
            wall_timeout: None,
            idle_timeout: None,
            output_limit: session_core::spec::DEFAULT_OUTPUT_LIMIT,
            spill_dir: None,
            events_only: false,
            stdin: None,
            stdin_source: None,
        }
    }
}

/// Why berth killed a command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KilledFor {
    Wall,
    Idle,
    Cancelled,
}

/// Drives a started process to its end, sending live events, and returns
/// its result. The runtime's `kill()` signals the group directly; the
/// result then says which signal ended it. A wall or idle timeout, or a
/// consumer that went away, kills the whole group.
pub async fn drive(started: Started, watch: Watch, events: &EventSender) -> ExecResult {
    let lend = stdout_lend(&started, &watch);
    let (result, settlement) = drive_parts(started, watch, events, lend).await;
    tokio::spawn(settlement.settle());
    result
}

/// How long a keeper has to finish its sweep after a kill before berth
/// ends the command without it.
const KEEPER_PATIENCE: Duration = Duration::from_secs(2);

/// The offer of `started`'s stdout pipe to the consumer of its events
/// ([`StdoutLend`]), its output going into a buffer as `watch` says.
fn stdout_lend(started: &Started, watch: &Watch) -> Arc<StdoutLend> {
    let buffer = OutputBuffer::new(watch.output_limit, watch.spill_dir.as_deref(), "stdout")
        .events_only(watch.events_only);
    let lend = StdoutLend::new(started.stdout.as_fd(), buffer);
    lend.grow_pipe(STDOUT_PIPE as u64, STDOUT_PIPE);
    lend
}

/// berth's end of a command's stdout: watched by tokio while the driver
/// reads it, and not while the consumer of its events reads it (a pipe
/// that no one waits on through tokio must not wake tokio's threads on
/// every write).
enum StdoutPipe {
    Watched(pipe::Receiver),
    Unwatched(OwnedFd),
    /// Failed to switch: the pipe is closed.
    Gone,
}

impl StdoutPipe {
    /// The pipe, watched by tokio from now on; `None` if that failed.
    fn watch(&mut self) -> Option<&pipe::Receiver> {
        if let StdoutPipe::Unwatched(_) = self
            && let StdoutPipe::Unwatched(fd) = std::mem::replace(self, StdoutPipe::Gone)
        {
            match pipe::Receiver::from_owned_fd_unchecked(fd) {
                Ok(watched) => *self = StdoutPipe::Watched(watched),
                Err(err) => tracing::warn!("could not watch a command's stdout again: {err}"),
            }
        }
        match self {
            StdoutPipe::Watched(pipe) => Some(pipe),
            _ => None,
        }
    }

    /// Stops tokio watching the pipe.
    fn unwatch(&mut self) {
        if let StdoutPipe::Watched(_) = self
            && let StdoutPipe::Watched(pipe) = std::mem::replace(self, StdoutPipe::Gone)
        {
            match pipe.into_nonblocking_fd() {
                Ok(fd) => *self = StdoutPipe::Unwatched(fd),
                Err(err) => tracing::warn!("could not stop watching a command's stdout: {err}"),
            }
        }
    }
}

impl AsFd for StdoutPipe {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            StdoutPipe::Watched(pipe) => pipe.as_fd(),
            StdoutPipe::Unwatched(fd) => fd.as_fd(),
            // SAFETY: -1 is no descriptor: every call on it fails (EBADF).
            StdoutPipe::Gone => unsafe { std::os::fd::BorrowedFd::borrow_raw(-1) },
        }
    }
}

/// What one read of stdout by the driver came to.
enum StdoutRead {
    /// `n` bytes, in the chunk buffer; `total` bytes came through stdout so
    /// far. The chunk is in flight ([`LendHold::set_in_flight`]) until the
    /// driver sent it (or dropped it) and said so with
    /// [`StdoutLend::landed`].
    Read { n: usize, total: u64 },
    /// The end of the pipe (or an error reading it).
    Closed,
    /// The consumer took the pipe: the driver does not read it.
    Lent,
}

/// Reads a chunk of stdout into `chunk`, holding the lend from the read
/// until the chunk is marked in flight, so that a consumer that reads the
/// pipe itself waits for the chunk before it reads past it.
async fn read_stdout(
    stdout: Option<&pipe::Receiver>,
    lend: &StdoutLend,
    chunk: &mut [u8],
) -> StdoutRead {
    let Some(stdout) = stdout else {
        return StdoutRead::Closed;
    };
    loop {
        if stdout.readable().await.is_err() {
            return StdoutRead::Closed;
        }
        let mut hold = lend.hold();
        if hold.is_lent() {
            return StdoutRead::Lent;
        }
        match stdout.try_read(chunk) {
            Ok(0) => return StdoutRead::Closed,
            Ok(n) => {
                let buffer = hold.buffer();
                let _ = buffer.push(&chunk[..n]);
                let total = buffer.total();
                hold.set_in_flight();
                return StdoutRead::Read { n, total };
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return StdoutRead::Closed,
        }
    }
}

/// While the consumer has the pipe: moves a chunk that waits in it into
/// the stream (when the stream has room), as the driver's own read would
/// have. Returns whether the command's output is pending: a chunk moved,
/// or one waiting while the stream is full.
fn take_waiting(
    stdout: &StdoutPipe,
    lend: &StdoutLend,
    events: &EventSender,
    chunk: &mut Vec<u8>,
    pool: &ChunkPool,
) -> bool {
    let mut hold = lend.hold();
    if !hold.is_lent() || hold.waiting() == 0 {
        return false;
    }
    let Some(permit) = events.try_reserve() else {
        return true;
    };
    // SAFETY: read(2) into `chunk`, from the pipe the driver holds open
    // (O_NONBLOCK: it returns what waits).
    let n = unsafe {
        libc::read(
            stdout.as_fd().as_raw_fd(),
            chunk.as_mut_ptr().cast(),
            chunk.len(),
        )
    };
    let Ok(n) = usize::try_from(n) else {
        return false;
    };
    if n == 0 {
        return false;
    }
    let _ = hold.buffer().push(&chunk[..n]);
    permit.send(Event::Stdout(pool.chunk(chunk, n)));
    true
}

/// [`drive`], handing back what is left to settle instead of settling it
/// on a task of its own.
async fn drive_parts(
    mut started: Started,
    watch: Watch,
    events: &EventSender,
    lend: Arc<StdoutLend>,
) -> (ExecResult, Settlement) {
    // Whatever ends the driver ends the lend, before the pipe is closed.
    let _end_lend = EndLend(Arc::clone(&lend));
    let pid = started.pid;
    let control = started.control();
    // A timeout too long to be an instant (years) is no deadline at all.
    let wall = watch
        .wall_timeout
        .and_then(|t| started.started_at.checked_add(t));
    let mut idle = watch
        .idle_timeout
        .and_then(|t| Instant::now().checked_add(t));
    // How often the driver looks at a lent pipe for output (an eighth of
    // the idle timeout, 5 ms at least), when it last looked, and how many
    // bytes had come through it then (read, or waiting to be).
    let idle_step = watch
        .idle_timeout
        .map(|t| (t / 8).max(Duration::from_millis(5)));
    let mut idle_looked = Instant::now();
    // Whether output events stopped at the wall deadline ([`Sent::Late`]).
    let mut cut = false;
    // After the drain's end, how much more of each pipe is read.
    let mut out_left: Option<u64> = None;
    let mut err_left: Option<u64> = None;
    let mut stderr_buf =
        OutputBuffer::new(watch.output_limit, watch.spill_dir.as_deref(), "stderr")
            .events_only(watch.events_only);

    let stdin_task = match started.stdin.take() {
        Some(mut sink) if watch.stdin.is_some() || watch.stdin_source.is_some() => {
            let bytes = watch.stdin;
            let mut source = watch.stdin_source;
            Some(tokio::spawn(async move {
                // A command that exits without reading its stdin is not an
                // error: writing stops, and dropping the sink closes it.
                if let Some(bytes) = bytes
                    && sink.write_all(&bytes).await.is_err()
                {
                    return;
                }
                if let Some(source) = &mut source {
                    while let Some(chunk) = source.next().await {
                        if sink.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                }
            }))
        }
        _ => None,
    };

    let mut out_open = true;
    let mut err_open = true;
    let mut exit: Option<(i32, Usage)> = None;
    let mut killed: Option<KilledFor> = None;
    let mut drain_until: Option<Instant> = None;
    // When berth ends the command itself, should the keeper not report.
    let mut force_at: Option<Instant> = None;
    let mut out_pool = ChunkPool::for_stream(READ_CHUNK);
    let mut out_bulky = false;
    let err_pool = ChunkPool::for_stream(READ_CHUNK);
    let mut out_chunk = out_pool.buffer();
    let mut err_chunk = err_pool.buffer();
    let far = Instant::now() + Duration::from_secs(86400 * 365);

    while out_open || err_open || exit.is_none() {
        // While the consumer reads stdout itself, the driver does not.
        let out_lent = out_open && lend.is_lent();
        // The idle deadline, or, while the pipe is lent, the next look at
        // it.
        let idle_check = match (idle, idle_step) {
            (Some(at), Some(step)) if out_lent => at.min(idle_looked + step),
            (at, _) => at.unwrap_or(far),
        };
        let out_pipe = if out_lent {
            started.stdout.unwatch();
            None
        } else if out_open {
            started.stdout.watch()
        } else {
            None
        };
        let deadline_hit = tokio::select! {
            // The exit and the drain's end first: a pipe that is always
            // readable must not hide them.
            biased;
            status = wait_end(&started.exit, &started.pidfd, pid), if exit.is_none() => {
                exit = Some(status);
                // The rest of stdout comes through the driver.
                lend.end();
                let grace = if killed.is_some() { KILL_DRAIN_GRACE } else { EXIT_DRAIN_GRACE };
                drain_until.get_or_insert(Instant::now() + grace);
                None
            }
            () = sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => {
                // Whoever still holds the pipes is not waited for: what is
                // in them now is read, and no more (a background writer
                // could write for ever).
                lend.end();
                let out_now = pipe_waiting(started.stdout.as_fd());
                let err_now = pipe_waiting(started.stderr.as_fd());
                out_open &= out_now > 0;
                err_open &= err_now > 0;
                out_left = Some(out_now);
                err_left = Some(err_now);
                drain_until = None;
                None
            }
            read = read_stdout(out_pipe, &lend, &mut out_chunk), if out_open && !out_lent => {
                match read {
                    StdoutRead::Closed => out_open = false,
                    StdoutRead::Lent => {}
                    StdoutRead::Read { n, total } => {
                        idle = watch.idle_timeout.and_then(|t| Instant::now().checked_add(t));
                        if killed != Some(KilledFor::Cancelled) && !cut {
                            let sent = send(events, Event::Stdout(out_pool.chunk(&mut out_chunk, n)), wall).await;
                            cut = after_send(sent, &lend, &control, &mut killed, &mut force_at);
                        }
                        lend.landed();
                        if let Some(left) = &mut out_left {
                            *left = left.saturating_sub(n as u64);
                            out_open &= *left > 0;
                        }
                        if !out_bulky && total >= STDOUT_PIPE as u64 {
                            // A bulky stream: a wider pipe, larger reads.
                            out_bulky = true;
                            grow_pipe_to(started.stdout.as_fd(), STDOUT_PIPE);
                            out_pool = ChunkPool::for_stream(STDOUT_PIPE);
                            out_chunk = out_pool.buffer();
                        }
                    }
                }
                None
            }
            () = lend.wait_returned(), if out_lent => {
                // The consumer read the pipe's end, or gave the pipe back.
                if lend.eof_seen() {
                    out_open = false;
                }
                None
            }
            read = started.stderr.read(&mut err_chunk), if err_open => {
                match read {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => {
                        idle = watch.idle_timeout.and_then(|t| Instant::now().checked_add(t));
                        let _ = stderr_buf.push(&err_chunk[..n]);
                        if killed != Some(KilledFor::Cancelled) && !cut {
                            let sent = send(events, Event::Stderr(err_pool.chunk(&mut err_chunk, n)), wall).await;
                            cut = after_send(sent, &lend, &control, &mut killed, &mut force_at);
                        }
                        if let Some(left) = &mut err_left {
                            *left = left.saturating_sub(n as u64);
                            err_open &= *left > 0;
                        }
                    }
                }
                None
            }
            () = sleep_until(wall.unwrap_or(far)), if wall.is_some() && killed.is_none() && exit.is_none() => {
                Some(KilledFor::Wall)
            }
            () = sleep_until(idle_check), if idle.is_some() && killed.is_none() && exit.is_none() => {
                // Output the consumer read itself counts. Output waiting
                // in a lent pipe is looked at every `idle_step`: the driver
                // takes it into the stream, as its own reads would have,
                // and it counts from then; a stream too full for it is a
                // consumer far behind a command that writes, as when the
                // driver waits for room.
                let now = Instant::now();
                if out_lent && take_waiting(&started.stdout, &lend, events, &mut out_chunk, &out_pool) {
                    idle = watch.idle_timeout.and_then(|t| now.checked_add(t));
                }
                if let Some(at) = lend.last_read().zip(watch.idle_timeout).and_then(|(read, t)| {
                    Instant::from_std(read).checked_add(t)
                }) {
                    idle = idle.max(Some(at));
                }
                idle_looked = now;
                if idle.is_some_and(|at| at <= now) {
                    Some(KilledFor::Idle)
                } else {
                    None
                }
            }
            () = events.closed(), if killed.is_none() && exit.is_none() => {
                Some(KilledFor::Cancelled)
            }
            () = sleep_until(force_at.unwrap_or(far)), if force_at.is_some() && exit.is_none() => {
                // The keeper did not report in time: end it all from here.
                control.force();
                force_at = None;
                None
            }
        };
        if let Some(reason) = deadline_hit {
            control.kill();
            killed = Some(reason);
            drain_until = Some(Instant::now() + KILL_DRAIN_GRACE);
            force_at = Some(Instant::now() + KEEPER_PATIENCE);
        }
    }
    if let Some(task) = stdin_task {
        task.abort();
    }
    let elapsed = started.started_at.elapsed();
    let settlement = started.settlement();
    if let Some(cgroup) = &settlement.cgroup
        && let Ok(events) = cgroup.limit_events()
        && let Some(explanation) = events.explanation()
    {
        tracing::info!(cgroup = cgroup.name(), "{explanation}");
    }
    let (status, usage) = exit.unwrap_or((libc::SIGKILL, Usage::default()));
    let (mut exec_status, exit_code, signal) = if libc::WIFEXITED(status) {
        (ExecStatus::Exited, libc::WEXITSTATUS(status), None)
    } else {
        let sig = libc::WTERMSIG(status);
        (ExecStatus::Signaled, -sig, Some(sig))
    };
    match killed {
        Some(KilledFor::Wall) => exec_status = ExecStatus::TimedOut,
        Some(KilledFor::Idle) => exec_status = ExecStatus::IdleTimedOut,
        _ => {}
    }
    let result = ExecResult {
        status: exec_status,
        exit_code,
        signal,
        stdout: lend.take_buffer().finish(),
        stderr: stderr_buf.finish(),
        elapsed,
        timed_out: matches!(exec_status, ExecStatus::TimedOut | ExecStatus::IdleTimedOut),
        usage: Some(usage),
    };
    (result, settlement)
}

/// Sends an event unless the wall deadline passes first (a consumer that
/// stops reading must not hold a command past its timeout). Returns `false`
/// only when the consumer is gone.
async fn send(events: &EventSender, event: Event, wall: Option<Instant>) -> Sent {
    let sent = match wall {
        None => events.send(event).await,
        Some(deadline) => tokio::select! {
            // Room in the stream is taken whenever there is some, deadline
            // or not.
            biased;
            sent = events.send(event) => sent,
            () = sleep_until(deadline) => return Sent::Late,
        },
    };
    if sent { Sent::Yes } else { Sent::Gone }
}

/// What the driver makes of a send: a consumer gone kills the command; an
/// event dropped past the wall deadline ends the output events and the
/// lend (the consumer may not read on past the hole). Returns whether the
/// events are cut.
fn after_send(
    sent: Sent,
    lend: &StdoutLend,
    control: &Control,
    killed: &mut Option<KilledFor>,
    force_at: &mut Option<Instant>,
) -> bool {
    match sent {
        Sent::Yes => false,
        Sent::Late => {
            lend.end();
            true
        }
        Sent::Gone => {
            control.kill();
            killed.get_or_insert(KilledFor::Cancelled);
            force_at.get_or_insert(Instant::now() + KEEPER_PATIENCE);
            false
        }
    }
}

/// What became of an event the driver sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sent {
    Yes,
    /// The consumer dropped the stream.
    Gone,
    /// The wall deadline passed while the stream was full: the event was
    /// dropped, and so are the output events after it (the consumer gets a
    /// prefix of the output, never one with a hole; the result holds it
    /// all).
    Late,
}

/// Ends a lend when dropped: the driver's end, however it comes.
struct EndLend(Arc<StdoutLend>);

impl Drop for EndLend {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The commands a runtime started, so that `kill`, `cleanup` and drop
/// reach every one of them: running commands, finished commands whose
/// background processes linger (their keepers, or their process groups),
/// and whether the runtime is closed.
///
/// Every backend built on host processes keeps its commands here, so they
/// all count, kill and wait for their commands the same way.
#[derive(Debug, Default)]
pub struct ProcessTable {
    /// Running commands, by command id.
    running: std::sync::Mutex<std::collections::HashMap<u64, Control>>,
    /// Finished commands that left background processes behind.
    lingering: std::sync::Mutex<Vec<Control>>,
    /// Finished commands whose keepers and cgroups are being settled.
    settling: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    next_id: std::sync::atomic::AtomicU64,
    closed: std::sync::atomic::AtomicBool,
    /// Woken whenever a command finishes.
    finished: tokio::sync::Notify,
}

impl ProcessTable {
    /// An empty, open table.
    pub fn new() -> ProcessTable {
        ProcessTable::default()
    }

    /// Whether [`ProcessTable::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many commands are running.
    pub fn running(&self) -> usize {
        lock(&self.running).len()
    }

    /// The runtime's status as the contract reports it.
    pub fn status(&self) -> session_core::runtime::RuntimeStatus {
        use session_core::runtime::RuntimeStatus;
        if self.is_closed() {
            return RuntimeStatus::Closed;
        }
        match self.running() {
            0 => RuntimeStatus::Idle,
            n => RuntimeStatus::Running(n),
        }
    }

    /// Kills every process of every running command and of every finished
    /// one that left processes behind.
    pub fn kill_all(&self) {
        self.kill_running();
        for control in lock(&self.lingering).drain(..) {
            control.kill();
        }
    }

    fn kill_running(&self) {
        for control in lock(&self.running).values() {
            control.kill();
        }
    }

    /// Closes the table (no command starts any more) and kills everything
    /// in it; what drop does.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.kill_all();
    }

    /// Closes the table, kills everything and waits until every command's
    /// driver has reaped it and every process a command left behind is
    /// gone, for at most [`CLEANUP_PATIENCE`]: a runtime's `cleanup`.
    /// Commands that outlast it are an [`Error::Backend`] of `backend`.
    ///
    /// [`Error::Backend`]: session_core::Error::Backend
    pub async fn close_and_wait(&self, backend: &str) -> session_core::Result<()> {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.kill_running();
        for control in lock(&self.lingering).iter() {
            control.kill();
        }
        let deadline = Instant::now() + CLEANUP_PATIENCE;
        let outlasted = || session_core::Error::Backend {
            backend: backend.to_owned(),
            message: format!(
                "commands still running {} s after being killed",
                CLEANUP_PATIENCE.as_secs()
            ),
        };
        loop {
            let finished = self.finished.notified();
            if self.running() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                return Err(outlasted());
            }
        }
        // A command that finished while this waited may have left processes.
        for control in lock(&self.lingering).iter() {
            control.kill();
        }
        // Every keeper ends once its sweep is done, and every cgroup is
        // then removed; a keeper that does not end in time is overruled.
        let settling: Vec<_> = std::mem::take(&mut *lock(&self.settling));
        let overrule_at = Instant::now() + KEEPER_PATIENCE;
        let mut late = Vec::new();
        for mut settled in settling {
            if tokio::time::timeout_at(overrule_at, &mut settled)
                .await
                .is_err()
            {
                late.push(settled);
            }
        }
        if !late.is_empty() {
            for control in lock(&self.lingering).iter() {
                control.force();
            }
            for mut settled in late {
                if tokio::time::timeout_at(deadline, &mut settled)
                    .await
                    .is_err()
                {
                    return Err(outlasted());
                }
            }
        }
        lock(&self.lingering).clear();
        Ok(())
    }

    /// Drives `started` to its end on a task of its own, registered here
    /// while it runs, and returns its event stream. When the command ends,
    /// a group that still has processes is killed if the table is closed
    /// and otherwise kept as lingering for the next `kill_all`.
    pub fn run(
        self: &Arc<Self>,
        started: Started,
        watch: Watch,
    ) -> session_core::runtime::EventStream {
        self.run_mapped(started, watch, std::convert::identity)
    }

    /// [`ProcessTable::run`], with `finish` turning the command's result
    /// into the one its stream ends with: a wrapper's own exit status back
    /// into the signal it reports (`128 + N`), or a wrapper's failure into
    /// a spawn failure. Output events pass through unchanged.
    pub fn run_mapped<F>(
        self: &Arc<Self>,
        started: Started,
        watch: Watch,
        finish: F,
    ) -> session_core::runtime::EventStream
    where
        F: FnOnce(ExecResult) -> ExecResult + Send + 'static,
    {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let control = started.control();
        lock(&self.running).insert(id, control.clone());
        // A close between the caller's `is_closed` check and the insert
        // did not see this command: it must not run in a closed runtime.
        if self.is_closed() {
            control.kill();
        }
        let lend = stdout_lend(&started, &watch);
        let (events, stream) = EventStream::channel_lending(Arc::clone(&lend));
        let entry = Entry {
            table: Arc::clone(self),
            id,
            control,
        };
        let table = Arc::clone(self);
        tokio::spawn(async move {
            let (result, settlement) = drive_parts(started, watch, &events, lend).await;
            // The entry leaves the table before the result is sent; a
            // panicking driver drops it all the same.
            drop(entry);
            table.track(tokio::spawn(settlement.settle()));
            let _ = events.send(Event::Finished(finish(result))).await;
        });
        stream
    }
}

impl ProcessTable {
    /// Keeps `settling` for `close_and_wait` to await, forgetting those
    /// already done.
    fn track(&self, settling: tokio::task::JoinHandle<()>) {
        let mut list = lock(&self.settling);
        list.retain(|task| !task.is_finished());
        list.push(settling);
    }
}

/// A running command's place in its [`ProcessTable`]; leaving it (when
/// the driver ends, or unwinds) settles what the command left running.
struct Entry {
    table: Arc<ProcessTable>,
    id: u64,
    control: Control,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let table = &self.table;
        // What is left is settled before the entry leaves `running`, so
        // that a concurrent close always reaches it through one list or the
        // other.
        {
            let mut lingering = lock(&table.lingering);
            // Forget commands whose processes ended on their own, so a
            // later kill cannot hit a reused group id.
            lingering.retain(Control::alive);
            if self.control.alive() {
                if table.is_closed() {
                    self.control.kill();
                } else {
                    lingering.push(self.control.clone());
                }
            }
        }
        lock(&table.running).remove(&self.id);
        table.finished.notify_waiters();
    }
}

/// Locks `mutex`, going on with the data if a panicking holder poisoned it
/// (the table's data stays consistent at every step).
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
