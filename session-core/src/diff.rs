//! Diffs between two snapshots.
//!
//! A diff compares manifests first: entries with equal hashes are skipped
//! without reading their bytes, so its cost follows what changed, not the
//! size of the tree. Changed text files get a unified diff (Myers, 3 lines
//! of context, GNU hunk headers) with exact line counts; binary files are
//! reported with their sizes and hashes.
//!
//! # Bounds
//!
//! What a diff reads and holds is bounded whatever the snapshots hold, so
//! a command that writes a 100 GiB file (or an archive that unpacks to
//! one) costs a diff no more memory than a small one:
//!
//! * A changed file gets a unified diff only when both sides are at most
//!   [`DiffOptions::max_text_file_size`] (default
//!   [`DEFAULT_MAX_TEXT_FILE_SIZE`], 4 MiB), and only while the sizes of
//!   the files read whole for text stay within
//!   [`DiffOptions::max_text_total`] (default [`DEFAULT_MAX_TEXT_TOTAL`],
//!   32 MiB, both sides counted), in path order. Those are read whole.
//! * Of any other changed file only the first [`BINARY_CHECK_BYTES`]
//!   (8 KiB) of each side are read, which is what binary detection looks
//!   at. A binary file is reported as binary; a text file as changed with
//!   its sizes and the reason it has no text ([`TextOmitted`]), the way
//!   `diff` reports `Binary files differ`.
//! * Entries are read one at a time ([`Snapshot::visit_entries`]): an
//!   entry's bytes are dropped once classified, the old side's text is held
//!   only until the new side's is read, so memory holds at most the text
//!   budget, the unified texts made from it, and one entry.
//! * Finding minimal diffs takes at most [`DiffOptions::time_per_file`]
//!   per file and [`DiffOptions::time_total`] for the whole diff; past
//!   either, the diff of a file is still correct (maybe longer than
//!   minimal) and is found in time linear in the file's size.
//!
//! Unified texts need the `text-diffs` feature (on by default; a backend
//! plugin's build of this crate leaves it off). Without it every text file
//! that changed is reported as [`TextOmitted::NotBuilt`], and
//! [`unified_diff`] does not exist.

use std::collections::{HashMap, VecDeque};
use std::fmt;
#[cfg(feature = "text-diffs")]
use std::fmt::Write as _;
use std::io;
use std::time::Duration;
#[cfg(feature = "text-diffs")]
use std::time::Instant;

use serde::Serialize;
#[cfg(feature = "text-diffs")]
use similar::{Algorithm, DiffOp, DiffTag, capture_diff_slices_deadline, group_diff_ops};

use crate::error::Result;
use crate::paths::quote_name;
use crate::snapshot::{ContentHash, EntryKind, ManifestEntry, Snapshot, SnapshotManifest};

mod dirs;

pub use dirs::{diff_dirs, diff_dirs_with};

/// How a diff is computed.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Lines of context around each change.
    pub context: usize,
    /// Most lines of unified text kept per file; the counts stay exact and
    /// the change says `truncated` beyond it.
    pub max_lines_per_file: usize,
    /// Time allowed to find a minimal diff of one file; past it the diff is
    /// still correct but may be longer than minimal.
    pub time_per_file: Duration,
    /// Time allowed to find minimal diffs for all files together (reading
    /// the archives does not count); past it every further file gets a
    /// correct diff found in linear time.
    pub time_total: Duration,
    /// Largest size, on either side, of a file that gets a unified diff;
    /// a larger one is reported with its sizes
    /// ([`TextOmitted::FileTooLarge`]).
    pub max_text_file_size: u64,
    /// Most bytes read whole for unified diffs over the whole diff (the
    /// sizes of both sides of each file, in path order); files beyond it
    /// are reported with their sizes ([`TextOmitted::DiffTooLarge`]).
    pub max_text_total: u64,
    /// Report a delete and a create of identical content as a rename.
    pub detect_renames: bool,
}

/// The default [`DiffOptions::max_text_file_size`]: 4 MiB.
pub const DEFAULT_MAX_TEXT_FILE_SIZE: u64 = 4 << 20;

/// The default [`DiffOptions::max_text_total`]: 32 MiB.
pub const DEFAULT_MAX_TEXT_TOTAL: u64 = 32 << 20;

