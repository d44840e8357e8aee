//! What the local backend promises beyond the conformance suite: rlimits,
//! resource usage, the parent-death signal, the shell setting and a clear
//! refusal of what it cannot do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use session_core::runtime::{ExecCommand, ExecStatus};
use session_core::session::{RuntimeHandle, Session, SpawnOptions};
use session_core::{EnvironmentSpec, Error};

use runtime_local as _;

fn spec(yaml: &str) -> EnvironmentSpec {
    EnvironmentSpec::from_yaml_str(yaml, "<test>").unwrap()
}

async fn session(spec: EnvironmentSpec, temp: &Path) -> Session {
    Session::builder(spec)
        .temp_root(temp.join("sessions"))
        .prepare()
        .await
        .unwrap()
}

#[tokio::test]
async fn file_size_limit_stops_a_large_write() {
    file_size_limit().await;
}

#[tokio::test]
async fn file_size_limit_of_the_in_process_keeper_stops_a_large_write() {
    runtime_local::process::use_in_process_keeper(true);
    file_size_limit().await;
}

async fn file_size_limit() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(
        spec("{type: local, name: t, limits: {file_size: 65536}}"),
        temp.path(),
    )
    .await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let result = rt
        .execute(ExecCommand::new(
            "head -c 1048576 /dev/zero > big; echo status $?",
        ))
        .await
        .unwrap();
    let size = std::fs::metadata(session.workspace_path().unwrap().join("big"))
        .unwrap()
        .len();
    assert!(size <= 65536, "wrote {size} bytes past the limit");
    assert!(
        !result.stdout_lossy().contains("status 0"),
        "{}",
        result.stdout_lossy()
    );
    session.close().await.unwrap();
}

#[tokio::test]
async fn memory_limit_stops_a_large_allocation() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(
        spec("{type: local, name: t, limits: {memory: 67108864}}"),
        temp.path(),
    )
    .await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    // python3 is on this machine; filling 512 MiB under a 64 MiB limit
    // must fail (the command's cgroup counts the pages it touches).
    let result = rt
        .execute(ExecCommand::new(
            "python3 -c 'b = b\"x\" * (512 * 1024 * 1024)'",
        ))
        .await
        .unwrap();
    assert!(!result.success(), "allocation succeeded: {result:?}");
    session.close().await.unwrap();
}

#[tokio::test]
async fn a_bulky_stdout_gets_a_pipe_of_256_kib() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(EnvironmentSpec::new("local", "t"), temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    // F_GETPIPE_SZ is 1032. A command starts with the kernel's pipes; once
    // 256 KiB came through its stdout, that pipe grows (stderr never does).
    // The sizes go to stderr, which the stdout's growth leaves be.
    let result = rt
        .execute(ExecCommand::new(
            "python3 -c 'import fcntl, sys, time\n\
             sys.stderr.write(\"%d %d\\n\" % (fcntl.fcntl(1, 1032), fcntl.fcntl(2, 1032)))\n\
             sys.stderr.flush()\n\
             for _ in range(64): sys.stdout.buffer.write(bytes(65536)); sys.stdout.flush()\n\
             time.sleep(0.2)\n\
             sys.stderr.write(\"%d %d\\n\" % (fcntl.fcntl(1, 1032), fcntl.fcntl(2, 1032)))'",
        ))
        .await
        .unwrap();
    assert!(result.success(), "{result:?}");
    assert_eq!(result.stdout.total_bytes, 64 * 65536);
    assert_eq!(
        result.stderr_lossy().lines().collect::<Vec<_>>(),
        ["65536 65536", "262144 65536"],
        "{result:?}"
    );
    session.close().await.unwrap();
}

