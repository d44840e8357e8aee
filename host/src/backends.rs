//! The backends this binary knows: the built-ins linked into it and the
//! plugins in its plugin directory.
//!
//! Every built-in backend crate is named here once (`use … as _`), or the
//! linker would drop it together with its `inventory` registration.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use session_core::registry::Registry;
use session_core::runtime::BackendOrigin;

// Linked for their `register_backend!` entries.
use runtime_api as _;
use runtime_docker as _;
use runtime_local as _;

/// The `type` of every built-in backend this binary links. A test checks
/// the registry holds each one.
pub(crate) const BUILT_IN_TYPES: &[&str] = &[
    runtime_local::TYPE_NAME,
    runtime_docker::TYPE_NAME,
    runtime_api::TYPE_NAME,
];

// The plugin directory's resolution, loading and the explanation of an
// unknown type are session-core's, shared with the Python module.
pub(crate) use session_core::plugin::directory::{DirectoryReport as PluginReport, PluginDir};

/// How `--plugin-dir` is named when it names the directory.
pub(crate) const PLUGIN_DIR_FLAG: &str = "--plugin-dir";

/// The plugin directory in force: `--plugin-dir`, else the environment's
/// (see [`PluginDir::resolve`]).
pub(crate) fn resolve_plugin_dir(flag: Option<&Path>) -> Option<PluginDir> {
    PluginDir::resolve(flag.map(|path| (path, PLUGIN_DIR_FLAG)))
}

/// The registry of built-ins plus whatever the plugin directory adds, and
/// the report of that directory.
///
/// Fails only when the built-ins themselves conflict; a bad plugin is a
/// problem in the report, never an error.
pub(crate) fn load(plugin_dir: Option<&Path>) -> anyhow::Result<(Registry, PluginReport)> {
    let mut registry = builtins()?;
    let report =
        session_core::plugin::directory::load(&mut registry, resolve_plugin_dir(plugin_dir));
    Ok((registry, report))
}

/// The registry of the built-ins alone.
pub(crate) fn builtins() -> anyhow::Result<Registry> {
    let registry = Registry::with_builtins().context("registering the built-in backends")?;
    let types = registry.types();
    if let Some(missing) = BUILT_IN_TYPES
        .iter()
        .find(|t| !types.iter().any(|r| r == *t))
    {
        anyhow::bail!("the built-in backend `{missing}` is linked but did not register itself");
    }
    Ok(registry)
}

/// Logs each library the plugin directory could not give, for the commands
/// that do not list them themselves (`doctor` and `plugins` do). A library
/// is reported once per process, however often the directory is loaded.
pub(crate) fn warn_problems(report: &PluginReport) {
    static REPORTED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut reported = REPORTED.lock().unwrap_or_else(|p| p.into_inner());
    for (path, problem) in &report.problems {
        if reported.contains(path) {
            continue;
        }
        reported.push(path.clone());
        tracing::warn!(plugin = %path.display(), "{problem}");
    }
}

/// The backend serving `type_name`. When none does, the error says, in
/// one line, that it may be a plugin's type, which plugin directory was
/// searched, and what loaded and what was skipped there.
pub(crate) fn lookup<'r>(
    registry: &'r Registry,
    report: &PluginReport,
    type_name: &str,
) -> anyhow::Result<&'r session_core::runtime::BackendRef> {
    registry
        .get(type_name)
        .map_err(|err| explain_unknown(err, report))
}

/// Adds to an unknown-type error where plugins were looked for (see
/// [`lookup`]); other errors pass unchanged.
pub(crate) fn explain_unknown(err: session_core::Error, report: &PluginReport) -> anyhow::Error {
    let session_core::Error::UnknownBackend {
        requested,
        registered,
    } = &err
    else {
        return err.into();
    };
    let line = session_core::plugin::directory::explain_unknown(requested, registered, report);
    // The explanation wraps the error, whose type says it is the backend's.
    anyhow::Error::new(err).context(line)
}

/// The names of the capabilities a backend claims, in declaration order.
pub(crate) fn capability_names(capabilities: &session_core::runtime::Capabilities) -> Vec<String> {
    match serde_json::to_value(capabilities) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .map(|(name, _)| name)
            .collect(),
        _ => Vec::new(),
    }
}

/// `berth plugins`: every backend type with its origin, version and
/// capabilities, then the plugin directory and what did not load from it.
pub(crate) fn plugins(
    args: &crate::cli::PluginsArgs,
    global: &crate::cli::GlobalArgs,
) -> anyhow::Result<crate::ExitCode> {
    use std::io::Write;

    match &args.action {
        Some(crate::cli::PluginsAction::Test(test)) => return crate::plugins::test(test, global),
        Some(crate::cli::PluginsAction::Install(install)) => {
            return crate::plugins::install(install, global);
        }
        None => {}
    }
    let (registry, report) = load(global.plugin_dir.as_deref())?;
    let backends = registry.describe();
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = serde_json::json!({
            "backends": backends.iter().map(|(info, origin)| serde_json::json!({
                "type": info.type_name,
                "version": info.version,
                "description": info.description,
                "origin": origin.to_string(),
                "built_in": matches!(origin, BackendOrigin::BuiltIn(_)),
                "capabilities": capability_names(&info.capabilities),
            })).collect::<Vec<_>>(),
            "plugin_dir": report.dir.as_ref().map(|d| serde_json::json!({
                "path": d.path,
                "source": d.source.to_string(),
                "exists": report.dir_exists,
            })),
            "loaded": report.loaded.iter().map(|(path, type_name)| serde_json::json!({
                "path": path, "type": type_name,
            })).collect::<Vec<_>>(),
            "problems": report.problems.iter().map(|(path, problem)| serde_json::json!({
                "path": path, "problem": problem,
            })).collect::<Vec<_>>(),
        });
        crate::failure::write_json(&json)?;
        return Ok(crate::ExitCode::SUCCESS);
    }
    let width = backends
        .iter()
        .map(|(info, _)| info.type_name.len())
        .max()
        .unwrap_or(0);
    for (info, origin) in &backends {
        writeln!(
            out,
            "{:<width$}  {}  {}  [{}]",
            info.type_name,
            info.version,
            origin,
            capability_names(&info.capabilities).join(", ")
        )?;
    }
    match &report.dir {
        None => writeln!(out, "plugin directory: none configured")?,
        Some(dir) => writeln!(
            out,
            "plugin directory: {} (from {}){}",
            dir.path.display(),
            dir.source,
            if report.dir_exists {
                ""
            } else {
                ", does not exist"
            }
        )?,
    }
    for (path, type_name) in &report.loaded {
        writeln!(out, "loaded {}: type `{type_name}`", path.display())?;
    }
    for (path, problem) in &report.problems {
        writeln!(out, "skipped {}: {problem}", path.display())?;
    }
    out.flush()?;
    Ok(crate::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_holds_every_built_in() {
        let (registry, _) = load(Some(Path::new("/nonexistent/berth-plugins"))).unwrap();
        let types = registry.types();
        for built_in in BUILT_IN_TYPES {
            assert!(
                types.iter().any(|t| t == built_in),
                "{built_in} missing from {types:?}"
            );
        }
    }

    #[test]
    fn capability_names_lists_what_is_claimed() {
        let caps = session_core::runtime::Capabilities {
            stdin: true,
            timeouts: true,
            shared_workspace: false,
            ..Default::default()
        };
        assert_eq!(capability_names(&caps), ["stdin", "timeouts"]);
    }
}
