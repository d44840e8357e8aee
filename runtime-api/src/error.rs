//! The one error type of `runtime-api`.

use std::net::SocketAddr;

use session_core::runtime::wire::WireError;

use crate::TYPE_NAME;

/// Everything that can go wrong talking to, or serving, the protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not be reached, or the connection broke before an
    /// answer was complete.
    #[error("cannot reach the berth server at {url}: {message}")]
    Connect {
        /// The server's base URL.
        url: String,
        /// What failed.
        message: String,
    },

    /// The server answered with an error status; `error` is what it sent.
    #[error("the berth server answered {status}: {}", wire_message(.error))]
    Status {
        /// The HTTP status.
        status: u16,
        /// The error it carried.
        error: WireError,
    },

    /// The server's answer does not follow the protocol (bad JSON, a
    /// missing line, an unexpected status).
    #[error("the berth server broke the protocol: {0}")]
    Protocol(String),

    /// What is about to be sent is larger than the server accepts (its
    /// limits come with the session); nothing was sent.
    #[error("{what} is {size} bytes, over the server's limit of {limit} bytes")]
    TooLarge {
        /// What it is (`the workspace changes`, `the command with its stdin`).
        what: &'static str,
        /// Its size.
        size: u64,
        /// The server's limit.
        limit: u64,
    },

    /// The server could not listen on its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A configuration value is unusable: a URL that is not `http://`, an
    /// empty or missing token.
    #[error("{0}")]
    Config(String),

    /// An error of the session layer (workspace sync, specs, paths).
    #[error(transparent)]
    Core(#[from] session_core::Error),
}

impl Error {
    /// The HTTP status the server answered with, if this is such an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn wire_message(error: &WireError) -> String {
    error.clone().into_error().to_string()
}

impl From<Error> for session_core::Error {
    /// Errors the server sent come back as the variant they were on the
    /// server (`SetupFailed`, `RuntimeClosed`, ...); everything else is a
    /// backend error of `api`.
    fn from(err: Error) -> session_core::Error {
        match err {
            Error::Status { error, .. } => error.into_error(),
            Error::Core(err) => err,
            other => session_core::Error::Backend {
                backend: TYPE_NAME.into(),
                message: other.to_string(),
            },
        }
    }
}