/// How much of each side of a changed file binary detection reads when
/// the file gets no unified diff: the part [`is_binary`] looks at.
pub const BINARY_CHECK_BYTES: u64 = 8 << 10;

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            context: 3,
            max_lines_per_file: 10_000,
            time_per_file: Duration::from_secs(2),
            time_total: Duration::from_secs(5),
            max_text_file_size: DEFAULT_MAX_TEXT_FILE_SIZE,
            max_text_total: DEFAULT_MAX_TEXT_TOTAL,
            detect_renames: true,
        }
    }
}

/// Why a changed text file has no unified diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextOmitted {
    /// One side is larger than [`DiffOptions::max_text_file_size`].
    FileTooLarge,
    /// The diff had already read [`DiffOptions::max_text_total`] bytes of
    /// text (or would have gone beyond it with this file).
    DiffTooLarge,
    /// This build of `session-core` has no `text-diffs` feature.
    NotBuilt,
}

/// What happened to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The path exists only in the new snapshot.
    Created,
    /// The path exists only in the old snapshot.
    Deleted,
    /// The content changed (the mode may have changed too).
    Modified,
    /// The path changed kind (a file became a symlink or a directory, ...).
    TypeChanged,
    /// Only the permission bits changed.
    ModeChanged,
    /// Content identical to a deleted path appeared under a new path.
    Renamed,
}

/// One side of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryState {
    /// File, symlink or empty directory.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Content hash.
    pub hash: ContentHash,
}

impl From<&ManifestEntry> for EntryState {
    fn from(entry: &ManifestEntry) -> Self {
        EntryState {
            kind: entry.kind,
            mode: entry.mode,
            size: entry.size,
            hash: entry.hash,
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    /// The path (the new path for a rename).
    pub path: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The old path of a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    /// The entry before, if it existed.
    pub old: Option<EntryState>,
    /// The entry after, if it exists.
    pub new: Option<EntryState>,
    /// Whether either side is binary (then there is no unified text).
    pub is_binary: bool,
    /// The unified diff, with `---`/`+++` headers, for text content changes.
    /// A path that holds a control character, a quote or bytes that are
    /// not UTF-8 is quoted in the headers as git quotes it
    /// ([`crate::paths::quote_name`]: `--- "a/x\ny"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unified_diff: Option<String>,
    /// Lines added (exact, even when the text is truncated).
    pub lines_added: u64,
    /// Lines removed (exact, even when the text is truncated).
    pub lines_removed: u64,
    /// Whether `unified_diff` was cut at the per-file line cap.
    pub truncated: bool,
    /// Why a changed text file has no `unified_diff` (and no line counts):
    /// it was too large to be read whole. `None` for binary files, which
    /// have no text anyway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_omitted: Option<TextOmitted>,
}

/// Counts over a whole diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiffSummary {
    /// Paths created.
    pub created: usize,
    /// Paths deleted.
    pub deleted: usize,
    /// Paths modified, type-changed, mode-changed or renamed.
    pub modified: usize,
    /// Of `modified`, how many were renames.
    pub renamed: usize,
    /// Lines added over all text files.
    pub lines_added: u64,
    /// Lines removed over all text files.
    pub lines_removed: u64,
}

impl fmt::Display for DiffSummary {
    /// `+2 -1 ~3 files`: created, deleted, changed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.created + self.deleted + self.modified;
        write!(
            f,
            "+{} -{} ~{} file{}",
            self.created,
            self.deleted,
            self.modified,
            if total == 1 { "" } else { "s" }
        )
    }
}

/// The changes between two snapshots, sorted by path.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotDiff {
    /// Every changed path.
    pub changes: Vec<FileChange>,
    /// Counts.
    pub summary: DiffSummary,
}

impl SnapshotDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// All text diffs concatenated, plus one line per binary, type or mode
    /// change, in the manner of `diff -ruN`; paths that need it are quoted
    /// ([`crate::paths::quote_name`]), so every line is one line of the
    /// diff whatever the names.
    pub fn unified(&self) -> String {
        let mut out = Vec::new();
        self.write_unified(&mut out)
            .expect("writing into a Vec does not fail");
        String::from_utf8(out).expect("diff text is UTF-8")
    }

    /// Writes [`SnapshotDiff::unified`] to `out` change by change, without
    /// making one string of it all. Fails only when `out` does.
    pub fn write_unified(&self, out: &mut dyn io::Write) -> io::Result<()> {
        for change in &self.changes {
            match &change.unified_diff {
                Some(text) => out.write_all(text.as_bytes())?,
                None => writeln!(out, "{}", describe(change))?,
            }
        }
        Ok(())
    }
}

