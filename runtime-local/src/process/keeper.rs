//! The keeper: the process berth forks for each command, which forks the
//! command's shell and stays behind to look after everything the shell
//! starts.
//!
//! A process group is not enough to end a command's tree: `setsid`,
//! `nohup` with a new session, or a double fork take a process out of the
//! group, and a parent-death signal reaches only berth's own child. So the
//! keeper is a *child subreaper*: every process of the command's tree that
//! loses its parent is re-parented to it, not to the host's init. It
//!
//! * reports the shell's wait status and resource usage to berth through
//!   the status pipe when the shell exits (a fixed-size record), then keeps
//!   running while anything of the command remains (a background server
//!   may serve the runtime's next command), and exits when the last of them
//!   is gone;
//! * on SIGTERM (berth's kill, a timeout, the runtime's cleanup) or when
//!   berth dies (its parent-death signal is SIGTERM) *sweeps*: kills the
//!   shell's process group and the command's cgroup when it has one, then
//!   kills every child it has and reaps, again and again, until it has no
//!   child left — orphans of killed processes come to it, so the sweep
//!   reaches every descendant however it detached — and exits.
//!
//! It runs in a copy of the host made by fork and never execs, so it makes
//! only async-signal-safe system calls on stack buffers.

use std::io;
use std::os::fd::RawFd;

use libc::{c_int, c_ulong};

use super::child::{self, check};

/// The size of the record the keeper writes when the shell ends: the wait
/// status, then the shell's `struct rusage`.
pub(crate) const RECORD_LEN: usize = 4 + std::mem::size_of::<libc::rusage>();

/// Decodes a status record into the wait status and the usage.
pub(crate) fn decode(record: &[u8; RECORD_LEN]) -> (c_int, libc::rusage) {
    let status = c_int::from_ne_bytes([record[0], record[1], record[2], record[3]]);
    // SAFETY: rusage is plain integers; any bit pattern is a valid value,
    // and the slice is exactly its size.
    let usage = unsafe { std::ptr::read_unaligned(record[4..].as_ptr().cast::<libc::rusage>()) };
    (status, usage)
}

/// The signals the keeper waits for; blocked before it exists, so none is
/// lost or handled by a copy of the host's handlers.
pub(super) fn keeper_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// What the keeper needs besides the status pipe: the descriptors it keeps
/// (ascending) and a way to empty the command's cgroup.
pub(crate) struct KeeperPlan<'a> {
    /// The write end of the status pipe.
    pub(crate) status: RawFd,
    /// Descriptors that stay open in the keeper, ascending, including
    /// `status`.
    pub(crate) keep: &'a [RawFd],
    /// Empties the command's cgroup (async-signal-safe); `None` without one.
    pub(crate) kill_cgroup: Option<&'a (dyn Fn() + Sync)>,
}

/// Splits the forked child in two: returns `Ok` in the new process that
/// goes on to exec the command (in a process group of its own, dying with
/// the keeper); in the calling process becomes the keeper and never
/// returns. `host` is berth's pid, to detect that it died before the
/// parent-death signal was armed.
pub(crate) fn split(host: libc::pid_t, plan: &KeeperPlan<'_>) -> io::Result<()> {
    let signals = keeper_signals();
    // SAFETY: an all-zero sigset_t is a valid value to be overwritten.
    let mut previous: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigprocmask(2) with local sets.
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &signals, &mut previous) }.into())?;
    // SAFETY: prctl(2) with integer arguments. Orphans of the command's
    // tree come to this process; berth's death reaches it as SIGTERM.
    unsafe {
        check(libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as c_ulong, 0, 0, 0).into())?;
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as c_ulong, 0, 0, 0).into())?;
        if libc::getppid() != host {
            // berth died before the signal was armed; nothing started yet.
            libc::_exit(137);
        }
    }
    // SAFETY: getpid(2) cannot fail.
    let keeper = unsafe { libc::getpid() };
    let shell = child::fork();
    if shell < 0 {
        return Err(io::Error::last_os_error());
    }
    if shell == 0 {
        // SAFETY: plain system calls on local values.
        unsafe {
            check(libc::sigprocmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()).into())?;
            check(libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0 as c_ulong, 0, 0, 0).into())?;
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0).into())?;
            if libc::getppid() != keeper {
                libc::_exit(137);
            }
            check(libc::setpgid(0, 0).into())?;
        }
        return Ok(());
    }
    keep(shell, plan, &signals)
}

