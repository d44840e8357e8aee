//! `berth snapshot` and `berth diff`, end to end through the real binary.

use std::path::{Path, PathBuf};

use crate::common::{Sandbox, code, stderr, stdout};

/// A small tree: text files, nested ones, an executable.
fn tree(sb: &Sandbox, name: &str) -> PathBuf {
    sb.write(&format!("{name}/a.txt"), "alpha\nbeta\n");
    sb.write(&format!("{name}/sub/b.txt"), "bee\n");
    sb.write(&format!("{name}/sub/keep.txt"), "kept\n");
    let script = sb.write(&format!("{name}/run.sh"), "#!/bin/sh\necho hi\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    sb.files().join(name)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn snapshot_writes_the_archive_exactly_where_asked() {
    let sb = Sandbox::new();
    let dir = tree(&sb, "src");
    let out_dir = sb.files().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let archive = out_dir.join("src.tar.gz");
    let out = sb.run([
        "snapshot".as_ref(),
        dir.as_os_str(),
        "-o".as_ref(),
        archive.as_os_str(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(stdout(&out).contains("4 entries"), "{}", stdout(&out));
    assert_eq!(
        entries(&out_dir),
        ["src.tar.gz"],
        "no temporary file is left beside it"
    );
    let bytes = std::fs::read(&archive).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip by its suffix");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode();
    assert_ne!(mode & 0o044, 0, "the archive is not left private: {mode:o}");

    // Its content equals the directory.
    let out = sb.run(["diff".as_ref(), dir.as_os_str(), archive.as_os_str()]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(stdout(&out).is_empty());
    sb.assert_no_session_dirs();
}

#[test]
fn snapshot_compression_follows_the_suffix_or_the_flag() {
    let sb = Sandbox::new();
    let dir = tree(&sb, "src");
    let cases: [(&str, &[&str], &[u8], usize); 6] = [
        ("a.tar", &[], b"ustar", 257),
        ("a.tar.bz2", &[], b"BZh", 0),
        ("a.tar.xz", &[], &[0xfd, b'7', b'z', b'X', b'Z', 0], 0),
        ("a.tar.zst", &[], &[0x28, 0xb5, 0x2f, 0xfd], 0),
        ("a.snap", &["--compression", "gz"], &[0x1f, 0x8b], 0),
        ("b.tar.gz", &["--compression", "none"], b"ustar", 257),
    ];
    for (name, flags, magic, offset) in cases {
        let archive = sb.files().join(name);
        let mut args = vec![
            "snapshot".to_owned(),
            dir.display().to_string(),
            "-o".to_owned(),
            archive.display().to_string(),
        ];
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        let out = sb.run(&args);
        assert_eq!(code(&out), 0, "{name}: {out:?}");
        let bytes = std::fs::read(&archive).unwrap();
        assert_eq!(&bytes[offset..offset + magic.len()], magic, "{name}");
    }
}

#[test]
fn snapshot_into_the_tree_itself_leaves_the_archive_out() {
    let sb = Sandbox::new();
    let dir = tree(&sb, "src");
    let archive = dir.join("self.tar");
    for _ in 0..2 {
        let out = sb.run([
            "snapshot".as_ref(),
            dir.as_os_str(),
            "-o".as_ref(),
            archive.as_os_str(),
        ]);
        assert_eq!(code(&out), 0, "{out:?}");
    }
    let empty = sb.files().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = sb.run([
        "diff".as_ref(),
        "--json".as_ref(),
        empty.as_os_str(),
        archive.as_os_str(),
    ]);
    assert_eq!(code(&out), 1, "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["a.txt", "run.sh", "sub/b.txt", "sub/keep.txt"]);
    assert_eq!(entries(&dir), ["a.txt", "run.sh", "self.tar", "sub"]);
    sb.assert_no_session_dirs();
}

#[test]
fn snapshot_errors_are_one_line_and_125() {
    let sb = Sandbox::new();
    let missing = sb.files().join("missing");
    let archive = sb.files().join("a.tar");
    let out = sb.run([
        "snapshot".as_ref(),
        missing.as_os_str(),
        "-o".as_ref(),
        archive.as_os_str(),
    ]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
    let dir = tree(&sb, "src");
    let nowhere = sb.files().join("no/such/dir/a.tar");
    let out = sb.run([
        "snapshot".as_ref(),
        dir.as_os_str(),
        "-o".as_ref(),
        nowhere.as_os_str(),
    ]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// `old` and a changed copy `new`: a.txt modified, sub/b.txt deleted,
/// c.txt created, run.sh made non-executable.
fn changed_pair(sb: &Sandbox) -> (PathBuf, PathBuf) {
    let old = tree(sb, "old");
    let new = tree(sb, "new");
    sb.write("new/a.txt", "alpha\ngamma\n");
    std::fs::remove_file(new.join("sub/b.txt")).unwrap();
    sb.write("new/c.txt", "sea\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(new.join("run.sh"), std::fs::Permissions::from_mode(0o644)).unwrap();
    (old, new)
}

#[test]
fn diff_of_two_directories_prints_unified_text() {
    let sb = Sandbox::new();
    let (old, new) = changed_pair(&sb);
    let out = sb.run(["diff".as_ref(), old.as_os_str(), new.as_os_str()]);
    assert_eq!(code(&out), 1, "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("--- a/a.txt\n+++ b/a.txt\n"), "{text}");
    assert!(text.contains("-beta\n+gamma\n"), "{text}");
    assert!(text.contains("+++ b/c.txt"), "{text}");
    assert!(text.contains("mode of run.sh changed 755 -> 644"), "{text}");
    sb.assert_no_session_dirs();
}

#[test]
fn diff_stat_lists_each_path_and_a_summary() {
    let sb = Sandbox::new();
    let (old, new) = changed_pair(&sb);
    let out = sb.run([
        "diff".as_ref(),
        "--stat".as_ref(),
        old.as_os_str(),
        new.as_os_str(),
    ]);
    assert_eq!(code(&out), 1, "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "M a.txt  +1 -1",
            "A c.txt  +1",
            "M run.sh  mode 755 -> 644",
            "D sub/b.txt  -1",
            "+1 -1 ~2 files, +2 -2 lines",
        ],
        "{text}"
    );
}

/// Names that would forge lines (a header and a hunk, a tab, a carriage
/// return, an escape) are quoted as git quotes them, in the unified text
/// and in `--stat`; plain names are printed as they are.
#[test]
fn diff_quotes_names_that_would_forge_lines() {
    let sb = Sandbox::new();
    let old = sb.files().join("old");
    let new = sb.files().join("new");
    std::fs::create_dir(&old).unwrap();
    sb.write("new/plain.txt", "p\n");
    for name in [
        "z\n+++ evil\n@@ -0,0 +1 @@\n+pwn",
        "tab\there",
        "cr\rhere",
        "esc\u{1b}[2Jhere",
    ] {
        std::fs::write(new.join(name), "x\n").unwrap();
    }
    let out = sb.run(["diff".as_ref(), old.as_os_str(), new.as_os_str()]);
    assert_eq!(code(&out), 1, "{out:?}");
    let text = stdout(&out);
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("+++ ")).collect();
    assert_eq!(
        headers,
        [
            "+++ \"b/cr\\rhere\"",
            "+++ \"b/esc\\033[2Jhere\"",
            "+++ b/plain.txt",
            "+++ \"b/tab\\there\"",
            "+++ \"b/z\\n+++ evil\\n@@ -0,0 +1 @@\\n+pwn\"",
        ],
        "{text}"
    );
    // Five files, five hunks, one added line each: nothing else.
    assert_eq!(
        text.lines().filter(|l| l.starts_with("@@ ")).count(),
        5,
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with('+')).count(),
        10,
        "{text}"
    );
    assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text:?}");

    let out = sb.run([
        "diff".as_ref(),
        "--stat".as_ref(),
        old.as_os_str(),
        new.as_os_str(),
    ]);
    assert_eq!(code(&out), 1, "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "A \"cr\\rhere\"  +1",
            "A \"esc\\033[2Jhere\"  +1",
            "A plain.txt  +1",
            "A \"tab\\there\"  +1",
            "A \"z\\n+++ evil\\n@@ -0,0 +1 @@\\n+pwn\"  +1",
            "+5 -0 ~0 files, +5 -0 lines",
        ],
        "{text}"
    );
    sb.assert_no_session_dirs();
}

#[test]
fn diff_json_is_the_snapshot_diff() {
    let sb = Sandbox::new();
    let (old, new) = changed_pair(&sb);
    let out = sb.run([
        "diff".as_ref(),
        "--json".as_ref(),
        old.as_os_str(),
        new.as_os_str(),
    ]);
    assert_eq!(code(&out), 1, "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["summary"]["created"], 1);
    assert_eq!(json["summary"]["deleted"], 1);
    assert_eq!(json["summary"]["modified"], 2);
    let kinds: Vec<(&str, &str)> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap(), c["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("a.txt", "modified"),
            ("c.txt", "created"),
            ("run.sh", "mode_changed"),
            ("sub/b.txt", "deleted"),
        ]
    );
}

#[test]
fn diff_of_a_directory_and_an_archive() {
    let sb = Sandbox::new();
    let (old, new) = changed_pair(&sb);
    for name in [
        "old.tar",
        "old.tgz",
        "old.tar.xz",
        "old.tar.zst",
        "old.tar.bz2",
    ] {
        let archive = sb.files().join(name);
        let out = sb.run([
            "snapshot".as_ref(),
            old.as_os_str(),
            "-o".as_ref(),
            archive.as_os_str(),
        ]);
        assert_eq!(code(&out), 0, "{out:?}");
        let equal = sb.run(["diff".as_ref(), archive.as_os_str(), old.as_os_str()]);
        assert_eq!(code(&equal), 0, "{name}: {equal:?}");
        assert!(stdout(&equal).is_empty());
        let different = sb.run([
            "diff".as_ref(),
            "--stat".as_ref(),
            archive.as_os_str(),
            new.as_os_str(),
        ]);
        assert_eq!(code(&different), 1, "{name}: {different:?}");
        assert!(
            stdout(&different).contains("+1 -1 ~2 files"),
            "{}",
            stdout(&different)
        );
    }
    sb.assert_no_session_dirs();
}

#[test]
fn diff_errors_are_125() {
    let sb = Sandbox::new();
    let dir = tree(&sb, "src");
    let missing = sb.files().join("missing");
    let out = sb.run(["diff".as_ref(), dir.as_os_str(), missing.as_os_str()]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    let not_archive = sb.write("notes.md", "# hi\n");
    let out = sb.run(["diff".as_ref(), dir.as_os_str(), not_archive.as_os_str()]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(
        stderr(&out).contains("neither a directory nor an archive"),
        "{}",
        stderr(&out)
    );
    let garbage = sb.write("fake.tar.gz", "this is not gzip");
    let out = sb.run(["diff".as_ref(), dir.as_os_str(), garbage.as_os_str()]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(
        stderr(&out).starts_with("berth: error: "),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    sb.assert_no_session_dirs();
}
