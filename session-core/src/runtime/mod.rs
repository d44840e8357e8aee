//! The runtime contract: what every backend provides.
//!
//! A [`Backend`] is a factory registered under a `type` name; it spawns
//! [`Runtime`]s for a prepared workspace. Built-in backends and dylib
//! plugins end up as the same `Arc<dyn Backend>` in the
//! [`Registry`](crate::registry::Registry), so session code has one path.
//!
//! A runtime runs commands one at a time or concurrently (its
//! [`Capabilities`] say which), streams their output live, kills a
//! command's whole process tree on timeout, and cleans up everything it
//! created on [`Runtime::cleanup`] and on drop.

mod command;
mod context;
mod event;
mod lend;
mod result;
mod stdin;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::command::ExecCommand;
pub use self::stdin::{STDIN_BUFFER, StdinReceiver, StdinSender, StdinSource, StdinStream};

/// The longest timeout berth takes from a spec, a request or the command
/// line: a hundred years. Longer ones are refused where they are parsed
/// (they would overflow a clock); a caller of the library that passes one
/// anyway gets no deadline at all.
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);
pub use self::context::{Mount, PortMapping, SpawnContext};
pub use self::event::{
    ChunkPool, EVENT_BUFFER, Event, EventPermit, EventSender, EventStream, OutputBuffer,
    deadline_after,
};
pub use self::lend::{
    DIRECT_READ, Direct, LendHold, StdoutLend, Waited, grow_pipe_to, pipe_waiting,
};
pub use self::result::{
    ExecResult, ExecStatus, Output, SETUP_MARKER, SetupOutput, Usage, split_setup_output,
};
use crate::assets::ResolvedAsset;
use crate::error::Result;
use crate::spec::EnvironmentSpec;

/// What a backend's runtimes support. The conformance suite runs only the
/// cases a backend claims.
///
/// `Capabilities::default()` claims nothing but [`shared_workspace`]
/// (see there why), and a field missing from serialised capabilities takes
/// its default.
///
/// [`shared_workspace`]: Capabilities::shared_workspace
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// Commands receive `stdin` bytes.
    pub stdin: bool,
    /// Commands read [`ExecCommand::stdin_stream`] as it arrives: a chunk
    /// reaches the command while it runs, before the input ends, and memory
    /// stays bounded however long the input is. A backend that claims
    /// `stdin` but not this gets streamed input read to its end first.
    pub stdin_streaming: bool,
    /// Output arrives live, before the command ends.
    pub live_streaming: bool,
    /// A signal that killed a command is reported.
    pub signals: bool,
    /// Wall and idle timeouts kill the command's whole process tree.
    pub timeouts: bool,
    /// `output_limit` bounds memory; spilling to a file works.
    pub output_limit: bool,
    /// Several commands may run at once on one runtime.
    pub concurrent_commands: bool,
    /// Resource usage is reported.
    pub usage: bool,
    /// Extra mounts are honoured.
    pub mounts: bool,
    /// Port mappings are honoured.
    pub ports: bool,
    /// Commands can be cut off from the network.
    pub network_isolation: bool,
    /// `limits.memory` is enforced.
    pub memory_limit: bool,
    /// `limits.cpus` is enforced.
    pub cpu_limit: bool,
    /// `limits.pids` is enforced.
    pub pids_limit: bool,
    /// `limits.file_size` is enforced.
    pub file_size_limit: bool,
    /// Commands work in the host's workspace directory itself (or a mount
    /// of it), so a file the host writes there while a command runs is seen
    /// by that command at once. A backend whose commands work on a copy
    /// synchronised before and after each command (the `api` backend) does
    /// not claim it. Unlike every other capability it is claimed by
    /// default: a runtime that runs in the host's workspace has it without
    /// doing anything, and backends written before it existed did.
    pub shared_workspace: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            stdin: false,
            stdin_streaming: false,
            live_streaming: false,
            signals: false,
            timeouts: false,
            output_limit: false,
            concurrent_commands: false,
            usage: false,
            mounts: false,
            ports: false,
            network_isolation: false,
            memory_limit: false,
            cpu_limit: false,
            pids_limit: false,
            file_size_limit: false,
            shared_workspace: true,
        }
    }
}

/// Where a backend came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendOrigin {
    /// Linked into the host; the string names the crate.
    BuiltIn(String),
    /// Loaded from a plugin library at this path.
    Plugin(std::path::PathBuf),
}

impl std::fmt::Display for BackendOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendOrigin::BuiltIn(krate) => write!(f, "built-in ({krate})"),
            BackendOrigin::Plugin(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What a backend says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// The spec `type` it serves.
    pub type_name: String,
    /// Its version.
    pub version: String,
    /// One line on what it is.
    pub description: String,
    /// What its runtimes support.
    pub capabilities: Capabilities,
}

