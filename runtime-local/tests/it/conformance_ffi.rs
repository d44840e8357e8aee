//! The whole conformance suite against `type: local` served through the
//! plugin boundary in process: the export shims, JSON requests, the output
//! sink, the cancel token and the host adapter are all exercised, without
//! loading a library.

use runtime_conformance::{Target, conformance_tests};
use runtime_local::LocalBackend;
use session_core::EnvironmentSpec;
use session_core::registry::Registry;
use session_core::runtime::BackendOrigin;

conformance_tests!(local_backend_through_the_plugin_boundary_passes, || {
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
