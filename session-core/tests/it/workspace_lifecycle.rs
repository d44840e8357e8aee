//! Workspace: prepare, reset, cleanup, file reading with containment,
//! snapshots and checkpoints.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use session_core::Error;
use session_core::assets::ResolvedAssets;
use session_core::compression::Compression;
use session_core::diff::ChangeKind;
use session_core::snapshot::SnapshotRules;
use session_core::spec::Mode;
use session_core::workspace::{FileContent, InitialContent, Workspace, WorkspaceOptions};

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

struct Fixture {
    base: tempfile::TempDir,
    temp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let base = tempfile::tempdir().unwrap();
        write(base.path(), "main.py", b"print('hi')\n");
        write(base.path(), "src/lib.py", b"x = 1\n");
        write(base.path(), "cache.pyc", b"\0\0");
        Fixture {
            base,
            temp: tempfile::tempdir().unwrap(),
        }
    }

    fn options(&self) -> WorkspaceOptions {
        WorkspaceOptions {
            rules: SnapshotRules::new(None, &["*.pyc"]).unwrap(),
            compression: Compression::Gzip,
            temp_root: Some(self.temp.path().to_path_buf()),
            ..WorkspaceOptions::default()
        }
    }

    fn workspace(&self, mode: Mode) -> Workspace {
        Workspace::new(
            "test-session",
            InitialContent::Directory(self.base.path().to_path_buf()),
            self.options(),
            mode,
            ResolvedAssets::default(),
        )
    }

    fn leftovers(&self) -> Vec<PathBuf> {
        fs::read_dir(self.temp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

#[test]
fn prepare_copies_the_base_under_the_rules_and_cleanup_removes_everything() {
    let fx = Fixture::new();
    let mut ws = fx.workspace(Mode::Evaluation);
    assert!(matches!(ws.root(), Err(Error::NotPrepared)));
    let root = ws.prepare().unwrap().to_path_buf();
    assert_eq!(
        fs::read_to_string(root.join("main.py")).unwrap(),
        "print('hi')\n"
    );
    assert!(root.join("src/lib.py").is_file());
    assert!(
        !root.join("cache.pyc").exists(),
        "ignored files are not copied"
    );
    // Nothing of berth's inside the workspace; the marker sits beside it.
    let mut names: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["main.py", "src"]);
    let marker = ws.session_dir().unwrap().join("berth-session.json");
    let marker: serde_json::Value = serde_json::from_slice(&fs::read(marker).unwrap()).unwrap();
    assert_eq!(marker["session_id"], "test-session");
    assert_eq!(marker["owner_pid"], std::process::id());
    // Only the caller may enter the session directory: what a sandbox makes
    // in its workspace (set-id files, device nodes) is out of others' reach.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(ws.session_dir().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");

    assert!(matches!(ws.prepare(), Err(Error::AlreadyPrepared(_))));
    ws.cleanup().unwrap();
    ws.cleanup().unwrap();
    assert!(!root.exists());
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    // The base directory is untouched.
    assert!(fx.base.path().join("cache.pyc").exists());
}

/// Only an empty base is made on the caller's thread, and only a session
/// directory holding its marker and an empty workspace is removed there:
/// whatever a command left anywhere in the session directory, or a
/// workspace swapped for a link, goes to the blocking pool.
#[test]
fn quick_work_is_only_the_empty_workspace() {
    let fx = Fixture::new();
    assert!(!fx.workspace(Mode::Evaluation).prepares_quickly());
    let mut ws = Workspace::new(
        "test-session",
        InitialContent::Empty,
        fx.options(),
        Mode::Evaluation,
        ResolvedAssets::default(),
    );
    assert!(ws.prepares_quickly());
    assert!(ws.removes_quickly(), "nothing prepared");
    let root = ws.prepare().unwrap().to_path_buf();
    let session_dir = root.parent().unwrap().to_path_buf();
    assert!(ws.removes_quickly());

    write(&root, "f", b"x");
    assert!(!ws.removes_quickly(), "a file in the workspace");
    fs::remove_file(root.join("f")).unwrap();
    assert!(ws.removes_quickly());

    write(&session_dir, "big/f", b"x");
    assert!(!ws.removes_quickly(), "a tree beside the workspace");
    fs::remove_dir_all(session_dir.join("big")).unwrap();

    let empty = fx.temp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    fs::rename(&root, session_dir.join("moved")).unwrap();
    symlink(&empty, &root).unwrap();
    assert!(!ws.removes_quickly(), "the workspace swapped for a link");
    fs::remove_file(&root).unwrap();
    fs::rename(session_dir.join("moved"), &root).unwrap();
    assert!(ws.removes_quickly());

    ws.update_snapshot().unwrap();
    assert!(!ws.removes_quickly(), "an archive in the session directory");
    ws.cleanup().unwrap();
    fs::remove_dir(&empty).unwrap();
    assert!(fx.leftovers().is_empty());
}

#[test]
fn drop_and_panic_leave_nothing_behind() {
    let fx = Fixture::new();
    {
        let mut ws = fx.workspace(Mode::Agent);
        ws.prepare().unwrap();
        ws.update_snapshot().unwrap();
    }
    assert!(fx.leftovers().is_empty());
    let result = std::panic::catch_unwind(|| {
        let mut ws = fx.workspace(Mode::Agent);
        ws.prepare().unwrap();
        panic!("boom");
    });
    assert!(result.is_err());
    assert!(fx.leftovers().is_empty());
}

#[test]
fn reset_restores_the_initial_state() {
    let fx = Fixture::new();
    let mut ws = fx.workspace(Mode::Evaluation);
    let root = ws.prepare().unwrap().to_path_buf();
    write(&root, "main.py", b"changed\n");
    write(&root, "new/file.txt", b"new\n");
    fs::remove_file(root.join("src/lib.py")).unwrap();
    ws.reset().unwrap();
    assert_eq!(
        fs::read_to_string(root.join("main.py")).unwrap(),
        "print('hi')\n"
    );
    assert!(root.join("src/lib.py").is_file());
    assert!(!root.join("new").exists());
}

#[test]
fn file_contents_by_glob_path_and_directory() {
    let fx = Fixture::new();
    let mut ws = fx.workspace(Mode::Evaluation);
    let root = ws.prepare().unwrap().to_path_buf();
    write(&root, ".env", b"SECRET=1\n");
    write(&root, "crlf.txt", b"a\r\nb\r\n");
    write(&root, "raw.bin", &[0xff, 0xfe, 0x00]);
    write(&root, "src/deep/more.py", b"y = 2\n");

    let got = ws.get_file_contents(&["**/*.py"]).unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["main.py", "src/deep/more.py", "src/lib.py"]
    );
    let got = ws
        .get_file_contents(&["./crlf.txt", ".env", "raw.bin", "missing.txt"])
        .unwrap();
    assert_eq!(got["crlf.txt"], FileContent::Text("a\r\nb\r\n".into()));
    assert_eq!(got[".env"], FileContent::Text("SECRET=1\n".into()));
    assert_eq!(got["raw.bin"], FileContent::Bytes(vec![0xff, 0xfe, 0x00]));
    assert_eq!(got.len(), 3);
    let got = ws.get_file_contents(&["src"]).unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["src/deep/more.py", "src/lib.py"]
    );
    // `*` crosses directories, as in snapshot rules.
    assert!(
        ws.get_file_contents(&["*.py"])
            .unwrap()
            .contains_key("src/deep/more.py")
    );
}

