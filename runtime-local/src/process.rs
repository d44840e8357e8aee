//! Starting one command as a host process and driving it to its end.
//!
//! Each command is a `sh -c` in a process group of its own, with a
//! parent-death signal and rlimits set between fork and exec. Its exit is
//! watched through a pidfd and reaped with `wait4`, which also gives its
//! resource usage. The driver reads stdout and stderr as they come, feeds
//! stdin, enforces the wall and idle timeouts by killing the whole group,
//! and never waits more than a short grace period for pipes that a
//! background grandchild keeps open.

use std::ffi::OsString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use indexmap::IndexMap;
use session_core::runtime::{Event, EventSender, ExecResult, ExecStatus, OutputBuffer, Usage};
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

const READ_CHUNK: usize = 64 << 10;

/// Resource limits applied between fork and exec.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rlimits {
    pub(crate) address_space: Option<u64>,
    pub(crate) file_size: Option<u64>,
}

/// What to start.
pub(crate) struct Launch<'a> {
    pub(crate) shell: &'a Path,
    pub(crate) command: &'a str,
    pub(crate) cwd: &'a Path,
    pub(crate) env: &'a IndexMap<String, String>,
    pub(crate) with_stdin: bool,
    pub(crate) rlimits: Rlimits,
}

/// A started process, not yet reaped.
pub(crate) struct Started {
    pub(crate) pid: i32,
    pidfd: AsyncFd<OwnedFd>,
    stdin: Option<pipe::Sender>,
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
    pub(crate) started_at: Instant,
}

/// Starts the process. Must run inside a tokio runtime with I/O enabled.
pub(crate) fn start(launch: &Launch<'_>) -> io::Result<Started> {
    let mut command = Command::new(launch.shell);
    command
        .arg("-c")
        .arg(launch.command)
        .current_dir(launch.cwd)
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
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe functions (setpgid, prctl, getppid, signal,
    // setrlimit, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if let Some(bytes) = rlimits.address_space {
                set_rlimit(libc::RLIMIT_AS, bytes)?;
            }
            if let Some(bytes) = rlimits.file_size {
                set_rlimit(libc::RLIMIT_FSIZE, bytes)?;
            }
            Ok(())
        });
    }
    let started_at = Instant::now();
    let mut child = command.spawn()?;
    let pid = child.id() as i32;
    // Also from the parent, so the group exists before anyone signals it.
    // SAFETY: plain syscall on our own child's pid.
    unsafe {
        libc::setpgid(pid, pid);
    }
    let pidfd = pidfd_open(pid)?;
    let stdin = child
        .stdin
        .take()
        .map(|s| pipe::Sender::from_owned_fd(OwnedFd::from(s)))
        .transpose()?;
    let stdout = pipe::Receiver::from_owned_fd(OwnedFd::from(child.stdout.take().expect("piped")))?;
    let stderr = pipe::Receiver::from_owned_fd(OwnedFd::from(child.stderr.take().expect("piped")))?;
    // `child` is dropped without waiting: the pidfd and wait4 below reap it.
    drop(child);
    Ok(Started {
        pid,
        // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and
        // unchanged for as long as it is registered.
        pidfd: unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?,
        stdin,
        stdout,
        stderr,
        started_at,
    })
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
pub(crate) fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals the group; no memory is
    // involved.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Whether any process of the group is still alive (or unreaped).
