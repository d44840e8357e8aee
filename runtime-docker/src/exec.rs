//! One command as an exec in the runtime's container, driven to its end.
//!
//! The exec runs a tiny wrapper that makes the command the kernel's first
//! choice when the container runs out of memory, prints its pid on stderr
//! and then `exec`s `/bin/sh -c COMMAND`, so the command's shell keeps that
//! pid. The engine makes every exec a session leader, so that pid also
//! names the command's session and process group; and every exec carries
//! an environment variable of its own ([`EXEC_MARKER`]) that its processes
//! inherit, also those that leave the session (`setsid`) or are orphaned by
//! a double fork. A timeout or a dropped stream kills, from a second exec
//! (the engine has no way to kill an exec), every process of that session
//! or group and every process carrying the marker, and the result is only
//! reported once that kill is done. The pid line is taken off stderr before
//! anything is kept or sent.
//!
//! A process that both leaves the session and clears or rewrites its
//! environment escapes that kill; `kill()` (every process outside the
//! container's init session) and the container's removal still reach it.
//!
//! Output is read from the attached stream (stdout and stderr apart, no
//! terminal). The exit status comes from inspecting the exec, polled until
//! the engine says it is no longer running: it can still say running for a
//! moment after the stream ends, and a background process can hold the
//! stream open long after the command exited.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ContainerStateStatusEnum;
use futures_util::{Stream, StreamExt};
use session_core::runtime::{
    Event, EventSender, ExecResult, ExecStatus, OutputBuffer, StdinSource,
};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep_until};

use crate::engine::{describe, is_connection_error, status_of};

/// The wrapper around every command. `$1` is the command string; `$0` of
/// the command's shell stays `/bin/sh`, as on a host.
///
/// It first raises its own `oom_score_adj` (which needs no privilege): when
/// the container reaches its memory limit with memory no process owns (a
/// tmpfs, kernel memory), every process is equally small, and without it
/// the kernel may kill the container's init, which takes the container and
/// every other command with it. Commands inherit the value, so one of them
/// dies instead. Failing to write it is not an error.
const WRAPPER: &str = "{ echo 500 > /proc/self/oom_score_adj; } 2>/dev/null; \
                       echo $$ >&2; exec /bin/sh -c \"$1\"";

/// The environment variable that marks every process of one exec; its
/// value is [`exec_marker`]'s. Berth sets it last, over any variable of the
/// same name.
pub(crate) const EXEC_MARKER: &str = "BERTH_EXEC_ID";

/// A value of [`EXEC_MARKER`] no other exec of this process carries. Every
/// container belongs to one runtime of one process, so this is unique in
/// the container. It has a fixed width: with the NUL bytes between
/// variables dropped (as the kill script reads them), one marker can never
/// be the start of another.
pub(crate) fn exec_marker() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{:016x}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// How long a finished command's result waits for the kill berth sent it
/// (which may have to try a few times while the container is out of pids).
const KILL_WAIT: Duration = Duration::from_secs(15);

/// How long output may keep arriving after the command exited before berth
/// stops reading (a background process may hold the stream for ever).
const EXIT_DRAIN_GRACE: Duration = Duration::from_millis(250);

/// How long berth reads after a kill, for output already on its way.
const KILL_DRAIN_GRACE: Duration = Duration::from_millis(500);

/// How long after a kill berth waits for the engine to report the exec
/// ended before it reports the command with what it knows.
const KILL_GIVE_UP: Duration = Duration::from_secs(2);

/// The first look at a running exec's status (while its stream is open),
/// and the slowest pace of later looks.
const FIRST_POLL: Duration = Duration::from_millis(100);
const SLOWEST_POLL_STREAMING: Duration = Duration::from_secs(1);

/// Looks after the stream ended start at this pace and slow down to the
/// next constant.
const FIRST_POLL_AFTER_OUTPUT: Duration = Duration::from_millis(1);
const SLOWEST_POLL_AFTER_OUTPUT: Duration = Duration::from_millis(100);

/// Exit statuses 129–192 are how the engine reports a process killed by
/// signal 1–64 (128 + N).
const SIGNAL_EXIT_BASE: i64 = 128;

/// How long berth watches a container after a command died of a SIGKILL
/// it did not send, to tell an out-of-memory kill from a dying container.
const CONTAINER_DEATH_WINDOW: Duration = Duration::from_secs(1);
const HIGHEST_SIGNAL: i64 = 64;