fn describe(change: &FileChange) -> String {
    let path = shown(&change.path);
    match change.kind {
        ChangeKind::Renamed => format!(
            "renamed {} -> {path}",
            change.old_path.as_deref().map_or("?".into(), shown),
        ),
        ChangeKind::ModeChanged => format!(
            "mode of {path} changed {:o} -> {:o}",
            change.old.as_ref().map_or(0, |s| s.mode),
            change.new.as_ref().map_or(0, |s| s.mode)
        ),
        ChangeKind::TypeChanged => format!(
            "{path} changed from {} to {}",
            change.old.as_ref().map_or(EntryKind::File, |s| s.kind),
            change.new.as_ref().map_or(EntryKind::File, |s| s.kind)
        ),
        _ if change.is_binary => format!(
            "Binary file {path} {} ({} -> {} bytes)",
            verb(change.kind),
            change.old.as_ref().map_or(0, |s| s.size),
            change.new.as_ref().map_or(0, |s| s.size)
        ),
        _ if change.text_omitted.is_some() => format!(
            "Text file {path} {} ({} -> {} bytes), {}",
            verb(change.kind),
            change.old.as_ref().map_or(0, |s| s.size),
            change.new.as_ref().map_or(0, |s| s.size),
            match change.text_omitted {
                Some(TextOmitted::DiffTooLarge) =>
                    "no text diff: the diff's text limit was reached",
                Some(TextOmitted::NotBuilt) => "no text diff: built without text diffs",
                _ => "no text diff: too large",
            }
        ),
        _ => format!("{path} {:?}", change.kind),
    }
}

/// A path of a change as a line of the diff shows it ([`quote_name`]).
fn shown(path: &str) -> std::borrow::Cow<'_, str> {
    quote_name(path.as_bytes())
}

fn verb(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Created => "created",
        ChangeKind::Deleted => "deleted",
        _ => "differs",
    }
}

/// Diffs two snapshots with the default options.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Result<SnapshotDiff> {
    diff_with(old, new, &DiffOptions::default())
}

/// Diffs two snapshots. Only the entries whose hash, kind or mode differ are
/// read, each archive at most once, and of them only what the bounds of the
/// module documentation allow.
///
/// Fails when an archive cannot be read or an entry read whole does not
/// match its manifest ([`crate::Error::Archive`]).
pub fn diff_with(old: &Snapshot, new: &Snapshot, options: &DiffOptions) -> Result<SnapshotDiff> {
    let changes = compare_manifests(old.manifest(), new.manifest(), options.detect_renames);
    let mut reading = Reading::plan(&changes, options);
    old.visit_entries(reading.wanted(&changes, Side::Old), |entry, bytes| {
        reading.take_old(&changes, &entry.path, bytes);
        Ok(())
    })?;
    new.visit_entries(reading.wanted(&changes, Side::New), |entry, bytes| {
        reading.take_new(&changes, &entry.path, &bytes);
        Ok(())
    })?;
    Ok(finish(changes, reading))
}

/// Fills each change in with what was read of it, and counts.
fn finish(mut changes: Vec<FileChange>, mut reading: Reading<'_>) -> SnapshotDiff {
    reading.finish_deleted(&changes);
    for (change, read) in changes.iter_mut().zip(reading.reads) {
        let Some(read) = read else { continue };
        change.is_binary = read.binary;
        if read.binary {
            continue;
        }
        change.text_omitted = read.omitted;
        if let Some(text) = read.text {
            change.lines_added = text.lines_added;
            change.lines_removed = text.lines_removed;
            change.truncated = text.truncated;
            change.unified_diff = Some(text.text);
        }
    }
    let summary = summarize(&changes);
    SnapshotDiff { changes, summary }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Old,
    New,
}

