//! Trees of any shape through the real binary: a deep tree, a deep base
//! directory, closed directories and long name chains never crash berth
//! and never outlive their session; what berth cannot read is refused
//! with exit 125 and a message naming the path.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use session_core::tree::{self, Dir};

use crate::common::{Sandbox, code, stderr, stdout};

/// A command making a chain of `levels` directories named `d` in the
/// workspace, through descriptors (one process, no path longer than a
/// name), with a file at the bottom.
fn deep_tree_command(levels: usize) -> String {
    format!(
        "python3 -c '\nimport os\nfd = os.open(\".\", os.O_RDONLY)\nfor _ in range({levels}):\n    \
         os.mkdir(\"d\", dir_fd=fd)\n    sub = os.open(\"d\", os.O_RDONLY, dir_fd=fd)\n    \
         os.close(fd)\n    fd = sub\nos.close(os.open(\"leaf\", os.O_CREAT | os.O_WRONLY, dir_fd=fd))\n'"
    )
}

/// The same from the test: a chain of `levels` directories named `name`
/// under `root`, with a file `leaf` at the bottom.
fn chain(root: &Path, name: &str, levels: usize) {
    let mut dir = Dir::open(root).unwrap();
    for _ in 0..levels {
        dir.create_dir(OsStr::new(name), 0o755).unwrap();
        dir = dir.open_dir(OsStr::new(name)).unwrap();
    }
    dir.open_file(OsStr::new("leaf"), libc::O_WRONLY | libc::O_CREAT, 0o644)
        .unwrap();
}

