//! Walking a directory into a manifest and an archive in one pass.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::ops::Range;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::{mem, panic, thread};

use super::Snapshot;
use super::frames::{FramedWriter, frame_target};
use super::manifest::{ContentHash, EntryKind, ManifestEntry, PERMISSION_BITS, SnapshotManifest};
use super::rules::{SnapshotRules, Verdict};
use super::sparse::{self, Region, SparseWriter};
use crate::compression::Compression;
use crate::error::{Error, Result};
use crate::tree::{Dir, FileKind, Opened, ProcFd, Stat, Walker};

const TAR_BLOCK: u64 = 512;

/// Files up to this size are read whole into a [`Batch`] and archived from
/// it, and the batch is hashed on another thread while the walk goes on.
/// Larger files are streamed and hashed as they are read.
const SMALL_FILE: u64 = 64 << 10;

/// A batch is closed (and, from the first one on, handed to the hashing
/// thread) once it holds this many files or bytes. The first batch is also
/// the threshold for the thread: a tree with fewer small files is hashed on
/// the walking thread, where a thread would cost more than it saves.
const BATCH_FILES: usize = 256;
const BATCH_BYTES: usize = 256 << 10;

/// Closed batches waiting for the hashing thread; the walk blocks beyond
/// this, which bounds the memory held by a capture.
const BATCHES_QUEUED: usize = 4;

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

    // The scope joins the hashing thread, if one was started, before the
    // capture returns, whatever happened during the walk.
    let (builder, entries, other_paths) = thread::scope(|scope| -> Result<_> {
        let mut archiver = Archiver {
            rules,
            proc_fd: ProcFd::current().map_err(Error::io("opening /proc/self/fd for", &root))?,
            builder,
            entries: Vec::new(),
            other_paths: Vec::new(),
            hashes: DeferredHashes::new(scope),
        };
        archiver.walk(&root)?;
        let Archiver {
            builder,
            mut entries,
            other_paths,
            hashes,
            ..
        } = archiver;
        for (index, hash) in hashes.finish() {
            entries[index].0.hash = hash;
        }
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
    /// Entries with the offset of their data in the tar stream. The hash of
    /// a small file is filled in from `hashes` once the walk is done.
    entries: Vec<(ManifestEntry, u64)>,
    other_paths: Vec<String>,
    hashes: DeferredHashes<'scope, 'env>,
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
                FileKind::File | FileKind::Symlink if self.rules.leaf(&rel) == Verdict::Exclude => {
                    self.other_paths.push(rel);
                }
                FileKind::File => self.add_file(root, entry.dir, entry.name, rel)?,
                FileKind::Symlink => self.add_symlink(root, entry.dir, entry.name, rel)?,
                // Sockets, fifos and devices are never archived.
                FileKind::Other => self.other_paths.push(rel),
            }
        }
        Ok(())
    }

    fn add_file(&mut self, root: &Path, dir: &Dir, name: &OsStr, rel: String) -> Result<()> {
        // Only for errors: not joined for every file.
        let abs = || root.join(&rel);
        // Only a regular file is opened: a file swapped for a symlink
        // mid-walk must not pull a file from outside the tree into the
        // archive, nor may a FIFO or device swapped in be opened at all.
        let (file, stat) = match dir.open_regular_in(name, &self.proc_fd) {
            Ok(Opened::File(file, stat)) => (file, stat),
            Ok(Opened::NotRegular(stat)) if stat.kind == FileKind::Symlink => {
                return self.add_symlink(root, dir, name, rel);
            }
            Ok(Opened::NotRegular(_)) => {
                self.other_paths.push(rel);
                return Ok(());
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(Error::io("opening", &abs())(err)),
        };
        let size = stat.size;
        let mode = stat.mode & PERMISSION_BITS;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(stat.mtime.max(0) as u64);
        let archiving = |err: io::Error| Error::io("archiving", &abs())(err);
        self.builder.get_mut().boundary().map_err(archiving)?;
        let index = self.entries.len();
        let hash = if size <= SMALL_FILE {
            let bytes = self
                .hashes
                .read(index, ExactReader::new(file, size))
                .map_err(archiving)?;
            self.builder
                .append_data(&mut header, &rel, bytes)
                .map_err(archiving)?;
            self.hashes.close_if_full();
            // Filled in by `capture` from the deferred hashes.
            ContentHash([0; 32])
        } else {
            let mut reader = ExactHashingReader::new(file, size);
            self.builder
                .append_data(&mut header, &rel, &mut reader)
                .map_err(archiving)?;
            reader.hash()
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

/// Small files' bytes, read whole one after another, with the entry each
/// belongs to.
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    /// Entry index and where its bytes are in `data`.
    files: Vec<(usize, Range<usize>)>,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.files.len() >= BATCH_FILES || self.data.len() >= BATCH_BYTES
    }

    fn hash_into(&self, hashes: &mut Vec<(usize, ContentHash)>) {
        hashes.extend(
            self.files
                .iter()
                .map(|(index, range)| (*index, ContentHash::of(&self.data[range.clone()]))),
        );
    }

    fn clear(&mut self) {
        self.data.clear();
        self.files.clear();
    }
}

/// The hashes of small files, computed off the walking thread once the tree
/// has more than one batch of them, so hashing overlaps the file I/O.
struct DeferredHashes<'scope, 'env> {
    scope: &'scope thread::Scope<'scope, 'env>,
    /// The batch being filled.
    batch: Batch,
    /// Started when the first batch is closed.
    worker: Option<HashWorker<'scope>>,
    /// No thread could be started: every batch is hashed here.
    inline: bool,
    /// Hashes computed on the walking thread.
    done: Vec<(usize, ContentHash)>,
}

struct HashWorker<'scope> {
    batches: SyncSender<Batch>,
    /// Hashed batches coming back, emptied, for their buffers to be reused.
    spare: Receiver<Batch>,
    thread: thread::ScopedJoinHandle<'scope, Vec<(usize, ContentHash)>>,
}

