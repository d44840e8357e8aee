//! A symlink's target is bytes, and a snapshot keeps them exactly: no
//! target is normalised as a path (`/` is not `//`, `a//b` is not `a/b`,
//! `x/.` is not `x`), targets that are not UTF-8 and targets longer than a
//! tar header's field survive, the manifest hashes the exact bytes, and a
//! tree extracted and captured again keeps its checksum.

#![allow(clippy::print_stderr, reason = "a skipped check says why")]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use session_core::assets::ResolvedAssets;
use session_core::compression::Compression;
use session_core::diff::ChangeKind;
use session_core::snapshot::{
    ContentHash, EntryKind, ExtractMode, ManifestEntry, Snapshot, SnapshotManifest, SnapshotRules,
};
use session_core::spec::Mode;
use session_core::workspace::{InitialContent, Workspace, WorkspaceOptions};

/// Every odd target: ones a path library rewrites, one with a newline, ones
/// that are not UTF-8, and ones at, just past and far past the 100 bytes a
/// tar header holds in place.
fn odd_targets() -> Vec<Vec<u8>> {
    let mut long_odd = b"ab//".repeat(1000);
    long_odd.extend_from_slice(b"/.");
    long_odd.truncate(4000);
    let mut long_bytes = vec![b'x'; 150];
    long_bytes.extend_from_slice(b"\xff\xfe//.");
    vec![
        b"/".to_vec(),
        b"//".to_vec(),
        b"//x".to_vec(),
        b"a//b".to_vec(),
        b"x/.".to_vec(),
        b"./x".to_vec(),
        b"x/".to_vec(),
        b"../../up".to_vec(),
        b"a\nb".to_vec(),
        b"\xff\xfe/\x80".to_vec(),
        vec![b't'; 100],
        vec![b'u'; 101],
        long_odd,
        long_bytes,
    ]
}

/// The link named for target `i`.
fn link_name(i: usize) -> String {
    format!("l{i:02}")
}

fn make_links(root: &Path, targets: &[Vec<u8>]) {
    for (i, target) in targets.iter().enumerate() {
        symlink(OsStr::from_bytes(target), root.join(link_name(i))).unwrap();
    }
}

/// Every link's target, as `readlink` gives it, is exactly what it was made
/// with.
fn assert_links(root: &Path, targets: &[Vec<u8>], what: &str) {
    for (i, target) in targets.iter().enumerate() {
        let read = fs::read_link(root.join(link_name(i)))
            .unwrap_or_else(|err| panic!("{what}: {}: {err}", link_name(i)))
            .into_os_string()
            .into_vec();
        assert_eq!(
            read,
            *target,
            "{what}: {} points to {:?}, made with {:?}",
            link_name(i),
            String::from_utf8_lossy(&read),
            String::from_utf8_lossy(target)
        );
    }
}

fn capture(root: &Path, store: &Path, compression: Compression) -> Snapshot {
    Snapshot::capture(root, &SnapshotRules::keep_all(), compression, store).unwrap()
}

#[test]
fn odd_targets_survive_capture_and_extraction_byte_for_byte() {
    let targets = odd_targets();
    let src = tempfile::tempdir().unwrap();
    make_links(src.path(), &targets);
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let store = tempfile::tempdir().unwrap();
        let snapshot = capture(src.path(), store.path(), compression);
        let entries = snapshot.manifest().entries();
        assert_eq!(entries.len(), targets.len(), "no target is left out");
        assert!(snapshot.manifest().other_paths().is_empty());
        for (i, target) in targets.iter().enumerate() {
            let entry = snapshot.manifest().get(&link_name(i)).unwrap();
            assert_eq!(entry.kind, EntryKind::Symlink);
            assert_eq!(entry.link_target.as_deref(), Some(target.as_slice()));
            assert_eq!(entry.size, target.len() as u64);
            assert_eq!(entry.hash, ContentHash::of(target), "the exact bytes");
        }
        // Reading the entries gives the targets.
        let names: Vec<String> = (0..targets.len()).map(link_name).collect();
        let read = snapshot
            .read_entries(names.iter().map(String::as_str), u64::MAX)
            .unwrap();
        for (i, target) in targets.iter().enumerate() {
            assert_eq!(read[&link_name(i)], *target);
        }

        // Extracted, the links say what they said; captured again, the
        // tree has the checksum it was captured with.
        let dest = tempfile::tempdir().unwrap();
        snapshot.extract(dest.path(), ExtractMode::Mirror).unwrap();
        assert_links(dest.path(), &targets, compression.name());
        let again = capture(dest.path(), store.path(), compression);
        assert_eq!(
            again.checksum(),
            snapshot.checksum(),
            "{}",
            compression.name()
        );

        // The archive read as one from elsewhere holds the same entries.
        let opened = Snapshot::open_archive(snapshot.archive_path(), compression).unwrap();
        assert_eq!(opened.manifest().entries(), entries);
        assert_eq!(opened.checksum(), snapshot.checksum());
    }
}

