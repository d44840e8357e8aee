//! A runtime of the `namespace` backend: each command is started with
//! `runtime_local::process` (process group, pidfd, the one `drive` loop)
//! and enters its sandbox in the `pre_exec` hook ([`crate::child`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use indexmap::IndexMap;
use runtime_local::cgroup::{CgroupHost, CgroupLimits};
use runtime_local::process::{self, Launch, PreExec, ProcessTable, Rlimits, Watch};
use session_core::assets::ResolvedAsset;
use session_core::runtime::{
    Capabilities, EventStream, ExecCommand, ExecResult, Runtime, RuntimeStatus, SetupOutput,
    run_setup,
};
use session_core::spec::{EnvironmentSpec, Limits};
use session_core::{Error, Result};

use crate::TYPE_NAME;
use crate::child::{self, CommandSlot, Failure, REPORT_LEN};
use crate::plan::{Plan, STATIC_DIR};

/// How long the spawn's probe may take before the sandbox counts as
/// broken.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Inner {
    pub(crate) plan: Arc<Plan>,
    /// The workspace on the host (the child enters it before the hook, and
    /// the hook moves to `/workspace` inside).
    pub(crate) workspace: PathBuf,
    pub(crate) shell: PathBuf,
    pub(crate) env: IndexMap<String, String>,
    pub(crate) limits: Limits,
    /// What each command's cgroup enforces (empty: no cgroup).
    pub(crate) cgroup_limits: CgroupLimits,
    pub(crate) capabilities: Capabilities,
    pub(crate) setup: OnceLock<SetupOutput>,
    /// The supervisors (and process groups) of running commands. When a
    /// supervisor has been reaped its sandbox is gone: it ends only after
    /// the sandbox's init, whose end empties the pid namespace.
    pub(crate) processes: Arc<ProcessTable>,
}

/// A runtime of the `namespace` backend. Every command runs in fresh
/// namespaces; dropping the runtime kills every command still running, and
/// with each the whole of its pid namespace.
pub struct NamespaceRuntime {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for NamespaceRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceRuntime")
            .field("workspace", &self.inner.workspace)
            .field("running", &self.inner.processes.running())
            .finish_non_exhaustive()
    }
}

impl Drop for NamespaceRuntime {
    fn drop(&mut self) {
        self.inner.processes.close();
    }
}

/// The gap between the first pids of successive commands.
const PID_STRIDE: u32 = 512;

/// The pid after which the next command's pids start. Each command has a
/// pid namespace of its own; starting each at another offset means a pid
/// one command recorded (`echo $! > server.pid`) never names a process of
/// a later command, where it would otherwise be the shell itself (pid 2).
/// Offsets cycle through the host's `pid_max`.
fn next_last_pid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static PID_MAX: OnceLock<u32> = OnceLock::new();
    let pid_max = *PID_MAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(32_768)
    });
    let slots = (pid_max.saturating_sub(2) / PID_STRIDE).max(1);
    1 + (NEXT.fetch_add(1, Ordering::Relaxed) % slots) * PID_STRIDE
}

/// A pipe whose read end berth keeps and whose write end the sandbox's
/// processes inherit (closed at exec) to report a failed step.
fn report_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) with a pointer to a local array of two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned these fds; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The failure the sandbox reported, if any. Called once `start` returned:
/// a child writes its report before it hands its error to std, so the
/// report is there by then.
fn read_failure(report: &OwnedFd) -> Option<Failure> {
    let mut record = [0u8; REPORT_LEN];
    // SAFETY: read(2) into a local buffer from a non-blocking fd we own.
    let read = unsafe { libc::read(report.as_raw_fd(), record.as_mut_ptr().cast(), REPORT_LEN) };
    if read == REPORT_LEN as isize {
        Failure::decode(&record)
    } else {
        None
    }
}

