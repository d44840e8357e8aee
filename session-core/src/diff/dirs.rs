//! Diffs of two live directory trees, compared where they are.
//!
//! [`diff_dirs`] gives exactly the [`SnapshotDiff`] that [`super::diff`]
//! gives for snapshots of the two trees taken with
//! [`SnapshotRules::keep_all`](crate::snapshot::SnapshotRules::keep_all),
//! without writing an archive or hashing every file. Each tree is walked on
//! a thread of its own, in the order a capture walks (depth first, each
//! directory's names sorted), and what it holds reaches the comparing
//! thread in that order, so both sides of each path meet there: small
//! files with their bytes, larger ones open. A file present on both sides
//! is compared by size, then byte for byte; only a file that differs (or
//! exists on one side only) is hashed, for the hashes a diff reports and
//! for rename detection. The changed files are then read from the trees as
//! a diff of snapshots reads them from the archives, within the same
//! bounds ([`DiffOptions`]).
//!
//! What is compared is what a capture records: regular files, symlinks
//! and empty directories, with their permission bits; names that are not
//! UTF-8, sockets, FIFOs and devices are left out. A file is only ever
//! opened through [`Dir::open_regular`], as a capture opens it, and the
//! walks never follow a symlink. Memory stays bounded: each walk runs at
//! most a few batches ahead of the comparison.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

use super::{DiffOptions, FileChange, Reading, Side, SnapshotDiff, compare_entries, finish};
use crate::error::{Error, Result};
use crate::snapshot::{ContentHash, EntryKind, ManifestEntry, PERMISSION_BITS};
use crate::tree::{Dir, FileKind, Opened, ProcFd, Walker};

/// Files up to this size are read whole by their walk; larger ones are
/// passed on open and compared a chunk of this size at a time.
const SMALL_FILE: u64 = 64 << 10;

/// Leaves per batch a walk hands over, and batches it may run ahead.
const BATCH: usize = 32;
const BATCHES_AHEAD: usize = 4;

/// Diffs the trees at `old` and `new` with the default options.
///
/// Fails when either tree cannot be walked or read, or goes beyond the
/// bounds of a walk ([`crate::tree::MAX_DEPTH`],
/// [`crate::tree::MAX_PATH_BYTES`]).
pub fn diff_dirs(old: &Path, new: &Path) -> Result<SnapshotDiff> {
    diff_dirs_with(old, new, &DiffOptions::default())
}

/// Diffs the trees at `old` and `new`: the same result as
/// [`super::diff_with`] of snapshots of them (keeping everything), found by
/// comparing the trees in place.
pub fn diff_dirs_with(old: &Path, new: &Path, options: &DiffOptions) -> Result<SnapshotDiff> {
    let old_root = fs::canonicalize(old).map_err(Error::io("opening", old))?;
    let new_root = fs::canonicalize(new).map_err(Error::io("opening", new))?;
    let mut changes = thread::scope(|scope| -> Result<Vec<FileChange>> {
        let old_leaves = Leaves::start(scope, &old_root);
        let new_leaves = Leaves::start(scope, &new_root);
        compare(old_leaves, new_leaves)
    })?;
    // The walks met paths in tree order; a diff lists them by path.
    changes.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    if options.detect_renames {
        super::pair_renames(&mut changes);
    }
    let mut reading = Reading::plan(&changes, options);
    let mut opener = Opener::new(&old_root)?;
    for (path, limit) in reading.wanted(&changes, Side::Old) {
        let bytes = opener.read(path, limit)?;
        reading.take_old(&changes, path, bytes);
    }
    let mut opener = Opener::new(&new_root)?;
    for (path, limit) in reading.wanted(&changes, Side::New) {
        let bytes = opener.read(path, limit)?;
        reading.take_new(&changes, path, &bytes);
    }
    Ok(finish(changes, reading))
}

