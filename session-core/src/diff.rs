//! Diffs between two snapshots.
//!
//! A diff compares manifests first: entries with equal hashes are skipped
//! without reading their bytes, so its cost follows what changed, not the
//! size of the tree. Changed text files get a unified diff (Myers, 3 lines
//! of context, GNU hunk headers) with exact line counts; binary files are
//! reported with their sizes and hashes.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use similar::{Algorithm, ChangeTag, TextDiff};

use crate::error::Result;
use crate::snapshot::{ContentHash, EntryKind, ManifestEntry, Snapshot, SnapshotManifest};

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
    /// Report a delete and a create of identical content as a rename.
    pub detect_renames: bool,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            context: 3,
            max_lines_per_file: 10_000,
            time_per_file: Duration::from_secs(2),
            detect_renames: true,
        }
    }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unified_diff: Option<String>,
    /// Lines added (exact, even when the text is truncated).
    pub lines_added: u64,
    /// Lines removed (exact, even when the text is truncated).
    pub lines_removed: u64,
    /// Whether `unified_diff` was cut at the per-file line cap.
    pub truncated: bool,
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
    /// change, in the manner of `diff -ruN`.
    pub fn unified(&self) -> String {
        let mut out = String::new();
        for change in &self.changes {
            if let Some(text) = &change.unified_diff {
                out.push_str(text);
            } else {
                let _ = writeln!(out, "{}", describe(change));
            }
        }
        out
    }
}

fn describe(change: &FileChange) -> String {
    match change.kind {
        ChangeKind::Renamed => format!(
            "renamed {} -> {}",
            change.old_path.as_deref().unwrap_or("?"),
            change.path
        ),
        ChangeKind::ModeChanged => format!(
            "mode of {} changed {:o} -> {:o}",
            change.path,
            change.old.as_ref().map_or(0, |s| s.mode),
            change.new.as_ref().map_or(0, |s| s.mode)
        ),
        ChangeKind::TypeChanged => format!(
            "{} changed from {} to {}",
            change.path,
            change.old.as_ref().map_or(EntryKind::File, |s| s.kind),
            change.new.as_ref().map_or(EntryKind::File, |s| s.kind)
        ),
        _ if change.is_binary => format!(
            "Binary file {} {} ({} -> {} bytes)",
            change.path,
            match change.kind {
                ChangeKind::Created => "created",
                ChangeKind::Deleted => "deleted",
                _ => "differs",
            },
            change.old.as_ref().map_or(0, |s| s.size),
            change.new.as_ref().map_or(0, |s| s.size)
        ),
        _ => format!("{} {:?}", change.path, change.kind),
    }
}

/// Diffs two snapshots with the default options.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Result<SnapshotDiff> {
    diff_with(old, new, &DiffOptions::default())
}

/// Diffs two snapshots. Only the entries whose hash, kind or mode differ are
/// read, each archive at most once.
pub fn diff_with(old: &Snapshot, new: &Snapshot, options: &DiffOptions) -> Result<SnapshotDiff> {
    let mut changes = compare_manifests(old.manifest(), new.manifest(), options.detect_renames);
    let wants_content = |c: &FileChange| {
        matches!(
            c.kind,
            ChangeKind::Created | ChangeKind::Deleted | ChangeKind::Modified
        ) && c.old.as_ref().is_none_or(|s| s.kind == EntryKind::File)
            && c.new.as_ref().is_none_or(|s| s.kind == EntryKind::File)
    };
    let old_bytes = old.read_entries(
        changes
            .iter()
            .filter(|c| wants_content(c) && c.old.is_some())
            .map(|c| c.path.as_str()),
    )?;
    let new_bytes = new.read_entries(
        changes
            .iter()
            .filter(|c| wants_content(c) && c.new.is_some())
            .map(|c| c.path.as_str()),
    )?;
    for change in changes.iter_mut().filter(|c| wants_content(c)) {
        let before = lookup(&old_bytes, change.old.is_some(), &change.path);
        let after = lookup(&new_bytes, change.new.is_some(), &change.path);
        if is_binary(before) || is_binary(after) {
            change.is_binary = true;
            continue;
        }
        let old_label = if change.old.is_some() {
            format!("a/{}", change.path)
        } else {
            "/dev/null".to_owned()
        };
        let new_label = if change.new.is_some() {
            format!("b/{}", change.path)
        } else {
            "/dev/null".to_owned()
        };
        let text = unified_diff(before, after, &old_label, &new_label, options);
        change.lines_added = text.lines_added;
        change.lines_removed = text.lines_removed;
        change.truncated = text.truncated;
        change.unified_diff = Some(text.text);
    }
    let summary = summarize(&changes);
    Ok(SnapshotDiff { changes, summary })
}

fn lookup<'a>(bytes: &'a HashMap<String, Vec<u8>>, exists: bool, path: &str) -> &'a [u8] {
    if exists {
        bytes.get(path).map_or(&[], Vec::as_slice)
    } else {
        &[]
    }
}

/// Classifies every path present in either manifest, reading nothing.
fn compare_manifests(
    old: &SnapshotManifest,
    new: &SnapshotManifest,
    detect_renames: bool,
) -> Vec<FileChange> {
    let mut changes = Vec::new();
    let (mut i, mut j) = (0, 0);
    let (a, b) = (old.entries(), new.entries());
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
    if detect_renames {
        pair_renames(&mut changes);
    }
    changes
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
    consumed.sort_unstable();
    for index in consumed.into_iter().rev() {
        changes.remove(index);
    }
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
pub fn unified_diff(
    old: &[u8],
    new: &[u8],
    old_label: &str,
    new_label: &str,
    options: &DiffOptions,
) -> UnifiedText {
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .timeout(options.time_per_file)
        .diff_lines(old.as_ref(), new.as_ref());

    let mut result = UnifiedText {
        text: String::new(),
        lines_added: 0,
        lines_removed: 0,
        truncated: false,
    };
    for op in diff.ops() {
        for change in diff.iter_changes(op) {
            match change.tag() {
                ChangeTag::Insert => result.lines_added += 1,
                ChangeTag::Delete => result.lines_removed += 1,
                ChangeTag::Equal => {}
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
    'groups: for group in diff.grouped_ops(options.context) {
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
            for change in diff.iter_changes(op) {
                if lines >= options.max_lines_per_file {
                    result.truncated = true;
                    break 'groups;
                }
                lines += 1;
                out.push(match change.tag() {
                    ChangeTag::Equal => ' ',
                    ChangeTag::Delete => '-',
                    ChangeTag::Insert => '+',
                });
                let value = change.value();
                out.push_str(value);
                if !value.ends_with('\n') {
                    out.push_str("\n\\ No newline at end of file\n");
                }
            }
        }
    }
    result.text = out;
    result
}

/// A GNU hunk range: `start,len` with a 1-based start, `start` alone when
/// the length is 1, and the line before the hunk when it is empty.
fn hunk_range(start: usize, len: usize) -> String {
    match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{len}", start + 1),
    }
}

#[cfg(test)]
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
