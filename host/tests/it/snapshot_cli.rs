//! `berth snapshot`'s rules and formats: `--ignore`, `--keep` and a spec's
//! `snapshot:` block decide what goes in, with the spec's semantics; a name
//! that says no format is refused unless `--compression` says it; every
//! archive it writes, in every format and under any name, is one `berth
//! diff` reads; `--json` reports the archive.

use std::path::{Path, PathBuf};

use crate::common::{Sandbox, code, stderr, stdout};

/// A project tree: sources, build output, logs, a notes file.
fn project(sb: &Sandbox) -> PathBuf {
    sb.write("project/README.md", "read me\n");
    sb.write("project/src/main.rs", "fn main() {}\n");
    sb.write("project/src/deep/lib.rs", "pub fn f() {}\n");
    sb.write("project/target/main.o", "\x7fELF");
    sb.write("project/build.log", "compiling\n");
    sb.write("project/cache.pyc", "bytecode");
    sb.write("project/venv/lib.py", "x = 1\n");
    sb.files().join("project")
}

/// `berth snapshot DIR -o ARCHIVE ARGS… --json`, checked to succeed.
fn snapshot_json(sb: &Sandbox, dir: &Path, archive: &Path, args: &[&str]) -> serde_json::Value {
    let mut cmd = vec![
        "snapshot".to_owned(),
        dir.display().to_string(),
        "-o".to_owned(),
        archive.display().to_string(),
        "--json".to_owned(),
    ];
    cmd.extend(args.iter().map(|a| (*a).to_owned()));
    let out = sb.run(&cmd);
    assert_eq!(code(&out), 0, "{cmd:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {out:?}"))
}

/// The paths an archive holds, as `berth diff --json` from an empty
/// directory sees them (so `diff` reading the archive is part of it).
fn archived_paths(sb: &Sandbox, archive: &Path) -> Vec<String> {
    let empty = sb.files().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = sb.run([
        "diff".as_ref(),
        "--json".as_ref(),
        empty.as_os_str(),
        archive.as_os_str(),
    ]);
    assert!(matches!(code(&out), 0 | 1), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut paths: Vec<String> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_owned())
        .collect();
    paths.sort();
    paths
}

#[test]
fn every_format_written_under_any_name_is_read_by_diff() {
    let sb = Sandbox::new();
    let dir = project(&sb);
    let formats = [
        ("none", "tar"),
        ("gz", "tar.gz"),
        ("bz2", "tar.bz2"),
        ("xz", "tar.xz"),
        ("zstd", "tar.zst"),
    ];
    for (format, suffix) in formats {
        let by_suffix = sb.files().join(format!("by-suffix.{suffix}"));
        let by_flag = sb.files().join(format!("by-flag-{format}.zip"));
        for (archive, flags) in [
            (&by_suffix, vec![]),
            (&by_flag, vec!["--compression", format]),
        ] {
            let report = snapshot_json(&sb, &dir, archive, &flags);
            assert_eq!(report["compression"], format, "{}", archive.display());
            // Equal to the directory, both ways round.
            for (a, b) in [(&dir, archive), (archive, &dir)] {
                let out = sb.run(["diff".as_ref(), a.as_os_str(), b.as_os_str()]);
                assert_eq!(code(&out), 0, "{}: {out:?}", archive.display());
                assert!(stdout(&out).is_empty(), "{out:?}");
            }
            assert_eq!(
                archived_paths(&sb, archive).len(),
                7,
                "{}",
                archive.display()
            );
        }
        // And not equal to a changed tree: diff read the content.
        let changed = sb.files().join(format!("changed-{format}"));
        std::fs::create_dir_all(changed.join("src")).unwrap();
        std::fs::write(changed.join("src/main.rs"), "fn main() { changed() }\n").unwrap();
        let out = sb.run([
            "diff".as_ref(),
            "--stat".as_ref(),
            by_flag.as_os_str(),
            changed.as_os_str(),
        ]);
        assert_eq!(code(&out), 1, "{out:?}");
        assert!(stdout(&out).contains("M src/main.rs"), "{}", stdout(&out));
    }
    sb.assert_no_session_dirs();
}

#[test]
fn a_name_that_says_no_format_is_refused_without_compression() {
    let sb = Sandbox::new();
    let dir = project(&sb);
    for name in ["x.zip", "snapshot", "x.gz"] {
        let archive = sb.files().join(name);
        let out = sb.run([
            "snapshot".as_ref(),
            dir.as_os_str(),
            "-o".as_ref(),
            archive.as_os_str(),
        ]);
        assert_eq!(code(&out), 125, "{name}: {out:?}");
        assert!(stderr(&out).contains("--compression"), "{}", stderr(&out));
        assert!(stderr(&out).contains(".tar.zst"), "{}", stderr(&out));
        assert!(!archive.exists(), "{name} was written");
    }
    sb.assert_no_session_dirs();
}

