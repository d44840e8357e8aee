//! The `namespace` backend, shipped as a `cdylib` plugin.
//!
//! This crate will run each command in new user, pid, mount, network, ipc and
//! uts namespaces, with the workspace read-write, the host's system
//! directories read-only, private `/tmp` and `/proc`, and no network unless
//! asked, loaded by the host from its plugin directory like any third-party
//! backend.
