//! The sandbox of one runtime, prepared once at spawn in the parent: every
//! path as a `CString`, every mount in order, so that the code between
//! fork and exec ([`crate::child`]) only makes system calls.
//!
//! The root is a tmpfs assembled at [`STAGING`] inside the new mount
//! namespace (where it hides the host's directory of that name from nobody
//! but the sandbox), then made the root with `pivot_root`:
//!
//! ```text
//! /                tmpfs, read-only once built
//! ├── usr, etc, …  the host's system directories, read-only binds
//! │                (a symlink such as a merged /bin stays a symlink)
//! ├── workspace    the session's workspace, read-write bind
//! ├── static/…     assets, read-only binds at their save paths
//! ├── tmp          private tmpfs
//! ├── proc         a fresh procfs of the command's pid namespace
//! └── dev          tmpfs with null, zero, full, random, urandom, tty,
//!                  the fd symlinks and a private shm
//! ```
//!
//! In `/proc`, the entries that configure the host's kernel (`sys`, `irq`,
//! `sysrq-trigger`, …) are read-only and those describing the host's keys,
//! timers and pages are covered with `/dev/null`: a command run for root is
//! the host's root as far as file permissions go.

use std::ffi::CString;
use std::hash::{Hash, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::AtomicI32;

use libc::{c_int, c_ulong};
use runtime_local::seccomp::{Filter, Setting};
use session_core::runtime::SpawnContext;
use session_core::spec::EnvironmentSpec;
use session_core::{Error, Result};

use crate::TYPE_NAME;
use crate::child::{ATTR_NO_DEVICES, ATTR_NO_EXEC, ATTR_NO_SUID, ATTR_READ_ONLY, Failure, Stage};
use crate::config::{NamespaceConfig, Network};
use crate::quotas::{self, QuotaRlimit};

/// The host directory the new root is assembled on, inside the sandbox's
/// own mount namespace. Sources are captured before it is covered.
const STAGING: &str = "/tmp";

/// Where the workspace appears, and the working directory of commands.
pub const WORKDIR: &str = "/workspace";

/// Where assets appear: `/static/<save_path>`.
pub const STATIC_DIR: &str = "/static";

/// System directories shown when the spec names none; those missing on
/// this host are skipped.
pub const DEFAULT_SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// The size of the sandbox's `/dev` tmpfs, which holds only mount points
/// and symlinks.
const DEV_SIZE: u64 = 64 << 10;

/// Device nodes bound from the host's `/dev` when it has them.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Entries of the fresh `/proc` made read-only: with the caller's uid
/// mapped to itself, a command run for root is the host's root as far as
/// file permissions go, and these hold the host kernel's settings
/// (`/proc/sys/kernel/core_pattern` would run a program as the host's
/// root).
const PROC_READ_ONLY: &[&str] = &[
    "sys",
    "sysrq-trigger",
    "irq",
    "bus",
    "fs",
    "acpi",
    "scsi",
    "driver",
];

/// Entries of the fresh `/proc` covered with `/dev/null`: what they tell
/// about the host (keys, timers, physical pages) is none of a command's
/// business.
const PROC_MASKED: &[&str] = &[
    "kcore",
    "keys",
    "key-users",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
];

/// Paths the sandbox itself provides; a system directory or extra mount
/// there would hide them.
pub const RESERVED: &[&str] = &["/workspace", "/proc", "/tmp", "/dev", "/static"];

/// A host path captured with `open_tree` and attached in the new root.
#[derive(Debug)]
pub(crate) struct Source {
    /// The host path.
    pub(crate) path: CString,
    /// `MOUNT_ATTR_*` flags set on the whole tree.
    pub(crate) attributes: u64,
    /// Where it appears in the sandbox (for messages).
    target: PathBuf,
}

/// One step of building the root, run in order after the staging tmpfs
/// is mounted. Paths are host paths below the staging directory.
#[derive(Debug, Hash)]
pub(crate) enum Step {
    /// `mkdir`, succeeding when it exists.
    Dir { path: CString },
    /// An empty file as the mount point of a file.
    File { path: CString },
    /// A symlink.
    Symlink { target: CString, path: CString },
    /// A tmpfs.
    Tmpfs {
        path: CString,
        options: CString,
        flags: c_ulong,
    },
    /// Attaches source number `source`.
    Attach { source: usize, path: CString },
    /// A fresh procfs (of the pid namespace of the process mounting it).
    Proc { path: CString },
    /// Makes a mount read-only, keeping `flags`.
    ReadOnly { path: CString, flags: c_ulong },
    /// Binds a path onto itself, read-only.
    ReadOnlyBind { path: CString },
    /// Covers a file with a bind of `with`.
    Mask { path: CString, with: CString },
    /// Writes the command's pid offset to this `ns_last_pid`; a kernel
    /// without it is not an error.
    LastPid { path: CString },
    /// Writes a limit of the new user namespace (a file of
    /// `/proc/sys/user` in the fresh procfs).
    UserLimit { path: CString, value: CString },
}

/// Everything the child needs, prepared in the parent.
#[derive(Debug)]
pub(crate) struct Plan {
    /// `CLONE_NEW*` flags for `unshare`.
    pub(crate) namespaces: c_int,
    /// The content of `uid_map`: the caller's uid mapped to itself.
    pub(crate) uid_map: Vec<u8>,
    /// The content of `gid_map`.
    pub(crate) gid_map: Vec<u8>,
    /// The host name.
    pub(crate) hostname: Vec<u8>,
    /// Whether to bring up `lo` (a network namespace of its own).
    pub(crate) loopback: bool,
    /// Rlimits the supervisor lowers before it unshares: the sandbox's
    /// share of the caller's per-user quotas ([`crate::quotas`]).
    pub(crate) quota_rlimits: Vec<QuotaRlimit>,
    /// `RLIMIT_NPROC` in the new user namespace.
    pub(crate) max_processes: Option<u64>,
    /// The staging directory.
    pub(crate) staging: CString,
    /// Host paths to capture, in order.
    pub(crate) sources: Vec<Source>,
    /// The captured trees' fds (written in the child's copy only).
    pub(crate) trees: Box<[AtomicI32]>,
    /// How to build the root.
    pub(crate) steps: Vec<Step>,
    /// The working directory, inside.
    pub(crate) workdir: CString,
    /// The seccomp filter the command installs last; `None` when
    /// unconfined.
    pub(crate) seccomp: Option<Filter>,
    /// What each step does, for messages.
    step_descriptions: Vec<String>,
    /// Whether the shell that runs commands is, in the sandbox, the host's
    /// own file at the same path ([`shows_host_file`]).
    pub(crate) host_shell: bool,
}

/// What appears at one path of the sandbox.
enum Kind {
    Bind {
        source: PathBuf,
        attributes: u64,
        is_dir: bool,
    },
    Symlink(PathBuf),
    Tmpfs {
        options: String,
        flags: c_ulong,
    },
    Proc,
}

struct Entry {
    target: PathBuf,
    kind: Kind,
}

/// A path inside the sandbox: absolute, without `.`, `..` or a trailing
/// slash, and not the root itself.
pub(crate) fn check_sandbox_path(path: &Path) -> std::result::Result<PathBuf, &'static str> {
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err("must be an absolute path");
    }
    let mut clean = PathBuf::from("/");
    for component in components {
        match component {
            Component::Normal(name) => clean.push(name),
            _ => return Err("must not contain `.` or `..`"),
        }
    }
    if clean == Path::new("/") {
        return Err("must not be `/`");
    }
    Ok(clean)
}