#[test]
fn file_contents_never_leave_the_workspace() {
    let fx = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.txt", b"top secret\n");
    let mut ws = fx.workspace(Mode::Evaluation);
    let root = ws.prepare().unwrap().to_path_buf();
    symlink(outside.path().join("secret.txt"), root.join("leak.txt")).unwrap();
    symlink(outside.path(), root.join("leakdir")).unwrap();
    symlink("main.py", root.join("alias.py")).unwrap();

    for bad in [
        "../secret.txt",
        "src/../../x",
        "/etc/passwd",
        "../*",
        "/etc/*",
    ] {
        let err = ws.get_file_contents(&[bad]).unwrap_err();
        assert!(matches!(err, Error::PathEscape { .. }), "{bad}: {err}");
    }
    let got = ws
        .get_file_contents(&["leak.txt", "leakdir/secret.txt", "leakdir", "**/*.txt", "*"])
        .unwrap();
    assert!(
        got.values().all(|c| c.as_bytes() != b"top secret\n"),
        "read through an outward symlink: {:?}",
        got.keys()
    );
    assert!(!got.contains_key("leak.txt"));
    // A symlink that stays inside is followed.
    assert_eq!(got["alias.py"], FileContent::Text("print('hi')\n".into()));
}

#[test]
fn file_size_cap() {
    let fx = Fixture::new();
    let mut options = fx.options();
    options.max_file_size = 4;
    let mut ws = Workspace::new(
        "cap",
        InitialContent::Directory(fx.base.path().to_path_buf()),
        options,
        Mode::Evaluation,
        ResolvedAssets::default(),
    );
    ws.prepare().unwrap();
    let err = ws.get_file_contents(&["main.py"]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::FileTooLarge {
                size: 12,
                limit: 4,
                ..
            }
        ),
        "{err}"
    );
}

/// What one read returns is capped in total too: files within the
/// per-file cap add up until one would cross the total, which names it.
/// A file two patterns match counts once.
#[test]
fn total_size_cap() {
    let fx = Fixture::new();
    let mut options = fx.options();
    options.max_file_size = 100;
    options.max_total_size = 250;
    let mut ws = Workspace::new(
        "cap",
        InitialContent::Directory(fx.base.path().to_path_buf()),
        options,
        Mode::Evaluation,
        ResolvedAssets::default(),
    );
    let root = ws.prepare().unwrap().to_path_buf();
    for name in ["a.txt", "b.txt", "c.txt"] {
        write(&root, name, &[b'x'; 100]);
    }
    let got = ws
        .get_file_contents(&["a.txt", "./a.txt", "*.txt", "b.txt"])
        .unwrap_err();
    assert!(
        matches!(
            &got,
            Error::ReadTooLarge { path, total: 300, limit: 250 } if path == "c.txt"
        ),
        "{got}"
    );
    let got = ws
        .get_file_contents(&["a.txt", "./a.txt", "a.txt", "b.txt"])
        .unwrap();
    assert_eq!(got.len(), 2);
}

