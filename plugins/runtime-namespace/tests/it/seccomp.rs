//! The seccomp filter commands run under: the default profile refuses the
//! calls behind container escapes with EPERM and lets an ordinary workload
//! through, `unconfined` installs nothing, a profile file refuses what it
//! lists, and a profile berth cannot use is a clear error.

use std::collections::BTreeMap;

use runtime_namespace::NamespaceBackend;
use session_core::Error;
use session_core::runtime::Backend;
use session_core::session::{Session, SpawnOptions};

use crate::support::{Sandbox, registry, run, sandbox, spec, stdout_of};

/// A Python script that makes each call with ctypes' `syscall` and prints
/// `name errno` (0 when it succeeded), one line per call. The numbers are
/// this architecture's.
fn raw_calls_script() -> String {
    let calls = [
        ("io_uring_setup", libc::SYS_io_uring_setup, "1, buf"),
        ("bpf", libc::SYS_bpf, "0, buf, 128"),
        (
            "perf_event_open",
            libc::SYS_perf_event_open,
            "buf, 0, -1, -1, 0",
        ),
        // KEYCTL_GET_KEYRING_ID of the session keyring, creating it.
        ("keyctl", libc::SYS_keyctl, "0, ctypes.c_long(-3), 1"),
        ("userfaultfd", libc::SYS_userfaultfd, "0"),
        (
            "unshare_newuser",
            libc::SYS_unshare,
            &format!("{}", libc::CLONE_NEWUSER),
        ),
        (
            "mount",
            libc::SYS_mount,
            "b'none', b'/tmp', b'tmpfs', 0, None",
        ),
        // PTRACE_TRACEME.
        ("ptrace", libc::SYS_ptrace, "0, 0, 0, 0"),
        ("clone3", libc::SYS_clone3, "None, 0"),
    ];
    let mut script = String::from(
        "import ctypes\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         libc.syscall.restype = ctypes.c_long\n\
         buf = ctypes.create_string_buffer(256)\n\
         def call(name, number, *args):\n\
         \x20   ctypes.set_errno(0)\n\
         \x20   ret = libc.syscall(number, *args)\n\
         \x20   print(name, 0 if ret >= 0 else ctypes.get_errno(), flush=True)\n",
    );
    for (name, number, args) in calls {
        script.push_str(&format!("call({name:?}, {number}, {args})\n"));
    }
    script
}

/// Runs the script of [`raw_calls_script`] in the sandbox; the errno of
/// each call by name.
async fn raw_call_errnos(sb: &Sandbox) -> BTreeMap<String, i32> {
    std::fs::write(sb.workspace().join("calls.py"), raw_calls_script()).unwrap();
    let output = stdout_of(sb.rt.as_ref(), "python3 calls.py").await;
    output
        .lines()
        .map(|line| {
            let (name, errno) = line.split_once(' ').unwrap();
            (name.to_owned(), errno.parse().unwrap())
        })
        .collect()
}

