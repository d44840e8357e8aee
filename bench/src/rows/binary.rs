//! Rows that run the `berth` binary itself as a process: `berth diff` of
//! two directories against GNU `diff -r`, and the fixed cost of `berth run
//! -- true` against `sh -c true` and `berth --version`.
//!
//! They run the release `berth` built beside this harness (`cargo xtask
//! bench` builds it), or the binary named by `BERTH_BENCH_BERTH`, so that
//! two builds can be measured by the same harness.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::session::session_once;
use super::{local_spec, tokio_runtime};
use crate::fixtures::{edit_files, tree_files, write_files};
use crate::stats::{Samples, Schedule};
use crate::{Bench, BenchResult, Figure, Target, Value};

/// The environment variable naming another `berth` binary to measure.
pub const BERTH_ENV: &str = "BERTH_BENCH_BERTH";

/// The `berth` binary to measure.
pub(crate) fn berth_binary(bench: &Bench) -> BenchResult<PathBuf> {
    if let Some(path) = std::env::var_os(BERTH_ENV) {
        return Ok(PathBuf::from(path));
    }
    let dir = bench
        .exe
        .parent()
        .ok_or("the benchmark binary has no directory")?;
    let path = dir.join("berth");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build --release -p berth` (cargo xtask bench does), \
             or name a binary in ${BERTH_ENV}",
            path.display()
        )
        .into())
    }
}

/// Runs `program args`, timing it to its exit with its output read, and
/// checks its exit status is one of `ok`.
fn run_timed(program: &Path, args: &[&str], ok: &[i32]) -> BenchResult<(Duration, Output)> {
    let start = Instant::now();
    let out = Command::new(program).args(args).output()?;
    let took = start.elapsed();
    if !out.status.code().is_some_and(|code| ok.contains(&code)) {
        return Err(format!(
            "{} {}: {} {}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok((took, out))
}

/// `berth diff OLD NEW` of two live 10,000-file trees, the second with 1%
/// of its files edited (one line each), against GNU `diff -r OLD NEW` of
/// the same trees, each run as a process with its output read, one run of
/// each side in turn. `diff -ru` (unified output, as berth writes) is
/// timed beside them, outside the verdict.
pub fn diff_dirs(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let berth = berth_binary(bench)?;
    let dir = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir_in(&bench.dir)?;
    let n = bench.sizes.tree_files;
    let mut files = tree_files(n, bench.sizes.file_size, 2);
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    write_files(&old, &files)?;
    write_files(&new, &files)?;
    let changed: Vec<usize> = (0..(n / 100).max(1))
        .map(|i| (i * 100 + 37).min(n - 1))
        .collect();
    edit_files(&new, &mut files, &changed, 4)?;
    let (old_arg, new_arg) = (
        old.to_str().ok_or("bench directory is not UTF-8")?,
        new.to_str().ok_or("bench directory is not UTF-8")?,
    );
    let diff = Path::new("diff");
    let schedule = Schedule {
        warmup: 2.min(bench.sizes.diff_iterations),
        iterations: bench.sizes.diff_iterations,
        block: 1,
    };
    let mut samples: [Vec<Duration>; 3] = Default::default();
    let mut sizes = [0; 3];
    for (side, timed) in schedule.order(3) {
        let (took, out) = match side {
            0 => run_timed(&berth, &["diff", old_arg, new_arg], &[1])?,
            1 => run_timed(diff, &["-r", old_arg, new_arg], &[1])?,
            _ => run_timed(diff, &["-ru", old_arg, new_arg], &[1])?,
        };
        if side == 0 {
            let text = String::from_utf8_lossy(&out.stdout);
            let headers = text.lines().filter(|l| l.starts_with("--- a/")).count();
            if headers != changed.len() {
                return Err(format!(
                    "berth diff showed {headers} changed files, not {}",
                    changed.len()
                )
                .into());
            }
        }
        sizes[side] = out.stdout.len();
        if timed {
            samples[side].push(took);
        }
    }
    let [berth_diff, floor, unified] = samples.map(Samples::new);
    let label = format!(
        "`berth diff DIR DIR`, {} files, {} changed",
        super::tree::count(n),
        changed.len()
    );
    Ok(vec![
        Figure::new(
            label,
            Value::Time(berth_diff.median()),
            Target::RatioAtMost(1.0),
        )
        .floor(Value::Time(floor.median()))
        .detail(format!(
            "berth diff: {} ({} bytes of output)",
            berth_diff.summary(),
            sizes[0]
        ))
        .detail(format!(
            "floor `diff -r`: {} ({} bytes of output)",
            floor.summary(),
            sizes[1]
        ))
        .detail(format!(
            "`diff -ru` (unified, as berth writes): {} ({} bytes of output)",
            unified.summary(),
            sizes[2]
        )),
    ])
}

/// `berth run -- true` (local backend, default spec) as a process, against
/// `sh -c true` as a process. Two more sides give the target: `berth
/// --version` (the binary's start and exit) and the library's own session
/// prepare + spawn + close in this process (row `session`); the target is
/// twice the first plus the second, so what `berth run` may add beyond
/// starting a process and running a session is as much again as starting
/// the binary.
pub fn berth_run(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let berth = berth_binary(bench)?;
    let root = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir_in(&bench.dir)?;
    let iterations = bench.sizes.process_iterations;
    let schedule = Schedule {
        warmup: 10.min(iterations),
        iterations,
        block: 10,
    };
    let spec = local_spec();
    let rt = tokio_runtime()?;
    let sh = Path::new("/bin/sh");
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for (side, timed) in schedule.order(4) {
        let took = match side {
            0 => run_timed(&berth, &["run", "--", "true"], &[0])?.0,
            1 => run_timed(sh, &["-c", "true"], &[0])?.0,
            2 => run_timed(&berth, &["--version"], &[0])?.0,
            _ => rt.block_on(session_once(&spec, root.path()))?.iter().sum(),
        };
        if timed {
            samples[side].push(took);
        }
    }
    let [run, floor, version, session] = samples.map(Samples::new);
    let bound = version.median() * 2 + session.median();
    Ok(vec![
        Figure::new(
            "`berth run -- true` (local) as a process",
            Value::Time(run.median()),
            Target::TimeAtMost(bound),
        )
        .floor(Value::Time(floor.median()))
        .detail(format!("berth run -- true: {}", run.summary()))
        .detail(format!("floor `sh -c true`: {}", floor.summary()))
        .detail(format!("berth --version: {}", version.summary()))
        .detail(format!(
            "session prepare + spawn + close in process (row `session`): {}",
            session.summary()
        ))
        .detail("target: 2 × `berth --version` + the in-process session, medians of this run"),
    ])
}
