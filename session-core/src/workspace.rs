//! The workspace: a private directory a session's commands run in, with its
//! initial snapshot, its current snapshot and the archives behind them.
//!
//! A prepared workspace lives in a session directory of its own,
//! `<temp>/berth-<random>/`, holding `workspace/` (what commands see),
//! `archives/` (snapshot archives, unless the spec names an
//! `archive_save_dir`) and `berth-session.json`, the marker `berth gc` uses
//! to find what a crashed host left behind. Nothing of berth's is ever
//! written inside `workspace/`. The whole session directory is removed by
//! [`Workspace::cleanup`], which also runs on drop.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::assets::ResolvedAssets;
use crate::compression::Compression;
use crate::diff::{self, SnapshotDiff};
use crate::error::{Error, Result};
use crate::glob::{self, GlobList};
use crate::paths;
use crate::snapshot::{ExtractMode, Snapshot, SnapshotRules};
use crate::spec::Mode;
use crate::tree::{self, FileKind, Opened, RemoveOnDrop, Walker};

/// The name of the marker file in every session directory.
pub const SESSION_MARKER: &str = "berth-session.json";

/// The prefix of every session directory berth creates.
pub const SESSION_DIR_PREFIX: &str = "berth-";

/// The default cap on a file read by [`Workspace::get_file_contents`].
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 << 20;

/// The default cap on all the files one [`Workspace::get_file_contents`]
/// call returns together: four files at [`DEFAULT_MAX_FILE_SIZE`].
pub const DEFAULT_MAX_TOTAL_SIZE: u64 = 256 << 20;

/// What a workspace starts from.
#[derive(Debug, Clone)]
pub enum InitialContent {
    /// An empty directory.
    Empty,
    /// A snapshot of this directory, taken under the workspace's rules when
    /// the workspace is prepared. The directory itself is never modified.
    Directory(PathBuf),
    /// An existing snapshot.
    Snapshot(Snapshot),
}

/// How a workspace snapshots and reads files.
#[derive(Debug, Clone)]
pub struct WorkspaceOptions {
    /// Keep and ignore rules for every snapshot.
    pub rules: SnapshotRules,
    /// Compression of every archive.
    pub compression: Compression,
    /// Where archives go; `None` keeps them in the session directory, removed
    /// with it. Every capture writes one there; an empty base is not a
    /// capture ([`Snapshot::empty`]), so it writes none.
    pub archive_save_dir: Option<PathBuf>,
    /// Largest file [`Workspace::get_file_contents`] returns.
    pub max_file_size: u64,
    /// Most bytes one [`Workspace::get_file_contents`] call returns, all
    /// files together.
    pub max_total_size: u64,
    /// Where the session directory is created; `None` is the system's
    /// temporary directory.
    pub temp_root: Option<PathBuf>,
}

impl Default for WorkspaceOptions {
    fn default() -> Self {
        WorkspaceOptions {
            rules: SnapshotRules::keep_all(),
            compression: Compression::Gzip,
            archive_save_dir: None,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_total_size: DEFAULT_MAX_TOTAL_SIZE,
            temp_root: None,
        }
    }
}

/// A file read by [`Workspace::get_file_contents`]: text when it is valid
/// UTF-8 (byte-exact, no newline rewriting), bytes otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum FileContent {
    /// Valid UTF-8.
    Text(String),
    /// Anything else.
    Bytes(Vec<u8>),
}

impl FileContent {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            FileContent::Text(text) => text.as_bytes(),
            FileContent::Bytes(bytes) => bytes,
        }
    }

    /// The text, if it is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            FileContent::Text(text) => Some(text),
            FileContent::Bytes(_) => None,
        }
    }
}

/// The result of [`Workspace::finish_checkpoint`].
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The snapshot taken at the checkpoint (now the current one).
    pub snapshot: Snapshot,
    /// What changed since the previous snapshot.
    pub diff: SnapshotDiff,
}

/// The marker written in every session directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SessionMarker {
    /// The session's id.
    pub session_id: String,
    /// The pid of the process that owns it.
    pub owner_pid: u32,
    /// The host that process runs on.
    pub owner_host: String,
    /// When it was created, in seconds since the Unix epoch.
    pub created_unix: u64,
}

