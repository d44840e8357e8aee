//! The `docker` backend: one long-lived container per runtime on a Docker
//! Engine reached through `bollard`.
//!
//! **Spawn** creates a container from `docker.image` (never pulled: the
//! image must already be on the engine) with the engine's init in front of
//! a main process that only waits, and labels saying who owns it
//! (`berth.session`, `berth.owner_pid`, `berth.owner_host`,
//! `berth.lease_deadline`). The workspace is bound at `docker.workdir`
//! (unless `mount_workspace: false`), every static asset read-only at
//! `/static/<save_path>`, then `docker.extra_mounts` and the spawn's mounts
//! (a container path inside the workdir is refused; the later of two mounts
//! for one container path wins). Ports are published (a loopback host
//! address binds `0.0.0.0` in bridge mode; `host` networking ignores them),
//! `docker.network` picks `bridge`, `none` or `host`, `docker.user` (else
//! the caller's `uid:gid` in evaluation mode) runs the commands, and
//! `limits` become the container's memory (without extra swap), CPU, pids
//! and file-size limits. Setup commands run once, inside the container.
//!
//! **Limits.** The container's cgroup holds every process of every command,
//! so `memory`, `cpus` and `pids` bound them together. What a command
//! stores in a tmpfs is charged to the same memory: `/dev/shm` (the
//! engine's size, 64 MiB by default; under a memory limit at most 64 MiB
//! and half the limit) and, for root, the engine's `/dev` (64 MiB); the
//! cgroup tmpfs the engine mounts at `/sys/fs/cgroup` on cgroup v1 hosts
//! (of no size limit) is made read-only. The rest of the container's files
//! are on the engine's disk. Commands run with `oom_score_adj` raised to
//! 500, so that when memory runs out the kernel kills a command rather
//! than the container's init.
//!
//! **Commands** are execs of `/bin/sh -c COMMAND` in the workdir, with
//! stdout and stderr apart, stdin fed and closed, output streamed live and
//! kept within `output_limit`. Their environment is the spec's `full_env`
//! on top of the image's, except that `include_os_env` does not carry the
//! host's `PATH`, `HOME`, `HOSTNAME`, `PWD`, `OLDPWD`, `SHLVL` and `TMPDIR`
//! into the container (the spec or the spawn may still set them); berth
//! adds `BERTH_EXEC_ID`, a value of its own for each command.
//!
//! The engine cannot kill an exec, so kills run from a second exec, as
//! root, with shell builtins only (one process: they still run when a
//! command took every other pid the limit allows). The engine makes every
//! exec the leader of a session of its own, and the command's shell tells
//! berth its pid: a timeout or a dropped stream kills that session and
//! process group and every process whose environment carries the command's
//! `BERTH_EXEC_ID` (so also what it started with `setsid`, `nohup` or a
//! double fork; root cannot read another user's environment in a container,
//! so then a second sweep runs as the container's user), and the result is
//! reported once that kill is done. Other commands' processes are never
//! hit. Only a process that both leaves the session and drops the variable
//! escapes that kill; `kill()` kills every process outside the session of
//! the container's init, cleanup removes the container, and a kept
//! container's cleanup kills every process outside that session too. The
//! engine reports a process killed by signal N as exit status 128 + N, like
//! a shell; berth reports such a status as that signal, so a command that
//! itself exits with 129–192 is reported as signalled. A SIGKILL berth did
//! not send while the container is going away is `Lost`.
//!
//! **Lifetime.** The container's main process waits on its standard input,
//! which the runtime holds open through an attach made before the
//! container starts (`OpenStdin` with `StdinOnce`). When that attach ends —
//! the runtime is cleaned up or dropped, or the process that owns it dies,
//! even by SIGKILL — the engine closes the input, the main process and the
//! init exit, and the kernel kills everything left in the container: no
//! process of a container outlives its owner. The container is created
//! with `AutoRemove`, so the engine then removes it; one it failed to
//! remove stays, stopped, until `berth gc` removes it. (Over a remote
//! engine, a broken connection stops the container the same way.) A container kept with
//! `keep_container_after_clean` has no such attach: it is meant to outlive
//! its owner.
//!
//! **Handing back.** What a command makes in the bound workspace belongs
//! to the container's user. When that is not the caller (agent mode with
//! an image that runs as root, or a `docker.user` of someone else) and the
//! caller is not root, berth could neither read nor remove it: after each
//! command, and at cleanup before the container goes, an exec as root
//! makes every entry of the workdir the caller's (its owner; the group
//! stays) and gives directories read and search, files read, for their
//! owner. It never follows a symlink, needs only busybox's `sh`, `find`,
//! `chown`, `chmod` and `grep`, reaches trees deeper than `PATH_MAX`, and
//! is killed after 60 s. Cleanup first kills every process the commands
//! started, so nothing writes while it hands back the last time, and then
//! checks that no entry is left the caller may not read or remove. When
//! the container runs as the caller (evaluation mode, or a `docker.user`
//! with the caller's uid), or the caller is root, nothing runs. A failed
//! hand-back after a command is a warning in the log (the command's
//! result stands; what is left is handed back again at cleanup, and a
//! checkpoint that meets it fails naming the entry); at cleanup it is an
//! error of the cleanup, naming the workdir, the container and what is
//! left, and the cleanup still removes the container (so `berth run`
//! exits 125, and the session's removal takes away what it can). A
//! runtime dropped without cleanup hands nothing back. Commands that end
//! together share one hand-back. (Under user-namespace remapping or a
//! rootless engine, the caller's uid means someone else in the container,
//! and the hand-back cannot help.)
//!
//! **Cleanup** lets the container go (unless `keep_container_after_clean`:
//! then it keeps running, with its main process only): it closes the
//! container's input, which ends it as above, and waits until the engine
//! says it no longer runs — so no process of it is left to write in the
//! workspace — but not for the engine to delete its files: the engine
//! removes it on its own (`AutoRemove`), as `docker run --rm` does, and a
//! container that does not stop within 10 s is removed by force. Dropping
//! the runtime or cancelling its spawn removes it in the background;
//! [`DockerBackend`]'s `collect_garbage` removes containers, running or
//! stopped, whose owner process is gone (same host) or whose lease expired
//! (another host).
//!
//! **Warm pools.** A spec's `docker.pool` keeps containers of its
//! configuration started ahead of their sessions, in a process that keeps
//! pools ([`keep_warm_pools`]); a spawn takes one (never reused) and the
//! pool refills in the background after the session's first command. The
//! workspace is bound into a taken container through a propagating slot.
//! `runtime-docker/src/pool.rs` says who keeps pools, which spawns may use
//! them and how the workspace gets in; `docs/spec.md` describes the field.
//!
//! The image needs a POSIX `/bin/sh`. The engine is `DOCKER_HOST` when set,
//! else the default socket; the API version is negotiated, so engines from
//! API 1.41 (Docker 20.10) on work.

