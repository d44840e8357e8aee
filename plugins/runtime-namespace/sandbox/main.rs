//! `berth-sandbox`: the `namespace` plugin's sandbox as a program of its
//! own, so that the supervisor, the init and the command's first process
//! are copies of a process a few pages big instead of berth's.
//!
//! berth starts it with `posix_spawn` (no copy of berth's page tables) from
//! an in-memory file (`build.rs` compiles this file; `src/program.rs`
//! embeds it, writes the runtime's plan and starts it). It does what
//! `src/child.rs` does after berth's fork, in the same order and with the
//! same failure reports; that module's documentation describes the three
//! processes. In short:
//!
//! * **the supervisor** (this process, the one berth watches and whose
//!   process group it kills) arms its parent-death signal, lowers the quota
//!   rlimits, unshares the namespaces, maps its uid and gid, sets the host
//!   name, brings up `lo`, sets the process limit, forks the init, then
//!   waits and ends the way the command ended;
//! * **the init** builds the root from the plan's sources and steps,
//!   `pivot_root`s into it, forks the command and reaps until it ends;
//! * **the command** starts a session of its own, drops every capability,
//!   sets no-new-privileges, installs the seccomp filter, sets its file
//!   size limit and executes the command as `execvp` does, searching the
//!   command's own `PATH` inside the sandbox.
//!
//! The interface, set up by berth:
//!
//! * descriptors 0, 1, 2: the command's stdin, stdout, stderr; 3: the
//!   status pipe, on which the supervisor writes the command's wait status
//!   and `struct rusage` when it ends, as `berth-keeper` does (the init
//!   reaps it and hands the record on), so that berth's figures are the
//!   command's, not those of this program (whose start shared berth's
//!   memory); 4: the report pipe's write end (a failure is written as a
//!   12-byte record: stage, index, errno, each a native 32-bit integer;
//!   the pipe reads as ended, empty, once the command exec'd); 5: the plan
//!   (an in-memory file, see [`Plan`] for its layout); 6 on: the
//!   `cgroup.procs` files of the command's cgroup, open for writing, which
//!   the supervisor joins first;
//! * every signal at its default action and unblocked, a process group of
//!   its own;
//! * `argv`: `berth-sandbox HOST_PID PLAN_LEN LAST_PID FSIZE_LIMIT MODE
//!   CGROUPS ARGV...`: berth's pid, the plan's length in bytes, the pid
//!   after which the command's pids start, the file size limit in bytes or
//!   `-`, how the command's process runs `ARGV` (as `berth-keeper`'s
//!   `MODE`: 0 execs it as `execvp` does, 1 likewise but a file the kernel
//!   will not execute fails to start, 2 forks it and waits as dash would),
//!   and how many `cgroup.procs` descriptors follow the plan; the
//!   environment is the command's.
//!
//! Like `berth-keeper`, whose run-time (`rt.rs`), `execvp` (`exec.rs`)
//! and system call numbers (`abi.rs`) it includes, it is `no_std` and links
//! no C library.

#![no_std]
#![no_main]
#![no_builtins]

use core::ffi::{c_char, c_int};

#[path = "../../../runtime-local/keeper/abi.rs"]
mod abi;
#[macro_use]
#[path = "../../../runtime-local/keeper/rt.rs"]
mod rt;
#[path = "../../../runtime-local/keeper/dash.rs"]
mod dash;
#[path = "../../../runtime-local/keeper/exec.rs"]
mod exec;
#[path = "abi.rs"]
mod sandbox_abi;
#[path = "kernel.rs"]
mod kernel;
#[path = "stage.rs"]
#[allow(dead_code)]
mod stage;

use abi::*;
use dash::fork_and_wait;
use exec::execvp;
use rt::{exit, number, set_action, wait_for};
use kernel::{InterfaceFlags, MountAttr};
use sandbox_abi::*;
use stage::Stage;

