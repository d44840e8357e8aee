//! Rows for the plugin boundary and the other backends: plugin load time
//! and per-call FFI overhead, the api backend over loopback, the namespace
//! sandbox, and Docker.
//!
//! Rows that need a release build of the namespace plugin find it beside
//! the benchmark binary (`cargo xtask bench` builds it); Docker rows need
//! an engine and build the small busybox test image when it is missing.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime_local::LocalBackend;
use session_core::Mode;
use session_core::registry::Registry;
use session_core::runtime::{Backend, BackendOrigin, ExecCommand, Runtime, SpawnContext};
use session_core::session::{Session, SpawnOptions};
use session_core::spec::EnvironmentSpec;

use super::{local_runtime, local_spec, tokio_runtime};
use crate::stats::{Samples, Schedule};
use crate::{Bench, BenchResult, Figure, Target, Value};

/// The namespace plugin built in release mode beside this binary.
pub(crate) fn namespace_library(bench: &Bench) -> BenchResult<PathBuf> {
    let dir = bench
        .exe
        .parent()
        .ok_or("the benchmark binary has no directory")?;
    let path = dir.join("libruntime_namespace.so");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build --release -p runtime-namespace` (cargo xtask bench does)",
            path.display()
        )
        .into())
    }
}

fn schedule(iterations: usize) -> Schedule {
    Schedule {
        warmup: (iterations / 10).max(2),
        iterations,
        block: 10.min(iterations.max(1)),
    }
}

async fn exec_true(runtime: &dyn Runtime) -> BenchResult<Duration> {
    let start = Instant::now();
    let result = runtime.execute(ExecCommand::new("true")).await?;
    let took = start.elapsed();
    if !result.success() {
        return Err(format!("`true` failed: {result:?}").into());
    }
    Ok(took)
}

/// Loading a plugin library: `load_library` of fresh copies of the
/// namespace plugin (each copy is a new `dlopen`, layout check and `init`).
pub fn plugin_load(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let library = namespace_library(bench)?;
    let dir = tempfile::tempdir_in(&bench.dir)?;
    let copies = 10.min(bench.sizes.exec_iterations.max(2));
    let mut times = Vec::new();
    for i in 0..copies {
        let path = dir.path().join(format!("libcopy{i}.so"));
        std::fs::copy(&library, &path)?;
        let mut registry = Registry::empty();
        let start = Instant::now();
        session_core::plugin::load_library(&path, &mut registry)?;
        times.push(start.elapsed());
    }
    let samples = Samples::new(times);
    Ok(vec![
        Figure::new(
            "plugin load (dlopen + layout check + init)",
            Value::Time(samples.median()),
            Target::TimeAtMost(Duration::from_millis(5)),
        )
        .detail(format!(
            "{} copies of {}: {}",
            copies,
            library.display(),
            samples.summary()
        )),
    ])
}

/// Per-call overhead of the plugin boundary: the local backend served
/// through the FFI shims and adapter (in process) against the same backend
/// called directly, interleaved.
pub fn ffi(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let workspace = tempfile::tempdir_in(&bench.dir)?;
    let rt = tokio_runtime()?;
    let [through, direct] = rt.block_on(async {
        let direct = local_runtime(workspace.path()).await?;
        let backend = session_core::plugin::in_process::<LocalBackend>()?;
        let ctx = SpawnContext::new("berth-bench", workspace.path(), Mode::Evaluation);
        let through = backend.spawn(&local_spec(), ctx).await?;
        let mut samples: [Vec<Duration>; 2] = Default::default();
        for (side, timed) in schedule(bench.sizes.exec_iterations).order(2) {
            let took = if side == 0 {
                exec_true(through.as_ref()).await?
            } else {
                exec_true(direct.as_ref()).await?
            };
            if timed {
                samples[side].push(took);
            }
        }
        through.cleanup().await?;
        direct.cleanup().await?;
        BenchResult::Ok(samples.map(Samples::new))
    })?;
    Ok(vec![
        Figure::new(
            "local `execute(\"true\")` through the plugin boundary",
            Value::Time(through.median()),
            Target::RatioAtMost(1.05),
        )
        .floor(Value::Time(direct.median()))
        .detail(format!("through the FFI adapter: {}", through.summary()))
        .detail(format!("direct: {}", direct.summary())),
    ])
}