#![warn(missing_docs)]

mod config;
mod container;
mod engine;
mod exec;
mod gc;
mod hand_back;
mod pool;
mod runtime;
pub mod test_image;

use std::sync::Arc;

use async_trait::async_trait;
use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};
use session_core::register_backend;
use session_core::runtime::{
    Backend, BackendInfo, Capabilities, Diagnostic, Leftover, Runtime, SpawnContext, run_setup,
};
use session_core::spec::EnvironmentSpec;
use session_core::{Error, Result};

pub use crate::config::{
    ASSET_ROOT, DEFAULT_WORKDIR, DockerConfig, ExtraMount, MAX_POOL_SIZE, NetworkMode, PoolConfig,
};
use crate::container::ContainerGuard;
pub use crate::container::{
    LABEL_KEEP, LABEL_LEASE_DEADLINE, LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_SESSION, LEASE,
    wait_for_background_removals,
};
use crate::engine::{EngineAddress, backend_error, describe, status_of};
use crate::hand_back::HandBack;
pub use crate::pool::{
    LABEL_POOL, drain_warm_pools, keep_warm_pools, wait_for_warm_pools, warm_pools_kept,
};
pub use crate::runtime::DockerRuntime;

/// The spec `type` this backend serves.
pub const TYPE_NAME: &str = "docker";