/// `command` run as it is (which may start its program without the
/// shell) and behind `: ;` (which the shell always reads, forking the
/// program and waiting for it) must end the same: status, exit code,
/// signal, stdout and stderr.
async fn alone_as_through_the_shell(rt: &RuntimeHandle, command: &str) {
    let mut results = Vec::new();
    for text in [command.to_owned(), format!(": ; {command}")] {
        let mut cmd = ExecCommand::new(text);
        cmd.env.insert("BERTH_T".into(), "1".into());
        cmd.env.insert("NOT-A-NAME".into(), "2".into());
        if command.contains("IFS") {
            cmd.env.insert("IFS".into(), "x".into());
            cmd.env.insert("OPTIND".into(), "5".into());
        }
        let result = rt.execute(cmd).await.unwrap();
        let mut stdout: Vec<String> = result.stdout_lossy().lines().map(str::to_owned).collect();
        if command.ends_with("env") {
            // The shell lists its environment in an order of its own.
            stdout.sort();
        }
        results.push((
            result.status,
            result.exit_code,
            result.signal,
            stdout,
            result.stderr_lossy().into_owned(),
        ));
    }
    assert_eq!(results[0], results[1], "{command}");
}

#[tokio::test]
async fn exec_of_literal_words_does_what_the_shell_would() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(EnvironmentSpec::new("local", "t"), temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    for command in [
        "exec printenv PWD",
        "exec printenv PWD IFS OPTIND PPID",
        "exec printf '%s|' 'a b' '' 'it'\\''s' '$HOME'",
        "exec env",
        "exec nosuch-berth-program",
        "exec /etc/passwd",
        "exec sh -c 'kill -KILL $$'",
        "exec sh -c 'exit 7'",
    ] {
        alone_as_through_the_shell(&rt, command).await;
    }
    session.close().await.unwrap();
}

