//! The `namespace` backend, shipped as a `cdylib` plugin: every command
//! runs in new Linux user, pid, mount, network, ipc and uts namespaces,
//! without Docker and without an image.
//!
//! What a command sees:
//!
//! * the workspace, read-write, at `/workspace` (its working directory);
//! * the host's system directories (`namespace.system_dirs`, by default
//!   `/usr`, `/bin`, `/sbin`, `/lib*` and `/etc`), read-only;
//! * assets, read-only, at `/static/<save_path>`
//!   ([`Runtime::asset_path`] says so), and the spawn's extra mounts;
//! * a private `/tmp` and `/dev/shm` (tmpfs, fresh for each command, each
//!   capped at `namespace.tmpfs_size` and at `limits.memory`), a
//!   minimal `/dev`, and a fresh `/proc` that shows only the command's own
//!   processes (its kernel settings read-only, its views of the host's keys
//!   and timers masked);
//! * no network but its own loopback, unless `namespace.network: host`;
//! * nothing else: the root is a read-only tmpfs, so the rest of the host's
//!   file system does not exist there, and `..` or a symlink in the
//!   workspace resolves inside that root.
//!
//! **Users.** The caller's uid and gid are mapped to the same ids inside
//! (root stays uid 0, a user stays that user), so files a command creates
//! in the workspace belong to the caller on the host. The command keeps no
//! capability, even as uid 0: the bounding set is emptied and
//! no-new-privileges is set before exec, so it cannot remount, unmount or
//! gain privileges through set-user-id binaries.
//!
//! **System calls.** Commands run under a seccomp filter chosen by
//! `namespace.seccomp` ([`NamespaceConfig::seccomp`]). The default profile,
//! modelled on Docker's (the module [`runtime_local::seccomp`] lists it and
//! says why), refuses with `EPERM` the calls behind most container escapes:
//! io_uring, `bpf`, `perf_event_open`, the keyrings, `userfaultfd`, kexec
//! and kernel modules, new namespaces (so nested sandboxes — `unshare`,
//! bubblewrap, berth itself — do not work inside), the mount family, and
//! `ptrace` and its relatives (so `strace` and `gdb` do not either); a
//! call through another ABI (a 32-bit or x32 binary) kills the process.
//! Ordinary work — interpreters, compilers, git, threads, subprocesses,
//! loopback servers — never meets it. `/proc/self/status` shows
//! `Seccomp: 2`. `unconfined` runs commands without a filter, and any other
//! value is the path of a profile file in Docker's JSON format. The filter
//! is the command's last step before exec, after its capabilities are
//! dropped, so the sandbox's own setup is not filtered; everything the
//! command starts inherits it.
//!
//! **Processes.** The shell leads a session of its own, so it has no
//! controlling terminal of the host's. It is the first child of a new pid
//! namespace whose init is
//! a small supervisor that exits when the shell does; the kernel then kills
//! everything else in the namespace. So nothing a command starts outlives
//! it — not on exit, timeout, kill, cleanup, nor when the host dies (the
//! init has a parent-death signal). The command starts with only
//! descriptors 0, 1 and 2, whatever the host left open. The supervisor and
//! the init are `berth-sandbox`, a static program of a few KiB that berth
//! starts without copying its own process (and which joins the command's
//! cgroup when the spec sets limits); where it cannot be executed, a fork
//! of berth builds the same sandbox. Where the sandbox's
//! `/bin/sh` is the host's dash, a command of literal words (`python3 -c
//! pass`) starts its program in the shell's place, as a local command
//! does, with `PWD` set to `/workspace`.
//!
//! **Limits.** `limits.pids`, `limits.memory` (tmpfs pages included) and
//! `limits.cpus` are enforced by a cgroup per command, also when berth runs
//! as root; `limits.pids` falls back to `RLIMIT_NPROC` (counted per user
//! namespace) for a caller other than root where no cgroup is available.
//! A limit this host cannot enforce fails the spawn naming it, and
//! [`Capabilities`] claims only what holds here; `berth doctor` says how
//! each is enforced or why not. `limits.file_size` is an rlimit.
//!
//! **Per-user quotas.** The kernel charges some quotas to a user, and a
//! sandbox's commands are the caller's user: without a bound, one command
//! that queues real-time signals or opens inotify instances until refused
//! makes `sigqueue`, `timer_create` or `inotify_init` fail in every other
//! process of the caller (all of the host's root, when berth runs as root).
//! A sandbox takes at most a quarter of each of the caller's
//! (the module `quotas` says how each is enforced):
//!
//! * `RLIMIT_SIGPENDING` (queued signals; each POSIX timer holds one),
//!   `RLIMIT_MSGQUEUE` (POSIX message queue bytes) and `RLIMIT_MEMLOCK`
//!   (memory locked with `mlock` or `SHM_LOCK`): lowered before the user
//!   namespace is made, so the sandboxes of one user share that quarter
//!   between them, and the caller's other processes always keep the rest;
//!   a command queueing signals while the caller's processes already hold
//!   a quarter gets `EAGAIN`;
//! * the limits of `/proc/sys/user` in the sandbox's own user namespace:
//!   inotify instances and watches, fanotify groups and marks, and
//!   namespaces of each kind, a quarter each for every sandbox on its own
//!   (so several sandboxes running at once can take more); no user
//!   namespace at all under the default seccomp profile;
//! * for a caller other than root, `RLIMIT_NPROC` in the new user
//!   namespace (the host's root is exempt from it: `limits.pids` bounds
//!   its sandboxes' processes).
//!
//! These are not settings: the shares follow berth's own limits, so
//! raising the host's (`ulimit -i`, `fs.inotify.max_user_watches`) for a
//! workload that needs more raises the sandbox's with it. An unlimited
//! rlimit stays unlimited. `berth doctor` shows the shares (`quotas`).
//!
//! **Cost.** Nothing is copied and no image is built: a command costs a
//! few forks, the namespaces and a couple of dozen mounts, all between
//! fork and exec. Everything the child needs is prepared once at spawn.
//!
//! The spec's `namespace:` block is [`NamespaceConfig`]. Spawning runs the
//! setup commands (or a probe, `true`) in the sandbox, so a host where it
//! cannot be built fails at spawn with [`Error::Backend`] saying which step
//! failed; [`Backend::diagnose`] reports the same for `berth doctor`. The
//! probe runs once per shape of sandbox in a process (the same namespaces,
//! mounts, filter and shell; the workspace and assets may be elsewhere):
//! a later spawn of that shape only checks that its own host paths can be
//! reached, and should its sandbox still fail to build, its first command
//! fails (`SpawnFailed`, with the same message) instead of the spawn, and
//! the next spawn of that shape runs the probe again.

