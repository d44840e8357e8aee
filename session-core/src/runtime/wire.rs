//! Errors in a form that crosses process and library boundaries.
//!
//! Backends that live elsewhere — a dylib plugin, a remote server — send
//! their errors as a [`WireError`] and the host turns it back into the same
//! [`Error`] variant, so a caller matches on `Error::SetupFailed` whether the
//! runtime is built in, loaded from a plugin or remote.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// An [`Error`] as data. Variants a caller is expected to match on keep
/// their fields; every other error travels as its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireError {
    /// [`Error::Spec`].
    Spec {
        /// Where the spec came from.
        origin: String,
        /// The offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// [`Error::SetupFailed`].
    SetupFailed {
        /// The failing command.
        command: String,
        /// Its exit code.
        exit_code: i32,
        /// Its stdout.
        stdout: String,
        /// Its stderr.
        stderr: String,
    },
    /// [`Error::RuntimeClosed`].
    RuntimeClosed {
        /// The backend type.
        backend: String,
    },
    /// [`Error::UnknownBackend`].
    UnknownBackend {
        /// The type asked for.
        requested: String,
        /// The registered types.
        registered: String,
    },
    /// [`Error::PathEscape`] (the reason travels as text).
    PathEscape {
        /// The refused path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Anything else, as [`Error::Backend`].
    Backend {
        /// The backend type.
        backend: String,
        /// The error's message.
        message: String,
    },
}

impl WireError {
    /// Converts an error for sending; `backend` names the side it came
    /// from, used for variants that travel as text.
    pub fn from_error(err: &Error, backend: &str) -> WireError {
        match err {
            Error::Spec {
                origin,
                field,
                message,
            } => WireError::Spec {
                origin: origin.clone(),
                field: field.clone(),
                message: message.clone(),
            },
            Error::SetupFailed {
                command,
                exit_code,
                stdout,
                stderr,
            } => WireError::SetupFailed {
                command: command.clone(),
                exit_code: *exit_code,
                stdout: stdout.clone(),
                stderr: stderr.clone(),
            },
            Error::RuntimeClosed { backend } => WireError::RuntimeClosed {
                backend: backend.clone(),
            },
            Error::UnknownBackend {
                requested,
                registered,
            } => WireError::UnknownBackend {
                requested: requested.clone(),
                registered: registered.clone(),
            },
            Error::PathEscape { path, reason } => WireError::PathEscape {
                path: path.clone(),
                reason: (*reason).to_owned(),
            },
            Error::Backend { backend, message } => WireError::Backend {
                backend: backend.clone(),
                message: message.clone(),
            },
            other => WireError::Backend {
                backend: backend.to_owned(),
                message: other.to_string(),
            },
        }
    }

    /// Turns a received error back into an [`Error`].
    pub fn into_error(self) -> Error {
        match self {
            WireError::Spec {
                origin,
                field,
                message,
            } => Error::Spec {
                origin,
                field,
                message,
            },
            WireError::SetupFailed {
                command,
                exit_code,
                stdout,
                stderr,
            } => Error::SetupFailed {
                command,
                exit_code,
                stdout,
                stderr,
            },
            WireError::RuntimeClosed { backend } => Error::RuntimeClosed { backend },
            WireError::UnknownBackend {
                requested,
                registered,
            } => Error::UnknownBackend {
                requested,
                registered,
            },
            // The reason is `&'static str` in `Error`; a received one is
            // reported through the message of a backend error instead.
            WireError::PathEscape { path, reason } => Error::Backend {
                backend: "remote".into(),
                message: format!("path `{path}` is not allowed: {reason}"),
            },
            WireError::Backend { backend, message } => Error::Backend { backend, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchable_variants_survive_the_trip() {
        let err = Error::SetupFailed {
            command: "make".into(),
            exit_code: 2,
            stdout: "o".into(),
            stderr: "e".into(),
        };
        let json = serde_json::to_string(&WireError::from_error(&err, "x")).unwrap();
        let back: WireError = serde_json::from_str(&json).unwrap();
        assert!(matches!(
            back.into_error(),
            Error::SetupFailed { exit_code: 2, .. }
        ));
        let other = WireError::from_error(&Error::NotPrepared, "plugin");
        assert_eq!(
            other.into_error().to_string(),
            "plugin backend: workspace is not prepared"
        );
    }
}
