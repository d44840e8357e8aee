//! The `docker` backend: one long-lived container per runtime on a Docker
//! Engine reached through `bollard`.
//!
//! This crate will create the container at spawn (labels, init, workspace and
//! asset mounts, ports, network, user, limits), run each command as an exec
//! with separate stdout and stderr, kill an exec's whole process tree inside
//! the container on timeout, and remove the container on cleanup.
