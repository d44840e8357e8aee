//! `berth run`: one command in a fresh session.
//!
//! The flow is prepare → spawn → stream → (checkpoint) → close, and every
//! way out of it goes through [`Session::close`]: success, a failed step,
//! and a signal to berth itself. A signal kills the command's process tree
//! and removes the session before berth exits with 128+N; a second signal
//! while closing (a quarter of a second or more after the first) exits at
//! once and leaves the rest to `berth gc`. What berth says then is
//! dropped if its stderr cannot take it within a quarter of a second: the
//! signal may have come because nobody reads berth's output.
//!
//! Around that flow: `run_env` reads `-e` and `--env-file` (they reach the
//! runtime as the spawn's variables), `run_stdin` hands berth's stdin to
//! the command once the runtime says how it takes it, and `run_checkpoint`
//! checks OUT before anything runs and swaps the checkpoint in after.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use indexmap::IndexMap;
use serde::Serialize;
use session_core::assets::{AssetMap, ResolvedAssets};
use session_core::diff::SnapshotDiff;
use session_core::paths::quote_path;
use session_core::runtime::{Event, ExecCommand, ExecResult, ExecStatus, Output, Usage};
use session_core::session::{Session, SpawnOptions};
use session_core::spec::{EnvironmentSpec, Mode};
use session_core::workspace::Checkpoint;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::{GlobalArgs, RunArgs};
use crate::run_stdin::Input;
use crate::term::Progress;
use crate::trees::{stat_line, summary_line};
use crate::{ExitCode, backends, output, quote, run_checkpoint, run_env, run_stdin};

/// The name of the environment spec used when `--env` is not given.
const DEFAULT_SPEC_NAME: &str = "default";

/// The spec `type` used when `--env` is not given.
const DEFAULT_BACKEND: &str = "local";

/// How a run ended, before the session is closed.
enum Outcome {
    /// The command ran to its end (normally, by a signal, or a timeout).
    Finished(Box<Finished>),
    /// berth received this signal and killed the command.
    Interrupted(i32),
    /// Writing the command's output failed (stdout closed early, as in
    /// `berth run -- yes | head`): the command was killed.
    OutputFailed(io::Error),
}

/// A command's result and, with `--checkpoint`, where the checkpoint went
/// and what it holds.
struct Finished {
    result: ExecResult,
    checkpoint: Option<(PathBuf, Checkpoint)>,
}

