//! Workspace sync, shared by the client and the server.
//!
//! A [`Scanner`] walks a workspace into manifest entries (files, symlinks,
//! empty directories, with BLAKE3 content hashes — the entries of a
//! snapshot manifest), hashing only files whose `stat` changed since its
//! last scan. Two [`Tree`]s compare into the entries that changed and the
//! paths that went away; a [`Packer`] writes the changed entries into an
//! uncompressed tar archive; [`apply`] removes the deleted paths and
//! extracts such an archive into a workspace through snapshot extraction,
//! which refuses absolute and climbing member names, hard links, devices
//! and writes through symlinks, and drops set-id and sticky bits. An
//! archive that does not describe one tree (a path twice, file `d` and
//! directory `d`, file `d` and `d/x`) is refused whole before anything is
//! applied. Every deleted path goes through [`paths::normalize_relative`]
//! and is never removed through a symlink. Scans, packing and applying
//! work through directory descriptors, without recursion, within the
//! bounds of [`session_core::tree`].
//!
//! Both sides keep the tree they believe the other holds; the checksum of
//! a tree (the checksum of a snapshot manifest with those entries) tells
//! them whether they agree.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use session_core::compression::Compression;
use session_core::paths;
use session_core::snapshot::{
    ContentHash, EntryKind, ExactHashingReader, ExtractMode, ManifestEntry, PERMISSION_BITS,
    Snapshot, SnapshotManifest, append_symlink,
};
use session_core::tree::{self, Blocked, Dir, DirCursor, FileKind, Opened, Stat, Walker};
use session_core::{Error, Result};

use crate::protocol::{Deletion, WorkspaceState};

/// A file whose status changed this recently is hashed again at the next
/// scan even if its status looks unchanged then: file times have the
/// granularity of a kernel tick, so a second write within the same tick
/// (and of the same size) would otherwise go unnoticed.
const RACY_WINDOW: Duration = Duration::from_millis(100);

/// The same for times without a fraction of a second, which is what a
/// file system that keeps whole seconds (or two) records.
const COARSE_RACY_WINDOW: Duration = Duration::from_secs(3);

/// The longest name of a single path component that Linux file systems
/// take (`NAME_MAX`); a longer one cannot be created.
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// The longest symlink target that can be created (`PATH_MAX` less its
/// terminating NUL).
const MAX_LINK_TARGET_BYTES: usize = 4095;

/// The latest modification time an archive member may carry: what a
/// signed 64-bit `time_t` holds. Berth's own archives never carry a later
/// one (they record file times, which are such values), and extraction
/// could not set it.
const MAX_MTIME: u64 = i64::MAX as u64;

/// The entries of a workspace, by path, with their checksum (computed when
/// first asked for: a scan compared with another tree never needs it).
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    entries: BTreeMap<String, ManifestEntry>,
    checksum: OnceLock<ContentHash>,
}

impl PartialEq for Tree {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for Tree {}

impl Default for Tree {
    fn default() -> Self {
        Tree::new(Vec::new())
    }
}

impl Tree {
    /// A tree of `entries` (a later duplicate path wins).
    pub(crate) fn new(entries: impl IntoIterator<Item = ManifestEntry>) -> Tree {
        let entries: BTreeMap<String, ManifestEntry> =
            entries.into_iter().map(|e| (e.path.clone(), e)).collect();
        Tree {
            entries,
            checksum: OnceLock::new(),
        }
    }

    /// The checksum: that of a snapshot manifest holding these entries.
    pub(crate) fn checksum(&self) -> ContentHash {
        *self.checksum.get_or_init(|| checksum_of(&self.entries))
    }

    /// The entries, sorted by path.
    pub(crate) fn entries(&self) -> Vec<ManifestEntry> {
        self.entries.values().cloned().collect()
    }

    /// The wire form.
    pub(crate) fn state(&self) -> WorkspaceState {
        WorkspaceState {
            checksum: self.checksum(),
            entries: self.entries(),
        }
    }

