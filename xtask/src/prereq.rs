//! What the tests need from the machine, installed or started when missing:
//! Debian's `busybox-static` (the docker tests build their image from it)
//! and a running Docker Engine.
//!
//! Nothing here is fatal: a machine without apt or Docker still runs the
//! tests, and the docker tests report themselves skipped with the reason.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The binary the docker tests copy into their image.
const BUSYBOX: &str = "/bin/busybox";

/// How long a freshly started `dockerd` may take to answer.
const DOCKERD_START: Duration = Duration::from_secs(60);

/// Installs `busybox-static` and starts the Docker Engine when needed.
pub(crate) fn ensure_test_prerequisites() -> Result<()> {
    if let Err(err) = ensure_busybox_static() {
        eprintln!("xtask: warning: {err:#}; the docker tests will be skipped");
    }
    if let Err(err) = ensure_docker_engine() {
        eprintln!("xtask: warning: {err:#}; the docker tests will be skipped");
    }
    Ok(())
}

fn ensure_busybox_static() -> Result<()> {
    if busybox_static_installed() {
        return Ok(());
    }
    if !succeeds(Command::new("apt-get").arg("--version")) {
        bail!("busybox-static is missing and apt-get is not available to install it");
    }
    eprintln!("xtask: installing busybox-static (apt-get update, then apt-get install)");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get").args(["install", "-y", "busybox-static"]))?;
    if !busybox_static_installed() {
        bail!("busybox-static was installed but {BUSYBOX} is still missing");
    }
    Ok(())
}

fn busybox_static_installed() -> bool {
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "busybox-static"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"));
    installed && Path::new(BUSYBOX).is_file()
}

fn ensure_docker_engine() -> Result<()> {
    if engine_answers() {
        return Ok(());
    }
    if !succeeds(Command::new("dockerd").arg("--version")) {
        bail!("the Docker Engine does not answer `docker info` and dockerd is not installed");
    }
    let log_path = std::env::temp_dir().join("berth-xtask-dockerd.log");
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    eprintln!(
        "xtask: starting dockerd in the background (log: {})",
        log_path.display()
    );
    Command::new("dockerd")
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the log file")?)
        .stderr(log)
        .spawn()
        .context("starting dockerd")?;
    let started = Instant::now();
    while started.elapsed() < DOCKERD_START {
        if engine_answers() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!(
        "dockerd did not answer within {}s (see {})",
        DOCKERD_START.as_secs(),
        log_path.display()
    )
}

fn engine_answers() -> bool {
    succeeds(Command::new("docker").arg("info"))
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn run(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}
