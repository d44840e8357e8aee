//! A remote session: a session of the server's own registry, its sync
//! state, its runtimes, its remembered executions and its lease.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::StatusCode;
use session_core::assets::ResolvedAssets;
use session_core::runtime::{ExecResult, StdinSender};
use session_core::session::{RuntimeHandle, Session, SpawnOptions};
use session_core::snapshot::ContentHash;
use session_core::workspace::{SESSION_MARKER, SessionMarker, hostname};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::http::Failure;
use crate::protocol::ChangeSet;
use crate::sync::{Packer, Scanner, Tree};
use crate::token::random_hex;

/// The server's directory for one remote session, removed with it:
/// `assets/` (the uploaded assets, read-only), `staging/` (change archives
/// waiting to be fetched, uploads being received) and `sessions/` (where
/// the session's own directory and workspace live).
///
/// Its name starts with berth's session-directory prefix and it holds a
/// session marker naming this process, written before anything else, so
/// `berth gc` reaps the whole area when the server was killed.
#[derive(Debug)]
pub(crate) struct Area {
    dir: PathBuf,
}

impl Area {
    /// Creates a fresh area for session `id` under `root`. On failure
    /// nothing is left behind.
    pub(crate) fn create(root: &Path, id: &str) -> std::io::Result<Area> {
        fs::create_dir_all(root)?;
        // Only the server's user may enter it (sessions hold what sandboxes
        // made: set-id files, device nodes).
        let dir = tempfile::Builder::new()
            .prefix("berth-remote-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(root)?;
        let marker = SessionMarker {
            session_id: id.to_owned(),
            owner_pid: std::process::id(),
            owner_host: hostname(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let json = serde_json::to_vec_pretty(&marker).map_err(std::io::Error::other)?;
        fs::write(dir.path().join(SESSION_MARKER), json)?;
        for sub in ["assets", "staging", "sessions"] {
            fs::create_dir(dir.path().join(sub))?;
        }
        Ok(Area { dir: dir.keep() })
    }

    pub(crate) fn assets(&self) -> PathBuf {
        self.dir.join("assets")
    }

    pub(crate) fn staging(&self) -> PathBuf {
        self.dir.join("staging")
    }

    pub(crate) fn sessions(&self) -> PathBuf {
        self.dir.join("sessions")
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // Read-only asset directories and whatever the session's commands
        // left, at any depth: the one removal that takes every tree.
        if let Err(err) = session_core::tree::remove_tree(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %super::logs::clip(&err.to_string(), super::LOGGED_ERROR_BYTES), "removing a remote session's directory failed");
        }
    }
}

/// Removes write permission from everything under `dir` and from `dir`
/// itself (symlinks aside), walking it without recursion.
pub(crate) fn make_read_only(dir: &Path) -> Result<(), session_core::Error> {
    use session_core::tree::{Dir, FileKind, Walker};
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| session_core::Error::Io {
            action,
            path,
            source,
        }
    };
    let read_only = |parent: &Dir, name: &std::ffi::OsStr, path: &Path| {
        let mode = parent.stat_at(name).map_err(io("inspecting", path))?.mode;
        parent
            .set_mode_at(name, mode & !0o222)
            .map_err(io("protecting", path))
    };
    let mut walker = Walker::new(dir)?;
    while let Some(entry) = walker.next_entry()? {
        if matches!(entry.kind, FileKind::File | FileKind::Dir) {
            read_only(entry.dir, entry.name, &dir.join(entry.rel))?;
        }
        walker.descend()?;
    }
    let mode = fs::symlink_metadata(dir)
        .map_err(io("inspecting", dir))?
        .permissions()
        .mode();
    fs::set_permissions(dir, fs::Permissions::from_mode(mode & !0o222))
        .map_err(io("protecting", dir))
}

/// The workspace as the server last saw it.
#[derive(Debug)]
pub(crate) struct SyncState {
    pub(crate) scanner: Scanner,
    pub(crate) tree: Tree,
}

/// How an execution ended, as remembered for retries.
#[derive(Debug, Clone)]
pub(crate) enum ExecOutcome {
    /// The command ran; here is its result and what it changed.
    Finished {
        result: Arc<ExecResult>,
        changes: Arc<ChangeSet>,
    },
    /// It could not start, or its changes could not be collected.
    Failed(Failure),
}

/// One execution, found again by its idempotency key.
#[derive(Debug)]
pub(crate) struct ExecRecord {
    /// A digest of the request, so a key reused for another command is
    /// refused rather than answered with the wrong outcome.
    pub(crate) digest: [u8; 32],
    pub(crate) outcome: watch::Sender<Option<ExecOutcome>>,
    pub(crate) cancel: watch::Sender<bool>,
    /// Where streamed stdin goes, for an execution that takes it; held
    /// across the wait for the command to take a chunk, so chunks are
    /// handed on in order.
    pub(crate) stdin: tokio::sync::Mutex<StdinFeed>,
}

/// The server's end of an execution's streamed stdin.
#[derive(Debug, Default)]
pub(crate) struct StdinFeed {
    /// `None` when the execution takes no streamed stdin, or it ended.
    pub(crate) sender: Option<StdinSender>,
    /// How many bytes were handed on so far.
    pub(crate) received: u64,
}

impl ExecRecord {
    fn new(digest: [u8; 32]) -> ExecRecord {
        ExecRecord {
            digest,
            outcome: watch::channel(None).0,
            cancel: watch::channel(false).0,
            stdin: tokio::sync::Mutex::new(StdinFeed::default()),
        }
    }

