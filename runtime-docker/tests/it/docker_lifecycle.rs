//! What a runtime leaves behind: nothing after cleanup, a drop or a
//! cancelled spawn; its container when asked to keep it; and what
//! `collect_garbage` finds after a crash.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptions;
use runtime_docker::{
    DockerBackend, LABEL_KEEP, LABEL_LEASE_DEADLINE, LABEL_OWNER_HOST, LABEL_OWNER_PID,
    LABEL_SESSION,
};
use session_core::runtime::{Backend, Event, ExecCommand, ExecStatus};
use session_core::session::SpawnOptions;

async fn exists(docker: &Docker, id: &str) -> bool {
    docker.inspect_container(id, None).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_removes_its_container() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("dropped");
    let mut session = crate::support::session(
        crate::support::spec("", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let id = crate::support::container_of_session(&docker, &prefix).await;
    let mut stream = runtime
        .stream(ExecCommand::new("echo running; sleep 300"))
        .await
        .expect("stream");
    assert_eq!(
        stream.next().await,
        Some(Event::Stdout(bytes::Bytes::from_static(b"running\n")))
    );
    drop(runtime);
    drop(session);
    // The command's stream ends once its container is gone.
    let result = tokio::time::timeout(Duration::from_secs(60), stream.finish())
        .await
        .expect("the command ends with its container");
    assert_eq!(result.status, ExecStatus::Lost, "{result:?}");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
    assert!(!exists(&docker, &id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_spawn_removes_its_container() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("cancelled");
    let mut session = crate::support::session(
        crate::support::spec("", "setup: {commands: ['sleep 300']}"),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    // The spawn is dropped once its container exists (setup never ends).
    let appeared = tokio::select! {
        spawned = session.spawn(SpawnOptions::default()) => panic!("setup cannot finish: {spawned:?}"),
        () = async {
            while crate::support::containers_of_sessions(&docker, &prefix).await.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } => true,
    };
    assert!(appeared);
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_reaches_processes_that_left_the_commands_session() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("escaped");
    let mut session = crate::support::session(
        crate::support::spec("", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let started = crate::support::run(
        runtime.as_ref(),
        "setsid sleep 301 >/dev/null 2>&1 & echo $! > escaped.pid",
    )
    .await;
    assert!(started.success(), "{started:?}");
    let alive = crate::support::run(runtime.as_ref(), "kill -0 $(cat escaped.pid)").await;
    assert!(alive.success(), "the escaped process runs: {alive:?}");
    runtime.kill().await.expect("kill");
    let gone = crate::support::run(
        runtime.as_ref(),
        "pid=$(cat escaped.pid); case \"$(grep '^State:' /proc/$pid/status 2>/dev/null)\" in \
         ''|*'Z ('*) echo gone;; *) echo alive;; esac",
    )
    .await;
    assert_eq!(gone.stdout_lossy(), "gone\n", "{gone:?}");
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_removed_under_a_command_makes_it_lost() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("lost");
    let mut session = crate::support::session(
        crate::support::spec("", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let id = crate::support::container_of_session(&docker, &prefix).await;
    let mut stream = runtime
        .stream(ExecCommand::new("echo ready; sleep 300").wall_timeout(Duration::from_secs(120)))
        .await
        .expect("stream");
    assert_eq!(
        stream.next().await,
        Some(Event::Stdout(bytes::Bytes::from_static(b"ready\n")))
    );
    crate::support::force_remove(&docker, &id).await;
    let result = stream.finish().await;
    assert_eq!(result.status, ExecStatus::Lost, "{result:?}");
    let next = crate::support::run(runtime.as_ref(), "true").await;
    assert_eq!(next.status, ExecStatus::Lost, "{next:?}");
    session
        .close()
        .await
        .expect("close (the container is already gone)");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_over_128_are_reported_as_signals() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("status");
    let mut session = crate::support::session(
        crate::support::spec("", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let killed = crate::support::run(runtime.as_ref(), "kill -KILL $$").await;
    assert_eq!(
        (killed.status, killed.signal),
        (ExecStatus::Signaled, Some(9))
    );
    // The engine reports both as 130: berth cannot tell them apart.
    let exited = crate::support::run(runtime.as_ref(), "exit 130").await;
    assert_eq!(
        (exited.status, exited.exit_code),
        (ExecStatus::Signaled, -2)
    );
    let high = crate::support::run(runtime.as_ref(), "exit 200").await;
    assert_eq!((high.status, high.exit_code), (ExecStatus::Exited, 200));
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_container_after_clean_keeps_it_running() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("kept");
    let mut session = crate::support::session(
        crate::support::spec("keep_container_after_clean: true", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let id = crate::support::container_of_session(&docker, &prefix).await;
    drop(runtime);
    session.close().await.expect("close");
    assert!(runtime_docker::wait_for_background_removals(
        Duration::from_secs(30)
    ));
    let inspect = docker.inspect_container(&id, None).await.expect("kept");
    assert_eq!(inspect.state.and_then(|s| s.running), Some(true));
    let labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(labels.get(LABEL_KEEP).map(String::as_str), Some("true"));
    crate::support::force_remove(&docker, &id).await;
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

/// A pid that belonged to a process of this host that has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_owned()
}

/// Creates (without starting) a container with berth's labels, as a
/// crashed host would have left it.
async fn leftover(docker: &Docker, session: &str, labels: &[(&str, String)]) -> String {
    let mut all: HashMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    all.insert(LABEL_SESSION.to_owned(), session.to_owned());
    let body = ContainerCreateBody {
        image: Some(crate::support::IMAGE.to_owned()),
        cmd: Some(vec!["true".to_owned()]),
        labels: Some(all),
        ..ContainerCreateBody::default()
    };
    let options = CreateContainerOptions {
        name: Some(format!("{session}-gc")),
        ..CreateContainerOptions::default()
    };
    docker
        .create_container(Some(options), body)
        .await
        .expect("create a leftover")
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_garbage_removes_containers_of_dead_owners_and_expired_leases() {
    let docker = docker_or_skip!();
    let prefix = crate::support::session_id("gc");
    let host = this_host();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let dead = dead_pid().to_string();
    let me = std::process::id().to_string();
    let owned = |pid: &str, host: &str, deadline: u64| {
        vec![
            (LABEL_OWNER_PID, pid.to_owned()),
            (LABEL_OWNER_HOST, host.to_owned()),
            (LABEL_LEASE_DEADLINE, deadline.to_string()),
        ]
    };
    let orphan = leftover(
        &docker,
        &format!("{prefix}-orphan"),
        &owned(&dead, &host, now + 3600),
    )
    .await;
    let mine = leftover(
        &docker,
        &format!("{prefix}-mine"),
        &owned(&me, &host, now - 3600),
    )
    .await;
    let expired = leftover(
        &docker,
        &format!("{prefix}-expired"),
        &owned("1", "elsewhere.invalid", now - 10),
    )
    .await;
    let leased = leftover(
        &docker,
        &format!("{prefix}-leased"),
        &owned("1", "elsewhere.invalid", now + 3600),
    )
    .await;
    let mut kept_labels = owned(&dead, &host, now - 10);
    kept_labels.push((LABEL_KEEP, "true".to_owned()));
    let kept = leftover(&docker, &format!("{prefix}-kept"), &kept_labels).await;

    let backend = DockerBackend::new();
    let found = |leftovers: &[session_core::runtime::Leftover], id: &str| {
        leftovers
            .iter()
            .find(|l| id.starts_with(l.id.split(' ').next().unwrap_or("-")))
            .cloned()
    };
    let dry = backend.collect_garbage(true).await.expect("dry run");
    let orphan_found = found(&dry, &orphan).expect("the dead owner's container is found");
    assert!(
        !orphan_found.removed
            && orphan_found
                .reason
                .contains(&format!("owner pid {dead} is gone"))
    );
    assert!(
        found(&dry, &expired)
            .expect("expired lease")
            .reason
            .contains("lease")
    );
    for spared in [&mine, &leased, &kept] {
        assert!(found(&dry, spared).is_none(), "{spared} reported: {dry:?}");
    }
    assert!(exists(&docker, &orphan).await, "a dry run removes nothing");

    let collected = backend.collect_garbage(false).await.expect("gc");
    assert!(
        found(&collected, &orphan).is_some_and(|l| l.removed),
        "{collected:?}"
    );
    assert!(
        found(&collected, &expired).is_some_and(|l| l.removed),
        "{collected:?}"
    );
    assert!(!exists(&docker, &orphan).await && !exists(&docker, &expired).await);
    for spared in [&mine, &leased, &kept] {
        assert!(exists(&docker, spared).await, "{spared} was removed");
        crate::support::force_remove(&docker, spared).await;
    }
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_only_its_own_command() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("concurrent");
    let mut session = crate::support::session(
        crate::support::spec("", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let workspace = session.workspace_path().expect("workspace");
    // The survivor waits for a file the test writes once the other
    // command has timed out, so both run at once.
    let survivor = runtime
        .stream(
            ExecCommand::new("echo a; while [ ! -e go ]; do sleep 0.05; done; echo a-done")
                .wall_timeout(Duration::from_secs(60)),
        )
        .await
        .expect("stream");
    let timed_out = runtime
        .execute(
            ExecCommand::new("echo b; sleep 30 & sleep 30")
                .wall_timeout(Duration::from_millis(500)),
        )
        .await
        .expect("execute");
    assert_eq!(timed_out.status, ExecStatus::TimedOut, "{timed_out:?}");
    assert_eq!(timed_out.stdout_lossy(), "b\n");
    std::fs::write(workspace.join("go"), "").expect("write go");
    let result = survivor.finish().await;
    assert!(result.success(), "{result:?}");
    assert_eq!(result.stdout_lossy(), "a\na-done\n");
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}
