//! Walking a directory into a manifest and an archive in one pass.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

use super::Snapshot;
use super::frames::{FramedWriter, frame_target};
use super::manifest::{ContentHash, EntryKind, ManifestEntry, PERMISSION_BITS, SnapshotManifest};
use super::rules::{SnapshotRules, Verdict};
use super::sparse::{self, Region, SparseWriter};
use crate::compression::Compression;
use crate::error::{Error, Result};
use crate::tree::{Dir, FileKind, Opened, ProcFd, Stat, WalkEntry, Walker};

const TAR_BLOCK: u64 = 512;

/// Files up to this size are read whole, hashed, and archived from memory.
/// Larger files are streamed and hashed as they are read.
const SMALL_FILE: u64 = 64 << 10;

/// A directory's next files are shared with a second thread once at least
/// this many come in a row (fewer are not worth waking it for).
const RUN_FILES: usize = 16;

/// The most files one run holds.
const RUN_MAX: usize = 4096;

/// A run is fetched in chunks of this many files, each by whichever thread
/// claims it first.
const CHUNK_FILES: usize = 8;

/// Chunks the reader may have fetched ahead of the walk; it waits beyond
/// this, which bounds the memory a capture holds.
const CHUNKS_AHEAD: usize = 4;

pub(super) fn capture(
    root: &Path,
    rules: &SnapshotRules,
    compression: Compression,
    archive_dir: &Path,
) -> Result<Snapshot> {
    let root = fs::canonicalize(root).map_err(Error::io("opening snapshot root", root))?;
    fs::create_dir_all(archive_dir)
        .map_err(Error::io("creating archive directory", archive_dir))?;
    let archive_dir = fs::canonicalize(archive_dir)
        .map_err(Error::io("opening archive directory", archive_dir))?;
    if archive_dir.starts_with(&root) {
        return Err(Error::ArchiveInsideSnapshot { archive_dir, root });
    }

    // A temp file until the capture succeeds, so a failure leaves nothing.
    let file = tempfile::Builder::new()
        .prefix("berth-snapshot-")
        .suffix(&format!(".tar{}", compression.suffix()))
        .tempfile_in(&archive_dir)
        .map_err(Error::io("creating archive in", &archive_dir))?;
    let archive_path = file.path().to_path_buf();
    let io_err = |err| Error::io("writing archive", &archive_path)(err);

    let handle = file.as_file().try_clone().map_err(io_err)?;
    // Sparse: an uncompressed archive of a sparse file keeps its holes.
    let framed = FramedWriter::new(
        compression,
        frame_target(compression),
        BufWriter::with_capacity(256 << 10, SparseWriter::new(handle)),
    )
    .map_err(io_err)?;
    let mut builder = tar::Builder::new(framed);
    builder.mode(tar::HeaderMode::Complete);
    builder.follow_symlinks(false);

    // The scope joins the reading thread, if one was started, before the
    // capture returns, whatever happened during the walk: the archiver,
    // which holds its queue, is gone by then, so the thread has ended.
    let (builder, entries, other_paths) = thread::scope(|scope| -> Result<_> {
        let mut archiver = Archiver {
            rules,
            proc_fd: ProcFd::current().map_err(Error::io("opening /proc/self/fd for", &root))?,
            builder,
            entries: Vec::new(),
            other_paths: Vec::new(),
            ahead: ReadAhead::new(scope),
        };
        archiver.walk(&root)?;
        let Archiver {
            builder,
            entries,
            other_paths,
            ..
        } = archiver;
        Ok((builder, entries, other_paths))
    })?;
    let framed = builder.into_inner().map_err(io_err)?;
    let (buffered, frames) = framed.finish().map_err(io_err)?;
    // Flushed, not synced: a snapshot serves the session that took it, and
    // an fsync per capture would cost more than the walk itself.
    buffered
        .into_inner()
        .map_err(|err| io_err(err.into_error()))?
        .finish()
        .map_err(io_err)?;
    let (_, archive) = file.keep().map_err(|err| io_err(err.error))?;

    let mut entries = entries;
    entries.sort_by(|a, b| a.0.path.as_bytes().cmp(b.0.path.as_bytes()));
    let offsets: Arc<[u64]> = entries.iter().map(|(_, offset)| *offset).collect();
    let manifest =
        SnapshotManifest::new(entries.into_iter().map(|(e, _)| e).collect(), other_paths);
    let checksum = manifest.checksum();
    tracing::debug!(
        root = %root.display(),
        archive = %archive.display(),
        entries = manifest.len(),
        frames = frames.len(),
        excluded = manifest.other_paths().len(),
        %checksum,
        "snapshot captured"
    );
    Ok(Snapshot {
        manifest: Arc::new(manifest),
        offsets,
        frames: (!frames.is_empty()).then(|| frames.into()),
        archive,
        compression,
        checksum,
    })
}

