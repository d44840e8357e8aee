//! Warm pools: containers of one configuration created and started ahead
//! of the sessions that will take them, so that a spawn costs no container
//! start.
//!
//! **Who keeps them.** A pool lives in a long-lived process that asked for
//! pools with [`keep_warm_pools`] (`berth serve` does; so may a program
//! that embeds berth). Elsewhere, a spec's `docker.pool` is ignored and
//! every spawn creates its container: a one-shot `berth run` would start
//! containers only to remove them at exit. Pools are kept per tokio
//! runtime (a container's lifeline belongs to the runtime that attached
//! it) and per configuration (the container the spec asks for, without
//! its workspace): specs that describe the same container share a pool.
//!
//! **Taken once.** A spawn takes a warm container out of its pool, and it
//! becomes that session's runtime's container, removed when the runtime
//! ends like any other: a pooled container is never handed to a second
//! session. Each take starts one container in the background to refill
//! the pool, once the taking session's first command has ended (or after
//! [`REFILL_GRACE`]): a container start is heavy work for the engine, and
//! made at once it slows the very command the pool is there to speed up.
//! A pooled spawn may not add anything the container had to be created
//! with: a spawn with static assets, mounts, ports or variables of its own
//! creates its container as usual.
//!
//! **The workspace.** A pooled container is started before its session's
//! workspace is known, and the engine cannot add a mount to a running
//! container. Each one is therefore created with a *slot*: an empty
//! directory of the pool, made a shared mount point of its own, bound at
//! the workdir with `rslave` propagation. At take time berth bind-mounts
//! the session's workspace onto the slot on the host, the mount
//! propagates into the container, and the commands see the workspace at
//! the workdir, exactly as a fresh container binds it. When the runtime
//! ends its container is stopped first, then the workspace is unmounted
//! from the slot and the slot removed. Before a container joins the pool,
//! berth checks that propagation reaches it (a probe directory bound the
//! same way must show its token inside), so a container that would see
//! an empty workdir is never handed out. Slots need `CAP_SYS_ADMIN` on the
//! engine's host (berth as root beside a local engine); without it a pool
//! of a spec that binds its workspace stays empty, with a warning, and
//! spawns create their containers. Slots live under
//! `$TMPDIR/berth-docker-slots/PID-N` (a directory of berth's user, mode
//! 0700: one that is a symlink, or another user's, or writable by others,
//! is refused, since berth mounts inside it); `berth gc` unmounts and removes
//! those of processes that are gone.
//!
//! **Ending.** A pool's containers hold the same lifeline as a runtime's
//! (see the crate's documentation): when the process that keeps the pool
//! dies, they stop and the engine removes them. [`drain_warm_pools`]
//! removes them at an orderly shutdown, and `berth gc` removes any that
//! are left (their owner pid is gone), like a runtime's.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountType,
};
use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};
use session_core::runtime::{ExecStatus, Leftover, SpawnContext};
use session_core::spec::EnvironmentSpec;
use tokio::sync::Notify;

use crate::config::DockerConfig;
use crate::container::{self, ContainerGuard, StdinLifeline};
use crate::engine::{EngineAddress, backend_error, describe};

/// Label: present (`true`) on a container started for a warm pool.
pub const LABEL_POOL: &str = "berth.pool";

/// The session id a pooled container is labelled with until it is taken
/// (labels cannot change later).
const POOL_SESSION: &str = "warm-pool";

/// The file a propagation probe binds into a new pooled container.
const PROBE_FILE: &str = ".berth-slot-probe";

static KEEP: AtomicBool = AtomicBool::new(false);

/// Makes this process keep warm pools for specs that ask for one
/// (`docker.pool`), or stop making new ones. A long-lived process that
/// spawns many sessions calls it once at start; call [`drain_warm_pools`]
/// before it ends.
pub fn keep_warm_pools(keep: bool) {
    KEEP.store(keep, Ordering::SeqCst);
}

