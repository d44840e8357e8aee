//! `berth plugins test LIB` and `berth plugins install LIB` through the
//! built binary: the conformance suite runs from the binary alone (in a
//! directory of its own, without cargo), and installing checks the library
//! through the loader before copying it into the plugin directory.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use crate::common::{Sandbox, code, stderr, stdout};

/// `berth plugins test ARGS…` run from an empty directory of its own, with
/// no cargo in its environment and no conformance filter.
fn plugins_test(sb: &Sandbox, args: &[&std::ffi::OsStr], filter: Option<&str>) -> Output {
    let elsewhere = tempfile::tempdir().unwrap();
    let mut cmd = sb.berth(["plugins", "test"]);
    cmd.args(args)
        .current_dir(elsewhere.path())
        .env_remove("CARGO")
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("BERTH_CONFORMANCE_FILTER");
    if let Some(filter) = filter {
        cmd.env("BERTH_CONFORMANCE_FILTER", filter);
    }
    cmd.output().expect("running berth")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// What the sandbox's temporary root holds besides session directories.
fn check_dirs_left(sb: &Sandbox) -> Vec<String> {
    std::fs::read_dir(sb.temp())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("berth-plugin-check-"))
        .collect()
}

#[test]
fn plugins_test_runs_the_whole_suite_through_the_loader_from_the_binary_alone() {
    let sb = Sandbox::new();
    let library = sb.files().join("libfixture.so");
    runtime_conformance::fixture_plugin::build("", &library);

    let out = plugins_test(&sb, &[library.as_os_str()], None);
    assert_eq!(code(&out), 0, "{out:?}");
    // The setups the suite fails on purpose are not logged as warnings.
    assert_eq!(stderr(&out), "");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("loaded {}: type `fixture`", library.display())
    );
    let cases = &lines[1..lines.len() - 1];
    assert_eq!(
        cases.len(),
        runtime_conformance::all_cases().len(),
        "one line per case: {text}"
    );
    for line in cases {
        assert!(
            line.starts_with("pass  fixture  ") || line.starts_with("skip  fixture  "),
            "{line}"
        );
    }
    let passed = cases.iter().filter(|l| l.starts_with("pass")).count();
    let skipped = cases.len() - passed;
    assert!(passed > 20, "{text}");
    assert_eq!(
        *lines.last().unwrap(),
        format!("{passed} passed, 0 failed, {skipped} skipped")
    );
    // The private plugin directory is gone with its copy.
    assert_eq!(check_dirs_left(&sb), Vec::<String>::new());

    // --json: each case with its type, outcome, reason and duration, and
    // the totals.
    let out = plugins_test(
        &sb,
        &[library.as_os_str(), "--json".as_ref()],
        Some("output"),
    );
    assert_eq!(code(&out), 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["loaded"], true);
    assert_eq!(json["types"], serde_json::json!(["fixture"]));
    let cases = json["cases"].as_array().unwrap();
    assert!(cases.len() >= 3, "{json:#}");
    for case in cases {
        assert_eq!(case["type"], "fixture", "{case}");
        let name = case["case"].as_str().unwrap();
        assert!(name.contains("output"), "{case}");
        let rule = runtime_conformance::case_named(name).unwrap().rule;
        assert_eq!(case["rule"], rule, "{case}");
        assert!(case["duration_ms"].is_u64(), "{case}");
        match case["outcome"].as_str().unwrap() {
            "passed" => assert!(case["reason"].is_null(), "{case}"),
            "skipped" => assert!(case["reason"].is_string(), "{case}"),
            other => panic!("{other}: {case}"),
        }
    }
    let count = |outcome: &str| cases.iter().filter(|c| c["outcome"] == outcome).count();
    assert_eq!(json["passed"], count("passed"));
    assert_eq!(json["failed"], 0);
    assert_eq!(json["skipped"], count("skipped"));
}

#[test]
fn plugins_test_fails_with_the_reason_of_each_failed_case() {
    let sb = Sandbox::new();
    let library = sb.files().join("libpanic.so");
    runtime_conformance::fixture_plugin::build("panic", &library);

    let out = plugins_test(&sb, &[library.as_os_str()], Some("exit_code_is_reported"));
    assert_eq!(code(&out), 1, "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].starts_with("FAIL  fixture-panic  exit_code_is_reported [exec.exit-status]: "),
        "{text}"
    );
    // The panic's message came through `stream`, naming the type and the
    // library as given (not its private copy).
    assert!(
        lines[1].contains(&format!(
            "fixture-panic backend: the plugin {} panicked in `stream`: fixture: stream panics",
            library.display()
        )),
        "{text}"
    );
    assert_eq!(lines[2], "0 passed, 1 failed, 0 skipped");

    let out = plugins_test(
        &sb,
        &[library.as_os_str(), "--json".as_ref()],
        Some("exit_code_is_reported"),
    );
    assert_eq!(code(&out), 1, "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["failed"], 1);
    assert_eq!(json["cases"][0]["outcome"], "failed");
    assert!(
        json["cases"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("panicked in `stream`"),
        "{json:#}"
    );
}

#[test]
fn plugins_test_of_a_library_that_does_not_load_fails_in_one_line() {
    let sb = Sandbox::new();
    let junk = sb.write("libjunk.so", "not a library");
    let out = plugins_test(&sb, &[junk.as_os_str()], None);
    assert_eq!(code(&out), 1, "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(&format!(
            "FAIL  load: {}: not a berth plugin: ",
            junk.display()
        )),
        "{text}"
    );
    assert_eq!(lines[1], "0 passed, 1 failed, 0 skipped");

    // A missing library is berth's own error.
    let out = plugins_test(&sb, &[sb.files().join("nope.so").as_os_str()], None);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(stderr(&out).contains("cannot read the library"), "{out:?}");
}