struct Archiver<'r, 'scope, 'env, W: Write> {
    rules: &'r SnapshotRules,
    /// Looked up once for the whole walk (see [`Dir::open_regular_in`]).
    proc_fd: ProcFd,
    builder: tar::Builder<W>,
    /// Entries with the offset of their data in the tar stream.
    entries: Vec<(ManifestEntry, u64)>,
    other_paths: Vec<String>,
    ahead: ReadAhead<'scope, 'env>,
}

impl<W: Write> Archiver<'_, '_, '_, FramedWriter<W>> {
    /// Called before each member: a new frame may start here.
    fn boundary(&mut self, abs: &Path) -> Result<()> {
        self.builder
            .get_mut()
            .boundary()
            .map_err(Error::io("archiving", abs))
    }

    /// Walks the whole tree under `root`, depth first, each directory's
    /// entries in name order.
    fn walk(&mut self, root: &Path) -> Result<()> {
        let mut walker = Walker::new(root)?;
        while let Some(entry) = walker.next_entry()? {
            let Some(rel) = entry.rel.to_str() else {
                // A name that is not UTF-8 (its directory was, or the walk
                // would not be in it): listed, never archived or entered.
                self.other_paths
                    .push(entry.rel.to_string_lossy().into_owned());
                continue;
            };
            let rel = rel.to_owned();
            match entry.kind {
                FileKind::Dir => {
                    if self.rules.directory(&rel) == Verdict::Exclude {
                        self.other_paths.push(format!("{rel}/"));
                        continue;
                    }
                    // Removed (or replaced) since it was listed: it is
                    // simply not part of the snapshot.
                    let Some(entered) = walker.descend()? else {
                        continue;
                    };
                    if entered.entries == 0 {
                        if self.rules.leaf(&rel) == Verdict::Include {
                            self.add_empty_dir(root, rel, entered.stat)?;
                        } else {
                            self.other_paths.push(format!("{rel}/"));
                        }
                    }
                }
                FileKind::File => {
                    // A file of the run read ahead was found included when
                    // the run was planned.
                    if let Some(fetched) =
                        self.ahead
                            .take(entry.depth, entry.dir, entry.name, &self.proc_fd)
                    {
                        let fetched = match fetched {
                            Fetched::Large => fetch(entry.dir, entry.name, &self.proc_fd, false),
                            fetched => fetched,
                        };
                        self.add_file(root, entry.dir, entry.name, rel, fetched)?;
                    } else if self.rules.leaf(&rel) == Verdict::Exclude {
                        self.other_paths.push(rel);
                    } else {
                        self.ahead.plan(&entry, &rel, self.rules);
                        let fetched = fetch(entry.dir, entry.name, &self.proc_fd, false);
                        self.add_file(root, entry.dir, entry.name, rel, fetched)?;
                    }
                }
                FileKind::Symlink if self.rules.leaf(&rel) == Verdict::Exclude => {
                    self.other_paths.push(rel);
                }
                FileKind::Symlink => self.add_symlink(root, entry.dir, entry.name, rel)?,
                // Sockets, fifos and devices are never archived.
                FileKind::Other => self.other_paths.push(rel),
            }
        }
        Ok(())
    }

    /// Archives the file `name` of `dir` as `fetched` found it.
    fn add_file(
        &mut self,
        root: &Path,
        dir: &Dir,
        name: &OsStr,
        rel: String,
        fetched: Fetched,
    ) -> Result<()> {
        // Only for errors: not joined for every file.
        let abs = || root.join(&rel);
        let archiving = |err: io::Error| Error::io("archiving", &abs())(err);
        let (stat, content) = match fetched {
            Fetched::Read { stat, bytes, hash } => (stat, Content::Read(bytes, hash)),
            Fetched::Opened(file, stat) => (stat, Content::Stream(file)),
            Fetched::NotRegular(stat) if stat.kind == FileKind::Symlink => {
                return self.add_symlink(root, dir, name, rel);
            }
            Fetched::NotRegular(_) => {
                self.other_paths.push(rel);
                return Ok(());
            }
            Fetched::OpenFailed(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Fetched::OpenFailed(err) => return Err(Error::io("opening", &abs())(err)),
            Fetched::ReadFailed(err) => return Err(archiving(err)),
            Fetched::Large => unreachable!("the walk opens large files itself"),
        };
        let size = stat.size;
        let mode = stat.mode & PERMISSION_BITS;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(stat.mtime.max(0) as u64);
        self.builder.get_mut().boundary().map_err(archiving)?;
        let hash = match content {
            Content::Read(bytes, hash) => {
                self.builder
                    .append_data(&mut header, &rel, bytes.as_slice())
                    .map_err(archiving)?;
                hash
            }
            Content::Stream(file) => {
                let mut reader = ExactHashingReader::new(file, size);
                self.builder
                    .append_data(&mut header, &rel, &mut reader)
                    .map_err(archiving)?;
                reader.hash()
            }
        };
        let end = self.builder.get_ref().position();
        let offset = end - size.div_ceil(TAR_BLOCK) * TAR_BLOCK;
        self.entries.push((
            ManifestEntry {
                path: rel,
                kind: EntryKind::File,
                mode,
                size,
                hash,
                link_target: None,
            },
            offset,
        ));
        Ok(())
    }

    fn add_symlink(&mut self, root: &Path, dir: &Dir, name: &OsStr, rel: String) -> Result<()> {
        let abs = root.join(&rel);
        let target = match dir.read_link(name) {
            Ok(target) => target.into_vec(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Replaced by something that is not a link since it was listed.
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(err) => return Err(Error::io("reading symlink", &abs)(err)),
        };
        let mtime = match dir.stat_at(name) {
            Ok(stat) => stat.mtime,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(Error::io("inspecting", &abs)(err)),
        };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_mtime(mtime.max(0) as u64);
        self.boundary(&abs)?;
        append_symlink(&mut self.builder, &mut header, &rel, &target)
            .map_err(Error::io("archiving", &abs))?;
        self.entries.push((
            ManifestEntry {
                path: rel,
                kind: EntryKind::Symlink,
                mode: 0o777,
                size: target.len() as u64,
                hash: ContentHash::of(&target),
                link_target: Some(target),
            },
            0,
        ));
        Ok(())
    }

    fn add_empty_dir(&mut self, root: &Path, rel: String, stat: Stat) -> Result<()> {
        let abs = root.join(&rel);
        let mode = stat.mode & PERMISSION_BITS;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(mode);
        header.set_mtime(stat.mtime.max(0) as u64);
        self.boundary(&abs)?;
        self.builder
            .append_data(&mut header, format!("{rel}/"), io::empty())
            .map_err(Error::io("archiving", &abs))?;
        self.entries.push((
            ManifestEntry {
                path: rel,
                kind: EntryKind::Dir,
                mode,
                size: 0,
                hash: ContentHash::of(b""),
                link_target: None,
            },
            0,
        ));
        Ok(())
    }
}

/// The longest link name a tar header holds in place; a longer one goes
/// before the member in a GNU long-link record.
const LINK_NAME_FIELD: usize = 100;

/// Appends the symlink member `path` (`header` says the rest: its type,
/// mode and time) pointing to exactly `target`, byte for byte: the tar
/// crate's own link setters treat a target as a path and rewrite it (`/`
/// becomes `//`, `a//b` becomes `a/b`, `x/.` becomes `x`), which would
/// change what the link says and the snapshot's checksum with it. A
/// target longer than the header's 100-byte field goes first into a GNU
/// long-link record (`././@LongLink`, type `K`), which GNU tar and the tar
/// crate read. Used by every writer of symlink members.
///
/// Fails with `InvalidInput` for an empty target or one holding a NUL byte
/// (neither can be a symlink's), and when writing fails.
pub fn append_symlink<W: Write>(
    builder: &mut tar::Builder<W>,
    header: &mut tar::Header,
    path: &str,
    target: &[u8],
) -> io::Result<()> {
    if target.is_empty() || target.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a symlink target is never empty and holds no NUL byte",
        ));
    }
    if target.len() > LINK_NAME_FIELD {
        let mut long = tar::Header::new_gnu();
        let name = b"././@LongLink";
        long.as_old_mut().name[..name.len()].copy_from_slice(name);
        long.set_mode(0o644);
        long.set_uid(0);
        long.set_gid(0);
        long.set_mtime(0);
        // The name and its terminating NUL, as GNU tar writes it.
        long.set_size(target.len() as u64 + 1);
        long.set_entry_type(tar::EntryType::GNULongLink);
        long.set_cksum();
        builder.append(&long, target.chain(&[0u8][..]))?;
        header.set_link_name_literal(&target[..LINK_NAME_FIELD])?;
    } else {
        header.set_link_name_literal(target)?;
    }
    // Sets the member's name (with a long-name record when it needs one)
    // and the checksum, and leaves the link name as it is.
    builder.append_data(header, path, io::empty())
}

