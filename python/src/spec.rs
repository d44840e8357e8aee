//! `EnvironmentSpec`: the spec loaded and validated by session-core, from a
//! file, YAML or JSON text, or a Python mapping; and the JSON bridge the
//! other modules use for Python values.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::errors::core_error;

/// A Python value as JSON (through the `json` module, so any value it
/// takes is taken, with its errors).
pub(crate) fn to_json(value: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let py = value.py();
    let text: String = py
        .import("json")?
        .call_method1("dumps", (value,))?
        .extract()?;
    serde_json::from_str(&text)
        .map_err(|err| pyo3::exceptions::PyValueError::new_err(format!("not a JSON value: {err}")))
}

/// A JSON value as a Python value (dicts keep their order).
pub(crate) fn from_json<'py>(
    py: Python<'py>,
    value: &serde_json::Value,
) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|err| {
        pyo3::exceptions::PyValueError::new_err(format!("cannot write JSON: {err}"))
    })?;
    py.import("json")?.call_method1("loads", (text,))
}

/// An environment spec: which backend runs a session's commands and the
/// settings every backend shares (environment, setup, commands, snapshot,
/// limits), plus the backend's own block.
///
/// Load one with `EnvironmentSpec.from_path`, `from_yaml`, `from_json` or
/// `from_dict`, or take a default with `EnvironmentSpec.local()`. Invalid
/// specs raise `SpecError` with the message the `berth` binary prints: the
/// file (or `<yaml>`, `<json>`, `<dict>`), the dotted field path, and what
/// is wrong.
#[pyclass(module = "berth._berth", frozen, eq, from_py_object)]
#[derive(Clone, PartialEq)]
pub(crate) struct EnvironmentSpec {
    pub(crate) spec: session_core::EnvironmentSpec,
}

#[pymethods]
impl EnvironmentSpec {
    /// Reads a spec file: JSON when its name ends in `.json`, YAML
    /// otherwise. Errors name the file.
    #[classmethod]
    fn from_path(_cls: &Bound<'_, PyType>, path: PathBuf) -> PyResult<EnvironmentSpec> {
        session_core::EnvironmentSpec::from_path(&path)
            .map(|spec| EnvironmentSpec { spec })
            .map_err(|err| core_error(&err))
    }

    /// Parses YAML text; `origin` names it in errors.
    #[classmethod]
    #[pyo3(signature = (text, origin = "<yaml>"))]
    fn from_yaml(_cls: &Bound<'_, PyType>, text: &str, origin: &str) -> PyResult<EnvironmentSpec> {
        session_core::EnvironmentSpec::from_yaml_str(text, origin)
            .map(|spec| EnvironmentSpec { spec })
            .map_err(|err| core_error(&err))
    }

    /// Parses JSON text; `origin` names it in errors.
    #[classmethod]
    #[pyo3(signature = (text, origin = "<json>"))]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str, origin: &str) -> PyResult<EnvironmentSpec> {
        session_core::EnvironmentSpec::from_json_str(text, origin)
            .map(|spec| EnvironmentSpec { spec })
            .map_err(|err| core_error(&err))
    }

    /// Validates a mapping as a spec file would be (`{"type": "local"}`,
    /// `{"type": "docker", "docker": {"image": "…"}}`); `origin` names it
    /// in errors.
    #[classmethod]
    #[pyo3(signature = (value, origin = "<dict>"))]
    fn from_dict(
        _cls: &Bound<'_, PyType>,
        value: &Bound<'_, PyAny>,
        origin: &str,
    ) -> PyResult<EnvironmentSpec> {
        let json = to_json(value)?;
        let text = serde_json::to_string(&json)
            .map_err(|err| pyo3::exceptions::PyValueError::new_err(err.to_string()))?;
        session_core::EnvironmentSpec::from_json_str(&text, origin)
            .map(|spec| EnvironmentSpec { spec })
            .map_err(|err| core_error(&err))
    }

    /// The default spec of the `local` backend (commands run as host
    /// processes in the workspace), named `name`.
    #[classmethod]
    #[pyo3(signature = (name = "local"))]
    fn local(_cls: &Bound<'_, PyType>, name: &str) -> EnvironmentSpec {
        EnvironmentSpec {
            spec: session_core::EnvironmentSpec::new(runtime_local::TYPE_NAME, name),
        }
    }

    /// The backend type (`local`, `docker`, `api`, or a plugin's).
    #[getter]
    fn r#type(&self) -> &str {
        &self.spec.backend_type
    }

    /// The spec's name.
    #[getter]
    fn name(&self) -> &str {
        &self.spec.name
    }

    /// Where the spec came from: a file path, `<yaml>`, `<json>`, `<dict>`.
    #[getter]
    fn origin(&self) -> &str {
        self.spec.origin()
    }

    /// The spec as a dict, in its file format (shared sections, then the
    /// backend block).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(&self.spec)
            .map_err(|err| pyo3::exceptions::PyValueError::new_err(err.to_string()))?;
        from_json(py, &value)
    }

    fn __repr__(&self) -> String {
        format!(
            "EnvironmentSpec(type={:?}, name={:?}, origin={:?})",
            self.spec.backend_type,
            self.spec.name,
            self.spec.origin()
        )
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EnvironmentSpec>()
}
