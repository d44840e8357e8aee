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
//! * `argv`: `berth-keeper HOST_PID AS_LIMIT FSIZE_LIMIT CWD MODE ARGV...`,
//!   limits in bytes or `-`; `MODE` 0 execs `ARGV` as `execvp` does, 1
//!   likewise but fails to start on a file the kernel will not execute
//!   (no `/bin/sh` for it), 2 runs `ARGV` as dash runs a simple command
//!   (the shell's process forks the program, waits for it and ends as
//!   dash would: `dash.rs`); the environment is the command's.
//!
//! It is `no_std` and links no C library: it makes its system calls
//! itself (x86_64 and aarch64, the only targets it is built for; the
//! numbers are in `abi.rs`, which `src/process/keeper_program.rs` checks
//! against the `libc` crate's at compile time), and `build.rs` links it
//! statically, without a dynamic loader or a C runtime to start. The whole
//! program is a few KiB: writing it to memory once per berth process and
//! executing it per command costs next to nothing.

#![no_std]
#![no_main]
// The memory functions below are loops: the compiler must not turn them
// into calls to themselves.
#![no_builtins]

use core::ffi::{c_char, c_int};

#[path = "abi.rs"]
mod abi;
#[macro_use]
#[path = "rt.rs"]
mod rt;
#[path = "dash.rs"]
mod dash;
#[path = "exec.rs"]
mod exec;

use abi::*;
use dash::fork_and_wait;
use exec::execvp;
use rt::{SigSet, bit, exit, number, set_action, wait_for};

/// Linux's `struct rusage` on 64-bit targets.
type Rusage = [u64; RUSAGE_WORDS];


/// The status pipe and the start-error pipe.
const STATUS_FD: c_int = 3;
const ERROR_FD: c_int = 4;


/// Writes `error` on the start-error pipe and ends this process.
fn fail(error: c_int) -> ! {
    let bytes = error.to_ne_bytes();
    syscall!(SYS_WRITE, ERROR_FD, bytes.as_ptr(), bytes.len());
    exit(127)
}

/// A system call's result, failing (with its errno) when it is an error.
fn check(result: isize) -> isize {
    if result < 0 {
        fail(-result as c_int);
    }
    result
}



/// The signals the keeper waits for (blocked since berth started it).
const KEEPER_SIGNALS: SigSet = bit(SIGCHLD) | bit(SIGTERM) | bit(SIGINT) | bit(SIGHUP);

/// How the command's process runs the command's argv.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// It execs it; a file the kernel will not execute is run by
    /// `/bin/sh` (what `execvp` does).
    Exec,
    /// It execs it; a file the kernel will not execute is a failure to
    /// start (berth then hands the command to the shell, which decides).
    ExecStrict,
    /// As dash runs a simple command: it forks the program (which execs
    /// as `ExecStrict` does), waits for it and ends as dash ends then.
    Fork,
}

fn main(argc: usize, argv: *const *const c_char, envp: *const *const c_char) -> ! {
    if argc < 7 {
        fail(EINVAL); // Not started by berth.
    }
    // SAFETY: argv holds argc pointers to NUL-terminated strings and a
    // terminating null pointer, as exec left them.
    let (host, address_space, file_size, cwd, mode, command) = unsafe {
        (
            number(*argv.add(1)),
            number(*argv.add(2)),
            number(*argv.add(3)),
            *argv.add(4),
            number(*argv.add(5)),
            argv.add(6),
        )
    };
    let mode = match mode {
        Some(0) => Mode::Exec,
        Some(1) => Mode::ExecStrict,
        Some(2) => Mode::Fork,
        _ => fail(EINVAL),
    };
    // Orphans of the command's tree come to this process; berth's death
    // reaches it as SIGTERM.
    check(syscall!(SYS_PRCTL, PR_SET_CHILD_SUBREAPER, 1));
    check(syscall!(SYS_PRCTL, PR_SET_PDEATHSIG, SIGTERM));
    if host.is_none_or(|host| syscall!(SYS_GETPPID) as u64 != host) {
        // berth died before the signal was armed; nothing started yet.
        exit(137);
    }
    // Whatever berth's caller left open without close-on-exec came along:
    // none of it is the command's.
    if syscall!(SYS_CLOSE_RANGE, 5, u32::MAX, 0) != 0 {
        // Kernels before 5.9.
        for fd in 5..65_536 {
            syscall!(SYS_CLOSE, fd);
        }
    }
    let keeper = syscall!(SYS_GETPID);
    // The shell keeps the start-error pipe until its exec, and no longer.
    check(syscall!(SYS_FCNTL, ERROR_FD, F_SETFD, FD_CLOEXEC));
    // A fork: a new process sharing nothing, SIGCHLD to this one at its end.
    let shell = check(syscall!(SYS_CLONE, SIGCHLD, 0, 0, 0, 0));
    if shell == 0 {
        // SAFETY: argv's words from `command` on are the command's argv,
        // null-terminated, and envp is the environment exec left.
        unsafe {
            start_shell(
                keeper,
                address_space,
                file_size,
                cwd,
                mode,
                command,
                envp,
            )
        }
    }
    syscall!(SYS_CLOSE, ERROR_FD);
    keep(shell)
}