register_backend!(TYPE_NAME, || Arc::new(DockerBackend::new()));

/// The `docker` backend.
#[derive(Debug, Clone, Default)]
pub struct DockerBackend {
    /// An engine address that overrides `DOCKER_HOST`.
    host: Option<String>,
}

impl DockerBackend {
    /// A backend for the engine at `DOCKER_HOST` (read whenever it
    /// connects), else at the default socket.
    pub fn new() -> DockerBackend {
        DockerBackend { host: None }
    }

    /// A backend for the engine at `host` (`unix:///path`, `tcp://h:p`),
    /// whatever `DOCKER_HOST` says.
    pub fn with_host(host: impl Into<String>) -> DockerBackend {
        DockerBackend {
            host: Some(host.into()),
        }
    }

    /// What docker runtimes support. Usage is not reported (the engine
    /// does not account an exec's resources); signals are reported from
    /// the engine's 128 + N exit statuses.
    pub fn capabilities() -> Capabilities {
        Capabilities {
            stdin: true,
            stdin_streaming: true,
            live_streaming: true,
            signals: true,
            timeouts: true,
            output_limit: true,
            concurrent_commands: true,
            usage: false,
            mounts: true,
            ports: true,
            network_isolation: true,
            memory_limit: true,
            cpu_limit: true,
            pids_limit: true,
            file_size_limit: true,
            // The workspace is bind-mounted (unless `mount_workspace: false`).
            shared_workspace: true,
        }
    }

    fn address(&self) -> EngineAddress {
        match &self.host {
            Some(host) => EngineAddress::configured(host.clone()),
            None => EngineAddress::from_env(),
        }
    }
}

