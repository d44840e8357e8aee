//! Backends from dylib plugins.
//!
//! [`load_directory`] loads every library in a plugin directory into a
//! [`Registry`]: a file that is not a berth plugin, was built for another
//! ABI version, declares a type already registered or fails to start is
//! reported in one line and skipped; the rest load. A loaded plugin becomes a
//! [`PluginBackend`], the same `Arc<dyn Backend>` as a built-in, so session
//! code cannot tell them apart.
//!
//! The one-line reasons name what a user needs: for a layout or ABI
//! mismatch, both sides' berth and ABI versions and the plugin's package
//! (from the library's build record) and the first item where the layouts
//! differ; for a taken type, who already serves it. A taken type is found
//! through the plugin's `describe` operation, before its `init` starts anything
//! in this process. A plugin's errors name its type, and a caught panic
//! names the library's file and the operation.
//!
//! Loading a library runs its code, so nothing is opened that a user other
//! than its owner (root or the user berth runs as) could have changed: a
//! plugin directory or library writable by group or others, owned by
//! another user, or below such an ancestor (a sticky ancestor like `/tmp`
//! excepted) is refused in one line naming the path, before the library is
//! opened and its constructors could run. Symlinks are judged by what they
//! point to. See `trust.rs` for the rules.
//!
//! Plugin authors implement [`Backend`] as for a
//! built-in and call [`export_backend!`](crate::export_backend) in their
//! `cdylib` crate.

pub mod directory;
pub mod export;
mod host;
mod logs;
mod protocol;
mod stdin_pipe;
mod trust;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use self::host::{PluginBackend, PluginRuntime};
use crate::registry::Registry;
use crate::runtime::{Backend, BackendInfo, BackendOrigin};
pub use session_abi::ABI_VERSION;

/// The berth version plugins built against this crate record, and hosts
/// print beside their [`ABI_VERSION`] when a library does not match.
pub const BERTH_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the export macro needs, re-exported so plugin crates depend only on
/// `session-core`.
#[doc(hidden)]
pub mod __private {
    pub use session_abi::__private::*;
    pub use session_abi::PluginModuleRef;
}

/// Checks a plugin directory as the loader does before listing it (see the
/// module documentation): on success, its real path.
///
/// # Errors
///
/// One line naming the path at fault and the fix.
pub fn check_directory(dir: &Path) -> Result<PathBuf, String> {
    trust::check_directory(dir)
}

/// Checks a library as the loader does before opening it (see the module
/// documentation): on success, its real path.
///
/// # Errors
///
/// One line naming the path at fault and the fix.
pub fn check_library(path: &Path) -> Result<PathBuf, String> {
    trust::check_library(path).map(|(real, _)| real)
}

/// A library that could not be loaded, and why, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginProblem {
    /// The library.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

impl std::fmt::Display for PluginProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// A library that loaded.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    /// The library.
    pub path: PathBuf,
    /// The backend types it registered.
    pub types: Vec<String>,
    /// How long loading it took.
    pub load_time: Duration,
}

/// The outcome of loading a plugin directory.
#[derive(Debug, Clone, Default)]
pub struct PluginReport {
    /// Libraries that loaded.
    pub loaded: Vec<LoadedPlugin>,
    /// Libraries that were skipped.
    pub problems: Vec<PluginProblem>,
}

/// Whether `path` looks like a shared library (`.so`, `.dylib`, `.dll`):
/// the only files [`load_directory`] loads.
pub fn is_library(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("so" | "dylib" | "dll")
    )
}

/// Loads every library in `dir` into `registry`. A missing directory loads
/// nothing and is not a problem.
///
/// A directory that users other than its owner could change (see the
/// module documentation) loads nothing: the report holds one problem naming
/// it. Each library is checked the same way before it is opened.
pub fn load_directory(dir: &Path, registry: &mut Registry) -> PluginReport {
    let mut report = PluginReport::default();
    if std::fs::symlink_metadata(dir).is_err() {
        return report;
    }
    // Judged before it is listed, and listed through its checked real path.
    let real = match trust::check_directory(dir) {
        Ok(real) => real,
        Err(reason) => {
            // The report carries it; the caller says it once.
            report.problems.push(PluginProblem {
                path: dir.to_path_buf(),
                reason,
            });
            return report;
        }
    };
    let Ok(entries) = std::fs::read_dir(&real) else {
        return report;
    };
    let mut names: Vec<std::ffi::OsString> = entries
        .flatten()
        .map(|e| e.file_name())
        .filter(|name| is_library(Path::new(name)))
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        match load_library(&real.join(&name), registry) {
            Ok(mut loaded) => {
                loaded.path = path;
                report.loaded.push(loaded);
            }
            Err(reason) => {
                // The report carries it; the caller says it once.
                report.problems.push(PluginProblem { path, reason });
            }
        }
    }
    report
}

/// Loads one library and registers its backends. Nothing is registered
/// when any of its types is already taken.
///
/// Fails (with one line) when the library, what it links to, or a directory
/// above it could be changed by users other than its owner; the library is
/// not opened then. Fails too when it is not a berth plugin, speaks another
/// ABI version, fails to start or declares a taken type. A taken type is
/// found before the plugin's `init` runs (through its `describe` operation), so
/// a refused plugin starts nothing in this process; only a plugin built
/// before `describe` existed is started first.
pub fn load_library(path: &Path, registry: &mut Registry) -> Result<LoadedPlugin, String> {
    load_library_as(path, path, registry)
}

