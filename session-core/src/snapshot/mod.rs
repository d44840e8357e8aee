//! Snapshots: a manifest of a directory plus a tar archive of its bytes.
//!
//! [`Snapshot::capture`] walks a directory under [`SnapshotRules`], writes
//! one archive (in any [`Compression`]) *outside* that directory, and records
//! a [`SnapshotManifest`]. The snapshot's checksum is the manifest's hash, so
//! identical trees give identical checksums whatever the compression or the
//! time. [`Snapshot::extract`] restores it (refusing unsafe members), and
//! [`Snapshot::visit_entries`] reads only the entries asked for, and of each
//! at most the bytes asked for, which is how a diff touches only what
//! changed.
//!
//! # What survives a snapshot
//!
//! Files, symlinks (as links, never followed) and empty directories, with
//! their content and their permission bits ([`PERMISSION_BITS`], `0o777`)
//! and nothing else. A symlink's content is its target, byte for byte:
//! never normalised as a path (`/`, `a//b` and `x/.` stay as they are),
//! UTF-8 or not, up to the longest a link can hold ([`append_symlink`]). Capture records no set-user-id, set-group-id or sticky
//! bit, no owner and no device, FIFO or socket; extraction sets only the
//! permission bits of each member, whatever an archive from elsewhere says,
//! creates every file anew (removing what stood at its path, so nothing is
//! written through an existing file or its hard links) and never changes an
//! owner: what it writes belongs to whoever runs it. This holds for every
//! way a file leaves a session onto the host, since all of them extract:
//! checkpoints, restoring a snapshot, and both directions of a remote
//! sync. A tree captured, extracted and captured again has the same
//! checksum.
//!
//! # Memory and sparse files
//!
//! Nothing here holds a file whole: capture streams each file through the
//! archive writer and its hasher (files up to 64 KiB are read whole, into
//! batches of at most 256 KiB), extraction streams each member through one
//! 64 KiB buffer, and [`Snapshot::visit_entries`] reads at most what its
//! caller asks of each entry. Whatever a tree holds, a capture or an
//! extraction needs a few MiB.
//!
//! A sparse file stays sparse. Capture finds a live file's holes with
//! `SEEK_DATA`/`SEEK_HOLE` and yields them as zeros without reading them;
//! the archive holds those zeros (no GNU sparse members: any `tar` reads
//! berth's archives). Every file extraction writes, and every uncompressed
//! archive, leaves each aligned 4 KiB block of zeros unwritten, a hole: a
//! 2 GiB file made by `truncate` comes out of a checkpoint occupying no
//! blocks, and so does any run of zeros, sparse at its source or not.
//!
//! Capture opens nothing but directories and regular files
//! ([`crate::tree::Dir::open_regular`]): a FIFO or a device node found
//! where a file was listed is looked at, listed with the other paths, and
//! never opened.
//!
//! Capture walks with [`crate::tree::Walker`]: without recursion and within
//! its bounds ([`crate::Error::TreeBound`] beyond 1,024 levels or 4,096
//! bytes of relative path); extraction writes through directory
//! descriptors, so a destination's own path length never limits it.

mod archive;
mod capture;
mod extract;
mod frames;
mod manifest;
mod rules;
mod sparse;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::capture::{ExactHashingReader, append_symlink};
pub use self::extract::ExtractMode;
pub use self::manifest::{
    ContentHash, EntryKind, ManifestEntry, PERMISSION_BITS, SnapshotManifest,
};
pub use self::rules::SnapshotRules;
use crate::compression::Compression;
use crate::error::Result;

/// A captured state of a directory: its manifest and the archive holding its
/// bytes.
///
/// A `Snapshot` is a cheap-to-clone value; it does not own the archive file.
/// The directory it was written to (a session's archive directory, or the
/// spec's `archive_save_dir`) owns it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    manifest: Arc<SnapshotManifest>,
    /// Offset of each entry's data in the uncompressed tar stream, aligned
    /// with `manifest.entries()`.
    offsets: Arc<[u64]>,
    /// Where each compressed frame of the archive starts, when the archive
    /// was written as independently compressed frames (by
    /// [`Snapshot::capture`]); `None` for uncompressed archives and for
    /// archives opened from disk, which are streamed.
    frames: Option<Arc<[frames::Frame]>>,
    archive: PathBuf,
    compression: Compression,
    checksum: ContentHash,
}

impl Snapshot {
    /// Snapshots `root` under `rules` into a new archive in `archive_dir`.
    ///
    /// A compressed archive is written as a sequence of independently
    /// compressed frames (gzip members, zstd frames, bzip2 or xz streams),
    /// each starting at a tar member. Any `tar` reads it as one archive;
    /// the returned `Snapshot` also knows where each frame starts, so
    /// [`Snapshot::read_entries`] decodes only the frames it needs.
    ///
    /// Fails with [`crate::Error::ArchiveInsideSnapshot`] when `archive_dir`
    /// is inside `root` (the archive would be captured by the next snapshot),
    /// and with I/O errors naming the path. A failed capture leaves no
    /// partial archive behind.
    pub fn capture(
        root: &Path,
        rules: &SnapshotRules,
        compression: Compression,
        archive_dir: &Path,
    ) -> Result<Snapshot> {
        capture::capture(root, rules, compression, archive_dir)
    }

    /// The snapshot of nothing, without an archive file: what a workspace
    /// with an empty base starts from, at the cost of no file at all.
    ///
    /// Its checksum equals that of a capture of an empty directory.
    /// Extracting it and reading its entries need no archive; it has no
    /// archive path ([`Snapshot::archive_path`] is empty and
    /// [`Snapshot::has_archive`] is `false`).
    pub fn empty(compression: Compression) -> Snapshot {
        let manifest = SnapshotManifest::default();
        let checksum = manifest.checksum();
        Snapshot {
            manifest: Arc::new(manifest),
            offsets: Arc::from([]),
            frames: None,
            archive: PathBuf::new(),
            compression,
            checksum,
        }
    }