#![warn(missing_docs)]

mod child;
mod config;
mod limits;
mod plan;
mod program;
mod quotas;
mod runtime;

use std::sync::Arc;

use async_trait::async_trait;
use indexmap::IndexMap;
use runtime_local::kit::HostSettings;
use runtime_local::seccomp;
use session_core::runtime::{
    Backend, BackendInfo, Capabilities, Diagnostic, ExecCommand, ExecResult, Runtime, SpawnContext,
};
use session_core::spec::{EnvironmentSpec, Mode};
use session_core::{Error, Result};

pub use crate::config::{DEFAULT_TMPFS_SIZE, NamespaceConfig, Network};
pub use crate::plan::{DEFAULT_SYSTEM_DIRS, RESERVED, STATIC_DIR, WORKDIR};
#[doc(hidden)]
pub use crate::program::use_fork;
pub use crate::runtime::{NamespaceRuntime, Namespaces};
pub use runtime_local::seccomp::Setting as SeccompSetting;

use crate::plan::Plan;

/// The spec `type` this backend serves.
pub const TYPE_NAME: &str = "namespace";

/// `PATH` inside the sandbox unless the spec sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `HOME` inside the sandbox unless the spec sets one: the private `/tmp`,
/// so tools' caches never land in the workspace (and its snapshots).
pub const DEFAULT_HOME: &str = "/tmp";

/// How long `berth doctor`'s command reading its seccomp state may take.
const STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The shapes of sandbox ([`Plan::shape`]) this process built and started a
/// command in at a spawn (its probe or its setup commands): a later spawn
/// of one of them checks that its own host paths can be reached and skips
/// the probe, whose sandbox costs as much to build as a command's.
#[derive(Debug, Default)]
pub(crate) struct ProvenShapes {
    shapes: std::sync::Mutex<std::collections::VecDeque<u64>>,
}

/// How many shapes [`ProvenShapes`] remembers (the oldest go first).
const PROVEN_SHAPES: usize = 64;

impl ProvenShapes {
    fn contains(&self, shape: u64) -> bool {
        self.lock().contains(&shape)
    }

    fn insert(&self, shape: u64) {
        let mut shapes = self.lock();
        if !shapes.contains(&shape) {
            if shapes.len() == PROVEN_SHAPES {
                shapes.pop_front();
            }
            shapes.push_back(shape);
        }
    }

