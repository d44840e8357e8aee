//! System calls for the code between fork and exec, where only
//! async-signal-safe functions may run: no allocation, no locks, no std
//! I/O. Every function here is a thin wrapper over raw system calls on
//! stack buffers, usable from any [`super::PreExec`] hook.

use std::io;

use libc::{c_int, c_uint, c_ulong};

/// `CLOSE_RANGE_CLOEXEC` (`<linux/close_range.h>`): mark instead of close.
const CLOSE_RANGE_CLOEXEC: c_uint = 1 << 2;

/// The highest descriptor the fallbacks below visit when neither
/// `close_range` nor `/proc/self/fd` is available.
const FALLBACK_FD_CEILING: c_int = 65_536;

/// A plain fork through the raw `clone` system call, so that no atfork
/// handler of the host's libraries runs in a copy of a multi-threaded
/// process. Returns the child's pid in the parent, 0 in the child, -1 on
/// failure (errno set).
pub fn fork() -> libc::pid_t {
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

/// Marks every descriptor from `first` up close-on-exec, so that the
/// program about to be exec'd starts with nothing the host left open
/// (while descriptors the pre-exec code still needs, such as std's
/// exec-error pipe, keep working until the exec).
pub fn cloexec_from(first: c_int) {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only changes flags of
    // this process's descriptors.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as c_uint,
            c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return;
    }
    // Kernels before 5.11: one descriptor at a time.
    for_each_open_fd(first, |fd| {
        // SAFETY: fcntl(2) on a descriptor number; EBADF is harmless.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    });
}

/// Closes every descriptor except those in `keep`, which must be sorted
/// in ascending order.
pub fn close_all_except(keep: &[c_int]) {
    let mut low: c_int = 0;
    for &fd in keep {
        if fd > low {
            close_range(low, fd - 1);
        }
        low = fd + 1;
    }
    close_range(low, c_int::MAX);
}

/// Closes descriptors `first..=last`.
fn close_range(first: c_int, last: c_int) {
    // SAFETY: close_range(2) only closes this process's descriptors.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as c_uint,
            last as c_uint,
            0 as c_uint,
        )
    };
    if ret == 0 {
        return;
    }
    // Kernels before 5.9.
    for_each_open_fd(first, |fd| {
        if fd <= last {
            // SAFETY: closing a descriptor number; EBADF is harmless.
            unsafe {
                libc::close(fd);
            }
        }
    });
}

/// Calls `each` with every open descriptor from `first` up: listed from
/// `/proc/self/fd` with `getdents64` into a stack buffer, or, without
/// `/proc`, every number up to the descriptor limit.
fn for_each_open_fd(first: c_int, mut each: impl FnMut(c_int)) {
    // SAFETY: open(2) of a NUL-terminated path.
    let dir = unsafe {
        libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) into a local struct.
        let ceiling = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            (limit.rlim_cur.min(FALLBACK_FD_CEILING as libc::rlim_t)) as c_int
        } else {
            FALLBACK_FD_CEILING
        };
        for fd in first..ceiling {
            each(fd);
        }
        return;
    }
    // Descriptors are collected before any is touched (closing while
    // listing would skip entries), a bufferful at a time: each round lists
    // from the start again and takes only numbers above the last round's.
    let mut floor = first;
    loop {
        let mut found = [0 as c_int; 1024];
        let mut count = 0;
        let mut more = false;
        let mut buffer = [0u8; 4096];
        // SAFETY: lseek(2) on our own directory descriptor.
        unsafe {
            libc::lseek(dir, 0, libc::SEEK_SET);
        }
        loop {
            // SAFETY: getdents64(2) into a local buffer of its length.
            let read = unsafe {
                libc::syscall(libc::SYS_getdents64, dir, buffer.as_mut_ptr(), buffer.len())
            };
            if read <= 0 {
                break;
            }
            let mut offset = 0usize;
            while offset < read as usize {
                // linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
                let reclen =
                    u16::from_ne_bytes([buffer[offset + 16], buffer[offset + 17]]) as usize;
                let name = &buffer[offset + 19..offset + reclen];
                if let Some(fd) = parse_fd(name)
                    && fd >= floor
                    && fd != dir
                {
                    if count < found.len() {
                        found[count] = fd;
                        count += 1;
                    } else {
                        more = true;
                    }
                }
                offset += reclen;
            }
        }
        let mut highest = floor;
        for &fd in &found[..count] {
            each(fd);
            highest = highest.max(fd);
        }
        if !more || count == 0 || highest == c_int::MAX {
            break;
        }
        floor = highest + 1;
    }
    // SAFETY: closing the directory opened above.
    unsafe {
        libc::close(dir);
    }
}

/// Parses a NUL-terminated decimal name from a directory entry.
fn parse_fd(name: &[u8]) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut digits = 0;
    for &byte in name {
        match byte {
            0 => break,
            b'0'..=b'9' => {
                value = value.checked_mul(10)?.checked_add((byte - b'0') as c_int)?;
                digits += 1;
            }
            _ => return None,
        }
    }
    (digits > 0).then_some(value)
}

/// Restores the default action of every signal the host handles: the
/// host's handlers (copied by fork) must not run in a process that never
/// execs. Ignored signals stay ignored, as exec keeps them — except
/// SIGCHLD, whose being ignored would reap children behind a waiting
/// parent's back.
pub fn reset_signal_handlers() {
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

/// The kernel's `struct sigaction` on the 64-bit targets berth runs on
/// (handler, flags, restorer, a 64-bit mask), for the raw system call.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: c_ulong,
    restorer: usize,
    mask: u64,
}

/// Sets every signal to its default action, the ignored ones included
/// (exec keeps a signal ignored), so the program about to be exec'd starts
/// as it would from a fresh login: whatever the host ignores (SIGINT under
/// `nohup`, glibc's internal signals after `posix_spawn`) is not the
/// command's. Uses the raw `rt_sigaction` system call, which, unlike
/// glibc's `sigaction`, also reaches glibc's internal signals 32 and 33.
pub fn default_signal_dispositions() {
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signal in 1..65 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction(2) with a pointer to a local struct of the
        // kernel's layout and the kernel's sigset size (8 bytes).
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal as libc::c_long,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8 as libc::c_long,
            );
        }
    }
}

/// Checks a system call's return value: negative is the current errno.
pub fn check(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_fd;

    #[test]
    fn descriptor_names_parse() {
        assert_eq!(parse_fd(b"0\0"), Some(0));
        assert_eq!(parse_fd(b"1234\0\0\0"), Some(1234));
        assert_eq!(parse_fd(b".\0"), None);
        assert_eq!(parse_fd(b"..\0"), None);
        assert_eq!(parse_fd(b"\0"), None);
        assert_eq!(parse_fd(b"99999999999\0"), None);
    }
}
