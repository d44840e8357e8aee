//! What a sandboxed command can and cannot reach: host files, writes
//! outside the workspace and /tmp, the network, host processes, escapes
//! through `..` and symlinks, its uid and its capabilities.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use session_core::assets::AssetMap;
use session_core::runtime::{Event, ExecCommand, Mount};
use session_core::session::SpawnOptions;

use crate::support::{run, sandbox, sandbox_with, stdout_of};

/// A host directory outside any workspace, holding a secret file.
fn host_secret() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "host secret\n").unwrap();
    (dir, secret)
}

#[tokio::test]
async fn host_files_outside_the_allowed_set_do_not_exist() {
    let (_dir, secret) = host_secret();
    let sb = sandbox("").await;
    let result = sb.run(&format!("cat {}", secret.display())).await;
    assert!(
        !result.success() && result.stdout.bytes.is_empty(),
        "{result:?}"
    );
    assert!(result.stderr_lossy().contains("No such file"), "{result:?}");
    for path in ["/root", "/home", "/var", "/work", "/sys", "/run"] {
        let result = sb.run(&format!("ls {path}")).await;
        assert!(!result.success(), "{path} is visible: {result:?}");
    }
    // The root holds the sandbox's own directories and the system ones.
    let listing = stdout_of(sb.rt.as_ref(), "ls -A /").await;
    for name in listing.lines() {
        assert!(
            [
                "bin",
                "dev",
                "etc",
                "lib",
                "lib32",
                "lib64",
                "libx32",
                "proc",
                "sbin",
                "tmp",
                "usr",
                "workspace"
            ]
            .contains(&name),
            "unexpected `/{name}` in:\n{listing}"
        );
    }
    // The workspace is the working directory and shows the host's files.
    std::fs::write(sb.workspace().join("from_host.txt"), "hello\n").unwrap();
    assert_eq!(
        stdout_of(sb.rt.as_ref(), "pwd; cat from_host.txt").await,
        "/workspace\nhello\n"
    );
    sb.close().await;
}

#[tokio::test]
async fn writes_outside_the_workspace_and_tmp_fail() {
    let sb = sandbox("").await;
    for path in [
        "/usr/berth-test",
        "/etc/berth-test",
        "/berth-test",
        "/dev/berth-test",
        "/proc/berth-test",
    ] {
        let result = sb.run(&format!("echo x > {path}")).await;
        assert!(!result.success(), "writing {path} succeeded: {result:?}");
        assert!(
            !std::path::Path::new(path).exists(),
            "{path} reached the host"
        );
    }
    let result = sb.run("touch /etc/passwd").await;
    assert!(!result.success(), "{result:?}");
    let result = sb.run("rm -f /usr/bin/env; ls /usr/bin/env").await;
    assert!(result.success(), "{result:?}");
    assert_eq!(
        stdout_of(
            sb.rt.as_ref(),
            "echo t > /tmp/t && cat /tmp/t && echo w > written && cat written && echo s > /dev/shm/s && cat /dev/shm/s"
        )
        .await,
        "t\nw\ns\n"
    );
    assert_eq!(
        std::fs::read_to_string(sb.workspace().join("written")).unwrap(),
        "w\n"
    );
    // /tmp is private to each command: nothing of it reaches the host or
    // the next command.
    let result = sb.run("cat /tmp/t").await;
    assert!(!result.success(), "{result:?}");
    sb.close().await;
}

#[tokio::test]
async fn the_network_is_unreachable_unless_asked_for() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected >&3' && echo reached"
    );

    let sb = sandbox("").await;
    let result = sb.run(&connect).await;
    assert!(
        !result.success() && !result.stdout_lossy().contains("reached"),
        "{result:?}"
    );
    // Only a loopback interface, and it is up (servers inside work).
    let interfaces = stdout_of(
        sb.rt.as_ref(),
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
    )
    .await;
    assert_eq!(interfaces, "lo\n");
    let inside = stdout_of(
        sb.rt.as_ref(),
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/9' 2>&1 | grep -q refused && echo up || true",
    )
    .await;
    assert_eq!(inside, "up\n", "loopback is not up");
    sb.close().await;

    let host = sandbox("namespace: {network: host}").await;
    listener.set_nonblocking(false).unwrap();
    let accepted = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    });
    let result = host.run(&connect).await;
    assert!(result.success(), "{result:?}");
    assert_eq!(accepted.join().unwrap(), "connected\n");
    host.close().await;
}

#[tokio::test]
async fn host_processes_are_invisible() {
    let sb = sandbox("").await;
    let listing = stdout_of(sb.rt.as_ref(), "ls /proc | grep -E '^[0-9]+$'").await;
    let pids: Vec<u32> = listing.lines().map(|l| l.parse().unwrap()).collect();
    let me = std::process::id();
    assert!(
        !pids.contains(&me),
        "the host's pid {me} is visible: {pids:?}"
    );
    // The init, the shell, ls and grep at most.
    assert!(pids.len() <= 4, "{pids:?}");
    assert_eq!(pids[0], 1, "{pids:?}");
    let init = stdout_of(sb.rt.as_ref(), "cat /proc/1/comm").await;
    assert_eq!(init, "berth-init\n");
    let result = sb.run(&format!("kill -0 {me}")).await;
    assert!(!result.success(), "{result:?}");
    sb.close().await;
}

