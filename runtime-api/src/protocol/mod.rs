//! The wire protocol between the `api` backend and `berth serve`, as Rust
//! types. `PROTOCOL.md` at the crate root describes it for people; this
//! module is what both sides actually serialise.
//!
//! Requests and responses are JSON over HTTP/1.1. A request that carries an
//! archive (assets at session creation, a workspace sync) uses a *frame*
//! body: one line of JSON, a `\n`, then an uncompressed tar stream. A
//! command's events come back as NDJSON, one [`StreamLine`] per line, with
//! output bytes in base64. Every error is a [`WireError`] as the JSON body
//! of a non-2xx response (or the last line of an event stream).

pub mod base64_bytes;

use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use session_core::runtime::wire::WireError;
use session_core::runtime::{
    Capabilities, ExecCommand, ExecResult, ExecStatus, Output, SetupOutput, Usage,
};
use session_core::snapshot::{ContentHash, EntryKind, ManifestEntry};
use session_core::spec::{EnvironmentSpec, Mode};

/// The protocol's version; the path prefix is `/v{PROTOCOL_VERSION}`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The prefix of every path.
pub const PATH_PREFIX: &str = "/v1";

/// Content type of JSON bodies.
pub const JSON: &str = "application/json";

/// Content type of a frame body: a JSON line, then a tar stream.
pub const FRAME: &str = "application/x-berth-frame";

/// Content type of an event stream.
pub const NDJSON: &str = "application/x-ndjson";

/// Content type of a change archive.
pub const TAR: &str = "application/x-tar";

/// The longest id (session, runtime, change set, idempotency key) the
/// server accepts.
pub const MAX_ID_LEN: usize = 128;

/// The longest duration a request may carry: a command's `wall_timeout`
/// and `idle_timeout`, a spec's `limits.wall_timeout` and
/// `limits.idle_timeout`, and the lease an `api` spec asks for (`api.lease`).
/// About 31 years, as good as no limit; a longer value is refused (400
/// naming the field) rather than overflowing a deadline.
pub const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// Checks a duration taken from a request against [`MAX_DURATION`].
///
/// Fails, when it is longer, with a message that gives both values (the
/// caller names the field).
pub fn check_duration(value: Option<Duration>) -> Result<(), String> {
    value.map_or(Ok(()), |value| check_seconds(value.as_secs_f64()))
}

/// [`check_duration`] for a number of seconds as written (a spec's
/// `api.lease`), which may be far beyond what a `Duration` holds.
///
/// Fails, when it is longer than [`MAX_DURATION`] (or not a number), with
/// a message that gives both values.
pub fn check_seconds(seconds: f64) -> Result<(), String> {
    if seconds <= MAX_DURATION.as_secs_f64() {
        return Ok(());
    }
    let shown = if seconds < 1e12 {
        seconds.to_string()
    } else {
        format!("{seconds:e}")
    };
    Err(format!(
        "{shown} seconds is too long; at most {} (about 31 years) is accepted",
        MAX_DURATION.as_secs()
    ))
}

/// Whether `id` may name a session, runtime, change set or idempotency
/// key: 1 to [`MAX_ID_LEN`] ASCII letters, digits, `-` or `_`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// The server's berth version.
    pub version: String,
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The backend types the server's registry serves.
    pub backends: Vec<String>,
}

/// A static asset announced at session creation; its bytes are in the
/// request's archive, under `save_path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSpec {
    /// The asset's name.
    pub name: String,
    /// Its normalised relative save path.
    pub save_path: String,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// `POST /v1/sessions`: JSON, or a frame whose archive holds the assets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The whole spec for the server side; its `type` must be served by
    /// the server's registry.
    pub spec: EnvironmentSpec,
    /// Agent or evaluation: picks the setup commands and whether assets are
    /// copied into the workspace.
    pub mode: Mode,
    /// The client's own name for the session, for the server's logs.
    #[serde(default)]
    pub label: Option<String>,
    /// The assets whose bytes the archive carries.
    #[serde(default)]
    pub assets: Vec<AssetSpec>,
    /// The lease asked for, in milliseconds; the server clamps it to its
    /// bounds and uses its default when absent.
    #[serde(default)]
    pub lease_ms: Option<u64>,
}

/// A workspace's entries and their checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceState {
    /// The checksum of `entries` (a snapshot manifest's checksum).
    pub checksum: ContentHash,
    /// Files, symlinks and empty directories, sorted by path.
    pub entries: Vec<ManifestEntry>,
}

/// The answer to [`CreateSession`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCreated {
    /// The remote session's id.
    pub session: String,
    /// The lease granted, in milliseconds: renew before it runs out.
    pub lease_ms: u64,
    /// What the remote workspace holds now.
    pub workspace: WorkspaceState,
    /// The sizes the server accepts, so a client can refuse early and
    /// clearly what would be refused with `413`.
    pub limits: SizeLimits,
}

