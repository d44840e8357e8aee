//! Reading archives: member names, selected entries, manifests of foreign
//! archives.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use super::Snapshot;
use super::frames::FrameCursor;
use super::manifest::{ContentHash, EntryKind, ManifestEntry, PERMISSION_BITS, SnapshotManifest};
use crate::compression::Compression;
use crate::error::{Error, Result};
use crate::paths::quote_name;
use crate::{paths, tree};

/// Opens `archive` as a tar stream in `compression`, read from the start.
///
/// The tar reader reads a member's 512-byte header, then its data, in
/// separate small reads; a decoder answers each of them at a high fixed
/// cost, so the decoded stream is buffered in large blocks in between.
pub(super) fn open_tar(
    archive: &Path,
    compression: Compression,
) -> Result<tar::Archive<BufReader<Box<dyn Read>>>> {
    let file = File::open(archive).map_err(Error::io("opening archive", archive))?;
    let reader = if compression == Compression::None {
        Box::new(file)
    } else {
        compression
            .reader(BufReader::with_capacity(256 << 10, file))
            .map_err(|err| archive_error(archive, err))?
    };
    Ok(tar::Archive::new(BufReader::with_capacity(
        256 << 10,
        reader,
    )))
}

pub(super) fn archive_error(archive: &Path, err: impl std::fmt::Display) -> Error {
    Error::Archive {
        archive: archive.to_path_buf(),
        message: err.to_string(),
    }
}

/// The member's name, checked: UTF-8, relative, not climbing out.
pub(super) fn member_path<R: Read>(archive: &Path, entry: &tar::Entry<'_, R>) -> Result<String> {
    let raw = entry.path_bytes();
    let refuse = |reason: &str| Error::UnsafeArchiveMember {
        archive: archive.to_path_buf(),
        member: String::from_utf8_lossy(&raw).into_owned(),
        reason: reason.to_owned(),
    };
    let text = std::str::from_utf8(&raw).map_err(|_| refuse("the name is not UTF-8"))?;
    let normalized = paths::normalize_relative(text).map_err(|err| match err {
        Error::PathEscape { reason, .. } => refuse(reason),
        other => other,
    })?;
    let rel = paths::to_slash(&normalized);
    let depth = rel.split('/').count();
    if let Some(limit) = tree::beyond_bounds(depth, rel.len()) {
        return Err(Error::UnsafeArchiveMember {
            archive: archive.to_path_buf(),
            member: tree::shorten(&rel),
            reason: format!(
                "it is {depth} levels deep and {} bytes long, beyond {limit}",
                rel.len()
            ),
        });
    }
    Ok(rel)
}

/// Refuses an archive whose members do not describe one tree: a path that
/// appears twice, or a member below another that is not a directory (a
/// file, or a symlink extraction would write through).
fn refuse_conflicts(archive: &Path, entries: &[(ManifestEntry, u64)]) -> Result<()> {
    let mut kinds: HashMap<&str, EntryKind> = HashMap::with_capacity(entries.len());
    for (entry, _) in entries {
        if kinds.insert(&entry.path, entry.kind).is_some() {
            return Err(Error::UnsafeArchiveMember {
                archive: archive.to_path_buf(),
                member: entry.path.clone(),
                reason: "the archive holds this path more than once".into(),
            });
        }
    }
    for (entry, _) in entries {
        for parent in ancestors(&entry.path) {
            if let Some(kind) = kinds.get(parent).filter(|k| **k != EntryKind::Dir) {
                return Err(Error::UnsafeArchiveMember {
                    archive: archive.to_path_buf(),
                    member: entry.path.clone(),
                    reason: format!("it lies below `{parent}`, a {kind} of the same archive"),
                });
            }
        }
    }
    Ok(())
}

/// Reads an archive's manifest. With `one_tree`, an archive whose members
/// conflict ([`refuse_conflicts`]) is refused; otherwise later members of
/// the same name win, as with `tar -x`.
pub(super) fn open(archive: &Path, compression: Compression, one_tree: bool) -> Result<Snapshot> {
    let mut tar = open_tar(archive, compression)?;
    let mut entries = Vec::new();
    for entry in tar.entries().map_err(|err| archive_error(archive, err))? {
        let mut entry = entry.map_err(|err| archive_error(archive, err))?;
        let path = member_path(archive, &entry)?;
        let header = entry.header();
        let mode = header.mode().map_err(|err| archive_error(archive, err))? & PERMISSION_BITS;
        let offset = entry.raw_file_position();
        let record = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut hasher = blake3::Hasher::new();
                let size = std::io::copy(&mut entry, &mut hasher)
                    .map_err(|err| archive_error(archive, err))?;
                ManifestEntry {
                    path,
                    kind: EntryKind::File,
                    mode,
                    size,
                    hash: hasher.finalize().into(),
                    link_target: None,
                }
            }
            tar::EntryType::Symlink => {
                // The target's exact bytes: what extraction writes.
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                ManifestEntry {
                    path,
                    kind: EntryKind::Symlink,
                    mode: 0o777,
                    size: target.len() as u64,
                    hash: ContentHash::of(&target),
                    link_target: Some(target),
                }
            }
            tar::EntryType::Directory => ManifestEntry {
                path,
                kind: EntryKind::Dir,
                mode,
                size: 0,
                hash: ContentHash::of(b""),
                link_target: None,
            },
            other => {
                return Err(Error::UnsafeArchiveMember {
                    archive: archive.to_path_buf(),
                    member: path,
                    reason: format!("unsupported member type {other:?}"),
                });
            }
        };
        entries.push((record, offset));
    }
    if one_tree {
        refuse_conflicts(archive, &entries)?;
    }
    // A directory entry is only an entry of its own when nothing lies in it.
    let parents: HashSet<String> = entries
        .iter()
        .flat_map(|(e, _)| ancestors(&e.path).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    entries.retain(|(e, _)| e.kind != EntryKind::Dir || !parents.contains(&e.path));
    // Later members of the same name win, as with `tar -x`.
    entries.reverse();
    entries.sort_by(|a, b| a.0.path.as_bytes().cmp(b.0.path.as_bytes()));
    entries.dedup_by(|later, earlier| later.0.path == earlier.0.path);
    let offsets: Arc<[u64]> = entries.iter().map(|(_, o)| *o).collect();
    let manifest = SnapshotManifest::new(entries.into_iter().map(|(e, _)| e).collect(), Vec::new());
    let checksum = manifest.checksum();
    Ok(Snapshot {
        manifest: Arc::new(manifest),
        offsets,
        frames: None,
        archive: archive.to_path_buf(),
        compression,
        checksum,
    })
}

