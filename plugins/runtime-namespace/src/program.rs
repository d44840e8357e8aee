//! Starting a command through `berth-sandbox` (`sandbox/main.rs`) instead
//! of a fork of berth's process.
//!
//! A fork of berth copies its page tables (a multi-threaded host with
//! tokio, tens of MiB mapped), and the sandbox's supervisor and init then
//! stay alive as such copies for as long as the command runs, and the
//! command's first process is forked from them once more. `berth-sandbox`
//! is a static program of a few KiB, with no C library, that `build.rs`
//! compiles and this crate embeds: berth starts it with `posix_spawn` (a
//! vfork-style clone, no copy) from a sealed in-memory file, and it builds
//! the sandbox as [`crate::child`] does, from the runtime's [`Plan`]
//! written once at spawn into another sealed in-memory file
//! ([`PlanImage`]).
//!
//! A command whose launch has a cgroup (the spec sets limits) passes the
//! cgroup's `cgroup.procs` descriptors, and the supervisor joins it before
//! anything else. Every command forks as before where the program cannot
//! be built or executed (no `memfd_create`, in-memory files not
//! executable, no `/proc`), or the plan's descriptor was replaced.

use std::cell::Cell;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use runtime_local::process::{
    InShellsPlace, Launch, MemoryProgram, SpawnError, Started, descriptor_identity,
    sealed_memory_file, spawn_program,
};

use crate::plan::{Plan, Step};

/// The program, as `build.rs` left it.
#[cfg(berth_sandbox_program)]
const PROGRAM: Option<&[u8]> = Some(include_bytes!(env!("BERTH_SANDBOX_PROGRAM")));
#[cfg(not(berth_sandbox_program))]
const PROGRAM: Option<&[u8]> = None;

// The program's hand-written values are this platform's.
#[cfg(berth_sandbox_program)]
#[path = "../sandbox/abi.rs"]
mod abi;

#[cfg(berth_sandbox_program)]
const _: () = {
    use abi::*;
    const fn sys(ours: usize, theirs: libc::c_long) -> bool {
        ours as libc::c_long == theirs
    }
    assert!(sys(SYS_MMAP, libc::SYS_mmap) && sys(SYS_IOCTL, libc::SYS_ioctl));
    assert!(sys(SYS_CAPSET, libc::SYS_capset) && sys(SYS_MUNMAP, libc::SYS_munmap));
    assert!(sys(SYS_SOCKET, libc::SYS_socket) && sys(SYS_SETSID, libc::SYS_setsid));
    assert!(sys(SYS_PIVOT_ROOT, libc::SYS_pivot_root) && sys(SYS_MOUNT, libc::SYS_mount));
    assert!(sys(SYS_UMOUNT2, libc::SYS_umount2));
    assert!(sys(SYS_SETHOSTNAME, libc::SYS_sethostname));
    assert!(sys(SYS_MKDIRAT, libc::SYS_mkdirat) && sys(SYS_SYMLINKAT, libc::SYS_symlinkat));
    assert!(sys(SYS_PPOLL, libc::SYS_ppoll) && sys(SYS_UNSHARE, libc::SYS_unshare));
    assert!(sys(SYS_PIPE2, libc::SYS_pipe2) && sys(SYS_SECCOMP, libc::SYS_seccomp));
    assert!(sys(SYS_OPEN_TREE, libc::SYS_open_tree));
    assert!(sys(SYS_MOVE_MOUNT, libc::SYS_move_mount));
    assert!(sys(SYS_MOUNT_SETATTR, libc::SYS_mount_setattr));
    assert!(MS_RDONLY == libc::MS_RDONLY && MS_NOSUID == libc::MS_NOSUID);
    assert!(MS_NODEV == libc::MS_NODEV && MS_NOEXEC == libc::MS_NOEXEC);
    assert!(MS_REMOUNT == libc::MS_REMOUNT && MS_BIND == libc::MS_BIND);
    assert!(MS_REC == libc::MS_REC && MS_PRIVATE == libc::MS_PRIVATE);
    assert!(MNT_DETACH == libc::MNT_DETACH && AT_EMPTY_PATH == libc::AT_EMPTY_PATH as u32);
    assert!(AT_RECURSIVE == crate::child::AT_RECURSIVE);
    assert!(OPEN_TREE_CLONE == crate::child::OPEN_TREE_CLONE);
    assert!(MOVE_MOUNT_F_EMPTY_PATH == crate::child::MOVE_MOUNT_F_EMPTY_PATH);
    assert!(O_WRONLY == libc::O_WRONLY && O_CREAT == libc::O_CREAT);
    assert!(PROT_READ == libc::PROT_READ as usize && MAP_PRIVATE == libc::MAP_PRIVATE as usize);
    assert!(POLLIN == libc::POLLIN && POLLHUP == libc::POLLHUP);
    assert!(AF_INET == libc::AF_INET && SOCK_DGRAM == libc::SOCK_DGRAM);
    assert!(SIOCGIFFLAGS == crate::child::SIOCGIFFLAGS as usize);
    assert!(SIOCSIFFLAGS == crate::child::SIOCSIFFLAGS as usize);
    assert!(IFF_UP as i32 == libc::IFF_UP && IFF_RUNNING as i32 == libc::IFF_RUNNING);
    assert!(RLIMIT_NPROC == libc::RLIMIT_NPROC as i32);
    assert!(PR_SET_DUMPABLE == libc::PR_SET_DUMPABLE);
    assert!(PR_CAPBSET_DROP == libc::PR_CAPBSET_DROP);
    assert!(PR_SET_NO_NEW_PRIVS == libc::PR_SET_NO_NEW_PRIVS);
    assert!(PR_CAP_AMBIENT == libc::PR_CAP_AMBIENT);
    assert!(PR_CAP_AMBIENT_CLEAR_ALL == libc::PR_CAP_AMBIENT_CLEAR_ALL);
    assert!(SECCOMP_SET_MODE_FILTER == libc::SECCOMP_SET_MODE_FILTER);
    assert!(CLOSE_RANGE_CLOEXEC == libc::CLOSE_RANGE_CLOEXEC);
    assert!(SIG_UNBLOCK == libc::SIG_UNBLOCK && EEXIST == libc::EEXIST && EIO == libc::EIO);
};

