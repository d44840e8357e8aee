//! `berth-keeper`: the keeper as a program of its own, for commands whose
//! launch needs nothing run inside berth's own process between fork and
//! exec (no sandbox hook, no cgroup to join).
//!
//! berth starts it with `posix_spawn` (a vfork-style clone: no copy of
//! berth's page tables) from an in-memory file (`build.rs` compiles this
//! file; `src/process/keeper_program.rs` embeds and starts it). It does
//! what the in-process keeper (`src/process/keeper.rs`) does after its
//! fork, in a process a few pages big, so that forking the command's shell
//! from it costs next to nothing:
//!
//! * it arms its parent-death signal (SIGTERM) and becomes a child
//!   subreaper, then forks the shell into a process group of its own, with
//!   the parent-death signal SIGKILL, the launch's rlimits, the working
//!   directory, every descriptor above 2 close-on-exec, and execs the
//!   command (`execvp`, searching the command's own `PATH`);
//! * it reports the shell's wait status and `struct rusage` on the status
//!   pipe, and keeps running while anything of the command remains;
//! * on SIGTERM, SIGINT or SIGHUP (berth's kill, or berth's death) it
//!   sweeps: kills the shell's group, then every child it has, until none
//!   is left.
//!
//! The interface, set up by berth:
//!
//! * descriptors 0, 1, 2: the command's stdin, stdout, stderr; 3: the
//!   status pipe's write end; 4: the start-error pipe's write end, on
//!   which a failure before the command's exec is written as a native
//!   `i32` errno (the pipe reads as ended, empty, once the exec happened);
//! * signals SIGCHLD, SIGTERM, SIGINT and SIGHUP blocked, every other
//!   signal at its default action, its own process group;
//! * `argv`: `berth-keeper HOST_PID AS_LIMIT FSIZE_LIMIT CWD ARGV...`,
//!   limits in bytes or `-`; the environment is the command's.
//!
//! It is `no_std` and declares the few C library functions it calls
//! itself, so `build.rs` can compile it with `rustc` alone; the numeric
//! constants are Linux's on x86_64 and aarch64, the only targets it is
//! built for (`src/process/keeper_program.rs` checks them against the
//! `libc` crate's at compile time).

#![no_std]
#![no_main]

use core::ffi::{c_char, c_int, c_long, c_ulong, c_void};

/// glibc's `sigset_t`: 1024 bits.
type SigSet = [u64; 16];
/// Linux's `struct rusage` on 64-bit targets: two timevals, fourteen longs.
type Rusage = [u64; 18];

#[repr(C)]
struct Rlimit {
    current: u64,
    max: u64,
}

const SIGHUP: c_int = 1;
const SIGINT: c_int = 2;
const SIGKILL: c_int = 9;
const SIGPIPE: c_int = 13;
const SIGTERM: c_int = 15;
const SIGCHLD: c_int = 17;
const SIG_SETMASK: c_int = 2;
const SIG_DFL: usize = 0;
const SIG_IGN: usize = 1;
const PR_SET_PDEATHSIG: c_int = 1;
const PR_SET_NAME: c_int = 15;
const PR_SET_CHILD_SUBREAPER: c_int = 36;
const WNOHANG: c_int = 1;
const O_RDONLY: c_int = 0;
const O_RDWR: c_int = 2;
const O_CLOEXEC: c_int = 0o2_000_000;
const F_SETFD: c_int = 2;
const FD_CLOEXEC: c_int = 1;
const RLIMIT_FSIZE: c_int = 1;
const RLIMIT_AS: c_int = 9;
const EINTR: c_int = 4;
const SYS_CLOSE_RANGE: c_long = 436;
#[cfg(target_arch = "x86_64")]
const SYS_RT_SIGACTION: c_long = 13;
#[cfg(target_arch = "aarch64")]
const SYS_RT_SIGACTION: c_long = 134;

/// The kernel's `struct sigaction` on x86_64 and aarch64 (not glibc's).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: c_ulong,
    restorer: usize,
    mask: u64,
}

/// The status pipe and the start-error pipe.
const STATUS_FD: c_int = 3;
const ERROR_FD: c_int = 4;

