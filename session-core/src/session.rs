//! The session: a workspace, its assets and the runtimes spawned in it.
//!
//! ```text
//! Session::builder(spec).base_dir(..).assets(..).mode(..)
//!     .prepare().await?            // workspace from the base snapshot
//! session.spawn(opts).await?       // any number of runtimes, any backend
//! session.materialize_input_files / get_file_contents / finish_checkpoint ...
//! session.close().await?           // every runtime, then the workspace
//! ```
//!
//! A session that is dropped (or whose future is cancelled) without
//! `close()` still leaves nothing behind: its runtimes kill their processes
//! on drop and the workspace removes its directory on drop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use tracing::Instrument;

use crate::assets::{AssetFingerprint, ResolvedAssets};
use crate::error::{Error, Result};
use crate::file_ops::{self, InputFile};
use crate::placeholders;
use crate::registry::Registry;
use crate::runtime::{Mount, PortMapping, Runtime, SpawnContext};
use crate::snapshot::{Snapshot, SnapshotRules};
use crate::spec::{EnvironmentSpec, Mode};
use crate::workspace::{
    Checkpoint, DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_TOTAL_SIZE, FileContent, InitialContent,
    Workspace, WorkspaceOptions,
};

/// A runtime shared between the session (which cleans it up on close) and
/// the caller.
pub type RuntimeHandle = Arc<dyn Runtime>;

/// Per-spawn options: what a caller adds to the spec for one runtime.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    /// Variables for every command of the runtime (above the spec's).
    pub env: IndexMap<String, String>,
    /// Extra mounts.
    pub mounts: Vec<Mount>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// A setup command run after the spec's.
    pub extra_setup_command: Option<String>,
    /// Skip setup entirely.
    pub disable_setup: bool,
}

/// Configures and prepares a [`Session`].
#[derive(Debug)]
pub struct SessionBuilder {
    spec: EnvironmentSpec,
    base_dir: Option<PathBuf>,
    initial_snapshot: Option<Snapshot>,
    assets: ResolvedAssets,
    mode: Mode,
    registry: Option<Arc<Registry>>,
    session_id: Option<String>,
    temp_root: Option<PathBuf>,
    max_file_size: u64,
    max_total_size: u64,
}

impl SessionBuilder {
    /// The directory whose snapshot (under the spec's rules) the workspace
    /// starts from. Without one the workspace starts empty.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// Starts from an existing snapshot instead of a directory.
    pub fn initial_snapshot(mut self, snapshot: Snapshot) -> Self {
        self.initial_snapshot = Some(snapshot);
        self
    }

    /// The session's static assets.
    pub fn assets(mut self, assets: ResolvedAssets) -> Self {
        self.assets = assets;
        self
    }

    /// Agent or evaluation (the default).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The registry to spawn runtimes from; by default every built-in
    /// linked into the binary.
    pub fn registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// A session id of the caller's choosing (labels, logs, markers).
    pub fn session_id(mut self, id: impl Into<String>) -> Self {
        self.session_id = Some(id.into());
        self
    }

    /// Where the session directory is created (default: the system's
    /// temporary directory).
    pub fn temp_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_root = Some(dir.into());
        self
    }

    /// The size cap for one file of [`Session::get_file_contents`].
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// The size cap for all the files one [`Session::get_file_contents`]
    /// call returns together.
    pub fn max_total_size(mut self, bytes: u64) -> Self {
        self.max_total_size = bytes;
        self
    }

    /// Builds the session without preparing it.
    pub fn build(self) -> Result<Session> {
        let id = self.session_id.unwrap_or_else(new_session_id);
        let registry = match self.registry {
            Some(registry) => registry,
            None => builtin_registry()?,
        };
        let ignore = self.spec.ignore_globs(&self.assets);
        let rules = SnapshotRules::new(self.spec.snapshot.keep_globs.as_deref(), &ignore)?;
        let options = WorkspaceOptions {
            rules,
            compression: self.spec.snapshot.compression,
            archive_save_dir: self.spec.snapshot.archive_save_dir.clone(),
            max_file_size: self.max_file_size,
            max_total_size: self.max_total_size,
            temp_root: self.temp_root,
        };
        let initial = match (self.initial_snapshot, self.base_dir) {
            (Some(snapshot), _) => InitialContent::Snapshot(snapshot),
            (None, Some(dir)) => InitialContent::Directory(dir),
            (None, None) => InitialContent::Empty,
        };
        let span = tracing::info_span!("session", id = %id, backend = %self.spec.backend_type);
        let workspace =
            Workspace::new(id.clone(), initial, options, self.mode, self.assets.clone());
        Ok(Session {
            id,
            spec: Arc::new(self.spec),
            registry,
            mode: self.mode,
            assets: self.assets,
            workspace: Arc::new(Mutex::new(workspace)),
            runtimes: Vec::new(),
            fingerprint: None,
            span,
        })
    }

    /// Builds and prepares the session.
    pub async fn prepare(self) -> Result<Session> {
        let mut session = self.build()?;
        session.prepare().await?;
        Ok(session)
    }

    /// Prepares a session, runs `body` with it, and closes it whatever
    /// `body` returned. The body's value comes back; a close failure is
    /// returned only when the body itself succeeded.
    pub async fn run<T, F>(self, body: F) -> Result<T>
    where
        F: AsyncFnOnce(&mut Session) -> Result<T>,
    {
        let mut session = self.prepare().await?;
        let outcome = body(&mut session).await;
        let closed = session.close().await;
        let value = outcome?;
        closed?;
        Ok(value)
    }
}

