//! The stages of building a sandbox, as a failure report names them: shared
//! by the plugin (`src/child.rs`, which reads reports) and `berth-sandbox`
//! (`sandbox/main.rs`, which writes them), so both number them alike.

/// Where sandbox construction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    /// `unshare` of the namespaces.
    Unshare = 1,
    /// Writing `deny` to `/proc/self/setgroups`.
    Setgroups,
    /// Writing `/proc/self/uid_map`.
    UidMap,
    /// Writing `/proc/self/gid_map`.
    GidMap,
    /// `sethostname`.
    Hostname,
    /// Bringing the loopback interface up.
    Loopback,
    /// `RLIMIT_NPROC`.
    ProcessLimit,
    /// Creating the supervisor's pipes.
    Pipes,
    /// Forking the init.
    ForkInit,
    /// The init's parent-death signal.
    ParentDeath,
    /// Making every mount private.
    MakePrivate,
    /// `open_tree` of source `index`.
    OpenTree,
    /// `mount_setattr` of source `index`.
    SetAttributes,
    /// Mounting the tmpfs the root is assembled in.
    Staging,
    /// Step `index` of the plan.
    Step,
    /// `pivot_root`.
    PivotRoot,
    /// Detaching the host's root.
    DetachOldRoot,
    /// Making the new root read-only.
    RemountRoot,
    /// Entering the working directory.
    Workdir,
    /// Forking the command.
    ForkCommand,
    /// Dropping capabilities.
    DropCapabilities,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivileges,
    /// `setsid`.
    NewSession,
    /// Installing the seccomp filter.
    Seccomp,
    /// Lowering quota rlimit `index` of the plan.
    UserQuota,
    /// Executing the command (in `berth-sandbox`; a fork of berth's
    /// process reports this through std).
    Exec,
    /// Joining cgroup directory `index` of the command's cgroup (in
    /// `berth-sandbox`; a fork of berth joins it before the sandbox).
    JoinCgroup,
}