/// `berth run`.
pub(crate) async fn run(args: &RunArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    // Installed first: from here SIGINT/SIGTERM/SIGHUP no longer kill berth
    // outright, so there is always a chance to clean up.
    let mut signals = Signals::install().context("installing signal handlers")?;
    let command = command_string(args)?;
    let mode = session_mode(args)?;
    let spec = match &args.spec {
        Some(path) => {
            run_env::check_spec_path(path)?;
            EnvironmentSpec::from_path(path)?
        }
        None => EnvironmentSpec::new(DEFAULT_BACKEND, DEFAULT_SPEC_NAME),
    };
    let variables = run_env::variables(&args.env_files, &args.vars)?;
    let (registry, plugins) = backends::load(global.plugin_dir.as_deref())?;
    backends::warn_problems(&plugins);
    backends::lookup(&registry, &plugins, &spec.backend_type)?.validate(&spec)?;
    let assets = match &args.assets {
        Some(path) => load_assets(path)?,
        None => ResolvedAssets::default(),
    };
    if let Some(dir) = &args.workspace
        && !dir.is_dir()
    {
        bail!("workspace `{}` is not a directory", dir.display());
    }
    let checkpoint = match &args.checkpoint {
        Some(out) => Some(run_checkpoint::check(out, args.force)?),
        None => None,
    };
    let input = Input::decide(args.interactive);
    let wall_timeout = match (args.timeout, spec.limits.wall_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let idle_timeout = spec.limits.idle_timeout;

    let mut builder = Session::builder(spec)
        .registry(registry.shared())
        .mode(mode)
        .assets(assets);
    if let Some(dir) = &args.workspace {
        builder = builder.base_dir(dir);
    }
    if let Some(root) = &global.temp_root {
        builder = builder.temp_root(root);
    }
    let mut session = builder.build()?;

    let mut cmd = ExecCommand::new(command);
    cmd.wall_timeout = wall_timeout;
    let plan = Plan {
        cmd,
        variables,
        input,
        checkpoint,
    };
    let outcome = drive(&mut session, plan, args, &mut signals).await;
    let interrupted = matches!(outcome, Ok(Outcome::Interrupted(_))).then(Instant::now);
    let (closed, late_signal) = close(session, &mut signals, interrupted).await;

    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(err) => {
            if let Err(close_err) = closed {
                output::say(format_args!("berth: error: {close_err:#}"));
            }
            return Err(err);
        }
    };
    match outcome {
        Outcome::Interrupted(signal) => {
            // Said within a bound: the signal may have come because nobody
            // reads berth's output, stderr included.
            output::say_within(
                match closed {
                    Ok(()) => format!(
                        "berth: interrupted by {}: the command was stopped and the session removed",
                        signal_name(signal)
                    ),
                    Err(err) => format!(
                        "berth: interrupted by {}: the command was stopped, but closing the session failed: {err:#}",
                        signal_name(signal)
                    ),
                },
                LAST_WORDS,
            );
            Ok(ExitCode(128 + signal as u8))
        }
        Outcome::OutputFailed(err) => {
            closed?;
            if err.kind() == io::ErrorKind::BrokenPipe {
                // Nobody reads: nothing more is said.
                Ok(output::CLOSED)
            } else {
                Err(anyhow::Error::new(err).context("writing the command's output"))
            }
        }
        Outcome::Finished(finished) => {
            let Finished { result, checkpoint } = *finished;
            report(
                &result,
                checkpoint.as_ref(),
                args.json,
                wall_timeout,
                idle_timeout,
            )?;
            closed.context("closing the session")?;
            // A signal that came while closing still says berth was
            // stopped, even though everything finished.
            Ok(match late_signal {
                Some(signal) => ExitCode(128 + signal as u8),
                None => exit_code(&result),
            })
        }
    }
}

/// The command string: `-c` as given, or the argv shell-quoted after
/// `exec`, so the program replaces the session's shell and its end (a
/// signal included) is the command's.
fn command_string(args: &RunArgs) -> anyhow::Result<String> {
    match (&args.shell_command, args.argv.as_slice()) {
        (Some(shell), _) => Ok(shell.clone()),
        (None, []) => bail!("nothing to run: give `-- PROGRAM ARGS...` or `-c 'SHELL STRING'`"),
        (None, argv) => Ok(quote::exec_argv(argv)),
    }
}

/// `--mode` when given; agent with `--checkpoint`; evaluation otherwise.
/// A checkpoint records an agent's work, so `--checkpoint` with an
/// explicit `--mode eval` is refused rather than silently switched.
fn session_mode(args: &RunArgs) -> anyhow::Result<Mode> {
    match (args.mode.map(Mode::from), &args.checkpoint) {
        (Some(Mode::Evaluation), Some(_)) => bail!(
            "--checkpoint needs agent mode (a checkpoint records an agent's work); drop `--mode eval` or `--checkpoint`"
        ),
        (Some(mode), _) => Ok(mode),
        (None, Some(_)) => Ok(Mode::Agent),
        (None, None) => Ok(Mode::Evaluation),
    }
}