/// Whether this process keeps warm pools.
pub fn warm_pools_kept() -> bool {
    KEEP.load(Ordering::SeqCst)
}

type Pools = HashMap<String, Arc<Pool>>;

fn pools() -> std::sync::MutexGuard<'static, Pools> {
    static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();
    POOLS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// Removes every container of every warm pool of this process (also those
/// still starting) and their slots, and forgets the pools. A later spawn
/// of a pooled spec starts a new pool if pools are still kept.
pub async fn drain_warm_pools() {
    let all: Vec<Arc<Pool>> = pools().drain().map(|(_, pool)| pool).collect();
    for pool in all {
        pool.close().await;
    }
}

/// Waits until every warm pool of the calling tokio runtime holds as many
/// ready containers as its size, at most `timeout`. Returns whether they
/// do. A pool whose refills fail never fills.
pub async fn wait_for_warm_pools(timeout: Duration) -> bool {
    let runtime = runtime_id();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mine: Vec<Arc<Pool>> = pools()
            .values()
            .filter(|pool| pool.runtime == runtime)
            .cloned()
            .collect();
        let mut all_full = true;
        for pool in &mine {
            let notified = pool.changed.notified();
            if pool.ready_count() >= pool.size {
                continue;
            }
            all_full = false;
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
            break;
        }
        if all_full {
            return true;
        }
    }
}

fn runtime_id() -> String {
    tokio::runtime::Handle::try_current()
        .map(|handle| handle.id().to_string())
        .unwrap_or_default()
}

/// A container taken out of a pool for one runtime.
#[derive(Debug)]
pub(crate) struct Taken {
    /// Starts the pool's refill when dropped.
    pub(crate) refill: RefillAfter,
    pub(crate) docker: Docker,
    pub(crate) id: String,
    pub(crate) guard: ContainerGuard,
    pub(crate) lifeline: StdinLifeline,
    pub(crate) slot: Option<Slot>,
    /// The container's user (as planned, else the image's).
    pub(crate) user: String,
}

/// Takes a warm container for this spawn, when the spec asks for a pool,
/// this process keeps pools and the spawn adds nothing a pooled container
/// lacks; starts the pool (and refills it) as needed. `None` means: create
/// a container as usual.
pub(crate) async fn take(
    spec: &EnvironmentSpec,
    config: &DockerConfig,
    ctx: &SpawnContext,
    address: &EngineAddress,
) -> Option<Taken> {
    let wanted = config.pool?;
    if !warm_pools_kept() {
        return None;
    }
    if !ctx.assets.is_empty() || !ctx.mounts.is_empty() || !ctx.ports.is_empty() {
        tracing::debug!("a spawn with assets, mounts or ports of its own: no warm container");
        return None;
    }
    if !ctx.env.is_empty() {
        tracing::debug!("a spawn with variables of its own: no warm container");
        return None;
    }
    let pool = match pool_for(spec, config, ctx, address, wanted.size).await {
        Ok(pool) => pool,
        Err(err) => {
            tracing::warn!(error = %err, "cannot keep a warm pool; creating the container");
            return None;
        }
    };
    let Some(mut taken) = pool.take(&ctx.workspace) else {
        pool.refill();
        return None;
    };
    let (starts, start) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        // Dropping the sender ends the wait as sending would.
        let _ = tokio::time::timeout(REFILL_GRACE, start).await;
        pool.refill();
    });
    taken.refill = RefillAfter {
        _starts: Some(starts),
    };
    Some(taken)
}

/// The longest a take delays its pool's refill, waiting for the taking
/// session's first command to end.
pub(crate) const REFILL_GRACE: Duration = Duration::from_secs(1);