/// Where a command runs.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) docker: Docker,
    pub(crate) container: String,
    pub(crate) workdir: String,
}

/// One command and how it is watched.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) command: String,
    pub(crate) env: Vec<String>,
    /// What the command reads on stdin (bytes, then a stream), written as
    /// it comes; the exec's stdin is closed at its end.
    pub(crate) stdin: Option<StdinSource>,
    pub(crate) wall_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) output_limit: u64,
    pub(crate) spill_dir: Option<PathBuf>,
    /// Who runs it: the container's user when `None`, else a user or
    /// `uid[:gid]` the engine understands (berth's own work runs as `0`).
    pub(crate) user: Option<String>,
}

/// Why berth killed a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KilledFor {
    Wall,
    Idle,
    Cancelled,
}

/// How the exec ended, as far as berth could learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The engine's exit status.
    Code(i64),
    /// The container (or the engine) is gone.
    Lost,
    /// Berth stopped waiting for the engine to say.
    Unknown,
}

type OutputStream = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// Runs `plan` in `target`, sending live events, and returns the result.
pub(crate) async fn run(target: &Target, mut plan: Plan, events: &EventSender) -> ExecResult {
    let started_at = Instant::now();
    let stdin = plan.stdin.take();
    let marker = exec_marker();
    let mut env = plan.env.clone();
    env.retain(|entry| !entry.starts_with(&format!("{EXEC_MARKER}=")));
    env.push(format!("{EXEC_MARKER}={marker}"));
    let options = CreateExecOptions {
        cmd: Some(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            WRAPPER.to_owned(),
            "sh".to_owned(),
            plan.command.clone(),
        ]),
        env: Some(env),
        user: plan.user.clone(),
        working_dir: Some(target.workdir.clone()),
        attach_stdin: Some(stdin.is_some()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        ..CreateExecOptions::default()
    };
    let exec_id = match target.docker.create_exec(&target.container, options).await {
        Ok(created) => created.id,
        Err(err) => return not_started(&err, "creating the exec", started_at),
    };
    let start = StartExecOptions {
        detach: false,
        tty: false,
        output_capacity: Some(64 << 10),
    };
    let (output, input) = match target.docker.start_exec(&exec_id, Some(start)).await {
        Ok(StartExecResults::Attached { output, input }) => (output, input),
        Ok(StartExecResults::Detached) => {
            return ExecResult::spawn_failed(
                "the engine started the exec detached",
                started_at.elapsed(),
            );
        }
        Err(err) => return not_started(&err, "starting the exec", started_at),
    };
    let stdin_task = stdin.map(|mut source| {
        let mut input = input;
        tokio::spawn(async move {
            // A command that exits without reading its stdin is not an
            // error: writing stops there.
            while let Some(chunk) = source.next().await {
                if input.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = input.shutdown().await;
        })
    });
    let driver = Driver::new(target, exec_id, marker, &plan, started_at);
    let result = driver.drive(output, events).await;
    if let Some(task) = stdin_task {
        task.abort();
    }
    result
}

/// Runs berth's own `command` (as `user`, with the system's `PATH`) in
/// `target` within 30 s, nobody reading its output live, and returns its
/// result.
pub(crate) async fn run_quietly(
    target: &Target,
    command: &str,
    user: Option<String>,
) -> ExecResult {
    let plan = Plan {
        command: command.to_owned(),
        env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_owned()],
        stdin: None,
        wall_timeout: Some(Duration::from_secs(30)),
        idle_timeout: None,
        output_limit: 4096,
        spill_dir: None,
        user,
    };
    let (events, mut stream) = session_core::runtime::EventStream::channel();
    let running = async move {
        let result = run(target, plan, &events).await;
        drop(events);
        result
    };
    let drain = async { while stream.next().await.is_some() {} };
    let (result, ()) = tokio::join!(running, drain);
    result
}

/// A command that never ran: `Lost` when the container or the engine is
/// gone, else `SpawnFailed` with the engine's message.
fn not_started(err: &bollard::errors::Error, what: &str, started_at: Instant) -> ExecResult {
    let message = format!("docker: {what}: {}", describe(err));
    let mut result = ExecResult::spawn_failed(&message, started_at.elapsed());
    if container_gone(err) {
        result.status = ExecStatus::Lost;
    }
    result
}

