//! The `local` backend: commands run as host processes.
//!
//! Each command runs through `/bin/sh -c` (or `local.shell`) in the
//! session's workspace, started by a keeper process ([`process`]) that
//! ends the command's whole tree — also what `setsid` or a double fork
//! detached — on a timeout, a kill, a dropped stream, the runtime's
//! cleanup and berth's own death. The command starts with only descriptors
//! 0, 1 and 2. Output streams live and is kept within `output_limit`.
//! `limits.pids`, `limits.memory` (what the command's processes hold, tmpfs
//! pages included) and `limits.cpus` are enforced by a cgroup per command
//! ([`cgroup`], v1 or v2, also when berth runs as root); where this host
//! gives berth no cgroup for one of them, a spawn that asks for it fails
//! with [`Error::Spec`] naming the limit and why (`berth doctor` lists what
//! holds here). `limits.file_size` is the file-size rlimit.
//!
//! **Nothing here isolates the command from the host**: it runs as the
//! calling user, sees the whole file system and the network. Use a sandbox
//! backend (`docker`, `namespace`) for untrusted code.
//!
//! Environment: the host environment only when the spec sets
//! `environment.include_os_env`; otherwise commands get the host's `PATH`
//! (so what runs in a terminal runs here) and nothing else of the host.
//!
//! [`process`] is public for sandbox backends built on host processes: they
//! start commands the same way and add their own setup between fork and exec
//! through [`process::Launch::pre_exec`].

#![warn(missing_docs)]

pub mod cgroup;
pub mod process;
pub mod seccomp;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use session_core::assets::ResolvedAsset;
use session_core::register_backend;
use session_core::runtime::{
    Backend, BackendInfo, Capabilities, Diagnostic, EventStream, ExecCommand, ExecResult, Leftover,
    Runtime, RuntimeStatus, SetupOutput, SpawnContext, run_setup,
};
use session_core::spec::{EnvironmentSpec, Limits};
use session_core::{Error, Result};

use crate::cgroup::{CgroupError, CgroupHost, CgroupLimits};
use crate::process::{Launch, ProcessTable, Rlimits, Watch};

/// The spec `type` this backend serves.
pub const TYPE_NAME: &str = "local";

register_backend!(TYPE_NAME, || Arc::new(LocalBackend));

/// The spec's `local:` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// The POSIX shell that runs command strings.
    pub shell: PathBuf,
    /// Run commands on a terminal. Not supported by this backend: a spec
    /// that asks for it is refused rather than silently run without one.
    pub requires_tty: bool,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            shell: PathBuf::from("/bin/sh"),
            requires_tty: false,
        }
    }
}

/// The `local` backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalBackend;

impl LocalBackend {
    /// What local runtimes support on this host: the limits that need a
    /// cgroup are claimed when berth can make one with their controller.
    pub fn capabilities() -> Capabilities {
        let (pids_limit, memory_limit, cpu_limit) = cgroup_limits_here();
        Capabilities {
            stdin: true,
            live_streaming: true,
            signals: true,
            timeouts: true,
            output_limit: true,
            concurrent_commands: true,
            usage: true,
            memory_limit,
            cpu_limit,
            pids_limit,
            file_size_limit: true,
            ..Capabilities::default()
        }
    }