#[test]
fn plugins_install_checks_the_library_and_copies_it_atomically() {
    let sb = Sandbox::new();
    let library = sb.files().join("libfixture.so");
    runtime_conformance::fixture_plugin::build("", &library);
    // A group-writable source is fine: what is installed is a checked copy.
    std::fs::set_permissions(&library, std::fs::Permissions::from_mode(0o664)).unwrap();
    let dir = sb.files().join("data/berth/plugins");
    let install = |lib: &Path, extra: &[&str]| {
        let mut cmd = sb.berth(["plugins", "install"]);
        cmd.arg(lib).arg("--plugin-dir").arg(&dir).args(extra);
        cmd.output().expect("running berth")
    };

    // A fresh directory (and its missing parents) is created 0755 and the
    // library lands there 0755, under its own name.
    let out = install(&library, &[]);
    assert_eq!(code(&out), 0, "{out:?}");
    let installed = dir.join("libfixture.so");
    assert_eq!(
        stdout(&out),
        format!(
            "installed {} (plugin directory from --plugin-dir): serves type `fixture`\n",
            installed.display()
        )
    );
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(mode(dir.parent().unwrap()), 0o755);
    assert_eq!(mode(&installed), 0o755);
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&library).unwrap()
    );
    let listing = sb.run(["plugins".as_ref(), "--plugin-dir".as_ref(), dir.as_os_str()]);
    assert!(
        stdout(&listing).contains(&format!("loaded {}: type `fixture`", installed.display())),
        "{listing:?}"
    );

    // Installing it again replaces the library of that name.
    let out = install(&library, &[]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(
        stdout(&out).ends_with(", replacing the library of that name\n"),
        "{out:?}"
    );

    // Another library serving the same type is refused, unless --force,
    // which removes the one it displaces.
    let other = sb.files().join("libother.so");
    std::fs::copy(&library, &other).unwrap();
    let out = install(&other, &[]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "berth: error: {} declares type `fixture`, which {} already serves; pass --force to \
             replace that library\n",
            other.display(),
            installed.display()
        )
    );
    assert!(!dir.join("libother.so").exists());
    let out = install(&other, &["--force"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        stdout(&out),
        format!(
            "installed {} (plugin directory from --plugin-dir): serves type `fixture`\nremoved {}: \
             it served type `fixture`\n",
            dir.join("libother.so").display(),
            installed.display()
        )
    );
    assert!(!installed.exists());

    // A library declaring a built-in's type is refused, --force or not.
    let local = sb.files().join("liblocal.so");
    runtime_conformance::fixture_plugin::build("type-local", &local);
    for extra in [&[][..], &["--force"][..]] {
        let out = install(&local, extra);
        assert_eq!(code(&out), 125, "{out:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "berth: error: {}: declares backend type `local`, already registered by built-in \
                 (runtime_local); nothing was installed\n",
                local.display()
            )
        );
    }

    // A library that does not load is not installed, in one line.
    let junk = sb.write("libjunk.so", "not a library");
    let out = install(&junk, &[]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert_eq!(stderr(&out).lines().count(), 1, "{out:?}");
    assert!(
        stderr(&out).contains("not a berth plugin")
            && stderr(&out).contains("nothing was installed"),
        "{out:?}"
    );
    // Nothing but the installed library is left in the directory: no
    // temporary file of the copy.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["libother.so"]);

    // A plugin directory others may write would not be loaded from: the
    // loader's rule refuses the install.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = install(&library, &[]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(
        stderr(&out).contains("the plugin directory would not be loaded from")
            && stderr(&out).contains("chmod go-w"),
        "{out:?}"
    );
    assert!(!installed.exists());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Without any plugin directory configured, it says how to give one.
    let out = sb
        .berth(["plugins", "install"])
        .arg(&library)
        .env_remove("BERTH_PLUGIN_DIR")
        .env_remove("XDG_DATA_HOME")
        .env_remove("HOME")
        .output()
        .unwrap();
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(stderr(&out).contains("pass --plugin-dir DIR"), "{out:?}");
    assert_eq!(check_dirs_left(&sb), Vec::<String>::new());
}