/// The status pipe to berth, the report pipe and the plan.
const STATUS_FD: c_int = 3;
const REPORT_FD: c_int = 4;
const PLAN_FD: c_int = 5;
/// The first `cgroup.procs` descriptor.
const CGROUP_FD: c_int = 6;
/// The most of them (berth's `MAX_DIRS`).
const MAX_CGROUPS: u64 = 8;

/// The command's end as the init hands it on and the supervisor reports
/// it: the wait status, then `struct rusage`.
const RECORD_LEN: usize = 4 + 8 * RUSAGE_WORDS;

/// Exit status when the init vanished without a word (as `src/child.rs`).
const LOST_INIT: c_int = 127;

/// The most sources a plan may capture (berth forks for larger plans).
const MAX_SOURCES: usize = 1024;

/// The plan's first word: `berthsbx`.
const MAGIC: u64 = u64::from_be_bytes(*b"berthsbx");

/// `struct pollfd`.
#[repr(C)]
struct PollFd {
    fd: c_int,
    events: i16,
    revents: i16,
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const u8,
}

/// Writes a failure record for `stage` and `index` with `errno`.
fn report(stage: Stage, index: usize, errno: c_int) {
    let mut record = [0u8; 12];
    record[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    record[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
    record[8..].copy_from_slice(&errno.to_ne_bytes());
    syscall!(SYS_WRITE, REPORT_FD, record.as_ptr(), record.len());
}

/// Reports the failure of `stage` and ends this process.
fn fail(stage: Stage, index: usize, errno: c_int) -> ! {
    report(stage, index, errno);
    exit(127)
}

/// A system call's result; a failure is reported as `stage` and ends the
/// process.
fn check(result: isize, stage: Stage, index: usize) -> isize {
    if result < 0 {
        fail(stage, index, -result as c_int);
    }
    result
}

/// A NUL-terminated string of the plan: its start, and its length without
/// the NUL.
#[derive(Clone, Copy)]
struct Text {
    at: *const u8,
    len: usize,
}

impl Text {
    fn bytes(&self) -> &'static [u8] {
        // SAFETY: the plan is mapped for the life of the process and the
        // reader checked the range.
        unsafe { core::slice::from_raw_parts(self.at, self.len) }
    }
}

/// Reads the plan in the order berth wrote it (`src/program.rs`,
/// `encode`): native 64-bit words; strings as their length, their bytes, a
/// NUL and zeros up to the next word; a seccomp program as its number of
/// instructions and the kernel's 8-byte instructions.
struct Plan {
    at: usize,
    end: usize,
    /// The whole map, unmapped before the command's exec.
    base: usize,
    len: usize,
}

impl Plan {
    /// Takes `len` bytes, failing the whole start on a plan cut short.
    fn take(&mut self, len: usize) -> *const u8 {
        let padded = (len + 7) & !7;
        if padded < len || self.end - self.at < padded {
            fail(Stage::Unshare, 0, EINVAL);
        }
        let at = self.at as *const u8;
        self.at += padded;
        at
    }

    fn word(&mut self) -> u64 {
        let at = self.take(8);
        // SAFETY: `take` checked the 8 bytes; the map is page-aligned and
        // every field starts on a word.
        unsafe { at.cast::<u64>().read() }
    }

    fn text(&mut self) -> Text {
        let len = self.word() as usize;
        let at = self.take(len.saturating_add(1));
        Text { at, len }
    }
}

fn main(argc: usize, argv: *const *const c_char, envp: *const *const c_char) -> ! {
    if argc < 8 {
        exit(LOST_INIT); // Not started by berth.
    }
    // SAFETY: argv holds argc pointers to NUL-terminated strings and a
    // terminating null pointer, as exec left them.
    let (host, plan_len, last_pid, file_size, mode, cgroups, command) = unsafe {
        (
            number(*argv.add(1)),
            number(*argv.add(2)),
            *argv.add(3),
            number(*argv.add(4)),
            number(*argv.add(5)),
            number(*argv.add(6)),
            argv.add(7),
        )
    };
    let Some(cgroups @ 0..=MAX_CGROUPS) = cgroups else {
        exit(LOST_INIT)
    };
    let Some(mode @ 0..=2) = mode else {
        exit(LOST_INIT)
    };
    let launch = Launch {
        last_pid,
        file_size,
        mode,
        command,
        envp,
    };
    // berth's death (the thread that started it, with berth) kills the
    // sandbox: the init follows its supervisor, the namespace its init.
    syscall!(SYS_PRCTL, PR_SET_PDEATHSIG, SIGKILL);
    if host.is_none_or(|host| syscall!(SYS_GETPPID) as u64 != host) {
        exit(137);
    }
    // The command's cgroup first, so that everything of the sandbox is in
    // it ("0" is the writing process, in cgroup v1 and v2).
    for index in 0..cgroups as c_int {
        let written = syscall!(SYS_WRITE, CGROUP_FD + index, b"0".as_ptr(), 1);
        if written != 1 {
            fail(Stage::JoinCgroup, index as usize, if written < 0 { -written as c_int } else { EIO });
        }
    }
    // Those, and whatever berth's caller left open without close-on-exec:
    // none of it is the sandbox's (only 0 to 5 are).
    close_between(PLAN_FD as u32 + 1, u32::MAX);
    // glibc's posix_spawn leaves its two internal signals (32 and 33)
    // ignored, and an ignored signal stays ignored across exec: every
    // signal starts at its default action, as in a fork of berth.
    for signal in [32, 33] {
        set_action(signal, SIG_DFL);
    }
    syscall!(SYS_PRCTL, PR_SET_NAME, c"berth-supervise".as_ptr());
    let plan_len = plan_len.unwrap_or(0) as usize;
    let map = syscall!(SYS_MMAP, 0, plan_len, PROT_READ, MAP_PRIVATE, PLAN_FD, 0);
    if map < 0 || plan_len == 0 {
        fail(Stage::Unshare, 0, if map < 0 { -map as c_int } else { EINVAL });
    }
    syscall!(SYS_CLOSE, PLAN_FD);
    let mut plan = Plan {
        at: map as usize,
        end: map as usize + plan_len,
        base: map as usize,
        len: plan_len,
    };
    if plan.word() != MAGIC {
        fail(Stage::Unshare, 0, EINVAL);
    }
    let namespaces = plan.word();
    let loopback = plan.word() != 0;
    let max_processes = plan.word();
    let quotas = plan.word() as usize;
    for index in 0..quotas {
        let resource = plan.word();
        let value = plan.word();
        let limit = Rlimit {
            current: value,
            max: value,
        };
        // Before unsharing: the new user namespace takes these as the
        // bound of all it holds of the caller's per-user counts.
        check(
            syscall!(SYS_PRLIMIT64, 0, resource, &limit as *const Rlimit, 0),
            Stage::UserQuota,
            index,
        );
    }
    let uid_map = plan.text();
    let gid_map = plan.text();
    let hostname = plan.text();
    check(syscall!(SYS_UNSHARE, namespaces), Stage::Unshare, 0);
    write_file(c"/proc/self/setgroups".as_ptr().cast(), b"deny", Stage::Setgroups);
    write_file(uid_path(), uid_map.bytes(), Stage::UidMap);
    write_file(gid_path(), gid_map.bytes(), Stage::GidMap);
    check(
        syscall!(SYS_SETHOSTNAME, hostname.at, hostname.len),
        Stage::Hostname,
        0,
    );
    if loopback {
        loopback_up();
    }
    if max_processes != u64::MAX {
        let limit = Rlimit {
            current: max_processes,
            max: max_processes,
        };
        // After unsharing, so it counts the new user namespace's processes.
        check(
            syscall!(SYS_PRLIMIT64, 0, RLIMIT_NPROC, &limit as *const Rlimit, 0),
            Stage::ProcessLimit,
            0,
        );
    }
    // `status` carries the command's wait status from the init to the
    // supervisor; `lifeline` tells the init whether the supervisor died
    // before the init's parent-death signal was armed.
    let mut status = [0 as c_int; 2];
    let mut lifeline = [0 as c_int; 2];
    check(
        syscall!(SYS_PIPE2, status.as_mut_ptr(), O_CLOEXEC),
        Stage::Pipes,
        0,
    );
    check(
        syscall!(SYS_PIPE2, lifeline.as_mut_ptr(), O_CLOEXEC),
        Stage::Pipes,
        1,
    );
    let init = check(syscall!(SYS_CLONE, SIGCHLD, 0, 0, 0, 0), Stage::ForkInit, 0);
    if init > 0 {
        supervise(init, status[0], lifeline[1]);
    }
    syscall!(SYS_CLOSE, status[0]);
    syscall!(SYS_CLOSE, lifeline[1]);
    syscall!(SYS_CLOSE, STATUS_FD);
    init_sandbox(&mut plan, status[1], lifeline[0], &launch)
}

/// What the command's process needs from the argv.
struct Launch {
    /// The pid offset (NUL-terminated decimal).
    last_pid: *const c_char,
    file_size: Option<u64>,
    /// 0, 1 or 2 (see the module documentation).
    mode: u64,
    command: *const *const c_char,
    envp: *const *const c_char,
}

fn uid_path() -> *const u8 {
    c"/proc/self/uid_map".as_ptr().cast()
}

fn gid_path() -> *const u8 {
    c"/proc/self/gid_map".as_ptr().cast()
}

/// Writes `content` to the file at `path`; `Err(errno)` on failure.
fn try_write_file(path: *const u8, content: &[u8]) -> Result<(), c_int> {
    let fd = syscall!(SYS_OPENAT, AT_FDCWD, path, O_WRONLY | O_CLOEXEC);
    if fd < 0 {
        return Err(-fd as c_int);
    }
    let written = syscall!(SYS_WRITE, fd, content.as_ptr(), content.len());
    syscall!(SYS_CLOSE, fd);
    if written == content.len() as isize {
        Ok(())
    } else if written < 0 {
        Err(-written as c_int)
    } else {
        Err(EIO)
    }
}

fn write_file(path: *const u8, content: &[u8], stage: Stage) {
    if let Err(errno) = try_write_file(path, content) {
        fail(stage, 0, errno);
    }
}

/// Brings `lo` up in the new network namespace.
fn loopback_up() {
    let socket = check(
        syscall!(SYS_SOCKET, AF_INET, SOCK_DGRAM | O_CLOEXEC, 0),
        Stage::Loopback,
        0,
    );
    let mut request = InterfaceFlags {
        name: [0; 16],
        flags: 0,
        _rest: [0; 22],
    };
    request.name[..2].copy_from_slice(b"lo");
    let got = syscall!(
        SYS_IOCTL,
        socket,
        SIOCGIFFLAGS,
        &mut request as *mut InterfaceFlags
    );
    check(got, Stage::Loopback, 1);
    request.flags |= IFF_UP | IFF_RUNNING;
    let set = syscall!(
        SYS_IOCTL,
        socket,
        SIOCSIFFLAGS,
        &request as *const InterfaceFlags
    );
    check(set, Stage::Loopback, 2);
    syscall!(SYS_CLOSE, socket);
}

/// Closes descriptors `first` to `last`, both included.
fn close_between(first: u32, last: u32) {
    if first > last {
        return;
    }
    if syscall!(SYS_CLOSE_RANGE, first, last, 0) != 0 {
        // Kernels before 5.9.
        for fd in first..=last.min(65_535) {
            syscall!(SYS_CLOSE, fd);
        }
    }
}

/// Closes every descriptor except those in `keep`.
fn close_all_except(keep: &mut [c_int]) {
    keep.sort_unstable();
    let mut next: u32 = 0;
    for &fd in keep.iter() {
        let fd = fd as u32;
        if fd > next {
            close_between(next, fd - 1);
        }
        next = next.max(fd + 1);
    }
    close_between(next, u32::MAX);
}

/// The supervisor: waits for the init, reports the command's end to berth,
/// then ends as the command ended.
fn supervise(init: isize, status_pipe: c_int, lifeline: c_int) -> ! {
    // Nothing else of berth's stays open here: not the command's pipes
    // (berth sees their end when the sandbox is gone), not the report pipe.
    close_all_except(&mut [status_pipe, lifeline, STATUS_FD]);
    let Some(init_status) = wait_for(init) else {
        exit(LOST_INIT)
    };
    let mut record = [0u8; RECORD_LEN];
    let read = syscall!(SYS_READ, status_pipe, record.as_mut_ptr(), record.len());
    if read != RECORD_LEN as isize {
        // The init died before the command ended (killed with berth, or
        // by berth): nothing to report, the status pipe ends empty.
        end_like(init_status)
    }
    // One write below PIPE_BUF is atomic; a berth that is gone only loses
    // the record.
    syscall!(SYS_WRITE, STATUS_FD, record.as_ptr(), record.len());
    let status = c_int::from_ne_bytes([record[0], record[1], record[2], record[3]]);
    end_like(status)
}

/// Ends this process the way a process with wait status `status` ended.
fn end_like(status: c_int) -> ! {
    let signal = status & 0x7f;
    if signal != 0 && signal != 0x7f {
        syscall!(SYS_PRCTL, PR_SET_DUMPABLE, 0);
        set_action(signal, SIG_DFL);
        let set: u64 = 1 << (signal - 1);
        syscall!(
            SYS_RT_SIGPROCMASK,
            SIG_UNBLOCK,
            &set as *const u64,
            0,
            SIGSET_BYTES
        );
        syscall!(SYS_KILL, syscall!(SYS_GETPID), signal);
        exit(128 + signal)
    }
    if signal == 0 {
        exit((status >> 8) & 0xff)
    }
    exit(LOST_INIT)
}

/// The init: builds the root, forks the command, reaps until it ends.
fn init_sandbox(plan: &mut Plan, status_pipe: c_int, lifeline: c_int, launch: &Launch) -> ! {
    syscall!(SYS_PRCTL, PR_SET_NAME, c"berth-init".as_ptr());
    // If the supervisor dies (killed with its group, or with berth), so
    // does the init, and with it the whole pid namespace.
    check(
        syscall!(SYS_PRCTL, PR_SET_PDEATHSIG, SIGKILL),
        Stage::ParentDeath,
        0,
    );
    // The supervisor may have died before the signal was armed: then the
    // lifeline (whose only writer it held) reads as hung up.
    let mut poll = PollFd {
        fd: lifeline,
        events: POLLIN,
        revents: 0,
    };
    let no_wait: [i64; 2] = [0, 0];
    let ready = syscall!(
        SYS_PPOLL,
        &mut poll as *mut PollFd,
        1,
        &no_wait as *const [i64; 2],
        0,
        0
    );
    if ready > 0 && poll.revents & POLLHUP != 0 {
        exit(LOST_INIT);
    }
    syscall!(SYS_CLOSE, lifeline);
    // SAFETY: berth passes the pid offset as a NUL-terminated string.
    let last_pid = unsafe {
        let mut len = 0;
        while *launch.last_pid.add(len) != 0 {
            len += 1;
        }
        core::slice::from_raw_parts(launch.last_pid.cast::<u8>(), len)
    };
    build_root(plan, last_pid);
    let child = check(
        syscall!(SYS_CLONE, SIGCHLD, 0, 0, 0, 0),
        Stage::ForkCommand,
        0,
    );
    if child == 0 {
        syscall!(SYS_CLOSE, status_pipe);
        enter_command(plan, launch)
    }
    close_all_except(&mut [status_pipe]);
    reap_until(child, status_pipe)
}

/// Reaps every process that ends in the namespace until `command` does,
/// then hands its wait status and usage to the supervisor and exits (the
/// kernel then kills whatever else runs in the namespace).
fn reap_until(command: isize, status_pipe: c_int) -> ! {
    loop {
        let mut status: c_int = 0;
        let mut usage = [0u64; RUSAGE_WORDS];
        let reaped = syscall!(
            SYS_WAIT4,
            -1isize,
            &mut status as *mut c_int,
            0,
            usage.as_mut_ptr()
        );
        if reaped == command {
            let mut record = [0u8; RECORD_LEN];
            record[..4].copy_from_slice(&status.to_ne_bytes());
            for (chunk, word) in record[4..].chunks_exact_mut(8).zip(usage) {
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            syscall!(SYS_WRITE, status_pipe, record.as_ptr(), record.len());
            // A pid namespace's init cannot kill itself with a signal; the
            // supervisor reads the exact status from the pipe anyway.
            let signal = status & 0x7f;
            exit(if signal == 0 {
                (status >> 8) & 0xff
            } else {
                128 + signal
            });
        }
        if reaped < 0 && reaped != -(EINTR as isize) {
            exit(LOST_INIT);
        }
    }
}

/// `mount(2)`.
fn mount(source: *const u8, target: *const u8, fstype: *const u8, flags: u64, data: *const u8) -> isize {
    syscall!(SYS_MOUNT, source, target, fstype, flags, data)
}

/// Builds the sandbox's root from the plan's sources and steps and makes it
/// the root of this mount namespace.
fn build_root(plan: &mut Plan, last_pid: &[u8]) {
    let null = core::ptr::null::<u8>();
    // Nothing below propagates to the host.
    check(
        mount(null, c"/".as_ptr().cast(), null, MS_REC | MS_PRIVATE, null),
        Stage::MakePrivate,
        0,
    );
    let staging = plan.text();
    let workdir = plan.text();
    // Every source is captured as a detached mount before the staging
    // tmpfs is mounted, so a source below it is not hidden by it.
    let sources = plan.word() as usize;
    if sources > MAX_SOURCES {
        fail(Stage::OpenTree, MAX_SOURCES, EINVAL);
    }
    let mut trees = [-1 as c_int; MAX_SOURCES];
    for (index, tree_slot) in trees.iter_mut().enumerate().take(sources) {
        let attributes = plan.word();
        let path = plan.text();
        let tree = check(
            syscall!(
                SYS_OPEN_TREE,
                AT_FDCWD,
                path.at,
                OPEN_TREE_CLONE | O_CLOEXEC as u32 | AT_RECURSIVE
            ),
            Stage::OpenTree,
            index,
        );
        *tree_slot = tree as c_int;
        let attr = MountAttr {
            attr_set: attributes,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        check(
            syscall!(
                SYS_MOUNT_SETATTR,
                tree,
                c"".as_ptr(),
                AT_EMPTY_PATH | AT_RECURSIVE,
                &attr as *const MountAttr,
                core::mem::size_of::<MountAttr>()
            ),
            Stage::SetAttributes,
            index,
        );
    }
    check(
        mount(
            c"tmpfs".as_ptr().cast(),
            staging.at,
            c"tmpfs".as_ptr().cast(),
            MS_NOSUID | MS_NODEV,
            // The root holds only mount points: it is read-only once built.
            c"mode=0755,size=1m".as_ptr().cast(),
        ),
        Stage::Staging,
        0,
    );
    let steps = plan.word() as usize;
    for index in 0..steps {
        let result = run_step(plan, &trees[..sources], last_pid);
        if result < 0 {
            fail(Stage::Step, index, -result as c_int);
        }
    }
    // pivot_root(".", ".") stacks the old root on the new one; detaching
    // it leaves only the new root.
    check(syscall!(SYS_CHDIR, staging.at), Stage::PivotRoot, 0);
    check(
        syscall!(SYS_PIVOT_ROOT, c".".as_ptr(), c".".as_ptr()),
        Stage::PivotRoot,
        1,
    );
    check(
        syscall!(SYS_UMOUNT2, c".".as_ptr(), MNT_DETACH),
        Stage::DetachOldRoot,
        0,
    );
    check(syscall!(SYS_CHDIR, c"/".as_ptr()), Stage::DetachOldRoot, 1);
    check(
        mount(
            null,
            c"/".as_ptr().cast(),
            null,
            MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
            null,
        ),
        Stage::RemountRoot,
        0,
    );
    check(syscall!(SYS_CHDIR, workdir.at), Stage::Workdir, 0);
}

/// The steps' kinds, as `src/program.rs` numbers them.
mod step {
    pub(crate) const DIR: u64 = 1;
    pub(crate) const FILE: u64 = 2;
    pub(crate) const SYMLINK: u64 = 3;
    pub(crate) const TMPFS: u64 = 4;
    pub(crate) const ATTACH: u64 = 5;
    pub(crate) const PROC: u64 = 6;
    pub(crate) const READ_ONLY: u64 = 7;
    pub(crate) const READ_ONLY_BIND: u64 = 8;
    pub(crate) const MASK: u64 = 9;
    pub(crate) const LAST_PID: u64 = 10;
    pub(crate) const USER_LIMIT: u64 = 11;
}

/// Reads and runs one step: its system call's result (`-errno` on failure).
fn run_step(plan: &mut Plan, trees: &[c_int], last_pid: &[u8]) -> isize {
    let null = core::ptr::null::<u8>();
    match plan.word() {
        step::DIR => {
            let path = plan.text();
            let made = syscall!(SYS_MKDIRAT, AT_FDCWD, path.at, 0o755);
            if made == -(EEXIST as isize) { 0 } else { made }
        }
        step::FILE => {
            let path = plan.text();
            let fd = syscall!(
                SYS_OPENAT,
                AT_FDCWD,
                path.at,
                O_WRONLY | O_CREAT | O_CLOEXEC,
                0o644
            );
            if fd >= 0 {
                syscall!(SYS_CLOSE, fd);
            }
            fd.min(0)
        }
        step::SYMLINK => {
            let target = plan.text();
            let path = plan.text();
            syscall!(SYS_SYMLINKAT, target.at, AT_FDCWD, path.at)
        }
        step::TMPFS => {
            let path = plan.text();
            let options = plan.text();
            let flags = plan.word();
            let tmpfs = c"tmpfs".as_ptr().cast();
            mount(tmpfs, path.at, tmpfs, flags, options.at)
        }
        step::ATTACH => {
            let source = plan.word() as usize;
            let path = plan.text();
            let Some(&tree) = trees.get(source) else {
                return -(EINVAL as isize);
            };
            let moved = syscall!(
                SYS_MOVE_MOUNT,
                tree,
                c"".as_ptr(),
                AT_FDCWD,
                path.at,
                MOVE_MOUNT_F_EMPTY_PATH
            );
            syscall!(SYS_CLOSE, tree);
            moved
        }
        step::PROC => {
            let path = plan.text();
            let proc = c"proc".as_ptr().cast();
            mount(proc, path.at, proc, MS_NOSUID | MS_NODEV | MS_NOEXEC, null)
        }
        step::READ_ONLY => {
            let path = plan.text();
            let flags = plan.word();
            mount(
                null,
                path.at,
                null,
                MS_REMOUNT | MS_BIND | MS_RDONLY | flags,
                null,
            )
        }
        step::READ_ONLY_BIND => {
            let path = plan.text();
            let bound = mount(path.at, path.at, null, MS_BIND | MS_REC, null);
            if bound != 0 {
                return bound;
            }
            mount(
                null,
                path.at,
                null,
                MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                null,
            )
        }
        step::MASK => {
            let path = plan.text();
            let with = plan.text();
            mount(with.at, path.at, null, MS_BIND, null)
        }
        step::LAST_PID => {
            let path = plan.text();
            // Where the kernel lacks `ns_last_pid`, pids start at 2.
            let _ = try_write_file(path.at, last_pid);
            0
        }
        step::USER_LIMIT => {
            let path = plan.text();
            let value = plan.text();
            match try_write_file(path.at, value.bytes()) {
                Ok(()) => 0,
                Err(errno) => -(errno as isize),
            }
        }
        _ => -(EINVAL as isize),
    }
}

/// The command's own setup, then its exec: a session of its own, no
/// capability surviving exec, no exec gaining privileges, the seccomp
/// filter last (everything the command starts inherits it).
fn enter_command(plan: &mut Plan, launch: &Launch) -> ! {
    check(syscall!(SYS_SETSID), Stage::NewSession, 0);
    for capability in 0..64 {
        let dropped = syscall!(SYS_PRCTL, PR_CAPBSET_DROP, capability);
        if dropped == -(EINVAL as isize) {
            // Past the last capability this kernel knows.
            break;
        }
        check(dropped, Stage::DropCapabilities, capability);
    }
    check(
        syscall!(SYS_PRCTL, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
        Stage::DropCapabilities,
        64,
    );
    // No capability is left to this process either: in dash's place it
    // stays beside the command (mode 2) without ever executing.
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let none = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    check(
        syscall!(
            SYS_CAPSET,
            &header as *const CapHeader,
            none.as_ptr()
        ),
        Stage::DropCapabilities,
        65,
    );
    check(
        syscall!(SYS_PRCTL, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        Stage::NoNewPrivileges,
        0,
    );
    // Before the filter, which may refuse the calls: the file size limit,
    // and only 0, 1 and 2 surviving the exec (the report pipe, the one
    // descriptor left above them, reads as ended once it happened).
    if let Some(bytes) = launch.file_size {
        let limit = Rlimit {
            current: bytes,
            max: bytes,
        };
        check(
            syscall!(SYS_PRLIMIT64, 0, RLIMIT_FSIZE, &limit as *const Rlimit, 0),
            Stage::Exec,
            0,
        );
    }
    check(
        syscall!(SYS_FCNTL, REPORT_FD, F_SETFD, FD_CLOEXEC),
        Stage::Exec,
        0,
    );
    close_between(REPORT_FD as u32 + 1, u32::MAX);
    let programs = plan.word();
    for _ in 0..programs {
        let instructions = plan.word() as usize;
        let filter = plan.take(instructions.saturating_mul(8));
        let program = SockFprog {
            len: instructions as u16,
            filter,
        };
        check(
            syscall!(
                SYS_SECCOMP,
                SECCOMP_SET_MODE_FILTER,
                0,
                &program as *const SockFprog
            ),
            Stage::Seccomp,
            0,
        );
    }
    // Nothing of the plan stays in the process that stays in dash's place,
    // which the command can read.
    syscall!(SYS_MUNMAP, plan.base, plan.len);
    let (command, envp) = (launch.command, launch.envp);
    if launch.mode == 2 {
        // SAFETY: argv's words from `command` on are the command's argv,
        // null-terminated, and envp is the environment exec left.
        unsafe { fork_and_wait(command, envp, REPORT_FD, fail_exec) }
    }
    // SAFETY: as above.
    fail_exec(unsafe { execvp(*command, command, envp, launch.mode == 0) })
}

/// Reports a failed exec of the command and ends this process.
fn fail_exec(errno: c_int) -> ! {
    fail(Stage::Exec, 0, errno)
}
