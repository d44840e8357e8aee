//! A name a session made never becomes a line of its own in what berth
//! prints: names holding a newline, a tab, a carriage return, an escape or
//! bytes that are not UTF-8 are quoted as git quotes them (C-style escapes
//! inside double quotes) in unified diff headers, diff lines and error
//! messages; plain names are printed as they are.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use session_core::Error;
use session_core::assets::ResolvedAssets;
use session_core::compression::Compression;
use session_core::diff::diff;
use session_core::snapshot::{Snapshot, SnapshotRules};
use session_core::spec::Mode;
use session_core::tree::Dir;
use session_core::workspace::{InitialContent, Workspace, WorkspaceOptions};

/// The name that once forged a file header and a hunk in a diff.
const EVIL: &str = "z\n+++ evil\n@@ -0,0 +1 @@\n+pwn";

fn snap(root: &Path, store: &Path) -> Snapshot {
    Snapshot::capture(root, &SnapshotRules::keep_all(), Compression::None, store).unwrap()
}

/// Every line of a unified diff is a header, a hunk line, a content line
/// or one of berth's own lines for changes without text; none comes from
/// a name alone.
fn assert_no_forged_lines(text: &str) {
    for line in text.lines() {
        assert!(
            !line.contains('\r') && !line.contains('\u{1b}') && !line.contains('\t'),
            "a raw control character in {line:?}"
        );
        assert_ne!(line, "+++ evil", "a forged header in:\n{text}");
        assert_ne!(line, "+pwn", "a forged hunk in:\n{text}");
    }
}

#[test]
fn unified_headers_and_change_lines_quote_names() {
    let tree = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let root = tree.path();
    fs::write(root.join("plain.txt"), "one\n").unwrap();
    fs::write(root.join("mode\tchange"), "same\n").unwrap();
    fs::write(root.join("gone\rwith cr"), "old\n").unwrap();
    let before = snap(root, store.path());

    fs::write(root.join(EVIL), "content\n").unwrap();
    fs::write(root.join("plain.txt"), "two\n").unwrap();
    fs::write(root.join("esc\u{1b}[31mred.bin"), [0u8, 1, 2]).unwrap();
    fs::set_permissions(root.join("mode\tchange"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(root.join("gone\rwith cr")).unwrap();
    // Not UTF-8: never an entry of a snapshot, so never in a diff.
    fs::write(root.join(OsStr::from_bytes(b"bad\xffname")), "x\n").unwrap();
    let after = snap(root, store.path());

    let d = diff(&before, &after).unwrap();
    let unified = d.unified();
    assert_no_forged_lines(&unified);
    assert!(
        unified.contains(
            "--- /dev/null\n+++ \"b/z\\n+++ evil\\n@@ -0,0 +1 @@\\n+pwn\"\n@@ -0,0 +1 @@\n+content\n"
        ),
        "{unified}"
    );
    assert!(
        unified.contains("--- \"a/gone\\rwith cr\"\n+++ /dev/null\n@@ -1 +0,0 @@\n-old\n"),
        "{unified}"
    );
    // Plain names as they are.
    assert!(
        unified.contains("--- a/plain.txt\n+++ b/plain.txt\n"),
        "{unified}"
    );
    assert!(
        unified.contains("mode of \"mode\\tchange\" changed 644 -> 755\n"),
        "{unified}"
    );
    assert!(
        unified.contains("Binary file \"esc\\033[31mred.bin\" created (0 -> 3 bytes)\n"),
        "{unified}"
    );
    assert_eq!(
        d.changes.len(),
        5,
        "{:?}",
        d.changes.iter().map(|c| &c.path).collect::<Vec<_>>()
    );
    // The structured diff keeps the names themselves.
    assert!(d.changes.iter().any(|c| c.path == EVIL));
}

/// Errors that name a session's path quote it: a tree too deep for a read,
/// below a directory whose name holds an escape and bytes that are not
/// UTF-8.
#[test]
fn errors_quote_the_paths_they_name() {
    let temp = tempfile::tempdir().unwrap();
    let mut workspace = Workspace::new(
        "quoted-errors",
        InitialContent::Empty,
        WorkspaceOptions {
            temp_root: Some(temp.path().to_path_buf()),
            ..WorkspaceOptions::default()
        },
        Mode::Evaluation,
        ResolvedAssets::default(),
    );
    let root = workspace.prepare().unwrap().to_path_buf();
    let weird = OsStr::from_bytes(b"\x1b[2J\xff\nx");
    let mut dir = Dir::open(&root).unwrap();
    dir.create_dir(weird, 0o755).unwrap();
    dir = dir.open_dir(weird).unwrap();
    for _ in 0..session_core::tree::MAX_DEPTH {
        dir.create_dir(OsStr::new("d"), 0o755).unwrap();
        dir = dir.open_dir(OsStr::new("d")).unwrap();
    }
    let err = workspace.get_file_contents(&["**/*"]).unwrap_err();
    assert!(matches!(err, Error::TreeBound { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("`\"\\033[2J\\377\\nx/d/d/"), "{message}");
    assert!(!message.chars().any(char::is_control), "{message:?}");

    // Any I/O error on such a path says it the same way.
    let err = Error::Io {
        action: "opening",
        path: PathBuf::from(OsStr::from_bytes(b"/w/a\nb\x1b\xfe")),
        source: std::io::ErrorKind::NotFound.into(),
    };
    assert_eq!(
        err.to_string(),
        "opening `\"/w/a\\nb\\033\\376\"`: entity not found"
    );
    let err = Error::PathEscape {
        path: EVIL.into(),
        reason: "patterns must stay inside the workspace",
    };
    assert!(!err.to_string().contains('\n'), "{err}");
    workspace.cleanup().unwrap();
}
