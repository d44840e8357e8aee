//! What dash does around a simple command it forks, for berth's static
//! programs that start a program in dash's place (`berth-keeper`, and the
//! `namespace` plugin's `berth-sandbox`, which include this file).

use core::ffi::{c_char, c_int};

use crate::abi::*;
use crate::exec::execvp;
use crate::rt::{SigSet, bit, exit, wait_for};

/// What dash does with a simple command, in the command's first process
/// (which leads its group and holds its pipes, as dash would): forks the
/// program, which execs `command` (a file the kernel will not execute is
/// a failure to start: `fail` reports its errno on `error_fd`, the pipe
/// it inherited close-on-exec), waits for it,
/// and ends with its exit status, or, when a signal N ended it, with
/// `128 + N` after writing dash's line for the signal to stderr. Signals
/// that reach this process do to it what they do to dash: end it, at once,
/// or, for SIGINT, once the program is done.
///
/// # Safety
///
/// `command` and `envp` must be null-terminated arrays of NUL-terminated
/// strings.
pub(crate) unsafe fn fork_and_wait(
    command: *const *const c_char,
    envp: *const *const c_char,
    error_fd: c_int,
    fail: fn(c_int) -> !,
) -> ! {
    let check = |result: isize| {
        if result < 0 {
            fail(-result as c_int);
        }
        result
    };
    syscall!(SYS_PRCTL, PR_SET_NAME, c"berth-sh".as_ptr());
    // dash catches SIGINT while it waits: the program runs on, and dash
    // ends by SIGINT once it is done. Held blocked here, it waits as well.
    let interrupt: SigSet = bit(SIGINT);
    let unblocked: SigSet = 0;
    let set_mask = |mask: &SigSet| {
        syscall!(
            SYS_RT_SIGPROCMASK,
            SIG_SETMASK,
            mask as *const SigSet,
            0,
            SIGSET_BYTES
        )
    };
    check(set_mask(&interrupt));
    // A fork: the program's parent-death signal is cleared, as under dash.
    let program = check(syscall!(SYS_CLONE, SIGCHLD, 0, 0, 0, 0));
    if program == 0 {
        check(set_mask(&unblocked));
        // SAFETY: as the caller promised.
        fail(unsafe { execvp(*command, command, envp, false) })
    }
    // The error pipe stays with the program until its exec.
    syscall!(SYS_CLOSE, error_fd);
    let Some(status) = wait_for(program) else {
        exit(127)
    };
    let no_wait: [i64; 2] = [0, 0];
    let pending = syscall!(
        SYS_RT_SIGTIMEDWAIT,
        &interrupt as *const SigSet,
        0,
        &no_wait as *const [i64; 2],
        SIGSET_BYTES
    );
    if pending == SIGINT as isize {
        syscall!(SYS_KILL, syscall!(SYS_GETPID), SIGINT);
        set_mask(&unblocked);
        exit(128 + SIGINT);
    }
    let signal = status & 0x7f;
    if signal == 0 {
        exit((status >> 8) & 0xff);
    }
    let mut line = [0u8; 64];
    let length = signal_line(signal, status & 0x80 != 0, &mut line);
    if length > 0 {
        syscall!(SYS_WRITE, 2, line.as_ptr(), length);
    }
    exit(128 + signal)
}

/// What dash writes to stderr when the command it waits for dies of
/// `signal` (nothing for SIGINT and SIGPIPE): the C library's description
/// of the signal in the C locale, `" (core dumped)"`, a newline. Returns
/// the length written into `line`.
fn signal_line(signal: c_int, core_dumped: bool, line: &mut [u8; 64]) -> usize {
    const NAMES: [&[u8]; 32] = [
        b"Unknown signal 0",
        b"Hangup",
        b"",
        b"Quit",
        b"Illegal instruction",
        b"Trace/breakpoint trap",
        b"Aborted",
        b"Bus error",
        b"Floating point exception",
        b"Killed",
        b"User defined signal 1",
        b"Segmentation fault",
        b"User defined signal 2",
        b"",
        b"Alarm clock",
        b"Terminated",
        b"Stack fault",
        b"Child exited",
        b"Continued",
        b"Stopped (signal)",
        b"Stopped",
        b"Stopped (tty input)",
        b"Stopped (tty output)",
        b"Urgent I/O condition",
        b"CPU time limit exceeded",
        b"File size limit exceeded",
        b"Virtual timer expired",
        b"Profiling timer expired",
        b"Window changed",
        b"I/O possible",
        b"Power failure",
        b"Bad system call",
    ];
    if signal == SIGINT || signal == SIGPIPE {
        return 0;
    }
    let mut end = 0;
    let mut put = |bytes: &[u8]| {
        for &byte in bytes {
            if end < line.len() {
                line[end] = byte;
                end += 1;
            }
        }
    };
    // glibc keeps signals 32 and 33 for itself and numbers the real-time
    // signals from its SIGRTMIN, 34.
    let (text, number): (&[u8], Option<c_int>) = match signal {
        1..=31 => (NAMES[signal as usize], None),
        34..=64 => (b"Real-time signal ", Some(signal - 34)),
        _ => (b"Unknown signal ", Some(signal)),
    };
    put(text);
    if let Some(number) = number {
        let mut digits = [0u8; 3];
        let mut count = 0;
        let mut rest = number;
        loop {
            digits[count] = b'0' + (rest % 10) as u8;
            count += 1;
            rest /= 10;
            if rest == 0 || count == digits.len() {
                break;
            }
        }
        for at in (0..count).rev() {
            put(&digits[at..=at]);
        }
    }
    if core_dumped {
        put(b" (core dumped)");
    }
    put(b"\n");
    end
}
