//! A caller other than root whose container runs as someone else (agent
//! mode, an image that runs as root) gets its workspace back: what root
//! made there — `chmod 000` directories and files, set-id files, symlinks
//! out of the workspace, a tree deeper than `PATH_MAX` — is the caller's
//! to read after each command, a checkpoint works, and closing the session
//! leaves nothing, also while a command is still writing. Symlinks are
//! never followed. A container that runs as the caller, or a caller that
//! is root, gets nothing handed back.
//!
//! The test process runs as root here; it runs itself again as uid 65534
//! with the group of the engine's socket, as a caller other than root.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use session_core::runtime::{Event, ExecCommand, Runtime};
use session_core::session::{Session, SpawnOptions};
use session_core::spec::Mode;

/// The uid and gid the test switches to when it runs as root.
const NOBODY: u32 = 65534;

/// Set in the process that runs as another user: the directory it owns.
const CALLER_DIR: &str = "BERTH_DOCKER_TEST_CALLER_DIR";
/// Set in that process: the prefix of its sessions' ids.
const CALLER_SESSIONS: &str = "BERTH_DOCKER_TEST_CALLER_SESSIONS";

/// The group of the engine's socket, which lets a user other than root
/// use it (none for an engine reached over TCP).
fn socket_group() -> Option<u32> {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let socket = match host.strip_prefix("unix://") {
        Some(path) => PathBuf::from(path),
        None if host.is_empty() => PathBuf::from("/var/run/docker.sock"),
        None => return None,
    };
    std::fs::metadata(socket).ok().map(|meta| meta.gid())
}

