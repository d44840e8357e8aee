//! Seccomp filters for sandboxes built on host processes: a default profile
//! modelled on Docker's, profiles in Docker's JSON format, and the one
//! async-signal-safe call that installs a filter between fork and exec.
//!
//! # Using it
//!
//! A sandbox turns its setting ([`Setting`]: `default`, `unconfined` or the
//! path of a profile file) into a [`Filter`] in the parent, once, at spawn
//! ([`Setting::load`]): everything is compiled to BPF programs there, with
//! [`seccompiler`] (pure Rust, no libseccomp needed to build or run). Its
//! `pre_exec` hook ([`crate::process::Launch::pre_exec`]) then calls
//! [`Filter::install`] as its **last step, in the process that execs**: the
//! filter would refuse the sandbox's own setup (mounts, `pivot_root`), and it
//! is inherited by everything the command starts. Installing makes only
//! `prctl(PR_SET_NO_NEW_PRIVS)` and `seccomp(2)` calls on programs prepared
//! before the fork: no allocation, no lock. A filter cannot be removed; a
//! command may add filters of its own, which only ever refuse more.
//!
//! # The default profile
//!
//! Default allow; the calls below fail with `EPERM` (`clone3` with `ENOSYS`).
//! It follows Docker's default profile for a process without capabilities
//! (which a sandboxed command is), written as a deny list so that ordinary
//! work — interpreters, compilers, git, threads, subprocesses, loopback
//! sockets, shared memory — never meets it. Names an architecture lacks are
//! skipped there.
//!
//! | Refused | Why |
//! |---|---|
//! | `io_uring_setup`, `io_uring_enter`, `io_uring_register` | a second system-call interface, out of the filter's sight, and a frequent source of kernel exploits |
//! | `bpf`, `perf_event_open`, `userfaultfd`, `lookup_dcookie` | kernel programmability and introspection behind most recent escapes; `userfaultfd` makes kernel races winnable |
//! | `keyctl`, `add_key`, `request_key` | the kernel keyrings are not namespaced |
//! | `kexec_load`, `kexec_file_load`, `init_module`, `finit_module`, `delete_module`, `create_module`, `get_kernel_syms`, `query_module`, `uselib` | replacing or extending the kernel |
//! | `unshare` and `clone` with any `CLONE_NEW*` flag, `setns` | new namespaces (a new user namespace hands back every capability, inside it) and joining others; `unshare` and `clone` without those flags work |
//! | `clone3` (`ENOSYS`) | its flags sit in memory the filter cannot read; `ENOSYS` makes the C library fall back to `clone`, which the filter can check |
//! | `mount`, `umount`, `umount2`, `pivot_root`, `open_tree`, `open_tree_attr`, `move_mount`, `fsopen`, `fsconfig`, `fsmount`, `fspick`, `mount_setattr` | the mount family: the sandbox's file system is final |
//! | `ptrace`, `process_vm_readv`, `process_vm_writev`, `process_madvise`, `pidfd_getfd`, `kcmp`, `move_pages`, `migrate_pages` | reaching into other processes (so `strace` and `gdb` do not work inside) |
//! | `memfd_secret` | memory the kernel maps out of its own view, outside what berth can inspect |
//! | `acct`, `swapon`, `swapoff`, `reboot`, `syslog`, `quotactl`, `quotactl_fd`, `vhangup`, `fanotify_init` | the host's accounting, swap, power, kernel log, quotas, terminals and whole-file-system watches |
//! | `settimeofday`, `clock_settime`, `clock_settime64`, `stime` | setting the clock |
//! | `open_by_handle_at` | opens any file of a file system by its handle, past the sandbox's root |
//! | `iopl`, `ioperm` | raw I/O ports |
//! | `personality` with anything but `0`, `0x8`, `0x20000`, `0x20008` and `0xffffffff` (query) | turning off address-space randomisation, `READ_IMPLIES_EXEC` and similar |
//! | `socket` of families 12, 19, 20, 23, 25, 34, 37, 38 (`AF_ALG`), 40 (`AF_VSOCK`) and 46 on | rarely used protocol families Docker refuses too: obsolete ones, the kernel crypto sockets, and the channel to a hypervisor |
//! | `ustat`, `sysfs`, `_sysctl`, `nfsservctl`, `vm86`, `vm86old` | obsolete interfaces |
//!
//! Decided the other way, on purpose:
//!
//! * `adjtimex` and `clock_adjtime` stay allowed (as in Docker): reading the
//!   clock's state is harmless, and the kernel itself refuses a change to a
//!   process without `CAP_SYS_TIME`. The filter cannot tell the two apart:
//!   the mode lives in memory it cannot read.
//! * `name_to_handle_at` stays allowed (as in Docker): a handle is useless
//!   without `open_by_handle_at`.
//! * `get_mempolicy`, `set_mempolicy`, `mbind` and
//!   `set_mempolicy_home_node` stay allowed (Docker refuses them without
//!   `CAP_SYS_NICE`): they place the caller's own memory, and numerical
//!   libraries call them.
//! * `chroot`, `sethostname`, `setdomainname` and `mknod` of devices are
//!   left to the kernel, which refuses them to a process without
//!   capabilities.
//!
//! # Other ABIs
//!
//! A filter judges system-call numbers, which differ between ABIs, and this
//! one covers the machine's native ABI only. A call through any other ABI
//! kills the process (`SIGSYS`): 32-bit calls (`int 0x80` on x86_64, 32-bit
//! ARM on aarch64) fail [`seccompiler`]'s architecture check, and on x86_64,
//! where x32 calls share the native architecture value but carry bit
//! `0x40000000` in their number (so a deny list keyed on native numbers
//! would miss them), a small guard program installed before the compiled
//! ones kills any call with that bit. Without this, a 32-bit or x32 binary
//! could reach every refused call under another number.
//!
//! # Profile files
//!
//! A profile file is Docker's JSON format (the one `docker run
//! --security-opt seccomp=FILE` reads), at most 1 MiB. Supported:
//!
//! * `defaultAction`, `syscalls[].action`: `SCMP_ACT_ALLOW`,
//!   `SCMP_ACT_ERRNO`, `SCMP_ACT_KILL` (= `SCMP_ACT_KILL_THREAD`),
//!   `SCMP_ACT_KILL_PROCESS`, `SCMP_ACT_TRAP`, `SCMP_ACT_LOG` and
//!   `SCMP_ACT_TRACE`; `defaultErrnoRet` and `syscalls[].errnoRet` (0 to
//!   4095, `EPERM` when absent) with `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE`.
//! * `syscalls[].names` (or the older `name`), `comment`.
//! * `syscalls[].args[]` with `index` (0 to 5), `value`, `valueTwo` and
//!   `op`: `SCMP_CMP_NE`, `SCMP_CMP_LT`, `SCMP_CMP_LE`, `SCMP_CMP_EQ`,
//!   `SCMP_CMP_GE`, `SCMP_CMP_GT`, `SCMP_CMP_MASKED_EQ` (`value` is the mask,
//!   `valueTwo` the value), compared as 64-bit numbers. As runc does, the
//!   args of one entry must all hold, unless an index appears twice: then
//!   each arg is a rule of its own and any one suffices.
//! * `includes` and `excludes` with `caps`, `arches` (`amd64`, `arm64`,
//!   `riscv64`, …) and `minKernel` (`"5.6"`). A sandboxed command holds no
//!   capability, so an entry that `includes` capabilities is skipped and
//!   `excludes.caps` never excludes.
//! * `architectures` and `archMap` are accepted; the filter covers the
//!   native ABI and kills calls through others whatever they say (see
//!   above).
//!
//! Refused with an error naming the field: `SCMP_ACT_NOTIFY` (it needs a
//! listener process berth does not run), `flags`, `listenerPath`,
//! `listenerMetadata`, an `errnoRet` on another action, any other key, and a
//! system-call name this architecture does not know in an entry that
//! refuses, when the default action allows (skipping it would silently
//! allow the call). Elsewhere unknown names are skipped, as libseccomp
//! does, so one profile serves several architectures.
//!
//! A call that entries of several actions match gets the strictest (kill,
//! then trap, then errno, then trace, then log, then allow); between two
//! errnos, the entry listed first wins. Entries whose action is the default
//! one change nothing and are dropped.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry as MapEntry;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use session_core::spec::EnvironmentSpec;
use session_core::{Error, Result};

