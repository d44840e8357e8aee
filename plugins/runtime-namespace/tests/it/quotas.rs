//! A sandbox takes only its share of the caller's per-user kernel quotas.
//!
//! The sandbox maps the caller's uid to itself, so what its commands hold
//! of a quota the kernel counts per user is charged to the caller: a
//! command that queues real-time signals, opens inotify instances and
//! watches, POSIX message queues, locks shared memory or forks until the
//! kernel refuses must leave the rest of the caller's processes (here, this
//! test process: the same uid, on the host) able to do the same. Checked as
//! root, and as another user (the test runs itself again as `nobody`).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use runtime_namespace::NamespaceBackend;
use session_core::runtime::{Backend, Event, EventStream, ExecCommand, SpawnContext};
use session_core::spec::Mode;

/// A Python program that takes all it can of each quota, in order, prints
/// one line `NAME=COUNT/ERRNO …` (how many it got, and the errno of the
/// refusal that stopped it), then holds everything until it is killed.
/// With `--processes` it also forks until the kernel refuses.
fn drain_script() -> String {
    format!(
        r#"import ctypes, os, signal, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
figures = []

def report(name, count):
    figures.append("%s=%d/%d" % (name, count, ctypes.get_errno()))

# Real-time signals queued to this process and left pending.
sig = signal.SIGRTMIN
signal.pthread_sigmask(signal.SIG_BLOCK, {{sig}})
info = ctypes.create_string_buffer(128)
struct.pack_into("iii", info, 0, sig, 0, -1)  # SI_QUEUE
count = 0
while libc.syscall({rt_sigqueueinfo}, os.getpid(), sig, info) == 0:
    count += 1
report("signals", count)

# A POSIX timer holds a queued signal of its own.
event = ctypes.create_string_buffer(64)
struct.pack_into("i", event, 12, 1)  # SIGEV_NONE
timer = ctypes.c_int()
ctypes.set_errno(0)
created = libc.syscall({timer_create}, 1, event, ctypes.byref(timer)) == 0
report("timers", 1 if created else 0)

instances = []
while True:
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        break
    instances.append(fd)
report("inotify_instances", len(instances))

# Each instance watches each file once; files are made as they are needed.
os.mkdir("/tmp/watched")
watches, refused, n = 0, False, 0
while instances and not refused:
    path = ("/tmp/watched/%d" % n).encode()
    n += 1
    open(path, "w").close()
    for fd in instances:
        if libc.inotify_add_watch(fd, path, 4) < 0:  # IN_ATTRIB
            refused = True
            break
        watches += 1
report("inotify_watches", watches)

queues = 0
while libc.syscall({mq_open}, b"berth-drain-%d" % queues,
                   os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600, None) >= 0:
    queues += 1
report("message_queues", queues)

locked, segment = 0, 1 << 18
while True:
    shm = libc.shmget(0, segment, 0o1600)  # IPC_PRIVATE, IPC_CREAT
    if shm < 0 or libc.shmctl(shm, 11, None) < 0:  # SHM_LOCK
        break
    locked += segment
report("locked_bytes", locked)

if "--processes" in sys.argv:
    children = 0
    while True:
        try:
            pid = os.fork()
        except OSError as error:
            ctypes.set_errno(error.errno)
            break
        if pid == 0:
            signal.pause()
            os._exit(0)
        children += 1
    report("processes", children)

print(" ".join(figures), flush=True)
signal.pause()
"#,
        rt_sigqueueinfo = libc::SYS_rt_sigqueueinfo,
        timer_create = libc::SYS_timer_create,
        mq_open = libc::SYS_mq_open,
    )
}

/// The bytes a POSIX message queue with the kernel's default attributes
/// (10 messages of 8,192 bytes) is charged at least.
const DEFAULT_QUEUE_BYTES: u64 = 10 * 8192;

/// This process's soft limit of `resource`.
fn soft_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) with a pointer to a local struct.
    assert_eq!(unsafe { libc::getrlimit(resource, &mut limit) }, 0);
    limit.rlim_cur
}

