//! `cargo xtask fuzz [--seconds N] [TARGET…]`: runs each cargo-fuzz target
//! in `fuzz/` for a bounded time (default 60 s each; all targets when none
//! is named). Installs cargo-fuzz when it is missing. Not part of CI.
//!
//! cargo-fuzz passes nightly-only flags to rustc; on a stable toolchain the
//! task sets `RUSTC_BOOTSTRAP=1` for the fuzz build only.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const TARGETS: [&str; 4] = [
    "spec_parse",
    "placeholders",
    "archive_extract",
    "server_requests",
];

pub(crate) fn run(args: &[String]) -> Result<ExitCode> {
    let mut seconds = 60u64;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args.next().context("--seconds needs a value")?.parse()?;
            }
            name if TARGETS.contains(&name) => targets.push(name.to_owned()),
            other => bail!("unknown fuzz target or option `{other}` (targets: {TARGETS:?})"),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    ensure_cargo_fuzz()?;
    let root = crate::workspace_root();
    let mut failed = Vec::new();
    for target in &targets {
        println!("xtask: fuzzing {target} for {seconds} s");
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let seeds = root.join("fuzz/seeds").join(target);
        let mut cmd = Command::new(crate::cargo());
        cmd.current_dir(&root)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target])
            .arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.arg("--").arg(format!("-max_total_time={seconds}"));
        let status = cmd.status().context("running cargo fuzz")?;
        if !status.success() {
            failed.push(target.clone());
        }
    }
    if failed.is_empty() {
        println!("xtask: no fuzz target found a failure");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("xtask: failures in {failed:?}; the inputs are under fuzz/artifacts/");
        Ok(ExitCode::FAILURE)
    }
}

fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new(crate::cargo())
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if present {
        return Ok(());
    }
    println!("xtask: cargo-fuzz is missing; installing it from crates.io");
    let status = Command::new(crate::cargo())
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("installing cargo-fuzz failed ({status})");
    }
    Ok(())
}