struct Prepared {
    session_dir: PathBuf,
    root: PathBuf,
    canonical_root: PathBuf,
    archive_dir: PathBuf,
    initial: Snapshot,
    current: Snapshot,
}

/// A session's private working directory. See the module documentation.
pub struct Workspace {
    session_id: String,
    initial: InitialContent,
    options: WorkspaceOptions,
    mode: Mode,
    assets: ResolvedAssets,
    prepared: Option<Prepared>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("session_id", &self.session_id)
            .field("mode", &self.mode)
            .field("root", &self.prepared.as_ref().map(|p| &p.root))
            .finish_non_exhaustive()
    }
}

impl Workspace {
    /// A workspace that is not prepared yet.
    pub fn new(
        session_id: impl Into<String>,
        initial: InitialContent,
        options: WorkspaceOptions,
        mode: Mode,
        assets: ResolvedAssets,
    ) -> Workspace {
        Workspace {
            session_id: session_id.into(),
            initial,
            options,
            mode,
            assets,
            prepared: None,
        }
    }

    /// Creates the session directory, fills the workspace from the initial
    /// content, copies assets in (agent mode) and records the initial
    /// snapshot. Returns the workspace path.
    ///
    /// Fails with [`Error::AlreadyPrepared`] if called twice. On failure
    /// nothing is left behind.
    pub fn prepare(&mut self) -> Result<&Path> {
        if let Some(prepared) = &self.prepared {
            return Err(Error::AlreadyPrepared(prepared.root.clone()));
        }
        let temp_root = self
            .options
            .temp_root
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        fs::create_dir_all(&temp_root).map_err(Error::io("creating", &temp_root))?;
        // Only the caller may enter it: a sandbox can make set-id files
        // and device nodes in its workspace while the session lives.
        let session_dir = tempfile::Builder::new()
            .prefix(SESSION_DIR_PREFIX)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(&temp_root)
            .map_err(Error::io("creating session directory in", &temp_root))?
            .keep();
        // From here the guard removes everything if a step fails, whatever
        // the step left.
        let session_dir = RemoveOnDrop::new(session_dir);
        let prepared = self.fill(session_dir.path())?;
        session_dir.keep();
        tracing::debug!(session = %self.session_id, root = %prepared.root.display(), "workspace prepared");
        Ok(&self.prepared.insert(prepared).root)
    }

    fn fill(&self, session_dir: &Path) -> Result<Prepared> {
        let marker = SessionMarker {
            session_id: self.session_id.clone(),
            owner_pid: std::process::id(),
            owner_host: hostname(),
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let marker_path = session_dir.join(SESSION_MARKER);
        let marker_json = serde_json::to_vec_pretty(&marker).expect("marker serialises");
        fs::write(&marker_path, marker_json).map_err(Error::io("writing", &marker_path))?;

        let root = session_dir.join("workspace");
        fs::create_dir(&root).map_err(Error::io("creating", &root))?;
        let archive_dir = match &self.options.archive_save_dir {
            Some(dir) => dir.clone(),
            None => session_dir.join("archives"),
        };
        let initial = match &self.initial {
            // Nothing to archive: the first capture creates `archives/`.
            InitialContent::Empty => Snapshot::empty(self.options.compression),
            InitialContent::Directory(base) => {
                let snapshot = self.capture(base, &archive_dir)?;
                snapshot.extract(&root, ExtractMode::Mirror)?;
                snapshot
            }
            InitialContent::Snapshot(snapshot) => {
                snapshot.extract(&root, ExtractMode::Mirror)?;
                snapshot.clone()
            }
        };
        if self.mode == Mode::Agent {
            self.assets.materialize_into(&root)?;
        }
        let canonical_root = fs::canonicalize(&root).map_err(Error::io("opening", &root))?;
        Ok(Prepared {
            session_dir: session_dir.to_path_buf(),
            root,
            canonical_root,
            archive_dir,
            current: initial.clone(),
            initial,
        })
    }

    fn capture(&self, dir: &Path, archive_dir: &Path) -> Result<Snapshot> {
        Snapshot::capture(
            dir,
            &self.options.rules,
            self.options.compression,
            archive_dir,
        )
    }

    fn prepared(&self) -> Result<&Prepared> {
        self.prepared.as_ref().ok_or(Error::NotPrepared)
    }

    /// The session's id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The mode the workspace was created for.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The assets of the session.
    pub fn assets(&self) -> &ResolvedAssets {
        &self.assets
    }

    /// Whether the workspace is prepared.
    pub fn is_prepared(&self) -> bool {
        self.prepared.is_some()
    }

    /// The workspace directory.
    pub fn root(&self) -> Result<&Path> {
        Ok(&self.prepared()?.root)
    }

    /// The session directory holding the workspace, its archives and marker.
    pub fn session_dir(&self) -> Result<&Path> {
        Ok(&self.prepared()?.session_dir)
    }

    /// The snapshot the workspace started from.
    pub fn initial_snapshot(&self) -> Result<&Snapshot> {
        Ok(&self.prepared()?.initial)
    }

    /// The latest snapshot ([`Workspace::update_snapshot`],
    /// [`Workspace::finish_checkpoint`]), initially the initial one.
    pub fn current_snapshot(&self) -> Result<&Snapshot> {
        Ok(&self.prepared()?.current)
    }

    /// Takes a snapshot of the workspace now, without making it current.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let prepared = self.prepared()?;
        self.capture(&prepared.root, &prepared.archive_dir)
    }