    /// What turns `self` into `newer`: the entries that are new or differ
    /// in any way (kind, mode, size, hash, link target), and the paths
    /// `newer` no longer has.
    pub(crate) fn changes_to(&self, newer: &Tree) -> (Vec<ManifestEntry>, Vec<Deletion>) {
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        let deleted = |entry: &ManifestEntry| Deletion {
            path: entry.path.clone(),
            kind: entry.kind,
        };
        // Both maps are sorted by path: walk them side by side.
        let mut old = self.entries.values().peekable();
        let mut new = newer.entries.values().peekable();
        loop {
            match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(o), None) => {
                    deletes.push(deleted(o));
                    old.next();
                }
                (None, Some(n)) => {
                    upserts.push((*n).clone());
                    new.next();
                }
                (Some(o), Some(n)) => match o.path.cmp(&n.path) {
                    std::cmp::Ordering::Less => {
                        deletes.push(deleted(o));
                        old.next();
                    }
                    std::cmp::Ordering::Greater => {
                        upserts.push((*n).clone());
                        new.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if o != n {
                            upserts.push((*n).clone());
                        }
                        old.next();
                        new.next();
                    }
                },
            }
        }
        (upserts, deletes)
    }

    /// Whether the tree has `dir` itself (an empty directory) or anything
    /// below it.
    pub(crate) fn holds(&self, dir: &str) -> bool {
        if self.entries.contains_key(dir) {
            return true;
        }
        let prefix = format!("{dir}/");
        self.entries
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(path, _)| path.starts_with(&prefix))
    }

    /// Applies a change set: removes `deletes`, then adds `upserts`.
    pub(crate) fn apply(&mut self, upserts: &[ManifestEntry], deletes: &[Deletion]) {
        if upserts.is_empty() && deletes.is_empty() {
            return;
        }
        for deletion in deletes {
            self.entries.remove(&deletion.path);
        }
        for entry in upserts {
            self.entries.insert(entry.path.clone(), entry.clone());
        }
        self.checksum = OnceLock::new();
    }
}

fn checksum_of(entries: &BTreeMap<String, ManifestEntry>) -> ContentHash {
    SnapshotManifest::new(entries.values().cloned().collect(), Vec::new()).checksum()
}

/// What identifies an unchanged file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatKey {
    dev: u64,
    ino: u64,
    size: u64,
    mode: u32,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl StatKey {
    fn of(stat: &Stat) -> StatKey {
        StatKey {
            dev: stat.dev,
            ino: stat.ino,
            size: stat.size,
            mode: stat.mode,
            mtime: (stat.mtime, stat.mtime_nsec),
            ctime: (stat.ctime, stat.ctime_nsec),
        }
    }
}

/// Scans a workspace into a [`Tree`], remembering each file's status and
/// hash so the next scan hashes only what changed.
#[derive(Debug, Default)]
pub(crate) struct Scanner {
    cache: HashMap<String, (StatKey, ContentHash)>,
}

impl Scanner {
    /// Walks `root` (never following symlinks) into a tree: regular files
    /// with their mode and hash, symlinks with their target, and
    /// directories that hold nothing. Names that are not UTF-8 and special
    /// files (sockets, FIFOs, devices) are left out, as snapshots leave them
    /// out.
    ///
    /// Fails with [`Error::Io`] when a directory or file cannot be read.
    pub(crate) fn scan(&mut self, root: &Path) -> Result<Tree> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut walk = Walk {
            previous: &self.cache,
            next: HashMap::with_capacity(self.cache.len()),
            entries: Vec::with_capacity(self.cache.len()),
            now,
        };
        walk.tree(root)?;
        let Walk { next, entries, .. } = walk;
        self.cache = next;
        Ok(Tree::new(entries))
    }
}

struct Walk<'c> {
    previous: &'c HashMap<String, (StatKey, ContentHash)>,
    next: HashMap<String, (StatKey, ContentHash)>,
    entries: Vec<ManifestEntry>,
    /// When the scan began, since the Unix epoch.
    now: Duration,
}

impl Walk<'_> {
    /// Walks the tree at `root` without recursion, within the bounds of
    /// [`session_core::tree`] ([`Error::TreeBound`] beyond them).
    fn tree(&mut self, root: &Path) -> Result<()> {
        let mut walker = Walker::new(root)?;
        while let Some(entry) = walker.next_entry()? {
            let Some(rel) = entry.rel.to_str() else {
                continue;
            };
            let rel = rel.to_owned();
            match entry.kind {
                FileKind::Dir => {
                    // Gone since it was listed: it is simply not there.
                    if let Some(entered) = walker.descend()?
                        && entered.entries == 0
                    {
                        self.entries.push(ManifestEntry {
                            path: rel,
                            kind: EntryKind::Dir,
                            mode: entered.stat.mode & PERMISSION_BITS,
                            size: 0,
                            hash: ContentHash::of(b""),
                            link_target: None,
                        });
                    }
                }
                FileKind::File => self.file(entry.dir, entry.name, rel, &root.join(entry.rel))?,
                FileKind::Symlink => {
                    if let Some(entry) =
                        symlink_entry(entry.dir, entry.name, rel, &root.join(entry.rel))?
                    {
                        self.entries.push(entry);
                    }
                }
                FileKind::Other => {}
            }
        }
        Ok(())
    }

    fn file(&mut self, dir: &Dir, name: &OsStr, rel: String, display: &Path) -> Result<()> {
        let meta = match dir.stat_at(name) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(io_error("inspecting", display, err)),
        };
        if meta.kind != FileKind::File {
            return Ok(());
        }
        let key = StatKey::of(&meta);
        let hash = match self.previous.get(&rel) {
            Some((cached, hash)) if *cached == key => *hash,
            _ => {
                let Some((hash, size)) = hash_file(dir, name, display)? else {
                    return Ok(());
                };
                if size != key.size {
                    // Changing as we read: record what we read, remember
                    // nothing.
                    self.entries.push(file_entry(rel, key.mode, size, hash));
                    return Ok(());
                }
                hash
            }
        };
        if !self.racy(key.ctime) && !self.racy(key.mtime) {
            self.next.insert(rel.clone(), (key, hash));
        }
        self.entries.push(file_entry(rel, key.mode, key.size, hash));
        Ok(())
    }
}