/// `execute("true")` through the api backend to a server on loopback whose
/// remote is `local`, against a local runtime, interleaved.
pub fn api(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let temp = tempfile::tempdir_in(&bench.dir)?;
    let rt = tokio_runtime()?;
    let [remote, local] = rt.block_on(async {
        let token = "berth-bench-token";
        let mut served = Registry::empty();
        served.register(Arc::new(LocalBackend), BackendOrigin::BuiltIn("runtime_local".into()))?;
        let config = runtime_api::server::ServeConfig::new(runtime_api::Token::new(token)?, served.shared())
            .listen("127.0.0.1:0".parse()?)
            .work_root(temp.path().join("server"));
        let server = runtime_api::server::bind(config).await?;
        let url = format!("http://{}", server.local_addr());
        let serving = tokio::spawn(server.run());
        let mut client = Registry::empty();
        client.register(
            Arc::new(runtime_api::ApiBackend::with_token(runtime_api::Token::new(token)?)),
            BackendOrigin::BuiltIn("runtime_api".into()),
        )?;
        let spec = EnvironmentSpec::from_yaml_str(
            &format!("type: api\nname: bench\napi:\n  url: {url}\n  remote: {{type: local, name: bench}}\n"),
            "<bench>",
        )?;
        let mut session = Session::builder(spec)
            .registry(client.shared())
            .temp_root(temp.path().join("client"))
            .prepare()
            .await?;
        let remote = session.spawn(SpawnOptions::default()).await?;
        let local_ws = tempfile::tempdir_in(temp.path())?;
        let local = local_runtime(local_ws.path()).await?;
        let mut samples: [Vec<Duration>; 2] = Default::default();
        for (side, timed) in schedule(bench.sizes.exec_iterations).order(2) {
            let took = if side == 0 {
                exec_true(remote.as_ref()).await?
            } else {
                exec_true(local.as_ref()).await?
            };
            if timed {
                samples[side].push(took);
            }
        }
        local.cleanup().await?;
        drop(remote);
        session.close().await?;
        serving.abort();
        BenchResult::Ok(samples.map(Samples::new))
    })?;
    Ok(vec![
        Figure::new(
            "api backend `execute(\"true\")` over loopback",
            Value::Time(remote.median()),
            Target::OverFloorAtMost(Duration::from_millis(2)),
        )
        .floor(Value::Time(local.median()))
        .detail(format!(
            "api → local on 127.0.0.1 (empty workspace): {}",
            remote.summary()
        ))
        .detail(format!("local: {}", local.summary())),
    ])
}

/// Spawn plus the first `execute("true")` in the namespace sandbox (loaded
/// from its release-built plugin library), against the same in the local
/// backend; and the same sandbox with pids, memory and cpus limits (a
/// cgroup per command) against it without. All three interleaved.
pub fn namespace(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let library = namespace_library(bench)?;
    let mut registry = Registry::empty();
    session_core::plugin::load_library(&library, &mut registry)?;
    let sandbox = Arc::clone(registry.get("namespace")?);
    let limited_spec = EnvironmentSpec::from_yaml_str(
        "{type: namespace, name: berth-bench, limits: {pids: 256, memory: 536870912, cpus: 1}}",
        "<bench>",
    )?;
    let rt = tokio_runtime()?;
    let iterations = (bench.sizes.exec_iterations / 3).max(3);
    let [namespaced, local, limited] = rt.block_on(async {
        let mut samples: [Vec<Duration>; 3] = Default::default();
        for (side, timed) in schedule(iterations).order(3) {
            let workspace = tempfile::tempdir_in(&bench.dir)?;
            let ctx = SpawnContext::new("berth-bench", workspace.path(), Mode::Evaluation);
            let start = Instant::now();
            let runtime = match side {
                0 => {
                    sandbox
                        .spawn(&EnvironmentSpec::new("namespace", "berth-bench"), ctx)
                        .await?
                }
                1 => LocalBackend.spawn(&local_spec(), ctx).await?,
                _ => sandbox.spawn(&limited_spec, ctx).await?,
            };
            exec_true(runtime.as_ref()).await?;
            let took = start.elapsed();
            runtime.cleanup().await?;
            if timed {
                samples[side].push(took);
            }
        }
        BenchResult::Ok(samples.map(Samples::new))
    })?;
    Ok(vec![
        Figure::new(
            "namespace sandbox: spawn + first `true`",
            Value::Time(namespaced.median()),
            Target::TimeAtMost(Duration::from_millis(10)),
        )
        .floor(Value::Time(local.median()))
        .detail(format!(
            "namespace (plugin, release): {}",
            namespaced.summary()
        ))
        .detail(format!("local spawn + first `true`: {}", local.summary())),
        Figure::new(
            "namespace sandbox with cgroup limits: spawn + first `true`",
            Value::Time(limited.median()),
            Target::TimeAtMost(Duration::from_millis(10)),
        )
        .floor(Value::Time(namespaced.median()))
        .detail(format!(
            "limits {{pids: 256, memory: 512 MiB, cpus: 1}}: {}",
            limited.summary()
        ))
        .detail(format!(
            "the same sandbox without limits: {}",
            namespaced.summary()
        )),
    ])
}

