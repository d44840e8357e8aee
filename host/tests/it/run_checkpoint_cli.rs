//! `berth run --checkpoint OUT`: OUT holds exactly the workspace's files,
//! the printed diff is what changed, and a directory berth did not write
//! is never emptied without `--force`.

use std::path::{Path, PathBuf};

use crate::common::{Sandbox, code, docker_spec, stderr, stdout};

/// Every path under `dir` with its content (`None` for directories).
fn tree(dir: &Path) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                out.push((rel, None));
                stack.push(path);
            } else {
                out.push((rel, Some(std::fs::read_to_string(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

fn entry(path: &str, content: &str) -> (String, Option<String>) {
    (path.to_owned(), Some(content.to_owned()))
}

struct Fixture {
    sb: Sandbox,
    problem: PathBuf,
    out: PathBuf,
}

fn fixture() -> Fixture {
    let sb = Sandbox::new();
    sb.write("problem/old.txt", "old\n");
    sb.write("problem/keep.txt", "keep\n");
    sb.write("problem/edit.txt", "one\n");
    let problem = sb.files().join("problem");
    let out = sb.files().join("out");
    Fixture { sb, problem, out }
}

impl Fixture {
    fn run(&self, extra: &[&str], script: &str) -> std::process::Output {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "run".as_ref(),
            "--workspace".as_ref(),
            self.problem.as_os_str(),
            "--checkpoint".as_ref(),
            self.out.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        args.extend(["-c".as_ref(), std::ffi::OsStr::new(script)]);
        self.sb.berth(args).output().unwrap()
    }
}

const SCRIPT: &str = "rm old.txt; echo new > new.txt; echo two >> edit.txt";

#[test]
fn a_checkpoint_holds_exactly_the_workspace_and_diff_agrees() {
    let f = fixture();
    let out = f.run(&[], SCRIPT);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        tree(&f.out),
        [
            entry("edit.txt", "one\ntwo\n"),
            entry("keep.txt", "keep\n"),
            entry("new.txt", "new\n"),
        ]
    );
    let err = stderr(&out);
    assert!(err.contains("A new.txt"), "{err}");
    assert!(err.contains("D old.txt"), "{err}");
    assert!(err.contains("M edit.txt"), "{err}");
    assert!(!err.contains("keep.txt"), "{err}");

    // `berth diff` between the problem and the checkpoint says the same.
    let diff = f.sb.run([
        "diff".as_ref(),
        "--stat".as_ref(),
        f.problem.as_os_str(),
        f.out.as_os_str(),
    ]);
    assert_eq!(code(&diff), 1, "{diff:?}");
    let stat = stdout(&diff);
    for change in ["A new.txt", "D old.txt", "M edit.txt"] {
        assert!(stat.contains(change), "{stat}");
    }
    assert!(!stat.contains("keep.txt"), "{stat}");
    f.sb.assert_no_session_dirs();
}

#[test]
fn a_previous_checkpoint_is_replaced_whole() {
    let f = fixture();
    assert_eq!(code(&f.run(&[], SCRIPT)), 0);
    // Files added to a checkpoint by hand, and files the next run does not
    // make, go.
    std::fs::write(f.out.join("stray.txt"), "stray\n").unwrap();
    std::fs::create_dir(f.out.join("stray-dir")).unwrap();
    let out = f.run(&[], "echo again > again.txt");
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        tree(&f.out),
        [
            entry("again.txt", "again\n"),
            entry("edit.txt", "one\n"),
            entry("keep.txt", "keep\n"),
            entry("old.txt", "old\n"),
        ]
    );
    // The next run's staging directory is gone too.
    let beside: Vec<String> = std::fs::read_dir(f.sb.files())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("berth"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
}

#[test]
fn a_foreign_non_empty_directory_is_refused_unless_forced() {
    let f = fixture();
    f.sb.write("out/mine.txt", "precious\n");
    let out = f.run(&[], SCRIPT);
    assert_eq!(code(&out), 125, "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("not a checkpoint berth wrote"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(tree(&f.out), [entry("mine.txt", "precious\n")]);

    let out = f.run(&["--force"], SCRIPT);
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(!f.out.join("mine.txt").exists());
    assert!(f.out.join("new.txt").exists());
    // Now it is berth's: the next run needs no --force.
    assert_eq!(code(&f.run(&[], "true")), 0);
    f.sb.assert_no_session_dirs();
}

#[test]
fn an_empty_directory_and_a_symlink_to_one_are_fine() {
    let f = fixture();
    let real = f.sb.files().join("real");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, &f.out).unwrap();
    let out = f.run(&[], SCRIPT);
    assert_eq!(code(&out), 0, "{out:?}");
    // The checkpoint went where the link points, and the link stays.
    assert!(std::fs::symlink_metadata(&f.out).unwrap().is_symlink());
    assert!(real.join("new.txt").exists() && !real.join("old.txt").exists());
}

#[test]
fn a_docker_checkpoint_is_exact_too() {
    let f = fixture();
    let Some(spec) = docker_spec(&f.sb, "") else {
        return;
    };
    let out = f.run(&["--env", spec.to_str().unwrap()], SCRIPT);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        tree(&f.out),
        [
            entry("edit.txt", "one\ntwo\n"),
            entry("keep.txt", "keep\n"),
            entry("new.txt", "new\n"),
        ]
    );
    f.sb.assert_no_session_dirs();
}
