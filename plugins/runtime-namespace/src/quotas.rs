//! What one sandbox may take of the caller's per-user kernel quotas.
//!
//! The sandbox maps the caller's uid to itself, and the kernel charges
//! several quotas to a user: what a command holds of them is the caller's
//! (the host's root, when berth runs as root), and a command that takes all
//! of one starves every other process of that user. Two kinds are bounded,
//! each to a quarter ([`SHARE`]) of what the caller has:
//!
//! * **Rlimits counted per user**, lowered (soft and hard) by the
//!   supervisor *before* it unshares. The kernel checks a user's total
//!   against the limit of the process that adds to it, and a new user
//!   namespace records its creator's limits as the bound of its whole
//!   subtree's share of the parent's count; so every sandbox together can
//!   push the caller's count to that quarter only, and the caller's other
//!   processes keep the rest. A command cannot raise a hard limit
//!   (`CAP_SYS_RESOURCE` of the host's user namespace). They are:
//!   `RLIMIT_SIGPENDING` (queued signals, which each POSIX timer also
//!   holds one of), `RLIMIT_MSGQUEUE` (bytes of POSIX message queues) and
//!   `RLIMIT_MEMLOCK` (memory locked with `SHM_LOCK`, counted per user, and
//!   what each process may `mlock`).
//! * **Per-user-namespace limits** in `/proc/sys/user/` (inotify instances
//!   and watches, fanotify groups and marks, namespaces of each kind). The
//!   kernel counts these per user at every level of the user namespace
//!   hierarchy, each level against its own limit; a new user namespace
//!   starts with no limit of its own. Whoever holds `CAP_SYS_RESOURCE` in
//!   a namespace may set its limits, and the file shows the limits of the
//!   reader's namespace whatever procfs it is read through; so the init,
//!   with every capability in the new namespace, writes them into the fresh
//!   `/proc` before `/proc/sys` turns read-only and long before the command
//!   drops its capabilities. These bound each sandbox on its own.
//!   `max_user_namespaces` is 0 under the default seccomp profile, which
//!   refuses new namespaces anyway: a second wall behind it.
//!
//! `RLIMIT_NPROC` is counted per user namespace too, but the host's
//! processes of the caller already count at the parent's level, so
//! lowering it before unsharing would let a busy user starve the sandbox;
//! for a caller other than root it is set after unsharing, to a quarter of
//! the caller's limit (or lower, for `limits.pids`), and bounds the
//! sandbox's own processes. The host's root is exempt from it, and its
//! processes are bounded by `limits.pids` (a cgroup) alone.
//!
//! The shares follow the caller's own limits: an operator who raises
//! `ulimit -i` or `fs.inotify.max_user_watches` for a workload raises the
//! sandbox's share with it. An unlimited rlimit stays unlimited.

use std::ffi::CString;

/// The fraction of each of the caller's quotas one sandbox may take: a
/// quarter.
pub(crate) const SHARE: u64 = 4;

/// The per-user-namespace limits of `/proc/sys/user` a sandbox gets its
/// share of; those this kernel lacks are skipped (it has no such count).
pub(crate) const USER_NAMESPACE_LIMITS: &[&str] = &[
    "max_inotify_instances",
    "max_inotify_watches",
    "max_fanotify_groups",
    "max_fanotify_marks",
    "max_user_namespaces",
    "max_mnt_namespaces",
    "max_pid_namespaces",
    "max_net_namespaces",
    "max_ipc_namespaces",
    "max_uts_namespaces",
    "max_cgroup_namespaces",
    "max_time_namespaces",
];

/// Where the kernel shows the per-user-namespace limits.
pub(crate) const USER_SYSCTL_DIR: &str = "/proc/sys/user";

/// An rlimit the supervisor lowers before it unshares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct QuotaRlimit {
    /// The `RLIMIT_*` resource.
    pub(crate) resource: libc::__rlimit_resource_t,
    /// Its name, for messages.
    pub(crate) name: &'static str,
    /// The soft and hard limit.
    pub(crate) value: libc::rlim_t,
}

/// A per-user-namespace limit the init writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserLimit {
    /// The file's name in `/proc/sys/user`.
    pub(crate) name: &'static str,
    /// The value, in decimal.
    pub(crate) value: CString,
}

/// What a sandbox may take of the caller's quotas, decided at spawn from
/// berth's own limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Quotas {
    /// Rlimits the supervisor lowers before it unshares.
    pub(crate) rlimits: Vec<QuotaRlimit>,
    /// `RLIMIT_NPROC` after unsharing; `None` for root, whom it does not
    /// bind.
    pub(crate) max_processes: Option<u64>,
    /// Limits written in `/proc/sys/user` of the new user namespace.
    pub(crate) user_limits: Vec<UserLimit>,
}

