//! Plugins as real dylibs built during the test run and loaded through the
//! real loader: a working plugin passes the conformance suite, and every
//! kind of bad library is reported in one line and skipped.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use runtime_conformance::{Target, run_suite};
use session_core::registry::Registry;
use session_core::runtime::{BackendOrigin, ExecCommand};
use session_core::session::{Session, SpawnOptions};
use session_core::{EnvironmentSpec, Error};

/// Everything in one test, sequentially: the fixture's variants share one
/// output file name, so their builds must not interleave.
#[test]
fn plugins_load_work_and_bad_libraries_are_reported() {
    let logs = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    runtime_conformance::fixture_plugin::build("", &plugins.join("a-fixture.so"));
    std::fs::copy(plugins.join("a-fixture.so"), plugins.join("b-duplicate.so")).unwrap();
    runtime_conformance::fixture_plugin::build("panic", &plugins.join("c-panicking.so"));
    runtime_conformance::fixture_plugin::build("abi-999", &plugins.join("d-wrong-abi.so"));
    std::fs::write(plugins.join("e-junk.so"), "this is not a library").unwrap();
    runtime_conformance::fixture_plugin::build(
        "layout-mismatch",
        &plugins.join("g-wrong-layout.so"),
    );
    let c_source = dir.path().join("lib.c");
    std::fs::write(&c_source, "int not_berth(void) { return 1; }\n").unwrap();
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(plugins.join("f-not-berth.so"))
        .arg(&c_source)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(plugins.join("README.txt"), "not a library at all").unwrap();

    let mut registry = Registry::with_builtins().unwrap();
    let report = session_core::plugin::load_directory(&plugins, &mut registry);

    let loaded: Vec<(String, Vec<String>)> = report
        .loaded
        .iter()
        .map(|l| (file_name(&l.path), l.types.clone()))
        .collect();
    assert_eq!(
        loaded,
        [
            ("a-fixture.so".to_owned(), vec!["fixture".to_owned()]),
            (
                "c-panicking.so".to_owned(),
                vec!["fixture-panic".to_owned()]
            ),
        ]
    );
    let problems: Vec<(String, String)> = report
        .problems
        .iter()
        .map(|p| (file_name(&p.path), p.reason.clone()))
        .collect();
    assert_eq!(problems.len(), 5, "{problems:#?}");
    let reason = |name: &str| {
        problems
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, r)| r.clone())
            .unwrap()
    };
    let duplicate = reason("b-duplicate.so");
    assert!(
        duplicate.contains("`fixture`") && duplicate.contains("a-fixture.so"),
        "{duplicate}"
    );
    // Both sides' versions, from the library's build record.
    let versions = format!(
        "host: berth {}, plugin ABI {}; library: berth-plugin-fixture {}, built with berth {}",
        session_core::plugin::BERTH_VERSION,
        session_core::plugin::ABI_VERSION,
        env!("CARGO_PKG_VERSION"),
        session_core::plugin::BERTH_VERSION,
    );
    let abi = reason("d-wrong-abi.so");
    assert_eq!(
        abi,
        format!(
            "incompatible plugin: built for plugin ABI version 999, this host speaks version {}; \
             {versions} for plugin ABI 999",
            session_core::plugin::ABI_VERSION
        )
    );
    // The first item where the layouts differ, from abi_stable's structured
    // errors, instead of its multi-kilobyte report.
    let layout = reason("g-wrong-layout.so");
    assert_eq!(
        layout,
        format!(
            "incompatible plugin: its root module's layout differs from this host's at \
             `PluginModule`: a different number of prefix fields (this host: 3, the library: \
             4); {versions} for plugin ABI {}",
            session_core::plugin::ABI_VERSION
        )
    );
    assert!(
        reason("e-junk.so").starts_with("not a berth plugin"),
        "{}",
        reason("e-junk.so")
    );
    assert!(
        reason("f-not-berth.so").starts_with("not a berth plugin"),
        "{}",
        reason("f-not-berth.so")
    );
    for problem in &report.problems {
        let line = problem.to_string();
        assert_eq!(line.lines().count(), 1, "one line each: {line:?}");
        assert!(line.contains(&problem.path.display().to_string()));
        assert!(line.len() < 600, "short: {line}");
    }
    for loaded in &report.loaded {
        assert!(loaded.load_time.as_secs() < 30);
    }
    assert!(
        matches!(registry.describe().iter().find(|(i, _)| i.type_name == "fixture"), Some((_, BackendOrigin::Plugin(p))) if p.ends_with("a-fixture.so"))
    );

    // A taken type is refused before the plugin's `init`: it starts no
    // runtime (no threads), installs no log forwarder and no panic hook.
    let late = dir.path().join("late-duplicate.so");
    std::fs::copy(plugins.join("a-fixture.so"), &late).unwrap();
    // Each loaded plugin runs a runtime with one worker.
    let threads = plugin_threads_at_least(report.loaded.len());
    assert!(!threads.is_empty(), "the loaded plugins run their runtimes");
    let refused = session_core::plugin::load_library(&late, &mut registry).unwrap_err();
    assert!(
        refused.contains("`fixture`") && refused.contains("a-fixture.so"),
        "{refused}"
    );
    let started: Vec<_> = plugin_threads().difference(&threads).cloned().collect();
    assert!(
        started.is_empty(),
        "the refused plugin started threads {started:?}"
    );

    // A plugin built before `describe` existed (its root module is the
    // prefix alone) still loads; a taken type is then found after its
    // `init`, and still refused in one line.
    let old = dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    runtime_conformance::fixture_plugin::build("without-describe", &old.join("libold.so"));
    let mut fresh = Registry::empty();
    let before = plugin_threads();
    let loaded = session_core::plugin::load_library(&old.join("libold.so"), &mut fresh).unwrap();
    assert_eq!(loaded.types, ["fixture"]);
    assert!(
        plugin_threads_at_least(before.len() + 1).len() > before.len(),
        "it was started to ask its types"
    );
    // It does not start commands either: `execute` makes the blocking call.
    let old_runtime = tokio::runtime::Runtime::new().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let result = old_runtime.block_on(async {
        let backend = fresh.get("fixture").unwrap();
        let ctx = session_core::runtime::SpawnContext::new(
            "old-plugin",
            workspace.path(),
            session_core::spec::Mode::Evaluation,
        );
        let spec = EnvironmentSpec::new("fixture", "old");
        let runtime = backend.spawn(&spec, ctx).await.unwrap();
        let result = runtime.execute(ExecCommand::new("echo old")).await.unwrap();
        runtime.cleanup().await.unwrap();
        result
    });
    assert_eq!(result.stdout.bytes, b"old\n", "{result:?}");
    let refused =
        session_core::plugin::load_library(&old.join("libold.so"), &mut registry).unwrap_err();
    assert!(
        refused.starts_with("declares backend type `fixture`, already registered by ")
            && refused.ends_with("a-fixture.so"),
        "{refused}"
    );

    // The plugin's own log events reach the host's subscriber.
    assert!(
        logs.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("fixture plugin ready")),
        "{:?}",
        logs.lock().unwrap()
    );

    let registry = registry.shared();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // A panicking plugin gives errors, never an abort.
    runtime.block_on(panicking_plugin_gives_errors(
        Arc::clone(&registry),
        dir.path(),
    ));

    // The working plugin passes the whole suite through dlopen.
    let target = Target::with_registry(EnvironmentSpec::new("fixture", "conformance"), registry)
        .label("fixture plugin (dlopen)");
    let report = runtime.block_on(run_suite(target));
    let rendered = report.render();
    assert_eq!(report.failed(), 0, "{rendered}");
    assert!(report.passed() > 20, "{rendered}");
}