/// The keeper's life. Never returns.
fn keep(shell: libc::pid_t, plan: &KeeperPlan<'_>, signals: &libc::sigset_t) -> ! {
    // SAFETY: prctl(2) renames this process (shown by ps on the host).
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"berth-keeper".as_ptr(), 0, 0, 0);
    }
    child::reset_signal_handlers();
    // SAFETY: signal(2). A report to a berth that is gone must fail with
    // EPIPE, not end the keeper before its sweep.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // Nothing of the host stays open here: not the command's pipes (berth
    // sees their end when the command's processes are done with them), not
    // std's exec-error pipe. 0, 1 and 2 become /dev/null.
    child::close_all_except(plan.keep);
    // SAFETY: open(2) of a NUL-terminated path, dup2(2) onto 0..2.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            for fd in 0..3 {
                if null != fd {
                    libc::dup2(null, fd);
                }
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    let mut status_fd = plan.status;
    loop {
        // SAFETY: sigwaitinfo(2) on the blocked set, with no info wanted.
        let signal = unsafe { libc::sigwaitinfo(signals, std::ptr::null_mut()) };
        if signal == libc::SIGCHLD {
            let children_left = reap_ready(shell, &mut status_fd);
            if status_fd < 0 && !children_left {
                // SAFETY: _exit(2).
                unsafe { libc::_exit(0) };
            }
        } else if signal > 0 {
            sweep(shell, plan, &mut status_fd);
            // SAFETY: _exit(2).
            unsafe { libc::_exit(0) };
        }
    }
}

/// Reaps every child that has ended, reporting the shell's end. Returns
/// whether any child remains.
fn reap_ready(shell: libc::pid_t, status_fd: &mut RawFd) -> bool {
    loop {
        let mut status: c_int = 0;
        // SAFETY: an all-zero rusage is a valid value to be overwritten.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4(2) with local out-pointers.
        let reaped = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == shell {
            report(status_fd, status, &usage);
        } else if reaped == 0 {
            return true;
        } else if reaped < 0 {
            return io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
        }
    }
}

/// Writes the shell's record to berth and closes the pipe.
fn report(status_fd: &mut RawFd, status: c_int, usage: &libc::rusage) {
    if *status_fd < 0 {
        return;
    }
    let mut record = [0u8; RECORD_LEN];
    record[..4].copy_from_slice(&status.to_ne_bytes());
    // SAFETY: copying the bytes of a plain struct into a buffer of its size.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (usage as *const libc::rusage).cast::<u8>(),
            record[4..].as_mut_ptr(),
            std::mem::size_of::<libc::rusage>(),
        );
        // One write below PIPE_BUF is atomic; a reader that is gone only
        // loses the report.
        libc::write(*status_fd, record.as_ptr().cast(), record.len());
        libc::close(*status_fd);
    }
    *status_fd = -1;
}

/// Kills everything of the command and reaps it all.
fn sweep(shell: libc::pid_t, plan: &KeeperPlan<'_>, status_fd: &mut RawFd) {
    // SAFETY: kill(2) of the shell's process group.
    unsafe {
        libc::kill(-shell, libc::SIGKILL);
    }
    if let Some(kill_cgroup) = plan.kill_cgroup {
        kill_cgroup();
    }
    loop {
        kill_children();
        let mut status: c_int = 0;
        // SAFETY: an all-zero rusage is a valid value to be overwritten.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4(2) with local out-pointers; blocks until a child
        // ends (every child has just been sent SIGKILL).
        let reaped = unsafe { libc::wait4(-1, &mut status, 0, &mut usage) };
        if reaped == shell {
            report(status_fd, status, &usage);
        } else if reaped < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // ECHILD: nothing is left.
            return;
        }
    }
}

/// Sends SIGKILL to every child of this process, as listed by
/// `/proc/thread-self/children` (a keeper is single-threaded).
fn kill_children() {
    // SAFETY: open(2) of a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/proc/thread-self/children".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return;
    }
    let mut buffer = [0u8; 4096];
    let mut pid: libc::pid_t = 0;
    let mut digits = false;
    loop {
        // SAFETY: read(2) into a local buffer of its length.
        let read = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        if read <= 0 {
            break;
        }
        for &byte in &buffer[..read as usize] {
            if byte.is_ascii_digit() {
                pid = pid
                    .saturating_mul(10)
                    .saturating_add((byte - b'0') as libc::pid_t);
                digits = true;
            } else {
                if digits && pid > 0 {
                    // SAFETY: kill(2) of one of our own children.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
                pid = 0;
                digits = false;
            }
        }
    }
    if digits && pid > 0 {
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    // SAFETY: closing the file opened above.
    unsafe {
        libc::close(fd);
    }
}
