//! The whole conformance suite against `type: docker`, on a busybox image
//! built for the tests; then no container this process created may remain.
//!
//! This is what `conformance_tests!` expands to, plus what the macro cannot
//! do: skip (saying why) when no engine is reachable, build the image
//! first, and check for leftover containers once the suite is done.

#![allow(clippy::print_stderr, reason = "a skipped test says why")]

use std::time::Duration;

use runtime_conformance::{Target, run_blocking};

#[test]
fn docker_backend_passes_the_conformance_suite() {
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
    run_blocking(Target::builtin(crate::support::spec("", "")).label("docker"));

    assert!(
        runtime_docker::wait_for_background_removals(Duration::from_secs(60)),
        "container removals of dropped runtimes did not finish"
    );
    let left = tokio.block_on(async {
        let docker = docker.negotiate_version().await.expect("engine");
        crate::support::containers_of_this_process(&docker).await
    });
    assert!(
        left.is_empty(),
        "the suite left containers behind: {left:?}"
    );
}
