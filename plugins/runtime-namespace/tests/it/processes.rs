//! Nothing a command starts outlives it, seen from the host: every process
//! of the command's pid namespace is gone after it exits, times out, is
//! killed, is dropped with its runtime, or when the host process dies.
//! Also the limits, and a caller other than root.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use runtime_namespace::NamespaceBackend;
use session_core::runtime::{Backend, Event, EventStream, ExecCommand, ExecStatus, SpawnContext};
use session_core::spec::Mode;

use crate::support::{sandbox, stdout_of, wait_for_line, wait_until_empty};

/// A command that prints its pid namespace, leaves daemons behind (in a
/// session of their own, one ignoring SIGTERM), prints `ready`, then
/// prints a dot every 50 ms until the workspace has a `go` file, and then
/// waits silently for a long time.
const LEAVE_DAEMONS: &str = "readlink /proc/self/ns/pid; \
    setsid sleep 300 >/dev/null 2>&1 </dev/null & \
    (trap '' TERM HUP; exec sleep 300) >/dev/null 2>&1 & \
    echo ready; \
    while [ ! -e go ]; do echo .; sleep 0.05; done; \
    sleep 300";

/// Reads events until `ready`, returning the pid namespace printed first.
async fn until_ready(stream: &mut EventStream) -> String {
    let mut out = String::new();
    while !out.contains("ready\n") {
        match stream.next().await {
            Some(Event::Stdout(bytes)) => out.push_str(std::str::from_utf8(&bytes).unwrap()),
            Some(Event::Stderr(bytes)) => panic!("stderr: {}", String::from_utf8_lossy(&bytes)),
            other => panic!("the command ended early: {other:?}"),
        }
    }
    let ns = out.lines().next().unwrap().to_owned();
    assert!(ns.starts_with("pid:["), "{out}");
    ns
}

/// The sandbox's processes as the host sees them: at least the init, the
/// shell and both daemons.
fn assert_running(ns: &str) {
    let pids = crate::support::processes_in(ns);
    assert!(
        pids.len() >= 4,
        "expected the sandbox's processes in {ns}, found {pids:?}"
    );
}

#[tokio::test]
async fn nothing_survives_an_idle_timeout() {
    let sb = sandbox("").await;
    let mut stream = sb
        .rt
        .stream(
            ExecCommand::new(LEAVE_DAEMONS)
                .idle_timeout(Duration::from_millis(500))
                .wall_timeout(Duration::from_secs(120)),
        )
        .await
        .unwrap();
    let ns = until_ready(&mut stream).await;
    assert_running(&ns);
    // Only now can the command fall silent and time out.
    std::fs::write(sb.workspace().join("go"), "").unwrap();
    let result = stream.finish().await;
    assert_eq!(result.status, ExecStatus::IdleTimedOut, "{result:?}");
    assert_eq!(wait_until_empty(&ns), Vec::<u32>::new());
    sb.close().await;
}

