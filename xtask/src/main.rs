//! berth's development tasks, run as `cargo xtask <task>`.
//!
//! * `test [ARGS…]` — installs what the tests need when it is missing,
//!   builds the docker tests' image, checks that namespaces can be made,
//!   runs `tidy`, the conformance suite against every plugin in `plugins/`
//!   through the real loader, the doctests (`cargo test --workspace --doc`:
//!   nextest does not run them), the Python module's pytest suite (in a
//!   virtualenv under the target directory), then the whole workspace's tests with
//!   nextest (ARGS go to nextest), all with a temporary root of the run's
//!   own; then checks that the run left no berth container, temporary
//!   directory or process behind, reports the tests that skipped
//!   themselves and why and `xtask: N passed, N failed, N skipped`, and
//!   ends with nextest's own summary, printed again. Each step is announced before it starts; a failure of any
//!   step fails the task once every step has run (see `test_run`).
//! * `tidy` — checks the invariants ARCHITECTURE.md states about the
//!   repository (the crate graph, the SDK's dependencies, module docs,
//!   `SAFETY:` comments, citations), one `path:line: what` per violation.
//! * `test-plugin <crate dir | library> [--json]` — builds a plugin (if
//!   given a crate) and the `berth` binary, then runs `berth plugins test`
//!   on the library (the real loader, the whole conformance suite; ends with
//!   `N passed, N failed, N skipped`) and passes its exit code through.
//! * `soak [--sessions N] [--concurrency N] [--type TYPE]` — many
//!   concurrent sessions mixing quick commands, timeouts, large outputs and
//!   kills; prints sessions/s, exec latency and peak RSS, and fails on a lost
//!   byte or a leftover.
//! * `fuzz [--seconds N] [TARGET…]` — runs the cargo-fuzz targets in `fuzz/`
//!   for a bounded time each (not part of CI).
//! * `bench [--quick] [ROW…]` — builds the benchmark harness (and the
//!   namespace plugin) in release mode and runs it (BENCHMARKS.md has the
//!   targets and the figures).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool reports on its terminal

mod fuzz;
mod leftovers;
mod plugin;
mod prereq;
mod python;
mod soak;
mod test_run;
mod tidy;

use std::env;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod bench;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let mut args = env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "test" => test_run::test(&rest),
        "tidy" => tidy::run(&rest),
        "test-plugin" => plugin::test_plugin(&rest),
        "soak" => soak::run(&rest),
        "fuzz" => fuzz::run(&rest),
        "bench" => bench::bench(&rest),
        "" | "help" | "--help" | "-h" => {
            println!("usage: cargo xtask test [NEXTEST ARGS…]");
            println!("       cargo xtask tidy");
            println!("       cargo xtask test-plugin <crate dir | path to .so> [--json]");
            println!("       cargo xtask bench [--quick] [--wait-quiet] [ROW…]   (rows: --list)");
            println!("       cargo xtask soak [--sessions N] [--concurrency N] [--type TYPE]");
            println!("       cargo xtask fuzz [--seconds N] [TARGET…]");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown task `{other}` (try `cargo xtask help`)"),
    }
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

pub(crate) fn ensure_nextest() -> Result<()> {
    let present = Command::new(cargo())
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: cargo-nextest is missing; installing it from crates.io");
    let status = Command::new(cargo())
        .args(["install", "cargo-nextest", "--locked"])
        .status()
        .context("running cargo install cargo-nextest")?;
    if !status.success() {
        bail!("installing cargo-nextest failed ({status})");
    }
    Ok(())
}

pub(crate) fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(code.clamp(1, 255) as u8),
        None => ExitCode::FAILURE,
    }
}
