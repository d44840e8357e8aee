//! The plugin loader refuses what users other than its owner could have
//! changed, before the library is opened: a library's constructor never
//! runs when its directory or the library itself is writable by others.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use session_core::plugin::load_directory;
use session_core::registry::Registry;

/// Builds a shared library whose constructor creates `marker` when the
/// library is opened, at `dest`.
fn constructor_library(dest: &Path, marker: &Path) {
    let source = dest.with_extension("c");
    fs::write(
        &source,
        format!(
            "#include <stdio.h>\n\
             __attribute__((constructor)) static void opened(void) {{\n\
               FILE *f = fopen(\"{}\", \"w\");\n\
               if (f) fclose(f);\n\
             }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dest)
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success());
    fs::remove_file(source).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

struct Fixture {
    _root: tempfile::TempDir,
    plugins: PathBuf,
    library: PathBuf,
    marker: PathBuf,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    chmod(&plugins, 0o755);
    let library = plugins.join("libconstructor.so");
    let marker = root.path().join("constructor-ran");
    constructor_library(&library, &marker);
    chmod(&library, 0o755);
    Fixture {
        _root: root,
        plugins,
        library,
        marker,
    }
}

#[test]
fn a_world_writable_plugin_directory_loads_nothing() {
    let fx = fixture();
    chmod(&fx.plugins, 0o777);
    let mut registry = Registry::empty();
    let report = load_directory(&fx.plugins, &mut registry);
    assert!(report.loaded.is_empty());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let line = report.problems[0].to_string();
    assert_eq!(report.problems[0].path, fx.plugins);
    assert_eq!(line.lines().count(), 1);
    assert!(
        line.contains("refused: the plugin directory")
            && line.contains("writable by group and others (mode 0777)")
            && line.contains("chmod go-w"),
        "{line}"
    );
    assert!(!fx.marker.exists(), "the library's constructor ran");
}

#[test]
fn a_group_writable_library_is_not_opened() {
    let fx = fixture();
    chmod(&fx.library, 0o775);
    let mut registry = Registry::empty();
    let report = load_directory(&fx.plugins, &mut registry);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].path, fx.library);
    let reason = &report.problems[0].reason;
    assert!(
        reason.contains("refused: the library") && reason.contains("writable by its group"),
        "{reason}"
    );
    assert!(!fx.marker.exists(), "the library's constructor ran");

    // A symlink to it is judged by the library it points to.
    let other = tempfile::tempdir().unwrap();
    let linked = other.path().join("plugins");
    fs::create_dir(&linked).unwrap();
    chmod(&linked, 0o755);
    std::os::unix::fs::symlink(&fx.library, linked.join("liblink.so")).unwrap();
    let report = load_directory(&linked, &mut registry);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].reason.contains("libconstructor.so"),
        "{:?}",
        report.problems
    );
    assert!(!fx.marker.exists(), "the library's constructor ran");
}

#[test]
fn the_same_library_in_a_private_directory_is_opened() {
    // The control for the two tests above: when the loader does open the
    // library, its constructor runs (it is no berth plugin, so it is then
    // reported as such).
    let fx = fixture();
    let mut registry = Registry::empty();
    let report = load_directory(&fx.plugins, &mut registry);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].reason.starts_with("not a berth plugin"),
        "{:?}",
        report.problems
    );
    assert!(fx.marker.exists(), "the library was never opened");
}

#[test]
fn a_symlink_another_user_owns_is_refused_on_the_way() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skipped("giving a symlink to another user needs root");
        return;
    }
    let fx = fixture();
    // A sticky, world-writable directory (as /tmp is) where another user
    // left a symlink to a good plugin directory: that user may point it
    // elsewhere between the check and the load, so it is refused.
    let shared = fx.plugins.parent().unwrap().join("shared");
    fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o1777);
    let link = shared.join("plugins");
    std::os::unix::fs::symlink(&fx.plugins, &link).unwrap();
    let nobody = 65534;
    // SAFETY: lchown of a path we just made, with a NUL-terminated copy.
    let c_link = std::ffi::CString::new(link.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::lchown(c_link.as_ptr(), nobody, nobody) }, 0);
    let mut registry = Registry::empty();
    let report = load_directory(&link, &mut registry);
    assert!(report.loaded.is_empty(), "{:?}", report.loaded);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let line = report.problems[0].to_string();
    assert!(
        line.contains("the symlink") && line.contains("owned by uid 65534"),
        "{line}"
    );
    assert!(!fx.marker.exists(), "the library was opened");

    // The same link owned by this user leads to the plugin: it loads (and
    // is then refused as not a berth plugin, after its constructor ran).
    // SAFETY: as above.
    assert_eq!(unsafe { libc::lchown(c_link.as_ptr(), 0, 0) }, 0);
    let report = load_directory(&link, &mut registry);
    assert!(fx.marker.exists(), "{:?}", report.problems);
    let _ = &fx.library;
}

/// Says that the running test is skipped and why, the way the other
/// crates' tests do through `runtime_conformance::skip` (which depends on
/// this crate): `skipped: WHY` on stderr, and a `TEST<tab>WHY` line
/// appended to the file `$BERTH_TEST_SKIP_LOG` names, which `cargo xtask
/// test` counts.
#[allow(clippy::print_stderr, reason = "a skipped test says why")]
fn skipped(why: &str) {
    use std::io::Write as _;
    eprintln!("skipped: {why}");
    if let Some(log) = std::env::var_os("BERTH_TEST_SKIP_LOG") {
        let test = std::thread::current()
            .name()
            .unwrap_or("an unnamed test")
            .to_owned();
        let _ = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut file| file.write_all(format!("{test}\t{why}\n").as_bytes()));
    }
}
