//! Snapshots: capture, checksum, rules, extraction and its refusals.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use session_core::Error;
use session_core::compression::Compression;
use session_core::snapshot::{
    ContentHash, EntryKind, ExtractMode, ManifestEntry, Snapshot, SnapshotManifest, SnapshotRules,
};

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// A tree with nested files, an executable, symlinks (one pointing out), and
/// an empty directory.
fn sample_tree(root: &Path) {
    write(root, "main.py", "print('hi')\n");
    write(root, "src/pkg/mod.py", "x = 1\n");
    write(root, "run.sh", "#!/bin/sh\necho run\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("main.py", root.join("alias.py")).unwrap();
    symlink("/etc/passwd", root.join("outward")).unwrap();
    fs::create_dir_all(root.join("empty/inner")).unwrap();
}

fn all_rules() -> SnapshotRules {
    SnapshotRules::keep_all()
}

#[test]
fn round_trip_keeps_modes_symlinks_and_empty_dirs_for_every_compression() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    for compression in Compression::ALL {
        let snap = Snapshot::capture(src.path(), &all_rules(), compression, store.path()).unwrap();
        assert!(
            snap.archive_path()
                .starts_with(fs::canonicalize(store.path()).unwrap())
        );
        let kinds: Vec<(&str, EntryKind)> = snap
            .manifest()
            .entries()
            .iter()
            .map(|e| (e.path.as_str(), e.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("alias.py", EntryKind::Symlink),
                ("empty/inner", EntryKind::Dir),
                ("main.py", EntryKind::File),
                ("outward", EntryKind::Symlink),
                ("run.sh", EntryKind::File),
                ("src/pkg/mod.py", EntryKind::File),
            ],
            "{compression}"
        );

        let dest = tempfile::tempdir().unwrap();
        snap.extract(dest.path(), ExtractMode::Mirror).unwrap();
        let d = dest.path();
        assert_eq!(
            fs::read_to_string(d.join("main.py")).unwrap(),
            "print('hi')\n"
        );
        assert_eq!(
            fs::read_to_string(d.join("src/pkg/mod.py")).unwrap(),
            "x = 1\n"
        );
        let mode = fs::metadata(d.join("run.sh")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{compression}: executable bit");
        assert_eq!(
            fs::read_link(d.join("alias.py")).unwrap(),
            Path::new("main.py")
        );
        assert_eq!(
            fs::read_link(d.join("outward")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(
            fs::symlink_metadata(d.join("outward"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(d.join("empty/inner").is_dir());
        assert_eq!(fs::read_dir(d.join("empty/inner")).unwrap().count(), 0);

        // A second capture of the extracted tree is the same snapshot.
        let again = Snapshot::capture(d, &all_rules(), compression, store.path()).unwrap();
        assert_eq!(again.checksum(), snap.checksum(), "{compression}");
    }
}

#[test]
fn checksum_depends_on_content_only_not_time_or_compression() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let first =
        Snapshot::capture(src.path(), &all_rules(), Compression::Gzip, store.path()).unwrap();
    // Move every file's time a minute on, as if taken later.
    let later = SystemTime::now() + Duration::from_secs(60);
    for rel in ["main.py", "run.sh", "src/pkg/mod.py"] {
        let file = fs::File::options()
            .write(true)
            .open(src.path().join(rel))
            .unwrap();
        file.set_modified(later).unwrap();
    }
    for compression in Compression::ALL {
        let snap = Snapshot::capture(src.path(), &all_rules(), compression, store.path()).unwrap();
        assert_eq!(snap.checksum(), first.checksum(), "{compression}");
        assert_ne!(snap.archive_path(), first.archive_path());
    }
    write(src.path(), "main.py", "print('changed')\n");
    let changed =
        Snapshot::capture(src.path(), &all_rules(), Compression::Gzip, store.path()).unwrap();
    assert_ne!(changed.checksum(), first.checksum());
}

#[test]
fn archive_opened_from_disk_has_the_same_manifest() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    for compression in Compression::ALL {
        let snap = Snapshot::capture(src.path(), &all_rules(), compression, store.path()).unwrap();
        let opened = Snapshot::open_archive(snap.archive_path(), compression).unwrap();
        assert_eq!(
            opened.manifest().entries(),
            snap.manifest().entries(),
            "{compression}"
        );
        assert_eq!(opened.checksum(), snap.checksum());
    }
}

#[test]
fn archive_directory_inside_the_tree_is_refused_and_nothing_is_left() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a.txt", "a");
    let inside = src.path().join("archives");
    let err = Snapshot::capture(src.path(), &all_rules(), Compression::None, &inside).unwrap_err();
    assert!(matches!(err, Error::ArchiveInsideSnapshot { .. }), "{err}");
    // Capturing into the root itself is refused too.
    assert!(Snapshot::capture(src.path(), &all_rules(), Compression::None, src.path()).is_err());
    assert_eq!(fs::read_dir(&inside).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn ignore_and_keep_rules() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let root = src.path();
    write(root, "a.py", "");
    write(root, "a.pyc", "");
    write(root, "deep/er/b.pyc", "");
    write(root, "venv/pyvenv.cfg", "");
    write(root, "venv/lib/python/site.py", "");
    write(root, "src/a.py", "");
    write(root, "src/x/y.py", "");
    write(root, "src/notes.txt", "");
    write(root, "README.md", "");

    let ignore = ["*.pyc".to_owned(), "venv/*".to_owned()];
    let rules = SnapshotRules::new(None, &ignore).unwrap();
    let snap = Snapshot::capture(root, &rules, Compression::None, store.path()).unwrap();
    let paths: Vec<&str> = snap
        .manifest()
        .entries()
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "README.md",
            "a.py",
            "src/a.py",
            "src/notes.txt",
            "src/x/y.py"
        ]
    );
    // The pruned directory is listed once, not walked.
    assert_eq!(
        snap.manifest().other_paths(),
        ["a.pyc", "deep/er/b.pyc", "venv/lib/", "venv/pyvenv.cfg"]
    );

    let keep = ["src/**/*.py".to_owned(), "*.pyc".to_owned()];
    let rules = SnapshotRules::new(Some(&keep), &ignore).unwrap();
    let snap = Snapshot::capture(root, &rules, Compression::None, store.path()).unwrap();
    let paths: Vec<&str> = snap
        .manifest()
        .entries()
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    // `src/**/*.py` matches `src/a.py`; ignore beats keep for `*.pyc`.
    assert_eq!(paths, ["src/a.py", "src/x/y.py"]);
    let other = snap.manifest().other_paths();
    for missed in ["README.md", "a.py", "src/notes.txt", "a.pyc", "venv/lib/"] {
        assert!(
            other.iter().any(|p| p == missed),
            "{missed} must be in other_paths: {other:?}"
        );
    }
}

#[test]
fn mirror_removes_extra_entries_and_merge_keeps_them() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    write(src.path(), "keep.txt", "snapshot");
    write(src.path(), "dir/file.txt", "snapshot");
    let snap =
        Snapshot::capture(src.path(), &all_rules(), Compression::Zstd, store.path()).unwrap();

    for mode in [ExtractMode::Mirror, ExtractMode::Merge] {
        let dest = tempfile::tempdir().unwrap();
        write(dest.path(), "keep.txt", "changed");
        write(dest.path(), "extra.txt", "extra");
        write(dest.path(), "dir/extra.txt", "extra");
        // A directory where the snapshot has a file.
        fs::create_dir_all(dest.path().join("dir/file.txt/sub")).unwrap();
        snap.extract(dest.path(), mode).unwrap();
        assert_eq!(
            fs::read_to_string(dest.path().join("keep.txt")).unwrap(),
            "snapshot"
        );
        assert_eq!(
            fs::read_to_string(dest.path().join("dir/file.txt")).unwrap(),
            "snapshot"
        );
        let extra_left =
            dest.path().join("extra.txt").exists() && dest.path().join("dir/extra.txt").exists();
        assert_eq!(extra_left, mode == ExtractMode::Merge, "{mode:?}");
    }
}

/// Writes a raw tar header with any name (the `tar` crate refuses `..`).
fn raw_member(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut header = tar::Header::new_old();
    let bytes = name.as_bytes();
    header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    let link = link.as_bytes();
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish(mut out: Vec<u8>, dir: &Path) -> std::path::PathBuf {
    out.extend_from_slice(&[0; 1024]);
    let path = dir.join("evil.tar");
    fs::write(&path, out).unwrap();
    path
}

#[test]
fn unsafe_members_are_refused_and_nothing_lands_outside() {
    use tar::EntryType::{Link, Regular, Symlink};
    type Member = (&'static str, tar::EntryType, &'static str);
    let cases: Vec<(&str, Vec<Member>)> = vec![
        ("absolute", vec![("/tmp/berth-evil-abs", Regular, "")]),
        ("climbing", vec![("../evil.txt", Regular, "")]),
        ("climbing inside", vec![("a/../../evil.txt", Regular, "")]),
        (
            "hard link",
            vec![("ok.txt", Regular, ""), ("hard", Link, "/etc/passwd")],
        ),
        (
            "symlink then file",
            vec![("link", Symlink, "OUTSIDE"), ("link/evil.txt", Regular, "")],
        ),
    ];
    for (label, members) in cases {
        let work = tempfile::tempdir().unwrap();
        let outside = work.path().join("outside");
        let dest = work.path().join("dest");
        fs::create_dir_all(&outside).unwrap();
        let mut raw = Vec::new();
        for (name, kind, link) in &members {
            let link = link.replace("OUTSIDE", outside.to_str().unwrap());
            raw_member(&mut raw, name, *kind, &link, b"evil");
        }
        let archive = finish(raw, work.path());
        let result = Snapshot::open_archive(&archive, Compression::None)
            .and_then(|snap| snap.extract(&dest, ExtractMode::Merge));
        let err = result.expect_err(label);
        assert!(
            matches!(err, Error::UnsafeArchiveMember { .. }),
            "{label}: {err}"
        );
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "{label}: wrote outside"
        );
        assert!(!work.path().join("evil.txt").exists(), "{label}");
        assert!(!Path::new("/tmp/berth-evil-abs").exists(), "{label}");
    }
}

#[test]
fn read_entries_reads_only_what_is_asked_and_verifies_it() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    for i in 0..20 {
        write(
            src.path(),
            &format!("f{i:02}.txt"),
            &format!("content {i}\n"),
        );
    }
    for compression in [Compression::None, Compression::Gzip] {
        let snap = Snapshot::capture(src.path(), &all_rules(), compression, store.path()).unwrap();
        let got = snap
            .read_entries(["f03.txt", "f17.txt", "missing"], u64::MAX)
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["f03.txt"], b"content 3\n");
        assert_eq!(got["f17.txt"], b"content 17\n");
    }
    // Corrupting an entry's bytes in an uncompressed archive is detected.
    let snap =
        Snapshot::capture(src.path(), &all_rules(), Compression::None, store.path()).unwrap();
    let mut bytes = fs::read(snap.archive_path()).unwrap();
    let at = bytes.windows(10).position(|w| w == b"content 5\n").unwrap();
    bytes[at] = b'X';
    fs::write(snap.archive_path(), bytes).unwrap();
    assert!(snap.read_entries(["f04.txt"], u64::MAX).is_ok());
    assert!(matches!(
        snap.read_entries(["f05.txt"], u64::MAX),
        Err(Error::Archive { .. })
    ));
}