#[link(name = "c")]
unsafe extern "C" {
    fn __errno_location() -> *mut c_int;
    fn _exit(code: c_int) -> !;
    fn fork() -> c_int;
    fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int;
    fn getpid() -> c_int;
    fn getppid() -> c_int;
    fn setpgid(pid: c_int, pgid: c_int) -> c_int;
    fn prctl(option: c_int, ...) -> c_int;
    fn sigemptyset(set: *mut SigSet) -> c_int;
    fn sigaddset(set: *mut SigSet, signal: c_int) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwaitinfo(set: *const SigSet, info: *mut c_void) -> c_int;
    fn signal(signal: c_int, handler: usize) -> usize;
    fn wait4(pid: c_int, status: *mut c_int, options: c_int, usage: *mut Rusage) -> c_int;
    fn kill(pid: c_int, signal: c_int) -> c_int;
    fn open(path: *const c_char, flags: c_int, ...) -> c_int;
    fn read(fd: c_int, buffer: *mut c_void, count: usize) -> isize;
    fn write(fd: c_int, buffer: *const c_void, count: usize) -> isize;
    fn close(fd: c_int) -> c_int;
    fn dup2(old: c_int, new: c_int) -> c_int;
    fn fcntl(fd: c_int, command: c_int, ...) -> c_int;
    fn chdir(path: *const c_char) -> c_int;
    fn setrlimit(resource: c_int, limit: *const Rlimit) -> c_int;
    fn syscall(number: c_long, ...) -> c_long;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: _exit(2) has no preconditions.
    unsafe { _exit(127) }
}

fn errno() -> c_int {
    // SAFETY: glibc's errno location is valid for the calling thread.
    unsafe { *__errno_location() }
}

/// Writes `error` on the start-error pipe and ends this process.
fn fail(error: c_int) -> ! {
    let bytes = error.to_ne_bytes();
    // SAFETY: write(2) of a local buffer; _exit(2).
    unsafe {
        write(ERROR_FD, bytes.as_ptr().cast(), bytes.len());
        _exit(127)
    }
}

/// Fails with errno unless `result` is zero or more.
fn check(result: c_int) {
    if result < 0 {
        fail(errno());
    }
}

/// The number in a NUL-terminated decimal string; `None` for `-`.
///
/// # Safety
///
/// `text` must point to a NUL-terminated string.
unsafe fn number(text: *const c_char) -> Option<u64> {
    let mut value: u64 = 0;
    let mut at = text;
    let mut digits = false;
    // SAFETY: the caller promises a NUL-terminated string; reading stops at
    // the NUL.
    unsafe {
        while *at != 0 {
            let byte = *at as u8;
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value
                .saturating_mul(10)
                .saturating_add(u64::from(byte - b'0'));
            digits = true;
            at = at.add(1);
        }
    }
    digits.then_some(value)
}