    /// The outcome, once there is one.
    pub(crate) fn outcome(&self) -> Option<ExecOutcome> {
        self.outcome.borrow().clone()
    }

    /// Waits for the outcome.
    pub(crate) async fn wait(&self) -> ExecOutcome {
        let mut rx = self.outcome.subscribe();
        loop {
            if let Some(outcome) = rx.borrow_and_update().clone() {
                return outcome;
            }
            if rx.changed().await.is_err() {
                return ExecOutcome::Failed(Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the execution vanished",
                ));
            }
        }
    }

    /// Resolves once the client asked to cancel.
    pub(crate) async fn cancelled(&self) {
        let mut rx = self.cancel.subscribe();
        let _ = rx.wait_for(|cancelled| *cancelled).await;
    }
}

/// What an exec request found for its key.
pub(crate) enum Begin {
    /// A new execution: start it, holding the workspace.
    Fresh(Arc<ExecRecord>, Busy),
    /// A retry: join the first run.
    Attach(Arc<ExecRecord>),
}

#[derive(Debug, Default)]
struct Inner {
    runtimes: HashMap<String, RuntimeHandle>,
    next_runtime: u64,
    /// What holds the workspace now (a command, a sync, a setup).
    busy: Option<&'static str>,
    /// The tree's checksum, current whenever `busy` is `None`.
    checksum: Option<ContentHash>,
    execs: HashMap<String, Arc<ExecRecord>>,
    exec_order: VecDeque<String>,
    staged: HashMap<String, PathBuf>,
    staged_order: VecDeque<String>,
    tasks: Vec<AbortHandle>,
}

/// A session served to a remote client.
///
/// Lock order: `sync` may be held while taking `inner`, never the reverse.
pub(crate) struct RemoteSession {
    pub(crate) id: String,
    pub(crate) label: String,
    /// The server-side backend type.
    pub(crate) backend: String,
    /// The address of the client that opened it.
    pub(crate) client: SocketAddr,
    pub(crate) workspace: PathBuf,
    pub(crate) assets: ResolvedAssets,
    session: tokio::sync::Mutex<Option<Session>>,
    pub(crate) sync: Mutex<SyncState>,
    inner: Mutex<Inner>,
    lease: Duration,
    deadline: Mutex<Instant>,
    closed: AtomicBool,
    /// Why the session is being closed, for the `error` line that ends the
    /// event stream of a command it stops.
    stop_reason: Mutex<Option<&'static str>>,
    kept_outcomes: usize,
    /// Declared last: removed after everything that lives in it.
    area: Area,
}

impl std::fmt::Debug for RemoteSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSession")
            .field("id", &self.id)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Holds a session's workspace for one operation; dropping it lets the
/// next one in.
pub(crate) struct Busy {
    session: Arc<RemoteSession>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.session.lock().busy = None;
    }
}

/// What building a remote session needs.
pub(crate) struct Parts {
    pub(crate) id: String,
    pub(crate) label: String,
    pub(crate) backend: String,
    pub(crate) client: SocketAddr,
    pub(crate) session: Session,
    pub(crate) workspace: PathBuf,
    pub(crate) assets: ResolvedAssets,
    pub(crate) sync: SyncState,
    pub(crate) lease: Duration,
    pub(crate) kept_outcomes: usize,
    pub(crate) area: Area,
}

