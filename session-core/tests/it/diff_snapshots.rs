//! Diffs between snapshots: classification, text, binaries, and proof that
//! unchanged entries are never read.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use session_core::compression::Compression;
use session_core::diff::{ChangeKind, diff};
use session_core::snapshot::{Snapshot, SnapshotRules};

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn snap(root: &Path, store: &Path, compression: Compression) -> Snapshot {
    Snapshot::capture(root, &SnapshotRules::keep_all(), compression, store).unwrap()
}

#[test]
fn every_kind_of_change_is_classified() {
    let tree = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let root = tree.path();
    write(root, "same.txt", b"same\n");
    write(root, "edit.txt", b"one\ntwo\n");
    write(root, "gone.txt", b"bye\n");
    write(root, "moved_from.txt", b"moving content\n");
    write(root, "script.sh", b"echo\n");
    write(root, "becomes_link", b"file\n");
    write(root, "turns_binary.dat", b"text for now\n");
    write(root, "blob.bin", &[0, 1, 2, 3]);
    let before = snap(root, store.path(), Compression::Gzip);

    write(root, "edit.txt", b"one\nTWO\n");
    fs::remove_file(root.join("gone.txt")).unwrap();
    fs::rename(root.join("moved_from.txt"), root.join("moved_to.txt")).unwrap();
    fs::set_permissions(root.join("script.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(root.join("becomes_link")).unwrap();
    symlink("same.txt", root.join("becomes_link")).unwrap();
    write(root, "turns_binary.dat", &[0, 159, 146, 150]);
    write(root, "blob.bin", &[0, 1, 2, 3, 4, 5]);
    write(root, "new.txt", b"hello\n");
    let after = snap(root, store.path(), Compression::Gzip);

    let d = diff(&before, &after).unwrap();
    let kinds: Vec<(&str, ChangeKind)> = d
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("becomes_link", ChangeKind::TypeChanged),
            ("blob.bin", ChangeKind::Modified),
            ("edit.txt", ChangeKind::Modified),
            ("gone.txt", ChangeKind::Deleted),
            ("moved_to.txt", ChangeKind::Renamed),
            ("new.txt", ChangeKind::Created),
            ("script.sh", ChangeKind::ModeChanged),
            ("turns_binary.dat", ChangeKind::Modified),
        ]
    );
    let by_path = |p: &str| d.changes.iter().find(|c| c.path == p).unwrap();
    assert_eq!(
        by_path("moved_to.txt").old_path.as_deref(),
        Some("moved_from.txt")
    );

    let blob = by_path("blob.bin");
    assert!(blob.is_binary && blob.unified_diff.is_none());
    assert_eq!(
        (
            blob.old.as_ref().unwrap().size,
            blob.new.as_ref().unwrap().size
        ),
        (4, 6)
    );
    assert_ne!(
        blob.old.as_ref().unwrap().hash,
        blob.new.as_ref().unwrap().hash
    );
    assert!(by_path("turns_binary.dat").is_binary);

    let edit = by_path("edit.txt");
    assert_eq!(
        edit.unified_diff.as_deref().unwrap(),
        "--- a/edit.txt\n+++ b/edit.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n"
    );
    assert_eq!((edit.lines_added, edit.lines_removed), (1, 1));
    let created = by_path("new.txt");
    assert_eq!(
        created.unified_diff.as_deref().unwrap(),
        "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hello\n"
    );
    let gone = by_path("gone.txt");
    assert_eq!(
        gone.unified_diff.as_deref().unwrap(),
        "--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
    );

    assert_eq!(d.summary.to_string(), "+1 -1 ~6 files");
    assert_eq!((d.summary.lines_added, d.summary.lines_removed), (2, 2));
    assert!(diff(&after, &after).unwrap().is_empty());
}

/// The unchanged files' bytes are destroyed in both archives; the diff still
/// succeeds, so it never read them. Reading a destroyed entry does fail, so
/// the test would catch a diff that did.
#[test]
fn unchanged_entries_are_never_read() {
    let tree = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let root = tree.path();
    for i in 0..100 {
        write(
            root,
            &format!("f{i:03}.txt"),
            format!("unchanged file {i:03}\n").as_bytes(),
        );
    }
    let before = snap(root, store.path(), Compression::None);
    write(root, "f050.txt", b"changed\n");
    let after = snap(root, store.path(), Compression::None);

    for archive in [before.archive_path(), after.archive_path()] {
        let mut bytes = fs::read(archive).unwrap();
        for i in (0..100).filter(|i| *i != 50) {
            let needle = format!("unchanged file {i:03}\n");
            let at = bytes
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap();
            bytes[at..at + needle.len()].fill(b'#');
        }
        fs::write(archive, bytes).unwrap();
    }
    assert!(
        before.read_entries(["f001.txt"], u64::MAX).is_err(),
        "destroyed bytes are detected when read"
    );

    let d = diff(&before, &after).unwrap();
    assert_eq!(d.changes.len(), 1);
    assert_eq!(d.changes[0].path, "f050.txt");
    assert_eq!(
        d.changes[0].unified_diff.as_deref().unwrap(),
        "--- a/f050.txt\n+++ b/f050.txt\n@@ -1 +1 @@\n-unchanged file 050\n+changed\n"
    );
}