/// A per-user-namespace limit of this process's user namespace.
fn user_sysctl(name: &str) -> u64 {
    let path = Path::new("/proc/sys/user").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// What one sandbox may take of a quota of `limit`.
fn share(limit: u64) -> u64 {
    if limit == libc::RLIM_INFINITY {
        limit
    } else {
        limit / 4
    }
}

/// Reads events until a whole line arrived on stdout, and returns it.
async fn first_line(stream: &mut EventStream) -> String {
    let mut out = String::new();
    while !out.contains('\n') {
        match stream.next().await {
            Some(Event::Stdout(bytes)) => out.push_str(std::str::from_utf8(&bytes).unwrap()),
            Some(Event::Stderr(bytes)) => panic!("stderr: {}", String::from_utf8_lossy(&bytes)),
            other => panic!("the command ended early after {out:?}: {other:?}"),
        }
    }
    out.trim().to_owned()
}

/// Queues a real-time signal to this thread, blocking it for the moment,
/// then takes it back.
fn queue_a_real_time_signal() -> std::io::Result<()> {
    // SAFETY: signal-mask calls on local sets, for this thread only;
    // rt_tgsigqueueinfo(2) to this very thread, which blocks the signal,
    // with a zeroed siginfo carrying SI_QUEUE; sigtimedwait(2) without
    // waiting takes it back before the old mask returns.
    unsafe {
        let signal = libc::SIGRTMIN();
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let mut info: libc::siginfo_t = std::mem::zeroed();
        info.si_signo = signal;
        info.si_code = libc::SI_QUEUE;
        let queued = libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            libc::getpid(),
            libc::gettid(),
            signal,
            &info,
        );
        let result = if queued == 0 {
            let now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            assert_eq!(libc::sigtimedwait(&set, std::ptr::null_mut(), &now), signal);
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        };
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}

fn create_a_posix_timer() -> std::io::Result<()> {
    // SAFETY: timer_create(2) with a zeroed sigevent asking for no
    // notification and a local out-pointer; timer_delete(2) of that timer.
    unsafe {
        let mut event: libc::sigevent = std::mem::zeroed();
        event.sigev_notify = libc::SIGEV_NONE;
        let mut timer: libc::timer_t = std::ptr::null_mut();
        if libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::timer_delete(timer);
    }
    Ok(())
}

fn watch_with_inotify(dir: &Path) -> std::io::Result<()> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: inotify_init1(2), inotify_add_watch(2) of a NUL-terminated
    // path, and close(2) of the instance opened here.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let watched = libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_ATTRIB);
        let result = if watched < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        };
        libc::close(fd);
        result
    }
}

fn open_a_message_queue() -> std::io::Result<()> {
    let name = std::ffi::CString::new(format!("/berth-quota-test-{}", std::process::id())).unwrap();
    // SAFETY: mq_open(3) of a NUL-terminated name with the default
    // attributes; mq_close(3) and mq_unlink(3) of the queue made here.
    unsafe {
        let queue = libc::mq_open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600 as libc::mode_t,
            std::ptr::null_mut::<libc::mq_attr>(),
        );
        if queue < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::mq_close(queue);
        libc::mq_unlink(name.as_ptr());
    }
    Ok(())
}

/// What this process (the host side, the sandbox's uid) can no longer do.
fn host_side_failures(scratch: &Path, root: bool) -> Vec<String> {
    let mut checks = vec![
        ("queueing a real-time signal", queue_a_real_time_signal()),
        ("creating a POSIX timer", create_a_posix_timer()),
        ("watching with inotify", watch_with_inotify(scratch)),
        ("opening a POSIX message queue", open_a_message_queue()),
    ];
    if !root {
        checks.push((
            "starting a process",
            Command::new("true").status().and_then(|status| {
                if status.success() {
                    Ok(())
                } else {
                    Err(std::io::Error::other(format!("`true` ended {status}")))
                }
            }),
        ));
    }
    checks
        .into_iter()
        .filter_map(|(what, result)| result.err().map(|err| format!("{what}: {err}")))
        .collect()
}

/// One figure of the drain's report: how many it got and the errno that
/// stopped it.
fn figure(report: &str, name: &str) -> (u64, i32) {
    let value = report
        .split(' ')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {report:?}"));
    let (count, errno) = value.split_once('/').unwrap();
    (count.parse().unwrap(), errno.parse().unwrap())
}