#[tokio::test]
async fn nothing_survives_a_wall_timeout() {
    let sb = sandbox("").await;
    let result = sb
        .rt
        .execute(
            ExecCommand::new(
                "readlink /proc/self/ns/pid > ns; setsid sleep 300 >/dev/null 2>&1 </dev/null & sleep 300",
            )
            .wall_timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap();
    assert_eq!(result.status, ExecStatus::TimedOut, "{result:?}");
    let ns = wait_for_line(&sb.workspace().join("ns"));
    assert_eq!(wait_until_empty(&ns), Vec::<u32>::new());
    sb.close().await;
}

#[tokio::test]
async fn nothing_survives_a_kill() {
    let sb = sandbox("").await;
    let mut stream = sb
        .rt
        .stream(ExecCommand::new(LEAVE_DAEMONS).wall_timeout(Duration::from_secs(120)))
        .await
        .unwrap();
    let ns = until_ready(&mut stream).await;
    assert_running(&ns);
    sb.rt.kill().await.unwrap();
    let result = stream.finish().await;
    assert_eq!(result.status, ExecStatus::Signaled, "{result:?}");
    assert_eq!(wait_until_empty(&ns), Vec::<u32>::new());
    sb.close().await;
}

#[tokio::test]
async fn nothing_survives_the_command_ending() {
    let sb = sandbox("").await;
    let out = stdout_of(
        sb.rt.as_ref(),
        "readlink /proc/self/ns/pid; setsid sleep 300 >/dev/null 2>&1 </dev/null & \
         nohup sleep 300 >/dev/null 2>&1 & echo started",
    )
    .await;
    let ns = out.lines().next().unwrap();
    assert!(out.ends_with("started\n"), "{out}");
    assert_eq!(wait_until_empty(ns), Vec::<u32>::new());
    sb.close().await;
}

#[tokio::test]
async fn nothing_survives_a_dropped_runtime() {
    let workspace = tempfile::tempdir().unwrap();
    let spec = crate::support::spec("{type: namespace, name: dropped}");
    let ctx = SpawnContext::new("dropped", workspace.path(), Mode::Evaluation);
    let rt = NamespaceBackend.spawn(&spec, ctx).await.unwrap();
    let mut stream = rt
        .stream(ExecCommand::new(LEAVE_DAEMONS).wall_timeout(Duration::from_secs(120)))
        .await
        .unwrap();
    let ns = until_ready(&mut stream).await;
    assert_running(&ns);
    // The stream is still read, but its runtime is gone.
    drop(rt);
    let result = stream.finish().await;
    assert_eq!(result.status, ExecStatus::Signaled, "{result:?}");
    assert_eq!(wait_until_empty(&ns), Vec::<u32>::new());
}

#[tokio::test]
async fn nothing_survives_a_dropped_session() {
    let sb = sandbox("").await;
    let mut stream = sb
        .rt
        .stream(ExecCommand::new(LEAVE_DAEMONS).wall_timeout(Duration::from_secs(120)))
        .await
        .unwrap();
    let ns = until_ready(&mut stream).await;
    assert_running(&ns);
    let crate::support::Sandbox { temp, session, rt } = sb;
    let workspace = session.workspace_path().unwrap();
    drop(stream);
    drop(rt);
    drop(session);
    assert_eq!(wait_until_empty(&ns), Vec::<u32>::new());
    assert!(!workspace.exists());
    drop(temp);
}

/// When set, the test process is the child of
/// `host_death_kills_every_sandbox_process`, with this workspace.
const HOLD_WORKSPACE: &str = "BERTH_NAMESPACE_TEST_HOLD_WORKSPACE";

#[test]
fn host_death_kills_every_sandbox_process() {
    if let Some(workspace) = std::env::var_os(HOLD_WORKSPACE) {
        // The child: start a sandbox that would run for minutes, say where
        // it is, and wait to be killed.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let spec = crate::support::spec("{type: namespace, name: hold}");
            let ctx = SpawnContext::new("hold", &workspace, Mode::Evaluation);
            let rt = NamespaceBackend.spawn(&spec, ctx).await.unwrap();
            let result = rt
                .execute(ExecCommand::new(
                    "setsid sleep 300 >/dev/null 2>&1 </dev/null & \
                     readlink /proc/self/ns/pid > ns.tmp && mv ns.tmp ns; sleep 300",
                ))
                .await;
            panic!("the sandbox ended before its host was killed: {result:?}");
        });
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "processes::host_death_kills_every_sandbox_process",
            "--exact",
            "--nocapture",
        ])
        .env(HOLD_WORKSPACE, temp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ns = wait_for_line(&temp.path().join("ns"));
    let before = crate::support::processes_in(&ns);
    assert!(before.len() >= 3, "{before:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(wait_until_empty(&ns), Vec::<u32>::new());
}

#[tokio::test]
async fn limits_hold_in_the_sandbox() {
    let sb = sandbox("limits: {file_size: 65536, memory: 67108864}").await;
    let result = sb
        .run("head -c 1048576 /dev/zero > big; echo status $?")
        .await;
    let size = std::fs::metadata(sb.workspace().join("big")).unwrap().len();
    assert!(size <= 65536, "wrote {size} bytes past the limit");
    assert!(!result.stdout_lossy().contains("status 0"), "{result:?}");
    // A shell asked to hold 200 MB in a variable under a 64 MiB memory
    // limit fails; the same work streamed through a pipe does not.
    let result = sb
        .run("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}")
        .await;
    assert!(!result.success(), "{result:?}");
    let streamed = stdout_of(
        sb.rt.as_ref(),
        "head -c 200000000 /dev/zero | tr '\\0' a | wc -c",
    )
    .await;
    assert_eq!(streamed, "200000000\n");
    sb.close().await;

    // The process limit is claimed where a cgroup or, for a caller other
    // than root, RLIMIT_NPROC enforces it.
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let pids_cgroup = runtime_local::cgroup::CgroupHost::get()
        .check(&runtime_local::cgroup::CgroupLimits {
            pids: Some(64),
            ..Default::default()
        })
        .is_ok();
    assert_eq!(
        NamespaceBackend::capabilities().pids_limit,
        pids_cgroup || !root
    );
}

#[tokio::test]
async fn usage_is_reported() {
    let sb = sandbox("").await;
    let result = sb
        .run("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
        .await;
    let usage = result.usage.expect("usage");
    assert!(
        usage.user_cpu + usage.system_cpu > Duration::ZERO,
        "{usage:?}"
    );
    sb.close().await;
}

/// When set, the test process is the child of
/// `a_caller_other_than_root_keeps_its_uid_and_gets_a_process_limit`,
/// running as another user, with this workspace.
const OTHER_USER_WORKSPACE: &str = "BERTH_NAMESPACE_TEST_OTHER_USER_WORKSPACE";

/// The uid and gid the test switches to when it runs as root.
const NOBODY: u32 = 65534;

#[test]
fn a_caller_other_than_root_keeps_its_uid_and_gets_a_process_limit() {
    // SAFETY: geteuid(2) cannot fail.
    let euid = unsafe { libc::geteuid() };
    if let Some(workspace) = std::env::var_os(OTHER_USER_WORKSPACE) {
        check_as_another_user(std::path::Path::new(&workspace));
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let workspace = temp.path().join("workspace");
    std::fs::create_dir(&workspace).unwrap();
    if euid != 0 {
        // Already another user: check in this process.
        check_as_another_user(&workspace);
        return;
    }
    std::fs::set_permissions(
        temp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::chown(&workspace, Some(NOBODY), Some(NOBODY)).unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "processes::a_caller_other_than_root_keeps_its_uid_and_gets_a_process_limit",
            "--exact",
            "--nocapture",
        ])
        .env(OTHER_USER_WORKSPACE, &workspace)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "as uid {NOBODY}:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let meta = std::fs::metadata(workspace.join("mine")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY));
}

/// Spawns a sandbox as the current (non-root) user with a process limit.
fn check_as_another_user(workspace: &std::path::Path) {
    // SAFETY: geteuid(2) and getegid(2) cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    assert!(NamespaceBackend::capabilities().pids_limit);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let spec = crate::support::spec("{type: namespace, name: user, limits: {pids: 5}}");
        let ctx = SpawnContext::new("user", workspace, Mode::Evaluation);
        let rt = match NamespaceBackend.spawn(&spec, ctx).await {
            Ok(rt) => rt,
            Err(err) => panic!("spawn as uid {uid}: {err}"),
        };
        assert_eq!(
            stdout_of(rt.as_ref(), "id -u; id -g; echo x > mine").await,
            format!("{uid}\n{gid}\n")
        );
        let meta = std::fs::metadata(workspace.join("mine")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        // Ten background processes asked for by a subshell (the shell
        // gives up at the first fork that fails), five allowed to the
        // command in all; the init is not the command's.
        let result = crate::support::run(
            rt.as_ref(),
            "(for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done) 2>/dev/null; \
             set -- /proc/[0-9]*; echo $#",
        )
        .await;
        let count: usize = result.stdout_lossy().trim().parse().unwrap_or_else(|_| {
            panic!("{result:?}");
        });
        assert!((3..=6).contains(&count), "{count} processes: {result:?}");
        rt.cleanup().await.unwrap();
    });
}

/// The init's `VmSize` in kB, as the sandbox's `/proc/1/status` says.
fn init_size(status: &str) -> u64 {
    let line = status
        .lines()
        .find(|line| line.starts_with("VmSize:"))
        .unwrap_or_else(|| panic!("no VmSize in {status}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_sandbox_program_and_a_fork_build_the_same_sandbox() {
    // `berth-sandbox` is a process of a few pages; a fork of berth (here
    // the test binary) is as large as berth.
    let script = "cat /proc/1/status; echo ---; cat /proc/1/comm; ls -a / /dev; \
        readlink /proc/self/ns/pid >/dev/null; grep -c . /proc/self/mounts; \
        grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; hostname; \
        cat /proc/sys/kernel/ns_last_pid >/dev/null; ulimit -f; exit 7";
    let mut seen = Vec::new();
    for fork in [false, true] {
        runtime_namespace::use_fork(fork);
        let sb = sandbox("limits: {file_size: 1048576}").await;
        let result = sb.rt.execute(ExecCommand::new(script)).await.unwrap();
        runtime_namespace::use_fork(false);
        assert_eq!(
            (result.status, result.exit_code),
            (ExecStatus::Exited, 7),
            "{result:?}"
        );
        let out = result.stdout_lossy().to_string();
        let (status, rest) = out.split_once("---\n").unwrap();
        let size = init_size(status);
        if fork {
            assert!(size > 4096, "a fork of the test binary is {size} kB");
        } else {
            assert!(size < 1024, "berth-sandbox's init is {size} kB");
        }
        assert!(rest.starts_with("berth-init\n"), "{rest}");
        assert!(
            rest.ends_with("2048\n"),
            "ulimit -f in 512-byte blocks: {rest}"
        );
        seen.push(rest.to_owned());
        sb.close().await;
    }
    assert_eq!(seen[0], seen[1]);
}

#[tokio::test]
async fn a_command_of_literal_words_skips_the_shell_and_behaves_as_under_it() {
    let sb = sandbox("").await;
    let parent = "python3 -c 'import os; \
        print(open(\"/proc/%d/comm\" % os.getppid()).read().strip(), os.environ[\"PWD\"])'";
    // dash would fork the program and wait: berth-sandbox does it in
    // dash's place; `exec` words are executed by the command's process.
    let out = stdout_of(sb.rt.as_ref(), parent).await;
    assert_eq!(out, "berth-sh /workspace\n");
    let out = stdout_of(sb.rt.as_ref(), &format!("exec {parent}")).await;
    assert_eq!(out, "berth-init /workspace\n");
    // What the program cannot be is left to the shell, as before.
    let missing = sb
        .rt
        .execute(ExecCommand::new("no-such-program x"))
        .await
        .unwrap();
    assert_eq!(missing.exit_code, 127, "{missing:?}");
    assert!(
        missing
            .stderr_lossy()
            .contains("no-such-program: not found"),
        "{missing:?}"
    );
    std::fs::write(
        sb.workspace().join("script"),
        "echo from a script with no interpreter line\n",
    )
    .unwrap();
    std::fs::set_permissions(
        sb.workspace().join("script"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    assert_eq!(
        stdout_of(sb.rt.as_ref(), "./script").await,
        "from a script with no interpreter line\n"
    );
    // A signal's death as dash reports it.
    let killed = sb
        .rt
        .execute(ExecCommand::new(
            "python3 -c 'import os; os.kill(os.getpid(), 11)'",
        ))
        .await
        .unwrap();
    assert_eq!(killed.exit_code, 139, "{killed:?}");
    assert!(
        killed.stderr_lossy().contains("Segmentation fault"),
        "{killed:?}"
    );
    sb.close().await;
}

/// The descriptor of this runtime's plan (`berth-sandbox-plan`).
fn plan_descriptor() -> i32 {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            target
                .to_string_lossy()
                .contains("berth-sandbox-plan")
                .then(|| entry.file_name().to_string_lossy().parse().ok())?
        })
        .next()
        .expect("the runtime's plan is open")
}

#[tokio::test]
async fn a_plan_descriptor_replaced_behind_berths_back_is_not_taken_as_a_plan() {
    let sb = sandbox("").await;
    let fd = plan_descriptor();
    // Another part of the process closes the descriptor and the number is
    // reused for a file whose content a command may have written.
    let forged = sb.workspace().join("forged");
    std::fs::write(&forged, b"berthsbx").unwrap();
    let file = std::fs::File::open(&forged).unwrap();
    // SAFETY: dup2(2) over a descriptor of this test process.
    assert_eq!(
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), fd) },
        fd
    );
    let out = stdout_of(
        sb.rt.as_ref(),
        "cat /proc/1/comm; grep -c . /proc/self/mounts",
    )
    .await;
    let (init, mounts) = out.split_once('\n').unwrap();
    assert_eq!(init, "berth-init", "{out}");
    assert!(mounts.trim().parse::<u32>().unwrap() > 5, "{out}");
    sb.close().await;
}

