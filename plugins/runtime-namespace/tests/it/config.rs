//! The `namespace:` block, spawn errors where the sandbox cannot be built,
//! and what `berth doctor` is told.

use runtime_namespace::{NamespaceBackend, NamespaceConfig, Network, SeccompSetting};
use session_core::Error;
use session_core::runtime::{Backend, PortMapping};
use session_core::session::{Session, SpawnOptions};

use crate::support::{registry, spec};

fn spec_error(yaml: &str) -> (String, String) {
    match NamespaceBackend.validate(&spec(yaml)) {
        Err(Error::Spec { field, message, .. }) => (field, message),
        other => panic!("{yaml}: expected a spec error, got {other:?}"),
    }
}

#[test]
fn the_block_is_parsed_with_defaults() {
    let config = NamespaceConfig::from_spec(&spec("{type: namespace, name: t}")).unwrap();
    assert_eq!(config, NamespaceConfig::default());
    assert_eq!(config.network, Network::None);
    assert_eq!(config.shell, std::path::Path::new("/bin/sh"));
    assert_eq!(config.seccomp, SeccompSetting::Default);
    let config = NamespaceConfig::from_spec(&spec(
        "{type: namespace, name: t, namespace: {system_dirs: [/usr, /etc], network: host, \
         shell: /usr/bin/bash, hostname: box, seccomp: unconfined}}",
    ))
    .unwrap();
    assert_eq!(config.system_dirs, Some(vec!["/usr".into(), "/etc".into()]));
    assert_eq!(config.network, Network::Host);
    assert_eq!(config.hostname, "box");
    assert_eq!(config.seccomp, SeccompSetting::Unconfined);
    let config = NamespaceConfig::from_spec(&spec(
        "{type: namespace, name: t, namespace: {seccomp: profiles/strict.json}}",
    ))
    .unwrap();
    assert_eq!(
        config.seccomp,
        SeccompSetting::Profile("profiles/strict.json".into())
    );
}

#[test]
fn bad_blocks_name_the_field() {
    let cases = [
        (
            "namespace: {netwrk: host}",
            "namespace.netwrk",
            "unknown field",
        ),
        (
            "namespace: {network: bridge}",
            "namespace.network",
            "bridge",
        ),
        (
            "namespace: {system_dirs: [usr]}",
            "namespace.system_dirs[0]",
            "absolute",
        ),
        (
            "namespace: {system_dirs: [/usr, /etc/../root]}",
            "namespace.system_dirs[1]",
            "..",
        ),
        (
            "namespace: {system_dirs: [/tmp]}",
            "namespace.system_dirs[0]",
            "`/tmp`",
        ),
        (
            "namespace: {system_dirs: [/workspace/x]}",
            "namespace.system_dirs[0]",
            "`/workspace`",
        ),
        ("namespace: {shell: sh}", "namespace.shell", "absolute"),
        ("namespace: {hostname: ''}", "namespace.hostname", "1 to 64"),
        (
            "namespace: {seccomp: ''}",
            "namespace.seccomp",
            "`default`, `unconfined` or the path",
        ),
        (
            "namespace: {seccomp: [default]}",
            "namespace.seccomp",
            "string",
        ),
        (
            "namespace: {seccomp: /no/such/berth-profile.json}",
            "namespace.seccomp",
            "cannot read seccomp profile `/no/such/berth-profile.json`",
        ),
    ];
    for (block, field, needle) in cases {
        let (got_field, message) = spec_error(&format!("{{type: namespace, name: t, {block}}}"));
        assert_eq!(got_field, field, "{block}: {message}");
        assert!(message.contains(needle), "{block}: {message}");
    }
}

async fn spawn_error(yaml: &str, options: SpawnOptions) -> Error {
    let temp = tempfile::tempdir().unwrap();
    let mut session = Session::builder(spec(yaml))
        .registry(registry())
        .temp_root(temp.path().join("sessions"))
        .prepare()
        .await
        .unwrap();
    let err = match session.spawn(options).await {
        Err(err) => err,
        Ok(_) => panic!("{yaml}: spawn succeeded"),
    };
    session.close().await.unwrap();
    err
}