impl Walk<'_> {
    /// Whether a file time is too recent to vouch for the content.
    fn racy(&self, (secs, nanos): (i64, i64)) -> bool {
        let Ok(secs) = u64::try_from(secs) else {
            return true;
        };
        let time = Duration::new(secs, u32::try_from(nanos).unwrap_or(0));
        let window = if nanos == 0 {
            COARSE_RACY_WINDOW
        } else {
            RACY_WINDOW
        };
        time + window > self.now
    }
}

fn file_entry(path: String, mode: u32, size: u64, hash: ContentHash) -> ManifestEntry {
    ManifestEntry {
        path,
        kind: EntryKind::File,
        mode: mode & PERMISSION_BITS,
        size,
        hash,
        link_target: None,
    }
}

/// Hashes the regular file `name` in `dir` without following a symlink in
/// its place; `None` when it vanished or is no longer a regular file.
fn hash_file(dir: &Dir, name: &OsStr, display: &Path) -> Result<Option<(ContentHash, u64)>> {
    let Some((mut file, _)) = open_regular(dir, name, display)? else {
        return Ok(None);
    };
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|err| io_error("reading", display, err))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Some((hasher.finalize().into(), size)))
}

/// Opens the regular file `name` in `dir` for reading, with its status;
/// `None` when nothing (or something else) is there now. Nothing but a
/// regular file is ever opened: a symlink is not followed, and a FIFO or
/// device swapped in is looked at, never opened ([`Dir::open_regular`]).
fn open_regular(dir: &Dir, name: &OsStr, display: &Path) -> Result<Option<(File, Stat)>> {
    match dir.open_regular(name) {
        Ok(Opened::File(file, stat)) => Ok(Some((file, stat))),
        Ok(Opened::NotRegular(_)) => Ok(None),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_error("opening", display, err)),
    }
}

fn symlink_entry(
    dir: &Dir,
    name: &OsStr,
    rel: String,
    display: &Path,
) -> Result<Option<ManifestEntry>> {
    let target = match dir.read_link(name) {
        Ok(target) => target,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
        Err(err) => return Err(io_error("reading symlink", display, err)),
    };
    // The target's exact bytes, whatever they are: a symlink travels as
    // it is.
    let target = target.into_vec();
    Ok(Some(ManifestEntry {
        path: rel,
        kind: EntryKind::Symlink,
        mode: 0o777,
        size: target.len() as u64,
        hash: ContentHash::of(&target),
        link_target: Some(target),
    }))
}

/// A member's parent components and its own name.
fn split_path(path: &str) -> (Vec<&OsStr>, &OsStr) {
    let mut parts: Vec<&OsStr> = path.split('/').map(OsStr::new).collect();
    let name = parts.pop().unwrap_or_default();
    (parts, name)
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> Error {
    Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What a [`Packer`] wrote.
#[derive(Debug, Default)]
pub(crate) struct Packed {
    /// The entries as archived (a file is described by the bytes that went
    /// into the archive, which may differ from an earlier scan).
    pub(crate) upserts: Vec<ManifestEntry>,
    /// Entries that were gone (or changed kind) when their turn came; the
    /// receiver is told to remove them.
    pub(crate) vanished: Vec<Deletion>,
}

/// Writes entries into an uncompressed tar archive: files with their mode,
/// symlinks as links, empty directories.
pub(crate) struct Packer<W: Write> {
    builder: tar::Builder<W>,
    packed: Packed,
}

impl<W: Write> std::fmt::Debug for Packer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packer")
            .field("entries", &self.packed.upserts.len())
            .finish_non_exhaustive()
    }
}

