//! Finding and removing the session directories a crashed host left behind.
//!
//! Every prepared workspace lives in a session directory
//! `<temp>/berth-<random>/` holding a [`SessionMarker`] (see
//! [`crate::workspace`]). A session closed or dropped normally removes its
//! directory; one whose host process was killed (`SIGKILL`, a power cut, an
//! out-of-memory kill) cannot. [`scan_session_dirs`] looks at every
//! `berth-*` directory directly under a temporary root and decides, from
//! its marker alone, whether it is left behind. Other berth directories
//! made that way carry their marker at the same level and are judged the
//! same: a `berth serve` remote session's area (`berth-remote-*`, holding
//! the uploaded assets and the session's own directory below it) names the
//! server, and a scratch directory of `berth diff` names its process.
//!
//! * marker readable, written on **this host**, owner pid **gone**: left
//!   behind ([`Verdict::Leftover`]), removed by [`collect_session_dirs`];
//! * marker readable, owner pid **alive** (or alive under another user):
//!   in use ([`Verdict::InUse`]), never touched. A pid reused by an
//!   unrelated process keeps the directory until that process ends too: a
//!   directory is only removed when no process could own it;
//! * marker written on **another host** (a temporary directory shared over
//!   the network, a container's host name): not ours to judge
//!   ([`Verdict::InUse`]);
//! * no readable marker: [`Verdict::Unmarked`]. Reported, and removed only
//!   when the directory was last modified more than
//!   [`GcPolicy::unmarked_grace`] ago (one hour by default), since a session
//!   being prepared right now has its directory for an instant before its
//!   marker, and only when it holds nothing but what a session directory
//!   holds (`workspace/`, `archives/`), so a directory of someone else's
//!   that merely starts with `berth-` is never removed.
//!
//! Only directories are considered, symlinks are never followed, and
//! nothing outside the temporary root is touched.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::runtime::Leftover;
use crate::workspace::{SESSION_DIR_PREFIX, SESSION_MARKER, SessionMarker, hostname};

/// The [`Leftover::kind`] of a session directory.
pub const SESSION_DIR_KIND: &str = "session directory";

/// How long a `berth-*` directory without a readable marker is kept before
/// it counts as left behind.
pub const DEFAULT_UNMARKED_GRACE: Duration = Duration::from_secs(60 * 60);

/// How [`scan_session_dirs`] judges directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcPolicy {
    /// The host name markers must carry to be judged here.
    pub this_host: String,
    /// How old (by modification time) an unmarked directory must be before
    /// it is removed.
    pub unmarked_grace: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            this_host: hostname(),
            unmarked_grace: DEFAULT_UNMARKED_GRACE,
        }
    }
}

/// What a scan decided about one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its owner is gone: remove it.
    Leftover {
        /// Why, in words (`owner pid 123 on this host is gone`).
        reason: String,
    },
    /// No readable marker. It may be removed only when it was last
    /// modified longer ago than the grace period and holds nothing but what
    /// a session directory holds (`workspace/`, `archives/`, the marker):
    /// a directory that merely shares the prefix is never removed.
    Unmarked {
        /// Why the marker could not be used, and why it is kept if it is.
        reason: String,
        /// Whether garbage collection may remove it.
        removable: bool,
    },
    /// Owned by a live process, or by another host: leave it alone.
    InUse {
        /// Why it is kept.
        reason: String,
    },
}

impl Verdict {
    /// Whether garbage collection removes a directory with this verdict.
    pub fn removable(&self) -> bool {
        match self {
            Verdict::Leftover { .. } => true,
            Verdict::Unmarked { removable, .. } => *removable,
            Verdict::InUse { .. } => false,
        }
    }

    /// The reason, whatever the verdict.
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Leftover { reason }
            | Verdict::Unmarked { reason, .. }
            | Verdict::InUse { reason } => reason,
        }
    }
}

