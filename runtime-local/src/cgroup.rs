//! Control groups for commands: limits that hold (`limits.pids`,
//! `limits.memory`, `limits.cpus`) also when berth runs as root, and a
//! reliable way to kill everything a command started.
//!
//! rlimits count per user (`RLIMIT_NPROC`), per process (`RLIMIT_AS`) and
//! not at all for root, and nothing bounds what a command stores in a
//! tmpfs. A cgroup counts every process a command forks and every page it
//! charges, tmpfs pages included, whoever it runs as; and since its members
//! cannot leave it (without privileges), it is also how berth finds every
//! process of a command that `setsid`s or double-forks.
//!
//! # Hierarchies
//!
//! [`CgroupHost::detect`] reads `/proc/self/mountinfo` and
//! `/proc/self/cgroup` once ([`CgroupHost::get`] caches it) and finds:
//!
//! * **cgroup v1**: one hierarchy per controller group. berth uses `pids`,
//!   `memory`, `cpu` (often mounted as `cpu,cpuacct`) and `freezer`, and
//!   creates `<own>/berth/<name>` in each one a command needs, `<own>`
//!   being the cgroup berth itself runs in within that hierarchy. cgroup
//!   v1 lets a cgroup with processes have children, so this always works
//!   where berth may write: as root, or as a user for whom `<own>/berth`
//!   (or `<own>`, to create it) is writable.
//! * **cgroup v2** (current distributions): one hierarchy, and berth's base
//!   is `<own>/berth` there too. berth needs its own cgroup to be writable
//!   (as root, or delegated to its user: systemd delegates
//!   `user@UID.service` and what `systemd-run -p Delegate=yes` makes) and
//!   enables the controllers it needs in `cgroup.subtree_control` of
//!   `<own>` and of `<own>/berth`. Because of v2's "no internal
//!   processes" rule, a cgroup that holds processes (other than the
//!   hierarchy's real root) cannot enable controllers for its children,
//!   so: **when berth is the only process in its own cgroup, berth moves
//!   itself into the leaf `<own>/berth-host` when it creates its first
//!   command cgroup** (and `berth doctor` says so beforehand). When other
//!   processes share that cgroup (berth started from a shell in a login
//!   session's scope, or beside other processes of a service), berth still
//!   puts its command cgroups there, without controllers: they serve to
//!   kill a command whole, and **a limit that needs a cgroup v2 controller
//!   is refused**, saying to run berth under
//!   `systemd-run [--user] --scope -p Delegate=yes berth ...`. berth does
//!   not fall back to a place outside its own cgroup (the hierarchy's
//!   root, as root could): there a command would escape whatever binds the
//!   cgroup berth runs in — a CI job's or a service's `MemoryMax`, its
//!   `CPUQuota`, the BPF programs systemd attaches for `IPAddressDeny=` or
//!   `DeviceAllow=` — so asking for a limit would loosen confinement
//!   instead of adding to it. The same rules hold as root inside a cgroup
//!   namespace (a container), whose root is not the hierarchy's real root.
//! * **hybrid** (v1 controllers and a cgroup v2 hierarchy beside them, as
//!   on this project's machines): limits come from the v1 controllers; a v2
//!   directory is made as well when the v2 hierarchy is usable, because its
//!   `cgroup.kill` kills a whole cgroup atomically, which no v1 controller
//!   can.
//!
//! So a command cgroup is a descendant of berth's own cgroup in every
//! hierarchy, and the limits of the cgroups berth runs in bind the
//! command too: a limit in the spec can only tighten them. On cgroup v1
//! the kernel refuses a CPU quota above an ancestor's, so a command's
//! `cpu.cfs_quota_us` is cut down to what berth's own cgroup and its
//! ancestors allow (cgroup v2 does the same by itself). Kernels before
//! 5.11 let a v1 `memory` cgroup turn `memory.use_hierarchy` off; below
//! such a cgroup, its limit does not bind the cgroups under it.
//!
//! A hierarchy that is not writable is not an error at detection: it makes
//! [`CgroupHost::check`] refuse the limits that need it, with the reason
//! and what to do, and [`CgroupHost::describe`] says so for `berth doctor`.
//!
//! # A command's cgroup
//!
//! [`CgroupHost::create`] makes a [`CommandCgroup`] with the limits
//! written: `pids.max`; v1 `memory.limit_in_bytes` and
//! `memory.memsw.limit_in_bytes` (the same value, so swap is no way out) or
//! v2 `memory.max` and `memory.swap.max = 0`; v1 `cpu.cfs_period_us` and
//! `cpu.cfs_quota_us` or v2 `cpu.max`. A child enters it between fork and
//! exec through [`CommandCgroup::joiner`], whose [`CgroupJoin::join`]
//! writes `0` ("this process") to pre-opened `cgroup.procs` files, and a
//! keeper process can empty it with [`CgroupJoin::kill_in_child`]; both are
//! async-signal-safe. [`CommandCgroup::kill_all`] and
//! [`CommandCgroup::remove`] (also on drop) empty and remove it;
//! [`CommandCgroup::limit_events`] tells whether a limit was hit.
//!
//! A root command on the local backend can still write its pid into
//! another cgroup (the local backend isolates nothing); sandboxes do not
//! show it the cgroup file system.
//!
//! # Garbage
//!
//! A cgroup's name records its owner (see [`Owner`]): pid namespace, pid
//! and start time. [`CgroupHost::collect_garbage`] kills and removes the
//! command cgroups whose owner is gone, and leaves those of live owners
//! and of other pid namespaces alone. Since every berth puts its cgroups
//! below its own, they may be anywhere in a hierarchy: garbage collection
//! searches each hierarchy berth uses from its root, breadth first and
//! without recursion, for directories named like berth's base (`berth`),
//! also inside live command cgroups (a berth run by a command of another
//! berth). The search is bounded: at most 64 levels below the root and
//! 100,000 cgroups per hierarchy; past that it stops and logs a warning.

mod command;
mod control;
mod detect;
mod join;
mod owner;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use session_core::runtime::{Diagnostic, Leftover};
use session_core::spec::Limits;

pub use command::{CommandCgroup, LimitEvents};
pub use detect::Hierarchy;
pub use join::CgroupJoin;
pub use owner::Owner;

use command::{CPU_MAX_QUOTA_US, CPU_MIN_QUOTA_US, CPU_PERIOD_US, DirVersion};
use detect::{HOST_LEAF, Layout, OwnFacts, V2Decision, V2Facts};

