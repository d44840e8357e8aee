//! The conformance suite against `type: api` whose remote is `local`, one
//! test per case (`conformance::api::<case>`): each case gets a server on a
//! loopback port of its process, and must leave no remote session behind.

use std::path::PathBuf;

use runtime_conformance::{Target, assert_held, conformance_tests, run_one_blocking};

const LABEL: &str = "api (remote: local)";

conformance_tests!(api, run = run_api_case);

/// Runs `case` against a server of its own, then checks that the server
/// holds no session of it any more.
fn run_api_case(case: &'static str) {
    let server = ServerThread::start();
    let outcome = run_one_blocking(
        Target::with_registry(
            crate::support::api_spec(&server.url),
            crate::support::client_registry(),
        )
        .label(LABEL),
        case,
    );
    assert_held(LABEL, case, &outcome);
    let left: Vec<PathBuf> = std::fs::read_dir(server.work_root.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "remote sessions left behind: {left:?}");
}

/// A server on its own thread and tokio runtime, stopped (sessions closed,
/// directory removed) when dropped, even after a failed suite.
struct ServerThread {
    url: String,
    work_root: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    fn start() -> ServerThread {
        let work_root = tempfile::Builder::new()
            .prefix("berth-api-server-")
            .tempdir()
            .unwrap();
        let root = work_root.path().to_path_buf();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, address) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let config = runtime_api::server::ServeConfig::new(
                    crate::support::token(),
                    crate::support::server_registry(),
                )
                .listen("127.0.0.1:0".parse().unwrap())
                .limits(crate::support::test_limits())
                .work_root(root)
                .shutdown(async move {
                    let _ = stopped.await;
                });
                let server = runtime_api::server::bind(config).await.unwrap();
                bound.send(server.local_addr()).unwrap();
                server.run().await.unwrap();
            });
        });
        let addr = address.recv().unwrap();
        ServerThread {
            url: format!("http://{addr}"),
            work_root,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
