//! What a session hands a backend when it spawns a runtime.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::assets::ResolvedAssets;
use crate::spec::Mode;

/// A host path made visible inside a runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Host path; a relative path is resolved against the workspace.
    pub source: PathBuf,
    /// Path inside the runtime.
    pub target: PathBuf,
    /// Whether the runtime may only read it.
    #[serde(default)]
    pub read_only: bool,
}

/// A port of the runtime published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address to bind; `None` is loopback.
    #[serde(default)]
    pub host_ip: Option<String>,
    /// Host port; 0 lets the system choose.
    pub host_port: u16,
    /// Port inside the runtime.
    pub container_port: u16,
}

/// Everything a backend needs to spawn a runtime besides the spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpawnContext {
    /// The session's id, for labels and logs.
    pub session_id: String,
    /// The prepared workspace directory on the host.
    pub workspace: PathBuf,
    /// The session's resolved assets.
    pub assets: ResolvedAssets,
    /// Agent or evaluation.
    pub mode: Mode,
    /// Variables for every command of this runtime (above the spec's).
    pub env: IndexMap<String, String>,
    /// Extra mounts.
    pub mounts: Vec<Mount>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// A command run after the spec's setup commands.
    pub extra_setup_command: Option<String>,
    /// Skip setup entirely.
    pub disable_setup: bool,
}

impl SpawnContext {
    /// A context for `workspace` with no extras.
    pub fn new(session_id: impl Into<String>, workspace: impl Into<PathBuf>, mode: Mode) -> Self {
        SpawnContext {
            session_id: session_id.into(),
            workspace: workspace.into(),
            assets: ResolvedAssets::default(),
            mode,
            env: IndexMap::new(),
            mounts: Vec::new(),
            ports: Vec::new(),
            extra_setup_command: None,
            disable_setup: false,
        }
    }

    /// The setup commands to run at spawn: the spec's for this mode, then
    /// the extra one; none when setup is disabled.
    pub fn setup_commands(&self, spec: &crate::spec::EnvironmentSpec) -> Vec<String> {
        if self.disable_setup {
            return Vec::new();
        }
        let mut commands = spec.setup_commands(self.mode);
        commands.extend(self.extra_setup_command.iter().cloned());
        commands
    }
}
