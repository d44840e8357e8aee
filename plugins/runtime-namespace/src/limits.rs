//! How a spec's `limits` hold in the sandbox.
//!
//! `limits.pids`, `limits.memory` and `limits.cpus` are enforced by a
//! cgroup per command ([`runtime_local::cgroup`]: v1 or v2, also when berth
//! runs as root), which counts every process of the sandbox and every page
//! it charges — the private `/tmp` and `/dev/shm` included. Where this host
//! gives berth no cgroup with the controller a limit needs:
//!
//! * `limits.pids` falls back to `RLIMIT_NPROC` for a caller other than
//!   root: the kernel counts it per user namespace, so it bounds the
//!   sandbox's own processes (the supervisor and the init included, so the
//!   rlimit is two above the limit, unless the sandbox's share of the
//!   caller's `RLIMIT_NPROC` is lower: see `crate::quotas`); it never
//!   binds a process whose real uid is the host's root;
//! * otherwise the spawn fails with [`Error::Spec`] naming the limit and
//!   why — a limit is never silently left unenforced.
//!
//! `limits.file_size` is the file-size rlimit, which binds root too.

use runtime_local::cgroup::{CgroupError, CgroupHost, CgroupLimits};
use session_core::runtime::Diagnostic;
use session_core::spec::EnvironmentSpec;
use session_core::{Error, Result};

/// How the limits of one spec are enforced.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LimitPlan {
    /// What each command's cgroup enforces (empty: no cgroup).
    pub(crate) cgroup: CgroupLimits,
    /// `RLIMIT_NPROC` in the sandbox's user namespace, when `limits.pids`
    /// falls back to it.
    pub(crate) max_processes: Option<u64>,
}

fn running_as_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the cgroup controller behind one limit is usable here.
fn cgroup_can(limits: CgroupLimits) -> std::result::Result<(), CgroupError> {
    CgroupHost::get().check(&limits)
}

fn pids_only(pids: u64) -> CgroupLimits {
    CgroupLimits {
        pids: Some(pids),
        ..CgroupLimits::default()
    }
}

fn memory_only(memory: u64) -> CgroupLimits {
    CgroupLimits {
        memory: Some(memory),
        ..CgroupLimits::default()
    }
}

fn cpus_only(cpus: f64) -> CgroupLimits {
    CgroupLimits {
        cpus: Some(cpus),
        ..CgroupLimits::default()
    }
}

/// Which of `limits.pids`, `limits.memory` and `limits.cpus` this host
/// can enforce, for [`Capabilities`](session_core::runtime::Capabilities).
pub(crate) fn enforceable() -> (bool, bool, bool) {
    (
        cgroup_can(pids_only(64)).is_ok() || !running_as_root(),
        cgroup_can(memory_only(1 << 30)).is_ok(),
        cgroup_can(cpus_only(1.0)).is_ok(),
    )
}

/// Decides how `spec`'s limits are enforced. Fails with [`Error::Spec`]
/// naming the limit when it cannot be enforced here (or has a value no
/// cgroup takes), saying why and what to do.
pub(crate) fn plan(spec: &EnvironmentSpec) -> Result<LimitPlan> {
    let limits = &spec.limits;
    let mut plan = LimitPlan::default();
    if let Some(pids) = limits.pids {
        match cgroup_can(pids_only(pids)) {
            Ok(()) => plan.cgroup.pids = Some(pids),
            Err(CgroupError::Unenforceable { .. }) if !running_as_root() => {
                plan.max_processes = Some(pids.saturating_add(2));
            }
            Err(CgroupError::Unenforceable { limit, reason }) => {
                return Err(refusal(
                    spec,
                    limit,
                    &format!(
                        "{reason}; and as root RLIMIT_NPROC does not bind (the kernel exempts \
                         the host's root from it)"
                    ),
                ));
            }
            Err(other) => return Err(cgroup_refusal(spec, other)),
        }
    }
    if let Some(memory) = limits.memory {
        cgroup_can(memory_only(memory)).map_err(|err| cgroup_refusal(spec, err))?;
        plan.cgroup.memory = Some(memory);
    }
    if let Some(cpus) = limits.cpus {
        cgroup_can(cpus_only(cpus)).map_err(|err| cgroup_refusal(spec, err))?;
        plan.cgroup.cpus = Some(cpus);
    }
    Ok(plan)
}

fn refusal(spec: &EnvironmentSpec, limit: &str, reason: &str) -> Error {
    Error::Spec {
        origin: spec.origin().to_owned(),
        field: limit.to_owned(),
        message: format!("cannot be enforced on this host: {reason}"),
    }
}

fn cgroup_refusal(spec: &EnvironmentSpec, err: CgroupError) -> Error {
    match err {
        CgroupError::Unenforceable { limit, reason } => refusal(spec, limit, &reason),
        CgroupError::InvalidLimit {
            limit,
            value,
            expected,
        } => Error::Spec {
            origin: spec.origin().to_owned(),
            field: limit.to_owned(),
            message: format!("is {value}; it must be {expected}"),
        },
        other => Error::Spec {
            origin: spec.origin().to_owned(),
            field: "limits".to_owned(),
            message: other.to_string(),
        },
    }
}

/// `berth doctor`'s lines about limits: the host's cgroups as berth uses
/// them, and the `RLIMIT_NPROC` fallback where it applies.
pub(crate) fn diagnose() -> Vec<Diagnostic> {
    let mut checks = CgroupHost::get().describe();
    if cgroup_can(pids_only(64)).is_err() && !running_as_root() {
        for check in &mut checks {
            if check.check == "limits.pids" {
                check.ok = true;
                check.detail = format!(
                    "RLIMIT_NPROC in the sandbox's user namespace (no cgroup: {})",
                    check.detail
                );
            }
        }
    }
    checks
}
