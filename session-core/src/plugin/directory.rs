//! The plugin directory of a host: where it is, what loading it did, and
//! the one line that explains an unknown backend type by it.
//!
//! The `berth` binary and the Python module both find the directory with
//! [`PluginDir::resolve`] (the host's own setting, else
//! `$BERTH_PLUGIN_DIR`, else `$XDG_DATA_HOME/berth/plugins`, else
//! `~/.local/share/berth/plugins`), load it with [`load`] (through
//! [`load_directory`](super::load_directory) and its trust checks) and word
//! an unknown type with [`explain_unknown`], so both say the same.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::registry::Registry;

/// Where the plugin directory setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginDirSource {
    /// The host's own setting, named as its users write it
    /// (`--plugin-dir`, `plugin_dir=`).
    Setting(&'static str),
    /// `$BERTH_PLUGIN_DIR`.
    Environment,
    /// `$XDG_DATA_HOME`.
    XdgDataHome,
    /// `$HOME`.
    Home,
}

impl fmt::Display for PluginDirSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginDirSource::Setting(name) => name,
            PluginDirSource::Environment => "$BERTH_PLUGIN_DIR",
            PluginDirSource::XdgDataHome => "$XDG_DATA_HOME",
            PluginDirSource::Home => "$HOME",
        })
    }
}

/// The plugin directory in force and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDir {
    /// The directory.
    pub path: PathBuf,
    /// Which setting named it.
    pub source: PluginDirSource,
}

impl PluginDir {
    /// `setting` (a path, and how the host's users name that setting),
    /// else `$BERTH_PLUGIN_DIR`, else `$XDG_DATA_HOME/berth/plugins`, else
    /// `~/.local/share/berth/plugins`; `None` when none of those is set.
    pub fn resolve(setting: Option<(&Path, &'static str)>) -> Option<PluginDir> {
        Self::resolve_with(setting, |name| std::env::var_os(name))
    }

    /// [`PluginDir::resolve`] with the environment read through `var`.
    pub fn resolve_with(
        setting: Option<(&Path, &'static str)>,
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Option<PluginDir> {
        let set = |name: &str| {
            var(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        if let Some((path, name)) = setting {
            return Some(PluginDir {
                path: path.to_path_buf(),
                source: PluginDirSource::Setting(name),
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
#[derive(Debug, Default, Clone)]
pub struct DirectoryReport {
    /// The directory looked at, if one is configured.
    pub dir: Option<PluginDir>,
    /// Whether that directory exists.
    pub dir_exists: bool,
    /// Libraries loaded, with the backend type each registered.
    pub loaded: Vec<(PathBuf, String)>,
    /// Files that were not loaded and why, one line each.
    pub problems: Vec<(PathBuf, String)>,
}

/// Loads every library in the plugin directory into `registry` through
/// berth's plugin loader. A library that is not a berth plugin, was built
/// for another ABI version, declares a type already registered or fails to
/// start is a problem line; the rest load.
pub fn load(registry: &mut Registry, dir: Option<PluginDir>) -> DirectoryReport {
    let mut report = DirectoryReport {
        dir_exists: dir.as_ref().is_some_and(|d| d.path.is_dir()),
        dir,
        ..DirectoryReport::default()
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
    let outcome = super::load_directory(&dir.path, registry);
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

/// The line that explains an unknown backend type `requested` (with the
/// `registered` types): that it may be a plugin's type, which plugin
/// directory was searched, and what loaded and what was skipped there.
pub fn explain_unknown(requested: &str, registered: &str, report: &DirectoryReport) -> String {
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
                return format!(
                    "unknown backend type `{requested}` (registered: {registered}); if it is \
                     a plugin's type, {line}"
                );
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
    format!(
        "unknown backend type `{requested}` (registered: {registered}); if it is a plugin's \
         type, {plugins}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

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
        let flag =
            PluginDir::resolve_with(Some((Path::new("/flag"), "--plugin-dir")), all).unwrap();
        assert_eq!(
            (flag.path, flag.source),
            (
                PathBuf::from("/flag"),
                PluginDirSource::Setting("--plugin-dir")
            )
        );
        assert_eq!(flag.source.to_string(), "--plugin-dir");
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
        let mut registry = Registry::empty();
        let report = load(
            &mut registry,
            Some(PluginDir {
                path: dir.path().to_path_buf(),
                source: PluginDirSource::Setting("--plugin-dir"),
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
        assert!(registry.types().is_empty());
        let line = explain_unknown("thing", "local", &report);
        assert!(
            line.ends_with("(skipped: libthing.so; `berth plugins` says why)"),
            "{line}"
        );
    }
}
