//! Nothing but regular files and directories is opened in a session's
//! tree: a FIFO, a device node or a symlink found where a file was listed
//! (a command swapping one in behind a walk) is looked at through an
//! `O_PATH` descriptor and never opened, so a FIFO cannot block berth and
//! a device's driver never sees berth open it. Capture, file reads and
//! copies skip such entries, as they skip those already there.
//!
//! The device nodes are made with `mknod`, which needs root (or
//! `CAP_MKNOD`); the char device `42:0` has no driver, so opening it fails
//! with `ENXIO`: an operation that opened it would fail, which is how the
//! tests see that it was never opened.

#![allow(clippy::print_stderr, reason = "a skipped device says why")]

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use session_core::assets::ResolvedAssets;
use session_core::compression::Compression;
use session_core::snapshot::{EntryKind, Snapshot, SnapshotRules};
use session_core::spec::Mode;
use session_core::tree::{FileKind, Opened, Walker};
use session_core::workspace::{InitialContent, Workspace, WorkspaceOptions};

/// The most any one operation here may take before the test calls it hung:
/// far beyond what it needs, short of forever.
const HANG: Duration = Duration::from_secs(120);

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn mkfifo(path: &Path) {
    // SAFETY: a valid C string.
    let ret = unsafe { libc::mkfifo(c_path(path).as_ptr(), 0o644) };
    assert_eq!(
        ret,
        0,
        "mkfifo {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
}

/// Makes the char device `major:minor` at `path`; `false` when this
/// process may not (no `CAP_MKNOD`), which the caller reports.
fn mknod(path: &Path, major: u32, minor: u32) -> bool {
    // SAFETY: a valid C string.
    let ret = unsafe {
        libc::mknod(
            c_path(path).as_ptr(),
            libc::S_IFCHR | 0o644,
            libc::makedev(major, minor),
        )
    };
    if ret == 0 {
        return true;
    }
    let err = io::Error::last_os_error();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EPERM),
        "mknod {}: {err}",
        path.display()
    );
    false
}

/// Runs `work` on a thread of its own and returns its result, failing the
/// test when it has not returned within [`HANG`] (a blocked open).
fn returns<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("{what} did not return: it is blocked"))
}

/// A tree holding regular files and, beside them, a FIFO, a device with
/// no driver, a `/dev/null`-like device, and a symlink to the FIFO.
/// Returns whether the devices could be made.
fn specials_tree(root: &Path) -> bool {
    fs::write(root.join("a.txt"), "alpha\n").unwrap();
    fs::create_dir(root.join("sub")).unwrap();
    fs::write(root.join("sub/b.txt"), "beta\n").unwrap();
    mkfifo(&root.join("fifo"));
    mkfifo(&root.join("sub/fifo"));
    std::os::unix::fs::symlink("fifo", root.join("to-fifo")).unwrap();
    let devices = mknod(&root.join("nodriver"), 42, 0) && mknod(&root.join("null"), 1, 3);
    if !devices {
        eprintln!("skipping the device nodes: this process may not mknod");
    }
    devices
}

