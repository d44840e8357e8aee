//! What the end-to-end tests share: running the real `berth` binary in
//! temp dirs of its own, and bounded waits instead of sleeps.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A test's own directories: `root` for fixtures, `temp` as berth's
/// `--temp-root`, where session directories appear.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("creating a test directory");
        std::fs::create_dir(dir.path().join("temp")).unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        Sandbox { dir }
    }

    /// A directory for fixtures and outputs.
    pub fn files(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    /// berth's temporary root.
    pub fn temp(&self) -> PathBuf {
        self.dir.path().join("temp")
    }

    /// Writes a file under `files()`, creating parents, and returns its path.
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.files().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Writes a file under `files()` that only its owner may read or write
    /// (mode 0600, as a token file must be), and returns its path.
    pub fn write_private(&self, rel: &str, content: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.write(rel, content);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// `berth --temp-root <temp> ARGS…`, with a plugin directory of the
    /// test's own, so the user's environment never leaks in.
    pub fn berth<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("--temp-root")
            .arg(self.temp())
            .args(args)
            .env("BERTH_PLUGIN_DIR", self.dir.path().join("plugins"))
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs berth to completion.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.berth(args).output().expect("running berth")
    }

    /// The `berth-*` entries left in the temporary root.
    pub fn session_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.temp())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("berth-"))
            .collect()
    }

    /// Asserts no session directory was left behind.
    pub fn assert_no_session_dirs(&self) {
        let left = self.session_dirs();
        assert!(left.is_empty(), "left behind in the temp root: {left:?}");
    }
}

/// The exit code, failing the test when berth died by a signal.
pub fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .unwrap_or_else(|| panic!("berth died by a signal: {output:?}"))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Polls `check` every few milliseconds until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the process is gone: no such pid, or a zombie waiting to be
/// reaped by whoever inherited it (it runs nothing any more).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Reads pids, one per line, from a file the command wrote.
pub fn read_pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// Quotes a path for a shell string.
pub fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// A `type: docker` spec on the test image (busybox, built once per
/// machine), written into `sb` with the top-level `sections` after it; or
/// `None`, after saying why on stderr, when the Docker Engine is not usable
/// here.
pub fn docker_spec(sb: &Sandbox, sections: &str) -> Option<PathBuf> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ready = runtime.block_on(async {
        let docker = runtime_docker::test_image::connect().await?;
        runtime_docker::test_image::ensure(&docker).await
    });
    match ready {
        Ok(()) => Some(sb.write(
            "docker.yaml",
            &format!(
                "type: docker\nname: test\ndocker: {{image: '{}'}}\n{sections}\n",
                runtime_docker::test_image::IMAGE
            ),
        )),
        Err(reason) => {
            #[allow(clippy::print_stderr, reason = "a skipped test says why")]
            {
                eprintln!("skipped: the Docker Engine is not usable here: {reason}");
            }
            None
        }
    }
}

/// A pipe whose read end is closed: writing to the returned write end
/// fails with `EPIPE`.
pub fn closed_pipe() -> std::fs::File {
    use std::os::fd::FromRawFd as _;
    let mut fds = [0; 2];
    // SAFETY: room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: closing the read end this function made; nothing else owns it.
    unsafe { libc::close(fds[0]) };
    // SAFETY: the write end is fresh and owned by nothing else.
    unsafe { std::fs::File::from_raw_fd(fds[1]) }
}

/// The largest resident set of any child process this test process has
/// waited for, in bytes.
pub fn max_child_rss() -> u64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN only reads this process's records.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    u64::try_from(usage.ru_maxrss).unwrap() * 1024
}