/// What opening (and, for a small file, reading) a regular file's name
/// found: done on the walking thread, or ahead of it on the reader's.
#[derive(Debug)]
enum Fetched {
    /// A small file, read whole, with the hash of its bytes.
    Read {
        stat: Stat,
        bytes: Vec<u8>,
        hash: ContentHash,
    },
    /// A larger file, open, for the walk to stream into the archive.
    Opened(File, Stat),
    /// A larger file found ahead of the walk: not kept open (a run would
    /// hold a descriptor per such file), the walk opens it when it gets
    /// there.
    Large,
    /// Something else is at the name now (never opened for reading).
    NotRegular(Stat),
    /// The name could not be opened.
    OpenFailed(io::Error),
    /// The small file could not be read.
    ReadFailed(io::Error),
}

/// A file's bytes for its member.
enum Content {
    Read(Vec<u8>, ContentHash),
    Stream(File),
}

/// Opens the regular file `name` of `dir` (see [`Dir::open_regular_in`])
/// and reads and hashes it when it is small; a larger one is kept open only
/// for the walk itself (`ahead` false), else closed again ([`Fetched::Large`]).
fn fetch(dir: &Dir, name: &OsStr, proc_fd: &ProcFd, ahead: bool) -> Fetched {
    match dir.open_regular_in(name, proc_fd) {
        Ok(Opened::File(file, stat)) if stat.size <= SMALL_FILE => {
            // `size` bytes exactly, whatever the file holds by now.
            let mut bytes = vec![0; stat.size as usize];
            match ExactReader::new(file, stat.size).read_exact(&mut bytes) {
                Ok(()) => Fetched::Read {
                    stat,
                    hash: ContentHash::of(&bytes),
                    bytes,
                },
                Err(err) => Fetched::ReadFailed(err),
            }
        }
        Ok(Opened::File(_, _)) if ahead => Fetched::Large,
        Ok(Opened::File(file, stat)) => Fetched::Opened(file, stat),
        Ok(Opened::NotRegular(stat)) => Fetched::NotRegular(stat),
        Err(err) => Fetched::OpenFailed(err),
    }
}