/// Merges both sides' leaves by path, classifying each path.
fn compare(mut old: Leaves, mut new: Leaves) -> Result<Vec<FileChange>> {
    let mut changes = Vec::new();
    let mut buffers = [Vec::new(), Vec::new()];
    let (mut a, mut b) = (old.next()?, new.next()?);
    loop {
        let order = match (&a, &b) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => tree_order(&x.rel, &y.rel),
        };
        match order {
            Ordering::Less => {
                let leaf = a.take().expect("compared above");
                let entry = leaf.entry(&old.root, &mut buffers[0])?;
                compare_entries(&[entry], &[], &mut changes);
                a = old.next()?;
            }
            Ordering::Greater => {
                let leaf = b.take().expect("compared above");
                let entry = leaf.entry(&new.root, &mut buffers[1])?;
                compare_entries(&[], &[entry], &mut changes);
                b = new.next()?;
            }
            Ordering::Equal => {
                let x = a.take().expect("compared above");
                let y = b.take().expect("compared above");
                if let Some((x, y)) =
                    compare_pair(x, y, [&old.root, &new.root], &mut buffers, &mut changes)?
                {
                    old.retire(x);
                    new.retire(y);
                }
                a = old.next()?;
                b = new.next()?;
            }
        }
    }
    Ok(changes)
}

/// The order a walk meets paths in: component by component, each compared
/// as bytes (a directory's whole content comes before the next name).
fn tree_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// What a capture would record at a path, as its walk found it.
enum Content {
    /// A regular file read whole.
    Small(Vec<u8>),
    /// A larger regular file, open.
    Large(File),
    /// A symlink and its target.
    Symlink(Vec<u8>),
    /// An empty directory.
    EmptyDir,
}

/// One path a capture would record, with what is there.
struct Leaf {
    rel: String,
    /// Permission bits (a symlink's are always 0o777).
    mode: u32,
    size: u64,
    content: Content,
}

impl Leaf {
    /// The manifest entry a capture would record, hashing a file whole.
    fn entry(self, root: &Path, buffer: &mut Vec<u8>) -> Result<ManifestEntry> {
        let (kind, hash, link_target) = match self.content {
            Content::Small(bytes) => (EntryKind::File, ContentHash::of(&bytes), None),
            Content::Large(file) => {
                let hash = hash_file(&file, self.size, buffer)
                    .map_err(Error::io("reading", &root.join(&self.rel)))?;
                (EntryKind::File, hash, None)
            }
            Content::Symlink(target) => {
                (EntryKind::Symlink, ContentHash::of(&target), Some(target))
            }
            Content::EmptyDir => (EntryKind::Dir, ContentHash::of(b""), None),
        };
        Ok(ManifestEntry {
            path: self.rel,
            kind,
            mode: self.mode,
            size: self.size,
            hash,
            link_target,
        })
    }
}

/// Compares the leaves both walks found at one path; gives them back when
/// they are the same (nothing of them is kept).
fn compare_pair(
    a: Leaf,
    b: Leaf,
    roots: [&Path; 2],
    buffers: &mut [Vec<u8>; 2],
    changes: &mut Vec<FileChange>,
) -> Result<Option<(Leaf, Leaf)>> {
    let same = match (&a.content, &b.content) {
        _ if a.size != b.size => false,
        (Content::Small(x), Content::Small(y)) => x == y,
        (Content::Large(x), Content::Large(y)) => {
            let [buf_a, buf_b] = buffers;
            same_content(x, y, a.size, buf_a, buf_b)
                .map_err(Error::io("reading", &roots[0].join(&a.rel)))?
        }
        (Content::Symlink(x), Content::Symlink(y)) => x == y,
        (Content::EmptyDir, Content::EmptyDir) => true,
        // Different kinds (a small and a large file never have one size).
        _ => false,
    };
    if same && a.mode == b.mode {
        return Ok(Some((a, b)));
    }
    let [buf_a, buf_b] = buffers;
    let old = a.entry(roots[0], buf_a)?;
    let new = b.entry(roots[1], buf_b)?;
    compare_entries(&[old], &[new], changes);
    Ok(None)
}

/// One tree's leaves, from the thread walking it.
struct Leaves {
    root: PathBuf,
    batches: Receiver<Result<Vec<Leaf>>>,
    /// The current batch, reversed (to be popped).
    batch: Vec<Leaf>,
    /// Leaves compared and done with, and emptied batches, going back to
    /// the walk's thread to be freed there: memory freed on a thread other
    /// than the one that allocated it waits for that thread's heap lock,
    /// which the walk, allocating, holds over and over.
    spent: Vec<Leaf>,
    returns: mpsc::Sender<Vec<Leaf>>,
}

