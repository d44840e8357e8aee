//! The `api` backend and the `berth serve` server it talks to.
//!
//! * [`server`] exposes the runtimes of a [`Registry`] over HTTP: remote
//!   sessions created from a spec, runtimes spawned in them, commands run
//!   with live NDJSON events, workspace sync by manifest hash, leases,
//!   idempotent executions, bearer-token auth.
//! * [`client`] is the `api` backend (`type: api`): a runtime whose
//!   commands run on such a server while the session's workspace stays on
//!   this machine. Before each command the local workspace is synced to the
//!   server and afterwards the command's changes come back, moving only
//!   entries whose hash changed, so snapshots, diffs and file contents are
//!   those of a local run.
//! * [`protocol`] is the wire format both share; `PROTOCOL.md` describes it.
//!
//! [`Registry`]: session_core::registry::Registry

#![warn(missing_docs)]

mod body;
pub mod client;
mod error;
pub mod protocol;
pub mod server;
mod sync;
mod token;

pub use self::client::{ApiBackend, ApiClient, ApiConfig};
pub use self::error::Error;
pub use self::token::{MAX_TOKEN_FILE_BYTES, MIN_SERVER_TOKEN_BYTES, Token};

/// The spec `type` the client backend serves.
pub const TYPE_NAME: &str = "api";

session_core::register_backend!(TYPE_NAME, || std::sync::Arc::new(ApiBackend::default()));