/// In the forked child: becomes the command's shell.
///
/// # Safety
///
/// `cwd` must be a NUL-terminated string, `command` and `envp`
/// null-terminated arrays of them.
unsafe fn start_shell(
    keeper: isize,
    address_space: Option<u64>,
    file_size: Option<u64>,
    cwd: *const c_char,
    mode: Mode,
    command: *const *const c_char,
    envp: *const *const c_char,
) -> ! {
    let empty: SigSet = 0;
    check(syscall!(
        SYS_RT_SIGPROCMASK,
        SIG_SETMASK,
        &empty as *const SigSet,
        0,
        SIGSET_BYTES
    ));
    check(syscall!(SYS_PRCTL, PR_SET_CHILD_SUBREAPER, 0));
    check(syscall!(SYS_PRCTL, PR_SET_PDEATHSIG, SIGKILL));
    if syscall!(SYS_GETPPID) != keeper {
        exit(137);
    }
    check(syscall!(SYS_SETPGID, 0, 0));
    // glibc's posix_spawn leaves its two internal signals (32 and 33,
    // which its `sigaction` will not touch) ignored, and an ignored signal
    // stays ignored across exec: the command gets them back at their
    // default action, as every other signal (as the in-process keeper's
    // `child::default_signal_dispositions` does).
    for signal in [32, 33] {
        set_action(signal, SIG_DFL);
    }
    for (resource, bytes) in [(RLIMIT_AS, address_space), (RLIMIT_FSIZE, file_size)] {
        if let Some(bytes) = bytes {
            let limit = Rlimit {
                current: bytes,
                max: bytes,
            };
            check(syscall!(
                SYS_PRLIMIT64,
                0,
                resource,
                &limit as *const Rlimit,
                0
            ));
        }
    }
    check(syscall!(SYS_CHDIR, cwd));
    // Only 0, 1 and 2 survive the exec: the status pipe goes with it (the
    // start-error pipe is close-on-exec already, nothing above it is open).
    check(syscall!(SYS_FCNTL, STATUS_FD, F_SETFD, FD_CLOEXEC));
    let scripts = mode == Mode::Exec;
    if mode == Mode::Fork {
        // The status pipe is the keeper's: neither this process nor the
        // program has any use for it.
        syscall!(SYS_CLOSE, STATUS_FD);
        // SAFETY: as the caller promised.
        unsafe { fork_and_wait(command, envp, ERROR_FD, fail) }
    }
    // SAFETY: as the caller promised.
    fail(unsafe { execvp(*command, command, envp, scripts) })
}

