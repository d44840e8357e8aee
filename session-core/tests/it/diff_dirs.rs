//! `diff_dirs` compares two live trees in place: its result must be exactly
//! that of a diff of snapshots of the same trees, whatever changed between
//! them (JSON form, unified text and summary all compared).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use session_core::compression::Compression;
use session_core::diff::{DiffOptions, SnapshotDiff, diff_dirs, diff_dirs_with, diff_with};
use session_core::snapshot::{Snapshot, SnapshotRules};

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn chmod(root: &Path, rel: &str, mode: u32) {
    fs::set_permissions(root.join(rel), fs::Permissions::from_mode(mode)).unwrap();
}

fn text(lines: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..lines {
        out.extend_from_slice(format!("line {i} of text {seed}\n").as_bytes());
    }
    out
}

/// The diff of snapshots of both trees, as `berth diff` of two directories
/// computed it before trees were compared in place.
fn through_snapshots(old: &Path, new: &Path, options: &DiffOptions) -> SnapshotDiff {
    let store = tempfile::tempdir().unwrap();
    let capture = |root: &Path| {
        Snapshot::capture(
            root,
            &SnapshotRules::keep_all(),
            Compression::None,
            store.path(),
        )
        .unwrap()
    };
    diff_with(&capture(old), &capture(new), options).unwrap()
}

fn assert_same(old: &Path, new: &Path, options: &DiffOptions) -> SnapshotDiff {
    let expected = through_snapshots(old, new, options);
    let got = diff_dirs_with(old, new, options).unwrap();
    assert_eq!(
        serde_json::to_string_pretty(&got).unwrap(),
        serde_json::to_string_pretty(&expected).unwrap()
    );
    assert_eq!(got.unified(), expected.unified());
    assert_eq!(got.summary, expected.summary);
    got
}

/// Two trees that differ in every way a diff reports, and in ways it must
/// not (equal files, equal large files, sockets and FIFOs, names that are
/// not UTF-8).
fn every_kind_of_change(old: &Path, new: &Path) {
    for root in [old, new] {
        write(root, "same.txt", b"same\n");
        write(root, "dir/deep/same.txt", &text(50, 1));
        write(root, "big-same.bin", &vec![7u8; 700 << 10]);
        fs::create_dir_all(root.join("empty-both")).unwrap();
        symlink("same.txt", root.join("link-same")).unwrap();
        write(root, "a-b/x", b"order\n");
        write(root, "a/b", b"order\n");
        write(root, "a.b", b"order\n");
    }
    // Same size, one line changed; different size; text to binary.
    write(old, "edit.txt", &text(40, 1));
    let mut edited = text(40, 1);
    edited[200] = b'X';
    write(new, "edit.txt", &edited);
    write(old, "grow.txt", b"one\ntwo\n");
    write(new, "grow.txt", b"one\ntwo\nthree\n");
    write(old, "turns-binary.dat", b"text for now\n");
    write(new, "turns-binary.dat", &[0, 159, 146, 150]);
    // A large file that differs only in its last chunk.
    let mut big = vec![1u8; 600 << 10];
    write(old, "big-diff.bin", &big);
    *big.last_mut().unwrap() = 2;
    write(new, "big-diff.bin", &big);
    // Created, deleted, renamed (the same content under a new name).
    write(new, "dir/new.txt", b"hello\n");
    write(old, "dir/gone.txt", b"bye\n");
    write(old, "moved-from.txt", b"moving content\n");
    write(new, "sub/moved-to.txt", b"moving content\n");
    // Modes: only the mode, and mode with content.
    for root in [old, new] {
        write(root, "script.sh", b"echo\n");
    }
    chmod(new, "script.sh", 0o755);
    write(old, "both.sh", b"echo 1\n");
    write(new, "both.sh", b"echo 2\n");
    chmod(new, "both.sh", 0o700);
    // Kinds: a file that became a link, a directory or an empty
    // directory, and the other way round.
    write(old, "becomes-link", b"file\n");
    symlink("same.txt", new.join("becomes-link")).unwrap();
    write(old, "becomes-dir", b"file\n");
    write(new, "becomes-dir/inside.txt", b"inside\n");
    write(old, "becomes-empty-dir", b"file\n");
    fs::create_dir(new.join("becomes-empty-dir")).unwrap();
    fs::create_dir(old.join("empty-then-full")).unwrap();
    write(new, "empty-then-full/f", b"f\n");
    write(old, "full-then-empty/f", b"f\n");
    fs::create_dir(new.join("full-then-empty")).unwrap();
    fs::create_dir(old.join("empty-mode")).unwrap();
    fs::create_dir(new.join("empty-mode")).unwrap();
    chmod(new, "empty-mode", 0o700);
    symlink("a", old.join("link-retarget")).unwrap();
    symlink("b", new.join("link-retarget")).unwrap();
    symlink("dir", old.join("link-to-dir")).unwrap();
    write(new, "link-to-dir/x", b"x\n");
    // Whole subtrees on one side.
    write(old, "only-old/a/b/c.txt", b"c\n");
    fs::create_dir_all(old.join("only-old/empty")).unwrap();
    write(new, "only-new/x/y.txt", b"y\n");
    // Left out of snapshots: a FIFO, and names that are not UTF-8.
    nix_mkfifo(&new.join("fifo"));
    let bad = OsStr::from_bytes(b"bad-\xff");
    fs::write(new.join(bad), b"not utf-8\n").unwrap();
    fs::create_dir(old.join(bad)).unwrap();
    write(&old.join(bad), "inside", b"x\n");
    // A directory holding only what is left out is not empty.
    fs::create_dir(new.join("only-fifo")).unwrap();
    nix_mkfifo(&new.join("only-fifo/f"));
}

