//! Warm pools against the real engine: a pool fills, each spawn takes a
//! fresh container that no other session ever gets, sees exactly its own
//! workspace, the pool refills, and a drain (or `berth gc` after a crash)
//! leaves nothing behind; a process that keeps no pools ignores the spec's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use runtime_docker::{DockerBackend, LABEL_OWNER_PID, LABEL_POOL};
use session_core::Mode;
use session_core::runtime::{Backend, ExecStatus, Runtime, SpawnContext};

/// Ids of this process's containers started for a warm pool, running or
/// not.
async fn pooled_containers(docker: &Docker) -> BTreeSet<String> {
    let me = std::process::id().to_string();
    crate::support::berth_containers(docker)
        .await
        .into_iter()
        .filter(|c| {
            let labels = c.labels.clone().unwrap_or_default();
            labels.get(LABEL_POOL).map(String::as_str) == Some("true")
                && labels.get(LABEL_OWNER_PID) == Some(&me)
        })
        .filter_map(|c| c.id)
        .collect()
}

/// This process's workspace slots.
fn my_slots() -> Vec<PathBuf> {
    let root = std::env::temp_dir().join("berth-docker-slots");
    let prefix = format!("{}-", std::process::id());
    std::fs::read_dir(root)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

async fn spawn(spec: &session_core::EnvironmentSpec, workspace: &Path) -> Box<dyn Runtime> {
    let ctx = SpawnContext::new(
        crate::support::session_id("pool"),
        workspace,
        Mode::Evaluation,
    );
    DockerBackend::new().spawn(spec, ctx).await.expect("spawn")
}

fn container_of(runtime: &dyn Runtime) -> String {
    // The docker backend's runtime says which container it is.
    let debug = format!("{runtime:?}");
    let start = debug
        .find("container: \"")
        .expect("the container in the debug")
        + 12;
    debug[start..]
        .split('"')
        .next()
        .expect("a container id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_fills_hands_each_container_out_once_and_drains() {
    let docker = docker_or_skip!();
    if !is_root() {
        // Slots need root beside the engine; a non-root run checks that
        // spawns still work when the pool cannot fill.
        runtime_docker::keep_warm_pools(true);
        let temp = tempfile::tempdir().expect("tempdir");
        let spec = crate::support::spec("pool: {size: 1}", "");
        let runtime = spawn(&spec, temp.path()).await;
        let ran = crate::support::run(runtime.as_ref(), "true").await;
        assert_eq!(ran.status, ExecStatus::Exited, "{ran:?}");
        runtime.cleanup().await.expect("cleanup");
        runtime_docker::drain_warm_pools().await;
        return;
    }
    runtime_docker::keep_warm_pools(true);
    let spec = crate::support::spec("pool: {size: 2}", "");
    let temp = tempfile::tempdir().expect("tempdir");

    // The first spawn finds no pool: it starts one and creates its own
    // container meanwhile.
    let first_ws = temp.path().join("first");
    std::fs::create_dir(&first_ws).expect("workspace");
    let first = spawn(&spec, &first_ws).await;
    let first_id = container_of(first.as_ref());
    first.cleanup().await.expect("cleanup");
    assert!(
        runtime_docker::wait_for_warm_pools(Duration::from_secs(120)).await,
        "the pool did not fill"
    );
    let warm = pooled_containers(&docker).await;
    assert_eq!(warm.len(), 2, "{warm:?}");
    assert!(!warm.contains(&first_id));

    // Two sessions take two of them, each seeing only its own workspace.
    let mut runtimes = Vec::new();
    let mut taken = BTreeSet::new();
    for name in ["a", "b"] {
        let ws = temp.path().join(name);
        std::fs::create_dir(&ws).expect("workspace");
        std::fs::write(ws.join(format!("{name}.txt")), name).expect("file");
        let runtime = spawn(&spec, &ws).await;
        let id = container_of(runtime.as_ref());
        assert!(
            warm.iter().any(|w| w == &id),
            "{id} was not a warm container"
        );
        assert!(taken.insert(id), "a warm container was handed out twice");
        let listing = crate::support::run(runtime.as_ref(), "ls -A /workspace; pwd").await;
        assert_eq!(
            listing.stdout_lossy(),
            format!("{name}.txt\n/workspace\n"),
            "{listing:?}"
        );
        let wrote =
            crate::support::run(runtime.as_ref(), &format!("echo {name} > made-{name}")).await;
        assert_eq!(wrote.exit_code, 0, "{wrote:?}");
        assert_eq!(
            std::fs::read_to_string(ws.join(format!("made-{name}"))).expect("made on the host"),
            format!("{name}\n")
        );
        runtimes.push((runtime, ws));
    }

    // The pool refills with new containers, never the taken ones.
    assert!(
        runtime_docker::wait_for_warm_pools(Duration::from_secs(120)).await,
        "the pool did not refill"
    );
    let now = pooled_containers(&docker).await;
    let refilled: BTreeSet<String> = now.difference(&taken).cloned().collect();
    assert_eq!(refilled.len(), 2, "{now:?} (taken: {taken:?})");
    assert!(refilled.is_disjoint(&warm));

    // A taken container ends with its session; its slot goes, and the
    // workspace keeps what the commands made.
    for (runtime, ws) in runtimes {
        let id = container_of(runtime.as_ref());
        runtime.cleanup().await.expect("cleanup");
        crate::support::assert_removed(&docker, &id).await;
        assert!(ws.join("made-a").exists() || ws.join("made-b").exists());
    }
    assert_eq!(my_slots().len(), 2, "the two warm containers' slots");

    // A third session gets a fresh one too, not a reused container.
    let ws = temp.path().join("c");
    std::fs::create_dir(&ws).expect("workspace");
    let third = spawn(&spec, &ws).await;
    let third_id = container_of(third.as_ref());
    assert!(refilled.contains(&third_id) && !taken.contains(&third_id));
    let listing = crate::support::run(third.as_ref(), "ls -A /workspace").await;
    assert_eq!(listing.stdout_lossy(), "", "{listing:?}");
    third.cleanup().await.expect("cleanup");

    // A take refills its pool after the session's first command, or
    // without one after a grace of a second: a session that runs nothing
    // does not leave its pool short.
    assert!(
        runtime_docker::wait_for_warm_pools(Duration::from_secs(120)).await,
        "the pool did not refill"
    );
    let ws = temp.path().join("d");
    std::fs::create_dir(&ws).expect("workspace");
    let idle = spawn(&spec, &ws).await;
    assert!(
        runtime_docker::wait_for_warm_pools(Duration::from_secs(120)).await,
        "a take that ran no command left its pool short"
    );
    idle.cleanup().await.expect("cleanup");

    runtime_docker::drain_warm_pools().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !pooled_containers(&docker).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "warm containers left after the drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(my_slots().is_empty(), "slots left: {:?}", my_slots());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_keeps_no_pools_ignores_the_spec() {
    let docker = docker_or_skip!();
    runtime_docker::keep_warm_pools(false);
    let temp = tempfile::tempdir().expect("tempdir");
    let spec = crate::support::spec("pool: {size: 2}", "");
    let runtime = spawn(&spec, temp.path()).await;
    let ran = crate::support::run(runtime.as_ref(), "true").await;
    assert_eq!(ran.status, ExecStatus::Exited, "{ran:?}");
    assert!(pooled_containers(&docker).await.is_empty());
    runtime.cleanup().await.expect("cleanup");
    assert!(pooled_containers(&docker).await.is_empty());
    assert!(my_slots().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_unmounts_and_removes_the_slots_of_a_dead_process() {
    let _docker = docker_or_skip!();
    if !is_root() {
        return;
    }
    let root = std::env::temp_dir().join("berth-docker-slots");
    // As berth makes it: a private directory (gc ignores any other).
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&root)
        .or_else(|err| match err.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(err),
        })
        .expect("slot root");
    // A pid no process has (above the kernel's largest).
    let slot = root.join(format!("{}-0", i32::MAX));
    let workspace = tempfile::tempdir().expect("workspace");
    std::fs::write(workspace.path().join("keep.txt"), "mine").expect("file");
    std::fs::create_dir(&slot).expect("slot");
    let status = std::process::Command::new("mount")
        .arg("--bind")
        .arg(workspace.path())
        .arg(&slot)
        .status()
        .expect("mount");
    assert!(status.success());
    let found = DockerBackend::new()
        .collect_garbage(false)
        .await
        .expect("gc");
    let leftover = found
        .iter()
        .find(|l| l.id == slot.display().to_string())
        .unwrap_or_else(|| panic!("gc did not find the slot: {found:?}"));
    assert!(leftover.removed, "{leftover:?}");
    assert!(leftover.reason.contains("is gone"), "{leftover:?}");
    assert!(!slot.exists());
    assert_eq!(
        std::fs::read_to_string(workspace.path().join("keep.txt")).expect("still there"),
        "mine",
        "gc never empties a bound workspace"
    );
}

/// The child side of [`a_killed_pool_owner_leaves_nothing_after_gc`]: keeps
/// a pool of one, takes a container for a session (its workspace bound
/// into the slot), lets the pool refill, says so in `DIR/ready` and waits
/// to be killed.
fn pool_owner_that_gets_killed(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let _docker = docker_or_skip!();
        runtime_docker::keep_warm_pools(true);
        let spec = crate::support::spec("pool: {size: 1}", "");
        let first = dir.join("first");
        std::fs::create_dir(&first).expect("workspace");
        spawn(&spec, &first).await.cleanup().await.expect("cleanup");
        assert!(runtime_docker::wait_for_warm_pools(Duration::from_secs(120)).await);
        let taken = spawn(&spec, &dir.join("workspace")).await;
        let wrote = crate::support::run(taken.as_ref(), "echo kept > kept.txt").await;
        assert_eq!(wrote.exit_code, 0, "{wrote:?}");
        assert!(runtime_docker::wait_for_warm_pools(Duration::from_secs(120)).await);
        let ready = dir.join("ready");
        std::fs::write(ready.with_extension("tmp"), "").expect("write ready");
        std::fs::rename(ready.with_extension("tmp"), &ready).expect("rename ready");
        std::future::pending::<()>().await;
    });
}

