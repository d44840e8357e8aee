//! Row 1: one local `execute("true")` against a bare spawn + wait.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use session_core::runtime::{ExecCommand, Runtime};

use super::{local_runtime, tokio_runtime};
use crate::stats::{Samples, Schedule};
use crate::{Bench, BenchResult, Figure, Target, Value};

/// Times `execute("true")` on a local runtime against `Command::new("/bin/sh")
/// -c true` spawn + wait in the same process, alternating blocks of ten.
///
/// A third side, not part of the verdict, explains the gap: the same
/// command started the way the local backend starts it (a `pre_exec` hook,
/// which makes std `fork` instead of `posix_spawn`'s `vfork`, and piped
/// stdout/stderr read to the end), without tokio.
pub fn run(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let workspace = tempfile::tempdir_in(&bench.dir)?;
    let schedule = Schedule {
        warmup: 30.min(bench.sizes.exec_iterations),
        iterations: bench.sizes.exec_iterations,
        block: 10,
    };
    let rt = tokio_runtime()?;
    let [berth, floor, forked] = rt.block_on(async {
        let runtime = local_runtime(workspace.path()).await?;
        let mut samples: [Vec<Duration>; 3] = Default::default();
        for (side, timed) in schedule.order(3) {
            let took = match side {
                0 => berth_once(runtime.as_ref()).await?,
                1 => floor_once(workspace.path())?,
                _ => forked_once(workspace.path())?,
            };
            if timed {
                samples[side].push(took);
            }
        }
        runtime.cleanup().await?;
        BenchResult::Ok(samples.map(Samples::new))
    })?;
    let figure = Figure::new(
        "local `execute(\"true\")` per call",
        Value::Time(berth.median()),
        Target::RatioAtMost(1.5),
    )
    .floor(Value::Time(floor.median()))
    .detail(format!("berth execute: {}", berth.summary()))
    .detail(format!("floor Command::status: {}", floor.summary()))
    .detail(format!(
        "same spawn as the local backend without tokio (fork via pre_exec, piped stdout/stderr): {}",
        forked.summary()
    ));
    Ok(vec![figure])
}

async fn berth_once(runtime: &dyn Runtime) -> BenchResult<Duration> {
    let start = Instant::now();
    let result = runtime.execute(ExecCommand::new("true")).await?;
    let took = start.elapsed();
    if !result.success() {
        return Err(format!("`true` failed: {result:?}").into());
    }
    Ok(took)
}

fn floor_once(cwd: &Path) -> io::Result<Duration> {
    let start = Instant::now();
    let status = Command::new("/bin/sh")
        .args(["-c", "true"])
        .current_dir(cwd)
        .status()?;
    let took = start.elapsed();
    if !status.success() {
        return Err(io::Error::other(format!("/bin/sh -c true: {status}")));
    }
    Ok(took)
}

fn forked_once(cwd: &Path) -> io::Result<Duration> {
    let start = Instant::now();
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", "true"])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the hook does nothing; it only makes std fork as the local
    // backend's hook does.
    unsafe {
        command.pre_exec(|| Ok(()));
    }
    let mut child = command.spawn()?;
    let mut sink = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut sink)?;
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_end(&mut sink)?;
    }
    let status = child.wait()?;
    let took = start.elapsed();
    if !status.success() {
        return Err(io::Error::other(format!("/bin/sh -c true: {status}")));
    }
    Ok(took)
}