fn load_assets(path: &Path) -> anyhow::Result<ResolvedAssets> {
    let path =
        std::path::absolute(path).with_context(|| format!("resolving `{}`", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let map = AssetMap::from_path(&path)?;
    Ok(map.resolve(base)?)
}

/// What `drive` runs, besides the arguments.
struct Plan {
    cmd: ExecCommand,
    /// `--env-file` and `-e`, for the setup commands and the command.
    variables: IndexMap<String, String>,
    input: Input,
    checkpoint: Option<run_checkpoint::Target>,
}

/// Prepares, spawns, streams and checkpoints; stops at the first signal.
async fn drive(
    session: &mut Session,
    plan: Plan,
    args: &RunArgs,
    signals: &mut Signals,
) -> anyhow::Result<Outcome> {
    let Plan {
        mut cmd,
        variables,
        input,
        checkpoint,
    } = plan;
    {
        let _progress = Progress::start(
            match &args.workspace {
                Some(dir) => format!("preparing the workspace from {}", dir.display()),
                None => "preparing the workspace".to_owned(),
            },
            None,
        );
        tokio::select! {
            prepared = session.prepare() => prepared.context("preparing the session")?,
            signal = signals.recv() => return Ok(Outcome::Interrupted(signal)),
        }
    }
    tracing::debug!(session = session.id(), "workspace ready");

    let options = SpawnOptions {
        env: variables,
        ..SpawnOptions::default()
    };
    let runtime = tokio::select! {
        runtime = session.spawn(options) => {
            runtime.context("starting the runtime")?
        }
        signal = signals.recv() => return Ok(Outcome::Interrupted(signal)),
    };
    tokio::select! {
        attached = run_stdin::attach(&mut cmd, input, runtime.as_ref()) => attached?,
        signal = signals.recv() => return Ok(Outcome::Interrupted(signal)),
    }

    let started = std::time::Instant::now();
    let mut stream = runtime.stream(cmd).await.context("starting the command")?;
    let result = loop {
        let event = tokio::select! {
            event = stream.next() => event,
            signal = signals.recv() => {
                runtime.kill().await.ok();
                return Ok(Outcome::Interrupted(signal));
            }
        };
        let (bytes, to_stdout) = match event {
            Some(Event::Finished(result)) => break result,
            Some(_) if args.json => continue,
            Some(Event::Stdout(bytes)) => (bytes, true),
            Some(Event::Stderr(bytes)) => (bytes, false),
            // The producer vanished without a result.
            None => break lost(started.elapsed()),
        };
        // A write blocks while nobody reads berth's output; a signal still
        // stops the run then.
        let written = tokio::select! {
            written = forward(bytes, to_stdout) => written,
            signal = signals.recv() => {
                runtime.kill().await.ok();
                return Ok(Outcome::Interrupted(signal));
            }
        };
        if let Err(err) = written {
            runtime.kill().await.ok();
            return Ok(Outcome::OutputFailed(err));
        }
    };
    drop(stream);

    let checkpoint = match &checkpoint {
        Some(target) => {
            let written = tokio::select! {
                written = run_checkpoint::write(session, target) => written
                    .with_context(|| format!("writing the checkpoint to {}", quote_path(&target.given)))?,
                signal = signals.recv() => return Ok(Outcome::Interrupted(signal)),
            };
            Some((target.given.clone(), written))
        }
        None => None,
    };
    Ok(Outcome::Finished(Box::new(Finished { result, checkpoint })))
}

/// The result of a command whose backend vanished without reporting one.
fn lost(elapsed: Duration) -> ExecResult {
    ExecResult {
        status: ExecStatus::Lost,
        exit_code: -1,
        signal: None,
        stdout: Output::default(),
        stderr: Output::default(),
        elapsed,
        timed_out: false,
        usage: None,
    }
}

/// Writes `bytes` to berth's stdout (or stderr) from the blocking pool, so
/// the runtime's one thread goes on timing and reading the command while
/// the write waits for a reader.
async fn forward(bytes: bytes::Bytes, to_stdout: bool) -> io::Result<()> {
    fn write_all(mut out: impl Write, bytes: &[u8]) -> io::Result<()> {
        out.write_all(bytes)?;
        out.flush()
    }
    let write = move || match to_stdout {
        true => write_all(io::stdout().lock(), &bytes),
        false => write_all(io::stderr().lock(), &bytes),
    };
    tokio::task::spawn_blocking(write)
        .await
        .map_err(io::Error::other)?
}

/// Signals that arrive this soon after the first are one request with it:
/// a burst (a process manager and a wrapper both passing TERM on) is not a
/// second request to leave at once.
const REPEAT_AFTER: Duration = Duration::from_millis(250);

/// How long berth waits to say its last lines on a stderr that may be a
/// full pipe nobody reads any more; past it they are dropped.
const LAST_WORDS: Duration = Duration::from_millis(250);

/// Closes the session, returning any signal that arrived meanwhile. A
/// signal during close lets it finish; a second one (or one after the run
/// was already interrupted, `interrupted` being when) exits at once, unless
/// it came within [`REPEAT_AFTER`] of the first.
async fn close(
    session: Session,
    signals: &mut Signals,
    interrupted: Option<Instant>,
) -> (anyhow::Result<()>, Option<i32>) {
    let closing = session.close();
    tokio::pin!(closing);
    let mut first = interrupted;
    let mut received = None;
    loop {
        tokio::select! {
            // A close that is done wins over a signal that came meanwhile.
            biased;
            closed = &mut closing => return (closed.map_err(Into::into), received),
            signal = signals.recv() => {
                let now = Instant::now();
                match first {
                    Some(at) if now.duration_since(at) < REPEAT_AFTER => continue,
                    Some(_) => {
                        output::say_within(
                            format!(
                                "berth: interrupted again by {}: exiting without finishing cleanup (`berth gc` removes what is left)",
                                signal_name(signal)
                            ),
                            LAST_WORDS,
                        );
                        std::process::exit(128 + signal);
                    }
                    None => {
                        output::say_within(
                            format!(
                                "berth: {} received: finishing cleanup (send it again to exit at once)",
                                signal_name(signal)
                            ),
                            LAST_WORDS,
                        );
                        first = Some(now);
                        received = Some(signal);
                    }
                }
            }
        }
    }
}

/// Prints what berth has to say about a finished command: a timeout or
/// signal note and the checkpoint on stderr, and with `--json` the result
/// on stdout.
fn report(
    result: &ExecResult,
    checkpoint: Option<&(PathBuf, Checkpoint)>,
    json: bool,
    wall_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let mut err = io::stderr().lock();
    match result.status {
        ExecStatus::TimedOut => writeln!(
            err,
            "berth: the command timed out after {} (wall timeout): its process tree was killed",
            seconds(wall_timeout.unwrap_or(result.elapsed))
        )?,
        ExecStatus::IdleTimedOut => writeln!(
            err,
            "berth: the command printed nothing for {} (idle timeout): its process tree was killed",
            seconds(idle_timeout.unwrap_or_default())
        )?,
        ExecStatus::Signaled => writeln!(
            err,
            "berth: the command was killed by {}",
            signal_name(result.signal.unwrap_or(-result.exit_code))
        )?,
        ExecStatus::SpawnFailed => {
            // No stderr events were streamed for a command that never
            // started; its result carries the reason.
            if !json {
                err.write_all(&result.stderr.bytes)?;
            }
            writeln!(err, "berth: error: the command could not be started")?;
        }
        ExecStatus::Lost => writeln!(
            err,
            "berth: error: the sandbox was lost while the command ran"
        )?,
        ExecStatus::Exited => {}
    }
    if let Some((dir, checkpoint)) = checkpoint {
        writeln!(
            err,
            "berth: checkpoint written to {}: {}",
            quote_path(dir),
            summary_line(&checkpoint.diff)
        )?;
        for change in &checkpoint.diff.changes {
            writeln!(err, "  {}", stat_line(change))?;
        }
    }
    err.flush()?;
    drop(err);
    if json {
        crate::failure::write_json(&JsonResult::new(result, checkpoint))?;
    }
    Ok(())
}

/// berth's exit code for a finished command.
fn exit_code(result: &ExecResult) -> ExitCode {
    match result.status {
        ExecStatus::Exited => ExitCode(u8::try_from(result.exit_code & 0xff).unwrap_or(1)),
        ExecStatus::Signaled => {
            let signal = result.signal.unwrap_or(-result.exit_code);
            ExitCode(u8::try_from(128 + signal).unwrap_or(ExitCode::BERTH_ERROR.0))
        }
        ExecStatus::TimedOut | ExecStatus::IdleTimedOut => ExitCode::TIMEOUT,
        ExecStatus::SpawnFailed | ExecStatus::Lost => ExitCode::BERTH_ERROR,
    }
}

fn seconds(duration: Duration) -> String {
    // Rounded to the millisecond; `f64`'s Display drops trailing zeros.
    let secs = (duration.as_secs_f64() * 1000.0).round() / 1000.0;
    format!("{secs} s")
}

/// `SIGINT`, `SIGTERM`, …, or `signal N`.
fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

/// The signals that make `berth run` stop: interrupt, terminate, hang-up.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal received.
    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => libc::SIGINT,
            _ = self.terminate.recv() => libc::SIGTERM,
            _ = self.hangup.recv() => libc::SIGHUP,
        }
    }
}