impl<W: Write> Packer<W> {
    /// A packer writing to `out`.
    pub(crate) fn new(out: W) -> Packer<W> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        builder.follow_symlinks(false);
        Packer {
            builder,
            packed: Packed::default(),
        }
    }

    /// Adds the entries of `tree_root` at their own paths, reaching each
    /// through the directories of the tree, never through a symlink; an
    /// entry that is gone (or whose parent is no longer a directory)
    /// counts as vanished.
    pub(crate) fn add_entries(
        &mut self,
        tree_root: &Path,
        entries: &[ManifestEntry],
    ) -> Result<()> {
        let mut cursor = DirCursor::open(tree_root)?;
        for entry in entries {
            let (parents, name) = split_path(&entry.path);
            let added = match cursor.enter(&parents, false)? {
                Ok(dir) => {
                    let display = tree_root.join(&entry.path);
                    self.add_at(dir, name, &display, &entry.path, entry.kind)?
                }
                Err(_) => false,
            };
            if !added {
                self.vanished(&entry.path, entry.kind);
            }
        }
        Ok(())
    }

    /// Adds what `source` holds now as `member`, expecting it to be of
    /// `kind`; something else there counts as vanished.
    pub(crate) fn add(&mut self, source: &Path, member: &str, kind: EntryKind) -> Result<()> {
        let (Some(parent), Some(name)) = (source.parent(), source.file_name()) else {
            return Err(io_error(
                "archiving",
                source,
                io::Error::new(io::ErrorKind::InvalidInput, "not a path to an entry"),
            ));
        };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let added = match Dir::open(parent) {
            Ok(dir) => self.add_at(&dir, name, source, member, kind)?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(err) => return Err(io_error("opening", parent, err)),
        };
        if !added {
            self.vanished(member, kind);
        }
        Ok(())
    }

    fn vanished(&mut self, member: &str, kind: EntryKind) {
        self.packed.vanished.push(Deletion {
            path: member.to_owned(),
            kind,
        });
    }

    fn add_at(
        &mut self,
        dir: &Dir,
        name: &OsStr,
        source: &Path,
        member: &str,
        kind: EntryKind,
    ) -> Result<bool> {
        match kind {
            EntryKind::File => self.add_file(dir, name, source, member),
            EntryKind::Symlink => self.add_symlink(dir, name, source, member),
            EntryKind::Dir => self.add_dir(dir, name, source, member),
        }
    }

    fn add_file(&mut self, dir: &Dir, name: &OsStr, source: &Path, member: &str) -> Result<bool> {
        let Some((file, stat)) = open_regular(dir, name, source)? else {
            return Ok(false);
        };
        let size = stat.size;
        let mode = stat.mode & PERMISSION_BITS;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(stat.mtime.max(0) as u64);
        let mut reader = ExactHashingReader::new(file, size);
        self.builder
            .append_data(&mut header, member, &mut reader)
            .map_err(|err| io_error("archiving", source, err))?;
        self.packed
            .upserts
            .push(file_entry(member.to_owned(), mode, size, reader.hash()));
        Ok(true)
    }

    fn add_symlink(
        &mut self,
        dir: &Dir,
        name: &OsStr,
        source: &Path,
        member: &str,
    ) -> Result<bool> {
        let Some(entry) = symlink_entry(dir, name, member.to_owned(), source)? else {
            return Ok(false);
        };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        let target = entry.link_target.as_deref().unwrap_or_default();
        append_symlink(&mut self.builder, &mut header, member, target)
            .map_err(|err| io_error("archiving", source, err))?;
        self.packed.upserts.push(entry);
        Ok(true)
    }

    fn add_dir(&mut self, dir: &Dir, name: &OsStr, source: &Path, member: &str) -> Result<bool> {
        let stat = match dir.stat_at(name) {
            Ok(stat) if stat.kind == FileKind::Dir => stat,
            Ok(_) => return Ok(false),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(io_error("inspecting", source, err)),
        };
        let mode = stat.mode & PERMISSION_BITS;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(mode);
        header.set_mtime(stat.mtime.max(0) as u64);
        self.builder
            .append_data(&mut header, format!("{member}/"), io::empty())
            .map_err(|err| io_error("archiving", source, err))?;
        self.packed.upserts.push(ManifestEntry {
            path: member.to_owned(),
            kind: EntryKind::Dir,
            mode,
            size: 0,
            hash: ContentHash::of(b""),
            link_target: None,
        });
        Ok(true)
    }

    /// Ends the archive and returns the writer and what was packed.
    pub(crate) fn finish(self) -> Result<(W, Packed)> {
        let out = self.builder.into_inner().map_err(|err| Error::Backend {
            backend: crate::TYPE_NAME.into(),
            message: format!("finishing a sync archive: {err}"),
        })?;
        Ok((out, self.packed))
    }
}