impl NamespaceRuntime {
    /// Starts `cmd` in a new sandbox. `Err` is a message saying why the
    /// sandbox could not be entered (then no process of it is left).
    fn launch(&self, cmd: ExecCommand) -> std::result::Result<EventStream, String> {
        let inner = &self.inner;
        let (report_read, report_write) =
            report_pipe().map_err(|err| format!("cannot create the report pipe: {err}"))?;
        // The supervisor joins it before it unshares anything, so the whole
        // sandbox is counted.
        let cgroup = if inner.cgroup_limits.is_empty() {
            None
        } else {
            let cgroup = CgroupHost::get()
                .create(&inner.cgroup_limits, TYPE_NAME)
                .map_err(|err| format!("cannot make the command's cgroup: {err}"))?;
            Some(Arc::new(cgroup))
        };
        let mut env = inner.env.clone();
        env.extend(cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let plan = Arc::clone(&inner.plan);
        let slot = CommandSlot {
            report: report_write.as_raw_fd(),
            last_pid: next_last_pid().to_string().into_bytes(),
        };
        let hook: PreExec = Arc::new(move || child::enter(&plan, &slot));
        let launch = Launch {
            shell: &inner.shell,
            command: &cmd.command,
            cwd: &inner.workspace,
            env: &env,
            with_stdin: cmd.stdin.is_some(),
            rlimits: Rlimits {
                address_space: None,
                file_size: inner.limits.file_size,
            },
            pre_exec: Some(hook),
            // The pid namespace contains the tree: its init dies with the
            // supervisor, and the kernel then kills the rest.
            keeper: false,
            cgroup,
        };
        let started = process::start(&launch);
        drop(report_write);
        let failure = read_failure(&report_read);
        let watch = Watch {
            wall_timeout: cmd.wall_timeout.or(inner.limits.wall_timeout),
            idle_timeout: cmd.idle_timeout.or(inner.limits.idle_timeout),
            output_limit: cmd.output_limit.unwrap_or(inner.limits.output_limit),
            spill_dir: cmd.spill_dir.clone(),
            stdin: cmd.stdin,
        };
        let started = match (started, failure) {
            (Ok(started), None) => started,
            (Err(err), None) => {
                return Err(format!(
                    "cannot start `{}` in the sandbox: {err}",
                    inner.shell.display()
                ));
            }
            (started, Some(failure)) => {
                if let Ok(started) = started {
                    // A failing child hands its error to std, so `start`
                    // fails; should one not, its process is still reaped.
                    tokio::spawn(started.kill_and_reap());
                }
                return Err(inner.plan.describe(failure));
            }
        };
        Ok(inner.processes.run(started, watch))
    }

    /// Runs `cmd` to its end; a sandbox that cannot be entered is
    /// [`Error::Backend`] rather than a `SpawnFailed` result.
    async fn execute_in_sandbox(&self, cmd: ExecCommand) -> Result<ExecResult> {
        let stream = self.launch(cmd).map_err(|message| Error::Backend {
            backend: TYPE_NAME.into(),
            message,
        })?;
        Ok(stream.finish().await)
    }

    /// Enters the sandbox once with `true`, so a spawn fails (instead of
    /// every later command) where the sandbox cannot be built.
    async fn probe(&self) -> Result<()> {
        let result = self
            .execute_in_sandbox(ExecCommand::new("true").wall_timeout(PROBE_TIMEOUT))
            .await?;
        if result.success() {
            return Ok(());
        }
        Err(Error::Backend {
            backend: TYPE_NAME.into(),
            message: format!(
                "the sandbox's probe command `true` failed ({:?}, exit code {}): {}",
                result.status,
                result.exit_code,
                result.stderr_lossy().trim()
            ),
        })
    }

    /// Runs the setup commands once, in order, stopping at the first
    /// failure; with none, runs the probe. The first command doubles as
    /// the probe.
    pub(crate) async fn set_up(&self, commands: &[String], spec: &EnvironmentSpec) -> Result<()> {
        if commands.is_empty() {
            self.probe().await?;
        }
        let output = run_setup(commands, spec, |cmd| self.execute_in_sandbox(cmd)).await?;
        let _ = self.inner.setup.set(output);
        Ok(())
    }
}

#[async_trait]
impl Runtime for NamespaceRuntime {
    fn backend_type(&self) -> &str {
        TYPE_NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    fn asset_path(&self, asset: &ResolvedAsset) -> String {
        format!(
            "{STATIC_DIR}/{}",
            session_core::paths::to_slash(&asset.save_path)
        )
    }

    fn setup_output(&self) -> &SetupOutput {
        static EMPTY: SetupOutput = SetupOutput {
            commands: Vec::new(),
        };
        self.inner.setup.get().unwrap_or(&EMPTY)
    }

    async fn stream(&self, cmd: ExecCommand) -> Result<EventStream> {
        if self.inner.processes.is_closed() {
            return Err(Error::RuntimeClosed {
                backend: TYPE_NAME.into(),
            });
        }
        let begun = tokio::time::Instant::now();
        Ok(self.launch(cmd).unwrap_or_else(|message| {
            EventStream::finished(ExecResult::spawn_failed(&message, begun.elapsed()))
        }))
    }

    async fn poll(&self) -> RuntimeStatus {
        self.inner.processes.status()
    }

    async fn kill(&self) -> Result<()> {
        self.inner.processes.kill_all();
        Ok(())
    }

    async fn cleanup(&self) -> Result<()> {
        self.inner.processes.close_and_wait(TYPE_NAME).await
    }
}
