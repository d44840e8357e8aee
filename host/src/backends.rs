//! The backends this binary knows: the built-ins linked into it and the
//! plugins in its plugin directory.
//!
//! Every built-in backend crate is named here once (`use … as _`), or the
//! linker would drop it together with its `inventory` registration.

use std::fmt;
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

/// Where the plugin directory setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PluginDirSource {
    Flag,
    Environment,
    XdgDataHome,
    Home,
}

impl fmt::Display for PluginDirSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginDirSource::Flag => "--plugin-dir",
            PluginDirSource::Environment => "$BERTH_PLUGIN_DIR",
            PluginDirSource::XdgDataHome => "$XDG_DATA_HOME",
            PluginDirSource::Home => "$HOME",
        })
    }
}

/// The plugin directory in force and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PluginDir {
    pub(crate) path: PathBuf,
    pub(crate) source: PluginDirSource,
}

impl PluginDir {
    /// `--plugin-dir`, else `$BERTH_PLUGIN_DIR`, else
    /// `$XDG_DATA_HOME/berth/plugins`, else `~/.local/share/berth/plugins`;
    /// `None` when none of those is set.
    pub(crate) fn resolve(flag: Option<&Path>) -> Option<PluginDir> {
        Self::resolve_with(flag, |name| std::env::var_os(name))
    }

