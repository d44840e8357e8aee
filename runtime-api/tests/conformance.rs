//! The whole conformance suite against `type: api` whose remote is
//! `local`, with the server on a loopback port of this process.

mod support;

use runtime_conformance::{Target, conformance_tests};

conformance_tests!(api_backend_passes_the_conformance_suite, || {
    let (url, _work_root) = start_server_thread();
    Target::with_registry(support::api_spec(&url), support::client_registry()).label("api→local")
});

/// Runs a server on its own thread and tokio runtime for the rest of the
/// test process; returns its URL.
fn start_server_thread() -> (String, std::path::PathBuf) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = support::TestServer::start().await;
            tx.send((server.url(), server.work_root.path().to_path_buf()))
                .unwrap();
            let _ = server.task.await;
        });
    });
    rx.recv().unwrap()
}