/// Files of the walk's current directory opened, read and hashed by two
/// threads, so both cores share a capture's system calls: the walking
/// thread, which also writes the archive, and a reader.
///
/// The walk knows what comes next in a directory ([`WalkEntry::upcoming`]):
/// when it reaches a file followed by at least [`RUN_FILES`] more files in
/// a row that the rules include, those (a run) are cut into chunks of
/// [`CHUNK_FILES`], and each chunk is fetched by whichever thread claims it
/// first, in order: the reader claims the next unclaimed chunk whenever it
/// is free (with at most [`CHUNKS_AHEAD`] waiting for the walk), and so
/// does the walk whenever the chunk it needs next is not there yet. So
/// neither thread waits for the other while there is work, whichever is
/// faster. An entry that is not the run's next file (which
/// only a failed walk would cause) drops the run. A run holds only files
/// of the walk's current directory that the rules include, which the walk
/// opens next unless it fails first; files too large to be read whole are
/// not kept open ahead (the walk opens them), and at most one run waits for
/// the reader, so what a capture holds open stays bounded.
///
/// [`WalkEntry::upcoming`]: crate::tree::WalkEntry::upcoming
struct ReadAhead<'scope, 'env> {
    scope: &'scope thread::Scope<'scope, 'env>,
    /// Started with the first run. Holds at most one run not yet taken up
    /// (each holds a descriptor of its directory).
    reader: Option<SyncSender<Run>>,
    /// No thread could be started: the walk fetches everything itself.
    inline: bool,
    /// The run the walk is in, if any.
    current: Option<Taking>,
}

