//! Trees of hostile shapes (deep, long-named, closed), and what crosses out
//! of a session: capture and reads stop at the bounds with a typed error,
//! removal has none, extraction keeps only permission bits.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use session_core::Error;
use session_core::assets::ResolvedAssets;
use session_core::compression::Compression;
use session_core::snapshot::{ExtractMode, Snapshot, SnapshotRules};
use session_core::spec::Mode;
use session_core::tree::{self, Dir, MAX_DEPTH, MAX_PATH_BYTES, TreeLimit};
use session_core::workspace::{InitialContent, Workspace, WorkspaceOptions};

/// Makes a chain of `depth` directories named `name` below `root` through
/// descriptors (no path longer than one name is ever resolved), with a
/// file `leaf` at the bottom.
fn chain(root: &Path, name: &str, depth: usize) {
    let mut dir = Dir::open(root).unwrap();
    for _ in 0..depth {
        dir.create_dir(OsStr::new(name), 0o755).unwrap();
        dir = dir.open_dir(OsStr::new(name)).unwrap();
    }
    dir.open_file(
        OsStr::new("leaf"),
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        0o644,
    )
    .unwrap();
}

fn capture(root: &Path, store: &Path) -> session_core::Result<Snapshot> {
    Snapshot::capture(root, &SnapshotRules::keep_all(), Compression::Gzip, store)
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, Iterator::count)
}

#[test]
fn capture_stops_at_the_depth_bound_naming_the_path() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    chain(src.path(), "d", 3000);
    let err = capture(src.path(), store.path()).unwrap_err();
    match &err {
        Error::TreeBound {
            root,
            path,
            depth,
            limit,
            ..
        } => {
            assert_eq!(root, &fs::canonicalize(src.path()).unwrap());
            assert_eq!(*depth, MAX_DEPTH + 1);
            assert_eq!(*limit, TreeLimit::Depth);
            assert!(path.starts_with("d/d/d/") && path.ends_with('…'), "{path}");
            assert!(path.len() < 130, "shortened for display: {path}");
        }
        other => panic!("{other}"),
    }
    let message = err.to_string();
    assert!(message.contains("1025 levels"), "{message}");
    assert!(
        message.contains("limit of 1024 directory levels"),
        "{message}"
    );
    assert_eq!(count(store.path()), 0, "a failed capture leaves no archive");
    tree::remove_tree(&src.path().join("d")).unwrap();
}

#[test]
fn capture_stops_at_the_path_length_bound() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    // 17 names of 255 bytes: 4,351 bytes of path, 17 levels deep.
    chain(src.path(), &"n".repeat(255), 17);
    let err = capture(src.path(), store.path()).unwrap_err();
    match err {
        Error::TreeBound {
            depth,
            bytes,
            limit,
            ..
        } => {
            assert_eq!(limit, TreeLimit::PathBytes);
            assert!(bytes > MAX_PATH_BYTES && depth <= 17, "{bytes} {depth}");
        }
        other => panic!("{other}"),
    }
    tree::remove_tree(&src.path().join("n".repeat(255))).unwrap();
}

/// A tree at the bound goes through, and extracts to a destination whose
/// full paths are longer than `PATH_MAX`: nothing is resolved from the
/// root.
#[test]
fn a_tree_at_the_bounds_round_trips_below_a_long_destination() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    chain(src.path(), "d", MAX_DEPTH - 1);
    let snapshot = capture(src.path(), store.path()).unwrap();
    assert_eq!(snapshot.manifest().len(), 1);

    let far = tempfile::tempdir().unwrap();
    let long_name = "p".repeat(250);
    chain(far.path(), &long_name, 12);
    let mut dest = far.path().to_path_buf();
    for _ in 0..12 {
        dest.push(&long_name);
    }
    assert!(dest.as_os_str().len() > 3000);
    // `dest` itself is opened by path once; below it, by descriptors.
    let dest_dir = Dir::open(&dest).unwrap();
    drop(dest_dir);
    snapshot.extract(&dest, ExtractMode::Mirror).unwrap();
    let again = capture(&dest, store.path()).unwrap();
    assert_eq!(again.checksum(), snapshot.checksum());
    tree::remove_tree(&src.path().join("d")).unwrap();
    tree::remove_tree(&far.path().join(&long_name)).unwrap();
}