/// Deterministic bytes of every value.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Small files are read whole and hashed (by whichever of the capture's two
/// threads fetched them); large ones are hashed as they are streamed.
/// Either way each entry carries the BLAKE3 hash of the file's bytes, the
/// archive holds those bytes, and the checksum is the one the capture gave
/// when one thread did everything.
#[test]
fn many_small_and_a_few_large_files_hash_exactly() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
    for i in 0..1500u64 {
        let len = match i % 10 {
            0 => 0,
            1 => 1,
            2 => 64 << 10,
            _ => (i as usize * 37) % 3000,
        };
        let mode = if i % 13 == 0 { 0o755 } else { 0o644 };
        files.push((format!("d{:02}/f{i:04}.txt", i % 16), noise(i, len), mode));
    }
    for (i, len) in [(64 << 10) + 1, 200 << 10, (1 << 20) + 3]
        .into_iter()
        .enumerate()
    {
        files.push((
            format!("large/l{i}.bin"),
            noise(10_000 + i as u64, len),
            0o600,
        ));
    }
    for (rel, bytes, mode) in &files {
        let path = src.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let expected: Vec<ManifestEntry> = files
        .iter()
        .map(|(rel, bytes, mode)| ManifestEntry {
            path: rel.clone(),
            kind: EntryKind::File,
            mode: *mode,
            size: bytes.len() as u64,
            hash: ContentHash(*blake3::hash(bytes).as_bytes()),
            link_target: None,
        })
        .collect();
    let expected_checksum = SnapshotManifest::new(expected.clone(), vec![]).checksum();
    for compression in [Compression::None, Compression::Gzip] {
        let snap = Snapshot::capture(src.path(), &all_rules(), compression, store.path()).unwrap();
        assert!(
            snap.manifest().entries() == expected.as_slice(),
            "{compression}: manifest differs"
        );
        assert_eq!(snap.checksum(), expected_checksum, "{compression}");
        assert_eq!(
            snap.checksum().to_hex(),
            "674ac56b7998cddfb0aeb4a0b56683d3fc0270f841d7d418bc0cdbda2334ffe0",
            "{compression}: the checksum captures gave before"
        );
        let read = snap
            .read_entries(files.iter().map(|(rel, _, _)| rel.as_str()), u64::MAX)
            .unwrap();
        assert_eq!(read.len(), files.len(), "{compression}");
        for (rel, bytes, _) in &files {
            assert!(read[rel] == *bytes, "{compression}: {rel}");
        }
    }
}

