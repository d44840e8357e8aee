//! `Snapshot`, `Diff`, `Change` and `Checkpoint`: captured states of a
//! directory and what changed between two of them.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyType};
use session_core::compression::Compression;
use session_core::snapshot::{ExtractMode, SnapshotRules};

use crate::errors::core_error;
use crate::spec::from_json;

fn compression(name: &str) -> PyResult<Compression> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| {
        PyValueError::new_err(format!(
            "compression must be one of none, gz, bz2, xz, zstd; not `{name}`"
        ))
    })
}

fn compression_name(compression: Compression) -> String {
    match serde_json::to_value(compression) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{compression:?}"),
    }
}

/// A captured state of a directory: a manifest of its entries and a tar
/// archive of their bytes (which the snapshot does not own: it stays where
/// it was written).
#[pyclass(module = "berth._berth", frozen)]
pub(crate) struct Snapshot {
    snapshot: session_core::snapshot::Snapshot,
}

impl Snapshot {
    pub(crate) fn from_core(snapshot: session_core::snapshot::Snapshot) -> Snapshot {
        Snapshot { snapshot }
    }
}

#[pymethods]
impl Snapshot {
    /// Snapshots `root` into a new archive in `archive_dir` (which must not
    /// be inside `root`). `keep` (globs) limits what is captured, `ignore`
    /// (globs) leaves paths out; `compression` is `gz` (default), `none`,
    /// `bz2`, `xz` or `zstd`.
    #[classmethod]
    #[pyo3(signature = (root, archive_dir, *, compression = "gz", keep = None, ignore = None))]
    fn capture(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        root: PathBuf,
        archive_dir: PathBuf,
        compression: &str,
        keep: Option<Vec<String>>,
        ignore: Option<Vec<String>>,
    ) -> PyResult<Snapshot> {
        let compression = self::compression(compression)?;
        let ignore = ignore.unwrap_or_default();
        let rules = SnapshotRules::new(keep.as_deref(), &ignore).map_err(|err| core_error(&err))?;
        let snapshot = py
            .detach(|| {
                session_core::snapshot::Snapshot::capture(&root, &rules, compression, &archive_dir)
            })
            .map_err(|err| core_error(&err))?;
        Ok(Snapshot { snapshot })
    }

    /// Opens an existing tar archive (written by berth or any `tar`) in the
    /// given compression.
    #[classmethod]
    #[pyo3(signature = (archive, *, compression = "gz"))]
    fn open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        archive: PathBuf,
        compression: &str,
    ) -> PyResult<Snapshot> {
        let compression = self::compression(compression)?;
        let snapshot = py
            .detach(|| session_core::snapshot::Snapshot::open_archive(&archive, compression))
            .map_err(|err| core_error(&err))?;
        Ok(Snapshot { snapshot })
    }

    /// Restores the snapshot into `dest` (made if missing). With
    /// `mirror=True`, what `dest` holds beyond the snapshot is removed.
    /// Unsafe members are refused with `WorkspaceError`.
    #[pyo3(signature = (dest, *, mirror = false))]
    fn extract(&self, py: Python<'_>, dest: PathBuf, mirror: bool) -> PyResult<()> {
        let mode = if mirror {
            ExtractMode::Mirror
        } else {
            ExtractMode::Merge
        };
        py.detach(|| self.snapshot.extract(&dest, mode))
            .map_err(|err| core_error(&err))
    }

    /// Reads the entries at `paths` (files and symlink targets), at most
    /// `limit` bytes of each: a dict of path to bytes. Paths not in the
    /// snapshot are left out.
    #[pyo3(signature = (paths, *, limit = u64::MAX))]
    fn read_entries<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<String>,
        limit: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let entries = py
            .detach(|| {
                self.snapshot
                    .read_entries(paths.iter().map(String::as_str), limit)
            })
            .map_err(|err| core_error(&err))?;
        let dict = PyDict::new(py);
        for path in &paths {
            if let Some(bytes) = entries.get(path) {
                dict.set_item(path, PyBytes::new(py, bytes))?;
            }
        }
        Ok(dict)
    }

    /// The paths the snapshot holds (files, symlinks, empty directories),
    /// sorted.
    #[getter]
    fn paths(&self) -> Vec<String> {
        self.snapshot
            .manifest()
            .entries()
            .iter()
            .map(|entry| entry.path.clone())
            .collect()
    }

    /// The manifest: a list of dicts with `path`, `kind`, `mode`, `size`,
    /// `hash` (and `target` for a symlink).
    #[getter]
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(self.snapshot.manifest().entries())
            .map_err(|err| PyValueError::new_err(err.to_string()))?;
        from_json(py, &value)
    }

    /// The checksum of the manifest (hex): equal trees have equal
    /// checksums, whatever the compression or the time.
    #[getter]
    fn checksum(&self) -> String {
        self.snapshot.checksum().to_hex()
    }

    /// The archive file (`None` for the snapshot of nothing).
    #[getter]
    fn archive_path(&self) -> Option<PathBuf> {
        self.snapshot
            .has_archive()
            .then(|| self.snapshot.archive_path().to_path_buf())
    }

    /// The archive's compression.
    #[getter]
    fn compression(&self) -> String {
        compression_name(self.snapshot.compression())
    }

    /// The total size of its files in bytes.
    #[getter]
    fn total_size(&self) -> u64 {
        self.snapshot.manifest().total_size()
    }

    fn __len__(&self) -> usize {
        self.snapshot.manifest().len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Snapshot(entries={}, checksum={:?})",
            self.snapshot.manifest().len(),
            self.snapshot.checksum().to_hex()
        )
    }
}

