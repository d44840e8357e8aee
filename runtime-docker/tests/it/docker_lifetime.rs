//! Nothing a command starts outlives it: processes that left the command's
//! session (`setsid`) or were orphaned by a double fork die at a timeout
//! and with a dropped stream, also when the commands run as a user other
//! than root; a kept container keeps running without them; and a container
//! stops when the process that owns it is killed, after which `berth gc`
//! removes it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use runtime_docker::{DockerBackend, LABEL_OWNER_PID};
use session_core::runtime::{Backend, Event, ExecCommand, ExecStatus, Runtime};
use session_core::session::SpawnOptions;

/// Shell that says whether the process whose pid is in `file` is alive
/// (`alive`) or not (`gone`, zombies included).
fn state_of(file: &str) -> String {
    format!(
        "pid=$(cat {file}) || exit 2; case \"$(grep '^State:' /proc/$pid/status 2>/dev/null)\" in \
         ''|*'Z ('*) echo gone;; *) echo alive;; esac"
    )
}

/// Starts, in a command that then sleeps until berth kills it, a process in
/// a session of its own and one orphaned by a double fork, and writes their
/// pids to `/tmp/NAME.setsid` and `/tmp/NAME.orphan`.
fn escaping_command(name: &str) -> String {
    format!(
        "setsid sleep 311 </dev/null >/dev/null 2>&1 & echo $! > /tmp/{name}.setsid; \
         ( sleep 312 </dev/null >/dev/null 2>&1 & echo $! > /tmp/{name}.orphan ) & wait $!; \
         echo started; sleep 300"
    )
}

async fn assert_gone(runtime: &dyn Runtime, name: &str) {
    for kind in ["setsid", "orphan"] {
        let state = crate::support::run(runtime, &state_of(&format!("/tmp/{name}.{kind}"))).await;
        assert_eq!(
            state.stdout_lossy(),
            "gone\n",
            "the {kind} process of `{name}` outlived its command: {state:?}"
        );
    }
}