/// Whether an engine error means the container (or the engine) is gone.
fn container_gone(err: &bollard::errors::Error) -> bool {
    is_connection_error(err) || matches!(status_of(err), Some(404 | 409))
}

/// Collects the pid line the wrapper prints before the command's stderr.
#[derive(Debug, Default)]
struct PidLine {
    pending: Vec<u8>,
    done: bool,
}

impl PidLine {
    /// Feeds a stderr chunk; returns the pid once the line is complete and
    /// the part of the chunk that belongs to the command.
    fn feed(&mut self, chunk: &[u8]) -> (Option<u32>, Vec<u8>) {
        if self.done {
            return (None, chunk.to_vec());
        }
        self.pending.extend_from_slice(chunk);
        let Some(newline) = self.pending.iter().position(|b| *b == b'\n') else {
            if self.pending.len() > 20 || !self.pending.iter().all(u8::is_ascii_digit) {
                // Not the wrapper's line (the wrapper never ran): it is output.
                self.done = true;
                return (None, std::mem::take(&mut self.pending));
            }
            return (None, Vec::new());
        };
        self.done = true;
        let line = &self.pending[..newline];
        let pid = std::str::from_utf8(line)
            .ok()
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse().ok());
        let rest = match pid {
            Some(_) => self.pending[newline + 1..].to_vec(),
            None => std::mem::take(&mut self.pending),
        };
        self.pending = Vec::new();
        (pid, rest)
    }

    /// What was held back without ever completing a line.
    fn take_rest(&mut self) -> Vec<u8> {
        self.done = true;
        std::mem::take(&mut self.pending)
    }
}

/// How long a loaded engine may take to start an exec before its timeouts
/// begin to count anyway.
const ENGINE_START_ALLOWANCE: Duration = Duration::from_secs(30);

struct Driver<'a> {
    target: &'a Target,
    exec_id: String,
    marker: String,
    started_at: Instant,
    wall_timeout: Option<Duration>,
    wall: Option<Instant>,
    idle_timeout: Option<Duration>,
    idle: Option<Instant>,
    stdout: OutputBuffer,
    stderr: OutputBuffer,
    pid_line: PidLine,
    pid: Option<u32>,
    killed: Option<KilledFor>,
    kill_sent: bool,
    /// The kill exec berth started, awaited before the result is reported.
    kill_task: Option<tokio::task::JoinHandle<()>>,
    end: Option<End>,
    stream_open: bool,
    drain_until: Option<Instant>,
    give_up: Option<Instant>,
    next_poll: Instant,
    poll_step: Duration,
}

