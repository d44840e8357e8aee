//! What runs between fork and exec: entering the namespaces, building the
//! sandbox's root, and supervising the command.
//!
//! [`enter`] is the `pre_exec` hook of every command. It runs in the child
//! that `runtime_local::process::start` forked from a multi-threaded host,
//! so everything here is async-signal-safe: raw system calls on paths and
//! buffers the [`Plan`] prepared before the fork, no allocation, no locks.
//!
//! Three processes take part:
//!
//! * **the supervisor** (the forked child, in the host's pid namespace, the
//!   process berth watches): it lowers the rlimits that bound the sandbox's
//!   share of the caller's per-user quotas ([`crate::quotas`]), unshares
//!   new user, mount, pid, network, ipc and uts namespaces, maps its own
//!   uid and gid, forks the init, then waits and ends the way the command
//!   ended;
//! * **the init** (pid 1 of the new pid namespace): it builds the root —
//!   a tmpfs with bind mounts, a fresh `/proc` (where it writes the new
//!   user namespace's limits while it still holds every capability there),
//!   then `pivot_root` — forks the command and reaps everything until the
//!   command ends. When it exits the kernel kills whatever is left in the
//!   namespace;
//! * **the command** (the init's only child, its pids starting past a
//!   per-command offset): it starts a session of its own, drops every
//!   capability, sets no-new-privileges, installs the seccomp filter (last,
//!   so that nothing of the sandbox's own setup is filtered) and returns to
//!   std, which execs the shell.
//!
//! A failure at any step is written to the report pipe as a [`Failure`]
//! (stage, index, errno) before the step's error is returned, so the host
//! can say which mount or call failed.

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

use libc::{c_int, c_uint, c_ulong};

use crate::plan::{Plan, Step};

/// Exit status of the supervisor when its init vanished without a word.
const LOST_INIT: c_int = 127;

// Linux uapi constants for the mount API (<linux/mount.h>, <fcntl.h>).
pub(crate) const OPEN_TREE_CLONE: c_uint = 1;
const OPEN_TREE_CLOEXEC: c_uint = libc::O_CLOEXEC as c_uint;
pub(crate) const AT_RECURSIVE: c_uint = 0x8000;
pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 0x4;
/// `MOUNT_ATTR_RDONLY`.
pub(crate) const ATTR_READ_ONLY: u64 = 0x1;
/// `MOUNT_ATTR_NOSUID`.
pub(crate) const ATTR_NO_SUID: u64 = 0x2;
/// `MOUNT_ATTR_NODEV`.
pub(crate) const ATTR_NO_DEVICES: u64 = 0x4;
/// `MOUNT_ATTR_NOEXEC`.
pub(crate) const ATTR_NO_EXEC: u64 = 0x8;
pub(crate) const SIOCGIFFLAGS: c_ulong = 0x8913;
pub(crate) const SIOCSIFFLAGS: c_ulong = 0x8914;

#[path = "../sandbox/kernel.rs"]
mod kernel;
use kernel::{InterfaceFlags, MountAttr};

const _: () = assert!(std::mem::size_of::<InterfaceFlags>() == 40);

#[path = "../sandbox/stage.rs"]
mod stage;
pub(crate) use stage::Stage;

impl Stage {
    const ALL: [Stage; 27] = [
        Stage::Unshare,
        Stage::Setgroups,
        Stage::UidMap,
        Stage::GidMap,
        Stage::Hostname,
        Stage::Loopback,
        Stage::ProcessLimit,
        Stage::Pipes,
        Stage::ForkInit,
        Stage::ParentDeath,
        Stage::MakePrivate,
        Stage::OpenTree,
        Stage::SetAttributes,
        Stage::Staging,
        Stage::Step,
        Stage::PivotRoot,
        Stage::DetachOldRoot,
        Stage::RemountRoot,
        Stage::Workdir,
        Stage::ForkCommand,
        Stage::DropCapabilities,
        Stage::NoNewPrivileges,
        Stage::NewSession,
        Stage::Seccomp,
        Stage::UserQuota,
        Stage::Exec,
        Stage::JoinCgroup,
    ];

    fn from_code(code: u32) -> Option<Stage> {
        Stage::ALL.into_iter().find(|stage| *stage as u32 == code)
    }
}