#[test]
fn snapshots_checkpoints_and_restore() {
    let fx = Fixture::new();
    let out = tempfile::tempdir().unwrap();
    let mut ws = fx.workspace(Mode::Agent);
    let root = ws.prepare().unwrap().to_path_buf();
    let initial = ws.current_snapshot().unwrap().checksum();

    write(&root, "result.txt", b"42\n");
    let checkpoint = ws.finish_checkpoint(out.path()).unwrap();
    assert_eq!(checkpoint.diff.changes.len(), 1);
    assert_eq!(checkpoint.diff.changes[0].path, "result.txt");
    assert_eq!(checkpoint.diff.changes[0].kind, ChangeKind::Created);
    assert_eq!(
        fs::read_to_string(out.path().join("result.txt")).unwrap(),
        "42\n"
    );
    assert_eq!(
        fs::read_to_string(out.path().join("main.py")).unwrap(),
        "print('hi')\n"
    );
    // The checkpoint became current: the next diff starts from it.
    write(&root, "result.txt", b"43\n");
    let next = ws.finish_checkpoint(out.path()).unwrap();
    assert_eq!(next.diff.changes[0].kind, ChangeKind::Modified);

    let previous = ws.update_snapshot().unwrap();
    assert_eq!(previous.checksum(), next.snapshot.checksum());
    assert_ne!(previous.checksum(), initial);

    // A directory replaces its namesake whole; files are copied over.
    let restore = tempfile::tempdir().unwrap();
    write(restore.path(), "src/only.py", b"only\n");
    write(restore.path(), "main.py", b"restored\n");
    ws.restore_from_snapshot_dir(restore.path()).unwrap();
    assert!(!root.join("src/lib.py").exists());
    assert_eq!(
        fs::read_to_string(root.join("src/only.py")).unwrap(),
        "only\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("main.py")).unwrap(),
        "restored\n"
    );

    let mut eval = fx.workspace(Mode::Evaluation);
    eval.prepare().unwrap();
    assert!(matches!(
        eval.finish_checkpoint(out.path()),
        Err(Error::AgentModeOnly { .. })
    ));
}

#[test]
fn saved_archives_outlive_the_session() {
    let fx = Fixture::new();
    let saved = tempfile::tempdir().unwrap();
    let mut options = fx.options();
    options.archive_save_dir = Some(saved.path().to_path_buf());
    let mut ws = Workspace::new(
        "saved",
        InitialContent::Directory(fx.base.path().to_path_buf()),
        options,
        Mode::Agent,
        ResolvedAssets::default(),
    );
    ws.prepare().unwrap();
    let snap = ws.snapshot().unwrap();
    ws.cleanup().unwrap();
    assert!(snap.archive_path().is_file());
    assert!(fx.leftovers().is_empty());
}

#[test]
fn an_empty_base_writes_no_archive_until_a_snapshot_is_taken() {
    let fx = Fixture::new();
    let out = tempfile::tempdir().unwrap();
    let mut ws = Workspace::new(
        "test-session",
        InitialContent::Empty,
        fx.options(),
        Mode::Agent,
        ResolvedAssets::default(),
    );
    let root = ws.prepare().unwrap().to_path_buf();
    let session_dir = ws.session_dir().unwrap().to_path_buf();
    let mut names: Vec<String> = fs::read_dir(&session_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "marker and workspace only: {names:?}");
    assert!(names.contains(&"workspace".to_owned()));

    let initial = ws.initial_snapshot().unwrap().clone();
    assert!(!initial.has_archive());
    assert!(initial.manifest().entries().is_empty());
    // The same checksum as a real capture of an empty directory.
    let empty_dir = tempfile::tempdir().unwrap();
    let archives = tempfile::tempdir().unwrap();
    let captured = session_core::snapshot::Snapshot::capture(
        empty_dir.path(),
        &SnapshotRules::new::<&str>(None, &[]).unwrap(),
        Compression::Gzip,
        archives.path(),
    )
    .unwrap();
    assert_eq!(initial.checksum(), captured.checksum());
    assert!(
        initial
            .read_entries(["anything"], u64::MAX)
            .unwrap()
            .is_empty()
    );

    // Diffs, checkpoints and resets work from it.
    write(&root, "made/here.txt", b"new\n");
    let checkpoint = ws.finish_checkpoint(out.path()).unwrap();
    assert_eq!(checkpoint.diff.changes.len(), 1);
    assert_eq!(checkpoint.diff.changes[0].path, "made/here.txt");
    assert_eq!(checkpoint.diff.changes[0].kind, ChangeKind::Created);
    assert!(checkpoint.snapshot.has_archive());
    ws.reset().unwrap();
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
    ws.cleanup().unwrap();
    assert!(fx.leftovers().is_empty());
}