/// A run, as both threads see it.
struct Shared {
    names: Vec<OsString>,
    /// How many chunks were claimed, by either thread, in order: the next
    /// one to claim.
    claimed: AtomicUsize,
}

impl Shared {
    fn chunks(&self) -> usize {
        self.names.len().div_ceil(CHUNK_FILES)
    }

    fn chunk(&self, index: usize) -> &[OsString] {
        let start = index * CHUNK_FILES;
        &self.names[start..(start + CHUNK_FILES).min(self.names.len())]
    }
}

/// A run for the reader: names in `dir`, in the walk's order; it sends the
/// chunks it claims, with their index.
struct Run {
    dir: Dir,
    shared: Arc<Shared>,
    fetched: SyncSender<(usize, Vec<Fetched>)>,
}

/// The walk's side of a run.
struct Taking {
    /// The depth of the run's entries in the walk.
    depth: usize,
    shared: Arc<Shared>,
    /// The index in the run of the next file the walk takes.
    next: usize,
    /// The rest of the chunk the walk is in.
    ready: std::vec::IntoIter<Fetched>,
    /// Chunks after it, fetched by either thread, by index.
    stash: Vec<(usize, Vec<Fetched>)>,
    fetched: Receiver<(usize, Vec<Fetched>)>,
}

impl Taking {
    /// Chunk `index`, the next the walk needs: fetched here if no thread
    /// claimed it yet, else the reader's. While the reader's is not there,
    /// the walk fetches the next unclaimed chunk itself (keeping at most
    /// [`CHUNKS_AHEAD`] such), so it does not wait while there is work.
    /// `None` when the reader is gone without sending it.
    fn chunk(&mut self, index: usize, dir: &Dir, proc_fd: &ProcFd) -> Option<Vec<Fetched>> {
        let shared = Arc::clone(&self.shared);
        loop {
            if let Some(at) = self.stash.iter().position(|(i, _)| *i == index) {
                return Some(self.stash.swap_remove(at).1);
            }
            match self.fetched.try_recv() {
                Ok(sent) => {
                    self.stash.push(sent);
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => return None,
                Err(mpsc::TryRecvError::Empty) => {}
            }
            if self.stash.len() < CHUNKS_AHEAD {
                let claimed = shared.claimed.fetch_add(1, Ordering::AcqRel);
                if claimed < shared.chunks() {
                    let batch = fetch_chunk(dir, shared.chunk(claimed), proc_fd);
                    self.stash.push((claimed, batch));
                    continue;
                }
            }
            self.stash.push(self.fetched.recv().ok()?);
        }
    }
}

/// Fetches every file of a chunk.
fn fetch_chunk(dir: &Dir, names: &[OsString], proc_fd: &ProcFd) -> Vec<Fetched> {
    names
        .iter()
        .map(|name| fetch(dir, name, proc_fd, true))
        .collect()
}

impl<'scope, 'env> ReadAhead<'scope, 'env> {
    fn new(scope: &'scope thread::Scope<'scope, 'env>) -> Self {
        ReadAhead {
            scope,
            reader: None,
            inline: false,
            current: None,
        }
    }