/// A failure as the child reports it: which stage, which source or step,
/// and the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) stage: Stage,
    pub(crate) index: u32,
    pub(crate) errno: i32,
}

/// The size of a report record.
pub(crate) const REPORT_LEN: usize = 12;

impl Failure {
    /// Decodes a record read from the report pipe.
    pub(crate) fn decode(record: &[u8; REPORT_LEN]) -> Option<Failure> {
        let word = |i: usize| [record[i], record[i + 1], record[i + 2], record[i + 3]];
        Some(Failure {
            stage: Stage::from_code(u32::from_ne_bytes(word(0)))?,
            index: u32::from_ne_bytes(word(4)),
            errno: i32::from_ne_bytes(word(8)),
        })
    }
}

/// Reports a failure with the current errno (to nobody when `report` is
/// negative) and returns it as an error.
fn fail(report: RawFd, stage: Stage, index: usize) -> io::Error {
    report_error(report, stage, index, &io::Error::last_os_error())
}

/// Reports `error` as the failure of `stage` (to nobody when `report` is
/// negative) and returns it as a plain OS error.
fn report_error(report: RawFd, stage: Stage, index: usize, error: &io::Error) -> io::Error {
    let errno = error.raw_os_error().unwrap_or(libc::EIO);
    if report < 0 {
        return io::Error::from_raw_os_error(errno);
    }
    let mut record = [0u8; REPORT_LEN];
    record[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    record[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
    record[8..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write(2) of a local buffer; a full pipe or a closed reader
    // only loses the detail, never the error.
    unsafe {
        libc::write(report, record.as_ptr().cast(), record.len());
    }
    io::Error::from_raw_os_error(errno)
}

/// Checks a system call's return value: negative is a failure.
fn check(ret: libc::c_long, report: RawFd, stage: Stage, index: usize) -> io::Result<()> {
    if ret < 0 {
        Err(fail(report, stage, index))
    } else {
        Ok(())
    }
}

/// What differs between two commands of one runtime.
#[derive(Debug)]
pub(crate) struct CommandSlot {
    /// The write end of the report pipe.
    pub(crate) report: RawFd,
    /// Written to the new pid namespace's `ns_last_pid` (decimal) before
    /// the command is forked, so its pids start past it.
    pub(crate) last_pid: Vec<u8>,
}

/// The `pre_exec` hook: returns `Ok` only in the process that must exec
/// the command; the supervisor and the init never return.
///
/// # Safety
///
/// Only in a child just forked by `runtime_local::process::start`, before
/// exec (a [`runtime_local::process::PreExec`] hook): it unshares
/// namespaces, forks, mounts, pivots the root and exits processes, which
/// would wreck the calling process anywhere else. `plan` and `slot` were
/// prepared before the fork, so nothing here allocates.
pub(crate) unsafe fn enter(plan: &Plan, slot: &CommandSlot) -> io::Result<()> {
    let report = slot.report;
    reset_signal_handlers();
    // SAFETY: prctl(2) renames this thread (shown by ps on the host).
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"berth-supervise".as_ptr(), 0, 0, 0);
    }
    // Before unsharing: the new user namespace takes these as the bound of
    // all it holds of the caller's per-user counts.
    for (index, quota) in plan.quota_rlimits.iter().enumerate() {
        let limit = libc::rlimit {
            rlim_cur: quota.value,
            rlim_max: quota.value,
        };
        // SAFETY: setrlimit(2) with a pointer to a local struct.
        check(
            unsafe { libc::setrlimit(quota.resource, &limit) }.into(),
            report,
            Stage::UserQuota,
            index,
        )?;
    }
    // SAFETY: unshare(2) with namespace flags; this child is single-threaded.
    check(
        unsafe { libc::unshare(plan.namespaces) }.into(),
        report,
        Stage::Unshare,
        0,
    )?;
    write_file(c"/proc/self/setgroups", b"deny", report, Stage::Setgroups)?;
    write_file(c"/proc/self/uid_map", &plan.uid_map, report, Stage::UidMap)?;
    write_file(c"/proc/self/gid_map", &plan.gid_map, report, Stage::GidMap)?;
    // SAFETY: sethostname(2) with a buffer and its length.
    check(
        unsafe { libc::sethostname(plan.hostname.as_ptr().cast(), plan.hostname.len()) }.into(),
        report,
        Stage::Hostname,
        0,
    )?;
    if plan.loopback {
        loopback_up(report)?;
    }
    if let Some(limit) = plan.max_processes {
        let limit = libc::rlimit {
            rlim_cur: limit as libc::rlim_t,
            rlim_max: limit as libc::rlim_t,
        };
        // SAFETY: setrlimit(2) with a pointer to a local struct. Set after
        // unshare, so it counts the processes of the new user namespace.
        check(
            unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &limit) }.into(),
            report,
            Stage::ProcessLimit,
            0,
        )?;
    }
    // `status` carries the command's wait status from the init to the
    // supervisor; `lifeline` tells the init whether the supervisor died
    // before the init's parent-death signal was armed.
    let mut status = [0 as c_int; 2];
    let mut lifeline = [0 as c_int; 2];
    // SAFETY: pipe2(2) with pointers to local arrays of two fds.
    check(
        unsafe { libc::pipe2(status.as_mut_ptr(), libc::O_CLOEXEC) }.into(),
        report,
        Stage::Pipes,
        0,
    )?;
    // SAFETY: as above.
    check(
        unsafe { libc::pipe2(lifeline.as_mut_ptr(), libc::O_CLOEXEC) }.into(),
        report,
        Stage::Pipes,
        1,
    )?;
    let init = fork();
    if init < 0 {
        return Err(fail(report, Stage::ForkInit, 0));
    }
    if init > 0 {
        supervise(init, status[0], lifeline[1]);
    }
    // SAFETY: closing the init's copies of the supervisor's pipe ends.
    unsafe {
        libc::close(status[0]);
        libc::close(lifeline[1]);
    }
    init_sandbox(plan, slot, status[1], lifeline[0])
}

