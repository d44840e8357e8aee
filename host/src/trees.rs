//! `berth snapshot` and `berth diff`: snapshots and diffs on their own.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use session_core::compression::Compression;
use session_core::diff::{self, ChangeKind, FileChange, SnapshotDiff, TextOmitted};
use session_core::paths::quote_name;
use session_core::snapshot::{Snapshot, SnapshotRules};
use session_core::spec::EnvironmentSpec;
use session_core::tree::RemoveOnDrop;
use session_core::workspace::{SESSION_DIR_PREFIX, SESSION_MARKER, SessionMarker, hostname};

use crate::ExitCode;
use crate::cli::{DiffArgs, SnapshotArgs};
use crate::failure::usage_bail;
use crate::term::{Progress, human_bytes, size_of_tree};

/// Archive suffixes and the compression each implies, longest first so
/// `.tar.gz` wins over `.tar`.
const ARCHIVE_SUFFIXES: &[(&str, Compression)] = &[
    (".tar.gz", Compression::Gzip),
    (".tar.bz2", Compression::Bzip2),
    (".tar.xz", Compression::Xz),
    (".tar.zst", Compression::Zstd),
    (".tgz", Compression::Gzip),
    (".tbz2", Compression::Bzip2),
    (".txz", Compression::Xz),
    (".tzst", Compression::Zstd),
    (".tar", Compression::None),
];

/// The compression an archive's file name implies, if it names an archive.
pub(crate) fn archive_compression(path: &Path) -> Option<Compression> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    ARCHIVE_SUFFIXES
        .iter()
        .find(|(suffix, _)| name.ends_with(suffix) && name.len() > suffix.len())
        .map(|(_, compression)| *compression)
}

/// A scratch directory named like a session directory and carrying a
/// session marker, so that if berth dies while using it, `berth gc` finds
/// it by its dead owner pid. Removed when dropped, by the removal that
/// takes any tree.
pub(crate) fn scratch_dir(temp_root: &Path, label: &str) -> anyhow::Result<RemoveOnDrop> {
    fs::create_dir_all(temp_root)
        .with_context(|| format!("creating the temporary directory `{}`", temp_root.display()))?;
    let dir = RemoveOnDrop::new(
        tempfile::Builder::new()
            .prefix(&format!("{SESSION_DIR_PREFIX}{label}-"))
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(temp_root)
            .with_context(|| format!("creating a scratch directory in `{}`", temp_root.display()))?
            .keep(),
    );
    let marker = SessionMarker {
        session_id: format!("berth {label}"),
        owner_pid: std::process::id(),
        owner_host: hostname(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let marker_path = dir.path().join(SESSION_MARKER);
    fs::write(&marker_path, serde_json::to_vec_pretty(&marker)?)
        .with_context(|| format!("writing `{}`", marker_path.display()))?;
    Ok(dir)
}

/// The archive names `berth snapshot` knows the format of, for messages.
const ARCHIVE_NAMES: &str = ".tar, .tar.gz, .tgz, .tar.bz2, .tbz2, .tar.xz, .txz, .tar.zst, .tzst";

/// The format of the archive at `path`, told by its first bytes: a name
/// need not say it (`snapshot --compression` writes any name). `None` when
/// the file starts like none of the formats berth writes.
fn sniff_archive(path: &Path) -> std::io::Result<Option<Compression>> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(512);
    fs::File::open(path)?.take(512).read_to_end(&mut head)?;
    let zstd_skippable =
        head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18];
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.starts_with(b"BZh") {
        Some(Compression::Bzip2)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(Compression::Xz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || zstd_skippable {
        Some(Compression::Zstd)
    } else if head.len() == 512 && (&head[257..262] == b"ustar" || head.iter().all(|b| *b == 0)) {
        // A tar header, or the zero blocks that end (and make up all of)
        // the archive of an empty tree.
        Some(Compression::None)
    } else {
        None
    })
}

/// What `berth snapshot --json` prints.
#[derive(Debug, serde::Serialize)]
struct SnapshotReport<'a> {
    archive: &'a Path,
    checksum: String,
    entries: usize,
    bytes: u64,
    archive_bytes: u64,
    compression: &'static str,
    left_out: &'a [String],
}