impl RemoteSession {
    pub(crate) fn new(parts: Parts) -> RemoteSession {
        let checksum = parts.sync.tree.checksum();
        RemoteSession {
            id: parts.id,
            label: parts.label,
            backend: parts.backend,
            client: parts.client,
            workspace: parts.workspace,
            assets: parts.assets,
            session: tokio::sync::Mutex::new(Some(parts.session)),
            sync: Mutex::new(parts.sync),
            inner: Mutex::new(Inner {
                checksum: Some(checksum),
                ..Inner::default()
            }),
            lease: parts.lease,
            deadline: Mutex::new(Instant::now() + parts.lease),
            closed: AtomicBool::new(false),
            stop_reason: Mutex::new(None),
            kept_outcomes: parts.kept_outcomes.max(1),
            area: parts.area,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sync state (held only on blocking threads).
    pub(crate) fn sync_state(&self) -> MutexGuard<'_, SyncState> {
        self.sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lease length.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// Extends the lease from now.
    pub(crate) fn renew(&self) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now() + self.lease;
    }

    /// Whether the lease ran out at `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) <= now
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Where uploads are received.
    pub(crate) fn staging(&self) -> PathBuf {
        self.area.staging()
    }

    fn gone(&self) -> Failure {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!("session `{}` is closed", self.id),
        )
    }

    /// Takes the workspace for `what`, or 409 when something holds it.
    pub(crate) fn acquire(self: &Arc<Self>, what: &'static str) -> Result<Busy, Failure> {
        let mut inner = self.lock();
        if self.is_closed() {
            return Err(self.gone());
        }
        if let Some(holder) = inner.busy {
            return Err(busy_failure(holder));
        }
        inner.busy = Some(what);
        Ok(Busy {
            session: Arc::clone(self),
        })
    }

    /// Records the tree's new checksum (while still busy).
    pub(crate) fn set_checksum(&self, checksum: ContentHash) {
        self.lock().checksum = Some(checksum);
    }

