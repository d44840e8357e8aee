//! What a caller asks a runtime to run.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::stdin::{StdinSource, StdinStream};

/// One command for a runtime.
///
/// The command string means the same on every backend: a POSIX shell
/// (`/bin/sh -c`, or the backend's configured shell) runs it with the
/// workspace as its working directory, so `a && b`, `$VAR` and pipes work
/// everywhere. Environment precedence, lowest first: host environment (when
/// the spec includes it), spec environment, spawn environment, `env` here.
/// No `stdin` and no `stdin_stream` means an empty stdin, never the
/// caller's terminal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecCommand {
    /// The shell string.
    pub command: String,
    /// Variables for this command only; they win over every other source.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Bytes fed to the command's stdin, which is then closed (unless a
    /// `stdin_stream` follows them).
    #[serde(default)]
    pub stdin: Option<Vec<u8>>,
    /// Stdin that arrives while the command runs: its chunks are written
    /// after `stdin`'s bytes, as they come, and the command's stdin is
    /// closed when the stream's senders are gone (see
    /// [`StdinStream`](super::StdinStream)). Runtimes whose capabilities
    /// claim [`stdin_streaming`](super::Capabilities::stdin_streaming) take
    /// it; one that does not may ignore it, so its caller reads the stream
    /// to its end and passes the bytes as `stdin` instead (the plugin and
    /// `api` adapters do that themselves when the far side cannot stream).
    /// Never serialised.
    #[serde(skip)]
    pub stdin_stream: Option<StdinStream>,
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
    /// The caller takes the output from the stream's events, so the result
    /// keeps none of its bytes: a stream then holds no copy of what it
    /// already delivered, and its memory stays a few chunks whatever
    /// `output_limit` is. The result's `bytes` are empty, `total_bytes`
    /// counts the stream, `truncated` says whether it wrote anything (the
    /// result holds less than it wrote), and spilling works as without it:
    /// with a `spill_dir`, a stream that passes `output_limit` is in a file
    /// from its first byte. Off by default, since then the concatenation of
    /// the events equals the result's bytes (up to `output_limit`).
    ///
    /// With [`Runtime::execute`](super::Runtime::execute), which drops the
    /// events, the output is only counted. The `docker` backend keeps the
    /// output in its results whatever this says. Sent to a plugin only when
    /// set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub events_only: bool,
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

    /// Feeds `stream`'s chunks to stdin as they arrive (after the bytes of
    /// [`ExecCommand::stdin`], if any).
    pub fn stdin_stream(mut self, stream: StdinStream) -> ExecCommand {
        self.stdin_stream = Some(stream);
        self
    }

    /// Whether the command reads anything on stdin (bytes or a stream).
    pub fn has_stdin(&self) -> bool {
        self.stdin.is_some() || self.stdin_stream.is_some()
    }

    /// Takes what the command is to read on stdin, leaving neither form
    /// behind: `None` when it has none (its stdin is then empty). A stream
    /// a clone of this command took already yields nothing.
    pub fn take_stdin(&mut self) -> Option<StdinSource> {
        if !self.has_stdin() {
            return None;
        }
        let rest = self.stdin_stream.take().and_then(|stream| stream.take());
        Some(StdinSource::new(self.stdin.take(), rest))
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

    /// Keeps no output in the result: the caller reads it from the
    /// stream's events (see the `events_only` field).
    pub fn events_only(mut self) -> ExecCommand {
        self.events_only = true;
        self
    }
}