/// What a diff reads of one changed file and what it made of it.
#[derive(Default)]
struct Read {
    /// Why the file is not read whole for a unified diff; `None` when it is.
    omitted: Option<TextOmitted>,
    /// Either side is binary.
    binary: bool,
    /// The old side's text, held until the new side is read.
    old_text: Option<Vec<u8>>,
    /// The unified diff, once both sides were read.
    text: Option<UnifiedText>,
}

/// The reading of the changed files' content: planned from the manifests
/// alone, then fed each entry's bytes as the archives yield them.
struct Reading<'o> {
    options: &'o DiffOptions,
    /// By change index; `None` for changes without content to compare
    /// (renames, type and mode changes).
    reads: Vec<Option<Read>>,
    /// What is left of [`DiffOptions::time_total`]: the time spent seeking
    /// minimal diffs so far is taken from it (reading archives is not).
    time_left: Duration,
}

impl<'o> Reading<'o> {
    /// Decides what to read of each change: files within the size bounds
    /// whole, in path order while the total allows, others only their
    /// heads.
    fn plan(changes: &[FileChange], options: &'o DiffOptions) -> Reading<'o> {
        let mut budget = options.max_text_total;
        let reads = changes
            .iter()
            .map(|change| {
                if !wants_content(change) {
                    return None;
                }
                let old = change.old.as_ref().map_or(0, |s| s.size);
                let new = change.new.as_ref().map_or(0, |s| s.size);
                let omitted = if !cfg!(feature = "text-diffs") {
                    Some(TextOmitted::NotBuilt)
                } else if old.max(new) > options.max_text_file_size {
                    Some(TextOmitted::FileTooLarge)
                } else if old.saturating_add(new) > budget {
                    Some(TextOmitted::DiffTooLarge)
                } else {
                    budget -= old + new;
                    None
                };
                Some(Read {
                    omitted,
                    ..Read::default()
                })
            })
            .collect();
        Reading {
            options,
            reads,
            time_left: options.time_total,
        }
    }

    /// The paths to read on one side, each with how much of it to read.
    fn wanted<'c>(
        &self,
        changes: &'c [FileChange],
        side: Side,
    ) -> impl Iterator<Item = (&'c str, u64)> + use<'c> {
        let limits: Vec<(usize, u64)> = self
            .reads
            .iter()
            .enumerate()
            .filter_map(|(index, read)| {
                let read = read.as_ref()?;
                Some((
                    index,
                    match read.omitted {
                        None => u64::MAX,
                        Some(_) => BINARY_CHECK_BYTES,
                    },
                ))
            })
            .collect();
        limits.into_iter().filter_map(move |(index, limit)| {
            let change = &changes[index];
            let present = match side {
                Side::Old => change.old.is_some(),
                Side::New => change.new.is_some(),
            };
            present.then_some((change.path.as_str(), limit))
        })
    }

    /// The read of the change at `path` (changes are sorted by path).
    fn read_mut<'r>(
        reads: &'r mut [Option<Read>],
        changes: &[FileChange],
        path: &str,
    ) -> Option<(usize, &'r mut Read)> {
        let index = changes
            .binary_search_by(|c| c.path.as_bytes().cmp(path.as_bytes()))
            .ok()?;
        Some((index, reads[index].as_mut()?))
    }

    /// The old side of a file: its head is classified; its whole text is
    /// kept for the new side, unless it is binary.
    fn take_old(&mut self, changes: &[FileChange], path: &str, bytes: Vec<u8>) {
        let Some((_, read)) = Self::read_mut(&mut self.reads, changes, path) else {
            return;
        };
        if is_binary(&bytes) {
            read.binary = true;
        } else if read.omitted.is_none() {
            read.old_text = Some(bytes);
        }
    }

    /// The new side of a file: classified, and diffed against the old
    /// side's text when both are text; the old text is dropped either way.
    fn take_new(&mut self, changes: &[FileChange], path: &str, bytes: &[u8]) {
        let options = self.options;
        let Some((index, read)) = Self::read_mut(&mut self.reads, changes, path) else {
            return;
        };
        let before = read.old_text.take().unwrap_or_default();
        if read.binary || is_binary(bytes) {
            read.binary = true;
            return;
        }
        if read.omitted.is_none() {
            let time_left = &mut self.time_left;
            read.text = Some(text_of(&changes[index], &before, bytes, options, time_left));
        }
    }