/// The most sources the program captures (`MAX_SOURCES` there); a plan
/// with more forks.
const MAX_SOURCES: usize = 1024;

/// The plan's first word (`MAGIC` there).
const MAGIC: u64 = u64::from_be_bytes(*b"berthsbx");

/// Set once the program failed to execute: every later command forks.
static UNUSABLE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set by [`use_fork`].
    static FORK: Cell<bool> = const { Cell::new(false) };
}

/// Makes every later command started on this thread fork berth's process
/// as before (`true`), or use the program again (`false`), so tests can
/// check both ways of building the sandbox.
#[doc(hidden)]
pub fn use_fork(on: bool) {
    FORK.set(on);
}

/// The program's in-memory file, written and sealed the first time it is
/// needed; `None` where there is none.
fn installed() -> Option<&'static MemoryProgram> {
    static INSTALLED: OnceLock<Option<MemoryProgram>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let program = PROGRAM?;
            MemoryProgram::install(c"berth-sandbox", program)
                .inspect_err(|err| {
                    tracing::debug!(
                        "the sandbox program cannot be installed, commands fork: {err}"
                    );
                })
                .ok()
        })
        .as_ref()
}

/// A runtime's plan as the program reads it: a sealed in-memory file.
#[derive(Debug)]
pub(crate) struct PlanImage {
    file: OwnedFd,
    /// Its length, as a decimal argument.
    len: CString,
    /// The file's device and inode, to check before each start that the
    /// descriptor is still this file: a host that closes descriptors it
    /// does not own could have put another file at its number (one a
    /// command wrote, for all we know), and the program takes whatever it
    /// is given as the sandbox to build.
    identity: (u64, u64),
}

impl PlanImage {
    /// Writes `plan` for the program; `None` where the program is not
    /// there, the plan is too large for it, or the file cannot be made.
    pub(crate) fn new(plan: &Plan) -> Option<PlanImage> {
        installed()?;
        if plan.sources.len() > MAX_SOURCES {
            return None;
        }
        let bytes = encode(plan);
        sealed_memory_file(c"berth-sandbox-plan", &bytes, false)
            .inspect_err(|err| {
                tracing::debug!("the sandbox's plan cannot be written, commands fork: {err}");
            })
            .ok()
            .and_then(|file| {
                Some(PlanImage {
                    identity: descriptor_identity(file.as_raw_fd()).ok()?,
                    file,
                    len: CString::new(bytes.len().to_string()).expect("no NUL in a number"),
                })
            })
    }

    /// Whether the descriptor is still the plan's file.
    fn intact(&self) -> bool {
        descriptor_identity(self.file.as_raw_fd()).is_ok_and(|found| found == self.identity)
    }
}