/// The keep globs (`None`: keep everything) and ignore globs of `berth
/// snapshot`: the spec's `snapshot:` block when `--env` names one, plus
/// `--keep` and `--ignore`.
fn snapshot_globs(args: &SnapshotArgs) -> anyhow::Result<(Option<Vec<String>>, Vec<String>)> {
    let (mut keep, mut ignore) = match &args.spec {
        Some(path) => {
            let spec = EnvironmentSpec::from_path(path)?;
            (spec.snapshot.keep_globs, spec.snapshot.ignore_globs)
        }
        None => (None, Vec::new()),
    };
    if !args.keep.is_empty() {
        keep.get_or_insert_with(Vec::new)
            .extend(args.keep.iter().cloned());
    }
    ignore.extend(args.ignore.iter().cloned());
    Ok((keep, ignore))
}

/// `berth snapshot DIR -o ARCHIVE`.
pub(crate) fn snapshot(args: &SnapshotArgs, temp_root: &Path) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    let compression = match args.compression {
        Some(compression) => Compression::from(compression),
        None => match archive_compression(&args.output) {
            Some(compression) => compression,
            None => usage_bail!(
                "`{}` does not say which archive format to write: name it {ARCHIVE_NAMES}, or \
                 say the format with --compression",
                args.output.display()
            ),
        },
    };
    if !dir.is_dir() {
        usage_bail!("`{}` is not a directory", dir.display());
    }
    let (keep, mut ignore) = snapshot_globs(args)?;
    let archive = absolute(&args.output)?;
    let parent = archive
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .context("the archive path has no parent directory")?;
    if !parent.is_dir() {
        bail!(
            "`{}` does not exist or is not a directory",
            parent.display()
        );
    }
    if archive.is_dir() {
        bail!("`{}` is a directory", archive.display());
    }
    let root = fs::canonicalize(dir).with_context(|| format!("opening `{}`", dir.display()))?;
    let parent =
        fs::canonicalize(parent).with_context(|| format!("opening `{}`", parent.display()))?;
    let archive = parent.join(
        archive
            .file_name()
            .context("the archive path has no file name")?,
    );

    // The archive is written in a scratch directory beside its destination
    // (so the final rename is atomic) unless that is inside the tree being
    // snapshotted, where it would be captured; then in the temporary root.
    let inside = parent.starts_with(&root);
    let scratch = if inside {
        scratch_dir(temp_root, "snapshot")?
    } else {
        RemoveOnDrop::new(
            tempfile::Builder::new()
                .prefix(".berth-snapshot-")
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .tempdir_in(&parent)
                .with_context(|| format!("creating a scratch directory in `{}`", parent.display()))?
                .keep(),
        )
    };
    // A previous archive at the destination inside the tree is not part of
    // what is snapshotted.
    if let Ok(rel) = archive.strip_prefix(&root)
        && inside
    {
        ignore.push(escape_glob(&rel.to_string_lossy()));
    }
    let rules = SnapshotRules::new(keep.as_deref(), &ignore)?;
    let archive_dir = scratch.path().join("archive");
    let snapshot = {
        let watched = archive_dir.clone();
        let _progress = Progress::start(
            format!("snapshotting {}", dir.display()),
            Some(Box::new(move || size_of_tree(&watched))),
        );
        Snapshot::capture(&root, &rules, compression, &archive_dir)
            .with_context(|| format!("snapshotting `{}`", dir.display()))?
    };
    persist(snapshot.archive_path(), &archive)?;
    // Scratch files are private (0600); the archive gets the permissions
    // any new file of the user gets, as with `tar -cf`.
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&archive, fs::Permissions::from_mode(0o666 & !umask()))
            .with_context(|| format!("setting the permissions of `{}`", archive.display()))?;
    }
    let archive_size = fs::metadata(&archive).map_or(0, |m| m.len());
    let manifest = snapshot.manifest();
    if args.json {
        crate::failure::write_json(&SnapshotReport {
            archive: &archive,
            checksum: snapshot.checksum().to_hex(),
            entries: manifest.len(),
            bytes: manifest.total_size(),
            archive_bytes: archive_size,
            compression: compression.name(),
            left_out: manifest.other_paths(),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wrote {} ({} entries, {} of content, {} archive, {}), checksum {}",
        archive.display(),
        manifest.len(),
        human_bytes(manifest.total_size()),
        human_bytes(archive_size),
        compression.name(),
        snapshot.checksum()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Moves `from` to exactly `to`: a rename, or when that crosses file
/// systems, a copy into a temporary file beside `to` renamed over it.
fn persist(from: &Path, to: &Path) -> anyhow::Result<()> {
    if fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let parent = to.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".berth-snapshot-")
        .tempfile_in(parent)
        .with_context(|| format!("creating a temporary file in `{}`", parent.display()))?;
    let mut source =
        fs::File::open(from).with_context(|| format!("opening `{}`", from.display()))?;
    std::io::copy(&mut source, temp.as_file_mut())
        .with_context(|| format!("writing `{}`", to.display()))?;
    temp.as_file().sync_all().ok();
    temp.persist(to)
        .map_err(|err| err.error)
        .with_context(|| format!("writing `{}`", to.display()))?;
    Ok(())
}

/// The process's file-creation mask, read without changing it.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Umask:"))
                .and_then(|mask| u32::from_str_radix(mask.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving `{}`", path.display()))
}

/// Escapes glob syntax so a path matches only itself.
fn escape_glob(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if "*?[]{}\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `berth diff A B`.
pub(crate) fn diff(args: &DiffArgs, temp_root: &Path) -> anyhow::Result<ExitCode> {
    let diff = if args.old.is_dir() && args.new.is_dir() {
        // Two directories are compared where they are: no snapshot is
        // written, and only what differs is hashed.
        let _progress = Progress::start(
            format!(
                "comparing {} and {}",
                args.old.display(),
                args.new.display()
            ),
            None,
        );
        diff::diff_dirs(&args.old, &args.new).context("comparing the directories")?
    } else {
        // A directory beside an archive is snapshotted (uncompressed:
        // fastest to write and to seek in) into a scratch directory
        // removed when this returns.
        let mut scratch = None;
        let old = open_tree(&args.old, temp_root, &mut scratch)?;
        let new = open_tree(&args.new, temp_root, &mut scratch)?;
        diff::diff(&old, &new).context("comparing the snapshots")?
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        crate::failure::write_json(&diff)?;
    } else if args.stat {
        for change in &diff.changes {
            writeln!(out, "{}", stat_line(change))?;
        }
        writeln!(out, "{}", summary_line(&diff))?;
    } else {
        diff.write_unified(&mut out)?;
    }
    out.flush()?;
    Ok(if diff.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::DIFFERENT
    })
}

fn open_tree(
    path: &Path,
    temp_root: &Path,
    scratch: &mut Option<RemoveOnDrop>,
) -> anyhow::Result<Snapshot> {
    let metadata =
        fs::metadata(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    if metadata.is_dir() {
        let dir = match scratch {
            Some(dir) => dir,
            None => scratch.insert(scratch_dir(temp_root, "diff")?),
        };
        let archive_dir = dir.path().join("archives");
        let _progress = Progress::start(format!("snapshotting {}", path.display()), None);
        return Snapshot::capture(
            path,
            &SnapshotRules::keep_all(),
            Compression::None,
            &archive_dir,
        )
        .with_context(|| format!("snapshotting `{}`", path.display()));
    }
    let sniffed = sniff_archive(path).with_context(|| format!("reading `{}`", path.display()))?;
    let Some(compression) = sniffed.or_else(|| archive_compression(path)) else {
        usage_bail!(
            "`{}` is neither a directory nor an archive (a tar archive, plain or compressed with \
             gzip, bzip2, xz or zstd)",
            path.display()
        );
    };
    let _progress = Progress::start(format!("reading {}", path.display()), None);
    Snapshot::open_archive(path, compression)
        .with_context(|| format!("reading the archive `{}`", path.display()))
}

/// One line of `--stat`: a status letter, the path (quoted as git quotes
/// it when it holds a control character, a quote or bytes that are not
/// UTF-8), what changed.
pub(crate) fn stat_line(change: &FileChange) -> String {
    let letter = match change.kind {
        ChangeKind::Created => 'A',
        ChangeKind::Deleted => 'D',
        ChangeKind::Modified | ChangeKind::ModeChanged => 'M',
        ChangeKind::TypeChanged => 'T',
        ChangeKind::Renamed => 'R',
    };
    // A name that needs it is quoted: none can add a line of its own.
    let quoted = |path: &str| quote_name(path.as_bytes()).into_owned();
    let path = match (&change.kind, &change.old_path) {
        (ChangeKind::Renamed, Some(old)) => format!("{} -> {}", quoted(old), quoted(&change.path)),
        _ => quoted(&change.path),
    };
    let old_size = change.old.as_ref().map_or(0, |s| s.size);
    let new_size = change.new.as_ref().map_or(0, |s| s.size);
    let detail = match change.kind {
        ChangeKind::ModeChanged => format!(
            "mode {:o} -> {:o}",
            change.old.as_ref().map_or(0, |s| s.mode),
            change.new.as_ref().map_or(0, |s| s.mode)
        ),
        ChangeKind::TypeChanged => format!(
            "{} -> {}",
            change
                .old
                .as_ref()
                .map_or_else(String::new, |s| s.kind.to_string()),
            change
                .new
                .as_ref()
                .map_or_else(String::new, |s| s.kind.to_string())
        ),
        ChangeKind::Renamed => String::new(),
        _ if change.is_binary => format!("binary, {old_size} -> {new_size} bytes"),
        _ if change.text_omitted.is_some() => format!(
            "text, {old_size} -> {new_size} bytes, {}",
            match change.text_omitted {
                Some(TextOmitted::DiffTooLarge) =>
                    "no text diff (the diff's text limit was reached)",
                Some(TextOmitted::NotBuilt) => "no text diff (built without text diffs)",
                _ => "no text diff (too large)",
            }
        ),
        _ => {
            let mut counts = Vec::new();
            if change.lines_added > 0 {
                counts.push(format!("+{}", change.lines_added));
            }
            if change.lines_removed > 0 {
                counts.push(format!("-{}", change.lines_removed));
            }
            if change.truncated {
                counts.push("(text truncated)".to_owned());
            }
            counts.join(" ")
        }
    };
    if detail.is_empty() {
        format!("{letter} {path}")
    } else {
        format!("{letter} {path}  {detail}")
    }
}

/// `+1 -0 ~2 files, +10 -3 lines`.
pub(crate) fn summary_line(diff: &SnapshotDiff) -> String {
    format!(
        "{}, +{} -{} lines",
        diff.summary, diff.summary.lines_added, diff.summary.lines_removed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_known_by_suffix() {
        let c = |name: &str| archive_compression(Path::new(name));
        assert_eq!(c("a.tar"), Some(Compression::None));
        assert_eq!(c("dir/a.tar.gz"), Some(Compression::Gzip));
        assert_eq!(c("A.TGZ"), Some(Compression::Gzip));
        assert_eq!(c("a.tar.bz2"), Some(Compression::Bzip2));
        assert_eq!(c("a.tbz2"), Some(Compression::Bzip2));
        assert_eq!(c("a.tar.xz"), Some(Compression::Xz));
        assert_eq!(c("a.tar.zst"), Some(Compression::Zstd));
        assert_eq!(c("a.gz"), None);
        assert_eq!(c("a.zip"), None);
        assert_eq!(c(".tar"), None);
    }

    #[test]
    fn glob_escaping_matches_only_the_path() {
        assert_eq!(escape_glob("out/a[1]*.tgz"), "out/a\\[1\\]\\*.tgz");
        let rules = SnapshotRules::new(None, &[escape_glob("x[1].tar")]).unwrap();
        drop(rules);
    }
}