#[tokio::test]
async fn nothing_of_berths_reaches_the_command_even_when_its_filter_refuses_the_calls_that_close_it()
 {
    let profiles = tempfile::tempdir().unwrap();
    let profile = profiles.path().join("no-close.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["close_range", "fcntl", "prlimit64", "setrlimit"],
             "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    // A descriptor this process leaves open across exec.
    let secret = std::fs::File::open(profiles.path()).unwrap();
    // SAFETY: dup2(2) of our own descriptor to a free number, inherited.
    assert_eq!(
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&secret), 77) },
        77
    );
    // Both ways of building the sandbox: berth-sandbox, and a fork of berth
    // (where the program cannot be executed).
    for fork in [false, true] {
        runtime_namespace::use_fork(fork);
        let sb = sandbox(&format!(
            "limits: {{file_size: 1048576}}, namespace: {{seccomp: '{}'}}",
            profile.display()
        ))
        .await;
        let out = stdout_of(
            sb.rt.as_ref(),
            "for fd in 3 4 5 6 77; do test -e /proc/self/fd/$fd && echo open $fd; done; \
             grep SigIgn /proc/self/status; grep -o 'Max file size *[0-9]*' /proc/self/limits",
        )
        .await;
        runtime_namespace::use_fork(false);
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(
            words,
            [
                "SigIgn:",
                "0000000000000000",
                "Max",
                "file",
                "size",
                "1048576"
            ],
            "fork: {fork}: {out}"
        );
        sb.close().await;
    }
    // SAFETY: closing the descriptor made above.
    unsafe { libc::close(77) };
}