/// Applies a change set to the workspace at `root`: removes `deletes`, then
/// extracts `archive` (merging). Returns the archive's entries.
///
/// Nothing is written before every check passed: each deleted path must be
/// a normalised relative path whose names fit a file system
/// ([`Error::PathEscape`] otherwise), and the archive must describe one
/// tree of members that can be written safely
/// ([`Error::UnsafeArchiveMember`] for an absolute or climbing name, a
/// hard link, a device, a path beyond the bounds of
/// [`session_core::tree`], a name longer than [`MAX_NAME_BYTES`], a
/// symlink target longer than a path may be, a modification time beyond
/// any `time_t`, a path that appears twice, or a member below another that
/// is not a directory: `d` a file and `d/x`, or below a symlink of the
/// same archive). With `expected`, the archive must hold exactly those
/// entries ([`Error::Archive`] otherwise). Extraction itself refuses to
/// write through a symlink already in the workspace, and drops set-id and
/// sticky bits ([`Snapshot::extract`]).
pub(crate) fn apply(
    root: &Path,
    archive: Option<&Path>,
    deletes: &[Deletion],
    expected: Option<&[ManifestEntry]>,
) -> Result<Vec<ManifestEntry>> {
    let mut deleted = Vec::with_capacity(deletes.len());
    for deletion in deletes {
        let rel = paths::normalize_relative(&deletion.path)?;
        if paths::to_slash(&rel) != deletion.path {
            return Err(Error::PathEscape {
                path: tree::shorten(&deletion.path),
                reason: "paths must be normalised (no `.`, `..` or empty components)",
            });
        }
        if longest_name(&deletion.path) > MAX_NAME_BYTES {
            return Err(Error::PathEscape {
                path: tree::shorten(&deletion.path),
                reason: "a name in it is longer than 255 bytes, more than a file system takes",
            });
        }
        deleted.push((deletion.path.as_str(), deletion.kind));
    }
    let snapshot = archive
        .map(|path| {
            let snapshot = Snapshot::open_tree_archive(path, Compression::None)?;
            refuse_unwritable_members(path)?;
            Ok::<_, Error>(snapshot)
        })
        .transpose()?;
    let entries = snapshot
        .as_ref()
        .map(|s| s.manifest().entries().to_vec())
        .unwrap_or_default();
    if let Some(expected) = expected {
        let mut wanted = expected.to_vec();
        wanted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        if wanted != entries {
            return Err(Error::Archive {
                archive: archive.map(Path::to_path_buf).unwrap_or_default(),
                message: "the archive does not hold the entries the change set announced".into(),
            });
        }
    }
    if !deleted.is_empty() {
        let mut cursor = DirCursor::open(root)?;
        for (rel, kind) in &deleted {
            remove_contained(&mut cursor, rel, *kind)?;
        }
    }
    if let Some(snapshot) = snapshot {
        snapshot.extract(root, ExtractMode::Merge)?;
    }
    Ok(entries)
}

/// The length of the longest `/`-separated name in `path`.
fn longest_name(path: &str) -> usize {
    path.split('/').map(str::len).max().unwrap_or(0)
}

/// Refuses an archive holding a member that the checks of
/// [`Snapshot::open_tree_archive`] let through but that extraction could
/// not write, or would write only in part: a name longer than a file
/// system takes, a symlink target longer than a path may be, or a
/// modification time beyond any `time_t`. Only the headers are read.
///
/// Fails with [`Error::UnsafeArchiveMember`] naming the member (cut to a
/// readable length), and with [`Error::Archive`] when the archive cannot
/// be read.
fn refuse_unwritable_members(archive: &Path) -> Result<()> {
    let unreadable = |err: io::Error| Error::Archive {
        archive: archive.to_path_buf(),
        message: err.to_string(),
    };
    let file = File::open(archive).map_err(unreadable)?;
    let mut tar = tar::Archive::new(io::BufReader::with_capacity(64 << 10, file));
    for member in tar.entries_with_seek().map_err(unreadable)? {
        let member = member.map_err(unreadable)?;
        let name = member.path_bytes();
        let refuse = |reason: String| Error::UnsafeArchiveMember {
            archive: archive.to_path_buf(),
            member: tree::shorten(&String::from_utf8_lossy(&name)),
            reason,
        };
        if let Some(long) = name
            .split(|b| *b == b'/')
            .find(|n| n.len() > MAX_NAME_BYTES)
        {
            return Err(refuse(format!(
                "a name in it is {} bytes long, more than the {MAX_NAME_BYTES} a file system takes",
                long.len()
            )));
        }
        if let Some(target) = member.link_name_bytes()
            && target.len() > MAX_LINK_TARGET_BYTES
        {
            return Err(refuse(format!(
                "its link target is {} bytes long, more than the {MAX_LINK_TARGET_BYTES} a \
                 symlink may hold",
                target.len()
            )));
        }
        if let Ok(mtime) = member.header().mtime()
            && mtime > MAX_MTIME
        {
            return Err(refuse(format!(
                "its modification time ({mtime} s after 1970) is beyond any time a file can have"
            )));
        }
    }
    Ok(())
}