/// The body sizes a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeLimits {
    /// The largest JSON body (and JSON line of a frame), in bytes.
    pub max_body_bytes: u64,
    /// The largest archive in a frame, in bytes.
    pub max_archive_bytes: u64,
}

/// The answer to `POST /v1/sessions/{session}/lease`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRenewed {
    /// The lease from now, in milliseconds.
    pub lease_ms: u64,
}

/// A path removed from a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deletion {
    /// The normalised relative path.
    pub path: String,
    /// What it was.
    pub kind: EntryKind,
}

/// The JSON line of a sync frame (`POST /v1/sessions/{session}/sync`); the
/// archive that follows holds every created or changed entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncHead {
    /// The checksum the client believes the remote workspace has.
    pub base: ContentHash,
    /// The checksum it will have once the archive and deletions are
    /// applied.
    pub target: ContentHash,
    /// Paths to remove, applied before the archive.
    #[serde(default)]
    pub delete: Vec<Deletion>,
}

/// The answer to a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synced {
    /// The remote workspace's checksum now.
    pub checksum: ContentHash,
}

/// `POST /v1/sessions/{session}/runtimes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpawnRequest {
    /// Variables for every command of the runtime.
    pub env: IndexMap<String, String>,
    /// A setup command run after the spec's.
    pub extra_setup_command: Option<String>,
    /// Skip setup entirely.
    pub disable_setup: bool,
}

/// One setup command and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSetupStep {
    /// The command.
    pub command: String,
    /// Its result, output included.
    pub result: WireResult,
}

/// The answer to [`SpawnRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spawned {
    /// The runtime's id within the session.
    pub runtime: String,
    /// The server-side backend type.
    pub backend: String,
    /// What the server-side runtime supports.
    pub capabilities: Capabilities,
    /// Where each asset appears to the runtime's commands, by name.
    pub asset_paths: IndexMap<String, String>,
    /// The setup commands that ran, in order.
    pub setup: Vec<WireSetupStep>,
    /// What setup changed in the workspace.
    pub changes: ChangeSet,
}

/// `POST /v1/sessions/{session}/runtimes/{runtime}/exec`.
///
/// `command` is an [`ExecCommand`] whose `stdin` and `spill_dir` are null:
/// stdin travels as base64 beside it, and spilling is the client's business.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Names this execution: a retry with the same key never runs the
    /// command again, it returns (or waits for) the first run's outcome.
    pub idempotency_key: String,
    /// The workspace checksum the client expects before the command.
    pub base: ContentHash,
    /// The command.
    pub command: ExecCommand,
    /// The bytes fed to stdin.
    #[serde(default, with = "base64_bytes::option")]
    pub stdin: Option<Vec<u8>>,
    /// More stdin follows, after `stdin`'s bytes, through
    /// `POST /v1/sessions/{session}/execs/{key}/stdin` ([`StdinChunk`]);
    /// the command's stdin stays open until a chunk says `eof`. Sent only
    /// to a server whose runtime claims `stdin_streaming` (servers before
    /// it claim nothing of it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin_stream: bool,
}

/// The head of `POST /v1/sessions/{session}/execs/{key}/stdin`: a frame
/// whose JSON line is this and whose rest is raw bytes for the command's
/// stdin, starting at byte `offset` of everything sent after the exec
/// request's own `stdin`.
///
/// Bytes the server already handed on (a retry) are skipped; an offset
/// beyond them is `409`. The answer ([`StdinReceived`]) comes once the
/// bytes are in the command's stdin queue, which holds a few chunks: a
/// command that does not read holds the sender back. `eof` closes the
/// command's stdin after these bytes.
/// `410` says the command reads no more (it ended, or its execution took
/// no streamed stdin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinChunk {
    /// Where the bytes start.
    pub offset: u64,
    /// Whether the input ends after them.
    #[serde(default)]
    pub eof: bool,
}

/// The answer to a [`StdinChunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdinReceived {
    /// How many bytes were queued for the command's stdin so far: where
    /// the next chunk starts.
    pub received: u64,
}

/// One stream of a command's output on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireOutput {
    /// The bytes kept (base64). Absent in the `finished` line of the
    /// stream that carried the output live, which already delivered them.
    #[serde(default, with = "base64_bytes::option")]
    pub data: Option<Vec<u8>>,
    /// Whether bytes beyond the output limit were dropped.
    pub truncated: bool,
    /// Bytes written to the stream in all.
    pub total_bytes: u64,
}

impl WireOutput {
    /// The wire form of `output`, with or without its bytes.
    pub fn from_output(output: &Output, with_data: bool) -> WireOutput {
        WireOutput {
            data: with_data.then(|| output.bytes.clone()),
            truncated: output.truncated,
            total_bytes: output.total_bytes,
        }
    }