impl<'a> Driver<'a> {
    fn new(
        target: &'a Target,
        exec_id: String,
        marker: String,
        plan: &Plan,
        started_at: Instant,
    ) -> Driver<'a> {
        let now = Instant::now();
        Driver {
            target,
            exec_id,
            marker,
            started_at,
            wall_timeout: plan.wall_timeout,
            // Until the command reports that it runs, the engine's start-up
            // time is allowed on top of the timeouts.
            // (A timeout too long to be an instant is no deadline.)
            wall: plan.wall_timeout.and_then(|t| {
                started_at
                    .checked_add(t)?
                    .checked_add(ENGINE_START_ALLOWANCE)
            }),
            idle_timeout: plan.idle_timeout,
            idle: plan
                .idle_timeout
                .and_then(|t| now.checked_add(t)?.checked_add(ENGINE_START_ALLOWANCE)),
            stdout: OutputBuffer::new(plan.output_limit, plan.spill_dir.as_deref(), "stdout"),
            stderr: OutputBuffer::new(plan.output_limit, plan.spill_dir.as_deref(), "stderr"),
            pid_line: PidLine::default(),
            pid: None,
            killed: None,
            kill_sent: false,
            kill_task: None,
            end: None,
            stream_open: true,
            drain_until: None,
            give_up: None,
            next_poll: now + FIRST_POLL,
            poll_step: FIRST_POLL,
        }
    }

    async fn drive(mut self, mut output: OutputStream, events: &EventSender) -> ExecResult {
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        while self.stream_open || self.end.is_none() {
            let fire = tokio::select! {
                biased;
                () = sleep_until(self.wall.unwrap_or(far)),
                    if self.wall.is_some() && self.killed.is_none() && self.end.is_none() => {
                    Some(KilledFor::Wall)
                }
                () = sleep_until(self.idle.unwrap_or(far)),
                    if self.idle.is_some() && self.killed.is_none() && self.end.is_none() => {
                    Some(KilledFor::Idle)
                }
                () = events.closed(), if self.killed.is_none() && self.end.is_none() => {
                    Some(KilledFor::Cancelled)
                }
                () = sleep_until(self.drain_until.unwrap_or(far)),
                    if self.drain_until.is_some() && self.stream_open => {
                    // Whoever still holds the stream is not waited for.
                    self.close_stream();
                    None
                }
                () = sleep_until(self.give_up.unwrap_or(far)),
                    if self.give_up.is_some() && self.end.is_none() => {
                    self.end = Some(End::Unknown);
                    None
                }
                frame = output.next(), if self.stream_open => {
                    self.on_frame(frame, events).await;
                    None
                }
                () = sleep_until(self.next_poll), if self.end.is_none() => {
                    self.poll().await;
                    None
                }
            };
            if let Some(reason) = fire {
                self.kill(reason);
            }
        }
        self.finish().await
    }

    async fn on_frame(
        &mut self,
        frame: Option<Result<LogOutput, bollard::errors::Error>>,
        events: &EventSender,
    ) {
        let (is_stdout, bytes) = match frame {
            Some(Ok(LogOutput::StdOut { message })) => (true, message),
            Some(Ok(LogOutput::StdErr { message })) => {
                let (pid, rest) = self.pid_line.feed(&message);
                if let Some(pid) = pid {
                    self.pid = Some(pid);
                    // The command runs from now: its wall and idle time
                    // count from here, not from the engine's queue.
                    let now = Instant::now();
                    if let Some(timeout) = self.wall_timeout {
                        self.wall = now.checked_add(timeout);
                    }
                    self.idle = self.idle_timeout.and_then(|t| now.checked_add(t));
                    if self.killed.is_some() && !self.kill_sent {
                        self.send_kill();
                    }
                }
                if rest.is_empty() {
                    return;
                }
                (false, bytes::Bytes::from(rest))
            }
            Some(Ok(_)) => return,
            Some(Err(err)) => {
                tracing::debug!(error = %describe(&err), "exec stream ended with an error");
                self.close_stream();
                return;
            }
            None => {
                self.close_stream();
                return;
            }
        };
        self.idle = self
            .idle_timeout
            .and_then(|t| Instant::now().checked_add(t));
        let buffer = if is_stdout {
            &mut self.stdout
        } else {
            &mut self.stderr
        };
        if let Err(err) = buffer.push(&bytes) {
            tracing::warn!(error = %err, "spilling output to a file failed");
        }
        if self.killed == Some(KilledFor::Cancelled) {
            return;
        }
        let event = if is_stdout {
            Event::Stdout(bytes)
        } else {
            Event::Stderr(bytes)
        };
        if !send(events, event, self.wall).await && self.killed.is_none() {
            self.kill(KilledFor::Cancelled);
        }
    }

    /// The stream is over (or no longer read): the exit status is looked
    /// for right away, and then often.
    fn close_stream(&mut self) {
        self.stream_open = false;
        if self.end.is_none() {
            self.next_poll = Instant::now();
            self.poll_step = FIRST_POLL_AFTER_OUTPUT;
        }
    }

    async fn poll(&mut self) {
        match self.target.docker.inspect_exec(&self.exec_id).await {
            Ok(inspect) if inspect.running == Some(false) => {
                let end = inspect.exit_code.map_or(End::Unknown, End::Code);
                self.set_end(end);
            }
            Ok(_) => {
                let slowest = if self.stream_open {
                    SLOWEST_POLL_STREAMING
                } else {
                    SLOWEST_POLL_AFTER_OUTPUT
                };
                self.next_poll = Instant::now() + self.poll_step;
                self.poll_step = (self.poll_step * 2).min(slowest);
            }
            Err(err) if container_gone(&err) => {
                tracing::debug!(error = %describe(&err), "exec is gone");
                self.set_end(End::Lost);
            }
            Err(err) => {
                tracing::warn!(error = %describe(&err), "inspecting an exec failed");
                self.next_poll = Instant::now() + SLOWEST_POLL_AFTER_OUTPUT;
            }
        }
    }

    fn set_end(&mut self, end: End) {
        self.end = Some(end);
        if self.stream_open {
            let grace = if self.killed.is_some() {
                KILL_DRAIN_GRACE
            } else {
                EXIT_DRAIN_GRACE
            };
            self.drain_until.get_or_insert(Instant::now() + grace);
        }
    }

    fn kill(&mut self, reason: KilledFor) {
        self.killed = Some(reason);
        let now = Instant::now();
        self.drain_until = Some(now + KILL_DRAIN_GRACE);
        self.give_up = Some(now + KILL_GIVE_UP);
        if self.pid.is_some() {
            self.send_kill();
        }
    }

    /// Kills the command's session and every process carrying its marker
    /// from a second exec, in the background so reading goes on meanwhile.
    fn send_kill(&mut self) {
        let Some(pid) = self.pid else { return };
        self.kill_sent = true;
        let docker = self.target.docker.clone();
        let container = self.target.container.clone();
        let scope = KillScope::Command {
            pid,
            marker: self.marker.clone(),
        };
        self.kill_task = Some(tokio::spawn(async move {
            if let Err(err) = kill_in_container(&docker, &container, scope).await {
                tracing::debug!(error = %err, "killing a command's processes failed");
            }
        }));
    }

    async fn finish(mut self) -> ExecResult {
        let elapsed = self.started_at.elapsed();
        // A killed command is over when all of its processes are, not when
        // its shell is: the kill exec sweeps those that left its session.
        if let Some(task) = self.kill_task.take()
            && tokio::time::timeout(KILL_WAIT, task).await.is_err()
        {
            tracing::warn!(
                container = %self.target.container,
                "the kill of a command did not finish within {}s",
                KILL_WAIT.as_secs()
            );
        }
        let mut end = self.end.unwrap_or(End::Unknown);
        // Everything in a container dies by SIGKILL when the container does:
        // a SIGKILL berth did not send may be the sandbox going away.
        if end == End::Code(SIGNAL_EXIT_BASE + 9)
            && self.killed.is_none()
            && container_dying(&self.target.docker, &self.target.container).await
        {
            end = End::Lost;
        }
        let (mut status, exit_code, signal) = match end {
            End::Code(code) => decode_exit(code),
            End::Lost => (ExecStatus::Lost, -1, None),
            End::Unknown if self.killed.is_some() => (ExecStatus::Signaled, -9, Some(9)),
            End::Unknown => (ExecStatus::Lost, -1, None),
        };
        match self.killed {
            Some(KilledFor::Wall) => status = ExecStatus::TimedOut,
            Some(KilledFor::Idle) => status = ExecStatus::IdleTimedOut,
            _ => {}
        }
        // A partial pid line is output after all (the wrapper never ran).
        let leftover = self.pid_line.take_rest();
        if !leftover.is_empty() {
            let _ = self.stderr.push(&leftover);
        }
        ExecResult {
            status,
            exit_code,
            signal,
            stdout: self.stdout.finish(),
            stderr: self.stderr.finish(),
            elapsed,
            timed_out: matches!(status, ExecStatus::TimedOut | ExecStatus::IdleTimedOut),
            usage: None,
        }
    }
}

