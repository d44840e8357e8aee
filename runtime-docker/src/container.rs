//! The container behind a runtime: how it is described to the engine
//! (labels, mounts, ports, network, user, limits), and how it is removed —
//! on cleanup, and in the background when a runtime is dropped or its spawn
//! is cancelled.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, PortBinding, ResourcesUlimits,
};
use bollard::query_parameters::{
    AttachContainerOptions, EventsOptions, RemoveContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use indexmap::IndexMap;
use session_core::runtime::SpawnContext;
use session_core::spec::{EnvironmentSpec, Mode};

use crate::config::{ASSET_ROOT, DockerConfig, NetworkMode, check_outside_workdir, container_path};
use crate::engine::{EngineAddress, backend_error, describe, status_of};

/// Label: the id of the session that owns the container.
pub const LABEL_SESSION: &str = "berth.session";
/// Label: the pid of the process that created it.
pub const LABEL_OWNER_PID: &str = "berth.owner_pid";
/// Label: the host name of the machine that process runs on.
pub const LABEL_OWNER_HOST: &str = "berth.owner_host";
/// Label: unix seconds after which an owner on another host counts as gone.
pub const LABEL_LEASE_DEADLINE: &str = "berth.lease_deadline";
/// Label: present (`true`) when `keep_container_after_clean` was set.
pub const LABEL_KEEP: &str = "berth.keep";

/// How long a container's lease runs. Labels cannot change on a running
/// container, so the lease is not renewed: it only decides for owners on
/// another host (a shared remote engine), where the owner's pid cannot be
/// checked. On the owner's own host its pid decides.
pub const LEASE: Duration = Duration::from_secs(24 * 60 * 60);

/// The container's main process: it only waits, so that commands can be
/// exec'd into the container for as long as the runtime lives. `init: true`
/// puts the engine's init in front of it to reap orphans.
///
/// It waits on its standard input, which the owning runtime holds open
/// through an attach ([`StdinLifeline`]); with `StdinOnce` the engine
/// closes it when that attach ends, whether berth let go of it or died.
/// The keeper then exits, the init exits with it, and the kernel kills
/// everything left in the container's pid namespace: a container never
/// outlives the process that owns it (until `berth gc` removes the stopped
/// container). It uses builtins only.
const KEEPER: &str = "while read -r _; do :; done";

/// The keeper of a container kept after cleanup: it waits for ever, so the
/// container outlives its owner, as it is meant to.
const KEEPER_FOR_EVER: &str = "while :; do sleep 3600; done";

/// Paths the container sees read-only: the engine's own default list, and
/// `/sys/fs/cgroup`, which on cgroup v1 hosts is a tmpfs of no size limit
/// that root in the container could otherwise fill. (Setting the list
/// replaces the engine's default, so the default is repeated here.)
const READONLY_PATHS: [&str; 6] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/sys/fs/cgroup",
];

/// The largest `/dev/shm` (a tmpfs) of a container with a memory limit:
/// the engine's own default size.
const SHM_SIZE: u64 = 64 << 20;

/// Everything needed to create a runtime's container.
#[derive(Debug)]
pub(crate) struct ContainerPlan {
    /// The name berth gives the container.
    pub(crate) name: String,
    /// The engine's description of it.
    pub(crate) body: ContainerCreateBody,
    /// Whether the container lives only as long as its owner's
    /// [`StdinLifeline`] (every container but a kept one).
    pub(crate) lifeline: bool,
}