    /// Deleted files have no new side to wait for: diffed against nothing.
    fn finish_deleted(&mut self, changes: &[FileChange]) {
        for (index, change) in changes.iter().enumerate() {
            if change.new.is_some() {
                continue;
            }
            let options = self.options;
            let Some(read) = self.reads[index].as_mut() else {
                continue;
            };
            if let Some(before) = read.old_text.take() {
                read.text = Some(text_of(change, &before, &[], options, &mut self.time_left));
            }
        }
    }
}

/// Whether a change compares file content (created, deleted or modified
/// files, not renames, type or mode changes).
fn wants_content(change: &FileChange) -> bool {
    matches!(
        change.kind,
        ChangeKind::Created | ChangeKind::Deleted | ChangeKind::Modified
    ) && change
        .old
        .as_ref()
        .is_none_or(|s| s.kind == EntryKind::File)
        && change
            .new
            .as_ref()
            .is_none_or(|s| s.kind == EntryKind::File)
}

/// Without text diffs, `Reading::plan` omits the text of every change, so
/// nothing asks for one.
#[cfg(not(feature = "text-diffs"))]
fn text_of(
    _change: &FileChange,
    _before: &[u8],
    _after: &[u8],
    _options: &DiffOptions,
    _time_left: &mut Duration,
) -> UnifiedText {
    UnifiedText {
        text: String::new(),
        lines_added: 0,
        lines_removed: 0,
        truncated: false,
    }
}

/// The unified diff of one change, with its `a/`, `b/` or `/dev/null`
/// labels; a minimal one is sought for [`DiffOptions::time_per_file`] at
/// most, and no longer than `time_left`, which the time taken comes off.
#[cfg(feature = "text-diffs")]
fn text_of(
    change: &FileChange,
    before: &[u8],
    after: &[u8],
    options: &DiffOptions,
    time_left: &mut Duration,
) -> UnifiedText {
    // Quoted as git quotes them when the name needs it: a name is never
    // a way to add a header or a hunk to the diff.
    let label =
        |prefix: &str| quote_name(format!("{prefix}{}", change.path).as_bytes()).into_owned();
    let old_label = if change.old.is_some() {
        label("a/")
    } else {
        "/dev/null".to_owned()
    };
    let new_label = if change.new.is_some() {
        label("b/")
    } else {
        "/dev/null".to_owned()
    };
    let started = Instant::now();
    let deadline = started.checked_add(options.time_per_file.min(*time_left));
    let text = unified_diff_until(before, after, &old_label, &new_label, options, deadline);
    *time_left = time_left.saturating_sub(started.elapsed());
    text
}

/// Classifies every path present in either manifest, reading nothing.
fn compare_manifests(
    old: &SnapshotManifest,
    new: &SnapshotManifest,
    detect_renames: bool,
) -> Vec<FileChange> {
    let mut changes = Vec::new();
    compare_entries(old.entries(), new.entries(), &mut changes);
    if detect_renames {
        pair_renames(&mut changes);
    }
    changes
}

/// Classifies every path of two lists of entries, each sorted by path (as
/// bytes), adding a change to `changes` for each path that differs.
fn compare_entries(a: &[ManifestEntry], b: &[ManifestEntry], changes: &mut Vec<FileChange>) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let order = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.path.as_bytes().cmp(y.path.as_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                changes.push(change(&a[i].path, ChangeKind::Deleted, Some(&a[i]), None));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                changes.push(change(&b[j].path, ChangeKind::Created, None, Some(&b[j])));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&a[i], &b[j]);
                let kind = if x.kind != y.kind {
                    Some(ChangeKind::TypeChanged)
                } else if x.hash != y.hash {
                    Some(ChangeKind::Modified)
                } else if x.mode != y.mode {
                    Some(ChangeKind::ModeChanged)
                } else {
                    None
                };
                if let Some(kind) = kind {
                    changes.push(change(&x.path, kind, Some(x), Some(y)));
                }
                i += 1;
                j += 1;
            }
        }
    }
}