/// The exact race, made deterministic: the walk lists `name` as a regular
/// file, then something else takes its place before it is opened.
#[test]
fn what_is_swapped_in_for_a_listed_file_is_looked_at_never_opened() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    let names = ["dev-nodriver", "dev-null", "dir", "fifo", "link", "plain"];
    for name in names {
        fs::write(root.join(name), "a regular file when listed\n").unwrap();
    }
    let mut walker = Walker::new(root).unwrap();
    let mut seen = Vec::new();
    while let Some(entry) = walker.next_entry().unwrap() {
        assert_eq!(entry.kind, FileKind::File);
        let name = entry.name.to_str().unwrap().to_owned();
        let path = root.join(&name);
        let swapped = match name.as_str() {
            "plain" => true,
            "link" => {
                fs::remove_file(&path).unwrap();
                std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
                true
            }
            "dir" => {
                fs::remove_file(&path).unwrap();
                fs::create_dir(&path).unwrap();
                true
            }
            "fifo" => {
                fs::remove_file(&path).unwrap();
                mkfifo(&path);
                true
            }
            "dev-nodriver" => {
                fs::remove_file(&path).unwrap();
                mknod(&path, 42, 0)
            }
            "dev-null" => {
                fs::remove_file(&path).unwrap();
                mknod(&path, 1, 3)
            }
            other => panic!("{other}"),
        };
        if !swapped {
            eprintln!("skipping {name}: this process may not mknod");
            continue;
        }
        let opened = entry.dir.open_regular(entry.name);
        let want = match name.as_str() {
            "plain" => {
                let Ok(Opened::File(mut file, stat)) = opened else {
                    panic!("{name}: {opened:?}");
                };
                assert_eq!(stat.kind, FileKind::File);
                let mut text = String::new();
                file.read_to_string(&mut text).unwrap();
                assert_eq!(text, "a regular file when listed\n");
                seen.push(name);
                continue;
            }
            "link" => FileKind::Symlink,
            "dir" => FileKind::Dir,
            _ => FileKind::Other,
        };
        // `dev-nodriver` opened would be `ENXIO`; a FIFO opened without
        // `O_NONBLOCK` would block.
        match opened {
            Ok(Opened::NotRegular(stat)) => assert_eq!(stat.kind, want, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        seen.push(name);
    }
    assert!(seen.len() >= 4, "{seen:?}");
    // Nothing at all is `NotFound`, as with any open.
    let dir = session_core::tree::Dir::open(root).unwrap();
    let err = dir.open_regular(OsStr::new("missing")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[test]
fn capture_lists_fifos_and_devices_and_archives_the_rest() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let devices = specials_tree(src.path());
    let (root, store_path) = (src.path().to_path_buf(), store.path().to_path_buf());
    let snapshot = returns("capture", move || {
        Snapshot::capture(
            &root,
            &SnapshotRules::keep_all(),
            Compression::Gzip,
            &store_path,
        )
    })
    .unwrap();
    let paths: Vec<(&str, EntryKind)> = snapshot
        .manifest()
        .entries()
        .iter()
        .map(|e| (e.path.as_str(), e.kind))
        .collect();
    assert_eq!(
        paths,
        [
            ("a.txt", EntryKind::File),
            ("sub/b.txt", EntryKind::File),
            ("to-fifo", EntryKind::Symlink),
        ]
    );
    let mut other = vec!["fifo", "sub/fifo"];
    if devices {
        other.extend(["nodriver", "null"]);
    }
    other.sort();
    assert_eq!(snapshot.manifest().other_paths(), other);
}

#[test]
fn file_reads_and_copies_skip_fifos_and_devices_without_opening_them() {
    let base = tempfile::tempdir().unwrap();
    let temp = tempfile::tempdir().unwrap();
    fs::write(base.path().join("seed.txt"), "seed\n").unwrap();
    let mut workspace = Workspace::new(
        "special-files",
        InitialContent::Directory(base.path().to_path_buf()),
        WorkspaceOptions {
            temp_root: Some(temp.path().to_path_buf()),
            ..WorkspaceOptions::default()
        },
        Mode::Agent,
        ResolvedAssets::default(),
    );
    let root = workspace.prepare().unwrap().to_path_buf();
    specials_tree(&root);
    // Plain paths, a symlink to a FIFO, a directory holding one, globs:
    // only the regular files are read, and nothing blocks.
    let (workspace, files) = returns("reading files", move || {
        let files = workspace
            .get_file_contents(&["fifo", "to-fifo", "nodriver", "null", "sub", "**/*"])
            .unwrap();
        (workspace, files)
    });
    let keys: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(keys, ["a.txt", "seed.txt", "sub/b.txt"]);

    // A copy of such a tree (restoring from a directory) takes the files
    // and leaves the rest.
    let mut workspace = workspace;
    let copy_from = tempfile::tempdir().unwrap();
    specials_tree(copy_from.path());
    let from = copy_from.path().to_path_buf();
    let workspace = returns("copying a tree", move || {
        workspace.restore_from_snapshot_dir(&from).unwrap();
        workspace
    });
    let root = workspace.root().unwrap();
    assert_eq!(
        fs::read_to_string(root.join("sub/b.txt")).unwrap(),
        "beta\n"
    );
    assert_eq!(
        fs::read_link(root.join("to-fifo")).unwrap(),
        PathBuf::from("fifo")
    );
    // Each top-level entry replaces its namesake: the workspace's own
    // FIFO and devices went, and the source's were not copied.
    for special in ["fifo", "nodriver", "null", "sub/fifo"] {
        assert!(
            fs::symlink_metadata(root.join(special)).is_err(),
            "{special} was copied"
        );
    }
    drop(workspace);
}

/// The attack itself: a process of the session keeps swapping device
/// nodes in for the files of its tree while berth captures it. Whatever
/// the interleaving, no capture opens a device (which would fail it with
/// `ENXIO`) nor blocks, and every archived file is a regular one.
#[test]
fn captures_racing_a_device_swapper_never_open_a_device() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let probe = src.path().join("probe");
    if !mknod(&probe, 42, 0) {
        eprintln!("skipping: this process may not mknod");
        return;
    }
    fs::remove_file(&probe).unwrap();
    const FILES: usize = 400;
    for i in 0..FILES {
        fs::write(src.path().join(format!("f{i:04}")), "x\n").unwrap();
    }
    // Nodes and files are made beside the tree (on the same file system)
    // and renamed into it, so the tree holds nothing but `f*` names.
    let scratch = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (root, stop, swaps) = (src.path().to_path_buf(), stop.clone(), swaps.clone());
        let node = scratch.path().join("node");
        let file = scratch.path().join("file");
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let target = root.join(format!("f{:04}", i % FILES));
                // A device in its place, then a file again.
                assert!(mknod(&node, 42, 0));
                fs::rename(&node, &target).unwrap();
                fs::write(&file, "x\n").unwrap();
                fs::rename(&file, &target).unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
                i += 7;
            }
        })
    };
    let captures = {
        let (root, store) = (src.path().to_path_buf(), store.path().to_path_buf());
        returns("the racing captures", move || {
            let mut results = Vec::new();
            for _ in 0..25 {
                let result =
                    Snapshot::capture(&root, &SnapshotRules::keep_all(), Compression::None, &store);
                results.push(result.map(|s| (s.manifest().len(), s.manifest().total_size())));
            }
            stop.store(true, Ordering::Relaxed);
            results
        })
    };
    swapper.join().unwrap();
    assert!(swaps.load(Ordering::Relaxed) > 0, "the swapper ran");
    for result in captures {
        let (files, bytes) = result.unwrap_or_else(|err| panic!("a capture failed: {err}"));
        // Every archived entry is one of the files, with its two bytes.
        assert!(files <= FILES, "{files}");
        assert_eq!(bytes, 2 * files as u64);
    }
}
