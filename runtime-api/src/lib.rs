//! The `api` backend and the `berth serve` server it talks to.
//!
//! This crate will hold the HTTP protocol (JSON requests, streamed events),
//! the server that exposes its own registry's runtimes with bearer-token auth,
//! idempotency keys and leases, and the client backend that syncs the
//! workspace by manifest hash before and after each command.
