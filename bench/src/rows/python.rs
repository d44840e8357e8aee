//! The `python` row: berth's Python module (the release build, installed
//! in a virtualenv by `cargo xtask bench`) against the same calls from
//! Rust and against Python's own `subprocess`, all in this run.
//!
//! The Python sides run in `python/bench/bench.py`, started by this row
//! once per round with the interpreter `BERTH_BENCH_PYTHON` names; the Rust
//! sides run here between those rounds, on a local runtime as the `exec`
//! row makes it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::runtime::{ExecCommand, Runtime};

use super::{local_runtime, tokio_runtime};
use crate::stats::{Samples, fmt_rate};
use crate::{Bench, BenchResult, Figure, Target, Value};

/// The variable naming the Python interpreter that has the module.
pub const PYTHON_ENV: &str = "BERTH_BENCH_PYTHON";

/// The Python side of the row.
fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../python/bench/bench.py")
}

/// Runs the script with `args` and returns the JSON object it prints.
fn run_script(bench: &Bench, python: &str, args: &[String]) -> BenchResult<serde_json::Value> {
    let out = Command::new(python)
        .arg(script())
        .args(args)
        .env("TMPDIR", &bench.dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("bench.py {} failed ({})", args.join(" "), out.status).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn seconds(value: &serde_json::Value) -> BenchResult<Duration> {
    value
        .as_f64()
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("not a number of seconds: {value}").into())
}

fn all_seconds(value: &serde_json::Value) -> BenchResult<Vec<Duration>> {
    value
        .as_array()
        .ok_or("not a list of seconds")?
        .iter()
        .map(seconds)
        .collect()
}

/// One `execute("true")`, which must succeed.
async fn execute(runtime: Arc<dyn Runtime>) -> Result<(), String> {
    let result = runtime
        .execute(ExecCommand::new("true"))
        .await
        .map_err(|err| err.to_string())?;
    if !result.success() {
        return Err(format!("`true` failed: {result:?}"));
    }
    Ok(())
}

/// Times `execute("true")` from Python against the same call from Rust
/// and against `subprocess.run(["/bin/sh", "-c", "true"])`; 1 GiB through
/// the Python stream iterator against a `subprocess.Popen` loop of 64 KiB
/// `os.read`s; and many Python threads running `execute("true")` on one
/// runtime against as many tokio tasks doing the same.
pub fn run(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let python = std::env::var(PYTHON_ENV).map_err(|_| {
        format!("{PYTHON_ENV} names no Python with berth installed (`cargo xtask bench` sets it)")
    })?;
    let sizes = &bench.sizes;
    let rounds = sizes.python_rounds;
    let per_round = (sizes.exec_iterations / rounds).max(1);
    let (threads, calls) = sizes.python_threads;
    let workspace = tempfile::tempdir_in(&bench.dir)?;
    let rt = tokio_runtime()?;
    let runtime: Arc<dyn Runtime> = Arc::from(rt.block_on(local_runtime(workspace.path()))?);

    for _ in 0..per_round.min(30) {
        rt.block_on(execute(Arc::clone(&runtime)))?;
    }
    let (mut rust, mut from_python, mut subprocess) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rust_walls, mut python_walls) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for _ in 0..per_round {
            let start = Instant::now();
            rt.block_on(execute(Arc::clone(&runtime)))?;
            rust.push(start.elapsed());
        }
        let out = run_script(bench, &python, &["exec".into(), per_round.to_string()])?;
        from_python.extend(all_seconds(&out["berth"])?);
        subprocess.extend(all_seconds(&out["subprocess"])?);

        let start = Instant::now();
        rt.block_on(async {
            let tasks: Vec<_> = (0..threads)
                .map(|_| {
                    let runtime = Arc::clone(&runtime);
                    tokio::spawn(async move {
                        for _ in 0..calls {
                            execute(Arc::clone(&runtime)).await?;
                        }
                        Ok::<(), String>(())
                    })
                })
                .collect();
            for task in tasks {
                task.await.map_err(|err| err.to_string())??;
            }
            Ok::<(), String>(())
        })?;
        rust_walls.push(start.elapsed());
        let out = run_script(
            bench,
            &python,
            &["threads".into(), threads.to_string(), calls.to_string()],
        )?;
        python_walls.push(seconds(&out["wall"])?);
    }
    rt.block_on(runtime.cleanup())?;

    let (mut berth_rates, mut popen_rates) = (Vec::new(), Vec::new());
    for round in 0..sizes.stream_rounds {
        let order = if round % 2 == 0 {
            "berth-first"
        } else {
            "popen-first"
        };
        let out = run_script(
            bench,
            &python,
            &[
                "stream".into(),
                sizes.stream_bytes.to_string(),
                order.into(),
            ],
        )?;
        let bytes = sizes.stream_bytes as f64;
        berth_rates.push(bytes / seconds(&out["berth"])?.as_secs_f64());
        popen_rates.push(bytes / seconds(&out["popen"])?.as_secs_f64());
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let list = |rates: &[f64]| {
        rates
            .iter()
            .map(|r| fmt_rate(*r))
            .collect::<Vec<_>>()
            .join(", ")
    };

    let (rust, from_python, subprocess) = (
        Samples::new(rust),
        Samples::new(from_python),
        Samples::new(subprocess),
    );
    let (rust_walls, python_walls) = (Samples::new(rust_walls), Samples::new(python_walls));
    let size = if sizes.stream_bytes >= 1 << 30 {
        format!("{} GiB", sizes.stream_bytes >> 30)
    } else {
        format!("{} MiB", sizes.stream_bytes >> 20)
    };
    Ok(vec![
        Figure::new(
            "Python `execute(\"true\")` vs the same call from Rust",
            Value::Time(from_python.median()),
            Target::RatioAtMost(1.2),
        )
        .floor(Value::Time(rust.median()))
        .detail(format!("from Python: {}", from_python.summary()))
        .detail(format!("from Rust (block_on): {}", rust.summary())),
        Figure::new(
            "Python `execute(\"true\")` vs `subprocess.run`",
            Value::Time(from_python.median()),
            Target::RatioAtMost(1.5),
        )
        .floor(Value::Time(subprocess.median()))
        .detail(format!(
            "subprocess.run([\"/bin/sh\", \"-c\", \"true\"]): {}",
            subprocess.summary()
        )),
        Figure::new(
            format!("Python stream iterator, {size}, vs a Popen 64 KiB read loop"),
            Value::Rate(median(&mut berth_rates)),
            Target::RatioAtLeast(0.8),
        )
        .floor(Value::Rate(median(&mut popen_rates)))
        .detail(format!(
            "berth (output_limit 1 MiB): {}",
            list(&berth_rates)
        ))
        .detail(format!(
            "Popen + os.read(fd, 65536): {}",
            list(&popen_rates)
        )),
        Figure::new(
            format!("{threads} Python threads × {calls} `execute(\"true\")`, wall"),
            Value::Time(python_walls.median()),
            Target::RatioAtMost(1.3),
        )
        .floor(Value::Time(rust_walls.median()))
        .detail(format!("Python threads: {}", python_walls.summary()))
        .detail(format!(
            "{threads} tokio tasks × {calls}: {}",
            rust_walls.summary()
        )),
    ])
}