/// The engine reports a process killed by signal N as exit status 128 + N,
/// like a shell does; berth reports that as the signal. (The engine does
/// not tell it apart from a command that itself exits with 128 + N.)
fn decode_exit(code: i64) -> (ExecStatus, i32, Option<i32>) {
    if code > SIGNAL_EXIT_BASE && code <= SIGNAL_EXIT_BASE + HIGHEST_SIGNAL {
        let signal = (code - SIGNAL_EXIT_BASE) as i32;
        (ExecStatus::Signaled, -signal, Some(signal))
    } else {
        let code = i32::try_from(code).unwrap_or(i32::MAX);
        (ExecStatus::Exited, code, None)
    }
}

/// Whether the container stops (or is gone) within a moment: the engine
/// updates its state shortly after the container's processes died.
async fn container_dying(docker: &Docker, container: &str) -> bool {
    let deadline = Instant::now() + CONTAINER_DEATH_WINDOW;
    loop {
        let running = match docker.inspect_container(container, None).await {
            Ok(inspect) => inspect.state.is_some_and(|state| {
                state.running == Some(true)
                    && state.status == Some(ContainerStateStatusEnum::RUNNING)
            }),
            Err(_) => false,
        };
        if !running {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends an event unless the wall deadline passes first (a consumer that
/// stops reading must not hold a command past its timeout). Returns `false`
/// only when the consumer is gone.
async fn send(events: &EventSender, event: Event, wall: Option<Instant>) -> bool {
    match wall {
        None => events.send(event).await,
        Some(deadline) => tokio::select! {
            sent = events.send(event) => sent,
            () = sleep_until(deadline) => true,
        },
    }
}

/// Which processes a kill exec signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KillScope {
    /// One command: every process of the session or process group of its
    /// shell (this pid), and every process whose environment carries its
    /// [`EXEC_MARKER`] value.
    Command {
        /// The pid of the command's shell.
        pid: u32,
        /// The value of its marker.
        marker: String,
    },
    /// Every process berth started in the container: everything outside the
    /// session of the container's init and its keeper.
    AllCommands,
}

/// What a kill script prints when it could not read the environment of a
/// process that may carry the marker: root in a container has no
/// `CAP_SYS_PTRACE`, which reading another user's `/proc/PID/environ`
/// needs, so a second pass runs as the commands' user.
const ENVIRONMENT_DENIED: &str = "environment-denied";

/// The shell script that kills `scope`. It reads `/proc/*/stat` (and, for
/// one command, `/proc/*/environ`) with builtins only (no process of its
/// own to spare), skips zombies, and repeats until a pass finds nothing
/// alive, so processes forked during the sweep die too. The container's
/// init session (its init and keeper) is never touched.
///
/// `read` drops the NUL bytes between environment variables, and reads an
/// environment a line at a time (a value may hold newlines); the marker's
/// fixed width keeps one marker from matching another.
fn kill_script(scope: &KillScope) -> String {
    let test = match scope {
        KillScope::Command { pid, marker } => format!(
            "if [ \"$p\" = {pid} ] || [ \"$3\" = {pid} ] || [ \"$4\" = {pid} ]; then hit=1; \
             else e=x; {{ e=; while IFS= read -r l || [ -n \"$l\" ]; do \
             case \"$l\" in *{EXEC_MARKER}={marker}*) e=1; break;; esac; done; }} \
             2>/dev/null < \"$d/environ\"; \
             case \"$e\" in 1) hit=1;; x) denied=1;; esac; fi"
        ),
        KillScope::AllCommands => "hit=1".to_owned(),
    };
    format!(
        "denied=; i=0; while [ $i -lt 10 ]; do n=0; \
         for d in /proc/[0-9]*; do p=${{d#/proc/}}; [ \"$p\" = \"$$\" ] && continue; \
         [ \"$p\" = 1 ] && continue; \
         read -r s 2>/dev/null < \"$d/stat\" || continue; s=${{s##*') '}}; set -- $s; \
         case \"$1\" in Z|X) continue;; esac; [ \"$4\" = 1 ] && continue; hit=; \
         {test}; \
         if [ -n \"$hit\" ]; then kill -KILL \"$p\" 2>/dev/null && n=$((n+1)); fi; done; \
         [ $n = 0 ] && break; i=$((i+1)); done; \
         if [ -n \"$denied\" ]; then echo {ENVIRONMENT_DENIED}; fi; exit 0"
    )
}

/// How often a kill exec is tried: it can fail to start while the
/// container is out of pids (the very fork bomb it is meant to stop).
const KILL_ATTEMPTS: u32 = 5;

/// Kills `scope` from an exec of its own (as root, so a command that
/// switched users dies too) and waits for that exec to end, trying again
/// (briefly) when it could not run. When root could not read the
/// environment of some process, the script runs again as the container's
/// user (the commands' own), which can.
pub(crate) async fn kill_in_container(
    docker: &Docker,
    container: &str,
    scope: KillScope,
) -> session_core::Result<()> {
    let script = kill_script(&scope);
    let said = kill_with_retries(docker, container, &script, Some("0")).await?;
    if matches!(scope, KillScope::Command { .. }) && said.contains(ENVIRONMENT_DENIED) {
        kill_with_retries(docker, container, &script, None).await?;
    }
    Ok(())
}

/// Runs a kill script as `user` (the container's user when `None`), trying
/// again when the exec could not run; returns what it printed.
async fn kill_with_retries(
    docker: &Docker,
    container: &str,
    script: &str,
    user: Option<&str>,
) -> session_core::Result<String> {
    let mut attempt = 1;
    loop {
        match kill_once(docker, container, script, user).await {
            Ok(said) => return Ok(said),
            Err(KillFailure::Gone(message)) => {
                return Err(crate::engine::backend_error(format!(
                    "killing commands in container `{container}`: {message}"
                )));
            }
            Err(KillFailure::Retry(message)) if attempt >= KILL_ATTEMPTS => {
                return Err(crate::engine::backend_error(format!(
                    "killing commands in container `{container}` failed {attempt} times: {message}"
                )));
            }
            Err(KillFailure::Retry(message)) => {
                tracing::debug!(attempt, %message, "a kill exec did not run; trying again");
                tokio::time::sleep(Duration::from_millis(100) * attempt).await;
                attempt += 1;
            }
        }
    }
}

enum KillFailure {
    /// The container or the engine is gone: nothing is left to kill there.
    Gone(String),
    /// The exec did not run (or not to its end); another may.
    Retry(String),
}

async fn kill_once(
    docker: &Docker,
    container: &str,
    script: &str,
    user: Option<&str>,
) -> Result<String, KillFailure> {
    let options = CreateExecOptions {
        cmd: Some(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            script.to_owned(),
        ]),
        user: user.map(str::to_owned),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        ..CreateExecOptions::default()
    };
    let failure = |what: &str, err: &bollard::errors::Error| {
        let message = format!("{what}: {}", describe(err));
        if container_gone(err) {
            KillFailure::Gone(message)
        } else {
            KillFailure::Retry(message)
        }
    };
    let exec = docker
        .create_exec(container, options)
        .await
        .map_err(|err| failure("creating the exec", &err))?;
    let started = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(|err| failure("starting the exec", &err))?;
    let mut said = Vec::new();
    if let StartExecResults::Attached { mut output, .. } = started {
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(frame)) = output.next().await {
                if said.len() < 1024 {
                    said.extend_from_slice(&frame.into_bytes());
                }
            }
        })
        .await;
        if drained.is_err() {
            return Err(KillFailure::Retry(
                "it did not finish within 10s".to_owned(),
            ));
        }
    }
    // The engine may say running for a moment after the stream ended.
    let mut code = None;
    for _ in 0..50 {
        let inspect = docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|err| failure("inspecting the exec", &err))?;
        if inspect.running != Some(true) {
            code = inspect.exit_code;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match code {
        Some(0) => Ok(String::from_utf8_lossy(&said).into_owned()),
        other => Err(KillFailure::Retry(format!(
            "it ended with status {}: {}",
            other.map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
            String::from_utf8_lossy(&said).trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_line_is_taken_off_stderr() {
        let mut line = PidLine::default();
        assert_eq!(line.feed(b"12"), (None, Vec::new()));
        assert_eq!(line.feed(b"3\nerr"), (Some(123), b"err".to_vec()));
        assert_eq!(line.feed(b"more"), (None, b"more".to_vec()));

        let mut foreign = PidLine::default();
        assert_eq!(
            foreign.feed(b"OCI runtime exec failed"),
            (None, b"OCI runtime exec failed".to_vec())
        );
        let mut empty = PidLine::default();
        assert_eq!(empty.feed(b"\nx"), (None, b"\nx".to_vec()));
    }

    #[test]
    fn signal_statuses_are_decoded() {
        assert_eq!(decode_exit(0), (ExecStatus::Exited, 0, None));
        assert_eq!(decode_exit(127), (ExecStatus::Exited, 127, None));
        assert_eq!(decode_exit(128), (ExecStatus::Exited, 128, None));
        assert_eq!(decode_exit(137), (ExecStatus::Signaled, -9, Some(9)));
        assert_eq!(decode_exit(143), (ExecStatus::Signaled, -15, Some(15)));
        assert_eq!(decode_exit(255), (ExecStatus::Exited, 255, None));
    }

    #[test]
    fn kill_scripts_target_a_command_or_every_command() {
        let one = kill_script(&KillScope::Command {
            pid: 42,
            marker: "000000000000002a".to_owned(),
        });
        assert!(one.contains("[ \"$4\" = 42 ]"), "{one}");
        assert!(one.contains("*BERTH_EXEC_ID=000000000000002a*"), "{one}");
        let all = kill_script(&KillScope::AllCommands);
        assert!(all.contains("[ \"$4\" = 1 ] && continue"), "{all}");
        assert!(!all.contains("/environ"), "{all}");
    }

    #[test]
    fn markers_have_one_width() {
        let (a, b) = (exec_marker(), exec_marker());
        assert_ne!(a, b);
        assert_eq!((a.len(), b.len()), (16, 16));
    }
}