    /// The file `name` of `dir` fetched, when it is the current run's next
    /// file; `None` when it is not in a run.
    fn take(&mut self, depth: usize, dir: &Dir, name: &OsStr, proc_fd: &ProcFd) -> Option<Fetched> {
        let run = self.current.as_mut()?;
        if run.depth != depth
            || run.shared.names.get(run.next).map(OsString::as_os_str) != Some(name)
        {
            self.current = None;
            return None;
        }
        if run.next % CHUNK_FILES == 0 {
            let Some(batch) = run.chunk(run.next / CHUNK_FILES, dir, proc_fd) else {
                // The reader is gone (a panic, resumed when the capture's
                // scope joins it): the walk goes on by itself.
                self.current = None;
                return None;
            };
            run.ready = batch.into_iter();
        }
        run.next += 1;
        let fetched = run.ready.next();
        if fetched.is_none() || run.next == run.shared.names.len() {
            self.current = None;
        }
        fetched
    }

    /// Called at an included file `entry` the walk fetches itself (`rel` is
    /// its path): makes a run of the files right after it, when there are
    /// enough of them.
    fn plan(&mut self, entry: &WalkEntry<'_>, rel: &str, rules: &SnapshotRules) {
        if self.inline {
            return;
        }
        let Some(prefix) = entry.name.to_str().and_then(|name| rel.strip_suffix(name)) else {
            return;
        };
        let mut names = Vec::new();
        for next in entry.upcoming.iter().rev().take(RUN_MAX) {
            if next.kind != FileKind::File {
                break;
            }
            let Some(name) = next.name.to_str() else {
                break;
            };
            if rules.leaf(&format!("{prefix}{name}")) == Verdict::Exclude {
                break;
            }
            names.push(next.name.clone());
        }
        if names.len() < RUN_FILES {
            return;
        }
        let Ok(dir) = entry.dir.try_clone() else {
            return;
        };
        if self.reader.is_none() {
            self.reader = self.spawn();
            self.inline = self.reader.is_none();
        }
        let Some(reader) = &self.reader else {
            return;
        };
        let shared = Arc::new(Shared {
            names,
            claimed: AtomicUsize::new(0),
        });
        let (fetched, taken) = mpsc::sync_channel(CHUNKS_AHEAD);
        let run = Run {
            dir,
            shared: Arc::clone(&shared),
            fetched,
        };
        match reader.try_send(run) {
            Ok(()) => {}
            // The reader has not taken up the last run yet (which the walk
            // may have finished by itself): this one is the walk's alone.
            Err(mpsc::TrySendError::Full(_)) => return,
            // The reader is gone (a panic, resumed when the scope joins it).
            Err(mpsc::TrySendError::Disconnected(_)) => {
                self.reader = None;
                self.inline = true;
                return;
            }
        }
        self.current = Some(Taking {
            depth: entry.depth,
            shared,
            next: 0,
            ready: Vec::new().into_iter(),
            stash: Vec::new(),
            fetched: taken,
        });
    }

    fn spawn(&self) -> Option<SyncSender<Run>> {
        let (runs, queue) = mpsc::sync_channel::<Run>(1);
        let thread = thread::Builder::new()
            .name("berth-snapshot".into())
            .spawn_scoped(self.scope, move || {
                let Ok(proc_fd) = ProcFd::current() else {
                    return;
                };
                for run in queue {
                    let shared = &run.shared;
                    loop {
                        let chunk = shared.claimed.fetch_add(1, Ordering::AcqRel);
                        if chunk >= shared.chunks() {
                            break;
                        }
                        let batch = fetch_chunk(&run.dir, shared.chunk(chunk), &proc_fd);
                        // The walk dropped the run: on to the next one.
                        if run.fetched.send((chunk, batch)).is_err() {
                            break;
                        }
                    }
                }
            });
        match thread {
            Ok(_) => Some(runs),
            Err(err) => {
                tracing::debug!(%err, "no reading thread; the walk reads every file itself");
                None
            }
        }
    }
}

/// Yields exactly `size` bytes of a file: zero-padded if it shrank after
/// its size was read, cut if it grew. Reads with `pread` from its own
/// offset; a reader made [`ExactReader::skipping_holes`] yields a sparse
/// file's holes as zeros without reading them.
#[derive(Debug)]
struct ExactReader {
    inner: File,
    position: u64,
    remaining: u64,
    /// The region `position` is in, when holes are looked for.
    region: Option<Region>,
    skip_holes: bool,
}

impl ExactReader {
    fn new(file: File, size: u64) -> ExactReader {
        ExactReader {
            inner: file,
            position: 0,
            remaining: size,
            region: None,
            skip_holes: false,
        }
    }