/// The [`Leftover::kind`] of a command cgroup.
pub const CGROUP_KIND: &str = "cgroup";

/// The name of the directory under which berth makes its cgroups.
pub const DEFAULT_BASE_NAME: &str = "berth";

/// The name of the leaf cgroup berth moves itself into on cgroup v2 when
/// its own cgroup must enable controllers for its commands.
pub const V2_HOST_LEAF: &str = HOST_LEAF;

/// The controllers berth uses.
const PIDS: &str = "pids";
const MEMORY: &str = "memory";
const CPU: &str = "cpu";
const FREEZER: &str = "freezer";

/// Numbers command cgroups within this process.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

/// The largest `pids.max` the kernel takes (its `PID_MAX_LIMIT`).
const PIDS_MAX: u64 = if cfg!(target_pointer_width = "64") {
    4 << 20
} else {
    32_768
};

/// How often [`CgroupHost::create`] tries when a base it made vanishes
/// before the command cgroup is made in it.
const BASE_ATTEMPTS: u32 = 8;

/// How deep below a hierarchy's root garbage collection looks for bases.
const GC_MAX_DEPTH: usize = 64;

/// How many cgroups of one hierarchy garbage collection lists at most.
const GC_MAX_CGROUPS: usize = 100_000;

/// The limits a command cgroup enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupLimits {
    /// The most processes (and threads) that may exist in it at once.
    pub pids: Option<u64>,
    /// The most memory its processes may hold, in bytes, page cache and
    /// tmpfs pages included; no swap on top.
    pub memory: Option<u64>,
    /// The CPU time it may use, in CPUs (`0.5` is half of one), as a CFS
    /// quota per 100 ms period, rounded to the microsecond: from 1 ms
    /// (`0.01`) to the kernel's largest quota, 2^44 - 1 us
    /// (`175921860.44415`).
    pub cpus: Option<f64>,
}

