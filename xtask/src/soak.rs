//! `cargo xtask soak [--sessions N] [--concurrency N] [--type TYPE]`: the
//! full-size soak (200 concurrent sessions on the local backend by
//! default), with its figures.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use runtime_conformance::Target;
use runtime_conformance::soak::{SoakConfig, peak_rss, processes_of_run, soak};
use session_core::EnvironmentSpec;

use runtime_docker as _;
use runtime_local as _;

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
    let target = Target::builtin(EnvironmentSpec::new(backend.as_str(), "soak"));
    let run_id = format!("xtask-{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(soak(&target, &config, temp.path(), &run_id));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let survivors = processes_of_run(&run_id);
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