fn docker_cli(args: &[&str]) -> BenchResult<String> {
    let out = Command::new("docker").args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn docker_spec() -> BenchResult<EnvironmentSpec> {
    Ok(EnvironmentSpec::from_yaml_str(
        &format!(
            "type: docker\nname: bench\ndocker: {{image: '{}'}}\n",
            runtime_docker::test_image::IMAGE
        ),
        "<bench>",
    )?)
}

/// Runs a raw Engine API exec of `true` (create, start detached, inspect
/// until it has an exit code) on container `id`.
async fn raw_exec(docker: &bollard::Docker, id: &str) -> BenchResult<Duration> {
    use bollard::exec::StartExecOptions;
    use bollard::models::ExecConfig;
    let start = Instant::now();
    let exec = docker
        .create_exec(
            id,
            ExecConfig {
                cmd: Some(vec!["true".to_owned()]),
                ..ExecConfig::default()
            },
        )
        .await?;
    docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                detach: true,
                ..StartExecOptions::default()
            }),
        )
        .await?;
    loop {
        let inspect = docker.inspect_exec(&exec.id).await?;
        if inspect.running != Some(true) && inspect.exit_code.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(start.elapsed())
}

/// Docker exec of `true` on a running container: berth's runtime against
/// a raw Engine API exec and the `docker exec` CLI, interleaved.
pub fn docker_exec(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let rt = tokio_runtime()?;
    let workspace = tempfile::tempdir_in(&bench.dir)?;
    let iterations = (bench.sizes.exec_iterations / 3).max(3);
    let [berth, raw, cli] = rt.block_on(async {
        let docker = runtime_docker::test_image::connect().await?;
        runtime_docker::test_image::ensure(&docker).await?;
        let ctx = SpawnContext::new("berth-bench", workspace.path(), Mode::Evaluation);
        let runtime = runtime_docker::DockerBackend::new()
            .spawn(&docker_spec()?, ctx)
            .await?;
        let other = docker_cli(&[
            "run",
            "-d",
            "--rm",
            runtime_docker::test_image::IMAGE,
            "sleep",
            "3600",
        ])?;
        let mut samples: [Vec<Duration>; 3] = Default::default();
        let result: BenchResult<()> = async {
            for (side, timed) in schedule(iterations).order(3) {
                let took = match side {
                    0 => exec_true(runtime.as_ref()).await?,
                    1 => raw_exec(&docker, &other).await?,
                    _ => {
                        let start = Instant::now();
                        docker_cli(&["exec", &other, "true"])?;
                        start.elapsed()
                    }
                };
                if timed {
                    samples[side].push(took);
                }
            }
            Ok(())
        }
        .await;
        let _ = docker_cli(&["rm", "-f", &other]);
        runtime.cleanup().await?;
        result?;
        BenchResult::Ok(samples.map(Samples::new))
    })?;
    Ok(vec![
        Figure::new(
            "docker exec of `true` on a running container",
            Value::Time(berth.median()),
            Target::RatioAtMost(1.1),
        )
        .floor(Value::Time(raw.median()))
        .detail(format!("berth: {}", berth.summary()))
        .detail(format!(
            "raw Engine API create+start+inspect: {}",
            raw.summary()
        ))
        .detail(format!(
            "`docker exec` CLI: {} (berth ÷ CLI = {:.2})",
            cli.summary(),
            berth.median().as_secs_f64() / cli.median().as_secs_f64()
        )),
    ])
}