/// One changed path of a `Diff`.
#[pyclass(module = "berth._berth", frozen, get_all)]
pub(crate) struct Change {
    /// The path (the new one for a rename).
    path: String,
    /// `created`, `deleted`, `modified`, `type_changed`, `mode_changed` or
    /// `renamed`.
    kind: String,
    /// The old path of a rename.
    old_path: Option<String>,
    /// Whether either side is binary.
    is_binary: bool,
    /// The unified diff of a text change (`None` for binary or omitted
    /// text).
    unified_diff: Option<String>,
    /// Lines added.
    lines_added: u64,
    /// Lines removed.
    lines_removed: u64,
    /// Whether the text diff was cut at a bound.
    truncated: bool,
}

#[pymethods]
impl Change {
    fn __repr__(&self) -> String {
        format!("Change(kind={:?}, path={:?})", self.kind, self.path)
    }
}

/// What changed between two snapshots: `changes` sorted by path, the
/// `unified` text (as `diff -ruN`), and the `stat` line
/// (`+created -deleted ~changed files`).
#[pyclass(module = "berth._berth", frozen)]
pub(crate) struct Diff {
    diff: session_core::diff::SnapshotDiff,
}

impl Diff {
    pub(crate) fn from_core(diff: session_core::diff::SnapshotDiff) -> Diff {
        Diff { diff }
    }
}

#[pymethods]
impl Diff {
    /// Every changed path.
    #[getter]
    fn changes(&self) -> PyResult<Vec<Change>> {
        self.diff
            .changes
            .iter()
            .map(|change| {
                let kind = match serde_json::to_value(change.kind) {
                    Ok(serde_json::Value::String(kind)) => kind,
                    _ => format!("{:?}", change.kind),
                };
                Ok(Change {
                    path: change.path.clone(),
                    kind,
                    old_path: change.old_path.clone(),
                    is_binary: change.is_binary,
                    unified_diff: change.unified_diff.clone(),
                    lines_added: change.lines_added,
                    lines_removed: change.lines_removed,
                    truncated: change.truncated,
                })
            })
            .collect()
    }

    /// All text diffs, plus a line per binary, type or mode change.
    #[getter]
    fn unified(&self) -> String {
        self.diff.unified()
    }

    /// `+created -deleted ~changed files`.
    #[getter]
    fn stat(&self) -> String {
        self.diff.summary.to_string()
    }

    /// The counts: `created`, `deleted`, `modified`, `renamed`,
    /// `lines_added`, `lines_removed`.
    #[getter]
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(self.diff.summary)
            .map_err(|err| PyValueError::new_err(err.to_string()))?;
        from_json(py, &value)
    }

    /// The diff as JSON-like data (as `berth diff --json`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(&self.diff)
            .map_err(|err| PyValueError::new_err(err.to_string()))?;
        from_json(py, &value)
    }

    fn __bool__(&self) -> bool {
        !self.diff.is_empty()
    }

    fn __len__(&self) -> usize {
        self.diff.changes.len()
    }

    fn __repr__(&self) -> String {
        format!("Diff({})", self.diff.summary)
    }
}

/// The diff between two snapshots (`old` to `new`).
#[pyfunction]
fn diff(py: Python<'_>, old: &Snapshot, new: &Snapshot) -> PyResult<Diff> {
    py.detach(|| session_core::diff::diff(&old.snapshot, &new.snapshot))
        .map(|diff| Diff { diff })
        .map_err(|err| core_error(&err))
}

/// What `Session.finish_checkpoint` returns: the snapshot taken (now the
/// current one) and the diff since the previous one. Unpacks as
/// `snapshot, diff = …`.
#[pyclass(module = "berth._berth", frozen)]
pub(crate) struct Checkpoint {
    snapshot: Py<Snapshot>,
    diff: Py<Diff>,
}

impl Checkpoint {
    pub(crate) fn from_core(
        py: Python<'_>,
        checkpoint: session_core::workspace::Checkpoint,
    ) -> PyResult<Checkpoint> {
        Ok(Checkpoint {
            snapshot: Py::new(py, Snapshot::from_core(checkpoint.snapshot))?,
            diff: Py::new(py, Diff::from_core(checkpoint.diff))?,
        })
    }
}

#[pymethods]
impl Checkpoint {
    /// The snapshot taken.
    #[getter]
    fn snapshot(&self, py: Python<'_>) -> Py<Snapshot> {
        self.snapshot.clone_ref(py)
    }

    /// What changed since the previous snapshot.
    #[getter]
    fn diff(&self, py: Python<'_>) -> Py<Diff> {
        self.diff.clone_ref(py)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pair = (self.snapshot.clone_ref(py), self.diff.clone_ref(py));
        pair.into_pyobject(py)?
            .into_any()
            .try_iter()
            .map(Bound::into_any)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("Checkpoint({})", self.diff.bind(py).get().diff.summary)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Snapshot>()?;
    m.add_class::<Diff>()?;
    m.add_class::<Change>()?;
    m.add_class::<Checkpoint>()?;
    m.add_function(wrap_pyfunction!(diff, m)?)
}