fn builtin_registry() -> Result<Arc<Registry>> {
    static REGISTRY: std::sync::OnceLock<Arc<Registry>> = std::sync::OnceLock::new();
    if let Some(registry) = REGISTRY.get() {
        return Ok(Arc::clone(registry));
    }
    let registry = Registry::with_builtins()?.shared();
    Ok(Arc::clone(REGISTRY.get_or_init(|| registry)))
}

/// 16 hex digits: the process, a counter and the time, hashed with a key
/// the process drew at random (std's `RandomState`). Not blake3: its first
/// hasher asks the CPU for its features, which on a VM traps to the
/// hypervisor and costs a process that runs one session (`berth run`) tens
/// of microseconds.
fn new_session_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    format!("{:016x}", hasher.finish())
}

/// A prepared workspace with its assets and runtimes. See the module
/// documentation.
pub struct Session {
    id: String,
    spec: Arc<EnvironmentSpec>,
    registry: Arc<Registry>,
    mode: Mode,
    assets: ResolvedAssets,
    workspace: Arc<Mutex<Workspace>>,
    runtimes: Vec<RuntimeHandle>,
    fingerprint: Option<AssetFingerprint>,
    span: tracing::Span,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("backend", &self.spec.backend_type)
            .field("mode", &self.mode)
            .field("runtimes", &self.runtimes.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts configuring a session for `spec`.
    pub fn builder(spec: EnvironmentSpec) -> SessionBuilder {
        SessionBuilder {
            spec,
            base_dir: None,
            initial_snapshot: None,
            assets: ResolvedAssets::default(),
            mode: Mode::Evaluation,
            registry: None,
            session_id: None,
            temp_root: None,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_total_size: DEFAULT_MAX_TOTAL_SIZE,
        }
    }

    /// The session's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The spec.
    pub fn spec(&self) -> &EnvironmentSpec {
        &self.spec
    }

    /// Agent or evaluation.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The assets.
    pub fn assets(&self) -> &ResolvedAssets {
        &self.assets
    }

    /// The runtimes spawned so far.
    pub fn runtimes(&self) -> &[RuntimeHandle] {
        &self.runtimes
    }

    /// The workspace directory (once prepared).
    pub fn workspace_path(&self) -> Result<PathBuf> {
        Ok(self.lock().root()?.to_path_buf())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Workspace> {
        // A panic while holding the lock cannot leave the workspace in a
        // state worse than the panic itself; keep serving it.
        self.workspace
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Runs blocking workspace work off the async threads, or on this one
    /// when `inline` says it is a few system calls (then the trip to the
    /// blocking pool, which in a one-session process starts a thread, would
    /// cost more than the work).
    async fn blocking<T, F>(&self, what: &'static str, inline: bool, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Workspace) -> Result<T> + Send + 'static,
    {
        let workspace = Arc::clone(&self.workspace);
        let span = tracing::debug_span!(parent: &self.span, "workspace", op = what);
        if inline {
            let _entered = span.enter();
            return work(&mut self.lock());
        }
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut guard = workspace
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            work(&mut guard)
        })
        .await
        .map_err(|err| Error::Backend {
            backend: "session".into(),
            message: format!("{what} did not finish: {err}"),
        })?
    }

    /// Prepares the workspace and records the assets' fingerprint for the
    /// tamper check. Fails with [`Error::AlreadyPrepared`] the second time.
    pub async fn prepare(&mut self) -> Result<()> {
        // One trip to a blocking thread for both steps.
        let assets = self.assets.clone();
        let inline = assets.is_empty() && self.lock().prepares_quickly();
        let fingerprint = self
            .blocking("prepare", inline, move |ws| {
                ws.prepare()?;
                assets.fingerprint()
            })
            .await?;
        self.fingerprint = Some(fingerprint);
        tracing::info!(parent: &self.span, "session prepared");
        Ok(())
    }

    /// Spawns a runtime of the spec's backend in the workspace.
    pub async fn spawn(&mut self, options: SpawnOptions) -> Result<RuntimeHandle> {
        let workspace = self.workspace_path()?;
        let ctx = SpawnContext {
            session_id: self.id.clone(),
            workspace,
            assets: self.assets.clone(),
            mode: self.mode,
            env: options.env,
            mounts: options.mounts,
            ports: options.ports,
            extra_setup_command: options.extra_setup_command,
            disable_setup: options.disable_setup,
        };
        let runtime: RuntimeHandle = self
            .registry
            .spawn_runtime(&self.spec, ctx)
            .instrument(self.span.clone())
            .await?
            .into();
        self.runtimes.push(Arc::clone(&runtime));
        tracing::debug!(parent: &self.span, runtimes = self.runtimes.len(), "runtime spawned");
        Ok(runtime)
    }

    /// Writes input files into the workspace (see
    /// [`file_ops::materialize_input_files`]).
    pub async fn materialize_input_files(&self, files: Vec<InputFile>) -> Result<Vec<PathBuf>> {
        self.blocking("materialize_input_files", false, move |ws| {
            file_ops::materialize_input_files(ws.root()?, &files)
        })
        .await
    }

    /// Reads workspace files (see [`Workspace::get_file_contents`]).
    pub async fn get_file_contents(
        &self,
        patterns: Vec<String>,
    ) -> Result<BTreeMap<String, FileContent>> {
        self.blocking("get_file_contents", false, move |ws| {
            ws.get_file_contents(&patterns)
        })
        .await
    }

    /// Replaces `{{static:NAME}}` placeholders with where each asset appears
    /// inside `runtime`.
    pub fn resolve_static_placeholders(
        &self,
        value: &serde_json::Value,
        runtime: &dyn Runtime,
    ) -> Result<serde_json::Value> {
        placeholders::resolve_static_placeholders(value, &self.assets, |asset| {
            runtime.asset_path(asset)
        })
    }

    /// Agent mode: snapshots the workspace, writes its files to `out_dir`
    /// and returns the diff against the previous snapshot.
    pub async fn finish_checkpoint(&self, out_dir: impl Into<PathBuf>) -> Result<Checkpoint> {
        let out_dir = out_dir.into();
        self.blocking("finish_checkpoint", false, move |ws| {
            ws.finish_checkpoint(&out_dir)
        })
        .await
    }

    /// Copies a directory's top-level entries over the workspace.
    pub async fn restore_from_snapshot_dir(&self, dir: impl Into<PathBuf>) -> Result<()> {
        let dir = dir.into();
        self.blocking("restore_from_snapshot_dir", false, move |ws| {
            ws.restore_from_snapshot_dir(&dir)
        })
        .await
    }

    /// Restores the initial snapshot.
    pub async fn reset(&self) -> Result<()> {
        self.blocking("reset", false, Workspace::reset).await
    }

    /// Takes a snapshot now without making it current.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        self.blocking("snapshot", false, |ws| ws.snapshot()).await
    }

    /// Takes a snapshot, makes it current, returns the previous one.
    pub async fn update_snapshot(&self) -> Result<Snapshot> {
        self.blocking("update_snapshot", false, Workspace::update_snapshot)
            .await
    }

    /// Cleans up every runtime (even when one fails), checks that no asset
    /// changed, then removes the workspace. Every failure is reported
    /// together in [`Error::Cleanup`].
    pub async fn close(mut self) -> Result<()> {
        let span = self.span.clone();
        let mut failures = Vec::new();
        for runtime in std::mem::take(&mut self.runtimes) {
            if let Err(err) = runtime.cleanup().instrument(span.clone()).await {
                tracing::warn!(parent: &span, error = %err, "runtime cleanup failed");
                failures.push(err);
            }
        }
        // The asset check, then the workspace's removal, in one trip to a
        // blocking thread; a failed check does not keep the removal from
        // running.
        let fingerprint = self.fingerprint.take();
        let assets = self.assets.clone();
        let inline = assets.is_empty() && self.lock().removes_quickly();
        let outcome = self
            .blocking("cleanup", inline, move |ws| {
                let check = fingerprint
                    .map(|before| assets.fingerprint().and_then(|now| before.check(&now)));
                Ok((check, ws.cleanup()))
            })
            .await;
        match outcome {
            Ok((check, removed)) => {
                failures.extend(check.and_then(Result::err));
                failures.extend(removed.err());
            }
            Err(err) => failures.push(err),
        }
        tracing::info!(parent: &span, failures = failures.len(), "session closed");
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            _ => Err(Error::Cleanup(failures)),
        }
    }
}