pub(crate) fn group_alive(pgid: i32) -> bool {
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
pub(crate) struct Watch {
    pub(crate) wall_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) output_limit: u64,
    pub(crate) spill_dir: Option<std::path::PathBuf>,
    pub(crate) stdin: Option<Vec<u8>>,
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
/// result then says which signal ended it.
pub(crate) async fn drive(mut started: Started, watch: Watch, events: &EventSender) -> ExecResult {
    let pid = started.pid;
    let wall = watch.wall_timeout.map(|t| started.started_at + t);
    let mut idle = watch.idle_timeout.map(|t| Instant::now() + t);
    let mut stdout_buf =
        OutputBuffer::new(watch.output_limit, watch.spill_dir.as_deref(), "stdout");
    let mut stderr_buf =
        OutputBuffer::new(watch.output_limit, watch.spill_dir.as_deref(), "stderr");

    let stdin_task = match (started.stdin.take(), watch.stdin) {
        (Some(mut sink), Some(bytes)) => Some(tokio::spawn(async move {
            // A command that exits without reading its stdin is not an error.
            let _ = sink.write_all(&bytes).await;
        })),
        _ => None,
    };

    let mut out_open = true;
    let mut err_open = true;
    let mut exit: Option<(i32, Usage)> = None;
    let mut killed: Option<KilledFor> = None;
    let mut drain_until: Option<Instant> = None;
    let mut out_chunk = vec![0u8; READ_CHUNK];
    let mut err_chunk = vec![0u8; READ_CHUNK];
    let far = Instant::now() + Duration::from_secs(86400 * 365);

    while out_open || err_open || exit.is_none() {
        let deadline_hit = tokio::select! {
            biased;
            read = started.stdout.read(&mut out_chunk), if out_open => {
                match read {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) => {
                        idle = watch.idle_timeout.map(|t| Instant::now() + t);
                        let _ = stdout_buf.push(&out_chunk[..n]);
                        if killed != Some(KilledFor::Cancelled)
                            && !send(events, Event::Stdout(out_chunk[..n].to_vec()), wall).await
                        {
                            kill_group(pid);
                            killed.get_or_insert(KilledFor::Cancelled);
                        }
                    }
                }
                None
            }
            read = started.stderr.read(&mut err_chunk), if err_open => {
                match read {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => {
                        idle = watch.idle_timeout.map(|t| Instant::now() + t);
                        let _ = stderr_buf.push(&err_chunk[..n]);
                        if killed != Some(KilledFor::Cancelled)
                            && !send(events, Event::Stderr(err_chunk[..n].to_vec()), wall).await
                        {
                            kill_group(pid);
                            killed.get_or_insert(KilledFor::Cancelled);
                        }
                    }
                }
                None
            }
            status = wait_exit(&started.pidfd, pid), if exit.is_none() => {
                exit = Some(status);
                let grace = if killed.is_some() { KILL_DRAIN_GRACE } else { EXIT_DRAIN_GRACE };
                drain_until.get_or_insert(Instant::now() + grace);
                None
            }
            () = sleep_until(wall.unwrap_or(far)), if wall.is_some() && killed.is_none() && exit.is_none() => {
                Some(KilledFor::Wall)
            }
            () = sleep_until(idle.unwrap_or(far)), if idle.is_some() && killed.is_none() && exit.is_none() => {
                Some(KilledFor::Idle)
            }
            () = events.closed(), if killed.is_none() && exit.is_none() => {
                Some(KilledFor::Cancelled)
            }
            () = sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => {
                // Whoever still holds the pipes is not waited for.
                out_open = false;
                err_open = false;
                None
            }
        };
        if let Some(reason) = deadline_hit {
            kill_group(pid);
            killed = Some(reason);
            drain_until = Some(Instant::now() + KILL_DRAIN_GRACE);
        }
    }
    if let Some(task) = stdin_task {
        task.abort();
    }
    let elapsed = started.started_at.elapsed();
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
    ExecResult {
        status: exec_status,
        exit_code,
        signal,
        stdout: stdout_buf.finish(),
        stderr: stderr_buf.finish(),
        elapsed,
        timed_out: matches!(exec_status, ExecStatus::TimedOut | ExecStatus::IdleTimedOut),
        usage: Some(usage),
    }
}

/// Sends an event unless the wall deadline passes first (a consumer that
/// stops reading must not hold a command past its timeout). Returns `false`
/// only when the consumer is gone.
async fn send(events: &EventSender, event: Event, wall: Option<Instant>) -> bool {
    match wall {
        None => events.send(event).await,
        Some(deadline) => tokio::select! {
            sent = events.send(event) => sent,
            () = sleep_until(deadline) => true,
        },
    }
}