/// Asserts berth's own failure about a tree beyond the depth bound.
fn assert_refused_deep(out: &std::process::Output) {
    assert_eq!(code(out), 125, "{out:?}");
    let err = stderr(out);
    assert!(err.contains("d/d/d/d/"), "the path is named: {err}");
    assert!(err.contains("1025 levels"), "{err}");
    assert!(err.contains("limit of 1024 directory levels"), "{err}");
    assert!(
        !err.contains("overflow") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn a_deep_tree_with_a_checkpoint_is_refused_and_its_session_removed() {
    let sb = Sandbox::new();
    let out_dir = sb.files().join("out");
    let out = sb.run([
        "run".as_ref(),
        "--checkpoint".as_ref(),
        out_dir.as_os_str(),
        "-c".as_ref(),
        deep_tree_command(3000).as_ref(),
    ]);
    assert_refused_deep(&out);
    assert!(
        std::fs::read_dir(&out_dir).map_or(0, Iterator::count) == 0,
        "nothing was written out"
    );
    sb.assert_no_session_dirs();
}

#[test]
fn a_very_deep_tree_is_removed_with_its_session() {
    let sb = Sandbox::new();
    let out = sb.run(["run", "-c", &deep_tree_command(30_000)]);
    assert_eq!(code(&out), 0, "{out:?}");
    sb.assert_no_session_dirs();
}

#[test]
fn a_deep_base_directory_is_refused_by_run_w() {
    let sb = Sandbox::new();
    let base = sb.files().join("base");
    std::fs::create_dir(&base).unwrap();
    chain(&base, "d", 2000);
    let out = sb.run([
        "run".as_ref(),
        "-w".as_ref(),
        base.as_os_str(),
        "-c".as_ref(),
        "true".as_ref(),
    ]);
    assert_refused_deep(&out);
    sb.assert_no_session_dirs();
    tree::remove_tree(&base).unwrap();
}

#[test]
fn snapshot_and_diff_of_a_deep_tree_are_refused() {
    let sb = Sandbox::new();
    let deep = sb.files().join("deep");
    std::fs::create_dir(&deep).unwrap();
    chain(&deep, "d", 2000);
    let archive = sb.files().join("deep.tar.gz");
    let out = sb.run([
        "snapshot".as_ref(),
        deep.as_os_str(),
        "-o".as_ref(),
        archive.as_os_str(),
    ]);
    assert_refused_deep(&out);
    assert!(!archive.exists());
    let other = sb.files().join("other");
    std::fs::create_dir(&other).unwrap();
    let out = sb.run(["diff".as_ref(), other.as_os_str(), deep.as_os_str()]);
    assert_refused_deep(&out);
    sb.assert_no_session_dirs();
    let left: Vec<_> = std::fs::read_dir(sb.files())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "no scratch directory is left: {left:?}");
    tree::remove_tree(&deep).unwrap();
}

#[test]
fn gc_reaps_a_stale_session_directory_holding_a_30000_deep_tree() {
    let sb = Sandbox::new();
    let dir = sb.temp().join("berth-deepleft");
    std::fs::create_dir_all(dir.join("workspace")).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let marker = serde_json::json!({
        "session_id": "left behind",
        "owner_pid": dead,
        "owner_host": std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim(),
        "created_unix": 0,
    });
    std::fs::write(
        dir.join("berth-session.json"),
        serde_json::to_vec(&marker).unwrap(),
    )
    .unwrap();
    chain(&dir.join("workspace"), "d", 30_000);
    let out = sb.run(["gc"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(stdout(&out).contains("removed"), "{}", stdout(&out));
    assert!(!dir.exists());
}

/// A command that closes directories (`chmod 000`) and makes a chain of
/// names whose full path is several times `PATH_MAX`.
const HOSTILE_SHAPES: &str = "mkdir -p closed/inner && echo x > closed/inner/f && \
     chmod 000 closed/inner closed && \
     perl -e 'my $n = \"n\" x 200; for (1..40) { mkdir $n or die; chdir $n or die } \
     open(F, \">f\") or die'";

#[test]
fn closed_directories_and_long_name_chains_are_removed() {
    let sb = Sandbox::new();
    let out = sb.run(["run", "-c", HOSTILE_SHAPES]);
    assert_eq!(code(&out), 0, "{out:?}");
    sb.assert_no_session_dirs();
}

/// The same as a user without the power to ignore permissions: the
/// closed directories must be opened up to be removed. Run as `nobody`
/// when the tests run as root.
#[test]
fn closed_directories_are_removed_without_privileges() {
    let home = tempfile::Builder::new()
        .prefix("berth-unprivileged-")
        .tempdir_in(reachable_temp())
        .unwrap();
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let (uid, gid) = if root {
        (65534, 65534)
    } else {
        // SAFETY: geteuid(2) and getegid(2) take no arguments and cannot fail.
        (unsafe { libc::geteuid() }, unsafe { libc::getegid() })
    };
    // The binary, copied where the user can run it.
    let binary = home.path().join("berth");
    std::fs::copy(env!("CARGO_BIN_EXE_berth"), &binary).unwrap();
    let temp = home.path().join("temp");
    std::fs::create_dir(&temp).unwrap();
    for path in [home.path(), &binary, &temp] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
    let mut cmd = std::process::Command::new(&binary);
    cmd.arg("--temp-root")
        .arg(&temp)
        .args(["run", "-c", HOSTILE_SHAPES])
        .env("BERTH_PLUGIN_DIR", home.path().join("plugins"))
        .env("HOME", home.path())
        .env_remove("RUST_LOG")
        .current_dir(home.path())
        .stdin(std::process::Stdio::null());
    if root {
        // std drops the supplementary groups when root changes the uid.
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    let left: Vec<PathBuf> = std::fs::read_dir(&temp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(std::fs::metadata(&temp).unwrap().uid(), uid);
}

/// A temporary directory every user can reach: the system's, when each
/// directory on the way to it lets others through, `/tmp` otherwise.
fn reachable_temp() -> PathBuf {
    let temp = std::env::temp_dir();
    let reachable = temp
        .ancestors()
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.mode() & 0o001 != 0));
    if reachable {
        temp
    } else {
        PathBuf::from("/tmp")
    }
}
