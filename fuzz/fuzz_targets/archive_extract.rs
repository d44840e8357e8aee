//! Snapshot extraction of arbitrary bytes as a tar archive: never a panic,
//! and nothing is ever written outside the destination directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::compression::Compression;
use session_core::snapshot::{ExtractMode, Snapshot};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temp dir");
    let archive = dir.path().join("input.tar");
    std::fs::write(&archive, data).expect("writing the input");
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).expect("the destination");
    if let Ok(snapshot) = Snapshot::open_archive(&archive, Compression::None) {
        let _ = snapshot.extract(&dest, ExtractMode::Merge);
    }
    // Only the archive and the destination may exist beside each other.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("listing")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["dest", "input.tar"]);
});
