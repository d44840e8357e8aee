//! `cargo xtask test-plugin <crate dir | library> [ARGS…]`: builds a plugin
//! crate as a cdylib (or takes a built library) and the `berth` binary,
//! then runs `berth plugins test LIBRARY ARGS…`, which loads the library
//! through the real loader from a private plugin directory and runs the
//! whole conformance suite against every backend type it declares. Its
//! exit code is passed through.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

pub(crate) fn test_plugin(args: &[String]) -> Result<ExitCode> {
    let Some((arg, rest)) = args.split_first() else {
        bail!("usage: cargo xtask test-plugin <crate dir | path to .so> [--json]");
    };
    let input = PathBuf::from(arg);
    let library = if input.is_dir() {
        build_cdylib(&input)?
    } else if input.is_file() {
        input
    } else {
        bail!(
            "`{}` is neither a crate directory nor a library",
            input.display()
        );
    };
    let berth = build_berth()?;
    let status = Command::new(&berth)
        .args(["plugins", "test"])
        .arg(&library)
        .args(rest)
        .status()
        .with_context(|| format!("running {}", berth.display()))?;
    Ok(crate::exit_code(status))
}

/// Builds the plugin crate in `dir` and runs `berth plugins test` (the
/// given binary) on its library, the command first passed to `configure`
/// (the test run's environment); returns its exit code.
pub(crate) fn run_suite(
    dir: &Path,
    berth: &Path,
    configure: impl FnOnce(&mut Command),
) -> Result<ExitCode> {
    let library = build_cdylib(dir)?;
    let mut command = Command::new(berth);
    command.args(["plugins", "test"]).arg(&library);
    configure(&mut command);
    let status = command
        .status()
        .with_context(|| format!("running {}", berth.display()))?;
    Ok(crate::exit_code(status))
}

/// Builds the `berth` binary of this workspace and returns its path, found
/// through cargo's JSON messages.
pub(crate) fn build_berth() -> Result<PathBuf> {
    let output = Command::new(crate::cargo())
        .current_dir(crate::workspace_root())
        .args([
            "build",
            "--package",
            "berth",
            "--bin",
            "berth",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !output.status.success() {
        bail!("building the berth binary failed");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "berth")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .context("the build names no berth executable")
}

/// Builds the crate in `dir` and returns its cdylib, found through cargo's
/// JSON messages.
pub(crate) fn build_cdylib(dir: &Path) -> Result<PathBuf> {
    let manifest = std::fs::canonicalize(dir.join("Cargo.toml"))
        .with_context(|| format!("no Cargo.toml in {}", dir.display()))?;
    let output = Command::new(crate::cargo())
        .args([
            "build",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !output.status.success() {
        bail!("building {} failed", dir.display());
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
        .filter(|msg| msg["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .filter(|msg| {
            msg["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        })
        .flat_map(|msg| {
            msg["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .find(|f| {
            f.extension()
                .is_some_and(|e| e == "so" || e == "dylib" || e == "dll")
        })
        .with_context(|| format!("{} does not build a cdylib", dir.display()))
}

/// The plugin crates under `plugins/` that build a cdylib and are meant to
/// pass the suite (the misbehaving fixture is tested by its own test).
pub(crate) fn workspace_plugins(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.join("plugins")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != "fixture"))
        .filter(|p| {
            std::fs::read_to_string(p.join("Cargo.toml")).is_ok_and(|m| m.contains("cdylib"))
        })
        .collect();
    dirs.sort();
    dirs
}
