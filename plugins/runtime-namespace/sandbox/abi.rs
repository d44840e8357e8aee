//! Linux's numbers that `berth-sandbox` needs beyond the keeper's
//! (`runtime-local/keeper/abi.rs`, which the program includes as well), for
//! x86_64 and aarch64. `src/program.rs` includes this file too and checks
//! every value against the `libc` crate's at compile time.

#![allow(dead_code)]

#[cfg(target_arch = "x86_64")]
mod numbers {
    pub(crate) const SYS_MMAP: usize = 9;
    pub(crate) const SYS_MUNMAP: usize = 11;
    pub(crate) const SYS_IOCTL: usize = 16;
    pub(crate) const SYS_CAPSET: usize = 126;
    pub(crate) const SYS_SOCKET: usize = 41;
    pub(crate) const SYS_SETSID: usize = 112;
    pub(crate) const SYS_PIVOT_ROOT: usize = 155;
    pub(crate) const SYS_MOUNT: usize = 165;
    pub(crate) const SYS_UMOUNT2: usize = 166;
    pub(crate) const SYS_SETHOSTNAME: usize = 170;
    pub(crate) const SYS_MKDIRAT: usize = 258;
    pub(crate) const SYS_SYMLINKAT: usize = 266;
    pub(crate) const SYS_PPOLL: usize = 271;
    pub(crate) const SYS_UNSHARE: usize = 272;
    pub(crate) const SYS_PIPE2: usize = 293;
    pub(crate) const SYS_SECCOMP: usize = 317;
    pub(crate) const SYS_OPEN_TREE: usize = 428;
    pub(crate) const SYS_MOVE_MOUNT: usize = 429;
    pub(crate) const SYS_MOUNT_SETATTR: usize = 442;
}

#[cfg(target_arch = "aarch64")]
mod numbers {
    pub(crate) const SYS_MMAP: usize = 222;
    pub(crate) const SYS_MUNMAP: usize = 215;
    pub(crate) const SYS_IOCTL: usize = 29;
    pub(crate) const SYS_CAPSET: usize = 91;
    pub(crate) const SYS_SOCKET: usize = 198;
    pub(crate) const SYS_SETSID: usize = 157;
    pub(crate) const SYS_PIVOT_ROOT: usize = 41;
    pub(crate) const SYS_MOUNT: usize = 40;
    pub(crate) const SYS_UMOUNT2: usize = 39;
    pub(crate) const SYS_SETHOSTNAME: usize = 161;
    pub(crate) const SYS_MKDIRAT: usize = 34;
    pub(crate) const SYS_SYMLINKAT: usize = 36;
    pub(crate) const SYS_PPOLL: usize = 73;
    pub(crate) const SYS_UNSHARE: usize = 97;
    pub(crate) const SYS_PIPE2: usize = 59;
    pub(crate) const SYS_SECCOMP: usize = 277;
    pub(crate) const SYS_OPEN_TREE: usize = 428;
    pub(crate) const SYS_MOVE_MOUNT: usize = 429;
    pub(crate) const SYS_MOUNT_SETATTR: usize = 442;
}

pub(crate) use numbers::*;

pub(crate) const MS_RDONLY: u64 = 1;
pub(crate) const MS_NOSUID: u64 = 2;
pub(crate) const MS_NODEV: u64 = 4;
pub(crate) const MS_NOEXEC: u64 = 8;
pub(crate) const MS_REMOUNT: u64 = 32;
pub(crate) const MS_BIND: u64 = 4096;
pub(crate) const MS_REC: u64 = 16384;
pub(crate) const MS_PRIVATE: u64 = 1 << 18;
pub(crate) const MNT_DETACH: i32 = 2;
pub(crate) const OPEN_TREE_CLONE: u32 = 1;
pub(crate) const AT_RECURSIVE: u32 = 0x8000;
pub(crate) const AT_EMPTY_PATH: u32 = 0x1000;
pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
pub(crate) const O_WRONLY: i32 = 1;
pub(crate) const O_CREAT: i32 = 0o100;
pub(crate) const PROT_READ: usize = 1;
pub(crate) const MAP_PRIVATE: usize = 2;
pub(crate) const POLLIN: i16 = 1;
pub(crate) const POLLHUP: i16 = 0x10;
pub(crate) const AF_INET: i32 = 2;
pub(crate) const SOCK_DGRAM: i32 = 2;
pub(crate) const SIOCGIFFLAGS: usize = 0x8913;
pub(crate) const SIOCSIFFLAGS: usize = 0x8914;
pub(crate) const IFF_UP: i16 = 0x1;
pub(crate) const IFF_RUNNING: i16 = 0x40;
pub(crate) const RLIMIT_NPROC: i32 = 6;
pub(crate) const PR_SET_DUMPABLE: i32 = 4;
pub(crate) const PR_CAPBSET_DROP: i32 = 24;
pub(crate) const PR_SET_NO_NEW_PRIVS: i32 = 38;
pub(crate) const PR_CAP_AMBIENT: i32 = 47;
pub(crate) const PR_CAP_AMBIENT_CLEAR_ALL: i32 = 4;
pub(crate) const SECCOMP_SET_MODE_FILTER: u32 = 1;
pub(crate) const CLOSE_RANGE_CLOEXEC: u32 = 4;
pub(crate) const SIG_UNBLOCK: i32 = 1;
/// `_LINUX_CAPABILITY_VERSION_3`.
pub(crate) const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
pub(crate) const EEXIST: i32 = 17;
pub(crate) const EIO: i32 = 5;