#[tokio::test]
async fn usage_is_the_commands_not_berths() {
    // berth's own peak memory, well above what `true` takes.
    let ballast = vec![1u8; 96 << 20];
    std::hint::black_box(&ballast);
    let sb = sandbox("").await;
    let result = sb.run("true").await;
    let usage = result.usage.expect("usage");
    assert!(
        usage.max_rss_bytes < 32 << 20,
        "max_rss_bytes {} for `true`",
        usage.max_rss_bytes
    );
    drop(ballast);
    sb.close().await;
}

#[tokio::test]
async fn a_command_with_limits_joins_its_cgroup_in_the_sandbox_program() {
    let sb = sandbox("limits: {pids: 64}").await;
    let out = stdout_of(sb.rt.as_ref(), "cat /proc/1/status; cat /proc/self/cgroup").await;
    let size = init_size(&out);
    assert!(size < 1024, "berth-sandbox's init is {size} kB");
    assert!(
        out.lines()
            .any(|line| line.contains("/berth/") && line.ends_with("-namespace")),
        "{out}"
    );
    // A command of literal words skips the shell in its cgroup too.
    let out = stdout_of(
        sb.rt.as_ref(),
        "python3 -c 'import os; print(open(\"/proc/%d/comm\" % os.getppid()).read().strip()); \
         print(open(\"/proc/self/cgroup\").read())'",
    )
    .await;
    assert!(out.starts_with("berth-sh\n"), "{out}");
    assert!(
        out.lines()
            .any(|line| line.contains("/berth/") && line.ends_with("-namespace")),
        "{out}"
    );
    // That the limits hold is `limits_hold_in_the_sandbox`'s.
    sb.close().await;
}

/// The cgroup directories of this process's commands (their names carry
/// its pid), up to five levels below `/sys/fs/cgroup`.
fn my_cgroups() -> Vec<std::path::PathBuf> {
    let mark = format!("-{}-", std::process::id());
    let mut found = Vec::new();
    let mut level = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    for _ in 0..5 {
        let mut next = Vec::new();
        for dir in level {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("berth-") && name.contains(&mark) {
                    found.push(entry.path());
                } else {
                    next.push(entry.path());
                }
            }
        }
        level = next;
    }
    found
}

#[tokio::test]
async fn a_limited_command_that_cannot_start_leaves_no_cgroup() {
    // Room for the supervisor only: the init cannot be forked.
    let sb = sandbox("limits: {pids: 1}").await;
    let result = sb.run("true").await;
    assert_eq!(result.status, ExecStatus::SpawnFailed, "{result:?}");
    assert!(
        result.stderr_lossy().contains("cannot build the sandbox"),
        "{result:?}"
    );
    assert_eq!(my_cgroups(), Vec::<std::path::PathBuf>::new());
    sb.close().await;
}
