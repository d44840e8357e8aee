//! Linux's numbers that `berth-keeper` uses, for x86_64 and aarch64: system
//! call numbers, flags, signals and errno values. The program includes this
//! file (it links no C library); `src/process/keeper_program.rs` includes it
//! too and checks every value against the `libc` crate's at compile time,
//! on whichever of the two targets the crate is built for.

#![allow(dead_code)]

#[cfg(target_arch = "x86_64")]
mod numbers {
    pub(crate) const SYS_READ: usize = 0;
    pub(crate) const SYS_WRITE: usize = 1;
    pub(crate) const SYS_CLOSE: usize = 3;
    pub(crate) const SYS_RT_SIGACTION: usize = 13;
    pub(crate) const SYS_RT_SIGPROCMASK: usize = 14;
    pub(crate) const SYS_GETPID: usize = 39;
    pub(crate) const SYS_CLONE: usize = 56;
    pub(crate) const SYS_EXECVE: usize = 59;
    pub(crate) const SYS_WAIT4: usize = 61;
    pub(crate) const SYS_KILL: usize = 62;
    pub(crate) const SYS_FCNTL: usize = 72;
    pub(crate) const SYS_CHDIR: usize = 80;
    pub(crate) const SYS_SETPGID: usize = 109;
    pub(crate) const SYS_GETPPID: usize = 110;
    pub(crate) const SYS_RT_SIGTIMEDWAIT: usize = 128;
    pub(crate) const SYS_PRCTL: usize = 157;
    pub(crate) const SYS_EXIT_GROUP: usize = 231;
    pub(crate) const SYS_OPENAT: usize = 257;
    pub(crate) const SYS_DUP3: usize = 292;
    pub(crate) const SYS_PRLIMIT64: usize = 302;
    pub(crate) const SYS_CLOSE_RANGE: usize = 436;
}

#[cfg(target_arch = "aarch64")]
mod numbers {
    pub(crate) const SYS_READ: usize = 63;
    pub(crate) const SYS_WRITE: usize = 64;
    pub(crate) const SYS_CLOSE: usize = 57;
    pub(crate) const SYS_RT_SIGACTION: usize = 134;
    pub(crate) const SYS_RT_SIGPROCMASK: usize = 135;
    pub(crate) const SYS_GETPID: usize = 172;
    pub(crate) const SYS_CLONE: usize = 220;
    pub(crate) const SYS_EXECVE: usize = 221;
    pub(crate) const SYS_WAIT4: usize = 260;
    pub(crate) const SYS_KILL: usize = 129;
    pub(crate) const SYS_FCNTL: usize = 25;
    pub(crate) const SYS_CHDIR: usize = 49;
    pub(crate) const SYS_SETPGID: usize = 154;
    pub(crate) const SYS_GETPPID: usize = 173;
    pub(crate) const SYS_RT_SIGTIMEDWAIT: usize = 137;
    pub(crate) const SYS_PRCTL: usize = 167;
    pub(crate) const SYS_EXIT_GROUP: usize = 94;
    pub(crate) const SYS_OPENAT: usize = 56;
    pub(crate) const SYS_DUP3: usize = 24;
    pub(crate) const SYS_PRLIMIT64: usize = 261;
    pub(crate) const SYS_CLOSE_RANGE: usize = 436;
}

pub(crate) use numbers::*;

pub(crate) const SIGHUP: i32 = 1;
pub(crate) const SIGINT: i32 = 2;
pub(crate) const SIGKILL: i32 = 9;
pub(crate) const SIGPIPE: i32 = 13;
pub(crate) const SIGTERM: i32 = 15;
pub(crate) const SIGCHLD: i32 = 17;
pub(crate) const SIG_SETMASK: i32 = 2;
pub(crate) const SIG_DFL: usize = 0;
pub(crate) const SIG_IGN: usize = 1;
pub(crate) const PR_SET_PDEATHSIG: i32 = 1;
pub(crate) const PR_SET_NAME: i32 = 15;
pub(crate) const PR_SET_CHILD_SUBREAPER: i32 = 36;
pub(crate) const WNOHANG: i32 = 1;
pub(crate) const AT_FDCWD: i32 = -100;
pub(crate) const O_RDONLY: i32 = 0;
pub(crate) const O_RDWR: i32 = 2;
pub(crate) const O_CLOEXEC: i32 = 0o2_000_000;
pub(crate) const F_SETFD: i32 = 2;
pub(crate) const FD_CLOEXEC: i32 = 1;
pub(crate) const RLIMIT_FSIZE: i32 = 1;
pub(crate) const RLIMIT_AS: i32 = 9;

pub(crate) const ENOENT: i32 = 2;
pub(crate) const EINTR: i32 = 4;
pub(crate) const ENOEXEC: i32 = 8;
pub(crate) const EACCES: i32 = 13;
pub(crate) const ENODEV: i32 = 19;
pub(crate) const ENOTDIR: i32 = 20;
pub(crate) const EINVAL: i32 = 22;
pub(crate) const ENAMETOOLONG: i32 = 36;
pub(crate) const ETIMEDOUT: i32 = 110;
pub(crate) const ESTALE: i32 = 116;

/// The kernel's signal set: one bit per signal, 1 to 64.
pub(crate) const SIGSET_BYTES: usize = 8;
/// `struct rusage` on 64-bit Linux: two timevals and fourteen longs.
pub(crate) const RUSAGE_WORDS: usize = 18;
/// The shell's default search path where the environment has no `PATH`
/// (what glibc's `execvp` uses).
pub(crate) const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";
/// The shell `execvp` runs a file the kernel cannot execute with.
pub(crate) const BOURNE_SHELL: &core::ffi::CStr = c"/bin/sh";

/// `struct rlimit`.
#[repr(C)]
pub(crate) struct Rlimit {
    pub(crate) current: u64,
    pub(crate) max: u64,
}

/// The kernel's `struct sigaction` on x86_64 and aarch64 (not glibc's).
#[repr(C)]
pub(crate) struct KernelSigaction {
    pub(crate) handler: usize,
    pub(crate) flags: u64,
    pub(crate) restorer: usize,
    pub(crate) mask: u64,
}