/// A long name and a long target together: a long-link record and a
/// long-name record before one member, read back by berth and by GNU tar.
#[test]
fn a_long_name_with_a_long_target() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let dir = "d".repeat(150);
    let name = format!("{dir}/{}", "n".repeat(200));
    let mut target = b"t//".repeat(1300);
    target.push(0xff);
    fs::create_dir(src.path().join(&dir)).unwrap();
    symlink(OsStr::from_bytes(&target), src.path().join(&name)).unwrap();
    let snapshot = capture(src.path(), store.path(), Compression::None);
    let entry = snapshot.manifest().get(&name).unwrap();
    assert_eq!(entry.link_target.as_deref(), Some(target.as_slice()));
    let dest = tempfile::tempdir().unwrap();
    snapshot.extract(dest.path(), ExtractMode::Mirror).unwrap();
    let read = fs::read_link(dest.path().join(&name)).unwrap();
    assert_eq!(read.into_os_string().into_vec(), target);
    if Command::new("tar").arg("--version").output().is_ok() {
        let by_tar = tempfile::tempdir().unwrap();
        let status = Command::new("tar")
            .arg("-xf")
            .arg(snapshot.archive_path())
            .arg("-C")
            .arg(by_tar.path())
            .status()
            .unwrap();
        assert!(status.success());
        let read = fs::read_link(by_tar.path().join(&name)).unwrap();
        assert_eq!(read.into_os_string().into_vec(), target, "GNU tar");
    }
}

/// The archive is one any `tar` reads: GNU tar extracts the same links,
/// long ones through their long-link records.
#[test]
fn gnu_tar_reads_the_targets_as_written() {
    if Command::new("tar").arg("--version").output().is_err() {
        eprintln!("skipping: no `tar` on this host");
        return;
    }
    let targets = odd_targets();
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    make_links(src.path(), &targets);
    let snapshot = capture(src.path(), store.path(), Compression::None);
    let dest = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(snapshot.archive_path())
        .arg("-C")
        .arg(dest.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert_links(dest.path(), &targets, "GNU tar");
}

#[test]
fn a_checkpoint_keeps_link_targets_and_its_checksum() {
    let targets = odd_targets();
    let base = tempfile::tempdir().unwrap();
    let temp = tempfile::tempdir().unwrap();
    fs::write(base.path().join("seed"), "seed\n").unwrap();
    let mut workspace = Workspace::new(
        "link-targets",
        InitialContent::Directory(base.path().to_path_buf()),
        WorkspaceOptions {
            temp_root: Some(temp.path().to_path_buf()),
            ..WorkspaceOptions::default()
        },
        Mode::Agent,
        ResolvedAssets::default(),
    );
    let root = workspace.prepare().unwrap().to_path_buf();
    make_links(&root, &targets);
    let out = tempfile::tempdir().unwrap();
    let checkpoint = workspace.finish_checkpoint(out.path()).unwrap();
    assert_links(out.path(), &targets, "the checkpoint");
    assert_eq!(checkpoint.diff.changes.len(), targets.len());
    assert!(
        checkpoint
            .diff
            .changes
            .iter()
            .all(|c| c.kind == ChangeKind::Created)
    );
    // The workspace itself is untouched, and nothing changed since.
    assert_links(&root, &targets, "the workspace");
    let next = workspace.finish_checkpoint(out.path()).unwrap();
    assert!(next.diff.is_empty(), "{:?}", next.diff.changes);
    assert_eq!(next.snapshot.checksum(), checkpoint.snapshot.checksum());
    // The checkpoint, captured on its own, is the same tree.
    let store = tempfile::tempdir().unwrap();
    let captured = capture(out.path(), store.path(), Compression::Gzip);
    assert_eq!(captured.checksum(), checkpoint.snapshot.checksum());
}

/// In JSON a target is a string when it is UTF-8, and its bytes in base64
/// when it is not; both come back as they were.
#[test]
fn targets_travel_through_json_exactly() {
    let entries: Vec<ManifestEntry> = odd_targets()
        .into_iter()
        .enumerate()
        .map(|(i, target)| ManifestEntry {
            path: link_name(i),
            kind: EntryKind::Symlink,
            mode: 0o777,
            size: target.len() as u64,
            hash: ContentHash::of(&target),
            link_target: Some(target),
        })
        .collect();
    let manifest = SnapshotManifest::new(entries, Vec::new());
    let json = serde_json::to_value(&manifest).unwrap();
    let shown = |i: usize| json["entries"][i]["link_target"].clone();
    assert_eq!(shown(0), serde_json::json!("/"));
    assert_eq!(shown(3), serde_json::json!("a//b"));
    assert_eq!(shown(8), serde_json::json!("a\nb"));
    assert_eq!(shown(9), serde_json::json!({"base64": "//4vgA=="}));
    let back: SnapshotManifest = serde_json::from_value(json).unwrap();
    assert_eq!(back, manifest);
    assert_eq!(back.checksum(), manifest.checksum());
}