    fn config(spec: &EnvironmentSpec) -> Result<LocalConfig> {
        let config: LocalConfig = spec.backend_config()?;
        if config.requires_tty {
            return Err(Error::Spec {
                origin: spec.name.clone(),
                field: "local.requires_tty".into(),
                message: "the local backend does not run commands on a terminal".into(),
            });
        }
        Ok(config)
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            type_name: TYPE_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description:
                "host processes under a keeper that ends their whole tree, limits by cgroup \
                          (no isolation)"
                    .to_owned(),
            capabilities: LocalBackend::capabilities(),
        }
    }

    fn validate(&self, spec: &EnvironmentSpec) -> Result<()> {
        LocalBackend::config(spec)?;
        cgroup_limits(spec).map(drop)
    }

    async fn spawn(&self, spec: &EnvironmentSpec, ctx: SpawnContext) -> Result<Box<dyn Runtime>> {
        let config = LocalBackend::config(spec)?;
        let cgroup_limits = cgroup_limits(spec)?;
        if !ctx.workspace.is_dir() {
            return Err(Error::Backend {
                backend: TYPE_NAME.into(),
                message: format!("workspace `{}` is not a directory", ctx.workspace.display()),
            });
        }
        let mut env = IndexMap::new();
        if !spec.environment.include_os_env
            && let Some(path) = std::env::var_os("PATH")
        {
            env.insert("PATH".to_owned(), path.to_string_lossy().into_owned());
        }
        env.extend(spec.full_env(&ctx.env));
        let runtime = LocalRuntime {
            inner: Arc::new(Inner {
                workspace: ctx.workspace.clone(),
                shell: config.shell,
                env,
                limits: spec.limits.clone(),
                cgroup_limits,
                capabilities: LocalBackend::capabilities(),
                setup: std::sync::OnceLock::new(),
                processes: Arc::new(ProcessTable::new()),
            }),
        };
        let setup = run_setup(&ctx.setup_commands(spec), spec, |cmd| runtime.execute(cmd)).await;
        match setup {
            Ok(output) => {
                let _ = runtime.inner.setup.set(output);
                Ok(Box::new(runtime))
            }
            Err(err) => {
                let _ = runtime.cleanup().await;
                Err(err)
            }
        }
    }

    async fn diagnose(&self) -> Vec<Diagnostic> {
        let mut checks = CgroupHost::get().describe();
        checks.push(Diagnostic {
            check: "process trees".into(),
            ok: std::path::Path::new("/proc/thread-self/children").exists(),
            detail: "each command runs under a keeper (a child subreaper) that kills what it \
                     leaves behind, however detached, on kill, timeout, cleanup and berth's \
                     death; it lists its children in /proc/thread-self/children"
                .into(),
        });
        checks
    }

    async fn collect_garbage(&self, dry_run: bool) -> Result<Vec<Leftover>> {
        let host = CgroupHost::get();
        tokio::task::spawn_blocking(move || host.collect_garbage(dry_run))
            .await
            .map_err(|err| Error::Backend {
                backend: TYPE_NAME.into(),
                message: format!("collecting cgroups: {err}"),
            })?
            .map_err(|err| Error::Backend {
                backend: TYPE_NAME.into(),
                message: err.to_string(),
            })
    }
}

/// Whether this host lets berth enforce `limits.pids`, `limits.memory`
/// and `limits.cpus` (in that order) with a cgroup.
fn cgroup_limits_here() -> (bool, bool, bool) {
    let host = CgroupHost::get();
    let one = |limits: CgroupLimits| host.check(&limits).is_ok();
    (
        one(CgroupLimits {
            pids: Some(1),
            ..CgroupLimits::default()
        }),
        one(CgroupLimits {
            memory: Some(1 << 30),
            ..CgroupLimits::default()
        }),
        one(CgroupLimits {
            cpus: Some(1.0),
            ..CgroupLimits::default()
        }),
    )
}

/// The limits of `spec` a cgroup enforces, checked against this host:
/// [`Error::Spec`] naming the limit when one cannot be enforced here (or
/// has a value no cgroup takes), and why.
pub(crate) fn cgroup_limits(spec: &EnvironmentSpec) -> Result<CgroupLimits> {
    let limits = CgroupLimits::from(&spec.limits);
    if limits.is_empty() {
        return Ok(limits);
    }
    CgroupHost::get()
        .check(&limits)
        .map_err(|err| limit_error(spec, err))?;
    Ok(limits)
}