impl Leaves {
    /// Starts walking the tree at `root` on a thread of `scope`.
    fn start<'scope>(scope: &'scope thread::Scope<'scope, '_>, root: &Path) -> Leaves {
        let (sender, batches) = mpsc::sync_channel(BATCHES_AHEAD);
        let (returns, returned) = mpsc::channel();
        let walked = root.to_path_buf();
        scope.spawn(move || {
            if let Err(err) = walk(&walked, &sender, &returned) {
                // The comparison stopped early if nobody receives.
                let _ = sender.send(Err(err));
            }
        });
        Leaves {
            root: root.to_path_buf(),
            batches,
            batch: Vec::new(),
            spent: Vec::with_capacity(BATCH),
            returns,
        }
    }

    /// Hands a leaf that is done with back to the walk's thread; a large
    /// file's descriptor is closed here and now, so that leaves on their
    /// way back hold no more descriptors than before.
    fn retire(&mut self, mut leaf: Leaf) {
        if matches!(leaf.content, Content::Large(_)) {
            leaf.content = Content::EmptyDir;
        }
        self.spent.push(leaf);
        if self.spent.len() == BATCH {
            let spent = std::mem::replace(&mut self.spent, Vec::with_capacity(BATCH));
            // A walk that ended has nothing left to free them for: they go
            // here.
            let _ = self.returns.send(spent);
        }
    }

    /// The next leaf in tree order; `None` once the walk is done.
    fn next(&mut self) -> Result<Option<Leaf>> {
        loop {
            if let Some(leaf) = self.batch.pop() {
                return Ok(Some(leaf));
            }
            match self.batches.recv() {
                Ok(batch) => {
                    let emptied = std::mem::replace(&mut self.batch, batch?);
                    let _ = self.returns.send(emptied);
                    self.batch.reverse();
                }
                // The walk ended (its thread sends every error first).
                Err(_) => return Ok(None),
            }
        }
    }
}

/// Walks the tree at `root`, sending its leaves in batches; stops quietly
/// when the receiving side is gone.
fn walk(
    root: &Path,
    sender: &SyncSender<Result<Vec<Leaf>>>,
    returned: &Receiver<Vec<Leaf>>,
) -> Result<()> {
    let mut walker = Walker::new(root)?;
    let proc_fd = ProcFd::current().map_err(Error::io("opening /proc/self/fd for", root))?;
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(entry) = walker.next_entry()? {
        // Names that are not UTF-8 are left out of snapshots, and their
        // directories never entered.
        let Some(rel) = entry.rel.to_str() else {
            continue;
        };
        let rel = rel.to_owned();
        let leaf = match entry.kind {
            FileKind::Other => None,
            FileKind::File => file_leaf(entry.dir, entry.name, &proc_fd, rel, root)?,
            FileKind::Symlink => symlink_leaf(entry.dir, entry.name, rel, root)?,
            FileKind::Dir => match walker.descend()? {
                Some(entered) if entered.entries == 0 => Some(Leaf {
                    rel,
                    mode: entered.stat.mode & PERMISSION_BITS,
                    size: 0,
                    content: Content::EmptyDir,
                }),
                // Gone since it was listed, or implied by what it holds.
                _ => None,
            },
        };
        batch.extend(leaf);
        if batch.len() == BATCH {
            // What the comparison is done with is freed here, by the
            // thread that allocated it.
            while let Ok(spent) = returned.try_recv() {
                drop(spent);
            }
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if sender.send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = sender.send(Ok(batch));
    }
    Ok(())
}

/// A regular file's leaf, as a capture opens it: `None` when it vanished
/// or is no longer something a capture records.
fn file_leaf(
    dir: &Dir,
    name: &OsStr,
    proc_fd: &ProcFd,
    rel: String,
    root: &Path,
) -> Result<Option<Leaf>> {
    let (file, stat) = match dir.open_regular_in(name, proc_fd) {
        Ok(Opened::File(file, stat)) => (file, stat),
        // Swapped for a symlink since it was listed: a capture records the
        // link.
        Ok(Opened::NotRegular(stat)) if stat.kind == FileKind::Symlink => {
            return symlink_leaf(dir, name, rel, root);
        }
        Ok(Opened::NotRegular(_)) => return Ok(None),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::io("opening", &root.join(&rel))(err)),
    };
    let content = if stat.size <= SMALL_FILE {
        let mut bytes = vec![0; stat.size as usize];
        read_padded(&file, &mut bytes, 0).map_err(Error::io("reading", &root.join(&rel)))?;
        Content::Small(bytes)
    } else {
        Content::Large(file)
    };
    Ok(Some(Leaf {
        rel,
        mode: stat.mode & PERMISSION_BITS,
        size: stat.size,
        content,
    }))
}