/// Held by the runtime that took a warm container: the pool's refill
/// starts when it is dropped (after the runtime's first command, or with
/// the runtime), or after [`REFILL_GRACE`].
#[derive(Debug, Default)]
pub(crate) struct RefillAfter {
    /// Held only to be dropped.
    _starts: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The pool for this configuration on this runtime, made (and filling)
/// when it is new.
async fn pool_for(
    spec: &EnvironmentSpec,
    config: &DockerConfig,
    ctx: &SpawnContext,
    address: &EngineAddress,
    size: usize,
) -> session_core::Result<Arc<Pool>> {
    // The container as this spec describes it, with a placeholder
    // workspace and no session: what every pooled container shares.
    let template_ctx = SpawnContext::new(POOL_SESSION, "/", ctx.mode);
    let mut body = container::plan(spec, config, &template_ctx)?.body;
    body.labels = None;
    let key_body = serde_json::to_string(&body)
        .map_err(|err| backend_error(format!("describing a pooled container: {err}")))?;
    let runtime = runtime_id();
    let key = format!("{}\n{runtime}\n{size}\n{key_body}", address.host);
    if let Some(pool) = pools().get(&key) {
        return Ok(Arc::clone(pool));
    }
    let docker = address.connect().await?;
    let mut pools = pools();
    let pool = pools.entry(key).or_insert_with(|| {
        Arc::new(Pool {
            size,
            runtime,
            address: address.clone(),
            docker,
            body,
            workdir: config.workdir_path(),
            mount_workspace: config.mount_workspace,
            image: config.image.clone(),
            ready: Mutex::new(VecDeque::new()),
            starting: Mutex::new(0),
            changed: Notify::new(),
            closed: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        })
    });
    Ok(Arc::clone(pool))
}

/// Containers of one configuration, started and waiting.
struct Pool {
    size: usize,
    runtime: String,
    address: EngineAddress,
    docker: Docker,
    /// The containers' description (without labels, name or slot).
    body: ContainerCreateBody,
    workdir: PathBuf,
    mount_workspace: bool,
    image: String,
    ready: Mutex<VecDeque<Warm>>,
    /// Containers being started for the pool.
    starting: Mutex<usize>,
    /// Woken whenever a container joins or leaves the pool.
    changed: Notify,
    closed: AtomicBool,
    /// Set when the last start failed: refills wait for the next take
    /// rather than retry at once.
    failing: AtomicBool,
}

/// A started container waiting in a pool.
#[derive(Debug)]
struct Warm {
    id: String,
    guard: ContainerGuard,
    lifeline: StdinLifeline,
    slot: Option<Slot>,
    user: String,
}

impl Pool {
    fn ready_count(&self) -> usize {
        self.ready.lock().map_or(0, |ready| ready.len())
    }

    /// The oldest ready container, with `workspace` bound into its slot.
    fn take(&self, workspace: &Path) -> Option<Taken> {
        let warm = self.ready.lock().ok()?.pop_front()?;
        self.changed.notify_waiters();
        let Warm {
            id,
            guard,
            lifeline,
            mut slot,
            user,
        } = warm;
        if let Some(slot) = slot.as_mut()
            && let Err(err) = slot.bind(workspace)
        {
            tracing::warn!(error = %err, slot = %slot.dir.display(), "binding a workspace into a warm container; creating the container");
            // The guard removes the container, the slot goes with it.
            return None;
        }
        tracing::debug!(container = %id, "took a warm container");
        Some(Taken {
            refill: RefillAfter::default(),
            docker: self.docker.clone(),
            id,
            guard,
            lifeline,
            slot,
            user,
        })
    }