fn status_line(status: &str, key: &str) -> String {
    status
        .lines()
        .find(|line| line.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
        .to_owned()
}

#[tokio::test]
async fn the_default_profile_refuses_escape_calls_with_eperm() {
    let sb = sandbox("").await;
    let status = stdout_of(sb.rt.as_ref(), "cat /proc/self/status").await;
    assert_eq!(status_line(&status, "Seccomp"), "Seccomp:\t2");
    assert_eq!(status_line(&status, "NoNewPrivs"), "NoNewPrivs:\t1");

    let errnos = raw_call_errnos(&sb).await;
    for name in [
        "io_uring_setup",
        "bpf",
        "perf_event_open",
        "keyctl",
        "userfaultfd",
        "unshare_newuser",
        "mount",
        "ptrace",
    ] {
        assert_eq!(errnos.get(name), Some(&libc::EPERM), "{name}: {errnos:?}");
    }
    // clone3 says ENOSYS, so the C library falls back to clone.
    assert_eq!(errnos.get("clone3"), Some(&libc::ENOSYS), "{errnos:?}");

    // The same through ordinary tools.
    let result = run(sb.rt.as_ref(), "unshare -U true").await;
    assert!(!result.success(), "{result:?}");
    assert!(
        result.stderr_lossy().contains("Operation not permitted"),
        "{result:?}"
    );
    let result = run(sb.rt.as_ref(), "unshare -U -r true").await;
    assert!(!result.success(), "{result:?}");
    sb.close().await;
}

#[tokio::test]
async fn unconfined_commands_run_without_a_filter() {
    let sb = sandbox("namespace: {seccomp: unconfined}").await;
    let status = stdout_of(sb.rt.as_ref(), "cat /proc/self/status").await;
    assert_eq!(status_line(&status, "Seccomp"), "Seccomp:\t0");
    // What the default profile refuses works here: the EPERMs above are
    // the filter's, not the kernel's.
    let errnos = raw_call_errnos(&sb).await;
    for name in ["keyctl", "unshare_newuser", "ptrace"] {
        assert_eq!(errnos.get(name), Some(&0), "{name}: {errnos:?}");
    }
    assert_ne!(errnos.get("clone3"), Some(&libc::ENOSYS), "{errnos:?}");
    stdout_of(sb.rt.as_ref(), "unshare -U true").await;
    sb.close().await;
}

/// A unittest suite of what ordinary work does: threads, subprocesses,
/// temporary files, a loopback server and its client, multiprocessing.
const WORKLOAD: &str = r#"
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import unittest


def square(x):
    return x * x


class Workload(unittest.TestCase):
    def test_threads(self):
        results = []
        lock = threading.Lock()

        def work(n):
            with lock:
                results.append(n * n)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(sorted(results), [n * n for n in range(8)])

    def test_subprocesses(self):
        done = subprocess.run(["sh", "-c", "echo hello; exit 3"], capture_output=True, text=True)
        self.assertEqual((done.stdout, done.returncode), ("hello\n", 3))
        out = subprocess.check_output([sys.executable, "-c", "print(6 * 7)"], text=True)
        self.assertEqual(out, "42\n")

    def test_temporary_files(self):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "f.txt")
            with open(path, "w") as f:
                f.write("data")
            os.rename(path, path + ".moved")
            with open(path + ".moved") as f:
                self.assertEqual(f.read(), "data")
        with tempfile.NamedTemporaryFile(dir=".") as f:
            f.write(b"x")
            f.flush()
            self.assertEqual(os.path.getsize(f.name), 1)

    def test_loopback_server_and_client(self):
        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]

        def serve():
            connection, _ = server.accept()
            with connection:
                connection.sendall(connection.recv(1024).upper())

        thread = threading.Thread(target=serve)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"ping")
            self.assertEqual(client.recv(1024), b"PING")
        thread.join()
        server.close()

    def test_multiprocessing(self):
        with multiprocessing.Pool(2) as pool:
            self.assertEqual(pool.map(square, range(10)), [x * x for x in range(10)])
        queue = multiprocessing.Queue()
        process = multiprocessing.Process(target=queue.put, args=("from the child",))
        process.start()
        self.assertEqual(queue.get(timeout=30), "from the child")
        process.join()
        self.assertEqual(process.exitcode, 0)


if __name__ == "__main__":
    unittest.main()
"#;

#[tokio::test]
async fn an_ordinary_python_workload_passes_under_the_default_profile() {
    let sb = sandbox("").await;
    std::fs::write(sb.workspace().join("test_workload.py"), WORKLOAD).unwrap();
    let result = run(
        sb.rt.as_ref(),
        "grep '^Seccomp:' /proc/self/status && python3 -m unittest -v test_workload",
    )
    .await;
    let stderr = result.stderr_lossy();
    assert!(
        result.success(),
        "{:?} {}\nstdout: {}\nstderr: {stderr}",
        result.status,
        result.exit_code,
        result.stdout_lossy()
    );
    assert_eq!(result.stdout_lossy(), "Seccomp:\t2\n");
    assert!(
        stderr.contains("Ran 5 tests") && stderr.trim_end().ends_with("OK"),
        "{stderr}"
    );
    sb.close().await;
}

/// Machine code that makes one call through another ABI and returns:
/// `getpid` under x32 (the native number with bit 30), then `getpid` (20)
/// through the 32-bit `int 0x80` entry point.
#[cfg(target_arch = "x86_64")]
const OTHER_ABIS: &[(&str, &str)] = &[
    ("x32", "b8 27 00 00 40 0f 05 c3"),
    ("i386", "b8 14 00 00 00 cd 80 c3"),
];