/// Describes the container for a runtime of `spec` in `ctx`. Bad spawn
/// mounts or ports are errors here, before anything is created.
pub(crate) fn plan(
    spec: &EnvironmentSpec,
    config: &DockerConfig,
    ctx: &SpawnContext,
) -> session_core::Result<ContainerPlan> {
    let workdir = config.workdir_path();
    let mounts = mounts(config, ctx, &workdir)?;
    let (exposed, bindings) = ports(config, ctx)?;
    let limits = &spec.limits;
    let keep = config.keep_container_after_clean;
    let host_config = HostConfig {
        init: Some(true),
        // The engine removes the container once it stops: a cleanup only
        // lets go of it (see `let_go`), and a container whose owner died
        // is removed as soon as it stops, without `berth gc`.
        auto_remove: Some(!keep),
        shm_size: limits.memory.map(|memory| saturating_i64(shm_size(memory))),
        readonly_paths: Some(READONLY_PATHS.map(str::to_owned).to_vec()),
        mounts: Some(mounts),
        network_mode: config.network.map(|mode| mode.as_str().to_owned()),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        memory: limits.memory.map(saturating_i64),
        // Equal to `memory`: no swap on top of the limit.
        memory_swap: limits.memory.map(saturating_i64),
        nano_cpus: limits.cpus.map(|cpus| (cpus * 1e9).round() as i64),
        pids_limit: limits.pids.map(saturating_i64),
        ulimits: limits.file_size.map(|bytes| {
            vec![ResourcesUlimits {
                name: Some("fsize".to_owned()),
                soft: Some(saturating_i64(bytes)),
                hard: Some(saturating_i64(bytes)),
            }]
        }),
        ..HostConfig::default()
    };
    let user = config.user.clone().or_else(|| match ctx.mode {
        // SAFETY: getuid(2) and getgid(2) take no arguments and cannot fail.
        Mode::Evaluation => Some(format!("{}:{}", unsafe { libc::getuid() }, unsafe {
            libc::getgid()
        })),
        Mode::Agent => None,
    });
    let env = container_env(spec, ctx)
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let body = ContainerCreateBody {
        image: Some(config.image.clone()),
        entrypoint: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            if keep { KEEPER_FOR_EVER } else { KEEPER }.into(),
        ]),
        env: Some(env),
        working_dir: Some(workdir.display().to_string()),
        user,
        labels: Some(labels(&ctx.session_id, keep, false)),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        open_stdin: Some(!keep),
        stdin_once: Some(!keep),
        tty: Some(false),
        host_config: Some(host_config),
        ..ContainerCreateBody::default()
    };
    Ok(ContainerPlan {
        name: container_name(&ctx.session_id),
        body,
        lifeline: !keep,
    })
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The size of `/dev/shm` under a memory limit of `memory` bytes: 64 MiB
/// (the engine's default), or half the limit when that is smaller. What a
/// command stores there is charged to the container's memory; if it could
/// fill the whole limit, that memory, which no process owns, would leave
/// the kernel nothing to kill but the container's own processes, and every
/// later command would be killed too. Capped at half, a write fails with
/// "no space" first. Without a memory limit the engine's size stands.
pub(crate) fn shm_size(memory: u64) -> u64 {
    SHM_SIZE.min(memory / 2).max(1)
}

/// The attach that holds a container's standard input open for as long as
/// its runtime lives (see [`KEEPER`]). Dropping it closes the input, and the
/// container stops.
pub(crate) struct StdinLifeline {
    _input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

impl std::fmt::Debug for StdinLifeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StdinLifeline")
    }
}

/// Attaches to the standard input of a created (not yet started)
/// container, so that the keeper finds its input open from the start.
/// Only the input is attached: the engine sends nothing back.
pub(crate) async fn attach_lifeline(
    docker: &Docker,
    container: &str,
) -> session_core::Result<StdinLifeline> {
    let options = AttachContainerOptions {
        stdin: true,
        stream: true,
        ..AttachContainerOptions::default()
    };
    let attached = docker
        .attach_container(container, Some(options))
        .await
        .map_err(|err| {
            backend_error(format!(
                "attaching to the input of container `{container}`: {}",
                describe(&err)
            ))
        })?;
    Ok(StdinLifeline {
        _input: attached.input,
    })
}