/// Every proper ancestor directory of a `/`-separated path.
pub(super) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Hands `visit` the first bytes of each entry in `wanted` (a path and
/// the most bytes to read of it); see [`Snapshot::visit_entries`].
pub(super) fn visit_entries<'a, I>(
    snapshot: &Snapshot,
    wanted: I,
    visit: &mut dyn FnMut(&ManifestEntry, Vec<u8>) -> Result<()>,
) -> Result<()>
where
    I: IntoIterator<Item = (&'a str, u64)>,
{
    let archive = snapshot.archive_path();
    // Entries to read from the archive, with their offset and how many of
    // their bytes to read.
    let mut reads: Vec<(&ManifestEntry, u64, usize)> = Vec::new();
    for (path, limit) in wanted {
        let Some((entry, offset)) = snapshot.entry_offset(path) else {
            continue;
        };
        let len = entry.size.min(limit).min(usize::MAX as u64) as usize;
        match entry.kind {
            // Nothing to read (and no frame to open).
            EntryKind::File if len == 0 => visit(entry, Vec::new())?,
            EntryKind::File => reads.push((entry, offset, len)),
            EntryKind::Symlink => {
                let mut target = entry.link_target.clone().unwrap_or_default();
                target.truncate(len);
                visit(entry, target)?;
            }
            EntryKind::Dir => visit(entry, Vec::new())?,
        }
    }
    if reads.is_empty() {
        return Ok(());
    }
    // Only an entry meant to be read whole can be checked against its
    // hash (and one cut short by the archive fails it).
    let verify = |entry: &ManifestEntry, len: usize, bytes: &[u8]| {
        if len as u64 != entry.size || ContentHash::of(bytes) == entry.hash {
            Ok(())
        } else {
            Err(archive_error(
                archive,
                format!(
                    "content of `{}` does not match the manifest",
                    quote_name(entry.path.as_bytes())
                ),
            ))
        }
    };
    if snapshot.compression() == Compression::None {
        let mut file = File::open(archive).map_err(Error::io("opening archive", archive))?;
        reads.sort_by_key(|(_, offset, _)| *offset);
        for (entry, offset, len) in reads {
            let mut bytes = vec![0; len];
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(|err| archive_error(archive, err))?;
            verify(entry, len, &bytes)?;
            visit(entry, bytes)?;
        }
        return Ok(());
    }
    if let Some(frames) = snapshot.frames() {
        let file = File::open(archive).map_err(Error::io("opening archive", archive))?;
        let mut cursor = FrameCursor::new(&file, snapshot.compression(), frames)
            .map_err(|err| archive_error(archive, err))?;
        reads.sort_by_key(|(_, offset, _)| *offset);
        for (entry, offset, len) in reads {
            let mut bytes = vec![0; len];
            cursor
                .seek(offset)
                .and_then(|()| cursor.read_exact(&mut bytes))
                .map_err(|err| archive_error(archive, err))?;
            verify(entry, len, &bytes)?;
            visit(entry, bytes)?;
        }
        return Ok(());
    }
    let mut pending: HashMap<&str, (&ManifestEntry, usize)> = reads
        .iter()
        .map(|(entry, _, len)| (entry.path.as_str(), (*entry, *len)))
        .collect();
    let mut tar = open_tar(archive, snapshot.compression())?;
    for member in tar.entries().map_err(|err| archive_error(archive, err))? {
        let member = member.map_err(|err| archive_error(archive, err))?;
        let path = member_path(archive, &member)?;
        let Some((entry, len)) = pending.remove(path.as_str()) else {
            // Skipped by reading it through: the stream has no seek.
            continue;
        };
        let mut bytes = Vec::with_capacity(len);
        member
            .take(len as u64)
            .read_to_end(&mut bytes)
            .map_err(|err| archive_error(archive, err))?;
        verify(entry, len, &bytes)?;
        visit(entry, bytes)?;
        if pending.is_empty() {
            break;
        }
    }
    if let Some(missing) = pending.keys().next() {
        return Err(archive_error(
            archive,
            format!(
                "`{}` is in the manifest but not in the archive",
                quote_name(missing.as_bytes())
            ),
        ));
    }
    Ok(())
}