/// Whether `path` is one of the reserved paths or below one.
pub(crate) fn is_reserved(path: &Path) -> Option<&'static str> {
    RESERVED
        .iter()
        .copied()
        .find(|reserved| path.starts_with(reserved))
}

fn c_string(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Backend {
        backend: TYPE_NAME.into(),
        message: format!("path `{}` contains a NUL byte", path.display()),
    })
}

fn staged(path: &Path) -> Result<CString> {
    let mut bytes = STAGING.as_bytes().to_vec();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    CString::new(bytes).map_err(|_| Error::Backend {
        backend: TYPE_NAME.into(),
        message: format!("path `{}` contains a NUL byte", path.display()),
    })
}

impl Plan {
    /// Plans the sandbox of a runtime. The config was validated; host paths
    /// are not checked here beyond telling directories, files and symlinks
    /// apart: the kernel judges them when the first command starts (the
    /// spawn's probe), and its answer names the path.
    ///
    /// Fails with [`Error::Backend`] when an extra mount's target is not
    /// allowed, or a path holds a NUL byte; with [`Error::Spec`] naming
    /// `namespace.seccomp` when the seccomp filter cannot be compiled.
    pub(crate) fn build(
        config: &NamespaceConfig,
        spec: &EnvironmentSpec,
        ctx: &SpawnContext,
    ) -> Result<Plan> {
        let entries = entries(config, spec, ctx)?;
        let host_shell = shows_host_file(&entries, &config.shell);
        let seccomp = config.seccomp_filter(spec)?;
        let quotas = quotas::plan(config.seccomp == Setting::Default);
        let mut sources = Vec::new();
        let mut steps = Vec::new();
        let mut step_descriptions = Vec::new();
        let mut made: Vec<PathBuf> = Vec::new();
        let mut push = |step: Step, description: String| {
            steps.push(step);
            step_descriptions.push(description);
        };
        for entry in &entries {
            let target = &entry.target;
            // Parents first (skipping those already made or mounted).
            let ancestors: Vec<&Path> = target
                .ancestors()
                .skip(1)
                .filter(|a| *a != Path::new("/"))
                .collect();
            for ancestor in ancestors.into_iter().rev() {
                if !made.iter().any(|m| m == ancestor) {
                    push(
                        Step::Dir {
                            path: staged(ancestor)?,
                        },
                        format!("creating directory `{}`", ancestor.display()),
                    );
                    made.push(ancestor.to_path_buf());
                }
            }
            let path = staged(target)?;
            match &entry.kind {
                Kind::Bind {
                    source,
                    attributes,
                    is_dir,
                } => {
                    if *is_dir {
                        push(
                            Step::Dir { path: path.clone() },
                            format!("creating directory `{}`", target.display()),
                        );
                        made.push(target.clone());
                    } else {
                        push(
                            Step::File { path: path.clone() },
                            format!("creating mount point `{}`", target.display()),
                        );
                    }
                    let index = sources.len();
                    sources.push(Source {
                        path: c_string(source)?,
                        attributes: *attributes,
                        target: target.clone(),
                    });
                    push(
                        Step::Attach {
                            source: index,
                            path,
                        },
                        format!(
                            "mounting host `{}` at `{}`",
                            source.display(),
                            target.display()
                        ),
                    );
                }
                Kind::Symlink(link) => push(
                    Step::Symlink {
                        target: c_string(link)?,
                        path,
                    },
                    format!(
                        "creating symlink `{}` -> `{}`",
                        target.display(),
                        link.display()
                    ),
                ),
                Kind::Tmpfs { options, flags } => {
                    push(
                        Step::Dir { path: path.clone() },
                        format!("creating directory `{}`", target.display()),
                    );
                    made.push(target.clone());
                    push(
                        Step::Tmpfs {
                            path,
                            options: CString::new(options.as_str())
                                .expect("tmpfs options have no NUL"),
                            flags: *flags,
                        },
                        format!("mounting a tmpfs at `{}`", target.display()),
                    );
                }
                Kind::Proc => {
                    push(
                        Step::Dir { path: path.clone() },
                        format!("creating directory `{}`", target.display()),
                    );
                    made.push(target.clone());
                    push(
                        Step::Proc { path },
                        format!("mounting a fresh procfs at `{}`", target.display()),
                    );
                    // Before /proc/sys turns read-only below.
                    push(
                        Step::LastPid {
                            path: staged(&target.join("sys/kernel/ns_last_pid"))?,
                        },
                        "setting where the command's pids start".to_owned(),
                    );
                    for limit in &quotas.user_limits {
                        push(
                            Step::UserLimit {
                                path: staged(&target.join("sys/user").join(limit.name))?,
                                value: limit.value.clone(),
                            },
                            format!(
                                "limiting `user.{}` to {} in the sandbox's user namespace",
                                limit.name,
                                limit.value.to_string_lossy()
                            ),
                        );
                    }
                }
            }
        }
        // The host's procfs has the entries the fresh one will have.
        for name in PROC_READ_ONLY {
            let inside = Path::new("/proc").join(name);
            if inside.exists() {
                push(
                    Step::ReadOnlyBind {
                        path: staged(&inside)?,
                    },
                    format!("making `{}` read-only", inside.display()),
                );
            }
        }
        for name in PROC_MASKED {
            let inside = Path::new("/proc").join(name);
            if inside.exists() {
                push(
                    Step::Mask {
                        path: staged(&inside)?,
                        with: staged(Path::new("/dev/null"))?,
                    },
                    format!("masking `{}`", inside.display()),
                );
            }
        }
        push(
            Step::ReadOnly {
                path: staged(Path::new("/dev"))?,
                flags: libc::MS_NOSUID | libc::MS_NOEXEC,
            },
            "making `/dev` read-only".to_owned(),
        );

        let mut namespaces = libc::CLONE_NEWUSER
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS;
        if config.network == Network::None {
            namespaces |= libc::CLONE_NEWNET;
        }
        // SAFETY: geteuid(2) and getegid(2) cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let trees = (0..sources.len()).map(|_| AtomicI32::new(-1)).collect();
        Ok(Plan {
            namespaces,
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
            hostname: config.hostname.as_bytes().to_vec(),
            loopback: config.network == Network::None,
            quota_rlimits: quotas.rlimits,
            max_processes: quotas.max_processes,
            staging: CString::new(STAGING).expect("static path"),
            sources,
            trees,
            steps,
            workdir: CString::new(WORKDIR).expect("static path"),
            seccomp,
            step_descriptions,
            host_shell,
        })
    }