/// Host variables that describe the host rather than the command's
/// environment; with `include_os_env` they are still not carried into a
/// container, where they would be wrong (the image's `PATH`, the
/// container's `HOSTNAME`). The spec or the spawn may still set them.
const HOST_ONLY_VARIABLES: [&str; 7] = [
    "PATH", "HOME", "HOSTNAME", "PWD", "OLDPWD", "SHLVL", "TMPDIR",
];

/// The environment every command of the runtime starts from: the spec's
/// `full_env` (host variables when `include_os_env`, the spec's, the
/// spawn's), without the host-only variables the host contributed.
fn container_env(spec: &EnvironmentSpec, ctx: &SpawnContext) -> IndexMap<String, String> {
    let mut env = spec.full_env(&ctx.env);
    if spec.environment.include_os_env {
        for key in HOST_ONLY_VARIABLES {
            if !spec.environment.env.contains_key(key) && !ctx.env.contains_key(key) {
                env.shift_remove(key);
            }
        }
    }
    env
}

/// A name that says whose container it is, unique within this process.
fn container_name(session_id: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let session: String = session_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!(
        "berth-{session}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The labels of a container of `session_id`: who owns it, until when,
/// whether it is kept, whether a warm pool started it.
pub(crate) fn labels(session_id: &str, keep: bool, pooled: bool) -> HashMap<String, String> {
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(LEASE)
        .as_secs();
    let mut labels = HashMap::from([
        (LABEL_SESSION.to_owned(), session_id.to_owned()),
        (LABEL_OWNER_PID.to_owned(), std::process::id().to_string()),
        (LABEL_OWNER_HOST.to_owned(), host_name()),
        (LABEL_LEASE_DEADLINE.to_owned(), deadline.to_string()),
    ]);
    if keep {
        labels.insert(LABEL_KEEP.to_owned(), "true".to_owned());
    }
    if pooled {
        labels.insert(crate::pool::LABEL_POOL.to_owned(), "true".to_owned());
    }
    labels
}

/// This machine's host name (empty when it cannot be read).
pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The container's mounts: the workspace at `workdir`, every asset
/// read-only under `/static`, the spec's extra mounts, then the spawn's. A
/// container path inside `workdir` is an error; when two mounts share a
/// container path, the later one wins.
fn mounts(
    config: &DockerConfig,
    ctx: &SpawnContext,
    workdir: &Path,
) -> session_core::Result<Vec<Mount>> {
    let bind = |source: &Path, target: &Path, read_only: bool| Mount {
        typ: Some(MountType::BIND),
        source: Some(source.display().to_string()),
        target: Some(target.display().to_string()),
        read_only: Some(read_only),
        ..Mount::default()
    };
    let host_path = |path: &Path| -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            ctx.workspace.join(path)
        }
    };
    let mut by_target: IndexMap<PathBuf, Mount> = IndexMap::new();
    let mut add = |source: PathBuf, target: &str, read_only: bool, what: &str| {
        let target = container_path(target)
            .and_then(|t| check_outside_workdir(&t, workdir).map(|()| t))
            .map_err(|msg| backend_error(format!("{what}: {msg}")))?;
        by_target.insert(target.clone(), bind(&source, &target, read_only));
        Ok::<(), session_core::Error>(())
    };
    for asset in ctx.assets.iter() {
        let target = asset_target(&asset.save_path);
        add(
            asset.absolute_path.clone(),
            &target,
            true,
            &format!("static asset `{}`", asset.name),
        )?;
    }
    for (host, extra) in &config.extra_mounts {
        add(
            host_path(Path::new(host)),
            &extra.bind,
            extra.read_only,
            &format!("docker.extra_mounts `{host}`"),
        )?;
    }
    for mount in &ctx.mounts {
        add(
            host_path(&mount.source),
            &mount.target.display().to_string(),
            mount.read_only,
            &format!("mount `{}`", mount.source.display()),
        )?;
    }
    let mut all = Vec::with_capacity(by_target.len() + 1);
    if config.mount_workspace {
        all.push(bind(&ctx.workspace, workdir, false));
    }
    all.extend(by_target.into_values());
    Ok(all)
}

