//! The integration tests of this crate, linked into one binary so a test
//! run builds and links one executable per crate.

mod support;

mod client_hostile_server;
mod conformance;
mod exec_broken_runtime;
mod exec_idempotency;
mod exec_live;
mod exec_lost;
mod exec_terminal;
mod server_bounds;
mod server_load;
mod server_logs;
mod server_security;
mod server_sessions;
mod server_shutdown;
mod session_create;
mod session_lease;
mod soak;
mod sync_equivalence;
mod sync_link_targets;
mod tree_shapes;
