//! `cargo xtask bench [--quick] [ROW…]`: builds the benchmark harness in
//! release mode and runs it. Every figure it prints is a ratio against a
//! floor measured in the same run; BENCHMARKS.md states the targets and
//! records the figures.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

use crate::{cargo, exit_code};

/// Builds and runs `berth-bench` with `args` (`--quick`, `--wait-quiet`,
/// `--dir DIR`, row names; `--list` shows the rows, `--help` the options).
pub(crate) fn bench(args: &[String]) -> Result<ExitCode> {
    // The plugin rows load the namespace plugin built beside the harness;
    // the binary rows run the `berth` built there.
    let built = Command::new(cargo())
        .args([
            "build",
            "--release",
            "--quiet",
            "--package",
            "runtime-namespace",
            "--package",
            "berth",
        ])
        .status()
        .context("building the namespace plugin and berth")?;
    if !built.success() {
        return Ok(exit_code(built));
    }
    let status = Command::new(cargo())
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "berth-bench",
            "--",
        ])
        .args(args)
        .status()
        .context("running cargo run --package berth-bench")?;
    Ok(exit_code(status))
}
