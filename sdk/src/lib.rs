//! Everything a berth backend needs, in one dependency.
//!
//! A backend is a [`Backend`](runtime::Backend) — a factory registered under
//! a spec `type` — whose [`Runtime`](runtime::Runtime)s run commands. This
//! crate holds the contract they implement, the two ways to hand one to
//! berth, and the kit for sandboxes whose commands are host processes. It
//! is `session-core` without its file formats and compression (no
//! Parquet, SQLite, bzip2, xz or zstd to compile) plus the process layer of
//! the `local` backend.
//!
//! * [`runtime`], [`spec`], [`assets`], [`Error`]: the contract. What each
//!   method must do is written down in the repository's
//!   `docs/backend-contract.md`, and the conformance suite
//!   (`berth plugins test LIB`) checks it.
//! * [`export_backend!`]: makes a `cdylib` a plugin that `berth` loads from
//!   its plugin directory (`plugins/README.md` walks through it).
//! * [`register_backend!`]: links a backend into your own host binary
//!   instead (the registry then finds it with the built-ins).
//! * [`kit`]: a whole runtime generic over how one command is put in a
//!   sandbox — wrap it in a tool (`bwrap … -- sh -c CMD`) or enter
//!   namespaces between fork and exec — with the environment, timeouts,
//!   output limits, stdin, kill, cleanup, cgroup limits and setup commands
//!   done once. [`process`] is the layer under it, and [`cgroup`] and
//!   [`seccomp`] what it builds on.
//!
//! A plugin that wraps each command in a tool, in full:
//!
//! ```
//! use berth_sdk::kit::{HostRuntime, HostSettings, Sandbox, exit_as_signal};
//! use berth_sdk::process::Launch;
//! use berth_sdk::runtime::{Backend, BackendInfo, ExecCommand, ExecResult, Runtime, SpawnContext};
//! use berth_sdk::{EnvironmentSpec, Result, async_trait};
//!
//! /// `type: nice`: every command at a lower CPU priority.
//! #[derive(Debug, Default)]
//! pub struct NiceBackend;
//!
//! #[derive(Debug)]
//! struct Nice;
//!
//! impl Sandbox for Nice {
//!     fn wrap(&self, launch: &mut Launch, _cmd: &ExecCommand) -> std::result::Result<(), String> {
//!         launch.program = launch.program.wrapped_in(["nice", "-n", "10"]);
//!         Ok(())
//!     }
//!
//!     fn finish(&self, result: ExecResult) -> ExecResult {
//!         exit_as_signal(result)
//!     }
//! }
//!
//! #[async_trait]
//! impl Backend for NiceBackend {
//!     fn info(&self) -> BackendInfo {
//!         BackendInfo {
//!             type_name: "nice".into(),
//!             version: "0.1.0".into(),
//!             description: "host processes at nice 10".into(),
//!             capabilities: berth_sdk::kit::host_capabilities(),
//!         }
//!     }
//!
//!     fn validate(&self, spec: &EnvironmentSpec) -> Result<()> {
//!         berth_sdk::kit::cgroup_limits(spec).map(drop)
//!     }
//!
//!     async fn spawn(&self, spec: &EnvironmentSpec, ctx: SpawnContext) -> Result<Box<dyn Runtime>> {
//!         let settings = HostSettings::for_spec("nice", spec)?;
//!         Ok(Box::new(HostRuntime::spawn(Nice, settings, spec, ctx).await?))
//!     }
//! }
//!
//! berth_sdk::export_backend!(NiceBackend);
//! # fn main() {}
//! ```

#![warn(missing_docs)]

pub use async_trait::async_trait;
pub use indexmap;
pub use runtime_local::{cgroup, kit, process, seccomp};
pub use session_core::{
    EnvironmentSpec, Error, Mode, Result, assets, error, export_backend, paths, plugin,
    register_backend, registry, runtime, spec,
};
pub use tokio;
pub use tracing;

/// The walk-through in `plugins/README.md`, whose Rust is compiled as a
/// doctest so that it keeps building against this crate.
#[cfg(doctest)]
#[doc = include_str!("../../plugins/README.md")]
pub struct PluginsReadme;