/// A directory's files are fetched in runs shared by two threads; whatever
/// breaks a run (a subdirectory with files of its own, a symlink, a FIFO,
/// a file the rules leave out, a large file, a name that is not UTF-8) sits
/// between files of a run, and every file still lands on its own entry, in
/// order, with its own bytes; what is left out is listed and never read.
#[test]
fn runs_of_files_broken_by_anything_else_archive_each_file_once() {
    use std::os::unix::ffi::OsStrExt;

    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut others: Vec<String> = Vec::new();
    let mut links: Vec<String> = Vec::new();
    for i in 0..700u64 {
        let name = format!("top/n{i:04}");
        match i % 97 {
            13 => {
                for j in 0..40u64 {
                    let rel = format!("{name}/in{j:02}");
                    files.push((rel, noise(i * 1000 + j, 100 + j as usize)));
                }
            }
            29 => links.push(name),
            41 => others.push(name),
            53 => others.push(format!("{name}.skip")),
            67 => files.push((format!("{name}.big"), noise(i, (64 << 10) + 7))),
            _ => files.push((name, noise(i, (i as usize * 53) % 2000))),
        }
    }
    for (rel, bytes) in &files {
        let path = src.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
    }
    for rel in &links {
        symlink("n0000", src.path().join(rel)).unwrap();
    }
    for rel in &others {
        let path = src.path().join(rel);
        if rel.ends_with(".skip") {
            fs::write(&path, "left out").unwrap();
        } else {
            let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
            // SAFETY: a valid C path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        }
    }
    let odd = src
        .path()
        .join(std::ffi::OsStr::from_bytes(b"top/n0500\xff"));
    fs::write(&odd, "not UTF-8").unwrap();
    let rules = SnapshotRules::new(None, &["*.skip"]).unwrap();
    for compression in [Compression::None, Compression::Gzip] {
        let snap = Snapshot::capture(src.path(), &rules, compression, store.path()).unwrap();
        let mut want: Vec<(String, EntryKind, Option<ContentHash>)> = files
            .iter()
            .map(|(rel, bytes)| {
                let hash = ContentHash(*blake3::hash(bytes).as_bytes());
                (rel.clone(), EntryKind::File, Some(hash))
            })
            .chain(
                links
                    .iter()
                    .map(|rel| (rel.clone(), EntryKind::Symlink, None)),
            )
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let got: Vec<(String, EntryKind, Option<ContentHash>)> = snap
            .manifest()
            .entries()
            .iter()
            .map(|e| {
                let hash = (e.kind == EntryKind::File).then_some(e.hash);
                (e.path.clone(), e.kind, hash)
            })
            .collect();
        assert!(got == want, "{compression}: manifest differs");
        let mut listed: Vec<String> = snap.manifest().other_paths().to_vec();
        listed.sort();
        let mut want_listed = others.clone();
        want_listed.push("top/n0500\u{fffd}".to_owned());
        want_listed.sort();
        assert_eq!(listed, want_listed, "{compression}");
        let read = snap
            .read_entries(files.iter().map(|(rel, _)| rel.as_str()), u64::MAX)
            .unwrap();
        for (rel, bytes) in &files {
            assert!(read[rel] == *bytes, "{compression}: {rel}");
        }
    }
}

/// A capture holds few descriptors, however its files are fetched: files
/// too large to be read whole are not kept open ahead of the walk. (nextest
/// runs each test in a process of its own, so lowering this process's
/// descriptor limit touches no other test.)
#[test]
fn a_capture_of_many_large_files_holds_few_descriptors() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let bytes = noise(7, (64 << 10) + 1);
    for i in 0..200 {
        fs::write(src.path().join(format!("f{i:03}")), &bytes).unwrap();
    }
    let open = fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = libc::rlimit {
        rlim_cur: open + 24,
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with valid pointers.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let limit = libc::rlimit {
            rlim_max: old.rlim_max,
            ..limit
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    let captured = Snapshot::capture(src.path(), &all_rules(), Compression::None, store.path());
    // SAFETY: as above.
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &old);
    }
    let snap = captured.unwrap();
    assert_eq!(snap.manifest().len(), 200);
    let hash = ContentHash(*blake3::hash(&bytes).as_bytes());
    assert!(snap.manifest().entries().iter().all(|e| e.hash == hash));
}