    fn resolve_with(
        flag: Option<&Path>,
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Option<PluginDir> {
        let set = |name: &str| {
            var(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        if let Some(path) = flag {
            return Some(PluginDir {
                path: path.to_path_buf(),
                source: PluginDirSource::Flag,
            });
        }
        if let Some(path) = set("BERTH_PLUGIN_DIR") {
            return Some(PluginDir {
                path,
                source: PluginDirSource::Environment,
            });
        }
        // The XDG base-directory rules ignore a relative XDG_DATA_HOME.
        if let Some(data) = set("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
            return Some(PluginDir {
                path: data.join("berth/plugins"),
                source: PluginDirSource::XdgDataHome,
            });
        }
        set("HOME").map(|home| PluginDir {
            path: home.join(".local/share/berth/plugins"),
            source: PluginDirSource::Home,
        })
    }
}

/// What loading the plugin directory did.
#[derive(Debug, Default)]
pub(crate) struct PluginReport {
    /// The directory looked at, if one is configured.
    pub(crate) dir: Option<PluginDir>,
    /// Whether that directory exists.
    pub(crate) dir_exists: bool,
    /// Libraries loaded, with the backend type each registered.
    pub(crate) loaded: Vec<(PathBuf, String)>,
    /// Files that were not loaded and why, one line each.
    pub(crate) problems: Vec<(PathBuf, String)>,
}

/// The registry of built-ins plus whatever the plugin directory adds, and
/// the report of that directory.
///
/// Fails only when the built-ins themselves conflict; a bad plugin is a
/// problem in the report, never an error.
pub(crate) fn load(plugin_dir: Option<&Path>) -> anyhow::Result<(Registry, PluginReport)> {
    let mut registry = builtins()?;
    let report = load_plugins(&mut registry, PluginDir::resolve(plugin_dir));
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
    let (requested, registered) = (requested.clone(), registered.clone());
    // The explanation wraps the error, whose type says it is the backend's.
    let explained = |line: String| anyhow::Error::new(err).context(line);
    let names = |paths: &mut dyn Iterator<Item = &PathBuf>| {
        let mut names: Vec<String> = paths
            .map(|p| {
                p.file_name().map_or_else(
                    || p.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            })
            .collect();
        names.dedup();
        names.join(", ")
    };
    let plugins = match &report.dir {
        None => "no plugin directory is configured (--plugin-dir, $BERTH_PLUGIN_DIR, \
                 $XDG_DATA_HOME or $HOME) to load it from"
            .to_owned(),
        Some(dir) if !report.dir_exists => format!(
            "the plugin directory {} (from {}) does not exist",
            dir.path.display(),
            dir.source
        ),
        Some(dir) => {
            let mut line = format!(
                "no library in the plugin directory {} (from {}) serves it",
                dir.path.display(),
                dir.source
            );
            if report.problems.iter().any(|(path, _)| path == &dir.path) {
                line.push_str(": the directory itself was refused (see `berth doctor`)");
                return explained(format!(
                    "unknown backend type `{requested}` (registered: {registered}); if it is \
                     a plugin's type, {line}"
                ));
            }
            let loaded = names(&mut report.loaded.iter().map(|(path, _)| path));
            let skipped = names(&mut report.problems.iter().map(|(path, _)| path));
            line.push_str(&match (loaded.is_empty(), skipped.is_empty()) {
                (true, true) => " (it holds no library)".to_owned(),
                (false, true) => format!(" (loaded: {loaded})"),
                (true, false) => {
                    format!(" (skipped: {skipped}; `berth plugins` says why)")
                }
                (false, false) => {
                    format!(" (loaded: {loaded}; skipped: {skipped}; `berth plugins` says why)")
                }
            });
            line
        }
    };
    explained(format!(
        "unknown backend type `{requested}` (registered: {registered}); if it is a plugin's \
         type, {plugins}"
    ))
}

/// Loads every library in the plugin directory into the registry through
/// berth's plugin loader. A library that is not a berth plugin, was built
/// for another ABI version, declares a type already registered or fails to
/// start is a problem line; the rest load.
fn load_plugins(registry: &mut Registry, dir: Option<PluginDir>) -> PluginReport {
    let mut report = PluginReport {
        dir_exists: dir.as_ref().is_some_and(|d| d.path.is_dir()),
        dir,
        ..PluginReport::default()
    };
    let Some(dir) = report.dir.as_ref().filter(|_| report.dir_exists) else {
        return report;
    };
    if let Err(err) = std::fs::read_dir(&dir.path) {
        report.problems.push((
            dir.path.clone(),
            format!("cannot read the plugin directory: {err}"),
        ));
        return report;
    }
    let outcome = session_core::plugin::load_directory(&dir.path, registry);
    for loaded in outcome.loaded {
        tracing::debug!(
            plugin = %loaded.path.display(),
            millis = loaded.load_time.as_secs_f64() * 1000.0,
            "plugin loaded"
        );
        for type_name in loaded.types {
            report.loaded.push((loaded.path.clone(), type_name));
        }
    }
    for problem in outcome.problems {
        report.problems.push((problem.path, problem.reason));
    }
    report
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
    use std::ffi::OsString;

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
    fn plugin_dir_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let all = env(&[
            ("BERTH_PLUGIN_DIR", "/env/plugins"),
            ("XDG_DATA_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        let flag = PluginDir::resolve_with(Some(Path::new("/flag")), all).unwrap();
        assert_eq!(
            (flag.path, flag.source),
            (PathBuf::from("/flag"), PluginDirSource::Flag)
        );
        let from_env = PluginDir::resolve_with(None, all).unwrap();
        assert_eq!(from_env.path, PathBuf::from("/env/plugins"));
        let xdg = PluginDir::resolve_with(None, env(&[("XDG_DATA_HOME", "/xdg"), ("HOME", "/h")]))
            .unwrap();
        assert_eq!(xdg.path, PathBuf::from("/xdg/berth/plugins"));
        let relative_xdg =
            PluginDir::resolve_with(None, env(&[("XDG_DATA_HOME", "rel"), ("HOME", "/h")]))
                .unwrap();
        assert_eq!(
            relative_xdg.path,
            PathBuf::from("/h/.local/share/berth/plugins")
        );
        let empty_env =
            PluginDir::resolve_with(None, env(&[("BERTH_PLUGIN_DIR", ""), ("HOME", "/h")]))
                .unwrap();
        assert_eq!(empty_env.source, PluginDirSource::Home);
        assert_eq!(PluginDir::resolve_with(None, env(&[])), None);
    }

    #[test]
    fn libraries_that_are_not_plugins_are_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libthing.so"), "not really").unwrap();
        std::fs::write(dir.path().join("README.txt"), "ignored").unwrap();
        let mut registry = Registry::with_builtins().unwrap();
        let before = registry.types();
        let report = load_plugins(
            &mut registry,
            Some(PluginDir {
                path: dir.path().to_path_buf(),
                source: PluginDirSource::Flag,
            }),
        );
        assert!(report.dir_exists);
        assert!(report.loaded.is_empty());
        assert_eq!(report.problems.len(), 1);
        assert!(report.problems[0].0.ends_with("libthing.so"));
        assert!(
            report.problems[0].1.starts_with("not a berth plugin"),
            "{:?}",
            report.problems
        );
        assert_eq!(registry.types(), before);
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
