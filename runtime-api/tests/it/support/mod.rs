//! What the api tests share: a server on a loopback port, and client
//! registries and specs pointing at it.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses part of this"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use runtime_api::server::{ServeConfig, ServeLimits};
use runtime_api::{ApiBackend, ApiClient, Token};
use session_core::EnvironmentSpec;
use session_core::registry::Registry;
use session_core::runtime::BackendOrigin;

use runtime_local as _;

/// The token every test server expects.
pub const TOKEN: &str = "test-token-9f2c41d7";

pub fn token() -> Token {
    Token::new(TOKEN).unwrap()
}

/// The server-side registry: every built-in linked into the test binary.
pub fn server_registry() -> Arc<Registry> {
    Registry::with_builtins().unwrap().shared()
}

/// Limits for tests: small leases allowed, quick reaping.
pub fn test_limits() -> ServeLimits {
    ServeLimits {
        min_lease: Duration::from_millis(100),
        reap_interval: Duration::from_millis(50),
        heartbeat: Duration::from_millis(500),
        ..ServeLimits::default()
    }
}

/// A server running as a task of the current tokio runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Removed with the iterative removal, so that a session left deep
    /// (a test that failed before closing it) cannot overflow the stack.
    pub work_root: session_core::tree::RemoveOnDrop,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(test_limits()).await
    }

    pub async fn start_with(limits: ServeLimits) -> TestServer {
        TestServer::start_serving(limits, server_registry()).await
    }

    /// A server of `registry` instead of the built-ins.
    pub async fn start_serving(limits: ServeLimits, registry: Arc<Registry>) -> TestServer {
        let work_root = session_core::tree::RemoveOnDrop::new(
            tempfile::Builder::new()
                .prefix("berth-api-server-")
                .tempdir()
                .unwrap()
                .keep(),
        );
        let config = ServeConfig::new(token(), registry)
            .listen("127.0.0.1:0".parse().unwrap())
            .limits(limits)
            .work_root(work_root.path());
        let server = runtime_api::server::bind(config).await.unwrap();
        let addr = server.local_addr();
        let task = tokio::spawn(async move {
            server.run().await.unwrap();
        });
        TestServer {
            addr,
            work_root,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.url(), &token()).unwrap()
    }

    /// Remote session directories still on disk.
    pub fn remote_dirs(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(self.work_root.path())
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

/// A client registry holding only the api backend, with the test token.
pub fn client_registry() -> Arc<Registry> {
    let mut registry = Registry::empty();
    registry
        .register(
            Arc::new(ApiBackend::with_token(token())),
            BackendOrigin::BuiltIn("runtime-api".into()),
        )
        .unwrap();
    registry.shared()
}

/// A `type: api` spec whose remote is `local`.
pub fn api_spec(url: &str) -> EnvironmentSpec {
    api_spec_with(url, "")
}

/// The same with more lines in the `api:` block (indented by four).
pub fn api_spec_with(url: &str, extra: &str) -> EnvironmentSpec {
    EnvironmentSpec::from_yaml_str(
        &format!(
            "type: api\nname: conformance\napi:\n  url: {url}\n  remote:\n    type: local\n    name: remote\n{extra}"
        ),
        "<test>",
    )
    .unwrap()
}

/// Waits (bounded) until `check` holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request over a fresh connection, written by hand: returns the
/// status and the body.
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and close) before reading a body it refuses.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = match response.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => response[at + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

/// A `type: local` spec for sessions created through [`ApiClient`].
pub fn local_spec() -> EnvironmentSpec {
    EnvironmentSpec::new("local", "remote")
}

/// Creates a remote session and a runtime in it; returns the session id,
/// the runtime id and the workspace checksum after setup.
pub async fn remote_runtime(
    client: &ApiClient,
    lease_ms: Option<u64>,
) -> (String, String, session_core::snapshot::ContentHash) {
    use runtime_api::protocol::{CreateSession, SpawnRequest};
    let created = client
        .create_session(
            &CreateSession {
                spec: local_spec(),
                mode: session_core::Mode::Evaluation,
                label: Some("test".into()),
                assets: Vec::new(),
                lease_ms,
            },
            None,
        )
        .await
        .unwrap();
    let spawned = client
        .spawn(&created.session, &SpawnRequest::default())
        .await
        .unwrap();
    (created.session, spawned.runtime, spawned.changes.checksum)
}

/// Whether process `pid` is gone (or a zombie nobody waits for).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status
            .lines()
            .find(|l| l.starts_with("State:"))
            .is_some_and(|l| l.contains("Z (") || l.contains("X (")),
    }
}

/// Reads an execution's stream to its end: the stdout it carried (live, or
/// in the result of a joined stream), the result and the changes.
pub async fn collect(
    mut stream: runtime_api::client::ExecStream,
) -> (
    Vec<u8>,
    runtime_api::protocol::WireResult,
    runtime_api::protocol::ChangeSet,
) {
    use runtime_api::protocol::StreamLine;
    let mut stdout = Vec::new();
    while let Some(line) = stream.next_line().await.unwrap() {
        match line {
            StreamLine::Stdout { data } => stdout.extend_from_slice(&data),
            StreamLine::Finished { result, changes } => {
                if let Some(data) = &result.stdout.data {
                    stdout.extend_from_slice(data);
                }
                return (stdout, result, changes);
            }
            StreamLine::Error { error } => panic!("the execution failed: {error:?}"),
            _ => {}
        }
    }
    panic!("the stream ended without a result");
}