/// A cgroup refusal as the spec error it is for the user.
fn limit_error(spec: &EnvironmentSpec, err: CgroupError) -> Error {
    match err {
        CgroupError::Unenforceable { limit, reason } => Error::Spec {
            origin: spec.origin().to_owned(),
            field: limit.to_owned(),
            message: format!("cannot be enforced on this host: {reason}"),
        },
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

struct Inner {
    workspace: PathBuf,
    shell: PathBuf,
    env: IndexMap<String, String>,
    limits: Limits,
    /// The limits each command's cgroup enforces (empty: no cgroup).
    cgroup_limits: CgroupLimits,
    capabilities: Capabilities,
    setup: std::sync::OnceLock<SetupOutput>,
    /// The commands started, running or lingering.
    processes: Arc<ProcessTable>,
}

/// A runtime of the `local` backend. Dropping it kills every process it
/// started.
pub struct LocalRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRuntime")
            .field("workspace", &self.inner.workspace)
            .field("running", &self.inner.processes.running())
            .finish_non_exhaustive()
    }
}

impl Drop for LocalRuntime {
    fn drop(&mut self) {
        self.inner.processes.close();
    }
}

#[async_trait]
impl Runtime for LocalRuntime {
    fn backend_type(&self) -> &str {
        TYPE_NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    fn asset_path(&self, asset: &ResolvedAsset) -> String {
        asset.absolute_path.display().to_string()
    }

    fn setup_output(&self) -> &SetupOutput {
        static EMPTY: SetupOutput = SetupOutput {
            commands: Vec::new(),
        };
        self.inner.setup.get().unwrap_or(&EMPTY)
    }

    async fn stream(&self, cmd: ExecCommand) -> Result<EventStream> {
        let inner = &self.inner;
        if inner.processes.is_closed() {
            return Err(Error::RuntimeClosed {
                backend: TYPE_NAME.into(),
            });
        }
        let mut env = inner.env.clone();
        env.extend(cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let begun = tokio::time::Instant::now();
        let cgroup = if inner.cgroup_limits.is_empty() {
            None
        } else {
            match CgroupHost::get().create(&inner.cgroup_limits, TYPE_NAME) {
                Ok(cgroup) => Some(Arc::new(cgroup)),
                Err(err) => {
                    let message = format!("cannot make the command's cgroup: {err}");
                    return Ok(EventStream::finished(ExecResult::spawn_failed(
                        &message,
                        begun.elapsed(),
                    )));
                }
            }
        };
        let launch = Launch {
            shell: &inner.shell,
            command: &cmd.command,
            cwd: &inner.workspace,
            env: &env,
            with_stdin: cmd.stdin.is_some(),
            rlimits: Rlimits {
                address_space: None,
                file_size: inner.limits.file_size,
            },
            pre_exec: None,
            keeper: true,
            cgroup,
        };
        let started = match process::start(&launch) {
            Ok(started) => started,
            Err(err) => {
                let message = format!("cannot start `{}`: {err}", inner.shell.display());
                return Ok(EventStream::finished(ExecResult::spawn_failed(
                    &message,
                    begun.elapsed(),
                )));
            }
        };
        let watch = Watch {
            wall_timeout: cmd.wall_timeout.or(inner.limits.wall_timeout),
            idle_timeout: cmd.idle_timeout.or(inner.limits.idle_timeout),
            output_limit: cmd.output_limit.unwrap_or(inner.limits.output_limit),
            spill_dir: cmd.spill_dir.clone(),
            stdin: cmd.stdin,
        };
        Ok(inner.processes.run(started, watch))
    }

    async fn poll(&self) -> RuntimeStatus {
        self.inner.processes.status()
    }

    async fn kill(&self) -> Result<()> {
        self.inner.processes.kill_all();
        Ok(())
    }

    async fn cleanup(&self) -> Result<()> {
        self.inner.processes.close_and_wait(TYPE_NAME).await
    }
}

/// The shell a local runtime uses when the spec does not name one.
pub fn default_shell() -> &'static Path {
    Path::new("/bin/sh")
}