fn keeper_signals() -> SigSet {
    let mut set: SigSet = [0; 16];
    // SAFETY: sigemptyset/sigaddset on a local set.
    unsafe {
        sigemptyset(&mut set);
        for signal in [SIGCHLD, SIGTERM, SIGINT, SIGHUP] {
            sigaddset(&mut set, signal);
        }
    }
    set
}

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    if argc < 6 {
        fail(22); // EINVAL: not started by berth.
    }
    // SAFETY: argv holds argc pointers to NUL-terminated strings and a
    // terminating null pointer, as exec left them.
    let (host, address_space, file_size, cwd, command) = unsafe {
        (
            number(*argv.add(1)),
            number(*argv.add(2)),
            number(*argv.add(3)),
            *argv.add(4),
            argv.add(5),
        )
    };
    let signals = keeper_signals();
    // SAFETY: prctl(2) with integer arguments. Orphans of the command's
    // tree come to this process; berth's death reaches it as SIGTERM.
    unsafe {
        check(prctl(
            PR_SET_CHILD_SUBREAPER,
            1 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
        ));
        check(prctl(
            PR_SET_PDEATHSIG,
            SIGTERM as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
        ));
        if host.is_none_or(|host| i64::from(getppid()) != host as i64) {
            // berth died before the signal was armed; nothing started yet.
            _exit(137);
        }
    }
    // Whatever berth's caller left open without close-on-exec came along:
    // none of it is the command's.
    // SAFETY: close_range(2) and close(2) of this process's descriptors.
    unsafe {
        if syscall(
            SYS_CLOSE_RANGE,
            5 as c_ulong,
            !0u32 as c_ulong,
            0 as c_ulong,
        ) != 0
        {
            // Kernels before 5.9.
            for fd in 5..65_536 {
                close(fd);
            }
        }
    }
    // SAFETY: getpid(2) cannot fail.
    let keeper = unsafe { getpid() };
    // The shell keeps the start-error pipe until its exec, and no longer.
    // SAFETY: fcntl(2) on our own descriptor.
    check(unsafe { fcntl(ERROR_FD, F_SETFD, FD_CLOEXEC) });
    // SAFETY: fork(2) of this single-threaded process.
    let shell = unsafe { fork() };
    if shell < 0 {
        fail(errno());
    }
    if shell == 0 {
        // SAFETY: argv's words from `command` on are the command's argv,
        // null-terminated; the rest are plain system calls.
        unsafe { start_shell(keeper, address_space, file_size, cwd, command) }
    }
    // SAFETY: closing our copy of the start-error pipe.
    unsafe {
        close(ERROR_FD);
    }
    keep(shell, &signals)
}

/// In the forked child: becomes the command's shell.
///
/// # Safety
///
/// `cwd` must be a NUL-terminated string and `command` a null-terminated
/// array of them.
unsafe fn start_shell(
    keeper: c_int,
    address_space: Option<u64>,
    file_size: Option<u64>,
    cwd: *const c_char,
    command: *const *const c_char,
) -> ! {
    let empty: SigSet = [0; 16];
    // SAFETY: plain system calls on local values and the caller's strings.
    unsafe {
        check(sigprocmask(SIG_SETMASK, &empty, core::ptr::null_mut()));
        check(prctl(
            PR_SET_CHILD_SUBREAPER,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
        ));
        check(prctl(
            PR_SET_PDEATHSIG,
            SIGKILL as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
        ));
        if getppid() != keeper {
            _exit(137);
        }
        check(setpgid(0, 0));
        // glibc's posix_spawn leaves its two internal signals (32 and 33,
        // which its `sigaction` will not touch) ignored, and an ignored
        // signal stays ignored across exec: the command gets them back at
        // their default action, as every other signal (as the in-process
        // keeper's `child::default_signal_dispositions` does).
        let default = KernelSigaction {
            handler: SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        for signal in [32 as c_ulong, 33] {
            syscall(
                SYS_RT_SIGACTION,
                signal,
                &default as *const KernelSigaction,
                core::ptr::null_mut::<KernelSigaction>(),
                8 as c_ulong,
            );
        }
        for (resource, bytes) in [(RLIMIT_AS, address_space), (RLIMIT_FSIZE, file_size)] {
            if let Some(bytes) = bytes {
                let limit = Rlimit {
                    current: bytes,
                    max: bytes,
                };
                check(setrlimit(resource, &limit));
            }
        }
        check(chdir(cwd));
        // Only 0, 1 and 2 survive the exec: the status pipe goes with it
        // (the start-error pipe is close-on-exec already, nothing above it
        // is open).
        check(fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC));
        execvp(*command, command);
        fail(errno())
    }
}