/// The `--json` result: the command's [`ExecResult`] with output as text.
///
/// ```json
/// {
///   "status": "exited",          // exited | signaled | timed_out | idle_timed_out | spawn_failed | lost
///   "exit_code": 0,              // -N when signal N killed it, -1 when it never ran
///   "signal": null,
///   "timed_out": false,
///   "elapsed_secs": 0.012,
///   "stdout": {"text": "hi\n", "utf8": true, "truncated": false, "total_bytes": 3, "spill_path": null},
///   "stderr": {"text": "\ufffd", "utf8": false, "base64": "/w==", ...},
///   "usage": {"user_cpu_secs": 0.001, "system_cpu_secs": 0.0, "max_rss_bytes": 3145728},
///   "checkpoint": {"dir": "out", "diff": {"changes": [...], "summary": {...}}}
/// }
/// ```
///
/// `text` is always valid UTF-8 (invalid sequences replaced by U+FFFD);
/// when the bytes were not valid UTF-8, `utf8` is false and `base64` holds
/// them exactly. `checkpoint` is null without `--checkpoint`.
#[derive(Debug, Serialize)]
struct JsonResult<'a> {
    status: ExecStatus,
    exit_code: i32,
    signal: Option<i32>,
    timed_out: bool,
    elapsed_secs: f64,
    stdout: JsonOutput,
    stderr: JsonOutput,
    usage: Option<JsonUsage>,
    checkpoint: Option<JsonCheckpoint<'a>>,
}