#[tokio::test]
async fn dotdot_and_symlinks_resolve_inside_the_sandbox() {
    let (_dir, secret) = host_secret();
    let sb = sandbox("").await;
    let ws = sb.workspace();
    std::os::unix::fs::symlink(&secret, ws.join("absolute")).unwrap();
    std::os::unix::fs::symlink("../../../../../..", ws.join("climb")).unwrap();
    std::os::unix::fs::symlink(secret.parent().unwrap(), ws.join("dir")).unwrap();

    let result = sb.run("cat absolute").await;
    assert!(
        !result.success() && result.stdout.bytes.is_empty(),
        "{result:?}"
    );
    let result = sb.run("ls dir/").await;
    assert!(
        !result.success() && result.stdout.bytes.is_empty(),
        "{result:?}"
    );
    let result = sb
        .run(&format!("cat /workspace/../../..{}", secret.display()))
        .await;
    assert!(
        !result.success() && result.stdout.bytes.is_empty(),
        "{result:?}"
    );

    // `..` from the workspace and a climbing symlink both reach the
    // sandbox's root, not the host's.
    let root = stdout_of(sb.rt.as_ref(), "ls -A /").await;
    assert_eq!(stdout_of(sb.rt.as_ref(), "ls -A ../../..").await, root);
    assert_eq!(stdout_of(sb.rt.as_ref(), "ls -A climb/").await, root);
    assert!(
        !root.contains("root\n") && !root.contains("home\n"),
        "{root}"
    );

    // A symlink the command makes resolves inside too, and writing through
    // one to a system directory fails.
    let result = sb.run("ln -s /etc/hostname h && cat h").await;
    assert!(result.success(), "{result:?}");
    let result = sb.run("ln -s /usr/evil e && echo x > e").await;
    assert!(!result.success(), "{result:?}");
    assert!(!std::path::Path::new("/usr/evil").exists());
    sb.close().await;
}

#[tokio::test]
async fn files_written_in_the_workspace_belong_to_the_caller() {
    let sb = sandbox("").await;
    // SAFETY: geteuid(2) and getegid(2) cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    assert_eq!(
        stdout_of(sb.rt.as_ref(), "id -u; id -g").await,
        format!("{uid}\n{gid}\n")
    );
    stdout_of(
        sb.rt.as_ref(),
        "mkdir -p made/deeper && echo x > made/deeper/file",
    )
    .await;
    for path in ["made", "made/deeper", "made/deeper/file"] {
        let meta = std::fs::metadata(sb.workspace().join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{path}");
    }
    sb.close().await;
}

#[tokio::test]
async fn commands_hold_no_capabilities() {
    let sb = sandbox("").await;
    let status = stdout_of(
        sb.rt.as_ref(),
        "grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
    )
    .await;
    for line in [
        "CapInh:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(status.contains(line), "{line} missing from:\n{status}");
    }
    // The shell leads a session of its own: no terminal of the host's.
    assert_eq!(
        stdout_of(
            sb.rt.as_ref(),
            "[ \"$(cut -d' ' -f6 /proc/$$/stat)\" = \"$$\" ] && echo leader; \
             (exec 3</dev/tty) 2>/dev/null || echo no-tty"
        )
        .await,
        "leader\nno-tty\n"
    );
    // Even as uid 0 inside, nothing can be remounted or unmounted.
    for command in [
        "mount -o remount,rw /usr",
        "mount -o remount,bind,rw /usr",
        "umount -l /proc",
        "mount -t tmpfs none /tmp",
        "hostname other",
    ] {
        let result = sb.run(command).await;
        assert!(!result.success(), "`{command}` succeeded: {result:?}");
    }
    sb.close().await;
}

#[tokio::test]
async fn the_host_kernel_cannot_be_reconfigured_from_proc() {
    let sb = sandbox("").await;
    // Writing back the current values: harmless even if it went through.
    for setting in ["vm/swappiness", "kernel/core_pattern"] {
        let result = sb
            .run(&format!(
                "cat /proc/sys/{setting} > /tmp/v && cat /tmp/v > /proc/sys/{setting}"
            ))
            .await;
        assert!(!result.success(), "{setting} is writable: {result:?}");
        assert!(
            result.stderr_lossy().contains("Read-only file system"),
            "{result:?}"
        );
    }
    // What the host keeps in /proc about keys and timers reads as empty.
    assert_eq!(
        stdout_of(
            sb.rt.as_ref(),
            "for f in keys key-users timer_list; do [ -e /proc/$f ] && cat /proc/$f; done; true"
        )
        .await,
        ""
    );
    // The command's own entries stay writable.
    stdout_of(sb.rt.as_ref(), "echo 500 > /proc/self/oom_score_adj").await;
    sb.close().await;
}

