//! berth's development tasks, run as `cargo xtask <task>`.
//!
//! * `test [ARGS…]` — installs what the tests need when it is missing, runs
//!   `tidy`, the conformance suite against every plugin in `plugins/`
//!   through the real loader, the doctests (`cargo test --workspace --doc`:
//!   nextest does not run them), then the whole workspace's tests with
//!   nextest (ARGS go to nextest), then checks that the run left no berth
//!   container, temporary directory or process behind (printing only when
//!   it did, so nextest's summary stays the last thing printed on success).
//!   A failure of any step fails the task once every step has run.
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
mod soak;
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
        "test" => test(&rest),
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

/// Installs the test prerequisites, runs tidy, the plugin suites and the
/// doctests, then nextest over the workspace.
fn test(extra: &[String]) -> Result<ExitCode> {
    ensure_nextest()?;
    prereq::ensure_test_prerequisites()?;
    let started = std::time::SystemTime::now();
    let root = workspace_root();
    let untidy = tidy::check(&root)?;
    for violation in &untidy {
        println!("{violation}");
    }
    let mut plugin_failures = Vec::new();
    for dir in plugin::workspace_plugins(&root) {
        println!("xtask: conformance of plugin {}", dir.display());
        let code = plugin::test_plugin(&[dir.display().to_string()])?;
        if code != ExitCode::SUCCESS {
            plugin_failures.push(dir);
        }
    }
    // Before nextest, so that nextest's summary ends the output.
    let doctests = Command::new(cargo())
        .current_dir(&root)
        .args(["test", "--workspace", "--doc", "--no-fail-fast"])
        .status()
        .context("running cargo test --doc")?;
    let status = Command::new(cargo())
        .current_dir(&root)
        .args(["nextest", "run", "--workspace", "--no-fail-fast"])
        .args(extra)
        .status()
        .context("running cargo nextest")?;
    let mut failed = false;
    if !untidy.is_empty() {
        eprintln!(
            "xtask: tidy found {} problem{} (listed at the start)",
            untidy.len(),
            if untidy.len() == 1 { "" } else { "s" }
        );
        failed = true;
    }
    if !plugin_failures.is_empty() {
        eprintln!("xtask: plugin conformance failed for {plugin_failures:?}");
        failed = true;
    }
    if !doctests.success() {
        eprintln!("xtask: doctests failed ({doctests})");
        failed = true;
    }
    // Killed processes may take a moment to be reaped.
    let mut left = leftovers::find(started);
    for _ in 0..20 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        left = leftovers::find(started);
    }
    if !left.is_empty() {
        eprintln!("xtask: the test run left these behind:");
        for item in &left {
            eprintln!("  {item}");
        }
        return Ok(ExitCode::FAILURE);
    }
    if failed {
        return Ok(ExitCode::FAILURE);
    }
    Ok(exit_code(status))
}

fn ensure_nextest() -> Result<()> {
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
