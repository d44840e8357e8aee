//! `berth plugins` and `berth run` with a real plugin library in the plugin
//! directory: the plugin's type is listed with its path and runs exactly
//! like a built-in; bad libraries are listed one line each.

use crate::common::Sandbox;

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn a_plugin_type_is_listed_and_runs_like_a_built_in() {
    let sb = Sandbox::new();
    let plugins = sb.files().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    runtime_conformance::fixture_plugin::build("", &plugins.join("libfixture.so"));
    std::fs::write(plugins.join("libjunk.so"), "not a library").unwrap();

    let out = sb.run([
        "plugins".as_ref(),
        "--plugin-dir".as_ref(),
        plugins.as_os_str(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let fixture = text
        .lines()
        .find(|l| l.contains("fixture"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(fixture.contains("libfixture.so"), "{text}");
    let skipped: Vec<&str> = text.lines().filter(|l| l.starts_with("skipped ")).collect();
    assert_eq!(skipped.len(), 1, "{text}");
    assert!(
        skipped[0].contains("libjunk.so") && skipped[0].contains("not a berth plugin"),
        "{text}"
    );

    let spec = sb.write("fixture.yaml", "type: fixture\nname: via-plugin\n");
    let out = sb.run([
        "--plugin-dir".as_ref(),
        plugins.as_os_str(),
        "run".as_ref(),
        "--env".as_ref(),
        spec.as_os_str(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        "echo through the plugin; exit 3".as_ref(),
    ]);
    assert_eq!(code(&out), 3, "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through the plugin\n");
    sb.assert_no_session_dirs();
}

#[test]
fn plugins_others_can_write_are_refused_and_doctor_says_so() {
    use std::os::unix::fs::PermissionsExt as _;
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let sb = Sandbox::new();
    let plugins = sb.files().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    chmod(&plugins, 0o755);
    let library = plugins.join("libfixture.so");
    runtime_conformance::fixture_plugin::build("", &library);

    // A library its group can write is not loaded; the others are.
    chmod(&library, 0o775);
    let out = sb.run([
        "plugins".as_ref(),
        "--plugin-dir".as_ref(),
        plugins.as_os_str(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.lines().any(|l| l.starts_with("fixture")), "{text}");
    let skipped: Vec<&str> = text.lines().filter(|l| l.starts_with("skipped ")).collect();
    assert_eq!(skipped.len(), 1, "{text}");
    assert!(
        skipped[0].contains(&library.display().to_string())
            && skipped[0].contains("writable by its group"),
        "{text}"
    );
    let out = sb.run([
        "--plugin-dir".as_ref(),
        plugins.as_os_str(),
        "doctor".as_ref(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains(&format!("plugin {}", library.display())))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with("FAIL") && line.contains("refused"),
        "{line}"
    );

    // A plugin directory anyone can write loads nothing, and doctor fails
    // the directory's own check, naming it.
    chmod(&library, 0o755);
    chmod(&plugins, 0o777);
    let out = sb.run([
        "--plugin-dir".as_ref(),
        plugins.as_os_str(),
        "doctor".as_ref(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("plugin directory:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with("FAIL")
            && line.contains(&plugins.display().to_string())
            && line.contains("writable by group and others"),
        "{line}"
    );
    assert!(!text.contains("backend fixture"), "{text}");

    // Fixed, it loads again.
    chmod(&plugins, 0o755);
    let out = sb.run([
        "--plugin-dir".as_ref(),
        plugins.as_os_str(),
        "doctor".as_ref(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("backend fixture"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok  ") && l.contains("plugin directory:")),
        "{text}"
    );
}