#[test]
fn extraction_keeps_only_permission_bits_and_writes_new_files() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    for (name, mode) in [("setuid", 0o4755), ("setgid", 0o2711), ("plain", 0o640)] {
        fs::write(src.path().join(name), name).unwrap();
        fs::set_permissions(src.path().join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    for (name, mode) in [("sticky", 0o1777), ("group", 0o2750)] {
        fs::create_dir(src.path().join(name)).unwrap();
        fs::set_permissions(src.path().join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    let snapshot = capture(src.path(), store.path()).unwrap();
    let recorded: Vec<(&str, u32)> = snapshot
        .manifest()
        .entries()
        .iter()
        .map(|e| (e.path.as_str(), e.mode))
        .collect();
    assert_eq!(
        recorded,
        [
            ("group", 0o750),
            ("plain", 0o640),
            ("setgid", 0o711),
            ("setuid", 0o755),
            ("sticky", 0o777)
        ],
        "only the permission bits are recorded"
    );

    // A file already at a member's path is replaced by a new one, not
    // written through: a hard link to a file elsewhere keeps that file
    // intact.
    let victim = outside.path().join("victim");
    fs::write(&victim, "keep me").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(&victim, dest.path().join("setuid")).unwrap();
    snapshot.extract(dest.path(), ExtractMode::Merge).unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
    let mode_of = |name: &str| fs::symlink_metadata(dest.path().join(name)).unwrap().mode();
    assert_eq!(mode_of("setuid") & 0o7777, 0o755);
    assert_eq!(mode_of("setgid") & 0o7777, 0o711);
    assert_eq!(mode_of("plain") & 0o7777, 0o640);
    assert_eq!(mode_of("sticky") & 0o7777, 0o777);
    assert_eq!(mode_of("group") & 0o7777, 0o750);
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    for name in ["setuid", "setgid", "plain", "sticky", "group"] {
        let meta = fs::symlink_metadata(dest.path().join(name)).unwrap();
        assert_eq!(meta.uid(), me, "{name} belongs to whoever extracted it");
    }
    assert_eq!(
        capture(dest.path(), store.path()).unwrap().checksum(),
        snapshot.checksum(),
        "what was extracted captures to the same checksum"
    );
}

#[test]
fn an_archive_from_elsewhere_loses_its_set_id_bits_and_owners() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("foreign.tar");
    {
        let mut builder = tar::Builder::new(fs::File::create(&archive).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(2);
        header.set_mode(0o6755);
        header.set_uid(4242);
        header.set_gid(4242);
        header.set_cksum();
        builder
            .append_data(&mut header, "tool", &b"#!"[..])
            .unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o1777);
        header.set_cksum();
        builder
            .append_data(&mut header, "shared/", std::io::empty())
            .unwrap();
        builder.finish().unwrap();
    }
    let snapshot = Snapshot::open_archive(&archive, Compression::None).unwrap();
    let dest = dir.path().join("out");
    snapshot.extract(&dest, ExtractMode::Mirror).unwrap();
    let tool = fs::symlink_metadata(dest.join("tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o755);
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    assert_eq!(tool.uid(), unsafe { libc::geteuid() });
    let shared = fs::symlink_metadata(dest.join("shared")).unwrap();
    assert_eq!(shared.mode() & 0o7777, 0o777);
}

#[test]
fn an_archive_that_is_not_one_tree_is_refused_by_the_strict_reader() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, members: &[(&str, tar::EntryType)]| {
        let path = dir.path().join(name);
        let mut builder = tar::Builder::new(fs::File::create(&path).unwrap());
        for (member, kind) in members {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(0);
            header.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                header.set_link_name("elsewhere").unwrap();
            }
            header.set_cksum();
            builder
                .append_data(&mut header, member, std::io::empty())
                .unwrap();
        }
        builder.finish().unwrap();
        path
    };
    use tar::EntryType::{Directory, Regular, Symlink};
    for (what, members, named) in [
        (
            "the same file twice",
            vec![("d", Regular), ("d", Regular)],
            "d",
        ),
        (
            "a file and a directory",
            vec![("d", Regular), ("d/", Directory)],
            "d",
        ),
        (
            "a file and something in it",
            vec![("d", Regular), ("d/x", Regular)],
            "d/x",
        ),
        (
            "a link and something in it",
            vec![("l", Symlink), ("l/x", Regular)],
            "l/x",
        ),
    ] {
        let archive = write("bad.tar", &members);
        match Snapshot::open_tree_archive(&archive, Compression::None) {
            Err(Error::UnsafeArchiveMember { member, .. }) => assert_eq!(member, named, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        // The lenient reader keeps the last of each path, as `tar -x`.
        if what == "the same file twice" {
            Snapshot::open_archive(&archive, Compression::None).unwrap();
        }
    }
    let fine = write(
        "fine.tar",
        &[("d/", Directory), ("d/x", Regular), ("e", Regular)],
    );
    let snapshot = Snapshot::open_tree_archive(&fine, Compression::None).unwrap();
    assert_eq!(snapshot.manifest().len(), 2);
}

fn workspace(temp: &Path, base: Option<&Path>) -> Workspace {
    Workspace::new(
        "shapes",
        base.map_or(InitialContent::Empty, |b| {
            InitialContent::Directory(b.to_path_buf())
        }),
        WorkspaceOptions {
            temp_root: Some(temp.to_path_buf()),
            ..WorkspaceOptions::default()
        },
        Mode::Agent,
        ResolvedAssets::default(),
    )
}

/// Whatever a command leaves in a workspace, the session leaves nothing:
/// a tree far deeper than any bound, closed directories, a chain of
/// names whose full path is ten times `PATH_MAX`.
#[test]
fn cleanup_removes_trees_of_any_shape() {
    let temp = tempfile::tempdir().unwrap();
    let mut ws = workspace(temp.path(), None);
    let root = ws.prepare().unwrap().to_path_buf();
    chain(&root, "d", 30_000);
    chain(&root, &"n".repeat(255), 160);
    fs::create_dir_all(root.join("closed/inner")).unwrap();
    fs::write(root.join("closed/inner/f"), "x").unwrap();
    fs::set_permissions(root.join("closed/inner"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(root.join("closed"), fs::Permissions::from_mode(0o000)).unwrap();
    ws.cleanup().unwrap();
    assert_eq!(count(temp.path()), 0);
}

/// A command's deep tree fails a checkpoint cleanly (nothing is written
/// out), and resetting the workspace removes it.
#[test]
fn a_deep_tree_fails_a_checkpoint_and_reset_removes_it() {
    let temp = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut ws = workspace(temp.path(), None);
    let root = ws.prepare().unwrap().to_path_buf();
    fs::write(root.join("kept.txt"), "x").unwrap();
    chain(&root, "d", 2000);
    let err = ws.finish_checkpoint(out.path()).unwrap_err();
    assert!(matches!(err, Error::TreeBound { .. }), "{err}");
    assert_eq!(count(out.path()), 0, "nothing is written out");
    ws.reset().unwrap();
    assert_eq!(count(&root), 0);
    ws.cleanup().unwrap();
    assert_eq!(count(temp.path()), 0);
}

/// A base directory beyond the bounds is refused at prepare, which leaves
/// no session directory behind.
#[test]
fn a_deep_base_is_refused_and_leaves_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let base = tempfile::tempdir().unwrap();
    chain(base.path(), "d", 2000);
    let mut ws = workspace(temp.path(), Some(base.path()));
    let err = ws.prepare().unwrap_err();
    assert!(matches!(err, Error::TreeBound { .. }), "{err}");
    assert_eq!(count(temp.path()), 0);
    tree::remove_tree(&base.path().join("d")).unwrap();
}

#[test]
fn file_reads_and_copies_stop_at_the_bounds() {
    let temp = tempfile::tempdir().unwrap();
    let mut ws = workspace(temp.path(), None);
    let root = ws.prepare().unwrap().to_path_buf();
    chain(&root, "d", 1500);
    let err = ws.get_file_contents(&["**/leaf"]).unwrap_err();
    assert!(matches!(err, Error::TreeBound { .. }), "{err}");

    let elsewhere = tempfile::tempdir().unwrap();
    chain(elsewhere.path(), "c", 1500);
    let err = ws.restore_from_snapshot_dir(elsewhere.path()).unwrap_err();
    assert!(matches!(err, Error::TreeBound { .. }), "{err}");
    tree::remove_tree(&elsewhere.path().join("c")).unwrap();
    ws.cleanup().unwrap();
    assert_eq!(count(temp.path()), 0);
}