fn backend_message(err: &Error) -> &str {
    match err {
        Error::Backend { backend, message } if backend == "namespace" => message,
        other => panic!("expected a namespace backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_sandbox_that_cannot_be_built_fails_spawn_with_the_reason() {
    fails_spawn_with_the_reason().await;
}

/// The same when the sandbox is built in a fork of berth's process (as
/// where the program cannot be executed) instead of `berth-sandbox`.
#[tokio::test]
async fn a_sandbox_built_in_a_fork_that_cannot_be_built_fails_spawn_with_the_reason() {
    runtime_namespace::use_fork(true);
    fails_spawn_with_the_reason().await;
    runtime_namespace::use_fork(false);
}

async fn fails_spawn_with_the_reason() {
    // A system directory the host does not have: the kernel refuses to
    // mount it between fork and exec, and the step is named.
    let err = spawn_error(
        "{type: namespace, name: t, namespace: {system_dirs: [/usr, /bin, /lib, /lib64, /no-such-berth-dir]}}",
        SpawnOptions::default(),
    )
    .await;
    let message = backend_message(&err);
    assert!(
        message.starts_with("cannot build the sandbox: ")
            && message.contains("`/no-such-berth-dir`")
            && message.contains("No such file or directory"),
        "{message}"
    );
    assert_eq!(err.to_string().lines().count(), 1, "{err}");

    // The same when setup commands (not a probe) are the first to run: a
    // broken sandbox is the backend's error, not a failed setup command.
    let err = spawn_error(
        "{type: namespace, name: t, setup: {commands: ['true']}, \
         namespace: {system_dirs: [/no-such-berth-dir]}}",
        SpawnOptions::default(),
    )
    .await;
    assert!(
        backend_message(&err).contains("/no-such-berth-dir"),
        "{err}"
    );

    // A shell the sandbox does not have.
    let err = spawn_error(
        "{type: namespace, name: t, namespace: {shell: /no/such/shell}}",
        SpawnOptions::default(),
    )
    .await;
    let message = backend_message(&err);
    assert!(
        message.contains("cannot start `/no/such/shell` in the sandbox")
            && message.contains("No such file or directory"),
        "{message}"
    );

    // System directories without a shell at all.
    let err = spawn_error(
        "{type: namespace, name: t, namespace: {system_dirs: [/etc]}}",
        SpawnOptions::default(),
    )
    .await;
    assert!(backend_message(&err).contains("`/bin/sh`"), "{err}");
}

#[tokio::test]
async fn a_spawn_of_a_proven_shape_still_checks_its_own_host_paths() {
    let data = tempfile::tempdir().unwrap();
    let mount = |source: std::path::PathBuf| SpawnOptions {
        mounts: vec![session_core::runtime::Mount {
            source,
            target: "/opt/data".into(),
            read_only: true,
        }],
        ..SpawnOptions::default()
    };
    // The first spawn of this shape runs the probe; the second skips it,
    // and its command builds the same sandbox.
    for _ in 0..2 {
        let sb =
            crate::support::sandbox_with("", Default::default(), mount(data.path().into())).await;
        assert!(sb.run("test -d /opt/data").await.success());
        sb.close().await;
    }
    // A source that goes away after the spawn: the command fails to start,
    // saying why, and nothing of it is left running.
    let gone = tempfile::tempdir().unwrap();
    let sb = crate::support::sandbox_with("", Default::default(), mount(gone.path().into())).await;
    let gone_path = gone.path().to_path_buf();
    drop(gone);
    let result = sb.run("true").await;
    assert_eq!(
        result.status,
        session_core::runtime::ExecStatus::SpawnFailed,
        "{result:?}"
    );
    assert!(
        result
            .stderr_lossy()
            .contains(&format!("`{}`", gone_path.display())),
        "{result:?}"
    );
    assert!(sb.run("true").await.status == session_core::runtime::ExecStatus::SpawnFailed);
    sb.close().await;

    // The same shape with a source that is not there: probed again, and
    // refused at spawn naming the path.
    let missing = data.path().join("missing");
    let err = spawn_error("{type: namespace, name: test}", mount(missing.clone())).await;
    let message = backend_message(&err);
    assert!(
        message.contains(&format!("`{}`", missing.display())) && message.contains("No such file"),
        "{message}"
    );
}

#[tokio::test]
async fn spawn_options_the_sandbox_cannot_honour_are_refused() {
    let ports = SpawnOptions {
        ports: vec![PortMapping {
            host_ip: None,
            host_port: 0,
            container_port: 8000,
        }],
        ..SpawnOptions::default()
    };
    let err = spawn_error("{type: namespace, name: t}", ports.clone()).await;
    assert!(backend_message(&err).contains("network: host"), "{err}");

    let mount = SpawnOptions {
        mounts: vec![session_core::runtime::Mount {
            source: "/usr".into(),
            target: "/workspace/usr".into(),
            read_only: true,
        }],
        ..SpawnOptions::default()
    };
    let err = spawn_error("{type: namespace, name: t}", mount).await;
    assert!(backend_message(&err).contains("/workspace/usr"), "{err}");

    // With the host's network, ports need no publishing.
    let sb =
        crate::support::sandbox_with("namespace: {network: host}", Default::default(), ports).await;
    sb.close().await;
}

#[tokio::test]
async fn diagnose_says_namespaces_are_usable_here() {
    let checks = NamespaceBackend.diagnose().await;
    let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
    assert_eq!(
        names[..4],
        ["user namespaces", "sandbox", "seccomp", "quotas"]
    );
    for limit in ["limits.pids", "limits.memory", "limits.cpus"] {
        assert!(names.contains(&limit), "{names:?}");
    }
    for check in &checks[..4] {
        assert!(check.ok, "{check:?}");
        assert_eq!(check.detail.lines().count(), 1, "{check:?}");
    }
    assert!(checks[1].detail.starts_with("usable:"), "{:?}", checks[1]);
    // The default profile, read back from a command's /proc/self/status.
    assert!(
        checks[2]
            .detail
            .starts_with("filters supported by the kernel; ")
            && checks[2].detail.contains("(Seccomp: 2"),
        "{:?}",
        checks[2]
    );
    // What one sandbox may take of this user's per-user quotas.
    assert!(
        checks[3].detail.contains("RLIMIT_SIGPENDING ")
            && checks[3].detail.contains("user.max_inotify_instances "),
        "{:?}",
        checks[3]
    );
}
