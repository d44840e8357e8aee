//! A small soak of the docker backend: concurrent sessions mixing quick
//! commands, timeouts, large outputs and kills; every byte accounted for,
//! no process and no container left. `cargo xtask soak --type docker` runs
//! the full size.

#![allow(clippy::print_stderr, reason = "a skipped test says why")]

use std::time::Duration;

use runtime_conformance::Target;
use runtime_conformance::soak::{SoakConfig, processes_of_run, soak};

#[test]
fn concurrent_docker_sessions_lose_no_byte_and_leave_nothing() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let docker = match tokio.block_on(crate::support::prepare()) {
        Ok(docker) => docker,
        Err(reason) => {
            crate::support::skip(&reason);
            return;
        }
    };
    let temp = tempfile::tempdir().unwrap();
    let target = Target::builtin(crate::support::spec("", ""));
    let run_id = format!("docker-test-{}", std::process::id());
    let mut config = SoakConfig::new(8);
    config.large_output = 1 << 20;
    let report = tokio.block_on(soak(&target, &config, temp.path(), &run_id));
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(report.sessions, 8, "{}", report.summary());
    assert!(
        report.leftover_dirs.is_empty(),
        "{:?}",
        report.leftover_dirs
    );
    assert!(runtime_docker::wait_for_background_removals(
        Duration::from_secs(60)
    ));
    // The engine removes containers let go of on its own time.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = tokio.block_on(crate::support::containers_of_this_process(&docker));
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "containers left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !processes_of_run(&run_id).is_empty() {
        assert!(std::time::Instant::now() < deadline, "processes survived");
        std::thread::sleep(Duration::from_millis(50));
    }
}