/// The largest profile file read.
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// System calls the default profile refuses with `EPERM` whatever their
/// arguments (the module documentation says why, and which calls it refuses
/// depending on their arguments). Names this architecture lacks are
/// skipped.
pub const DEFAULT_REFUSED: &[&str] = &[
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "lookup_dcookie",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "uselib",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "open_tree",
    "open_tree_attr",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_getfd",
    "kcmp",
    "move_pages",
    "migrate_pages",
    "memfd_secret",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "vhangup",
    "fanotify_init",
    "settimeofday",
    "clock_settime",
    "clock_settime64",
    "stime",
    "open_by_handle_at",
    "iopl",
    "ioperm",
    "ustat",
    "sysfs",
    "_sysctl",
    "nfsservctl",
    "vm86",
    "vm86old",
];

/// The namespace flags `clone` may not carry under the default profile:
/// `CLONE_NEWNS`, `CLONE_NEWCGROUP`, `CLONE_NEWUTS`, `CLONE_NEWIPC`,
/// `CLONE_NEWUSER`, `CLONE_NEWPID` and `CLONE_NEWNET` (Docker's mask,
/// `0x7e020000`).
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// `CLONE_NEWTIME`, which `unshare` takes (in `clone` the same bit belongs
/// to the exit signal).
const CLONE_NEWTIME: u64 = 0x80;

/// The `personality` values the default profile allows: Linux, its 32-bit
/// variant, with or without `UNAME26`, and the query.
const HARMLESS_PERSONALITIES: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// The socket families the default profile refuses (Docker's), besides
/// those from [`FIRST_UNKNOWN_FAMILY`] on.
const REFUSED_FAMILIES: &[u64] = &[12, 19, 20, 23, 25, 34, 37, 38, 40];

/// The first socket family past those the kernel defines.
const FIRST_UNKNOWN_FAMILY: u64 = 46;

/// `__X32_SYSCALL_BIT`: set in the number of every x32 call.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// The programs are handed to the kernel as `libc::sock_filter`s.
const _: () = assert!(
    std::mem::size_of::<seccompiler::sock_filter>() == std::mem::size_of::<libc::sock_filter>()
        && std::mem::align_of::<seccompiler::sock_filter>()
            == std::mem::align_of::<libc::sock_filter>()
);

/// Which filter a sandbox's commands run under: the spec's value, a string.
///
/// `default` (the default) is the default profile, `unconfined` is no
/// filter, anything else is the path of a profile file in Docker's format
/// (write `./default` for a file of that name). A relative path is taken
/// from the directory of the spec file when the spec still knows it (its
/// [`origin`](EnvironmentSpec::origin) is a file), otherwise from the current
/// directory, as Docker takes it. A spec handed across the plugin boundary
/// keeps its origin (the host sends it along), so a plugin's sandbox reads
/// it the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Setting {
    /// The default profile (see the module documentation).
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A profile file in Docker's JSON format.
    Profile(PathBuf),
}

impl Serialize for Setting {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Setting::Default => serializer.serialize_str("default"),
            Setting::Unconfined => serializer.serialize_str("unconfined"),
            Setting::Profile(path) => path.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Setting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "default" => Ok(Setting::Default),
            "unconfined" => Ok(Setting::Unconfined),
            "" => Err(serde::de::Error::custom(
                "expected `default`, `unconfined` or the path of a seccomp profile file",
            )),
            path => Ok(Setting::Profile(PathBuf::from(path))),
        }
    }
}

impl Setting {
    /// Compiles the filter this setting names; `None` for `unconfined`.
    /// `field` is the setting's dotted path in `spec` (`namespace.seccomp`),
    /// for errors.
    ///
    /// Fails with [`Error::Spec`] naming `field` when the profile file
    /// cannot be read, is larger than [`MAX_PROFILE_BYTES`], is not valid
    /// JSON, uses what the module documentation says is not supported (the
    /// message names the field inside the profile), or compiles to a
    /// program the kernel would not take; and for `default` or a profile on
    /// an architecture [`seccompiler`] does not support (x86_64, aarch64 and
    /// riscv64 are).
    pub fn load(&self, spec: &EnvironmentSpec, field: &str) -> Result<Option<Filter>> {
        let invalid = |message: String| Error::Spec {
            origin: spec.origin().to_owned(),
            field: field.to_owned(),
            message,
        };
        match self {
            Setting::Unconfined => Ok(None),
            Setting::Default => {
                static DEFAULT: OnceLock<std::result::Result<Filter, String>> = OnceLock::new();
                DEFAULT
                    .get_or_init(|| compile(&default_profile()))
                    .clone()
                    .map(Some)
                    .map_err(|problem| invalid(format!("the default seccomp profile: {problem}")))
            }
            Setting::Profile(path) => {
                let path = resolve(path, spec);
                let text = read_profile(&path).map_err(|err| {
                    invalid(format!(
                        "cannot read seccomp profile `{}`: {err}",
                        path.display()
                    ))
                })?;
                Filter::from_docker_json(&text)
                    .map(Some)
                    .map_err(|problem| {
                        invalid(format!("seccomp profile `{}`: {problem}", path.display()))
                    })
            }
        }
    }
}

/// Where a profile path points: absolute as it is; relative from the spec
/// file's directory, or from the current directory.
fn resolve(path: &Path, spec: &EnvironmentSpec) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let origin = Path::new(spec.origin());
    match origin.parent() {
        Some(dir) if origin.is_file() => dir.join(path),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// Reads a regular file of at most [`MAX_PROFILE_BYTES`].
fn read_profile(path: &Path) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    file.take(MAX_PROFILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_PROFILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_PROFILE_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// A compiled filter: BPF programs installed one after the other, ready to
/// be handed to the kernel between fork and exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    programs: Vec<BpfProgram>,
}

impl std::hash::Hash for Filter {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for program in &self.programs {
            program.len().hash(state);
            for op in program {
                (op.code, op.jt, op.jf, op.k).hash(state);
            }
        }
    }
}

impl Filter {
    /// Compiles a profile in Docker's JSON format (see the module
    /// documentation for what is supported).
    ///
    /// Fails with a one-line message that starts with the field at fault
    /// (`syscalls[2].action: …`) when the text is not such a profile or uses
    /// what is not supported, or when it compiles to a program the kernel
    /// would not take.
    pub fn from_docker_json(text: &str) -> std::result::Result<Filter, String> {
        compile(&parse_docker_profile(text)?)
    }

    /// How many programs [`install`](Self::install) hands to the kernel
    /// (each counts in `Seccomp_filters:` of `/proc/PID/status`).
    pub fn programs(&self) -> usize {
        self.programs.len()
    }

    /// Each program as the kernel takes it, for a program that installs the
    /// filter itself: its instructions' bytes, 8 per instruction (a
    /// `struct sock_filter` each: code, jump if true, jump if false, value,
    /// in native byte order), in the order [`install`](Self::install) hands
    /// them over.
    pub fn program_bytes(&self) -> Vec<Vec<u8>> {
        self.programs
            .iter()
            .map(|program| {
                let mut bytes = Vec::with_capacity(program.len() * 8);
                for op in program {
                    bytes.extend_from_slice(&op.code.to_ne_bytes());
                    bytes.push(op.jt);
                    bytes.push(op.jf);
                    bytes.extend_from_slice(&op.k.to_ne_bytes());
                }
                bytes
            })
            .collect()
    }