    /// Like [`ExactReader::new`], but a file with holes (fewer blocks on
    /// disk than its length) has them yielded as zeros, found with
    /// `SEEK_DATA`/`SEEK_HOLE`, rather than read.
    fn skipping_holes(file: File, size: u64) -> ExactReader {
        let skip_holes = file
            .metadata()
            .is_ok_and(|meta| sparse::may_have_holes(&meta));
        ExactReader {
            skip_holes,
            ..ExactReader::new(file, size)
        }
    }

    /// The region at `position`, asked again once the last one ends;
    /// `None` when holes are not looked for (or the file system cannot
    /// tell, and then never again).
    fn region(&mut self) -> Option<Region> {
        if !self.skip_holes {
            return None;
        }
        match self.region {
            Some(region) if region.end > self.position => Some(region),
            _ => {
                self.region = sparse::data_region(&self.inner, self.position);
                self.skip_holes = self.region.is_some();
                self.region
            }
        }
    }
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let mut want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let region = self.region();
        if let Some(region) = region {
            want = want.min((region.end - self.position).min(usize::MAX as u64) as usize);
        }
        let n = match region {
            Some(Region { hole: true, .. }) => 0,
            _ => self.inner.read_at(&mut buf[..want], self.position)?,
        };
        // A hole, or the end of a file that shrank: zeros.
        let n = if n == 0 {
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.position += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Yields exactly `size` bytes of a file (zero-padded if it shrank after
/// its size was read, cut if it grew) and hashes what it yields, so a
/// manifest entry always describes the archived bytes. Used by every writer
/// of tar members from a live tree.
#[derive(Debug)]
pub struct ExactHashingReader {
    inner: ExactReader,
    hasher: blake3::Hasher,
}

impl ExactHashingReader {
    /// Reads `size` bytes of `file`; a sparse file's holes are yielded as
    /// zeros without being read.
    pub fn new(file: File, size: u64) -> ExactHashingReader {
        ExactHashingReader {
            inner: ExactReader::skipping_holes(file, size),
            hasher: blake3::Hasher::new(),
        }
    }

    /// The hash of the bytes yielded so far.
    pub fn hash(&self) -> ContentHash {
        self.hasher.finalize().into()
    }
}

impl Read for ExactHashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn file_of(dir: &Path, name: &str, bytes: &[u8]) -> File {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        File::open(path).unwrap()
    }

    /// A file that is shorter or longer than the size read from its
    /// metadata yields the same bytes, and the same hash, whether it is
    /// streamed or read whole.
    #[test]
    fn a_small_file_is_read_as_the_streaming_reader_does() {
        let dir = tempfile::tempdir().unwrap();
        for (len, size) in [(0, 0), (10, 10), (10, 700), (700, 10), (0, 5)] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
            let mut streamed = Vec::new();
            let mut reader = ExactHashingReader::new(file_of(dir.path(), "a", &bytes), size);
            reader.read_to_end(&mut streamed).unwrap();
            let mut read = vec![0; size as usize];
            ExactReader::new(file_of(dir.path(), "b", &bytes), size)
                .read_exact(&mut read)
                .unwrap();
            assert_eq!(read, streamed, "{len} bytes read as {size}");
            assert_eq!(ContentHash::of(&read), reader.hash());
        }
    }
}