impl CgroupLimits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self.pids.is_none() && self.memory.is_none() && self.cpus.is_none()
    }

    /// Checks each limit against the range the kernel takes, so that a
    /// value no cgroup accepts is refused here, naming the limit and the
    /// range, rather than failing at spawn with a raw error from a
    /// control file (or, for memory, being read as no limit at all).
    ///
    /// * `pids`: 1 to `PID_MAX_LIMIT` (4,194,304 on 64-bit kernels);
    ///   `pids.max` refuses more.
    /// * `memory`: one page to 2^63 bytes less one page, exclusive. The
    ///   kernel counts whole pages, so less than a page is a limit of
    ///   zero, and from 2^63 - page size on (9223372036854771712 with 4 KiB
    ///   pages) it stores "no limit".
    /// * `cpus`: a CFS quota of 1 ms to 2^44 - 1 us per 100 ms period, what
    ///   `cpu.max` and `cpu.cfs_quota_us` take.
    ///
    /// Fails with [`CgroupError::InvalidLimit`] for the first limit (in the
    /// order pids, memory, cpus) out of range.
    fn validate(&self) -> Result<(), CgroupError> {
        if let Some(pids) = self.pids
            && !(1..=PIDS_MAX).contains(&pids)
        {
            return Err(CgroupError::InvalidLimit {
                limit: "limits.pids",
                value: pids.to_string(),
                expected: format!(
                    "from 1 to {PIDS_MAX} processes (the most the kernel's pids.max takes)"
                ),
            });
        }
        if let Some(memory) = self.memory {
            let page = page_size();
            let most = (1u64 << 63) - page - 1;
            if !(page..=most).contains(&memory) {
                return Err(CgroupError::InvalidLimit {
                    limit: "limits.memory",
                    value: memory.to_string(),
                    expected: format!(
                        "from {page} bytes (one page: the kernel counts whole pages) to \
                         {most} bytes (from {} on, the kernel reads it as no limit)",
                        most + 1
                    ),
                });
            }
        }
        if let Some(cpus) = self.cpus {
            let quota = cpus * CPU_PERIOD_US as f64;
            if !(quota.is_finite()
                && quota.round() >= CPU_MIN_QUOTA_US as f64
                && quota.round() <= CPU_MAX_QUOTA_US as f64)
            {
                return Err(CgroupError::InvalidLimit {
                    limit: "limits.cpus",
                    // `1e300`, not three hundred digits.
                    value: format!("{cpus:?}"),
                    expected: format!(
                        "a number of CPUs from {} to {} (a CFS quota of {CPU_MIN_QUOTA_US} to \
                         {CPU_MAX_QUOTA_US} us per {CPU_PERIOD_US} us period, what the kernel \
                         takes)",
                        CPU_MIN_QUOTA_US as f64 / CPU_PERIOD_US as f64,
                        CPU_MAX_QUOTA_US as f64 / CPU_PERIOD_US as f64
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The system's page size, in bytes (4096 when it cannot be read).
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|size| size.is_power_of_two())
        .unwrap_or(4096)
}

impl From<&Limits> for CgroupLimits {
    fn from(limits: &Limits) -> CgroupLimits {
        CgroupLimits {
            pids: limits.pids,
            memory: limits.memory,
            cpus: limits.cpus,
        }
    }
}

/// Why a cgroup could not be checked, made, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A limit the spec asks for cannot be enforced on this host: no usable
    /// hierarchy has its controller. The reason names the hierarchy, file
    /// or permission, and what to do.
    #[error("`{limit}` cannot be enforced on this host: {reason}")]
    Unenforceable {
        /// The limit (`limits.pids`, `limits.memory`, `limits.cpus`).
        limit: &'static str,
        /// Why, and how to fix it.
        reason: String,
    },
    /// A limit's value is outside the range the kernel takes (zero,
    /// negative, not a number, or too large for its control file).
    #[error("`{limit}` is {value}; it must be {expected}")]
    InvalidLimit {
        /// The limit.
        limit: &'static str,
        /// Its value.
        value: String,
        /// The range it must be in.
        expected: String,
    },
    /// No cgroup can be made here at all (no hierarchy is mounted, or none
    /// is writable), so a command cannot get one even without limits.
    #[error("no cgroup can be created on this host: {reason}")]
    Unavailable {
        /// Why, per hierarchy.
        reason: String,
    },
    /// Reading, opening, creating, listing or removing a cgroup file or
    /// directory failed.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What was being done (`creating cgroup`, `reading`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// Writing a value to a control file failed (`EBUSY` from
    /// `cgroup.subtree_control` of a cgroup with processes, `EINVAL` for a
    /// value the kernel refuses, `EACCES` without delegation).
    #[error("writing `{value}` to `{path}`: {source}")]
    Write {
        /// The control file.
        path: PathBuf,
        /// The value.
        value: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// Processes were still in the cgroup after killing it for a few
    /// seconds (a process stuck in the kernel).
    #[error("cgroup `{path}` still holds {remaining} process(es) after being killed")]
    NotEmpty {
        /// One of its directories.
        path: PathBuf,
        /// How many processes were left.
        remaining: usize,
    },
}

/// How [`CgroupHost::detect`] looks at the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectOptions {
    /// Use cgroup v1 hierarchies.
    pub use_v1: bool,
    /// Use the cgroup v2 hierarchy.
    pub use_v2: bool,
    /// The name of the directory berth's cgroups go under, below berth's
    /// own cgroup in each hierarchy; garbage collection looks for
    /// directories of this name.
    pub base_name: String,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            use_v1: true,
            use_v2: true,
            base_name: DEFAULT_BASE_NAME.to_owned(),
        }
    }
}

/// A cgroup v1 hierarchy berth may use.
#[derive(Debug)]
struct V1Place {
    /// The hierarchy's controllers.
    controllers: Vec<String>,
    mount_point: PathBuf,
    /// `<own cgroup>/<base name>` (under the mount point when berth's own
    /// cgroup is not visible, and then not usable).
    base: PathBuf,
    /// Whether berth can create cgroups there, or why not.
    usable: Result<(), String>,
}

impl V1Place {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The cgroup v2 hierarchy and where berth's base goes in it.
#[derive(Debug)]
struct V2Place {
    mount_point: PathBuf,
    decision: V2Decision,
    /// The controllers offered to the parent of the base (its
    /// `cgroup.controllers`).
    controllers: Vec<String>,
    base_name: String,
}

impl V2Place {
    fn parent(&self) -> Option<&Path> {
        match &self.decision {
            V2Decision::Ready { parent }
            | V2Decision::MoveSelf { parent, .. }
            | V2Decision::Shared { parent, .. } => Some(parent),
            V2Decision::Refused { .. } => None,
        }
    }

    /// Why no controller can be enabled below the base, when command
    /// cgroups may go there but only to be killed.
    fn without_controllers(&self) -> Option<&str> {
        match &self.decision {
            V2Decision::Shared { reason, .. } => Some(reason),
            _ => None,
        }
    }

    fn base(&self) -> Option<PathBuf> {
        self.parent().map(|parent| parent.join(&self.base_name))
    }

    fn usable(&self) -> Result<(), String> {
        match &self.decision {
            V2Decision::Refused { reason } => Err(reason.clone()),
            _ => Ok(()),
        }
    }
}

/// Where a controller berth needs lives.
enum Location {
    V1(usize),
    V2,
}

/// This host's cgroup hierarchies as berth can use them: detected once,
/// then used to check limits, describe them and create command cgroups.
#[derive(Debug)]
pub struct CgroupHost {
    options: DetectOptions,
    hierarchy: Hierarchy,
    v1: Vec<V1Place>,
    v2: Option<V2Place>,
    /// Whether berth has moved itself into the v2 leaf.
    moved: Mutex<bool>,
    owner: Result<Owner, String>,
    /// Why detection itself could not read the host, if it could not.
    problem: Option<String>,
}

impl CgroupHost {
    /// The host as berth uses it by default, detected on first use.
    pub fn get() -> &'static CgroupHost {
        static HOST: OnceLock<CgroupHost> = OnceLock::new();
        HOST.get_or_init(|| CgroupHost::detect(DetectOptions::default()))
    }

    /// Detects the hierarchies and where berth may create cgroups in them.
    /// Never fails: what cannot be used is recorded with the reason, and
    /// [`CgroupHost::check`] refuses the limits that would need it.
    pub fn detect(options: DetectOptions) -> CgroupHost {
        let texts = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|err| format!("cannot read /proc/self/mountinfo: {err}"))
            .and_then(|mountinfo| {
                fs::read_to_string("/proc/self/cgroup")
                    .map(|cgroup| (mountinfo, cgroup))
                    .map_err(|err| format!("cannot read /proc/self/cgroup: {err}"))
            });
        let (layout, problem) = match texts {
            Ok((mountinfo, cgroup)) => (
                detect::layout(
                    &detect::parse_mountinfo(&mountinfo),
                    &detect::parse_proc_cgroup(&cgroup),
                ),
                None,
            ),
            Err(problem) => (detect::layout(&[], &[]), Some(problem)),
        };
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let v1 = if options.use_v1 {
            v1_places(&layout, &options.base_name, uid)
        } else {
            Vec::new()
        };
        let v2 = match (&layout.v2, options.use_v2) {
            (Some(v2), true) => Some(v2_place(v2, &options, uid)),
            _ => None,
        };
        CgroupHost {
            hierarchy: layout.hierarchy,
            v1,
            v2,
            moved: Mutex::new(false),
            owner: Owner::current().map_err(|err| format!("cannot identify this process: {err}")),
            problem,
            options,
        }
    }

    /// Which hierarchies the host has (whether or not berth may use them).
    pub fn hierarchy(&self) -> Hierarchy {
        self.hierarchy
    }

    /// The directories berth's cgroups go under (one per usable v1
    /// hierarchy, and the v2 one).
    pub fn base_dirs(&self) -> Vec<PathBuf> {
        let mut bases: Vec<PathBuf> = self
            .v1
            .iter()
            .filter(|place| place.usable.is_ok())
            .map(|place| place.base.clone())
            .collect();
        bases.extend(self.v2.as_ref().and_then(V2Place::base));
        bases
    }

    fn locate(&self, controller: &str) -> Result<Location, String> {
        if let Some(index) = self.v1.iter().position(|place| place.has(controller)) {
            let place = &self.v1[index];
            return match &place.usable {
                Ok(()) => Ok(Location::V1(index)),
                Err(reason) => Err(format!(
                    "the cgroup v1 `{controller}` hierarchy at `{}` is not usable: {reason}",
                    place.mount_point.display()
                )),
            };
        }
        let v1_note = match (self.options.use_v1, self.hierarchy) {
            (true, Hierarchy::V1 | Hierarchy::Hybrid) => {
                format!("no cgroup v1 hierarchy has the `{controller}` controller, and ")
            }
            _ => String::new(),
        };
        let Some(v2) = &self.v2 else {
            return Err(match &self.problem {
                Some(problem) => problem.clone(),
                None => format!(
                    "{v1_note}no cgroup v2 hierarchy is mounted{}",
                    if self.options.use_v2 { "" } else { " or used" }
                ),
            });
        };
        let Some(parent) = v2.parent() else {
            return Err(format!(
                "{v1_note}berth cannot create cgroups in the cgroup v2 hierarchy at `{}`: {}",
                v2.mount_point.display(),
                v2.usable().err().unwrap_or_default()
            ));
        };
        if let Some(reason) = v2.without_controllers() {
            return Err(format!(
                "{v1_note}berth cannot enable the `{controller}` controller for its command \
                 cgroups in the cgroup v2 hierarchy at `{}`: {reason}",
                v2.mount_point.display()
            ));
        }
        if v2.controllers.iter().any(|c| c == controller) {
            return Ok(Location::V2);
        }
        let offered = if v2.controllers.is_empty() {
            "none".to_owned()
        } else {
            v2.controllers.join(" ")
        };
        let advice = if self.hierarchy == Hierarchy::Hybrid {
            format!(
                "; on a hybrid host a controller bound to a cgroup v1 hierarchy is not \
                 offered in cgroup v2{}",
                if self.options.use_v1 {
                    ""
                } else {
                    ", and cgroup v1 is not used here"
                }
            )
        } else if parent == v2.mount_point {
            format!("; the kernel lacks the `{controller}` controller or it is disabled")
        } else {
            format!(
                "; have it delegated to berth's cgroup (systemd: `Delegate=` on the unit or \
                 scope, e.g. `systemd-run --user --scope -p Delegate={controller} berth ...`)"
            )
        };
        Err(format!(
            "{v1_note}the cgroup v2 hierarchy at `{}` does not offer the `{controller}` \
             controller to `{}` (its cgroup.controllers lists: {offered}){advice}",
            v2.mount_point.display(),
            parent.display()
        ))
    }

    /// Whether each limit `limits` sets can be enforced here.
    ///
    /// Fails with [`CgroupError::InvalidLimit`] for a value out of range,
    /// or with [`CgroupError::Unenforceable`] naming the first limit (in
    /// the order pids, memory, cpus) that no usable hierarchy can enforce,
    /// why, and what to do.
    pub fn check(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        limits.validate()?;
        for (limit, controller, set) in limit_controllers(limits) {
            if set {
                self.locate(controller)
                    .map_err(|reason| CgroupError::Unenforceable { limit, reason })?;
            }
        }
        Ok(())
    }

    /// One line per limit for `berth doctor`: how it is enforced here, or
    /// why it cannot be; then how commands are killed, and whether berth
    /// will move itself into a leaf cgroup.
    pub fn describe(&self) -> Vec<Diagnostic> {
        let mut lines = vec![Diagnostic {
            check: "cgroups".to_owned(),
            ok: self.hierarchy != Hierarchy::Absent,
            detail: self.summary(),
        }];
        for (limit, controller, _) in limit_controllers(&CgroupLimits::default()) {
            let (ok, detail) = match self.locate(controller) {
                Ok(Location::V1(index)) => {
                    let place = &self.v1[index];
                    (
                        true,
                        format!(
                            "cgroup v1 {controller} controller at `{}`{}",
                            place.base.display(),
                            enforcement_note(controller, true)
                        ),
                    )
                }
                Ok(Location::V2) => (
                    true,
                    format!(
                        "cgroup v2 {controller} controller at `{}`{}",
                        self.v2
                            .as_ref()
                            .and_then(V2Place::base)
                            .unwrap_or_default()
                            .display(),
                        enforcement_note(controller, false)
                    ),
                ),
                Err(reason) => (false, reason),
            };
            lines.push(Diagnostic {
                check: limit.to_owned(),
                ok,
                detail,
            });
        }
        let (ok, detail) = match self.plan(&CgroupLimits::default()) {
            Ok(bases) => (true, kill_description(&bases)),
            Err(err) => (false, err.to_string()),
        };
        lines.push(Diagnostic {
            check: "cgroup kill".to_owned(),
            ok,
            detail,
        });
        lines.extend(self.placement());
        lines
    }

    /// `berth doctor`'s line on where command cgroups go, when they can go
    /// anywhere.
    fn placement(&self) -> Option<Diagnostic> {
        let mut parts = Vec::new();
        let v1: Vec<String> = self
            .v1
            .iter()
            .filter(|place| place.usable.is_ok())
            .map(|place| format!("`{}`", place.base.display()))
            .collect();
        if !v1.is_empty() {
            parts.push(format!("cgroup v1 under {}", v1.join(", ")));
        }
        if let Some(v2) = &self.v2
            && let Some(base) = v2.base()
        {
            let base = base.display();
            parts.push(match &v2.decision {
                V2Decision::MoveSelf { parent, leaf } => format!(
                    "cgroup v2 under `{base}`; berth is the only process in its cgroup `{}` \
                     and moves itself into `{}` when it creates its first command cgroup, \
                     so that `{}` can enable controllers for its commands",
                    parent.display(),
                    leaf.display(),
                    parent.display()
                ),
                V2Decision::Shared { reason, .. } => format!(
                    "cgroup v2 under `{base}`, to kill commands only, without controllers \
                     (limits needing one are refused): {reason}"
                ),
                V2Decision::Ready { .. } | V2Decision::Refused { .. } => {
                    format!("cgroup v2 under `{base}`")
                }
            });
        }
        if parts.is_empty() {
            return None;
        }
        Some(Diagnostic {
            check: "cgroup placement".to_owned(),
            ok: true,
            detail: format!(
                "command cgroups go below berth's own cgroup in each hierarchy, so the limits \
                 of the cgroups berth runs in bind its commands too: {}",
                parts.join("; ")
            ),
        })
    }

    fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(problem) = &self.problem {
            parts.push(problem.clone());
        }
        let v1: Vec<String> = self
            .v1
            .iter()
            .map(|place| {
                format!(
                    "{} at `{}`{}",
                    place.controllers.join(","),
                    place.mount_point.display(),
                    if place.usable.is_ok() {
                        ""
                    } else {
                        " (not usable)"
                    }
                )
            })
            .collect();
        if !v1.is_empty() {
            parts.push(format!("v1 {}", v1.join(", ")));
        }
        if let Some(v2) = &self.v2 {
            parts.push(format!(
                "v2 at `{}` (controllers: {}){}",
                v2.mount_point.display(),
                if v2.controllers.is_empty() {
                    "none".to_owned()
                } else {
                    v2.controllers.join(" ")
                },
                if v2.usable().is_ok() {
                    ""
                } else {
                    " (not usable)"
                }
            ));
        }
        format!("{}: {}", self.hierarchy, parts.join("; "))
    }

    /// The directories a command cgroup with `limits` gets: each as its
    /// base, its hierarchy, and the limits written there.
    fn plan(
        &self,
        limits: &CgroupLimits,
    ) -> Result<Vec<(PathBuf, DirVersion, CgroupLimits)>, CgroupError> {
        self.check(limits)?;
        let mut v1_limits: BTreeMap<usize, CgroupLimits> = BTreeMap::new();
        let mut v2_limits = CgroupLimits::default();
        let mut v2_needed = false;
        for (_, controller, set) in limit_controllers(limits) {
            if !set {
                continue;
            }
            let only = only_limit(limits, controller);
            match self.locate(controller) {
                Ok(Location::V1(index)) => {
                    let entry = v1_limits.entry(index).or_default();
                    merge(entry, &only);
                }
                Ok(Location::V2) => {
                    v2_needed = true;
                    merge(&mut v2_limits, &only);
                }
                Err(_) => unreachable!("check() located every limit"),
            }
        }
        let v2_usable = self.v2.as_ref().filter(|v2| v2.usable().is_ok());
        let with_v2 = v2_needed || v2_usable.is_some();
        if !with_v2
            && let Some(index) = self
                .v1
                .iter()
                .position(|place| place.has(FREEZER) && place.usable.is_ok())
        {
            v1_limits.entry(index).or_default();
        }
        if !with_v2
            && v1_limits.is_empty()
            && let Some(index) = self
                .v1
                .iter()
                .position(|place| place.usable.is_ok() && (place.has(PIDS) || place.has(MEMORY)))
        {
            v1_limits.entry(index).or_default();
        }
        let mut bases: Vec<(PathBuf, DirVersion, CgroupLimits)> = v1_limits
            .into_iter()
            .map(|(index, limits)| {
                let place = &self.v1[index];
                (
                    place.base.clone(),
                    DirVersion::V1(place.controllers.clone()),
                    limits,
                )
            })
            .collect();
        if let Some(base) = v2_usable.and_then(V2Place::base).filter(|_| with_v2) {
            bases.push((base, DirVersion::V2, v2_limits));
        }
        if bases.is_empty() {
            return Err(CgroupError::Unavailable {
                reason: self.unavailable_reason(),
            });
        }
        Ok(bases)
    }

    fn unavailable_reason(&self) -> String {
        let mut reasons: Vec<String> = self.problem.iter().cloned().collect();
        for place in &self.v1 {
            if let Err(reason) = &place.usable {
                reasons.push(format!(
                    "cgroup v1 `{}`: {reason}",
                    place.mount_point.display()
                ));
            }
        }
        if let Some(v2) = &self.v2
            && let Err(reason) = v2.usable()
        {
            reasons.push(format!(
                "cgroup v2 `{}`: {reason}",
                v2.mount_point.display()
            ));
        }
        if reasons.is_empty() {
            reasons.push(match self.hierarchy {
                Hierarchy::Absent => "no cgroup file system is mounted".to_owned(),
                _ => "no hierarchy berth uses (pids, memory, freezer, or cgroup v2) is \
                      selected"
                    .to_owned(),
            });
        }
        reasons.join("; ")
    }

    /// Makes a cgroup for one command with `limits` written, named after
    /// this process (its owner) and `name_hint` (a few characters for
    /// people reading `/sys/fs/cgroup`).
    ///
    /// Also without limits it makes a cgroup, so that the command's
    /// processes can be found and killed. On cgroup v2 it enables the
    /// controllers it needs in the parents' `cgroup.subtree_control`, and
    /// may first move this process into a leaf (see the module
    /// documentation).
    ///
    /// Fails as [`CgroupHost::check`] does, with
    /// [`CgroupError::Unavailable`] when no cgroup can be made here, and
    /// with [`CgroupError::Io`] / [`CgroupError::Write`] naming the
    /// directory or file that could not be made or written.
    pub fn create(
        &self,
        limits: &CgroupLimits,
        name_hint: &str,
    ) -> Result<CommandCgroup, CgroupError> {
        let owner = self
            .owner
            .clone()
            .map_err(|reason| CgroupError::Unavailable { reason })?;
        self.create_owned_by(&owner, limits, name_hint)
    }

    /// Like [`CgroupHost::create`], with the cgroup recorded as belonging
    /// to `owner` rather than this process, for a process that makes
    /// cgroups on behalf of another (a keeper, a server's worker) whose
    /// death should make them garbage.
    ///
    /// Fails as [`CgroupHost::create`] does.
    pub fn create_owned_by(
        &self,
        owner: &Owner,
        limits: &CgroupLimits,
        name_hint: &str,
    ) -> Result<CommandCgroup, CgroupError> {
        let bases = self.plan(limits)?;
        let name = owner.cgroup_name(NEXT_SEQ.fetch_add(1, Ordering::Relaxed), name_hint);
        let mut attempt = 1;
        loop {
            let made = self
                .prepare_bases(&bases)
                .and_then(|()| CommandCgroup::make(name.clone(), &bases, *limits));
            match made {
                // The removal of another command cgroup took an empty base
                // away meanwhile (see `CommandCgroup::remove`): again.
                Err(err) if attempt < BASE_ATTEMPTS && vanished(&err) => attempt += 1,
                made => return made,
            }
        }
    }

    /// Makes each base of a plan, ready for the limits written below it.
    fn prepare_bases(
        &self,
        bases: &[(PathBuf, DirVersion, CgroupLimits)],
    ) -> Result<(), CgroupError> {
        for (base, version, limits) in bases {
            match version {
                DirVersion::V1(_) => control::make_dir(base)?,
                DirVersion::V2 => self.prepare_v2(base, limits)?,
            }
        }
        Ok(())
    }

    /// Makes the cgroup v2 base ready for a command that needs the
    /// controllers of `limits`: moves berth into its leaf if that is the
    /// plan, enables the controllers in the parent and in the base.
    fn prepare_v2(&self, base: &Path, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let Some(v2) = &self.v2 else {
            return Ok(());
        };
        let Some(parent) = v2.parent() else {
            return Err(CgroupError::Unavailable {
                reason: v2.usable().err().unwrap_or_default(),
            });
        };
        if let V2Decision::MoveSelf { leaf, .. } = &v2.decision {
            let mut moved = self
                .moved
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            if !*moved {
                control::make_dir(leaf)?;
                control::write(&leaf.join("cgroup.procs"), &std::process::id().to_string())?;
                tracing::info!(
                    leaf = %leaf.display(),
                    "berth moved itself into a leaf cgroup so that its cgroup can enable \
                     controllers for command cgroups"
                );
                *moved = true;
            }
        }
        let controllers: Vec<&str> = limit_controllers(limits)
            .into_iter()
            .filter(|(_, _, set)| *set)
            .map(|(_, controller, _)| controller)
            .collect();
        enable_controllers(parent, &controllers)?;
        control::make_dir(base)?;
        enable_controllers(base, &controllers)
    }

    /// Kills and removes the command cgroups whose owner is gone (unless
    /// `dry_run`), wherever they are in the hierarchies berth uses, and
    /// returns one [`Leftover`] per directory found that way, plus one per
    /// directory under a base that is not named like a command cgroup
    /// (kept). Cgroups of live owners, and of owners in another pid
    /// namespace, are not listed.
    ///
    /// Bases are found by name (see [`DetectOptions::base_name`]) in a
    /// bounded breadth-first search from each hierarchy's root (see the
    /// module documentation), so the cgroups a berth running in another
    /// cgroup made are found too.
    ///
    /// A cgroup that could not be removed comes back with `removed: false`
    /// and the failure in its reason; the others are still removed. Fails
    /// only when a base exists but cannot be listed.
    pub fn collect_garbage(&self, dry_run: bool) -> Result<Vec<Leftover>, CgroupError> {
        let mut roots: Vec<(PathBuf, DirVersion)> = self
            .v1
            .iter()
            .map(|place| {
                (
                    place.mount_point.clone(),
                    DirVersion::V1(place.controllers.clone()),
                )
            })
            .collect();
        roots.extend(
            self.v2
                .as_ref()
                .map(|v2| (v2.mount_point.clone(), DirVersion::V2)),
        );
        let mut found = Found::default();
        for (root, version) in roots {
            found.search(&root, &version, &self.options.base_name)?;
        }
        let Found {
            commands: found,
            foreign,
        } = found;
        let mut leftovers: Vec<Leftover> = foreign
            .into_iter()
            .map(|path| Leftover {
                kind: CGROUP_KIND.to_owned(),
                id: path.display().to_string(),
                reason: "not named like a berth command cgroup; kept".to_owned(),
                removed: false,
            })
            .collect();
        for (name, (owner, dirs)) in found {
            if owner.is_alive() != Some(false) {
                continue;
            }
            let mut reason = format!(
                "owner pid {} (started at tick {}) is gone",
                owner.pid, owner.start_time
            );
            let paths: Vec<PathBuf> = dirs.iter().map(|(path, _)| path.clone()).collect();
            let removed = !dry_run
                && match CommandCgroup::adopt(name, dirs).and_then(CommandCgroup::remove) {
                    Ok(()) => true,
                    Err(err) => {
                        reason.push_str(&format!("; removing it failed: {err}"));
                        false
                    }
                };
            leftovers.extend(paths.into_iter().map(|path| Leftover {
                kind: CGROUP_KIND.to_owned(),
                id: path.display().to_string(),
                reason: reason.clone(),
                removed,
            }));
        }
        Ok(leftovers)
    }

    /// Removes berth's base directories where they are empty (and the v2
    /// leaf berth moved into, once this process has left it): for tests
    /// and uninstalling. Bases still holding cgroups are kept.
    ///
    /// Fails when a base exists and cannot be removed for another reason
    /// than holding cgroups or processes.
    pub fn remove_bases(&self) -> Result<(), CgroupError> {
        let mut dirs = self.base_dirs();
        if let Some(V2Place {
            decision: V2Decision::MoveSelf { leaf, .. },
            ..
        }) = &self.v2
        {
            dirs.push(leaf.clone());
        }
        for dir in dirs {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(err)
                    if err.kind() == io::ErrorKind::NotFound
                        || matches!(err.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {}
                Err(err) => return Err(control::io_error("removing cgroup", &dir)(err)),
            }
        }
        Ok(())
    }
}