/// Restores the default action of every signal the host handles: the host's
/// handlers (copied by fork) must not run in the supervisor or the init,
/// which never exec. Ignored signals stay ignored, as exec keeps them —
/// except SIGCHLD, whose being ignored would reap children behind the
/// supervisor's and the init's backs.
fn reset_signal_handlers() {
    // Signals 1 to 64; sigaction refuses the two glibc keeps for itself.
    for signal in 1..65 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction(2) with pointers to local structs; an all-zero
        // sigaction is SIG_DFL with no flags and an empty mask.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let ignored_child = signal == libc::SIGCHLD && old.sa_sigaction == libc::SIG_IGN;
            if ignored_child
                || (old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN)
            {
                let default: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
        }
    }
}

/// A plain fork: the raw clone system call, so no atfork handler of the
/// host's libraries runs in this copy.
fn fork() -> libc::pid_t {
    // SAFETY: clone(2) with only SIGCHLD and no new stack is fork(2); the
    // child continues on a copy of this stack.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
        ) as libc::pid_t
    }
}

fn write_file(path: &CStr, content: &[u8], report: RawFd, stage: Stage) -> io::Result<()> {
    // SAFETY: open(2) of a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(fail(report, stage, 0));
    }
    // SAFETY: write(2) of a borrowed buffer to the fd opened above.
    let written = unsafe { libc::write(fd, content.as_ptr().cast(), content.len()) };
    let result = if written == content.len() as isize {
        Ok(())
    } else {
        Err(fail(report, stage, 0))
    };
    // SAFETY: closing the fd opened above.
    unsafe {
        libc::close(fd);
    }
    result
}

/// Brings `lo` up in the new network namespace, so servers a command
/// starts inside are reachable from inside.
fn loopback_up(report: RawFd) -> io::Result<()> {
    // SAFETY: socket(2), then ioctl(2) with a pointer to a local ifreq.
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return Err(fail(report, Stage::Loopback, 0));
        }
        let mut request: InterfaceFlags = std::mem::zeroed();
        request.name[..2].copy_from_slice(b"lo");
        let mut result = Ok(());
        if libc::ioctl(socket, SIOCGIFFLAGS, &mut request) < 0 {
            result = Err(fail(report, Stage::Loopback, 1));
        } else {
            request.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(socket, SIOCSIFFLAGS, &request) < 0 {
                result = Err(fail(report, Stage::Loopback, 2));
            }
        }
        libc::close(socket);
        result
    }
}