    /// Back to an [`Output`] (no spill file: a server path means nothing
    /// to the client).
    pub fn into_output(self) -> Output {
        Output {
            bytes: self.data.unwrap_or_default(),
            truncated: self.truncated,
            total_bytes: self.total_bytes,
            spill_path: None,
        }
    }
}

/// An [`ExecResult`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireResult {
    /// How it ended.
    pub status: ExecStatus,
    /// Exit status, `-N` for signal N, -1 when it never ran.
    pub exit_code: i32,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// Standard output.
    pub stdout: WireOutput,
    /// Standard error.
    pub stderr: WireOutput,
    /// Wall time on the server.
    pub elapsed: Duration,
    /// Whether a timeout ended it.
    pub timed_out: bool,
    /// Resources used, when known.
    pub usage: Option<Usage>,
}

impl WireResult {
    /// The wire form of `result`, with or without its output bytes.
    pub fn from_result(result: &ExecResult, with_data: bool) -> WireResult {
        WireResult {
            status: result.status,
            exit_code: result.exit_code,
            signal: result.signal,
            stdout: WireOutput::from_output(&result.stdout, with_data),
            stderr: WireOutput::from_output(&result.stderr, with_data),
            elapsed: result.elapsed,
            timed_out: result.timed_out,
            usage: result.usage,
        }
    }

    /// Back to an [`ExecResult`].
    pub fn into_result(self) -> ExecResult {
        ExecResult {
            status: self.status,
            exit_code: self.exit_code,
            signal: self.signal,
            stdout: self.stdout.into_output(),
            stderr: self.stderr.into_output(),
            elapsed: self.elapsed,
            timed_out: self.timed_out,
            usage: self.usage,
        }
    }
}

/// Setup output on the wire.
pub fn setup_to_wire(setup: &SetupOutput) -> Vec<WireSetupStep> {
    setup
        .commands
        .iter()
        .map(|(command, result)| WireSetupStep {
            command: command.clone(),
            result: WireResult::from_result(result, true),
        })
        .collect()
}

/// Setup output from the wire.
pub fn setup_from_wire(steps: Vec<WireSetupStep>) -> SetupOutput {
    SetupOutput {
        commands: steps
            .into_iter()
            .map(|step| (step.command, step.result.into_result()))
            .collect(),
    }
}

/// What an operation on the server (setup, a command) changed in the
/// remote workspace, relative to the state before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// Fetch the archive of `upserts` at
    /// `GET /v1/sessions/{session}/changes/{id}`; absent when `upserts` is
    /// empty.
    #[serde(default)]
    pub id: Option<String>,
    /// The workspace checksum before.
    pub base: ContentHash,
    /// The workspace checksum after.
    pub checksum: ContentHash,
    /// Created or changed entries (content, kind, mode or link target).
    #[serde(default)]
    pub upserts: Vec<ManifestEntry>,
    /// Removed entries.
    #[serde(default)]
    pub deletes: Vec<Deletion>,
}

impl ChangeSet {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

/// One line of an event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "a line lives only between the wire and its reader"
)]
pub enum StreamLine {
    /// Always first: the command is running (or, when `attached`, this is a
    /// retry joined to the run that already started).
    Started {
        /// The idempotency key.
        exec: String,
        /// Whether this stream joined an existing run. An attached stream
        /// carries no output chunks: its `finished` line holds the output.
        attached: bool,
        /// How often the server sends a heartbeat on a silent stream.
        heartbeat_ms: u64,
    },
    /// Bytes the command wrote to stdout.
    Stdout {
        /// The bytes (base64).
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// Bytes the command wrote to stderr.
    Stderr {
        /// The bytes (base64).
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// Nothing happened for a while; the server is alive.
    Heartbeat,
    /// Always last on success: the result and what the command changed.
    Finished {
        /// The result.
        result: WireResult,
        /// The workspace changes to sync back.
        changes: ChangeSet,
    },
    /// Last instead of `finished` when the server failed after the stream
    /// began.
    Error {
        /// What went wrong.
        error: WireError,
    },
}

impl StreamLine {
    /// The line as NDJSON (with its `\n`).
    pub fn to_line(&self) -> bytes::Bytes {
        let mut out = serde_json::to_vec(self).expect("stream lines serialise");
        out.push(b'\n');
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_and_bounded() {
        assert!(is_valid_id("a1-B_2"));
        for bad in ["", "a/b", "..", "a b", &"x".repeat(MAX_ID_LEN + 1)] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn stream_lines_round_trip_with_base64_bytes() {
        let line = StreamLine::Stdout {
            data: vec![0, 0xff, b'a'],
        };
        let text = line.to_line();
        assert_eq!(&text[..], b"{\"type\":\"stdout\",\"data\":\"AP9h\"}\n");
        let back: StreamLine = serde_json::from_slice(&text).unwrap();
        assert_eq!(back, line);
    }
}