/// Where an asset with this save path appears in the container.
pub(crate) fn asset_target(save_path: &Path) -> String {
    let relative = save_path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    format!("{ASSET_ROOT}/{relative}")
}

type PortBindings = HashMap<String, Option<Vec<PortBinding>>>;

/// Exposed ports and their bindings. A loopback host address (also the
/// default) is bound as `0.0.0.0` in bridge mode, as the existing format
/// does; `host` networking ignores mappings, and `none` refuses them.
fn ports(
    config: &DockerConfig,
    ctx: &SpawnContext,
) -> session_core::Result<(Vec<String>, PortBindings)> {
    let mut exposed = Vec::new();
    let mut bindings: PortBindings = HashMap::new();
    if ctx.ports.is_empty() {
        return Ok((exposed, bindings));
    }
    match config.network {
        Some(NetworkMode::Host) => {
            tracing::warn!(
                ports = ctx.ports.len(),
                "host networking: port mappings are ignored"
            );
            return Ok((exposed, bindings));
        }
        Some(NetworkMode::None) => {
            return Err(backend_error(
                "ports cannot be published with `network: none`".to_owned(),
            ));
        }
        Some(NetworkMode::Bridge) | None => {}
    }
    for port in &ctx.ports {
        let key = format!("{}/tcp", port.container_port);
        let host_ip = match port.host_ip.as_deref() {
            None => "0.0.0.0".to_owned(),
            Some(ip) if is_loopback(ip) => "0.0.0.0".to_owned(),
            Some(ip) => ip.to_owned(),
        };
        let binding = PortBinding {
            host_ip: Some(host_ip),
            host_port: Some(if port.host_port == 0 {
                String::new()
            } else {
                port.host_port.to_string()
            }),
        };
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    Ok((exposed, bindings))
}

fn is_loopback(ip: &str) -> bool {
    ip == "localhost" || ip.parse::<IpAddr>().is_ok_and(|addr| addr.is_loopback())
}

/// Removes a container and what the engine made for it. A container that
/// is already gone is not an error.
pub(crate) async fn remove(docker: &Docker, name: &str) -> session_core::Result<()> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..RemoveContainerOptions::default()
    };
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(err) if status_of(&err) == Some(404) => Ok(()),
        // A removal already under way (a concurrent cleanup).
        Err(err) if status_of(&err) == Some(409) && describe(&err).contains("in progress") => {
            Ok(())
        }
        Err(err) => Err(backend_error(format!(
            "removing container `{name}`: {}",
            describe(&err)
        ))),
    }
}

