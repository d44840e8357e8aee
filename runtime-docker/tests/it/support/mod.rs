//! What the docker tests share: the engine, a small image built once per
//! machine from Debian's `busybox-static`, specs and leak checks.
//!
//! Every test first calls [`prepare`]. When the engine cannot be reached or
//! the image cannot be built, it returns the reason and the test calls
//! [`skip`]: on a machine without an engine that reports the test skipped
//! (`runtime_conformance::skip`, which `cargo xtask test` counts) and the
//! test returns; in CI, or where an engine is installed
//! (`runtime_docker::test_image::engine_required`), it fails the test. On
//! machines with a working engine the image is built (once, under a file
//! lock, so concurrent test processes share it) and the test runs.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::print_stderr,
    reason = "shared by several test crates, each using part of it; skips are reported on stderr"
)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use session_core::EnvironmentSpec;
use session_core::session::Session;
use tokio::sync::OnceCell;

pub use runtime_docker::test_image::IMAGE;

/// A client for the engine (from `DOCKER_HOST` or the default socket) with
/// [`IMAGE`] present, or why the docker tests cannot run here.
pub async fn prepare() -> Result<Docker, String> {
    static READY: OnceCell<Result<(), String>> = OnceCell::const_new();
    let docker = connect().await?;
    let ready = READY
        .get_or_init(|| async { ensure_image(&connect().await?).await })
        .await;
    ready.clone().map(|()| docker)
}

/// Reports why a test is skipped, or fails it when the engine must be
/// usable here.
pub fn skip(reason: &str) {
    if let Some(why) = runtime_docker::test_image::engine_required() {
        panic!(
            "the Docker Engine is not usable, and the docker tests must run here ({why}): {reason}"
        );
    }
    runtime_conformance::skipped!("the Docker Engine is not usable here: {reason}");
}

/// Returns from the test (printing why) when the engine is unusable;
/// otherwise evaluates to the engine client.
#[macro_export]
macro_rules! docker_or_skip {
    () => {
        match $crate::support::prepare().await {
            Ok(docker) => docker,
            Err(reason) => {
                $crate::support::skip(&reason);
                return;
            }
        }
    };
}

async fn connect() -> Result<Docker, String> {
    runtime_docker::test_image::connect().await
}

async fn ensure_image(docker: &Docker) -> Result<(), String> {
    runtime_docker::test_image::ensure(docker).await
}

/// A `type: docker` spec on [`IMAGE`] with the given extra `docker:` keys
/// (YAML flow-mapping entries, may be empty) and top-level sections.
pub fn spec(docker_keys: &str, sections: &str) -> EnvironmentSpec {
    let sep = if docker_keys.is_empty() { "" } else { ", " };
    let text = format!(
        "type: docker\nname: test\ndocker: {{image: '{IMAGE}'{sep}{docker_keys}}}\n{sections}\n"
    );
    EnvironmentSpec::from_yaml_str(&text, "<test>").expect("test spec parses")
}

/// A session id unique to this test process, starting with `prefix`.
pub fn session_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A prepared evaluation session of `spec` with the id `id`, its session
/// directory under `root`.
pub async fn session(spec: EnvironmentSpec, id: &str, root: &Path) -> Session {
    Session::builder(spec)
        .session_id(id)
        .temp_root(root)
        .prepare()
        .await
        .expect("session prepares")
}

/// Every berth container (running or not) on the engine.
pub async fn berth_containers(docker: &Docker) -> Vec<ContainerSummary> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_owned(),
            vec![runtime_docker::LABEL_SESSION.to_owned()],
        )])),
        ..ListContainersOptions::default()
    };
    docker
        .list_containers(Some(options))
        .await
        .expect("listing containers")
}

fn label<'a>(summary: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    summary.labels.as_ref()?.get(key).map(String::as_str)
}

/// Ids of berth containers whose session id starts with `prefix`.
pub async fn containers_of_sessions(docker: &Docker, prefix: &str) -> Vec<String> {
    berth_containers(docker)
        .await
        .iter()
        .filter(|c| label(c, runtime_docker::LABEL_SESSION).is_some_and(|s| s.starts_with(prefix)))
        .filter_map(|c| c.id.clone())
        .collect()
}

/// Ids of berth containers this process created.
pub async fn containers_of_this_process(docker: &Docker) -> Vec<String> {
    let me = std::process::id().to_string();
    berth_containers(docker)
        .await
        .iter()
        .filter(|c| label(c, runtime_docker::LABEL_OWNER_PID) == Some(me.as_str()))
        .filter_map(|c| c.id.clone())
        .collect()
}

/// Asserts that no container of sessions starting with `prefix` is left,
/// once the removals started by dropped runtimes have finished.
pub async fn assert_no_containers_left(docker: &Docker, prefix: &str) {
    let finished = tokio::task::spawn_blocking(|| {
        runtime_docker::wait_for_background_removals(Duration::from_secs(30))
    })
    .await
    .expect("waiting for removals");
    assert!(finished, "background removals did not finish");
    // A container let go of stops at once; the engine removes it
    // (`AutoRemove`) on its own time.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = containers_of_sessions(docker, prefix).await;
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "containers left behind: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 30 s) until the engine no longer has container `id`.
pub async fn assert_removed(docker: &Docker, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while docker.inspect_container(id, None).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "container {id} is still there 30 s later"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes a container, running or not, if it exists.
pub async fn force_remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptions {
        force: true,
        ..RemoveContainerOptions::default()
    };
    let _ = docker.remove_container(id, Some(options)).await;
}

/// The id of the one container of session `id`.
pub async fn container_of_session(docker: &Docker, id: &str) -> String {
    let found: Vec<String> = berth_containers(docker)
        .await
        .iter()
        .filter(|c| label(c, runtime_docker::LABEL_SESSION) == Some(id))
        .filter_map(|c| c.id.clone())
        .collect();
    assert_eq!(found.len(), 1, "containers of session {id}: {found:?}");
    found.into_iter().next().expect("one container")
}

/// Runs `command` in `runtime` with a generous wall timeout.
pub async fn run(
    runtime: &dyn session_core::runtime::Runtime,
    command: &str,
) -> session_core::runtime::ExecResult {
    runtime
        .execute(
            session_core::runtime::ExecCommand::new(command).wall_timeout(Duration::from_secs(60)),
        )
        .await
        .expect("execute")
}
