//! Building the fixture plugin (`plugins/fixture`) during a test run, for
//! tests that need a real dylib.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's target directory, from the running test binary's path
/// (`<target>/debug/deps/<test>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    exe.ancestors()
        .nth(3)
        .expect("test binaries live in <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds the fixture plugin with `features` (comma-separated, may be
/// empty) and copies the library to `dest`. Builds of different features
/// share one output name, so each build and its copy hold a lock file in
/// the target directory: test processes running at once take turns.
///
/// # Panics
///
/// When the build fails or names no library; this is test support.
pub fn build(features: &str, dest: &Path) {
    let _turn = BuildLock::take();
    let library = build_workspace_cdylib("berth-plugin-fixture", features);
    std::fs::copy(&library, dest).expect("copying the fixture plugin");
}

/// An exclusive `flock` on `<target>/berth-fixture-plugin.lock`, released
/// when dropped (or when the process ends).
struct BuildLock(std::fs::File);

impl BuildLock {
    fn take() -> BuildLock {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(target_dir().join("berth-fixture-plugin.lock"))
            .expect("opening the fixture build lock");
        // SAFETY: flock on a descriptor this function owns; it blocks until
        // the lock is free and touches no memory.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(taken, 0, "locking the fixture build");
        BuildLock(file)
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd as _;
        // SAFETY: as in `take`; unlocking a descriptor we hold.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Builds the workspace package `package` with `features` (comma-separated,
/// may be empty) into the running tests' target directory and returns its
/// cdylib, found through cargo's JSON messages.
///
/// # Panics
///
/// When the build fails or names no library; this is test support.
pub fn build_workspace_cdylib(package: &str, features: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace");
    let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cmd.current_dir(workspace)
        .args(["build", "--quiet", "-p", package, "--message-format=json"])
        .arg("--target-dir")
        .arg(target_dir());
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    let output = cmd.output().expect("running cargo build");
    assert!(
        output.status.success(),
        "building {package} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lib_name = package.replace('-', "_");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
        .filter(|msg| msg["target"]["name"] == lib_name.as_str())
        .flat_map(|msg| {
            msg["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .find(|f| f.extension().is_some_and(|e| e == "so"))
        .expect("the build names its cdylib")
}
