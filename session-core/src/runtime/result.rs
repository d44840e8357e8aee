//! What a command produced.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// It exited on its own; `exit_code` is its status.
    Exited,
    /// A signal killed it (not berth's timeout); `exit_code` is `-N`.
    Signaled,
    /// berth killed it at the wall timeout.
    TimedOut,
    /// berth killed it after the idle timeout passed without output.
    IdleTimedOut,
    /// It could not be started at all; `exit_code` is -1.
    SpawnFailed,
    /// The sandbox died under it (container removed, server gone).
    Lost,
}

/// One output stream of a command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The bytes kept (at most the output limit).
    pub bytes: Vec<u8>,
    /// Whether bytes beyond the limit were dropped from memory.
    pub truncated: bool,
    /// Bytes the command wrote to this stream in all.
    pub total_bytes: u64,
    /// The file holding the whole stream, when spilling was asked for and
    /// the limit was passed.
    pub spill_path: Option<PathBuf>,
}

impl Output {
    /// The bytes as UTF-8, with replacement characters where they are not.
    pub fn lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }
}

/// Resources a command used, when the backend can tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time in user mode.
    pub user_cpu: Duration,
    /// CPU time in kernel mode.
    pub system_cpu: Duration,
    /// Peak resident set size in bytes.
    pub max_rss_bytes: u64,
}

/// The outcome of one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// How it ended.
    pub status: ExecStatus,
    /// Its exit status; `-N` when signal N killed it; -1 when it never ran.
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Standard output.
    pub stdout: Output,
    /// Standard error.
    pub stderr: Output,
    /// Wall time from start to end, measured on a monotonic clock.
    pub elapsed: Duration,
    /// Whether a wall or idle timeout ended it.
    pub timed_out: bool,
    /// Resources used, when known.
    pub usage: Option<Usage>,
}

impl ExecResult {
    /// Standard output as UTF-8 (lossy).
    pub fn stdout_lossy(&self) -> Cow<'_, str> {
        self.stdout.lossy()
    }

    /// Standard error as UTF-8 (lossy).
    pub fn stderr_lossy(&self) -> Cow<'_, str> {
        self.stderr.lossy()
    }

    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status == ExecStatus::Exited && self.exit_code == 0
    }

    /// A result for a command whose sandbox or producer vanished before it
    /// reported an end.
    pub fn lost(elapsed: Duration) -> ExecResult {
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

    /// A result for a command that could not be started; `message` goes to
    /// stderr.
    pub fn spawn_failed(message: &str, elapsed: Duration) -> ExecResult {
        let bytes = format!("{message}\n").into_bytes();
        ExecResult {
            status: ExecStatus::SpawnFailed,
            exit_code: -1,
            signal: None,
            stdout: Output::default(),
            stderr: Output {
                total_bytes: bytes.len() as u64,
                bytes,
                truncated: false,
                spill_path: None,
            },
            elapsed,
            timed_out: false,
            usage: None,
        }
    }
}

/// The output of the setup commands a runtime ran at spawn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupOutput {
    /// Each setup command with its result, in the order they ran.
    pub commands: Vec<(String, ExecResult)>,
}

/// The old convention, kept for callers that parse it: setup and command
/// output in one stream, separated by this marker line.
pub const SETUP_MARKER: &str = "_____STARTING COMMAND_____";

/// Splits old-style combined output at the last [`SETUP_MARKER`] of each
/// stream, returning `(setup_stdout, command_stdout, setup_stderr,
/// command_stderr)`. A stream without the marker is all command output.
pub fn split_setup_output<'a>(
    stdout: &'a str,
    stderr: &'a str,
) -> (&'a str, &'a str, &'a str, &'a str) {
    fn split(text: &str) -> (&str, &str) {
        match text.rfind(SETUP_MARKER) {
            Some(at) => {
                let rest = &text[at + SETUP_MARKER.len()..];
                (&text[..at], rest.strip_prefix('\n').unwrap_or(rest))
            }
            None => ("", text),
        }
    }
    let (setup_out, out) = split(stdout);
    let (setup_err, err) = split(stderr);
    (setup_out, out, setup_err, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_at_the_last_marker() {
        let out = format!("setup1\n{SETUP_MARKER}\nmid\n{SETUP_MARKER}\nreal\n");
        let (s_out, c_out, s_err, c_err) = split_setup_output(&out, "only command\n");
        assert_eq!(s_out, format!("setup1\n{SETUP_MARKER}\nmid\n"));
        assert_eq!(c_out, "real\n");
        assert_eq!((s_err, c_err), ("", "only command\n"));
    }
}