/// Docker spawn (a container created and started, ready for commands) plus
/// cleanup, against `docker run --rm IMAGE true` through the CLI.
pub fn docker_spawn(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let rt = tokio_runtime()?;
    let iterations = (bench.sizes.exec_iterations / 30).max(3);
    let [berth, cli] = rt.block_on(async {
        let docker = runtime_docker::test_image::connect().await?;
        runtime_docker::test_image::ensure(&docker).await?;
        let backend = runtime_docker::DockerBackend::new();
        let mut samples: [Vec<Duration>; 2] = Default::default();
        for (side, timed) in schedule(iterations).order(2) {
            let took = if side == 0 {
                let workspace = tempfile::tempdir_in(&bench.dir)?;
                let ctx = SpawnContext::new("berth-bench", workspace.path(), Mode::Evaluation);
                let start = Instant::now();
                let runtime = backend.spawn(&docker_spec()?, ctx).await?;
                runtime.cleanup().await?;
                start.elapsed()
            } else {
                let start = Instant::now();
                docker_cli(&["run", "--rm", runtime_docker::test_image::IMAGE, "true"])?;
                start.elapsed()
            };
            if timed {
                samples[side].push(took);
            }
        }
        BenchResult::Ok(samples.map(Samples::new))
    })?;
    Ok(vec![
        Figure::new(
            "docker spawn + cleanup",
            Value::Time(berth.median()),
            Target::RatioAtMost(1.0),
        )
        .floor(Value::Time(cli.median()))
        .detail(format!("berth spawn + cleanup: {}", berth.summary()))
        .detail(format!("`docker run --rm IMAGE true`: {}", cli.summary())),
    ])
}

fn docker_registry() -> BenchResult<Arc<Registry>> {
    let mut registry = Registry::empty();
    registry.register(
        Arc::new(runtime_docker::DockerBackend::new()),
        BackendOrigin::BuiltIn("runtime_docker".into()),
    )?;
    Ok(registry.shared())
}

/// The berth containers (running or not) this process created.
async fn berth_containers_of_this_process(docker: &bollard::Docker) -> BenchResult<Vec<String>> {
    use bollard::query_parameters::ListContainersOptions;
    let options = ListContainersOptions {
        all: true,
        filters: Some(std::collections::HashMap::from([(
            "label".to_owned(),
            vec![format!(
                "{}={}",
                runtime_docker::LABEL_OWNER_PID,
                std::process::id()
            )],
        )])),
        ..ListContainersOptions::default()
    };
    Ok(docker
        .list_containers(Some(options))
        .await?
        .into_iter()
        .filter_map(|c| c.id)
        .collect())
}

/// A whole docker session as `berth run --env docker.yaml -- true` drives
/// it (prepare, spawn, the first command's output, close), against
/// `docker run --rm IMAGE true` through the CLI, interleaved. The detail
/// lines split berth's time into its steps. The engine removes berth's
/// container after the close returns; the harness waits for that (untimed)
/// before the next measurement, as the CLI does within its own.
pub fn docker_session(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let rt = tokio_runtime()?;
    let iterations = (bench.sizes.exec_iterations / 30).max(3);
    let [berth, cli, spawn, first, close] = rt.block_on(async {
        let docker = runtime_docker::test_image::connect().await?;
        runtime_docker::test_image::ensure(&docker).await?;
        let registry = docker_registry()?;
        let root = tempfile::tempdir_in(&bench.dir)?;
        let mut samples: [Vec<Duration>; 5] = Default::default();
        for (side, timed) in schedule(iterations).order(2) {
            if side == 0 {
                let start = Instant::now();
                let mut session = Session::builder(docker_spec()?)
                    .registry(Arc::clone(&registry))
                    .temp_root(root.path())
                    .prepare()
                    .await?;
                let runtime = session.spawn(SpawnOptions::default()).await?;
                let spawned = Instant::now();
                let result = runtime.execute(ExecCommand::new("true")).await?;
                if !result.success() {
                    return Err(format!("`true` failed: {result:?}").into());
                }
                let ran = Instant::now();
                drop(runtime);
                session.close().await?;
                let closed = Instant::now();
                // The engine removes the container on its own time (berth
                // does not wait for it): let that finish, untimed, so that
                // it competes with no later measurement of either side.
                while !berth_containers_of_this_process(&docker).await?.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if timed {
                    samples[0].push(closed - start);
                    samples[2].push(spawned - start);
                    samples[3].push(ran - spawned);
                    samples[4].push(closed - ran);
                }
            } else {
                let start = Instant::now();
                docker_cli(&["run", "--rm", runtime_docker::test_image::IMAGE, "true"])?;
                if timed {
                    samples[1].push(start.elapsed());
                }
            }
        }
        BenchResult::Ok(samples.map(Samples::new))
    })?;
    Ok(vec![
        Figure::new(
            "docker session: spawn + first `true` + close",
            Value::Time(berth.median()),
            Target::RatioAtMost(1.0),
        )
        .floor(Value::Time(cli.median()))
        .detail(format!(
            "berth prepare + spawn + `true` + close: {}",
            berth.summary()
        ))
        .detail(format!("`docker run --rm IMAGE true`: {}", cli.summary()))
        .detail(format!("  of which prepare + spawn: {}", spawn.summary()))
        .detail(format!("  of which the first `true`: {}", first.summary()))
        .detail(format!("  of which close: {}", close.summary())),
    ])
}