fn change(
    path: &str,
    kind: ChangeKind,
    old: Option<&ManifestEntry>,
    new: Option<&ManifestEntry>,
) -> FileChange {
    FileChange {
        path: path.to_owned(),
        kind,
        old_path: None,
        old: old.map(EntryState::from),
        new: new.map(EntryState::from),
        is_binary: false,
        unified_diff: None,
        lines_added: 0,
        lines_removed: 0,
        truncated: false,
        text_omitted: None,
    }
}

/// Turns a deleted + created pair with the same non-empty content into one
/// rename. Pairs are matched in path order, so the result is deterministic.
fn pair_renames(changes: &mut Vec<FileChange>) {
    let mut deleted: HashMap<(ContentHash, EntryKind), VecDeque<usize>> = HashMap::new();
    for (index, c) in changes.iter().enumerate() {
        if let (ChangeKind::Deleted, Some(old)) = (c.kind, &c.old)
            && old.size > 0
            && old.kind != EntryKind::Dir
        {
            deleted
                .entry((old.hash, old.kind))
                .or_default()
                .push_back(index);
        }
    }
    let mut consumed = Vec::new();
    for index in 0..changes.len() {
        let c = &changes[index];
        let Some(new) = c.new.as_ref().filter(|_| c.kind == ChangeKind::Created) else {
            continue;
        };
        let Some(candidates) = deleted.get_mut(&(new.hash, new.kind)) else {
            continue;
        };
        let Some(from) = candidates.pop_front() else {
            continue;
        };
        let old_path = changes[from].path.clone();
        let old_state = changes[from].old.clone();
        let renamed = &mut changes[index];
        renamed.kind = ChangeKind::Renamed;
        renamed.old_path = Some(old_path);
        renamed.old = old_state;
        consumed.push(from);
    }
    // One pass, not a `remove` per rename: that would be quadratic in a
    // tree where many files moved.
    let mut gone = vec![false; changes.len()];
    for index in consumed {
        gone[index] = true;
    }
    let mut index = 0;
    changes.retain(|_| {
        index += 1;
        !gone[index - 1]
    });
}

fn summarize(changes: &[FileChange]) -> DiffSummary {
    let mut summary = DiffSummary::default();
    for c in changes {
        match c.kind {
            ChangeKind::Created => summary.created += 1,
            ChangeKind::Deleted => summary.deleted += 1,
            ChangeKind::Renamed => {
                summary.modified += 1;
                summary.renamed += 1;
            }
            _ => summary.modified += 1,
        }
        summary.lines_added += c.lines_added;
        summary.lines_removed += c.lines_removed;
    }
    summary
}

/// Whether content is binary: a NUL byte in the first 8 KiB, or more than
/// 30% control characters there.
pub fn is_binary(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    if head.is_empty() {
        return false;
    }
    if head.contains(&0) {
        return true;
    }
    let control = head
        .iter()
        .filter(|&&b| {
            (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x08 | 0x1b)) || b == 0x7f
        })
        .count();
    control * 10 > head.len() * 3
}

/// A unified diff of two texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnifiedText {
    /// The text, with `---`/`+++` headers; empty when the inputs are equal.
    pub text: String,
    /// Lines added.
    pub lines_added: u64,
    /// Lines removed.
    pub lines_removed: u64,
    /// Whether the text was cut at `max_lines_per_file`.
    pub truncated: bool,
}

/// Computes a unified diff in GNU format: `@@ -l,s +l,s @@` hunk headers
/// (`,s` omitted when it is 1), `\ No newline at end of file` after a last
/// line without one, and exactly one newline per content line. Bytes that
/// are not UTF-8 are shown with replacement characters.
#[cfg(feature = "text-diffs")]
pub fn unified_diff(
    old: &[u8],
    new: &[u8],
    old_label: &str,
    new_label: &str,
    options: &DiffOptions,
) -> UnifiedText {
    let deadline = Instant::now().checked_add(options.time_per_file);
    unified_diff_until(old, new, old_label, new_label, options, deadline)
}