#[test]
fn ignore_and_keep_leave_paths_out_with_the_specs_semantics() {
    let sb = Sandbox::new();
    let dir = project(&sb);

    // Without rules, everything; nothing is ignored by default.
    let all = sb.files().join("all.tar");
    let report = snapshot_json(&sb, &dir, &all, &[]);
    assert_eq!(report["entries"], 7);
    assert_eq!(report["left_out"], serde_json::json!([]));

    // --ignore, repeatable; a directory is left out whole.
    let ignored = sb.files().join("ignored.tar");
    let report = snapshot_json(
        &sb,
        &dir,
        &ignored,
        &[
            "--ignore", "target/*", "--ignore", "*.log", "--ignore", "venv",
        ],
    );
    assert_eq!(
        archived_paths(&sb, &ignored),
        ["README.md", "cache.pyc", "src/deep/lib.rs", "src/main.rs"]
    );
    let left_out: Vec<&str> = report["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(left_out.contains(&"build.log"), "{left_out:?}");
    assert!(left_out.contains(&"venv/"), "{left_out:?}");

    // --keep: only matching files; `*` crosses `/`; ignore beats keep.
    let kept = sb.files().join("kept.tar");
    snapshot_json(
        &sb,
        &dir,
        &kept,
        &[
            "--keep",
            "*.rs",
            "--keep",
            "README.md",
            "--ignore",
            "src/deep/*",
        ],
    );
    assert_eq!(archived_paths(&sb, &kept), ["README.md", "src/main.rs"]);

    // `**/` matches any number of directories, none included.
    let deep = sb.files().join("deep.tar");
    snapshot_json(&sb, &dir, &deep, &["--keep", "src/**/*.rs"]);
    assert_eq!(
        archived_paths(&sb, &deep),
        ["src/deep/lib.rs", "src/main.rs"]
    );

    // An invalid glob is berth's error, not a panic.
    let out = sb.run([
        "snapshot".as_ref(),
        dir.as_os_str(),
        "-o".as_ref(),
        sb.files().join("bad.tar").as_os_str(),
        "--ignore".as_ref(),
        "[".as_ref(),
    ]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(
        stderr(&out).contains("invalid glob `[`"),
        "{}",
        stderr(&out)
    );
    sb.assert_no_session_dirs();
}

#[test]
fn env_takes_the_rules_of_a_specs_snapshot_block() {
    let sb = Sandbox::new();
    let dir = project(&sb);

    // A spec that sets no rules: its default ignores apply.
    let plain = sb.write("plain.yaml", "type: local\nname: plain\n");
    let archive = sb.files().join("plain.tar.gz");
    snapshot_json(&sb, &dir, &archive, &["--env", plain.to_str().unwrap()]);
    let paths = archived_paths(&sb, &archive);
    assert!(!paths.contains(&"cache.pyc".to_owned()), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("venv/")), "{paths:?}");
    assert!(paths.contains(&"build.log".to_owned()), "{paths:?}");

    // Its own keep and ignore globs, and the flags' added to them.
    let spec = sb.write(
        "rules.yaml",
        "type: local\nname: rules\nsnapshot:\n  keep_globs: ['*.rs', '*.md', '*.log']\n  ignore_globs: ['target/*']\n",
    );
    let archive = sb.files().join("rules.tar.zst");
    snapshot_json(
        &sb,
        &dir,
        &archive,
        &[
            "--env",
            spec.to_str().unwrap(),
            "--ignore",
            "*.log",
            "--keep",
            "*.pyc",
        ],
    );
    assert_eq!(
        archived_paths(&sb, &archive),
        ["README.md", "cache.pyc", "src/deep/lib.rs", "src/main.rs"]
    );

    // A bad spec is the spec's error.
    let bad = sb.write(
        "bad.yaml",
        "type: local\nname: bad\nsnapshot: {ignore_glob: []}\n",
    );
    let out = sb.run([
        "snapshot".as_ref(),
        dir.as_os_str(),
        "-o".as_ref(),
        sb.files().join("bad.tar").as_os_str(),
        "--env".as_ref(),
        bad.as_os_str(),
    ]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(
        stderr(&out).contains("snapshot.ignore_glob"),
        "{}",
        stderr(&out)
    );
    sb.assert_no_session_dirs();
}

#[test]
fn json_reports_the_archive_its_checksum_and_sizes() {
    let sb = Sandbox::new();
    let dir = project(&sb);
    let archive = sb.files().join("p.tar.xz");
    let report = snapshot_json(&sb, &dir, &archive, &["--ignore", "target/*"]);
    assert_eq!(
        report["archive"].as_str().unwrap(),
        std::fs::canonicalize(&archive).unwrap().to_str().unwrap()
    );
    assert_eq!(report["entries"], 6);
    let content: u64 = [
        "read me\n",
        "fn main() {}\n",
        "pub fn f() {}\n",
        "compiling\n",
        "bytecode",
        "x = 1\n",
    ]
    .iter()
    .map(|c| c.len() as u64)
    .sum();
    assert_eq!(report["bytes"], content);
    assert_eq!(
        report["archive_bytes"],
        std::fs::metadata(&archive).unwrap().len()
    );
    assert_eq!(report["compression"], "xz");
    assert_eq!(report["left_out"], serde_json::json!(["target/main.o"]));
    let checksum = report["checksum"].as_str().unwrap();
    assert_eq!(checksum.len(), 64, "{checksum}");

    // The same checksum as the line without --json.
    let again = sb.files().join("again.tar");
    let out = sb.run([
        "snapshot".as_ref(),
        dir.as_os_str(),
        "-o".as_ref(),
        again.as_os_str(),
        "--ignore".as_ref(),
        "target/*".as_ref(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(
        stdout(&out)
            .trim_end()
            .ends_with(&format!("checksum {checksum}")),
        "{}",
        stdout(&out)
    );
}