/// Spawn plus the first `true` of a docker session whose spec keeps a warm
/// pool (`docker.pool`), in a process that keeps pools, against a raw
/// Engine API exec of `true` on a running container of the same image,
/// interleaved. Each measurement of either side starts with the pool full:
/// the harness waits for the refill (outside the timing), and the
/// runtime's cleanup is not timed either.
pub fn docker_pool(bench: &Bench) -> BenchResult<Vec<Figure>> {
    let rt = tokio_runtime()?;
    let iterations = (bench.sizes.exec_iterations / 10).max(3);
    let [berth, raw, take] = rt.block_on(async {
        let docker = runtime_docker::test_image::connect().await?;
        runtime_docker::test_image::ensure(&docker).await?;
        runtime_docker::keep_warm_pools(true);
        let spec = EnvironmentSpec::from_yaml_str(
            &format!(
                "type: docker\nname: bench\ndocker: {{image: '{}', pool: {{size: 2}}}}\n",
                runtime_docker::test_image::IMAGE
            ),
            "<bench>",
        )?;
        let backend = runtime_docker::DockerBackend::new();
        let other = docker_cli(&[
            "run",
            "-d",
            "--rm",
            runtime_docker::test_image::IMAGE,
            "sleep",
            "3600",
        ])?;
        let root = tempfile::tempdir_in(&bench.dir)?;
        let mut samples: [Vec<Duration>; 2] = Default::default();
        let mut takes = Vec::new();
        let result: BenchResult<()> = async {
            // The first spawn starts the pool.
            let workspace = tempfile::tempdir_in(root.path())?;
            let ctx = SpawnContext::new("berth-bench", workspace.path(), Mode::Evaluation);
            backend.spawn(&spec, ctx).await?.cleanup().await?;
            for (side, timed) in schedule(iterations).order(2) {
                // Both sides start with the pool full and its refills done,
                // so that no container start competes with either.
                if !runtime_docker::wait_for_warm_pools(Duration::from_secs(60)).await {
                    return Err("the warm pool did not fill within 60 s".into());
                }
                let took = if side == 0 {
                    let workspace = tempfile::tempdir_in(root.path())?;
                    let ctx = SpawnContext::new("berth-bench", workspace.path(), Mode::Evaluation);
                    let start = Instant::now();
                    let runtime = backend.spawn(&spec, ctx).await?;
                    let spawned = start.elapsed();
                    let result = runtime.execute(ExecCommand::new("true")).await?;
                    let took = start.elapsed();
                    let id = format!("{runtime:?}");
                    runtime.cleanup().await?;
                    if !result.success() {
                        return Err(format!("`true` failed: {result:?}").into());
                    }
                    // The engine removes the container on its own time:
                    // let that finish, so it competes with no measurement.
                    if let Some(id) = id.split('"').nth(1) {
                        while docker.inspect_container(id, None).await.is_ok() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    if timed {
                        takes.push(spawned);
                    }
                    took
                } else {
                    raw_exec(&docker, &other).await?
                };
                if timed {
                    samples[side].push(took);
                }
            }
            Ok(())
        }
        .await;
        runtime_docker::drain_warm_pools().await;
        runtime_docker::keep_warm_pools(false);
        let _ = docker_cli(&["rm", "-f", &other]);
        result?;
        let [berth, raw] = samples.map(Samples::new);
        BenchResult::Ok([berth, raw, Samples::new(takes)])
    })?;
    Ok(vec![
        Figure::new(
            "docker spawn + first `true` from a warm pool",
            Value::Time(berth.median()),
            Target::RatioAtMost(1.2),
        )
        .floor(Value::Time(raw.median()))
        .detail(format!(
            "berth (pool of 2, full at each spawn): {}",
            berth.summary()
        ))
        .detail(format!(
            "  of which the spawn (the take): {}",
            take.summary()
        ))
        .detail(format!(
            "raw Engine API create+start+inspect of `true`: {}",
            raw.summary()
        )),
    ])
}