    /// Starts containers until the ready and starting ones make the size.
    fn refill(self: &Arc<Self>) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let wanted = {
            let Ok(mut starting) = self.starting.lock() else {
                return;
            };
            let have = self.ready_count() + *starting;
            // After a failure, one at a time until one succeeds.
            let limit = if self.failing.load(Ordering::SeqCst) {
                1usize.saturating_sub(*starting)
            } else {
                self.size
            };
            let wanted = self.size.saturating_sub(have).min(limit);
            *starting += wanted;
            wanted
        };
        for _ in 0..wanted {
            let pool = Arc::clone(self);
            tokio::spawn(async move {
                let started = pool.start_one().await;
                if let Ok(mut starting) = pool.starting.lock() {
                    *starting = starting.saturating_sub(1);
                }
                match started {
                    Ok(warm) if !pool.closed.load(Ordering::SeqCst) => {
                        pool.failing.store(false, Ordering::SeqCst);
                        if let Ok(mut ready) = pool.ready.lock() {
                            ready.push_back(warm);
                        }
                    }
                    Ok(warm) => {
                        // Closed meanwhile: dropping it removes it.
                        drop(warm);
                    }
                    Err(err) => {
                        // Said once until a start succeeds again.
                        if pool.failing.swap(true, Ordering::SeqCst) {
                            tracing::debug!(image = %pool.image, error = %err, "starting a container for a warm pool");
                        } else {
                            tracing::warn!(image = %pool.image, error = %err, "starting a container for a warm pool; spawns create their containers meanwhile");
                        }
                    }
                }
                pool.changed.notify_waiters();
            });
        }
    }

    /// Creates, starts and checks one container for the pool.
    async fn start_one(&self) -> session_core::Result<Warm> {
        let docker = &self.docker;
        let name = pooled_name();
        let slot = if self.mount_workspace {
            Some(Slot::new().map_err(|err| {
                backend_error(format!(
                    "making a workspace slot for a warm container (this needs root beside a \
                     local engine): {err}"
                ))
            })?)
        } else {
            None
        };
        let mut body = self.body.clone();
        body.labels = Some(container::labels(POOL_SESSION, false, true));
        if let Some(slot) = &slot {
            let workdir = self.workdir.display().to_string();
            let host = body.host_config.get_or_insert_with(Default::default);
            let mounts = host.mounts.get_or_insert_with(Vec::new);
            mounts.retain(|mount| mount.target.as_deref() != Some(workdir.as_str()));
            mounts.insert(
                0,
                Mount {
                    typ: Some(MountType::BIND),
                    source: Some(slot.dir.display().to_string()),
                    target: Some(workdir),
                    read_only: Some(false),
                    bind_options: Some(MountBindOptions {
                        propagation: Some(MountBindOptionsPropagationEnum::RSLAVE),
                        ..MountBindOptions::default()
                    }),
                    ..Mount::default()
                },
            );
        }
        let planned_user = body.user.clone();
        let guard = ContainerGuard::new(name.clone(), self.address.clone(), false);
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..CreateContainerOptions::default()
        };
        let created = docker
            .create_container(Some(options), body)
            .await
            .map_err(|err| {
                backend_error(format!("creating a warm container: {}", describe(&err)))
            })?;
        let lifeline = container::attach_lifeline(docker, &created.id).await?;
        docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .map_err(|err| {
                backend_error(format!("starting a warm container: {}", describe(&err)))
            })?;
        if let Some(slot) = &slot {
            self.probe(&created.id, slot).await?;
        }
        let user = match planned_user {
            Some(user) => user,
            None => crate::image_user(docker, &created.id).await,
        };
        Ok(Warm {
            id: created.id,
            guard,
            lifeline,
            slot,
            user,
        })
    }

    /// Checks that a mount on `slot` reaches the container: binds a probe
    /// directory holding a token, reads it inside, unbinds it.
    async fn probe(&self, container: &str, slot: &Slot) -> session_core::Result<()> {
        let probe = ProbeDir::new(&slot.dir).map_err(|err| {
            backend_error(format!("making a probe for a warm container's slot: {err}"))
        })?;
        mount_bind(&probe.dir, &slot.dir)
            .map_err(|err| backend_error(format!("binding a probe into a slot: {err}")))?;
        let target = crate::exec::Target {
            docker: self.docker.clone(),
            container: container.to_owned(),
            workdir: "/".to_owned(),
        };
        let path = self.workdir.join(PROBE_FILE);
        let read = crate::exec::run_quietly(
            &target,
            &format!("cat '{}'", path.display()),
            Some("0".to_owned()),
        )
        .await;
        let unbound = unmount(&slot.dir);
        drop(probe);
        unbound.map_err(|err| backend_error(format!("unbinding a slot's probe: {err}")))?;
        let seen = read.status == ExecStatus::Exited
            && read.exit_code == 0
            && read.stdout.bytes == probe_token(&slot.dir).as_bytes();
        if seen {
            Ok(())
        } else {
            Err(backend_error(format!(
                "a mount on the slot `{}` does not reach the container (is the engine on \
                 another host or in another mount namespace?): {}",
                slot.dir.display(),
                read.stderr.lossy().trim()
            )))
        }
    }

    /// Stops refilling and removes every container of the pool.
    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let ready: Vec<Warm> = self
            .ready
            .lock()
            .map(|mut ready| ready.drain(..).collect())
            .unwrap_or_default();
        for warm in ready {
            let Warm {
                id,
                mut guard,
                lifeline,
                slot,
                ..
            } = warm;
            match container::let_go(&self.docker, &id, Some(lifeline)).await {
                Ok(()) => guard.disarm(),
                Err(err) => {
                    tracing::warn!(container = %id, error = %err, "removing a warm container");
                }
            }
            drop(slot);
        }
        // Containers still starting are removed when they are done.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let notified = self.changed.notified();
            if self.starting.lock().map_or(0, |n| *n) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        self.changed.notify_waiters();
    }
}