/// [`unified_diff`], seeking a minimal diff until `deadline` at most.
#[cfg(feature = "text-diffs")]
fn unified_diff_until(
    old: &[u8],
    new: &[u8],
    old_label: &str,
    new_label: &str,
    options: &DiffOptions,
    deadline: Option<Instant>,
) -> UnifiedText {
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    // Lines end at `\n` only, as GNU diff has them.
    let old: Vec<&str> = old.split_inclusive('\n').collect();
    let new: Vec<&str> = new.split_inclusive('\n').collect();
    let ops = line_ops(&old, &new, deadline);

    let mut result = UnifiedText {
        text: String::new(),
        lines_added: 0,
        lines_removed: 0,
        truncated: false,
    };
    for op in &ops {
        let (_, old_range, new_range) = op.as_tag_tuple();
        match op.tag() {
            DiffTag::Equal => {}
            _ => {
                result.lines_removed += old_range.len() as u64;
                result.lines_added += new_range.len() as u64;
            }
        }
    }
    if result.lines_added == 0 && result.lines_removed == 0 {
        return result;
    }

    let mut out = String::new();
    let _ = writeln!(out, "--- {old_label}");
    let _ = writeln!(out, "+++ {new_label}");
    let mut lines = 0usize;
    'groups: for group in group_diff_ops(ops, options.context) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let old_range = first.old_range().start..last.old_range().end;
        let new_range = first.new_range().start..last.new_range().end;
        let _ = writeln!(
            out,
            "@@ -{} +{} @@",
            hunk_range(old_range.start, old_range.len()),
            hunk_range(new_range.start, new_range.len())
        );
        for op in &group {
            let (tag, old_range, new_range) = op.as_tag_tuple();
            let (removed, added, kept) = match tag {
                DiffTag::Equal => (&[][..], &[][..], &old[old_range]),
                _ => (&old[old_range], &new[new_range], &[][..]),
            };
            let marked = kept
                .iter()
                .map(|line| (' ', line))
                .chain(removed.iter().map(|line| ('-', line)))
                .chain(added.iter().map(|line| ('+', line)));
            for (mark, line) in marked {
                if lines >= options.max_lines_per_file {
                    result.truncated = true;
                    break 'groups;
                }
                lines += 1;
                out.push(mark);
                out.push_str(line);
                if !line.ends_with('\n') {
                    out.push_str("\n\\ No newline at end of file\n");
                }
            }
        }
    }
    result.text = out;
    result
}

/// The operations turning the lines `old` into the lines `new`, minimal
/// when found before `deadline`.
///
/// Lines are compared as numbers (each distinct line gets one), and lines
/// found on one side only are set aside before Myers' algorithm runs, as
/// GNU diff does: they cannot be part of a common subsequence, so the
/// result is just as minimal, and a file rewritten from top to bottom
/// costs linear time instead of Myers' quadratic worst case.
#[cfg(feature = "text-diffs")]
fn line_ops<'a>(old: &[&'a str], new: &[&'a str], deadline: Option<Instant>) -> Vec<DiffOp> {
    let mut numbers: HashMap<&'a str, u32> = HashMap::with_capacity(old.len() + new.len());
    let mut number = |line: &'a str| {
        let next = numbers.len() as u32;
        *numbers.entry(line).or_insert(next)
    };
    let old_numbers: Vec<u32> = old.iter().map(|line| number(line)).collect();
    let new_numbers: Vec<u32> = new.iter().map(|line| number(line)).collect();
    let mut sides = vec![0u8; numbers.len()];
    for &n in &old_numbers {
        sides[n as usize] |= 1;
    }
    for &n in &new_numbers {
        sides[n as usize] |= 2;
    }
    // The lines found on both sides, with where each is in its file.
    let shared = |numbers: &[u32]| -> (Vec<u32>, Vec<usize>) {
        numbers
            .iter()
            .enumerate()
            .filter(|(_, n)| sides[**n as usize] == 3)
            .map(|(index, n)| (*n, index))
            .unzip()
    };
    let (old_shared, old_at) = shared(&old_numbers);
    let (new_shared, new_at) = shared(&new_numbers);
    let mut equal: Vec<(usize, usize, usize)> = Vec::new();
    for op in capture_diff_slices_deadline(Algorithm::Myers, &old_shared, &new_shared, deadline) {
        let DiffOp::Equal {
            old_index,
            new_index,
            len,
        } = op
        else {
            continue;
        };
        for k in 0..len {
            let (o, n) = (old_at[old_index + k], new_at[new_index + k]);
            match equal.last_mut() {
                Some((lo, ln, run)) if *lo + *run == o && *ln + *run == n => *run += 1,
                _ => equal.push((o, n, 1)),
            }
        }
    }
    // Between two runs of equal lines, what is left of each side was
    // removed or added.
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    for (o, n, len) in equal.into_iter().chain([(old.len(), new.len(), 0)]) {
        match (o > i, n > j) {
            (true, true) => ops.push(DiffOp::Replace {
                old_index: i,
                old_len: o - i,
                new_index: j,
                new_len: n - j,
            }),
            (true, false) => ops.push(DiffOp::Delete {
                old_index: i,
                old_len: o - i,
                new_index: j,
            }),
            (false, true) => ops.push(DiffOp::Insert {
                old_index: i,
                new_index: j,
                new_len: n - j,
            }),
            (false, false) => {}
        }
        if len > 0 {
            ops.push(DiffOp::Equal {
                old_index: o,
                new_index: n,
                len,
            });
        }
        (i, j) = (o + len, n + len);
    }
    ops
}