#[tokio::test]
async fn literal_commands_do_what_the_shell_would() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(EnvironmentSpec::new("local", "t"), temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let mut commands: Vec<String> = [
        "printenv PWD",
        "printenv PWD IFS OPTIND PPID",
        "printf '%s|' 'a b' '' 'it'\\''s' '$HOME'",
        "env",
        "nosuch-berth-program",
        "/etc/passwd",
        "sh -c 'exit 7'",
        // dash's builtins, reserved words and assignments stay the shell's.
        "echo -e 'a\\tb'",
        "pwd -P",
        "type cat",
        "FOO=bar printenv FOO",
        "if",
    ]
    .map(str::to_owned)
    .to_vec();
    // Every signal that ends a process by default, the program's own end
    // (dash reports `128 + N` and a line of its own).
    let stopping_or_ignored = [17, 18, 19, 20, 21, 22, 23, 28];
    for signal in (1..=64).filter(|n| !stopping_or_ignored.contains(n)) {
        commands.push(format!("sh -c 'kill -{signal} $$'"));
    }
    commands.extend(
        [
            // The program is not its group's leader: it may start a
            // session of its own.
            "setsid -w sh -c 'echo late; exit 4'",
            // A signal to the program's parent or to the whole group ends
            // the shell's stand-in as it would end the shell.
            "sh -c 'kill -TERM $PPID; echo survived; exit 3'",
            "sh -c 'trap \"echo trapped\" INT; kill -INT $PPID; sleep 0.1; echo done'",
            "sh -c 'ls /proc/$PPID/fd'",
            "sh -c 'kill -TERM 0'",
            // Files the kernel will not execute: the shell decides.
            "./not-elf",
            "./no-shebang a",
        ]
        .map(str::to_owned),
    );
    let workspace = session.workspace_path().unwrap();
    std::fs::write(
        workspace.join("not-elf"),
        b"\x7fELF\x02\x01\x01 not a program\n",
    )
    .unwrap();
    std::fs::write(workspace.join("no-shebang"), b"echo script \"$1\"\n").unwrap();
    for file in ["not-elf", "no-shebang"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(workspace.join(file), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    for command in commands {
        alone_as_through_the_shell(&rt, &command).await;
    }
    if !std::fs::canonicalize("/bin/sh").is_ok_and(|sh| sh.ends_with("dash")) {
        // Only dash is stood in for; every command above went to the shell.
        runtime_conformance::skip::record("/bin/sh is not dash here: no stand-in to look at");
        session.close().await.unwrap();
        return;
    }
    // dash was not started: the program's parent is its stand-in.
    let parent = rt
        .execute(ExecCommand::new("sh -c 'cat /proc/$PPID/comm'"))
        .await
        .unwrap();
    assert_eq!(parent.stdout_lossy(), "berth-sh\n");
    let parent = rt
        .execute(ExecCommand::new(": ; sh -c 'cat /proc/$PPID/comm'"))
        .await
        .unwrap();
    assert_eq!(parent.stdout_lossy(), "sh\n");
    session.close().await.unwrap();
}

#[tokio::test]
async fn a_literal_command_berth_ends_is_reported_as_through_the_shell() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(EnvironmentSpec::new("local", "t"), temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    for text in ["sleep 30", ": ; sleep 30"] {
        // A timeout: berth's SIGKILL, reported as such, with no note of
        // the shell's.
        let mut cmd = ExecCommand::new(text);
        cmd.wall_timeout = Some(Duration::from_millis(300));
        let result = rt.execute(cmd).await.unwrap();
        assert_eq!(result.status, ExecStatus::TimedOut, "{text}");
        assert_eq!(
            (result.exit_code, result.signal),
            (-libc::SIGKILL, Some(libc::SIGKILL)),
            "{text}"
        );
        assert_eq!(result.stderr_lossy(), "", "{text}");
        // A kill of the runtime's commands.
        let stream = rt.stream(ExecCommand::new(text)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        rt.kill().await.unwrap();
        let result = stream.finish().await;
        assert_eq!(result.status, ExecStatus::Signaled, "{text}");
        assert_eq!(result.signal, Some(libc::SIGKILL), "{text}");
        assert_eq!(result.stderr_lossy(), "", "{text}");
    }
    session.close().await.unwrap();
}

#[tokio::test]
async fn usage_is_reported() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(EnvironmentSpec::new("local", "t"), temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let result = rt
        .execute(ExecCommand::new(
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
        ))
        .await
        .unwrap();
    let usage = result.usage.expect("local reports usage");
    assert!(usage.max_rss_bytes > 0);
    assert!(usage.user_cpu + usage.system_cpu > Duration::ZERO);
    session.close().await.unwrap();
}

#[tokio::test]
async fn the_configured_shell_runs_commands() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(
        spec("{type: local, name: t, local: {shell: /bin/bash}}"),
        temp.path(),
    )
    .await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let result = rt
        .execute(ExecCommand::new("echo $BASH_VERSION"))
        .await
        .unwrap();
    assert!(
        !result.stdout_lossy().trim().is_empty(),
        "not bash: {result:?}"
    );
    session.close().await.unwrap();
}

#[tokio::test]
async fn a_missing_shell_is_spawn_failed_not_a_panic() {
    missing_shell().await;
}

#[tokio::test]
async fn a_missing_shell_of_the_in_process_keeper_is_spawn_failed() {
    runtime_local::process::use_in_process_keeper(true);
    missing_shell().await;
}

async fn missing_shell() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(
        spec("{type: local, name: t, local: {shell: /nonexistent/shell}}"),
        temp.path(),
    )
    .await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let result = rt.execute(ExecCommand::new("true")).await.unwrap();
    assert_eq!(result.status, ExecStatus::SpawnFailed);
    assert_eq!(result.exit_code, -1);
    assert!(result.stderr_lossy().contains("/nonexistent/shell"));
    session.close().await.unwrap();
}

#[tokio::test]
async fn unsupported_and_unknown_settings_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    for (yaml, field) in [
        (
            "{type: local, name: t, local: {requires_tty: true}}",
            "local.requires_tty",
        ),
        (
            "{type: local, name: t, local: {shel: /bin/sh}}",
            "local.shel",
        ),
    ] {
        let mut session = session(spec(yaml), temp.path()).await;
        let err = session.spawn(SpawnOptions::default()).await.unwrap_err();
        match &err {
            Error::Spec { field: got, .. } => assert_eq!(got, field, "{err}"),
            other => panic!("{yaml}: {other}"),
        }
        session.close().await.unwrap();
    }
}

