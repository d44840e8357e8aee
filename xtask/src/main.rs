//! berth's development tasks, run as `cargo xtask <task>`.
//!
//! * `test [ARGS…]` — installs what the tests need when it is missing, then
//!   runs the whole workspace's tests with nextest (ARGS go to nextest).
//! * `bench [--quick] [ROW…]` — builds the benchmark harness in release
//!   mode and runs it (SPEC §11; see BENCHMARKS.md).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool reports on its terminal

use std::env;
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
        "bench" => bench::bench(&rest),
        "" | "help" | "--help" | "-h" => {
            println!("usage: cargo xtask test [NEXTEST ARGS…]");
            println!(
                "       cargo xtask bench [--quick] [ROW…]   (rows: cargo xtask bench --list)"
            );
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown task `{other}` (try `cargo xtask help`)"),
    }
}

/// Installs the test prerequisites, then runs nextest over the workspace.
fn test(extra: &[String]) -> Result<ExitCode> {
    ensure_nextest()?;
    let status = Command::new(cargo())
        .args(["nextest", "run", "--workspace", "--no-fail-fast"])
        .args(extra)
        .status()
        .context("running cargo nextest")?;
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

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(code.clamp(1, 255) as u8),
        None => ExitCode::FAILURE,
    }
}