/// The keeper's life: reports the shell's end, sweeps on a signal, exits
/// once nothing of the command is left. Never returns.
fn keep(shell: c_int, signals: &SigSet) -> ! {
    // SAFETY: prctl(2) renames this process; signal(2); open/dup2/close on
    // our own descriptors.
    unsafe {
        prctl(
            PR_SET_NAME,
            c"berth-keeper".as_ptr(),
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
        );
        // A report to a berth that is gone must fail with EPIPE, not end
        // the keeper before its sweep.
        signal(SIGPIPE, SIG_IGN);
        // Nothing of the command's stays open here: berth sees the end of
        // its pipes when the command's processes are done with them.
        let null = open(c"/dev/null".as_ptr(), O_RDWR | O_CLOEXEC);
        if null >= 0 {
            for fd in 0..3 {
                if null != fd {
                    dup2(null, fd);
                }
            }
            if null > 2 {
                close(null);
            }
        }
    }
    let mut status_fd = STATUS_FD;
    loop {
        // SAFETY: sigwaitinfo(2) on the blocked set, with no info wanted.
        let signal = unsafe { sigwaitinfo(signals, core::ptr::null_mut()) };
        if signal == SIGCHLD {
            let children_left = reap_ready(shell, &mut status_fd);
            if status_fd < 0 && !children_left {
                // SAFETY: _exit(2).
                unsafe { _exit(0) };
            }
        } else if signal > 0 {
            sweep(shell, &mut status_fd);
            // SAFETY: _exit(2).
            unsafe { _exit(0) };
        }
    }
}

/// Reaps every child that has ended, reporting the shell's end. Returns
/// whether any child remains.
fn reap_ready(shell: c_int, status_fd: &mut c_int) -> bool {
    loop {
        let mut status: c_int = 0;
        let mut usage: Rusage = [0; 18];
        // SAFETY: wait4(2) with local out-pointers.
        let reaped = unsafe { wait4(-1, &mut status, WNOHANG, &mut usage) };
        if reaped == shell {
            report(status_fd, status, &usage);
        } else if reaped == 0 {
            return true;
        } else if reaped < 0 {
            return errno() == EINTR;
        }
    }
}

/// Writes the shell's record (status, then usage) and closes the pipe.
fn report(status_fd: &mut c_int, status: c_int, usage: &Rusage) {
    if *status_fd < 0 {
        return;
    }
    let mut record = [0u8; 4 + 144];
    record[..4].copy_from_slice(&status.to_ne_bytes());
    for (chunk, word) in record[4..].chunks_exact_mut(8).zip(usage) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    // SAFETY: one write below PIPE_BUF is atomic; a reader that is gone
    // only loses the report.
    unsafe {
        write(*status_fd, record.as_ptr().cast(), record.len());
        close(*status_fd);
    }
    *status_fd = -1;
}

/// Kills everything of the command and reaps it all.
fn sweep(shell: c_int, status_fd: &mut c_int) {
    // SAFETY: kill(2) of the shell's process group.
    unsafe {
        kill(-shell, SIGKILL);
    }
    loop {
        kill_children();
        let mut status: c_int = 0;
        let mut usage: Rusage = [0; 18];
        // SAFETY: wait4(2) with local out-pointers; blocks until a child
        // ends (every child has just been sent SIGKILL).
        let reaped = unsafe { wait4(-1, &mut status, 0, &mut usage) };
        if reaped == shell {
            report(status_fd, status, &usage);
        } else if reaped < 0 && errno() != EINTR {
            // ECHILD: nothing is left.
            return;
        }
    }
}

/// Sends SIGKILL to every child of this process, as listed by
/// `/proc/thread-self/children` (the keeper is single-threaded).
fn kill_children() {
    // SAFETY: open(2) of a NUL-terminated path.
    let fd = unsafe { open(c"/proc/thread-self/children".as_ptr(), O_RDONLY | O_CLOEXEC) };
    if fd < 0 {
        return;
    }
    let mut buffer = [0u8; 4096];
    let mut pid: c_int = 0;
    let mut digits = false;
    loop {
        // SAFETY: read(2) into a local buffer of its length.
        let count = unsafe { read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        if count <= 0 {
            break;
        }
        for &byte in &buffer[..count as usize] {
            if byte.is_ascii_digit() {
                pid = pid
                    .saturating_mul(10)
                    .saturating_add(c_int::from(byte - b'0'));
                digits = true;
            } else {
                if digits && pid > 0 {
                    // SAFETY: kill(2) of one of our own children.
                    unsafe {
                        kill(pid, SIGKILL);
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
            kill(pid, SIGKILL);
        }
    }
    // SAFETY: closing the file opened above.
    unsafe {
        close(fd);
    }
}