    /// Opens an existing archive written by berth or any `tar` (in the given
    /// compression), building its manifest by reading it once. When a path
    /// appears more than once, the last member wins, as with `tar -x`.
    ///
    /// Fails with [`crate::Error::UnsafeArchiveMember`] for a member that is
    /// absolute, climbs out, is not UTF-8, is a device or FIFO, or lies
    /// beyond [`crate::tree::MAX_DEPTH`] levels or
    /// [`crate::tree::MAX_PATH_BYTES`] bytes.
    pub fn open_archive(archive: &Path, compression: Compression) -> Result<Snapshot> {
        archive::open(archive, compression, false)
    }

    /// Opens an archive that must describe one tree, as one side of a sync
    /// sends the other: like [`Snapshot::open_archive`], but an archive that
    /// holds a path twice, or a member below another that is not a
    /// directory (`d` a file and `d/x`, or `link` a symlink and `link/x`),
    /// is refused whole with [`crate::Error::UnsafeArchiveMember`] naming
    /// the member, before anything could be extracted from it.
    pub fn open_tree_archive(archive: &Path, compression: Compression) -> Result<Snapshot> {
        archive::open(archive, compression, true)
    }

    /// The manifest.
    pub fn manifest(&self) -> &SnapshotManifest {
        &self.manifest
    }

    /// The checksum: [`SnapshotManifest::checksum`].
    pub fn checksum(&self) -> ContentHash {
        self.checksum
    }

    /// The archive file (empty for [`Snapshot::empty`]).
    pub fn archive_path(&self) -> &Path {
        &self.archive
    }

    /// Whether the snapshot has an archive file (all but
    /// [`Snapshot::empty`] do).
    pub fn has_archive(&self) -> bool {
        !self.archive.as_os_str().is_empty()
    }

    /// The archive's compression.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Restores the snapshot into `dest` (created if missing).
    ///
    /// Member names that are absolute or climb out, hard links, devices,
    /// FIFOs and writes through a symlink are refused with
    /// [`crate::Error::UnsafeArchiveMember`]; file content is checked against
    /// the manifest. [`ExtractMode::Mirror`] also removes what `dest` holds
    /// beyond the snapshot; [`ExtractMode::Merge`] leaves it.
    ///
    /// What extraction writes belongs to whoever extracts: every file is
    /// created anew (what stood at its path is removed first, so no write
    /// goes through an existing file or one of its hard links), never
    /// `chown`ed to an owner named in the archive, and gets only the
    /// [`PERMISSION_BITS`] of its member: set-user-id, set-group-id and
    /// sticky bits are dropped, whatever the archive says. Directories get
    /// the same treatment.
    pub fn extract(&self, dest: &Path, mode: ExtractMode) -> Result<()> {
        extract::extract(self, dest, mode)
    }

    /// Reads at most `limit` bytes of each entry at `paths` (files and
    /// symlink targets), and only those entries; see
    /// [`Snapshot::visit_entries`]. What it returns is bounded by the caller:
    /// `limit` times the number of paths.
    pub fn read_entries<'a, I>(
        &self,
        paths: I,
        limit: u64,
    ) -> Result<std::collections::HashMap<String, Vec<u8>>>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut out = std::collections::HashMap::new();
        self.visit_entries(
            paths.into_iter().map(|path| (path, limit)),
            |entry, bytes| {
                out.insert(entry.path.clone(), bytes);
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// Reads the entries in `wanted`, each a path with the most bytes to
    /// read of it, and hands each entry with its first bytes to `visit`, one
    /// at a time, so that a caller keeps only what it needs: a diff reads a
    /// few KiB of a large file to tell whether it is binary, and memory
    /// never holds more than one entry's bytes.
    ///
    /// Files and symlink targets yield their bytes (the first `limit` of
    /// them), empty directories nothing; paths not in the manifest are not
    /// visited. An entry read whole is verified against its manifest hash
    /// ([`crate::Error::Archive`] when it does not match); a prefix cannot
    /// be, and is not. Entries are visited in the order of the archive,
    /// after those that need no reading.
    ///
    /// An uncompressed archive is read by seeking straight to each entry. A
    /// compressed archive written by [`Snapshot::capture`] is a sequence of
    /// independently compressed frames (32 KiB of tar stream each for gz):
    /// only the frames holding wanted bytes are decoded, each from its
    /// start up to the last byte wanted in it. A compressed archive opened
    /// with [`Snapshot::open_archive`] has no frame index and is streamed
    /// once, through a fixed buffer, up to the last entry wanted: the bytes
    /// of the entries passed over, or beyond a prefix, are decoded and
    /// dropped, never held.
    ///
    /// An error `visit` returns stops the reading and is returned.
    pub fn visit_entries<'a, I, F>(&self, wanted: I, mut visit: F) -> Result<()>
    where
        I: IntoIterator<Item = (&'a str, u64)>,
        F: FnMut(&ManifestEntry, Vec<u8>) -> Result<()>,
    {
        archive::visit_entries(self, wanted, &mut visit)
    }

    fn frames(&self) -> Option<&[frames::Frame]> {
        self.frames.as_deref()
    }

    fn entry_offset(&self, path: &str) -> Option<(&ManifestEntry, u64)> {
        let index = self
            .manifest
            .entries()
            .binary_search_by(|e| e.path.as_bytes().cmp(path.as_bytes()))
            .ok()?;
        Some((&self.manifest.entries()[index], self.offsets[index]))
    }
}
