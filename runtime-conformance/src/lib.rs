//! The executable contract every berth backend must pass.
//!
//! This crate will hold the conformance cases (exit codes, signals, stdout and
//! stderr separation, stdin, environment precedence, live streaming, timeouts
//! that kill grandchildren, output limits, kill, cleanup, setup, assets,
//! concurrency) as a library parametrised by a backend factory, gated by the
//! backend's capabilities, with a runner that ends with
//! `N passed, N failed, N skipped`.