/// Runs this binary's test `name` as uid and gid [`NOBODY`], with the
/// socket's group, in `dir` (which that user owns). Returns whether it
/// passed and what it printed.
async fn run_as_nobody(name: &str, dir: &Path, sessions: &str) -> (bool, String) {
    let groups: Vec<libc::gid_t> = socket_group().into_iter().collect();
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([name, "--exact", "--nocapture"])
        .env(CALLER_DIR, dir)
        .env(CALLER_SESSIONS, sessions)
        .env("TMPDIR", dir);
    // SAFETY: the hook makes raw system calls only (async-signal-safe),
    // on a list made before the fork, in a child with one thread.
    unsafe {
        command.pre_exec(move || {
            let done = |rc: libc::c_long| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            };
            done(libc::syscall(
                libc::SYS_setgroups,
                groups.len(),
                groups.as_ptr(),
            ))?;
            done(libc::syscall(libc::SYS_setgid, NOBODY))?;
            done(libc::syscall(libc::SYS_setuid, NOBODY))
        });
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("waiting for the test as another user")
        .expect("running the test as another user");
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

/// A directory for the caller: `temp` itself when this process is not
/// root, else a directory in it that [`NOBODY`] owns.
fn caller_dir(temp: &Path) -> PathBuf {
    std::fs::set_permissions(temp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let dir = temp.join("caller");
    std::fs::create_dir(&dir).expect("mkdir");
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    dir
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

async fn run(runtime: &dyn Runtime, command: &str) -> String {
    let result = crate::support::run(runtime, command).await;
    assert!(result.success(), "`{command}`: {result:?}");
    result.stdout_lossy().into_owned()
}

/// Runs `check` as a caller other than root: in this process when it is
/// not root, else in this test run again as [`NOBODY`]. Then nothing of
/// the sessions is left, on disk or on the engine.
macro_rules! as_a_caller_other_than_root {
    ($name:literal, $check:path) => {{
        if let (Some(dir), Ok(sessions)) =
            (std::env::var_os(CALLER_DIR), std::env::var(CALLER_SESSIONS))
        {
            $check(Path::new(&dir), &sessions).await;
            return;
        }
        let docker = docker_or_skip!();
        let temp = tempfile::tempdir().expect("tempdir");
        let sessions = crate::support::session_id("hand-back");
        let dir = if euid() == 0 {
            let dir = caller_dir(temp.path());
            let (passed, said) = run_as_nobody($name, &dir, &sessions).await;
            assert!(passed, "as uid {NOBODY}:\n{said}");
            dir
        } else {
            $check(temp.path(), &sessions).await;
            temp.path().to_path_buf()
        };
        let left: Vec<PathBuf> = std::fs::read_dir(dir.join("sessions"))
            .expect("the sessions' directory")
            .map(|entry| entry.expect("entry").path())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        crate::support::assert_no_containers_left(&docker, &sessions).await;
    }};
}

/// An agent session of the test image (which runs as root) under `dir`.
async fn agent_session(dir: &Path, id: &str) -> Session {
    Session::builder(crate::support::spec("", ""))
        .mode(Mode::Agent)
        .session_id(id)
        .temp_root(dir.join("sessions"))
        .prepare()
        .await
        .expect("session prepares")
}

/// Root makes unreadable directories and files, a set-user-id copy of
/// the shell and symlinks to `/bin` in the workspace: after the command
/// they are the caller's (the symlinks themselves, not their targets), a
/// checkpoint reads them, and closing the session removes everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_made_content_is_handed_back_to_the_caller() {
    as_a_caller_other_than_root!(
        "docker_hand_back::root_made_content_is_handed_back_to_the_caller",
        check_root_made_content
    );
}

async fn check_root_made_content(dir: &Path, sessions: &str) {
    crate::support::prepare()
        .await
        .expect("the engine, for a caller other than root");
    let me = euid();
    let mut session = agent_session(dir, &format!("{sessions}-shallow")).await;
    let workspace = session.workspace_path().expect("workspace");
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    let made = run(
        runtime.as_ref(),
        "mkdir -p a/b && echo x > a/b/f && chmod 000 a/b/f a/b a && mkdir -m 000 c && \
         echo y > g && chmod 000 g && cp /bin/busybox s && chmod 4755 s && \
         ln -s /bin bin && ln -s /bin/busybox bb && id -u",
    )
    .await;
    assert_eq!(made, "0\n", "the container runs as root");
    for entry in ["a", "a/b", "a/b/f", "c", "g", "s", "bin", "bb"] {
        let meta = std::fs::symlink_metadata(workspace.join(entry)).expect(entry);
        assert_eq!(meta.uid(), me, "{entry} is not the caller's");
    }
    let modes = run(
        runtime.as_ref(),
        "stat -c '%u %a %n' a a/b a/b/f c g s bin bb /bin /bin/busybox",
    )
    .await;
    assert_eq!(
        modes,
        format!(
            "{me} 500 a\n{me} 500 a/b\n{me} 400 a/b/f\n{me} 500 c\n{me} 400 g\n{me} 755 s\n\
             {me} 777 bin\n{me} 777 bb\n0 755 /bin\n0 755 /bin/busybox\n"
        ),
        "read and search for the owner, set-id bits gone, symlink targets untouched"
    );

    let out = dir.join("checkpoint");
    session.finish_checkpoint(&out).await.expect("checkpoint");
    assert_eq!(
        std::fs::read_to_string(out.join("a/b/f")).expect("f"),
        "x\n"
    );
    assert_eq!(std::fs::read_to_string(out.join("g")).expect("g"), "y\n");
    let s = std::fs::metadata(out.join("s")).expect("s");
    assert_eq!(s.mode() & 0o7000, 0, "no set-id bit");

    // Root makes more while the session closes: cleanup kills it, hands
    // the rest back, and the session's removal finds nothing it cannot
    // remove.
    let mut writer = runtime
        .stream(ExecCommand::new(
            "echo started; i=0; while :; do i=$((i+1)); mkdir -p w/$i/d && echo z > w/$i/d/f && \
             chmod 000 w/$i/d/f w/$i/d w/$i; done",
        ))
        .await
        .expect("stream");
    assert_eq!(
        writer.next().await,
        Some(Event::Stdout(bytes::Bytes::from_static(b"started\n")))
    );
    // This command's hand-back runs while the writer writes.
    run(runtime.as_ref(), "ls w >/dev/null").await;
    drop(runtime);
    session
        .close()
        .await
        .expect("close: nothing left, no error");
    drop(writer);
    std::fs::remove_dir_all(&out).expect("the checkpoint is the caller's");
}

/// Root makes a chain of 3,000 directories (6,000 bytes of path, past
/// what `chown -R` reaches) with unreadable ones at its bottom; the
/// hand-back after the command reaches them, and the session closes
/// without a trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_deeper_than_path_max_is_handed_back() {
    as_a_caller_other_than_root!(
        "docker_hand_back::a_tree_deeper_than_path_max_is_handed_back",
        check_deep_tree
    );
}

async fn check_deep_tree(dir: &Path, sessions: &str) {
    crate::support::prepare()
        .await
        .expect("the engine, for a caller other than root");
    let me = euid();
    let mut session = agent_session(dir, &format!("{sessions}-deep")).await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    // 1,000 levels a round, entered by one relative `cd` each.
    let chain = "p=d; i=1; while [ $i -lt 1000 ]; do p=$p/d; i=$((i+1)); done";
    run(
        runtime.as_ref(),
        &format!(
            "{chain}; mkdir deep && cd deep && for round in 1 2 3; do \
             mkdir -p $p && cd -P $p || exit 1; done; \
             mkdir -m 000 bottom && echo z > f && chmod 000 f . && echo made"
        ),
    )
    .await;
    let bottom = run(
        runtime.as_ref(),
        &format!(
            "{chain}; cd deep && for round in 1 2 3; do cd -P $p || exit 1; done; \
             stat -c '%u %a %n' . bottom f"
        ),
    )
    .await;
    assert_eq!(
        bottom,
        format!("{me} 500 .\n{me} 500 bottom\n{me} 400 f\n"),
        "the bottom of the chain is the caller's"
    );
    drop(runtime);
    session
        .close()
        .await
        .expect("close: nothing left, no error");
}

/// A container that runs as the caller gets nothing handed back: a file
/// its command made unreadable stays so (the caller owns it, and may
/// still remove it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_running_as_the_caller_gets_nothing_handed_back() {
    as_a_caller_other_than_root!(
        "docker_hand_back::a_container_running_as_the_caller_gets_nothing_handed_back",
        check_evaluation_mode
    );
}

