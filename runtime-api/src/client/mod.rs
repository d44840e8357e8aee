//! The `api` backend: runtimes whose commands run on a `berth serve`.
//!
//! [`ApiBackend::spawn`](session_core::runtime::Backend::spawn) creates a
//! remote session from the spec's `api.remote` block (merged with the
//! session's own settings, see [`remote_spec`]), uploads the session's
//! assets into it, pushes the local workspace, and spawns a runtime there
//! (setup runs on the server; what it changes comes back). Each command
//! then:
//!
//! 1. scans the local workspace (hashing only files whose status changed)
//!    and pushes the entries that differ from what the server holds —
//!    nothing at all when nothing changed;
//! 2. sends the command with a fresh idempotency key and reads its events
//!    live;
//! 3. applies what the command changed, fetched as one archive of the
//!    changed entries, to the local workspace.
//!
//! A broken connection is retried with the same key, which joins the
//! running command rather than starting it again; when the server cannot
//! be reached any more the result is `Lost`.
//!
//! [`ApiClient`] speaks the protocol request by request, for callers that
//! want it without the runtime contract.

mod backend;
mod http;
mod link;
mod on_drop;
mod runtime;

pub use self::backend::{ApiBackend, ApiConfig, remote_spec};
pub use self::http::{ApiClient, ExecStream};
pub use self::runtime::ApiRuntime;