#[tokio::test]
async fn every_command_gets_fresh_namespaces() {
    let sb = sandbox("").await;
    let kinds = ["user", "mnt", "pid", "net", "ipc", "uts"];
    let read = format!(
        "for k in {}; do readlink /proc/self/ns/$k; done",
        kinds.join(" ")
    );
    // The first command holds its namespaces (the kernel reuses the numbers
    // of freed ones) while a second one runs.
    let mut first = sb
        .rt
        .stream(
            ExecCommand::new(format!("{read}; while [ ! -e go ]; do sleep 0.01; done"))
                .wall_timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let mut first_out = String::new();
    while first_out.lines().count() < kinds.len() {
        match first.next().await {
            Some(Event::Stdout(bytes)) => first_out.push_str(std::str::from_utf8(&bytes).unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    let second = stdout_of(sb.rt.as_ref(), &read).await;
    std::fs::write(sb.workspace().join("go"), "").unwrap();
    assert!(first.finish().await.success());
    for ((kind, inside), other) in kinds.iter().zip(first_out.lines()).zip(second.lines()) {
        let host = crate::support::namespace_of("self", kind).unwrap();
        assert_ne!(inside, host, "{kind} namespace is the host's");
        assert_ne!(inside, other, "{kind} namespace shared by two commands");
    }
    assert_eq!(stdout_of(sb.rt.as_ref(), "hostname").await, "berth\n");
    sb.close().await;

    let host_net = sandbox("namespace: {network: host, hostname: sandbox-1}").await;
    let net = stdout_of(host_net.rt.as_ref(), "readlink /proc/self/ns/net; hostname").await;
    assert_eq!(
        net,
        format!(
            "{}\nsandbox-1\n",
            crate::support::namespace_of("self", "net").unwrap()
        )
    );
    host_net.close().await;
}

#[tokio::test]
async fn assets_and_extra_mounts_appear_read_only_where_asked() {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(base.path().join("data/nested")).unwrap();
    std::fs::write(base.path().join("data/nested/a.txt"), "asset\n").unwrap();
    std::fs::write(base.path().join("model.bin"), "weights\n").unwrap();
    let assets = AssetMap::from_yaml_str(
        "dataset: {path: data, save_path: inputs/data}\nmodel: {path: model.bin}",
    )
    .unwrap()
    .resolve(base.path())
    .unwrap();
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("ro.txt"), "read only\n").unwrap();
    let writable = tempfile::tempdir().unwrap();
    let options = SpawnOptions {
        mounts: vec![
            Mount {
                source: shared.path().to_path_buf(),
                target: "/opt/shared".into(),
                read_only: true,
            },
            Mount {
                source: writable.path().to_path_buf(),
                target: "/mnt/out".into(),
                read_only: false,
            },
        ],
        ..SpawnOptions::default()
    };
    let sb = sandbox_with("", assets.clone(), options).await;
    assert_eq!(
        sb.rt.asset_path(assets.get("dataset").unwrap()),
        "/static/inputs/data"
    );
    assert_eq!(
        stdout_of(
            sb.rt.as_ref(),
            "cat /static/inputs/data/nested/a.txt /static/model.bin /opt/shared/ro.txt"
        )
        .await,
        "asset\nweights\nread only\n"
    );
    for command in [
        "echo x > /static/model.bin",
        "echo x > /static/inputs/data/new",
        "echo x > /opt/shared/new",
    ] {
        let result = sb.run(command).await;
        assert!(!result.success(), "`{command}` succeeded: {result:?}");
    }
    stdout_of(sb.rt.as_ref(), "echo out > /mnt/out/result").await;
    assert_eq!(
        std::fs::read_to_string(writable.path().join("result")).unwrap(),
        "out\n"
    );
    assert_eq!(
        std::fs::read_to_string(base.path().join("model.bin")).unwrap(),
        "weights\n"
    );
    // The workspace holds nothing of berth's.
    let listing = run(sb.rt.as_ref(), "ls -A").await;
    assert_eq!(listing.stdout_lossy(), "");
    sb.close().await;
}

#[tokio::test]
async fn the_sandbox_tmpfs_mounts_are_capped() {
    // 2 MiB for each of /tmp and /dev/shm: a 3 MB write fails for want of
    // space instead of taking host memory.
    let sb = sandbox("namespace: {tmpfs_size: 2097152}").await;
    for dir in ["/tmp", "/dev/shm"] {
        let result = sb
            .run(&format!("head -c 3000000 /dev/zero > {dir}/big"))
            .await;
        assert!(!result.success(), "{dir}: {result:?}");
        assert!(
            result.stderr_lossy().contains("No space left"),
            "{dir}: {result:?}"
        );
    }
    // The sandbox's own /dev holds nothing but its devices and links.
    let result = sb.run("head -c 1000000 /dev/zero > /dev/big").await;
    assert!(!result.success(), "{result:?}");
    sb.close().await;

    // Below 1 MiB is refused, naming the field.
    let spec = session_core::EnvironmentSpec::from_yaml_str(
        "{type: namespace, name: t, namespace: {tmpfs_size: 4096}}",
        "<test>",
    )
    .unwrap();
    let err = runtime_namespace::NamespaceConfig::from_spec(&spec).unwrap_err();
    assert!(err.to_string().contains("namespace.tmpfs_size"), "{err}");
}
