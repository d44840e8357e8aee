//! Compressed snapshots are written as independently compressed frames:
//! reading entries through the frame index, tampering, `tar` reading the
//! archive, reopening it from disk, and diffs that do not depend on how the
//! archive is read.

#![allow(clippy::print_stderr, reason = "a skipped format says why")]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use session_core::Error;
use session_core::compression::Compression;
use session_core::diff::diff;
use session_core::snapshot::{EntryKind, Snapshot, SnapshotRules};

const COMPRESSED: [Compression; 4] = [
    Compression::Gzip,
    Compression::Bzip2,
    Compression::Xz,
    Compression::Zstd,
];

/// Deterministic text-like bytes: they compress, but not to nothing.
fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "alpha", "berth", "cargo", "delta", "frame", "gzip", "index", "member", "offset", "stream",
        "tar", "zstd",
    ];
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(WORDS[(state % 12) as usize].as_bytes());
        out.push(if state.is_multiple_of(9) { b'\n' } else { b' ' });
        if state.is_multiple_of(5) {
            out.extend_from_slice(format!("{}", state % 100_000).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// About 2 MiB: more than one frame in every format (dozens in gz and
/// zstd), small files on both sides of large ones (one larger than any
/// frame), an empty file, a long name, a symlink, an empty directory and an
/// executable.
fn sample_tree(root: &Path) {
    for i in 0..700u64 {
        let dir = if i < 400 { "a" } else { "z" };
        let len = (i as usize * 7919) % 2500;
        write(
            root,
            &format!("{dir}/d{:02}/f{i:03}.txt", i % 30),
            &text(i, len),
        );
    }
    write(root, "m/big.txt", &text(1_000, 1_100_000));
    write(root, "m/bigger.txt", &text(1_001, 200_000));
    write(root, "m/empty.txt", b"");
    // A name longer than a tar header holds: an extra member before it.
    write(
        root,
        &format!("m/{}.txt", "long".repeat(40)),
        &text(7, 3_000),
    );
    write(root, "m/run.sh", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("m/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("big.txt", root.join("m/link")).unwrap();
    fs::create_dir_all(root.join("m/hollow")).unwrap();
}

fn capture(root: &Path, store: &Path, compression: Compression) -> Snapshot {
    Snapshot::capture(root, &SnapshotRules::keep_all(), compression, store).unwrap()
}

fn file_paths(snap: &Snapshot) -> Vec<&str> {
    snap.manifest()
        .entries()
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.path.as_str())
        .collect()
}

/// Decoded bytes of the archive's first member alone, and of the whole.
fn first_member_and_whole(snap: &Snapshot) -> (usize, usize) {
    let packed = fs::read(snap.archive_path()).unwrap();
    let mut first = Vec::new();
    snap.compression()
        .member_reader(&packed[..])
        .unwrap()
        .read_to_end(&mut first)
        .unwrap();
    let whole = snap.compression().decompress(&packed).unwrap();
    (first.len(), whole.len())
}

#[test]
fn read_entries_through_frames_returns_exactly_each_entrys_bytes() {
    let tree = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    for compression in COMPRESSED {
        let snap = capture(tree.path(), store.path(), compression);
        let (first, whole) = first_member_and_whole(&snap);
        assert!(
            first < whole,
            "{compression}: the archive is not split into frames ({first} of {whole} bytes in the first)"
        );
        let files = file_paths(&snap);
        let expect = |path: &str| fs::read(tree.path().join(path)).unwrap();

        let all = snap.read_entries(files.iter().copied(), u64::MAX).unwrap();
        assert_eq!(all.len(), files.len(), "{compression}");
        for path in &files {
            assert!(all[*path] == expect(path), "{compression}: {path}");
        }
        // Subsets: scattered entries (several in one frame, one per frame),
        // the large files alone, what follows them, the very last entry,
        // and a request in reverse order.
        let scattered: Vec<&str> = files.iter().copied().step_by(37).collect();
        let last = *files.last().unwrap();
        let after_big = files[files.iter().position(|p| *p == "m/bigger.txt").unwrap() + 1];
        let subsets: Vec<Vec<&str>> = vec![
            scattered.clone(),
            vec!["m/big.txt"],
            vec!["m/bigger.txt", after_big],
            vec![last],
            scattered.iter().rev().copied().collect(),
            vec![
                "m/empty.txt",
                "a/d00/f000.txt",
                "m/big.txt",
                "z/d09/f699.txt",
            ],
        ];
        for subset in subsets {
            let got = snap.read_entries(subset.iter().copied(), u64::MAX).unwrap();
            assert_eq!(got.len(), subset.len(), "{compression}");
            for path in subset {
                assert!(got[path] == expect(path), "{compression}: {path}");
            }
        }
        let links = snap
            .read_entries(["m/link", "m/hollow", "nowhere"], u64::MAX)
            .unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(links["m/link"], b"big.txt");
        assert!(links["m/hollow"].is_empty());
    }
}

#[test]
fn a_tampered_or_truncated_archive_is_detected() {
    let tree = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    for compression in COMPRESSED {
        let snap = capture(tree.path(), store.path(), compression);
        let files = file_paths(&snap);
        let pristine = fs::read(snap.archive_path()).unwrap();

        // Inverting a run of bytes breaks the frame it falls in (a decoding
        // error or content that fails its hash), or the next frame's header.
        let mut bytes = pristine.clone();
        let at = bytes.len() * 2 / 3;
        for b in &mut bytes[at..at + 256] {
            *b = !*b;
        }
        fs::write(snap.archive_path(), &bytes).unwrap();
        let err = snap
            .read_entries(files.iter().copied(), u64::MAX)
            .unwrap_err();
        assert!(matches!(err, Error::Archive { .. }), "{compression}: {err}");
        // Entries before the damage are still read.
        let first = snap
            .read_entries(["a/d00/f000.txt", "a/d01/f001.txt"], u64::MAX)
            .unwrap();
        assert_eq!(first.len(), 2, "{compression}");

        fs::write(snap.archive_path(), &pristine[..pristine.len() / 2]).unwrap();
        let err = snap
            .read_entries(files.iter().copied(), u64::MAX)
            .unwrap_err();
        assert!(matches!(err, Error::Archive { .. }), "{compression}: {err}");
    }
}

/// Every entry under `root`: its kind and bytes (a symlink's target), and
/// the mode of files.
fn tree_listing(root: &Path) -> BTreeMap<String, (char, Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let meta = entry.path().symlink_metadata().unwrap();
        let value = if meta.file_type().is_symlink() {
            let target = fs::read_link(entry.path()).unwrap();
            ('l', target.to_str().unwrap().as_bytes().to_vec(), 0)
        } else if meta.is_dir() {
            ('d', Vec::new(), 0)
        } else {
            (
                'f',
                fs::read(entry.path()).unwrap(),
                meta.permissions().mode() & 0o777,
            )
        };
        out.insert(rel, value);
    }
    out
}

/// Whether this machine has the program `tar` runs for a format.
fn has_program(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn tar_extracts_the_framed_archive_identically() {
    let tree = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    let want = tree_listing(tree.path());
    for (compression, flag, program) in [
        (Compression::Gzip, "-xzf", "gzip"),
        (Compression::Bzip2, "-xjf", "bzip2"),
        (Compression::Xz, "-xJf", "xz"),
        (Compression::Zstd, "--zstd", "zstd"),
    ] {
        if compression != Compression::Gzip && !has_program(program) {
            eprintln!("{program} is not installed: `tar` cannot read {compression} here");
            continue;
        }
        let snap = capture(tree.path(), store.path(), compression);
        let dest = tempfile::tempdir().unwrap();
        let mut tar = Command::new("tar");
        if compression == Compression::Zstd {
            tar.args([flag, "-xf"]);
        } else {
            tar.arg(flag);
        }
        let out = tar
            .arg(snap.archive_path())
            .arg("-C")
            .arg(dest.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tar {compression}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // tar would warn about a damaged or trailing member.
        assert!(
            out.stderr.is_empty(),
            "tar {compression}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            tree_listing(dest.path()) == want,
            "tar {compression}: trees differ"
        );
    }
}

#[test]
fn a_framed_archive_opened_from_disk_is_streamed_with_the_same_results() {
    let tree = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    // xz is left out here and below only because its encoder is the
    // slowest by far; the reads above cover its frames.
    for compression in [Compression::Gzip, Compression::Bzip2, Compression::Zstd] {
        let snap = capture(tree.path(), store.path(), compression);
        let opened = Snapshot::open_archive(snap.archive_path(), compression).unwrap();
        assert_eq!(opened.checksum(), snap.checksum(), "{compression}");
        assert_eq!(opened.manifest().entries(), snap.manifest().entries());
        let files = file_paths(&snap);
        let wanted: Vec<&str> = files.iter().copied().step_by(11).collect();
        let streamed = opened
            .read_entries(wanted.iter().copied(), u64::MAX)
            .unwrap();
        let framed = snap.read_entries(wanted.iter().copied(), u64::MAX).unwrap();
        assert_eq!(streamed.len(), wanted.len());
        assert!(streamed == framed, "{compression}");
    }
}

#[test]
fn diffs_do_not_depend_on_compression_or_how_the_archive_is_read() {
    let tree = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let root = tree.path();
    sample_tree(root);
    let formats = [
        Compression::None,
        Compression::Gzip,
        Compression::Bzip2,
        Compression::Zstd,
    ];
    let before: Vec<Snapshot> = formats
        .iter()
        .map(|c| capture(root, store.path(), *c))
        .collect();
    // Edits in many frames: small files, the large file's middle, removals,
    // additions, a mode change.
    for i in (0..700u64).step_by(35) {
        let dir = if i < 400 { "a" } else { "z" };
        let rel = format!("{dir}/d{:02}/f{i:03}.txt", i % 30);
        let mut bytes = fs::read(root.join(&rel)).unwrap();
        bytes.extend_from_slice(format!("\nedited {i}\n").as_bytes());
        write(root, &rel, &bytes);
    }
    let mut big = fs::read(root.join("m/big.txt")).unwrap();
    big[750_000..750_010].copy_from_slice(b"\nCHANGED!\n");
    write(root, "m/big.txt", &big);
    fs::remove_file(root.join("z/d01/f421.txt")).unwrap();
    write(root, "new/file.txt", b"brand new\n");
    fs::set_permissions(root.join("m/run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    let after: Vec<Snapshot> = formats
        .iter()
        .map(|c| capture(root, store.path(), *c))
        .collect();

    let reference = serde_json::to_value(diff(&before[0], &after[0]).unwrap()).unwrap();
    assert!(reference["summary"]["modified"].as_u64().unwrap() >= 22);
    for (old, new) in before.iter().zip(&after).skip(1) {
        let c = old.compression();
        let framed = serde_json::to_value(diff(old, new).unwrap()).unwrap();
        assert!(framed == reference, "{c}: diff through frames differs");
        let old_opened = Snapshot::open_archive(old.archive_path(), c).unwrap();
        let new_opened = Snapshot::open_archive(new.archive_path(), c).unwrap();
        let streamed = serde_json::to_value(diff(&old_opened, &new_opened).unwrap()).unwrap();
        assert!(streamed == reference, "{c}: streamed diff differs");
    }
}