/// What garbage collection's search of the hierarchies found.
#[derive(Debug, Default)]
struct Found {
    /// The directories of each command cgroup (one per hierarchy), by
    /// name, with the owner the name records.
    commands: BTreeMap<String, (Owner, Vec<(PathBuf, DirVersion)>)>,
    /// Directories under a base that are not named like command cgroups.
    foreign: Vec<PathBuf>,
}

impl Found {
    /// Searches the hierarchy whose root is `root` for bases named
    /// `base_name` and records what they hold: breadth first, without
    /// recursion, at most [`GC_MAX_DEPTH`] levels below the root and
    /// [`GC_MAX_CGROUPS`] directories listed. Command cgroups of live
    /// owners are searched further (a berth that one of their commands
    /// runs puts its base inside); those of dead owners are not, as they
    /// are removed whole.
    ///
    /// Fails only when a base exists but cannot be listed; another cgroup
    /// that cannot be listed (gone meanwhile, or not readable by this
    /// user) is passed over.
    fn search(
        &mut self,
        root: &Path,
        version: &DirVersion,
        base_name: &str,
    ) -> Result<(), CgroupError> {
        let mut queue = std::collections::VecDeque::from([(root.to_path_buf(), 0usize)]);
        let mut listed = 0usize;
        while let Some((dir, depth)) = queue.pop_front() {
            if listed >= GC_MAX_CGROUPS {
                tracing::warn!(
                    hierarchy = %root.display(),
                    "looked for berth cgroups in {GC_MAX_CGROUPS} cgroups of this hierarchy \
                     and stopped; berth cgroups beyond them were not collected"
                );
                break;
            }
            listed += 1;
            let children = match child_dirs(&dir) {
                Ok(children) => children,
                Err(err) => {
                    tracing::debug!(cgroup = %dir.display(), "not searched: {err}");
                    continue;
                }
            };
            for (name, path) in children {
                if name != base_name {
                    if depth < GC_MAX_DEPTH {
                        queue.push_back((path, depth + 1));
                    }
                    continue;
                }
                listed += 1;
                let commands = match child_dirs(&path) {
                    Ok(commands) => commands,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(control::io_error("listing", &path)(err)),
                };
                for (name, command) in commands {
                    let Some(owner) = Owner::from_cgroup_name(&name) else {
                        self.foreign.push(command);
                        continue;
                    };
                    if owner.is_alive() != Some(false) && depth + 1 < GC_MAX_DEPTH {
                        queue.push_back((command.clone(), depth + 2));
                    }
                    self.commands
                        .entry(name)
                        .or_insert_with(|| (owner, Vec::new()))
                        .1
                        .push((command, version.clone()));
                }
            }
        }
        Ok(())
    }
}

