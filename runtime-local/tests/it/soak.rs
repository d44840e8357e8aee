//! A small soak of the local backend: concurrent sessions mixing quick
//! commands, timeouts, large outputs and kills; every byte accounted for and
//! nothing left behind. `cargo xtask soak` runs the full size.

use runtime_conformance::Target;
use runtime_conformance::soak::{SoakConfig, processes_of_run, soak};
use session_core::EnvironmentSpec;

use runtime_local as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_lose_no_byte_and_leave_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let target = Target::builtin(EnvironmentSpec::new("local", "soak"));
    let run_id = format!("test-{}", std::process::id());
    let mut config = SoakConfig::new(40);
    config.large_output = 1 << 20;
    let report = soak(&target, &config, temp.path(), &run_id).await;
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(report.sessions, 40, "{}", report.summary());
    assert!(
        report.leftover_dirs.is_empty(),
        "{:?}",
        report.leftover_dirs
    );
    // Killed processes may take a moment to be reaped by init.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = processes_of_run(&run_id);
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes survived the soak: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