/// The keeper's life: reports the shell's end, sweeps on a signal, exits
/// once nothing of the command is left. Never returns.
fn keep(shell: isize) -> ! {
    syscall!(SYS_PRCTL, PR_SET_NAME, c"berth-keeper".as_ptr());
    // A report to a berth that is gone must fail with EPIPE, not end the
    // keeper before its sweep.
    set_action(SIGPIPE, SIG_IGN);
    // Nothing of the command's stays open here: berth sees the end of its
    // pipes when the command's processes are done with them.
    let null = syscall!(SYS_OPENAT, AT_FDCWD, c"/dev/null".as_ptr(), O_RDWR | O_CLOEXEC);
    if null >= 0 {
        for fd in 0..3 {
            if null != fd {
                syscall!(SYS_DUP3, null, fd, 0);
            }
        }
        if null > 2 {
            syscall!(SYS_CLOSE, null);
        }
    }
    let mut status_fd = STATUS_FD;
    loop {
        let signal = syscall!(
            SYS_RT_SIGTIMEDWAIT,
            &KEEPER_SIGNALS as *const SigSet,
            0,
            0,
            SIGSET_BYTES
        );
        if signal == SIGCHLD as isize {
            let children_left = reap_ready(shell, &mut status_fd);
            if status_fd < 0 && !children_left {
                exit(0);
            }
        } else if signal > 0 {
            sweep(shell, &mut status_fd);
            exit(0);
        }
    }
}

/// `wait4` for any child, with its status and usage.
fn wait_any(options: c_int) -> (isize, c_int, Rusage) {
    let mut status: c_int = 0;
    let mut usage: Rusage = [0; RUSAGE_WORDS];
    let reaped = syscall!(
        SYS_WAIT4,
        -1isize,
        &mut status as *mut c_int,
        options,
        &mut usage as *mut Rusage
    );
    (reaped, status, usage)
}

/// Reaps every child that has ended, reporting the shell's end. Returns
/// whether any child remains.
fn reap_ready(shell: isize, status_fd: &mut c_int) -> bool {
    loop {
        let (reaped, status, usage) = wait_any(WNOHANG);
        if reaped == shell {
            report(status_fd, status, &usage);
        } else if reaped == 0 {
            return true;
        } else if reaped < 0 {
            return reaped == -(EINTR as isize);
        }
    }
}

/// Writes the shell's record (status, then usage) and closes the pipe.
fn report(status_fd: &mut c_int, status: c_int, usage: &Rusage) {
    if *status_fd < 0 {
        return;
    }
    let mut record = [0u8; 4 + 8 * RUSAGE_WORDS];
    record[..4].copy_from_slice(&status.to_ne_bytes());
    for (chunk, word) in record[4..].chunks_exact_mut(8).zip(usage) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    // One write below PIPE_BUF is atomic; a reader that is gone only loses
    // the report.
    syscall!(SYS_WRITE, *status_fd, record.as_ptr(), record.len());
    syscall!(SYS_CLOSE, *status_fd);
    *status_fd = -1;
}

/// Kills everything of the command and reaps it all.
fn sweep(shell: isize, status_fd: &mut c_int) {
    syscall!(SYS_KILL, -shell, SIGKILL);
    loop {
        kill_children();
        // Blocks until a child ends (every child has just been sent
        // SIGKILL).
        let (reaped, status, usage) = wait_any(0);
        if reaped == shell {
            report(status_fd, status, &usage);
        } else if reaped < 0 && reaped != -(EINTR as isize) {
            // ECHILD: nothing is left.
            return;
        }
    }
}

/// Sends SIGKILL to every child of this process, as listed by
/// `/proc/thread-self/children` (the keeper is single-threaded).
fn kill_children() {
    let fd = syscall!(
        SYS_OPENAT,
        AT_FDCWD,
        c"/proc/thread-self/children".as_ptr(),
        O_RDONLY | O_CLOEXEC
    );
    if fd < 0 {
        return;
    }
    let mut buffer = [0u8; 4096];
    let mut pid: isize = 0;
    let mut digits = false;
    loop {
        let count = syscall!(SYS_READ, fd, buffer.as_mut_ptr(), buffer.len());
        if count <= 0 {
            break;
        }
        for &byte in &buffer[..count as usize] {
            if byte.is_ascii_digit() {
                pid = pid
                    .saturating_mul(10)
                    .saturating_add(isize::from(byte - b'0'));
                digits = true;
            } else {
                if digits && pid > 0 {
                    syscall!(SYS_KILL, pid, SIGKILL);
                }
                pid = 0;
                digits = false;
            }
        }
    }
    if digits && pid > 0 {
        syscall!(SYS_KILL, pid, SIGKILL);
    }
    syscall!(SYS_CLOSE, fd);
}
