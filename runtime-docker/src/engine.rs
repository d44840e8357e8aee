//! Reaching the Docker Engine, and turning its errors into one-line berth
//! errors.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as EngineError;
use session_core::Error;

use crate::TYPE_NAME;

/// How long the first exchange with an engine may take before it counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the engine listens when `DOCKER_HOST` is not set.
pub(crate) const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Where the engine is, and why berth looks there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EngineAddress {
    /// A `DOCKER_HOST`-style address (`unix:///var/run/docker.sock`,
    /// `tcp://host:2375`).
    pub(crate) host: String,
    /// `DOCKER_HOST`, `the default socket`, or `configured`.
    pub(crate) source: &'static str,
}

impl EngineAddress {
    /// `DOCKER_HOST` when set, else the platform's default socket.
    pub(crate) fn from_env() -> EngineAddress {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.trim().is_empty() => EngineAddress {
                host,
                source: "DOCKER_HOST",
            },
            _ => EngineAddress {
                host: DEFAULT_HOST.to_owned(),
                source: "the default socket",
            },
        }
    }

    /// An address given explicitly.
    pub(crate) fn configured(host: impl Into<String>) -> EngineAddress {
        EngineAddress {
            host: host.into(),
            source: "configured",
        }
    }

    /// A client for this address, without talking to the engine yet.
    pub(crate) fn client(&self) -> session_core::Result<Docker> {
        Docker::connect_with_host(&self.host).map_err(|err| self.unreachable(&err))
    }

    /// A client whose API version is negotiated with the engine, so engines
    /// from API 1.41 on all work. The negotiated client is kept for the
    /// calling tokio runtime (its connections belong to that runtime), so
    /// later spawns skip the round trip.
    pub(crate) async fn connect(&self) -> session_core::Result<Docker> {
        let key = (
            self.host.clone(),
            tokio::runtime::Handle::try_current().ok().map(|h| h.id()),
        );
        if let Some(client) = clients().get(&key) {
            return Ok(client.clone());
        }
        let client = self.negotiate().await?;
        if key.1.is_some() {
            clients().insert(key, client.clone());
        }
        Ok(client)
    }

    async fn negotiate(&self) -> session_core::Result<Docker> {
        let client = self.client()?;
        match tokio::time::timeout(CONNECT_TIMEOUT, client.negotiate_version()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(err)) => Err(self.unreachable(&err)),
            Err(_) => Err(backend_error(format!(
                "the Docker Engine at {} (from {}) did not answer within {}s",
                self.host,
                self.source,
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The error for an engine that cannot be reached.
    pub(crate) fn unreachable(&self, err: &EngineError) -> Error {
        let detail = match err {
            EngineError::SocketNotFoundError(path) => {
                format!("no socket at `{path}`; is dockerd running?")
            }
            EngineError::UnsupportedURISchemeError { uri } => {
                format!("`{uri}` is not an address this build can use (unix://, tcp://, http://)")
            }
            other => format!("{}; is dockerd running?", chain(other)),
        };
        backend_error(format!(
            "cannot reach the Docker Engine at {} (from {}): {detail}",
            self.host, self.source
        ))
    }
}

type ClientKey = (String, Option<tokio::runtime::Id>);

/// Negotiated clients by engine address and tokio runtime.
fn clients() -> std::sync::MutexGuard<'static, HashMap<ClientKey, Docker>> {
    static CLIENTS: OnceLock<Mutex<HashMap<ClientKey, Docker>>> = OnceLock::new();
    CLIENTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// A `docker` backend error.
pub(crate) fn backend_error(message: String) -> Error {
    Error::Backend {
        backend: TYPE_NAME.to_owned(),
        message,
    }
}

/// The engine's status code, when the error is an answer from it.
pub(crate) fn status_of(err: &EngineError) -> Option<u16> {
    match err {
        EngineError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// What the engine said (its message when it answered), on one line.
pub(crate) fn describe(err: &EngineError) -> String {
    match err {
        EngineError::DockerResponseServerError { message, .. } => one_line(message),
        other => chain(other),
    }
}

/// An error and its sources, on one line (the engine client's own message
/// is often just `client error (Connect)`; the cause is below it).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = one_line(&err.to_string());
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = one_line(&cause.to_string());
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether the error means the engine could not be reached at all.
pub(crate) fn is_connection_error(err: &EngineError) -> bool {
    matches!(
        err,
        EngineError::SocketNotFoundError(_)
            | EngineError::HyperLegacyError { .. }
            | EngineError::IOError { .. }
            | EngineError::RequestTimeoutError
    )
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_one_clear_line() {
        let address = EngineAddress::configured("unix:///nonexistent/berth-docker.sock");
        let err = address.client().unwrap_err().to_string();
        assert!(
            err.starts_with("docker backend: cannot reach the Docker Engine at unix:///nonexistent/berth-docker.sock (from configured): no socket at `/nonexistent/berth-docker.sock`"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let scheme = EngineAddress::configured("gopher://x")
            .client()
            .unwrap_err();
        assert!(scheme.to_string().contains("gopher://x"), "{scheme}");
    }
}
