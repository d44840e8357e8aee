//! `Session`: a workspace made from a base directory, its static assets,
//! and the runtimes spawned in it, on any backend the registry holds (the
//! built-ins linked here and the plugins of a plugin directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};

use indexmap::IndexMap;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyMapping, PyString, PyType};
use session_core::Mode;
use session_core::assets::{AssetMap, ResolvedAssets};
use session_core::file_ops::InputFile;
use session_core::plugin::directory::{self, DirectoryReport, PluginDir};
use session_core::registry::Registry;
use session_core::session::SpawnOptions;
use session_core::workspace::FileContent;

use crate::errors::core_error;
use crate::runtime::Runtime;
use crate::snapshot::{Checkpoint, Snapshot};
use crate::spec::{EnvironmentSpec, from_json, to_json};
use crate::{Failure, Owner, aio, tokio_rt, wait};

/// The core session and whether it was prepared; `None` once closed.
struct State {
    session: Option<session_core::session::Session>,
    prepared: bool,
}

type Shared = Arc<tokio::sync::Mutex<State>>;

impl State {
    /// The session, prepared first if it was not.
    async fn ready(&mut self) -> Result<&mut session_core::session::Session, Failure> {
        let Some(session) = self.session.as_mut() else {
            return Err(Failure::Other("the session is closed".into()));
        };
        if !self.prepared {
            session.prepare().await?;
            self.prepared = true;
        }
        Ok(session)
    }
}

/// A session: a private workspace made from `base_dir` (a snapshot of it
/// under the spec's rules; empty without one), the static assets, and the
/// runtimes spawned in it.
///
/// Use it as a context manager (`with Session(spec, base_dir=…) as s:` or
/// `async with`): entering prepares the workspace, leaving closes the
/// session (every runtime cleaned up, the assets checked, the workspace
/// removed). A session garbage-collected without `close()` still kills its
/// commands and removes its workspace. Methods that need the workspace
/// prepare it on first use.
#[pyclass(module = "berth._berth")]
pub(crate) struct Session {
    owner: Owner,
    /// `None` only while dropping.
    inner: Option<Shared>,
    id: String,
    backend_type: String,
    mode: Mode,
    assets: ResolvedAssets,
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if self.owner.is_here() {
            // Runtimes kill their commands and the workspace removes itself
            // on drop; some of that needs the tokio context.
            let _context = tokio_rt().enter();
            drop(inner);
        } else {
            // A forked child's copy: the workspace and the commands are the
            // parent's. Leak it rather than touch them.
            std::mem::forget(inner);
        }
    }
}

impl Session {
    fn shared(&self) -> PyResult<Shared> {
        self.owner.check("session")?;
        Ok(Arc::clone(self.inner.as_ref().expect("alive")))
    }
}

/// The registries made so far in this process, by plugin directory: a
/// plugin library is loaded once per process.
static REGISTRIES: StdMutex<Vec<CachedRegistry>> = StdMutex::new(Vec::new());

/// A plugin directory (or none), its registry, and what loading it did.
type CachedRegistry = (Option<PathBuf>, Arc<Registry>, DirectoryReport);

/// How a session's own plugin directory setting is named in messages.
const PLUGIN_DIR_SETTING: &str = "plugin_dir=";

/// The registry of the built-ins plus the plugins of the plugin directory
/// (`dir`, else `$BERTH_PLUGIN_DIR`, `$XDG_DATA_HOME` or `$HOME`, as the
/// `berth` binary finds it), with the report of that directory. The
/// libraries pass the loader's trust checks, as in the binary.
pub(crate) fn registry(dir: Option<&Path>) -> PyResult<(Arc<Registry>, DirectoryReport)> {
    let dir = PluginDir::resolve(dir.map(|dir| (dir, PLUGIN_DIR_SETTING)));
    let key = dir.as_ref().map(|d| d.path.clone());
    let mut cache = REGISTRIES
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    if let Some((_, registry, report)) = cache.iter().find(|(k, _, _)| *k == key) {
        let mut report = report.clone();
        // Named as this call names it.
        report.dir = dir;
        return Ok((Arc::clone(registry), report));
    }
    let mut registry = Registry::with_builtins().map_err(|err| core_error(&err))?;
    let report = directory::load(&mut registry, dir);
    let registry = registry.shared();
    cache.push((key, Arc::clone(&registry), report.clone()));
    Ok((registry, report))
}