impl<'scope, 'env> DeferredHashes<'scope, 'env> {
    fn new(scope: &'scope thread::Scope<'scope, 'env>) -> Self {
        DeferredHashes {
            scope,
            batch: Batch::default(),
            worker: None,
            inline: false,
            done: Vec::new(),
        }
    }

    /// Reads a small file whole into the current batch, for entry `index`,
    /// and returns its bytes.
    fn read(&mut self, index: usize, mut reader: ExactReader) -> io::Result<&[u8]> {
        let data = &mut self.batch.data;
        let start = data.len();
        let end = start + reader.remaining as usize;
        data.resize(end, 0);
        if let Err(err) = reader.read_exact(&mut data[start..]) {
            data.truncate(start);
            return Err(err);
        }
        self.batch.files.push((index, start..end));
        Ok(&data[start..])
    }

    /// Hands the current batch over once it is full.
    fn close_if_full(&mut self) {
        if !self.batch.is_full() {
            return;
        }
        if self.worker.is_none() && !self.inline {
            self.worker = self.spawn();
            self.inline = self.worker.is_none();
        }
        let Some(worker) = &self.worker else {
            self.batch.hash_into(&mut self.done);
            self.batch.clear();
            return;
        };
        let next = worker.spare.try_recv().unwrap_or_default();
        let full = mem::replace(&mut self.batch, next);
        if let Err(mpsc::SendError(full)) = worker.batches.send(full) {
            // The thread is gone, which only a panic does: `join` resumes
            // it here.
            self.join();
            self.inline = true;
            full.hash_into(&mut self.done);
        }
    }

    fn spawn(&self) -> Option<HashWorker<'scope>> {
        let (batches, queue) = mpsc::sync_channel::<Batch>(BATCHES_QUEUED);
        let (give_back, spare) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("berth-hash".into())
            .spawn_scoped(self.scope, move || {
                let mut hashes = Vec::new();
                for mut batch in queue {
                    batch.hash_into(&mut hashes);
                    batch.clear();
                    // The walk may be over and no longer take buffers back.
                    let _ = give_back.send(batch);
                }
                hashes
            });
        match thread {
            Ok(thread) => Some(HashWorker {
                batches,
                spare,
                thread,
            }),
            Err(err) => {
                tracing::debug!(%err, "no hashing thread; hashing on the walking thread");
                None
            }
        }
    }

    /// Waits for the hashing thread (after its queue is closed) and takes
    /// its hashes; a panic there is resumed here.
    fn join(&mut self) {
        let Some(HashWorker {
            batches, thread, ..
        }) = self.worker.take()
        else {
            return;
        };
        drop(batches);
        match thread.join() {
            Ok(hashes) => self.done.extend(hashes),
            Err(payload) => panic::resume_unwind(payload),
        }
    }

    /// Every small file's hash, by entry index.
    fn finish(mut self) -> Vec<(usize, ContentHash)> {
        // The last batch is hashed here while the thread, if any, empties
        // its queue.
        self.batch.hash_into(&mut self.done);
        self.join();
        self.done
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
    /// streamed or read whole into a batch.
    #[test]
    fn a_batch_reads_a_file_as_the_streaming_reader_does() {
        let dir = tempfile::tempdir().unwrap();
        for (len, size) in [(0, 0), (10, 10), (10, 700), (700, 10), (0, 5)] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
            let mut streamed = Vec::new();
            let mut reader = ExactHashingReader::new(file_of(dir.path(), "a", &bytes), size);
            reader.read_to_end(&mut streamed).unwrap();
            thread::scope(|scope| {
                let mut hashes = DeferredHashes::new(scope);
                let read = hashes
                    .read(7, ExactReader::new(file_of(dir.path(), "b", &bytes), size))
                    .unwrap()
                    .to_vec();
                assert_eq!(read, streamed, "{len} bytes read as {size}");
                assert_eq!(hashes.finish(), vec![(7, reader.hash())]);
            });
        }
    }

    /// Past the first batch the hashes come from the hashing thread; every
    /// file gets its own, whichever side computed it.
    #[test]
    fn hashes_from_many_batches_land_on_their_entries() {
        let dir = tempfile::tempdir().unwrap();
        let contents: Vec<Vec<u8>> = (0..BATCH_FILES * 3 + 5)
            .map(|i| format!("file {i}\n").repeat(i % 50).into_bytes())
            .collect();
        let mut got = thread::scope(|scope| {
            let mut hashes = DeferredHashes::new(scope);
            for (index, bytes) in contents.iter().enumerate() {
                let file = file_of(dir.path(), "f", bytes);
                hashes
                    .read(index, ExactReader::new(file, bytes.len() as u64))
                    .unwrap();
                hashes.close_if_full();
            }
            assert!(hashes.worker.is_some() || hashes.inline);
            hashes.finish()
        });
        got.sort_by_key(|(index, _)| *index);
        let want: Vec<(usize, ContentHash)> = contents
            .iter()
            .enumerate()
            .map(|(index, bytes)| (index, ContentHash::of(bytes)))
            .collect();
        assert_eq!(got, want);
    }
}
