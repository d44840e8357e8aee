//! The Python module's steps: a virtualenv of the run's own under the
//! target directory (made with `python3 -m venv`, with maturin and pytest
//! installed from PyPI when missing), the module built into it with
//! `maturin develop` (cargo's target directory, so the workspace's
//! dependencies are not built again), and pytest over `python/tests` with
//! a JUnit report whose counts join the run's.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result, bail};

/// What `pip` installs into the virtualenv when it is missing.
const TOOLS: [(&str, &str); 2] = [("maturin", "maturin>=1.9,<2"), ("pytest", "pytest>=8")];

/// The Python that makes the virtualenvs.
const PYTHON: &str = "python3";

/// A virtualenv under the target directory.
pub(crate) struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// `target/<name>`, whether it exists or not.
    pub(crate) fn at(target: &Path, name: &str) -> Venv {
        Venv {
            dir: target.join(name),
        }
    }

    /// `target/<name>`, made when missing, with maturin and pytest in it.
    pub(crate) fn ensure(target: &Path, name: &str) -> Result<Venv> {
        let venv = Venv::at(target, name);
        if !venv.python().is_file() {
            eprintln!("xtask: making the virtualenv {}", venv.dir.display());
            let make = || run(Command::new(PYTHON).args(["-m", "venv"]).arg(&venv.dir));
            if make().is_err() {
                // Debian's python3 keeps venv (and pip) in a package of
                // their own.
                eprintln!("xtask: installing python3 and python3-venv (apt-get)");
                let _ = std::fs::remove_dir_all(&venv.dir);
                run(Command::new("apt-get").arg("update"))?;
                run(Command::new("apt-get").args(["install", "-y", "python3", "python3-venv"]))?;
                make().context("making a Python virtualenv (python3 -m venv)")?;
            }
        }
        let missing: Vec<&str> = TOOLS
            .iter()
            .filter(|(tool, _)| !venv.bin(tool).is_file())
            .map(|(_, requirement)| *requirement)
            .collect();
        if !missing.is_empty() {
            eprintln!("xtask: installing {} from PyPI", missing.join(" "));
            run(Command::new(venv.python())
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(&missing))?;
        }
        Ok(venv)
    }

    pub(crate) fn bin(&self, tool: &str) -> PathBuf {
        self.dir.join("bin").join(tool)
    }

    pub(crate) fn python(&self) -> PathBuf {
        self.bin("python")
    }

    /// `PATH` with the virtualenv's `bin` first, so `python` is its own.
    pub(crate) fn path_var(&self) -> std::ffi::OsString {
        let mut dirs = vec![self.dir.join("bin")];
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(dirs).unwrap_or_default()
    }

    /// Builds `python/` into the virtualenv (`maturin develop`, with
    /// `--release` when asked).
    pub(crate) fn develop(&self, root: &Path, release: bool) -> Result<()> {
        let mut command = Command::new(self.bin("maturin"));
        command
            .current_dir(root.join("python"))
            .args(["develop", "--quiet"])
            .env("VIRTUAL_ENV", &self.dir)
            .env("PATH", self.path_var());
        if release {
            command.arg("--release");
        }
        run(&mut command).context("building the Python module (maturin develop)")
    }
}

/// Runs pytest over `python/tests` with `env` set, writing a JUnit report
/// to `junit`, and returns its exit status.
pub(crate) fn pytest(
    venv: &Venv,
    root: &Path,
    junit: &Path,
    configure: impl FnOnce(&mut Command),
) -> Result<ExitStatus> {
    let mut command = Command::new(venv.python());
    command
        .current_dir(root.join("python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(format!("--junitxml={}", junit.display()))
        .arg("tests")
        .env("PATH", venv.path_var())
        .stdin(Stdio::null());
    configure(&mut command);
    command.status().context("running pytest")
}

/// `(tests, failed, skipped)` of a pytest run.
pub(crate) type Counts = (usize, usize, usize);

/// The [`Counts`] of pytest's JUnit report: the sums over its
/// `<testsuite …>` elements (`errors` count as failed).
pub(crate) fn junit_counts(xml: &str) -> Option<Counts> {
    let mut found = false;
    let (mut tests, mut failed, mut skipped) = (0, 0, 0);
    for part in xml.split("<testsuite ").skip(1) {
        let element = &part[..part.find('>')?];
        let attribute = |name: &str| -> Option<usize> {
            let at = element.find(&format!("{name}=\""))? + name.len() + 2;
            element[at..].split('"').next()?.parse().ok()
        };
        found = true;
        tests += attribute("tests")?;
        failed += attribute("failures").unwrap_or(0) + attribute("errors").unwrap_or(0);
        skipped += attribute("skipped").unwrap_or(0);
    }
    found.then_some((tests, failed, skipped))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytest_counts_come_from_its_testsuites() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="40" time="9.1" timestamp="t" hostname="h"><testcase classname="a" name="b" time="0.1" /></testsuite></testsuites>"#;
        assert_eq!(junit_counts(xml), Some((40, 3, 3)));
        assert_eq!(junit_counts("<testsuites></testsuites>"), None);
        assert_eq!(junit_counts("not junit"), None);
    }
}