/// The report's problems, one `path: reason` line each.
fn problem_lines(report: &DirectoryReport) -> Vec<String> {
    report
        .problems
        .iter()
        .map(|(path, reason)| format!("{}: {reason}", path.display()))
        .collect()
}

/// Static assets from a path to an asset map file (resolved against its
/// directory, as `berth run --assets` does) or a mapping (resolved against
/// `assets_dir`, else `base_dir`, else the current directory).
fn load_assets(
    value: Option<&Bound<'_, PyAny>>,
    assets_dir: Option<&Path>,
    base_dir: Option<&Path>,
) -> PyResult<ResolvedAssets> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(ResolvedAssets::default());
    };
    let core = |err: session_core::Error| core_error(&err);
    if value.cast::<PyMapping>().is_ok() || value.cast::<PyDict>().is_ok() {
        let map = AssetMap::from_value(&to_json(value)?).map_err(core)?;
        let base = match assets_dir.or(base_dir) {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_dir()?,
        };
        return map.resolve(base).map_err(core);
    }
    let path: PathBuf = value.extract()?;
    let path = std::path::absolute(&path)?;
    let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let map = AssetMap::from_path(&path).map_err(core)?;
    map.resolve(base).map_err(core)
}

fn parse_mode(mode: &str) -> PyResult<Mode> {
    Mode::from_name(mode).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "mode must be `agent` or `evaluation` (`eval`), not `{mode}`"
        ))
    })
}

/// Takes a spec given as an `EnvironmentSpec` or a mapping.
fn take_spec(spec: &Bound<'_, PyAny>) -> PyResult<session_core::EnvironmentSpec> {
    if let Ok(spec) = spec.extract::<EnvironmentSpec>() {
        return Ok(spec.spec);
    }
    let json = to_json(spec)?;
    let text = serde_json::to_string(&json)
        .map_err(|err| pyo3::exceptions::PyValueError::new_err(err.to_string()))?;
    session_core::EnvironmentSpec::from_json_str(&text, "<dict>").map_err(|err| core_error(&err))
}