/// The directories directly inside `dir`, with their names.
fn child_dirs(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut children = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            children.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    Ok(children)
}

/// Whether `err` says a directory or file was not there (a base removed
/// by another command cgroup's removal at the wrong moment).
fn vanished(err: &CgroupError) -> bool {
    match err {
        CgroupError::Io { source, .. } | CgroupError::Write { source, .. } => {
            source.kind() == io::ErrorKind::NotFound
        }
        _ => false,
    }
}

/// The limits with their names and controllers, and whether each is set.
fn limit_controllers(limits: &CgroupLimits) -> [(&'static str, &'static str, bool); 3] {
    [
        ("limits.pids", PIDS, limits.pids.is_some()),
        ("limits.memory", MEMORY, limits.memory.is_some()),
        ("limits.cpus", CPU, limits.cpus.is_some()),
    ]
}

/// `limits` with only the limit of `controller` kept.
fn only_limit(limits: &CgroupLimits, controller: &str) -> CgroupLimits {
    CgroupLimits {
        pids: limits.pids.filter(|_| controller == PIDS),
        memory: limits.memory.filter(|_| controller == MEMORY),
        cpus: limits.cpus.filter(|_| controller == CPU),
    }
}

fn merge(into: &mut CgroupLimits, from: &CgroupLimits) {
    into.pids = into.pids.or(from.pids);
    into.memory = into.memory.or(from.memory);
    into.cpus = into.cpus.or(from.cpus);
}