    fn forget(&self, shape: u64) {
        self.lock().retain(|&proven| proven != shape);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<u64>> {
        self.shapes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn proven_shapes() -> &'static ProvenShapes {
    static SHAPES: std::sync::OnceLock<ProvenShapes> = std::sync::OnceLock::new();
    SHAPES.get_or_init(ProvenShapes::default)
}

/// The `namespace` backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamespaceBackend;

impl NamespaceBackend {
    /// What namespace runtimes support on this host: `pids_limit`,
    /// `memory_limit` and `cpu_limit` when berth can make cgroups with
    /// their controllers (`pids_limit` also for a caller other than root,
    /// through `RLIMIT_NPROC`).
    pub fn capabilities() -> Capabilities {
        let (pids_limit, memory_limit, cpu_limit) = limits::enforceable();
        // What every runtime of the host-process kit supports, with the
        // limits as this backend enforces them and what its sandbox adds.
        Capabilities {
            mounts: true,
            network_isolation: true,
            memory_limit,
            cpu_limit,
            pids_limit,
            // The workspace is bind-mounted read-write into the namespace.
            shared_workspace: true,
            ..runtime_local::kit::host_capabilities()
        }
    }
}

#[async_trait]
impl Backend for NamespaceBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            type_name: TYPE_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "Linux namespaces (user, pid, mount, network, ipc, uts): the workspace \
                          read-write, system directories read-only, no network"
                .to_owned(),
            capabilities: NamespaceBackend::capabilities(),
        }
    }

    fn validate(&self, spec: &EnvironmentSpec) -> Result<()> {
        limits::plan(spec)?;
        NamespaceConfig::from_spec(spec)?
            .seccomp_filter(spec)
            .map(drop)
    }

    async fn spawn(&self, spec: &EnvironmentSpec, ctx: SpawnContext) -> Result<Box<dyn Runtime>> {
        let config = NamespaceConfig::from_spec(spec)?;
        if !ctx.workspace.is_dir() {
            return Err(Error::Backend {
                backend: TYPE_NAME.into(),
                message: format!("workspace `{}` is not a directory", ctx.workspace.display()),
            });
        }
        if !ctx.ports.is_empty() && config.network == Network::None {
            return Err(Error::Backend {
                backend: TYPE_NAME.into(),
                message: "ports cannot be published from a sandbox without network; with \
                          `namespace.network: host` a command's ports are the host's"
                    .into(),
            });
        }
        let limit_plan = limits::plan(spec)?;
        let mut plan = Plan::build(&config, spec, &ctx)?;
        plan.limit_processes(limit_plan.max_processes);
        let shape = plan.shape(&config.shell);
        let proven = proven_shapes().contains(shape) && plan.sources_reachable();
        let mut base_env = IndexMap::new();
        base_env.insert("PATH".to_owned(), DEFAULT_PATH.to_owned());
        base_env.insert("HOME".to_owned(), DEFAULT_HOME.to_owned());
        let settings = HostSettings {
            type_name: TYPE_NAME.to_owned(),
            shell: config.shell,
            base_env,
            capabilities: Some(NamespaceBackend::capabilities()),
            cgroup_limits: limit_plan.cgroup,
            // With no setup commands, `true` shows at spawn whether the
            // sandbox can be built here: once for each shape of sandbox.
            probe: !proven,
        };
        let sandbox = Namespaces {
            image: program::PlanImage::new(&plan),
            plan: Arc::new(plan),
            shape,
        };
        let runtime = NamespaceRuntime::spawn(sandbox, settings, spec, ctx).await?;
        proven_shapes().insert(shape);
        Ok(Box::new(runtime))
    }

    async fn diagnose(&self) -> Vec<Diagnostic> {
        let mut checks = Vec::new();
        let limit = std::fs::read_to_string("/proc/sys/user/max_user_namespaces");
        checks.push(match limit.as_deref().map(str::trim) {
            Ok("0") => Diagnostic {
                check: "user namespaces".into(),
                ok: false,
                detail: "disabled: user.max_user_namespaces is 0".into(),
            },
            Ok(limit) => Diagnostic {
                check: "user namespaces".into(),
                ok: true,
                detail: format!("enabled (user.max_user_namespaces = {limit})"),
            },
            Err(err) => Diagnostic {
                check: "user namespaces".into(),
                ok: false,
                detail: format!("cannot read /proc/sys/user/max_user_namespaces: {err}"),
            },
        });
        let (sandbox, seccomp) = self.probe_sandbox().await;
        checks.push(sandbox);
        checks.push(seccomp);
        checks.push(Diagnostic {
            check: "quotas".into(),
            ok: true,
            detail: quotas::plan(true).describe(),
        });
        checks.extend(limits::diagnose());
        checks
    }
}