/// A quarter of `limit`; an unlimited one stays unlimited.
pub(crate) fn share(limit: u64) -> u64 {
    if limit == libc::RLIM_INFINITY {
        limit
    } else {
        limit / SHARE
    }
}

/// The soft limit of `resource` of this process.
fn soft_limit(resource: libc::__rlimit_resource_t) -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: getrlimit(2) with a pointer to a local struct; it fails only
    // for an unknown resource, which leaves the limit unlimited.
    unsafe {
        libc::getrlimit(resource, &mut limit);
    }
    limit.rlim_cur
}

/// A limit of `/proc/sys/user` in berth's own user namespace, if this
/// kernel has it.
fn user_limit(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("{USER_SYSCTL_DIR}/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Decides the shares from berth's own limits. `refuses_namespaces` says
/// whether commands run under a seccomp filter that refuses new
/// namespaces (the default profile): then the sandbox may create no user
/// namespace at all.
pub(crate) fn plan(refuses_namespaces: bool) -> Quotas {
    let rlimits = [
        (libc::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        (libc::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
    ]
    .into_iter()
    .filter_map(|(resource, name)| {
        let limit = soft_limit(resource);
        (limit != libc::RLIM_INFINITY).then(|| QuotaRlimit {
            resource,
            name,
            value: share(limit),
        })
    })
    .collect();
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let max_processes = if root {
        None
    } else {
        Some(soft_limit(libc::RLIMIT_NPROC))
            .filter(|limit| *limit != libc::RLIM_INFINITY)
            .map(share)
    };
    let user_limits = USER_NAMESPACE_LIMITS
        .iter()
        .filter_map(|&name| {
            let limit = user_limit(name)?;
            let value = if name == "max_user_namespaces" && refuses_namespaces {
                0
            } else {
                share(limit)
            };
            Some(UserLimit {
                name,
                value: CString::new(value.to_string()).expect("digits have no NUL"),
            })
        })
        .collect();
    Quotas {
        rlimits,
        max_processes,
        user_limits,
    }
}

impl Quotas {
    /// One line for `berth doctor`: what a sandbox may take, with the
    /// namespace limits summed up.
    pub(crate) fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .rlimits
            .iter()
            .map(|rlimit| format!("{} {}", rlimit.name, rlimit.value))
            .collect();
        if let Some(processes) = self.max_processes {
            parts.push(format!("RLIMIT_NPROC {processes}"));
        }
        let mut namespaces = None;
        for limit in &self.user_limits {
            let value = limit.value.to_string_lossy();
            if limit.name == "max_user_namespaces" {
                namespaces = Some(value.into_owned());
            } else if !limit.name.ends_with("_namespaces") {
                parts.push(format!("user.{} {value}", limit.name));
            }
        }
        if let Some(user_namespaces) = namespaces {
            parts.push(format!(
                "user.max_user_namespaces {user_namespaces} and a quarter of each other \
                 user.max_*_namespaces"
            ));
        }
        format!(
            "a sandbox takes at most a quarter of each per-user quota of berth's user: {}",
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_a_quarter_and_unlimited_stays_unlimited() {
        assert_eq!(share(96_367), 24_091);
        assert_eq!(share(3), 0);
        assert_eq!(share(libc::RLIM_INFINITY), libc::RLIM_INFINITY);
    }

    #[test]
    fn the_plan_takes_a_quarter_of_this_process_limits() {
        let quotas = plan(true);
        for rlimit in &quotas.rlimits {
            let limit = soft_limit(rlimit.resource);
            assert_ne!(limit, libc::RLIM_INFINITY, "{}", rlimit.name);
            assert_eq!(rlimit.value, limit / 4, "{}", rlimit.name);
        }
        let names: Vec<&str> = quotas.user_limits.iter().map(|l| l.name).collect();
        for name in USER_NAMESPACE_LIMITS {
            assert_eq!(
                names.contains(name),
                user_limit(name).is_some(),
                "{name}: {names:?}"
            );
        }
        for limit in &quotas.user_limits {
            let expected = if limit.name == "max_user_namespaces" {
                0
            } else {
                user_limit(limit.name).unwrap() / 4
            };
            assert_eq!(limit.value.to_str().unwrap(), expected.to_string());
        }
        // Without a filter refusing new namespaces, nested ones get a
        // share like the rest.
        let unfiltered = plan(false);
        if let Some(limit) = unfiltered
            .user_limits
            .iter()
            .find(|limit| limit.name == "max_user_namespaces")
        {
            let expected = user_limit("max_user_namespaces").unwrap() / 4;
            assert_eq!(limit.value.to_str().unwrap(), expected.to_string());
        }
        // SAFETY: geteuid(2) cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        assert_eq!(quotas.max_processes.is_none(), root);
        assert!(quotas.describe().contains("RLIMIT_SIGPENDING"));
    }
}