/// The token a slot's probe holds.
fn probe_token(slot: &Path) -> String {
    format!("berth slot {}", slot.display())
}

fn pooled_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "berth-pool-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where slots live: one directory per slot, named `PID-N` after the
/// process that made it.
fn slot_root() -> PathBuf {
    std::env::temp_dir().join("berth-docker-slots")
}

/// Makes the slot root (or takes the one there) only when it is a real
/// directory of this user that nobody else can write: berth mounts onto
/// paths inside it (as root), so a root another user made, or swapped for
/// a symlink, in a shared temp dir would let them choose where a
/// workspace gets mounted. The temp dir's sticky bit keeps others from
/// renaming it once it is ours.
fn private_root(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    match std::fs::DirBuilder::new().mode(0o700).create(root) {
        Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => return Err(err),
        _ => {}
    }
    if !is_private_root(root) {
        return Err(std::io::Error::other(format!(
            "{} is not a private directory of this user (not a symlink, mode 0700): remove it",
            root.display()
        )));
    }
    Ok(())
}

/// Whether `root` is a directory (not a symlink) of this user that nobody
/// else can write.
fn is_private_root(root: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(root)
        .is_ok_and(|meta| meta.file_type().is_dir() && meta.uid() == me && meta.mode() & 0o077 == 0)
}

/// A pooled container's workspace slot: a directory made a shared mount
/// point of its own (so mounts on it propagate into the container that
/// binds it `rslave`), and, once taken, the session's workspace bound onto
/// it. Dropping it unmounts both and removes the directory (never its
/// contents: only `rmdir`).
#[derive(Debug)]
pub(crate) struct Slot {
    dir: PathBuf,
    mounts: usize,
}

impl Slot {
    fn new() -> std::io::Result<Slot> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let root = slot_root();
        let dir = root.join(format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // The root goes when its last slot does; one removed between the
        // two calls is made again.
        let mut attempts = 0;
        loop {
            private_root(&root)?;
            match std::fs::create_dir(&dir) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound && attempts < 3 => {
                    attempts += 1;
                }
                other => break other?,
            }
        }
        let mut slot = Slot { dir, mounts: 0 };
        mount_bind(&slot.dir, &slot.dir)?;
        slot.mounts = 1;
        make_shared(&slot.dir)?;
        Ok(slot)
    }

    /// Binds the session's workspace onto the slot.
    fn bind(&mut self, workspace: &Path) -> std::io::Result<()> {
        if self.mounts != 1 {
            return Err(std::io::Error::other("the slot is not empty"));
        }
        mount_bind(workspace, &self.dir)?;
        self.mounts = 2;
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        while self.mounts > 0 {
            if let Err(err) = unmount(&self.dir) {
                tracing::warn!(slot = %self.dir.display(), error = %err, "unmounting a workspace slot; `berth gc` will");
                return;
            }
            self.mounts -= 1;
        }
        if let Err(err) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(slot = %self.dir.display(), error = %err, "removing a workspace slot");
        }
        // Only when it is empty: other slots may still be in it.
        let _ = std::fs::remove_dir(slot_root());
    }
}

