//! A small soak through the api backend: concurrent sessions mixing quick
//! commands, timeouts, large outputs and kills against a loopback server;
//! every byte accounted for and nothing left on either side.
//! `cargo xtask soak --type api` runs the full size.

use runtime_conformance::Target;
use runtime_conformance::soak::{SoakConfig, processes_of_run, soak};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_api_sessions_lose_no_byte_and_leave_nothing() {
    let server = crate::support::TestServer::start().await;
    let temp = tempfile::tempdir().unwrap();
    let target = Target::with_registry(
        crate::support::api_spec(&server.url()),
        crate::support::client_registry(),
    );
    let run_id = format!("api-test-{}", std::process::id());
    let mut config = SoakConfig::new(12);
    config.large_output = 1 << 20;
    let report = soak(&target, &config, temp.path(), &run_id).await;
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(report.sessions, 12, "{}", report.summary());
    assert!(
        report.leftover_dirs.is_empty(),
        "{:?}",
        report.leftover_dirs
    );
    crate::support::eventually("the server has removed every remote session", || {
        server.remote_dirs().is_empty()
    })
    .await;
    crate::support::eventually("no process of the run survives", || {
        processes_of_run(&run_id).is_empty()
    })
    .await;
}