impl NamespaceBackend {
    /// Builds a sandbox with the default settings over an empty temporary
    /// workspace, runs `true` in it, then reads a command's seccomp state:
    /// the `sandbox` and `seccomp` checks.
    async fn probe_sandbox(&self) -> (Diagnostic, Diagnostic) {
        let check = "sandbox".to_owned();
        let workspace = match tempfile::Builder::new().prefix("berth-doctor-").tempdir() {
            Ok(dir) => dir,
            Err(err) => {
                return (
                    Diagnostic {
                        check,
                        ok: false,
                        detail: format!("cannot create a temporary workspace: {err}"),
                    },
                    seccomp_check(None),
                );
            }
        };
        let spec = EnvironmentSpec::new(TYPE_NAME, "doctor");
        let ctx = SpawnContext::new("doctor", workspace.path(), Mode::Evaluation);
        let started = std::time::Instant::now();
        match self.spawn(&spec, ctx).await {
            Ok(runtime) => {
                let elapsed = started.elapsed();
                let status = runtime
                    .execute(ExecCommand::new("cat /proc/self/status").wall_timeout(STATUS_TIMEOUT))
                    .await;
                let _ = runtime.cleanup().await;
                (
                    Diagnostic {
                        check,
                        ok: true,
                        detail: format!(
                            "usable: new user, pid, mount, network, ipc and uts namespaces; a \
                             sandboxed shell ran in {:.1} ms",
                            elapsed.as_secs_f64() * 1000.0
                        ),
                    },
                    seccomp_check(Some(status)),
                )
            }
            Err(err) => (
                Diagnostic {
                    check,
                    ok: false,
                    detail: err.to_string(),
                },
                seccomp_check(None),
            ),
        }
    }
}

/// The `seccomp` check: whether the kernel has seccomp filters, and whether
/// a command of a sandbox with the default settings runs under one (its
/// `/proc/self/status`, when the sandbox could be built).
fn seccomp_check(status: Option<Result<ExecResult>>) -> Diagnostic {
    let diagnostic = |ok: bool, detail: String| Diagnostic {
        check: "seccomp".to_owned(),
        ok,
        detail,
    };
    if let Err(err) = seccomp::kernel_support() {
        return diagnostic(
            false,
            format!(
                "the kernel has no seccomp filters ({err}): commands cannot start under \
                 `{TYPE_NAME}.seccomp: default`; `unconfined` runs them without one"
            ),
        );
    }
    let supported = "filters supported by the kernel";
    let result = match status {
        None => {
            return diagnostic(
                false,
                format!("{supported}; not checked in a command: the sandbox cannot be built"),
            );
        }
        Some(Err(err)) => {
            return diagnostic(
                false,
                format!("{supported}; reading a command's /proc/self/status failed: {err}"),
            );
        }
        Some(Ok(result)) => result,
    };
    if !result.success() {
        return diagnostic(
            false,
            format!(
                "{supported}; reading a command's /proc/self/status failed (exit code {}): {}",
                result.exit_code,
                result.stderr_lossy().trim()
            ),
        );
    }
    match seccomp::Status::parse(&result.stdout_lossy()) {
        Some(seccomp::Status { mode: 2, filters }) => diagnostic(
            true,
            format!(
                "{supported}; commands run under the default profile (Seccomp: 2{})",
                filters.map_or_else(String::new, |count| format!(", {count} filters"))
            ),
        ),
        Some(seccomp::Status { mode, .. }) => diagnostic(
            false,
            format!(
                "{supported}, but a command runs with `Seccomp: {mode}`: the default profile \
                 is not installed"
            ),
        ),
        None => diagnostic(
            false,
            format!("{supported}, but a command's /proc/self/status has no `Seccomp:` line"),
        ),
    }
}

session_core::export_backend!(NamespaceBackend);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proven_shapes_are_remembered_forgotten_and_bounded() {
        let shapes = ProvenShapes::default();
        assert!(!shapes.contains(7));
        shapes.insert(7);
        shapes.insert(7);
        assert!(shapes.contains(7));
        assert_eq!(shapes.lock().len(), 1);
        shapes.forget(7);
        assert!(!shapes.contains(7));
        for shape in 0..PROVEN_SHAPES as u64 + 3 {
            shapes.insert(shape);
        }
        assert_eq!(shapes.lock().len(), PROVEN_SHAPES);
        assert!(!shapes.contains(2) && shapes.contains(3));
    }
}