#[derive(Debug, Serialize)]
struct JsonOutput {
    text: String,
    utf8: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
    truncated: bool,
    total_bytes: u64,
    spill_path: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct JsonUsage {
    user_cpu_secs: f64,
    system_cpu_secs: f64,
    max_rss_bytes: u64,
}

#[derive(Debug, Serialize)]
struct JsonCheckpoint<'a> {
    dir: &'a Path,
    diff: &'a SnapshotDiff,
}

impl<'a> JsonResult<'a> {
    fn new(result: &ExecResult, checkpoint: Option<&'a (PathBuf, Checkpoint)>) -> Self {
        JsonResult {
            status: result.status,
            exit_code: result.exit_code,
            signal: result.signal,
            timed_out: result.timed_out,
            elapsed_secs: result.elapsed.as_secs_f64(),
            stdout: JsonOutput::new(&result.stdout),
            stderr: JsonOutput::new(&result.stderr),
            usage: result.usage.as_ref().map(JsonUsage::new),
            checkpoint: checkpoint.map(|(dir, checkpoint)| JsonCheckpoint {
                dir,
                diff: &checkpoint.diff,
            }),
        }
    }
}

impl JsonOutput {
    fn new(output: &Output) -> Self {
        let (text, utf8, base64) = match std::str::from_utf8(&output.bytes) {
            Ok(text) => (text.to_owned(), true, None),
            Err(_) => (
                output.lossy().into_owned(),
                false,
                Some(session_core::base64::encode(&output.bytes)),
            ),
        };
        JsonOutput {
            text,
            utf8,
            base64,
            truncated: output.truncated,
            total_bytes: output.total_bytes,
            spill_path: output.spill_path.clone(),
        }
    }
}