/// A timeout reports its result only once every process of the command is
/// dead, those outside its session included; a background process of an
/// earlier command is left alone. As root, and as another user (whose
/// processes' environment root in the container cannot read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_processes_that_left_the_session() {
    let docker = docker_or_skip!();
    // Another user cannot enter the caller's workspace: that runtime works
    // in the image's own directory.
    for user in ["", "user: '4242:4242', mount_workspace: false"] {
        let temp = tempfile::tempdir().expect("tempdir");
        let prefix = crate::support::session_id("escape-timeout");
        let mut session = crate::support::session(
            crate::support::spec(user, ""),
            &prefix,
            &temp.path().join("sessions"),
        )
        .await;
        let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
        let earlier = crate::support::run(
            runtime.as_ref(),
            "sleep 313 </dev/null >/dev/null 2>&1 & echo $! > /tmp/earlier.pid",
        )
        .await;
        assert!(earlier.success(), "{earlier:?}");
        let result = runtime
            .execute(
                ExecCommand::new(escaping_command("timeout"))
                    .idle_timeout(Duration::from_secs(1))
                    .wall_timeout(Duration::from_secs(60)),
            )
            .await
            .expect("execute");
        assert_eq!(
            result.status,
            ExecStatus::IdleTimedOut,
            "{user}: {result:?}"
        );
        assert_eq!(result.stdout_lossy(), "started\n", "{user}: {result:?}");
        // No waiting: the result came once the kill was done.
        assert_gone(runtime.as_ref(), "timeout").await;
        let state = crate::support::run(runtime.as_ref(), &state_of("/tmp/earlier.pid")).await;
        assert_eq!(state.stdout_lossy(), "alive\n", "{user}: {state:?}");
        session.close().await.expect("close");
        crate::support::assert_no_containers_left(&docker, &prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_kills_processes_that_left_the_session() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("escape-drop");
    let mut session = crate::support::session(
        crate::support::spec("", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let mut stream = runtime
        .stream(ExecCommand::new(escaping_command("dropped")).wall_timeout(Duration::from_secs(60)))
        .await
        .expect("stream");
    assert_eq!(
        stream.next().await,
        Some(Event::Stdout(bytes::Bytes::from_static(b"started\n")))
    );
    drop(stream);
    // The command's task kills it in the background: look until it is
    // done, within a bound.
    let check = crate::support::run(
        runtime.as_ref(),
        &format!(
            "i=0; while [ $i -lt 100 ]; do s=$({}); o=$({}); \
             [ \"$s $o\" = 'gone gone' ] && echo gone && exit 0; sleep 0.1; i=$((i+1)); done; \
             echo \"$s $o\"",
            state_of("/tmp/dropped.setsid"),
            state_of("/tmp/dropped.orphan")
        ),
    )
    .await;
    assert_eq!(check.stdout_lossy(), "gone\n", "{check:?}");
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

/// Runs `script` in container `id` directly through the engine (the
/// runtime is closed) and returns what it printed.
async fn exec_in(docker: &Docker, id: &str, script: &str) -> String {
    let options = CreateExecOptions {
        cmd: Some(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            script.to_owned(),
        ]),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        // The workspace bound at the workdir is gone with its session.
        working_dir: Some("/".to_owned()),
        ..CreateExecOptions::default()
    };
    let exec = docker.create_exec(id, options).await.expect("create exec");
    let mut said = Vec::new();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.expect("start exec")
    {
        while let Some(Ok(frame)) = output.next().await {
            said.extend_from_slice(&frame.into_bytes());
        }
    }
    String::from_utf8_lossy(&said).into_owned()
}

/// Cleanup of a kept container leaves it running with its keeper only:
/// what commands started, in their session or not, is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_container_keeps_nothing_its_commands_started() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("kept-clean");
    let mut session = crate::support::session(
        crate::support::spec("keep_container_after_clean: true", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let id = crate::support::container_of_session(&docker, &prefix).await;
    let started = crate::support::run(
        runtime.as_ref(),
        "setsid sleep 314 </dev/null >/dev/null 2>&1 & echo $! > /tmp/kept.setsid; \
         sleep 315 </dev/null >/dev/null 2>&1 & echo $! > /tmp/kept.orphan",
    )
    .await;
    assert!(started.success(), "{started:?}");
    drop(runtime);
    session.close().await.expect("close");
    let inspect = docker.inspect_container(&id, None).await.expect("kept");
    assert_eq!(inspect.state.and_then(|s| s.running), Some(true));
    for kind in ["setsid", "orphan"] {
        let state = exec_in(&docker, &id, &state_of(&format!("/tmp/kept.{kind}"))).await;
        assert_eq!(state, "gone\n", "the {kind} process survived cleanup");
    }
    crate::support::force_remove(&docker, &id).await;
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

/// The child side of [`a_killed_owner_leaves_no_running_container`]: spawns
/// a runtime, starts a command, says so in `DIR/ready`, and waits to be
/// killed.
fn owner_that_gets_killed(dir: &Path, session_id: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let _docker = docker_or_skip!();
        let mut session = crate::support::session(
            crate::support::spec("", ""),
            session_id,
            &dir.join("sessions"),
        )
        .await;
        let rt = session.spawn(SpawnOptions::default()).await.expect("spawn");
        let mut stream = rt
            .stream(ExecCommand::new(
                "setsid sleep 316 </dev/null >/dev/null 2>&1 & echo started; sleep 300",
            ))
            .await
            .expect("stream");
        assert_eq!(
            stream.next().await,
            Some(Event::Stdout(bytes::Bytes::from_static(b"started\n")))
        );
        let ready = dir.join("ready");
        std::fs::write(ready.with_extension("tmp"), "").expect("write ready");
        std::fs::rename(ready.with_extension("tmp"), &ready).expect("rename ready");
        std::future::pending::<()>().await;
    });
}

/// A process that owns a container is killed with SIGKILL: its container
/// stops by itself (its input closes, its keeper and init exit, and every
/// process in it dies), and garbage collection removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_leaves_no_running_container() {
    if let Ok(dir) = std::env::var("BERTH_TEST_OWNER_DIR") {
        let id = std::env::var("BERTH_TEST_OWNER_SESSION").expect("session id");
        std::thread::spawn(move || owner_that_gets_killed(&PathBuf::from(dir), &id))
            .join()
            .expect("the owner runs");
        return;
    }
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("owner-killed");
    let mut owner = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "docker_lifetime::a_killed_owner_leaves_no_running_container",
            "--nocapture",
        ])
        .env("BERTH_TEST_OWNER_DIR", temp.path())
        .env("BERTH_TEST_OWNER_SESSION", &prefix)
        .spawn()
        .expect("starting the owner");
    let ready = temp.path().join("ready");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready.exists() {
        if let Some(status) = owner.try_wait().expect("polling the owner") {
            panic!("the owner ended before its command ran: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the owner never started its command"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = crate::support::container_of_session(&docker, &prefix).await;
    let inspect = docker.inspect_container(&id, None).await.expect("inspect");
    let labels = inspect
        .config
        .and_then(|c| c.labels)
        .expect("the container has labels");
    assert_eq!(labels[LABEL_OWNER_PID], owner.id().to_string());
    assert_eq!(inspect.state.and_then(|s| s.running), Some(true));

    owner.kill().expect("SIGKILL the owner");
    owner.wait().expect("reap the owner");
    // The container stops once its owner is gone, and the engine removes
    // it (`AutoRemove`); whatever is still there is `berth gc`'s.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = match docker.inspect_container(&id, None).await {
            Ok(inspect) => inspect.state.and_then(|s| s.running) == Some(true),
            Err(_) => false,
        };
        if !running {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the container still runs 60s after its owner died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let collected = DockerBackend::new()
        .collect_garbage(false)
        .await
        .expect("gc");
    let short: String = id.chars().take(12).collect();
    if let Some(found) = collected
        .iter()
        .find(|leftover| leftover.id.starts_with(&short))
    {
        assert!(
            found
                .reason
                .contains(&format!("owner pid {} is gone", owner.id())),
            "{found:?}"
        );
    }
    crate::support::assert_removed(&docker, &id).await;
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}
