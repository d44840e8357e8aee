//! What the tests need from the machine, installed or started when missing:
//! Debian's `busybox-static` (the docker tests build their image from it),
//! `bubblewrap` (the `bwrap` example plugin wraps every command in it) and
//! a running Docker Engine.
//!
//! Nothing here is fatal by itself: a machine without apt or Docker still
//! runs the tests. Whether the docker tests may then skip is decided later
//! (`cargo xtask test` builds their image, and fails in CI or where an
//! engine is installed when it cannot).

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The Debian packages the tests use, each with a file that shows it is
/// there.
const PACKAGES: [(&str, &str); 2] = [
    ("busybox-static", "/bin/busybox"),
    ("bubblewrap", "/usr/bin/bwrap"),
];

/// How long a freshly started `dockerd` may take to answer.
const DOCKERD_START: Duration = Duration::from_secs(60);

/// Installs the packages and starts the Docker Engine when needed.
pub(crate) fn ensure_test_prerequisites() -> Result<()> {
    if let Err(err) = ensure_packages() {
        eprintln!(
            "xtask: warning: {err:#}; the docker tests and the bwrap plugin's suite will fail \
             or be skipped"
        );
    }
    if let Err(err) = ensure_docker_engine() {
        eprintln!(
            "xtask: warning: {err:#}; the docker tests will be skipped (or fail, in CI or where \
             an engine is installed)"
        );
    }
    Ok(())
}

/// `apt-get update` once, then `apt-get install -y` of what is missing.
fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(package, file)| !installed(package, file))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names = missing.join(" ");
    if !succeeds(Command::new("apt-get").arg("--version")) {
        bail!("{names} missing and apt-get is not available to install them");
    }
    eprintln!("xtask: installing {names} (apt-get update, then apt-get install)");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y"])
        .args(&missing))?;
    for (package, file) in PACKAGES {
        if !installed(package, file) {
            bail!("{package} was installed but {file} is still missing");
        }
    }
    Ok(())
}

fn installed(package: &str, file: &str) -> bool {
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"));
    installed && Path::new(file).is_file()
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