fn symlink_leaf(dir: &Dir, name: &OsStr, rel: String, root: &Path) -> Result<Option<Leaf>> {
    let target = match dir.read_link(name) {
        Ok(target) => target.into_vec(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        // Replaced by something that is not a link since it was listed.
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
        Err(err) => return Err(Error::io("reading symlink", &root.join(&rel))(err)),
    };
    Ok(Some(Leaf {
        rel,
        mode: 0o777,
        size: target.len() as u64,
        content: Content::Symlink(target),
    }))
}

/// Fills `buf` from `file` at `offset`; what lies past the file's end (it
/// shrank since its size was read) reads as zeros, as a capture archives it.
fn read_padded(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    buf[filled..].fill(0);
    Ok(())
}

/// The chunk in which large files are compared and hashed.
const CHUNK: usize = 256 << 10;

/// Whether the first `size` bytes of both files are the same.
fn same_content(
    a: &File,
    b: &File,
    size: u64,
    buf_a: &mut Vec<u8>,
    buf_b: &mut Vec<u8>,
) -> io::Result<bool> {
    let chunk = size.min(CHUNK as u64) as usize;
    buf_a.resize(chunk, 0);
    buf_b.resize(chunk, 0);
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(chunk as u64) as usize;
        read_padded(a, &mut buf_a[..n], offset)?;
        read_padded(b, &mut buf_b[..n], offset)?;
        if buf_a[..n] != buf_b[..n] {
            return Ok(false);
        }
        offset += n as u64;
    }
    Ok(true)
}

/// The hash of the first `size` bytes of `file`, as a capture records it.
fn hash_file(file: &File, size: u64, buffer: &mut Vec<u8>) -> io::Result<ContentHash> {
    let chunk = size.min(CHUNK as u64) as usize;
    buffer.resize(chunk, 0);
    let mut hasher = blake3::Hasher::new();
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(chunk as u64) as usize;
        read_padded(file, &mut buffer[..n], offset)?;
        hasher.update(&buffer[..n]);
        offset += n as u64;
    }
    Ok(hasher.finalize().into())
}

/// Opens files of a tree by their relative paths, one directory at a time
/// and never through a symlink, keeping the last directory open for the
/// next file (the paths come sorted, so neighbours share it).
struct Opener<'r> {
    root: &'r Path,
    top: Dir,
    /// The directory of the last file read, and its path.
    last: Option<(String, Dir)>,
    proc_fd: ProcFd,
}

impl<'r> Opener<'r> {
    fn new(root: &'r Path) -> Result<Opener<'r>> {
        Ok(Opener {
            root,
            top: Dir::open(root).map_err(Error::io("opening", root))?,
            last: None,
            proc_fd: ProcFd::current().map_err(Error::io("opening /proc/self/fd for", root))?,
        })
    }

    /// Up to `limit` bytes of the regular file at `rel` (as a capture
    /// would archive them); fails when it is no longer a regular file.
    fn read(&mut self, rel: &str, limit: u64) -> Result<Vec<u8>> {
        let display = self.root.join(rel);
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let opened = self
            .open(parent, OsStr::new(name))
            .map_err(Error::io("opening", &display))?;
        let Opened::File(file, stat) = opened else {
            return Err(Error::io("reading", &display)(io::Error::other(
                "it is no longer a regular file",
            )));
        };
        let mut bytes = vec![0; stat.size.min(limit) as usize];
        read_padded(&file, &mut bytes, 0).map_err(Error::io("reading", &display))?;
        Ok(bytes)
    }

    fn open(&mut self, parent: &str, name: &OsStr) -> io::Result<Opened> {
        if parent.is_empty() {
            return self.top.open_regular_in(name, &self.proc_fd);
        }
        if let Some((path, dir)) = &self.last
            && path == parent
        {
            return dir.open_regular_in(name, &self.proc_fd);
        }
        let mut components = parent.split('/');
        let first = components.next().unwrap_or(parent);
        let mut dir = self.top.open_dir(OsStr::new(first))?;
        for component in components {
            dir = dir.open_dir(OsStr::new(component))?;
        }
        let opened = dir.open_regular_in(name, &self.proc_fd);
        self.last = Some((parent.to_owned(), dir));
        opened
    }
}
