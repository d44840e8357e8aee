//! The conformance suite against `type: docker` on a busybox image built
//! for the tests, one test per case (`conformance::docker::<case>`); after
//! each case, no container of its sessions may remain.
//!
//! Each case is run by `run_docker_case` rather than the plain runner, for
//! what a target closure cannot do: skip (saying why) when no engine is
//! reachable, build the image first (once per process), and look for the
//! case's leftover containers once it is done.

use std::time::Duration;

use runtime_conformance::{
    Target, assert_held, case_session_prefix, conformance_tests, run_one_blocking,
};

const LABEL: &str = "docker";

conformance_tests!(docker, run = run_docker_case);

fn run_docker_case(case: &'static str) {
    let tokio = tokio::runtime::Builder::new_current_thread()
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
    let outcome = run_one_blocking(
        Target::builtin(crate::support::spec("", "")).label(LABEL),
        case,
    );
    assert_held(LABEL, case, &outcome);

    assert!(
        runtime_docker::wait_for_background_removals(Duration::from_secs(60)),
        "container removals of dropped runtimes did not finish"
    );
    // Containers let go of are removed by the engine on its own time.
    tokio.block_on(async {
        let docker = docker.negotiate_version().await.expect("engine");
        crate::support::assert_no_containers_left(&docker, &case_session_prefix(case)).await;
    });
}