    /// What decides whether this sandbox can be built, but for where its
    /// sources are on the host (a session's workspace and assets differ
    /// from another's), hashed with the shell that runs commands: two
    /// plans of one shape are built by the same steps.
    pub(crate) fn shape(&self, shell: &Path) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (
            self.namespaces,
            &self.uid_map,
            &self.gid_map,
            &self.hostname,
        )
            .hash(&mut hasher);
        (self.loopback, &self.quota_rlimits, self.max_processes).hash(&mut hasher);
        for source in &self.sources {
            (source.attributes, &source.target).hash(&mut hasher);
        }
        (
            &self.staging,
            &self.steps,
            &self.workdir,
            &self.seccomp,
            shell,
        )
            .hash(&mut hasher);
        hasher.finish()
    }

    /// Whether every source's host path can be reached by this process
    /// (opened as a path, symlinks followed, as the child's `open_tree`
    /// does): the check of a spawn that skips the probe.
    pub(crate) fn sources_reachable(&self) -> bool {
        self.sources.iter().all(|source| {
            // SAFETY: open(2) of a NUL-terminated path; the descriptor is
            // closed at once.
            let fd = unsafe { libc::open(source.path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            if fd < 0 {
                return false;
            }
            // SAFETY: closing the descriptor just opened.
            unsafe { libc::close(fd) };
            true
        })
    }

    /// Lowers the limit of the sandbox's processes to `limit` (what
    /// `limits.pids` falls back to) where that is lower than its share.
    pub(crate) fn limit_processes(&mut self, limit: Option<u64>) {
        self.max_processes = match (self.max_processes, limit) {
            (Some(share), Some(limit)) => Some(share.min(limit)),
            (share, limit) => share.or(limit),
        };
    }

    /// Says what failed, for an error message.
    pub(crate) fn describe(&self, failure: Failure) -> String {
        let index = failure.index as usize;
        let source = |verb: &str| {
            self.sources.get(index).map_or_else(
                || format!("{verb} source {index}"),
                |s| {
                    format!(
                        "{verb} host `{}` for `{}`",
                        s.path.to_string_lossy(),
                        s.target.display()
                    )
                },
            )
        };
        let what = match failure.stage {
            Stage::Unshare => {
                "entering new user, mount, pid, network, ipc and uts namespaces (unshare)"
                    .to_owned()
            }
            Stage::Setgroups => "writing /proc/self/setgroups".to_owned(),
            Stage::UidMap => format!(
                "mapping uid {} in the user namespace",
                String::from_utf8_lossy(&self.uid_map)
                    .split(' ')
                    .next()
                    .unwrap_or("?")
            ),
            Stage::GidMap => format!(
                "mapping gid {} in the user namespace",
                String::from_utf8_lossy(&self.gid_map)
                    .split(' ')
                    .next()
                    .unwrap_or("?")
            ),
            Stage::Hostname => "setting the host name".to_owned(),
            Stage::Loopback => "bringing up the loopback interface".to_owned(),
            Stage::ProcessLimit => format!(
                "setting the process limit (RLIMIT_NPROC) to {}",
                self.max_processes.unwrap_or(0)
            ),
            Stage::UserQuota => self.quota_rlimits.get(index).map_or_else(
                || format!("lowering rlimit {index}"),
                |rlimit| {
                    format!(
                        "lowering {} to {}, the sandbox's share of the caller's",
                        rlimit.name, rlimit.value
                    )
                },
            ),
            Stage::Pipes => "creating the supervisor's pipes".to_owned(),
            Stage::ForkInit => "forking the pid namespace's init".to_owned(),
            Stage::ParentDeath => "arming the init's parent-death signal".to_owned(),
            Stage::MakePrivate => "making the mount namespace private".to_owned(),
            Stage::OpenTree => source("capturing"),
            Stage::SetAttributes => source("restricting the mount of"),
            Stage::Staging => format!("mounting the root's tmpfs on `{STAGING}`"),
            Stage::Step => self
                .step_descriptions
                .get(index)
                .cloned()
                .unwrap_or_else(|| format!("step {index}")),
            Stage::PivotRoot => "switching to the new root (pivot_root)".to_owned(),
            Stage::DetachOldRoot => "detaching the host's root".to_owned(),
            Stage::RemountRoot => "making the new root read-only".to_owned(),
            Stage::Workdir => format!("entering `{WORKDIR}`"),
            Stage::ForkCommand => "forking the command".to_owned(),
            Stage::DropCapabilities => "dropping capabilities".to_owned(),
            Stage::NoNewPrivileges => "setting no-new-privileges".to_owned(),
            Stage::NewSession => "starting a new session".to_owned(),
            Stage::Exec => "executing the command".to_owned(),
            Stage::JoinCgroup => "joining the command's cgroup".to_owned(),
            Stage::Seccomp => format!(
                "installing the seccomp filter (`{TYPE_NAME}.seccomp`; `unconfined` runs \
                 without one)"
            ),
        };
        format!(
            "cannot build the sandbox: {what}: {}",
            std::io::Error::from_raw_os_error(failure.errno)
        )
    }
}

/// Whether `path` names in the sandbox the host's file of the same path:
/// every symlink met on the way to the file (resolved as the host resolves
/// it) is in the sandbox what it is on the host (a symlink entry with the
/// same target, or a bind of the same host path around it), and so is the
/// file itself (under a bind of the same host path).
fn shows_host_file(entries: &[Entry], path: &Path) -> bool {
    let covering = |path: &Path| {
        entries
            .iter()
            .filter(|entry| path.starts_with(&entry.target))
            .max_by_key(|entry| entry.target.components().count())
    };
    let same = |entry: &Entry| match &entry.kind {
        Kind::Bind { source, .. } => *source == entry.target,
        Kind::Symlink(link) => std::fs::read_link(&entry.target).is_ok_and(|host| host == *link),
        Kind::Tmpfs { .. } | Kind::Proc => false,
    };
    let mut current = path.to_path_buf();
    // As many symlinks as the kernel follows (MAXSYMLINKS).
    for _ in 0..40 {
        let mut prefix = PathBuf::from("/");
        let mut link = None;
        for (at, component) in current.components().enumerate().skip(1) {
            prefix.push(component);
            match std::fs::symlink_metadata(&prefix) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    link = Some(at);
                    break;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        let Some(at) = link else {
            // No symlink left: the file itself.
            return covering(&current)
                .is_some_and(|entry| matches!(entry.kind, Kind::Bind { .. }) && same(entry));
        };
        if !covering(&prefix).is_some_and(same) {
            return false;
        }
        let Ok(target) = std::fs::read_link(&prefix) else {
            return false;
        };
        // The components before the symlink are none: `..` in its target
        // is resolved lexically.
        let mut next = prefix.parent().unwrap_or(Path::new("/")).join(target);
        for component in current.components().skip(at + 1) {
            next.push(component);
        }
        let mut clean = PathBuf::from("/");
        for component in next.components() {
            match component {
                Component::Normal(name) => clean.push(name),
                Component::ParentDir => {
                    clean.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        current = clean;
    }
    false
}

/// Everything that appears in the sandbox, sorted so that a mount comes
/// after the mounts it lies in.
fn entries(
    config: &NamespaceConfig,
    spec: &EnvironmentSpec,
    ctx: &SpawnContext,
) -> Result<Vec<Entry>> {
    // What a command stores in its tmpfs mounts is memory: each is capped,
    // and never above the memory limit.
    let tmpfs_size = spec
        .limits
        .memory
        .map_or(config.tmpfs_size, |memory| memory.min(config.tmpfs_size));
    let mut entries = Vec::new();
    let (dirs, explicit) = match &config.system_dirs {
        Some(dirs) => (dirs.clone(), true),
        None => (
            DEFAULT_SYSTEM_DIRS.iter().map(PathBuf::from).collect(),
            false,
        ),
    };
    for dir in dirs {
        let target = check_sandbox_path(&dir).map_err(|reason| Error::Backend {
            backend: TYPE_NAME.into(),
            message: format!("system directory `{}` {reason}", dir.display()),
        })?;
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&dir).map_err(|source| Error::Io {
                    action: "reading symlink",
                    path: dir.clone(),
                    source,
                })?;
                entries.push(Entry {
                    target,
                    kind: Kind::Symlink(link),
                });
            }
            Ok(meta) => entries.push(Entry {
                target,
                kind: Kind::Bind {
                    source: dir,
                    attributes: ATTR_READ_ONLY | ATTR_NO_SUID | ATTR_NO_DEVICES,
                    is_dir: meta.is_dir(),
                },
            }),
            // A named directory that is missing fails when the sandbox is
            // built, with the kernel's reason; a default one is skipped.
            Err(_) if explicit => entries.push(Entry {
                target,
                kind: Kind::Bind {
                    source: dir,
                    attributes: ATTR_READ_ONLY | ATTR_NO_SUID | ATTR_NO_DEVICES,
                    is_dir: true,
                },
            }),
            Err(_) => {}
        }
    }
    entries.push(Entry {
        target: PathBuf::from(WORKDIR),
        kind: Kind::Bind {
            source: ctx.workspace.clone(),
            attributes: ATTR_NO_SUID | ATTR_NO_DEVICES,
            is_dir: true,
        },
    });
    entries.push(Entry {
        target: PathBuf::from("/tmp"),
        kind: Kind::Tmpfs {
            options: format!("mode=1777,size={tmpfs_size}"),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
        },
    });
    entries.push(Entry {
        target: PathBuf::from("/proc"),
        kind: Kind::Proc,
    });
    entries.push(Entry {
        target: PathBuf::from("/dev"),
        kind: Kind::Tmpfs {
            // Mount points and symlinks only.
            options: format!("mode=0755,size={DEV_SIZE}"),
            flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        },
    });
    for device in DEVICES {
        let host = Path::new("/dev").join(device);
        if host.exists() {
            entries.push(Entry {
                target: host.clone(),
                kind: Kind::Bind {
                    source: host,
                    attributes: ATTR_NO_SUID | ATTR_NO_EXEC,
                    is_dir: false,
                },
            });
        }
    }
    for (name, link) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        entries.push(Entry {
            target: Path::new("/dev").join(name),
            kind: Kind::Symlink(PathBuf::from(link)),
        });
    }
    entries.push(Entry {
        target: PathBuf::from("/dev/shm"),
        kind: Kind::Tmpfs {
            options: format!("mode=1777,size={tmpfs_size}"),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
        },
    });
    for asset in ctx.assets.iter() {
        entries.push(Entry {
            target: Path::new(STATIC_DIR).join(&asset.save_path),
            kind: Kind::Bind {
                source: asset.absolute_path.clone(),
                attributes: ATTR_READ_ONLY | ATTR_NO_SUID | ATTR_NO_DEVICES,
                is_dir: asset.is_dir,
            },
        });
    }
    for mount in &ctx.mounts {
        let target = check_sandbox_path(&mount.target)
            .ok()
            .filter(|t| is_reserved(t).is_none())
            .ok_or_else(|| Error::Backend {
                backend: TYPE_NAME.into(),
                message: format!(
                    "mount target `{}` is not allowed: it must be an absolute path without \
                     `.` or `..`, outside {}",
                    mount.target.display(),
                    RESERVED
                        .iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let source = if mount.source.is_absolute() {
            mount.source.clone()
        } else {
            ctx.workspace.join(&mount.source)
        };
        let is_dir = std::fs::metadata(&source).map_or(true, |m| m.is_dir());
        let mut attributes = ATTR_NO_SUID | ATTR_NO_DEVICES;
        if mount.read_only {
            attributes |= ATTR_READ_ONLY;
        }
        entries.push(Entry {
            target,
            kind: Kind::Bind {
                source,
                attributes,
                is_dir,
            },
        });
    }
    // Outer mounts first; otherwise in the order above (a later mount on
    // the same path covers an earlier one).
    entries.sort_by_key(|e| e.target.components().count());
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_is_the_hosts_only_where_every_link_on_its_way_is() {
        let Ok(real) = std::fs::canonicalize("/bin/sh") else {
            return;
        };
        let host = |dir: &str| match std::fs::read_link(dir) {
            Ok(link) => Entry {
                target: dir.into(),
                kind: Kind::Symlink(link),
            },
            Err(_) => Entry {
                target: dir.into(),
                kind: Kind::Bind {
                    source: dir.into(),
                    attributes: 0,
                    is_dir: true,
                },
            },
        };
        let mut entries: Vec<Entry> = ["/usr", "/bin", "/lib", "/etc"]
            .into_iter()
            .filter(|dir| std::fs::symlink_metadata(dir).is_ok())
            .map(host)
            .collect();
        assert!(shows_host_file(&entries, Path::new("/bin/sh")));
        // The shell's file alone, without the links that lead to it.
        let file_alone = vec![Entry {
            target: real.clone(),
            kind: Kind::Bind {
                source: real.clone(),
                attributes: 0,
                is_dir: false,
            },
        }];
        if real != Path::new("/bin/sh") {
            assert!(!shows_host_file(&file_alone, Path::new("/bin/sh")));
        }
        // Another file in its place.
        entries.push(Entry {
            target: real.clone(),
            kind: Kind::Bind {
                source: PathBuf::from("/etc/hostname"),
                attributes: 0,
                is_dir: false,
            },
        });
        assert!(!shows_host_file(&entries, Path::new("/bin/sh")));
        entries.pop();
        // A tmpfs over its directory.
        entries.push(Entry {
            target: real.parent().unwrap().to_path_buf(),
            kind: Kind::Tmpfs {
                options: String::new(),
                flags: 0,
            },
        });
        assert!(!shows_host_file(&entries, Path::new("/bin/sh")));
    }

    #[test]
    fn sandbox_paths_are_absolute_and_plain() {
        assert_eq!(
            check_sandbox_path(Path::new("/usr/lib")),
            Ok(PathBuf::from("/usr/lib"))
        );
        assert_eq!(
            check_sandbox_path(Path::new("/opt/x/")),
            Ok(PathBuf::from("/opt/x"))
        );
        assert!(check_sandbox_path(Path::new("usr")).is_err());
        assert!(check_sandbox_path(Path::new("/usr/../etc")).is_err());
        assert!(check_sandbox_path(Path::new("/")).is_err());
    }

    #[test]
    fn reserved_paths_cover_their_subtrees() {
        assert_eq!(is_reserved(Path::new("/workspace/x")), Some("/workspace"));
        assert_eq!(is_reserved(Path::new("/tmp")), Some("/tmp"));
        assert_eq!(is_reserved(Path::new("/tmpfoo")), None);
        assert_eq!(is_reserved(Path::new("/usr")), None);
    }

    #[test]
    fn plans_of_one_spec_have_one_shape_wherever_their_workspace_is() {
        let spec = EnvironmentSpec::new(TYPE_NAME, "t");
        let shell = Path::new("/bin/sh");
        let plan_of = |config: &NamespaceConfig, ws: &Path, mounts: &[(&str, &str)]| {
            let mut ctx = SpawnContext::new("s", ws, session_core::spec::Mode::Evaluation);
            for (source, target) in mounts {
                ctx.mounts.push(session_core::runtime::Mount {
                    source: PathBuf::from(source),
                    target: PathBuf::from(target),
                    read_only: true,
                });
            }
            Plan::build(config, &spec, &ctx).unwrap()
        };
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::create_dir(one.path().join("data")).unwrap();
        let config = NamespaceConfig::default();
        let first = plan_of(&config, one.path(), &[("data", "/opt/data")]);
        let second = plan_of(&config, two.path(), &[("data", "/opt/data")]);
        assert_eq!(first.shape(shell), second.shape(shell));
        // Its own host paths are what a spawn of a proven shape checks.
        assert!(first.sources_reachable());
        assert!(!second.sources_reachable());

        let others = [
            plan_of(&config, one.path(), &[("data", "/opt/other")]),
            plan_of(&config, one.path(), &[]),
            plan_of(
                &NamespaceConfig {
                    network: Network::Host,
                    ..NamespaceConfig::default()
                },
                one.path(),
                &[("data", "/opt/data")],
            ),
            plan_of(
                &NamespaceConfig {
                    seccomp: Setting::Unconfined,
                    ..NamespaceConfig::default()
                },
                one.path(),
                &[("data", "/opt/data")],
            ),
        ];
        for other in &others {
            assert_ne!(other.shape(shell), first.shape(shell), "{other:?}");
        }
        assert_ne!(first.shape(Path::new("/bin/bash")), first.shape(shell));
    }

    #[test]
    fn the_plan_creates_parents_before_children_and_mounts_in_order() {
        let ws = tempfile::tempdir().unwrap();
        let config = NamespaceConfig {
            system_dirs: Some(vec![PathBuf::from("/usr")]),
            ..NamespaceConfig::default()
        };
        let spec = EnvironmentSpec::new(TYPE_NAME, "t");
        let mut ctx = SpawnContext::new("s", ws.path(), session_core::spec::Mode::Evaluation);
        ctx.mounts.push(session_core::runtime::Mount {
            source: PathBuf::from("data"),
            target: PathBuf::from("/opt/data/set"),
            read_only: true,
        });
        let plan = Plan::build(&config, &spec, &ctx).unwrap();
        let described = plan.step_descriptions.join("\n");
        let position = |needle: &str| {
            described
                .find(needle)
                .unwrap_or_else(|| panic!("`{needle}` missing from:\n{described}"))
        };
        assert!(position("mounting a tmpfs at `/dev`") < position("at `/dev/null`"));
        assert!(position("creating directory `/opt`") < position("creating directory `/opt/data`"));
        assert!(position("creating directory `/opt/data`") < position("at `/opt/data/set`"));
        assert!(described.ends_with("making `/dev` read-only"));
        assert!(described.contains(&format!(
            "mounting host `{}` at `/workspace`",
            ws.path().display()
        )));
        assert!(described.contains(&format!(
            "mounting host `{}` at `/opt/data/set`",
            ws.path().join("data").display()
        )));
        assert_eq!(plan.sources.len(), plan.trees.len());
        assert!(plan.namespaces & libc::CLONE_NEWNET != 0);
    }

    #[test]
    fn the_plan_limits_the_new_user_namespace_before_proc_sys_turns_read_only() {
        let ws = tempfile::tempdir().unwrap();
        let spec = EnvironmentSpec::new(TYPE_NAME, "t");
        let ctx = SpawnContext::new("s", ws.path(), session_core::spec::Mode::Evaluation);
        let plan = Plan::build(&NamespaceConfig::default(), &spec, &ctx).unwrap();
        let described = plan.step_descriptions.join("\n");
        let position = |needle: &str| {
            described
                .find(needle)
                .unwrap_or_else(|| panic!("`{needle}` missing from:\n{described}"))
        };
        let limit = position("limiting `user.max_inotify_instances` to ");
        assert!(position("mounting a fresh procfs at `/proc`") < limit);
        assert!(limit < position("making `/proc/sys` read-only"));
        // No nested user namespace under the default profile.
        position("limiting `user.max_user_namespaces` to 0 ");
        let unconfined = NamespaceConfig {
            seccomp: Setting::Unconfined,
            ..NamespaceConfig::default()
        };
        let plan_unconfined = Plan::build(&unconfined, &spec, &ctx).unwrap();
        assert!(
            !plan_unconfined
                .step_descriptions
                .iter()
                .any(|step| step.contains("`user.max_user_namespaces` to 0 ")),
            "{:?}",
            plan_unconfined.step_descriptions
        );

        let index = plan
            .quota_rlimits
            .iter()
            .position(|rlimit| rlimit.resource == libc::RLIMIT_SIGPENDING)
            .expect("this process has a finite RLIMIT_SIGPENDING");
        let message = plan.describe(Failure {
            stage: Stage::UserQuota,
            index: index as u32,
            errno: libc::EPERM,
        });
        assert_eq!(
            message,
            format!(
                "cannot build the sandbox: lowering RLIMIT_SIGPENDING to {}, the sandbox's \
                 share of the caller's: Operation not permitted (os error 1)",
                plan.quota_rlimits[index].value
            )
        );
    }

    #[test]
    fn extra_mounts_may_not_hide_the_sandbox_paths() {
        let ws = tempfile::tempdir().unwrap();
        let spec = EnvironmentSpec::new(TYPE_NAME, "t");
        for target in ["/workspace/sub", "/proc", "relative", "/"] {
            let mut ctx = SpawnContext::new("s", ws.path(), session_core::spec::Mode::Evaluation);
            ctx.mounts.push(session_core::runtime::Mount {
                source: PathBuf::from("/usr"),
                target: PathBuf::from(target),
                read_only: true,
            });
            let err = Plan::build(&NamespaceConfig::default(), &spec, &ctx).unwrap_err();
            assert!(
                matches!(&err, Error::Backend { message, .. } if message.contains(target)),
                "{err}"
            );
        }
    }

    #[test]
    fn failures_name_what_failed() {
        let ws = tempfile::tempdir().unwrap();
        let config = NamespaceConfig {
            system_dirs: Some(vec![PathBuf::from("/no/such/dir")]),
            ..NamespaceConfig::default()
        };
        let spec = EnvironmentSpec::new(TYPE_NAME, "t");
        let ctx = SpawnContext::new("s", ws.path(), session_core::spec::Mode::Evaluation);
        let plan = Plan::build(&config, &spec, &ctx).unwrap();
        let index = plan
            .sources
            .iter()
            .position(|s| s.target == Path::new("/no/such/dir"))
            .unwrap();
        let message = plan.describe(Failure {
            stage: Stage::OpenTree,
            index: index as u32,
            errno: libc::ENOENT,
        });
        assert_eq!(
            message,
            "cannot build the sandbox: capturing host `/no/such/dir` for `/no/such/dir`: \
             No such file or directory (os error 2)"
        );
        let message = plan.describe(Failure {
            stage: Stage::Seccomp,
            index: 0,
            errno: libc::EINVAL,
        });
        assert_eq!(
            message,
            "cannot build the sandbox: installing the seccomp filter (`namespace.seccomp`; \
             `unconfined` runs without one): Invalid argument (os error 22)"
        );
    }

    #[test]
    fn the_plan_carries_the_filter_the_setting_names() {
        let ws = tempfile::tempdir().unwrap();
        let spec = EnvironmentSpec::new(TYPE_NAME, "t");
        let ctx = SpawnContext::new("s", ws.path(), session_core::spec::Mode::Evaluation);
        let plan = Plan::build(&NamespaceConfig::default(), &spec, &ctx).unwrap();
        assert!(plan.seccomp.is_some_and(|filter| filter.programs() > 0));
        let unconfined = NamespaceConfig {
            seccomp: runtime_local::seccomp::Setting::Unconfined,
            ..NamespaceConfig::default()
        };
        let plan = Plan::build(&unconfined, &spec, &ctx).unwrap();
        assert!(plan.seccomp.is_none());
    }
}