/// [`load_library`], with the library named `shown` wherever it is named
/// later (its backends' origin, their errors, a panic): for a library
/// loaded from a private copy, the file the user gave.
///
/// # Errors
///
/// As for [`load_library`].
pub fn load_library_as(
    path: &Path,
    shown: &Path,
    registry: &mut Registry,
) -> Result<LoadedPlugin, String> {
    let started = Instant::now();
    let library = open(path)?;
    if let Some(infos) = describe(&library)? {
        refuse_taken(&infos, registry)?;
    }
    let backends = start(library.module, shown)?;
    let infos: Vec<BackendInfo> = backends.iter().map(|b| b.info()).collect();
    refuse_taken(&infos, registry)?;
    for backend in backends {
        registry
            .register(backend, BackendOrigin::Plugin(shown.to_path_buf()))
            .map_err(|err| err.to_string())?;
    }
    Ok(LoadedPlugin {
        path: shown.to_path_buf(),
        types: infos.into_iter().map(|info| info.type_name).collect(),
        load_time: started.elapsed(),
    })
}

/// The backend descriptors a library declares, without starting it: the
/// loader's checks (trust, layout, ABI version) and the plugin's `describe`
/// operation. A plugin built before `describe` existed is started to ask it.
///
/// # Errors
///
/// One line, as for [`load_library`].
pub fn inspect_library(path: &Path) -> Result<Vec<BackendInfo>, String> {
    let library = open(path)?;
    match describe(&library)? {
        Some(infos) => Ok(infos),
        None => Ok(start(library.module, path)?
            .iter()
            .map(|b| b.info())
            .collect()),
    }
}

/// The trust checks, then the library's root module, checked for layout
/// and ABI version.
fn open(path: &Path) -> Result<session_abi::Library, String> {
    // The real path is loaded, not `path`: every directory and symlink on
    // the way to it was judged, so only root or berth's user could change
    // what it names between the check and the load. (Loading through a
    // `/proc/self/fd` path would not do: the dynamic loader knows a library
    // by the name it was opened with, and would hand back whichever
    // library was loaded under that reused name before.)
    let (real, _) = trust::check_library(path)?;
    let library = session_abi::load(&real).map_err(|err| err.to_string())?;
    let version = library.module.abi_version();
    if version != ABI_VERSION {
        return Err(format!(
            "incompatible plugin: built for plugin ABI version {version}, this host speaks \
             version {ABI_VERSION}; {}",
            library.versions()
        ));
    }
    Ok(library)
}

/// The plugin's answer to `describe`, asked before its `init`; `None` for a
/// plugin built before that operation existed (it answers that it was
/// called before init, or does not know the operation).
fn describe(library: &session_abi::Library) -> Result<Option<Vec<BackendInfo>>, String> {
    use session_abi::abi_stable::std_types::{RResult, RSlice, RStr};
    let answer = (library.module.call())(
        RStr::from_str(protocol::op::DESCRIBE),
        RSlice::from_slice(b"{}"),
        session_abi::OutputSink::discard(),
        session_abi::CancelToken::never(),
    );
    if let RResult::RErr(text) = &answer
        && (text.contains(export::CALLED_BEFORE_INIT) || text.contains(protocol::UNKNOWN_OPERATION))
    {
        return Ok(None);
    }
    descriptors(answer).map(Some)
}

/// Refuses descriptors that declare nothing, or a type `registry` serves.
fn refuse_taken(infos: &[BackendInfo], registry: &Registry) -> Result<(), String> {
    if infos.is_empty() {
        return Err("declares no backend".to_owned());
    }
    let Some(taken) = infos.iter().find(|i| registry.get(&i.type_name).is_ok()) else {
        return Ok(());
    };
    let existing = registry
        .describe()
        .into_iter()
        .find(|(info, _)| info.type_name == taken.type_name)
        .map(|(_, origin)| origin.to_string())
        .unwrap_or_default();
    Err(format!(
        "declares backend type `{}`, already registered by {existing}",
        taken.type_name
    ))
}

/// Reads `init`'s or `describe`'s answer.
fn descriptors(answer: session_abi::FfiResult) -> Result<Vec<BackendInfo>, String> {
    match answer {
        session_abi::abi_stable::std_types::RResult::ROk(bytes) => serde_json::from_slice(&bytes)
            .map_err(|err| format!("its backend descriptors are malformed: {err}")),
        session_abi::abi_stable::std_types::RResult::RErr(text) => {
            let message = serde_json::from_str::<crate::runtime::wire::WireError>(text.as_str())
                .map(|w| w.into_error().to_string())
                .unwrap_or_else(|_| text.into_string());
            Err(format!("failed to start: {message}"))
        }
    }
}

/// Calls the plugin's `init` and wraps each backend it declares.
fn start(
    module: session_abi::PluginModuleRef,
    path: &Path,
) -> Result<Vec<Arc<dyn Backend>>, String> {
    let infos = descriptors((module.init())(logs::host_sink()))?;
    if infos.is_empty() {
        return Err("declares no backend".to_owned());
    }
    Ok(infos
        .into_iter()
        .map(|info| {
            Arc::new(PluginBackend::new(module, info, path.to_path_buf())) as Arc<dyn Backend>
        })
        .collect())
}

/// Serves backend type `T` through the FFI boundary without loading a
/// library: the same shims and adapter a real plugin goes through, in this
/// process. Used to test every conversion on every run.
pub fn in_process<T: Backend + Default + 'static>() -> Result<Arc<dyn Backend>, String> {
    let module = export::module::<T>(ABI_VERSION, false);
    let mut backends = start(module, Path::new("<in-process>"))?;
    Ok(backends.remove(0))
}
