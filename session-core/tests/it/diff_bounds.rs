//! What a diff reads is bounded: large files are read only as far as
//! binary detection needs, text is read whole only within a budget, and
//! rewritten files are diffed exactly.

use std::fs;
use std::path::Path;

use session_core::compression::Compression;
use session_core::diff::{
    BINARY_CHECK_BYTES, ChangeKind, DiffOptions, TextOmitted, diff, diff_with,
};
use session_core::snapshot::{Snapshot, SnapshotRules};

fn write(root: &Path, rel: &str, content: &[u8]) {
    fs::write(root.join(rel), content).unwrap();
}

fn snap(root: &Path, store: &Path) -> Snapshot {
    Snapshot::capture(root, &SnapshotRules::keep_all(), Compression::None, store).unwrap()
}

/// `count` numbered lines, `tag` in each.
fn lines(tag: &str, count: usize) -> Vec<u8> {
    (0..count)
        .map(|i| format!("{tag} line {i:06}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Damages, in an uncompressed archive, the bytes of every file in
/// `paths` beyond `BINARY_CHECK_BYTES`: a whole read of one of them fails
/// its hash check, a read of its head does not.
fn damage_tails(snap: &Snapshot, root_contents: &[Vec<u8>]) {
    let mut bytes = fs::read(snap.archive_path()).unwrap();
    for content in root_contents {
        let tail = &content[content.len() - 32..];
        let at = bytes.windows(32).position(|w| w == tail).unwrap();
        assert!(at > BINARY_CHECK_BYTES as usize);
        bytes[at] ^= 0x20;
    }
    fs::write(snap.archive_path(), bytes).unwrap();
}

/// Files larger than the text limit are classified from their first
/// 8 KiB only: a text one is reported with its sizes and why it has no
/// text, a binary one as binary. Their tails are damaged in both archives,
/// so the diff succeeding shows they were never read whole; small files
/// still get their text.
#[test]
fn large_files_are_read_only_as_far_as_binary_detection() {
    let tree = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let root = tree.path();
    let old_text = lines("old", 5000);
    let mut old_binary = lines("bin", 5000);
    old_binary[10] = 0;
    write(root, "big.txt", &old_text);
    write(root, "big.bin", &old_binary);
    write(root, "small.txt", b"one\n");
    let before = snap(root, store.path());

    let new_text = lines("new", 5000);
    let mut new_binary = lines("nib", 5000);
    new_binary[10] = 0;
    write(root, "big.txt", &new_text);
    write(root, "big.bin", &new_binary);
    write(root, "small.txt", b"two\n");
    let after = snap(root, store.path());

    damage_tails(&before, &[old_text.clone(), old_binary]);
    damage_tails(&after, &[new_text.clone(), new_binary]);
    assert!(
        before.read_entries(["big.txt"], u64::MAX).is_err(),
        "the damage is found by a whole read"
    );

    let options = DiffOptions {
        max_text_file_size: 64 << 10,
        ..DiffOptions::default()
    };
    let d = diff_with(&before, &after, &options).unwrap();
    let by_path = |p: &str| d.changes.iter().find(|c| c.path == p).unwrap();

    let text = by_path("big.txt");
    assert_eq!(text.kind, ChangeKind::Modified);
    assert!(!text.is_binary);
    assert_eq!(text.text_omitted, Some(TextOmitted::FileTooLarge));
    assert!(text.unified_diff.is_none());
    assert_eq!((text.lines_added, text.lines_removed), (0, 0));

    let binary = by_path("big.bin");
    assert!(binary.is_binary);
    assert_eq!(binary.text_omitted, None);

    let small = by_path("small.txt");
    assert_eq!(
        small.unified_diff.as_deref(),
        Some("--- a/small.txt\n+++ b/small.txt\n@@ -1 +1 @@\n-one\n+two\n")
    );

    let unified = d.unified();
    assert!(
        unified.contains(&format!(
            "Text file big.txt differs ({} -> {} bytes), no text diff: too large\n",
            old_text.len(),
            new_text.len()
        )),
        "{unified}"
    );
    assert!(unified.contains("Binary file big.bin differs"), "{unified}");
    let json = serde_json::to_value(text).unwrap();
    assert_eq!(json["text_omitted"], "file_too_large");
}

/// The text budget goes to files in path order while it lasts; a file it
/// cannot cover is reported with its sizes, and a later, smaller file that
/// still fits gets its text.
#[test]
fn the_text_budget_is_spent_in_path_order() {
    let tree = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let root = tree.path();
    write(root, "a.txt", &lines("a", 10));
    write(root, "b.txt", &lines("b", 10));
    write(root, "c.txt", &lines("c", 30));
    let before = snap(root, store.path());
    write(root, "a.txt", &lines("A", 10));
    write(root, "b.txt", &lines("B", 10));
    write(root, "c.txt", &lines("C", 30));
    write(root, "d.txt", &lines("d", 5));
    let after = snap(root, store.path());

    let line = lines("a", 1).len() as u64;
    let options = DiffOptions {
        // a and b (20 lines a side), then not c (60), then d (5).
        max_text_total: line * 45,
        ..DiffOptions::default()
    };
    let d = diff_with(&before, &after, &options).unwrap();
    let omitted: Vec<(&str, Option<TextOmitted>, u64)> = d
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.text_omitted, c.lines_added))
        .collect();
    assert_eq!(
        omitted,
        [
            ("a.txt", None, 10),
            ("b.txt", None, 10),
            ("c.txt", Some(TextOmitted::DiffTooLarge), 0),
            ("d.txt", None, 5),
        ]
    );
    assert!(
        d.unified()
            .contains("no text diff: the diff's text limit was reached"),
        "{}",
        d.unified()
    );
    // The defaults cover all of it.
    let d = diff(&before, &after).unwrap();
    assert!(d.changes.iter().all(|c| c.unified_diff.is_some()));
}

/// A file rewritten from top to bottom, and one where unique lines are
/// interleaved with shared ones, get exact counts and a correct diff.
#[test]
fn rewritten_and_interleaved_files_diff_exactly() {
    let tree = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let root = tree.path();
    write(root, "rewritten.txt", &lines("before", 20_000));
    write(
        root,
        "mixed.txt",
        b"keep 1\nold a\nkeep 2\nkeep 3\nold b\nkeep 4\n",
    );
    let before = snap(root, store.path());
    write(root, "rewritten.txt", &lines("after", 15_000));
    write(
        root,
        "mixed.txt",
        b"new x\nkeep 1\nkeep 2\nnew y\nkeep 3\nkeep 4\nnew z",
    );
    let after = snap(root, store.path());

    let d = diff(&before, &after).unwrap();
    let by_path = |p: &str| d.changes.iter().find(|c| c.path == p).unwrap();
    let rewritten = by_path("rewritten.txt");
    assert_eq!(
        (rewritten.lines_added, rewritten.lines_removed),
        (15_000, 20_000)
    );
    assert!(rewritten.truncated, "over the default 10,000 lines kept");
    assert_eq!(
        by_path("mixed.txt").unified_diff.as_deref(),
        Some(
            "--- a/mixed.txt\n+++ b/mixed.txt\n@@ -1,6 +1,7 @@\n+new x\n keep 1\n-old a\n keep 2\n+new y\n keep 3\n-old b\n keep 4\n+new z\n\\ No newline at end of file\n"
        )
    );
}