#[pymethods]
impl Session {
    /// Makes a session (its workspace is prepared on `with`, `async with`,
    /// `prepare()` or first use).
    ///
    /// `spec` is an `EnvironmentSpec` or a mapping validated as one.
    /// `static_assets` is an asset map (flat `{name: path}` or grouped with
    /// `ordering`), or the path of an asset map file. `mode` is `evaluation`
    /// (the default) or `agent`. `plugin_dir` adds the backends of the
    /// plugin libraries there (default, as for the `berth` binary:
    /// `$BERTH_PLUGIN_DIR`, `$XDG_DATA_HOME/berth/plugins`,
    /// `~/.local/share/berth/plugins`), under the binary's trust checks. `temp_root` is where the session
    /// directory is made (default: the temporary directory).
    ///
    /// Raises `SpecError` for a bad spec or asset map, `BackendError` when
    /// no backend serves the spec's type.
    #[new]
    #[pyo3(signature = (spec, *, base_dir = None, static_assets = None, assets_dir = None, mode = "evaluation", plugin_dir = None, temp_root = None, session_id = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        spec: &Bound<'_, PyAny>,
        base_dir: Option<PathBuf>,
        static_assets: Option<&Bound<'_, PyAny>>,
        assets_dir: Option<PathBuf>,
        mode: &str,
        plugin_dir: Option<PathBuf>,
        temp_root: Option<PathBuf>,
        session_id: Option<String>,
    ) -> PyResult<Session> {
        let spec = take_spec(spec)?;
        let mode = parse_mode(mode)?;
        let (registry, report) = registry(plugin_dir.as_deref())?;
        match registry.get(&spec.backend_type) {
            Ok(backend) => backend.validate(&spec).map_err(|err| core_error(&err))?,
            Err(session_core::Error::UnknownBackend {
                requested,
                registered,
            }) => {
                return Err(crate::errors::BackendError::new_err(
                    directory::explain_unknown(&requested, &registered, &report),
                ));
            }
            Err(err) => return Err(core_error(&err)),
        }
        let assets = load_assets(static_assets, assets_dir.as_deref(), base_dir.as_deref())?;
        let backend_type = spec.backend_type.clone();
        let mut builder = session_core::session::Session::builder(spec)
            .registry(registry)
            .mode(mode)
            .assets(assets.clone());
        if let Some(dir) = base_dir {
            builder = builder.base_dir(dir);
        }
        if let Some(root) = temp_root {
            builder = builder.temp_root(root);
        }
        if let Some(id) = session_id {
            builder = builder.session_id(id);
        }
        let session = builder.build().map_err(|err| core_error(&err))?;
        Ok(Session {
            owner: Owner::here(),
            id: session.id().to_owned(),
            inner: Some(Arc::new(tokio::sync::Mutex::new(State {
                session: Some(session),
                prepared: false,
            }))),
            backend_type,
            mode,
            assets,
        })
    }

    /// The same as `Session(spec, …)`, under the name the seed's Python
    /// library used.
    #[classmethod]
    #[pyo3(signature = (spec, *, base_dir = None, static_assets = None, assets_dir = None, mode = "evaluation", plugin_dir = None, temp_root = None, session_id = None))]
    #[allow(clippy::too_many_arguments)]
    fn from_environment_spec(
        _cls: &Bound<'_, PyType>,
        spec: &Bound<'_, PyAny>,
        base_dir: Option<PathBuf>,
        static_assets: Option<&Bound<'_, PyAny>>,
        assets_dir: Option<PathBuf>,
        mode: &str,
        plugin_dir: Option<PathBuf>,
        temp_root: Option<PathBuf>,
        session_id: Option<String>,
    ) -> PyResult<Session> {
        Session::new(
            spec,
            base_dir,
            static_assets,
            assets_dir,
            mode,
            plugin_dir,
            temp_root,
            session_id,
        )
    }

    /// The session's id.
    #[getter]
    fn id(&self) -> &str {
        &self.id
    }

    /// The spec's backend type.
    #[getter]
    fn backend_type(&self) -> &str {
        &self.backend_type
    }

    /// `evaluation` or `agent`.
    #[getter]
    fn mode(&self) -> &'static str {
        self.mode.name()
    }

    /// The names of the static assets.
    #[getter]
    fn asset_names(&self) -> Vec<String> {
        self.assets.iter().map(|a| a.name.clone()).collect()
    }

    /// Whether the session was closed.
    #[getter]
    fn closed(&self) -> PyResult<bool> {
        let shared = self.shared()?;
        Ok(shared.try_lock().is_ok_and(|state| state.session.is_none()))
    }

    /// The workspace directory (the session is prepared first).
    #[getter]
    fn workspace(&self, py: Python<'_>) -> PyResult<PathBuf> {
        let shared = self.shared()?;
        wait(py, async move {
            let mut state = shared.lock().await;
            Ok(state.ready().await?.workspace_path()?)
        })
    }

    /// Prepares the workspace: a snapshot of the base directory restored
    /// into it, the assets copied in agent mode. Idempotent.
    fn prepare(&self, py: Python<'_>) -> PyResult<()> {
        let shared = self.shared()?;
        wait(py, async move {
            shared.lock().await.ready().await?;
            Ok(())
        })
    }

    /// `prepare()`, for `async` code.
    fn aprepare<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let shared = self.shared()?;
        aio::future(
            py,
            async move {
                shared.lock().await.ready().await?;
                Ok(())
            },
            |py, ()| Ok(py.None()),
        )
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.borrow().prepare(slf.py())?;
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let shared = slf.borrow().shared()?;
        let me = slf.clone().unbind();
        aio::future(
            py,
            async move {
                shared.lock().await.ready().await?;
                Ok(())
            },
            move |py, ()| Ok(me.into_any().clone_ref(py)),
        )
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let shared = self.shared()?;
        aio::future(py, close(shared), |py, ()| {
            Ok(false.into_pyobject(py)?.to_owned().into_any().unbind())
        })
    }

    /// Spawns a runtime of the spec's backend in the workspace and runs its
    /// setup commands. `env` adds variables for every command of the
    /// runtime; `setup` is one more setup command; `disable_setup` skips
    /// setup; `mounts` (dicts of `source`, `target`, `read_only`) and
    /// `ports` (dicts of `container_port`, `host_port`, `host_ip`) are what
    /// the runtime adds to the spec's, for backends that take them. Raises `SpawnError` when setup fails or the sandbox cannot be
    /// made.
    #[pyo3(signature = (*, env = None, setup = None, disable_setup = false, mounts = None, ports = None))]
    fn spawn(
        slf: &Bound<'_, Self>,
        env: Option<IndexMap<String, String>>,
        setup: Option<String>,
        disable_setup: bool,
        mounts: Option<&Bound<'_, PyAny>>,
        ports: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Runtime> {
        let py = slf.py();
        let shared = slf.borrow().shared()?;
        let options = spawn_options(env, setup, disable_setup, mounts, ports)?;
        let handle = wait(py, spawn(shared, options))?;
        Ok(Runtime::new(handle, slf.clone().unbind()))
    }

    /// `spawn()`, for `async` code.
    #[pyo3(signature = (*, env = None, setup = None, disable_setup = false, mounts = None, ports = None))]
    fn aspawn<'py>(
        slf: &Bound<'py, Self>,
        env: Option<IndexMap<String, String>>,
        setup: Option<String>,
        disable_setup: bool,
        mounts: Option<&Bound<'py, PyAny>>,
        ports: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let shared = slf.borrow().shared()?;
        let options = spawn_options(env, setup, disable_setup, mounts, ports)?;
        let me = slf.clone().unbind();
        aio::future(py, spawn(shared, options), move |py, handle| {
            Ok(Py::new(py, Runtime::new(handle, me))?.into_any())
        })
    }

    /// Writes input files into the workspace: `files` maps each path
    /// (relative to the workspace) to its content, `bytes` written as they
    /// are, anything else as the file's type says (text, JSON, YAML,
    /// CSV/TSV rows, SQLite, Parquet; compressed by a `.gz`, `.bz2`, `.xz`
    /// or `.zst` suffix). Returns the paths written.
    fn materialize_input_files(
        &self,
        py: Python<'_>,
        files: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<PathBuf>> {
        let shared = self.shared()?;
        let files = input_files(files)?;
        wait(py, async move {
            let mut state = shared.lock().await;
            Ok(state.ready().await?.materialize_input_files(files).await?)
        })
    }

    /// Reads the workspace files that match `patterns` (globs relative to
    /// the workspace): a dict of path to `str` for UTF-8 text, `bytes`
    /// otherwise. Raises `WorkspaceError` past the size caps.
    fn get_file_contents<'py>(
        &self,
        py: Python<'py>,
        patterns: Vec<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let shared = self.shared()?;
        let files = wait(py, async move {
            let mut state = shared.lock().await;
            Ok(state.ready().await?.get_file_contents(patterns).await?)
        })?;
        file_dict(py, files)
    }

    /// Agent mode: snapshots the workspace, writes its files to `out` and
    /// returns the snapshot with the diff against the previous one.
    fn finish_checkpoint(&self, py: Python<'_>, out: PathBuf) -> PyResult<Checkpoint> {
        let shared = self.shared()?;
        let checkpoint = wait(py, async move {
            let mut state = shared.lock().await;
            Ok(state.ready().await?.finish_checkpoint(out).await?)
        })?;
        Checkpoint::from_core(py, checkpoint)
    }

    /// A snapshot of the workspace now (it does not become the current
    /// one).
    fn snapshot(&self, py: Python<'_>) -> PyResult<Snapshot> {
        let shared = self.shared()?;
        let snapshot = wait(py, async move {
            let mut state = shared.lock().await;
            Ok(state.ready().await?.snapshot().await?)
        })?;
        Ok(Snapshot::from_core(snapshot))
    }

    /// Replaces every `{{static:NAME}}` in `value` (a string, or any JSON
    /// value: every string in it, keys included) with where asset `NAME`
    /// appears inside `runtime`. Raises `SpecError` for an unknown name.
    fn resolve_static_placeholders<'py>(
        &self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
        runtime: &Runtime,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.owner.check("session")?;
        let handle = runtime.handle()?;
        let json = to_json(value)?;
        let resolved =
            session_core::placeholders::resolve_static_placeholders(&json, &self.assets, |asset| {
                handle.asset_path(asset)
            })
            .map_err(|err| core_error(&err))?;
        if value.cast::<PyString>().is_ok()
            && let serde_json::Value::String(text) = &resolved
        {
            return Ok(PyString::new(py, text).into_any());
        }
        from_json(py, &resolved)
    }

    /// Restores the workspace to its initial snapshot.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        let shared = self.shared()?;
        wait(py, async move {
            let mut state = shared.lock().await;
            Ok(state.ready().await?.reset().await?)
        })
    }

    /// Cleans up every runtime, checks that no asset changed, removes the
    /// workspace. Idempotent. Every failure is raised together.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let shared = self.shared()?;
        wait(py, close(shared))
    }

    /// `close()`, for `async` code.
    fn aclose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let shared = self.shared()?;
        aio::future(py, close(shared), |py, ()| Ok(py.None()))
    }

    fn __repr__(&self) -> String {
        format!(
            "Session(id={:?}, backend_type={:?}, mode={:?})",
            self.id,
            self.backend_type,
            self.mode.name()
        )
    }
}

