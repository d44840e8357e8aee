//! Sparse files through capture and extraction, and reads of only the
//! first bytes of entries.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt, symlink};
use std::path::Path;

use session_core::Error;
use session_core::compression::Compression;
use session_core::snapshot::{ContentHash, ExtractMode, Snapshot, SnapshotRules};

const MIB: u64 = 1 << 20;

/// Bytes actually on disk for `path`.
fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

/// The BLAKE3 hash of a file, streamed.
fn hash_of(path: &Path) -> ContentHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(File::open(path).unwrap()).unwrap();
    ContentHash(*hasher.finalize().as_bytes())
}

/// A file of `len` bytes that is all hole but for `data` at its offsets.
fn sparse(path: &Path, len: u64, data: &[(u64, &[u8])]) {
    let file = File::create(path).unwrap();
    file.set_len(len).unwrap();
    for (at, bytes) in data {
        file.write_all_at(bytes, *at).unwrap();
    }
}

/// A 256 MiB file with a few bytes of data in it goes through capture
/// (every compression) and extraction with its content exact and no more
/// than a few blocks of it on disk: in the extracted tree, and in an
/// uncompressed archive too.
#[test]
fn a_sparse_file_stays_sparse_through_capture_and_extraction() {
    let src = tempfile::tempdir().unwrap();
    let big = src.path().join("big");
    let len = 256 * MIB;
    sparse(
        &big,
        len,
        &[(0, b"head"), (100 * MIB + 7, b"middle"), (len - 3, b"end")],
    );
    fs::write(src.path().join("small.txt"), "small\n").unwrap();
    assert!(allocated(&big) < MIB, "the fixture is sparse");
    let want = hash_of(&big);

    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let store = tempfile::tempdir().unwrap();
        let snap = Snapshot::capture(
            src.path(),
            &SnapshotRules::keep_all(),
            compression,
            store.path(),
        )
        .unwrap();
        let entry = snap.manifest().get("big").unwrap();
        assert_eq!((entry.size, entry.hash), (len, want), "{compression}");
        if compression == Compression::None {
            assert!(
                allocated(snap.archive_path()) < MIB,
                "the uncompressed archive holds {} bytes on disk",
                allocated(snap.archive_path())
            );
        }

        let dest = tempfile::tempdir().unwrap();
        snap.extract(dest.path(), ExtractMode::Mirror).unwrap();
        let out = dest.path().join("big");
        assert_eq!(fs::metadata(&out).unwrap().len(), len, "{compression}");
        assert!(
            allocated(&out) < MIB,
            "{compression}: extraction wrote {} bytes of a sparse file",
            allocated(&out)
        );
        assert_eq!(hash_of(&out), want, "{compression}");
        let mut middle = [0u8; 6];
        File::open(&out)
            .unwrap()
            .read_exact_at(&mut middle, 100 * MIB + 7)
            .unwrap();
        assert_eq!(&middle, b"middle");
        assert_eq!(
            fs::read_to_string(dest.path().join("small.txt")).unwrap(),
            "small\n"
        );
    }
}

/// Zeros written out in full at the source (no hole there) become holes
/// when extracted, block by block; bytes around them stay exact, even in a
/// block that is zero but for one byte.
#[test]
fn runs_of_zeros_are_extracted_as_holes() {
    let src = tempfile::tempdir().unwrap();
    let mut content = b"start".to_vec();
    content.extend(vec![0u8; 16 * MIB as usize]);
    content.push(1);
    content.extend(vec![0u8; 5000]);
    content.extend(b"end");
    fs::write(src.path().join("dense"), &content).unwrap();
    assert!(allocated(&src.path().join("dense")) >= 16 * MIB);
    let store = tempfile::tempdir().unwrap();
    let snap = Snapshot::capture(
        src.path(),
        &SnapshotRules::keep_all(),
        Compression::Gzip,
        store.path(),
    )
    .unwrap();
    let dest = tempfile::tempdir().unwrap();
    snap.extract(dest.path(), ExtractMode::Mirror).unwrap();
    let out = dest.path().join("dense");
    assert!(fs::read(&out).unwrap() == content);
    assert!(
        allocated(&out) < MIB,
        "{} bytes on disk for 16 MiB of zeros",
        allocated(&out)
    );
}

/// Deterministic bytes that are neither zero nor repetitive.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8 | 1
        })
        .collect()
}

/// Reading a prefix yields exactly the first bytes of each entry, in
/// uncompressed archives, framed ones, and compressed ones streamed from
/// disk; entries shorter than the limit come whole. A prefix is not
/// checked against the hash (the rest of the entry is damaged here and the
/// prefix still reads), a whole read still is.
#[test]
fn prefixes_of_entries_are_read_without_the_rest() {
    let src = tempfile::tempdir().unwrap();
    let large = noise(MIB as usize);
    fs::write(src.path().join("large.bin"), &large).unwrap();
    fs::write(src.path().join("short.txt"), "short\n").unwrap();
    symlink("short.txt", src.path().join("link")).unwrap();
    let paths = ["large.bin", "short.txt", "link", "missing"];

    for compression in [Compression::None, Compression::Gzip, Compression::Xz] {
        let store = tempfile::tempdir().unwrap();
        let snap = Snapshot::capture(
            src.path(),
            &SnapshotRules::keep_all(),
            compression,
            store.path(),
        )
        .unwrap();
        let opened = Snapshot::open_archive(snap.archive_path(), compression).unwrap();
        for (label, snap) in [("captured", &snap), ("opened", &opened)] {
            let got = snap.read_entries(paths, 100).unwrap();
            assert_eq!(got.len(), 3, "{compression} {label}");
            assert!(got["large.bin"] == large[..100], "{compression} {label}");
            assert_eq!(got["short.txt"], b"short\n", "{compression} {label}");
            assert_eq!(got["link"], b"short.txt", "{compression} {label}");

            let mut seen = Vec::new();
            snap.visit_entries(
                [("large.bin", 5000), ("short.txt", 3), ("link", 0)],
                |entry, bytes| {
                    seen.push((entry.path.clone(), bytes));
                    Ok(())
                },
            )
            .unwrap();
            seen.sort();
            assert_eq!(seen[0], ("large.bin".to_owned(), large[..5000].to_vec()));
            assert_eq!(seen[1], ("link".to_owned(), Vec::new()));
            assert_eq!(seen[2], ("short.txt".to_owned(), b"sho".to_vec()));
        }
    }

    // The end of `large.bin` damaged in an uncompressed archive.
    let store = tempfile::tempdir().unwrap();
    let snap = Snapshot::capture(
        src.path(),
        &SnapshotRules::keep_all(),
        Compression::None,
        store.path(),
    )
    .unwrap();
    let mut bytes = fs::read(snap.archive_path()).unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w == &large[large.len() - 64..])
        .unwrap();
    bytes[at] ^= 0xff;
    fs::write(snap.archive_path(), bytes).unwrap();
    let head = snap.read_entries(["large.bin"], 4096).unwrap();
    assert!(head["large.bin"] == large[..4096]);
    assert!(matches!(
        snap.read_entries(["large.bin"], u64::MAX),
        Err(Error::Archive { .. })
    ));
}