/// A GNU hunk range: `start,len` with a 1-based start, `start` alone when
/// the length is 1, and the line before the hunk when it is empty.
#[cfg(feature = "text-diffs")]
fn hunk_range(start: usize, len: usize) -> String {
    match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{len}", start + 1),
    }
}

#[cfg(all(test, feature = "text-diffs"))]
mod tests {
    use super::*;

    fn check(old: &str, new: &str, expected: &str) {
        let got = unified_diff(
            old.as_bytes(),
            new.as_bytes(),
            "a/f",
            "b/f",
            &DiffOptions::default(),
        );
        assert_eq!(got.text, expected, "\n--- got ---\n{}", got.text);
    }

    #[test]
    fn modification_in_gnu_format() {
        check(
            "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\n",
            "one\ntwo\nthree\nFOUR\nfive\nsix\nseven\neight\n",
            "--- a/f\n+++ b/f\n@@ -1,7 +1,7 @@\n one\n two\n three\n-four\n+FOUR\n five\n six\n seven\n",
        );
    }

    #[test]
    fn missing_newline_at_end() {
        check(
            "a\nb",
            "a\nc\n",
            "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n",
        );
        check(
            "x\n",
            "x",
            "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-x\n+x\n\\ No newline at end of file\n",
        );
    }

    #[test]
    fn created_and_emptied_files_use_zero_ranges() {
        check("", "a\nb\n", "--- a/f\n+++ b/f\n@@ -0,0 +1,2 @@\n+a\n+b\n");
        check("a\n", "", "--- a/f\n+++ b/f\n@@ -1 +0,0 @@\n-a\n");
    }

    #[test]
    fn lines_that_look_like_headers_still_count() {
        let got = unified_diff(
            b"keep\n--old\n",
            b"keep\n++new\n+++ also\n",
            "a/f",
            "b/f",
            &DiffOptions::default(),
        );
        assert_eq!((got.lines_added, got.lines_removed), (2, 1));
        assert_eq!(
            got.text,
            "--- a/f\n+++ b/f\n@@ -1,2 +1,3 @@\n keep\n---old\n+++new\n++++ also\n"
        );
    }

    #[test]
    fn truncation_keeps_counts_exact() {
        let old: String = (0..100).map(|i| format!("{i}\n")).collect();
        let options = DiffOptions {
            max_lines_per_file: 10,
            ..DiffOptions::default()
        };
        let got = unified_diff(old.as_bytes(), b"", "a/f", "/dev/null", &options);
        assert!(got.truncated);
        assert_eq!(got.lines_removed, 100);
        assert_eq!(
            got.text
                .lines()
                .filter(|l| l.starts_with('-') && !l.starts_with("---"))
                .count(),
            10
        );
    }

    #[test]
    fn binary_detection() {
        assert!(!is_binary(b""));
        assert!(!is_binary(b"plain text\n\twith tabs\r\n"));
        assert!(is_binary(b"abc\0def"));
        assert!(is_binary(&[1, 2, 3, 4, b'a', b'b']));
        assert!(!is_binary("héllo wörld".as_bytes()));
    }

    #[test]
    fn summary_display() {
        let s = DiffSummary {
            created: 2,
            deleted: 1,
            modified: 3,
            ..DiffSummary::default()
        };
        assert_eq!(s.to_string(), "+2 -1 ~3 files");
    }
}