/// Closes every fd except those in `keep` (ascending).
fn close_all_except(keep: &[c_int]) {
    let mut low: c_uint = 0;
    for &fd in keep {
        let fd = fd as c_uint;
        if fd > low {
            close_range(low, fd - 1);
        }
        low = fd + 1;
    }
    close_range(low, c_uint::MAX);
}

fn close_range(first: c_uint, last: c_uint) {
    // SAFETY: close_range(2) only closes fds of this process.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as c_uint) };
    if ret != 0 {
        // Kernels before 5.9: close one by one, up to the fd limit.
        let end = last.min(65_535);
        for fd in first..=end {
            // SAFETY: closing an fd number; EBADF for unused ones is fine.
            unsafe {
                libc::close(fd as c_int);
            }
        }
    }
}

/// The supervisor: waits for the init, then ends as the command ended
/// (same exit code, or killed by the same signal), so the host's wait
/// status is the command's. Never returns.
fn supervise(init: libc::pid_t, status_pipe: c_int, lifeline: c_int) -> ! {
    let (low, high) = if status_pipe < lifeline {
        (status_pipe, lifeline)
    } else {
        (lifeline, status_pipe)
    };
    // Nothing of the host stays open here: not the command's pipes (the
    // host sees EOF when the sandbox is gone), not std's exec-error pipe.
    close_all_except(&[low, high]);
    let mut init_status: c_int = 0;
    loop {
        // SAFETY: waitpid(2) on our own child with a local out-pointer.
        let reaped = unsafe { libc::waitpid(init, &mut init_status, 0) };
        if reaped == init {
            break;
        }
        if reaped < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // SAFETY: _exit(2) ends this process without running anything.
            unsafe { libc::_exit(LOST_INIT) };
        }
    }
    let mut word = [0u8; 4];
    // SAFETY: read(2) into a local buffer; the init wrote its word (or
    // nothing) before exiting, and it has exited.
    let read = unsafe { libc::read(status_pipe, word.as_mut_ptr().cast(), word.len()) };
    let status = if read == 4 {
        c_int::from_ne_bytes(word)
    } else {
        init_status
    };
    end_like(status)
}

/// Ends this process the way a process with wait status `status` ended.
fn end_like(status: c_int) -> ! {
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        // SAFETY: no core dump of this copy of the host; the default
        // action for the signal; then the signal to ourselves.
        unsafe {
            libc::prctl(libc::PR_SET_DUMPABLE, 0 as c_ulong, 0, 0, 0);
            let default: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, &default, std::ptr::null_mut());
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), signal);
            libc::_exit(128 + signal)
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        LOST_INIT
    };
    // SAFETY: _exit(2).
    unsafe { libc::_exit(code) }
}

/// The init: builds the root, forks the command, reaps until it ends.
/// Returns only in the command's process (or with an error).
fn init_sandbox(
    plan: &Plan,
    slot: &CommandSlot,
    status_pipe: c_int,
    lifeline: c_int,
) -> io::Result<()> {
    let report = slot.report;
    // SAFETY: prctl(2) renames this process (shown by ps in the sandbox).
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"berth-init".as_ptr(), 0, 0, 0);
    }
    // SAFETY: prctl(2) arms the parent-death signal: if the supervisor
    // dies (killed with its group, or with the host), so does the init,
    // and with it the whole pid namespace.
    check(
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0) }.into(),
        report,
        Stage::ParentDeath,
        0,
    )?;
    // The supervisor may have died before the signal was armed: then the
    // lifeline (whose only writer it holds) reads as hung up.
    let mut poll = libc::pollfd {
        fd: lifeline,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) of one local pollfd without waiting, then close(2).
    unsafe {
        if libc::poll(&mut poll, 1, 0) > 0 && poll.revents & libc::POLLHUP != 0 {
            libc::_exit(LOST_INIT);
        }
        libc::close(lifeline);
    }
    build_root(plan, slot)?;
    let command = fork();
    if command < 0 {
        return Err(fail(report, Stage::ForkCommand, 0));
    }
    if command == 0 {
        // SAFETY: closing the command's copy of the init's status pipe.
        unsafe {
            libc::close(status_pipe);
        }
        return enter_command(plan, report);
    }
    close_all_except(&[status_pipe]);
    reap_until(command, status_pipe)
}

