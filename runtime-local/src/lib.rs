//! The `local` backend: commands run as host processes.
//!
//! This crate will run each command through `/bin/sh -c` (or `local.shell`)
//! in the session's workspace, in its own process group with a parent-death
//! signal, with live streaming, wall and idle timeouts that kill the whole
//! process tree, bounded output and rlimits. Nothing here isolates the command
//! from the host.
