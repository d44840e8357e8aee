//! Row 7: the fixed cost of a session on the local backend.

use std::path::Path;
use std::time::{Duration, Instant};

use std::fs::File;
use std::io::Write;

use session_core::assets::ResolvedAssets;
use session_core::compression::Compression;
use session_core::session::{Session, SpawnOptions};
use session_core::spec::{EnvironmentSpec, Mode};
use session_core::workspace::{InitialContent, Workspace, WorkspaceOptions};

use super::{local_spec, tokio_runtime};
use crate::stats::{Samples, Schedule};
use crate::{Bench, BenchResult, Figure, Target, Value};

/// Times `Session::builder(spec).prepare()`, `spawn()` and `close()` of a
/// local session with an empty base, against `tempfile::tempdir()` create +
/// remove in the same directory. Three more sides, outside the verdict,
/// locate the time: the same session with uncompressed snapshots (the
/// default is gz), the synchronous `Workspace::prepare` + `cleanup` the
/// session runs on blocking threads, and the `fdatasync` of a fresh 1 KiB
/// file that a snapshot capture ends with.
pub fn run(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let root = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir_in(&bench.dir)?;
    let schedule = Schedule {
        warmup: 20.min(bench.sizes.session_iterations),
        iterations: bench.sizes.session_iterations,
        block: 10,
    };
    let gz = local_spec();
    let mut plain = local_spec();
    plain.snapshot.compression = Compression::None;
    let rt = tokio_runtime()?;
    let (total, steps, floor, diagnostics) = rt.block_on(async {
        let mut total = Vec::new();
        let mut steps: [Vec<Duration>; 3] = Default::default();
        let mut floor = Vec::new();
        let mut total_plain = Vec::new();
        let mut workspace: [Vec<Duration>; 2] = Default::default();
        let mut sync = Vec::new();
        for (side, timed) in schedule.order(5) {
            match side {
                0 => {
                    let split = session_once(&gz, root.path()).await?;
                    if timed {
                        total.push(split.iter().sum());
                        for (all, one) in steps.iter_mut().zip(split) {
                            all.push(one);
                        }
                    }
                }
                1 => {
                    let start = Instant::now();
                    tempfile::tempdir_in(root.path())?.close()?;
                    if timed {
                        floor.push(start.elapsed());
                    }
                }
                2 => {
                    let split = session_once(&plain, root.path()).await?;
                    if timed {
                        total_plain.push(split.iter().sum());
                    }
                }
                3 => {
                    let split = workspace_once(root.path())?;
                    if timed {
                        for (all, one) in workspace.iter_mut().zip(split) {
                            all.push(one);
                        }
                    }
                }
                _ => {
                    let took = sync_once(root.path())?;
                    if timed {
                        sync.push(took);
                    }
                }
            }
        }
        let [ws_prepare, ws_cleanup] = workspace.map(Samples::new);
        BenchResult::Ok((
            Samples::new(total),
            steps.map(Samples::new),
            Samples::new(floor),
            [
                Samples::new(total_plain),
                ws_prepare,
                ws_cleanup,
                Samples::new(sync),
            ],
        ))
    })?;
    let [total_plain, ws_prepare, ws_cleanup, sync] = diagnostics;
    let leftovers = std::fs::read_dir(root.path())?.count();
    if leftovers != 0 {
        return Err(format!("{leftovers} session directories were left behind").into());
    }
    let [prepare, spawn, close] = steps;
    let absolute = Figure::new(
        "session prepare + spawn + close (local, empty base)",
        Value::Time(total.median()),
        Target::TimeAtMost(Duration::from_micros(500)),
    )
    .floor(Value::Time(floor.median()))
    .detail(format!("berth session: {}", total.summary()))
    .detail(format!("  prepare: {}", prepare.summary()))
    .detail(format!("  spawn:   {}", spawn.summary()))
    .detail(format!("  close:   {}", close.summary()))
    .detail(format!("floor tempdir create+remove: {}", floor.summary()))
    .detail(format!(
        "the same session with `snapshot.compression: none`: {}",
        total_plain.summary()
    ))
    .detail(format!(
        "Workspace::prepare alone (empty base, gz, no async hop): {}",
        ws_prepare.summary()
    ))
    .detail(format!(
        "Workspace::cleanup alone: {}",
        ws_cleanup.summary()
    ))
    .detail(format!(
        "fdatasync of a fresh 1 KiB file in the same directory: {}",
        sync.summary()
    ));
    Ok(vec![absolute])
}

/// Prepares, spawns and closes one session; returns the three times.
pub(crate) async fn session_once(
    spec: &EnvironmentSpec,
    temp_root: &Path,
) -> BenchResult<[Duration; 3]> {
    let start = Instant::now();
    let mut session = Session::builder(spec.clone())
        .temp_root(temp_root)
        .prepare()
        .await?;
    let prepared = Instant::now();
    session.spawn(SpawnOptions::default()).await?;
    let spawned = Instant::now();
    session.close().await?;
    let closed = Instant::now();
    Ok([prepared - start, spawned - prepared, closed - spawned])
}

/// Prepares and cleans up a bare workspace (what the session runs on its
/// blocking threads); returns both times.
fn workspace_once(temp_root: &Path) -> BenchResult<[Duration; 2]> {
    let options = WorkspaceOptions {
        temp_root: Some(temp_root.to_path_buf()),
        ..WorkspaceOptions::default()
    };
    let mut workspace = Workspace::new(
        "berth-bench",
        InitialContent::Empty,
        options,
        Mode::Evaluation,
        ResolvedAssets::default(),
    );
    let start = Instant::now();
    workspace.prepare()?;
    let prepared = Instant::now();
    workspace.cleanup()?;
    Ok([prepared - start, prepared.elapsed()])
}

/// Times the `fdatasync` alone of a new 1 KiB file.
fn sync_once(dir: &Path) -> BenchResult<Duration> {
    let path = dir.join("sync-probe");
    let mut file = File::create(&path)?;
    file.write_all(&[b'x'; 1024])?;
    let start = Instant::now();
    file.sync_data()?;
    let took = start.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(took)
}
