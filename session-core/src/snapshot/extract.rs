//! Restoring a snapshot into a directory, refusing unsafe members.

use std::collections::HashSet;
use std::fs::{self, FileTimes, Permissions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::Snapshot;
use super::archive::{ancestors, archive_error, member_path, open_tar};
use super::manifest::{ContentHash, EntryKind, SnapshotManifest};
use crate::error::{Error, Result};
use crate::paths;

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
        prune(dest, "", snapshot.manifest(), &keep_dirs)?;
    }
    if !snapshot.has_archive() {
        // The empty snapshot: nothing to write.
        return Ok(());
    }

    let mut tar = open_tar(archive, snapshot.compression())?;
    let mut dir_modes = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    for member in tar.entries().map_err(|err| archive_error(archive, err))? {
        let mut member = member.map_err(|err| archive_error(archive, err))?;
        let rel = member_path(archive, &member)?;
        let rel_path = Path::new(&rel);
        let refuse = |reason: String| Error::UnsafeArchiveMember {
            archive: archive.to_path_buf(),
            member: rel.clone(),
            reason,
        };
        let escape = |err: Error| match err {
            Error::PathEscape { reason, .. } => refuse(reason.to_owned()),
            other => other,
        };
        let header = member.header();
        let mode = header.mode().map_err(|err| archive_error(archive, err))? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear_non_matching(dest, rel_path, EntryKind::File).map_err(escape)?;
                let mut file = paths::create_file_in(dest, rel_path).map_err(escape)?;
                let full = dest.join(rel_path);
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
                let hash: ContentHash = hasher.finalize().into();
                if let Some(expected) = snapshot.manifest().get(&rel)
                    && expected.kind == EntryKind::File
                    && expected.hash != hash
                {
                    return Err(archive_error(
                        archive,
                        format!("content of `{rel}` does not match the manifest"),
                    ));
                }
                file.set_permissions(Permissions::from_mode(mode))
                    .map_err(Error::io("setting mode of", &full))?;
                file.set_times(FileTimes::new().set_modified(epoch(mtime)))
                    .map_err(Error::io("setting time of", &full))?;
            }
            tar::EntryType::Directory => {
                clear_non_matching(dest, rel_path, EntryKind::Dir).map_err(escape)?;
                paths::create_dir_all_in(dest, rel_path).map_err(escape)?;
                dir_modes.push((rel_path.to_path_buf(), mode));
            }
            tar::EntryType::Symlink => {
                let target = member
                    .link_name_bytes()
                    .ok_or_else(|| refuse("a symlink without a target".into()))?
                    .into_owned();
                clear_non_matching(dest, rel_path, EntryKind::Symlink).map_err(escape)?;
                if let Some(parent) = rel_path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    paths::create_dir_all_in(dest, parent).map_err(escape)?;
                }
                let full = dest.join(rel_path);
                if fs::symlink_metadata(&full).is_ok() {
                    fs::remove_file(&full).map_err(Error::io("replacing", &full))?;
                }
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &full)
                    .map_err(Error::io("creating symlink", &full))?;
            }
            other => {
                return Err(refuse(format!(
                    "{} members are not extracted",
                    match other {
                        tar::EntryType::Link => "hard-link".to_owned(),
                        tar::EntryType::Char | tar::EntryType::Block => "device".to_owned(),
                        tar::EntryType::Fifo => "fifo".to_owned(),
                        other => format!("{other:?}"),
                    }
                )));
            }
        }
    }
    // Modes last, deepest first, so a read-only directory is still filled.
    for (rel, mode) in dir_modes.iter().rev() {
        let full = dest.join(rel);
        fs::set_permissions(&full, Permissions::from_mode(*mode))
            .map_err(Error::io("setting mode of", &full))?;
    }
    Ok(())
}

fn epoch(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Removes whatever stands at `rel` when it is not of `kind`, so the member
/// can take its place (a file replacing a directory, a link replacing a
/// file). Parents are not followed through symlinks.
fn clear_non_matching(dest: &Path, rel: &Path, kind: EntryKind) -> Result<()> {
    let full = dest.join(rel);
    let Ok(meta) = fs::symlink_metadata(&full) else {
        return Ok(());
    };
    let existing = if meta.is_dir() {
        EntryKind::Dir
    } else if meta.file_type().is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::File
    };
    if existing == kind {
        return Ok(());
    }
    // Check the parents first: a path through a symlink is never touched.
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        paths::create_dir_all_in(dest, parent)?;
    }
    paths::remove_existing(&full)
}

/// Removes from `dest` everything the manifest does not hold.
fn prune(
    dir: &Path,
    rel: &str,
    manifest: &SnapshotManifest,
    keep_dirs: &HashSet<&str>,
) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(Error::io("reading directory", dir))?;
    for child in entries {
        let child = child.map_err(Error::io("reading directory", dir))?;
        let name = child.file_name();
        let full = child.path();
        let Some(name) = name.to_str() else {
            paths::remove_existing(&full)?;
            continue;
        };
        let child_rel = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let file_type = child.file_type().map_err(Error::io("inspecting", &full))?;
        let kind = if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::File
        };
        match manifest.get(&child_rel) {
            Some(entry) if entry.kind == kind => {
                if kind == EntryKind::Dir {
                    prune(&full, &child_rel, manifest, keep_dirs)?;
                }
            }
            Some(_) => paths::remove_existing(&full)?,
            None if kind == EntryKind::Dir && keep_dirs.contains(child_rel.as_str()) => {
                prune(&full, &child_rel, manifest, keep_dirs)?;
            }
            None => paths::remove_existing(&full)?,
        }
    }
    Ok(())
}
