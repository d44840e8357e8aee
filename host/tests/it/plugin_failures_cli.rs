//! What berth says when a plugin goes wrong, through the built binary: a
//! layout or ABI mismatch in one line with both sides' versions, each
//! skipped library once per process, a plugin's spec errors naming the
//! spec file, a plugin's panic naming its type and library through
//! `stream`, and an unknown type saying where plugins were looked for.

use std::path::Path;

use crate::common::{Sandbox, code, stderr, stdout};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Both sides' versions as a mismatch line ends with them.
fn versions(plugin_abi: u32) -> String {
    format!(
        "host: berth {VERSION}, plugin ABI 1; library: berth-plugin-fixture {VERSION}, built with \
         berth {VERSION} for plugin ABI {plugin_abi}"
    )
}

#[test]
fn incompatible_libraries_are_one_line_each_once_per_process() {
    let sb = Sandbox::new();
    let plugins = sb.files().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let wrong_abi = plugins.join("libwrong-abi.so");
    let wrong_layout = plugins.join("libwrong-layout.so");
    runtime_conformance::fixture_plugin::build("abi-999", &wrong_abi);
    runtime_conformance::fixture_plugin::build("layout-mismatch", &wrong_layout);

    let abi_line = format!(
        "{}: incompatible plugin: built for plugin ABI version 999, this host speaks version 1; {}",
        wrong_abi.display(),
        versions(999)
    );
    let layout_line = format!(
        "{}: incompatible plugin: its root module's layout differs from this host's at \
         `PluginModule`: a different number of prefix fields (this host: 3, the library: 4); {}",
        wrong_layout.display(),
        versions(1)
    );

    let out = sb.run([
        "plugins".as_ref(),
        "--plugin-dir".as_ref(),
        plugins.as_os_str(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = stdout(&out);
    let skipped: Vec<&str> = text.lines().filter(|l| l.starts_with("skipped ")).collect();
    assert_eq!(
        skipped,
        [
            format!("skipped {abi_line}"),
            format!("skipped {layout_line}")
        ]
    );

    // `berth plugins test` says the same, in one line.
    let out = sb.run([
        "plugins".as_ref(),
        "test".as_ref(),
        wrong_layout.as_os_str(),
    ]);
    assert_eq!(code(&out), 1, "{out:?}");
    assert_eq!(
        stdout(&out),
        format!("FAIL  load: {layout_line}\n0 passed, 1 failed, 0 skipped\n")
    );

    // A command of another backend still runs; each skipped library is
    // reported once, at every log level.
    // (`None`: without `RUST_LOG`, where the log is made at the first
    // warning.)
    for level in [Some("warn"), Some("debug"), None] {
        let mut berth = sb.berth([
            "--plugin-dir".as_ref(),
            plugins.as_os_str(),
            "run".as_ref(),
            "true".as_ref(),
        ]);
        match level {
            Some(level) => berth.env("RUST_LOG", level),
            None => berth.env_remove("RUST_LOG"),
        };
        let out = berth.output().unwrap();
        assert_eq!(code(&out), 0, "{out:?}");
        let err = stderr(&out);
        for library in [&wrong_abi, &wrong_layout] {
            let name = library.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(
                err.lines().filter(|l| l.contains(&name)).count(),
                1,
                "{level:?}: {err}"
            );
        }
    }
}

#[test]
fn a_plugins_spec_errors_name_the_spec_file_like_a_built_ins() {
    let sb = Sandbox::new();
    let plugins = sb.files().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    runtime_conformance::fixture_plugin::build("", &plugins.join("libfixture.so"));
    let spec_error = |backend: &str| {
        let spec = sb.write(
            &format!("{backend}-typo.yaml"),
            &format!("type: {backend}\nname: typo\n{backend}:\n  shel: /bin/sh\n"),
        );
        let out = sb.run([
            "--plugin-dir".as_ref(),
            plugins.as_os_str(),
            "run".as_ref(),
            "--env".as_ref(),
            spec.as_os_str(),
            "true".as_ref(),
        ]);
        assert_eq!(code(&out), 125, "{out:?}");
        (spec, stderr(&out))
    };
    for backend in ["local", "fixture"] {
        let (spec, err) = spec_error(backend);
        assert_eq!(
            err,
            format!(
                "berth: error: {}: {backend}.shel: unknown field `shel`, expected `shell` or \
                 `requires_tty`\n",
                spec.display()
            )
        );
    }
}

#[test]
fn a_plugin_panic_names_its_type_and_library_and_survives_stream() {
    let sb = Sandbox::new();
    let plugins = sb.files().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let library = plugins.join("libpanic.so");
    runtime_conformance::fixture_plugin::build("panic", &library);
    let spec = sb.write("panic.yaml", "type: fixture-panic\nname: panics\n");
    let run = |json: bool| {
        let mut cmd = sb.berth(["--plugin-dir".as_ref(), plugins.as_os_str(), "run".as_ref()]);
        cmd.arg("--env").arg(&spec);
        if json {
            cmd.arg("--json");
        }
        cmd.args(["--", "echo", "never"]).output().unwrap()
    };
    let said = format!(
        "berth: fixture-panic backend: the plugin {} panicked in `stream`: fixture: stream panics",
        library.display()
    );

    let out = run(false);
    assert_eq!(code(&out), 125, "{out:?}");
    let err = stderr(&out);
    assert!(err.lines().any(|l| l == said), "{err}");
    assert!(
        err.lines()
            .any(|l| l == "berth: error: the sandbox was lost while the command ran"),
        "{err}"
    );
    // Cleanup panics too: named the same way.
    assert!(
        err.contains(&format!(
            "fixture-panic backend: the plugin {} panicked in `cleanup`: fixture: cleanup panics",
            library.display()
        )),
        "{err}"
    );

    let out = run(true);
    assert_eq!(code(&out), 125, "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "lost");
    assert_eq!(json["stderr"]["text"], format!("{said}\n"));
    sb.assert_no_session_dirs();
}

#[test]
fn an_unknown_type_says_where_plugins_were_looked_for() {
    let sb = Sandbox::new();
    let spec = sb.write("namespace.yaml", "type: namespace\nname: ns\n");
    let unknown = |plugin_dir: Option<&Path>, unset_all: bool| {
        let mut cmd = sb.berth(["run".as_ref(), "--env".as_ref(), spec.as_os_str()]);
        if let Some(dir) = plugin_dir {
            cmd.arg("--plugin-dir").arg(dir);
        }
        if unset_all {
            cmd.env_remove("BERTH_PLUGIN_DIR")
                .env_remove("XDG_DATA_HOME")
                .env_remove("HOME");
        }
        let out = cmd.arg("true").output().unwrap();
        assert_eq!(code(&out), 125, "{out:?}");
        stderr(&out).lines().last().unwrap().to_owned()
    };
    let prefix = "berth: error: unknown backend type `namespace` (registered: api, docker, local";

    // A directory with a plugin that loads and one that does not.
    let plugins = sb.files().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    runtime_conformance::fixture_plugin::build("", &plugins.join("libfixture.so"));
    std::fs::write(plugins.join("libjunk.so"), "not a library").unwrap();
    assert_eq!(
        unknown(Some(&plugins), false),
        format!(
            "{prefix}, fixture); if it is a plugin's type, no library in the plugin directory {} \
             (from --plugin-dir) serves it (loaded: libfixture.so; skipped: libjunk.so; `berth \
             plugins` says why)",
            plugins.display()
        )
    );
    // The sandbox's $BERTH_PLUGIN_DIR, which does not exist.
    assert_eq!(
        unknown(None, false),
        format!(
            "{prefix}); if it is a plugin's type, the plugin directory {} (from \
             $BERTH_PLUGIN_DIR) does not exist",
            sb.files().parent().unwrap().join("plugins").display()
        )
    );
    // `serve --backend` says the same.
    let out = sb
        .berth([
            "--plugin-dir".as_ref(),
            plugins.as_os_str(),
            "serve".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--backend".as_ref(),
            "namespace".as_ref(),
        ])
        .env("BERTH_TOKEN", "a-token-long-enough-for-berth")
        .output()
        .unwrap();
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(
        stderr(&out).contains(&format!(
            "if it is a plugin's type, no library in the plugin directory {}",
            plugins.display()
        )),
        "{out:?}"
    );
    assert_eq!(
        unknown(None, true),
        format!(
            "{prefix}); if it is a plugin's type, no plugin directory is configured \
             (--plugin-dir, $BERTH_PLUGIN_DIR, $XDG_DATA_HOME or $HOME) to load it from"
        )
    );
}