/// Reaps every process that ends in the namespace until `command` does,
/// then hands its wait status to the supervisor and exits. The kernel then
/// kills whatever else still runs in the namespace.
fn reap_until(command: libc::pid_t, status_pipe: c_int) -> ! {
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid(2) on any child with a local out-pointer.
        let reaped = unsafe { libc::waitpid(-1, &mut status, 0) };
        if reaped == command {
            let word = status.to_ne_bytes();
            // SAFETY: write(2) of a local buffer, then _exit(2).
            unsafe {
                libc::write(status_pipe, word.as_ptr().cast(), word.len());
            }
            end_like_init(status);
        }
        if reaped < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // SAFETY: _exit(2).
            unsafe { libc::_exit(LOST_INIT) };
        }
    }
}

/// Exits with a code that approximates `status`: a pid namespace's init
/// cannot kill itself with a signal, and the supervisor reads the exact
/// status from the pipe anyway.
fn end_like_init(status: c_int) -> ! {
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    // SAFETY: _exit(2).
    unsafe { libc::_exit(code) }
}

/// Builds the sandbox's root from the plan and makes it the root of this
/// mount namespace.
fn build_root(plan: &Plan, slot: &CommandSlot) -> io::Result<()> {
    let report = slot.report;
    // SAFETY: mount(2) with NUL-terminated strings or null pointers;
    // MS_REC|MS_PRIVATE keeps every mount below from propagating to the
    // host.
    check(
        unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        }
        .into(),
        report,
        Stage::MakePrivate,
        0,
    )?;
    // Every source is captured as a detached mount before the staging
    // tmpfs is mounted, so a source below the staging directory (a
    // workspace in the host's /tmp) is not hidden by it.
    for (index, source) in plan.sources.iter().enumerate() {
        // SAFETY: open_tree(2) of a NUL-terminated path.
        let tree = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                source.path.as_ptr(),
                OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE,
            )
        };
        check(tree, report, Stage::OpenTree, index)?;
        let tree = tree as c_int;
        plan.trees[index].store(tree, Ordering::Relaxed);
        let attributes = MountAttr {
            attr_set: source.attributes,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: mount_setattr(2) on the detached tree with a pointer to
        // a local struct and its size.
        check(
            unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    tree,
                    c"".as_ptr(),
                    libc::AT_EMPTY_PATH as c_uint | AT_RECURSIVE,
                    &attributes,
                    std::mem::size_of::<MountAttr>(),
                )
            },
            report,
            Stage::SetAttributes,
            index,
        )?;
    }
    // SAFETY: mount(2) of a tmpfs with NUL-terminated strings.
    check(
        unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                plan.staging.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                // The root holds only mount points: it is read-only once built.
                c"mode=0755,size=1m".as_ptr().cast(),
            )
        }
        .into(),
        report,
        Stage::Staging,
        0,
    )?;
    for (index, step) in plan.steps.iter().enumerate() {
        run_step(plan, step, slot).map_err(|()| fail(report, Stage::Step, index))?;
    }
    // SAFETY: chdir(2), pivot_root(2) and umount2(2) on NUL-terminated
    // paths. pivot_root(".", ".") stacks the old root on top of the new
    // one; detaching it leaves only the new root.
    unsafe {
        check(
            libc::chdir(plan.staging.as_ptr()).into(),
            report,
            Stage::PivotRoot,
            0,
        )?;
        check(
            libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()),
            report,
            Stage::PivotRoot,
            1,
        )?;
        check(
            libc::umount2(c".".as_ptr(), libc::MNT_DETACH).into(),
            report,
            Stage::DetachOldRoot,
            0,
        )?;
        check(
            libc::chdir(c"/".as_ptr()).into(),
            report,
            Stage::DetachOldRoot,
            1,
        )?;
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                std::ptr::null(),
            )
            .into(),
            report,
            Stage::RemountRoot,
            0,
        )?;
        check(
            libc::chdir(plan.workdir.as_ptr()).into(),
            report,
            Stage::Workdir,
            0,
        )?;
    }
    Ok(())
}

