//! What a caller asks a runtime to run.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// One command for a runtime.
///
/// The command string means the same on every backend: a POSIX shell
/// (`/bin/sh -c`, or the backend's configured shell) runs it with the
/// workspace as its working directory, so `a && b`, `$VAR` and pipes work
/// everywhere. Environment precedence, lowest first: host environment (when
/// the spec includes it), spec environment, spawn environment, `env` here.
/// No `stdin` means an empty stdin, never the caller's terminal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecCommand {
    /// The shell string.
    pub command: String,
    /// Variables for this command only; they win over every other source.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Bytes fed to the command's stdin, which is then closed.
    #[serde(default)]
    pub stdin: Option<Vec<u8>>,
    /// Kill the command's whole process tree after this long; `None` uses
    /// the spec's `limits.wall_timeout`.
    #[serde(default, with = "crate::serde_secs")]
    pub wall_timeout: Option<Duration>,
    /// Kill it after this long without any output; `None` uses the spec's
    /// `limits.idle_timeout`.
    #[serde(default, with = "crate::serde_secs")]
    pub idle_timeout: Option<Duration>,
    /// Bytes kept in memory per stream; `None` uses the spec's
    /// `limits.output_limit`.
    #[serde(default)]
    pub output_limit: Option<u64>,
    /// When set, each stream is also written in full to a file in this
    /// directory once it passes `output_limit`, and the result names the
    /// file.
    #[serde(default)]
    pub spill_dir: Option<PathBuf>,
}

impl ExecCommand {
    /// A command with default settings.
    pub fn new(command: impl Into<String>) -> ExecCommand {
        ExecCommand {
            command: command.into(),
            ..ExecCommand::default()
        }
    }

    /// Adds a variable for this command.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> ExecCommand {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the bytes fed to stdin.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> ExecCommand {
        self.stdin = Some(bytes.into());
        self
    }

    /// Sets the wall timeout.
    pub fn wall_timeout(mut self, timeout: Duration) -> ExecCommand {
        self.wall_timeout = Some(timeout);
        self
    }

    /// Sets the idle timeout.
    pub fn idle_timeout(mut self, timeout: Duration) -> ExecCommand {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Sets the in-memory output limit per stream.
    pub fn output_limit(mut self, bytes: u64) -> ExecCommand {
        self.output_limit = Some(bytes);
        self
    }

    /// Spills full output past the limit to files in `dir`.
    pub fn spill_to(mut self, dir: impl Into<PathBuf>) -> ExecCommand {
        self.spill_dir = Some(dir.into());
        self
    }
}
