//! Talking to the engine: `doctor`'s line, and clear one-line errors for a
//! missing image and an unreachable engine (also through `DOCKER_HOST`).

use std::sync::Arc;

use runtime_docker::DockerBackend;
use session_core::registry::Registry;
use session_core::runtime::{Backend, BackendOrigin};
use session_core::session::{Session, SpawnOptions};

const MISSING_SOCKET: &str = "unix:///nonexistent/berth-test/docker.sock";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_reports_the_engine_and_its_version() {
    let _docker = docker_or_skip!();
    let lines = DockerBackend::new().diagnose().await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].ok, "{lines:?}");
    assert!(lines[0].detail.starts_with("Docker Engine "), "{lines:?}");
    assert!(lines[0].detail.contains("(API 1."), "{lines:?}");
    // Then which limits the engine's cgroups enforce.
    assert_eq!(lines[1].check, "limits", "{lines:?}");
    assert!(lines[1].detail.contains("limits.pids"), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_names_it_and_says_to_build_it() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("noimage");
    let spec = session_core::EnvironmentSpec::from_yaml_str(
        "type: docker\nname: t\ndocker: {image: 'berth-no-such-image:never'}\n",
        "<test>",
    )
    .expect("spec");
    let mut session = crate::support::session(spec, &prefix, &temp.path().join("sessions")).await;
    let err = session
        .spawn(SpawnOptions::default())
        .await
        .expect_err("no such image")
        .to_string();
    assert!(
        err.starts_with(
            "docker backend: image `berth-no-such-image:never` is not on the Docker Engine"
        ),
        "{err}"
    );
    assert!(err.contains("build or load it locally"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

/// Spawning through a backend whose engine socket does not exist.
async fn spawn_error(backend: DockerBackend) -> String {
    let mut registry = Registry::empty();
    registry
        .register(Arc::new(backend), BackendOrigin::BuiltIn("test".into()))
        .expect("register");
    let temp = tempfile::tempdir().expect("tempdir");
    let mut session = Session::builder(crate::support::spec("", ""))
        .registry(registry.shared())
        .temp_root(temp.path())
        .prepare()
        .await
        .expect("prepare");
    let err = session
        .spawn(SpawnOptions::default())
        .await
        .expect_err("no engine there")
        .to_string();
    session.close().await.expect("close");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_engine_is_one_clear_line() {
    let err = spawn_error(DockerBackend::with_host(MISSING_SOCKET)).await;
    assert_eq!(
        err,
        format!(
            "docker backend: cannot reach the Docker Engine at {MISSING_SOCKET} (from configured): \
             no socket at `/nonexistent/berth-test/docker.sock`; is dockerd running?"
        )
    );
    let lines = DockerBackend::with_host(MISSING_SOCKET).diagnose().await;
    assert!(
        !lines[0].ok && lines[0].detail.contains("no socket at"),
        "{lines:?}"
    );
    let gc = DockerBackend::with_host(MISSING_SOCKET)
        .collect_garbage(true)
        .await
        .expect_err("gc needs the engine");
    assert!(gc.to_string().contains(MISSING_SOCKET), "{gc}");

    // A socket file nobody listens on: the engine is not running.
    let temp = tempfile::tempdir().expect("tempdir");
    let dead = temp.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).expect("bind"));
    let host = format!("unix://{}", dead.display());
    let err = spawn_error(DockerBackend::with_host(&host)).await;
    assert!(
        err.starts_with(&format!(
            "docker backend: cannot reach the Docker Engine at {host} (from configured): "
        )),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(
        err.ends_with("is dockerd running?") && !err.contains('\n'),
        "{err}"
    );
}

/// Runs in a child process of this test binary, with `DOCKER_HOST` set by
/// the parent (the environment of a running multi-threaded test cannot be
/// changed safely).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_host_is_honoured() {
    if std::env::var_os("BERTH_TEST_DOCKER_HOST_CHILD").is_some() {
        let err = spawn_error(DockerBackend::new()).await;
        assert!(
            err.starts_with(&format!(
                "docker backend: cannot reach the Docker Engine at {MISSING_SOCKET} (from DOCKER_HOST)"
            )),
            "{err}"
        );
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "docker_engine::docker_host_is_honoured",
            "--nocapture",
        ])
        .env("DOCKER_HOST", MISSING_SOCKET)
        .env("BERTH_TEST_DOCKER_HOST_CHILD", "1")
        .output()
        .expect("running the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
