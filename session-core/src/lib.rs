//! berth's domain: environment specs, static assets and placeholders, file
//! operations, snapshots and diffs, and the workspace a session runs in.
//!
//! Everything here is backend-agnostic: no module knows which backends exist.
//! Blocking file-system work (snapshots, extraction, diffs) is synchronous;
//! the async session layer runs it on blocking threads.

#![warn(missing_docs)]

pub mod assets;
pub mod base64;
pub mod compression;
pub mod diff;
pub mod error;
pub mod file_ops;
pub mod gc;
pub mod glob;
pub mod paths;
pub mod placeholders;
pub mod plugin;
pub mod registry;
pub mod runtime;
mod serde_secs;
pub mod session;
pub mod snapshot;
pub mod spec;
pub mod tree;
pub mod workspace;

pub use error::{Error, ErrorKind, Result};
#[doc(hidden)]
pub use inventory;
pub use spec::{EnvironmentSpec, Mode};