/// A directory holding a slot's probe token, beside the slot.
struct ProbeDir {
    dir: PathBuf,
}

impl ProbeDir {
    fn new(slot: &Path) -> std::io::Result<ProbeDir> {
        let mut name = slot.as_os_str().to_owned();
        name.push(".probe");
        let dir = PathBuf::from(name);
        std::fs::create_dir(&dir)?;
        let probe = ProbeDir { dir };
        std::fs::write(probe.dir.join(PROBE_FILE), probe_token(slot))?;
        Ok(probe)
    }
}

impl Drop for ProbeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join(PROBE_FILE));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

fn mount_bind(source: &Path, target: &Path) -> std::io::Result<()> {
    let (source, target) = (c_path(source)?, c_path(target)?);
    // SAFETY: both paths are NUL-terminated strings that live through the
    // call; a bind mount reads no file system type or data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn make_shared(target: &Path) -> std::io::Result<()> {
    let target = c_path(target)?;
    // SAFETY: the path is a NUL-terminated string that lives through the
    // call; changing propagation reads no source, type or data.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_SHARED,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Detaches the topmost mount at `target` (lazily: a process still inside
/// keeps its view until it leaves).
fn unmount(target: &Path) -> std::io::Result<()> {
    let target = c_path(target)?;
    // SAFETY: the path is a NUL-terminated string that lives through the
    // call.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether `path` is a mount point of this process's mount namespace.
fn is_mount_point(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.display().to_string();
    mounts.lines().any(|line| {
        line.split(' ')
            .nth(4)
            .is_some_and(|point| session_core::paths::unescape_mountinfo(point) == wanted)
    })
}

/// Unmounts and removes (unless `dry_run`) the slots of processes that are
/// gone, with the probe directories they left.
pub(crate) fn collect_slots(dry_run: bool) -> Vec<Leftover> {
    let root = slot_root();
    // Only a root berth made: in one another user made, a "slot" could be
    // a symlink to any mount point of the host.
    if !is_private_root(&root) {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut leftovers = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .split(['-', '.'])
            .next()
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if crate::gc::process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let mut removed = false;
        if !dry_run {
            // Only unmount and rmdir: a workspace still bound here must
            // never be emptied.
            let mut unmounted = true;
            while is_mount_point(&path) {
                if let Err(err) = unmount(&path) {
                    tracing::warn!(slot = %path.display(), error = %err, "unmounting a leftover slot");
                    unmounted = false;
                    break;
                }
            }
            if unmounted {
                let _ = std::fs::remove_file(path.join(PROBE_FILE));
                removed = std::fs::remove_dir(&path).is_ok();
            }
        }
        leftovers.push(Leftover {
            kind: "workspace slot".to_owned(),
            id: path.display().to_string(),
            reason: format!("owner pid {pid} is gone"),
            removed,
        });
    }
    if !dry_run {
        let _ = std::fs::remove_dir(&root);
    }
    leftovers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_root_that_is_not_a_private_directory_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let temp = tempfile::tempdir().unwrap();
        let fresh = temp.path().join("fresh");
        private_root(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Taken again as it is.
        private_root(&fresh).unwrap();

        let elsewhere = temp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let link = temp.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let err = private_root(&link).unwrap_err().to_string();
        assert!(err.contains("not a private directory"), "{err}");

        let open = temp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(private_root(&open).is_err());
    }

    #[test]
    fn the_root_is_a_mount_point_and_a_file_is_not() {
        assert!(is_mount_point(Path::new("/")));
        assert!(!is_mount_point(
            &std::env::temp_dir().join("berth-no-such-dir")
        ));
    }
}
