//! The operations carried by `PluginModule::call`, as JSON.
//!
//! Each operation is a name and a request; adding an operation never
//! changes an existing one, and a plugin that does not know a name answers
//! with an "unknown operation" error the host can recognise.

use serde::{Deserialize, Serialize};

use crate::assets::ResolvedAsset;
use crate::runtime::{Capabilities, ExecCommand, SetupOutput, SpawnContext};
use crate::spec::EnvironmentSpec;

/// Operation names.
pub(crate) mod op {
    pub(crate) const VALIDATE: &str = "validate";
    pub(crate) const SPAWN: &str = "spawn";
    pub(crate) const STREAM: &str = "stream";
    pub(crate) const ASSET_PATH: &str = "asset_path";
    pub(crate) const POLL: &str = "poll";
    pub(crate) const KILL: &str = "kill";
    pub(crate) const CLEANUP: &str = "cleanup";
    pub(crate) const RELEASE: &str = "release";
    pub(crate) const DIAGNOSE: &str = "diagnose";
    pub(crate) const COLLECT_GARBAGE: &str = "collect_garbage";
    /// The backend descriptors, asked before `init` (request `{}`): the
    /// only operation a plugin answers before it is started. Plugins built
    /// before it answer that they were called before init.
    pub(crate) const DESCRIBE: &str = "describe";
    /// A `stream` request the plugin starts on its own runtime and answers
    /// at once (`null`); the command's end comes later through the sink,
    /// as one chunk on stream [`DONE`](super::DONE). Until that chunk the
    /// host keeps the sink's and the cancel token's contexts alive; the
    /// plugin writes it exactly once and then uses neither again. A call
    /// answered with an error was not started, unless its `DONE` came
    /// first (the host takes the first of the two). Plugins
    /// built before it answer "unknown operation", and the host makes the
    /// blocking `stream` call instead.
    pub(crate) const START_STREAM: &str = "start_stream";
}

/// The sink's stream number of the chunk that ends a started call: byte 0
/// then the reply's JSON, or byte 1 then the error's text, as `call`
/// returns them.
pub(crate) const DONE: u8 = 3;

/// The prefix of the error a plugin returns for an operation it does not
/// know.
pub(crate) const UNKNOWN_OPERATION: &str = "unknown operation";

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BackendRequest {
    pub(crate) backend: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ValidateRequest {
    pub(crate) backend: String,
    pub(crate) spec: EnvironmentSpec,
    /// Where the spec came from (its file), for the plugin's errors; hosts
    /// before it was added send none, and plugins before it ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) origin: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SpawnRequest {
    pub(crate) backend: String,
    pub(crate) spec: EnvironmentSpec,
    pub(crate) ctx: SpawnContext,
    /// As in [`ValidateRequest::origin`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) origin: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SpawnReply {
    pub(crate) runtime: u64,
    pub(crate) backend_type: String,
    pub(crate) capabilities: Capabilities,
    pub(crate) setup: SetupOutput,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RuntimeRequest {
    pub(crate) runtime: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StreamRequest {
    pub(crate) runtime: u64,
    pub(crate) cmd: ExecCommand,
    /// The read end of a pipe in this process that carries the command's
    /// streamed stdin after `cmd.stdin`'s bytes (`ExecCommand::stdin_stream`
    /// does not serialise). The host keeps it open during the call; the
    /// plugin duplicates it. Sent only to a plugin whose capabilities claim
    /// `stdin_streaming` (plugins built before it claim nothing of it, and
    /// ignore the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stdin_fd: Option<i32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AssetPathRequest {
    pub(crate) runtime: u64,
    pub(crate) asset: ResolvedAsset,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GarbageRequest {
    pub(crate) backend: String,
    pub(crate) dry_run: bool,
}
