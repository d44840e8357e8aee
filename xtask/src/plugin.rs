//! `cargo xtask test-plugin <crate dir | library>`: builds a plugin crate as
//! a cdylib (or takes a built library), loads it through berth's real
//! plugin loader from a temporary plugin directory, and runs the whole
//! conformance suite against every backend type it declares.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use runtime_conformance::{Target, run_suite};
use session_core::EnvironmentSpec;
use session_core::registry::Registry;

pub(crate) fn test_plugin(args: &[String]) -> Result<ExitCode> {
    let [arg] = args else {
        bail!("usage: cargo xtask test-plugin <crate dir | path to .so>");
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
    let plugins = tempfile::Builder::new()
        .prefix("berth-plugins-")
        .tempdir()?;
    let name = library
        .file_name()
        .context("the library has no file name")?;
    std::fs::copy(&library, plugins.path().join(name))
        .with_context(|| format!("copying {}", library.display()))?;

    let mut registry = Registry::empty();
    let report = session_core::plugin::load_directory(plugins.path(), &mut registry);
    for problem in &report.problems {
        println!("plugin problem: {problem}");
    }
    let Some(loaded) = report.loaded.first() else {
        println!("no plugin loaded from {}", library.display());
        println!("0 passed, 1 failed, 0 skipped");
        return Ok(ExitCode::FAILURE);
    };
    println!(
        "loaded {} in {:.2} ms: {}",
        library.display(),
        loaded.load_time.as_secs_f64() * 1000.0,
        loaded.types.join(", ")
    );
    let registry = registry.shared();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for type_name in &loaded.types {
        let target = Target::with_registry(
            EnvironmentSpec::new(type_name.as_str(), "conformance"),
            std::sync::Arc::clone(&registry),
        )
        .label(format!("{type_name} (plugin)"));
        let report = runtime.block_on(run_suite(target));
        for line in report.render().lines() {
            // The per-type summary is folded into the final one.
            if line.starts_with("conformance[") {
                println!("{line}");
            }
        }
        passed += report.passed();
        failed += report.failed();
        skipped += report.skipped();
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