async fn panicking_plugin_gives_errors(registry: Arc<Registry>, temp: &Path) {
    let mut session = Session::builder(EnvironmentSpec::new("fixture-panic", "panics"))
        .registry(Arc::clone(&registry))
        .temp_root(temp.join("sessions"))
        .prepare()
        .await
        .unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let library = temp.join("plugins/c-panicking.so");
    let panicked = |operation: &str, message: &str| {
        format!(
            "fixture-panic backend: the plugin {} panicked in `{operation}`: fixture: {message}",
            library.display()
        )
    };
    // The panic's message survives `stream`, on the command's stderr.
    let result = rt.execute(ExecCommand::new("true")).await.unwrap();
    assert_eq!(
        result.stderr_lossy(),
        format!("berth: {}\n", panicked("stream", "stream panics")),
        "{result:?}"
    );
    assert_eq!(
        rt.kill().await.unwrap_err().to_string(),
        panicked("kill", "kill panics")
    );
    let backend = registry.get("fixture-panic").unwrap();
    assert!(
        backend
            .collect_garbage(true)
            .await
            .unwrap_err()
            .to_string()
            .contains("panicked")
    );
    let diagnosis = backend.diagnose().await;
    assert!(
        diagnosis
            .iter()
            .any(|d| !d.ok && d.detail.contains("panicked")),
        "{diagnosis:?}"
    );
    let err = session.close().await.unwrap_err();
    assert!(
        matches!(&err, Error::Backend { message, .. } if message.contains("panicked")),
        "{err}"
    );
}

/// Threads of this process named as plugin runtimes name theirs.
/// The ids of this process's threads that plugin runtimes run
/// (`berth-plugin`). Compared as sets: an idle blocking thread of a
/// plugin's runtime may end at any moment, so counts alone would mislead.
fn plugin_threads() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim_end() == "berth-plugin")
        })
        .map(|task| task.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The plugin threads once there are at least `count` of them, waiting up
/// to 30 s: a thread takes its name itself when it first runs, so on a busy
/// machine a runtime's workers can exist for a while under another name.
fn plugin_threads_at_least(count: usize) -> std::collections::BTreeSet<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let threads = plugin_threads();
        if threads.len() >= count || std::time::Instant::now() > deadline {
            return threads;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Installs a global subscriber that keeps every event's text.
fn capture_logs() -> Arc<Mutex<Vec<String>>> {
    use tracing_subscriber::layer::SubscriberExt;

    struct Keep(Arc<Mutex<Vec<String>>>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Keep {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Text(String);
            impl tracing::field::Visit for Text {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0.push_str(&format!("{}={:?} ", field.name(), value));
                }
            }
            let mut text = Text(format!("{} ", event.metadata().target()));
            event.record(&mut text);
            self.0.lock().unwrap().push(text.0);
        }
    }
    let lines = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Keep(Arc::clone(&lines)));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    lines
}