    /// Installs the filter on the calling thread (and so on everything it
    /// execs and starts): sets no-new-privileges, which the kernel requires
    /// of a process without `CAP_SYS_ADMIN`, then hands over each program.
    ///
    /// Async-signal-safe (two system calls per program on prepared memory,
    /// no allocation), so it may run between fork and exec; call it last
    /// there, as everything after it is filtered. Fails with the kernel's
    /// error: `EINVAL` where the kernel has no seccomp filters, `EFAULT` or
    /// `ENOMEM` for a program it will not take. A failure may leave some of
    /// the programs installed, so the process must not go on to exec.
    pub fn install(&self) -> io::Result<()> {
        // SAFETY: prctl(2) with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        for program in &self.programs {
            let fprog = libc::sock_fprog {
                // Compiled programs are shorter than 4096 instructions.
                len: program.len() as libc::c_ushort,
                filter: program.as_ptr().cast_mut().cast(),
            };
            // SAFETY: seccomp(2) copies the program the local sock_fprog
            // points to (same layout, asserted above) and keeps no pointer.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0 as libc::c_uint,
                    &fprog,
                )
            };
            if ret != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Whether this kernel can run the filters [`Filter::install`] installs:
/// seccomp filters with the `errno` and `kill process` actions (Linux 4.14
/// and later, built with `CONFIG_SECCOMP_FILTER`).
///
/// Fails with the kernel's answer: `ENOSYS` or `EINVAL` without seccomp
/// filters, `EOPNOTSUPP` when an action is missing.
pub fn kernel_support() -> io::Result<()> {
    for action in [libc::SECCOMP_RET_ERRNO, libc::SECCOMP_RET_KILL_PROCESS] {
        // SAFETY: seccomp(2) reads one u32 from the local variable.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_GET_ACTION_AVAIL,
                0 as libc::c_uint,
                &action,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The seccomp state of a process, as `/proc/PID/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// `Seccomp:`: 0 without seccomp, 1 in strict mode, 2 with filters.
    pub mode: u32,
    /// `Seccomp_filters:`: how many filters are installed (Linux 5.9 and
    /// later).
    pub filters: Option<u32>,
}

impl Status {
    /// Reads the state from the text of a `/proc/PID/status` file; `None`
    /// when it has no `Seccomp:` line (a kernel without seccomp).
    pub fn parse(status: &str) -> Option<Status> {
        let field = |name: &str| {
            status.lines().find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .and_then(|value| value.trim().parse::<u32>().ok())
            })
        };
        Some(Status {
            mode: field("Seccomp")?,
            filters: field("Seccomp_filters"),
        })
    }
}

/// One entry of a profile, resolved to this architecture: the action for
/// calls of `syscall` when any of `when` matches (each a conjunction of
/// conditions), or whatever their arguments when `when` is empty.
#[derive(Debug, Clone)]
struct Rule {
    syscall: i64,
    action: SeccompAction,
    when: Vec<SeccompRule>,
}

/// A profile resolved to this architecture.
#[derive(Debug, Clone)]
struct Profile {
    default: SeccompAction,
    rules: Vec<Rule>,
}

/// The syscall number of `name` on this architecture.
fn number(name: &str) -> Option<i64> {
    syscalls::Sysno::from_str(name)
        .ok()
        .map(|sysno| i64::from(sysno.id()))
}

fn target_arch() -> std::result::Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|_| {
        format!(
            "seccomp filters are not supported on {} (berth compiles them for x86_64, \
             aarch64 and riscv64); `unconfined` runs commands without one",
            std::env::consts::ARCH
        )
    })
}

/// A condition on the low 32 bits of argument `index` (an `int` or flags
/// word: the kernel ignores the high half).
fn low_word(index: u8, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value)
        .expect("argument indexes of the default profile are below 6")
}

fn rule_of(conditions: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conditions).expect("rules of the default profile have conditions")
}

/// The default profile (see the module documentation).
fn default_profile() -> Profile {
    let eperm = SeccompAction::Errno(libc::EPERM as u32);
    let mut rules = Vec::new();
    let mut refuse = |name: &str, action: &SeccompAction, when: Vec<SeccompRule>| {
        if let Some(syscall) = number(name) {
            rules.push(Rule {
                syscall,
                action: action.clone(),
                when,
            });
        }
    };
    for name in DEFAULT_REFUSED {
        refuse(name, &eperm, Vec::new());
    }
    let any_of = |flags: &[u64]| {
        flags
            .iter()
            .map(|&flag| rule_of(vec![low_word(0, SeccompCmpOp::MaskedEq(flag), flag)]))
            .collect::<Vec<_>>()
    };
    refuse("clone", &eperm, any_of(CLONE_NAMESPACE_FLAGS));
    let mut unshare_flags = CLONE_NAMESPACE_FLAGS.to_vec();
    unshare_flags.push(CLONE_NEWTIME);
    refuse("unshare", &eperm, any_of(&unshare_flags));
    refuse(
        "personality",
        &eperm,
        vec![rule_of(
            HARMLESS_PERSONALITIES
                .iter()
                .map(|&value| low_word(0, SeccompCmpOp::Ne, value))
                .collect(),
        )],
    );
    let mut families: Vec<SeccompRule> = REFUSED_FAMILIES
        .iter()
        .map(|&family| rule_of(vec![low_word(0, SeccompCmpOp::Eq, family)]))
        .collect();
    families.push(rule_of(vec![low_word(
        0,
        SeccompCmpOp::Ge,
        FIRST_UNKNOWN_FAMILY,
    )]));
    refuse("socket", &eperm, families);
    refuse(
        "clone3",
        &SeccompAction::Errno(libc::ENOSYS as u32),
        Vec::new(),
    );
    Profile {
        default: SeccompAction::Allow,
        rules,
    }
}

/// Rules for one action, per syscall: `None` matches whatever the
/// arguments.
type RuleMap = BTreeMap<i64, Option<Vec<SeccompRule>>>;

fn add_rule(map: &mut RuleMap, rule: &Rule) {
    let when = (!rule.when.is_empty()).then(|| rule.when.clone());
    match map.entry(rule.syscall) {
        MapEntry::Vacant(slot) => {
            slot.insert(when);
        }
        MapEntry::Occupied(mut slot) => match (slot.get_mut(), when) {
            (None, _) => {}
            (existing, None) => *existing = None,
            (Some(existing), Some(more)) => existing.extend(more),
        },
    }
}

fn program(
    map: RuleMap,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> std::result::Result<BpfProgram, String> {
    let all = map.clone();
    let (mut program, chain) = program_parts(map, mismatch.clone(), matched.clone(), arch)?;
    // Head and chain too long to go in together (a profile of some 350
    // calls with conditions): the chain of every rule goes in alone, which
    // answers the same, only more slowly.
    if program.len() + chain.len() > MAX_PROGRAM {
        return chain_of(all, mismatch, matched, arch);
    }
    program.extend(chain);
    Ok(program)
}

/// A program's two parts: the [`dispatch`] head, and the chain that tests
/// the call against each rule with conditions on its arguments in turn
/// (what [`seccompiler`] compiles).
fn program_parts(
    map: RuleMap,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> std::result::Result<(BpfProgram, BpfProgram), String> {
    let numbers: Vec<(u32, bool)> = map
        .iter()
        .map(|(&n, when)| {
            u32::try_from(n)
                .map(|n| (n, when.is_some()))
                .map_err(|_| format!("system call number {n} is out of range"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let head = dispatch(
        &numbers,
        u32::from(mismatch.clone()),
        u32::from(matched.clone()),
        audit_arch(arch),
    );
    // A call without conditions is answered by the head; the chain holds
    // the others (and sees the calls of other architectures).
    let conditional = map.into_iter().filter(|(_, when)| when.is_some()).collect();
    Ok((head, chain_of(conditional, mismatch, matched, arch)?))
}

/// The chain [`seccompiler`] compiles of `map`: the architecture checked,
/// then the call tested against each rule in turn.
fn chain_of(
    map: RuleMap,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> std::result::Result<BpfProgram, String> {
    let rules = map
        .into_iter()
        .map(|(syscall, when)| (syscall, when.unwrap_or_default()))
        .collect();
    SeccompFilter::new(rules, mismatch, matched, arch)
        .and_then(BpfProgram::try_from)
        .map_err(|err| format!("cannot compile the filter: {err}"))
}

/// The most instructions of one program (`BPF_MAXINSNS`).
const MAX_PROGRAM: usize = 4096;

/// The architecture value the kernel passes for native calls on `arch`.
fn audit_arch(arch: TargetArch) -> u32 {
    // EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE, as <linux/audit.h>.
    const BITS_64_LE: u32 = 0x8000_0000 | 0x4000_0000;
    match arch {
        TargetArch::x86_64 => 62 | BITS_64_LE,
        TargetArch::aarch64 => 183 | BITS_64_LE,
        TargetArch::riscv64 => 243 | BITS_64_LE,
    }
}

/// The head of a program whose rules name the system calls `numbers`
/// (sorted, distinct, each with whether its rules have conditions on the
/// arguments): a binary search that answers at once for a native call —
/// `mismatch` when it has no rule, `matched` when its rule has no
/// conditions — and goes on to the program's own chain (which follows the
/// head) for anything else.
///
/// The chain alone tests a call against every rule's number in turn, and
/// the kernel, when it installs a filter, runs it for every system call
/// number of every architecture to find the calls it may allow without
/// running it again, and translates and compiles every instruction: with a
/// chain of a few hundred instructions that took ~0.3 ms of every
/// sandboxed command's start. Behind this head a native call takes a
/// handful of comparisons, and the answers are the same: only a call with
/// conditions, or of another architecture, reaches the chain, which then
/// decides as before.
fn dispatch(numbers: &[(u32, bool)], mismatch: u32, matched: u32, audit_arch: u32) -> BpfProgram {
    if numbers.is_empty() {
        return Vec::new();
    }
    let mut head: Vec<Step> = vec![
        bpf(LOAD_WORD, 0, 0, DATA_ARCH).into(),
        // Another architecture: to the chain, past the jump below.
        bpf(JUMP_IF_EQUAL, 1, 0, audit_arch).into(),
        Step::ToChain,
        bpf(LOAD_WORD, 0, 0, DATA_NR).into(),
    ];
    head.extend(search(numbers, mismatch, matched));
    let len = head.len();
    head.into_iter()
        .enumerate()
        .map(|(at, step)| match step {
            Step::ToChain => bpf(JUMP, 0, 0, (len - at - 1) as u32),
            Step::Op(op) => op,
        })
        .collect()
}

/// One instruction of [`dispatch`]'s head: the jump to the chain is
/// resolved once the head's length is known.
enum Step {
    Op(seccompiler::sock_filter),
    ToChain,
}

impl From<seccompiler::sock_filter> for Step {
    fn from(op: seccompiler::sock_filter) -> Step {
        Step::Op(op)
    }
}

/// The binary search of [`dispatch`] over `numbers` (not empty), the call's
/// number loaded: `matched` for one without conditions, to the chain for
/// one with, `mismatch` for any other.
fn search(numbers: &[(u32, bool)], mismatch: u32, matched: u32) -> Vec<Step> {
    if numbers.len() <= 4 {
        let mut steps = Vec::with_capacity(2 * numbers.len() + 1);
        for &(number, conditional) in numbers {
            steps.push(bpf(JUMP_IF_EQUAL, 0, 1, number).into());
            steps.push(match conditional {
                true => Step::ToChain,
                false => bpf(RETURN, 0, 0, matched).into(),
            });
        }
        steps.push(bpf(RETURN, 0, 0, mismatch).into());
        return steps;
    }
    let (below, above) = numbers.split_at(numbers.len() / 2);
    let pivot = above[0].0;
    let below = search(below, mismatch, matched);
    let above = search(above, mismatch, matched);
    let mut steps = Vec::with_capacity(below.len() + above.len() + 2);
    // Conditional jumps reach at most 255 instructions ahead.
    match u8::try_from(below.len()) {
        Ok(skip) => steps.push(bpf(JUMP_IF_AT_LEAST, skip, 0, pivot).into()),
        Err(_) => {
            steps.push(bpf(JUMP_IF_AT_LEAST, 0, 1, pivot).into());
            steps.push(bpf(JUMP, 0, 0, below.len() as u32).into());
        }
    }
    steps.extend(below);
    steps.extend(above);
    steps
}

fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> seccompiler::sock_filter {
    seccompiler::sock_filter { code, jt, jf, k }
}

const LOAD_WORD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JUMP: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JUMP_IF_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JUMP_IF_AT_LEAST: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// Compiles a profile into programs whose stacking gives each call the
/// strictest action of the rules it matches, or the default:
///
/// * one program per action other than allow, returning it for its rules
///   and allow otherwise;
/// * unless the default is allow, one program returning allow for every
///   rule's calls and the default otherwise;
/// * on x86_64, first, the guard that kills x32 calls.
///
/// Each program but the guard opens with the [`dispatch`] head.
///
/// The kernel runs them all and keeps the strictest answer; between equal
/// ones, that of the program installed last, so the action groups go in in
/// reverse order of their first rule.
fn compile(profile: &Profile) -> std::result::Result<Filter, String> {
    let arch = target_arch()?;
    let mut programs = Vec::new();
    programs.extend(abi_guard());
    for plan in plans(profile) {
        programs.push(program(plan.rules, plan.mismatch, plan.matched, arch)?);
    }
    // The kernel's bound on the filters one call runs through, each
    // counted with 4 instructions of overhead (MAX_INSNS_PER_PATH).
    let total: usize = programs.iter().map(|program| program.len() + 4).sum();
    if total > MAX_INSTRUCTIONS {
        return Err(format!(
            "the profile compiles to {} programs of {total} instructions in all, more than the \
             {MAX_INSTRUCTIONS} the kernel takes: fewer distinct actions or errnos make fewer \
             programs",
            programs.len()
        ));
    }
    Ok(Filter { programs })
}

/// One program of a profile's filter, before it is compiled: the action
/// for the calls its rules match and for the rest.
struct Plan {
    rules: RuleMap,
    mismatch: SeccompAction,
    matched: SeccompAction,
}

/// The programs [`compile`] makes of `profile` besides the guard, in the
/// order they are installed.
fn plans(profile: &Profile) -> Vec<Plan> {
    let mut groups: Vec<(SeccompAction, RuleMap)> = Vec::new();
    let mut others = RuleMap::new();
    for rule in &profile.rules {
        if rule.action == profile.default {
            continue;
        }
        add_rule(&mut others, rule);
        if rule.action == SeccompAction::Allow {
            continue;
        }
        match groups.iter_mut().find(|(action, _)| *action == rule.action) {
            Some((_, map)) => add_rule(map, rule),
            None => {
                let mut map = RuleMap::new();
                add_rule(&mut map, rule);
                groups.push((rule.action.clone(), map));
            }
        }
    }
    let mut plans = Vec::new();
    if profile.default != SeccompAction::Allow {
        plans.push(Plan {
            rules: others,
            mismatch: profile.default.clone(),
            matched: SeccompAction::Allow,
        });
    }
    for (action, rules) in groups.into_iter().rev() {
        plans.push(Plan {
            rules,
            mismatch: SeccompAction::Allow,
            matched: action,
        });
    }
    plans
}

/// The most instructions, overhead included, of all filters of a process
/// (`MAX_INSNS_PER_PATH`).
const MAX_INSTRUCTIONS: usize = 32_768;

/// The guard against x32 calls on x86_64: kills the process for a call of
/// another architecture or one whose number has the x32 bit (and not the
/// sign bit: negative numbers are no call at all), allows the rest for the
/// programs after it to judge. Six instructions, written out because
/// [`seccompiler`] checks only the architecture value, which x32 shares
/// with x86_64.
#[cfg(target_arch = "x86_64")]
fn abi_guard() -> Option<BpfProgram> {
    const AND: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
    Some(vec![
        bpf(LOAD_WORD, 0, 0, DATA_ARCH),
        // Another architecture (x32 calls have x86_64's): to the kill at
        // the end.
        bpf(JUMP_IF_EQUAL, 0, 4, audit_arch(TargetArch::x86_64)),
        bpf(LOAD_WORD, 0, 0, DATA_NR),
        bpf(AND, 0, 0, X32_SYSCALL_BIT | 0x8000_0000),
        bpf(JUMP_IF_EQUAL, 1, 0, X32_SYSCALL_BIT),
        bpf(RETURN, 0, 0, libc::SECCOMP_RET_ALLOW),
        bpf(RETURN, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
    ])
}

/// Other architectures have no ABI sharing their architecture value.
#[cfg(not(target_arch = "x86_64"))]
fn abi_guard() -> Option<BpfProgram> {
    None
}

// Docker's JSON profile format, the subset the module documentation lists.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DockerProfile {
    default_action: DockerAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<DockerArchMap>>,
    #[serde(default)]
    syscalls: Option<Vec<DockerSyscall>>,
    #[serde(default)]
    flags: Option<Vec<String>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DockerArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DockerSyscall {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
    action: DockerAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<DockerArg>>,
    #[serde(default, rename = "comment")]
    _comment: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    includes: Option<DockerCondition>,
    #[serde(default)]
    excludes: Option<DockerCondition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DockerArg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: DockerOp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DockerCondition {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum DockerAction {
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    #[serde(rename = "SCMP_ACT_KILL", alias = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum DockerOp {
    #[serde(rename = "SCMP_CMP_NE")]
    Ne,
    #[serde(rename = "SCMP_CMP_LT")]
    Lt,
    #[serde(rename = "SCMP_CMP_LE")]
    Le,
    #[serde(rename = "SCMP_CMP_EQ")]
    Eq,
    #[serde(rename = "SCMP_CMP_GE")]
    Ge,
    #[serde(rename = "SCMP_CMP_GT")]
    Gt,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEq,
}

/// The largest errno a filter can return (`MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;

/// Turns an action and its `errnoRet` into seccompiler's; `field` is the
/// action's path, `errno_field` that of its errno.
fn action_of(
    action: DockerAction,
    errno: Option<u32>,
    field: &str,
    errno_field: &str,
) -> std::result::Result<SeccompAction, String> {
    if let Some(errno) = errno {
        if !matches!(action, DockerAction::Errno | DockerAction::Trace) {
            return Err(format!(
                "{errno_field}: only `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` take an errno"
            ));
        }
        if errno > MAX_ERRNO {
            return Err(format!(
                "{errno_field}: {errno} is not an errno (0 to {MAX_ERRNO})"
            ));
        }
    }
    let errno = errno.unwrap_or(libc::EPERM as u32);
    Ok(match action {
        DockerAction::Allow => SeccompAction::Allow,
        DockerAction::Errno => SeccompAction::Errno(errno),
        DockerAction::KillThread => SeccompAction::KillThread,
        DockerAction::KillProcess => SeccompAction::KillProcess,
        DockerAction::Trap => SeccompAction::Trap,
        DockerAction::Log => SeccompAction::Log,
        DockerAction::Trace => SeccompAction::Trace(errno),
        DockerAction::Notify => {
            return Err(format!(
                "{field}: `SCMP_ACT_NOTIFY` is not supported: it needs a listener process, \
                 which berth does not run"
            ));
        }
    })
}

/// Whether an action lets the call run.
fn allows(action: &SeccompAction) -> bool {
    matches!(action, SeccompAction::Allow | SeccompAction::Log)
}

/// This architecture's name in `includes.arches` and `excludes.arches`.
fn native_arch_name() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        other => other,
    }
}