fn spawn_options(
    env: Option<IndexMap<String, String>>,
    setup: Option<String>,
    disable_setup: bool,
    mounts: Option<&Bound<'_, PyAny>>,
    ports: Option<&Bound<'_, PyAny>>,
) -> PyResult<SpawnOptions> {
    Ok(SpawnOptions {
        env: env.unwrap_or_default(),
        mounts: list_of(mounts, "mounts")?,
        ports: list_of(ports, "ports")?,
        extra_setup_command: setup,
        disable_setup,
    })
}

/// A list of dicts (`mounts`, `ports`) read as the spec reads the same
/// fields; a wrong field raises `ValueError` naming the argument, the
/// entry and the field.
fn list_of<T: serde::de::DeserializeOwned>(
    value: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Vec<T>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(Vec::new());
    };
    let json = to_json(value)?;
    let serde_json::Value::Array(items) = json else {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{what}: expected a list of dicts"
        )));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            serde_json::from_value(item).map_err(|err| {
                pyo3::exceptions::PyValueError::new_err(format!("{what}[{index}]: {err}"))
            })
        })
        .collect()
}

async fn spawn(
    shared: Shared,
    options: SpawnOptions,
) -> Result<session_core::session::RuntimeHandle, Failure> {
    let mut state = shared.lock().await;
    let session = state.ready().await?;
    session.spawn(options).await.map_err(Failure::Spawn)
}

