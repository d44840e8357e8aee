//! Restoring a snapshot into a directory, refusing unsafe members.
//!
//! The one place every file that leaves a session goes through (see the
//! parent module on what survives): each file is created anew with only
//! its permission bits, never `chown`ed, and every write goes through
//! directory descriptors that refuse symlinks.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, FileTimes, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::Snapshot;
use super::archive::{ancestors, archive_error, member_path, open_tar};
use super::manifest::{ContentHash, EntryKind, PERMISSION_BITS, SnapshotManifest};
use super::sparse::SparseWriter;
use crate::error::{Error, Result};
use crate::paths::quote_name;
use crate::tree::{Blocked, Dir, DirCursor, FileKind, Walker};

/// What extraction does with what the destination already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractMode {
    /// Make the destination equal to the snapshot: remove everything the
    /// snapshot does not hold.
    Mirror,
    /// Write the snapshot's entries over the destination and leave
    /// everything else in place.
    Merge,
}

pub(super) fn extract(snapshot: &Snapshot, dest: &Path, mode: ExtractMode) -> Result<()> {
    let archive = snapshot.archive_path();
    fs::create_dir_all(dest).map_err(Error::io("creating", dest))?;
    if mode == ExtractMode::Mirror {
        let keep_dirs: HashSet<&str> = snapshot
            .manifest()
            .entries()
            .iter()
            .flat_map(|e| ancestors(&e.path))
            .collect();
        prune(dest, snapshot.manifest(), &keep_dirs)?;
    }
    if !snapshot.has_archive() {
        // The empty snapshot: nothing to write.
        return Ok(());
    }

    let mut cursor = DirCursor::open(dest)?;
    let mut tar = open_tar(archive, snapshot.compression())?;
    let mut dir_modes = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    for member in tar.entries().map_err(|err| archive_error(archive, err))? {
        let mut member = member.map_err(|err| archive_error(archive, err))?;
        let rel = member_path(archive, &member)?;
        let refuse = |reason: &str| Error::UnsafeArchiveMember {
            archive: archive.to_path_buf(),
            member: rel.clone(),
            reason: reason.to_owned(),
        };
        let header = member.header();
        // Only the permission bits: never set-id or sticky bits.
        let mode = header.mode().map_err(|err| archive_error(archive, err))? & PERMISSION_BITS;
        let mtime = header.mtime().unwrap_or(0);
        let entry_type = header.entry_type();
        let kind = match entry_type {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink,
            other => {
                return Err(refuse(&format!(
                    "{} members are not extracted",
                    match other {
                        tar::EntryType::Link => "hard-link".to_owned(),
                        tar::EntryType::Char | tar::EntryType::Block => "device".to_owned(),
                        tar::EntryType::Fifo => "fifo".to_owned(),
                        other => format!("{other:?}"),
                    }
                )));
            }
        };
        let (parents, name) = split_member(&rel);
        let dir = match cursor.enter(&parents, true)? {
            Ok(dir) => dir,
            Err(Blocked::Symlink) => return Err(refuse("a parent directory is a symlink")),
            Err(_) => return Err(refuse("a parent of it is not a directory")),
        };
        let full = cursor_path(dest, &rel);
        match kind {
            EntryKind::File => {
                clear(dir, name, false, &full)?;
                // A new file, owned by whoever extracts, private until its
                // content is complete and checked.
                let file = dir
                    .open_file(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600)
                    .map_err(Error::io("creating", &full))?;
                // Streamed through one buffer; blocks of zeros become holes.
                let mut file = SparseWriter::new(file);
                let mut hasher = blake3::Hasher::new();
                loop {
                    let n = member
                        .read(&mut buf)
                        .map_err(|err| archive_error(archive, err))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    file.write_all(&buf[..n])
                        .map_err(Error::io("writing", &full))?;
                }
                let file = file.finish().map_err(Error::io("writing", &full))?;
                let hash: ContentHash = hasher.finalize().into();
                if let Some(expected) = snapshot.manifest().get(&rel)
                    && expected.kind == EntryKind::File
                    && expected.hash != hash
                {
                    return Err(archive_error(
                        archive,
                        format!(
                            "content of `{}` does not match the manifest",
                            quote_name(rel.as_bytes())
                        ),
                    ));
                }
                file.set_permissions(Permissions::from_mode(mode))
                    .map_err(Error::io("setting mode of", &full))?;
                file.set_times(FileTimes::new().set_modified(epoch(mtime)))
                    .map_err(Error::io("setting time of", &full))?;
            }
            EntryKind::Dir => {
                clear(dir, name, true, &full)?;
                match dir.create_dir(name, 0o777) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(err) => return Err(Error::io("creating directory", &full)(err)),
                }
                dir_modes.push((rel.clone(), mode));
            }
            EntryKind::Symlink => {
                let target = member
                    .link_name_bytes()
                    .ok_or_else(|| refuse("a symlink without a target"))?
                    .into_owned();
                clear(dir, name, false, &full)?;
                dir.symlink(OsStr::from_bytes(&target), name)
                    .map_err(Error::io("creating symlink", &full))?;
            }
        }
    }
    // Modes last, deepest first, so a read-only directory is still filled.
    for (rel, mode) in dir_modes.iter().rev() {
        let full = cursor_path(dest, rel);
        let (parents, name) = split_member(rel);
        let Ok(parent) = cursor.enter(&parents, false)? else {
            return Err(Error::io("setting mode of", &full)(
                io::ErrorKind::NotFound.into(),
            ));
        };
        parent
            .open_dir(name)
            .and_then(|dir| dir.set_mode(*mode))
            .map_err(Error::io("setting mode of", &full))?;
    }
    Ok(())
}

