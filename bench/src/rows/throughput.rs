//! Sessions per second under concurrency: whole sessions (prepare, spawn,
//! one `python3 -c pass`, close) on the local backend and in the namespace
//! sandbox, against the same command started as bare processes, at the
//! same concurrency.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use session_core::registry::Registry;
use session_core::runtime::ExecCommand;
use session_core::session::{Session, SpawnOptions};
use session_core::spec::EnvironmentSpec;

use super::backends::namespace_library;
use super::tokio_runtime;
use crate::stats::sig3;
use crate::{Bench, BenchResult, Figure, Target, Value};

/// The concurrencies measured.
pub const CONCURRENCY: [usize; 3] = [1, 8, 32];

/// The interpreter: the system's own `python3` when there is one (a
/// version manager's shim on `PATH` would measure the shim), else
/// whichever `python3` is on `PATH`.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// What one side runs `total` times, `concurrency` at a time.
#[derive(Clone, Copy)]
enum Side {
    /// The command as a bare process (`tokio::process::Command`).
    Bare,
    /// A whole session of this spec's backend.
    Session(usize),
}

/// Runs `total` units of `side`, `concurrency` at a time; returns the
/// wall time of the whole batch.
async fn batch(
    side: Side,
    concurrency: usize,
    total: usize,
    setup: &Arc<Setup>,
) -> BenchResult<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let next = Arc::clone(&next);
        let setup = Arc::clone(setup);
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                match side {
                    Side::Bare => bare_once().await?,
                    Side::Session(spec) => session_once(&setup, spec).await?,
                }
            }
            BenchResult::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(start.elapsed())
}

async fn bare_once() -> BenchResult<()> {
    let status = tokio::process::Command::new(python())
        .args(["-c", "pass"])
        .status()
        .await?;
    if !status.success() {
        return Err(format!("{} -c pass: {status}", python()).into());
    }
    Ok(())
}

/// What the sessions need: the registry (built-ins plus the namespace
/// plugin), the specs and where sessions go.
struct Setup {
    registry: Arc<Registry>,
    specs: Vec<EnvironmentSpec>,
    temp_root: std::path::PathBuf,
}

async fn session_once(setup: &Setup, spec: usize) -> BenchResult<()> {
    let mut session = Session::builder(setup.specs[spec].clone())
        .registry(Arc::clone(&setup.registry))
        .temp_root(&setup.temp_root)
        .prepare()
        .await?;
    let outcome = async {
        let runtime = session.spawn(SpawnOptions::default()).await?;
        let result = runtime
            .execute(ExecCommand::new(format!("{} -c pass", python())))
            .await?;
        if !result.success() {
            return Err(format!("python3 -c pass failed: {result:?}").into());
        }
        BenchResult::Ok(())
    }
    .await;
    session.close().await?;
    outcome
}

/// Sessions per second at each concurrency of [`CONCURRENCY`], local and
/// namespace (the release-built plugin, loaded in this process), against
/// bare processes at the same concurrency. Each round runs the floor and
/// both backends once at every concurrency, `sessions_per_batch` units
/// each; the figure is the median rate over the rounds.
pub fn run(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let library = namespace_library(bench)?;
    let mut registry = Registry::with_builtins()?;
    session_core::plugin::load_library(&library, &mut registry)?;
    let root = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir_in(&bench.dir)?;
    let setup = Arc::new(Setup {
        registry: registry.shared(),
        specs: vec![
            EnvironmentSpec::new(runtime_local::TYPE_NAME, "berth-bench"),
            EnvironmentSpec::new("namespace", "berth-bench"),
        ],
        temp_root: root.path().to_path_buf(),
    });
    let total = bench.sizes.throughput_sessions;
    let rounds = bench.sizes.throughput_rounds;
    let rt = tokio_runtime()?;
    // rates[concurrency][side]: sides are bare, local, namespace.
    let mut rates: Vec<[Vec<f64>; 3]> = CONCURRENCY.iter().map(|_| Default::default()).collect();
    rt.block_on(async {
        // Warm-up: the interpreter's files in the page cache, the
        // plugin's runtime started.
        for side in [Side::Bare, Side::Session(0), Side::Session(1)] {
            batch(side, 2, 4.min(total), &setup).await?;
        }
        for round in 0..rounds {
            for (c, &concurrency) in CONCURRENCY.iter().enumerate() {
                // The sides take turns leading, so drift falls on all.
                for k in 0..3 {
                    let index = (k + round) % 3;
                    let side = match index {
                        0 => Side::Bare,
                        n => Side::Session(n - 1),
                    };
                    let took = batch(side, concurrency, total, &setup).await?;
                    rates[c][index].push(total as f64 / took.as_secs_f64());
                }
            }
        }
        BenchResult::Ok(())
    })?;
    let leftovers = std::fs::read_dir(root.path())?.count();
    if leftovers != 0 {
        return Err(format!("{leftovers} session directories were left behind").into());
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let spread = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.iter().map(|r| sig3(*r)).collect::<Vec<_>>().join(", ")
    };
    let mut figures = Vec::new();
    for (backend, side) in [("local", 1), ("namespace (plugin, release)", 2)] {
        for (c, &concurrency) in CONCURRENCY.iter().enumerate() {
            let [bare, ..] = &rates[c];
            let mine = &rates[c][side];
            figures.push(
                Figure::new(
                    format!(
                        "sessions/s, {backend}, concurrency {concurrency} (prepare, spawn, `python3 -c pass`, close)"
                    ),
                    Value::PerSecond(median(mine)),
                    Target::RatioAtLeast(0.8),
                )
                .floor(Value::PerSecond(median(bare)))
                .detail(format!(
                    "berth sessions/s per round: {} ({total} sessions per batch)",
                    spread(mine)
                ))
                .detail(format!(
                    "floor: bare `{} -c pass` processes/s per round: {}",
                    python(),
                    spread(bare)
                )),
            );
        }
    }
    Ok(figures)
}