/// A process that keeps a pool is killed with SIGKILL while a session
/// holds a pooled container: every container of it stops and is removed
/// (by the engine, else by gc), and gc unmounts and removes its slots,
/// leaving the session's workspace as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pool_owner_leaves_nothing_after_gc() {
    if let Ok(dir) = std::env::var("BERTH_TEST_POOL_OWNER_DIR") {
        std::thread::spawn(move || pool_owner_that_gets_killed(&PathBuf::from(dir)))
            .join()
            .expect("the owner runs");
        return;
    }
    let docker = docker_or_skip!();
    if !is_root() {
        return;
    }
    let temp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(temp.path().join("workspace")).expect("workspace");
    let mut owner = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "docker_pool::a_killed_pool_owner_leaves_nothing_after_gc",
            "--nocapture",
        ])
        .env("BERTH_TEST_POOL_OWNER_DIR", temp.path())
        .spawn()
        .expect("starting the owner");
    let ready = temp.path().join("ready");
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while !ready.exists() {
        if let Some(status) = owner.try_wait().expect("polling the owner") {
            panic!("the owner ended before it was ready: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the owner never got ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = owner.id().to_string();
    let of_owner = |docker: Docker| {
        let pid = pid.clone();
        async move {
            crate::support::berth_containers(&docker)
                .await
                .into_iter()
                .filter(|c| {
                    c.labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL_OWNER_PID))
                        .is_some_and(|p| p == &pid)
                })
                .filter_map(|c| c.id)
                .collect::<Vec<_>>()
        }
    };
    // The taken container and the refilled one.
    assert_eq!(of_owner(docker.clone()).await.len(), 2);
    let slot_prefix = format!("{pid}-");
    let slots = || {
        std::fs::read_dir(std::env::temp_dir().join("berth-docker-slots"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&slot_prefix))
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(slots() >= 2, "the owner's slots");

    owner.kill().expect("SIGKILL the owner");
    owner.wait().expect("reap the owner");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        DockerBackend::new()
            .collect_garbage(false)
            .await
            .expect("gc");
        if of_owner(docker.clone()).await.is_empty() && slots() == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left after gc: {:?}, {} slots",
            of_owner(docker.clone()).await,
            slots()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        std::fs::read_to_string(temp.path().join("workspace/kept.txt")).expect("kept"),
        "kept\n"
    );
}