/// How long a cleanup waits for a container it let go of to stop before
/// it removes it by force.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Lets a runtime's container go: closing its input (dropping `lifeline`)
/// ends its keeper and init, the kernel kills every other process in it,
/// and the engine, which created it with `AutoRemove`, removes it. Waits
/// only until the engine reports the container's `die` event — its task is
/// gone, so no process of it runs or writes in the workspace any more —
/// not for the engine's own teardown (network, file system) or for its
/// removal: the engine deletes it on its own time, and a container it
/// fails to remove is a stopped, labelled container `berth gc` removes
/// once its owner is gone. When the engine cannot report events, the wait
/// is for the container to be no longer running; when it does not stop
/// within [`STOP_WAIT`], it is removed by force, as before.
pub(crate) async fn let_go(
    docker: &Docker,
    name: &str,
    lifeline: Option<StdinLifeline>,
) -> session_core::Result<()> {
    if lifeline.is_none() {
        // Nothing holds it: only a forced removal ends it.
        return remove(docker, name).await;
    }
    // A container dies once (berth never restarts one), so any `die` event
    // of it is the one; `since` replays an event that came before the
    // subscription took hold.
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(Duration::from_secs(600))
        .as_secs();
    let options = EventsOptions {
        since: Some(since.to_string()),
        until: None,
        filters: Some(HashMap::from([
            ("container".to_owned(), vec![name.to_owned()]),
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), vec!["die".to_owned()]),
        ])),
    };
    let mut events = docker.events(Some(options));
    drop(lifeline);
    let died = tokio::time::timeout(STOP_WAIT, events.next()).await;
    drop(events);
    match died {
        Ok(Some(Ok(_))) => return Ok(()),
        Ok(Some(Err(err))) => {
            tracing::debug!(container = %name, error = %describe(&err), "no events from the engine; waiting for the container to stop");
        }
        Ok(None) => {
            tracing::debug!(container = %name, "the engine ended its events; waiting for the container to stop");
        }
        Err(_) => {
            tracing::warn!(container = %name, "the container did not stop within {}s of its input closing; removing it", STOP_WAIT.as_secs());
            return remove(docker, name).await;
        }
    }
    let options = WaitContainerOptions {
        condition: "not-running".to_owned(),
    };
    let mut waited = docker.wait_container(name, Some(options));
    let outcome = tokio::time::timeout(STOP_WAIT, waited.next()).await;
    drop(waited);
    match outcome {
        Ok(None | Some(Ok(_))) => Ok(()),
        // A status other than 0 is still a stop; a container already
        // removed is gone.
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { .. }))) => Ok(()),
        Ok(Some(Err(err))) if status_of(&err) == Some(404) => Ok(()),
        Ok(Some(Err(err))) => {
            tracing::debug!(container = %name, error = %describe(&err), "waiting for a container to stop; removing it");
            remove(docker, name).await
        }
        Err(_) => {
            tracing::warn!(container = %name, "the container did not stop within {}s of its input closing; removing it", STOP_WAIT.as_secs());
            remove(docker, name).await
        }
    }
}

/// Owns a container until it is removed: dropping the guard while it is
/// armed removes the container in the background, so a dropped runtime or
/// a cancelled spawn leaves nothing behind.
#[derive(Debug)]
pub(crate) struct ContainerGuard {
    name: String,
    address: EngineAddress,
    armed: bool,
}

impl ContainerGuard {
    /// A guard for the container that is (or is about to be) called `name`.
    /// `keep` makes it a guard that never removes.
    pub(crate) fn new(name: String, address: EngineAddress, keep: bool) -> ContainerGuard {
        ContainerGuard {
            name,
            address,
            armed: !keep,
        }
    }

    /// The container's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Stops guarding: someone else removed or keeps the container.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if self.armed {
            remove_in_background(self.name.clone(), self.address.clone());
        }
    }
}

/// Removals started by dropped guards that have not finished.
static PENDING: Mutex<usize> = Mutex::new(0);
static PENDING_DONE: Condvar = Condvar::new();

/// Waits until every container removal started by dropping a runtime (or
/// cancelling a spawn) has finished, at most `timeout`. Returns whether
/// they all finished. Also run (for up to 15 s) when the process exits
/// normally, so a program that drops a runtime just before it ends does not
/// leave the container behind.
pub fn wait_for_background_removals(timeout: Duration) -> bool {
    let pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    let (pending, result) = PENDING_DONE
        .wait_timeout_while(pending, timeout, |n| *n > 0)
        .unwrap_or_else(|p| p.into_inner());
    drop(pending);
    !result.timed_out()
}

extern "C" fn wait_at_exit() {
    wait_for_background_removals(Duration::from_secs(15));
}

struct PendingRemoval;

impl PendingRemoval {
    fn start() -> PendingRemoval {
        static AT_EXIT: Once = Once::new();
        AT_EXIT.call_once(|| {
            // SAFETY: `wait_at_exit` is a plain function that never unwinds
            // (it only waits on a condition variable, recovering poison).
            unsafe {
                libc::atexit(wait_at_exit);
            }
        });
        *PENDING.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        PendingRemoval
    }
}

impl Drop for PendingRemoval {
    fn drop(&mut self) {
        let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
        *pending = pending.saturating_sub(1);
        PENDING_DONE.notify_all();
    }
}