#[async_trait]
impl Backend for DockerBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            type_name: TYPE_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "one Docker container per runtime, commands as execs".to_owned(),
            capabilities: DockerBackend::capabilities(),
        }
    }

    fn validate(&self, spec: &EnvironmentSpec) -> Result<()> {
        DockerConfig::from_spec(spec).map(drop)
    }

    async fn spawn(&self, spec: &EnvironmentSpec, ctx: SpawnContext) -> Result<Box<dyn Runtime>> {
        let config = DockerConfig::from_spec(spec)?;
        if config.mount_workspace && !ctx.workspace.is_dir() {
            return Err(backend_error(format!(
                "workspace `{}` is not a directory",
                ctx.workspace.display()
            )));
        }
        let address = self.address();
        if let Some(taken) = pool::take(spec, &config, &ctx, &address).await {
            let hand_back = hand_back_for(&config, &taken.user);
            let target = exec::Target {
                docker: taken.docker,
                container: taken.id,
                workdir: config.workdir_path().display().to_string(),
            };
            let runtime = DockerRuntime::new(
                target,
                spec.limits.clone(),
                taken.guard,
                Some(taken.lifeline),
                false,
                hand_back,
            );
            runtime.set_slot(taken.slot);
            runtime.set_refill(taken.refill);
            return finish_spawn(runtime, spec, &ctx).await;
        }
        let plan = container::plan(spec, &config, &ctx)?;
        let planned_user = plan.body.user.clone();
        let docker = address.connect().await?;
        // Armed before the container exists: a spawn cancelled while the
        // engine creates it still removes it.
        let guard = ContainerGuard::new(plan.name.clone(), address, false);
        let options = CreateContainerOptions {
            name: Some(plan.name.clone()),
            ..CreateContainerOptions::default()
        };
        let created = docker
            .create_container(Some(options), plan.body)
            .await
            .map_err(|err| create_error(&config.image, &err))?;
        // An engine that cannot enforce a limit creates the container all
        // the same and says so in a warning: that is a refusal here (the
        // guard removes the container), never a silently unlimited run.
        for warning in &created.warnings {
            match discarded_limit(warning) {
                Some(limit) => {
                    return Err(Error::Spec {
                        origin: spec.origin().to_owned(),
                        field: limit.to_owned(),
                        message: format!("cannot be enforced by this Docker Engine: {warning}"),
                    });
                }
                None => tracing::warn!(%warning, "the Docker Engine warned creating a container"),
            }
        }
        // Attached before the start, so that no moment passes in which the
        // container runs without its owner holding it.
        let lifeline = if plan.lifeline {
            Some(container::attach_lifeline(&docker, &created.id).await?)
        } else {
            None
        };
        if let Err(err) = docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
        {
            // The guard removes the container when it is dropped here.
            return Err(backend_error(format!(
                "cannot start a container of image `{}`: {}",
                config.image,
                describe(&err)
            )));
        }
        let hand_back = if needs_hand_back(&config) {
            let user = match planned_user {
                Some(user) => user,
                None => image_user(&docker, &created.id).await,
            };
            hand_back_for(&config, &user)
        } else {
            None
        };
        let target = exec::Target {
            docker,
            container: created.id,
            workdir: config.workdir_path().display().to_string(),
        };
        let runtime = DockerRuntime::new(
            target,
            spec.limits.clone(),
            guard,
            lifeline,
            config.keep_container_after_clean,
            hand_back,
        );
        finish_spawn(runtime, spec, &ctx).await
    }

    async fn diagnose(&self) -> Vec<Diagnostic> {
        let address = self.address();
        let detail = match address.connect().await {
            Ok(docker) => match docker.version().await {
                Ok(version) => Ok(format!(
                    "Docker Engine {} (API {}) at {}",
                    version.version.as_deref().unwrap_or("?"),
                    version.api_version.as_deref().unwrap_or("?"),
                    address.host
                )),
                Err(err) => Err(address.unreachable(&err).to_string()),
            },
            Err(err) => Err(err.to_string()),
        };
        let mut checks = vec![Diagnostic {
            check: "docker engine".to_owned(),
            ok: detail.is_ok(),
            detail: detail.unwrap_or_else(|err| err),
        }];
        if let Ok(docker) = address.connect().await
            && let Ok(info) = docker.info().await
        {
            checks.push(limits_diagnostic(&info));
        }
        checks
    }

    async fn collect_garbage(&self, dry_run: bool) -> Result<Vec<Leftover>> {
        let docker = self.address().connect().await?;
        // Containers first: a slot is unmounted once nothing uses it.
        let mut leftovers = gc::collect(&docker, dry_run).await?;
        leftovers.extend(pool::collect_slots(dry_run));
        Ok(leftovers)
    }
}

/// Runs the setup commands in a new runtime; a failed setup cleans it up.
async fn finish_spawn(
    runtime: DockerRuntime,
    spec: &EnvironmentSpec,
    ctx: &SpawnContext,
) -> Result<Box<dyn Runtime>> {
    match run_setup(&ctx.setup_commands(spec), spec, |cmd| runtime.execute(cmd)).await {
        Ok(output) => {
            runtime.set_setup_output(output);
            runtime.spawned();
            Ok(Box::new(runtime))
        }
        Err(err) => {
            if let Err(cleanup) = runtime.cleanup().await {
                tracing::warn!(error = %cleanup, "cleaning up after a failed setup");
            }
            Err(err)
        }
    }
}

/// Whether the workspace may need handing back: it is bound, and the
/// caller is not root (root may read and remove anything; without the
/// workspace nothing the commands make lands on the host).
fn needs_hand_back(config: &DockerConfig) -> bool {
    // SAFETY: geteuid cannot fail.
    config.mount_workspace && unsafe { libc::geteuid() } != 0
}

/// How the workspace goes back to the caller from a container running as
/// `user`, when it needs to.
fn hand_back_for(config: &DockerConfig, user: &str) -> Option<HandBack> {
    if needs_hand_back(config) {
        // SAFETY: geteuid cannot fail.
        HandBack::needed(user, unsafe { libc::geteuid() })
    } else {
        None
    }
}