/// Removes the directories that deleting `deletes` emptied and that `tree`
/// (the state after the change set) does not hold: a scan lists every empty
/// directory, so one missing from the tree is gone on the other side.
/// Deepest first; a directory that is not empty, or is not a directory, is
/// left alone, and so are its parents.
pub(crate) fn prune_emptied(root: &Path, deletes: &[Deletion], tree: &Tree) {
    let mut dirs: Vec<&str> = deletes
        .iter()
        .flat_map(|d| d.path.match_indices('/').map(|(i, _)| &d.path[..i]))
        .collect();
    dirs.sort_by_key(|dir| std::cmp::Reverse(dir.len()));
    dirs.dedup();
    let Ok(mut cursor) = DirCursor::open(root) else {
        return;
    };
    for dir in dirs {
        if tree.holds(dir) || paths::normalize_relative(dir).is_err() {
            continue;
        }
        let (parents, name) = split_path(dir);
        if let Ok(Ok(parent)) = cursor.enter(&parents, false) {
            // Not empty (something arrived meanwhile): keep it.
            let _ = parent.remove_dir(name);
        }
    }
}

/// Removes the entry at `rel` (normalised) under the cursor's root, if it
/// is still of `kind`: a directory only when empty, a file or symlink only
/// when it is not a directory now. A path whose parent is a symlink is
/// refused; one whose parent is missing or not a directory has nothing to
/// remove.
fn remove_contained(cursor: &mut DirCursor, rel: &str, kind: EntryKind) -> Result<()> {
    let (parents, name) = split_path(rel);
    let display = cursor.root().join(rel);
    let dir = match cursor.enter(&parents, false)? {
        Ok(dir) => dir,
        Err(Blocked::Symlink) => {
            return Err(Error::PathEscape {
                path: rel.to_owned(),
                reason: "a parent directory is a symlink",
            });
        }
        Err(_) => return Ok(()),
    };
    let stat = match dir.stat_at(name) {
        Ok(stat) => stat,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error("inspecting", &display, err)),
    };
    let result = match (kind, stat.kind == FileKind::Dir) {
        (EntryKind::Dir, true) => match dir.remove_dir(name) {
            // Something arrived in it since: it is not ours to remove.
            Err(err) if err.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
            other => other,
        },
        (EntryKind::File | EntryKind::Symlink, false) => dir.remove_file(name),
        // It changed kind since; whatever replaced it arrives on its own.
        _ => Ok(()),
    };
    match result {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(io_error("removing", &display, err))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    /// Syncs `from` into `to` the way both sides do, and returns the
    /// change set's size.
    fn sync(from: &Path, to: &Path, known: &mut Tree, scanner: &mut Scanner) -> usize {
        let now = scanner.scan(from).unwrap();
        let (upserts, deletes) = known.changes_to(&now);
        let archive = tempfile::NamedTempFile::new().unwrap();
        let mut packer = Packer::new(archive.reopen().unwrap());
        packer.add_entries(from, &upserts).unwrap();
        let (_, packed) = packer.finish().unwrap();
        let mut deletes = deletes;
        deletes.extend(packed.vanished);
        let applied = apply(to, Some(archive.path()), &deletes, Some(&packed.upserts)).unwrap();
        known.apply(&applied, &deletes);
        prune_emptied(to, &deletes, known);
        assert_eq!(known.checksum(), now.checksum());
        upserts.len() + deletes.len()
    }

    #[test]
    fn changes_travel_with_modes_links_empty_dirs_and_deletions() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let mut scanner = Scanner::default();
        let mut known = Tree::default();
        write(a.path(), "keep.txt", "same\n");
        write(a.path(), "dir/file.txt", "x");
        write(a.path(), "run.sh", "#!/bin/sh\n");
        fs::set_permissions(a.path().join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("keep.txt", a.path().join("link")).unwrap();
        fs::create_dir(a.path().join("empty")).unwrap();
        assert_eq!(sync(a.path(), b.path(), &mut known, &mut scanner), 5);
        assert_eq!(Scanner::default().scan(b.path()).unwrap(), known);
        let mode = fs::metadata(b.path().join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(b.path().join("link")).unwrap(),
            Path::new("keep.txt")
        );

        // Only what changed travels; a file turning into a directory and
        // back works.
        fs::remove_file(a.path().join("dir/file.txt")).unwrap();
        write(a.path(), "empty/now", "filled");
        fs::remove_file(a.path().join("link")).unwrap();
        write(a.path(), "link/inside", "a directory now");
        assert_eq!(sync(a.path(), b.path(), &mut known, &mut scanner), 6);
        assert_eq!(Scanner::default().scan(b.path()).unwrap(), known);
        assert!(b.path().join("dir").is_dir());
        assert_eq!(sync(a.path(), b.path(), &mut known, &mut scanner), 0);

        // A removed tree goes whole, its directories included.
        write(a.path(), "gone/deeper/f", "x");
        sync(a.path(), b.path(), &mut known, &mut scanner);
        fs::remove_dir_all(a.path().join("gone")).unwrap();
        assert_eq!(sync(a.path(), b.path(), &mut known, &mut scanner), 1);
        assert!(!b.path().join("gone").exists());
        assert_eq!(Scanner::default().scan(b.path()).unwrap(), known);
    }

    /// Odd symlink targets (rewritten by a path library, not UTF-8, longer
    /// than a tar header holds) travel exactly, both ways, and both sides
    /// agree on the checksum.
    #[test]
    fn link_targets_travel_byte_for_byte_both_ways() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let mut long = b"ab//".repeat(1000);
        long.truncate(4000);
        let targets: Vec<Vec<u8>> = vec![
            b"/".to_vec(),
            b"//x".to_vec(),
            b"a//b".to_vec(),
            b"x/.".to_vec(),
            b"\xff\xfe/\x80".to_vec(),
            vec![b'u'; 101],
            long,
        ];
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for (i, target) in targets.iter().enumerate() {
            symlink(OsStr::from_bytes(target), a.path().join(format!("l{i}"))).unwrap();
        }
        let check = |root: &Path, prefix: &str| {
            for (i, target) in targets.iter().enumerate() {
                let read = fs::read_link(root.join(format!("{prefix}{i}"))).unwrap();
                assert_eq!(read.into_os_string().into_vec(), *target, "{prefix}{i}");
            }
        };
        let mut known = Tree::default();
        assert_eq!(
            sync(a.path(), b.path(), &mut known, &mut Scanner::default()),
            targets.len()
        );
        check(b.path(), "l");
        // Back the other way, as new links made on the receiving side.
        for (i, target) in targets.iter().enumerate() {
            symlink(OsStr::from_bytes(target), b.path().join(format!("m{i}"))).unwrap();
        }
        let mut known_back = Tree::default();
        let c = tempfile::tempdir().unwrap();
        sync(b.path(), c.path(), &mut known_back, &mut Scanner::default());
        check(c.path(), "l");
        check(c.path(), "m");
        assert_eq!(Scanner::default().scan(c.path()).unwrap(), known_back);
    }

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    /// A char device with no driver: opening it fails with `ENXIO`. `false`
    /// when this process may not make one.
    #[allow(clippy::print_stderr, reason = "a skipped device says why")]
    fn mknod_nodriver(path: &Path) -> bool {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        let ret = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(42, 0)) };
        if ret != 0 {
            eprintln!("no device node: {}", std::io::Error::last_os_error());
        }
        ret == 0
    }

    /// A scan leaves FIFOs and devices out, and a packer that finds one
    /// where the scan saw a file counts the file as gone, without opening
    /// what is there (a device with no driver would fail the open).
    #[test]
    fn fifos_and_devices_are_never_opened_by_scans_or_packing() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "a", "a");
        write(root.path(), "b", "b");
        write(root.path(), "c", "c");
        mkfifo(&root.path().join("fifo"));
        let devices = mknod_nodriver(&root.path().join("dev"));
        let tree = Scanner::default().scan(root.path()).unwrap();
        let paths: Vec<String> = tree.entries().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["a", "b", "c"]);
        // Swapped after the scan: a FIFO for `a`, a device for `b`.
        fs::remove_file(root.path().join("a")).unwrap();
        mkfifo(&root.path().join("a"));
        fs::remove_file(root.path().join("b")).unwrap();
        let swapped_device = devices && mknod_nodriver(&root.path().join("b"));
        let mut packer = Packer::new(Vec::new());
        packer.add_entries(root.path(), &tree.entries()).unwrap();
        let (_, packed) = packer.finish().unwrap();
        let packed_paths: Vec<&str> = packed.upserts.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(packed_paths, ["c"]);
        let vanished: Vec<&str> = packed.vanished.iter().map(|d| d.path.as_str()).collect();
        if swapped_device {
            assert_eq!(vanished, ["a", "b"]);
        } else {
            assert_eq!(vanished, ["a"]);
        }
    }

    #[test]
    fn unchanged_files_are_not_read_again() {
        let a = tempfile::tempdir().unwrap();
        write(a.path(), "f", "one");
        let mut scanner = Scanner::default();
        let first = scanner.scan(a.path()).unwrap();
        // Pretend the file is old enough to be trusted, then change its
        // bytes behind the cache's back without changing its status key:
        // the cached hash is reused, proving the file was not read.
        let key = StatKey::of(&Dir::open(a.path()).unwrap().stat_at("f".as_ref()).unwrap());
        scanner
            .cache
            .insert("f".into(), (key, ContentHash::of(b"cached")));
        let second = scanner.scan(a.path()).unwrap();
        assert_eq!(second.entries()[0].hash, ContentHash::of(b"cached"));
        assert_ne!(first, second);
    }

    /// A member's name, type and mode.
    type Member<'a> = (&'a str, tar::EntryType, u32);

    /// A tar archive written member by member, as the other side could
    /// send it.
    fn raw_archive(members: &[Member<'_>]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut builder = tar::Builder::new(file.reopen().unwrap());
        for (name, kind, mode) in members {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(*mode);
            let content: &[u8] = if *kind == tar::EntryType::Regular {
                name.as_bytes()
            } else {
                b""
            };
            header.set_size(content.len() as u64);
            if *kind == tar::EntryType::Symlink {
                header.set_link_name("target").unwrap();
            }
            header.set_cksum();
            builder.append_data(&mut header, name, content).unwrap();
        }
        builder.finish().unwrap();
        file
    }

    /// What either side receives is refused whole when it is not one tree:
    /// the deletion that came with it is not applied, nothing is written.
    #[test]
    fn archives_that_are_not_one_tree_are_refused_whole_on_either_side() {
        use tar::EntryType::{Directory, Regular, Symlink};
        let cases: [(&str, Vec<Member<'_>>); 4] = [
            (
                "a path twice",
                vec![("d", Regular, 0o644), ("d", Regular, 0o644)],
            ),
            (
                "file d and directory d",
                vec![("d", Regular, 0o644), ("d/", Directory, 0o755)],
            ),
            (
                "file d and d/x",
                vec![("d", Regular, 0o644), ("d/x", Regular, 0o644)],
            ),
            (
                "a link and a path below it",
                vec![("l", Symlink, 0o777), ("l/x", Regular, 0o644)],
            ),
        ];
        for (what, members) in cases {
            let archive = raw_archive(&members);
            // The entries a server would announce with a pull: what the
            // archive says.
            let announced: Vec<ManifestEntry> = members
                .iter()
                .map(|(name, _, _)| {
                    file_entry(
                        name.trim_end_matches('/').into(),
                        0o644,
                        1,
                        ContentHash::of(b""),
                    )
                })
                .collect();
            // `None`: the server applying a push; `Some`: the client
            // applying a pull.
            for expected in [None, Some(announced.as_slice())] {
                let root = tempfile::tempdir().unwrap();
                write(root.path(), "old.txt", "still here");
                let deletes = [Deletion {
                    path: "old.txt".into(),
                    kind: EntryKind::File,
                }];
                match apply(root.path(), Some(archive.path()), &deletes, expected) {
                    Err(Error::UnsafeArchiveMember { reason, .. }) => {
                        assert!(
                            reason.contains("more than once") || reason.contains("lies below"),
                            "{what}: {reason}"
                        );
                    }
                    other => panic!("{what} ({}): {other:?}", expected.is_some()),
                }
                let left: Vec<_> = fs::read_dir(root.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert_eq!(left, ["old.txt"], "{what}: nothing was applied");
            }
        }
    }

    #[test]
    fn applied_files_keep_only_their_permission_bits() {
        let archive = raw_archive(&[
            ("suid", tar::EntryType::Regular, 0o4755),
            ("sgid", tar::EntryType::Regular, 0o2755),
            ("sticky/", tar::EntryType::Directory, 0o1777),
        ]);
        let root = tempfile::tempdir().unwrap();
        let entries = apply(root.path(), Some(archive.path()), &[], None).unwrap();
        let modes: Vec<(&str, u32)> = entries.iter().map(|e| (e.path.as_str(), e.mode)).collect();
        assert_eq!(modes, [("sgid", 0o755), ("sticky", 0o777), ("suid", 0o755)]);
        for (name, mode) in [("suid", 0o755), ("sgid", 0o755), ("sticky", 0o777)] {
            let meta = fs::symlink_metadata(root.path().join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, mode, "{name}");
        }
        // And a scan sees what the archive's manifest said.
        assert_eq!(
            Scanner::default().scan(root.path()).unwrap().entries(),
            entries
        );
    }

    #[test]
    fn scans_stop_at_the_bounds() {
        let root = tempfile::tempdir().unwrap();
        let mut dir = Dir::open(root.path()).unwrap();
        for _ in 0..session_core::tree::MAX_DEPTH + 1 {
            dir.create_dir("d".as_ref(), 0o755).unwrap();
            dir = dir.open_dir("d".as_ref()).unwrap();
        }
        match Scanner::default().scan(root.path()) {
            Err(Error::TreeBound { depth, .. }) => {
                assert_eq!(depth, session_core::tree::MAX_DEPTH + 1);
            }
            other => panic!("{other:?}"),
        }
        session_core::tree::remove_tree(&root.path().join("d")).unwrap();
    }

    #[test]
    fn deletions_stay_inside() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "victim", "x");
        symlink(outside.path(), root.path().join("out")).unwrap();
        for (path, kind) in [
            ("../victim", EntryKind::File),
            ("/etc/passwd", EntryKind::File),
            ("a/./b", EntryKind::File),
            ("out/victim", EntryKind::File),
        ] {
            let deletion = Deletion {
                path: path.into(),
                kind,
            };
            assert!(
                matches!(
                    apply(root.path(), None, &[deletion], None),
                    Err(Error::PathEscape { .. })
                ),
                "{path}"
            );
        }
        assert!(outside.path().join("victim").exists());
    }
}
