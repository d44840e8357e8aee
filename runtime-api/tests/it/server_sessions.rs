//! What the server says about its sessions: each one's opening and closing
//! is logged at info with its id, backend type and the client that opened
//! it (closed by a client, by an expired lease, or at shutdown), and
//! `/v1/health` lists only the backend types the server will serve.
//!
//! The logs are captured by a subscriber set for the test's own thread,
//! which runs the server and the client (a current-thread runtime), so the
//! tests may share a process.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtime_api::protocol::CreateSession;
use tracing::subscriber::DefaultGuard;

use crate::support::{TestServer, eventually, local_spec, test_limits};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The captured lines holding every one of `parts`.
    fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| parts.iter().all(|part| line.contains(part)))
            .map(str::to_owned)
            .collect()
    }
}

/// Captures what this thread logs at info and above.
fn capture() -> (Captured, DefaultGuard) {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

fn request(label: &str, lease_ms: Option<u64>) -> CreateSession {
    CreateSession {
        spec: local_spec(),
        mode: session_core::Mode::Evaluation,
        label: Some(label.into()),
        assets: Vec::new(),
        lease_ms,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn opening_and_closing_a_session_is_logged_with_its_type_and_client() {
    let (logs, _guard) = capture();
    let server = TestServer::start().await;
    let client = server.client();

    let created = client
        .create_session(&request("opened-by-test", None), None)
        .await
        .unwrap();
    let id = created.session.clone();
    let opened = logs.lines_with(&["session opened session=", &id]);
    assert_eq!(opened.len(), 1, "{}", logs.text());
    let line = &opened[0];
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("type=local"), "{line}");
    assert!(line.contains("label=opened-by-test"), "{line}");
    assert!(line.contains("client=127.0.0.1:"), "{line}");
    assert!(
        logs.lines_with(&["session closed session=", &id])
            .is_empty()
    );

    client.delete_session(&id).await.unwrap();
    let closed = logs.lines_with(&["session closed session=", &id]);
    assert_eq!(closed.len(), 1, "{}", logs.text());
    let line = &closed[0];
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("type=local"), "{line}");
    assert!(line.contains("client=127.0.0.1:"), "{line}");
    assert!(line.contains("a client at 127.0.0.1:"), "{line}");
    server.task.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn a_session_whose_lease_expires_is_logged_as_closed_and_why() {
    let (logs, _guard) = capture();
    let server = TestServer::start().await;
    let client = server.client();
    let created = client
        .create_session(&request("left-to-expire", Some(100)), None)
        .await
        .unwrap();
    let id = created.session;
    eventually("the expired session's closing is logged", || {
        !logs
            .lines_with(&["session closed session=", &id])
            .is_empty()
    })
    .await;
    let closed = logs.lines_with(&["session closed session=", &id]);
    assert_eq!(closed.len(), 1, "{}", logs.text());
    assert!(closed[0].contains("its lease expired"), "{}", closed[0]);
    assert!(closed[0].contains("type=local"), "{}", closed[0]);
    assert!(closed[0].contains("client=127.0.0.1:"), "{}", closed[0]);
    server.task.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn sessions_open_at_shutdown_are_logged_as_closed() {
    let (logs, _guard) = capture();
    let work_root = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = runtime_api::server::ServeConfig::new(
        crate::support::token(),
        crate::support::server_registry(),
    )
    .listen("127.0.0.1:0".parse().unwrap())
    .limits(test_limits())
    .work_root(work_root.path())
    .shutdown(async {
        let _ = stopped.await;
    });
    let server = runtime_api::server::bind(config).await.unwrap();
    let url = format!("http://{}", server.local_addr());
    let task = tokio::spawn(server.run());
    let client = runtime_api::ApiClient::new(&url, &crate::support::token()).unwrap();
    let id = client
        .create_session(&request("open-at-shutdown", Some(60_000)), None)
        .await
        .unwrap()
        .session;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    let closed = logs.lines_with(&["session closed session=", &id]);
    assert_eq!(closed.len(), 1, "{}", logs.text());
    assert!(
        closed[0].contains("the server is shutting down"),
        "{}",
        closed[0]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn health_lists_only_the_backends_the_server_serves() {
    let registry = crate::support::server_registry();
    // The registry holds `api` (this test binary links it), which the
    // server refuses to relay.
    assert!(registry.types().iter().any(|t| t == "api"));
    let server = TestServer::start().await;
    let health = server.client().health().await.unwrap();
    assert!(
        health.backends.iter().any(|t| t == "local"),
        "{:?}",
        health.backends
    );
    assert!(
        !health.backends.iter().any(|t| t == "api"),
        "{:?}",
        health.backends
    );
    assert_eq!(
        health.backends,
        runtime_api::server::served_types(&registry)
    );
    server.task.abort();
}