fn enforcement_note(controller: &str, v1: bool) -> String {
    match (controller, v1) {
        (PIDS, _) => " (pids.max)".to_owned(),
        (MEMORY, true) => " (memory.limit_in_bytes and memory.memsw.limit_in_bytes when swap \
                           is accounted; tmpfs pages count)"
            .to_owned(),
        (MEMORY, false) => " (memory.max, and memory.swap.max = 0 when swap is accounted; \
                            tmpfs pages count)"
            .to_owned(),
        (_, true) => format!(" (cpu.cfs_quota_us per {CPU_PERIOD_US} us period)"),
        (_, false) => format!(" (cpu.max per {CPU_PERIOD_US} us period)"),
    }
}

fn kill_description(bases: &[(PathBuf, DirVersion, CgroupLimits)]) -> String {
    if let Some((base, _, _)) = bases.iter().find(|(_, v, _)| *v == DirVersion::V2) {
        if kernel_has_cgroup_kill() {
            return format!("cgroup v2 cgroup.kill under `{}`", base.display());
        }
        return format!(
            "cgroup v2 cgroup.freeze under `{}`, then SIGKILL to each member until empty \
             (no cgroup.kill before Linux 5.14)",
            base.display()
        );
    }
    if let Some((base, _, _)) = bases
        .iter()
        .find(|(_, v, _)| matches!(v, DirVersion::V1(c) if c.iter().any(|c| c == FREEZER)))
    {
        return format!(
            "cgroup v1 freezer under `{}`: freeze, SIGKILL each member, thaw, until empty",
            base.display()
        );
    }
    let base = bases
        .first()
        .map(|(base, _, _)| base.display().to_string())
        .unwrap_or_default();
    format!("SIGKILL to each member of the cgroup under `{base}` until empty (no freezer)")
}

