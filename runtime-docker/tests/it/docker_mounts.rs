//! Mounts: the workspace, extra and spawn mounts, and static assets.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use session_core::assets::AssetMap;
use session_core::runtime::Mount;
use session_core::session::{Session, SpawnOptions};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_and_spawn_mounts_are_bound_and_the_later_wins() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let data = temp.path().join("data");
    let spawned = temp.path().join("spawned");
    let shared = temp.path().join("shared");
    write(&data.join("from.txt"), "extra\n");
    write(&spawned.join("from.txt"), "spawn\n");
    std::fs::create_dir_all(&shared).expect("mkdir");
    let spec = crate::support::spec(
        &format!(
            "extra_mounts: {{'{}': /data, fixtures: {{bind: /fixtures, mode: ro}}, '{}': /shared}}",
            data.display(),
            shared.display()
        ),
        "",
    );
    let prefix = crate::support::session_id("mounts");
    let mut session = crate::support::session(spec, &prefix, &temp.path().join("sessions")).await;
    let workspace = session.workspace_path().expect("workspace");
    write(&workspace.join("fixtures/f.txt"), "fixture\n");

    let runtime = session
        .spawn(SpawnOptions {
            mounts: vec![Mount {
                source: spawned.clone(),
                target: "/data".into(),
                read_only: true,
            }],
            ..SpawnOptions::default()
        })
        .await
        .expect("spawn");
    let result = crate::support::run(
        runtime.as_ref(),
        "cat /data/from.txt /fixtures/f.txt && echo out > /shared/written.txt",
    )
    .await;
    assert!(result.success(), "{result:?}");
    assert_eq!(result.stdout_lossy(), "spawn\nfixture\n");
    assert_eq!(
        std::fs::read_to_string(shared.join("written.txt")).expect("written through the mount"),
        "out\n"
    );
    for read_only in ["/fixtures/new.txt", "/data/new.txt"] {
        let refused = crate::support::run(runtime.as_ref(), &format!("echo x > {read_only}")).await;
        assert!(!refused.success(), "{read_only} is writable: {refused:?}");
    }
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_read_only_under_static() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let assets_dir = temp.path().join("assets");
    write(&assets_dir.join("data.txt"), "asset\n");
    write(&assets_dir.join("tree/inner.txt"), "inner\n");
    let map = AssetMap::from_yaml_str(
        "data: {path: data.txt, save_path: sub/data.txt}\ntree: {path: tree}",
    )
    .expect("asset map");
    let assets = map.resolve(&assets_dir).expect("assets resolve");
    let prefix = crate::support::session_id("assets");
    let mut session = Session::builder(crate::support::spec("", ""))
        .session_id(&prefix)
        .assets(assets.clone())
        .temp_root(temp.path().join("sessions"))
        .prepare()
        .await
        .expect("prepare");
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let data = assets.get("data").expect("data asset");
    let tree = assets.get("tree").expect("tree asset");
    assert_eq!(runtime.asset_path(data), "/static/sub/data.txt");
    assert_eq!(runtime.asset_path(tree), "/static/tree");

    let read = crate::support::run(
        runtime.as_ref(),
        "cat /static/sub/data.txt /static/tree/inner.txt",
    )
    .await;
    assert_eq!(read.stdout_lossy(), "asset\ninner\n", "{read:?}");
    for target in ["/static/sub/data.txt", "/static/tree/new.txt"] {
        let write =
            crate::support::run(runtime.as_ref(), &format!("echo changed > {target}")).await;
        assert!(!write.success(), "{target} is writable: {write:?}");
    }
    assert_eq!(
        std::fs::read_to_string(assets_dir.join("data.txt")).expect("asset"),
        "asset\n"
    );
    session.close().await.expect("close (asset check included)");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_workspace_mount_commands_run_in_the_image() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("nomount");
    let mut session = crate::support::session(
        crate::support::spec("mount_workspace: false, workdir: /work", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let workspace = session.workspace_path().expect("workspace");
    write(&workspace.join("host.txt"), "host\n");
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let result = crate::support::run(runtime.as_ref(), "pwd; ls -A; echo x > inside.txt").await;
    assert!(result.success(), "{result:?}");
    assert_eq!(result.stdout_lossy(), "/work\n");
    assert!(!workspace.join("inside.txt").exists());
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_mount_is_a_clear_error() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("badmount");
    let mut session = crate::support::session(
        crate::support::spec("extra_mounts: {/nonexistent/berth-source: /src}", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let err = session
        .spawn(SpawnOptions::default())
        .await
        .expect_err("a missing mount source fails the spawn")
        .to_string();
    assert!(err.starts_with("docker backend: "), "{err}");
    assert!(err.contains("/nonexistent/berth-source"), "{err}");
    assert!(!err.contains('\n'), "{err}");

    let inside = session
        .spawn(SpawnOptions {
            mounts: vec![Mount {
                source: temp.path().to_path_buf(),
                target: "/workspace/inner".into(),
                read_only: false,
            }],
            ..SpawnOptions::default()
        })
        .await
        .expect_err("a mount inside the workdir is refused")
        .to_string();
    assert!(inside.contains("inside the workdir"), "{inside}");
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_user_owns_what_it_writes() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("user");
    let mut session = crate::support::session(
        crate::support::spec("user: '1234:2345'", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let workspace = session.workspace_path().expect("workspace");
    std::fs::set_permissions(&workspace, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let result = crate::support::run(runtime.as_ref(), "id -u; id -g; echo x > made.txt").await;
    assert_eq!(result.stdout_lossy(), "1234\n2345\n", "{result:?}");
    let meta = std::fs::metadata(workspace.join("made.txt")).expect("made.txt");
    use std::os::unix::fs::MetadataExt;
    // A caller other than root gets what another user made handed back
    // (its owner; the group stays).
    let me = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    let owner = if me == 0 { 1234 } else { me };
    assert_eq!((meta.uid(), meta.gid()), (owner, 2345));
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_mode_runs_as_the_caller() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("caller");
    let mut session = crate::support::session(
        crate::support::spec("", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let workspace = session.workspace_path().expect("workspace");
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let result = crate::support::run(runtime.as_ref(), "id -u; echo x > made.txt").await;
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    assert_eq!(result.stdout_lossy(), format!("{me}\n"), "{result:?}");
    let meta = std::fs::metadata(workspace.join("made.txt")).expect("made.txt");
    assert_eq!(meta.uid(), me);
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}