#[cfg(target_arch = "x86_64")]
#[tokio::test]
async fn calls_through_other_abis_kill_the_command() {
    let run_code = |hex: &str| {
        format!(
            "python3 -c \"import ctypes, mmap\n\
             m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n\
             m.write(bytes.fromhex('{hex}'))\n\
             ctypes.CFUNCTYPE(ctypes.c_long)(ctypes.addressof(ctypes.c_char.from_buffer(m)))()\n\
             print('survived')\"; echo status $?"
        )
    };
    let sb = sandbox("").await;
    let unconfined = sandbox("namespace: {seccomp: unconfined}").await;
    for (abi, code) in OTHER_ABIS {
        // SIGSYS: 128 + 31.
        assert_eq!(
            stdout_of(sb.rt.as_ref(), &run_code(code)).await,
            "status 159\n",
            "{abi}"
        );
        let without = stdout_of(unconfined.rt.as_ref(), &run_code(code)).await;
        assert_ne!(without, "status 159\n", "{abi}");
    }
    sb.close().await;
    unconfined.close().await;
}

#[tokio::test]
async fn a_profile_file_refuses_what_it_lists() {
    let profiles = tempfile::tempdir().unwrap();
    let profile = profiles.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                 "comment": "no new directories"},
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
            ]
        }"#,
    )
    .unwrap();
    let sb = sandbox(&format!("namespace: {{seccomp: '{}'}}", profile.display())).await;
    let result = run(sb.rt.as_ref(), "mkdir made").await;
    assert!(!result.success(), "{result:?}");
    assert!(
        result.stderr_lossy().contains("Operation not permitted"),
        "{result:?}"
    );
    assert!(!sb.workspace().join("made").exists());
    // Everything else runs, and the profile's own errno comes back.
    std::fs::create_dir(sb.workspace().join("existing")).unwrap();
    let result = run(
        sb.rt.as_ref(),
        "touch file && python3 -c 'import os; os.rmdir(\"existing\")'",
    )
    .await;
    assert!(
        result.stderr_lossy().contains("Function not implemented"),
        "{result:?}"
    );
    assert!(sb.workspace().join("file").exists());
    // The profile replaces the default one: io_uring is not refused here.
    assert_eq!(
        stdout_of(sb.rt.as_ref(), "grep '^Seccomp:' /proc/self/status").await,
        "Seccomp:\t2\n"
    );
    let errnos = raw_call_errnos(&sb).await;
    assert_eq!(errnos.get("keyctl"), Some(&0), "{errnos:?}");
    sb.close().await;
}

async fn spawn_spec_error(yaml: &str) -> (String, String) {
    let temp = tempfile::tempdir().unwrap();
    let mut session = Session::builder(spec(yaml))
        .registry(registry())
        .temp_root(temp.path().join("sessions"))
        .prepare()
        .await
        .unwrap();
    let err = match session.spawn(SpawnOptions::default()).await {
        Err(err) => err,
        Ok(_) => panic!("{yaml}: spawn succeeded"),
    };
    session.close().await.unwrap();
    match err {
        Error::Spec { field, message, .. } => (field, message),
        other => panic!("{yaml}: expected a spec error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_profile_berth_cannot_use_fails_validation_and_spawn_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.json");
    std::fs::write(
        &notify,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
    )
    .unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"defaultAction\": ").unwrap();
    let missing = dir.path().join("missing.json");
    let cases = [
        (
            &notify,
            vec![
                format!("seccomp profile `{}`: ", notify.display()),
                "syscalls[0].action: `SCMP_ACT_NOTIFY` is not supported".to_owned(),
            ],
        ),
        (
            &broken,
            vec![
                format!("seccomp profile `{}`: ", broken.display()),
                "EOF while parsing".to_owned(),
            ],
        ),
        (
            &missing,
            vec![
                format!("cannot read seccomp profile `{}`: ", missing.display()),
                "No such file".to_owned(),
            ],
        ),
    ];
    for (path, needles) in cases {
        let yaml = format!(
            "{{type: namespace, name: t, namespace: {{seccomp: '{}'}}}}",
            path.display()
        );
        let validated = NamespaceBackend.validate(&spec(&yaml));
        let (field, message) = match validated {
            Err(Error::Spec { field, message, .. }) => (field, message),
            other => panic!("{yaml}: expected a spec error, got {other:?}"),
        };
        assert_eq!(field, "namespace.seccomp", "{message}");
        for needle in &needles {
            assert!(message.contains(needle.as_str()), "{needle}\n=> {message}");
        }
        assert_eq!(message.lines().count(), 1, "{message}");

        // Through the plugin boundary, at spawn, the same error.
        let (field, message) = spawn_spec_error(&yaml).await;
        assert_eq!(field, "namespace.seccomp", "{message}");
        for needle in &needles {
            assert!(message.contains(needle.as_str()), "{needle}\n=> {message}");
        }
    }
}
