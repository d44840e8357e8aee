//! `cargo xtask bench [--quick] [ROW…]`: builds the benchmark harness in
//! release mode and runs it (for the `python` row, also the Python module,
//! in release mode into a virtualenv under the target directory). Every
//! figure it prints is a ratio against a floor measured in the same run;
//! BENCHMARKS.md states the targets and records the figures.

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
    let mut harness = Command::new(cargo());
    harness.args([
        "run",
        "--release",
        "--quiet",
        "--package",
        "berth-bench",
        "--",
    ]);
    if wants_python_row(args) {
        // The `python` row runs the release build of the module from a
        // virtualenv of its own.
        let root = crate::workspace_root();
        let venv =
            crate::python::Venv::ensure(&crate::test_run::target_dir(&root)?, "python-bench-venv")?;
        venv.develop(&root, true)?;
        harness.env("BERTH_BENCH_PYTHON", venv.python());
    }
    let status = harness
        .args(args)
        .status()
        .context("running cargo run --package berth-bench")?;
    Ok(exit_code(status))
}

/// Whether the rows `args` select include `python` (no row named means
/// every row).
fn wants_python_row(args: &[String]) -> bool {
    let mut rows = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--list" | "-h" | "--help" => return false,
            "--dir" => {
                args.next();
            }
            flag if flag.starts_with('-') => {}
            row => rows.push(row),
        }
    }
    rows.is_empty() || rows.contains(&"python")
}