    /// Takes a new snapshot, makes it current and returns the previous one.
    pub fn update_snapshot(&mut self) -> Result<Snapshot> {
        let snapshot = self.snapshot()?;
        let prepared = self.prepared.as_mut().ok_or(Error::NotPrepared)?;
        Ok(std::mem::replace(&mut prepared.current, snapshot))
    }

    /// Restores the initial snapshot (removing everything else) and copies
    /// the assets in again in agent mode.
    pub fn reset(&mut self) -> Result<()> {
        let prepared = self.prepared()?;
        prepared
            .initial
            .extract(&prepared.root, ExtractMode::Mirror)?;
        if self.mode == Mode::Agent {
            self.assets.materialize_into(&prepared.root)?;
        }
        let prepared = self.prepared.as_mut().ok_or(Error::NotPrepared)?;
        prepared.current = prepared.initial.clone();
        Ok(())
    }

    /// Agent mode only: snapshots the workspace, writes its files to
    /// `out_dir` (created if needed; other files there are left alone), makes
    /// the snapshot current and returns it with the diff against the previous
    /// one.
    pub fn finish_checkpoint(&mut self, out_dir: &Path) -> Result<Checkpoint> {
        if self.mode != Mode::Agent {
            return Err(Error::AgentModeOnly {
                operation: "finish_checkpoint",
            });
        }
        let snapshot = self.snapshot()?;
        let previous = self.current_snapshot()?;
        let diff = diff::diff(previous, &snapshot)?;
        snapshot.extract(out_dir, ExtractMode::Merge)?;
        let prepared = self.prepared.as_mut().ok_or(Error::NotPrepared)?;
        prepared.current = snapshot.clone();
        tracing::debug!(session = %self.session_id, summary = %diff.summary, "checkpoint finished");
        Ok(Checkpoint { snapshot, diff })
    }

    /// Copies the top-level entries of `dir` over the workspace (a directory
    /// replaces its namesake whole), then copies the assets in again in agent
    /// mode. Symlinks are copied as links.
    pub fn restore_from_snapshot_dir(&mut self, dir: &Path) -> Result<()> {
        let root = self.prepared()?.root.clone();
        let entries = fs::read_dir(dir).map_err(Error::io("reading directory", dir))?;
        for entry in entries {
            let entry = entry.map_err(Error::io("reading directory", dir))?;
            paths::copy_into(&root, Path::new(&entry.file_name()), &entry.path())?;
        }
        if self.mode == Mode::Agent {
            self.assets.materialize_into(&root)?;
        }
        Ok(())
    }