/// Drains every quota in a sandbox over `workspace` as this process's user
/// and checks what the sandbox got and what this process can still do.
async fn drain_and_check(workspace: &Path) {
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let spec = crate::support::spec("{type: namespace, name: quotas}");
    let ctx = SpawnContext::new("quotas", workspace, Mode::Evaluation);
    let rt = NamespaceBackend.spawn(&spec, ctx).await.unwrap();

    // The per-user-namespace limits the sandbox runs under.
    let inside = crate::support::stdout_of(rt.as_ref(), "cd /proc/sys/user && grep . max_*").await;
    for line in inside.lines() {
        let (name, value) = line.split_once(':').unwrap();
        let expected = if name == "max_user_namespaces" {
            0
        } else {
            share(user_sysctl(name))
        };
        assert_eq!(value.parse::<u64>().unwrap(), expected, "{name}: {inside}");
    }
    assert!(inside.contains("max_inotify_instances:"), "{inside}");

    std::fs::write(workspace.join("drain.py"), drain_script()).unwrap();
    let command = if root {
        "exec python3 drain.py"
    } else {
        "exec python3 drain.py --processes"
    };
    let mut stream = rt
        .stream(ExecCommand::new(command).wall_timeout(Duration::from_secs(300)))
        .await
        .unwrap();
    let report = first_line(&mut stream).await;
    // What the host side can still do, while the sandbox holds all it got.
    let failures = host_side_failures(workspace, root);
    rt.kill().await.unwrap();
    stream.finish().await;
    rt.cleanup().await.unwrap();
    assert_eq!(failures, Vec::<String>::new(), "sandbox: {report}");

    let (signals, errno) = figure(&report, "signals");
    assert_eq!(errno, libc::EAGAIN, "{report}");
    assert!(
        signals > 0 && signals <= share(soft_limit(libc::RLIMIT_SIGPENDING)),
        "{report}"
    );
    assert_eq!(figure(&report, "timers"), (0, libc::EAGAIN), "{report}");
    let (instances, errno) = figure(&report, "inotify_instances");
    assert_eq!(errno, libc::EMFILE, "{report}");
    assert!(
        instances > 0 && instances <= share(user_sysctl("max_inotify_instances")),
        "{report}"
    );
    let (watches, errno) = figure(&report, "inotify_watches");
    assert_eq!(errno, libc::ENOSPC, "{report}");
    assert!(
        watches > 0 && watches <= share(user_sysctl("max_inotify_watches")),
        "{report}"
    );
    let (queues, errno) = figure(&report, "message_queues");
    assert_eq!(errno, libc::EMFILE, "{report}");
    assert!(
        queues * DEFAULT_QUEUE_BYTES <= share(soft_limit(libc::RLIMIT_MSGQUEUE)),
        "{report}"
    );
    let (locked, errno) = figure(&report, "locked_bytes");
    assert_eq!(errno, libc::ENOMEM, "{report}");
    assert!(
        locked <= share(soft_limit(libc::RLIMIT_MEMLOCK)),
        "{report}"
    );
    if !root {
        let (processes, errno) = figure(&report, "processes");
        assert_eq!(errno, libc::EAGAIN, "{report}");
        assert!(
            processes > 0 && processes <= share(soft_limit(libc::RLIMIT_NPROC)),
            "{report}"
        );
    }
}

/// When set, the test process is the child of
/// `a_sandbox_takes_only_its_share_of_per_user_quotas`, running as another
/// user, with this workspace.
const OTHER_USER_WORKSPACE: &str = "BERTH_NAMESPACE_TEST_QUOTAS_WORKSPACE";

/// The uid and gid the test switches to when it runs as root.
const NOBODY: u32 = 65534;

/// The soft process limit of the run as another user: low, so that the
/// sandbox's share is a few dozen processes.
const OTHER_USER_PROCESSES: u64 = 256;

#[test]
fn a_sandbox_takes_only_its_share_of_per_user_quotas() {
    // SAFETY: geteuid(2) cannot fail.
    let euid = unsafe { libc::geteuid() };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if let Some(workspace) = std::env::var_os(OTHER_USER_WORKSPACE) {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) and setrlimit(2) with a local struct; only
        // the soft limit is lowered.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NPROC, &mut limit), 0);
            limit.rlim_cur = limit.rlim_cur.min(OTHER_USER_PROCESSES);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NPROC, &limit), 0);
        }
        runtime.block_on(drain_and_check(Path::new(&workspace)));
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let workspace = temp.path().join("workspace");
    std::fs::create_dir(&workspace).unwrap();
    runtime.block_on(drain_and_check(&workspace));
    if euid != 0 {
        return;
    }
    // Again as another user, whose quotas are its own.
    std::fs::set_permissions(
        temp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let theirs = temp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "quotas::a_sandbox_takes_only_its_share_of_per_user_quotas",
            "--exact",
            "--nocapture",
        ])
        .env(OTHER_USER_WORKSPACE, &theirs)
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
}