impl JsonUsage {
    fn new(usage: &Usage) -> Self {
        JsonUsage {
            user_cpu_secs: usage.user_cpu.as_secs_f64(),
            system_cpu_secs: usage.system_cpu.as_secs_f64(),
            max_rss_bytes: usage.max_rss_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: ExecStatus, exit_code: i32, signal: Option<i32>) -> ExecResult {
        ExecResult {
            status,
            exit_code,
            signal,
            stdout: Output::default(),
            stderr: Output::default(),
            elapsed: Duration::ZERO,
            timed_out: matches!(status, ExecStatus::TimedOut | ExecStatus::IdleTimedOut),
            usage: None,
        }
    }

    #[test]
    fn exit_codes_follow_the_command() {
        assert_eq!(exit_code(&result(ExecStatus::Exited, 0, None)), ExitCode(0));
        assert_eq!(exit_code(&result(ExecStatus::Exited, 7, None)), ExitCode(7));
        assert_eq!(
            exit_code(&result(ExecStatus::Signaled, -9, Some(9))),
            ExitCode(137)
        );
        assert_eq!(
            exit_code(&result(ExecStatus::TimedOut, -9, Some(9))),
            ExitCode(124)
        );
        assert_eq!(
            exit_code(&result(ExecStatus::IdleTimedOut, -9, Some(9))),
            ExitCode(124)
        );
        assert_eq!(
            exit_code(&result(ExecStatus::SpawnFailed, -1, None)),
            ExitCode(125)
        );
        assert_eq!(
            exit_code(&result(ExecStatus::Lost, -1, None)),
            ExitCode(125)
        );
    }

    #[test]
    fn json_output_flags_invalid_utf8() {
        let output = Output {
            bytes: vec![b'a', 0xff],
            truncated: false,
            total_bytes: 2,
            spill_path: None,
        };
        let json = serde_json::to_value(JsonOutput::new(&output)).unwrap();
        assert_eq!(json["text"], "a\u{fffd}");
        assert_eq!(json["utf8"], false);
        assert_eq!(json["base64"], "Yf8=");
        let valid = serde_json::to_value(JsonOutput::new(&Output {
            bytes: b"ok".to_vec(),
            ..Output::default()
        }))
        .unwrap();
        assert_eq!(valid["utf8"], true);
        assert!(valid.get("base64").is_none());
    }

    #[test]
    fn checkpoint_implies_agent_and_refuses_eval() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let mode = |argv: &[&str]| {
            let cli = Cli::try_parse_from(argv).unwrap();
            let Command::Run(run) = cli.command else {
                panic!("not run")
            };
            session_mode(&run)
        };
        assert_eq!(
            mode(&["berth", "run", "-c", "true"]).unwrap(),
            Mode::Evaluation
        );
        assert_eq!(
            mode(&["berth", "run", "--checkpoint", "o", "-c", "true"]).unwrap(),
            Mode::Agent
        );
        assert_eq!(
            mode(&["berth", "run", "--mode", "agent", "-c", "true"]).unwrap(),
            Mode::Agent
        );
        assert!(
            mode(&[
                "berth",
                "run",
                "--mode",
                "eval",
                "--checkpoint",
                "o",
                "-c",
                "true"
            ])
            .is_err()
        );
    }
}