    /// Reads files of the workspace, keyed by their path relative to it.
    ///
    /// Each pattern is a glob (berth's one dialect, see [`crate::glob`]), a
    /// plain path to a file, or a directory (read recursively). A leading
    /// `./` is removed (only that: `.env` stays `.env`). Every path stays
    /// inside the workspace: a pattern that is absolute or climbs out is
    /// [`Error::PathEscape`]; symlinks are followed only when their target is
    /// inside, and skipped otherwise. Only regular files are read: a FIFO,
    /// a socket or a device matches nothing and is never opened, even when
    /// it is swapped in for a file while the read goes on. Patterns that
    /// match nothing add nothing; a file two patterns match is read once.
    ///
    /// Memory is bounded by the caps of [`WorkspaceOptions`]: a file over
    /// `max_file_size` is [`Error::FileTooLarge`], and a file that would
    /// bring the call's total over `max_total_size` is
    /// [`Error::ReadTooLarge`]; each is found from the file's size before
    /// it is read (and a file that grows while it is read is read no
    /// further than the caps allow).
    pub fn get_file_contents<S: AsRef<str>>(
        &self,
        patterns: &[S],
    ) -> Result<BTreeMap<String, FileContent>> {
        let prepared = self.prepared()?;
        let mut out = Collected::default();
        let mut globs = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
            if glob::is_glob(pattern) {
                if pattern.starts_with('/') || pattern.split('/').any(|part| part == "..") {
                    return Err(Error::PathEscape {
                        path: pattern.to_owned(),
                        reason: "patterns must stay inside the workspace",
                    });
                }
                globs.push(pattern.to_owned());
                continue;
            }
            let rel = paths::normalize_relative(pattern)?;
            let Some(resolved) = paths::resolve_inside(&prepared.canonical_root, &rel) else {
                continue;
            };
            let key = paths::to_slash(&rel);
            if resolved.is_dir() {
                self.read_tree(prepared, &key, &mut |_| true, &mut out)?;
            } else if !out.files.contains_key(&key) {
                // A FIFO, a socket or a device is never opened: it matches
                // nothing, as in a directory read.
                let Some(file) = open_for_reading(&resolved)? else {
                    continue;
                };
                let content = self.read_file(&rel, file, &resolved, &mut out.total)?;
                out.files.insert(key, content);
            }
        }
        if !globs.is_empty() {
            let globs = GlobList::new(&globs)?;
            self.read_tree(prepared, "", &mut |rel| globs.is_match(rel), &mut out)?;
        }
        Ok(out.files)
    }

    /// Reads every file under `start` (a workspace-relative directory, `""`
    /// for the root) whose relative path passes `select`, within the bounds
    /// of [`crate::tree`] ([`Error::TreeBound`] beyond them).
    fn read_tree(
        &self,
        prepared: &Prepared,
        start: &str,
        select: &mut dyn FnMut(&str) -> bool,
        out: &mut Collected,
    ) -> Result<()> {
        let base = prepared.root.join(start);
        let mut walker = Walker::new(&base)?;
        let proc_fd =
            tree::ProcFd::current().map_err(Error::io("opening /proc/self/fd for", &base))?;
        while let Some(entry) = walker.next_entry()? {
            if entry.kind == FileKind::Dir {
                walker.descend()?;
                continue;
            }
            let Some(inner) = entry.rel.to_str() else {
                continue;
            };
            let key = if start.is_empty() {
                inner.to_owned()
            } else {
                format!("{start}/{inner}")
            };
            if !select(&key) || out.files.contains_key(&key) {
                continue;
            }
            let rel = Path::new(&key);
            let opened = match entry.kind {
                FileKind::Symlink => match paths::resolve_inside(&prepared.canonical_root, rel) {
                    Some(target) => open_for_reading(&target)?,
                    None => continue,
                },
                FileKind::File => match entry.dir.open_regular_in(entry.name, &proc_fd) {
                    Ok(Opened::File(file, _)) => Some(file),
                    Ok(Opened::NotRegular(_)) => None,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                    Err(err) => return Err(Error::io("opening", &base.join(entry.rel))(err)),
                },
                _ => None,
            };
            let Some(file) = opened else {
                continue;
            };
            let content = self.read_file(rel, file, &prepared.root.join(rel), &mut out.total)?;
            out.files.insert(key.clone(), content);
        }
        Ok(())
    }

    /// Reads one file within both caps; `total` is what the call has read
    /// so far, and grows by this file.
    fn read_file(
        &self,
        rel: &Path,
        file: fs::File,
        resolved: &Path,
        total: &mut u64,
    ) -> Result<FileContent> {
        let size = file
            .metadata()
            .map_err(Error::io("inspecting", resolved))?
            .len();
        let file_limit = self.options.max_file_size;
        let total_limit = self.options.max_total_size;
        let so_far = *total;
        let too_large = |size: u64| {
            if size > file_limit {
                Some(Error::FileTooLarge {
                    path: paths::to_slash(rel),
                    size,
                    limit: file_limit,
                })
            } else if so_far.saturating_add(size) > total_limit {
                Some(Error::ReadTooLarge {
                    path: paths::to_slash(rel),
                    total: so_far.saturating_add(size),
                    limit: total_limit,
                })
            } else {
                None
            }
        };
        if let Some(err) = too_large(size) {
            return Err(err);
        }
        // One byte more than the caps allow shows a file that grew.
        let room = file_limit.min(total_limit - so_far);
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(room.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(Error::io("reading", resolved))?;
        if let Some(err) = too_large(bytes.len() as u64) {
            return Err(err);
        }
        *total += bytes.len() as u64;
        Ok(match String::from_utf8(bytes) {
            Ok(text) => FileContent::Text(text),
            Err(err) => FileContent::Bytes(err.into_bytes()),
        })
    }

    /// Whether [`prepare`](Self::prepare) is a few system calls: an empty
    /// base and nothing to materialize.
    pub fn prepares_quickly(&self) -> bool {
        matches!(self.initial, InitialContent::Empty) && self.assets.is_empty()
    }

    /// Whether [`cleanup`](Self::cleanup) is a few system calls: nothing
    /// prepared, or a session directory holding its marker and an empty
    /// workspace directory alone (a command may write anywhere in the
    /// session directory, and no archive may be there). Asks the file
    /// system (two directory reads and a lookup); an error answers no.
    pub fn removes_quickly(&self) -> bool {
        let Some(prepared) = &self.prepared else {
            return true;
        };
        let ours_alone = fs::read_dir(&prepared.session_dir).is_ok_and(|entries| {
            entries.into_iter().all(|entry| {
                entry.is_ok_and(|e| e.file_name() == SESSION_MARKER || e.file_name() == "workspace")
            })
        });
        ours_alone
            && fs::symlink_metadata(&prepared.root).is_ok_and(|meta| meta.is_dir())
            && fs::read_dir(&prepared.root).is_ok_and(|mut entries| entries.next().is_none())
    }

    /// Removes the session directory: workspace, archives (unless they were
    /// saved to `archive_save_dir`) and marker. Idempotent; also runs on
    /// drop.
    pub fn cleanup(&mut self) -> Result<()> {
        let Some(prepared) = self.prepared.take() else {
            return Ok(());
        };
        crate::gc::remove_session_dir(&prepared.session_dir)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Err(err) = self.cleanup() {
            tracing::warn!(session = %self.session_id, error = %err, "workspace cleanup on drop failed");
        }
    }
}

/// Opens the regular file at `path` (a resolved path inside the
/// workspace) for reading; `None` when it is gone or is anything else
/// (a directory, a FIFO, a socket, a device), which is never opened.
fn open_for_reading(path: &Path) -> Result<Option<fs::File>> {
    match tree::open_regular_path(path) {
        Ok(Opened::File(file, _)) => Ok(Some(file)),
        Ok(Opened::NotRegular(_)) => Ok(None),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Error::io("opening", path)(err)),
    }
}

/// What a [`Workspace::get_file_contents`] call has read so far.
#[derive(Default)]
struct Collected {
    files: BTreeMap<String, FileContent>,
    /// Their sizes, added up.
    total: u64,
}

/// The name of this host, for session markers.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
