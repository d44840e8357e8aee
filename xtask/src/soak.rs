//! `cargo xtask soak [--sessions N] [--concurrency N] [--type TYPE]`: the
//! full-size soak (200 concurrent sessions on the local backend by
//! default), with its figures.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use runtime_conformance::Target;
use runtime_conformance::soak::{SoakConfig, peak_rss, processes_of_run, soak};
use session_core::EnvironmentSpec;

use runtime_api as _;
use runtime_docker as _;
use runtime_local as _;

/// Starts a `berth serve` server of the built-in backends on a loopback
/// port, in this process, and returns its URL.
async fn start_server(temp: &std::path::Path) -> Result<String> {
    let registry = session_core::registry::Registry::with_builtins()?.shared();
    let token = runtime_api::Token::new("soak-token-for-this-run-only")?;
    let config = runtime_api::server::ServeConfig::new(token, registry)
        .listen("127.0.0.1:0".parse()?)
        .work_root(temp);
    let server = runtime_api::server::bind(config).await?;
    let url = format!("http://{}", server.local_addr());
    tokio::spawn(async move {
        if let Err(err) = server.run().await {
            eprintln!("xtask: the soak server stopped: {err}");
        }
    });
    Ok(url)
}

pub(crate) fn run(args: &[String]) -> Result<ExitCode> {
    let mut config = SoakConfig::new(200);
    let mut backend = "local".to_owned();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--sessions" => config.sessions = value()?.parse()?,
            "--concurrency" => config.concurrency = value()?.parse()?,
            "--type" => backend = value()?.clone(),
            other => bail!("unknown soak option `{other}`"),
        }
    }
    if config.concurrency > config.sessions {
        config.concurrency = config.sessions;
    }
    let temp = tempfile::Builder::new().prefix("berth-soak-").tempdir()?;
    let server_root = tempfile::Builder::new()
        .prefix("berth-soak-server-")
        .tempdir()?;
    if backend == "api" {
        // SAFETY: no other thread exists yet in this process.
        unsafe { std::env::set_var("BERTH_SOAK_TOKEN", "soak-token-for-this-run-only") };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let spec = match backend.as_str() {
        "docker" => {
            runtime
                .block_on(async {
                    let docker = runtime_docker::test_image::connect().await?;
                    runtime_docker::test_image::ensure(&docker).await
                })
                .map_err(anyhow::Error::msg)
                .context("preparing the docker soak image")?;
            EnvironmentSpec::from_yaml_str(
                &format!(
                    "type: docker\nname: soak\ndocker: {{image: '{}'}}\n",
                    runtime_docker::test_image::IMAGE
                ),
                "<soak>",
            )?
        }
        "api" => {
            let url = runtime.block_on(start_server(server_root.path()))?;
            EnvironmentSpec::from_yaml_str(
                &format!(
                    "type: api\nname: soak\napi:\n  url: {url}\n  token_env: BERTH_SOAK_TOKEN\n  remote: {{type: local, name: soak}}\n"
                ),
                "<soak>",
            )?
        }
        other => EnvironmentSpec::new(other, "soak"),
    };
    let target = Target::builtin(spec);
    let run_id = format!("xtask-{}", std::process::id());
    let report = runtime.block_on(soak(&target, &config, temp.path(), &run_id));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let mut survivors = processes_of_run(&run_id);
    if backend == "docker" {
        runtime_docker::wait_for_background_removals(std::time::Duration::from_secs(30));
        // The engine removes containers let go of on its own time.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let left = loop {
            let containers = std::process::Command::new("docker")
                .args(["ps", "-aq", "--filter"])
                .arg(format!(
                    "label={}={}",
                    runtime_docker::LABEL_OWNER_PID,
                    std::process::id()
                ))
                .output()?;
            let left = String::from_utf8_lossy(&containers.stdout).lines().count();
            if left == 0 || std::time::Instant::now() >= deadline {
                break left;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        println!("soak[docker] containers left: {left}");
        survivors.extend(std::iter::repeat_n(0, left));
    }
    println!("soak[{backend}] {}", report.summary());
    println!(
        "soak[{backend}] peak RSS of the host process: {:.1} MiB; surviving processes: {}",
        peak_rss() as f64 / (1 << 20) as f64,
        survivors.len()
    );
    for failure in report.failures.iter().take(20) {
        println!("soak[{backend}] FAILED {failure}");
    }
    let ok = report.failures.is_empty() && report.leftover_dirs.is_empty() && survivors.is_empty();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
