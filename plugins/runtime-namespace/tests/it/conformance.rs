//! The whole conformance suite against `type: namespace` served through
//! the plugin boundary in process (the export shims and the host adapter
//! a loaded plugin goes through). `dylib.rs` runs it again through
//! the real loader.

use runtime_conformance::{Target, conformance_tests};
use session_core::EnvironmentSpec;

conformance_tests!(namespace_backend_passes_the_conformance_suite, || {
    Target::with_registry(
        EnvironmentSpec::new("namespace", "conformance"),
        crate::support::registry(),
    )
    .label("namespace via plugin boundary")
});
