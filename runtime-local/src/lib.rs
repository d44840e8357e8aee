//! The `local` backend: commands run as host processes.
//!
//! Each command runs through `/bin/sh -c` (or `local.shell`) in the
//! session's workspace — except a command of literal words where
//! `/bin/sh` is dash: `exec` and words (what `berth run -- PROGRAM ARGS`
//! sends, [`kit::literal_exec`]), or words naming a program, not a builtin
//! (`python3 -c pass`, [`kit::literal_simple`]). Its program starts
//! directly, with the environment dash would give it; for one dash would
//! have forked, a fork of the keeper stands in for dash (it leads the
//! group, waits, and ends as dash would: `128 + N` and the signal's line
//! on stderr, [`process::InShellsPlace::Fork`]) — all started by a keeper
//! process ([`process`]) that
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
//! and `HOME` (so what runs in a terminal runs here, with the user's own
//! configuration and caches) and nothing else of the host. The spec and the
//! session may set either over them.
//!
//! [`process`] is public for sandbox backends built on host processes: they
//! start commands the same way and add their own setup between fork and exec
//! through [`process::Launch::pre_exec`].

#![warn(missing_docs)]

pub mod cgroup;
pub mod kit;
pub mod process;
pub mod seccomp;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use session_core::register_backend;
use session_core::runtime::{
    Backend, BackendInfo, Capabilities, Diagnostic, Leftover, Runtime, SpawnContext,
};
use session_core::spec::EnvironmentSpec;
use session_core::{Error, Result};

use crate::cgroup::{CgroupError, CgroupHost, CgroupLimits};
use crate::kit::{HostRuntime, HostSettings, Sandbox, host_capabilities};

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
        host_capabilities()
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

    fn type_name(&self) -> String {
        TYPE_NAME.to_owned()
    }

    fn validate(&self, spec: &EnvironmentSpec) -> Result<()> {
        LocalBackend::config(spec)?;
        cgroup_limits(spec).map(drop)
    }

    async fn spawn(&self, spec: &EnvironmentSpec, ctx: SpawnContext) -> Result<Box<dyn Runtime>> {
        let config = LocalBackend::config(spec)?;
        let mut settings = HostSettings::for_spec(TYPE_NAME, spec)?;
        settings.shell = config.shell;
        if !spec.environment.include_os_env
            && let Some(home) = std::env::var_os("HOME").and_then(|h| h.into_string().ok())
        {
            settings.base_env.insert("HOME".to_owned(), home);
        }
        // A plain host process needs no probe: a shell that cannot start
        // is each command's spawn failure, as it is on the command line.
        settings.probe = false;
        Ok(Box::new(
            LocalRuntime::spawn(Plain, settings, spec, ctx).await?,
        ))
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

/// How the `local` backend starts a command: as it is, with nothing
/// around it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Sandbox for Plain {
    fn skips_the_shell(&self) -> bool {
        true
    }
}

/// A runtime of the `local` backend. Dropping it kills every process it
/// started.
pub type LocalRuntime = HostRuntime<Plain>;

/// The shell a local runtime uses when the spec does not name one.
pub fn default_shell() -> &'static Path {
    Path::new("/bin/sh")
}
