//! The namespace backend as it ships: the cdylib built during the test
//! run, loaded through the real plugin loader from a plugin directory,
//! then isolation checks and the whole conformance suite through it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use runtime_conformance::fixture_plugin::build_workspace_cdylib;
use runtime_conformance::{Target, run_suite};
use session_core::EnvironmentSpec;
use session_core::registry::Registry;
use session_core::runtime::{BackendOrigin, ExecCommand, ExecStatus};
use session_core::session::{Session, SpawnOptions};

#[test]
fn the_dylib_loads_isolates_and_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(
        build_workspace_cdylib("runtime-namespace", ""),
        plugins.join("libruntime_namespace.so"),
    )
    .unwrap();

    let mut registry = Registry::empty();
    let report = session_core::plugin::load_directory(&plugins, &mut registry);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.loaded.len(), 1);
    assert_eq!(report.loaded[0].types, ["namespace"]);
    let (info, origin) = registry.describe().into_iter().next().unwrap();
    assert!(matches!(origin, BackendOrigin::Plugin(p) if p.ends_with("libruntime_namespace.so")));
    assert!(info.capabilities.network_isolation && info.capabilities.mounts);
    let registry = registry.shared();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(isolation_through_the_dylib(
        Arc::clone(&registry),
        dir.path(),
    ));

    let target = Target::with_registry(EnvironmentSpec::new("namespace", "conformance"), registry)
        .label("namespace plugin (dlopen)");
    let report = runtime.block_on(run_suite(target));
    let rendered = report.render();
    assert_eq!(report.failed(), 0, "{rendered}");
    assert_eq!(report.skipped(), 0, "{rendered}");
    assert!(report.passed() >= 30, "{rendered}");
}

async fn isolation_through_the_dylib(registry: Arc<Registry>, temp: &Path) {
    let checks = registry.get("namespace").unwrap().diagnose().await;
    // Namespaces, the sandbox and its commands' seccomp filter work; then
    // come the limits, as this host allows them.
    assert!(
        checks.len() > 3 && checks[..3].iter().all(|c| c.ok),
        "{checks:?}"
    );
    assert!(
        checks.iter().any(|c| c.check == "limits.memory"),
        "{checks:?}"
    );

    let secret = temp.join("secret.txt");
    std::fs::write(&secret, "host secret\n").unwrap();
    let mut session = Session::builder(EnvironmentSpec::new("namespace", "dylib"))
        .registry(registry)
        .temp_root(temp.join("sessions"))
        .prepare()
        .await
        .unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let me = std::process::id();
    let result = crate::support::run(
        rt.as_ref(),
        &format!(
            "cat {secret}; ls /proc/{me}; echo x > /usr/berth-test; \
             bash -c 'exec 3<>/dev/tcp/127.0.0.1/22'",
            secret = secret.display()
        ),
    )
    .await;
    assert!(
        !result.success() && result.stdout.bytes.is_empty(),
        "{result:?}"
    );
    let stderr = result.stderr_lossy();
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        2,
        "{stderr}"
    );
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");

    let result = rt
        .execute(
            ExecCommand::new(
                "readlink /proc/self/ns/pid > ns; setsid sleep 300 >/dev/null 2>&1 & sleep 300",
            )
            .wall_timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap();
    assert_eq!(result.status, ExecStatus::TimedOut, "{result:?}");
    let ns = crate::support::wait_for_line(&session.workspace_path().unwrap().join("ns"));
    assert_eq!(crate::support::wait_until_empty(&ns), Vec::<u32>::new());
    session.close().await.unwrap();
}
