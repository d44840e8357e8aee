//! How the `namespace` backend starts a command: through the host-process
//! kit ([`runtime_local::kit`]), building its sandbox in `berth-sandbox`
//! ([`crate::program`]) or, where that program does not apply, in the
//! `pre_exec` hook of a fork of berth ([`crate::child`]), and reading the
//! step that failed, if one did, from a pipe both write.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use runtime_local::kit::{HostRuntime, Sandbox};
use runtime_local::process::{self, InShellsPlace, Launch, PreExec, Started};
use session_core::assets::ResolvedAsset;

use crate::child::{self, CommandSlot, Failure, REPORT_LEN, Stage};
use crate::plan::{Plan, STATIC_DIR, WORKDIR};
use crate::program::{self, PlanImage};

/// A runtime of the `namespace` backend. Every command runs in fresh
/// namespaces; dropping the runtime kills every command still running, and
/// with each the whole of its pid namespace.
pub type NamespaceRuntime = HostRuntime<Namespaces>;

/// The sandbox every command of a runtime enters: what was prepared at
/// spawn (the plan), built by `berth-sandbox` or between fork and exec.
#[derive(Debug)]
pub struct Namespaces {
    pub(crate) plan: Arc<Plan>,
    /// The plan as `berth-sandbox` reads it; `None` where commands fork.
    pub(crate) image: Option<PlanImage>,
    /// The plan's [`Plan::shape`]: a sandbox that fails to build is no
    /// longer taken as proven, so the next spawn of its shape probes again.
    pub(crate) shape: u64,
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

/// Waits until the report pipe holds a record or reads as ended (every
/// process of the sandbox closed or exec'd past it): the failure the
/// sandbox program reported, if any.
fn wait_failure(report: &OwnedFd) -> Option<Failure> {
    loop {
        let mut poll = libc::pollfd {
            fd: report.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) of one local pollfd.
        if unsafe { libc::poll(&mut poll, 1, -1) } < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        let mut record = [0u8; REPORT_LEN];
        // SAFETY: read(2) into a local buffer from a non-blocking fd we own.
        let read =
            unsafe { libc::read(report.as_raw_fd(), record.as_mut_ptr().cast(), REPORT_LEN) };
        if read == REPORT_LEN as isize {
            return Failure::decode(&record);
        }
        if read < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock {
            continue;
        }
        // Ended (0), interrupted or a record cut short.
        if read >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
}

impl Sandbox for Namespaces {
    fn start(&self, mut launch: Launch) -> Result<Started, String> {
        let (report_read, report_write) =
            report_pipe().map_err(|err| format!("cannot create the report pipe: {err}"))?;
        let last_pid = next_last_pid().to_string();
        let through_program = self
            .image
            .as_ref()
            .and_then(|image| program::start(image, &launch, &last_pid, report_write.as_raw_fd()));
        let direct = launch.in_shells_place != InShellsPlace::No;
        if through_program.is_none() && direct {
            // Only the program stands in for the shell; the kit then
            // hands the command to the shell.
            return Err("a command skips the shell only through berth-sandbox".to_owned());
        }
        let (started, outcome) = match through_program {
            Some(started) => {
                drop(report_write);
                // Nothing to wait for when the program did not start.
                let outcome = match &started {
                    Ok(_) => wait_failure(&report_read),
                    Err(_) => None,
                };
                (started, outcome)
            }
            None => {
                let plan = Arc::clone(&self.plan);
                let slot = CommandSlot {
                    report: report_write.as_raw_fd(),
                    last_pid: last_pid.into_bytes(),
                };
                let enter = move || {
                    // SAFETY: this closure only ever runs as the `PreExec`
                    // hook below, in the child between fork and exec.
                    unsafe { child::enter(&plan, &slot) }
                };
                // SAFETY: `child::enter` makes only async-signal-safe system
                // calls on what `plan` and `slot` prepared before the fork,
                // and leaves one process (the command's shell) to exec.
                let hook = unsafe { PreExec::new(enter) };
                launch.pre_exec = Some(hook);
                // The pid namespace contains the tree: its init dies with the
                // supervisor, and the kernel then kills the rest.
                launch.keeper = false;
                let started = process::start(&launch);
                drop(report_write);
                (started, read_failure(&report_read))
            }
        };
        // A program that cannot be executed in the shell's place says
        // nothing of the sandbox: the kit hands the command to the shell.
        let exec_failed = outcome.is_some_and(|failure| failure.stage == Stage::Exec);
        if (started.is_err() || outcome.is_some()) && !(direct && exec_failed) {
            crate::proven_shapes().forget(self.shape);
        }
        let cannot_start = |err: std::io::Error| {
            format!(
                "cannot start `{}` in the sandbox: {err}",
                launch.program.executable()
            )
        };
        match (started, outcome) {
            (Ok(started), None) => Ok(started),
            (Err(err), None) => Err(cannot_start(err)),
            (started, Some(failure)) => {
                if let Ok(started) = started {
                    // A failing child hands its error to std, so `start`
                    // fails; the sandbox program reports on the pipe alone,
                    // and its process (which ends at once) is reaped here,
                    // its cgroup removed, before the error is returned.
                    started.kill_and_reap_now();
                }
                if failure.stage == Stage::Exec {
                    return Err(cannot_start(std::io::Error::from_raw_os_error(
                        failure.errno,
                    )));
                }
                Err(self.plan.describe(failure))
            }
        }
    }

    /// A command of literal words skips the shell when the sandbox's shell
    /// is the host's own file (dash, as the kit checks) and `berth-sandbox`
    /// starts the commands.
    fn skips_the_shell(&self) -> bool {
        self.image.is_some() && self.plan.host_shell
    }

    /// `berth-sandbox` joins a limited command's cgroup itself.
    fn joins_cgroups(&self) -> bool {
        self.image.is_some()
    }

    fn working_directory(&self) -> Option<&str> {
        Some(WORKDIR)
    }

    fn asset_path(&self, asset: &ResolvedAsset) -> String {
        format!(
            "{STATIC_DIR}/{}",
            session_core::paths::to_slash(&asset.save_path)
        )
    }
}