/// A factory of runtimes for one spec `type`.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Name, version, description and capabilities.
    fn info(&self) -> BackendInfo;

    /// The spec `type` this backend serves: [`BackendInfo::type_name`]
    /// without the rest of [`Backend::info`], which may have to look at the
    /// host (a registry asks every backend for its type each time it is
    /// built). A backend whose info costs more than a constant says it here.
    fn type_name(&self) -> String {
        self.info().type_name
    }

    /// Checks the spec's backend block (and anything else backend-specific)
    /// without spawning, so a bad spec fails before any work is done.
    fn validate(&self, spec: &EnvironmentSpec) -> Result<()>;

    /// Creates a runtime for the prepared workspace in `ctx` and runs the
    /// setup commands in it (the rules are in `docs/backend-contract.md`,
    /// "Setup"). A failing setup command is
    /// [`crate::Error::SetupFailed`] unless `setup.allow_failure` is set.
    async fn spawn(&self, spec: &EnvironmentSpec, ctx: SpawnContext) -> Result<Box<dyn Runtime>>;

    /// Says, one line per check, whether what this backend needs works on
    /// this machine (an engine reachable, namespaces usable). `berth doctor`
    /// prints these. The default has nothing to check.
    async fn diagnose(&self) -> Vec<Diagnostic> {
        Vec::new()
    }

    /// Finds what runtimes of this backend left behind when their host died
    /// (containers, networks...), using the labels or markers it gave them:
    /// an owner process that is gone, or a lease that expired. Removes them
    /// unless `dry_run`. `berth gc` calls this on every backend. The default
    /// finds nothing.
    async fn collect_garbage(&self, dry_run: bool) -> Result<Vec<Leftover>> {
        let _ = dry_run;
        Ok(Vec::new())
    }
}

/// One line of `berth doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// What was checked (`docker engine`, `user namespaces`).
    pub check: String,
    /// Whether it works.
    pub ok: bool,
    /// The detail: a version, or why it does not work.
    pub detail: String,
}

/// Something a crashed host left behind, found by garbage collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftover {
    /// What it is (`container`, `session directory`).
    pub kind: String,
    /// Its id or path.
    pub id: String,
    /// Why it counts as left behind (`owner pid 123 is gone`).
    pub reason: String,
    /// Whether it was removed (false on a dry run or a failed removal).
    pub removed: bool,
}

/// What a runtime is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeStatus {
    /// No command is running.
    Idle,
    /// This many commands are running.
    Running(usize),
    /// Cleaned up; it accepts no more commands.
    Closed,
}

/// A sandbox that runs commands in a workspace. Object-safe: sessions hold
/// `Box<dyn Runtime>` whatever the backend.
#[async_trait]
pub trait Runtime: Send + Sync + std::fmt::Debug {
    /// The spec `type` of the backend that made it.
    fn backend_type(&self) -> &str;

    /// What it supports.
    fn capabilities(&self) -> &Capabilities;

    /// Where `asset` appears to commands in this runtime (a host path for a
    /// host process, `/static/<save_path>` in a container, ...).
    fn asset_path(&self, asset: &ResolvedAsset) -> String;

    /// What the setup commands printed at spawn (empty when setup was
    /// disabled or there were none).
    fn setup_output(&self) -> &SetupOutput;

    /// Starts `cmd` and returns its live events. Fails only when the
    /// runtime cannot take a command at all (closed, or busy on a backend
    /// without concurrent commands); a command that cannot start is a
    /// `SpawnFailed` result, not an error.
    async fn stream(&self, cmd: ExecCommand) -> Result<EventStream>;

    /// Runs `cmd` to completion. Built on [`Runtime::stream`], so both read
    /// a process the same way; backends do not override it.
    async fn execute(&self, cmd: ExecCommand) -> Result<ExecResult> {
        Ok(self.stream(cmd).await?.finish().await)
    }

    /// What the runtime is doing now.
    async fn poll(&self) -> RuntimeStatus;

    /// Kills every running command's process tree. Idempotent.
    async fn kill(&self) -> Result<()>;

    /// Kills what runs and releases everything the runtime created
    /// (processes, containers, networks, temporary files). Idempotent, and
    /// also done on drop.
    async fn cleanup(&self) -> Result<()>;
}

/// Runs a runtime's setup commands once, in order, through `execute`,
/// stopping at the first failure (`docs/backend-contract.md`, "Setup"). A
/// failure is
/// [`crate::Error::SetupFailed`] unless `setup.allow_failure`, in which case
/// the remaining commands are skipped and the failure stays visible in the
/// returned output. Each command gets the spec's wall timeout.
///
/// Every backend runs setup through this, so its semantics are the same
/// everywhere.
pub async fn run_setup<F, Fut>(
    commands: &[String],
    spec: &EnvironmentSpec,
    mut execute: F,
) -> Result<SetupOutput>
where
    F: FnMut(ExecCommand) -> Fut,
    Fut: std::future::Future<Output = Result<ExecResult>>,
{
    let mut output = SetupOutput::default();
    for command in commands {
        let mut cmd = ExecCommand::new(command.clone());
        cmd.wall_timeout = spec.limits.wall_timeout;
        let result = execute(cmd).await?;
        let failed = !result.success();
        output.commands.push((command.clone(), result.clone()));
        if failed {
            tracing::warn!(
                command,
                exit_code = result.exit_code,
                "setup command failed"
            );
            if spec.setup.allow_failure {
                break;
            }
            return Err(crate::Error::SetupFailed {
                command: command.clone(),
                exit_code: result.exit_code,
                stdout: result.stdout_lossy().into_owned(),
                stderr: result.stderr_lossy().into_owned(),
            });
        }
    }
    Ok(output)
}

/// A shared handle to a backend.
pub type BackendRef = Arc<dyn Backend>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_workspace_is_claimed_unless_denied() {
        assert!(Capabilities::default().shared_workspace);
        let old: Capabilities = serde_json::from_str(r#"{"stdin": true}"#).unwrap();
        assert!(old.stdin && old.shared_workspace && !old.signals);
        let copy: Capabilities = serde_json::from_str(r#"{"shared_workspace": false}"#).unwrap();
        assert!(!copy.shared_workspace);
    }
}