/// `major.minor` of the running kernel.
fn kernel_version() -> Option<(u64, u64)> {
    // SAFETY: uname(2) fills a local struct.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut name) } != 0 {
        return None;
    }
    // SAFETY: the kernel NUL-terminates the release.
    let release = unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) };
    parse_version(release.to_str().ok()?)
}

/// `major.minor` at the start of a version (`6.1.0-18-amd64` → 6.1).
fn parse_version(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A `minKernel` value: exactly `major.minor`.
fn min_kernel(text: &str, field: &str) -> std::result::Result<(u64, u64), String> {
    text.split_once('.')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)))
        .filter(|version| *version != (0, 0))
        .ok_or_else(|| format!("{field}: `{text}` is not a kernel version `<major>.<minor>`"))
}

/// Whether an entry applies here, given its `includes` and `excludes`.
fn applies(entry: &DockerSyscall, field: &str) -> std::result::Result<bool, String> {
    let arch = native_arch_name();
    let kernel = kernel_version();
    let at_least =
        |version: &Option<String>, field: String| -> std::result::Result<Option<bool>, String> {
            let Some(text) = version else {
                return Ok(None);
            };
            let wanted = min_kernel(text, &field)?;
            Ok(Some(kernel.is_some_and(|running| running >= wanted)))
        };
    if let Some(includes) = &entry.includes {
        if includes.caps.as_ref().is_some_and(|caps| !caps.is_empty()) {
            return Ok(false);
        }
        if let Some(arches) = &includes.arches
            && !arches.is_empty()
            && !arches.iter().any(|a| a == arch)
        {
            return Ok(false);
        }
        if at_least(&includes.min_kernel, format!("{field}.includes.minKernel"))? == Some(false) {
            return Ok(false);
        }
    }
    if let Some(excludes) = &entry.excludes {
        if excludes
            .arches
            .as_ref()
            .is_some_and(|arches| arches.iter().any(|a| a == arch))
        {
            return Ok(false);
        }
        if at_least(&excludes.min_kernel, format!("{field}.excludes.minKernel"))? == Some(true) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The rules of an entry's args: one conjunction, or one rule per arg when
/// an index appears twice (as runc does).
fn rules_of(args: &[DockerArg], field: &str) -> std::result::Result<Vec<SeccompRule>, String> {
    if args.is_empty() {
        return Ok(Vec::new());
    }
    let mut conditions = Vec::with_capacity(args.len());
    let mut seen = [0u8; 6];
    for (index, arg) in args.iter().enumerate() {
        let field = format!("{field}.args[{index}]");
        if arg.index > 5 {
            return Err(format!(
                "{field}.index: {} is not an argument index (0 to 5)",
                arg.index
            ));
        }
        seen[arg.index as usize] += 1;
        let (op, value) = match arg.op {
            DockerOp::Ne => (SeccompCmpOp::Ne, arg.value),
            DockerOp::Lt => (SeccompCmpOp::Lt, arg.value),
            DockerOp::Le => (SeccompCmpOp::Le, arg.value),
            DockerOp::Eq => (SeccompCmpOp::Eq, arg.value),
            DockerOp::Ge => (SeccompCmpOp::Ge, arg.value),
            DockerOp::Gt => (SeccompCmpOp::Gt, arg.value),
            DockerOp::MaskedEq => (SeccompCmpOp::MaskedEq(arg.value), arg.value_two),
        };
        let condition = SeccompCondition::new(arg.index, SeccompCmpArgLen::Qword, op, value)
            .map_err(|err| format!("{field}: {err}"))?;
        conditions.push(condition);
    }
    let rule = |conditions: Vec<SeccompCondition>| {
        SeccompRule::new(conditions).map_err(|err| format!("{field}.args: {err}"))
    };
    if seen.iter().any(|&count| count > 1) {
        conditions
            .into_iter()
            .map(|condition| rule(vec![condition]))
            .collect()
    } else {
        Ok(vec![rule(conditions)?])
    }
}

/// Parses a Docker profile and resolves it to this architecture.
fn parse_docker_profile(text: &str) -> std::result::Result<Profile, String> {
    let deserializer = &mut serde_json::Deserializer::from_str(text);
    let profile: DockerProfile = serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        if path == "." {
            err.inner().to_string()
        } else {
            format!("{path}: {}", err.inner())
        }
    })?;
    if profile
        .flags
        .as_ref()
        .is_some_and(|flags| !flags.is_empty())
    {
        return Err("flags: filter flags are not supported".to_owned());
    }
    for (value, field) in [
        (&profile.listener_path, "listenerPath"),
        (&profile.listener_metadata, "listenerMetadata"),
    ] {
        if value.as_ref().is_some_and(|value| !value.is_empty()) {
            return Err(format!(
                "{field}: notification listeners are not supported (berth runs none)"
            ));
        }
    }
    for (index, name) in profile.architectures.iter().flatten().enumerate() {
        check_arch_name(name, &format!("architectures[{index}]"))?;
    }
    for (index, entry) in profile.arch_map.iter().flatten().enumerate() {
        check_arch_name(
            &entry.architecture,
            &format!("archMap[{index}].architecture"),
        )?;
        for (sub, name) in entry.sub_architectures.iter().flatten().enumerate() {
            check_arch_name(name, &format!("archMap[{index}].subArchitectures[{sub}]"))?;
        }
    }
    let default = action_of(
        profile.default_action,
        profile.default_errno_ret,
        "defaultAction",
        "defaultErrnoRet",
    )?;
    let mut rules = Vec::new();
    for (index, entry) in profile.syscalls.iter().flatten().enumerate() {
        let field = format!("syscalls[{index}]");
        let action = action_of(
            entry.action,
            entry.errno_ret,
            &format!("{field}.action"),
            &format!("{field}.errnoRet"),
        )?;
        let names: Vec<(String, &str)> = match (&entry.names, &entry.name) {
            (Some(names), None) if !names.is_empty() => names
                .iter()
                .enumerate()
                .map(|(at, name)| (format!("{field}.names[{at}]"), name.as_str()))
                .collect(),
            (None, Some(name)) => vec![(format!("{field}.name"), name.as_str())],
            (Some(_), Some(_)) => {
                return Err(format!("{field}: has both `name` and `names`; use `names`"));
            }
            _ => return Err(format!("{field}.names: names no system call")),
        };
        let when = rules_of(entry.args.as_deref().unwrap_or_default(), &field)?;
        if !applies(entry, &field)? {
            continue;
        }
        for (name_field, name) in names {
            match number(name) {
                Some(syscall) => rules.push(Rule {
                    syscall,
                    action: action.clone(),
                    when: when.clone(),
                }),
                None if allows(&default) && !allows(&action) => {
                    return Err(format!(
                        "{name_field}: `{name}` is not a system call on {}: its refusal cannot \
                         be compiled, and skipping it would leave it allowed",
                        std::env::consts::ARCH
                    ));
                }
                None => {}
            }
        }
    }
    Ok(Profile { default, rules })
}