/// Removes a container from a thread of its own, with its own client and
/// tokio runtime: a drop may happen outside any runtime, or in one that is
/// shutting down.
fn remove_in_background(name: String, address: EngineAddress) {
    let pending = PendingRemoval::start();
    let spawned = std::thread::Builder::new()
        .name("berth-docker-removal".into())
        .spawn(move || {
            let _pending = pending;
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    tracing::warn!(container = %name, error = %err, "cannot remove the container: no tokio runtime");
                    return;
                }
            };
            runtime.block_on(async {
                if let Err(err) = remove_soon(&name, &address).await {
                    tracing::warn!(container = %name, error = %err, "removing a dropped runtime's container failed; `berth gc` will find it");
                }
            });
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "cannot start a thread to remove a dropped runtime's container; `berth gc` will find it");
    }
}

async fn remove_soon(name: &str, address: &EngineAddress) -> session_core::Result<()> {
    let docker = address.client()?;
    let exists = |docker: &Docker| {
        let docker = docker.clone();
        async move { docker.inspect_container(name, None).await.is_ok() }
    };
    if !exists(&docker).await {
        // A spawn cancelled while the engine was creating the container:
        // give the creation a moment to land, then look again.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !exists(&docker).await {
            return Ok(());
        }
    }
    remove(&docker, name).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::runtime::{Mount as SpawnMount, PortMapping};

    fn spec_and_config(block: &str) -> (EnvironmentSpec, DockerConfig) {
        let spec =
            EnvironmentSpec::from_yaml_str(&format!("type: docker\nname: t\n{block}\n"), "<test>")
                .unwrap();
        let config = DockerConfig::from_spec(&spec).unwrap();
        (spec, config)
    }

    fn targets(body: &ContainerCreateBody) -> Vec<(String, String, bool)> {
        let mounts = body.host_config.as_ref().unwrap().mounts.clone().unwrap();
        mounts
            .into_iter()
            .map(|m| (m.source.unwrap(), m.target.unwrap(), m.read_only.unwrap()))
            .collect()
    }

    #[test]
    fn mounts_resolve_relative_sources_and_the_later_target_wins() {
        let (spec, config) = spec_and_config(
            "docker: {image: i, extra_mounts: {data: /data, /etc/hosts: {bind: /cfg, mode: ro}}}",
        );
        let mut ctx = SpawnContext::new("s1", "/tmp/ws", Mode::Agent);
        ctx.mounts.push(SpawnMount {
            source: "/other".into(),
            target: "/data".into(),
            read_only: true,
        });
        let planned = plan(&spec, &config, &ctx).unwrap();
        assert_eq!(
            targets(&planned.body),
            vec![
                ("/tmp/ws".into(), "/workspace".into(), false),
                ("/other".into(), "/data".into(), true),
                ("/etc/hosts".into(), "/cfg".into(), true),
            ]
        );
        assert_eq!(planned.body.user, None, "agent mode keeps the image's user");

        ctx.mounts.push(SpawnMount {
            source: "/x".into(),
            target: "/workspace/sub".into(),
            read_only: false,
        });
        let err = plan_err(&spec, &config, &ctx);
        assert!(err.contains("inside the workdir"), "{err}");
    }

    fn plan_err(spec: &EnvironmentSpec, config: &DockerConfig, ctx: &SpawnContext) -> String {
        plan(spec, config, ctx).unwrap_err().to_string()
    }

    #[test]
    fn evaluation_mode_runs_as_the_caller_and_labels_say_who_owns_it() {
        let (spec, config) = spec_and_config("docker: {image: i, mount_workspace: false}");
        let ctx = SpawnContext::new("sess/1", "/tmp/ws", Mode::Evaluation);
        let planned = plan(&spec, &config, &ctx).unwrap();
        // SAFETY: getuid and getgid cannot fail.
        let me = unsafe { format!("{}:{}", libc::getuid(), libc::getgid()) };
        assert_eq!(planned.body.user.as_deref(), Some(me.as_str()));
        assert!(targets(&planned.body).is_empty());
        assert!(
            planned.name.starts_with("berth-sess-1-"),
            "{}",
            planned.name
        );
        let labels = planned.body.labels.unwrap();
        assert_eq!(labels[LABEL_SESSION], "sess/1");
        assert_eq!(labels[LABEL_OWNER_PID], std::process::id().to_string());
        assert!(labels[LABEL_LEASE_DEADLINE].parse::<u64>().unwrap() > 0);
        assert!(!labels.contains_key(LABEL_KEEP));
        assert_eq!(planned.body.host_config.unwrap().init, Some(true));
    }

    #[test]
    fn ports_bind_loopback_as_any_address_in_bridge_mode() {
        let (spec, config) = spec_and_config("docker: {image: i}");
        let mut ctx = SpawnContext::new("s", "/tmp/ws", Mode::Agent);
        ctx.ports = vec![
            PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
            },
            PortMapping {
                host_ip: Some("10.0.0.5".into()),
                host_port: 0,
                container_port: 80,
            },
        ];
        let planned = plan(&spec, &config, &ctx).unwrap();
        assert_eq!(planned.body.exposed_ports, Some(vec!["80/tcp".to_owned()]));
        let bindings = planned.body.host_config.unwrap().port_bindings.unwrap();
        let list = bindings["80/tcp"].clone().unwrap();
        assert_eq!(list[0].host_ip.as_deref(), Some("0.0.0.0"));
        assert_eq!(list[0].host_port.as_deref(), Some("8080"));
        assert_eq!(list[1].host_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(list[1].host_port.as_deref(), Some(""));

        let (spec, config) = spec_and_config("docker: {image: i, network: host}");
        let planned = plan(&spec, &config, &ctx).unwrap();
        assert!(planned.body.exposed_ports.is_none());
        let (spec, config) = spec_and_config("docker: {image: i, network: none}");
        assert!(plan_err(&spec, &config, &ctx).contains("network: none"));
    }

    #[test]
    fn limits_become_host_config() {
        let (spec, config) = spec_and_config(
            "docker: {image: i}\nlimits: {memory: 33554432, cpus: 0.5, pids: 64, file_size: 1048576}",
        );
        let ctx = SpawnContext::new("s", "/tmp/ws", Mode::Agent);
        let host = plan(&spec, &config, &ctx)
            .unwrap()
            .body
            .host_config
            .unwrap();
        assert_eq!(host.memory, Some(33_554_432));
        assert_eq!(host.memory_swap, Some(33_554_432));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.pids_limit, Some(64));
        assert_eq!(host.shm_size, Some(16_777_216), "half the memory limit");
        let ulimit = &host.ulimits.unwrap()[0];
        assert_eq!(ulimit.name.as_deref(), Some("fsize"));
        assert_eq!(ulimit.hard, Some(1_048_576));
    }

    #[test]
    fn dev_shm_is_at_most_half_the_memory_limit() {
        assert_eq!(shm_size(1 << 30), 64 << 20);
        assert_eq!(shm_size(64 << 20), 32 << 20);
        assert_eq!(shm_size(1), 1);
        let (spec, config) = spec_and_config("docker: {image: i}");
        let ctx = SpawnContext::new("s", "/tmp/ws", Mode::Agent);
        let host = plan(&spec, &config, &ctx)
            .unwrap()
            .body
            .host_config
            .unwrap();
        assert_eq!(host.shm_size, None, "the engine's default without a limit");
        let read_only = host.readonly_paths.unwrap();
        assert!(read_only.contains(&"/proc/sys".to_owned()), "{read_only:?}");
        assert!(
            read_only.contains(&"/sys/fs/cgroup".to_owned()),
            "{read_only:?}"
        );
    }

    #[test]
    fn asset_targets_live_under_static() {
        assert_eq!(asset_target(Path::new("data/x.txt")), "/static/data/x.txt");
    }
}
