//! berth's exceptions: `BerthError` and a subclass for each kind of
//! failure, with the message of the `berth` binary (the error's Display).
//!
//! * `SpecError` — the environment spec, the asset map, a glob, a
//!   placeholder;
//! * `BackendError` — an unknown backend type, a runtime that is closed or
//!   broke, a cleanup that failed;
//! * `SpawnError` (a `BackendError`) — a runtime could not be spawned: its
//!   setup failed, or its sandbox could not be made;
//! * `WorkspaceError` — files, directories and archives: missing,
//!   unreadable, unsafe, or over one of berth's bounds;
//! * `BerthError` itself — anything else (an object used from a forked
//!   child, a session used before it is prepared or after it is closed).
//!
//! A command that times out is not an error: its result says
//! `timed_out=True`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    berth,
    BerthError,
    PyException,
    "Every error berth raises. A command that fails or times out is not an error: its result says so."
);
create_exception!(
    berth,
    SpecError,
    BerthError,
    "The environment spec, the asset map, a glob or a placeholder is invalid; the message names the file and field."
);
create_exception!(
    berth,
    BackendError,
    BerthError,
    "A backend failed: an unknown type, a runtime that is closed or broke, a cleanup that failed."
);
create_exception!(
    berth,
    SpawnError,
    BackendError,
    "A runtime could not be spawned: its setup command failed or its sandbox could not be made."
);
create_exception!(
    berth,
    WorkspaceError,
    BerthError,
    "Files, directories and archives: missing, unreadable, unsafe to extract, or over one of berth's bounds."
);

/// A failure on the Rust side, turned into the right exception in the
/// calling thread.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An error of berth's, raised as the class of its kind.
    Core(session_core::Error),
    /// The same, raised during `spawn`: `SpawnError` unless it is the
    /// spec's.
    Spawn(session_core::Error),
    /// Plain `BerthError` with this message.
    Other(String),
    /// A Python exception, as is.
    Python(PyErr),
}

impl From<session_core::Error> for Failure {
    fn from(err: session_core::Error) -> Failure {
        Failure::Core(err)
    }
}

impl From<PyErr> for Failure {
    fn from(err: PyErr) -> Failure {
        Failure::Python(err)
    }
}

impl From<Failure> for PyErr {
    fn from(failure: Failure) -> PyErr {
        match failure {
            Failure::Core(err) => core_error(&err),
            Failure::Spawn(err) => match kind(&err) {
                Kind::Spec => SpecError::new_err(err.to_string()),
                _ => SpawnError::new_err(err.to_string()),
            },
            Failure::Other(message) => BerthError::new_err(message),
            Failure::Python(err) => err,
        }
    }
}

enum Kind {
    Spec,
    Backend,
    Spawn,
    Workspace,
    Other,
}

fn kind(err: &session_core::Error) -> Kind {
    use session_core::ErrorKind as K;
    match err.kind() {
        K::Spec => Kind::Spec,
        K::Setup => Kind::Spawn,
        K::Backend => Kind::Backend,
        K::Workspace => Kind::Workspace,
        _ => Kind::Other,
    }
}

/// The exception for one of berth's errors, with its message.
pub(crate) fn core_error(err: &session_core::Error) -> PyErr {
    let message = err.to_string();
    match kind(err) {
        Kind::Spec => SpecError::new_err(message),
        Kind::Backend => BackendError::new_err(message),
        Kind::Spawn => SpawnError::new_err(message),
        Kind::Workspace => WorkspaceError::new_err(message),
        Kind::Other => BerthError::new_err(message),
    }
}

/// The error of an object used in a process other than the one that made
/// it.
pub(crate) fn forked_error(what: &str, owner: u32) -> PyErr {
    BerthError::new_err(format!(
        "this {what} belongs to process {owner}, not to this one ({}): a forked child cannot use \
         its parent's sessions, runtimes or streams; make a new Session in the child",
        std::process::id()
    ))
}

/// The error of a task that panicked or was cancelled.
pub(crate) fn join_error(err: &tokio::task::JoinError) -> PyErr {
    if err.is_cancelled() {
        BerthError::new_err("the operation was cancelled")
    } else {
        BerthError::new_err(format!("berth panicked: {err}"))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("BerthError", py.get_type::<BerthError>())?;
    m.add("SpecError", py.get_type::<SpecError>())?;
    m.add("BackendError", py.get_type::<BackendError>())?;
    m.add("SpawnError", py.get_type::<SpawnError>())?;
    m.add("WorkspaceError", py.get_type::<WorkspaceError>())?;
    Ok(())
}