/// The user a container runs as when berth names none: the image's, as
/// the engine reports it. When the engine cannot say, root (the empty
/// string), so that the workspace is handed back rather than left.
pub(crate) async fn image_user(docker: &bollard::Docker, container: &str) -> String {
    match docker.inspect_container(container, None).await {
        Ok(inspect) => inspect.config.and_then(|c| c.user).unwrap_or_default(),
        Err(err) => {
            tracing::debug!(error = %describe(&err), "inspecting a new container for its user");
            String::new()
        }
    }
}

/// The limit an engine's warning at container creation says it discarded
/// (`limits.memory`, `limits.pids`, `limits.cpus`), if it says so.
fn discarded_limit(warning: &str) -> Option<&'static str> {
    let warning = warning.to_ascii_lowercase();
    let discarded = warning.contains("discarded") || warning.contains("can not be set");
    if !discarded {
        return None;
    }
    if warning.contains("memory") {
        Some("limits.memory")
    } else if warning.contains("pids") {
        Some("limits.pids")
    } else if warning.contains("cpu") {
        Some("limits.cpus")
    } else {
        None
    }
}

/// `berth doctor`'s line on which limits the engine's cgroups enforce.
fn limits_diagnostic(info: &bollard::models::SystemInfo) -> Diagnostic {
    let mut enforced = Vec::new();
    let mut missing = Vec::new();
    for (limit, supported) in [
        ("limits.memory", info.memory_limit),
        ("limits.cpus", info.cpu_cfs_quota),
        ("limits.pids", info.pids_limit),
    ] {
        if supported == Some(false) {
            missing.push(limit);
        } else {
            enforced.push(limit);
        }
    }
    let cgroups = format!(
        "cgroup v{} with the {} driver",
        info.cgroup_version
            .as_ref()
            .map_or("?".to_owned(), |v| v.to_string()),
        info.cgroup_driver
            .as_ref()
            .map_or("?".to_owned(), |d| d.to_string()),
    );
    let mut detail = format!(
        "{} by the engine's {cgroups} (limits.file_size as a ulimit); swap {}",
        enforced.join(", "),
        if info.swap_limit == Some(false) {
            "is not accounted: memory is limited, swap is not"
        } else {
            "is limited with memory"
        }
    );
    if !missing.is_empty() {
        detail.push_str(&format!(
            "; the engine cannot enforce {}: a spec asking for them is refused",
            missing.join(", ")
        ));
    }
    Diagnostic {
        check: "limits".to_owned(),
        ok: missing.is_empty(),
        detail,
    }
}

/// A clear error for a container the engine would not create.
fn create_error(image: &str, err: &bollard::errors::Error) -> Error {
    let detail = describe(err);
    if status_of(err) == Some(404) && detail.to_ascii_lowercase().contains("no such image") {
        return backend_error(format!(
            "image `{image}` is not on the Docker Engine; berth does not pull images and no \
             registry may be reachable, so build or load it locally first (`docker build -t \
             {image} …`, `docker load`)"
        ));
    }
    backend_error(format!(
        "cannot create a container of image `{image}`: {detail}"
    ))
}

#[cfg(test)]
mod tests {
    use super::discarded_limit;

    #[test]
    fn engine_warnings_name_the_discarded_limit() {
        for (warning, limit) in [
            (
                "Your kernel does not support memory limit capabilities or the cgroup is not \
                 mounted. Limitation discarded.",
                Some("limits.memory"),
            ),
            (
                "Your kernel does not support pids limit capabilities or the cgroup is not \
                 mounted. PIDs limit discarded.",
                Some("limits.pids"),
            ),
            (
                "Your kernel does not support CPU cfs period/quota or the cgroup is not mounted. \
                 Period/quota discarded.",
                Some("limits.cpus"),
            ),
            (
                "Your kernel does not support swap limit capabilities or the cgroup is not \
                 mounted. Memory limited without swap.",
                None,
            ),
            (
                "Published ports are discarded when using host network mode",
                None,
            ),
        ] {
            assert_eq!(discarded_limit(warning), limit, "{warning}");
        }
    }
}