async fn check_evaluation_mode(dir: &Path, sessions: &str) {
    crate::support::prepare()
        .await
        .expect("the engine, for a caller other than root");
    let mut session = Session::builder(crate::support::spec("", ""))
        .mode(Mode::Evaluation)
        .session_id(format!("{sessions}-evaluation"))
        .temp_root(dir.join("sessions"))
        .prepare()
        .await
        .expect("session prepares");
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    run(runtime.as_ref(), "echo x > f && chmod 000 f").await;
    let mode = run(runtime.as_ref(), "stat -c '%u %a' f").await;
    assert_eq!(mode, format!("{} 0\n", euid()));
    drop(runtime);
    session.close().await.expect("close");
}

/// A caller that is root gets nothing handed back (it may read and remove
/// anything): what another container user made stays that user's. Any
/// other caller gets it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_caller_other_than_root_gets_the_workspace_back() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("hand-back-root");
    let mut session = Session::builder(crate::support::spec("user: '4242:4242'", ""))
        .mode(Mode::Agent)
        .session_id(&prefix)
        .temp_root(temp.path().join("sessions"))
        .prepare()
        .await
        .expect("session prepares");
    let workspace = session.workspace_path().expect("workspace");
    // A directory the container's user may write in.
    let shared = workspace.join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    run(
        runtime.as_ref(),
        "echo x > shared/made && chmod 000 shared/made",
    )
    .await;
    let owner = run(runtime.as_ref(), "stat -c '%u %a' shared/made").await;
    let expected = if euid() == 0 {
        "4242 0\n".to_owned()
    } else {
        format!("{} 400\n", euid())
    };
    assert_eq!(owner, expected);
    drop(runtime);
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

/// A last hand-back that cannot run (the container died under the
/// session) is an error of the close that says so; the container and the
/// session directory are removed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_last_hand_back_is_an_error_and_cleanup_goes_on() {
    as_a_caller_other_than_root!(
        "docker_hand_back::a_failed_last_hand_back_is_an_error_and_cleanup_goes_on",
        check_failed_hand_back
    );
}

async fn check_failed_hand_back(dir: &Path, sessions: &str) {
    let docker = crate::support::prepare()
        .await
        .expect("the engine, for a caller other than root");
    let id = format!("{sessions}-died");
    let mut session = agent_session(dir, &id).await;
    let runtime = session.spawn(SpawnOptions::default()).await.expect("spawn");
    run(runtime.as_ref(), "mkdir -m 000 made").await;
    let container = crate::support::container_of_session(&docker, &id).await;
    docker
        .kill_container(
            &container,
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .expect("kill the container");
    drop(runtime);
    let err = session
        .close()
        .await
        .expect_err("the last hand-back cannot run")
        .to_string();
    assert!(
        err.contains("handing the workspace `/workspace` in container")
            && err.contains(&format!("back to uid {}: the container is gone", euid())),
        "{err}"
    );
}
