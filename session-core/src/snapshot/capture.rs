//! Walking a directory into a manifest and an archive in one pass.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use super::Snapshot;
use super::frames::{FramedWriter, frame_target};
use super::manifest::{ContentHash, EntryKind, ManifestEntry, SnapshotManifest};
use super::rules::{SnapshotRules, Verdict};
use crate::compression::Compression;
use crate::error::{Error, Result};

const TAR_BLOCK: u64 = 512;

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
    let framed = FramedWriter::new(
        compression,
        frame_target(compression),
        BufWriter::with_capacity(256 << 10, handle),
    )
    .map_err(io_err)?;
    let mut builder = tar::Builder::new(framed);
    builder.mode(tar::HeaderMode::Complete);
    builder.follow_symlinks(false);

    let mut walker = Walker {
        rules,
        builder,
        entries: Vec::new(),
        other_paths: Vec::new(),
    };
    walker.walk_dir(&root, "")?;
    let Walker {
        builder,
        entries,
        other_paths,
        ..
    } = walker;
    let framed = builder.into_inner().map_err(io_err)?;
    let (buffered, frames) = framed.finish().map_err(io_err)?;
    // Flushed, not synced: a snapshot serves the session that took it, and
    // an fsync per capture would cost more than the walk itself.
    buffered
        .into_inner()
        .map_err(|err| io_err(err.into_error()))?;
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

struct Walker<'r, W: Write> {
    rules: &'r SnapshotRules,
    builder: tar::Builder<W>,
    /// Entries with the offset of their data in the tar stream.
    entries: Vec<(ManifestEntry, u64)>,
    other_paths: Vec<String>,
}

impl<W: Write> Walker<'_, FramedWriter<W>> {
    /// Called before each member: a new frame may start here.
    fn boundary(&mut self, abs: &Path) -> Result<()> {
        self.builder
            .get_mut()
            .boundary()
            .map_err(Error::io("archiving", abs))
    }

    fn walk_dir(&mut self, abs: &Path, rel: &str) -> Result<()> {
        let mut children = match fs::read_dir(abs) {
            Ok(iter) => iter
                .collect::<io::Result<Vec<_>>>()
                .map_err(Error::io("reading directory", abs))?,
            // Removed while we walked: it is simply not part of the snapshot.
            Err(err) if err.kind() == io::ErrorKind::NotFound && !rel.is_empty() => return Ok(()),
            Err(err) => return Err(Error::io("reading directory", abs)(err)),
        };
        children.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
        if children.is_empty() && !rel.is_empty() {
            if self.rules.leaf(rel) == Verdict::Include {
                self.add_empty_dir(abs, rel)?;
            } else {
                self.other_paths.push(format!("{rel}/"));
            }
            return Ok(());
        }
        for child in children {
            let name = child.file_name();
            let Some(name) = name.to_str() else {
                self.other_paths.push(join(rel, &name.to_string_lossy()));
                continue;
            };
            let child_rel = join(rel, name);
            let file_type = match child.file_type() {
                Ok(t) => t,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(Error::io("inspecting", &child.path())(err)),
            };
            if file_type.is_dir() {
                if self.rules.directory(&child_rel) == Verdict::Exclude {
                    self.other_paths.push(format!("{child_rel}/"));
                } else {
                    self.walk_dir(&child.path(), &child_rel)?;
                }
            } else if file_type.is_file() || file_type.is_symlink() {
                if self.rules.leaf(&child_rel) == Verdict::Exclude {
                    self.other_paths.push(child_rel);
                } else if file_type.is_file() {
                    self.add_file(&child.path(), child_rel)?;
                } else {
                    self.add_symlink(&child.path(), child_rel)?;
                }
            } else {
                // Sockets, fifos and devices are never archived.
                self.other_paths.push(child_rel);
            }
        }
        Ok(())
    }

    fn add_file(&mut self, abs: &Path, rel: String) -> Result<()> {
        // O_NOFOLLOW: a file swapped for a symlink mid-walk must not pull a
        // file from outside the tree into the archive.
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(abs)
        {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                return self.add_symlink(abs, rel);
            }
            Err(err) => return Err(Error::io("opening", abs)(err)),
        };
        let meta = file.metadata().map_err(Error::io("inspecting", abs))?;
        if !meta.is_file() {
            self.other_paths.push(rel);
            return Ok(());
        }
        let size = meta.len();
        let mode = meta.mode() & 0o7777;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(meta.mtime().max(0) as u64);
        let mut reader = ExactHashingReader::new(file, size);
        self.boundary(abs)?;
        self.builder
            .append_data(&mut header, &rel, &mut reader)
            .map_err(Error::io("archiving", abs))?;
        let end = self.builder.get_ref().position();
        let offset = end - size.div_ceil(TAR_BLOCK) * TAR_BLOCK;
        self.entries.push((
            ManifestEntry {
                path: rel,
                kind: EntryKind::File,
                mode,
                size,
                hash: reader.hash(),
                link_target: None,
            },
            offset,
        ));
        Ok(())
    }

    fn add_symlink(&mut self, abs: &Path, rel: String) -> Result<()> {
        let target = match fs::read_link(abs) {
            Ok(target) => target,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(Error::io("reading symlink", abs)(err)),
        };
        let Some(target_text) = target.to_str() else {
            self.other_paths.push(rel);
            return Ok(());
        };
        let meta = fs::symlink_metadata(abs).map_err(Error::io("inspecting", abs))?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_mtime(meta.mtime().max(0) as u64);
        self.boundary(abs)?;
        self.builder
            .append_link(&mut header, &rel, &target)
            .map_err(Error::io("archiving", abs))?;
        self.entries.push((
            ManifestEntry {
                path: rel,
                kind: EntryKind::Symlink,
                mode: 0o777,
                size: target_text.len() as u64,
                hash: ContentHash::of(target_text.as_bytes()),
                link_target: Some(target_text.to_owned()),
            },
            0,
        ));
        Ok(())
    }

    fn add_empty_dir(&mut self, abs: &Path, rel: &str) -> Result<()> {
        let meta = fs::symlink_metadata(abs).map_err(Error::io("inspecting", abs))?;
        let mode = meta.mode() & 0o7777;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(mode);
        header.set_mtime(meta.mtime().max(0) as u64);
        self.boundary(abs)?;
        self.builder
            .append_data(&mut header, format!("{rel}/"), io::empty())
            .map_err(Error::io("archiving", abs))?;
        self.entries.push((
            ManifestEntry {
                path: rel.to_owned(),
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

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_owned()
    } else {
        format!("{rel}/{name}")
    }
}

/// Yields exactly `size` bytes of a file (zero-padded if it shrank after
/// its size was read, cut if it grew) and hashes what it yields, so a
/// manifest entry always describes the archived bytes. Used by every writer
/// of tar members from a live tree.
#[derive(Debug)]
pub struct ExactHashingReader {
    inner: File,
    remaining: u64,
    hasher: blake3::Hasher,
}

impl ExactHashingReader {
    /// Reads `size` bytes of `file`.
    pub fn new(file: File, size: u64) -> ExactHashingReader {
        ExactHashingReader {
            inner: file,
            remaining: size,
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
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let mut n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            buf[..want].fill(0);
            n = want;
        }
        self.remaining -= n as u64;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