/// Whether the running kernel has `cgroup.kill` (Linux 5.14).
fn kernel_has_cgroup_kill() -> bool {
    let Ok(release) = fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse::<u32>().ok());
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (5, 14)
}

/// Enables `controllers` for the children of the cgroup `dir` (those not
/// enabled yet), in one write to its `cgroup.subtree_control`.
fn enable_controllers(dir: &Path, controllers: &[&str]) -> Result<(), CgroupError> {
    if controllers.is_empty() {
        return Ok(());
    }
    let path = dir.join("cgroup.subtree_control");
    let enabled = control::read(&path)?;
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.split_ascii_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    control::write(&path, &missing.join(" "))
}

fn v1_places(layout: &Layout, base_name: &str, uid: u32) -> Vec<V1Place> {
    layout
        .v1
        .iter()
        .filter(|mount| {
            [PIDS, MEMORY, CPU, FREEZER]
                .iter()
                .any(|c| mount.controllers.iter().any(|m| m == c))
        })
        .map(|mount| {
            let (base, usable) = match &mount.own {
                None => (
                    mount.mount_point.join(base_name),
                    Err(format!(
                        "berth's own cgroup in this hierarchy is not visible under `{}` \
                         (/proc/self/cgroup names a cgroup outside this mount), and berth \
                         makes its cgroups only below its own",
                        mount.mount_point.display()
                    )),
                ),
                Some(own) => {
                    let base = own.join(base_name);
                    let usable = if base.is_dir() {
                        control::writable(&base).map_err(|err| {
                            format!("`{}` is not writable by uid {uid}: {err}", base.display())
                        })
                    } else {
                        control::writable(own).map_err(|err| {
                            format!(
                                "berth's own cgroup `{}` is not writable by uid {uid} ({err}), \
                                 so `{}` cannot be created; run berth as root, or have `{}` \
                                 made and given to uid {uid} (berth makes its cgroups only \
                                 below its own, so that the limits of the cgroup it runs in \
                                 bind its commands too)",
                                own.display(),
                                base.display(),
                                base.display()
                            )
                        })
                    };
                    (base, usable)
                }
            };
            V1Place {
                controllers: mount.controllers.clone(),
                mount_point: mount.mount_point.clone(),
                base,
                usable,
            }
        })
        .collect()
}

fn read_pids(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| detect::parse_pids(&text))
        .unwrap_or_default()
}