async fn close(shared: Shared) -> Result<(), Failure> {
    let session = shared.lock().await.session.take();
    match session {
        Some(session) => Ok(session.close().await?),
        None => Ok(()),
    }
}

fn input_files(files: &Bound<'_, PyAny>) -> PyResult<Vec<InputFile>> {
    let mapping = files.cast::<PyMapping>()?;
    let mut out = Vec::new();
    for item in mapping.items()?.iter() {
        let (path, content): (PathBuf, Bound<'_, PyAny>) = item.extract()?;
        let file = if let Ok(bytes) = content.cast::<PyBytes>() {
            InputFile::new(path, bytes.as_bytes().to_vec())
        } else {
            InputFile::new(path, to_json(&content)?)
        };
        out.push(file);
    }
    Ok(out)
}

fn file_dict(py: Python<'_>, files: BTreeMap<String, FileContent>) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    for (path, content) in files {
        match content {
            FileContent::Text(text) => dict.set_item(path, text)?,
            FileContent::Bytes(bytes) => dict.set_item(path, PyBytes::new(py, &bytes))?,
        }
    }
    Ok(dict)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Session>()?;
    m.add_function(wrap_pyfunction!(backends, m)?)
}

/// The backends a session can use with `plugin_dir` (default, as for the
/// `berth` binary: `$BERTH_PLUGIN_DIR`, `$XDG_DATA_HOME/berth/plugins`,
/// `~/.local/share/berth/plugins`): a list of dicts with `type`, `version`,
/// `description`, `origin` and `capabilities`, and the libraries that did
/// not load, one line each.
#[pyfunction]
#[pyo3(signature = (plugin_dir = None))]
fn backends(py: Python<'_>, plugin_dir: Option<PathBuf>) -> PyResult<(Py<PyAny>, Vec<String>)> {
    let (registry, report) = registry(plugin_dir.as_deref())?;
    let list: Vec<serde_json::Value> = registry
        .describe()
        .into_iter()
        .map(|(info, origin)| {
            serde_json::json!({
                "type": info.type_name,
                "version": info.version,
                "description": info.description,
                "origin": origin.to_string(),
                "capabilities": info.capabilities,
            })
        })
        .collect();
    Ok((
        from_json(py, &serde_json::Value::Array(list))?.unbind(),
        problem_lines(&report),
    ))
}