fn check_arch_name(name: &str, field: &str) -> std::result::Result<(), String> {
    if name.starts_with("SCMP_ARCH_") && name.len() > "SCMP_ARCH_".len() {
        Ok(())
    } else {
        Err(format!(
            "{field}: `{name}` is not an architecture (`SCMP_ARCH_X86_64`, …)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled_default() -> Filter {
        compile(&default_profile()).unwrap()
    }

    fn problem(json: &str) -> String {
        match Filter::from_docker_json(json) {
            Err(problem) => problem,
            Ok(filter) => panic!("{json}: compiled to {filter:?}"),
        }
    }

    #[test]
    fn the_default_profile_names_calls_this_architecture_has() {
        for name in [
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "request_key",
            "userfaultfd",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "setns",
            "mount",
            "umount2",
            "pivot_root",
            "open_tree",
            "move_mount",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "mount_setattr",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
        ] {
            assert!(DEFAULT_REFUSED.contains(&name), "{name}");
            assert!(number(name).is_some(), "{name} has no number here");
        }
        let profile = default_profile();
        let conditional: Vec<i64> = profile
            .rules
            .iter()
            .filter(|rule| !rule.when.is_empty())
            .map(|rule| rule.syscall)
            .collect();
        for name in ["clone", "unshare", "personality", "socket"] {
            assert!(conditional.contains(&number(name).unwrap()), "{name}");
        }
        let clone3 = profile
            .rules
            .iter()
            .find(|rule| rule.syscall == number("clone3").unwrap())
            .unwrap();
        assert_eq!(clone3.action, SeccompAction::Errno(libc::ENOSYS as u32));
    }

    #[test]
    fn the_default_profile_compiles_to_an_eperm_and_an_enosys_program() {
        let filter = compiled_default();
        let guard = usize::from(cfg!(target_arch = "x86_64"));
        assert_eq!(filter.programs(), guard + 2);
        assert!(filter.programs.iter().all(|p| p.len() < 4096));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn on_x86_64_the_guard_comes_first() {
        let filter = compiled_default();
        assert_eq!(filter.programs[0], abi_guard().unwrap());
        assert_eq!(
            filter.programs[0].last().unwrap().k,
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn settings_are_strings() {
        let parse = |yaml: &str| serde_json::from_str::<Setting>(yaml);
        assert_eq!(parse("\"default\"").unwrap(), Setting::Default);
        assert_eq!(parse("\"unconfined\"").unwrap(), Setting::Unconfined);
        assert_eq!(
            parse("\"profiles/p.json\"").unwrap(),
            Setting::Profile("profiles/p.json".into())
        );
        assert!(parse("\"\"").is_err());
        assert!(parse("3").is_err());
        for setting in [
            Setting::Default,
            Setting::Unconfined,
            Setting::Profile("/p.json".into()),
        ] {
            let text = serde_json::to_string(&setting).unwrap();
            assert_eq!(parse(&text).unwrap(), setting);
        }
    }

    #[test]
    fn an_allow_list_profile_compiles_with_arguments_and_conditions() {
        let filter = Filter::from_docker_json(
            r#"{
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                             "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
                "syscalls": [
                    {"names": ["read", "write", "exit_group", "chown32", "no_such_call"],
                     "action": "SCMP_ACT_ALLOW", "comment": "the basics"},
                    {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 12, "op": "SCMP_CMP_LT"}]},
                    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]},
                    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                              {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                    {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                     "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                    {"name": "ptrace", "action": "SCMP_ACT_ALLOW",
                     "includes": {"minKernel": "4.8"}},
                    {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS",
                     "excludes": {"caps": ["CAP_KILL"]}}
                ]
            }"#,
        )
        .unwrap();
        // The default's program, one for ENOSYS, one for kill (and the guard).
        let guard = usize::from(cfg!(target_arch = "x86_64"));
        assert_eq!(filter.programs(), guard + 3);
    }

    /// Runs `program` on a call (`struct seccomp_data` as 32-bit words) as
    /// the kernel's interpreter does, for the instructions these programs
    /// use.
    fn run(program: &[seccompiler::sock_filter], data: &[u32; 16]) -> u32 {
        const AND: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
        const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
        const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let op = &program[pc];
            pc += 1;
            let jump = |hit: bool| usize::from(if hit { op.jt } else { op.jf });
            match op.code {
                LOAD_WORD => a = data[op.k as usize / 4],
                AND => a &= op.k,
                JUMP => pc += op.k as usize,
                JUMP_IF_EQUAL => pc += jump(a == op.k),
                JUMP_IF_AT_LEAST => pc += jump(a >= op.k),
                JGT => pc += jump(a > op.k),
                JSET => pc += jump(a & op.k != 0),
                RETURN => return op.k,
                code => panic!("instruction {code:#x} at {}", pc - 1),
            }
        }
    }

    /// Every call's answer, with and without the dispatch head: numbers
    /// around and past the table's, x32 and negative ones, other
    /// architectures, and for the numbers with rules, first arguments
    /// that hit and miss each condition.
    fn assert_head_keeps_answers(rules: RuleMap, mismatch: SeccompAction, matched: SeccompAction) {
        let arch = target_arch().unwrap();
        let ruled: Vec<u32> = rules.keys().map(|&n| n as u32).collect();
        // What seccompiler's chain of every rule answers, alone.
        let reference = chain_of(rules.clone(), mismatch.clone(), matched.clone(), arch).unwrap();
        let (head, chain) = program_parts(rules, mismatch, matched, arch).unwrap();
        let whole: Vec<_> = head.iter().chain(&chain).cloned().collect();
        let mut first_args: Vec<u64> = (0..64).collect();
        first_args.extend((0..64).map(|bit| 1u64 << bit));
        first_args.extend(CLONE_NAMESPACE_FLAGS);
        first_args.extend(HARMLESS_PERSONALITIES);
        first_args.extend([u64::from(u32::MAX), u64::MAX, 0x7e02_0000]);
        let mut numbers: Vec<u32> = (0..1100).collect();
        numbers.extend((0..600).map(|n| n | 0x4000_0000));
        numbers.extend([u32::MAX, 0x8000_0000, 0x7fff_ffff]);
        let mut checked = 0;
        for arch_value in [audit_arch(arch), 0x4000_0003, 0] {
            for &nr in &numbers {
                let args: &[u64] = if ruled.contains(&nr) {
                    &first_args
                } else {
                    &[0]
                };
                for &arg in args {
                    let mut data = [0u32; 16];
                    data[0] = nr;
                    data[1] = arch_value;
                    data[4] = arg as u32;
                    data[5] = (arg >> 32) as u32;
                    assert_eq!(
                        run(&whole, &data),
                        run(&reference, &data),
                        "call {nr:#x} of arch {arch_value:#x}, first argument {arg:#x}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 5000);
    }

    #[test]
    fn the_dispatch_head_keeps_every_answer() {
        let profiles = [
            default_profile(),
            parse_docker_profile(
                r#"{"defaultAction": "SCMP_ACT_ERRNO",
                    "syscalls": [
                        {"names": ["read", "write", "exit_group", "openat", "close"],
                         "action": "SCMP_ACT_ALLOW"},
                        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": 0, "value": 12, "op": "SCMP_CMP_LT"}]},
                        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
                    ]}"#,
            )
            .unwrap(),
        ];
        for profile in &profiles {
            for plan in plans(profile) {
                assert_head_keeps_answers(plan.rules, plan.mismatch, plan.matched);
            }
        }
        // A table large enough that the search needs its long jumps: every
        // third number, some with a condition on the first argument.
        let mut rules = RuleMap::new();
        for nr in (0..1000).step_by(3) {
            let when = (nr % 2 == 0)
                .then(|| vec![rule_of(vec![low_word(0, SeccompCmpOp::Eq, nr as u64)])]);
            rules.insert(nr, when);
        }
        let (head, _) = program_parts(
            rules.clone(),
            SeccompAction::Allow,
            SeccompAction::Errno(1),
            target_arch().unwrap(),
        )
        .unwrap();
        assert!(head.len() > 600, "{} instructions", head.len());
        assert_head_keeps_answers(rules, SeccompAction::Allow, SeccompAction::Errno(1));
    }

    #[test]
    fn entries_are_resolved_to_this_machine() {
        let profile = parse_docker_profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                 "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO",
                 "includes": {"arches": ["s390x"]}},
                {"names": ["chdir"], "action": "SCMP_ACT_ERRNO",
                 "excludes": {"minKernel": "3.0"}},
                {"names": ["fchdir"], "action": "SCMP_ACT_ERRNO",
                 "includes": {"minKernel": "99.0"}},
                {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO",
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["uname"], "action": "SCMP_ACT_ALLOW"}
            ]}"#,
        )
        .unwrap();
        let kept: Vec<i64> = profile.rules.iter().map(|rule| rule.syscall).collect();
        // Only getcwd: the rest need capabilities, another architecture, an
        // older or a newer kernel; uname is allowed like everything else
        // (dropped when compiling).
        assert_eq!(kept, [number("getcwd").unwrap(), number("uname").unwrap()]);
        assert_eq!(profile.rules[0].action, SeccompAction::Errno(1));
    }

    #[test]
    fn repeated_argument_indexes_make_separate_rules() {
        let args: Vec<DockerArg> = serde_json::from_str(
            r#"[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]"#,
        )
        .unwrap();
        assert_eq!(rules_of(&args, "s").unwrap().len(), 1);
        let args: Vec<DockerArg> = serde_json::from_str(
            r#"[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 3, "op": "SCMP_CMP_EQ"}]"#,
        )
        .unwrap();
        assert_eq!(rules_of(&args, "s").unwrap().len(), 3);
    }

    #[test]
    fn unsupported_profiles_are_refused_naming_the_field() {
        let cases = [
            ("3", "invalid type"),
            ("{\"syscalls\": []}", "missing field `defaultAction`"),
            (
                r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#,
                "defaultAction: `SCMP_ACT_NOTIFY` is not supported",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}"#,
                "defaultErrnoRet: only",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]}"#,
                "flags: ",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/l.sock"}"#,
                "listenerPath: ",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultActon": "x"}"#,
                "defaultActon: unknown field",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_DENY"}"#,
                "defaultAction: unknown variant",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]}"#,
                "architectures[0]: `x86_64` is not an architecture",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                    {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
                "syscalls[1].action: `SCMP_ACT_NOTIFY`",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}"#,
                "syscalls[0].errnoRet: only",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}"#,
                "syscalls[0].errnoRet: 70000",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": [], "action": "SCMP_ACT_ERRNO"}]}"#,
                "syscalls[0].names: names no system call",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"name": "mkdir", "names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}]}"#,
                "syscalls[0]: has both",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["mkdir", "mkdri"], "action": "SCMP_ACT_ERRNO"}]}"#,
                "syscalls[0].names[1]: `mkdri` is not a system call",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "syscalls[0].args[0].index: 6",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}"#,
                "syscalls[0].args[0].op: unknown variant",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"],
                    "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "five"}}]}"#,
                "syscalls[0].includes.minKernel: `five`",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"],
                    "action": "SCMP_ACT_ERRNO", "includes": {"capabilities": []}}]}"#,
                "syscalls[0].includes.capabilities: unknown field",
            ),
        ];
        for (json, needle) in cases {
            let message = problem(json);
            assert!(message.contains(needle), "{json}\n=> {message}");
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }

    #[test]
    fn unknown_names_are_skipped_where_skipping_refuses_more() {
        // An allow list (or a refusal under a refusing default) may name
        // calls of other architectures.
        Filter::from_docker_json(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["read", "_llseek"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone3", "mkdri"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#,
        )
        .unwrap();
        Filter::from_docker_json(
            r#"{"defaultAction": "SCMP_ACT_LOG", "syscalls": [
                {"names": ["_llseek"], "action": "SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
    }

    #[test]
    fn a_chain_too_long_for_its_head_goes_in_alone() {
        let arch = target_arch().unwrap();
        let table = |count: i64| {
            (0..count)
                .map(|nr| {
                    let when = rule_of(vec![
                        SeccompCondition::new(
                            5,
                            SeccompCmpArgLen::Qword,
                            SeccompCmpOp::Eq,
                            0xdead_beef,
                        )
                        .unwrap(),
                    ]);
                    (nr, Some(vec![when]))
                })
                .collect::<RuleMap>()
        };
        for (count, headed) in [(300, true), (349, false)] {
            let (head, chain) = program_parts(
                table(count),
                SeccompAction::Allow,
                SeccompAction::Errno(77),
                arch,
            )
            .unwrap();
            let program = program(
                table(count),
                SeccompAction::Allow,
                SeccompAction::Errno(77),
                arch,
            )
            .unwrap();
            let expected = if headed {
                head.len() + chain.len()
            } else {
                chain.len()
            };
            assert_eq!(program.len(), expected, "{count} calls");
            assert!(program.len() <= MAX_PROGRAM);
        }
    }

    #[test]
    fn a_profile_the_kernel_would_not_take_is_refused_when_compiled() {
        // Each errno is a program of its own.
        let entries: Vec<String> = (1..=3000)
            .map(|errno| {
                format!(
                    r#"{{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": {errno}}}"#
                )
            })
            .collect();
        let message = problem(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{}]}}"#,
            entries.join(",")
        ));
        assert!(message.contains("more than the 32768"), "{message}");
    }

    #[test]
    fn relative_profile_paths_start_at_the_spec_file_or_the_current_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("profiles")).unwrap();
        std::fs::write(
            dir.path().join("profiles/p.json"),
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("env.yaml"), "{type: sandbox, name: t}").unwrap();
        let from_file = EnvironmentSpec::from_path(dir.path().join("env.yaml")).unwrap();
        let relative = Setting::Profile("profiles/p.json".into());
        let filter = relative
            .load(&from_file, "sandbox.seccomp")
            .unwrap()
            .unwrap();
        assert_eq!(
            filter.programs(),
            usize::from(cfg!(target_arch = "x86_64")) + 1
        );
        assert_eq!(
            Setting::Profile(dir.path().join("profiles/p.json"))
                .load(&from_file, "sandbox.seccomp")
                .unwrap(),
            Some(filter)
        );

        // Without a spec file: from the current directory.
        let inline = EnvironmentSpec::new("sandbox", "t");
        match relative.load(&inline, "sandbox.seccomp") {
            Err(Error::Spec { field, message, .. }) => {
                assert_eq!(field, "sandbox.seccomp");
                let expected = std::env::current_dir().unwrap().join("profiles/p.json");
                assert!(
                    message.starts_with(&format!(
                        "cannot read seccomp profile `{}`: ",
                        expected.display()
                    )),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Setting::Unconfined
                .load(&inline, "sandbox.seccomp")
                .unwrap(),
            None
        );
        assert!(Setting::Default.load(&inline, "f").unwrap().is_some());
    }

    #[test]
    fn profiles_that_are_not_small_regular_files_are_refused() {
        let spec = EnvironmentSpec::new("sandbox", "t");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; MAX_PROFILE_BYTES as usize + 1]).unwrap();
        for (path, needle) in [
            (big, "larger than 1048576 bytes"),
            (dir.path().to_path_buf(), "not a regular file"),
            (dir.path().join("missing.json"), "No such file"),
        ] {
            let err = Setting::Profile(path.clone()).load(&spec, "f").unwrap_err();
            assert!(
                err.to_string().contains(needle)
                    && err.to_string().contains(&*path.to_string_lossy()),
                "{err}"
            );
        }
    }

    #[test]
    fn status_lines_are_read() {
        let status = "Name:\tcat\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t3\n";
        assert_eq!(
            Status::parse(status),
            Some(Status {
                mode: 2,
                filters: Some(3)
            })
        );
        assert_eq!(
            Status::parse("Seccomp:\t0\n"),
            Some(Status {
                mode: 0,
                filters: None
            })
        );
        assert_eq!(Status::parse("Name:\tcat\n"), None);
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_version("6.18.44-fc-v1300"), Some((6, 18)));
        assert_eq!(parse_version("5.10"), Some((5, 10)));
        assert_eq!(parse_version("x"), None);
        assert_eq!(min_kernel("4.8", "f"), Ok((4, 8)));
        assert!(min_kernel("4", "f").is_err());
        assert!(min_kernel("0.0", "f").is_err());
        assert!(kernel_version().is_some());
    }

    #[test]
    fn this_kernel_supports_filters() {
        kernel_support().unwrap();
    }

    /// Forks a child that installs `filter` and exits with what `body`
    /// returns (only system calls: the test binary is multi-threaded);
    /// returns its wait status.
    fn in_child(filter: &Filter, body: fn() -> i32) -> i32 {
        // SAFETY: the child makes only async-signal-safe calls, then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let code = match filter.install() {
                Ok(()) => body(),
                Err(_) => 200,
            };
            // SAFETY: _exit(2) ends the child without running anything.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waitpid(2) on our own child with a local out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    }

    /// The errno of a failed raw system call, 0 when it succeeded.
    fn errno_of(ret: libc::c_long) -> i32 {
        if ret >= 0 {
            0
        } else {
            // SAFETY: reading this thread's errno.
            unsafe { *libc::__errno_location() }
        }
    }

    fn exit_code(status: i32) -> i32 {
        assert!(libc::WIFEXITED(status), "wait status {status:#x}");
        libc::WEXITSTATUS(status)
    }

    #[test]
    fn an_installed_default_filter_refuses_with_eperm_and_allows_the_rest() {
        let filter = compiled_default();
        let io_uring = in_child(&filter, || {
            let mut params = [0u8; 120];
            // SAFETY: io_uring_setup(2) with a local buffer of the size of
            // its parameter struct.
            errno_of(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) })
        });
        assert_eq!(exit_code(io_uring), libc::EPERM);
        // This test runs as root, so without the filter these would work.
        let user_namespace = in_child(&filter, || {
            // SAFETY: unshare(2) with a flag; it touches no memory.
            errno_of(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) })
        });
        assert_eq!(exit_code(user_namespace), libc::EPERM);
        let keyring = in_child(&filter, || {
            // SAFETY: keyctl(2) with integer arguments; it touches no memory.
            errno_of(unsafe {
                libc::syscall(libc::SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0)
            })
        });
        assert_eq!(exit_code(keyring), libc::EPERM);
        let clone3 = in_child(&filter, || {
            // SAFETY: clone3(2) with a null pointer and size 0, which the
            // kernel refuses without reading.
            errno_of(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0) })
        });
        assert_eq!(exit_code(clone3), libc::ENOSYS);
        let personality = in_child(&filter, || {
            // SAFETY: personality(2) with integer arguments, in a child.
            let query = errno_of(unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffff_u32) });
            let no_aslr = errno_of(unsafe { libc::syscall(libc::SYS_personality, 0x0040000) });
            query * 1000 + no_aslr
        });
        assert_eq!(exit_code(personality), libc::EPERM);
        let allowed = in_child(&filter, || {
            // SAFETY: unshare(2) with a flag, in a child that exits right
            // after; it touches no memory.
            let unshare_files =
                errno_of(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_FILES) });
            // SAFETY: getpid(2) takes no arguments.
            let pid = errno_of(unsafe { libc::syscall(libc::SYS_getpid) });
            // SAFETY: socket(2) with integer arguments; the child's exit
            // closes it.
            let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            unshare_files + pid + if socket >= 0 { 0 } else { 100 }
        });
        assert_eq!(exit_code(allowed), 0);
        let alg = in_child(&filter, || {
            // SAFETY: socket(2) with integer arguments.
            errno_of(unsafe { libc::syscall(libc::SYS_socket, 38, libc::SOCK_SEQPACKET, 0) })
        });
        assert_eq!(exit_code(alg), libc::EPERM);
    }

    #[test]
    fn a_profile_file_filter_applies_its_own_errno() {
        let filter = Filter::from_docker_json(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let status = in_child(&filter, || {
            // SAFETY: getppid(2) takes no arguments; mkdir(2) gets a
            // NUL-terminated literal.
            let getppid = errno_of(unsafe { libc::syscall(libc::SYS_getppid) });
            let mkdir =
                errno_of(unsafe { libc::mkdir(c"/nonexistent-berth/x".as_ptr(), 0o755) }.into());
            getppid + mkdir
        });
        assert_eq!(exit_code(status), 42 + libc::EPERM);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn calls_through_other_abis_kill_the_process() {
        let filter = compiled_default();
        // getpid under the x32 ABI: the native number with the x32 bit.
        let x32 = in_child(&filter, || {
            // SAFETY: getpid through the x32 ABI takes no arguments.
            unsafe { libc::syscall(libc::SYS_getpid | X32_SYSCALL_BIT as libc::c_long) };
            0
        });
        assert!(libc::WIFSIGNALED(x32), "wait status {x32:#x}");
        assert_eq!(libc::WTERMSIG(x32), libc::SIGSYS);
        // getpid (20) through the 32-bit entry point.
        let i386 = in_child(&filter, || {
            let ret: i64;
            // SAFETY: int 0x80 with eax = getpid touches no memory.
            unsafe { std::arch::asm!("int 0x80", inlateout("rax") 20_i64 => ret) };
            i32::from(ret < 0)
        });
        assert!(libc::WIFSIGNALED(i386), "wait status {i386:#x}");
        assert_eq!(libc::WTERMSIG(i386), libc::SIGSYS);
        // Without the guard, seccompiler's programs let the x32 call
        // through (the kernel answers it or says ENOSYS): the guard is what
        // refuses it.
        let unguarded = Filter {
            programs: filter.programs[1..].to_vec(),
        };
        let through = in_child(&unguarded, || {
            // SAFETY: getpid through the x32 ABI takes no arguments.
            unsafe { libc::syscall(libc::SYS_getpid | X32_SYSCALL_BIT as libc::c_long) };
            0
        });
        assert_eq!(exit_code(through), 0);
    }
}
