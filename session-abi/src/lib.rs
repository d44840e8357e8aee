//! The frozen, versioned FFI boundary between a berth host and a backend built
//! as a `cdylib` plugin.
//!
//! This crate will hold only FFI-safe types: the root module with its ABI
//! version number, the plugin's backend descriptors, the runtime vtable (a few
//! calls taking and returning JSON or bytes), the output-sink and log-sink
//! callbacks and the cancel handle. It is the only crate of berth that depends
//! on `abi_stable`.
