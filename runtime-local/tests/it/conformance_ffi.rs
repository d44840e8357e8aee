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