#[tokio::test]
async fn background_processes_outlive_their_command_until_cleanup() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(EnvironmentSpec::new("local", "t"), temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    // A server started in the background keeps running for the next command
    // (and does not hold this one open), until the runtime is cleaned up.
    let started = rt
        .execute(ExecCommand::new(
            "sleep 300 & echo $! > server.pid; echo started",
        ))
        .await
        .unwrap();
    assert!(started.success());
    assert!(started.elapsed < Duration::from_secs(60));
    let pid: i32 = std::fs::read_to_string(session.workspace_path().unwrap().join("server.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid), "the background process died with its command");
    session.close().await.unwrap();
    assert!(wait_dead(pid), "cleanup left pid {pid} running");
}

#[test]
fn commands_die_with_their_host() {
    die_with_the_host("local_process::commands_die_with_their_host", false);
}

#[test]
fn commands_of_the_in_process_keeper_die_with_their_host() {
    die_with_the_host(
        "local_process::commands_of_the_in_process_keeper_die_with_their_host",
        true,
    );
}

/// Re-runs the test binary (test `name`) as a host process that starts a
/// command and is then killed with SIGKILL: the parent-death signal must
/// take the command down with it.
fn die_with_the_host(name: &str, in_process: bool) {
    if let Ok(dir) = std::env::var("BERTH_TEST_PDEATH_DIR") {
        host_that_gets_killed(PathBuf::from(dir), in_process);
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let mut host = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture"])
        .env("BERTH_TEST_PDEATH_DIR", temp.path())
        .spawn()
        .unwrap();
    let pid_file = temp.path().join("command.pid");
    let detached_file = temp.path().join("detached.pid");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !pid_file.exists() || !detached_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the host never started its command"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = read_pid(&pid_file);
    let detached = read_pid(&detached_file);
    assert!(alive(pid) && alive(detached));
    host.kill().unwrap();
    host.wait().unwrap();
    assert!(wait_dead(pid), "pid {pid} outlived its host");
    assert!(
        wait_dead(detached),
        "the setsid process {detached} outlived its host"
    );
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn host_that_gets_killed(dir: PathBuf, in_process: bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime_local::process::use_in_process_keeper(in_process);
    runtime.block_on(async move {
        let mut session = session(EnvironmentSpec::new("local", "t"), &dir).await;
        let rt = session.spawn(SpawnOptions::default()).await.unwrap();
        let pid_file = dir.join("command.pid");
        let detached_file = dir.join("detached.pid");
        let command = format!(
            "setsid sh -c 'echo $$ > {1}.tmp && mv {1}.tmp {1} && exec sleep 300' & \
             echo $$ > {0}.tmp && mv {0}.tmp {0} && exec sleep 300",
            pid_file.display(),
            detached_file.display()
        );
        let _stream = rt.stream(ExecCommand::new(command)).await.unwrap();
        std::future::pending::<()>().await;
    });
}

fn state(pid: i32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("State:"))
        .map(str::to_owned)
}

fn alive(pid: i32) -> bool {
    state(pid).is_some_and(|s| !s.contains("Z (") && !s.contains("X ("))
}

/// Waits (bounded) for a process to be dead: gone, or a zombie waiting for
/// init.
fn wait_dead(pid: i32) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Starts, in the background of a command, one process that leaves the
/// command's process group with `setsid` and one orphaned by a double
/// fork, each writing its pid to `<prefix>.setsid` / `<prefix>.orphan`.
fn detaching(prefix: &str) -> String {
    format!(
        "setsid sh -c 'echo $$ > {prefix}.setsid.tmp; mv {prefix}.setsid.tmp {prefix}.setsid; \
         exec sleep 300' & \
         sh -c 'sh -c \"echo \\$\\$ > {prefix}.orphan.tmp; mv {prefix}.orphan.tmp {prefix}.orphan; \
         exec sleep 300\" & exit 0'; \
         while [ ! -e {prefix}.setsid ] || [ ! -e {prefix}.orphan ]; do sleep 0.01; done"
    )
}

fn detached_pids(root: &Path, prefix: &str) -> [i32; 2] {
    [
        read_pid(&root.join(format!("{prefix}.setsid"))),
        read_pid(&root.join(format!("{prefix}.orphan"))),
    ]
}

#[tokio::test]
async fn detached_processes_die_with_a_timeout_a_kill_and_cleanup() {
    detached_processes_die().await;
}

#[tokio::test]
async fn detached_processes_of_the_in_process_keeper_die_with_a_timeout_a_kill_and_cleanup() {
    runtime_local::process::use_in_process_keeper(true);
    detached_processes_die().await;
}

async fn detached_processes_die() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(EnvironmentSpec::new("local", "t"), temp.path()).await;
    let root = session.workspace_path().unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();

    // A timeout ends the processes that left the group.
    let timed_out = rt
        .execute(
            ExecCommand::new(format!("{}; sleep 300", detaching("timeout")))
                .wall_timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    assert_eq!(timed_out.status, ExecStatus::TimedOut, "{timed_out:?}");
    for pid in detached_pids(&root, "timeout") {
        assert!(wait_dead(pid), "pid {pid} survived the timeout");
    }

    // So does a kill.
    let mut stream = rt
        .stream(ExecCommand::new(format!(
            "{}; echo ready; sleep 300",
            detaching("kill")
        )))
        .await
        .unwrap();
    while let Some(event) = stream.next().await {
        if matches!(event, session_core::runtime::Event::Stdout(_)) {
            break;
        }
    }
    rt.kill().await.unwrap();
    let killed = stream.finish().await;
    assert_eq!(killed.status, ExecStatus::Signaled, "{killed:?}");
    for pid in detached_pids(&root, "kill") {
        assert!(wait_dead(pid), "pid {pid} survived the kill");
    }

    // A finished command's detached processes linger for the next command
    // and die with the runtime's cleanup.
    let finished = rt
        .execute(ExecCommand::new(detaching("cleanup")))
        .await
        .unwrap();
    assert!(finished.success(), "{finished:?}");
    let lingering = detached_pids(&root, "cleanup");
    for pid in lingering {
        assert!(alive(pid), "pid {pid} died with its command");
    }
    session.close().await.unwrap();
    for pid in lingering {
        assert!(wait_dead(pid), "pid {pid} survived the cleanup");
    }
}

#[tokio::test]
async fn a_command_starts_with_only_the_standard_descriptors() {
    only_the_standard_descriptors().await;
}

#[tokio::test]
async fn a_command_started_by_the_in_process_keeper_has_only_the_standard_descriptors() {
    runtime_local::process::use_in_process_keeper(true);
    only_the_standard_descriptors().await;
}

async fn only_the_standard_descriptors() {
    use std::os::fd::AsRawFd;
    let temp = tempfile::tempdir().unwrap();
    // A descriptor this process leaves open across exec, as a careless
    // caller of berth might.
    let dir = std::fs::File::open(temp.path()).unwrap();
    let leaked = 77;
    // SAFETY: dup2 onto a free descriptor number this test owns.
    assert_eq!(unsafe { libc::dup2(dir.as_raw_fd(), leaked) }, leaked);
    let mut session = session(EnvironmentSpec::new("local", "t"), temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let result = rt
        .execute(ExecCommand::new("ls /proc/$$/fd; exit 0"))
        .await
        .unwrap();
    // SAFETY: closing the descriptor made above.
    unsafe { libc::close(leaked) };
    session.close().await.unwrap();
    assert_eq!(result.stdout_lossy(), "0\n1\n2\n", "{result:?}");
}

#[tokio::test]
async fn timeouts_too_long_for_a_clock_mean_no_deadline() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(EnvironmentSpec::new("local", "t"), temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let result = rt
        .execute(
            ExecCommand::new("echo fine")
                .wall_timeout(Duration::MAX)
                .idle_timeout(Duration::MAX),
        )
        .await
        .unwrap();
    assert!(result.success(), "{result:?}");
    assert_eq!(result.stdout_lossy(), "fine\n");
    session.close().await.unwrap();
}

#[tokio::test]
async fn a_command_that_stops_its_keeper_still_times_out_and_dies() {
    stopping_the_keeper().await;
}

#[tokio::test]
async fn a_command_that_stops_its_in_process_keeper_still_times_out_and_dies() {
    runtime_local::process::use_in_process_keeper(true);
    stopping_the_keeper().await;
}

async fn stopping_the_keeper() {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(EnvironmentSpec::new("local", "t"), temp.path()).await;
    let root = session.workspace_path().unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    // The command runs as berth's user, so it can stop its keeper; berth
    // then ends the command without the keeper's help.
    let result = rt
        .execute(
            ExecCommand::new(
                "setsid sh -c 'echo $$ > detached.pid; exec sleep 1042' & \
                 echo $$ > shell.pid; kill -STOP $PPID; exec sleep 1043",
            )
            .wall_timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    assert_eq!(result.status, ExecStatus::TimedOut, "{result:?}");
    for name in ["shell.pid", "detached.pid"] {
        let pid = read_pid(&root.join(name));
        assert!(wait_dead(pid), "{name}: pid {pid} survived");
    }
    // The runtime goes on, and its cleanup ends what the stopped keeper
    // left.
    let next = rt.execute(ExecCommand::new("echo next")).await.unwrap();
    assert_eq!(next.stdout_lossy(), "next\n");
    session.close().await.unwrap();
}

/// The executable and name of a command's keeper, as the command sees
/// its parent.
async fn keeper_of_a_command() -> (String, String) {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(EnvironmentSpec::new("local", "t"), temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let result = rt
        .execute(ExecCommand::new(
            "readlink /proc/$PPID/exe; cat /proc/$PPID/comm",
        ))
        .await
        .unwrap();
    session.close().await.unwrap();
    let out = result.stdout_lossy();
    let mut lines = out.lines().map(str::to_owned);
    (lines.next().unwrap(), lines.next().unwrap())
}

#[tokio::test]
async fn commands_start_through_the_keeper_program_unless_told_otherwise() {
    // The program: an in-memory file, not a fork of this process.
    let (exe, name) = keeper_of_a_command().await;
    assert!(exe.starts_with("/memfd:berth-keeper"), "{exe}");
    assert_eq!(name, "berth-keeper");
    // The in-process keeper: a fork of this test binary.
    runtime_local::process::use_in_process_keeper(true);
    let (exe, name) = keeper_of_a_command().await;
    assert_eq!(
        PathBuf::from(&exe),
        std::env::current_exe().unwrap().canonicalize().unwrap()
    );
    assert_eq!(name, "berth-keeper");
}

/// The signals a command starts with ignored, from its `/proc` status.
async fn ignored_signals_of_a_command() -> String {
    let temp = tempfile::tempdir().unwrap();
    let mut session = session(EnvironmentSpec::new("local", "t"), temp.path()).await;
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let result = rt
        .execute(ExecCommand::new(
            "grep -E '^Sig(Ign|Blk)' /proc/self/status",
        ))
        .await
        .unwrap();
    session.close().await.unwrap();
    result.stdout_lossy().into_owned()
}

#[tokio::test]
async fn commands_start_with_no_signal_ignored_or_blocked() {
    // This test process ignores SIGPIPE (Rust's runtime does); the command
    // gets every signal at its default, whichever keeper starts it.
    let expected = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";
    assert_eq!(ignored_signals_of_a_command().await, expected);
    runtime_local::process::use_in_process_keeper(true);
    assert_eq!(ignored_signals_of_a_command().await, expected);
}

/// What a command run with the shell `shell` (a spec's `local.shell`) and
/// `PATH` gave, started by the keeper program and by the in-process keeper
/// (which must agree).
async fn run_with_shell(shell: &str, path: &str, temp: &Path) -> (ExecStatus, i32, String, String) {
    let mut seen = Vec::new();
    for in_process in [false, true] {
        runtime_local::process::use_in_process_keeper(in_process);
        let mut session = session(
            spec(&format!(
                "{{type: local, name: t, local: {{shell: '{shell}'}}}}"
            )),
            temp,
        )
        .await;
        let rt = session.spawn(SpawnOptions::default()).await.unwrap();
        let result = rt
            .execute(ExecCommand::new("echo ran").env("PATH", path))
            .await
            .unwrap();
        seen.push((
            result.status,
            result.exit_code,
            result.stdout_lossy().into_owned(),
            result.stderr_lossy().into_owned(),
        ));
        session.close().await.unwrap();
    }
    runtime_local::process::use_in_process_keeper(false);
    assert_eq!(
        seen[0], seen[1],
        "the keeper program and the fork differ for {shell}"
    );
    seen.remove(0)
}

/// A shell named without a slash is looked for in the command's `PATH` as
/// `execvp` does: directories where it is missing are skipped, one where it
/// is not executable is skipped but remembered (`EACCES` if it is found
/// nowhere else), and a file the kernel cannot execute (no `#!`) is run by
/// `/bin/sh`; both keepers agree on each.
#[tokio::test]
async fn shells_are_found_in_the_command_path_as_execvp_finds_them() {
    use std::os::unix::fs::PermissionsExt;
    let temp = tempfile::tempdir().unwrap();
    let dirs = ["none", "denied", "good"].map(|name| {
        let dir = temp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        dir
    });
    let script = "echo script \"$@\"\n";
    std::fs::write(dirs[1].join("myshell"), script).unwrap();
    std::fs::set_permissions(
        dirs[1].join("myshell"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(dirs[2].join("myshell"), script).unwrap();
    std::fs::set_permissions(
        dirs[2].join("myshell"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let joined = |dirs: &[&Path]| {
        dirs.iter()
            .map(|dir| dir.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(":")
    };
    let work = temp.path().join("work");
    std::fs::create_dir(&work).unwrap();

    // Found by name in /usr/bin or /bin.
    let (status, code, out, _) = run_with_shell("sh", "/usr/bin:/bin", &work).await;
    assert_eq!(
        (status, code, out.as_str()),
        (ExecStatus::Exited, 0, "ran\n")
    );
    // Skipped where missing or not executable; a script without `#!` runs
    // under /bin/sh, with the command's arguments.
    let path = joined(&[&dirs[0], &dirs[1], &dirs[2]]);
    let (status, code, out, _) = run_with_shell("myshell", &path, &work).await;
    assert_eq!(
        (status, code, out.as_str()),
        (ExecStatus::Exited, 0, "script -c echo ran\n")
    );
    // Found only where it may not be executed: permission denied.
    let path = joined(&[&dirs[0], &dirs[1]]);
    let (status, _, _, err) = run_with_shell("myshell", &path, &work).await;
    assert_eq!(status, ExecStatus::SpawnFailed);
    assert!(err.contains("ermission denied"), "{err}");
    // Found nowhere.
    let (status, _, _, err) = run_with_shell("myshell", &joined(&[&dirs[0]]), &work).await;
    assert_eq!(status, ExecStatus::SpawnFailed);
    assert!(err.contains("No such file"), "{err}");
}