fn v2_place(mount: &detect::V2Mount, options: &DetectOptions, uid: u32) -> V2Place {
    let delegated = |dir: &Path| {
        control::writable(dir).is_ok()
            && control::writable(&dir.join("cgroup.procs")).is_ok()
            && control::writable(&dir.join("cgroup.subtree_control")).is_ok()
    };
    let own = mount.own.as_deref().map(|own| {
        let dir = detect::own_parent(own);
        OwnFacts {
            writable: delegated(&dir),
            // Only the real root has no `cgroup.type`; a cgroup
            // namespace's root is an ordinary cgroup.
            is_real_root: !dir.join("cgroup.type").exists(),
            procs: read_pids(&dir),
            dir,
        }
    });
    let facts = V2Facts {
        mount_point: mount.mount_point.clone(),
        own,
        self_pid: std::process::id(),
        uid,
    };
    let decision = detect::decide_v2(&facts);
    let controllers = match &decision {
        V2Decision::Ready { parent }
        | V2Decision::MoveSelf { parent, .. }
        | V2Decision::Shared { parent, .. } => {
            fs::read_to_string(parent.join("cgroup.controllers"))
                .map(|text| text.split_ascii_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        }
        V2Decision::Refused { .. } => Vec::new(),
    };
    V2Place {
        mount_point: mount.mount_point.clone(),
        decision,
        controllers,
        base_name: options.base_name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pids(pids: u64) -> CgroupLimits {
        CgroupLimits {
            pids: Some(pids),
            ..CgroupLimits::default()
        }
    }

    fn memory(memory: u64) -> CgroupLimits {
        CgroupLimits {
            memory: Some(memory),
            ..CgroupLimits::default()
        }
    }

    fn cpus(cpus: f64) -> CgroupLimits {
        CgroupLimits {
            cpus: Some(cpus),
            ..CgroupLimits::default()
        }
    }

    #[test]
    fn values_no_cgroup_takes_are_refused_naming_the_limit_and_the_range() {
        // Validation comes before any look at the host: these are refused
        // on a host with no cgroup at all too.
        let host = CgroupHost::detect(DetectOptions {
            use_v1: false,
            use_v2: false,
            ..DetectOptions::default()
        });
        let page = page_size();
        for (limits, name, range) in [
            (
                pids(0),
                "limits.pids",
                format!("from 1 to {PIDS_MAX} processes"),
            ),
            (pids(PIDS_MAX + 1), "limits.pids", format!("to {PIDS_MAX}")),
            (pids(u64::MAX), "limits.pids", format!("to {PIDS_MAX}")),
            (memory(0), "limits.memory", format!("from {page} bytes")),
            (memory(page - 1), "limits.memory", "one page".to_owned()),
            (
                memory((1 << 63) - page),
                "limits.memory",
                format!("from {} on", (1u64 << 63) - page),
            ),
            (memory(u64::MAX), "limits.memory", "no limit".to_owned()),
            (cpus(f64::NAN), "limits.cpus", "from 0.01 to".to_owned()),
            (cpus(-1.0), "limits.cpus", "from 0.01 to".to_owned()),
            (cpus(0.0), "limits.cpus", "from 0.01 to".to_owned()),
            (cpus(0.0049), "limits.cpus", "from 0.01 to".to_owned()),
            (
                cpus(f64::INFINITY),
                "limits.cpus",
                "to 175921860.44415".to_owned(),
            ),
            (
                cpus(1e300),
                "limits.cpus",
                "is 1e300; it must be".to_owned(),
            ),
            (
                cpus(175_921_861.0),
                "limits.cpus",
                "17592186044415 us".to_owned(),
            ),
        ] {
            let err = host.check(&limits).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(&err, CgroupError::InvalidLimit { limit, .. } if *limit == name),
                "{limits:?}: {text}"
            );
            assert!(text.contains(name) && text.contains(&range), "{text}");
        }
        // The ends of each range are taken (refused here only because this
        // host uses no hierarchy).
        for limits in [
            pids(1),
            pids(PIDS_MAX),
            memory(page),
            memory((1 << 63) - page - 1),
            cpus(0.01),
            cpus(0.009_995),
            cpus(175_921_860.0),
        ] {
            let err = host.check(&limits).unwrap_err();
            assert!(
                matches!(err, CgroupError::Unenforceable { .. }),
                "{limits:?}: {err}"
            );
        }
    }

    #[test]
    fn spec_limits_convert() {
        let limits = Limits {
            pids: Some(3),
            memory: Some(4),
            cpus: Some(0.5),
            ..Limits::default()
        };
        let converted = CgroupLimits::from(&limits);
        assert_eq!(
            converted,
            CgroupLimits {
                pids: Some(3),
                memory: Some(4),
                cpus: Some(0.5)
            }
        );
        assert!(!converted.is_empty());
        assert!(CgroupLimits::from(&Limits::default()).is_empty());
    }

    #[test]
    fn a_host_with_no_hierarchy_selected_refuses_limits_and_cgroups() {
        let host = CgroupHost::detect(DetectOptions {
            use_v1: false,
            use_v2: false,
            ..DetectOptions::default()
        });
        let err = host
            .check(&CgroupLimits {
                memory: Some(1 << 20),
                ..CgroupLimits::default()
            })
            .unwrap_err();
        assert!(
            matches!(
                &err,
                CgroupError::Unenforceable {
                    limit: "limits.memory",
                    ..
                }
            ),
            "{err}"
        );
        let err = host.create(&CgroupLimits::default(), "x").unwrap_err();
        assert!(matches!(err, CgroupError::Unavailable { .. }), "{err}");
        let lines = host.describe();
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(lines[1..].iter().all(|line| !line.ok), "{lines:?}");
        assert!(host.base_dirs().is_empty());
        assert!(host.collect_garbage(true).unwrap().is_empty());
    }

    #[test]
    fn fake_v2_tree_gets_controllers_enabled_in_parent_and_base() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), "cpu\n").unwrap();
        enable_controllers(root.path(), &[PIDS, MEMORY, CPU]).unwrap();
        assert_eq!(
            fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(),
            "+pids +memory"
        );
        fs::write(
            root.path().join("cgroup.subtree_control"),
            "cpu pids memory\n",
        )
        .unwrap();
        enable_controllers(root.path(), &[PIDS, CPU]).unwrap();
        assert_eq!(
            fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(),
            "cpu pids memory\n",
            "nothing written when all are on"
        );
        enable_controllers(&root.path().join("absent"), &[]).unwrap();
        let err = enable_controllers(&root.path().join("absent"), &[PIDS]).unwrap_err();
        assert!(err.to_string().contains("cgroup.subtree_control"), "{err}");
    }
}
