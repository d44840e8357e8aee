//! `limits` as the container's memory, CPU, pids and file-size limits.

use std::time::Duration;

use session_core::runtime::{ExecCommand, ExecStatus};
use session_core::session::SpawnOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_killed_not_hung() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("memory");
    let mut session = crate::support::session(
        crate::support::spec("", "limits: {memory: 33554432}"),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    // `tail` keeps the one endless line in memory until the limit stops it.
    let hog = runtime
        .execute(
            ExecCommand::new("head -c 200m /dev/zero | tail")
                .wall_timeout(Duration::from_secs(120)),
        )
        .await
        .expect("execute");
    assert_eq!(hog.status, ExecStatus::Signaled, "{hog:?}");
    assert_eq!((hog.exit_code, hog.signal), (-9, Some(9)), "{hog:?}");
    let after = crate::support::run(runtime.as_ref(), "echo alive").await;
    assert!(after.success(), "the runtime survives: {after:?}");
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pids_cpus_and_file_size_are_enforced() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("limits");
    let mut session = crate::support::session(
        crate::support::spec("", "limits: {pids: 20, cpus: 0.5, file_size: 1048576}"),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let workspace = session.workspace_path().expect("workspace");
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");

    // cgroup v2 names the quota in cpu.max; v1 in two files.
    let quota = crate::support::run(
        runtime.as_ref(),
        "cat /sys/fs/cgroup/cpu.max 2>/dev/null || \
         echo \"$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)\"",
    )
    .await;
    assert_eq!(quota.stdout_lossy(), "50000 100000\n", "{quota:?}");

    let forks = crate::support::run(
        runtime.as_ref(),
        "i=0; while [ $i -lt 40 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); done; echo all started",
    )
    .await;
    assert!(
        !forks.success(),
        "40 processes under a limit of 20: {forks:?}"
    );
    assert!(forks.stderr_lossy().contains("fork"), "{forks:?}");
    runtime.kill().await.expect("kill the sleepers");

    let big = crate::support::run(runtime.as_ref(), "head -c 2000000 /dev/zero > big.bin").await;
    assert!(!big.success(), "{big:?}");
    let size = std::fs::metadata(workspace.join("big.bin"))
        .expect("big.bin")
        .len();
    assert!(size <= 1_048_576, "wrote {size} bytes past the limit");
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_works_in_a_container_out_of_pids() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("pidsout");
    let mut session = crate::support::session(
        crate::support::spec("", "limits: {pids: 32}"),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    // Background sleepers take every pid the limit allows, then the shell
    // fails to fork and exits, leaving them behind.
    let hog = crate::support::run(
        runtime.as_ref(),
        "while :; do sleep 300 >/dev/null 2>&1 & done",
    )
    .await;
    assert!(hog.stderr_lossy().contains("fork"), "{hog:?}");
    let starved = crate::support::run(runtime.as_ref(), "sleep 0 && echo forked").await;
    assert!(
        !starved.success(),
        "a fork succeeded with every pid taken: {starved:?}"
    );
    // The kill exec uses shell builtins only: it needs no pid but its own.
    runtime.kill().await.expect("kill");
    let after = crate::support::run(runtime.as_ref(), "sleep 0 && echo forked").await;
    assert_eq!(after.stdout_lossy(), "forked\n", "{after:?}");
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

/// With a memory limit, `/dev/shm` holds at most half of it: filling it
/// fails for lack of space, a process that then wants the rest is the one
/// killed, and the runtime goes on. Commands are the kernel's first choice
/// when memory runs out, and the cgroup tmpfs takes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_shm_holds_at_most_half_the_memory_limit() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("shm");
    let mut session = crate::support::session(
        crate::support::spec("", "limits: {memory: 67108864}"),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let mount = crate::support::run(runtime.as_ref(), "grep ' /dev/shm ' /proc/mounts").await;
    assert!(mount.stdout_lossy().contains("size=32768k"), "{mount:?}");
    let adj = crate::support::run(runtime.as_ref(), "cat /proc/self/oom_score_adj").await;
    assert_eq!(adj.stdout_lossy(), "500\n", "{adj:?}");
    // The cgroup tmpfs of a cgroup v1 host has no size: it is read-only.
    let cgroup = crate::support::run(runtime.as_ref(), "echo x > /sys/fs/cgroup/fill").await;
    assert!(!cgroup.success(), "{cgroup:?}");

    let filled = crate::support::run(
        runtime.as_ref(),
        "head -c 300000000 /dev/zero > /dev/shm/fill; echo $?; wc -c < /dev/shm/fill",
    )
    .await;
    assert_eq!(filled.stdout_lossy(), "1\n33554432\n", "{filled:?}");
    let hog = runtime
        .execute(
            ExecCommand::new("head -c 60000000 /dev/zero | tail")
                .wall_timeout(Duration::from_secs(120)),
        )
        .await
        .expect("execute");
    assert_eq!(
        (hog.status, hog.signal),
        (ExecStatus::Signaled, Some(9)),
        "{hog:?}"
    );
    let after = crate::support::run(runtime.as_ref(), "rm /dev/shm/fill && echo alive").await;
    assert_eq!(after.stdout_lossy(), "alive\n", "{after:?}");
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}