/// One `berth-*` directory found by [`scan_session_dirs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDir {
    /// The directory.
    pub path: PathBuf,
    /// Its marker, when it could be read.
    pub marker: Option<SessionMarker>,
    /// What to do with it.
    pub verdict: Verdict,
}

/// Looks at every directory named `berth-*` directly under `temp_root` and
/// judges it under `policy` (see the module documentation). Directories
/// come back sorted by path; in-use ones are included.
///
/// Fails with [`Error::Io`] when `temp_root` cannot be read. A directory
/// that vanishes during the scan is skipped.
pub fn scan_session_dirs(temp_root: &Path, policy: &GcPolicy) -> Result<Vec<SessionDir>> {
    let entries = fs::read_dir(temp_root).map_err(Error::io("reading directory", temp_root))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io("reading directory", temp_root))?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(SESSION_DIR_PREFIX) {
            continue;
        }
        // `DirEntry::file_type` does not follow symlinks.
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => {}
            _ => continue,
        }
        let path = entry.path();
        match judge(&path, policy) {
            Ok((marker, verdict)) => found.push(SessionDir {
                path,
                marker,
                verdict,
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::io("inspecting", &path)(err)),
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

fn judge(dir: &Path, policy: &GcPolicy) -> io::Result<(Option<SessionMarker>, Verdict)> {
    let marker_path = dir.join(SESSION_MARKER);
    let unreadable = match read_marker(&marker_path) {
        Ok(marker) => {
            let verdict = judge_marker(&marker, policy);
            return Ok((Some(marker), verdict));
        }
        Err(reason) => reason,
    };
    let modified = fs::symlink_metadata(dir)?.modified()?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or(Duration::ZERO);
    let foreign = foreign_entry(dir)?;
    let old = age > policy.unmarked_grace;
    let verdict = match (old, &foreign) {
        (true, None) => "",
        (false, None) => ", kept until it is older than the grace period",
        (_, Some(_)) => ", kept: it holds",
    };
    let mut reason = format!(
        "{unreadable}; last modified {} ago{verdict}",
        human_duration(age)
    );
    if let Some(name) = &foreign {
        reason.push_str(&format!(
            " `{name}`, which is not part of a session directory"
        ));
    }
    let removable = old && foreign.is_none();
    Ok((None, Verdict::Unmarked { reason, removable }))
}

/// The first top-level entry of `dir` that a session directory never holds
/// (anything but `workspace`, `archives` and the marker), if any.
fn foreign_entry(dir: &Path) -> io::Result<Option<String>> {
    const SESSION_ENTRIES: [&str; 3] = ["workspace", "archives", SESSION_MARKER];
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !SESSION_ENTRIES.contains(&name.as_str()) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// The largest marker read; a real one is a few hundred bytes.
const MAX_MARKER_BYTES: u64 = 64 << 10;

/// Reads a session marker. Anyone who can write the temporary directory
/// can plant one, so it is read as untrusted: never through a symlink,
/// never from a FIFO or a device (which could block or never end), and no
/// more than [`MAX_MARKER_BYTES`].
fn read_marker(path: &Path) -> std::result::Result<SessionMarker, String> {
    use std::io::Read as _;
    let file = match crate::tree::open_regular_path(path) {
        Ok(crate::tree::Opened::File(file, _)) => file,
        Ok(crate::tree::Opened::NotRegular(stat)) => {
            return Err(if stat.kind == crate::tree::FileKind::Symlink {
                format!("{SESSION_MARKER} is a symlink")
            } else {
                format!("{SESSION_MARKER} is not a regular file")
            });
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(format!("no {SESSION_MARKER}"));
        }
        Err(err) => return Err(format!("cannot read {SESSION_MARKER}: {err}")),
    };
    let mut bytes = Vec::new();
    file.take(MAX_MARKER_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read {SESSION_MARKER}: {err}"))?;
    if bytes.len() as u64 > MAX_MARKER_BYTES {
        return Err(format!(
            "{SESSION_MARKER} is larger than {MAX_MARKER_BYTES} bytes"
        ));
    }
    let marker: SessionMarker = serde_json::from_slice(&bytes)
        .map_err(|err| format!("{SESSION_MARKER} is not a session marker: {err}"))?;
    if marker.owner_pid == 0 || i32::try_from(marker.owner_pid).is_err() {
        return Err(format!(
            "{SESSION_MARKER} names no valid owner pid ({})",
            marker.owner_pid
        ));
    }
    Ok(marker)
}

fn judge_marker(marker: &SessionMarker, policy: &GcPolicy) -> Verdict {
    let pid = marker.owner_pid;
    if marker.owner_host != policy.this_host {
        return Verdict::InUse {
            reason: format!("owned by pid {pid} on another host ({})", marker.owner_host),
        };
    }
    if process_exists(pid) {
        Verdict::InUse {
            reason: format!("owner pid {pid} is alive"),
        }
    } else {
        Verdict::Leftover {
            reason: format!("owner pid {pid} on this host is gone"),
        }
    }
}

/// Whether a process with this pid exists on this host (a process of
/// another user counts; a zombie counts until it is reaped).
pub fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks that the process exists;
    // the pid is positive, so it never addresses a process group.
    let status = unsafe { libc::kill(pid, 0) };
    status == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes one session directory, whatever its commands left in it: trees
/// of any depth and path length, directories without permissions
/// ([`crate::tree::remove_tree`]). A directory that is already gone is not
/// an error.
///
/// Fails with [`Error::Io`] naming what could not be removed.
pub fn remove_session_dir(dir: &Path) -> Result<()> {
    crate::tree::remove_tree(dir)
}

/// Scans `temp_root` and removes every removable directory (unless
/// `dry_run`), returning one [`Leftover`] per directory that is left behind
/// or unmarked; directories in use are not listed.
///
/// A directory that could not be removed comes back with `removed: false`
/// and the failure appended to its reason; the others are still removed.
/// Fails only when `temp_root` cannot be read.
pub fn collect_session_dirs(
    temp_root: &Path,
    policy: &GcPolicy,
    dry_run: bool,
) -> Result<Vec<Leftover>> {
    let mut leftovers = Vec::new();
    for dir in scan_session_dirs(temp_root, policy)? {
        if matches!(dir.verdict, Verdict::InUse { .. }) {
            continue;
        }
        let mut reason = dir.verdict.reason().to_owned();
        let removed = if dir.verdict.removable() && !dry_run {
            match remove_session_dir(&dir.path) {
                Ok(()) => true,
                Err(err) => {
                    reason.push_str(&format!("; removing it failed: {err}"));
                    false
                }
            }
        } else {
            false
        };
        leftovers.push(Leftover {
            kind: SESSION_DIR_KIND.to_owned(),
            id: dir.path.display().to_string(),
            reason,
            removed,
        });
    }
    Ok(leftovers)
}

fn human_duration(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(pid: u32, host: &str) -> SessionMarker {
        SessionMarker {
            session_id: "test".into(),
            owner_pid: pid,
            owner_host: host.into(),
            created_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        }
    }

    fn session_dir(root: &Path, name: &str, marker: Option<&SessionMarker>) -> PathBuf {
        let dir = root.join(name);
        fs::create_dir_all(dir.join("workspace/sub")).unwrap();
        fs::write(dir.join("workspace/sub/file.txt"), "x").unwrap();
        if let Some(marker) = marker {
            fs::write(
                dir.join(SESSION_MARKER),
                serde_json::to_vec(marker).unwrap(),
            )
            .unwrap();
        }
        dir
    }

    /// The pid of a process that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_exists(pid));
        pid
    }

    fn age(dir: &Path, by: Duration) {
        let file = fs::File::open(dir).unwrap();
        file.set_modified(SystemTime::now() - by).unwrap();
    }

    #[test]
    fn dead_owner_is_a_leftover_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let policy = GcPolicy::default();
        let pid = dead_pid();
        let dir = session_dir(
            root.path(),
            "berth-dead",
            Some(&marker(pid, &policy.this_host)),
        );
        let found = scan_session_dirs(root.path(), &policy).unwrap();
        assert_eq!(found.len(), 1);
        assert!(matches!(found[0].verdict, Verdict::Leftover { .. }));
        assert_eq!(found[0].marker.as_ref().unwrap().owner_pid, pid);

        let leftovers = collect_session_dirs(root.path(), &policy, false).unwrap();
        assert_eq!(leftovers.len(), 1);
        assert!(leftovers[0].removed, "{leftovers:?}");
        assert_eq!(leftovers[0].kind, SESSION_DIR_KIND);
        assert!(leftovers[0].reason.contains(&pid.to_string()));
        assert!(!dir.exists());
    }

    #[test]
    fn live_owner_and_other_host_are_kept_and_not_listed() {
        let root = tempfile::tempdir().unwrap();
        let policy = GcPolicy::default();
        let live = session_dir(
            root.path(),
            "berth-live",
            Some(&marker(std::process::id(), &policy.this_host)),
        );
        let foreign = session_dir(
            root.path(),
            "berth-foreign",
            Some(&marker(dead_pid(), "some-other-host")),
        );
        let found = scan_session_dirs(root.path(), &policy).unwrap();
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|d| !d.verdict.removable()));
        assert!(
            found
                .iter()
                .any(|d| d.verdict.reason().contains("another host"))
        );
        assert!(
            collect_session_dirs(root.path(), &policy, false)
                .unwrap()
                .is_empty()
        );
        assert!(live.exists() && foreign.exists());
    }

    #[test]
    fn dry_run_removes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let policy = GcPolicy::default();
        let dir = session_dir(
            root.path(),
            "berth-dead",
            Some(&marker(dead_pid(), &policy.this_host)),
        );
        let leftovers = collect_session_dirs(root.path(), &policy, true).unwrap();
        assert_eq!(leftovers.len(), 1);
        assert!(!leftovers[0].removed);
        assert!(dir.join("workspace/sub/file.txt").exists());
    }

    #[test]
    fn unmarked_dirs_are_reported_and_removed_only_after_the_grace_period() {
        let root = tempfile::tempdir().unwrap();
        let policy = GcPolicy::default();
        let young = session_dir(root.path(), "berth-young", None);
        let old = session_dir(root.path(), "berth-old", None);
        let garbled = session_dir(root.path(), "berth-garbled", None);
        fs::write(garbled.join(SESSION_MARKER), "not json").unwrap();
        age(&old, Duration::from_secs(2 * 3600));
        age(&garbled, Duration::from_secs(2 * 3600));

        let leftovers = collect_session_dirs(root.path(), &policy, false).unwrap();
        assert_eq!(leftovers.len(), 3, "{leftovers:?}");
        let by_name = |name: &str| {
            leftovers
                .iter()
                .find(|l| l.id.ends_with(name))
                .unwrap()
                .clone()
        };
        assert!(!by_name("berth-young").removed);
        assert!(
            by_name("berth-young")
                .reason
                .contains("no berth-session.json")
        );
        assert!(by_name("berth-old").removed);
        assert!(by_name("berth-garbled").removed);
        assert!(
            by_name("berth-garbled")
                .reason
                .contains("not a session marker")
        );
        assert!(young.exists() && !old.exists() && !garbled.exists());
    }

    #[test]
    fn unmarked_dirs_with_other_content_are_never_removed() {
        let root = tempfile::tempdir().unwrap();
        let policy = GcPolicy::default();
        let other = root.path().join("berth-notes");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("todo.txt"), "mine").unwrap();
        age(&other, Duration::from_secs(48 * 3600));
        let empty = root.path().join("berth-empty");
        fs::create_dir(&empty).unwrap();
        age(&empty, Duration::from_secs(48 * 3600));

        let leftovers = collect_session_dirs(root.path(), &policy, false).unwrap();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
        let notes = leftovers
            .iter()
            .find(|l| l.id.ends_with("berth-notes"))
            .unwrap();
        assert!(!notes.removed);
        assert!(notes.reason.contains("`todo.txt`"), "{}", notes.reason);
        assert!(other.join("todo.txt").exists());
        // A directory that crashed before its marker was written is empty.
        assert!(!empty.exists());
    }

    #[test]
    fn planted_markers_neither_block_nor_exhaust_gc() {
        let root = tempfile::tempdir().unwrap();
        let policy = GcPolicy::default();
        // A FIFO would block a reader for ever; /dev/zero never ends; a
        // symlink could lead anywhere; a huge file is not a marker.
        let fifo = session_dir(root.path(), "berth-fifo", None);
        let path = std::ffi::CString::new(fifo.join(SESSION_MARKER).as_os_str().as_encoded_bytes())
            .unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
        let zero = session_dir(root.path(), "berth-zero-device", None);
        std::os::unix::fs::symlink("/dev/zero", zero.join(SESSION_MARKER)).unwrap();
        let huge = session_dir(root.path(), "berth-huge", None);
        fs::write(huge.join(SESSION_MARKER), vec![b' '; 100 << 10]).unwrap();
        let found = scan_session_dirs(root.path(), &policy).unwrap();
        let reason = |name: &str| {
            found
                .iter()
                .find(|f| f.path.ends_with(name))
                .map(|f| f.verdict.reason().to_owned())
                .unwrap()
        };
        assert!(reason("berth-fifo").contains("not a regular file"));
        assert!(reason("berth-zero-device").contains("is a symlink"));
        assert!(reason("berth-huge").contains("larger than"));
    }

    #[test]
    fn zero_pid_marker_counts_as_unmarked() {
        let root = tempfile::tempdir().unwrap();
        let policy = GcPolicy::default();
        let dir = session_dir(
            root.path(),
            "berth-zero",
            Some(&marker(0, &policy.this_host)),
        );
        let found = scan_session_dirs(root.path(), &policy).unwrap();
        assert!(matches!(
            found[0].verdict,
            Verdict::Unmarked {
                removable: false,
                ..
            }
        ));
        assert!(found[0].verdict.reason().contains("no valid owner pid"));
        assert!(dir.exists());
    }

    #[test]
    fn other_names_files_and_symlinks_are_ignored() {
        let root = tempfile::tempdir().unwrap();
        let policy = GcPolicy::default();
        let target = tempfile::tempdir().unwrap();
        let pid = dead_pid();
        let elsewhere = session_dir(
            target.path(),
            "berth-real",
            Some(&marker(pid, &policy.this_host)),
        );
        std::os::unix::fs::symlink(&elsewhere, root.path().join("berth-link")).unwrap();
        fs::write(root.path().join("berth-file"), "x").unwrap();
        session_dir(
            root.path(),
            "other-dir",
            Some(&marker(pid, &policy.this_host)),
        );
        assert!(scan_session_dirs(root.path(), &policy).unwrap().is_empty());
        collect_session_dirs(root.path(), &policy, false).unwrap();
        assert!(elsewhere.exists());
        assert!(root.path().join("other-dir").exists());
    }

    #[test]
    fn read_only_trees_are_removed() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let policy = GcPolicy::default();
        let dir = session_dir(
            root.path(),
            "berth-ro",
            Some(&marker(dead_pid(), &policy.this_host)),
        );
        let sub = dir.join("workspace/sub");
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o500)).unwrap();
        let leftovers = collect_session_dirs(root.path(), &policy, false).unwrap();
        assert!(leftovers[0].removed, "{leftovers:?}");
        assert!(!dir.exists());
    }

    #[test]
    fn unreadable_root_is_an_error() {
        let err = scan_session_dirs(
            Path::new("/nonexistent/berth-gc-root"),
            &GcPolicy::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/berth-gc-root"),
            "{err}"
        );
    }
}