fn nix_mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

#[test]
fn dirs_diff_exactly_as_their_snapshots_do() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    fs::create_dir_all(&old).unwrap();
    fs::create_dir_all(&new).unwrap();
    every_kind_of_change(&old, &new);
    let d = assert_same(&old, &new, &DiffOptions::default());
    assert!(d.summary.renamed >= 1, "{:?}", d.summary);
    assert!(d.changes.iter().any(|c| c.path == "big-diff.bin"));
    assert!(!d.changes.iter().any(|c| c.path.starts_with("big-same")));
    // The other way round, and each tree against itself.
    assert_same(&new, &old, &DiffOptions::default());
    assert!(diff_dirs(&old, &old).unwrap().is_empty());
    assert!(diff_dirs(&new, &new).unwrap().is_empty());
}

#[test]
fn dirs_diff_within_the_same_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    for i in 0..20 {
        write(&old, &format!("f{i:02}.txt"), &text(30 + i, 1));
        write(&new, &format!("f{i:02}.txt"), &text(30 + i, 2));
    }
    write(&old, "large.txt", &text(4000, 1));
    write(&new, "large.txt", &text(4000, 2));
    let options = DiffOptions {
        max_text_file_size: 64 << 10,
        max_text_total: 16 << 10,
        detect_renames: false,
        ..DiffOptions::default()
    };
    let d = assert_same(&old, &new, &options);
    assert!(d.changes.iter().any(|c| c.text_omitted.is_some()));
}

#[test]
fn an_empty_tree_against_a_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    fs::create_dir_all(&old).unwrap();
    write(&new, "a/b.txt", b"b\n");
    write(&new, "c.txt", b"c\n");
    fs::create_dir_all(new.join("d/e")).unwrap();
    assert_eq!(
        assert_same(&old, &new, &DiffOptions::default())
            .summary
            .created,
        3
    );
    assert_eq!(
        assert_same(&new, &old, &DiffOptions::default())
            .summary
            .deleted,
        3
    );
}
