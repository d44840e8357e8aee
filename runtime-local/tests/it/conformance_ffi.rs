//! The conformance suite against `type: local` served through the plugin
//! boundary in process, one test per case (`conformance_ffi::local_ffi::<case>`):
//! the export shims, JSON requests, the output sink, the cancel token and
//! the host adapter are all exercised, without loading a library.

use runtime_conformance::{Target, conformance_tests};
use runtime_local::LocalBackend;
use session_core::EnvironmentSpec;
use session_core::registry::Registry;
use session_core::runtime::BackendOrigin;

conformance_tests!(local_ffi, || {
    let backend = session_core::plugin::in_process::<LocalBackend>().expect("the shims start");
    let mut registry = Registry::empty();
    registry
        .register(backend, BackendOrigin::Plugin("<in-process>".into()))
        .unwrap();
    Target::with_registry(
        EnvironmentSpec::new("local", "conformance"),
        registry.shared(),
    )
    .label("local via plugin boundary")
});

#[test]
fn spec_errors_through_the_boundary_name_the_spec_file() {
    let backend = session_core::plugin::in_process::<LocalBackend>().expect("the shims start");
    let spec = EnvironmentSpec::from_yaml_str(
        "{type: local, name: t, local: {shel: /bin/sh}}",
        "typo.yaml",
    )
    .unwrap();
    let err = backend.validate(&spec).unwrap_err();
    assert!(
        err.to_string().starts_with("typo.yaml: local.shel"),
        "{err}"
    );
}

/// An `execute` through the boundary whose caller goes away (its future is
/// dropped, here by a timeout) stops the command; a second one on the same
/// runtime then runs as usual.
#[test]
fn a_dropped_execute_through_the_boundary_kills_its_command() {
    use session_core::runtime::{ExecCommand, SpawnContext};
    use session_core::spec::Mode;
    use std::time::{Duration, Instant};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let pid_file = workspace.path().join("pid");
    rt.block_on(async {
        let backend = session_core::plugin::in_process::<LocalBackend>().unwrap();
        let ctx = SpawnContext::new("dropped-execute", workspace.path(), Mode::Evaluation);
        let runtime = backend
            .spawn(&EnvironmentSpec::new("local", "t"), ctx)
            .await
            .unwrap();
        let command = ExecCommand::new("echo $$ > pid.part && mv pid.part pid; exec sleep 300");
        let mut execute = Box::pin(runtime.execute(command));
        // Dropped once the command has said who it is.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pid_file.exists() {
            assert!(Instant::now() < deadline, "the command never started");
            tokio::select! {
                ended = execute.as_mut() => panic!("the command ended: {ended:?}"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        drop(execute);
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        // SAFETY: signal 0 only asks whether the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            assert!(Instant::now() < deadline, "pid {pid} survived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = runtime
            .execute(ExecCommand::new("echo again"))
            .await
            .unwrap();
        assert_eq!(after.stdout.bytes, b"again\n");
        runtime.cleanup().await.unwrap();
    });
}