    /// Finds or starts the execution named `key`.
    pub(crate) fn begin_exec(
        self: &Arc<Self>,
        key: &str,
        digest: [u8; 32],
        base: ContentHash,
    ) -> Result<Begin, Failure> {
        let mut inner = self.lock();
        if let Some(record) = inner.execs.get(key) {
            if record.digest != digest {
                return Err(Failure::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("idempotency key `{key}` was already used for another request"),
                ));
            }
            return Ok(Begin::Attach(Arc::clone(record)));
        }
        if self.is_closed() {
            return Err(self.gone());
        }
        if let Some(holder) = inner.busy {
            return Err(busy_failure(holder));
        }
        if inner.checksum != Some(base) {
            return Err(Failure::new(
                StatusCode::PRECONDITION_FAILED,
                "the workspace is not in the state the request expects (base checksum differs); \
                 fetch the manifest and sync again",
            ));
        }
        inner.busy = Some("a command");
        let record = Arc::new(ExecRecord::new(digest));
        inner.execs.insert(key.to_owned(), Arc::clone(&record));
        inner.exec_order.push_back(key.to_owned());
        Ok(Begin::Fresh(
            record,
            Busy {
                session: Arc::clone(self),
            },
        ))
    }

    /// Forgets the oldest finished executions beyond what is kept.
    pub(crate) fn forget_old_execs(&self) {
        let mut inner = self.lock();
        while inner.exec_order.len() > self.kept_outcomes {
            let Some(oldest) = inner.exec_order.front().cloned() else {
                break;
            };
            let finished = inner
                .execs
                .get(&oldest)
                .is_none_or(|r| r.outcome().is_some());
            if !finished {
                break;
            }
            inner.exec_order.pop_front();
            inner.execs.remove(&oldest);
        }
    }

    /// The execution named `key`.
    pub(crate) fn exec_record(&self, key: &str) -> Option<Arc<ExecRecord>> {
        self.lock().execs.get(key).cloned()
    }

    /// Remembers a task to abort when the session closes.
    pub(crate) fn track(&self, task: AbortHandle) {
        let mut inner = self.lock();
        inner.tasks.retain(|t| !t.is_finished());
        inner.tasks.push(task);
    }

    /// Adds a runtime; returns its id.
    pub(crate) fn add_runtime(&self, runtime: RuntimeHandle) -> String {
        let mut inner = self.lock();
        inner.next_runtime += 1;
        let id = format!("r{}", inner.next_runtime);
        inner.runtimes.insert(id.clone(), runtime);
        id
    }

    /// The runtime `id`, or 404.
    pub(crate) fn runtime(&self, id: &str) -> Result<RuntimeHandle, Failure> {
        self.lock().runtimes.get(id).cloned().ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                format!("session `{}` has no runtime `{id}`", self.id),
            )
        })
    }

    /// Removes the runtime `id` from the session's map.
    pub(crate) fn remove_runtime(&self, id: &str) -> Result<RuntimeHandle, Failure> {
        let runtime = self.runtime(id)?;
        self.lock().runtimes.remove(id);
        Ok(runtime)
    }

    /// Spawns a runtime of the session's backend (setup runs now).
    pub(crate) async fn spawn_runtime(
        &self,
        options: SpawnOptions,
    ) -> Result<RuntimeHandle, Failure> {
        let mut guard = self.session.lock().await;
        let Some(session) = guard.as_mut() else {
            return Err(self.gone());
        };
        session
            .spawn(options)
            .await
            .map_err(|err| Failure::from_core(&err, &self.backend))
    }

    /// The file of staged change set `id`.
    pub(crate) fn staged(&self, id: &str) -> Option<PathBuf> {
        self.lock().staged.get(id).cloned()
    }

    /// Scans the workspace after an operation and stages what changed
    /// since the last scan: the archive of created and changed entries
    /// waits in `staging/` for the client to fetch it. Blocking; call while
    /// holding [`Busy`].
    pub(crate) fn stage_changes(&self) -> Result<ChangeSet, Failure> {
        let internal = |err: session_core::Error| Failure::from_core(&err, &self.backend);
        let mut sync = self.sync_state();
        let base = sync.tree.checksum();
        let now = sync.scanner.scan(&self.workspace).map_err(internal)?;
        let (upserts, mut deletes) = sync.tree.changes_to(&now);
        let mut staged = None;
        let mut packed_upserts = Vec::new();
        if !upserts.is_empty() {
            let id = format!("c{}", random_hex(8));
            let path = self.area.staging().join(format!("{id}.tar"));
            let file = fs::File::create(&path).map_err(|err| {
                Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("staging changes: {err}"),
                )
            })?;
            let mut packer = Packer::new(std::io::BufWriter::with_capacity(256 << 10, file));
            packer
                .add_entries(&self.workspace, &upserts)
                .map_err(internal)?;
            let (out, packed) = packer.finish().map_err(internal)?;
            out.into_inner()
                .map_err(|err| {
                    Failure::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("staging changes: {}", err.error()),
                    )
                })?
                .sync_data()
                .ok();
            deletes.extend(packed.vanished);
            packed_upserts = packed.upserts;
            staged = Some((id, path));
        }
        sync.tree.apply(&packed_upserts, &deletes);
        let checksum = sync.tree.checksum();
        drop(sync);
        let mut inner = self.lock();
        inner.checksum = Some(checksum);
        let id = staged.map(|(id, path)| {
            inner.staged.insert(id.clone(), path);
            inner.staged_order.push_back(id.clone());
            while inner.staged_order.len() > self.kept_outcomes {
                if let Some(old) = inner.staged_order.pop_front()
                    && let Some(path) = inner.staged.remove(&old)
                {
                    let _ = fs::remove_file(path);
                }
            }
            id
        });
        Ok(ChangeSet {
            id,
            base,
            checksum,
            upserts: packed_upserts,
            deletes,
        })
    }

    /// Records why the session is about to close (the first reason given
    /// wins): the last line of a command's event stream it stops says so.
    pub(crate) fn stopping(&self, reason: &'static str) {
        self.stop_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(reason);
    }

    /// The failure that ends an execution the session stopped: why it
    /// closes, and that the command was killed.
    pub(crate) fn stopped_failure(&self) -> Failure {
        let reason = self
            .stop_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or("the server stopped the execution");
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{reason}: the command of session `{}` was killed before it finished",
                self.id
            ),
        )
    }

    /// Stops everything at once, without waiting: aborts running
    /// executions (which drops their event streams, killing the commands)
    /// and marks the session closed. Dropping the last handle then removes
    /// the workspace and the area.
    pub(crate) fn abandon(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let tasks = std::mem::take(&mut self.lock().tasks);
        for task in tasks {
            task.abort();
        }
    }

    /// Closes the session: aborts what runs, cleans up every runtime and
    /// the workspace, and removes the area. Failures are reported after
    /// everything was attempted.
    pub(crate) async fn close(&self) -> Result<(), session_core::Error> {
        self.abandon();
        let runtimes: Vec<RuntimeHandle> = self.lock().runtimes.drain().map(|(_, r)| r).collect();
        let mut failures = Vec::new();
        for runtime in runtimes {
            if let Err(err) = runtime.cleanup().await {
                failures.push(err);
            }
        }
        let session = self.session.lock().await.take();
        if let Some(session) = session
            && let Err(err) = session.close().await
        {
            failures.push(err);
        }
        {
            let mut inner = self.lock();
            for (_, path) in inner.staged.drain() {
                let _ = fs::remove_file(path);
            }
        }
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            _ => Err(session_core::Error::Cleanup(failures)),
        }
    }
}

fn busy_failure(holder: &str) -> Failure {
    Failure::new(
        StatusCode::CONFLICT,
        format!(
            "the session is busy with {holder}: a remote session runs one command \
             (or sync, or setup) at a time"
        ),
    )
}