/// A member's modification time. Times beyond what a signed 64-bit
/// `time_t` holds (only a hand-made archive carries them) are clamped to
/// its largest value rather than overflowing; the kernel clamps further to
/// what the file system stores. File times are not part of a snapshot.
fn epoch(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds.min(i64::MAX as u64))
}

/// A member's parent components and its own name.
fn split_member(rel: &str) -> (Vec<&OsStr>, &OsStr) {
    let mut parts: Vec<&OsStr> = rel.split('/').map(OsStr::new).collect();
    let name = parts.pop().expect("a member path is never empty");
    (parts, name)
}

/// The path of a member under `dest`, for messages.
fn cursor_path(dest: &Path, rel: &str) -> PathBuf {
    dest.join(rel)
}

/// Makes room for a member at `name` in `dir`: whatever stands there is
/// removed (a directory with everything in it), except a directory when
/// `keep_dir` (a directory member merges with it).
fn clear(dir: &Dir, name: &OsStr, keep_dir: bool, full: &Path) -> Result<()> {
    match dir.stat_at(name) {
        Ok(stat) if keep_dir && stat.kind == FileKind::Dir => Ok(()),
        Ok(_) => dir.remove_any(name, full),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Error::io("inspecting", full)(err)),
    }
}

/// Removes from `dest` everything the manifest does not hold, and
/// anything of another kind than its entry.
fn prune(dest: &Path, manifest: &SnapshotManifest, keep_dirs: &HashSet<&str>) -> Result<()> {
    // Unbounded: it only enters directories the manifest holds (or holds
    // entries in), which are within bounds, and removes whatever else it
    // finds whole.
    let mut walker = Walker::without_bounds(dest)?;
    while let Some(entry) = walker.next_entry()? {
        let kind = match entry.kind {
            FileKind::Dir => EntryKind::Dir,
            FileKind::Symlink => EntryKind::Symlink,
            FileKind::File | FileKind::Other => EntryKind::File,
        };
        let keep = entry.kind != FileKind::Other
            && entry
                .rel
                .to_str()
                .is_some_and(|rel| match manifest.get(rel) {
                    Some(wanted) => wanted.kind == kind,
                    None => kind == EntryKind::Dir && keep_dirs.contains(rel),
                });
        if !keep {
            entry.dir.remove_any(entry.name, &dest.join(entry.rel))?;
        } else if kind == EntryKind::Dir {
            walker.descend()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_member_times_are_clamped_not_overflowed() {
        let latest = epoch(u64::MAX);
        assert_eq!(latest, epoch(i64::MAX as u64));
        assert!(latest > epoch(1 << 40));
    }
}