/// The plan in the program's layout: native 64-bit words; strings as their
/// length, their bytes, a NUL and zeros up to the next word; a seccomp
/// program as its number of instructions and their bytes. In order: the
/// magic word, the namespaces, loopback, the process limit (`u64::MAX`
/// for none), the quota rlimits (count, then resource and value), uid map,
/// gid map, host name, staging directory, working directory, the sources
/// (count, then attributes and path), the steps (count, then kind and
/// fields), the seccomp programs (count, then each).
pub(crate) fn encode(plan: &Plan) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    let word = |out: &mut Vec<u8>, value: u64| out.extend_from_slice(&value.to_ne_bytes());
    let text = |out: &mut Vec<u8>, bytes: &[u8]| {
        word(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
        out.push(0);
        pad(out);
    };
    word(&mut out, MAGIC);
    word(&mut out, plan.namespaces as u64);
    word(&mut out, u64::from(plan.loopback));
    word(&mut out, plan.max_processes.unwrap_or(u64::MAX));
    word(&mut out, plan.quota_rlimits.len() as u64);
    for quota in &plan.quota_rlimits {
        word(&mut out, u64::from(quota.resource));
        word(&mut out, quota.value);
    }
    text(&mut out, &plan.uid_map);
    text(&mut out, &plan.gid_map);
    text(&mut out, &plan.hostname);
    text(&mut out, plan.staging.as_bytes());
    text(&mut out, plan.workdir.as_bytes());
    word(&mut out, plan.sources.len() as u64);
    for source in &plan.sources {
        word(&mut out, source.attributes);
        text(&mut out, source.path.as_bytes());
    }
    word(&mut out, plan.steps.len() as u64);
    for step in &plan.steps {
        match step {
            Step::Dir { path } => {
                word(&mut out, 1);
                text(&mut out, path.as_bytes());
            }
            Step::File { path } => {
                word(&mut out, 2);
                text(&mut out, path.as_bytes());
            }
            Step::Symlink { target, path } => {
                word(&mut out, 3);
                text(&mut out, target.as_bytes());
                text(&mut out, path.as_bytes());
            }
            Step::Tmpfs {
                path,
                options,
                flags,
            } => {
                word(&mut out, 4);
                text(&mut out, path.as_bytes());
                text(&mut out, options.as_bytes());
                word(&mut out, *flags);
            }
            Step::Attach { source, path } => {
                word(&mut out, 5);
                word(&mut out, *source as u64);
                text(&mut out, path.as_bytes());
            }
            Step::Proc { path } => {
                word(&mut out, 6);
                text(&mut out, path.as_bytes());
            }
            Step::ReadOnly { path, flags } => {
                word(&mut out, 7);
                text(&mut out, path.as_bytes());
                word(&mut out, *flags);
            }
            Step::ReadOnlyBind { path } => {
                word(&mut out, 8);
                text(&mut out, path.as_bytes());
            }
            Step::Mask { path, with } => {
                word(&mut out, 9);
                text(&mut out, path.as_bytes());
                text(&mut out, with.as_bytes());
            }
            Step::LastPid { path } => {
                word(&mut out, 10);
                text(&mut out, path.as_bytes());
            }
            Step::UserLimit { path, value } => {
                word(&mut out, 11);
                text(&mut out, path.as_bytes());
                text(&mut out, value.as_bytes());
            }
        }
    }
    let programs = plan
        .seccomp
        .as_ref()
        .map(|filter| filter.program_bytes())
        .unwrap_or_default();
    word(&mut out, programs.len() as u64);
    for program in programs {
        word(&mut out, program.len() as u64 / 8);
        out.extend_from_slice(&program);
        pad(&mut out);
    }
    out
}

/// Zeros up to the next 64-bit word.
fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(8), 0);
}

/// Starts `launch` through the program with the runtime's plan `image`;
/// `report` is the report pipe's write end, `last_pid` the pid offset of
/// the command. `None` when the launch must fork instead (a cgroup to
/// join, the program unusable here, tests asking for the fork).
pub(crate) fn start(
    image: &PlanImage,
    launch: &Launch,
    last_pid: &str,
    report: RawFd,
) -> Option<io::Result<Started>> {
    if FORK.get() || UNUSABLE.load(Ordering::Relaxed) {
        return None;
    }
    let program = installed()?;
    // The cgroup's descriptors stay open as long as the launch holds it.
    let cgroup_procs: Vec<RawFd> = launch
        .cgroup
        .as_ref()
        .map(|cgroup| cgroup.joiner().procs().to_vec())
        .unwrap_or_default();
    if !image.intact() {
        tracing::warn!(
            "the sandbox plan's descriptor was closed or replaced by another part of this \
             process; this runtime's commands fork from now on"
        );
        return None;
    }
    let limit = match launch.rlimits.file_size {
        Some(bytes) => bytes.to_string(),
        None => "-".to_owned(),
    };
    let words = [
        c"berth-sandbox".to_owned(),
        CString::new(std::process::id().to_string()).expect("no NUL in a number"),
        image.len.clone(),
        CString::new(last_pid).expect("no NUL in a number"),
        CString::new(limit).expect("no NUL in a number"),
        match launch.in_shells_place {
            InShellsPlace::No => c"0",
            InShellsPlace::Exec => c"1",
            InShellsPlace::Fork => c"2",
        }
        .to_owned(),
        CString::new(cgroup_procs.len().to_string()).expect("no NUL in a number"),
    ];
    let mut extra = vec![report, image.file.as_raw_fd()];
    extra.extend_from_slice(&cgroup_procs);
    match spawn_program(program, &words, launch, &extra) {
        Ok(started) => Some(Ok(started)),
        Err(SpawnError::Failed(err)) => Some(Err(err)),
        Err(SpawnError::Unusable(err)) => {
            tracing::debug!("the sandbox program cannot be executed, commands fork: {err}");
            UNUSABLE.store(true, Ordering::Relaxed);
            None
        }
    }
}