/// Runs one step of the plan; `Err` leaves the reason in errno.
fn run_step(plan: &Plan, step: &Step, slot: &CommandSlot) -> Result<(), ()> {
    // SAFETY: each arm is one system call on NUL-terminated strings the
    // plan owns, or on an fd this process opened.
    let ret = unsafe {
        match step {
            Step::Dir { path } => {
                let ret = libc::mkdir(path.as_ptr(), 0o755);
                if ret != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
                    0
                } else {
                    ret
                }
            }
            Step::File { path } => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                    0o644 as c_uint,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd.min(0)
            }
            Step::Symlink { target, path } => libc::symlink(target.as_ptr(), path.as_ptr()),
            Step::Tmpfs {
                path,
                options,
                flags,
            } => libc::mount(
                c"tmpfs".as_ptr(),
                path.as_ptr(),
                c"tmpfs".as_ptr(),
                *flags,
                options.as_ptr().cast(),
            ),
            Step::Attach { source, path } => {
                let tree = plan.trees[*source].load(Ordering::Relaxed);
                let ret = libc::syscall(
                    libc::SYS_move_mount,
                    tree,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                ) as c_int;
                libc::close(tree);
                ret
            }
            Step::Proc { path } => libc::mount(
                c"proc".as_ptr(),
                path.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ),
            Step::ReadOnly { path, flags } => libc::mount(
                std::ptr::null(),
                path.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | *flags,
                std::ptr::null(),
            ),
            Step::ReadOnlyBind { path } => {
                let bound = libc::mount(
                    path.as_ptr(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                );
                if bound == 0 {
                    libc::mount(
                        std::ptr::null(),
                        path.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REMOUNT
                            | libc::MS_BIND
                            | libc::MS_RDONLY
                            | libc::MS_NOSUID
                            | libc::MS_NODEV
                            | libc::MS_NOEXEC,
                        std::ptr::null(),
                    )
                } else {
                    bound
                }
            }
            Step::Mask { path, with } => libc::mount(
                with.as_ptr(),
                path.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ),
            Step::UserLimit { path, value } => {
                match write_file(path, value.as_bytes(), -1, Stage::Step) {
                    Ok(()) => 0,
                    Err(err) => {
                        // The caller reports errno: close(2) may have
                        // touched it since.
                        *libc::__errno_location() = err.raw_os_error().unwrap_or(libc::EIO);
                        -1
                    }
                }
            }
            Step::LastPid { path } => {
                // Where the kernel lacks `ns_last_pid` (no checkpoint and
                // restore), pids simply start at 2.
                let _ = write_file(path, &slot.last_pid, -1, Stage::Step);
                0
            }
        }
    };
    if ret < 0 { Err(()) } else { Ok(()) }
}

/// The command's own setup: a session of its own (no controlling terminal
/// of the host's to read or to push input into), no capability surviving
/// exec (the bounding set is emptied and no ambient capability is kept),
/// no exec gaining privileges (set-user-id bits and file capabilities are
/// ignored), and last the seccomp filter, which everything the command
/// starts inherits.
fn enter_command(plan: &Plan, report: RawFd) -> io::Result<()> {
    // SAFETY: setsid(2) without arguments.
    check(
        unsafe { libc::setsid() }.into(),
        report,
        Stage::NewSession,
        0,
    )?;
    for capability in 0..64 {
        // SAFETY: prctl(2) with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability as c_ulong, 0, 0, 0) } != 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                // Past the last capability this kernel knows.
                break;
            }
            return Err(fail(report, Stage::DropCapabilities, capability));
        }
    }
    // SAFETY: prctl(2) with integer arguments.
    check(
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
                0,
                0,
                0,
            )
        }
        .into(),
        report,
        Stage::DropCapabilities,
        64,
    )?;
    // SAFETY: prctl(2) with integer arguments.
    check(
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as c_ulong, 0, 0, 0) }.into(),
        report,
        Stage::NoNewPrivileges,
        0,
    )?;
    if let Some(filter) = &plan.seccomp {
        // Async-signal-safe: prctl(2) and seccomp(2) on programs compiled
        // at spawn.
        filter
            .install()
            .map_err(|err| report_error(report, Stage::Seccomp, 0, &err))?;
    }
    Ok(())
}
